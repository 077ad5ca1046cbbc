/* GGUF v2/v3 reader over a byte buffer that may still be arriving (see ../shared/specs/gguf.md §7).
 * Strings point into the buffer; they are not NUL-terminated. */
#ifndef TERNLM_GGUF_H
#define TERNLM_GGUF_H

#include <stdint.h>

#include "internal.h"

enum gguf_vtype {
    GGUF_U8 = 0, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL,
    GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64, GGUF_NTYPES
};

typedef struct gguf_str {
    const char *p;
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    uint32_t type;         /* enum gguf_vtype */
    uint32_t arr_type;     /* element type when type == GGUF_ARRAY */
    uint64_t arr_n;        /* element count when type == GGUF_ARRAY */
    const uint8_t *val;    /* the value's bytes (for arrays: the first element) */
} gguf_kv;

#define GGUF_MAX_NAME 64

typedef struct gguf_tensor {
    char name[GGUF_MAX_NAME];
    uint32_t n_dims;
    int64_t ne[4];
    uint32_t type;
    uint64_t offset;   /* relative to the data section */
    uint64_t nbytes;
} gguf_tensor;

typedef struct gguf_file {
    uint32_t version;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *tensors;
    uint32_t alignment;
    uint64_t header_size;  /* bytes up to the end of the tensor infos */
    uint64_t data_start;   /* aligned start of the data section */
    uint64_t file_size;
} gguf_file;

/* Parse the header of a file of `file_size` bytes whose first `have` bytes are at buf.
 * Returns TERNLM_OK, or TERNLM_ERR_FORMAT/UNSUPPORTED with a message, or -1 (as ternlm_status) when
 * `have < file_size` and more bytes are needed to finish the header. */
#define GGUF_NEED_MORE ((ternlm_status)-1)
ternlm_status gguf_parse(gguf_file *g, const uint8_t *buf, uint64_t have, uint64_t file_size,
                         ternlm_error *err);
void gguf_free(gguf_file *g);

const gguf_kv *gguf_find(const gguf_file *g, const char *key);
int gguf_key_is(const gguf_kv *kv, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);
uint32_t gguf_vtype_size(uint32_t t); /* 0 for strings and arrays */
const char *gguf_vtype_name(uint32_t t);

/* Typed getters. They fail (with a message naming the key) when the key has an incompatible type.
 * Integers accept any integer type whose value fits; floats accept F32 and F64. */
ternlm_status gguf_get_u32(const gguf_kv *kv, uint32_t *out, ternlm_error *err);
ternlm_status gguf_get_f32(const gguf_kv *kv, float *out, ternlm_error *err);
ternlm_status gguf_get_bool(const gguf_kv *kv, int *out, ternlm_error *err);
ternlm_status gguf_get_str(const gguf_kv *kv, gguf_str *out, ternlm_error *err);
/* Element i of a numeric array as a double (no bounds beyond arr_n, which the caller checks). */
double gguf_arr_num(const gguf_kv *kv, uint64_t i);
/* Walk an array of strings: *pos starts at 0; returns the next string. The parser already validated it. */
gguf_str gguf_arr_next_str(const gguf_kv *kv, uint64_t *pos);

/* 1 when tensor t has a `<name>_scale` companion: the sequential I2_S layout of a third-party converter. */
int gguf_i2s_scale_companion(const gguf_file *g, const gguf_tensor *t);
#define GGUF_I2S_SEQUENTIAL_MSG                                                                                    \
    "%s use the sequential I2_S layout with a '<name>_scale' companion tensor (a third-party converter), not "   \
    "bitnet.cpp's 128-element interleave with the scale after the codes; ternlm cannot prove that layout's code " \
    "order: convert the model with bitnet.cpp's converter"

#endif
