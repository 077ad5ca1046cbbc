// Cross-slot prefix sharing: a request whose prompt starts like another slot's conversation copies those KV rows
// (ternlm_batch_seq_copy) instead of evaluating them, whether that slot is still generating or the two requests
// arrive together (the later one waits for the earlier one's shared head). The text must equal the same request
// on a fresh one-slot server (nothing cached), and usage / metrics must show how many tokens were copied.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { metrics, postJson, startServer } from './helpers.mjs';

const HEAD = 'Once upon a time, in a small town by the sea, there lived a little girl named Lily. Every morning she';
const A = { prompt: `${HEAD} ran to the beach with her dog`, max_tokens: 24, temperature: 0.8, seed: 11, ignore_eos: true };
const B = { prompt: `${HEAD} baked bread for her grandmother`, max_tokens: 24, temperature: 0.8, seed: 12, ignore_eos: true };

const complete = async (base, body) => {
  const r = await postJson(base, '/v1/completions', body);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
};

// Each reference request runs on its own fresh server: a cold evaluation of the whole prompt.
async function cold(body) {
  const srv = await startServer(['-np', '1', '-t', '2']);
  try {
    const out = await complete(srv.base, body);
    assert.equal(out.usage.prompt_tokens_details.cached_tokens, 0);
    return out.choices[0].text;
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
}

// Tokens the two prompts share (the copy stops one short of the later prompt's end, as ternlm_batch_seq_prefix does).
async function sharedTokens(base) {
  const ids = [];
  for (const p of [A.prompt, B.prompt]) ids.push((await postJson(base, '/tokenize', { content: p, add_special: true })).body.tokens);
  let k = 0;
  while (k < ids[1].length - 1 && ids[0][k] === ids[1][k]) k++;
  return k;
}

test('a prompt copies the shared head from a slot that is still generating; same text as a cold run', async () => {
  const want = await cold(B);
  const srv = await startServer(['-np', '2', '-t', '2']);
  try {
    const shared = await sharedTokens(srv.base);
    assert.ok(shared >= 20, `the prompts share ${shared} tokens`);
    // A keeps slot 0 busy (no max_tokens: it generates to the end of its context) while B takes the empty slot 1
    const ac = new AbortController();
    const { max_tokens: _, ...longA } = A;
    const r = await fetch(srv.base + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...longA, stream: true }), signal: ac.signal });
    assert.equal(r.status, 200);
    const reader = r.body.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.match(first, /^data: \{/, 'A streams: its prompt is in slot 0\'s cache');
    const b = await complete(srv.base, B);
    ac.abort();
    await reader.read().catch(() => {});
    assert.equal(b.choices[0].text, want, 'copied-prefix text equals the cold text');
    assert.equal(b.usage.prompt_tokens_details.cached_tokens, shared, 'B copied exactly the shared tokens');
    const m = await metrics(srv.base);
    assert.equal(m['ternlm:prompt_tokens_copied_total'], shared);
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});

test('two prompts with the same head at the same instant: one evaluates it, the other copies it', async () => {
  const want = [await cold(A), await cold(B)];
  const srv = await startServer(['-np', '2', '-t', '2']);
  try {
    const shared = await sharedTokens(srv.base);
    const before = (await metrics(srv.base))['llamacpp:prompt_tokens_total'];
    const got = await Promise.all([complete(srv.base, A), complete(srv.base, B)]);
    assert.deepEqual(got.map((g) => g.choices[0].text), want, 'both texts equal the cold runs');
    const cached = got.map((g) => g.usage.prompt_tokens_details.cached_tokens).sort((x, y) => x - y);
    assert.deepEqual(cached, [0, shared], 'one request copied the shared head');
    const m = await metrics(srv.base);
    assert.equal(m['ternlm:prompt_tokens_copied_total'], shared);
    const total = got.reduce((s, g) => s + g.usage.prompt_tokens, 0);
    assert.equal(m['llamacpp:prompt_tokens_total'] - before, total - shared, 'the head was evaluated once');
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});

test('a prompt sharing only a token or two with a cached conversation takes another slot, so the head survives', async () => {
  const srv = await startServer(['-np', '2', '-t', '2']);
  try {
    const shared = await sharedTokens(srv.base);
    await complete(srv.base, A);
    const other = await complete(srv.base, { prompt: 'The dog', max_tokens: 4, temperature: 0 });
    assert.ok(other.usage.prompt_tokens_details.cached_tokens < 8);
    const b = await complete(srv.base, B);
    assert.equal(b.usage.prompt_tokens_details.cached_tokens, shared, 'the shared head was still cached');
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});
