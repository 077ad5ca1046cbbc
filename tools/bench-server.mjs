#!/usr/bin/env node
// Server throughput and latency at 1, 2, 4 and 8 concurrent streams (closed loop: each stream sends its
// next request when the last one ends; stream i starts i/N of a request's time late and lengths vary
// between gen/2 and 3gen/2, so arrivals spread out as independent clients' would). Every prompt is unique
// from its first word on (completions: nothing to share but BOS); generation ignores EOS. Then a burst: N requests
// sent at the same instant. With --chat, requests are chat completions whose messages are one system prompt
// (the same for every request, as an application's would be) and a unique user message: the chat template and
// the system prompt are a shared head that slots can copy from each other. Prints Markdown tables, the prompt
// length in tokens, and how many prompt tokens were evaluated and how many copied from another slot.
// usage: node tools/bench-server.mjs -m /tmp/2b4t.gguf [-t 2] [--gen 32] [--requests 3] [--levels 1,2,4,8] [--chat]
import { spawn } from 'node:child_process';
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
    const child = spawn(SERVER, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
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
  for await (const part of r.body) {
    buf += dec.decode(part, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(6, i);
      buf = buf.slice(i + 2);
      if (ev === '[DONE]') continue;
      const c = JSON.parse(ev);
      if (c.usage) tokens = c.usage.completion_tokens;
      if (ttft === null && (c.choices[0]?.text || c.choices[0]?.delta?.content)) ttft = performance.now() - t0;
    }
  }
  return { ttft, tokens };
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

const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]; };

const { child, base } = await start();
try {
  const promptTokens = await usage(base);
  await one(base); // warm-up: page the weights in
  console.log(`| streams | requests | aggregate gen tokens/s | per-stream tokens/s | TTFT p50 ms | TTFT p95 ms |`);
  console.log(`|---|---|---|---|---|---|`);
  let reqSeconds = 0;
  for (const n of LEVELS) {
    const ttfts = [];
    let tokens = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: n }, async (_, i) => {
      await new Promise((r) => setTimeout(r, (1000 * reqSeconds * i) / n));
      for (let k = 0; k < REQUESTS; k++) { const r = await one(base, nextLen()); ttfts.push(r.ttft); tokens += r.tokens; }
    }));
    const secs = (performance.now() - t0) / 1000;
    if (n === 1) reqSeconds = secs / REQUESTS;
    const agg = tokens / secs;
    console.log(`| ${n} | ${n * REQUESTS} | ${agg.toFixed(2)} | ${(agg / n).toFixed(2)} | ${pct(ttfts, 50).toFixed(0)} | ${pct(ttfts, 95).toFixed(0)} |`);
  }
  console.log(`\nburst: N requests at the same instant\n\n| requests | TTFT p50 ms | TTFT p95 ms | TTFT max ms |\n|---|---|---|---|`);
  for (const n of LEVELS) {
    const rs = await Promise.all(Array.from({ length: n }, () => one(base, 4)));
    const t = rs.map((r) => r.ttft);
    console.log(`| ${n} | ${pct(t, 50).toFixed(0)} | ${pct(t, 95).toFixed(0)} | ${Math.max(...t).toFixed(0)} |`);
  }
  const m = await metrics(base);
  console.log(`\n${CHAT ? 'chat' : 'completions'}: prompt ${promptTokens} tokens, ${GEN / 2}..${GEN * 1.5} generated per request, ${threads} threads, ${maxLevel} slots`);
  console.log(`prompt tokens over the run: ${m['llamacpp:prompt_tokens_total']} evaluated, ${m['ternlm:prompt_tokens_copied_total']} copied from another slot`);
} finally {
  child.kill('SIGTERM');
}
