/* Multi-sequence batches: n_seq KV slots in one CPU session, and a queue of (slot, token) pairs that
 * ternlm_batch_eval() cuts into micro-batches for the shared forward pass (forward.c's tl_eval_ubatch).
 * Each token carries its own slot and position, so attention reads only its own sequence and the
 * per-token arithmetic is the single-sequence path's: logits match it bit for bit. */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "session.h"

#define MAX_SEQ 256

struct ternlm_batch {
    ternlm_session *s;  /* weights' scratch, thread pool and the n_seq KV slots */
    uint32_t n_seq, n_ctx, n_vocab;
    uint32_t *pos;      /* [n_seq] tokens in each slot */
    uint32_t *queued;   /* [n_seq] tokens waiting in the queue per slot */
    int32_t *history;   /* [n_seq][n_ctx] the tokens each slot holds (for prefix reuse) */

    /* the queue, in the order tokens were added */
    int32_t *q_tok;
    uint32_t *q_seq;
    uint8_t *q_want;
    size_t q_n, q_cap;

    float *logits;      /* [n_seq][n_vocab]; page-locked for a GPU batch, which copies rows straight into it */
    int logits_pinned;
    uint8_t *has_logits;
    float *ubatch_logits; /* [TL_UBATCH][n_vocab]: rows of one micro-batch before they go to their slots */
};

ternlm_batch_params ternlm_batch_params_default(void) {
    ternlm_batch_params p;
    memset(&p, 0, sizeof p);
    p.n_seq = 1;
    return p;
}

void ternlm_batch_free(ternlm_batch *b) {
    if (!b) return;
    ternlm_session_free(b->s);
    free(b->pos);
    free(b->queued);
    free(b->history);
    free(b->q_tok);
    free(b->q_seq);
    free(b->q_want);
    if (b->logits_pinned) tl_gpu_host_free(b->logits);
    else free(b->logits);
    free(b->has_logits);
    free(b->ubatch_logits);
    free(b);
}

ternlm_status ternlm_batch_new(ternlm_model *m, const ternlm_batch_params *params, ternlm_batch **out,
                               ternlm_error *err) {
    if (!m || !out) return tl_fail(err, TERNLM_ERR_ARG, "model and out must not be NULL");
    *out = NULL;
    const ternlm_batch_params p = params ? *params : ternlm_batch_params_default();
    const uint32_t n_seq = p.n_seq ? p.n_seq : 1;
    if (n_seq > MAX_SEQ) return tl_fail(err, TERNLM_ERR_ARG, "%u sequences requested; a batch holds at most %d", n_seq, MAX_SEQ);
    if (!m->has_weights)
        return tl_fail(err, TERNLM_ERR_MODEL, "this GGUF has no weights (a vocabulary-only file): it can tokenize but not run");
    ternlm_batch *b = calloc(1, sizeof *b);
    if (!b) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    ternlm_session_params sp = ternlm_session_params_default();
    sp.n_ctx = p.n_ctx;
    sp.n_threads = p.n_threads;
    ternlm_status st = p.use_gpu ? tl_session_new_gpu(m, &sp, n_seq, &b->s, err) : tl_session_new_cpu(m, &sp, n_seq, &b->s, err);
    if (st) {
        ternlm_batch_free(b);
        return st;
    }
    tl_model_retain(m); /* like a session, a batch keeps its model alive until it is freed */
    b->s->holds_model_ref = 1;
    b->n_seq = n_seq;
    b->n_ctx = b->s->n_ctx;
    b->n_vocab = m->hp.n_vocab;
    b->pos = calloc(n_seq, sizeof *b->pos);
    b->queued = calloc(n_seq, sizeof *b->queued);
    b->history = malloc((size_t)n_seq * b->n_ctx * sizeof *b->history);
    b->logits_pinned = p.use_gpu;
    b->logits = p.use_gpu ? tl_gpu_host_alloc((size_t)n_seq * b->n_vocab * sizeof *b->logits)
                          : malloc((size_t)n_seq * b->n_vocab * sizeof *b->logits);
    b->has_logits = calloc(n_seq, 1);
    b->ubatch_logits = malloc((size_t)TL_UBATCH * b->n_vocab * sizeof *b->ubatch_logits);
    if (!b->pos || !b->queued || !b->history || !b->logits || !b->has_logits || !b->ubatch_logits) {
        ternlm_batch_free(b);
        return tl_fail(err, TERNLM_ERR_NOMEM, "cannot allocate the batch's bookkeeping for %u sequences", n_seq);
    }
    *out = b;
    return TERNLM_OK;
}

static ternlm_status grow_queue(ternlm_batch *b, size_t need, ternlm_error *err) {
    if (need <= b->q_cap) return TERNLM_OK;
    size_t cap = b->q_cap ? b->q_cap : 256;
    while (cap < need) cap *= 2;
    int32_t *tok = realloc(b->q_tok, cap * sizeof *tok);
    if (tok) b->q_tok = tok;
    uint32_t *seq = realloc(b->q_seq, cap * sizeof *seq);
    if (seq) b->q_seq = seq;
    uint8_t *want = realloc(b->q_want, cap);
    if (want) b->q_want = want;
    if (!tok || !seq || !want) return tl_fail(err, TERNLM_ERR_NOMEM, "cannot grow the batch queue to %zu tokens", cap);
    b->q_cap = cap;
    return TERNLM_OK;
}

static ternlm_status check_seq(const ternlm_batch *b, uint32_t seq, ternlm_error *err) {
    if (!b) return tl_fail(err, TERNLM_ERR_ARG, "batch is NULL");
    if (seq >= b->n_seq) return tl_fail(err, TERNLM_ERR_ARG, "sequence %u does not exist (the batch has %u)", seq, b->n_seq);
    return TERNLM_OK;
}

ternlm_status ternlm_batch_add(ternlm_batch *b, uint32_t seq, const int32_t *tokens, size_t n, int want_logits,
                               ternlm_error *err) {
    ternlm_status st = check_seq(b, seq, err);
    if (st) return st;
    if (!tokens && n) return tl_fail(err, TERNLM_ERR_ARG, "tokens must not be NULL");
    const size_t used = (size_t)b->pos[seq] + b->queued[seq];
    if (n > b->n_ctx - used)
        return tl_fail(err, TERNLM_ERR_CONTEXT_FULL,
                       "context full: sequence %u holds %zu of %u positions (queued included), %zu more requested", seq,
                       used, b->n_ctx, n);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= b->n_vocab)
            return tl_fail(err, TERNLM_ERR_ARG, "token id %d at index %zu is outside the vocabulary (0..%u)", tokens[i], i,
                           b->n_vocab - 1);
    if ((st = grow_queue(b, b->q_n + n, err))) return st;
    for (size_t i = 0; i < n; i++) {
        b->q_tok[b->q_n] = tokens[i];
        b->q_seq[b->q_n] = seq;
        b->q_want[b->q_n] = want_logits && i + 1 == n;
        b->q_n++;
    }
    b->queued[seq] += (uint32_t)n;
    return TERNLM_OK;
}

void ternlm_batch_clear_queue(ternlm_batch *b) {
    if (!b) return;
    b->q_n = 0;
    memset(b->queued, 0, b->n_seq * sizeof *b->queued);
}

/* Whether the chunk's logits rows belong to sequences q, q + 1, ..., q + n - 1 in that order (S streams adding one token
 * each, as the server and `bench --streams` do): then the head writes them straight into the batch's logits, which
 * are laid out [seq][n_vocab], instead of into ubatch_logits and a copy of n rows of n_vocab floats after it. */
static int rows_are_consecutive_seqs(const ternlm_batch *b, size_t first, const int *rows, int n_rows) {
    for (int r = 1; r < n_rows; r++)
        if (b->q_seq[first + (size_t)rows[r]] != b->q_seq[first + (size_t)rows[0]] + (uint32_t)r) return 0;
    return 1;
}

/* Queue entries [first, first + T): give each its slot position, run them, hand out the logits rows. */
static ternlm_status eval_chunk(ternlm_batch *b, size_t first, int T, ternlm_error *err) {
    ternlm_session *s = b->s;
    int rows[TL_UBATCH] = {0}; /* zeroed: aarch64 GCC 12 sees rows[0] read under n_rows > 0 as maybe uninitialized */
    int n_rows = 0;
    for (int t = 0; t < T; t++) {
        const size_t i = first + (size_t)t;
        const uint32_t seq = b->q_seq[i];
        s->tok_seq[t] = seq;
        s->tok_pos[t] = b->pos[seq];
        b->history[(size_t)seq * b->n_ctx + b->pos[seq]] = b->q_tok[i];
        b->pos[seq]++;
        if (b->q_want[i]) rows[n_rows++] = t;
    }
    if (s->gpu) { /* the GPU copies each row straight to its sequence's logits */
        float *dst[TL_UBATCH];
        for (int r = 0; r < n_rows; r++) dst[r] = b->logits + (size_t)b->q_seq[first + (size_t)rows[r]] * b->n_vocab;
        const ternlm_status st = tl_gpu_eval_ubatch(s, b->q_tok + first, T, rows, n_rows, dst, err);
        if (st) return st;
    } else if (rows_are_consecutive_seqs(b, first, rows, n_rows)) { /* the usual decode step: no copy */
        tl_eval_ubatch(s, b->q_tok + first, T, rows, n_rows,
                       b->logits + (n_rows ? (size_t)b->q_seq[first + (size_t)rows[0]] * b->n_vocab : 0));
    } else {
        tl_eval_ubatch(s, b->q_tok + first, T, rows, n_rows, b->ubatch_logits);
        for (int r = 0; r < n_rows; r++)
            memcpy(b->logits + (size_t)b->q_seq[first + (size_t)rows[r]] * b->n_vocab,
                   b->ubatch_logits + (size_t)r * b->n_vocab, b->n_vocab * sizeof *b->logits);
    }
    for (int r = 0; r < n_rows; r++) b->has_logits[b->q_seq[first + (size_t)rows[r]]] = 1;
    return TERNLM_OK;
}

ternlm_status ternlm_batch_eval(ternlm_batch *b, ternlm_error *err) {
    if (!b) return tl_fail(err, TERNLM_ERR_ARG, "batch is NULL");
    memset(b->has_logits, 0, b->n_seq);
    for (size_t done = 0; done < b->q_n;) {
        const int T = (int)TL_MIN((size_t)TL_UBATCH, b->q_n - done);
        const ternlm_status st = eval_chunk(b, done, T, err);
        if (st) { /* a GPU failure: the chunk's positions moved, so the caller rewinds or drops those sequences */
            ternlm_batch_clear_queue(b);
            return st;
        }
        done += (size_t)T;
    }
    ternlm_batch_clear_queue(b);
    return TERNLM_OK;
}

const float *ternlm_batch_logits(const ternlm_batch *b, uint32_t seq) {
    if (!b || seq >= b->n_seq || !b->has_logits[seq]) return NULL;
    return b->logits + (size_t)seq * b->n_vocab;
}

uint32_t ternlm_batch_n_seq(const ternlm_batch *b) { return b ? b->n_seq : 0; }
uint32_t ternlm_batch_n_ctx(const ternlm_batch *b) { return b ? b->n_ctx : 0; }
uint32_t ternlm_batch_seq_pos(const ternlm_batch *b, uint32_t seq) { return b && seq < b->n_seq ? b->pos[seq] : 0; }
uint64_t ternlm_batch_tokens_evaluated(const ternlm_batch *b) { return b ? b->s->n_evaluated : 0; }
uint32_t ternlm_batch_threads(const ternlm_batch *b) { return b ? ternlm_session_threads(b->s) : 0; }
const char *ternlm_batch_backend(const ternlm_batch *b) { return b ? ternlm_session_backend(b->s) : ""; }

const int32_t *ternlm_batch_seq_tokens(const ternlm_batch *b, uint32_t seq) {
    return b && seq < b->n_seq ? b->history + (size_t)seq * b->n_ctx : NULL;
}

uint32_t ternlm_batch_seq_prefix(const ternlm_batch *b, uint32_t seq, const int32_t *tokens, size_t n) {
    if (!b || seq >= b->n_seq || !tokens || n == 0) return 0;
    const int32_t *held = b->history + (size_t)seq * b->n_ctx;
    const size_t limit = TL_MIN((size_t)b->pos[seq], n - 1);
    size_t k = 0;
    while (k < limit && held[k] == tokens[k]) k++;
    return (uint32_t)k;
}

ternlm_status ternlm_batch_seq_rewind(ternlm_batch *b, uint32_t seq, uint32_t pos, ternlm_error *err) {
    ternlm_status st = check_seq(b, seq, err);
    if (st) return st;
    if (b->queued[seq]) return tl_fail(err, TERNLM_ERR_ARG, "sequence %u has queued tokens: evaluate or clear them first", seq);
    if (pos > b->pos[seq])
        return tl_fail(err, TERNLM_ERR_ARG, "cannot rewind sequence %u forward (to %u, at %u)", seq, pos, b->pos[seq]);
    b->pos[seq] = pos; /* later positions are overwritten before they are read */
    b->has_logits[seq] = 0;
    return TERNLM_OK;
}

ternlm_status ternlm_batch_seq_copy(ternlm_batch *b, uint32_t dst, uint32_t src, uint32_t n, ternlm_error *err) {
    ternlm_status st = check_seq(b, dst, err);
    if (!st) st = check_seq(b, src, err);
    if (st) return st;
    if (dst == src) return tl_fail(err, TERNLM_ERR_ARG, "cannot copy sequence %u onto itself", dst);
    if (b->queued[dst]) return tl_fail(err, TERNLM_ERR_ARG, "sequence %u has queued tokens: evaluate or clear them first", dst);
    if (n > b->pos[src])
        return tl_fail(err, TERNLM_ERR_ARG, "sequence %u holds %u tokens, %u requested", src, b->pos[src], n);
    const ternlm_session *s = b->s;
    if (s->gpu) return tl_fail(err, TERNLM_ERR_BACKEND, "copying KV rows between slots is not implemented on the GPU backend yet");
    const size_t kv_dim = (size_t)s->m->hp.head_dim * s->m->hp.n_head_kv, layer = (size_t)b->n_ctx * kv_dim;
    for (uint32_t l = 0; l < s->m->hp.n_layer; l++) { /* per layer: rows [0, n) of K and of V */
        const size_t from = (size_t)src * s->slot_elems + l * layer, to = (size_t)dst * s->slot_elems + l * layer;
        memcpy(s->k_cache + to, s->k_cache + from, (size_t)n * kv_dim * sizeof *s->k_cache);
        memcpy(s->v_cache + to, s->v_cache + from, (size_t)n * kv_dim * sizeof *s->v_cache);
    }
    memcpy(b->history + (size_t)dst * b->n_ctx, b->history + (size_t)src * b->n_ctx, (size_t)n * sizeof *b->history);
    b->pos[dst] = n;
    b->has_logits[dst] = 0;
    return TERNLM_OK;
}
