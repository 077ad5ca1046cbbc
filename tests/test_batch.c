/* Multi-sequence batches: every sequence's logits are bit-identical (memcmp) to the single-sequence
 * session's, whatever slot it sits in, whatever else is batched with it, however its prompt is chunked and
 * whatever the thread count; prefix reuse evaluates only the new tokens; bad calls fail with clear codes. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ternlm.h"

#define N_PROMPTS 4
#define N_DECODE 6 /* decode steps after each prompt: N_DECODE + 1 logits rows per sequence */
#define MAX_PROMPT 80

static const size_t k_prompt_len[N_PROMPTS] = {3, 70, 17, 1}; /* 70 spans two micro-batches */

typedef struct reference {
    int32_t prompt[N_PROMPTS][MAX_PROMPT];
    int32_t gen[N_PROMPTS][N_DECODE + 1]; /* greedy token after each logits row */
    float *rows[N_PROMPTS];               /* (N_DECODE + 1) x n_vocab */
} reference;

static int32_t argmax(const float *v, uint32_t n) {
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return (int32_t)best;
}

/* The single-sequence path: a fresh session per prompt, greedy decode, every logits row kept. */
static int build_reference(ternlm_model *m, reference *ref, uint32_t n_vocab) {
    uint32_t lcg = 12345;
    ternlm_error err = {0};
    for (int p = 0; p < N_PROMPTS; p++) {
        for (size_t i = 0; i < k_prompt_len[p]; i++) {
            lcg = lcg * 1103515245u + 12345u;
            ref->prompt[p][i] = (int32_t)((lcg >> 8) % n_vocab);
        }
        ref->rows[p] = malloc((size_t)(N_DECODE + 1) * n_vocab * sizeof(float));
        ternlm_session_params sp = ternlm_session_params_default();
        sp.n_ctx = 128;
        sp.n_threads = 2;
        ternlm_session *s = NULL;
        if (!ref->rows[p] || ternlm_session_new(m, &sp, &s, &err)) {
            CHECK(0, "reference session: %s", err.message);
            return 0;
        }
        ternlm_status st = ternlm_session_eval(s, ref->prompt[p], k_prompt_len[p], TERNLM_LOGITS_LAST, &err);
        for (int r = 0; r <= N_DECODE && !st; r++) {
            memcpy(ref->rows[p] + (size_t)r * n_vocab, ternlm_session_logits(s, -1), n_vocab * sizeof(float));
            ref->gen[p][r] = argmax(ref->rows[p] + (size_t)r * n_vocab, n_vocab);
            if (r < N_DECODE) st = ternlm_session_eval(s, &ref->gen[p][r], 1, TERNLM_LOGITS_LAST, &err);
        }
        ternlm_session_free(s);
        CHECK(st == TERNLM_OK, "reference eval: %s", err.message);
        if (st) return 0;
    }
    return 1;
}

typedef struct seq_state {
    int prompt, start_step;
    size_t fed;  /* prompt tokens queued so far */
    int rows;    /* logits rows checked so far */
} seq_state;

/* Sequences start at staggered steps; prompts go in chunks of `chunk` tokens beside the others' decode steps. */
static void run_batch(ternlm_model *m, const reference *ref, uint32_t n_vocab, uint32_t threads, size_t chunk,
                      const int *slot_of_prompt, const char *label) {
    ternlm_batch_params bp = ternlm_batch_params_default();
    bp.n_ctx = 128;
    bp.n_threads = threads;
    bp.n_seq = N_PROMPTS;
    ternlm_batch *b = NULL;
    ternlm_error err = {0};
    CHECK(ternlm_batch_new(m, &bp, &b, &err) == TERNLM_OK, "%s: batch_new: %s", label, err.message);
    if (!b) return;
    seq_state st[N_PROMPTS];
    for (int p = 0; p < N_PROMPTS; p++) st[p] = (seq_state){p, p, 0, 0};
    int mismatches = 0, rows_checked = 0;
    for (int step = 0; step < 64; step++) {
        int busy = 0;
        for (int p = 0; p < N_PROMPTS; p++) {
            seq_state *q = &st[p];
            const uint32_t slot = (uint32_t)slot_of_prompt[p];
            if (step < q->start_step || q->rows > N_DECODE) continue;
            busy = 1;
            ternlm_status rc;
            if (q->fed < k_prompt_len[p]) {
                const size_t n = k_prompt_len[p] - q->fed < chunk ? k_prompt_len[p] - q->fed : chunk;
                rc = ternlm_batch_add(b, slot, ref->prompt[p] + q->fed, n, q->fed + n == k_prompt_len[p], &err);
                q->fed += n;
            } else {
                rc = ternlm_batch_add(b, slot, &ref->gen[p][q->rows - 1], 1, 1, &err);
            }
            CHECK(rc == TERNLM_OK, "%s: add: %s", label, err.message);
        }
        if (!busy) break;
        CHECK(ternlm_batch_eval(b, &err) == TERNLM_OK, "%s: eval: %s", label, err.message);
        for (int p = 0; p < N_PROMPTS; p++) {
            const float *lg = ternlm_batch_logits(b, (uint32_t)slot_of_prompt[p]);
            if (!lg) continue;
            if (memcmp(lg, ref->rows[p] + (size_t)st[p].rows * n_vocab, n_vocab * sizeof(float))) mismatches++;
            st[p].rows++;
            rows_checked++;
        }
    }
    CHECK(mismatches == 0, "%s: %d of %d logits rows differ from the single-sequence path", label, mismatches,
          rows_checked);
    CHECK(rows_checked == N_PROMPTS * (N_DECODE + 1), "%s: %d logits rows, want %d", label, rows_checked,
          N_PROMPTS * (N_DECODE + 1));
    ternlm_batch_free(b);
}

/* A slot that holds prompt 1 + its generated tokens serves a request sharing that prefix: only the rest is
 * evaluated, and the logits equal a fresh session's on the whole request. */
static void check_prefix_reuse(ternlm_model *m, const reference *ref, uint32_t n_vocab) {
    ternlm_batch_params bp = ternlm_batch_params_default();
    bp.n_ctx = 128;
    bp.n_seq = 2;
    bp.n_threads = 2;
    ternlm_batch *b = NULL;
    ternlm_error err = {0};
    CHECK(ternlm_batch_new(m, &bp, &b, &err) == TERNLM_OK, "prefix: %s", err.message);
    if (!b) return;
    int32_t held[MAX_PROMPT + N_DECODE], req[MAX_PROMPT + N_DECODE + 4];
    const size_t np = k_prompt_len[1];
    memcpy(held, ref->prompt[1], np * sizeof *held);
    memcpy(held + np, ref->gen[1], 4 * sizeof *held);
    CHECK(ternlm_batch_add(b, 1, held, np + 4, 0, &err) == TERNLM_OK && ternlm_batch_eval(b, &err) == TERNLM_OK,
          "prefix: fill: %s", err.message);
    CHECK(ternlm_batch_seq_pos(b, 1) == np + 4, "prefix: slot 1 at %u", ternlm_batch_seq_pos(b, 1));
    CHECK(!memcmp(ternlm_batch_seq_tokens(b, 1), held, (np + 4) * sizeof *held), "prefix: slot tokens");
    /* the request: the held tokens but the last, then 3 new ones */
    memcpy(req, held, (np + 3) * sizeof *req);
    req[np + 3] = 5, req[np + 4] = 9, req[np + 5] = 2;
    const size_t nr = np + 6;
    const uint32_t keep = ternlm_batch_seq_prefix(b, 1, req, nr);
    CHECK(keep == np + 3, "prefix: kept %u, want %zu", keep, np + 3);
    CHECK(ternlm_batch_seq_prefix(b, 0, req, nr) == 0, "prefix: the empty slot shares nothing");
    CHECK(ternlm_batch_seq_prefix(b, 1, held, np + 4) == np + 3, "prefix: a full match keeps n - 1");
    const uint64_t before = ternlm_batch_tokens_evaluated(b);
    CHECK(ternlm_batch_seq_rewind(b, 1, keep, &err) == TERNLM_OK, "prefix: rewind: %s", err.message);
    CHECK(ternlm_batch_add(b, 1, req + keep, nr - keep, 1, &err) == TERNLM_OK && ternlm_batch_eval(b, &err) == TERNLM_OK,
          "prefix: rest: %s", err.message);
    CHECK(ternlm_batch_tokens_evaluated(b) - before == nr - keep, "prefix: evaluated %llu tokens, want %zu",
          (unsigned long long)(ternlm_batch_tokens_evaluated(b) - before), nr - keep);
    ternlm_session_params sp = ternlm_session_params_default();
    sp.n_ctx = 128;
    ternlm_session *s = NULL;
    CHECK(ternlm_session_new(m, &sp, &s, &err) == TERNLM_OK &&
              ternlm_session_eval(s, req, nr, TERNLM_LOGITS_LAST, &err) == TERNLM_OK,
          "prefix: fresh session: %s", err.message);
    const float *lg = ternlm_batch_logits(b, 1);
    CHECK(s && lg && !memcmp(lg, ternlm_session_logits(s, -1), n_vocab * sizeof(float)),
          "prefix: reused-prefix logits differ from a fresh evaluation");
    CHECK(ternlm_batch_logits(b, 0) == NULL, "prefix: slot 0 asked for no logits");
    ternlm_session_free(s);
    ternlm_batch_free(b);
}

/* Slot 0 evaluates prompt 1 while slot 2 has an unrelated conversation; a request that shares prompt 1's first
 * tokens goes to slot 1, which copies those KV rows from slot 0 (not evaluated again): its logits equal a cold
 * single-sequence evaluation of the whole request, and so do slot 0's own next logits. */
static void check_prefix_copy(ternlm_model *m, const reference *ref, uint32_t n_vocab) {
    ternlm_batch_params bp = ternlm_batch_params_default();
    bp.n_ctx = 128;
    bp.n_seq = 3;
    bp.n_threads = 2;
    ternlm_batch *b = NULL;
    ternlm_error err = {0};
    CHECK(ternlm_batch_new(m, &bp, &b, &err) == TERNLM_OK, "copy: %s", err.message);
    if (!b) return;
    const size_t np = k_prompt_len[1], shared = np - 5;
    int32_t req[MAX_PROMPT + 4];
    memcpy(req, ref->prompt[1], shared * sizeof *req);
    req[shared] = 7, req[shared + 1] = 3, req[shared + 2] = 11;
    const size_t nr = shared + 3;
    CHECK(ternlm_batch_add(b, 0, ref->prompt[1], np, 1, &err) == TERNLM_OK &&
              ternlm_batch_add(b, 2, ref->prompt[2], k_prompt_len[2], 0, &err) == TERNLM_OK &&
              ternlm_batch_eval(b, &err) == TERNLM_OK,
          "copy: fill: %s", err.message);
    CHECK(ternlm_batch_seq_copy(b, 1, 1, 4, &err) == TERNLM_ERR_ARG, "copy onto itself accepted");
    CHECK(ternlm_batch_seq_copy(b, 1, 0, (uint32_t)np + 1, &err) == TERNLM_ERR_ARG && strstr(err.message, "holds"),
          "copy past the source's tokens: %s", err.message);
    CHECK(ternlm_batch_seq_copy(b, 1, 9, 1, &err) == TERNLM_ERR_ARG, "copy from a missing slot accepted");
    const uint32_t keep = ternlm_batch_seq_prefix(b, 0, req, nr);
    CHECK(keep == shared, "copy: slot 0 shares %u tokens, want %zu", keep, shared);
    CHECK(ternlm_batch_seq_copy(b, 1, 0, keep, &err) == TERNLM_OK, "copy: %s", err.message);
    CHECK(ternlm_batch_seq_pos(b, 1) == keep && !memcmp(ternlm_batch_seq_tokens(b, 1), req, keep * sizeof *req),
          "copy: slot 1 holds the prefix");
    const uint64_t before = ternlm_batch_tokens_evaluated(b);
    CHECK(ternlm_batch_add(b, 1, req + keep, nr - keep, 1, &err) == TERNLM_OK &&
              ternlm_batch_add(b, 0, &ref->gen[1][0], 1, 1, &err) == TERNLM_OK && ternlm_batch_eval(b, &err) == TERNLM_OK,
          "copy: rest: %s", err.message);
    CHECK(ternlm_batch_tokens_evaluated(b) - before == nr - keep + 1, "copy: evaluated %llu tokens, want %zu",
          (unsigned long long)(ternlm_batch_tokens_evaluated(b) - before), nr - keep + 1);
    ternlm_session_params sp = ternlm_session_params_default();
    sp.n_ctx = 128;
    ternlm_session *s = NULL;
    CHECK(ternlm_session_new(m, &sp, &s, &err) == TERNLM_OK &&
              ternlm_session_eval(s, req, nr, TERNLM_LOGITS_LAST, &err) == TERNLM_OK,
          "copy: cold session: %s", err.message);
    const float *lg = ternlm_batch_logits(b, 1), *own = ternlm_batch_logits(b, 0);
    CHECK(s && lg && !memcmp(lg, ternlm_session_logits(s, -1), n_vocab * sizeof(float)),
          "copy: logits after a copied prefix differ from a cold evaluation");
    CHECK(own && !memcmp(own, ref->rows[1] + n_vocab, n_vocab * sizeof(float)), "copy: the source slot's logits changed");
    CHECK(ternlm_batch_add(b, 2, req, 1, 0, &err) == TERNLM_OK && ternlm_batch_seq_copy(b, 2, 0, 2, &err) == TERNLM_ERR_ARG,
          "copy onto a slot with queued tokens accepted");
    ternlm_session_free(s);
    ternlm_batch_free(b);
}

static void check_errors(ternlm_model *m) {
    ternlm_batch_params bp = ternlm_batch_params_default();
    ternlm_batch *b = NULL;
    ternlm_error err = {0};
    bp.n_seq = 1000;
    CHECK(ternlm_batch_new(m, &bp, &b, &err) == TERNLM_ERR_ARG && !b, "1000 slots accepted");
    bp.n_seq = 2;
    bp.use_gpu = 1;
    /* A build with the CUDA backend on a GPU machine opens it (tests/test_gpu_match checks its bits); elsewhere the
     * refusal must name the GPU. */
    const ternlm_status gs = ternlm_batch_new(m, &bp, &b, &err);
    CHECK(gs == TERNLM_OK || (gs == TERNLM_ERR_BACKEND && strstr(err.message, "GPU")), "use_gpu: %s", err.message);
    if (b) ternlm_batch_free(b), b = NULL;
    bp.use_gpu = 0;
    bp.n_ctx = 8;
    CHECK(ternlm_batch_new(m, &bp, &b, &err) == TERNLM_OK, "new: %s", err.message);
    if (!b) return;
    const int32_t toks[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, bad[2] = {1, -4};
    CHECK(ternlm_batch_add(b, 2, toks, 1, 1, &err) == TERNLM_ERR_ARG && strstr(err.message, "sequence 2"), "bad slot: %s",
          err.message);
    CHECK(ternlm_batch_add(b, 0, bad, 2, 1, &err) == TERNLM_ERR_ARG && strstr(err.message, "-4"), "bad token: %s", err.message);
    CHECK(ternlm_batch_add(b, 0, toks, 9, 1, &err) == TERNLM_ERR_CONTEXT_FULL, "9 tokens in an 8 context: %s", err.message);
    CHECK(ternlm_batch_add(b, 0, toks, 5, 1, &err) == TERNLM_OK, "add 5: %s", err.message);
    CHECK(ternlm_batch_add(b, 0, toks, 4, 1, &err) == TERNLM_ERR_CONTEXT_FULL, "queued tokens count toward the context");
    CHECK(ternlm_batch_seq_rewind(b, 0, 0, &err) == TERNLM_ERR_ARG, "rewind with queued tokens: %s", err.message);
    CHECK(ternlm_batch_add(b, 1, toks, 8, 0, &err) == TERNLM_OK, "the other slot has its own context: %s", err.message);
    ternlm_batch_clear_queue(b);
    CHECK(ternlm_batch_eval(b, &err) == TERNLM_OK && ternlm_batch_seq_pos(b, 0) == 0 && ternlm_batch_tokens_evaluated(b) == 0,
          "a cleared queue evaluates nothing");
    CHECK(ternlm_batch_add(b, 0, toks, 3, 1, &err) == TERNLM_OK && ternlm_batch_eval(b, &err) == TERNLM_OK, "add 3");
    CHECK(ternlm_batch_seq_rewind(b, 0, 4, &err) == TERNLM_ERR_ARG, "rewind forward accepted");
    CHECK(ternlm_batch_seq_rewind(b, 0, 1, &err) == TERNLM_OK && ternlm_batch_seq_pos(b, 0) == 1, "rewind to 1");
    CHECK(ternlm_batch_logits(b, 0) == NULL, "logits survive a rewind");
    ternlm_batch_free(b);
}

static void check_model(const char *path) {
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    CHECK(ternlm_model_open_file(path, NULL, &m, &err) == TERNLM_OK, "%s: %s", path, err.message);
    if (!m) return;
    const uint32_t n_vocab = ternlm_model_get_info(m)->n_vocab;
    reference ref;
    memset(&ref, 0, sizeof ref);
    if (build_reference(m, &ref, n_vocab)) {
        static const int in_order[N_PROMPTS] = {0, 1, 2, 3}, shuffled[N_PROMPTS] = {3, 0, 2, 1};
        run_batch(m, &ref, n_vocab, 2, 16, in_order, path);
        run_batch(m, &ref, n_vocab, 1, 5, shuffled, path);
        run_batch(m, &ref, n_vocab, 2, 64, shuffled, path);
        check_prefix_reuse(m, &ref, n_vocab);
        check_prefix_copy(m, &ref, n_vocab);
    }
    for (int p = 0; p < N_PROMPTS; p++) free(ref.rows[p]);
    check_errors(m);
    ternlm_model_free(m);
}

int main(void) {
    check_model(TERNLM_SOURCE_DIR "/models/ternlm-tinystories.gguf");
    check_model(TERNLM_SHARED_DIR "/fixtures/b158-llama3-i2s.gguf");
    check_model(TERNLM_SHARED_DIR "/fixtures/bitnet-spm-tq2_0.gguf");
    check_model(TERNLM_SHARED_DIR "/fixtures/llama-stories260k.gguf");
    return check_summary();
}
