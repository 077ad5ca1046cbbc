/* Sampler (../shared/specs/sampling.md §2): penalties -> top_k -> top_p -> min_p -> temperature -> dist,
 * with a PCG32 generator and our own exp so one seed gives the same tokens on every target.
 * This file is compiled with -ffp-contract=off. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mathx.h"
#include "platform.h"

typedef struct pcg32 {
    uint64_t state, inc;
} pcg32;

static uint32_t pcg32_next(pcg32 *r) {
    const uint64_t old = r->state;
    r->state = old * 6364136223846793005ull + r->inc;
    const uint32_t x = (uint32_t)(((old >> 18) ^ old) >> 27);
    const uint32_t rot = (uint32_t)(old >> 59);
    return (x >> rot) | (x << ((32 - rot) & 31));
}

static void pcg32_seed(pcg32 *r, uint64_t seed) {
    r->state = 0;
    r->inc = (54u << 1) | 1u;
    pcg32_next(r);
    r->state += seed;
    pcg32_next(r);
}

typedef struct cand {
    int32_t id;
    float logit;
} cand;

struct ternlm_sampler {
    ternlm_sampler_params p;
    uint32_t n_vocab;
    pcg32 rng;
    uint64_t seed;
    cand *c;
    float *work;
    int32_t *hist;      /* ring buffer of the last penalty_last_n tokens */
    uint32_t hist_len, hist_pos, hist_cap;
    uint16_t *counts;   /* scratch, per vocab id */
};

ternlm_sampler_params ternlm_sampler_params_default(void) {
    ternlm_sampler_params p = {0.8f, 40, 0.95f, 0.05f, 1.0f, 0.0f, 0.0f, 64, TERNLM_SEED_RANDOM};
    return p;
}

ternlm_status ternlm_sampler_new(const ternlm_sampler_params *params, uint32_t n_vocab, ternlm_sampler **out,
                                 ternlm_error *err) {
    if (!out || !n_vocab) return tl_fail(err, TERNLM_ERR_ARG, "out must not be NULL and n_vocab positive");
    ternlm_sampler_params p = params ? *params : ternlm_sampler_params_default();
    if (!isfinite(p.temperature))
        return tl_fail(err, TERNLM_ERR_ARG, "temperature must be a finite number (got %g)", (double)p.temperature);
    if (!(p.top_p > 0) || p.min_p != p.min_p /* NaN */ || !(p.repeat_penalty > 0) || !isfinite(p.repeat_penalty) ||
        !isfinite(p.frequency_penalty) || !isfinite(p.presence_penalty))
        return tl_fail(err, TERNLM_ERR_ARG,
                       "sampler parameters out of range (top_p must be > 0, repeat_penalty > 0, penalties finite)");
    ternlm_sampler *s = calloc(1, sizeof *s);
    if (!s) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    s->p = p;
    s->n_vocab = n_vocab;
    s->hist_cap = p.penalty_last_n > 0 ? (uint32_t)p.penalty_last_n : 0;
    s->c = malloc(n_vocab * sizeof *s->c);
    s->work = malloc(n_vocab * sizeof *s->work);
    s->counts = calloc(n_vocab, sizeof *s->counts);
    s->hist = malloc((s->hist_cap ? s->hist_cap : 1) * sizeof *s->hist);
    if (!s->c || !s->work || !s->counts || !s->hist) {
        ternlm_sampler_free(s);
        return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    }
    s->seed = p.seed == TERNLM_SEED_RANDOM ? tl_random_u64() : p.seed;
    pcg32_seed(&s->rng, s->seed);
    *out = s;
    return TERNLM_OK;
}

void ternlm_sampler_free(ternlm_sampler *s) {
    if (!s) return;
    free(s->c);
    free(s->work);
    free(s->counts);
    free(s->hist);
    free(s);
}

uint64_t ternlm_sampler_seed(const ternlm_sampler *s) { return s ? s->seed : 0; }

void ternlm_sampler_accept(ternlm_sampler *s, int32_t token) {
    if (!s || !s->hist_cap) return;
    s->hist[s->hist_pos] = token;
    s->hist_pos = (s->hist_pos + 1) % s->hist_cap;
    if (s->hist_len < s->hist_cap) s->hist_len++;
}

void ternlm_sampler_reset(ternlm_sampler *s) {
    if (s) s->hist_len = s->hist_pos = 0;
}

static void apply_penalties(ternlm_sampler *s, float *l) {
    const ternlm_sampler_params *p = &s->p;
    if (!s->hist_len || (p->repeat_penalty == 1.0f && p->frequency_penalty == 0.0f && p->presence_penalty == 0.0f))
        return;
    for (uint32_t i = 0; i < s->hist_len; i++) {
        const int32_t t = s->hist[i];
        if (t >= 0 && (uint32_t)t < s->n_vocab) s->counts[t]++;
    }
    for (uint32_t i = 0; i < s->hist_len; i++) {
        const int32_t t = s->hist[i];
        if (t < 0 || (uint32_t)t >= s->n_vocab || !s->counts[t]) continue;
        const float c = (float)s->counts[t];
        l[t] = l[t] <= 0 ? l[t] * p->repeat_penalty : l[t] / p->repeat_penalty;
        l[t] -= c * p->frequency_penalty + p->presence_penalty;
        s->counts[t] = 0; /* each distinct token once */
    }
}

/* Ordering of candidates: logit descending, then id ascending. */
static int better(const cand *a, const cand *b) { return a->logit > b->logit || (a->logit == b->logit && a->id < b->id); }

static int cmp_cand(const void *x, const void *y) {
    const cand *a = x, *b = y;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

/* The defined behaviour for non-finite logits (NaN weights reach them): NaN ranks below every number and is
 * never drawn unless everything is NaN or -inf; +inf becomes the largest float, so (l - max) stays a number. */
static float ranked(float x) { return x != x ? -INFINITY : x > FLT_MAX ? FLT_MAX : x; }

/* Sift the candidate at j down the min-heap c[0..k) (the root is the worst kept candidate). */
static void sift_down(cand *c, uint32_t k, uint32_t j) {
    for (;;) {
        uint32_t w = j;
        const uint32_t l = 2 * j + 1, r = l + 1;
        if (l < k && better(&c[w], &c[l])) w = l;
        if (r < k && better(&c[w], &c[r])) w = r;
        if (w == j) return;
        const cand t = c[j];
        c[j] = c[w];
        c[w] = t;
        j = w;
    }
}

/* The k best candidates of the n logits (ranked), sorted, into c: a min-heap of size k fed straight from the logits
 * (O(n log k), one read of the row; a 128k vocabulary is not copied or turned into candidates first). */
static uint32_t top_k(cand *c, const float *l, uint32_t n, uint32_t k) {
    if (k >= n) {
        for (uint32_t i = 0; i < n; i++) c[i] = (cand){(int32_t)i, ranked(l[i])};
        qsort(c, n, sizeof *c, cmp_cand);
        return n;
    }
    for (uint32_t i = 0; i < k; i++) {
        c[i] = (cand){(int32_t)i, ranked(l[i])};
        for (uint32_t j = i; j > 0 && better(&c[(j - 1) / 2], &c[j]);) {
            const cand t = c[j];
            c[j] = c[(j - 1) / 2];
            c[(j - 1) / 2] = t;
            j = (j - 1) / 2;
        }
    }
    for (uint32_t i = k; i < n; i++) {
        const float v = ranked(l[i]);
        if (v < c[0].logit) continue; /* the common case, decided without building the candidate */
        const cand x = {(int32_t)i, v};
        if (!better(&x, &c[0])) continue;
        c[0] = x;
        sift_down(c, k, 0);
    }
    qsort(c, k, sizeof *c, cmp_cand);
    return k;
}

static int penalties_apply(const ternlm_sampler *s) {
    const ternlm_sampler_params *p = &s->p;
    return s->hist_len && (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
}

int32_t ternlm_sampler_sample(ternlm_sampler *s, const float *logits) {
    if (!s || !logits) return -1;
    const ternlm_sampler_params *p = &s->p;
    const float *l = logits;
    if (penalties_apply(s)) { /* only then a copy to change */
        memcpy(s->work, logits, s->n_vocab * sizeof *s->work);
        apply_penalties(s, s->work);
        l = s->work;
    }

    if (p->temperature <= 0 || p->top_k == 1) { /* greedy: no RNG draw */
        uint32_t best = 0;
        float best_v = ranked(l[0]);
        for (uint32_t i = 1; i < s->n_vocab; i++) {
            const float v = ranked(l[i]);
            if (v > best_v) best = i, best_v = v;
        }
        return (int32_t)best;
    }
    uint32_t n = top_k(s->c, l, s->n_vocab, p->top_k > 0 ? (uint32_t)p->top_k : s->n_vocab);
    if (s->c[0].logit == -INFINITY) return s->c[0].id; /* nothing is possible: the lowest id, without a draw */

    if (p->top_p < 1.0f) {
        const double m = s->c[0].logit;
        double z = 0;
        for (uint32_t i = 0; i < n; i++) z += tl_exp((double)s->c[i].logit - m);
        double cum = 0;
        for (uint32_t i = 0; i < n; i++) {
            cum += tl_exp((double)s->c[i].logit - m) / z;
            if (cum >= (double)p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0) {
        const double m = s->c[0].logit;
        uint32_t keep = 1;
        while (keep < n && tl_exp((double)s->c[keep].logit - m) >= (double)p->min_p) keep++;
        n = keep;
    }
    /* temperature, then one draw: first candidate whose running weight exceeds u * Z */
    const double inv_t = 1.0 / (double)p->temperature, m = (double)s->c[0].logit * inv_t;
    double z = 0;
    for (uint32_t i = 0; i < n; i++) z += tl_exp((double)s->c[i].logit * inv_t - m);
    const double u = (double)pcg32_next(&s->rng) * (1.0 / 4294967296.0);
    double cum = 0;
    for (uint32_t i = 0; i < n; i++) {
        cum += tl_exp((double)s->c[i].logit * inv_t - m);
        if (cum > u * z) return s->c[i].id;
    }
    return s->c[n - 1].id;
}

/* Exposed for tests: the first outputs of PCG32 for a seed. */
void tl_pcg32_sequence(uint64_t seed, uint32_t *out, int n) {
    pcg32 r;
    pcg32_seed(&r, seed);
    for (int i = 0; i < n; i++) out[i] = pcg32_next(&r);
}
