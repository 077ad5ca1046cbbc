/* A Jinja subset for GGUF chat templates (see jinja.c for what it supports). */
#ifndef TERNLM_JINJA_H
#define TERNLM_JINJA_H

#include <stddef.h>
#include <stdio.h>

typedef struct tl_jinja_msg {
    const char *role, *content;
} tl_jinja_msg;

/* Rendered text as segments: template text (user = 0) and message content (user = 1). */
typedef struct tl_jinja_seg {
    char *p;         /* NUL-terminated copy (the text may also contain NUL bytes: use len) */
    size_t len, cap;
    int user;
} tl_jinja_seg;

typedef struct tl_jinja_text {
    tl_jinja_seg *seg;
    size_t n, cap;
    size_t bytes;    /* total length of the segments */
} tl_jinja_text;

/* The variables a template sees besides `messages`. */
typedef struct tl_jinja_env {
    const char *bos, *eos;      /* bos_token, eos_token (NULL: "") */
    int add_generation_prompt;
    int enable_thinking;        /* -1: undefined (the template's default), 0: false, 1: true */
} tl_jinja_env;

/* Returns 1 on success; 0 with a message naming the unsupported construct or the limit exceeded (the limits are
 * TERNLM_TEMPLATE_* in ternlm.h). tmpl need not be NUL-terminated; message strings must be. */
int tl_jinja_render(const char *tmpl, size_t len, const tl_jinja_msg *msgs, size_t n_msgs, const tl_jinja_env *env,
                    tl_jinja_text *out, char *err, size_t err_cap);
void tl_jinja_text_free(tl_jinja_text *t);

#endif
