/* Every fast kernel path against the scalar reference on random data at awkward sizes: integer results
 * (I2_S sums, activation codes, Q8_K blocks) and float dots (one canonical summation order) must match bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "json.h"
#include "kernels.h"
#include "mathx.h"
#include "ternlm.h"
#include "repack.h"
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

/* the softmax's exponential rows: differences from the row max over all of [-104, 0], both ends included, at row
 * lengths around every vector width; each value must equal the path-free tl_expf's bits */
static void test_exp_row(const tl_kernels *k, const tl_kernels *ref) {
    for (uint32_t n = 1; n <= 67; n += 3) {
        float a[67], b[67], want[67];
        const float max = (float)(rnd() % 161) / 8.0f - 10.0f; /* multiples of 1/1024: every difference is exact */
        for (uint32_t p = 0; p < n; p++) a[p] = max - (float)(rnd() % 106497) / 1024.0f;
        a[0] = max;
        if (n > 1) a[n - 1] = max - 104.0f;
        memcpy(b, a, sizeof a);
        for (uint32_t p = 0; p < n; p++) want[p] = tl_expf(a[p] - max);
        ref->exp_minus_max(a, n, max);
        k->exp_minus_max(b, n, max);
        int bad = 0;
        for (uint32_t p = 0; p < n; p++) bad += memcmp(&a[p], &want[p], 4) != 0 || memcmp(&b[p], &want[p], 4) != 0;
        CHECK(bad == 0, "%s exp_minus_max n=%u: %d values differ from tl_expf", k->name, n, bad);
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
    test_exp_row(k, ref);
}

/* Attention over a K/V cache with a stride, G heads per KV head: every path's attn_kq and attn_pv_g (or, where it has
 * none, dot_f16 and attn_pv per row and head, as the forward pass does) against the scalar table's, bit for bit; an
 * infinity in K now and then (NaN and inf scores must match too). */
static void test_attention(const tl_kernels *k, const tl_kernels *ref) {
    static const int64_t hds[] = {32, 64, 128, 256, 40};
    static const int Gs[] = {1, 2, 3, 4, 5, 8};
    static const int64_t nps[] = {1, 2, 7, 8, 9, 17, 130};
    for (size_t a = 0; a < sizeof hds / sizeof hds[0]; a++)
        for (size_t b = 0; b < sizeof Gs / sizeof Gs[0]; b++)
            for (size_t c = 0; c < sizeof nps / sizeof nps[0]; c++) {
                const int64_t hd = hds[a], np = nps[c], stride = hd * 3 + 16, ss = np + 5, n_s = Gs[b] * ss;
                const int G = Gs[b];
                uint16_t *kc = malloc((size_t)(np * stride) * 2);
                float *q = malloc((size_t)(G * hd) * 4), *sa = calloc((size_t)n_s, 4), *sb = calloc((size_t)n_s, 4);
                float *oa = malloc((size_t)(G * hd) * 4), *ob = malloc((size_t)(G * hd) * 4);
                for (int64_t i = 0; i < np * stride; i++) kc[i] = tl_f32_to_f16(frand() * 4.0f);
                if (c == 3) kc[rnd() % (np * stride)] = 0x7C00;
                for (int64_t i = 0; i < G * hd; i++) q[i] = tl_round_f16(frand() * 2.0f);
                ref->attn_kq(sa, ss, kc, np, stride, q, G, hd, 0.088388f);
                if (k->attn_kq) k->attn_kq(sb, ss, kc, np, stride, q, G, hd, 0.088388f);
                else
                    for (int g = 0; g < G; g++)
                        for (int64_t p = 0; p < np; p++) sb[g * ss + p] = k->dot_f16(kc + p * stride, q + g * hd, hd) * 0.088388f;
                CHECK(!memcmp(sa, sb, (size_t)n_s * 4), "%s attn_kq hd=%lld G=%d n_pos=%lld differs", k->name, (long long)hd, G,
                      (long long)np);
                for (int64_t i = 0; i < np * stride; i++) kc[i] = tl_f32_to_f16(frand() * 4.0f); /* now the V cache */
                for (int64_t i = 0; i < n_s; i++) sa[i] = (float)(rnd() % 1000) / 1000.0f / (float)np;
                ref->attn_pv_g(oa, sa, ss, G, kc, np, stride, hd);
                if (k->attn_pv_g) k->attn_pv_g(ob, sa, ss, G, kc, np, stride, hd);
                else
                    for (int g = 0; g < G; g++) k->attn_pv(ob + g * hd, sa + g * ss, kc, np, stride, hd);
                CHECK(!memcmp(oa, ob, (size_t)(G * hd) * 4), "%s attn_pv_g hd=%lld G=%d n_pos=%lld differs", k->name,
                      (long long)hd, G, (long long)np);
                free(kc), free(q), free(sa), free(sb), free(oa), free(ob);
            }
}

/* The softmax range check on rows with NaNs, infinities and signed zeros at every length up to 40. */
static void test_row_range(const tl_kernels *k, const tl_kernels *ref) {
    if (!k->row_range) return;
    static const float special[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e30f};
    float v[40];
    for (int n = 0; n <= 40; n++)
        for (int c = 0; c < 8; c++) {
            for (int i = 0; i < n; i++) v[i] = frand() * 20.0f;
            if (n && c < 6) v[rnd() % n] = special[c];
            if (n && c == 6) v[rnd() % n] = 0.0f, v[rnd() % n] = -0.0f;
            float a_hi, a_lo, b_hi, b_lo;
            const int a = ref->row_range(v, n, &a_hi, &a_lo), b = k->row_range(v, n, &b_hi, &b_lo);
            CHECK(a == b && a_hi == b_hi && a_lo == b_lo, "%s row_range n=%d case %d: %d %g %g vs %d %g %g", k->name, n, c, b, b_hi,
                  b_lo, a, a_hi, a_lo);
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

/* ---- 16-row group GEMMs (repack.h): every path (and the scalar generic one) against the file-layout reference ---- */

typedef void (*gemm_fn)(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t y_stride);

/* Runs a GEMM the way the thread pool splits rows (two ranges on a 16-row boundary), into y with a wider stride. */
static void run_split(gemm_fn f, const tl_r16 *w, const tl_acts *a, float *y, int64_t ys) {
    const int64_t half = w->ne1 / 32 * 16;
    f(w, 0, half, a, y, ys);
    f(w, half, w->ne1, a, y, ys);
}

static void random_codes(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint8_t v = 0;
        for (int s = 0; s < 4; s++) v = (uint8_t)(v << 2 | rnd() % 3);
        p[i] = v;
    }
}

static void quantize_tokens(const tl_kernels *k, int T, int64_t n, float *x, int8_t *q, float *sc, int32_t *su,
                            tl_block_q8k *q8k) {
    for (int t = 0; t < T; t++) {
        fill_act(x + t * n, n, t % 3);
        k->quantize_i8(x + t * n, n, q + t * n, &sc[t], &su[t]);
        if (q8k) k->quantize_q8k(x + t * n, n, q8k + t * (n / 256));
    }
}

static int count_diff(const float *a, const float *b, int64_t n) {
    int d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], 4) != 0;
    return d;
}

static void test_r16_i2s(const tl_kernels *k) {
    static const int64_t ns[] = {128, 384, 2560, 6912}; /* 6912: more than one activation panel in the AVX2 path */
    static const int Ts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 17}; /* every small-step tile (T <= 8) and remainder */
    static const int64_t rows[] = {16, 48, 64};
    const tl_kernels *ref = tl_kernels_scalar();
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t b = 0; b < sizeof Ts / sizeof Ts[0]; b++)
            for (size_t c = 0; c < 3; c++) {
                const int64_t n = ns[a], R = rows[c], ys = R + 5;
                const int T = Ts[b];
                uint8_t *w = malloc((size_t)(R * n / 4)), *rp = malloc((size_t)(R * n / 4));
                random_codes(w, (size_t)(R * n / 4));
                tl_repack_i2s(w, n, 0, R, rp);
                float *x = malloc((size_t)(T * n) * 4), sc[17];
                int8_t *q = malloc((size_t)(T * n));
                int32_t su[17], *acc = malloc((size_t)(T * R) * 4);
                quantize_tokens(ref, T, n, x, q, sc, su, NULL);
                float *want = calloc((size_t)(T * ys), 4), *got = calloc((size_t)(T * ys), 4);
                ref->i2s_gemm(w, n, 0, R, q, T, acc, R);
                const float wscale = 0.037f;
                for (int t = 0; t < T; t++)
                    for (int64_t r = 0; r < R; r++)
                        want[t * ys + r] = (((float)acc[t * R + r] - (float)su[t]) / sc[t]) * wscale;
                const tl_r16 wr = {rp, NULL, NULL, wscale, n, R, NULL};
                const tl_acts acts = {T, n, q, sc, su, NULL};
                run_split(k->gemm_i2s_r16, &wr, &acts, got, ys);
                CHECK(count_diff(want, got, T * ys) == 0, "%s gemm_i2s_r16 n=%lld T=%d rows=%lld: %d outputs differ",
                      k->name, (long long)n, T, (long long)R, count_diff(want, got, T * ys));
                free(w), free(rp), free(x), free(q), free(acc), free(want), free(got);
            }
}

static void test_r16_tq(const tl_kernels *k) {
    static const int Ts[] = {1, 2, 5, 8, 9, 17};
    const tl_kernels *ref = tl_kernels_scalar();
    for (int64_t n = 256; n <= 2560; n += 1024)
        for (size_t b = 0; b < sizeof Ts / sizeof Ts[0]; b++)
            for (int64_t R = 16; R <= 48; R += 32) {
                const int T = Ts[b];
                const int64_t nb = n / 256, ys = R + 3;
                uint8_t *tq2 = malloc((size_t)(R * nb * 66)), *tq1 = malloc((size_t)(R * nb * 54));
                for (int64_t i = 0; i < R * nb; i++) {
                    uint8_t *p2 = tq2 + 66 * i, *p1 = tq1 + 54 * i;
                    random_codes(p2, 64);
                    const uint16_t d = tl_f32_to_f16(frand() * 0.1f);
                    p2[64] = (uint8_t)d, p2[65] = (uint8_t)(d >> 8);
                    for (int j = 0; j < 52; j++) p1[j] = (uint8_t)rnd();
                    p1[52] = (uint8_t)d, p1[53] = (uint8_t)(d >> 8);
                }
                float *x = malloc((size_t)(T * n) * 4), sc[17];
                int8_t *q = malloc((size_t)(T * n));
                int32_t su[17];
                tl_block_q8k *q8k = malloc((size_t)(T * nb) * sizeof *q8k);
                quantize_tokens(ref, T, n, x, q, sc, su, q8k);
                const tl_acts acts = {T, n, q, sc, su, q8k};
                for (int kind = 0; kind < 2; kind++) {
                    uint8_t *rp = malloc((size_t)(R * n / 4));
                    uint16_t *dw = malloc((size_t)(R * nb) * 2);
                    if (kind == 0) tl_repack_tq2(tq2, n, 0, R, rp, dw);
                    else tl_repack_tq1(tq1, n, 0, R, rp, dw);
                    float *want = calloc((size_t)(T * ys), 4), *got = calloc((size_t)(T * ys), 4);
                    for (int t = 0; t < T; t++)
                        for (int64_t r = 0; r < R; r++)
                            want[t * ys + r] = kind == 0 ? ref->dot_tq2(tq2 + r * nb * 66, q8k + t * nb, n)
                                                         : ref->dot_tq1(tq1 + r * nb * 54, q8k + t * nb, n);
                    const tl_r16 wr = {rp, dw, NULL, 1.0f, n, R, NULL};
                    run_split(k->gemm_tq_r16, &wr, &acts, got, ys);
                    CHECK(count_diff(want, got, T * ys) == 0, "%s gemm_tq_r16 (%s) n=%lld T=%d rows=%lld: %d differ",
                          k->name, kind ? "TQ1_0" : "TQ2_0", (long long)n, T, (long long)R, count_diff(want, got, T * ys));
                    free(rp), free(dw), free(want), free(got);
                }
                free(tq2), free(tq1), free(x), free(q), free(q8k);
            }
}

static void test_r16_i8(const tl_kernels *k) {
    static const int Ts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 17}; /* every small-step tile and remainder */
    const tl_kernels *ref = tl_kernels_scalar();
    for (int64_t n = 4; n <= 2564; n += 1280)
        for (size_t b = 0; b < sizeof Ts / sizeof Ts[0]; b++)
            for (int64_t R = 16; R <= 80; R += 64) {
                const int T = Ts[b];
                const int64_t ys = R + 1;
                uint16_t *wh = malloc((size_t)(R * n) * 2);
                for (int64_t i = 0; i < R * n; i++) wh[i] = tl_f32_to_f16((i / n) == 3 ? 0.0f : frand());
                uint8_t *rp = malloc((size_t)(R * n));
                float *drow = malloc((size_t)R * 4);
                tl_repack_i8_from_f16(wh, n, 0, R, rp, drow);
                int bad_q = 0; /* the int8 value of every weight is within half a step of the f16 value */
                for (int64_t r = 0; r < R; r++)
                    for (int64_t i = 0; i < n; i++)
                        bad_q += fabsf((float)tl_r16_i8(rp, n, r, i) * drow[r] - tl_f16_to_f32(wh[r * n + i])) >
                                 drow[r] * 0.5001f + 1e-7f;
                CHECK(bad_q == 0, "repack_i8 n=%lld: %d weights off by more than half a step", (long long)n, bad_q);
                float *x = malloc((size_t)(T * n) * 4), sc[17];
                int8_t *q = malloc((size_t)(T * n));
                int32_t su[17];
                quantize_tokens(ref, T, n, x, q, sc, su, NULL);
                const tl_acts acts = {T, n, q, sc, su, NULL};
                const tl_r16 wr = {rp, NULL, drow, 1.0f, n, R, NULL};
                float *want = calloc((size_t)(T * ys), 4), *got = calloc((size_t)(T * ys), 4);
                for (int t = 0; t < T; t++) /* the definition, from the decoded layout */
                    for (int64_t r = 0; r < R; r++) {
                        int32_t acc = 0;
                        for (int64_t i = 0; i < n; i++) acc += tl_r16_i8(rp, n, r, i) * q[t * n + i];
                        want[t * ys + r] = ((float)acc / sc[t]) * drow[r];
                    }
                run_split(k->gemm_i8_r16, &wr, &acts, got, ys);
                CHECK(count_diff(want, got, T * ys) == 0, "%s gemm_i8_r16 n=%lld T=%d rows=%lld: %d differ", k->name,
                      (long long)n, T, (long long)R, count_diff(want, got, T * ys));
                free(wh), free(rp), free(drow), free(x), free(q), free(want), free(got);
            }
}

/* Every one of the 65536 halves through the int8 repack (its inlined f16 conversion, issue 12) against the same
 * quantization written with tl_f16_to_f32: the same int8 values and row scales, bit for bit. Rows 0-15 hold them
 * all, row 0 the specials (inf, NaN); rows 16-31 only subnormals and zeros, so that those quantize to nonzero. */
static void test_repack_i8_all_halves(void) {
    enum { R = 32, N = 4096 };
    uint16_t *wh = malloc((size_t)R * N * 2);
    for (uint32_t i = 0; i < 16 * N; i++) wh[i] = (uint16_t)(i * 40503u); /* odd multiplier: a permutation */
    for (uint32_t i = 16 * N; i < R * N; i++) wh[i] = (uint16_t)((i * 7u) % 0x400 | (i & 1) << 15);
    for (uint32_t i = 0, j = 0; i < 16 * N; i++) /* move the inf/NaN halves to the front (row 0) */
        if ((wh[i] & 0x7C00) == 0x7C00) {
            const uint16_t t = wh[j];
            wh[j++] = wh[i], wh[i] = t;
        }
    uint8_t *rp = malloc((size_t)R * N);
    float drow[R];
    tl_repack_i8_from_f16(wh, N, 0, R, rp, drow);
    int bad = 0;
    for (int r = 0; r < R; r++) {
        float amax = 0;
        for (int k = 0; k < N; k++) {
            const float a = fabsf(tl_f16_to_f32(wh[r * N + k]));
            if (a > amax) amax = a;
        }
        const float id = amax > 0 ? 127.0f / amax : 0.0f;
        bad += memcmp(&drow[r], &(float){amax / 127.0f}, 4) != 0;
        for (int k = 0; k < N && r > 0; k++) { /* row 0's scale is inf: its values are not meaningful, only its scale */
            const float v = tl_f16_to_f32(wh[r * N + k]) * id;
            int32_t q = (int32_t)lrintf(v);
            q = q < -127 ? -127 : q > 127 ? 127 : q;
            bad += tl_r16_i8(rp, N, r, k) != q;
        }
    }
    CHECK(bad == 0, "repack_i8 over all halves: %d values or scales differ from tl_f16_to_f32's", bad);
    free(wh), free(rp);
    /* each half alone in a row of 4, so it is the row's maximum and its conversion shows in the row scale */
    enum { RA = 65536 };
    uint16_t *one = calloc((size_t)RA * 4, 2);
    uint8_t *rq = malloc((size_t)RA * 4);
    float *ds = malloc((size_t)RA * 4);
    for (uint32_t r = 0; r < RA; r++) one[4 * r] = (uint16_t)r;
    tl_repack_i8_from_f16(one, 4, 0, RA, rq, ds);
    int bad_d = 0;
    for (uint32_t r = 0; r < RA; r++) {
        const float a = fabsf(tl_f16_to_f32((uint16_t)r)), amax = a > 0 ? a : 0.0f; /* NaN is never a maximum */
        bad_d += memcmp(&ds[r], &(float){amax / 127.0f}, 4) != 0;
    }
    CHECK(bad_d == 0, "repack_i8: %d halves convert differently from tl_f16_to_f32 (row scales)", bad_d);
    free(one), free(rq), free(ds);
}

/* One GEMM of a path against the scalar reference on the same weights and tokens (rows split as the pool splits them). */
static void check_r16_equal(const char *path, const char *what, gemm_fn ref, gemm_fn f, const tl_r16 *w,
                            const tl_acts *a, float *want, float *got, int64_t ys) {
    memset(want, 0, (size_t)(a->T * ys) * 4), memset(got, 0, (size_t)(a->T * ys) * 4);
    ref(w, 0, w->ne1, a, want, ys);
    run_split(f, w, a, got, ys);
    const int bad = count_diff(want, got, a->T * ys);
    CHECK(bad == 0, "%s %s, q -128..127, T=%d: %d differ", path, what, a->T, bad);
}

/* Codes 0..3 (3 is not ternary, but a file may hold it) and int8 activations over the whole range -128..127: the
 * bounds that let the SIMD paths add products in 16-bit lanes must hold for any byte, not only for ternary weights. */
static void test_r16_hostile(const tl_kernels *k) {
    static const int Ts[] = {1, 2, 4, 8, 9};
    const tl_kernels *ref = tl_kernels_scalar();
    const int64_t n = 2560, R = 48, ys = R + 2;
    uint8_t *w = malloc((size_t)(R * n)), *rp = malloc((size_t)(R * n));
    int8_t *q = malloc((size_t)(9 * n));
    float sc[9], *want = malloc((size_t)(9 * ys) * 4), *got = malloc((size_t)(9 * ys) * 4);
    int32_t su[9];
    for (int64_t i = 0; i < R * n; i++) w[i] = (uint8_t)rnd();
    for (int t = 0; t < 9; t++) {
        su[t] = 0;
        sc[t] = 0.5f + (float)t;
        for (int64_t i = 0; i < n; i++) {
            /* runs of extreme values (all -128 or all 127 in a stretch) reach the worst case of every lane */
            const int8_t v = (i / 64) % 3 == 0 ? -128 : (i / 64) % 3 == 1 ? 127 : (int8_t)rnd();
            q[t * n + i] = v;
            su[t] += v;
        }
    }
    const tl_acts acts = {0, n, q, sc, su, NULL};
    for (size_t b = 0; b < sizeof Ts / sizeof Ts[0]; b++) {
        tl_acts at = acts;
        at.T = Ts[b];
        /* I2_S codes: every byte value, all-3 bytes included */
        for (int64_t i = 0; i < R * n / 4; i += 97) w[i] = 0xFF;
        tl_repack_i2s(w, n, 0, R, rp);
        const tl_r16 wi = {rp, NULL, NULL, 0.25f, n, R, NULL};
        check_r16_equal(k->name, "gemm_i2s_r16 codes 0..3", ref->gemm_i2s_r16, k->gemm_i2s_r16, &wi, &at, want, got, ys);
        /* int8 rows: stored bytes 0..255 (the repacker writes 1..255; any byte must still give the exact sum) */
        float drow[48];
        for (int64_t r = 0; r < R; r++) drow[r] = 0.01f * (float)(r + 1);
        const tl_r16 w8 = {w, NULL, drow, 1.0f, n, R, NULL};
        check_r16_equal(k->name, "gemm_i8_r16 bytes 0..255", ref->gemm_i8_r16, k->gemm_i8_r16, &w8, &at, want, got, ys);
    }
    free(w), free(rp), free(q), free(want), free(got);
}

/* int4 rows: the repack against its definition (every weight within half a step of d_row·s_b·q or clipped), and each path's GEMM against the scalar one on random and hostile bytes: every tile
 * width and remainder, T = 33 crosses a batch of TL_I4_TOKENS, n = 8192 the widest exact row. */
static void test_r16_i4(const tl_kernels *k) {
    static const int Ts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 17, 33};
    static const int64_t ns[] = {32, 2560, 8192};
    const tl_kernels *ref = tl_kernels_scalar();
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t b = 0; b < sizeof Ts / sizeof Ts[0]; b++) {
            const int64_t n = ns[a], R = Ts[b] % 2 ? 48 : 16, ys = R + 1;
            const int T = Ts[b];
            if (n == 8192 && T > 9) continue; /* the widest row once per tile width is enough */
            uint16_t *wh = malloc((size_t)(R * n) * 2);
            for (int64_t i = 0; i < R * n; i++)
                wh[i] = tl_f32_to_f16((i / n) == 3 ? 0.0f : frand() * ((i / 32) % 5 == 0 ? 8.0f : 1.0f));
            uint8_t *rp = malloc((size_t)(R * n / 2)), *sub = malloc((size_t)(R * n / 32));
            float *drow = malloc((size_t)R * 4);
            tl_repack_i4_from_f16(wh, n, 0, R, rp, sub, drow);
            int bad_q = 0; /* within half a step of d_row·s_b·q, or clipped to ±7 on its own side (the scale search) */
            for (int64_t r = 0; r < R; r++)
                for (int64_t i = 0; i < n; i++) {
                    const float step = drow[r] * (float)tl_r16_i4_sub(sub, n, r, i / 32), w = tl_f16_to_f32(wh[r * n + i]);
                    const int v = tl_r16_i4(rp, n, r, i);
                    const int near = fabsf((float)v * step - w) <= step * 0.5001f + 1e-7f;
                    const int clipped = (v == 7 && w >= 6.4999f * step) || (v == -7 && w <= -6.4999f * step);
                    bad_q += v < -7 || v > 7 || !(near || clipped);
                }
            CHECK(bad_q == 0, "repack_i4 n=%lld: %d weights neither within half a step nor clipped", (long long)n, bad_q);
            float *x = malloc((size_t)(T * n) * 4), sc[33];
            int8_t *q = malloc((size_t)(T * n));
            int32_t su[33];
            quantize_tokens(ref, T, n, x, q, sc, su, NULL);
            const tl_acts acts = {T, n, q, sc, su, NULL};
            const tl_r16 wr = {rp, NULL, drow, 1.0f, n, R, sub};
            float *want = calloc((size_t)(T * ys), 4), *got = calloc((size_t)(T * ys), 4);
            for (int t = 0; t < T; t++) /* the definition, from the decoded layout */
                for (int64_t r = 0; r < R; r++) {
                    int32_t acc = 0;
                    for (int64_t i = 0; i < n; i += 32) {
                        int32_t blk = 0;
                        for (int64_t e = i; e < i + 32; e++) blk += tl_r16_i4(rp, n, r, e) * q[t * n + e];
                        acc += tl_r16_i4_sub(sub, n, r, i / 32) * blk;
                    }
                    want[t * ys + r] = ((float)acc / sc[t]) * drow[r];
                }
            memset(got, 0, (size_t)(T * ys) * 4);
            ref->gemm_i4_r16(&wr, 0, R, &acts, got, ys);
            CHECK(count_diff(want, got, T * ys) == 0, "scalar gemm_i4_r16 n=%lld T=%d: %d differ from the definition",
                  (long long)n, T, count_diff(want, got, T * ys));
            memset(got, 0, (size_t)(T * ys) * 4);
            run_split(k->gemm_i4_r16, &wr, &acts, got, ys);
            CHECK(count_diff(want, got, T * ys) == 0, "%s gemm_i4_r16 n=%lld T=%d rows=%lld: %d differ", k->name,
                  (long long)n, T, (long long)R, count_diff(want, got, T * ys));
            /* hostile: every byte (nibble 0 is q = -8, which the repacker never writes), sub-scales 0..255, runs of
             * -128 / 127 activations: the int32 and 16-bit bounds must hold for any data */
            for (int64_t i = 0; i < R * n / 2; i++) rp[i] = (uint8_t)rnd();
            for (int64_t i = 0; i < R * n / 32; i++) sub[i] = i % 7 == 0 ? 255 : (uint8_t)rnd();
            for (int t = 0; t < T; t++)
                for (int64_t i = 0; i < n; i++) q[t * n + i] = (i / 64) % 3 == 0 ? -128 : (i / 64) % 3 == 1 ? 127 : (int8_t)rnd();
            check_r16_equal(k->name, "gemm_i4_r16 any bytes", ref->gemm_i4_r16, k->gemm_i4_r16, &wr, &acts, want, got, ys);
            free(wh), free(rp), free(sub), free(drow), free(x), free(q), free(want), free(got);
        }
}

/* Halves a real file may hold, through the int4 repack: an inf (its row's values all become 0), a NaN (skipped by the
 * maxima), subnormals only (they still quantize to nonzero steps), zeros. No value leaves -7..7, no sub-scale is 0. */
static void test_repack_i4_specials(void) {
    const int64_t n = 64, R = 16;
    uint16_t wh[16 * 64];
    for (int64_t i = 0; i < R * n; i++) wh[i] = tl_f32_to_f16(frand());
    wh[5] = 0x7C00, wh[n + 9] = 0x7E00;
    for (int64_t i = 0; i < n; i++) wh[2 * n + i] = (uint16_t)((1 + i % 700) | (i % 3 == 0) << 15), wh[3 * n + i] = 0;
    uint8_t rp[16 * 64 / 2], sub[16 * 2];
    float drow[16];
    tl_repack_i4_from_f16(wh, n, 0, R, rp, sub, drow);
    int bad = 0;
    for (int64_t r = 0; r < R; r++)
        for (int64_t i = 0; i < n; i++) {
            const int v = tl_r16_i4(rp, n, r, i);
            bad += v < -7 || v > 7 || tl_r16_i4_sub(sub, n, r, i / 32) == 0 || (r == 0 && v != 0);
            if (r == 2) {
                const float step = drow[r] * (float)tl_r16_i4_sub(sub, n, r, i / 32), w = tl_f16_to_f32(wh[r * n + i]);
                bad += !(fabsf((float)v * step - w) <= step * 0.5001f || (v == 7 && w > 0) || (v == -7 && w < 0));
            }
        }
    CHECK(bad == 0 && drow[3] == 0, "repack_i4 of inf / NaN / subnormal / zero rows: %d bad values", bad);
}

/* The tokens-tiled F16 entry against dot_f16 of the reference, per row and token: T = 1..9 (every tile width and
 * remainder), rows split as the pool splits them, n with and without a tail past the last 32 values. */
static void test_gemm_f16(const tl_kernels *k) {
    static const int64_t ns[] = {32, 100, 2560, 2563};
    const tl_kernels *ref = tl_kernels_scalar();
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (int T = 1; T <= 9; T++) {
            const int64_t n = ns[a], R = 21, ys = R + 3;
            uint16_t *w = malloc((size_t)(R * n) * 2);
            float *x = malloc((size_t)(T * n) * 4), *want = calloc((size_t)(T * ys), 4), *got = calloc((size_t)(T * ys), 4);
            for (int64_t i = 0; i < R * n; i++) w[i] = tl_f32_to_f16(frand());
            for (int t = 0; t < T; t++) fill_act(x + t * n, n, t % 2);
            for (int t = 0; t < T; t++)
                for (int64_t r = 0; r < R; r++) want[t * ys + r] = ref->dot_f16(w + r * n, x + t * n, n);
            k->gemm_f16(w, n, 0, 7, x, T, got, ys);
            k->gemm_f16(w, n, 7, R, x, T, got, ys);
            CHECK(count_diff(want, got, T * ys) == 0, "%s gemm_f16 n=%lld T=%d: %d outputs differ from dot_f16", k->name,
                  (long long)n, T, count_diff(want, got, T * ys));
            free(w), free(x), free(want), free(got);
        }
    /* Hostile halves and activations: subnormal and signed-zero halves everywhere, an inf half in row 3, one token with
     * an activation past 2^16 (wasm128 prepares x·2^112 and must leave such rows and tokens to dot_f16). */
    const int64_t n = 2560, R = 21, ys = R;
    const int T = 3;
    uint16_t *w = malloc((size_t)(R * n) * 2);
    float *x = malloc((size_t)(T * n) * 4), *want = calloc((size_t)(T * ys), 4), *got = calloc((size_t)(T * ys), 4);
    for (int64_t i = 0; i < R * n; i++)
        w[i] = i % 5 == 0 ? (uint16_t)(rnd() % 0x400 | (rnd() & 1) << 15) : i % 11 == 0 ? 0x8000 : tl_f32_to_f16(frand());
    w[3 * n + 10] = 0x7C00;
    for (int t = 0; t < T; t++) {
        fill_act(x + t * n, n, t % 2);
        x[t * n + 10] = 0.5f; /* inf · x stays inf (never inf · 0) */
    }
    x[1 * n + 77] = 70000.0f;
    for (int t = 0; t < T; t++)
        for (int64_t r = 0; r < R; r++) want[t * ys + r] = ref->dot_f16(w + r * n, x + t * n, n);
    k->gemm_f16(w, n, 0, R, x, T, got, ys);
    CHECK(count_diff(want, got, T * ys) == 0, "%s gemm_f16 with subnormal / inf halves and |x| > 2^16: %d outputs differ",
          k->name, count_diff(want, got, T * ys));
    free(w), free(x), free(want), free(got);
}

/* ---- the int8 and int4 heads (--head-quant i8 / i4) on the fixtures: their effect on the logits, measured against
 * the F16 head and against the reference logits, which they must still meet within the fixture's own tolerance ---- */

static int argmax_f(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

enum { HEAD_F16, HEAD_I8, HEAD_I4 };
static const char *const head_names[] = {"F16", "int8", "int4"};

static ternlm_session *session_for(const char *path, int head, ternlm_model **m) {
    ternlm_model_params mp = ternlm_model_params_default();
    mp.head_quant_i8 = head == HEAD_I8;
    mp.head_quant_i4 = head == HEAD_I4;
    ternlm_error err = {0};
    ternlm_session *s = NULL;
    if (ternlm_model_open_file(path, &mp, m, &err) == TERNLM_OK) ternlm_session_new(*m, NULL, &s, &err);
    CHECK(s != NULL, "%s (%s head): %s", path, head_names[head], err.message);
    return s;
}

static void head_effect(const char *ref_name, int head) {
    char path[1200];
    snprintf(path, sizeof path, "%s/fixtures/%s", TERNLM_SHARED_DIR, ref_name);
    size_t len;
    char *text = read_whole_file(path, &len);
    jval *ref = text ? json_parse(text, len) : NULL;
    CHECK(ref != NULL, "cannot read %s", path);
    if (!ref) return free(text);
    const jval *tj = json_get(ref, "tolerance"), *cases = json_get(ref, "cases");
    const double tol_abs = json_get(tj, "abs")->num, tol_mean = json_get(tj, "mean_abs")->num;
    const int nv = (int)json_get(ref, "n_vocab")->num;
    snprintf(path, sizeof path, "%s/fixtures/%s", TERNLM_SHARED_DIR, json_get(ref, "model")->str);
    ternlm_model *m16 = NULL, *m8 = NULL;
    ternlm_session *s16 = session_for(path, HEAD_F16, &m16), *s8 = session_for(path, head, &m8);
    double vs_f16 = 0, vs_f16_mean = 0, vs_ref = 0, vs_ref_mean = 0;
    int same_top1 = 0, positions = 0;
    for (size_t c = 0; s16 && s8 && cases && c < cases->n; c++) {
        const jval *ids = json_get(&cases->items[c], "prompt_ids"), *pos = json_get(&cases->items[c], "logit_positions");
        int32_t *p = malloc(ids->n * sizeof *p);
        for (size_t i = 0; i < ids->n; i++) p[i] = (int32_t)ids->items[i].num;
        ternlm_error err = {0};
        ternlm_session_rewind(s16, 0, NULL), ternlm_session_rewind(s8, 0, NULL);
        CHECK(!ternlm_session_eval(s16, p, ids->n, TERNLM_LOGITS_ALL, &err) &&
                  !ternlm_session_eval(s8, p, ids->n, TERNLM_LOGITS_ALL, &err), "%s: %s", ref_name, err.message);
        snprintf(path, sizeof path, "%s/fixtures/%s", TERNLM_SHARED_DIR, json_get(&cases->items[c], "logits_file")->str);
        size_t bytes;
        float *want = (float *)read_whole_file(path, &bytes);
        for (size_t k = 0; k < ids->n; k++) {
            const float *a = ternlm_session_logits(s16, (int)k), *b = ternlm_session_logits(s8, (int)k);
            double mx = 0, sum = 0;
            for (int i = 0; i < nv; i++) {
                const double d = fabs((double)a[i] - (double)b[i]);
                mx = d > mx ? d : mx, sum += d;
            }
            vs_f16 = mx > vs_f16 ? mx : vs_f16;
            vs_f16_mean = sum / nv > vs_f16_mean ? sum / nv : vs_f16_mean;
            same_top1 += argmax_f(a, nv) == argmax_f(b, nv), positions++;
        }
        for (size_t k = 0; want && pos && k < pos->n; k++) {
            const float *b = ternlm_session_logits(s8, (int)pos->items[k].num), *e = want + k * (size_t)nv;
            double mx = 0, sum = 0;
            for (int i = 0; i < nv; i++) {
                const double d = fabs((double)b[i] - (double)e[i]);
                mx = d > mx ? d : mx, sum += d;
            }
            vs_ref = mx > vs_ref ? mx : vs_ref;
            vs_ref_mean = sum / nv > vs_ref_mean ? sum / nv : vs_ref_mean;
        }
        free(want), free(p);
    }
    printf("%s head on %s: vs the F16 head worst |diff| %.4f, worst mean %.5f, top-1 same at %d of %d positions; "
           "vs the reference worst |diff| %.4f, worst mean %.5f (tolerance %.2f / %.2f)\n",
           head_names[head], json_get(ref, "model")->str, vs_f16, vs_f16_mean, same_top1, positions, vs_ref, vs_ref_mean, tol_abs, tol_mean);
    if (head == HEAD_I8) {
        CHECK(positions > 0 && vs_ref <= tol_abs && vs_ref_mean <= tol_mean, "%s: the int8 head leaves the fixture tolerance",
              ref_name);
        CHECK(same_top1 * 10 >= positions * 9, "%s: the int8 head changes the top-1 at %d of %d positions", ref_name,
              positions - same_top1, positions);
    } else { /* 4 bits leave the fixtures' tolerance (docs/PERFORMANCE.md): bound the effect measured when it was built */
        CHECK(positions > 0 && vs_f16_mean <= 0.40 && vs_f16 <= 3.0, "%s: the int4 head moved further from F16 than measured",
              ref_name);
        CHECK(same_top1 * 5 >= positions * 4, "%s: the int4 head changes the top-1 at %d of %d positions", ref_name,
              positions - same_top1, positions);
    }
    ternlm_session_free(s16), ternlm_session_free(s8);
    ternlm_model_free(m16), ternlm_model_free(m8);
    json_free(ref);
    free(text);
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
        test_attention(all[i], ref);
        test_row_range(all[i], ref);
        test_bonsai(all[i], ref);
        if (all[i]->gemm_i2s_r16) test_r16_i2s(all[i]);
        if (all[i]->gemm_tq_r16) test_r16_tq(all[i]);
        if (all[i]->gemm_i8_r16) test_r16_i8(all[i]);
        if (all[i]->gemm_i4_r16) test_r16_i4(all[i]);
        if (all[i]->gemm_i2s_r16 && all[i]->gemm_i8_r16) test_r16_hostile(all[i]);
        if (all[i]->gemm_f16) test_gemm_f16(all[i]);
        printf("%s: tokens-tiled F16 GEMM %s\n", all[i]->name, all[i]->gemm_f16 ? "tested" : "not in this path");
        printf("%s: 16-row group GEMMs %s\n", all[i]->name, all[i]->gemm_i2s_r16 ? "tested" : "not in this path");
        printf("%s: int4 head GEMM %s\n", all[i]->name, all[i]->gemm_i4_r16 ? "tested" : "not in this path");
    }
    /* the fixtures with an F16 head (the I2_S, TQ2_0 and TQ1_0 models), where this machine's best path has its own
     * int8 GEMM (the generic one is too slow for a 128k vocabulary under qemu or wasm) */
    /* TERNLM_TEST_NO_FIXTURES: a host without the shared fixtures (the relaxed module in a browser page) */
    if (getenv("TERNLM_TEST_NO_FIXTURES")) {
        printf("int8 head effect on the fixtures: skipped (TERNLM_TEST_NO_FIXTURES)\n");
    } else if (tl_kernels_best()->gemm_i8_r16 && tl_kernels_best() != ref) {
        static const char *const refs[] = {"b158-llama3-i2s.ref.json", "bitnet-spm-tq2_0.ref.json", "bitnet-spm-tq1_0.ref.json"};
        for (int f = 0; f < 3; f++) {
            head_effect(refs[f], HEAD_I8);
            if (tl_kernels_best()->gemm_i4_r16) head_effect(refs[f], HEAD_I4);
        }
        if (!tl_kernels_best()->gemm_i4_r16) printf("int4 head effect on the fixtures: skipped (no int4 GEMM of its own)\n");
    } else {
        printf("int8 head effect on the fixtures: skipped (path %s has no int8 GEMM of its own)\n", tl_kernels_best()->name);
    }
    test_bonsai_reference();
    test_repack_i8_all_halves();
    test_repack_i4_specials();
    return check_summary();
}
