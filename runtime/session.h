/* The session object shared by the CPU forward pass and the GPU backend hooks. */
#ifndef TERNLM_SESSION_H
#define TERNLM_SESSION_H

#include "../simd/kernels.h"
#include "model.h"
#include "threads.h"

struct ternlm_session {
    ternlm_model *m;
    uint32_t n_ctx, pos;
    uint64_t n_evaluated;
    const tl_kernels *kern;
    tl_pool *pool;

    /* KV cache, f16: [layer][position][kv_dim] */
    uint16_t *k_cache, *v_cache;

    /* scratch for one micro-batch (rows of n_embd or n_ff floats per token) */
    float *x, *xn, *q, *k, *v, *att, *proj, *ff_g, *ff_u, *f16r, *rope_cs, *scores, *qh, *row_tmp;
    int64_t row_tmp_len;
    int8_t *qa;
    float *qa_scale;
    int32_t *qa_sum, *acc;
    tl_block_q8k *q8k;
    uint8_t *q80;

    float *logits;
    size_t logits_cap, logits_rows;

    void *gpu; /* non-NULL when the session runs on the GPU backend */
    int holds_model_ref; /* set once ternlm_session_new succeeded: ternlm_session_free releases the model */

    /* Multi-sequence batches (runtime/batch.c): n_seq KV slots of slot_elems f16 each, and for the micro-batch
     * being evaluated each token's slot and position. A plain session is one slot; its eval fills these itself. */
    uint32_t n_seq;
    size_t slot_elems;
    uint32_t *tok_seq, *tok_pos; /* TL_UBATCH entries */
};

#define TL_UBATCH 64 /* tokens the forward pass evaluates together (bounds the scratch memory) */

/* A CPU session with n_seq KV slots of p->n_ctx positions each. */
ternlm_status tl_session_new_cpu(ternlm_model *m, const ternlm_session_params *p, uint32_t n_seq, ternlm_session **out,
                                 ternlm_error *err);
/* Evaluate T <= TL_UBATCH tokens whose slots and positions the caller wrote to s->tok_seq / s->tok_pos; logits of
 * the tokens logit_rows[0..n_logit_rows) go to consecutive n_vocab rows of `logits`. Positions are the caller's to
 * track (s->pos is not touched). */
void tl_eval_ubatch(ternlm_session *s, const int32_t *tokens, int T, const int *logit_rows, int n_logit_rows,
                    float *logits);

/* cos, sin pairs of the n_rot/2 rotation angles at position pos (the GPU backend tabulates them with this too). */
void tl_rope_table(float *cs, uint32_t pos, const tl_hparams *h, const float *freq_factors);

/* GPU backend hooks (native/cuda/ when built with TERNLM_CUDA, otherwise a stub that reports why). A GPU session
 * has n_seq KV slots; tl_gpu_eval_ubatch is tl_eval_ubatch's counterpart for multi-sequence batches. */
ternlm_status tl_session_new_gpu(ternlm_model *m, const ternlm_session_params *p, uint32_t n_seq, ternlm_session **out,
                                 ternlm_error *err);
void tl_session_free_gpu(ternlm_session *s);
ternlm_status tl_gpu_eval(ternlm_session *s, const int32_t *tokens, size_t n, int which, ternlm_error *err);
ternlm_status tl_gpu_eval_ubatch(ternlm_session *s, const int32_t *tokens, int T, const int *logit_rows,
                                 int n_logit_rows, float *const *dst, ternlm_error *err); /* row r to dst[r] */
void *tl_gpu_host_alloc(size_t bytes); /* page-locked host memory (plain malloc without a GPU backend) */
void tl_gpu_host_free(void *p);

#endif
