/* The 16-row group GEMMs of I2_S and TQ2_0 / TQ1_0 for ARMv8.6 `smmla` (i8mm; compiled with
 * -march=armv8.2-a+dotprod+i8mm, used only when HWCAP2 says the core has it). smmla multiplies a 2 x 8 int8 block by
 * an 8 x 2 one into a 2 x 2 int32 block: two weight rows x 8 inputs against two tokens x the same 8 inputs, 32
 * products an instruction where sdot by lane gives 16. The repacked layout (repack.h) stays the one sdot reads; two
 * 32-bit zips turn its code slices into smmla's row pairs. Integer sums are exact, so every result equals the sdot
 * kernels' and the scalar reference's bit for bit. One token has no partner: it runs the sdot kernels. The int8 head
 * (--head-quant i8) gets the same treatment: two int8 chunks of 4 inputs zipped into 8. */
#include <arm_neon.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

void tl_neon_gemm_i2s_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys);
void tl_neon_gemm_tq_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys);

#define PAIRS_MAX 2 /* token pairs a tile: 16 accumulators, the rest of the 32 registers for operands */

/* Part p of a 64-byte chunk holds rows 4p..4p+3, 4 bytes a row; bits 2s of byte j are the code of input 4s + j. As
 * smmla operands: m[0] rows 0-1 x inputs 0-7, m[1] rows 2-3 x inputs 0-7, m[2] and m[3] the same for inputs 8-15. */
static inline void part_operands(const uint8_t *p, int8x16_t m[4]) {
    const uint8x16_t v = vld1q_u8(p), m3 = vdupq_n_u8(3);
    const int32x4_t c0 = vreinterpretq_s32_u8(vandq_u8(v, m3)), c1 = vreinterpretq_s32_u8(vandq_u8(vshrq_n_u8(v, 2), m3));
    const int32x4_t c2 = vreinterpretq_s32_u8(vandq_u8(vshrq_n_u8(v, 4), m3)), c3 = vreinterpretq_s32_u8(vshrq_n_u8(v, 6));
    m[0] = vreinterpretq_s8_s32(vzip1q_s32(c0, c1));
    m[1] = vreinterpretq_s8_s32(vzip2q_s32(c0, c1));
    m[2] = vreinterpretq_s8_s32(vzip1q_s32(c2, c3));
    m[3] = vreinterpretq_s8_s32(vzip2q_s32(c2, c3));
}

/* acc[k][p][h]: part p's row pair h (rows 4p + 2h, 4p + 2h + 1) times token pair k, as smmla leaves it
 * (row a token 0, row a token 1, row b token 0, row b token 1). x[2k], x[2k + 1] point at chunk c0's 16 inputs. */
static inline void pair_tile(const uint8_t *g, const int8_t *const *x, int NP, int64_t c0, int64_t c1,
                             int32x4_t acc[PAIRS_MAX][4][2]) {
    for (int64_t c = c0; c < c1; c++) {
        int8x16_t lo[PAIRS_MAX], hi[PAIRS_MAX]; /* token pair k, inputs 0-7 and 8-15 */
        for (int k = 0; k < NP; k++) {
            const int64x2_t u = vreinterpretq_s64_s8(vld1q_s8(x[2 * k] + 16 * (c - c0)));
            const int64x2_t v = vreinterpretq_s64_s8(vld1q_s8(x[2 * k + 1] + 16 * (c - c0)));
            lo[k] = vreinterpretq_s8_s64(vzip1q_s64(u, v));
            hi[k] = vreinterpretq_s8_s64(vzip2q_s64(u, v));
        }
        for (int p = 0; p < 4; p++) {
            int8x16_t m[4];
            part_operands(g + 64 * c + 16 * p, m);
            for (int k = 0; k < NP; k++) {
                acc[k][p][0] = vmmlaq_s32(vmmlaq_s32(acc[k][p][0], m[0], lo[k]), m[2], hi[k]);
                acc[k][p][1] = vmmlaq_s32(vmmlaq_s32(acc[k][p][1], m[1], lo[k]), m[3], hi[k]);
            }
        }
    }
}

static void zero_pairs(int32x4_t acc[PAIRS_MAX][4][2]) {
    for (int k = 0; k < PAIRS_MAX; k++)
        for (int p = 0; p < 4; p++) acc[k][p][0] = acc[k][p][1] = vdupq_n_s32(0);
}

/* Token 2k + e's sums of rows 4p..4p+3 (e = 0 or 1) out of the pair layout. */
static inline int32x4_t token_rows(int32x4_t acc[PAIRS_MAX][4][2], int k, int p, int e) {
    return e ? vuzp2q_s32(acc[k][p][0], acc[k][p][1]) : vuzp1q_s32(acc[k][p][0], acc[k][p][1]);
}

/* The activation rows of tokens t0..t0+TT-1, an odd last one paired with itself (its twin's sums are dropped). */
static int pair_tokens(const int8_t *q, int64_t stride, int t0, int TT, const int8_t *x[2 * PAIRS_MAX]) {
    for (int t = 0; t < TT; t++) x[t] = q + (int64_t)(t0 + t) * stride;
    if (TT % 2) x[TT] = x[TT - 1];
    return (TT + 1) / 2;
}

void tl_neon_mm_gemm_i2s_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    if (a->T == 1) {
        tl_neon_gemm_i2s_r16(w, r0, r1, a, y, ys);
        return;
    }
    const int64_t n = w->ne0;
    for (int64_t r = r0; r < r1; r += 16) {
        const uint8_t *g = w->data + (r / 16) * n * 4;
        for (int t0 = 0; t0 < a->T; t0 += 2 * PAIRS_MAX) {
            const int TT = a->T - t0 < 2 * PAIRS_MAX ? a->T - t0 : 2 * PAIRS_MAX;
            const int8_t *x[2 * PAIRS_MAX];
            const int NP = pair_tokens(a->q, n, t0, TT, x);
            int32x4_t acc[PAIRS_MAX][4][2];
            zero_pairs(acc);
            pair_tile(g, x, NP, 0, n / 16, acc);
            for (int t = 0; t < TT; t++) {
                const float32x4_t sq = vdupq_n_f32((float)a->sum[t0 + t]), sc = vdupq_n_f32(a->scale[t0 + t]);
                for (int p = 0; p < 4; p++) {
                    const float32x4_t f = vdivq_f32(vsubq_f32(vcvtq_f32_s32(token_rows(acc, t / 2, p, t % 2)), sq), sc);
                    vst1q_f32(y + (int64_t)(t0 + t) * ys + r + 4 * p, vmulq_f32(f, vdupq_n_f32(w->scale)));
                }
            }
        }
    }
}

/* TQ2_0 / TQ1_0 rows: blocks of 256 inputs, each with its rows' f16 scales and its Q8_K activation block (the sdot
 * kernel's epilogue, the same float operations in the same order). */
void tl_neon_mm_gemm_tq_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    if (a->T == 1) {
        tl_neon_gemm_tq_r16(w, r0, r1, a, y, ys);
        return;
    }
    const int64_t n = w->ne0, nb = n / 256;
    for (int64_t r = r0; r < r1; r += 16) {
        const uint8_t *g = w->data + (r / 16) * n * 4;
        for (int t0 = 0; t0 < a->T; t0 += 2 * PAIRS_MAX) {
            const int TT = a->T - t0 < 2 * PAIRS_MAX ? a->T - t0 : 2 * PAIRS_MAX;
            float32x4_t sum[2 * PAIRS_MAX][4];
            for (int t = 0; t < 2 * PAIRS_MAX; t++)
                for (int p = 0; p < 4; p++) sum[t][p] = vdupq_n_f32(0);
            for (int64_t b = 0; b < nb; b++) {
                const int8_t *x[2 * PAIRS_MAX];
                for (int t = 0; t < TT; t++) x[t] = a->q8k[(int64_t)(t0 + t) * nb + b].qs;
                if (TT % 2) x[TT] = x[TT - 1];
                int32x4_t acc[PAIRS_MAX][4][2];
                zero_pairs(acc);
                pair_tile(g, x, (TT + 1) / 2, 16 * b, 16 * b + 16, acc);
                const uint16_t *dwp = w->dw + ((r / 16) * nb + b) * 16;
                for (int t = 0; t < TT; t++) {
                    const tl_block_q8k *xb = &a->q8k[(int64_t)(t0 + t) * nb + b];
                    int32_t bs = 0;
                    for (int k = 0; k < 16; k++) bs += xb->bsums[k];
                    for (int p = 0; p < 4; p++) {
                        const float32x4_t dw = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(dwp + 4 * p)));
                        const int32x4_t s = vsubq_s32(token_rows(acc, t / 2, p, t % 2), vdupq_n_s32(bs));
                        sum[t][p] = vaddq_f32(sum[t][p], vmulq_f32(vcvtq_f32_s32(s), vmulq_f32(vdupq_n_f32(xb->d), dw)));
                    }
                }
            }
            for (int t = 0; t < TT; t++)
                for (int p = 0; p < 4; p++) vst1q_f32(y + (int64_t)(t0 + t) * ys + r + 4 * p, sum[t][p]);
        }
    }
}

void tl_neon_gemm_i8_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys);

/* Chunks c and c + 1 of an int8 group (repack.h: part p of a 64-byte chunk is rows 4p..4p+3 x 4 inputs, stored
 * w + 128) as smmla's row pairs over 8 inputs; `next` NULL stands for a chunk of zero weights (an odd last chunk). */
static inline void i8_operands(const uint8_t *cur, const uint8_t *next, int p, int8x16_t m[2]) {
    const uint8x16_t flip = vdupq_n_u8(0x80);
    const int32x4_t u = vreinterpretq_s32_u8(veorq_u8(vld1q_u8(cur + 16 * p), flip));
    const int32x4_t v = next ? vreinterpretq_s32_u8(veorq_u8(vld1q_u8(next + 16 * p), flip)) : vdupq_n_s32(0);
    m[0] = vreinterpretq_s8_s32(vzip1q_s32(u, v));
    m[1] = vreinterpretq_s8_s32(vzip2q_s32(u, v));
}

/* Token pair k's 8 activations from input i (4 of them, then zeros, where only 4 remain in the row). */
static inline int8x16_t i8_pair_acts(const int8_t *const *x, int k, int64_t i, int four) {
    if (!four) return vcombine_s8(vld1_s8(x[2 * k] + i), vld1_s8(x[2 * k + 1] + i));
    int8_t b[16] = {0};
    memcpy(b, x[2 * k] + i, 4);
    memcpy(b + 8, x[2 * k + 1] + i, 4);
    return vld1q_s8(b);
}

/* The int8 head for two tokens or more: y = ((float)Σ w·q / scale_t) · d_row, as tl_neon_gemm_i8_r16. */
void tl_neon_mm_gemm_i8_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t ys) {
    if (a->T == 1) {
        tl_neon_gemm_i8_r16(w, r0, r1, a, y, ys);
        return;
    }
    const int64_t n = w->ne0, chunks = n / 4;
    for (int64_t r = r0; r < r1; r += 16) {
        const uint8_t *g = w->data + (r / 16) * n * 16;
        for (int t0 = 0; t0 < a->T; t0 += 2 * PAIRS_MAX) {
            const int TT = a->T - t0 < 2 * PAIRS_MAX ? a->T - t0 : 2 * PAIRS_MAX;
            const int8_t *x[2 * PAIRS_MAX];
            const int NP = pair_tokens(a->q, n, t0, TT, x);
            int32x4_t acc[PAIRS_MAX][4][2];
            zero_pairs(acc);
            for (int64_t c = 0; c < chunks; c += 2) {
                const int four = c + 1 == chunks;
                int8x16_t b[PAIRS_MAX];
                for (int k = 0; k < NP; k++) b[k] = i8_pair_acts(x, k, 4 * c, four);
                for (int p = 0; p < 4; p++) {
                    int8x16_t m[2];
                    i8_operands(g + 64 * c, four ? NULL : g + 64 * (c + 1), p, m);
                    for (int k = 0; k < NP; k++) {
                        acc[k][p][0] = vmmlaq_s32(acc[k][p][0], m[0], b[k]);
                        acc[k][p][1] = vmmlaq_s32(acc[k][p][1], m[1], b[k]);
                    }
                }
            }
            for (int t = 0; t < TT; t++) {
                const float32x4_t sc = vdupq_n_f32(a->scale[t0 + t]);
                for (int p = 0; p < 4; p++) {
                    const float32x4_t f = vdivq_f32(vcvtq_f32_s32(token_rows(acc, t / 2, p, t % 2)), sc);
                    vst1q_f32(y + (int64_t)(t0 + t) * ys + r + 4 * p, vmulq_f32(f, vld1q_f32(w->drow + r + 4 * p)));
                }
            }
        }
    }
}
