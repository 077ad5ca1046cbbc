// The Worker that owns the wasm module: the page's thread never runs inference. Messages in: {id, op, ...};
// messages out: {id, type: 'progress' | 'piece' | 'done' | 'error', ...}. {op: 'abort', target} stops request `target`.
import { Engine } from './engine.js';
import { bufferChunks, cacheLookup, clearCache, fromNetwork, listCache } from './download.js';

let enginePromise = null;
let model = null;
const running = new Map(); // request id -> AbortController

let loadedVariant = null; // the module this Worker runs: 'mt' (pthreads) or 'st'
let loadedSimd = null; // and its kernels: 'relaxed' or 'simd128'

// A module of one function doing one i32x4.relaxed_dot_i8x16_i7x16_add_s: engines without relaxed SIMD refuse it.
const RELAXED_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 61, 1, 59, 0,
  253, 12, ...new Array(16).fill(0), 253, 12, ...new Array(16).fill(0), 253, 12, ...new Array(16).fill(0), 253, 147, 2, 11]);

function hasRelaxedSimd() {
  try { return WebAssembly.validate(RELAXED_PROBE); } catch { return false; }
}

async function createModule(variant, simd) {
  const name = (variant === 'mt' ? 'ternlm-web-mt' : 'ternlm-web') + (simd === 'relaxed' ? '-relaxed' : '');
  const { default: create } = await import(new URL(`../dist/${name}.mjs`, import.meta.url).href);
  return create({ locateFile: (p) => new URL(`../dist/${p}`, import.meta.url).href });
}

// The modules to try, best first: pthreads when asked for, relaxed SIMD when the engine validates it. A package
// built without one of them (or a pthreads module whose threads cannot start) falls through to the next, down to
// the single-thread SIMD128 module that every engine with SIMD128 runs.
function candidates(variant, simd) {
  const relaxed = simd !== 'simd128' && hasRelaxedSimd();
  const out = [];
  for (const v of variant === 'mt' ? ['mt', 'st'] : ['st']) {
    if (relaxed) out.push([v, 'relaxed']);
    out.push([v, 'simd128']);
  }
  return out;
}

function engine(variant, simd) {
  if (!enginePromise) {
    enginePromise = (async () => {
      let last;
      for (const [v, s] of candidates(variant, simd)) {
        try {
          const mod = await createModule(v, s);
          [loadedVariant, loadedSimd] = [v, s];
          return new Engine(mod);
        } catch (e) {
          last = e; /* try the next module */
        }
      }
      throw last;
    })();
  }
  return enginePromise;
}

function post(msg) { self.postMessage(msg); }
function errorOf(e) { return { name: e?.name || 'Error', message: e?.message || String(e), code: e?.code, status: e?.status }; }

async function load(id, { source, options }, signal) {
  const e = await engine(options.variant, options.simd);
  let size;
  let chunks;
  let fromCache = false;
  if (source.url) {
    const cached = options.cache === 'none' ? null : await cacheLookup(source.url);
    if (cached) {
      ({ size } = cached);
      chunks = cached.chunks();
      fromCache = true;
    } else {
      const net = await fromNetwork(source.url, { signal, cache: options.cache });
      size = net.size;
      chunks = net.chunks();
    }
  } else if (source.file) {
    size = source.file.size;
    chunks = (async function* () { const r = source.file.stream().getReader(); for (;;) { const { done, value } = await r.read(); if (done) return; yield value; } })();
  } else if (source.buffer) {
    size = source.buffer.byteLength;
    chunks = bufferChunks(source.buffer);
  } else {
    throw new TypeError('load(): give a URL, a File or an ArrayBuffer');
  }
  model?.free();
  model = null;
  const onProgress = (p) => post({ id, type: 'progress', ...p, fromCache });
  model = await e.loadModel(size, chunks, { onProgress, signal, pretokenizer: options.pretokenizer, headQuant: options.headQuant });
  return { info: model.info, fromCache, variant: loadedVariant, simd: loadedSimd };
}

async function stream(id, iterator) {
  for await (const text of iterator) post({ id, type: 'piece', text });
  return { stats: model.stats };
}

const ops = {
  load: (id, msg, signal) => load(id, msg, signal),
  generate: (id, { prompt, opts }, signal) => stream(id, model.generate(prompt, { ...opts, signal })),
  chat: (id, { messages, opts }, signal) => stream(id, model.chat(messages, { ...opts, signal })),
  tokenize: (id, { text, opts }) => model.tokenize(text, opts),
  detokenize: (id, { ids }) => model.detokenize(ids),
  unload: () => { model?.free(); model = null; return true; },
  clearCache: () => clearCache(),
  listCache: () => listCache(),
};

let queue = Promise.resolve(); // one request at a time; aborts bypass the queue

self.onmessage = ({ data: msg }) => {
  if (msg.op === 'abort') {
    running.get(msg.target)?.abort();
    return;
  }
  const ctl = new AbortController();
  running.set(msg.id, ctl); // registered now, so an abort that arrives while queued still counts
  queue = queue.then(() => handle(msg, ctl));
};

async function handle(msg, ctl) {
  try {
    if (ctl.signal.aborted) throw Object.assign(new Error('The operation was aborted'), { name: 'AbortError' });
    if (!ops[msg.op]) throw new TypeError(`unknown operation ${msg.op}`);
    if (!model && !['load', 'clearCache', 'listCache', 'unload'].includes(msg.op)) throw new Error('no model is loaded');
    post({ id: msg.id, type: 'done', result: await ops[msg.op](msg.id, msg, ctl.signal) });
  } catch (e) {
    post({ id: msg.id, type: 'error', error: errorOf(e) });
  } finally {
    running.delete(msg.id);
  }
}
