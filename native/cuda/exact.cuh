// Device copies of the CPU's arithmetic, so the GPU computes the same bits as every CPU path: the canonical lane
// orders of simd/lanes.h, round-to-nearest-even helpers, f16 rounding, and mathx's exp (the same source, compiled
// for the device). The file is built with --fmad=false: no multiply-add is ever contracted, as on the CPU.
#ifndef TERNLM_CUDA_EXACT_CUH
#define TERNLM_CUDA_EXACT_CUH

#include <cuda_fp16.h>
#include <stdint.h>
#include <string.h>

namespace dev {
#define TL_MATHX_FN __device__ static
#define TL_MATHX_STATIC __device__ static
#include "../../runtime/mathx_impl.h"
#undef TL_MATHX_FN
#undef TL_MATHX_STATIC
} // namespace dev

#define FULL_MASK 0xffffffffu
#define NORM_THREADS 256 // a block of this size holds TL_NORM_LANES (256) lanes, one per thread

__device__ __forceinline__ float round_f16(float x) { return __half2float(__float2half_rn(x)); }

// lanes.h's fold of 32 float lanes held one per lane of a warp: l[i] += l[i + w] for w = 16 .. 1; lane 0 ends
// with the sum.
__device__ __forceinline__ float warp_fold(float v) {
    for (int w = 16; w >= 1; w >>= 1) v += __shfl_down_sync(FULL_MASK, v, w);
    return v;
}

__device__ __forceinline__ double warp_fold_d(double v) {
    for (int w = 16; w >= 1; w >>= 1) v += __shfl_down_sync(FULL_MASK, v, w);
    return v;
}

__device__ float block_max(float v, float *sh) { // exact in any order
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    v = sh[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); w++) v = fmaxf(v, sh[w]);
    __syncthreads();
    return v;
}

// Programmatic dependent launch (Hopper): a kernel may start while its predecessor finishes; it reads only
// weights until dep_wait() returns.
__device__ __forceinline__ void dep_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void dep_launch_next() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
}

#endif
