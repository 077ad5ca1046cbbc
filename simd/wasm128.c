/* WebAssembly SIMD128 kernels (Emscripten and WASI builds, -msimd128), designed for 128-bit lanes.
 *
 * SIMD128 has no int8 dot product, so integer dots run on i16 lanes: `load8x8` widens 8 bytes while loading (codes
 * zero-extended, activations sign-extended) and i32x4.dot_i16x8_s multiplies 8 pairs. I2_S decode tiles 4 rows so
 * one activation load feeds 4 rows; prompts tile 2 rows x 4 tokens so one code decode feeds 4 tokens. Row sums are
 * reduced once per tile (a 4-vector transpose-add), never inside the loop. TQ2_0 / TQ1_0 / Q8_0 rows are reduced 4
 * blocks at a time and their per-block float products are added in block order, as the scalar reference does.
 * Integer results equal the scalar reference bit for bit; float dots keep the canonical lane order (lanes.h).
 * Relaxed SIMD lives in wasm_relaxed.c (a separate module; see ../shared/specs/toolchain.md §4). */
#include <math.h>
#include <string.h>
#include <wasm_simd128.h>

#include "../runtime/tensor_types.h"
#include "exp_row.h"
#include "lanes.h"
#include "paths.h"
#include "repack.h"
#include "wasm_util.h"

void tl_wasm128_quantize_i8(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum) {
    v128_t vmax = wasm_f32x4_splat(0);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vmax = wasm_f32x4_max(vmax, wasm_f32x4_abs(wasm_v128_load(x + i)));
    double max = 1e-5;
    for (int k = 0; k < 4; k++) {
        float m[4];
        wasm_v128_store(m, vmax);
        max = (double)m[k] > max ? (double)m[k] : max;
    }
    for (; i < n; i++) max = fabs((double)x[i]) > max ? fabs((double)x[i]) : max;
    const float s = (float)(127.0 / max);
    const v128_t vs = wasm_f32x4_splat(s);
    v128_t acc = wasm_i32x4_splat(0);
    i = 0;
    for (; i + 16 <= n; i += 16) {
        v128_t r[4];
        for (int k = 0; k < 4; k++) /* nearest is ties-to-even; the values fit, so trunc_sat is exact */
            r[k] = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(x + i + 4 * k), vs)));
        const v128_t a = wasm_i16x8_narrow_i32x4(r[0], r[1]), b = wasm_i16x8_narrow_i32x4(r[2], r[3]);
        const v128_t v = wasm_i8x16_narrow_i16x8(a, b); /* saturating: the clamp */
        wasm_v128_store(q + i, v);
        acc = wasm_i32x4_add(acc, wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_extadd_pairwise_i8x16(v)));
    }
    int32_t total = wasm_i32x4_extract_lane(acc, 0) + wasm_i32x4_extract_lane(acc, 1) + wasm_i32x4_extract_lane(acc, 2) +
                    wasm_i32x4_extract_lane(acc, 3);
    for (; i < n; i++) {
        int32_t r = (int32_t)lrintf(x[i] * s);
        r = r < -128 ? -128 : r > 127 ? 127 : r;
        q[i] = (int8_t)r;
        total += r;
    }
    *scale = s;
    *sum = total;
}


static inline v128_t mac(v128_t acc, v128_t codes, v128_t x) { return wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(codes, x)); }
static inline v128_t ld_codes(const uint8_t *p) { return wasm_u16x8_load8x8(p); }
static inline v128_t ld_act(const int8_t *p) { return wasm_i16x8_load8x8(p); }

/* I2_S: byte j of a 128-element block holds elements j, 32+j, 64+j, 96+j in bits 7-6, 5-4, 3-2, 1-0. In u16 lanes
 * of zero-extended bytes, v>>6 needs no mask. */
static inline v128_t i2s_code(v128_t v, int g) {
    const v128_t m3 = wasm_i16x8_splat(3);
    switch (g) {
    case 0: return wasm_u16x8_shr(v, 6);
    case 1: return wasm_v128_and(wasm_u16x8_shr(v, 4), m3);
    case 2: return wasm_v128_and(wasm_u16x8_shr(v, 2), m3);
    default: return wasm_v128_and(v, m3);
    }
}

/* One token: activations are prepared once per call as i16, group g (bits 7-6, 5-4, 3-2, 1-0) scaled by 4^g, so the
 * codes need no shift: (v & 0xC0)·x + (v & 0x30)·4x + (v & 0x0C)·16x + (v & 0x03)·64x = 64·Σ code·x. Every product
 * fits i16 x i16 -> i32 exactly and a row's sum (|64·3·128·n| < 2^31 for n <= 8192) fits i32. */
#define I2S_PREP_MAX 8192

static void i2s_prepare(const int8_t *q, int64_t n, int16_t *xs) {
    for (int64_t i = 0; i < n; i += 8) {
        const int g = (int)(i % 128) / 32;
        wasm_v128_store(xs + i, wasm_i16x8_shl(ld_act(q + i), 2 * g));
    }
}

/* Four rows: each 8-byte step's four activation vectors serve all four rows. */
static void i2s_rows4_tok1(const uint8_t *const row[4], const int16_t *xs, int64_t nb, int32_t out[4]) {
    const v128_t m0 = wasm_i16x8_splat(0xC0), m1 = wasm_i16x8_splat(0x30), m2 = wasm_i16x8_splat(0x0C),
                 m3 = wasm_i16x8_splat(0x03);
    v128_t a0 = wasm_i32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t k = 0; k < nb; k++) {
        const int16_t *xk = xs + 128 * k;
        const int64_t o = 32 * k;
        for (int j = 0; j < 32; j += 8) {
            const v128_t x0 = wasm_v128_load(xk + j), x1 = wasm_v128_load(xk + 32 + j), x2 = wasm_v128_load(xk + 64 + j),
                         x3 = wasm_v128_load(xk + 96 + j);
            const v128_t v0 = ld_codes(row[0] + o + j), v1 = ld_codes(row[1] + o + j);
            const v128_t v2 = ld_codes(row[2] + o + j), v3 = ld_codes(row[3] + o + j);
            a0 = mac(mac(mac(mac(a0, wasm_v128_and(v0, m0), x0), wasm_v128_and(v0, m1), x1), wasm_v128_and(v0, m2), x2),
                     wasm_v128_and(v0, m3), x3);
            a1 = mac(mac(mac(mac(a1, wasm_v128_and(v1, m0), x0), wasm_v128_and(v1, m1), x1), wasm_v128_and(v1, m2), x2),
                     wasm_v128_and(v1, m3), x3);
            a2 = mac(mac(mac(mac(a2, wasm_v128_and(v2, m0), x0), wasm_v128_and(v2, m1), x1), wasm_v128_and(v2, m2), x2),
                     wasm_v128_and(v2, m3), x3);
            a3 = mac(mac(mac(mac(a3, wasm_v128_and(v3, m0), x0), wasm_v128_and(v3, m1), x1), wasm_v128_and(v3, m2), x2),
                     wasm_v128_and(v3, m3), x3);
        }
    }
    wasm_v128_store(out, wasm_i32x4_shr(reduce4(a0, a1, a2, a3), 6)); /* exact: every term is a multiple of 64 */
}

/* Rows longer than I2S_PREP_MAX (no such model exists yet): the activations are widened in the loop instead. */
static void i2s_rows4_tok1_plain(const uint8_t *const row[4], const int8_t *q, int64_t nb, int32_t out[4]) {
    v128_t a[4];
    for (int i = 0; i < 4; i++) a[i] = wasm_i32x4_splat(0);
    for (int64_t k = 0; k < nb; k++)
        for (int j = 0; j < 32; j += 8) {
            const int8_t *xk = q + 128 * k + j;
            const v128_t x0 = ld_act(xk), x1 = ld_act(xk + 32), x2 = ld_act(xk + 64), x3 = ld_act(xk + 96);
            for (int i = 0; i < 4; i++) {
                const v128_t v = ld_codes(row[i] + 32 * k + j);
                a[i] = mac(mac(mac(mac(a[i], i2s_code(v, 0), x0), i2s_code(v, 1), x1), i2s_code(v, 2), x2), i2s_code(v, 3), x3);
            }
        }
    wasm_v128_store(out, reduce4(a[0], a[1], a[2], a[3]));
}

/* Prompts: two rows x four tokens. Each code group is decoded once and meets four tokens' activations. */
static void i2s_rows2_tok4(const uint8_t *ra, const uint8_t *rb, const int8_t *const x[4], int64_t nb, v128_t A[4],
                           v128_t B[4]) {
    for (int t = 0; t < 4; t++) A[t] = B[t] = wasm_i32x4_splat(0);
    for (int64_t k = 0; k < nb; k++) {
        for (int j = 0; j < 32; j += 8) {
            const v128_t va = ld_codes(ra + 32 * k + j), vb = ld_codes(rb + 32 * k + j);
            for (int g = 0; g < 4; g++) {
                const v128_t ca = i2s_code(va, g), cb = i2s_code(vb, g);
                const int64_t e = 128 * k + 32 * g + j;
                for (int t = 0; t < 4; t++) {
                    const v128_t xv = ld_act(x[t] + e);
                    A[t] = mac(A[t], ca, xv);
                    B[t] = mac(B[t], cb, xv);
                }
            }
        }
    }
}

static void i2s_gemm(const uint8_t *w, int64_t n, int64_t r0, int64_t r1, const int8_t *q, int T, int32_t *acc,
                     int64_t acc_stride) {
    const int64_t nb = n / 128, row_bytes = n / 4;
    if (T == 1) {
        int16_t xs[I2S_PREP_MAX]; /* 16 KB of stack: fits a pthread's default 64 KB */
        const int prepared = n <= I2S_PREP_MAX;
        if (prepared) i2s_prepare(q, n, xs);
        for (int64_t r = r0; r < r1; r += 4) {
            const uint8_t *row[4];
            for (int i = 0; i < 4; i++) row[i] = w + (r + i < r1 ? r + i : r1 - 1) * row_bytes; /* tail rows repeat */
            int32_t out[4];
            if (prepared) i2s_rows4_tok1(row, xs, nb, out);
            else i2s_rows4_tok1_plain(row, q, nb, out);
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


/* Finite halves only, in sign-extended i32 lanes: (h << 13) puts the magnitude in place and copies the sign into
 * bits 28-31; the mask keeps bit 31. Three instructions; dot_f16 checks once per row that no half was inf/NaN. */
static inline v128_t f16x4_finite_to_f32(v128_t s32) {
    const v128_t bits = wasm_v128_and(wasm_i32x4_shl(s32, 13), wasm_i32x4_splat((int32_t)0x8FFFFFFF));
    return wasm_f32x4_mul(bits, wasm_f32x4_splat(5.192296858534828e+33f));
}

static float dot_f16_exact(const uint16_t *w, const float *x, int64_t n) {
    v128_t a[8];
    for (int k = 0; k < 8; k++) a[k] = wasm_f32x4_splat(0);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 8; k++)
            a[k] = wasm_f32x4_add(a[k], wasm_f32x4_mul(f16x4_to_f32(w + i + 4 * k), wasm_v128_load(x + i + 4 * k)));
    float l[TL_LANES];
    for (int k = 0; k < 8; k++) wasm_v128_store(l + 4 * k, a[k]);
    for (; i < n; i++) l[i % TL_LANES] += tl_f16_to_f32(w[i]) * x[i];
    return tl_lanes_fold(l);
}

/* Float dots in the canonical lane order (lanes.h): eight v128 accumulators hold lanes 0-31. The head's rows take
 * the 3-instruction conversion; the largest |half|·2 seen (u16 max) tells at the end whether an inf/NaN was
 * among them, and only then is the row redone with the exact conversion. */
float tl_wasm128_dot_f16(const uint16_t *w, const float *x, int64_t n) {
    v128_t a[8];
    for (int k = 0; k < 8; k++) a[k] = wasm_f32x4_splat(0);
    v128_t top = wasm_i16x8_splat(0);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int m = 0; m < 4; m++) {
            const v128_t h = wasm_v128_load(w + i + 8 * m);
            top = wasm_u16x8_max(top, wasm_i16x8_shl(h, 1));
            const v128_t lo = f16x4_finite_to_f32(wasm_i32x4_extend_low_i16x8(h));
            const v128_t hi = f16x4_finite_to_f32(wasm_i32x4_extend_high_i16x8(h));
            a[2 * m] = wasm_f32x4_add(a[2 * m], wasm_f32x4_mul(lo, wasm_v128_load(x + i + 8 * m)));
            a[2 * m + 1] = wasm_f32x4_add(a[2 * m + 1], wasm_f32x4_mul(hi, wasm_v128_load(x + i + 8 * m + 4)));
        }
    if (wasm_v128_any_true(wasm_u16x8_ge(top, wasm_i16x8_splat((int16_t)0xF800)))) return dot_f16_exact(w, x, n);
    float l[TL_LANES];
    for (int k = 0; k < 8; k++) wasm_v128_store(l + 4 * k, a[k]);
    for (; i < n; i++) l[i % TL_LANES] += tl_f16_to_f32(w[i]) * x[i];
    return tl_lanes_fold(l);
}

/* ---- The F16 head as rows x tokens (gemm_f16). The activations are prepared once per call as x·2^112 (exact while
 * |x| < 2^16, checked), so a half needs no scaling multiply: its bits moved into f32 position are h·2^-112, and
 * (h·2^-112)·(x·2^112) rounds the same real product h·x as the reference's f32 multiply. Halves come in with
 * i32x4.load16x4_s (a load and a sign extension in one x86 instruction), then 2 instructions put sign, exponent and
 * mantissa in place. Lanes are walked lane group by lane group (elements 32j + 4k .. 32j + 4k + 3 for one k at a
 * time), so 4 rows share each activation load with one accumulator each: V8 hoists a loop body's loads and has 15
 * vector registers, and the 8 accumulators per row of the 32 canonical lanes would spill. Each row's lane sums then
 * fold as lanes.h says: the bits of dot_f16. Rows with an inf/NaN half (checked per 4 rows), |x| >= 2^16 or
 * n % 32 != 0 take dot_f16 instead. ---- */

#define F16_PREP_FLOATS 4096 /* prepared activations on the stack: 16 KB */
#define F16_ROWS 4

/* x·2^112 into xs (n % 4 == 0); 0 when some |x| >= 2^16 or is NaN (then the scaled value may not be exact). */
static int f16_prepare(const float *x, int64_t n, float *xs) {
    const v128_t lim = wasm_f32x4_splat(65536.0f), up = wasm_f32x4_splat(5.192296858534828e+33f); /* 2^112 */
    v128_t ok = wasm_i32x4_splat(-1);
    for (int64_t i = 0; i < n; i += 4) {
        const v128_t v = wasm_v128_load(x + i);
        ok = wasm_v128_and(ok, wasm_f32x4_lt(wasm_f32x4_abs(v), lim));
        wasm_v128_store(xs + i, wasm_f32x4_mul(v, up));
    }
    return wasm_i32x4_all_true(ok);
}

/* Whether the halves of rows[0..R) (n % 8 == 0) are all finite: the largest |half|·2 (u16 max) stays below inf's. */
static int f16_rows_finite(const uint16_t *const *rows, int R, int64_t n) {
    v128_t top = wasm_i16x8_splat(0);
    for (int i = 0; i < R; i++)
        for (int64_t k = 0; k < n; k += 8) {
            const v128_t h = wasm_v128_load(rows[i] + k);
            top = wasm_u16x8_max(top, wasm_i16x8_add(h, h));
        }
    return !wasm_v128_any_true(wasm_u16x8_ge(top, wasm_i16x8_splat((int16_t)0xF800)));
}

/* Finite halves h[0..3] as h·2^-112 (f32 bits: sign, then exponent and mantissa 13 places up). */
AI v128_t f16x4_down112(const uint16_t *h) {
    return wasm_v128_and(wasm_i32x4_shl(wasm_i32x4_load16x4(h), 13), wasm_i32x4_splat((int32_t)0x8FFFFFFF));
}

/* F16_ROWS finite rows times one prepared token (n % 32 == 0): out[i] = dot_f16(rows[i], x) bit for bit. */
static void f16_rows_tok(const uint16_t *const *rows, const float *xs, int64_t n, float out[F16_ROWS]) {
    float l[F16_ROWS][TL_LANES];
    for (int k = 0; k < TL_LANES; k += 4) {
        v128_t a[F16_ROWS];
        for (int i = 0; i < F16_ROWS; i++) a[i] = wasm_f32x4_splat(0);
        for (int64_t j = k; j < n; j += TL_LANES) {
            const v128_t xv = wasm_v128_load(xs + j);
            for (int i = 0; i < F16_ROWS; i++) a[i] = wasm_f32x4_add(a[i], wasm_f32x4_mul(f16x4_down112(rows[i] + j), xv));
        }
        for (int i = 0; i < F16_ROWS; i++) wasm_v128_store(&l[i][k], a[i]);
    }
    for (int i = 0; i < F16_ROWS; i++) out[i] = tl_lanes_fold(l[i]);
}

/* Rows [r0, r1) of the head times T tokens, tokens in chunks that fit F16_PREP_FLOATS (the head is read once per
 * chunk: once for up to 4096 / n tokens). */
void tl_wasm128_gemm_f16(const uint16_t *w, int64_t n, int64_t r0, int64_t r1, const float *x, int T, float *y, int64_t ys) {
    float xs[F16_PREP_FLOATS];
    const int chunk = n % TL_LANES == 0 && n <= F16_PREP_FLOATS ? (int)(F16_PREP_FLOATS / n) : 0;
    for (int t0 = 0; t0 < T; t0 += chunk ? chunk : T) {
        const int tc = chunk && T - t0 > chunk ? chunk : T - t0;
        int prepared = chunk > 0;
        for (int t = 0; t < tc && prepared; t++) prepared = f16_prepare(x + (int64_t)(t0 + t) * n, n, xs + t * n);
        for (int64_t r = r0; r < r1; r += F16_ROWS) {
            const uint16_t *rows[F16_ROWS];
            for (int i = 0; i < F16_ROWS; i++) rows[i] = w + (r + i < r1 ? r + i : r1 - 1) * n; /* tail rows repeat */
            const int fast = prepared && f16_rows_finite(rows, F16_ROWS, n);
            for (int t = 0; t < tc; t++) {
                float out[F16_ROWS];
                if (fast) f16_rows_tok(rows, xs + t * n, n, out);
                else
                    for (int i = 0; i < F16_ROWS; i++) out[i] = tl_wasm128_dot_f16(rows[i], x + (int64_t)(t0 + t) * n, n);
                for (int i = 0; i < F16_ROWS && r + i < r1; i++) y[(int64_t)(t0 + t) * ys + r + i] = out[i];
            }
        }
    }
}

float tl_wasm128_dot_f32(const float *w, const float *x, int64_t n) {
    v128_t a[8];
    for (int k = 0; k < 8; k++) a[k] = wasm_f32x4_splat(0);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 8; k++) a[k] = wasm_f32x4_add(a[k], wasm_f32x4_mul(wasm_v128_load(w + i + 4 * k), wasm_v128_load(x + i + 4 * k)));
    float l[TL_LANES];
    for (int k = 0; k < 8; k++) wasm_v128_store(l + 4 * k, a[k]);
    for (; i < n; i++) l[i % TL_LANES] += w[i] * x[i];
    return tl_lanes_fold(l);
}





/* TQ2_0 block: Σ (q-1)·a = Σ q·a - Σ a. Element 128h + 32s + j sits in byte 32h + j at bits 2s. */
static inline v128_t tq2_block(const uint8_t *qs, const tl_block_q8k *a) {
    const v128_t m3 = wasm_i16x8_splat(3);
    v128_t acc = wasm_i32x4_sub(wasm_i32x4_splat(0), bsum_part(a));
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 32; j += 8) {
            const v128_t v = ld_codes(qs + 32 * h + j);
            const int8_t *x = a->qs + 128 * h + j;
            acc = mac(acc, wasm_v128_and(v, m3), ld_act(x));
            acc = mac(acc, wasm_v128_and(wasm_u16x8_shr(v, 2), m3), ld_act(x + 32));
            acc = mac(acc, wasm_v128_and(wasm_u16x8_shr(v, 4), m3), ld_act(x + 64));
            acc = mac(acc, wasm_u16x8_shr(v, 6), ld_act(x + 96));
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

/* TQ1_0 trits: byte b holds 5 (or 4) base-3 digits; digit k is ((b·3^k mod 256)·3) >> 8. u16 lanes keep the
 * products exact, `& 255` is the mod. */
static inline v128_t tq1_trit(v128_t b, v128_t pow3) {
    const v128_t q = wasm_v128_and(wasm_i16x8_mul(b, pow3), wasm_i16x8_splat(255));
    return wasm_u16x8_shr(wasm_i16x8_mul(q, wasm_i16x8_splat(3)), 8);
}

/* TQ1_0 block (54 bytes): elements 0-159 in bytes 0-31 (element 32k + i: byte i, digit k), 160-239 in bytes 32-47
 * (160 + 16k + i: byte 32 + i, digit k), 240-255 in bytes 48-51 (240 + 4k + i: byte 48 + i, digit k). */
static inline v128_t tq1_block(const uint8_t *r, const tl_block_q8k *a) {
    static const int16_t pow3[5] = {1, 3, 9, 27, 81};
    v128_t acc = wasm_i32x4_sub(wasm_i32x4_splat(0), bsum_part(a));
    for (int j = 0; j < 32; j += 8) {
        const v128_t v = ld_codes(r + j);
        for (int k = 0; k < 5; k++) acc = mac(acc, tq1_trit(v, wasm_i16x8_splat(pow3[k])), ld_act(a->qs + 32 * k + j));
    }
    for (int j = 0; j < 16; j += 8) {
        const v128_t v = ld_codes(r + 32 + j);
        for (int k = 0; k < 5; k++) acc = mac(acc, tq1_trit(v, wasm_i16x8_splat(pow3[k])), ld_act(a->qs + 160 + 16 * k + j));
    }
    /* the last 4 bytes twice over (lanes 0-3 digit k, lanes 4-7 digit k+1): elements 240 + 4k .. 247 + 4k */
    const v128_t b4 = wasm_u16x8_extend_low_u8x16(wasm_i8x16_swizzle(wasm_v128_load32_zero(r + 48),
                                                                     wasm_i8x16_make(0, 1, 2, 3, 0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0)));
    acc = mac(acc, tq1_trit(b4, wasm_i16x8_make(1, 1, 1, 1, 3, 3, 3, 3)), ld_act(a->qs + 240));
    acc = mac(acc, tq1_trit(b4, wasm_i16x8_make(9, 9, 9, 9, 27, 27, 27, 27)), ld_act(a->qs + 248));
    return acc;
}

float tl_wasm128_dot_tq1(const uint8_t *row, const tl_block_q8k *a, int64_t n) {
    const int64_t nb = n / 256;
    float sum = 0;
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const uint8_t *r = row + 54 * b;
        const v128_t sumi = reduce4(tq1_block(r, a + b), tq1_block(r + 54, a + b + 1), tq1_block(r + 108, a + b + 2),
                                    tq1_block(r + 162, a + b + 3));
        const v128_t d = wasm_f32x4_mul(wasm_f32x4_make(a[b].d, a[b + 1].d, a[b + 2].d, a[b + 3].d), scales4(r + 52, 54));
        sum = add4_in_order(sum, sumi, d);
    }
    for (; b < nb; b++) {
        const uint8_t *r = row + 54 * b;
        sum += (float)hsum_i32(tq1_block(r, a + b)) * (a[b].d * tl_f16_to_f32((uint16_t)(r[52] | r[53] << 8)));
    }
    return sum;
}

/* Q8_0 block (34 bytes: f16 scale, 32 int8) times the activations' block. */
static inline v128_t q8_0_block(const uint8_t *w, const uint8_t *a) {
    v128_t acc = wasm_i32x4_splat(0);
    for (int j = 0; j < 32; j += 8) acc = mac(acc, ld_act((const int8_t *)w + 2 + j), ld_act((const int8_t *)a + 2 + j));
    return acc;
}

float tl_wasm128_dot_q8_0(const uint8_t *w, const uint8_t *a, int64_t n) {
    const int64_t nb = n / 32;
    float s = 0;
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const uint8_t *wb = w + 34 * b, *ab = a + 34 * b;
        const v128_t sumi = reduce4(q8_0_block(wb, ab), q8_0_block(wb + 34, ab + 34), q8_0_block(wb + 68, ab + 68),
                                    q8_0_block(wb + 102, ab + 102));
        s = add4_in_order(s, sumi, wasm_f32x4_mul(scales4(wb, 34), scales4(ab, 34)));
    }
    for (; b < nb; b++) {
        const uint8_t *wb = w + 34 * b, *ab = a + 34 * b;
        const float dw = tl_f16_to_f32((uint16_t)(wb[0] | wb[1] << 8)), da = tl_f16_to_f32((uint16_t)(ab[0] | ab[1] << 8));
        s += (float)hsum_i32(q8_0_block(wb, ab)) * (dw * da);
    }
    return s;
}

void tl_wasm128_attn_pv(float *out, const float *prob, const uint16_t *v, int64_t n_pos, int64_t stride, int64_t hd) {
    int64_t d = 0;
    for (; d + 4 <= hd; d += 4) {
        v128_t acc = wasm_f32x4_splat(0);
        for (int64_t p = 0; p < n_pos; p++)
            acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_splat(prob[p]), f16x4_to_f32(v + p * stride + d)));
        wasm_v128_store(out + d, acc);
    }
    for (; d < hd; d++) {
        float acc = 0;
        for (int64_t p = 0; p < n_pos; p++) acc += prob[p] * tl_f16_to_f32(v[p * stride + d]);
        out[d] = acc;
    }
}

/* ---- GEMMs on 16-row groups (repack.h) ----
 * A v128 of a group's 64-byte chunk holds 4 rows x 4 bytes. Widened to u16 (8 lanes: 2 rows x 4 inputs), it meets
 * the token's 4 activations splat twice (`load64_splat` of i16), and i32x4.dot_i16x8_s leaves 2 lanes per row: 8
 * products per instruction, with no horizontal sum until a tile is finished. Each code load serves every token of a
 * tile (up to R16_TT) and each activation load 8 rows. Activations are widened to i16 once per 128-input block,
 * scaled so that codes are masked in place: no shifts in the loop. Rows are taken in halves of 8 so that a tile's
 * accumulators stay in registers (SIMD128 engines on x86 have 16 vector registers). */

#define R16_BLOCK 128 /* inputs per prepared activation block */
/* Quarters of a group per pass: two for one token, one for a tile of several (its accumulators then fit). */
#define R16_NV(TT) ((TT) == 1 ? 2 : 1)

/* 2-bit codes: input 16c + 4s + j (code in bits 2s of its byte) times 4^(3-s), so (v & 3 << 2s) · x = 64·code·x. */
AI void prep_codes(const int8_t *x, int16_t *xs) {
    /* uniform shifts and a blend: a multiply by the lane constants would be turned into a per-lane shift, which
     * wasm lacks, and clang then scalarizes it */
    for (int i = 0; i < R16_BLOCK; i += 16) {
        const v128_t a = wasm_i16x8_load8x8(x + i), b = wasm_i16x8_load8x8(x + i + 8);
        wasm_v128_store(xs + i, wasm_i16x8_shuffle(wasm_i16x8_shl(a, 6), wasm_i16x8_shl(a, 4), 0, 1, 2, 3, 12, 13, 14, 15));
        wasm_v128_store(xs + i + 8, wasm_i16x8_shuffle(wasm_i16x8_shl(b, 2), b, 0, 1, 2, 3, 12, 13, 14, 15));
    }
}

/* NV (1 or 2) quarters of a group (g: the first one's first chunk; 4 rows each), nch chunks, TT tokens (xs:
 * prepared, R16_BLOCK apart): acc[2·NV·t + i] += per-row lane pairs of 64·Σ code·x, i for rows (0,1), (2,3) of the
 * first quarter, then of the second. Every product is at most 64·3·128; a lane pair's sum fits i32 for n < 87000. */
AI void codes_part(const uint8_t *g, int NV, const int16_t *xs, int TT, int nch, v128_t *acc) {
    v128_t a[4 * R16_TT];
    for (int i = 0; i < 2 * NV * TT; i++) a[i] = acc[i];
    for (int c = 0; c < nch; c++) {
        v128_t w[4];
        for (int q = 0; q < NV; q++) {
            const v128_t v = wasm_v128_load(g + 64 * c + 16 * q);
            w[2 * q] = wasm_u16x8_extend_low_u8x16(v), w[2 * q + 1] = wasm_u16x8_extend_high_u8x16(v);
        }
        for (int s = 0; s < 4; s++) {
            const v128_t m = wasm_i16x8_splat((int16_t)(3 << 2 * s));
            v128_t code[4];
            for (int i = 0; i < 2 * NV; i++) code[i] = wasm_v128_and(w[i], m);
            for (int t = 0; t < TT; t++) {
                const v128_t b = wasm_v128_load64_splat(xs + t * R16_BLOCK + 16 * c + 4 * s);
                for (int i = 0; i < 2 * NV; i++)
                    a[2 * NV * t + i] = wasm_i32x4_add(a[2 * NV * t + i], wasm_i32x4_dot_i16x8(code[i], b));
            }
        }
    }
    for (int i = 0; i < 2 * NV * TT; i++) acc[i] = a[i];
}

/* [row 0, 1, 2, 3] from lane pairs A = (row 0, row 1), B = (row 2, row 3). */
AI v128_t rows4(v128_t A, v128_t B) {
    return wasm_i32x4_add(wasm_i32x4_shuffle(A, B, 0, 2, 4, 6), wasm_i32x4_shuffle(A, B, 1, 3, 5, 7));
}

/* Prompt tiles of R16_TT_WIDE (3) tokens x 2 row pairs. A row pair is 8 bytes of a chunk (rows 2p, 2p + 1 x 4 inputs,
 * widened while loaded); its codes come out as 0..3 by a shift and a mask per group s, so the activations are plain
 * i16 (no scaling). Sized for V8 on x86, which gives wasm 15 vector registers and hoists a loop body's loads to its
 * top: 6 accumulators, 2 code vectors, 2 shifted code sources, the mask and 3 activation splats fit, where the
 * 4-token tile (8 accumulators, 4 masks) and wider ones spill (measured: tools/bench_gemm.c). acc[2t + p] += lane
 * pairs of Σ code·x (lanes 0, 1: row 2p; 2, 3: row 2p + 1 of the two pairs at g) over nch chunks. */
AI void pairs_wide(const uint8_t *g, const int16_t *xs, int nch, v128_t acc[2 * R16_TT_WIDE]) {
    const v128_t m3 = wasm_i16x8_splat(3);
    v128_t a[2 * R16_TT_WIDE];
    for (int i = 0; i < 2 * R16_TT_WIDE; i++) a[i] = acc[i];
    for (int c = 0; c < nch; c++) {
        v128_t w[2] = {wasm_u16x8_load8x8(g + 64 * c), wasm_u16x8_load8x8(g + 64 * c + 8)};
        const int16_t *xc = xs + 16 * c;
        /* rolled: unrolled, clang sums each token's 4 dots first and keeps 4 code vectors per pair live (spills) */
#pragma clang loop unroll(disable)
        for (int s = 0; s < 4; s++, xc += 4) {
            v128_t code[2];
            for (int p = 0; p < 2; p++) code[p] = wasm_v128_and(w[p], m3), w[p] = wasm_u16x8_shr(w[p], 2);
            for (int t = 0; t < R16_TT_WIDE; t++) {
                const v128_t b = wasm_v128_load64_splat(xc + t * R16_BLOCK);
                for (int p = 0; p < 2; p++) a[2 * t + p] = wasm_i32x4_add(a[2 * t + p], wasm_i32x4_dot_i16x8(code[p], b));
            }
        }
    }
    for (int i = 0; i < 2 * R16_TT_WIDE; i++) acc[i] = a[i];
}

/* The exact Σ code·x of 16 rows x R16_TT_WIDE tokens over inputs [k0, k1) (multiples of R16_BLOCK) into sums[t][4].
 * Each prepared block of activations serves the group's 4 double row pairs; lane pairs stay apart until the end. */
AI void codes_group_wide(const uint8_t *g, const int8_t *const *x, int64_t k0, int64_t k1, v128_t sums[][4]) {
    v128_t acc[4][2 * R16_TT_WIDE]; /* [rows 4q .. 4q + 3][2t + pair] */
    for (int q = 0; q < 4; q++)
        for (int i = 0; i < 2 * R16_TT_WIDE; i++) acc[q][i] = wasm_i32x4_splat(0);
    int16_t xs[R16_TT_WIDE * R16_BLOCK];
    for (int64_t k = k0; k < k1; k += R16_BLOCK) {
        for (int t = 0; t < R16_TT_WIDE; t++)
            for (int i = 0; i < R16_BLOCK; i += 8)
                wasm_v128_store(xs + t * R16_BLOCK + i, wasm_i16x8_load8x8(x[t] + (k - k0) + i));
        for (int q = 0; q < 4; q++) pairs_wide(g + 4 * k + 16 * q, xs, R16_BLOCK / 16, acc[q]);
    }
    for (int t = 0; t < R16_TT_WIDE; t++)
        for (int q = 0; q < 4; q++) sums[t][q] = rows4(acc[q][2 * t], acc[q][2 * t + 1]);
}

/* The exact 64·Σ code·x of 16 rows x TT tokens into sums[t][4] (4 rows per vector), over inputs [k0, k1);
 * x[t] points at token t's activation of input k0. */
AI void codes_group(const uint8_t *g, const int8_t *const *x, int TT, int64_t k0, int64_t k1, v128_t sums[][4]) {
    if (TT == R16_TT_WIDE) {
        codes_group_wide(g, x, k0, k1, sums);
        return;
    }
    const int NV = R16_NV(TT), NP = 4 / NV; /* quarters per pass, passes */
    v128_t acc[4][4 * R16_TT];
    for (int h = 0; h < NP; h++)
        for (int i = 0; i < 2 * NV * TT; i++) acc[h][i] = wasm_i32x4_splat(0);
    int16_t xs[R16_TT * R16_BLOCK];
    for (int64_t k = k0; k < k1; k += R16_BLOCK) {
        for (int t = 0; t < TT; t++) prep_codes(x[t] + (k - k0), xs + t * R16_BLOCK);
        for (int h = 0; h < NP; h++) codes_part(g + 4 * k + 16 * NV * h, NV, xs, TT, R16_BLOCK / 16, acc[h]);
    }
    for (int t = 0; t < TT; t++)
        for (int q = 0; q < 4; q++) {
            const v128_t *A = &acc[q / NV][2 * NV * t + 2 * (q % NV)];
            sums[t][q] = wasm_i32x4_shr(rows4(A[0], A[1]), 6); /* exact: every term is a multiple of 64 */
        }
}

R16_CODE_TILES(codes_group)

/* int8 rows (w + 128 stored unsigned): chunk c holds inputs 4c..4c+3, the activations are plain i16. */
AI void i8_half(const uint8_t *g, const int16_t *xs, int TT, int nch, v128_t *acc) {
    v128_t a[4 * R16_TT];
    for (int i = 0; i < 4 * TT; i++) a[i] = acc[i];
    for (int c = 0; c < nch; c++) {
        const v128_t v0 = wasm_v128_load(g + 64 * c), v1 = wasm_v128_load(g + 64 * c + 16);
        const v128_t w[4] = {wasm_u16x8_extend_low_u8x16(v0), wasm_u16x8_extend_high_u8x16(v0),
                             wasm_u16x8_extend_low_u8x16(v1), wasm_u16x8_extend_high_u8x16(v1)};
        for (int t = 0; t < TT; t++) {
            const v128_t b = wasm_v128_load64_splat(xs + t * R16_BLOCK + 4 * c);
            for (int i = 0; i < 4; i++) a[4 * t + i] = wasm_i32x4_add(a[4 * t + i], wasm_i32x4_dot_i16x8(w[i], b));
        }
    }
    for (int i = 0; i < 4 * TT; i++) acc[i] = a[i];
}

/* Activations [k, k + len) of one token as i16 (len % 4 == 0, never read past it). */
AI void prep_i8(const int8_t *x, int64_t len, int16_t *xs) {
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) wasm_v128_store(xs + i, wasm_i16x8_load8x8(x + i));
    for (; i < len; i++) xs[i] = x[i];
}

/* y = ((float)Σ w·q / scale_t) · d_row; Σ (w + 128)·q − 128·Σq is exact (|(w + 128)·q| <= 255·128). */
AI void i8_tile(const tl_r16 *w, int64_t r, const tl_acts *a, int t0, int TT, float *y, int64_t ys) {
    const int64_t n = w->ne0;
    const uint8_t *g = w->data + (r / 16) * n * 16;
    v128_t acc[2][4 * R16_TT];
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 4 * TT; i++) acc[h][i] = wasm_i32x4_splat(0);
    int16_t xs[R16_TT * R16_BLOCK];
    for (int64_t k = 0; k < n; k += R16_BLOCK) {
        const int64_t len = n - k < R16_BLOCK ? n - k : R16_BLOCK;
        for (int t = 0; t < TT; t++) prep_i8(a->q + (int64_t)(t0 + t) * n + k, len, xs + t * R16_BLOCK);
        for (int h = 0; h < 2; h++) i8_half(g + 16 * k + 32 * h, xs, TT, (int)(len / 4), acc[h]);
    }
    for (int t = 0; t < TT; t++) {
        const v128_t bias = wasm_i32x4_splat(128 * a->sum[t0 + t]), sc = wasm_f32x4_splat(a->scale[t0 + t]);
        for (int h = 0; h < 2; h++)
            for (int p = 0; p < 2; p++) {
                const v128_t exact = wasm_i32x4_sub(rows4(acc[h][4 * t + 2 * p], acc[h][4 * t + 2 * p + 1]), bias);
                const int64_t row = r + 8 * h + 4 * p;
                const v128_t f = wasm_f32x4_div(wasm_f32x4_convert_i32x4(exact), sc);
                wasm_v128_store(y + (int64_t)(t0 + t) * ys + row, wasm_f32x4_mul(f, wasm_v128_load(w->drow + row)));
            }
    }
}

/* ---- int4 rows (the 4-bit head, repack.h) ----
 * A u16 lane of a quarter's 16 bytes (4 rows x 4 bytes of one pair chunk) holds two bytes of one row, so four nibble
 * fields: even lane 2r holds inputs 8p + {0, 4, 1, 5} of row r, odd lane 2r + 1 inputs 8p + {2, 6, 3, 7}. A field
 * masked out is 2 inputs of each row in that row's lane pair, which i32x4.dot_i16x8_s folds into the row's own i32
 * lane: 4 rows per vector and no reduction after the loop. Fields 1 and 3 are masked in place (16·nibble), fields 0
 * and 2 meet activations prescaled by 16, so each product is 16·(q + 8)·x (at most 240·128 in magnitude, a block of
 * 32 at most 983040) and one shift per block and row quad takes the factor out. The activations of a tile's tokens
 * are prepared once per call, not per group. */

/* Input 8i + j of one token in the order the fields take them, fields 0 and 2 times 16:
 * [16·x0, 16·x2, x4, x6, 16·x1, 16·x3, x5, x7] for every 8 inputs. */
static void i4_prepare(const int8_t *x, int64_t n, int16_t *xs) {
    for (int64_t i = 0; i < n; i += 8) {
        const v128_t v = wasm_i16x8_load8x8(x + i), s = wasm_i16x8_shuffle(v, v, 0, 2, 4, 6, 1, 3, 5, 7);
        wasm_v128_store(xs + i, wasm_i16x8_shuffle(wasm_i16x8_shl(s, 4), s, 0, 1, 10, 11, 4, 5, 14, 15));
    }
}

/* Quarters per pass: the whole group for one token (its 4 activation splats serve 16 rows), half of it for several.
 * Measured on V8 (x86, Zen 4), head-shaped weight out of cache: one token 4.1-4.4 ms per 32768 rows with 4 quarters
 * against 5.6-8.5 with 2 and 7.1-10.1 with 1 (the sums then exceed 15 registers, but the running ones are touched
 * once per block); 3-4 tokens 21-23 G MAC/s with 2 quarters against 17-19 with 1. */
#define I4_NQ(TT) ((TT) == 1 ? 4 : 2)

/* One pair chunk: acc[NQ·t + i] += 16·Σ (q + 8)·x of quarter i at src + 16i (lane r: its row r), xs[t] at the
 * chunk's 8 prepared inputs. */
AI void i4_chunk(const uint8_t *src, int NQ, const int16_t *const *xs, int TT, v128_t *acc) {
    const v128_t lo = wasm_i16x8_splat(0x0F), hi = wasm_i16x8_splat(0xF0);
    for (int i = 0; i < NQ; i++) {
        const v128_t v = wasm_v128_load(src + 16 * i), u = wasm_u16x8_shr(v, 8);
        const v128_t f[4] = {wasm_v128_and(v, lo), wasm_v128_and(v, hi), wasm_v128_and(u, lo), wasm_v128_and(u, hi)};
        for (int t = 0; t < TT; t++) {
            v128_t s = acc[NQ * t + i];
            for (int k = 0; k < 4; k++)
                s = wasm_i32x4_add(s, wasm_i32x4_dot_i16x8(f[k], wasm_v128_load32_splat(xs[t] + 2 * k)));
            acc[NQ * t + i] = s;
        }
    }
}

/* The u8 sub-scales of NQ quarters (4·NQ rows at s) as i32 lanes. */
AI void i4_subs(const uint8_t *s, int NQ, v128_t *sv) {
    const v128_t v = NQ == 4 ? wasm_v128_load(s) : NQ == 2 ? wasm_v128_load64_zero(s) : wasm_v128_load32_zero(s);
    const v128_t l = wasm_u16x8_extend_low_u8x16(v), h = wasm_u16x8_extend_high_u8x16(v);
    sv[0] = wasm_u32x4_extend_low_u16x8(l);
    if (NQ > 1) sv[1] = wasm_u32x4_extend_high_u16x8(l);
    if (NQ > 2) sv[2] = wasm_u32x4_extend_low_u16x8(h), sv[3] = wasm_u32x4_extend_high_u16x8(h);
}

/* y = ((float)Σ_b s_b·(Σ (q + 8)·x − 8·Σx) / scale_t) · d_row for 16 rows x TT tokens (xs, off: the tile's tokens,
 * prepared, n and n / 32 apart). Every integer step is exact; the float part is the scalar reference's, lane by lane. */
AI void i4_tile(const tl_r16 *w, int64_t r, const tl_acts *a, int t0, int TT, const int16_t *xs, const int32_t *off,
                float *y, int64_t ys) {
    const int64_t n = w->ne0, nb = n / 32;
    const int NQ = I4_NQ(TT);
    const uint8_t *g = w->data + (r / 16) * n * 8, *sg = w->sub + (r / 16) * nb * 16;
    for (int q0 = 0; q0 < 4; q0 += NQ) {
        v128_t tot[R16_TT * 4];
        for (int i = 0; i < NQ * TT; i++) tot[i] = wasm_i32x4_splat(0);
        for (int64_t b = 0; b < nb; b++) {
            v128_t blk[R16_TT * 4];
            for (int i = 0; i < NQ * TT; i++) blk[i] = wasm_i32x4_splat(0);
            for (int p = 0; p < 4; p++) {
                const int16_t *xp[R16_TT];
                for (int t = 0; t < TT; t++) xp[t] = xs + t * n + 32 * b + 8 * p;
                i4_chunk(g + 64 * (4 * b + p) + 16 * q0, NQ, xp, TT, blk);
            }
            v128_t sv[4];
            i4_subs(sg + 16 * b + 4 * q0, NQ, sv);
            for (int t = 0; t < TT; t++) {
                const v128_t o = wasm_i32x4_splat(off[t * nb + b]);
                for (int i = 0; i < NQ; i++) {
                    const v128_t exact = wasm_i32x4_add(wasm_i32x4_shr(blk[NQ * t + i], 4), o);
                    tot[NQ * t + i] = wasm_i32x4_add(tot[NQ * t + i], wasm_i32x4_mul(exact, sv[i]));
                }
            }
        }
        i4_store_rows(tot, NQ, TT, a, t0, w->drow, r + 4 * q0, y, ys);
    }
}

/* Tokens go R16_TT at a time, each tile prepared once and run over every group of [r0, r1): the stack holds the
 * prepared inputs of one tile (64 KB at TL_I4_MAX_NE0), and the weights are read once per R16_TT tokens. */
static void gemm_i4_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    const int64_t n = w->ne0, nb = n / 32;
    int16_t xs[R16_TT * TL_I4_MAX_NE0];
    int32_t off[R16_TT * (TL_I4_MAX_NE0 / 32)];
    for (int t0 = 0; t0 < a->T; t0 += R16_TT) {
        const int tt = a->T - t0 < R16_TT ? a->T - t0 : R16_TT;
        for (int t = 0; t < tt; t++) {
            i4_prepare(a->q + (int64_t)(t0 + t) * n, n, xs + t * n);
            tl_i4_offsets(a->q + (int64_t)(t0 + t) * n, n, off + t * nb);
        }
        for (int64_t r = r0; r < r1; r += 16) switch (tt) {
            case 1: i4_tile(w, r, a, t0, 1, xs, off, y, ys); break;
            case 2: i4_tile(w, r, a, t0, 2, xs, off, y, ys); break;
            case 3: i4_tile(w, r, a, t0, 3, xs, off, y, ys); break;
            default: i4_tile(w, r, a, t0, 4, xs, off, y, ys); break;
            }
    }
}

static R16_GEMM_WIDE(gemm_i2s_r16, i2s_tile)
static R16_GEMM_WIDE(gemm_tq_r16, tq_tile)
R16_GEMM(tl_wasm128_gemm_i8_r16, i8_tile)

/* Designated: entries other paths add later stay NULL here (the forward pass then takes the generic one). */
static const tl_kernels k_wasm128 = {
    .exp_minus_max = tl_exp_minus_max_row,
    .name = "wasm128",
    .quantize_i8 = tl_wasm128_quantize_i8,
    .quantize_q8k = tl_scalar_quantize_q8k,
    .i2s_gemm = i2s_gemm,
    .dot_tq2 = dot_tq2,
    .dot_tq1 = tl_wasm128_dot_tq1,
    .dot_f16 = tl_wasm128_dot_f16,
    .dot_f32 = tl_wasm128_dot_f32,
    .dot_q8_0 = tl_wasm128_dot_q8_0,
    .attn_pv = tl_wasm128_attn_pv,
    .dot_q1_0 = tl_wasm128_dot_q1_0,
    .dot_q2_0 = tl_wasm128_dot_q2_0,
    .gemm_i2s_r16 = gemm_i2s_r16,
    .gemm_tq_r16 = gemm_tq_r16,
    .gemm_i8_r16 = tl_wasm128_gemm_i8_r16,
    .gemm_i4_r16 = gemm_i4_r16,
    .gemm_f16 = tl_wasm128_gemm_f16,
};

const tl_kernels *tl_kernels_wasm128_table(void) { return &k_wasm128; }

/* ---- Bonsai: Q1_0 / Q2_0 · Q8_0 (integer sums exact; the float order of kernels.h, 4 blocks in lanes: wasm_util.h) ----
 * Q1_0: each byte of sign bits is spread over 8 lanes (unpack shuffles, 14 per 128 elements) and tested against its
 * lane's bit; m = -1 where the bit is 0, and Σ (x ^ m) − Σ m is Σ ±x (|x| <= 127: never wraps), summed in i16 pairs.
 * Q2_0: codes minus 1 in element order (wasm_util.h) widened to i16 and multiplied with i32x4.dot_i16x8_s. */

/* Where an element's sign bit is 0: -1 (spread: a vector of bonsai_spreads). */
static inline v128_t q1_zero_mask(v128_t spread) { return wasm_i8x16_eq(bonsai_bit(spread), wasm_i8x16_splat(0)); }

/* Sub-block k: x ^ m is x where the bit is 1 and -x - 1 where it is 0, so Σ ±x = Σ (x ^ m) − Σ m. Σ m is taken apart
 * (both masks added as bytes, then one pair sum): written as (x ^ m) − m per element, clang turns it into a negate
 * and a bitselect, which V8 lowers to more instructions. i16 lanes hold at most 4 terms (|sum| <= 512). */
AI v128_t q1_sub(const v128_t *sp, int k, const int8_t *x) {
    const v128_t m0 = q1_zero_mask(sp[2 * k]), m1 = q1_zero_mask(sp[2 * k + 1]);
    const v128_t flipped = wasm_i16x8_add(wasm_i16x8_extadd_pairwise_i8x16(wasm_v128_xor(wasm_v128_load(x), m0)),
                                          wasm_i16x8_extadd_pairwise_i8x16(wasm_v128_xor(wasm_v128_load(x + 16), m1)));
    const v128_t masks = wasm_i16x8_extadd_pairwise_i8x16(wasm_i8x16_add(m0, m1));
    return wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_sub(flipped, masks));
}

/* Σ e·x over 16 elements (e: codes minus 1, bytes -1..2). */
static inline v128_t q2_dot16(v128_t e, const int8_t *x) {
    return wasm_i32x4_add(wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(e), wasm_i16x8_load8x8(x)),
                          wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(e), wasm_i16x8_load8x8(x + 8)));
}

AI v128_t q2_sub(v128_t e0, v128_t e1, const int8_t *x) { return wasm_i32x4_add(q2_dot16(e0, x), q2_dot16(e1, x + 16)); }

BONSAI_Q1_DOT(, q1_sub, tl_wasm128_dot_q1_0)
BONSAI_Q2_DOT(, q2_sub, 1, tl_wasm128_dot_q2_0)
