/* The conversation loop of ternlm chat and ternlm run -cnv: multi-line input, /reset and /exit, Ctrl-C handling,
 * and a context shift (the oldest turns are dropped, the system prompt stays) when the context fills up. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"
#include "line_input.h"

typedef struct text_buf {
    char *p;
    size_t n, cap;
} text_buf;

static int buf_add(text_buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 1;
}

typedef enum { MSG_OK, MSG_QUIT, MSG_CANCELLED } msg_status;

/* One message: lines ending with a backslash, or pasted lines, continue it. */
static msg_status read_message(line_input *li, text_buf *msg, int color) {
    msg->n = 0;
    const int editor = line_input_is_editor(li);
    for (;;) {
        const char *prompt = msg->n ? "... " : "> ";
        char pbuf[32];
        if (!editor && color) snprintf(pbuf, sizeof pbuf, "%s%s", prompt, CLI_COLOR_USER);
        char *line = NULL;
        int was_empty = 0;
        g_cli_interrupt = 0;
        const line_status ls = line_input_read(li, !editor && color ? pbuf : prompt, &line, &was_empty);
        if (!editor && color) fputs(CLI_COLOR_RESET, stderr);
        if (ls == LINE_INTERRUPTED) return was_empty && !msg->n ? MSG_QUIT : MSG_CANCELLED;
        if (ls == LINE_EOF) return msg->n ? MSG_OK : MSG_QUIT;
        size_t n = strlen(line);
        const int backslash = n && line[n - 1] == '\\';
        if (backslash) n--;
        const int more = backslash || line_input_pasting(li);
        const int ok = buf_add(msg, line, n) && (!more || buf_add(msg, "\n", 1));
        free(line);
        if (!ok) return MSG_QUIT;
        if (!more) return MSG_OK;
    }
}

/* --verbose-prompt: the message as the model gets it, newlines shown as \n. */
static void print_message(const char *p, size_t n) {
    fprintf(stderr, "[message: %zu bytes] ", n);
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)p[i];
        if (c == '\n') fputs("\\n", stderr);
        else if (c < 0x20 || c == 0x7f) fprintf(stderr, "\\x%02x", c);
        else fputc(c, stderr);
    }
    fputc('\n', stderr);
}

/* Room kept for the reply when the context shifts. */
static uint32_t reply_reserve(uint32_t n_ctx, int32_t max_tokens) {
    const uint32_t half = n_ctx / 2;
    if (max_tokens < 0) return n_ctx / 4;
    return (uint32_t)max_tokens < half ? (uint32_t)max_tokens : half;
}

/* --reasoning hide: pieces go through the core's reasoning splitter and only the answer reaches the out_filter. */
typedef struct hide_reasoning {
    ternlm_reasoning *r;
    out_filter *f;
    size_t hidden; /* reasoning bytes not shown, for --verbose */
} hide_reasoning;

static int answer_only(void *user, int is_reasoning, const char *text, size_t len) {
    hide_reasoning *h = user;
    if (is_reasoning) {
        h->hidden += len;
        return 0;
    }
    return out_filter_piece(h->f, -1, text, len);
}

static int hide_reasoning_piece(void *user, int32_t tok, const char *text, size_t len) {
    (void)tok;
    hide_reasoning *h = user;
    return ternlm_reasoning_feed(h->r, text, len, answer_only, h);
}

/* One turn in steps (as the browser Worker runs it), so the reply recorded is the text shown: a --stop string and
 * what followed it stay out of the conversation. */
static ternlm_status generate_turn(ternlm_chat *chat, ternlm_session *s, ternlm_sampler *smp, const char *text,
                                   const ternlm_generate_params *gp, out_filter *f, hide_reasoning *hide,
                                   ternlm_generate_stats *st, ternlm_error *err) {
    size_t n = 0;
    ternlm_status cs = ternlm_chat_begin_turn(chat, text, NULL, 0, &n, err); /* a count: nothing changes */
    if (cs != TERNLM_ERR_ARG || !n) return cs ? cs : TERNLM_ERR_ARG;
    int32_t *todo = malloc(n * sizeof *todo);
    if (!todo) {
        snprintf(err->message, sizeof err->message, "out of memory");
        return err->code = TERNLM_ERR_NOMEM;
    }
    if (!(cs = ternlm_chat_begin_turn(chat, text, todo, n, &n, err))) {
        g_cli_interrupt = 0;
        cs = ternlm_generate(s, smp, todo, n, gp, st, err);
        if (hide) ternlm_reasoning_flush(hide->r, answer_only, hide);
        out_filter_flush(f);
        ternlm_error end_err = {0};
        const ternlm_status es = ternlm_chat_end_turn(chat, f->shown ? f->shown : "", f->shown ? f->n_shown : 0, &end_err);
        if (es && (!cs || cs == TERNLM_ERR_ABORTED)) cs = es, *err = end_err;
    }
    free(todo);
    return cs;
}

static int send_turn(const gen_opts *o, ternlm_chat *chat, ternlm_session *s, ternlm_sampler *smp, ternlm_reasoning *splitter,
                     const char *text) {
    ternlm_error err = {0};
    const int32_t max_tokens = o->n_predict == N_PREDICT_UNSET ? 512 : o->n_predict;
    size_t dropped = 0;
    ternlm_status cs = ternlm_chat_fit(chat, text, reply_reserve(ternlm_session_n_ctx(s), max_tokens), &dropped, &err);
    if (cs == TERNLM_ERR_CONTEXT_FULL) {
        fprintf(stderr, "ternlm: %s; not sent (raise -c or send a shorter message)\n", err.message);
        return 0;
    }
    if (cs) {
        fprintf(stderr, "ternlm: %s\n", err.message);
        return EXIT_RUNTIME;
    }
    if (dropped)
        fprintf(stderr, "(context full: dropped the oldest %zu turn%s; the system prompt and later turns are kept)\n",
                dropped, dropped == 1 ? "" : "s");
    out_filter f;
    out_filter_init(&f, &o->stops);
    ternlm_generate_params gp = {0};
    gp.max_tokens = max_tokens;
    gp.ignore_eos = o->ignore_eos;
    gp.abort_flag = &g_cli_interrupt;
    gp.on_token = out_filter_piece;
    gp.user = &f;
    hide_reasoning hide = {splitter, &f, 0};
    if (splitter) {
        ternlm_reasoning_reset(splitter);
        gp.on_token = hide_reasoning_piece;
        gp.user = &hide;
    }
    ternlm_generate_stats st = {0};
    const uint64_t before = ternlm_session_tokens_evaluated(s);
    cs = generate_turn(chat, s, smp, text, &gp, &f, splitter ? &hide : NULL, &st, &err);
    if (o->verbose && splitter) fprintf(stderr, "[reasoning: %zu bytes hidden]\n", hide.hidden);
    const size_t reply_bytes = f.n_shown;
    out_filter_free(&f);
    printf("\n");
    fflush(stdout);
    if (o->verbose)
        fprintf(stderr, "[turn: %u new prompt tokens, %u generated, %llu evaluated, context %u/%u, %.2f tokens/s, "
                        "reply %zu bytes]\n",
                st.n_prompt, st.n_generated, (unsigned long long)(ternlm_session_tokens_evaluated(s) - before),
                ternlm_session_pos(s), ternlm_session_n_ctx(s),
                st.generate_seconds > 0 ? st.n_generated / st.generate_seconds : 0.0, reply_bytes);
    if (cs == TERNLM_ERR_ABORTED) {
        fprintf(stderr, "(reply stopped)\n");
    } else if (cs == TERNLM_OK && st.stopped_by == 4) {
        fprintf(stderr, "(reply cut: the context of %u tokens is full; the next message drops the oldest turns)\n",
                ternlm_session_n_ctx(s));
    } else if (cs) {
        fprintf(stderr, "ternlm: %s\n", err.message);
        return cs == TERNLM_ERR_CONTEXT_FULL ? 0 : EXIT_RUNTIME;
    }
    return 0;
}

static char *read_template(const char *spec) {
    static const char *const names[] = {"auto", "bitnet", "llama3", "chatml"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(spec, names[i])) {
            char *p = malloc(strlen(spec) + 1);
            if (p) strcpy(p, spec);
            return p;
        }
    size_t n;
    char *t = cli_read_all(spec, &n);
    if (!t) fprintf(stderr, "ternlm: --chat-template takes auto, bitnet, llama3, chatml or a template file\n");
    return t;
}

int chat_loop(const gen_opts *o, ternlm_session *s, ternlm_sampler *smp, const char *system,
              const char *first_message) {
    ternlm_error err = {0};
    ternlm_chat *chat = NULL;
    if (ternlm_chat_new(s, smp, system, &chat, &err)) {
        fprintf(stderr, "ternlm: %s\n", err.message);
        return EXIT_RUNTIME;
    }
    int rc = 0;
    if (o->chat_template) {
        char *t = read_template(o->chat_template);
        if (!t || ternlm_chat_set_template(chat, t, &err)) {
            if (t) fprintf(stderr, "ternlm: --chat-template: %s\n", err.message);
            rc = t && err.code != TERNLM_ERR_ARG ? EXIT_RUNTIME : EXIT_USAGE;
        }
        free(t);
        if (rc) {
            ternlm_chat_free(chat);
            return rc;
        }
    }
    if (o->reasoning_budget == 0) ternlm_chat_set_thinking(chat, 0, NULL); /* as llama.cpp: enable_thinking = false */
    ternlm_reasoning *splitter = NULL;
    if (o->reasoning && !strcmp(o->reasoning, "hide") && ternlm_reasoning_new(0, &splitter, &err)) {
        fprintf(stderr, "ternlm: %s\n", err.message);
        ternlm_chat_free(chat);
        return EXIT_RUNTIME;
    }
    cli_catch_interrupt(0); /* Ctrl-C stops a reply or ends a read; the loop decides */
    line_input *li = line_input_open(o->color, &g_cli_interrupt);
    if (!li) {
        ternlm_reasoning_free(splitter);
        ternlm_chat_free(chat);
        return EXIT_RUNTIME;
    }
    fprintf(stderr, "ternlm chat: /reset starts over, /exit quits (or Ctrl-D), a line ending in \\ continues the "
                    "message, Ctrl-C stops a reply, /help says this again.\n");
    text_buf msg = {0};
    if (first_message && *first_message) {
        fprintf(stderr, "> %s\n", first_message);
        rc = send_turn(o, chat, s, smp, splitter, first_message);
    }
    while (!rc) {
        const msg_status ms = read_message(li, &msg, o->color);
        if (ms == MSG_QUIT) break;
        if (ms == MSG_CANCELLED || !msg.n) continue;
        if (!strcmp(msg.p, "/exit") || !strcmp(msg.p, "/quit")) break;
        line_input_add_history(li, msg.p);
        if (!strcmp(msg.p, "/help")) {
            fprintf(stderr, "/reset: start over (the system prompt stays)   /exit: quit (also Ctrl-D, or Ctrl-C at an "
                            "empty prompt)\nend a line with \\ to continue the message; Ctrl-C stops a reply\n");
            continue;
        }
        if (!strcmp(msg.p, "/reset")) {
            ternlm_chat_reset(chat);
            fprintf(stderr, "(conversation cleared)\n");
            continue;
        }
        if (o->verbose_prompt) print_message(msg.p, msg.n);
        rc = send_turn(o, chat, s, smp, splitter, msg.p);
    }
    free(msg.p);
    line_input_close(li);
    ternlm_reasoning_free(splitter);
    ternlm_chat_free(chat);
    return rc;
}
