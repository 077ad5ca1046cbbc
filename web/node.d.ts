// Types for the `ternlm` package in Node.js (web/src/node.js: the same engine, loading GGUF files from a path).
import type { Chat, GenerateOptions, ModelInfo, Stats, TokenizeOptions } from './types.js';

export * from './types.js';

export interface Progress { loaded: number; total: number }

export interface LoadOptions {
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
  /** Force a pre-tokenizer: 'llama3', 'gpt2' or 'default' (bitnet.cpp parity). */
  pretokenizer?: string;
  /** The LM head as native's `--head-quant`: 'f16' (default, the file's head: native's default bits), 'i8' (int8
   *  rows made at load: about half the bytes per generated token, logits as native's `--head-quant i8`) or 'i4'
   *  (4-bit rows with an 8-bit sub-scale per 32 values: about a quarter of the bytes and the fastest generation, a
   *  clearly larger change of the logits; the same logits as native's `--head-quant i4`). */
  headQuant?: 'f16' | 'i8' | 'i4';
}

export declare class Model {
  readonly info: ModelInfo;
  /** Timings of the last generation that finished. */
  readonly stats: Stats | undefined;
  readonly chat: Chat;
  /** Complete `prompt`; yields text pieces. Overlapping calls run one after another, never interleaved. */
  generate(prompt: string, opts?: GenerateOptions): AsyncIterableIterator<string>;
  tokenize(text: string, opts?: TokenizeOptions): number[];
  detokenize(ids: ArrayLike<number>): string;
  /** Frees the model once the requests already queued have finished. */
  unload(): Promise<void>;
}

/** Load a GGUF file from a path. */
export declare function load(path: string, opts?: LoadOptions): Promise<Model>;
