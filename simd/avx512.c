/* AVX-512 kernels with VNNI (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c;
 * selected only when the CPU has them).
 *
 * I2_S layout trick: one 64-byte load holds two 128-element blocks (32 code bytes each). Shifting it gives
 * codes for [block b elements 32k..32k+31 | block b+1 elements 32k..32k+31]. quantize_i8 of this path writes
 * the activations in that same order, so every vpdpbusd reads contiguous memory; weights stay as in the file. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "../runtime/tensor_types.h"
#include "lanes.h"
#include "paths.h"

/* Position of activation element i in this path's layout (pairs of blocks interleaved by 32-chunks). */
static inline int64_t act_pos(int64_t i, int64_t n_pairs) {
    const int64_t p = i / 256;
    if (p >= n_pairs) return i; /* a trailing odd block stays plain */
    const int64_t e = i % 256, j = e / 128, m = e % 128;
    return 256 * p + 64 * (m / 32) + 32 * j + m % 32;
}

static void quantize_i8(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum) {
    __m512 vmax = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    double max = (double)_mm512_reduce_max_ps(vmax);
    if (max < 1e-5) max = 1e-5;
    for (; i < n; i++) max = fabs((double)x[i]) > max ? fabs((double)x[i]) : max;
    const float s = (float)(127.0 / max);
    const __m512 vs = _mm512_set1_ps(s);
    const __m512i lo = _mm512_set1_epi32(-128), hi = _mm512_set1_epi32(127);
    const int64_t n_pairs = n / 256;
    __m512i acc = _mm512_setzero_si512();
    i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), vs)); /* RNE */
        r = _mm512_min_epi32(_mm512_max_epi32(r, lo), hi);
        acc = _mm512_add_epi32(acc, r);
        _mm_storeu_si128((__m128i *)(q + act_pos(i, n_pairs)), _mm512_cvtepi32_epi8(r));
    }
    int32_t total = _mm512_reduce_add_epi32(acc);
    for (; i < n; i++) {
        int32_t r = (int32_t)lrintf(x[i] * s);
        r = r < -128 ? -128 : r > 127 ? 127 : r;
        q[act_pos(i, n_pairs)] = (int8_t)r;
        total += r;
    }
    *scale = s;
    *sum = total;
}

static inline __m512i codes(__m512i w, int shift) {
    return _mm512_and_si512(_mm512_srli_epi16(w, (unsigned)shift), _mm512_set1_epi8(3));
}

/* The odd trailing block, 256-bit VNNI, plain activation order. */
static inline __m256i tail_block(const uint8_t *w, const int8_t *x, __m256i acc) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)w), m3 = _mm256_set1_epi8(3);
    acc = _mm256_dpbusd_epi32(acc, _mm256_and_si256(_mm256_srli_epi16(v, 6), m3), _mm256_loadu_si256((const __m256i *)x));
    acc = _mm256_dpbusd_epi32(acc, _mm256_and_si256(_mm256_srli_epi16(v, 4), m3), _mm256_loadu_si256((const __m256i *)(x + 32)));
    acc = _mm256_dpbusd_epi32(acc, _mm256_and_si256(_mm256_srli_epi16(v, 2), m3), _mm256_loadu_si256((const __m256i *)(x + 64)));
    return _mm256_dpbusd_epi32(acc, _mm256_and_si256(v, m3), _mm256_loadu_si256((const __m256i *)(x + 96)));
}

static inline int32_t hsum256(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* Decode (one token): codes are masked in place instead of shifted. (w & 0xC0) is code·64, (w & 0x30) code·16,
 * (w & 0x0C) code·4, (w & 0x03) code: four accumulators, each an exact multiple of its scale, divided once at
 * the end. Two rows share every activation load. */
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 2048
#endif
#ifndef PREFETCH_FAR
#define PREFETCH_FAR 8192
#endif

static inline void rows2_dot1(const uint8_t *ra, const uint8_t *rb, const int8_t *q, int64_t n_pairs, int tail,
                              int32_t *out_a, int32_t *out_b) {
    const __m512i m0 = _mm512_set1_epi8((char)0xC0), m1 = _mm512_set1_epi8(0x30), m2 = _mm512_set1_epi8(0x0C),
                  m3 = _mm512_set1_epi8(0x03);
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (int64_t p = 0; p < n_pairs; p++) {
        /* fetch the rows after next while this pair computes: the loads then overlap the arithmetic */
        _mm_prefetch((const char *)(ra + 64 * p + PREFETCH_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(rb + 64 * p + PREFETCH_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(ra + 64 * p + PREFETCH_FAR), _MM_HINT_T1);
        _mm_prefetch((const char *)(rb + 64 * p + PREFETCH_FAR), _MM_HINT_T1);
        const __m512i wa = _mm512_loadu_si512(ra + 64 * p), wb = _mm512_loadu_si512(rb + 64 * p);
        const int8_t *x = q + 256 * p;
        const __m512i x0 = _mm512_loadu_si512(x), x1 = _mm512_loadu_si512(x + 64);
        const __m512i x2 = _mm512_loadu_si512(x + 128), x3 = _mm512_loadu_si512(x + 192);
        a0 = _mm512_dpbusd_epi32(a0, _mm512_and_si512(wa, m0), x0);
        b0 = _mm512_dpbusd_epi32(b0, _mm512_and_si512(wb, m0), x0);
        a1 = _mm512_dpbusd_epi32(a1, _mm512_and_si512(wa, m1), x1);
        b1 = _mm512_dpbusd_epi32(b1, _mm512_and_si512(wb, m1), x1);
        a2 = _mm512_dpbusd_epi32(a2, _mm512_and_si512(wa, m2), x2);
        b2 = _mm512_dpbusd_epi32(b2, _mm512_and_si512(wb, m2), x2);
        a3 = _mm512_dpbusd_epi32(a3, _mm512_and_si512(wa, m3), x3);
        b3 = _mm512_dpbusd_epi32(b3, _mm512_and_si512(wb, m3), x3);
    }
    int32_t sa = _mm512_reduce_add_epi32(a0) / 64 + _mm512_reduce_add_epi32(a1) / 16 + _mm512_reduce_add_epi32(a2) / 4 +
                 _mm512_reduce_add_epi32(a3);
    int32_t sb = _mm512_reduce_add_epi32(b0) / 64 + _mm512_reduce_add_epi32(b1) / 16 + _mm512_reduce_add_epi32(b2) / 4 +
                 _mm512_reduce_add_epi32(b3);
    if (tail) {
        sa += hsum256(tail_block(ra + 64 * n_pairs, q + 256 * n_pairs, _mm256_setzero_si256()));
        sb += hsum256(tail_block(rb + 64 * n_pairs, q + 256 * n_pairs, _mm256_setzero_si256()));
    }
    *out_a = sa;
    *out_b = sb;
}

/* Prompts: a 2-row x 4-token tile. Codes of both rows are decoded once per 64-byte step and every activation load
 * feeds two vpdpbusd. Tokens past T reuse the last token's activations and are not stored. */
static void tile_2x4(const uint8_t *ra, const uint8_t *rb, const int8_t *q, int64_t n, int t0, int T, int64_t n_pairs,
                     int tail, int32_t *acc, int64_t stride, int64_t r, int two_rows) {
    const int8_t *x[4];
    for (int t = 0; t < 4; t++) x[t] = q + (int64_t)(t0 + t < T ? t0 + t : T - 1) * n;
    __m512i A[4], B[4];
    for (int t = 0; t < 4; t++) A[t] = B[t] = _mm512_setzero_si512();
    for (int64_t p = 0; p < n_pairs; p++) {
        const __m512i wa = _mm512_loadu_si512(ra + 64 * p), wb = _mm512_loadu_si512(rb + 64 * p);
        const __m512i a0 = codes(wa, 6), a1 = codes(wa, 4), a2 = codes(wa, 2), a3 = codes(wa, 0);
        const __m512i b0 = codes(wb, 6), b1 = codes(wb, 4), b2 = codes(wb, 2), b3 = codes(wb, 0);
        for (int t = 0; t < 4; t++) {
            const int8_t *xp = x[t] + 256 * p;
            __m512i v = _mm512_loadu_si512(xp);
            A[t] = _mm512_dpbusd_epi32(A[t], a0, v);
            B[t] = _mm512_dpbusd_epi32(B[t], b0, v);
            v = _mm512_loadu_si512(xp + 64);
            A[t] = _mm512_dpbusd_epi32(A[t], a1, v);
            B[t] = _mm512_dpbusd_epi32(B[t], b1, v);
            v = _mm512_loadu_si512(xp + 128);
            A[t] = _mm512_dpbusd_epi32(A[t], a2, v);
            B[t] = _mm512_dpbusd_epi32(B[t], b2, v);
            v = _mm512_loadu_si512(xp + 192);
            A[t] = _mm512_dpbusd_epi32(A[t], a3, v);
            B[t] = _mm512_dpbusd_epi32(B[t], b3, v);
        }
    }
    for (int t = 0; t < 4 && t0 + t < T; t++) {
        int32_t sa = _mm512_reduce_add_epi32(A[t]), sb = _mm512_reduce_add_epi32(B[t]);
        if (tail) {
            sa += hsum256(tail_block(ra + 64 * n_pairs, x[t] + 256 * n_pairs, _mm256_setzero_si256()));
            sb += hsum256(tail_block(rb + 64 * n_pairs, x[t] + 256 * n_pairs, _mm256_setzero_si256()));
        }
        acc[(int64_t)(t0 + t) * stride + r] = sa;
        if (two_rows) acc[(int64_t)(t0 + t) * stride + r + 1] = sb;
    }
}

static void i2s_gemm(const uint8_t *w, int64_t n, int64_t r0, int64_t r1, const int8_t *q, int T, int32_t *acc,
                     int64_t acc_stride) {
    const int64_t row_bytes = n / 4, nb = n / 128, n_pairs = nb / 2;
    const int tail = (int)(nb & 1);
    for (int64_t r = r0; r < r1; r += 2) {
        const int two = r + 1 < r1;
        const uint8_t *ra = w + r * row_bytes, *rb = two ? ra + row_bytes : ra;
        if (T == 1) {
            int32_t sa, sb;
            rows2_dot1(ra, rb, q, n_pairs, tail, &sa, &sb);
            acc[r] = sa;
            if (two) acc[r + 1] = sb;
            continue;
        }
        for (int t0 = 0; t0 < T; t0 += 4) tile_2x4(ra, rb, q, n, t0, T, n_pairs, tail, acc, acc_stride, r, two);
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

/* Float dots in the canonical lane order (lanes.h): two zmm accumulators hold lanes 0-31, mul then add. */
static float dot_f16(const uint16_t *w, const float *x, int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch((const char *)(w + i + 4096), _MM_HINT_T1); /* 8 KB ahead: the head streams 656 MB per token */
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

static const tl_kernels k_avx512 = {
    "avx512", quantize_i8, tl_scalar_quantize_q8k, i2s_gemm, tl_avx2_dot_tq2, tl_avx2_dot_tq1, dot_f16, dot_f32,
    tl_avx2_dot_q8_0, tl_avx2_attn_pv,
    dot_q1_0, dot_q2_0,
};

const tl_kernels *tl_kernels_avx512_table(void) { return &k_avx512; }
