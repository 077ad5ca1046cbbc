/* AVX2 kernels (compiled with -mavx2 -mfma -mf16c; selected only when the CPU has them).
 * Integer results equal the scalar reference bit for bit; float sums may differ in order. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "../runtime/tensor_types.h"
#include "exp_row.h"
#include "lanes.h"
#include "paths.h"
#include "repack.h"

#define AI __attribute__((always_inline)) static inline

static inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* ---- activation quantization: the same bits as the scalar rule (RNE via cvtps under MXCSR's default) ---- */

void tl_avx2_quantize_i8(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum) {
    __m256 vmax = _mm256_setzero_ps();
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(x + i), absmask));
    float m8[8];
    _mm256_storeu_ps(m8, vmax);
    double max = 1e-5;
    for (int k = 0; k < 8; k++) max = (double)m8[k] > max ? (double)m8[k] : max;
    for (; i < n; i++) max = fabs((double)x[i]) > max ? fabs((double)x[i]) : max;
    const float s = (float)(127.0 / max);
    const __m256 vs = _mm256_set1_ps(s);
    __m256i acc = _mm256_setzero_si256();
    i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
        __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), vs));
        __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 16), vs));
        __m256i d = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 24), vs));
        __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
        __m256i r = _mm256_packs_epi16(ab, cd); /* saturates to [-128, 127]: the clamp */
        r = _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + i), r);
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(r)), _mm256_set1_epi16(1)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(r, 1)), _mm256_set1_epi16(1)));
    }
    int32_t total = hsum_i32(acc);
    for (; i < n; i++) {
        const float v = x[i] * s;
        int32_t r = (int32_t)lrintf(v);
        r = r < -128 ? -128 : r > 127 ? 127 : r;
        q[i] = (int8_t)r;
        total += r;
    }
    *scale = s;
    *sum = total;
}

/* ---- I2_S × int8 ---- */

/* Σ code·q over one 128-element block for one token: 4 maddubs (u8 codes × i8 q) summed in i16
 * (|lane| <= 4 · 2 · 2 · 128 = 2048), then widened. */
static inline __m256i block_dot(__m256i w, const int8_t *x) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i c0 = _mm256_and_si256(_mm256_srli_epi16(w, 6), m3), c1 = _mm256_and_si256(_mm256_srli_epi16(w, 4), m3);
    const __m256i c2 = _mm256_and_si256(_mm256_srli_epi16(w, 2), m3), c3 = _mm256_and_si256(w, m3);
    __m256i s = _mm256_maddubs_epi16(c0, _mm256_loadu_si256((const __m256i *)x));
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(c1, _mm256_loadu_si256((const __m256i *)(x + 32))));
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(c2, _mm256_loadu_si256((const __m256i *)(x + 64))));
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(c3, _mm256_loadu_si256((const __m256i *)(x + 96))));
    return _mm256_madd_epi16(s, _mm256_set1_epi16(1));
}

void tl_avx2_i2s_gemm(const uint8_t *w, int64_t n, int64_t r0, int64_t r1, const int8_t *q, int T, int32_t *acc,
                      int64_t acc_stride) {
    const int64_t nb = n / 128, row_bytes = n / 4;
    int64_t r = r0;
    if (T == 1) {
        for (; r + 2 <= r1; r += 2) { /* two rows share each activation load */
            const uint8_t *a = w + r * row_bytes, *b = a + row_bytes;
            __m256i sa = _mm256_setzero_si256(), sb = _mm256_setzero_si256();
            for (int64_t k = 0; k < nb; k++) {
                /* prefetch far ahead into L2 so memory latency overlaps the arithmetic */
                if (!(k & 1)) {
                    _mm_prefetch((const char *)(a + 32 * k + 2048), _MM_HINT_T0);
                    _mm_prefetch((const char *)(a + 32 * k + 8192), _MM_HINT_T1);
                    _mm_prefetch((const char *)(b + 32 * k + 8192), _MM_HINT_T1);
                }
                sa = _mm256_add_epi32(sa, block_dot(_mm256_loadu_si256((const __m256i *)(a + 32 * k)), q + 128 * k));
                sb = _mm256_add_epi32(sb, block_dot(_mm256_loadu_si256((const __m256i *)(b + 32 * k)), q + 128 * k));
            }
            acc[r] = hsum_i32(sa);
            acc[r + 1] = hsum_i32(sb);
        }
    }
    for (; r < r1; r++) {
        const uint8_t *row = w + r * row_bytes;
        for (int t0 = 0; t0 < T; t0 += 4) {
            const int tn = T - t0 < 4 ? T - t0 : 4;
            __m256i s[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
            for (int64_t k = 0; k < nb; k++) {
                const __m256i wv = _mm256_loadu_si256((const __m256i *)(row + 32 * k));
                for (int t = 0; t < tn; t++) s[t] = _mm256_add_epi32(s[t], block_dot(wv, q + (int64_t)(t0 + t) * n + 128 * k));
            }
            for (int t = 0; t < tn; t++) acc[(int64_t)(t0 + t) * acc_stride + r] = hsum_i32(s[t]);
        }
    }
}

/* ---- TQ2_0 / TQ1_0 × Q8_K: Σ(q-1)·a = Σ q·a − Σ a (bsums) ---- */

float tl_avx2_dot_tq2(const uint8_t *row, const tl_block_q8k *a, int64_t n) {
    float sum = 0;
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int64_t b = 0; b < n / 256; b++, row += 66) {
        __m256i acc = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(row + 32 * h));
            const int8_t *x = a[b].qs + 128 * h;
            for (int s = 0; s < 4; s++) {
                const __m256i c = _mm256_and_si256(_mm256_srli_epi16(v, 2 * s), m3);
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(c, _mm256_loadu_si256((const __m256i *)(x + 32 * s))),
                                                              _mm256_set1_epi16(1)));
            }
        }
        int32_t bs = 0;
        for (int g = 0; g < 16; g++) bs += a[b].bsums[g];
        const int32_t sumi = hsum_i32(acc) - bs;
        sum += (float)sumi * (a[b].d * tl_f16_to_f32((uint16_t)(row[64] | row[65] << 8)));
    }
    return sum;
}

float tl_avx2_dot_tq1(const uint8_t *row, const tl_block_q8k *a, int64_t n) {
    /* decode the base-3 bytes to codes once per block (the scalar trit rule), then a plain int dot */
    float sum = 0;
    for (int64_t b = 0; b < n / 256; b++, row += 54) {
        uint8_t codes[256];
        for (int e = 0; e < 160; e++) codes[e] = (uint8_t)tl_tq1_trit(row[e % 32], e / 32);
        for (int e = 160; e < 240; e++) codes[e] = (uint8_t)tl_tq1_trit(row[32 + (e - 160) % 16], (e - 160) / 16);
        for (int e = 240; e < 256; e++) codes[e] = (uint8_t)tl_tq1_trit(row[48 + (e - 240) % 4], (e - 240) / 4);
        __m256i acc = _mm256_setzero_si256();
        for (int k = 0; k < 8; k++)
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)(codes + 32 * k)),
                                                                               _mm256_loadu_si256((const __m256i *)(a[b].qs + 32 * k))),
                                                          _mm256_set1_epi16(1)));
        int32_t bs = 0;
        for (int g = 0; g < 16; g++) bs += a[b].bsums[g];
        sum += (float)(hsum_i32(acc) - bs) * (a[b].d * tl_f16_to_f32((uint16_t)(row[52] | row[53] << 8)));
    }
    return sum;
}

/* ---- float dots ---- */

/* The lanes.h fold in registers: lanes 0-15 += 16-31 is a0 += a2, a1 += a3; then 0-7 += 8-15 is a0 + a1; then halves. */
static inline float fold32(const __m256 *a) {
    const __m256 v8 = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
    const __m128 v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
    const __m128 v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
    return _mm_cvtss_f32(_mm_add_ss(v2, _mm_shuffle_ps(v2, v2, 1)));
}

/* Software prefetch of F16 weights, in elements (1024 = 2 KB ahead): every cache line into L1. On Zen 3 (AMD family
 * 25 model 1, 2 vCPUs) a micro-benchmark of this dot over a 656 MB head matrix ran 5.7 GB/s on one core with the
 * earlier prefetch (every other line into L2, 8 KB ahead), 9.0 GB/s with none, 10.5 GB/s with this one (2 threads:
 * 11.1, 13-16, 16-18 GB/s): half the lines left to the hardware prefetcher, which a distant software stream seems to
 * throw off, stalled it. On Zen 4 (AVX-512 hosts, this path forced) it is the other way round: one core tg64 of the
 * 2B4T shape 73-77% of the roofline with it, 85-87% without; kept for the Zen 3 hosts that run this path. */
#define F16_PF_AHEAD 1024

/* Float dots in the canonical lane order (lanes.h): four ymm accumulators hold lanes 0-31, mul then add. 256 weights
 * per pass (each step one convert, one multiply and one add, with the loads folded in) and a prefetch per cache line
 * (F16_PF_AHEAD): the F16 head is most of a token's float work. */
static inline __attribute__((always_inline)) void f16_step128(__m256 *a, const uint16_t *w, const float *x) {
    for (int k = 0; k < 16; k++) {
        a[k % 4] = _mm256_add_ps(a[k % 4], _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(w + 8 * k))),
                                                         _mm256_loadu_ps(x + 8 * k)));
        __asm__("" : "+x"(a[k % 4])); /* each step in order: GCC otherwise hoists every convert and spills */
    }
}

static float dot_f16(const uint16_t *w, const float *x, int64_t n) {
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 256 <= n; i += 256) {
        for (int l = 0; l < 8; l++) _mm_prefetch((const char *)(w + i + F16_PF_AHEAD + 32 * l), _MM_HINT_T0);
        f16_step128(a, w + i, x + i);
        f16_step128(a, w + i + 128, x + i + 128);
    }
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++)
            a[k] = _mm256_add_ps(a[k], _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(w + i + 8 * k))),
                                                     _mm256_loadu_ps(x + i + 8 * k)));
    if (i == n) return fold32(a);
    float l[TL_LANES];
    for (int k = 0; k < 4; k++) _mm256_storeu_ps(l + 8 * k, a[k]);
    for (; i < n; i++) l[i % TL_LANES] += tl_f16_to_f32(w[i]) * x[i];
    return tl_lanes_fold(l);
}

/* Several-token F16 steps (T >= 2). Measured on Zen 4 (AVX2 only): the F16 convert shares the add pipes, so a row
 * times TT tokens costs about 4 converts + 4·TT adds per 32 weights; and a tile reading whole rows took its TT·10 KB of
 * activations from L2 for every row (1.9-2.3 ns per 64 weight bytes and token, against 1.1 ns with them in L1).
 * So: rows go in blocks of F16_RB and inputs in blocks of F16_KB, the activations of one input block (T·2 KB) staying
 * in L1 while every row of the block uses them; each row's 32 canonical lanes per token are kept in memory between
 * input blocks (a store and a load: exact) and taken two lane groups (16 inputs of every 32) at a time, so one tile
 * holds TT <= F16_TT_MAX tokens in 2·TT registers and each converted weight serves them all. */
#ifndef F16_TT_MAX
#define F16_TT_MAX 6
#endif
#ifndef F16_KB
#define F16_KB 512
#endif
#ifndef F16_RB
#define F16_RB 4
#endif

/* One row, TT tokens, inputs [k0, k1) (multiples of 32): st[t][g] holds lane group g of token t. */
AI void f16_pair_tile(const uint16_t *w, const float *const *x, int TT, int64_t k0, int64_t k1, const uint16_t *pf, __m256 (*st)[4]) {
    for (int p = 0; p < 2; p++) {
        __m256 a[F16_TT_MAX][2];
        for (int t = 0; t < TT; t++) a[t][0] = st[t][2 * p], a[t][1] = st[t][2 * p + 1];
        for (int64_t i = k0 + 16 * p; i < k1; i += 32) {
            if (!p) _mm_prefetch((const char *)(pf + i), _MM_HINT_T1); /* one per line: the next row block's */
            const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(w + i)));
            const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(w + i + 8)));
            for (int t = 0; t < TT; t++) {
                a[t][0] = _mm256_add_ps(a[t][0], _mm256_mul_ps(w0, _mm256_loadu_ps(x[t] + i)));
                a[t][1] = _mm256_add_ps(a[t][1], _mm256_mul_ps(w1, _mm256_loadu_ps(x[t] + i + 8)));
            }
        }
        for (int t = 0; t < TT; t++) st[t][2 * p] = a[t][0], st[t][2 * p + 1] = a[t][1];
    }
}

/* The tile compiled for its constant token count. */
static void f16_pair_tile_any(const uint16_t *w, const float *const *x, int TT, int64_t k0, int64_t k1, const uint16_t *pf,
                              __m256 (*st)[4]) {
    switch (TT) {
    case 1: f16_pair_tile(w, x, 1, k0, k1, pf, st); break;
    case 2: f16_pair_tile(w, x, 2, k0, k1, pf, st); break;
    case 3: f16_pair_tile(w, x, 3, k0, k1, pf, st); break;
    case 4: f16_pair_tile(w, x, 4, k0, k1, pf, st); break;
    case 5: f16_pair_tile(w, x, 5, k0, k1, pf, st); break;
    default: f16_pair_tile(w, x, 6, k0, k1, pf, st); break;
    }
}

/* y[t·ys + r] = dot_f16(row r, token t) bit for bit: the lanes of st, the tail past the last 32 inputs lane by lane
 * as dot_f16 adds it, then the fold. */
static float f16_finish(const __m256 *st, const uint16_t *w, const float *x, int64_t n32, int64_t n) {
    if (n32 == n) return fold32(st);
    float l[TL_LANES];
    for (int k = 0; k < 4; k++) _mm256_storeu_ps(l + 8 * k, st[k]);
    for (int64_t j = n32; j < n; j++) l[j % TL_LANES] += tl_f16_to_f32(w[j]) * x[j];
    return tl_lanes_fold(l);
}

/* The row tiles' prefetch: 8 KB ahead into L2. With several tokens the tile is compute-bound enough that 2 KB into
 * L1 (F16_PF_AHEAD) left its compute and its memory time adding up (Zen 4, AVX2 path, one core, 65536 rows from
 * memory, medians of 4 alternating runs: 2 tokens 16.7 ms against 31.4; the one-token dot was not changed). */
#define F16_ROW_PF_AHEAD 4096

/* One F16 row times TT (<= 3) tokens, each token's 32 canonical lanes in four ymm: every 8 weights are converted once
 * and multiplied into every token's lanes (12 accumulators, the weight and a temporary: 14 of 16 registers). */
__attribute__((always_inline)) static inline void f16_row_tile(const uint16_t *w, const float *const *x, int TT, int64_t n,
                                                               float *out) {
    __m256 a[3][4];
    for (int t = 0; t < TT; t++)
        for (int k = 0; k < 4; k++) a[t][k] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch((const char *)(w + i + F16_ROW_PF_AHEAD), _MM_HINT_T1);
        for (int k = 0; k < 4; k++) {
            const __m256 wv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(w + i + 8 * k)));
            for (int t = 0; t < TT; t++) a[t][k] = _mm256_add_ps(a[t][k], _mm256_mul_ps(wv, _mm256_loadu_ps(x[t] + i + 8 * k)));
        }
    }
    for (int t = 0; t < TT; t++) {
        if (i == n) {
            out[t] = fold32(a[t]);
            continue;
        }
        float l[TL_LANES];
        for (int k = 0; k < 4; k++) _mm256_storeu_ps(l + 8 * k, a[t][k]);
        for (int64_t j = i; j < n; j++) l[j % TL_LANES] += tl_f16_to_f32(w[j]) * x[t][j];
        out[t] = tl_lanes_fold(l);
    }
}

/* 2 or 3 tokens: whole rows, one after the other (the later token tiles find the row in L1; 20-30 KB of activations
 * still fit L1 beside it, and this ran 15-35% faster than the blocks below at T = 2). */
static void gemm_f16_rows(const uint16_t *w, int64_t n, int64_t r0, int64_t r1, const float *x, int T, float *y, int64_t ys) {
    for (int64_t r = r0; r < r1; r++) {
        const uint16_t *row = w + r * n;
        for (int t0 = 0; t0 < T; t0 += 3) {
            const float *xs[3] = {x + (int64_t)t0 * n, x + (int64_t)(t0 + 1) * n, x + (int64_t)(t0 + 2) * n};
            float out[3];
            const int tt = T - t0 < 3 ? T - t0 : 3;
            if (tt == 3) f16_row_tile(row, xs, 3, n, out);
            else if (tt == 2) f16_row_tile(row, xs, 2, n, out);
            else f16_row_tile(row, xs, 1, n, out);
            for (int t = 0; t < tt; t++) y[(int64_t)(t0 + t) * ys + r] = out[t];
        }
    }
}

/* F16 rows in file layout times T tokens: each row is read from memory once for all T tokens. */
static void gemm_f16(const uint16_t *w, int64_t n, int64_t r0, int64_t r1, const float *x, int T, float *y, int64_t ys) {
    if (T == 1) {
        for (int64_t r = r0; r < r1; r++) y[r] = dot_f16(w + r * n, x, n);
        return;
    }
    if (T <= 3) {
        gemm_f16_rows(w, n, r0, r1, x, T, y, ys);
        return;
    }
    const int64_t n32 = n - n % 32;
    for (int t0 = 0; t0 < T; t0 += 8) { /* at most 8 tokens' block sums at once (4 KB per row block) */
        const int T8 = T - t0 < 8 ? T - t0 : 8;
        const int n_tiles = (T8 + F16_TT_MAX - 1) / F16_TT_MAX, tt_even = (T8 + n_tiles - 1) / n_tiles;
        const float *xs[8];
        for (int t = 0; t < T8; t++) xs[t] = x + (int64_t)(t0 + t) * n;
        for (int64_t rb = r0; rb < r1; rb += F16_RB) {
            const int nr = r1 - rb < F16_RB ? (int)(r1 - rb) : F16_RB;
            __m256 st[F16_RB][8][4];
            for (int i = 0; i < nr; i++)
                for (int t = 0; t < T8; t++)
                    for (int g = 0; g < 4; g++) st[i][t][g] = _mm256_setzero_ps();
            for (int64_t k0 = 0; k0 < n32; k0 += F16_KB) {
                const int64_t k1 = k0 + F16_KB < n32 ? k0 + F16_KB : n32;
                for (int i = 0; i < nr; i++) {
                    for (int ta = 0; ta < T8; ta += tt_even) {
                        const int tt = T8 - ta < tt_even ? T8 - ta : tt_even;
                        f16_pair_tile_any(w + (rb + i) * n, xs + ta, tt, k0, k1, w + (rb + i + F16_RB) * n, st[i] + ta);
                    }
                }
            }
            for (int i = 0; i < nr; i++)
                for (int t = 0; t < T8; t++)
                    y[(int64_t)(t0 + t) * ys + rb + i] = f16_finish(st[i][t], w + (rb + i) * n, xs[t], n32, n);
        }
    }
}

static float dot_f32(const float *w, const float *x, int64_t n) {
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++) a[k] = _mm256_add_ps(a[k], _mm256_mul_ps(_mm256_loadu_ps(w + i + 8 * k), _mm256_loadu_ps(x + i + 8 * k)));
    if (i == n) return fold32(a);
    float l[TL_LANES];
    for (int k = 0; k < 4; k++) _mm256_storeu_ps(l + 8 * k, a[k]);
    for (; i < n; i++) l[i % TL_LANES] += w[i] * x[i];
    return tl_lanes_fold(l);
}

/* Q8_0: each block's integer sum in SIMD, the float sum over blocks in order (as the scalar reference). */
float tl_avx2_dot_q8_0(const uint8_t *w, const uint8_t *a, int64_t n) {
    float sum = 0;
    for (int64_t b = 0; b < n / 32; b++, w += 34, a += 34) {
        const __m256i wv = _mm256_loadu_si256((const __m256i *)(w + 2)), av = _mm256_loadu_si256((const __m256i *)(a + 2));
        const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv)); /* |w| · a·sign(w) */
        const int32_t sumi = hsum_i32(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
        sum += (float)sumi * (tl_f16_to_f32((uint16_t)(w[0] | w[1] << 8)) * tl_f16_to_f32((uint16_t)(a[0] | a[1] << 8)));
    }
    return sum;
}

/* P·V: lanes are output elements, each summing positions in order: the scalar reference's bits. */
void tl_avx2_attn_pv(float *out, const float *prob, const uint16_t *v, int64_t n_pos, int64_t stride, int64_t hd) {
    int64_t d = 0;
    for (; d + 8 <= hd; d += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int64_t p = 0; p < n_pos; p++)
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(prob[p]), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + p * stride + d)))));
        _mm256_storeu_ps(out + d, acc);
    }
    for (; d < hd; d++) {
        float acc = 0;
        for (int64_t p = 0; p < n_pos; p++) acc += prob[p] * tl_f16_to_f32(v[p * stride + d]);
        out[d] = acc;
    }
}

/* ---- Bonsai: Q1_0 / Q2_0 · Q8_0 (the integer sums exact, then the float order of kernels.h) ---- */

static inline float f16_at(const uint8_t *p) { return _cvtsh_ss((uint16_t)(p[0] | p[1] << 8)); } /* F16C: exact */

/* Σ of the int8 values of v, as 8 int32 partial sums. */
static inline __m256i sum_i8(__m256i v) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), v), _mm256_set1_epi16(1));
}

/* The four totals of four 8-lane int32 vectors, in order. */
static inline __m128i hsum4_i32(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_hadd_epi32(a, b), cd = _mm256_hadd_epi32(c, d), abcd = _mm256_hadd_epi32(ab, cd);
    return _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1));
}

/* Σ sign·q over the 32 elements of a Q1_0 sub-block whose sign bits are `bits` (bit e = element e). */
static inline __m256i q1_sub(uint32_t bits, const uint8_t *q) {
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
                                               _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2,
                                                                2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201ll);
    const __m256i clear = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), _mm256_setzero_si256());
    const __m256i sign = _mm256_or_si256(clear, _mm256_set1_epi8(1)); /* -1 where the bit is 0, +1 where 1 */
    return sum_i8(_mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(const void *)q), sign));
}

float tl_avx2_dot_q1_0(const uint8_t *w, const uint8_t *a, int64_t n) {
    float sum = 0;
    for (int64_t b = 0; b < n / 128; b++, w += 18, a += 4 * 34) {
        uint32_t bits[4];
        memcpy(bits, w + 2, 16);
        int32_t s[4];
        _mm_storeu_si128((__m128i *)(void *)s, hsum4_i32(q1_sub(bits[0], a + 2), q1_sub(bits[1], a + 36),
                                                          q1_sub(bits[2], a + 70), q1_sub(bits[3], a + 104)));
        float sumi = f16_at(a) * (float)s[0];
        for (int k = 1; k < 4; k++) sumi = sumi + f16_at(a + 34 * k) * (float)s[k];
        sum = sum + f16_at(w) * sumi;
    }
    return sum;
}

/* The 64 codes of a Q2_0 block as bytes in element order: lo = elements 0..31, hi = 32..63. */
static inline void q2_codes(const uint8_t *qs, __m256i *lo, __m256i *hi) {
    const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)qs), m = _mm_set1_epi8(3);
    const __m128i c0 = _mm_and_si128(v, m), c1 = _mm_and_si128(_mm_srli_epi16(v, 2), m);
    const __m128i c2 = _mm_and_si128(_mm_srli_epi16(v, 4), m), c3 = _mm_and_si128(_mm_srli_epi16(v, 6), m);
    const __m128i a_lo = _mm_unpacklo_epi8(c0, c1), b_lo = _mm_unpacklo_epi8(c2, c3); /* byte i < 8 */
    const __m128i a_hi = _mm_unpackhi_epi8(c0, c1), b_hi = _mm_unpackhi_epi8(c2, c3); /* byte i >= 8 */
    *lo = _mm256_set_m128i(_mm_unpackhi_epi16(a_lo, b_lo), _mm_unpacklo_epi16(a_lo, b_lo));
    *hi = _mm256_set_m128i(_mm_unpackhi_epi16(a_hi, b_hi), _mm_unpacklo_epi16(a_hi, b_hi));
}

/* Σ (code − 1)·q over 32 elements: Σ code·q (unsigned × signed) minus Σ q. */
static inline __m256i q2_sub(__m256i codes, const uint8_t *q) {
    const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)q);
    const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(codes, x), _mm256_set1_epi16(1));
    return _mm256_sub_epi32(dot, sum_i8(x));
}

float tl_avx2_dot_q2_0(const uint8_t *w, const uint8_t *a, int64_t n) {
    float sum = 0;
    const int64_t nb = n / 64;
    for (int64_t b = 0; b < nb; b += 2, w += 36, a += 4 * 34) {
        const int two = b + 1 < nb;
        __m256i l0, h0, l1 = _mm256_setzero_si256(), h1 = _mm256_setzero_si256();
        q2_codes(w + 2, &l0, &h0);
        if (two) q2_codes(w + 20, &l1, &h1);
        int32_t s[4];
        _mm_storeu_si128((__m128i *)(void *)s,
                         hsum4_i32(q2_sub(l0, a + 2), q2_sub(h0, a + 36), two ? q2_sub(l1, a + 70) : l1,
                                   two ? q2_sub(h1, a + 104) : h1));
        sum = sum + f16_at(w) * (f16_at(a) * (float)s[0] + f16_at(a + 34) * (float)s[1]);
        if (two) sum = sum + f16_at(w + 18) * (f16_at(a + 68) * (float)s[2] + f16_at(a + 102) * (float)s[3]);
    }
    return sum;
}

/* ---- GEMMs on 16-row groups (repack.h). A 64-byte chunk is two ymm: rows 0-7 and rows 8-15 of the group, each
 * lane 4 inputs of its row. maddubs (u8 codes × s8 activations broadcast to every lane) gives per lane two i16 pair
 * sums, which add up in i16 for a few chunks (bounds below) before one madd widens them to i32: every sum is exact,
 * for any code 0..3 and any int8 activation. ---- */

/* An empty asm on an accumulator keeps it a serial chain: otherwise GCC re-associates the integer adds of a whole
 * unrolled block into a tree, which holds every product at once and spills them to the stack. */
#define KEEP_CHAIN(v) __asm__("" : "+x"(v))

/* The 4 int8 activations at p, broadcast to 8 lanes. */
AI __m256i bc4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* One token, one group, chunks [c0, c1) ((c1 - c0) % 8 == 0; x = the activations of chunk c0). Codes are masked in
 * place after one shift: v & 3 and (v >> 4) & 3 are codes 0 and 2, v & 12 and (v >> 4) & 12 are 4 × codes 1 and 3.
 * Over 4 chunks an i16 lane of b (the 4× kind) takes 8 pair sums of at most 2·12·128 = 3072 (24576), then joins a
 * as b >> 2 (exact: every term is a multiple of 4); over 8 chunks a lane of a takes 16 pair sums of at most 768 and
 * two such quarters (24576 in all) before one madd widens it: every bound below 32767, for any code 0..3 and any
 * int8 activation. (An expanded copy of the activations, 4 bytes repeated over the 8 lanes so maddubs could take
 * them as its memory operand, ran 2 fewer instructions per 32 weight bytes but half as fast: 20 KB of activations
 * for n = 2560 fight the weight stream for L1; measured 9-11 GB/s against 16-23 GB/s with broadcasts.) */
AI void codes_dot1_unit4(const uint8_t *g, const int8_t *x, __m256i *a) {
    const __m256i m3 = _mm256_set1_epi8(3), m12 = _mm256_set1_epi8(12);
    __m256i b[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int u = 0; u < 4; u++) {
        const int8_t *xp = x + 16 * u;
        const __m256i b0 = bc4(xp), b1 = bc4(xp + 4), b2 = bc4(xp + 8), b3 = bc4(xp + 12);
        for (int h = 0; h < 2; h++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(g + 64 * u + 32 * h));
            const __m256i v4 = _mm256_srli_epi16(v, 4);
            a[h] = _mm256_add_epi16(a[h], _mm256_maddubs_epi16(_mm256_and_si256(v, m3), b0));
            b[h] = _mm256_add_epi16(b[h], _mm256_maddubs_epi16(_mm256_and_si256(v, m12), b1));
            a[h] = _mm256_add_epi16(a[h], _mm256_maddubs_epi16(_mm256_and_si256(v4, m3), b2));
            b[h] = _mm256_add_epi16(b[h], _mm256_maddubs_epi16(_mm256_and_si256(v4, m12), b3));
            KEEP_CHAIN(a[h]);
            KEEP_CHAIN(b[h]);
        }
    }
    for (int h = 0; h < 2; h++) a[h] = _mm256_add_epi16(a[h], _mm256_srai_epi16(b[h], 2));
}

/* One-token GEMV prefetch, in bytes: every line of the group stream into L1, 2 KB ahead (as F16_PF_AHEAD). */
#define CODES_PF_AHEAD 2048

AI void codes_dot1_avx2(const uint8_t *g, const int8_t *x, int64_t c0, int64_t c1, __m256i *acc) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t c = c0; c < c1; c += 8) {
        __m256i a[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        for (int l = 0; l < 8; l++) _mm_prefetch((const char *)(g + 64 * (c + l) + CODES_PF_AHEAD), _MM_HINT_T0);
        codes_dot1_unit4(g + 64 * c, x + 16 * (c - c0), a);
        codes_dot1_unit4(g + 64 * (c + 4), x + 16 * (c + 4 - c0), a);
        for (int h = 0; h < 2; h++) acc[h] = _mm256_add_epi32(acc[h], _mm256_madd_epi16(a[h], ones));
    }
}

/* TT tokens (<= 8), one group, chunks [c0, c1) ((c1 - c0) % 8 == 0; x[t] = token t's activations of chunk c0): each
 * half-chunk is decoded once (shift, mask) and feeds every token. Half by half, so TT i16 accumulators live at once
 * (4 codes + 8 accumulators + temporaries fit the 16 registers); over 8 chunks a lane takes 32 pair sums of at most
 * 768 (24576) before one madd widens it. acc[2t + h] gathers token t, half h. Each token's sum is a serial chain
 * (KEEP_CHAIN): left to itself GCC interleaves the unrolled chunks of every token and spills. */
AI void codes_tile_avx2(const uint8_t *g, const int8_t *const *x, int TT, int64_t c0, int64_t c1, __m256i *acc) {
    const __m256i m3 = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    for (int64_t c = c0; c < c1; c += 8)
        for (int h = 0; h < 2; h++) {
            __m256i s[8];
            for (int t = 0; t < TT; t++) s[t] = _mm256_setzero_si256();
            for (int u = 0; u < 8; u++) {
                if (!h) _mm_prefetch((const char *)(g + 64 * (c + u) + CODES_PF_AHEAD), _MM_HINT_T0); /* half 1 reuses it */
                const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(g + 64 * (c + u) + 32 * h));
                const __m256i code0 = _mm256_and_si256(v, m3), code1 = _mm256_and_si256(_mm256_srli_epi16(v, 2), m3);
                const __m256i code2 = _mm256_and_si256(_mm256_srli_epi16(v, 4), m3), code3 = _mm256_and_si256(_mm256_srli_epi16(v, 6), m3);
                for (int t = 0; t < TT; t++) {
                    const int8_t *xp = x[t] + 16 * (c + u - c0);
                    const __m256i p01 = _mm256_add_epi16(_mm256_maddubs_epi16(code0, bc4(xp)), _mm256_maddubs_epi16(code1, bc4(xp + 4)));
                    const __m256i p23 = _mm256_add_epi16(_mm256_maddubs_epi16(code2, bc4(xp + 8)), _mm256_maddubs_epi16(code3, bc4(xp + 12)));
                    s[t] = _mm256_add_epi16(s[t], _mm256_add_epi16(p01, p23));
                    KEEP_CHAIN(s[t]);
                }
            }
            for (int t = 0; t < TT; t++) acc[2 * t + h] = _mm256_add_epi32(acc[2 * t + h], _mm256_madd_epi16(s[t], ones));
        }
}

/* I2_S epilogue for 8 rows of one token: the scalar formula, lane by lane. */
AI void i2s_store8(__m256i acc, const tl_acts *a, int t, float wscale, float *dst) {
    __m256 f = _mm256_sub_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps((float)a->sum[t]));
    f = _mm256_mul_ps(_mm256_div_ps(f, _mm256_set1_ps(a->scale[t])), _mm256_set1_ps(wscale));
    _mm256_storeu_ps(dst, f);
}

AI void i2s_tile_avx2(const tl_r16 *w, int64_t r, const tl_acts *a, int t0, int TT, float *y, int64_t ys) {
    const int64_t n = w->ne0;
    const uint8_t *g = w->data + (r / 16) * n * 4;
    const int8_t *x[8];
    __m256i acc[16];
    for (int t = 0; t < TT; t++) x[t] = a->q + (int64_t)(t0 + t) * n;
    for (int i = 0; i < 2 * TT; i++) acc[i] = _mm256_setzero_si256();
    codes_tile_avx2(g, x, TT, 0, n / 16, acc);
    for (int t = 0; t < TT; t++)
        for (int h = 0; h < 2; h++) i2s_store8(acc[2 * t + h], a, t0 + t, w->scale, y + (int64_t)(t0 + t) * ys + r + 8 * h);
}

/* Calls fn(..., TT) with TT a constant 1..8, so each tile is compiled for its token count. */
#define TILE_SWITCH8(fn, tt, ...)                                                                                      \
    switch (tt) {                                                                                                      \
    case 1: fn(__VA_ARGS__, 1, y, ys); break;                                                                          \
    case 2: fn(__VA_ARGS__, 2, y, ys); break;                                                                          \
    case 3: fn(__VA_ARGS__, 3, y, ys); break;                                                                          \
    case 4: fn(__VA_ARGS__, 4, y, ys); break;                                                                          \
    case 5: fn(__VA_ARGS__, 5, y, ys); break;                                                                          \
    case 6: fn(__VA_ARGS__, 6, y, ys); break;                                                                          \
    case 7: fn(__VA_ARGS__, 7, y, ys); break;                                                                          \
    default: fn(__VA_ARGS__, 8, y, ys); break;                                                                         \
    }

/* One token: the groups in order (one sequential stream), with the decode of codes_dot1_avx2. */
static void i2s_dot1_avx2(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y) {
    const int64_t n = w->ne0;
    for (int64_t r = r0; r < r1; r += 16) {
        __m256i acc[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        codes_dot1_avx2(w->data + (r / 16) * n * 4, a->q, 0, n / 16, acc);
        for (int h = 0; h < 2; h++) i2s_store8(acc[h], a, 0, w->scale, y + r + 8 * h);
    }
}

static void gemm_i2s_r16_avx2(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    if (a->T == 1) {
        i2s_dot1_avx2(w, r0, r1, a, y);
        return;
    }
    for (int64_t r = r0; r < r1; r += 16)
        for (int t0 = 0; t0 < a->T; t0 += 8) {
            const int tt = a->T - t0 < 8 ? a->T - t0 : 8;
            TILE_SWITCH8(i2s_tile_avx2, tt, w, r, a, t0)
        }
}

/* ---- TQ2_0 / TQ1_0 on 2-bit groups: per 256-block (16 chunks) the exact integer sums of 16 rows, then the block's
 * float step sum += (float)(Σ code·q − Σq) · (d_act · d_w) per row lane, in block order (the scalar order). ---- */

AI int32_t bsum_total8(const tl_block_q8k *b) {
    return hsum_i32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)b->bsums), _mm256_set1_epi16(1)));
}

AI __m256 tq_step8(__m256 sum, __m256i acc, const tl_block_q8k *xb, __m256 dw) {
    const __m256 f = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc, _mm256_set1_epi32(bsum_total8(xb))));
    return _mm256_add_ps(sum, _mm256_mul_ps(f, _mm256_mul_ps(_mm256_set1_ps(xb->d), dw)));
}

AI void tq_tile_avx2(const tl_r16 *w, int64_t r, const tl_acts *a, int t0, int TT, float *y, int64_t ys) {
    const int64_t n = w->ne0, nb = n / 256;
    const uint8_t *g = w->data + (r / 16) * n * 4;
    __m256 sum[16];
    for (int i = 0; i < 2 * TT; i++) sum[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint16_t *dwp = w->dw + ((r / 16) * nb + b) * 16;
        const __m256 dw[2] = {_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)dwp)),
                              _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(dwp + 8)))};
        __m256i acc[16];
        if (TT == 1) {
            acc[0] = acc[1] = _mm256_setzero_si256();
            codes_dot1_avx2(g, a->q8k[(int64_t)t0 * nb + b].qs, 16 * b, 16 * b + 16, acc);
        } else {
            const int8_t *x[8];
            for (int t = 0; t < TT; t++) x[t] = a->q8k[(int64_t)(t0 + t) * nb + b].qs;
            for (int i = 0; i < 2 * TT; i++) acc[i] = _mm256_setzero_si256();
            codes_tile_avx2(g, x, TT, 16 * b, 16 * b + 16, acc);
        }
        for (int t = 0; t < TT; t++)
            for (int h = 0; h < 2; h++)
                sum[2 * t + h] = tq_step8(sum[2 * t + h], acc[2 * t + h], &a->q8k[(int64_t)(t0 + t) * nb + b], dw[h]);
    }
    for (int t = 0; t < TT; t++)
        for (int h = 0; h < 2; h++) _mm256_storeu_ps(y + (int64_t)(t0 + t) * ys + r + 8 * h, sum[2 * t + h]);
}

static void gemm_tq_r16_avx2(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    for (int64_t r = r0; r < r1; r += 16)
        for (int t0 = 0; t0 < a->T; t0 += 8) {
            const int tt = a->T - t0 < 8 ? a->T - t0 : 8;
            TILE_SWITCH8(tq_tile_avx2, tt, w, r, a, t0)
        }
}

/* ---- int8 rows (the re-quantized head), stored as w + 128 in 0..255: maddubs would saturate on such bytes, so each
 * byte is split into nibbles (u = 16·hi + lo, both 0..15) and Σ u·q = 16·Σ hi·q + Σ lo·q, exact; Σ w·q is that minus
 * 128·Σq. A pair sum is at most 2·15·128 = 3840, so 8 chunks add up in i16 (30720) before they are widened. ---- */

AI void i8_store8(__m256i hi, __m256i lo, const tl_acts *a, int t, const float *drow, float *dst) {
    const __m256i u = _mm256_add_epi32(_mm256_slli_epi32(hi, 4), lo);
    const __m256i exact = _mm256_sub_epi32(u, _mm256_set1_epi32(128 * a->sum[t]));
    const __m256 f = _mm256_div_ps(_mm256_cvtepi32_ps(exact), _mm256_set1_ps(a->scale[t]));
    _mm256_storeu_ps(dst, _mm256_mul_ps(f, _mm256_loadu_ps(drow)));
}

/* TT tokens, one group, one half (8 rows): chunk c (64 bytes) holds inputs 4c..4c+3 of the group's 16 rows. */
AI void i8_tile_avx2(const tl_r16 *w, int64_t r, const tl_acts *a, int t0, int TT, float *y, int64_t ys) {
    const int64_t n = w->ne0, nc = n / 4;
    const uint8_t *g = w->data + (r / 16) * n * 16;
    const __m256i m15 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    for (int h = 0; h < 2; h++) {
        __m256i hi32[8], lo32[8];
        for (int t = 0; t < TT; t++) hi32[t] = lo32[t] = _mm256_setzero_si256();
        for (int64_t c = 0; c < nc; c += 8) {
            const int64_t ce = c + 8 < nc ? c + 8 : nc;
            __m256i hs[8], ls[8];
            for (int t = 0; t < TT; t++) hs[t] = ls[t] = _mm256_setzero_si256();
            for (int64_t k = c; k < ce; k++) {
                if (!h) _mm_prefetch((const char *)(g + 64 * k + CODES_PF_AHEAD), _MM_HINT_T0); /* half 1 reuses it */
                const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(g + 64 * k + 32 * h));
                const __m256i vl = _mm256_and_si256(v, m15), vh = _mm256_and_si256(_mm256_srli_epi16(v, 4), m15);
                for (int t = 0; t < TT; t++) {
                    const __m256i b = bc4(a->q + (int64_t)(t0 + t) * n + 4 * k);
                    hs[t] = _mm256_add_epi16(hs[t], _mm256_maddubs_epi16(vh, b));
                    ls[t] = _mm256_add_epi16(ls[t], _mm256_maddubs_epi16(vl, b));
                }
            }
            for (int t = 0; t < TT; t++) {
                hi32[t] = _mm256_add_epi32(hi32[t], _mm256_madd_epi16(hs[t], ones));
                lo32[t] = _mm256_add_epi32(lo32[t], _mm256_madd_epi16(ls[t], ones));
            }
        }
        for (int t = 0; t < TT; t++)
            i8_store8(hi32[t], lo32[t], a, t0 + t, w->drow + r + 8 * h, y + (int64_t)(t0 + t) * ys + r + 8 * h);
    }
}

static void gemm_i8_r16_avx2(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    for (int64_t r = r0; r < r1; r += 16)
        for (int t0 = 0; t0 < a->T; t0 += 4) {
            const int tt = a->T - t0 < 4 ? a->T - t0 : 4;
            switch (tt) {
            case 1: i8_tile_avx2(w, r, a, t0, 1, y, ys); break;
            case 2: i8_tile_avx2(w, r, a, t0, 2, y, ys); break;
            case 3: i8_tile_avx2(w, r, a, t0, 3, y, ys); break;
            default: i8_tile_avx2(w, r, a, t0, 4, y, ys); break;
            }
        }
}

/* ---- int4 rows (the 4-bit head, repack.h), per half of a group (8 rows): the low nibbles of 32 bytes are one chunk
 * of q + 8 (0..15) and the high nibbles the next; maddubs pairs are at most 2·15·128 = 3840, so a block's 8 add up in
 * i16 (30720) before madd widens them. A block's sum starts at -8·Σx and is scaled by its rows' sub-scales. ---- */

AI void i4_tile_avx2(const tl_r16 *w, int64_t r, const tl_acts *a, int t0, int TT, const int32_t *off, float *y, int64_t ys) {
    const int64_t n = w->ne0, nb = n / 32;
    const uint8_t *g = w->data + (r / 16) * n * 8, *sc = w->sub + (r / 16) * nb * 16;
    const __m256i m15 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    for (int h = 0; h < 2; h++) {
        __m256i acc[4];
        for (int t = 0; t < TT; t++) acc[t] = _mm256_setzero_si256();
        for (int64_t b = 0; b < nb; b++) {
            __m256i s16[4];
            for (int t = 0; t < TT; t++) s16[t] = _mm256_setzero_si256();
            for (int p = 0; p < 4; p++) {
                const uint8_t *src = g + 64 * (4 * b + p) + 32 * h;
                if (!h) _mm_prefetch((const char *)(src + CODES_PF_AHEAD), _MM_HINT_T0); /* half 1 reuses it */
                const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)src);
                const __m256i vl = _mm256_and_si256(v, m15), vh = _mm256_and_si256(_mm256_srli_epi16(v, 4), m15);
                for (int t = 0; t < TT; t++) {
                    const int8_t *xp = a->q + (int64_t)(t0 + t) * n + 32 * b + 8 * p;
                    s16[t] = _mm256_add_epi16(s16[t], _mm256_maddubs_epi16(vl, bc4(xp)));
                    s16[t] = _mm256_add_epi16(s16[t], _mm256_maddubs_epi16(vh, bc4(xp + 4)));
                }
            }
            const __m256i s = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(sc + 16 * b + 8 * h)));
            for (int t = 0; t < TT; t++) {
                const __m256i blk = _mm256_add_epi32(_mm256_madd_epi16(s16[t], ones), _mm256_set1_epi32(off[t * nb + b]));
                acc[t] = _mm256_add_epi32(acc[t], _mm256_mullo_epi32(blk, s));
            }
        }
        for (int t = 0; t < TT; t++) {
            const __m256 f = _mm256_div_ps(_mm256_cvtepi32_ps(acc[t]), _mm256_set1_ps(a->scale[t0 + t]));
            _mm256_storeu_ps(y + (int64_t)(t0 + t) * ys + r + 8 * h, _mm256_mul_ps(f, _mm256_loadu_ps(w->drow + r + 8 * h)));
        }
    }
}

static void gemm_i4_r16_avx2(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    const int64_t n = w->ne0, nb = n / 32;
    int32_t off[TL_I4_TOKENS * (TL_I4_MAX_NE0 / 32)];
    for (int tb = 0; tb < a->T; tb += TL_I4_TOKENS) {
        const int nt = a->T - tb < TL_I4_TOKENS ? a->T - tb : TL_I4_TOKENS;
        for (int t = 0; t < nt; t++) tl_i4_offsets(a->q + (int64_t)(tb + t) * n, n, off + t * nb);
        for (int64_t r = r0; r < r1; r += 16)
            for (int t0 = 0; t0 < nt; t0 += 4) {
                const int tt = nt - t0 < 4 ? nt - t0 : 4;
                const int32_t *o = off + t0 * nb;
                switch (tt) {
                case 1: i4_tile_avx2(w, r, a, tb + t0, 1, o, y, ys); break;
                case 2: i4_tile_avx2(w, r, a, tb + t0, 2, o, y, ys); break;
                case 3: i4_tile_avx2(w, r, a, tb + t0, 3, o, y, ys); break;
                default: i4_tile_avx2(w, r, a, tb + t0, 4, o, y, ys); break;
                }
            }
    }
}

/* ---- Attention per GQA group (kernels.h attn_kq, attn_pv_g) ---- */

/* Two dots' lanes.h folds at once (a[0..3] dot 0's lanes 0-31, a[4..7] dot 1's): the same additions as fold32. */
AI void fold32x2(const __m256 *a, float *out) {
    const __m256 v0 = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
    const __m256 v1 = _mm256_add_ps(_mm256_add_ps(a[4], a[6]), _mm256_add_ps(a[5], a[7]));
    const __m256 w = _mm256_add_ps(_mm256_permute2f128_ps(v0, v1, 0x20), _mm256_permute2f128_ps(v0, v1, 0x31)); /* + 4 */
    const __m256 u = _mm256_add_ps(w, _mm256_shuffle_ps(w, w, 0xEE));                                        /* + 2 */
    const __m256 r = _mm256_add_ps(u, _mm256_shuffle_ps(u, u, 0x55));                                        /* + 1 */
    out[0] = _mm256_cvtss_f32(r);
    out[1] = _mm_cvtss_f32(_mm256_extractf128_ps(r, 1));
}

/* Two dots over hd inputs (hd % 32 == 0): K rows k0, k1 times queries q0, q1 (a row converted once serves both when
 * k0 == k1, the two heads of one position). */
AI void kq_pair(const uint16_t *k0, const uint16_t *k1, const float *q0, const float *q1, int64_t hd, float *out) {
    __m256 a[8];
    for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < hd; i += 32)
        for (int c = 0; c < 4; c++) {
            const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(k0 + i + 8 * c)));
            const __m256 w1 = k0 == k1 ? w0 : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(k1 + i + 8 * c)));
            a[c] = _mm256_add_ps(a[c], _mm256_mul_ps(w0, _mm256_loadu_ps(q0 + i + 8 * c)));
            a[4 + c] = _mm256_add_ps(a[4 + c], _mm256_mul_ps(w1, _mm256_loadu_ps(q1 + i + 8 * c)));
        }
    fold32x2(a, out);
}

static void attn_kq(float *s, int64_t ss, const uint16_t *k, int64_t n_pos, int64_t stride, const float *q, int G, int64_t hd,
                    float scale) {
    int g = 0;
    float o[2];
    for (; hd % 32 == 0 && g + 2 <= G; g += 2) /* two heads, each K row converted once */
        for (int64_t p = 0; p < n_pos; p++) {
            kq_pair(k + p * stride, k + p * stride, q + g * hd, q + (g + 1) * hd, hd, o);
            s[g * ss + p] = o[0] * scale, s[(g + 1) * ss + p] = o[1] * scale;
        }
    for (; g < G; g++) { /* one head, two positions at a time */
        int64_t p = 0;
        for (; hd % 32 == 0 && p + 2 <= n_pos; p += 2) {
            kq_pair(k + p * stride, k + (p + 1) * stride, q + g * hd, q + g * hd, hd, o);
            s[g * ss + p] = o[0] * scale, s[g * ss + p + 1] = o[1] * scale;
        }
        for (; p < n_pos; p++) s[g * ss + p] = dot_f16(k + p * stride, q + g * hd, hd) * scale;
    }
}

/* P·V of H heads over D outputs from output d (H·D/8 == 8 accumulators): every output sums positions in order, mul
 * then add (the scalar bits), with 8 independent chains instead of one. */
AI void pv_tile8(float *out, const float *prob, int64_t ps, const uint16_t *v, int64_t n_pos, int64_t stride, int64_t hd, int H,
                 int D, int64_t d) {
    __m256 a[8];
    for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_ps();
    for (int64_t p = 0; p < n_pos; p++) {
        __m256 vc[8];
        for (int c = 0; c < D / 8; c++) vc[c] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(v + p * stride + d + 8 * c)));
        for (int h = 0; h < H; h++) {
            const __m256 pr = _mm256_set1_ps(prob[h * ps + p]);
            for (int c = 0; c < D / 8; c++) a[h * (D / 8) + c] = _mm256_add_ps(a[h * (D / 8) + c], _mm256_mul_ps(pr, vc[c]));
        }
    }
    for (int h = 0; h < H; h++)
        for (int c = 0; c < D / 8; c++) _mm256_storeu_ps(out + h * hd + d + 8 * c, a[h * (D / 8) + c]);
}

static void attn_pv_g(float *out, const float *prob, int64_t ps, int G, const uint16_t *v, int64_t n_pos, int64_t stride,
                      int64_t hd) {
    int g = 0;
    for (; hd % 16 == 0 && g + 4 <= G; g += 4)
        for (int64_t d = 0; d < hd; d += 16) pv_tile8(out + g * hd, prob + g * ps, ps, v, n_pos, stride, hd, 4, 16, d);
    for (; g < G; g++) {
        int64_t d = 0;
        for (; d + 64 <= hd; d += 64) pv_tile8(out + g * hd, prob + g * ps, ps, v, n_pos, stride, hd, 1, 64, d);
        if (d < hd) tl_avx2_attn_pv(out + g * hd + d, prob + g * ps, v + d, n_pos, stride, hd - d);
    }
}

static const tl_kernels k_avx2 = {
    .exp_minus_max = tl_exp_minus_max_row,
    .name = "avx2",
    .quantize_i8 = tl_avx2_quantize_i8,
    .quantize_q8k = tl_scalar_quantize_q8k,
    .i2s_gemm = tl_avx2_i2s_gemm,
    .dot_tq2 = tl_avx2_dot_tq2,
    .dot_tq1 = tl_avx2_dot_tq1,
    .dot_f16 = dot_f16,
    .dot_f32 = dot_f32,
    .dot_q8_0 = tl_avx2_dot_q8_0,
    .attn_pv = tl_avx2_attn_pv,
    .attn_kq = attn_kq,
    .attn_pv_g = attn_pv_g,
    .dot_q1_0 = tl_avx2_dot_q1_0,
    .dot_q2_0 = tl_avx2_dot_q2_0,
    .gemm_i2s_r16 = gemm_i2s_r16_avx2,
    .gemm_tq_r16 = gemm_tq_r16_avx2,
    .gemm_i8_r16 = gemm_i8_r16_avx2,
    .gemm_i4_r16 = gemm_i4_r16_avx2,
    .gemm_f16 = gemm_f16,
};

const tl_kernels *tl_kernels_avx2_table(void) { return &k_avx2; }
