/* The bodies of mathx.h's functions, shared by the C core (mathx.c) and the CUDA backend (device copies), so
 * both compute the same bits. The includer defines TL_MATHX_FN (a function's qualifiers) and TL_MATHX_STATIC. */
#include <stdint.h>
#include <string.h>

TL_MATHX_STATIC double scale2(double x, int k) { /* x * 2^k for |k| <= 1022, in two exact steps */
    const int k1 = k / 2, k2 = k - k1;
    uint64_t b1 = (uint64_t)(k1 + 1023) << 52, b2 = (uint64_t)(k2 + 1023) << 52;
    double s1, s2;
    memcpy(&s1, &b1, 8);
    memcpy(&s2, &b2, 8);
    return x * s1 * s2;
}

/* Defined for every input: NaN gives NaN, -inf 0, +inf (and anything above the clamp) the clamped value; the
 * float-to-int conversions below only ever see reduced, in-range values. */
TL_MATHX_FN double tl_exp(double x) {
    if (x != x) return x;
    if (x < -745.0) return 0.0;
    if (x > 709.0) x = 709.0;
    const double kf = x * 1.44269504088896338700 + (x < 0 ? -0.5 : 0.5);
    const int k = (int)kf;
    const double r = (x - (double)k * 6.93147180369123816490e-01) - (double)k * 1.90821492927058770002e-10;
    double term = 1.0, sum = 1.0;
    for (int i = 1; i <= 13; i++) {
        term = term * r / (double)i;
        sum = sum + term;
    }
    return scale2(sum, k);
}

TL_MATHX_FN float tl_expf(float xf) {
    /* a shorter polynomial is enough for a float result: |r| <= ln2/2, degree 8, error ~1e-10 */
    const double x = xf;
    if (x != x) return xf;
    if (x < -104.0) return 0.0f;
    if (x > 89.0) return (float)tl_exp(89.0);
    const double kf = x * 1.44269504088896338700 + (x < 0 ? -0.5 : 0.5);
    const int k = (int)kf;
    const double r = (x - (double)k * 6.93147180369123816490e-01) - (double)k * 1.90821492927058770002e-10;
    const double p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320))))))));
    return (float)scale2(p, k);
}

TL_MATHX_FN double tl_ln(double x) {
    uint64_t b;
    if (!(x > 0) || x > 1.79769313486231570815e+308) { /* NaN or negative: NaN; 0: -inf; +inf: +inf */
        b = x == 0 ? 0xFFF0000000000000ull : x > 0 ? 0x7FF0000000000000ull : 0x7FF8000000000000ull;
        memcpy(&x, &b, 8);
        return x;
    }
    memcpy(&b, &x, 8);
    int e = (int)((b >> 52) & 0x7FF) - 1023;
    b = (b & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull; /* mantissa in [1, 2) */
    double m;
    memcpy(&m, &b, 8);
    if (m > 1.41421356237309504880) {
        m *= 0.5;
        e++;
    }
    const double s = (m - 1.0) / (m + 1.0), s2 = s * s; /* log m = 2 atanh s, |s| < 0.172 */
    double term = s, sum = 0.0;
    for (int i = 1; i <= 23; i += 2) {
        sum = sum + term / (double)i;
        term = term * s2;
    }
    return 2.0 * sum + (double)e * 6.93147180559945309417e-01;
}

TL_MATHX_FN float tl_powf(float base, float e) { return (float)tl_exp((double)e * tl_ln((double)base)); }

TL_MATHX_FN void tl_sincos(double x, double *s, double *c) {
    /* reduce by pi/2 (three-part constant: exact enough for |x| < 1e6), then Taylor series on |r| <= pi/4.
     * NaN, infinities and |x| >= 2^52 (where no digit of the angle is left) give NaN: the quotient must fit a long. */
    if (!(x > -4503599627370496.0 && x < 4503599627370496.0)) {
        const uint64_t quiet_nan = 0x7FF8000000000000ull;
        memcpy(s, &quiet_nan, 8);
        memcpy(c, &quiet_nan, 8);
        return;
    }
    const double kf = x * 6.36619772367581382433e-01 + (x < 0 ? -0.5 : 0.5);
    const int64_t k = (int64_t)kf; /* |kf| < 2^52: fits (long is 32-bit on wasm32) */
    const double r = ((x - (double)k * 1.57079632673412561417e+00) - (double)k * 6.07710050650619224932e-11) -
                     (double)k * 2.02226624879595063154e-21;
    const double r2 = r * r;
    double ts = r, tc = 1.0, ss = 0.0, cc = 0.0;
    for (int i = 1; i <= 21; i += 2) {
        ss = ss + ts;
        cc = cc + tc;
        ts = -ts * r2 / (double)((i + 1) * (i + 2));
        tc = -tc * r2 / (double)(i * (i + 1));
    }
    switch (((k % 4) + 4) % 4) {
    case 0: *s = ss, *c = cc; break;
    case 1: *s = cc, *c = -ss; break;
    case 2: *s = -ss, *c = -cc; break;
    default: *s = -cc, *c = ss; break;
    }
}
