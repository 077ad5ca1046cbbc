// ternlm for Node.js: the same API as the browser package (web/), over the same Emscripten build, loading
// GGUF files from a path. Streams text with async iterators; AbortSignal stops a generation.
//
//   import { load } from './node/index.mjs';
//   const model = await load('models/ternlm-tinystories.gguf', { onProgress });
//   for await (const piece of model.generate('Once upon a time', { maxTokens: 64 })) process.stdout.write(piece);
import { open, readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Engine } from '../web/src/engine.js';

export { TernlmError, FormatError, UnsupportedError, OutOfMemoryError } from '../web/src/engine.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, '..', 'web', 'dist');
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

export class Model {
  constructor(handle) { this.handle = handle; this.info = handle.info; }
  generate(prompt, opts = {}) { return this.handle.generate(prompt, opts); }
  chat(messages, opts = {}) { return this.handle.chat(messages, opts); }
  tokenize(text, opts) { return this.handle.tokenize(text, opts); }
  detokenize(ids) { return this.handle.detokenize(ids); }
  get stats() { return this.handle.stats; }
  async unload() { this.handle.free(); }
}

export async function load(file, { onProgress, signal, pretokenizer } = {}) {
  const e = await engine();
  const { size } = await stat(file);
  return new Model(await e.loadModel(size, fileChunks(file, size), { onProgress, signal, pretokenizer }));
}
