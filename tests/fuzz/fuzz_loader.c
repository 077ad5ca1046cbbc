/* libFuzzer target: the incremental loader (the browser and Node path). The first 8 bytes seed the chunk sizes
 * (1 byte to 200 KB, so headers longer than 64 KiB arrive in every way); the rest is the file. Through either
 * push or buffer/commit, the loader must agree with ternlm_model_open_memory on the same bytes. */
#include "fuzz_common.h"

static uint64_t next(uint64_t *r) {
    *r = *r * 6364136223846793005ull + 1442695040888963407ull;
    return *r >> 33;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8) return 0;
    uint64_t rng;
    memcpy(&rng, data, 8);
    data += 8, size -= 8;
    ternlm_loader *ld = NULL;
    if (ternlm_loader_new(size, &ld, NULL)) return 0;
    const int use_commit = rng & 1;
    ternlm_status st = TERNLM_OK;
    for (size_t o = 0; o < size && !st;) {
        const uint64_t r = next(&rng);
        size_t k = (size_t)(r % 4 == 0 ? r % 200000 + 1 : r % 4 == 1 ? r % 64 + 1 : r % 70000 + 1);
        if (k > size - o) k = size - o;
        if (use_commit) {
            size_t cap = 0;
            uint8_t *p = ternlm_loader_buffer(ld, &cap);
            if (!p) break;
            if (cap == 0 || cap > size - o) abort(); /* the buffer must never promise more than is due */
            if (k > cap) k = cap;
            memcpy(p, data + o, k);
            st = ternlm_loader_commit(ld, k, NULL);
        } else {
            st = ternlm_loader_push(ld, data + o, k, NULL);
        }
        o += k;
    }
    ternlm_model *inc = NULL, *mem = NULL;
    const ternlm_status st_inc = st ? st : ternlm_loader_finish(ld, NULL, &inc, NULL);
    ternlm_loader_free(ld);
    uint8_t *copy = aligned_alloc(64, (size + 64) / 64 * 64);
    memcpy(copy, data, size);
    const ternlm_status st_mem = ternlm_model_open_memory(copy, size, NULL, &mem, NULL);
    if ((st_inc == TERNLM_OK) != (st_mem == TERNLM_OK)) abort(); /* both ways in must agree */
    if (inc && mem && ternlm_model_tensor_count(inc) != ternlm_model_tensor_count(mem)) abort();
    if (inc) fuzz_exercise(inc);
    ternlm_model_free(inc);
    ternlm_model_free(mem);
    free(copy);
    return 0;
}
