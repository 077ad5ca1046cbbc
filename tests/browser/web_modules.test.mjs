// The browser package's four modules in headless Chromium (cross-origin isolated page): pthreads or single-thread,
// relaxed SIMD or plain SIMD128. Chromium validates relaxed SIMD, so `simd: 'auto'` must pick the relaxed module,
// and every module must stream native's greedy text, with the file's F16 head and with `headQuant: 'i8'` / `'i4'`
// (native's `--head-quant i8` / `i4`: the same re-quantized head, the same bits; 'i4' runs each module's own int4
// GEMM, wasm128's or wasm_relaxed's). Relaxed SIMD is tested here and never in Node (Node 20
// miscomputes its dot: ../shared/specs/toolchain.md §4).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { serve } from '../../examples/serve.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MODEL = 'models/ternlm-tinystories.gguf';
const PROMPT = 'Once upon a time';
const expectedF16 = readFileSync(path.join(root, 'tests/expected/default-greedy-150.txt'), 'utf8');
const nativeCli = ['build/ternlm', 'build-release/ternlm'].map((p) => path.join(root, p)).find((p) => existsSync(p));
const dist = (name) => existsSync(path.join(root, 'web/dist', `${name}.wasm`));

// Native's text with a re-quantized head: the reference the page must match bit for bit (greedy argmax of the same
// logits). Computed once per head.
const nativeText = {};
function nativeHead(head) {
  nativeText[head] ??= execFileSync(nativeCli, ['run', '-m', path.join(root, MODEL), '-p', PROMPT, '-n', '150', '--temp', '0',
    '--no-display-prompt', '--head-quant', head], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return nativeText[head];
}

async function runOnPage(page, opts) {
  return page.evaluate(async ({ model, prompt, opts }) => {
    const { load } = await import('/web/src/index.js');
    const m = await load(model, { cache: 'none', ...opts });
    let text = '';
    for await (const piece of m.generate(prompt, { maxTokens: 150, temperature: 0 })) text += piece;
    const info = { simd: m.info.simd, threadsVariant: m.info.threadsVariant, kernels: m.info.kernels, headType: m.info.headType };
    await m.unload();
    return { text, info };
  }, { model: `/${MODEL}`, prompt: PROMPT, opts });
}

describe('browser package modules (relaxed SIMD / SIMD128, pthreads / single-thread)', () => {
  let server;
  let ctx;
  let page;
  let dir;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'ternlm-mods-'));
    server = await serve({ isolate: true });
    ctx = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await ctx.newPage();
    page.on('console', (m) => { if (m.type() === 'error') console.error('[page]', m.text()); });
    await page.goto(`http://127.0.0.1:${server.address().port}/examples/web/`);
  });
  after(async () => {
    await ctx?.close();
    server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('Chromium validates relaxed SIMD and `simd: auto` picks the relaxed module', { skip: !dist('ternlm-web-relaxed') && 'no relaxed module in web/dist' }, async () => {
    const { text, info } = await runOnPage(page, { threads: 1 });
    assert.deepEqual([info.simd, info.threadsVariant, info.kernels], ['relaxed', 'st', 'wasm_relaxed']);
    assert.equal(text, expectedF16);
  });

  for (const [threads, variant] of [[1, 'st'], [2, 'mt']]) {
    for (const simd of ['relaxed', 'simd128']) {
      const name = `ternlm-web${variant === 'mt' ? '-mt' : ''}${simd === 'relaxed' ? '-relaxed' : ''}`;
      test(`${name}: native's greedy text with the F16 head and with headQuant 'i8' and 'i4'`,
        { skip: (!dist(name) && `no ${name} in web/dist`) || (!nativeCli && 'no native build/ternlm for the i8 / i4 reference') },
        async () => {
          const opts = { threads, simd: simd === 'relaxed' ? 'auto' : 'simd128' };
          const f16 = await runOnPage(page, opts);
          assert.deepEqual([f16.info.simd, f16.info.threadsVariant], [simd, variant]);
          assert.equal(f16.text, expectedF16);
          for (const head of ['i8', 'i4']) {
            const q = await runOnPage(page, { ...opts, headQuant: head });
            assert.notEqual(q.info.headType, f16.info.headType, `the head was re-quantized (${head})`);
            assert.equal(q.text, nativeHead(head), `the ${head} head gives native's --head-quant ${head} text`);
          }
        });
    }
  }

  test("headQuant rejects anything but 'f16', 'i8' and 'i4'", async () => {
    const err = await page.evaluate(async (model) => {
      const { load } = await import('/web/src/index.js');
      try { await load(model, { cache: 'none', threads: 1, headQuant: 'q4' }); return 'loaded?!'; } catch (e) { return e.message; }
    }, `/${MODEL}`);
    assert.match(err, /headQuant must be 'f16', 'i8' or 'i4'/);
  });
});
