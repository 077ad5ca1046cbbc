// One runtime, three targets: native, WASI (node:wasi) and Emscripten (the Node API over the browser build) give
// the same greedy text on every conformance fixture and on the default model; the Node API streams, chats with
// KV-cache reuse, aborts and stays usable, and reports typed errors.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { FormatError, load } from '../../node/index.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const F = path.join(root, '..', 'shared', 'fixtures');
const native = process.env.TERNLM_NATIVE || path.join(root, 'build', 'ternlm');
const wasi = process.env.TERNLM_WASI || path.join(root, 'build-wasi', 'ternlm.wasm');
const cases = [
  ['b158-llama3-i2s.gguf', 'Hello world'],
  ['bitnet-spm-tq2_0.gguf', 'The quick brown fox'],
  ['bitnet-spm-tq1_0.gguf', 'The quick brown fox'],
  ['llama-stories260k.gguf', 'Once upon a time'],
  [path.join(root, 'models', 'ternlm-tinystories.gguf'), 'Once upon a time'],
];

const runArgs = (model, prompt) => ['run', '-m', model, '-p', prompt, '-n', '32', '--temp', '0', '--no-display-prompt'];

for (const [name, prompt] of cases) {
  test(`greedy text on ${path.basename(name)}: native == WASI == Emscripten`, async () => {
    const model = path.resolve(F, name);
    const a = execFileSync(native, runArgs(model, prompt), { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    const b = execFileSync('node', ['--no-warnings', path.join(root, 'node', 'ternlm-wasi.mjs'), '--dir=/', wasi, ...runArgs(model, prompt)],
      { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    const m = await load(model);
    let c = '';
    for await (const piece of m.generate(prompt, { maxTokens: 32, temperature: 0 })) c += piece;
    await m.unload();
    assert.ok(a.length > 0, 'native wrote text');
    assert.equal(b, a, 'WASI differs from native');
    assert.equal(c, a, 'Emscripten differs from native');
  });
}

test('Node API: progress, streaming, chat that evaluates only new tokens, abort, tokenize', async () => {
  const events = [];
  const m = await load(path.join(root, 'models', 'ternlm-tinystories.gguf'), { onProgress: (p) => events.push(p) });
  assert.equal(events.at(-1).loaded, events.at(-1).total);
  assert.equal(m.info.arch, 'bitnet-b1.58');
  assert.equal(m.info.kernels, 'wasm128');
  const ids = m.tokenize('Once upon a time', { addSpecial: true });
  assert.equal(ids[0], m.info.bos);
  assert.equal(m.detokenize(ids.slice(1)), 'Once upon a time');
  let first = '';
  for await (const p of m.chat([{ role: 'user', content: 'Tell me a story.' }], { maxTokens: 8, temperature: 0 })) first += p;
  const turn1 = m.stats.promptTokens;
  for await (const p of m.chat([{ role: 'user', content: 'Tell me a story.' }, { role: 'assistant', content: first },
    { role: 'user', content: 'More' }], { maxTokens: 8, temperature: 0 }));
  assert.ok(m.stats.promptTokens < turn1 + 8, `turn 2 evaluated ${m.stats.promptTokens} prompt tokens; turn 1 was ${turn1}`);
  const ac = new AbortController();
  let n = 0;
  await assert.rejects(async () => {
    for await (const p of m.generate('Once upon a time', { maxTokens: 500, ignoreEos: true, signal: ac.signal })) if (++n === 3) ac.abort();
  }, { name: 'AbortError' });
  let again = '';
  for await (const p of m.generate('Once upon a time', { maxTokens: 150, temperature: 0 })) again += p;
  assert.equal(again, readFileSync(path.join(root, 'tests/expected/default-greedy-150.txt'), 'utf8'));
  let stopped = '';
  for await (const p of m.generate('Once upon a time', { maxTokens: 150, temperature: 0, stop: ['Lily'] })) stopped += p;
  assert.equal(stopped, ', there was a little girl named ', 'stop strings end the text before the match');
  await m.unload();
});

test('Node API: typed errors for bad files', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ternlm-node-'));
  writeFileSync(path.join(dir, 'bad.gguf'), 'this is not a model, just text that is long enough to be read');
  await assert.rejects(load(path.join(dir, 'bad.gguf')), (e) => e instanceof FormatError && /not a GGUF file/.test(e.message));
  writeFileSync(path.join(dir, 'cut.gguf'), readFileSync(path.join(F, 'llama-stories260k.gguf')).subarray(0, 50000));
  await assert.rejects(load(path.join(dir, 'cut.gguf')), (e) => e instanceof FormatError);
});
