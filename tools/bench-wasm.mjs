#!/usr/bin/env node
// WebAssembly against native on one model, in one run: `ternlm bench` natively (1 thread), the WASI module under
// node:wasi, the Emscripten CLI under Node, and optionally the web builds in headless Chromium (tools/bench-browser.mjs).
// Prints a Markdown table of median tokens/s with the ratio to native. Take timings under the exclusive CPU lock:
//   flock -x /work/.cpu.lock node tools/bench-wasm.mjs MODEL.gguf [-p 64] [-n 16] [-r 3] [--head-quant q8_0] [--browser]
//     [--repeat 4]   (the web package's prompt: tools/bench-browser.mjs's --repeat)
//     [--browser-only]   (native and the Chromium rows only: a shorter exclusive hold of the CPU lock)
// Builds expected: build/ternlm, build-wasi/ternlm.wasm, build-em/ternlm.js (and web/dist/ for --browser).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const model = args.find((a, i) => !a.startsWith('-') && (i === 0 || !args[i - 1].startsWith('-')));
if (!model) {
  console.error('usage: bench-wasm.mjs MODEL.gguf [-p 64] [-n 16] [-r 3] [--head-quant q8_0] [--browser]');
  process.exit(2);
}
const pp = opt('-p', '64'), tg = opt('-n', '16'), reps = opt('-r', '3'), headQuant = opt('--head-quant', '');
const benchArgs = ['bench', '-m', path.resolve(model), '-p', pp, '-n', tg, '-r', reps, '-t', '1'];
if (headQuant) benchArgs.push('--head-quant', headQuant);

const targets = [
  { name: 'native, 1 thread', cmd: path.join(root, 'build/ternlm'), args: benchArgs },
  { name: 'WASI (node:wasi)', cmd: process.execPath,
    args: ['--no-warnings', path.join(root, 'node/ternlm-wasi.mjs'), '--dir=/', path.join(root, 'build-wasi/ternlm.wasm'), ...benchArgs] },
  // Debian's Emscripten runtime needs Node's fetch off to read files (as in tools/test.sh)
  { name: 'Emscripten CLI (Node)', cmd: process.execPath,
    args: ['--no-experimental-fetch', path.join(root, 'build-em/ternlm.js'), ...benchArgs] },
];

// "pp64  1 threads  wasm128  median  12.3 tokens/s ..." -> { pp: 12.3, kernels: 'wasm128' }
function parseBench(text) {
  const out = {};
  for (const m of text.matchAll(/^\s*(pp|tg)\d+\s+\d+ threads\s+(\S+)\s+median\s+([\d.]+) tokens\/s/gm)) {
    out[m[1]] = Number(m[3]);
    out.kernels = m[2];
  }
  return out;
}

const rows = [];
const browserOnly = args.includes('--browser-only');
for (const t of browserOnly ? targets.slice(0, 1) : targets) {
  const bin = t.cmd === process.execPath ? t.args.find((a) => /\.(wasm|js)$/.test(a)) : t.cmd;
  if (!existsSync(bin)) {
    rows.push({ name: t.name, note: `not built (${path.relative(root, bin)})` });
    continue;
  }
  const r = spawnSync(t.cmd, t.args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  const got = parseBench(`${r.stdout}\n${r.stderr}`);
  if (r.status !== 0 || got.pp === undefined && got.tg === undefined)
    rows.push({ name: t.name, note: `failed (exit ${r.status}): ${(r.stderr || '').trim().split('\n').pop()}` });
  else rows.push({ name: t.name, ...got });
}

if (args.includes('--browser') || browserOnly) {
  // The WASI modules (SIMD128 and relaxed) in headless Chromium, running the same `ternlm bench` on the shim.
  const { chromium } = await import('playwright-core');
  const { serve } = await import('../examples/serve.mjs');
  const { RELAXED_PROBE, runWasiInPage } = await import('./wasi-page.mjs');
  const rel = path.relative(root, path.resolve(model));
  if (rel.startsWith('..')) throw new Error('--browser: the model must lie inside the repository (it is served from there)');
  const server = await serve({});
  const ctx = await chromium.launchPersistentContext(mkdtempSync(path.join(os.tmpdir(), 'ternlm-bench-wasm-')), {
    executablePath: '/usr/bin/chromium', headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
  });
  const page = await ctx.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/examples/web/`);
  const relaxed = await page.evaluate((b) => WebAssembly.validate(new Uint8Array(b)), RELAXED_PROBE);
  for (const [name, dir] of [['Chromium, WASI SIMD128', 'build-wasi'], ['Chromium, WASI relaxed SIMD', 'build-wasi-relaxed']]) {
    if (!existsSync(path.join(root, dir, 'ternlm.wasm'))) { rows.push({ name, note: `not built (${dir})` }); continue; }
    if (dir.endsWith('relaxed') && !relaxed) { rows.push({ name, note: 'this Chromium lacks relaxed SIMD' }); continue; }
    const r = await runWasiInPage(page, `/${dir}/ternlm.wasm`, ['ternlm', ...benchArgs.slice(0, 2), '/data/m.gguf', ...benchArgs.slice(3)],
      { 'm.gguf': `/${rel}` });
    const got = parseBench(`${r.out}\n${r.err}`);
    rows.push(r.code === 0 ? { name, ...got } : { name, note: `failed (exit ${r.code}): ${r.err.trim().split('\n').pop()}` });
  }
  await ctx.close();
  server.close();
  // the npm package's Emscripten builds (single-thread, pthreads) through the Worker: their own prompt and timing
  const b = spawnSync(process.execPath, [path.join(root, 'tools/bench-browser.mjs'), path.resolve(model), '--tokens', tg,
    '--repeat', opt('--repeat', '4'), ...(headQuant ? ['--head-quant', headQuant] : [])],
    { encoding: 'utf8', maxBuffer: 1 << 26 });
  const lines = (b.stdout || '').split('\n').filter((l) => l.startsWith('{'));
  if (!lines.length) rows.push({ name: 'Chromium, web package', note: `failed: ${(b.stderr || '').trim().split('\n').pop()}` });
  for (const l of lines) {
    const j = JSON.parse(l);
    if (j.test) { // the cached load() -> first token line
      rows.push({ name: `Chromium, web package ${j.variant} ${j.simd}: cached load() -> first token`, kernels: j.kernels,
        note: `${j.firstTokenMs} ms (load() ${j.loadMs} ms; ${j.inCache ? (j.opfs ? 'from OPFS' : 'from the Cache API') : 'NOT cached'})` });
      continue;
    }
    rows.push({ name: `Chromium, web package ${j.variant} ${j.simd}, ${j.threads} thread${j.threads > 1 ? 's' : ''}`, pp: j.prompt_tps,
      tg: j.generate_tps, kernels: j.kernels, note: `prompt of ${j.promptTokens} tokens; load() ${j.loadMs} ms` });
  }
}

const native = rows[0];
const ratio = (v, n) => (v !== undefined && n ? ` (${Math.round((100 * v) / n)}%)` : '');
console.log(`model ${path.basename(model)}, pp${pp} / tg${tg}, median of ${reps}${headQuant ? `, --head-quant ${headQuant}` : ''}\n`);
console.log('| target | kernels | pp tokens/s (of native) | tg tokens/s (of native) | note |');
console.log('|---|---|---|---|---|');
for (const r of rows)
  console.log(`| ${r.name} | ${r.kernels ?? ''} | ${r.pp ?? ''}${ratio(r.pp, native.pp)} | ${r.tg ?? ''}${ratio(r.tg, native.tg)} | ${r.note ?? ''} |`);
