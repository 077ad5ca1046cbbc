/* Special-token splitting in one pass over the text (tokenizers.md §2).
 *
 * The rule being reproduced: special tokens are taken in priority order (longest first, then lowest id); each
 * one claims its leftmost non-overlapping occurrences in the text that no earlier token claimed. Doing that token
 * by token costs O(n_special x text). Here an Aho-Corasick automaton over all special texts lists every occurrence
 * in one scan, the occurrences are bucketed by priority, and each is kept when it overlaps nothing kept before.
 *
 * The overlap test is O(1): everything kept earlier is at least as long as the candidate [s, e), so an earlier
 * interval that overlaps it must cover byte s or byte e-1 (it cannot fit strictly inside). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

typedef struct ac_node {
    int32_t first_child, next_sibling; /* the trie, for the breadth-first pass */
    int32_t fail;                      /* longest proper suffix that is also a trie node */
    int32_t out;                       /* nearest node on the fail chain (excluding this one) where a token ends */
    int32_t rank_all, rank_user;       /* best priority of a token ending here (any special / USER only), or -1 */
    uint32_t depth;
    uint8_t byte;
} ac_node;

struct tl_special_matcher {
    ac_node *node;
    uint32_t n_nodes, cap_nodes;
    uint64_t *edge_key; /* (parent << 8 | byte) + 1; 0 marks an empty slot */
    int32_t *edge_child;
    uint64_t edge_cap;
    int has_user;
};

static uint64_t mix(uint64_t x) {
    x ^= x >> 31;
    x *= 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    return x;
}

static int32_t child_of(const tl_special_matcher *am, int32_t parent, uint8_t b) {
    const uint64_t key = ((uint64_t)parent << 8 | b) + 1;
    for (uint64_t i = mix(key) & (am->edge_cap - 1);; i = (i + 1) & (am->edge_cap - 1)) {
        if (am->edge_key[i] == key) return am->edge_child[i];
        if (!am->edge_key[i]) return -1;
    }
}

static void edge_put(tl_special_matcher *am, int32_t parent, uint8_t b, int32_t child) {
    const uint64_t key = ((uint64_t)parent << 8 | b) + 1;
    uint64_t i = mix(key) & (am->edge_cap - 1);
    while (am->edge_key[i]) i = (i + 1) & (am->edge_cap - 1);
    am->edge_key[i] = key;
    am->edge_child[i] = child;
}

static int32_t new_node(tl_special_matcher *am, int32_t parent, uint8_t b) {
    if (am->n_nodes == am->cap_nodes) return -1; /* sized up front: cannot happen */
    const int32_t id = (int32_t)am->n_nodes++;
    am->node[id] = (ac_node){-1, -1, 0, -1, -1, -1, parent >= 0 ? am->node[parent].depth + 1 : 0, b};
    if (parent >= 0) {
        am->node[id].next_sibling = am->node[parent].first_child;
        am->node[parent].first_child = id;
        edge_put(am, parent, b, id);
    }
    return id;
}

static void insert(tl_special_matcher *am, const tl_piece *text, int32_t rank, int is_user) {
    int32_t v = 0;
    for (uint32_t k = 0; k < text->len; k++) {
        const uint8_t b = (uint8_t)text->p[k];
        int32_t c = child_of(am, v, b);
        v = c >= 0 ? c : new_node(am, v, b);
    }
    ac_node *n = &am->node[v];
    if (n->rank_all < 0) n->rank_all = rank; /* ranks arrive in priority order: the first one wins */
    if (is_user && n->rank_user < 0) n->rank_user = rank;
    am->has_user |= is_user;
}

/* Fail and output links, breadth first (a node's fail target is shallower, so it is done before the node). */
static int link(tl_special_matcher *am) {
    int32_t *queue = malloc(am->n_nodes * sizeof *queue);
    if (!queue) return 0;
    uint32_t head = 0, tail = 0;
    for (int32_t c = am->node[0].first_child; c >= 0; c = am->node[c].next_sibling) queue[tail++] = c;
    while (head < tail) {
        const int32_t u = queue[head++];
        for (int32_t v = am->node[u].first_child; v >= 0; v = am->node[v].next_sibling) {
            int32_t f = am->node[u].fail, t;
            while ((t = child_of(am, f, am->node[v].byte)) < 0 && f) f = am->node[f].fail;
            am->node[v].fail = t >= 0 ? t : 0;
            const ac_node *fn = &am->node[am->node[v].fail];
            am->node[v].out = fn->rank_all >= 0 ? am->node[v].fail : fn->out;
            queue[tail++] = v;
        }
    }
    free(queue);
    return 1;
}

void tl_special_matcher_free(tl_special_matcher *am) {
    if (!am) return;
    free(am->node);
    free(am->edge_key);
    free(am->edge_child);
    free(am);
}

tl_special_matcher *tl_special_matcher_new(const tl_tokenizer *t) {
    tl_special_matcher *am = calloc(1, sizeof *am);
    if (!am) return NULL;
    uint64_t total = 1;
    for (uint32_t r = 0; r < t->n_special; r++) total += t->text[t->special[r]].len;
    if (total > INT32_MAX / 2) {
        free(am);
        return NULL;
    }
    am->cap_nodes = (uint32_t)total;
    am->edge_cap = 16;
    while (am->edge_cap < 2 * total) am->edge_cap <<= 1;
    am->node = malloc(total * sizeof *am->node);
    am->edge_key = calloc(am->edge_cap, sizeof *am->edge_key);
    am->edge_child = malloc(am->edge_cap * sizeof *am->edge_child);
    if (!am->node || !am->edge_key || !am->edge_child) {
        tl_special_matcher_free(am);
        return NULL;
    }
    new_node(am, -1, 0);
    for (uint32_t r = 0; r < t->n_special; r++) {
        const int32_t id = t->special[r];
        insert(am, &t->text[id], (int32_t)r, t->type[id] == TL_TT_USER);
    }
    if (!link(am)) {
        tl_special_matcher_free(am);
        return NULL;
    }
    return am;
}

typedef struct occurrence {
    uint32_t start;
    int32_t rank;
} occurrence;

typedef struct occ_list {
    occurrence *v;
    size_t n, cap;
} occ_list;

static int occ_push(occ_list *l, uint32_t start, int32_t rank) {
    if (l->n == l->cap) {
        const size_t cap = l->cap ? l->cap * 2 : 64;
        occurrence *v = realloc(l->v, cap * sizeof *v);
        if (!v) return 0;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (occurrence){start, rank};
    return 1;
}

/* Every occurrence of an eligible special token, in order of end position. 0: out of memory; -1: too many. */
static int scan(const tl_special_matcher *am, const uint8_t *s, size_t n, int user_only, occ_list *occ) {
    const size_t limit = TL_SPECIAL_MATCHES_PER_BYTE * n + 4096;
    int32_t state = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t next;
        while ((next = child_of(am, state, s[i])) < 0 && state) state = am->node[state].fail;
        state = next >= 0 ? next : 0;
        const ac_node *here = &am->node[state];
        for (int32_t v = here->rank_all >= 0 ? state : here->out; v >= 0; v = am->node[v].out) {
            const int32_t rank = user_only ? am->node[v].rank_user : am->node[v].rank_all;
            if (rank < 0) continue;
            if (occ->n == limit) return -1;
            if (!occ_push(occ, (uint32_t)(i + 1 - am->node[v].depth), rank)) return 0;
        }
    }
    return 1;
}

int tl_special_split(const tl_tokenizer *t, const uint8_t *s, size_t n, int parse_special, tl_special_fn emit,
                     void *ctx) {
    const tl_special_matcher *am = t->specials;
    if (!am || n > UINT32_MAX || (!parse_special && !am->has_user) || !n) {
        if (n) emit(ctx, 0, n, -1);
        return 1;
    }
    occ_list occ = {0};
    const int scanned = scan(am, s, n, !parse_special, &occ);
    if (scanned != 1) {
        free(occ.v);
        return scanned;
    }
    if (!occ.n) {
        emit(ctx, 0, n, -1);
        return 1;
    }
    /* bucket by priority (counting sort; stable, so each bucket stays in text order) */
    size_t *first = calloc((size_t)t->n_special + 1, sizeof *first);
    occurrence *sorted = malloc(occ.n * sizeof *sorted);
    uint8_t *covered = calloc(n, 1);
    int32_t *token_at = malloc(n * sizeof *token_at);
    int ok = first && sorted && covered && token_at;
    if (ok) {
        for (size_t i = 0; i < occ.n; i++) first[occ.v[i].rank + 1]++;
        for (uint32_t r = 0; r < t->n_special; r++) first[r + 1] += first[r];
        for (size_t i = 0; i < occ.n; i++) sorted[first[occ.v[i].rank]++] = occ.v[i];
        memset(token_at, 0xFF, n * sizeof *token_at);
        for (size_t i = 0; i < occ.n; i++) {
            const uint32_t a = sorted[i].start, len = t->text[t->special[sorted[i].rank]].len, b = a + len - 1;
            if (covered[a] || covered[b]) continue;
            memset(covered + a, 1, len);
            token_at[a] = sorted[i].rank;
        }
        size_t raw = 0;
        for (size_t i = 0; i < n;) {
            if (token_at[i] < 0) {
                i++;
                continue;
            }
            const int32_t id = t->special[token_at[i]];
            if (i > raw) emit(ctx, raw, i, -1);
            emit(ctx, i, i + t->text[id].len, id);
            i += t->text[id].len;
            raw = i;
        }
        if (n > raw) emit(ctx, raw, n, -1);
    }
    free(first);
    free(sorted);
    free(covered);
    free(token_at);
    free(occ.v);
    return ok;
}
