/* Issue 16, strict format detection: hand-built GGUFs in the layouts real low-bit files come in. Each one either
 * loads (and its types come from the tensor infos, whatever general.file_type says) or fails with a message that
 * names the layout or type; none loads into garbage. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gguf_bytes.h"
#include "ternlm.h"

enum { E = 128, HD = 64, FF = 128, NV = 4 };

typedef struct tensor {
    const char *name;
    int64_t ne0, ne1;
    uint32_t type;
    uint64_t nbytes; /* what the writer stores, which need not be what the type implies */
} tensor;

/* Bytes of n elements as the format defines them (the fork-only 142/143 get Q2_0's size: they fail before it matters). */
static uint64_t type_bytes(uint32_t type, uint64_t n) {
    switch (type) {
    case 0: return n * 4;
    case 36: return n / 4 + 32;
    case 41: return n / 128 * 18;
    default: return n / 64 * 18;
    }
}

/* A one-layer model of arch `arch` whose 2-D weights have type wtype; q2_group128 writes type 42 at 34 bytes per
 * 128; i2s_sequential writes I2_S at n/4 bytes, each with a `<name>_scale` F32 companion. */
typedef struct spec {
    const char *arch;
    uint32_t wtype, file_type;
    int q2_group128, i2s_sequential, i2s_code3;
} spec;

static buf build(const spec *s) {
    static const struct { const char *name; int64_t ne0, ne1; } names[] = {
        {"token_embd.weight", E, NV},       {"output_norm.weight", E, 1},        {"blk.0.attn_norm.weight", E, 1},
        {"blk.0.attn_q.weight", E, 2 * HD}, {"blk.0.attn_k.weight", E, HD},      {"blk.0.attn_v.weight", E, HD},
        {"blk.0.attn_q_norm.weight", HD, 1}, {"blk.0.attn_k_norm.weight", HD, 1}, {"blk.0.attn_output.weight", 2 * HD, E},
        {"blk.0.ffn_norm.weight", E, 1},    {"blk.0.ffn_gate.weight", E, FF},    {"blk.0.ffn_up.weight", E, FF},
        {"blk.0.ffn_down.weight", FF, E},
    };
    tensor t[32];
    int nt = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const int qk = strstr(names[i].name, "attn_q_norm") || strstr(names[i].name, "attn_k_norm");
        if (qk && strcmp(s->arch, "qwen3")) continue;
        const uint64_t n = (uint64_t)(names[i].ne0 * names[i].ne1);
        const int is_2d = names[i].ne1 > 1;
        tensor x = {names[i].name, names[i].ne0, names[i].ne1, is_2d ? s->wtype : 0, 0};
        x.nbytes = type_bytes(x.type, n);
        if (x.type == 42 && s->q2_group128) x.nbytes = n / 128 * 34;
        if (x.type == 36 && s->i2s_sequential == 1) x.nbytes = n / 4; /* 2: companions beside official sizes */
        t[nt++] = x;
        if (x.type == 36 && s->i2s_sequential) {
            static char scale_names[32][80];
            snprintf(scale_names[nt], sizeof scale_names[nt], "%s_scale", x.name);
            t[nt] = (tensor){scale_names[nt], 1, 1, 0, 4};
            nt++;
        }
    }
    buf b = {0};
    put(&b, "GGUF", 4);
    u32(&b, 3);
    u64(&b, (uint64_t)nt);
    u64(&b, 9);
    char k[96];
    kv_str(&b, "general.architecture", s->arch);
#define KEY(x) (snprintf(k, sizeof k, "%s." x, s->arch), k)
    kv_u32(&b, KEY("embedding_length"), E);
    kv_u32(&b, KEY("block_count"), 1);
    kv_u32(&b, KEY("feed_forward_length"), FF);
    kv_u32(&b, KEY("attention.head_count"), 2);
    kv_u32(&b, KEY("attention.head_count_kv"), 1);
    kv_u32(&b, KEY("context_length"), 64);
    kv_f32(&b, KEY("attention.layer_norm_rms_epsilon"), 1e-6f);
#undef KEY
    kv_u32(&b, "general.file_type", s->file_type);
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        str(&b, t[i].name);
        u32(&b, t[i].ne1 == 1 ? 1 : 2);
        u64(&b, (uint64_t)t[i].ne0);
        if (t[i].ne1 != 1) u64(&b, (uint64_t)t[i].ne1);
        u32(&b, t[i].type);
        u64(&b, off);
        off += (t[i].nbytes + 31) / 32 * 32;
    }
    while (b.n % 32) put(&b, "", 1);
    const size_t data_at = b.n;
    uint8_t *zeros = calloc(1, (size_t)off);
    put(&b, zeros, (size_t)off);
    free(zeros);
    /* norms = 1 and I2_S scales = 1, so every value is finite */
    uint64_t o = 0;
    for (int i = 0; i < nt; i++) {
        uint8_t *d = b.p + data_at + o;
        const float one = 1.0f;
        if (t[i].type == 0)
            for (uint64_t j = 0; j < t[i].nbytes / 4; j++) memcpy(d + 4 * j, &one, 4);
        if (t[i].type == 36 && s->i2s_sequential != 1) memcpy(d + t[i].nbytes - 32, &one, 4);
        if (t[i].type == 36 && s->i2s_code3 && !strcmp(t[i].name, "blk.0.ffn_up.weight")) d[77] |= 0x30; /* shift 4 */
        o += (t[i].nbytes + 31) / 32 * 32;
    }
    return b;
}

/* Opens the built file from memory; returns the status and leaves the message in err. */
static ternlm_status open_spec(const spec *s, int check_tensors, ternlm_model **m, ternlm_error *err) {
    buf b = build(s);
    uint8_t *image = aligned_alloc(64, (b.n + 63) / 64 * 64);
    memcpy(image, b.p, b.n);
    free(b.p);
    ternlm_model_params p = ternlm_model_params_default();
    p.check_tensors = check_tensors;
    *m = NULL;
    const ternlm_status st = ternlm_model_open_memory(image, b.n, &p, m, err);
    ternlm_model_free(*m); /* callers only look at the status; the model refers to the image */
    *m = NULL;
    free(image);
    return st;
}

static void expect_error(const char *what, const spec *s, int check_tensors, ternlm_status code, const char *want) {
    ternlm_model *m;
    ternlm_error err = {0};
    const ternlm_status st = open_spec(s, check_tensors, &m, &err);
    CHECK(st == code, "%s: status %d (want %d): %s", what, st, code, err.message);
    CHECK(strstr(err.message, want) != NULL, "%s: message '%s' does not name '%s'", what, err.message, want);
    printf("%-34s -> %s\n", what, err.message);
}

/* Loads and reports the weight type the tensors give. */
static void expect_loads(const char *what, const spec *s, const char *weight_type) {
    buf b = build(s);
    uint8_t *image = aligned_alloc(64, (b.n + 63) / 64 * 64);
    memcpy(image, b.p, b.n);
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    ternlm_model_params p = ternlm_model_params_default();
    p.check_tensors = 1;
    CHECK(ternlm_model_open_memory(image, b.n, &p, &m, &err) == TERNLM_OK, "%s: %s", what, err.message);
    if (m) {
        CHECK(!strcmp(ternlm_model_get_info(m)->weight_type, weight_type), "%s: weight type %s, want %s", what,
              ternlm_model_get_info(m)->weight_type, weight_type);
        ternlm_session *ss = NULL;
        ternlm_session_params sp = ternlm_session_params_default();
        sp.n_threads = 1;
        const int32_t tok[2] = {1, 3};
        CHECK(ternlm_session_new(m, &sp, &ss, &err) == TERNLM_OK && ternlm_session_eval(ss, tok, 2, TERNLM_LOGITS_ALL, &err) == TERNLM_OK,
              "%s: eval: %s", what, err.message);
        ternlm_session_free(ss);
    }
    ternlm_model_free(m);
    free(image);
    free(b.p);
}

int main(void) {
    spec s = {"qwen3", 41, 40, 0, 0, 0};
    expect_loads("qwen3 Q1_0", &s, "Q1_0");
    s.file_type = 41; /* PrismML's ftype numbering: upstream reads 41 as Q2_0; the tensors say Q1_0 */
    expect_loads("qwen3 Q1_0, general.file_type 41", &s, "Q1_0");
    s.wtype = 42;
    expect_loads("qwen3 Q2_0 (group 64)", &s, "Q2_0");
    s.q2_group128 = 1;
    expect_error("qwen3 Q2_0 group 128", &s, 0, TERNLM_ERR_UNSUPPORTED, "group-128");
    s = (spec){"qwen3", 142, 41, 0, 0, 0};
    expect_error("type 142", &s, 0, TERNLM_ERR_UNSUPPORTED, "PQ2_0");
    s.wtype = 143;
    expect_error("type 143", &s, 0, TERNLM_ERR_UNSUPPORTED, "PTQ1_0");
    s = (spec){"llama", 36, 40, 0, 0, 0};
    expect_loads("llama I2_S (official layout)", &s, "I2_S");
    s.i2s_code3 = 1;
    ternlm_model *m;
    ternlm_error err = {0};
    CHECK(open_spec(&s, 0, &m, &err) == TERNLM_OK, "I2_S code 3 loads without --check-tensors: %s", err.message);
    expect_error("I2_S code 3, --check-tensors", &s, 1, TERNLM_ERR_MODEL, "invalid I2_S code 3");
    s = (spec){"llama", 36, 40, 0, 1, 0};
    expect_error("I2_S sequential + _scale tensors", &s, 0, TERNLM_ERR_UNSUPPORTED, "sequential I2_S layout");
    s.i2s_sequential = 2;
    expect_error("I2_S + _scale tensors, padded", &s, 0, TERNLM_ERR_UNSUPPORTED, "here 'token_embd.weight'");
    return check_summary();
}
