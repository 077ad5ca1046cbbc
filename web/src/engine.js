// The engine: ternlm's C core (an Emscripten module) driven from JavaScript. Shared by the browser Worker and
// the Node API. The token loop runs here, one token at a time, so callers can abort between tokens.

export class TernlmError extends Error {
  constructor(message, code = 'TERNLM_ERROR') {
    super(message);
    this.name = 'TernlmError';
    this.code = code;
  }
}
export class FormatError extends TernlmError {
  constructor(message) { super(message, 'FORMAT'); this.name = 'FormatError'; }
}
export class UnsupportedError extends TernlmError {
  constructor(message) { super(message, 'UNSUPPORTED'); this.name = 'UnsupportedError'; }
}
export class OutOfMemoryError extends TernlmError {
  constructor(message) { super(message, 'OUT_OF_MEMORY'); this.name = 'OutOfMemoryError'; }
}
export class HttpError extends TernlmError {
  constructor(status, url) { super(`HTTP ${status} for ${url}`, 'HTTP'); this.name = 'HttpError'; this.status = status; this.url = url; }
}

export function abortError() {
  return typeof DOMException === 'function' ? new DOMException('The operation was aborted', 'AbortError')
    : Object.assign(new Error('The operation was aborted'), { name: 'AbortError' });
}

// ternlm_status codes (ternlm.h) -> error classes
const STATUS = { 3: FormatError, 4: UnsupportedError, 5: TernlmError, 6: OutOfMemoryError };

const TOKENIZE_ADD_SPECIAL = 1;
const TOKENIZE_PARSE_SPECIAL = 2;

// Let the event loop run (so an abort message can arrive) at least every YIELD_MS of work. A timer, not a
// MessageChannel: Chromium may keep serving a busy port ahead of the Worker's incoming messages.
const YIELD_MS = 30;
const yieldToLoop = () => new Promise((resolve) => setTimeout(resolve, 0));

// maxTokens: a whole number; any negative value means until the context is full.
function checkMaxTokens(n) {
  if (n === undefined || n === null) return 128;
  if (!Number.isInteger(n)) throw new TernlmError(`maxTokens must be a whole number (got ${n})`, 'ARG');
  return n < 0 ? Infinity : n;
}

// The LM head's load-time format, as native's `--head-quant`: undefined/'f16' keeps the file's head, 'i8' int8 rows,
// 'i4' 4-bit rows with 8-bit sub-scales; the number is tlw_loader_finish's `head` (targets/emscripten/exports.c).
function headQuantFlag(headQuant) {
  if (headQuant === undefined || headQuant === null || headQuant === 'f16') return 0;
  if (headQuant === 'i8') return 1;
  if (headQuant === 'i4') return 2;
  throw new TernlmError(`headQuant must be 'f16', 'i8' or 'i4' (got ${headQuant})`, 'ARG');
}

export class Engine {
  constructor(mod) {
    this.mod = mod;
    this.err = mod._tlw_error_new();
    this.scratch = mod._malloc(16);
  }

  heapU8() { return this.mod.HEAPU8; }
  u32(ptr) { return this.mod.HEAPU32[ptr >>> 2]; }

  fail(what) {
    const code = this.mod._tlw_error_code(this.err);
    const msg = this.mod.UTF8ToString(this.mod._tlw_error_message(this.err));
    const Cls = STATUS[code] || TernlmError;
    return new Cls(what ? `${what}: ${msg}` : msg);
  }

  cstr(s) {
    const n = this.mod.lengthBytesUTF8(s) + 1;
    const p = this.mod._malloc(n) >>> 0;
    this.mod.stringToUTF8(s, p, n);
    return { ptr: p, len: n - 1 };
  }

  // Stream a file's bytes (an async iterable of Uint8Array, `total` bytes in all) into wasm memory through the
  // incremental GGUF loader: the header is parsed as it arrives and tensor data lands in its final place.
  // headQuant: 'f16' (default: the file's head, native's default bits), 'i8' or 'i4' (native's --head-quant i8 / i4,
  // same bits as native with that option).
  async loadModel(total, chunks, { onProgress, signal, pretokenizer, headQuant } = {}) {
    const head = headQuantFlag(headQuant);
    const m = this.mod;
    const ld = m._tlw_loader_new(total, this.err) >>> 0;
    if (!ld) throw this.fail('cannot load the model');
    let received = 0;
    try {
      for await (const chunk of chunks) {
        if (signal?.aborted) throw abortError();
        for (let off = 0; off < chunk.length;) {
          const dst = m._tlw_loader_buffer(ld, this.scratch) >>> 0;
          if (!dst) {
            if (m._tlw_loader_commit(ld, 0, this.err) !== 0) throw this.fail();
            throw new FormatError(`the file is longer than the announced ${total} bytes`);
          }
          const n = Math.min(this.u32(this.scratch), chunk.length - off);
          this.heapU8().set(chunk.subarray(off, off + n), dst);
          if (m._tlw_loader_commit(ld, n, this.err) !== 0) throw this.fail();
          off += n;
          received += n;
        }
        onProgress?.({ loaded: received, total });
      }
      if (received !== total) throw new FormatError(`truncated file: received ${received} of ${total} bytes`);
    } catch (e) {
      m._tlw_loader_free(ld);
      throw e;
    }
    const pre = this.cstr(pretokenizer || '');
    const model = m._tlw_loader_finish(ld, pre.ptr, head, this.err) >>> 0;
    m._free(pre.ptr);
    if (!model) throw this.fail();
    return new ModelHandle(this, model);
  }
}

// The core's reasoning splitter (ternlm_reasoning_*) over wasm: text pieces in, answer strings and
// { reasoning } objects out, in order, whatever the token boundaries.
class ReasoningSplitter {
  constructor(engine) {
    this.engine = engine;
    this.mod = engine.mod;
    this.ptr = this.mod._tlw_split_new(0, engine.err) >>> 0;
    if (!this.ptr) throw engine.fail('reasoning splitter');
    this.out = this.mod._malloc(8) >>> 0;
    this.dec = new TextDecoder();
  }

  *feed(text, final, mode) {
    const m = this.mod;
    const s = this.engine.cstr(text);
    const p = m._tlw_split_feed(this.ptr, s.ptr, s.len, final ? 1 : 0, this.out, this.out + 4) >>> 0;
    m._free(s.ptr);
    if (!p) throw new TernlmError('out of memory in the reasoning splitter', 'OUT_OF_MEMORY');
    const nReasoning = this.engine.u32(this.out), nTotal = this.engine.u32(this.out + 4);
    const reasoning = this.dec.decode(m.HEAPU8.slice(p, p + nReasoning));
    const answer = this.dec.decode(m.HEAPU8.slice(p + nReasoning, p + nTotal));
    if (reasoning && mode === 'separate') yield { reasoning };
    if (answer) yield answer;
  }

  free() {
    this.mod._tlw_split_free(this.ptr);
    this.mod._free(this.out);
  }
}

export class ModelHandle {
  constructor(engine, ptr) {
    this.engine = engine;
    this.mod = engine.mod;
    this.ptr = ptr;
    const j = this.mod._tlw_model_info_json(ptr) >>> 0;
    this.info = JSON.parse(this.mod.UTF8ToString(j));
    this.mod._free(j);
    this.session = 0;
    this.chats = new Map();
    this.busy = false;
  }

  // The session for this call's contextSize and threads (0: the defaults). A call that leaves them out gets the
  // defaults again, never the previous call's values. A new session starts a new conversation.
  ensureSession(nCtx = 0, threads = 0) {
    const key = `${nCtx || 0}/${threads || 0}`;
    if (this.session && key === this.sessionKey) return;
    this.resetChat(); // the chat state points into the old session
    if (this.session) this.mod._tlw_session_free(this.session);
    this.sessionKey = null;
    this.session = this.mod._tlw_session_new(this.ptr, nCtx || 0, threads || 0, this.engine.err) >>> 0;
    if (!this.session) throw this.engine.fail('cannot create a session');
    this.sessionKey = key;
  }

  tokenize(text, { addSpecial = false, parseSpecial = true } = {}) {
    const m = this.mod;
    const s = this.engine.cstr(text);
    const flags = (addSpecial ? TOKENIZE_ADD_SPECIAL : 0) | (parseSpecial ? TOKENIZE_PARSE_SPECIAL : 0);
    let cap = s.len + 8;
    let out = m._malloc(cap * 4) >>> 0;
    let n = m._tlw_tokenize(this.ptr, s.ptr, s.len, flags, out, cap, this.engine.err);
    if (n > cap) {
      m._free(out);
      cap = n;
      out = m._malloc(cap * 4) >>> 0;
      n = m._tlw_tokenize(this.ptr, s.ptr, s.len, flags, out, cap, this.engine.err);
    }
    m._free(s.ptr);
    if (n < 0) { m._free(out); throw this.engine.fail('tokenize'); }
    const ids = Array.from(m.HEAP32.subarray(out >>> 2, (out >>> 2) + n));
    m._free(out);
    return ids;
  }

  detokenize(ids) {
    const m = this.mod;
    const p = m._malloc(ids.length * 4 + 4) >>> 0;
    m.HEAP32.set(ids, p >>> 2);
    let cap = ids.length * 16 + 16;
    let buf = m._malloc(cap) >>> 0;
    let n = m._tlw_detokenize(this.ptr, p, ids.length, buf, cap);
    if (n >= cap) {
      m._free(buf);
      cap = n + 1;
      buf = m._malloc(cap) >>> 0;
      n = m._tlw_detokenize(this.ptr, p, ids.length, buf, cap);
    }
    const text = new TextDecoder().decode(m.HEAPU8.slice(buf, buf + n));
    m._free(p);
    m._free(buf);
    return text;
  }

  newSampler(o) {
    const smp = this.mod._tlw_sampler_new(o.temperature ?? 0.8, o.topK ?? 40, o.topP ?? 0.95, o.minP ?? 0.05,
      o.repeatPenalty ?? 1, o.repeatLastN ?? 64, o.seed ?? -1, this.info.nVocab, this.engine.err) >>> 0;
    if (!smp) throw this.engine.fail('sampler');
    return smp;
  }

  evalIds(ids) {
    const m = this.mod;
    if (!ids.length) return;
    const p = m._malloc(ids.length * 4) >>> 0;
    m.HEAP32.set(ids, p >>> 2);
    const st = m._tlw_eval(this.session, p, ids.length, this.engine.err);
    m._free(p);
    if (st !== 0) throw this.engine.fail();
  }

  // The token loop. Evaluates `ids` after what the session holds, then yields text pieces until an end token,
  // maxTokens (< 0: until the context is full, as the CLI's -n -1), a stop string, or the signal. `onToken(id)`
  // sees every token id. this.stats.finishReason says why it ended: 'stop' (end token or stop string) or 'length'.
  async *run(ids, opts) {
    const m = this.mod;
    const signal = opts.signal;
    if (signal?.aborted) throw abortError();
    const smp = this.newSampler(opts);
    const stream = m._tlw_stream_new(this.ptr) >>> 0;
    const stops = (opts.stop || []).filter((s) => s.length);
    const maxTokens = checkMaxTokens(opts.maxTokens);
    const dec = new TextDecoder();
    let held = '';
    this.stats = { promptTokens: ids.length, contextTokens: 0, generatedTokens: 0, promptMs: 0, generateMs: 0, finishReason: 'length' };
    try {
      const idsPtr = m._malloc(ids.length * 4 + 4) >>> 0;
      m.HEAP32.set(ids, idsPtr >>> 2);
      m._tlw_sampler_accept_all(smp, idsPtr, ids.length);
      m._free(idsPtr);
      const t0 = performance.now();
      this.evalIds(ids);
      const t1 = performance.now();
      this.stats.promptMs = t1 - t0;
      this.stats.contextTokens = m._tlw_session_pos(this.session);
      let lastYield = performance.now();
      for (let n = 0; n < maxTokens; n++) {
        if (performance.now() - lastYield > YIELD_MS) {
          await yieldToLoop();
          lastYield = performance.now();
        }
        if (signal?.aborted) throw abortError();
        const tok = m._tlw_sample(this.session, smp);
        if (!opts.ignoreEos && m._tlw_is_eog(this.ptr, tok)) { this.stats.finishReason = 'stop'; break; }
        opts.onToken?.(tok);
        this.stats.generatedTokens++;
        const p = m._tlw_stream_push(stream, tok, this.engine.scratch) >>> 0;
        const len = this.engine.u32(this.engine.scratch);
        held += dec.decode(m.HEAPU8.slice(p, p + len));
        // stop strings: cut at a match; keep back a tail that could still become one
        let cut = -1;
        for (const s of stops) { const i = held.indexOf(s); if (i >= 0 && (cut < 0 || i < cut)) cut = i; }
        if (cut >= 0) { this.stats.finishReason = 'stop'; if (cut > 0) yield held.slice(0, cut); held = ''; break; }
        let keep = 0;
        for (const s of stops) for (let k = Math.min(s.length - 1, held.length); k > keep; k--) if (s.startsWith(held.slice(-k))) { keep = k; break; }
        if (held.length > keep) { yield held.slice(0, held.length - keep); held = held.slice(held.length - keep); }
        if (m._tlw_session_pos(this.session) >= m._tlw_session_n_ctx(this.session)) break;
        this.evalIds([tok]);
      }
      if (held) yield held;
      const p = m._tlw_stream_flush(stream, this.engine.scratch) >>> 0;
      const len = this.engine.u32(this.engine.scratch);
      if (len) yield dec.decode(m.HEAPU8.slice(p, p + len));
      this.stats.generateMs = performance.now() - t1;
    } finally {
      m._tlw_stream_free(stream);
      m._tlw_sampler_free(smp);
    }
  }

  // Plain completion: every call starts from an empty context. That clears the conversation's KV cache too, so the
  // chat state goes with it (a later chat() replays its earlier turns instead of trusting a cache that is gone).
  async *generate(prompt, opts = {}) {
    this.ensureSession(opts.contextSize, opts.threads);
    this.resetChat();
    this.mod._tlw_session_rewind(this.session, 0);
    const ids = this.tokenize(prompt, { addSpecial: true, parseSpecial: opts.parseSpecial ?? true });
    yield* this.run(ids, opts);
  }

  // Chat: the conversation's KV cache is kept between calls, and each turn evaluates only its new tokens.
  // `messages` is the whole conversation; when it extends the previous call's, only the last user turn is new.
  // For models whose template writes <think> blocks (info.thinking), opts.reasoning picks what is yielded:
  // 'show' (default) the text as generated, 'hide' only the answer, 'separate' the answer as strings and the
  // reasoning as { reasoning } objects; opts.thinking === false renders the template with enable_thinking = false.
  async *chat(messages, opts = {}) {
    const mode = opts.reasoning ?? 'show';
    if (!['show', 'hide', 'separate'].includes(mode)) throw new TernlmError(`reasoning must be 'show', 'hide' or 'separate' (got '${mode}')`, 'ARG');
    if (mode === 'show' || !this.info.thinking) { yield* this.chatRaw(messages, opts); return; }
    const split = new ReasoningSplitter(this.engine);
    try {
      for await (const piece of this.chatRaw(messages, opts)) yield* split.feed(piece, false, mode);
      yield* split.feed('', true, mode);
    } finally {
      split.free();
    }
  }

  async *chatRaw(messages, opts) {
    const m = this.mod;
    this.ensureSession(opts.contextSize, opts.threads);
    const sys = messages[0]?.role === 'system' ? messages[0].content : '';
    const turns = messages.filter((x) => x.role !== 'system');
    const last = turns[turns.length - 1];
    if (!last || last.role !== 'user') throw new TernlmError('chat(): the last message must come from the user', 'ARG');
    const history = turns.slice(0, -1);
    let c = this.chatState;
    const same = c && c.system === sys && c.history.length === history.length &&
      c.history.every((h, i) => h.role === history[i].role && h.content === history[i].content);
    if (!same) { // a different conversation: start over and replay its earlier turns without generating
      if (c) { m._tlw_chat_free(c.ptr); m._tlw_sampler_free(c.smp); }
      const smp = this.newSampler({ seed: 0 });
      const s = this.engine.cstr(sys);
      const ptr = m._tlw_chat_new(this.session, smp, s.ptr, this.engine.err) >>> 0;
      m._free(s.ptr);
      if (!ptr) throw this.engine.fail('chat');
      m._tlw_session_rewind(this.session, 0);
      c = this.chatState = { ptr, smp, system: sys, history: [], thinking: true };
      for (let i = 0; i + 1 < history.length; i += 2) {
        this.beginTurn(c, history[i].content);
        this.evalIds(this.tokenize(history[i + 1].content, { parseSpecial: false })); // the earlier reply
        this.endTurn(c, history[i + 1].content);
        c.history.push(history[i], history[i + 1]);
      }
    }
    const thinking = opts.thinking !== false;
    if (thinking !== c.thinking) { m._tlw_chat_set_thinking(c.ptr, thinking ? 1 : 0); c.thinking = thinking; }
    const ids = this.beginTurn(c, last.content, true);
    let reply = '';
    try {
      for await (const piece of this.run(ids, opts)) { reply += piece; yield piece; }
    } finally { // also after an abort: the partial reply becomes the turn, and the model stays usable
      this.endTurn(c, reply);
      c.history.push(last, { role: 'assistant', content: reply });
    }
  }

  beginTurn(c, text, forGeneration = false) {
    const m = this.mod;
    const s = this.engine.cstr(text);
    const role = this.engine.cstr('user');
    let n = m._tlw_chat_begin(c.ptr, role.ptr, s.ptr, 0, 0, this.engine.err);
    let ids = [];
    if (n > 0) {
      const out = m._malloc(n * 4) >>> 0;
      n = m._tlw_chat_begin(c.ptr, role.ptr, s.ptr, out, n, this.engine.err);
      if (n >= 0) ids = Array.from(m.HEAP32.subarray(out >>> 2, (out >>> 2) + n));
      m._free(out);
    }
    m._free(s.ptr);
    m._free(role.ptr);
    if (n < 0) throw this.engine.fail('chat');
    if (!forGeneration) this.evalIds(ids);
    return ids;
  }

  endTurn(c, reply) {
    const m = this.mod;
    const bytes = new TextEncoder().encode(reply);
    const p = m._malloc(bytes.length + 1) >>> 0;
    m.HEAPU8.set(bytes, p);
    m._tlw_chat_end(c.ptr, p, bytes.length, this.engine.err);
    m._free(p);
  }

  resetChat() {
    if (this.chatState) { this.mod._tlw_chat_free(this.chatState.ptr); this.mod._tlw_sampler_free(this.chatState.smp); }
    this.chatState = null;
  }

  free() {
    this.resetChat();
    if (this.session) this.mod._tlw_session_free(this.session);
    this.mod._tlw_model_free(this.ptr);
    this.session = 0;
    this.ptr = 0;
  }
}
