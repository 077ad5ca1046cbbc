// The CUDA backend: the whole forward pass on the GPU, behind the same session API as the CPU, computing the same
// bits as the CPU (kernels.cuh says how).
//
// Weights are uploaded once: ternary linears repacked (kernels.cuh's layout), with q/k/v concatenated and gate/up
// interleaved when their types match, so a layer is five linear or attention launches for one token: q|k|v,
// attention, o, gate/up with the activation, down. A ternary linear's input is normed and quantized once per step
// (k_prep; or, per SITE_* bit, the producing kernel's last block (TERNLM_CUDA_PREP) or the GEMV itself
// (TERNLM_CUDA_OWN; TERNLM_CUDA_FPREP: in registers, TG_FPREP; all measured slower; TERNLM_CUDA_CPREP: the GEMV's
// clusters of 8 blocks together, TG_CPREP, sm_90, not yet measured)), float linears prepare their own. Float-like
// weights stay F16 or become F32 (the CPU dequantizes those to F32 too). Decode replays a captured CUDA graph whose
// kernels overlap their starts with the previous kernel's end (programmatic dependent launch, Hopper); prompts use
// the tensor-core GEMM and, for grouped-query models, k_attention_tile (4 tokens and the 4 heads of a KV group a
// block; k_attention_group, a block per KV group and token, for other groups and for batches). Bonsai's Q1_0 and
// Q2_0 ride the ternary layout (upload_linear), qwen3 adds k_head_norm. A session may hold n_seq KV slots for
// multi-sequence batches (tl_gpu_eval_ubatch: each token's slot and position, the prompt path's kernels). A head
// re-quantized at load (--head-quant i8 / i4) goes up as the CPU's integers (upload_headq) and runs in k_headq.
// TERNLM_CUDA_PERSIST=1 runs a one-token step's layers in one persistent kernel instead (persist.cuh; measured
// slower, so off by default).
#include <cuda_runtime.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "../../runtime/model.h"
#include "../../runtime/session.h"
#include "../../runtime/tensor_types.h"
#include "../../simd/repack.h"
}

#include "kernels.cuh"
#include "persist.cuh"

#define CK(call)                                                                                        \
    do {                                                                                                \
        cudaError_t e_ = (call);                                                                        \
        if (e_ != cudaSuccess) return tl_fail(err, TERNLM_ERR_BACKEND, "CUDA: %s (%s:%d)",              \
                                             cudaGetErrorString(e_), __FILE__, __LINE__);               \
    } while (0)

#define T_CAP 512       // tokens per prompt chunk on the GPU
#define GEMM_MIN_T 4    // from this many tokens, ternary linears use the tensor-core GEMM

enum { LIN_NONE, LIN_TERNARY, LIN_FLOAT, LIN_HEADQ }; // LIN_HEADQ: the int8 / int4 head (k_headq)

// The four ternary linears of a layer, as bits: which input preparation each uses for one-token steps.
enum { SITE_QKV = 1, SITE_O = 2, SITE_GU = 4, SITE_DOWN = 8 };

// Timing experiments (TERNLM_CUDA_TIMING_SKIP, one-token steps only): leave out every k_prep, attention or ternary
// GEMV launch, or (SKIP_NOOP) launch an empty kernel in its place, to time one kind's share of the decode graph,
// or the launch boundaries alone. The logits are then meaningless.
// SKIP_HEAD leaves out the head; SKIP_GEMV_TAIL / SKIP_PREP_TAIL launch the ternary GEMVs / k_prep_tok but stop
// them after their wait.
enum { SKIP_PREP = 1, SKIP_ATTN = 2, SKIP_GEMV = 4, SKIP_NOOP = 8, SKIP_HEAD = 16, SKIP_GEMV_TAIL = 32, SKIP_PREP_TAIL = 64 };

struct dlin { // one linear on the GPU, possibly several fused (see fuse_parts)
    int kind, rows, n;
    tern_w t;
    float_w f;
    headq_w q;
    int q4;       // LIN_HEADQ: int4 rows (else int8)
    void *mem[6]; // device allocations it owns
};

struct dlayer {
    float *attn_norm, *attn_sub_norm, *ffn_norm, *ffn_sub_norm;
    float *q_norm, *k_norm; // qwen3's per-head norms (head_dim), else NULL
    dlin qkv[3];   // one fused, or q, k, v
    int n_qkv, qkv_col[3];
    dlin gu[2];    // one interleaved gate/up (EPI_GLU), or gate and up
    int n_gu;
    dlin o, down;
};

struct gpu_state {
    cudaStream_t st;
    int n_sm, pdl, pdl_now, use_graph, head_input_f16;
    dlayer *L;
    dlin head, embd;
    int embd_on_gpu;
    float *out_norm, *rope;
    __half *kc, *vc;
    int qkv_rows, kv_dim, max_n, max_steps;
    float *x, *qkv, *att, *h, *u, *xs, *logits, *qd, *embd_host;
    int8_t *qa;
    int *qsum, *tok, *pos0;
    unsigned *done;       // finish_and_prep's block counter
    int prep_sites;       // TERNLM_CUDA_PREP: SITE_* whose input the producer's last block prepares (finish_and_prep)
    int own_sites;        // TERNLM_CUDA_OWN: SITE_* whose GEMV prepares its own input (k_tern_gemv<ACT_TOKEN, true>)
    int fprep_sites;      // TERNLM_CUDA_FPREP: SITE_* whose one-token GEMV norms and quantizes its own input (TG_FPREP)
    int cprep_sites;      // TERNLM_CUDA_CPREP: SITE_* whose one-token GEMV's clusters prepare its input together (TG_CPREP)
    int clusters;         // the GPU runs thread-block clusters (sm_90)
    int stage;            // TERNLM_CUDA_QSTAGE: one-token GEMVs copy their int8 input to shared memory (TG_STAGE)
    int prep_tok;         // TERNLM_CUDA_PREP_TOK: k_prep_tok for per-token int8 inputs of GEMVs (TG_PSUM)
    int split;            // TERNLM_CUDA_SPLIT: GEMVs on per-token int8 inputs use TG_SPLIT
    int gmask;            // TERNLM_CUDA_GMASK: k_tern_gemv on per-token int8 inputs uses TG_MASK
    int fuse;             // TERNLM_CUDA_FUSE: one-token I2_S linears prepare their input in the GEMV (k_tern_gemv_fused);
                          // 1: one block per SM where an instance fits, 2: one unit per warp (TERNLM_CUDA_FGRID)
    int fgrid;            // TERNLM_CUDA_FGRID: with one unit, K-slices until rows x S / 64 >= fgrid x n_sm
    int fuse_log;         // TERNLM_CUDA_FUSE_LOG: print each fused launch's shape (at graph capture)
    int fbps;             // TERNLM_CUDA_FBPS: its launches' blocks per SM (1 or 2)
    int fuse_sites;       // TERNLM_CUDA_FUSE_SITES: the SITE_* that use it (others: k_prep_tok + k_tern_gemv)
    int gridf;            // TERNLM_CUDA_GRIDF: one-token GEMVs split rows into K-slices until rows x S / 64 >= gridf x n_sm
    int head_bal;         // TERNLM_CUDA_HEAD_BAL: k_float_gemv's grid gives every block the same number of row tiles
    float *logits_host;   // TERNLM_CUDA_PINNED: one row of logits in page-locked memory (the DMA's target), else NULL
    int *io_host;         // with it: a one-token step's token and position, page-locked (asynchronous copies)
    int skip;             // TERNLM_CUDA_TIMING_SKIP: SKIP_* (decode timing experiments only: the results are wrong)
    int attn_group;       // prompts may use k_attention_group (GQA groups of 2..4 heads of <= 128 dimensions)
    int attn_dec;         // one-token steps use k_attention_dec (heads of 32, 64, 96 or 128 dimensions)
    int attn_dec_cap;     // the positions whose keys and values it copies to shared memory
    int attn_dec_threads; // TERNLM_CUDA_ATTN_THREADS: its block size (256 or 512: more warps for K·Q)
    size_t attn_group_smem; // the dynamic shared memory it may take
    void (*attn_tile)(attn_args, int, int); // single-sequence prompts: k_attention_tile<hd / 32, attn_nt> or NULL
    int attn_nt, attn_pt; // its tokens per block and positions per tile (TERNLM_CUDA_ATTN_NT 2 / 4 / 8, _PT 32 / 64)
    size_t attn_tile_smem; // the dynamic shared memory it may take
    cudaGraphExec_t graph;
    int have_graph;
    size_t ftok_smem;     // k_float_gemv_tok's shared memory limit (0: not usable; several tokens use k_float_gemv)
    int hq_mt;            // LIN_HEADQ head: the most 16-token fragments a k_headq block stages for > 16 tokens (4, 2, 1)
    int hq_dec_d;         // TERNLM_CUDA_HQ_D: chunks in flight per warp in k_headq for <= 16 tokens (8 or 4)
    // multi-sequence batches (tl_gpu_eval_ubatch): n_seq KV slots of `slot` elements, each token's slot and position
    uint32_t n_seq;
    size_t slot;
    int *tok_seq, *tok_pos;
    int batch_now;        // the forward pass in flight reads tok_seq / tok_pos
    // the persistent decode kernel (persist.cuh): TERNLM_CUDA_PERSIST, and whether this model and GPU allow it
    int persist, pk_ok, pk_mode, pk_cap, pk_fenced; // pk_fenced: TERNLM_CUDA_PERSIST_BAR
    int pk_threads;       // TERNLM_CUDA_PERSIST_THREADS: its block size (512 or 1024)
    pk_layer *pk_L;       // device: per layer, its linears and norms
    unsigned *pk_bar;     // device: the barrier's counter and launch count
    size_t pk_smem;
    unsigned pk_off[4];   // buffers 0 and 1, staged codes, attention (byte offsets)
    unsigned long long *pk_prof, *pk_prof_host; // TERNLM_CUDA_PERSIST_PROF: barrier times of each step (pk_args.prof)
    float4 **pk_sc;       // its per-row scale records, n_layer x PK_KINDS device arrays
    int max_rows;
    double pk_acc[6][5];  // per phase kind (q|k|v, attention, o, gate|up, down, the whole launch): sums of us
    int pk_steps;
};

// ------------------------------------------------------------------------------------------------ upload

// Codes of row r of a ternary weight exactly as the CPU's kernels read them, and the block scales (TQ: per 256,
// Q1_0: per 128, Q2_0: per 64). Q1_0's sign bit b becomes code 2b (kernels.cuh's tern_w says why).
static void ternary_codes(const tl_weight *w, int64_t r, uint8_t *codes, float *blk) {
    const uint8_t *row = w->data + (uint64_t)r * w->row_bytes;
    const int64_t n = w->ne0;
    if (w->type == TL_I2_S) {
        for (int64_t j = 0; j < n; j++) codes[j] = (uint8_t)tl_i2s_code(row, j);
        return;
    }
    if (w->type == TL_Q1_0 || w->type == TL_Q2_0) {
        const int q1 = w->type == TL_Q1_0, bs = q1 ? 128 : 64;
        for (int64_t b = 0; b < n / bs; b++) {
            const uint8_t *x = row + b * 18;
            blk[b] = tl_f16_to_f32((uint16_t)(x[0] | x[1] << 8));
            for (int e = 0; e < bs; e++) codes[b * bs + e] = (uint8_t)(q1 ? 2 * tl_q1_bit(x + 2, e) : tl_q2_code(x + 2, e));
        }
        return;
    }
    const int bb = w->type == TL_TQ2_0 ? 66 : 54, off = w->type == TL_TQ2_0 ? 64 : 52;
    for (int64_t b = 0; b < n / 256; b++) {
        const uint8_t *x = row + b * bb;
        blk[b] = tl_f16_to_f32((uint16_t)(x[off] | x[off + 1] << 8));
        uint8_t *c = codes + 256 * b;
        for (int e = 0; e < 256; e++) {
            if (w->type == TL_TQ2_0) c[e] = (uint8_t)((x[32 * (e / 128) + (e % 128) % 32] >> (2 * ((e % 128) / 32))) & 3);
            else if (e < 160) c[e] = (uint8_t)tl_tq1_trit(x[e % 32], e / 32);
            else if (e < 240) c[e] = (uint8_t)tl_tq1_trit(x[32 + (e - 160) % 16], (e - 160) / 16);
            else c[e] = (uint8_t)tl_tq1_trit(x[48 + (e - 240) % 4], (e - 240) / 4);
        }
    }
}

// One row of codes into kernels.cuh's layout (steps * 16 words; codes past n stay 0).
static void pack_row(const uint8_t *codes, int64_t n, int steps, uint32_t *dst) {
    for (int c = 0; c < steps * 16; c++) {
        uint32_t word = 0;
        for (int e = 0; e < 16 && 16 * (int64_t)c + e < n; e++) word |= (uint32_t)codes[16 * c + e] << (8 * (e % 4) + 2 * (e / 4));
        dst[word_of_chunk(c)] = word;
    }
}

static int is_ternary(uint32_t t) {
    return t == TL_I2_S || t == TL_TQ2_0 || t == TL_TQ1_0 || t == TL_Q1_0 || t == TL_Q2_0;
}

static int scale_blocks_per_step(uint32_t t) { return t == TL_Q1_0 ? 2 : t == TL_Q2_0 ? 4 : 1; }

// Weights that can share one launch: same type, same input width, all with or all without bias.
static int fusable(const tl_weight *const *p, int np) {
    for (int i = 1; i < np; i++)
        if (p[i]->type != p[0]->type || p[i]->ne0 != p[0]->ne0 || !p[i]->bias != !p[0]->bias) return 0;
    return 1;
}

template <typename T>
static ternlm_status to_device(const T **dst, const void *src, size_t bytes, dlin *d, int slot, ternlm_error *err) {
    void *p = NULL;
    CK(cudaMalloc(&p, bytes));
    d->mem[slot] = p;
    *dst = (const T *)p;
    CK(cudaMemcpy(p, src, bytes, cudaMemcpyHostToDevice));
    return TERNLM_OK;
}

// Upload np weights as one linear: rows concatenated, or interleaved (row i of part p at i * np + p).
static ternlm_status upload_linear(const tl_weight *const *p, int np, int interleave, dlin *d, ternlm_error *err) {
    memset(d, 0, sizeof *d);
    const int64_t n = p[0]->ne0;
    int64_t rows = 0;
    for (int i = 0; i < np; i++) rows += p[i]->ne1;
    d->rows = (int)rows;
    d->n = (int)n;
    float *row_scale = (float *)malloc(rows * 4), *out_scale = (float *)malloc(rows * 4);
    float *bias = p[0]->bias ? (float *)malloc(rows * 4) : NULL;
    const int ternary = is_ternary(p[0]->type), steps = (int)((n + 255) / 256), bps = scale_blocks_per_step(p[0]->type);
    const size_t row_bytes = ternary ? (size_t)steps * 64 : (size_t)n * (p[0]->type == TL_F16 ? 2 : 4);
    uint8_t *host = (uint8_t *)malloc(row_bytes * rows);
    float *blk = (float *)calloc((size_t)rows * steps * bps, 4);
    uint8_t *codes = (uint8_t *)calloc((size_t)steps * 256, 1);
    if (!row_scale || !out_scale || !host || !blk || !codes || (p[0]->bias && !bias)) {
        free(row_scale), free(out_scale), free(bias), free(host), free(blk), free(codes);
        return tl_fail(err, TERNLM_ERR_NOMEM, "out of host memory repacking weights for the GPU");
    }
    int64_t base = 0;
    for (int k = 0; k < np; k++) {
        const tl_weight *w = p[k];
        for (int64_t r = 0; r < w->ne1; r++) {
            const int64_t dr = interleave ? r * np + k : base + r;
            row_scale[dr] = w->type == TL_I2_S ? w->i2s_scale : 1.0f;
            out_scale[dr] = w->out_scale;
            if (bias) bias[dr] = w->bias[r];
            uint8_t *dst = host + (size_t)dr * row_bytes;
            const uint8_t *src = w->data + (uint64_t)r * w->row_bytes;
            if (ternary) {
                ternary_codes(w, r, codes, blk + (size_t)dr * steps * bps);
                pack_row(codes, n, steps, (uint32_t *)dst);
            } else if (w->type == TL_F16 || w->type == TL_F32) {
                memcpy(dst, src, row_bytes);
            } else {
                tl_dequant_row(w->type, src, (float *)dst, n, w->i2s_scale);
            }
        }
        base += w->ne1;
    }
    ternlm_status st = to_device(&d->t.row_scale, row_scale, rows * 4, d, 0, err);
    if (!st) st = to_device(&d->t.out_scale, out_scale, rows * 4, d, 1, err);
    if (!st && bias) st = to_device(&d->t.bias, bias, rows * 4, d, 2, err);
    if (!st && ternary) {
        d->kind = LIN_TERNARY;
        d->t.rows = (int)rows, d->t.n = (int)n, d->t.steps = steps, d->t.bps = bps;
        d->t.act = p[0]->type == TL_I2_S ? ACT_TOKEN : bps > 1 ? ACT_Q80 : ACT_Q8K;
        st = to_device(&d->t.codes, host, row_bytes * rows, d, 3, err);
        if (!st && d->t.act != ACT_TOKEN) st = to_device(&d->t.blk_scale, blk, (size_t)rows * steps * bps * 4, d, 4, err);
    } else if (!st) {
        d->kind = LIN_FLOAT;
        d->f.rows = (int)rows, d->f.n = (int)n, d->f.out_scale = d->t.out_scale, d->f.bias = d->t.bias;
        if (p[0]->type == TL_F16) st = to_device(&d->f.wh, host, row_bytes * rows, d, 3, err);
        else st = to_device(&d->f.wf, host, row_bytes * rows, d, 3, err);
    }
    free(row_scale), free(out_scale), free(bias), free(host), free(blk), free(codes);
    return st;
}

static void free_linear(dlin *d) {
    for (int i = 0; i < 6; i++) cudaFree(d->mem[i]);
    memset(d, 0, sizeof *d);
}

// The CPU's int8 / int4 head (w->r16 from repack_head_i8 / repack_head_i4) in k_headq's layout (kernels.cuh): the
// same integers and scales, regrouped by row. Device memory: rows x kc x 64 bytes (int8: n; int4: n / 2, rounded up
// to whole chunks), int4's sub-scales (rows x n / 32 bytes, rounded up to 4 blocks), row scales and out_scale
// (4 bytes a row each); the CPU's copy stays on the host for CPU sessions of the same model.
static ternlm_status upload_headq(const tl_weight *w, dlin *d, ternlm_error *err) {
    memset(d, 0, sizeof *d);
    const tl_r16 *q = &w->r16;
    const int i4 = q->sub != NULL;
    const int64_t n = w->ne0, rows = w->ne1;
    const int kc = (int)(i4 ? (n + 127) / 128 : (n + 63) / 64);
    const size_t row_bytes = (size_t)kc * 64;
    uint8_t *host = (uint8_t *)malloc(row_bytes * (size_t)rows);
    uint32_t *sub = i4 ? (uint32_t *)calloc((size_t)rows * kc, 4) : NULL;
    float *os = (float *)malloc((size_t)rows * 4);
    if (!host || (i4 && !sub) || !os) {
        free(host), free(sub), free(os);
        return tl_fail(err, TERNLM_ERR_NOMEM, "out of host memory preparing the quantized head for the GPU");
    }
    for (int64_t r = 0; r < rows; r++) os[r] = w->out_scale;
    if (!i4) { // group g: chunk c of 4 inputs is 64 bytes, byte 4 r + j = w[16 g + r][4 c + j] + 128
        memset(host, 0, row_bytes * (size_t)rows);
        for (int64_t g = 0; g < rows / 16; g++)
            for (int64_t c = 0; c < n / 4; c++) {
                const uint8_t *src = q->data + (uint64_t)g * 16 * n + (uint64_t)c * 64;
                for (int r = 0; r < 16; r++)
                    for (int j = 0; j < 4; j++) host[(size_t)(16 * g + r) * row_bytes + 4 * c + j] = (uint8_t)(src[4 * r + j] ^ 0x80);
            }
    } else { // group g: pair chunk p is 64 bytes, bytes 4 r .. 4 r + 3 the word of row 16 g + r (inputs 8p .. 8p + 7)
        uint32_t *hw = (uint32_t *)(void *)host;
        for (size_t i = 0; i < row_bytes / 4 * (size_t)rows; i++) hw[i] = 0x88888888u; // q = 0
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t p = 0; p < n / 8; p++) {
                uint32_t word;
                memcpy(&word, q->data + (uint64_t)(r / 16) * 8 * n + (uint64_t)p * 64 + 4 * (r % 16), 4);
                const int64_t c = p / 16, pp = p % 16; // pp = 4 (block in chunk) + tig
                hw[(size_t)r * (row_bytes / 4) + 16 * c + 4 * (pp & 3) + (pp >> 2)] = word;
            }
            for (int64_t b = 0; b < n / 32; b++) sub[(size_t)r * kc + b / 4] |= (uint32_t)tl_r16_i4_sub(q->sub, n, r, b) << (8 * (b % 4));
        }
    }
    ternlm_status st = to_device(&d->q.wq, host, row_bytes * (size_t)rows, d, 0, err);
    if (!st && i4) st = to_device(&d->q.sub, sub, (size_t)rows * kc * 4, d, 1, err);
    if (!st) st = to_device(&d->q.drow, q->drow, (size_t)rows * 4, d, 2, err);
    if (!st) st = to_device(&d->q.out_scale, os, (size_t)rows * 4, d, 3, err);
    if (!st && w->bias) st = to_device(&d->q.bias, w->bias, (size_t)rows * 4, d, 4, err);
    free(host), free(sub), free(os);
    if (st) return st;
    d->kind = LIN_HEADQ, d->q4 = i4, d->rows = (int)rows, d->n = (int)n;
    d->q.rows = (int)rows, d->q.n = (int)n, d->q.kc = kc;
    return TERNLM_OK;
}

static ternlm_status upload_vec(const float *h, int n, float **d, ternlm_error *err) {
    *d = NULL;
    if (!h) return TERNLM_OK;
    CK(cudaMalloc(d, n * sizeof(float)));
    CK(cudaMemcpy(*d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    return TERNLM_OK;
}

static ternlm_status upload_layer(const tl_layer *L, const tl_hparams *h, dlayer *D, ternlm_error *err) {
    ternlm_status st = upload_vec(L->attn_norm, h->n_embd, &D->attn_norm, err);
    if (!st) st = upload_vec(L->attn_sub_norm, h->n_embd, &D->attn_sub_norm, err);
    if (!st) st = upload_vec(L->ffn_norm, h->n_embd, &D->ffn_norm, err);
    if (!st) st = upload_vec(L->ffn_sub_norm, h->n_ff, &D->ffn_sub_norm, err);
    if (!st) st = upload_vec(L->attn_q_norm, h->head_dim, &D->q_norm, err);
    if (!st) st = upload_vec(L->attn_k_norm, h->head_dim, &D->k_norm, err);
    const tl_weight *qkv[3] = {&L->wq, &L->wk, &L->wv}, *gu[2] = {&L->gate, &L->up};
    if (!st && fusable(qkv, 3)) {
        D->n_qkv = 1;
        st = upload_linear(qkv, 3, 0, &D->qkv[0], err);
    } else {
        D->n_qkv = 3;
        for (int i = 0, col = 0; i < 3 && !st; col += (int)qkv[i]->ne1, i++) {
            D->qkv_col[i] = col;
            st = upload_linear(&qkv[i], 1, 0, &D->qkv[i], err);
        }
    }
    if (!st && fusable(gu, 2)) {
        D->n_gu = 1;
        st = upload_linear(gu, 2, 1, &D->gu[0], err);
    } else {
        D->n_gu = 2;
        for (int i = 0; i < 2 && !st; i++) st = upload_linear(&gu[i], 1, 0, &D->gu[i], err);
    }
    const tl_weight *o = &L->wo, *down = &L->down;
    if (!st) st = upload_linear(&o, 1, 0, &D->o, err);
    if (!st) st = upload_linear(&down, 1, 0, &D->down, err);
    return st;
}

// ------------------------------------------------------------------------------------------------ launches

// A launch attribute that makes a grid run as clusters of `cluster` blocks along x (TG_CPREP).
static cudaLaunchAttribute cluster_attr(int cluster) {
    cudaLaunchAttribute a = {};
    a.id = cudaLaunchAttributeClusterDimension;
    a.val.clusterDim.x = cluster, a.val.clusterDim.y = 1, a.val.clusterDim.z = 1;
    return a;
}

// Every kernel is launched through here: with programmatic stream serialization where the GPU has it, and as
// clusters of `cluster` blocks along x when cluster > 0 (grid.x a multiple of it).
template <typename... K, typename... A>
static void launch_cluster(gpu_state *g, int cluster, void (*kernel)(K...), dim3 grid, dim3 block, size_t smem, A... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = g->st;
    cudaLaunchAttribute at[2];
    unsigned n = 0;
    if (cluster > 0) at[n++] = cluster_attr(cluster);
    if (g->pdl_now) {
        at[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[n++].val.programmaticStreamSerializationAllowed = 1;
    }
    cfg.attrs = at;
    cfg.numAttrs = n;
    cudaLaunchKernelEx(&cfg, kernel, (K)args...);
}

template <typename... K, typename... A>
static void launch(gpu_state *g, void (*kernel)(K...), dim3 grid, dim3 block, size_t smem, A... args) {
    launch_cluster(g, 0, kernel, grid, block, smem, args...);
}

static int grid_for(gpu_state *g, const void *kernel, int tiles, size_t smem) {
    int per_sm = 1;
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, NORM_THREADS, smem);
    const int cap = g->n_sm * (per_sm > 0 ? per_sm : 1);
    return tiles < cap ? tiles : cap;
}

// k_tern_gemv<ACT_TOKEN> by its TGO options (TG_STAGE, TG_PSUM, TG_SPLIT, TG_MASK bits)
#define TOK_GEMV(o) k_tern_gemv<ACT_TOKEN, false, o>
static void (*const tok_gemv[16])(tern_w, io_args, prep_out, int, prep_args) = {
    TOK_GEMV(0), TOK_GEMV(1), TOK_GEMV(2), TOK_GEMV(3), TOK_GEMV(4), TOK_GEMV(5), TOK_GEMV(6), TOK_GEMV(7),
    TOK_GEMV(8), TOK_GEMV(9), TOK_GEMV(10), TOK_GEMV(11), TOK_GEMV(12), TOK_GEMV(13), TOK_GEMV(14), TOK_GEMV(15)};

// The GEMV that prepares its own input in registers (TG_FPREP): no k_prep_tok launch before it.
#define FPREP_TGO (TG_STAGE | TG_SPLIT | TG_FPREP)
static void (*const fprep_gemv)(tern_w, io_args, prep_out, int, prep_args) = k_tern_gemv<ACT_TOKEN, false, FPREP_TGO>;
// The GEMV whose clusters of CP_C blocks prepare its input together (TG_CPREP): no k_prep_tok launch before it.
#define CPREP_TGO (TG_STAGE | TG_SPLIT | TG_CPREP)
static void (*const cprep_gemv)(tern_w, io_args, prep_out, int, prep_args) = k_tern_gemv<ACT_TOKEN, false, CPREP_TGO>;

static int prep_mode(const tern_w &w) { return w.act == ACT_TOKEN ? PREP_TOKEN : w.act == ACT_Q8K ? PREP_Q8K : PREP_Q80; }
static int prep_stride(const tern_w &w) { return w.act == ACT_Q80 ? Q80_PER_STEP * w.steps : w.steps; }

// k_tern_gemv_fused's instances (K elements per thread, U units per warp, PER steps per unit before the wait, for
// launches of at most bps blocks per SM: 64 registers for 2, 128 for 1): the shapes for 2B4T's linears on 132
// SMs, then one unit per warp for any other shape (bps 0: TERNLM_CUDA_FUSE=2's grid)
struct fused_kernel {
    int k, u, per, bps;
    void (*fn)(tern_w, io_args, int, int);
};
#define FK(K, U, P, B) {K, U, P, B, k_tern_gemv_fused<K, U, P, B == 2 ? 4 : 2>}
static const fused_kernel fused_gemv[] = {
    FK(12, 1, 3, 2), FK(12, 2, 3, 2),                                                    // 2 blocks per SM
    FK(12, 1, 5, 1), FK(12, 3, 2, 1), FK(12, 7, 3, 1), FK(28, 3, 4, 1),                  // 1 block per SM
    FK(12, 1, 4, 0), FK(12, 1, 8, 0), FK(12, 1, 12, 0), FK(16, 1, 8, 0), FK(28, 1, 8, 0), FK(32, 1, 8, 0)};
#define N_FUSED (int)(sizeof fused_gemv / sizeof fused_gemv[0])
#define FUSED_MAX_STEPS 32

static prep_out prep_buffers(gpu_state *g) {
    prep_out o;
    o.q = g->qa, o.qd = g->qd, o.qsum = g->qsum, o.xs = g->xs;
    return o;
}

// What the kernel producing a ternary linear's input does at its end for a one-token step: RMSNorm and quantize
// that input once (finish_and_prep), instead of a launch of its own or a copy in every GEMV block. Nothing for
// float linears (k_float_gemv prepares its own input) and for batches (k_prep, one block per token).
static prep_args prep_for(gpu_state *g, const dlin *next, const float *x, const float *norm, float eps, int T, int site) {
    prep_args p;
    memset(&p, 0, sizeof p);
    p.mode = -1;
    if (!next || next->kind != LIN_TERNARY || T != 1 || !(g->prep_sites & site)) return p;
    const tern_w &w = next->t;
    p.x = x, p.norm_w = norm, p.eps = eps, p.n = w.n, p.n_pad = w.steps * 256, p.steps = w.steps;
    p.mode = prep_mode(w);
    p.o = prep_buffers(g), p.done = g->done;
    return p;
}

// Whether linear d takes k_tern_gemv_fused (one-token steps, I2_S, inputs of at most 32 steps).
static int fused_prep(const gpu_state *g, const dlin *d, int T, int site) {
    return T == 1 && g->fuse && (g->fuse_sites & site) && !g->prep_sites && !g->own_sites && d->kind == LIN_TERNARY && d->t.act == ACT_TOKEN &&
           d->t.steps <= FUSED_MAX_STEPS;
}

// Whether linear d at `site` takes TG_FPREP (one-token steps, I2_S, inputs of at most FP_K * 256, the default
// options of k_prep_tok + k_tern_gemv, for which it computes the same codes).
static int fprep_ok(const gpu_state *g, const dlin *d, int T, int site) {
    return T == 1 && (g->fprep_sites & site) && !g->prep_sites && !g->own_sites && !g->fuse && g->prep_tok && g->stage &&
           g->split && !g->gmask && d->kind == LIN_TERNARY && d->t.act == ACT_TOKEN && d->n <= FP_K * NORM_THREADS;
}

// Whether linear d at `site` takes TG_CPREP (as fprep_ok; sm_90, inputs of at most CP_R * CP_C steps).
static int cprep_ok(const gpu_state *g, const dlin *d, int T, int site) {
    return T == 1 && g->clusters && (g->cprep_sites & site) && !(g->fprep_sites & site) && !g->prep_sites && !g->own_sites &&
           !g->fuse && g->prep_tok && g->stage && g->split && !g->gmask && d->kind == LIN_TERNARY && d->t.act == ACT_TOKEN &&
           d->t.steps <= CP_R * CP_C;
}

// Whether linear d at `site` prepares its own input in the GEMV (one-token steps, I2_S, short inputs).
static int own_prep(const gpu_state *g, const dlin *d, int T, int site) {
    if (fused_prep(g, d, T, site) || fprep_ok(g, d, T, site) || cprep_ok(g, d, T, site)) return 1;
    return T == 1 && (g->own_sites & site) && d->kind == LIN_TERNARY && d->t.act == ACT_TOKEN && d->t.n <= OWN_MAX_N;
}

__global__ void k_noop() { // SKIP_NOOP's stand-in: one launch boundary and nothing else
    dep_launch_next();
    dep_wait();
}

// SKIP_*: whether to leave out a decode launch of this kind (an empty kernel in its place with SKIP_NOOP).
static int skipped(gpu_state *g, int kind) {
    if (!g->pdl_now || !(g->skip & kind)) return 0;
    if (g->skip & SKIP_NOOP) launch(g, k_noop, dim3(1), dim3(32), 0);
    return 1;
}

// k_headq's instances: [int4][shape]. Up to 16 tokens (decode, short prompts, small micro-batches): one 16-token
// fragment, one 8-row fragment a tile (the most tiles to share among the warps), 8 or 4 chunks a warp in flight
// (TERNLM_CUDA_HQ_D); more tokens: 4 or 2 fragments (as shared memory allows) and two 8-row fragments, so each
// staged input and each weight load serves more products, 16 warps a block (int4 with 4 fragments: one 8-row
// fragment, since two spill at the 128 registers of 512 threads).
typedef void (*headq_fn)(headq_w, io_args, const int8_t *, int, const float *, int);
struct headq_kernel {
    int mt, j[2], w; // j: 8-row fragments a tile, for int8 and int4
    headq_fn fn[2];
};
#define HQK(MT, J8, J4, D, W) {MT, {J8, J4}, W, {k_headq<false, MT, J8, D, W>, k_headq<true, MT, J4, D, W>}}
static const headq_kernel headq_kernels[] = {HQK(1, 1, 1, 8, 8), HQK(1, 1, 1, 4, 8), HQK(2, 2, 2, 2, 16), HQK(4, 2, 1, 2, 16)};
enum { HQ_DEC8, HQ_DEC4, HQ_MT2, HQ_MT4, N_HQ };

static size_t headq_smem(const dlin *d, int rows_staged) { return (size_t)rows_staged * hq_srow(d->q4, d->q.kc); }

// The head's integer products for T tokens already prepared in g->qa / g->qd (one scale a token).
static void headq_launch(gpu_state *g, const dlin *d, const io_args &io, int T) {
    const int n_pad = (d->n + 255) / 256 * 256;
    const int k = T <= 16 || g->hq_mt == 1 ? (g->hq_dec_d == 4 ? HQ_DEC4 : HQ_DEC8) : g->hq_mt == 2 ? HQ_MT2 : HQ_MT4;
    const headq_kernel &c = headq_kernels[k];
    const int staged = c.mt == 1 && T <= 8 ? 8 : 16 * c.mt;
    const size_t smem = headq_smem(d, staged);
    const int ntiles = (d->rows + 8 * c.j[d->q4] - 1) / (8 * c.j[d->q4]);
    int per_sm = 1;
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, c.fn[d->q4], 32 * c.w, smem);
    const int blocks = TL_MIN((ntiles + c.w - 1) / c.w, g->n_sm * TL_MAX(1, per_sm));
    launch(g, c.fn[d->q4], dim3(blocks, (T + 16 * c.mt - 1) / (16 * c.mt)), dim3(32 * c.w), smem, d->q, io, (const int8_t *)g->qa,
           n_pad, (const float *)g->qd, T);
}

// y (per io) = W x for T tokens: the GEMV kernels for few tokens, the tensor-core GEMM for many; a ternary
// linear's input is prepared by k_prep here unless `prepared` (its producer did it, or an earlier linear with the
// same input) or the GEMV prepares it (own_prep). next: what this linear's kernel prepares for the one after it.
static void linear(gpu_state *g, const dlin *d, const io_args &io, int T, int prepared, const prep_args &next, int site) {
    if (d->kind == LIN_HEADQ) { // the CPU's quantize_i8 of the normed input (its int8 head takes I2_S's activations)
        const int n_pad = (d->n + 255) / 256 * 256;
        if (T == 1 && d->n <= 16 * NORM_THREADS)
            launch(g, k_prep_tok<16>, dim3(1), dim3(NORM_THREADS), 0, io.x, io.x_stride, d->n, n_pad, io.norm_w, io.eps, g->qa, g->qd, 1, g->qsum);
        else if (T == 1 && d->n <= 32 * NORM_THREADS)
            launch(g, k_prep_tok<32>, dim3(1), dim3(NORM_THREADS), 0, io.x, io.x_stride, d->n, n_pad, io.norm_w, io.eps, g->qa, g->qd, 1, g->qsum);
        else
            launch(g, k_prep, dim3(T), dim3(NORM_THREADS), (size_t)d->n * 8, io.x, io.x_stride, d->n, n_pad, io.norm_w, io.eps,
                   (int)PREP_TOKEN, prep_buffers(g), 1);
        headq_launch(g, d, io, T);
        return;
    }
    if (d->kind == LIN_TERNARY) {
        const tern_w &w = d->t;
        const int own = !prepared && own_prep(g, d, T, site);
        const int gemv_tok = w.act == ACT_TOKEN && !own && T < GEMM_MIN_T; // k_tern_gemv<ACT_TOKEN> reads the input
        // k_prep_tok: only where every such input comes from it (no producer's last block, no GEMV of its own)
        const int tok_prep = gemv_tok && g->prep_tok && !g->prep_sites && !g->own_sites && w.steps <= 32;
        if (!prepared && !own && !skipped(g, SKIP_PREP)) {
            const int n_pad = w.steps * 256, st = tok_prep && g->pdl_now && (g->skip & SKIP_PREP_TAIL) ? -1 : prep_stride(w);
            if (tok_prep && w.steps <= 16)
                launch(g, k_prep_tok<16>, dim3(T), dim3(NORM_THREADS), 0, io.x, io.x_stride, w.n, n_pad, io.norm_w, io.eps, g->qa, g->qd, st, g->qsum);
            else if (tok_prep)
                launch(g, k_prep_tok<32>, dim3(T), dim3(NORM_THREADS), 0, io.x, io.x_stride, w.n, n_pad, io.norm_w, io.eps, g->qa, g->qd, st, g->qsum);
            else
                launch(g, k_prep, dim3(T), dim3(NORM_THREADS), (size_t)w.n * 8, io.x, io.x_stride, w.n, n_pad, io.norm_w, io.eps,
                       prep_mode(w), prep_buffers(g), st);
        }
        const int tgo = gemv_tok ? (g->stage ? TG_STAGE : 0) | (tok_prep ? TG_PSUM : 0) | (g->split ? TG_SPLIT : 0) |
                                       (g->gmask ? TG_MASK : 0) : 0;
        if (T >= GEMM_MIN_T && w.act != ACT_Q80) { // Q1_0 / Q2_0 prompts take the GEMV below, one token per blockIdx.y
            const int8_t *qa = g->qa;
            const float *qd = g->qd;
            const int *qs = g->qsum;
            if (T <= 64) { // 64-token tiles: a micro-batch (multi-sequence decode) computes no padding tokens
                const dim3 grid((w.rows + GM_R - 1) / GM_R, 1);
                if (w.act == ACT_TOKEN) launch(g, k_tern_gemm<ACT_TOKEN, 1>, grid, dim3(256), (size_t)GM_SMEM_MI(1), w, io, qa, qd, qs, T);
                else launch(g, k_tern_gemm<ACT_Q8K, 1>, grid, dim3(256), (size_t)GM_SMEM_MI(1), w, io, qa, qd, qs, T);
                return;
            }
            const dim3 grid((w.rows + GM_R - 1) / GM_R, (T + GM_T - 1) / GM_T);
            if (w.act == ACT_TOKEN) launch(g, k_tern_gemm<ACT_TOKEN, 2>, grid, dim3(256), (size_t)GM_SMEM, w, io, qa, qd, qs, T);
            else launch(g, k_tern_gemm<ACT_Q8K, 2>, grid, dim3(256), (size_t)GM_SMEM, w, io, qa, qd, qs, T);
            return;
        }
        // K-slices: at most TG_PF steps per thread, and enough blocks to fill the GPU; a GLU's row pairs stay in
        // one warp (S <= 4)
        const int max_lS = io.epi == EPI_GLU ? 2 : 3;
        int lS = 0;
        while (lS < max_lS && ((w.steps + (1 << lS) - 1) >> lS > TG_PF || (w.rows << lS) / 64 < g->gridf * g->n_sm)) lS++;
        if (own && fused_prep(g, d, T, site)) {
            // at most bps blocks per SM: for each S, the fewest units per warp that cover the rows in bps x n_sm
            // blocks; the S with the fewest rows per block, then the most steps before the wait, then the fewest
            // registers
            int best = -1, blS = 0;
            for (int b2 = 0; b2 < 2 && best < 0; b2++) { // TERNLM_CUDA_FBPS first, then the other
            for (int l = max_lS, bps = b2 ? 3 - g->fbps : g->fbps; l >= 0 && g->fuse == 1; l--) {
                const int RW = 8 >> l, per = (w.steps + (1 << l) - 1) >> l;
                const int U = (w.rows + bps * g->n_sm * 8 * RW - 1) / (bps * g->n_sm * 8 * RW);
                for (int i = 0; i < N_FUSED; i++) {
                    const fused_kernel &c = fused_gemv[i];
                    if (c.bps != bps || c.u != U || c.k < w.steps) continue;
                    if (best < 0) { best = i, blS = l; continue; }
                    const fused_kernel &b = fused_gemv[best];
                    const int rows_c = 8 * U * RW, rows_b = 8 * b.u * (8 >> blS);
                    const int cov_c = TL_MIN(c.per, per), perb = (w.steps + (1 << blS) - 1) >> blS, cov_b = TL_MIN(b.per, perb);
                    // coverage as a fraction: cov_c / per against cov_b / perb
                    const long fc = (long)cov_c * perb, fb = (long)cov_b * per;
                    if (rows_c < rows_b || (rows_c == rows_b && (fc > fb || (fc == fb && (c.u * c.per < b.u * b.per ||
                                                                                         (c.u * c.per == b.u * b.per && c.k < b.k))))))
                        best = i, blS = l;
                }
            }
            }
            if (best < 0) { // one unit per warp: K-slices until a thread has at most 12 steps and rows x S / 64 >=
                            // TERNLM_CUDA_FGRID x n_sm; PER: the fewest that cover a thread's steps, else the most
                blS = 0;
                while (blS < max_lS && ((w.steps + (1 << blS) - 1) >> blS > 12 || (w.rows << blS) / 64 < g->fgrid * g->n_sm)) blS++;
                const int per = (w.steps + (1 << blS) - 1) >> blS;
                for (int i = 0; i < N_FUSED; i++) {
                    const fused_kernel &c = fused_gemv[i];
                    if (c.bps != 0 || c.k < w.steps) continue;
                    if (best < 0) { best = i; continue; }
                    const fused_kernel &b = fused_gemv[best];
                    const int cc = c.per >= per, cb = b.per >= per;
                    if ((cc && !cb) || (cc && cb && (c.per < b.per || (c.per == b.per && c.k < b.k))) ||
                        (!cc && !cb && (c.per > b.per || (c.per == b.per && c.k < b.k))))
                        best = i;
                }
            }
            if (skipped(g, SKIP_GEMV)) return;
            const int stop = g->pdl_now && (g->skip & SKIP_GEMV_TAIL), rpb = 8 * fused_gemv[best].u * (8 >> blS);
            if (g->fuse_log) fprintf(stderr, "fused: rows %d steps %d: lS %d U %d PER %d K %d, %d blocks\n", w.rows, w.steps, blS,
                                     fused_gemv[best].u, fused_gemv[best].per, fused_gemv[best].k, (w.rows + rpb - 1) / rpb);
            launch(g, fused_gemv[best].fn, dim3((w.rows + rpb - 1) / rpb, T), dim3(NORM_THREADS), fused_smem(w.n, w.steps), w, io,
                   blS, stop);
            return;
        }
        const int R = 64 >> lS;
        if (own && fprep_ok(g, d, T, site)) {
            if (skipped(g, SKIP_GEMV)) return;
            prep_args nx = next;
            if (g->pdl_now && (g->skip & SKIP_GEMV_TAIL)) nx.mode = PREP_TIMING_STOP;
            const size_t fs = TL_MAX(fprep_smem(w.n, w.steps), (size_t)(next.mode >= 0 ? next.n : 0) * 4);
            launch(g, fprep_gemv, dim3((w.rows + R - 1) / R, T), dim3(NORM_THREADS), fs, w, io, prep_buffers(g), lS, nx);
            return;
        }
        if (own && cprep_ok(g, d, T, site)) { // the grid rounded up to whole clusters (extra blocks store nothing)
            if (skipped(g, SKIP_GEMV)) return;
            prep_args nx = next;
            if (g->pdl_now && (g->skip & SKIP_GEMV_TAIL)) nx.mode = PREP_TIMING_STOP;
            const size_t cs = TL_MAX(cprep_smem(w.steps), (size_t)(next.mode >= 0 ? next.n : 0) * 4);
            const int blocks = ((w.rows + R - 1) / R + CP_C - 1) / CP_C * CP_C;
            launch_cluster(g, CP_C, cprep_gemv, dim3(blocks, T), dim3(NORM_THREADS), cs, w, io, prep_buffers(g), lS, nx);
            return;
        }
        const size_t smem = tern_gemv_smem(w.act, w.bps, lS, w.steps, next.mode >= 0 ? next.n : 0, own ? w.n : 0, tgo & TG_STAGE);
        const dim3 grid((w.rows + R - 1) / R, T);
        if (skipped(g, SKIP_GEMV)) return;
        prep_args nx = next;
        if (g->pdl_now && (g->skip & SKIP_GEMV_TAIL)) nx.mode = PREP_TIMING_STOP;
        if (own) launch(g, k_tern_gemv<ACT_TOKEN, true>, grid, dim3(NORM_THREADS), smem, w, io, prep_buffers(g), lS, nx);
        else if (w.act == ACT_TOKEN) launch(g, tok_gemv[tgo], grid, dim3(NORM_THREADS), smem, w, io, prep_buffers(g), lS, nx);
        else if (w.act == ACT_Q8K) launch(g, k_tern_gemv<ACT_Q8K>, grid, dim3(NORM_THREADS), smem, w, io, prep_buffers(g), lS, nx);
        else launch(g, k_tern_gemv<ACT_Q80>, grid, dim3(NORM_THREADS), smem, w, io, prep_buffers(g), lS, nx);
    } else {
        const float_w &w = d->f;
        const size_t smem = (sizeof(prep_scratch) + 15) / 16 * 16 + (size_t)w.n * 4;
        const int tiles = (w.rows + NORM_THREADS / 4 - 1) / (NORM_THREADS / 4);
        const int round_in = w.wh && g->head_input_f16; // llama.cpp's f16 copy of the input
        const size_t tok_smem = (size_t)FT_TB * w.n * 4;
        if (T >= 2 && w.n % 8 == 0 && tok_smem <= g->ftok_smem) { // inputs normed once, weights read once per FT_TB tokens
            launch(g, k_prep, dim3(T), dim3(NORM_THREADS), (size_t)w.n * 8, io.x, io.x_stride, w.n, w.n, io.norm_w, io.eps,
                   round_in ? (int)PREP_FLOAT_F16 : (int)PREP_FLOAT, prep_buffers(g), 0);
            const int groups = (T + FT_TB - 1) / FT_TB, ft_tiles = (w.rows + FT_ROWS - 1) / FT_ROWS;
            const int per = grid_for(g, (const void *)k_float_gemv_tok, ft_tiles * groups, tok_smem);
            launch(g, k_float_gemv_tok, dim3(groups, TL_MAX(1, per / groups)), dim3(NORM_THREADS), tok_smem, w, io, (const float *)g->xs, T);
            return;
        }
        int blocks = grid_for(g, (const void *)k_float_gemv, tiles, smem);
        if (g->head_bal) blocks = (tiles + (tiles + blocks - 1) / blocks - 1) / ((tiles + blocks - 1) / blocks); // equal shares
        launch(g, k_float_gemv, dim3(blocks, T), dim3(NORM_THREADS), smem, w, io, round_in);
    }
}

static io_args io_for(const float *x, long xs, const float *norm, float eps, float *y, long ys, int epi, int fn) {
    io_args io;
    io.x = x, io.x_stride = xs, io.norm_w = norm, io.eps = eps, io.y = y, io.y_stride = ys, io.epi = epi, io.glu = fn;
    return io;
}

static attn_args attn_for(gpu_state *g, const ternlm_session *s, uint32_t l) {
    const tl_hparams *h = &s->m->hp;
    attn_args a;
    a.qkv = g->qkv, a.qkv_stride = g->qkv_rows;
    a.k_off = (int)(h->n_head * h->head_dim), a.v_off = a.k_off + g->kv_dim;
    a.kc = g->kc + (size_t)l * s->n_ctx * g->kv_dim, a.vc = g->vc + (size_t)l * s->n_ctx * g->kv_dim;
    a.rope = g->rope, a.pos0 = g->pos0, a.out = g->att;
    a.n_head = (int)h->n_head, a.n_head_kv = (int)h->n_head_kv, a.hd = (int)h->head_dim, a.n_rot = (int)h->n_rot;
    a.neox = h->rope == TL_ROPE_NEOX, a.probs_f16 = h->probs_f16, a.n_ctx = (int)s->n_ctx;
    a.tok_pos = g->batch_now ? g->tok_pos : NULL, a.tok_seq = g->batch_now ? g->tok_seq : NULL, a.slot = (long)g->slot;
    return a;
}

// Whether linear b, reading the same input right after a, can use the input a's launch prepared.
static int same_prep(const dlin *b, const dlin *a) {
    return a->kind == LIN_TERNARY && b->kind == LIN_TERNARY && a->t.act == b->t.act && a->t.steps == b->t.steps;
}

static int attn_threads(int T, int hd) { return T == 1 || hd > 128 ? 256 : 128; } // decode: finish_and_prep's 256
static int attn_tile(int T) { return T == 1 ? 128 : 64; }                             // V positions per smem tile

static void persist_prof_print(const gpu_state *g, const ternlm_session *s);

// The persistent decode kernel for a one-token step (persist.cuh): every layer in one cooperative launch (all its
// blocks resident at once, which its grid-wide barriers need; the driver refuses the launch otherwise).
static void persist_launch(gpu_state *g, const ternlm_session *s) {
    const tl_hparams *h = &s->m->hp;
    pk_args p;
    memset(&p, 0, sizeof p);
    p.L = g->pk_L, p.n_layer = (int)h->n_layer, p.a = attn_for(g, s, 0);
    p.x = g->x, p.qkv = g->qkv, p.att = g->att, p.h = g->h;
    p.E = (int)h->n_embd, p.F = (int)h->n_ff, p.QW = (int)(h->n_head * h->head_dim), p.eps = h->eps;
    p.max_n = TL_MAX(TL_MAX(p.E, p.F), p.QW);
    p.glu_fn = h->act == TL_ACT_RELU2 ? GLU_RELU2 : GLU_SILU, p.cap = g->pk_cap, p.mode = g->pk_mode;
    p.fenced = g->pk_fenced;
    if (g->embd_on_gpu) p.emb_h = g->embd.f.wh, p.emb_f = g->embd.f.wh ? NULL : g->embd.f.wf;
    p.tok = g->tok, p.bar = g->pk_bar, p.prof = g->pk_prof;
    p.buf[0] = g->pk_off[0], p.buf[1] = g->pk_off[1], p.sq = g->pk_off[2], p.at = g->pk_off[3];
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(g->n_sm);
    cfg.blockDim = dim3(g->pk_threads);
    cfg.dynamicSmemBytes = g->pk_smem;
    cfg.stream = g->st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeCooperative;
    at[0].val.cooperative = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    cudaLaunchKernelEx(&cfg, g->pk_threads == 1024 ? k_persist<1024> : k_persist<PK_THREADS>, p);
}

// One batch of T tokens (already in g->tok, the first position in g->pos0, or with g->batch_now each token's slot
// and position in g->tok_seq / g->tok_pos), as forward.c's eval_batch; n_pos: 1 + the largest position. `ready`
// says whether the next linear's input has been prepared by the kernel before it (prep_for).
static void forward(ternlm_session *s, int T, int which, int n_pos) {
    gpu_state *g = (gpu_state *)s->gpu;
    const tl_hparams *h = &s->m->hp;
    const int E = (int)h->n_embd, F = (int)h->n_ff, fn = h->act == TL_ACT_RELU2 ? GLU_RELU2 : GLU_SILU;
    const int QW = (int)(h->n_head * h->head_dim); // the attention output's width (qwen3: may differ from E)
    const float eps = h->eps;
    const int first = which == TERNLM_LOGITS_ALL ? 0 : T - 1;
    g->pdl_now = g->pdl && T == 1; // measured: overlapping launches helps decode, slows the prompt's big kernels
    const int persist = T == 1 && g->persist && g->pk_ok && !g->batch_now;
    if (persist) persist_launch(g, s); // every layer; the head below as before
    else if (g->embd_on_gpu) launch(g, k_embed, dim3((E + 255) / 256, T), dim3(256), 0, (const float *)g->embd.f.wf, (const __half *)g->embd.f.wh, E, (const int *)g->tok, g->x);
    int ready = 0;
    for (uint32_t l = 0; l < h->n_layer && !persist; l++) {
        const dlayer *L = &g->L[l];
        const int qkv_own = !ready && own_prep(g, &L->qkv[0], T, SITE_QKV); // then no prepared input in g->qa
        for (int i = 0; i < L->n_qkv; i++)
            linear(g, &L->qkv[i], io_for(g->x, E, L->attn_norm, eps, g->qkv + L->qkv_col[i], g->qkv_rows, EPI_STORE, fn), T,
                   i == 0 ? ready : same_prep(&L->qkv[i], &L->qkv[i - 1]) && !qkv_own, prep_for(g, NULL, NULL, NULL, eps, T, 0),
                   SITE_QKV);
        const attn_args a = attn_for(g, s, l);
        if (L->q_norm) // qwen3: q and k heads normed before RoPE (k_rope_store, or k_attention for decode)
            launch(g, k_head_norm, dim3(h->n_head + h->n_head_kv, T), dim3(NORM_THREADS), 0, g->qkv, (long)g->qkv_rows,
                   (int)h->n_head, a.k_off, (int)h->head_dim, (const float *)L->q_norm, (const float *)L->k_norm, eps);
        if (T > 1) launch(g, k_rope_store, dim3(T), dim3(128), 0, a);
        const prep_args to_o = prep_for(g, &L->o, g->att, L->attn_sub_norm, eps, T, SITE_O);
        const int grp = (int)(h->n_head / h->n_head_kv);
        if (T > 1 && g->attn_tile && !g->batch_now && attn_tile_smem(n_pos, (int)h->head_dim, g->attn_nt, g->attn_pt) <= g->attn_tile_smem)
            launch(g, g->attn_tile, dim3((T + g->attn_nt - 1) / g->attn_nt * h->n_head_kv), dim3(32 * g->attn_nt),
                   attn_tile_smem(n_pos, (int)h->head_dim, g->attn_nt, g->attn_pt), a, n_pos, T);
        else if (T > 1 && g->attn_group && attn_group_smem_bytes(n_pos, (int)h->head_dim, grp) <= g->attn_group_smem)
            launch(g, k_attention_group, dim3(h->n_head_kv, T), dim3(128 * grp),
                   attn_group_smem_bytes(n_pos, (int)h->head_dim, grp), a, n_pos);
        else if (skipped(g, SKIP_ATTN))
            ;
        else if (T == 1 && g->attn_dec && to_o.mode < 0)
            launch(g, k_attention_dec, dim3(h->n_head, T), dim3(g->attn_dec_threads),
                   attn_dec_smem((int)s->n_ctx, (int)h->head_dim, (int)h->n_rot, g->attn_dec_cap), a, g->attn_dec_cap);
        else
            launch(g, k_attention, dim3(h->n_head, T), dim3(attn_threads(T, (int)h->head_dim)),
               attn_smem_bytes((int)s->n_ctx, (int)h->head_dim, (int)h->n_rot, attn_tile(T), to_o.mode >= 0 ? to_o.n : 0), a, T == 1 ? 1 : 0, attn_tile(T), to_o);
        const dlin *gu0 = &L->gu[0];
        const prep_args to_gu = prep_for(g, gu0, g->x, L->ffn_norm, eps, T, SITE_GU);
        linear(g, &L->o, io_for(g->att, QW, L->attn_sub_norm, eps, g->x, E, EPI_ADD, fn), T, to_o.mode >= 0, to_gu, SITE_O);
        const dlin *next_in = l + 1 < h->n_layer ? &g->L[l + 1].qkv[0] : which == TERNLM_LOGITS_NONE ? NULL : &g->head;
        const float *next_norm = l + 1 < h->n_layer ? g->L[l + 1].attn_norm : g->out_norm;
        const float *next_x = l + 1 < h->n_layer ? g->x : g->x + (size_t)first * E;
        const prep_args to_next = prep_for(g, next_in, next_x, next_norm, eps, T, SITE_QKV);
        if (L->n_gu == 1) {
            const prep_args to_down = prep_for(g, &L->down, g->h, L->ffn_sub_norm, eps, T, SITE_DOWN);
            linear(g, gu0, io_for(g->x, E, L->ffn_norm, eps, g->h, F, EPI_GLU, fn), T, to_gu.mode >= 0, to_down, SITE_GU);
            linear(g, &L->down, io_for(g->h, F, L->ffn_sub_norm, eps, g->x, E, EPI_ADD, fn), T, to_down.mode >= 0, to_next,
                   SITE_DOWN);
        } else {
            const prep_args none = prep_for(g, NULL, NULL, NULL, eps, T, 0);
            const int gu_own = to_gu.mode < 0 && own_prep(g, gu0, T, SITE_GU);
            linear(g, gu0, io_for(g->x, E, L->ffn_norm, eps, g->h, F, EPI_STORE, fn), T, to_gu.mode >= 0, none, SITE_GU);
            linear(g, &L->gu[1], io_for(g->x, E, L->ffn_norm, eps, g->u, F, EPI_STORE, fn), T,
                   same_prep(&L->gu[1], gu0) && !gu_own, none, SITE_GU);
            launch(g, k_glu, dim3(256), dim3(256), 0, g->h, (const float *)g->u, (long)T * F, fn);
            linear(g, &L->down, io_for(g->h, F, L->ffn_sub_norm, eps, g->x, E, EPI_ADD, fn), T, 0, to_next, SITE_DOWN);
        }
        ready = to_next.mode >= 0;
    }
    if (which == TERNLM_LOGITS_NONE || skipped(g, SKIP_HEAD)) return;
    linear(g, &g->head, io_for(g->x + (size_t)first * E, E, g->out_norm, eps, g->logits, h->n_vocab, EPI_STORE, fn), T - first,
           ready, prep_for(g, NULL, NULL, NULL, eps, T, 0), 0);
}

// ------------------------------------------------------------------------------------------------ session hooks

static ternlm_status alloc_scratch(gpu_state *g, const ternlm_session *s, ternlm_error *err) {
    const tl_hparams *h = &s->m->hp;
    const size_t T = T_CAP, E = TL_MAX((size_t)h->n_embd, (size_t)h->n_head * h->head_dim), F = h->n_ff, wide = g->max_n;
    const size_t qblocks = (size_t)g->max_steps * Q80_PER_STEP; // per token: scales and sums (Q8_0: 8 per step)
    g->slot = (size_t)h->n_layer * s->n_ctx * g->kv_dim;
    const size_t kv = g->slot * g->n_seq;
    struct { void **p; size_t bytes; } bufs[] = {
        {(void **)&g->x, T * E * 4}, {(void **)&g->qkv, T * g->qkv_rows * 4}, {(void **)&g->att, T * E * 4},
        {(void **)&g->h, T * F * 4}, {(void **)&g->u, T * F * 4}, {(void **)&g->xs, T * wide * 4},
        {(void **)&g->logits, T * h->n_vocab * 4}, {(void **)&g->qa, T * g->max_steps * 256},
        {(void **)&g->qd, T * qblocks * 4}, {(void **)&g->qsum, T * qblocks * 4}, {(void **)&g->tok, T * 4},
        {(void **)&g->pos0, 4}, {(void **)&g->done, 4}, {(void **)&g->kc, kv * 2}, {(void **)&g->vc, kv * 2},
        {(void **)&g->rope, (size_t)s->n_ctx * h->n_rot * 4}, {(void **)&g->tok_seq, T * 4}, {(void **)&g->tok_pos, T * 4}};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        const cudaError_t e = cudaMalloc(bufs[i].p, bufs[i].bytes);
        if (e != cudaSuccess)
            return tl_fail(err, TERNLM_ERR_NOMEM, "CUDA: %s allocating %zu bytes of session memory (context %u)",
                           cudaGetErrorString(e), bufs[i].bytes, s->n_ctx);
    }
    CK(cudaMemset(g->done, 0, 4));
    float *cs = (float *)malloc((size_t)s->n_ctx * h->n_rot * 4); // RoPE angles, computed as the CPU does
    if (!cs) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory for the RoPE table");
    for (uint32_t p = 0; p < s->n_ctx; p++) tl_rope_table(cs + (size_t)p * h->n_rot, p, h, s->m->rope_freqs);
    const cudaError_t e = cudaMemcpy(g->rope, cs, (size_t)s->n_ctx * h->n_rot * 4, cudaMemcpyHostToDevice);
    free(cs);
    CK(e);
    return TERNLM_OK;
}

static void widths(gpu_state *g, const dlin *d) {
    if (d->n > g->max_n) g->max_n = d->n;
    if (d->kind == LIN_TERNARY && d->t.steps > g->max_steps) g->max_steps = d->t.steps;
    if (d->kind == LIN_HEADQ && (d->n + 255) / 256 > g->max_steps) g->max_steps = (d->n + 255) / 256; // its g->qa rows
}

static int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : fallback;
}

static ternlm_status upload_model(gpu_state *g, const ternlm_model *m, ternlm_error *err) {
    const tl_hparams *h = &m->hp;
    ternlm_status st = TERNLM_OK;
    g->L = (dlayer *)calloc(h->n_layer, sizeof(dlayer));
    if (!g->L) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    for (uint32_t l = 0; l < h->n_layer && !st; l++) {
        st = upload_layer(&m->layers[l], h, &g->L[l], err);
        const dlayer *D = &g->L[l];
        for (int i = 0; i < D->n_qkv; i++) widths(g, &D->qkv[i]);
        for (int i = 0; i < D->n_gu; i++) widths(g, &D->gu[i]);
        widths(g, &D->o), widths(g, &D->down);
    }
    if (!st) st = upload_vec(m->output_norm, h->n_embd, &g->out_norm, err);
    const tl_weight *head = &m->output, *embd = &m->tok_embd;
    // --head-quant i8 / i4: the CPU's re-quantized rows (r16.drow) go up, so the GPU computes the CPU's logits for
    // that option; a tied head's embedding table then goes up on its own (its F16 pages are read back from the file)
    if (!st) st = head->r16.drow ? upload_headq(head, &g->head, err) : upload_linear(&head, 1, 0, &g->head, err);
    if (!st) widths(g, &g->head);
    g->embd_on_gpu = embd->type == TL_F16 || embd->type == TL_F32;
    if (!st && g->embd_on_gpu) {
        if (embd->data == head->data && !head->r16.drow) g->embd = g->head, memset(g->embd.mem, 0, sizeof g->embd.mem); // tied: one copy
        else st = upload_linear(&embd, 1, 0, &g->embd, err);
    }
    if (!st && !g->embd_on_gpu && cudaMallocHost(&g->embd_host, (size_t)T_CAP * h->n_embd * 4) != cudaSuccess)
        st = tl_fail(err, TERNLM_ERR_NOMEM, "CUDA: cannot allocate pinned memory for the embeddings");
    if (!st && env_int("TERNLM_CUDA_PINNED", 1) &&
        (cudaMallocHost(&g->logits_host, (size_t)h->n_vocab * 4) != cudaSuccess || cudaMallocHost(&g->io_host, 2 * sizeof(int)) != cudaSuccess))
        st = tl_fail(err, TERNLM_ERR_NOMEM, "CUDA: cannot allocate pinned memory for the logits");
    return st;
}

// TERNLM_CUDA_CARVEOUT (0..100, percent of an SM's shared memory): one L1 / shared-memory split for every decode
// kernel, so that consecutive kernels with different shared-memory needs do not make an SM change its split between
// them (-1: the driver's choice per kernel; default: the least that holds k_attention_dec's block). A preference
// only: a kernel that needs more still gets it.
static void set_carveout(int pct) {
    if (pct < 0) return;
    const void *ks[] = {(const void *)k_prep, (const void *)k_prep_tok<16>, (const void *)k_prep_tok<32>,
                        (const void *)k_tern_gemv<ACT_TOKEN, true>,
                        (const void *)k_tern_gemv<ACT_Q8K>, (const void *)k_tern_gemv<ACT_Q80>, (const void *)k_attention,
                        (const void *)k_attention_dec, (const void *)k_float_gemv, (const void *)k_embed,
                        (const void *)k_head_norm, (const void *)k_noop};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
        cudaFuncSetAttribute(ks[i], cudaFuncAttributePreferredSharedMemoryCarveout, pct);
    for (size_t i = 0; i < sizeof tok_gemv / sizeof tok_gemv[0]; i++)
        cudaFuncSetAttribute(tok_gemv[i], cudaFuncAttributePreferredSharedMemoryCarveout, pct);
    cudaFuncSetAttribute(fprep_gemv, cudaFuncAttributePreferredSharedMemoryCarveout, pct);
    cudaFuncSetAttribute(cprep_gemv, cudaFuncAttributePreferredSharedMemoryCarveout, pct);
    for (int i = 0; i < N_FUSED; i++) cudaFuncSetAttribute(fused_gemv[i].fn, cudaFuncAttributePreferredSharedMemoryCarveout, pct);
    for (int i = 0; i < N_HQ; i++)
        for (int q4 = 0; q4 < 2; q4++) cudaFuncSetAttribute(headq_kernels[i].fn[q4], cudaFuncAttributePreferredSharedMemoryCarveout, pct);
    cudaGetLastError(); // a preference only: a kernel the driver refuses it for keeps its own split
}

static int tok_gemv_smem_limit(size_t bytes) { // nonzero on failure, as cudaFuncSetAttribute
    for (size_t i = 0; i < sizeof tok_gemv / sizeof tok_gemv[0]; i++)
        if (cudaFuncSetAttribute(tok_gemv[i], cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes)) return 1;
    if (cudaFuncSetAttribute(cprep_gemv, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes)) return 1;
    return cudaFuncSetAttribute(fprep_gemv, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes) != cudaSuccess;
}

// Whether the persistent decode kernel can run this model (persist.cuh's limits), and its shared-memory layout:
// two weight buffers (the largest share of rows any block stages, per buffer), the staged codes, then
// k_attention_dec's keys, values and scores (fewer cached positions if the whole does not fit).
static int pk_linear_ok(const dlin *d, int rows, int n, int max_steps) {
    return d->kind == LIN_TERNARY && d->t.act == ACT_TOKEN && d->t.rows == rows && d->t.n == n && d->t.steps <= max_steps;
}

static size_t pk_share(const dlin *d, int ur, int nb) { // bytes of the most rows one block stages
    const int units = d->t.rows / ur, most = (units + nb - 1) / nb * ur;
    return (size_t)most * (d->t.steps * 64 + 16);
}

static ternlm_status persist_setup(gpu_state *g, const ternlm_session *s, const cudaDeviceProp &prop, ternlm_error *err) {
    const tl_hparams *h = &s->m->hp;
    const int E = (int)h->n_embd, F = (int)h->n_ff, QW = (int)(h->n_head * h->head_dim), nb = g->n_sm;
    g->pk_ok = 0;
    g->max_rows = 0;
    for (uint32_t l = 0; l < h->n_layer; l++) {
        const dlayer *L = &g->L[l];
        g->max_rows = TL_MAX(g->max_rows, TL_MAX(TL_MAX(L->qkv[0].rows, L->o.rows), TL_MAX(L->gu[0].rows, L->down.rows)));
    }
    if (!g->persist || prop.major < 9 || !prop.cooperativeLaunch || !g->attn_dec || (int)h->n_head > nb || h->n_layer == 0) return TERNLM_OK;
    size_t b0 = 0, b1 = 0;
    for (uint32_t l = 0; l < h->n_layer; l++) {
        const dlayer *L = &g->L[l];
        if (L->n_qkv != 1 || L->n_gu != 1 || L->q_norm || !pk_linear_ok(&L->qkv[0], g->qkv_rows, E, PK_MAX_STEPS) ||
            !pk_linear_ok(&L->o, E, QW, PK_MAX_STEPS) || !pk_linear_ok(&L->gu[0], 2 * F, E, PK_MAX_STEPS) ||
            !pk_linear_ok(&L->down, E, F, PK_MAX_STEPS))
            return TERNLM_OK;
        b0 = TL_MAX(b0, TL_MAX(pk_share(&L->qkv[0], 1, nb), pk_share(&L->gu[0], 2, nb)));
        b1 = TL_MAX(b1, TL_MAX(pk_share(&L->o, 1, nb), pk_share(&L->down, 1, nb)));
    }
    const size_t sq = (size_t)(F + 255) / 256 * STAGE_STEP, base = b0 + b1 + (sq + 15) / 16 * 16;
    const size_t limit = prop.sharedMemPerBlockOptin - sizeof(pk_scratch) - 512; // the kernel's static arrays
    int cap = g->attn_dec_cap; // the attention area also holds pk_prep's copy of an input (the widest: max_n floats)
    const size_t xs = (size_t)TL_MAX(TL_MAX(E, F), QW) * 8; // and its norm weights
    if (E % 4 || F % 4 || QW % 4) return TERNLM_OK;        // (16-byte copies)
    while (cap > 16 && base + TL_MAX(xs, attn_dec_smem((int)s->n_ctx, (int)h->head_dim, (int)h->n_rot, cap)) > limit) cap /= 2;
    const size_t total = base + TL_MAX(xs, attn_dec_smem((int)s->n_ctx, (int)h->head_dim, (int)h->n_rot, cap));
    if (total > limit) return TERNLM_OK;
    g->pk_cap = cap, g->pk_smem = total;
    g->pk_off[0] = 0, g->pk_off[1] = (unsigned)b0, g->pk_off[2] = (unsigned)(b0 + b1), g->pk_off[3] = (unsigned)base;
    int per_sm = 0;
    void (*kern)(pk_args) = g->pk_threads == 1024 ? k_persist<1024> : k_persist<PK_THREADS>;
    if (cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)total) ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, g->pk_threads, total) || per_sm < 1) {
        cudaGetLastError(); // not an error for the session: decode takes the launches per linear
        return TERNLM_OK;
    }
    pk_layer *host = (pk_layer *)calloc(h->n_layer, sizeof(pk_layer));
    g->pk_sc = (float4 **)calloc((size_t)h->n_layer * PK_KINDS, sizeof(float4 *));
    float *tmp = (float *)malloc((size_t)g->max_rows * 3 * 4);
    float4 *sc4 = (float4 *)malloc((size_t)g->max_rows * 16);
    cudaError_t e = host && g->pk_sc && tmp && sc4 ? cudaSuccess : cudaErrorMemoryAllocation;
    for (uint32_t l = 0; l < h->n_layer && e == cudaSuccess; l++) {
        const dlayer *L = &g->L[l];
        const dlin *lin[PK_KINDS] = {&L->qkv[0], &L->o, &L->gu[0], &L->down};
        const float *norm[PK_KINDS] = {L->attn_norm, L->attn_sub_norm, L->ffn_norm, L->ffn_sub_norm};
        for (int k = 0; k < PK_KINDS && e == cudaSuccess; k++) { // the rows' scales as 16-byte records (pk_lin)
            const tern_w &w = lin[k]->t;
            float4 **dst = &g->pk_sc[l * PK_KINDS + k];
            e = cudaMemcpy(tmp, w.row_scale, (size_t)w.rows * 4, cudaMemcpyDeviceToHost);
            if (e == cudaSuccess) e = cudaMemcpy(tmp + w.rows, w.out_scale, (size_t)w.rows * 4, cudaMemcpyDeviceToHost);
            if (e == cudaSuccess && w.bias) e = cudaMemcpy(tmp + 2 * w.rows, w.bias, (size_t)w.rows * 4, cudaMemcpyDeviceToHost);
            for (int r = 0; r < w.rows; r++) sc4[r] = make_float4(tmp[r], tmp[w.rows + r], w.bias ? tmp[2 * w.rows + r] : 0.0f, 0.0f);
            if (e == cudaSuccess) e = cudaMalloc(dst, (size_t)w.rows * 16);
            if (e == cudaSuccess) e = cudaMemcpy(*dst, sc4, (size_t)w.rows * 16, cudaMemcpyHostToDevice);
            host[l].lin[k] = {w.codes, *dst, w.rows, w.steps, w.bias != NULL};
            host[l].norm[k] = norm[k];
        }
        host[l].kc = g->kc + (size_t)l * s->n_ctx * g->kv_dim, host[l].vc = g->vc + (size_t)l * s->n_ctx * g->kv_dim;
    }
    free(tmp), free(sc4);
    if (e == cudaSuccess) e = cudaMalloc(&g->pk_L, h->n_layer * sizeof(pk_layer));
    if (e == cudaSuccess) e = cudaMemcpy(g->pk_L, host, h->n_layer * sizeof(pk_layer), cudaMemcpyHostToDevice);
    free(host);
    if (e == cudaSuccess) e = cudaMalloc(&g->pk_bar, 64 * sizeof(unsigned));
    if (e == cudaSuccess) e = cudaMemset(g->pk_bar, 0, 64 * sizeof(unsigned));
    if (e == cudaSuccess && env_int("TERNLM_CUDA_PERSIST_PROF", 0)) {
        const size_t n = ((size_t)5 * h->n_layer + 1) * nb * 4;
        g->pk_prof_host = (unsigned long long *)malloc(n * 8);
        e = g->pk_prof_host ? cudaMalloc(&g->pk_prof, n * 8) : cudaErrorMemoryAllocation;
    }
    CK(e);
    g->pk_ok = 1;
    if (env_int("TERNLM_CUDA_PERSIST_LOG", 0))
        fprintf(stderr, "persist: %d blocks x %d threads, %zu bytes of shared memory (buffers %zu + %zu), %d cached positions\n",
                nb, g->pk_threads, total, b0, b1, cap);
    return TERNLM_OK;
}

ternlm_status tl_session_new_gpu(ternlm_model *m, const ternlm_session_params *p, uint32_t n_seq, ternlm_session **out,
                                 ternlm_error *err) {
    *out = NULL;
    int n_dev = 0, dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0)
        return tl_fail(err, TERNLM_ERR_BACKEND, "--gpu: no CUDA device is available (driver missing or no GPU)");
    ternlm_session *s = (ternlm_session *)calloc(1, sizeof *s);
    gpu_state *g = (gpu_state *)calloc(1, sizeof *g);
    if (!s || !g) {
        free(s), free(g);
        return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    }
    s->m = m;
    s->gpu = g;
    s->n_seq = g->n_seq = n_seq ? n_seq : 1;
    s->tok_seq = (uint32_t *)calloc(TL_UBATCH, sizeof *s->tok_seq); // batch.c writes each token's slot and position
    s->tok_pos = (uint32_t *)calloc(TL_UBATCH, sizeof *s->tok_pos);
    s->n_ctx = p->n_ctx ? TL_MIN(p->n_ctx, m->hp.n_ctx_train) : TL_MIN(m->hp.n_ctx_train, 4096u);
    const tl_hparams *h = &m->hp;
    g->kv_dim = (int)(h->head_dim * h->n_head_kv);
    g->qkv_rows = (int)(h->n_head * h->head_dim) + 2 * g->kv_dim;
    g->head_input_f16 = h->head_input_f16;
    cudaDeviceProp prop;
    ternlm_status st = TERNLM_OK;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess ||
        cudaStreamCreateWithFlags(&g->st, cudaStreamNonBlocking) != cudaSuccess)
        st = tl_fail(err, TERNLM_ERR_BACKEND, "CUDA: cannot open the device");
    if (!st) {
        g->n_sm = prop.multiProcessorCount;
        const char *pdl = getenv("TERNLM_CUDA_PDL");
        g->pdl = prop.major >= 9 && !(pdl && !strcmp(pdl, "0"));
        const char *graph = getenv("TERNLM_CUDA_GRAPH"); // 0: launch decode kernels one by one (for profilers)
        g->use_graph = !(graph && !strcmp(graph, "0"));
        g->prep_sites = env_int("TERNLM_CUDA_PREP", 0); // SITE_* bits; 15: every site (measured slower)
        g->own_sites = env_int("TERNLM_CUDA_OWN", 0);
        g->skip = env_int("TERNLM_CUDA_TIMING_SKIP", 0);
        g->fprep_sites = env_int("TERNLM_CUDA_FPREP", 0);
        g->cprep_sites = env_int("TERNLM_CUDA_CPREP", 0);
        g->clusters = prop.major >= 9;
        g->stage = env_int("TERNLM_CUDA_QSTAGE", 1);
        g->prep_tok = env_int("TERNLM_CUDA_PREP_TOK", 1);
        g->split = env_int("TERNLM_CUDA_SPLIT", 1);
        g->fuse = env_int("TERNLM_CUDA_FUSE", 0);
        g->gmask = env_int("TERNLM_CUDA_GMASK", 0);
        g->fgrid = TL_MAX(1, env_int("TERNLM_CUDA_FGRID", 1));
        g->fuse_log = env_int("TERNLM_CUDA_FUSE_LOG", 0);
        g->fbps = env_int("TERNLM_CUDA_FBPS", 2) == 1 ? 1 : 2;
        g->fuse_sites = env_int("TERNLM_CUDA_FUSE_SITES", 15);
        g->gridf = TL_MAX(1, env_int("TERNLM_CUDA_GRIDF", 2));
        g->head_bal = env_int("TERNLM_CUDA_HEAD_BAL", 0);
        g->persist = env_int("TERNLM_CUDA_PERSIST", 0);
        g->pk_mode = env_int("TERNLM_CUDA_PERSIST_MODE", PK_RUN);
        g->pk_fenced = env_int("TERNLM_CUDA_PERSIST_BAR", 0);
        g->pk_threads = env_int("TERNLM_CUDA_PERSIST_THREADS", PK_THREADS) == 1024 ? 1024 : PK_THREADS;
    }
    if (!st && (!s->tok_seq || !s->tok_pos)) st = tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    if (!st) st = upload_model(g, m, err);
    if (!st) st = alloc_scratch(g, s, err);
    const size_t attn_smem = attn_smem_bytes((int)s->n_ctx, (int)h->head_dim, (int)h->n_rot, attn_tile(1), g->max_n);
    const size_t tern_smem = TL_MAX(tern_gemv_smem(ACT_Q80, 4, 0, g->max_steps, g->max_n, 0, 1),
                                    TL_MAX(fprep_smem(TL_MIN(g->max_n, FP_K * NORM_THREADS), g->max_steps),
                                           cprep_smem(g->max_steps))); // (TG_FPREP, TG_CPREP too)
    const size_t prep_smem = (size_t)g->max_n * 8;
    const size_t own_smem_max = tern_gemv_smem(ACT_Q80, 4, 0, g->max_steps, g->max_n, TL_MIN(g->max_n, OWN_MAX_N));
    const size_t float_smem = (sizeof(prep_scratch) + 15) / 16 * 16 + (size_t)g->max_n * 4, limit = (size_t)prop.sharedMemPerBlockOptin;
    if (!st && h->head_dim > 256)
        st = tl_fail(err, TERNLM_ERR_UNSUPPORTED, "--gpu: heads of %u dimensions are not supported (256 at most)", h->head_dim);
    if (!st && (attn_smem > limit || own_smem_max > limit || tern_smem > limit || float_smem > limit || prep_smem > limit || (size_t)GM_SMEM > limit))
        st = tl_fail(err, TERNLM_ERR_UNSUPPORTED, "--gpu: a context of %u or rows of %d inputs need more shared memory "
                     "than this GPU has (%zu bytes): use a smaller --ctx-size", s->n_ctx, g->max_n, limit);
    if (!st && (cudaFuncSetAttribute(k_attention, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)attn_smem) ||
                tok_gemv_smem_limit(tern_smem) ||
                cudaFuncSetAttribute(k_tern_gemv<ACT_TOKEN, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)own_smem_max) ||
                cudaFuncSetAttribute(k_tern_gemv<ACT_Q8K>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)tern_smem) ||
                cudaFuncSetAttribute(k_tern_gemv<ACT_Q80>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)tern_smem) ||
                cudaFuncSetAttribute(k_prep, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)prep_smem) ||
                cudaFuncSetAttribute(k_tern_gemm<ACT_TOKEN, 2>, cudaFuncAttributeMaxDynamicSharedMemorySize, GM_SMEM) ||
                cudaFuncSetAttribute(k_tern_gemm<ACT_Q8K, 2>, cudaFuncAttributeMaxDynamicSharedMemorySize, GM_SMEM) ||
                cudaFuncSetAttribute(k_tern_gemm<ACT_TOKEN, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize, GM_SMEM_MI(1)) ||
                cudaFuncSetAttribute(k_tern_gemm<ACT_Q8K, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize, GM_SMEM_MI(1)) ||
                cudaFuncSetAttribute(k_float_gemv, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)float_smem)))
        st = tl_fail(err, TERNLM_ERR_BACKEND, "CUDA: cannot reserve shared memory for the kernels");
    if (!st && g->clusters && g->cprep_sites) { // TG_CPREP only where a cluster of CP_C such blocks can be resident
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(CP_C);
        cfg.blockDim = dim3(NORM_THREADS);
        cfg.dynamicSmemBytes = cprep_smem(g->max_steps);
        cudaLaunchAttribute at[1] = {cluster_attr(CP_C)};
        cfg.attrs = at;
        cfg.numAttrs = 1;
        int nc = 0;
        if (cudaOccupancyMaxActiveClusters(&nc, (const void *)cprep_gemv, &cfg) != cudaSuccess || nc < 1) g->clusters = 0;
        cudaGetLastError();
    }
    if (!st && g->head.kind == LIN_HEADQ) { // k_headq's staged tokens: the most fragments shared memory holds
        const dlin *hd = &g->head;
        g->hq_dec_d = env_int("TERNLM_CUDA_HQ_D", 8) == 4 ? 4 : 8;
        g->hq_mt = headq_smem(hd, 64) <= limit ? 4 : headq_smem(hd, 32) <= limit ? 2 : 1;
        if (headq_smem(hd, 16) > limit)
            st = tl_fail(err, TERNLM_ERR_UNSUPPORTED, "--gpu: a quantized head of %d inputs needs more shared memory than this GPU has", hd->n);
        for (int i = 0; i < N_HQ && !st; i++)
            if (headq_smem(hd, 16 * headq_kernels[i].mt) <= limit &&
                cudaFuncSetAttribute(headq_kernels[i].fn[hd->q4], cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)headq_smem(hd, 16 * headq_kernels[i].mt)))
                st = tl_fail(err, TERNLM_ERR_BACKEND, "CUDA: cannot reserve shared memory for the quantized head");
    }
    g->ftok_smem = TL_MIN(limit, (size_t)FT_TB * g->max_n * 4);
    if (!st && cudaFuncSetAttribute(k_float_gemv_tok, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)g->ftok_smem)) {
        g->ftok_smem = 0; // several tokens take k_float_gemv, one launch per token
        cudaGetLastError();
    }
    const int grp = h->n_head_kv ? (int)(h->n_head / h->n_head_kv) : 0;
    const char *group = getenv("TERNLM_CUDA_ATTN_GROUP"); // 0: a block per head for prompts too (comparisons)
    g->attn_group_smem = TL_MIN(limit, attn_group_smem_bytes((int)s->n_ctx, (int)h->head_dim, grp));
    const int usable = grp >= 2 && grp <= 4 && h->head_dim <= 128 && h->head_dim % 8 == 0 && grp * h->n_head_kv == h->n_head;
    g->attn_group = usable && !(group && !strcmp(group, "0"));
    if (!st && g->attn_group &&
        cudaFuncSetAttribute(k_attention_group, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)g->attn_group_smem)) {
        g->attn_group = 0;
        cudaGetLastError(); // not an error for the session: prompts use k_attention
    }
    // TERNLM_CUDA_ATTN_TILE=0: prompts take k_attention_group (comparisons)
    const int hdim = (int)h->head_dim, nt_env = env_int("TERNLM_CUDA_ATTN_NT", 4), pt_env = env_int("TERNLM_CUDA_ATTN_PT", 64);
    void (*const tile_fns[3][4])(attn_args, int, int) = { // tokens per block and positions per tile:
        {k_attention_tile<1, 4, 64>, k_attention_tile<1, 4, 32>, k_attention_tile<1, 2, 32>, k_attention_tile<1, 8, 64>},
        {k_attention_tile<2, 4, 64>, k_attention_tile<2, 4, 32>, k_attention_tile<2, 2, 32>, k_attention_tile<2, 8, 64>},
        {k_attention_tile<4, 4, 64>, k_attention_tile<4, 4, 32>, k_attention_tile<4, 2, 32>, k_attention_tile<4, 8, 64>}};
    const int v = nt_env == 8 ? 3 : nt_env == 2 ? 2 : pt_env == 32 ? 1 : 0; // 4 x 64, 4 x 32, 2 x 32, 8 x 64
    g->attn_nt = v == 3 ? 8 : v == 2 ? 2 : 4, g->attn_pt = v == 0 || v == 3 ? 64 : 32;
    g->attn_tile = env_int("TERNLM_CUDA_ATTN_TILE", 1) && grp == AT_G && grp * h->n_head_kv == h->n_head &&
                   (hdim == 32 || hdim == 64 || hdim == 128) ? tile_fns[hdim == 32 ? 0 : hdim == 64 ? 1 : 2][v] : NULL;
    g->attn_tile_smem = TL_MIN(limit, attn_tile_smem((int)s->n_ctx, hdim, g->attn_nt, g->attn_pt));
    if (!st && g->attn_tile &&
        (cudaFuncSetAttribute(g->attn_tile, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)g->attn_tile_smem) ||
         cudaFuncSetAttribute(g->attn_tile, cudaFuncAttributePreferredSharedMemoryCarveout, 100))) { // blocks an SM
        g->attn_tile = NULL;
        cudaGetLastError(); // not an error for the session: prompts use k_attention_group
    }
    g->attn_dec_threads = env_int("TERNLM_CUDA_ATTN_THREADS", 512) == 256 ? 256 : 512;
    g->attn_dec_cap = TL_MIN((int)s->n_ctx, TL_MAX(1, TL_MIN(AD_PMAX, env_int("TERNLM_CUDA_ATTN_DEC_CAP", AD_CAP))));
    const size_t dec_smem = attn_dec_smem((int)s->n_ctx, (int)h->head_dim, (int)h->n_rot, g->attn_dec_cap);
    g->attn_dec = env_int("TERNLM_CUDA_ATTN_DEC", 1) && h->head_dim % 32 == 0 && h->head_dim <= 128 && dec_smem <= limit;
    if (!st && g->attn_dec && cudaFuncSetAttribute(k_attention_dec, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dec_smem)) {
        g->attn_dec = 0;
        cudaGetLastError(); // not an error for the session: decode uses k_attention
    }
    // the split that holds k_attention_dec's shared memory (measured: 84 KB at 128 positions; 4.5% faster tg128)
    if (!st) {
        const int fit = (int)((dec_smem + 2048) * 100 / TL_MAX((size_t)1, prop.sharedMemPerMultiprocessor)) + 1;
        set_carveout(env_int("TERNLM_CUDA_CARVEOUT", g->attn_dec ? TL_MIN(100, fit) : -1));
    }
    if (!st) st = persist_setup(g, s, prop, err);
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
        persist_prof_print(g, s);
        for (uint32_t i = 0; g->pk_sc && i < s->m->hp.n_layer * PK_KINDS; i++) cudaFree(g->pk_sc[i]);
        free(g->pk_sc);
        free(g->pk_prof_host);
        if (g->have_graph) cudaGraphExecDestroy(g->graph);
        void *bufs[] = {g->x, g->qkv, g->att, g->h, g->u, g->xs, g->logits, g->qa, g->qd, g->qsum, g->tok, g->pos0, g->done,
                        g->kc, g->vc, g->rope, g->out_norm, g->tok_seq, g->tok_pos, g->pk_L, g->pk_bar, g->pk_prof};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
        for (uint32_t l = 0; g->L && l < s->m->hp.n_layer; l++) {
            dlayer *D = &g->L[l];
            cudaFree(D->attn_norm), cudaFree(D->attn_sub_norm), cudaFree(D->ffn_norm), cudaFree(D->ffn_sub_norm);
            cudaFree(D->q_norm), cudaFree(D->k_norm);
            for (int i = 0; i < 3; i++) free_linear(&D->qkv[i]);
            for (int i = 0; i < 2; i++) free_linear(&D->gu[i]);
            free_linear(&D->o), free_linear(&D->down);
        }
        free_linear(&g->head), free_linear(&g->embd);
        if (g->embd_host) cudaFreeHost(g->embd_host);
        if (g->logits_host) cudaFreeHost(g->logits_host);
        if (g->io_host) cudaFreeHost(g->io_host);
        free(g->L);
        if (g->st) cudaStreamDestroy(g->st);
        free(g);
    }
    free(s->logits);
    free(s->tok_seq), free(s->tok_pos);
    free(s);
}

// Embedding rows the GPU cannot read itself (quantized tables) are dequantized here and copied in.
static ternlm_status host_embed(ternlm_session *s, const int32_t *tokens, int T, ternlm_error *err) {
    gpu_state *g = (gpu_state *)s->gpu;
    const tl_weight *w = &s->m->tok_embd;
    const int64_t E = s->m->hp.n_embd;
    CK(cudaStreamSynchronize(g->st)); // the pinned buffer may still feed the previous copy
    for (int t = 0; t < T; t++) tl_dequant_row(w->type, w->data + (uint64_t)tokens[t] * w->row_bytes, g->embd_host + t * E, E, w->i2s_scale);
    CK(cudaMemcpyAsync(g->x, g->embd_host, (size_t)T * E * 4, cudaMemcpyHostToDevice, g->st));
    return TERNLM_OK;
}

static ternlm_status decode_graph(ternlm_session *s, ternlm_error *err) {
    gpu_state *g = (gpu_state *)s->gpu;
    if (!g->have_graph) {
        cudaGraph_t graph;
        CK(cudaStreamBeginCapture(g->st, cudaStreamCaptureModeThreadLocal));
        forward(s, 1, TERNLM_LOGITS_LAST, 0); // (n_pos only sizes prompt attention)
        CK(cudaStreamEndCapture(g->st, &graph));
        CK(cudaGraphInstantiate(&g->graph, graph, 0));
        cudaGraphDestroy(graph);
        g->have_graph = 1;
    }
    CK(cudaGraphLaunch(g->graph, g->st));
    return TERNLM_OK;
}

// TERNLM_CUDA_PERSIST_PROF: one step's times into the per-kind sums (us): the phase's wall time (latest departure
// to latest departure), and averaged over blocks its wait for weights, its input preparation, the rest of its work
// (products, stores, the next copies' issue), and the barrier (arrival to departure).
static void persist_prof_step(gpu_state *g, const ternlm_session *s) {
    const int nb = g->n_sm, nbar = 5 * (int)s->m->hp.n_layer - 1;
    const size_t n = (size_t)(nbar + 2) * nb * 4;
    if (cudaMemcpy(g->pk_prof_host, g->pk_prof, n * 8, cudaMemcpyDeviceToHost) != cudaSuccess) return;
    const unsigned long long *t = g->pk_prof_host, *st = t + (size_t)(nbar + 1) * nb * 4;
    unsigned long long prev_max = 0, t0 = ~0ull, t1 = 0;
    for (int b = 0; b < nb; b++) prev_max = TL_MAX(prev_max, st[4 * b]), t0 = TL_MIN(t0, st[4 * b]);
    for (int k = 0; k <= nbar; k++) {
        double sum[4] = {0, 0, 0, 0};
        unsigned long long dep_max = 0;
        for (int b = 0; b < nb; b++) {
            const unsigned long long *c = t + ((size_t)k * nb + b) * 4;
            const unsigned long long from = k ? t[((size_t)(k - 1) * nb + b) * 4 + 1] : st[4 * b];
            sum[0] += (double)(c[2] - from), sum[1] += (double)(c[3] - c[2]), sum[2] += (double)(c[0] - c[3]);
            sum[3] += (double)(c[1] - c[0]);
            dep_max = TL_MAX(dep_max, c[1]);
        }
        double *a = g->pk_acc[k % 5];
        a[0] += (double)(dep_max - prev_max) / 1e3;
        for (int i = 0; i < 4; i++) a[1 + i] += sum[i] / nb / 1e3;
        prev_max = dep_max, t1 = TL_MAX(t1, dep_max);
    }
    g->pk_acc[5][0] += (double)(t1 - t0) / 1e3;
    g->pk_steps++;
}

static void persist_prof_print(const gpu_state *g, const ternlm_session *s) {
    if (!g->pk_steps) return;
    const char *names[5] = {"q|k|v", "attention", "o", "gate|up", "down"};
    const double per = (double)g->pk_steps * s->m->hp.n_layer;
    fprintf(stderr, "persist profile, %d steps, us per layer (wall / weights wait / prep / rest of work / barrier):\n", g->pk_steps);
    for (int k = 0; k < 5; k++)
        fprintf(stderr, "  %-10s %7.2f %7.2f %7.2f %7.2f %7.2f\n", names[k], g->pk_acc[k][0] / per, g->pk_acc[k][1] / per,
                g->pk_acc[k][2] / per, g->pk_acc[k][3] / per, g->pk_acc[k][4] / per);
    fprintf(stderr, "  launch     %7.2f us a step\n", g->pk_acc[5][0] / g->pk_steps);
}

ternlm_status tl_gpu_eval(ternlm_session *s, const int32_t *tokens, size_t n, int which, ternlm_error *err) {
    gpu_state *g = (gpu_state *)s->gpu;
    const uint32_t nv = s->m->hp.n_vocab;
    for (size_t done = 0; done < n;) {
        const int T = (int)TL_MIN((size_t)T_CAP, n - done);
        const int last = done + (size_t)T == n;
        const int mode = which == TERNLM_LOGITS_ALL ? which : (last ? which : TERNLM_LOGITS_NONE);
        const int pos = (int)s->pos;
        if (T == 1 && g->io_host) { // (free to rewrite: every step ends with a synchronization, or the session failed)
            g->io_host[0] = tokens[done], g->io_host[1] = pos;
            CK(cudaMemcpyAsync(g->tok, g->io_host, sizeof(int), cudaMemcpyHostToDevice, g->st));
            CK(cudaMemcpyAsync(g->pos0, g->io_host + 1, sizeof(int), cudaMemcpyHostToDevice, g->st));
        } else {
            CK(cudaMemcpyAsync(g->tok, tokens + done, T * sizeof(int), cudaMemcpyHostToDevice, g->st));
            CK(cudaMemcpyAsync(g->pos0, &pos, sizeof(int), cudaMemcpyHostToDevice, g->st));
        }
        if (!g->embd_on_gpu) {
            ternlm_status st = host_embed(s, tokens + done, T, err);
            if (st) return st;
        }
        if (T == 1 && mode == TERNLM_LOGITS_LAST && g->use_graph) {
            ternlm_status st = decode_graph(s, err);
            if (st) return st;
        } else {
            forward(s, T, mode, pos + T);
        }
        CK(cudaGetLastError());
        const int rows = mode == TERNLM_LOGITS_ALL ? T : mode == TERNLM_LOGITS_LAST ? 1 : 0;
        float *dst = s->logits + (which == TERNLM_LOGITS_ALL ? done * nv : 0);
        const int staged = rows == 1 && g->logits_host; // one row: into page-locked memory, then a host copy
        if (rows) CK(cudaMemcpyAsync(staged ? g->logits_host : dst, g->logits, (size_t)rows * nv * sizeof(float), cudaMemcpyDeviceToHost, g->st));
        CK(cudaStreamSynchronize(g->st));
        if (staged) memcpy(dst, g->logits_host, (size_t)nv * sizeof(float));
        if (g->pk_prof && T == 1 && g->persist && g->pk_ok) persist_prof_step(g, s);
        s->pos += (uint32_t)T;
        s->n_evaluated += (uint64_t)T;
        done += (size_t)T;
    }
    return TERNLM_OK;
}

// A multi-sequence micro-batch (runtime/batch.c): token t belongs to slot s->tok_seq[t] at position s->tok_pos[t];
// the logits of token logit_rows[r] go to dst[r] (the batch's page-locked rows: one DMA each). The per-token arithmetic is the prompt
// path's, which computes the single-sequence session's bits.
ternlm_status tl_gpu_eval_ubatch(ternlm_session *s, const int32_t *tokens, int T, const int *logit_rows,
                                 int n_logit_rows, float *const *dst, ternlm_error *err) {
    gpu_state *g = (gpu_state *)s->gpu;
    const uint32_t nv = s->m->hp.n_vocab;
    if (T < 1 || T > T_CAP) return tl_fail(err, TERNLM_ERR_ARG, "a GPU micro-batch holds 1..%d tokens, not %d", T_CAP, T);
    int n_pos = 0;
    for (int t = 0; t < T; t++) {
        if (s->tok_seq[t] >= g->n_seq || s->tok_pos[t] >= s->n_ctx)
            return tl_fail(err, TERNLM_ERR_ARG, "token %d: slot %u position %u is outside the batch (%u slots of %u)", t,
                           s->tok_seq[t], s->tok_pos[t], g->n_seq, s->n_ctx);
        n_pos = TL_MAX(n_pos, (int)s->tok_pos[t] + 1);
    }
    CK(cudaMemcpyAsync(g->tok, tokens, T * sizeof(int), cudaMemcpyHostToDevice, g->st));
    CK(cudaMemcpyAsync(g->tok_seq, s->tok_seq, T * sizeof(int), cudaMemcpyHostToDevice, g->st));
    CK(cudaMemcpyAsync(g->tok_pos, s->tok_pos, T * sizeof(int), cudaMemcpyHostToDevice, g->st));
    if (!g->embd_on_gpu) {
        ternlm_status st = host_embed(s, tokens, T, err);
        if (st) return st;
    }
    g->batch_now = 1;
    forward(s, T, n_logit_rows ? TERNLM_LOGITS_ALL : TERNLM_LOGITS_NONE, n_pos);
    g->batch_now = 0;
    CK(cudaGetLastError());
    for (int r = 0; r < n_logit_rows; r++) // in order: a later row for the same destination wins, as on the CPU
        CK(cudaMemcpyAsync(dst[r], g->logits + (size_t)logit_rows[r] * nv, nv * sizeof(float), cudaMemcpyDeviceToHost, g->st));
    CK(cudaStreamSynchronize(g->st));
    s->n_evaluated += (uint64_t)T;
    return TERNLM_OK;
}

void *tl_gpu_host_alloc(size_t bytes) {
    void *p = NULL;
    return cudaMallocHost(&p, bytes) == cudaSuccess ? p : NULL;
}

void tl_gpu_host_free(void *p) {
    if (p) cudaFreeHost(p);
}
