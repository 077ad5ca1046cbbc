#!/usr/bin/env node
// Browser speed: the single-thread and the pthreads web builds in headless Chromium, on one model.
//   node tools/bench-browser.mjs MODEL.gguf [--tokens 64]
// The model is copied under tests/browser/tmp/ and served from 127.0.0.1 with COOP/COEP. Prints JSON lines.
import { copyFileSync, mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { serve } from '../examples/serve.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const model = process.argv[2];
const tokens = Number(process.argv[process.argv.indexOf('--tokens') + 1] || 64) || 64;
if (!model) { console.error('usage: bench-browser.mjs MODEL.gguf [--tokens N]'); process.exit(2); }
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
for (const threads of [1, 2]) {
  const r = await page.evaluate(async ({ threads, tokens }) => {
    const { load } = await import('/web/src/index.js');
    const t0 = performance.now();
    const m = await load('/tests/browser/tmp/bench.gguf', { threads, cache: 'none' });
    const loadMs = performance.now() - t0;
    const prompt = 'Once upon a time there was a little girl who lived in a house near the woods. '.repeat(4);
    const runs = [];
    for (let i = 0; i < 3; i++) {
      for await (const _ of m.generate(prompt, { maxTokens: tokens, ignoreEos: true, temperature: 0 }));
      runs.push(m.stats);
    }
    await m.unload();
    const med = (f) => runs.map(f).sort((a, b) => a - b)[1];
    return { variant: m.info.threadsVariant, loadMs: Math.round(loadMs), promptTokens: runs[0].promptTokens,
      prompt_tps: +med((s) => s.promptTokens / (s.promptMs / 1000)).toFixed(2), generate_tps: +med((s) => s.generatedTokens / (s.generateMs / 1000)).toFixed(2) };
  }, { threads, tokens });
  console.log(JSON.stringify({ threads, crossOriginIsolated: true, ...r }));
}
// A cached model (OPFS, else the Cache API): load() once to fill the cache, then time load() -> first generated token.
const cached = await page.evaluate(async () => {
  const { load, listCache } = await import('/web/src/index.js');
  const url = '/tests/browser/tmp/bench.gguf';
  await (await load(url, { threads: 2 })).unload();
  const inCache = (await listCache()).some((c) => c.url.endsWith(url));
  const t0 = performance.now();
  const m = await load(url, { threads: 2 });
  const loadedMs = performance.now() - t0;
  let firstMs = 0;
  for await (const _ of m.generate('Once upon a time', { maxTokens: 1, ignoreEos: true, temperature: 0 })) firstMs = performance.now() - t0;
  const { threadsVariant } = m.info;
  await m.unload();
  return { inCache, opfs: !!navigator.storage?.getDirectory, variant: threadsVariant, loadMs: Math.round(loadedMs), firstTokenMs: Math.round(firstMs) };
});
console.log(JSON.stringify({ test: 'cached load() -> first token', ...cached }));
await ctx.close();
server.close();
