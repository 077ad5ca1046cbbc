/* Issue 12, tenth session: does an exact table-lookup (T-MAC / bitnet.cpp TL style) ternary GEMV beat wasm128's
 * gemm_i2s_r16 in plain SIMD128? A micro-benchmark with its own prototype kernels and layouts (nothing here is used by
 * the runtime), on the 2B4T shapes, weights out of cache, old and new alternating, equal output checksums (same bits).
 *
 * Two prototype layouts, both 2 bits per weight in 16-row groups of 4n bytes (the prefix rule of repack.h: rows [0, R)
 * fill the first R·n/4 bytes), chunk c (inputs 16c..16c+15) 64 bytes = 4 vectors, byte r of vector m = row r:
 *   pairs:  bits 2i..2i+1 hold the code of input 16c + 4m + i, so a nibble is the index c0 | c1 << 2 of an input pair;
 *           per token each pair has a 16-entry table of c0·x0 + c1·x1 (32 bytes: low bytes, high bytes).
 *   planes: bit i holds bit 0 of the code of input 16c + 4m + i, bit 4 + i its bit 1, so a nibble indexes the 16
 *           subsets of 4 inputs; per token each quad has one table of Σ_{i in e} x_i (32 bytes) that both planes use,
 *           and Σ code·x = Σ plane0 + 2·Σ plane1 (code 3 is exact too).
 * A lookup is i8x16.swizzle(table, index): 16 rows at once. Entries exceed int8 (pairs: [-768, 762], planes: [-512,
 * 508]), so each table is split into low and high bytes and an interleave of the two lookups gives exact i16 values of
 * 16 rows, summed in i16 for 32 pairs / quads (|sum| < 2^15), then in i32. "packed" is the planes layout with
 * smaller tables (5 bytes an input instead of 8): the 2-bit high parts of 4 quads share one vector.
 *
 * Build and run (WASI, V8 through node:wasi; time it under the exclusive CPU lock):
 *   clang-19 --target=wasm32-wasi -O3 -msimd128 -D_WASI_EMULATED_PROCESS_CLOCKS -Iruntime tools/bench_tl.c \
 *     build-wasi/libternlm.a -lm -lwasi-emulated-process-clocks -o /tmp/btl.wasm
 *   node --no-warnings node/ternlm-wasi.mjs --dir=/ /tmp/btl.wasm MODE [reps] [arg] [kblock rchunk]
 * MODE: exact (each kernel against the scalar reference on codes 0..3 and activations -128..127), shapes (one
 * token, the three 2B4T shapes), tokens (arg = T, bit planes in tiles of 2), token (a decode token's GEMVs over 10
 * layers; arg 2: the packed tables instead of planes), fold (arg = inputs: the bit-plane tables folded to that many
 * inputs, wrong sums, timing only). kblock > 0 runs packed rows whose tables exceed 24 KB in input blocks of kblock
 * over rchunk groups (measured slower; kept to show it). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wasm_simd128.h>

#include "../simd/kernels.h"
#include "../simd/repack.h"

#define AI __attribute__((always_inline)) static inline

/* -DBENCH_TL_RELAXED (with -mrelaxed-simd, against a relaxed library): lookups by i8x16.relaxed_swizzle, which is
 * defined alike on every engine for indices 0..15 (all these are), and wasm_relaxed's kernels as the baseline. */
#ifdef BENCH_TL_RELAXED
#define SWZ wasm_i8x16_relaxed_swizzle
#define SWZ_NAME "i8x16.relaxed_swizzle"
#define BASELINE "wasm_relaxed"
#else
#define SWZ wasm_i8x16_swizzle
#define SWZ_NAME "i8x16.swizzle"
#define BASELINE "wasm128"
#endif
#define COPIES 32 /* copies of each shape's weights, one a call: 52-141 MB, beyond the 32 MB L3 */

#include "bench_util.h"

/* I2_S code of input k of a row (file layout: 128-input blocks of 32 bytes, element 32g + j at bits 6 - 2g of byte j). */
static int i2s_code(const uint8_t *row, int64_t k) {
    return (row[(k / 128) * 32 + k % 32] >> (6 - 2 * ((k % 128) / 32))) & 3;
}

/* Byte of row r, input k in either prototype layout. */
static uint8_t *proto_byte(uint8_t *dst, int64_t n, int64_t r, int64_t k) {
    return dst + (r / 16) * n * 4 + 64 * (k / 16) + 16 * ((k % 16) / 4) + r % 16;
}

static void repack_pairs(const uint8_t *src, int64_t n, int64_t R, uint8_t *dst) {
    memset(dst, 0, (size_t)(n * R / 4));
    for (int64_t r = 0; r < R; r++)
        for (int64_t k = 0; k < n; k++) *proto_byte(dst, n, r, k) |= (uint8_t)(i2s_code(src + r * (n / 4), k) << (2 * (k % 4)));
}

static void repack_planes(const uint8_t *src, int64_t n, int64_t R, uint8_t *dst) {
    memset(dst, 0, (size_t)(n * R / 4));
    for (int64_t r = 0; r < R; r++)
        for (int64_t k = 0; k < n; k++) {
            const int code = i2s_code(src + r * (n / 4), k), i = (int)(k % 4);
            *proto_byte(dst, n, r, k) |= (uint8_t)(((code & 1) << i) | ((code >> 1) << (4 + i)));
        }
}

/* Sixteen i16 entries (e0: entries 0-7, e1: 8-15) as 16 low bytes, then 16 high bytes, at t. */
AI void store_split(v128_t e0, v128_t e1, uint8_t *t) {
    wasm_v128_store(t, wasm_i8x16_shuffle(e0, e1, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30));
    wasm_v128_store(t + 16, wasm_i8x16_shuffle(e0, e1, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31));
}

/* Pair tables of one token: pair p at tab + 32p, entry c0 + 4·c1 = c0·x0 + c1·x1. */
static void tables_pairs(const int8_t *x, int64_t n, uint8_t *tab) {
    const v128_t k0 = wasm_i16x8_make(0, 1, 2, 3, 0, 1, 2, 3), k1 = wasm_i16x8_make(0, 0, 0, 0, 1, 1, 1, 1),
                 k2 = wasm_i16x8_make(2, 2, 2, 2, 3, 3, 3, 3);
    for (int64_t p = 0; p < n / 2; p++) {
        const v128_t x0 = wasm_i16x8_splat(x[2 * p]), x1 = wasm_i16x8_splat(x[2 * p + 1]);
        const v128_t a = wasm_i16x8_mul(x0, k0);
        store_split(wasm_i16x8_add(a, wasm_i16x8_mul(x1, k1)), wasm_i16x8_add(a, wasm_i16x8_mul(x1, k2)), tab + 32 * p);
    }
}

/* Plane tables of one token: quad j (inputs 4j..4j+3) at tab + 32j, entry e = Σ_{bit i of e} x_{4j+i}. */
static void tables_planes(const int8_t *x, int64_t n, uint8_t *tab) {
    const v128_t b0 = wasm_i16x8_make(0, 1, 0, 1, 0, 1, 0, 1), b1 = wasm_i16x8_make(0, 0, 1, 1, 0, 0, 1, 1),
                 b2 = wasm_i16x8_make(0, 0, 0, 0, 1, 1, 1, 1);
    for (int64_t j = 0; j < n / 4; j++) {
        const int8_t *q = x + 4 * j;
        const v128_t e0 = wasm_i16x8_add(wasm_i16x8_add(wasm_i16x8_mul(wasm_i16x8_splat(q[0]), b0),
                                                        wasm_i16x8_mul(wasm_i16x8_splat(q[1]), b1)),
                                         wasm_i16x8_mul(wasm_i16x8_splat(q[2]), b2));
        store_split(e0, wasm_i16x8_add(e0, wasm_i16x8_splat(q[3])), tab + 32 * j);
    }
}

/* Packed plane tables (5 bytes an input): per 16 inputs, 80 bytes: the low bytes of quads 0-3 (16 each) of
 * u = Σ_{bit i of e} x + 512 (in [0, 1020]), then one vector whose byte e holds the 2-bit high part u >> 8 of quad t
 * in bits 2t..2t+1. The +512 keeps the high parts unsigned; it is taken out once per row at the end. */
static void tables_packed(const int8_t *x, int64_t n, uint8_t *tab) {
    const v128_t b0 = wasm_i16x8_make(0, 1, 0, 1, 0, 1, 0, 1), b1 = wasm_i16x8_make(0, 0, 1, 1, 0, 0, 1, 1),
                 b2 = wasm_i16x8_make(0, 0, 0, 0, 1, 1, 1, 1), bias = wasm_i16x8_splat(512);
    for (int64_t J = 0; J < n / 16; J++) {
        uint8_t *t = tab + 80 * J;
        v128_t hp = wasm_i8x16_splat(0);
        for (int q = 0; q < 4; q++) {
            const int8_t *x4 = x + 16 * J + 4 * q;
            const v128_t e0 = wasm_i16x8_add(wasm_i16x8_add(wasm_i16x8_add(wasm_i16x8_mul(wasm_i16x8_splat(x4[0]), b0),
                                                                           wasm_i16x8_mul(wasm_i16x8_splat(x4[1]), b1)),
                                                            wasm_i16x8_mul(wasm_i16x8_splat(x4[2]), b2)),
                                             bias);
            const v128_t e1 = wasm_i16x8_add(e0, wasm_i16x8_splat(x4[3]));
            wasm_v128_store(t + 16 * q, wasm_i8x16_shuffle(e0, e1, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30));
            const v128_t hi = wasm_i8x16_shuffle(e0, e1, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            hp = wasm_v128_or(hp, wasm_i16x8_shl(hi, 2 * q)); /* bytes 0..3 shifted by <= 6: no carry into the next */
        }
        wasm_v128_store(t + 64, hp);
    }
}

/* Rows 0-7 and 8-15 of the exact i16 values whose low bytes are lo and high bytes hi. */
AI v128_t rows_lo(v128_t lo, v128_t hi) {
    return wasm_i8x16_shuffle(lo, hi, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
}
AI v128_t rows_hi(v128_t lo, v128_t hi) {
    return wasm_i8x16_shuffle(lo, hi, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
}

/* s[4] (4 rows a vector) += the i16 sums of rows 0-7 (a0) and 8-15 (a1), plus twice b0 / b1. */
AI void flush(v128_t s[4], v128_t a0, v128_t a1, v128_t b0, v128_t b1) {
    s[0] = wasm_i32x4_add(s[0], wasm_i32x4_add(wasm_i32x4_extend_low_i16x8(a0), wasm_i32x4_shl(wasm_i32x4_extend_low_i16x8(b0), 1)));
    s[1] = wasm_i32x4_add(s[1], wasm_i32x4_add(wasm_i32x4_extend_high_i16x8(a0), wasm_i32x4_shl(wasm_i32x4_extend_high_i16x8(b0), 1)));
    s[2] = wasm_i32x4_add(s[2], wasm_i32x4_add(wasm_i32x4_extend_low_i16x8(a1), wasm_i32x4_shl(wasm_i32x4_extend_low_i16x8(b1), 1)));
    s[3] = wasm_i32x4_add(s[3], wasm_i32x4_add(wasm_i32x4_extend_high_i16x8(a1), wasm_i32x4_shl(wasm_i32x4_extend_high_i16x8(b1), 1)));
}

/* One pair's lookups for 16 rows added to a0 / a1. */
AI void pair_step(v128_t idx, const uint8_t *t, v128_t *a0, v128_t *a1) {
    const v128_t lo = SWZ(wasm_v128_load(t), idx), hi = SWZ(wasm_v128_load(t + 16), idx);
    *a0 = wasm_i16x8_add(*a0, rows_lo(lo, hi));
    *a1 = wasm_i16x8_add(*a1, rows_hi(lo, hi));
}

/* Σ code·x of the 16 rows of group g, pair layout (n % 64 == 0). */
static void pairs_group(const uint8_t *g, const uint8_t *tab, int64_t n, v128_t s[4]) {
    const v128_t m4 = wasm_i8x16_splat(0x0F), z = wasm_i16x8_splat(0);
    for (int i = 0; i < 4; i++) s[i] = wasm_i32x4_splat(0);
    for (int64_t k = 0; k < n; k += 64) { /* 32 pairs: |sum| <= 32·768 < 2^15 */
        v128_t a0 = z, a1 = z;
        const uint8_t *gk = g + 4 * k, *tk = tab + 16 * k;
        for (int m = 0; m < 16; m++) {
            const v128_t w = wasm_v128_load(gk + 16 * m);
            pair_step(wasm_v128_and(w, m4), tk + 64 * m, &a0, &a1);
            pair_step(wasm_v128_and(wasm_u16x8_shr(w, 4), m4), tk + 64 * m + 32, &a0, &a1);
        }
        flush(s, a0, a1, z, z);
    }
}

/* Σ code·x of the 16 rows of group g, plane layout (n % 128 == 0): plane 0 into a0 / a1, plane 1 into b0 / b1
 * (weighted 2 at the flush). fold > 0 folds the table index to fold inputs (the footprint experiment). */
static void planes_group(const uint8_t *g, const uint8_t *tab, int64_t n, int64_t fold, v128_t s[4]) {
    const v128_t m4 = wasm_i8x16_splat(0x0F), z = wasm_i16x8_splat(0);
    for (int i = 0; i < 4; i++) s[i] = wasm_i32x4_splat(0);
    for (int64_t k = 0; k < n; k += 128) { /* 32 quads: |sum| <= 32·512 < 2^15 per plane */
        v128_t a0 = z, a1 = z, b0 = z, b1 = z;
        const uint8_t *gk = g + 4 * k, *tk = tab + 8 * (fold ? k % fold : k);
        for (int m = 0; m < 32; m++) {
            const v128_t w = wasm_v128_load(gk + 16 * m);
            const v128_t tl = wasm_v128_load(tk + 32 * m), th = wasm_v128_load(tk + 32 * m + 16);
            const v128_t i0 = wasm_v128_and(w, m4), i1 = wasm_v128_and(wasm_u16x8_shr(w, 4), m4);
            const v128_t l0 = SWZ(tl, i0), h0 = SWZ(th, i0);
            const v128_t l1 = SWZ(tl, i1), h1 = SWZ(th, i1);
            a0 = wasm_i16x8_add(a0, rows_lo(l0, h0)), a1 = wasm_i16x8_add(a1, rows_hi(l0, h0));
            b0 = wasm_i16x8_add(b0, rows_lo(l1, h1)), b1 = wasm_i16x8_add(b1, rows_hi(l1, h1));
        }
        flush(s, a0, a1, b0, b1);
    }
}

/* As planes_group with the packed tables: the high parts of 4 quads share one vector and one lookup per index.
 * Inputs [k0, k1) (multiples of 128) added to s[4], the +512 of each lookup still in. */
static void packed_part(const uint8_t *g, const uint8_t *tab, int64_t k0, int64_t k1, v128_t s[4]) {
    const v128_t m4 = wasm_i8x16_splat(0x0F), z = wasm_i16x8_splat(0);
    for (int64_t k = k0; k < k1; k += 128) { /* 32 quads: 32·1020 < 2^15 per plane */
        v128_t a0 = z, a1 = z, b0 = z, b1 = z;
        const uint8_t *gk = g + 4 * k, *tk = tab + 5 * k;
        for (int J = 0; J < 8; J++) {
            const uint8_t *tb = tk + 80 * J;
            v128_t hp = wasm_v128_load(tb + 64);
            /* rolled: unrolled, V8 spilled ~10 vectors a quad; the table of high parts moves 2 bits down a quad
             * (a 16-bit shift: bits entering a byte from its neighbour land above the 2 that the mask keeps) */
#pragma clang loop unroll(disable)
            for (int q = 0; q < 4; q++, hp = wasm_u16x8_shr(hp, 2)) {
                const v128_t m3 = wasm_i8x16_splat(3);
                const v128_t w = wasm_v128_load(gk + 64 * J + 16 * q), lo = wasm_v128_load(tb + 16 * q);
                const v128_t i0 = wasm_v128_and(w, m4), i1 = wasm_v128_and(wasm_u16x8_shr(w, 4), m4);
                const v128_t l0 = SWZ(lo, i0), h0 = wasm_v128_and(SWZ(hp, i0), m3);
                const v128_t l1 = SWZ(lo, i1), h1 = wasm_v128_and(SWZ(hp, i1), m3);
                a0 = wasm_i16x8_add(a0, rows_lo(l0, h0)), a1 = wasm_i16x8_add(a1, rows_hi(l0, h0));
                b0 = wasm_i16x8_add(b0, rows_lo(l1, h1)), b1 = wasm_i16x8_add(b1, rows_hi(l1, h1));
            }
        }
        flush(s, a0, a1, b0, b1);
    }
}

/* The exact sums: 512 a lookup, 3 lookups' weight a quad, n / 4 quads. */
static void packed_unbias(v128_t s[4], int64_t n) {
    const v128_t bias = wasm_i32x4_splat((int32_t)(384 * n));
    for (int i = 0; i < 4; i++) s[i] = wasm_i32x4_sub(s[i], bias);
}

static void packed_group(const uint8_t *g, const uint8_t *tab, int64_t n, v128_t s[4]) {
    for (int i = 0; i < 4; i++) s[i] = wasm_i32x4_splat(0);
    packed_part(g, tab, 0, n, s);
    packed_unbias(s, n);
}

/* The scalar reference's epilogue for 16 rows of token t: y = (((float)Σ code·q − (float)Σq) / scale) · wscale. */
static void store16(const v128_t s[4], const tl_acts *a, int t, float wscale, float *y) {
    const v128_t sq = wasm_f32x4_splat((float)a->sum[t]), sc = wasm_f32x4_splat(a->scale[t]);
    for (int i = 0; i < 4; i++) {
        const v128_t f = wasm_f32x4_div(wasm_f32x4_sub(wasm_f32x4_convert_i32x4(s[i]), sq), sc);
        wasm_v128_store(y + 4 * i, wasm_f32x4_mul(f, wasm_f32x4_splat(wscale)));
    }
}

static int64_t kblock = 0; /* > 0: rows whose packed tables exceed 24 KB run in input blocks of kblock over rchunk groups */
static int rchunk = 16;

/* Packed tables, rows in chunks of rchunk groups, each chunk walked kblock inputs at a time (the block's tables,
 * 5·kblock bytes, reused by every group of the chunk; each group's weights then read in 4·kblock-byte runs). */
static void packed_blocked(const uint8_t *w, int64_t n, int64_t R, const tl_acts *a, const uint8_t *tab, float wscale,
                           float *y) {
    v128_t s[64][4];
    for (int64_t r = 0; r < R; r += 16 * rchunk) {
        const int ng = (int)((R - r) / 16 < rchunk ? (R - r) / 16 : rchunk);
        for (int i = 0; i < ng; i++)
            for (int j = 0; j < 4; j++) s[i][j] = wasm_i32x4_splat(0);
        for (int64_t k = 0; k < n; k += kblock) {
            const int64_t k1 = n - k < kblock ? n : k + kblock;
            for (int i = 0; i < ng; i++) packed_part(w + (r + 16 * i) * n / 4, tab, k, k1, s[i]);
        }
        for (int i = 0; i < ng; i++) packed_unbias(s[i], n), store16(s[i], a, 0, wscale, y + r + 16 * i);
    }
}

/* TT tokens x one group, plane layout: each index vector serves every token (tables 8n bytes apart); plane 1 is
 * added twice into the same i16 sums (|sum| <= 16·1536 < 2^15 per 64 inputs) to keep 2 registers a token. */
AI void planes_tokens(const uint8_t *g, const uint8_t *tab, int64_t n, int TT, v128_t *s) {
    const v128_t m4 = wasm_i8x16_splat(0x0F), z = wasm_i16x8_splat(0);
    for (int i = 0; i < 4 * TT; i++) s[i] = wasm_i32x4_splat(0);
    for (int64_t k = 0; k < n; k += 64) {
        v128_t a[8];
        for (int i = 0; i < 2 * TT; i++) a[i] = z;
        const uint8_t *gk = g + 4 * k, *tk = tab + 8 * k;
        for (int m = 0; m < 16; m++) {
            const v128_t w = wasm_v128_load(gk + 16 * m);
            const v128_t i0 = wasm_v128_and(w, m4), i1 = wasm_v128_and(wasm_u16x8_shr(w, 4), m4);
            for (int t = 0; t < TT; t++) {
                const uint8_t *tt = tk + 8 * n * t + 32 * m;
                const v128_t tl = wasm_v128_load(tt), th = wasm_v128_load(tt + 16);
                const v128_t l0 = SWZ(tl, i0), h0 = SWZ(th, i0);
                const v128_t l1 = SWZ(tl, i1), h1 = SWZ(th, i1);
                const v128_t p1lo = rows_lo(l1, h1), p1hi = rows_hi(l1, h1);
                a[2 * t] = wasm_i16x8_add(wasm_i16x8_add(a[2 * t], rows_lo(l0, h0)), wasm_i16x8_add(p1lo, p1lo));
                a[2 * t + 1] = wasm_i16x8_add(wasm_i16x8_add(a[2 * t + 1], rows_hi(l0, h0)), wasm_i16x8_add(p1hi, p1hi));
            }
        }
        for (int t = 0; t < TT; t++) flush(s + 4 * t, a[2 * t], a[2 * t + 1], z, z);
    }
}

enum { PAIRS, PLANES, PACKED };
static const char *const layout_names[3] = {"pairs", "planes", "packed"};

/* One token, R rows (tables built inside: their cost is part of the timing). */
static void tl_gemv(int layout, const uint8_t *w, int64_t n, int64_t R, const tl_acts *a, uint8_t *tab, int64_t fold,
                    float wscale, float *y) {
    if (layout == PAIRS) tables_pairs(a->q, n, tab);
    else if (layout == PLANES) tables_planes(a->q, n, tab);
    else tables_packed(a->q, n, tab);
    if (layout == PACKED && kblock > 0 && 5 * n > 24576) { /* tables beyond ~24 KB of the 32 KB L1 */
        packed_blocked(w, n, R, a, tab, wscale, y);
        return;
    }
    for (int64_t r = 0; r < R; r += 16) {
        v128_t s[4];
        if (layout == PAIRS) pairs_group(w + r * n / 4, tab, n, s);
        else if (layout == PLANES) planes_group(w + r * n / 4, tab, n, fold, s);
        else packed_group(w + r * n / 4, tab, n, s);
        store16(s, a, 0, wscale, y + r);
    }
}

/* T tokens, plane layout, in tiles of 2 (measured against 1, 3 and 4: 2 was best or level). */
static void tl_gemm(const uint8_t *w, int64_t n, int64_t R, const tl_acts *a, uint8_t *tab, float wscale, float *y) {
    for (int t = 0; t < a->T; t++) tables_planes(a->q + t * n, n, tab + 8 * n * t);
    for (int t0 = 0; t0 < a->T; t0 += 2) {
        const int nt = a->T - t0 < 2 ? 1 : 2;
        for (int64_t r = 0; r < R; r += 16) {
            v128_t s[8];
            if (nt == 2) planes_tokens(w + r * n / 4, tab + 8 * n * t0, n, 2, s);
            else planes_tokens(w + r * n / 4, tab + 8 * n * t0, n, 1, s);
            for (int t = 0; t < nt; t++) store16(s + 4 * t, a, t0 + t, wscale, y + (t0 + t) * R + r);
        }
    }
}

/* Weights of one shape: the I2_S codes, wasm128's repacked copy and a prototype copy, COPIES times each. */
typedef struct {
    int64_t n, R;
    size_t bytes;
    uint8_t *old, *proto;
} shape_w;

static void make_weights(shape_w *s, int64_t n, int64_t R, int layout, int copies, int hostile) {
    s->n = n, s->R = R, s->bytes = (size_t)(n * R / 4);
    uint8_t *w = malloc(s->bytes);
    for (size_t i = 0; i < s->bytes; i++) {
        uint8_t v = 0;
        for (int k = 0; k < 4; k++) v = (uint8_t)(v << 2 | rnd() % (hostile ? 4 : 3));
        w[i] = v;
    }
    s->old = malloc(s->bytes * copies), s->proto = malloc(s->bytes * copies);
    tl_repack_i2s(w, n, 0, R, s->old);
    if (layout == PAIRS) repack_pairs(w, n, R, s->proto);
    else repack_planes(w, n, R, s->proto);
    for (int c = 1; c < copies; c++)
        memcpy(s->old + c * s->bytes, s->old, s->bytes), memcpy(s->proto + c * s->bytes, s->proto, s->bytes);
    free(w);
}

/* T tokens of n activations quantized by the kernel table (hostile: -128..127 raw bytes instead). */
static tl_acts make_acts(const tl_kernels *k, int64_t n, int T, int hostile) {
    float *x = malloc((size_t)(T * n) * 4), *sc = malloc((size_t)T * 4);
    int8_t *q = malloc((size_t)(T * n));
    int32_t *su = malloc((size_t)T * 4);
    for (int64_t i = 0; i < T * n; i++) x[i] = (float)((int32_t)(rnd() >> 16) - 32768) / 8192.0f;
    for (int t = 0; t < T; t++) {
        k->quantize_i8(x + t * n, n, q + t * n, &sc[t], &su[t]);
        if (!hostile) continue;
        su[t] = 0;
        for (int64_t i = 0; i < n; i++) {
            q[t * n + i] = (i / 64) % 3 == 0 ? -128 : (i / 64) % 3 == 1 ? 127 : (int8_t)rnd();
            su[t] += q[t * n + i];
        }
    }
    free(x);
    const tl_acts a = {T, n, q, sc, su, NULL};
    return a;
}

static void free_acts(tl_acts *a) { free((void *)a->q), free((void *)a->scale), free((void *)a->sum); }

/* Both layouts against the scalar reference: codes 0..3, activations at both ends of int8, T = 1 and 3. */
static int mode_exact(void) {
    const tl_kernels *ref = tl_kernels_scalar();
    int bad = 0;
    for (int layout = PAIRS; layout <= PACKED; layout++)
        for (int T = 1; T <= 3; T += 2) {
            if (layout != PLANES && T > 1) continue; /* multi-token: planes only */
            shape_w s;
            make_weights(&s, 2560, 64, layout, 1, 1);
            tl_acts a = make_acts(ref, s.n, T, 1);
            float *want = malloc((size_t)(T * s.R) * 4), *got = malloc((size_t)(T * s.R) * 4);
            uint8_t *tab = malloc((size_t)(16 * s.n * T));
            const tl_r16 wr = {s.old, NULL, NULL, 0.25f, s.n, s.R, NULL};
            ref->gemm_i2s_r16(&wr, 0, s.R, &a, want, s.R);
            if (T == 1) tl_gemv(layout, s.proto, s.n, s.R, &a, tab, 0, 0.25f, got);
            else tl_gemm(s.proto, s.n, s.R, &a, tab, 0.25f, got);
            const int d = memcmp(want, got, (size_t)(T * s.R) * 4) != 0;
            printf("exact %s T=%d: %s\n", layout_names[layout], T, d ? "DIFFERS" : "same bits as scalar");
            bad += d;
            free(s.old), free(s.proto), free(want), free(got), free(tab), free_acts(&a);
        }
    return bad;
}

/* Best-of-reps milliseconds of old and new on one shape, alternating, each call on the next copy. */
static void time_shape(const tl_kernels *k, int layout, int64_t n, int64_t R, int T, int reps, int64_t fold) {
    shape_w s;
    make_weights(&s, n, R, layout, COPIES, 0);
    tl_acts a = make_acts(k, n, T, 0);
    float *y = malloc((size_t)(T * R) * 4), *y2 = malloc((size_t)(T * R) * 4);
    uint8_t *tab = malloc((size_t)(16 * n * T));
    double best_old = 1e9, best_new = 1e9;
    for (int r = 0; r < reps; r++) {
        const size_t off = (size_t)(r % COPIES) * s.bytes;
        const tl_r16 wr = {s.old + off, NULL, NULL, 0.037f, n, R, NULL};
        double t0 = now();
        k->gemm_i2s_r16(&wr, 0, R, &a, y, R);
        double dt = now() - t0;
        best_old = dt < best_old ? dt : best_old;
        t0 = now();
        if (T == 1) tl_gemv(layout, s.proto + off, n, R, &a, tab, fold, 0.037f, y2);
        else tl_gemm(s.proto + off, n, R, &a, tab, 0.037f, y2);
        dt = now() - t0;
        best_new = dt < best_new ? dt : best_new;
    }
    const double macs = (double)n * (double)R * T;
    printf("%-6s n=%4lld rows=%4lld T=%d: old %.3f ms (%.1f G MAC/s, %08x)  tl %.3f ms (%.1f G MAC/s, %08x)  old/tl %.3f\n",
           layout_names[layout], (long long)n, (long long)R, T, best_old * 1e3, macs / best_old * 1e-9,
           checksum(y, T * R), best_new * 1e3, macs / best_new * 1e-9, checksum(y2, T * R), best_old / best_new);
    free(s.old), free(s.proto), free(y), free(y2), free(tab), free_acts(&a);
}

static const int64_t shapes[3][2] = {{2560, 6912}, {6912, 2560}, {2560, 2560}}; /* n (inputs) x rows */

/* A decode token's ternary GEMVs: 10 layers of q, k, v, o, gate, up, down (17.3 MB of codes a layer), each matrix
 * in its own memory, walked in forward order: the old kernel's token, then the plane kernel's, best of reps. */
#define LAYERS 10
static void mode_token(const tl_kernels *k, int reps, int layout) {
    static const int64_t shp[7][2] = {{2560, 2560}, {2560, 640}, {2560, 640}, {2560, 2560},
                                      {2560, 6912}, {2560, 6912}, {6912, 2560}};
    shape_w w[LAYERS][7];
    for (int m = 0; m < 7; m++) {
        shape_w one;
        make_weights(&one, shp[m][0], shp[m][1], PLANES, 1, 0);
        for (int l = 0; l < LAYERS; l++) {
            w[l][m] = one;
            w[l][m].old = malloc(one.bytes), w[l][m].proto = malloc(one.bytes);
            memcpy(w[l][m].old, one.old, one.bytes), memcpy(w[l][m].proto, one.proto, one.bytes);
        }
        free(one.old), free(one.proto);
    }
    tl_acts a[2] = {make_acts(k, 2560, 1, 0), make_acts(k, 6912, 1, 0)};
    float *y = malloc(6912 * 4);
    uint8_t *tab = malloc(16 * 6912);
    double best[2] = {1e9, 1e9}, part[2][7] = {{0}}, low[2][7];
    for (int i = 0; i < 14; i++) low[i / 7][i % 7] = 1e9;
    uint32_t h[2] = {0, 0};
    for (int r = 0; r < reps; r++)
        for (int which = 0; which < 2; which++) {
            const double t0 = now();
            for (int l = 0; l < LAYERS; l++)
                for (int m = 0; m < 7; m++) {
                    const double tm = now();
                    const shape_w *s = &w[l][m];
                    const tl_acts *act = &a[s->n == 6912];
                    const tl_r16 wr = {s->old, NULL, NULL, 0.037f, s->n, s->R, NULL};
                    if (which == 0) k->gemm_i2s_r16(&wr, 0, s->R, act, y, s->R);
                    else tl_gemv(layout, s->proto, s->n, s->R, act, tab, 0, 0.037f, y);
                    const double dm = now() - tm;
                    if (r > 0) part[which][m] += dm; /* rep 0 holds V8's compilation of each kernel */
                    low[which][m] = dm < low[which][m] ? dm : low[which][m];
                    if (l == 0 && r == 0) h[which] = h[which] * 31u + checksum(y, s->R);
                }
            const double dt = now() - t0;
            best[which] = dt < best[which] ? dt : best[which];
        }
    printf("token, %s, %d layers (%.0f MB of codes): old %.2f ms, tl %.2f ms, old/tl %.3f, checksums %08x %08x\n", layout_names[layout], LAYERS,
           LAYERS * 17.3, best[0] * 1e3, best[1] * 1e3, best[0] / best[1], h[0], h[1]);
    static const char *names[7] = {"q", "k", "v", "o", "gate", "up", "down"};
    const int counted = reps > 1 ? reps - 1 : 1;
    for (int m = 0; m < 7; m++) /* over reps 1.. and layers: where the token's difference comes from */
        printf("  %-4s %4lld x %4lld: mean old %.3f / tl %.3f ms (old/tl %.3f), best old %.3f / tl %.3f ms (%.3f)\n",
               names[m], (long long)shp[m][0], (long long)shp[m][1], part[0][m] / (counted * LAYERS) * 1e3,
               part[1][m] / (counted * LAYERS) * 1e3, part[0][m] / part[1][m], low[0][m] * 1e3, low[1][m] * 1e3,
               low[0][m] / low[1][m]);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "shapes";
    const int reps = argc > 2 ? atoi(argv[2]) : 32;
    const int64_t arg = argc > 3 ? atoll(argv[3]) : 0;
    kblock = argc > 4 ? atoll(argv[4]) : 0;
    rchunk = argc > 5 ? atoi(argv[5]) : 16;
    rchunk = rchunk < 1 ? 1 : rchunk > 64 ? 64 : rchunk;
    const tl_kernels *k = tl_kernels_by_name(BASELINE);
    if (!k || !k->gemm_i2s_r16) return fprintf(stderr, "no %s path\n", BASELINE), 1;
    printf("baseline (old): %s, lookups: %s\n", BASELINE, SWZ_NAME);
    if (!strcmp(mode, "exact")) return mode_exact() != 0;
    if (!strcmp(mode, "token")) {
        mode_token(k, reps, arg == PACKED ? PACKED : PLANES);
        return 0;
    }
    for (int s = 0; s < 3; s++) {
        if (!strcmp(mode, "shapes"))
            for (int layout = PAIRS; layout <= PACKED; layout++) time_shape(k, layout, shapes[s][0], shapes[s][1], 1, reps, 0);
        else if (!strcmp(mode, "tokens")) time_shape(k, PLANES, shapes[s][0], shapes[s][1], (int)(arg ? arg : 3), reps, 0);
        else if (!strcmp(mode, "fold")) time_shape(k, PLANES, shapes[s][0], shapes[s][1], 1, reps, arg);
        else return fprintf(stderr, "modes: exact shapes tokens token fold\n"), 2;
    }
    return 0;
}
