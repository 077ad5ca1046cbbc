#!/usr/bin/env node
// A small static server for the example page and the browser tests.
//
//   node examples/serve.mjs [--port 8080] [--isolate] [--log FILE] [--cut-once /path@BYTES] [--root DIR] [--linked-etag]
//
// Serves the repository root. --isolate sends COOP/COEP (so crossOriginIsolated is true and the pthreads build
// can run). Supports Range and ETag/If-Range (for resumed downloads). --log appends one line per request.
// --cut-once drops the connection after BYTES bytes the first time PATH is fetched (a test hook).
// --root serves DIR instead of the repository; --linked-etag sends X-Linked-ETag: "<sha256 of the file>" as
// Hugging Face does for large files (both for the CLI's download tests).
import { createReadStream, appendFileSync, statSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.wasm': 'application/wasm', '.css': 'text/css', '.json': 'application/json', '.gguf': 'application/octet-stream',
  '.ts': 'text/plain' };

export function serve({ port = 0, isolate = false, log = null, cutOnce = null, host = '127.0.0.1', root = repoRoot,
  linkedEtag = false } = {}) {
  root = path.resolve(root);
  const cut = cutOnce ? { path: cutOnce.split('@')[0], bytes: Number(cutOnce.split('@')[1]), done: false } : null;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const rel = decodeURIComponent(url.pathname);
    const file = path.join(root, rel.endsWith('/') ? rel + 'index.html' : rel);
    const note = (status, extra = '') => log && appendFileSync(log, `${req.method} ${rel} ${req.headers.range || '-'} ${status}${extra}\n`);
    if (isolate) {
      res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
      res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    }
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    let st;
    try {
      if (!file.startsWith(root)) throw new Error('outside');
      st = statSync(file);
      if (!st.isFile()) throw new Error('not a file');
    } catch {
      note(404);
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
      return;
    }
    const etag = `"${st.size}-${Math.floor(st.mtimeMs)}"`;
    const headers = { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream', 'Accept-Ranges': 'bytes',
      ETag: etag, 'Cache-Control': 'no-cache' };
    if (linkedEtag) headers['X-Linked-ETag'] = `"${createHash('sha256').update(readFileSync(file)).digest('hex')}"`;
    let start = 0;
    let end = st.size - 1;
    let status = 200;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '');
    if (m && (!req.headers['if-range'] || req.headers['if-range'] === etag)) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), end) : end;
      if (start > end) { note(416); res.writeHead(416, { 'Content-Range': `bytes */${st.size}` }).end(); return; }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${st.size}`;
    }
    headers['Content-Length'] = end - start + 1;
    res.writeHead(status, headers);
    if (req.method === 'HEAD') { note(status); res.end(); return; }
    const stream = createReadStream(file, { start, end });
    if (cut && !cut.done && rel === cut.path && status === 200) {
      cut.done = true;
      let sent = 0;
      note(status, ` cut@${cut.bytes}`);
      stream.on('data', (chunk) => {
        const room = cut.bytes - sent;
        if (room <= 0) return;
        res.write(room >= chunk.length ? chunk : chunk.subarray(0, room));
        sent += Math.min(room, chunk.length);
        if (sent >= cut.bytes) { stream.destroy(); res.socket.destroy(); }
      });
      return;
    }
    note(status);
    stream.pipe(res);
  });
  return new Promise((resolve) => server.listen(port, host, () => resolve(server)));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const args = process.argv.slice(2);
  const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : null; };
  const server = await serve({ port: Number(opt('--port') ?? 8080), isolate: args.includes('--isolate'),
    log: opt('--log'), cutOnce: opt('--cut-once'), root: opt('--root') ?? repoRoot, linkedEtag: args.includes('--linked-etag') });
  const { port } = server.address();
  console.log(`ternlm example: http://127.0.0.1:${port}/examples/web/  (${args.includes('--isolate') ? 'cross-origin isolated: threads on' : 'no COOP/COEP: single thread'})`);
}
