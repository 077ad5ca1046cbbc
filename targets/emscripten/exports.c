/* The functions the JavaScript hosts (web/ and node/) call. Thin wrappers over ternlm.h that take and return
 * scalars and pointers, so the host can drive the token loop itself and yield between tokens (AbortSignal,
 * message handling in the Worker). Errors go to a ternlm_error the host allocates with tlw_error_new. */
#include <emscripten.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ternlm.h"

#define API EMSCRIPTEN_KEEPALIVE

API ternlm_error *tlw_error_new(void) { return calloc(1, sizeof(ternlm_error)); }
API const char *tlw_error_message(const ternlm_error *e) { return e->message; }
API int tlw_error_code(const ternlm_error *e) { return (int)e->code; }

/* ---- loading: the host writes the file's bytes straight into wasm memory at tlw_loader_buffer ---- */

API ternlm_loader *tlw_loader_new(double total, ternlm_error *err) {
    ternlm_loader *ld = NULL;
    if (total < 0 || total > 4294967295.0) {
        snprintf(err->message, sizeof err->message, "a file of %.0f bytes does not fit in wasm32 memory", total);
        err->code = TERNLM_ERR_NOMEM;
        return NULL;
    }
    ternlm_loader_new((uint64_t)total, &ld, err);
    return ld;
}
API void *tlw_loader_buffer(ternlm_loader *ld, size_t *cap) { return ternlm_loader_buffer(ld, cap); }
API int tlw_loader_commit(ternlm_loader *ld, size_t n, ternlm_error *err) { return (int)ternlm_loader_commit(ld, n, err); }
/* head: 0 the file's head, 1 the C API's head_quant_i8, 2 its head_quant_i4 (native's `--head-quant i8` / `i4`), so a
 * page gets the same bits as native with that option; 1 was the only nonzero value before i4, so old hosts still work. */
API ternlm_model *tlw_loader_finish(ternlm_loader *ld, const char *pretokenizer, int head, ternlm_error *err) {
    ternlm_model_params p = ternlm_model_params_default();
    p.pretokenizer = pretokenizer && *pretokenizer ? pretokenizer : NULL;
    p.head_quant_i8 = head == 1;
    p.head_quant_i4 = head == 2;
    ternlm_model *m = NULL;
    ternlm_loader_finish(ld, &p, &m, err);
    ternlm_loader_free(ld);
    return m;
}
API void tlw_loader_free(ternlm_loader *ld) { ternlm_loader_free(ld); }
API void tlw_model_free(ternlm_model *m) { ternlm_model_free(m); }

/* A JSON object with the model's facts; the caller frees it. */
API char *tlw_model_info_json(const ternlm_model *m) {
    const ternlm_model_info *i = ternlm_model_get_info(m);
    char *buf = malloc(1024);
    if (!buf) return NULL;
    snprintf(buf, 1024,
             "{\"arch\":\"%s\",\"name\":\"%s\",\"nVocab\":%u,\"nCtxTrain\":%u,\"nEmbd\":%u,\"nLayer\":%u,\"nHead\":%u,"
             "\"nHeadKv\":%u,\"nFf\":%u,\"weightType\":\"%s\",\"headType\":\"%s\",\"tokenizer\":\"%s\","
             "\"pretokenizer\":\"%s\",\"bos\":%d,\"eos\":%d,\"eot\":%d,\"params\":%llu,\"bytes\":%llu,\"kernels\":\"%s\","
             "\"thinking\":%s}",
             i->arch, i->name, i->n_vocab, i->n_ctx_train, i->n_embd, i->n_layer, i->n_head, i->n_head_kv, i->n_ff,
             i->weight_type, i->head_type, i->tokenizer, i->pretokenizer, i->bos, i->eos, i->eot,
             (unsigned long long)i->n_params, (unsigned long long)i->weight_bytes, ternlm_cpu_kernels(),
             ternlm_model_thinks(m) ? "true" : "false");
    return buf;
}

/* ---- sessions, sampling, the token loop ---- */

API ternlm_session *tlw_session_new(ternlm_model *m, unsigned n_ctx, unsigned threads, ternlm_error *err) {
    ternlm_session_params p = ternlm_session_params_default();
    p.n_ctx = n_ctx;
    p.n_threads = threads;
    ternlm_session *s = NULL;
    ternlm_session_new(m, &p, &s, err);
    return s;
}
API void tlw_session_free(ternlm_session *s) { ternlm_session_free(s); }
API unsigned tlw_session_pos(const ternlm_session *s) { return ternlm_session_pos(s); }
API unsigned tlw_session_n_ctx(const ternlm_session *s) { return ternlm_session_n_ctx(s); }
API int tlw_session_rewind(ternlm_session *s, unsigned pos) { return (int)ternlm_session_rewind(s, pos, NULL); }
API unsigned tlw_session_threads(const ternlm_session *s) { return ternlm_session_threads(s); }

/* seed < 0 asks the OS for one (crypto.getRandomValues in browsers). */
API ternlm_sampler *tlw_sampler_new(float temp, int top_k, float top_p, float min_p, float repeat_penalty, int last_n,
                                    double seed, unsigned n_vocab, ternlm_error *err) {
    ternlm_sampler_params p = ternlm_sampler_params_default();
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.repeat_penalty = repeat_penalty;
    p.penalty_last_n = last_n;
    p.seed = seed < 0 ? TERNLM_SEED_RANDOM : (uint64_t)seed;
    ternlm_sampler *s = NULL;
    ternlm_sampler_new(&p, n_vocab, &s, err);
    return s;
}
API void tlw_sampler_free(ternlm_sampler *s) { ternlm_sampler_free(s); }
API double tlw_sampler_seed(const ternlm_sampler *s) { return (double)ternlm_sampler_seed(s); }
API void tlw_sampler_accept_all(ternlm_sampler *s, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) ternlm_sampler_accept(s, ids[i]);
}

API int tlw_eval(ternlm_session *s, const int32_t *ids, size_t n, ternlm_error *err) {
    return (int)ternlm_session_eval(s, ids, n, TERNLM_LOGITS_LAST, err);
}
/* Sample from the last logits and record the token in the penalty history. */
API int tlw_sample(ternlm_session *s, ternlm_sampler *smp) {
    const int32_t t = ternlm_sampler_sample(smp, ternlm_session_logits(s, -1));
    ternlm_sampler_accept(smp, t);
    return t;
}
API int tlw_is_eog(const ternlm_model *m, int tok) { return ternlm_token_is_eog(m, tok); }

/* ---- text ---- */

API int tlw_tokenize(const ternlm_model *m, const char *text, size_t len, int flags, int32_t *out, size_t cap,
                     ternlm_error *err) {
    size_t n = 0;
    const ternlm_status st = ternlm_tokenize(m, text, len, flags, out, cap, &n, err);
    return st == TERNLM_OK || (st == TERNLM_ERR_ARG && n > cap) ? (int)n : -1;
}
API int tlw_detokenize(const ternlm_model *m, const int32_t *ids, size_t n, char *buf, size_t cap) {
    size_t len = 0;
    ternlm_detokenize(m, ids, n, 0, buf, cap, &len, NULL);
    return (int)len;
}
API ternlm_text_stream *tlw_stream_new(const ternlm_model *m) { return ternlm_text_stream_new(m, 0); }
API const char *tlw_stream_push(ternlm_text_stream *ts, int tok, size_t *len) { return ternlm_text_stream_push(ts, tok, len); }
API const char *tlw_stream_flush(ternlm_text_stream *ts, size_t *len) { return ternlm_text_stream_flush(ts, len); }
API void tlw_stream_free(ternlm_text_stream *ts) { ternlm_text_stream_free(ts); }

/* ---- chat, in steps ---- */

API ternlm_chat *tlw_chat_new(ternlm_session *s, ternlm_sampler *smp, const char *system, ternlm_error *err) {
    ternlm_chat *c = NULL;
    ternlm_chat_new(s, smp, system, &c, err);
    return c;
}
/* Returns the number of tokens to evaluate (written to out when it fits), or -1 on error. */
API int tlw_chat_begin(ternlm_chat *c, const char *role, const char *text, int32_t *out, size_t cap, ternlm_error *err) {
    (void)role;
    size_t n = 0;
    const ternlm_status st = ternlm_chat_begin_turn(c, text, out, cap, &n, err);
    return st == TERNLM_OK || (st == TERNLM_ERR_ARG && n > cap) ? (int)n : -1;
}
API int tlw_chat_end(ternlm_chat *c, const char *reply, size_t len, ternlm_error *err) {
    return (int)ternlm_chat_end_turn(c, reply, len, err);
}
API void tlw_chat_reset(ternlm_chat *c) { ternlm_chat_reset(c); }
API void tlw_chat_free(ternlm_chat *c) { ternlm_chat_free(c); }
API int tlw_chat_set_thinking(ternlm_chat *c, int enable) { return (int)ternlm_chat_set_thinking(c, enable, NULL); }

/* ---- the reasoning splitter: what one feed decided, reasoning bytes first, then answer bytes ---- */

typedef struct tlw_split {
    ternlm_reasoning *r;
    char *buf;
    size_t n, cap, n_reasoning;
    int oom;
} tlw_split;

static int split_collect(void *user, int is_reasoning, const char *text, size_t len) {
    tlw_split *s = user;
    if (s->n + len + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->n + len + 1) cap *= 2;
        char *p = realloc(s->buf, cap);
        if (!p) return s->oom = 1;
        s->buf = p;
        s->cap = cap;
    }
    memcpy(s->buf + s->n, text, len); /* reasoning always comes before the answer within one feed */
    s->n += len;
    if (is_reasoning) s->n_reasoning += len;
    return 0;
}

API tlw_split *tlw_split_new(int in_reasoning, ternlm_error *err) {
    tlw_split *s = calloc(1, sizeof *s);
    if (!s || ternlm_reasoning_new(in_reasoning, &s->r, err)) {
        free(s);
        return NULL;
    }
    return s;
}
/* Feeds text (final: then flushes). Returns the decided bytes (*n_total, of which the first *n_reasoning are
 * reasoning), valid until the next call; NULL when out of memory. */
API const char *tlw_split_feed(tlw_split *s, const char *text, size_t len, int final, size_t *n_reasoning, size_t *n_total) {
    s->n = s->n_reasoning = 0;
    ternlm_reasoning_feed(s->r, text, len, split_collect, s);
    if (final) ternlm_reasoning_flush(s->r, split_collect, s);
    *n_reasoning = s->n_reasoning;
    *n_total = s->n;
    return s->oom ? NULL : s->buf ? s->buf : "";
}
API void tlw_split_free(tlw_split *s) {
    if (!s) return;
    ternlm_reasoning_free(s->r);
    free(s->buf);
    free(s);
}
