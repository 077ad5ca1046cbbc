/* ternlm synth --shape 2b4t|0.7b|3b|tiny|bonsai-1.7b|bonsai-8b [--type q1_0|q2_0] --out FILE [--seed S] [--vocab GGUF]
 * Writes a random-weight GGUF with the keys, tensor names, shapes and types of a real model, so anyone can
 * benchmark without a download. The tokenizer is synthetic (a valid byte-level BPE or SentencePiece vocabulary
 * of the real size) unless --vocab copies the tokenizer.* keys from another GGUF. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "tensor_types.h"
#include "ternlm.h"

typedef struct shape {
    const char *name, *arch, *gen_name;
    uint32_t n_embd, n_layer, n_ff, n_head, n_head_kv, n_vocab, ctx;
    float rope_base;
    int spm;            /* SentencePiece vocabulary (else Llama 3 style BPE) */
    uint32_t lin_type;  /* type of the linear layers */
    uint32_t file_type;
    uint32_t head_dim;  /* qwen3 (Bonsai): attention.key_length; 0: n_embd / n_head */
    int untied;         /* qwen3: a separate output.weight */
} shape;

static const shape k_shapes[] = {
    /* microsoft/bitnet-b1.58-2B-4T-gguf ggml-model-i2_s.gguf */
    {"2b4t", "bitnet-b1.58", "bitnet2b", 2560, 30, 6912, 20, 5, 128256, 4096, 500000.0f, 0, TL_I2_S, 40, 0, 0},
    /* 1bitLLM/bitnet_b1_58-large as bitnet.cpp converts it */
    {"0.7b", "bitnet", "bitnet_b1_58-large", 1536, 24, 4096, 16, 16, 32000, 2048, 10000.0f, 1, TL_I2_S, 40, 0, 0},
    /* 1bitLLM/bitnet_b1_58-3B through llama-quantize TQ2_0: rows of 3200/8640 fall back to Q4_0 */
    {"3b", "bitnet", "bitnet_b1_58-3B", 3200, 26, 8640, 32, 32, 32000, 2048, 10000.0f, 1, TL_Q4_0, 37, 0, 0},
    /* a small model of the 2B4T architecture for quick runs */
    {"tiny", "bitnet-b1.58", "bitnet-tiny", 256, 4, 768, 4, 1, 128256, 4096, 500000.0f, 0, TL_I2_S, 40, 0, 0},
    /* PrismML Bonsai-1.7B / Bonsai-8B (Qwen3; every 2-D tensor Q1_0, or Q2_0 with --type q2_0; 8B is untied) */
    {"bonsai-1.7b", "qwen3", "Bonsai-1.7B", 2048, 28, 6144, 16, 8, 151936, 32768, 1000000.0f, 0, TL_Q1_0, 40, 128, 0},
    {"bonsai-8b", "qwen3", "Bonsai-8B", 4096, 36, 12288, 32, 8, 151936, 65536, 1000000.0f, 0, TL_Q1_0, 40, 128, 1},
};

typedef struct writer {
    FILE *f;
    uint64_t rng;
    int failed;
} writer;

static uint64_t next(writer *w) {
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

static void wr(writer *w, const void *p, size_t n) {
    if (fwrite(p, 1, n, w->f) != n) w->failed = 1;
}
static void w_u32(writer *w, uint32_t v) { wr(w, &v, 4); }
static void w_u64(writer *w, uint64_t v) { wr(w, &v, 8); }
static void w_str(writer *w, const char *s, size_t n) { w_u64(w, n); wr(w, s, n); }
static void w_key(writer *w, const char *k, uint32_t type) { w_str(w, k, strlen(k)); w_u32(w, type); }
static void kv_u32(writer *w, const char *k, uint32_t v) { w_key(w, k, 4); w_u32(w, v); }
static void kv_f32(writer *w, const char *k, float v) { w_key(w, k, 6); wr(w, &v, 4); }
static void kv_str(writer *w, const char *k, const char *v) { w_key(w, k, 8); w_str(w, v, strlen(v)); }
static void kv_bool(writer *w, const char *k, int v) { w_key(w, k, 7); const uint8_t b = (uint8_t)v; wr(w, &b, 1); }

/* ---- synthetic vocabularies ---- */

typedef struct vocab {
    char **tok;
    uint32_t n, n_merges;
    char **merges;
} vocab;

static char *dupn(const char *s, size_t n) {
    char *p = malloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* A set of strings, to keep synthetic token texts unique. */
typedef struct strset {
    char **slot;
    uint64_t cap;
} strset;

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int set_add(strset *set, char *s) {
    for (uint64_t i = fnv(s) & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
        if (!set->slot[i]) return set->slot[i] = s, 1;
        if (!strcmp(set->slot[i], s)) return 0;
    }
}

/* Llama 3 layout: 128000 BPE tokens (256 byte characters, then merges "a b" of earlier tokens) + 256 specials. */
static void bpe_vocab(vocab *v, uint32_t n_vocab, writer *w) {
    v->tok = calloc(n_vocab, sizeof *v->tok);
    v->merges = calloc(n_vocab, sizeof *v->merges);
    v->n = n_vocab;
    strset set = {calloc(1u << 19, sizeof(char *)), 1u << 19};
    const uint32_t n_bpe = n_vocab - 256;
    uint32_t k = 0;
    for (uint32_t b = 0; b < 256; b++) {
        const int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        const uint32_t cp = printable ? b : 0x100 + k++;
        char s[3];
        int l = cp < 0x80 ? (s[0] = (char)cp, 1) : (s[0] = (char)(0xC0 | cp >> 6), s[1] = (char)(0x80 | (cp & 0x3F)), 2);
        v->tok[b] = dupn(s, (size_t)l);
        set_add(&set, v->tok[b]);
    }
    for (uint32_t i = 256; i < n_bpe;) {
        const uint64_t r = next(w) * 0x2545F4914F6CDD1Dull; /* xorshift* output: high bits are well mixed */
        const uint32_t a = (uint32_t)((r >> 40) % (i < 8192 ? i : 8192)), b = (uint32_t)(r >> 56);
        char buf[128], mb[256];
        snprintf(buf, sizeof buf, "%s%s", v->tok[a], v->tok[b]);
        if (strlen(buf) > 40) continue;
        char *t = dupn(buf, strlen(buf));
        if (!set_add(&set, t)) {
            free(t);
            continue;
        }
        snprintf(mb, sizeof mb, "%s %s", v->tok[a], v->tok[b]);
        v->tok[i++] = t;
        v->merges[v->n_merges++] = dupn(mb, strlen(mb));
    }
    free(set.slot);
    static const char *names[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                                  "<|reserved_special_token_1|>", "<|reserved_special_token_2|>",
                                  "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
                                  "<|reserved_special_token_4|>", "<|eot_id|>"};
    for (uint32_t i = 0; i < 256; i++) {
        char buf[64];
        if (i < 10) snprintf(buf, sizeof buf, "%s", names[i]);
        else snprintf(buf, sizeof buf, "<|reserved_special_token_%u|>", i - 5);
        v->tok[n_bpe + i] = dupn(buf, strlen(buf));
    }
}

/* LLaMA-2 SentencePiece layout: <unk> <s> </s>, 256 byte tokens, then ▁-words. */
static void spm_vocab(vocab *v, uint32_t n_vocab) {
    v->tok = calloc(n_vocab, sizeof *v->tok);
    v->n = n_vocab;
    v->tok[0] = dupn("<unk>", 5);
    v->tok[1] = dupn("<s>", 3);
    v->tok[2] = dupn("</s>", 4);
    for (uint32_t b = 0; b < 256; b++) {
        char buf[8];
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        v->tok[3 + b] = dupn(buf, 6);
    }
    for (uint32_t i = 259; i < n_vocab; i++) {
        char buf[32];
        if (i < 259 + 94) snprintf(buf, sizeof buf, "%c", (char)(33 + i - 259)); /* '!' .. '~' */
        else snprintf(buf, sizeof buf, "\xe2\x96\x81w%u", i);
        v->tok[i] = dupn(buf, strlen(buf));
    }
}

static void free_vocab(vocab *v) {
    for (uint32_t i = 0; i < v->n; i++) free(v->tok[i]);
    for (uint32_t i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->tok);
    free(v->merges);
}

static void write_tokenizer(writer *w, const shape *s, const vocab *v) {
    kv_str(w, "tokenizer.ggml.model", s->spm ? "llama" : "gpt2");
    w_key(w, "tokenizer.ggml.tokens", 9);
    w_u32(w, 8);
    w_u64(w, v->n);
    for (uint32_t i = 0; i < v->n; i++) w_str(w, v->tok[i], strlen(v->tok[i]));
    w_key(w, "tokenizer.ggml.scores", 9);
    w_u32(w, 6);
    w_u64(w, v->n);
    for (uint32_t i = 0; i < v->n; i++) {
        const float sc = s->spm ? -(float)i : 0.0f;
        wr(w, &sc, 4);
    }
    w_key(w, "tokenizer.ggml.token_type", 9);
    w_u32(w, 5);
    w_u64(w, v->n);
    for (uint32_t i = 0; i < v->n; i++) {
        uint32_t t = 1;
        if (s->spm) t = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
        else if (i >= v->n - 256) t = 3;
        w_u32(w, t);
    }
    if (!s->spm) {
        w_key(w, "tokenizer.ggml.merges", 9);
        w_u32(w, 8);
        w_u64(w, v->n_merges);
        for (uint32_t i = 0; i < v->n_merges; i++) w_str(w, v->merges[i], strlen(v->merges[i]));
    }
}

/* ---- tensors ---- */

typedef struct tinfo {
    char name[64];
    uint32_t type;
    uint64_t ne0, ne1, nbytes, offset;
} tinfo;

static void add(tinfo *t, int *n, const char *name, uint32_t type, uint64_t ne0, uint64_t ne1) {
    tinfo *x = &t[(*n)++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->type = type;
    x->ne0 = ne0;
    x->ne1 = ne1;
    x->nbytes = tl_type_nbytes(type, ne0 * ne1);
}

/* qwen3 (bitnet-architectures.md §8): per-head q/k norms, no sub-norms, Q width n_head·head_dim. */
static int layout_qwen3(const shape *s, uint32_t type, tinfo *t) {
    int n = 0;
    char name[64];
    const uint64_t e = s->n_embd, hd = s->head_dim, q = hd * s->n_head, kv = hd * s->n_head_kv, ff = s->n_ff;
    if (s->untied) add(t, &n, "output.weight", type, e, s->n_vocab);
    add(t, &n, "output_norm.weight", TL_F32, e, 1);
    add(t, &n, "token_embd.weight", type, e, s->n_vocab);
    for (uint32_t l = 0; l < s->n_layer; l++) {
#define T(suffix, ty, a, b) (snprintf(name, sizeof name, "blk.%u." suffix, l), add(t, &n, name, ty, a, b))
        T("attn_k.weight", type, e, kv);
        T("attn_k_norm.weight", TL_F32, hd, 1);
        T("attn_norm.weight", TL_F32, e, 1);
        T("attn_output.weight", type, q, e);
        T("attn_q.weight", type, e, q);
        T("attn_q_norm.weight", TL_F32, hd, 1);
        T("attn_v.weight", type, e, kv);
        T("ffn_down.weight", type, ff, e);
        T("ffn_gate.weight", type, e, ff);
        T("ffn_norm.weight", TL_F32, e, 1);
        T("ffn_up.weight", type, e, ff);
#undef T
    }
    return n;
}

static int layout(const shape *s, uint32_t type, tinfo *t) {
    if (!strcmp(s->arch, "qwen3")) return layout_qwen3(s, type, t);
    int n = 0;
    char name[64];
    const uint64_t e = s->n_embd, kv = (uint64_t)s->n_embd / s->n_head * s->n_head_kv, ff = s->n_ff;
    add(t, &n, "token_embd.weight", TL_F16, e, s->n_vocab);
    add(t, &n, "output_norm.weight", TL_F32, e, 1);
    for (uint32_t l = 0; l < s->n_layer; l++) {
#define T(suffix, type, a, b) (snprintf(name, sizeof name, "blk.%u." suffix, l), add(t, &n, name, type, a, b))
        T("attn_norm.weight", TL_F32, e, 1);
        T("attn_q.weight", s->lin_type, e, e);
        T("attn_k.weight", s->lin_type, e, kv);
        T("attn_v.weight", s->lin_type, e, kv);
        T("attn_sub_norm.weight", TL_F32, e, 1);
        T("attn_output.weight", s->lin_type, e, e);
        T("ffn_norm.weight", TL_F32, e, 1);
        T("ffn_gate.weight", s->lin_type, e, ff);
        T("ffn_up.weight", s->lin_type, e, ff);
        T("ffn_sub_norm.weight", TL_F32, ff, 1);
        T("ffn_down.weight", s->lin_type, ff, e);
#undef T
    }
    return n;
}

static void fill_bytes(writer *w, uint8_t *buf, size_t k, uint32_t type) {
    for (size_t i = 0; i < k; i++) {
        const uint64_t r = next(w);
        if (type == TL_I2_S) { /* four codes 0..2 per byte, 40% of them 1 (a zero weight) */
            uint8_t v = 0;
            for (int s = 0; s < 4; s++) {
                const uint32_t x = (uint32_t)((r >> (8 * s + 8)) % 10);
                v = (uint8_t)(v << 2 | (x < 3 ? 0 : x < 7 ? 1 : 2));
            }
            buf[i] = v;
        } else {
            buf[i] = (uint8_t)(r >> 32);
        }
    }
}

/* TQ2_0 / TQ1_0 blocks of a true ternary matrix: random codes (40% zeros, as I2_S above), d = the tensor scale. */
static void fill_tq_block(writer *w, uint8_t *b, uint32_t type) {
    const uint16_t d = tl_f32_to_f16(0.05f);
    if (type == TL_TQ2_0) {
        for (int i = 0; i < 64; i++) {
            const uint64_t r = next(w);
            uint8_t v = 0;
            for (int s = 0; s < 4; s++) {
                const uint32_t x = (uint32_t)((r >> (8 * s + 8)) % 10);
                v = (uint8_t)(v | (x < 3 ? 0 : x < 7 ? 1 : 2) << (2 * s));
            }
            b[i] = v;
        }
        b[64] = (uint8_t)d, b[65] = (uint8_t)(d >> 8);
    } else { /* 5 trits per byte (4 in qh), stored as ceil(v·256/243) (quant-formats.md §3) */
        for (int i = 0; i < 52; i++) {
            const uint64_t r = next(w);
            uint32_t v = 0;
            for (int n = 0; n < 5; n++) {
                const uint32_t x = (uint32_t)((r >> (8 * n + 8)) % 10);
                v = v * 3 + (i >= 48 && n == 4 ? 0 : x < 3 ? 0 : x < 7 ? 1 : 2);
            }
            b[i] = (uint8_t)((v * 256 + 242) / 243);
        }
        b[52] = (uint8_t)d, b[53] = (uint8_t)(d >> 8);
    }
}

static void write_data(writer *w, const tinfo *t) {
    const size_t chunk = (1u << 20) / 2304 * 2304; /* whole blocks of every type */
    uint8_t *buf = malloc(chunk);
    const uint64_t n = t->ne0 * t->ne1;
    if (t->type == TL_F32 || t->type == TL_F16) {
        for (uint64_t i = 0; i < n; i++) {
            const float v = t->type == TL_F32 ? 0.5f + (float)(next(w) >> 40) / (float)(1 << 24) /* norms: 0.5..1.5 */
                                               : ((float)((next(w) >> 40) % 20001) - 10000.0f) * 2.5e-5f;
            if (t->type == TL_F32) wr(w, &v, 4);
            else { const uint16_t h = tl_f32_to_f16(v); wr(w, &h, 2); }
        }
        free(buf);
        return;
    }
    if (t->type == TL_TQ2_0 || t->type == TL_TQ1_0) {
        const size_t bb = t->type == TL_TQ2_0 ? 66 : 54;
        for (uint64_t blk = 0; blk < n / 256; blk++) {
            fill_tq_block(w, buf, t->type);
            wr(w, buf, bb);
        }
        free(buf);
        return;
    }
    uint64_t left = t->type == TL_I2_S ? n / 4 : t->nbytes;
    while (left > 0) {
        const size_t k = (size_t)(left < chunk ? left : chunk);
        fill_bytes(w, buf, k, t->type);
        if (t->type == TL_Q4_0 || t->type == TL_Q1_0 || t->type == TL_Q2_0) /* every block's f16 scale small and finite */
            for (size_t b = 0; b + 18 <= k; b += 18) buf[b] = 0x00, buf[b + 1] = 0x20;
        wr(w, buf, k);
        left -= k;
    }
    if (t->type == TL_I2_S) { /* the tail: the tensor scale, then padding */
        uint8_t tail[32] = {0};
        const float scale = 0.05f;
        memcpy(tail, &scale, 4);
        wr(w, tail, 32);
    }
    free(buf);
}

int cmd_synth(int argc, char **argv) {
    const char *shape_name = NULL, *out = NULL, *type_name = NULL;
    uint64_t seed = 1;
    const opt opts[] = {
        {"--shape", NULL, OPT_STR, &shape_name, "2b4t (1.18 GB, I2_S), 0.7b, 3b, tiny, bonsai-1.7b (Q1_0 0.29 GB) or bonsai-8b"},
        {"--out", "-o", OPT_STR, &out, "output GGUF path"},
        {"--seed", "-s", OPT_U64, &seed, "random seed (default 1)"},
        {"--type", NULL, OPT_STR, &type_name, "linear layers: i2_s, tq2_0 or tq1_0 (BitNet shapes); q1_0 (Bonsai) or q2_0 (Ternary-Bonsai) for bonsai shapes; default: the shape's"},
        {0},
    };
    const cmd_spec spec = {"synth", "--shape 2b4t|0.7b|3b|tiny|bonsai-1.7b|bonsai-8b [--type i2_s|tq2_0|tq1_0|q1_0|q2_0] --out FILE [--seed S]",
                           "Write a random-weight GGUF with the exact keys, tensor names, shapes and types of a real model.",
                           opts, 0};
    const char *pos[1];
    int n_pos, rc = args_parse(&spec, argc, argv, pos, &n_pos);
    if (rc) return rc == ARGS_HELP ? 0 : rc;
    const shape *s = NULL;
    for (size_t i = 0; shape_name && i < sizeof k_shapes / sizeof k_shapes[0]; i++)
        if (!strcmp(shape_name, k_shapes[i].name)) s = &k_shapes[i];
    if (!s || !out) {
        fprintf(stderr, "ternlm synth: --shape (2b4t, 0.7b, 3b, tiny, bonsai-1.7b or bonsai-8b) and --out are required\n");
        return EXIT_USAGE;
    }
    const int qwen3 = !strcmp(s->arch, "qwen3");
    uint32_t type = s->lin_type;
    shape custom;
    if (type_name && qwen3) {
        if (strcmp(type_name, "q1_0") && strcmp(type_name, "q2_0")) {
            fprintf(stderr, "ternlm synth: --type must be q1_0 or q2_0 with a bonsai shape\n");
            return EXIT_USAGE;
        }
        type = type_name[1] == '1' ? TL_Q1_0 : TL_Q2_0;
    } else if (type_name) { /* llama.cpp's file types: MOSTLY_TQ1_0 = 36, MOSTLY_TQ2_0 = 37; bitnet.cpp's I2_S = 40 */
        static const struct { const char *name; uint32_t type, file_type; } types[] = {
            {"i2_s", TL_I2_S, 40}, {"tq2_0", TL_TQ2_0, 37}, {"tq1_0", TL_TQ1_0, 36}};
        size_t i = 0;
        while (i < 3 && strcmp(type_name, types[i].name)) i++;
        const uint32_t blk = i < 3 && types[i].type == TL_I2_S ? 128 : 256;
        if (i == 3 || s->n_embd % blk || s->n_ff % blk) {
            fprintf(stderr, "ternlm synth: --type must be i2_s, tq2_0 or tq1_0, with rows that are whole blocks (%s: %u, %u)\n",
                    s->name, s->n_embd, s->n_ff);
            return EXIT_USAGE;
        }
        custom = *s;
        custom.lin_type = types[i].type;
        custom.file_type = types[i].file_type;
        s = &custom;
        type = s->lin_type;
    }
    writer w = {fopen(out, "wb"), seed * 0x9E3779B97F4A7C15ull | 1, 0};
    if (!w.f) {
        fprintf(stderr, "ternlm synth: cannot create '%s'\n", out);
        return EXIT_RUNTIME;
    }
    tinfo *t = calloc(3 + 11 * s->n_layer, sizeof *t);
    const int nt = layout(s, type, t);
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        t[i].offset = off;
        off += (t[i].nbytes + 31) / 32 * 32;
    }
    vocab v = {0};
    if (s->spm) spm_vocab(&v, s->n_vocab);
    else bpe_vocab(&v, s->n_vocab, &w);
    char key[128];
    wr(&w, "GGUF", 4);
    w_u32(&w, 3);
    w_u64(&w, (uint64_t)nt);
    const int n_kv = 14 + (s->spm ? 4 : 5) + 2 + 1 + 1 + (qwen3 ? 3 : 0); /* + qwen3: key/value length, pre */
    w_u64(&w, (uint64_t)n_kv);
    kv_str(&w, "general.architecture", s->arch);
    kv_str(&w, "general.name", s->gen_name);
#define HP(k, v) (snprintf(key, sizeof key, "%s." k, s->arch), kv_u32(&w, key, v))
    HP("vocab_size", s->n_vocab);
    HP("context_length", s->ctx);
    HP("embedding_length", s->n_embd);
    HP("block_count", s->n_layer);
    HP("feed_forward_length", s->n_ff);
    HP("rope.dimension_count", s->head_dim ? s->head_dim : s->n_embd / s->n_head);
    if (qwen3) HP("attention.key_length", s->head_dim);
    if (qwen3) HP("attention.value_length", s->head_dim);
    HP("attention.head_count", s->n_head);
    HP("attention.head_count_kv", s->n_head_kv);
#undef HP
    kv_bool(&w, "tokenizer.ggml.add_bos_token", !qwen3);
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", s->arch);
    kv_f32(&w, key, qwen3 ? 1e-6f : 1e-5f);
    if (qwen3) kv_str(&w, "tokenizer.ggml.pre", "qwen2");
    snprintf(key, sizeof key, "%s.rope.freq_base", s->arch);
    kv_f32(&w, key, s->rope_base);
    kv_u32(&w, "general.file_type", s->file_type);
    write_tokenizer(&w, s, &v); /* model, tokens, scores, token_type (+ merges) */
    kv_u32(&w, "tokenizer.ggml.bos_token_id", s->spm ? 1 : qwen3 ? s->n_vocab - 256 : 128000);
    kv_u32(&w, "tokenizer.ggml.eos_token_id", s->spm ? 2 : qwen3 ? s->n_vocab - 255 : 128001);
    if (s->spm) kv_u32(&w, "tokenizer.ggml.unknown_token_id", 0);
    else kv_u32(&w, "tokenizer.ggml.padding_token_id", qwen3 ? s->n_vocab - 256 : 128001);
    kv_u32(&w, "general.quantization_version", 2);
    free_vocab(&v);
    for (int i = 0; i < nt; i++) {
        w_str(&w, t[i].name, strlen(t[i].name));
        w_u32(&w, t[i].ne1 == 1 ? 1 : 2);
        w_u64(&w, t[i].ne0);
        if (t[i].ne1 != 1) w_u64(&w, t[i].ne1);
        w_u32(&w, t[i].type);
        w_u64(&w, t[i].offset);
    }
    long pos_now = ftell(w.f);
    static const uint8_t zeros[32] = {0};
    wr(&w, zeros, (size_t)((32 - pos_now % 32) % 32));
    for (int i = 0; i < nt && !w.failed; i++) {
        write_data(&w, &t[i]);
        wr(&w, zeros, (size_t)((32 - t[i].nbytes % 32) % 32));
    }
    free(t);
    if (fclose(w.f) || w.failed) {
        fprintf(stderr, "ternlm synth: writing '%s' failed (disk full?)\n", out);
        return EXIT_RUNTIME;
    }
    fprintf(stderr, "ternlm synth: wrote %s (%s shape, %d tensors, %.1f MB of tensor data)\n", out, s->name, nt, (double)off / 1e6);
    return 0;
}
