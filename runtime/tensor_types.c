#include "tensor_types.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const tl_type_traits k_traits[] = {
    [TL_F32] = {"F32", 1, 4, 1},
    [TL_F16] = {"F16", 1, 2, 1},
    [TL_Q4_0] = {"Q4_0", 32, 18, 1},
    [TL_Q8_0] = {"Q8_0", 32, 34, 1},
    [TL_Q4_K] = {"Q4_K", 256, 144, 1},
    [TL_Q6_K] = {"Q6_K", 256, 210, 1},
    [TL_Q8_K] = {"Q8_K", 256, 292, 0},
    [TL_BF16] = {"BF16", 1, 2, 1},
    [TL_TQ1_0] = {"TQ1_0", 256, 54, 1},
    [TL_TQ2_0] = {"TQ2_0", 256, 66, 1},
    [TL_I2_S] = {"I2_S", 128, 32, 1},
    [TL_Q1_0] = {"Q1_0", 128, 18, 1},
    [TL_Q2_0] = {"Q2_0", 64, 18, 1},
};

const tl_type_traits *tl_type_get(uint32_t type) {
    if (type >= sizeof k_traits / sizeof k_traits[0] || !k_traits[type].name) return NULL;
    return &k_traits[type];
}

const char *tl_type_name(uint32_t type) {
    const tl_type_traits *t = tl_type_get(type);
    return t ? t->name : "unknown";
}

uint64_t tl_type_nbytes(uint32_t type, uint64_t n) {
    const tl_type_traits *t = tl_type_get(type);
    if (!t || n % t->block_elems) return 0;
    if (type == TL_I2_S) return n / 4 + 32;
    const uint64_t blocks = n / t->block_elems;
    if (blocks > UINT64_MAX / t->block_bytes) return 0;
    return blocks * t->block_bytes;
}

uint64_t tl_type_row_bytes(uint32_t type, uint64_t ne0) {
    const tl_type_traits *t = tl_type_get(type);
    if (!t || ne0 % t->block_elems) return 0;
    if (type == TL_I2_S) return ne0 / 4;
    return ne0 / t->block_elems * t->block_bytes;
}

/* ---- half / bfloat ---- */

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float tl_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    if (exp == 0x1F) return bits_f32(sign | 0x7F800000u | (man << 13));     /* inf / NaN */
    if (exp != 0) return bits_f32(sign | ((exp + 112) << 23) | (man << 13)); /* normal */
    if (man == 0) return bits_f32(sign);                                    /* ±0 */
    /* subnormal: man * 2^-24, exact in f32 */
    const float v = (float)man * 5.9604644775390625e-8f;
    return sign ? -v : v;
}

uint16_t tl_f32_to_f16(float f) {
    const uint32_t x = f32_bits(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    const uint32_t ax = x & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u) return sign | 0x7C00 | (ax > 0x7F800000u ? 0x200 : 0);  /* inf / NaN */
    if (ax >= 0x477FF000u) return sign | 0x7C00;  /* rounds to >= 65520: overflow to inf */
    if (ax < 0x38800000u) {                         /* below the smallest normal half: subnormal */
        if (ax < 0x33000000u) return sign;          /* < 2^-25: rounds to 0 (2^-25 exactly ties to even 0) */
        const uint32_t e = ax >> 23, m = (ax & 0x7FFFFF) | 0x800000;
        const uint32_t sh = 126 - e; /* value / 2^-24 = m >> (126 - e), sh in 14..24 */
        uint32_t q = m >> sh;
        const uint32_t rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return sign | (uint16_t)q;
    }
    /* normal: rebias exponent, round mantissa from 23 to 10 bits, ties to even */
    uint32_t v = ((ax >> 23) - 112) << 10 | ((ax >> 13) & 0x3FF);
    const uint32_t rem = ax & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (v & 1))) v++;  /* a carry into the exponent is correct */
    return sign | (uint16_t)v;
}

float tl_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

/* ---- dequantization, one function per type ---- */

static float rd_f16(const uint8_t *p) { return tl_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static void dq_i2s(const uint8_t *row, float *y, int64_t n, float scale) {
    static const float val[4] = {-1.0f, 0.0f, 1.0f, 0.0f};
    for (int64_t j = 0; j < n; j++) y[j] = val[tl_i2s_code(row, j)] * scale;
}

static void dq_tq2(const uint8_t *b, float *y, int64_t n) {
    for (int64_t blk = 0; blk < n / 256; blk++, b += 66, y += 256) {
        const float d = rd_f16(b + 64);
        for (int e = 0; e < 256; e++) {
            const int h = e / 128, r = e % 128;
            const int q = (b[32 * h + r % 32] >> (2 * (r / 32))) & 3;
            y[e] = (float)(q - 1) * d;
        }
    }
}

static void dq_tq1(const uint8_t *b, float *y, int64_t n) {
    for (int64_t blk = 0; blk < n / 256; blk++, b += 54, y += 256) {
        const float d = rd_f16(b + 52);
        for (int e = 0; e < 256; e++) {
            int t;
            if (e < 160) t = tl_tq1_trit(b[e % 32], e / 32);
            else if (e < 240) t = tl_tq1_trit(b[32 + (e - 160) % 16], (e - 160) / 16);
            else t = tl_tq1_trit(b[48 + (e - 240) % 4], (e - 240) / 4);
            y[e] = (float)(t - 1) * d;
        }
    }
}

static void dq_q1_0(const uint8_t *b, float *y, int64_t n) {
    for (int64_t blk = 0; blk < n / 128; blk++, b += 18, y += 128) {
        const float d = rd_f16(b);
        for (int j = 0; j < 128; j++) y[j] = tl_q1_bit(b + 2, j) ? d : -d;
    }
}

static void dq_q2_0(const uint8_t *b, float *y, int64_t n) {
    for (int64_t blk = 0; blk < n / 64; blk++, b += 18, y += 64) {
        const float d = rd_f16(b);
        for (int j = 0; j < 64; j++) y[j] = (float)(tl_q2_code(b + 2, j) - 1) * d;
    }
}

static void dq_q8_0(const uint8_t *b, float *y, int64_t n) {
    for (int64_t blk = 0; blk < n / 32; blk++, b += 34, y += 32) {
        const float d = rd_f16(b);
        for (int i = 0; i < 32; i++) y[i] = d * (float)(int8_t)b[2 + i];
    }
}

static void dq_q4_0(const uint8_t *b, float *y, int64_t n) {
    for (int64_t blk = 0; blk < n / 32; blk++, b += 18, y += 32) {
        const float d = rd_f16(b);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((b[2 + j] & 0xF) - 8) * d;
            y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
        }
    }
}

static void q4k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

static void dq_q4_k(const uint8_t *b, float *y, int64_t n) {
    for (int64_t blk = 0; blk < n / 256; blk++, b += 144, y += 256) {
        const float d = rd_f16(b), dmin = rd_f16(b + 2);
        const uint8_t *scales = b + 4, *qs = b + 16;
        for (int e = 0; e < 256; e++) {
            const int c = e / 64, r = e % 64, hi = r / 32, l = r % 32;
            const uint8_t byte = qs[32 * c + l];
            const int q = hi ? byte >> 4 : byte & 0xF;
            int sc, m;
            q4k_scale_min(scales, 2 * c + hi, &sc, &m);
            y[e] = d * (float)sc * (float)q - dmin * (float)m;
        }
    }
}

static void dq_q6_k(const uint8_t *b, float *y, int64_t n) {
    for (int64_t blk = 0; blk < n / 256; blk++, b += 210, y += 256) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        const float d = rd_f16(b + 208);
        for (int e = 0; e < 256; e++) {
            const int h = e / 128, r = e % 128, g = r / 32, l = r % 32;
            const uint8_t lo = ql[64 * h + l + 32 * (g & 1)];
            const int nib = g >= 2 ? lo >> 4 : lo & 0xF;
            const int hb = ((qh[32 * h + l] >> (2 * g)) & 3) << 4;
            y[e] = d * (float)sc[8 * h + l / 16 + 2 * g] * (float)((nib | hb) - 32);
        }
    }
}

void tl_dequant_row(uint32_t type, const void *row, float *y, int64_t n, float i2s_scale) {
    const uint8_t *b = row;
    switch (type) {
    case TL_F32: memcpy(y, row, (size_t)n * 4); break;
    case TL_F16: for (int64_t i = 0; i < n; i++) y[i] = rd_f16(b + 2 * i); break;
    case TL_BF16:
        for (int64_t i = 0; i < n; i++) y[i] = tl_bf16_to_f32((uint16_t)(b[2 * i] | b[2 * i + 1] << 8));
        break;
    case TL_Q4_0: dq_q4_0(b, y, n); break;
    case TL_Q8_0: dq_q8_0(b, y, n); break;
    case TL_Q4_K: dq_q4_k(b, y, n); break;
    case TL_Q6_K: dq_q6_k(b, y, n); break;
    case TL_TQ1_0: dq_tq1(b, y, n); break;
    case TL_TQ2_0: dq_tq2(b, y, n); break;
    case TL_I2_S: dq_i2s(b, y, n, i2s_scale); break;
    case TL_Q1_0: dq_q1_0(b, y, n); break;
    case TL_Q2_0: dq_q2_0(b, y, n); break;
    default: memset(y, 0, (size_t)n * 4); break;
    }
}
