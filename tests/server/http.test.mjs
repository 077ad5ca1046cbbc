// Raw routes and error cases through curl and plain sockets: health, models, tokenize/detokenize,
// metrics, OpenAI-shaped 4xx errors that never disturb a request in flight, the API key, body and header
// limits, slow clients, a full queue (503 + Retry-After), deadlines, the SIGTERM drain, and --head-quant.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';

import { SERVER, curl, expectOpenAIError, getJson, metrics, parseCurlI, postJson, startServer, waitMetrics } from './helpers.mjs';

const MODEL = 'ternlm-tinystories';

async function curlJson(base, route, body, extra = []) {
  const r = await curl(['-i', '-X', 'POST', '-H', 'Content-Type: application/json', '--data-binary', body, ...extra, base + route]);
  return parseCurlI(r.stdout);
}

// Reads an SSE stream with fetch; returns { text, finish, done } once [DONE] arrives.
async function readStream(base, route, body, { onChunk } = {}) {
  const r = await fetch(base + route, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /text\/event-stream/);
  const dec = new TextDecoder();
  let buf = '', text = '', finish = null, done = false, n = 0;
  for await (const part of r.body) {
    buf += dec.decode(part, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      assert.ok(ev.startsWith('data: '), ev);
      const data = ev.slice(6);
      if (data === '[DONE]') { done = true; continue; }
      const c = JSON.parse(data);
      const ch = c.choices[0];
      if (!ch) continue;
      text += ch.text ?? ch.delta?.content ?? '';
      finish = ch.finish_reason ?? finish;
      if (onChunk) onChunk(++n);
    }
  }
  return { text, finish, done };
}

test('routes: health, models, tokenize/detokenize, metrics', async () => {
  const srv = await startServer(['-np', '2']);
  try {
    let r = parseCurlI((await curl(['-i', srv.base + '/health'])).stdout);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { status: 'ok' });
    r = parseCurlI((await curl(['-i', srv.base + '/v1/models'])).stdout);
    assert.equal(r.json.data[0].id, MODEL);
    r = await curlJson(srv.base, '/tokenize', JSON.stringify({ content: 'Once upon a time', add_special: true }));
    assert.equal(r.status, 200);
    const ids = r.json.tokens;
    assert.equal(ids.length, 5);
    assert.equal(ids[0], 4093, 'BOS first with add_special');
    r = await curlJson(srv.base, '/detokenize', JSON.stringify({ tokens: ids.slice(1) }));
    assert.equal(r.json.content, 'Once upon a time');
    r = await curlJson(srv.base, '/tokenize', JSON.stringify({ content: 'Once upon', with_pieces: true }));
    assert.deepEqual(r.json.tokens.map((t) => t.piece).join(''), 'Once upon');
    // a completion from token ids equals the one from text
    const a = await postJson(srv.base, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
    const b = await postJson(srv.base, '/v1/completions', { prompt: ids, max_tokens: 8, temperature: 0 });
    assert.equal(a.body.choices[0].text, b.body.choices[0].text);
    assert.equal(b.body.usage.prompt_tokens_details.cached_tokens, 4, 'the slot kept the prompt: only the last token ran again');
    const m = await metrics(srv.base);
    for (const k of ['llamacpp:prompt_tokens_total', 'llamacpp:tokens_predicted_total', 'llamacpp:prompt_seconds_total',
                     'llamacpp:tokens_predicted_seconds_total', 'llamacpp:requests_processing', 'llamacpp:requests_deferred',
                     'llamacpp:kv_cache_usage_ratio', 'llamacpp:kv_cache_tokens', 'llamacpp:n_decode_total',
                     'llamacpp:prompt_tokens_seconds', 'llamacpp:predicted_tokens_seconds'])
      assert.ok(Number.isFinite(m[k]), `${k} in /metrics`);
    assert.equal(m['llamacpp:tokens_predicted_total'], 16);
    assert.equal(m['llamacpp:prompt_tokens_total'], 6);
    r = parseCurlI((await curl(['-i', srv.base + '/metrics'])).stdout);
    assert.match(r.headers['content-type'], /^text\/plain; version=0.0.4/);
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});

test('bad input gets OpenAI-shaped 4xx errors and never disturbs a stream in flight', async () => {
  const srv = await startServer(['-np', '2', '--max-messages', '4', '--body-limit', '4096']);
  try {
    const streamReq = { prompt: 'Once upon a time', max_tokens: 120, temperature: 0.8, seed: 7 };
    const alone = await readStream(srv.base, '/v1/completions', streamReq);
    const during = readStream(srv.base, '/v1/completions', streamReq);
    const msg = (n) => Array.from({ length: n }, () => ({ role: 'user', content: 'hi' }));
    const cases = [
      ['/v1/chat/completions', '{"messages": [', 400],
      ['/v1/chat/completions', '[1, 2]', 400],
      ['/v1/chat/completions', '', 400],
      ['/v1/chat/completions', JSON.stringify({ messages: 'hi' }), 400, 'messages'],
      ['/v1/chat/completions', JSON.stringify({ messages: [] }), 400, 'messages'],
      ['/v1/chat/completions', JSON.stringify({ messages: msg(5) }), 400, 'messages'],
      ['/v1/chat/completions', JSON.stringify({ messages: [{ role: 'wizard', content: 'x' }] }), 400, 'messages'],
      ['/v1/chat/completions', JSON.stringify({ messages: [{ role: 'user', content: 5 }] }), 400, 'messages'],
      ['/v1/chat/completions', JSON.stringify({ messages: msg(1), temperature: 'hot' }), 400, 'temperature'],
      ['/v1/chat/completions', JSON.stringify({ messages: msg(1), temperature: 7 }), 400, 'temperature'],
      ['/v1/chat/completions', JSON.stringify({ messages: msg(1), stream: 'yes' }), 400, 'stream'],
      ['/v1/chat/completions', JSON.stringify({ messages: msg(1), max_tokens: 1.5 }), 400, 'max_tokens'],
      ['/v1/chat/completions', JSON.stringify({ messages: msg(1), max_tokens: 0 }), 400, 'max_tokens'],
      ['/v1/chat/completions', JSON.stringify({ messages: msg(1), max_tokens: 4096 }), 400, 'max_tokens'],
      ['/v1/chat/completions', JSON.stringify({ messages: msg(1), n: 2 }), 400, 'n'],
      ['/v1/chat/completions', JSON.stringify({ messages: msg(1), tools: [{ type: 'function' }] }), 400, 'tools'],
      ['/v1/chat/completions', JSON.stringify({ messages: msg(1), stop: ['a', 'b', 'c', 'd', 'e'] }), 400, 'stop'],
      ['/v1/chat/completions', JSON.stringify({ messages: msg(1), stop: [''] }), 400, 'stop'],
      ['/v1/chat/completions', JSON.stringify({ messages: msg(1), model: 'gpt-4o' }), 404, 'model'],
      ['/v1/completions', JSON.stringify({ prompt: [1, 99999] }), 400, 'prompt'],
      ['/v1/completions', JSON.stringify({ prompt: ['a', 'b'] }), 400, 'prompt'],
      ['/v1/completions', JSON.stringify({ prompt: 7 }), 400, 'prompt'],
      ['/v1/completions', JSON.stringify({ prompt: 'x', logprobs: 3 }), 400, 'logprobs'],
      ['/v1/completions', JSON.stringify({ prompt: 'x'.repeat(5000) }), 413],
      ['/detokenize', JSON.stringify({ tokens: [-1] }), 400, 'tokens'],
      ['/tokenize', JSON.stringify({ content: 3 }), 400, 'content'],
    ];
    for (const [route, body, status, param] of cases) {
      const r = await curlJson(srv.base, route, body);
      const e = expectOpenAIError(r, status);
      if (param) assert.equal(e.param, param, `${route} ${body.slice(0, 60)}: ${e.message}`);
    }
    // a chunked body over the limit (no Content-Length to reject it early)
    const big = await curlJson(srv.base, '/v1/completions', JSON.stringify({ prompt: 'y'.repeat(8000) }), ['-H', 'Transfer-Encoding: chunked']);
    expectOpenAIError(big, 413);
    expectOpenAIError(parseCurlI((await curl(['-i', srv.base + '/v1/nothing'])).stdout), 404);
    expectOpenAIError(parseCurlI((await curl(['-i', srv.base + '/v1/completions'])).stdout), 405);
    const d = await during;
    assert.equal(d.text, alone.text, 'the stream running beside the bad requests is unchanged');
    assert.equal(d.finish, 'length');
    assert.ok(d.done);
    const m = await waitMetrics(srv.base, (x) => x['llamacpp:requests_processing'] === 0);
    assert.equal(m['llamacpp:requests_deferred'], 0);
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});

test('--api-key requires Authorization: Bearer (except /health)', async () => {
  const srv = await startServer(['--api-key', 'sekret']);
  try {
    const body = JSON.stringify({ prompt: 'Once', max_tokens: 2 });
    expectOpenAIError(await curlJson(srv.base, '/v1/completions', body), 401);
    expectOpenAIError(await curlJson(srv.base, '/v1/completions', body, ['-H', 'Authorization: Bearer sekreT']), 401);
    expectOpenAIError(await curlJson(srv.base, '/v1/completions', body, ['-H', 'Authorization: Bearer sekret2']), 401);
    expectOpenAIError(parseCurlI((await curl(['-i', srv.base + '/metrics'])).stdout), 401);
    const ok = await curlJson(srv.base, '/v1/completions', body, ['-H', 'Authorization: Bearer sekret']);
    assert.equal(ok.status, 200);
    assert.equal(parseCurlI((await curl(['-i', srv.base + '/health'])).stdout).status, 200);
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});

function rawRequest(port, data, { wait = 5000 } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const t0 = Date.now();
    const timer = setTimeout(() => { s.destroy(); resolve({ got, closed: false, ms: Date.now() - t0 }); }, wait);
    s.on('connect', () => s.write(data));
    s.on('data', (d) => { got += d; });
    s.on('error', () => {});
    s.on('close', () => { clearTimeout(timer); resolve({ got, closed: true, ms: Date.now() - t0 }); });
  });
}

test('slow clients time out; oversized headers are refused; loopback only by default', async () => {
  const srv = await startServer(['--timeout', '1', '--header-limit', '8192']);
  try {
    const port = Number(new URL(srv.base).port);
    assert.equal(new URL(srv.base).hostname, '127.0.0.1');
    const slow = await rawRequest(port, 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"prom', { wait: 6000 });
    assert.ok(slow.closed && slow.ms < 4000, `a stalled body is dropped after the 1 s idle timeout (${slow.ms} ms)`);
    const idle = await rawRequest(port, 'GET /health HTTP/1.1\r\nHost: x\r\n', { wait: 6000 });
    assert.ok(idle.closed && idle.ms < 4000, `stalled headers are dropped (${idle.ms} ms)`);
    const huge = await rawRequest(port, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`);
    assert.ok(!/^HTTP\/1\.1 200/.test(huge.got), 'a 20 KB header is not served');
    assert.ok(huge.closed);
    const r = await getJson(srv.base, '/health');
    assert.equal(r.status, 200, 'the server still answers');
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});

test('a full queue answers 503 with Retry-After; a disconnect frees the slot; gauges return to 0', async () => {
  const srv = await startServer(['-np', '1', '--queue', '1']);
  try {
    const long = { messages: [{ role: 'user', content: 'Tell me a very long story.' }], max_tokens: 1900, temperature: 1, seed: 1, ignore_eos: true };
    const a1 = new AbortController(), a2 = new AbortController();
    const first = fetch(srv.base + '/v1/chat/completions', { method: 'POST', body: JSON.stringify({ ...long, stream: true }), signal: a1.signal });
    await waitMetrics(srv.base, (m) => m['llamacpp:requests_processing'] === 1);
    const second = fetch(srv.base + '/v1/chat/completions', { method: 'POST', body: JSON.stringify(long), signal: a2.signal }).catch((e) => e);
    let m = await waitMetrics(srv.base, (x) => x['llamacpp:requests_deferred'] === 1);
    assert.equal(m['llamacpp:requests_deferred'], 1);
    const third = await curlJson(srv.base, '/v1/chat/completions', JSON.stringify(long));
    const e = expectOpenAIError(third, 503);
    assert.match(e.message, /queue is full/);
    assert.equal(third.headers['retry-after'], '1');
    a2.abort(); // the waiting request leaves the queue
    await second;
    m = await waitMetrics(srv.base, (x) => x['llamacpp:requests_deferred'] === 0);
    assert.equal(m['llamacpp:requests_deferred'], 0);
    const r1 = await first;
    const reader = r1.body.getReader();
    await reader.read();
    a1.abort(); // the streaming client goes away mid-generation
    m = await waitMetrics(srv.base, (x) => x['llamacpp:requests_processing'] === 0, 2000);
    assert.equal(m['llamacpp:requests_processing'], 0);
    assert.ok(m['llamacpp:tokens_predicted_total'] < 1900);
    assert.equal(m['ternlm:requests_rejected_total'], 1);
    // the freed slot serves the next request at once
    const ok = await postJson(srv.base, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 4, temperature: 0 });
    assert.equal(ok.status, 200);
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});

test('per-request deadline: a long generation ends with finish_reason length; a queued request gets 503', async () => {
  const srv = await startServer(['-np', '1', '--deadline', '1', '-t', '1']);
  try {
    const long = { prompt: 'Once upon a time', max_tokens: 1900, temperature: 1, seed: 3 };
    const t0 = Date.now();
    const [a, b] = await Promise.all([postJson(srv.base, '/v1/completions', long),
      new Promise((r) => setTimeout(r, 100)).then(() => postJson(srv.base, '/v1/completions', long))]);
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(a.status, 200);
    assert.equal(a.body.choices[0].finish_reason, 'length');
    assert.ok(a.body.usage.completion_tokens < 1900, `${a.body.usage.completion_tokens} tokens in 1 s`);
    // the second waited behind the first past its own deadline, or ran out its own second
    if (b.status === 200) assert.equal(b.body.choices[0].finish_reason, 'length');
    else assert.match(expectOpenAIError(b, 503).message, /deadline/);
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});

test('SIGTERM drains: in-flight requests finish, new connections are refused, exit code 0', async () => {
  const srv = await startServer(['-np', '2']);
  const port = Number(new URL(srv.base).port);
  let signalled = false, during = null;
  const req = { prompt: 'Once upon a time', max_tokens: 800, temperature: 0.7, seed: 11, ignore_eos: true };
  const streamed = readStream(srv.base, '/v1/completions', req, { onChunk: (n) => {
    if (n !== 2 || signalled) return;
    signalled = true;
    srv.child.kill('SIGTERM');
    // the main loop notices the signal within 50 ms and closes the listening socket
    during = new Promise((res) => setTimeout(res, 250)).then(() => rawRequest(port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n', { wait: 2000 }));
  } });
  const r = await streamed;
  assert.ok(signalled);
  const d = await during;
  assert.ok(d && !/HTTP\/1\.1/.test(d.got), `a new connection during the drain is not served: ${d && d.got.slice(0, 40)}`);
  assert.ok(r.done, 'the in-flight stream ran to [DONE]');
  assert.ok(['length', 'stop'].includes(r.finish));
  assert.ok(r.text.length > 20);
  const exit = await srv.exited;
  assert.equal(exit.code, 0, srv.stderr);
  assert.match(srv.stdout, /draining[\s\S]*stopped/);
  const after = await rawRequest(port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n', { wait: 2000 });
  assert.ok(!/200 OK/.test(after.got), 'nothing answers after the drain');
});

test('/health answers 503 (loading) or 200, and 200 once ready', async () => {
  const srv = await startServer(['-np', '64', '-c', '131072'], { waitReady: false });
  try {
    const seen = [];
    for (let i = 0; i < 2000; i++) {
      const r = await getJson(srv.base, '/health');
      seen.push(r.status);
      if (r.status === 503) assert.match(r.body.error.message, /Loading model/);
      else assert.equal(r.status, 200);
      if (r.status === 200) break;
      await new Promise((res) => setTimeout(res, 5));
    }
    assert.equal(seen.at(-1), 200);
    console.log(`health statuses while starting: ${[...new Set(seen)].join(', ')} (${seen.length} polls)`);
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});

test('--queue 0: a free slot still takes a request; a busy one answers 503 at once', async () => {
  const srv = await startServer(['-np', '1', '--queue', '0']);
  try {
    const ok = await postJson(srv.base, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 3, temperature: 0 });
    assert.equal(ok.status, 200);
    const ac = new AbortController();
    const busy = fetch(srv.base + '/v1/completions', { method: 'POST', signal: ac.signal,
      body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 1900, ignore_eos: true, stream: true }) });
    await waitMetrics(srv.base, (m) => m['llamacpp:requests_processing'] === 1);
    expectOpenAIError(await postJson(srv.base, '/v1/completions', { prompt: 'x', max_tokens: 2 }), 503);
    ac.abort();
    await busy.catch(() => {});
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});

test('--head-quant i8 / i4 serve the CLI\'s greedy text with the same head; a bad value is a usage error', async () => {
  const cli = path.join(path.dirname(SERVER), 'ternlm');
  for (const head of ['i8', 'i4']) {
    const golden = execFileSync(cli, ['run', '--head-quant', head, '-p', 'Once upon a time', '-n', '16', '--temp', '0'],
                                { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const srv = await startServer(['-np', '1', '--head-quant', head]);
    try {
      const r = await postJson(srv.base, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 16, temperature: 0 });
      assert.equal(r.status, 200);
      assert.equal('Once upon a time' + r.body.choices[0].text, golden.replace(/\n$/, ''), head);
    } finally {
      assert.equal((await srv.stop()).code, 0, srv.stderr);
    }
  }
  const bad = spawnSync(SERVER, ['--head-quant', 'i3'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--head-quant must be q8_0, i8 or i4/);
});
