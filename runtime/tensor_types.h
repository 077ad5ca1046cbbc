/* One table of tensor-type traits, half/bfloat conversion, and scalar dequantization. */
#ifndef TERNLM_TENSOR_TYPES_H
#define TERNLM_TENSOR_TYPES_H

#include <stdint.h>

enum tl_type {
    TL_F32 = 0, TL_F16 = 1, TL_Q4_0 = 2, TL_Q8_0 = 8, TL_Q4_K = 12, TL_Q6_K = 14, TL_Q8_K = 15,
    TL_BF16 = 30, TL_TQ1_0 = 34, TL_TQ2_0 = 35, TL_I2_S = 36,
    TL_Q1_0 = 41, TL_Q2_0 = 42 /* Bonsai (1-bit) and Ternary-Bonsai: quant-formats.md §10-11 */
};

typedef struct tl_type_traits {
    const char *name;
    uint32_t block_elems;  /* elements per block along ne[0] */
    uint32_t block_bytes;  /* bytes per block (I2_S: 32 bytes of codes per 128 elements) */
    int storable;          /* may appear in a GGUF file */
} tl_type_traits;

/* NULL for ids ternlm does not know. */
const tl_type_traits *tl_type_get(uint32_t type);
const char *tl_type_name(uint32_t type);   /* "type 37 (I8_S, ...)" style text for unknown ids too */

/* Byte size of a tensor of n elements (n a multiple of the block size). 0 on overflow.
 * I2_S is n/4 codes + a 32-byte tail holding the f32 scale. */
uint64_t tl_type_nbytes(uint32_t type, uint64_t n);
/* Byte size of one row of ne0 elements; for I2_S the row stride inside the code area. */
uint64_t tl_type_row_bytes(uint32_t type, uint64_t ne0);

float tl_f16_to_f32(uint16_t h);
uint16_t tl_f32_to_f16(float f);   /* round to nearest even; handles subnormals, inf, NaN */
float tl_bf16_to_f32(uint16_t h);
static inline float tl_round_f16(float f) { return tl_f16_to_f32(tl_f32_to_f16(f)); }

/* Dequantize one row of ne0 elements to f32. `row` points at the row's first block.
 * For I2_S pass the tensor's scale; other types ignore it. */
void tl_dequant_row(uint32_t type, const void *row, float *out, int64_t ne0, float i2s_scale);

/* The code (0,1,2 -> -1,0,+1; 3 decodes as 0) of element j of an I2_S row. */
static inline int tl_i2s_code(const uint8_t *row, int64_t j) {
    const uint8_t byte = row[32 * (j / 128) + (j % 128) % 32];
    return (byte >> (6 - 2 * ((j % 128) / 32))) & 3;
}

/* Q1_0: the sign bit (1 = +d, 0 = -d) of element j of a 128-block's 16 bit bytes. */
static inline int tl_q1_bit(const uint8_t *qs, int j) { return (qs[j / 8] >> (j % 8)) & 1; }
/* Q2_0: the code (0..3 = -1, 0, +1, +2) of element j of a 64-block's 16 code bytes (element 0 in the low bits). */
static inline int tl_q2_code(const uint8_t *qs, int j) { return (qs[j / 4] >> (2 * (j % 4))) & 3; }

/* TQ1_0 trit n (0..4) of byte b. */
static inline int tl_tq1_trit(uint8_t b, int n) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const uint8_t q = (uint8_t)(b * pow3[n]);
    return (int)(((uint16_t)q * 3) >> 8);
}

#endif
