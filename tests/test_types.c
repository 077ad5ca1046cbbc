/* Dequantization of every tensor type against blocks built by hand from the byte layouts in
 * ../shared/specs/quant-formats.md, and f16/bf16 conversion edge cases. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "tensor_types.h"

static void put_f16(uint8_t *p, uint16_t h) {
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

static void test_f16(void) {
    CHECK(tl_f16_to_f32(0x3C00) == 1.0f, "f16 1.0");
    CHECK(tl_f16_to_f32(0xC000) == -2.0f, "f16 -2");
    CHECK(tl_f16_to_f32(0x7BFF) == 65504.0f, "f16 max");
    CHECK(tl_f16_to_f32(0x0001) == ldexpf(1, -24), "f16 smallest subnormal");
    CHECK(tl_f16_to_f32(0x03FF) == ldexpf(1023, -24), "f16 largest subnormal");
    CHECK(isinf(tl_f16_to_f32(0x7C00)) && isnan(tl_f16_to_f32(0x7E00)), "f16 inf / NaN");
    CHECK(tl_f32_to_f16(1.0f) == 0x3C00, "1.0 -> f16");
    CHECK(tl_f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3C00, "tie rounds to even (down)");
    CHECK(tl_f32_to_f16(1.0f + 3 * ldexpf(1, -11)) == 0x3C02, "tie rounds to even (up)");
    CHECK(tl_f32_to_f16(65519.0f) == 0x7BFF && tl_f32_to_f16(65520.0f) == 0x7C00, "overflow boundary");
    CHECK(tl_f32_to_f16(ldexpf(1, -25)) == 0x0000, "2^-25 ties to 0");
    CHECK(tl_f32_to_f16(ldexpf(3, -26)) == 0x0001, "3*2^-26 rounds up to the smallest subnormal");
    CHECK(tl_f32_to_f16(ldexpf(1, -14)) == 0x0400, "smallest normal");
    CHECK(tl_f32_to_f16(-0.0f) == 0x8000, "negative zero");
    CHECK((tl_f32_to_f16(NAN) & 0x7C00) == 0x7C00 && (tl_f32_to_f16(NAN) & 0x3FF), "NaN stays NaN");
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) { /* every finite half survives a round trip */
        if ((h & 0x7C00) == 0x7C00) continue;
        bad += tl_f32_to_f16(tl_f16_to_f32((uint16_t)h)) != h;
    }
    CHECK(bad == 0, "%d halves do not round-trip", bad);
    CHECK(tl_bf16_to_f32(0x3F80) == 1.0f && tl_bf16_to_f32(0xC040) == -3.0f, "bf16");
}

static void test_q8_0_q4_0(void) {
    uint8_t b[34];
    float y[32];
    put_f16(b, 0x3800); /* 0.5 */
    for (int i = 0; i < 32; i++) b[2 + i] = (uint8_t)(int8_t)(i - 16);
    tl_dequant_row(TL_Q8_0, b, y, 32, 0);
    CHECK(y[0] == -8.0f && y[16] == 0.0f && y[31] == 7.5f, "Q8_0: %g %g %g", y[0], y[16], y[31]);
    uint8_t c[18];
    put_f16(c, 0x4000); /* 2.0 */
    for (int j = 0; j < 16; j++) c[2 + j] = (uint8_t)(j | (15 - j) << 4);
    tl_dequant_row(TL_Q4_0, c, y, 32, 0);
    /* element j = ((j) - 8) * 2, element j + 16 = ((15 - j) - 8) * 2 */
    CHECK(y[0] == -16.0f && y[15] == 14.0f && y[16] == 14.0f && y[31] == -16.0f, "Q4_0: %g %g %g %g", y[0], y[15], y[16], y[31]);
}

static void test_q4_k(void) {
    uint8_t b[144] = {0};
    float y[256];
    put_f16(b, 0x3C00);     /* d = 1 */
    put_f16(b + 2, 0x3800); /* dmin = 0.5 */
    for (int j = 0; j < 4; j++) b[4 + j] = 2, b[8 + j] = 3;  /* sub-blocks 0-3: scale 2, min 3 */
    for (int j = 0; j < 4; j++) b[12 + j] = 5 | 1 << 4;      /* sub-blocks 4-7: scale 5, min 1 */
    for (int i = 0; i < 128; i++) b[16 + i] = (uint8_t)((i % 32) & 15) | (uint8_t)((((i % 32) + 1) & 15) << 4);
    tl_dequant_row(TL_Q4_K, b, y, 256, 0);
    /* e=0: chunk 0, low nibble 0, sub-block 0: 2*0 - 0.5*3 = -1.5
     * e=33: chunk 0, high nibble of l=1 -> 2, sub-block 1: 2*2 - 1.5 = 2.5
     * e=200: chunk 3, r=8, low nibble 8, sub-block 6: 5*8 - 0.5*1 = 39.5
     * e=255: chunk 3, r=63, high nibble of l=31 -> 0, sub-block 7: 0 - 0.5 = -0.5 */
    CHECK(y[0] == -1.5f && y[33] == 2.5f && y[200] == 39.5f && y[255] == -0.5f, "Q4_K: %g %g %g %g", y[0], y[33], y[200], y[255]);
}

static void test_q6_k(void) {
    uint8_t b[210] = {0};
    float y[256];
    for (int i = 0; i < 128; i++) b[i] = (uint8_t)(3 | 9 << 4);   /* low nibbles 3, high nibbles 9 */
    for (int i = 0; i < 64; i++) b[128 + i] = 0x1B;              /* 2-bit fields 3,2,1,0 for g = 0..3 */
    for (int i = 0; i < 16; i++) b[192 + i] = (uint8_t)(int8_t)(i - 8);
    put_f16(b + 208, 0x3400); /* 0.25 */
    tl_dequant_row(TL_Q6_K, b, y, 256, 0);
    /* e=0: g=0, nibble 3, high 3<<4 -> 51-32 = 19, scale[0] = -8: 0.25*-8*19 = -38
     * e=64: g=2, nibble 9 (high of ql), high 1<<4 -> 25-32 = -7, scale[4] = -4: 0.25*-4*-7 = 7
     * e=255: h=1, g=3, l=31, nibble 9, high 0 -> 9-32 = -23, scale[8+1+6] = 7: 0.25*7*-23 = -40.25 */
    CHECK(y[0] == -38.0f && y[64] == 7.0f && y[255] == -40.25f, "Q6_K: %g %g %g", y[0], y[64], y[255]);
}

static void test_tq2_0(void) {
    uint8_t b[66] = {0};
    float y[256];
    /* byte 0 holds elements 0 (bits 0-1), 32 (2-3), 64 (4-5), 96 (6-7): codes 0,1,2,1 -> -1,0,+1,0 */
    b[0] = 0 | 1 << 2 | 2 << 4 | 1 << 6;
    b[32] = 2; /* element 128 -> +1 */
    for (int i = 1; i < 32; i++) b[i] = 0x55, b[32 + i] = 0x55; /* all zeros (code 1) */
    b[32] |= 1 << 2 | 1 << 4 | 1 << 6;
    put_f16(b + 64, 0x3800);
    tl_dequant_row(TL_TQ2_0, b, y, 256, 0);
    CHECK(y[0] == -0.5f && y[32] == 0.0f && y[64] == 0.5f && y[96] == 0.0f && y[128] == 0.5f && y[1] == 0.0f,
          "TQ2_0: %g %g %g %g %g", y[0], y[32], y[64], y[96], y[128]);
}

/* TQ1_0 packing from the spec: 5 trits per byte as ceil(v * 256 / 243). */
static uint8_t pack5(const int *t) {
    int v = 0;
    for (int n = 0; n < 5; n++) v = v * 3 + t[n];
    return (uint8_t)((256 * v + 242) / 243);
}

static void test_tq1_0(void) {
    int trit[256];
    for (int e = 0; e < 256; e++) trit[e] = (e * 7 + e / 5) % 3;
    uint8_t b[54] = {0};
    for (int i = 0; i < 32; i++) {
        int t[5];
        for (int n = 0; n < 5; n++) t[n] = trit[n * 32 + i];
        b[i] = pack5(t);
    }
    for (int i = 0; i < 16; i++) {
        int t[5];
        for (int n = 0; n < 5; n++) t[n] = trit[160 + n * 16 + i];
        b[32 + i] = pack5(t);
    }
    for (int i = 0; i < 4; i++) {
        int t[5] = {0};
        for (int n = 0; n < 4; n++) t[n] = trit[240 + n * 4 + i];
        b[48 + i] = pack5(t);
    }
    put_f16(b + 52, 0x4000);
    float y[256];
    tl_dequant_row(TL_TQ1_0, b, y, 256, 0);
    int bad = 0;
    for (int e = 0; e < 256; e++) bad += y[e] != (float)(trit[e] - 1) * 2.0f;
    CHECK(bad == 0, "TQ1_0: %d of 256 elements wrong", bad);
}

static void test_i2_s(void) {
    /* one row of 256: block 0 bits 7:6 of byte j hold element j, bits 5:4 element 32+j, ... */
    uint8_t row[64];
    for (int j = 0; j < 64; j++) row[j] = 0x55; /* all code 1 -> 0 */
    row[0] = (uint8_t)(0 << 6 | 2 << 4 | 1 << 2 | 3); /* elements 0, 32, 64, 96: -1, +1, 0, (3 -> 0) */
    row[32 + 5] = (uint8_t)(2 << 6 | 0x15);          /* element 128 + 5 -> +1 */
    float y[256];
    tl_dequant_row(TL_I2_S, row, y, 256, 0.25f);
    CHECK(y[0] == -0.25f && y[32] == 0.25f && y[64] == 0.0f && y[96] == 0.0f && y[133] == 0.25f && y[1] == 0.0f,
          "I2_S: %g %g %g %g %g", y[0], y[32], y[64], y[96], y[133]);
    CHECK(tl_type_nbytes(TL_I2_S, 2560 * 2560) == 1638432, "I2_S size n/4+32");
    CHECK(tl_type_nbytes(TL_TQ2_0, 256) == 66 && tl_type_nbytes(TL_TQ1_0, 512) == 108 && tl_type_nbytes(TL_Q6_K, 256) == 210,
          "block sizes");
    CHECK(tl_type_nbytes(TL_Q8_0, 33) == 0, "partial block rejected");
    CHECK(tl_type_get(37) == NULL && tl_type_get(1000) == NULL, "unknown types");
}

static void test_f32_bf16_rows(void) {
    const float src[4] = {1.5f, -2.0f, 0.0f, 3.25f};
    float y[4];
    tl_dequant_row(TL_F32, src, y, 4, 0);
    CHECK(!memcmp(src, y, sizeof y), "F32 copy");
    const uint8_t bf[8] = {0x80, 0x3F, 0x00, 0xC0, 0x00, 0x00, 0x50, 0x40};
    tl_dequant_row(TL_BF16, bf, y, 4, 0);
    CHECK(y[0] == 1.0f && y[1] == -2.0f && y[2] == 0.0f && y[3] == 3.25f, "BF16 row");
}

int main(void) {
    test_f16();
    test_q8_0_q4_0();
    test_q4_k();
    test_q6_k();
    test_tq2_0();
    test_tq1_0();
    test_i2_s();
    test_f32_bf16_rows();
    return check_summary();
}
