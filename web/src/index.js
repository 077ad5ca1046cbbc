// ternlm for the browser: run BitNet b1.58 (I2_S) and other ternary GGUF models on the CPU, in a Worker.
//
//   import { load } from 'ternlm';
//   const model = await load(url, { onProgress: ({ loaded, total }) => ..., signal, cache: 'auto' });
//   for await (const piece of model.generate('Once upon a time', { maxTokens: 64, signal })) out.append(piece);
//   for await (const piece of model.chat([{ role: 'user', content: 'Hi!' }])) out.append(piece);
//   const reply = await model.chat.completions.create({ messages, max_tokens: 64 });   // OpenAI's shape
export { TernlmError, FormatError, UnsupportedError, OutOfMemoryError, HttpError } from './engine.js';
import { completions } from './completions.js';
import { FormatError, HttpError, OutOfMemoryError, TernlmError, UnsupportedError } from './engine.js';

const ERRORS = { FormatError, UnsupportedError, OutOfMemoryError, TernlmError };

function rebuild(e) {
  if (e.name === 'AbortError') return typeof DOMException === 'function' ? new DOMException(e.message, 'AbortError') : Object.assign(new Error(e.message), { name: 'AbortError' });
  if (e.name === 'HttpError') return new HttpError(e.status, e.message.replace(/^HTTP \d+ for /, ''));
  const Cls = ERRORS[e.name];
  if (Cls) return Cls === TernlmError ? new TernlmError(e.message, e.code) : new Cls(e.message);
  return Object.assign(new Error(e.message), { name: e.name });
}

class Client {
  constructor(worker) {
    this.worker = worker;
    this.next = 1;
    this.pending = new Map();
    worker.onmessage = ({ data }) => this.pending.get(data.id)?.(data);
    worker.onerror = (ev) => { for (const h of this.pending.values()) h({ type: 'error', error: { name: 'Error', message: ev.message || 'worker failed' } }); };
  }

  // Send a request; `onEvent` sees every message; resolves with the result.
  request(op, payload, { signal, onEvent } = {}) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      const onAbort = () => this.worker.postMessage({ op: 'abort', target: id });
      if (signal?.aborted) { reject(rebuild({ name: 'AbortError', message: 'The operation was aborted' })); return; }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, (m) => {
        if (m.type === 'done' || m.type === 'error') {
          this.pending.delete(id);
          signal?.removeEventListener('abort', onAbort);
          if (m.type === 'done') resolve(m.result); else reject(rebuild(m.error));
        } else {
          onEvent?.(m);
        }
      });
      this.worker.postMessage({ id, op, ...payload });
    });
  }

  // A request whose 'piece' messages come out as an async iterator; `onResult` sees the final result.
  async *stream(op, payload, signal, onResult) {
    const queue = [];
    let wake = null;
    let end = null;
    const done = this.request(op, payload, { signal, onEvent: (m) => { queue.push(m.text); wake?.(); } })
      .then((r) => { end = { ok: true, r }; wake?.(); }, (e) => { end = { ok: false, e }; wake?.(); });
    for (;;) {
      if (queue.length) { yield queue.shift(); continue; }
      if (end) break;
      await new Promise((r) => { wake = r; });
      wake = null;
    }
    await done;
    if (!end.ok) throw end.e;
    this.lastStats = end.r?.stats;
    onResult?.(end.r);
  }
}

export class Model {
  constructor(client, info, fromCache) {
    this.client = client;
    this.info = info;
    this.fromCache = fromCache;
    const chat = (messages, opts = {}) => this.#chat(messages, opts);
    chat.completions = completions((messages, opts, onStats) => this.#chat(messages, opts, (r) => onStats(r?.stats)),
      info.name || info.arch);
    /** Continue a conversation (earlier turns stay in the KV cache); `chat.completions.create` is the OpenAI shape. */
    this.chat = chat;
  }
  /** Complete `prompt`; yields text pieces (never a partial UTF-8 character). */
  generate(prompt, opts = {}) {
    const { signal, ...rest } = opts;
    return this.client.stream('generate', { prompt, opts: rest }, signal);
  }
  // Continue a conversation; earlier turns stay in the KV cache when `messages` extends the previous call's.
  #chat(messages, opts, onResult) {
    const { signal, ...rest } = opts;
    return this.client.stream('chat', { messages, opts: rest }, signal, onResult);
  }
  tokenize(text, opts = {}) { return this.client.request('tokenize', { text, opts }); }
  detokenize(ids) { return this.client.request('detokenize', { ids: Array.from(ids) }); }
  /** Timings of the last generate/chat: prompt and generated token counts and milliseconds. */
  get stats() { return this.client.lastStats; }
  async unload() {
    await this.client.request('unload', {});
    this.client.worker.terminate();
  }
}

function workerFor(threads) {
  return new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: `ternlm-${threads}` });
}

/**
 * Load a GGUF model from a URL, a File/Blob or an ArrayBuffer. The bytes stream into the Worker's wasm memory
 * (no second full copy); URLs are cached persistently (OPFS, else the Cache API) and resumed with Range requests.
 */
export async function load(source, { onProgress, signal, cache = 'auto', threads, pretokenizer, headQuant, simd = 'auto' } = {}) {
  const isolated = typeof crossOriginIsolated !== 'undefined' && crossOriginIsolated;
  const variant = (threads ?? (isolated ? 0 : 1)) === 1 || !isolated ? 'st' : 'mt';
  const client = new Client(workerFor(variant));
  let src;
  if (typeof source === 'string' || source instanceof URL) src = { url: new URL(String(source), location.href).href };
  else if (typeof Blob !== 'undefined' && source instanceof Blob) src = { file: source };
  else if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) src = { buffer: source };
  else throw new TypeError('load(): give a URL, a File/Blob or an ArrayBuffer');
  try {
    const r = await client.request('load', { source: src, options: { cache, threads, pretokenizer, headQuant, simd, variant } }, {
      signal, onEvent: (m) => m.type === 'progress' && onProgress?.({ loaded: m.loaded, total: m.total, fromCache: m.fromCache }),
    });
    return new Model(client, { ...r.info, threadsVariant: r.variant || variant, simd: r.simd }, r.fromCache);
  } catch (e) {
    client.worker.terminate();
    throw e;
  }
}

async function withWorker(op) {
  const c = new Client(workerFor('st'));
  try { return await c.request(op, {}); } finally { c.worker.terminate(); }
}
/** Remove every cached model. */
export const clearCache = () => withWorker('clearCache');
/** The cached models: [{ url, size, etag }]. */
export const listCache = () => withWorker('listCache');
