/* Load-time repacking of weights into 16-row interleaved groups (tl_r16 in kernels.h), so that one vector of 16
 * 32-bit lanes holds 4 consecutive inputs of 16 different rows: a GEMM then multiplies it by the 4 activations of
 * one token broadcast to every lane, and each lane accumulates its own row. No horizontal sums, every weight load
 * serves all tokens of a tile and every activation load all rows of a group.
 *
 * 2-bit codes (I2_S, TQ2_0, TQ1_0 decoded to codes 0..2 = values -1, 0, +1), n inputs per row:
 *   group g (rows 16g..16g+15) is 4n bytes at data + 4n·g; within it chunk c (inputs 16c..16c+15) is 64 bytes;
 *   byte 4·r + j (row 16g + r, j = 0..3) holds in bits 2s..2s+1 the code of input 16c + 4s + j (s = 0..3).
 *   So (v >> 2s) & 3 is a vector of codes whose lane r holds inputs 16c + 4s .. 16c + 4s + 3 of row r.
 *   Same size as I2_S and TQ2_0 (TQ1_0 grows from 1.6875 to 2.0625 bits per weight with its scales).
 * TQ block scales: dw[(g·(n/256) + b)·16 + r], the f16 d of block b of row 16g + r.
 * int8 rows (a re-quantized F16 head): group g is 16n bytes at data + 16n·g; chunk c (inputs 4c..4c+3) is 64 bytes,
 *   byte 4·r + j = w[16g + r][4c + j] + 128 (stored unsigned for u8 × s8 dot instructions); drow[row] = d.
 *   Quantization per row: d = max|w| / 127, q = rne(w · (127 / max|w|)) (0 for an all-zero row), w ≈ d · q.
 * int4 rows (the 4-bit head, --head-quant i4), w ≈ d_row · s_b · q with q in -7..7 and s_b in 1..255 per block b of 32
 *   inputs: group g is 8n bytes at data + 8n·g; pair chunk p (inputs 8p..8p+7) is 64 bytes, byte 4·r + j holds
 *   q + 8 of input 8p + j in its low nibble and of input 8p + 4 + j in its high one (so the low nibbles of a 64-byte
 *   load are exactly an int8 chunk, and so are the high ones); sub[(g·(n/32) + b)·16 + r] = s_b; drow[row] = d_row.
 *   Quantization per row: m_b = max|w| over block b, M = max_b m_b, d_row = M / 1785 (7 · 255),
 *   s_0 = ceil(255 · (m_b / M)) clamped to 1..255, s_b the one of s_0 - (s_0·c)/16 (c = 0..3, at least 1) whose q give
 *   the least squared error over the block (the first on a tie), q = rne(w · (1 / (d_row · s_b))) clamped to -7..7.
 *   A dot is Σ_b s_b · Σ_{k in b} q·x in int32, exact for n <= 8192; 4.25 bits per weight plus 4 bytes a row. */
#ifndef TERNLM_REPACK_H
#define TERNLM_REPACK_H

#include <stdint.h>

/* Rows of every repackable weight must come in whole groups. */
#define TL_R16_ROWS 16

/* Bytes of the repacked data for ne1 rows of ne0 inputs. */
static inline uint64_t tl_r16_bytes_2bit(int64_t ne0, int64_t ne1) { return (uint64_t)ne0 * (uint64_t)ne1 / 4; }
static inline uint64_t tl_r16_bytes_i8(int64_t ne0, int64_t ne1) { return (uint64_t)ne0 * (uint64_t)ne1; }
static inline uint64_t tl_r16_bytes_i4(int64_t ne0, int64_t ne1) { return (uint64_t)ne0 * (uint64_t)ne1 / 2; }
static inline uint64_t tl_r16_bytes_i4_sub(int64_t ne0, int64_t ne1) { return (uint64_t)ne0 / 32 * (uint64_t)ne1; }
/* The widest row the int4 GEMM's int32 sums hold exactly. */
#define TL_I4_MAX_NE0 8192

/* Rows [r0, r1) (multiples of 16) of an I2_S code area (rows of ne0/4 bytes; ne0 % 128 == 0). */
void tl_repack_i2s(const uint8_t *src, int64_t ne0, int64_t r0, int64_t r1, uint8_t *dst);
/* Rows [r0, r1) of TQ2_0 / TQ1_0 rows (ne0 % 256 == 0); codes to dst, block scales to dw (whole-tensor arrays). */
void tl_repack_tq2(const uint8_t *src, int64_t ne0, int64_t r0, int64_t r1, uint8_t *dst, uint16_t *dw);
void tl_repack_tq1(const uint8_t *src, int64_t ne0, int64_t r0, int64_t r1, uint8_t *dst, uint16_t *dw);
/* Rows [r0, r1) of an F16 matrix (ne0 % 4 == 0) quantized to int8 rows. */
void tl_repack_i8_from_f16(const uint16_t *src, int64_t ne0, int64_t r0, int64_t r1, uint8_t *dst, float *drow);
/* Rows [r0, r1) of an F16 matrix (ne0 % 32 == 0, ne0 <= TL_I4_MAX_NE0) quantized to int4 rows with block sub-scales. */
void tl_repack_i4_from_f16(const uint16_t *src, int64_t ne0, int64_t r0, int64_t r1, uint8_t *dst, uint8_t *sub, float *drow);

/* The code of input k of row r in a 2-bit group layout, and the int8 value of an int8 layout (for references). */
static inline int tl_r16_code(const uint8_t *data, int64_t ne0, int64_t r, int64_t k) {
    const uint8_t b = data[(uint64_t)(r / 16) * (uint64_t)ne0 * 4 + (uint64_t)(k / 16) * 64 + 4 * (r % 16) + k % 4];
    return (b >> (2 * ((k % 16) / 4))) & 3;
}
static inline int tl_r16_i8(const uint8_t *data, int64_t ne0, int64_t r, int64_t k) {
    return (int)data[(uint64_t)(r / 16) * (uint64_t)ne0 * 16 + (uint64_t)(k / 4) * 64 + 4 * (r % 16) + k % 4] - 128;
}

static inline int tl_r16_i4(const uint8_t *data, int64_t ne0, int64_t r, int64_t k) {
    const uint8_t b = data[(uint64_t)(r / 16) * (uint64_t)ne0 * 8 + (uint64_t)(k / 8) * 64 + 4 * (r % 16) + k % 4];
    return (k % 8 < 4 ? b & 15 : b >> 4) - 8;
}
static inline int tl_r16_i4_sub(const uint8_t *sub, int64_t ne0, int64_t r, int64_t b) {
    return sub[((uint64_t)(r / 16) * (uint64_t)(ne0 / 32) + (uint64_t)b) * 16 + (uint64_t)(r % 16)];
}

/* Tokens whose int4 block offsets a GEMM prepares at once (a stack array of TL_I4_TOKENS x TL_I4_MAX_NE0/32). */
#define TL_I4_TOKENS 32
/* The stored values are q + 8, so Σ (q + 8)·x over a block exceeds the exact Σ q·x by 8·Σx: off[b] = -8·Σx over
 * block b of x (n / 32 blocks), the start of each block's sum. */
static inline void tl_i4_offsets(const int8_t *x, int64_t n, int32_t *off) {
    for (int64_t b = 0; b < n / 32; b++) {
        int32_t s = 0;
        for (int k = 0; k < 32; k++) s += x[32 * b + k];
        off[b] = -8 * s;
    }
}

#endif
