/* The GPU backend computes the CPU's bits: for each model, every logit of a prompt (batched, chunked past the GPU's
 * 512-token batch, and token by token) and of 100 greedy decode steps must be identical between a CPU session and a
 * --gpu session, and so must the greedy ids. Skips (77) where no GPU backend is built or no device exists.
 *   test_gpu_match [MODEL.gguf ...]   (default: the conformance fixtures and the default model) */
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

static void match_model(const char *path) {
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    if (ternlm_model_open_file(path, NULL, &m, &err)) {
        CHECK(0, "open %s: %s", path, err.message);
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
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
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
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(paths[i], "rb");
        if (!f) {
            printf("%s: not present here, skipped\n", paths[i]);
            continue;
        }
        fclose(f);
        match_model(paths[i]);
    }
    return check_summary();
}
