/* The softmax's exponentials as one row loop that every kernel path compiles with its own vector width. */
#ifndef TERNLM_EXP_ROW_H
#define TERNLM_EXP_ROW_H

#include <stdint.h>
#include <string.h>

/* v[p] = tl_expf(v[p] - max) for a row whose differences all lie in [-104, 0] (no NaN, no clamp): the same double
 * arithmetic as mathx's tl_expf, operation for operation, without its range branches, so the loop vectorizes. IEEE
 * double operations give the same bits at any width, and the build's -ffp-contract=off keeps them unfused. */
static void tl_exp_minus_max_row(float *v, uint32_t n, float max) {
    for (uint32_t p = 0; p < n; p++) {
        const double x = (double)(v[p] - max);
        const double kf = x * 1.44269504088896338700 + (x < 0 ? -0.5 : 0.5);
        const int k = (int)kf;
        const double r = (x - (double)k * 6.93147180369123816490e-01) - (double)k * 1.90821492927058770002e-10;
        const double e = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320))))))));
        const int k1 = k / 2, k2 = k - k1; /* times 2^k in two exact steps, as mathx's scale2 */
        const uint64_t b1 = (uint64_t)(k1 + 1023) << 52, b2 = (uint64_t)(k2 + 1023) << 52;
        double s1, s2;
        memcpy(&s1, &b1, 8);
        memcpy(&s2, &b2, 8);
        v[p] = (float)(e * s1 * s2);
    }
}

#endif
