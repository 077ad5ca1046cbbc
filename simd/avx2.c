/* AVX2 kernels (compiled with -mavx2 -mfma -mf16c; selected only when the CPU has them).
 * Integer results equal the scalar reference bit for bit; float sums may differ in order. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "../runtime/tensor_types.h"
#include "lanes.h"
#include "paths.h"

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

/* Float dots in the canonical lane order (lanes.h): four ymm accumulators hold lanes 0-31, mul then add. */
static float dot_f16(const uint16_t *w, const float *x, int64_t n) {
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch((const char *)(w + i + 4096), _MM_HINT_T1);
        for (int k = 0; k < 4; k++)
            a[k] = _mm256_add_ps(a[k], _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 8 * k))),
                                                     _mm256_loadu_ps(x + i + 8 * k)));
    }
    if (i == n) return fold32(a);
    float l[TL_LANES];
    for (int k = 0; k < 4; k++) _mm256_storeu_ps(l + 8 * k, a[k]);
    for (; i < n; i++) l[i % TL_LANES] += tl_f16_to_f32(w[i]) * x[i];
    return tl_lanes_fold(l);
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

static const tl_kernels k_avx2 = {
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
    .dot_q1_0 = tl_avx2_dot_q1_0,
    .dot_q2_0 = tl_avx2_dot_q2_0,
};

const tl_kernels *tl_kernels_avx2_table(void) { return &k_avx2; }
