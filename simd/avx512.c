/* AVX-512 kernels with VNNI (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c;
 * selected only when the CPU has them).
 *
 * Ternary and int8 weights are repacked at load into 16-row groups (repack.h): lane r of a zmm holds 4 inputs of row r,
 * so vpdpbusd with the token's 4 activations broadcast (an embedded {1to16} load) accumulates 16 rows at once, with
 * no horizontal sums. Activations stay in plain order (the AVX2 quantizer). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "../runtime/tensor_types.h"
#include "exp_row.h"
#include "lanes.h"
#include "paths.h"
#include "repack.h"

static inline int32_t hsum256(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* ---- GEMMs on 16-row groups (repack.h) ---- */

#define AI __attribute__((always_inline)) static inline
/* One-token products walk the groups one after another: a single sequential stream is what the hardware prefetcher
 * follows best (measured: 1 stream 21.8 GB/s on one core, 2 or 4 interleaved group streams 10-15 GB/s, software
 * prefetch at any distance no better). */
/* Up to SMALL_T tokens (a decode step of several streams) the weights stream from memory once: a 2-group tile's two
 * interleaved streams ran at 7-9 GB/s on one core (Zen 5, 70 MB weight, T = 2..6), one group at a time at 15-30 GB/s.
 * From 8 tokens on the tile is compute-bound and the 2-group tile, which loads each broadcast once for both groups,
 * was faster (2 threads, T = 8: 4.2-4.7 ms against 5.5-6.0). */
#ifndef SMALL_T
#define SMALL_T 7
#endif
/* Several-token tiles prefetch the line this far ahead of each group's stream: at 4 tokens a tile is compute-bound
 * enough that the hardware prefetcher falls behind (4-stream step, 3 alternating rounds: 39.9 / 41.2 / 37.0 ms
 * against 41.0 / 45.1 / 39.7 without; 4096 bytes: 40.4 / 38.9 / 38.9). 0 turns it off. */
#ifndef TILE_PF
#define TILE_PF 1024
#endif
/* The same for int4 tiles of several tokens, into L2 (one core, 4 tokens, 65536 head rows from memory, medians of 5
 * alternating runs: 5.4 ms against 6.8 with 1024 bytes into L1; none: 10.4 against 7.3 for 4096 into L1, medians of
 * 8). One token is left to the hardware prefetcher: no change measured. (The I2_S tiles above: no difference between
 * these settings, within the noise.) */
#ifndef I4_PF
#define I4_PF 4096
#endif
#ifndef DOT1_NG
#define DOT1_NG 1
#endif

/* The 4 int8 activations at p, broadcast to 16 lanes. */
AI __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* One token, NG groups of 2-bit codes: codes are masked in place (v & 0x0C is code·4, ...) into four accumulators
 * per group, each an exact multiple of its scale, shifted back once at the end; every chain is independent. */
AI void codes_dot1(const uint8_t *const *g, int NG, const int8_t *x, int64_t n_chunks, __m512i *out) {
    const __m512i m0 = _mm512_set1_epi8(0x03), m1 = _mm512_set1_epi8(0x0C), m2 = _mm512_set1_epi8(0x30),
                  m3 = _mm512_set1_epi8((char)0xC0);
    __m512i a[4][4];
    for (int i = 0; i < NG; i++)
        for (int s = 0; s < 4; s++) a[i][s] = _mm512_setzero_si512();
    for (int64_t c = 0; c < n_chunks; c++) {
        const __m512i b0 = bcast4(x + 16 * c), b1 = bcast4(x + 16 * c + 4), b2 = bcast4(x + 16 * c + 8),
                      b3 = bcast4(x + 16 * c + 12);
        for (int i = 0; i < NG; i++) {
            const __m512i v = _mm512_loadu_si512(g[i] + 64 * c);
            a[i][0] = _mm512_dpbusd_epi32(a[i][0], _mm512_and_si512(v, m0), b0);
            a[i][1] = _mm512_dpbusd_epi32(a[i][1], _mm512_and_si512(v, m1), b1);
            a[i][2] = _mm512_dpbusd_epi32(a[i][2], _mm512_and_si512(v, m2), b2);
            a[i][3] = _mm512_dpbusd_epi32(a[i][3], _mm512_and_si512(v, m3), b3);
        }
    }
    for (int i = 0; i < NG; i++)
        out[i] = _mm512_add_epi32(_mm512_add_epi32(a[i][0], _mm512_srai_epi32(a[i][1], 2)),
                                  _mm512_add_epi32(_mm512_srai_epi32(a[i][2], 4), _mm512_srai_epi32(a[i][3], 6)));
}

/* Up to 3 (group, token) pairs: the codes_dot1 decode, one mask per slice and no shift (slice s is code·4^s), with
 * one accumulator per slice, shifted back once at the end (exact: each sums multiples of 4^s). Per 64-byte load that
 * is 4 masks for up to 12 vpdpbusd instead of 3 shifts and 4 masks (one core, L3-resident weight, T = 2: 220 against 163
 * G MAC/s; T = 3: 183-209 against 149-153). */
AI void codes_tile_masked(const uint8_t *const *g, int NG, const int8_t *const *x, int TT, int64_t c0, int64_t c1, __m512i *acc) {
    const __m512i m[4] = {_mm512_set1_epi8(0x03), _mm512_set1_epi8(0x0C), _mm512_set1_epi8(0x30), _mm512_set1_epi8((char)0xC0)};
    __m512i part[4][4];
    for (int k = 0; k < NG * TT; k++)
        for (int s = 0; s < 4; s++) part[k][s] = _mm512_setzero_si512();
    for (int64_t c = c0; c < c1; c++) {
        __m512i v[2];
#if TILE_PF
        for (int i = 0; i < NG; i++) _mm_prefetch((const char *)(g[i] + 64 * c + TILE_PF), _MM_HINT_T0);
#endif
        for (int i = 0; i < NG; i++) v[i] = _mm512_loadu_si512(g[i] + 64 * c);
        for (int s = 0; s < 4; s++) {
            __m512i code[2];
            for (int i = 0; i < NG; i++) code[i] = _mm512_and_si512(v[i], m[s]);
            for (int t = 0; t < TT; t++) {
                const __m512i b = bcast4(x[t] + 16 * (c - c0) + 4 * s);
                for (int i = 0; i < NG; i++) part[i * TT + t][s] = _mm512_dpbusd_epi32(part[i * TT + t][s], code[i], b);
            }
        }
    }
    for (int k = 0; k < NG * TT; k++)
        acc[k] = _mm512_add_epi32(acc[k], _mm512_add_epi32(_mm512_add_epi32(part[k][0], _mm512_srai_epi32(part[k][1], 2)),
                                                           _mm512_add_epi32(_mm512_srai_epi32(part[k][2], 4),
                                                                            _mm512_srai_epi32(part[k][3], 6))));
}

/* NG groups × TT tokens of 2-bit codes over chunks [c0, c1) (x[t] points at the activations of chunk c0): each
 * 64-byte load is decoded once (shift, mask) and feeds TT vpdpbusd; each broadcast activation feeds NG.
 * acc[i*TT + t] accumulates group i, token t. A small tile splits each sum over AS partial accumulators (code slice s
 * into partial s % AS; integer sums, so the order is free): with one, the 4 vpdpbusd of a chunk form one dependency
 * chain and 3 or 4 chains leave the unit idle most cycles (1 group × 4 tokens: 200 G MAC/s per core before, 370 after). */
AI void codes_tile(const uint8_t *const *g, int NG, const int8_t *const *x, int TT, int64_t c0, int64_t c1, __m512i *acc) {
    if (NG * TT <= 3 && NG <= 2) { /* at 4 (1 × 4) the shifted decode measured faster: 222 against 199 G MAC/s */
        codes_tile_masked(g, NG, x, TT, c0, c1, acc);
        return;
    }
    const int AS = NG * TT <= 3 ? 4 : NG * TT <= 7 ? 2 : 1;
    const __m512i m3 = _mm512_set1_epi8(3);
    __m512i part[16][4];
    for (int k = 0; k < NG * TT; k++)
        for (int p = 0; p < AS; p++) part[k][p] = _mm512_setzero_si512();
    for (int64_t c = c0; c < c1; c++) {
        __m512i v[4];
#if TILE_PF
        for (int i = 0; i < NG; i++) _mm_prefetch((const char *)(g[i] + 64 * c + TILE_PF), _MM_HINT_T0);
#endif
        for (int i = 0; i < NG; i++) v[i] = _mm512_loadu_si512(g[i] + 64 * c);
        for (int s = 0; s < 4; s++) {
            __m512i code[4];
            for (int i = 0; i < NG; i++) code[i] = _mm512_and_si512(s ? _mm512_srli_epi16(v[i], (unsigned)(2 * s)) : v[i], m3);
            for (int t = 0; t < TT; t++) {
                const __m512i b = bcast4(x[t] + 16 * (c - c0) + 4 * s);
                for (int i = 0; i < NG; i++)
                    part[i * TT + t][s % AS] = _mm512_dpbusd_epi32(part[i * TT + t][s % AS], code[i], b);
            }
        }
    }
    for (int k = 0; k < NG * TT; k++)
        for (int p = 0; p < AS; p++) acc[k] = _mm512_add_epi32(acc[k], part[k][p]);
}

/* I2_S epilogue for 16 rows of one token: the scalar formula, lane by lane. */
AI void i2s_store(__m512i acc, const tl_acts *a, int t, float wscale, float *dst) {
    __m512 f = _mm512_sub_ps(_mm512_cvtepi32_ps(acc), _mm512_set1_ps((float)a->sum[t]));
    f = _mm512_mul_ps(_mm512_div_ps(f, _mm512_set1_ps(a->scale[t])), _mm512_set1_ps(wscale));
    _mm512_storeu_ps(dst, f);
}

AI void i2s_tile(const tl_r16 *w, int64_t r, int NG, const tl_acts *a, int t0, int TT, float *y, int64_t ys) {
    const int64_t n = w->ne0;
    const uint8_t *g[2];
    const int8_t *x[8];
    for (int i = 0; i < NG; i++) g[i] = w->data + (r / 16 + i) * n * 4;
    for (int t = 0; t < TT; t++) x[t] = a->q + (int64_t)(t0 + t) * n;
    __m512i acc[16];
    for (int i = 0; i < NG * TT; i++) acc[i] = _mm512_setzero_si512();
    codes_tile(g, NG, x, TT, 0, n / 16, acc);
    for (int i = 0; i < NG; i++)
        for (int t = 0; t < TT; t++) i2s_store(acc[i * TT + t], a, t0 + t, w->scale, y + (int64_t)(t0 + t) * ys + r + 16 * i);
}

#define TILE_SWITCH(fn, w, r, NG, a, t0, tt, y, ys)                                                                    \
    switch (tt) {                                                                                                      \
    case 1: fn(w, r, NG, a, t0, 1, y, ys); break;                                                                      \
    case 2: fn(w, r, NG, a, t0, 2, y, ys); break;                                                                      \
    case 3: fn(w, r, NG, a, t0, 3, y, ys); break;                                                                      \
    case 4: fn(w, r, NG, a, t0, 4, y, ys); break;                                                                      \
    case 5: fn(w, r, NG, a, t0, 5, y, ys); break;                                                                      \
    case 6: fn(w, r, NG, a, t0, 6, y, ys); break;                                                                      \
    case 7: fn(w, r, NG, a, t0, 7, y, ys); break;                                                                      \
    default: fn(w, r, NG, a, t0, 8, y, ys); break;                                                                     \
    }

static void i2s_tiles(const tl_r16 *w, int64_t r, int NG, const tl_acts *a, float *y, int64_t ys) {
    for (int t0 = 0; t0 < a->T; t0 += 8) {
        const int tt = a->T - t0 < 8 ? a->T - t0 : 8;
        if (NG == 2) TILE_SWITCH(i2s_tile, w, r, 2, a, t0, tt, y, ys)
        else TILE_SWITCH(i2s_tile, w, r, 1, a, t0, tt, y, ys)
    }
}

static void gemm_i2s_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    const int64_t n = w->ne0;
    int64_t r = r0;
    if (a->T == 1) {
        for (; r + 16 * DOT1_NG <= r1; r += 16 * DOT1_NG) {
            const uint8_t *g[4];
            for (int i = 0; i < DOT1_NG; i++) g[i] = w->data + (r / 16 + i) * n * 4;
            __m512i acc[4];
            codes_dot1(g, DOT1_NG, a->q, n / 16, acc);
            for (int i = 0; i < DOT1_NG; i++) i2s_store(acc[i], a, 0, w->scale, y + r + 16 * i);
        }
        for (; r < r1; r += 16) {
            const uint8_t *g[1] = {w->data + (r / 16) * n * 4};
            __m512i acc[1];
            codes_dot1(g, 1, a->q, n / 16, acc);
            i2s_store(acc[0], a, 0, w->scale, y + r);
        }
        return;
    }
    if (a->T <= SMALL_T) { /* one token tile: weights are read once, so keep to one sequential stream */
        for (; r < r1; r += 16) i2s_tiles(w, r, 1, a, y, ys);
        return;
    }
    for (; r + 32 <= r1; r += 32) i2s_tiles(w, r, 2, a, y, ys);
    if (r < r1) i2s_tiles(w, r, 1, a, y, ys);
}

/* ---- TQ2_0 / TQ1_0 on 2-bit groups: per 256-block, the exact integer sums of 16 rows, then the block's float
 * step sum += (float)(Σ code·q − Σq) · (d_act · d_w) for every row lane, in block order (the scalar order). ---- */

AI int32_t bsum_total(const tl_block_q8k *b) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)b->bsums);
    return hsum256(_mm256_madd_epi16(v, _mm256_set1_epi16(1)));
}

AI __m512 tq_step(__m512 sum, __m512i acc, const tl_block_q8k *xb, __m512 dw) {
    const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, _mm512_set1_epi32(bsum_total(xb))));
    return _mm512_add_ps(sum, _mm512_mul_ps(f, _mm512_mul_ps(_mm512_set1_ps(xb->d), dw)));
}

AI void tq_tile(const tl_r16 *w, int64_t r, int NG, const tl_acts *a, int t0, int TT, float *y, int64_t ys) {
    const int64_t n = w->ne0, nb = n / 256;
    const uint8_t *g[4];
    const int8_t *x[8];
    for (int i = 0; i < NG; i++) g[i] = w->data + (r / 16 + i) * n * 4;
    __m512 sum[8];
    for (int i = 0; i < NG * TT; i++) sum[i] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        for (int t = 0; t < TT; t++) x[t] = a->q8k[(int64_t)(t0 + t) * nb + b].qs;
        __m512i acc[8];
        if (TT == 1) {
            const uint8_t *gb[4];
            for (int i = 0; i < NG; i++) gb[i] = g[i] + 1024 * b;
            codes_dot1(gb, NG, x[0], 16, acc);
        } else {
            for (int i = 0; i < NG * TT; i++) acc[i] = _mm512_setzero_si512();
            codes_tile(g, NG, x, TT, 16 * b, 16 * b + 16, acc);
        }
        for (int i = 0; i < NG; i++) {
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w->dw + ((r / 16 + i) * nb + b) * 16)));
            for (int t = 0; t < TT; t++)
                sum[i * TT + t] = tq_step(sum[i * TT + t], acc[i * TT + t], &a->q8k[(int64_t)(t0 + t) * nb + b], dw);
        }
    }
    for (int i = 0; i < NG; i++)
        for (int t = 0; t < TT; t++) _mm512_storeu_ps(y + (int64_t)(t0 + t) * ys + r + 16 * i, sum[i * TT + t]);
}

static void gemm_tq_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    int64_t r = r0;
    if (a->T == 1) {
        for (; r < r1; r += 16) tq_tile(w, r, 1, a, 0, 1, y, ys);
        return;
    }
    for (; r < r1; r += 16)
        for (int t0 = 0; t0 < a->T; t0 += 8) {
            const int tt = a->T - t0 < 8 ? a->T - t0 : 8;
            TILE_SWITCH(tq_tile, w, r, 1, a, t0, tt, y, ys)
        }
}

/* ---- int8 rows (the re-quantized head): weights stored as w + 128 (unsigned), so vpdpbusd gives
 * Σ (w + 128)·q = Σ w·q + 128·Σq and the exact Σ w·q is one subtraction. ---- */

AI void i8_store(__m512i acc, const tl_acts *a, int t, const float *drow, float *dst) {
    const __m512i exact = _mm512_sub_epi32(acc, _mm512_set1_epi32(128 * a->sum[t]));
    const __m512 f = _mm512_div_ps(_mm512_cvtepi32_ps(exact), _mm512_set1_ps(a->scale[t]));
    _mm512_storeu_ps(dst, _mm512_mul_ps(f, _mm512_loadu_ps(drow)));
}

AI void i8_tile(const tl_r16 *w, int64_t r, int NG, const tl_acts *a, int t0, int TT, float *y, int64_t ys) {
    const int64_t n = w->ne0;
    const uint8_t *g[4];
    const int8_t *x[8];
    for (int i = 0; i < NG; i++) g[i] = w->data + (r / 16 + i) * n * 16;
    for (int t = 0; t < TT; t++) x[t] = a->q + (int64_t)(t0 + t) * n;
    /* partial sums over chunks c % AS (integer, so exact in any order): enough independent vpdpbusd chains */
    const int AS = NG * TT <= 3 ? 4 : NG * TT <= 7 ? 2 : 1;
    __m512i acc[16][4];
    for (int i = 0; i < NG * TT; i++)
        for (int p = 0; p < AS; p++) acc[i][p] = _mm512_setzero_si512();
    int64_t c = 0;
    for (; c + AS <= n / 4; c += AS)
        for (int p = 0; p < AS; p++) {
            __m512i v[4];
            for (int i = 0; i < NG; i++) v[i] = _mm512_loadu_si512(g[i] + 64 * (c + p));
            for (int t = 0; t < TT; t++) {
                const __m512i b = bcast4(x[t] + 4 * (c + p));
                for (int i = 0; i < NG; i++) acc[i * TT + t][p] = _mm512_dpbusd_epi32(acc[i * TT + t][p], v[i], b);
            }
        }
    for (; c < n / 4; c++)
        for (int t = 0; t < TT; t++)
            for (int i = 0; i < NG; i++)
                acc[i * TT + t][0] = _mm512_dpbusd_epi32(acc[i * TT + t][0], _mm512_loadu_si512(g[i] + 64 * c), bcast4(x[t] + 4 * c));
    for (int i = 0; i < NG; i++)
        for (int t = 0; t < TT; t++) {
            __m512i sum = acc[i * TT + t][0];
            for (int p = 1; p < AS; p++) sum = _mm512_add_epi32(sum, acc[i * TT + t][p]);
            i8_store(sum, a, t0 + t, w->drow + r + 16 * i, y + (int64_t)(t0 + t) * ys + r + 16 * i);
        }
}

/* One token, one group: four accumulators over consecutive chunks keep four vpdpbusd chains in flight. */
static void i8_dot1(const tl_r16 *w, int64_t r, const tl_acts *a, float *y) {
    const int64_t n = w->ne0;
    const uint8_t *g = w->data + (r / 16) * n * 16;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    int64_t c = 0;
    for (; c + 4 <= n / 4; c += 4) {
        a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(g + 64 * c), bcast4(a->q + 4 * c));
        a1 = _mm512_dpbusd_epi32(a1, _mm512_loadu_si512(g + 64 * c + 64), bcast4(a->q + 4 * c + 4));
        a2 = _mm512_dpbusd_epi32(a2, _mm512_loadu_si512(g + 64 * c + 128), bcast4(a->q + 4 * c + 8));
        a3 = _mm512_dpbusd_epi32(a3, _mm512_loadu_si512(g + 64 * c + 192), bcast4(a->q + 4 * c + 12));
    }
    for (; c < n / 4; c++) a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(g + 64 * c), bcast4(a->q + 4 * c));
    i8_store(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)), a, 0, w->drow + r, y + r);
}

static void gemm_i8_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    int64_t r = r0;
    if (a->T == 1) {
        for (; r < r1; r += 16) i8_dot1(w, r, a, y);
        return;
    }
    if (a->T > SMALL_T) /* below, one group at a time keeps to one sequential stream (as for I2_S) */
        for (; r + 32 <= r1; r += 32)
            for (int t0 = 0; t0 < a->T; t0 += 8) {
                const int tt = a->T - t0 < 8 ? a->T - t0 : 8;
                TILE_SWITCH(i8_tile, w, r, 2, a, t0, tt, y, ys)
            }
    for (; r < r1; r += 16)
        for (int t0 = 0; t0 < a->T; t0 += 8) {
            const int tt = a->T - t0 < 8 ? a->T - t0 : 8;
            TILE_SWITCH(i8_tile, w, r, 1, a, t0, tt, y, ys)
        }
}

/* ---- int4 rows (the 4-bit head, repack.h): the low nibbles of a 64-byte load are one int8-layout chunk (q + 8 of
 * 4 inputs of 16 rows) and the high nibbles the next, so two vpdpbusd per load. A block's sum starts at -8·Σx
 * (tl_i4_offsets) and is scaled by its 16 rows' sub-scales (vpmulld) before joining the rows' int32 totals. ---- */

AI void i4_store(__m512i acc, const tl_acts *a, int t, const float *drow, float *dst) {
    const __m512 f = _mm512_div_ps(_mm512_cvtepi32_ps(acc), _mm512_set1_ps(a->scale[t]));
    _mm512_storeu_ps(dst, _mm512_mul_ps(f, _mm512_loadu_ps(drow)));
}

/* One group of 16 rows times TT tokens (t0.., whose block offsets are off[t * nb + b]). With few tokens the low and
 * high nibbles feed two chains so that a block's eight vpdpbusd are not one dependency chain. */
AI void i4_tile(const tl_r16 *w, int64_t r, const tl_acts *a, int t0, int TT, const int32_t *off, float *y, int64_t ys) {
    const int64_t n = w->ne0, nb = n / 32;
    const uint8_t *g = w->data + (r / 16) * n * 8, *sc = w->sub + (r / 16) * nb * 16;
    const int8_t *x[8];
    for (int t = 0; t < TT; t++) x[t] = a->q + (int64_t)(t0 + t) * n;
    const __m512i m15 = _mm512_set1_epi8(15);
    __m512i acc[8];
    for (int t = 0; t < TT; t++) acc[t] = _mm512_setzero_si512();
    for (int64_t b = 0; b < nb; b++) {
        __m512i lo[8], hi[8];
        for (int t = 0; t < TT; t++) lo[t] = _mm512_set1_epi32(off[t * nb + b]), hi[t] = _mm512_setzero_si512();
        for (int p = 0; p < 4; p++) {
#if I4_PF
            if (TT > 1) _mm_prefetch((const char *)(g + 64 * (4 * b + p) + I4_PF), _MM_HINT_T1);
#endif
            const __m512i v = _mm512_loadu_si512(g + 64 * (4 * b + p));
            const __m512i vl = _mm512_and_si512(v, m15), vh = _mm512_and_si512(_mm512_srli_epi16(v, 4), m15);
            for (int t = 0; t < TT; t++) {
                const int8_t *xp = x[t] + 32 * b + 8 * p;
                if (TT <= 2) {
                    lo[t] = _mm512_dpbusd_epi32(lo[t], vl, bcast4(xp));
                    hi[t] = _mm512_dpbusd_epi32(hi[t], vh, bcast4(xp + 4));
                } else {
                    lo[t] = _mm512_dpbusd_epi32(lo[t], vl, bcast4(xp));
                    lo[t] = _mm512_dpbusd_epi32(lo[t], vh, bcast4(xp + 4));
                }
            }
        }
        const __m512i s = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(sc + 16 * b)));
        for (int t = 0; t < TT; t++) {
            const __m512i blk = TT <= 2 ? _mm512_add_epi32(lo[t], hi[t]) : lo[t];
            acc[t] = _mm512_add_epi32(acc[t], _mm512_mullo_epi32(blk, s));
        }
    }
    for (int t = 0; t < TT; t++) i4_store(acc[t], a, t0 + t, w->drow + r, y + (int64_t)(t0 + t) * ys + r);
}

/* Tokens in batches of TL_I4_TOKENS (their offsets prepared once), every group of the range per batch, 8-token tiles. */
static void gemm_i4_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    const int64_t n = w->ne0, nb = n / 32;
    int32_t off[TL_I4_TOKENS * (TL_I4_MAX_NE0 / 32)];
    for (int tb = 0; tb < a->T; tb += TL_I4_TOKENS) {
        const int nt = a->T - tb < TL_I4_TOKENS ? a->T - tb : TL_I4_TOKENS;
        for (int t = 0; t < nt; t++) tl_i4_offsets(a->q + (int64_t)(tb + t) * n, n, off + t * nb);
        for (int64_t r = r0; r < r1; r += 16)
            for (int t0 = 0; t0 < nt; t0 += 8) {
                const int tt = nt - t0 < 8 ? nt - t0 : 8;
                const int32_t *o = off + t0 * nb;
                switch (tt) {
                case 1: i4_tile(w, r, a, tb + t0, 1, o, y, ys); break;
                case 2: i4_tile(w, r, a, tb + t0, 2, o, y, ys); break;
                case 3: i4_tile(w, r, a, tb + t0, 3, o, y, ys); break;
                case 4: i4_tile(w, r, a, tb + t0, 4, o, y, ys); break;
                case 5: i4_tile(w, r, a, tb + t0, 5, o, y, ys); break;
                case 6: i4_tile(w, r, a, tb + t0, 6, o, y, ys); break;
                case 7: i4_tile(w, r, a, tb + t0, 7, o, y, ys); break;
                default: i4_tile(w, r, a, tb + t0, 8, o, y, ys); break;
                }
            }
    }
}

/* The lanes.h fold in registers (the same additions in the same order): lanes 0-15 += 16-31 is a0 + a1, then each
 * half is added to the other half down to one lane. */
static inline float fold32(__m512 a0, __m512 a1) {
    const __m512 v16 = _mm512_add_ps(a0, a1);
    const __m256 v8 = _mm256_add_ps(_mm512_castps512_ps256(v16), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v16), 1)));
    const __m128 v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
    const __m128 v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
    return _mm_cvtss_f32(_mm_add_ss(v2, _mm_shuffle_ps(v2, v2, 1)));
}

/* Float dots in the canonical lane order (lanes.h): two zmm accumulators hold lanes 0-31, mul then add.
 * The prefetch runs only 256 bytes ahead, into L2: far enough to get each line asked for before its load, near
 * enough not to compete with the hardware prefetcher's stream. Zen 4, 2B4T F16 head, tg with one thread: 90-92% of
 * the roofline against 81% with no prefetch and 79-85% with the earlier 8 KB; 2 threads 81-96% against 75-92% and
 * 70-90% (fourteenth session, docs/PERFORMANCE.md). */
static float dot_f16(const uint16_t *w, const float *x, int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch((const char *)(w + i + 128), _MM_HINT_T1);
        a0 = _mm512_add_ps(a0, _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i))), _mm512_loadu_ps(x + i)));
        a1 = _mm512_add_ps(a1, _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i + 16))), _mm512_loadu_ps(x + i + 16)));
    }
    if (i == n) return fold32(a0, a1);
    float l[TL_LANES];
    _mm512_storeu_ps(l, a0);
    _mm512_storeu_ps(l + 16, a1);
    for (; i < n; i++) l[i % TL_LANES] += tl_f16_to_f32(w[i]) * x[i];
    return tl_lanes_fold(l);
}

/* R F16 rows (at w, w + n, ...) times TT tokens (R·TT <= 8), each (row, token) in its 32 canonical lanes (two zmm):
 * every converted weight serves TT tokens and every activation load R rows. The rows of a tile are one contiguous
 * block of R·n weights, read as R streams; so each pass also prefetches the block after the next one in address order
 * (R lines per 32 weights covers it exactly), which the hardware prefetcher does not do for R interleaved streams.
 * Into L2 and two blocks ahead: into L1 one block ahead, the tile's compute and its memory time added up instead of
 * overlapping (one core, 65536 rows from memory, medians of 4 alternating runs: 4 tokens 22-23 ms against 39-40, 2
 * tokens 17-18 against 33; the same tile with the rows in L2 takes ~21 ms at 4 tokens). */
AI void f16_tile(const uint16_t *w, int64_t n, const float *const *x, int R, int TT, float *out) {
    __m512 a[16]; /* (row r, token t): a[2(r·TT + t)] lanes 0-15, a[2(r·TT + t) + 1] lanes 16-31 */
    for (int j = 0; j < 2 * R * TT; j++) a[j] = _mm512_setzero_ps();
    const uintptr_t next = (uintptr_t)(const void *)(w + 2 * R * n); /* an address only: prefetches never fault */
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int r = 0; r < R; r++) _mm_prefetch((const char *)(next + (uintptr_t)(i / 32 * R + r) * 64), _MM_HINT_T1);
        __m512 p[8];
        for (int r = 0; r < R; r++) {
            p[2 * r] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(w + r * n + i)));
            p[2 * r + 1] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(w + r * n + i + 16)));
        }
        for (int t = 0; t < TT; t++) {
            __m512 x0 = _mm512_loadu_ps(x[t] + i), x1 = _mm512_loadu_ps(x[t] + i + 16);
            if (R > 1) __asm__("" : "+v"(x0), "+v"(x1)); /* in registers for all R rows, not loaded again per row */
            for (int r = 0; r < R; r++) {
                a[2 * (r * TT + t)] = _mm512_add_ps(a[2 * (r * TT + t)], _mm512_mul_ps(p[2 * r], x0));
                a[2 * (r * TT + t) + 1] = _mm512_add_ps(a[2 * (r * TT + t) + 1], _mm512_mul_ps(p[2 * r + 1], x1));
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < TT; t++) {
            const int j = 2 * (r * TT + t);
            if (i == n) {
                out[r * TT + t] = fold32(a[j], a[j + 1]);
                continue;
            }
            float l[TL_LANES];
            _mm512_storeu_ps(l, a[j]);
            _mm512_storeu_ps(l + 16, a[j + 1]);
            for (int64_t k = i; k < n; k++) l[k % TL_LANES] += tl_f16_to_f32(w[r * n + k]) * x[t][k];
            out[r * TT + t] = tl_lanes_fold(l);
        }
}

/* The tile shapes f16_shape uses (and the shorter last passes): 1 row times 1-4 tokens, 2 rows times 1-4. */
static void f16_tile_any(const uint16_t *w, int64_t n, const float *const *x, int R, int TT, float *out) {
#define F16_CASE(r, tt)                                                                                                \
    if (R == r && TT == tt) return f16_tile(w, n, x, r, tt, out);
    F16_CASE(1, 1) F16_CASE(1, 2) F16_CASE(1, 3) F16_CASE(1, 4) F16_CASE(2, 1) F16_CASE(2, 2) F16_CASE(2, 3) F16_CASE(2, 4)
#undef F16_CASE
    for (int r = 0; r < R; r++) /* a shape not built above: still every output, by the one-row dot */
        for (int t = 0; t < TT; t++) out[r * TT + t] = dot_f16(w + r * n, x[t], n);
}

/* Rows [r, r + R) times every token, in passes of at most TT tokens (the later passes find the rows in L1 or L2). */
static void f16_rows(const uint16_t *w, int64_t n, int64_t r, int R, int TT, const float *x, int T, float *y, int64_t ys) {
    for (int t0 = 0; t0 < T; t0 += TT) {
        const int tt = T - t0 < TT ? T - t0 : TT;
        const float *xs[8];
        float out[8];
        for (int t = 0; t < tt; t++) xs[t] = x + (int64_t)(t0 + t) * n;
        f16_tile_any(w + r * n, n, xs, R, tt, out);
        for (int k = 0; k < R; k++)
            for (int t = 0; t < tt; t++) y[(int64_t)(t0 + t) * ys + r + k] = out[k * tt + t];
    }
}

/* Tile shape for a step of T tokens. Up to 2 tokens one row at a time keeps a single stream (and x in L1); 3 tokens
 * take 2 rows (the 128,256-row head from memory, 2 threads, best of 6: 22-25 ms against 28-32 for 1 row). From 4 on
 * the multiplies set the pace: on Zen 4 (zmm at half rate; one core, 128 rows in L2, G MAC/s at T = 4 / 8) 2 rows × 4
 * tokens ran 32.7 / 32.5, 3 × 4 34.8 / 33.8, 2 × 6 32.5 / 30.8, 4 × 3 (24 accumulators, which spill) 29.4 / 30.8, 4 × 2
 * 26.2 / 27.3, 1 × 8 18.7 / 22.7; 2 × 4 divides the 16-row chunks and keeps 16 accumulators. (Zen 5 preferred 4 × 3.) */
static void f16_shape(int T, int *R, int *TT) {
    *R = T <= 2 ? 1 : 2;
    *TT = T <= 3 ? T : 4;
}

/* F16 rows in file layout times T tokens, each row read from memory once for all T tokens. */
static void gemm_f16(const uint16_t *w, int64_t n, int64_t r0, int64_t r1, const float *x, int T, float *y, int64_t ys) {
    int64_t r = r0;
    if (T == 1) {
        for (; r < r1; r++) y[r] = dot_f16(w + r * n, x, n);
        return;
    }
    int R, TT;
    f16_shape(T, &R, &TT);
    for (; r + R <= r1; r += R) f16_rows(w, n, r, R, TT, x, T, y, ys);
    for (; r < r1; r++) f16_rows(w, n, r, 1, TT, x, T, y, ys);
}

static float dot_f32(const float *w, const float *x, int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_add_ps(a0, _mm512_mul_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i)));
        a1 = _mm512_add_ps(a1, _mm512_mul_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16)));
    }
    if (i == n) return fold32(a0, a1);
    float l[TL_LANES];
    _mm512_storeu_ps(l, a0);
    _mm512_storeu_ps(l + 16, a1);
    for (; i < n; i++) l[i % TL_LANES] += w[i] * x[i];
    return tl_lanes_fold(l);
}

/* ---- Bonsai: Q1_0 / Q2_0 · Q8_0 with mask registers and VNNI (integer sums exact; float order of kernels.h) ---- */

/* The four exact sub-block totals of a, b, c, d (8 int32 lanes each), in order. */
static inline __m128i bonsai_hsum4(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i abcd = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1));
}

static inline uint16_t u16_at(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* The products da_k·s_k of four sub-blocks (f16 scales d0..d3): each exact in f32. */
static inline void bonsai_products(__m128i s, uint16_t d0, uint16_t d1, uint16_t d2, uint16_t d3, float *p) {
    const __m128 da = _mm_cvtph_ps(_mm_setr_epi16((short)d0, (short)d1, (short)d2, (short)d3, 0, 0, 0, 0));
    _mm_storeu_ps(p, _mm_mul_ps(da, _mm_cvtepi32_ps(s)));
}

/* Σ ±q over a 32-element Q1_0 sub-block: q where the sign bit is 1, −q where it is 0 (one masked subtract). */
static inline __m256i q1_sub512(uint32_t bits, const uint8_t *q) {
    const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)q), zero = _mm256_setzero_si256();
    const __m256i v = _mm256_mask_sub_epi8(x, (__mmask32)~bits, zero, x);
    return _mm256_dpbusd_epi32(zero, _mm256_set1_epi8(1), v);
}

static float dot_q1_0(const uint8_t *w, const uint8_t *a, int64_t n) {
    float sum = 0;
    for (int64_t b = 0; b < n / 128; b++, w += 18, a += 4 * 34) {
        uint32_t bits[4];
        memcpy(bits, w + 2, 16);
        const __m128i s = bonsai_hsum4(q1_sub512(bits[0], a + 2), q1_sub512(bits[1], a + 36), q1_sub512(bits[2], a + 70),
                                       q1_sub512(bits[3], a + 104));
        float p[4];
        bonsai_products(s, u16_at(a), u16_at(a + 34), u16_at(a + 68), u16_at(a + 102), p);
        sum = sum + _cvtsh_ss(u16_at(w)) * (((p[0] + p[1]) + p[2]) + p[3]);
    }
    return sum;
}

/* The 64 codes of a Q2_0 block as bytes in element order: lo = elements 0..31, hi = 32..63. */
static inline void q2_codes512(const uint8_t *qs, __m256i *lo, __m256i *hi) {
    const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)qs), m = _mm_set1_epi8(3);
    const __m128i c0 = _mm_and_si128(v, m), c1 = _mm_and_si128(_mm_srli_epi16(v, 2), m);
    const __m128i c2 = _mm_and_si128(_mm_srli_epi16(v, 4), m), c3 = _mm_and_si128(_mm_srli_epi16(v, 6), m);
    const __m128i a_lo = _mm_unpacklo_epi8(c0, c1), b_lo = _mm_unpacklo_epi8(c2, c3);
    const __m128i a_hi = _mm_unpackhi_epi8(c0, c1), b_hi = _mm_unpackhi_epi8(c2, c3);
    *lo = _mm256_set_m128i(_mm_unpackhi_epi16(a_lo, b_lo), _mm_unpacklo_epi16(a_lo, b_lo));
    *hi = _mm256_set_m128i(_mm_unpackhi_epi16(a_hi, b_hi), _mm_unpacklo_epi16(a_hi, b_hi));
}

/* Σ (code − 1)·q over 32 elements: Σ code·q minus Σ q, both with VNNI. */
static inline __m256i q2_sub512(__m256i codes, const uint8_t *q) {
    const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)q), zero = _mm256_setzero_si256();
    return _mm256_sub_epi32(_mm256_dpbusd_epi32(zero, codes, x), _mm256_dpbusd_epi32(zero, _mm256_set1_epi8(1), x));
}

static float dot_q2_0(const uint8_t *w, const uint8_t *a, int64_t n) {
    float sum = 0;
    const int64_t nb = n / 64;
    for (int64_t b = 0; b < nb; b += 2, w += 36, a += 4 * 34) {
        const int two = b + 1 < nb;
        __m256i l0, h0, l1 = _mm256_setzero_si256(), h1 = _mm256_setzero_si256();
        q2_codes512(w + 2, &l0, &h0);
        if (two) q2_codes512(w + 20, &l1, &h1);
        const __m128i s = bonsai_hsum4(q2_sub512(l0, a + 2), q2_sub512(h0, a + 36), two ? q2_sub512(l1, a + 70) : l1,
                                       two ? q2_sub512(h1, a + 104) : h1);
        float p[4];
        bonsai_products(s, u16_at(a), u16_at(a + 34), two ? u16_at(a + 68) : 0, two ? u16_at(a + 102) : 0, p);
        sum = sum + _cvtsh_ss(u16_at(w)) * (p[0] + p[1]);
        if (two) sum = sum + _cvtsh_ss(u16_at(w + 18)) * (p[2] + p[3]);
    }
    return sum;
}

/* ---- Attention scores: dots of several (position, head) pairs folded in one register tree ---- */

/* The lanes.h fold of 8 dots at once (a[2j], a[2j + 1]: lanes 0-15 and 16-31 of dot j): each step adds the same lane
 * pairs as fold32, with the halves of several dots packed into one register. Returns the 8 sums in order. */
AI __m256 fold32x8(const __m512 *a) {
    __m512 v[8], z[4], w[2];
    for (int j = 0; j < 8; j++) v[j] = _mm512_add_ps(a[2 * j], a[2 * j + 1]); /* l[i] += l[i + 16] */
    for (int j = 0; j < 4; j++) /* l[i] += l[i + 8]: z[j] = dot 2j's 8 lanes, then dot 2j + 1's */
        z[j] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], 0x44), _mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], 0xEE));
    for (int j = 0; j < 2; j++) /* l[i] += l[i + 4]: 128-bit block b of w[j] = dot 4j + b's 4 lanes */
        w[j] = _mm512_add_ps(_mm512_shuffle_f32x4(z[2 * j], z[2 * j + 1], 0x88), _mm512_shuffle_f32x4(z[2 * j], z[2 * j + 1], 0xDD));
    const __m512 u = _mm512_add_ps(_mm512_shuffle_ps(w[0], w[1], 0x44), _mm512_shuffle_ps(w[0], w[1], 0xEE)); /* + 2 */
    const __m512 r = _mm512_add_ps(u, _mm512_shuffle_ps(u, u, 0xB1)); /* l[0] += l[1]: block b = dots b, b, 4 + b, 4 + b */
    return _mm512_castps512_ps256(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 0, 0, 0, 0, 0, 0, 0, 0), r));
}

/* The cached K and V rows of one head are 2·hd bytes every kv_dim elements: strided reads that the hardware prefetchers
 * leave to demand misses once several streams' caches outgrow L3 (4 streams at ~100 positions: +9 ms a step against
 * +0.7 for one stream). So the attention loops fetch the rows this many positions ahead. */
#define KV_PF_AHEAD 12

AI void prefetch_kv_row(const uint16_t *row, int64_t n) {
    for (int64_t i = 0; i < n; i += 32) _mm_prefetch((const char *)(const void *)(row + i), _MM_HINT_T0);
}

/* Dots of P positions × H heads (P·H = 8; dot j = position j / H, head j % H) over hd inputs (hd % 32 == 0): each
 * K row is converted once for the H heads. */
AI __m256 kq_tile(const uint16_t *k, int64_t stride, const float *q, int64_t hd, int H, int P) {
    __m512 a[16];
    for (int j = 0; j < 16; j++) a[j] = _mm512_setzero_ps();
    for (int64_t i = 0; i < hd; i += 32)
        for (int pp = 0; pp < P; pp++) {
            const uint16_t *kp = k + pp * stride + i;
            const __m512 k0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)kp));
            const __m512 k1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(kp + 16)));
            for (int h = 0; h < H; h++) {
                const int j = pp * H + h;
                a[2 * j] = _mm512_add_ps(a[2 * j], _mm512_mul_ps(k0, _mm512_loadu_ps(q + h * hd + i)));
                a[2 * j + 1] = _mm512_add_ps(a[2 * j + 1], _mm512_mul_ps(k1, _mm512_loadu_ps(q + h * hd + i + 16)));
            }
        }
    return fold32x8(a);
}

/* Heads [g, g + H) over positions [0, n_pos): tiles of 8 / H positions, then dot_f16 for the last few. */
AI void kq_heads(float *s, int64_t ss, const uint16_t *k, int64_t n_pos, int64_t stride, const float *q, int H, int64_t hd,
                 float scale) {
    const int P = 8 / H;
    const __m256 sc = _mm256_set1_ps(scale);
    int64_t p = 0;
    for (; p + P <= n_pos; p += P) {
        for (int pp = 0; pp < P; pp++) prefetch_kv_row(k + (p + KV_PF_AHEAD + pp) * stride, hd);
        const __m256 r = _mm256_mul_ps(kq_tile(k + p * stride, stride, q, hd, H, P), sc);
        if (H == 1) {
            _mm256_storeu_ps(s + p, r);
            continue;
        }
        float o[8];
        _mm256_storeu_ps(o, r);
        for (int j = 0; j < 8; j++) s[(j % H) * ss + p + j / H] = o[j];
    }
    for (; p < n_pos; p++)
        for (int h = 0; h < H; h++) s[h * ss + p] = dot_f16(k + p * stride, q + h * hd, hd) * scale;
}

static void attn_kq(float *s, int64_t ss, const uint16_t *k, int64_t n_pos, int64_t stride, const float *q, int G, int64_t hd,
                    float scale) {
    if (hd % 32) {
        for (int g = 0; g < G; g++)
            for (int64_t p = 0; p < n_pos; p++) s[g * ss + p] = dot_f16(k + p * stride, q + g * hd, hd) * scale;
        return;
    }
    for (int g = 0; g < G;) {
        const int H = G - g >= 4 ? 4 : G - g >= 2 ? 2 : 1;
        if (H == 4) kq_heads(s + g * ss, ss, k, n_pos, stride, q + g * hd, 4, hd, scale);
        else if (H == 2) kq_heads(s + g * ss, ss, k, n_pos, stride, q + g * hd, 2, hd, scale);
        else kq_heads(s + g * ss, ss, k, n_pos, stride, q + g * hd, 1, hd, scale);
        g += H;
    }
}

/* P·V: lanes are output elements, each summing positions in order (the scalar bits); 64 outputs per pass over V. */
static void attn_pv(float *out, const float *prob, const uint16_t *v, int64_t n_pos, int64_t stride, int64_t hd) {
    int64_t d = 0;
    for (; d + 64 <= hd; d += 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t p = 0; p < n_pos; p++) {
            const __m512 pr = _mm512_set1_ps(prob[p]);
            const uint16_t *vp = v + p * stride + d;
            a0 = _mm512_add_ps(a0, _mm512_mul_ps(pr, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)vp))));
            a1 = _mm512_add_ps(a1, _mm512_mul_ps(pr, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vp + 16)))));
            a2 = _mm512_add_ps(a2, _mm512_mul_ps(pr, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vp + 32)))));
            a3 = _mm512_add_ps(a3, _mm512_mul_ps(pr, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vp + 48)))));
        }
        _mm512_storeu_ps(out + d, a0);
        _mm512_storeu_ps(out + d + 16, a1);
        _mm512_storeu_ps(out + d + 32, a2);
        _mm512_storeu_ps(out + d + 48, a3);
    }
    if (d < hd) tl_avx2_attn_pv(out + d, prob, v + d, n_pos, stride, hd - d);
}

/* P·V of H heads over D outputs (H·D <= 256, D % 16 == 0) starting at output d: each converted V vector serves the H
 * heads; every output still sums positions in order, mul then add (the scalar bits). */
AI void pv_tile(float *out, const float *prob, int64_t ps, const uint16_t *v, int64_t n_pos, int64_t stride, int64_t hd, int H,
                int D, int64_t d) {
    __m512 a[16];
    for (int j = 0; j < H * D / 16; j++) a[j] = _mm512_setzero_ps();
    for (int64_t p = 0; p < n_pos; p++) {
        const uint16_t *vp = v + p * stride + d;
        prefetch_kv_row(vp + KV_PF_AHEAD * stride, D);
        __m512 vc[8];
        for (int c = 0; c < D / 16; c++) vc[c] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(vp + 16 * c)));
        for (int h = 0; h < H; h++) {
            const __m512 pr = _mm512_set1_ps(prob[h * ps + p]);
            for (int c = 0; c < D / 16; c++) a[h * (D / 16) + c] = _mm512_add_ps(a[h * (D / 16) + c], _mm512_mul_ps(pr, vc[c]));
        }
    }
    for (int h = 0; h < H; h++)
        for (int c = 0; c < D / 16; c++) _mm512_storeu_ps(out + h * hd + d + 16 * c, a[h * (D / 16) + c]);
}

static void attn_pv_g(float *out, const float *prob, int64_t ps, int G, const uint16_t *v, int64_t n_pos, int64_t stride,
                      int64_t hd) {
    int g = 0;
    for (; hd % 64 == 0 && g + 4 <= G; g += 4)
        for (int64_t d = 0; d < hd; d += 64) pv_tile(out + g * hd, prob + g * ps, ps, v, n_pos, stride, hd, 4, 64, d);
    for (; hd % 128 == 0 && g + 2 <= G; g += 2)
        for (int64_t d = 0; d < hd; d += 128) pv_tile(out + g * hd, prob + g * ps, ps, v, n_pos, stride, hd, 2, 128, d);
    for (; g < G; g++) attn_pv(out + g * hd, prob + g * ps, v, n_pos, stride, hd);
}

/* max(x, hi) returns hi where x is NaN (and min likewise), so NaNs never enter the running extremes. */
static int row_range(const float *v, int64_t n, float *max, float *min) {
    __m512 hi = _mm512_set1_ps(-INFINITY), lo = _mm512_set1_ps(INFINITY);
    __mmask16 nan = 0;
    for (int64_t p = 0; p < n; p += 16) {
        const __mmask16 m = n - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - p)) - 1);
        const __m512 x = _mm512_maskz_loadu_ps(m, v + p);
        hi = _mm512_mask_max_ps(hi, m, x, hi);
        lo = _mm512_mask_min_ps(lo, m, x, lo);
        nan |= _mm512_mask_cmp_ps_mask(m, x, x, _CMP_UNORD_Q);
    }
    *max = _mm512_reduce_max_ps(hi), *min = _mm512_reduce_min_ps(lo);
    return nan != 0;
}

static const tl_kernels k_avx512 = {
    .exp_minus_max = tl_exp_minus_max_row,
    .name = "avx512",
    .quantize_i8 = tl_avx2_quantize_i8,
    .quantize_q8k = tl_scalar_quantize_q8k,
    .i2s_gemm = tl_avx2_i2s_gemm,
    .dot_tq2 = tl_avx2_dot_tq2,
    .dot_tq1 = tl_avx2_dot_tq1,
    .dot_f16 = dot_f16,
    .dot_f32 = dot_f32,
    .dot_q8_0 = tl_avx2_dot_q8_0,
    .attn_pv = attn_pv,
    .attn_kq = attn_kq,
    .attn_pv_g = attn_pv_g,
    .row_range = row_range,
    .dot_q1_0 = dot_q1_0,
    .dot_q2_0 = dot_q2_0,
    .gemm_i2s_r16 = gemm_i2s_r16,
    .gemm_tq_r16 = gemm_tq_r16,
    .gemm_i8_r16 = gemm_i8_r16,
    .gemm_i4_r16 = gemm_i4_r16,
    .gemm_f16 = gemm_f16,
};

const tl_kernels *tl_kernels_avx512_table(void) { return &k_avx512; }
