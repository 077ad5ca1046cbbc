/* Relaxed-SIMD kernels (-mrelaxed-simd; the separate relaxed WASI module, TERNLM_WASM_RELAXED).
 *
 * i32x4.relaxed_dot_i8x16_i7x16_add multiplies 16 int8 activations by 16 operands of 7 bits and adds groups of 4
 * into i32 lanes. Its result is implementation-defined only when an operand's top bit is set or when the 16-bit
 * pair sums it may form overflow; ternary codes are 0..3, so |a·b| <= 384 and a pair <= 768: every engine gives the
 * exact integer, equal to the scalar reference (Bonsai Q2_0's codes 0..3 too). Codes come straight out of 16 code bytes: a 16-bit shift then a mask
 * of 3 per byte (bits shifted across a byte boundary are masked away). Tiles and reductions are as in wasm128.c;
 * entries with no exact relaxed form (TQ1_0's base-3 digits, signed Q8_0 weights, float dots) are SIMD128's.
 * Relaxed SIMD is tested in Chromium only: Node 20 miscomputes this dot (../shared/specs/toolchain.md §4). */
#include <wasm_simd128.h>

#include "../runtime/tensor_types.h"
#include "exp_row.h"
#include "paths.h"
#include "repack.h"
#include "wasm_util.h"

static inline v128_t rdot(v128_t acc, v128_t x, v128_t codes) {
    return wasm_i32x4_relaxed_dot_i8x16_i7x16_add(x, codes, acc);
}

/* Codes of 64 elements from 16 bytes: group g sits at bits 6 - 2g of every byte (I2_S), at bits 2s for TQ2_0. */
static inline v128_t codes_at(v128_t v, int shift) {
    const v128_t m3 = wasm_i8x16_splat(3);
    return wasm_v128_and(shift ? wasm_u16x8_shr(v, shift) : v, m3);
}

/* One token, four rows: the 4 activation vectors of each 16-byte step serve all 4 rows. */
static void i2s_rows4_tok1(const uint8_t *const row[4], const int8_t *q, int64_t nb, int32_t out[4]) {
    v128_t a[4];
    for (int i = 0; i < 4; i++) a[i] = wasm_i32x4_splat(0);
    for (int64_t k = 0; k < nb; k++)
        for (int h = 0; h < 32; h += 16) {
            const int8_t *xk = q + 128 * k + h;
            const v128_t x0 = wasm_v128_load(xk), x1 = wasm_v128_load(xk + 32), x2 = wasm_v128_load(xk + 64),
                         x3 = wasm_v128_load(xk + 96);
            for (int i = 0; i < 4; i++) {
                const v128_t v = wasm_v128_load(row[i] + 32 * k + h);
                a[i] = rdot(rdot(rdot(rdot(a[i], x0, codes_at(v, 6)), x1, codes_at(v, 4)), x2, codes_at(v, 2)), x3,
                            codes_at(v, 0));
            }
        }
    wasm_v128_store(out, reduce4(a[0], a[1], a[2], a[3]));
}

/* Prompts: two rows x four tokens; each code group is decoded once for four tokens. */
static void i2s_rows2_tok4(const uint8_t *ra, const uint8_t *rb, const int8_t *const x[4], int64_t nb, v128_t A[4],
                           v128_t B[4]) {
    for (int t = 0; t < 4; t++) A[t] = B[t] = wasm_i32x4_splat(0);
    for (int64_t k = 0; k < nb; k++)
        for (int h = 0; h < 32; h += 16) {
            const v128_t va = wasm_v128_load(ra + 32 * k + h), vb = wasm_v128_load(rb + 32 * k + h);
            for (int g = 0; g < 4; g++) {
                const v128_t ca = codes_at(va, 6 - 2 * g), cb = codes_at(vb, 6 - 2 * g);
                const int64_t e = 128 * k + 32 * g + h;
                for (int t = 0; t < 4; t++) {
                    const v128_t xv = wasm_v128_load(x[t] + e);
                    A[t] = rdot(A[t], xv, ca);
                    B[t] = rdot(B[t], xv, cb);
                }
            }
        }
}

static void i2s_gemm(const uint8_t *w, int64_t n, int64_t r0, int64_t r1, const int8_t *q, int T, int32_t *acc,
                     int64_t acc_stride) {
    const int64_t nb = n / 128, row_bytes = n / 4;
    if (T == 1) {
        for (int64_t r = r0; r < r1; r += 4) {
            const uint8_t *row[4];
            for (int i = 0; i < 4; i++) row[i] = w + (r + i < r1 ? r + i : r1 - 1) * row_bytes; /* tail rows repeat */
            int32_t out[4];
            i2s_rows4_tok1(row, q, nb, out);
            for (int i = 0; i < 4 && r + i < r1; i++) acc[r + i] = out[i];
        }
        return;
    }
    for (int64_t r = r0; r < r1; r += 2) {
        const int two = r + 1 < r1;
        const uint8_t *ra = w + r * row_bytes, *rb = two ? ra + row_bytes : ra;
        for (int t0 = 0; t0 < T; t0 += 4) {
            const int8_t *x[4];
            for (int t = 0; t < 4; t++) x[t] = q + (int64_t)(t0 + t < T ? t0 + t : T - 1) * n; /* past T: not stored */
            v128_t A[4], B[4];
            i2s_rows2_tok4(ra, rb, x, nb, A, B);
            int32_t sa[4], sb[4];
            wasm_v128_store(sa, reduce4(A[0], A[1], A[2], A[3]));
            wasm_v128_store(sb, reduce4(B[0], B[1], B[2], B[3]));
            for (int t = 0; t < 4 && t0 + t < T; t++) {
                acc[(int64_t)(t0 + t) * acc_stride + r] = sa[t];
                if (two) acc[(int64_t)(t0 + t) * acc_stride + r + 1] = sb[t];
            }
        }
    }
}

/* TQ2_0 block: Σ q·a - Σ a; element 128h + 32s + j is byte 32h + j, bits 2s. */
static inline v128_t tq2_block(const uint8_t *qs, const tl_block_q8k *a) {
    v128_t acc = wasm_i32x4_sub(wasm_i32x4_splat(0), bsum_part(a));
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 32; j += 16) {
            const v128_t v = wasm_v128_load(qs + 32 * h + j);
            const int8_t *x = a->qs + 128 * h + j;
            for (int s = 0; s < 4; s++) acc = rdot(acc, wasm_v128_load(x + 32 * s), codes_at(v, 2 * s));
        }
    return acc;
}

static float dot_tq2(const uint8_t *row, const tl_block_q8k *a, int64_t n) {
    const int64_t nb = n / 256;
    float sum = 0;
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const uint8_t *r = row + 66 * b;
        const v128_t sumi = reduce4(tq2_block(r, a + b), tq2_block(r + 66, a + b + 1), tq2_block(r + 132, a + b + 2),
                                    tq2_block(r + 198, a + b + 3));
        const v128_t d = wasm_f32x4_mul(wasm_f32x4_make(a[b].d, a[b + 1].d, a[b + 2].d, a[b + 3].d), scales4(r + 64, 66));
        sum = add4_in_order(sum, sumi, d);
    }
    for (; b < nb; b++) {
        const uint8_t *r = row + 66 * b;
        sum += (float)hsum_i32(tq2_block(r, a + b)) * (a[b].d * tl_f16_to_f32((uint16_t)(r[64] | r[65] << 8)));
    }
    return sum;
}

/* ---- GEMMs on 16-row groups (repack.h): a v128 of a chunk is 4 rows x 4 codes of one shift, so the relaxed dot
 * with the token's 4 activations splat (`load32_splat`, no preparation) leaves each row's exact sum in its own
 * lane: no horizontal sums at all. One token takes the whole group per pass; tiles of several tokens take half a
 * group, so that their accumulators stay in registers. ---- */

#define RX_NV(TT) ((TT) == 1 ? 4 : 2) /* quarters (4 rows) per pass */

/* NV quarters from g (the first one's chunk 0), nch chunks: acc[NV·t + q] += Σ code·x, lane r = row 4q + r. */
AI void rx_part(const uint8_t *g, int NV, const int8_t *const *x, int TT, int64_t nch, v128_t *acc) {
    v128_t a[4 * R16_TT];
    for (int i = 0; i < NV * TT; i++) a[i] = acc[i];
    for (int64_t c = 0; c < nch; c++) {
        v128_t v[4];
        for (int q = 0; q < NV; q++) v[q] = wasm_v128_load(g + 64 * c + 16 * q);
        for (int s = 0; s < 4; s++) {
            v128_t code[4];
            for (int q = 0; q < NV; q++) code[q] = codes_at(v[q], 2 * s);
            for (int t = 0; t < TT; t++) {
                const v128_t b = wasm_v128_load32_splat(x[t] + 16 * c + 4 * s);
                for (int q = 0; q < NV; q++) a[NV * t + q] = rdot(a[NV * t + q], b, code[q]);
            }
        }
    }
    for (int i = 0; i < NV * TT; i++) acc[i] = a[i];
}

/* The exact Σ code·x of 16 rows x TT tokens over nch chunks from g into sums[t][4] (x[t]: chunk 0's activations). */
AI void rx_group(const uint8_t *g, const int8_t *const *x, int TT, int64_t nch, v128_t sums[][4]) {
    const int NV = RX_NV(TT);
    v128_t acc[4 * R16_TT];
    for (int h = 0; h < 4 / NV; h++) {
        for (int i = 0; i < NV * TT; i++) acc[i] = wasm_i32x4_splat(0);
        rx_part(g + 16 * NV * h, NV, x, TT, nch, acc);
        for (int t = 0; t < TT; t++)
            for (int q = 0; q < NV; q++) sums[t][NV * h + q] = acc[NV * t + q];
    }
}

/* The codes of inputs [k0, k1) (multiples of 16) in codes_group's form: chunk c of 16 inputs is 64 bytes. */
AI void rx_range(const uint8_t *g, const int8_t *const *x, int TT, int64_t k0, int64_t k1, v128_t sums[][4]) {
    rx_group(g + 4 * k0, x, TT, (k1 - k0) / 16, sums);
}

R16_CODE_TILES(rx_range)

static R16_GEMM(gemm_i2s_r16, i2s_tile)
static R16_GEMM(gemm_tq_r16, tq_tile)

/* ---- int4 rows (the 4-bit head, repack.h): the low nibbles of a quarter's 16 bytes are 4 rows x inputs 8p..8p+3 of
 * pair chunk p, the high nibbles inputs 8p+4..8p+7. Stored values q + 8 are 0..15, exact 7-bit operands, and a
 * 16-bit pair is at most 2·15·128 = 3840, so the relaxed dot with 4 activations splat from the int8 row leaves each
 * row's exact Σ (q + 8)·x in its own lane on every engine. A block's sum starts at −8·Σx (tl_i4_offsets) and is
 * scaled by the rows' sub-scales in i32. ---- */

/* Quarters per pass, as RX_NV. One token in Chromium (head-shaped weight out of cache, 32768 rows): 3.2-3.3 ms with
 * the whole group a pass, 4.3-4.6 with half, 5.1-5.3 with a quarter. */
#define RX_I4_NQ(TT) ((TT) == 1 ? 4 : 2)

/* One pair chunk: acc[NQ·t + i] += Σ (q + 8)·x of quarter i at src + 16i, x[t] at the chunk's first input. */
AI void rx_i4_chunk(const uint8_t *src, int NQ, const int8_t *const *x, int TT, v128_t *acc) {
    const v128_t m15 = wasm_i8x16_splat(15);
    for (int i = 0; i < NQ; i++) {
        const v128_t v = wasm_v128_load(src + 16 * i);
        const v128_t lo = wasm_v128_and(v, m15), hi = wasm_v128_and(wasm_u16x8_shr(v, 4), m15);
        for (int t = 0; t < TT; t++)
            acc[NQ * t + i] =
                rdot(rdot(acc[NQ * t + i], wasm_v128_load32_splat(x[t]), lo), wasm_v128_load32_splat(x[t] + 4), hi);
    }
}

/* The u8 sub-scales of NQ quarters (4·NQ rows at s) as i32 lanes. */
AI void rx_i4_subs(const uint8_t *s, int NQ, v128_t *sv) {
    const v128_t v = NQ == 4 ? wasm_v128_load(s) : wasm_v128_load64_zero(s);
    const v128_t l = wasm_u16x8_extend_low_u8x16(v), h = wasm_u16x8_extend_high_u8x16(v);
    sv[0] = wasm_u32x4_extend_low_u16x8(l), sv[1] = wasm_u32x4_extend_high_u16x8(l);
    if (NQ == 4) sv[2] = wasm_u32x4_extend_low_u16x8(h), sv[3] = wasm_u32x4_extend_high_u16x8(h);
}

/* y = ((float)Σ_b s_b·(Σ (q + 8)·x − 8·Σx) / scale_t) · d_row for 16 rows x TT tokens (off: the tile's block offsets,
 * n / 32 apart per token). */
AI void rx_i4_tile(const tl_r16 *w, int64_t r, const tl_acts *a, int t0, int TT, const int32_t *off, float *y,
                   int64_t ys) {
    const int64_t n = w->ne0, nb = n / 32;
    const int NQ = RX_I4_NQ(TT);
    const uint8_t *g = w->data + (r / 16) * n * 8, *sg = w->sub + (r / 16) * nb * 16;
    for (int q0 = 0; q0 < 4; q0 += NQ) {
        v128_t tot[4 * R16_TT];
        for (int i = 0; i < NQ * TT; i++) tot[i] = wasm_i32x4_splat(0);
        for (int64_t b = 0; b < nb; b++) {
            v128_t blk[4 * R16_TT];
            for (int t = 0; t < TT; t++)
                for (int i = 0; i < NQ; i++) blk[NQ * t + i] = wasm_i32x4_splat(off[t * nb + b]);
            for (int p = 0; p < 4; p++) {
                const int8_t *xp[R16_TT];
                for (int t = 0; t < TT; t++) xp[t] = a->q + (int64_t)(t0 + t) * n + 32 * b + 8 * p;
                rx_i4_chunk(g + 64 * (4 * b + p) + 16 * q0, NQ, xp, TT, blk);
            }
            v128_t sv[4];
            rx_i4_subs(sg + 16 * b + 4 * q0, NQ, sv);
            for (int t = 0; t < TT; t++)
                for (int i = 0; i < NQ; i++)
                    tot[NQ * t + i] = wasm_i32x4_add(tot[NQ * t + i], wasm_i32x4_mul(blk[NQ * t + i], sv[i]));
        }
        i4_store_rows(tot, NQ, TT, a, t0, w->drow, r + 4 * q0, y, ys);
    }
}

/* Block offsets for TL_I4_TOKENS tokens at a time (32 KB of stack at TL_I4_MAX_NE0), then every group once per
 * batch, R16_TT tokens a tile. */
static void gemm_i4_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    const int64_t n = w->ne0, nb = n / 32;
    int32_t off[TL_I4_TOKENS * (TL_I4_MAX_NE0 / 32)];
    for (int tb = 0; tb < a->T; tb += TL_I4_TOKENS) {
        const int nt = a->T - tb < TL_I4_TOKENS ? a->T - tb : TL_I4_TOKENS;
        for (int t = 0; t < nt; t++) tl_i4_offsets(a->q + (int64_t)(tb + t) * n, n, off + t * nb);
        for (int64_t r = r0; r < r1; r += 16)
            for (int t0 = 0; t0 < nt; t0 += R16_TT) {
                const int tt = nt - t0 < R16_TT ? nt - t0 : R16_TT;
                const int32_t *o = off + t0 * nb;
                switch (tt) {
                case 1: rx_i4_tile(w, r, a, tb + t0, 1, o, y, ys); break;
                case 2: rx_i4_tile(w, r, a, tb + t0, 2, o, y, ys); break;
                case 3: rx_i4_tile(w, r, a, tb + t0, 3, o, y, ys); break;
                default: rx_i4_tile(w, r, a, tb + t0, 4, o, y, ys); break;
                }
            }
    }
}

/* ---- Bonsai Q2_0 · Q8_0 (the float part and its order in wasm_util.h): codes 0..3 are exact relaxed operands, and
 * Σ (code − 1)·x = Σ code·x − Σ x, each Σ a relaxed dot. Q1_0 keeps SIMD128's dot: its relaxed form, 2·Σ bit·x − Σ x,
 * ran slower in Chromium (docs/PERFORMANCE.md). ---- */

/* Σ c0·x0 + c1·x1 and Σ x0 + x1 over 32 elements, as i32x4 partial sums. */
AI v128_t rx_dot32(v128_t x0, v128_t c0, v128_t x1, v128_t c1, v128_t *sum_x) {
    const v128_t zero = wasm_i32x4_splat(0), one = wasm_i8x16_splat(1);
    *sum_x = rdot(rdot(zero, x0, one), x1, one);
    return rdot(rdot(zero, x0, c0), x1, c1);
}

AI v128_t rx_q2_sub(v128_t e0, v128_t e1, const int8_t *x) {
    v128_t sx;
    const v128_t cx = rx_dot32(wasm_v128_load(x), e0, wasm_v128_load(x + 16), e1, &sx);
    return wasm_i32x4_sub(cx, sx);
}

BONSAI_Q2_DOT(static, rx_q2_sub, 0, dot_q2_0)

static const tl_kernels k_wasm_relaxed = {
    .exp_minus_max = tl_exp_minus_max_row,
    .name = "wasm_relaxed",
    .quantize_i8 = tl_wasm128_quantize_i8,
    .quantize_q8k = tl_scalar_quantize_q8k,
    .i2s_gemm = i2s_gemm,
    .dot_tq2 = dot_tq2,
    .dot_tq1 = tl_wasm128_dot_tq1,
    .dot_f16 = tl_wasm128_dot_f16,
    .dot_f32 = tl_wasm128_dot_f32,
    .dot_q8_0 = tl_wasm128_dot_q8_0,
    .attn_pv = tl_wasm128_attn_pv,
    .dot_q1_0 = tl_wasm128_dot_q1_0, /* a relaxed form (2·Σ bit·x − Σ x) measured slower in Chromium */
    .dot_q2_0 = dot_q2_0,
    .gemm_i2s_r16 = gemm_i2s_r16,
    .gemm_tq_r16 = gemm_tq_r16,
    .gemm_i8_r16 = tl_wasm128_gemm_i8_r16, /* int8 weights use all 8 bits: no exact relaxed dot; SIMD128's */
    .gemm_i4_r16 = gemm_i4_r16,
    .gemm_f16 = tl_wasm128_gemm_f16,       /* float products: SIMD128's */
};

const tl_kernels *tl_kernels_wasm_relaxed_table(void) { return &k_wasm_relaxed; }
