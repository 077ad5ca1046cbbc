/* Picks the kernel path: runtime feature detection on x86, compile time on ARM and wasm. */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#include "paths.h"

/* x86: a path is offered only when the CPU runs it. ARM and wasm paths are chosen at compile time. */
#if defined(TERNLM_HAVE_AVX2)
static const tl_kernels *tl_kernels_avx2(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? tl_kernels_avx2_table() : NULL;
}
#endif
#if defined(TERNLM_HAVE_AVX512)
static const tl_kernels *tl_kernels_avx512(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                   __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
               ? tl_kernels_avx512_table()
               : NULL;
}
#endif
#if defined(TERNLM_HAVE_NEON)
static const tl_kernels *tl_kernels_neon(void) { return tl_kernels_neon_table(); }
#endif
#if defined(TERNLM_HAVE_WASM128)
static const tl_kernels *tl_kernels_wasm128(void) { return tl_kernels_wasm128_table(); }
#endif
/* The relaxed module is a separate build: an engine without relaxed SIMD refuses the whole module at compile time. */
#if defined(TERNLM_HAVE_WASM_RELAXED)
static const tl_kernels *tl_kernels_wasm_relaxed(void) { return tl_kernels_wasm_relaxed_table(); }
#endif

int tl_kernels_available(const tl_kernels **out, int cap) {
    int n = 0;
    const tl_kernels *all[5] = {0};
    all[n++] = tl_kernels_scalar();
#if defined(TERNLM_HAVE_AVX2)
    if (tl_kernels_avx2()) all[n++] = tl_kernels_avx2();
#endif
#if defined(TERNLM_HAVE_AVX512)
    if (tl_kernels_avx512()) all[n++] = tl_kernels_avx512();
#endif
#if defined(TERNLM_HAVE_NEON)
    if (tl_kernels_neon()) all[n++] = tl_kernels_neon();
#endif
#if defined(TERNLM_HAVE_WASM128)
    all[n++] = tl_kernels_wasm128();
#endif
#if defined(TERNLM_HAVE_WASM_RELAXED)
    all[n++] = tl_kernels_wasm_relaxed();
#endif
    for (int i = 0; i < n && i < cap; i++) out[i] = all[i];
    return n < cap ? n : cap;
}

const tl_kernels *tl_kernels_by_name(const char *name) {
    const tl_kernels *all[5];
    const int n = tl_kernels_available(all, 5);
    for (int i = 0; i < n; i++)
        if (strcmp(all[i]->name, name) == 0) return all[i];
    return NULL;
}

const tl_kernels *tl_kernels_best(void) {
    const char *force = getenv("TERNLM_KERNELS");
    if (force && *force) {
        const tl_kernels *k = tl_kernels_by_name(force);
        if (k) return k;
    }
    const tl_kernels *all[5];
    const int n = tl_kernels_available(all, 5);
    return all[n - 1]; /* listed from slowest to fastest */
}

const char *ternlm_cpu_kernels(void) { return tl_kernels_best()->name; }
