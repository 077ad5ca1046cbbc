/* The reasoning splitter (ternlm.h, "Reasoning"): streamed reply text in, reasoning and answer out.
 *
 * States only move forward: START (a <think> may open the reply, after optional whitespace) -> LEAD (reasoning,
 * its leading whitespace dropped) -> IN (reasoning, until </think>) -> AFTER (the answer, its leading whitespace
 * dropped) -> ANSWER. A reply that does not open with <think> goes from START straight to ANSWER, untouched. So within
 * one feed every reasoning byte comes before every answer byte.
 *
 * Only what could still turn out to be part of a tag is held back: a prefix of "<think>" at the start, and in the
 * reasoning a suffix that is a prefix of "</think>" plus the whitespace before it (reasoning is reported without
 * its trailing whitespace, as llama.cpp's reasoning_content). */
#include <stdlib.h>
#include <string.h>

#include "ternlm.h"
#include "internal.h"

enum { R_START, R_LEAD, R_IN, R_AFTER, R_ANSWER };

static const char k_open[] = "<think>", k_close[] = "</think>";
#define OPEN_LEN (sizeof k_open - 1)
#define CLOSE_LEN (sizeof k_close - 1)

struct ternlm_reasoning {
    int state, in_reasoning;
    char *held;
    size_t n_held, cap;
};

static int is_space(char ch) { return ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t'; }

ternlm_status ternlm_reasoning_new(int in_reasoning, ternlm_reasoning **out, ternlm_error *err) {
    if (!out) return tl_fail(err, TERNLM_ERR_ARG, "out must not be NULL");
    ternlm_reasoning *r = calloc(1, sizeof *r);
    if (!r) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    r->in_reasoning = in_reasoning != 0;
    r->state = r->in_reasoning ? R_LEAD : R_START;
    *out = r;
    return TERNLM_OK;
}

void ternlm_reasoning_reset(ternlm_reasoning *r) {
    if (!r) return;
    r->state = r->in_reasoning ? R_LEAD : R_START;
    r->n_held = 0;
}

void ternlm_reasoning_free(ternlm_reasoning *r) {
    if (!r) return;
    free(r->held);
    free(r);
}

int ternlm_reasoning_in_answer(const ternlm_reasoning *r) { return r && (r->state == R_AFTER || r->state == R_ANSWER); }

static void drop(ternlm_reasoning *r, size_t n) {
    if (n < r->n_held) memmove(r->held, r->held + n, r->n_held - n);
    r->n_held -= n;
}

/* Report the first n held bytes and drop them; the callback's non-zero answer is kept in *stop. */
static void emit(ternlm_reasoning *r, int reasoning, size_t n, size_t skip, ternlm_reasoning_fn fn, void *user, int *stop) {
    if (n) {
        const int v = fn(user, reasoning, r->held, n);
        if (!*stop) *stop = v;
    }
    drop(r, n + skip);
}

/* The longest suffix of p[0..n) that is a proper prefix of tag. */
static size_t partial_suffix(const char *p, size_t n, const char *tag, size_t tag_len) {
    for (size_t k = tag_len - 1; k > 0; k--)
        if (k <= n && !memcmp(p + n - k, tag, k)) return k;
    return 0;
}

/* Moves the held text forward as far as it can be decided; at the end (final) everything is decided. */
static int advance(ternlm_reasoning *r, int final, ternlm_reasoning_fn fn, void *user) {
    int stop = 0;
    for (;;) {
        if (r->state == R_START) {
            size_t ws = 0;
            while (ws < r->n_held && is_space(r->held[ws])) ws++;
            const size_t n = r->n_held - ws;
            if (n >= OPEN_LEN && !memcmp(r->held + ws, k_open, OPEN_LEN)) {
                drop(r, ws + OPEN_LEN);
                r->state = R_LEAD;
            } else if (!final && n < OPEN_LEN && (!n || !memcmp(r->held + ws, k_open, n))) { /* it may still be <think> */
                return stop;
            } else {
                r->state = R_ANSWER; /* not a thinking reply: the text as it came */
            }
        } else if (r->state == R_LEAD || r->state == R_AFTER) {
            size_t ws = 0;
            while (ws < r->n_held && is_space(r->held[ws])) ws++;
            drop(r, ws);
            if (!r->n_held) return stop;
            r->state = r->state == R_LEAD ? R_IN : R_ANSWER;
        } else if (r->state == R_IN) {
            const char *hit = NULL;
            for (size_t i = 0; !hit && i + CLOSE_LEN <= r->n_held; i++)
                if (r->held[i] == '<' && !memcmp(r->held + i, k_close, CLOSE_LEN)) hit = r->held + i;
            size_t end = hit ? (size_t)(hit - r->held) : final ? r->n_held : r->n_held - partial_suffix(r->held, r->n_held, k_close, CLOSE_LEN);
            const size_t tag_at = end;
            while (end > 0 && is_space(r->held[end - 1])) end--; /* trailing whitespace waits for what follows it */
            if (hit || final) {
                emit(r, 1, end, (tag_at - end) + (hit ? CLOSE_LEN : 0), fn, user, &stop);
                if (hit) r->state = R_AFTER;
                else return stop;
            } else {
                emit(r, 1, end, 0, fn, user, &stop);
                return stop;
            }
        } else {
            emit(r, 0, r->n_held, 0, fn, user, &stop);
            return stop;
        }
    }
}

int ternlm_reasoning_feed(ternlm_reasoning *r, const char *text, size_t len, ternlm_reasoning_fn fn, void *user) {
    if (!r || !fn || (!text && len)) return 0;
    if (r->n_held + len > r->cap) {
        size_t cap = r->cap ? r->cap : 64;
        while (cap < r->n_held + len) cap *= 2;
        char *p = realloc(r->held, cap);
        if (!p) { /* cannot hold it: report it as it is rather than lose it */
            int stop = advance(r, 1, fn, user);
            return stop ? stop : fn(user, r->state == R_IN || r->state == R_LEAD, text, len);
        }
        r->held = p;
        r->cap = cap;
    }
    if (len) memcpy(r->held + r->n_held, text, len);
    r->n_held += len;
    return advance(r, 0, fn, user);
}

int ternlm_reasoning_flush(ternlm_reasoning *r, ternlm_reasoning_fn fn, void *user) {
    if (!r || !fn) return 0;
    return advance(r, 1, fn, user);
}

int ternlm_model_thinks(const ternlm_model *m) {
    size_t len = 0;
    const char *t = m ? ternlm_model_meta_string(m, "tokenizer.chat_template", &len) : NULL;
    for (size_t i = 0; t && i + OPEN_LEN <= len; i++) /* the template need not be NUL-terminated */
        if (t[i] == '<' && !memcmp(t + i, k_open, OPEN_LEN)) return 1;
    return 0;
}
