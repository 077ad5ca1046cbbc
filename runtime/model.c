/* Model loading: the arch registry, hyperparameters from metadata, and weight views bound by name
 * with exact shapes (../shared/specs/bitnet-architectures.md §1-§3). */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../simd/kernels.h"
#include "tensor_types.h"
#include "tokenizer.h"

typedef struct arch_desc {
    const char *name;
    enum tl_act act;
    enum tl_rope rope;
    int sub_norms, probs_f16, head_input_f16;
    int qk_norm;
} arch_desc;

static const arch_desc k_archs[] = {
    {"bitnet-b1.58", TL_ACT_RELU2, TL_ROPE_NEOX, 1, 0, 0, 0},
    {"bitnet-25", TL_ACT_RELU2, TL_ROPE_NEOX, 1, 0, 0, 0},
    {"bitnet", TL_ACT_SILU, TL_ROPE_NEOX, 1, 1, 1, 0},
    {"llama", TL_ACT_SILU, TL_ROPE_NORM, 0, 1, 1, 0},
    /* PrismML Bonsai / Ternary-Bonsai (bitnet-architectures.md §8): llama.cpp numerics, per-head q/k norms */
    {"qwen3", TL_ACT_SILU, TL_ROPE_NEOX, 0, 1, 1, 1},
};

ternlm_model_params ternlm_model_params_default(void) {
    ternlm_model_params p;
    memset(&p, 0, sizeof p);
    return p;
}

/* ---- hyperparameters ---- */

static const gguf_kv *arch_key(const ternlm_model *m, const char *suffix) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    return gguf_find(&m->gguf, key);
}

/* An integer hparam; per-layer arrays are accepted when all entries are equal. */
static ternlm_status hp_u32(const ternlm_model *m, const char *suffix, int required, uint32_t def, uint32_t *out,
                            ternlm_error *err) {
    const gguf_kv *kv = arch_key(m, suffix);
    *out = def;
    if (!kv) {
        if (required) return tl_fail(err, TERNLM_ERR_MODEL, "missing metadata key '%s.%s'", m->arch, suffix);
        return TERNLM_OK;
    }
    if (kv->type == GGUF_ARRAY) {
        if (kv->arr_n == 0 || kv->arr_type == GGUF_STRING || kv->arr_type == GGUF_F32 || kv->arr_type == GGUF_F64)
            return tl_fail(err, TERNLM_ERR_MODEL, "metadata '%s.%s' must be an integer or a per-layer integer array",
                           m->arch, suffix);
        const double v0 = gguf_arr_num(kv, 0);
        for (uint64_t i = 1; i < kv->arr_n; i++)
            if (gguf_arr_num(kv, i) != v0)
                return tl_fail(err, TERNLM_ERR_UNSUPPORTED, "metadata '%s.%s' varies per layer, which is not supported",
                               m->arch, suffix);
        if (v0 < 0 || v0 > UINT32_MAX)
            return tl_fail(err, TERNLM_ERR_MODEL, "metadata '%s.%s' is out of range", m->arch, suffix);
        *out = (uint32_t)v0;
        return TERNLM_OK;
    }
    return gguf_get_u32(kv, out, err);
}

static ternlm_status hp_f32(const ternlm_model *m, const char *suffix, int required, float def, float *out,
                            ternlm_error *err) {
    const gguf_kv *kv = arch_key(m, suffix);
    *out = def;
    if (!kv) {
        if (required) return tl_fail(err, TERNLM_ERR_MODEL, "missing metadata key '%s.%s'", m->arch, suffix);
        return TERNLM_OK;
    }
    ternlm_status st = gguf_get_f32(kv, out, err);
    if (!st && !(isfinite(*out) && *out > 0))
        return tl_fail(err, TERNLM_ERR_MODEL, "metadata '%s.%s' must be finite and positive (got %g)", m->arch, suffix,
                       (double)*out);
    return st;
}

static ternlm_status read_activation(ternlm_model *m, const char *override, ternlm_error *err) {
    const char *name = override;
    char buf[32] = {0};
    const gguf_kv *kv = arch_key(m, "hidden_activation");
    if (!name && kv) {
        gguf_str s;
        if (gguf_get_str(kv, &s, err)) return err ? err->code : TERNLM_ERR_MODEL;
        snprintf(buf, sizeof buf, "%.*s", (int)TL_MIN(s.len, 31), s.p);
        name = buf;
    }
    if (!name) {
        const tl_hparams *h = &m->hp;
        if (strcmp(m->arch, "bitnet") == 0 && h->n_embd == 2560 && h->n_layer == 30 && h->n_ff == 6912)
            tl_log(&m->log, "warning: arch 'bitnet' with 2B4T dimensions uses SiLU; if this is BitNet b1.58 2B4T, "
                            "pass --activation relu2");
        return TERNLM_OK;
    }
    if (strcmp(name, "relu2") == 0 || strcmp(name, "relu_sqr") == 0) m->hp.act = TL_ACT_RELU2;
    else if (strcmp(name, "silu") == 0) m->hp.act = TL_ACT_SILU;
    else return tl_fail(err, TERNLM_ERR_UNSUPPORTED, "unsupported FFN activation '%s' (relu2 and silu are)", name);
    return TERNLM_OK;
}

static ternlm_status read_hparams(ternlm_model *m, ternlm_error *err) {
    tl_hparams *h = &m->hp;
    ternlm_status st;
    if ((st = hp_u32(m, "embedding_length", 1, 0, &h->n_embd, err)) ||
        (st = hp_u32(m, "block_count", 1, 0, &h->n_layer, err)) ||
        (st = hp_u32(m, "feed_forward_length", 1, 0, &h->n_ff, err)) ||
        (st = hp_u32(m, "attention.head_count", 1, 0, &h->n_head, err)) ||
        (st = hp_u32(m, "attention.head_count_kv", 0, h->n_head, &h->n_head_kv, err)) ||
        (st = hp_u32(m, "context_length", 0, 0, &h->n_ctx_train, err)) ||
        (st = hp_f32(m, "attention.layer_norm_rms_epsilon", 1, 0, &h->eps, err)) ||
        (st = hp_f32(m, "rope.freq_base", 0, 10000.0f, &h->rope_base, err)))
        return st;
    if (h->rope_base < 1.0f)
        return tl_fail(err, TERNLM_ERR_MODEL, "metadata '%s.rope.freq_base' is %g; below 1 the rope angles grow without bound",
                       m->arch, (double)h->rope_base);
    if (!h->n_ctx_train) {
        tl_log(&m->log, "warning: '%s.context_length' missing; assuming 2048", m->arch);
        h->n_ctx_train = 2048;
    }
    if (!h->n_embd || !h->n_layer || !h->n_ff || !h->n_head || !h->n_head_kv)
        return tl_fail(err, TERNLM_ERR_MODEL, "hyperparameters must be positive (n_embd %u, n_layer %u, n_ff %u, n_head %u, n_head_kv %u)",
                       h->n_embd, h->n_layer, h->n_ff, h->n_head, h->n_head_kv);
    if (h->n_layer > 4096 || h->n_embd > 1u << 20 || h->n_ff > 1u << 22 || h->n_head > 4096)
        return tl_fail(err, TERNLM_ERR_MODEL, "hyperparameters are implausibly large (n_embd %u, n_layer %u, n_ff %u, n_head %u)",
                       h->n_embd, h->n_layer, h->n_ff, h->n_head);
    /* The head size is attention.key_length when given (qwen3 4B: 128, not 2560/32), else n_embd/n_head. */
    uint32_t kl = 0, vl;
    if ((st = hp_u32(m, "attention.key_length", 0, 0, &kl, err))) return st;
    if ((!kl && h->n_embd % h->n_head) || h->n_head % h->n_head_kv)
        return tl_fail(err, TERNLM_ERR_MODEL, "n_embd %u must divide by n_head %u, and n_head by n_head_kv %u", h->n_embd,
                       h->n_head, h->n_head_kv);
    h->head_dim = kl ? kl : h->n_embd / h->n_head;
    if (h->head_dim > 4096 || (uint64_t)h->head_dim * h->n_head > 1u << 20)
        return tl_fail(err, TERNLM_ERR_MODEL, "attention.key_length %u is implausibly large", h->head_dim);
    if ((st = hp_u32(m, "attention.value_length", 0, h->head_dim, &vl, err)) ||
        (st = hp_u32(m, "rope.dimension_count", 0, h->head_dim, &h->n_rot, err)))
        return st;
    if (vl != h->head_dim)
        return tl_fail(err, TERNLM_ERR_UNSUPPORTED, "value length %u differs from the key length (head size) %u", vl,
                       h->head_dim);
    if (h->head_dim % 2 || h->n_rot != h->head_dim)
        return tl_fail(err, TERNLM_ERR_UNSUPPORTED, "rope dimension %u must equal the (even) head size %u", h->n_rot,
                       h->head_dim);
    const gguf_kv *rs = arch_key(m, "rope.scaling.type");
    if (rs) {
        gguf_str s;
        float factor = 1.0f;
        if ((st = gguf_get_str(rs, &s, err)) || (st = hp_f32(m, "rope.scaling.factor", 0, 1.0f, &factor, err))) return st;
        const int noop = (s.len == 4 && memcmp(s.p, "none", 4) == 0) ||
                         (s.len == 6 && memcmp(s.p, "linear", 6) == 0 && factor == 1.0f);
        if (!noop)
            return tl_fail(err, TERNLM_ERR_UNSUPPORTED, "rope scaling '%.*s' with factor %g is not supported",
                           (int)TL_MIN(s.len, 32), s.p, (double)factor);
    }
    return TERNLM_OK;
}

/* ---- tensors ---- */

typedef struct binder {
    ternlm_model *m;
    unsigned char *used;  /* one flag per tensor, to warn about unknown ones */
    ternlm_error *err;
} binder;

static const gguf_tensor *find_tensor(binder *b, const char *name) {
    const gguf_tensor *t = gguf_find_tensor(&b->m->gguf, name);
    if (t) b->used[t - b->m->gguf.tensors] = 1;
    return t;
}

static ternlm_status check_shape(binder *b, const gguf_tensor *t, int64_t ne0, int64_t ne1) {
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return tl_fail(b->err, TERNLM_ERR_MODEL, "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                       t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                       (long long)ne0, (long long)ne1);
    return TERNLM_OK;
}

static ternlm_status bind_f32(binder *b, const char *name, int64_t n, int required, const float **out) {
    const gguf_tensor *t = find_tensor(b, name);
    *out = NULL;
    if (!t) return required ? tl_fail(b->err, TERNLM_ERR_MODEL, "missing tensor '%s'", name) : TERNLM_OK;
    ternlm_status st = check_shape(b, t, n, 1);
    if (st) return st;
    if (t->type != TL_F32)
        return tl_fail(b->err, TERNLM_ERR_UNSUPPORTED, "tensor '%s' has type %s; ternlm expects F32 here", name,
                       tl_type_name(t->type));
    *out = (const float *)(const void *)(b->m->data + t->offset);
    return TERNLM_OK;
}

static ternlm_status bind_weight(binder *b, const char *name, int64_t ne0, int64_t ne1, int required, tl_weight *w) {
    memset(w, 0, sizeof *w);
    const gguf_tensor *t = find_tensor(b, name);
    if (!t) return required ? tl_fail(b->err, TERNLM_ERR_MODEL, "missing tensor '%s'", name) : TERNLM_OK;
    ternlm_status st = check_shape(b, t, ne0, ne1);
    if (st) return st;
    w->type = t->type;
    w->ne0 = ne0;
    w->ne1 = ne1;
    w->data = b->m->data + t->offset;
    w->row_bytes = tl_type_row_bytes(t->type, (uint64_t)ne0);
    w->out_scale = 1.0f;
    if (t->type == TL_I2_S && gguf_i2s_scale_companion(&b->m->gguf, t)) {
        char who[GGUF_MAX_NAME + 40];
        snprintf(who, sizeof who, "the I2_S tensors (here '%s')", name);
        return tl_fail(b->err, TERNLM_ERR_UNSUPPORTED, GGUF_I2S_SEQUENTIAL_MSG, who);
    }
    if (t->type == TL_I2_S) {
        memcpy(&w->i2s_scale, w->data + (uint64_t)(ne0 * ne1) / 4, 4);
        if (!isfinite(w->i2s_scale))
            return tl_fail(b->err, TERNLM_ERR_MODEL, "tensor '%s': I2_S scale is not finite", name);
    }
    return TERNLM_OK;
}

/* Optional `.scale` ([1], F32) and `.bias` ([ne1], F32) companions of a linear. */
static ternlm_status bind_extras(binder *b, const char *base, tl_weight *w) {
    char name[GGUF_MAX_NAME + 16];
    const float *p;
    ternlm_status st;
    snprintf(name, sizeof name, "%s.scale", base);
    if ((st = bind_f32(b, name, 1, 0, &p))) return st;
    if (p) w->out_scale = p[0];
    snprintf(name, sizeof name, "%s.bias", base);
    return bind_f32(b, name, w->ne1, 0, &w->bias);
}

static ternlm_status bind_layer(binder *b, uint32_t l, tl_layer *L) {
    const tl_hparams *h = &b->m->hp;
    const int64_t e = h->n_embd, kv = (int64_t)h->head_dim * h->n_head_kv, ff = h->n_ff;
    const int64_t qw = (int64_t)h->head_dim * h->n_head;
    char name[GGUF_MAX_NAME];
    ternlm_status st;
#define NAME(s) (snprintf(name, sizeof name, "blk.%u." s, l), name)
#define LIN(field, s, a, c)                                                                          \
    if ((st = bind_weight(b, NAME(s ".weight"), a, c, 1, &L->field))) return st;                   \
    snprintf(name, sizeof name, "blk.%u." s, l);                                                     \
    if ((st = bind_extras(b, name, &L->field))) return st;
    if ((st = bind_f32(b, NAME("attn_norm.weight"), e, 1, &L->attn_norm))) return st;
    if ((st = bind_f32(b, NAME("ffn_norm.weight"), e, 1, &L->ffn_norm))) return st;
    if ((st = bind_f32(b, NAME("attn_sub_norm.weight"), e, h->sub_norms, &L->attn_sub_norm))) return st;
    if ((st = bind_f32(b, NAME("ffn_sub_norm.weight"), ff, h->sub_norms, &L->ffn_sub_norm))) return st;
    if ((st = bind_f32(b, NAME("attn_q_norm.weight"), h->head_dim, h->qk_norm, &L->attn_q_norm))) return st;
    if ((st = bind_f32(b, NAME("attn_k_norm.weight"), h->head_dim, h->qk_norm, &L->attn_k_norm))) return st;
    LIN(wq, "attn_q", e, qw)
    LIN(wk, "attn_k", e, kv)
    LIN(wv, "attn_v", e, kv)
    LIN(wo, "attn_output", qw, e)
    LIN(gate, "ffn_gate", e, ff)
    LIN(up, "ffn_up", e, ff)
    LIN(down, "ffn_down", ff, e)
#undef LIN
#undef NAME
    return TERNLM_OK;
}

static ternlm_status requant_head_q8_0(ternlm_model *m, ternlm_error *err) {
    tl_weight *w = &m->output;
    if (w->type != TL_F16 || w->ne0 % 32) {
        tl_log(&m->log, "warning: --head-quant q8_0 applies to an F16 head with rows of 32k; head is %s, left as is",
               tl_type_name(w->type));
        return TERNLM_OK;
    }
    const uint64_t row_bytes = tl_type_row_bytes(TL_Q8_0, (uint64_t)w->ne0);
    m->head_q8 = tl_aligned_alloc((size_t)(row_bytes * (uint64_t)w->ne1));
    float *tmp = malloc((size_t)w->ne0 * sizeof *tmp);
    if (!m->head_q8 || !tmp) {
        free(tmp);
        return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory re-quantizing the head");
    }
    for (int64_t r = 0; r < w->ne1; r++) {
        tl_dequant_row(TL_F16, w->data + (uint64_t)r * w->row_bytes, tmp, w->ne0, 0);
        tl_quantize_q8_0(tmp, w->ne0, m->head_q8 + (uint64_t)r * row_bytes);
    }
    free(tmp);
    w->type = TL_Q8_0;
    w->data = m->head_q8;
    w->row_bytes = row_bytes;
    return TERNLM_OK;
}

static ternlm_status bind_tensors(ternlm_model *m, const ternlm_model_params *p, ternlm_error *err) {
    binder b = {m, calloc(m->gguf.n_tensors, 1), err};
    if (!b.used) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    const tl_hparams *h = &m->hp;
    ternlm_status st = TERNLM_OK;
    const gguf_tensor *te = find_tensor(&b, "token_embd.weight");
    if (!te) st = tl_fail(err, TERNLM_ERR_MODEL, "missing tensor 'token_embd.weight'");
    else if (te->ne[0] != h->n_embd) st = check_shape(&b, te, h->n_embd, te->ne[1]);
    else if (m->hp.n_vocab && te->ne[1] != m->hp.n_vocab)
        st = tl_fail(err, TERNLM_ERR_MODEL, "token_embd.weight has %lld rows but the vocabulary has %u tokens",
                     (long long)te->ne[1], m->hp.n_vocab);
    if (!st) {
        if (te->ne[1] > INT32_MAX) st = tl_fail(err, TERNLM_ERR_MODEL, "vocabulary of %lld rows is too large", (long long)te->ne[1]);
        else m->hp.n_vocab = (uint32_t)te->ne[1];
    }
    if (!st) st = bind_weight(&b, "token_embd.weight", h->n_embd, m->hp.n_vocab, 1, &m->tok_embd);
    if (!st) st = bind_f32(&b, "output_norm.weight", h->n_embd, 1, &m->output_norm);
    if (!st) st = bind_weight(&b, "output.weight", h->n_embd, m->hp.n_vocab, 0, &m->output);
    if (!st && m->output.data && strcmp(m->arch, "bitnet") == 0)
        tl_log(&m->log, "warning: arch 'bitnet' normally ties its head; using the file's output.weight");
    if (!st && !m->output.data) m->output = m->tok_embd;
    if (!st) st = bind_f32(&b, "rope_freqs.weight", h->n_rot / 2, 0, &m->rope_freqs);
    for (uint32_t i = 0; !st && m->rope_freqs && i < h->n_rot / 2; i++) /* angles are divided by these: cheap to check */
        if (!(isfinite(m->rope_freqs[i]) && m->rope_freqs[i] > 0))
            st = tl_fail(err, TERNLM_ERR_MODEL, "tensor 'rope_freqs.weight': element %u is %g, must be finite and positive", i,
                         (double)m->rope_freqs[i]);
    if (!st) {
        m->layers = calloc(h->n_layer, sizeof *m->layers);
        if (!m->layers) st = tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    }
    for (uint32_t l = 0; l < h->n_layer && !st; l++) st = bind_layer(&b, l, &m->layers[l]);
    for (uint64_t i = 0; i < m->gguf.n_tensors && !st; i++)
        if (!b.used[i]) tl_log(&m->log, "warning: ignoring unexpected tensor '%s'", m->gguf.tensors[i].name);
    free(b.used);
    if (!st && p->head_quant_q8_0) st = requant_head_q8_0(m, err);
    if (!st) {
        snprintf(m->weight_type, sizeof m->weight_type, "%s", tl_type_name(m->layers[0].wq.type));
        snprintf(m->head_type, sizeof m->head_type, "%s", tl_type_name(m->output.type));
    }
    if (!st) st = tl_model_repack(m, p, err);
    return st;
}

/* Where the f16 scales sit in one block of each quantized type (offsets in bytes; -1 ends the list). */
static const int *block_scale_offsets(uint32_t type) {
    static const int q4_0[] = {0, -1}, q8_0[] = {0, -1}, q4_k[] = {0, 2, -1}, q6_k[] = {208, -1}, tq1[] = {52, -1},
                     tq2[] = {64, -1}, q1_2[] = {0, -1};
    switch (type) {
    case TL_Q4_0: return q4_0;
    case TL_Q8_0: return q8_0;
    case TL_Q4_K: return q4_k;
    case TL_Q6_K: return q6_k;
    case TL_TQ1_0: return tq1;
    case TL_TQ2_0: return tq2;
    case TL_Q1_0:
    case TL_Q2_0: return q1_2;
    default: return NULL;
    }
}

static ternlm_status check_block_scales(const gguf_tensor *t, const uint8_t *d, ternlm_error *err) {
    const int *offs = block_scale_offsets(t->type);
    const tl_type_traits *tr = tl_type_get(t->type);
    if (!offs || !tr) return TERNLM_OK;
    for (uint64_t blk = 0, n = t->nbytes / tr->block_bytes; blk < n; blk++)
        for (const int *o = offs; *o >= 0; o++) {
            const uint8_t *p = d + blk * tr->block_bytes + (unsigned)*o;
            if (((p[0] | p[1] << 8) & 0x7C00) == 0x7C00)
                return tl_fail(err, TERNLM_ERR_MODEL, "tensor '%s': block %llu has a scale that is not finite (%s)", t->name,
                               (unsigned long long)blk, tl_type_name(t->type));
        }
    return TERNLM_OK;
}

/* Hyperparameters that load but cannot give meaningful numbers. */
static ternlm_status check_hparams_plausible(const ternlm_model *m, ternlm_error *err) {
    const tl_hparams *h = &m->hp;
    if (!(h->eps < 1.0f)) return tl_fail(err, TERNLM_ERR_MODEL, "norm epsilon %g is implausibly large", (double)h->eps);
    if (!(h->rope_base < 1e12f)) return tl_fail(err, TERNLM_ERR_MODEL, "rope.freq_base %g is implausibly large", (double)h->rope_base);
    for (uint32_t i = 0; m->rope_freqs && i < h->n_rot / 2; i++)
        if (!(m->rope_freqs[i] >= 1e-3f && m->rope_freqs[i] <= 1e6f))
            return tl_fail(err, TERNLM_ERR_MODEL, "tensor 'rope_freqs.weight': element %u is %g, outside 1e-3..1e6", i,
                           (double)m->rope_freqs[i]);
    return TERNLM_OK;
}

/* gguf.md item 23: optional full scan of the weights. */
static ternlm_status check_tensor_values(const ternlm_model *m, ternlm_error *err) {
    ternlm_status st = check_hparams_plausible(m, err);
    if (st) return st;
    for (uint64_t i = 0; i < m->gguf.n_tensors; i++) {
        const gguf_tensor *t = &m->gguf.tensors[i];
        const uint8_t *d = m->data + t->offset;
        const uint64_t n = t->nbytes;
        if ((st = check_block_scales(t, d, err))) return st;
        if (t->type == TL_F32) {
            for (uint64_t j = 0; j + 4 <= n; j += 4) {
                float f;
                memcpy(&f, d + j, 4);
                if (!isfinite(f)) return tl_fail(err, TERNLM_ERR_MODEL, "tensor '%s': element %llu is not finite", t->name, (unsigned long long)(j / 4));
            }
        } else if (t->type == TL_F16 || t->type == TL_BF16) {
            for (uint64_t j = 0; j + 2 <= n; j += 2) {
                const uint16_t v = (uint16_t)(d[j] | d[j + 1] << 8);
                const int bad = t->type == TL_F16 ? (v & 0x7C00) == 0x7C00 : (v & 0x7F80) == 0x7F80;
                if (bad) return tl_fail(err, TERNLM_ERR_MODEL, "tensor '%s': element %llu is not finite", t->name, (unsigned long long)(j / 2));
            }
        } else if (t->type == TL_I2_S) {
            for (uint64_t j = 0; j < n - 32; j++) {
                const uint8_t v = d[j];
                if ((v & 3) == 3 || (v & 12) == 12 || (v & 48) == 48 || (v & 192) == 192)
                    return tl_fail(err, TERNLM_ERR_MODEL, "tensor '%s': invalid I2_S code 3 in byte %llu", t->name, (unsigned long long)j);
            }
            float s;
            memcpy(&s, d + n - 32, 4);
            if (!(isfinite(s) && s > 0)) return tl_fail(err, TERNLM_ERR_MODEL, "tensor '%s': I2_S scale %g is not finite and positive", t->name, (double)s);
        }
    }
    return TERNLM_OK;
}

static void fill_info(ternlm_model *m) {
    ternlm_model_info *i = &m->info;
    const tl_hparams *h = &m->hp;
    i->arch = m->arch;
    i->name = m->name;
    i->gguf_version = m->gguf.version;
    i->n_vocab = h->n_vocab;
    i->n_ctx_train = h->n_ctx_train;
    i->n_embd = h->n_embd;
    i->n_layer = h->n_layer;
    i->n_head = h->n_head;
    i->n_head_kv = h->n_head_kv;
    i->n_ff = h->n_ff;
    i->head_dim = h->head_dim;
    i->rope_freq_base = h->rope_base;
    i->norm_eps = h->eps;
    i->activation = h->act == TL_ACT_RELU2 ? "relu2" : "silu";
    i->rope_style = h->rope == TL_ROPE_NEOX ? "neox" : "norm";
    i->weight_type = m->weight_type;
    i->head_type = m->head_type;
    i->head_tied = m->has_weights && m->output.data == m->tok_embd.data;
    i->repacked_bytes = m->repacked_bytes;
    i->tokenizer = m->tok ? tl_tokenizer_model_name(m->tok) : "none";
    i->pretokenizer = m->tok ? tl_tokenizer_pre_name(m->tok) : "";
    i->bos = m->tok ? tl_tokenizer_bos(m->tok) : -1;
    i->eos = m->tok ? tl_tokenizer_eos(m->tok) : -1;
    i->eot = m->tok ? tl_tokenizer_eot(m->tok) : -1;
    i->add_bos = m->tok ? tl_tokenizer_add_bos(m->tok) : 0;
    i->n_tensors = (uint32_t)m->gguf.n_tensors;
    for (uint64_t t = 0; t < m->gguf.n_tensors; t++) {
        const gguf_tensor *g = &m->gguf.tensors[t];
        i->weight_bytes += g->nbytes;
        i->n_params += (uint64_t)(g->ne[0] * g->ne[1] * g->ne[2] * g->ne[3]);
    }
}

static ternlm_status read_strings(ternlm_model *m, ternlm_error *err) {
    const gguf_kv *kv = gguf_find(&m->gguf, "general.architecture");
    gguf_str s = {"", 0};
    ternlm_status st;
    if (kv && (st = gguf_get_str(kv, &s, err))) return st;
    if (s.len >= sizeof m->arch) return tl_fail(err, TERNLM_ERR_UNSUPPORTED, "architecture name is too long");
    memcpy(m->arch, s.p, s.len);
    m->arch[s.len] = 0;
    kv = gguf_find(&m->gguf, "general.name");
    if (kv && !gguf_get_str(kv, &s, NULL)) snprintf(m->name, sizeof m->name, "%.*s", (int)TL_MIN(s.len, 127), s.p);
    kv = gguf_find(&m->gguf, "split.count");
    uint32_t splits = 1;
    if (kv && (st = gguf_get_u32(kv, &splits, err))) return st;
    if (splits > 1) return tl_fail(err, TERNLM_ERR_UNSUPPORTED, "split GGUF files (%u shards) are not supported; merge them first", splits);
    return TERNLM_OK;
}

ternlm_status tl_model_init(ternlm_model *m, const ternlm_model_params *params, ternlm_error *err) {
    ternlm_model_params defaults = ternlm_model_params_default();
    const ternlm_model_params *p = params ? params : &defaults;
    m->log.fn = p->log;
    m->log.user = p->log_user;
    ternlm_status st = read_strings(m, err);
    if (st) return st;
    if (gguf_find(&m->gguf, "tokenizer.ggml.model")) {
        if ((st = tl_tokenizer_load(&m->tok, &m->gguf, p->pretokenizer, &m->log, err))) return st;
        m->hp.n_vocab = tl_tokenizer_n_vocab(m->tok);
    }
    m->has_weights = m->gguf.n_tensors > 0;
    if (m->has_weights) {
        const arch_desc *a = NULL;
        for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++)
            if (strcmp(m->arch, k_archs[i].name) == 0) a = &k_archs[i];
        if (!a)
            return tl_fail(err, TERNLM_ERR_UNSUPPORTED,
                           "unsupported architecture '%s' (supported: bitnet-b1.58, bitnet-25, bitnet, llama, qwen3)",
                           m->arch[0] ? m->arch : "(missing general.architecture)");
        m->hp.act = a->act;
        m->hp.rope = a->rope;
        m->hp.sub_norms = a->sub_norms;
        m->hp.probs_f16 = a->probs_f16;
        m->hp.head_input_f16 = a->head_input_f16;
        m->hp.qk_norm = a->qk_norm;
        if ((st = read_hparams(m, err)) || (st = read_activation(m, p->activation, err))) return st;
        uint32_t vocab_size;
        const gguf_kv *vs = arch_key(m, "vocab_size");
        if (vs) {
            if ((st = gguf_get_u32(vs, &vocab_size, err))) return st;
            if (m->hp.n_vocab && vocab_size != m->hp.n_vocab)
                return tl_fail(err, TERNLM_ERR_MODEL, "'%s.vocab_size' is %u but the vocabulary has %u tokens", m->arch,
                               vocab_size, m->hp.n_vocab);
            m->hp.n_vocab = vocab_size;
        }
        if ((st = bind_tensors(m, p, err))) return st;
        if (p->check_tensors && (st = check_tensor_values(m, err))) return st;
    }
    fill_info(m);
    return TERNLM_OK;
}

/* ---- opening ---- */

static ternlm_model *model_new(void);

static ternlm_status open_image(ternlm_model *m, const uint8_t *base, uint64_t size, const ternlm_model_params *p,
                                ternlm_error *err) {
    ternlm_status st = gguf_parse(&m->gguf, base, size, size, err);
    if (st == GGUF_NEED_MORE) st = tl_fail(err, TERNLM_ERR_FORMAT, "truncated file");
    if (st) return st;
    m->header = base;
    m->data = base + m->gguf.data_start;
    return tl_model_init(m, p, err);
}

ternlm_status ternlm_model_open_file(const char *path, const ternlm_model_params *params, ternlm_model **out,
                                     ternlm_error *err) {
    if (!path || !out) return tl_fail(err, TERNLM_ERR_ARG, "path and out must not be NULL");
    ternlm_model *m = model_new();
    if (!m) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    ternlm_status st = tl_file_map(path, &m->file, err);
    if (!st) st = open_image(m, m->file.data, m->file.size, params, err);
    if (st) {
        if (err && st != TERNLM_ERR_IO) tl_fail_prefix(err, "%s: ", path);
        ternlm_model_free(m);
        return st;
    }
    *out = m;
    return TERNLM_OK;
}

ternlm_status ternlm_model_open_memory(const void *data, size_t size, const ternlm_model_params *params,
                                       ternlm_model **out, ternlm_error *err) {
    if (!data || !out) return tl_fail(err, TERNLM_ERR_ARG, "data and out must not be NULL");
    if ((uintptr_t)data % 8)
        return tl_fail(err, TERNLM_ERR_ARG, "the model buffer must be at least 8-byte aligned (64 is best)");
    ternlm_model *m = model_new();
    if (!m) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    ternlm_status st = open_image(m, data, size, params, err);
    if (st) {
        ternlm_model_free(m);
        return st;
    }
    *out = m;
    return TERNLM_OK;
}

/* ---- lifetime ---- */

#if defined(__STDC_NO_ATOMICS__)
typedef unsigned tl_count; /* such targets have no threads */
#define COUNT_ADD(p, v) ((void)(*(p) += (v)))
#define COUNT_SUB(p, v) (*(p) -= (v), *(p))
#else
#include <stdatomic.h>
typedef atomic_uint tl_count;
#define COUNT_ADD(p, v) ((void)atomic_fetch_add((p), (v)))
#define COUNT_SUB(p, v) (atomic_fetch_sub((p), (v)) - (v))
#endif

struct tl_refcount {
    tl_count n;
};

/* A fresh model holding its owner's reference. */
static ternlm_model *model_new(void) {
    ternlm_model *m = calloc(1, sizeof *m);
    if (m && !(m->refs = calloc(1, sizeof *m->refs))) {
        free(m);
        return NULL;
    }
    if (m) COUNT_ADD(&m->refs->n, 1u);
    return m;
}

static void model_destroy(ternlm_model *m) {
    tl_tokenizer_free(m->tok);
    tl_model_free_repacked(m); /* before the layers that point at the copies */
    free(m->layers);
    tl_aligned_free(m->head_q8);
    gguf_free(&m->gguf);
    tl_file_unmap(&m->file);
    free(m->owned_header);
    tl_aligned_free(m->owned_data);
    free(m->refs);
    free(m);
}

void tl_model_retain(const ternlm_model *m) { COUNT_ADD(&m->refs->n, 1u); }

void tl_model_release(const ternlm_model *m) {
    if (COUNT_SUB(&m->refs->n, 1u) == 0) model_destroy((ternlm_model *)m); /* the last reference owns it */
}

void ternlm_model_free(ternlm_model *m) {
    if (!m) return;
    const tl_logger log = m->log;
    const unsigned left = COUNT_SUB(&m->refs->n, 1u);
    if (left == 0) {
        model_destroy(m);
        return;
    }
    tl_log(&log, "warning: ternlm_model_free: %u session(s) or text stream(s) still use this model; it is freed with "
                 "the last of them (free them before their model)", left);
}

/* ---- incremental loading ---- */

struct ternlm_loader {
    uint64_t total, received;
    uint8_t *hdr;
    uint64_t hdr_cap, hdr_len, next_parse;
    int header_done;
    gguf_file g;
    uint8_t *data;
    ternlm_status failed;
    ternlm_error failure;
};

ternlm_status ternlm_loader_new(uint64_t total_size, ternlm_loader **out, ternlm_error *err) {
    if (!out) return tl_fail(err, TERNLM_ERR_ARG, "out must not be NULL");
    ternlm_loader *ld = calloc(1, sizeof *ld);
    if (!ld) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    ld->total = total_size;
    ld->next_parse = TL_MIN(total_size, (uint64_t)1 << 16);
    *out = ld;
    return TERNLM_OK;
}

void *ternlm_loader_buffer(ternlm_loader *ld, size_t *capacity) {
    *capacity = 0;
    if (!ld || ld->failed || ld->received >= ld->total) return NULL;
    if (ld->header_done) {
        /* invariant: the header phase ends only once data_start bytes arrived, so off is inside the buffer
         * and capacity ends exactly at its end (data_size = total - data_start) */
        if (ld->received < ld->g.data_start) return NULL;
        const uint64_t off = ld->received - ld->g.data_start;
        *capacity = (size_t)TL_MIN(ld->total - ld->received, (uint64_t)SIZE_MAX);
        return ld->data + off;
    }
    /* grow the header buffer geometrically, never past the file */
    if (ld->hdr_len == ld->hdr_cap) {
        const uint64_t cap = TL_MIN(ld->total, TL_MAX(ld->hdr_cap * 2, (uint64_t)1 << 16));
        if (cap > SIZE_MAX) return NULL;
        uint8_t *p = realloc(ld->hdr, (size_t)cap);
        if (!p) return NULL;
        ld->hdr = p;
        ld->hdr_cap = cap;
    }
    *capacity = (size_t)(ld->hdr_cap - ld->hdr_len);
    return ld->hdr + ld->hdr_len;
}

static ternlm_status loader_header_complete(ternlm_loader *ld, ternlm_error *err) {
    /* Shrink the header buffer to the header, re-parse so pointers refer to it, then move the data bytes
     * that came with the header into the data buffer. */
    const uint64_t start = ld->g.data_start, extra = ld->hdr_len - TL_MIN(ld->hdr_len, start);
    const uint64_t data_size = ld->total - start;
    if (data_size > SIZE_MAX - 128) return tl_fail(err, TERNLM_ERR_NOMEM, "%llu bytes of tensor data do not fit in memory", (unsigned long long)data_size);
    ld->data = tl_aligned_alloc_uninit((size_t)data_size); /* finish() requires every byte */
    if (!ld->data) return tl_fail(err, TERNLM_ERR_NOMEM, "cannot allocate %llu bytes for tensor data", (unsigned long long)data_size);
    if (extra) memcpy(ld->data, ld->hdr + start, (size_t)extra);
    gguf_free(&ld->g);
    uint8_t *h = realloc(ld->hdr, (size_t)TL_MAX(start, 1));
    if (h) ld->hdr = h;
    ld->hdr_cap = ld->hdr_len = start;
    ternlm_status st = gguf_parse(&ld->g, ld->hdr, start, ld->total, err);
    if (st == GGUF_NEED_MORE) st = tl_fail(err, TERNLM_ERR_FORMAT, "internal error: header re-parse needs more data");
    if (st) return st;
    ld->header_done = 1;
    return TERNLM_OK;
}

ternlm_status ternlm_loader_commit(ternlm_loader *ld, size_t n, ternlm_error *err) {
    if (!ld) return tl_fail(err, TERNLM_ERR_ARG, "loader is NULL");
    if (ld->failed) {
        if (err) *err = ld->failure;
        return ld->failed;
    }
    if (n > ld->total - ld->received)
        return tl_fail(err, TERNLM_ERR_ARG, "received more bytes (%llu) than the announced size %llu",
                       (unsigned long long)(ld->received + n), (unsigned long long)ld->total);
    ld->received += n;
    if (ld->header_done) return TERNLM_OK;
    ld->hdr_len += n;
    if (ld->hdr_len < ld->next_parse && ld->hdr_len < ld->total) return TERNLM_OK;
    ternlm_status st = gguf_parse(&ld->g, ld->hdr, ld->hdr_len, ld->total, &ld->failure);
    if (st == GGUF_NEED_MORE) {
        ld->next_parse = TL_MIN(ld->total, ld->hdr_len * 2);
        return TERNLM_OK;
    }
    if (!st && ld->hdr_len < ld->g.data_start) {
        /* The header is complete but the alignment padding after it is not: keep buffering until the data
         * section starts, so the data buffer only ever receives bytes at or after data_start. */
        ld->next_parse = ld->g.data_start;
        gguf_free(&ld->g);
        return TERNLM_OK;
    }
    if (!st) st = loader_header_complete(ld, &ld->failure);
    if (st) {
        ld->failed = st;
        ld->failure.code = st;
        if (err) *err = ld->failure;
    }
    return st;
}

ternlm_status ternlm_loader_push(ternlm_loader *ld, const void *bytes, size_t n, ternlm_error *err) {
    const uint8_t *src = bytes;
    while (n > 0) {
        size_t cap;
        void *dst = ternlm_loader_buffer(ld, &cap);
        if (!dst) {
            if (ld && ld->failed) return ternlm_loader_commit(ld, 0, err);
            if (ld && ld->received >= ld->total)
                return tl_fail(err, TERNLM_ERR_ARG, "received more bytes than the announced size %llu", (unsigned long long)ld->total);
            return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory buffering the GGUF header");
        }
        const size_t k = n < cap ? n : cap;
        memcpy(dst, src, k);
        ternlm_status st = ternlm_loader_commit(ld, k, err);
        if (st) return st;
        src += k;
        n -= k;
    }
    return TERNLM_OK;
}

uint64_t ternlm_loader_received(const ternlm_loader *ld) { return ld ? ld->received : 0; }

ternlm_status ternlm_loader_finish(ternlm_loader *ld, const ternlm_model_params *params, ternlm_model **out,
                                   ternlm_error *err) {
    if (!ld || !out) return tl_fail(err, TERNLM_ERR_ARG, "loader and out must not be NULL");
    if (ld->failed) return ternlm_loader_commit(ld, 0, err);
    if (ld->received != ld->total || !ld->header_done)
        return tl_fail(err, TERNLM_ERR_FORMAT, "truncated file: received %llu of %llu bytes",
                       (unsigned long long)ld->received, (unsigned long long)ld->total);
    ternlm_model *m = model_new();
    if (!m) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    m->gguf = ld->g;
    m->owned_header = ld->hdr;
    m->owned_data = ld->data;
    m->header = ld->hdr;
    m->data = ld->data;
    memset(&ld->g, 0, sizeof ld->g);
    ld->hdr = NULL;
    ld->data = NULL;
    ld->failed = TERNLM_ERR_ARG; /* the loader is spent */
    snprintf(ld->failure.message, sizeof ld->failure.message, "the loader has already finished");
    ternlm_status st = tl_model_init(m, params, err);
    if (st) {
        ternlm_model_free(m);
        return st;
    }
    *out = m;
    return TERNLM_OK;
}

void ternlm_loader_free(ternlm_loader *ld) {
    if (!ld) return;
    gguf_free(&ld->g);
    free(ld->hdr);
    tl_aligned_free(ld->data);
    free(ld);
}

/* ---- metadata and tensor table ---- */

const ternlm_model_info *ternlm_model_get_info(const ternlm_model *m) { return m ? &m->info : NULL; }
uint64_t ternlm_model_meta_count(const ternlm_model *m) { return m ? m->gguf.n_kv : 0; }

ternlm_status ternlm_model_meta_key(const ternlm_model *m, uint64_t i, char *buf, size_t cap) {
    if (!m || i >= m->gguf.n_kv || !buf || !cap) return TERNLM_ERR_ARG;
    const gguf_kv *kv = &m->gguf.kv[i];
    snprintf(buf, cap, "%.*s", (int)TL_MIN(kv->key.len, (uint64_t)INT32_MAX), kv->key.p);
    return TERNLM_OK;
}

static void scalar_text(uint32_t type, const uint8_t *p, char *buf, size_t cap) {
    gguf_kv tmp = {{"", 0}, GGUF_ARRAY, type, 1, p};
    const double v = gguf_arr_num(&tmp, 0);
    if (type == GGUF_F32 || type == GGUF_F64) snprintf(buf, cap, "%g", v);
    else if (type == GGUF_BOOL) snprintf(buf, cap, "%s", v != 0 ? "true" : "false");
    else snprintf(buf, cap, "%.0f", v);
}

ternlm_status ternlm_model_meta_value_text(const ternlm_model *m, uint64_t i, char *buf, size_t cap) {
    if (!m || i >= m->gguf.n_kv || !buf || !cap) return TERNLM_ERR_ARG;
    const gguf_kv *kv = &m->gguf.kv[i];
    if (kv->type == GGUF_STRING) {
        gguf_str s;
        gguf_get_str(kv, &s, NULL);
        snprintf(buf, cap, "%.*s", (int)TL_MIN(s.len, (uint64_t)INT32_MAX), s.p);
    } else if (kv->type == GGUF_ARRAY) {
        char first[64] = "";
        if (kv->arr_n && kv->arr_type == GGUF_STRING) {
            uint64_t pos = 0;
            gguf_str s = gguf_arr_next_str(kv, &pos);
            snprintf(first, sizeof first, "\"%.*s\", ...", (int)TL_MIN(s.len, 40), s.p);
        } else if (kv->arr_n) {
            scalar_text(kv->arr_type, kv->val, first, 48);
            strcat(first, ", ...");
        }
        snprintf(buf, cap, "[%s x %llu] %s", gguf_vtype_name(kv->arr_type), (unsigned long long)kv->arr_n, first);
    } else {
        scalar_text(kv->type, kv->val, buf, cap);
    }
    return TERNLM_OK;
}

const char *ternlm_model_meta_string(const ternlm_model *m, const char *key, size_t *len) {
    const gguf_kv *kv = m && key ? gguf_find(&m->gguf, key) : NULL;
    gguf_str s;
    if (!kv || gguf_get_str(kv, &s, NULL)) return NULL;
    if (len) *len = (size_t)s.len;
    return s.p;
}

uint32_t ternlm_model_tensor_count(const ternlm_model *m) { return m ? (uint32_t)m->gguf.n_tensors : 0; }

ternlm_status ternlm_model_tensor(const ternlm_model *m, uint32_t i, ternlm_tensor_info *out) {
    if (!m || i >= m->gguf.n_tensors || !out) return TERNLM_ERR_ARG;
    const gguf_tensor *t = &m->gguf.tensors[i];
    out->name = t->name;
    out->type = tl_type_name(t->type);
    out->n_dims = t->n_dims;
    memcpy(out->ne, t->ne, sizeof out->ne);
    out->offset = t->offset;
    out->nbytes = t->nbytes;
    return TERNLM_OK;
}

uint32_t ternlm_cpu_cores(void) { return tl_physical_cores(); }
