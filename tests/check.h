/* Tiny assertion helpers for the C tests: count, report, and end with "N passed, N failed". */
#ifndef TERNLM_TEST_CHECK_H
#define TERNLM_TEST_CHECK_H

#include <stdio.h>

static int g_pass, g_fail;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (cond) {                                                       \
            g_pass++;                                                     \
        } else {                                                          \
            g_fail++;                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);         \
            fprintf(stderr, __VA_ARGS__);                                 \
            fprintf(stderr, "\n");                                        \
        }                                                                 \
    } while (0)

static inline int check_summary(void) {
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}

#ifndef TERNLM_SHARED_DIR
#define TERNLM_SHARED_DIR "../shared"
#endif

#endif
