// The CUDA backend: the whole forward pass on the GPU, behind the same session API as the CPU.
//
// Weights are uploaded once. Ternary linears (I2_S, TQ2_0, TQ1_0) are repacked for __dp4a: 16 consecutive codes
// per 32-bit word, element i of a group in byte i % 4 at bit 2 * (i / 4), so (w >> 2j) & 0x03030303 holds the codes
// of elements 4j..4j+3 as bytes. Activations are quantized as on the CPU: per token (I2_S, bitnet.cpp's rule) or
// per 256-block Q8_K (TQ, llama.cpp's rule). F32 and F16 weights (embeddings, heads, F32 models) stay float.
// Decode (one token) replays a captured CUDA graph; positions and token ids live in device memory.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "../../runtime/model.h"
#include "../../runtime/session.h"
#include "../../runtime/tensor_types.h"
}

#define CK(call)                                                                                        \
    do {                                                                                                \
        cudaError_t e_ = (call);                                                                        \
        if (e_ != cudaSuccess) return tl_fail(err, TERNLM_ERR_BACKEND, "CUDA: %s (%s:%d)",              \
                                             cudaGetErrorString(e_), __FILE__, __LINE__);               \
    } while (0)

enum { LIN_TERNARY, LIN_F32, LIN_F16 };
enum { ACT_TOKEN, ACT_Q8K };

struct dlin {
    int kind, act;
    int rows, n;           // outputs, inputs
    uint32_t *codes;       // ternary: rows * n/16 words
    float *blk_scale;      // TQ: rows * n/256 block scales (fp16 -> f32)
    float scale;           // I2_S tensor scale
    float *wf;             // F32 weights
    __half *wh;            // F16 weights
    float out_scale;
    float *bias;
};

struct dlayer {
    float *attn_norm, *attn_sub_norm, *ffn_norm, *ffn_sub_norm;
    dlin q, k, v, o, gate, up, down;
};

struct gpu_state {
    cudaStream_t st;
    dlayer *L;
    dlin embd, head;       // the embedding table (F16 or F32) and the LM head
    float *out_norm;
    __half *kc, *vc;       // [layer][pos][kv_dim]
    int T_cap;
    float *x, *xn, *q, *k, *v, *att, *proj, *g, *u, *logits;
    int8_t *qa;
    float *qs;             // per token scale (ACT_TOKEN) or per block d (ACT_Q8K)
    int *qsum;             // per token sum (ACT_TOKEN) or per block sum (ACT_Q8K)
    int *tok, *pos0;
    cudaGraphExec_t graph;
    int have_graph;
};

// ------------------------------------------------------------------------------------------------ kernels

__global__ void k_embed(const float *wf, const __half *wh, int n, const int *tok, float *x, int T) {
    const int t = blockIdx.y;
    if (t >= T) return;
    const long row = tok[t];
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        x[(long)t * n + i] = wh ? __half2float(wh[row * n + i]) : wf[row * n + i];
}

__device__ double block_sum_d(double v, double *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffff, v, o);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        v = threadIdx.x < (blockDim.x >> 5) ? sh[threadIdx.x] : 0.0;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffff, v, o);
        if (threadIdx.x == 0) sh[0] = v;
    }
    __syncthreads();
    const double r = sh[0];
    __syncthreads();
    return r;
}

__device__ float block_max_f(float v, float *sh) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffff, v, o));
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        v = threadIdx.x < (blockDim.x >> 5) ? sh[threadIdx.x] : -INFINITY;
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffff, v, o));
        if (threadIdx.x == 0) sh[0] = v;
    }
    __syncthreads();
    const float r = sh[0];
    __syncthreads();
    return r;
}

// RMSNorm of one token per block: sum of squares in double, x * (1/sqrt(mean + eps)) * w.
__global__ void k_rmsnorm(const float *x, const float *w, float *out, int n, float eps) {
    __shared__ double sh[32];
    const float *xr = x + (long)blockIdx.x * n;
    float *o = out + (long)blockIdx.x * n;
    double s = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += (double)(xr[i] * xr[i]);
    s = block_sum_d(s, sh);
    const float scale = 1.0f / sqrtf((float)(s / n) + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = __fmul_rn(__fmul_rn(xr[i], scale), w[i]);
}

// Per-token int8 (bitnet.cpp): one block per token.
__global__ void k_quant_token(const float *x, int n, int8_t *q, float *s, int *sum) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    const float *xr = x + (long)blockIdx.x * n;
    float m = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, fabsf(xr[i]));
    m = block_max_f(m, shf);
    const float sc = (float)(127.0 / fmax((double)m, 1e-5));
    double acc = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        int r = __float2int_rn(__fmul_rn(xr[i], sc));
        r = max(-128, min(127, r));
        q[(long)blockIdx.x * n + i] = (int8_t)r;
        acc += r;
    }
    acc = block_sum_d(acc, shd);
    if (threadIdx.x == 0) {
        s[blockIdx.x] = sc;
        sum[blockIdx.x] = (int)acc;
    }
}

// Q8_K (llama.cpp): one warp per 256-block; signed absmax, iscale = -127/m, q = min(127, rne(iscale x)).
__global__ void k_quant_q8k(const float *x, int n, int8_t *q, float *d, int *bsum, int n_blocks_total) {
    const int b = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (b >= n_blocks_total) return;
    const int per_tok = n / 256, t = b / per_tok, j = b % per_tok;
    const float *xb = x + (long)t * n + 256 * j;
    float amax = 0, mv = 0;
    int first = 1 << 30;
    for (int i = lane; i < 256; i += 32) {
        const float a = fabsf(xb[i]);
        if (a > amax) { amax = a; mv = xb[i]; first = i; }
    }
    for (int o = 16; o > 0; o >>= 1) { // the largest |x|, the first one on ties
        const float a2 = __shfl_down_sync(0xffffffff, amax, o), m2 = __shfl_down_sync(0xffffffff, mv, o);
        const int f2 = __shfl_down_sync(0xffffffff, first, o);
        if (a2 > amax || (a2 == amax && f2 < first)) { amax = a2; mv = m2; first = f2; }
    }
    mv = __shfl_sync(0xffffffff, mv, 0);
    amax = __shfl_sync(0xffffffff, amax, 0);
    int8_t *qb = q + (long)t * n + 256 * j;
    int s = 0;
    if (amax == 0) {
        for (int i = lane; i < 256; i += 32) qb[i] = 0;
    } else {
        const float is = -127.0f / mv;
        for (int i = lane; i < 256; i += 32) {
            const int r = min(127, __float2int_rn(__fmul_rn(is, xb[i])));
            qb[i] = (int8_t)r;
            s += r;
        }
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffff, s, o);
    if (lane == 0) {
        d[b] = amax == 0 ? 0.0f : 1.0f / (-127.0f / mv);
        bsum[b] = s;
    }
}

// Ternary linear: one warp per output row, all T tokens. out = y (+)= ...
struct tern_args { // a ternary linear's fields, passed explicitly
    const uint32_t *codes;
    const float *blk_scale, *bias;
    int rows, n, act;
    float scale, out_scale;
};

__global__ void k_ternary(const tern_args w, const int8_t *q, const float *qs, const int *qsum, float *y, int T, int accumulate) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= w.rows) return;
    const int nw = w.n / 16;
    const uint32_t *wr = w.codes + (long)row * nw;
    for (int t = 0; t < T; t++) {
        const int *qa = (const int *)(q + (long)t * w.n);
        float v;
        if (w.act == ACT_TOKEN) {
            int acc = 0;
            for (int k = lane; k < nw; k += 32) {
                const uint32_t x = __ldg(wr + k);
                acc = __dp4a((int)(x & 0x03030303u), qa[4 * k], acc);
                acc = __dp4a((int)((x >> 2) & 0x03030303u), qa[4 * k + 1], acc);
                acc = __dp4a((int)((x >> 4) & 0x03030303u), qa[4 * k + 2], acc);
                acc = __dp4a((int)((x >> 6) & 0x03030303u), qa[4 * k + 3], acc);
            }
            for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffff, acc, o);
            v = (((float)acc - (float)qsum[t]) / qs[t]) * w.scale;
        } else {
            const int nb = w.n / 256;
            float f = 0;
            for (int b = lane; b < nb; b += 32) {
                int acc = 0;
                for (int kk = 0; kk < 16; kk++) {
                    const int k = 16 * b + kk;
                    const uint32_t x = __ldg(wr + k);
                    acc = __dp4a((int)(x & 0x03030303u), qa[4 * k], acc);
                    acc = __dp4a((int)((x >> 2) & 0x03030303u), qa[4 * k + 1], acc);
                    acc = __dp4a((int)((x >> 4) & 0x03030303u), qa[4 * k + 2], acc);
                    acc = __dp4a((int)((x >> 6) & 0x03030303u), qa[4 * k + 3], acc);
                }
                acc -= qsum[t * nb + b];
                f += (float)acc * (qs[t * nb + b] * w.blk_scale[(long)row * nb + b]);
            }
            for (int o = 16; o > 0; o >>= 1) f += __shfl_down_sync(0xffffffff, f, o);
            v = f;
        }
        if (lane == 0) {
            v *= w.out_scale;
            if (w.bias) v += w.bias[row];
            float *dst = y + (long)t * w.rows + row;
            *dst = accumulate ? *dst + v : v;
        }
    }
}

// Float linear (F32 or F16 weights, f32 activations; F16 activations rounded when round_in): one warp per row.
__global__ void k_float(const float *wf, const __half *wh, int rows, int n, float out_scale, const float *bias,
                        const float *x, float *y, int T, int accumulate, int round_in, long y_stride) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    for (int t = 0; t < T; t++) {
        const float *xr = x + (long)t * n;
        float s = 0;
        if (wh) {
            const __half2 *wr = (const __half2 *)(wh + (long)row * n);
            for (int i = lane; i < n / 2; i += 32) {
                const float2 wv = __half22float2(__ldg(wr + i));
                float a = xr[2 * i], b = xr[2 * i + 1];
                if (round_in) a = __half2float(__float2half_rn(a)), b = __half2float(__float2half_rn(b));
                s += wv.x * a + wv.y * b;
            }
        } else {
            const float *wr = wf + (long)row * n;
            for (int i = lane; i < n; i += 32) s += __ldg(wr + i) * xr[i];
        }
        for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffff, s, o);
        if (lane == 0) {
            float v = s * out_scale;
            if (bias) v += bias[row];
            float *dst = y + (long)t * y_stride + row;
            *dst = accumulate ? *dst + v : v;
        }
    }
}

// RoPE on q and k, then store k and v (f16) at their positions. One block per token.
__global__ void k_rope_store(float *q, float *k, const float *v, __half *kc, __half *vc, const int *pos0, int n_head,
                             int n_head_kv, int hd, int n_rot, int neox, float theta_scale_log2, int n_ctx, int layer) {
    const int t = blockIdx.x, pos = *pos0 + t, half = n_rot / 2, kv_dim = hd * n_head_kv;
    for (int idx = threadIdx.x; idx < (n_head + n_head_kv) * half; idx += blockDim.x) {
        const int h = idx / half, i = idx % half;
        float *base = h < n_head ? q + ((long)t * n_head + h) * hd : k + ((long)t * n_head_kv + (h - n_head)) * hd;
        const float theta = (float)pos * exp2f(theta_scale_log2 * (float)i);
        float s, c;
        sincosf(theta, &s, &c);
        const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const float x0 = base[a], x1 = base[b];
        base[a] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
        base[b] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
    }
    __syncthreads();
    const long off = ((long)layer * n_ctx + pos) * kv_dim;
    for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
        kc[off + i] = __float2half_rn(k[(long)t * kv_dim + i]);
        vc[off + i] = __float2half_rn(v[(long)t * kv_dim + i]);
    }
}

// Attention for one (head, token): scores over the cache, softmax, P·V. Dynamic shared memory: n_ctx + hd floats.
__global__ void k_attention(const float *q, const __half *kc, const __half *vc, float *out, const int *pos0, int n_head,
                            int n_head_kv, int hd, int n_ctx, int layer, int probs_f16) {
    extern __shared__ float sm[];
    __shared__ float shf[32];
    __shared__ double shd[32];
    float *scores = sm, *qh = sm + n_ctx;
    const int h = blockIdx.x, t = blockIdx.y, pos = *pos0 + t, kvh = h / (n_head / n_head_kv), kv_dim = hd * n_head_kv;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) qh[d] = __half2float(__float2half_rn(q[((long)t * n_head + h) * hd + d]));
    __syncthreads();
    const __half *K = kc + (long)layer * n_ctx * kv_dim + kvh * hd, *V = vc + (long)layer * n_ctx * kv_dim + kvh * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    float mx = -INFINITY;
    for (int p = threadIdx.x; p <= pos; p += blockDim.x) {
        const __half *kr = K + (long)p * kv_dim;
        float s = 0;
        for (int d = 0; d < hd; d++) s += __half2float(kr[d]) * qh[d];
        scores[p] = s * scale;
        mx = fmaxf(mx, scores[p]);
    }
    mx = block_max_f(mx, shf);
    double sum = 0;
    for (int p = threadIdx.x; p <= pos; p += blockDim.x) {
        scores[p] = expf(scores[p] - mx);
        sum += scores[p];
    }
    sum = block_sum_d(sum, shd);
    const float inv = (float)(1.0 / sum);
    for (int p = threadIdx.x; p <= pos; p += blockDim.x) {
        float w = scores[p] * inv;
        scores[p] = probs_f16 ? __half2float(__float2half_rn(w)) : w;
    }
    __syncthreads();
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0;
        for (int p = 0; p <= pos; p++) acc += scores[p] * __half2float(V[(long)p * kv_dim + d]);
        out[((long)t * n_head + h) * hd + d] = acc;
    }
}

__global__ void k_ffn_act(float *g, const float *u, long n, int relu2) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        const float x = g[i];
        const float a = relu2 ? (x > 0 ? x * x : 0.0f) : x / (1.0f + expf(-x));
        g[i] = a * u[i];
    }
}

// ------------------------------------------------------------------------------------------------ upload

// Codes 0..2 of row r of a ternary weight (any of the three formats), and its per-256 block scales for TQ.
static void ternary_row(const tl_weight *w, int64_t r, uint8_t *codes, float *blk) {
    const int64_t n = w->ne0;
    const uint8_t *row = w->data + (uint64_t)r * w->row_bytes;
    if (w->type == TL_I2_S) {
        for (int64_t j = 0; j < n; j++) {
            const int c = tl_i2s_code(row, j);
            codes[j] = (uint8_t)(c == 3 ? 1 : c);
        }
        return;
    }
    float *tmp = (float *)malloc(n * sizeof(float));
    tl_dequant_row(w->type, row, tmp, n, 0);
    for (int64_t b = 0; b < n / 256; b++) {
        const uint8_t *blk_bytes = row + b * (w->type == TL_TQ2_0 ? 66 : 54);
        const int off = w->type == TL_TQ2_0 ? 64 : 52;
        blk[b] = tl_f16_to_f32((uint16_t)(blk_bytes[off] | blk_bytes[off + 1] << 8));
        for (int e = 0; e < 256; e++) {
            const float v = tmp[256 * b + e];
            codes[256 * b + e] = (uint8_t)(v > 0 ? 2 : v < 0 ? 0 : 1);
        }
    }
    free(tmp);
}

static ternlm_status upload_linear(const tl_weight *w, dlin *d, ternlm_error *err) {
    memset(d, 0, sizeof *d);
    d->rows = (int)w->ne1;
    d->n = (int)w->ne0;
    d->out_scale = w->out_scale;
    d->scale = w->i2s_scale;
    if (w->bias) {
        CK(cudaMalloc(&d->bias, d->rows * sizeof(float)));
        CK(cudaMemcpy(d->bias, w->bias, d->rows * sizeof(float), cudaMemcpyHostToDevice));
    }
    if (w->type == TL_I2_S || w->type == TL_TQ2_0 || w->type == TL_TQ1_0) {
        d->kind = LIN_TERNARY;
        d->act = w->type == TL_I2_S ? ACT_TOKEN : ACT_Q8K;
        const int64_t nw = w->ne0 / 16, nb = w->ne0 / 256;
        uint32_t *packed = (uint32_t *)calloc((size_t)(nw * w->ne1), 4);
        float *blk = (float *)calloc((size_t)((nb ? nb : 1) * w->ne1), sizeof(float));
        uint8_t *codes = (uint8_t *)malloc((size_t)w->ne0);
        for (int64_t r = 0; r < w->ne1; r++) {
            ternary_row(w, r, codes, blk + r * nb);
            for (int64_t i = 0; i < w->ne0; i++)
                packed[r * nw + i / 16] |= (uint32_t)codes[i] << (8 * (i % 4) + 2 * ((i % 16) / 4));
        }
        CK(cudaMalloc(&d->codes, nw * w->ne1 * 4));
        CK(cudaMemcpy(d->codes, packed, nw * w->ne1 * 4, cudaMemcpyHostToDevice));
        if (d->act == ACT_Q8K) {
            CK(cudaMalloc(&d->blk_scale, nb * w->ne1 * sizeof(float)));
            CK(cudaMemcpy(d->blk_scale, blk, nb * w->ne1 * sizeof(float), cudaMemcpyHostToDevice));
        }
        free(packed), free(blk), free(codes);
        return TERNLM_OK;
    }
    // float formats: F16 stays F16; everything else is dequantized to F32
    const size_t elems = (size_t)w->ne0 * w->ne1;
    if (w->type == TL_F16) {
        d->kind = LIN_F16;
        CK(cudaMalloc(&d->wh, elems * 2));
        CK(cudaMemcpy(d->wh, w->data, elems * 2, cudaMemcpyHostToDevice));
        return TERNLM_OK;
    }
    d->kind = LIN_F32;
    float *tmp = (float *)malloc(elems * sizeof(float));
    for (int64_t r = 0; r < w->ne1; r++) tl_dequant_row(w->type, w->data + (uint64_t)r * w->row_bytes, tmp + r * w->ne0, w->ne0, w->i2s_scale);
    CK(cudaMalloc(&d->wf, elems * sizeof(float)));
    CK(cudaMemcpy(d->wf, tmp, elems * sizeof(float), cudaMemcpyHostToDevice));
    free(tmp);
    return TERNLM_OK;
}

static ternlm_status upload_vec(const float *h, int n, float **d, ternlm_error *err) {
    *d = NULL;
    if (!h) return TERNLM_OK;
    CK(cudaMalloc(d, n * sizeof(float)));
    CK(cudaMemcpy(*d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    return TERNLM_OK;
}

// ------------------------------------------------------------------------------------------------ forward

struct act_cache { int have_tok, have_q8k; };

static void quantize_for(gpu_state *g, const dlin *w, const float *x, int T, act_cache *c) {
    if (w->kind != LIN_TERNARY) return;
    if (w->act == ACT_TOKEN && !c->have_tok) {
        k_quant_token<<<T, 256, 0, g->st>>>(x, w->n, g->qa, g->qs, g->qsum);
        c->have_tok = 1, c->have_q8k = 0;
    } else if (w->act == ACT_Q8K && !c->have_q8k) {
        const int nb = T * (w->n / 256);
        k_quant_q8k<<<(nb + 7) / 8, 256, 0, g->st>>>(x, w->n, g->qa, g->qs, g->qsum, nb);
        c->have_q8k = 1, c->have_tok = 0;
    }
}

static void linear(gpu_state *g, const tl_hparams *hp, const dlin *w, const float *x, float *y, int T, int acc, act_cache *c) {
    const int blocks = (w->rows + 7) / 8;
    if (w->kind == LIN_TERNARY) {
        quantize_for(g, w, x, T, c);
        const tern_args a = {w->codes, w->blk_scale, w->bias, w->rows, w->n, w->act, w->scale, w->out_scale};
        k_ternary<<<blocks, 256, 0, g->st>>>(a, g->qa, g->qs, g->qsum, y, T, acc);
    } else {
        k_float<<<blocks, 256, 0, g->st>>>(w->wf, w->wh, w->rows, w->n, w->out_scale, w->bias, x, y, T, acc,
                                           w->kind == LIN_F16 && hp->head_input_f16, w->rows);
    }
}

static void forward(ternlm_session *s, int T, int which) {
    gpu_state *g = (gpu_state *)s->gpu;
    const ternlm_model *m = s->m;
    const tl_hparams *h = &m->hp;
    const int E = h->n_embd, F = h->n_ff;
    const float tsl2 = log2f(h->rope_base) * (-2.0f / (float)h->n_rot);
    k_embed<<<dim3((E + 255) / 256, T), 256, 0, g->st>>>(g->embd.wf, g->embd.wh, E, g->tok, g->x, T);
    for (uint32_t l = 0; l < h->n_layer; l++) {
        const dlayer *L = &g->L[l];
        act_cache c = {0, 0};
        k_rmsnorm<<<T, 256, 0, g->st>>>(g->x, L->attn_norm, g->xn, E, h->eps);
        linear(g, h, &L->q, g->xn, g->q, T, 0, &c);
        linear(g, h, &L->k, g->xn, g->k, T, 0, &c);
        linear(g, h, &L->v, g->xn, g->v, T, 0, &c);
        k_rope_store<<<T, 256, 0, g->st>>>(g->q, g->k, g->v, g->kc, g->vc, g->pos0, h->n_head, h->n_head_kv, h->head_dim, h->n_rot,
                                           h->rope == TL_ROPE_NEOX, tsl2, s->n_ctx, l);
        k_attention<<<dim3(h->n_head, T), 128, (s->n_ctx + h->head_dim) * sizeof(float), g->st>>>(
            g->q, g->kc, g->vc, g->att, g->pos0, h->n_head, h->n_head_kv, h->head_dim, s->n_ctx, l, h->probs_f16);
        if (L->attn_sub_norm) k_rmsnorm<<<T, 256, 0, g->st>>>(g->att, L->attn_sub_norm, g->att, E, h->eps);
        c = {0, 0};
        linear(g, h, &L->o, g->att, g->x, T, 1, &c); // residual: x += Wo a
        k_rmsnorm<<<T, 256, 0, g->st>>>(g->x, L->ffn_norm, g->xn, E, h->eps);
        c = {0, 0};
        linear(g, h, &L->gate, g->xn, g->g, T, 0, &c);
        linear(g, h, &L->up, g->xn, g->u, T, 0, &c);
        k_ffn_act<<<256, 256, 0, g->st>>>(g->g, g->u, (long)T * F, h->act == TL_ACT_RELU2);
        if (L->ffn_sub_norm) k_rmsnorm<<<T, 256, 0, g->st>>>(g->g, L->ffn_sub_norm, g->g, F, h->eps);
        c = {0, 0};
        linear(g, h, &L->down, g->g, g->x, T, 1, &c);
    }
    if (which == TERNLM_LOGITS_NONE) return;
    const int first = which == TERNLM_LOGITS_ALL ? 0 : T - 1, n = T - first;
    k_rmsnorm<<<n, 256, 0, g->st>>>(g->x + (long)first * E, g->out_norm, g->xn, E, h->eps);
    act_cache c = {0, 0};
    if (g->head.kind == LIN_TERNARY) linear(g, h, &g->head, g->xn, g->logits, n, 0, &c);
    else k_float<<<(g->head.rows + 7) / 8, 256, 0, g->st>>>(g->head.wf, g->head.wh, g->head.rows, g->head.n, g->head.out_scale,
                                                            g->head.bias, g->xn, g->logits, n, 0,
                                                            g->head.kind == LIN_F16 && h->head_input_f16, g->head.rows);
}

// ------------------------------------------------------------------------------------------------ session hooks

ternlm_status tl_session_new_gpu(ternlm_model *m, const ternlm_session_params *p, ternlm_session **out, ternlm_error *err) {
    *out = NULL;
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0)
        return tl_fail(err, TERNLM_ERR_BACKEND, "--gpu: no CUDA device is available (driver missing or no GPU)");
    for (uint32_t l = 0; l < m->hp.n_layer; l++) { /* F32/F16 linears fault on the GPU: not supported yet */
        const uint32_t t = m->layers[l].wq.type;
        if (t != TL_I2_S && t != TL_TQ2_0 && t != TL_TQ1_0)
            return tl_fail(err, TERNLM_ERR_UNSUPPORTED,
                           "--gpu runs ternary linears (I2_S, TQ2_0, TQ1_0); this model's are %s: run it on the CPU",
                           tl_type_name(t));
    }
    ternlm_session *s = (ternlm_session *)calloc(1, sizeof *s);
    gpu_state *g = (gpu_state *)calloc(1, sizeof *g);
    if (!s || !g) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    s->m = m;
    s->gpu = g;
    s->n_ctx = p->n_ctx ? TL_MIN(p->n_ctx, m->hp.n_ctx_train) : TL_MIN(m->hp.n_ctx_train, 4096u);
    s->kern = NULL;
    const tl_hparams *h = &m->hp;
    ternlm_status st = TERNLM_OK;
    if (cudaStreamCreate(&g->st) != cudaSuccess) st = tl_fail(err, TERNLM_ERR_BACKEND, "CUDA: cannot create a stream");
    g->L = (dlayer *)calloc(h->n_layer, sizeof(dlayer));
    for (uint32_t l = 0; l < h->n_layer && !st; l++) {
        const tl_layer *L = &m->layers[l];
        dlayer *D = &g->L[l];
        if (!st) st = upload_vec(L->attn_norm, h->n_embd, &D->attn_norm, err);
        if (!st) st = upload_vec(L->attn_sub_norm, h->n_embd, &D->attn_sub_norm, err);
        if (!st) st = upload_vec(L->ffn_norm, h->n_embd, &D->ffn_norm, err);
        if (!st) st = upload_vec(L->ffn_sub_norm, h->n_ff, &D->ffn_sub_norm, err);
        const tl_weight *src[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
        dlin *dst[7] = {&D->q, &D->k, &D->v, &D->o, &D->gate, &D->up, &D->down};
        for (int i = 0; i < 7 && !st; i++) st = upload_linear(src[i], dst[i], err);
    }
    if (!st) st = upload_vec(m->output_norm, h->n_embd, &g->out_norm, err);
    if (!st) st = upload_linear(&m->tok_embd, &g->embd, err);
    if (!st) {
        if (m->output.data == m->tok_embd.data) g->head = g->embd; // tied: one copy on the GPU
        else st = upload_linear(&m->output, &g->head, err);
    }
    if (!st && g->embd.kind == LIN_TERNARY) st = tl_fail(err, TERNLM_ERR_UNSUPPORTED, "--gpu: a ternary token embedding is not supported");
    g->T_cap = 512;
    const size_t T = (size_t)g->T_cap, E = h->n_embd, F = h->n_ff, KVd = (size_t)h->head_dim * h->n_head_kv;
    const size_t wide = TL_MAX(E, F);
    if (!st) {
        cudaError_t e = cudaSuccess;
        float **fb[] = {&g->x, &g->xn, &g->q, &g->k, &g->v, &g->att, &g->proj, &g->g, &g->u};
        const size_t fs[] = {T * E, T * E, T * E, T * KVd, T * KVd, T * E, T * E, T * F, T * F};
        for (int i = 0; i < 9 && e == cudaSuccess; i++) e = cudaMalloc(fb[i], fs[i] * sizeof(float));
        if (e == cudaSuccess) e = cudaMalloc(&g->logits, T * h->n_vocab * sizeof(float));
        if (e == cudaSuccess) e = cudaMalloc(&g->qa, T * wide);
        if (e == cudaSuccess) e = cudaMalloc(&g->qs, T * (wide / 256 + 1) * sizeof(float) + T * sizeof(float));
        if (e == cudaSuccess) e = cudaMalloc(&g->qsum, T * (wide / 256 + 1) * sizeof(int) + T * sizeof(int));
        if (e == cudaSuccess) e = cudaMalloc(&g->tok, T * sizeof(int));
        if (e == cudaSuccess) e = cudaMalloc(&g->pos0, sizeof(int));
        const size_t kv = (size_t)h->n_layer * s->n_ctx * KVd;
        if (e == cudaSuccess) e = cudaMalloc(&g->kc, kv * 2);
        if (e == cudaSuccess) e = cudaMalloc(&g->vc, kv * 2);
        if (e != cudaSuccess) st = tl_fail(err, TERNLM_ERR_NOMEM, "CUDA: %s allocating session memory", cudaGetErrorString(e));
    }
    const size_t smem = (s->n_ctx + h->head_dim) * sizeof(float);
    if (!st && smem > 48 * 1024 &&
        cudaFuncSetAttribute(k_attention, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess)
        st = tl_fail(err, TERNLM_ERR_BACKEND, "CUDA: a context of %u needs %zu bytes of shared memory", s->n_ctx, smem);
    if (st) {
        ternlm_session_free(s);
        return st;
    }
    *out = s;
    return TERNLM_OK;
}

void tl_session_free_gpu(ternlm_session *s) {
    gpu_state *g = (gpu_state *)s->gpu;
    if (g) {
        // device memory goes with the context's allocations; free what this session owns
        if (g->have_graph) cudaGraphExecDestroy(g->graph);
        void *bufs[] = {g->x, g->xn, g->q, g->k, g->v, g->att, g->proj, g->g, g->u, g->logits, g->qa, g->qs, g->qsum,
                        g->tok, g->pos0, g->kc, g->vc, g->out_norm};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
        for (uint32_t l = 0; g->L && l < s->m->hp.n_layer; l++) {
            dlayer *D = &g->L[l];
            cudaFree(D->attn_norm), cudaFree(D->attn_sub_norm), cudaFree(D->ffn_norm), cudaFree(D->ffn_sub_norm);
            dlin *ls[7] = {&D->q, &D->k, &D->v, &D->o, &D->gate, &D->up, &D->down};
            for (int i = 0; i < 7; i++) cudaFree(ls[i]->codes), cudaFree(ls[i]->blk_scale), cudaFree(ls[i]->wf), cudaFree(ls[i]->wh), cudaFree(ls[i]->bias);
        }
        if (g->head.wh != g->embd.wh || g->head.wf != g->embd.wf) cudaFree(g->head.wh), cudaFree(g->head.wf), cudaFree(g->head.codes), cudaFree(g->head.blk_scale);
        cudaFree(g->embd.wh), cudaFree(g->embd.wf);
        free(g->L);
        if (g->st) cudaStreamDestroy(g->st);
        free(g);
    }
    free(s->logits);
    free(s);
}

ternlm_status tl_gpu_eval(ternlm_session *s, const int32_t *tokens, size_t n, int which, ternlm_error *err) {
    gpu_state *g = (gpu_state *)s->gpu;
    const uint32_t nv = s->m->hp.n_vocab;
    for (size_t done = 0; done < n;) {
        const int T = (int)TL_MIN((size_t)g->T_cap, n - done);
        const int last = done + (size_t)T == n;
        const int mode = which == TERNLM_LOGITS_ALL ? which : (last ? which : TERNLM_LOGITS_NONE);
        const int pos = (int)s->pos;
        CK(cudaMemcpyAsync(g->tok, tokens + done, T * sizeof(int), cudaMemcpyHostToDevice, g->st));
        CK(cudaMemcpyAsync(g->pos0, &pos, sizeof(int), cudaMemcpyHostToDevice, g->st));
        if (T == 1 && mode == TERNLM_LOGITS_LAST) { // decode: replay the captured graph
            if (!g->have_graph) {
                cudaGraph_t graph;
                CK(cudaStreamBeginCapture(g->st, cudaStreamCaptureModeThreadLocal));
                forward(s, 1, TERNLM_LOGITS_LAST);
                CK(cudaStreamEndCapture(g->st, &graph));
                CK(cudaGraphInstantiate(&g->graph, graph, 0));
                cudaGraphDestroy(graph);
                g->have_graph = 1;
            }
            CK(cudaGraphLaunch(g->graph, g->st));
        } else {
            forward(s, T, mode);
        }
        CK(cudaGetLastError());
        const int rows = mode == TERNLM_LOGITS_ALL ? T : mode == TERNLM_LOGITS_LAST ? 1 : 0;
        if (rows) {
            float *dst = s->logits + (which == TERNLM_LOGITS_ALL ? done * nv : 0);
            CK(cudaMemcpyAsync(dst, g->logits, (size_t)rows * nv * sizeof(float), cudaMemcpyDeviceToHost, g->st));
        }
        CK(cudaStreamSynchronize(g->st));
        s->pos += (uint32_t)T;
        s->n_evaluated += (uint64_t)T;
        done += (size_t)T;
    }
    return TERNLM_OK;
}
