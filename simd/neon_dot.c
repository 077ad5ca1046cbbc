/* The I2_S kernel for ARMv8.2 `sdot` (compiled with -march=armv8.2-a+dotprod; used only when HWCAP says the core
 * has it). Codes {0,1,2} are valid signed bytes, so vdotq_s32 gives Σ code·q directly. */
#include <arm_neon.h>
#include <stdint.h>

static inline int32x4_t block_sdot(const uint8_t *w, const int8_t *x, int32x4_t acc) {
    const uint8x16_t m3 = vdupq_n_u8(3);
    for (int h = 0; h < 2; h++) {
        const uint8x16_t v = vld1q_u8(w + 16 * h);
        const int8_t *xh = x + 16 * h;
        acc = vdotq_s32(acc, vreinterpretq_s8_u8(vshrq_n_u8(v, 6)), vld1q_s8(xh));
        acc = vdotq_s32(acc, vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v, 4), m3)), vld1q_s8(xh + 32));
        acc = vdotq_s32(acc, vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v, 2), m3)), vld1q_s8(xh + 64));
        acc = vdotq_s32(acc, vreinterpretq_s8_u8(vandq_u8(v, m3)), vld1q_s8(xh + 96));
    }
    return acc;
}

void tl_neon_i2s_gemm_dot(const uint8_t *w, int64_t n, int64_t r0, int64_t r1, const int8_t *q, int T, int32_t *acc,
                          int64_t acc_stride) {
    const int64_t nb = n / 128, row_bytes = n / 4;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + r * row_bytes;
        for (int t = 0; t < T; t++) {
            int32x4_t s = vdupq_n_s32(0);
            for (int64_t k = 0; k < nb; k++) s = block_sdot(row + 32 * k, q + (int64_t)t * n + 128 * k, s);
            acc[(int64_t)t * acc_stride + r] = vaddvq_s32(s);
        }
    }
}
