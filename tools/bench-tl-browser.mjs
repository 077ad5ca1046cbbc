#!/usr/bin/env node
// Runs tools/bench_tl.c's WASI module in headless Chromium (through tools/wasi-page.mjs), for the relaxed-SIMD build
// that Node 20 is not trusted with. The module must lie inside the repository (it is served from there):
//   flock -x /work/.cpu.lock node tools/bench-tl-browser.mjs build-wasi-relaxed/btl.wasm token 9 2
import path from 'node:path';
import os from 'node:os';
import { mkdtempSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const [wasm, ...args] = process.argv.slice(2);
if (!wasm) {
  console.error('usage: bench-tl-browser.mjs MODULE.wasm MODE [reps] [arg] [kblock rchunk]');
  process.exit(2);
}
const rel = path.relative(root, path.resolve(wasm));
if (rel.startsWith('..')) throw new Error('the module must lie inside the repository');
const { chromium } = await import('playwright-core');
const { serve } = await import('../examples/serve.mjs');
const { RELAXED_PROBE, runWasiInPage } = await import('./wasi-page.mjs');
const server = await serve({});
const ctx = await chromium.launchPersistentContext(mkdtempSync(path.join(os.tmpdir(), 'ternlm-bench-tl-')), {
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
});
try {
  const page = await ctx.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/examples/web/`);
  const relaxed = await page.evaluate((b) => WebAssembly.validate(new Uint8Array(b)), RELAXED_PROBE);
  console.log(`Chromium ${ctx.browser()?.version() ?? ''}, relaxed SIMD ${relaxed ? 'available' : 'missing'}`);
  const r = await runWasiInPage(page, `/${rel}`, ['bench_tl', ...args]);
  process.stdout.write(r.out);
  process.stderr.write(r.err);
  process.exitCode = r.code;
} finally {
  await ctx.close();
  server.close();
}
