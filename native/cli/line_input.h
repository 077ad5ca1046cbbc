/* Reading chat input: libedit (line editing, arrow keys, history, bracketed paste) on a terminal, plain lines
 * otherwise (pipes, files, or a build without libedit). */
#ifndef TERNLM_CLI_LINE_INPUT_H
#define TERNLM_CLI_LINE_INPUT_H

typedef struct line_input line_input;

typedef enum { LINE_OK, LINE_EOF, LINE_INTERRUPTED } line_status;

/* stdin and stderr are terminals and libedit is built in: an editor; else a plain reader. color: the typed text in
 * green. interrupt: the flag SIGINT sets (a read stops with LINE_INTERRUPTED when it is set). Never NULL except
 * out of memory. */
line_input *line_input_open(int color, volatile int *interrupt);
/* One line without its newline (malloc'd) in *out. With LINE_INTERRUPTED, *was_empty says whether the line being
 * typed was empty. */
line_status line_input_read(line_input *li, const char *prompt, char **out, int *was_empty);
/* 1 while a bracketed paste is in progress (its newlines continue the message instead of sending it). */
int line_input_pasting(const line_input *li);
void line_input_add_history(line_input *li, const char *text);
/* 1 when lines come from the editor (so prompts are drawn by it). */
int line_input_is_editor(const line_input *li);
void line_input_close(line_input *li);

#endif
