#!/usr/bin/env node
// Server throughput and latency at 1, 2, 4 and 8 concurrent streams (closed loop: each stream sends its
// next request when the last one ends; stream i starts i/N of a request's time late and lengths vary
// between gen/2 and 3gen/2, so arrivals spread out as independent clients' would). Every prompt is unique
// from its first word on (completions: nothing to share but BOS); generation ignores EOS. Then a burst: N requests
// sent at the same instant. With --chat, requests are chat completions whose messages are one system prompt
// (the same for every request, as an application's would be) and a unique user message: the chat template and
// the system prompt are a shared head that slots can copy from each other. Prints Markdown tables, the prompt
// length in tokens, and how many prompt tokens were evaluated and how many copied from another slot.
// With --step-log FILE the server writes one line per step and per finished request (TERNLM_STEP_LOG) and the
// benchmark prints, per level, where the wall time went: decode-only steps, steps with prompt tokens, sampling
// and release after each step, idle time between steps, and the server-side parts of the time to first token.
// The last column leaves out each stream's first request: the N streams start within one single-stream request's
// time, so their first prompts arrive faster than two threads evaluate them (8 streams: 8 prompts of ~0.5 s each
// within ~1.7 s on AVX2), and that ramp sets the p95 of the whole level whatever the scheduling.
// TERNLM_SERVER picks the server binary, TERNLM_SERVER_ARGS adds flags to it (space-separated).
// usage: node tools/bench-server.mjs -m /tmp/2b4t.gguf [-t 2] [--gen 32] [--requests 3] [--levels 1,2,4,8] [--chat]
//        [--step-log FILE]
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def; };
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const model = opt('-m', null), threads = opt('-t', '2'), GEN = Number(opt('--gen', '32'));
const REQUESTS = Number(opt('--requests', '3')), LEVELS = opt('--levels', '1,2,4,8').split(',').map(Number);
const SERVER = process.env.TERNLM_SERVER || path.join(ROOT, 'build/ternlm-server');
const maxLevel = Math.max(...LEVELS);
const CHAT = args.includes('--chat');
const STEP_LOG = opt('--step-log', null);
const SYSTEM = 'You are a helpful assistant for a small bookshop. Answer in two or three short sentences, ' +
  'stay friendly, and never invent titles that are not in the catalogue.';

const words = 'river stone lantern orchard violet harbor meadow copper falcon winter ember quiet silver maple thunder'.split(' ');
let counter = 0;
// a short prompt, different from every other prompt from its first word on
const prompt = () => { const n = counter++; return `Story ${n}: ` + Array.from({ length: 4 }, (_, i) => words[(n * 7 + i * 3) % words.length]).join(' '); };

function start() {
  return new Promise((resolve, reject) => {
    const argv = ['--port', '0', '-t', threads, '-np', String(maxLevel), '-c', String(maxLevel * 512), '--queue', '64'];
    if (model) argv.push('-m', model);
    if (process.env.TERNLM_SERVER_ARGS) argv.push(...process.env.TERNLM_SERVER_ARGS.trim().split(/\s+/));
    const env = STEP_LOG ? { ...process.env, TERNLM_STEP_LOG: STEP_LOG } : process.env;
    const child = spawn(SERVER, argv, { stdio: ['ignore', 'pipe', 'inherit'], env });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/[0-9.:]+)/.exec(out);
      if (m && /ready:/.test(out)) resolve({ child, base: m[1] });
    });
    child.on('exit', (c) => reject(new Error(`server exited ${c}`)));
  });
}

let lcg = 12345;
const nextLen = () => { lcg = (lcg * 1103515245 + 12345) >>> 0; return Math.round(GEN / 2 + ((lcg >>> 8) % (GEN + 1))); };

// the route and the prompt part of a request body
const request = () => CHAT
  ? ['/v1/chat/completions', { messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: prompt() }] }]
  : ['/v1/completions', { prompt: prompt() }];

async function one(base, maxTokens = GEN) {
  const t0 = performance.now();
  const [route, body] = request();
  const r = await fetch(base + route, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, max_tokens: maxTokens, temperature: 0.8, seed: counter, ignore_eos: true, stream: true,
                          stream_options: { include_usage: true } }) });
  const dec = new TextDecoder();
  let ttft = null, buf = '', tokens = 0;
  const chunks = []; // when each text chunk arrived (one per token, except where a token ends inside a character)
  for await (const part of r.body) {
    buf += dec.decode(part, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(6, i);
      buf = buf.slice(i + 2);
      if (ev === '[DONE]') continue;
      const c = JSON.parse(ev);
      if (c.usage) tokens = c.usage.completion_tokens;
      if (c.choices[0]?.text || c.choices[0]?.delta?.content) {
        chunks.push(performance.now());
        if (ttft === null) ttft = chunks[0] - t0;
      }
    }
  }
  return { ttft, tokens, chunks };
}

async function usage(base) {
  const [route, body] = request();
  const r = await fetch(base + route, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, max_tokens: 1, temperature: 0 }) });
  return (await r.json()).usage.prompt_tokens;
}

async function metrics(base) {
  const out = {};
  for (const line of (await (await fetch(base + '/metrics')).text()).split('\n'))
    if (line && !line.startsWith('#')) out[line.split(' ')[0]] = Number(line.split(' ')[1]);
  return out;
}

// Tokens/s while all N streams were running: from the moment the last stream sent its first request to the moment the
// first stream ended its last one (the aggregate above also counts the ramp-up of staggered starts and the tail in
// which streams finish one by one). Each request's tokens are spread over its text chunks. '-' under half a second.
function steady(done, spans) {
  const from = Math.max(...spans.map((s) => s[0])), to = Math.min(...spans.map((s) => s[1]));
  if (to - from < 500) return '-';
  let tokens = 0;
  for (const r of done) if (r.chunks.length) tokens += (r.tokens / r.chunks.length) * r.chunks.filter((t) => t >= from && t < to).length;
  return (tokens / ((to - from) / 1000)).toFixed(2);
}

const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]; };

// Where each level's wall time went, from the server's step log (see the header). windows: [name, t0, t1] in
// seconds of the wall clock.
function stepReport(file, windows) {
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split(' '));
  const clock = lines.find((l) => l[1] === 'clock');
  const toWall = (mono) => mono - Number(clock[0]) + Number(clock[3]);
  const field = (l, name) => Number(l[l.indexOf(name) + 1]);
  const med = (a) => (a.length ? pct(a, 50) : 0), p95 = (a) => (a.length ? pct(a, 95) : 0);
  console.log('\nstep log: seconds of each level\'s wall time\n');
  console.log('| level | wall s | decode-only steps: n, s, median ms | steps with prompt: n, s, prompt tokens | after steps s | idle s | ' +
              'server TTFT ms p50/p95: queue, prompt |');
  console.log('|---|---|---|---|---|---|---|');
  for (const [name, t0, t1] of windows) {
    const steps = lines.filter((l) => l[1] === 'gap' && toWall(Number(l[0])) >= t0 && toWall(Number(l[0])) < t1);
    const reqs = lines.filter((l) => l[1] === 'request' && toWall(field(l, 'arrived')) >= t0 && toWall(field(l, 'arrived')) < t1);
    const dec = steps.filter((l) => field(l, 'prompt') === 0), pro = steps.filter((l) => field(l, 'prompt') > 0);
    const sum = (a, f) => a.reduce((x, l) => x + field(l, f), 0);
    const queue = reqs.map((l) => (field(l, 'admitted') - field(l, 'arrived')) * 1e3);
    const prompt = reqs.map((l) => (field(l, 'first') - field(l, 'admitted')) * 1e3);
    console.log(`| ${name} | ${(t1 - t0).toFixed(2)} | ${dec.length}, ${(sum(dec, 'eval') / 1e3).toFixed(2)}, ` +
                `${med(dec.map((l) => field(l, 'eval'))).toFixed(1)} | ${pro.length}, ${(sum(pro, 'eval') / 1e3).toFixed(2)}, ` +
                `${sum(pro, 'prompt')} | ${(sum(steps, 'after') / 1e3).toFixed(2)} | ` +
                `${((t1 - t0) - (sum(steps, 'eval') + sum(steps, 'after') + sum(steps, 'queue')) / 1e3).toFixed(2)} | ` +
                `${med(queue).toFixed(0)}/${p95(queue).toFixed(0)}, ${med(prompt).toFixed(0)}/${p95(prompt).toFixed(0)} |`);
  }
}

const windows = [];
const { child, base } = await start();
try {
  const promptTokens = await usage(base);
  await one(base); // warm-up: page the weights in
  console.log(`| streams | requests | aggregate gen tokens/s | steady gen tokens/s | per-stream tokens/s | TTFT p50 ms | TTFT p95 ms | ` +
              `TTFT p50 / p95 ms, later requests |`);
  console.log(`|---|---|---|---|---|---|---|---|`);
  let reqSeconds = 0;
  for (const n of LEVELS) {
    const ttfts = [], later = [], done = [], spans = [];
    let tokens = 0;
    const t0 = performance.now(), wall0 = Date.now() / 1000;
    await Promise.all(Array.from({ length: n }, async (_, i) => {
      await new Promise((r) => setTimeout(r, (1000 * reqSeconds * i) / n));
      const first = performance.now();
      for (let k = 0; k < REQUESTS; k++) { const r = await one(base, nextLen()); ttfts.push(r.ttft); if (k) later.push(r.ttft); tokens += r.tokens; done.push(r); }
      spans.push([first, performance.now()]);
    }));
    const secs = (performance.now() - t0) / 1000;
    windows.push([`${n} streams`, wall0, wall0 + secs]);
    if (n === 1) reqSeconds = secs / REQUESTS;
    const agg = tokens / secs;
    console.log(`| ${n} | ${n * REQUESTS} | ${agg.toFixed(2)} | ${steady(done, spans)} | ${(agg / n).toFixed(2)} | ${pct(ttfts, 50).toFixed(0)} | ${pct(ttfts, 95).toFixed(0)} | ` +
                `${later.length ? `${pct(later, 50).toFixed(0)} / ${pct(later, 95).toFixed(0)}` : '-'} |`);
  }
  console.log(`\nburst: N requests at the same instant\n\n| requests | TTFT p50 ms | TTFT p95 ms | TTFT max ms |\n|---|---|---|---|`);
  for (const n of LEVELS) {
    const wall0 = Date.now() / 1000;
    const rs = await Promise.all(Array.from({ length: n }, () => one(base, 4)));
    windows.push([`burst ${n}`, wall0, Date.now() / 1000]);
    const t = rs.map((r) => r.ttft);
    console.log(`| ${n} | ${pct(t, 50).toFixed(0)} | ${pct(t, 95).toFixed(0)} | ${Math.max(...t).toFixed(0)} |`);
  }
  const m = await metrics(base);
  console.log(`\n${CHAT ? 'chat' : 'completions'}: prompt ${promptTokens} tokens, ${GEN / 2}..${GEN * 1.5} generated per request, ${threads} threads, ${maxLevel} slots`);
  console.log(`prompt tokens over the run: ${m['llamacpp:prompt_tokens_total']} evaluated, ${m['ternlm:prompt_tokens_copied_total']} copied from another slot`);
  if (STEP_LOG) stepReport(STEP_LOG, windows);
} finally {
  child.kill('SIGTERM');
}
