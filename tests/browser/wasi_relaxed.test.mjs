// The relaxed-SIMD WASI module (build-wasi-relaxed, -DTERNLM_WASM_RELAXED=ON) in headless Chromium, never in Node
// (Node 20 miscomputes relaxed dots, ../shared/specs/toolchain.md §4): feature detection by WebAssembly.validate,
// every kernel path (scalar, wasm128, wasm_relaxed) against scalar on random data (tests/test_kernels.c), and the
// CLI's greedy text equal to native's. The modules run on @bjorn3/browser_wasi_shim with the model in memory.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { serve } from '../../examples/serve.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const build = path.join(root, 'build-wasi-relaxed');
const built = existsSync(path.join(build, 'ternlm.wasm')) && existsSync(path.join(build, 'tests/test_kernels.wasm'));

// (v128, v128, v128) -> v128 through i32x4.relaxed_dot_i8x16_i7x16_add_s (0xfd 0x113): valid only where relaxed SIMD is
export const RELAXED_PROBE = [0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 123, 123, 123, 1, 123, 3, 2, 1, 0, 10, 13, 1, 11, 0,
  32, 0, 32, 1, 32, 2, 253, 147, 2, 11];

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

  // runs a WASI command module; files maps names under /data to URLs fetched first
  const runWasi = (url, args, files = {}) => page.evaluate(async ({ url, args, files }) => {
    const { WASI, File, OpenFile, ConsoleStdout, PreopenDirectory } = await import('/node_modules/@bjorn3/browser_wasi_shim/dist/index.js');
    const contents = new Map();
    for (const [name, u] of Object.entries(files)) contents.set(name, new File(await (await fetch(u)).arrayBuffer(), { readonly: true }));
    const out = [];
    const err = [];
    const dec = [new TextDecoder(), new TextDecoder()];
    const fds = [new OpenFile(new File([])), new ConsoleStdout((b) => out.push(dec[0].decode(b, { stream: true }))),
      new ConsoleStdout((b) => err.push(dec[1].decode(b, { stream: true }))), new PreopenDirectory('/data', contents)];
    const wasi = new WASI(args, [], fds, { debug: false });
    const { instance } = await WebAssembly.instantiateStreaming(fetch(url), { wasi_snapshot_preview1: wasi.wasiImport });
    const code = wasi.start(instance);
    return { code, out: out.join(''), err: err.join('') };
  }, { url, args, files });

  test('Chromium reports relaxed SIMD through WebAssembly.validate', async () => {
    assert.equal(await page.evaluate((bytes) => WebAssembly.validate(new Uint8Array(bytes)), RELAXED_PROBE), true);
  });

  test('every kernel path equals scalar on random data', async () => {
    const r = await runWasi('/build-wasi-relaxed/tests/test_kernels.wasm', ['test_kernels']);
    assert.match(r.out, /kernel paths on this machine: scalar wasm128 wasm_relaxed/);
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
});
