#define _POSIX_C_SOURCE 200809L
#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fetch.h"
#include "ternlm.h"

void cli_print_version(void) {
    printf("ternlm %s (kernels: %s; line editing: %s; downloads: %s; cuda: %s)\n", TERNLM_VERSION, ternlm_cpu_kernels(),
#if defined(TERNLM_HAVE_LIBEDIT)
           "libedit",
#else
           "no",
#endif
#if defined(TERNLM_HAVE_CURL)
           "libcurl",
#else
           "no",
#endif
#if defined(TERNLM_CLI_HAVE_CUDA)
           "yes"
#else
           "no"
#endif
    );
}

void args_usage(const cmd_spec *spec) {
    printf("usage: ternlm %s %s\n\n%s\n\noptions:\n", spec->name, spec->synopsis, spec->about);
    for (const opt *o = spec->opts; o->name; o++) {
        if (o->kind == OPT_IGNORED || !o->help) continue;
        char left[80];
        snprintf(left, sizeof left, "%s%s%s%s", o->alias ? o->alias : "", o->alias ? ", " : "", o->name,
                 o->kind == OPT_FLAG ? "" : " V");
        printf("  %-28s %s%s\n", left, o->kind == OPT_NOTE ? "accepted and ignored: " : "", o->help);
    }
    printf("  %-28s %s\n", "-h, --help", "show this help");
    printf("  %-28s %s\n", "-v, --version", "print the version");
}

static int set_value(const opt *o, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case OPT_INT: {
        const long x = strtol(v, &end, 10);
        if (errno || *end || end == v || x < -2147483647L || x > 2147483647L) return 0;
        *(int *)o->ptr = (int)x;
        return 1;
    }
    case OPT_SEED:
        if (!strcmp(v, "-1")) {
            *(uint64_t *)o->ptr = TERNLM_SEED_RANDOM;
            return 1;
        }
        /* fall through */
    case OPT_U64: {
        if (*v == '-') return 0;
        const unsigned long long x = strtoull(v, &end, 0);
        if (errno || *end || end == v) return 0;
        *(uint64_t *)o->ptr = x;
        return 1;
    }
    case OPT_FLOAT: {
        const float x = strtof(v, &end);
        if (errno || *end || end == v || !isfinite(x)) return 0;
        *(float *)o->ptr = x;
        return 1;
    }
    case OPT_STR: *(const char **)o->ptr = v; return 1;
    case OPT_STRS: {
        str_list *l = o->ptr;
        if (l->n >= STR_LIST_MAX) return 0;
        l->v[l->n++] = v;
        return 1;
    }
    default: return 1;
    }
}

static int name_is(const char *want, const char *a, size_t len) { return want && strlen(want) == len && !strncmp(want, a, len); }

int args_parse(const cmd_spec *spec, int argc, char **argv, const char **pos, int *n_pos) {
    *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            args_usage(spec);
            return ARGS_HELP;
        }
        if (a[0] != '-' || !strcmp(a, "-")) {
            if (*n_pos >= spec->max_pos) {
                fprintf(stderr, "ternlm %s: unexpected argument '%s' (see --help)\n", spec->name, a);
                return EXIT_USAGE;
            }
            pos[(*n_pos)++] = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        const size_t name_len = eq && a[1] == '-' ? (size_t)(eq - a) : strlen(a);
        const opt *o = spec->opts;
        for (; o->name; o++)
            if (name_is(o->name, a, name_len) || name_is(o->alias, a, name_len)) break;
        if (!o->name && (!strcmp(a, "-v") || !strcmp(a, "--version"))) {
            cli_print_version();
            return ARGS_HELP;
        }
        if (!o->name) {
            fprintf(stderr, "ternlm %s: unknown option '%s' (see --help)\n", spec->name, a);
            return EXIT_USAGE;
        }
        if (o->kind == OPT_FLAG) {
            *(int *)o->ptr = 1;
            continue;
        }
        const char *v = eq && a[1] == '-' ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            fprintf(stderr, "ternlm %s: option '%s' needs a value\n", spec->name, o->name);
            return EXIT_USAGE;
        }
        if (!set_value(o, v)) {
            fprintf(stderr, "ternlm %s: bad value '%s' for %s%s\n", spec->name, v, o->name,
                    o->kind == OPT_STRS ? " (given too many times)" : "");
            return EXIT_USAGE;
        }
        if (o->kind == OPT_NOTE) fprintf(stderr, "ternlm: note: %s %s ignored (%s)\n", a, v, o->help);
    }
    return ARGS_OK;
}

int cli_check_kernels_env(void) {
    const char *forced = getenv("TERNLM_KERNELS");
    if (!forced || !*forced || !strcmp(forced, ternlm_cpu_kernels())) return 0;
    fprintf(stderr,
            "ternlm: TERNLM_KERNELS=%s is not a kernel path this CPU and build run (names: scalar, avx2, avx512, neon, "
            "wasm128; unset it to use %s)\n",
            forced, ternlm_cpu_kernels());
    return EXIT_USAGE;
}

static void log_to_stderr(void *user, const char *msg) {
    if (*(const int *)user || strncmp(msg, "warning", 7) == 0) fprintf(stderr, "ternlm: %s\n", msg);
}

#if defined(TERNLM_EMBEDDED_MODEL)
extern const unsigned char ternlm_default_model[], ternlm_default_model_end[];
#endif

static int g_i2s_layout; /* --i2s-layout: a process-wide choice of the command line, read by cli_open_model */
void cli_set_i2s_layout(int layout) { g_i2s_layout = layout; }

int cli_head_quant(const char *name) {
    if (!name) return 0;
    if (!strcmp(name, "q8_0")) return 1;
    if (!strcmp(name, "i8")) return 2;
    if (!strcmp(name, "i4")) return 3;
    return -1;
}

int cli_open_model(const char *path, const char *pre, int head_q8, const char *activation, int verbose,
                   ternlm_model **out) {
    static int verbose_flag; /* lives as long as the process: the model's log callback reads it */
    verbose_flag = verbose;
    ternlm_model_params mp = ternlm_model_params_default();
    mp.i2s_layout = g_i2s_layout;
    mp.pretokenizer = pre;
    mp.head_quant_q8_0 = head_q8 == 1;
    mp.head_quant_i8 = head_q8 == 2; /* the web package's headQuant: 'i8' */
    mp.head_quant_i4 = head_q8 == 3;
    mp.activation = activation;
    mp.log = log_to_stderr;
    mp.log_user = &verbose_flag;
    ternlm_error err = {0};
    if (!path) {
#if defined(TERNLM_EMBEDDED_MODEL)
        if (verbose) fprintf(stderr, "ternlm: no -m given: using the embedded default model (ternlm-tinystories, 10 MB)\n");
        if (ternlm_model_open_memory(ternlm_default_model, (size_t)(ternlm_default_model_end - ternlm_default_model), &mp,
                                     out, &err) == TERNLM_OK)
            return 0;
        fprintf(stderr, "ternlm: embedded model: %s\n", err.message);
        return err.code == TERNLM_ERR_ARG ? EXIT_USAGE : EXIT_RUNTIME;
#else
        fprintf(stderr, "ternlm: no model given (use -m FILE); this build has no embedded default model\n");
        return EXIT_USAGE;
#endif
    }
    char *fetched = NULL;
    if (fetch_is_remote(path)) {
        const int rc = fetch_model(path, NULL, &fetched);
        if (rc) return rc;
        path = fetched;
    }
    const ternlm_status st = ternlm_model_open_file(path, &mp, out, &err);
    free(fetched);
    if (st) {
        fputs("ternlm: ", stderr);
        cli_put_escaped(stderr, err.message, strlen(err.message), 0); /* messages may quote the file's strings */
        fputc('\n', stderr);
        return err.code == TERNLM_ERR_ARG ? EXIT_USAGE : EXIT_RUNTIME; /* a bad option value, e.g. --pre bogus */
    }
    return 0;
}

int cli_parse_ids(const char *s, int32_t **ids, int *n) {
    *n = 0;
    *ids = malloc((strlen(s) / 2 + 2) * sizeof **ids);
    if (!*ids) return 0;
    while (*s) {
        char *end;
        errno = 0;
        const long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > 2147483647L) return 0;
        (*ids)[(*n)++] = (int32_t)v;
        s = end;
        while (*s == ',' || *s == ' ') s++;
    }
    return *n > 0;
}

char *cli_read_all(const char *path, size_t *n) {
    const int is_stdin = !strcmp(path, "-");
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "ternlm: cannot open '%s': %s\n", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (!is_stdin && fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) { /* fopen succeeds on a directory */
        fprintf(stderr, "ternlm: '%s' is a directory, not a file\n", path);
        fclose(f);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    for (size_t r; buf && (r = fread(buf + len, 1, cap - len, f)) > 0;) {
        len += r;
        if (len == cap) {
            char *nb = realloc(buf, (cap *= 2) + 1);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    const int failed = ferror(f);
    if (failed) fprintf(stderr, "ternlm: cannot read '%s': %s\n", path, strerror(errno));
    if (!buf) fprintf(stderr, "ternlm: '%s': out of memory\n", path);
    if (!is_stdin) fclose(f);
    if (failed) {
        free(buf);
        return NULL;
    }
    if (buf) buf[len] = 0;
    *n = len;
    return buf;
}

/* Code points a terminal acts on: C0 and C1 controls, DEL, and the bidirectional overrides that reorder text. */
static int is_terminal_control(uint32_t cp) {
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || (cp >= 0x200e && cp <= 0x200f) || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

/* One UTF-8 character at s (n bytes left): its length, or 0 if the bytes are not valid UTF-8. */
static size_t utf8_char(const unsigned char *s, size_t n, uint32_t *cp) {
    const unsigned char c = s[0];
    const size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!len || len > n) return 0;
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3Fu);
    }
    static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_for_len[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0; /* overlong, out of range */
    *cp = v;
    return len;
}

void cli_put_escaped(FILE *f, const char *text, size_t n, int json) {
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        const size_t len = utf8_char(s + i, n - i, &cp);
        if (!len) { /* an invalid byte: shown as its value (text) or U+FFFD (JSON must be valid UTF-8) */
            if (json) fputs("\\ufffd", f);
            else fprintf(f, "\\x%02x", s[i]);
            i++;
            continue;
        }
        if (json && (cp == '"' || cp == '\\')) fprintf(f, "\\%c", (int)cp);
        else if (cp == '\n') fputs("\\n", f);
        else if (cp == '\t') fputs("\\t", f);
        else if (cp == '\r') fputs("\\r", f);
        else if (is_terminal_control(cp)) fprintf(f, json ? "\\u%04x" : cp < 0x100 ? "\\x%02x" : "\\u%04x", (unsigned)cp);
        else fwrite(s + i, 1, len, f);
        i += len;
    }
}
