// The official openai npm client against a running ternlm-server: chat and completions, streaming and
// not, usage and finish_reason, stop strings, seeds, and an abort mid-stream that frees the slot at once.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';

import { metrics, startServer, waitMetrics } from './helpers.mjs';

let srv, client;
before(async () => {
  srv = await startServer(['-np', '2', '-t', '2']);
  client = new OpenAI({ baseURL: srv.base + '/v1', apiKey: 'unused', maxRetries: 0, timeout: 60000 });
});
after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0, srv.stderr);
});

test('models lists the served model', async () => {
  const list = await client.models.list();
  assert.equal(list.data.length, 1);
  assert.equal(list.data[0].id, 'ternlm-tinystories');
  assert.equal(list.data[0].object, 'model');
});

test('completions: greedy text equals the CLI golden, usage and finish_reason length', async () => {
  const r = await client.completions.create({ model: 'ternlm-tinystories', prompt: 'Once upon a time', max_tokens: 20, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].text, ', there was a little girl named Lily. She loved to play outside in her backyard. One day');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.deepEqual([r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens], [5, 20, 25]);
});

test('completions: a stop string ends the text before it with finish_reason stop', async () => {
  const r = await client.completions.create({ model: 'ternlm-tinystories', prompt: 'Once upon a time', max_tokens: 40, temperature: 0, stop: [' Lily', 'zzz'] });
  assert.equal(r.choices[0].text, ', there was a little girl named');
  assert.equal(r.choices[0].finish_reason, 'stop');
  const s = await client.completions.create({ model: 'ternlm-tinystories', prompt: 'Once upon a time', max_tokens: 40, temperature: 0, stop: ' Lily', stream: true });
  let text = '', finish = null;
  for await (const c of s) { text += c.choices[0]?.text ?? ''; finish = c.choices[0]?.finish_reason ?? finish; }
  assert.equal(text, ', there was a little girl named', 'the held-back stop text never reaches the stream');
  assert.equal(finish, 'stop');
});

test('chat: non-streaming and streaming give the same text for the same seed', async () => {
  const req = { model: 'ternlm-tinystories', messages: [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Tell me about a cat.' }],
                max_tokens: 30, temperature: 0.9, seed: 42, top_p: 0.9, top_k: 30, presence_penalty: 0.5, frequency_penalty: 0.2 };
  const a = await client.chat.completions.create(req);
  assert.equal(a.object, 'chat.completion');
  assert.equal(a.choices[0].message.role, 'assistant');
  assert.ok(a.choices[0].message.content.length > 0);
  assert.ok(['stop', 'length'].includes(a.choices[0].finish_reason));
  assert.equal(a.usage.total_tokens, a.usage.prompt_tokens + a.usage.completion_tokens);
  const s = await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  let text = '', finish = null, usage = null, role = null, chunks = 0;
  for await (const c of s) {
    assert.equal(c.object, 'chat.completion.chunk');
    chunks++;
    if (c.usage) usage = c.usage;
    const ch = c.choices[0];
    if (!ch) continue;
    role = ch.delta.role ?? role;
    text += ch.delta.content ?? '';
    finish = ch.finish_reason ?? finish;
  }
  assert.equal(role, 'assistant');
  assert.equal(text, a.choices[0].message.content);
  assert.equal(finish, a.choices[0].finish_reason);
  assert.deepEqual(usage.completion_tokens, a.usage.completion_tokens);
  assert.ok(chunks >= 3);
  assert.ok(usage.prompt_tokens_details.cached_tokens > 0, 'the second request reuses the first one\'s cached prompt');
});

test('chat: different seeds give different text at a high temperature', async () => {
  const req = { model: 'ternlm-tinystories', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 24, temperature: 1.5, top_k: 0, top_p: 1, min_p: 0 };
  const a = await client.chat.completions.create({ ...req, seed: 1 });
  const b = await client.chat.completions.create({ ...req, seed: 2 });
  assert.notEqual(a.choices[0].message.content, b.choices[0].message.content);
});

test('abort mid-stream frees the slot at once', async () => {
  const ac = new AbortController();
  const s = await client.chat.completions.create({ model: 'ternlm-tinystories', messages: [{ role: 'user', content: 'Tell me a long story.' }],
                                                   max_tokens: 1500, stream: true }, { signal: ac.signal });
  let n = 0;
  try {
    // chunks the SDK had already read may still arrive after abort(), so the loop leaves at once
    for await (const c of s) if (c.choices[0]?.delta?.content && ++n === 3) { ac.abort(); break; }
  } catch (e) {
    assert.equal(e.name, 'APIUserAbortError'); // some SDK versions end the loop quietly instead
  }
  assert.equal(n, 3, 'the stream delivered three pieces before the abort');
  const t0 = Date.now();
  const m = await waitMetrics(srv.base, (x) => x['llamacpp:requests_processing'] === 0, 3000);
  assert.equal(m['llamacpp:requests_processing'], 0, 'the aborted stream still holds its slot');
  assert.ok(Date.now() - t0 < 1000, `slot freed after ${Date.now() - t0} ms`);
  assert.ok(m['llamacpp:tokens_predicted_total'] < 1500, 'generation stopped');
  // the server keeps serving
  const r = await client.completions.create({ model: 'ternlm-tinystories', prompt: 'Once upon a time', max_tokens: 5, temperature: 0 });
  assert.equal(r.choices[0].text.length > 0, true);
});

test('errors reach the client as OpenAI errors', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
                       (e) => e.status === 404 && /does not exist/.test(e.message));
  await assert.rejects(client.completions.create({ model: 'ternlm-tinystories', prompt: 'hi', max_tokens: 100000 }),
                       (e) => e.status === 400 && e.param === 'max_tokens');
  const m = await metrics(srv.base);
  assert.equal(m['llamacpp:requests_deferred'], 0);
});
