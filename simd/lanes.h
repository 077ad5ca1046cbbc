/* The canonical order of float dot products, shared by every kernel path so that all of them (and every
 * target: native, WASI, the browser) produce the same bits: element i is multiplied (no FMA) and added to lane
 * i % 32 in index order; then lanes are folded in halves: l[i] += l[i + 16], then + 8, + 4, + 2, + 1. */
#ifndef TERNLM_LANES_H
#define TERNLM_LANES_H

#define TL_LANES 32

static inline float tl_lanes_fold(float *l) {
    for (int w = TL_LANES / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) l[i] += l[i + w];
    return l[0];
}

/* Double-precision sums (RMSNorm's sum of squares, softmax's denominator) use the same rule over n lanes (a power of
 * two), so a GPU block (256 threads for a norm, a warp for a softmax) reproduces the CPU's bits. */
#define TL_NORM_LANES 256

static inline double tl_lanes_fold_d(double *l, int n) {
    for (int w = n / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) l[i] += l[i + w];
    return l[0];
}

#endif
