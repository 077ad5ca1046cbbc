/* Every fast kernel path against the scalar reference on random data at awkward sizes: integer results
 * (I2_S sums, activation codes, Q8_K blocks) and float dots (one canonical summation order) must match bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels.h"
#include "tensor_types.h"

static uint64_t g_rng = 88172645463325252ull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}
static float frand(void) { return (float)(rnd() % 2000001) / 1000000.0f - 1.0f; }

/* activation rows with outliers and all-zero rows */
static void fill_act(float *x, int64_t n, int kind) {
    for (int64_t i = 0; i < n; i++) x[i] = kind == 2 ? 0.0f : frand() * (kind == 1 ? 0.01f : 3.0f);
    if (kind == 1) x[rnd() % n] = 50.0f;
}

static void test_i2s(const tl_kernels *k, const tl_kernels *ref) {
    static const int64_t ns[] = {128, 256, 384, 640, 2560, 6912, 8320}; /* 8320: past wasm128's prepared-row limit */
    static const int Ts[] = {1, 2, 3, 5, 8, 9, 17};
    static const int64_t rows[] = {1, 3, 17};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t b = 0; b < sizeof Ts / sizeof Ts[0]; b++)
            for (size_t c = 0; c < sizeof rows / sizeof rows[0]; c++) {
                const int64_t n = ns[a], R = rows[c];
                const int T = Ts[b];
                uint8_t *w = malloc((size_t)(R * n / 4));
                for (int64_t i = 0; i < R * n / 4; i++) {
                    uint8_t v = 0;
                    for (int s = 0; s < 4; s++) v = (uint8_t)(v << 2 | rnd() % 3);
                    w[i] = v;
                }
                float *x = malloc((size_t)(T * n) * 4);
                int8_t *qa = malloc((size_t)(T * n)), *qb = malloc((size_t)(T * n));
                float sa[32], sb[32];
                int32_t ua[32], ub[32];
                int32_t *acc_a = calloc((size_t)(T * R), 4), *acc_b = calloc((size_t)(T * R), 4);
                for (int t = 0; t < T; t++) {
                    fill_act(x + t * n, n, t % 3);
                    ref->quantize_i8(x + t * n, n, qa + t * n, &sa[t], &ua[t]);
                    k->quantize_i8(x + t * n, n, qb + t * n, &sb[t], &ub[t]);
                }
                int same_q = 1;
                for (int t = 0; t < T; t++) same_q &= sa[t] == sb[t] && ua[t] == ub[t];
                ref->i2s_gemm(w, n, 0, R, qa, T, acc_a, R);
                /* split the rows like the thread pool does: [0, R/2) and [R/2, R) */
                k->i2s_gemm(w, n, 0, R / 2, qb, T, acc_b, R);
                k->i2s_gemm(w, n, R / 2, R, qb, T, acc_b, R);
                CHECK(same_q, "%s quantize_i8 n=%lld: scale or sum differs", k->name, (long long)n);
                CHECK(!memcmp(acc_a, acc_b, (size_t)(T * R) * 4), "%s i2s_gemm n=%lld T=%d rows=%lld differs", k->name,
                      (long long)n, T, (long long)R);
                free(w), free(x), free(qa), free(qb), free(acc_a), free(acc_b);
            }
}

static void test_q8k_tq(const tl_kernels *k, const tl_kernels *ref) {
    for (int64_t n = 256; n <= 2048; n += 768) {
        float *x = malloc((size_t)n * 4);
        fill_act(x, n, 0);
        x[5] = -7.0f; /* a negative maximum: d < 0 must be kept */
        tl_block_q8k *a = malloc((size_t)(n / 256) * sizeof *a), *b = malloc((size_t)(n / 256) * sizeof *b);
        ref->quantize_q8k(x, n, a);
        k->quantize_q8k(x, n, b);
        CHECK(!memcmp(a, b, (size_t)(n / 256) * sizeof *a), "%s quantize_q8k n=%lld", k->name, (long long)n);
        const size_t nb = (size_t)(n / 256);
        uint8_t *tq2 = malloc(nb * 66 + 66), *tq1 = malloc(nb * 54 + 54);
        for (size_t bl = 0; bl < nb; bl++) {
            uint8_t *p2 = tq2 + 66 * bl, *p1 = tq1 + 54 * bl;
            for (int i = 0; i < 64; i++) { /* codes 0..2 only */
                uint8_t v = 0;
                for (int s = 0; s < 4; s++) v = (uint8_t)(v << 2 | rnd() % 3);
                p2[i] = v;
            }
            p2[64] = 0x00, p2[65] = 0x38; /* d = 0.5 */
            for (int i = 0; i < 52; i++) p1[i] = (uint8_t)rnd();
            p1[52] = 0x00, p1[53] = 0x3C;
        }
        const float r2 = ref->dot_tq2(tq2, a, n), f2 = k->dot_tq2(tq2, b, n);
        const float r1 = ref->dot_tq1(tq1, a, n), f1 = k->dot_tq1(tq1, b, n);
        CHECK(r2 == f2, "%s dot_tq2: %.9g vs %.9g", k->name, f2, r2);
        CHECK(r1 == f1, "%s dot_tq1: %.9g vs %.9g", k->name, f1, r1);
        free(x), free(a), free(b), free(tq2), free(tq1);
    }
}

static void test_float(const tl_kernels *k, const tl_kernels *ref) {
    static const int64_t ns[] = {1, 7, 31, 64, 100, 2560, 4099};
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
        const int64_t n = ns[c];
        float *x = malloc((size_t)n * 4), *wf = malloc((size_t)n * 4);
        uint16_t *wh = malloc((size_t)n * 2);
        double mag = 0;
        for (int64_t i = 0; i < n; i++) {
            x[i] = frand();
            wf[i] = frand();
            wh[i] = tl_f32_to_f16(frand());
            mag += fabs((double)x[i]);
        }
        const float a16 = ref->dot_f16(wh, x, n), b16 = k->dot_f16(wh, x, n);
        const float a32 = ref->dot_f32(wf, x, n), b32 = k->dot_f32(wf, x, n);
        /* every path uses the canonical lane order (lanes.h): the same bits, not just close */
        CHECK(a16 == b16, "%s dot_f16 n=%lld: %.9g vs %.9g", k->name, (long long)n, b16, a16);
        CHECK(a32 == b32, "%s dot_f32 n=%lld: %.9g vs %.9g", k->name, (long long)n, b32, a32);
        (void)mag;
        if (n % 32 == 0) {
            uint8_t *qw = malloc((size_t)(n / 32 * 34)), *qx = malloc((size_t)(n / 32 * 34));
            tl_quantize_q8_0(wf, n, qw);
            tl_quantize_q8_0(x, n, qx);
            const float a8 = ref->dot_q8_0(qw, qx, n), b8 = k->dot_q8_0(qw, qx, n);
            CHECK(a8 == b8, "%s dot_q8_0 n=%lld: %.9g vs %.9g", k->name, (long long)n, b8, a8);
            free(qw), free(qx);
        }
        free(x), free(wf), free(wh);
    }
    /* attention P·V over a cache with a stride */
    for (int64_t npos = 1; npos <= 300; npos += 37) {
        const int64_t hd = 40, stride = 96;
        uint16_t *v = malloc((size_t)(npos * stride) * 2);
        float *p = malloc((size_t)npos * 4), oa[40], ob[40];
        for (int64_t i = 0; i < npos * stride; i++) v[i] = tl_f32_to_f16(frand());
        for (int64_t i = 0; i < npos; i++) p[i] = (float)(rnd() % 1000) / 1000.0f / (float)npos;
        ref->attn_pv(oa, p, v + 8, npos, stride, hd);
        k->attn_pv(ob, p, v + 8, npos, stride, hd);
        int bad = 0;
        for (int d = 0; d < hd; d++) bad += oa[d] != ob[d];
        CHECK(bad == 0, "%s attn_pv npos=%lld: %d outputs differ", k->name, (long long)npos, bad);
        free(v), free(p);
    }
}

/* f16 dots over rows holding subnormals, the largest finite half, infinities and NaNs: a path that converts
 * finite halves quickly must still give the reference's bits (NaN compared as bits). */
static void test_f16_specials(const tl_kernels *k, const tl_kernels *ref) {
    static const uint16_t special[] = {0x0001, 0x83FF, 0x7BFF, 0xFBFF, 0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00};
    const int64_t n = 2560;
    uint16_t *w = malloc((size_t)n * 2);
    float *x = malloc((size_t)n * 4);
    for (size_t s = 0; s < sizeof special / sizeof special[0]; s++) {
        for (int64_t i = 0; i < n; i++) {
            w[i] = tl_f32_to_f16(frand() * 1e-5f); /* many subnormal halves */
            x[i] = frand();
        }
        w[rnd() % n] = special[s];
        w[rnd() % 32] = special[s];
        const float a = ref->dot_f16(w, x, n), b = k->dot_f16(w, x, n);
        CHECK(!memcmp(&a, &b, 4), "%s dot_f16 with half 0x%04x: %.9g vs %.9g", k->name, special[s], b, a);
    }
    free(w), free(x);
}

/* Bonsai: Q1_0 / Q2_0 rows (random bits and codes, code 3 included) · x86-rule Q8_0 activations, with outlier and
 * all-zero activation rows; an odd number of Q2_0 blocks too. Bit-identical to scalar. */
static void test_bonsai(const tl_kernels *k, const tl_kernels *ref) {
    static const int64_t ns[] = {64, 128, 192, 256, 640, 2048, 6144};
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++)
        for (int kind = 0; kind < 3; kind++) {
            const int64_t n = ns[c];
            float *x = malloc((size_t)n * 4);
            uint8_t *qa = malloc((size_t)(n / 32 * 34)), *w1 = malloc((size_t)(n / 64 * 18 + 18)),
                    *w2 = malloc((size_t)(n / 64 * 18));
            fill_act(x, n, kind);
            tl_quantize_q8_0_x86(x, n, qa);
            for (int64_t i = 0; i < n / 64 * 18; i++) w1[i] = (uint8_t)rnd(), w2[i] = (uint8_t)rnd();
            for (int64_t b = 0; b < n / 64; b++) { /* finite fp16 scales, of either sign */
                const uint16_t d = tl_f32_to_f16(frand() * 0.1f);
                w1[18 * b] = w2[18 * b] = (uint8_t)d;
                w1[18 * b + 1] = w2[18 * b + 1] = (uint8_t)(d >> 8);
            }
            const float a2 = ref->dot_q2_0(w2, qa, n), b2 = k->dot_q2_0(w2, qa, n);
            CHECK(a2 == b2, "%s dot_q2_0 n=%lld kind %d: %.9g vs %.9g", k->name, (long long)n, kind, b2, a2);
            if (kind == 2) CHECK(a2 == 0.0f, "dot_q2_0 of an all-zero row is %g", a2);
            if (n % 128 == 0) {
                const float a1 = ref->dot_q1_0(w1, qa, n), b1 = k->dot_q1_0(w1, qa, n);
                CHECK(a1 == b1, "%s dot_q1_0 n=%lld kind %d: %.9g vs %.9g", k->name, (long long)n, kind, b1, a1);
            }
            free(x), free(qa), free(w1), free(w2);
        }
}

/* The scalar Q1_0/Q2_0 dots against an independent double-precision sum over the dequantized weights and
 * activations (they must agree to float rounding), and the x86 Q8_0 rule on hand-picked values. */
static void test_bonsai_reference(void) {
    const tl_kernels *ref = tl_kernels_scalar();
    enum { N = 256 };
    float x[N], wd[N], ad[N];
    uint8_t qa[N / 32 * 34], w1[N / 128 * 18], w2[N / 64 * 18];
    for (int i = 0; i < N; i++) x[i] = frand();
    x[3] = 2.5f; /* 2.5·127/2.5 = 127 exactly; ties round to even below */
    tl_quantize_q8_0_x86(x, N, qa);
    CHECK((int8_t)qa[2 + 3] == 127, "q8_0_x86: the block maximum quantizes to %d", (int8_t)qa[5]);
    for (size_t i = 0; i < sizeof w1; i++) w1[i] = (uint8_t)rnd();
    for (size_t i = 0; i < sizeof w2; i++) w2[i] = (uint8_t)rnd();
    w1[0] = 0x00, w1[1] = 0x3C, w1[18] = 0x00, w1[19] = 0xB8; /* d = 1, -0.5 */
    for (int b = 0; b < N / 64; b++) w2[18 * b] = 0x00, w2[18 * b + 1] = (uint8_t)(0x30 + b); /* small positive d */
    tl_dequant_row(TL_Q8_0, qa, ad, N, 0);
    for (int t = 0; t < 2; t++) {
        tl_dequant_row(t ? TL_Q2_0 : TL_Q1_0, t ? w2 : w1, wd, N, 0);
        double want = 0;
        for (int i = 0; i < N; i++) want += (double)wd[i] * (double)ad[i];
        const float got = t ? ref->dot_q2_0(w2, qa, N) : ref->dot_q1_0(w1, qa, N);
        CHECK(fabs((double)got - want) <= 1e-5 * (1 + fabs(want)), "scalar dot_%s = %.9g, exact %.9g", t ? "q2_0" : "q1_0",
              got, want);
    }
    /* Q1_0 element 9 of block 0 is bit 1 of byte 3; Q2_0 element 5 is bits 2..3 of byte 3 */
    w1[2 + 1] = 0x02;
    w2[2 + 1] = 0x0C;
    tl_dequant_row(TL_Q1_0, w1, wd, 128, 0);
    CHECK(wd[9] == 1.0f && wd[8] == -1.0f, "Q1_0 bit order: %g %g", wd[9], wd[8]);
    tl_dequant_row(TL_Q2_0, w2, wd, 64, 0);
    CHECK(wd[5] == 2.0f * tl_f16_to_f32(0x3000) && wd[4] == -tl_f16_to_f32(0x3000), "Q2_0 code order: %g %g", wd[5], wd[4]);
}

int main(void) {
    const tl_kernels *all[8];
    const int n = tl_kernels_available(all, 8);
    const tl_kernels *ref = tl_kernels_scalar();
    printf("kernel paths on this machine:");
    for (int i = 0; i < n; i++) printf(" %s", all[i]->name);
    printf("\n");
#if defined(__aarch64__)
    const char *tl_neon_variant(void);
    printf("neon I2_S variant on this core: %s\n", tl_neon_variant());
#endif
    for (int i = 0; i < n; i++) {
        test_i2s(all[i], ref);
        test_q8k_tq(all[i], ref);
        test_float(all[i], ref);
        test_f16_specials(all[i], ref);
        test_bonsai(all[i], ref);
    }
    test_bonsai_reference();
    return check_summary();
}
