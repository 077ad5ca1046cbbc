// The relaxed-SIMD WASI module (build-wasi-relaxed, -DTERNLM_WASM_RELAXED=ON) in headless Chromium, never in Node
// (Node 20 miscomputes relaxed dots, ../shared/specs/toolchain.md §4): feature detection by WebAssembly.validate,
// every kernel path (scalar, wasm128, wasm_relaxed) against scalar on random data (tests/test_kernels.c), and the
// CLI's greedy text equal to native's. The modules run on @bjorn3/browser_wasi_shim with the model in memory.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { serve } from '../../examples/serve.mjs';
import { RELAXED_PROBE, runWasiInPage } from '../../tools/wasi-page.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const build = path.join(root, 'build-wasi-relaxed');
const built = existsSync(path.join(build, 'ternlm.wasm')) && existsSync(path.join(build, 'tests/test_kernels.wasm'));
const nativeCli = ['build/ternlm', 'build-release/ternlm'].map((p) => path.join(root, p)).find((p) => existsSync(p));


describe('relaxed-SIMD WASI module in Chromium', { skip: built ? false : 'build-wasi-relaxed not built' }, () => {
  let server;
  let ctx;
  let page;
  before(async () => {
    server = await serve({});
    ctx = await chromium.launchPersistentContext(mkdtempSync(path.join(os.tmpdir(), 'ternlm-relaxed-')), {
      executablePath: '/usr/bin/chromium', headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
    });
    page = await ctx.newPage();
    await page.goto(`http://127.0.0.1:${server.address().port}/examples/web/`);
  });
  after(async () => {
    await ctx?.close();
    server?.close();
  });

  const runWasi = (url, args, files) => runWasiInPage(page, url, args, files);

  test('Chromium reports relaxed SIMD through WebAssembly.validate', async () => {
    assert.equal(await page.evaluate((bytes) => WebAssembly.validate(new Uint8Array(bytes)), RELAXED_PROBE), true);
  });

  test('every kernel path equals scalar on random data', async () => {
    // the page has no shared fixtures: the int8 head's effect on them is checked by the WASI and native runs
    const r = await runWasiInPage(page, '/build-wasi-relaxed/tests/test_kernels.wasm', ['test_kernels'], {},
      ['TERNLM_TEST_NO_FIXTURES=1']);
    assert.match(r.out, /kernel paths on this machine: scalar wasm128 wasm_relaxed/);
    assert.match(r.out, /wasm_relaxed: 16-row group GEMMs tested/); // the relaxed entries, not SIMD128's
    assert.match(r.out, /wasm_relaxed: int4 head GEMM tested/);
    assert.match(r.out, /wasm128: int4 head GEMM tested/);
    assert.match(r.out, /\b[1-9]\d* passed, 0 failed/, r.out.split('\n').slice(-20).join('\n'));
    assert.equal(r.code, 0);
  });

  test('greedy text of the default model equals native', async () => {
    const expected = readFileSync(path.join(root, 'tests/expected/default-greedy-150.txt'), 'utf8');
    const r = await runWasi('/build-wasi-relaxed/ternlm.wasm',
      ['ternlm', 'run', '-m', '/data/m.gguf', '-p', 'Once upon a time', '-n', '150', '--temp', '0', '--no-display-prompt'],
      { 'm.gguf': '/models/ternlm-tinystories.gguf' });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, expected);
    const v = await runWasi('/build-wasi-relaxed/ternlm.wasm', ['ternlm', '--version']);
    assert.match(v.out, /kernels: wasm_relaxed/, 'the module picks its relaxed kernels');
  });

  test("greedy text with --head-quant i4 (the relaxed int4 GEMM) equals native's", { skip: !nativeCli && 'no native build/ternlm' },
    async () => {
      const args = ['run', '-p', 'Once upon a time', '-n', '150', '--temp', '0', '--no-display-prompt', '--head-quant', 'i4'];
      const expected = execFileSync(nativeCli, [...args, '-m', path.join(root, 'models/ternlm-tinystories.gguf')],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      const r = await runWasi('/build-wasi-relaxed/ternlm.wasm', ['ternlm', ...args, '-m', '/data/m.gguf'],
        { 'm.gguf': '/models/ternlm-tinystories.gguf' });
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, expected);
    });
});
