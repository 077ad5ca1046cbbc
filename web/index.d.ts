// Types for the `ternlm` browser package (web/src/index.js).

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
}

export interface GenerateOptions {
  maxTokens?: number;         // default 128
  temperature?: number;       // default 0.8; 0 is greedy
  topK?: number;              // default 40
  topP?: number;              // default 0.95
  minP?: number;              // default 0.05
  repeatPenalty?: number;     // default 1 (off)
  seed?: number;              // default: random
  stop?: string[];            // stop strings (not included in the output)
  ignoreEos?: boolean;        // keep going past end-of-generation tokens
  contextSize?: number;       // default: the model's, at most 4096
  signal?: AbortSignal;
}

export interface ChatMessage { role: 'system' | 'user' | 'assistant'; content: string }

export interface ModelInfo {
  arch: string; name: string; nVocab: number; nCtxTrain: number; nEmbd: number; nLayer: number; nHead: number;
  nHeadKv: number; nFf: number; weightType: string; headType: string; tokenizer: string; pretokenizer: string;
  bos: number; eos: number; eot: number; params: number; bytes: number; kernels: string; threadsVariant: 'st' | 'mt';
}

export interface Stats { promptTokens: number; generatedTokens: number; promptMs: number; generateMs: number }

export declare class Model {
  readonly info: ModelInfo;
  readonly fromCache: boolean;
  readonly stats: Stats | undefined;
  generate(prompt: string, opts?: GenerateOptions): AsyncIterableIterator<string>;
  chat(messages: ChatMessage[], opts?: GenerateOptions): AsyncIterableIterator<string>;
  tokenize(text: string, opts?: { addSpecial?: boolean; parseSpecial?: boolean }): Promise<number[]>;
  detokenize(ids: ArrayLike<number>): Promise<string>;
  unload(): Promise<void>;
}

export declare function load(source: string | URL | Blob | ArrayBuffer | ArrayBufferView, opts?: LoadOptions): Promise<Model>;
export declare function clearCache(): Promise<void>;
export declare function listCache(): Promise<{ url: string; size: number; etag: string | null }[]>;

export declare class TernlmError extends Error { code: string }
export declare class FormatError extends TernlmError {}
export declare class UnsupportedError extends TernlmError {}
export declare class OutOfMemoryError extends TernlmError {}
export declare class HttpError extends TernlmError { status: number; url: string }
