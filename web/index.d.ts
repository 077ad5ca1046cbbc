// Types for the `ternlm` package in the browser (web/src/index.js: the model runs in a Worker).
import type { Chat, GenerateOptions, ModelInfo as BaseModelInfo, Stats, TokenizeOptions } from './types.js';

export * from './types.js';

export interface Progress { loaded: number; total: number; fromCache: boolean }

export interface LoadOptions {
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
  /** 'auto' (default) keeps downloads in OPFS (else the Cache API); 'none' never caches. */
  cache?: 'auto' | 'none';
  /** 1 forces the single-thread build; otherwise the pthreads build is used when crossOriginIsolated. */
  threads?: number;
  /** Force a pre-tokenizer: 'llama3', 'gpt2' or 'default' (bitnet.cpp parity). */
  pretokenizer?: string;
  /** The LM head as native's `--head-quant`: 'f16' (default, the file's head: native's default bits), 'i8' (int8
   *  rows made at load: about half the bytes per generated token, logits as native's `--head-quant i8`) or 'i4'
   *  (4-bit rows with an 8-bit sub-scale per 32 values: about a quarter of the bytes and the fastest generation, a
   *  clearly larger change of the logits; the same logits as native's `--head-quant i4`). */
  headQuant?: 'f16' | 'i8' | 'i4';
  /** 'auto' (default): the relaxed-SIMD module where the engine validates relaxed SIMD, else plain SIMD128;
   *  'simd128' always the plain module. */
  simd?: 'auto' | 'simd128';
}

/** threadsVariant: the pthreads ('mt') or single-thread ('st') module; simd: which kernels module it is. */
export interface ModelInfo extends BaseModelInfo { threadsVariant: 'st' | 'mt'; simd: 'relaxed' | 'simd128' }

export declare class Model {
  readonly info: ModelInfo;
  readonly fromCache: boolean;
  /** Timings of the last generate/chat. */
  readonly stats: Stats | undefined;
  readonly chat: Chat;
  /** Complete `prompt`; yields text pieces (never a partial UTF-8 character). Requests run one at a time. */
  generate(prompt: string, opts?: GenerateOptions): AsyncIterableIterator<string>;
  tokenize(text: string, opts?: TokenizeOptions): Promise<number[]>;
  detokenize(ids: ArrayLike<number>): Promise<string>;
  unload(): Promise<void>;
}

export declare function load(source: string | URL | Blob | ArrayBuffer | ArrayBufferView, opts?: LoadOptions): Promise<Model>;
/** Remove every cached model. */
export declare function clearCache(): Promise<void>;
/** The cached models. */
export declare function listCache(): Promise<{ url: string; size: number; etag: string | null }[]>;
