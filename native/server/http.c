/* Routes of ternlm-server. libmicrohttpd parses HTTP (one thread per connection, idle timeout, header
 * memory limit, connection limit); cJSON parses and writes JSON. Each generation request is validated
 * here, queued with engine_submit, and its connection thread then waits on the request's condition
 * variable: a non-streaming request answers when it is done, a streaming one writes an SSE chunk for each
 * batch of new text. While waiting, the thread peeks at the socket: a client that closed it cancels its
 * request, which frees the slot at the scheduler's next step. */
#define _POSIX_C_SOURCE 200809L
#include "http.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct srv_http {
    srv_config cfg;
    struct MHD_Daemon *daemon;
    int port;
    ternlm_model *model;  /* set once loading is done (ready) */
    srv_engine *engine;
    char model_id[256];
    long created;
    int ready;            /* read and written with __atomic builtins */
    int inflight;         /* generation requests whose response has not completed (atomic) */
    unsigned long next_id; /* atomic */
};

typedef struct conn_ctx {
    char *body;
    size_t len, cap;
    int too_big, counted;
} conn_ctx;

/* ---------------------------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------------------------ */

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *type, const char *body,
                                 size_t len, int retry_after) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (retry_after) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    const enum MHD_Result rc = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, cJSON *obj) {
    char *s = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!s) return MHD_NO;
    const enum MHD_Result rc = send_text(c, status, "application/json", s, strlen(s), 0);
    free(s);
    return rc;
}

static const char *error_type(unsigned status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 500: return "server_error";
    case 503: return "unavailable_error";
    default: return "invalid_request_error";
    }
}

/* OpenAI's error shape: {"error": {"message", "type", "param", "code"}}. */
static cJSON *error_object(unsigned status, const char *param, const char *message) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", error_type(status));
    if (param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    cJSON_AddNumberToObject(e, "code", status);
    return root;
}

/* JSON text of obj, which is freed. */
static char *print_and_free(cJSON *obj) {
    char *s = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    return s;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *param, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *s = print_and_free(error_object(status, param, msg));
    if (!s) return MHD_NO;
    const enum MHD_Result rc = send_text(c, status, "application/json", s, strlen(s), status == 503);
    free(s);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Request validation: a parsed body becomes an srv_request, or a 4xx naming the field
 * ------------------------------------------------------------------------------------------ */

typedef struct parse_error {
    unsigned status;
    const char *param;
    char msg[400];
} parse_error;

static int fail(parse_error *pe, unsigned status, const char *param, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(parse_error *pe, unsigned status, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pe->msg, sizeof pe->msg, fmt, ap);
    va_end(ap);
    pe->status = status;
    pe->param = param;
    return 0;
}

/* A number field within [lo, hi], or absent (keeps *out). JSON null counts as absent. */
static int get_number(const cJSON *body, const char *name, double lo, double hi, double *out, parse_error *pe) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    if (!v || cJSON_IsNull(v)) return 1;
    if (!cJSON_IsNumber(v)) return fail(pe, 400, name, "'%s' must be a number", name);
    if (!(v->valuedouble >= lo && v->valuedouble <= hi))
        return fail(pe, 400, name, "'%s' is %g; it must be between %g and %g", name, v->valuedouble, lo, hi);
    *out = v->valuedouble;
    return 1;
}

static int get_int(const cJSON *body, const char *name, double lo, double hi, int64_t *out, parse_error *pe) {
    double d = (double)*out;
    if (!get_number(body, name, lo, hi, &d, pe)) return 0;
    if (d != (double)(int64_t)d) return fail(pe, 400, name, "'%s' must be an integer", name);
    *out = (int64_t)d;
    return 1;
}

static int get_bool(const cJSON *body, const char *name, int *out, parse_error *pe) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    if (!v || cJSON_IsNull(v)) return 1;
    if (!cJSON_IsBool(v)) return fail(pe, 400, name, "'%s' must be true or false", name);
    *out = cJSON_IsTrue(v);
    return 1;
}

/* Fields we cannot honour: refused rather than silently ignored, since the client relies on them. */
static int refuse_unsupported(const cJSON *body, int chat, parse_error *pe) {
    static const char *k_refused[] = {"tools", "functions", "tool_choice", "function_call", "suffix", "audio", "modalities"};
    for (size_t i = 0; i < sizeof k_refused / sizeof *k_refused; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, k_refused[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0))
            return fail(pe, 400, k_refused[i], "'%s' is not supported by this server", k_refused[i]);
    }
    int64_t n = 1, best_of = 1;
    if (!get_int(body, "n", 1, 1e9, &n, pe) || !get_int(body, "best_of", 1, 1e9, &best_of, pe)) return 0;
    if (n != 1) return fail(pe, 400, "n", "'n' must be 1: one choice per request");
    if (best_of != 1) return fail(pe, 400, "best_of", "'best_of' must be 1");
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(body, "logprobs");
    if (lp && !cJSON_IsNull(lp) && !cJSON_IsFalse(lp) && !(cJSON_IsNumber(lp) && lp->valuedouble == 0 && !chat))
        return fail(pe, 400, "logprobs", "'logprobs' is not supported by this server");
    int echo = 0;
    if (!get_bool(body, "echo", &echo, pe)) return 0;
    if (echo) return fail(pe, 400, "echo", "'echo' is not supported by this server");
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(body, "response_format");
    if (rf && !cJSON_IsNull(rf)) {
        const cJSON *t = cJSON_IsObject(rf) ? cJSON_GetObjectItemCaseSensitive(rf, "type") : NULL;
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text"))
            return fail(pe, 400, "response_format", "only response_format {\"type\": \"text\"} is supported");
    }
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(body, "logit_bias");
    if (bias && !cJSON_IsNull(bias) && !(cJSON_IsObject(bias) && !bias->child))
        return fail(pe, 400, "logit_bias", "'logit_bias' is not supported by this server");
    return 1;
}

static int parse_stop(const cJSON *body, srv_request *r, parse_error *pe) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "stop");
    if (!v || cJSON_IsNull(v)) return 1;
    const cJSON *items[SRV_MAX_STOP];
    size_t n = 0;
    if (cJSON_IsString(v)) {
        items[n++] = v;
    } else if (cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) > SRV_MAX_STOP) return fail(pe, 400, "stop", "'stop' holds at most %d strings", SRV_MAX_STOP);
        for (const cJSON *it = v->child; it; it = it->next) items[n++] = it;
    } else {
        return fail(pe, 400, "stop", "'stop' must be a string or an array of strings");
    }
    for (size_t i = 0; i < n; i++) {
        if (!cJSON_IsString(items[i])) return fail(pe, 400, "stop", "'stop' must be a string or an array of strings");
        const size_t len = strlen(items[i]->valuestring);
        if (len == 0 || len > 256) return fail(pe, 400, "stop", "each stop string must have 1 to 256 bytes");
        if (!(r->stop[r->n_stop] = strdup(items[i]->valuestring))) return fail(pe, 500, NULL, "out of memory");
        r->n_stop++;
    }
    return 1;
}

static int parse_sampling(const cJSON *body, const srv_config *cfg, srv_request *r, parse_error *pe) {
    ternlm_sampler_params sp = cfg->sampling;
    double temp = sp.temperature, top_p = sp.top_p, min_p = sp.min_p, pres = sp.presence_penalty,
           freq = sp.frequency_penalty, rep = sp.repeat_penalty;
    int64_t top_k = sp.top_k, seed = -1;
    if (!get_number(body, "temperature", 0, 2, &temp, pe) || !get_number(body, "top_p", 0, 1, &top_p, pe) ||
        !get_number(body, "min_p", 0, 1, &min_p, pe) || !get_int(body, "top_k", 0, 1e6, &top_k, pe) ||
        !get_number(body, "presence_penalty", -2, 2, &pres, pe) ||
        !get_number(body, "frequency_penalty", -2, 2, &freq, pe) ||
        !get_number(body, "repeat_penalty", 0, 10, &rep, pe) || !get_int(body, "seed", -1e18, 1e18, &seed, pe))
        return 0;
    sp.temperature = (float)temp;
    sp.top_p = (float)top_p;
    sp.min_p = (float)min_p;
    sp.top_k = (int32_t)top_k;
    sp.presence_penalty = (float)pres;
    sp.frequency_penalty = (float)freq;
    sp.repeat_penalty = (float)rep;
    sp.seed = seed < 0 ? (cfg->sampling.seed) : (uint64_t)seed;
    r->sampling = sp;
    return 1;
}

/* Text of a chat message's content: a string, or OpenAI's array of {"type": "text", "text": ...} parts. */
static char *message_text(const cJSON *content, size_t i, parse_error *pe) {
    if (cJSON_IsString(content)) return strdup(content->valuestring);
    if (cJSON_IsNull(content)) return strdup("");
    if (!cJSON_IsArray(content)) {
        fail(pe, 400, "messages", "messages[%zu].content must be a string or an array of text parts", i);
        return NULL;
    }
    size_t len = 0;
    for (const cJSON *p = content->child; p; p = p->next) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type"), *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(text)) {
            fail(pe, 400, "messages", "messages[%zu].content: only parts of type \"text\" are supported", i);
            return NULL;
        }
        len += strlen(text->valuestring);
    }
    char *out = malloc(len + 1);
    if (!out) return NULL;
    out[0] = 0;
    for (const cJSON *p = content->child; p; p = p->next) strcat(out, cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring);
    return out;
}

/* enable_thinking for the chat template (Qwen3: false renders an empty <think></think> so the model answers
 * directly): the request's chat_template_kwargs.enable_thinking (as vLLM and llama-server take it), else off for
 * the whole server with --reasoning-budget 0, else the template's default (-1). Other models ignore it. */
static int chat_thinking(const srv_http *h, const cJSON *body, int *thinking, parse_error *pe) {
    *thinking = h->cfg.reasoning_budget == 0 ? 0 : -1;
    const cJSON *kw = cJSON_GetObjectItemCaseSensitive(body, "chat_template_kwargs");
    if (!kw || cJSON_IsNull(kw)) return 1;
    if (!cJSON_IsObject(kw)) return fail(pe, 400, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
    for (const cJSON *k = kw->child; k; k = k->next)
        if (strcmp(k->string, "enable_thinking"))
            return fail(pe, 400, "chat_template_kwargs", "chat_template_kwargs.%.100s is not supported (only enable_thinking)", k->string);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(kw, "enable_thinking");
    if (!v || cJSON_IsNull(v)) return 1;
    if (!cJSON_IsBool(v)) return fail(pe, 400, "chat_template_kwargs", "chat_template_kwargs.enable_thinking must be true or false");
    *thinking = cJSON_IsTrue(v);
    return 1;
}

static int chat_prompt(const srv_http *h, const cJSON *body, srv_request *r, parse_error *pe) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!cJSON_IsArray(msgs)) return fail(pe, 400, "messages", "'messages' must be an array of messages");
    const int n = cJSON_GetArraySize(msgs);
    if (n < 1) return fail(pe, 400, "messages", "'messages' must hold at least one message");
    if (n > h->cfg.max_messages)
        return fail(pe, 400, "messages", "%d messages; this server accepts at most %d", n, h->cfg.max_messages);
    ternlm_chat_message *cm = calloc((size_t)n, sizeof *cm);
    char **texts = calloc((size_t)n, sizeof *texts);
    int ok = cm && texts;
    size_t i = 0;
    for (const cJSON *m = msgs->child; m && ok; m = m->next, i++) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
            ok = fail(pe, 400, "messages", "messages[%zu] must be an object with a string 'role'", i);
            break;
        }
        const char *rs = role->valuestring;
        if (!strcmp(rs, "developer")) rs = "system"; /* OpenAI's newer name for the system role */
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant")) {
            ok = fail(pe, 400, "messages", "messages[%zu].role '%s' is not supported (system, user, assistant)", i, rs);
            break;
        }
        texts[i] = message_text(cJSON_GetObjectItemCaseSensitive(m, "content"), i, pe);
        if (!texts[i]) {
            if (!pe->status) fail(pe, 500, NULL, "out of memory");
            ok = 0;
            break;
        }
        cm[i] = (ternlm_chat_message){rs, texts[i]};
    }
    size_t count = 0;
    ternlm_error err = {0};
    ternlm_chat_render_options opt = {1, -1};
    if (ok) ok = chat_thinking(h, body, &opt.enable_thinking, pe);
    if (ok) {
        ternlm_chat_tokens_ex(h->model, cm, (size_t)n, &opt, NULL, 0, &count, NULL); /* size probe */
        r->prompt = malloc((count ? count : 1) * sizeof *r->prompt);
        if (!r->prompt) ok = fail(pe, 500, NULL, "out of memory");
        else if (ternlm_chat_tokens_ex(h->model, cm, (size_t)n, &opt, r->prompt, count, &r->n_prompt, &err))
            ok = fail(pe, 400, "messages", "cannot format the conversation: %s", err.message);
    }
    for (int k = 0; texts && k < n; k++) free(texts[k]);
    free(texts);
    free(cm);
    return ok;
}

static int completion_prompt(const srv_http *h, const cJSON *body, srv_request *r, parse_error *pe) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(p->child)) p = p->child;
    if (cJSON_IsString(p)) {
        const size_t len = strlen(p->valuestring);
        size_t count = 0;
        ternlm_error err = {0};
        const int flags = TERNLM_TOKENIZE_ADD_SPECIAL | TERNLM_TOKENIZE_PARSE_SPECIAL;
        ternlm_tokenize(h->model, p->valuestring, len, flags, NULL, 0, &count, NULL);
        if (!(r->prompt = malloc((count ? count : 1) * sizeof *r->prompt))) return fail(pe, 500, NULL, "out of memory");
        if (ternlm_tokenize(h->model, p->valuestring, len, flags, r->prompt, count, &r->n_prompt, &err))
            return fail(pe, 400, "prompt", "cannot tokenize the prompt: %s", err.message);
        return 1;
    }
    if (cJSON_IsArray(p) && (!p->child || cJSON_IsNumber(p->child))) {
        const int n = cJSON_GetArraySize(p);
        const uint32_t n_vocab = ternlm_model_get_info(h->model)->n_vocab;
        if (!(r->prompt = malloc(((size_t)n + 1) * sizeof *r->prompt))) return fail(pe, 500, NULL, "out of memory");
        for (const cJSON *t = p->child; t; t = t->next) {
            if (!cJSON_IsNumber(t) || t->valuedouble < 0 || t->valuedouble >= n_vocab || t->valuedouble != (int32_t)t->valuedouble)
                return fail(pe, 400, "prompt", "prompt token %zu is not a token id (0..%u)", r->n_prompt, n_vocab - 1);
            r->prompt[r->n_prompt++] = (int32_t)t->valuedouble;
        }
        return 1;
    }
    if (cJSON_IsArray(p)) return fail(pe, 400, "prompt", "one prompt per request: 'prompt' must be a string, [string] or token ids");
    return fail(pe, 400, "prompt", "'prompt' must be a string or an array of token ids");
}

/* Everything a generation request needs, or a 4xx in pe. */
static srv_request *parse_generation(const srv_http *h, const cJSON *body, int kind, parse_error *pe) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (model && !cJSON_IsNull(model) && !cJSON_IsString(model)) return fail(pe, 400, "model", "'model' must be a string"), NULL;
    if (cJSON_IsString(model) && strcmp(model->valuestring, h->model_id) && (!h->cfg.alias || strcmp(model->valuestring, h->cfg.alias)))
        return fail(pe, 404, "model", "the model '%.200s' does not exist; this server serves '%s'", model->valuestring, h->model_id), NULL;
    if (!refuse_unsupported(body, kind == REQ_CHAT, pe)) return NULL;
    srv_request *r = request_new();
    if (!r) return fail(pe, 500, NULL, "out of memory"), NULL;
    r->kind = kind;
    int64_t max_tokens = -1;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
    int ok = get_bool(body, "stream", &r->stream, pe) && get_bool(body, "ignore_eos", &r->ignore_eos, pe) && get_int(body, "max_tokens", 1, 1e9, &max_tokens, pe) &&
             get_int(body, "max_completion_tokens", 1, 1e9, &max_tokens, pe) &&
             get_int(body, "n_predict", -1, 1e9, &max_tokens, pe) && parse_sampling(body, &h->cfg, r, pe) &&
             parse_stop(body, r, pe);
    if (ok && so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) ok = fail(pe, 400, "stream_options", "'stream_options' must be an object");
        else ok = get_bool(so, "include_usage", &r->include_usage, pe);
    }
    if (ok) ok = kind == REQ_CHAT ? chat_prompt(h, body, r, pe) : completion_prompt(h, body, r, pe);
    const uint32_t ctx = engine_slot_ctx(h->engine);
    if (ok && r->n_prompt == 0) ok = fail(pe, 400, "prompt", "the prompt is empty");
    if (ok && r->n_prompt >= ctx)
        ok = fail(pe, 400, kind == REQ_CHAT ? "messages" : "prompt",
                  "the prompt is %zu tokens; the context per slot is %u (leave room for the reply)", r->n_prompt, ctx);
    if (ok && max_tokens > 0 && (uint64_t)max_tokens > ctx - r->n_prompt)
        ok = fail(pe, 400, "max_tokens", "max_tokens %lld is beyond the context: %zu prompt tokens + %lld > %u per slot",
                  (long long)max_tokens, r->n_prompt, (long long)max_tokens, ctx);
    if (!ok) {
        request_release(r);
        return NULL;
    }
    if (max_tokens <= 0) max_tokens = h->cfg.n_predict > 0 ? h->cfg.n_predict : (int64_t)(ctx - r->n_prompt);
    if ((uint64_t)max_tokens > ctx - r->n_prompt) max_tokens = (int64_t)(ctx - r->n_prompt);
    r->max_tokens = (int32_t)max_tokens;
    r->t_arrival = srv_now();
    r->deadline = r->t_arrival + h->cfg.deadline_s;
    return r;
}

/* ---------------------------------------------------------------------------------------------
 * Waiting for the scheduler, watching the client
 * ------------------------------------------------------------------------------------------ */

static int connection_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* A peek at the socket: end-of-file or a reset means the client is gone. */
static int client_gone(int fd) {
    if (fd < 0) return 0;
    char ch;
    const ssize_t n = recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Wait until the request is done, has text beyond `seen`, or (want_admit) got a slot. -1: the client left. */
static int wait_event(srv_request *r, int fd, size_t seen, int want_admit) {
    pthread_mutex_lock(&r->mu);
    while (!r->done && r->text_len == seen && !(want_admit && r->admitted)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT) {
            pthread_mutex_unlock(&r->mu);
            if (client_gone(fd)) {
                request_cancel(r);
                return -1;
            }
            pthread_mutex_lock(&r->mu);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return 0;
}

static const char *finish_name(int finish) { return finish == FINISH_LENGTH ? "length" : "stop"; }

static cJSON *usage_object(const srv_request *r) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)r->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", r->n_generated);
    cJSON_AddNumberToObject(u, "total_tokens", (double)r->n_prompt + r->n_generated);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", r->n_cached);
    return u;
}

static cJSON *response_head(const srv_http *h, const char *id, const char *object, long created) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", h->model_id);
    cJSON_AddStringToObject(o, "system_fingerprint", "ternlm-" TERNLM_VERSION);
    return o;
}

static void make_id(srv_http *h, int kind, char *out, size_t cap) {
    const unsigned long n = __atomic_add_fetch(&h->next_id, 1, __ATOMIC_RELAXED);
    snprintf(out, cap, "%s-%lx%04lx", kind == REQ_CHAT ? "chatcmpl" : "cmpl", (unsigned long)h->created, n);
}

/* ---------------------------------------------------------------------------------------------
 * Streaming (SSE): one "data: {chunk}\n\n" per batch of new text, then the finish chunk and [DONE]
 * ------------------------------------------------------------------------------------------ */

typedef struct stream_ctx {
    srv_http *h;
    srv_request *r;
    int fd, stage; /* 0: role chunk next (chat), 1: content, 2: everything written */
    char id[64];
    long created;
    size_t seen;   /* bytes of r->text already sent */
    char *buf;
    size_t len, off;
    ternlm_reasoning *split; /* thinking models: <think> text goes out as delta.reasoning_content (NULL: off) */
    int split_ok;            /* 0 once an event could not be built */
} stream_ctx;

static int buf_add(stream_ctx *s, const char *text, size_t n) {
    char *p = realloc(s->buf, s->len + n + 1);
    if (!p) return 0;
    s->buf = p;
    memcpy(s->buf + s->len, text, n);
    s->len += n;
    return 1;
}

static int add_event(stream_ctx *s, cJSON *obj) {
    char *json = print_and_free(obj);
    const int ok = json && buf_add(s, "data: ", 6) && buf_add(s, json, strlen(json)) && buf_add(s, "\n\n", 2);
    free(json);
    return ok;
}

/* A chunk with one choice: chat delta {role?, content?} or completion text; finish NULL while streaming. */
static cJSON *chunk(const stream_ctx *s, const char *role, const char *text, size_t len, const char *finish) {
    const int chat = s->r->kind == REQ_CHAT;
    cJSON *o = response_head(s->h, s->id, chat ? "chat.completion.chunk" : "text_completion", s->created);
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice);
    cJSON_AddNumberToObject(choice, "index", 0);
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, text ? text : "", len);
        copy[len] = 0;
    }
    if (chat) {
        cJSON *delta = cJSON_AddObjectToObject(choice, "delta");
        if (role) cJSON_AddStringToObject(delta, "role", role);
        if (text && copy) cJSON_AddStringToObject(delta, "content", copy);
    } else {
        cJSON_AddStringToObject(choice, "text", copy ? copy : "");
    }
    free(copy);
    cJSON_AddNullToObject(choice, "logprobs");
    if (finish) cJSON_AddStringToObject(choice, "finish_reason", finish);
    else cJSON_AddNullToObject(choice, "finish_reason");
    return o;
}

/* The reasoning splitter's output as chunks: delta.reasoning_content or delta.content (llama-server's shape). */
static int split_event(void *user, int is_reasoning, const char *text, size_t len) {
    stream_ctx *s = user;
    cJSON *o = chunk(s, NULL, is_reasoning ? NULL : text, len, NULL);
    char *copy = is_reasoning ? malloc(len + 1) : NULL;
    if (copy) {
        memcpy(copy, text, len);
        copy[len] = 0;
        cJSON *delta = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0), "delta");
        cJSON_AddStringToObject(delta, "reasoning_content", copy);
        free(copy);
    }
    if ((is_reasoning && !copy) || !add_event(s, o)) s->split_ok = 0;
    return 0;
}

static int text_events(stream_ctx *s, const char *text, size_t n, int final) {
    if (!s->split) return !n || add_event(s, chunk(s, NULL, text, n, NULL));
    ternlm_reasoning_feed(s->split, text, n, split_event, s);
    if (final) ternlm_reasoning_flush(s->split, split_event, s);
    return s->split_ok;
}

/* Whether a chat request's reply is split: the request's reasoning_format, else the server's; only for models whose
 * template writes <think> blocks. -1 (and pe set) for a bad value. */
static int split_reasoning(const srv_http *h, const cJSON *body, int kind, parse_error *pe) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(body, "reasoning_format");
    const char *fmt = h->cfg.reasoning_format;
    if (f && !cJSON_IsNull(f)) {
        if (!cJSON_IsString(f) || (strcmp(f->valuestring, "auto") && strcmp(f->valuestring, "deepseek") && strcmp(f->valuestring, "none")))
            return fail(pe, 400, "reasoning_format", "'reasoning_format' must be \"auto\", \"deepseek\" or \"none\""), -1;
        fmt = f->valuestring;
    }
    return kind == REQ_CHAT && strcmp(fmt, "none") && ternlm_model_thinks(h->model);
}

/* Fill s->buf with what happened since the last call. 0: the client left or memory ran out. */
static int stream_refill(stream_ctx *s) {
    srv_request *r = s->r;
    if (s->stage == 0) {
        s->stage = 1;
        if (r->kind == REQ_CHAT) return add_event(s, chunk(s, "assistant", "", 0, NULL));
    }
    if (wait_event(r, s->fd, s->seen, 0) < 0) return 0;
    pthread_mutex_lock(&r->mu);
    const size_t n = r->text_len - s->seen;
    char *text = n ? malloc(n) : NULL;
    if (text) memcpy(text, r->text + s->seen, n);
    s->seen = r->text_len;
    const int done = r->done, finish = r->finish, status = r->http_status;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", r->error_msg);
    pthread_mutex_unlock(&r->mu);
    int ok = 1;
    if (n || (done && s->split)) ok = (text || !n) && text_events(s, text, n, done);
    free(text);
    if (!ok || !done) return ok;
    if (status) {
        ok = add_event(s, error_object((unsigned)status, NULL, msg));
    } else if (finish == FINISH_NONE) {
        return 0; /* cancelled */
    } else {
        ok = add_event(s, chunk(s, NULL, NULL, 0, finish_name(finish)));
        if (ok && r->include_usage) {
            cJSON *u = response_head(s->h, s->id, r->kind == REQ_CHAT ? "chat.completion.chunk" : "text_completion", s->created);
            cJSON_AddArrayToObject(u, "choices");
            cJSON_AddItemToObject(u, "usage", usage_object(r));
            ok = add_event(s, u);
        }
    }
    s->stage = 2;
    return ok && buf_add(s, "data: [DONE]\n\n", 14);
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    stream_ctx *s = cls;
    while (s->off == s->len) {
        s->off = s->len = 0;
        if (s->stage == 2) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!stream_refill(s)) {
            request_cancel(s->r);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    const size_t n = s->len - s->off < max ? s->len - s->off : max;
    memcpy(out, s->buf + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_ctx *s = cls;
    request_cancel(s->r); /* a no-op when it is done; frees the slot when the client went away */
    request_release(s->r);
    ternlm_reasoning_free(s->split);
    free(s->buf);
    free(s);
}

/* ---------------------------------------------------------------------------------------------
 * Routes
 * ------------------------------------------------------------------------------------------ */

typedef struct split_text {
    stream_ctx bufs[2]; /* only buf/len are used: [0] answer, [1] reasoning */
} split_text;

static int split_collect(void *user, int is_reasoning, const char *text, size_t len) {
    split_text *t = user;
    return !buf_add(&t->bufs[is_reasoning ? 1 : 0], text, len);
}

/* A whole reply as message.content plus message.reasoning_content (when the reply had any). */
static void add_split_message(cJSON *m, const char *text, size_t len) {
    split_text t;
    memset(&t, 0, sizeof t);
    ternlm_reasoning *r = NULL;
    int ok = !ternlm_reasoning_new(0, &r, NULL);
    if (ok) ok = !ternlm_reasoning_feed(r, text, len, split_collect, &t) && !ternlm_reasoning_flush(r, split_collect, &t);
    ternlm_reasoning_free(r);
    for (int i = 0; i < 2; i++) ok = buf_add(&t.bufs[i], "", 1) && ok; /* NUL-terminate */
    cJSON_AddStringToObject(m, "content", ok ? t.bufs[0].buf : text); /* out of memory: the reply unsplit */
    if (!ok) t.bufs[1].len = 0;
    if (ok && t.bufs[1].buf[0]) cJSON_AddStringToObject(m, "reasoning_content", t.bufs[1].buf);
    free(t.bufs[0].buf);
    free(t.bufs[1].buf);
}

static enum MHD_Result generation(srv_http *h, struct MHD_Connection *c, conn_ctx *cc, const cJSON *body, int kind) {
    parse_error pe = {0};
    const int split = split_reasoning(h, body, kind, &pe);
    srv_request *r = split < 0 ? NULL : parse_generation(h, body, kind, &pe);
    if (!r) return send_error(c, pe.status, pe.param, "%s", pe.msg);
    if (engine_submit(h->engine, r)) {
        request_release(r);
        return send_error(c, 503, NULL, engine_draining(h->engine) ? "the server is shutting down"
                                                                   : "all slots are busy and the queue is full; retry later");
    }
    __atomic_add_fetch(&h->inflight, 1, __ATOMIC_SEQ_CST);
    cc->counted = 1;
    const int fd = connection_fd(c);
    char id[64];
    make_id(h, kind, id, sizeof id);
    const long created = (long)time(NULL);
    if (wait_event(r, fd, 0, r->stream) < 0) { /* the client left while it waited */
        request_release(r);
        return MHD_NO;
    }
    pthread_mutex_lock(&r->mu);
    const int failed = r->done && r->http_status;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", r->error_msg);
    const int status = r->http_status;
    pthread_mutex_unlock(&r->mu);
    if (failed) {
        request_release(r);
        return send_error(c, (unsigned)status, NULL, "%s", msg);
    }
    if (r->stream) {
        stream_ctx *s = calloc(1, sizeof *s);
        if (!s) {
            request_release(r);
            return MHD_NO;
        }
        *s = (stream_ctx){h, r, fd, 0, {0}, created, 0, NULL, 0, 0, NULL, 1};
        snprintf(s->id, sizeof s->id, "%s", id);
        if (split && ternlm_reasoning_new(0, &s->split, NULL)) {
            stream_free(s);
            return MHD_NO;
        }
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, s, stream_free);
        if (!resp) {
            stream_free(s);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        const enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return rc;
    }
    while (1) { /* non-streaming: wait for the end */
        pthread_mutex_lock(&r->mu);
        const int done = r->done;
        const size_t seen = r->text_len;
        pthread_mutex_unlock(&r->mu);
        if (done) break;
        if (wait_event(r, fd, seen, 0) < 0) {
            request_release(r);
            return MHD_NO;
        }
    }
    if (r->http_status || r->finish == FINISH_NONE) {
        const unsigned st = r->http_status ? (unsigned)r->http_status : 503;
        snprintf(msg, sizeof msg, "%s", r->http_status ? r->error_msg : "the request was cancelled");
        request_release(r);
        return send_error(c, st, NULL, "%s", msg);
    }
    cJSON *o = response_head(h, id, kind == REQ_CHAT ? "chat.completion" : "text_completion", created);
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice);
    cJSON_AddNumberToObject(choice, "index", 0);
    if (kind == REQ_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(choice, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        if (split) add_split_message(m, r->text ? r->text : "", r->text_len);
        else cJSON_AddStringToObject(m, "content", r->text ? r->text : "");
    } else {
        cJSON_AddStringToObject(choice, "text", r->text ? r->text : "");
    }
    cJSON_AddNullToObject(choice, "logprobs");
    cJSON_AddStringToObject(choice, "finish_reason", finish_name(r->finish));
    cJSON_AddItemToObject(o, "usage", usage_object(r));
    request_release(r);
    return send_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result tokenize(srv_http *h, struct MHD_Connection *c, const cJSON *body) {
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(body, "content");
    parse_error pe = {0};
    int add_special = 0, with_pieces = 0;
    if (!cJSON_IsString(content)) return send_error(c, 400, "content", "'content' must be a string");
    if (!get_bool(body, "add_special", &add_special, &pe) || !get_bool(body, "with_pieces", &with_pieces, &pe))
        return send_error(c, pe.status, pe.param, "%s", pe.msg);
    const size_t len = strlen(content->valuestring);
    const int flags = TERNLM_TOKENIZE_PARSE_SPECIAL | (add_special ? TERNLM_TOKENIZE_ADD_SPECIAL : 0);
    size_t n = 0;
    ternlm_tokenize(h->model, content->valuestring, len, flags, NULL, 0, &n, NULL);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    ternlm_error err = {0};
    if (!ids) return send_error(c, 500, NULL, "out of memory");
    if (ternlm_tokenize(h->model, content->valuestring, len, flags, ids, n, &n, &err)) {
        free(ids);
        return send_error(c, 400, "content", "cannot tokenize: %s", err.message);
    }
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "tokens");
    for (size_t i = 0; i < n; i++) {
        if (!with_pieces) {
            cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
            continue;
        }
        char piece[256];
        int pl = ternlm_token_piece(h->model, ids[i], TERNLM_DETOK_SPECIAL, piece, sizeof piece - 1);
        if (pl < 0) pl = 0;
        if (pl > (int)sizeof piece - 1) pl = (int)sizeof piece - 1;
        piece[pl] = 0;
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "id", ids[i]);
        cJSON_AddStringToObject(t, "piece", piece);
        cJSON_AddItemToArray(arr, t);
    }
    free(ids);
    return send_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result detokenize(srv_http *h, struct MHD_Connection *c, const cJSON *body) {
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(body, "tokens");
    if (!cJSON_IsArray(toks)) return send_error(c, 400, "tokens", "'tokens' must be an array of token ids");
    const int n = cJSON_GetArraySize(toks);
    const uint32_t n_vocab = ternlm_model_get_info(h->model)->n_vocab;
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (!ids) return send_error(c, 500, NULL, "out of memory");
    int k = 0;
    for (const cJSON *t = toks->child; t; t = t->next, k++)
        if (!cJSON_IsNumber(t) || t->valuedouble < 0 || t->valuedouble >= n_vocab || t->valuedouble != (int32_t)t->valuedouble) {
            free(ids);
            return send_error(c, 400, "tokens", "tokens[%d] is not a token id (0..%u)", k, n_vocab - 1);
        } else {
            ids[k] = (int32_t)t->valuedouble;
        }
    size_t len = 0;
    ternlm_detokenize(h->model, ids, (size_t)n, 0, NULL, 0, &len, NULL);
    char *text = malloc(len + 1);
    ternlm_error err = {0};
    if (!text || ternlm_detokenize(h->model, ids, (size_t)n, 0, text, len + 1, &len, &err)) {
        free(ids);
        free(text);
        return send_error(c, 500, NULL, "cannot detokenize: %s", err.message);
    }
    free(ids);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "content", text);
    free(text);
    return send_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result models(srv_http *h, struct MHD_Connection *c) {
    const ternlm_model_info *mi = ternlm_model_get_info(h->model);
    cJSON *o = cJSON_CreateObject(), *m = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "data"), m);
    cJSON_AddStringToObject(m, "id", h->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)h->created);
    cJSON_AddStringToObject(m, "owned_by", "ternlm");
    cJSON *meta = cJSON_AddObjectToObject(m, "meta");
    cJSON_AddStringToObject(meta, "arch", mi->arch);
    cJSON_AddNumberToObject(meta, "n_vocab", mi->n_vocab);
    cJSON_AddNumberToObject(meta, "n_ctx_train", mi->n_ctx_train);
    cJSON_AddNumberToObject(meta, "n_ctx_slot", engine_slot_ctx(h->engine));
    cJSON_AddNumberToObject(meta, "n_params", (double)mi->n_params);
    cJSON_AddNumberToObject(meta, "size", (double)mi->weight_bytes);
    return send_json(c, MHD_HTTP_OK, o);
}

/* Constant-time comparison of the Authorization header with "Bearer KEY". */
static int authorized(const srv_http *h, struct MHD_Connection *c) {
    if (!h->cfg.api_key) return 1;
    const char *got = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!got || strncmp(got, "Bearer ", 7)) return 0;
    got += 7;
    const size_t a = strlen(got), b = strlen(h->cfg.api_key);
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < b; i++) diff |= (unsigned char)h->cfg.api_key[i] ^ (unsigned char)(i < a ? got[i] : 0);
    return diff == 0;
}

static int path_is(const char *url, const char *a) {
    return !strcmp(url, a) || (!strncmp(url, "/v1", 3) && !strcmp(url + 3, a));
}

static enum MHD_Result route(srv_http *h, struct MHD_Connection *c, const char *url, const char *method, conn_ctx *cc) {
    const int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    const int ready = __atomic_load_n(&h->ready, __ATOMIC_ACQUIRE);
    if (path_is(url, "/health")) {
        if (!get) return send_error(c, 405, NULL, "use GET for %s", url);
        if (!ready) return send_error(c, 503, NULL, "Loading model");
        return send_text(c, 200, "application/json", "{\"status\":\"ok\"}", 15, 0);
    }
    static const char *k_post[] = {"/chat/completions", "/completions", "/tokenize", "/detokenize"};
    int known_post = 0;
    for (size_t i = 0; i < sizeof k_post / sizeof *k_post; i++) known_post |= path_is(url, k_post[i]);
    const int known_get = path_is(url, "/models") || !strcmp(url, "/metrics");
    if (!known_post && !known_get) return send_error(c, 404, NULL, "no route %s %s", method, url);
    if ((known_post && !post) || (known_get && !get)) return send_error(c, 405, NULL, "use %s for %s", known_post ? "POST" : "GET", url);
    if (!ready) return send_error(c, 503, NULL, "Loading model");
    if (!strcmp(url, "/metrics")) {
        size_t len = 0;
        char *m = engine_metrics(h->engine, &len);
        if (!m) return MHD_NO;
        const enum MHD_Result rc = send_text(c, 200, "text/plain; version=0.0.4", m, len, 0);
        free(m);
        return rc;
    }
    if (known_get) return models(h, c);
    if (cc->too_big) return send_error(c, 413, NULL, "the request body is over the %zu-byte limit", h->cfg.body_limit);
    const char *end = NULL;
    cJSON *body = cc->body ? cJSON_ParseWithLengthOpts(cc->body, cc->len, &end, 0) : NULL;
    if (!body) return send_error(c, 400, NULL, "the body is not valid JSON%s", cc->body ? "" : " (it is empty)");
    if (!cJSON_IsObject(body)) {
        cJSON_Delete(body);
        return send_error(c, 400, NULL, "the body must be a JSON object");
    }
    enum MHD_Result rc;
    if (path_is(url, "/chat/completions")) rc = generation(h, c, cc, body, REQ_CHAT);
    else if (path_is(url, "/completions")) rc = generation(h, c, cc, body, REQ_COMPLETION);
    else if (path_is(url, "/tokenize")) rc = tokenize(h, c, body);
    else rc = detokenize(h, c, body);
    cJSON_Delete(body);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    srv_http *h = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) { /* headers are in: check what can be checked before reading the body */
        if (!(cc = calloc(1, sizeof *cc))) return MHD_NO;
        *con_cls = cc;
        if (!path_is(url, "/health") && !authorized(h, c))
            return send_error(c, 401, NULL, "missing or wrong API key (send Authorization: Bearer KEY)");
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > h->cfg.body_limit)
            return send_error(c, 413, NULL, "the request body is over the %zu-byte limit", h->cfg.body_limit);
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cc->too_big && cc->len + *upload_size > h->cfg.body_limit) {
            cc->too_big = 1;
            free(cc->body);
            cc->body = NULL;
            cc->len = cc->cap = 0;
        }
        if (!cc->too_big) {
            if (cc->len + *upload_size + 1 > cc->cap) {
                size_t cap = cc->cap ? cc->cap : 4096;
                while (cap < cc->len + *upload_size + 1) cap *= 2;
                char *p = realloc(cc->body, cap);
                if (!p) return MHD_NO;
                cc->body = p;
                cc->cap = cap;
            }
            memcpy(cc->body + cc->len, upload, *upload_size);
            cc->len += *upload_size;
            cc->body[cc->len] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return route(h, c, url, method, cc);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c, (void)toe;
    srv_http *h = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) return;
    if (cc->counted) __atomic_sub_fetch(&h->inflight, 1, __ATOMIC_SEQ_CST);
    free(cc->body);
    free(cc);
    *con_cls = NULL;
}

srv_http *http_start(const srv_config *cfg, char *err, size_t err_cap) {
    srv_http *h = calloc(1, sizeof *h);
    if (!h) return snprintf(err, err_cap, "out of memory"), NULL;
    h->cfg = *cfg;
    h->created = (long)time(NULL);
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    const struct sockaddr *addr;
    if (inet_pton(AF_INET, cfg->host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)cfg->port);
        addr = (const struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, cfg->host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)cfg->port);
        addr = (const struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        free(h);
        return snprintf(err, err_cap, "--host %s is not a numeric IPv4 or IPv6 address", cfg->host), NULL;
    }
    h->daemon = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, h,
                                 MHD_OPTION_SOCK_ADDR, addr,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->timeout_s,
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, cfg->header_limit,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                                 MHD_OPTION_END);
    if (!h->daemon) {
        free(h);
        return snprintf(err, err_cap, "cannot listen on %s:%d (%s)", cfg->host, cfg->port, strerror(errno)), NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : cfg->port;
    return h;
}

int http_port(const srv_http *h) { return h->port; }

void http_set_ready(srv_http *h, ternlm_model *model, srv_engine *engine, const char *model_id) {
    h->model = model;
    h->engine = engine;
    snprintf(h->model_id, sizeof h->model_id, "%s", model_id);
    __atomic_store_n(&h->ready, 1, __ATOMIC_RELEASE);
}

void http_quiesce(srv_http *h) {
    const MHD_socket s = MHD_quiesce_daemon(h->daemon);
    if (s != MHD_INVALID_SOCKET) close(s);
}

int http_inflight(srv_http *h) { return __atomic_load_n(&h->inflight, __ATOMIC_SEQ_CST); }

void http_stop(srv_http *h) {
    if (!h) return;
    MHD_stop_daemon(h->daemon);
    free(h);
}
