/* A small Jinja subset for the chat templates found in GGUF files: text, {{ expr }}, {% for %}, {% if/elif/else %},
 * {% set %}, whitespace control ({%- -%}), string literals, variables, .attr and ['key'], + (concatenation),
 * == != and or not, `in`, the filters trim / upper / lower / length, and loop.index/index0/first/last.
 * Anything else is an error that names the construct, so callers can fall back to a built-in format.
 *
 * Strings are lists of segments flagged as template text or user text (message content), so the tokenizer can
 * parse special tokens in the template while encoding user text as plain text.
 *
 * A template is data from the model file, so rendering is bounded: nesting depth (the renderer recurses), the size
 * of every string and of the output, the number of loop iterations, and the total work (bytes scanned + built). */
#include "jinja.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ternlm.h"

/* ---- values ---- */

typedef enum { V_NONE, V_BOOL, V_INT, V_STR, V_MSG, V_MSGS } vkind;

typedef struct value {
    vkind kind;
    long long i;         /* V_BOOL, V_INT */
    tl_jinja_text s;     /* V_STR */
    size_t msg;          /* V_MSG: index into the messages */
} value;

static void text_free(tl_jinja_text *t) {
    for (size_t i = 0; i < t->n; i++) free(t->seg[i].p);
    free(t->seg);
    memset(t, 0, sizeof *t);
}

/* Append bytes (amortised O(n): segments grow geometrically). Returns 0 when out of memory. */
static int text_append(tl_jinja_text *t, const char *p, size_t n, int user) {
    if (!n) return 1;
    if (!(t->n && t->seg[t->n - 1].user == user)) { /* else merge with the last segment of the same kind */
        if (t->n == t->cap) {
            const size_t cap = t->cap ? t->cap * 2 : 4;
            tl_jinja_seg *s = realloc(t->seg, cap * sizeof *s);
            if (!s) return 0;
            t->seg = s;
            t->cap = cap;
        }
        t->seg[t->n++] = (tl_jinja_seg){NULL, 0, 0, user};
    }
    tl_jinja_seg *g = &t->seg[t->n - 1];
    if (g->len + n + 1 > g->cap) {
        size_t cap = g->cap ? g->cap : 16;
        while (cap < g->len + n + 1) cap *= 2;
        char *q = realloc(g->p, cap);
        if (!q) return 0;
        g->p = q;
        g->cap = cap;
    }
    memcpy(g->p + g->len, p, n);
    g->len += n;
    g->p[g->len] = 0;
    t->bytes += n;
    return 1;
}

static size_t text_len(const tl_jinja_text *t) { return t->bytes; }

/* The text as one buffer (NUL-terminated, may contain NULs); NULL when out of memory. */
static char *text_flat(const tl_jinja_text *t) {
    char *flat = malloc(t->bytes + 1);
    if (!flat) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < t->n; i++) memcpy(flat + o, t->seg[i].p, t->seg[i].len), o += t->seg[i].len;
    flat[o] = 0;
    return flat;
}

/* memmem is not in C11. */
static const char *find_bytes(const char *hay, size_t n, const char *needle, size_t m) {
    if (m == 0) return hay;
    if (m > n) return NULL;
    for (const char *p = hay, *end = hay + n - m + 1; p < end;) {
        p = memchr(p, needle[0], (size_t)(end - p));
        if (!p) return NULL;
        if (memcmp(p, needle, m) == 0) return p;
        p++;
    }
    return NULL;
}

static void value_free(value *v) {
    if (v->kind == V_STR) text_free(&v->s);
    v->kind = V_NONE;
}

/* ---- the renderer ---- */

#define MAX_VARS 32
#define TL_JINJA_MIN(a, b) ((a) < (b) ? (a) : (b))

typedef struct var {
    char name[32];
    value v;
} var;

typedef struct loopvar {
    int active;
    size_t index, length;
} loopvar;

typedef struct jctx {
    const char *src;
    size_t pos, len;
    const tl_jinja_msg *msgs;
    size_t n_msgs;
    const char *bos, *eos;
    int add_gen;
    var vars[MAX_VARS];
    int n_vars;
    loopvar loop;
    tl_jinja_text out;
    char err[256];
    int failed;
    /* limits (see ternlm.h TERNLM_TEMPLATE_*) and what has been used of them */
    int depth;
    size_t text_limit, loops, loop_limit, work, work_limit;
} jctx;

/* `len` bytes at `near` are quoted (at most 40): callers pass no more than the buffer holds. */
static int fail(jctx *c, const char *what, const char *near, size_t len) {
    if (!c->failed) {
        snprintf(c->err, sizeof c->err, "unsupported chat template construct: %s near '%.*s'", what, (int)(len > 40 ? 40 : len),
                 near);
        c->failed = 1;
    }
    return 0;
}

static int fail_limit(jctx *c, const char *what, size_t limit) {
    if (!c->failed) {
        snprintf(c->err, sizeof c->err, "chat template exceeds a limit: %s (limit %zu)", what, limit);
        c->failed = 1;
    }
    return 0;
}

/* Count work; 0 (and a failure) once the budget is spent. */
static int spend(jctx *c, size_t units) {
    c->work += units;
    return c->work <= c->work_limit || fail_limit(c, "too much work (template scanned or text built)", c->work_limit);
}

/* Append to a string value or the output, within the text and work limits. */
static int append(jctx *c, tl_jinja_text *t, const char *p, size_t n, int user) {
    if (c->failed) return 0;
    if (n > c->text_limit - TL_JINJA_MIN(text_len(t), c->text_limit))
        return fail_limit(c, "a string or the rendered text is too long", c->text_limit);
    if (!spend(c, n)) return 0;
    if (!text_append(t, p, n, user)) {
        snprintf(c->err, sizeof c->err, "out of memory rendering the chat template");
        c->failed = 1;
        return 0;
    }
    return 1;
}

static int concat_text(jctx *c, tl_jinja_text *dst, const tl_jinja_text *src) {
    for (size_t i = 0; i < src->n; i++)
        if (!append(c, dst, src->seg[i].p, src->seg[i].len, src->seg[i].user)) return 0;
    return 1;
}

static value str_value(jctx *c, const char *p, size_t n, int user) {
    value v = {V_STR, 0, {0}, 0};
    append(c, &v.s, p, n, user);
    return v;
}

/* Recursion guard for expressions and blocks: the renderer's stack depth is proportional to it. */
static int enter(jctx *c) {
    if (++c->depth <= TERNLM_TEMPLATE_MAX_DEPTH) return 1;
    return fail_limit(c, "expressions or blocks nested too deeply", TERNLM_TEMPLATE_MAX_DEPTH);
}
static void leave(jctx *c) { c->depth--; }

/* Tokens of an expression. */
typedef struct lexer {
    const char *p, *end;
} lexer;

static void skip_ws(lexer *L) {
    while (L->p < L->end && isspace((unsigned char)*L->p)) L->p++;
}

static int accept(lexer *L, const char *tok) {
    skip_ws(L);
    const size_t n = strlen(tok);
    if ((size_t)(L->end - L->p) < n || memcmp(L->p, tok, n)) return 0;
    if (isalpha((unsigned char)tok[0]) && L->p + n < L->end && (isalnum((unsigned char)L->p[n]) || L->p[n] == '_')) return 0;
    L->p += n;
    return 1;
}

static int ident(lexer *L, char *out, size_t cap) {
    skip_ws(L);
    size_t n = 0;
    if (L->p >= L->end || !(isalpha((unsigned char)*L->p) || *L->p == '_')) return 0;
    while (L->p < L->end && (isalnum((unsigned char)*L->p) || *L->p == '_')) {
        if (n + 1 < cap) out[n++] = *L->p;
        L->p++;
    }
    out[n] = 0;
    return 1;
}

static value expr(jctx *c, lexer *L);

/* Fail quoting what is left of the expression (never past its end). */
static int fail_lex(jctx *c, const char *what, const lexer *L) { return fail(c, what, L->p, (size_t)(L->end - L->p)); }

static value lookup(jctx *c, const char *name, lexer *L) {
    for (int i = c->n_vars - 1; i >= 0; i--)
        if (!strcmp(c->vars[i].name, name)) {
            value v = c->vars[i].v;
            if (v.kind == V_STR) {
                value copy = {V_STR, 0, {0}, 0};
                concat_text(c, &copy.s, &v.s);
                return copy;
            }
            return v;
        }
    if (!strcmp(name, "messages")) return (value){V_MSGS, 0, {0}, 0};
    if (!strcmp(name, "bos_token")) return str_value(c, c->bos, strlen(c->bos), 0);
    if (!strcmp(name, "eos_token")) return str_value(c, c->eos, strlen(c->eos), 0);
    if (!strcmp(name, "add_generation_prompt")) return (value){V_BOOL, c->add_gen, {0}, 0};
    if (!strcmp(name, "true") || !strcmp(name, "True")) return (value){V_BOOL, 1, {0}, 0};
    if (!strcmp(name, "false") || !strcmp(name, "False")) return (value){V_BOOL, 0, {0}, 0};
    if (!strcmp(name, "none") || !strcmp(name, "None")) return (value){V_NONE, 0, {0}, 0};
    if (!strcmp(name, "loop") && c->loop.active) return (value){V_INT, -1, {0}, 0}; /* resolved by .attr */
    fail(c, "unknown variable", name, strlen(name));
    (void)L;
    return (value){V_NONE, 0, {0}, 0};
}

static value attribute(jctx *c, value base, const char *name) {
    if (base.kind == V_INT && base.i == -1) { /* loop.* */
        if (!strcmp(name, "index0")) return (value){V_INT, (long long)c->loop.index, {0}, 0};
        if (!strcmp(name, "index")) return (value){V_INT, (long long)c->loop.index + 1, {0}, 0};
        if (!strcmp(name, "first")) return (value){V_BOOL, c->loop.index == 0, {0}, 0};
        if (!strcmp(name, "last")) return (value){V_BOOL, c->loop.index + 1 == c->loop.length, {0}, 0};
        if (!strcmp(name, "length")) return (value){V_INT, (long long)c->loop.length, {0}, 0};
        fail(c, "unknown loop attribute", name, strlen(name));
        return (value){V_NONE, 0, {0}, 0};
    }
    if (base.kind == V_MSG) {
        const tl_jinja_msg *m = &c->msgs[base.msg];
        if (!strcmp(name, "role")) return str_value(c, m->role, strlen(m->role), 0);
        if (!strcmp(name, "content")) return str_value(c, m->content, strlen(m->content), 1);
    }
    value_free(&base);
    fail(c, "attribute", name, strlen(name));
    return (value){V_NONE, 0, {0}, 0};
}

/* A quoted literal: the unescaped bytes are collected first and appended once. */
static value string_literal(jctx *c, lexer *L) {
    const char q = *L->p++;
    const char *start = L->p;
    while (L->p < L->end && *L->p != q) L->p += (*L->p == '\\' && L->p + 1 < L->end) ? 2 : 1;
    if (L->p >= L->end) {
        fail(c, "unterminated string", start - 1, (size_t)(L->end - start + 1));
        return (value){V_NONE, 0, {0}, 0};
    }
    char *buf = malloc((size_t)(L->p - start) + 1);
    size_t n = 0;
    for (const char *p = start; buf && p < L->p; p++) {
        char ch = *p;
        if (ch == '\\' && p + 1 < L->p) {
            ch = *++p;
            ch = ch == 'n' ? '\n' : ch == 't' ? '\t' : ch;
        }
        buf[n++] = ch;
    }
    L->p++;
    value v = {V_STR, 0, {0}, 0};
    if (!buf) fail(c, "out of memory for a string", start, 0);
    else append(c, &v.s, buf, n, 0);
    free(buf);
    return v;
}

static value integer_literal(jctx *c, lexer *L) {
    const char *start = L->p;
    long long v = 0;
    while (L->p < L->end && isdigit((unsigned char)*L->p)) {
        const int d = *L->p++ - '0';
        if (v > (LLONG_MAX - d) / 10) {
            fail(c, "integer literal too large", start, (size_t)(L->end - start));
            return (value){V_NONE, 0, {0}, 0};
        }
        v = v * 10 + d;
    }
    return (value){V_INT, v, {0}, 0};
}

static value primary(jctx *c, lexer *L) {
    skip_ws(L);
    if (L->p < L->end && (*L->p == '\'' || *L->p == '"')) return string_literal(c, L);
    if (L->p < L->end && isdigit((unsigned char)*L->p)) return integer_literal(c, L);
    if (accept(L, "(")) {
        value v = expr(c, L);
        if (!accept(L, ")")) fail_lex(c, "missing ')'", L);
        return v;
    }
    char name[64];
    if (!ident(L, name, sizeof name)) {
        fail_lex(c, "expression", L);
        return (value){V_NONE, 0, {0}, 0};
    }
    value v = lookup(c, name, L);
    while (!c->failed) {
        if (accept(L, ".")) {
            char a[64];
            if (!ident(L, a, sizeof a)) return fail_lex(c, "attribute", L), v;
            v = attribute(c, v, a);
        } else if (accept(L, "[")) {
            value k = expr(c, L);
            if (!accept(L, "]") || k.kind != V_STR) {
                value_free(&k);
                fail_lex(c, "index", L);
                return v;
            }
            char key[64];
            snprintf(key, sizeof key, "%s", k.s.n ? k.s.seg[0].p : "");
            value_free(&k);
            v = attribute(c, v, key);
        } else {
            return v;
        }
    }
    return v;
}

static int truthy(const value *v) {
    switch (v->kind) {
    case V_BOOL: case V_INT: return v->i != 0;
    case V_STR: return text_len(&v->s) > 0;
    case V_MSGS: return 1;
    default: return 0;
    }
}

/* Strip ASCII whitespace at both ends in linear time (one memmove), across segments that become empty. */
static void trim(tl_jinja_text *t) {
    while (t->n) {
        tl_jinja_seg *g = &t->seg[0];
        size_t k = 0;
        while (k < g->len && isspace((unsigned char)g->p[k])) k++;
        memmove(g->p, g->p + k, g->len - k + 1);
        g->len -= k;
        t->bytes -= k;
        if (g->len) break;
        free(g->p);
        memmove(t->seg, t->seg + 1, (t->n - 1) * sizeof *t->seg);
        t->n--;
    }
    while (t->n) {
        tl_jinja_seg *g = &t->seg[t->n - 1];
        size_t k = g->len;
        while (k > 0 && isspace((unsigned char)g->p[k - 1])) k--;
        t->bytes -= g->len - k;
        g->len = k;
        g->p[k] = 0;
        if (g->len) break;
        free(g->p);
        t->n--;
    }
}

static value filter(jctx *c, value v, const char *name) {
    if (!strcmp(name, "length")) {
        const long long n = v.kind == V_STR ? (long long)text_len(&v.s) : v.kind == V_MSGS ? (long long)c->n_msgs : 0;
        value_free(&v);
        return (value){V_INT, n, {0}, 0};
    }
    if (v.kind != V_STR) return fail(c, "filter on a non-string", name, strlen(name)), v;
    if (!strcmp(name, "trim")) {
        trim(&v.s);
        return v;
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower")) {
        for (size_t i = 0; i < v.s.n; i++)
            for (size_t k = 0; k < v.s.seg[i].len; k++)
                v.s.seg[i].p[k] = (char)(name[0] == 'u' ? toupper((unsigned char)v.s.seg[i].p[k]) : tolower((unsigned char)v.s.seg[i].p[k]));
        return v;
    }
    fail(c, "filter", name, strlen(name));
    return v;
}

static value postfix(jctx *c, lexer *L) {
    value v = primary(c, L);
    while (!c->failed && accept(L, "|")) {
        char f[32];
        if (!ident(L, f, sizeof f)) return fail_lex(c, "filter", L), v;
        v = filter(c, v, f);
    }
    return v;
}

static value concat(jctx *c, lexer *L) {
    value v = postfix(c, L);
    while (!c->failed && accept(L, "+")) {
        value r = postfix(c, L);
        if (v.kind == V_INT && r.kind == V_INT) {
            if ((r.i > 0 && v.i > LLONG_MAX - r.i) || (r.i < 0 && v.i < LLONG_MIN - r.i)) fail_lex(c, "integer overflow in '+'", L);
            else v.i += r.i;
        } else if (v.kind == V_STR && r.kind == V_STR) {
            concat_text(c, &v.s, &r.s);
        } else {
            fail_lex(c, "'+' on mixed types", L);
        }
        value_free(&r);
    }
    return v;
}

static int values_equal(const value *a, const value *b) {
    if (a->kind == V_STR && b->kind == V_STR) {
        if (text_len(&a->s) != text_len(&b->s)) return 0;
        char *x = text_flat(&a->s), *y = text_flat(&b->s);
        const int eq = x && y && memcmp(x, y, text_len(&a->s)) == 0;
        free(x), free(y);
        return eq;
    }
    if ((a->kind == V_INT || a->kind == V_BOOL) && (b->kind == V_INT || b->kind == V_BOOL)) return a->i == b->i;
    return a->kind == b->kind && a->kind == V_NONE;
}

static value compare(jctx *c, lexer *L) {
    value v = concat(c, L);
    for (;;) {
        int ne = 0, in = 0;
        if (accept(L, "==")) ne = 0;
        else if (accept(L, "!=")) ne = 1;
        else if (accept(L, "is")) {
            const int neg = accept(L, "not");
            char t[32] = "";
            if (!ident(L, t, sizeof t)) return fail_lex(c, "'is' without a test name", L), v;
            int r;
            if (!strcmp(t, "defined")) r = v.kind != V_NONE;
            else if (!strcmp(t, "none")) r = v.kind == V_NONE;
            else return fail(c, "test", t, strlen(t)), v;
            value_free(&v);
            v = (value){V_BOOL, neg ? !r : r, {0}, 0};
            continue;
        } else if (accept(L, "in")) in = 1;
        else return v;
        value r = concat(c, L);
        int res;
        if (in) {
            if (v.kind != V_STR || r.kind != V_STR) {
                value_free(&r);
                return fail_lex(c, "'in' on non-strings", L), v;
            }
            char *hay = text_flat(&r.s), *needle = text_flat(&v.s);
            res = hay && needle && spend(c, text_len(&r.s)) &&
                  find_bytes(hay, text_len(&r.s), needle, text_len(&v.s)) != NULL;
            free(hay), free(needle);
        } else {
            res = values_equal(&v, &r) != ne;
        }
        value_free(&v);
        value_free(&r);
        v = (value){V_BOOL, res, {0}, 0};
    }
}

static value unary(jctx *c, lexer *L) {
    if (accept(L, "not")) {
        if (!enter(c)) return (value){V_NONE, 0, {0}, 0};
        value v = unary(c, L);
        leave(c);
        const int t = truthy(&v);
        value_free(&v);
        return (value){V_BOOL, !t, {0}, 0};
    }
    return compare(c, L);
}

static value logic_and(jctx *c, lexer *L) {
    value v = unary(c, L);
    while (!c->failed && accept(L, "and")) {
        value r = unary(c, L);
        const int t = truthy(&v) && truthy(&r);
        value_free(&v), value_free(&r);
        v = (value){V_BOOL, t, {0}, 0};
    }
    return v;
}

static value expr_or(jctx *c, lexer *L) {
    value v = logic_and(c, L);
    while (!c->failed && accept(L, "or")) {
        value r = logic_and(c, L);
        const int t = truthy(&v) || truthy(&r);
        value_free(&v), value_free(&r);
        v = (value){V_BOOL, t, {0}, 0};
    }
    return v;
}

static value expr(jctx *c, lexer *L) {
    if (!enter(c)) return (value){V_NONE, 0, {0}, 0};
    value v = expr_or(c, L);
    leave(c);
    return v;
}

/* ---- statements ---- */

typedef struct tag {
    const char *body;  /* inside the delimiters, trimmed */
    size_t len;
    size_t next;       /* position after the tag */
    int is_stmt;
} tag;

/* Find the next tag at or after pos; text before it goes to *text_end. Handles {%- / -%} trimming. */
static int next_tag(jctx *c, size_t pos, size_t *text_end, tag *t) {
    const char *s = c->src;
    for (size_t i = pos; i + 1 < c->len; i++) {
        if (s[i] != '{' || (s[i + 1] != '{' && s[i + 1] != '%' && s[i + 1] != '#')) continue;
        const char kind = s[i + 1];
        const char *close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
        const char *e = find_bytes(s + i + 2, c->len - (i + 2), close, 2); /* the template is not NUL-terminated */
        if (!e) return fail(c, "unclosed tag", s + i, TL_JINJA_MIN(c->len - i, 10));
        if (!spend(c, (size_t)(e - s) + 2 - pos)) return 0;
        size_t a = i + 2, b = (size_t)(e - s);
        *text_end = i;
        if (a < b && s[a] == '-') { /* trim whitespace before the tag */
            a++;
            while (*text_end > pos && isspace((unsigned char)s[*text_end - 1])) (*text_end)--;
        }
        size_t next = b + 2;
        if (b > a && s[b - 1] == '-') {
            b--;
            while (next < c->len && isspace((unsigned char)s[next])) next++;
        }
        while (a < b && isspace((unsigned char)s[a])) a++;
        while (b > a && isspace((unsigned char)s[b - 1])) b--;
        if (kind == '#') { /* a comment: emit the text and keep scanning */
            if (!append(c, &c->out, s + pos, *text_end - pos, 0)) return 0;
            pos = next;
            i = next - 1;
            continue;
        }
        *t = (tag){s + a, b - a, next, kind == '%'};
        return 1;
    }
    if (!spend(c, c->len - pos)) return 0;
    *text_end = c->len;
    t->len = 0;
    t->next = c->len;
    t->body = NULL;
    return 1;
}

static int word_is(const tag *t, const char *w) {
    const size_t n = strlen(w);
    return t->body && t->len >= n && !memcmp(t->body, w, n) && (t->len == n || isspace((unsigned char)t->body[n]));
}

/* Render from pos until a tag whose first word is in `stops`; returns the position of that tag (or len). */
static size_t render_block(jctx *c, size_t pos, int emit, const char *const *stops, tag *stopped);

static size_t skip_block(jctx *c, size_t pos, const char *const *stops, tag *stopped) { return render_block(c, pos, 0, stops, stopped); }

static void set_var(jctx *c, const char *name, value v) {
    for (int i = c->n_vars - 1; i >= 0; i--)
        if (!strcmp(c->vars[i].name, name)) {
            value_free(&c->vars[i].v);
            c->vars[i].v = v;
            return;
        }
    if (c->n_vars == MAX_VARS) {
        value_free(&v);
        fail(c, "too many variables", name, strlen(name));
        return;
    }
    snprintf(c->vars[c->n_vars].name, sizeof c->vars[0].name, "%s", name);
    c->vars[c->n_vars++].v = v;
}

static size_t do_for(jctx *c, const tag *t, int emit) {
    lexer L = {t->body + 3, t->body + t->len};
    char var_name[32], iter[32];
    if (!ident(&L, var_name, sizeof var_name) || !accept(&L, "in") || !ident(&L, iter, sizeof iter))
        return fail(c, "for", t->body, t->len), c->len;
    value it = lookup(c, iter, &L);
    skip_ws(&L);
    if (it.kind != V_MSGS || L.p != L.end) {
        value_free(&it);
        return fail(c, "for over something other than messages", t->body, t->len), c->len;
    }
    static const char *const stops[] = {"endfor", NULL};
    tag end;
    skip_block(c, t->next, stops, &end); /* find the matching endfor */
    if (c->failed) return c->len;
    if (!end.body) return fail(c, "for without endfor", t->body, t->len), c->len;
    const loopvar saved = c->loop;
    for (size_t i = 0; emit && i < c->n_msgs && !c->failed; i++) {
        if (++c->loops > c->loop_limit) {
            fail_limit(c, "too many loop iterations", c->loop_limit);
            break;
        }
        c->loop = (loopvar){1, i, c->n_msgs};
        set_var(c, var_name, (value){V_MSG, 0, {0}, i});
        render_block(c, t->next, 1, stops, &end);
    }
    c->loop = saved;
    return c->failed ? c->len : end.next;
}

static size_t do_if(jctx *c, const tag *t, int emit) {
    static const char *const stops[] = {"elif", "else", "endif", NULL};
    int done = 0;
    tag cur = *t;
    size_t skip = 2; /* "if" */
    for (;;) {
        int take = 0;
        if (skip && emit && !done) { /* conditions in skipped blocks are not evaluated */
            lexer L = {cur.body + skip, cur.body + cur.len};
            value v = expr(c, &L);
            skip_ws(&L);
            if (L.p != L.end) fail_lex(c, "condition", &L);
            take = !done && truthy(&v);
            value_free(&v);
        } else if (!skip) {
            take = !done;
        }
        tag stop;
        render_block(c, cur.next, emit && take, stops, &stop);
        if (c->failed) return c->len;
        done |= take;
        if (word_is(&stop, "endif")) return stop.next;
        if (!stop.body) return fail(c, "if without endif", t->body, t->len), c->len;
        cur = stop;
        skip = word_is(&stop, "elif") ? 4 : 0;
    }
}

static size_t render_block(jctx *c, size_t pos, int emit, const char *const *stops, tag *stopped) {
    while (pos < c->len && !c->failed) {
        size_t text_end;
        tag t;
        if (!next_tag(c, pos, &text_end, &t)) return c->len;
        if (emit && !append(c, &c->out, c->src + pos, text_end - pos, 0)) return c->len;
        if (!t.body) {
            pos = c->len;
            break;
        }
        if (t.is_stmt) {
            for (const char *const *s = stops; s && *s; s++)
                if (word_is(&t, *s)) {
                    *stopped = t;
                    return text_end;
                }
            if (word_is(&t, "for") || word_is(&t, "if")) {
                if (!enter(c)) return c->len;
                pos = word_is(&t, "for") ? do_for(c, &t, emit) : do_if(c, &t, emit);
                leave(c);
            } else if (word_is(&t, "set")) {
                lexer L = {t.body + 3, t.body + t.len};
                char name[32];
                if (!ident(&L, name, sizeof name) || !accept(&L, "=")) return fail(c, "set", t.body, t.len), c->len;
                if (emit) set_var(c, name, expr(c, &L));
                pos = t.next;
            } else {
                return fail(c, "statement", t.body, t.len), c->len;
            }
        } else {
            if (emit) {
                lexer L = {t.body, t.body + t.len};
                value v = expr(c, &L);
                skip_ws(&L);
                if (L.p != L.end) fail_lex(c, "expression", &L);
                if (v.kind == V_STR) concat_text(c, &c->out, &v.s);
                else if (v.kind == V_INT) {
                    char num[32];
                    snprintf(num, sizeof num, "%lld", v.i);
                    append(c, &c->out, num, strlen(num), 0);
                } else if (v.kind != V_NONE) fail(c, "printing a non-string", t.body, t.len);
                value_free(&v);
            }
            pos = t.next;
        }
    }
    if (stopped) memset(stopped, 0, sizeof *stopped);
    return pos;
}

int tl_jinja_render(const char *tmpl, size_t len, const tl_jinja_msg *msgs, size_t n_msgs, const char *bos,
                    const char *eos, int add_generation_prompt, tl_jinja_text *out, char *err, size_t err_cap) {
    jctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, err_cap, "out of memory rendering the chat template");
        return 0;
    }
    c->src = tmpl;
    c->len = len;
    c->msgs = msgs;
    c->n_msgs = n_msgs;
    c->bos = bos ? bos : "";
    c->eos = eos ? eos : "";
    c->add_gen = add_generation_prompt;
    size_t msg_bytes = 0;
    for (size_t i = 0; i < n_msgs; i++) msg_bytes += strlen(msgs[i].role) + strlen(msgs[i].content);
    c->text_limit = TERNLM_TEMPLATE_MAX_TEXT + 2 * msg_bytes;
    c->loop_limit = TERNLM_TEMPLATE_MAX_LOOPS + 64 * n_msgs;
    c->work_limit = TERNLM_TEMPLATE_MAX_WORK + 16 * msg_bytes;
    tag stop;
    render_block(c, 0, 1, NULL, &stop);
    for (int i = 0; i < c->n_vars; i++) value_free(&c->vars[i].v);
    const int ok = !c->failed;
    if (ok) *out = c->out;
    else {
        text_free(&c->out);
        snprintf(err, err_cap, "%s", c->err);
    }
    free(c);
    return ok;
}

void tl_jinja_text_free(tl_jinja_text *t) { text_free(t); }
