/* The GPU backend computes the CPU's bits: for each model, every logit of a prompt (batched, chunked past the GPU's
 * 512-token batch, and token by token) and of 100 greedy decode steps must be identical between a CPU session and a
 * --gpu session, and so must the greedy ids; a multi-sequence batch on the GPU must give the logits of the same batch
 * on the CPU. Each model runs with the file's head and, where the head is F16, with it re-quantized at load
 * (head_quant_i8, head_quant_i4: the GPU must then compute the CPU's logits for that head). Skips (77) where no GPU
 * backend is built or no device exists.
 *   test_gpu_match [MODEL.gguf ...]   (default: the conformance fixtures and the default model)
 *   TERNLM_MATCH_HEADS: the head options to run, a comma-separated subset of "file,i8,i4" (default all three) */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ternlm.h"

static const char *fixtures_dir(void) {
    const char *env = getenv("TERNLM_SHARED_DIR");
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/fixtures/", env && *env ? env : TERNLM_SHARED_DIR);
    return buf;
}

static const char text[] =
    "Once upon a time, in a small village by the sea, there lived a girl named Lily who loved to collect shells. "
    "Every morning she walked along the beach with her dog, Max, and they looked for the most beautiful ones. "
    "One day, Max found a shiny blue shell that sang when the wind blew across it. Lily was amazed. ";

/* Tokens of `text` repeated to n ids, clamped into the vocabulary. */
static int32_t *prompt_tokens(ternlm_model *m, size_t n) {
    int32_t *ids = malloc(n * sizeof *ids), buf[512];
    size_t got = 0, k = 0;
    ternlm_error err = {0};
    if (ternlm_tokenize(m, text, sizeof text - 1, 0, buf, 512, &got, &err) || got == 0) got = 0;
    const uint32_t nv = ternlm_model_get_info(m)->n_vocab;
    for (size_t i = 0; i < n; i++) ids[i] = got ? buf[k++ % got] % (int32_t)nv : (int32_t)((i * 7919) % nv);
    return ids;
}

/* Whether rows of logits are bit-identical; a mismatch is always a failed check, a match one passed check unless quiet. */
static int same_rows(const ternlm_session *a, const ternlm_session *b, int rows, uint32_t nv, const char *what, int quiet) {
    for (int r = 0; r < rows; r++) {
        const float *x = ternlm_session_logits(a, r), *y = ternlm_session_logits(b, r);
        if (memcmp(x, y, nv * sizeof *x)) {
            float worst = 0;
            uint32_t at = 0;
            for (uint32_t i = 0; i < nv; i++)
                if (x[i] != y[i] && !(x[i] - y[i] < worst && y[i] - x[i] < worst)) worst = x[i] > y[i] ? x[i] - y[i] : y[i] - x[i], at = i;
            CHECK(0, "%s: row %d differs (largest difference %g at id %u: cpu %.9g gpu %.9g)", what, r, worst, at, x[at], y[at]);
            return 0;
        }
    }
    if (!quiet) CHECK(1, "%s", what);
    return 1;
}

static int32_t argmax(const float *x, uint32_t n) {
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

/* Whether every sequence of two batches holds the same logits (both asked for all of them). */
static int same_batch_logits(const ternlm_batch *a, const ternlm_batch *b, uint32_t n_seq, uint32_t nv, const char *what) {
    for (uint32_t q = 0; q < n_seq; q++) {
        const float *x = ternlm_batch_logits(a, q), *y = ternlm_batch_logits(b, q);
        if (!x || !y || memcmp(x, y, nv * sizeof *x)) {
            CHECK(0, "%s: sequence %u %s", what, q, !x || !y ? "has no logits" : "differs");
            return 0;
        }
    }
    return 1;
}

/* 5. A multi-sequence batch on the GPU against the same batch on the CPU (whose bits are the single-sequence
 * session's): four prompts of 5..95 tokens (micro-batches mixing sequences), then 20 greedy steps in lockstep, then
 * steps where only some sequences advance (micro-batches of 2 and of 1 token). */
static int match_batch(ternlm_model *m, const int32_t *ids, uint32_t nv, const char *name) {
    enum { NS = 4 };
    ternlm_batch_params bp = ternlm_batch_params_default();
    bp.n_seq = NS;
    bp.n_ctx = 256;
    ternlm_batch *bc = NULL, *bg = NULL;
    ternlm_error err = {0};
    char what[512];
    int ok = ternlm_batch_new(m, &bp, &bc, &err) == TERNLM_OK;
    bp.use_gpu = 1;
    ok = ok && ternlm_batch_new(m, &bp, &bg, &err) == TERNLM_OK;
    CHECK(ok, "%s: batches of %d sequences on the CPU and the GPU: %s", name, NS, err.message);
    for (uint32_t q = 0; ok && q < NS; q++)
        ok = !ternlm_batch_add(bc, q, ids + 50 * q, 5 + 30 * q, 1, &err) && !ternlm_batch_add(bg, q, ids + 50 * q, 5 + 30 * q, 1, &err);
    ok = ok && !ternlm_batch_eval(bc, &err) && !ternlm_batch_eval(bg, &err);
    CHECK(ok, "%s: batch prompts: %s", name, err.message);
    snprintf(what, sizeof what, "%.200s: GPU batch, 4 prompts of 5..95 tokens", name);
    ok = ok && same_batch_logits(bc, bg, NS, nv, what);
    int32_t next[NS];
    for (uint32_t q = 0; ok && q < NS; q++) next[q] = argmax(ternlm_batch_logits(bc, q), nv);
    int steps = 0;
    for (; ok && steps < 22; steps++) {
        /* 20 steps of every sequence, then sequences 0 and 2 only, then sequence 1 only */
        const unsigned mask = steps < 20 ? 0xfu : steps == 20 ? 0x5u : 0x2u;
        for (uint32_t q = 0; ok && q < NS; q++)
            if (mask >> q & 1) ok = !ternlm_batch_add(bc, q, &next[q], 1, 1, &err) && !ternlm_batch_add(bg, q, &next[q], 1, 1, &err);
        ok = ok && !ternlm_batch_eval(bc, &err) && !ternlm_batch_eval(bg, &err);
        for (uint32_t q = 0; ok && q < NS; q++) {
            if (!(mask >> q & 1)) continue;
            const float *x = ternlm_batch_logits(bc, q), *y = ternlm_batch_logits(bg, q);
            if (!x || !y || memcmp(x, y, nv * sizeof *x)) {
                CHECK(0, "%s: GPU batch step %d: sequence %u differs (%s)", name, steps, q, err.message);
                ok = 0;
            } else {
                next[q] = argmax(x, nv);
            }
        }
    }
    CHECK(ok && steps == 22, "%s: GPU batch: %d steps identical to the CPU batch (4, 2 and 1 sequences a step)", name, steps);
    ternlm_batch_free(bc);
    ternlm_batch_free(bg);
    return ok;
}

enum { HEAD_FILE, HEAD_I8, HEAD_I4 };
static const char *const head_names[] = {"file", "i8", "i4"};

static void match_model(const char *path, int head) {
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    ternlm_model_params mp = ternlm_model_params_default();
    mp.head_quant_i8 = head == HEAD_I8;
    mp.head_quant_i4 = head == HEAD_I4;
    if (ternlm_model_open_file(path, &mp, &m, &err)) {
        CHECK(0, "open %s (head %s): %s", path, head_names[head], err.message);
        return;
    }
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    const char *ht = ternlm_model_get_info(m)->head_type;
    if (head != HEAD_FILE && (!ht || strncmp(ht, head == HEAD_I8 ? "I8" : "I4", 2))) { /* not an F16 head: left as is */
        printf("%-28s head %s: the head stays %s, skipped\n", base, head_names[head], ht ? ht : "?");
        ternlm_model_free(m);
        return;
    }
    const uint32_t nv = ternlm_model_get_info(m)->n_vocab;
    ternlm_session_params pc = ternlm_session_params_default(), pg;
    pc.n_ctx = 1024;
    pg = pc;
    pg.use_gpu = 1;
    ternlm_session *c = NULL, *g = NULL;
    CHECK(ternlm_session_new(m, &pc, &c, &err) == TERNLM_OK, "cpu session: %s", err.message);
    CHECK(ternlm_session_new(m, &pg, &g, &err) == TERNLM_OK, "gpu session: %s", err.message);
    char name[300];
    snprintf(name, sizeof name, "%.200s%s%s", base, head == HEAD_FILE ? "" : " head ", head == HEAD_FILE ? "" : head_names[head]);
    char what[512];
    int32_t *ids = prompt_tokens(m, 700);
    int ok = c && g;
    /* 1. a 70-token prompt, every row of logits (tensor-core GEMM, a partial 64-token tile) */
    if (ok) {
        ok = !ternlm_session_eval(c, ids, 70, TERNLM_LOGITS_ALL, &err) && !ternlm_session_eval(g, ids, 70, TERNLM_LOGITS_ALL, &err);
        CHECK(ok, "eval 70: %s", err.message);
        snprintf(what, sizeof what, "%.200s: 70-token prompt, all rows", name);
        if (ok) ok = same_rows(c, g, 70, nv, what, 0);
    }
    /* 2. 100 greedy decode steps (the GEMV kernels and the CUDA graph), ids and logits */
    int32_t tc = ok ? argmax(ternlm_session_logits(c, -1), nv) : 0, tg = tc;
    int steps = 0, same_ids = 1;
    for (; ok && steps < 100; steps++) {
        ok = !ternlm_session_eval(c, &tc, 1, TERNLM_LOGITS_LAST, &err) && !ternlm_session_eval(g, &tg, 1, TERNLM_LOGITS_LAST, &err);
        if (!ok) break;
        snprintf(what, sizeof what, "%.200s: decode step %d", name, steps);
        if (!same_rows(c, g, 1, nv, what, 1)) { /* one passed check for all steps, below */
            ok = 0;
            break;
        }
        tc = argmax(ternlm_session_logits(c, -1), nv);
        tg = argmax(ternlm_session_logits(g, -1), nv);
        same_ids &= tc == tg;
    }
    CHECK(ok && same_ids && steps == 100, "%s: 100 greedy steps with identical logits and ids (%d done)", name, steps);
    /* 3. a 600-token prompt from position 0: two GPU chunks (512 + 88), last row only */
    if (ok) {
        ternlm_session_rewind(c, 0, &err), ternlm_session_rewind(g, 0, &err);
        ok = !ternlm_session_eval(c, ids, 600, TERNLM_LOGITS_LAST, &err) && !ternlm_session_eval(g, ids, 600, TERNLM_LOGITS_LAST, &err);
        snprintf(what, sizeof what, "%.200s: 600-token prompt in chunks, last row", name);
        if (ok) ok = same_rows(c, g, 1, nv, what, 0);
    }
    /* 4. three short prompts below the GEMM threshold (the GEMV kernels with several tokens) */
    if (ok) {
        ok = !ternlm_session_eval(c, ids + 600, 3, TERNLM_LOGITS_ALL, &err) && !ternlm_session_eval(g, ids + 600, 3, TERNLM_LOGITS_ALL, &err);
        snprintf(what, sizeof what, "%.200s: 3 more tokens at position 600, all rows", name);
        if (ok) ok = same_rows(c, g, 3, nv, what, 0);
    }
    if (ok) ok = match_batch(m, ids, nv, name);
    printf("%-28s %s\n", name, ok ? "GPU logits identical to the CPU's" : "MISMATCH");
    free(ids);
    ternlm_session_free(c);
    ternlm_session_free(g);
    ternlm_model_free(m);
}

int main(int argc, char **argv) {
    char paths[8][1024];
    const char *names[] = {"b158-llama3-i2s.gguf",     "bitnet-spm-tq2_0.gguf",    "bitnet-spm-tq1_0.gguf",
                           "qwen3-bonsai-q1_0.gguf", "qwen3-bonsai-q2_0.gguf", "llama-stories260k.gguf"};
    const int n_names = (int)(sizeof names / sizeof names[0]);
    int n = 0;
    if (argc > 1) {
        for (int i = 1; i < argc && n < 8; i++) snprintf(paths[n++], sizeof paths[0], "%.1000s", argv[i]);
    } else {
        for (int i = 0; i < n_names; i++) snprintf(paths[n++], sizeof paths[0], "%.800s%.100s", fixtures_dir(), names[i]);
    }
    { /* skip cleanly without a GPU backend or device */
        ternlm_model *m = NULL;
        ternlm_session *s = NULL;
        ternlm_session_params sp = ternlm_session_params_default();
        sp.use_gpu = 1;
        sp.n_ctx = 64;
        ternlm_error err = {0};
        if (ternlm_model_open_file(paths[n - 1], NULL, &m, &err) == TERNLM_OK && ternlm_session_new(m, &sp, &s, &err) != TERNLM_OK) {
            printf("GPU backend unavailable: %s: skipped\n", err.message);
            ternlm_model_free(m);
            return 77;
        }
        ternlm_session_free(s);
        ternlm_model_free(m);
    }
    const char *heads = getenv("TERNLM_MATCH_HEADS");
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(paths[i], "rb");
        if (!f) {
            printf("%s: not present here, skipped\n", paths[i]);
            continue;
        }
        fclose(f);
        for (int h = HEAD_FILE; h <= HEAD_I4; h++)
            if (!heads || !*heads || strstr(heads, head_names[h])) match_model(paths[i], h);
    }
    return check_summary();
}
