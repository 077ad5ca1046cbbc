/* libFuzzer target: the Jinja renderer. The input is a template, then NUL-separated message contents (roles
 * alternate user/assistant, a leading "system" when the first content starts with 'S'). Every render must end
 * with text or TERNLM_ERR_TEMPLATE, within the documented limits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ternlm.h"

static ternlm_model *g_model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    ternlm_model_open_file(TERNLM_SHARED_DIR "/fixtures/tokenizer/llama3-vocab.gguf", NULL, &g_model, NULL);
    if (!g_model) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    ternlm_chat_message msgs[16];
    size_t n = 0;
    const char *p = text + strlen(text) + 1;
    for (const char *end = text + size; p <= end && n < 16; p += strlen(p) + 1, n++)
        msgs[n] = (ternlm_chat_message){n == 0 && *p == 'S' ? "system" : n % 2 ? "assistant" : "user", p};
    static char out[1 << 16];
    size_t len;
    const ternlm_status st = ternlm_chat_template_render(g_model, text, msgs, n, (int)(size & 1), out, sizeof out, &len, NULL);
    if (st != TERNLM_OK && st != TERNLM_ERR_TEMPLATE && st != TERNLM_ERR_ARG) abort();
    free(text);
    return 0;
}
