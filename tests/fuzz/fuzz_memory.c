/* libFuzzer target: ternlm_model_open_memory on a buffer of exactly the input's size that ends at an
 * inaccessible page, so any read past the end of the file faults even without ASan (GGUF strings are not
 * NUL-terminated: this is where a strstr or sscanf on file data shows). */
#define _DEFAULT_SOURCE
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"

#define MAX_SIZE (4u << 20)

static uint8_t *g_region; /* MAX_SIZE bytes, then a PROT_NONE page */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    g_region = mmap(NULL, MAX_SIZE + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g_region == MAP_FAILED || mprotect(g_region + MAX_SIZE, page, PROT_NONE)) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size &= ~(size_t)7; /* the buffer starts 8-byte aligned and ends at the guard page */
    if (size > MAX_SIZE) return 0;
    uint8_t *p = g_region + MAX_SIZE - size;
    memcpy(p, data, size);
    ternlm_model *m = NULL;
    if (ternlm_model_open_memory(p, size, NULL, &m, NULL) == TERNLM_OK) {
        fuzz_exercise(m);
        ternlm_model_free(m);
    }
    return 0;
}
