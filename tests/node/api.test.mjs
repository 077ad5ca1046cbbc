// The Node API's request rules (issue 11 and 14): overlapping calls are queued, never interleaved in one session;
// maxTokens: -1 runs until the context is full (as the CLI's -n -1); per-call options such as contextSize do not
// stick to later calls; and the OpenAI-shaped chat.completions.create streams the same text as chat().
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { load } from '../../node/index.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MODEL = path.join(root, 'models', 'ternlm-tinystories.gguf');
const native = process.env.TERNLM_NATIVE || path.join(root, 'build', 'ternlm');
const greedy = { temperature: 0 };

async function text(iterator) {
  let s = '';
  for await (const piece of iterator) s += piece;
  return s;
}

let model;
before(async () => { model = await load(MODEL); });
after(async () => { await model?.unload(); });

test('overlapping generate() calls are queued: each gives the text it gives alone', async () => {
  const prompts = ['Once upon a time', 'The little dog', 'Tom and Sue went'];
  const alone = [];
  for (const p of prompts) alone.push(await text(model.generate(p, { ...greedy, maxTokens: 24 })));
  const together = await Promise.all(prompts.map((p) => text(model.generate(p, { ...greedy, maxTokens: 24 }))));
  assert.deepEqual(together, alone);
  assert.notEqual(alone[0], alone[1], 'different prompts give different text');
});

test('a chat and a generation that overlap do not mix', async () => {
  const messages = [{ role: 'user', content: 'Tell me a story.' }];
  const chatAlone = await text(model.chat(messages, { ...greedy, maxTokens: 16 }));
  const genAlone = await text(model.generate('Once upon a time', { ...greedy, maxTokens: 16 }));
  const [c, g] = await Promise.all([text(model.chat(messages, { ...greedy, maxTokens: 16 })),
    text(model.generate('Once upon a time', { ...greedy, maxTokens: 16 }))]);
  assert.equal(c, chatAlone);
  assert.equal(g, genAlone);
});

test('a generate() between two chat turns does not corrupt the conversation', async () => {
  const o = { ...greedy, maxTokens: 12 };
  const first = [{ role: 'user', content: 'Tell me a story.' }];
  const reply = await text(model.chat(first, o));
  const conv = [...first, { role: 'assistant', content: reply }, { role: 'user', content: 'More please.' }];
  await text(model.generate('Once upon a time', o)); // clears the KV cache the conversation lived in
  const after = await text(model.chat(conv, o));
  const other = await load(MODEL);
  const fresh = await text(other.chat(conv, o));
  await other.unload();
  assert.equal(after, fresh, 'the second turn equals the same conversation on a fresh model');
});

test('an abort while queued rejects without waiting, and the queue goes on', async () => {
  const ac = new AbortController();
  const first = text(model.generate('Once upon a time', { ...greedy, maxTokens: 40 }));
  const second = text(model.generate('Once upon a time', { ...greedy, maxTokens: 40, signal: ac.signal }));
  ac.abort();
  await assert.rejects(second, { name: 'AbortError' });
  assert.ok((await first).length > 0);
});

test('maxTokens: -1 generates until the context is full, as native -n -1 does', () => {
  const nativeText = execFileSync(native, ['run', '-m', MODEL, '-p', 'Once upon a time', '-n', '-1', '-c', '40', '--temp', '0',
    '--ignore-eos', '--no-display-prompt'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  return (async () => {
    const js = await text(model.generate('Once upon a time', { ...greedy, maxTokens: -1, contextSize: 40, ignoreEos: true }));
    assert.ok(js.length > 0, 'maxTokens: -1 produced text');
    assert.equal(js, nativeText);
    assert.equal(model.stats.contextTokens + model.stats.generatedTokens, 40 + 1, 'generated until the context was full');
    assert.equal(model.stats.finishReason, 'length');
    await assert.rejects(text(model.generate('x', { maxTokens: 1.5 })), /maxTokens must be a whole number/);
  })();
});

test("headQuant 'i8' and 'i4' give native's --head-quant text (the SIMD128 module's int8 and int4 GEMMs)", async () => {
  for (const head of ['i8', 'i4']) {
    const nativeText = execFileSync(native, ['run', '-m', MODEL, '-p', 'Once upon a time', '-n', '100', '--temp', '0',
      '--no-display-prompt', '--head-quant', head], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    const m = await load(MODEL, { headQuant: head });
    try {
      assert.equal(m.info.headType, `${head.toUpperCase()} (from F16)`);
      assert.equal(await text(m.generate('Once upon a time', { ...greedy, maxTokens: 100 })), nativeText);
    } finally {
      await m.unload();
    }
  }
  await assert.rejects(load(MODEL, { headQuant: 'q4' }), /headQuant must be 'f16', 'i8' or 'i4'/);
});

test('contextSize applies to its own call only', async () => {
  const fresh = await text(model.generate('Once upon a time', { ...greedy, maxTokens: 60, ignoreEos: true }));
  await text(model.generate('Once upon a time', { ...greedy, maxTokens: -1, contextSize: 32 }));
  assert.ok(model.stats.contextTokens + model.stats.generatedTokens <= 33);
  const later = await text(model.generate('Once upon a time', { ...greedy, maxTokens: 60, ignoreEos: true }));
  assert.equal(model.stats.generatedTokens, 60, 'the later call was not cut at the earlier call\'s 32-token context');
  assert.equal(later, fresh);
});

test('chat.completions.create: the whole completion, and the same text streamed in chunks', async () => {
  const messages = [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Tell me a story.' }];
  const viaChat = await text(model.chat(messages, { ...greedy, maxTokens: 20 }));
  const r = await model.chat.completions.create({ messages, max_tokens: 20, temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, viaChat);
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.equal(r.usage.completion_tokens, model.stats.generatedTokens);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.ok(r.usage.prompt_tokens > 5);

  const chunks = [];
  for await (const c of await model.chat.completions.create({ messages, max_tokens: 20, temperature: 0, stream: true })) chunks.push(c);
  const last = chunks.at(-1);
  assert.ok(chunks.length >= 2);
  assert.equal(chunks[0].object, 'chat.completion.chunk');
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  assert.equal(chunks.slice(0, -1).map((c) => c.choices[0].delta.content).join(''), viaChat);
  assert.ok(chunks.slice(0, -1).every((c) => c.choices[0].finish_reason === null && c.id === last.id));
  assert.deepEqual(last.choices[0].delta, {});
  assert.equal(last.choices[0].finish_reason, r.choices[0].finish_reason);
  assert.deepEqual(last.usage, r.usage);
});

test('chat.completions.create: finish_reason, stop strings, seed, signal and bad requests', async () => {
  const messages = [{ role: 'user', content: 'Tell me a story.' }];
  const short = await model.chat.completions.create({ messages, max_tokens: 3, temperature: 0 });
  assert.equal(short.choices[0].finish_reason, 'length');
  assert.equal(short.usage.completion_tokens, 3);
  const long = await model.chat.completions.create({ messages, max_tokens: 40, temperature: 0 });
  const word = long.choices[0].message.content.trim().split(/\s+/)[2];
  const stopped = await model.chat.completions.create({ messages, max_tokens: 40, temperature: 0, stop: word });
  assert.equal(stopped.choices[0].finish_reason, 'stop');
  assert.equal(stopped.choices[0].message.content, long.choices[0].message.content.slice(0, long.choices[0].message.content.indexOf(word)));
  const seeded = async () => (await model.chat.completions.create({ messages, max_tokens: 12, temperature: 1, seed: 42 })).choices[0].message.content;
  assert.equal(await seeded(), await seeded(), 'the same seed gives the same text');
  const ac = new AbortController();
  await assert.rejects(async () => {
    let n = 0;
    for await (const c of await model.chat.completions.create({ messages, max_tokens: 200, stream: true, signal: ac.signal })) {
      if (c.choices[0].delta.content && ++n === 2) ac.abort();
    }
  }, { name: 'AbortError' });
  await assert.rejects(model.chat.completions.create({ messages: [] }), /messages must be a non-empty array/);
  await assert.rejects(model.chat.completions.create({ messages: [{ role: 'tool', content: 'x' }] }), { name: 'UnsupportedError' });
  await assert.rejects(model.chat.completions.create({ messages, n: 2 }), /only n = 1/);
});

// issue 16: a thinking model (Bonsai, Qwen3's template): ModelInfo.thinking, chat({ reasoning, thinking }) and the
// OpenAI shape's reasoning_format / chat_template_kwargs. The fixture's greedy reply has no <think> block, so every
// mode must give the text unchanged; the split itself is the C core's, tested by test_reasoning (also under wasm).
test('Bonsai: reasoning modes pass a plain reply through; thinking: false adds the empty think block', async () => {
  const q = await load(path.join(root, '..', 'shared', 'fixtures', 'qwen3-bonsai-q1_0.gguf'));
  try {
    assert.equal(q.info.thinking, true);
    assert.equal(model.info.thinking, false);
    const messages = [{ role: 'user', content: 'Hi' }];
    const o = { ...greedy, maxTokens: 6, ignoreEos: true };
    const shown = await text(q.chat(messages, o));
    const nDefault = q.stats.promptTokens;
    assert.ok(shown.length > 0);
    const parts = [];
    for await (const p of q.chat(messages, { ...o, reasoning: 'separate' })) parts.push(p);
    assert.ok(parts.every((p) => typeof p === 'string'), 'no reasoning parts for a reply without <think>');
    assert.equal(parts.join(''), shown);
    assert.equal(await text(q.chat(messages, { ...o, reasoning: 'hide' })), shown);
    await text(q.chat(messages, { ...o, thinking: false }));
    assert.equal(q.stats.promptTokens, nDefault + 4, '<think>, \\n\\n, </think>, \\n\\n after the assistant header');
    await assert.rejects(text(q.chat(messages, { ...o, reasoning: 'sometimes' })), /reasoning must be/);

    const plain = await text(q.chat(messages, { ...greedy, maxTokens: 6 }));
    const r = await q.chat.completions.create({ messages, max_tokens: 6, temperature: 0 });
    assert.equal(r.choices[0].message.content, plain);
    assert.equal(r.choices[0].message.reasoning_content, undefined);
    const off = await q.chat.completions.create({ messages, max_tokens: 6, temperature: 0, chat_template_kwargs: { enable_thinking: false } });
    assert.equal(off.usage.prompt_tokens, r.usage.prompt_tokens + 4);
    await assert.rejects(q.chat.completions.create({ messages, reasoning_format: 'xml' }), /reasoning_format must be/);
  } finally {
    await q.unload();
  }
});
