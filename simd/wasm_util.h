/* Helpers shared by the SIMD128 and relaxed-SIMD kernels (wasm128.c, wasm_relaxed.c). */
#ifndef TERNLM_WASM_UTIL_H
#define TERNLM_WASM_UTIL_H

#include <stdint.h>
#include <wasm_simd128.h>

#include "kernels.h"

/* [Σa, Σb, Σc, Σd] of four i32x4 vectors: two rounds of pairwise transposed adds. */
static inline v128_t reduce4(v128_t a, v128_t b, v128_t c, v128_t d) {
    const v128_t ab = wasm_i32x4_add(wasm_i32x4_shuffle(a, b, 0, 4, 1, 5), wasm_i32x4_shuffle(a, b, 2, 6, 3, 7));
    const v128_t cd = wasm_i32x4_add(wasm_i32x4_shuffle(c, d, 0, 4, 1, 5), wasm_i32x4_shuffle(c, d, 2, 6, 3, 7));
    return wasm_i32x4_add(wasm_i32x4_shuffle(ab, cd, 0, 1, 4, 5), wasm_i32x4_shuffle(ab, cd, 2, 3, 6, 7));
}

static inline int32_t hsum_i32(v128_t v) {
    return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
           wasm_i32x4_extract_lane(v, 3);
}

/* Exact f16 -> f32 for 4 halves in u32 lanes: shift into f32 position and scale by 2^112 (exact for normals and
 * subnormals); infinities and NaNs get an all-ones exponent. */
static inline v128_t f16x4_to_f32_u32(v128_t u) {
    const v128_t sign = wasm_i32x4_shl(wasm_v128_and(u, wasm_i32x4_splat(0x8000)), 16);
    const v128_t mag = wasm_i32x4_shl(wasm_v128_and(u, wasm_i32x4_splat(0x7FFF)), 13);
    v128_t f = wasm_f32x4_mul(mag, wasm_f32x4_splat(5.192296858534828e+33f)); /* 2^112 */
    const v128_t infnan = wasm_i32x4_ge(mag, wasm_i32x4_splat(0x0F800000));
    f = wasm_v128_bitselect(wasm_v128_or(mag, wasm_i32x4_splat(0x70000000)), f, infnan);
    return wasm_v128_or(f, sign);
}
static inline v128_t f16x4_to_f32(const uint16_t *h) { return f16x4_to_f32_u32(wasm_u32x4_load16x4(h)); }

/* The f16 scales of 4 blocks `stride` bytes apart, as f32 (exact conversion). */
static inline v128_t scales4(const uint8_t *p, int64_t stride) {
    uint16_t h[4];
    for (int k = 0; k < 4; k++) h[k] = (uint16_t)(p[k * stride] | p[k * stride + 1] << 8);
    return f16x4_to_f32(h);
}

/* sum += (float)sumi_b * d_b for 4 blocks, in block order (the scalar reference's order). */
static inline float add4_in_order(float sum, v128_t sumi, v128_t d) {
    float p[4];
    wasm_v128_store(p, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(sumi), d));
    return sum + p[0] + p[1] + p[2] + p[3];
}

/* Σ_b bsums of a Q8_K block as i32x4 partial sums. */
static inline v128_t bsum_part(const tl_block_q8k *a) {
    return wasm_i32x4_add(wasm_i32x4_extadd_pairwise_i16x8(wasm_v128_load(a->bsums)),
                          wasm_i32x4_extadd_pairwise_i16x8(wasm_v128_load(a->bsums + 8)));
}


/* ---- shared by the 16-row group GEMMs (repack.h) of both modules ---- */

#define AI __attribute__((always_inline)) static inline
#define R16_TT 4 /* tokens per tile */

/* I2_S epilogue of 16 rows of one token (sums: the exact Σ code·q, 4 rows per vector):
 * y = (((float)Σ code·q − (float)Σq) / scale_t) · tensor_scale, lane by lane as the scalar reference. */
AI void r16_i2s_store(const v128_t sums[4], const tl_acts *a, int t, float wscale, float *dst) {
    const v128_t sq = wasm_f32x4_splat((float)a->sum[t]), sc = wasm_f32x4_splat(a->scale[t]);
    for (int i = 0; i < 4; i++) {
        const v128_t f = wasm_f32x4_div(wasm_f32x4_sub(wasm_f32x4_convert_i32x4(sums[i]), sq), sc);
        wasm_v128_store(dst + 4 * i, wasm_f32x4_mul(f, wasm_f32x4_splat(wscale)));
    }
}

/* TQ2_0 / TQ1_0 block step of 16 rows of one token (sums: the exact Σ code·q of the block; dw: the rows' f16
 * scales): sum += (float)(Σ code·q − Σq) · (d_act · d_w), in block order as the scalar reference. */
AI void r16_tq_step(v128_t fsum[4], const v128_t sums[4], const tl_block_q8k *xb, const uint16_t *dw) {
    const v128_t bsum = wasm_i32x4_splat(hsum_i32(bsum_part(xb))), da = wasm_f32x4_splat(xb->d);
    for (int i = 0; i < 4; i++) {
        const v128_t d = wasm_f32x4_mul(da, f16x4_to_f32(dw + 4 * i));
        fsum[i] = wasm_f32x4_add(fsum[i], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_i32x4_sub(sums[i], bsum)), d));
    }
}

/* A tile function for tt = 1..R16_TT tokens, each with its token count known at compile time. */
#define R16_TILES(fn, w, r, a, t0, tt, y, ys)                                                                          \
    switch (tt) {                                                                                                      \
    case 1: fn(w, r, a, t0, 1, y, ys); break;                                                                          \
    case 2: fn(w, r, a, t0, 2, y, ys); break;                                                                          \
    case 3: fn(w, r, a, t0, 3, y, ys); break;                                                                          \
    default: fn(w, r, a, t0, 4, y, ys); break;                                                                         \
    }

#define R16_GEMM(name, tile)                                                                                           \
    void name(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {                      \
        for (int64_t r = r0; r < r1; r += 16)                                                                          \
            for (int t0 = 0; t0 < a->T; t0 += R16_TT) {                                                                \
                const int tt = a->T - t0 < R16_TT ? a->T - t0 : R16_TT;                                                \
                R16_TILES(tile, w, r, a, t0, tt, y, ys)                                                                \
            }                                                                                                          \
    }

/* The I2_S and TQ tiles over 16-row groups, given the kernel's GROUP(g, x, TT, k0, k1, sums): the exact integer sums
 * of inputs [k0, k1) of the group at g for TT tokens whose activations x[t] start at input k0. */
#define R16_CODE_TILES(GROUP)                                                                                          \
    AI void i2s_tile(const tl_r16 *w, int64_t r, const tl_acts *a, int t0, int TT, float *y, int64_t ys) {            \
        const int64_t n = w->ne0;                                                                                      \
        const int8_t *x[R16_TT];                                                                                       \
        for (int t = 0; t < TT; t++) x[t] = a->q + (int64_t)(t0 + t) * n;                                              \
        v128_t sums[R16_TT][4];                                                                                        \
        GROUP(w->data + (r / 16) * n * 4, x, TT, 0, n, sums);                                                          \
        for (int t = 0; t < TT; t++) r16_i2s_store(sums[t], a, t0 + t, w->scale, y + (int64_t)(t0 + t) * ys + r);      \
    }                                                                                                                  \
    AI void tq_tile(const tl_r16 *w, int64_t r, const tl_acts *a, int t0, int TT, float *y, int64_t ys) {             \
        const int64_t n = w->ne0, nb = n / 256;                                                                        \
        const uint8_t *g = w->data + (r / 16) * n * 4;                                                                 \
        v128_t fsum[R16_TT][4];                                                                                        \
        for (int t = 0; t < TT; t++)                                                                                   \
            for (int i = 0; i < 4; i++) fsum[t][i] = wasm_f32x4_splat(0);                                              \
        for (int64_t b = 0; b < nb; b++) {                                                                             \
            const int8_t *x[R16_TT];                                                                                   \
            for (int t = 0; t < TT; t++) x[t] = a->q8k[(int64_t)(t0 + t) * nb + b].qs;                                 \
            v128_t sums[R16_TT][4];                                                                                    \
            GROUP(g, x, TT, 256 * b, 256 * b + 256, sums);                                                             \
            for (int t = 0; t < TT; t++)                                                                               \
                r16_tq_step(fsum[t], sums[t], &a->q8k[(int64_t)(t0 + t) * nb + b], w->dw + ((r / 16) * nb + b) * 16);  \
        }                                                                                                              \
        for (int t = 0; t < TT; t++)                                                                                   \
            for (int i = 0; i < 4; i++) wasm_v128_store(y + (int64_t)(t0 + t) * ys + r + 4 * i, fsum[t][i]);           \
    }

/* The SIMD128 entries the relaxed table reuses (no relaxed instruction would be exact or faster there). */
void tl_wasm128_quantize_i8(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum);
float tl_wasm128_dot_tq1(const uint8_t *row, const tl_block_q8k *a, int64_t n);
float tl_wasm128_dot_f16(const uint16_t *w, const float *x, int64_t n);
float tl_wasm128_dot_f32(const float *w, const float *x, int64_t n);
float tl_wasm128_dot_q8_0(const uint8_t *w, const uint8_t *a, int64_t n);
void tl_wasm128_gemm_i8_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t y_stride);
void tl_wasm128_attn_pv(float *out, const float *prob, const uint16_t *v, int64_t n_pos, int64_t stride, int64_t hd);

#endif
