/* libFuzzer target: tokenize and detokenize arbitrary bytes with the Llama 3 BPE and SentencePiece vocabularies.
 * Invariants: no crash; byte-level BPE without special parsing round-trips exactly; the stream emits valid UTF-8. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ternlm.h"

static ternlm_model *g_bpe, *g_spm; /* loaded once per fuzzing process */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    ternlm_model_open_file(TERNLM_SHARED_DIR "/fixtures/tokenizer/llama3-vocab.gguf", NULL, &g_bpe, NULL);
    ternlm_model_open_file(TERNLM_SHARED_DIR "/fixtures/tokenizer/ggml-vocab-llama-spm.gguf", NULL, &g_spm, NULL);
    if (!g_bpe || !g_spm) abort();
    return 0;
}

static void check_stream(const ternlm_model *m, const int32_t *ids, size_t n) {
    ternlm_text_stream *ts = ternlm_text_stream_new(m, 0);
    size_t len;
    for (size_t i = 0; i < n; i++) {
        const char *p = ternlm_text_stream_push(ts, ids[i], &len);
        for (size_t k = 0; k < len; k++)
            if ((unsigned char)p[k] >= 0xF8) abort(); /* never an invalid lead byte */
    }
    ternlm_text_stream_flush(ts, &len);
    ternlm_text_stream_free(ts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    const size_t cap = size * 2 + 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    char *back = malloc(size * 4 + 16);
    size_t n, bn;
    for (int special = 0; special < 2; special++) {
        const int flags = special ? TERNLM_TOKENIZE_PARSE_SPECIAL | TERNLM_TOKENIZE_ADD_SPECIAL : 0;
        if (ternlm_tokenize(g_bpe, (const char *)data, size, flags, ids, cap, &n, NULL)) abort();
        ternlm_detokenize(g_bpe, ids, n, 0, back, size * 4 + 16, &bn, NULL);
        if (!special && (bn != size || memcmp(back, data, size))) abort(); /* BPE is lossless */
        check_stream(g_bpe, ids, n);
        if (ternlm_tokenize(g_spm, (const char *)data, size, flags, ids, cap, &n, NULL)) abort();
        ternlm_detokenize(g_spm, ids, n, TERNLM_DETOK_SPECIAL, back, size * 4 + 16, &bn, NULL);
        check_stream(g_spm, ids, n);
    }
    free(ids);
    free(back);
    return 0;
}
