// The persistent decode kernel (TERNLM_CUDA_PERSIST=1; off by default: measured slower, docs/PERFORMANCE.md's tenth
// session): one cooperative launch runs every layer of a one-token step, one block per SM, its phases (q|k|v,
// attention, o, gate|up, down) separated by grid-wide barriers instead of kernel boundaries. Why it was tried: a
// decode step as ~270 launches spends ~2 us of pure latency in each k_prep_tok and each GEMV after its dependency
// wait (seventh session), while a layer's weights are ~4 us of DRAM time. Each block has the copy engine
// (cp.async.bulk on an mbarrier per buffer) bring its rows of the phase after next into shared memory as soon as it
// has finished reading that buffer, before it waits at the barrier: weights never depend on the previous phase, so
// the weight stream overlaps the barriers and the latency chains (measured: the wait for weights is ~0.2 us a
// phase, 1.6 for q|k|v). Each block prepares a linear's input itself (RMSNorm + int8 quantization) from the vector
// the previous phase left in global memory, so a phase costs one barrier and no separate preparation launch. What
// the profile (TERNLM_CUDA_PERSIST_PROF) shows it loses on: the preparation, 3.5-5.8 us a phase with one block of
// 16 warps an SM (two global round trips' worth of latency plus four block barriers and the fold), the products of
// 30-106 rows a block (2.5-4.7 us), and 1.4-2.9 us a barrier: ~45 us a layer against ~31 for the launches.
//
// Bits: the float operations are k_prep_tok's, k_tern_gemv's epilogue and k_attention_dec's, in the same order;
// integer dot products are exact in any order. Data written by other blocks in this launch is read through L2
// (__ldcg, cp.async.cg); constants (weights, norms, the RoPE table) may use any path.
//
// Limits (persist_setup in backend_cuda.cu): Hopper (bulk copies), I2_S linears with q|k|v and gate|up fused,
// inputs of at most PK_MAX_STEPS steps and widths divisible by 4, heads for k_attention_dec, no per-head norms,
// n_head <= blocks, the shared memory of one block an SM (else a smaller attention cache, else the old path).
#ifndef TERNLM_CUDA_PERSIST_CUH
#define TERNLM_CUDA_PERSIST_CUH

#define PK_THREADS 512 // the default block (TERNLM_CUDA_PERSIST_THREADS: 512 or 1024): one block an SM
#define PK_MAX_WARPS 32
#define PK_MAX_STEPS 32 // the widest input a block prepares (pk_prep: PK_PER elements a thread)
enum { PK_QKV, PK_O, PK_GU, PK_DOWN, PK_KINDS };
enum { PK_RUN = 0, PK_BARRIERS = 1, PK_NOCOMPUTE = 2 }; // pk_args.mode: timing experiments skip work (logits wrong)

struct pk_lin { // one I2_S linear as staged: codes rows x steps x 4 uint4 (kernels.cuh's layout), then per row
    const uint4 *codes; // {row scale, out_scale, bias, 0} (16 bytes: a block's rows are one aligned range)
    const float4 *sc;
    int rows, steps, bias;
};

struct pk_layer {
    pk_lin lin[PK_KINDS];
    const float *norm[PK_KINDS]; // the RMSNorm weights of each linear's input (attn_norm, attn_sub_norm, ffn_norm,
                                 // ffn_sub_norm), NULL where the model has none
    __half *kc, *vc;
};

struct pk_args {
    const pk_layer *L;
    int n_layer;
    attn_args a; // kc, vc: per layer from L
    float *x, *qkv, *att, *h;
    int E, F, QW, max_n;
    float eps;
    int glu_fn, cap, mode, fenced; // fenced: pk_barrier's variant
    const __half *emb_h; // layer 0 reads the token's embedding row (F16 or F32) and block 0 stores it as x;
    const float *emb_f;  // both NULL: x was copied in (host_embed)
    const int *tok;
    unsigned *bar;            // bar[0]: arrivals; bar[32]: launches so far (the base of this launch's targets)
    unsigned long long *prof; // NULL, or per phase k and block b, at (k * blocks + b) * 4: times in ns (k_persist)
    unsigned buf[2], sq, at; // byte offsets in dynamic shared memory: weight buffers, staged codes, attention
};

struct pk_scratch {
    double lanes[NORM_THREADS];
    unsigned wmax[PK_MAX_WARPS];
    int wsum[PK_MAX_WARPS];
};

__device__ __forceinline__ void cp_async4(void *smem, const void *gmem) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }

// Every block arrives (thread 0, release at GPU scope, after the block's barrier: its writes are ordered before)
// and waits until the arrivals reach target (acquire), which counts every block at every barrier so far. Targets
// grow through launches (bar[32]), so the counter is never reset; signed differences survive its wrap.
__device__ __forceinline__ unsigned long long pk_now() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// prof (TERNLM_CUDA_PERSIST_PROF, else NULL): this block's arrival and departure times (ns) at this barrier.
// fenced (TERNLM_CUDA_PERSIST_BAR=1): a fence, a relaxed add and relaxed polling, then a fence, instead.
__device__ __forceinline__ void pk_barrier(unsigned *ctr, unsigned target, unsigned long long *prof, int fenced) {
    __syncthreads();
    if (threadIdx.x == 0) {
        if (prof) prof[0] = pk_now();
        unsigned v;
        if (fenced) {
            __threadfence();
            asm volatile("red.relaxed.gpu.global.add.u32 [%0], 1;" ::"l"(ctr) : "memory");
            do {
                asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(ctr) : "memory");
            } while ((int)(v - target) < 0);
            __threadfence();
        } else {
            asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(ctr) : "memory");
            do {
                asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(ctr) : "memory");
            } while ((int)(v - target) < 0);
        }
        if (prof) prof[1] = pk_now();
    }
    __syncthreads();
}

// Block b's rows of a linear: units of ur rows (2 for gate|up, whose pairs must stay together) split evenly.
__device__ __forceinline__ void pk_rows(int rows, int ur, int *r0, int *r1) {
    const int units = rows / ur, b = blockIdx.x, nb = gridDim.x;
    *r0 = (int)((long)b * units / nb) * ur, *r1 = (int)((long)(b + 1) * units / nb) * ur;
}

// The block's rows of w into buf, codes then the rows' scales: thread 0 asks the copy engine for both ranges,
// completing on mbarrier mb (the buffer's previous contents were read before the caller's block barrier; the
// fence orders those generic-proxy reads before the async-proxy writes).
__device__ __forceinline__ unsigned smem_u32(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }

__device__ __noinline__ void pk_stage(uint8_t *buf, const pk_lin &w, int ur, unsigned long long *mb) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 // (the host runs this kernel on Hopper only)
    int r0, r1;
    pk_rows(w.rows, ur, &r0, &r1);
    const int nr = r1 - r0, nq = nr * w.steps * 4;
    const uint4 *src = w.codes + (size_t)r0 * w.steps * 4;
    if (threadIdx.x != 0) return;
    const unsigned bar = smem_u32(mb), bytes = 16u * (unsigned)(nq + nr);
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
    const uint8_t *from[2] = {(const uint8_t *)src, (const uint8_t *)(w.sc + r0)};
    const unsigned len[2] = {16u * (unsigned)nq, 16u * (unsigned)nr};
    unsigned dst = smem_u32(buf);
    for (int k = 0; k < 2; k++)
        for (unsigned o = 0; o < len[k]; o += 32768u) { // in pieces of at most 32 KB
            const unsigned n = min(32768u, len[k] - o);
            asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                         ::"r"(dst), "l"(from[k] + o), "r"(n), "r"(bar) : "memory");
            dst += n;
        }
#endif
}

__device__ __forceinline__ void mbar_wait(unsigned long long *mb, unsigned parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    unsigned ok = 0;
    while (!ok)
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                     : "=r"(ok) : "r"(smem_u32(mb)), "r"(parity) : "memory");
#endif
}

// k_prep_tok's arithmetic for this block's copy of one input: x from xf (read through L2) or xh (an F16 embedding
// row); xw: where to store the raw input too (layer 0's x), else NULL. x and the norm weights are copied to shared
// memory (xs, nws: n floats each; cp.async, all in flight at once, or element loads for an F16 row); lane i < 256
// adds the squares of elements i + 256k in element order (forward.c's rmsnorm), lanes.h's fold; then every
// thread scales elements t + 512k, takes the maximum (exact in any order) and quantizes them (quantize_i8; the
// codes' sum is exact in any order). The codes go to sq in TG_STAGE's layout (step k at k * STAGE_STEP), padding
// codes up to n_pad are 0; every thread returns with the scale in *scl and the codes' sum in *sum. Every thread
// of the block calls it. Loops, not unrolled arrays: each phase runs this code once per layer, so its size is
// instruction fetches on the critical path. Needs n % 4 == 0 and no cp.async group of the caller in flight.
__device__ __noinline__ void pk_prep(const float *xf, const __half *xh, float *xw, int n, int n_pad, const float *norm_w,
                                     float eps, int8_t *sq, float *xs, float *nws, pk_scratch *sc, float *scl, int *sum) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nt = blockDim.x, nw = nt >> 5;
    for (int i = tid; i < n / 4; i += nt) {
        if (!xh) cp_async16(xs + 4 * i, xf + 4 * i);
        if (norm_w) cp_async16(nws + 4 * i, norm_w + 4 * i);
    }
    cp_commit();
    if (xh)
        for (int i = tid; i < n; i += nt) xs[i] = __half2float(xh[i]);
    asm volatile("cp.async.wait_group 0;" ::: "memory");
    __syncthreads();
    if (xw)
        for (int i = tid; i < n; i += nt) xw[i] = xs[i];
    float scale = 1.0f;
    if (norm_w) {
        if (tid < NORM_THREADS) {
            double l = 0.0;
#pragma unroll 4
            for (int i = tid; i < n; i += NORM_THREADS) l += (double)(xs[i] * xs[i]);
            sc->lanes[tid] = l;
        }
        __syncthreads();
        scale = 1.0f / sqrtf((float)(fold_256(sc->lanes) / (double)n) + eps); // every warp folds the same lanes
    }
    float m = 0.0f;
    for (int i = tid; i < n; i += nt) { // (each thread rewrites only its own elements)
        const float y = norm_w ? (xs[i] * scale) * nws[i] : xs[i];
        xs[i] = y;
        m = fmaxf(m, fabsf(y));
    }
    const unsigned wm = __reduce_max_sync(FULL_MASK, __float_as_uint(m));
    if (lane == 0) sc->wmax[warp] = wm;
    __syncthreads();
    const float mf = __uint_as_float(__reduce_max_sync(FULL_MASK, lane < nw ? sc->wmax[lane] : 0u)); // one load a lane
    const float s = (double)mf >= 1e-5 ? 127.0f / mf : (float)(127.0 / 1e-5); // quantize_i8's max starts at 1e-5
    int acc = 0;
    for (int i = tid; i < n_pad; i += nt) {
        const int r = i < n ? max(-128, min(127, __float2int_rn(xs[i] * s))) : 0;
        sq[(i >> 8) * STAGE_STEP + (i & 255)] = (int8_t)r;
        acc += r;
    }
    const int ws = __reduce_add_sync(FULL_MASK, acc);
    if (lane == 0) sc->wsum[warp] = ws;
    __syncthreads(); // codes and sums are visible
    *scl = s, *sum = __reduce_add_sync(FULL_MASK, lane < nw ? sc->wsum[lane] : 0);
}

// The block's rows of a linear from its staged buffer, k_tern_gemv's products and epilogue: a row has 4 threads in
// each of S K-slices (S = 8: a warp per row; gate|up S = 4, so a gate row and its up row share a warp), the warps
// take units of 8 / S rows in turn.
__device__ __noinline__ void pk_gemv(const uint8_t *buf, const pk_lin &w, int ur, const int8_t *sq, float scl, int sum, int epi,
                        int glu_fn, float *y) {
    int r0, r1;
    pk_rows(w.rows, ur, &r0, &r1);
    const int nr = r1 - r0, steps = w.steps;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    const int lS = epi == EPI_GLU ? 2 : 3, S = 1 << lS, RW = 8 >> lS;
    const int g = lane & 3, slice = (lane >> 2) & (S - 1), rr = lane >> (2 + lS);
    const bool out_lane = (lane & (4 * S - 1)) == 0;
    const uint4 *W = (const uint4 *)buf;
    const float4 *sc4 = (const float4 *)(buf + (size_t)nr * steps * 64);
    for (int u = warp; u * RW < nr; u += nwarps) {
        const int lr = u * RW + rr, lc = min(lr, nr - 1), row = r0 + lr;
        const float resid = epi == EPI_ADD && out_lane && lr < nr ? __ldcg(y + row) : 0.0f; // in flight during the products
        int acc = 0;
        for (int s = slice; s < steps; s += S) acc += tern_step(W[((size_t)lc * steps + s) * 4 + g], sq + STAGE_STEP * s, g, true);
        if (S == 8) acc = __reduce_add_sync(FULL_MASK, acc); // the warp is one row
        else
            for (int o = 1; o < 4 * S; o <<= 1) acc += __shfl_xor_sync(FULL_MASK, acc, o);
        const float4 rsc = sc4[lc];
        float v = (((float)acc - (float)sum) / scl) * rsc.x; // scalar.c's i2s result, then out_scale and bias
        v *= rsc.y;
        if (w.bias) v += rsc.z;
        if (epi == EPI_GLU) { // rows 2i (gate) and 2i + 1 (up): the warp's two halves
            const float up = __shfl_down_sync(FULL_MASK, v, 4 * S);
            if (out_lane && rr == 0 && lr < nr) y[row / 2] = glu(v, up, glu_fn);
        } else if (out_lane && lr < nr) {
            y[row] = epi == EPI_ADD ? resid + v : v;
        }
    }
}

// k_attention_dec's part before its wait: the cached keys and values of earlier positions (cp.async, committed by
// the caller) and the RoPE angles of this position.
__device__ __noinline__ void pk_attn_prefetch(const attn_args &a, int h, int cap, uint8_t *smem) {
    const int tid = threadIdx.x, hd = a.hd, grp = a.n_head / a.n_head_kv, kvh = h / grp, kv_dim = hd * a.n_head_kv;
    const int pos = *a.pos0, per = hd / 8, ncached = min(pos, cap);
    const __half *K = a.kc + kvh * hd, *V = a.vc + kvh * hd;
    __half *Ks = (__half *)smem, *Vs = Ks + (size_t)cap * hd;
    float *cs = (float *)(Vs + (size_t)cap * hd) + a.n_ctx + 3 * hd;
    for (int i = tid; i < ncached * per; i += blockDim.x) {
        const int p = i / per, c = i % per;
        cp_async16(Ks + (size_t)p * hd + 8 * c, K + (long)p * kv_dim + 8 * c);
        cp_async16(Vs + (size_t)p * hd + 8 * c, V + (long)p * kv_dim + 8 * c);
    }
    for (int i = tid; i < a.n_rot; i += blockDim.x) cs[i] = a.rope[(long)pos * a.n_rot + i];
}

// k_attention_dec's arithmetic for query head h of the one token, after pk_attn_prefetch's copies have landed and
// a barrier (the q|k|v row is read through L2: other blocks wrote it in this launch).
__device__ __noinline__ void pk_attn(const attn_args &a, int h, int cap, uint8_t *smem, float *shf, double *shd) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, hd = a.hd;
    const int grp = a.n_head / a.n_head_kv, kvh = h / grp, kv_dim = hd * a.n_head_kv, pos = *a.pos0;
    const int nc = hd / 32, half = a.n_rot / 2;
    const __half *K = a.kc + kvh * hd, *V = a.vc + kvh * hd;
    __half *Ks = (__half *)smem, *Vs = Ks + (size_t)cap * hd;
    float *sc = (float *)(Vs + (size_t)cap * hd), *qh = sc + a.n_ctx, *kn = qh + hd, *vn = kn + hd, *cs = vn + hd;
    const float *row = a.qkv;
    for (int i = tid; i < hd; i += blockDim.x) { // k_attention's rope of q and k, the cache store, f16 rounding
        const int pair = a.neox ? (i < half ? i : i - half) : i / 2, first = a.neox ? i < half : (i & 1) == 0;
        const int other = a.neox ? (first ? i + half : i - half) : (first ? i + 1 : i - 1);
        const int o = pair < half ? other : i;
        float qv = __ldcg(row + h * hd + i), kv = __ldcg(row + a.k_off + kvh * hd + i);
        const float qo = __ldcg(row + h * hd + o), ko = __ldcg(row + a.k_off + kvh * hd + o), vv = __ldcg(row + a.v_off + kvh * hd + i);
        if (pair < half) {
            const float cc = cs[2 * pair], ss = cs[2 * pair + 1];
            qv = first ? qv * cc - qo * ss : qo * ss + qv * cc;
            kv = first ? kv * cc - ko * ss : ko * ss + kv * cc;
        }
        const __half kh = __float2half_rn(kv), vh = __float2half_rn(vv);
        if (h % grp == 0) a.kc[(long)pos * kv_dim + kvh * hd + i] = kh, a.vc[(long)pos * kv_dim + kvh * hd + i] = vh;
        qh[i] = round_f16(qv), kn[i] = __half2float(kh), vn[i] = __half2float(vh);
    }
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
        for (; p + 8 <= nsm; p += 8) {
            float pr[8], vv[8];
#pragma unroll
            for (int k = 0; k < 8; k++) pr[k] = sc[p + k], vv[k] = __half2float(Vs[(size_t)(p + k) * hd + tid]);
#pragma unroll
            for (int k = 0; k < 8; k++) acc += pr[k] * vv[k];
        }
        for (; p < nsm; p++) acc += sc[p] * __half2float(Vs[(size_t)p * hd + tid]);
        for (; p < pos; p++) acc += sc[p] * __half2float(V[(long)p * kv_dim + tid]);
        acc += sc[pos] * vn[tid];
        a.out[(long)h * hd + tid] = acc;
    }
}

// Weight phase j (layer j / 4, linear j % 4) into buffer j % 2 (q|k|v and gate|up share buffer 0, o and down 1).
__device__ __forceinline__ void pk_stage_phase(const pk_args &p, uint8_t *smem, unsigned long long *mb, int j) {
    if (j < 4 * p.n_layer && p.mode != PK_BARRIERS) pk_stage(smem + p.buf[j & 1], p.L[j / 4].lin[j % 4], j % 4 == PK_GU ? 2 : 1, mb + (j & 1));
}

// Wait for phase j's weights (the phase after it may stay in flight); the mbarrier makes them visible.
__device__ __forceinline__ void pk_wait(const pk_args &p, unsigned long long *mb, int j) {
    if (j < 4 * p.n_layer && p.mode != PK_BARRIERS) mbar_wait(mb + (j & 1), (j >> 1) & 1);
    __syncthreads();
}

// Before attention: its cached keys and values (cp.async).
__device__ __forceinline__ void pk_wait_attn() {
    asm volatile("cp.async.wait_group 0;" ::: "memory");
    __syncthreads();
}

// The norm weights phase j reads after its barrier, to L2 (one line per thread), while the phase before runs.
__device__ __forceinline__ void pk_norm_prefetch(const pk_args &p, int j) {
    if (j >= 4 * p.n_layer) return;
    const float *nw = p.L[j / 4].norm[j % 4];
    const int n = j % 4 == PK_DOWN ? p.F : j % 4 == PK_O ? p.QW : p.E;
    if (nw && 32 * (int)threadIdx.x < n) asm volatile("prefetch.global.L2 [%0];" ::"l"(nw + 32 * threadIdx.x));
}

template <int NT>
__global__ void __launch_bounds__(NT, 1) k_persist(pk_args p) {
    extern __shared__ __align__(16) uint8_t psm[];
    __shared__ pk_scratch sc;
    __shared__ float shf[32];
    __shared__ double shd[1];
    __shared__ unsigned long long mb[2]; // one mbarrier per weight buffer
    const int nb = gridDim.x, b = blockIdx.x;
    const unsigned launches = *(volatile unsigned *)(p.bar + 32);
    unsigned target = launches * (unsigned)(5 * p.n_layer - 1) * (unsigned)nb;
    int8_t *sq = (int8_t *)(psm + p.sq);
    float *xs = (float *)(psm + p.at), *nws = xs + p.max_n; // pk_prep's input and norm: the attention area, free then
    const bool attn_block = b < p.a.n_head, run = p.mode == PK_RUN;
    const int np_e = (p.E + 255) / 256 * 256, np_q = (p.QW + 255) / 256 * 256, np_f = (p.F + 255) / 256 * 256;
    const unsigned nbar = 5 * p.n_layer - 1;
    // TERNLM_CUDA_PERSIST_PROF: phase k's slot: [0] its end (arrival), [1] departure, [2] weights ready, [3] input
    // prepared; slot nbar + 1: [0] the launch's start
    unsigned ph = 0;
    unsigned long long *pf = p.prof ? p.prof + (size_t)b * 4 : NULL;
#define MARK(i) if (pf && threadIdx.x == 0) pf[i] = pk_now()
#define PROF ph++, pf = p.prof ? p.prof + ((size_t)ph * nb + b) * 4 : NULL
    if (p.prof && threadIdx.x == 0) p.prof[((size_t)(nbar + 1) * nb + b) * 4] = pk_now();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (threadIdx.x == 0) {
        for (int i = 0; i < 2; i++) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(mb + i)) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
#endif
    __syncthreads();
    pk_stage_phase(p, psm, mb, 0);
    pk_stage_phase(p, psm, mb, 1);
    float scl;
    int sum;
    for (int l = 0; l < p.n_layer; l++) {
        const pk_layer &L = p.L[l];
        attn_args a = p.a;
        a.kc = L.kc, a.vc = L.vc;
        const int j = 4 * l;
        // q|k|v: the input is x (layer 0: the token's embedding row, which block 0 also stores as x)
        pk_wait(p, mb, j);
        MARK(2);
        if (run) {
            const bool emb = l == 0 && (p.emb_h || p.emb_f);
            const float *xf = emb && p.emb_f ? p.emb_f + (long)*p.tok * p.E : p.x;
            const __half *xh = emb && p.emb_h ? p.emb_h + (long)*p.tok * p.E : NULL;
            pk_prep(xf, xh, emb && b == 0 ? p.x : NULL, p.E, np_e, L.norm[PK_QKV], p.eps, sq, xs, nws, &sc, &scl, &sum);
            MARK(3);
            pk_gemv(psm + p.buf[0], L.lin[PK_QKV], 1, sq, scl, sum, EPI_STORE, p.glu_fn, p.qkv);
        }
        if (attn_block && p.mode != PK_BARRIERS) pk_attn_prefetch(a, b, p.cap, psm + p.at);
        cp_commit();
        __syncthreads(); // buffer 0 is read
        pk_stage_phase(p, psm, mb, j + 2);
        pk_norm_prefetch(p, j + 1);
        pk_barrier(p.bar, target += nb, pf, p.fenced);
        PROF;
        // attention: one block per query head
        pk_wait_attn();
        MARK(2);
        MARK(3);
        if (attn_block && run) pk_attn(a, b, p.cap, psm + p.at, shf, shd);
        pk_barrier(p.bar, target += nb, pf, p.fenced);
        PROF;
        // o, added to x
        pk_wait(p, mb, j + 1);
        MARK(2);
        if (run) {
            pk_prep(p.att, NULL, NULL, p.QW, np_q, L.norm[PK_O], p.eps, sq, xs, nws, &sc, &scl, &sum);
            MARK(3);
            pk_gemv(psm + p.buf[1], L.lin[PK_O], 1, sq, scl, sum, EPI_ADD, p.glu_fn, p.x);
        }
        __syncthreads();
        pk_stage_phase(p, psm, mb, j + 3);
        pk_norm_prefetch(p, j + 2);
        pk_barrier(p.bar, target += nb, pf, p.fenced);
        PROF;
        // gate|up with the activation
        pk_wait(p, mb, j + 2);
        MARK(2);
        if (run) {
            pk_prep(p.x, NULL, NULL, p.E, np_e, L.norm[PK_GU], p.eps, sq, xs, nws, &sc, &scl, &sum);
            MARK(3);
            pk_gemv(psm + p.buf[0], L.lin[PK_GU], 2, sq, scl, sum, EPI_GLU, p.glu_fn, p.h);
        }
        __syncthreads();
        pk_stage_phase(p, psm, mb, j + 4);
        pk_norm_prefetch(p, j + 3);
        pk_barrier(p.bar, target += nb, pf, p.fenced);
        PROF;
        // down, added to x
        pk_wait(p, mb, j + 3);
        MARK(2);
        if (run) {
            pk_prep(p.h, NULL, NULL, p.F, np_f, L.norm[PK_DOWN], p.eps, sq, xs, nws, &sc, &scl, &sum);
            MARK(3);
            pk_gemv(psm + p.buf[1], L.lin[PK_DOWN], 1, sq, scl, sum, EPI_ADD, p.glu_fn, p.x);
        }
        __syncthreads();
        pk_stage_phase(p, psm, mb, j + 5);
        pk_norm_prefetch(p, j + 4);
        if (l + 1 < p.n_layer) {
            pk_barrier(p.bar, target += nb, pf, p.fenced);
            PROF;
        }
    }
    asm volatile("cp.async.wait_all;" ::: "memory"); // (the last groups are empty)
    MARK(0);
    MARK(1);
#undef PROF
#undef MARK
    if (b == 0 && threadIdx.x == 0) p.bar[32] = launches + 1; // every block read it before the first barrier
}

#endif
