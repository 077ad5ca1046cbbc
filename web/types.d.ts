// Types shared by the `ternlm` package's browser entry (index.d.ts) and Node entry (node.d.ts).

export interface GenerateOptions {
  /** Tokens to generate; default 128. Any negative value (-1) means until an end token or a full context. */
  maxTokens?: number;
  temperature?: number;       // default 0.8; 0 is greedy
  topK?: number;              // default 40; 0 is off
  topP?: number;              // default 0.95; 1 is off
  minP?: number;              // default 0.05; 0 is off
  repeatPenalty?: number;     // default 1 (off)
  /** Tokens of history the repeat penalty looks back at; default 64. */
  repeatLastN?: number;
  seed?: number;              // default: random
  stop?: string[];            // stop strings (not included in the output)
  ignoreEos?: boolean;        // keep going past end-of-generation tokens
  /** Turn special-token text such as "<|eot_id|>" in a generate() prompt into its id; default true. */
  parseSpecial?: boolean;
  /** This call's context size; default: the model's, at most 4096. It does not carry over to later calls. */
  contextSize?: number;
  /** Threads for this call (the pthreads build only); default: the cores available. */
  threads?: number;
  signal?: AbortSignal;
}

/** chat() options: for models whose template writes <think> blocks (ModelInfo.thinking: Qwen3, Bonsai). */
export interface ChatOptions extends GenerateOptions {
  /** 'show' (default): the text as generated; 'hide': only the answer; 'separate': the answer as strings and the
   * reasoning as { reasoning } parts. The split is the C core's (ternlm_reasoning_*), at any token boundary. */
  reasoning?: 'show' | 'hide' | 'separate';
  /** false renders the template with enable_thinking = false (Qwen3 then answers without thinking). */
  thinking?: boolean;
}

/** A 'separate' chat's reasoning text; answer text comes as plain strings. */
export interface ReasoningPart { reasoning: string }

export interface ChatMessage { role: 'system' | 'user' | 'assistant'; content: string }

export interface TokenizeOptions { addSpecial?: boolean; parseSpecial?: boolean }

export interface ModelInfo {
  arch: string; name: string; nVocab: number; nCtxTrain: number; nEmbd: number; nLayer: number; nHead: number;
  nHeadKv: number; nFf: number; weightType: string; headType: string; tokenizer: string; pretokenizer: string;
  bos: number; eos: number; eot: number; params: number; bytes: number; kernels: string;
  /** The chat template writes <think> blocks (ChatOptions.reasoning applies). */
  thinking: boolean;
}

export interface Stats {
  /** Tokens this call evaluated before generating (a chat turn evaluates only its new tokens). */
  promptTokens: number;
  /** Tokens in the context when generation began: the whole conversation so far. */
  contextTokens: number;
  generatedTokens: number;
  promptMs: number;
  generateMs: number;
  /** 'stop': an end token or a stop string; 'length': maxTokens or a full context. */
  finishReason: FinishReason;
}

// ---- the OpenAI-shaped API: model.chat.completions.create(...) ----

export type FinishReason = 'stop' | 'length';

export interface ChatCompletionContentPartText { type: 'text'; text: string }

export interface ChatCompletionMessageParam {
  /** 'developer' is read as 'system'. */
  role: 'system' | 'developer' | 'user' | 'assistant';
  content: string | ChatCompletionContentPartText[];
}

export interface ChatCompletionRequestBase {
  messages: ChatCompletionMessageParam[];
  /** Default: until an end token or a full context. */
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  repetition_penalty?: number | null;
  stop?: string | string[] | null;
  seed?: number | null;
  /** Only 1 is supported. */
  n?: 1 | null;
  context_size?: number | null;
  /** Thinking models: 'auto' or 'deepseek' (default) put the <think> block in reasoning_content; 'none' leaves it in
   * content (llama-server's --reasoning-format). */
  reasoning_format?: 'auto' | 'deepseek' | 'none' | null;
  /** Only enable_thinking is read: false turns thinking off. */
  chat_template_kwargs?: { enable_thinking?: boolean } | null;
  signal?: AbortSignal;
}
export interface ChatCompletionRequestStreaming extends ChatCompletionRequestBase { stream: true }
export interface ChatCompletionRequestNonStreaming extends ChatCompletionRequestBase { stream?: false | null }
export type ChatCompletionRequest = ChatCompletionRequestStreaming | ChatCompletionRequestNonStreaming;

export interface CompletionUsage {
  /** The whole conversation's tokens (cached ones included). */
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Tokens of the prompt that the KV cache already held from earlier turns. */
  prompt_tokens_details: { cached_tokens: number };
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: { index: number; message: { role: 'assistant'; content: string; reasoning_content?: string }; finish_reason: FinishReason; logprobs: null }[];
  usage: CompletionUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  /** Text chunks have delta.content and finish_reason null; the last chunk has an empty delta, the finish_reason
   * and usage. */
  choices: { index: number; delta: { role?: 'assistant'; content?: string; reasoning_content?: string }; finish_reason: FinishReason | null; logprobs: null }[];
  usage?: CompletionUsage;
}

export interface Completions {
  create(request: ChatCompletionRequestStreaming): Promise<AsyncIterableIterator<ChatCompletionChunk>>;
  create(request: ChatCompletionRequestNonStreaming): Promise<ChatCompletion>;
  create(request: ChatCompletionRequest): Promise<AsyncIterableIterator<ChatCompletionChunk> | ChatCompletion>;
}

/** model.chat(messages) streams a reply; model.chat.completions.create(...) is the OpenAI shape of the same. */
export interface Chat {
  /** Continue a conversation; earlier turns stay in the KV cache when `messages` extends the previous call's. */
  (messages: ChatMessage[], opts: ChatOptions & { reasoning: 'separate' }): AsyncIterableIterator<string | ReasoningPart>;
  (messages: ChatMessage[], opts?: ChatOptions): AsyncIterableIterator<string>;
  readonly completions: Completions;
}

export declare class TernlmError extends Error { code: string; constructor(message: string, code?: string) }
export declare class FormatError extends TernlmError { constructor(message: string) }
export declare class UnsupportedError extends TernlmError { constructor(message: string) }
export declare class OutOfMemoryError extends TernlmError { constructor(message: string) }
export declare class HttpError extends TernlmError { status: number; url: string; constructor(status: number, url: string) }
