#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const char *s;
    size_t i, n;
} parser;

static void ws(parser *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\n' || p->s[p->i] == '\r' || p->s[p->i] == '\t')) p->i++;
}

static int put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) { o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 63)); o[2] = (char)(0x80 | (cp & 63)); return 3; }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 63)); o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

static int hex4(parser *p, unsigned *v) {
    if (p->i + 4 > p->n) return 0;
    *v = 0;
    for (int k = 0; k < 4; k++) {
        const char c = p->s[p->i++];
        *v = *v * 16 + (unsigned)(c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 99);
        if (*v > 0xFFFF) return 0;
    }
    return 1;
}

static int parse_string(parser *p, char **out, size_t *len) {
    p->i++; /* opening quote */
    char *b = malloc(p->n - p->i + 1);
    size_t o = 0;
    while (b && p->i < p->n && p->s[p->i] != '"') {
        char c = p->s[p->i++];
        if (c != '\\') { b[o++] = c; continue; }
        if (p->i >= p->n) break;
        c = p->s[p->i++];
        unsigned cp, lo;
        switch (c) {
        case 'n': b[o++] = '\n'; break;
        case 't': b[o++] = '\t'; break;
        case 'r': b[o++] = '\r'; break;
        case 'b': b[o++] = '\b'; break;
        case 'f': b[o++] = '\f'; break;
        case 'u':
            if (!hex4(p, &cp)) goto fail;
            if (cp >= 0xD800 && cp < 0xDC00 && p->i + 6 <= p->n && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u') {
                p->i += 2;
                if (!hex4(p, &lo)) goto fail;
                if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                else { o += (size_t)put_utf8(b + o, cp); cp = lo; }
            }
            o += (size_t)put_utf8(b + o, cp);
            break;
        default: b[o++] = c;
        }
    }
    if (!b || p->i >= p->n) goto fail;
    p->i++;
    b[o] = 0;
    *out = b;
    *len = o;
    return 1;
fail:
    free(b);
    return 0;
}

static int parse_value(parser *p, jval *v);

static int parse_container(parser *p, jval *v, int obj) {
    p->i++;
    v->type = obj ? J_OBJ : J_ARR;
    size_t cap = 0;
    ws(p);
    if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) { p->i++; return 1; }
    for (;;) {
        if (v->n == cap) {
            cap = cap ? cap * 2 : 8;
            v->items = realloc(v->items, cap * sizeof *v->items);
            if (obj) v->keys = realloc(v->keys, cap * sizeof *v->keys);
            if (!v->items || (obj && !v->keys)) return 0;
        }
        ws(p);
        if (obj) {
            size_t kl;
            if (p->i >= p->n || p->s[p->i] != '"' || !parse_string(p, &v->keys[v->n], &kl)) return 0;
            ws(p);
            if (p->i >= p->n || p->s[p->i++] != ':') return 0;
        }
        memset(&v->items[v->n], 0, sizeof v->items[0]);
        if (!parse_value(p, &v->items[v->n])) { v->n++; return 0; }
        v->n++;
        ws(p);
        if (p->i < p->n && p->s[p->i] == ',') { p->i++; continue; }
        if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) { p->i++; return 1; }
        return 0;
    }
}

static int parse_value(parser *p, jval *v) {
    ws(p);
    if (p->i >= p->n) return 0;
    const char c = p->s[p->i];
    if (c == '{' || c == '[') return parse_container(p, v, c == '{');
    if (c == '"') { v->type = J_STR; return parse_string(p, &v->str, &v->str_len); }
    if (!strncmp(p->s + p->i, "true", 4)) { v->type = J_BOOL; v->num = 1; p->i += 4; return 1; }
    if (!strncmp(p->s + p->i, "false", 5)) { v->type = J_BOOL; p->i += 5; return 1; }
    if (!strncmp(p->s + p->i, "null", 4)) { v->type = J_NULL; p->i += 4; return 1; }
    char *end;
    v->type = J_NUM;
    v->num = strtod(p->s + p->i, &end);
    if (end == p->s + p->i) return 0;
    p->i = (size_t)(end - p->s);
    return 1;
}

static void free_inner(jval *v) {
    for (size_t i = 0; i < v->n; i++) {
        free_inner(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
}

jval *json_parse(const char *text, size_t len) {
    parser p = {text, 0, len};
    jval *v = calloc(1, sizeof *v);
    if (v && parse_value(&p, v)) return v;
    if (v) free_inner(v);
    free(v);
    return NULL;
}

void json_free(jval *v) {
    if (!v) return;
    free_inner(v);
    free(v);
}

const jval *json_get(const jval *o, const char *key) {
    if (!o || o->type != J_OBJ) return NULL;
    for (size_t i = 0; i < o->n; i++)
        if (!strcmp(o->keys[i], key)) return &o->items[i];
    return NULL;
}

char *read_whole_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    if (b) { b[n] = 0; if (len) *len = (size_t)n; }
    return b;
}
