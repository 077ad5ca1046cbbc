#define _POSIX_C_SOURCE 200809L
/* Hostile and broken GGUF files: each must fail with its own clear error, through every way in (memory,
 * file, incremental), never crash. Built to run under ASan/UBSan. The files are generated here from a small
 * valid llama model, then broken one field at a time; real fixtures are also truncated at many points. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gguf_bytes.h"
#include "json.h"
#include "ternlm.h"

/* ---- the valid base model and its knobs ---- */

typedef struct spec {
    uint32_t version, align;
    const char *arch;
    int n_kv_extra;                 /* extra KVs appended (set by custom writers) */
    void (*extra_kv)(buf *b);       /* writes n_kv_extra records */
    int drop_tensor;                /* index of a tensor to leave out, or -1 */
    int bad_shape;                  /* tensor index whose ne[1] is wrong, or -1 */
    uint32_t type_override;         /* for tensor 0 when non-zero */
    int64_t ne0_override;           /* for tensor 0 when non-zero */
    uint64_t offset_add;            /* added to the last tensor's offset */
    int skip_layers_key;
    int truncate_data;              /* bytes removed from the end */
} spec;

#define E 8
#define FF 16
#define NV 4

typedef struct tdesc {
    const char *name;
    int64_t ne0, ne1;
} tdesc;

static const tdesc k_tensors[] = {
    {"token_embd.weight", E, NV}, {"output_norm.weight", E, 1},  {"blk.0.attn_norm.weight", E, 1},
    {"blk.0.attn_q.weight", E, E}, {"blk.0.attn_k.weight", E, E}, {"blk.0.attn_v.weight", E, E},
    {"blk.0.attn_output.weight", E, E}, {"blk.0.ffn_norm.weight", E, 1}, {"blk.0.ffn_gate.weight", E, FF},
    {"blk.0.ffn_up.weight", E, FF}, {"blk.0.ffn_down.weight", FF, E},
};
#define NT (int)(sizeof k_tensors / sizeof k_tensors[0])

static buf build(const spec *s) {
    buf b = {0};
    put(&b, "GGUF", 4);
    u32(&b, s->version);
    const int nt = NT - (s->drop_tensor >= 0);
    u64(&b, (uint64_t)nt);
    u64(&b, (uint64_t)(7 - s->skip_layers_key + (s->align ? 1 : 0) + s->n_kv_extra));
    kv_str(&b, "general.architecture", s->arch);
    kv_u32(&b, "llama.embedding_length", E);
    if (!s->skip_layers_key) kv_u32(&b, "llama.block_count", 1);
    kv_u32(&b, "llama.feed_forward_length", FF);
    kv_u32(&b, "llama.attention.head_count", 2);
    kv_u32(&b, "llama.context_length", 64);
    kv_f32(&b, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    if (s->align) kv_u32(&b, "general.alignment", s->align);
    if (s->extra_kv) s->extra_kv(&b);
    const uint64_t A = s->align ? s->align : 32;
    uint64_t off = 0;
    for (int i = 0; i < NT; i++) {
        if (i == s->drop_tensor) continue;
        const tdesc *t = &k_tensors[i];
        str(&b, t->name);
        const int64_t ne0 = i == 0 && s->ne0_override ? s->ne0_override : t->ne0;
        const int64_t ne1 = i == s->bad_shape ? t->ne1 + 1 : t->ne1;
        u32(&b, ne1 == 1 ? 1 : 2);
        u64(&b, (uint64_t)ne0);
        if (ne1 != 1) u64(&b, (uint64_t)ne1);
        u32(&b, i == 0 && s->type_override ? s->type_override : 0);
        u64(&b, off + (i == NT - 1 ? s->offset_add : 0));
        off += ((uint64_t)(ne0 * ne1 * 4) + A - 1) / A * A;
    }
    while (b.n % A) put(&b, "", 1);
    const size_t data = (size_t)off;
    uint8_t *zeros = calloc(1, data);
    put(&b, zeros, data - (size_t)s->truncate_data);
    free(zeros);
    return b;
}

static spec base(void) {
    spec s = {3, 0, "llama", 0, NULL, -1, -1, 0, 0, 0, 0, 0};
    return s;
}

/* ---- running a case through every entry point ---- */

static void expect_memory(const char *name, const uint8_t *p, size_t n, const char *want) {
    uint8_t *copy = aligned_alloc(64, (n + 64) / 64 * 64);
    memcpy(copy, p, n);
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    const ternlm_status st = ternlm_model_open_memory(copy, n, NULL, &m, &err);
    CHECK(st != TERNLM_OK && m == NULL, "%s: expected an error, got none", name);
    CHECK(st == TERNLM_OK || strstr(err.message, want) != NULL, "%s: error '%s' does not mention '%s'", name, err.message, want);
    ternlm_model_free(m);
    free(copy);
}

static void expect_incremental(const char *name, const uint8_t *p, size_t n, const char *want, size_t chunk) {
    ternlm_loader *ld;
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    ternlm_loader_new(n, &ld, &err);
    ternlm_status st = TERNLM_OK;
    for (size_t o = 0; o < n && !st; o += chunk) st = ternlm_loader_push(ld, p + o, o + chunk > n ? n - o : chunk, &err);
    if (!st) st = ternlm_loader_finish(ld, NULL, &m, &err);
    CHECK(st != TERNLM_OK && m == NULL, "%s (incremental): expected an error", name);
    CHECK(st == TERNLM_OK || strstr(err.message, want) != NULL, "%s (incremental): '%s' lacks '%s'", name, err.message, want);
    ternlm_model_free(m);
    ternlm_loader_free(ld);
}

static void expect_file(const char *name, const uint8_t *p, size_t n, const char *want) {
#if defined(__wasi__) || defined(__EMSCRIPTEN__)
    (void)name, (void)p, (void)n, (void)want; /* no temporary files there; memory and incremental cover it */
#else
    char path[] = "/tmp/ternlm-malformed-XXXXXX";
    const int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (f) fwrite(p, 1, n, f), fclose(f);
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    const ternlm_status st = ternlm_model_open_file(path, NULL, &m, &err);
    CHECK(st != TERNLM_OK, "%s (file): expected an error", name);
    CHECK(strstr(err.message, want) && strstr(err.message, path), "%s (file): '%s' lacks '%s' or the path", name, err.message, want);
    ternlm_model_free(m);
    remove(path);
#endif
}

static void expect(const char *name, const buf *b, const char *want) {
    expect_memory(name, b->p, b->n, want);
    expect_incremental(name, b->p, b->n, want, 7);
    expect_incremental(name, b->p, b->n, want, 4096);
    expect_file(name, b->p, b->n, want);
}

static void expect_spec(const char *name, const spec *s, const char *want) {
    buf b = build(s);
    expect(name, &b, want);
    free(b.p);
}

/* Patch the u64 / u32 at a byte offset of the base file. */
static void expect_patch(const char *name, size_t at, const void *val, size_t len, const char *want) {
    spec s = base();
    buf b = build(&s);
    memcpy(b.p + at, val, len);
    expect(name, &b, want);
    free(b.p);
}

static size_t offset_of(const buf *b, const char *text) {
    for (size_t i = 0; i + strlen(text) <= b->n; i++)
        if (!memcmp(b->p + i, text, strlen(text))) return i;
    return 0;
}

/* ---- extra KV writers ---- */
static void kv_bad_type(buf *b) { str(b, "x.bad"); u32(b, 13); u32(b, 0); }
static void kv_bool2(buf *b) { str(b, "x.flag"); u32(b, 7); put(b, "\x02", 1); }
static void kv_arr_arr(buf *b) { str(b, "x.arr"); u32(b, 9); u32(b, 9); u64(b, 1); }
static void kv_arr_huge(buf *b) { str(b, "x.arr"); u32(b, 9); u32(b, 4); u64(b, 1ull << 62); }
static void kv_arr_past(buf *b) { str(b, "x.arr"); u32(b, 9); u32(b, 10); u64(b, 1000000); }
static void kv_str_huge(buf *b) { str(b, "x.s"); u32(b, 8); u64(b, 1ull << 63); }
static void kv_dup(buf *b) { kv_u32(b, "llama.context_length", 5); }
static void kv_bad_utf8(buf *b) { str(b, "x.\xff\xfe"); u32(b, 4); u32(b, 1); }
static void kv_empty_key(buf *b) { str(b, ""); u32(b, 4); u32(b, 1); }
static void kv_align_u64(buf *b) { str(b, "general.alignment"); u32(b, 10); u64(b, 32); }
static void kv_split(buf *b) { str(b, "split.count"); u32(b, 2); uint16_t v = 3; put(b, &v, 2); }
static void kv_layers_str(buf *b) { kv_str(b, "llama.block_count", "one"); }
static void kv_eps_nan(buf *b) { kv_f32(b, "llama.rope.freq_base", 0.0f / 0.0f); }
static void kv_heads_kv(buf *b) { kv_u32(b, "llama.attention.head_count_kv", 3); }
static void kv_tok_int(buf *b) {
    kv_str(b, "tokenizer.ggml.model", "llama");
    str(b, "tokenizer.ggml.tokens"); u32(b, 9); u32(b, 4); u64(b, NV);
    for (int i = 0; i < NV; i++) u32(b, (uint32_t)i);
}
static void kv_tok_types(buf *b) {
    kv_str(b, "tokenizer.ggml.model", "llama");
    str(b, "tokenizer.ggml.tokens"); u32(b, 9); u32(b, 8); u64(b, NV);
    for (int i = 0; i < NV; i++) str(b, i == 0 ? "a" : i == 1 ? "b" : i == 2 ? "c" : "d");
    str(b, "tokenizer.ggml.token_type"); u32(b, 9); u32(b, 5); u64(b, 2); u32(b, 1); u32(b, 1);
}
static void kv_tok_bos(buf *b) {
    kv_str(b, "tokenizer.ggml.model", "llama");
    str(b, "tokenizer.ggml.tokens"); u32(b, 9); u32(b, 8); u64(b, NV);
    for (int i = 0; i < NV; i++) str(b, i == 0 ? "a" : i == 1 ? "b" : i == 2 ? "c" : "d");
    kv_u32(b, "tokenizer.ggml.bos_token_id", 99);
}
static void kv_tok_nomerges(buf *b) {
    kv_str(b, "tokenizer.ggml.model", "gpt2");
    str(b, "tokenizer.ggml.tokens"); u32(b, 9); u32(b, 8); u64(b, NV);
    for (int i = 0; i < NV; i++) str(b, i == 0 ? "a" : i == 1 ? "b" : i == 2 ? "c" : "d");
}
static void kv_tok_model(buf *b) { kv_str(b, "tokenizer.ggml.model", "wordpiece"); }

/* A base file plus the n_kv KV records that w writes. */
static void extra_case(const char *name, void (*w)(buf *), int n_kv, const char *want) {
    spec s = base();
    s.n_kv_extra = n_kv;
    s.extra_kv = w;
    expect_spec(name, &s, want);
}

/* Truncate a real fixture at many points: all must fail cleanly. */
static void truncations(const char *fixture, size_t step_header, int n_random) {
    size_t n;
    char *bytes = read_whole_file(fixture, &n);
    CHECK(bytes != NULL, "missing fixture %s", fixture);
    if (!bytes) return;
    uint8_t *copy = aligned_alloc(64, (n + 64) / 64 * 64);
    int bad = 0;
    uint64_t rng = 12345;
    for (int k = 0; k < 4096 + n_random; k++) {
        size_t cut;
        if (k < 4096) cut = (size_t)k * step_header;
        else {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            cut = (size_t)(rng >> 33) % n;
        }
        if (cut >= n) continue;
        memcpy(copy, bytes, cut);
        ternlm_model *m = NULL;
        ternlm_error err = {0};
        if (ternlm_model_open_memory(copy, cut, NULL, &m, &err) == TERNLM_OK) bad++;
        else if (!strstr(err.message, "truncated") && !strstr(err.message, "data ends at byte") &&
                 !strstr(err.message, "shorter than") && !strstr(err.message, "impossible for a file") &&
                 !strstr(err.message, "runs past the end") && !strstr(err.message, "needs at least")) {
            fprintf(stderr, "cut at %zu: unexpected message '%s'\n", cut, err.message);
            bad++;
        }
        ternlm_model_free(m);
    }
    CHECK(bad == 0, "%s: %d truncations did not fail with a truncation message", fixture, bad);
    free(copy);
    free(bytes);
}

int main(void) {
    spec s = base();
    buf good = build(&s);
    {
        uint8_t *copy = aligned_alloc(64, (good.n + 64) / 64 * 64);
        memcpy(copy, good.p, good.n);
        ternlm_model *m = NULL;
        ternlm_error err = {0};
        CHECK(ternlm_model_open_memory(copy, good.n, NULL, &m, &err) == TERNLM_OK, "the base file must load: %s", err.message);
        ternlm_model_free(m);
        free(copy);
    }
    /* header */
    { buf b = {0}; put(&b, "GGUF\3\0\0\0", 8); expect("short file", &b, "shorter than the 24-byte header"); free(b.p); }
    expect_patch("bad magic", 0, "GGML", 4, "not a GGUF file");
    expect_patch("version 1", 4, "\1\0\0\0", 4, "version 1 is not supported");
    expect_patch("version 4", 4, "\4\0\0\0", 4, "version 4 is not supported");
    expect_patch("big-endian", 4, "\0\0\0\3", 4, "big-endian");
    const uint64_t huge = 1ull << 63, big = 100000;
    expect_patch("huge n_tensors", 8, &huge, 8, "tensor count");
    expect_patch("huge n_kv", 16, &huge, 8, "metadata count");
    expect_patch("n_kv beyond file", 16, &big, 8, "metadata count");
    /* metadata */
    const size_t key0 = 24;
    const uint64_t zero = 0, past = 60000;
    expect_patch("empty first key", key0, &zero, 8, "length 0");
    expect_patch("key length 2^63", key0, &huge, 8, "metadata key");
    expect_patch("key past the end", key0, &past, 8, "runs past the end");
    extra_case("invalid value type", kv_bad_type, 1, "invalid value type 13");
    extra_case("bool value 2", kv_bool2, 1, "bool value 2");
    extra_case("array of arrays", kv_arr_arr, 1, "arrays of arrays");
    extra_case("array count 2^62", kv_arr_huge, 1, "array count");
    extra_case("array past the end", kv_arr_past, 1, "needs at least");
    extra_case("string length 2^63", kv_str_huge, 1, "length");
    extra_case("duplicate key", kv_dup, 1, "duplicate metadata key 'llama.context_length'");
    extra_case("key not UTF-8", kv_bad_utf8, 1, "not valid UTF-8");
    extra_case("empty key", kv_empty_key, 1, "length 0");
    extra_case("alignment as u64", kv_align_u64, 1, "must be u32");
    extra_case("split file", kv_split, 1, "split GGUF");
    s = base(); s.skip_layers_key = 1; s.n_kv_extra = 1; s.extra_kv = kv_layers_str;
    expect_spec("hparam of wrong type", &s, "expected an integer");
    extra_case("rope base NaN", kv_eps_nan, 1, "finite and positive");
    extra_case("head_count_kv does not divide", kv_heads_kv, 1, "must divide");
    extra_case("tokens of wrong type", kv_tok_int, 2, "array of strings");
    extra_case("token_type length", kv_tok_types, 3, "entries for");
    extra_case("bos out of range", kv_tok_bos, 3, "outside the vocabulary");
    extra_case("gpt2 without merges", kv_tok_nomerges, 2, "merges");
    extra_case("unknown tokenizer", kv_tok_model, 1, "unsupported tokenizer model 'wordpiece'");
    s = base(); s.align = 48; expect_spec("alignment 48", &s, "general.alignment is 48");
    s = base(); s.align = 1u << 24; expect_spec("alignment 16M", &s, "general.alignment is");
    /* tensor infos */
    const size_t t0 = offset_of(&good, "token_embd.weight") - 8;
    expect_patch("empty tensor name", t0, &zero, 8, "tensor name");
    const uint64_t name64 = 64;
    expect_patch("tensor name of 64 bytes", t0, &name64, 8, "outside 1..63");
    const size_t nd = t0 + 8 + strlen("token_embd.weight");
    expect_patch("n_dims 5", nd, "\5\0\0\0", 4, "n_dims is 5");
    expect_patch("n_dims 0", nd, "\0\0\0\0", 4, "n_dims is 0");
    expect_patch("zero dimension", nd + 4, &zero, 8, "dimension 0 is 0");
    const uint64_t d2_40 = 1ull << 40;
    {
        spec q = base();
        buf b = build(&q);
        memcpy(b.p + nd + 4, &d2_40, 8);
        memcpy(b.p + nd + 12, &d2_40, 8);
        expect("element count overflow", &b, "overflows 64 bits");
        free(b.p);
    }
    {
        spec q = base();
        buf b = build(&q);
        const uint64_t d = 1ull << 62;
        memcpy(b.p + nd + 4, &d, 8);
        memcpy(b.p + nd + 12, "\1\0\0\0\0\0\0\0", 8);
        expect("byte size overflow", &b, "byte size overflows");
        free(b.p);
    }
    s = base(); s.type_override = 37; expect_spec("type 37", &s, "I8_S");
    s = base(); s.type_override = 1000; expect_spec("type 1000", &s, "unsupported tensor type 1000");
    s = base(); s.type_override = 15; expect_spec("type Q8_K", &s, "activation format");
    s = base(); s.type_override = 8; expect_spec("Q8_0 row of 8", &s, "not a multiple of Q8_0's block");
    s = base(); s.type_override = 36; expect_spec("I2_S row of 8", &s, "not a multiple of I2_S's block");
    s = base(); s.offset_add = 4; expect_spec("misaligned offset", &s, "not a multiple of the alignment");
    s = base(); s.offset_add = 1u << 20; expect_spec("offset past the end", &s, "data ends at byte");
    {
        spec q = base();
        buf b = build(&q);
        const size_t o = offset_of(&b, "output_norm.weight") + strlen("output_norm.weight") + 4 + 8 + 4;
        memcpy(b.p + o, &zero, 8); /* output_norm at offset 0: overlaps token_embd */
        expect("overlapping tensors", &b, "overlap");
        free(b.p);
    }
    { spec q = base(); buf b = build(&q); b.n = offset_of(&b, "blk.0.ffn_up.weight") + 5; expect("cut in tensor infos", &b, "runs past the end of the file"); free(b.p); }
    s = base(); s.truncate_data = 16; expect_spec("cut in tensor data", &s, "data ends at byte");
    {
        spec q = base();
        buf b = build(&q);
        memcpy(b.p + offset_of(&b, "blk.0.attn_v.weight"), "blk.0.attn_k.weight", 19);
        expect("duplicate tensor name", &b, "duplicate tensor name");
        free(b.p);
    }
    /* model level */
    s = base(); s.arch = "mamba"; expect_spec("unknown arch", &s, "unsupported architecture 'mamba'");
    s = base(); s.drop_tensor = NT - 1; expect_spec("missing tensor", &s, "missing tensor 'blk.0.ffn_down.weight'");
    s = base(); s.bad_shape = 3; expect_spec("wrong shape", &s, "'blk.0.attn_q.weight' has shape [8, 9, 1, 1], expected [8, 8]");
    s = base(); s.skip_layers_key = 1; expect_spec("missing hparam", &s, "missing metadata key 'llama.block_count'");
    free(good.p);
    /* real fixtures cut at many points */
    truncations(TERNLM_SHARED_DIR "/fixtures/llama-stories260k.gguf", 7, 300);
    truncations(TERNLM_SHARED_DIR "/fixtures/bitnet-spm-tq1_0.gguf", 211, 100);
    truncations(TERNLM_SHARED_DIR "/fixtures/tokenizer/ggml-vocab-gpt-2.gguf", 401, 100);
    return check_summary();
}
