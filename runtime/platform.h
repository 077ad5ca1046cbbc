/* The only place that talks to the operating system: files, clocks, randomness, CPU facts. */
#ifndef TERNLM_PLATFORM_H
#define TERNLM_PLATFORM_H

#include <stdint.h>

#include "internal.h"

typedef struct tl_mapped_file {
    const uint8_t *data;
    uint64_t size;
    int is_mmap;     /* 1: munmap on close; 0: an aligned heap copy (targets without mmap) */
} tl_mapped_file;

/* Map (or, without mmap, read) a whole file. Sizes and offsets stay 64-bit until checked. */
ternlm_status tl_file_map(const char *path, tl_mapped_file *out, ternlm_error *err);
void tl_file_unmap(tl_mapped_file *f);
/* Drop the resident pages of [p, p + n) inside a mapped file (they are read again if touched): a weight repacked
 * into a copy then costs no memory twice. A no-op for heap copies and targets without mmap. */
void tl_file_release(const tl_mapped_file *f, const void *p, uint64_t n);

/* Ask for huge pages on the whole 2 MB pages inside [p, p + n), before they are first written: a weight streamed
 * once per token then costs fewer TLB misses, and the hardware prefetcher is not stopped at every 4 KB page. A hint;
 * a no-op where the OS has none. */
void tl_memory_hint_huge(void *p, uint64_t n);

double tl_now_seconds(void);                 /* monotonic */
uint64_t tl_random_u64(void);                /* from the OS (getrandom, WASI random_get, ...) */
uint32_t tl_physical_cores(void);

#endif
