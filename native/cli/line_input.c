/* Chat input. On a terminal with libedit: the native histedit API with our own character reader, so that
 * Ctrl-C (SIGINT, installed with sigaction and no SA_RESTART) ends the read cleanly and bracketed-paste markers
 * are seen; libedit gives cursor movement, history and the usual emacs keys. Elsewhere: plain lines. */
#define _POSIX_C_SOURCE 200809L
#include "line_input.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(TERNLM_HAVE_LIBEDIT)
#include <histedit.h>
#include <langinfo.h>
#include <locale.h>
#include <wchar.h>
#endif

struct line_input {
    volatile int *interrupt;
    int color, pasting, interrupted, was_empty, eof;
#if defined(TERNLM_HAVE_LIBEDIT)
    EditLine *el;
    History *hist;
    HistEvent ev;
    char prompt[64];
    unsigned char pend[16]; /* bytes read ahead while looking for a paste marker */
    int n_pend, i_pend;
#endif
};

static size_t strip_newline(const char *s, size_t n) {
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
    return n;
}

/* ---- plain lines (pipes, files) ---- */

static line_status read_plain(line_input *li, const char *prompt, char **out, int *was_empty) {
    if (prompt) {
        fputs(prompt, stderr);
        fflush(stderr);
    }
    size_t cap = 256, n = 0;
    char *buf = malloc(cap);
    if (!buf) return LINE_EOF;
    for (;;) {
        const int c = fgetc(stdin);
        if (c == EOF) {
            if (ferror(stdin) && errno == EINTR && *li->interrupt) { /* Ctrl-C while waiting for input */
                clearerr(stdin);
                *was_empty = n == 0;
                free(buf);
                return LINE_INTERRUPTED;
            }
            if (ferror(stdin) && errno == EINTR) {
                clearerr(stdin);
                continue;
            }
            if (n == 0) {
                free(buf);
                return LINE_EOF;
            }
            break;
        }
        if (c == '\n') break;
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return LINE_EOF;
            }
            buf = nb;
        }
        buf[n++] = (char)c;
    }
    buf[strip_newline(buf, n)] = 0;
    *out = buf;
    return LINE_OK;
}

#if defined(TERNLM_HAVE_LIBEDIT)

static char *dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* The next input byte: read ahead first, else read(2). -1 end of input, -2 interrupted (or a read error). */
static int next_byte(line_input *li) {
    if (li->i_pend < li->n_pend) return li->pend[li->i_pend++];
    if (li->interrupted) return -2;
    if (li->eof) return -1;
    for (;;) {
        unsigned char c;
        const ssize_t r = read(STDIN_FILENO, &c, 1);
        if (r == 1) return c;
        if (r == 0) {
            li->eof = 1;
            return -1;
        }
        if (errno != EINTR) {
            li->eof = 1;
            return -1;
        }
        if (*li->interrupt) {
            const LineInfo *l = el_line(li->el);
            li->was_empty = l->lastchar == l->buffer;
            li->interrupted = 1;
            return -2;
        }
    }
}

/* After an ESC: consumes a bracketed-paste marker (ESC [200~ starts a paste, ESC [201~ ends it) and returns 1,
 * or puts the bytes back for libedit (arrow keys are ESC [ A ...) and returns 0. */
static int paste_marker(line_input *li) {
    static const char start[] = "[200~", end[] = "[201~";
    unsigned char got[5];
    int n = 0;
    while (n < 5) {
        const int c = next_byte(li);
        if (c < 0) break;
        got[n++] = (unsigned char)c;
        if (memcmp(got, start, (size_t)n) && memcmp(got, end, (size_t)n)) break;
    }
    if (n == 5) {
        li->pasting = got[3] == '0';
        return 1;
    }
    unsigned char rest[sizeof li->pend];
    const int n_rest = li->n_pend - li->i_pend;
    memcpy(rest, li->pend + li->i_pend, (size_t)n_rest);
    memcpy(li->pend, got, (size_t)n);
    memcpy(li->pend + n, rest, (size_t)n_rest);
    li->i_pend = 0;
    li->n_pend = n + n_rest;
    return 0;
}

/* libedit's character reader (EL_GETCFN): one UTF-8 character as a wide character. 1 ok, 0 end, -1 error. */
static int get_char(EditLine *el, wchar_t *wc) {
    line_input *li = NULL;
    el_get(el, EL_CLIENTDATA, &li);
    for (;;) {
        const int b = next_byte(li);
        if (b < 0) return b == -1 ? 0 : -1;
        if (b == 0x1b && paste_marker(li)) continue;
        int need = b < 0x80 ? 0 : (b & 0xE0) == 0xC0 ? 1 : (b & 0xF0) == 0xE0 ? 2 : (b & 0xF8) == 0xF0 ? 3 : -1;
        uint32_t cp = need == 0 ? (uint32_t)b : need == 1 ? (uint32_t)(b & 0x1F) : need == 2 ? (uint32_t)(b & 0x0F) : (uint32_t)(b & 0x07);
        while (need > 0) {
            const int c = next_byte(li);
            if (c < 0) return c == -1 ? 0 : -1;
            if ((c & 0xC0) != 0x80) { /* a broken sequence: keep the byte for the next character */
                li->pend[0] = (unsigned char)c;
                li->i_pend = 0;
                li->n_pend = 1;
                need = -1;
                break;
            }
            cp = cp << 6 | (uint32_t)(c & 0x3F);
            need--;
        }
        *wc = need < 0 ? (wchar_t)0xFFFD : (wchar_t)cp;
        return 1;
    }
}

static char *prompt_fn(EditLine *el) {
    line_input *li = NULL;
    el_get(el, EL_CLIENTDATA, &li);
    return li->prompt;
}

static int open_editor(line_input *li) {
    if (!isatty(STDIN_FILENO) || !isatty(STDERR_FILENO)) return 0;
    /* libedit converts wide characters with the locale's codeset: make it UTF-8 */
    if (!setlocale(LC_CTYPE, "") || strcmp(nl_langinfo(CODESET), "UTF-8")) setlocale(LC_CTYPE, "C.UTF-8");
    li->el = el_init("ternlm", stdin, stderr, stderr);
    li->hist = history_init();
    if (!li->el || !li->hist) return 0;
    history(li->hist, &li->ev, H_SETSIZE, 1000);
    history(li->hist, &li->ev, H_SETUNIQUE, 1);
    el_set(li->el, EL_CLIENTDATA, li);
    el_set(li->el, EL_EDITOR, "emacs");
    el_set(li->el, EL_SIGNAL, 0);
    el_set(li->el, EL_HIST, history, li->hist);
    el_set(li->el, EL_GETCFN, get_char);
    el_set(li->el, EL_PROMPT, prompt_fn);
    el_source(li->el, NULL); /* the user's ~/.editrc, if any */
    return 1;
}

static line_status read_editor(line_input *li, const char *prompt, char **out, int *was_empty) {
    snprintf(li->prompt, sizeof li->prompt, "%s", prompt ? prompt : "");
    li->interrupted = li->was_empty = 0;
    fputs(li->color ? "\033[?2004h\033[32m" : "\033[?2004h", stderr); /* bracketed paste on while we read */
    fflush(stderr);
    int count = 0;
    const char *line = el_gets(li->el, &count);
    fputs(li->color ? "\033[0m\033[?2004l" : "\033[?2004l", stderr);
    if (li->interrupted) {
        fputs("^C\n", stderr);
        fflush(stderr);
        *was_empty = li->was_empty;
        li->pasting = 0;
        li->n_pend = li->i_pend = 0;
        return LINE_INTERRUPTED;
    }
    if (!line || count <= 0) {
        fputs("\n", stderr);
        return LINE_EOF;
    }
    *out = dup_n(line, strip_newline(line, (size_t)count));
    return *out ? LINE_OK : LINE_EOF;
}

#endif

line_input *line_input_open(int color, volatile int *interrupt) {
    line_input *li = calloc(1, sizeof *li);
    if (!li) return NULL;
    li->color = color;
    li->interrupt = interrupt;
#if !defined(TERNLM_HAVE_LIBEDIT)
    if (isatty(STDIN_FILENO))
        fprintf(stderr, "ternlm: line editing and history are unavailable (built without libedit): reading plain lines\n");
#else
    if (!open_editor(li)) {
        if (li->el) el_end(li->el);
        if (li->hist) history_end(li->hist);
        li->el = NULL;
        li->hist = NULL;
    }
#endif
    return li;
}

int line_input_is_editor(const line_input *li) {
#if defined(TERNLM_HAVE_LIBEDIT)
    return li->el != NULL;
#else
    (void)li;
    return 0;
#endif
}

line_status line_input_read(line_input *li, const char *prompt, char **out, int *was_empty) {
    *out = NULL;
    *was_empty = 0;
#if defined(TERNLM_HAVE_LIBEDIT)
    if (li->el) return read_editor(li, prompt, out, was_empty);
#endif
    return read_plain(li, prompt, out, was_empty);
}

int line_input_pasting(const line_input *li) { return li->pasting; }

void line_input_add_history(line_input *li, const char *text) {
#if defined(TERNLM_HAVE_LIBEDIT)
    if (li->hist && *text) history(li->hist, &li->ev, H_ENTER, text);
#else
    (void)li, (void)text;
#endif
}

void line_input_close(line_input *li) {
    if (!li) return;
#if defined(TERNLM_HAVE_LIBEDIT)
    if (li->el) el_end(li->el);
    if (li->hist) history_end(li->hist);
#endif
    free(li);
}
