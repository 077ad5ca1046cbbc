#define _GNU_SOURCE
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if !defined(__wasi__) && !defined(__EMSCRIPTEN__)
#include <sys/mman.h>
#define TL_HAVE_MMAP 1
#endif

static ternlm_status read_all(int fd, uint64_t size, tl_mapped_file *out, const char *path, ternlm_error *err) {
    if (size > SIZE_MAX - 64)
        return tl_fail(err, TERNLM_ERR_NOMEM, "%s: %llu bytes do not fit in this target's memory", path,
                       (unsigned long long)size);
    uint8_t *buf = tl_aligned_alloc_uninit((size_t)size); /* every byte is read into */
    if (!buf) return tl_fail(err, TERNLM_ERR_NOMEM, "%s: cannot allocate %llu bytes", path, (unsigned long long)size);
    uint64_t done = 0;
    while (done < size) {
        const size_t chunk = (size_t)TL_MIN(size - done, (uint64_t)1 << 26);
        const ssize_t r = read(fd, buf + done, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            tl_aligned_free(buf);
            return tl_fail(err, TERNLM_ERR_IO, "%s: read failed at byte %llu: %s", path, (unsigned long long)done,
                           r < 0 ? strerror(errno) : "unexpected end of file");
        }
        done += (uint64_t)r;
    }
    out->data = buf;
    out->size = size;
    out->is_mmap = 0;
    return TERNLM_OK;
}

ternlm_status tl_file_map(const char *path, tl_mapped_file *out, ternlm_error *err) {
    memset(out, 0, sizeof *out);
    const int fd = open(path, O_RDONLY);
    if (fd < 0) return tl_fail(err, TERNLM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return tl_fail(err, TERNLM_ERR_IO, "'%s' is not a regular file", path);
    }
    const uint64_t size = (uint64_t)st.st_size;
    ternlm_status rc = TERNLM_OK;
    if (size == 0) {
        static const uint8_t empty[1] = {0};
        out->data = empty;
    } else {
#ifdef TL_HAVE_MMAP
        void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            rc = read_all(fd, size, out, path, err);
        } else {
            out->data = p;
            out->is_mmap = 1;
        }
#else
        rc = read_all(fd, size, out, path, err);
#endif
    }
    out->size = size;
    close(fd);
    return rc;
}

void tl_file_release(const tl_mapped_file *f, const void *p, uint64_t n) {
#ifdef TL_HAVE_MMAP
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)p, b = a + (uintptr_t)n;
    const uintptr_t lo = (a + page - 1) / page * page, hi = b / page * page; /* whole pages inside the range */
    if (f->is_mmap && hi > lo && a >= (uintptr_t)f->data && b <= (uintptr_t)f->data + f->size)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
#else
    (void)f, (void)p, (void)n;
#endif
}

void tl_file_unmap(tl_mapped_file *f) {
    if (!f->data || !f->size) return;
#ifdef TL_HAVE_MMAP
    if (f->is_mmap) munmap((void *)f->data, (size_t)f->size);
    else tl_aligned_free((void *)f->data);
#else
    tl_aligned_free((void *)f->data);
#endif
    f->data = NULL;
}

void tl_memory_hint_huge(void *p, uint64_t n) {
#if defined(TL_HAVE_MMAP) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)2 << 20, a = (uintptr_t)p, b = a + (uintptr_t)n;
    const uintptr_t lo = (a + huge - 1) / huge * huge, hi = b / huge * huge;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)p, (void)n;
#endif
}

double tl_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#include <sys/random.h> /* getrandom (Linux), getentropy (WASI, Emscripten) */

uint64_t tl_random_u64(void) {
    uint64_t v = 0;
#if defined(__wasi__) || defined(__EMSCRIPTEN__)
    if (getentropy(&v, sizeof v) == 0) return v;
#elif defined(__linux__)
    if (getrandom(&v, sizeof v, 0) == (ssize_t)sizeof v) return v;
#endif
    /* last resort: the clock (never used where the OS offers entropy) */
    return (uint64_t)(tl_now_seconds() * 1e9) ^ 0x9E3779B97F4A7C15ull;
}

uint32_t tl_physical_cores(void) {
#if defined(__linux__) && !defined(__EMSCRIPTEN__)
    /* count distinct (physical id, core id) pairs; fall back to online CPUs */
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[256];
        int phys = 0, seen = 0;
        unsigned pairs[1024];
        while (fgets(line, sizeof line, f)) {
            int v;
            if (sscanf(line, "physical id : %d", &v) == 1) phys = v;
            else if (sscanf(line, "core id : %d", &v) == 1) {
                const unsigned key = (unsigned)phys << 16 | (unsigned)v;
                int dup = 0;
                for (int i = 0; i < seen; i++) dup |= pairs[i] == key;
                if (!dup && seen < 1024) pairs[seen++] = key;
            }
        }
        fclose(f);
        if (seen > 0) return (uint32_t)seen;
    }
#endif
#if defined(_SC_NPROCESSORS_ONLN) && !defined(__wasi__)
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n > 0) return (uint32_t)n;
#endif
    return 1;
}
