/* A complete program on ternlm's public C API: open a GGUF model, tokenize a prompt, and stream a completion.
 *
 *   generate MODEL.gguf "PROMPT" [MAX_TOKENS] [TEMPERATURE] [SEED]
 *
 * Greedy by default (temperature 0), so its text equals `ternlm run -m MODEL -p PROMPT -n MAX --temp 0
 * --no-display-prompt`. Build it against an installed ternlm:
 *
 *   cc generate.c $(pkg-config --cflags --libs ternlm) -o generate            (see Makefile)
 *   cmake -S . -B build && cmake --build build                                  (see CMakeLists.txt)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ternlm.h>

/* Each generated token's complete text goes straight to stdout. */
static int print_piece(void *user, int32_t token, const char *text, size_t len) {
    (void)user;
    (void)token;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static int fail(const char *what, const ternlm_error *err) {
    fprintf(stderr, "generate: %s: %s (%s)\n", what, err->message, ternlm_status_name(err->code));
    return 1;
}

/* The prompt's token ids, with BOS as the model asks; NULL on error. A first guess at the count, and a second
 * call with the exact count when the guess was short (the buffer rule of ternlm_tokenize). */
static int32_t *tokenize(const ternlm_model *model, const char *prompt, size_t *n, ternlm_error *err) {
    const size_t len = strlen(prompt);
    const int flags = TERNLM_TOKENIZE_ADD_SPECIAL | TERNLM_TOKENIZE_PARSE_SPECIAL;
    size_t cap = len + 8;
    for (int attempt = 0; attempt < 2; attempt++) {
        int32_t *ids = malloc(cap * sizeof *ids);
        if (!ids) return NULL;
        const ternlm_status st = ternlm_tokenize(model, prompt, len, flags, ids, cap, n, err);
        if (st == TERNLM_OK) return ids;
        free(ids);
        if (st != TERNLM_ERR_ARG || *n <= cap) return NULL;
        cap = *n;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf \"PROMPT\" [MAX_TOKENS] [TEMPERATURE] [SEED]\n", argv[0]);
        return 2;
    }
    ternlm_error err = {0};
    ternlm_model_params mp = ternlm_model_params_default();
    ternlm_model *model = NULL;
    if (ternlm_model_open_file(argv[1], &mp, &model, &err) != TERNLM_OK) return fail(argv[1], &err);

    int rc = 1;
    ternlm_session *session = NULL;
    ternlm_sampler *sampler = NULL;
    size_t n_prompt = 0;
    int32_t *prompt = tokenize(model, argv[2], &n_prompt, &err);
    ternlm_session_params sp = ternlm_session_params_default();
    ternlm_sampler_params smp = ternlm_sampler_params_default();
    smp.temperature = argc > 4 ? strtof(argv[4], NULL) : 0.0f;
    if (argc > 5) smp.seed = strtoull(argv[5], NULL, 10);
    if (!prompt) {
        fail("tokenize", &err);
    } else if (ternlm_session_new(model, &sp, &session, &err) != TERNLM_OK) {
        fail("session", &err);
    } else if (ternlm_sampler_new(&smp, ternlm_model_get_info(model)->n_vocab, &sampler, &err) != TERNLM_OK) {
        fail("sampler", &err);
    } else {
        ternlm_generate_params gp = {0};
        gp.max_tokens = argc > 3 ? atoi(argv[3]) : 64;
        gp.on_token = print_piece;
        ternlm_generate_stats stats = {0};
        if (ternlm_generate(session, sampler, prompt, n_prompt, &gp, &stats, &err) != TERNLM_OK) {
            fail("generate", &err);
        } else {
            fprintf(stderr, "\n[%u prompt tokens, %u generated, kernels %s]\n", stats.n_prompt, stats.n_generated,
                    ternlm_session_backend(session));
            rc = 0;
        }
    }
    ternlm_sampler_free(sampler);
    ternlm_session_free(session);
    free(prompt);
    ternlm_model_free(model);
    return rc;
}
