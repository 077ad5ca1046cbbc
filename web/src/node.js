// ternlm for Node.js (the package's "node" export): the same API as the browser's, over the same Emscripten
// build, loading GGUF files from a path. Streams text with async iterators; AbortSignal stops a generation.
//
//   import { load } from 'ternlm';
//   const model = await load('models/ternlm-tinystories.gguf', { onProgress });
//   for await (const piece of model.generate('Once upon a time', { maxTokens: 64 })) process.stdout.write(piece);
//
// Calls that overlap (Promise.all over two generations) run one after another, in the order their iterators
// first ask for a piece, as the browser's Worker queues them: one session never interleaves two requests.
import { open, readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { completions } from './completions.js';
import { Engine, abortError } from './engine.js';

export { TernlmError, FormatError, UnsupportedError, OutOfMemoryError, HttpError } from './engine.js';

const dist = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');
let enginePromise = null;

async function engine() {
  if (!enginePromise) {
    enginePromise = (async () => {
      // Emscripten 3.1.6's ES-module output reaches for CommonJS names in its Node branch
      globalThis.require ??= createRequire(import.meta.url);
      globalThis.__dirname ??= dist;
      const { default: createTernlm } = await import(path.join(dist, 'ternlm-web.mjs'));
      const wasmBinary = await readFile(path.join(dist, 'ternlm-web.wasm'));
      return new Engine(await createTernlm({ wasmBinary }));
    })();
    enginePromise.catch(() => { enginePromise = null; });
  }
  return enginePromise;
}

async function* fileChunks(file, size, chunkSize = 4 << 20) {
  const fh = await open(file, 'r');
  try {
    for (let pos = 0; pos < size;) {
      const buf = Buffer.allocUnsafe(Math.min(chunkSize, size - pos));
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead <= 0) break;
      pos += bytesRead;
      yield buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

// Resolves when `signal` aborts (never, without one); `off` removes the listener.
function abortWait(signal) {
  let off = () => {};
  const wait = new Promise((resolve) => {
    if (!signal) return;
    if (signal.aborted) { resolve(); return; }
    signal.addEventListener('abort', resolve, { once: true });
    off = () => signal.removeEventListener('abort', resolve);
  });
  return { wait, off };
}

export class Model {
  #handle;
  #tail = Promise.resolve(); // settles when every request queued so far has finished

  constructor(handle) {
    this.#handle = handle;
    this.info = handle.info;
    const chat = (messages, opts = {}) => this.#queued(() => this.#handle.chat(messages, opts), opts.signal);
    chat.completions = completions((messages, opts, onStats) =>
      this.#queued(() => this.#handle.chat(messages, opts), opts.signal, onStats), handle.info.name || handle.info.arch);
    /** Continue a conversation (earlier turns stay in the KV cache); `chat.completions.create` is the OpenAI shape. */
    this.chat = chat;
  }

  // Runs `makeIterator()` once every earlier request has finished; an abort while waiting rejects at once.
  async *#queued(makeIterator, signal, onStats) {
    let release;
    const mine = new Promise((resolve) => { release = resolve; });
    const before = this.#tail;
    this.#tail = before.then(() => mine);
    try {
      const aborted = abortWait(signal);
      await Promise.race([before, aborted.wait]);
      aborted.off();
      if (signal?.aborted) throw abortError();
      yield* makeIterator();
      onStats?.(this.#handle.stats);
    } finally {
      release();
    }
  }

  /** Complete `prompt`; yields text pieces (never a partial UTF-8 character). */
  generate(prompt, opts = {}) { return this.#queued(() => this.#handle.generate(prompt, opts), opts.signal); }
  tokenize(text, opts) { return this.#handle.tokenize(text, opts); }
  detokenize(ids) { return this.#handle.detokenize(Array.from(ids)); }
  /** Timings and counts of the last generation that finished. */
  get stats() { return this.#handle.stats; }
  /** Frees the model's memory once the requests already queued have finished. */
  async unload() {
    await this.#tail;
    this.#handle.free();
  }
}

/** Load a GGUF file from a path, streaming it into wasm memory through the incremental loader. */
export async function load(file, { onProgress, signal, pretokenizer, headQuant } = {}) {
  const e = await engine();
  const { size } = await stat(file);
  return new Model(await e.loadModel(size, fileChunks(file, size), { onProgress, signal, pretokenizer, headQuant }));
}
