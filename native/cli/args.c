#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ternlm.h"

void args_usage(const cmd_spec *spec) {
    printf("usage: ternlm %s %s\n\n%s\n\noptions:\n", spec->name, spec->synopsis, spec->about);
    for (const opt *o = spec->opts; o->name; o++) {
        if (o->kind == OPT_IGNORED) continue;
        char left[64];
        snprintf(left, sizeof left, "%s%s%s%s", o->alias ? o->alias : "", o->alias ? ", " : "", o->name,
                 o->kind == OPT_FLAG ? "" : " V");
        printf("  %-26s %s\n", left, o->help);
    }
    printf("  %-26s %s\n", "-h, --help", "show this help");
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
    default: return 1;
    }
}

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
            if ((strlen(o->name) == name_len && !strncmp(o->name, a, name_len)) ||
                (o->alias && strlen(o->alias) == name_len && !strncmp(o->alias, a, name_len)))
                break;
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
            fprintf(stderr, "ternlm %s: bad value '%s' for %s\n", spec->name, v, o->name);
            return EXIT_USAGE;
        }
    }
    return ARGS_OK;
}

static void log_to_stderr(void *user, const char *msg) {
    if (*(const int *)user || strncmp(msg, "warning", 7) == 0) fprintf(stderr, "ternlm: %s\n", msg);
}

#if defined(TERNLM_EMBEDDED_MODEL)
extern const unsigned char ternlm_default_model[], ternlm_default_model_end[];
#endif

int cli_open_model(const char *path, const char *pre, int head_q8, const char *activation, int verbose,
                   ternlm_model **out) {
    static int verbose_flag; /* lives as long as the process: the model's log callback reads it */
    verbose_flag = verbose;
    ternlm_model_params mp = ternlm_model_params_default();
    mp.pretokenizer = pre;
    mp.head_quant_q8_0 = head_q8;
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
        return EXIT_RUNTIME;
#else
        fprintf(stderr, "ternlm: no model given (use -m FILE); this build has no embedded default model\n");
        return EXIT_USAGE;
#endif
    }
    if (ternlm_model_open_file(path, &mp, out, &err)) {
        fprintf(stderr, "ternlm: %s\n", err.message);
        return EXIT_RUNTIME;
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
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return NULL;
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
    if (f != stdin) fclose(f);
    if (buf) buf[len] = 0;
    *n = len;
    return buf;
}
