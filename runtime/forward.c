/* The forward pass and the session (KV cache + scratch). Read it top to bottom: a batch of tokens goes
 * through embedding, every layer (attention, then the feed-forward block) and the LM head.
 * Arithmetic follows ../shared/specs/bitnet-architectures.md §4 and quant-formats.md §9. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../simd/kernels.h"
#include "../simd/lanes.h"
#include "mathx.h"
#include "model.h"
#include "session.h"
#include "tensor_types.h"
#include "threads.h"

#define UBATCH TL_UBATCH /* tokens processed together; bounds the scratch memory */

/* ------------------------------------------------------------------------------------------------
 * Small building blocks
 * --------------------------------------------------------------------------------------------- */

/* ggml's RMSNorm: sum of squares in double (over TL_NORM_LANES lanes, see lanes.h), then x * (1/sqrt(mean + eps)),
 * then times the weight. The sum walks whole rows of lanes (the same additions as one element at a time) so that
 * it vectorizes. */
static void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    double l[TL_NORM_LANES] = {0};
    int64_t i = 0;
    for (; i + TL_NORM_LANES <= n; i += TL_NORM_LANES)
        for (int j = 0; j < TL_NORM_LANES; j++) l[j] += (double)(x[i + j] * x[i + j]);
    for (; i < n; i++) l[i % TL_NORM_LANES] += (double)(x[i] * x[i]);
    const float mean = (float)(tl_lanes_fold_d(l, TL_NORM_LANES) / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (i = 0; i < n; i++) out[i] = (x[i] * scale) * w[i];
}

/* tl_f32_to_f16 over a row: the normal-range rule without branches (it vectorizes), then the library function for
 * the rare values outside it (subnormal results, overflow, inf, NaN), so every value gets the same bits. */
static void f32_to_f16_row(uint16_t *dst, const float *src, int64_t n) {
    uint32_t outside = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t x;
        memcpy(&x, &src[i], 4);
        const uint32_t ax = x & 0x7FFFFFFFu;
        uint32_t v = ((ax >> 23) - 112) << 10 | ((ax >> 13) & 0x3FF);
        const uint32_t rem = ax & 0x1FFF;
        v += (uint32_t)(rem > 0x1000) | ((uint32_t)(rem == 0x1000) & v);
        dst[i] = (uint16_t)(((x >> 16) & 0x8000) | (v & 0xFFFF));
        outside |= (uint32_t)(ax - 0x38800000u >= 0x477FF000u - 0x38800000u);
    }
    if (outside)
        for (int64_t i = 0; i < n; i++) {
            uint32_t x;
            memcpy(&x, &src[i], 4);
            if ((x & 0x7FFFFFFFu) - 0x38800000u >= 0x477FF000u - 0x38800000u) dst[i] = tl_f32_to_f16(src[i]);
        }
}

/* tl_f16_to_f32 over a row, the same split: normal halves without branches, the others through the function. */
static void f16_to_f32_row(float *dst, const uint16_t *src, int64_t n) {
    uint32_t outside = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint32_t h = src[i], e = (h >> 10) & 0x1F;
        const uint32_t b = (h & 0x8000u) << 16 | (((h >> 10) & 0x1F) + 112) << 23 | (h & 0x3FFu) << 13;
        memcpy(&dst[i], &b, 4);
        outside |= (uint32_t)(e - 1 >= 30);
    }
    if (outside)
        for (int64_t i = 0; i < n; i++)
            if ((uint32_t)((src[i] >> 10) & 0x1F) - 1 >= 30) dst[i] = tl_f16_to_f32(src[i]);
}

/* cos/sin of theta_i = pos * base^(-2i/n_rot), theta built by repeated f32 multiplication as ggml does. */
void tl_rope_table(float *cs, uint32_t pos, const tl_hparams *h, const float *freq_factors) {
    const float theta_scale = tl_powf(h->rope_base, -2.0f / (float)h->n_rot);
    float theta = (float)pos;
    for (uint32_t i = 0; i < h->n_rot / 2; i++) {
        const float t = freq_factors ? theta / freq_factors[i] : theta;
        double s, c;
        tl_sincos((double)t, &s, &c);
        cs[2 * i] = (float)c;
        cs[2 * i + 1] = (float)s;
        theta *= theta_scale;
    }
}

/* Rotate each head's pairs: NEOX pairs (i, i + n/2), NORM pairs (2i, 2i + 1). */
static void rope(float *v, int n_heads, const tl_hparams *h, const float *cs) {
    const uint32_t half = h->n_rot / 2;
    for (int hh = 0; hh < n_heads; hh++) {
        float *x = v + (int64_t)hh * h->head_dim;
        for (uint32_t i = 0; i < half; i++) {
            const uint32_t a = h->rope == TL_ROPE_NEOX ? i : 2 * i, b = h->rope == TL_ROPE_NEOX ? i + half : 2 * i + 1;
            const float c = cs[2 * i], s = cs[2 * i + 1], x0 = x[a], x1 = x[b];
            x[a] = x0 * c - x1 * s;
            x[b] = x0 * s + x1 * c;
        }
    }
}

/* qwen3: RMSNorm of each head's vector (head_dim wide) of n_vecs contiguous heads, before RoPE. */
static void per_head_rmsnorm(float *v, int64_t n_vecs, const float *w, const tl_hparams *h) {
    for (int64_t i = 0; i < n_vecs; i++) rmsnorm(v + i * h->head_dim, v + i * h->head_dim, w, h->head_dim, h->eps);
}

/* One loop per activation, without a branch per element (the ReLU² loop vectorizes). */
static void ffn_activation(float *g, const float *u, int64_t n, enum tl_act act) {
    if (act == TL_ACT_RELU2)
        for (int64_t i = 0; i < n; i++) {
            /* max(x, 0) by its bits (x > 0 is 0 < bits <= +inf as an int), so that the loop has no branch */
            uint32_t b;
            memcpy(&b, &g[i], 4);
            b &= 0u - ((uint32_t)((int32_t)b > 0) & (uint32_t)(b <= 0x7F800000u));
            float r;
            memcpy(&r, &b, 4);
            g[i] = (r * r) * u[i];
        }
    else
        for (int64_t i = 0; i < n; i++) {
            const float x = g[i];
            g[i] = (x / (1.0f + tl_expf(-x))) * u[i];
        }
}

/* Per-token steps (norms, RoPE, residuals, activations) run on the pool, each thread a contiguous range of the
 * batch's tokens; a token's arithmetic never depends on the split, so every thread count gives the same bits.
 * One token stays on the caller: a pool round trip costs more than its few thousand floats. */
typedef void (*token_fn)(ternlm_session *s, const void *ctx, int t);

typedef struct token_job {
    ternlm_session *s;
    const void *ctx;
    token_fn fn;
    int T;
} token_job;

static void token_task(void *c, int ith, int nth) {
    const token_job *j = c;
    for (int t = j->T * ith / nth; t < j->T * (ith + 1) / nth; t++) j->fn(j->s, j->ctx, t);
}

static void for_each_token(ternlm_session *s, int T, token_fn fn, const void *ctx) {
    if (T == 1) {
        fn(s, ctx, 0);
        return;
    }
    token_job job = {s, ctx, fn, T};
    tl_pool_run(s->pool, token_task, &job);
}

/* ------------------------------------------------------------------------------------------------
 * Linear layers: y[t] = W x[t] for the weight's type, rows split across threads.
 * An `act` caches the quantized forms of one input so q/k/v (and gate/up) quantize it once.
 * --------------------------------------------------------------------------------------------- */

typedef struct act {
    const float *x;
    int T;
    int64_t n;
    int have_i8, have_q8k, have_q8_0, have_f16r;
    int have_q8_0x; /* x86-rule Q8_0 for Q1_0/Q2_0 (shares the q80 buffer with have_q8_0) */
} act;

static void act_init(act *a, const float *x, int T, int64_t n) {
    memset(a, 0, sizeof *a);
    a->x = x;
    a->T = T;
    a->n = n;
}

/* Quantizing a batch's tokens is split across the pool (token t on thread t % nth); one token stays on the caller. */
typedef struct quant_job {
    ternlm_session *s;
    const act *a;
    int q8k;
} quant_job;

static void quant_token(ternlm_session *s, const act *a, int q8k, int t) {
    if (q8k) s->kern->quantize_q8k(a->x + t * a->n, a->n, s->q8k + t * (a->n / 256));
    else s->kern->quantize_i8(a->x + t * a->n, a->n, s->qa + t * a->n, &s->qa_scale[t], &s->qa_sum[t]);
}

static void quant_task(void *ctx, int ith, int nth) {
    const quant_job *j = ctx;
    for (int t = ith; t < j->a->T; t += nth) quant_token(j->s, j->a, j->q8k, t);
}

static void quantize_tokens(ternlm_session *s, const act *a, int q8k) {
    quant_job job = {s, a, q8k};
    if (a->T == 1) quant_token(s, a, q8k, 0);
    else tl_pool_run(s->pool, quant_task, &job);
}

static void act_prepare(ternlm_session *s, act *a, const tl_weight *w) {
    const uint32_t type = w->r16.drow ? TL_I2_S : w->type; /* the int8 head takes the I2_S activations */
    if (type == TL_I2_S && !a->have_i8) {
        quantize_tokens(s, a, 0);
        a->have_i8 = 1;
    } else if ((type == TL_TQ1_0 || type == TL_TQ2_0) && !a->have_q8k) {
        quantize_tokens(s, a, 1);
        a->have_q8k = 1;
    } else if (type == TL_Q8_0 && !a->have_q8_0) {
        for (int t = 0; t < a->T; t++) tl_quantize_q8_0(a->x + t * a->n, a->n, s->q80 + t * (a->n / 32 * 34));
        a->have_q8_0 = 1;
        a->have_q8_0x = 0;
    } else if ((type == TL_Q1_0 || type == TL_Q2_0) && !a->have_q8_0x) {
        for (int t = 0; t < a->T; t++) tl_quantize_q8_0_x86(a->x + t * a->n, a->n, s->q80 + t * (a->n / 32 * 34));
        a->have_q8_0x = 1;
        a->have_q8_0 = 0;
    } else if (type == TL_F16 && s->m->hp.head_input_f16 && !a->have_f16r) {
        /* llama.cpp multiplies F16 weights by an f16 copy of the activations */
        for (int64_t i = 0; i < a->T * a->n; i++) s->f16r[i] = tl_round_f16(a->x[i]);
        a->have_f16r = 1;
    }
}

typedef struct linear_job {
    ternlm_session *s;
    const tl_weight *w;
    const act *a;
    float *y;
    int64_t y_stride;
    int64_t chunk_rows; /* a multiple of 16 */
} linear_job;

static void linear_rows_i2s(const linear_job *j, int64_t r0, int64_t r1) {
    ternlm_session *s = j->s;
    const tl_weight *w = j->w;
    const act *a = j->a;
    int32_t *acc = s->acc;
    s->kern->i2s_gemm(w->data, w->ne0, r0, r1, s->qa, a->T, acc, w->ne1);
    for (int t = 0; t < a->T; t++) {
        const float sc = s->qa_scale[t], sq = (float)s->qa_sum[t];
        for (int64_t r = r0; r < r1; r++)
            j->y[t * j->y_stride + r] = (((float)acc[(int64_t)t * w->ne1 + r] - sq) / sc) * w->i2s_scale;
    }
}

static void linear_rows_other(const linear_job *j, int64_t r0, int64_t r1, float *tmp) {
    ternlm_session *s = j->s;
    const tl_kernels *k = s->kern;
    const tl_weight *w = j->w;
    const act *a = j->a;
    const int64_t n = w->ne0;
    if (w->type == TL_F16 && k->gemm_f16) { /* rows × tokens: the head is read once per step, not once per token */
        k->gemm_f16((const uint16_t *)(const void *)w->data, n, r0, r1, a->have_f16r ? s->f16r : a->x, a->T, j->y,
                    j->y_stride);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w->data + (uint64_t)r * w->row_bytes;
        if (w->type != TL_F32 && w->type != TL_F16 && w->type != TL_TQ1_0 && w->type != TL_TQ2_0 && w->type != TL_Q8_0 &&
            w->type != TL_Q1_0 && w->type != TL_Q2_0)
            tl_dequant_row(w->type, row, tmp, n, 0);
        for (int t = 0; t < a->T; t++) {
            float v;
            switch (w->type) {
            case TL_F32: v = k->dot_f32((const float *)(const void *)row, a->x + t * n, n); break;
            case TL_F16:
                v = k->dot_f16((const uint16_t *)(const void *)row, (a->have_f16r ? s->f16r : a->x) + t * n, n);
                break;
            case TL_TQ2_0: v = k->dot_tq2(row, s->q8k + t * (n / 256), n); break;
            case TL_TQ1_0: v = k->dot_tq1(row, s->q8k + t * (n / 256), n); break;
            case TL_Q8_0: v = k->dot_q8_0(row, s->q80 + t * (n / 32 * 34), n); break;
            case TL_Q1_0: v = k->dot_q1_0(row, s->q80 + t * (n / 32 * 34), n); break;
            case TL_Q2_0: v = k->dot_q2_0(row, s->q80 + t * (n / 32 * 34), n); break;
            default: v = k->dot_f32(tmp, a->x + t * n, n); break;
            }
            j->y[t * j->y_stride + r] = v;
        }
    }
}

/* Weights repacked at load (16-row groups): one GEMM call writes finished outputs. A kernel path without its own
 * GEMM for the layout (the session may run another path than the one the model was repacked for) uses the
 * scalar table's, which gives the same bits. */
static void linear_rows_r16(const linear_job *j, int64_t r0, int64_t r1) {
    const ternlm_session *s = j->s;
    const tl_weight *w = j->w;
    const tl_kernels *k = s->kern, *ref = tl_kernels_scalar();
    const tl_acts acts = {j->a->T, w->ne0, s->qa, s->qa_scale, s->qa_sum, s->q8k};
    if (w->r16.sub) (k->gemm_i4_r16 ? k->gemm_i4_r16 : ref->gemm_i4_r16)(&w->r16, r0, r1, &acts, j->y, j->y_stride);
    else if (w->r16.drow) (k->gemm_i8_r16 ? k->gemm_i8_r16 : ref->gemm_i8_r16)(&w->r16, r0, r1, &acts, j->y, j->y_stride);
    else if (w->type == TL_I2_S)
        (k->gemm_i2s_r16 ? k->gemm_i2s_r16 : ref->gemm_i2s_r16)(&w->r16, r0, r1, &acts, j->y, j->y_stride);
    else (k->gemm_tq_r16 ? k->gemm_tq_r16 : ref->gemm_tq_r16)(&w->r16, r0, r1, &acts, j->y, j->y_stride);
}

/* Rows go out in chunks of whole 16-row groups, about this many per thread: enough that the others take over
 * the share of a thread that is preempted or meets slower rows (a static split left ~0.5-0.9 ms per step at the
 * join), few enough that each GEMM call still streams a long run of weights. Every output row is computed by
 * one call whatever the split, so the bits do not depend on it. */
#define LINEAR_CHUNKS_PER_THREAD 4

static void linear_chunk(void *ctx, long c, int ith) {
    const linear_job *j = ctx;
    const int64_t r0 = (int64_t)c * j->chunk_rows, r1 = TL_MIN(j->w->ne1, r0 + j->chunk_rows);
    if (r0 >= r1) return;
    if (j->w->r16.data) linear_rows_r16(j, r0, r1);
    else if (j->w->type == TL_I2_S) linear_rows_i2s(j, r0, r1);
    else linear_rows_other(j, r0, r1, j->s->row_tmp + (int64_t)ith * j->s->row_tmp_len);
}

/* The job of one weight: chunks of whole 16-row groups, LINEAR_CHUNKS_PER_THREAD per thread. Returns the chunk count. */
static long linear_job_init(ternlm_session *s, const tl_weight *w, const act *a, float *y, int64_t y_stride, linear_job *j) {
    const int64_t groups = (w->ne1 + 15) / 16, want = (int64_t)tl_pool_size(s->pool) * LINEAR_CHUNKS_PER_THREAD;
    const int64_t chunk_rows = 16 * TL_MAX(1, (groups + want - 1) / want);
    *j = (linear_job){s, w, a, y, y_stride, chunk_rows};
    return (long)((w->ne1 + chunk_rows - 1) / chunk_rows);
}

static void linear_finish(const tl_weight *w, int T, float *y, int64_t y_stride) {
    if (w->out_scale != 1.0f || w->bias)
        for (int t = 0; t < T; t++)
            for (int64_t r = 0; r < w->ne1; r++) {
                float *o = &y[t * y_stride + r];
                *o *= w->out_scale;
                if (w->bias) *o += w->bias[r];
            }
}

static void linear_strided(ternlm_session *s, const tl_weight *w, act *a, float *y, int64_t y_stride) {
    act_prepare(s, a, w);
    linear_job job;
    const long chunks = linear_job_init(s, w, a, y, y_stride, &job);
    tl_pool_run_chunks(s->pool, chunks, linear_chunk, &job);
    linear_finish(w, a->T, y, y_stride);
}

static void linear(ternlm_session *s, const tl_weight *w, act *a, float *y) { linear_strided(s, w, a, y, w->ne1); }

/* Two or three weights of one input (q/k/v, gate/up) in one pool run: one join instead of one per weight (a decode
 * step has hundreds). Each output row is still computed by one call, so the bits do not change. */
typedef struct linears_job {
    linear_job part[3];
    long first[4]; /* part i owns chunks [first[i], first[i + 1]) */
} linears_job;

static void linears_chunk(void *ctx, long c, int ith) {
    linears_job *j = ctx;
    int i = 0;
    while (c >= j->first[i + 1]) i++;
    linear_chunk(&j->part[i], c - j->first[i], ith);
}

static void linears(ternlm_session *s, act *a, int n, const tl_weight *const *w, float *const *y) {
    /* one activation form for all (the quantized buffers hold one at a time), and no I2_S weight in file layout: its
     * rows go through the shared integer scratch s->acc, indexed by row, which two weights would overwrite */
    int same = !(w[0]->type == TL_I2_S && !w[0]->r16.data);
    for (int i = 1; i < n; i++)
        same &= w[i]->type == w[0]->type && !w[i]->r16.drow == !w[0]->r16.drow && !(w[i]->type == TL_I2_S && !w[i]->r16.data);
    if (!same) {
        for (int i = 0; i < n; i++) linear(s, w[i], a, y[i]);
        return;
    }
    act_prepare(s, a, w[0]);
    linears_job job;
    job.first[0] = 0;
    for (int i = 0; i < n; i++) job.first[i + 1] = job.first[i] + linear_job_init(s, w[i], a, y[i], w[i]->ne1, &job.part[i]);
    tl_pool_run_chunks(s->pool, job.first[n], linears_chunk, &job);
    for (int i = 0; i < n; i++) linear_finish(w[i], a->T, y[i], w[i]->ne1);
}

/* ------------------------------------------------------------------------------------------------
 * Attention over the KV cache: for each token t and query head h, softmax(q·K / sqrt(d)) · V.
 * --------------------------------------------------------------------------------------------- */

typedef struct attn_job {
    ternlm_session *s;
    uint32_t layer;
    int T;
} attn_job;

/* Layer l's K (or V) rows of KV slot `seq`: [position][kv_dim]. A plain session has one slot. */
static uint16_t *kv_rows(const ternlm_session *s, uint16_t *cache, uint32_t seq, uint32_t l) {
    const size_t kv_dim = (size_t)s->m->hp.head_dim * s->m->hp.n_head_kv;
    return cache + (size_t)seq * s->slot_elems + (size_t)l * s->n_ctx * kv_dim;
}

/* Σ v in double over TL_LANES lanes (lane p % TL_LANES, positions in order, then the lanes.h fold), written as whole
 * rows of lanes so that the compiler can vectorize it; the additions are the same as one position at a time. */
static double sum_lanes_d(const float *v, uint32_t n) {
    double lanes[TL_LANES] = {0};
    uint32_t p = 0;
    for (; p + TL_LANES <= n; p += TL_LANES)
        for (int j = 0; j < TL_LANES; j++) lanes[j] += (double)v[p + (uint32_t)j];
    for (; p < n; p++) lanes[p % TL_LANES] += (double)v[p];
    return tl_lanes_fold_d(lanes, TL_LANES);
}

/* Softmax of one head's scores (n of them), in place: the probabilities P·V takes. */
static void softmax_row(const ternlm_session *s, float *scores, uint32_t n) {
    const tl_hparams *h = &s->m->hp;
    float max, min;
    const int nan = (s->kern->row_range ? s->kern : tl_kernels_scalar())->row_range(scores, n, &max, &min);
    /* every score minus the max inside tl_expf's plain range: the branch-free row form, else the function */
    if (!nan && max < INFINITY && (double)(min - max) >= -104.0) s->kern->exp_minus_max(scores, n, max);
    else
        for (uint32_t p = 0; p < n; p++) scores[p] = tl_expf(scores[p] - max);
    const float inv = (float)(1.0 / sum_lanes_d(scores, n));
    for (uint32_t p = 0; p < n; p++) {
        scores[p] *= inv;
        if (h->probs_f16) scores[p] = tl_round_f16(scores[p]);
    }
}

/* Token t's query heads [h0, h0 + G), which share one KV head, attend to the token's own sequence's slot up to its
 * own position; the G heads' scores come from one pass over the K rows. */
static void attend_heads(ternlm_session *s, const attn_job *j, int t, uint32_t h0, int G, float *scores, float *qh) {
    const tl_hparams *h = &s->m->hp;
    const uint32_t hd = h->head_dim, kv_dim = hd * h->n_head_kv, n = s->tok_pos[t] + 1, seq = s->tok_seq[t];
    const uint32_t kvh = h0 / (h->n_head / h->n_head_kv); /* GQA: query head -> its KV head */
    const uint16_t *K = kv_rows(s, s->k_cache, seq, j->layer) + kvh * hd;
    const uint16_t *V = kv_rows(s, s->v_cache, seq, j->layer) + kvh * hd;
    const int64_t QW = (int64_t)h->n_head * hd; /* qwen3: may differ from n_embd */
    const float scale = 1.0f / sqrtf((float)hd);
    uint16_t *q16 = (uint16_t *)(void *)(qh + (size_t)G * hd); /* Q is rounded to f16 for K·Q */
    f32_to_f16_row(q16, s->q + (int64_t)t * QW + h0 * hd, (int64_t)G * hd);
    f16_to_f32_row(qh, q16, (int64_t)G * hd);
    if (s->kern->attn_kq) s->kern->attn_kq(scores, s->n_ctx, K, n, kv_dim, qh, G, hd, scale);
    else
        for (int g = 0; g < G; g++)
            for (uint32_t p = 0; p < n; p++)
                scores[g * s->n_ctx + p] = s->kern->dot_f16(K + (size_t)p * kv_dim, qh + g * hd, hd) * scale;
    float *out = s->att + (int64_t)t * QW + h0 * hd;
    for (int g = 0; g < G; g++) softmax_row(s, scores + (size_t)g * s->n_ctx, n);
    if (s->kern->attn_pv_g) s->kern->attn_pv_g(out, scores, s->n_ctx, G, V, n, kv_dim, hd);
    else
        for (int g = 0; g < G; g++) s->kern->attn_pv(out + g * hd, scores + (size_t)g * s->n_ctx, V, n, kv_dim, hd);
}

/* Heads per work item: a whole GQA group (its K rows read once), split while that leaves fewer than 4 items per thread
 * (a decode step has only T·n_head_kv groups). */
static int heads_per_item(const ternlm_session *s, int T, int nth) {
    const uint32_t n_head = s->m->hp.n_head;
    int G = (int)(n_head / s->m->hp.n_head_kv);
    while (G % 2 == 0 && (int64_t)T * n_head / (uint32_t)G < 4 * nth) G /= 2;
    return G;
}

static void attn_task(void *ctx, int ith, int nth) {
    const attn_job *j = ctx;
    ternlm_session *s = j->s;
    const uint32_t n_head = s->m->hp.n_head;
    const int G = heads_per_item(s, j->T, nth);
    const int64_t group = n_head / s->m->hp.n_head_kv, heads = (int64_t)n_head / G;
    float *scores = s->scores + (size_t)ith * group * s->n_ctx;
    float *qh = s->qh + (size_t)ith * group * 2 * s->m->hp.head_dim; /* G·head_dim floats, then as many halves */
    const int64_t total = (int64_t)j->T * heads;
    for (int64_t i = ith; i < total; i += nth)
        attend_heads(s, j, (int)(i / heads), (uint32_t)(i % heads) * (uint32_t)G, G, scores, qh);
}

/* ------------------------------------------------------------------------------------------------
 * One micro-batch of T tokens; token t belongs to KV slot tok_seq[t] at position tok_pos[t].
 * --------------------------------------------------------------------------------------------- */

static void store_kv(ternlm_session *s, uint32_t l, uint32_t seq, uint32_t pos, const float *k, const float *v) {
    const uint32_t kv_dim = s->m->hp.head_dim * s->m->hp.n_head_kv;
    uint16_t *K = kv_rows(s, s->k_cache, seq, l) + (size_t)pos * kv_dim;
    uint16_t *V = kv_rows(s, s->v_cache, seq, l) + (size_t)pos * kv_dim;
    f32_to_f16_row(K, k, kv_dim);
    f32_to_f16_row(V, v, kv_dim);
}

/* x[t] += proj[t] when `add` (a block's residual), then xn[t] = RMSNorm(x[t]) · w when w is set (the next block's
 * input norm): one pass over the token's row instead of two over the batch. */
typedef struct residual_step {
    const float *w;
    int add;
} residual_step;

static void residual_norm_token(ternlm_session *s, const void *ctx, int t) {
    const residual_step *r = ctx;
    const int64_t E = s->m->hp.n_embd;
    float *x = s->x + t * E;
    if (r->add) {
        const float *p = s->proj + t * E;
        for (int64_t i = 0; i < E; i++) x[i] += p[i];
    }
    if (r->w) rmsnorm(s->xn + t * E, x, r->w, E, s->m->hp.eps);
}

static void residual_norm(ternlm_session *s, int T, const float *w, int add) {
    const residual_step r = {w, add};
    for_each_token(s, T, residual_norm_token, &r);
}

/* After q/k/v: qwen3's per-head norms, RoPE, and the token's K and V rows into its slot's cache. */
typedef struct layer_ref {
    const tl_layer *L;
    uint32_t l;
} layer_ref;

static void qk_rope_store_token(ternlm_session *s, const void *ctx, int t) {
    const tl_layer *L = ((const layer_ref *)ctx)->L;
    const tl_hparams *h = &s->m->hp;
    const int64_t KV = (int64_t)h->head_dim * h->n_head_kv, QW = (int64_t)h->head_dim * h->n_head;
    float *q = s->q + t * QW, *k = s->k + t * KV;
    if (L->attn_q_norm) per_head_rmsnorm(q, h->n_head, L->attn_q_norm, h);
    if (L->attn_k_norm) per_head_rmsnorm(k, h->n_head_kv, L->attn_k_norm, h);
    const float *cs = s->rope_cs + (int64_t)t * h->n_rot;
    rope(q, (int)h->n_head, h, cs);
    rope(k, (int)h->n_head_kv, h, cs);
    store_kv(s, ((const layer_ref *)ctx)->l, s->tok_seq[t], s->tok_pos[t], k, s->v + t * KV);
}

static void attn_sub_norm_token(ternlm_session *s, const void *ctx, int t) {
    const int64_t E = s->m->hp.n_embd;
    rmsnorm(s->att + t * E, s->att + t * E, ctx, E, s->m->hp.eps);
}

static void ffn_act_token(ternlm_session *s, const void *ctx, int t) {
    const tl_layer *L = ctx;
    const tl_hparams *h = &s->m->hp;
    const int64_t F = h->n_ff;
    float *g = s->ff_g + t * F;
    ffn_activation(g, s->ff_u + t * F, F, h->act);
    if (L->ffn_sub_norm) rmsnorm(g, g, L->ffn_sub_norm, F, h->eps); /* ReLU² values stay f32 */
}

/* Enters with xn = the attention norm of x; leaves proj = the attention output (the residual is added later). */
static void attention_block(ternlm_session *s, const tl_layer *L, uint32_t l, int T) {
    const tl_hparams *h = &s->m->hp;
    const int64_t E = h->n_embd, QW = (int64_t)h->head_dim * h->n_head;
    act a;
    act_init(&a, s->xn, T, E);
    const tl_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
    float *const qkv_out[3] = {s->q, s->k, s->v};
    linears(s, &a, 3, qkv, qkv_out);
    const layer_ref ref = {L, l};
    for_each_token(s, T, qk_rope_store_token, &ref);
    attn_job job = {s, l, T};
    tl_pool_run(s->pool, attn_task, &job);
    if (L->attn_sub_norm) for_each_token(s, T, attn_sub_norm_token, L->attn_sub_norm);
    act_init(&a, s->att, T, QW);
    linear(s, &L->wo, &a, s->proj);
}

/* Enters with xn = the FFN norm of x; leaves proj = the FFN output. */
static void ffn_block(ternlm_session *s, const tl_layer *L, int T) {
    const tl_hparams *h = &s->m->hp;
    act a;
    act_init(&a, s->xn, T, h->n_embd);
    const tl_weight *gate_up[2] = {&L->gate, &L->up};
    float *const gate_up_out[2] = {s->ff_g, s->ff_u};
    linears(s, &a, 2, gate_up, gate_up_out);
    for_each_token(s, T, ffn_act_token, L);
    act_init(&a, s->ff_g, T, h->n_ff);
    linear(s, &L->down, &a, s->proj);
}

typedef struct head_rows {
    const int *rows;
} head_rows;

static void head_norm_row(ternlm_session *s, const void *ctx, int i) {
    const head_rows *hr = ctx;
    const int64_t E = s->m->hp.n_embd;
    rmsnorm(s->xn + i * E, s->x + hr->rows[i] * E, s->m->output_norm, E, s->m->hp.eps);
}

/* Logits for the n tokens rows[0..n) of this batch into `out` (one n_vocab row each, in that order). */
static void lm_head(ternlm_session *s, const int *rows, int n, float *out) {
    const ternlm_model *m = s->m;
    const head_rows hr = {rows};
    for_each_token(s, n, head_norm_row, &hr);
    act a;
    act_init(&a, s->xn, n, m->hp.n_embd);
    linear_strided(s, &m->output, &a, out, m->hp.n_vocab);
}

static void embed_token(ternlm_session *s, const void *ctx, int t) {
    const int32_t *tokens = ctx;
    const ternlm_model *m = s->m;
    const tl_hparams *h = &m->hp;
    tl_dequant_row(m->tok_embd.type, m->tok_embd.data + (uint64_t)tokens[t] * m->tok_embd.row_bytes,
                   s->x + t * (int64_t)h->n_embd, h->n_embd, m->tok_embd.i2s_scale);
    tl_rope_table(s->rope_cs + (int64_t)t * h->n_rot, s->tok_pos[t], h, m->rope_freqs);
    if (h->n_layer) rmsnorm(s->xn + t * (int64_t)h->n_embd, s->x + t * (int64_t)h->n_embd, m->layers[0].attn_norm,
                            h->n_embd, h->eps);
}

void tl_eval_ubatch(ternlm_session *s, const int32_t *tokens, int T, const int *logit_rows, int n_logit_rows,
                    float *logits) {
    const ternlm_model *m = s->m;
    const tl_hparams *h = &m->hp;
    for_each_token(s, T, embed_token, tokens);
    for (uint32_t l = 0; l < h->n_layer; l++) {
        attention_block(s, &m->layers[l], l, T);
        residual_norm(s, T, m->layers[l].ffn_norm, 1);
        ffn_block(s, &m->layers[l], T);
        residual_norm(s, T, l + 1 < h->n_layer ? m->layers[l + 1].attn_norm : NULL, 1);
    }
    if (n_logit_rows) lm_head(s, logit_rows, n_logit_rows, logits);
    s->n_evaluated += (uint64_t)T;
}

/* The single-sequence path: slot 0, positions pos .. pos+T-1. */
static ternlm_status eval_batch(ternlm_session *s, const int32_t *tokens, int T, int which, float *logits) {
    int rows[UBATCH];
    for (int t = 0; t < T; t++) {
        s->tok_seq[t] = 0;
        s->tok_pos[t] = s->pos + (uint32_t)t;
        rows[t] = t;
    }
    if (which == TERNLM_LOGITS_ALL) tl_eval_ubatch(s, tokens, T, rows, T, logits);
    else if (which == TERNLM_LOGITS_LAST) tl_eval_ubatch(s, tokens, T, rows + T - 1, 1, logits);
    else tl_eval_ubatch(s, tokens, T, rows, 0, logits);
    s->pos += (uint32_t)T;
    return TERNLM_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Session API
 * --------------------------------------------------------------------------------------------- */

ternlm_session_params ternlm_session_params_default(void) {
    ternlm_session_params p;
    memset(&p, 0, sizeof p);
    return p;
}

static ternlm_status alloc_scratch(ternlm_session *s, ternlm_error *err) {
    const tl_hparams *h = &s->m->hp;
    const int64_t KV = (int64_t)h->head_dim * h->n_head_kv, QW = (int64_t)h->head_dim * h->n_head;
    const int64_t B = UBATCH, E = TL_MAX((int64_t)h->n_embd, QW), F = h->n_ff; /* E: also the q and att rows */
    const int64_t wide = TL_MAX(E, F), nth = tl_pool_size(s->pool);
    const int64_t G = h->n_head / h->n_head_kv; /* query heads per KV head: attention's scratch holds a group */
    s->slot_elems = (size_t)h->n_layer * s->n_ctx * (size_t)KV;
    const size_t kv_elems = s->slot_elems * s->n_seq;
    const int64_t acc_rows = s->m->output.type == TL_I2_S ? TL_MAX(wide, (int64_t)h->n_vocab) : wide;
    s->row_tmp_len = wide;
    void **bufs[] = {(void **)&s->x, (void **)&s->xn, (void **)&s->q, (void **)&s->k, (void **)&s->v, (void **)&s->att,
                     (void **)&s->proj, (void **)&s->ff_g, (void **)&s->ff_u, (void **)&s->qa, (void **)&s->qa_scale,
                     (void **)&s->qa_sum, (void **)&s->q8k, (void **)&s->q80, (void **)&s->f16r, (void **)&s->acc,
                     (void **)&s->rope_cs, (void **)&s->scores, (void **)&s->qh, (void **)&s->row_tmp,
                     (void **)&s->k_cache, (void **)&s->v_cache, (void **)&s->tok_seq, (void **)&s->tok_pos};
    const size_t sizes[] = {B * E * 4, B * E * 4, B * E * 4, B * KV * 4, B * KV * 4, B * E * 4, B * E * 4, B * F * 4,
                            B * F * 4, B * wide, B * 4, B * 4, (size_t)(B * (wide / 256 + 1)) * sizeof(tl_block_q8k),
                            (size_t)(B * (wide / 32 + 1) * 34), B * wide * 4,
                            (size_t)B * (size_t)acc_rows * 4, B * h->n_rot * 4,
                            (size_t)nth * G * s->n_ctx * 4, (size_t)nth * G * h->head_dim * 8, (size_t)(nth * wide * 4),
                            kv_elems * 2, kv_elems * 2, B * 4, B * 4};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *bufs[i] = tl_aligned_alloc(sizes[i]);
        if (!*bufs[i])
            return tl_fail(err, TERNLM_ERR_NOMEM, "cannot allocate %zu bytes of session memory (context %u, %u slots)",
                           sizes[i], s->n_ctx, s->n_seq);
    }
    return TERNLM_OK;
}

/* More threads than this per core only add contention (and a hostile -t 100000 would start that many). */
static uint32_t clamp_threads(const ternlm_model *m, uint32_t requested) {
    const uint32_t cores = TL_MAX(tl_physical_cores(), 1u);
    const uint32_t limit = cores * TERNLM_MAX_THREADS_PER_CORE;
    if (!requested) return cores;
    if (requested <= limit) return requested;
    tl_log(&m->log, "warning: %u threads is more than %u per core on %u core(s); using %u", requested,
           TERNLM_MAX_THREADS_PER_CORE, cores, limit);
    return limit;
}

ternlm_status tl_session_new_cpu(ternlm_model *m, const ternlm_session_params *p, uint32_t n_seq, ternlm_session **out,
                                 ternlm_error *err) {
    ternlm_session *s = calloc(1, sizeof *s);
    if (!s) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    s->m = m;
    s->n_ctx = p->n_ctx ? TL_MIN(p->n_ctx, m->hp.n_ctx_train) : TL_MIN(m->hp.n_ctx_train, 4096u);
    s->n_seq = n_seq;
    s->kern = tl_kernels_best();
    s->pool = tl_pool_new((int)clamp_threads(m, p->n_threads));
    ternlm_status st = s->pool ? alloc_scratch(s, err) : tl_fail(err, TERNLM_ERR_NOMEM, "cannot start threads");
    if (st) {
        ternlm_session_free(s);
        return st;
    }
    *out = s;
    return TERNLM_OK;
}

ternlm_status ternlm_session_new(ternlm_model *m, const ternlm_session_params *params, ternlm_session **out,
                                 ternlm_error *err) {
    if (!m || !out) return tl_fail(err, TERNLM_ERR_ARG, "model and out must not be NULL");
    if (!m->has_weights)
        return tl_fail(err, TERNLM_ERR_MODEL, "this GGUF has no weights (a vocabulary-only file): it can tokenize but not run");
    const ternlm_session_params p = params ? *params : ternlm_session_params_default();
    ternlm_session *s = NULL;
    const ternlm_status st = p.use_gpu ? tl_session_new_gpu(m, &p, 1, &s, err) : tl_session_new_cpu(m, &p, 1, &s, err);
    if (st) return st; /* *out is left as it was */
    tl_model_retain(m);
    s->holds_model_ref = 1;
    *out = s;
    return TERNLM_OK;
}

void ternlm_session_free(ternlm_session *s) {
    if (!s) return;
    ternlm_model *m = s->holds_model_ref ? s->m : NULL;
    if (s->gpu) {
        tl_session_free_gpu(s);
    } else {
        void *bufs[] = {s->x, s->xn, s->q, s->k, s->v, s->att, s->proj, s->ff_g, s->ff_u, s->qa, s->qa_scale, s->qa_sum,
                        s->q8k, s->q80, s->f16r, s->acc, s->rope_cs, s->scores, s->qh, s->row_tmp, s->k_cache, s->v_cache,
                        s->tok_seq, s->tok_pos};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) tl_aligned_free(bufs[i]);
        free(s->logits);
        tl_pool_free(s->pool);
        free(s);
    }
    if (m) tl_model_release(m);
}

static ternlm_status check_tokens(const ternlm_session *s, const int32_t *tokens, size_t n, ternlm_error *err) {
    if (n > s->n_ctx - s->pos)
        return tl_fail(err, TERNLM_ERR_CONTEXT_FULL, "context full: %u of %u positions used, %zu more requested",
                       s->pos, s->n_ctx, n);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= s->m->hp.n_vocab)
            return tl_fail(err, TERNLM_ERR_ARG, "token id %d at index %zu is outside the vocabulary (0..%u)", tokens[i],
                           i, s->m->hp.n_vocab - 1);
    return TERNLM_OK;
}

static ternlm_status reserve_logits(ternlm_session *s, size_t rows, ternlm_error *err) {
    const size_t need = rows * s->m->hp.n_vocab;
    if (need > s->logits_cap) {
        float *p = realloc(s->logits, need * sizeof *p);
        if (!p) return tl_fail(err, TERNLM_ERR_NOMEM, "cannot allocate logits for %zu positions", rows);
        s->logits = p;
        s->logits_cap = need;
    }
    return TERNLM_OK;
}

ternlm_status ternlm_session_eval(ternlm_session *s, const int32_t *tokens, size_t n, int which, ternlm_error *err) {
    if (!s || (!tokens && n)) return tl_fail(err, TERNLM_ERR_ARG, "session and tokens must not be NULL");
    if (which < TERNLM_LOGITS_LAST || which > TERNLM_LOGITS_NONE) return tl_fail(err, TERNLM_ERR_ARG, "bad logits mode %d", which);
    s->logits_rows = 0;
    if (n == 0) return TERNLM_OK;
    ternlm_status st = check_tokens(s, tokens, n, err);
    if (!st) st = reserve_logits(s, which == TERNLM_LOGITS_ALL ? n : 1, err);
    if (st) return st;
    if (s->gpu) st = tl_gpu_eval(s, tokens, n, which, err);
    for (size_t done = 0; done < n && !s->gpu && !st;) {
        const int T = (int)TL_MIN((size_t)UBATCH, n - done);
        const int last_chunk = done + (size_t)T == n;
        int mode = which == TERNLM_LOGITS_ALL ? which : (last_chunk ? which : TERNLM_LOGITS_NONE);
        float *dst = s->logits + (which == TERNLM_LOGITS_ALL ? done * s->m->hp.n_vocab : 0);
        st = eval_batch(s, tokens + done, T, mode, dst);
        done += (size_t)T;
    }
    if (!st) s->logits_rows = which == TERNLM_LOGITS_ALL ? n : (which == TERNLM_LOGITS_LAST ? 1 : 0);
    return st;
}

const float *ternlm_session_logits(const ternlm_session *s, int i) {
    if (!s || !s->logits_rows || i < -1) return NULL; /* -1 is the only negative index: the last row */
    if (i == -1) i = (int)s->logits_rows - 1;
    if ((size_t)i >= s->logits_rows) return NULL;
    return s->logits + (size_t)i * s->m->hp.n_vocab;
}

uint32_t ternlm_session_pos(const ternlm_session *s) { return s ? s->pos : 0; }
uint32_t ternlm_session_n_ctx(const ternlm_session *s) { return s ? s->n_ctx : 0; }
uint64_t ternlm_session_tokens_evaluated(const ternlm_session *s) { return s ? s->n_evaluated : 0; }
const char *ternlm_session_backend(const ternlm_session *s) { return !s ? "" : s->gpu ? "cuda" : s->kern->name; }
uint32_t ternlm_session_threads(const ternlm_session *s) { return s && !s->gpu ? (uint32_t)tl_pool_size(s->pool) : 1; }

ternlm_status ternlm_session_rewind(ternlm_session *s, uint32_t pos, ternlm_error *err) {
    if (!s) return tl_fail(err, TERNLM_ERR_ARG, "session is NULL");
    if (pos > s->pos) return tl_fail(err, TERNLM_ERR_ARG, "cannot rewind forward (to %u, at %u)", pos, s->pos);
    s->pos = pos; /* later positions are overwritten before they are read */
    s->logits_rows = 0;
    return TERNLM_OK;
}
