/* Kernel micro-benchmark for the 16-row group GEMMs and the F16 head dot (a quicker loop than `ternlm bench` when
 * tuning one kernel): times a path's gemm_i2s_r16 on a 2B4T-shaped weight (n = 2560 inputs, 6912 rows) for T tokens,
 * and dot_f16 (and gemm_f16 where the path has one) over 16384 head rows, printing products per second and a checksum of the outputs (equal checksums across
 * paths: same bits). Built by hand, e.g. for WASI:
 *   clang-19 --target=wasm32-wasi -O3 -msimd128 -Iruntime tools/bench_gemm.c build-wasi/libternlm.a -lm -o /tmp/bg.wasm
 *   node --no-warnings node/ternlm-wasi.mjs --dir=/ /tmp/bg.wasm wasm128 64 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../simd/kernels.h"
#include "../simd/repack.h"

#include "bench_util.h"

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "wasm128";
    const int T = argc > 2 ? atoi(argv[2]) : 64;
    const int reps = argc > 3 ? atoi(argv[3]) : 3;
    const tl_kernels *k = tl_kernels_by_name(path);
    if (!k || !k->gemm_i2s_r16) {
        fprintf(stderr, "no path %s with gemm_i2s_r16\n", path);
        return 1;
    }
    const int64_t n = 2560, R = 6912;
    uint8_t *w = malloc((size_t)(n * R / 4)), *rp = malloc((size_t)(n * R / 4));
    for (int64_t i = 0; i < n * R / 4; i++) {
        uint8_t v = 0;
        for (int s = 0; s < 4; s++) v = (uint8_t)(v << 2 | rnd() % 3);
        w[i] = v;
    }
    tl_repack_i2s(w, n, 0, R, rp);
    float *x = malloc((size_t)(T * n) * 4), *sc = malloc((size_t)T * 4), *y = malloc((size_t)(T * R) * 4);
    int8_t *q = malloc((size_t)(T * n));
    int32_t *su = malloc((size_t)T * 4);
    for (int64_t i = 0; i < T * n; i++) x[i] = (float)((int32_t)(rnd() >> 16) - 32768) / 8192.0f;
    for (int t = 0; t < T; t++) k->quantize_i8(x + t * n, n, q + t * n, &sc[t], &su[t]);
    const tl_r16 wr = {rp, NULL, NULL, 0.037f, n, R, NULL};
    const tl_acts acts = {T, n, q, sc, su, NULL};
    double best = 1e9;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        k->gemm_i2s_r16(&wr, 0, R, &acts, y, R);
        const double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    printf("%s gemm_i2s_r16 n=%lld rows=%lld T=%d: %.2f ms, %.2f G products/s, checksum %08x\n", k->name, (long long)n,
           (long long)R, T, best * 1e3, (double)n * (double)R * T / best * 1e-9, checksum(y, T * R));

    /* the head: dot_f16 over HR rows of n halves (random finite halves), one token */
    const int64_t HR = argc > 4 ? atoi(argv[4]) : 16384;
    uint16_t *h = malloc((size_t)(HR * n) * 2);
    for (int64_t i = 0; i < HR * n; i++) /* normal halves, |h| < 2: exponent 8..15 (a subnormal product is slow) */
        h[i] = (uint16_t)((rnd() >> 16 & 0x83FF) | (8 + rnd() % 8) << 10);
    float *yh = malloc((size_t)HR * 4);
    best = 1e9;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        for (int64_t i = 0; i < HR; i++) yh[i] = k->dot_f16(h + i * n, x, n);
        const double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    printf("%s dot_f16 n=%lld rows=%lld: %.2f ms, %.2f G elements/s, checksum %08x\n", k->name, (long long)n,
           (long long)HR, best * 1e3, (double)n * (double)HR / best * 1e-9, checksum(yh, HR));
    if (k->gemm_f16) { /* the same rows through gemm_f16, one call as the forward pass makes it per thread chunk */
        float *yg = malloc((size_t)HR * 4);
        best = 1e9;
        for (int r = 0; r < reps; r++) {
            const double t0 = now();
            k->gemm_f16(h, n, 0, HR, x, 1, yg, HR);
            const double dt = now() - t0;
            best = dt < best ? dt : best;
        }
        printf("%s gemm_f16 n=%lld rows=%lld T=1: %.2f ms, %.2f G elements/s, checksum %08x\n", k->name, (long long)n,
               (long long)HR, best * 1e3, (double)n * (double)HR / best * 1e-9, checksum(yg, HR));
    }
    return 0;
}
