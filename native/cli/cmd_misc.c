/* ternlm logits (the conformance interface) and ternlm tokenize. Keep both outputs stable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "ternlm.h"

static void print_top5(const float *l, uint32_t n_vocab, size_t pos) {
    int best[5] = {-1, -1, -1, -1, -1};
    for (uint32_t i = 0; i < n_vocab; i++) {
        for (int k = 0; k < 5; k++) {
            if (best[k] < 0 || l[i] > l[best[k]]) {
                memmove(best + k + 1, best + k, (size_t)(4 - k) * sizeof *best);
                best[k] = (int)i;
                break;
            }
        }
    }
    printf("%zu:", pos);
    for (int k = 0; k < 5 && best[k] >= 0; k++) printf(" %d(%.4f)", best[k], (double)l[best[k]]);
    printf("\n");
}

int cmd_logits(int argc, char **argv) {
    const char *model = NULL, *tokens = NULL, *out = NULL, *head_quant = NULL;
    int threads = 0, ctx = 0, gpu = 0;
    const opt opts[] = {
        {"--model", "-m", OPT_STR, &model, "GGUF model file"},
        {"--tokens", NULL, OPT_STR, &tokens, "comma-separated token ids, evaluated as one batch"},
        {"--out", NULL, OPT_STR, &out, "write raw little-endian float32 logits (positions x n_vocab) here"},
        {"--threads", "-t", OPT_INT, &threads, "threads"},
        {"--ctx-size", "-c", OPT_INT, &ctx, "context size"},
        {"--gpu", NULL, OPT_FLAG, &gpu, "run on the GPU backend"},
        {"--head-quant", NULL, OPT_STR, &head_quant, "re-quantize an F16 head at load: q8_0, i8 or i4"},
        {0},
    };
    const cmd_spec spec = {"logits", "-m FILE --tokens 1,2,3 [--out F]",
                           "Evaluate token ids as one batch. Prints the top 5 logits per position, or with --out writes "
                           "every logit as raw float32.", opts, 0};
    const char *pos[1];
    int n_pos, rc = args_parse(&spec, argc, argv, pos, &n_pos);
    if (rc) return rc == ARGS_HELP ? 0 : rc;
    int32_t *ids = NULL;
    int n = 0;
    if (!model || !tokens) {
        fprintf(stderr, "ternlm logits: -m FILE and --tokens are required\n");
        return EXIT_USAGE;
    }
    if (!cli_parse_ids(tokens, &ids, &n) || threads < 0 || ctx < 0 || cli_head_quant(head_quant) < 0) {
        fprintf(stderr, "ternlm logits: --tokens must be comma-separated non-negative integers\n");
        free(ids);
        return EXIT_USAGE;
    }
    ternlm_model *m = NULL;
    ternlm_session *s = NULL;
    ternlm_error err = {0};
    if ((rc = cli_open_model(model, NULL, cli_head_quant(head_quant), NULL, 0, &m))) goto done;
    ternlm_session_params sp = ternlm_session_params_default();
    sp.n_threads = (uint32_t)threads;
    sp.n_ctx = ctx ? (uint32_t)ctx : (uint32_t)n;
    sp.use_gpu = gpu;
    if (ternlm_session_new(m, &sp, &s, &err) || ternlm_session_eval(s, ids, (size_t)n, TERNLM_LOGITS_ALL, &err)) {
        fprintf(stderr, "ternlm: %s\n", err.message);
        rc = EXIT_RUNTIME;
        goto done;
    }
    const uint32_t nv = ternlm_model_get_info(m)->n_vocab;
    if (out) {
        FILE *f = fopen(out, "wb");
        size_t w = 0;
        for (int i = 0; f && i < n; i++) w += fwrite(ternlm_session_logits(s, i), sizeof(float), nv, f);
        if (!f || w != (size_t)n * nv || fclose(f)) {
            fprintf(stderr, "ternlm: cannot write '%s'\n", out);
            rc = EXIT_RUNTIME;
        }
    } else {
        for (int i = 0; i < n; i++) print_top5(ternlm_session_logits(s, i), nv, (size_t)i);
    }
done:
    free(ids);
    ternlm_session_free(s);
    ternlm_model_free(m);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *pre = NULL;
    int ids_only = 0, bos = 0, no_special = 0;
    const opt opts[] = {
        {"--model", "-m", OPT_STR, &model, "GGUF file with a vocabulary (vocab-only files work)"},
        {"--ids", NULL, OPT_FLAG, &ids_only, "print only the ids, on one line, separated by spaces"},
        {"--bos", NULL, OPT_FLAG, &bos, "add BOS (and EOS) as the metadata says"},
        {"--no-special", NULL, OPT_FLAG, &no_special, "treat special-token text as plain text"},
        {"--pre", NULL, OPT_STR, &pre, "pre-tokenizer override: llama3, gpt2 or default"},
        {0},
    };
    const cmd_spec spec = {"tokenize", "-m FILE [--ids] [--bos] [--no-special] TEXT|-",
                           "Tokenize TEXT (or stdin byte for byte with -). Without --ids prints id<TAB>piece per line.", opts, 1};
    const char *pos[1];
    int n_pos, rc = args_parse(&spec, argc, argv, pos, &n_pos);
    if (rc) return rc == ARGS_HELP ? 0 : rc;
    if (!model || n_pos != 1) {
        fprintf(stderr, "ternlm tokenize: -m FILE and TEXT (or -) are required\n");
        return EXIT_USAGE;
    }
    size_t len;
    char *buf = NULL;
    const char *text = pos[0];
    if (!strcmp(text, "-")) {
        if (!(text = buf = cli_read_all("-", &len))) return EXIT_RUNTIME;
    } else {
        len = strlen(text);
    }
    ternlm_model *m = NULL;
    if ((rc = cli_open_model(model, pre, 0, NULL, 0, &m))) {
        free(buf);
        return rc;
    }
    ternlm_error err = {0};
    size_t n = 0, cap = len + 8;
    int32_t *ids = malloc(cap * sizeof *ids);
    const int flags = (bos ? TERNLM_TOKENIZE_ADD_SPECIAL : 0) | (no_special ? 0 : TERNLM_TOKENIZE_PARSE_SPECIAL);
    if (!ids || ternlm_tokenize(m, text, len, flags, ids, cap, &n, &err)) {
        fprintf(stderr, "ternlm: %s\n", ids ? err.message : "out of memory");
        rc = EXIT_RUNTIME;
    } else if (ids_only) {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    } else {
        char piece[512];
        for (size_t i = 0; i < n; i++) {
            const int l = ternlm_token_piece(m, ids[i], TERNLM_DETOK_SPECIAL, piece, sizeof piece);
            printf("%d\t", ids[i]);
            cli_put_escaped(stdout, piece, (size_t)(l < 0 ? 0 : l > 512 ? 512 : l), 0); /* token text is file data */
            putchar('\n');
        }
    }
    free(ids);
    free(buf);
    ternlm_model_free(m);
    return rc;
}
