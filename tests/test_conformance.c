/* Conformance: every model in ../shared/fixtures and every case in its ref.json, with the fixture README's
 * tolerance rule, through the public API. Opens each model by path, from memory and incrementally. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "json.h"
#include "ternlm.h"

/* The fixture folder: TERNLM_SHARED_DIR from the environment (the GPU machine), else the build's. */
static const char *fixtures(void) {
    static char dir[1024];
    const char *env = getenv("TERNLM_SHARED_DIR");
    snprintf(dir, sizeof dir, "%s/fixtures/", env && *env ? env : TERNLM_SHARED_DIR);
    return dir;
}

typedef struct tol {
    double abs, mean, margin;
} tol;

static int argmax(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

static double top2_margin(const float *l, int n) {
    float a = -INFINITY, b = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (l[i] > a) { b = a; a = l[i]; }
        else if (l[i] > b) b = l[i];
    }
    return (double)a - (double)b;
}

static int32_t *ids_of(const jval *arr, size_t *n) {
    *n = arr ? arr->n : 0;
    int32_t *v = malloc((*n + 1) * sizeof *v);
    for (size_t i = 0; i < *n; i++) v[i] = (int32_t)arr->items[i].num;
    return v;
}

typedef struct worst {
    double abs, mean;
} worst;

static void compare_prompt(ternlm_session *s, const jval *c, const tol *t, int n_vocab, const char *name, worst *w) {
    size_t np;
    int32_t *prompt = ids_of(json_get(c, "prompt_ids"), &np);
    char path[1200];
    snprintf(path, sizeof path, "%s%s", fixtures(), json_get(c, "logits_file")->str);
    size_t bytes;
    float *ref = (float *)read_whole_file(path, &bytes);
    CHECK(ref != NULL, "%s: missing fixture %s", name, path);
    ternlm_error err = {0};
    ternlm_session_rewind(s, 0, NULL);
    CHECK(ternlm_session_eval(s, prompt, np, TERNLM_LOGITS_ALL, &err) == TERNLM_OK, "%s: eval failed: %s", name, err.message);
    const jval *pos = json_get(c, "logit_positions");
    for (size_t k = 0; ref && k < pos->n; k++) {
        const int p = (int)pos->items[k].num;
        const float *got = ternlm_session_logits(s, p), *exp = ref + k * (size_t)n_vocab;
        double max_d = 0, sum_d = 0;
        for (int i = 0; i < n_vocab; i++) {
            const double d = fabs((double)got[i] - (double)exp[i]);
            max_d = d > max_d ? d : max_d;
            sum_d += d;
        }
        const double mean = sum_d / n_vocab;
        if (max_d > w->abs) w->abs = max_d;
        if (mean > w->mean) w->mean = mean;
        CHECK(max_d <= t->abs, "%s pos %d: max |diff| %g > %g", name, p, max_d, t->abs);
        CHECK(mean <= t->mean, "%s pos %d: mean |diff| %g > %g", name, p, mean, t->mean);
        if (top2_margin(exp, n_vocab) > t->margin)
            CHECK(argmax(got, n_vocab) == argmax(exp, n_vocab), "%s pos %d: top-1 %d, reference %d", name, p,
                  argmax(got, n_vocab), argmax(exp, n_vocab));
    }
    /* the top-5 of every prompt position */
    const jval *t5 = json_get(c, "top5_per_prompt_position");
    for (size_t p = 0; t5 && p < t5->n; p++) {
        const float *got = ternlm_session_logits(s, (int)p);
        for (size_t j = 0; j < t5->items[p].n; j++) {
            const int id = (int)t5->items[p].items[j].items[0].num;
            const double l = t5->items[p].items[j].items[1].num;
            CHECK(fabs(got[id] - l) <= t->abs, "%s pos %zu: logit of %d is %g, reference %g", name, p, id, got[id], l);
        }
    }
    free(ref);
    free(prompt);
}

/* Greedy decode one token at a time: the reliable prefix must match exactly; every step's top-5 logits
 * (teacher-forced on the reference chain) must be within tolerance. */
static void compare_greedy(ternlm_session *s, const jval *c, const tol *t, int n_vocab, const char *name) {
    size_t np, ng;
    int32_t *prompt = ids_of(json_get(c, "prompt_ids"), &np), *greedy = ids_of(json_get(c, "greedy_ids"), &ng);
    const int reliable = (int)json_get(c, "greedy_reliable_prefix")->num;
    const jval *t5 = json_get(c, "top5_after_each_greedy_id");
    ternlm_error err = {0};
    ternlm_session_rewind(s, 0, NULL);
    CHECK(ternlm_session_eval(s, prompt, np, TERNLM_LOGITS_LAST, &err) == TERNLM_OK, "%s: %s", name, err.message);
    int mine_ok = 1;
    for (size_t k = 0; k < ng; k++) {
        const int mine = argmax(ternlm_session_logits(s, -1), n_vocab);
        if ((int)k < reliable && mine != greedy[k]) mine_ok = 0;
        if (ternlm_session_eval(s, &greedy[k], 1, TERNLM_LOGITS_LAST, &err)) break;
        const float *got = ternlm_session_logits(s, -1);
        for (size_t j = 0; t5 && k < t5->n && j < t5->items[k].n; j++) {
            const int id = (int)t5->items[k].items[j].items[0].num;
            const double l = t5->items[k].items[j].items[1].num;
            CHECK(fabs(got[id] - l) <= t->abs, "%s greedy step %zu: logit of %d is %g, reference %g", name, k, id,
                  got[id], l);
        }
    }
    CHECK(mine_ok, "%s: greedy ids differ within the reliable prefix of %d", name, reliable);
    free(prompt);
    free(greedy);
}

static ternlm_model *open_incremental(const char *path, size_t chunk) {
    size_t len;
    char *bytes = read_whole_file(path, &len);
    ternlm_loader *ld;
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    if (!bytes || ternlm_loader_new(len, &ld, &err)) return NULL;
    for (size_t o = 0; o < len && !err.code; o += chunk) ternlm_loader_push(ld, bytes + o, o + chunk > len ? len - o : chunk, &err);
    if (!err.code) ternlm_loader_finish(ld, NULL, &m, &err);
    CHECK(m != NULL, "incremental load of %s: %s", path, err.message);
    ternlm_loader_free(ld);
    free(bytes);
    return m;
}

static void run_fixture(const char *ref_name, const char *mode) {
    char path[1200];
    snprintf(path, sizeof path, "%s%s", fixtures(), ref_name);
    size_t len;
    char *text = read_whole_file(path, &len);
    jval *ref = text ? json_parse(text, len) : NULL;
    CHECK(ref != NULL, "cannot read %s", path);
    if (!ref) {
        free(text);
        return;
    }
    const jval *tj = json_get(ref, "tolerance");
    const tol t = {json_get(tj, "abs")->num, json_get(tj, "mean_abs")->num, json_get(tj, "argmax_margin")->num};
    const int n_vocab = (int)json_get(ref, "n_vocab")->num;
    snprintf(path, sizeof path, "%s%s", fixtures(), json_get(ref, "model")->str);
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    char *image = NULL;
    if (!strcmp(mode, "file")) {
        ternlm_model_params mp = ternlm_model_params_default();
        mp.no_repack = getenv("TERNLM_TEST_NO_REPACK") != NULL; /* the file-layout kernels (plain NEON's only ones) */
        ternlm_model_open_file(path, &mp, &m, &err);
    } else if (!strcmp(mode, "memory")) {
        size_t n;
        char *raw = read_whole_file(path, &n);
        image = raw ? aligned_alloc(64, (n + 63) / 64 * 64) : NULL;
        if (image) memcpy(image, raw, n);
        free(raw);
        if (image) ternlm_model_open_memory(image, n, NULL, &m, &err);
    } else {
        m = open_incremental(path, 65521); /* an odd chunk size crosses every boundary */
    }
    CHECK(m != NULL, "open %s (%s): %s", path, mode, err.message);
    ternlm_session *s = NULL;
    ternlm_session_params sp = ternlm_session_params_default();
    sp.n_ctx = 256;
    sp.n_threads = 2;
    sp.use_gpu = getenv("TERNLM_GPU") != NULL; /* the CUDA backend, where built and a GPU exists */
    if (m && sp.use_gpu && ternlm_session_new(m, &sp, &s, &err) == TERNLM_ERR_UNSUPPORTED) {
        printf("%-28s skipped on the GPU: %s\n", json_get(ref, "model")->str, err.message);
        ternlm_model_free(m);
        json_free(ref);
        free(text);
        return;
    }
    if (m && !s) CHECK(ternlm_session_new(m, &sp, &s, &err) == TERNLM_OK, "session: %s", err.message);
    worst w = {0, 0};
    const jval *cases = json_get(ref, "cases");
    for (size_t i = 0; s && i < cases->n; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s/%s [%s]", json_get(ref, "model")->str, json_get(&cases->items[i], "name")->str, mode);
        compare_prompt(s, &cases->items[i], &t, n_vocab, name, &w);
        compare_greedy(s, &cases->items[i], &t, n_vocab, name);
    }
    printf("%-28s %-11s kernels %-7s worst abs %.3g (limit %g), worst mean %.3g (limit %g)\n", json_get(ref, "model")->str,
           mode, s ? ternlm_session_backend(s) : "-", w.abs, t.abs, w.mean, t.mean);
    ternlm_session_free(s);
    ternlm_model_free(m);
    free(image);
    json_free(ref);
    free(text);
}

int main(int argc, char **argv) {
    if (getenv("TERNLM_GPU")) { /* skip cleanly without a usable GPU backend */
        ternlm_model *m = NULL;
        ternlm_session *s = NULL;
        ternlm_session_params sp = ternlm_session_params_default();
        sp.use_gpu = 1;
        ternlm_error err = {0};
        char path[1200];
        snprintf(path, sizeof path, "%sb158-llama3-i2s.gguf", fixtures());
        if (ternlm_model_open_file(path, NULL, &m, &err) == TERNLM_OK && ternlm_session_new(m, &sp, &s, &err) != TERNLM_OK) {
            printf("GPU backend unavailable: %s: skipped\n", err.message);
            ternlm_model_free(m);
            return 77;
        }
        ternlm_session_free(s);
        ternlm_model_free(m);
    }
    const char *forced = getenv("TERNLM_KERNELS");
    if (forced && *forced && strcmp(forced, ternlm_cpu_kernels())) {
        printf("kernel path '%s' is not available on this CPU or build: skipped\n", forced);
        return 77;
    }
    static const char *refs[] = {"b158-llama3-i2s.ref.json", "bitnet-spm-tq2_0.ref.json", "bitnet-spm-tq1_0.ref.json",
                                 "llama-stories260k.ref.json", "qwen3-bonsai-q1_0.ref.json",
                                 "qwen3-bonsai-q2_0.ref.json"};
    const char *only = getenv("TERNLM_FIXTURES"); /* a subset, e.g. "b158,stories" (the GPU machine gets only some) */
    const char *only_mode = argc > 1 ? argv[1] : NULL;
    static const char *modes[] = {"file", "memory", "incremental"};
    for (size_t r = 0; r < sizeof refs / sizeof refs[0]; r++)
        for (size_t k = 0; k < 3; k++)
            if (((!only_mode && (k == 0 || r == 0)) || (only_mode && !strcmp(only_mode, modes[k]))) &&
                (!only || strstr(refs[r], only) || (strstr(only, "stories") && strstr(refs[r], "stories")) ||
                 (strstr(only, "b158") && strstr(refs[r], "b158")) || (strstr(only, "tq") && strstr(refs[r], "tq")) ||
                 (strstr(only, "bonsai") && strstr(refs[r], "bonsai"))))
                run_fixture(refs[r], modes[k]);
    return check_summary();
}
