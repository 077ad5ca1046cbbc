/* A growable byte buffer and the GGUF record writers the tests use to hand-build files. */
#ifndef TERNLM_TESTS_GGUF_BYTES_H
#define TERNLM_TESTS_GGUF_BYTES_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static inline void put(buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static inline void u32(buf *b, uint32_t v) { put(b, &v, 4); }
static inline void u64(buf *b, uint64_t v) { put(b, &v, 8); }
static inline void str(buf *b, const char *s) { u64(b, strlen(s)); put(b, s, strlen(s)); }
static inline void kv_u32(buf *b, const char *k, uint32_t v) { str(b, k); u32(b, 4); u32(b, v); }
static inline void kv_f32(buf *b, const char *k, float v) { str(b, k); u32(b, 6); put(b, &v, 4); }
static inline void kv_str(buf *b, const char *k, const char *v) { str(b, k); u32(b, 8); str(b, v); }

#endif
