/* ternlm bench: llama-bench-style prompt (ppN) and generation (tgN) throughput with medians over repetitions,
 * the machine's memory read bandwidth and the generation roofline (--membw), and tokenizer MB/s (--tokenizer). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "tensor_types.h"
#include "ternlm.h"
#include "threads.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n) {
    double *s = malloc((size_t)n * sizeof *s);
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_d);
    const double m = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    free(s);
    return m;
}

/* ---- memory bandwidth: sum 64-bit words of a large buffer on every thread, best of several passes ---- */

typedef struct bw_job {
    const uint64_t *p;
    size_t n;
    uint64_t sums[64];
} bw_job;

static void bw_task(void *ctx, int ith, int nth) {
    bw_job *j = ctx;
    const size_t a = j->n * (size_t)ith / (size_t)nth, b = j->n * (size_t)(ith + 1) / (size_t)nth;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = a;
    for (; i + 4 <= b; i += 4) s0 += j->p[i], s1 += j->p[i + 1], s2 += j->p[i + 2], s3 += j->p[i + 3];
    for (; i < b; i++) s0 += j->p[i];
    j->sums[ith & 63] = s0 + s1 + s2 + s3;
}

/* A 1 GB buffer and a pool kept for repeated measurements: the host's bandwidth moves within seconds, so the
 * roofline of each generation run is measured on both sides of it. */
typedef struct bw_probe {
    uint64_t *p;
    tl_pool *pool;
} bw_probe;

static int bw_probe_open(bw_probe *b, int threads) {
    const size_t bytes = (size_t)1 << 30;
    b->p = malloc(bytes);
    b->pool = b->p ? tl_pool_new(threads) : NULL;
    if (!b->pool) {
        free(b->p);
        return 0;
    }
    for (size_t i = 0; i < bytes / 8; i++) b->p[i] = i;
    return 1;
}

static void bw_probe_close(bw_probe *b) {
    if (b->pool) tl_pool_free(b->pool), free(b->p);
    b->pool = NULL;
}

/* GB/s: the median of `passes` (<= 7) reads of the whole buffer (the machine is shared: not the best pass). */
static double bw_probe_read(bw_probe *b, int passes) {
    const size_t bytes = (size_t)1 << 30;
    bw_job job = {b->p, bytes / 8, {0}};
    double gbs[7];
    for (int r = 0; r < passes; r++) {
        const double t0 = now();
        tl_pool_run(b->pool, bw_task, &job);
        gbs[r] = (double)bytes / (now() - t0) / 1e9;
    }
    return median(gbs, passes);
}

typedef struct bench_cfg {
    int pp, tg, threads, reps, json, membw, gpu, head, no_repack; /* head: cli_head_quant's number */
    const char *head_type;
    double repacked_mb;
} bench_cfg;

/* Bytes one generated token reads: every weight except an untied embedding table (one row is read), counted in the
 * form the kernels read: a re-quantized head (Q8_0: 34 bytes per 32; int8: 1 byte per weight and a 4-byte row scale;
 * int4: 4.25 bits per weight and the row scale)
 * and TQ1_0 linears repacked to 2-bit codes (66 bytes per 256 instead of 54). */
static double bytes_per_token(const ternlm_model *m, const bench_cfg *c) {
    const ternlm_model_info *info = ternlm_model_get_info(m);
    double total = 0;
    for (uint32_t i = 0; i < ternlm_model_tensor_count(m); i++) {
        ternlm_tensor_info t;
        ternlm_model_tensor(m, i, &t);
        double b = (double)t.nbytes;
        const int is_head = !strcmp(t.name, "output.weight") || (!strcmp(t.name, "token_embd.weight") && info->head_tied);
        if (!strcmp(t.name, "token_embd.weight") && !info->head_tied) b = 0;
        if (is_head && !strcmp(t.type, "F16") && c->head == 1) b = b / 2 * 34 / 32;
        if (is_head && !strcmp(t.type, "F16") && c->head == 2) b = b / 2 + 4.0 * (double)info->n_vocab;
        if (is_head && !strcmp(t.type, "F16") && c->head == 3) b = b / 2 * 4.25 / 8 + 4.0 * (double)info->n_vocab;
        if (!is_head && !strcmp(t.type, "TQ1_0") && info->repacked_bytes) b = b * 66 / 54;
        total += b;
    }
    return total;
}

/* ---- tokenizer throughput ---- */

static int bench_tokenizer(const ternlm_model *m, const char *text_file, int reps, int json) {
    size_t len = 0;
    char *text = NULL;
    if (text_file) {
        FILE *f = fopen(text_file, "rb");
        if (!f) {
            fprintf(stderr, "ternlm bench: cannot open '%s'\n", text_file);
            return EXIT_RUNTIME;
        }
        fseek(f, 0, SEEK_END);
        len = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        text = malloc(len + 1);
        if (fread(text, 1, len, f) != len) len = 0;
        fclose(f);
        if (len > (1u << 20)) len = 1u << 20; /* 1 MB, as the comparison script uses */
    } else {
        static const char para[] = "The quick brown fox jumps over the lazy dog. It's 2026, and 12345 BitNet models "
                                   "run on CPUs everywhere!\n";
        len = 1u << 20;
        text = malloc(len);
        for (size_t i = 0; i < len; i++) text[i] = para[i % (sizeof para - 1)];
    }
    size_t cap = len + 16, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    double *mbs = malloc((size_t)reps * sizeof *mbs);
    ternlm_error err = {0};
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        if (ternlm_tokenize(m, text, len, 0, ids, cap, &n, &err)) {
            fprintf(stderr, "ternlm: %s\n", err.message);
            return EXIT_RUNTIME;
        }
        mbs[r] = (double)len / 1e6 / (now() - t0);
    }
    const double med = median(mbs, reps);
    if (json) {
        printf("{\"test\":\"tokenize\",\"bytes\":%zu,\"tokens\":%zu,\"median_mbs\":%.3f,\"samples_mbs\":[", len, n, med);
        for (int r = 0; r < reps; r++) printf("%s%.3f", r ? "," : "", mbs[r]);
        printf("]}\n");
    } else {
        printf("tokenize: %zu bytes -> %zu tokens, median %.2f MB/s over %d runs (single thread)\n", len, n, med, reps);
    }
    free(ids);
    free(mbs);
    free(text);
    return 0;
}

/* ---- model throughput ---- */


static int run_test(ternlm_session *s, const int32_t *toks, int n, int batch, double *tps, ternlm_error *err) {
    ternlm_session_rewind(s, 0, NULL);
    const double t0 = now();
    if (batch) {
        if (ternlm_session_eval(s, toks, (size_t)n, TERNLM_LOGITS_LAST, err)) return 1;
    } else {
        for (int i = 0; i < n; i++)
            if (ternlm_session_eval(s, &toks[i], 1, TERNLM_LOGITS_LAST, err)) return 1;
    }
    *tps = n / (now() - t0);
    return 0;
}

/* roof: each run's roofline in tokens/s (NULL: none); the fraction reported is the median of the runs' own. */
static void report(const char *test, const bench_cfg *c, const char *backend, const double *v, int n, const double *roofs) {
    const double med = median(v, n);
    double lo = v[0], hi = v[0], roof = 0, froof = 0;
    for (int i = 1; i < n; i++) lo = v[i] < lo ? v[i] : lo, hi = v[i] > hi ? v[i] : hi;
    double *frac = roofs ? malloc((size_t)n * sizeof *frac) : NULL;
    if (frac) {
        for (int i = 0; i < n; i++) frac[i] = v[i] / roofs[i];
        roof = median(roofs, n), froof = median(frac, n);
    }
    free(frac);
    if (c->json) {
        printf("{\"test\":\"%s\",\"threads\":%d,\"kernels\":\"%s\",\"head\":\"%s\",\"repack\":%s,\"repacked_mb\":%.1f,"
               "\"median_tps\":%.3f,\"min_tps\":%.3f,\"max_tps\":%.3f,\"samples_tps\":[",
               test, c->threads, backend, c->head_type, c->repacked_mb > 0 ? "true" : "false", c->repacked_mb, med, lo, hi);
        for (int i = 0; i < n; i++) printf("%s%.3f", i ? "," : "", v[i]);
        printf("]");
        if (roof > 0) {
            printf(",\"roofline_tps\":%.3f,\"roofline_fraction\":%.3f,\"roofline_samples_tps\":[", roof, froof);
            for (int i = 0; i < n; i++) printf("%s%.3f", i ? "," : "", roofs[i]);
            printf("]");
        }
        printf("}\n");
    } else {
        printf("%-8s %3d threads  %-7s  median %8.2f tokens/s  (min %.2f, max %.2f, %d runs)", test, c->threads, backend,
               med, lo, hi, n);
        if (roof > 0) printf("  roofline %.2f (measured before and after each run) -> %.0f%%", roof, 100 * froof);
        printf("\n");
    }
    fflush(stdout);
}

static int bench_model(ternlm_model *m, bench_cfg *c) {
    ternlm_session_params sp = ternlm_session_params_default();
    sp.n_threads = (uint32_t)c->threads;
    sp.n_ctx = (uint32_t)(c->pp > c->tg ? c->pp : c->tg) + 8;
    sp.use_gpu = c->gpu;
    ternlm_session *s = NULL;
    ternlm_error err = {0};
    if (ternlm_session_new(m, &sp, &s, &err)) {
        fprintf(stderr, "ternlm: %s\n", err.message);
        return EXIT_RUNTIME;
    }
    c->threads = (int)ternlm_session_threads(s);
    const char *backend = ternlm_session_backend(s);
    if (!c->json) /* what runs, so that figures can be compared */
        printf("running: kernels %s, %d threads, head %s, repack %s", backend, c->threads, c->head_type,
               c->repacked_mb > 0 ? "on" : "off");
    if (!c->json && c->repacked_mb > 0) printf(" (%.1f MB in 16-row groups)", c->repacked_mb);
    if (!c->json) printf("\n");
    const uint32_t nv = ternlm_model_get_info(m)->n_vocab;
    const int n = c->pp > c->tg ? c->pp : c->tg;
    int32_t *toks = malloc((size_t)n * sizeof *toks);
    uint64_t r = 42;
    for (int i = 0; i < n; i++) r = r * 6364136223846793005ull + 1, toks[i] = (int32_t)((r >> 33) % nv);
    double *v = malloc((size_t)c->reps * sizeof *v), *roofs = malloc((size_t)c->reps * sizeof *roofs), tmp;
    int rc = 0;
    bw_probe bw = {NULL, NULL};
    const double bpt = bytes_per_token(m, c);
    if (c->membw && !c->gpu && bw_probe_open(&bw, c->threads)) {
        const double gbs = bw_probe_read(&bw, 7), roof = gbs * 1e9 / bpt;
        if (c->json) printf("{\"test\":\"membw\",\"threads\":%d,\"read_gbs\":%.3f,\"bytes_per_token\":%.0f,\"roofline_tps\":%.3f}\n", c->threads, gbs, bpt, roof);
        else printf("memory read bandwidth %.2f GB/s (%d threads); %.1f MB read per generated token -> roofline %.2f tokens/s\n", gbs, c->threads, bpt / 1e6, roof);
    } else if (c->membw && !c->gpu) {
        fprintf(stderr, "ternlm bench: cannot allocate the 1 GB buffer that --membw reads; no roofline\n");
    }
    if (c->pp > 0) {
        run_test(s, toks, c->pp < 16 ? c->pp : 16, 1, &tmp, &err); /* warm-up: page in the weights */
        for (int i = 0; i < c->reps && !rc; i++) {
            rc = run_test(s, toks, c->pp, 1, &v[i], &err);
            if (!c->json) fprintf(stderr, "\rpp%d: run %d/%d %.2f tokens/s   ", c->pp, i + 1, c->reps, v[i]);
        }
        if (!c->json) fprintf(stderr, "\r%40s\r", "");
        char name[32];
        snprintf(name, sizeof name, "pp%d", c->pp);
        if (!rc) report(name, c, backend, v, c->reps, NULL);
    }
    if (c->tg > 0 && !rc) {
        run_test(s, toks, 4, 0, &tmp, &err);
        for (int i = 0; i < c->reps && !rc; i++) {
            /* the bandwidth moves within seconds here: the run's roofline is the mean of a reading on each side */
            const double before = bw.pool ? bw_probe_read(&bw, 3) : 0;
            rc = run_test(s, toks, c->tg, 0, &v[i], &err);
            if (bw.pool) roofs[i] = (before + bw_probe_read(&bw, 3)) / 2 * 1e9 / bpt;
            if (!c->json) fprintf(stderr, "\rtg%d: run %d/%d %.2f tokens/s   ", c->tg, i + 1, c->reps, v[i]);
        }
        if (!c->json) fprintf(stderr, "\r%40s\r", "");
        char name[32];
        snprintf(name, sizeof name, "tg%d", c->tg);
        if (!rc) report(name, c, backend, v, c->reps, bw.pool ? roofs : NULL);
    }
    if (rc) fprintf(stderr, "ternlm: %s\n", err.message);
    bw_probe_close(&bw);
    free(roofs);
    free(v);
    free(toks);
    ternlm_session_free(s);
    return rc ? EXIT_RUNTIME : 0;
}

/* ---- multi-stream steps (what the server runs for S concurrent streams): S slots of one ternlm_batch each get one
 * new token per step, evaluated together, so the weights are read once per step for all S tokens ---- */

static int run_steps(ternlm_batch *b, int S, const int32_t *toks, int steps, double *step_ms, ternlm_error *err) {
    for (int q = 0; q < S; q++)
        if (ternlm_batch_seq_rewind(b, (uint32_t)q, 0, err)) return 1;
    const double t0 = now();
    for (int i = 0; i < steps; i++) {
        for (int q = 0; q < S; q++)
            if (ternlm_batch_add(b, (uint32_t)q, &toks[(i + 7 * q) % steps], 1, 1, err)) return 1;
        if (ternlm_batch_eval(b, err)) return 1;
    }
    *step_ms = (now() - t0) * 1e3 / steps;
    return 0;
}

static int bench_streams(ternlm_model *m, const bench_cfg *c, int S) {
    ternlm_batch_params bp = ternlm_batch_params_default();
    bp.n_ctx = (uint32_t)c->tg + 8;
    bp.n_threads = (uint32_t)c->threads;
    bp.n_seq = (uint32_t)S;
    ternlm_batch *b = NULL;
    ternlm_error err = {0};
    if (ternlm_batch_new(m, &bp, &b, &err)) {
        fprintf(stderr, "ternlm: %s\n", err.message);
        return EXIT_RUNTIME;
    }
    const uint32_t nv = ternlm_model_get_info(m)->n_vocab;
    int32_t *toks = malloc((size_t)c->tg * sizeof *toks);
    uint64_t r = 42;
    for (int i = 0; i < c->tg; i++) r = r * 6364136223846793005ull + 1, toks[i] = (int32_t)((r >> 33) % nv);
    double *ms = malloc((size_t)c->reps * sizeof *ms), tmp;
    int rc = run_steps(b, S, toks, c->tg < 4 ? c->tg : 4, &tmp, &err); /* warm-up: page in the weights */
    for (int i = 0; i < c->reps && !rc; i++) rc = run_steps(b, S, toks, c->tg, &ms[i], &err);
    if (!rc) {
        const double med = median(ms, c->reps);
        const int threads = (int)ternlm_batch_threads(b);
        if (c->json) {
            printf("{\"test\":\"streams\",\"streams\":%d,\"steps\":%d,\"threads\":%d,\"kernels\":\"%s\",\"head\":\"%s\","
                   "\"repack\":%s,\"median_step_ms\":%.3f,\"tokens_per_s\":%.3f,\"samples_step_ms\":[",
                   S, c->tg, threads, ternlm_batch_backend(b), c->head_type, c->repacked_mb > 0 ? "true" : "false", med,
                   S * 1e3 / med);
            for (int i = 0; i < c->reps; i++) printf("%s%.3f", i ? "," : "", ms[i]);
            printf("]}\n");
        } else {
            printf("streams %2d  %3d threads  %-7s  step median %8.2f ms  (%d steps, %d runs)  %8.2f tokens/s in all\n", S,
                   threads, ternlm_batch_backend(b), med, c->tg, c->reps, S * 1e3 / med);
        }
        fflush(stdout);
    } else {
        fprintf(stderr, "ternlm: %s\n", err.message);
    }
    free(ms);
    free(toks);
    ternlm_batch_free(b);
    return rc ? EXIT_RUNTIME : 0;
}

/* "1,2,4,8" -> counts (1..256 each); 0 on a malformed list. */
static int parse_streams(const char *list, int *out, int cap) {
    int n = 0;
    for (const char *p = list; *p && n < cap;) {
        char *end;
        const long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 256 || (*end && *end != ',')) return 0;
        out[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return n;
}

static void log_warnings(void *user, const char *msg) {
    (void)user;
    if (strncmp(msg, "warning", 7) == 0) fprintf(stderr, "ternlm: %s\n", msg);
}

/* The bench opens its model itself: it needs the load options that only it offers (int8 head, no repacking). */
static int open_bench_model(const char *path, const bench_cfg *c, ternlm_model **out) {
    ternlm_model_params mp = ternlm_model_params_default();
    mp.head_quant_q8_0 = c->head == 1;
    mp.head_quant_i8 = c->head == 2;
    mp.head_quant_i4 = c->head == 3;
    mp.no_repack = c->no_repack;
    mp.log = log_warnings;
    ternlm_error err = {0};
    if (ternlm_model_open_file(path, &mp, out, &err) == TERNLM_OK) return 0;
    fprintf(stderr, "ternlm: %s\n", err.message);
    return EXIT_RUNTIME;
}

int cmd_bench(int argc, char **argv) {
    bench_cfg c = {512, 128, 0, 5, 0, 0, 0, 0, 0, "", 0};
    const char *model = NULL, *head_quant = NULL, *streams = NULL;
    int tokenizer = 0, n_streams = 0, stream_counts[16];
    const opt opts[] = {
        {"--model", "-m", OPT_STR, &model, "GGUF model file"},
        {"--n-prompt", "-p", OPT_INT, &c.pp, "prompt tokens, evaluated as one batch (default 512; 0 skips)"},
        {"--n-gen", "-n", OPT_INT, &c.tg, "generated tokens, one at a time (default 128; 0 skips)"},
        {"--threads", "-t", OPT_INT, &c.threads, "threads (default: physical cores)"},
        {"--repetitions", "-r", OPT_INT, &c.reps, "repetitions per test (default 5)"},
        {"--json", NULL, OPT_FLAG, &c.json, "one JSON object per line and test"},
        {"--membw", NULL, OPT_FLAG, &c.membw, "measure memory bandwidth, and again before and after each generation run: the roofline and the fraction of it each run reached"},
        {"--head-quant", NULL, OPT_STR, &head_quant, "re-quantize an F16 head at load: q8_0, i8 (int8 rows) or i4 (int4 rows)"},
        {"--no-repack", NULL, OPT_FLAG, &c.no_repack, "keep weights in file layout (no 16-row group repacking)"},
        {"--gpu", NULL, OPT_FLAG, &c.gpu, "benchmark the GPU backend"},
        {"--tokenizer", NULL, OPT_FLAG, &tokenizer, "measure tokenizer MB/s on TEXT_FILE (1 MB) instead"},
        {"--streams", NULL, OPT_STR, &streams,
         "LIST (e.g. 1,2,4,8): instead, time steps of S streams (one new token each, batched) for each S, -n steps"},
        {0},
    };
    const cmd_spec spec = {"bench", "-m FILE [-p 512] [-n 128] [-t N] [-r REPS] [--json] [--membw] | --tokenizer -m FILE [TEXT_FILE]",
                           "Measure prompt processing (ppN) and generation (tgN) speed, llama-bench style.", opts, 1};
    const char *pos[1];
    int n_pos, rc = args_parse(&spec, argc, argv, pos, &n_pos);
    if (rc) return rc == ARGS_HELP ? 0 : rc;
    if (!model) {
        fprintf(stderr, "ternlm bench: -m FILE is required\n");
        return EXIT_USAGE;
    }
    if (c.pp < 0 || c.tg < 0 || c.reps < 1 || c.threads < 0 ||
        cli_head_quant(head_quant) < 0) {
        fprintf(stderr, "ternlm bench: -p/-n must be >= 0, -r >= 1, --head-quant %s\n", CLI_HEAD_QUANT_NAMES);
        return EXIT_USAGE;
    }
    if (streams && !(n_streams = parse_streams(streams, stream_counts, 16))) {
        fprintf(stderr, "ternlm bench: --streams takes a list of stream counts 1..256, e.g. 1,2,4,8\n");
        return EXIT_USAGE;
    }
    if (streams && c.tg < 1) {
        fprintf(stderr, "ternlm bench: --streams needs -n >= 1 (the steps per run)\n");
        return EXIT_USAGE;
    }
    c.head = cli_head_quant(head_quant);
    ternlm_model *m = NULL;
    if ((rc = open_bench_model(model, &c, &m))) return rc;
    c.head_type = ternlm_model_get_info(m)->head_type;
    c.repacked_mb = (double)ternlm_model_get_info(m)->repacked_bytes / 1e6;
    if (!c.json) {
        const ternlm_model_info *i = ternlm_model_get_info(m);
        printf("model %s: %s, %u layers, %s linears, %s head%s; CPU kernels %s\n", model, i->arch, i->n_layer,
               i->weight_type, i->head_type, c.head == 1 ? " (re-quantized)" : "", ternlm_cpu_kernels());
    }
    if (tokenizer) rc = bench_tokenizer(m, n_pos ? pos[0] : NULL, c.reps, c.json);
    else if (n_streams)
        for (int i = 0; i < n_streams && !rc; i++) rc = bench_streams(m, &c, stream_counts[i]);
    else rc = bench_model(m, &c);
    ternlm_model_free(m);
    return rc;
}
