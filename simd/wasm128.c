/* WebAssembly SIMD128 kernels (Emscripten and WASI builds, -msimd128). I2_S codes and activations are widened
 * to i16 and multiplied with i32x4.dot_i16x8_s; integer results equal the scalar reference bit for bit.
 * Relaxed SIMD is not used (see ../shared/specs/toolchain.md §4). */
#include <math.h>
#include <string.h>
#include <wasm_simd128.h>

#include "../runtime/tensor_types.h"
#include "lanes.h"
#include "paths.h"

static void quantize_i8(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum) {
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

static inline v128_t dot16(v128_t acc, v128_t codes, v128_t x) {
    acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_u16x8_extend_low_u8x16(codes), wasm_i16x8_extend_low_i8x16(x)));
    return wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_u16x8_extend_high_u8x16(codes), wasm_i16x8_extend_high_i8x16(x)));
}

static inline v128_t block_dot(const uint8_t *w, const int8_t *x, v128_t acc) {
    const v128_t m3 = wasm_i8x16_splat(3);
    for (int h = 0; h < 2; h++) {
        const v128_t v = wasm_v128_load(w + 16 * h);
        const int8_t *xh = x + 16 * h;
        acc = dot16(acc, wasm_u8x16_shr(v, 6), wasm_v128_load(xh));
        acc = dot16(acc, wasm_v128_and(wasm_u8x16_shr(v, 4), m3), wasm_v128_load(xh + 32));
        acc = dot16(acc, wasm_v128_and(wasm_u8x16_shr(v, 2), m3), wasm_v128_load(xh + 64));
        acc = dot16(acc, wasm_v128_and(v, m3), wasm_v128_load(xh + 96));
    }
    return acc;
}

static inline int32_t hsum_i32(v128_t v) {
    return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
           wasm_i32x4_extract_lane(v, 3);
}

static void i2s_gemm(const uint8_t *w, int64_t n, int64_t r0, int64_t r1, const int8_t *q, int T, int32_t *acc,
                     int64_t acc_stride) {
    const int64_t nb = n / 128, row_bytes = n / 4;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + r * row_bytes;
        for (int t = 0; t < T; t++) {
            v128_t s = wasm_i32x4_splat(0);
            for (int64_t k = 0; k < nb; k++) s = block_dot(row + 32 * k, q + (int64_t)t * n + 128 * k, s);
            acc[(int64_t)t * acc_stride + r] = hsum_i32(s);
        }
    }
}

/* f16 -> f32 for 4 halves: shift into f32 position and scale by 2^112 (exact for normals and subnormals);
 * infinities and NaNs get an all-ones exponent. */
static inline v128_t f16x4_to_f32(const uint16_t *h) {
    const v128_t u = wasm_u32x4_load16x4(h);
    const v128_t sign = wasm_i32x4_shl(wasm_v128_and(u, wasm_i32x4_splat(0x8000)), 16);
    const v128_t mag = wasm_i32x4_shl(wasm_v128_and(u, wasm_i32x4_splat(0x7FFF)), 13);
    v128_t f = wasm_f32x4_mul(mag, wasm_f32x4_splat(5.192296858534828e+33f)); /* 2^112 */
    const v128_t infnan = wasm_i32x4_ge(mag, wasm_i32x4_splat(0x0F800000));
    f = wasm_v128_bitselect(wasm_v128_or(mag, wasm_i32x4_splat(0x70000000)), f, infnan);
    return wasm_v128_or(f, sign);
}

/* Float dots in the canonical lane order (lanes.h): eight v128 accumulators hold lanes 0-31. */
static float dot_f16(const uint16_t *w, const float *x, int64_t n) {
    v128_t a[8];
    for (int k = 0; k < 8; k++) a[k] = wasm_f32x4_splat(0);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 8; k++) a[k] = wasm_f32x4_add(a[k], wasm_f32x4_mul(f16x4_to_f32(w + i + 4 * k), wasm_v128_load(x + i + 4 * k)));
    float l[TL_LANES];
    for (int k = 0; k < 8; k++) wasm_v128_store(l + 4 * k, a[k]);
    for (; i < n; i++) l[i % TL_LANES] += tl_f16_to_f32(w[i]) * x[i];
    return tl_lanes_fold(l);
}

static float dot_f32(const float *w, const float *x, int64_t n) {
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

static void attn_pv(float *out, const float *prob, const uint16_t *v, int64_t n_pos, int64_t stride, int64_t hd) {
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

static const tl_kernels k_wasm128 = {
    "wasm128", quantize_i8, tl_scalar_quantize_q8k, i2s_gemm, tl_scalar_dot_tq2, tl_scalar_dot_tq1, dot_f16, dot_f32,
    tl_scalar_dot_q8_0, attn_pv,
    NULL, NULL, NULL, /* no 16-row group GEMMs yet: weights stay in file layout */
};

const tl_kernels *tl_kernels_wasm128_table(void) { return &k_wasm128; }
