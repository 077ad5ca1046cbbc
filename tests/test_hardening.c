#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#define _POSIX_C_SOURCE 200809L
/* Issue 11, the runtime half: one check per defect class, each failing on the code before the fix.
 * Files are built here (a small F32 llama model, vocabulary-only files); the Jinja cases use the b158 fixture's
 * tokenizer. Built to run under ASan + UBSan (including float-cast-overflow). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mathx.h"
#include "model.h"
#include "ternlm.h"
#include "tokenizer.h"

#if !defined(__wasi__) && !defined(__EMSCRIPTEN__)
#include <sys/mman.h>
#include <unistd.h>
#define HAVE_GUARD_PAGES 1
#endif

/* ---- a byte builder ---- */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
    uint64_t count; /* records written (KVs) */
} buf;

static void put(buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void str_n(buf *b, const char *s, size_t n) { u64(b, n); put(b, s, n); }
static void str(buf *b, const char *s) { str_n(b, s, strlen(s)); }
static void kv_u32(buf *b, const char *k, uint32_t v) { str(b, k), u32(b, 4), u32(b, v), b->count++; }
static void kv_f32(buf *b, const char *k, float v) { str(b, k), u32(b, 6), put(b, &v, 4), b->count++; }
static void kv_bool(buf *b, const char *k, int v) { str(b, k), u32(b, 7), put(b, v ? "\1" : "\0", 1), b->count++; }
static void kv_str_n(buf *b, const char *k, const char *v, size_t n) { str(b, k), u32(b, 8), str_n(b, v, n), b->count++; }
static void kv_str(buf *b, const char *k, const char *v) { kv_str_n(b, k, v, strlen(v)); }

static void header(buf *out, uint64_t n_tensors, const buf *kvs) {
    put(out, "GGUF", 4);
    u32(out, 3);
    u64(out, n_tensors);
    u64(out, kvs->count);
    put(out, kvs->p, kvs->n);
}

static uint64_t g_rng = 88172645463325252ull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}
static float rnd_weight(void) { return ((float)(rnd() % 2001) - 1000.0f) / 2000.0f; }

/* ---- a small F32 llama model with knobs ---- */

typedef struct model_opts {
    uint32_t alignment;      /* 0: the default 32 */
    size_t pad_kv_bytes;     /* an extra string KV of this size (makes the header long) */
    int q8_attn_q;           /* attn_q as Q8_0 */
    uint16_t q8_scale_bits;  /* the f16 scale of its blocks */
    int with_rope_freqs;
    float rope_freq_value;   /* every element of rope_freqs.weight */
    float freq_base;         /* 0: key absent */
    int nan_embedding;       /* token_embd.weight all NaN */
} model_opts;

enum { E = 32, FF = 64, NV = 16 };

typedef struct tdesc {
    const char *name;
    int64_t ne0, ne1;
} tdesc;

static const tdesc k_tensors[] = {
    {"token_embd.weight", E, NV}, {"output_norm.weight", E, 1}, {"blk.0.attn_norm.weight", E, 1},
    {"blk.0.attn_q.weight", E, E}, {"blk.0.attn_k.weight", E, E}, {"blk.0.attn_v.weight", E, E},
    {"blk.0.attn_output.weight", E, E}, {"blk.0.ffn_norm.weight", E, 1}, {"blk.0.ffn_gate.weight", E, FF},
    {"blk.0.ffn_up.weight", E, FF}, {"blk.0.ffn_down.weight", FF, E}, {"rope_freqs.weight", E / 4, 1},
};

static buf build_model(const model_opts *o) {
    buf kv = {0}, out = {0};
    kv_str(&kv, "general.architecture", "llama");
    kv_u32(&kv, "llama.embedding_length", E);
    kv_u32(&kv, "llama.block_count", 1);
    kv_u32(&kv, "llama.feed_forward_length", FF);
    kv_u32(&kv, "llama.attention.head_count", 2);
    kv_u32(&kv, "llama.context_length", 64);
    kv_f32(&kv, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    if (o->freq_base != 0) kv_f32(&kv, "llama.rope.freq_base", o->freq_base);
    if (o->alignment) kv_u32(&kv, "general.alignment", o->alignment);
    if (o->pad_kv_bytes) {
        char *pad = malloc(o->pad_kv_bytes);
        memset(pad, 'p', o->pad_kv_bytes);
        kv_str_n(&kv, "x.padding", pad, o->pad_kv_bytes);
        free(pad);
    }
    const int nt = (int)(sizeof k_tensors / sizeof k_tensors[0]) - !o->with_rope_freqs;
    const uint64_t A = o->alignment ? o->alignment : 32;
    header(&out, (uint64_t)nt, &kv);
    uint64_t off = 0, sizes[16];
    for (int i = 0; i < nt; i++) {
        const tdesc *t = &k_tensors[i];
        const int q8 = o->q8_attn_q && i == 3;
        str(&out, t->name);
        u32(&out, t->ne1 == 1 ? 1 : 2);
        u64(&out, (uint64_t)t->ne0);
        if (t->ne1 != 1) u64(&out, (uint64_t)t->ne1);
        u32(&out, q8 ? 8 : 0);
        u64(&out, off);
        sizes[i] = q8 ? (uint64_t)(t->ne0 / 32 * 34 * t->ne1) : (uint64_t)(t->ne0 * t->ne1 * 4);
        off += (sizes[i] + A - 1) / A * A;
    }
    while (out.n % A) put(&out, "", 1);
    for (int i = 0; i < nt; i++) {
        const tdesc *t = &k_tensors[i];
        const size_t start = out.n;
        if (o->q8_attn_q && i == 3) {
            for (int64_t blk = 0; blk < t->ne0 / 32 * t->ne1; blk++) {
                put(&out, &o->q8_scale_bits, 2);
                for (int k = 0; k < 32; k++) put(&out, &(int8_t){(int8_t)(rnd() % 7 - 3)}, 1);
            }
        } else {
            for (int64_t k = 0; k < t->ne0 * t->ne1; k++) {
                const float v = i == 11 ? o->rope_freq_value : i == 0 && o->nan_embedding ? NAN : t->ne1 == 1 ? 1.0f : rnd_weight();
                put(&out, &v, 4);
            }
        }
        while (out.n - start < (size_t)((sizes[i] + A - 1) / A * A) && i + 1 < nt) put(&out, "", 1);
    }
    free(kv.p);
    return out;
}

static void *aligned_copy(const buf *b) {
    void *p = aligned_alloc(64, (b->n + 64) / 64 * 64);
    memcpy(p, b->p, b->n);
    return p;
}

static ternlm_model *load_chunked(const buf *b, size_t chunk, ternlm_error *err) {
    ternlm_loader *ld = NULL;
    ternlm_model *m = NULL;
    if (ternlm_loader_new(b->n, &ld, err)) return NULL;
    ternlm_status st = TERNLM_OK;
    for (size_t o = 0; o < b->n && !st; o += chunk) st = ternlm_loader_push(ld, b->p + o, TL_MIN(chunk, b->n - o), err);
    if (!st) ternlm_loader_finish(ld, NULL, &m, err);
    ternlm_loader_free(ld);
    return m;
}

/* Greedy logits of one token: a fingerprint of every weight byte that reached the model. */
static int logits_of(ternlm_model *m, float *out) {
    ternlm_session *s = NULL;
    ternlm_session_params sp = ternlm_session_params_default();
    sp.n_ctx = 8;
    sp.n_threads = 1;
    const int32_t tok[2] = {3, 7};
    ternlm_error err = {0};
    if (ternlm_session_new(m, &sp, &s, &err) || ternlm_session_eval(s, tok, 2, TERNLM_LOGITS_LAST, &err)) {
        fprintf(stderr, "logits_of: %s\n", err.message);
        ternlm_session_free(s);
        return 0;
    }
    memcpy(out, ternlm_session_logits(s, -1), NV * sizeof *out);
    ternlm_session_free(s);
    return 1;
}

/* Defect 1: alignment above 64 KiB with a header longer than 64 KiB. */
static void test_loader_alignment(void) {
    model_opts o = {0};
    o.alignment = 1u << 20;
    o.pad_kv_bytes = 70000;
    buf b = build_model(&o);
    void *img = aligned_copy(&b);
    ternlm_model *ref = NULL;
    ternlm_error err = {0};
    CHECK(ternlm_model_open_memory(img, b.n, NULL, &ref, &err) == TERNLM_OK, "big-alignment model opens: %s", err.message);
    float want[NV], got[NV];
    const int have_ref = ref && logits_of(ref, want);
    const size_t chunks[] = {7, 4096, 50000, 65536, 65537, 1u << 20, b.n};
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        ternlm_model *m = load_chunked(&b, chunks[i], &err);
        CHECK(m != NULL, "incremental load, chunks of %zu: %s", chunks[i], err.message);
        if (m && have_ref) CHECK(logits_of(m, got) && !memcmp(got, want, sizeof want), "chunks of %zu: weights differ", chunks[i]);
        ternlm_model_free(m);
    }
    /* the host-side interface: never more capacity than the bytes still due, never a pointer outside */
    ternlm_loader *ld = NULL;
    ternlm_loader_new(b.n, &ld, NULL);
    size_t done = 0, bad = 0;
    while (done < b.n) {
        size_t cap = 0;
        uint8_t *p = ternlm_loader_buffer(ld, &cap);
        if (!p || cap == 0 || cap > b.n - done) {
            bad++;
            break;
        }
        const size_t want = rnd() % 90000 + 1, k = TL_MIN(cap, want);
        memcpy(p, b.p + done, k);
        if (ternlm_loader_commit(ld, k, &err)) {
            bad++;
            break;
        }
        done += k;
    }
    ternlm_model *m = NULL;
    CHECK(!bad && ternlm_loader_finish(ld, NULL, &m, &err) == TERNLM_OK, "buffer/commit loop: %s", err.message);
    if (m && have_ref) CHECK(logits_of(m, got) && !memcmp(got, want, sizeof want), "buffer/commit loop: weights differ");
    ternlm_model_free(m);
    ternlm_loader_free(ld);
    ternlm_model_free(ref);
    free(img);
    free(b.p);
}

/* Defect 11: a failed finish (or open) leaves *out alone. */
static void test_out_untouched(void) {
    model_opts o = {0};
    buf b = build_model(&o);
    ternlm_model *sentinel = (ternlm_model *)&o, *m = sentinel;
    ternlm_loader *ld = NULL;
    ternlm_error err = {0};
    ternlm_loader_new(b.n, &ld, NULL);
    ternlm_loader_push(ld, b.p, b.n / 2, NULL);
    CHECK(ternlm_loader_finish(ld, NULL, &m, &err) == TERNLM_ERR_FORMAT && m == sentinel,
          "a truncated finish must fail and leave *out (got %p)", (void *)m);
    ternlm_loader_free(ld);
    void *img = aligned_copy(&b);
    m = sentinel;
    CHECK(ternlm_model_open_memory(img, b.n / 2, NULL, &m, &err) != TERNLM_OK && m == sentinel, "open_memory keeps *out");
    free(img);
    free(b.p);
}

/* ---- chat templates (defects 2, 3, 4, 6, 7) ---- */

static ternlm_status render(const ternlm_model *m, const char *tmpl, const ternlm_chat_message *msgs, size_t n,
                            ternlm_error *err) {
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    const ternlm_status st = ternlm_chat_template_render(m, tmpl, msgs, n, 1, out, cap, &len, err);
    free(out);
    return st;
}

static char *repeat(const char *a, int times, const char *mid, const char *b) {
    const size_t la = strlen(a), lb = strlen(b), lm = strlen(mid);
    char *s = malloc(la * (size_t)times + lm + lb * (size_t)times + 1), *p = s;
    for (int i = 0; i < times; i++) memcpy(p, a, la), p += la;
    memcpy(p, mid, lm), p += lm;
    for (int i = 0; i < times; i++) memcpy(p, b, lb), p += lb;
    *p = 0;
    return s;
}

static void expect_template_error(const ternlm_model *m, const char *label, const char *tmpl, const ternlm_chat_message *msgs,
                                  size_t n, const char *want) {
    ternlm_error err = {0};
    const double t0 = tl_now_seconds();
    const ternlm_status st = render(m, tmpl, msgs, n, &err);
    const double secs = tl_now_seconds() - t0;
    CHECK(st == TERNLM_ERR_TEMPLATE && strstr(err.message, want), "%s: status %d, message '%s' lacks '%s'", label, st,
          err.message, want);
    CHECK(secs < 10, "%s: took %.1f s", label, secs);
}

static void test_templates(const ternlm_model *m) {
    const ternlm_chat_message one[] = {{"user", "hi"}};
    /* 2: depth */
    char *t = repeat("(", 20000, "'x'", ")");
    char *tmpl = malloc(strlen(t) + 16);
    sprintf(tmpl, "{{ %s }}", t);
    expect_template_error(m, "20000 parentheses", tmpl, one, 1, "nested too deeply");
    free(t), free(tmpl);
    t = repeat("not ", 20000, "true", "");
    tmpl = malloc(strlen(t) + 16);
    sprintf(tmpl, "{{ %s }}", t);
    expect_template_error(m, "20000 nots", tmpl, one, 1, "nested too deeply");
    free(t), free(tmpl);
    t = repeat("{% if true %}", 20000, "x", "{% endif %}");
    expect_template_error(m, "20000 nested ifs", t, one, 1, "nested too deeply");
    free(t);
    ternlm_error err = {0};
    t = repeat("{% if true %}", 20, "x", "{% endif %}");
    CHECK(render(m, t, one, 1, &err) == TERNLM_OK, "20 nested ifs still render: %s", err.message);
    free(t);
    /* 3: size, loops */
    t = repeat("{% set x = x + x %}", 40, "", "");
    tmpl = malloc(strlen(t) + 64);
    sprintf(tmpl, "{%% set x = 'abcdefgh' %%}%s{{ x }}", t);
    expect_template_error(m, "doubling a string 40 times", tmpl, one, 1, "too long");
    free(t), free(tmpl);
    ternlm_chat_message many[200];
    for (int i = 0; i < 200; i++) many[i] = (ternlm_chat_message){i % 2 ? "assistant" : "user", "m"};
    expect_template_error(m, "4 nested loops over 200 messages",
                          "{% for a in messages %}{% for b in messages %}{% for c in messages %}{% for d in messages %}"
                          "{{ d.content }}{% endfor %}{% endfor %}{% endfor %}{% endfor %}",
                          many, 200, "too many loop iterations");
    CHECK(render(m, "{% for a in messages %}{% for b in messages %}{{ b.content }}{% endfor %}{% endfor %}", many, 20, &err) ==
              TERNLM_OK, "2 nested loops over 20 messages render: %s", err.message);
    /* 4: trim is linear: 4 MB of leading spaces (quadratic trimming would take minutes) */
    const size_t big = 4u << 20;
    char *content = malloc(big + 8);
    memset(content, ' ', big);
    strcpy(content + big, "hello ");
    const ternlm_chat_message spaced[] = {{"user", content}};
    size_t len = 0;
    char out[64];
    const double t0 = tl_now_seconds();
    ternlm_chat_template_render(m, "{% for x in messages %}{{ x.content | trim }}{% endfor %}", spaced, 1, 0, out, sizeof out,
                                &len, &err);
    const double secs = tl_now_seconds() - t0;
    CHECK(len == 5 && !strcmp(out, "hello"), "trim of 4 MB of spaces gives '%s' (%zu bytes)", out, len);
    CHECK(secs < 5, "trim of 4 MB of spaces took %.1f s", secs);
    free(content);
    /* a message without content is an argument error, not a NULL dereference in the renderer */
    const ternlm_chat_message holes[] = {{"user", NULL}};
    expect_template_error(m, "NULL content", "{% for x in messages %}{{ x.content }}{% endfor %}", holes, 1, "no content");
    /* 6: a test without a name must not quote uninitialised bytes */
    expect_template_error(m, "'is' without a name", "{{ messages is }}", one, 1, "'is' without a test name");
    /* 7: 64-bit integers, overflow is an error */
    expect_template_error(m, "a 30-digit literal", "{{ 123456789012345678901234567890 }}", one, 1, "integer literal too large");
    expect_template_error(m, "INT64_MAX + 1", "{{ 9223372036854775807 + 1 }}", one, 1, "integer overflow");
    CHECK(ternlm_chat_template_render(m, "{{ 4000000000 + 4000000000 }}", one, 1, 0, out, sizeof out, &len, &err) == TERNLM_OK &&
              !strcmp(out, "8000000000"), "64-bit sums: '%s' %s", out, err.message);
}

/* ---- vocabulary-only files (defect 5: strings at the very end of the buffer) ---- */

/* An SPM vocabulary; `last_kv` writes the final KV record (so its bytes end the file). pad makes size % 8 == 0. */
static buf build_vocab(const char *const *tokens, const int32_t *types, int n, void (*last_kv)(buf *, const void *),
                       const void *arg, size_t pad) {
    buf kv = {0}, out = {0};
    kv_str(&kv, "tokenizer.ggml.model", "llama");
    kv_bool(&kv, "tokenizer.ggml.add_space_prefix", 0);
    kv_bool(&kv, "tokenizer.ggml.add_bos_token", 0);
    if (pad) {
        char p[16] = "pppppppppppppppp";
        kv_str_n(&kv, "x.pad", p, pad);
    }
    str(&kv, "tokenizer.ggml.token_type"), u32(&kv, 9), u32(&kv, 5), u64(&kv, (uint64_t)n), kv.count++;
    for (int i = 0; i < n; i++) u32(&kv, (uint32_t)types[i]);
    if (last_kv) {
        str(&kv, "tokenizer.ggml.tokens"), u32(&kv, 9), u32(&kv, 8), u64(&kv, (uint64_t)n), kv.count++;
        for (int i = 0; i < n; i++) str(&kv, tokens[i]);
        last_kv(&kv, arg);
    } else { /* the tokens are the last thing in the file */
        str(&kv, "tokenizer.ggml.tokens"), u32(&kv, 9), u32(&kv, 8), u64(&kv, (uint64_t)n), kv.count++;
        for (int i = 0; i < n; i++) str(&kv, tokens[i]);
    }
    header(&out, 0, &kv);
    free(kv.p);
    return out;
}

static void kv_template(buf *b, const void *arg) { kv_str(b, "tokenizer.chat_template", arg); }

/* The file's bytes end exactly where an inaccessible page begins, so any read past the end faults. Without
 * mmap (WASI, Emscripten) an exact-size heap block stands in (ASan still sees an overrun there). */
typedef struct guarded {
    uint8_t *map;
    size_t map_len;
    uint8_t *data;
} guarded;

static int guard(const buf *b, guarded *g) {
#ifdef HAVE_GUARD_PAGES
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), body = (b->n + page - 1) / page * page;
    g->map_len = body + page;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED || mprotect(g->map + body, page, PROT_NONE)) return 0;
    g->data = g->map + body - b->n;
#else
    g->map = g->data = malloc(b->n);
    if (!g->map) return 0;
#endif
    memcpy(g->data, b->p, b->n);
    return 1;
}

static void unguard(guarded *g) {
#ifdef HAVE_GUARD_PAGES
    munmap(g->map, g->map_len);
#else
    free(g->map);
#endif
}

/* Build with padding chosen so the size is a multiple of 8 (open_memory wants an 8-byte aligned start). */
static buf build_vocab_aligned(const char *const *tokens, const int32_t *types, int n, void (*last)(buf *, const void *),
                               const void *arg) {
    buf b = build_vocab(tokens, types, n, last, arg, 1);
    const size_t r = b.n % 8;
    free(b.p);
    return build_vocab(tokens, types, n, last, arg, 1 + (8 - r) % 8);
}

static void test_unterminated_strings(void) {
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "a", "b", "<0x41>"};
    static const int32_t types[] = {2, 3, 3, 1, 1, 6};
    const char *const tmpls[] = {"{{ 'a' }}{% if", "{{ 'a' }}{{", "{# never closed", "{{ 'abc"};
    for (size_t i = 0; i < sizeof tmpls / sizeof tmpls[0]; i++) {
        buf b = build_vocab_aligned(toks, types, 6, kv_template, tmpls[i]);
        guarded g;
        CHECK(guard(&b, &g), "mmap");
        ternlm_model *m = NULL;
        ternlm_error err = {0};
        CHECK(ternlm_model_open_memory(g.data, b.n, NULL, &m, &err) == TERNLM_OK, "vocab with template opens: %s", err.message);
        const ternlm_chat_message one[] = {{"user", "hi"}};
        char out[256];
        size_t len;
        const ternlm_status st = ternlm_chat_template_render(m, NULL, one, 1, 0, out, sizeof out, &len, &err);
        CHECK(st == TERNLM_ERR_TEMPLATE && (strstr(err.message, "unclosed tag") || strstr(err.message, "unterminated")),
              "template '%s' at the end of the file: %s", tmpls[i], err.message);
        int32_t ids[64];
        size_t n_ids;
        CHECK(ternlm_chat_tokens(m, one, 1, 1, ids, 64, &n_ids, &err) == TERNLM_OK, "chat tokens fall back: %s", err.message);
        ternlm_model_free(m);
        unguard(&g);
        free(b.p);
    }
    buf b = build_vocab_aligned(toks, types, 6, NULL, NULL);
    guarded g;
    CHECK(guard(&b, &g), "mmap");
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    CHECK(ternlm_model_open_memory(g.data, b.n, NULL, &m, &err) == TERNLM_OK, "byte token at the end of the file: %s", err.message);
    char piece[8];
    CHECK(m && ternlm_token_piece(m, 5, 0, piece, sizeof piece) == 1 && piece[0] == 'A', "<0x41> decodes to 'A'");
    ternlm_model_free(m);
    unguard(&g);
    free(b.p);
}

/* ---- numbers (defect 8) ---- */

static void test_math(void) {
    const double nan = NAN, inf = INFINITY;
    double s, c;
    CHECK(isnan(tl_exp(nan)) && tl_exp(-inf) == 0.0 && isfinite(tl_exp(inf)) && tl_exp(0) == 1.0, "tl_exp on NaN/inf");
    CHECK(isnan(tl_expf(NAN)) && tl_expf(-INFINITY) == 0.0f && tl_expf(0.0f) == 1.0f, "tl_expf on NaN/inf");
    const double odd[] = {nan, inf, -inf, 1e300, -1e300, 1e17};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        tl_sincos(odd[i], &s, &c);
        CHECK(isnan(s) && isnan(c), "tl_sincos(%g) gives NaN (got %g, %g)", odd[i], s, c);
    }
    tl_sincos(1.0, &s, &c);
    CHECK(fabs(s - 0.8414709848078965) < 1e-15 && fabs(c - 0.5403023058681398) < 1e-15, "tl_sincos(1) still exact");
    CHECK(isnan(tl_ln(nan)) && isnan(tl_ln(-1.0)) && tl_ln(0.0) == -inf && tl_ln(inf) == inf && tl_ln(1.0) == 0.0, "tl_ln edges");
    CHECK(isnan(tl_powf(NAN, 2.0f)) && isfinite(tl_powf(1e-30f, -0.125f)), "tl_powf");
}

static void test_sampler(void) {
    float l[8] = {NAN, 1.0f, NAN, 3.0f, 2.0f, NAN, -INFINITY, 0.5f};
    ternlm_sampler *smp = NULL;
    ternlm_sampler_params p = ternlm_sampler_params_default();
    p.temperature = 0;
    ternlm_sampler_new(&p, 8, &smp, NULL);
    CHECK(ternlm_sampler_sample(smp, l) == 3, "greedy skips NaN logits");
    ternlm_sampler_free(smp);
    p = ternlm_sampler_params_default();
    p.seed = 7;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0;
    p.temperature = 1.5f;
    ternlm_sampler_new(&p, 8, &smp, NULL);
    int bad = 0;
    for (int i = 0; i < 2000; i++) {
        const int32_t t = ternlm_sampler_sample(smp, l);
        bad += t < 0 || t >= 8 || isnan(l[t]) || t == 6;
    }
    CHECK(bad == 0, "%d of 2000 draws picked a NaN or -inf logit", bad);
    float all_nan[8] = {NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    float with_inf[8] = {1.0f, INFINITY, 2.0f, INFINITY, 0, 0, 0, 0};
    CHECK(ternlm_sampler_sample(smp, all_nan) == 0, "all NaN: token 0");
    int ok = 1;
    for (int i = 0; i < 200; i++) {
        const int32_t t = ternlm_sampler_sample(smp, with_inf);
        ok &= t == 1 || t == 3;
    }
    CHECK(ok, "+inf logits win");
    ternlm_sampler_free(smp);
    ternlm_error err = {0};
    ternlm_sampler *sentinel = (ternlm_sampler *)&p, *s2 = sentinel;
    p.temperature = NAN;
    CHECK(ternlm_sampler_new(&p, 8, &s2, &err) == TERNLM_ERR_ARG && strstr(err.message, "temperature") && s2 == sentinel,
          "NaN temperature refused: %s", err.message);
    p.temperature = INFINITY;
    CHECK(ternlm_sampler_new(&p, 8, &s2, &err) == TERNLM_ERR_ARG, "infinite temperature refused");
}

static void expect_load(const char *label, const model_opts *o, int check, const char *want) {
    buf b = build_model(o);
    void *img = aligned_copy(&b);
    ternlm_model_params mp = ternlm_model_params_default();
    mp.check_tensors = check;
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    const ternlm_status st = ternlm_model_open_memory(img, b.n, &mp, &m, &err);
    if (want) CHECK(st != TERNLM_OK && strstr(err.message, want), "%s: '%s' lacks '%s'", label, err.message, want);
    else CHECK(st == TERNLM_OK, "%s: %s", label, err.message);
    float logits[NV];
    if (m) CHECK(logits_of(m, logits), "%s: evaluates", label);
    ternlm_model_free(m);
    free(img);
    free(b.p);
}

static void test_weights(void) {
    model_opts o = {0};
    o.q8_attn_q = 1;
    o.q8_scale_bits = 0x2C00; /* 1/16 */
    expect_load("Q8_0 model", &o, 1, NULL);
    o.q8_scale_bits = 0x7C00; /* +inf */
    expect_load("Q8_0 block scale inf, no check", &o, 0, NULL);
    expect_load("Q8_0 block scale inf, --check-tensors", &o, 1, "block 0 has a scale that is not finite");
    o.q8_scale_bits = 0x7E00; /* NaN */
    expect_load("Q8_0 block scale NaN, --check-tensors", &o, 1, "not finite");
    o.q8_scale_bits = 0x2C00;
    o.nan_embedding = 1; /* NaN activations reach the Q8_0 activation quantizer: defined, not UB */
    expect_load("NaN embeddings into a Q8_0 linear", &o, 0, NULL);
    expect_load("NaN embeddings, --check-tensors", &o, 1, "is not finite");
    o = (model_opts){0};
    o.with_rope_freqs = 1;
    o.rope_freq_value = 1.0f;
    expect_load("rope_freqs of 1", &o, 1, NULL);
    o.rope_freq_value = 0.0f;
    expect_load("rope_freqs of 0", &o, 0, "rope_freqs.weight");
    o.rope_freq_value = NAN;
    expect_load("rope_freqs NaN", &o, 0, "must be finite and positive");
    o.rope_freq_value = 1e-20f;
    expect_load("rope_freqs 1e-20, no check", &o, 0, NULL);
    expect_load("rope_freqs 1e-20, --check-tensors", &o, 1, "outside 1e-3..1e6");
    o = (model_opts){0};
    o.freq_base = 1e-30f;
    expect_load("rope.freq_base 1e-30", &o, 0, "rope.freq_base");
    o.freq_base = 1e30f;
    expect_load("rope.freq_base 1e30, --check-tensors", &o, 1, "implausibly large");
}

/* ---- special tokens (defect 9) ---- */

typedef struct frag {
    size_t a, b;
    int32_t tok;
} frag;
typedef struct frag_list {
    frag v[512];
    size_t n;
} frag_list;

static void collect(void *ctx, size_t a, size_t b, int32_t tok) {
    frag_list *f = ctx;
    if (f->n < 512) f->v[f->n++] = (frag){a, b, tok};
}

/* The rule as the old code applied it: token by token in priority order, splitting the raw fragments. */
static void reference_split(const tl_tokenizer *t, const char *s, size_t n, int parse_special, frag_list *f) {
    f->n = 0;
    if (n) f->v[f->n++] = (frag){0, n, -1};
    for (uint32_t r = 0; r < t->n_special; r++) {
        const int32_t id = t->special[r];
        if (!parse_special && t->type[id] != TL_TT_USER) continue;
        const size_t len = t->text[id].len;
        frag_list next = {.n = 0};
        for (size_t i = 0; i < f->n; i++) {
            const frag fr = f->v[i];
            if (fr.tok >= 0) {
                next.v[next.n++] = fr;
                continue;
            }
            size_t at = fr.a;
            for (size_t k = fr.a; k + len <= fr.b;) {
                if (memcmp(s + k, t->text[id].p, len)) {
                    k++;
                    continue;
                }
                if (k > at) next.v[next.n++] = (frag){at, k, -1};
                next.v[next.n++] = (frag){k, k + len, id};
                at = k = k + len;
            }
            if (fr.b > at) next.v[next.n++] = (frag){at, fr.b, -1};
        }
        *f = next;
    }
}

/* The image must outlive the model (it is used in place): the caller frees *img after the model. */
static ternlm_model *open_image(const buf *b, void **img) {
    *img = aligned_copy(b);
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    if (ternlm_model_open_memory(*img, b->n, NULL, &m, &err)) fprintf(stderr, "open: %s\n", err.message);
    return m;
}

static void test_special_split(void) {
    static const char *const toks[] = {"<unk>", "a", "b", "c", "d", "x", "ab", "abc", "bcd", "cd", "ab", "dd", "abcd", "b", "xa", "cdx"};
    static const int32_t types[] = {2, 1, 1, 1, 1, 1, 3, 4, 3, 4, 4, 3, 4, 3, 4, 3};
    const int n = (int)(sizeof toks / sizeof toks[0]);
    buf b = build_vocab(toks, types, n, NULL, NULL, 0);
    void *img;
    ternlm_model *m = open_image(&b, &img);
    CHECK(m != NULL, "special-token vocabulary opens");
    if (!m) return free(img), free(b.p);
    int mismatches = 0;
    char text[64];
    for (int it = 0; it < 4000; it++) {
        const size_t len = rnd() % 40;
        for (size_t i = 0; i < len; i++) text[i] = "abcdx"[rnd() % 5];
        for (int ps = 0; ps < 2; ps++) {
            frag_list want, got = {.n = 0};
            reference_split(m->tok, text, len, ps, &want);
            tl_special_split(m->tok, (const uint8_t *)text, len, ps, collect, &got);
            if (got.n != want.n || memcmp(got.v, want.v, got.n * sizeof got.v[0])) mismatches++;
        }
    }
    CHECK(mismatches == 0, "%d of 8000 random texts split differently from the token-by-token rule", mismatches);
    ternlm_model_free(m);
    free(img);
    free(b.p);

    /* 100k USER tokens and a 100 KB prompt: one pass, not 100k */
    enum { NS = 100000 };
    enum { NB = 8 }; /* <unk> a b c d x < u: plain tokens */
    const char **big = malloc((NS + NB) * sizeof *big);
    int32_t *bt = malloc((NS + NB) * sizeof *bt);
    char *names = malloc((size_t)NS * 16);
    for (int i = 0; i < 6; i++) big[i] = toks[i], bt[i] = types[i];
    big[6] = "<", big[7] = "u", bt[6] = bt[7] = 1;
    for (int i = 0; i < NS; i++) {
        snprintf(names + (size_t)i * 16, 16, "<u%d>", i);
        big[NB + i] = names + (size_t)i * 16;
        bt[NB + i] = 4;
    }
    b = build_vocab(big, bt, NS + NB, NULL, NULL, 0);
    m = open_image(&b, &img);
    CHECK(m != NULL, "100k special tokens open");
    const size_t tn = 100000;
    char *prompt = malloc(tn);
    for (size_t i = 0; i < tn; i++) prompt[i] = "<uab<ucd<ux"[rnd() % 11]; /* every '<u' starts 100k candidates */
    memcpy(prompt + 5000, "<u777>", 6);
    int32_t *ids = malloc(tn * sizeof *ids);
    size_t n_ids = 0;
    ternlm_error err = {0};
    const double t0 = tl_now_seconds();
    const ternlm_status st = m ? ternlm_tokenize(m, prompt, tn, 0, ids, tn, &n_ids, &err) : TERNLM_ERR_ARG;
    const double secs = tl_now_seconds() - t0;
    CHECK(st == TERNLM_OK && n_ids == tn - 5, "100 KB prompt tokenized (%zu ids): %s", n_ids, err.message);
    int found = 0;
    for (size_t i = 0; st == TERNLM_OK && i < n_ids; i++) found |= ids[i] == NB + 777;
    CHECK(found, "the USER token <u777> is split out with special parsing off");
    CHECK(secs < 5, "100k special tokens x 100 KB took %.1f s", secs);
    printf("special split: 100k specials x 100 KB prompt in %.3f s\n", secs);
    ternlm_model_free(m);
    free(img), free(prompt), free(ids), free(names), free(big), free(bt), free(b.p);

    /* nested specials (a, aa, ..., 200 a's) over 10k a's: 2M candidate matches; a clear error, not 16 MB per KB */
    enum { NN = 200 };
    const char *nest[NN + 2];
    int32_t nt[NN + 2];
    char *as = malloc(NN + 1);
    memset(as, 'a', NN);
    as[NN] = 0;
    nest[0] = "<unk>", nest[1] = "b", nt[0] = 2, nt[1] = 1;
    for (int i = 0; i < NN; i++) nest[2 + i] = as + NN - 1 - i, nt[2 + i] = 4; /* "a" x (i+1) */
    b = build_vocab(nest, nt, NN + 2, NULL, NULL, 0);
    m = open_image(&b, &img);
    char text_a[10000];
    memset(text_a, 'a', sizeof text_a);
    int32_t few[64];
    CHECK(m && ternlm_tokenize(m, text_a, sizeof text_a, 0, few, 64, &n_ids, &err) == TERNLM_ERR_TOKENIZER &&
              strstr(err.message, "times per byte"),
          "nested specials: %s", err.message);
    CHECK(m && ternlm_tokenize(m, text_a, 20, 0, few, 64, &n_ids, &err) == TERNLM_OK && n_ids == 1, "20 a's: one token (%zu)", n_ids);
    ternlm_model_free(m);
    free(img), free(as), free(b.p);
}

/* ---- the C API contract (defect 11) ---- */

typedef struct log_capture {
    char last[512];
    int n;
} log_capture;
static void capture(void *user, const char *msg) {
    log_capture *lc = user;
    snprintf(lc->last, sizeof lc->last, "%s", msg);
    lc->n++;
}

static void test_api_contract(void) {
    model_opts o = {0};
    buf b = build_model(&o);
    void *img = aligned_copy(&b);
    log_capture lc = {"", 0};
    ternlm_model_params mp = ternlm_model_params_default();
    mp.log = capture;
    mp.log_user = &lc;
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    CHECK(ternlm_model_open_memory(img, b.n, &mp, &m, &err) == TERNLM_OK, "%s", err.message);
    if (!m) return;
    ternlm_session_params sp = ternlm_session_params_default();
    sp.n_ctx = 8;
    sp.n_threads = 100000;
    ternlm_session *s = NULL;
    CHECK(ternlm_session_new(m, &sp, &s, &err) == TERNLM_OK, "%s", err.message);
    const uint32_t limit = TERNLM_MAX_THREADS_PER_CORE * ternlm_cpu_cores();
    CHECK(s && ternlm_session_threads(s) <= limit && strstr(lc.last, "100000 threads"),
          "n_threads 100000 clamped to %u (got %u), warning '%s'", limit, s ? ternlm_session_threads(s) : 0, lc.last);
    const int32_t tok[3] = {1, 2, 3};
    CHECK(s && ternlm_session_eval(s, tok, 3, TERNLM_LOGITS_ALL, &err) == TERNLM_OK, "%s", err.message);
    CHECK(ternlm_session_logits(s, -1) == ternlm_session_logits(s, 2) && ternlm_session_logits(s, 0) != NULL,
          "row -1 is the last row");
    CHECK(ternlm_session_logits(s, -2) == NULL && ternlm_session_logits(s, INT32_MIN) == NULL && ternlm_session_logits(s, 3) == NULL,
          "rows -2, INT_MIN and 3 give NULL");
    float before[NV];
    memcpy(before, ternlm_session_logits(s, -1), sizeof before);
    /* the model freed first: a warning, and the session keeps working (the free waits for it) */
    lc.n = 0;
    ternlm_model_free(m);
    CHECK(lc.n == 1 && strstr(lc.last, "still use this model"), "freeing a model with a live session warns: '%s'", lc.last);
    ternlm_session_rewind(s, 0, NULL);
    CHECK(ternlm_session_eval(s, tok, 3, TERNLM_LOGITS_LAST, &err) == TERNLM_OK &&
              !memcmp(before, ternlm_session_logits(s, -1), sizeof before),
          "the session still evaluates after ternlm_model_free: %s", err.message);
    ternlm_session_free(s); /* frees the model too (LeakSanitizer checks) */
    free(img);
    free(b.p);
}

static void test_templates_b158(void) {
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    CHECK(ternlm_model_open_file(TERNLM_SHARED_DIR "/fixtures/b158-llama3-i2s.gguf", NULL, &m, &err) == TERNLM_OK, "%s",
          err.message);
    if (m) test_templates(m);
    ternlm_model_free(m);
}

/* Usage: test_hardening [group]  (one group only, e.g. to watch it fail on older code) */
int main(int argc, char **argv) {
    static const struct {
        const char *name;
        void (*fn)(void);
    } groups[] = {
        {"loader", test_loader_alignment}, {"out", test_out_untouched},     {"templates", test_templates_b158},
        {"strings", test_unterminated_strings}, {"math", test_math},       {"sampler", test_sampler},
        {"weights", test_weights},         {"special", test_special_split}, {"api", test_api_contract},
    };
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (argc < 2 || !strcmp(argv[1], groups[i].name)) groups[i].fn();
    return check_summary();
}
