/* libFuzzer target: any byte string given to the GGUF reader, whole and in chunks, must fail cleanly or load. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ternlm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = aligned_alloc(64, (size + 64) / 64 * 64);
    memcpy(copy, data, size);
    ternlm_model *m = NULL;
    if (ternlm_model_open_memory(copy, size, NULL, &m, NULL) == TERNLM_OK) {
        ternlm_session *s = NULL;
        ternlm_session_params sp = ternlm_session_params_default();
        sp.n_ctx = 8;
        sp.n_threads = 1;
        if (ternlm_model_get_info(m)->n_embd <= 4096 && ternlm_model_get_info(m)->n_ff <= 4096 && ternlm_session_new(m, &sp, &s, NULL) == TERNLM_OK) {
            const int32_t tok = 0;
            ternlm_session_eval(s, &tok, 1, TERNLM_LOGITS_LAST, NULL);
            ternlm_session_free(s);
        }
        ternlm_model_free(m);
    }
    ternlm_loader *ld = NULL;
    ternlm_loader_new(size, &ld, NULL);
    for (size_t o = 0; o < size; o += 13)
        if (ternlm_loader_push(ld, data + o, size - o < 13 ? size - o : 13, NULL)) break;
    if (ternlm_loader_finish(ld, NULL, &m, NULL) == TERNLM_OK) ternlm_model_free(m);
    ternlm_loader_free(ld);
    free(copy);
    return 0;
}
