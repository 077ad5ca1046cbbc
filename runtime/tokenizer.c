/* Vocabulary loading, special-token splitting, and the public tokenize / detokenize API. */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "unicode.h"

/* ---- ids ---- */

void tl_ids_push(tl_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        const size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v) {
            ids->oom = 1;
            return;
        }
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
}

/* ---- string -> id map ---- */

static uint64_t hash_str(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

int32_t tl_strmap_get(const tl_tokenizer *t, const char *s, size_t len) {
    const tl_strmap *m = &t->map;
    for (uint64_t i = hash_str(s, len) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        const int32_t id = m->slots[i];
        if (id < 0) return -1;
        if (t->text[id].len == len && memcmp(t->text[id].p, s, len) == 0) return id;
    }
}

static uint64_t strmap_build(tl_tokenizer *t) {
    tl_strmap *m = &t->map;
    uint64_t dups = 0;
    m->cap = 16;
    while (m->cap < 2ull * t->n_vocab) m->cap <<= 1;
    m->slots = malloc(m->cap * sizeof *m->slots);
    if (!m->slots) return UINT64_MAX;
    memset(m->slots, 0xFF, m->cap * sizeof *m->slots);
    for (uint32_t id = 0; id < t->n_vocab; id++) {
        const tl_piece *p = &t->text[id];
        for (uint64_t i = hash_str(p->p, p->len) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
            const int32_t o = m->slots[i];
            if (o < 0) {
                m->slots[i] = (int32_t)id;
                break;
            }
            if (t->text[o].len == p->len && memcmp(t->text[o].p, p->p, p->len) == 0) {
                dups++; /* keep the first id */
                break;
            }
        }
    }
    return dups;
}

int32_t tl_tokenizer_find(const tl_tokenizer *t, const char *text, size_t len) { return tl_strmap_get(t, text, len); }

/* ---- loading ---- */

static ternlm_status read_token_id(const gguf_file *g, const char *key, uint32_t n_vocab, int32_t *out, ternlm_error *err) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return TERNLM_OK;
    uint32_t v;
    ternlm_status st = gguf_get_u32(kv, &v, err);
    if (st) return st;
    if (v == 0xFFFFFFFFu) {
        *out = -1;
        return TERNLM_OK;
    }
    if (v >= n_vocab) return tl_fail(err, TERNLM_ERR_MODEL, "'%s' is %u, outside the vocabulary of %u tokens", key, v, n_vocab);
    *out = (int32_t)v;
    return TERNLM_OK;
}

static ternlm_status read_bool(const gguf_file *g, const char *key, int *out, ternlm_error *err) {
    const gguf_kv *kv = gguf_find(g, key);
    return kv ? gguf_get_bool(kv, out, err) : TERNLM_OK;
}

static ternlm_status read_arrays(tl_tokenizer *t, const gguf_file *g, ternlm_error *err) {
    const gguf_kv *tok = gguf_find(g, "tokenizer.ggml.tokens");
    if (!tok) return tl_fail(err, TERNLM_ERR_MODEL, "missing 'tokenizer.ggml.tokens'");
    if (tok->type != GGUF_ARRAY || tok->arr_type != GGUF_STRING)
        return tl_fail(err, TERNLM_ERR_MODEL, "'tokenizer.ggml.tokens' must be an array of strings");
    if (tok->arr_n == 0 || tok->arr_n > INT32_MAX / 4)
        return tl_fail(err, TERNLM_ERR_MODEL, "vocabulary size %llu is out of range", (unsigned long long)tok->arr_n);
    t->n_vocab = (uint32_t)tok->arr_n;
    t->text = malloc(t->n_vocab * sizeof *t->text);
    t->type = malloc(t->n_vocab);
    if (!t->text || !t->type) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory loading the vocabulary");
    uint64_t pos = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        const gguf_str s = gguf_arr_next_str(tok, &pos);
        if (s.len > 65535) return tl_fail(err, TERNLM_ERR_MODEL, "token %u is %llu bytes long", i, (unsigned long long)s.len);
        t->text[i] = (tl_piece){s.p, (uint32_t)s.len};
        t->type[i] = TL_TT_NORMAL;
    }
    const gguf_kv *tt = gguf_find(g, "tokenizer.ggml.token_type");
    if (tt) {
        if (tt->type != GGUF_ARRAY || tt->arr_type != GGUF_I32)
            return tl_fail(err, TERNLM_ERR_MODEL, "'tokenizer.ggml.token_type' must be an array of i32");
        if (tt->arr_n != t->n_vocab)
            return tl_fail(err, TERNLM_ERR_MODEL, "'tokenizer.ggml.token_type' has %llu entries for %u tokens",
                           (unsigned long long)tt->arr_n, t->n_vocab);
        for (uint32_t i = 0; i < t->n_vocab; i++) {
            const double v = gguf_arr_num(tt, i);
            if (v < 0 || v > 6) return tl_fail(err, TERNLM_ERR_MODEL, "token %u has invalid type %.0f", i, v);
            t->type[i] = (uint8_t)v;
        }
    }
    const gguf_kv *sc = gguf_find(g, "tokenizer.ggml.scores");
    if (sc) {
        if (sc->type != GGUF_ARRAY || (sc->arr_type != GGUF_F32 && sc->arr_type != GGUF_I32))
            return tl_fail(err, TERNLM_ERR_MODEL, "'tokenizer.ggml.scores' must be an array of f32");
        if (sc->arr_n != t->n_vocab)
            return tl_fail(err, TERNLM_ERR_MODEL, "'tokenizer.ggml.scores' has %llu entries for %u tokens",
                           (unsigned long long)sc->arr_n, t->n_vocab);
        t->scores = malloc(t->n_vocab * sizeof *t->scores);
        if (!t->scores) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
        for (uint32_t i = 0; i < t->n_vocab; i++) t->scores[i] = (float)gguf_arr_num(sc, i);
    }
    return TERNLM_OK;
}

static int is_llama3_vocab(const tl_tokenizer *t) {
    static const char bot[] = "<|begin_of_text|>";
    return t->n_vocab == 128256 && t->text[128000].len == sizeof bot - 1 && !memcmp(t->text[128000].p, bot, sizeof bot - 1);
}

static int pre_from_name(const char *s, size_t n, enum tl_pre *out) {
    static const struct { const char *name; enum tl_pre pre; } names[] = {
        {"llama3", TL_PRE_LLAMA3}, {"llama-v3", TL_PRE_LLAMA3}, {"llama-bpe", TL_PRE_LLAMA3}, {"falcon3", TL_PRE_LLAMA3},
        {"gpt-2", TL_PRE_GPT2},    {"gpt2", TL_PRE_GPT2},       {"mpt", TL_PRE_GPT2},        {"olmo", TL_PRE_GPT2},
        {"jais", TL_PRE_GPT2},     {"default", TL_PRE_DEFAULT}, {"qwen2", TL_PRE_QWEN2},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i].name) == n && !memcmp(names[i].name, s, n)) {
            *out = names[i].pre;
            return 1;
        }
    return 0;
}

static ternlm_status choose_pre(tl_tokenizer *t, const gguf_file *g, const char *override, const tl_logger *log,
                                ternlm_error *err) {
    if (override) {
        if (!pre_from_name(override, strlen(override), &t->pre))
            return tl_fail(err, TERNLM_ERR_ARG, "unknown pre-tokenizer '%s' (llama3, qwen2, gpt2 or default)", override);
    } else {
        const gguf_kv *kv = gguf_find(g, "tokenizer.ggml.pre");
        gguf_str s;
        if (kv) {
            ternlm_status st = gguf_get_str(kv, &s, err);
            if (st) return st;
            if (!pre_from_name(s.p, s.len, &t->pre))
                return tl_fail(err, TERNLM_ERR_UNSUPPORTED,
                               "unsupported pre-tokenizer '%.*s' (use --pre llama3|qwen2|gpt2|default to force one)",
                               (int)TL_MIN(s.len, 64), s.p);
        } else if (is_llama3_vocab(t)) {
            t->pre = TL_PRE_LLAMA3;
            tl_log(log, "tokenizer.ggml.pre is missing; this is a Llama 3 vocabulary, using the llama3 pre-tokenizer "
                        "(--pre default reproduces bitnet.cpp)");
        } else {
            t->pre = TL_PRE_DEFAULT;
            tl_log(log, "warning: tokenizer.ggml.pre is missing; using the 'default' pre-tokenizer");
        }
    }
    t->ignore_merges = t->pre == TL_PRE_LLAMA3;
    return TERNLM_OK;
}

typedef struct special_key {
    uint32_t len;
    int32_t id;
} special_key;

static int cmp_special(const void *x, const void *y) {
    const special_key *a = x, *b = y;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static ternlm_status collect_specials(tl_tokenizer *t) {
    t->special = malloc(t->n_vocab * sizeof *t->special);
    if (!t->special) return TERNLM_ERR_NOMEM;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        const uint8_t ty = t->type[i];
        if ((ty == TL_TT_CONTROL || ty == TL_TT_USER || ty == TL_TT_UNKNOWN) && t->text[i].len)
            t->special[t->n_special++] = (int32_t)i;
    }
    /* longest first, then by id: a total order, so qsort gives the stable result in O(n log n) even when a
     * hostile vocabulary declares 100k special tokens */
    special_key *keys = malloc((t->n_special ? t->n_special : 1) * sizeof *keys);
    if (!keys) return TERNLM_ERR_NOMEM;
    for (uint32_t i = 0; i < t->n_special; i++) keys[i] = (special_key){t->text[t->special[i]].len, t->special[i]};
    qsort(keys, t->n_special, sizeof *keys, cmp_special);
    for (uint32_t i = 0; i < t->n_special; i++) t->special[i] = keys[i].id;
    free(keys);
    if (t->n_special && !(t->specials = tl_special_matcher_new(t))) return TERNLM_ERR_NOMEM;
    return TERNLM_OK;
}

static int hex_digit(char ch) {
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* The byte of a "<0xXX>" token, or -1. Token texts point into the file and are not NUL-terminated, so no sscanf. */
static int byte_token_value(const tl_piece *p) {
    if (p->len != 6 || memcmp(p->p, "<0x", 3) != 0 || p->p[5] != '>') return -1;
    const int hi = hex_digit(p->p[3]), lo = hex_digit(p->p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static ternlm_status build_spm(tl_tokenizer *t, ternlm_error *err) {
    /* byte fallback tokens <0xXX>, and decoded texts (U+2581 -> space, byte tokens -> their byte) */
    uint64_t total = 0;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_token[b] = tl_strmap_get(t, name, 6);
        if (t->byte_token[b] < 0) {
            const char one = (char)b;
            t->byte_token[b] = tl_strmap_get(t, &one, 1);
        }
    }
    for (uint32_t i = 0; i < t->n_vocab; i++) total += t->text[i].len;
    t->decoded = malloc(total + 1);
    t->decoded_off = malloc((t->n_vocab + 1) * sizeof *t->decoded_off);
    if (!t->decoded || !t->decoded_off || total > UINT32_MAX) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    uint32_t o = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        const tl_piece *p = &t->text[i];
        t->decoded_off[i] = o;
        const int byte = t->type[i] == TL_TT_BYTE ? byte_token_value(p) : -1;
        if (byte >= 0) {
            t->decoded[o++] = (char)byte;
            continue;
        }
        for (uint32_t k = 0; k < p->len; k++) {
            if (k + 3 <= p->len && !memcmp(p->p + k, "\xE2\x96\x81", 3)) {
                t->decoded[o++] = ' ';
                k += 2;
            } else {
                t->decoded[o++] = p->p[k];
            }
        }
    }
    t->decoded_off[t->n_vocab] = o;
    return TERNLM_OK;
}

static void find_eot(tl_tokenizer *t) {
    static const char *names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>"};
    static const char *extra[3] = {"<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"};
    for (int i = 0; i < 3; i++) {
        const int32_t id = tl_strmap_get(t, extra[i], strlen(extra[i]));
        t->eog_extra[i] = id >= 0 && t->type[id] == TL_TT_CONTROL ? id : -1;
    }
    if (t->eot >= 0) return;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && t->eot < 0; i++) {
        const int32_t id = tl_strmap_get(t, names[i], strlen(names[i]));
        if (id >= 0 && id != t->eos && t->type[id] == TL_TT_CONTROL) t->eot = id;
    }
}

static ternlm_status load(tl_tokenizer *t, const gguf_file *g, const char *pre_override, const tl_logger *log,
                          ternlm_error *err) {
    gguf_str model;
    ternlm_status st = gguf_get_str(gguf_find(g, "tokenizer.ggml.model"), &model, err);
    if (st) return st;
    if (model.len == 4 && !memcmp(model.p, "gpt2", 4)) t->kind = TL_TOK_BPE;
    else if (model.len == 5 && !memcmp(model.p, "llama", 5)) t->kind = TL_TOK_SPM;
    else return tl_fail(err, TERNLM_ERR_UNSUPPORTED, "unsupported tokenizer model '%.*s' (gpt2 and llama are supported)",
                        (int)TL_MIN(model.len, 64), model.p);
    if ((st = read_arrays(t, g, err))) return st;
    const uint64_t dups = strmap_build(t);
    if (dups == UINT64_MAX) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    if (dups) tl_log(log, "warning: %llu duplicate token strings in the vocabulary", (unsigned long long)dups);
    t->bos = t->eos = t->eot = t->eom = t->unk = -1;
    t->eog_extra[0] = t->eog_extra[1] = t->eog_extra[2] = -1;
    if (t->kind == TL_TOK_SPM) {
        t->bos = t->n_vocab > 1 ? 1 : -1;
        t->eos = t->n_vocab > 2 ? 2 : -1;
        t->unk = 0;
        t->add_bos = 1;
        t->add_space_prefix = 1;
    }
    if ((st = read_token_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos, err)) ||
        (st = read_token_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos, err)) ||
        (st = read_token_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot, err)) ||
        (st = read_token_id(g, "tokenizer.ggml.eom_token_id", t->n_vocab, &t->eom, err)) ||
        (st = read_token_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk, err)))
        return st;
    if (t->kind == TL_TOK_BPE) {
        if ((st = choose_pre(t, g, pre_override, log, err))) return st;
        t->add_bos = t->pre == TL_PRE_LLAMA3;
        if ((st = tl_bpe_init(t, g, err))) return st;
    } else if ((st = build_spm(t, err))) {
        return st;
    }
    if ((st = read_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err)) ||
        (st = read_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos, err)) ||
        (st = read_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err)))
        return st;
    find_eot(t);
    if (collect_specials(t)) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    return TERNLM_OK;
}

ternlm_status tl_tokenizer_load(tl_tokenizer **out, const gguf_file *g, const char *pre_override, const tl_logger *log,
                                ternlm_error *err) {
    tl_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    ternlm_status st = load(t, g, pre_override, log, err);
    if (st) {
        tl_tokenizer_free(t);
        if (err) tl_fail_prefix(err, "tokenizer: ");
        return st;
    }
    *out = t;
    return TERNLM_OK;
}

void tl_tokenizer_free(tl_tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->scores);
    free(t->type);
    free(t->map.slots);
    free(t->merge_keys);
    free(t->merge_rank);
    free(t->merge_id);
    free(t->special);
    tl_special_matcher_free(t->specials);
    free(t->decoded);
    free(t->decoded_off);
    free(t);
}

uint32_t tl_tokenizer_n_vocab(const tl_tokenizer *t) { return t->n_vocab; }
const char *tl_tokenizer_model_name(const tl_tokenizer *t) { return t->kind == TL_TOK_BPE ? "gpt2" : "llama"; }
const char *tl_tokenizer_pre_name(const tl_tokenizer *t) {
    if (t->kind != TL_TOK_BPE) return "";
    return t->pre == TL_PRE_LLAMA3 ? "llama3" : t->pre == TL_PRE_GPT2 ? "gpt2" : t->pre == TL_PRE_QWEN2 ? "qwen2" : "default";
}
int32_t tl_tokenizer_bos(const tl_tokenizer *t) { return t->bos; }
int32_t tl_tokenizer_eos(const tl_tokenizer *t) { return t->eos; }
int32_t tl_tokenizer_eot(const tl_tokenizer *t) { return t->eot; }
int tl_tokenizer_add_bos(const tl_tokenizer *t) { return t->add_bos; }

/* ---- encoding ---- */

typedef struct frag {
    size_t start, end;
    int32_t token; /* -1 for raw text */
} frag;

typedef struct frags {
    frag *v;
    size_t n, cap;
} frags;

static int frags_push(frags *f, frag x) {
    if (f->n == f->cap) {
        const size_t cap = f->cap ? f->cap * 2 : 16;
        frag *v = realloc(f->v, cap * sizeof *v);
        if (!v) return 0;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = x;
    return 1;
}

typedef struct split_ctx {
    frags *f;
    int oom;
} split_ctx;

static void push_fragment(void *ctx, size_t start, size_t end, int32_t token) {
    split_ctx *c = ctx;
    if (!frags_push(c->f, (frag){start, end, token})) c->oom = 1;
}

/* Split the text at special tokens, longest tokens first (§2), in one pass (special.c). */
static int split_specials(const tl_tokenizer *t, const char *text, size_t len, int parse_special, frags *f) {
    split_ctx c = {f, 0};
    const int r = tl_special_split(t, (const uint8_t *)text, len, parse_special, push_fragment, &c);
    return r == 1 && c.oom ? 0 : r;
}

typedef struct bpe_ctx {
    const tl_tokenizer *t;
    const uint8_t *s;
    tl_ids *ids;
} bpe_ctx;

static void bpe_piece(void *ctx, size_t a, size_t b) {
    bpe_ctx *c = ctx;
    tl_bpe_encode_word(c->t, c->s + a, b - a, c->ids);
}

static void spm_fragment(const tl_tokenizer *t, const char *s, size_t n, int add_prefix, tl_ids *ids) {
    size_t spaces = add_prefix ? 1 : 0;
    for (size_t i = 0; i < n; i++) spaces += s[i] == ' ';
    char *buf = malloc(n + 2 * spaces + 1);
    if (!buf) {
        ids->oom = 1;
        return;
    }
    size_t o = 0;
    if (add_prefix) memcpy(buf + o, "\xE2\x96\x81", 3), o += 3;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') memcpy(buf + o, "\xE2\x96\x81", 3), o += 3;
        else buf[o++] = s[i];
    }
    tl_spm_encode(t, (const uint8_t *)buf, o, ids);
    free(buf);
}

void tl_tokenizer_encode(const tl_tokenizer *t, const char *text, size_t len, int parse_special, tl_ids *ids) {
    if (!len) return;
    frags f = {0};
    const int split = split_specials(t, text, len, parse_special, &f);
    if (split != 1) {
        free(f.v);
        if (split < 0) ids->too_dense = 1;
        else ids->oom = 1;
        return;
    }
    int prev_special = 1;
    for (size_t i = 0; i < f.n; i++) {
        const frag *fr = &f.v[i];
        if (fr->token >= 0) {
            tl_ids_push(ids, fr->token);
            prev_special = 1;
            continue;
        }
        if (t->kind == TL_TOK_BPE) {
            bpe_ctx c = {t, (const uint8_t *)text + fr->start, ids};
            tl_pretokenize(t->pre, (const uint8_t *)text + fr->start, fr->end - fr->start, bpe_piece, &c);
        } else {
            spm_fragment(t, text + fr->start, fr->end - fr->start, t->add_space_prefix && prev_special, ids);
        }
        prev_special = 0;
    }
    free(f.v);
}

ternlm_status tl_tokenizer_too_dense(ternlm_error *err) {
    return tl_fail(err, TERNLM_ERR_TOKENIZER,
                   "special tokens of this vocabulary match more than %d times per byte of the text (nested specials)",
                   TL_SPECIAL_MATCHES_PER_BYTE);
}
ternlm_status ternlm_tokenize(const ternlm_model *m, const char *text, size_t len, int flags, int32_t *out, size_t cap,
                              size_t *n_out, ternlm_error *err) {
    if (!m || (!text && len) || !n_out) return tl_fail(err, TERNLM_ERR_ARG, "model, text and n_out must not be NULL");
    const tl_tokenizer *t = m->tok;
    if (!t) return tl_fail(err, TERNLM_ERR_TOKENIZER, "this model file has no tokenizer");
    tl_ids ids = {0};
    const int add = flags & TERNLM_TOKENIZE_ADD_SPECIAL;
    if (add && t->add_bos && t->bos >= 0) tl_ids_push(&ids, t->bos);
    tl_tokenizer_encode(t, text, len, flags & TERNLM_TOKENIZE_PARSE_SPECIAL, &ids);
    if (add && t->add_eos && t->eos >= 0) tl_ids_push(&ids, t->eos);
    if (ids.oom || ids.too_dense) {
        free(ids.v);
        if (ids.too_dense) return tl_tokenizer_too_dense(err);
        return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory while tokenizing");
    }
    *n_out = ids.n;
    if (ids.n > cap) {
        free(ids.v);
        return tl_fail(err, TERNLM_ERR_ARG, "%zu tokens do not fit in a buffer of %zu", ids.n, cap);
    }
    if (ids.n) memcpy(out, ids.v, ids.n * sizeof *out);
    free(ids.v);
    return TERNLM_OK;
}

/* ---- decoding ---- */

static tl_piece token_bytes(const tl_tokenizer *t, int32_t id, int flags) {
    const uint8_t ty = t->type[id];
    if (ty == TL_TT_CONTROL || ty == TL_TT_UNKNOWN)
        return (flags & TERNLM_DETOK_SPECIAL) ? t->text[id] : (tl_piece){"", 0};
    if (ty == TL_TT_USER) return t->text[id];
    return (tl_piece){t->decoded + t->decoded_off[id], t->decoded_off[id + 1] - t->decoded_off[id]};
}

int ternlm_token_piece(const ternlm_model *m, int32_t token, int flags, char *buf, size_t cap) {
    if (!m || !m->tok || token < 0 || (uint32_t)token >= m->tok->n_vocab) return -1;
    const tl_piece p = token_bytes(m->tok, token, flags);
    if (buf && cap) memcpy(buf, p.p, TL_MIN((size_t)p.len, cap));
    return (int)p.len;
}

ternlm_status ternlm_detokenize(const ternlm_model *m, const int32_t *tokens, size_t n, int flags, char *buf, size_t cap,
                                size_t *n_out, ternlm_error *err) {
    if (!m || (!tokens && n) || !n_out) return tl_fail(err, TERNLM_ERR_ARG, "model, tokens and n_out must not be NULL");
    const tl_tokenizer *t = m->tok;
    if (!t) return tl_fail(err, TERNLM_ERR_TOKENIZER, "this model file has no tokenizer");
    size_t o = 0;
    int strip = t->kind == TL_TOK_SPM && t->add_space_prefix;
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= t->n_vocab)
            return tl_fail(err, TERNLM_ERR_ARG, "token id %d is outside the vocabulary", tokens[i]);
        tl_piece p = token_bytes(t, tokens[i], flags);
        if (strip && p.len) {
            if (p.p[0] == ' ') p.p++, p.len--; /* SentencePiece drops the prefix space once */
            strip = 0;
        }
        if (o + p.len < cap) memcpy(buf + o, p.p, p.len);
        o += p.len;
    }
    if (buf && cap) buf[o < cap ? o : cap - 1] = 0;
    *n_out = o;
    if (o >= cap) return tl_fail(err, TERNLM_ERR_ARG, "%zu bytes do not fit in a buffer of %zu", o + 1, cap);
    return TERNLM_OK;
}

int ternlm_token_is_eog(const ternlm_model *m, int32_t token) {
    const tl_tokenizer *t = m ? m->tok : NULL;
    return t && token >= 0 &&
           (token == t->eos || token == t->eot || token == t->eom || token == t->eog_extra[0] || token == t->eog_extra[1] ||
            token == t->eog_extra[2]);
}

/* ---- streaming: only complete UTF-8 characters leave; invalid bytes become U+FFFD ---- */

struct ternlm_text_stream {
    const ternlm_model *m;
    int flags;
    char *pend, *out;
    size_t n_pend, cap;
};

ternlm_text_stream *ternlm_text_stream_new(const ternlm_model *m, int flags) {
    if (!m || !m->tok) return NULL;
    ternlm_text_stream *ts = calloc(1, sizeof *ts);
    if (ts) {
        ts->m = m;
        ts->flags = flags;
        tl_model_retain(m);
    }
    return ts;
}

static int ts_reserve(ternlm_text_stream *ts, size_t need) {
    if (need <= ts->cap) return 1;
    size_t cap = ts->cap ? ts->cap : 64;
    while (cap < need) cap *= 2;
    char *p = realloc(ts->pend, cap), *o = p ? realloc(ts->out, 3 * cap + 4) : NULL;
    if (p) ts->pend = p;
    if (!p || !o) return 0;
    ts->out = o;
    ts->cap = cap;
    return 1;
}

/* Move the valid part of pend to out; keep an incomplete tail unless final. */
static const char *ts_drain(ternlm_text_stream *ts, size_t *len, int final) {
    const uint8_t *s = (const uint8_t *)ts->pend;
    const size_t keep_from = final ? ts->n_pend : tl_utf8_complete_prefix(s, ts->n_pend);
    size_t o = 0;
    for (size_t i = 0; i < keep_from;) {
        uint32_t cp;
        const size_t l = tl_utf8_decode(s + i, keep_from - i, &cp);
        if (cp >= 0x110000) o += (size_t)tl_utf8_encode(0xFFFD, ts->out + o);
        else memcpy(ts->out + o, s + i, l), o += l;
        i += l;
    }
    memmove(ts->pend, ts->pend + keep_from, ts->n_pend - keep_from);
    ts->n_pend -= keep_from;
    *len = o;
    return ts->out;
}

const char *ternlm_text_stream_push(ternlm_text_stream *ts, int32_t token, size_t *len) {
    *len = 0;
    if (!ts) return "";
    char tmp[1];
    const int n = ternlm_token_piece(ts->m, token, ts->flags, tmp, 0);
    if (n <= 0 || !ts_reserve(ts, ts->n_pend + (size_t)n + 1)) return n < 0 || !ts->out ? "" : ts_drain(ts, len, 0);
    ternlm_token_piece(ts->m, token, ts->flags, ts->pend + ts->n_pend, (size_t)n);
    ts->n_pend += (size_t)n;
    return ts_drain(ts, len, 0);
}

const char *ternlm_text_stream_flush(ternlm_text_stream *ts, size_t *len) {
    *len = 0;
    if (!ts || !ts->n_pend) return "";
    return ts_drain(ts, len, 1);
}

void ternlm_text_stream_free(ternlm_text_stream *ts) {
    if (!ts) return;
    tl_model_release(ts->m);
    free(ts->pend);
    free(ts->out);
    free(ts);
}
