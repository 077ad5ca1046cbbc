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

enum { ACT_TOKEN, ACT_Q8K };                        // per-token int8 (I2_S) or per-256 Q8_K (TQ1_0, TQ2_0)
enum { PREP_FLOAT, PREP_FLOAT_F16, PREP_TOKEN, PREP_Q8K };
enum { EPI_STORE, EPI_ADD, EPI_GLU };               // y = v; y += v (residual); y[i] = act(v[2i]) * v[2i+1]
enum { GLU_RELU2, GLU_SILU };

struct tern_w { // a ternary linear, or several with one input fused into one (rows concatenated or interleaved)
    const uint4 *codes;
    int rows, n, steps, act;
    const float *row_scale, *blk_scale, *out_scale, *bias; // per row; blk_scale rows x steps (TQ)
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

// One token's input vector, by a NORM_THREADS block: RMSNorm (if norm_w) as forward.c's rmsnorm, then floats (xs,
// rounded to f16 for PREP_FLOAT_F16) or int8 codes as scalar.c's quantize_i8 / quantize_q8k: q (n_pad bytes,
// zero padded), qd (scale, or d per 256-block), qsum (per 256-block for Q8_K; per token: the caller adds
// sc->wsum). Thread i owns elements i + 256k until the last barrier, which keeps barriers to three.
__device__ void prep_vector(const float *x, int n, int n_pad, const float *norm_w, float eps, int mode, float *xs,
                            int8_t *q, float *qd, int *qsum, prep_scratch *sc) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    float scale = 1.0f;
    double l = 0.0;
    for (int i0 = tid; i0 < n; i0 += 8 * NORM_THREADS) { // 8 loads in flight per thread, then the arithmetic
        float v[8];
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = i0 + k * NORM_THREADS < n ? x[i0 + k * NORM_THREADS] : 0.0f;
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (i0 + k * NORM_THREADS < n) xs[i0 + k * NORM_THREADS] = v[k], l += (double)(v[k] * v[k]);
    }
    if (norm_w) {
        sc->lanes[tid] = l;
        __syncthreads();
        scale = 1.0f / sqrtf((float)(fold_256(sc->lanes) / (double)n) + eps);
    }
    float m = 0.0f;
    for (int i0 = tid; i0 < n; i0 += 8 * NORM_THREADS) {
        float wv[8];
#pragma unroll
        for (int k = 0; k < 8; k++) wv[k] = norm_w && i0 + k * NORM_THREADS < n ? norm_w[i0 + k * NORM_THREADS] : 1.0f;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const int i = i0 + k * NORM_THREADS;
            if (i >= n) break;
            float y = norm_w ? (xs[i] * scale) * wv[k] : xs[i];
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
        for (int i = tid; i < n_pad; i += NORM_THREADS) {
            const int r = i < n ? max(-128, min(127, __float2int_rn(xs[i] * s))) : 0;
            q[i] = (int8_t)r;
            acc += r;
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
    }
    __syncthreads();
}

__device__ __forceinline__ int token_sum(const prep_scratch *sc) {
    int s = 0;
    for (int w = 0; w < NORM_THREADS / 32; w++) s += sc->wsum[w];
    return s;
}

// Prompt path: one block per token writes its quantized row for the tensor-core GEMM.
__global__ void __launch_bounds__(NORM_THREADS) k_prep(const float *x, long x_stride, int n, int n_pad,
                                                        const float *norm_w, float eps, int mode, float *xs_all,
                                                        int8_t *q, float *qd, int *qsum, int steps) {
    __shared__ prep_scratch sc;
    dep_launch_next();
    dep_wait();
    const int t = blockIdx.x;
    prep_vector(x + (long)t * x_stride, n, n_pad, norm_w, eps, mode, xs_all + (long)t * n, q + (long)t * n_pad,
                qd + (long)t * steps, qsum + (long)t * steps, &sc);
    if (mode == PREP_TOKEN && threadIdx.x == 0) qsum[(long)t * steps] = token_sum(&sc);
}

// ------------------------------------------------------------------------------------------------ ternary GEMV

#define TG_PF 8 // the most steps one thread handles: all of them are loaded before the input is ready

// Shared memory of k_tern_gemv, carved from the dynamic allocation.
struct tern_smem {
    prep_scratch *sc;
    float *xs, *qd, *vals, *nw;
    int8_t *q;
    int *qsum, *part;
};

__host__ __device__ inline size_t tern_smem_bytes(int n, int steps) {
    return sizeof(prep_scratch) + (size_t)n * 8 + (size_t)steps * 256 + (size_t)steps * 8 + 64 * 4 +
           (size_t)64 * (steps > 8 ? steps : 8) * 4 + 64;
}

__device__ tern_smem tern_carve(uint8_t *p, int n, int steps) {
    tern_smem s;
    s.sc = (prep_scratch *)p, p += (sizeof(prep_scratch) + 15) / 16 * 16;
    s.q = (int8_t *)p, p += (size_t)steps * 256;
    s.xs = (float *)p, p += (size_t)n * 4;
    s.nw = (float *)p, p += (size_t)n * 4;
    s.qd = (float *)p, p += (size_t)steps * 4;
    s.qsum = (int *)p, p += (size_t)steps * 4;
    s.vals = (float *)p, p += 64 * 4;
    s.part = (int *)p;
    return s;
}

// One step (256 codes) of a row by thread g of its row group: a partial integer dot product.
__device__ __forceinline__ int tern_step(uint4 w, const int8_t *q, int s, int g) {
    const int4 *a = (const int4 *)(q + 256 * s);
    int acc = dot16(w.x, a[CHUNK(0, g)], 0);
    acc = dot16(w.y, a[CHUNK(1, g)], acc);
    acc = dot16(w.z, a[CHUNK(2, g)], acc);
    return dot16(w.w, a[CHUNK(3, g)], acc);
}

// y = W x for one token per blockIdx.y, W ternary. A block takes 64 / S rows; each row has 4 threads in each of S
// K-slices (S = 1..8, chosen by the host so a thread has at most TG_PF steps, all loaded before the previous kernel
// has finished). Every block prepares (norms, quantizes) the input itself: no separate launch for that.
__global__ void __launch_bounds__(NORM_THREADS, 2) k_tern_gemv(tern_w w, io_args io, int S) {
    extern __shared__ __align__(16) uint8_t smem_raw[];
    const tern_smem sm = tern_carve(smem_raw, w.n, w.steps);
    const int R = 64 / S, tid = threadIdx.x, g = tid & 3, rr = (tid >> 2) % R, slice = (tid >> 2) / R, t = blockIdx.y;
    const int row0 = blockIdx.x * R, r = min(row0 + rr, w.rows - 1);
    const uint4 *wr = w.codes + (size_t)r * w.steps * 4;
    uint4 pf[TG_PF];
#pragma unroll
    for (int i = 0; i < TG_PF; i++)
        if (slice + S * i < w.steps) pf[i] = __ldg(wr + (slice + S * i) * 4 + g);
    if (io.norm_w) // constants: read while the previous kernel runs, 8 loads in flight per thread
        for (int i0 = tid; i0 < w.n; i0 += 8 * NORM_THREADS) {
            float v[8];
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = i0 + k * NORM_THREADS < w.n ? io.norm_w[i0 + k * NORM_THREADS] : 0.0f;
#pragma unroll
            for (int k = 0; k < 8; k++)
                if (i0 + k * NORM_THREADS < w.n) sm.nw[i0 + k * NORM_THREADS] = v[k];
        }
    const int re = min(row0 + (tid & 63), w.rows - 1);
    const float rscale = w.row_scale[re], oscale = w.out_scale[re], rbias = w.bias ? w.bias[re] : 0.0f;
    dep_launch_next();
    dep_wait();
    const float resid = io.epi == EPI_ADD && tid < R && row0 + tid < w.rows ? io.y[(long)t * io.y_stride + row0 + tid] : 0.0f;
    if (io.norm_w) __syncthreads();
    prep_vector(io.x + (long)t * io.x_stride, w.n, w.steps * 256, io.norm_w ? sm.nw : NULL, io.eps,
                w.act == ACT_TOKEN ? PREP_TOKEN : PREP_Q8K, sm.xs, sm.q, sm.qd, sm.qsum, sm.sc);
    int acc = 0;
#pragma unroll
    for (int i = 0; i < TG_PF; i++) {
        const int s = slice + S * i;
        if (s >= w.steps) break;
        int d = tern_step(pf[i], sm.q, s, g);
        if (w.act == ACT_Q8K) {
            d += __shfl_xor_sync(FULL_MASK, d, 1);
            d += __shfl_xor_sync(FULL_MASK, d, 2);
            if (g == 0) sm.part[rr * w.steps + s] = d;
        } else {
            acc += d;
        }
    }
    if (w.act == ACT_TOKEN) {
        acc += __shfl_xor_sync(FULL_MASK, acc, 1);
        acc += __shfl_xor_sync(FULL_MASK, acc, 2);
        if (g == 0) sm.part[slice * R + rr] = acc;
    }
    __syncthreads();
    if (tid < R) {
        const int row = row0 + tid, rc = min(row, w.rows - 1);
        float v;
        if (w.act == ACT_TOKEN) { // scalar.c's i2s result: ((acc - sum) / scale) * tensor scale
            int total = 0;
            for (int k = 0; k < S; k++) total += sm.part[k * R + tid];
            v = (((float)total - (float)token_sum(sm.sc)) / sm.qd[0]) * rscale;
        } else { // dot_tq: per-block integer sums, added in block order in f32
            v = 0.0f;
            for (int s = 0; s < w.steps; s++)
                v += (float)(sm.part[tid * w.steps + s] - sm.qsum[s]) * (sm.qd[s] * w.blk_scale[(size_t)rc * w.steps + s]);
        }
        v *= oscale;
        if (w.bias) v += rbias;
        sm.vals[tid] = v;
        if (io.epi != EPI_GLU && row < w.rows) io.y[(long)t * io.y_stride + row] = io.epi == EPI_ADD ? resid + v : v;
    }
    if (io.epi == EPI_GLU) {
        __syncthreads();
        if (tid < R / 2 && row0 + 2 * tid < w.rows)
            io.y[(long)t * io.y_stride + row0 / 2 + tid] = glu(sm.vals[2 * tid], sm.vals[2 * tid + 1], io.glu);
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

// ------------------------------------------------------------------------------------------------ ternary GEMM

// Prompts: Y[t][r] for 64 tokens x 128 rows per block with int8 tensor cores (mma m16n8k32; the codes are the B
// fragments directly, two shifts each). 4 warps as 2 x 2, each 32 tokens x 64 rows. Integer sums are exact; the
// float epilogue is the GEMV's. For Q8_K inputs the integer sums restart every 256 codes and are added in f32 in
// block order, as dot_tq does.
#define GM_T 64
#define GM_R 128

__device__ __forceinline__ void mma_s8(int *c, int a0, int a1, int a2, int a3, int b0, int b1) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__host__ __device__ __forceinline__ int word_of_chunk(int c) { // where chunk c's word sits in a row (see the layout above)
    return ((c >> 4) * 4 + ((c & 7) >> 1)) * 4 + ((c >> 3) & 1) * 2 + (c & 1);
}

template <int ACT>
__global__ void __launch_bounds__(128) k_tern_gemm(tern_w w, io_args io, const int8_t *qa, const float *qd,
                                                   const int *qsum, int T) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, grp = lane >> 2, tig = lane & 3;
    const int t_base = blockIdx.y * GM_T + (warp >> 1) * 32, r_base = blockIdx.x * GM_R + (warp & 1) * 64;
    const int n_pad = w.steps * 256;
    const int8_t *arow[4];
    for (int i = 0; i < 4; i++) arow[i] = qa + (size_t)min(t_base + 8 * i + grp, T - 1) * n_pad + 4 * tig;
    const uint32_t *brow[8];
    for (int j = 0; j < 8; j++) brow[j] = (const uint32_t *)(w.codes + (size_t)min(r_base + 8 * j + grp, w.rows - 1) * w.steps * 4);
    int acc[2][8][4];
    float facc[2][8][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0, facc[i][j][e] = 0.0f;
    dep_launch_next();
    dep_wait();
    for (int s = 0; s < w.steps; s++) {
#pragma unroll 2
        for (int c = 16 * s; c < 16 * s + 16; c += 2) {
            const int k0 = 16 * c;
            int a[2][4];
#pragma unroll
            for (int i = 0; i < 2; i++) {
                a[i][0] = *(const int *)(arow[2 * i] + k0);
                a[i][1] = *(const int *)(arow[2 * i + 1] + k0);
                a[i][2] = *(const int *)(arow[2 * i] + k0 + 16);
                a[i][3] = *(const int *)(arow[2 * i + 1] + k0 + 16);
            }
            const int wo = word_of_chunk(c);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const uint2 b = __ldg((const uint2 *)(brow[j] + wo));
                const int b0 = (int)((b.x >> (2 * tig)) & CODE_MASK), b1 = (int)((b.y >> (2 * tig)) & CODE_MASK);
                mma_s8(acc[0][j], a[0][0], a[0][1], a[0][2], a[0][3], b0, b1);
                mma_s8(acc[1][j], a[1][0], a[1][1], a[1][2], a[1][3], b0, b1);
            }
        }
        if (ACT == ACT_Q8K) { // close this 256-block: f += (float)(sum - bsum) * (d_act * d_weight)
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 8; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int tt = min(t_base + 16 * i + grp + 8 * (e >> 1), T - 1);
                        const int rr = min(r_base + 8 * j + 2 * tig + (e & 1), w.rows - 1);
                        const size_t ti = (size_t)tt * w.steps + s;
                        facc[i][j][e] += (float)(acc[i][j][e] - qsum[ti]) * (qd[ti] * w.blk_scale[(size_t)rr * w.steps + s]);
                        acc[i][j][e] = 0;
                    }
        }
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int h = 0; h < 2; h++) { // c[2h], c[2h+1]: token grp + 8h, rows 2 tig and 2 tig + 1
                const int tt = t_base + 16 * i + grp + 8 * h, r0 = r_base + 8 * j + 2 * tig;
                if (tt >= T) continue;
                float v[2];
                for (int e = 0; e < 2; e++) {
                    const int rc = min(r0 + e, w.rows - 1);
                    float x;
                    if (ACT == ACT_TOKEN) x = (((float)acc[i][j][2 * h + e] - (float)qsum[(size_t)tt * w.steps]) / qd[(size_t)tt * w.steps]) * w.row_scale[rc];
                    else x = facc[i][j][2 * h + e];
                    v[e] = finish_row(x, rc, w.out_scale, w.bias);
                }
                if (io.epi == EPI_GLU) {
                    if (r0 < w.rows) io.y[(long)tt * io.y_stride + r0 / 2] = glu(v[0], v[1], io.glu);
                } else {
                    for (int e = 0; e < 2; e++)
                        if (r0 + e < w.rows) emit(io, tt, r0 + e, v[e]);
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

struct attn_args {
    float *qkv;          // [T][qkv_stride]: q heads, then k heads, then v heads
    long qkv_stride;
    int k_off, v_off;
    __half *kc, *vc;     // this layer's cache: [n_ctx][kv_dim]
    const float *rope;   // [n_ctx][n_rot]: cos, sin pairs (tl_rope_table)
    const int *pos0;
    float *out;          // [T][n_head * hd]
    int n_head, n_head_kv, hd, n_rot, neox, probs_f16, n_ctx;
};

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
    const int t = blockIdx.x, pos = *a.pos0 + t, half = a.n_rot / 2, kv_dim = a.hd * a.n_head_kv;
    float *row = a.qkv + (long)t * a.qkv_stride;
    const float *cs = a.rope + (long)pos * a.n_rot;
    for (int idx = threadIdx.x; idx < (a.n_head + a.n_head_kv) * half; idx += blockDim.x) {
        const int h = idx / half;
        rope_head(h < a.n_head ? row + h * a.hd : row + a.k_off + (h - a.n_head) * a.hd, cs, a.n_rot, a.neox, idx % half);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
        a.kc[(long)pos * kv_dim + i] = __float2half_rn(row[a.k_off + i]);
        a.vc[(long)pos * kv_dim + i] = __float2half_rn(row[a.v_off + i]);
    }
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

// Attention of query head blockIdx.x of token blockIdx.y over positions 0 .. pos, as forward.c's attend_one.
// fresh (decode): this kernel also ropes q and k of the new token and the first query head of each KV group
// writes k and v to the cache; the others take position pos from shared memory. Dynamic shared memory: n_ctx + 3 hd
// + n_rot floats.
__global__ void k_attention(attn_args a, int fresh) {
    extern __shared__ __align__(16) float sa[];
    __shared__ float shf[32];
    __shared__ double shd[32];
    const int h = blockIdx.x, t = blockIdx.y, tid = threadIdx.x, hd = a.hd;
    const int grp = a.n_head / a.n_head_kv, kvh = h / grp, kv_dim = hd * a.n_head_kv, pos = *a.pos0 + t;
    float *sc = sa, *qh = sa + a.n_ctx, *kn = qh + hd, *vn = kn + hd, *cs = vn + hd;
    const __half *K = a.kc + kvh * hd, *V = a.vc + kvh * hd;
    const int half = a.n_rot / 2;
    if (fresh)
        for (int i = tid; i < a.n_rot; i += blockDim.x) cs[i] = a.rope[(long)pos * a.n_rot + i];
    for (int p = tid; p < pos; p += blockDim.x) { // earlier tokens' keys and values: to L2 while q is computed
        asm volatile("prefetch.global.L2 [%0];" ::"l"(K + (long)p * kv_dim));
        asm volatile("prefetch.global.L2 [%0];" ::"l"(V + (long)p * kv_dim));
    }
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
            if (h % grp == 0) a.kc[(long)pos * kv_dim + kvh * hd + i] = kh, a.vc[(long)pos * kv_dim + kvh * hd + i] = vh;
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
    mx = block_max(mx, shf);
    for (int p = tid; p <= pos; p += blockDim.x) sc[p] = dev::tl_expf(sc[p] - mx);
    __syncthreads();
    if (tid < 32) { // the softmax denominator: 32 double lanes, position p in lane p % 32
        double l = 0.0;
        for (int p = tid; p <= pos; p += 32) l += (double)sc[p];
        l = warp_fold_d(l);
        if (tid == 0) shd[0] = l;
    }
    __syncthreads();
    const float inv = (float)(1.0 / shd[0]);
    for (int p = tid; p <= pos; p += blockDim.x) {
        const float pr = sc[p] * inv;
        sc[p] = a.probs_f16 ? round_f16(pr) : pr;
    }
    __syncthreads();
    for (int d = tid; d < hd; d += blockDim.x) { // attn_pv: each output sums over positions in order, in f32
        float acc = 0.0f;
        const int last = fresh ? pos - 1 : pos;
        int p = 0;
        for (; p + 8 <= last + 1; p += 8) {
            float v8[8];
#pragma unroll
            for (int e = 0; e < 8; e++) v8[e] = __half2float(V[(long)(p + e) * kv_dim + d]);
#pragma unroll
            for (int e = 0; e < 8; e++) acc += sc[p + e] * v8[e];
        }
        for (; p <= last; p++) acc += sc[p] * __half2float(V[(long)p * kv_dim + d]);
        if (fresh) acc += sc[pos] * vn[d];
        a.out[((long)t * a.n_head + h) * hd + d] = acc;
    }
}
