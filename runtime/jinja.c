/* A small Jinja subset for the chat templates found in GGUF files (enough for Llama 3, ChatML and Qwen3):
 *   text, {{ expr }}, {# comments #}, {% for x in expr %}, {% if/elif/else %}, {% set x = expr %},
 *   {% set ns.attr = expr %}, whitespace control ({%- -%});
 *   string and integer literals, variables, .attr and ['key'], [i] with negative indices, slices [a:b:step],
 *   + - ~ and unary minus, == != < > <= >=, and or not, `in` / `not in` on strings,
 *   `is [not] defined|undefined|none|string|number|true|false|boolean`;
 *   the filters trim upper lower length first last string;
 *   the string methods startswith endswith split strip lstrip rstrip upper lower;
 *   namespace(k=v, ...), raise_exception(msg), and loop.index/index0/revindex/revindex0/first/last/length.
 * `set` inside a for loop is local to the loop (as in Jinja), which is why templates carry state out in a namespace.
 * A missing variable or attribute is undefined: false, empty when printed, an error in '+' (as Jinja's default).
 * Anything else is an error that names the construct, so callers can fall back to a built-in format.
 *
 * Strings are lists of segments flagged as template text or user text (message content), so the tokenizer can
 * parse special tokens in the template while encoding user text as plain text. Slicing, splitting and stripping
 * keep each byte's flag.
 *
 * A template is data from the model file, so rendering is bounded: nesting depth (the renderer recurses), the size
 * of every string and of the output, the number of loop iterations, the number of namespaces, and the total work
 * (bytes scanned + built). */
#include "jinja.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ternlm.h"

/* ---- values ---- */

/* V_UNDEF is 0, so a zeroed value is undefined. */
typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_STR, V_MSG, V_MSGS, V_LIST, V_NS, V_LOOP } vkind;

typedef struct value {
    vkind kind;
    long long i;         /* V_BOOL, V_INT; V_MSGS: the step between messages; V_NS: the namespace's slot */
    tl_jinja_text s;     /* V_STR */
    long long at;        /* V_MSG: the message; V_MSGS: the first message */
    size_t n;            /* V_MSGS, V_LIST: the number of items */
    tl_jinja_text *list; /* V_LIST: the strings */
} value;

static value mk(vkind kind, long long i) {
    value v;
    memset(&v, 0, sizeof v);
    v.kind = kind;
    v.i = i;
    return v;
}

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
    if (v->kind == V_LIST) {
        for (size_t i = 0; i < v->n; i++) text_free(&v->list[i]);
        free(v->list);
    }
    *v = mk(V_UNDEF, 0);
}

/* ---- the renderer ---- */

#define MAX_VARS 32
#define MAX_NAMESPACES 8
#define MAX_NS_ATTRS 16
#define MAX_LIST_ITEMS 65536 /* pieces of one split(): real templates make two; each costs a struct and an allocation */
#define TL_JINJA_MIN(a, b) ((a) < (b) ? (a) : (b))

typedef struct var {
    char name[32];
    value v;
} var;

typedef struct loopvar {
    int active;
    size_t index, length;
} loopvar;

typedef struct nspace {
    var attr[MAX_NS_ATTRS];
    int n;
} nspace;

typedef struct jctx {
    const char *src;
    size_t pos, len;
    const tl_jinja_msg *msgs;
    size_t n_msgs;
    tl_jinja_env env;
    var vars[MAX_VARS];
    int n_vars;
    int scope;           /* vars[scope..] belong to the innermost for loop; `set` creates or updates those */
    nspace ns[MAX_NAMESPACES];
    int n_ns;
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

/* Bytes [a, b) of src appended to dst, each keeping its template/user flag. */
static int text_slice(jctx *c, tl_jinja_text *dst, const tl_jinja_text *src, size_t a, size_t b) {
    size_t o = 0;
    for (size_t i = 0; i < src->n && o < b; i++) {
        const tl_jinja_seg *g = &src->seg[i];
        const size_t s = a > o ? a - o : 0, e = b - o < g->len ? b - o : g->len;
        if (s < e && !append(c, dst, g->p + s, e - s, g->user)) return 0;
        o += g->len;
    }
    return 1;
}

static value str_value(jctx *c, const char *p, size_t n, int user) {
    value v = mk(V_STR, 0);
    append(c, &v.s, p, n, user);
    return v;
}

/* A copy that owns its strings. */
static value value_copy(jctx *c, const value *v) {
    value r = *v;
    if (v->kind == V_STR) {
        memset(&r.s, 0, sizeof r.s);
        concat_text(c, &r.s, &v->s);
    } else if (v->kind == V_LIST) {
        r.list = calloc(v->n ? v->n : 1, sizeof *r.list);
        if (!r.list) {
            fail(c, "out of memory for a list", "", 0);
            return mk(V_UNDEF, 0);
        }
        for (size_t i = 0; i < v->n; i++) concat_text(c, &r.list[i], &v->list[i]);
    }
    return r;
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

/* The next bytes are tok (not consumed). */
static int peek(lexer *L, const char *tok) {
    const char *p = L->p;
    const int r = accept(L, tok);
    L->p = p;
    return r;
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

static value lookup(jctx *c, const char *name) {
    for (int i = c->n_vars - 1; i >= 0; i--)
        if (!strcmp(c->vars[i].name, name)) return value_copy(c, &c->vars[i].v);
    if (!strcmp(name, "messages")) {
        value v = mk(V_MSGS, 1);
        v.n = c->n_msgs;
        return v;
    }
    if (!strcmp(name, "bos_token")) return str_value(c, c->env.bos, strlen(c->env.bos), 0);
    if (!strcmp(name, "eos_token")) return str_value(c, c->env.eos, strlen(c->env.eos), 0);
    if (!strcmp(name, "add_generation_prompt")) return mk(V_BOOL, c->env.add_generation_prompt);
    if (!strcmp(name, "enable_thinking") && c->env.enable_thinking >= 0) return mk(V_BOOL, c->env.enable_thinking);
    if (!strcmp(name, "true") || !strcmp(name, "True")) return mk(V_BOOL, 1);
    if (!strcmp(name, "false") || !strcmp(name, "False")) return mk(V_BOOL, 0);
    if (!strcmp(name, "none") || !strcmp(name, "None")) return mk(V_NONE, 0);
    if (!strcmp(name, "loop") && c->loop.active) return mk(V_LOOP, 0);
    return mk(V_UNDEF, 0); /* e.g. `tools`, which ternlm never passes */
}

static value ns_attr(jctx *c, const nspace *ns, const char *name) {
    for (int i = 0; i < ns->n; i++)
        if (!strcmp(ns->attr[i].name, name)) return value_copy(c, &ns->attr[i].v);
    return mk(V_UNDEF, 0);
}

static int ns_set(jctx *c, nspace *ns, const char *name, value v) {
    for (int i = 0; i < ns->n; i++)
        if (!strcmp(ns->attr[i].name, name)) {
            value_free(&ns->attr[i].v);
            ns->attr[i].v = v;
            return 1;
        }
    if (ns->n == MAX_NS_ATTRS) {
        value_free(&v);
        return fail_limit(c, "too many namespace attributes", MAX_NS_ATTRS);
    }
    snprintf(ns->attr[ns->n].name, sizeof ns->attr[0].name, "%s", name);
    ns->attr[ns->n++].v = v;
    return 1;
}

/* base.name, consuming base. Missing attributes of messages and namespaces are undefined. */
static value attribute(jctx *c, value base, const char *name) {
    value r = mk(V_UNDEF, 0);
    if (base.kind == V_LOOP) {
        const size_t i = c->loop.index, n = c->loop.length;
        if (!strcmp(name, "index0")) r = mk(V_INT, (long long)i);
        else if (!strcmp(name, "index")) r = mk(V_INT, (long long)i + 1);
        else if (!strcmp(name, "revindex0")) r = mk(V_INT, (long long)(n - 1 - i));
        else if (!strcmp(name, "revindex")) r = mk(V_INT, (long long)(n - i));
        else if (!strcmp(name, "first")) r = mk(V_BOOL, i == 0);
        else if (!strcmp(name, "last")) r = mk(V_BOOL, i + 1 == n);
        else if (!strcmp(name, "length")) r = mk(V_INT, (long long)n);
        else fail(c, "unknown loop attribute", name, strlen(name));
    } else if (base.kind == V_MSG) {
        const tl_jinja_msg *m = &c->msgs[base.at];
        if (!strcmp(name, "role")) r = str_value(c, m->role, strlen(m->role), 0);
        else if (!strcmp(name, "content")) r = str_value(c, m->content, strlen(m->content), 1);
    } else if (base.kind == V_NS) {
        r = ns_attr(c, &c->ns[base.i], name);
    } else if (base.kind != V_UNDEF && base.kind != V_NONE) {
        fail(c, "attribute", name, strlen(name));
    }
    value_free(&base);
    return r;
}

/* A quoted literal: the unescaped bytes are collected first and appended once. */
static value string_literal(jctx *c, lexer *L) {
    const char q = *L->p++;
    const char *start = L->p;
    while (L->p < L->end && *L->p != q) L->p += (*L->p == '\\' && L->p + 1 < L->end) ? 2 : 1;
    if (L->p >= L->end) {
        fail(c, "unterminated string", start - 1, (size_t)(L->end - start + 1));
        return mk(V_UNDEF, 0);
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
    value v = mk(V_STR, 0);
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
            return mk(V_UNDEF, 0);
        }
        v = v * 10 + d;
    }
    return mk(V_INT, v);
}

/* ---- calls: (args) after a function or method name ---- */

#define MAX_ARGS 8
typedef struct args {
    value v[MAX_ARGS];
    char name[MAX_ARGS][32]; /* "" for a positional argument */
    int n;
} args;

static void args_free(args *a) {
    for (int i = 0; i < a->n; i++) value_free(&a->v[i]);
    a->n = 0;
}

/* After '(': arguments up to ')', positional or name=value. */
static int parse_args(jctx *c, lexer *L, args *a) {
    a->n = 0;
    if (accept(L, ")")) return 1;
    do {
        if (a->n == MAX_ARGS) return fail_lex(c, "too many arguments", L);
        a->name[a->n][0] = 0;
        const char *save = L->p;
        char name[32];
        if (!(ident(L, name, sizeof name) && accept(L, "=") && !peek(L, "="))) L->p = save;
        else snprintf(a->name[a->n], sizeof a->name[0], "%s", name);
        a->v[a->n++] = expr(c, L);
        if (c->failed) return 0;
    } while (accept(L, ","));
    return accept(L, ")") || fail_lex(c, "missing ')' after arguments", L);
}

static value call_function(jctx *c, const char *name, args *a, const lexer *L) {
    if (!strcmp(name, "namespace")) {
        if (c->n_ns == MAX_NAMESPACES) return fail_limit(c, "too many namespace() objects", MAX_NAMESPACES), mk(V_UNDEF, 0);
        nspace *ns = &c->ns[c->n_ns++]; /* counted first, so a failure below still frees what it holds */
        for (int i = 0; i < a->n; i++) {
            if (!a->name[i][0]) return fail_lex(c, "namespace() takes only name=value arguments", L), mk(V_UNDEF, 0);
            if (!ns_set(c, ns, a->name[i], a->v[i])) return mk(V_UNDEF, 0);
            a->v[i] = mk(V_UNDEF, 0); /* now owned by the namespace */
        }
        return mk(V_NS, c->n_ns - 1);
    }
    if (!strcmp(name, "raise_exception")) {
        char *msg = a->n && a->v[0].kind == V_STR ? text_flat(&a->v[0].s) : NULL;
        if (!c->failed) {
            snprintf(c->err, sizeof c->err, "the chat template called raise_exception('%.160s')", msg ? msg : "");
            c->failed = 1;
        }
        free(msg);
        return mk(V_UNDEF, 0);
    }
    fail(c, "unknown function", name, strlen(name));
    return mk(V_UNDEF, 0);
}

/* A string argument as a flat buffer (caller frees), or NULL after a failure. */
static char *str_arg(jctx *c, const args *a, int i, size_t *len, const char *method) {
    if (i >= a->n || a->v[i].kind != V_STR) return fail(c, "a string argument is needed by", method, strlen(method)), NULL;
    *len = text_len(&a->v[i].s);
    char *p = text_flat(&a->v[i].s);
    if (!p) fail(c, "out of memory in", method, strlen(method));
    return p;
}

/* Python's strip/lstrip/rstrip: the characters in `chars` (default: ASCII whitespace) off one or both ends. */
static value str_strip(jctx *c, value v, const char *flat, const args *a, int left, int right) {
    unsigned char set[256] = {0};
    if (a->n) {
        size_t n;
        char *chars = str_arg(c, a, 0, &n, "strip");
        if (!chars) return v;
        for (size_t i = 0; i < n; i++) set[(unsigned char)chars[i]] = 1;
        free(chars);
    } else {
        for (int ch = 0; ch < 256; ch++) set[ch] = isspace(ch) != 0;
    }
    size_t s = 0, e = text_len(&v.s);
    while (left && s < e && set[(unsigned char)flat[s]]) s++;
    while (right && e > s && set[(unsigned char)flat[e - 1]]) e--;
    value r = mk(V_STR, 0);
    text_slice(c, &r.s, &v.s, s, e);
    value_free(&v);
    return r;
}

/* Python's split(sep): every piece between separators, as a list. */
static value str_split(jctx *c, value v, const char *flat, const args *a) {
    size_t m;
    char *sep = str_arg(c, a, 0, &m, "split");
    if (!sep) return v;
    value r = mk(V_LIST, 0);
    size_t cap = 0, at = 0;
    const size_t n = text_len(&v.s);
    if (!m) fail(c, "split() with an empty separator", "split", 5);
    while (!c->failed && spend(c, 64)) {
        const char *hit = find_bytes(flat + at, n - at, sep, m);
        const size_t end = hit ? (size_t)(hit - flat) : n;
        if (r.n == MAX_LIST_ITEMS) {
            fail_limit(c, "a split() makes too many pieces", MAX_LIST_ITEMS);
            break;
        }
        if (r.n == cap) {
            cap = cap ? cap * 2 : 4;
            tl_jinja_text *l = realloc(r.list, cap * sizeof *l);
            if (!l) {
                fail(c, "out of memory in", "split", 5);
                break;
            }
            r.list = l;
        }
        memset(&r.list[r.n], 0, sizeof r.list[0]);
        text_slice(c, &r.list[r.n++], &v.s, at, end);
        if (!hit) break;
        at = end + m;
    }
    free(sep);
    value_free(&v);
    return r;
}

static value call_method(jctx *c, value v, const char *name, args *a) {
    if (v.kind != V_STR) return fail(c, "method on a value that is not a string", name, strlen(name)), v;
    if (!spend(c, text_len(&v.s))) return v;
    char *flat = text_flat(&v.s);
    if (!flat) return fail(c, "out of memory in", name, strlen(name)), v;
    const size_t n = text_len(&v.s);
    value r;
    if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
        size_t m;
        char *x = str_arg(c, a, 0, &m, name);
        const int hit = x && m <= n && !memcmp(name[0] == 's' ? flat : flat + n - m, x, m);
        free(x);
        value_free(&v);
        r = mk(V_BOOL, hit);
    } else if (!strcmp(name, "split")) {
        r = str_split(c, v, flat, a);
    } else if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip")) {
        r = str_strip(c, v, flat, a, name[0] != 'r', name[0] != 'l');
    } else if (!strcmp(name, "upper") || !strcmp(name, "lower")) {
        for (size_t i = 0; i < v.s.n; i++)
            for (size_t k = 0; k < v.s.seg[i].len; k++) {
                const unsigned char ch = (unsigned char)v.s.seg[i].p[k];
                v.s.seg[i].p[k] = (char)(name[0] == 'u' ? toupper(ch) : tolower(ch));
            }
        r = v;
    } else {
        fail(c, "string method", name, strlen(name));
        r = v;
    }
    free(flat);
    return r;
}

/* ---- indexing: [i], ['key'], [a:b:step] ---- */

/* Item i (in range) of a message view or a list. */
static value item(jctx *c, const value *seq, long long i) {
    value r;
    if (seq->kind == V_MSGS) {
        r = mk(V_MSG, 0);
        r.at = seq->at + i * seq->i;
    } else {
        r = mk(V_STR, 0);
        concat_text(c, &r.s, &seq->list[i]);
    }
    return r;
}

/* Python's slice of a sequence of n items: the first index, the step, and the count. */
static int slice_range(jctx *c, const value *lo, const value *hi, const value *st, long long n, long long *first,
                       long long *step, size_t *count) {
    *step = st->kind == V_INT ? st->i : 1;
    if (*step == 0) return fail(c, "slice step 0", "[::0]", 5);
    const int up = *step > 0;
    long long a = lo->kind == V_INT ? lo->i : up ? 0 : n - 1, b = hi->kind == V_INT ? hi->i : up ? n : -1;
    if (lo->kind == V_INT && a < 0) a += n;
    if (hi->kind == V_INT && b < 0) b += n;
    const long long min = up ? 0 : -1, max = up ? n : n - 1;
    a = a < min ? min : a > max ? max : a;
    b = b < min ? min : b > max ? max : b;
    const long long k = up ? (b > a ? (b - a + *step - 1) / *step : 0) : (a > b ? (a - b - *step - 1) / -*step : 0);
    *first = a;
    *count = (size_t)k;
    return 1;
}

static value index_value(jctx *c, value base, lexer *L) {
    value part[3] = {mk(V_UNDEF, 0), mk(V_UNDEF, 0), mk(V_UNDEF, 0)};
    int slice = 0;
    if (!peek(L, ":")) part[0] = expr(c, L);
    for (int k = 1; k < 3 && !c->failed && accept(L, ":"); k++) {
        slice = 1;
        if (!peek(L, ":") && !peek(L, "]")) part[k] = expr(c, L);
    }
    value r = mk(V_UNDEF, 0);
    if (c->failed) goto done;
    if (!accept(L, "]")) {
        fail_lex(c, "missing ']'", L);
        goto done;
    }
    for (int k = 0; k < 3; k++)
        if (slice && part[k].kind != V_INT && part[k].kind != V_UNDEF && part[k].kind != V_NONE) {
            fail_lex(c, "slice bounds must be integers", L);
            goto done;
        }
    if (!slice && part[0].kind == V_STR) { /* ['key'] is .key */
        char key[64];
        snprintf(key, sizeof key, "%s", part[0].s.n ? part[0].s.seg[0].p : "");
        r = attribute(c, base, key);
        base = mk(V_UNDEF, 0);
    } else if (base.kind == V_MSGS || base.kind == V_LIST) {
        if (slice) {
            long long first, step;
            size_t count;
            if (base.kind == V_LIST) fail_lex(c, "slice of a list", L);
            else if (slice_range(c, &part[0], &part[1], &part[2], (long long)base.n, &first, &step, &count)) {
                r = mk(V_MSGS, base.i * step);
                r.at = base.at + first * base.i;
                r.n = count;
            }
        } else if (part[0].kind != V_INT) {
            fail_lex(c, "index", L);
        } else {
            const long long i = part[0].i < 0 ? part[0].i + (long long)base.n : part[0].i;
            if (i >= 0 && i < (long long)base.n) r = item(c, &base, i); /* out of range is undefined */
        }
    } else if (base.kind == V_STR && slice) {
        long long first, step;
        size_t count;
        if (slice_range(c, &part[0], &part[1], &part[2], (long long)text_len(&base.s), &first, &step, &count)) {
            if (step != 1) fail_lex(c, "string slice with a step", L);
            r = mk(V_STR, 0);
            text_slice(c, &r.s, &base.s, (size_t)first, (size_t)first + count);
        }
    } else if (base.kind != V_UNDEF && base.kind != V_NONE) {
        fail_lex(c, "index", L);
    }
done:
    for (int k = 0; k < 3; k++) value_free(&part[k]);
    value_free(&base);
    return r;
}

static value filter(jctx *c, value v, const char *name) {
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        const long long n = v.kind == V_STR ? (long long)text_len(&v.s) : v.kind == V_MSGS || v.kind == V_LIST ? (long long)v.n : 0;
        value_free(&v);
        return mk(V_INT, n);
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        if (v.kind != V_MSGS && v.kind != V_LIST) return fail(c, "filter on a value that is not a list", name, strlen(name)), v;
        value r = v.n ? item(c, &v, name[0] == 'f' ? 0 : (long long)v.n - 1) : mk(V_UNDEF, 0);
        value_free(&v);
        return r;
    }
    if (!strcmp(name, "string") && (v.kind == V_INT || v.kind == V_BOOL)) {
        char num[32];
        snprintf(num, sizeof num, "%lld", v.i);
        if (v.kind == V_BOOL) snprintf(num, sizeof num, "%s", v.i ? "True" : "False");
        return str_value(c, num, strlen(num), 0);
    }
    if (v.kind != V_STR) return fail(c, "filter on a non-string", name, strlen(name)), v;
    if (!strcmp(name, "string")) return v;
    if (!strcmp(name, "trim")) {
        args none = {0};
        char *flat = text_flat(&v.s);
        if (!flat) return fail(c, "out of memory in", name, strlen(name)), v;
        value r = str_strip(c, v, flat, &none, 1, 1);
        free(flat);
        return r;
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower")) {
        args none = {0};
        return call_method(c, v, name, &none);
    }
    fail(c, "filter", name, strlen(name));
    return v;
}

/* ---- expressions ---- */

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
        return mk(V_UNDEF, 0);
    }
    if (!accept(L, "(")) return lookup(c, name);
    args a;
    value v = parse_args(c, L, &a) ? call_function(c, name, &a, L) : mk(V_UNDEF, 0);
    args_free(&a);
    return v;
}

/* primary, then any chain of .attr, .method(args), [index or slice] and |filter */
static value postfix(jctx *c, lexer *L) {
    value v = primary(c, L);
    while (!c->failed) {
        if (accept(L, ".")) {
            char a[64];
            if (!ident(L, a, sizeof a)) return fail_lex(c, "attribute", L), v;
            if (accept(L, "(")) {
                args as;
                if (parse_args(c, L, &as)) v = call_method(c, v, a, &as);
                args_free(&as);
            } else {
                v = attribute(c, v, a);
            }
        } else if (accept(L, "[")) {
            v = index_value(c, v, L);
        } else if (accept(L, "|")) {
            char f[32];
            if (!ident(L, f, sizeof f)) return fail_lex(c, "filter", L), v;
            if (peek(L, "(")) return fail_lex(c, "filter arguments", L), v;
            v = filter(c, v, f);
        } else {
            return v;
        }
    }
    return v;
}

static value negation(jctx *c, lexer *L) {
    if (!accept(L, "-")) return postfix(c, L);
    if (!enter(c)) return mk(V_UNDEF, 0);
    value v = negation(c, L);
    leave(c);
    if (v.kind != V_INT || v.i == LLONG_MIN) fail_lex(c, "unary '-' on something other than an integer", L);
    else v.i = -v.i;
    return v;
}

static int truthy(const value *v) {
    switch (v->kind) {
    case V_BOOL: case V_INT: return v->i != 0;
    case V_STR: return text_len(&v->s) > 0;
    case V_MSGS: case V_LIST: return v->n > 0;
    case V_MSG: case V_NS: case V_LOOP: return 1;
    default: return 0;
    }
}

/* The text Jinja prints for a value; 0 for values that have none. */
static int append_printed(jctx *c, tl_jinja_text *t, const value *v) {
    char num[32];
    switch (v->kind) {
    case V_STR: return concat_text(c, t, &v->s);
    case V_INT: snprintf(num, sizeof num, "%lld", v->i); break;
    case V_BOOL: snprintf(num, sizeof num, "%s", v->i ? "True" : "False"); break;
    case V_UNDEF: case V_NONE: return 1;
    default: return 0;
    }
    return append(c, t, num, strlen(num), 0);
}

static value additive(jctx *c, lexer *L) {
    value v = negation(c, L);
    for (;;) {
        const char op = accept(L, "+") ? '+' : accept(L, "-") ? '-' : accept(L, "~") ? '~' : 0;
        if (!op || c->failed) return v;
        value r = negation(c, L);
        if (op == '~') {
            value s = mk(V_STR, 0);
            if (!append_printed(c, &s.s, &v) || !append_printed(c, &s.s, &r)) fail_lex(c, "'~' on a value with no text", L);
            value_free(&v);
            v = s;
        } else if (v.kind == V_INT && r.kind == V_INT) {
            const long long b = op == '+' ? r.i : -r.i;
            if ((op == '-' && r.i == LLONG_MIN) || (b > 0 && v.i > LLONG_MAX - b) || (b < 0 && v.i < LLONG_MIN - b))
                fail_lex(c, "integer overflow", L);
            else v.i += b;
        } else if (op == '+' && v.kind == V_STR && r.kind == V_STR) {
            concat_text(c, &v.s, &r.s);
        } else {
            fail_lex(c, op == '+' ? "'+' on mixed or undefined values" : "'-' on something other than integers", L);
        }
        value_free(&r);
    }
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
    if (a->kind == V_MSG && b->kind == V_MSG) return a->at == b->at;
    return a->kind == b->kind && (a->kind == V_NONE || a->kind == V_UNDEF);
}

/* `is [not] NAME` after a value */
static value test(jctx *c, value v, lexer *L) {
    const int neg = accept(L, "not");
    char t[32] = "";
    if (!ident(L, t, sizeof t)) return fail_lex(c, "'is' without a test name", L), v;
    int r;
    if (!strcmp(t, "defined")) r = v.kind != V_UNDEF;
    else if (!strcmp(t, "undefined")) r = v.kind == V_UNDEF;
    else if (!strcmp(t, "none")) r = v.kind == V_NONE;
    else if (!strcmp(t, "string")) r = v.kind == V_STR;
    else if (!strcmp(t, "number") || !strcmp(t, "integer")) r = v.kind == V_INT;
    else if (!strcmp(t, "boolean")) r = v.kind == V_BOOL;
    else if (!strcmp(t, "true") || !strcmp(t, "false")) r = v.kind == V_BOOL && v.i == (t[0] == 't');
    else return fail(c, "test", t, strlen(t)), v;
    value_free(&v);
    return mk(V_BOOL, neg ? !r : r);
}

static value compare(jctx *c, lexer *L) {
    value v = additive(c, L);
    while (!c->failed) {
        static const char *const ops[] = {"==", "!=", "<=", ">=", "<", ">", "in", NULL};
        if (accept(L, "is")) {
            v = test(c, v, L);
            continue;
        }
        int op = -1, negated = 0;
        const char *save = L->p;
        if (accept(L, "not") && accept(L, "in")) op = 6, negated = 1;
        else L->p = save;
        for (int k = 0; op < 0 && ops[k]; k++)
            if (accept(L, ops[k])) op = k;
        if (op < 0) return v;
        value r = additive(c, L);
        int res = 0;
        if (op == 6) {
            if (v.kind != V_STR || r.kind != V_STR) {
                value_free(&r);
                return fail_lex(c, "'in' on non-strings", L), v;
            }
            char *hay = text_flat(&r.s), *needle = text_flat(&v.s);
            res = hay && needle && spend(c, text_len(&r.s)) &&
                  find_bytes(hay, text_len(&r.s), needle, text_len(&v.s)) != NULL;
            res ^= negated;
            free(hay), free(needle);
        } else if (op <= 1) {
            res = values_equal(&v, &r) != (op == 1);
        } else if (v.kind == V_INT && r.kind == V_INT) {
            res = op == 2 ? v.i <= r.i : op == 3 ? v.i >= r.i : op == 4 ? v.i < r.i : v.i > r.i;
        } else {
            fail_lex(c, "ordering comparison on something other than integers", L);
        }
        value_free(&v);
        value_free(&r);
        v = mk(V_BOOL, res);
    }
    return v;
}

static value unary(jctx *c, lexer *L) {
    if (accept(L, "not")) {
        if (!enter(c)) return mk(V_UNDEF, 0);
        value v = unary(c, L);
        leave(c);
        const int t = truthy(&v);
        value_free(&v);
        return mk(V_BOOL, !t);
    }
    return compare(c, L);
}

/* `and` and `or` evaluate both sides: nothing in the subset has side effects, and a missing attribute or an index
 * past the end is undefined rather than an error, so the result is the same as Jinja's short circuit. */
static value logic_and(jctx *c, lexer *L) {
    value v = unary(c, L);
    while (!c->failed && accept(L, "and")) {
        value r = unary(c, L);
        const int t = truthy(&v) && truthy(&r);
        value_free(&v), value_free(&r);
        v = mk(V_BOOL, t);
    }
    return v;
}

static value expr_or(jctx *c, lexer *L) {
    value v = logic_and(c, L);
    while (!c->failed && accept(L, "or")) {
        value r = logic_and(c, L);
        const int t = truthy(&v) || truthy(&r);
        value_free(&v), value_free(&r);
        v = mk(V_BOOL, t);
    }
    return v;
}

static value expr(jctx *c, lexer *L) {
    if (!enter(c)) return mk(V_UNDEF, 0);
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

/* `set` creates or updates a variable of the innermost loop's scope (or the template's, outside loops). */
static void set_var(jctx *c, const char *name, value v) {
    for (int i = c->n_vars - 1; i >= c->scope; i--)
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

static void pop_vars(jctx *c, int to) {
    while (c->n_vars > to) value_free(&c->vars[--c->n_vars].v);
}

/* One iteration's loop variable: a message of a view, or a copy of a list's string. */
static value loop_item(jctx *c, const value *it, size_t i) { return item(c, it, (long long)i); }

static size_t do_for(jctx *c, const tag *t, int emit) {
    lexer L = {t->body + 3, t->body + t->len};
    char var_name[32];
    if (!ident(&L, var_name, sizeof var_name) || !accept(&L, "in")) return fail(c, "for", t->body, t->len), c->len;
    static const char *const stops[] = {"endfor", NULL};
    tag end;
    skip_block(c, t->next, stops, &end); /* find the matching endfor */
    if (c->failed) return c->len;
    if (!end.body) return fail(c, "for without endfor", t->body, t->len), c->len;
    if (!emit) return end.next; /* the iterable of a skipped loop is not evaluated */
    value it = expr(c, &L);
    skip_ws(&L);
    if (c->failed) return value_free(&it), c->len;
    if (L.p != L.end || (it.kind != V_MSGS && it.kind != V_LIST && it.kind != V_UNDEF)) {
        value_free(&it);
        return fail(c, "for over something other than messages or a list", t->body, t->len), c->len;
    }
    const loopvar saved = c->loop;
    const int saved_scope = c->scope;
    c->scope = c->n_vars;
    for (size_t i = 0; it.kind != V_UNDEF && i < it.n && !c->failed; i++) {
        if (++c->loops > c->loop_limit) {
            fail_limit(c, "too many loop iterations", c->loop_limit);
            break;
        }
        c->loop = (loopvar){1, i, it.n};
        set_var(c, var_name, loop_item(c, &it, i));
        render_block(c, t->next, 1, stops, &end);
        pop_vars(c, c->scope);
    }
    c->scope = saved_scope;
    c->loop = saved;
    value_free(&it);
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

/* {% set name = expr %} or {% set ns.attr = expr %} */
static void do_set(jctx *c, const tag *t) {
    lexer L = {t->body + 3, t->body + t->len};
    char name[32], attr[32] = "";
    if (!ident(&L, name, sizeof name) || (accept(&L, ".") && !ident(&L, attr, sizeof attr)) || !accept(&L, "=")) {
        fail(c, "set", t->body, t->len);
        return;
    }
    value v = expr(c, &L);
    skip_ws(&L);
    if (!c->failed && L.p != L.end) fail_lex(c, "expression", &L);
    if (c->failed) {
        value_free(&v);
        return;
    }
    if (!attr[0]) {
        set_var(c, name, v);
        return;
    }
    value ns = lookup(c, name);
    if (ns.kind != V_NS) {
        value_free(&ns), value_free(&v);
        fail(c, "set of an attribute of something other than a namespace", t->body, t->len);
        return;
    }
    ns_set(c, &c->ns[ns.i], attr, v);
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
                if (emit) do_set(c, &t);
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
                if (!c->failed && !append_printed(c, &c->out, &v)) fail(c, "printing a value that is not text", t.body, t.len);
                value_free(&v);
            }
            pos = t.next;
        }
    }
    if (stopped) memset(stopped, 0, sizeof *stopped);
    return pos;
}

int tl_jinja_render(const char *tmpl, size_t len, const tl_jinja_msg *msgs, size_t n_msgs, const tl_jinja_env *env,
                    tl_jinja_text *out, char *err, size_t err_cap) {
    jctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, err_cap, "out of memory rendering the chat template");
        return 0;
    }
    c->src = tmpl;
    c->len = len;
    c->msgs = msgs;
    c->n_msgs = n_msgs;
    c->env = *env;
    if (!c->env.bos) c->env.bos = "";
    if (!c->env.eos) c->env.eos = "";
    size_t msg_bytes = 0;
    for (size_t i = 0; i < n_msgs; i++) msg_bytes += strlen(msgs[i].role) + strlen(msgs[i].content);
    c->text_limit = TERNLM_TEMPLATE_MAX_TEXT + 2 * msg_bytes;
    c->loop_limit = TERNLM_TEMPLATE_MAX_LOOPS + 64 * n_msgs;
    c->work_limit = TERNLM_TEMPLATE_MAX_WORK + 16 * msg_bytes;
    tag stop;
    render_block(c, 0, 1, NULL, &stop);
    pop_vars(c, 0);
    for (int i = 0; i < c->n_ns; i++)
        for (int k = 0; k < c->ns[i].n; k++) value_free(&c->ns[i].attr[k].v);
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
