/* CPU kernels behind one dispatch table. `scalar` is the reference and is always built; every fast
 * path must equal it bit for bit in its integer part (../shared/specs/quant-formats.md §9). */
#ifndef TERNLM_KERNELS_H
#define TERNLM_KERNELS_H

#include <stdint.h>

/* Q8_K activation block: 256 int8 values with an f32 scale (negative for positive maxima) and
 * per-16 sums. */
typedef struct tl_block_q8k {
    float d;
    int8_t qs[256];
    int16_t bsums[16];
} tl_block_q8k;

/* A weight repacked into groups of 16 rows (layouts in simd/repack.h). */
typedef struct tl_r16 {
    const uint8_t *data;    /* ne1/16 groups, each 16 rows interleaved */
    const uint16_t *dw;     /* TQ: f16 block scales [group][block][16 rows]; NULL otherwise */
    const float *drow;      /* int8 / int4: one f32 scale per row; NULL otherwise */
    float scale;            /* I2_S: the tensor scale */
    int64_t ne0, ne1;
    const uint8_t *sub;     /* int4: u8 sub-scales [group][block of 32][16 rows]; NULL otherwise */
} tl_r16;

/* The quantized input of a linear layer: T tokens of n values. I2_S and int8 weights read q/scale/sum (per-token
 * absmax int8, quantize_i8); TQ weights read the Q8_K blocks (n/256 per token). */
typedef struct tl_acts {
    int T;
    int64_t n;
    const int8_t *q;
    const float *scale;
    const int32_t *sum;
    const tl_block_q8k *q8k;
} tl_acts;

/* Each path fills its table with designated initializers: an entry a path lacks stays NULL. */
typedef struct tl_kernels {
    const char *name;

    /* Per-token int8 absmax quantization of n floats (bitnet.cpp rule): q, 127/max as *scale, Σq. */
    void (*quantize_i8)(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum);
    /* Q8_K quantization of n floats (n % 256 == 0) into n/256 blocks. */
    void (*quantize_q8k)(const float *x, int64_t n, tl_block_q8k *y);

    /* I2_S rows [r0, r1) of a weight whose rows hold n codes (n % 128 == 0), times T int8 activation
     * rows (q + t*n). Writes the exact integer Σ code·q to acc[t*acc_stride + r]. */
    void (*i2s_gemm)(const uint8_t *w, int64_t n, int64_t r0, int64_t r1, const int8_t *q, int T,
                     int32_t *acc, int64_t acc_stride);
    /* TQ2_0 / TQ1_0 row (n % 256 == 0) · Q8_K activations: Σ_b (float)sumi_b · (d_act · d_w). */
    float (*dot_tq2)(const uint8_t *row, const tl_block_q8k *a, int64_t n);
    float (*dot_tq1)(const uint8_t *row, const tl_block_q8k *a, int64_t n);

    /* Float dots: f16 or f32 weights times f32 activations. The scalar reference accumulates the
     * f32 products in double, as ggml's scalar vec_dot_f16 and the fixture references do. */
    float (*dot_f16)(const uint16_t *w, const float *x, int64_t n);
    float (*dot_f32)(const float *w, const float *x, int64_t n);
    /* Q8_0 weights · Q8_0-quantized activations (head re-quantized with --head-quant q8_0). */
    float (*dot_q8_0)(const uint8_t *w, const uint8_t *a, int64_t n);
    /* Attention output: out[d] = Σ_p prob[p] · f16(V[p·stride + d]) for d < hd. */
    void (*attn_pv)(float *out, const float *prob, const uint16_t *v, int64_t n_pos, int64_t stride, int64_t hd);
    /* Attention scores of G query heads that share one KV head: s[g*s_stride + p] = dot_f16(k + p*stride, q + g*hd, hd)
     * * scale for p < n_pos, bit for bit (a path may convert each K row once for all G heads and fold several dots in
     * one register tree; the additions stay those of lanes.h). NULL: the caller runs dot_f16 per row and head. */
    void (*attn_kq)(float *s, int64_t s_stride, const uint16_t *k, int64_t n_pos, int64_t stride, const float *q, int G,
                    int64_t hd, float scale);
    /* P·V of G heads that share one V: out[g*hd + d] = attn_pv(prob + g*p_stride, ...)[d] bit for bit (each V row
     * converted once for the G heads). NULL: the caller runs attn_pv per head. */
    void (*attn_pv_g)(float *out, const float *prob, int64_t p_stride, int G, const uint16_t *v, int64_t n_pos, int64_t stride,
                      int64_t hd);
    /* Softmax's range check: *max and *min of the non-NaN values among v[0..n) (-inf / +inf when there are none;
     * of +0 and -0 either may be returned, which changes no exp(v - max)), and 1 when some value is NaN. */
    int (*row_range)(const float *v, int64_t n, float *max, float *min);
    /* Softmax: v[p] = tl_expf(v[p] - max) for a row whose differences all lie in [-104, 0] (no NaN): simd/exp_row.h,
     * built with the path's vector width (same bits everywhere). */
    void (*exp_minus_max)(float *v, uint32_t n, float max);

    /* Bonsai: a Q1_0 (n % 128 == 0) or Q2_0 (n % 64 == 0) row · Q8_0 activations from tl_quantize_q8_0_x86.
     * Integer sums s_k over each 32-element activation block are exact; then, in this order in every path,
     * per weight block sumi = da_0·s_0 + da_1·s_1 (+ da_2·s_2 + da_3·s_3 for Q1_0), sum = sum + d_w·sumi
     * (ggml's generic C order; every da·s product is exact in f32, so only the adds round). */
    float (*dot_q1_0)(const uint8_t *w, const uint8_t *a, int64_t n);
    float (*dot_q2_0)(const uint8_t *w, const uint8_t *a, int64_t n);
    /* GEMMs over weights repacked at load into 16-row groups (simd/repack.h), rows [r0, r1) (multiples of 16)
     * times a.T tokens, writing finished floats to y[t*y_stride + r]. NULL in a path that has none: the forward
     * pass then uses the scalar table's entry (same bits, slower); model load repacks only for paths that have
     * their own entry, so a path without them keeps its per-row kernels above. */
    /* I2_S: y = (((float)Σ code·q − (float)Σq) / scale_t) · tensor_scale, the formula of i2s_gemm's epilogue. */
    void (*gemm_i2s_r16)(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t y_stride);
    /* TQ2_0 / TQ1_0 (decoded to the same 2-bit codes): Σ_b (float)sumi_b · (d_act,b · d_w,b) in block order. */
    void (*gemm_tq_r16)(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t y_stride);
    /* int8 rows (the re-quantized head): y = ((float)Σ w·q / scale_t) · d_row. */
    void (*gemm_i8_r16)(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t y_stride);
    /* int4 rows (the 4-bit head): y = ((float)Σ_b s_b·Σ_{k in b} q·x / scale_t) · d_row, the sum exact in int32. */
    void (*gemm_i4_r16)(const tl_r16 *w, int64_t r0, int64_t r1, const tl_acts *a, float *y, int64_t y_stride);
    /* F16 rows in file layout (the head): rows [r0, r1) of n values (row r at w + r·n) times T f32 token rows (x + t·n),
     * y[t*y_stride + r] = dot_f16(row r, token t) bit for bit, each row read from memory once for all T tokens (so a
     * step of several streams does not read the head T times). NULL: the caller runs dot_f16 per row and token. */
    void (*gemm_f16)(const uint16_t *w, int64_t n, int64_t r0, int64_t r1, const float *x, int T, float *y, int64_t y_stride);
} tl_kernels;

/* The table for this CPU, honouring TERNLM_KERNELS. Never NULL (falls back to scalar). */
const tl_kernels *tl_kernels_best(void);
/* A path by name, or NULL when this build or CPU cannot run it. */
const tl_kernels *tl_kernels_by_name(const char *name);
const tl_kernels *tl_kernels_scalar(void);

/* Q8_0 activation quantization (ggml reference rule), used for the optional q8_0 head. */
void tl_quantize_q8_0(const float *x, int64_t n, uint8_t *y);

/* Q8_0 activation quantization as ggml's x86 quantize_row_q8_0 does it (quant-formats.md §12): the input of
 * Q1_0/Q2_0 matmuls. d = fp16(amax/127), q = round-half-even(x·(127/amax)). */
void tl_quantize_q8_0_x86(const float *x, int64_t n, uint8_t *y);

/* Every path compiled in, for tests: fills up to cap names, returns the count. */
int tl_kernels_available(const tl_kernels **out, int cap);

#endif
