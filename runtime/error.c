#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *ternlm_status_name(ternlm_status code) {
    switch (code) {
    case TERNLM_OK: return "ok";
    case TERNLM_ERR_ARG: return "invalid argument";
    case TERNLM_ERR_IO: return "I/O error";
    case TERNLM_ERR_FORMAT: return "format error";
    case TERNLM_ERR_UNSUPPORTED: return "unsupported";
    case TERNLM_ERR_MODEL: return "model error";
    case TERNLM_ERR_NOMEM: return "out of memory";
    case TERNLM_ERR_CONTEXT_FULL: return "context full";
    case TERNLM_ERR_ABORTED: return "aborted";
    case TERNLM_ERR_TOKENIZER: return "tokenizer error";
    case TERNLM_ERR_TEMPLATE: return "chat template error";
    case TERNLM_ERR_BACKEND: return "backend error";
    }
    return "unknown error";
}

ternlm_status tl_fail(ternlm_error *err, ternlm_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

ternlm_status tl_fail_prefix(ternlm_error *err, const char *fmt, ...) {
    if (!err) return TERNLM_ERR_FORMAT;
    char prefix[256], old[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    const size_t pl = strlen(prefix), room = sizeof err->message - 1;
    const size_t take = pl < room ? pl : room, rest = strnlen(old, room - take);
    memcpy(err->message, prefix, take);
    memcpy(err->message + take, old, rest);
    err->message[take + rest] = 0;
    return err->code;
}

static void *aligned_block(size_t size, int zero) {
    /* Keep the original pointer just before the aligned block so any malloc works (wasm, WASI). */
    if (size > SIZE_MAX - 64 - sizeof(void *)) return NULL;
    const size_t total = size + 64 + sizeof(void *);
    unsigned char *raw = zero ? calloc(1, total) : malloc(total);
    if (!raw) return NULL;
    uintptr_t a = ((uintptr_t)(raw + sizeof(void *)) + 63) & ~(uintptr_t)63;
    ((void **)a)[-1] = raw;
    return (void *)a;
}

void *tl_aligned_alloc(size_t size) { return aligned_block(size, 1); }

/* wasm's malloc grows memory with sbrk and cannot tell that fresh pages are zero, so calloc writes every byte: for a
 * 1.2 GB model read into memory that was over half of a WASI load (node --cpu-prof). */
void *tl_aligned_alloc_uninit(size_t size) { return aligned_block(size, 0); }

void tl_aligned_free(void *p) {
    if (p) free(((void **)p)[-1]);
}

void tl_log(const tl_logger *lg, const char *fmt, ...) {
    if (!lg || !lg->fn) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    lg->fn(lg->user, buf);
}
