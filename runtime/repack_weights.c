/* Load-time repacking: every linear weight the chosen CPU kernel path has a 16-row group GEMM for is copied into
 * that layout (simd/repack.h), and the file pages it came from are released, so resident memory stays about the
 * file size. The int8 and int4 heads (--head-quant i8 / i4) are built here too; they have a generic GEMM on every path. */
#include <stdio.h>
#include <string.h>

#include "../simd/kernels.h"
#include "../simd/repack.h"
#include "model.h"
#include "platform.h"
#include "tensor_types.h"

static int ternary_repackable(const tl_weight *w, const tl_kernels *k) {
    if (!w->data || w->ne1 % TL_R16_ROWS) return 0;
    if (w->type == TL_I2_S) return k->gemm_i2s_r16 && w->ne0 % 128 == 0;
    if (w->type == TL_TQ2_0 || w->type == TL_TQ1_0) return k->gemm_tq_r16 && w->ne0 % 256 == 0;
    return 0;
}

/* A weight's repacked copy: `*owner` is what tl_aligned_free takes; the copy starts on a 2 MB boundary and asks
 * for huge pages on the whole 2 MB pages inside it (the tail stays small pages, so the slack around the copy is never
 * touched and costs no memory). One core streaming a 2560 x 110,592 I2_S weight from memory: one token 2.44 against
 * 3.38 ms, 4 tokens 6.07 against 6.94 (medians of 6 alternating runs). */
#define HUGE_PAGE ((uint64_t)2 << 20)
static uint8_t *alloc_streamed(uint64_t size, void **owner) {
    uint8_t *raw = size > SIZE_MAX - HUGE_PAGE ? NULL : tl_aligned_alloc_uninit((size_t)(size + HUGE_PAGE));
    *owner = raw;
    if (!raw) return NULL;
    uint8_t *p = raw + (HUGE_PAGE - (uintptr_t)raw % HUGE_PAGE) % HUGE_PAGE;
    tl_memory_hint_huge(p, size);
    return p;
}

static ternlm_status repack_ternary(ternlm_model *m, tl_weight *w, ternlm_error *err) {
    const uint64_t code_bytes = tl_r16_bytes_2bit(w->ne0, w->ne1);
    const uint64_t scale_bytes = w->type == TL_I2_S ? 0 : (uint64_t)w->ne1 * (uint64_t)(w->ne0 / 256) * 2;
    void *owner;
    uint8_t *mem = alloc_streamed(code_bytes + scale_bytes, &owner); /* fully written */
    if (!mem) return tl_fail(err, TERNLM_ERR_NOMEM, "cannot allocate %llu bytes to repack a weight",
                             (unsigned long long)(code_bytes + scale_bytes));
    uint16_t *dw = w->type == TL_I2_S ? NULL : (uint16_t *)(void *)(mem + code_bytes);
    if (w->type == TL_I2_S) tl_repack_i2s(w->data, w->ne0, 0, w->ne1, mem);
    else if (w->type == TL_TQ2_0) tl_repack_tq2(w->data, w->ne0, 0, w->ne1, mem, dw);
    else tl_repack_tq1(w->data, w->ne0, 0, w->ne1, mem, dw);
    tl_file_release(&m->file, w->data, w->row_bytes * (uint64_t)w->ne1);
    w->r16 = (tl_r16){mem, dw, NULL, w->i2s_scale, w->ne0, w->ne1, NULL};
    w->r16_mem = owner;
    m->repacked_bytes += code_bytes + scale_bytes;
    return TERNLM_OK;
}

static ternlm_status repack_head_i8(ternlm_model *m, tl_weight *w, ternlm_error *err) {
    if (w->type != TL_F16 || w->ne0 % 4 || w->ne1 % TL_R16_ROWS) {
        tl_log(&m->log, "warning: --head-quant i8 applies to an F16 head with rows in groups of 16; head is %s, left as is",
               tl_type_name(w->type));
        return TERNLM_OK;
    }
    const uint64_t bytes = tl_r16_bytes_i8(w->ne0, w->ne1), scale_bytes = (uint64_t)w->ne1 * 4;
    void *owner;
    uint8_t *mem = alloc_streamed(bytes + scale_bytes, &owner); /* fully written */
    if (!mem) return tl_fail(err, TERNLM_ERR_NOMEM, "cannot allocate %llu bytes for the int8 head", (unsigned long long)bytes);
    float *drow = (float *)(void *)(mem + bytes);
    /* in slices whose file pages are released as soon as they are converted, so the F16 table is never resident
     * whole next to its copy; a tied head's pages also hold the embedding table, whose rows are read back one by one */
    for (int64_t r = 0; r < w->ne1; r += 1024) {
        const int64_t r1 = r + 1024 < w->ne1 ? r + 1024 : w->ne1;
        tl_repack_i8_from_f16((const uint16_t *)(const void *)w->data, w->ne0, r, r1, mem, drow);
        tl_file_release(&m->file, w->data + (uint64_t)r * w->row_bytes, (uint64_t)(r1 - r) * w->row_bytes);
    }
    w->r16 = (tl_r16){mem, NULL, drow, 1.0f, w->ne0, w->ne1, NULL};
    w->r16_mem = owner;
    m->repacked_bytes += bytes + scale_bytes;
    snprintf(m->head_type, sizeof m->head_type, "I8 (from F16)");
    return TERNLM_OK;
}

/* The 4-bit head (simd/repack.h's int4 rows), in slices whose F16 pages are released as they go, as for int8. */
static ternlm_status repack_head_i4(ternlm_model *m, tl_weight *w, ternlm_error *err) {
    if (w->type != TL_F16 || w->ne0 % 32 || w->ne0 > TL_I4_MAX_NE0 || w->ne1 % TL_R16_ROWS) {
        tl_log(&m->log, "warning: --head-quant i4 applies to an F16 head of rows of 32k <= %d values in groups of 16; "
               "head is %s with %lld inputs, left as is", TL_I4_MAX_NE0, tl_type_name(w->type), (long long)w->ne0);
        return TERNLM_OK;
    }
    const uint64_t bytes = tl_r16_bytes_i4(w->ne0, w->ne1), sub_bytes = tl_r16_bytes_i4_sub(w->ne0, w->ne1),
                   scale_bytes = (uint64_t)w->ne1 * 4, total = bytes + sub_bytes + scale_bytes;
    void *owner;
    uint8_t *mem = alloc_streamed(total, &owner); /* fully written */
    if (!mem) return tl_fail(err, TERNLM_ERR_NOMEM, "cannot allocate %llu bytes for the int4 head", (unsigned long long)total);
    float *drow = (float *)(void *)(mem + bytes);
    uint8_t *sub = mem + bytes + scale_bytes;
    for (int64_t r = 0; r < w->ne1; r += 1024) {
        const int64_t r1 = r + 1024 < w->ne1 ? r + 1024 : w->ne1;
        tl_repack_i4_from_f16((const uint16_t *)(const void *)w->data, w->ne0, r, r1, mem, sub, drow);
        tl_file_release(&m->file, w->data + (uint64_t)r * w->row_bytes, (uint64_t)(r1 - r) * w->row_bytes);
    }
    w->r16 = (tl_r16){mem, NULL, drow, 1.0f, w->ne0, w->ne1, sub};
    w->r16_mem = owner;
    m->repacked_bytes += total;
    snprintf(m->head_type, sizeof m->head_type, "I4 (from F16)");
    return TERNLM_OK;
}

/* bitnet.cpp's NEON quantizer (QK_I2_S = 64) packs flat element k in 64-element blocks of 16 bytes: byte
 * 16*(k/64) + k%16, shift 6 - 2*((k%64)/16). The official layout (quant-formats.md §1) uses 128-element blocks of
 * 32 bytes: byte 32*(k/128) + k%32, shift 6 - 2*((k%128)/32). Same codes, same scale after them. */
static ternlm_status i2s_from_layout64(ternlm_model *m, tl_weight *w, ternlm_error *err) {
    const uint64_t n = (uint64_t)w->ne0 * (uint64_t)w->ne1, bytes = n / 4 + 32;
    if (n % 128) return tl_fail(err, TERNLM_ERR_MODEL, "an I2_S tensor of %llu elements is not whole 128-element blocks", (unsigned long long)n);
    uint8_t *dst = tl_aligned_alloc((size_t)bytes);
    if (!dst) return tl_fail(err, TERNLM_ERR_NOMEM, "cannot allocate %llu bytes to rewrite an I2_S tensor", (unsigned long long)bytes);
    memset(dst, 0, (size_t)(n / 4));
    const uint8_t *src = w->data;
    for (uint64_t k = 0; k < n; k++) {
        const uint8_t code = (uint8_t)((src[16 * (k / 64) + k % 16] >> (6 - 2 * ((k % 64) / 16))) & 3);
        dst[32 * (k / 128) + k % 32] |= (uint8_t)(code << (6 - 2 * ((k % 128) / 32)));
    }
    memcpy(dst + n / 4, src + n / 4, 32); /* the scale (and the padding nobody reads) */
    tl_file_release(&m->file, w->data, bytes);
    w->data = dst;
    w->layout_mem = dst;
    return TERNLM_OK;
}

ternlm_status tl_model_repack(ternlm_model *m, const ternlm_model_params *p, ternlm_error *err) {
    const tl_kernels *k = tl_kernels_best();
    ternlm_status st = TERNLM_OK;
    if (p->i2s_layout != 0 && p->i2s_layout != 64 && p->i2s_layout != 128)
        return tl_fail(err, TERNLM_ERR_ARG, "i2s_layout must be 0, 64 or 128, not %d", p->i2s_layout);
    if ((p->head_quant_i8 != 0) + (p->head_quant_i4 != 0) + (p->head_quant_q8_0 != 0) > 1)
        return tl_fail(err, TERNLM_ERR_ARG, "choose one head quantization (q8_0, i8 or i4), not several");
    if (p->i2s_layout == 64)
        for (uint32_t l = 0; l < m->hp.n_layer && !st; l++) {
            tl_layer *L = &m->layers[l];
            tl_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
            for (size_t i = 0; i < sizeof ws / sizeof ws[0] && !st; i++)
                if (ws[i]->type == TL_I2_S && ws[i]->data) st = i2s_from_layout64(m, ws[i], err);
        }
    if (!st && p->i2s_layout == 64 && m->output.type == TL_I2_S && m->output.data) st = i2s_from_layout64(m, &m->output, err);
    if (!p->no_repack)
        for (uint32_t l = 0; l < m->hp.n_layer && !st; l++) {
            tl_layer *L = &m->layers[l];
            tl_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
            for (size_t i = 0; i < sizeof ws / sizeof ws[0] && !st; i++)
                if (ternary_repackable(ws[i], k)) st = repack_ternary(m, ws[i], err);
        }
    if (!st && !p->no_repack && ternary_repackable(&m->output, k)) st = repack_ternary(m, &m->output, err);
    if (!st && p->head_quant_i8) st = repack_head_i8(m, &m->output, err);
    if (!st && p->head_quant_i4) st = repack_head_i4(m, &m->output, err);
    return st;
}

void tl_model_free_repacked(ternlm_model *m) {
    if (m->layers)
        for (uint32_t l = 0; l < m->hp.n_layer; l++) {
            tl_layer *L = &m->layers[l];
            tl_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
            for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) tl_aligned_free(ws[i]->r16_mem), tl_aligned_free(ws[i]->layout_mem);
        }
    tl_aligned_free(m->output.r16_mem);
    tl_aligned_free(m->output.layout_mem);
}
