// Getting a GGUF's bytes to the engine as a stream of chunks: from the network (resuming with Range requests
// after a cut), from the persistent cache (OPFS, else the Cache API), from a File or an ArrayBuffer.
// Runs in the Worker. Nothing here holds the whole file: chunks go straight into wasm memory.
import { HttpError, TernlmError, abortError } from './engine.js';

const DIR = 'ternlm-cache';
const CACHE_NAME = 'ternlm-v1';
const MAX_RESUMES = 8;

async function keyOf(url) {
  const h = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(url));
  return Array.from(new Uint8Array(h).slice(0, 16), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function opfs() {
  try {
    if (!navigator.storage?.getDirectory) return null;
    const root = await navigator.storage.getDirectory();
    const dir = await root.getDirectoryHandle(DIR, { create: true });
    const probe = await dir.getFileHandle('.probe', { create: true });
    if (typeof probe.createSyncAccessHandle !== 'function') return null; // only in dedicated workers
    return dir;
  } catch {
    return null;
  }
}

async function readJson(dir, name) {
  try {
    const f = await (await dir.getFileHandle(name)).getFile();
    return JSON.parse(await f.text());
  } catch {
    return null;
  }
}

async function writeJson(dir, name, value) {
  const h = await (await dir.getFileHandle(name, { create: true })).createSyncAccessHandle();
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  h.truncate(0);
  h.write(bytes, { at: 0 });
  h.flush();
  h.close();
}

// ---- the cache: OPFS (a file per URL plus its metadata) where available, else the Cache API ----

export async function cacheLookup(url) {
  const dir = await opfs();
  if (dir) {
    const key = await keyOf(url);
    const meta = await readJson(dir, `${key}.json`);
    if (!meta?.complete || meta.url !== url) return null;
    return { size: meta.size, etag: meta.etag, chunks: () => opfsChunks(dir, `${key}.gguf`, meta.size) };
  }
  if (typeof caches === 'undefined') return null;
  const res = await (await caches.open(CACHE_NAME)).match(url);
  if (!res) return null;
  const size = Number(res.headers.get('Content-Length'));
  return { size, etag: res.headers.get('ETag'), chunks: () => bodyChunks(res.body) };
}

async function* opfsChunks(dir, name, size, chunk = 8 << 20) {
  const h = await (await dir.getFileHandle(name)).createSyncAccessHandle();
  try {
    const buf = new Uint8Array(Math.min(chunk, size));
    for (let at = 0; at < size;) {
      const n = h.read(buf.subarray(0, Math.min(buf.length, size - at)), { at });
      if (n <= 0) throw new TernlmError('the cached file is shorter than recorded', 'CACHE');
      at += n;
      yield buf.subarray(0, n);
    }
  } finally {
    h.close();
  }
}

async function* bodyChunks(body) {
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    yield value;
  }
}

export async function clearCache() {
  const dir = await opfs();
  if (dir) {
    for await (const name of dir.keys()) await dir.removeEntry(name);
  }
  if (typeof caches !== 'undefined') await caches.delete(CACHE_NAME);
}

export async function listCache() {
  const out = [];
  const dir = await opfs();
  if (dir) {
    for await (const name of dir.keys()) {
      if (!name.endsWith('.json')) continue;
      const meta = await readJson(dir, name);
      if (meta?.complete) out.push({ url: meta.url, size: meta.size, etag: meta.etag });
    }
  } else if (typeof caches !== 'undefined') {
    const c = await caches.open(CACHE_NAME);
    for (const req of await c.keys()) {
      const res = await c.match(req);
      out.push({ url: req.url, size: Number(res.headers.get('Content-Length')), etag: res.headers.get('ETag') });
    }
  }
  return out;
}

// ---- the network: stream the body; after a cut, continue with `Range: bytes=N-` ----

async function open(url, from, etag, signal) {
  const headers = from > 0 ? { Range: `bytes=${from}-`, ...(etag ? { 'If-Range': etag } : {}) } : {};
  const res = await fetch(url, { signal, headers, cache: 'no-store' });
  if (!res.ok) throw new HttpError(res.status, url);
  if (from > 0 && res.status !== 206) return { res, skip: from }; // the server ignored Range: skip what we have
  return { res, skip: 0 };
}

// Returns { size, etag, chunks } for a URL; chunks() downloads, writes the cache as it goes, and resumes.
export async function fromNetwork(url, { signal, cache = 'auto' } = {}) {
  const first = await open(url, 0, null, signal);
  const size = Number(first.res.headers.get('Content-Length'));
  if (!Number.isFinite(size) || size <= 0) throw new TernlmError(`${url}: the server sent no Content-Length`, 'HTTP');
  const etag = first.res.headers.get('ETag') || '';
  const dir = cache === 'none' ? null : await opfs();
  const key = await keyOf(url);
  async function* chunks() {
    let res = first.res;
    let skip = 0;
    let received = 0;
    let resumes = 0;
    let sink = null;
    if (dir) {
      sink = await (await dir.getFileHandle(`${key}.gguf`, { create: true })).createSyncAccessHandle();
      sink.truncate(0);
      await writeJson(dir, `${key}.json`, { url, size, etag, complete: false });
    } else if (cache !== 'none' && typeof caches !== 'undefined') {
      const [a, b] = res.body.tee(); // the Cache API takes a whole Response: give it its own branch
      res = new Response(a, { headers: res.headers });
      caches.open(CACHE_NAME).then((c) => c.put(url, new Response(b, { headers: first.res.headers }))).catch(() => {});
    }
    try {
      while (received < size) {
        const reader = res.body.getReader();
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            let v = value;
            if (skip > 0) { const k = Math.min(skip, v.length); v = v.subarray(k); skip -= k; }
            if (!v.length) continue;
            sink?.write(v, { at: received });
            received += v.length;
            yield v;
          }
        } catch (e) {
          if (signal?.aborted) throw abortError();
          if (resumes >= MAX_RESUMES) throw new TernlmError(`${url}: download failed after ${resumes} resumes: ${e.message}`, 'NETWORK');
        }
        if (received >= size) break;
        if (signal?.aborted) throw abortError();
        resumes++;
        ({ res, skip } = await open(url, received, etag, signal));
      }
      if (sink) {
        sink.flush();
        sink.close();
        sink = null;
        await writeJson(dir, `${key}.json`, { url, size, etag, complete: true });
      }
    } finally {
      sink?.close();
    }
  }
  return { size, etag, chunks };
}

export async function* bufferChunks(buf, chunk = 8 << 20) {
  const u8 = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  for (let i = 0; i < u8.length; i += chunk) yield u8.subarray(i, Math.min(u8.length, i + chunk));
}
