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
