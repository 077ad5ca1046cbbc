/* AArch64 NEON kernels. Two I2_S variants: `sdot` (ARMv8.2 dotprod; codes {0,1,2} are valid signed bytes, so
 * Σ code·q comes straight out; neon_dot.c) and plain NEON (widening multiplies) for cores without it, chosen at
 * run time from HWCAP. Integer results equal the scalar reference bit for bit. */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "../runtime/tensor_types.h"
#include "exp_row.h"
#include "lanes.h"
#include "paths.h"

#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

static void quantize_i8(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum) {
    float32x4_t vmax = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vmax = vmaxq_f32(vmax, vabsq_f32(vld1q_f32(x + i)));
    double max = (double)vmaxvq_f32(vmax);
    if (max < 1e-5) max = 1e-5;
    for (; i < n; i++) max = fabs((double)x[i]) > max ? fabs((double)x[i]) : max;
    const float s = (float)(127.0 / max);
    int32x4_t acc = vdupq_n_s32(0);
    i = 0;
    for (; i + 16 <= n; i += 16) {
        int32x4_t r[4];
        for (int k = 0; k < 4; k++) r[k] = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + i + 4 * k), s)); /* RNE */
        const int16x8_t a = vcombine_s16(vqmovn_s32(r[0]), vqmovn_s32(r[1])), b = vcombine_s16(vqmovn_s32(r[2]), vqmovn_s32(r[3]));
        const int8x16_t v = vcombine_s8(vqmovn_s16(a), vqmovn_s16(b)); /* saturating: the clamp */
        vst1q_s8(q + i, v);
        acc = vpadalq_s16(acc, vpaddlq_s8(v));
    }
    int32_t total = vaddvq_s32(acc);
    for (; i < n; i++) {
        int32_t r = (int32_t)lrintf(x[i] * s);
        r = r < -128 ? -128 : r > 127 ? 127 : r;
        q[i] = (int8_t)r;
        total += r;
    }
    *scale = s;
    *sum = total;
}

static inline int32x4_t mul_acc(int32x4_t acc, uint8x16_t c, int8x16_t x) {
    const int8x16_t s = vreinterpretq_s8_u8(c);
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(s), vget_low_s8(x)));
    return vpadalq_s16(acc, vmull_high_s8(s, x));
}

static inline int32x4_t block_plain(const uint8_t *w, const int8_t *x, int32x4_t acc) {
    const uint8x16_t m3 = vdupq_n_u8(3);
    for (int h = 0; h < 2; h++) {
        const uint8x16_t v = vld1q_u8(w + 16 * h);
        const int8_t *xh = x + 16 * h;
        acc = mul_acc(acc, vshrq_n_u8(v, 6), vld1q_s8(xh));
        acc = mul_acc(acc, vandq_u8(vshrq_n_u8(v, 4), m3), vld1q_s8(xh + 32));
        acc = mul_acc(acc, vandq_u8(vshrq_n_u8(v, 2), m3), vld1q_s8(xh + 64));
        acc = mul_acc(acc, vandq_u8(v, m3), vld1q_s8(xh + 96));
    }
    return acc;
}

static void i2s_gemm_plain(const uint8_t *w, int64_t n, int64_t r0, int64_t r1, const int8_t *q, int T, int32_t *acc,
                           int64_t acc_stride) {
    const int64_t nb = n / 128, row_bytes = n / 4;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + r * row_bytes;
        for (int t = 0; t < T; t++) {
            int32x4_t s = vdupq_n_s32(0);
            for (int64_t k = 0; k < nb; k++) s = block_plain(row + 32 * k, q + (int64_t)t * n + 128 * k, s);
            acc[(int64_t)t * acc_stride + r] = vaddvq_s32(s);
        }
    }
}

void tl_neon_i2s_gemm_dot(const uint8_t *w, int64_t n, int64_t r0, int64_t r1, const int8_t *q, int T, int32_t *acc,
                          int64_t acc_stride); /* neon_dot.c, built for ARMv8.2 dotprod */

/* Float dots in the canonical lane order (lanes.h): eight q-register accumulators hold lanes 0-31. */
static float dot_f16(const uint16_t *w, const float *x, int64_t n) {
    float32x4_t a[8];
    for (int k = 0; k < 8; k++) a[k] = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 8; k++)
            a[k] = vaddq_f32(a[k], vmulq_f32(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(w + i + 4 * k))), vld1q_f32(x + i + 4 * k)));
    float l[TL_LANES];
    for (int k = 0; k < 8; k++) vst1q_f32(l + 4 * k, a[k]);
    for (; i < n; i++) l[i % TL_LANES] += tl_f16_to_f32(w[i]) * x[i];
    return tl_lanes_fold(l);
}

/* One F16 row times TT (<= 2) tokens: every 4 weights are converted once for both tokens (16 accumulators). */
__attribute__((always_inline)) static inline void f16_row_tile(const uint16_t *w, const float *const *x, int TT, int64_t n,
                                                               float *out) {
    float32x4_t a[2][8];
    for (int t = 0; t < TT; t++)
        for (int k = 0; k < 8; k++) a[t][k] = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 8; k++) {
            const float32x4_t wv = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(w + i + 4 * k)));
            for (int t = 0; t < TT; t++) a[t][k] = vaddq_f32(a[t][k], vmulq_f32(wv, vld1q_f32(x[t] + i + 4 * k)));
        }
    for (int t = 0; t < TT; t++) {
        float l[TL_LANES];
        for (int k = 0; k < 8; k++) vst1q_f32(l + 4 * k, a[t][k]);
        for (int64_t j = i; j < n; j++) l[j % TL_LANES] += tl_f16_to_f32(w[j]) * x[t][j];
        out[t] = tl_lanes_fold(l);
    }
}

/* F16 rows in file layout times T tokens: a row is read from memory once (the later token pairs find it in L1). */
static void gemm_f16(const uint16_t *w, int64_t n, int64_t r0, int64_t r1, const float *x, int T, float *y, int64_t ys) {
    for (int64_t r = r0; r < r1; r++)
        for (int t0 = 0; t0 < T; t0 += 2) {
            const float *xs[2] = {x + (int64_t)t0 * n, x + (int64_t)(t0 + 1) * n};
            float out[2];
            if (T - t0 >= 2) f16_row_tile(w + r * n, xs, 2, n, out);
            else f16_row_tile(w + r * n, xs, 1, n, out);
            for (int t = 0; t < 2 && t0 + t < T; t++) y[(int64_t)(t0 + t) * ys + r] = out[t];
        }
}

static float dot_f32(const float *w, const float *x, int64_t n) {
    float32x4_t a[8];
    for (int k = 0; k < 8; k++) a[k] = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 8; k++) a[k] = vaddq_f32(a[k], vmulq_f32(vld1q_f32(w + i + 4 * k), vld1q_f32(x + i + 4 * k)));
    float l[TL_LANES];
    for (int k = 0; k < 8; k++) vst1q_f32(l + 4 * k, a[k]);
    for (; i < n; i++) l[i % TL_LANES] += w[i] * x[i];
    return tl_lanes_fold(l);
}

static void attn_pv(float *out, const float *prob, const uint16_t *v, int64_t n_pos, int64_t stride, int64_t hd) {
    int64_t d = 0;
    for (; d + 4 <= hd; d += 4) {
        float32x4_t acc = vdupq_n_f32(0);
        for (int64_t p = 0; p < n_pos; p++)
            acc = vaddq_f32(acc, vmulq_n_f32(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(v + p * stride + d))), prob[p]));
        vst1q_f32(out + d, acc);
    }
    for (; d < hd; d++) {
        float acc = 0;
        for (int64_t p = 0; p < n_pos; p++) acc += prob[p] * tl_f16_to_f32(v[p * stride + d]);
        out[d] = acc;
    }
}

/* Attention per GQA group (kernels.h): K·Q of two heads at a time through f16_row_tile, so a K row is converted once
 * per pair of heads, each dot in dot_f16's lanes and fold. */
static void attn_kq(float *s, int64_t ss, const uint16_t *k, int64_t n_pos, int64_t stride, const float *q, int G, int64_t hd,
                    float scale) {
    for (int g = 0; g < G; g += 2) {
        const int TT = G - g >= 2 ? 2 : 1;
        const float *xs[2] = {q + (int64_t)g * hd, q + (int64_t)(g + TT - 1) * hd};
        for (int64_t p = 0; p < n_pos; p++) {
            float out[2];
            if (TT == 2) f16_row_tile(k + p * stride, xs, 2, hd, out);
            else f16_row_tile(k + p * stride, xs, 1, hd, out);
            for (int t = 0; t < TT; t++) s[(int64_t)(g + t) * ss + p] = out[t] * scale;
        }
    }
}

/* P·V of 4 heads at a time over 16 outputs: each V row's 16 values converted once for the 4 heads; every output sums
 * positions in order, mul then add (attn_pv's bits). */
static void attn_pv_g(float *out, const float *prob, int64_t ps, int G, const uint16_t *v, int64_t n_pos, int64_t stride,
                      int64_t hd) {
    int g = 0;
    for (; hd % 16 == 0 && g + 4 <= G; g += 4)
        for (int64_t d = 0; d < hd; d += 16) {
            float32x4_t a[4][4];
            for (int h = 0; h < 4; h++)
                for (int c = 0; c < 4; c++) a[h][c] = vdupq_n_f32(0);
            for (int64_t p = 0; p < n_pos; p++) {
                float32x4_t vv[4];
                for (int c = 0; c < 4; c++) vv[c] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(v + p * stride + d + 4 * c)));
                for (int h = 0; h < 4; h++) {
                    const float pr = prob[(int64_t)(g + h) * ps + p];
                    for (int c = 0; c < 4; c++) a[h][c] = vaddq_f32(a[h][c], vmulq_n_f32(vv[c], pr));
                }
            }
            for (int h = 0; h < 4; h++)
                for (int c = 0; c < 4; c++) vst1q_f32(out + (int64_t)(g + h) * hd + d + 4 * c, a[h][c]);
        }
    for (; g < G; g++) attn_pv(out + (int64_t)g * hd, prob + (int64_t)g * ps, v, n_pos, stride, hd);
}

/* ---- Bonsai: Q1_0 / Q2_0 · Q8_0 in plain NEON (widening multiplies; integer sums exact, float order of kernels.h) ---- */

static inline float f16_at(const uint8_t *p) { return tl_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* Σ ±q over 32 elements whose sign bits are the 4 bytes at bits (bit e = element e; 1 = +q). */
static inline int32_t q1_sub(const uint8_t *bits, const int8_t *q) {
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t sel = vld1q_u8(bit);
    int32x4_t acc = vdupq_n_s32(0);
    for (int h = 0; h < 2; h++) {
        const uint8x16_t b = vcombine_u8(vdup_n_u8(bits[2 * h]), vdup_n_u8(bits[2 * h + 1]));
        const uint8x16_t set = vtstq_u8(b, sel);
        const int8x16_t x = vld1q_s8(q + 16 * h);
        const int8x16_t v = vbslq_s8(set, x, vnegq_s8(x)); /* |q| <= 127, so -q never wraps */
        acc = vpadalq_s16(acc, vpaddlq_s8(v));
    }
    return vaddvq_s32(acc);
}

static float dot_q1_0(const uint8_t *w, const uint8_t *a, int64_t n) {
    float sum = 0;
    for (int64_t b = 0; b < n / 128; b++, w += 18, a += 4 * 34) {
        float sumi = 0;
        for (int k = 0; k < 4; k++) {
            const float p = f16_at(a + 34 * k) * (float)q1_sub(w + 2 + 4 * k, (const int8_t *)(a + 34 * k + 2));
            sumi = k == 0 ? p : sumi + p;
        }
        sum = sum + f16_at(w) * sumi;
    }
    return sum;
}

/* Σ (code − 1)·q over the 32 elements of half h of a Q2_0 block (16 code bytes at qs). */
static inline int32_t q2_sub(const uint8_t *qs, int h, const int8_t *q) {
    const uint8x8_t v = vld1_u8(qs + 8 * h), m = vdup_n_u8(3);
    const uint8x8_t c0 = vand_u8(v, m), c1 = vand_u8(vshr_n_u8(v, 2), m);
    const uint8x8_t c2 = vand_u8(vshr_n_u8(v, 4), m), c3 = vand_u8(vshr_n_u8(v, 6), m);
    const uint8x16_t c01 = vcombine_u8(vzip1_u8(c0, c1), vzip2_u8(c0, c1)); /* elements 4i, 4i+1 */
    const uint8x16_t c23 = vcombine_u8(vzip1_u8(c2, c3), vzip2_u8(c2, c3)); /* elements 4i+2, 4i+3 */
    const uint16x8_t a01 = vreinterpretq_u16_u8(c01), a23 = vreinterpretq_u16_u8(c23);
    const int8x16_t t0 = vsubq_s8(vreinterpretq_s8_u16(vzip1q_u16(a01, a23)), vdupq_n_s8(1)); /* elements 0..15 */
    const int8x16_t t1 = vsubq_s8(vreinterpretq_s8_u16(vzip2q_u16(a01, a23)), vdupq_n_s8(1)); /* 16..31 */
    const int8x16_t x0 = vld1q_s8(q), x1 = vld1q_s8(q + 16);
    int32x4_t acc = vdupq_n_s32(0);
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(t0), vget_low_s8(x0)));
    acc = vpadalq_s16(acc, vmull_high_s8(t0, x0));
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(t1), vget_low_s8(x1)));
    acc = vpadalq_s16(acc, vmull_high_s8(t1, x1));
    return vaddvq_s32(acc);
}

static float dot_q2_0(const uint8_t *w, const uint8_t *a, int64_t n) {
    float sum = 0;
    for (int64_t b = 0; b < n / 64; b++, w += 18, a += 2 * 34) {
        const float s0 = (float)q2_sub(w + 2, 0, (const int8_t *)(a + 2));
        const float s1 = (float)q2_sub(w + 2, 1, (const int8_t *)(a + 36));
        sum = sum + f16_at(w) * (f16_at(a) * s0 + f16_at(a + 34) * s1);
    }
    return sum;
}

/* neon_dot.c: 16-row group GEMMs with sdot by lane (ARMv8.2 dotprod) */
void tl_neon_gemm_i2s_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys);
void tl_neon_gemm_tq_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys);
void tl_neon_gemm_i8_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys);
void tl_neon_gemm_i4_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys);
/* neon_i8mm.c: the I2_S, TQ and int8 ones on smmla for two tokens or more (ARMv8.6 i8mm) */
void tl_neon_mm_gemm_i2s_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys);
void tl_neon_mm_gemm_tq_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys);
void tl_neon_mm_gemm_i8_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys);

/* The entries the dotprod and i8mm tables share (they differ in the several-token I2_S / TQ / int8 GEMMs). */
#define NEON_DOT_ENTRIES \
    .exp_minus_max = tl_exp_minus_max_row, \
    .name = "neon", \
    .quantize_i8 = quantize_i8, \
    .quantize_q8k = tl_scalar_quantize_q8k, \
    .i2s_gemm = tl_neon_i2s_gemm_dot, \
    .dot_tq2 = tl_scalar_dot_tq2, \
    .dot_tq1 = tl_scalar_dot_tq1, \
    .dot_f16 = dot_f16, \
    .dot_f32 = dot_f32, \
    .dot_q8_0 = tl_scalar_dot_q8_0, \
    .attn_pv = attn_pv, \
    .attn_kq = attn_kq, \
    .attn_pv_g = attn_pv_g, \
    .dot_q1_0 = dot_q1_0, \
    .dot_q2_0 = dot_q2_0, \
    .gemm_i4_r16 = tl_neon_gemm_i4_r16, \
    .gemm_f16 = gemm_f16,
static const tl_kernels k_neon_dot = {NEON_DOT_ENTRIES .gemm_i2s_r16 = tl_neon_gemm_i2s_r16, .gemm_tq_r16 = tl_neon_gemm_tq_r16,
                                     .gemm_i8_r16 = tl_neon_gemm_i8_r16};
/* smmla for two tokens or more (neon_i8mm.c, ARMv8.6 i8mm) */
static const tl_kernels k_neon_mm = {NEON_DOT_ENTRIES .gemm_i2s_r16 = tl_neon_mm_gemm_i2s_r16, .gemm_tq_r16 = tl_neon_mm_gemm_tq_r16,
                                    .gemm_i8_r16 = tl_neon_mm_gemm_i8_r16};
static const tl_kernels k_neon_plain = {
    .exp_minus_max = tl_exp_minus_max_row,
    .name = "neon",
    .quantize_i8 = quantize_i8,
    .quantize_q8k = tl_scalar_quantize_q8k,
    .i2s_gemm = i2s_gemm_plain,
    .dot_tq2 = tl_scalar_dot_tq2,
    .dot_tq1 = tl_scalar_dot_tq1,
    .dot_f16 = dot_f16,
    .dot_f32 = dot_f32,
    .dot_q8_0 = tl_scalar_dot_q8_0,
    .attn_pv = attn_pv,
    .attn_kq = attn_kq,
    .attn_pv_g = attn_pv_g,
    .dot_q1_0 = dot_q1_0,
    .dot_q2_0 = dot_q2_0,
    .gemm_f16 = gemm_f16,
};

const tl_kernels *tl_kernels_neon_table(void) {
#if defined(__linux__)
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    if ((hw & HWCAP_ASIMDDP) && (hw2 & HWCAP2_I8MM)) return &k_neon_mm;
    if (hw & HWCAP_ASIMDDP) return &k_neon_dot;
#endif
    return &k_neon_plain;
}

/* Which I2_S variant runs here ("i8mm", "dotprod" or "plain"); test_kernels prints it. */
const char *tl_neon_variant(void) {
    const tl_kernels *k = tl_kernels_neon_table();
    return k == &k_neon_mm ? "i8mm" : k == &k_neon_dot ? "dotprod" : "plain";
}
