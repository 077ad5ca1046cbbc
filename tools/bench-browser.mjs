#!/usr/bin/env node
// Browser speed: the web package's modules in headless Chromium, on one model: single-thread and pthreads, each with
// plain SIMD128 and (where Chromium validates it) relaxed SIMD; the pthreads module at 1 and at 2 threads (the 2-thread
// target is against its own 1-thread speed), then a cached load() -> first token.
//   node tools/bench-browser.mjs MODEL.gguf [--tokens 64] [--repeat 4] [--st-only] [--head-quant f16|i8|i4]
// --st-only: the single-thread modules only (no pthreads rows, no cached load): a shorter hold of the CPU lock, and
// no need for the pthreads builds in web/dist/.
// --head-quant: the package's headQuant option for every load() (native's --head-quant; default the file's head).
// --repeat: how many times the prompt's sentence repeats (4 gives about 300 tokens on the 2B4T shape's vocabulary).
// The model is copied under tests/browser/tmp/ and served from 127.0.0.1 with COOP/COEP. Prints JSON lines.
import { copyFileSync, mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { serve } from '../examples/serve.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const model = process.argv[2];
const num = (name, dflt) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) || dflt : dflt);
const tokens = num('--tokens', 64);
const repeat = num('--repeat', 4);
const hq = process.argv.indexOf('--head-quant');
const headQuant = hq > 0 ? process.argv[hq + 1] : undefined;
if (!model) { console.error('usage: bench-browser.mjs MODEL.gguf [--tokens N] [--repeat N] [--st-only] [--head-quant f16|i8|i4]'); process.exit(2); }
const tmp = path.join(root, 'tests/browser/tmp');
mkdirSync(tmp, { recursive: true });
copyFileSync(model, path.join(tmp, 'bench.gguf'));
const server = await serve({ isolate: true });
const ctx = await chromium.launchPersistentContext(mkdtempSync(path.join(os.tmpdir(), 'ternlm-bench-')), {
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
});
const page = await ctx.newPage();
await page.goto(`http://127.0.0.1:${server.address().port}/examples/web/`);
// [load threads, simd, threads of each generate call]: load({threads: 1}) is the single-thread module
const stOnly = process.argv.includes('--st-only');
const configs = [[1, 'simd128', [1]], [1, 'auto', [1]], ...(stOnly ? [] : [[2, 'simd128', [1, 2]], [2, 'auto', [1, 2]]])];
for (const [loadThreads, simd, genThreads] of configs) {
  const rs = await page.evaluate(async ({ loadThreads, simd, genThreads, tokens, repeat, headQuant }) => {
    const { load } = await import('/web/src/index.js');
    const t0 = performance.now();
    const m = await load('/tests/browser/tmp/bench.gguf', { threads: loadThreads, simd, cache: 'none', headQuant });
    const loadMs = performance.now() - t0;
    const prompt = 'Once upon a time there was a little girl who lived in a house near the woods. '.repeat(repeat);
    const out = [];
    for (const threads of genThreads) {
      const runs = [];
      for (let i = 0; i < 3; i++) {
        for await (const _ of m.generate(prompt, { maxTokens: tokens, ignoreEos: true, temperature: 0, threads }));
        runs.push(m.stats);
      }
      const med = (f) => runs.map(f).sort((a, b) => a - b)[1];
      out.push({ threads, headQuant: headQuant || 'f16', variant: m.info.threadsVariant, simd: m.info.simd, kernels: m.info.kernels, loadMs: Math.round(loadMs),
        promptTokens: runs[0].promptTokens, prompt_tps: +med((s) => s.promptTokens / (s.promptMs / 1000)).toFixed(2),
        generate_tps: +med((s) => s.generatedTokens / (s.generateMs / 1000)).toFixed(2) });
    }
    await m.unload();
    return out;
  }, { loadThreads, simd, genThreads, tokens, repeat, headQuant });
  for (const r of rs) console.log(JSON.stringify({ crossOriginIsolated: true, ...r }));
}
// A cached model (OPFS, else the Cache API): load() once to fill the cache, then time load() -> first generated token.
const cached = stOnly ? null : await page.evaluate(async (headQuant) => {
  const { load, listCache } = await import('/web/src/index.js');
  const url = '/tests/browser/tmp/bench.gguf';
  await (await load(url, { threads: 2, headQuant })).unload();
  const inCache = (await listCache()).some((c) => c.url.endsWith(url));
  const t0 = performance.now();
  const m = await load(url, { threads: 2, headQuant });
  const loadedMs = performance.now() - t0;
  let firstMs = 0;
  for await (const _ of m.generate('Once upon a time', { maxTokens: 1, ignoreEos: true, temperature: 0 })) firstMs = performance.now() - t0;
  const { threadsVariant, simd, kernels } = m.info;
  await m.unload();
  return { inCache, opfs: !!navigator.storage?.getDirectory, variant: threadsVariant, simd, kernels, loadMs: Math.round(loadedMs), firstTokenMs: Math.round(firstMs) };
}, headQuant);
if (cached) console.log(JSON.stringify({ test: 'cached load() -> first token', ...cached }));
await ctx.close();
server.close();
