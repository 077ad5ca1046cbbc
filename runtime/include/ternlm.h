/*
 * ternlm.h — the public interface of the ternlm runtime.
 *
 * ternlm runs ternary (BitNet b1.58) and plain llama language models stored as GGUF files.
 * This header is the manual: read it top to bottom.
 *
 * Conventions
 *   - Every fallible function returns a ternlm_status (TERNLM_OK == 0) and, when `err` is not NULL,
 *     fills it with the code and a human-readable message that names the problem.
 *   - Objects are opaque and own no global state; a model may be shared by several sessions, but a
 *     session (and a sampler) must be used by one thread at a time.
 *   - Token ids are int32. Text is UTF-8 bytes with an explicit length (never assumed NUL-terminated).
 *   - Constructors (ternlm_*_new, ternlm_model_open_*, ternlm_loader_finish) write *out only on success; on
 *     failure *out keeps whatever the caller had in it.
 *
 * Lifetimes (free in the reverse order of creation)
 *   - A session, text stream or chat must not outlive what it was made from: free chats before their session
 *     and sampler, sessions and text streams before their model. The model counts its sessions and text
 *     streams: ternlm_model_free() while some are alive logs a warning through the model's logger and defers
 *     the free until the last of them is freed, so the mistake is reported instead of being a use-after-free.
 *   - ternlm_model_open_memory()'s buffer must stay valid and unchanged until the model is really freed.
 *
 * Limits (hostile input gets a clear error, never a crash, hang or unbounded memory)
 *   - GGUF: counts, string lengths, alignment and every offset are checked before use (TERNLM_ERR_FORMAT).
 *   - Weights: non-finite I2_S scales, rope_freqs <= 0 and rope.freq_base < 1 are refused at load; with
 *     check_tensors every float and every quantized block scale is checked too. The math is defined for any
 *     input: NaN propagates as NaN, never as undefined behaviour.
 *   - Chat templates: see ternlm_chat_template_render (depth, size, loop and work limits).
 *   - Threads: n_threads above TERNLM_MAX_THREADS_PER_CORE x the cores is clamped, with a warning.
 *   - Sampling: NaN logits are never picked (they rank below every number); +inf ranks above every number.
 *   - Tokenizing: special tokens are split in one pass over the text; a vocabulary whose specials match more than
 *     64 times per byte of text (nested on purpose) gets TERNLM_ERR_TOKENIZER instead of a huge match list.
 *
 * Life of a generation
 *   ternlm_model_open_file()     -> ternlm_model      (weights used in place: mmap or host buffer)
 *   ternlm_session_new()         -> ternlm_session    (KV cache sized from the context)
 *   ternlm_tokenize()            -> prompt ids
 *   ternlm_sampler_new()         -> ternlm_sampler
 *   ternlm_generate()            -> streams text pieces to a callback
 */
#ifndef TERNLM_H
#define TERNLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TERNLM_VERSION "0.1.0"

/* ------------------------------------------------------------------------------------------------
 * Errors
 * --------------------------------------------------------------------------------------------- */
typedef enum ternlm_status {
    TERNLM_OK = 0,
    TERNLM_ERR_ARG,          /* a bad argument from the caller */
    TERNLM_ERR_IO,           /* the file could not be opened or read */
    TERNLM_ERR_FORMAT,       /* not a GGUF file, or a malformed / truncated / hostile one */
    TERNLM_ERR_UNSUPPORTED,  /* a valid file ternlm cannot run (unknown arch, tensor type, ...) */
    TERNLM_ERR_MODEL,        /* the file lacks a tensor or key the architecture needs, or has a wrong shape */
    TERNLM_ERR_NOMEM,        /* out of memory */
    TERNLM_ERR_CONTEXT_FULL, /* the session's context window has no room for the tokens */
    TERNLM_ERR_ABORTED,      /* the caller asked to stop */
    TERNLM_ERR_TOKENIZER,    /* the text could not be tokenized (e.g. a byte with no token) */
    TERNLM_ERR_TEMPLATE,     /* a chat template uses something the renderer does not support */
    TERNLM_ERR_BACKEND       /* a compute backend (e.g. CUDA) is missing or failed */
} ternlm_status;

typedef struct ternlm_error {
    ternlm_status code;
    char message[512];
} ternlm_error;

/* A short English name for a status code ("format error", ...). Never NULL. */
const char *ternlm_status_name(ternlm_status code);

/* ------------------------------------------------------------------------------------------------
 * Models
 * --------------------------------------------------------------------------------------------- */
typedef struct ternlm_model ternlm_model;

/* Receives warnings and progress notes the loader emits (e.g. "pre-tokenizer missing: using llama3"). */
typedef void (*ternlm_log_fn)(void *user, const char *message);

typedef struct ternlm_model_params {
    /* Pre-tokenizer override for byte-level BPE vocabularies: NULL keeps the file's choice (or the
     * documented fallback when the file has none). "default" reproduces bitnet.cpp's split, "llama3",
     * "gpt2" force those. */
    const char *pretokenizer;
    /* Re-quantize an F16 LM head to Q8_0 at load (faster generation, slightly different logits). */
    int head_quant_q8_0;
    /* Scan every weight at load (non-finite floats, invalid ternary codes). Slower; off by default. */
    int check_tensors;
    /* FFN activation override for arch `bitnet` ("silu" or "relu2"); NULL follows the metadata. */
    const char *activation;
    ternlm_log_fn log;
    void *log_user;
    /* Re-quantize an F16 LM head to int8 rows (one scale per row) at load, for the CPU's int8 GEMM: about half the
     * bytes per generated token of F16; logits change slightly (docs/PERFORMANCE.md states by how much). */
    int head_quant_i8;
    /* Keep every weight in its file layout (no load-time repacking into the kernels' 16-row groups). */
    int no_repack;
    /* I2_S code layout. 0 or 128: the official 128-element interleave (Microsoft's files, llama-quantize on x86).
     * 64: the 64-element blocks of 16 bytes that bitnet.cpp's NEON quantizer writes (llama-quantize run on ARM since
     * bitnet.cpp 112f853). Such files have the same type id, sizes and metadata, so nothing in a file tells the two
     * apart: the caller says which, and 64-layout tensors are rewritten to the official layout at load (a copy). */
    int i2s_layout;
    /* Re-quantize an F16 LM head to int4 rows at load (4-bit values, an 8-bit sub-scale per 32 and a scale per row:
     * 4.25 bits a weight, a quarter of F16's bytes per generated token); logits change more than with int8
     * (docs/PERFORMANCE.md states by how much). At most one of head_quant_q8_0, head_quant_i8, head_quant_i4. */
    int head_quant_i4;
} ternlm_model_params;

ternlm_model_params ternlm_model_params_default(void);

/* Open a GGUF file by path. On native targets the file is memory-mapped; weights are never copied whole. */
ternlm_status ternlm_model_open_file(const char *path, const ternlm_model_params *params,
                                     ternlm_model **out, ternlm_error *err);

/* Open a GGUF image that the host already holds in memory. The buffer is used in place and must stay
 * valid and unchanged until ternlm_model_free(). For best speed it should be 64-byte aligned. */
ternlm_status ternlm_model_open_memory(const void *data, size_t size, const ternlm_model_params *params,
                                       ternlm_model **out, ternlm_error *err);

/* Incremental loading: for hosts that receive the file in chunks (a browser download, a WASI read loop).
 * The loader parses the header as it arrives and writes tensor data straight into the model's single
 * data buffer, so the file is never held twice.
 *
 *   ternlm_loader_new(total_size)                     total_size: the file's size in bytes
 *   loop: p = ternlm_loader_buffer(ld, &cap);         where the next bytes go (cap >= 1 until done)
 *         copy n <= cap bytes to p; ternlm_loader_commit(ld, n)
 *     or: ternlm_loader_push(ld, bytes, n)            the same, with the copy done for you
 *   ternlm_loader_finish(ld, params, &model)          after exactly total_size bytes
 *   ternlm_loader_free(ld)                            always (also after finish)
 *
 * Errors in the header are reported by the push/commit that completes the bad part, so a hostile file
 * fails early. */
typedef struct ternlm_loader ternlm_loader;

ternlm_status ternlm_loader_new(uint64_t total_size, ternlm_loader **out, ternlm_error *err);
void *ternlm_loader_buffer(ternlm_loader *ld, size_t *capacity);
ternlm_status ternlm_loader_commit(ternlm_loader *ld, size_t n, ternlm_error *err);
ternlm_status ternlm_loader_push(ternlm_loader *ld, const void *bytes, size_t n, ternlm_error *err);
uint64_t ternlm_loader_received(const ternlm_loader *ld);
ternlm_status ternlm_loader_finish(ternlm_loader *ld, const ternlm_model_params *params,
                                   ternlm_model **out, ternlm_error *err);
void ternlm_loader_free(ternlm_loader *ld);

void ternlm_model_free(ternlm_model *model);

/* Facts about a loaded model. Strings point into the model and live as long as it does. */
typedef struct ternlm_model_info {
    const char *arch;          /* general.architecture, e.g. "bitnet-b1.58" */
    const char *name;          /* general.name, or "" */
    uint32_t gguf_version;
    uint32_t n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, n_ff, head_dim;
    float rope_freq_base, norm_eps;
    const char *activation;    /* "relu2" or "silu" */
    const char *rope_style;    /* "neox" or "norm" */
    const char *weight_type;   /* the type of the linear layers, e.g. "I2_S" */
    const char *head_type;     /* the LM head's type, e.g. "F16" */
    int head_tied;             /* 1 when the head is token_embd */
    const char *tokenizer;     /* "gpt2", "llama" or "none" */
    const char *pretokenizer;  /* the pre-tokenizer in use for gpt2 vocabularies, else "" */
    int32_t bos, eos, eot;     /* -1 when absent */
    int add_bos;
    uint64_t n_params;         /* weight elements */
    uint64_t weight_bytes;     /* bytes of tensor data */
    uint32_t n_tensors;
    uint64_t repacked_bytes;   /* weight bytes repacked at load for the CPU kernels (0: all in file layout) */
} ternlm_model_info;

const ternlm_model_info *ternlm_model_get_info(const ternlm_model *model);

/* Metadata access: count, the i-th key, and its value printed as text (arrays are summarised).
 * ternlm_model_meta_string returns a string value by key, or NULL (len set to its byte length). The bytes point into
 * the file and are NOT NUL-terminated: use len (never strlen, strstr or %s on them). */
uint64_t ternlm_model_meta_count(const ternlm_model *model);
ternlm_status ternlm_model_meta_key(const ternlm_model *model, uint64_t i, char *buf, size_t cap);
ternlm_status ternlm_model_meta_value_text(const ternlm_model *model, uint64_t i, char *buf, size_t cap);
const char *ternlm_model_meta_string(const ternlm_model *model, const char *key, size_t *len);

/* Tensor table: name, type name, dims, bytes. */
typedef struct ternlm_tensor_info {
    const char *name;
    const char *type;
    uint32_t n_dims;
    int64_t ne[4];
    uint64_t offset, nbytes;
} ternlm_tensor_info;

uint32_t ternlm_model_tensor_count(const ternlm_model *model);
ternlm_status ternlm_model_tensor(const ternlm_model *model, uint32_t i, ternlm_tensor_info *out);

/* ------------------------------------------------------------------------------------------------
 * Tokenizer (needs a vocabulary in the file; vocab-only GGUFs work too)
 * --------------------------------------------------------------------------------------------- */
enum {
    TERNLM_TOKENIZE_ADD_SPECIAL = 1,   /* add BOS (and EOS) as the metadata says */
    TERNLM_TOKENIZE_PARSE_SPECIAL = 2  /* turn special-token text like "<|eot_id|>" into its id */
};

/* Tokenize `len` bytes of text. Writes at most `cap` ids to `out` and the total count to *n_out; when
 * *n_out > cap the call returns TERNLM_ERR_ARG and the caller retries with a larger buffer. Invalid UTF-8
 * never fails: each invalid byte is encoded on its own (byte-level BPE keeps it exactly). */
ternlm_status ternlm_tokenize(const ternlm_model *model, const char *text, size_t len, int flags,
                              int32_t *out, size_t cap, size_t *n_out, ternlm_error *err);

enum { TERNLM_DETOK_SPECIAL = 1 /* render control tokens as their text */ };

/* The raw bytes of one token (may be a partial UTF-8 sequence). Returns the byte count, which may
 * exceed cap (then only cap bytes were written); -1 for an invalid id. */
int ternlm_token_piece(const ternlm_model *model, int32_t token, int flags, char *buf, size_t cap);

/* Detokenize a whole sequence into buf (NUL-terminated when it fits). *n_out receives the byte count. */
ternlm_status ternlm_detokenize(const ternlm_model *model, const int32_t *tokens, size_t n, int flags,
                                char *buf, size_t cap, size_t *n_out, ternlm_error *err);

/* 1 when the token ends generation (EOS, EOT, EOM). */
int ternlm_token_is_eog(const ternlm_model *model, int32_t token);

/* Streaming detokenizer: feed tokens one by one and receive only complete UTF-8 characters. */
typedef struct ternlm_text_stream ternlm_text_stream;
ternlm_text_stream *ternlm_text_stream_new(const ternlm_model *model, int flags);
/* Appends the text of `token`; returns a pointer to the newly complete bytes and their count in *len
 * (valid until the next call). */
const char *ternlm_text_stream_push(ternlm_text_stream *ts, int32_t token, size_t *len);
/* Returns what is left (incomplete bytes become U+FFFD) and resets the stream. */
const char *ternlm_text_stream_flush(ternlm_text_stream *ts, size_t *len);
void ternlm_text_stream_free(ternlm_text_stream *ts);

/* ------------------------------------------------------------------------------------------------
 * Sessions: a KV cache and scratch buffers for one sequence
 * --------------------------------------------------------------------------------------------- */
typedef struct ternlm_session ternlm_session;

/* n_threads above this many per physical core is clamped (with a warning through the model's logger). */
#define TERNLM_MAX_THREADS_PER_CORE 4

typedef struct ternlm_session_params {
    uint32_t n_ctx;      /* context size in tokens; 0 = the model's trained context (capped at 4096) */
    uint32_t n_threads;  /* 0 = the number of physical cores; at most TERNLM_MAX_THREADS_PER_CORE per core */
    int use_gpu;         /* run the forward pass on the GPU backend when one is built in */
} ternlm_session_params;

ternlm_session_params ternlm_session_params_default(void);

ternlm_status ternlm_session_new(ternlm_model *model, const ternlm_session_params *params,
                                 ternlm_session **out, ternlm_error *err);
void ternlm_session_free(ternlm_session *s);

enum { TERNLM_LOGITS_LAST = 0, TERNLM_LOGITS_ALL = 1, TERNLM_LOGITS_NONE = 2 };

/* Evaluate n tokens at the next positions (one batch). Afterwards ternlm_session_logits() returns the
 * logits of the last token (LOGITS_LAST) or of every token (LOGITS_ALL). */
ternlm_status ternlm_session_eval(ternlm_session *s, const int32_t *tokens, size_t n, int which_logits,
                                  ternlm_error *err);
/* Row i of the last eval's logits (n_vocab floats). i = -1 means the last row; any other negative i, or a row
 * that was not computed, gives NULL. The pointer is valid until the next eval or rewind. */
const float *ternlm_session_logits(const ternlm_session *s, int i);
uint32_t ternlm_session_pos(const ternlm_session *s);     /* tokens in the KV cache */
uint32_t ternlm_session_n_ctx(const ternlm_session *s);
/* Forget every position >= pos (pos <= current position). 0 clears the conversation. */
ternlm_status ternlm_session_rewind(ternlm_session *s, uint32_t pos, ternlm_error *err);
/* Total tokens evaluated by this session since creation (for tests and statistics). */
uint64_t ternlm_session_tokens_evaluated(const ternlm_session *s);
/* The CPU kernel path in use ("scalar", "avx2", "avx512", "neon", "wasm128") or "cuda". */
const char *ternlm_session_backend(const ternlm_session *s);
uint32_t ternlm_session_threads(const ternlm_session *s);

/* ------------------------------------------------------------------------------------------------
 * Batches: many sequences evaluated together (for servers)
 *
 * A batch holds n_seq KV-cache slots, each a sequence with its own position. Tokens queued for any mix
 * of slots (a decode step for some, a chunk of a new prompt for others) are evaluated by one
 * ternlm_batch_eval(), which passes over the weights once per TL_UBATCH (64) tokens instead of once per
 * sequence. Every sequence gets exactly the logits the single-sequence session would give it, bit for
 * bit, whatever else is batched with it, on the CPU and on the CUDA backend (use_gpu).
 *
 *   ternlm_batch_new(model, {n_ctx, n_threads, n_seq})
 *   loop: ternlm_batch_add(b, seq, tokens, n, want_logits)   for each sequence with work
 *         ternlm_batch_eval(b)
 *         ternlm_batch_logits(b, seq)                        for each sequence that asked
 *
 * A slot keeps its tokens after a request ends: ternlm_batch_seq_prefix() says how much of a new prompt
 * a slot already holds, and ternlm_batch_seq_rewind() drops the rest, so only the new part is evaluated;
 * ternlm_batch_seq_copy() gives one slot another slot's prefix.
 * --------------------------------------------------------------------------------------------- */
typedef struct ternlm_batch ternlm_batch;

typedef struct ternlm_batch_params {
    uint32_t n_ctx;      /* positions per slot; 0 = the model's trained context (capped at 4096) */
    uint32_t n_threads;  /* 0 = the number of physical cores */
    uint32_t n_seq;      /* KV slots (sequences), 1..256; 0 = 1 */
    int use_gpu;         /* the CUDA backend (TERNLM_ERR_BACKEND where the build or the machine has none) */
} ternlm_batch_params;

ternlm_batch_params ternlm_batch_params_default(void);
ternlm_status ternlm_batch_new(ternlm_model *model, const ternlm_batch_params *params, ternlm_batch **out,
                               ternlm_error *err);
void ternlm_batch_free(ternlm_batch *b);

/* Queue n tokens for slot seq at its next positions. want_logits: keep the logits of the last of them.
 * Fails (queuing nothing) for a bad slot, a token outside the vocabulary, or a slot whose context
 * cannot hold its queued tokens. */
ternlm_status ternlm_batch_add(ternlm_batch *b, uint32_t seq, const int32_t *tokens, size_t n, int want_logits,
                               ternlm_error *err);
/* Evaluate everything queued (in queue order per slot) and empty the queue. */
ternlm_status ternlm_batch_eval(ternlm_batch *b, ternlm_error *err);
/* The logits (n_vocab floats) slot seq asked for in the last eval, or NULL. */
const float *ternlm_batch_logits(const ternlm_batch *b, uint32_t seq);
/* Drop every queued token (e.g. after a client went away). */
void ternlm_batch_clear_queue(ternlm_batch *b);

uint32_t ternlm_batch_n_seq(const ternlm_batch *b);
uint32_t ternlm_batch_n_ctx(const ternlm_batch *b);   /* positions per slot */
uint32_t ternlm_batch_seq_pos(const ternlm_batch *b, uint32_t seq); /* tokens in the slot's KV cache */
/* The tokens slot seq holds (seq_pos of them), valid until the next add/eval/rewind on that slot. */
const int32_t *ternlm_batch_seq_tokens(const ternlm_batch *b, uint32_t seq);
/* How many leading tokens of `tokens` slot seq already holds, at most n - 1 (so the last prompt token is
 * always evaluated again and gives fresh logits). */
uint32_t ternlm_batch_seq_prefix(const ternlm_batch *b, uint32_t seq, const int32_t *tokens, size_t n);
/* Forget slot seq's positions >= pos (pos <= its position; 0 empties it). Queued tokens must be evaluated
 * or cleared first. */
ternlm_status ternlm_batch_seq_rewind(ternlm_batch *b, uint32_t seq, uint32_t pos, ternlm_error *err);
/* Make slot dst hold the first n tokens of slot src (n <= src's position) by copying their KV rows, instead
 * of evaluating them again: a prompt that starts like another slot's conversation (the same chat template and
 * system prompt) then evaluates only the rest. The copied rows are the bits dst's own evaluation would give.
 * dst != src, and dst must have no queued tokens; src keeps everything. CPU batches only for now (a GPU batch
 * answers TERNLM_ERR_BACKEND). */
ternlm_status ternlm_batch_seq_copy(ternlm_batch *b, uint32_t dst, uint32_t src, uint32_t n, ternlm_error *err);
uint64_t ternlm_batch_tokens_evaluated(const ternlm_batch *b); /* all slots, since creation */
uint32_t ternlm_batch_threads(const ternlm_batch *b);
const char *ternlm_batch_backend(const ternlm_batch *b);

/* ------------------------------------------------------------------------------------------------
 * Sampling (deterministic across targets: PCG32 + our own exp, see docs)
 * --------------------------------------------------------------------------------------------- */
#define TERNLM_SEED_RANDOM 0xFFFFFFFFu

typedef struct ternlm_sampler_params {
    float temperature;       /* <= 0: greedy. default 0.8. NaN or infinity is refused (TERNLM_ERR_ARG) */
    int32_t top_k;           /* <= 0: off. default 40 */
    float top_p;             /* >= 1: off. default 0.95 */
    float min_p;             /* <= 0: off. default 0.05 */
    float repeat_penalty;    /* 1: off (default) */
    float frequency_penalty; /* 0: off */
    float presence_penalty;  /* 0: off */
    int32_t penalty_last_n;  /* tokens of history the penalties see; default 64 */
    uint64_t seed;           /* TERNLM_SEED_RANDOM: taken from the OS (see ternlm_sampler_seed) */
} ternlm_sampler_params;

ternlm_sampler_params ternlm_sampler_params_default(void);

typedef struct ternlm_sampler ternlm_sampler;
ternlm_status ternlm_sampler_new(const ternlm_sampler_params *params, uint32_t n_vocab,
                                 ternlm_sampler **out, ternlm_error *err);
void ternlm_sampler_free(ternlm_sampler *smp);
/* Pick a token from n_vocab logits (the logits are not modified). Does not record it: call accept. */
int32_t ternlm_sampler_sample(ternlm_sampler *smp, const float *logits);
/* Record a token in the penalty history (prompt tokens too, as llama-cli does). */
void ternlm_sampler_accept(ternlm_sampler *smp, int32_t token);
void ternlm_sampler_reset(ternlm_sampler *smp); /* clears history; keeps the RNG stream */
uint64_t ternlm_sampler_seed(const ternlm_sampler *smp); /* the effective seed, to replay a run */

/* ------------------------------------------------------------------------------------------------
 * Generation loop
 * --------------------------------------------------------------------------------------------- */
/* Called once per generated token with the text that became complete (may be empty for a partial
 * UTF-8 character). Return non-zero to stop. A last call with token -1 may deliver U+FFFD for a
 * character the model left unfinished. */
typedef int (*ternlm_token_fn)(void *user, int32_t token, const char *text, size_t len);

typedef struct ternlm_generate_params {
    int32_t max_tokens;            /* < 0: until the context is full */
    const int32_t *stop_tokens;    /* extra stop ids besides EOS/EOT */
    size_t n_stop_tokens;
    int ignore_eos;                /* keep going past EOS/EOT */
    volatile int *abort_flag;      /* polled between tokens; non-zero stops with TERNLM_ERR_ABORTED */
    ternlm_token_fn on_token;
    void *user;
} ternlm_generate_params;

typedef struct ternlm_generate_stats {
    uint32_t n_prompt, n_generated;
    double prompt_seconds, generate_seconds;
    int stopped_by;                /* 0 max_tokens, 1 end-of-generation token, 2 callback, 3 abort, 4 context full */
} ternlm_generate_stats;

/* Evaluates the prompt (after whatever the session already holds), then samples up to max_tokens. */
ternlm_status ternlm_generate(ternlm_session *s, ternlm_sampler *smp, const int32_t *prompt, size_t n_prompt,
                              const ternlm_generate_params *gp, ternlm_generate_stats *stats,
                              ternlm_error *err);

/* ------------------------------------------------------------------------------------------------
 * Chat
 * --------------------------------------------------------------------------------------------- */
typedef struct ternlm_chat_message {
    const char *role;     /* "system", "user" or "assistant" */
    const char *content;  /* UTF-8, NUL-terminated */
} ternlm_chat_message;

/* Token ids of a conversation in the model's chat format, ending with the assistant prompt when
 * add_assistant is set. For bitnet-b1.58 this is Microsoft's reference format. Other models use the
 * GGUF's template through the built-in Jinja subset, falling back to the bitnet format. Same buffer
 * rules as ternlm_tokenize. */
ternlm_status ternlm_chat_tokens(const ternlm_model *model, const ternlm_chat_message *msgs, size_t n_msgs,
                                 int add_assistant, int32_t *out, size_t cap, size_t *n_out,
                                 ternlm_error *err);

/* Render a chat template (NULL: the model's tokenizer.chat_template) with the built-in Jinja subset, for
 * inspection and tests. Fails with TERNLM_ERR_TEMPLATE naming any unsupported construct, and also when a
 * template exceeds a limit: expressions or blocks nested deeper than TERNLM_TEMPLATE_MAX_DEPTH, a string or the
 * output longer than TERNLM_TEMPLATE_MAX_TEXT plus twice the messages' bytes, more than
 * TERNLM_TEMPLATE_MAX_LOOPS plus 64 per message for-loop iterations in all, or more than TERNLM_TEMPLATE_MAX_WORK
 * plus 16 per message byte of template scanned and text built (a bound on time). Integers are 64-bit; overflow is an error.
 * ternlm_chat_tokens falls back to the built-in format (with a logged warning) when the template fails. */
#define TERNLM_TEMPLATE_MAX_DEPTH 64
#define TERNLM_TEMPLATE_MAX_TEXT (8u << 20)
#define TERNLM_TEMPLATE_MAX_LOOPS 4096u
#define TERNLM_TEMPLATE_MAX_WORK (256u << 20)
ternlm_status ternlm_chat_template_render(const ternlm_model *model, const char *tmpl, const ternlm_chat_message *msgs,
                                          size_t n_msgs, int add_generation_prompt, char *buf, size_t cap,
                                          size_t *n_out, ternlm_error *err);

/* The same with options. enable_thinking sets the template variable of thinking models (Qwen3: false makes the
 * generation prompt end with an empty <think></think> block so the model answers directly); -1 leaves it undefined,
 * the template's default. */
typedef struct ternlm_chat_render_options {
    int add_generation_prompt;
    int enable_thinking;       /* -1, 0 or 1 */
} ternlm_chat_render_options;
ternlm_status ternlm_chat_template_render_ex(const ternlm_model *model, const char *tmpl, const ternlm_chat_message *msgs,
                                             size_t n_msgs, const ternlm_chat_render_options *opt, char *buf, size_t cap,
                                             size_t *n_out, ternlm_error *err);
/* ternlm_chat_tokens with these options (as the server's chat_template_kwargs.enable_thinking): the same rendering
 * and tokenization, message content still tokenized as plain text. */
ternlm_status ternlm_chat_tokens_ex(const ternlm_model *model, const ternlm_chat_message *msgs, size_t n_msgs,
                                    const ternlm_chat_render_options *opt, int32_t *out, size_t cap, size_t *n_out,
                                    ternlm_error *err);

/* A conversation bound to a session and sampler. Each ternlm_chat_send() appends the user turn, evaluates
 * only tokens the KV cache does not hold yet, and streams the reply through gp->on_token. */
typedef struct ternlm_chat ternlm_chat;

ternlm_status ternlm_chat_new(ternlm_session *s, ternlm_sampler *smp, const char *system_prompt, ternlm_chat **out,
                              ternlm_error *err);
ternlm_status ternlm_chat_send(ternlm_chat *c, const char *user_text, const ternlm_generate_params *gp,
                               ternlm_generate_stats *stats, ternlm_error *err);
/* The same in steps, for hosts that run the token loop themselves (the browser Worker yields between tokens):
 * begin_turn appends the user turn and returns the tokens to evaluate (same buffer rules as ternlm_tokenize;
 * on TERNLM_ERR_ARG for a short buffer nothing changes); generate the reply; then end_turn records its text. */
ternlm_status ternlm_chat_begin_turn(ternlm_chat *c, const char *user_text, int32_t *out, size_t cap, size_t *n_out,
                                    ternlm_error *err);
ternlm_status ternlm_chat_end_turn(ternlm_chat *c, const char *reply, size_t len, ternlm_error *err);

/* The last reply's text (valid until the next send or reset). */
const char *ternlm_chat_last_reply(const ternlm_chat *c);
void ternlm_chat_reset(ternlm_chat *c);  /* forget every turn except the system prompt */
/* The conversation's format: NULL or "auto" (the model's, as above), "bitnet" (Microsoft's reference format),
 * "llama3" or "chatml" (the vocabulary must have their header tokens), or else the text of a Jinja template, which
 * is rendered once on sample messages so a bad one fails here with TERNLM_ERR_TEMPLATE. */
ternlm_status ternlm_chat_set_template(ternlm_chat *c, const char *name_or_template, ternlm_error *err);
/* Context shift: makes room for the next turn with user_text plus `reserve` reply tokens by dropping the oldest
 * user turns (with their replies) while the context would overflow; the system prompt always stays. When it drops
 * anything the session is rewound and the next ternlm_chat_send evaluates what is kept again. *n_dropped gets the
 * number of turns dropped. TERNLM_ERR_CONTEXT_FULL when the message does not fit even alone. */
ternlm_status ternlm_chat_fit(ternlm_chat *c, const char *user_text, uint32_t reserve, size_t *n_dropped,
                              ternlm_error *err);
/* Thinking models: enable = 0 renders every turn with enable_thinking = false (see above); 1 restores the default. */
ternlm_status ternlm_chat_set_thinking(ternlm_chat *c, int enable, ternlm_error *err);
void ternlm_chat_free(ternlm_chat *c);

/* ------------------------------------------------------------------------------------------------
 * Reasoning (thinking models)
 * --------------------------------------------------------------------------------------------- */
/* Thinking models (Qwen3 and so Bonsai; DeepSeek R1) open a reply with <think>reasoning</think> and then answer.
 * A splitter sorts a reply streamed in pieces of any size into reasoning and answer, whatever the token
 * boundaries: a tag split across pieces is still a tag. Only a reply that opens with <think> (after optional
 * whitespace) has reasoning; anything else is all answer, passed on unchanged. The reasoning is reported without
 * the tags and without its leading and trailing whitespace, the answer without the whitespace after </think>
 * (llama-server's reasoning_content and content). Text that may still be part of a tag is held back until a later
 * piece or ternlm_reasoning_flush decides it; within one call, all reasoning comes before any answer.
 * in_reasoning: the template already opened the think block (the reply starts inside it). Not thread-safe: one
 * splitter per reply stream. */
typedef struct ternlm_reasoning ternlm_reasoning;
/* Receives decided text: is_reasoning 1 for reasoning, 0 for answer. A non-zero return is passed back by feed/flush
 * (e.g. to stop generation); the splitter keeps working. */
typedef int (*ternlm_reasoning_fn)(void *user, int is_reasoning, const char *text, size_t len);
ternlm_status ternlm_reasoning_new(int in_reasoning, ternlm_reasoning **out, ternlm_error *err);
/* Returns the first non-zero value fn returned during this call, else 0. */
int ternlm_reasoning_feed(ternlm_reasoning *r, const char *text, size_t len, ternlm_reasoning_fn fn, void *user);
/* End of the reply: reports what is held (an unclosed think block is reasoning). */
int ternlm_reasoning_flush(ternlm_reasoning *r, ternlm_reasoning_fn fn, void *user);
int ternlm_reasoning_in_answer(const ternlm_reasoning *r); /* 1 once the answer has begun */
void ternlm_reasoning_reset(ternlm_reasoning *r);          /* for the next reply */
void ternlm_reasoning_free(ternlm_reasoning *r);
/* 1 when the model's tokenizer.chat_template writes <think> blocks (Qwen3 and Bonsai do): hosts split replies only
 * for such models, so other models' text reaches the client exactly as before. */
int ternlm_model_thinks(const ternlm_model *model);

/* ------------------------------------------------------------------------------------------------
 * System
 * --------------------------------------------------------------------------------------------- */
/* The CPU kernel path chosen for this machine (honours TERNLM_KERNELS=scalar|avx2|avx512|neon|wasm128). */
const char *ternlm_cpu_kernels(void);
/* Physical cores (best effort). */
uint32_t ternlm_cpu_cores(void);

#ifdef __cplusplus
}
#endif
#endif /* TERNLM_H */
