// issue 16: reasoning_content for thinking models (Bonsai, with Qwen3's template), in llama-server's shape, through
// the C core's splitter. The fixture's greedy reply has no <think> block: it must reach the client unchanged, with no
// reasoning_content, streamed or not; the split itself is tested in C (test_reasoning). Bad values are 400 / exit 2.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { ROOT, expectOpenAIError, postJson, startServer } from './helpers.mjs';

const BONSAI = path.join(ROOT, '..', 'shared', 'fixtures', 'qwen3-bonsai-q1_0.gguf');
let srv;
before(async () => { srv = await startServer(['-m', BONSAI, '-np', '1', '-t', '2', '-c', '512']); });
after(async () => { assert.equal((await srv.stop()).code, 0, srv.stderr); });

async function streamed(body) {
  const r = await fetch(srv.base + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' },
                                                             body: JSON.stringify({ ...body, stream: true }) });
  assert.equal(r.status, 200);
  const events = (await r.text()).split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6)));
  const deltas = events.map((e) => e.choices[0]?.delta ?? {});
  return { content: deltas.map((d) => d.content ?? '').join(''), reasoning: deltas.map((d) => d.reasoning_content ?? '').join(''),
           anyReasoningKey: deltas.some((d) => 'reasoning_content' in d) };
}

test('a reply without <think> is unchanged, with no reasoning_content, streamed or not', async () => {
  const req = { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8, temperature: 0 };
  const split = await postJson(srv.base, '/v1/chat/completions', req);
  const raw = await postJson(srv.base, '/v1/chat/completions', { ...req, reasoning_format: 'none' });
  assert.equal(split.status, 200);
  assert.ok(raw.body.choices[0].message.content.length > 0);
  assert.equal(split.body.choices[0].message.content, raw.body.choices[0].message.content);
  assert.ok(!('reasoning_content' in split.body.choices[0].message));
  const s = await streamed(req);
  assert.equal(s.content, raw.body.choices[0].message.content);
  assert.equal(s.anyReasoningKey, false);
  const d = await streamed({ ...req, reasoning_format: 'deepseek' });
  assert.equal(d.content, s.content);
});

test('reasoning_format must be auto, deepseek or none', async () => {
  const r = await postJson(srv.base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], reasoning_format: 'xml' });
  expectOpenAIError(r, 400);
  assert.equal(r.body.error.param, 'reasoning_format');
  await assert.rejects(startServer(['-m', BONSAI, '--reasoning-format', 'xml']), /exited with 2/);
});

// Thinking off per request (chat_template_kwargs.enable_thinking, as vLLM and llama-server) or for the whole server
// (--reasoning-budget 0): Qwen3's template then ends the prompt with an empty <think></think> block, so the prompt
// grows by that block's tokens; a model whose template has no thinking switch (bitnet-b1.58) gets the same prompt.
const promptTokens = async (base, extra) => {
  const r = await postJson(base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1, temperature: 0, ...extra });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.usage.prompt_tokens;
};
const OFF = { chat_template_kwargs: { enable_thinking: false } };
const ON = { chat_template_kwargs: { enable_thinking: true } };

test('chat_template_kwargs.enable_thinking: false adds the empty think block to the prompt; true is the default', async () => {
  const plain = await promptTokens(srv.base, {});
  assert.ok(await promptTokens(srv.base, OFF) > plain);
  assert.equal(await promptTokens(srv.base, ON), plain);
  assert.equal(await promptTokens(srv.base, { chat_template_kwargs: {} }), plain);
});

test('--reasoning-budget 0 turns thinking off for every request; a request may turn it back on', async () => {
  const [plain, off] = [await promptTokens(srv.base, {}), await promptTokens(srv.base, OFF)];
  const s0 = await startServer(['-m', BONSAI, '-np', '1', '-t', '2', '-c', '512', '--reasoning-budget', '0']);
  try {
    assert.equal(await promptTokens(s0.base, {}), off);
    assert.equal(await promptTokens(s0.base, ON), plain);
  } finally {
    assert.equal((await s0.stop()).code, 0, s0.stderr);
  }
});

test('models without a thinking switch get the same prompt whatever enable_thinking says', async () => {
  const b158 = await startServer(['-m', path.join(ROOT, '..', 'shared', 'fixtures', 'b158-llama3-i2s.gguf'), '-np', '1', '-t', '2', '-c', '512',
                                  '--reasoning-budget', '0']);
  try {
    const plain = await promptTokens(b158.base, {});
    assert.equal(await promptTokens(b158.base, OFF), plain);
    assert.equal(await promptTokens(b158.base, ON), plain);
  } finally {
    assert.equal((await b158.stop()).code, 0, b158.stderr);
  }
});

test('bad chat_template_kwargs are 400 naming the field; --reasoning-budget other than -1 or 0 exits 2', async () => {
  for (const kw of [5, { enable_thinking: 'no' }, { tools_json: '[]' }]) {
    const r = await postJson(srv.base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], chat_template_kwargs: kw });
    expectOpenAIError(r, 400);
    assert.equal(r.body.error.param, 'chat_template_kwargs');
  }
  await assert.rejects(startServer(['-m', BONSAI, '--reasoning-budget', '512']), /exited with 2/);
});
