/* What the hand-built kernel benchmarks (bench_gemm.c, bench_tl.c) share: a fixed-seed generator, a clock and an
 * output checksum (equal checksums: the same bits). */
#ifndef TERNLM_BENCH_UTIL_H
#define TERNLM_BENCH_UTIL_H

#include <stdint.h>
#include <string.h>
#include <time.h>

static uint32_t seed = 12345;
static uint32_t rnd(void) { return seed = seed * 1664525u + 1013904223u; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint32_t checksum(const float *y, int64_t n) {
    uint32_t h = 2166136261u;
    for (int64_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &y[i], 4);
        h = (h ^ b) * 16777619u;
    }
    return h;
}

#endif
