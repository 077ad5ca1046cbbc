// Starts ternlm-server on a free loopback port and stops it; small HTTP helpers for the server tests.
// TERNLM_SERVER picks the binary (default build/ternlm-server, e.g. build-san/ternlm-server for ASan).
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SERVER = process.env.TERNLM_SERVER || path.join(ROOT, 'build/ternlm-server');

// Resolves once the server printed "ready"; rejects if it exits or takes over 60 s.
export function startServer(args = [], { waitReady = true } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(SERVER, ['--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '', base = null, settled = false;
    const timer = setTimeout(() => finish(new Error(`server not ready in 60 s:\n${out}\n${err}`)), 60000);
    const finish = (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (e) { child.kill('SIGKILL'); reject(e); } else resolve(server);
    };
    const server = {
      child, get base() { return base; }, get stdout() { return out; }, get stderr() { return err; },
      exited: new Promise((res) => child.on('exit', (code, signal) => res({ code, signal }))),
      async stop() {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 20000);
        const r = await server.exited;
        clearTimeout(killer);
        return r;
      },
      rssKiB() {
        const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        return m ? Number(m[1]) : NaN;
      },
    };
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/[0-9.]+:\d+)/.exec(out);
      if (m) base = m[1];
      if (base && (!waitReady || /ready:/.test(out))) finish();
    });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => finish(new Error(`server exited with ${code} before it was ready:\n${out}\n${err}`)));
  });
}

export async function getJson(base, route, init = {}) {
  const r = await fetch(base + route, init);
  const text = await r.text();
  let body = null;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: r.status, headers: r.headers, body };
}

export const postJson = (base, route, obj, headers = {}) =>
  getJson(base, route, { method: 'POST', headers: { 'content-type': 'application/json', ...headers },
                         body: typeof obj === 'string' ? obj : JSON.stringify(obj) });

// Prometheus text -> { name: value }
export async function metrics(base, headers = {}) {
  const r = await fetch(base + '/metrics', { headers });
  const out = {};
  for (const line of (await r.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const [k, v] = line.split(' ');
    out[k] = Number(v);
  }
  return out;
}

// Waits (bounded) until pred(metrics) holds; returns the last metrics.
export async function waitMetrics(base, pred, ms = 5000) {
  const end = Date.now() + ms;
  let m;
  do {
    m = await metrics(base);
    if (pred(m)) return m;
    await new Promise((r) => setTimeout(r, 20));
  } while (Date.now() < end);
  return m;
}

// curl with a bounded run time; resolves { code, stdout, stderr }.
export function curl(args) {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '20', ...args], { encoding: 'utf8' }, (e, stdout, stderr) =>
      resolve({ code: e ? e.code : 0, stdout, stderr }));
  });
}

// curl -i output -> { status, headers (lower-case), body }
export function parseCurlI(text) {
  const blocks = text.split('\r\n\r\n');
  const head = blocks[0].split('\r\n');
  const status = Number(head[0].split(' ')[1]);
  const headers = {};
  for (const h of head.slice(1)) {
    const i = h.indexOf(':');
    headers[h.slice(0, i).toLowerCase()] = h.slice(i + 1).trim();
  }
  const body = blocks.slice(1).join('\r\n\r\n');
  let json = null;
  try { json = JSON.parse(body); } catch { /* not JSON */ }
  return { status, headers, body, json };
}

export function expectOpenAIError(res, status) {
  const obj = 'json' in res ? res.json : res.body;
  assert.equal(res.status, status, JSON.stringify(obj ?? res.body));
  const e = obj && obj.error;
  assert.ok(e && typeof e.message === 'string' && e.message.length > 0 && typeof e.type === 'string',
            `OpenAI-shaped error: ${JSON.stringify(obj ?? res.body)}`);
  return e;
}
