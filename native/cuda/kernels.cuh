// The CUDA backend's kernels. Every float operation repeats the CPU's (runtime/forward.c, simd/scalar.c) in the
// same order, so logits match the CPU bit for bit; integer dot products are exact in any order, which leaves the
// GPU free to pick its own (dp4a for one token, int8 tensor cores for prompts).
//
// Ternary weight layout (repack_ternary in backend_cuda.cu): each row holds steps = ceil(n / 256) steps of 256
// codes (0, 1, 2 for -1, 0, +1; padding is 0 against zero activations); a step is 4 uint4, and component j of uint4
// g holds the 16-code chunk CHUNK(j, g) of the step, code e of a chunk in byte e % 4 at bit 2 * (e / 4), so that
// (word >> 2i) & 0x03030303 is four codes as bytes for __dp4a, the four threads of a row read 32-byte-apart
// activation chunks (no shared-memory bank conflicts), and chunks 2m, 2m + 1 are adjacent words (one 8-byte load
// for a tensor-core fragment).
#include "exact.cuh"

#define CHUNK(j, g) (((j) >> 1) * 8 + 2 * (g) + ((j) & 1))
#define CODE_MASK 0x03030303u

// per-token int8 (I2_S), per-256 Q8_K (TQ1_0, TQ2_0), or per-32 Q8_0 by the x86 rule (Q1_0, Q2_0: Bonsai)
enum { ACT_TOKEN, ACT_Q8K, ACT_Q80 };
enum { PREP_FLOAT, PREP_FLOAT_F16, PREP_TOKEN, PREP_Q8K, PREP_Q80 };
#define Q80_PER_STEP 8 // Q8_0 blocks of 32 in a 256-code step: a token's qd / qsum hold 8 per step
enum { EPI_STORE, EPI_ADD, EPI_GLU };               // y = v; y += v (residual); y[i] = act(v[2i]) * v[2i+1]
enum { GLU_RELU2, GLU_SILU };

// Q1_0 (+-d per 128) and Q2_0 (codes 0..3 = -1..+2, times d per 64) use the same 2-bit layout: Q1_0's sign bit b is
// code 2b, so sum(code * q) - sum(q) is the CPU's integer sum of every 32-block for both.
struct tern_w { // a ternary linear, or several with one input fused into one (rows concatenated or interleaved)
    const uint4 *codes;
    int rows, n, steps, act, bps; // bps: weight scale blocks per step (TQ: 1, Q1_0: 2, Q2_0: 4)
    const float *row_scale, *blk_scale, *out_scale, *bias; // per row; blk_scale rows x steps x bps (TQ, Q1_0, Q2_0)
};

struct float_w { // an F16 or F32 linear (other float-like types are dequantized to F32 at upload)
    const __half *wh;
    const float *wf;
    int rows, n;
    const float *out_scale, *bias;
};

struct io_args { // where a linear reads its input (optionally RMSNorm-ed first) and what it does with its output
    const float *x;
    long x_stride;
    const float *norm_w;
    float eps;
    float *y;
    long y_stride;
    int epi, glu;
};

// ------------------------------------------------------------------------------------------------ small helpers

__device__ __forceinline__ float glu(float g, float u, int fn) {
    const float a = fn == GLU_RELU2 ? (g > 0 ? g * g : 0.0f) : g / (1.0f + dev::tl_expf(-g));
    return a * u;
}

// The end of every linear: the CPU's out_scale and bias, then store, residual add or GLU (the caller pairs rows).
__device__ __forceinline__ float finish_row(float v, int r, const float *out_scale, const float *bias) {
    v *= out_scale[r];
    if (bias) v += bias[r];
    return v;
}

__device__ __forceinline__ void emit(const io_args &io, int t, int r, float v) {
    float *dst = io.y + (long)t * io.y_stride + r;
    *dst = io.epi == EPI_ADD ? *dst + v : v;
}

__device__ __forceinline__ int dot16(uint32_t w, int4 a, int acc) {
    acc = __dp4a((int)(w & CODE_MASK), a.x, acc);
    acc = __dp4a((int)((w >> 2) & CODE_MASK), a.y, acc);
    acc = __dp4a((int)((w >> 4) & CODE_MASK), a.z, acc);
    return __dp4a((int)((w >> 6) & CODE_MASK), a.w, acc);
}

// ------------------------------------------------------------------------------------------------ input preparation

// k_tern_gemv's options for per-token int8 inputs (its TGO template argument): TG_STAGE copies the prepared codes
// and scale into shared memory once per block after the wait (one L1 request per line for the block instead of
// one per warp); TG_PSUM reads the token's sum as the 8 per-warp partial sums k_prep_tok writes (PSUM_PARTS ints
// per token; integers, so any order); TG_SPLIT keeps four independent dp4a chains per step and adds a row's lanes
// with one redux when a whole warp holds the row (integer sums: exact in any order).
enum { TG_STAGE = 1, TG_PSUM = 2, TG_SPLIT = 4, TG_MASK = 8, TG_FPREP = 16, TG_CPREP = 32 }; // TG_MASK: tern_step_mask's dot products
// TG_CPREP (with TG_STAGE; sm_90 only, launched as clusters of CP_C blocks): the blocks of a cluster RMSNorm and
// quantize the input together, each 1 / CP_C of it, and exchange the RMS lanes, maxima, codes and code sums through
// distributed shared memory (tg_cprep), so no k_prep_tok launch and no block repeats the whole preparation.
// TG_FPREP (with TG_STAGE): every block RMSNorms and quantizes the input itself, k_prep_tok's arithmetic with the
// elements in registers (FP_K per thread: inputs of at most FP_K * 256), straight into TG_STAGE's layout, so no
// k_prep_tok launch and no L2 round trip of the codes (tg_fprep).
#define PSUM_PARTS (NORM_THREADS / 32)
#define STAGE_STEP 272 // bytes per step in the staged input: 256 + 16, so two slices' lanes in a quarter warp use other banks
__host__ __device__ inline size_t stage_smem(int steps) { return (size_t)steps * STAGE_STEP + 16; }

#define PREP_BATCH 16 // loads in flight per thread in prep_vector

// Shared-memory scratch of prep_vector: 256 double lanes, and per-warp maxima and sums.
struct prep_scratch {
    double lanes[NORM_THREADS];
    float wmax[NORM_THREADS / 32];
    int wsum[NORM_THREADS / 32];
};

// lanes.h's fold of 256 double lanes, computed by every warp on its own (no further barrier): lane j first adds
// its 8 lanes j + 32k in the fold's order, then the warp folds 32 lanes.
__device__ __forceinline__ double fold_256(const double *l) {
    const int j = threadIdx.x & 31;
    const double c = ((l[j] + l[j + 128]) + (l[j + 64] + l[j + 192])) + ((l[j + 32] + l[j + 160]) + (l[j + 96] + l[j + 224]));
    return __shfl_sync(FULL_MASK, warp_fold_d(c), 0);
}

// TG_PSUM: the token's sum of codes from k_prep_tok's per-warp parts (two 16-byte loads).
__device__ __forceinline__ int psum_total(const int *p) {
    const int4 a = __ldcg((const int4 *)p), b = __ldcg((const int4 *)p + 1);
    return ((a.x + a.y) + (a.z + a.w)) + ((b.x + b.y) + (b.z + b.w));
}

// One token's input vector, by a NORM_THREADS block (x is read through L2: other blocks of the same grid may have
// just written it): RMSNorm (if norm_w) as forward.c's rmsnorm, then floats (xs,
// rounded to f16 for PREP_FLOAT_F16) or int8 codes as scalar.c's quantize_i8 / quantize_q8k: q (n_pad bytes,
// zero padded), qd (scale, or d per 256-block), qsum (per 256-block for Q8_K; per token: the caller adds
// sc->wsum). Thread i owns elements i + 256k until the last barrier, which keeps barriers to three. xs should be
// shared memory (n floats): it is read back element by element.
__device__ void prep_vector(const float *x, int n, int n_pad, const float *norm_w, float eps, int mode, float *xs,
                            int8_t *q, float *qd, int *qsum, prep_scratch *sc) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    float scale = 1.0f;
    double l = 0.0;
    for (int i0 = tid; i0 < n; i0 += PREP_BATCH * NORM_THREADS) { // PREP_BATCH loads in flight, then the arithmetic
        float v[PREP_BATCH];
#pragma unroll
        for (int k = 0; k < PREP_BATCH; k++) v[k] = i0 + k * NORM_THREADS < n ? __ldcg(x + i0 + k * NORM_THREADS) : 0.0f;
#pragma unroll
        for (int k = 0; k < PREP_BATCH; k++)
            if (i0 + k * NORM_THREADS < n) xs[i0 + k * NORM_THREADS] = v[k], l += (double)(v[k] * v[k]);
    }
    if (norm_w) {
        sc->lanes[tid] = l;
        __syncthreads();
        scale = 1.0f / sqrtf((float)(fold_256(sc->lanes) / (double)n) + eps);
    }
    float m = 0.0f;
    for (int i0 = tid; i0 < n; i0 += PREP_BATCH * NORM_THREADS) {
        float wv[PREP_BATCH], xv[PREP_BATCH];
#pragma unroll
        for (int k = 0; k < PREP_BATCH; k++) {
            const int i = i0 + k * NORM_THREADS;
            wv[k] = norm_w && i < n ? norm_w[i] : 1.0f;
            xv[k] = i < n ? xs[i] : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < PREP_BATCH; k++) {
            const int i = i0 + k * NORM_THREADS;
            if (i >= n) break;
            float y = norm_w ? (xv[k] * scale) * wv[k] : xv[k];
            if (mode == PREP_FLOAT_F16) y = round_f16(y);
            xs[i] = y;
            m = fmaxf(m, fabsf(y));
        }
    }
    if (mode == PREP_TOKEN) {
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(FULL_MASK, m, o));
        if (lane == 0) sc->wmax[warp] = m;
        __syncthreads();
        for (int w = 0; w < NORM_THREADS / 32; w++) m = fmaxf(m, sc->wmax[w]);
        const float s = (float)(127.0 / fmax((double)m, 1e-5));
        int acc = 0;
        for (int i0 = 4 * tid; i0 < n_pad; i0 += 4 * NORM_THREADS) { // 4 codes a store (n_pad: a multiple of 256)
            int r[4];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                r[e] = i0 + e < n ? max(-128, min(127, __float2int_rn(xs[i0 + e] * s))) : 0;
                acc += r[e];
            }
            *(char4 *)(q + i0) = make_char4((signed char)r[0], (signed char)r[1], (signed char)r[2], (signed char)r[3]);
        }
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(FULL_MASK, acc, o);
        if (lane == 0) sc->wsum[warp] = acc;
        if (tid == 0) qd[0] = s;
    } else if (mode == PREP_Q8K) {
        __syncthreads();
        for (int b = warp; b < n / 256; b += NORM_THREADS / 32) {
            const float *xb = xs + 256 * b;
            float amax = 0.0f, mv = 0.0f;
            int first = 1 << 30;
            for (int i = lane; i < 256; i += 32) {
                const float a = fabsf(xb[i]);
                if (a > amax) amax = a, mv = xb[i], first = i;
            }
            for (int o = 16; o > 0; o >>= 1) { // the largest |x|, the first one on ties, as the CPU's scan
                const float a2 = __shfl_xor_sync(FULL_MASK, amax, o), m2 = __shfl_xor_sync(FULL_MASK, mv, o);
                const int f2 = __shfl_xor_sync(FULL_MASK, first, o);
                if (a2 > amax || (a2 == amax && f2 < first)) amax = a2, mv = m2, first = f2;
            }
            const float is = amax == 0.0f ? 0.0f : -127.0f / mv;
            int s = 0;
            for (int i = lane; i < 256; i += 32) {
                const int r = amax == 0.0f ? 0 : min(127, __float2int_rn(is * xb[i]));
                q[256 * b + i] = (int8_t)r;
                s += r;
            }
            for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(FULL_MASK, s, o);
            if (lane == 0) qd[b] = amax == 0.0f ? 0.0f : 1.0f / is, qsum[b] = s;
        }
    } else if (mode == PREP_Q80) { // scalar.c's tl_quantize_q8_0_x86, a warp per 32-block, lane i element i
        __syncthreads();
        for (int b = warp; b < n_pad / 32; b += NORM_THREADS / 32) {
            const int i = 32 * b + lane;
            const float xv = i < n ? xs[i] : 0.0f;
            float amax = fabsf(xv); // the maximum is exact in any order
            for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(FULL_MASK, amax, o));
            const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
            const int r = __float2int_rn(xv * id); // |x id| <= 127; rne, as the CPU's magic-number rounding
            q[i] = (int8_t)r;
            int s = r;
            for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(FULL_MASK, s, o);
            if (lane == 0) qd[b] = __half2float(__float2half_rn(amax / 127.0f)), qsum[b] = s; // the f16 scale
        }
    }
    __syncthreads();
}

__device__ __forceinline__ int token_sum(const prep_scratch *sc) {
    int s = 0;
    for (int w = 0; w < NORM_THREADS / 32; w++) s += sc->wsum[w];
    return s;
}

// Where a linear's prepared input lives (k_prep or a producer's last block writes it): token t's codes at
// q + t * n_pad, its scale(s) at qd + t * qstride and its sum(s) at qsum + t * qstride (qstride: steps, or
// Q80_PER_STEP * steps for Q8_0).
struct prep_out {
    int8_t *q;
    float *qd;
    int *qsum;
    float *xs; // scratch, n floats per token
};

// One block per token prepares its row (prompts; and decode, unless the producer's last block does it). The norm
// weights are copied to shared memory before the input is ready (they are constants), so only the input's load is
// on the critical path. Dynamic shared memory: 2 n floats.
__global__ void __launch_bounds__(NORM_THREADS) k_prep(const float *x, long x_stride, int n, int n_pad,
                                                        const float *norm_w, float eps, int mode, prep_out o,
                                                        int qstride) {
    extern __shared__ float xs_prep[];
    __shared__ prep_scratch sc;
    float *nw = xs_prep + n;
    if (norm_w) // thread i copies the elements i + 256k that it alone reads in prep_vector: no barrier needed
        for (int i0 = threadIdx.x; i0 < n; i0 += PREP_BATCH * NORM_THREADS) {
            float v[PREP_BATCH];
#pragma unroll
            for (int k = 0; k < PREP_BATCH; k++) v[k] = i0 + k * NORM_THREADS < n ? norm_w[i0 + k * NORM_THREADS] : 0.0f;
#pragma unroll
            for (int k = 0; k < PREP_BATCH; k++)
                if (i0 + k * NORM_THREADS < n) nw[i0 + k * NORM_THREADS] = v[k];
        }
    dep_launch_next();
    dep_wait();
    const int t = blockIdx.x;
    prep_vector(x + (long)t * x_stride, n, n_pad, norm_w ? nw : NULL, eps, mode, xs_prep, o.q + (long)t * n_pad,
                o.qd + (long)t * qstride, o.qsum + (long)t * qstride, &sc);
    if (mode == PREP_TOKEN && threadIdx.x == 0) o.qsum[(long)t * qstride] = token_sum(&sc);
    if (mode == PREP_FLOAT || mode == PREP_FLOAT_F16) // for k_float_gemv_tok: the normed row, n floats per token
        for (int i = threadIdx.x; i < n; i += NORM_THREADS) o.xs[(long)t * n + i] = xs_prep[i];
}

// k_prep for per-token int8 inputs read by k_tern_gemv with TG_PSUM (one block per token; decode and micro-batches
// of < GEMM_MIN_T tokens): the same operations as prep_vector's PREP_TOKEN, with a shorter chain after the wait.
// Thread i keeps elements i + 256k (k < K) and their norm weights in registers (no shared-memory round trip, one
// batch of loads even for 6912 inputs), quantizes the elements it owns (byte stores, 32 contiguous per warp
// instruction) and writes its warp's sum of codes (the GEMV adds the PSUM_PARTS parts): two barriers (the RMS
// lanes, the maximum) instead of three. The maximum of non-negative floats is the maximum of their bits as
// unsigned integers (one redux per warp; no NaN reaches it: fmaxf drops them, as the CPU's comparison does).
// 127 / max is a float division when max >= 1e-5: (float)(127.0 / (double)m) is then the same number (rounding
// the double quotient to float is innocuous: 53 >= 2 * 24 + 2).
template <int K>
__global__ void __launch_bounds__(NORM_THREADS) k_prep_tok(const float *x, long x_stride, int n, int n_pad,
                                                            const float *norm_w, float eps, int8_t *q, float *qd,
                                                            int qstride, int *psum) {
    __shared__ double lanes[NORM_THREADS];
    __shared__ unsigned wmax[NORM_THREADS / 32];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, t = blockIdx.x;
    float nw[K], v[K];
#pragma unroll
    for (int k = 0; k < K; k++) nw[k] = norm_w && tid + k * NORM_THREADS < n ? norm_w[tid + k * NORM_THREADS] : 1.0f;
    dep_launch_next();
    dep_wait();
    if (qstride < 0) { // a timing experiment (SKIP_PREP_TAIL): the norm weights are loaded, nothing is computed
        float h = 0.0f;
#pragma unroll
        for (int k = 0; k < K; k++) h += nw[k];
        if (h == 12345.0f) qd[0] = h; // (keeps the loads)
        return;
    }
    const float *xt = x + (long)t * x_stride;
#pragma unroll
    for (int k = 0; k < K; k++) v[k] = tid + k * NORM_THREADS < n ? __ldcg(xt + tid + k * NORM_THREADS) : 0.0f;
    float scale = 1.0f;
    if (norm_w) { // forward.c's rmsnorm: lane i adds its squares in element order, then lanes.h's fold
        double l = 0.0;
#pragma unroll
        for (int k = 0; k < K; k++)
            if (tid + k * NORM_THREADS < n) l += (double)(v[k] * v[k]);
        lanes[tid] = l;
        __syncthreads();
        scale = 1.0f / sqrtf((float)(fold_256(lanes) / (double)n) + eps);
    }
    float m = 0.0f;
#pragma unroll
    for (int k = 0; k < K; k++)
        if (tid + k * NORM_THREADS < n) {
            if (norm_w) v[k] = (v[k] * scale) * nw[k];
            m = fmaxf(m, fabsf(v[k]));
        }
    const unsigned wm = __reduce_max_sync(FULL_MASK, __float_as_uint(m));
    if (lane == 0) wmax[warp] = wm;
    __syncthreads();
    unsigned mb = wmax[0];
    for (int w = 1; w < NORM_THREADS / 32; w++) mb = max(mb, wmax[w]);
    m = __uint_as_float(mb);
    const float s = (double)m >= 1e-5 ? 127.0f / m : (float)(127.0 / 1e-5); // quantize_i8's max starts at 1e-5
    int8_t *qt = q + (long)t * n_pad;
    int acc = 0;
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int i = tid + k * NORM_THREADS;
        if (i >= n_pad) break;
        const int r = i < n ? max(-128, min(127, __float2int_rn(v[k] * s))) : 0;
        qt[i] = (int8_t)r;
        acc += r;
    }
    const int ws = __reduce_add_sync(FULL_MASK, acc);
    if (lane == 0) psum[t * PSUM_PARTS + warp] = ws;
    if (tid == 0) qd[(long)t * qstride] = s;
}

// The next ternary linear's input preparation for one token, done once per step by the last block of the kernel
// that produces that input (decode), so the next GEMV's blocks only stream weights. mode < 0: nothing to do.
#define PREP_TIMING_STOP (-2) // prep_args.mode of SKIP_GEMV_TAIL (backend_cuda.cu): the GEMV stops after its wait

struct prep_args {
    const float *x;
    const float *norm_w;
    float eps;
    int n, n_pad, steps, mode;
    prep_out o;
    unsigned *done; // blocks finished; the last one prepares, then resets it for the next kernel
};

// Early in a producer kernel (before its inputs are ready): the norm weights the last block will read, to L2.
__device__ __forceinline__ void prep_prefetch(const prep_args &p) {
    if (p.mode < 0 || p.norm_w == NULL || blockIdx.x != 0 || blockIdx.y != 0) return;
    for (int i = 32 * threadIdx.x; i < p.n; i += 32 * blockDim.x) asm volatile("prefetch.global.L2 [%0];" ::"l"(p.norm_w + i));
}

// Called by every thread of every block (NORM_THREADS per block) after the block's last output store; xs: n
// floats of shared memory the block no longer needs.
__device__ void finish_and_prep(const prep_args &p, float *xs) {
    if (p.mode < 0) return;
    __shared__ prep_scratch sc;
    __shared__ unsigned ticket;
    __syncthreads(); // the block's outputs are written; thread 0's fence orders them all (fences are cumulative)
    if (threadIdx.x == 0) {
        __threadfence();
        ticket = atomicAdd(p.done, 1u);
        __threadfence(); // the other blocks' outputs are visible to this one (prep_vector reads x through L2)
    }
    __syncthreads();
    if (ticket != gridDim.x * gridDim.y - 1) return;
    prep_vector(p.x, p.n, p.n_pad, p.norm_w, p.eps, p.mode, xs, p.o.q, p.o.qd, p.o.qsum, &sc);
    if (threadIdx.x == 0) {
        if (p.mode == PREP_TOKEN) p.o.qsum[0] = token_sum(&sc);
        *p.done = 0;
    }
}

// ------------------------------------------------------------------------------------------------ ternary GEMV

#define TG_PF 8 // steps per thread loaded before the input is ready (more are loaded on the way)

#define OWN_MAX_N (PREP_BATCH * NORM_THREADS) // the longest input a GEMV prepares itself (one batch of loads)

#define FP_K 12 // TG_FPREP: elements per thread (inputs of at most 3072)
#define FP_PF 5 // TG_FPREP: steps per thread loaded before the wait (2B4T's gate|up: 5 a K-slice)

// TG_FPREP's shared memory: the staged codes and scale (stage_smem), then the norm weights (n floats), which are
// copied before the input is ready.
__host__ __device__ inline size_t fprep_nw_offset(int steps) { return (stage_smem(steps) + 15) / 16 * 16; }
__host__ __device__ inline size_t fprep_smem(int n, int steps) { return fprep_nw_offset(steps) + (size_t)n * 4; }

// Before the wait: thread i copies the norm weights of the elements i + 256k that it alone reads later (no barrier).
__device__ __forceinline__ void fprep_weights(const io_args &io, int n, float *nws) {
    if (!io.norm_w) return;
#pragma unroll
    for (int k = 0; k < FP_K; k++)
        if (threadIdx.x + k * NORM_THREADS < n) nws[threadIdx.x + k * NORM_THREADS] = __ldg(io.norm_w + threadIdx.x + k * NORM_THREADS);
}

// After the wait: token t's input as k_prep_tok computes it (lane i of the RMS sum adds the squares of elements
// i + 256k in element order in double, lanes.h's fold; y = (x * scale) * w; the maximum as unsigned bits; 127 / max;
// rne codes), written as the staged codes of step k at byte i (sq), and the token's scale and code sum returned.
// Three barriers: the RMS lanes, the maximum, the codes.
__device__ __forceinline__ void tg_fprep(const io_args &io, int t, int n, int n_pad, const float *nws, int8_t *sq,
                                         float *scl, int *sum) {
    __shared__ double lanes[NORM_THREADS];
    __shared__ unsigned wmax[NORM_THREADS / 32];
    __shared__ int wsum[NORM_THREADS / 32];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float *xt = io.x + (long)t * io.x_stride;
    float v[FP_K];
#pragma unroll
    for (int k = 0; k < FP_K; k++) v[k] = tid + k * NORM_THREADS < n ? __ldcg(xt + tid + k * NORM_THREADS) : 0.0f;
    if (io.norm_w) {
        double l = 0.0;
#pragma unroll
        for (int k = 0; k < FP_K; k++)
            if (tid + k * NORM_THREADS < n) l += (double)(v[k] * v[k]);
        lanes[tid] = l;
        __syncthreads();
        const float scale = 1.0f / sqrtf((float)(fold_256(lanes) / (double)n) + io.eps);
#pragma unroll
        for (int k = 0; k < FP_K; k++)
            if (tid + k * NORM_THREADS < n) v[k] = (v[k] * scale) * nws[tid + k * NORM_THREADS];
    }
    float m = 0.0f;
#pragma unroll
    for (int k = 0; k < FP_K; k++) m = fmaxf(m, fabsf(v[k])); // (elements past n are 0)
    const unsigned wm = __reduce_max_sync(FULL_MASK, __float_as_uint(m));
    if (lane == 0) wmax[warp] = wm;
    __syncthreads();
    unsigned mb = wmax[0];
    for (int w = 1; w < NORM_THREADS / 32; w++) mb = max(mb, wmax[w]);
    m = __uint_as_float(mb);
    const float s = (double)m >= 1e-5 ? 127.0f / m : (float)(127.0 / 1e-5); // quantize_i8's max starts at 1e-5
    int acc = 0;
#pragma unroll
    for (int k = 0; k < FP_K; k++) {
        const int i = tid + k * NORM_THREADS;
        if (i >= n_pad) break;
        const int r = i < n ? max(-128, min(127, __float2int_rn(v[k] * s))) : 0;
        sq[k * STAGE_STEP + tid] = (int8_t)r;
        acc += r;
    }
    const int ws = __reduce_add_sync(FULL_MASK, acc);
    if (lane == 0) wsum[warp] = ws;
    __syncthreads();
    int tot = 0;
    for (int w = 0; w < NORM_THREADS / 32; w++) tot += wsum[w];
    *scl = s, *sum = tot;
}

// ------------------------------------------------------------------------------------------------ TG_CPREP
// Thread-block clusters (sm_90): the cluster's rank, barrier (release / acquire at cluster scope: the other blocks'
// stores into this block's shared memory are visible after it) and stores into another block's shared memory.
#define CP_C 8                         // blocks per cluster (the portable maximum)
#define CP_LPB (NORM_THREADS / CP_C)   // RMS lanes per block: 32, one warp's lanes
#define CP_R 4                         // elements per thread: inputs of at most CP_R * CP_C steps (8192)
static_assert(CP_LPB == 32, "tg_cprep: a block's lanes are one warp's");

__device__ __forceinline__ unsigned cl_rank() {
    unsigned r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
#endif
    return r;
}

__device__ __forceinline__ void cl_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
#else
    __trap(); // the host launches TG_CPREP on sm_90 only
#endif
}

// The address of local shared variable p in the shared memory of the cluster's block `rank`.
__device__ __forceinline__ uint32_t cl_map(const void *p, unsigned rank) {
    uint32_t d = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(rank));
#endif
    return d;
}

__device__ __forceinline__ void cl_st_u32(uint32_t a, unsigned v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("st.shared::cluster.u32 [%0], %1;" ::"r"(a), "r"(v) : "memory");
#endif
}

__device__ __forceinline__ void cl_st_f64(uint32_t a, double v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("st.shared::cluster.f64 [%0], %1;" ::"r"(a), "d"(v) : "memory");
#endif
}

// Element u of thread threadIdx.x in block `rank` of the cluster: block c owns RMS lanes 32c .. 32c + 31, i.e. the
// elements 256k + 32c + j; e = tid + 256u numbers them (step k = e / 32, j = e % 32: one step per warp and round).
__device__ __forceinline__ int cp_elem(int u, unsigned rank) {
    const int e = threadIdx.x + NORM_THREADS * u;
    return NORM_THREADS * (e / CP_LPB) + (int)rank * CP_LPB + e % CP_LPB;
}

// TG_CPREP's dynamic shared memory: the staged codes and scale (stage_smem), then the norm weights of the block's
// elements by e (CP_R * NORM_THREADS floats; in registers they cost spills).
__host__ __device__ inline size_t cprep_smem(int steps) { return fprep_nw_offset(steps) + (size_t)CP_R * NORM_THREADS * 4; }

// Before the wait: the norm weights of this thread's elements, which it alone reads later (no barrier).
__device__ __forceinline__ void cprep_weights(const io_args &io, int n, float *nw) {
    const unsigned rank = cl_rank();
#pragma unroll
    for (int u = 0; u < CP_R; u++) {
        const int i = cp_elem(u, rank);
        nw[threadIdx.x + NORM_THREADS * u] = io.norm_w && i < n ? __ldg(io.norm_w + i) : 1.0f;
    }
}

// After the wait: token t's input as k_prep_tok computes it, by the CP_C blocks of the cluster together. The same
// operations in the same order: lane j of the RMS sum (in block j / 32) adds the squares (float products) of
// elements j + 256k in element order in double; every block folds the 256 lanes as lanes.h does; y = (x * scale) *
// w; the maximum of |y| as unsigned bits (any grouping); 127 / max; rne codes; the sum of codes (integers, any
// order). Each block writes its codes (4 bytes a store) into every block's TG_STAGE layout (sq). Three cluster
// barriers and one block barrier after the wait.
__device__ __forceinline__ void tg_cprep(const io_args &io, int t, int n, int steps, const float *nw, int8_t *sq,
                                         float *scl, int *sum) {
    __shared__ float sqr[CP_R * NORM_THREADS]; // squares by e (step k, lane j)
    __shared__ double lanes[NORM_THREADS];
    __shared__ __align__(16) unsigned cmax[CP_C * 8]; // per block and warp
    __shared__ __align__(16) int csum[CP_C * 8];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const unsigned rank = cl_rank();
    const float *xt = io.x + (long)t * io.x_stride;
    float v[CP_R];
#pragma unroll
    for (int u = 0; u < CP_R; u++) {
        const int i = cp_elem(u, rank);
        v[u] = i < n ? __ldcg(xt + i) : 0.0f;
    }
    if (io.norm_w) {
#pragma unroll
        for (int u = 0; u < CP_R; u++)
            if (tid + NORM_THREADS * u < steps * CP_LPB) sqr[tid + NORM_THREADS * u] = v[u] * v[u];
        __syncthreads();
        if (warp == 0) {
            double l = 0.0;
            for (int k = 0; k < steps; k++)
                if (NORM_THREADS * k + (int)rank * CP_LPB + lane < n) l += (double)sqr[k * CP_LPB + lane];
#pragma unroll
            for (int d = 0; d < CP_C; d++) cl_st_f64(cl_map(&lanes[rank * CP_LPB + lane], d), l);
        }
        cl_sync();
        const float scale = 1.0f / sqrtf((float)(fold_256(lanes) / (double)n) + io.eps);
#pragma unroll
        for (int u = 0; u < CP_R; u++)
            if (cp_elem(u, rank) < n) v[u] = (v[u] * scale) * nw[tid + NORM_THREADS * u];
    }
    float m = 0.0f;
#pragma unroll
    for (int u = 0; u < CP_R; u++) m = fmaxf(m, fabsf(v[u])); // (elements past n are 0)
    const unsigned wm = __reduce_max_sync(FULL_MASK, __float_as_uint(m));
    if (lane < CP_C) cl_st_u32(cl_map(&cmax[rank * 8 + warp], lane), wm);
    cl_sync();
    uint4 mv = ((const uint4 *)cmax)[0];
#pragma unroll
    for (int i = 1; i < CP_C * 2; i++) {
        const uint4 b = ((const uint4 *)cmax)[i];
        mv.x = max(mv.x, b.x), mv.y = max(mv.y, b.y), mv.z = max(mv.z, b.z), mv.w = max(mv.w, b.w);
    }
    m = __uint_as_float(max(max(mv.x, mv.y), max(mv.z, mv.w)));
    const float s = (double)m >= 1e-5 ? 127.0f / m : (float)(127.0 / 1e-5); // quantize_i8's max starts at 1e-5
    int acc = 0;
#pragma unroll
    for (int u = 0; u < CP_R; u++) {
        const int k = (tid + NORM_THREADS * u) / CP_LPB; // the same for the whole warp
        if (k >= steps) break;
        const int i = cp_elem(u, rank);
        const int r = i < n ? max(-128, min(127, __float2int_rn(v[u] * s))) : 0;
        acc += r;
        const unsigned b = (unsigned)r & 0xffu, base = lane & ~3;
        const unsigned word = __shfl_sync(FULL_MASK, b, base) | __shfl_sync(FULL_MASK, b, base + 1) << 8 |
                              __shfl_sync(FULL_MASK, b, base + 2) << 16 | __shfl_sync(FULL_MASK, b, base + 3) << 24;
        int8_t *dst = sq + k * STAGE_STEP + rank * CP_LPB + base; // the 4 lanes of a word store it to 2 blocks each
#pragma unroll
        for (int d = lane & 3; d < CP_C; d += 4) cl_st_u32(cl_map(dst, d), word);
    }
    const int ws = __reduce_add_sync(FULL_MASK, acc);
    if (lane < CP_C) cl_st_u32(cl_map(&csum[rank * 8 + warp], lane), (unsigned)ws);
    cl_sync(); // codes and sums are in every block; no remote store follows, so a block may exit after its work
    int4 sv = ((const int4 *)csum)[0];
#pragma unroll
    for (int i = 1; i < CP_C * 2; i++) {
        const int4 b = ((const int4 *)csum)[i];
        sv.x += b.x, sv.y += b.y, sv.z += b.z, sv.w += b.w;
    }
    *scl = s, *sum = (sv.x + sv.y) + (sv.z + sv.w);
}

// Where k_tern_gemv<ACT_TOKEN, true> keeps the input it prepares (byte offsets in its dynamic shared memory): the
// input (n floats, prep_vector's xs), the norm weights (n floats, copied before the input is ready), the int8 codes
// (n_pad bytes, 16-byte aligned), the scale.
__host__ __device__ inline size_t own_q_offset(int n) { return ((size_t)n * 8 + 15) / 16 * 16; }
__host__ __device__ inline size_t own_smem(int n, int steps) { return own_q_offset(n) + (size_t)steps * 256 + 16; }

// k_tern_gemv's dynamic shared memory: Q8_K's per-step sums or Q8_0's per-weight-block values (64 / S rows), then
// the next input's preparation; own_n: the input it prepares itself (0: none); stage: TG_STAGE's copy of the input.
__host__ __device__ inline size_t tern_gemv_smem(int act, int bps, int lS, int steps, int next_n, int own_n = 0,
                                                 int stage = 0) {
    const size_t part = act == ACT_TOKEN ? 0 : (size_t)(64 >> lS) * steps * (act == ACT_Q80 ? bps : 1) * 4;
    const size_t prep = (size_t)next_n * 4, own = own_n ? own_smem(own_n, steps) : 0, st = stage ? stage_smem(steps) : 0;
    const size_t m = part > prep ? part : prep, m2 = m > own ? m : own;
    return m2 > st ? m2 : st;
}

// One step (256 codes) of a row by thread g of its row group: a partial integer dot product (qs: the step's codes
// of the prepared input, in shared memory or read through L1: every row of the block reads the same ones). split:
// four independent dp4a chains (shorter latency; integer sums, so the same result).
__device__ __forceinline__ int tern_step(uint4 w, const int8_t *qs, int g, bool split) {
    const int4 *a = (const int4 *)qs;
    if (split) {
        const int c0 = dot16(w.x, a[CHUNK(0, g)], 0), c1 = dot16(w.y, a[CHUNK(1, g)], 0);
        const int c2 = dot16(w.z, a[CHUNK(2, g)], 0), c3 = dot16(w.w, a[CHUNK(3, g)], 0);
        return (c0 + c1) + (c2 + c3);
    }
    int acc = dot16(w.x, a[CHUNK(0, g)], 0);
    acc = dot16(w.y, a[CHUNK(1, g)], acc);
    acc = dot16(w.z, a[CHUNK(2, g)], acc);
    return dot16(w.w, a[CHUNK(3, g)], acc);
}

// Q1_0 / Q2_0: step s of a row by thread g of its row group. Thread g holds 32-blocks g and g + 4 of the step
// (chunks 2g, 2g + 1 and 8 + 2g, 9 + 2g); each block's integer sum becomes d_act * (float)sum as in scalar.c's
// dot_q1_0 / dot_q2_0, the row group adds them per weight block in the CPU's order (shuffles), times the block's d,
// and stores one float per weight block into part (bps per step), which the row's output lane adds in order.
__device__ __forceinline__ void q80_step(uint4 w, const int8_t *q, const float *qd, const int *qs, int s, int g,
                                         unsigned quad, int lane, int bps, const float *dw, float *part) {
    const int4 *a = (const int4 *)(q + 256 * s);
    const int lo = dot16(w.y, a[CHUNK(1, g)], dot16(w.x, a[CHUNK(0, g)], 0));
    const int hi = dot16(w.w, a[CHUNK(3, g)], dot16(w.z, a[CHUNK(2, g)], 0));
    const int b0 = Q80_PER_STEP * s + g, b1 = b0 + 4;
    const float pa = qd[b0] * (float)(lo - qs[b0]), pb = qd[b1] * (float)(hi - qs[b1]);
    if (bps == 2) { // Q1_0: weight blocks of 128 = act blocks 0..3 (the group's pa) and 4..7 (pb)
        const int base = lane & ~3;
        const float a1 = __shfl_sync(quad, pa, base + 1), a2 = __shfl_sync(quad, pa, base + 2), a3 = __shfl_sync(quad, pa, base + 3);
        const float c1 = __shfl_sync(quad, pb, base + 1), c2 = __shfl_sync(quad, pb, base + 2), c3 = __shfl_sync(quad, pb, base + 3);
        if (g == 0) {
            part[2 * s] = dw[2 * s] * (((pa + a1) + a2) + a3);
            part[2 * s + 1] = dw[2 * s + 1] * (((pb + c1) + c2) + c3);
        }
    } else { // Q2_0: weight blocks of 64 = act blocks (0, 1), (2, 3) from pa and (4, 5), (6, 7) from pb
        const float oa = __shfl_xor_sync(quad, pa, 1), ob = __shfl_xor_sync(quad, pb, 1);
        if ((g & 1) == 0) {
            const int m = g >> 1;
            part[4 * s + m] = dw[4 * s + m] * (pa + oa);
            part[4 * s + 2 + m] = dw[4 * s + 2 + m] * (pb + ob);
        }
    }
}

// A step by masks instead of shifts: byte b of word j holds codes 4i + b at bits 2i, so word & (3 << 2i) is 4^i
// times the four codes i; a[i] accumulates 4^i times its dot products (i = 3 with unsigned bytes, up to 128), and
// the caller adds a[i] >> 2i (exact: every term is a multiple of 4^i). One LOP3 per dp4a instead of two.
__device__ __forceinline__ int dp4a_us(unsigned a, int b, int c) {
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

__device__ __forceinline__ void tern_step_mask(uint4 w, const int8_t *qs, int g, int *a) {
    const int4 *x = (const int4 *)qs;
    const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const int4 v = x[CHUNK(j, g)];
        a[0] = __dp4a((int)(ws[j] & 0x03030303u), v.x, a[0]);
        a[1] = __dp4a((int)(ws[j] & 0x0c0c0c0cu), v.y, a[1]);
        a[2] = __dp4a((int)(ws[j] & 0x30303030u), v.z, a[2]);
        a[3] = dp4a_us(ws[j] & 0xc0c0c0c0u, v.w, a[3]);
    }
}

// y = W x for one token per blockIdx.y, W ternary, x prepared (prep_out). A warp owns 8 / S rows: each row has 4
// threads g in each of S K-slices (S = 1, 2, 4, 8; slice k takes steps k, k + S, ...), all in one warp, so partial
// sums meet through shuffles: no shared memory and no barrier (Q8_K keeps its per-step sums in the warp's shared
// memory, 8 / S rows x steps ints, to add them in block order). Up to TG_PF steps per thread are loaded before the
// previous kernel has finished (programmatic dependent launch). Dynamic shared memory: tern_gemv_smem.
// One instance per activation kind (ACT == w.act), so each has only its own code in its registers.
// OWN (I2_S, n <= OWN_MAX_N): every block prepares the input itself from io.x / io.norm_w (prep_vector into shared
// memory), so no k_prep launch and no k_prep -> GEMV boundary: the blocks' redundant copies of one short chain run
// side by side while their weights are already in registers.
template <int ACT, bool OWN = false, int TGO = 0>
__global__ void __launch_bounds__(NORM_THREADS, 4) k_tern_gemv(tern_w w, io_args io, prep_out in, int lS, prep_args next) {
    extern __shared__ __align__(16) int part_all[];
    const int S = 1 << lS, RW = 8 >> lS, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, t = blockIdx.y;
    const int g = lane & 3, slice = (lane >> 2) & (S - 1), rr = lane >> (2 + lS);
    const int row = (blockIdx.x * 8 + warp) * RW + rr, r = min(row, w.rows - 1);
    const uint4 *wr = w.codes + (size_t)r * w.steps * 4 + g;
    // TG_FPREP keeps its input in registers, TG_CPREP its elements and norm weights: fewer steps loaded ahead (the
    // rest are loaded after the wait; 8 spill with TG_CPREP)
    constexpr int PF = ACT == ACT_TOKEN && !OWN && (TGO & (TG_FPREP | TG_CPREP)) ? FP_PF : TG_PF;
    uint4 pf[PF];
#pragma unroll
    for (int i = 0; i < PF; i++)
        if (slice + S * i < w.steps) pf[i] = __ldg(wr + (slice + S * i) * 4);
    const bool out_lane = (lane & (4 * S - 1)) == 0;
    const unsigned quad = 0xfu << (lane & ~3); // a row slice's 4 threads, which always run the same steps
    const float rscale = w.row_scale[r], oscale = w.out_scale[r], rbias = w.bias ? w.bias[r] : 0.0f;
    static_assert(!OWN || ACT == ACT_TOKEN, "only per-token int8 inputs are prepared in the GEMV");
    uint8_t *own = (uint8_t *)part_all;
    if (OWN && io.norm_w) // the constant norm weights, before the input is ready (thread i: elements i + 256k)
        for (int i = threadIdx.x; i < w.n; i += NORM_THREADS) ((float *)own)[w.n + i] = io.norm_w[i];
    constexpr bool fprep = ACT == ACT_TOKEN && !OWN && (TGO & TG_FPREP);
    static_assert(!fprep || (TGO & TG_STAGE), "TG_FPREP writes TG_STAGE's layout");
    float *fp_nw = (float *)((uint8_t *)part_all + fprep_nw_offset(w.steps));
    if (fprep) fprep_weights(io, w.n, fp_nw);
    constexpr bool cprep = ACT == ACT_TOKEN && !OWN && (TGO & TG_CPREP);
    static_assert(!cprep || ((TGO & TG_STAGE) && !fprep), "TG_CPREP writes TG_STAGE's layout");
    float *cp_nw = (float *)((uint8_t *)part_all + fprep_nw_offset(w.steps));
    if constexpr (cprep) {
        cprep_weights(io, w.n, cp_nw);
        cl_sync(); // every block of the cluster has started before any writes into its shared memory
    }
    prep_prefetch(next);
    dep_launch_next();
    dep_wait();
    if (next.mode == PREP_TIMING_STOP) { // a timing experiment: the weights are loaded, nothing is computed
        unsigned h = 0;
#pragma unroll
        for (int i = 0; i < PF; i++)
            if (slice + S * i < w.steps) h ^= pf[i].x ^ pf[i].y ^ pf[i].z ^ pf[i].w;
        if (h == 0x5a5a5a5au) io.y[0] = 0.0f; // (keeps the loads)
        return;
    }
    constexpr bool q80 = ACT == ACT_Q80;
    const int per_step = q80 ? w.bps : 1, qstride = q80 ? Q80_PER_STEP * w.steps : w.steps;
    constexpr bool tok = ACT == ACT_TOKEN && !OWN, stage = tok && (TGO & TG_STAGE), psum = tok && (TGO & TG_PSUM);
    constexpr bool split = TGO & TG_SPLIT;
    static_assert((TGO & ~TG_SPLIT) == 0 || tok, "options for per-token int8 inputs only");
    constexpr bool mask = tok && (TGO & TG_MASK);
    int am[4] = {0, 0, 0, 0};
    const int8_t *q = in.q + (long)t * w.steps * 256;
    const float *qd = in.qd + (long)t * qstride;
    const int *qs = in.qsum + (long)t * (psum ? PSUM_PARTS : qstride);
    constexpr int qstep = stage ? STAGE_STEP : 256; // bytes from one step of the input to the next
    float fp_scl = 0.0f;
    int fp_sum = 0;
    if (fprep) tg_fprep(io, t, w.n, w.steps * 256, fp_nw, (int8_t *)part_all, &fp_scl, &fp_sum);
    else if constexpr (cprep) tg_cprep(io, t, w.n, w.steps, cp_nw, (int8_t *)part_all, &fp_scl, &fp_sum);
    else if (stage) { // one request per line of the input for the whole block
        int8_t *sq = (int8_t *)part_all;
        const int4 *src = (const int4 *)q;
        for (int i = threadIdx.x; i < w.steps * 16; i += NORM_THREADS)
            *(int4 *)(sq + (i >> 4) * STAGE_STEP + (i & 15) * 16) = __ldcg(src + i);
        float *ss = (float *)(sq + (size_t)w.steps * STAGE_STEP);
        if (threadIdx.x == 0) ss[0] = __ldcg(qd), ((int *)ss)[1] = psum ? psum_total(qs) : __ldcg(qs);
        __syncthreads();
    }
    const int8_t *qb = stage ? (const int8_t *)part_all : q; // the codes as the steps below read them
    int own_sum = 0;
    if (OWN) {
        __shared__ prep_scratch own_sc;
        int8_t *oq = (int8_t *)(own + own_q_offset(w.n));
        float *od = (float *)(oq + (size_t)w.steps * 256);
        prep_vector(io.x + (long)t * io.x_stride, w.n, w.steps * 256, io.norm_w ? (const float *)own + w.n : NULL, io.eps,
                    PREP_TOKEN, (float *)own, oq, od, NULL, &own_sc); // ends with a barrier: codes and scale are visible
        qb = oq, qd = od, own_sum = token_sum(&own_sc);
    }
    int *part = part_all + (warp * RW + rr) * w.steps * per_step;
    const float *dw = q80 ? w.blk_scale + (size_t)r * w.steps * w.bps : NULL;
    const float resid = io.epi == EPI_ADD && out_lane && row < w.rows ? __ldcg(io.y + (long)t * io.y_stride + row) : 0.0f;
    int acc = 0;
#pragma unroll
    for (int i = 0; i < PF; i++) {
        const int s = slice + S * i;
        if (s >= w.steps) break;
        if (q80) {
            q80_step(pf[i], q, qd, qs, s, g, quad, lane, w.bps, dw, (float *)part);
            continue;
        }
        if (mask) {
            tern_step_mask(pf[i], qb + qstep * s, g, am);
            continue;
        }
        const int d = tern_step(pf[i], qb + qstep * s, g, split);
        if (ACT == ACT_Q8K) {
            const int d2 = d + __shfl_xor_sync(quad, d, 1);
            const int d4 = d2 + __shfl_xor_sync(quad, d2, 2);
            if (g == 0) part[s] = d4;
        } else {
            acc += d;
        }
    }
    for (int s = slice + S * PF; s < w.steps; s += S) { // rows longer than PF * S steps
        if (q80) {
            q80_step(__ldg(wr + s * 4), q, qd, qs, s, g, quad, lane, w.bps, dw, (float *)part);
            continue;
        }
        if (mask) {
            tern_step_mask(__ldg(wr + s * 4), qb + qstep * s, g, am);
            continue;
        }
        const int d = tern_step(__ldg(wr + s * 4), qb + qstep * s, g, split);
        if (ACT == ACT_Q8K) {
            const int d2 = d + __shfl_xor_sync(quad, d, 1);
            const int d4 = d2 + __shfl_xor_sync(quad, d2, 2);
            if (g == 0) part[s] = d4;
        } else {
            acc += d;
        }
    }
    float v = 0.0f;
    if (ACT == ACT_TOKEN) { // scalar.c's i2s result: ((acc - sum) / scale) * tensor scale
        if (mask) acc = (am[0] + (am[1] >> 2)) + ((am[2] >> 4) + (am[3] >> 6));
        if (split && S == 8) acc = __reduce_add_sync(FULL_MASK, acc); // the warp is one row
        else
            for (int o = 1; o < 4 * S; o <<= 1) acc += __shfl_xor_sync(FULL_MASK, acc, o);
        const float *ss = (const float *)((const int8_t *)part_all + (size_t)w.steps * STAGE_STEP); // TG_STAGE's copy
        const float scl = fprep || cprep ? fp_scl : stage ? ss[0] : qd[0];
        const int sum = OWN ? own_sum : fprep || cprep ? fp_sum : stage ? ((const int *)ss)[1] : psum ? psum_total(qs) : qs[0];
        v = (((float)acc - (float)sum) / scl) * rscale;
    } else if (q80) { // dot_q1_0 / dot_q2_0: sum = sum + d_w * sumi over the row's weight blocks, in order
        __syncwarp();
        const float *pv = (const float *)part;
        if (out_lane)
            for (int b = 0; b < w.n / (256 / w.bps); b++) v = v + pv[b];
    } else { // dot_tq: per-block integer sums, added in block order in f32
        __syncwarp();
        if (out_lane)
            for (int s = 0; s < w.steps; s++) v += (float)(part[s] - qs[s]) * (qd[s] * w.blk_scale[(size_t)r * w.steps + s]);
    }
    v *= oscale;
    if (w.bias) v += rbias;
    if (io.epi == EPI_GLU) { // rows 2i (gate) and 2i + 1 (up) are neighbours in this warp (S <= 4)
        const float up = __shfl_down_sync(FULL_MASK, v, 4 * S);
        if (out_lane && (rr & 1) == 0 && row < w.rows) io.y[(long)t * io.y_stride + row / 2] = glu(v, up, io.glu);
    } else if (out_lane && row < w.rows) {
        io.y[(long)t * io.y_stride + row] = io.epi == EPI_ADD ? resid + v : v;
    }
    __syncwarp();
    finish_and_prep(next, (float *)part_all);
}

// Decode (one token per blockIdx.y) for per-token int8 inputs: k_prep_tok's RMSNorm + quantization and
// k_tern_gemv's product in one launch (TERNLM_CUDA_FUSE; off by default: measured slower, docs/PERFORMANCE.md's
// eighth session), so a ternary linear is one kernel boundary instead of two. Every block prepares the whole input
// itself (the same arithmetic as k_prep_tok, thread i owning elements i + 256k: lane i of the RMS sum) straight
// into TG_STAGE's shared-memory layout, while the block's weights (registers; steps past PER prefetched to L1) and
// the norm weights (shared memory) were loaded before the wait. Shape: a row has 4 threads in each of S = 2^lS
// K-slices (as k_tern_gemv); a warp holds U units of RW = 8 / S consecutive rows, a block 8 U RW rows, each thread
// PER steps of each unit before the wait. The host picks U for at most one or two blocks per SM (MINB caps the
// registers at half an SM's), so that the next launch's blocks can be resident while this one runs.
// K >= steps (K * 256 >= the padded input). Dynamic shared memory: fused_smem.
__host__ __device__ inline size_t fused_smem(int n, int steps) { return (size_t)steps * STAGE_STEP + (size_t)n * 4; }

template <int K, int U, int PER, int MINB>
__global__ void __launch_bounds__(NORM_THREADS, MINB) k_tern_gemv_fused(tern_w w, io_args io, int lS, int stop) {
    extern __shared__ __align__(16) uint8_t fsm[];
    __shared__ double lanes[NORM_THREADS];
    __shared__ unsigned wmax[NORM_THREADS / 32];
    __shared__ int wsum[NORM_THREADS / 32];
    const int S = 1 << lS, RW = 8 >> lS, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, t = blockIdx.y;
    const int g = lane & 3, slice = (lane >> 2) & (S - 1), rr = lane >> (2 + lS);
    const int row0 = (blockIdx.x * 8 + warp) * U * RW + rr; // unit u: row0 + u * RW
    const int n = w.n, n_pad = w.steps * 256;
    uint4 pf[U][PER];
    float rs[U], os[U], bs[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int r = min(row0 + u * RW, w.rows - 1);
        const uint4 *wr = w.codes + (size_t)r * w.steps * 4 + g;
#pragma unroll
        for (int i = 0; i < PER; i++)
            if (slice + S * i < w.steps) pf[u][i] = __ldg(wr + (slice + S * i) * 4);
        for (int s = slice + S * PER; s < w.steps; s += S) asm volatile("prefetch.global.L1 [%0];" ::"l"(wr + s * 4));
        rs[u] = w.row_scale[r], os[u] = w.out_scale[r], bs[u] = w.bias ? w.bias[r] : 0.0f;
    }
    int8_t *sq = (int8_t *)fsm;
    float *snw = (float *)(fsm + (size_t)w.steps * STAGE_STEP); // thread i writes and reads its own elements
    const float *nwp = io.norm_w;
    if (nwp)
#pragma unroll
        for (int k = 0; k < K; k++)
            if (tid + k * NORM_THREADS < n) snw[tid + k * NORM_THREADS] = __ldg(nwp + tid + k * NORM_THREADS);
    dep_launch_next();
    dep_wait();
    if (stop) { // a timing experiment (SKIP_GEMV_TAIL): the weights are loaded, nothing is computed
        unsigned h = 0;
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int i = 0; i < PER; i++)
                if (slice + S * i < w.steps) h ^= pf[u][i].x ^ pf[u][i].y ^ pf[u][i].z ^ pf[u][i].w;
        if (h == 0x5a5a5a5au) io.y[0] = 0.0f; // (keeps the loads)
        return;
    }
    const float *xt = io.x + (long)t * io.x_stride;
    float v[K];
#pragma unroll
    for (int k = 0; k < K; k++) v[k] = tid + k * NORM_THREADS < n ? __ldcg(xt + tid + k * NORM_THREADS) : 0.0f;
    const bool out_lane = (lane & (4 * S - 1)) == 0;
    float resid[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int row = row0 + u * RW;
        resid[u] = io.epi == EPI_ADD && out_lane && row < w.rows ? __ldcg(io.y + (long)t * io.y_stride + row) : 0.0f;
    }
    float scale = 1.0f;
    if (nwp) { // forward.c's rmsnorm: lane i adds its squares in element order, then lanes.h's fold
        double l = 0.0;
#pragma unroll
        for (int k = 0; k < K; k++)
            if (tid + k * NORM_THREADS < n) l += (double)(v[k] * v[k]);
        lanes[tid] = l;
        __syncthreads();
        scale = 1.0f / sqrtf((float)(fold_256(lanes) / (double)n) + io.eps);
    }
    float m = 0.0f;
#pragma unroll
    for (int k = 0; k < K; k++)
        if (tid + k * NORM_THREADS < n) {
            if (nwp) v[k] = (v[k] * scale) * snw[tid + k * NORM_THREADS];
            m = fmaxf(m, fabsf(v[k]));
        }
    const unsigned wm = __reduce_max_sync(FULL_MASK, __float_as_uint(m));
    if (lane == 0) wmax[warp] = wm;
    __syncthreads();
    unsigned mb = wmax[0];
#pragma unroll
    for (int i = 1; i < NORM_THREADS / 32; i++) mb = max(mb, wmax[i]);
    m = __uint_as_float(mb);
    const float qs = (double)m >= 1e-5 ? 127.0f / m : (float)(127.0 / 1e-5); // quantize_i8's max starts at 1e-5
    int csum = 0;
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int i = tid + k * NORM_THREADS;
        if (i >= n_pad) break;
        const int c = i < n ? max(-128, min(127, __float2int_rn(v[k] * qs))) : 0;
        sq[k * STAGE_STEP + tid] = (int8_t)c;
        csum += c;
    }
    const int ws = __reduce_add_sync(FULL_MASK, csum);
    if (lane == 0) wsum[warp] = ws;
    __syncthreads(); // codes and sums are visible
    int sum = 0;
#pragma unroll
    for (int i = 0; i < NORM_THREADS / 32; i++) sum += wsum[i];
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int row = row0 + u * RW, r = min(row, w.rows - 1);
        int am[4] = {0, 0, 0, 0};
#pragma unroll
        for (int i = 0; i < PER; i++) {
            const int s = slice + S * i;
            if (s >= w.steps) break;
            tern_step_mask(pf[u][i], sq + STAGE_STEP * s, g, am);
        }
        const uint4 *wr = w.codes + (size_t)r * w.steps * 4 + g;
        for (int s = slice + S * PER; s < w.steps; s += S) tern_step_mask(__ldg(wr + s * 4), sq + STAGE_STEP * s, g, am);
        int acc = (am[0] + (am[1] >> 2)) + ((am[2] >> 4) + (am[3] >> 6));
        if (S == 8) acc = __reduce_add_sync(FULL_MASK, acc); // the warp is one row
        else
            for (int o = 1; o < 4 * S; o <<= 1) acc += __shfl_xor_sync(FULL_MASK, acc, o);
        float val = (((float)acc - (float)sum) / qs) * rs[u]; // scalar.c's i2s result, then out_scale and bias
        val *= os[u];
        if (w.bias) val += bs[u];
        if (io.epi == EPI_GLU) { // rows 2i (gate) and 2i + 1 (up) are neighbours in this warp (S <= 4)
            const float up = __shfl_down_sync(FULL_MASK, val, 4 * S);
            if (out_lane && (rr & 1) == 0 && row < w.rows) io.y[(long)t * io.y_stride + row / 2] = glu(val, up, io.glu);
        } else if (out_lane && row < w.rows) {
            io.y[(long)t * io.y_stride + row] = io.epi == EPI_ADD ? resid[u] + val : val;
        }
    }
}

// ------------------------------------------------------------------------------------------------ float GEMV

// y = W x, W in F16 or F32, x prepared per block; the dot follows lanes.h: element i into lane i % 32. A row has
// 4 threads, thread g holding lanes 8g .. 8g + 7 (one 16-byte load of F16 per 32 elements).
__global__ void __launch_bounds__(NORM_THREADS) k_float_gemv(float_w w, io_args io, int round_in) {
    extern __shared__ __align__(16) uint8_t smem_raw[];
    prep_scratch *sc = (prep_scratch *)smem_raw;
    float *xs = (float *)(smem_raw + (sizeof(prep_scratch) + 15) / 16 * 16);
    const int tid = threadIdx.x, lane = tid & 31, g = lane & 3, t = blockIdx.y;
    const int rows_per_block = NORM_THREADS / 4, tiles = (w.rows + rows_per_block - 1) / rows_per_block;
    dep_launch_next();
    dep_wait();
    prep_vector(io.x + (long)t * io.x_stride, w.n, w.n, io.norm_w, io.eps, round_in ? PREP_FLOAT_F16 : PREP_FLOAT, xs,
                NULL, NULL, NULL, sc);
    const bool vec = (w.n & 7) == 0;
    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const int row = tile * rows_per_block + (tid >> 2), rc = min(row, w.rows - 1);
        float l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        if (vec && w.wh) { // the head's path: four 16-byte loads in flight per thread, then the arithmetic
            const uint4 *wr = (const uint4 *)(w.wh + (size_t)rc * w.n) + g;
            int k = 0;
            for (; k + 128 <= w.n; k += 128) {
                uint4 raw[4];
#pragma unroll
                for (int u = 0; u < 4; u++) raw[u] = __ldg(wr + (k >> 3) + 4 * u);
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    const __half2 *h2 = (const __half2 *)&raw[u];
                    const float *xv = xs + k + 32 * u + 8 * g;
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        const float2 f = __half22float2(h2[j]);
                        l[2 * j] += f.x * xv[2 * j];
                        l[2 * j + 1] += f.y * xv[2 * j + 1];
                    }
                }
            }
            for (; k < w.n; k += 32) {
                if (k + 8 * g >= w.n) continue;
                const uint4 raw = __ldg(wr + (k >> 3));
                const __half2 *h2 = (const __half2 *)&raw;
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const float2 f = __half22float2(h2[j]);
                    l[2 * j] += f.x * xs[k + 8 * g + 2 * j];
                    l[2 * j + 1] += f.y * xs[k + 8 * g + 2 * j + 1];
                }
            }
        } else {
            for (int k = 0; k < w.n; k += 32) {
                const int e0 = k + 8 * g;
                if (vec && e0 < w.n) {
                    const float4 a = __ldg((const float4 *)(w.wf + (size_t)rc * w.n + e0));
                    const float4 b = __ldg((const float4 *)(w.wf + (size_t)rc * w.n + e0 + 4));
                    const float wv[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
                    for (int j = 0; j < 8; j++) l[j] += wv[j] * xs[e0 + j];
                } else if (!vec) {
#pragma unroll
                    for (int j = 0; j < 8; j++) {
                        const int e = e0 + j;
                        if (e < w.n) {
                            const float wj = w.wh ? __half2float(w.wh[(size_t)rc * w.n + e]) : w.wf[(size_t)rc * w.n + e];
                            l[j] += wj * xs[e];
                        }
                    }
                }
            }
        }
#pragma unroll
        for (int j = 0; j < 8; j++) { // fold 32 lanes: + 16 (threads g + 2), + 8 (thread g + 1), then in registers
            const float o16 = __shfl_down_sync(FULL_MASK, l[j], 2);
            if (g < 2) l[j] += o16;
            const float o8 = __shfl_down_sync(FULL_MASK, l[j], 1);
            if (g == 0) l[j] += o8;
        }
        float v = 0.0f;
        if (g == 0) {
            for (int wdt = 4; wdt >= 1; wdt >>= 1)
                for (int i = 0; i < wdt; i++) l[i] += l[i + wdt];
            v = finish_row(l[0], rc, w.out_scale, w.bias);
        }
        const float partner = __shfl_down_sync(FULL_MASK, v, 4);
        if (g == 0 && row < w.rows) {
            if (io.epi != EPI_GLU) emit(io, t, row, v);
            else if ((row & 1) == 0) io.y[(long)t * io.y_stride + row / 2] = glu(v, partner, io.glu);
        }
    }
}

// Several tokens (prompts with every row's logits, multi-sequence batches): k_float_gemv's arithmetic, but each
// thread computes two rows for FT_TB tokens, so every weight load serves FT_TB tokens and every input load two rows
// (with one row per thread, shared-memory reads of the inputs bounded it). The inputs were normed by k_prep (xn: n
// floats per token). Token groups are blockIdx.x, so the groups of one row tile run side by side and share it
// through L2. Needs n % 8 == 0. Dynamic shared memory: FT_TB * n floats.
#define FT_TB 4
#define FT_LOADS 2 // 32-element chunks loaded before the arithmetic
#define FT_ROWS 128 // rows per tile (64 pairs)

__device__ __forceinline__ void ft_load(const float_w &w, int rc, int e0, float *wv) {
    if (w.wh) {
        const uint4 raw = __ldg((const uint4 *)(w.wh + (size_t)rc * w.n + e0));
        const __half2 *h2 = (const __half2 *)&raw;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const float2 f = __half22float2(h2[j]);
            wv[2 * j] = f.x, wv[2 * j + 1] = f.y;
        }
    } else {
        const float4 a = __ldg((const float4 *)(w.wf + (size_t)rc * w.n + e0));
        const float4 b = __ldg((const float4 *)(w.wf + (size_t)rc * w.n + e0 + 4));
        wv[0] = a.x, wv[1] = a.y, wv[2] = a.z, wv[3] = a.w, wv[4] = b.x, wv[5] = b.y, wv[6] = b.z, wv[7] = b.w;
    }
}

// k_float_gemv's fold of one row's 32 lanes (8 per thread of the quad); thread g == 0 returns the sum.
__device__ __forceinline__ float ft_fold(float *l, int g) {
#pragma unroll
    for (int j = 0; j < 8; j++) { // + 16 (threads g + 2), + 8 (thread g + 1), then in registers
        const float o16 = __shfl_down_sync(FULL_MASK, l[j], 2);
        if (g < 2) l[j] += o16;
        const float o8 = __shfl_down_sync(FULL_MASK, l[j], 1);
        if (g == 0) l[j] += o8;
    }
#pragma unroll
    for (int wdt = 4; wdt >= 1; wdt >>= 1)
#pragma unroll
        for (int i = 0; i < wdt; i++) l[i] += l[i + wdt];
    return l[0];
}

__global__ void __launch_bounds__(NORM_THREADS) k_float_gemv_tok(float_w w, io_args io, const float *xn, int T) {
    extern __shared__ __align__(16) float xt[];
    const int tid = threadIdx.x, g = tid & 3, t0 = blockIdx.x * FT_TB, nt = min(FT_TB, T - t0);
    const int tiles = (w.rows + FT_ROWS - 1) / FT_ROWS;
    dep_launch_next();
    dep_wait();
    for (int i = tid; i < nt * w.n; i += NORM_THREADS) xt[i] = xn[(long)t0 * w.n + i];
    __syncthreads();
    for (int tile = blockIdx.y; tile < tiles; tile += gridDim.y) {
        const int row0 = tile * FT_ROWS + 2 * (tid >> 2);
        const int rc[2] = {min(row0, w.rows - 1), min(row0 + 1, w.rows - 1)};
        float l[2][FT_TB][8];
#pragma unroll
        for (int r = 0; r < 2; r++)
#pragma unroll
            for (int tt = 0; tt < FT_TB; tt++)
#pragma unroll
                for (int j = 0; j < 8; j++) l[r][tt][j] = 0.0f;
        for (int k = 0; k < w.n; k += 32 * FT_LOADS) { // element e into lane e % 32 (thread g: lanes 8g .. 8g + 7), in order
            float wv[FT_LOADS][2][8];
#pragma unroll
            for (int u = 0; u < FT_LOADS; u++) {
                const int e0 = k + 32 * u + 8 * g;
                if (e0 >= w.n) break;
                ft_load(w, rc[0], e0, wv[u][0]);
                ft_load(w, rc[1], e0, wv[u][1]);
            }
#pragma unroll
            for (int u = 0; u < FT_LOADS; u++) {
                const int e0 = k + 32 * u + 8 * g;
                if (e0 >= w.n) break;
#pragma unroll
                for (int tt = 0; tt < FT_TB; tt++) {
                    if (tt >= nt) break;
                    const float4 xa = *(const float4 *)(xt + tt * w.n + e0), xb = *(const float4 *)(xt + tt * w.n + e0 + 4);
                    const float xv[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
#pragma unroll
                    for (int r = 0; r < 2; r++)
#pragma unroll
                        for (int j = 0; j < 8; j++) l[r][tt][j] += wv[u][r][j] * xv[j];
                }
            }
        }
#pragma unroll
        for (int tt = 0; tt < FT_TB; tt++) {
            if (tt >= nt) break; // the same for the whole block
            const float s0 = ft_fold(l[0][tt], g), s1 = ft_fold(l[1][tt], g);
            if (g != 0 || row0 >= w.rows) continue;
            const float v0 = finish_row(s0, rc[0], w.out_scale, w.bias), v1 = finish_row(s1, rc[1], w.out_scale, w.bias);
            if (io.epi == EPI_GLU) {
                io.y[(long)(t0 + tt) * io.y_stride + row0 / 2] = glu(v0, v1, io.glu); // rows 2i, 2i + 1: gate, up
            } else {
                emit(io, t0 + tt, row0, v0);
                if (row0 + 1 < w.rows) emit(io, t0 + tt, row0 + 1, v1);
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------ ternary GEMM

// Prompts: Y[t][r] for GM_T tokens x GM_R rows per block with int8 tensor cores (mma m16n8k32; the codes are the B
// fragments directly, two shifts each). Each step (256 codes) of A (the prepared int8 inputs, GM_T x 256 bytes) and
// of B (GM_R rows x 64 bytes of codes) is copied to shared memory with cp.async, two stages deep, so the copies of
// step s + 1 overlap the products of step s. A rows are swizzled (16-byte chunk c of row r at c ^ (r & 7)) so that
// ldmatrix reads them without bank conflicts; B rows are padded to GM_BROW bytes for the same reason. 8 warps as
// 4 (tokens) x 2 (rows), each 32 tokens x 32 rows. Integer sums are exact; the float epilogue is the GEMV's. For
// Q8_K inputs the integer sums restart every 256 codes and are added in f32 in block order, as dot_tq does.
#define GM_T 128 // tokens per block (MI = 2); micro-batches of <= 64 tokens take 64 (MI = 1): half the products
#define GM_R 64
#define GM_BROW 80
#define GM_STAGE_MI(mi) (64 * (mi) * 256 + GM_R * GM_BROW)
#define GM_SMEM_MI(mi) (2 * GM_STAGE_MI(mi))
#define GM_SMEM GM_SMEM_MI(2)

__device__ __forceinline__ void mma_s8(int *c, int a0, int a1, int a2, int a3, int b0, int b1) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(int *r, const void *smem) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s)
                 : "memory");
}

__host__ __device__ __forceinline__ int word_of_chunk(int c) { // where chunk c's word sits in a row (see the layout above)
    return ((c >> 4) * 4 + ((c & 7) >> 1)) * 4 + ((c >> 3) & 1) * 2 + (c & 1);
}

// Step s of A and B into stage buffer st: 4 MI A chunks and 1 B chunk of 16 bytes per thread (rows past the end
// repeat the last one; their results are not stored).
template <int MI>
__device__ __forceinline__ void gemm_copy_step(uint8_t *st, const tern_w &w, const int8_t *qa, int t0, int r0, int T, int s) {
    const int tid = threadIdx.x, a_ch = tid & 15, b_row = tid >> 2, b_ch = tid & 3;
    const size_t n_pad = (size_t)w.steps * 256;
#pragma unroll
    for (int k = 0; k < 4 * MI; k++) {
        const int r = (tid >> 4) + 16 * k, tok = min(t0 + r, T - 1);
        cp_async16(st + r * 256 + ((a_ch ^ (r & 7)) << 4), qa + (size_t)tok * n_pad + (size_t)s * 256 + a_ch * 16);
    }
    const int row = min(r0 + b_row, w.rows - 1);
    cp_async16(st + 64 * MI * 256 + b_row * GM_BROW + b_ch * 16, w.codes + ((size_t)row * w.steps + s) * 4 + b_ch);
    asm volatile("cp.async.commit_group;" ::: "memory");
}

// MI: 16-token fragments per warp (2: 128 tokens a block; 1: 64, for micro-batches of at most 64 tokens).
template <int ACT, int MI>
__global__ void __launch_bounds__(256, 2) k_tern_gemm(tern_w w, io_args io, const int8_t *qa, const float *qd,
                                                      const int *qsum, int T) {
    extern __shared__ __align__(128) uint8_t gsm[];
    constexpr int TT = 64 * MI, STAGE = GM_STAGE_MI(MI);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, grp = lane >> 2, tig = lane & 3;
    const int wm = warp & 3, wn = warp >> 2, t0 = blockIdx.y * TT, r0 = blockIdx.x * GM_R;
    const int t_base = t0 + wm * 16 * MI, r_base = r0 + wn * 32;
    int acc[MI][4][4];
    float facc[MI][4][4];
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0, facc[i][j][e] = 0.0f;
    dep_launch_next();
    dep_wait();
    gemm_copy_step<MI>(gsm, w, qa, t0, r0, T, 0);
    for (int s = 0; s < w.steps; s++) {
        if (s + 1 < w.steps) {
            gemm_copy_step<MI>(gsm + ((s + 1) & 1) * STAGE, w, qa, t0, r0, T, s + 1);
            asm volatile("cp.async.wait_group 1;" ::: "memory");
        } else {
            asm volatile("cp.async.wait_group 0;" ::: "memory");
        }
        __syncthreads();
        const uint8_t *As = gsm + (s & 1) * STAGE, *Bs = As + TT * 256;
#pragma unroll 2
        for (int kk = 0; kk < 8; kk++) { // 32 codes: ldmatrix gives A fragments (matrix m: rows +8 (m & 1), chunk +(m >> 1))
            int a[MI][4];
#pragma unroll
            for (int i = 0; i < MI; i++) {
                const int r = wm * 16 * MI + 16 * i + (lane & 7) + 8 * ((lane >> 3) & 1), c = 2 * kk + (lane >> 4);
                ldmatrix_x4(a[i], As + r * 256 + ((c ^ (r & 7)) << 4));
            }
            const int wo = (kk & 3) * 4 + (kk >> 2) * 2; // word_of_chunk(2 kk) within the step
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const uint2 b = *(const uint2 *)(Bs + (wn * 32 + 8 * j + grp) * GM_BROW + wo * 4);
                const int b0 = (int)((b.x >> (2 * tig)) & CODE_MASK), b1 = (int)((b.y >> (2 * tig)) & CODE_MASK);
#pragma unroll
                for (int i = 0; i < MI; i++) mma_s8(acc[i][j], a[i][0], a[i][1], a[i][2], a[i][3], b0, b1);
            }
        }
        if (ACT == ACT_Q8K) { // close this 256-block: f += (float)(sum - bsum) * (d_act * d_weight)
#pragma unroll
            for (int i = 0; i < MI; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int tt = min(t_base + 16 * i + grp + 8 * (e >> 1), T - 1);
                        const int rr = min(r_base + 8 * j + 2 * tig + (e & 1), w.rows - 1);
                        const size_t ti = (size_t)tt * w.steps + s;
                        facc[i][j][e] += (float)(acc[i][j][e] - qsum[ti]) * (qd[ti] * w.blk_scale[(size_t)rr * w.steps + s]);
                        acc[i][j][e] = 0;
                    }
        }
        __syncthreads(); // this stage is read; the next iteration's copy may overwrite it
    }
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int h = 0; h < 2; h++) { // c[2h], c[2h+1]: token grp + 8h, rows 2 tig and 2 tig + 1
                const int tt = t_base + 16 * i + grp + 8 * h, rw = r_base + 8 * j + 2 * tig;
                if (tt >= T) continue;
                float v[2];
                for (int e = 0; e < 2; e++) {
                    const int rc = min(rw + e, w.rows - 1);
                    float x;
                    if (ACT == ACT_TOKEN) x = (((float)acc[i][j][2 * h + e] - (float)qsum[(size_t)tt * w.steps]) / qd[(size_t)tt * w.steps]) * w.row_scale[rc];
                    else x = facc[i][j][2 * h + e];
                    v[e] = finish_row(x, rc, w.out_scale, w.bias);
                }
                if (io.epi == EPI_GLU) {
                    if (rw < w.rows) io.y[(long)tt * io.y_stride + rw / 2] = glu(v[0], v[1], io.glu);
                } else {
                    for (int e = 0; e < 2; e++)
                        if (rw + e < w.rows) emit(io, tt, rw + e, v[e]);
                }
            }
}

// ------------------------------------------------------------------------------------------------ int8 / int4 head

// The head re-quantized at load for --head-quant i8 / i4 (runtime/repack_weights.c), in a layout upload_headq
// (backend_cuda.cu) builds from the CPU's 16-row groups. A row is kc chunks of 64 bytes. int8: 64 inputs a chunk,
// signed (the CPU stores value + 128). int4: 128 inputs a chunk (4 sub-scale blocks of 32), word 4 tig + j of a chunk
// being word tig of block j in the CPU's layout (q + 8 of input 32 j + 8 tig + e in the low nibble of byte e, of
// 32 j + 8 tig + 4 + e in the high one). So in both, thread tig of a quad takes the 16-byte piece tig of a chunk of
// its row, and a quad's four pieces are 64 contiguous bytes (two whole sectors a row). Padding past n: int8 0,
// int4 q = 0 with sub-scale 0 (the staged inputs there are 0 as well).
struct headq_w {
    const uint4 *wq;
    const unsigned *sub; // int4: rows x kc words, byte j of word c the sub-scale of block 4c + j; NULL for int8
    const float *drow, *out_scale, *bias;
    int rows, n, kc;
};

// Bytes per staged token row in k_headq's shared memory: int8 rows are read 16 bytes per thread at 16 tig, int4
// rows 32 bytes at 32 tig; with rows 64 (int8) or 16 (int4) bytes past a multiple of 128, the 8 threads of a
// 16-byte phase (two tokens x four tig) fall in 8 different bank quads.
__host__ __device__ inline int hq_srow(int i4, int kc) { return i4 ? kc * 128 + 16 : (kc * 64 + 127) / 128 * 128 + 64; }

// q + 8 in each byte (0..15) to q as a signed byte: q + 128 fits a byte without carrying into the next, and flipping
// its top bit gives q's two's complement.
__device__ __forceinline__ int hq_s8(unsigned nib) { return (int)((nib + 0x78787878u) ^ 0x80808080u); }

// A batch of D chunks (c0 .. c0 + D - 1) of tile `tile` (J fragments of 8 rows): the weights of row grp of each
// fragment and, for int4, the sub-scale words of rows 2 tig and 2 tig + 1 (the rows of the thread's accumulators).
template <bool I4, int D, int J>
__device__ __forceinline__ void hq_load(const headq_w &w, int tile, int c0, int ntiles, int grp, int tig, uint4 (&b)[D][J],
                                        unsigned (&s)[D][J][2]) {
#pragma unroll
    for (int d = 0; d < D; d++)
#pragma unroll
        for (int j = 0; j < J; j++) {
            const int c = c0 + d, r = tile * 8 * J + 8 * j;
            if (tile >= ntiles || c >= w.kc) {
                b[d][j] = make_uint4(0, 0, 0, 0), s[d][j][0] = s[d][j][1] = 0;
                continue;
            }
            b[d][j] = __ldcs(w.wq + ((size_t)min(r + grp, w.rows - 1) * w.kc + c) * 4 + tig); // read once a step
            if (I4) {
                s[d][j][0] = __ldg(w.sub + (size_t)min(r + 2 * tig, w.rows - 1) * w.kc + c);
                s[d][j][1] = __ldg(w.sub + (size_t)min(r + 2 * tig + 1, w.rows - 1) * w.kc + c);
            } else {
                s[d][j][0] = s[d][j][1] = 0;
            }
        }
}

// Logits y[t][r] = ((float)acc / scale_t) * d_row (then out_scale, bias), scalar.c's gemm_i8_r16 / gemm_i4_r16, for
// T tokens prepared by k_prep / k_prep_tok (int8 codes as quantize_i8: q at t * n_pad, scale qd[t]). The integer
// sums use int8 tensor cores (mma m16n8k32; A = 16 tokens, B = 8 rows): a sum is exact in any order, so each
// thread's k indices may be any assignment that A and B share. int8: thread tig's 16-byte piece of a 64-input chunk
// gives two mmas. int4: each mma is one 32-input block, started from 0 and added into the int32 total times that
// row's sub-scale, as the CPU does per block. The block's MT x 16 tokens are staged in shared memory once (int4:
// each 8-byte piece p = 4 j + tig of a 128-input chunk moved to 32 tig + 8 j, so a thread's pieces are
// contiguous). Each warp then streams its tiles (J x 8 rows, every k) with D chunks of weights in flight while it
// multiplies the previous D; the first batch is loaded before the wait (programmatic dependent launch). Grid:
// x persistent over row tiles, y over token tiles of MT x 16. Dynamic shared memory: staged rows x hq_srow.
template <bool I4, int MT, int J, int D, int W>
__global__ void __launch_bounds__(32 * W) k_headq(headq_w w, io_args io, const int8_t *qa, int n_pad, const float *qd, int T) {
    extern __shared__ __align__(16) uint8_t hs[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, grp = lane >> 2, tig = lane & 3;
    const int t0 = blockIdx.y * 16 * MT, srow = hq_srow(I4, w.kc);
    const bool hi = MT > 1 || T - t0 > 8; // tokens 8..15 of the first fragment exist (else never staged nor read)
    const int ntiles = (w.rows + 8 * J - 1) / (8 * J), stride = gridDim.x * W;
    int tile = blockIdx.x * W + warp;
    uint4 cur[D][J];
    unsigned scur[D][J][2];
    hq_load<I4, D, J>(w, tile, 0, ntiles, grp, tig, cur, scur);
    dep_launch_next();
    dep_wait();
    {
        const int rows_st = hi ? 16 * MT : 8, units = w.kc * (I4 ? 8 : 4); // 16-byte units of a token row
        for (int i = threadIdx.x; i < rows_st * units; i += 32 * W) {
            const int tt = i / units, u = i - tt * units, t = t0 + tt;
            const uint4 v = t < T ? __ldcg((const uint4 *)(qa + (size_t)t * n_pad) + u) : make_uint4(0, 0, 0, 0);
            uint8_t *row = hs + (size_t)tt * srow;
            if (!I4) {
                *(uint4 *)(row + 16 * u) = v;
            } else {
                const int c = u >> 3, p0 = 2 * (u & 7), p1 = p0 + 1;
                *(uint2 *)(row + 128 * c + 32 * (p0 & 3) + 8 * (p0 >> 2)) = make_uint2(v.x, v.y);
                *(uint2 *)(row + 128 * c + 32 * (p1 & 3) + 8 * (p1 >> 2)) = make_uint2(v.z, v.w);
            }
        }
    }
    __syncthreads();
    for (; tile < ntiles; tile += stride) {
        int acc[MT][J][4];
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
            for (int j = 0; j < J; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) acc[m][j][e] = 0;
        for (int c0 = 0; c0 < w.kc; c0 += D) {
            uint4 nxt[D][J];
            unsigned snxt[D][J][2];
            const bool more = c0 + D < w.kc; // else the next tile's first batch
            hq_load<I4, D, J>(w, more ? tile : tile + stride, more ? c0 + D : 0, ntiles, grp, tig, nxt, snxt);
#pragma unroll
            for (int d = 0; d < D; d++) {
                const int c = c0 + d;
                if (c >= w.kc) break;
                if (!I4) {
#pragma unroll
                    for (int m = 0; m < MT; m++) {
                        const uint8_t *ra = hs + (size_t)(16 * m + grp) * srow + 64 * c + 16 * tig;
                        const uint4 lo = *(const uint4 *)ra, h = hi ? *(const uint4 *)(ra + 8 * srow) : make_uint4(0, 0, 0, 0);
#pragma unroll
                        for (int j = 0; j < J; j++) {
                            mma_s8(acc[m][j], (int)lo.x, (int)h.x, (int)lo.y, (int)h.y, (int)cur[d][j].x, (int)cur[d][j].y);
                            mma_s8(acc[m][j], (int)lo.z, (int)h.z, (int)lo.w, (int)h.w, (int)cur[d][j].z, (int)cur[d][j].w);
                        }
                    }
                } else {
                    int bw[J][4][2]; // block b's B fragment: low nibbles (inputs 8 tig + 0..3), high (+ 4..7)
#pragma unroll
                    for (int j = 0; j < J; j++) {
                        const unsigned wv[4] = {cur[d][j].x, cur[d][j].y, cur[d][j].z, cur[d][j].w};
#pragma unroll
                        for (int b = 0; b < 4; b++) bw[j][b][0] = hq_s8(wv[b] & 0x0f0f0f0fu), bw[j][b][1] = hq_s8((wv[b] >> 4) & 0x0f0f0f0fu);
                    }
#pragma unroll
                    for (int m = 0; m < MT; m++) {
                        const uint8_t *ra = hs + (size_t)(16 * m + grp) * srow + 128 * c + 32 * tig;
                        const uint4 l0 = *(const uint4 *)ra, l1 = *(const uint4 *)(ra + 16);
                        const uint4 h0 = hi ? *(const uint4 *)(ra + 8 * srow) : make_uint4(0, 0, 0, 0);
                        const uint4 h1 = hi ? *(const uint4 *)(ra + 8 * srow + 16) : make_uint4(0, 0, 0, 0);
                        const unsigned la[8] = {l0.x, l0.y, l0.z, l0.w, l1.x, l1.y, l1.z, l1.w};
                        const unsigned ha[8] = {h0.x, h0.y, h0.z, h0.w, h1.x, h1.y, h1.z, h1.w};
#pragma unroll
                        for (int j = 0; j < J; j++)
#pragma unroll
                            for (int b = 0; b < 4; b++) {
                                int cc[4] = {0, 0, 0, 0};
                                mma_s8(cc, (int)la[2 * b], (int)ha[2 * b], (int)la[2 * b + 1], (int)ha[2 * b + 1], bw[j][b][0], bw[j][b][1]);
                                const int s0 = (int)((scur[d][j][0] >> (8 * b)) & 255u), s1 = (int)((scur[d][j][1] >> (8 * b)) & 255u);
                                acc[m][j][0] += s0 * cc[0], acc[m][j][1] += s1 * cc[1];
                                acc[m][j][2] += s0 * cc[2], acc[m][j][3] += s1 * cc[3];
                            }
                    }
                }
            }
#pragma unroll
            for (int d = 0; d < D; d++)
#pragma unroll
                for (int j = 0; j < J; j++) cur[d][j] = nxt[d][j], scur[d][j][0] = snxt[d][j][0], scur[d][j][1] = snxt[d][j][1];
        }
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
            for (int j = 0; j < J; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) { // c[e]: token grp + 8 (e >> 1), row 2 tig + (e & 1) of the fragment
                    const int t = t0 + 16 * m + grp + 8 * (e >> 1), r = tile * 8 * J + 8 * j + 2 * tig + (e & 1);
                    if (t >= T || r >= w.rows) continue;
                    const float v = ((float)acc[m][j][e] / qd[t]) * w.drow[r];
                    emit(io, t, r, finish_row(v, r, w.out_scale, w.bias));
                }
    }
}

// ------------------------------------------------------------------------------------------------ the rest

__global__ void k_embed(const float *wf, const __half *wh, int n, const int *tok, float *x) {
    dep_launch_next();
    dep_wait();
    const int t = blockIdx.y;
    const long row = tok[t];
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        x[(long)t * n + i] = wh ? __half2float(wh[row * n + i]) : wf[row * n + i];
}

__global__ void k_glu(float *g, const float *u, long n, int fn) { // for gate/up linears that could not be fused
    dep_launch_next();
    dep_wait();
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) g[i] = glu(g[i], u[i], fn);
}

// qwen3: forward.c's per_head_rmsnorm of every q head (blockIdx.x < n_q) and k head of token blockIdx.y, in place,
// before RoPE: 256 double lanes (element i in lane i, hd <= 256) folded as lanes.h does. 256 threads.
__global__ void __launch_bounds__(NORM_THREADS) k_head_norm(float *qkv, long stride, int n_q, int k_off, int hd,
                                                             const float *q_norm, const float *k_norm, float eps) {
    __shared__ double lanes[NORM_THREADS];
    dep_launch_next();
    dep_wait();
    const int h = blockIdx.x, i = threadIdx.x;
    float *v = qkv + (long)blockIdx.y * stride + (h < n_q ? (long)h * hd : k_off + (long)(h - n_q) * hd);
    const float *w = h < n_q ? q_norm : k_norm;
    const float x = i < hd ? v[i] : 0.0f;
    lanes[i] = i < hd ? (double)(x * x) : 0.0;
    __syncthreads();
    const float scale = 1.0f / sqrtf((float)(fold_256(lanes) / (double)hd) + eps);
    if (i < hd) v[i] = (x * scale) * w[i];
}

struct attn_args {
    float *qkv;          // [T][qkv_stride]: q heads, then k heads, then v heads
    long qkv_stride;
    int k_off, v_off;
    __half *kc, *vc;     // this layer's cache: [n_ctx][kv_dim]
    const float *rope;   // [n_ctx][n_rot]: cos, sin pairs (tl_rope_table)
    const int *pos0;
    float *out;          // [T][n_head * hd]
    int n_head, n_head_kv, hd, n_rot, neox, probs_f16, n_ctx;
    const int *tok_pos, *tok_seq; // multi-sequence batches: each token's position and KV slot, else NULL
    long slot;           // elements of one KV slot (kc and vc point into slot 0)
};

// Token t's position, and the offset of its sequence's KV slot (multi-sequence batches; else the session's one).
__device__ __forceinline__ int tok_position(const attn_args &a, int t) { return a.tok_pos ? a.tok_pos[t] : *a.pos0 + t; }
__device__ __forceinline__ long tok_slot(const attn_args &a, int t) { return a.tok_seq ? (long)a.tok_seq[t] * a.slot : 0; }

// forward.c's rope: pairs (i, i + n_rot/2) for NEOX, (2i, 2i + 1) otherwise; x0 c - x1 s, x0 s + x1 c.
__device__ void rope_head(float *v, const float *cs, int n_rot, int neox, int i) {
    const int half = n_rot / 2, a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    const float c = cs[2 * i], s = cs[2 * i + 1], x0 = v[a], x1 = v[b];
    v[a] = x0 * c - x1 * s;
    v[b] = x0 * s + x1 * c;
}

// Prompts: RoPE on every q and k head of T tokens, then k and v into the cache (f16).
__global__ void k_rope_store(attn_args a) {
    dep_launch_next();
    dep_wait();
    const int t = blockIdx.x, pos = tok_position(a, t), half = a.n_rot / 2, kv_dim = a.hd * a.n_head_kv;
    __half *kc = a.kc + tok_slot(a, t), *vc = a.vc + tok_slot(a, t);
    float *row = a.qkv + (long)t * a.qkv_stride;
    const float *cs = a.rope + (long)pos * a.n_rot;
    for (int idx = threadIdx.x; idx < (a.n_head + a.n_head_kv) * half; idx += blockDim.x) {
        const int h = idx / half;
        rope_head(h < a.n_head ? row + h * a.hd : row + a.k_off + (h - a.n_head) * a.hd, cs, a.n_rot, a.neox, idx % half);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
        kc[(long)pos * kv_dim + i] = __float2half_rn(row[a.k_off + i]);
        vc[(long)pos * kv_dim + i] = __float2half_rn(row[a.v_off + i]);
    }
}

// k_attention's shared memory: scores (n_ctx), q, k, v of this token (3 hd), RoPE angles (n_rot) as floats, then
// a tile of V rows (pv_tile x hd halves) at a 16-byte boundary.
__host__ __device__ inline size_t attn_tile_offset(int n_ctx, int hd, int n_rot) { // in floats
    return ((size_t)n_ctx + 3 * hd + n_rot + 3) / 4 * 4;
}

__host__ __device__ inline size_t attn_smem_bytes(int n_ctx, int hd, int n_rot, int pv_tile, int next_n) {
    const size_t b = attn_tile_offset(n_ctx, hd, n_rot) * 4 + (size_t)pv_tile * hd * 2;
    return b > (size_t)next_n * 4 ? b : (size_t)next_n * 4; // next_n floats for finish_and_prep, reusing it all
}

// scalar.c's dot_f16 of a cached key row with the f16-rounded query, in the 32-lane order.
__device__ __forceinline__ float key_dot(const __half *kr, const float *kn, const float *qh, int hd) {
    float l[32];
#pragma unroll
    for (int j = 0; j < 32; j++) l[j] = 0.0f;
    if ((hd & 31) == 0) {
#pragma unroll 4
        for (int c = 0; c < hd; c += 32) {
#pragma unroll
            for (int j = 0; j < 32; j += 8) {
                float k8[8];
                if (kn) {
#pragma unroll
                    for (int e = 0; e < 8; e++) k8[e] = kn[c + j + e];
                } else {
                    const uint4 raw = *(const uint4 *)(kr + c + j);
                    const __half2 *h2 = (const __half2 *)&raw;
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const float2 f = __half22float2(h2[e]);
                        k8[2 * e] = f.x, k8[2 * e + 1] = f.y;
                    }
                }
#pragma unroll
                for (int e = 0; e < 8; e++) l[j + e] += k8[e] * qh[c + j + e];
            }
        }
    } else { // short heads (tiny models): the same order, element by element
#pragma unroll
        for (int j = 0; j < 32; j++)
            for (int i = j; i < hd; i += 32) l[j] += (kn ? kn[i] : __half2float(kr[i])) * qh[i];
    }
#pragma unroll
    for (int i = 0; i < 16; i++) l[i] += l[i + 16];
#pragma unroll
    for (int i = 0; i < 8; i++) l[i] += l[i + 8];
#pragma unroll
    for (int i = 0; i < 4; i++) l[i] += l[i + 4];
    l[0] += l[2], l[1] += l[3];
    return l[0] + l[1];
}

// The scores sc[0..pos] of one head, given their max, become probabilities in the CPU's order: each exp, the
// denominator in 32 double lanes (position p in lane p % 32, then the lanes.h fold), each score times 1/denominator,
// rounded to f16 where the model says so. Every thread of the block calls it; shd holds at least one double.
__device__ void block_softmax(float *sc, int pos, float mx, double *shd, bool probs_f16) {
    const int tid = threadIdx.x;
    for (int p = tid; p <= pos; p += blockDim.x) sc[p] = dev::tl_expf(sc[p] - mx);
    __syncthreads();
    if (tid < 32) {
        double l = 0.0;
        for (int p = tid; p <= pos; p += 32) l += (double)sc[p];
        l = warp_fold_d(l);
        if (tid == 0) shd[0] = l;
    }
    __syncthreads();
    const float inv = (float)(1.0 / shd[0]);
    for (int p = tid; p <= pos; p += blockDim.x) {
        const float pr = sc[p] * inv;
        sc[p] = probs_f16 ? round_f16(pr) : pr;
    }
    __syncthreads();
}

// Attention of query head blockIdx.x of token blockIdx.y over positions 0 .. pos, as forward.c's attend_heads.
// fresh (decode): this kernel also ropes q and k of the new token and the first query head of each KV group
// writes k and v to the cache; the others take position pos from shared memory. Dynamic shared memory:
// attn_smem_bytes. next: the o linear's input preparation (decode).
__global__ void k_attention(attn_args a, int fresh, int pv_tile, prep_args next) {
    extern __shared__ __align__(16) float sa[];
    __shared__ float shf[32];
    __shared__ double shd[32];
    const int h = blockIdx.x, t = blockIdx.y, tid = threadIdx.x, hd = a.hd;
    const int grp = a.n_head / a.n_head_kv, kvh = h / grp, kv_dim = hd * a.n_head_kv, pos = tok_position(a, t);
    __half *const kc = a.kc + tok_slot(a, t), *const vc = a.vc + tok_slot(a, t);
    float *sc = sa, *qh = sa + a.n_ctx, *kn = qh + hd, *vn = kn + hd, *cs = vn + hd;
    const __half *K = kc + kvh * hd, *V = vc + kvh * hd;
    const int half = a.n_rot / 2;
    if (fresh)
        for (int i = tid; i < a.n_rot; i += blockDim.x) cs[i] = a.rope[(long)pos * a.n_rot + i];
    for (int p = tid; p < pos; p += blockDim.x) { // earlier tokens' keys and values: to L2 while q is computed
        asm volatile("prefetch.global.L2 [%0];" ::"l"(K + (long)p * kv_dim));
        asm volatile("prefetch.global.L2 [%0];" ::"l"(V + (long)p * kv_dim));
    }
    prep_prefetch(next);
    dep_launch_next();
    dep_wait();
    __syncthreads();
    const float *row = a.qkv + (long)t * a.qkv_stride;
    if (fresh) { // rope this token's q and k (forward.c's rope), round to f16 as the cache and the K·Q dot do
        for (int i = tid; i < hd; i += blockDim.x) {
            const int pair = a.neox ? (i < half ? i : i - half) : i / 2, first = a.neox ? i < half : (i & 1) == 0;
            const int other = a.neox ? (first ? i + half : i - half) : (first ? i + 1 : i - 1);
            const int o = pair < half ? other : i; // every load first, then the arithmetic
            float qv = row[h * hd + i], kv = row[a.k_off + kvh * hd + i];
            const float qo = row[h * hd + o], ko = row[a.k_off + kvh * hd + o], vv = row[a.v_off + kvh * hd + i];
            if (pair < half) {
                const float cc = cs[2 * pair], ss = cs[2 * pair + 1];
                qv = first ? qv * cc - qo * ss : qo * ss + qv * cc;
                kv = first ? kv * cc - ko * ss : ko * ss + kv * cc;
            }
            const __half kh = __float2half_rn(kv), vh = __float2half_rn(vv);
            if (h % grp == 0) kc[(long)pos * kv_dim + kvh * hd + i] = kh, vc[(long)pos * kv_dim + kvh * hd + i] = vh;
            qh[i] = round_f16(qv), kn[i] = __half2float(kh), vn[i] = __half2float(vh);
        }
    } else {
        for (int i = tid; i < hd; i += blockDim.x) qh[i] = round_f16(row[h * hd + i]);
    }
    __syncthreads();
    const float scale = 1.0f / sqrtf((float)hd);
    float mx = -INFINITY;
    for (int p = tid; p <= pos; p += blockDim.x) {
        const bool mine = fresh && p == pos;
        sc[p] = key_dot(K + (long)p * kv_dim, mine ? kn : NULL, qh, hd) * scale;
        mx = fmaxf(mx, sc[p]);
    }
    block_softmax(sc, pos, block_max(mx, shf), shd, a.probs_f16);
    // attn_pv: output d sums over positions in order, in f32. The V rows come through shared memory, pv_tile
    // positions at a time, loaded by every thread with 8 loads in flight, so the in-order sum waits on shared
    // memory rather than on one L2 round trip per 8 positions. Thread d < hd owns output d (blockDim >= hd).
    __half *vt = (__half *)(sa + attn_tile_offset(a.n_ctx, hd, a.n_rot));
    const int last = fresh ? pos - 1 : pos, vec = (hd & 7) == 0, per = vec ? hd / 8 : hd;
    float acc = 0.0f;
    for (int p0 = 0; p0 <= last; p0 += pv_tile) {
        const int np = min(pv_tile, last + 1 - p0), items = np * per;
        __syncthreads(); // the previous tile has been consumed
        for (int i0 = tid; i0 < items; i0 += 8 * blockDim.x) {
            uint4 r[8];
            __half hv[8];
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const int i = i0 + k * blockDim.x, p = i / per, c = i % per;
                if (i >= items) break;
                if (vec) r[k] = *(const uint4 *)(V + (long)(p0 + p) * kv_dim + 8 * c);
                else hv[k] = V[(long)(p0 + p) * kv_dim + c];
            }
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const int i = i0 + k * blockDim.x;
                if (i >= items) break;
                if (vec) ((uint4 *)vt)[i] = r[k];
                else vt[i] = hv[k];
            }
        }
        __syncthreads();
        if (tid < hd)
            for (int p = 0; p < np; p++) acc += sc[p0 + p] * __half2float(vt[p * hd + tid]);
    }
    if (tid < hd) {
        if (fresh) acc += sc[pos] * vn[tid];
        a.out[((long)t * a.n_head + h) * hd + tid] = acc;
    }
    __syncthreads(); // shared memory is reused below
    finish_and_prep(next, sa);
}

// Prompts: the query heads of one KV group (grp = n_head / n_head_kv of them, 128 threads each) for one token in
// one block. Keys, then values, come through shared memory in tiles of AG_TILE positions, copied with cp.async two
// tiles deep (the copy of tile i + 1 runs while tile i is used) and shared by the group's heads: with a block per
// head and every load a dependent L2 round trip, prompt attention took longer than the prompt's GEMMs. Per head, the
// arithmetic is k_attention's, in the same order. Needs hd <= 128 and a multiple of 8, grp <= 4; positions < n_pos.
// Dynamic shared memory: attn_group_smem_bytes.
#define AG_TILE 64

__host__ __device__ inline size_t attn_group_tile_offset(int n_pos, int hd, int grp) { // in floats
    return ((size_t)grp * (n_pos + hd) + 3) / 4 * 4;
}

__host__ __device__ inline size_t attn_group_smem_bytes(int n_pos, int hd, int grp) {
    return attn_group_tile_offset(n_pos, hd, grp) * 4 + (size_t)2 * AG_TILE * hd * 2;
}

// Rows p0 .. p0 + np - 1 of a cached K or V (this KV head's hd halves of each row) into buf, 16 bytes per copy.
__device__ __forceinline__ void kv_tile_copy(__half *buf, const __half *X, int p0, int np, int hd, int kv_dim) {
    const int per = hd / 8, items = np * per;
    for (int i = threadIdx.x; i < items; i += blockDim.x)
        cp_async16(buf + 8 * i, X + (long)(p0 + i / per) * kv_dim + 8 * (i % per));
    asm volatile("cp.async.commit_group;" ::: "memory");
}

// 3 blocks per SM (40 registers): occupancy bounds this kernel's latency chains; 4 (32 registers) spilled, measured
// slower, and exceeds sm_89's 1536 threads per SM
__global__ void __launch_bounds__(512, 3) k_attention_group(attn_args a, int n_pos) {
    extern __shared__ __align__(16) float sa[];
    __shared__ float shf[32];
    __shared__ double shd[8];
    const int grp = a.n_head / a.n_head_kv, kvh = blockIdx.x, t = blockIdx.y, tid = threadIdx.x, hd = a.hd;
    const int sg = tid >> 7, lt = tid & 127, h = kvh * grp + sg, kv_dim = hd * a.n_head_kv, pos = tok_position(a, t);
    const int lane = tid & 31, wh = lt >> 5, nc = (hd + 31) / 32, tiles = pos / AG_TILE + 1;
    float *sc = sa + (size_t)sg * n_pos, *qh = sa + (size_t)grp * n_pos + sg * hd;
    __half *const buf = (__half *)(sa + attn_group_tile_offset(n_pos, hd, grp)); // 2 tiles of AG_TILE * hd
    const int tile_h = AG_TILE * hd;
    const __half *K = a.kc + tok_slot(a, t) + kvh * hd, *V = a.vc + tok_slot(a, t) + kvh * hd;
    dep_launch_next();
    dep_wait();
    kv_tile_copy(buf, K, 0, min(AG_TILE, pos + 1), hd, kv_dim);
    const float *row = a.qkv + (long)t * a.qkv_stride;
    if (lt < hd) qh[lt] = round_f16(row[h * hd + lt]);
    __syncthreads();
    const float scale = 1.0f / sqrtf((float)hd);
    float qv[4]; // key_dot's lane j holds elements j + 32c, in order; a warp per position folds the lanes (warp_fold)
#pragma unroll
    for (int c = 0; c < 4; c++) qv[c] = c < nc && 32 * c + lane < hd ? qh[32 * c + lane] : 0.0f;
    float mx = -INFINITY;
    for (int it = 0; it < tiles; it++) {
        const int p0 = it * AG_TILE, np = min(AG_TILE, pos + 1 - p0);
        if (it + 1 < tiles) {
            kv_tile_copy(buf + ((it + 1) & 1) * tile_h, K, p0 + AG_TILE, min(AG_TILE, pos + 1 - p0 - AG_TILE), hd, kv_dim);
            asm volatile("cp.async.wait_group 1;" ::: "memory");
        } else {
            asm volatile("cp.async.wait_group 0;" ::: "memory");
        }
        __syncthreads();
        const __half *kt = buf + (it & 1) * tile_h;
        for (int q0 = wh; q0 < np; q0 += 16) { // K·Q: 4 positions per warp per round
            float kv[4][4];
#pragma unroll
            for (int u = 0; u < 4; u++)
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    const int q = q0 + 4 * u, i = 32 * c + lane;
                    kv[u][c] = q < np && c < nc && i < hd ? __half2float(kt[q * hd + i]) : 0.0f;
                }
#pragma unroll
            for (int u = 0; u < 4; u++) {
                float l = 0.0f;
#pragma unroll
                for (int c = 0; c < 4; c++)
                    if (c < nc) l += kv[u][c] * qv[c];
                l = warp_fold(l);
                const int q = q0 + 4 * u;
                if (lane == 0 && q < np) {
                    sc[p0 + q] = l * scale;
                    mx = fmaxf(mx, sc[p0 + q]);
                }
            }
        }
        __syncthreads(); // this tile is read; the next copy may overwrite it
    }
    kv_tile_copy(buf, V, 0, min(AG_TILE, pos + 1), hd, kv_dim); // the first V tile, during the softmax
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(FULL_MASK, mx, o)); // this head's 4 warps
    if (lane == 0) shf[tid >> 5] = mx;
    __syncthreads();
    mx = fmaxf(fmaxf(shf[4 * sg], shf[4 * sg + 1]), fmaxf(shf[4 * sg + 2], shf[4 * sg + 3]));
    for (int p = lt; p <= pos; p += 128) sc[p] = dev::tl_expf(sc[p] - mx);
    __syncthreads();
    if (lt < 32) { // the softmax denominator: 32 double lanes, position p in lane p % 32
        double l = 0.0;
        for (int p = lt; p <= pos; p += 32) l += (double)sc[p];
        l = warp_fold_d(l);
        if (lt == 0) shd[sg] = l;
    }
    __syncthreads();
    const float inv = (float)(1.0 / shd[sg]);
    for (int p = lt; p <= pos; p += 128) {
        const float pr = sc[p] * inv;
        sc[p] = a.probs_f16 ? round_f16(pr) : pr;
    }
    float acc = 0.0f;
    for (int it = 0; it < tiles; it++) { // attn_pv: output d sums over positions in order, in f32
        const int p0 = it * AG_TILE, np = min(AG_TILE, pos + 1 - p0);
        if (it + 1 < tiles) {
            kv_tile_copy(buf + ((it + 1) & 1) * tile_h, V, p0 + AG_TILE, min(AG_TILE, pos + 1 - p0 - AG_TILE), hd, kv_dim);
            asm volatile("cp.async.wait_group 1;" ::: "memory");
        } else {
            asm volatile("cp.async.wait_group 0;" ::: "memory");
        }
        __syncthreads(); // (the first time, also: every probability is written)
        const __half *vt = buf + (it & 1) * tile_h;
        if (lt < hd)
            for (int p = 0; p < np; p++) acc += sc[p0 + p] * __half2float(vt[p * hd + lt]);
        __syncthreads();
    }
    if (lt < hd) a.out[((long)t * a.n_head + h) * hd + lt] = acc;
}

// Decode (one token per blockIdx.y, fresh): k_attention's arithmetic in the same order, shaped for latency. The
// cached keys and values of positions below AD_PMAX do not depend on the q|k|v GEMV, so they are copied to shared
// memory (cp.async) before dep_wait; after it, only this token's q, k and v row is read. K·Q: a warp per position,
// 4 positions per warp at a time (lane j holds elements j + 32c, folded as key_dot's lanes); positions from AD_PMAX
// on (cap: at most AD_PMAX, fewer to test that path) are read from the cache directly. Needs hd % 32 == 0,
// hd <= 128, blockDim 256 or 512 (TERNLM_CUDA_ATTN_THREADS). Dynamic shared memory: attn_dec_smem.
#define AD_PMAX 256
#define AD_CAP 128 // the default: with 256, 150 KB a block needs a larger shared-memory split (measured 4.5% slower)

__host__ __device__ inline size_t attn_dec_smem(int n_ctx, int hd, int n_rot, int cap) { // K, V (halves), floats
    return (size_t)2 * cap * hd * 2 + ((size_t)n_ctx + 3 * hd + n_rot) * 4;
}

__global__ void __launch_bounds__(512) k_attention_dec(attn_args a, int cap) {
    extern __shared__ __align__(16) float sa[];
    __shared__ float shf[32];
    __shared__ double shd[1];
    const int h = blockIdx.x, t = blockIdx.y, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, hd = a.hd;
    const int grp = a.n_head / a.n_head_kv, kvh = h / grp, kv_dim = hd * a.n_head_kv, pos = tok_position(a, t);
    const int nc = hd / 32, half = a.n_rot / 2;
    __half *const kc = a.kc + tok_slot(a, t), *const vc = a.vc + tok_slot(a, t);
    const __half *K = kc + kvh * hd, *V = vc + kvh * hd;
    __half *Ks = (__half *)sa, *Vs = Ks + (size_t)cap * hd;
    float *sc = (float *)(Vs + (size_t)cap * hd), *qh = sc + a.n_ctx, *kn = qh + hd, *vn = kn + hd, *cs = vn + hd;
    const int ncached = min(pos, cap), per = hd / 8;
    for (int i = tid; i < ncached * per; i += blockDim.x) { // earlier positions: written by earlier steps
        const int p = i / per, c = i % per;
        cp_async16(Ks + (size_t)p * hd + 8 * c, K + (long)p * kv_dim + 8 * c);
        cp_async16(Vs + (size_t)p * hd + 8 * c, V + (long)p * kv_dim + 8 * c);
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
    for (int i = tid; i < a.n_rot; i += blockDim.x) cs[i] = a.rope[(long)pos * a.n_rot + i];
    dep_launch_next();
    dep_wait();
    __syncthreads(); // cs
    const float *row = a.qkv + (long)t * a.qkv_stride;
    for (int i = tid; i < hd; i += blockDim.x) { // k_attention's rope of q and k, the cache store, f16 rounding
        const int pair = a.neox ? (i < half ? i : i - half) : i / 2, first = a.neox ? i < half : (i & 1) == 0;
        const int other = a.neox ? (first ? i + half : i - half) : (first ? i + 1 : i - 1);
        const int o = pair < half ? other : i;
        float qv = row[h * hd + i], kv = row[a.k_off + kvh * hd + i];
        const float qo = row[h * hd + o], ko = row[a.k_off + kvh * hd + o], vv = row[a.v_off + kvh * hd + i];
        if (pair < half) {
            const float cc = cs[2 * pair], ss = cs[2 * pair + 1];
            qv = first ? qv * cc - qo * ss : qo * ss + qv * cc;
            kv = first ? kv * cc - ko * ss : ko * ss + kv * cc;
        }
        const __half kh = __float2half_rn(kv), vh = __float2half_rn(vv);
        if (h % grp == 0) kc[(long)pos * kv_dim + kvh * hd + i] = kh, vc[(long)pos * kv_dim + kvh * hd + i] = vh;
        qh[i] = round_f16(qv), kn[i] = __half2float(kh), vn[i] = __half2float(vh);
    }
    asm volatile("cp.async.wait_group 0;" ::: "memory");
    __syncthreads();
    const float scale = 1.0f / sqrtf((float)hd);
    float qv[4];
#pragma unroll
    for (int c = 0; c < 4; c++) qv[c] = c < nc ? qh[32 * c + lane] : 0.0f;
    float mx = -INFINITY;
    for (int p0 = 4 * warp; p0 <= pos; p0 += 4 * (int)(blockDim.x >> 5)) { // positions p0 .. p0 + 3 by this warp
        float kv[4][4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int p = p0 + u;
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const int i = 32 * c + lane;
                kv[u][c] = 0.0f;
                if (c < nc && p <= pos)
                    kv[u][c] = p == pos ? kn[i] : p < cap ? __half2float(Ks[(size_t)p * hd + i]) : __half2float(K[(long)p * kv_dim + i]);
            }
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            float l = 0.0f;
#pragma unroll
            for (int c = 0; c < 4; c++)
                if (c < nc) l += kv[u][c] * qv[c];
            l = warp_fold(l);
            if (lane == 0 && p0 + u <= pos) sc[p0 + u] = l * scale, mx = fmaxf(mx, l * scale);
        }
    }
    block_softmax(sc, pos, block_max(mx, shf), shd, a.probs_f16); // (block_max's barriers also publish sc)
    if (tid < hd) { // attn_pv: output d sums over positions in order, in f32
        float acc = 0.0f;
        const int nsm = min(pos, cap);
        int p = 0;
        for (; p + 8 <= nsm; p += 8) { // the loads of 8 positions first: the sum waits only on its adds
            float pr[8], vv[8];
#pragma unroll
            for (int k = 0; k < 8; k++) pr[k] = sc[p + k], vv[k] = __half2float(Vs[(size_t)(p + k) * hd + tid]);
#pragma unroll
            for (int k = 0; k < 8; k++) acc += pr[k] * vv[k];
        }
        for (; p < nsm; p++) acc += sc[p] * __half2float(Vs[(size_t)p * hd + tid]);
        for (; p < pos; p++) acc += sc[p] * __half2float(V[(long)p * kv_dim + tid]);
        acc += sc[pos] * vn[tid];
        a.out[((long)t * a.n_head + h) * hd + tid] = acc;
    }
}

// Prompts of one sequence: AT_NT (2, 4 or 8; default 4) consecutive tokens and the AT_G = 4 query heads of one KV
// head per block (32 AT_NT threads, blocks of the latest tokens first), keys and values through shared memory in tiles
// of AT_PT (32 or 64) positions (cp.async, two tiles deep) shared by the block's 4 AT_NT (token, head) rows. Per row
// the arithmetic is k_attention's, in the CPU's order:
// - K·Q: each score is dot_f16's 32 lanes (lane j: elements j + 32c, in order) then lanes.h's fold. A half-warp
//   computes 16 scores at once (8 rows: 2 tokens x 4 heads, times 2 positions): thread tau holds lanes tau and
//   tau + 16 of every row's query in registers, so it does the fold's first level itself, and the other four levels
//   (l[i] += l[i + 8], + 4, + 2, + 1) are a butterfly over the half-warp that leaves one score per thread: register k
//   of thread tau holds score k ^ tau, so each level sends one half of the registers (no selects). A product of two
//   f16 values is exact in f32, so the lane's `l += k * q` is one FMA with the same bits (the first product needs no
//   add: 0 + x differs from x only in the sign of a zero, which no later step can turn into another value: exp(-0) =
//   exp(+0)).
// - softmax as block_softmax, a warp per token (4 heads at once);
// - P·V: a warp per token, lane owning NC consecutive outputs of the 4 heads, each an in-order f32 sum over
//   positions (multiply, then add: these products are not exact, so no FMA).
// Needs n_head = 4 n_head_kv, hd = 32 NC (NC 1, 2 or 4), no multi-sequence batch (positions pos0 + t).
// Dynamic shared memory: attn_tile_smem (scores: AT_NT x n_pos x 4 floats; two tiles of AT_PT x hd halves).
#define AT_G 4

__host__ __device__ inline size_t attn_tile_smem(int n_pos, int hd, int nt, int pt) {
    return (size_t)nt * n_pos * AT_G * 4 + (size_t)2 * pt * hd * 2;
}

template <int NC, int AT_NT, int AT_PT>
__global__ void __launch_bounds__(32 * AT_NT, 16 / AT_NT) k_attention_tile(attn_args a, int n_pos, int T) {
    extern __shared__ __align__(16) float sa[];
    constexpr int hd = 32 * NC;
    const int kv_dim = hd * a.n_head_kv, n_tb = (T + AT_NT - 1) / AT_NT;
    const int kvh = blockIdx.x % a.n_head_kv, t0 = (n_tb - 1 - (int)blockIdx.x / a.n_head_kv) * AT_NT; // longest first
    const int nt = min(AT_NT, T - t0), tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    float *sc = sa; // [AT_NT][n_pos][AT_G]
    __half *const buf = (__half *)(sa + (size_t)AT_NT * n_pos * AT_G);
    constexpr int tile_h = AT_PT * hd;
    const __half *K = a.kc + kvh * hd, *V = a.vc + kvh * hd;
    dep_launch_next();
    dep_wait();
    const int pos0 = *a.pos0, p_end = pos0 + t0 + nt, tiles = (p_end + AT_PT - 1) / AT_PT; // positions < p_end
    kv_tile_copy(buf, K, 0, min(AT_PT, p_end), hd, kv_dim);
    // K·Q: half-warp hw = (token pair tp, quarter sub of each tile's positions); thread tau of it
    const int hw = tid >> 4, tau = tid & 15, tp = hw >> 2, sub = hw & 3, tx = tau & 7, tb3 = tau >> 3;
    const int pair_t = t0 + 2 * tp, pos_hi = pos0 + min(pair_t + 1, T - 1); // (pairs past T compute nothing)
    float q[8][2][NC]; // q[r][m][c]: row r ^ tx (token 2 tp + (row >> 2), head row & 3), element tau + 16 m + 32 c
#pragma unroll
    for (int r = 0; r < 8; r++) {
        const int row = r ^ tx, t = min(pair_t + (row >> 2), T - 1);
        const float *qr = a.qkv + (long)t * a.qkv_stride + (kvh * AT_G + (row & 3)) * hd;
#pragma unroll
        for (int m = 0; m < 2; m++)
#pragma unroll
            for (int c = 0; c < NC; c++) q[r][m][c] = round_f16(qr[tau + 16 * m + 32 * c]);
    }
    const float scale = 1.0f / sqrtf((float)hd);
    // this thread's score after the butterfly: head tau & 3, token 2 tp + ((tau >> 2) & 1), position pb + tb3
    const int my_t = pair_t + ((tau >> 2) & 1), my_pos = pos0 + my_t;
    float *my_sc = sc + ((size_t)(2 * tp + ((tau >> 2) & 1)) * n_pos) * AT_G + (tau & 3);
    for (int it = 0; it < tiles; it++) {
        const int p0 = it * AT_PT;
        if (it + 1 < tiles) {
            kv_tile_copy(buf + ((it + 1) & 1) * tile_h, K, p0 + AT_PT, min(AT_PT, p_end - p0 - AT_PT), hd, kv_dim);
            asm volatile("cp.async.wait_group 1;" ::: "memory");
        } else {
            asm volatile("cp.async.wait_group 0;" ::: "memory");
        }
        __syncthreads();
        const __half *kt = buf + (it & 1) * tile_h;
        for (int qd = 0; qd < AT_PT / 8 && pair_t < T && p0 + 8 * qd <= pos_hi; qd++) { // uniform in a warp
            const int pb = 8 * qd + 2 * sub; // tile rows pb, pb + 1
            float kf[2][2][NC];              // [position: pb + tb3, pb + 1 - tb3][m][c]
#pragma unroll
            for (int u = 0; u < 2; u++) {
                const __half *kr = kt + (pb + (u ^ tb3)) * hd + tau;
#pragma unroll
                for (int m = 0; m < 2; m++)
#pragma unroll
                    for (int c = 0; c < NC; c++) kf[u][m][c] = __half2float(kr[16 * m + 32 * c]);
            }
            float v[16]; // v[k]: lanes tau + (tau + 16) of score k ^ tau
#pragma unroll
            for (int k = 0; k < 16; k++) {
                const int u = k >> 3, r = k & 7;
                float l0 = kf[u][0][0] * q[r][0][0], l1 = kf[u][1][0] * q[r][1][0];
#pragma unroll
                for (int c = 1; c < NC; c++) {
                    l0 = __fmaf_rn(kf[u][0][c], q[r][0][c], l0);
                    l1 = __fmaf_rn(kf[u][1][c], q[r][1][c], l1);
                }
                v[k] = l0 + l1;
            }
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] += __shfl_xor_sync(FULL_MASK, v[k + 8], 8);
#pragma unroll
            for (int k = 0; k < 4; k++) v[k] += __shfl_xor_sync(FULL_MASK, v[k + 4], 4);
#pragma unroll
            for (int k = 0; k < 2; k++) v[k] += __shfl_xor_sync(FULL_MASK, v[k + 2], 2);
            v[0] += __shfl_xor_sync(FULL_MASK, v[1], 1);
            const int p = p0 + pb + tb3;
            if (my_t < T && p <= my_pos) my_sc[(size_t)p * AT_G] = v[0] * scale;
        }
        __syncthreads(); // this tile is read; the next copy may overwrite it
    }
    kv_tile_copy(buf, V, 0, min(AT_PT, p_end), hd, kv_dim); // the first V tile, during the softmax
    // softmax: a warp per token, the 4 heads at once (lane p % 32 of the double sums, as block_softmax)
    if (t0 + warp < T) {
        const int n = pos0 + t0 + warp + 1;
        float4 *row = (float4 *)(sc + (size_t)warp * n_pos * AT_G);
        float4 mx = make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
        for (int p = lane; p < n; p += 32) {
            const float4 s = row[p];
            mx.x = fmaxf(mx.x, s.x), mx.y = fmaxf(mx.y, s.y), mx.z = fmaxf(mx.z, s.z), mx.w = fmaxf(mx.w, s.w);
        }
        for (int o = 16; o > 0; o >>= 1) {
            mx.x = fmaxf(mx.x, __shfl_xor_sync(FULL_MASK, mx.x, o)), mx.y = fmaxf(mx.y, __shfl_xor_sync(FULL_MASK, mx.y, o));
            mx.z = fmaxf(mx.z, __shfl_xor_sync(FULL_MASK, mx.z, o)), mx.w = fmaxf(mx.w, __shfl_xor_sync(FULL_MASK, mx.w, o));
        }
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        for (int p = lane; p < n; p += 32) {
            float4 s = row[p];
            s.x = dev::tl_expf(s.x - mx.x), s.y = dev::tl_expf(s.y - mx.y);
            s.z = dev::tl_expf(s.z - mx.z), s.w = dev::tl_expf(s.w - mx.w);
            s0 += (double)s.x, s1 += (double)s.y, s2 += (double)s.z, s3 += (double)s.w;
            row[p] = s;
        }
        s0 = __shfl_sync(FULL_MASK, warp_fold_d(s0), 0), s1 = __shfl_sync(FULL_MASK, warp_fold_d(s1), 0);
        s2 = __shfl_sync(FULL_MASK, warp_fold_d(s2), 0), s3 = __shfl_sync(FULL_MASK, warp_fold_d(s3), 0);
        const float i0 = (float)(1.0 / s0), i1 = (float)(1.0 / s1), i2 = (float)(1.0 / s2), i3 = (float)(1.0 / s3);
        for (int p = lane; p < n; p += 32) {
            float4 s = row[p];
            s.x *= i0, s.y *= i1, s.z *= i2, s.w *= i3;
            if (a.probs_f16) s.x = round_f16(s.x), s.y = round_f16(s.y), s.z = round_f16(s.z), s.w = round_f16(s.w);
            row[p] = s;
        }
    }
    // P·V: warp = token, lane = outputs NC lane .. NC lane + NC - 1 of each head
    const int t = t0 + warp, pos = pos0 + t;
    const float4 *pr = (const float4 *)(sc + (size_t)warp * n_pos * AT_G);
    float acc[AT_G][NC];
#pragma unroll
    for (int h = 0; h < AT_G; h++)
#pragma unroll
        for (int c = 0; c < NC; c++) acc[h][c] = 0.0f;
    for (int it = 0; it < tiles; it++) {
        const int p0 = it * AT_PT;
        if (it + 1 < tiles) {
            kv_tile_copy(buf + ((it + 1) & 1) * tile_h, V, p0 + AT_PT, min(AT_PT, p_end - p0 - AT_PT), hd, kv_dim);
            asm volatile("cp.async.wait_group 1;" ::: "memory");
        } else {
            asm volatile("cp.async.wait_group 0;" ::: "memory");
        }
        __syncthreads(); // (the first time, also: every probability is written)
        const __half *vt = buf + (it & 1) * tile_h + NC * lane;
        const int np = t < T ? min(AT_PT, pos + 1 - p0) : 0;
#pragma unroll 4
        for (int p = 0; p < np; p++) {
            const float4 w = pr[p0 + p];
            float vf[NC];
            if (NC == 4) {
                const uint2 raw = *(const uint2 *)(vt + p * hd);
                const float2 f0 = __half22float2(*(const __half2 *)&raw.x), f1 = __half22float2(*(const __half2 *)&raw.y);
                vf[0] = f0.x, vf[1] = f0.y, vf[2 % NC] = f1.x, vf[3 % NC] = f1.y;
            } else if (NC == 2) {
                const float2 f0 = __half22float2(*(const __half2 *)(vt + p * hd));
                vf[0] = f0.x, vf[1 % NC] = f0.y;
            } else {
                vf[0] = __half2float(vt[p * hd]);
            }
#pragma unroll
            for (int c = 0; c < NC; c++) {
                acc[0][c] = acc[0][c] + w.x * vf[c];
                acc[1][c] = acc[1][c] + w.y * vf[c];
                acc[2][c] = acc[2][c] + w.z * vf[c];
                acc[3][c] = acc[3][c] + w.w * vf[c];
            }
        }
        __syncthreads();
    }
    if (t < T)
#pragma unroll
        for (int h = 0; h < AT_G; h++)
#pragma unroll
            for (int c = 0; c < NC; c++) a.out[((long)t * a.n_head + kvh * AT_G + h) * hd + NC * lane + c] = acc[h][c];
}
