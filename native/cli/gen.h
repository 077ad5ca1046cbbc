/* Shared by ternlm run and ternlm chat: the generation options, model/session setup, and the text filter that
 * applies --stop strings and --color to streamed output. */
#ifndef TERNLM_CLI_GEN_H
#define TERNLM_CLI_GEN_H

#include <stdio.h>

#include "args.h"
#include "ternlm.h"

enum { N_PREDICT_UNSET = -1000000 };

typedef struct gen_opts {
    const char *model, *prompt, *prompt_file, *pre, *activation, *head_quant, *system, *chat_template;
    int n_predict, top_k, repeat_last_n, threads, ctx, verbose, gpu, ngl, ignore_eos, no_display_prompt, no_special;
    int interactive, color, verbose_prompt;
    const char *reasoning; /* chat: "show" (default) or "hide" the <think> block */
    int reasoning_budget;  /* chat: -1 unrestricted, 0 thinking off (enable_thinking = false) */
    int i2s_layout;        /* 0/128 official, 64: bitnet.cpp's NEON quantizer */
    float temp, top_p, min_p, repeat_penalty, freq_penalty, presence_penalty;
    uint64_t seed;
    str_list stops;
} gen_opts;

/* Set by SIGINT (cli_catch_interrupt): stops the current generation or ends a prompt read. */
extern volatile int g_cli_interrupt;
/* Installs the SIGINT handler with sigaction, so it stays installed after the first Ctrl-C. Each Ctrl-C sets
 * g_cli_interrupt; the interrupts_to_quit-th one (counted from this call; 0: never) ends the process with 130. */
void cli_catch_interrupt(int interrupts_to_quit);

void gen_defaults(gen_opts *o);
/* Validates the options, opens the model, session and sampler. Returns 0 or an exit code. */
int gen_setup(gen_opts *o, ternlm_model **m, ternlm_session **s, ternlm_sampler **smp, double *load_s);

/* Streams generated text to stdout, holding back text that may be the start of a --stop string. */
typedef struct out_filter {
    const str_list *stops;
    char held[1024];
    size_t n_held;
    int stopped; /* a stop string was seen: the text before it was printed, the rest dropped */
    char *shown; /* everything printed (chat records it as the reply), NUL-terminated; NULL if out of memory */
    size_t n_shown, cap_shown;
} out_filter;

void out_filter_init(out_filter *f, const str_list *stops);
/* A ternlm_token_fn: user is the out_filter. Returns 1 (stop) after a stop string. */
int out_filter_piece(void *user, int32_t tok, const char *text, size_t len);
void out_filter_flush(out_filter *f);
void out_filter_free(out_filter *f);

/* ANSI colours for --color. */
#define CLI_COLOR_USER "\033[32m"
#define CLI_COLOR_PROMPT "\033[33m"
#define CLI_COLOR_RESET "\033[0m"

/* The conversation loop (cmd_chat.c), for ternlm chat and ternlm run -cnv. first_message: sent as the first user
 * turn (may be NULL). Frees nothing it did not create. */
int chat_loop(const gen_opts *o, ternlm_session *s, ternlm_sampler *smp, const char *system,
              const char *first_message);

#endif
