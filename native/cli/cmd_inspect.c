/* ternlm inspect FILE [--json] [--system] */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "ternlm.h"

/* Strings from the file go through cli_put_escaped: a hostile file must not drive the terminal. */
static void json_str(const char *s, size_t n) {
    putchar('"');
    cli_put_escaped(stdout, s, n, 1);
    putchar('"');
}

static void text_str(const char *s, size_t n) { cli_put_escaped(stdout, s, n, 0); }

/* At most max bytes of s, cut on a UTF-8 character boundary; "..." marks a cut. */
static void text_str_max(const char *s, size_t max) {
    size_t n = strlen(s);
    const int cut = n > max;
    if (cut) {
        n = max;
        while (n && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    text_str(s, n);
    if (cut) fputs("...", stdout);
}

static void print_system(void) {
    printf("cpu kernels: %s\nphysical cores: %u\n", ternlm_cpu_kernels(), ternlm_cpu_cores());
}

static void print_text(const ternlm_model *m, const char *path) {
    const ternlm_model_info *i = ternlm_model_get_info(m);
    char k[256], v[512];
    fputs("file: ", stdout);
    text_str(path, strlen(path));
    printf("\nGGUF version: %u\narch: ", i->gguf_version);
    text_str_max(i->arch[0] ? i->arch : "(none)", 100);
    fputs("\nname: ", stdout);
    text_str_max(i->name, 100);
    putchar('\n');
    if (i->n_layer)
        printf("n_vocab %u, n_ctx_train %u, n_embd %u, n_layer %u, n_head %u, n_head_kv %u, n_ff %u, head_dim %u\n"
               "rope: %s, base %g; norm eps %g; activation %s\nlinear weights: %s; head: %s (%s)\n"
               "parameters: %llu, tensor bytes: %llu\n",
               i->n_vocab, i->n_ctx_train, i->n_embd, i->n_layer, i->n_head, i->n_head_kv, i->n_ff, i->head_dim,
               i->rope_style, (double)i->rope_freq_base, (double)i->norm_eps, i->activation, i->weight_type,
               i->head_type, i->head_tied ? "tied to token_embd" : "output.weight", (unsigned long long)i->n_params,
               (unsigned long long)i->weight_bytes);
    printf("tokenizer: %s%s%s, bos %d, eos %d, eot %d, add_bos %d\n", i->tokenizer, i->pretokenizer[0] ? ", pre " : "",
           i->pretokenizer, i->bos, i->eos, i->eot, i->add_bos);
    printf("\nmetadata (%llu keys):\n", (unsigned long long)ternlm_model_meta_count(m));
    for (uint64_t j = 0; j < ternlm_model_meta_count(m); j++) {
        ternlm_model_meta_key(m, j, k, sizeof k);
        ternlm_model_meta_value_text(m, j, v, sizeof v);
        fputs("  ", stdout);
        text_str_max(k, 100);
        printf("%*s ", strlen(k) < 44 ? (int)(44 - strlen(k)) : 0, "");
        text_str_max(v, 100);
        putchar('\n');
    }
    printf("\ntensors (%u):\n  %-32s %-6s %-24s %14s\n", ternlm_model_tensor_count(m), "name", "type", "shape", "bytes");
    for (uint32_t j = 0; j < ternlm_model_tensor_count(m); j++) {
        ternlm_tensor_info t;
        ternlm_model_tensor(m, j, &t);
        char shape[96] = "";
        for (uint32_t d = 0; d < t.n_dims; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? " x " : "", (long long)t.ne[d]);
        fputs("  ", stdout);
        text_str_max(t.name, 100);
        printf("%*s %-6s %-24s %14llu\n", strlen(t.name) < 32 ? (int)(32 - strlen(t.name)) : 0, "", t.type, shape,
               (unsigned long long)t.nbytes);
    }
    printf("\nvalidation: ok\n");
}

static void print_json(const ternlm_model *m, const char *path) {
    const ternlm_model_info *i = ternlm_model_get_info(m);
    char k[256], v[512];
    printf("{\"file\":");
    json_str(path, strlen(path));
    printf(",\"valid\":true,\"gguf_version\":%u,\"arch\":", i->gguf_version);
    json_str(i->arch, strlen(i->arch));
    printf(",\"n_vocab\":%u,\"n_ctx_train\":%u,\"n_embd\":%u,\"n_layer\":%u,\"n_head\":%u,\"n_head_kv\":%u,\"n_ff\":%u,"
           "\"rope\":\"%s\",\"activation\":\"%s\",\"weight_type\":\"%s\",\"head_type\":\"%s\",\"head_tied\":%s,"
           "\"tokenizer\":\"%s\",\"pretokenizer\":\"%s\",\"bos\":%d,\"eos\":%d,\"eot\":%d,\"metadata\":{",
           i->n_vocab, i->n_ctx_train, i->n_embd, i->n_layer, i->n_head, i->n_head_kv, i->n_ff, i->rope_style,
           i->activation, i->weight_type, i->head_type, i->head_tied ? "true" : "false", i->tokenizer, i->pretokenizer,
           i->bos, i->eos, i->eot);
    for (uint64_t j = 0; j < ternlm_model_meta_count(m); j++) {
        ternlm_model_meta_key(m, j, k, sizeof k);
        ternlm_model_meta_value_text(m, j, v, sizeof v);
        printf("%s", j ? "," : "");
        json_str(k, strlen(k));
        putchar(':');
        json_str(v, strlen(v));
    }
    printf("},\"tensors\":[");
    for (uint32_t j = 0; j < ternlm_model_tensor_count(m); j++) {
        ternlm_tensor_info t;
        ternlm_model_tensor(m, j, &t);
        printf("%s{\"name\":", j ? "," : "");
        json_str(t.name, strlen(t.name));
        printf(",\"type\":\"%s\",\"shape\":[", t.type);
        for (uint32_t d = 0; d < t.n_dims; d++) printf("%s%lld", d ? "," : "", (long long)t.ne[d]);
        printf("],\"offset\":%llu,\"bytes\":%llu}", (unsigned long long)t.offset, (unsigned long long)t.nbytes);
    }
    printf("]}\n");
}

int cmd_inspect(int argc, char **argv) {
    int json = 0, sys = 0, check = 0;
    const opt opts[] = {
        {"--json", NULL, OPT_FLAG, &json, "print one JSON object"},
        {"--system", NULL, OPT_FLAG, &sys, "print the CPU kernel path and cores (FILE optional)"},
        {"--check-tensors", NULL, OPT_FLAG, &check, "also scan every weight (non-finite values, invalid codes)"},
        {0},
    };
    const cmd_spec spec = {"inspect", "FILE [--json] [--system]", "Print a GGUF file's metadata and tensor table, and validate it.", opts, 1};
    const char *pos[1];
    int n_pos, rc = args_parse(&spec, argc, argv, pos, &n_pos);
    if (rc) return rc == ARGS_HELP ? 0 : rc;
    if ((rc = cli_check_kernels_env())) return rc; /* the same answer as run gives */
    if (sys) print_system();
    if (!n_pos) {
        if (sys) return 0;
        fprintf(stderr, "ternlm inspect: missing FILE (see --help)\n");
        return EXIT_USAGE;
    }
    ternlm_model_params mp = ternlm_model_params_default();
    mp.check_tensors = check;
    ternlm_model *m;
    ternlm_error err = {0};
    if (ternlm_model_open_file(pos[0], &mp, &m, &err)) {
        if (json) {
            printf("{\"file\":");
            json_str(pos[0], strlen(pos[0]));
            printf(",\"valid\":false,\"error\":");
            json_str(err.message, strlen(err.message));
            printf("}\n");
        }
        fputs("ternlm: ", stderr);
        cli_put_escaped(stderr, err.message, strlen(err.message), 0); /* messages quote the file's strings */
        fprintf(stderr, "\nvalidation: FAILED (%s)\n", ternlm_status_name(err.code));
        return EXIT_RUNTIME;
    }
    if (json) print_json(m, pos[0]);
    else print_text(m, pos[0]);
    ternlm_model_free(m);
    return 0;
}
