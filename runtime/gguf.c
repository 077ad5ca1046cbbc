/* GGUF reader. Every number read from the file is checked before it controls an allocation, a loop
 * or a memory access (../shared/specs/gguf.md §7). All file arithmetic is uint64 with overflow checks. */
#include "gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_types.h"

#define MAX_COUNT 65536u                 /* n_kv and n_tensors */
#define MAX_KEY_LEN 65535u
#define MAX_STR_LEN (64ull << 20)        /* string values */
#define MAX_ARRAY_N (1ull << 30)
#define MAX_ALIGNMENT (1u << 20)

typedef struct cursor {
    const uint8_t *buf;
    uint64_t pos, have, size;
    ternlm_error *err;
    const char *what;  /* what is being read, for messages */
} cursor;

/* Make sure n bytes at the cursor are available. Returns OK, NEED_MORE or a truncation error. */
static ternlm_status need(cursor *c, uint64_t n) {
    if (n > c->size || c->pos > c->size - n)
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "truncated file: %s needs %llu bytes at byte %llu, file has %llu",
                       c->what, (unsigned long long)n, (unsigned long long)c->pos, (unsigned long long)c->size);
    if (c->pos + n > c->have) return GGUF_NEED_MORE;
    return TERNLM_OK;
}

static uint64_t rd_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static ternlm_status read_uint(cursor *c, int n, uint64_t *out) {
    ternlm_status st = need(c, (uint64_t)n);
    if (st) return st;
    *out = rd_le(c->buf + c->pos, n);
    c->pos += (uint64_t)n;
    return TERNLM_OK;
}

static uint64_t remaining(const cursor *c) { return c->size - c->pos; }

static int utf8_valid(const char *s, uint64_t n) {
    const uint8_t *p = (const uint8_t *)s;
    for (uint64_t i = 0; i < n;) {
        const uint8_t b = p[i];
        int len;
        uint32_t cp;
        if (b == 0) return 0;
        if (b < 0x80) { i++; continue; }
        if ((b & 0xE0) == 0xC0) { len = 2; cp = b & 0x1F; }
        else if ((b & 0xF0) == 0xE0) { len = 3; cp = b & 0x0F; }
        else if ((b & 0xF8) == 0xF0) { len = 4; cp = b & 0x07; }
        else return 0;
        if (n - i < (uint64_t)len) return 0;
        for (int k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += (uint64_t)len;
    }
    return 1;
}

/* Read a string of at most max_len bytes. `label` names it in messages. */
static ternlm_status read_str(cursor *c, gguf_str *out, uint64_t min_len, uint64_t max_len, const char *label) {
    uint64_t len;
    ternlm_status st = read_uint(c, 8, &len);
    if (st) return st;
    if (len < min_len || len > max_len)
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "%s at byte %llu: length %llu is outside %llu..%llu", label,
                       (unsigned long long)(c->pos - 8), (unsigned long long)len, (unsigned long long)min_len,
                       (unsigned long long)max_len);
    if (len > remaining(c))
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "%s at byte %llu: length %llu runs past the end of the file (%llu bytes left)",
                       label, (unsigned long long)(c->pos - 8), (unsigned long long)len,
                       (unsigned long long)remaining(c));
    if ((st = need(c, len))) return st;
    out->p = (const char *)c->buf + c->pos;
    out->len = len;
    c->pos += len;
    return TERNLM_OK;
}

uint32_t gguf_vtype_size(uint32_t t) {
    static const uint8_t sz[GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < GGUF_NTYPES ? sz[t] : 0;
}

const char *gguf_vtype_name(uint32_t t) {
    static const char *names[GGUF_NTYPES] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                             "string", "array", "u64", "i64", "f64"};
    return t < GGUF_NTYPES ? names[t] : "invalid";
}

/* ---- a small open-addressing set of byte strings, to find duplicate keys and names in O(n) ---- */

typedef struct strset {
    const char **p;
    uint64_t *len;
    uint64_t cap;
} strset;

static uint64_t hash_bytes(const char *p, uint64_t n) {
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

static int strset_init(strset *s, uint64_t n) {
    s->cap = 16;
    while (s->cap < 2 * n) s->cap <<= 1;
    s->p = calloc(s->cap, sizeof *s->p);
    s->len = calloc(s->cap, sizeof *s->len);
    return s->p && s->len;
}

static void strset_free(strset *s) {
    free(s->p);
    free(s->len);
}

/* Returns 1 if inserted, 0 if already present. */
static int strset_add(strset *s, const char *p, uint64_t n) {
    for (uint64_t i = hash_bytes(p, n) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->p[i]) {
            s->p[i] = p;
            s->len[i] = n;
            return 1;
        }
        if (s->len[i] == n && memcmp(s->p[i], p, n) == 0) return 0;
    }
}

/* ---- metadata ---- */

static ternlm_status read_value(cursor *c, gguf_kv *kv, uint64_t idx) {
    const uint64_t key_len = kv->key.len > 100 ? 100 : kv->key.len;
    const char *k = kv->key.p;
    ternlm_status st;
    uint64_t t;
    if ((st = read_uint(c, 4, &t))) return st;
    if (t >= GGUF_NTYPES)
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "key '%.*s' (#%llu): invalid value type %llu", (int)key_len, k,
                       (unsigned long long)idx, (unsigned long long)t);
    kv->type = (uint32_t)t;
    if (t == GGUF_STRING) {
        gguf_str s;
        const uint64_t at = c->pos;
        if ((st = read_str(c, &s, 0, MAX_STR_LEN, "string value"))) return st;
        kv->val = c->buf + at;
        return TERNLM_OK;
    }
    if (t != GGUF_ARRAY) {
        const uint32_t sz = gguf_vtype_size((uint32_t)t);
        if ((st = need(c, sz))) return st;
        kv->val = c->buf + c->pos;
        if (t == GGUF_BOOL && kv->val[0] > 1)
            return tl_fail(c->err, TERNLM_ERR_FORMAT, "key '%.*s': bool value %u is not 0 or 1", (int)key_len, k,
                           kv->val[0]);
        c->pos += sz;
        return TERNLM_OK;
    }
    uint64_t et, n;
    if ((st = read_uint(c, 4, &et)) || (st = read_uint(c, 8, &n))) return st;
    if (et >= GGUF_NTYPES || et == GGUF_ARRAY)
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "key '%.*s': invalid array element type %llu%s", (int)key_len, k,
                       (unsigned long long)et, et == GGUF_ARRAY ? " (arrays of arrays are not supported)" : "");
    if (n > MAX_ARRAY_N)
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "key '%.*s': array count %llu exceeds the limit of %llu",
                       (int)key_len, k, (unsigned long long)n, (unsigned long long)MAX_ARRAY_N);
    const uint64_t esz = et == GGUF_STRING ? 8 : gguf_vtype_size((uint32_t)et);
    if (n > remaining(c) / esz)
        return tl_fail(c->err, TERNLM_ERR_FORMAT,
                       "key '%.*s': array of %llu %s elements needs at least %llu bytes, file has %llu left",
                       (int)key_len, k, (unsigned long long)n, gguf_vtype_name((uint32_t)et),
                       (unsigned long long)(n * esz), (unsigned long long)remaining(c));
    kv->arr_type = (uint32_t)et;
    kv->arr_n = n;
    kv->val = c->buf + c->pos;
    if (et != GGUF_STRING) {
        if ((st = need(c, n * esz))) return st;
        if (et == GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (kv->val[i] > 1)
                    return tl_fail(c->err, TERNLM_ERR_FORMAT, "key '%.*s': bool element %llu is %u, not 0 or 1",
                                   (int)key_len, k, (unsigned long long)i, kv->val[i]);
        c->pos += n * esz;
        return TERNLM_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s;
        if ((st = read_str(c, &s, 0, MAX_STR_LEN, "array string"))) return st;
    }
    return TERNLM_OK;
}

static ternlm_status read_kvs(cursor *c, gguf_file *g) {
    strset seen;
    if (!strset_init(&seen, g->n_kv)) return tl_fail(c->err, TERNLM_ERR_NOMEM, "out of memory reading metadata");
    ternlm_status st = TERNLM_OK;
    for (uint64_t i = 0; i < g->n_kv && !st; i++) {
        gguf_kv *kv = &g->kv[i];
        c->what = "metadata key";
        if ((st = read_str(c, &kv->key, 1, MAX_KEY_LEN, "metadata key"))) break;
        if (!utf8_valid(kv->key.p, kv->key.len)) {
            st = tl_fail(c->err, TERNLM_ERR_FORMAT, "metadata key #%llu is not valid UTF-8 or contains a NUL byte",
                         (unsigned long long)i);
            break;
        }
        if (!strset_add(&seen, kv->key.p, kv->key.len)) {
            st = tl_fail(c->err, TERNLM_ERR_FORMAT, "duplicate metadata key '%.*s'",
                         (int)(kv->key.len > 100 ? 100 : kv->key.len), kv->key.p);
            break;
        }
        c->what = "metadata value";
        st = read_value(c, kv, i);
    }
    strset_free(&seen);
    return st;
}

/* ---- tensor infos ---- */

static ternlm_status bad_type(cursor *c, const char *name, uint64_t t) {
    const char *why = "";
    if (t == 37) why = " (I8_S: a bitnet.cpp activation type, never stored in files)";
    else if (t == 38 || t == 39) why = " (bitnet.cpp TL1/TL2 lookup-table layout, or upstream MXFP4 for 39: convert to I2_S)";
    else if (t == 40 || t == 43) why = " (a newer upstream ggml type ternlm does not support)";
    else if (t == 142) why = " (PQ2_0: PrismML's fork-only group-128 ternary type, Bonsai 2; needs PrismML's llama.cpp fork)";
    else if (t == 143) why = " (PTQ1_0: PrismML's fork-only Bonsai 2 type with a Hadamard activation transform; needs PrismML's "
                             "llama.cpp fork)";
    else if (t == TL_Q8_K) why = " (Q8_K is an activation format)";
    return tl_fail(c->err, TERNLM_ERR_UNSUPPORTED, "tensor '%s': unsupported tensor type %llu%s", name,
                   (unsigned long long)t, why);
}

static ternlm_status read_tensor_info(cursor *c, gguf_tensor *t, uint64_t idx, strset *seen) {
    ternlm_status st;
    gguf_str name;
    uint64_t v;
    c->what = "tensor name";
    if ((st = read_str(c, &name, 1, GGUF_MAX_NAME - 1, "tensor name"))) return st;
    if (!utf8_valid(name.p, name.len))
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "tensor #%llu: name is not valid UTF-8 or contains a NUL byte",
                       (unsigned long long)idx);
    memcpy(t->name, name.p, name.len);
    t->name[name.len] = 0;
    if (!strset_add(seen, t->name, name.len))
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "duplicate tensor name '%s'", t->name);
    c->what = "tensor dimensions";
    if ((st = read_uint(c, 4, &v))) return st;
    if (v < 1 || v > 4)
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "tensor '%s': n_dims is %llu, must be 1..4", t->name,
                       (unsigned long long)v);
    t->n_dims = (uint32_t)v;
    uint64_t n = 1;
    for (int j = 0; j < 4; j++) t->ne[j] = 1;
    for (uint32_t j = 0; j < t->n_dims; j++) {
        if ((st = read_uint(c, 8, &v))) return st;
        if (v < 1 || v > (uint64_t)INT64_MAX)
            return tl_fail(c->err, TERNLM_ERR_FORMAT, "tensor '%s': dimension %u is %llu, must be 1..2^63-1", t->name,
                           j, (unsigned long long)v);
        if (v > (uint64_t)INT64_MAX / n)
            return tl_fail(c->err, TERNLM_ERR_FORMAT, "tensor '%s': element count overflows 64 bits", t->name);
        n *= v;
        t->ne[j] = (int64_t)v;
    }
    c->what = "tensor type";
    if ((st = read_uint(c, 4, &v))) return st;
    const tl_type_traits *tr = tl_type_get((uint32_t)v);
    if (v > 0xFFFF || !tr || !tr->storable) return bad_type(c, t->name, v);
    t->type = (uint32_t)v;
    if ((uint64_t)t->ne[0] % tr->block_elems)
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "tensor '%s': row length %lld is not a multiple of %s's block of %u",
                       t->name, (long long)t->ne[0], tr->name, tr->block_elems);
    t->nbytes = tl_type_nbytes(t->type, n);
    if (!t->nbytes)
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "tensor '%s': byte size overflows 64 bits", t->name);
    c->what = "tensor offset";
    if ((st = read_uint(c, 8, &t->offset))) return st;
    return TERNLM_OK;
}

static int cmp_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static ternlm_status read_alignment(cursor *c, gguf_file *g) {
    g->alignment = 32;
    const gguf_kv *kv = gguf_find(g, "general.alignment");
    if (!kv) return TERNLM_OK;
    if (kv->type != GGUF_U32)
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "general.alignment has type %s, must be u32", gguf_vtype_name(kv->type));
    const uint32_t a = (uint32_t)rd_le(kv->val, 4);
    if (a < 8 || a > MAX_ALIGNMENT || (a & (a - 1)))
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "general.alignment is %u, must be a power of 2 in 8..%u", a, MAX_ALIGNMENT);
    g->alignment = a;
    return TERNLM_OK;
}

static ternlm_status check_tensor_extents(cursor *c, gguf_file *g) {
    const uint64_t data_size = g->file_size - g->data_start;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment)
            return tl_fail(c->err, TERNLM_ERR_FORMAT, "tensor '%s': data offset %llu is not a multiple of the alignment %u",
                           t->name, (unsigned long long)t->offset, g->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return tl_fail(c->err, TERNLM_ERR_FORMAT, "tensor '%s': data ends at byte %llu, file has %llu", t->name,
                           (unsigned long long)(t->offset > UINT64_MAX - g->data_start - t->nbytes
                                                    ? UINT64_MAX
                                                    : g->data_start + t->offset + t->nbytes),
                           (unsigned long long)g->file_size);
    }
    if (g->n_tensors < 2) return TERNLM_OK;
    gguf_tensor **order = malloc(g->n_tensors * sizeof *order);
    if (!order) return tl_fail(c->err, TERNLM_ERR_NOMEM, "out of memory checking tensor offsets");
    for (uint64_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
    qsort(order, g->n_tensors, sizeof *order, cmp_offset);
    ternlm_status st = TERNLM_OK;
    for (uint64_t i = 1; i < g->n_tensors && !st; i++)
        if (order[i]->offset < order[i - 1]->offset + order[i - 1]->nbytes)
            st = tl_fail(c->err, TERNLM_ERR_FORMAT, "tensors '%s' and '%s' overlap in the data section", order[i - 1]->name,
                         order[i]->name);
    free(order);
    return st;
}

/* Early Ternary-Bonsai files stored Q2_0 (id 42) in a group-128 layout (34 bytes per 128, PrismML's later PQ2_0)
 * where upstream and ternlm read group 64 (18 bytes per 64): quant-formats.md §11. Such a file fails the extent
 * checks; it is that layout when every type-42 tensor at n/128·34 bytes makes the offsets fit. */
static int q2_0_fits_group128(const cursor *c, gguf_file *g) {
    uint64_t n42 = 0, ok = 1;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        if (t->type != TL_Q2_0) continue;
        n42++;
        ok &= t->ne[0] % 128 == 0;
    }
    if (!n42 || !ok) return 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].type == TL_Q2_0) g->tensors[i].nbytes = g->tensors[i].nbytes / 18 / 2 * 34;
    cursor quiet = *c;
    quiet.err = NULL;
    const int fits = check_tensor_extents(&quiet, g) == TERNLM_OK;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].type == TL_Q2_0) g->tensors[i].nbytes = g->tensors[i].nbytes / 34 * 2 * 18;
    return fits;
}

/* A third-party converter writes I2_S sequentially (n/4 bytes, no scale tail) with the scale in a companion
 * `<name>_scale` tensor. True when every I2_S tensor has that companion and n/4-byte sizes make the offsets fit. */
int gguf_i2s_scale_companion(const gguf_file *g, const gguf_tensor *t) {
    char name[GGUF_MAX_NAME + 8];
    snprintf(name, sizeof name, "%s_scale", t->name);
    return gguf_find_tensor(g, name) != NULL;
}

static int i2s_fits_sequential(const cursor *c, gguf_file *g) {
    uint64_t n_i2s = 0, all = 1;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].type == TL_I2_S) n_i2s++, all &= gguf_i2s_scale_companion(g, &g->tensors[i]);
    if (!n_i2s || !all) return 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].type == TL_I2_S) g->tensors[i].nbytes -= 32;
    cursor quiet = *c;
    quiet.err = NULL;
    const int fits = check_tensor_extents(&quiet, g) == TERNLM_OK;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].type == TL_I2_S) g->tensors[i].nbytes += 32;
    return fits;
}

static ternlm_status check_tensor_data(cursor *c, gguf_file *g) {
    const ternlm_status st = check_tensor_extents(c, g);
    if (st && st != TERNLM_ERR_NOMEM && i2s_fits_sequential(c, g))
        return tl_fail(c->err, TERNLM_ERR_UNSUPPORTED, GGUF_I2S_SEQUENTIAL_MSG, "the I2_S tensors");
    if (st && st != TERNLM_ERR_NOMEM && q2_0_fits_group128(c, g))
        return tl_fail(c->err, TERNLM_ERR_UNSUPPORTED,
                       "the Q2_0 (type 42) tensors are in the deprecated group-128 layout of early Ternary-Bonsai files "
                       "(34 bytes per 128 weights, PrismML's PQ2_0); ternlm reads the official group-64 Q2_0 "
                       "(18 bytes per 64): use the *-Q2_0_g64.gguf file");
    return st;
}

static ternlm_status read_header(cursor *c, gguf_file *g) {
    ternlm_status st;
    uint64_t v = 0;
    c->what = "header";
    if (c->size < 24)
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "not a GGUF file: %llu bytes is shorter than the 24-byte header",
                       (unsigned long long)c->size);
    if ((st = need(c, 24))) return st;
    if (memcmp(c->buf, "GGUF", 4) != 0)
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "not a GGUF file (magic bytes %02x %02x %02x %02x, expected 'GGUF')",
                       c->buf[0], c->buf[1], c->buf[2], c->buf[3]);
    c->pos = 4;
    read_uint(c, 4, &v);
    if ((v & 0xFFFF) == 0 && v != 0)
        return tl_fail(c->err, TERNLM_ERR_UNSUPPORTED, "big-endian GGUF files are not supported");
    if (v != 2 && v != 3)
        return tl_fail(c->err, TERNLM_ERR_UNSUPPORTED, "GGUF version %llu is not supported (2 and 3 are)",
                       (unsigned long long)v);
    g->version = (uint32_t)v;
    read_uint(c, 8, &g->n_tensors);
    read_uint(c, 8, &g->n_kv);
    const uint64_t body = c->size - 24;
    if (g->n_kv > MAX_COUNT || g->n_kv > body / 14)
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "metadata count %llu is impossible for a file of %llu bytes",
                       (unsigned long long)g->n_kv, (unsigned long long)c->size);
    if (g->n_tensors > MAX_COUNT || g->n_tensors > body / 33)
        return tl_fail(c->err, TERNLM_ERR_FORMAT, "tensor count %llu is impossible for a file of %llu bytes",
                       (unsigned long long)g->n_tensors, (unsigned long long)c->size);
    return TERNLM_OK;
}

static ternlm_status parse(cursor *c, gguf_file *g) {
    ternlm_status st;
    if ((st = read_header(c, g))) return st;
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return tl_fail(c->err, TERNLM_ERR_NOMEM, "out of memory reading the GGUF header");
    if ((st = read_kvs(c, g))) return st;
    if ((st = read_alignment(c, g))) return st;
    strset seen;
    if (!strset_init(&seen, g->n_tensors)) return tl_fail(c->err, TERNLM_ERR_NOMEM, "out of memory reading tensors");
    for (uint64_t i = 0; i < g->n_tensors && !st; i++) st = read_tensor_info(c, &g->tensors[i], i, &seen);
    strset_free(&seen);
    if (st) return st;
    g->header_size = c->pos;
    g->data_start = c->pos;
    if (g->n_tensors) {
        const uint64_t pad = (g->alignment - c->pos % g->alignment) % g->alignment;
        if (pad > c->size - c->pos)
            return tl_fail(c->err, TERNLM_ERR_FORMAT, "truncated file: the data section would start at byte %llu, file has %llu",
                           (unsigned long long)(c->pos + pad), (unsigned long long)c->size);
        g->data_start = c->pos + pad;
    }
    return check_tensor_data(c, g);
}

ternlm_status gguf_parse(gguf_file *g, const uint8_t *buf, uint64_t have, uint64_t file_size, ternlm_error *err) {
    memset(g, 0, sizeof *g);
    g->file_size = file_size;
    cursor c = {buf, 0, have < file_size ? have : file_size, file_size, err, "header"};
    ternlm_status st = parse(&c, g);
    if (st) gguf_free(g);
    return st;
}

void gguf_free(gguf_file *g) {
    free(g->kv);
    free(g->tensors);
    g->kv = NULL;
    g->tensors = NULL;
}

int gguf_key_is(const gguf_kv *kv, const char *key) {
    const size_t n = strlen(key);
    return kv->key.len == n && memcmp(kv->key.p, key, n) == 0;
}

const gguf_kv *gguf_find(const gguf_file *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (gguf_key_is(&g->kv[i], key)) return &g->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

/* ---- typed getters ---- */

static int scalar_int(uint32_t t, const uint8_t *p, int64_t *s, uint64_t *u, int *is_signed) {
    *is_signed = 0;
    switch (t) {
    case GGUF_U8: *u = p[0]; return 1;
    case GGUF_U16: *u = rd_le(p, 2); return 1;
    case GGUF_U32: *u = rd_le(p, 4); return 1;
    case GGUF_U64: *u = rd_le(p, 8); return 1;
    case GGUF_I8: *s = (int8_t)p[0]; break;
    case GGUF_I16: *s = (int16_t)rd_le(p, 2); break;
    case GGUF_I32: *s = (int32_t)rd_le(p, 4); break;
    case GGUF_I64: *s = (int64_t)rd_le(p, 8); break;
    default: return 0;
    }
    *is_signed = 1;
    return 1;
}

static ternlm_status type_error(const gguf_kv *kv, const char *want, ternlm_error *err) {
    return tl_fail(err, TERNLM_ERR_MODEL, "metadata '%.*s' has type %s, expected %s", (int)TL_MIN(kv->key.len, 100),
                   kv->key.p, kv->type == GGUF_ARRAY ? "array" : gguf_vtype_name(kv->type), want);
}

ternlm_status gguf_get_u32(const gguf_kv *kv, uint32_t *out, ternlm_error *err) {
    int64_t s = 0;
    uint64_t u = 0;
    int sg;
    if (!scalar_int(kv->type, kv->val, &s, &u, &sg)) return type_error(kv, "an integer", err);
    if (sg) {
        if (s < 0) return tl_fail(err, TERNLM_ERR_MODEL, "metadata '%.*s' is negative (%lld)", (int)TL_MIN(kv->key.len, 100),
                                  kv->key.p, (long long)s);
        u = (uint64_t)s;
    }
    if (u > UINT32_MAX)
        return tl_fail(err, TERNLM_ERR_MODEL, "metadata '%.*s' is too large (%llu)", (int)TL_MIN(kv->key.len, 100), kv->key.p,
                       (unsigned long long)u);
    *out = (uint32_t)u;
    return TERNLM_OK;
}

ternlm_status gguf_get_f32(const gguf_kv *kv, float *out, ternlm_error *err) {
    if (kv->type == GGUF_F32) {
        uint32_t b = (uint32_t)rd_le(kv->val, 4);
        memcpy(out, &b, 4);
    } else if (kv->type == GGUF_F64) {
        uint64_t b = rd_le(kv->val, 8);
        double d;
        memcpy(&d, &b, 8);
        *out = (float)d;
    } else {
        return type_error(kv, "f32 or f64", err);
    }
    return TERNLM_OK;
}

ternlm_status gguf_get_bool(const gguf_kv *kv, int *out, ternlm_error *err) {
    if (kv->type != GGUF_BOOL) return type_error(kv, "bool", err);
    *out = kv->val[0];
    return TERNLM_OK;
}

ternlm_status gguf_get_str(const gguf_kv *kv, gguf_str *out, ternlm_error *err) {
    if (kv->type != GGUF_STRING) return type_error(kv, "string", err);
    out->len = rd_le(kv->val, 8);
    out->p = (const char *)kv->val + 8;
    return TERNLM_OK;
}

double gguf_arr_num(const gguf_kv *kv, uint64_t i) {
    const uint32_t sz = gguf_vtype_size(kv->arr_type);
    const uint8_t *p = kv->val + i * sz;
    int64_t s = 0;
    uint64_t u = 0;
    int sg;
    if (scalar_int(kv->arr_type, p, &s, &u, &sg)) return sg ? (double)s : (double)u;
    if (kv->arr_type == GGUF_F32) {
        uint32_t b = (uint32_t)rd_le(p, 4);
        float f;
        memcpy(&f, &b, 4);
        return f;
    }
    if (kv->arr_type == GGUF_F64) {
        uint64_t b = rd_le(p, 8);
        double d;
        memcpy(&d, &b, 8);
        return d;
    }
    return kv->arr_type == GGUF_BOOL ? p[0] : 0.0;
}

gguf_str gguf_arr_next_str(const gguf_kv *kv, uint64_t *pos) {
    gguf_str s;
    s.len = rd_le(kv->val + *pos, 8);
    s.p = (const char *)kv->val + *pos + 8;
    *pos += 8 + s.len;
    return s;
}
