/* libFuzzer target: any byte string given to the GGUF reader must fail cleanly or load; a loaded model is then
 * used through the whole public API (tokenizer, chat template, one evaluated token). Seeds: complete models
 * from ../shared/fixtures (copied at run time) and tests/fuzz/corpus-gguf. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = aligned_alloc(64, (size + 64) / 64 * 64);
    memcpy(copy, data, size);
    ternlm_model_params mp = ternlm_model_params_default();
    mp.check_tensors = size & 1; /* both ways, chosen by the input */
    ternlm_model *m = NULL;
    if (ternlm_model_open_memory(copy, size, &mp, &m, NULL) == TERNLM_OK) {
        fuzz_exercise(m);
        ternlm_model_free(m);
    }
    free(copy);
    return 0;
}
