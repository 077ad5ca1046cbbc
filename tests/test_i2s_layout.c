/* I2_S in the 64-element layout of bitnet.cpp's NEON quantizer (issue 16). The b158 fixture (official 128-element
 * layout) is rewritten here into the 64-element layout: with i2s_layout = 64 its logits equal the original's bit
 * for bit; read as the official layout, the same bytes give other logits (the silent garbage ARM users saw). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ternlm.h"

#define FIXTURE TERNLM_SHARED_DIR "/fixtures/b158-llama3-i2s.gguf"

static unsigned char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(*n);
    if (p && fread(p, 1, *n, f) != *n) free(p), p = NULL;
    fclose(f);
    return p;
}

/* The layouts, element k of a tensor: official byte 32*(k/128) + k%32 at shift 6 - 2*((k%128)/32); NEON quantizer's
 * byte 16*(k/64) + k%16 at shift 6 - 2*((k%64)/16). */
static int code128(const unsigned char *d, size_t k) { return (d[32 * (k / 128) + k % 32] >> (6 - 2 * ((k % 128) / 32))) & 3; }
static void put64(unsigned char *d, size_t k, int code) { d[16 * (k / 64) + k % 16] |= (unsigned char)(code << (6 - 2 * ((k % 64) / 16))); }

/* Rewrites every I2_S tensor of the file image into the 64-element layout; returns how many. */
static int to_layout64(const ternlm_model *m, unsigned char *file, size_t size) {
    uint64_t end = 0;
    const uint32_t n_t = ternlm_model_tensor_count(m);
    for (uint32_t i = 0; i < n_t; i++) {
        ternlm_tensor_info t;
        ternlm_model_tensor(m, i, &t);
        if (t.offset + t.nbytes > end) end = t.offset + t.nbytes;
    }
    const size_t data = size - (size_t)end; /* the fixture ends with its last tensor */
    CHECK(data % 32 == 0, "data section at %zu is not 32-byte aligned", data);
    int n = 0;
    for (uint32_t i = 0; i < n_t; i++) {
        ternlm_tensor_info t;
        ternlm_model_tensor(m, i, &t);
        if (strcmp(t.type, "I2_S")) continue;
        const size_t elems = (size_t)(t.ne[0] * t.ne[1]);
        unsigned char *d = file + data + t.offset, *codes = calloc(elems / 4, 1);
        int bad = 0;
        for (size_t k = 0; k < elems; k++) {
            const int c = code128(d, k);
            bad |= c == 3;
            put64(codes, k, c);
        }
        CHECK(!bad, "%s: the official layout has no code 3, so this is where the data is", t.name);
        memcpy(d, codes, elems / 4);
        free(codes);
        n++;
    }
    return n;
}

static float *logits_of(const void *file, size_t size, int layout, ternlm_status *st_out) {
    ternlm_model_params p = ternlm_model_params_default();
    p.i2s_layout = layout;
    ternlm_model *m = NULL;
    ternlm_session *s = NULL;
    ternlm_error err = {0};
    float *out = NULL;
    *st_out = ternlm_model_open_memory(file, size, &p, &m, &err);
    if (!*st_out) {
        ternlm_session_params sp = ternlm_session_params_default();
        sp.n_ctx = 64;
        static const int32_t prompt[] = {128000, 791, 6864, 315, 9822, 374};
        const uint32_t nv = ternlm_model_get_info(m)->n_vocab;
        CHECK(!ternlm_session_new(m, &sp, &s, &err) && !ternlm_session_eval(s, prompt, 6, TERNLM_LOGITS_ALL, &err), "eval: %s", err.message);
        out = malloc(6 * nv * sizeof *out);
        for (int i = 0; s && out && i < 6; i++) memcpy(out + (size_t)i * nv, ternlm_session_logits(s, i), nv * sizeof *out);
    }
    ternlm_session_free(s);
    ternlm_model_free(m);
    return out;
}

int main(void) {
    size_t size = 0;
    unsigned char *orig = read_file(FIXTURE, &size), *neon = orig ? malloc(size) : NULL;
    CHECK(orig && neon, "read %s", FIXTURE);
    if (!neon) return check_summary();
    memcpy(neon, orig, size);
    ternlm_model *m = NULL;
    ternlm_model_open_memory(orig, size, NULL, &m, NULL);
    const uint32_t nv = m ? ternlm_model_get_info(m)->n_vocab : 0;
    const int n_i2s = m ? to_layout64(m, neon, size) : 0;
    ternlm_model_free(m);
    CHECK(n_i2s == 21, "21 I2_S tensors rewritten (got %d)", n_i2s);

    ternlm_status st;
    float *want = logits_of(orig, size, 0, &st), *got = logits_of(neon, size, 64, &st), *wrong = logits_of(neon, size, 0, &st);
    CHECK(want && got && wrong, "three evaluations");
    if (want && got && wrong) {
        CHECK(!memcmp(want, got, 6 * (size_t)nv * sizeof *want), "i2s_layout 64 gives the official layout's logits bit for bit");
        float diff = 0;
        for (size_t i = 0; i < 6 * (size_t)nv; i++) diff = diff > (want[i] - wrong[i]) * (want[i] - wrong[i]) ? diff : (want[i] - wrong[i]) * (want[i] - wrong[i]);
        CHECK(diff > 1.0f, "read as the official layout, the 64-layout bytes give other logits (max squared diff %g)", diff);
    }
    float *official_128 = logits_of(orig, size, 128, &st);
    CHECK(official_128 && want && !memcmp(want, official_128, 6 * (size_t)nv * sizeof *want), "i2s_layout 128 is the default");
    CHECK(!logits_of(orig, size, 32, &st) && st == TERNLM_ERR_ARG, "i2s_layout 32 is refused (status %d)", st);
    free(want), free(got), free(wrong), free(official_128);
    free(orig), free(neon);
    return check_summary();
}
