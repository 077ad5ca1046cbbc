/* ternlm-server: an OpenAI-compatible HTTP server over one ternlm_batch.
 *
 * Threads: libmicrohttpd runs one thread per connection; those threads parse and validate requests,
 * queue them (engine_submit) and stream their results. One scheduler thread (engine.c) owns the model's
 * batch: it admits queued requests into free slots, evaluates every active sequence together each step
 * (decode tokens plus chunks of new prompts), samples, and hands text back through each request's mutex. */
#ifndef TERNLM_SERVER_H
#define TERNLM_SERVER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "ternlm.h"

#define SRV_MAX_STOP 4 /* OpenAI allows up to 4 stop strings */

typedef struct srv_config {
    const char *model_path, *host, *api_key, *alias;
    const char *head_quant; /* NULL, "q8_0" or "i8": an F16 head re-quantized at load (ternlm run's --head-quant) */
    int port, n_ctx, n_threads, n_slots, n_predict, max_queue, step_tokens, max_messages, max_connections;
    int prefill_alone;    /* a prompt's last chunk runs without the decode tokens (once between two decode steps) */
    int join_below;       /* a later pending prompt joins a step whole only while the step holds fewer tokens */
    int alone_max;        /* most prefill_alone steps in a row before the decode tokens get a step */
    int fill_tile;        /* pending prompt tokens fill a step up to a multiple of this (the GEMM's token tile); 0: off */
    int admit_wait_ms;    /* after a step that ended a request, wait this long for the next request; 0: off */
    int timeout_s;        /* idle read/write timeout of a connection (slow clients) */
    int deadline_s;       /* the longest a request may take, queue wait included */
    size_t body_limit, header_limit;
    ternlm_sampler_params sampling; /* defaults for requests that leave a parameter out */
    const char *reasoning_format;   /* "auto"/"deepseek": <think> blocks of thinking models go to reasoning_content; "none" */
    int reasoning_budget;           /* -1: thinking as the template says; 0: enable_thinking = false for every request */
} srv_config;

enum { REQ_COMPLETION, REQ_CHAT };
enum { FINISH_NONE, FINISH_STOP, FINISH_LENGTH };

/* One generation request. Fields above `mu` are fixed before submission; those below belong to the mutex. */
typedef struct srv_request {
    int kind, stream, include_usage, ignore_eos;
    int32_t *prompt;
    size_t n_prompt;
    int32_t max_tokens;
    ternlm_sampler_params sampling;
    char *stop[SRV_MAX_STOP];
    size_t n_stop;
    double t_arrival, deadline; /* seconds on the monotonic clock */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *text;        /* generated text released so far (stop strings held back until they cannot match) */
    size_t text_len, text_cap;
    int admitted;      /* the scheduler gave it a slot */
    int done, finish;  /* FINISH_* once done */
    int http_status;   /* non-zero: failed with this status and error_msg */
    char error_msg[512];
    uint32_t n_cached, n_generated; /* prompt tokens reused from the slot's cache; tokens generated */
    double t_first_token;
    int cancelled;     /* the client went away: the scheduler frees the slot at its next step */
    int refs;          /* the HTTP side and the scheduler each hold one */
} srv_request;

typedef struct srv_engine srv_engine;

/* Start the scheduler thread over an opened model. */
int engine_start(srv_engine **out, ternlm_model *model, const srv_config *cfg, char *err, size_t err_cap);
/* Queue a request (the engine takes a reference). Returns 0, or 503 when the queue is full or draining. */
int engine_submit(srv_engine *e, srv_request *r);
/* Mark a request abandoned by its client; the slot is freed at the next step. */
void request_cancel(srv_request *r);
void request_release(srv_request *r);
srv_request *request_new(void);
/* Stop admitting new requests (SIGTERM); engine_idle() is then 1 once every request has finished. */
void engine_drain(srv_engine *e);
int engine_idle(srv_engine *e);
int engine_draining(srv_engine *e);
void engine_stop(srv_engine *e);
uint32_t engine_slot_ctx(const srv_engine *e);
/* Prometheus text for /metrics (malloc'd). */
char *engine_metrics(srv_engine *e, size_t *len);

double srv_now(void);

#endif
