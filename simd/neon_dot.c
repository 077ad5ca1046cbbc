/* The I2_S kernel for ARMv8.2 `sdot` (compiled with -march=armv8.2-a+dotprod; used only when HWCAP says the core
 * has it). Codes {0,1,2} are valid signed bytes, so vdotq_s32 gives Σ code·q directly. */
#include <arm_neon.h>
#include <stdint.h>
#include <string.h>

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

/* ---- GEMMs on 16-row groups (repack.h) with `sdot` by lane: a q register holds 4 inputs of 4 rows, and
 * vdotq_laneq_s32 multiplies it by 4 activations picked from a register of 16, so one activation load serves 16 rows
 * and each decoded weight register serves every token of the tile (up to 4). Integer sums are the exact per-row sums;
 * the float epilogues are the scalar formulas lane by lane. ---- */
#include "kernels.h"

#define TT_MAX 4

/* The codes of subgroup s of a 64-byte chunk: 4 registers of 4 rows × 4 inputs. */
static inline void decode_codes(const uint8_t *p, int s, int8x16_t code[4]) {
    const int8x16_t sh = vdupq_n_s8((int8_t)(-2 * s));
    for (int r = 0; r < 4; r++) code[r] = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(vld1q_u8(p + 16 * r), sh), vdupq_n_u8(3)));
}

#define DOT_LANE(S)                                                                                                    \
    do {                                                                                                               \
        int8x16_t code[4];                                                                                             \
        decode_codes(g + 64 * c, S, code);                                                                             \
        for (int t = 0; t < TT; t++)                                                                                   \
            for (int r = 0; r < 4; r++) acc[t][r] = vdotq_laneq_s32(acc[t][r], code[r], xv[t], S);                   \
    } while (0)

/* One group, TT tokens, chunks [c0, c1); x[t] points at the activations of chunk c0. */
static inline void codes_tile(const uint8_t *g, const int8_t *const *x, int TT, int64_t c0, int64_t c1, int32x4_t acc[TT_MAX][4]) {
    for (int64_t c = c0; c < c1; c++) {
        int8x16_t xv[TT_MAX];
        for (int t = 0; t < TT; t++) xv[t] = vld1q_s8(x[t] + 16 * (c - c0));
        DOT_LANE(0);
        DOT_LANE(1);
        DOT_LANE(2);
        DOT_LANE(3);
    }
}

static void zero_acc(int32x4_t acc[TT_MAX][4]) {
    for (int t = 0; t < TT_MAX; t++)
        for (int r = 0; r < 4; r++) acc[t][r] = vdupq_n_s32(0);
}

void tl_neon_gemm_i2s_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    const int64_t n = w->ne0;
    for (int64_t r = r0; r < r1; r += 16) {
        const uint8_t *g = w->data + (r / 16) * n * 4;
        for (int t0 = 0; t0 < a->T; t0 += TT_MAX) {
            const int TT = a->T - t0 < TT_MAX ? a->T - t0 : TT_MAX;
            const int8_t *x[TT_MAX];
            for (int t = 0; t < TT; t++) x[t] = a->q + (int64_t)(t0 + t) * n;
            int32x4_t acc[TT_MAX][4];
            zero_acc(acc);
            codes_tile(g, x, TT, 0, n / 16, acc);
            for (int t = 0; t < TT; t++) {
                const float32x4_t sq = vdupq_n_f32((float)a->sum[t0 + t]), sc = vdupq_n_f32(a->scale[t0 + t]);
                for (int q = 0; q < 4; q++) {
                    const float32x4_t f = vdivq_f32(vsubq_f32(vcvtq_f32_s32(acc[t][q]), sq), sc);
                    vst1q_f32(y + (int64_t)(t0 + t) * ys + r + 4 * q, vmulq_f32(f, vdupq_n_f32(w->scale)));
                }
            }
        }
    }
}

void tl_neon_gemm_tq_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    const int64_t n = w->ne0, nb = n / 256;
    for (int64_t r = r0; r < r1; r += 16) {
        const uint8_t *g = w->data + (r / 16) * n * 4;
        for (int t0 = 0; t0 < a->T; t0 += TT_MAX) {
            const int TT = a->T - t0 < TT_MAX ? a->T - t0 : TT_MAX;
            float32x4_t sum[TT_MAX][4];
            for (int t = 0; t < TT_MAX; t++)
                for (int q = 0; q < 4; q++) sum[t][q] = vdupq_n_f32(0);
            for (int64_t b = 0; b < nb; b++) {
                const int8_t *x[TT_MAX];
                for (int t = 0; t < TT; t++) x[t] = a->q8k[(int64_t)(t0 + t) * nb + b].qs;
                int32x4_t acc[TT_MAX][4];
                zero_acc(acc);
                codes_tile(g, x, TT, 16 * b, 16 * b + 16, acc);
                const uint16_t *dwp = w->dw + ((r / 16) * nb + b) * 16;
                for (int t = 0; t < TT; t++) {
                    const tl_block_q8k *xb = &a->q8k[(int64_t)(t0 + t) * nb + b];
                    int32_t bs = 0;
                    for (int k = 0; k < 16; k++) bs += xb->bsums[k];
                    for (int q = 0; q < 4; q++) {
                        const float32x4_t dw = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(dwp + 4 * q)));
                        const float32x4_t f = vcvtq_f32_s32(vsubq_s32(acc[t][q], vdupq_n_s32(bs)));
                        sum[t][q] = vaddq_f32(sum[t][q], vmulq_f32(f, vmulq_f32(vdupq_n_f32(xb->d), dw)));
                    }
                }
            }
            for (int t = 0; t < TT; t++)
                for (int q = 0; q < 4; q++) vst1q_f32(y + (int64_t)(t0 + t) * ys + r + 4 * q, sum[t][q]);
        }
    }
}

#define I8_LANE(S)                                                                                                     \
    do {                                                                                                               \
        const uint8_t *p = g + 64 * (c + S);                                                                           \
        for (int q = 0; q < 4; q++) {                                                                                  \
            const int8x16_t wv = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(p + 16 * q), vdupq_n_u8(0x80))); /* w */        \
            for (int t = 0; t < TT; t++) acc[t][q] = vdotq_laneq_s32(acc[t][q], wv, xv[t], S);                          \
        }                                                                                                              \
    } while (0)

void tl_neon_gemm_i8_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    const int64_t n = w->ne0;
    for (int64_t r = r0; r < r1; r += 16) {
        const uint8_t *g = w->data + (r / 16) * n * 16;
        for (int t0 = 0; t0 < a->T; t0 += TT_MAX) {
            const int TT = a->T - t0 < TT_MAX ? a->T - t0 : TT_MAX;
            int32x4_t acc[TT_MAX][4];
            zero_acc(acc);
            int64_t c = 0;
            for (; c + 4 <= n / 4; c += 4) { /* four chunks of 4 inputs: one 16-byte activation load per token */
                int8x16_t xv[TT_MAX];
                for (int t = 0; t < TT; t++) xv[t] = vld1q_s8(a->q + (int64_t)(t0 + t) * n + 4 * c);
                I8_LANE(0);
                I8_LANE(1);
                I8_LANE(2);
                I8_LANE(3);
            }
            for (; c < n / 4; c++) { /* rows whose length is not a multiple of 16 */
                int8x16_t xv[TT_MAX];
                for (int t = 0; t < TT; t++) {
                    int32_t v;
                    memcpy(&v, a->q + (int64_t)(t0 + t) * n + 4 * c, 4);
                    xv[t] = vreinterpretq_s8_s32(vdupq_n_s32(v));
                }
                I8_LANE(0);
            }
            for (int t = 0; t < TT; t++) {
                const float32x4_t sc = vdupq_n_f32(a->scale[t0 + t]);
                for (int q = 0; q < 4; q++) {
                    const float32x4_t f = vdivq_f32(vcvtq_f32_s32(acc[t][q]), sc);
                    vst1q_f32(y + (int64_t)(t0 + t) * ys + r + 4 * q, vmulq_f32(f, vld1q_f32(w->drow + r + 4 * q)));
                }
            }
        }
    }
}

/* int4 rows (repack.h): the low and high nibbles of each 16 bytes (4 rows) are q + 8 of two int8-layout chunks; minus
 * 8 they are signed bytes for sdot by lane. One 16-byte activation load per token covers two pair chunks (lanes 0-1
 * the first's low and high halves, 2-3 the second's). Each block of 32 is scaled by its rows' sub-scales. */
void tl_neon_gemm_i4_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    const int64_t n = w->ne0, nb = n / 32;
    const uint8x16_t m15 = vdupq_n_u8(15);
    const int8x16_t eight = vdupq_n_s8(8);
    for (int64_t r = r0; r < r1; r += 16) {
        const uint8_t *g = w->data + (r / 16) * n * 8, *sc = w->sub + (r / 16) * nb * 16;
        for (int t0 = 0; t0 < a->T; t0 += TT_MAX) {
            const int TT = a->T - t0 < TT_MAX ? a->T - t0 : TT_MAX;
            int32x4_t acc[TT_MAX][4];
            zero_acc(acc);
            for (int64_t b = 0; b < nb; b++) {
                int32x4_t blk[TT_MAX][4];
                zero_acc(blk);
                for (int h = 0; h < 2; h++) {
                    int8x16_t xv[TT_MAX];
                    for (int t = 0; t < TT; t++) xv[t] = vld1q_s8(a->q + (int64_t)(t0 + t) * n + 32 * b + 16 * h);
                    for (int q = 0; q < 4; q++) {
                        const uint8x16_t v0 = vld1q_u8(g + 64 * (4 * b + 2 * h) + 16 * q), v1 = vld1q_u8(g + 64 * (4 * b + 2 * h + 1) + 16 * q);
                        const int8x16_t l0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v0, m15)), eight);
                        const int8x16_t h0 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v0, 4)), eight);
                        const int8x16_t l1 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v1, m15)), eight);
                        const int8x16_t h1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v1, 4)), eight);
                        for (int t = 0; t < TT; t++) {
                            blk[t][q] = vdotq_laneq_s32(blk[t][q], l0, xv[t], 0);
                            blk[t][q] = vdotq_laneq_s32(blk[t][q], h0, xv[t], 1);
                            blk[t][q] = vdotq_laneq_s32(blk[t][q], l1, xv[t], 2);
                            blk[t][q] = vdotq_laneq_s32(blk[t][q], h1, xv[t], 3);
                        }
                    }
                }
                const uint8x16_t s8 = vld1q_u8(sc + 16 * b);
                const uint16x8_t slo = vmovl_u8(vget_low_u8(s8)), shi = vmovl_u8(vget_high_u8(s8));
                const int32x4_t s[4] = {vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(slo))), vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(slo))),
                                        vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(shi))), vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(shi)))};
                for (int t = 0; t < TT; t++)
                    for (int q = 0; q < 4; q++) acc[t][q] = vmlaq_s32(acc[t][q], blk[t][q], s[q]);
            }
            for (int t = 0; t < TT; t++) {
                const float32x4_t scl = vdupq_n_f32(a->scale[t0 + t]);
                for (int q = 0; q < 4; q++) {
                    const float32x4_t f = vdivq_f32(vcvtq_f32_s32(acc[t][q]), scl);
                    vst1q_f32(y + (int64_t)(t0 + t) * ys + r + 4 * q, vmulq_f32(f, vld1q_f32(w->drow + r + 4 * q)));
                }
            }
        }
    }
}
