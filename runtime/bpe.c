/* GPT-2 byte-level BPE: the byte<->unicode map, merges ranked by index, and the merge loop
 * (lowest rank first, leftmost on ties) on a heap so long words stay O(n log n). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "unicode.h"

/* GPT-2 bytes_to_unicode: printable bytes map to themselves, the other 68 to U+0100.. in order. */
static int printable(uint32_t b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

static void build_byte_map(tl_tokenizer *t) {
    uint32_t k = 0;
    for (uint32_t i = 0; i < sizeof t->cp_byte / sizeof t->cp_byte[0]; i++) t->cp_byte[i] = -1;
    for (uint32_t b = 0; b < 256; b++) {
        t->byte_cp[b] = (uint16_t)(printable(b) ? b : 0x100 + k++);
        t->cp_byte[t->byte_cp[b]] = (int16_t)b;
    }
}

static int cp_to_byte(const tl_tokenizer *t, uint32_t cp) { return cp < 0x144 ? t->cp_byte[cp] : -1; }

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static int merge_put(tl_tokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t merged) {
    const uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint64_t i = mix64(key) & (t->merge_cap - 1);; i = (i + 1) & (t->merge_cap - 1)) {
        if (t->merge_id[i] < 0) {
            t->merge_keys[i] = key;
            t->merge_rank[i] = rank;
            t->merge_id[i] = merged;
            return 1;
        }
        if (t->merge_keys[i] == key) return 0; /* keep the lower rank (earlier entry) */
    }
}

static int merge_get(const tl_tokenizer *t, int32_t a, int32_t b, uint32_t *rank, int32_t *merged) {
    if (!t->merge_cap || a < 0 || b < 0) return 0;
    const uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint64_t i = mix64(key) & (t->merge_cap - 1);; i = (i + 1) & (t->merge_cap - 1)) {
        if (t->merge_id[i] < 0) return 0;
        if (t->merge_keys[i] == key) {
            *rank = t->merge_rank[i];
            *merged = t->merge_id[i];
            return 1;
        }
    }
}

/* Decoded bytes of every token text, for detokenization. */
static ternlm_status build_decoded(tl_tokenizer *t, ternlm_error *err) {
    uint64_t total = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++) total += t->text[i].len;
    t->decoded = malloc(total + 1);
    t->decoded_off = malloc((t->n_vocab + 1) * sizeof *t->decoded_off);
    if (!t->decoded || !t->decoded_off || total > UINT32_MAX)
        return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory building the vocabulary");
    uint32_t o = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        t->decoded_off[i] = o;
        const uint8_t *s = (const uint8_t *)t->text[i].p;
        for (size_t k = 0; k < t->text[i].len;) {
            uint32_t cp;
            const size_t l = tl_utf8_decode(s + k, t->text[i].len - k, &cp);
            const int b = cp_to_byte(t, cp);
            if (b >= 0) t->decoded[o++] = (char)b;
            else {
                memcpy(t->decoded + o, s + k, l); /* outside the table: copy as UTF-8 */
                o += (uint32_t)l;
            }
            k += l;
        }
    }
    t->decoded_off[t->n_vocab] = o;
    return TERNLM_OK;
}

ternlm_status tl_bpe_init(tl_tokenizer *t, const gguf_file *g, ternlm_error *err) {
    build_byte_map(t);
    for (int b = 0; b < 256; b++) {
        char s[4];
        const int l = tl_utf8_encode(t->byte_cp[b], s);
        t->byte_token[b] = tl_strmap_get(t, s, (size_t)l);
    }
    const gguf_kv *kv = gguf_find(g, "tokenizer.ggml.merges");
    if (!kv) return tl_fail(err, TERNLM_ERR_MODEL, "BPE vocabulary without 'tokenizer.ggml.merges'");
    if (kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING)
        return tl_fail(err, TERNLM_ERR_MODEL, "'tokenizer.ggml.merges' must be an array of strings");
    if (kv->arr_n > UINT32_MAX / 4) return tl_fail(err, TERNLM_ERR_MODEL, "too many merges");
    t->merge_cap = 16;
    while (t->merge_cap < 2 * kv->arr_n) t->merge_cap <<= 1;
    t->merge_keys = malloc(t->merge_cap * sizeof *t->merge_keys);
    t->merge_rank = malloc(t->merge_cap * sizeof *t->merge_rank);
    t->merge_id = malloc(t->merge_cap * sizeof *t->merge_id);
    char *buf = malloc(1024);
    if (!t->merge_keys || !t->merge_rank || !t->merge_id || !buf) {
        free(buf);
        return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory loading merges");
    }
    memset(t->merge_id, 0xFF, t->merge_cap * sizeof *t->merge_id);
    uint64_t pos = 0;
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        const gguf_str m = gguf_arr_next_str(kv, &pos);
        const char *sp = m.len > 1 ? memchr(m.p + 1, ' ', m.len - 1) : NULL;
        if (!sp) {
            free(buf);
            return tl_fail(err, TERNLM_ERR_MODEL, "merge %llu has no space separating its two parts", (unsigned long long)i);
        }
        const size_t la = (size_t)(sp - m.p), lb = m.len - la - 1;
        const int32_t a = tl_strmap_get(t, m.p, la), b = tl_strmap_get(t, sp + 1, lb);
        int32_t ab = -1;
        if (la + lb <= 1024) {
            memcpy(buf, m.p, la);
            memcpy(buf + la, sp + 1, lb);
            ab = tl_strmap_get(t, buf, la + lb);
        }
        if (a >= 0 && b >= 0 && ab >= 0) merge_put(t, a, b, (uint32_t)i, ab); /* others can never apply */
    }
    free(buf);
    return build_decoded(t, err);
}

/* ---- the merge loop ---- */

typedef struct heap_ent {
    uint32_t rank, left;   /* left = index of the left symbol (its original position) */
    int32_t lid, rid;      /* ids when pushed, to detect stale entries */
} heap_ent;

static int ent_less(const heap_ent *a, const heap_ent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(heap_ent *h, size_t *n, heap_ent e) {
    size_t i = (*n)++;
    h[i] = e;
    while (i > 0 && ent_less(&h[i], &h[(i - 1) / 2])) {
        const heap_ent t = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static heap_ent heap_pop(heap_ent *h, size_t *n) {
    const heap_ent top = h[0];
    h[0] = h[--*n];
    for (size_t i = 0;;) {
        size_t m = i;
        const size_t l = 2 * i + 1, r = l + 1;
        if (l < *n && ent_less(&h[l], &h[m])) m = l;
        if (r < *n && ent_less(&h[r], &h[m])) m = r;
        if (m == i) break;
        const heap_ent t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
    return top;
}

static void push_pair(const tl_tokenizer *t, heap_ent *h, size_t *hn, const int32_t *id, uint32_t l, uint32_t r) {
    uint32_t rank;
    int32_t merged;
    if (merge_get(t, id[l], id[r], &rank, &merged)) heap_push(h, hn, (heap_ent){rank, l, id[l], id[r]});
}

void tl_bpe_encode_word(const tl_tokenizer *t, const uint8_t *w, size_t n, tl_ids *ids) {
    if (!n) return;
    if (t->ignore_merges) {
        /* llama3: a word that is itself a token is emitted whole */
        char small[256];
        if (n <= 64) {
            size_t o = 0;
            for (size_t i = 0; i < n; i++) o += (size_t)tl_utf8_encode(t->byte_cp[w[i]], small + o);
            const int32_t id = tl_strmap_get(t, small, o);
            if (id >= 0) {
                tl_ids_push(ids, id);
                return;
            }
        }
    }
    int32_t *id = malloc(n * sizeof *id);
    uint32_t *next = malloc(n * sizeof *next), *prev = malloc(n * sizeof *prev);
    heap_ent *h = malloc(3 * n * sizeof *h); /* n-1 initial pairs + 2 per merge */
    if (!id || !next || !prev || !h) {
        ids->oom = 1;
        free(id), free(next), free(prev), free(h);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        id[i] = t->byte_token[w[i]];
        next[i] = (uint32_t)(i + 1);
        prev[i] = (uint32_t)i - 1; /* wraps for i == 0; never read there */
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < n; i++) push_pair(t, h, &hn, id, (uint32_t)i, (uint32_t)(i + 1));
    while (hn) {
        const heap_ent e = heap_pop(h, &hn);
        const uint32_t l = e.left, r = next[l];
        if (id[l] != e.lid || r >= n || id[r] != e.rid) continue; /* stale */
        uint32_t rank;
        int32_t merged = -1;
        if (!merge_get(t, id[l], id[r], &rank, &merged)) continue;
        id[l] = merged;
        id[r] = -2; /* dead */
        next[l] = next[r];
        if (next[r] < n) prev[next[r]] = l;
        if (l > 0 && id[l] >= 0) {
            /* find the live left neighbour */
            const uint32_t p = prev[l];
            if (p < n) push_pair(t, h, &hn, id, p, l);
        }
        if (next[l] < n) push_pair(t, h, &hn, id, l, next[l]);
    }
    for (uint32_t i = 0; i < n; i = next[i]) {
        if (id[i] >= 0) tl_ids_push(ids, id[i]);
        if (next[i] <= i) break;
    }
    free(id), free(next), free(prev), free(h);
}
