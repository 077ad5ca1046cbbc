/* libFuzzer target: chat token building with real tokenizers: the b158 fixture (bitnet format), the Qwen3
 * vocabulary (its file template, else ChatML) and Llama 3 (header tokens). The input is NUL-separated messages;
 * a short buffer must report the size needed, and that size must then be enough. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ternlm.h"

static ternlm_model *g_models[3];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *paths[3] = {TERNLM_SHARED_DIR "/fixtures/b158-llama3-i2s.gguf", TERNLM_SHARED_DIR "/fixtures/tokenizer/qwen3-vocab.gguf",
                            TERNLM_SHARED_DIR "/fixtures/tokenizer/llama3-vocab.gguf"};
    ternlm_model_params mp = ternlm_model_params_default();
    for (int i = 0; i < 3; i++) {
        mp.pretokenizer = i == 1 ? "llama3" : NULL; /* Qwen's own split is not built in; its chat format is what matters */
        if (ternlm_model_open_file(paths[i], &mp, &g_models[i], NULL)) abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 8192) return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    ternlm_chat_message msgs[8];
    size_t n = 0;
    static const char *const roles[] = {"system", "user", "assistant", "user"};
    for (const char *p = text, *end = text + size; p <= end && n < 8; p += strlen(p) + 1, n++)
        msgs[n] = (ternlm_chat_message){roles[n == 0 ? 0 : 1 + (n - 1) % 3], p};
    for (int i = 0; i < 3; i++) {
        size_t need = 0, got = 0;
        const ternlm_status st = ternlm_chat_tokens(g_models[i], msgs, n, (int)(size & 1), NULL, 0, &need, NULL);
        if (st != TERNLM_OK && st != TERNLM_ERR_ARG) abort();
        int32_t *ids = malloc((need ? need : 1) * sizeof *ids);
        if (ternlm_chat_tokens(g_models[i], msgs, n, (int)(size & 1), ids, need, &got, NULL) != TERNLM_OK || got != need) abort();
        free(ids);
    }
    free(text);
    return 0;
}
