/* Pre-tokenizers for byte-level BPE, written as matchers instead of regexes
 * (../shared/specs/tokenizers.md §4). They work on code points and report byte ranges. */
#include <stdlib.h>

#include "tokenizer.h"
#include "unicode.h"

typedef struct cps {
    uint32_t *cp;
    size_t *off; /* byte offset of each code point, plus the end */
    size_t n;
} cps;

static int is_L(uint32_t c) { return tl_unicode_class(c) == TL_UC_L; }
static int is_N(uint32_t c) { return tl_unicode_class(c) == TL_UC_N; }
static int is_S(uint32_t c) { return tl_unicode_is_space(c); }
static int is_O(uint32_t c) { return !is_S(c) && !is_L(c) && !is_N(c); }
static int is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }
static uint32_t lower_ascii(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Length of a contraction at i ('s 't 'm 'd 're 've 'll), 0 if none. */
static size_t contraction(const uint32_t *cp, size_t i, size_t n, int any_case) {
    if (cp[i] != '\'' || i + 1 >= n) return 0;
    const uint32_t a = any_case ? lower_ascii(cp[i + 1]) : cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= n) return 0;
    const uint32_t b = any_case ? lower_ascii(cp[i + 2]) : cp[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

static size_t run(const uint32_t *cp, size_t k, size_t n, int (*in)(uint32_t)) {
    while (k < n && in(cp[k])) k++;
    return k;
}

/* Whitespace run at i: `\s+(?!\S)|\s+` (and, for llama3, `\s*[\r\n]+` first). Returns the end. */
static size_t whitespace(const uint32_t *cp, size_t i, size_t n, int newline_rule) {
    const size_t e = run(cp, i, n, is_S);
    if (newline_rule) {
        size_t last = n;
        for (size_t k = i; k < e; k++)
            if (is_crlf(cp[k])) last = k;
        if (last != n) return last + 1;
    }
    if (e < n && e - i >= 2) return e - 1; /* leave the last space for the next word */
    return e > i ? e : i + 1;
}

/* One llama3 piece starting at i; returns its end. Digit runs are cut at max_digits (3; qwen2: 1). */
static size_t llama3_next(const uint32_t *cp, size_t i, size_t n, size_t max_digits) {
    const uint32_t c = cp[i];
    size_t k = contraction(cp, i, n, 1);
    if (k) return i + k;
    size_t j = i;
    if (!is_L(c) && !is_N(c) && !is_crlf(c) && i + 1 < n && is_L(cp[i + 1])) j = i + 1;
    if (is_L(cp[j])) return run(cp, j, n, is_L);
    if (is_N(c)) {
        k = i;
        while (k < n && k - i < max_digits && is_N(cp[k])) k++;
        return k;
    }
    j = (c == ' ' && i + 1 < n) ? i + 1 : i;
    if (is_O(cp[j])) return run(cp, run(cp, j, n, is_O), n, is_crlf);
    return whitespace(cp, i, n, 1);
}

static size_t gpt2_next(const uint32_t *cp, size_t i, size_t n) {
    size_t k = contraction(cp, i, n, 0);
    if (k) return i + k;
    const size_t j = (cp[i] == ' ' && i + 1 < n) ? i + 1 : i;
    if (is_L(cp[j])) return run(cp, j, n, is_L);
    if (is_N(cp[j])) return run(cp, j, n, is_N);
    if (is_O(cp[j])) return run(cp, j, n, is_O);
    return whitespace(cp, i, n, 0);
}

/* ---- `default`: four splitters in sequence, each re-splitting the previous one's pieces ---- */

static int is_punct_sym(uint32_t c) {
    if (c < 0x80 && (c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '~' || c == '|'))
        return 1;
    return tl_unicode_class(c) == TL_UC_P;
}

static int is_ascii_digit(uint32_t c) { return c >= '0' && c <= '9'; }

typedef struct emitter {
    const cps *s;
    tl_piece_fn fn;
    void *ctx;
} emitter;

static void out(const emitter *e, size_t a, size_t b) {
    if (b > a) e->fn(e->ctx, e->s->off[a], e->s->off[b]);
}

static void split4_digits3(const emitter *e, size_t a, size_t b) {
    const uint32_t *cp = e->s->cp;
    size_t start = a, i = a;
    while (i + 3 <= b) {
        if (is_ascii_digit(cp[i]) && is_ascii_digit(cp[i + 1]) && is_ascii_digit(cp[i + 2])) {
            out(e, start, i);
            out(e, i, i + 3);
            i += 3;
            start = i;
        } else {
            i++;
        }
    }
    out(e, start, b);
}

/* Split [a,b) into runs of `in` and runs of the rest, passing each to next(). */
static void split_runs(const emitter *e, size_t a, size_t b, int (*in)(uint32_t),
                       void (*next)(const emitter *, size_t, size_t)) {
    const uint32_t *cp = e->s->cp;
    size_t i = a;
    while (i < b) {
        const int kind = in(cp[i]);
        size_t k = i;
        while (k < b && in(cp[k]) == kind) k++;
        next(e, i, k);
        i = k;
    }
}

static void split3_numbers(const emitter *e, size_t a, size_t b) { split_runs(e, a, b, is_N, split4_digits3); }

static void split2_gpt2(const emitter *e, size_t a, size_t b) {
    /* the GPT-2 matcher sees only this piece, so "end of text" is b */
    const uint32_t *cp = e->s->cp + a;
    const size_t n = b - a;
    for (size_t i = 0; i < n;) {
        const size_t k = gpt2_next(cp, i, n);
        split3_numbers(e, a + i, a + k);
        i = k;
    }
}

void tl_pretokenize(enum tl_pre pre, const uint8_t *s, size_t n, tl_piece_fn emit, void *ctx) {
    if (!n) return;
    cps c = {malloc(n * sizeof(uint32_t)), malloc((n + 1) * sizeof(size_t)), 0};
    if (!c.cp || !c.off) {
        free(c.cp);
        free(c.off);
        emit(ctx, 0, n); /* out of memory: one piece keeps the text lossless */
        return;
    }
    for (size_t b = 0; b < n;) {
        c.off[c.n] = b;
        b += tl_utf8_decode(s + b, n - b, &c.cp[c.n]);
        c.n++;
    }
    c.off[c.n] = n;
    emitter e = {&c, emit, ctx};
    if (pre == TL_PRE_DEFAULT) {
        split_runs(&e, 0, c.n, is_punct_sym, split2_gpt2);
    } else {
        for (size_t i = 0; i < c.n;) {
            const size_t k = pre == TL_PRE_LLAMA3   ? llama3_next(c.cp, i, c.n, 3)
                             : pre == TL_PRE_QWEN2 ? llama3_next(c.cp, i, c.n, 1)
                                                   : gpt2_next(c.cp, i, c.n);
            out(&e, i, k);
            i = k;
        }
    }
    free(c.cp);
    free(c.off);
}
