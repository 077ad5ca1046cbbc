// The npm package as a user gets it (issue 14): `npm pack` web/, install the tarball into an empty folder, then
// import `ternlm` from Node (the "node" export) and from a page in headless Chromium (the "browser" export, through
// an import map made from the package's exports), and generate; tsc type-checks a consumer of each entry point.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MODEL = path.join(root, 'models', 'ternlm-tinystories.gguf');
const expected150 = readFileSync(path.join(root, 'tests/expected/default-greedy-150.txt'), 'utf8');
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');

let tmp;
let app; // the consumer folder the tarball is installed into
let files; // what the tarball holds

before(() => {
  assert.ok(existsSync(path.join(root, 'web/dist/ternlm-web.wasm')), 'web/dist is empty: build the Emscripten target ternlm_web first');
  tmp = mkdtempSync(path.join(os.tmpdir(), 'ternlm-pack-'));
  const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: path.join(root, 'web') }).toString())[0];
  files = packed.files.map((f) => f.path);
  app = path.join(tmp, 'app');
  mkdirSync(app);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', path.join(tmp, packed.filename)], { cwd: app, stdio: 'ignore' });
});
after(() => { if (tmp) rmSync(tmp, { recursive: true, force: true }); });

test('the tarball is the package: entry points, the wasm build, types; nothing else', () => {
  for (const f of ['package.json', 'src/index.js', 'src/worker.js', 'src/node.js', 'src/engine.js', 'src/completions.js',
    'dist/ternlm-web.mjs', 'dist/ternlm-web.wasm', 'index.d.ts', 'node.d.ts', 'types.d.ts']) assert.ok(files.includes(f), `${f} is packed`);
  assert.deepEqual(files.filter((f) => !/^(src|dist)\/|^[a-z]+\.d\.ts$|^package\.json$/.test(f)), []);
  const pkg = JSON.parse(readFileSync(path.join(app, 'node_modules/ternlm/package.json'), 'utf8'));
  assert.equal(pkg.name, 'ternlm');
});

test('Node: import "ternlm" from the installed package resolves to the Node API and generates', () => {
  writeFileSync(path.join(app, 'node-app.mjs'), `
    import { load, FormatError } from 'ternlm';
    const model = await load(process.argv[2]);
    let text = '';
    for await (const piece of model.generate('Once upon a time', { maxTokens: 150, temperature: 0 })) text += piece;
    const r = await model.chat.completions.create({ messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: 12, temperature: 0 });
    await model.unload();
    console.log(JSON.stringify({ resolved: import.meta.resolve('ternlm'), text, reply: r.choices[0].message.content,
      usage: r.usage, formatError: typeof FormatError }));
  `);
  const out = JSON.parse(execFileSync('node', ['node-app.mjs', MODEL], { cwd: app }).toString());
  assert.match(out.resolved, /node_modules\/ternlm\/src\/node\.js$/);
  assert.equal(out.text, expected150, 'the installed package gives native\'s greedy text');
  assert.ok(out.reply.length > 0);
  assert.equal(out.usage.completion_tokens > 0, true);
  assert.equal(out.formatError, 'function');
  nodeReply = out.reply;
});
let nodeReply;

test('TypeScript: the Node and browser types check a consumer, and reject wrong use', () => {
  const common = { strict: true, noEmit: true, target: 'es2022', lib: ['es2022', 'dom'], skipLibCheck: false, types: [] };
  writeFileSync(path.join(app, 'tsconfig.node.json'), JSON.stringify({
    compilerOptions: { ...common, module: 'node16', moduleResolution: 'node16' }, files: ['check-node.mts'] }));
  writeFileSync(path.join(app, 'tsconfig.browser.json'), JSON.stringify({
    compilerOptions: { ...common, module: 'esnext', moduleResolution: 'bundler', customConditions: ['browser'] }, files: ['check-browser.ts'] }));
  writeFileSync(path.join(app, 'check-node.mts'), `
    import { load, FormatError, type ChatCompletionChunk, type Stats } from 'ternlm';
    const model = await load('model.gguf', { onProgress: ({ loaded, total }) => void (loaded / total) });
    for await (const piece of model.generate('Hi', { maxTokens: -1, repeatLastN: 32, threads: 2, contextSize: 64, stop: ['.'] })) piece.toUpperCase();
    for await (const piece of model.chat([{ role: 'user', content: 'Hi' }], { temperature: 0 })) piece.length;
    const ids: number[] = model.tokenize('Hi', { addSpecial: true });   // synchronous in Node
    const text: string = model.detokenize(ids);
    const whole = await model.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8, stop: '.' });
    const content: string = whole.choices[0].message.content;
    const finish: 'stop' | 'length' = whole.choices[0].finish_reason;
    const stream = await model.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], stream: true, seed: 1 });
    for await (const chunk of stream) { const c: ChatCompletionChunk = chunk; c.choices[0]?.delta.content?.length; c.usage?.total_tokens; }
    const s: Stats | undefined = model.stats;
    s?.finishReason;
    // @ts-expect-error maxTokens is a number
    model.generate('Hi', { maxTokens: '5' });
    // @ts-expect-error the Node API loads from a path, not a URL object
    await load(new URL('http://x/model.gguf'));
    // @ts-expect-error only n = 1
    await model.chat.completions.create({ messages: [], n: 2 });
    new FormatError('x').code.length; text.length; content.length; finish.length;
  `);
  writeFileSync(path.join(app, 'check-browser.ts'), `
    import { load, clearCache, listCache, HttpError, type Progress } from 'ternlm';
    const model = await load('/model.gguf', { onProgress: (p: Progress) => void p.fromCache, cache: 'none', threads: 1 });
    model.info.threadsVariant satisfies 'st' | 'mt';
    const ids: number[] = await model.tokenize('Hi');   // a Promise in the browser (the Worker answers)
    // @ts-expect-error tokenize returns a Promise in the browser
    const wrong: number[] = model.tokenize('Hi');
    for await (const piece of model.generate('Hi', { repeatLastN: 64, threads: 4, signal: new AbortController().signal })) piece.trim();
    const r = await model.chat.completions.create({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'Hi' }] }] });
    r.usage.prompt_tokens_details.cached_tokens.toFixed();
    await clearCache(); (await listCache())[0]?.url; new HttpError(404, '/x').status; ids.length; wrong.length;
  `);
  for (const p of ['tsconfig.node.json', 'tsconfig.browser.json']) {
    try {
      execFileSync('node', [tsc, '-p', p], { cwd: app, stdio: 'pipe' });
    } catch (e) {
      assert.fail(`tsc -p ${p}:\n${e.stdout}${e.stderr}`);
    }
  }
});

// A static server for the consumer folder, with the model at /model.gguf; `isolate` sends COOP/COEP (so the
// page is cross-origin isolated and the package picks its pthreads build).
function serveApp(dir, isolate) {
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = rel === '/model.gguf' ? MODEL : path.join(dir, rel === '/' ? 'index.html' : rel);
    let st;
    try { st = file.startsWith(dir) || file === MODEL ? statSync(file) : null; } catch { st = null; }
    if (!st?.isFile()) { res.writeHead(404).end(); return; }
    const isolation = isolate ? { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } : {};
    res.writeHead(200, { 'Content-Type': types[path.extname(file)] || 'application/octet-stream', 'Content-Length': st.size, ...isolation });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

for (const isolate of [false, true]) test(`Chromium${isolate ? ', cross-origin isolated (pthreads build)' : ''}: a page imports "ternlm" through the package's browser export and generates in a Worker`, async () => {
  const pkg = JSON.parse(readFileSync(path.join(app, 'node_modules/ternlm/package.json'), 'utf8'));
  const entry = `/node_modules/ternlm/${pkg.exports['.'].browser.default.replace(/^\.\//, '')}`;
  writeFileSync(path.join(app, 'index.html'), `<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,">
    <script type="importmap">${JSON.stringify({ imports: { ternlm: entry } })}</script>
    <script type="module">
      import { load } from 'ternlm';
      try {
        const model = await load('/model.gguf', { cache: 'none' });
        // until the context is full, in a 32-token context that must not carry over to the next call
        for await (const piece of model.generate('Once upon a time', { maxTokens: -1, contextSize: 32, ignoreEos: true, temperature: 0 }));
        const full = model.stats;
        let text = '';
        for await (const piece of model.generate('Once upon a time', { maxTokens: 150, temperature: 0 })) text += piece;
        const chunks = [];
        for await (const c of await model.chat.completions.create({ messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: 12, temperature: 0, stream: true })) chunks.push(c);
        window.result = { full, text, kernels: model.info.kernels, simd: model.info.simd, variant: model.info.threadsVariant, reply: chunks.slice(0, -1).map((c) => c.choices[0].delta.content).join(''), last: chunks.at(-1) };
        await model.unload();
      } catch (e) { window.result = { error: e.name + ': ' + e.message }; }
    </script>`);
  const server = await serveApp(app, isolate);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update'] });
  try {
    const page = await browser.newPage();
    page.on('console', (m) => { if (m.type() === 'error') console.error('[page]', m.text()); });
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    await page.waitForFunction(() => window.result, null, { timeout: 120000 });
    const r = await page.evaluate(() => window.result);
    assert.equal(r.error, undefined);
    // Chromium validates relaxed SIMD: the package's relaxed module where it was built (README: which module a page gets)
    assert.equal(r.kernels, r.simd === 'relaxed' ? 'wasm_relaxed' : 'wasm128');
    assert.equal(r.variant, isolate ? 'mt' : 'st');
    assert.equal(r.full.contextTokens + r.full.generatedTokens, 32 + 1, 'maxTokens: -1 filled the 32-token context');
    assert.equal(r.full.finishReason, 'length');
    assert.equal(r.text, expected150, 'the page gives native\'s greedy text (150 tokens: contextSize 32 did not stick)');
    if (nodeReply !== undefined) assert.equal(r.reply, nodeReply, 'browser and Node give the same chat reply');
    assert.ok(['stop', 'length'].includes(r.last.choices[0].finish_reason));
    assert.ok(r.last.usage.completion_tokens > 0);
  } finally {
    await browser.close();
    server.close();
  }
});
