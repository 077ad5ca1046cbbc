/* Internal helpers shared by the runtime's files. Not part of the public API. */
#ifndef TERNLM_INTERNAL_H
#define TERNLM_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "ternlm.h"

#if defined(__GNUC__)
#define TL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TL_PRINTF(a, b)
#endif

/* Fill err (if any) and return code, so call sites read `return tl_fail(err, CODE, "...", ...)`. */
ternlm_status tl_fail(ternlm_error *err, ternlm_status code, const char *fmt, ...) TL_PRINTF(3, 4);
/* Prefix an existing message with context ("tensor 'x': " + old). */
ternlm_status tl_fail_prefix(ternlm_error *err, const char *fmt, ...) TL_PRINTF(2, 3);

void *tl_aligned_alloc(size_t size);   /* 64-byte aligned, zero-filled; NULL on failure */
void *tl_aligned_alloc_uninit(size_t size); /* the same, not cleared: for buffers the caller fills completely */
void tl_aligned_free(void *p);

/* Log through a model's callback; silently dropped when none. */
typedef struct tl_logger {
    ternlm_log_fn fn;
    void *user;
} tl_logger;
void tl_log(const tl_logger *lg, const char *fmt, ...) TL_PRINTF(2, 3);

#define TL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TL_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
