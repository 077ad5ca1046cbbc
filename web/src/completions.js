// The OpenAI-shaped chat API beside the async iterators, as web-llm has it:
//
//   const r = await model.chat.completions.create({ messages, max_tokens: 64 });          // r.choices[0].message
//   for await (const c of await model.chat.completions.create({ messages, stream: true })) c.choices[0]?.delta.content
//
// Streaming yields 'chat.completion.chunk' objects: the text in choices[0].delta.content, then one last chunk with
// an empty delta, choices[0].finish_reason ('stop' or 'length') and usage. For thinking models (Qwen3, Bonsai) the
// <think> block goes to reasoning_content (delta.reasoning_content, message.reasoning_content), as llama-server's
// default --reasoning-format does; reasoning_format: 'none' keeps it in the content, and
// chat_template_kwargs: { enable_thinking: false } turns thinking off. Shared by the browser and Node APIs:
// `run(messages, opts, onStats)` is the model's chat iterator that reports the call's stats when it ends.
import { TernlmError, UnsupportedError } from './engine.js';

const ROLES = { system: 'system', developer: 'system', user: 'user', assistant: 'assistant' };

// message content: a string, or OpenAI's array of parts of which only text parts are supported
function textOf(content, i) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((part) => {
      if (part?.type !== 'text') throw new UnsupportedError(`messages[${i}]: only text content parts are supported (got '${part?.type}')`);
      return part.text;
    }).join('');
  }
  throw new TernlmError(`messages[${i}].content must be a string or an array of text parts`, 'ARG');
}

function toMessages(messages) {
  if (!Array.isArray(messages) || messages.length === 0) throw new TernlmError('create(): messages must be a non-empty array', 'ARG');
  return messages.map((msg, i) => {
    const role = ROLES[msg?.role];
    if (!role) throw new UnsupportedError(`messages[${i}]: role '${msg?.role}' is not supported (system, developer, user, assistant)`);
    return { role, content: textOf(msg.content, i) };
  });
}

// The request's fields as GenerateOptions; fields left out keep the iterators' defaults, except max_tokens,
// which defaults to "until the end token or a full context", as OpenAI's does.
function toOptions(req) {
  if (req.n !== undefined && req.n !== null && req.n !== 1) throw new UnsupportedError('create(): only n = 1 is supported');
  const opts = { maxTokens: req.max_completion_tokens ?? req.max_tokens ?? -1 };
  const map = { temperature: 'temperature', top_p: 'topP', top_k: 'topK', min_p: 'minP', seed: 'seed',
    repetition_penalty: 'repeatPenalty', signal: 'signal', context_size: 'contextSize' };
  for (const [from, to] of Object.entries(map)) if (req[from] !== undefined && req[from] !== null) opts[to] = req[from];
  if (req.stop !== undefined && req.stop !== null) opts.stop = Array.isArray(req.stop) ? req.stop : [req.stop];
  const format = req.reasoning_format ?? 'auto';
  if (!['auto', 'deepseek', 'none'].includes(format)) throw new TernlmError(`reasoning_format must be 'auto', 'deepseek' or 'none' (got '${format}')`, 'ARG');
  opts.reasoning = format === 'none' ? 'show' : 'separate';
  if (req.chat_template_kwargs?.enable_thinking === false) opts.thinking = false;
  return opts;
}

function usageOf(stats) {
  const prompt = stats?.contextTokens ?? 0;
  const completion = stats?.generatedTokens ?? 0;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: Math.max(0, prompt - (stats?.promptTokens ?? 0)) } };
}

// An id in OpenAI's form; it only needs to be unique among this page's or process's completions.
function completionId() {
  const bytes = new Uint8Array(12);
  if (globalThis.crypto?.getRandomValues) globalThis.crypto.getRandomValues(bytes); // Node 18 has no global crypto
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return `chatcmpl-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

async function* chunks(run, messages, opts, model) {
  const id = completionId();
  const created = Math.floor(Date.now() / 1000);
  const chunk = (choice, extra) => ({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, logprobs: null, ...choice }], ...extra });
  let stats;
  let first = true;
  for await (const piece of run(messages, opts, (s) => { stats = s; })) {
    const delta = typeof piece === 'string' ? { content: piece } : { reasoning_content: piece.reasoning };
    yield chunk({ delta: first ? { role: 'assistant', ...delta } : delta, finish_reason: null });
    first = false;
  }
  yield chunk({ delta: {}, finish_reason: stats?.finishReason ?? 'stop' }, { usage: usageOf(stats) });
}

async function whole(run, messages, opts, model) {
  let stats;
  let content = '', reasoning = '';
  for await (const piece of run(messages, opts, (s) => { stats = s; })) {
    if (typeof piece === 'string') content += piece;
    else reasoning += piece.reasoning;
  }
  const message = reasoning ? { role: 'assistant', content, reasoning_content: reasoning } : { role: 'assistant', content };
  return {
    id: completionId(), object: 'chat.completion', created: Math.floor(Date.now() / 1000), model,
    choices: [{ index: 0, message, finish_reason: stats?.finishReason ?? 'stop', logprobs: null }],
    usage: usageOf(stats),
  };
}

/** `chat.completions` for a model whose chat iterator is `run`; `model` names it in the responses. */
export function completions(run, model) {
  return {
    async create(req) {
      if (!req || typeof req !== 'object') throw new TernlmError('create(): give a request object', 'ARG');
      const messages = toMessages(req.messages);
      const opts = toOptions(req);
      return req.stream ? chunks(run, messages, opts, model) : whole(run, messages, opts, model);
    },
  };
}
