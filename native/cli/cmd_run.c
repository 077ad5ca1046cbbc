/* ternlm run (one prompt, streamed; -cnv turns it into a conversation) and the setup shared with ternlm chat. */
#define _POSIX_C_SOURCE 200809L
#if !defined(__wasi__)
#include <signal.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gen.h"

volatile int g_cli_interrupt;
static volatile int g_interrupts_to_quit; /* 0: never quit from the handler; N: the Nth Ctrl-C quits at once */
static volatile int g_interrupts;

#if !defined(__wasi__)
static void on_sigint(int sig) {
    (void)sig;
    g_cli_interrupt = 1;
    if (g_interrupts_to_quit && ++g_interrupts >= g_interrupts_to_quit) _Exit(EXIT_INTERRUPTED);
}
#endif

void cli_catch_interrupt(int interrupts_to_quit) {
    g_interrupts_to_quit = interrupts_to_quit;
    g_interrupts = 0;
#if !defined(__wasi__) /* WASI has no signals: the host ends the process */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESETHAND: every Ctrl-C comes here; no SA_RESTART: a blocked read returns EINTR */
    sigaction(SIGINT, &sa, NULL);
#endif
}

void gen_defaults(gen_opts *o) {
    memset(o, 0, sizeof *o);
    const ternlm_sampler_params sp = ternlm_sampler_params_default();
    o->n_predict = N_PREDICT_UNSET;
    o->temp = sp.temperature;
    o->top_k = sp.top_k;
    o->top_p = sp.top_p;
    o->min_p = sp.min_p;
    o->repeat_penalty = sp.repeat_penalty;
    o->repeat_last_n = sp.penalty_last_n;
    o->seed = TERNLM_SEED_RANDOM;
    o->ngl = -1;
    o->reasoning_budget = -1;
}

/* Every generation option, for run and chat alike (llama-cli and bitnet.cpp spellings included). */
#define GEN_OPTS(o)                                                                                                      \
    {"--model", "-m", OPT_STR, &(o)->model, "GGUF file, hf://OWNER/REPO/FILE or URL (default: the embedded model)"},  \
    {"--n-predict", "-n", OPT_INT, &(o)->n_predict, "tokens to generate (default 128, chat 512; -1 = until the context is full)"}, \
    {"--temp", NULL, OPT_FLOAT, &(o)->temp, "temperature (default 0.8; 0 = greedy; also -temp)"},                       \
    {"-temp", NULL, OPT_FLOAT, &(o)->temp, NULL},                                                                      \
    {"--top-k", NULL, OPT_INT, &(o)->top_k, "top-k (default 40; 0 = off)"},                                          \
    {"--top-p", NULL, OPT_FLOAT, &(o)->top_p, "top-p, 0..1 (default 0.95; 1 = off)"},                                \
    {"--min-p", NULL, OPT_FLOAT, &(o)->min_p, "min-p, 0..1 (default 0.05; 0 = off)"},                                \
    {"--repeat-penalty", NULL, OPT_FLOAT, &(o)->repeat_penalty, "repetition penalty, > 0 (default 1 = off)"},        \
    {"--repeat-last-n", NULL, OPT_INT, &(o)->repeat_last_n, "tokens the penalties look back (default 64)"},         \
    {"--frequency-penalty", NULL, OPT_FLOAT, &(o)->freq_penalty, "frequency penalty (default 0)"},                  \
    {"--presence-penalty", NULL, OPT_FLOAT, &(o)->presence_penalty, "presence penalty (default 0)"},                \
    {"--seed", "-s", OPT_SEED, &(o)->seed, "random seed (default or -1: from the OS, printed with --verbose)"},     \
    {"--threads", "-t", OPT_INT, &(o)->threads, "threads (default: physical cores; at most 4 per core)"},           \
    {"--ctx-size", "-c", OPT_INT, &(o)->ctx, "context size (default: the model's, at most 4096)"},                  \
    {"--pre", NULL, OPT_STR, &(o)->pre, "pre-tokenizer override: llama3, gpt2 or default (bitnet.cpp parity)"},     \
    {"--activation", NULL, OPT_STR, &(o)->activation, "FFN activation override for arch bitnet: silu or relu2"},    \
    {"--head-quant", NULL, OPT_STR, &(o)->head_quant, "re-quantize an F16 head at load: q8_0, i8 or i4"},               \
    {"--gpu", NULL, OPT_FLAG, &(o)->gpu, "run on the GPU backend"},                                                  \
    {"--n-gpu-layers", "-ngl", OPT_INT, &(o)->ngl, "llama.cpp's flag: N > 0 means --gpu in a CUDA build, else ignored"}, \
    {"--batch-size", "-b", OPT_NOTE, NULL, "ternlm evaluates a prompt as one batch"},                               \
    {"--ubatch-size", "-ub", OPT_NOTE, NULL, "ternlm evaluates a prompt as one batch"},                             \
    {"--ignore-eos", NULL, OPT_FLAG, &(o)->ignore_eos, "do not stop at end-of-generation tokens"},                 \
    {"--stop", "-r", OPT_STRS, &(o)->stops, "stop when the output contains this text (repeatable)"},        \
    {"--reverse-prompt", NULL, OPT_STRS, &(o)->stops, NULL},                                                           \
    {"--color", NULL, OPT_FLAG, &(o)->color, "colour the prompt and the user's input"},                             \
    {"--verbose-prompt", NULL, OPT_FLAG, &(o)->verbose_prompt, "print the prompt's tokens (chat: each message) on stderr"}, \
    {"--verbose", NULL, OPT_FLAG, &(o)->verbose, "print loader notes, the seed and the kernel path"},               \
    {"--system", "-sys", OPT_STR, &(o)->system, "chat: the system prompt"},                                            \
    {"--system-prompt", NULL, OPT_STR, &(o)->system, NULL},                                                           \
    {"--chat-template", NULL, OPT_STR, &(o)->chat_template, "chat: llama3, chatml, bitnet, or a Jinja template FILE"}, \
    {"--reasoning", NULL, OPT_STR, &(o)->reasoning, "chat: show (default, as llama-cli) or hide a reply's <think> block"}, \
    {"--reasoning-budget", NULL, OPT_INT, &(o)->reasoning_budget, "chat: -1 unrestricted (default), 0 = thinking off"}, \
    {"--i2s-layout", NULL, OPT_INT, &(o)->i2s_layout, "I2_S files quantized on ARM by bitnet.cpp: 64 (default 128)"}

static int bad_range(const char *flag, double v, double lo, double hi) {
    if (v >= lo && v <= hi) return 0;
    fprintf(stderr, "ternlm: %s %g is out of range (%g..%g)\n", flag, v, lo, hi);
    return 1;
}

static int check_opts(gen_opts *o) {
    if (cli_head_quant(o->head_quant) < 0) {
        fprintf(stderr, "ternlm: --head-quant supports only %s\n", CLI_HEAD_QUANT_NAMES);
        return EXIT_USAGE;
    }
    if (o->activation && strcmp(o->activation, "silu") && strcmp(o->activation, "relu2")) {
        fprintf(stderr, "ternlm: --activation must be silu or relu2, not '%s'\n", o->activation);
        return EXIT_USAGE;
    }
    static const char *const pre_names[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "gpt2", "gpt-2", "mpt", "olmo",
                                            "jais", "default", "qwen2"}; /* the runtime's names (tokenizer.c) */
    int pre_known = !o->pre;
    for (size_t i = 0; !pre_known && i < sizeof pre_names / sizeof pre_names[0]; i++) pre_known = !strcmp(o->pre, pre_names[i]);
    if (!pre_known) { /* checked here too: a SentencePiece vocabulary would ignore it */
        fprintf(stderr, "ternlm: unknown pre-tokenizer '%s' (llama3, gpt2 or default)\n", o->pre);
        return EXIT_USAGE;
    }
    if (o->reasoning && strcmp(o->reasoning, "show") && strcmp(o->reasoning, "hide")) {
        fprintf(stderr, "ternlm: --reasoning must be show or hide, not '%s'\n", o->reasoning);
        return EXIT_USAGE;
    }
    if (o->reasoning_budget != -1 && o->reasoning_budget != 0) {
        fprintf(stderr, "ternlm: --reasoning-budget supports -1 (unrestricted) and 0 (thinking off), not %d\n", o->reasoning_budget);
        return EXIT_USAGE;
    }
    if (o->threads < 0 || o->ctx < 0) {
        fprintf(stderr, "ternlm: --threads and --ctx-size must not be negative\n");
        return EXIT_USAGE;
    }
    if (bad_range("--top-p", o->top_p, 0, 1) || bad_range("--min-p", o->min_p, 0, 1) ||
        bad_range("--repeat-penalty", o->repeat_penalty, 1e-6, 1e6) || bad_range("--temp", o->temp, 0, 1e6))
        return EXIT_USAGE;
    for (int i = 0; i < o->stops.n; i++)
        if (!*o->stops.v[i] || strlen(o->stops.v[i]) >= sizeof ((out_filter *)0)->held / 2) {
            fprintf(stderr, "ternlm: --stop needs a non-empty text of at most %zu bytes\n", sizeof ((out_filter *)0)->held / 2 - 1);
            return EXIT_USAGE;
        }
    const uint32_t cores = ternlm_cpu_cores(), max_threads = 4 * (cores ? cores : 1);
    if ((uint32_t)o->threads > max_threads) { /* more threads than this only thrash (and -t 100000 would hang) */
        fprintf(stderr, "ternlm: warning: -t %d is more than 4 threads per core (%u cores): using %u\n", o->threads, cores,
                max_threads);
        o->threads = (int)max_threads;
    }
    if (o->ngl > 0) {
#if defined(TERNLM_CLI_HAVE_CUDA)
        if (!o->gpu) fprintf(stderr, "ternlm: note: -ngl %d: running every layer on the GPU (--gpu)\n", o->ngl);
        o->gpu = 1;
#else
        fprintf(stderr, "ternlm: note: -ngl %d ignored (this build has no GPU backend)\n", o->ngl);
#endif
    }
    return cli_check_kernels_env();
}

int gen_setup(gen_opts *o, ternlm_model **m, ternlm_session **s, ternlm_sampler **smp, double *load_s) {
    int rc = check_opts(o);
    if (rc) return rc;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cli_set_i2s_layout(o->i2s_layout);
    if ((rc = cli_open_model(o->model, o->pre, cli_head_quant(o->head_quant), o->activation, o->verbose, m))) return rc;
    const uint32_t trained = ternlm_model_get_info(*m)->n_ctx_train;
    if ((uint32_t)o->ctx > trained)
        fprintf(stderr, "ternlm: warning: -c %d is above the model's trained context of %u tokens: using %u\n", o->ctx,
                trained, trained);
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
        return err.code == TERNLM_ERR_ARG ? EXIT_USAGE : EXIT_RUNTIME;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *load_s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    if (o->verbose)
        fprintf(stderr, "ternlm: backend %s, %u threads, context %u, seed %llu\n", ternlm_session_backend(*s),
                ternlm_session_threads(*s), ternlm_session_n_ctx(*s), (unsigned long long)ternlm_sampler_seed(*smp));
    return 0;
}

/* ---- streamed output with --stop strings ---- */

void out_filter_init(out_filter *f, const str_list *stops) {
    memset(f, 0, sizeof *f);
    f->stops = stops;
}

static void emit(out_filter *f, const char *p, size_t n) {
    fwrite(p, 1, n, stdout);
    fflush(stdout);
    if (f->n_shown + n + 1 > f->cap_shown) {
        size_t cap = f->cap_shown ? f->cap_shown : 256;
        while (cap < f->n_shown + n + 1) cap *= 2;
        char *q = realloc(f->shown, cap);
        if (!q) return; /* the record is incomplete; the text was still printed */
        f->shown = q;
        f->cap_shown = cap;
    }
    memcpy(f->shown + f->n_shown, p, n);
    f->n_shown += n;
    f->shown[f->n_shown] = 0;
}

void out_filter_free(out_filter *f) {
    free(f->shown);
    f->shown = NULL;
    f->n_shown = f->cap_shown = 0;
}

/* Bytes at the end of held that could begin a stop string: they wait for the next piece. */
static size_t possible_stop_start(const out_filter *f) {
    size_t keep = 0;
    for (int i = 0; i < f->stops->n; i++) {
        const char *s = f->stops->v[i];
        const size_t sl = strlen(s);
        for (size_t k = sl - 1 < f->n_held ? sl - 1 : f->n_held; k > keep; k--)
            if (!memcmp(f->held + f->n_held - k, s, k)) {
                keep = k;
                break;
            }
    }
    return keep;
}

int out_filter_piece(void *user, int32_t tok, const char *text, size_t len) {
    (void)tok;
    out_filter *f = user;
    if (f->stopped) return 1;
    if (!f->stops || !f->stops->n) {
        emit(f, text, len);
        return 0;
    }
    while (len) { /* pieces are short; a long one is taken in parts that fit */
        const size_t room = sizeof f->held - f->n_held, take = len < room ? len : room;
        memcpy(f->held + f->n_held, text, take);
        f->n_held += take, text += take, len -= take;
        size_t first = f->n_held;
        for (int i = 0; i < f->stops->n; i++) {
            const char *s = f->stops->v[i];
            const size_t sl = strlen(s);
            for (size_t at = 0; at + sl <= f->n_held && at < first; at++)
                if (!memcmp(f->held + at, s, sl)) {
                    first = at;
                    break;
                }
        }
        if (first < f->n_held) {
            emit(f, f->held, first);
            f->n_held = 0;
            f->stopped = 1;
            return 1;
        }
        const size_t keep = possible_stop_start(f);
        emit(f, f->held, f->n_held - keep);
        memmove(f->held, f->held + f->n_held - keep, keep);
        f->n_held = keep;
    }
    return 0;
}

void out_filter_flush(out_filter *f) {
    if (!f->stopped) emit(f, f->held, f->n_held);
    f->n_held = 0;
}

/* ---- ternlm run ---- */

static void print_stats(double load_s, const ternlm_generate_stats *st) {
    fprintf(stderr, "\n\nternlm: load %.0f ms | prompt %u tokens, %.2f tokens/s | generation %u tokens, %.2f tokens/s\n",
            load_s * 1000, st->n_prompt, st->prompt_seconds > 0 ? st->n_prompt / st->prompt_seconds : 0.0,
            st->n_generated, st->generate_seconds > 0 ? st->n_generated / st->generate_seconds : 0.0);
}

static void print_prompt_tokens(const ternlm_model *m, const int32_t *ids, size_t n) {
    fprintf(stderr, "ternlm: prompt: %zu tokens\n", n);
    char piece[256];
    for (size_t i = 0; i < n; i++) {
        const int l = ternlm_token_piece(m, ids[i], TERNLM_DETOK_SPECIAL, piece, sizeof piece);
        fprintf(stderr, "%8d -> '", ids[i]);
        for (int j = 0; j < (l < 0 ? 0 : l > (int)sizeof piece ? (int)sizeof piece : l); j++) {
            const unsigned char c = (unsigned char)piece[j];
            if (c < 0x20 || c == 0x7f) fprintf(stderr, "\\x%02x", c); /* keep control bytes off the terminal */
            else fputc(c, stderr);
        }
        fprintf(stderr, "'\n");
    }
}

/* The prompt text: -f FILE (or -), else -p, else "". NULL on a read error (already reported). */
static char *prompt_text(const gen_opts *o, size_t *len) {
    if (o->prompt_file) return cli_read_all(o->prompt_file, len);
    const char *p = o->prompt ? o->prompt : "";
    *len = strlen(p);
    char *copy = malloc(*len + 1);
    if (copy) memcpy(copy, p, *len + 1);
    return copy;
}

static int run_once(const gen_opts *o, ternlm_model *m, ternlm_session *s, ternlm_sampler *smp, double load_s,
                    const char *prompt, size_t plen) {
    ternlm_error err = {0};
    size_t n = 0, cap = plen + 8;
    int32_t *ids = malloc(cap * sizeof *ids);
    const int flags = TERNLM_TOKENIZE_ADD_SPECIAL | (o->no_special ? 0 : TERNLM_TOKENIZE_PARSE_SPECIAL);
    if (!ids || ternlm_tokenize(m, prompt, plen, flags, ids, cap, &n, &err)) {
        fprintf(stderr, "ternlm: %s\n", ids ? err.message : "out of memory");
        free(ids);
        return EXIT_RUNTIME;
    }
    if (o->verbose_prompt) print_prompt_tokens(m, ids, n);
    if (!o->no_display_prompt) {
        if (o->color) fputs(CLI_COLOR_PROMPT, stdout);
        fwrite(prompt, 1, plen, stdout);
        if (o->color) fputs(CLI_COLOR_RESET, stdout);
        fflush(stdout);
    }
    out_filter f;
    out_filter_init(&f, &o->stops);
    ternlm_generate_params gp = {0};
    gp.max_tokens = o->n_predict == N_PREDICT_UNSET ? 128 : o->n_predict;
    gp.ignore_eos = o->ignore_eos;
    gp.abort_flag = &g_cli_interrupt;
    gp.on_token = out_filter_piece;
    gp.user = &f;
    ternlm_generate_stats st;
    const ternlm_status gs = ternlm_generate(s, smp, ids, n, &gp, &st, &err);
    out_filter_flush(&f);
    out_filter_free(&f);
    free(ids);
    print_stats(load_s, &st);
    if (st.stopped_by == 4)
        fprintf(stderr, "ternlm: stopped: the context of %u tokens is full (raise it with -c; the model was trained on %u)\n",
                ternlm_session_n_ctx(s), ternlm_model_get_info(m)->n_ctx_train);
    if (gs == TERNLM_ERR_ABORTED) {
        fprintf(stderr, "ternlm: interrupted\n");
        return EXIT_INTERRUPTED;
    }
    if (gs) {
        fprintf(stderr, "ternlm: %s\n", err.message);
        return EXIT_RUNTIME;
    }
    return 0;
}

/* Shared by run and chat: parse, set up, then one prompt or a conversation. */
static int run_or_chat(int argc, char **argv, int chat) {
    gen_opts o;
    gen_defaults(&o);
    const opt opts[] = {
        GEN_OPTS(&o),
        {"--prompt", "-p", OPT_STR, &o.prompt, "prompt text (conversation: the system prompt, unless --system is given)"},
        {"--file", "-f", OPT_STR, &o.prompt_file, "read the prompt from a file (- for stdin)"},
        {"--conversation", "-cnv", OPT_FLAG, &o.interactive, "conversation mode, as ternlm chat (also -i, --interactive)"},
        {"-i", NULL, OPT_FLAG, &o.interactive, NULL},
        {"--interactive", NULL, OPT_FLAG, &o.interactive, NULL},
        {"--no-display-prompt", NULL, OPT_FLAG, &o.no_display_prompt, "print only the generated text"},
        {"--no-special", NULL, OPT_FLAG, &o.no_special, "treat special-token text in the prompt as plain text"},
        {0},
    };
    const cmd_spec run_spec = {"run", "[-m FILE] -p PROMPT [options]",
                               "Generate text from a prompt, streaming it to stdout; timings go to stderr.\n"
                               "-cnv / -i / --interactive: a conversation instead (see ternlm chat).", opts, 0};
    const cmd_spec chat_spec = {"chat", "[-m FILE] [--system TEXT] [options]",
                                "Interactive chat with line editing and history. Type a message and press Enter; end a line\n"
                                "with \\ (or paste) for several lines. /reset starts over, /exit (or Ctrl-D, or Ctrl-C at an\n"
                                "empty prompt) quits, Ctrl-C stops a reply. Each turn evaluates only its new tokens; a full\n"
                                "context drops the oldest turns (the system prompt stays). -p/-f give the system prompt when\n"
                                "--system is absent, else the first message.", opts, 0};
    const char *pos[1];
    int n_pos, rc = args_parse(chat ? &chat_spec : &run_spec, argc, argv, pos, &n_pos);
    if (rc) return rc == ARGS_HELP ? 0 : rc;
    if (chat) o.interactive = 1;
    /* from here on Ctrl-C is ours: during a load it quits a conversation at once; in run it stops the generation
     * (even one that has not started yet) with exit 130, and a second one quits at once */
    cli_catch_interrupt(o.interactive ? 1 : 2);
    size_t plen = 0;
    char *prompt = prompt_text(&o, &plen);
    if (!prompt) return EXIT_RUNTIME;
    ternlm_model *m = NULL;
    ternlm_session *s = NULL;
    ternlm_sampler *smp = NULL;
    double load_s = 0;
    if (!(rc = gen_setup(&o, &m, &s, &smp, &load_s))) {
        if (!o.interactive) {
            rc = run_once(&o, m, s, smp, load_s, prompt, plen);
        } else {
            const int has_text = o.prompt || o.prompt_file;
            const char *system = o.system ? o.system : has_text ? prompt : NULL;
            rc = chat_loop(&o, s, smp, system, o.system && has_text ? prompt : NULL);
        }
    }
    ternlm_sampler_free(smp);
    ternlm_session_free(s);
    ternlm_model_free(m);
    free(prompt);
    return rc;
}

int cmd_run(int argc, char **argv) { return run_or_chat(argc, argv, 0); }
int cmd_chat(int argc, char **argv) { return run_or_chat(argc, argv, 1); }
