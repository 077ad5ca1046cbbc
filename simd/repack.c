/* Load-time repacking into the 16-row group layouts of repack.h. Plain C, little-endian (as every target is). */
#include "repack.h"

#include <string.h>

#include "../runtime/tensor_types.h"

/* 16 codes, found in bits sh..sh+1 of 16 consecutive bytes, to the 4 bytes of one row in a chunk: byte j gets the
 * codes of inputs j, 4 + j, 8 + j, 12 + j in bits 0-1, 2-3, 4-5, 6-7. Works on 32-bit words (4 bytes at once);
 * a byte's bits never reach a neighbour because every code is masked to 2 bits before it is shifted. */
static inline uint32_t pack_chunk(const uint8_t *bytes, int sh) {
    uint32_t w[4];
    memcpy(w, bytes, 16);
    uint32_t out = 0;
    for (int s = 0; s < 4; s++) out |= ((w[s] >> sh) & 0x03030303u) << (2 * s);
    return out;
}

static inline void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

void tl_repack_i2s(const uint8_t *src, int64_t ne0, int64_t r0, int64_t r1, uint8_t *dst) {
    const int64_t row_bytes = ne0 / 4;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = src + r * row_bytes;
        uint8_t *g = dst + (r / 16) * ne0 * 4 + 4 * (r % 16);
        for (int64_t c = 0; c < ne0 / 16; c++) {
            const int64_t k0 = 16 * c, b = k0 / 128, m0 = k0 % 128; /* 16 inputs inside one 32-input slice */
            put_u32(g + 64 * c, pack_chunk(row + 32 * b + m0 % 32, 6 - 2 * (int)(m0 / 32)));
        }
    }
}

void tl_repack_tq2(const uint8_t *src, int64_t ne0, int64_t r0, int64_t r1, uint8_t *dst, uint16_t *dw) {
    const int64_t nb = ne0 / 256;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = src + r * nb * 66;
        uint8_t *g = dst + (r / 16) * ne0 * 4 + 4 * (r % 16);
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + 66 * b;
            for (int c = 0; c < 16; c++) { /* element e = 16c: byte qs[32h + r%32], shift 2·(r/32), r = e % 128 */
                const int e0 = 16 * c, h = e0 / 128, m0 = e0 % 128;
                put_u32(g + 64 * (16 * b + c), pack_chunk(blk + 32 * h + m0 % 32, 2 * (m0 / 32)));
            }
            dw[((r / 16) * nb + b) * 16 + r % 16] = (uint16_t)(blk[64] | blk[65] << 8);
        }
    }
}

void tl_repack_tq1(const uint8_t *src, int64_t ne0, int64_t r0, int64_t r1, uint8_t *dst, uint16_t *dw) {
    const int64_t nb = ne0 / 256;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = src + r * nb * 54;
        uint8_t *g = dst + (r / 16) * ne0 * 4 + 4 * (r % 16);
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + 54 * b;
            uint8_t codes[256]; /* the element order of quant-formats.md §3 */
            for (int e = 0; e < 160; e++) codes[e] = (uint8_t)tl_tq1_trit(blk[e % 32], e / 32);
            for (int e = 160; e < 240; e++) codes[e] = (uint8_t)tl_tq1_trit(blk[32 + (e - 160) % 16], (e - 160) / 16);
            for (int e = 240; e < 256; e++) codes[e] = (uint8_t)tl_tq1_trit(blk[48 + (e - 240) % 4], (e - 240) / 4);
            for (int c = 0; c < 16; c++) put_u32(g + 64 * (16 * b + c), pack_chunk(codes + 16 * c, 0));
            dw[((r / 16) * nb + b) * 16 + r % 16] = (uint16_t)(blk[52] | blk[53] << 8);
        }
    }
}

/* Round to nearest, ties to even, for |v| < 2^22 (as the scalar kernels do: no libm, same on every target). */
static inline int32_t rne(float v) {
    const float t = v + 12582912.0f;
    uint32_t bits;
    memcpy(&bits, &t, 4);
    return (int32_t)(bits & 0x7FFFFF) - 0x400000;
}

/* tl_f16_to_f32 inlined for finite halves: the magnitude shifted into place times 2^112 is exact for normals and
 * subnormals alike. Two calls per weight of a 128k x 2560 head made this repack most of a wasm load (node --cpu-prof). */
static inline float f16_finite_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)(h & 0x7FFF) << 13;
    float m;
    memcpy(&m, &bits, 4);
    m *= 5.192296858534828e+33f; /* 2^112 */
    memcpy(&bits, &m, 4);
    bits |= (uint32_t)(h & 0x8000) << 16; /* or-ing the sign into the magnitude is negation, branch-free */
    memcpy(&m, &bits, 4);
    return m;
}

static inline float f16_to_f32(uint16_t h) {
    return (h & 0x7C00) == 0x7C00 ? tl_f16_to_f32(h) /* inf / NaN */ : f16_finite_to_f32(h);
}

void tl_repack_i8_from_f16(const uint16_t *src, int64_t ne0, int64_t r0, int64_t r1, uint8_t *dst, float *drow) {
    for (int64_t r = r0; r < r1; r++) {
        const uint16_t *row = src + r * ne0;
        float amax = 0;
        for (int64_t k = 0; k < ne0; k++) {
            const float a = f16_to_f32(row[k]);
            const float m = a < 0 ? -a : a;
            if (m > amax) amax = m;
        }
        const float id = amax > 0 ? 127.0f / amax : 0.0f;
        drow[r] = amax / 127.0f;
        uint8_t *g = dst + (r / 16) * ne0 * 16 + 4 * (r % 16);
        for (int64_t k = 0; k < ne0; k++) {
            int32_t q = rne(f16_to_f32(row[k]) * id);
            q = q < -127 ? -127 : q > 127 ? 127 : q;
            g[(k / 4) * 64 + k % 4] = (uint8_t)(q + 128);
        }
    }
}

/* Smallest integer >= v for 0 <= v < 2^22 (no libm); 255 for anything else (NaN from an inf row: no UB). */
static inline int32_t ceil_small(float v) {
    if (!(v >= 0 && v < 4194304.0f)) return 255;
    const int32_t i = (int32_t)v;
    return (float)i < v ? i + 1 : i;
}

/* Squared errors of 32 values quantized to -7..7 steps of st[c] (1/st[c] = ist[c]) for the 4 candidates at once:
 * each candidate's sum runs over k in order as before, but the four chains are independent (4x fewer stalls on the
 * additions at load). Float-only so that it vectorizes (x + 1.5·2^23 − 1.5·2^23 rounds to nearest even for
 * |x| < 2^22). */
static inline void i4_block_errs(const float *v, const float st[4], const float ist[4], float e[4]) {
    e[0] = e[1] = e[2] = e[3] = 0;
    for (int k = 0; k < 32; k++)
        for (int c = 0; c < 4; c++) {
            float q = (v[k] * ist[c] + 12582912.0f) - 12582912.0f;
            q = q < -7.0f ? -7.0f : q > 7.0f ? 7.0f : q;
            const float r = v[k] - q * st[c];
            e[c] += r * r;
        }
}

/* The sub-scale of one block: ceil(255·m_b/M), or one of three up to 3/16 smaller (clipping the block's largest
 * values a little to step the rest more finely) where that gives less squared error. */
static int32_t i4_sub_scale(const float *v, float bmax, float amax, float d) {
    int32_t s = amax > 0 ? ceil_small((bmax / amax) * 255.0f) : 1;
    s = s < 1 ? 1 : s > 255 ? 255 : s;
    if (!(amax > 0)) return s;
    int32_t sc[4];
    float st[4], ist[4], e[4];
    for (int c = 0; c < 4; c++) {
        sc[c] = s - (s * c) / 16 < 1 ? 1 : s - (s * c) / 16;
        st[c] = d * (float)sc[c], ist[c] = 1.0f / st[c];
    }
    i4_block_errs(v, st, ist, e);
    int32_t best = sc[0];
    float best_err = e[0];
    for (int c = 1; c < 4; c++)
        if (e[c] < best_err) best_err = e[c], best = sc[c];
    return best;
}

/* 32 halves to floats with one test for inf / NaN per block instead of a branch per half (so that it vectorizes). */
static void f16_block_to_f32(const uint16_t *h, float *v) {
    int special = 0;
    for (int k = 0; k < 32; k++) special |= (h[k] & 0x7C00) == 0x7C00;
    for (int k = 0; k < 32; k++) v[k] = special ? f16_to_f32(h[k]) : f16_finite_to_f32(h[k]);
}

static void i4_row(const uint16_t *row, int64_t ne0, int64_t r, uint8_t *dst, uint8_t *sub, float *drow) {
    const int64_t nb = ne0 / 32;
    /* the largest magnitude per block and of the row, in one pass: finite halves order like their bits without the
     * sign; NaNs are skipped (an inf is kept, as a float max would) */
    uint16_t bmax[TL_I4_MAX_NE0 / 32], rmax = 0;
    for (int64_t b = 0; b < nb; b++) {
        uint16_t m = 0;
        for (int k = 0; k < 32; k++) {
            const uint16_t a = (uint16_t)(row[32 * b + k] & 0x7FFF);
            m = a <= 0x7C00 && a > m ? a : m;
        }
        bmax[b] = m;
        rmax = m > rmax ? m : rmax;
    }
    const float amax = f16_to_f32(rmax), d = amax / 1785.0f;
    drow[r] = d;
    uint8_t *g = dst + (r / 16) * ne0 * 8 + 4 * (r % 16);
    for (int64_t b = 0; b < nb; b++) {
        float v[32];
        f16_block_to_f32(row + 32 * b, v);
        const int32_t s = i4_sub_scale(v, f16_to_f32(bmax[b]), amax, d);
        sub[((r / 16) * nb + b) * 16 + r % 16] = (uint8_t)s;
        const float step = d * (float)s, id = amax > 0 ? 1.0f / step : 0.0f;
        for (int k = 0; k < 32; k += 8)
            for (int j = 0; j < 4; j++) {
                int32_t lo = rne(v[k + j] * id), hi = rne(v[k + 4 + j] * id);
                lo = lo < -7 ? -7 : lo > 7 ? 7 : lo;
                hi = hi < -7 ? -7 : hi > 7 ? 7 : hi;
                g[((32 * b + k) / 8) * 64 + j] = (uint8_t)((lo + 8) | (hi + 8) << 4);
            }
    }
}

void tl_repack_i4_from_f16(const uint16_t *src, int64_t ne0, int64_t r0, int64_t r1, uint8_t *dst, uint8_t *sub, float *drow) {
    for (int64_t r = r0; r < r1; r++) i4_row(src + r * ne0, ne0, r, dst, sub, drow);
}
