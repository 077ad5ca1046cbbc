/* The reference kernels: plain C, exactly the arithmetic of quant-formats.md §9. */
#include <math.h>
#include <string.h>

#include "../runtime/tensor_types.h"
#include "exp_row.h"
#include "lanes.h"
#include "paths.h"
#include "repack.h"

/* Round to nearest, ties to even, for |v| < 2^22 (the magic-number trick: no libm, same on every target). */
static inline int32_t rne(float v) {
    const float t = v + 12582912.0f; /* 1.5 * 2^23 */
    uint32_t bits;
    memcpy(&bits, &t, 4);
    return (int32_t)(bits & 0x7FFFFF) - 0x400000;
}

static void quantize_i8(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum) {
    double max = 1e-5;
    for (int64_t i = 0; i < n; i++) {
        const double a = fabs((double)x[i]);
        if (a > max) max = a;
    }
    const float s = (float)(127.0 / max);
    int32_t acc = 0;
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i] * s;
        int32_t r = fabsf(v) < 4194304.0f ? rne(v) : (v < 0 ? -128 : 127);
        r = r < -128 ? -128 : r > 127 ? 127 : r;
        q[i] = (int8_t)r;
        acc += r;
    }
    *scale = s;
    *sum = acc;
}

void tl_scalar_quantize_q8k(const float *x, int64_t n, tl_block_q8k *y) {
    for (int64_t b = 0; b < n / 256; b++, x += 256) {
        float amax = 0, m = 0;
        for (int i = 0; i < 256; i++) {
            const float a = fabsf(x[i]);
            if (a > amax) { amax = a; m = x[i]; }
        }
        if (amax == 0) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const float iscale = -127.0f / m;
        for (int i = 0; i < 256; i++) {
            const int32_t v = rne(iscale * x[i]);
            y[b].qs[i] = (int8_t)(v > 127 ? 127 : v);
        }
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int i = 0; i < 16; i++) s += y[b].qs[16 * g + i];
            y[b].bsums[g] = (int16_t)s;
        }
        y[b].d = 1.0f / iscale;
    }
}

static void i2s_gemm(const uint8_t *w, int64_t n, int64_t r0, int64_t r1, const int8_t *q, int T, int32_t *acc,
                     int64_t acc_stride) {
    const int64_t row_bytes = n / 4;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + r * row_bytes;
        for (int t = 0; t < T; t++) {
            const int8_t *a = q + (int64_t)t * n;
            int32_t s = 0;
            for (int64_t blk = 0; blk < n / 128; blk++) {
                const uint8_t *b = row + 32 * blk;
                const int8_t *x = a + 128 * blk;
                for (int j = 0; j < 32; j++) {
                    s += ((b[j] >> 6) & 3) * x[j] + ((b[j] >> 4) & 3) * x[32 + j] + ((b[j] >> 2) & 3) * x[64 + j] +
                         (b[j] & 3) * x[96 + j];
                }
            }
            acc[(int64_t)t * acc_stride + r] = s;
        }
    }
}

float tl_scalar_dot_tq2(const uint8_t *row, const tl_block_q8k *a, int64_t n) {
    float sum = 0;
    for (int64_t b = 0; b < n / 256; b++, row += 66) {
        int32_t sumi = 0;
        for (int e = 0; e < 256; e++) {
            const int h = e / 128, r = e % 128;
            const int q = (row[32 * h + r % 32] >> (2 * (r / 32))) & 3;
            sumi += (q - 1) * a[b].qs[e];
        }
        const float d = a[b].d * tl_f16_to_f32((uint16_t)(row[64] | row[65] << 8));
        sum += (float)sumi * d;
    }
    return sum;
}

float tl_scalar_dot_tq1(const uint8_t *row, const tl_block_q8k *a, int64_t n) {
    float sum = 0;
    for (int64_t b = 0; b < n / 256; b++, row += 54) {
        int32_t sumi = 0;
        for (int e = 0; e < 256; e++) {
            int t;
            if (e < 160) t = tl_tq1_trit(row[e % 32], e / 32);
            else if (e < 240) t = tl_tq1_trit(row[32 + (e - 160) % 16], (e - 160) / 16);
            else t = tl_tq1_trit(row[48 + (e - 240) % 4], (e - 240) / 4);
            sumi += (t - 1) * a[b].qs[e];
        }
        const float d = a[b].d * tl_f16_to_f32((uint16_t)(row[52] | row[53] << 8));
        sum += (float)sumi * d;
    }
    return sum;
}

/* Float dots in the canonical lane order of lanes.h, so every path gives the same bits. */
static float dot_f16(const uint16_t *w, const float *x, int64_t n) {
    float l[TL_LANES] = {0};
    for (int64_t i = 0; i < n; i++) l[i % TL_LANES] += tl_f16_to_f32(w[i]) * x[i];
    return tl_lanes_fold(l);
}

static float dot_f32(const float *w, const float *x, int64_t n) {
    float l[TL_LANES] = {0};
    for (int64_t i = 0; i < n; i++) l[i % TL_LANES] += w[i] * x[i];
    return tl_lanes_fold(l);
}

float tl_scalar_dot_q8_0(const uint8_t *w, const uint8_t *a, int64_t n) {
    float s = 0;
    for (int64_t b = 0; b < n / 32; b++, w += 34, a += 34) {
        int32_t sumi = 0;
        for (int i = 0; i < 32; i++) sumi += (int8_t)w[2 + i] * (int8_t)a[2 + i];
        const float dw = tl_f16_to_f32((uint16_t)(w[0] | w[1] << 8)), da = tl_f16_to_f32((uint16_t)(a[0] | a[1] << 8));
        s += (float)sumi * (dw * da);
    }
    return s;
}

static void attn_kq(float *s, int64_t ss, const uint16_t *k, int64_t n_pos, int64_t stride, const float *q, int G, int64_t hd,
                    float scale) {
    for (int g = 0; g < G; g++)
        for (int64_t p = 0; p < n_pos; p++) s[g * ss + p] = dot_f16(k + p * stride, q + g * hd, hd) * scale;
}

/* Each output sums over positions in order, in f32: SIMD paths vectorize across outputs with the same bits. */
static void attn_pv(float *out, const float *prob, const uint16_t *v, int64_t n_pos, int64_t stride, int64_t hd) {
    for (int64_t d = 0; d < hd; d++) {
        float acc = 0;
        for (int64_t p = 0; p < n_pos; p++) acc += prob[p] * tl_f16_to_f32(v[p * stride + d]);
        out[d] = acc;
    }
}

static int row_range(const float *v, int64_t n, float *max, float *min) {
    float hi = -INFINITY, lo = INFINITY;
    int nan = 0;
    for (int64_t p = 0; p < n; p++) {
        if (v[p] > hi) hi = v[p];
        if (v[p] < lo) lo = v[p];
        nan |= v[p] != v[p];
    }
    *max = hi, *min = lo;
    return nan;
}

static void attn_pv_g(float *out, const float *prob, int64_t ps, int G, const uint16_t *v, int64_t n_pos, int64_t stride,
                      int64_t hd) {
    for (int g = 0; g < G; g++) attn_pv(out + g * hd, prob + g * ps, v, n_pos, stride, hd);
}

void tl_quantize_q8_0(const float *x, int64_t n, uint8_t *y) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += 34) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        const uint16_t h = tl_f32_to_f16(d);
        y[0] = (uint8_t)h;
        y[1] = (uint8_t)(h >> 8);
        for (int i = 0; i < 32; i++) { /* NaN, inf or a subnormal scale: clamp, never an undefined conversion (issue 11) */
            const float v = x[i] * id, r = v == v ? roundf(v) : 0.0f;
            y[2 + i] = (uint8_t)(int8_t)(r > 127.0f ? 127.0f : r < -128.0f ? -128.0f : r);
        }
    }
}

/* ---- Bonsai: Q1_0 / Q2_0 weights times x86-rule Q8_0 activations (quant-formats.md §10-12) ---- */

void tl_quantize_q8_0_x86(const float *x, int64_t n, uint8_t *y) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += 34) {
        float amax = 0;
        for (int i = 0; i < 32; i++) {
            const float a = fabsf(x[i]);
            amax = a > amax ? a : amax;
        }
        const uint16_t h = tl_f32_to_f16(amax / 127.0f);
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[0] = (uint8_t)h;
        y[1] = (uint8_t)(h >> 8);
        for (int i = 0; i < 32; i++) y[2 + i] = (uint8_t)(int8_t)rne(x[i] * id); /* |x·id| <= 127 */
    }
}

static inline float q8_d(const uint8_t *blk) { return tl_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8)); }

float tl_scalar_dot_q1_0(const uint8_t *w, const uint8_t *a, int64_t n) {
    float sum = 0;
    for (int64_t b = 0; b < n / 128; b++, w += 18, a += 4 * 34) {
        float sumi = 0;
        for (int k = 0; k < 4; k++) {
            const int8_t *q = (const int8_t *)(a + 34 * k + 2);
            int32_t s = 0;
            for (int e = 0; e < 32; e++) s += tl_q1_bit(w + 2, 32 * k + e) ? q[e] : -q[e];
            sumi = k == 0 ? q8_d(a) * (float)s : sumi + q8_d(a + 34 * k) * (float)s;
        }
        sum = sum + q8_d(w) * sumi;
    }
    return sum;
}

float tl_scalar_dot_q2_0(const uint8_t *w, const uint8_t *a, int64_t n) {
    float sum = 0;
    for (int64_t b = 0; b < n / 64; b++, w += 18, a += 2 * 34) {
        int32_t s[2] = {0, 0};
        for (int k = 0; k < 2; k++) {
            const int8_t *q = (const int8_t *)(a + 34 * k + 2);
            for (int e = 0; e < 32; e++) s[k] += (tl_q2_code(w + 2, 32 * k + e) - 1) * q[e];
        }
        const float sumi = q8_d(a) * (float)s[0] + q8_d(a + 34) * (float)s[1];
        sum = sum + q8_d(w) * sumi;
    }
    return sum;
}

/* ---- GEMMs on the 16-row group layouts (repack.h): the generic versions every path may fall back to ---- */

void tl_scalar_gemm_i2s_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t y_stride) {
    const int64_t n = w->ne0;
    for (int64_t r = r0; r < r1; r++)
        for (int t = 0; t < a->T; t++) {
            const int8_t *x = a->q + (int64_t)t * n;
            int32_t acc = 0;
            for (int64_t k = 0; k < n; k++) acc += tl_r16_code(w->data, n, r, k) * x[k];
            y[(int64_t)t * y_stride + r] = (((float)acc - (float)a->sum[t]) / a->scale[t]) * w->scale;
        }
}

void tl_scalar_gemm_tq_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t y_stride) {
    const int64_t n = w->ne0, nb = n / 256;
    for (int64_t r = r0; r < r1; r++)
        for (int t = 0; t < a->T; t++) {
            const tl_block_q8k *x = a->q8k + (int64_t)t * nb;
            float sum = 0;
            for (int64_t b = 0; b < nb; b++) {
                int32_t sumi = 0;
                for (int e = 0; e < 256; e++) sumi += (tl_r16_code(w->data, n, r, 256 * b + e) - 1) * x[b].qs[e];
                const float d = x[b].d * tl_f16_to_f32(w->dw[((r / 16) * nb + b) * 16 + r % 16]);
                sum += (float)sumi * d;
            }
            y[(int64_t)t * y_stride + r] = sum;
        }
}

void tl_scalar_gemm_i8_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t y_stride) {
    const int64_t n = w->ne0;
    for (int64_t r = r0; r < r1; r++)
        for (int t = 0; t < a->T; t++) {
            const int8_t *x = a->q + (int64_t)t * n;
            int32_t acc = 0;
            for (int64_t k = 0; k < n; k++) acc += tl_r16_i8(w->data, n, r, k) * x[k];
            y[(int64_t)t * y_stride + r] = ((float)acc / a->scale[t]) * w->drow[r];
        }
}

void tl_scalar_gemm_i4_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t y_stride) {
    const int64_t n = w->ne0;
    for (int64_t r = r0; r < r1; r++)
        for (int t = 0; t < a->T; t++) {
            const int8_t *x = a->q + (int64_t)t * n;
            int32_t acc = 0;
            for (int64_t b = 0; b < n / 32; b++) {
                int32_t blk = 0;
                for (int64_t k = 32 * b; k < 32 * b + 32; k++) blk += tl_r16_i4(w->data, n, r, k) * x[k];
                acc += tl_r16_i4_sub(w->sub, n, r, b) * blk;
            }
            y[(int64_t)t * y_stride + r] = ((float)acc / a->scale[t]) * w->drow[r];
        }
}

static const tl_kernels k_scalar = {
    .exp_minus_max = tl_exp_minus_max_row,
    .name = "scalar",
    .quantize_i8 = quantize_i8,
    .quantize_q8k = tl_scalar_quantize_q8k,
    .i2s_gemm = i2s_gemm,
    .dot_tq2 = tl_scalar_dot_tq2,
    .dot_tq1 = tl_scalar_dot_tq1,
    .dot_f16 = dot_f16,
    .dot_f32 = dot_f32,
    .dot_q8_0 = tl_scalar_dot_q8_0,
    .attn_pv = attn_pv,
    .attn_kq = attn_kq,
    .attn_pv_g = attn_pv_g,
    .row_range = row_range,
    .dot_q1_0 = tl_scalar_dot_q1_0,
    .dot_q2_0 = tl_scalar_dot_q2_0,
    .gemm_i2s_r16 = tl_scalar_gemm_i2s_r16,
    .gemm_tq_r16 = tl_scalar_gemm_tq_r16,
    .gemm_i8_r16 = tl_scalar_gemm_i8_r16,
    .gemm_i4_r16 = tl_scalar_gemm_i4_r16,
};

const tl_kernels *tl_kernels_scalar(void) { return &k_scalar; }
