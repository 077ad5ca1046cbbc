/* SentencePiece (BPE by score): symbols start as UTF-8 characters; the adjacent pair whose concatenation is
 * the highest-scoring token merges first (leftmost on ties); leftovers fall back to <0xXX> byte tokens.
 * The caller has already added the space prefix and replaced spaces with U+2581. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "unicode.h"

typedef struct sym {
    uint32_t start, len;
    int32_t prev, next;
} sym;

typedef struct bigram {
    float score;
    int32_t left;
    uint32_t size;
} bigram;

static int bg_before(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void bg_push(bigram *h, size_t *n, bigram e) {
    size_t i = (*n)++;
    h[i] = e;
    while (i > 0 && bg_before(&h[i], &h[(i - 1) / 2])) {
        const bigram t = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static bigram bg_pop(bigram *h, size_t *n) {
    const bigram top = h[0];
    h[0] = h[--*n];
    for (size_t i = 0;;) {
        size_t m = i;
        const size_t l = 2 * i + 1, r = l + 1;
        if (l < *n && bg_before(&h[l], &h[m])) m = l;
        if (r < *n && bg_before(&h[r], &h[m])) m = r;
        if (m == i) break;
        const bigram t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
    return top;
}

static void try_pair(const tl_tokenizer *t, const uint8_t *s, const sym *y, int32_t l, int32_t r, bigram *h, size_t *hn) {
    if (l < 0 || r < 0) return;
    const uint32_t size = y[l].len + y[r].len;
    const int32_t id = tl_strmap_get(t, (const char *)s + y[l].start, size);
    if (id >= 0) bg_push(h, hn, (bigram){t->scores ? t->scores[id] : 0.0f, l, size});
}

static void emit_symbol(const tl_tokenizer *t, const uint8_t *s, const sym *y, tl_ids *ids) {
    const int32_t id = tl_strmap_get(t, (const char *)s + y->start, y->len);
    if (id >= 0) {
        tl_ids_push(ids, id);
        return;
    }
    for (uint32_t k = 0; k < y->len; k++) {
        const int32_t b = t->byte_token[s[y->start + k]];
        if (b >= 0) tl_ids_push(ids, b); /* a byte with no token is dropped, as llama.cpp does */
    }
}

void tl_spm_encode(const tl_tokenizer *t, const uint8_t *s, size_t n, tl_ids *ids) {
    if (!n) return;
    sym *y = malloc(n * sizeof *y);
    bigram *h = malloc(3 * n * sizeof *h);
    if (!y || !h) {
        ids->oom = 1;
        free(y), free(h);
        return;
    }
    int32_t ns = 0;
    for (size_t b = 0; b < n; ns++) {
        uint32_t cp;
        const size_t l = tl_utf8_decode(s + b, n - b, &cp);
        y[ns] = (sym){(uint32_t)b, (uint32_t)l, ns - 1, ns + 1};
        b += l;
    }
    y[ns - 1].next = -1;
    size_t hn = 0;
    for (int32_t i = 0; i + 1 < ns; i++) try_pair(t, s, y, i, i + 1, h, &hn);
    while (hn) {
        const bigram b = bg_pop(h, &hn);
        sym *L = &y[b.left];
        if (L->len == 0 || L->next < 0) continue;
        sym *R = &y[L->next];
        if (L->len + R->len != b.size) continue; /* stale */
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) y[R->next].prev = b.left;
        try_pair(t, s, y, L->prev, b.left, h, &hn);
        try_pair(t, s, y, b.left, L->next, h, &hn);
    }
    for (int32_t i = 0; i >= 0; i = y[i].next) emit_symbol(t, s, &y[i], ids);
    free(y), free(h);
}
