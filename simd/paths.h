/* Kernels shared between paths (a faster path reuses a slower one's functions where it has nothing better). */
#ifndef TERNLM_SIMD_PATHS_H
#define TERNLM_SIMD_PATHS_H

#include "kernels.h"

void tl_scalar_quantize_q8k(const float *x, int64_t n, tl_block_q8k *y);
float tl_scalar_dot_tq2(const uint8_t *row, const tl_block_q8k *a, int64_t n);
float tl_scalar_dot_tq1(const uint8_t *row, const tl_block_q8k *a, int64_t n);
float tl_scalar_dot_q8_0(const uint8_t *w, const uint8_t *a, int64_t n);
float tl_scalar_dot_q1_0(const uint8_t *w, const uint8_t *a, int64_t n);
float tl_scalar_dot_q2_0(const uint8_t *w, const uint8_t *a, int64_t n);
float tl_wasm128_dot_q1_0(const uint8_t *w, const uint8_t *a, int64_t n);
float tl_wasm128_dot_q2_0(const uint8_t *w, const uint8_t *a, int64_t n);
float tl_avx2_dot_q1_0(const uint8_t *w, const uint8_t *a, int64_t n);
float tl_avx2_dot_q2_0(const uint8_t *w, const uint8_t *a, int64_t n);
void tl_scalar_gemm_i2s_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t y_stride);
void tl_scalar_gemm_tq_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t y_stride);
void tl_scalar_gemm_i8_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t y_stride);
void tl_scalar_gemm_i4_r16(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t y_stride);

void tl_avx2_quantize_i8(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum);
void tl_avx2_i2s_gemm(const uint8_t *w, int64_t n, int64_t r0, int64_t r1, const int8_t *q, int T, int32_t *acc,
                      int64_t acc_stride);
float tl_avx2_dot_tq2(const uint8_t *row, const tl_block_q8k *a, int64_t n);
float tl_avx2_dot_tq1(const uint8_t *row, const tl_block_q8k *a, int64_t n);
float tl_avx2_dot_q8_0(const uint8_t *w, const uint8_t *a, int64_t n);
void tl_avx2_attn_pv(float *out, const float *prob, const uint16_t *v, int64_t n_pos, int64_t stride, int64_t hd);

const tl_kernels *tl_kernels_avx2_table(void);
const tl_kernels *tl_kernels_avx512_table(void);
const tl_kernels *tl_kernels_neon_table(void);
const tl_kernels *tl_kernels_wasm128_table(void);
const tl_kernels *tl_kernels_wasm_relaxed_table(void);

#endif
