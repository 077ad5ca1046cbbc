/* exp, sin, cos, log and pow computed with fixed double-precision polynomials: the same bits on every target
 * (libm implementations differ in the last ulp between glibc, musl and wasi-libc, which can flip a greedy token). */
#ifndef TERNLM_MATHX_H
#define TERNLM_MATHX_H

double tl_exp(double x);
double tl_ln(double x);      /* natural log, x > 0 */
void tl_sincos(double x, double *s, double *c);
float tl_expf(float x);
float tl_powf(float base, float e); /* base > 0 */

#endif
