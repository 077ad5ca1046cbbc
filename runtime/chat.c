/* Chat formats. bitnet-b1.58 uses Microsoft's reference format (tokenizers.md §8): every piece is encoded
 * separately with special-token parsing off, so user text can never forge a turn. Other models use the
 * Llama 3 or ChatML layout when their vocabulary has those header tokens, else the same plain format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"
#include "model.h"
#include "tokenizer.h"
#include "unicode.h"

/* Python's str.strip(): Unicode White_Space plus the separators U+001C..U+001F. */
static void strip(const char **s, size_t *n) {
    const uint8_t *p = (const uint8_t *)*s;
    size_t a = 0, b = *n;
    while (a < b) {
        uint32_t cp;
        const size_t l = tl_utf8_decode(p + a, b - a, &cp);
        if (!(tl_unicode_is_space(cp) || (cp >= 0x1C && cp <= 0x1F))) break;
        a += l;
    }
    while (b > a) {
        size_t k = b - 1;
        while (k > a && (p[k] & 0xC0) == 0x80) k--;
        uint32_t cp;
        tl_utf8_decode(p + k, b - k, &cp);
        if (!(tl_unicode_is_space(cp) || (cp >= 0x1C && cp <= 0x1F))) break;
        b = k;
    }
    *s += a;
    *n = b - a;
}

static void enc(const tl_tokenizer *t, const char *s, size_t n, tl_ids *ids) { tl_tokenizer_encode(t, s, n, 0, ids); }
static void enc_z(const tl_tokenizer *t, const char *s, tl_ids *ids) { enc(t, s, strlen(s), ids); }

/* Qwen3's template keeps the <think> block of an assistant turn only after the last user message: earlier turns
 * keep what follows their last </think>, without its leading newlines. */
static void drop_reasoning(const char **s, size_t *n) {
    static const char end[] = "</think>";
    for (size_t i = *n; i >= sizeof end - 1; i--)
        if (!memcmp(*s + i - (sizeof end - 1), end, sizeof end - 1)) {
            *s += i, *n -= i;
            while (*n && **s == '\n') (*s)++, (*n)--;
            return;
        }
}

static const char *role_header(const char *role) {
    if (!strcmp(role, "system")) return "System: ";
    if (!strcmp(role, "user")) return "User: ";
    if (!strcmp(role, "assistant")) return "Assistant: ";
    return NULL;
}

static int32_t special_id(const tl_tokenizer *t, const char *text) {
    const int32_t id = tl_tokenizer_find(t, text, strlen(text));
    return id >= 0 && (t->type[id] == TL_TT_CONTROL || t->type[id] == TL_TT_USER) ? id : -1;
}

/* NUL-terminated text of a special token, or "" */
static void token_text(const tl_tokenizer *t, int32_t id, char *buf, size_t cap) {
    buf[0] = 0;
    if (id >= 0) snprintf(buf, cap, "%.*s", (int)t->text[id].len, t->text[id].p);
}

/* thinking: the template's enable_thinking, -1 (undefined), 0 or 1 */
static int render_template(const ternlm_model *m, const char *tmpl, size_t len, const ternlm_chat_message *msgs,
                           size_t n, int add_generation_prompt, int thinking, tl_jinja_text *out, char *why, size_t why_cap) {
    char bos[128], eos[128];
    token_text(m->tok, m->tok->bos, bos, sizeof bos);
    token_text(m->tok, m->tok->eos, eos, sizeof eos);
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content) {
            snprintf(why, why_cap, "message %zu has no role or no content", i);
            return 0;
        }
    tl_jinja_msg *jm = malloc((n ? n : 1) * sizeof *jm);
    if (!jm) {
        snprintf(why, why_cap, "out of memory rendering the chat template");
        return 0;
    }
    for (size_t i = 0; i < n; i++) jm[i] = (tl_jinja_msg){msgs[i].role, msgs[i].content};
    const tl_jinja_env env = {bos, eos, add_generation_prompt, thinking < 0 ? -1 : thinking != 0};
    const int ok = tl_jinja_render(tmpl, len, jm, n, &env, out, why, why_cap);
    free(jm);
    return ok;
}

/* Models other than bitnet-b1.58 with a template in the file: render it, then tokenize the template text with
 * special tokens parsed and every message's content as plain text. */
static int render_with_file_template(const ternlm_model *m, const ternlm_chat_message *msgs, size_t n, int add_assistant,
                                     int thinking, tl_ids *ids) {
    size_t len;
    const char *tmpl = ternlm_model_meta_string(m, "tokenizer.chat_template", &len);
    if (!tmpl || !strncmp(m->arch, "bitnet", 6)) return 0;
    tl_jinja_text out;
    char why[256];
    if (!render_template(m, tmpl, len, msgs, n, add_assistant, thinking, &out, why, sizeof why)) {
        tl_log(&m->log, "warning: %s; using the built-in chat format", why);
        return 0;
    }
    for (size_t i = 0; i < out.n; i++) tl_tokenizer_encode(m->tok, out.seg[i].p, out.seg[i].len, !out.seg[i].user, ids);
    tl_jinja_text_free(&out);
    return 1;
}

ternlm_status ternlm_chat_template_render(const ternlm_model *m, const char *tmpl, const ternlm_chat_message *msgs,
                                          size_t n, int add_generation_prompt, char *buf, size_t cap, size_t *n_out,
                                          ternlm_error *err) {
    const ternlm_chat_render_options opt = {add_generation_prompt, -1};
    return ternlm_chat_template_render_ex(m, tmpl, msgs, n, &opt, buf, cap, n_out, err);
}

ternlm_status ternlm_chat_template_render_ex(const ternlm_model *m, const char *tmpl, const ternlm_chat_message *msgs,
                                             size_t n, const ternlm_chat_render_options *opt, char *buf, size_t cap,
                                             size_t *n_out, ternlm_error *err) {
    if (!opt) return tl_fail(err, TERNLM_ERR_ARG, "options must not be NULL");
    if (!m || !m->tok || !n_out || (!msgs && n)) return tl_fail(err, TERNLM_ERR_ARG, "model (with a tokenizer), messages and n_out are required");
    size_t len = tmpl ? strlen(tmpl) : 0;
    if (!tmpl && !(tmpl = ternlm_model_meta_string(m, "tokenizer.chat_template", &len)))
        return tl_fail(err, TERNLM_ERR_TEMPLATE, "the model has no tokenizer.chat_template");
    tl_jinja_text out;
    char why[256];
    if (!render_template(m, tmpl, len, msgs, n, opt->add_generation_prompt, opt->enable_thinking, &out, why, sizeof why))
        return tl_fail(err, TERNLM_ERR_TEMPLATE, "%s", why);
    size_t o = 0;
    for (size_t i = 0; i < out.n; i++) {
        if (o + out.seg[i].len < cap) memcpy(buf + o, out.seg[i].p, out.seg[i].len);
        o += out.seg[i].len;
    }
    tl_jinja_text_free(&out);
    if (buf && cap) buf[o < cap ? o : cap - 1] = 0;
    *n_out = o;
    return o < cap ? TERNLM_OK : tl_fail(err, TERNLM_ERR_ARG, "%zu bytes do not fit in a buffer of %zu", o + 1, cap);
}

/* A conversation's format: the model's (auto), one of the built-in layouts by name, or a Jinja template. */
typedef enum { FMT_AUTO, FMT_BITNET, FMT_LLAMA3, FMT_CHATML, FMT_JINJA } chat_fmt_kind;
typedef struct chat_fmt {
    chat_fmt_kind kind;
    char *jinja;
    int thinking_off;  /* render with enable_thinking = false (ternlm_chat_set_thinking) */
    int thinking_on;   /* render with enable_thinking = true (ternlm_chat_tokens_ex) */
} chat_fmt;

/* Layout flags of the built-in formats. An explicit name needs the vocabulary's header tokens. */
static int builtin_layout(const ternlm_model *m, chat_fmt_kind kind, int *llama3, int *chatml) {
    const tl_tokenizer *t = m->tok;
    const int32_t eot = t->eot >= 0 ? t->eot : t->eos;
    const int has_llama3 = special_id(t, "<|start_header_id|>") >= 0 && special_id(t, "<|end_header_id|>") >= 0 && eot >= 0;
    const int has_chatml = special_id(t, "<|im_start|>") >= 0 && special_id(t, "<|im_end|>") >= 0;
    const int bitnet = !strncmp(m->arch, "bitnet", 6);
    *llama3 = kind == FMT_LLAMA3 || (kind == FMT_AUTO && !bitnet && has_llama3);
    *chatml = kind == FMT_CHATML || (kind == FMT_AUTO && !bitnet && !*llama3 && has_chatml);
    return (kind != FMT_LLAMA3 || has_llama3) && (kind != FMT_CHATML || has_chatml);
}

static ternlm_status render_jinja(const ternlm_model *m, const char *tmpl, const ternlm_chat_message *msgs, size_t n,
                                  int add_assistant, int thinking, tl_ids *ids, ternlm_error *err) {
    tl_jinja_text out;
    char why[256];
    if (!render_template(m, tmpl, strlen(tmpl), msgs, n, add_assistant, thinking, &out, why, sizeof why))
        return tl_fail(err, TERNLM_ERR_TEMPLATE, "chat template: %s", why);
    for (size_t i = 0; i < out.n; i++) tl_tokenizer_encode(m->tok, out.seg[i].p, out.seg[i].len, !out.seg[i].user, ids);
    tl_jinja_text_free(&out);
    return TERNLM_OK;
}

static ternlm_status render(const ternlm_model *m, const chat_fmt *fmt, const ternlm_chat_message *msgs, size_t n,
                            int add_assistant, tl_ids *ids, ternlm_error *err) {
    const tl_tokenizer *t = m->tok;
    const int32_t eot = t->eot >= 0 ? t->eot : t->eos;
    const int32_t sh = special_id(t, "<|start_header_id|>"), eh = special_id(t, "<|end_header_id|>");
    const int32_t im_s = special_id(t, "<|im_start|>"), im_e = special_id(t, "<|im_end|>");
    const chat_fmt_kind kind = fmt ? fmt->kind : FMT_AUTO;
    int llama3, chatml;
    builtin_layout(m, kind, &llama3, &chatml);
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content || !role_header(msgs[i].role))
            return tl_fail(err, TERNLM_ERR_ARG, "message %zu: role must be system, user or assistant, with content", i);
    const int thinking = fmt && fmt->thinking_off ? 0 : fmt && fmt->thinking_on ? 1 : -1;
    if (kind == FMT_JINJA) return render_jinja(m, fmt->jinja, msgs, n, add_assistant, thinking, ids, err);
    if (kind == FMT_AUTO && render_with_file_template(m, msgs, n, add_assistant, thinking, ids)) return TERNLM_OK;
    if (t->bos >= 0 && !chatml) tl_ids_push(ids, t->bos);
    size_t last_user = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(msgs[i].role, "user")) last_user = i;
    for (size_t i = 0; i < n; i++) {
        const char *c = msgs[i].content;
        size_t cn = strlen(c);
        if (chatml && i < last_user && !strcmp(msgs[i].role, "assistant")) drop_reasoning(&c, &cn);
        strip(&c, &cn);
        if (llama3) {
            tl_ids_push(ids, sh), enc_z(t, msgs[i].role, ids), tl_ids_push(ids, eh), enc_z(t, "\n\n", ids);
        } else if (chatml) {
            tl_ids_push(ids, im_s), enc_z(t, msgs[i].role, ids), enc_z(t, "\n", ids);
        } else {
            enc_z(t, role_header(msgs[i].role), ids);
        }
        enc(t, c, cn, ids);
        if (chatml) tl_ids_push(ids, im_e), enc_z(t, "\n", ids);
        else if (eot >= 0) tl_ids_push(ids, eot);
    }
    if (add_assistant) {
        if (llama3) tl_ids_push(ids, sh), enc_z(t, "assistant", ids), tl_ids_push(ids, eh), enc_z(t, "\n\n", ids);
        else if (chatml) tl_ids_push(ids, im_s), enc_z(t, "assistant", ids), enc_z(t, "\n", ids);
        else enc_z(t, "Assistant: ", ids);
    }
    return TERNLM_OK;
}

ternlm_status ternlm_chat_tokens(const ternlm_model *m, const ternlm_chat_message *msgs, size_t n, int add_assistant,
                                 int32_t *out, size_t cap, size_t *n_out, ternlm_error *err) {
    const ternlm_chat_render_options opt = {add_assistant, -1};
    return ternlm_chat_tokens_ex(m, msgs, n, &opt, out, cap, n_out, err);
}

ternlm_status ternlm_chat_tokens_ex(const ternlm_model *m, const ternlm_chat_message *msgs, size_t n,
                                    const ternlm_chat_render_options *opt, int32_t *out, size_t cap, size_t *n_out,
                                    ternlm_error *err) {
    if (!m || (!msgs && n) || !n_out || !opt) return tl_fail(err, TERNLM_ERR_ARG, "model, messages, options and n_out must not be NULL");
    if (!m->tok) return tl_fail(err, TERNLM_ERR_TOKENIZER, "this model file has no tokenizer");
    const chat_fmt fmt = {FMT_AUTO, NULL, opt->enable_thinking == 0, opt->enable_thinking > 0};
    tl_ids ids = {0};
    ternlm_status st = render(m, &fmt, msgs, n, opt->add_generation_prompt, &ids, err);
    if (!st && ids.too_dense) st = tl_tokenizer_too_dense(err);
    if (!st && ids.oom) st = tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    if (!st) {
        *n_out = ids.n;
        if (ids.n > cap) st = tl_fail(err, TERNLM_ERR_ARG, "%zu tokens do not fit in a buffer of %zu", ids.n, cap);
        else if (ids.n) memcpy(out, ids.v, ids.n * sizeof *out);
    }
    free(ids.v);
    return st;
}

/* ---- multi-turn conversations that reuse the KV cache ---- */

#include "session.h"

struct ternlm_chat {
    ternlm_session *s;
    ternlm_sampler *smp;
    ternlm_chat_message *msgs;
    size_t n, cap, n_fixed;    /* n_fixed: the system prompt survives reset */
    tl_ids pending;            /* tokens that close the last reply, evaluated with the next turn */
    tl_ids after;              /* the rendering that ended with the assistant prompt, for end_turn */
    char *reply;
    size_t reply_len, reply_cap;
    ternlm_token_fn user_fn;
    void *user_ctx;
    chat_fmt fmt;
};

static int push_msg(ternlm_chat *c, const char *role, const char *content, size_t len) {
    if (c->n == c->cap) {
        const size_t cap = c->cap ? c->cap * 2 : 8;
        ternlm_chat_message *v = realloc(c->msgs, cap * sizeof *v);
        if (!v) return 0;
        c->msgs = v;
        c->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return 0;
    memcpy(copy, content, len);
    copy[len] = 0;
    c->msgs[c->n++] = (ternlm_chat_message){role, copy};
    return 1;
}

ternlm_status ternlm_chat_new(ternlm_session *s, ternlm_sampler *smp, const char *system_prompt, ternlm_chat **out,
                              ternlm_error *err) {
    if (!s || !smp || !out) return tl_fail(err, TERNLM_ERR_ARG, "session, sampler and out must not be NULL");
    if (!s->m->tok) return tl_fail(err, TERNLM_ERR_TOKENIZER, "this model file has no tokenizer");
    ternlm_chat *c = calloc(1, sizeof *c);
    if (!c) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    c->s = s;
    c->smp = smp;
    if (system_prompt && *system_prompt && !push_msg(c, "system", system_prompt, strlen(system_prompt))) {
        ternlm_chat_free(c);
        return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    }
    c->n_fixed = c->n;
    *out = c;
    return TERNLM_OK;
}

static int collect_reply(void *user, int32_t tok, const char *text, size_t len) {
    ternlm_chat *c = user;
    if (c->reply_len + len + 1 > c->reply_cap) {
        size_t cap = c->reply_cap ? c->reply_cap : 256;
        while (cap < c->reply_len + len + 1) cap *= 2;
        char *p = realloc(c->reply, cap);
        if (!p) return 1;
        c->reply = p;
        c->reply_cap = cap;
    }
    memcpy(c->reply + c->reply_len, text, len);
    c->reply_len += len;
    c->reply[c->reply_len] = 0;
    return c->user_fn ? c->user_fn(c->user_ctx, tok, text, len) : 0;
}

/* Tokens of b after its prefix a (the conversation is append-only, so a is a prefix of b). */
static int suffix_after(const tl_ids *a, const tl_ids *b, tl_ids *out) {
    if (a->n > b->n || (a->n && memcmp(a->v, b->v, a->n * sizeof *a->v))) return 0;
    for (size_t i = a->n; i < b->n; i++) tl_ids_push(out, b->v[i]);
    return 1;
}

/* How many leading tokens of the cache (which starts with the previous turn's rendering `prev`, up to pos) the
 * new rendering shares. */
static size_t shared_prefix(const tl_ids *prev, const tl_ids *now, uint32_t pos) {
    size_t k = 0;
    while (k < prev->n && k < now->n && k < pos && prev->v[k] == now->v[k]) k++;
    return k;
}

ternlm_status ternlm_chat_begin_turn(ternlm_chat *c, const char *user_text, int32_t *out, size_t cap, size_t *n_out,
                                    ternlm_error *err) {
    if (!c || !user_text || !n_out) return tl_fail(err, TERNLM_ERR_ARG, "chat, user_text and n_out must not be NULL");
    const ternlm_model *m = c->s->m;
    tl_ids before = {0}, todo = {0}, prev = c->after;
    c->after = (tl_ids){0};
    ternlm_status st = render(m, &c->fmt, c->msgs, c->n, 0, &before, err);
    if (!st && !push_msg(c, "user", user_text, strlen(user_text))) st = tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    if (!st) st = render(m, &c->fmt, c->msgs, c->n, 1, &c->after, err);
    int fresh = 0;
    size_t keep = 0;
    if (!st) {
        if (c->s->pos == 0 || !suffix_after(&before, &c->after, &todo)) {
            /* a fresh session, or a format that is not append-only (Qwen3 drops the reasoning of earlier turns):
             * keep what the cache shares with the new rendering and evaluate the rest */
            fresh = 1;
            keep = shared_prefix(&prev, &c->after, c->s->pos);
            todo.n = 0;
            for (size_t i = keep; i < c->after.n; i++) tl_ids_push(&todo, c->after.v[i]);
        } else { /* close the previous reply first */
            tl_ids joined = {0};
            for (size_t i = 0; i < c->pending.n; i++) tl_ids_push(&joined, c->pending.v[i]);
            for (size_t i = 0; i < todo.n; i++) tl_ids_push(&joined, todo.v[i]);
            free(todo.v);
            todo = joined;
        }
        if (todo.too_dense || before.too_dense || c->after.too_dense) st = tl_tokenizer_too_dense(err);
        else if (todo.oom || before.oom || c->after.oom) st = tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    }
    if (!st) {
        *n_out = todo.n;
        if (todo.n > cap) st = tl_fail(err, TERNLM_ERR_ARG, "%zu tokens do not fit in a buffer of %zu", todo.n, cap);
        else if (todo.n) memcpy(out, todo.v, todo.n * sizeof *out);
    }
    if (!st) { /* commit: only now does the conversation change */
        c->pending.n = 0;
        if (fresh) ternlm_session_rewind(c->s, (uint32_t)keep, NULL);
        free(prev.v);
    } else {
        if (c->n && !strcmp(c->msgs[c->n - 1].role, "user")) free((void *)c->msgs[--c->n].content);
        free(c->after.v);
        c->after = prev; /* nothing changed */
    }
    free(before.v);
    free(todo.v);
    return st;
}

ternlm_status ternlm_chat_end_turn(ternlm_chat *c, const char *reply, size_t len, ternlm_error *err) {
    if (!c || (!reply && len)) return tl_fail(err, TERNLM_ERR_ARG, "chat must not be NULL");
    tl_ids closed = {0};
    if (!push_msg(c, "assistant", "", 0)) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    /* the tokens that end an assistant turn (e.g. <|eot_id|>) are rendered with empty content */
    render(c->s->m, &c->fmt, c->msgs, c->n, 0, &closed, NULL);
    c->pending.n = 0;
    suffix_after(&c->after, &closed, &c->pending);
    free(closed.v);
    char *copy = malloc(len + 1);
    if (!copy) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    if (len) memcpy(copy, reply, len);
    copy[len] = 0;
    free((void *)c->msgs[c->n - 1].content);
    c->msgs[c->n - 1].content = copy;
    return TERNLM_OK;
}

ternlm_status ternlm_chat_send(ternlm_chat *c, const char *user_text, const ternlm_generate_params *gp_in,
                               ternlm_generate_stats *stats, ternlm_error *err) {
    if (!c || !user_text) return tl_fail(err, TERNLM_ERR_ARG, "chat and user_text must not be NULL");
    size_t n = 0;
    ternlm_status st = ternlm_chat_begin_turn(c, user_text, NULL, 0, &n, NULL); /* how many tokens? */
    if (st != TERNLM_ERR_ARG) return st ? tl_fail(err, st, "cannot render the conversation") : st;
    int32_t *todo = malloc((n ? n : 1) * sizeof *todo);
    if (!todo) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    st = ternlm_chat_begin_turn(c, user_text, todo, n, &n, err);
    if (!st) {
        ternlm_generate_params gp = {0};
        if (gp_in) gp = *gp_in;
        c->user_fn = gp.on_token;
        c->user_ctx = gp.user;
        gp.on_token = collect_reply;
        gp.user = c;
        c->reply_len = 0;
        if (c->reply) c->reply[0] = 0;
        st = ternlm_generate(c->s, c->smp, todo, n, &gp, stats, err);
        if (st == TERNLM_OK || st == TERNLM_ERR_ABORTED) {
            const ternlm_status e = ternlm_chat_end_turn(c, c->reply ? c->reply : "", c->reply_len, err);
            if (e) st = e;
        } else {
            free((void *)c->msgs[--c->n].content); /* the turn did not happen (e.g. the context is full) */
        }
    }
    free(todo);
    return st;
}

const char *ternlm_chat_last_reply(const ternlm_chat *c) { return c && c->reply ? c->reply : ""; }

void ternlm_chat_reset(ternlm_chat *c) {
    if (!c) return;
    while (c->n > c->n_fixed) free((void *)c->msgs[--c->n].content);
    c->pending.n = 0;
    ternlm_session_rewind(c->s, 0, NULL);
    ternlm_sampler_reset(c->smp);
}

void ternlm_chat_free(ternlm_chat *c) {
    if (!c) return;
    while (c->n) free((void *)c->msgs[--c->n].content);
    free(c->msgs);
    free(c->pending.v);
    free(c->after.v);
    free(c->reply);
    free(c->fmt.jinja);
    free(c);
}

ternlm_status ternlm_chat_set_template(ternlm_chat *c, const char *name_or_template, ternlm_error *err) {
    if (!c) return tl_fail(err, TERNLM_ERR_ARG, "chat must not be NULL");
    static const struct { const char *name; chat_fmt_kind kind; } names[] = {
        {"auto", FMT_AUTO}, {"bitnet", FMT_BITNET}, {"llama3", FMT_LLAMA3}, {"chatml", FMT_CHATML}};
    chat_fmt fmt = {FMT_JINJA, NULL, 0, 0};
    const char *spec = name_or_template && *name_or_template ? name_or_template : "auto";
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(spec, names[i].name)) fmt.kind = names[i].kind;
    const ternlm_model *m = c->s->m;
    int llama3, chatml;
    if (fmt.kind != FMT_JINJA && !builtin_layout(m, fmt.kind, &llama3, &chatml))
        return tl_fail(err, TERNLM_ERR_ARG, "chat template '%s' needs header tokens this vocabulary lacks", spec);
    if (fmt.kind == FMT_JINJA) { /* render a sample now, so a bad template fails here and not mid-conversation */
        const size_t len = strlen(spec);
        if (!(fmt.jinja = malloc(len + 1))) return tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
        memcpy(fmt.jinja, spec, len + 1);
        const ternlm_chat_message sample[] = {{"system", "s"}, {"user", "u"}, {"assistant", "a"}, {"user", "u"}};
        tl_ids ids = {0};
        const ternlm_status st = render_jinja(m, fmt.jinja, sample, 4, 1, -1, &ids, err);
        free(ids.v);
        if (st) {
            free(fmt.jinja);
            return st;
        }
    }
    free(c->fmt.jinja);
    fmt.thinking_off = c->fmt.thinking_off;
    c->fmt = fmt;
    return TERNLM_OK;
}

ternlm_status ternlm_chat_set_thinking(ternlm_chat *c, int enable, ternlm_error *err) {
    if (!c) return tl_fail(err, TERNLM_ERR_ARG, "chat must not be NULL");
    c->fmt.thinking_off = !enable;
    return TERNLM_OK;
}

/* Positions the next turn with user_text needs: what the cache keeps plus what begin_turn would evaluate. */
static ternlm_status turn_positions(ternlm_chat *c, const char *user_text, size_t *need, ternlm_error *err) {
    size_t n = 0;
    ternlm_status st = ternlm_chat_begin_turn(c, user_text, NULL, 0, &n, err);
    if (st && st != TERNLM_ERR_ARG) return st;
    if (st == TERNLM_ERR_ARG && !n) return st;
    const ternlm_model *m = c->s->m;
    tl_ids before = {0}, after = {0};
    st = render(m, &c->fmt, c->msgs, c->n, 0, &before, err);
    int kept = 0;
    if (!st && push_msg(c, "user", user_text, strlen(user_text))) {
        st = render(m, &c->fmt, c->msgs, c->n, 1, &after, err);
        free((void *)c->msgs[--c->n].content);
        kept = !st && c->s->pos > 0 && before.n <= after.n && !memcmp(before.v, after.v, before.n * sizeof *before.v);
    } else if (!st) {
        st = tl_fail(err, TERNLM_ERR_NOMEM, "out of memory");
    }
    free(before.v);
    free(after.v);
    *need = kept ? c->s->pos + n : after.n; /* otherwise the new rendering replaces the cache from its shared prefix */
    return st;
}

/* Removes the oldest user turn after the system prompt, with the replies that follow it. 0 if there is none. */
static int drop_oldest_turn(ternlm_chat *c) {
    size_t end = c->n_fixed;
    if (end >= c->n) return 0;
    end++;
    while (end < c->n && strcmp(c->msgs[end].role, "user")) end++;
    for (size_t i = c->n_fixed; i < end; i++) free((void *)c->msgs[i].content);
    memmove(c->msgs + c->n_fixed, c->msgs + end, (c->n - end) * sizeof *c->msgs);
    c->n -= end - c->n_fixed;
    c->pending.n = 0;
    ternlm_session_rewind(c->s, 0, NULL); /* what is kept is evaluated again with the next turn */
    return 1;
}

ternlm_status ternlm_chat_fit(ternlm_chat *c, const char *user_text, uint32_t reserve, size_t *n_dropped,
                              ternlm_error *err) {
    if (!c || !user_text) return tl_fail(err, TERNLM_ERR_ARG, "chat and user_text must not be NULL");
    size_t dropped = 0;
    const size_t n_ctx = c->s->n_ctx;
    ternlm_status st = TERNLM_OK;
    for (;;) {
        size_t need = 0;
        if ((st = turn_positions(c, user_text, &need, err))) break;
        if (need + reserve <= n_ctx) break;
        if (!drop_oldest_turn(c)) {
            if (need > n_ctx)
                st = tl_fail(err, TERNLM_ERR_CONTEXT_FULL,
                             "the message needs %zu positions with the system prompt; the context holds %zu", need, n_ctx);
            break; /* fits without the reserve: the reply may be cut short */
        }
        dropped++;
    }
    if (n_dropped) *n_dropped = dropped;
    return st;
}
