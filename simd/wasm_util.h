/* Helpers shared by the SIMD128 and relaxed-SIMD kernels (wasm128.c, wasm_relaxed.c). */
#ifndef TERNLM_WASM_UTIL_H
#define TERNLM_WASM_UTIL_H

#include <stdint.h>
#include <wasm_simd128.h>

#include "../runtime/tensor_types.h"
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
#define R16_TT_WIDE 3 /* tokens per prompt tile where a path has one (R16_GEMM_WIDE: simd/wasm128.c); <= R16_TT */

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

/* As R16_GEMM, but tokens go R16_TT_WIDE at a time (tile(..., R16_TT_WIDE, ...)) while as many remain, the rest as
 * R16_GEMM does. */
#define R16_GEMM_WIDE(name, tile)                                                                                      \
    void name(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {                      \
        for (int64_t r = r0; r < r1; r += 16) {                                                                        \
            int t0 = 0;                                                                                                \
            for (; a->T - t0 >= R16_TT_WIDE; t0 += R16_TT_WIDE) tile(w, r, a, t0, R16_TT_WIDE, y, ys);                \
            for (; t0 < a->T; t0 += R16_TT) {                                                                          \
                const int tt = a->T - t0 < R16_TT ? a->T - t0 : R16_TT;                                                \
                R16_TILES(tile, w, r, a, t0, tt, y, ys)                                                                \
            }                                                                                                          \
        }                                                                                                              \
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

/* ---- Bonsai: Q1_0 / Q2_0 rows · x86-rule Q8_0 activations, shared by both modules. Each module gives the exact
 * integer sums of a sub-block (32 elements) as i32x4 partial sums; the float part of kernels.h then runs for 4 weight
 * blocks at once, one block per lane, so each lane does the scalar reference's products and adds in its order, and
 * only `sum = sum + d_w·sumi` crosses blocks, in block order. Scales are gathered with load16_lane and converted
 * exactly (infinities and NaNs included), once per 4 blocks instead of one call per scale. ---- */

static inline float bonsai_f16(const uint8_t *p) { return tl_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* The 4 f16 scales at p, p + stride, p + 2·stride, p + 3·stride as f32: loaded into the low halves of u32 lanes. */
static inline v128_t bonsai_scales4(const uint8_t *p, int64_t stride) {
    v128_t h = wasm_i32x4_splat(0);
    h = wasm_v128_load16_lane(p, h, 0);
    h = wasm_v128_load16_lane(p + stride, h, 2);
    h = wasm_v128_load16_lane(p + 2 * stride, h, 4);
    h = wasm_v128_load16_lane(p + 3 * stride, h, 6);
    return f16x4_to_f32_u32(h);
}

/* sum + t_0 + t_1 + t_2 + t_3, left to right: the per-block `sum = sum + d_w·sumi` of 4 blocks in order. */
static inline float bonsai_add4(float sum, v128_t t) {
    float p[4];
    wasm_v128_store(p, t);
    return sum + p[0] + p[1] + p[2] + p[3];
}

/* Q1_0: sp[i] = bytes 2i and 2i + 1 of b, each 8 times (lane l then tests bit l % 8: elements 16i .. 16i + 15 of the
 * block). Built by interleaving b with itself at 8, 16 and 32 bits: patterns V8 emits as single unpack instructions,
 * where a general constant shuffle costs a 16-byte mask materialized per use. */
static inline void bonsai_spreads(v128_t b, v128_t sp[8]) {
    const v128_t lo = wasm_i8x16_shuffle(b, b, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const v128_t hi = wasm_i8x16_shuffle(b, b, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    const v128_t q[4] = {wasm_i16x8_shuffle(lo, lo, 0, 0, 1, 1, 2, 2, 3, 3), wasm_i16x8_shuffle(lo, lo, 4, 4, 5, 5, 6, 6, 7, 7),
                         wasm_i16x8_shuffle(hi, hi, 0, 0, 1, 1, 2, 2, 3, 3), wasm_i16x8_shuffle(hi, hi, 4, 4, 5, 5, 6, 6, 7, 7)};
    for (int i = 0; i < 4; i++) {
        sp[2 * i] = wasm_i32x4_shuffle(q[i], q[i], 0, 0, 1, 1);
        sp[2 * i + 1] = wasm_i32x4_shuffle(q[i], q[i], 2, 2, 3, 3);
    }
}

/* Each lane's own bit of a spread byte: nonzero where the element's sign bit is 1. */
static inline v128_t bonsai_bit(v128_t spread) {
    return wasm_v128_and(spread, wasm_u8x16_make(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128));
}

/* Q2_0: the 64 codes of a block (16 bytes at qs; element 4i + s in bits 2s of byte i) as bytes in element order,
 * minus bias: e[0] = elements 0..15, ..., e[3] = 48..63. Shifts are on u16 lanes; the mask drops what crosses bytes. */
static inline void bonsai_q2_codes(const uint8_t *qs, int bias, v128_t e[4]) {
    const v128_t v = wasm_v128_load(qs), m = wasm_i8x16_splat(3), b = wasm_i8x16_splat((int8_t)bias);
    const v128_t c0 = wasm_i8x16_sub(wasm_v128_and(v, m), b), c1 = wasm_i8x16_sub(wasm_v128_and(wasm_u16x8_shr(v, 2), m), b);
    const v128_t c2 = wasm_i8x16_sub(wasm_v128_and(wasm_u16x8_shr(v, 4), m), b),
                 c3 = wasm_i8x16_sub(wasm_v128_and(wasm_u16x8_shr(v, 6), m), b);
    const v128_t l01 = wasm_i8x16_shuffle(c0, c1, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const v128_t l23 = wasm_i8x16_shuffle(c2, c3, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const v128_t h01 = wasm_i8x16_shuffle(c0, c1, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const v128_t h23 = wasm_i8x16_shuffle(c2, c3, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    e[0] = wasm_i16x8_shuffle(l01, l23, 0, 8, 1, 9, 2, 10, 3, 11);
    e[1] = wasm_i16x8_shuffle(l01, l23, 4, 12, 5, 13, 6, 14, 7, 15);
    e[2] = wasm_i16x8_shuffle(h01, h23, 0, 8, 1, 9, 2, 10, 3, 11);
    e[3] = wasm_i16x8_shuffle(h01, h23, 4, 12, 5, 13, 6, 14, 7, 15);
}

/* The Bonsai dots of a module, BONSAI_Q1_DOT given Q1_SUB(sp, k, x): the exact Σ ±x of sub-block k of the block whose sign bits
 * bonsai_spreads gave as sp (x: that sub-block's 32 activations), BONSAI_Q2_DOT given Q2_SUB(e0, e1, x): the exact Σ (code − 1)·x of 32 elements
 * whose codes minus Q2_BIAS are e0, e1; both as i32x4 partial sums. LINK: static, or empty for exported dots. */
#define BONSAI_Q1_DOT(LINK, Q1_SUB, q1_name)                                                                            \
    /* [s_0, s_1, s_2, s_3] of one Q1_0 block */                                                                       \
    AI v128_t q1_name##_sums(const uint8_t *w, const uint8_t *a) {                                                    \
        v128_t sp[8];                                                                                                  \
        bonsai_spreads(wasm_v128_load(w + 2), sp);                                                                     \
        return reduce4(Q1_SUB(sp, 0, (const int8_t *)(a + 2)), Q1_SUB(sp, 1, (const int8_t *)(a + 36)),                \
                       Q1_SUB(sp, 2, (const int8_t *)(a + 70)), Q1_SUB(sp, 3, (const int8_t *)(a + 104)));             \
    }                                                                                                                  \
    AI float q1_name##_block(const uint8_t *w, const uint8_t *a, float sum) {                                         \
        int32_t s[4];                                                                                                  \
        wasm_v128_store(s, q1_name##_sums(w, a));                                                                      \
        float sumi = bonsai_f16(a) * (float)s[0];                                                                      \
        for (int k = 1; k < 4; k++) sumi = sumi + bonsai_f16(a + 34 * k) * (float)s[k];                               \
        return sum + bonsai_f16(w) * sumi;                                                                             \
    }                                                                                                                  \
    /* 4 blocks: the blocks' sums transposed so that lane j of s[k] is sub-block k of block j (lane j's adds are       \
     * block j's) */                                                                                                   \
    AI float q1_name##_blocks4(const uint8_t *w, const uint8_t *a, float sum) {                                       \
        const v128_t r0 = q1_name##_sums(w, a), r1 = q1_name##_sums(w + 18, a + 136);                                  \
        const v128_t r2 = q1_name##_sums(w + 36, a + 272), r3 = q1_name##_sums(w + 54, a + 408);                       \
        const v128_t t0 = wasm_i32x4_shuffle(r0, r1, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(r0, r1, 2, 6, 3, 7);          \
        const v128_t t2 = wasm_i32x4_shuffle(r2, r3, 0, 4, 1, 5), t3 = wasm_i32x4_shuffle(r2, r3, 2, 6, 3, 7);          \
        const v128_t s[4] = {wasm_i32x4_shuffle(t0, t2, 0, 1, 4, 5), wasm_i32x4_shuffle(t0, t2, 2, 3, 6, 7),           \
                             wasm_i32x4_shuffle(t1, t3, 0, 1, 4, 5), wasm_i32x4_shuffle(t1, t3, 2, 3, 6, 7)};          \
        v128_t sumi = wasm_f32x4_mul(bonsai_scales4(a, 136), wasm_f32x4_convert_i32x4(s[0]));                         \
        for (int k = 1; k < 4; k++)                                                                                    \
            sumi = wasm_f32x4_add(sumi, wasm_f32x4_mul(bonsai_scales4(a + 34 * k, 136), wasm_f32x4_convert_i32x4(s[k]))); \
        return bonsai_add4(sum, wasm_f32x4_mul(bonsai_scales4(w, 18), sumi));                                          \
    }                                                                                                                  \
    LINK float q1_name(const uint8_t *w, const uint8_t *a, int64_t n) {                                               \
        const int64_t nb = n / 128;                                                                                    \
        float sum = 0;                                                                                                 \
        int64_t b = 0;                                                                                                 \
        for (; b + 4 <= nb; b += 4) sum = q1_name##_blocks4(w + 18 * b, a + 136 * b, sum);                             \
        for (; b < nb; b++) sum = q1_name##_block(w + 18 * b, a + 136 * b, sum);                                       \
        return sum;                                                                                                    \
    }

#define BONSAI_Q2_DOT(LINK, Q2_SUB, Q2_BIAS, q2_name)                                                                  \
    /* Q2_0 block j: its two sub-blocks' partial sums into s[0], s[1] */                                               \
    AI void q2_name##_sums(const uint8_t *w, const uint8_t *a, v128_t s[2]) {                                         \
        v128_t e[4];                                                                                                   \
        bonsai_q2_codes(w + 2, Q2_BIAS, e);                                                                            \
        s[0] = Q2_SUB(e[0], e[1], (const int8_t *)(a + 2));                                                            \
        s[1] = Q2_SUB(e[2], e[3], (const int8_t *)(a + 36));                                                           \
    }                                                                                                                  \
    /* 4 blocks: s01 = [s_0, s_1 of block 0, s_0, s_1 of block 1] (the activation blocks' order), s23 likewise */       \
    AI float q2_name##_blocks4(const uint8_t *w, const uint8_t *a, float sum) {                                       \
        v128_t s[8];                                                                                                   \
        for (int j = 0; j < 4; j++) q2_name##_sums(w + 18 * j, a + 68 * j, s + 2 * j);                                 \
        const v128_t p01 = wasm_f32x4_mul(bonsai_scales4(a, 34), wasm_f32x4_convert_i32x4(reduce4(s[0], s[1], s[2], s[3]))); \
        const v128_t p23 =                                                                                             \
            wasm_f32x4_mul(bonsai_scales4(a + 136, 34), wasm_f32x4_convert_i32x4(reduce4(s[4], s[5], s[6], s[7])));   \
        const v128_t sumi = wasm_f32x4_add(wasm_i32x4_shuffle(p01, p23, 0, 2, 4, 6), wasm_i32x4_shuffle(p01, p23, 1, 3, 5, 7)); \
        return bonsai_add4(sum, wasm_f32x4_mul(bonsai_scales4(w, 18), sumi));                                          \
    }                                                                                                                  \
    LINK float q2_name(const uint8_t *w, const uint8_t *a, int64_t n) {                                               \
        const int64_t nb = n / 64;                                                                                     \
        float sum = 0;                                                                                                 \
        int64_t b = 0;                                                                                                 \
        for (; b + 4 <= nb; b += 4) sum = q2_name##_blocks4(w + 18 * b, a + 68 * b, sum);                              \
        for (; b < nb; b++) {                                                                                          \
            v128_t s[2];                                                                                               \
            q2_name##_sums(w + 18 * b, a + 68 * b, s);                                                                 \
            const uint8_t *ab = a + 68 * b;                                                                            \
            const float sumi = bonsai_f16(ab) * (float)hsum_i32(s[0]) + bonsai_f16(ab + 34) * (float)hsum_i32(s[1]);   \
            sum = sum + bonsai_f16(w + 18 * b) * sumi;                                                                 \
        }                                                                                                              \
        return sum;                                                                                                    \
    }

/* The SIMD128 entries the relaxed table reuses (no relaxed instruction would be exact or faster there). */
void tl_wasm128_quantize_i8(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum);
float tl_wasm128_dot_tq1(const uint8_t *row, const tl_block_q8k *a, int64_t n);
float tl_wasm128_dot_f16(const uint16_t *w, const float *x, int64_t n);
float tl_wasm128_dot_f32(const float *w, const float *x, int64_t n);
float tl_wasm128_dot_q8_0(const uint8_t *w, const uint8_t *a, int64_t n);
void tl_wasm128_gemm_i8_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t y_stride);
void tl_wasm128_attn_pv(float *out, const float *prob, const uint16_t *v, int64_t n_pos, int64_t stride, int64_t hd);
void tl_wasm128_gemm_f16(const uint16_t *w, int64_t n, int64_t r0, int64_t r1, const float *x, int T, float *y, int64_t ys);

/* The int4 head's epilogue for NQ row quads from row0 and TT tokens from t0 (tot[NQ·t + i]: exact int32 sums):
 * the scalar formula ((float)Σ / scale_t) · d_row, lane by lane. */
static inline void i4_store_rows(const v128_t *tot, int NQ, int TT, const tl_acts *a, int t0, const float *drow, int64_t row0,
                                 float *y, int64_t ys) {
    for (int t = 0; t < TT; t++) {
        const v128_t sc = wasm_f32x4_splat(a->scale[t0 + t]);
        for (int i = 0; i < NQ; i++) {
            const int64_t row = row0 + 4 * i;
            const v128_t f = wasm_f32x4_div(wasm_f32x4_convert_i32x4(tot[NQ * t + i]), sc);
            wasm_v128_store(y + (int64_t)(t0 + t) * ys + row, wasm_f32x4_mul(f, wasm_v128_load(drow + row)));
        }
    }
}

#endif
