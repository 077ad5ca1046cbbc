/* ternlm run (one prompt, streamed) and ternlm chat (interactive, multi-turn). */
#define _POSIX_C_SOURCE 200809L
#if !defined(__wasi__)
#include <signal.h>
#endif
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "ternlm.h"

typedef struct gen_opts {
    const char *model, *prompt, *prompt_file, *pre, *activation, *head_quant, *system;
    int n_predict, top_k, repeat_last_n, threads, ctx, verbose, gpu, ignore_eos, no_display_prompt, no_special;
    float temp, top_p, min_p, repeat_penalty, freq_penalty, presence_penalty;
    uint64_t seed;
} gen_opts;

static volatile int g_abort; /* set by SIGINT: stop the current generation */

#if !defined(__wasi__)
static void on_sigint(int sig) {
    (void)sig;
    if (g_abort) _Exit(130); /* a second Ctrl-C quits at once */
    g_abort = 1;
}
#endif

static void catch_interrupt(void) {
#if !defined(__wasi__)
    signal(SIGINT, on_sigint); /* WASI has no signals: the host ends the process */
#endif
}

static void defaults(gen_opts *o) {
    memset(o, 0, sizeof *o);
    const ternlm_sampler_params sp = ternlm_sampler_params_default();
    o->n_predict = 128;
    o->temp = sp.temperature;
    o->top_k = sp.top_k;
    o->top_p = sp.top_p;
    o->min_p = sp.min_p;
    o->repeat_penalty = sp.repeat_penalty;
    o->repeat_last_n = sp.penalty_last_n;
    o->seed = TERNLM_SEED_RANDOM;
}

#define COMMON_OPTS(o)                                                                                         \
    {"--model", "-m", OPT_STR, &(o)->model, "GGUF model file (default: the embedded tiny story model)"},                                                \
    {"--n-predict", "-n", OPT_INT, &(o)->n_predict, "tokens to generate (default 128; -1 = until the context is full)"}, \
    {"--temp", NULL, OPT_FLOAT, &(o)->temp, "temperature (default 0.8; 0 = greedy)"},                          \
    {"--top-k", NULL, OPT_INT, &(o)->top_k, "top-k (default 40; 0 = off)"},                                    \
    {"--top-p", NULL, OPT_FLOAT, &(o)->top_p, "top-p (default 0.95; 1 = off)"},                                \
    {"--min-p", NULL, OPT_FLOAT, &(o)->min_p, "min-p (default 0.05; 0 = off)"},                                \
    {"--repeat-penalty", NULL, OPT_FLOAT, &(o)->repeat_penalty, "repetition penalty (default 1 = off)"},      \
    {"--repeat-last-n", NULL, OPT_INT, &(o)->repeat_last_n, "tokens the penalties look back (default 64)"},   \
    {"--frequency-penalty", NULL, OPT_FLOAT, &(o)->freq_penalty, "frequency penalty (default 0)"},           \
    {"--presence-penalty", NULL, OPT_FLOAT, &(o)->presence_penalty, "presence penalty (default 0)"},         \
    {"--seed", "-s", OPT_U64, &(o)->seed, "random seed (default: from the OS, printed with -v)"},              \
    {"--threads", "-t", OPT_INT, &(o)->threads, "threads (default: physical cores)"},                         \
    {"--ctx-size", "-c", OPT_INT, &(o)->ctx, "context size (default: the model's, at most 4096)"},            \
    {"--pre", NULL, OPT_STR, &(o)->pre, "pre-tokenizer override: llama3, gpt2 or default (bitnet.cpp parity)"}, \
    {"--activation", NULL, OPT_STR, &(o)->activation, "FFN activation override for arch bitnet: silu or relu2"}, \
    {"--head-quant", NULL, OPT_STR, &(o)->head_quant, "re-quantize an F16 head at load: q8_0"},              \
    {"--gpu", NULL, OPT_FLAG, &(o)->gpu, "run on the GPU backend"},                                            \
    {"--ignore-eos", NULL, OPT_FLAG, &(o)->ignore_eos, "do not stop at end-of-generation tokens"},            \
    {"--verbose", "-v", OPT_FLAG, &(o)->verbose, "print loader notes, the seed and the kernel path"},         \
    {"--n-gpu-layers", "-ngl", OPT_IGNORED, NULL, ""},                                                         \
    {"--batch-size", "-b", OPT_IGNORED, NULL, ""}

static int setup(gen_opts *o, ternlm_model **m, ternlm_session **s, ternlm_sampler **smp, double *load_s) {
    if (o->head_quant && strcmp(o->head_quant, "q8_0")) {
        fprintf(stderr, "ternlm: --head-quant supports only q8_0\n");
        return EXIT_USAGE;
    }
    if (o->threads < 0 || o->ctx < 0) {
        fprintf(stderr, "ternlm: --threads and --ctx-size must not be negative\n");
        return EXIT_USAGE;
    }
    const char *forced = getenv("TERNLM_KERNELS");
    if (forced && *forced && strcmp(forced, ternlm_cpu_kernels())) {
        fprintf(stderr, "ternlm: TERNLM_KERNELS=%s is not available on this CPU or build\n", forced);
        return EXIT_USAGE;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = cli_open_model(o->model, o->pre, o->head_quant != NULL, o->activation, o->verbose, m);
    if (rc) return rc;
    ternlm_error err = {0};
    ternlm_session_params sp = ternlm_session_params_default();
    sp.n_ctx = (uint32_t)o->ctx;
    sp.n_threads = (uint32_t)o->threads;
    sp.use_gpu = o->gpu;
    ternlm_sampler_params smpp = ternlm_sampler_params_default();
    smpp.temperature = o->temp;
    smpp.top_k = o->top_k;
    smpp.top_p = o->top_p;
    smpp.min_p = o->min_p;
    smpp.repeat_penalty = o->repeat_penalty;
    smpp.penalty_last_n = o->repeat_last_n;
    smpp.frequency_penalty = o->freq_penalty;
    smpp.presence_penalty = o->presence_penalty;
    smpp.seed = o->seed;
    if (ternlm_session_new(*m, &sp, s, &err) ||
        ternlm_sampler_new(&smpp, ternlm_model_get_info(*m)->n_vocab, smp, &err)) {
        fprintf(stderr, "ternlm: %s\n", err.message);
        return EXIT_RUNTIME;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *load_s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    if (o->verbose)
        fprintf(stderr, "ternlm: backend %s, %u threads, context %u, seed %llu\n", ternlm_session_backend(*s),
                ternlm_session_threads(*s), ternlm_session_n_ctx(*s), (unsigned long long)ternlm_sampler_seed(*smp));
    return 0;
}

static int print_piece(void *user, int32_t tok, const char *text, size_t len) {
    (void)user;
    (void)tok;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static void print_stats(double load_s, const ternlm_generate_stats *st) {
    fprintf(stderr, "\n\nternlm: load %.0f ms | prompt %u tokens, %.2f tokens/s | generation %u tokens, %.2f tokens/s\n",
            load_s * 1000, st->n_prompt, st->prompt_seconds > 0 ? st->n_prompt / st->prompt_seconds : 0.0,
            st->n_generated, st->generate_seconds > 0 ? st->n_generated / st->generate_seconds : 0.0);
}

int cmd_run(int argc, char **argv) {
    gen_opts o;
    defaults(&o);
    const opt opts[] = {
        COMMON_OPTS(&o),
        {"--prompt", "-p", OPT_STR, &o.prompt, "prompt text"},
        {"--file", "-f", OPT_STR, &o.prompt_file, "read the prompt from a file (- for stdin)"},
        {"--no-display-prompt", NULL, OPT_FLAG, &o.no_display_prompt, "print only the generated text"},
        {"--no-special", NULL, OPT_FLAG, &o.no_special, "treat special-token text in the prompt as plain text"},
        {0},
    };
    const cmd_spec spec = {"run", "-m FILE -p PROMPT [options]", "Generate text from a prompt, streaming it to stdout; timings go to stderr.", opts, 0};
    const char *pos[1];
    int n_pos, rc = args_parse(&spec, argc, argv, pos, &n_pos);
    if (rc) return rc == ARGS_HELP ? 0 : rc;
    size_t plen = 0;
    char *pbuf = NULL;
    if (o.prompt_file && !(pbuf = cli_read_all(o.prompt_file, &plen))) {
        fprintf(stderr, "ternlm: cannot read prompt file '%s'\n", o.prompt_file);
        return EXIT_RUNTIME;
    }
    const char *prompt = pbuf ? pbuf : o.prompt ? o.prompt : "";
    if (!pbuf) plen = strlen(prompt);
    ternlm_model *m = NULL;
    ternlm_session *s = NULL;
    ternlm_sampler *smp = NULL;
    double load_s = 0;
    if ((rc = setup(&o, &m, &s, &smp, &load_s))) goto done;
    ternlm_error err = {0};
    size_t n = 0, cap = plen + 8;
    int32_t *ids = malloc(cap * sizeof *ids);
    const int flags = TERNLM_TOKENIZE_ADD_SPECIAL | (o.no_special ? 0 : TERNLM_TOKENIZE_PARSE_SPECIAL);
    if (!ids || ternlm_tokenize(m, prompt, plen, flags, ids, cap, &n, &err)) {
        fprintf(stderr, "ternlm: %s\n", ids ? err.message : "out of memory");
        free(ids);
        rc = EXIT_RUNTIME;
        goto done;
    }
    if (!o.no_display_prompt) {
        fwrite(prompt, 1, plen, stdout);
        fflush(stdout);
    }
    catch_interrupt();
    ternlm_generate_params gp = {0};
    gp.max_tokens = o.n_predict;
    gp.ignore_eos = o.ignore_eos;
    gp.abort_flag = &g_abort;
    gp.on_token = print_piece;
    ternlm_generate_stats st;
    ternlm_status gs = ternlm_generate(s, smp, ids, n, &gp, &st, &err);
    free(ids);
    print_stats(load_s, &st);
    if (gs && gs != TERNLM_ERR_ABORTED) {
        fprintf(stderr, "ternlm: %s\n", err.message);
        rc = EXIT_RUNTIME;
    }
done:
    ternlm_sampler_free(smp);
    ternlm_session_free(s);
    ternlm_model_free(m);
    free(pbuf);
    return rc;
}

/* ---- chat ---- */

static char *read_line(FILE *f) {
    size_t cap = 256, n = 0;
    char *buf = malloc(cap);
    int c;
    while (buf && (c = fgetc(f)) != EOF && c != '\n') {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
            if (!buf) return NULL;
        }
        buf[n++] = (char)c;
    }
    if (!buf || (c == EOF && n == 0)) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

int cmd_chat(int argc, char **argv) {
    gen_opts o;
    defaults(&o);
    o.n_predict = 512;
    const opt opts[] = {
        COMMON_OPTS(&o),
        {"--system", NULL, OPT_STR, &o.system, "system prompt"},
        {0},
    };
    const cmd_spec spec = {"chat", "-m FILE [--system TEXT] [options]",
                           "Interactive chat. Type a message and press Enter; /reset starts over, /exit quits.\n"
                           "Each turn evaluates only its new tokens: earlier turns stay in the KV cache.", opts, 0};
    const char *pos[1];
    int n_pos, rc = args_parse(&spec, argc, argv, pos, &n_pos);
    if (rc) return rc == ARGS_HELP ? 0 : rc;
    ternlm_model *m = NULL;
    ternlm_session *s = NULL;
    ternlm_sampler *smp = NULL;
    ternlm_chat *chat = NULL;
    double load_s = 0;
    if ((rc = setup(&o, &m, &s, &smp, &load_s))) goto done;
    ternlm_error err = {0};
    if (ternlm_chat_new(s, smp, o.system, &chat, &err)) {
        fprintf(stderr, "ternlm: %s\n", err.message);
        rc = EXIT_RUNTIME;
        goto done;
    }
    catch_interrupt();
    fprintf(stderr, "ternlm chat: /reset starts over, /exit quits, Ctrl-C stops a reply.\n");
    for (;;) {
        fprintf(stderr, "\n> ");
        char *line = read_line(stdin);
        if (!line || !strcmp(line, "/exit")) {
            free(line);
            break;
        }
        if (!strcmp(line, "/reset")) {
            ternlm_chat_reset(chat);
            fprintf(stderr, "(conversation cleared)\n");
            free(line);
            continue;
        }
        g_abort = 0;
        ternlm_generate_params gp = {0};
        gp.max_tokens = o.n_predict;
        gp.abort_flag = &g_abort;
        gp.on_token = print_piece;
        ternlm_generate_stats st;
        const uint64_t before = ternlm_session_tokens_evaluated(s);
        ternlm_status cs = ternlm_chat_send(chat, line, &gp, &st, &err);
        free(line);
        printf("\n");
        fflush(stdout);
        if (o.verbose)
            fprintf(stderr, "[turn: %u new prompt tokens, %u generated, %llu evaluated, context %u/%u, %.2f tokens/s]\n",
                    st.n_prompt, st.n_generated, (unsigned long long)(ternlm_session_tokens_evaluated(s) - before),
                    ternlm_session_pos(s), ternlm_session_n_ctx(s),
                    st.generate_seconds > 0 ? st.n_generated / st.generate_seconds : 0.0);
        if (cs == TERNLM_ERR_CONTEXT_FULL) {
            fprintf(stderr, "ternlm: %s; use /reset\n", err.message);
        } else if (cs && cs != TERNLM_ERR_ABORTED) {
            fprintf(stderr, "ternlm: %s\n", err.message);
            rc = EXIT_RUNTIME;
            break;
        }
    }
done:
    ternlm_chat_free(chat);
    ternlm_sampler_free(smp);
    ternlm_session_free(s);
    ternlm_model_free(m);
    return rc;
}
