/* The loaded model: hyperparameters, weight views into the file, the tokenizer. */
#ifndef TERNLM_MODEL_H
#define TERNLM_MODEL_H

#include "../simd/kernels.h"
#include "gguf.h"
#include "platform.h"

struct tl_tokenizer;

/* A view of one weight matrix: ne0 inputs per row, ne1 rows (outputs). */
typedef struct tl_weight {
    uint32_t type;
    int64_t ne0, ne1;
    const uint8_t *data;
    uint64_t row_bytes;
    float i2s_scale;     /* I2_S: the per-tensor scale stored after the codes */
    float out_scale;     /* `bitnet` arch: optional per-linear `.scale` tensor, else 1 */
    const float *bias;   /* optional, ne1 floats */
    /* A copy repacked at load into 16-row groups (simd/repack.h) that the CPU linear code uses instead of `data`
     * (r16.data NULL: none). With r16.drow set it is the int8 re-quantized head; `type` still names the file's type. */
    tl_r16 r16;
    void *r16_mem;       /* owned allocation behind r16 */
    void *layout_mem;    /* owned copy behind `data` when the file's layout was rewritten at load (I2_S 64), else NULL */
} tl_weight;

typedef struct tl_layer {
    const float *attn_norm, *attn_sub_norm, *ffn_norm, *ffn_sub_norm;
    const float *attn_q_norm, *attn_k_norm; /* qwen3: per-head RMSNorm weights [head_dim], else NULL */
    tl_weight wq, wk, wv, wo, gate, up, down;
} tl_layer;

enum tl_act { TL_ACT_SILU, TL_ACT_RELU2 };
enum tl_rope { TL_ROPE_NORM, TL_ROPE_NEOX };

typedef struct tl_hparams {
    uint32_t n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, n_ff, head_dim, n_rot;
    float eps, rope_base;
    enum tl_act act;
    enum tl_rope rope;
    int sub_norms;
    int qk_norm;   /* qwen3: attn_q_norm / attn_k_norm before RoPE */
    /* Numerics of the reference implementation for this arch (bitnet-architectures.md §7):
     * bitnet.cpp keeps attention probabilities and the head input in f32, llama.cpp rounds them to f16. */
    int probs_f16, head_input_f16;
} tl_hparams;

struct ternlm_model {
    tl_mapped_file file;      /* when opened by path */
    uint8_t *owned_header;    /* incremental loader: the header bytes */
    uint8_t *owned_data;      /* incremental loader: the data section */
    const uint8_t *header;    /* bytes the gguf strings point into */
    const uint8_t *data;      /* start of the tensor data section */
    gguf_file gguf;
    tl_logger log;

    char arch[64], name[128], weight_type[16], head_type[16];
    tl_hparams hp;
    int has_weights;          /* 0 for vocabulary-only files */
    tl_weight tok_embd, output;
    const float *output_norm;
    const float *rope_freqs;  /* optional n_rot/2 frequency divisors */
    tl_layer *layers;
    uint8_t *head_q8;         /* --head-quant q8_0: owned re-quantized head */
    uint64_t repacked_bytes;  /* bytes held in r16 copies */

    struct tl_tokenizer *tok;
    ternlm_model_info info;

    /* References: the owner's one plus one per live session or text stream. The memory goes when the last one
     * is released, so a session that outlives ternlm_model_free() stays valid (and the free logs a warning). */
    struct tl_refcount *refs;
};

/* Take and drop a reference on the model (see refs). tl_model_release frees it when the count reaches 0. */
void tl_model_retain(const ternlm_model *m);
void tl_model_release(const ternlm_model *m);
/* Repack the weights the CPU kernels have 16-row GEMMs for (runtime/repack_weights.c); frees them again. */
ternlm_status tl_model_repack(ternlm_model *m, const ternlm_model_params *p, ternlm_error *err);
void tl_model_free_repacked(ternlm_model *m);

/* Build a model from a parsed GGUF whose header and data are already in place. Takes ownership of g. */
ternlm_status tl_model_init(ternlm_model *m, const ternlm_model_params *params, ternlm_error *err);

#endif
