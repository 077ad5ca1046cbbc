/* ternlm perplexity: perplexity of a text file, and KL divergence against base log-probabilities saved in
 * llama-perplexity's file format, so a model file can be compared across ternlm, llama.cpp and bitnet.cpp.
 *
 * Method (llama-perplexity's): tokenize the text with BOS as the metadata says, cut it into chunks of n_ctx tokens
 * (the first token of each chunk becomes BOS when the model adds one), evaluate each chunk from an empty cache and
 * score the tokens of its second half: positions n_ctx/2 .. n_ctx-2 predict tokens n_ctx/2+1 .. n_ctx-1.
 *
 * Base-logits file (little-endian): "_logits_", int32 n_ctx, int32 n_vocab, int32 n_chunk, int32 tokens[n_chunk·n_ctx],
 * then per chunk and scored position one record of nv = 2·((n_vocab+1)/2) + 4 uint16: two floats (scale, min_log_prob)
 * and n_vocab codes u with log p = scale·u + min_log_prob (u = 0 at or below max_logit − 16). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "ternlm.h"

typedef struct ppl_opts {
    const char *model, *text, *kld_base, *pre, *head_quant;
    int n_ctx, threads, chunks, kld;
} ppl_opts;

typedef struct stats {
    double nll, nll2, nll_base, kld, kld2, kld_max, dp2;
    size_t count, same_top;
} stats;

/* ---- the base-logits record of one position ---- */

static int record_len(int n_vocab) { return 2 * ((n_vocab + 1) / 2) + 4; }

/* Round to nearest, ties to even (|v| < 2^22), the way the format's writer rounds. */
static int nearest(float v) {
    const float t = v + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &t, 4);
    return (bits & 0x7FFFFF) - 0x400000;
}

/* max logit, its index and log Σ exp(l − max) of one row. */
static float log_sum_exp(const float *l, int n, float *max_out, int *imax_out) {
    float max = l[0];
    int imax = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > max) max = l[i], imax = i;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += expf(l[i] - max);
    *max_out = max;
    if (imax_out) *imax_out = imax;
    return (float)log(sum);
}

/* Encodes a row as a record; returns the negative log-likelihood of tok. */
static double encode_record(const float *l, int n, int tok, uint16_t *rec) {
    float max, min = l[0];
    const float lse = log_sum_exp(l, n, &max, NULL);
    for (int i = 1; i < n; i++) min = l[i] < min ? l[i] : min;
    if (min < max - 16) min = max - 16;
    const float min_log_prob = min - max - lse, scale = (max - min) / 65535.0f;
    memcpy(rec, &scale, 4);
    memcpy(rec + 2, &min_log_prob, 4);
    uint16_t *u = rec + 4;
    memset(u, 0, (size_t)(record_len(n) - 4) * 2);
    if (scale != 0.0f) {
        const float inv = 1.0f / scale;
        for (int i = 0; i < n; i++) u[i] = l[i] > min ? (uint16_t)nearest(inv * (l[i] - min)) : 0;
    }
    return (double)(max + lse - l[tok]);
}

/* Scores a row against a base record: KL(base || this), the base's NLL and whether the top tokens agree. */
static void compare_record(const float *l, int n, int tok, const uint16_t *rec, stats *st) {
    float max;
    int imax;
    const float lse = log_sum_exp(l, n, &max, &imax);
    float scale, min_log_prob;
    memcpy(&scale, rec, 4);
    memcpy(&min_log_prob, rec + 2, 4);
    const uint16_t *u = rec + 4;
    const float norm = max + lse;
    double kld = 0;
    int ibase = 0;
    float base_max = 0;
    for (int i = 0; i < n; i++) {
        const float lp_base = scale * (float)u[i] + min_log_prob;
        if (i == 0 || lp_base > base_max) base_max = lp_base, ibase = i;
        if (lp_base > -16.0f) kld += (double)expf(lp_base) * (double)(lp_base - (l[i] - norm));
    }
    const double nll = (double)(norm - l[tok]), nll_base = -(double)(scale * (float)u[tok] + min_log_prob);
    const double dp = exp(-nll) - exp(-nll_base);
    st->nll += nll;
    st->nll2 += nll * nll;
    st->nll_base += nll_base;
    st->kld += kld;
    st->kld2 += kld * kld;
    st->kld_max = kld > st->kld_max ? kld : st->kld_max;
    st->dp2 += dp * dp;
    st->same_top += imax == ibase;
    st->count++;
}

/* ---- input: the text's tokens, or the base file's ---- */

static int tokenize_text(const ternlm_model *m, const char *path, int32_t **ids, size_t *n) {
    size_t len;
    char *text = cli_read_all(path, &len);
    if (!text) return EXIT_RUNTIME;
    *ids = malloc((len + 2) * sizeof **ids);
    ternlm_error err = {0};
    const int bad = !*ids || ternlm_tokenize(m, text, len, TERNLM_TOKENIZE_ADD_SPECIAL, *ids, len + 2, n, &err);
    free(text);
    if (bad) fprintf(stderr, "ternlm perplexity: %s: %s\n", path, *ids ? err.message : "out of memory");
    return bad ? EXIT_RUNTIME : 0;
}

typedef struct base_file {
    FILE *f;
    int32_t n_ctx, n_vocab, n_chunk;
} base_file;

/* Reads and checks the header and tokens of a base file; the records follow at the file position. */
static int open_base(const char *path, const ternlm_model *m, base_file *b, int32_t **ids, size_t *n) {
    b->f = fopen(path, "rb");
    if (!b->f) {
        fprintf(stderr, "ternlm perplexity: cannot open %s\n", path);
        return EXIT_RUNTIME;
    }
    char magic[8];
    int32_t h[3];
    if (fread(magic, 1, 8, b->f) != 8 || memcmp(magic, "_logits_", 8) || fread(h, 4, 3, b->f) != 3) {
        fprintf(stderr, "ternlm perplexity: %s is not a llama-perplexity base-logits file (no '_logits_' header)\n", path);
        return EXIT_RUNTIME;
    }
    b->n_ctx = h[0], b->n_vocab = h[1], b->n_chunk = h[2];
    const uint32_t nv = ternlm_model_get_info(m)->n_vocab;
    if (b->n_ctx < 4 || b->n_ctx > 1 << 20 || b->n_chunk < 1 || b->n_chunk > (1 << 28) / b->n_ctx) {
        fprintf(stderr, "ternlm perplexity: %s: implausible header (n_ctx %d, %d chunks)\n", path, b->n_ctx, b->n_chunk);
        return EXIT_RUNTIME;
    }
    if ((uint32_t)b->n_vocab != nv) {
        fprintf(stderr, "ternlm perplexity: %s was written for a vocabulary of %d tokens; this model has %u\n", path,
                b->n_vocab, nv);
        return EXIT_RUNTIME;
    }
    *n = (size_t)b->n_ctx * (size_t)b->n_chunk;
    *ids = malloc(*n * sizeof **ids);
    if (!*ids || fread(*ids, 4, *n, b->f) != *n) {
        fprintf(stderr, "ternlm perplexity: %s: truncated token list\n", path);
        return EXIT_RUNTIME;
    }
    for (size_t i = 0; i < *n; i++)
        if ((*ids)[i] < 0 || (uint32_t)(*ids)[i] >= nv) {
            fprintf(stderr, "ternlm perplexity: %s: token %zu is %d, outside the vocabulary\n", path, i, (*ids)[i]);
            return EXIT_RUNTIME;
        }
    return 0;
}

/* ---- the run ---- */

static void print_summary(const stats *st, int kld) {
    const double mean = st->nll / (double)st->count, ppl = exp(mean);
    double var = st->nll2 / (double)st->count - mean * mean;
    var = var > 0 && st->count > 1 ? sqrt(var / (double)(st->count - 1)) : 0;
    printf("Final estimate: PPL = %.4f +/- %.5f  (%zu tokens scored)\n", ppl, var * ppl, st->count);
    if (!kld) return;
    const double k = st->kld / (double)st->count;
    double kvar = st->kld2 / (double)st->count - k * k;
    kvar = kvar > 0 && st->count > 1 ? sqrt(kvar / (double)(st->count - 1)) : 0;
    printf("Mean PPL(Q)    : %.6f\n", ppl);
    printf("Mean PPL(base) : %.6f\n", exp(st->nll_base / (double)st->count));
    printf("Mean    KLD    : %.6f +/- %.6f\n", k, kvar);
    printf("Maximum KLD    : %.6f\n", st->kld_max);
    printf("RMS Δp         : %.3f %%\n", 100.0 * sqrt(st->dp2 / (double)st->count));
    printf("Same top p     : %.3f %%\n", 100.0 * (double)st->same_top / (double)st->count);
}

/* Evaluates one chunk and returns the logits of positions first .. n_ctx-1 (row 0 = position first). */
static const float *eval_chunk(ternlm_session *s, const int32_t *chunk, int n_ctx, int first, ternlm_error *err) {
    if (ternlm_session_rewind(s, 0, err) || ternlm_session_eval(s, chunk, (size_t)first, TERNLM_LOGITS_NONE, err) ||
        ternlm_session_eval(s, chunk + first, (size_t)(n_ctx - first), TERNLM_LOGITS_ALL, err))
        return NULL;
    return ternlm_session_logits(s, 0);
}

static int run_chunks(const ppl_opts *o, ternlm_model *m, ternlm_session *s, const int32_t *ids, int n_chunk,
                      base_file *base, FILE *out) {
    const ternlm_model_info *info = ternlm_model_get_info(m);
    const int n_vocab = (int)info->n_vocab, n_ctx = o->n_ctx, first = n_ctx / 2, nv = record_len(n_vocab);
    int32_t *chunk = malloc((size_t)n_ctx * sizeof *chunk);
    uint16_t *rec = malloc((size_t)nv * 2);
    stats st = {0};
    int rc = chunk && rec ? 0 : EXIT_RUNTIME;
    for (int c = 0; c < n_chunk && !rc; c++) {
        const int32_t *orig = ids + (size_t)c * n_ctx;
        memcpy(chunk, orig, (size_t)n_ctx * sizeof *chunk);
        if (info->add_bos && info->bos >= 0) chunk[0] = info->bos;
        ternlm_error err = {0};
        const float *logits = eval_chunk(s, chunk, n_ctx, first, &err);
        if (!logits) {
            fprintf(stderr, "ternlm perplexity: chunk %d: %s\n", c + 1, err.message);
            rc = EXIT_RUNTIME;
            break;
        }
        for (int j = first; j < n_ctx - 1 && !rc; j++) {
            const float *row = logits + (size_t)(j - first) * (size_t)n_vocab;
            if (o->kld) {
                if (fread(rec, 2, (size_t)nv, base->f) != (size_t)nv) {
                    fprintf(stderr, "ternlm perplexity: %s: the records end in chunk %d\n", o->kld_base, c + 1);
                    rc = EXIT_RUNTIME;
                    break;
                }
                compare_record(row, n_vocab, orig[j + 1], rec, &st);
            } else {
                const double nll = encode_record(row, n_vocab, orig[j + 1], rec);
                st.nll += nll, st.nll2 += nll * nll, st.count++;
                if (out && fwrite(rec, 2, (size_t)nv, out) != (size_t)nv) {
                    fprintf(stderr, "ternlm perplexity: writing %s failed\n", o->kld_base);
                    rc = EXIT_RUNTIME;
                }
            }
        }
        if (!rc) fprintf(stderr, "[%d]%.4f,", c + 1, exp(st.nll / (double)st.count));
    }
    fprintf(stderr, "\n");
    if (!rc) print_summary(&st, o->kld);
    free(chunk);
    free(rec);
    return rc;
}

static int write_header(FILE *out, int n_ctx, int n_vocab, int n_chunk, const int32_t *ids) {
    const int32_t h[3] = {n_ctx, n_vocab, n_chunk};
    const size_t n = (size_t)n_ctx * (size_t)n_chunk;
    return fwrite("_logits_", 1, 8, out) == 8 && fwrite(h, 4, 3, out) == 3 && fwrite(ids, 4, n, out) == n;
}

static int perplexity(ppl_opts *o, ternlm_model *m) {
    int32_t *ids = NULL;
    size_t n = 0;
    base_file base = {0};
    FILE *out = NULL;
    int rc = o->kld ? open_base(o->kld_base, m, &base, &ids, &n) : tokenize_text(m, o->text, &ids, &n);
    if (!rc && o->kld && o->n_ctx != base.n_ctx) {
        fprintf(stderr, "ternlm perplexity: using the base file's context of %d\n", base.n_ctx);
        o->n_ctx = base.n_ctx;
    }
    const int n_chunk_max = rc ? 0 : (int)(n / (size_t)o->n_ctx);
    const int n_chunk = o->chunks > 0 && o->chunks < n_chunk_max ? o->chunks : n_chunk_max;
    if (!rc && !o->kld && n < 2 * (size_t)o->n_ctx) {
        fprintf(stderr, "ternlm perplexity: %s has %zu tokens; a context of %d needs at least %d\n", o->text, n, o->n_ctx,
                2 * o->n_ctx);
        rc = EXIT_RUNTIME;
    }
    ternlm_session *s = NULL;
    ternlm_error err = {0};
    ternlm_session_params sp = ternlm_session_params_default();
    sp.n_ctx = (uint32_t)o->n_ctx;
    sp.n_threads = (uint32_t)o->threads;
    if (!rc && (ternlm_session_new(m, &sp, &s, &err) || ternlm_session_n_ctx(s) < (uint32_t)o->n_ctx)) {
        fprintf(stderr, "ternlm perplexity: %s\n", s ? "the model's context is shorter than -c" : err.message);
        rc = EXIT_RUNTIME;
    }
    if (!rc && o->kld_base && !o->kld) {
        out = fopen(o->kld_base, "wb");
        if (!out || !write_header(out, o->n_ctx, (int)ternlm_model_get_info(m)->n_vocab, n_chunk, ids)) {
            fprintf(stderr, "ternlm perplexity: cannot write %s\n", o->kld_base);
            rc = EXIT_RUNTIME;
        }
    }
    if (!rc) {
        fprintf(stderr, "perplexity: %d chunks of %d tokens (%s), scoring positions %d..%d of each\n", n_chunk, o->n_ctx,
                ternlm_session_backend(s), o->n_ctx / 2, o->n_ctx - 2);
        rc = run_chunks(o, m, s, ids, n_chunk, &base, out);
    }
    if (out && fclose(out) && !rc) {
        fprintf(stderr, "ternlm perplexity: writing %s failed\n", o->kld_base);
        rc = EXIT_RUNTIME;
    }
    if (base.f) fclose(base.f);
    ternlm_session_free(s);
    free(ids);
    return rc;
}

int cmd_perplexity(int argc, char **argv) {
    ppl_opts o = {NULL, NULL, NULL, NULL, NULL, 512, 0, 0, 0};
    const opt opts[] = {
        {"--model", "-m", OPT_STR, &o.model, "GGUF file (default: the embedded model)"},
        {"--file", "-f", OPT_STR, &o.text, "the text to score (UTF-8)"},
        {"--ctx-size", "-c", OPT_INT, &o.n_ctx, "tokens per chunk (default 512); the second half of each is scored"},
        {"--threads", "-t", OPT_INT, &o.threads, "CPU threads (default: the physical cores)"},
        {"--chunks", NULL, OPT_INT, &o.chunks, "score at most this many chunks"},
        {"--kl-divergence-base", NULL, OPT_STR, &o.kld_base,
         "without --kl-divergence: save the log-probabilities here (llama-perplexity's format); with it: read them"},
        {"--kl-divergence", NULL, OPT_FLAG, &o.kld, "compare with --kl-divergence-base FILE (its tokens; -f is not needed)"},
        {"--pre", NULL, OPT_STR, &o.pre, "pre-tokenizer override: llama3, qwen2, gpt2 or default"},
        {"--head-quant", NULL, OPT_STR, &o.head_quant, "re-quantize an F16 head at load: q8_0, i8 or i4 (its cost in KL divergence)"},
        {0},
    };
    const cmd_spec spec = {"perplexity", "[-m FILE] -f TEXT [-c 512] [--kl-divergence-base FILE [--kl-divergence]]",
                           "Perplexity over a text the way llama-perplexity computes it, and KL divergence against a base "
                           "model's saved log-probabilities (from ternlm, llama.cpp or bitnet.cpp).",
                           opts, 0};
    const char *pos[1];
    int n_pos, rc = args_parse(&spec, argc, argv, pos, &n_pos);
    if (rc) return rc == ARGS_HELP ? 0 : rc;
    if ((!o.kld && !o.text) || (o.kld && !o.kld_base)) {
        fprintf(stderr, "ternlm perplexity: -f TEXT is required (or --kl-divergence with --kl-divergence-base FILE)\n");
        return EXIT_USAGE;
    }
    if (o.n_ctx < 8 || o.n_ctx > 1 << 20 || o.threads < 0 || o.chunks < 0 || cli_head_quant(o.head_quant) < 0) {
        fprintf(stderr, "ternlm perplexity: -c must be 8..1048576, -t and --chunks not negative, --head-quant %s\n",
                CLI_HEAD_QUANT_NAMES);
        return EXIT_USAGE;
    }
    if ((rc = cli_check_kernels_env())) return rc;
    ternlm_model *m = NULL;
    if ((rc = cli_open_model(o.model, o.pre, cli_head_quant(o.head_quant), NULL, 0, &m))) return rc;
    rc = perplexity(&o, m);
    ternlm_model_free(m);
    return rc;
}
