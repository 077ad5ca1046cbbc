/* ternlm-server (also `ternlm serve`): flags, start-up and the SIGTERM drain.
 * Flag spellings follow llama-server and bitnet.cpp's run_inference_server.py; flags that make no
 * sense here are accepted and reported as ignored. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "server.h"

#if defined(TERNLM_EMBEDDED_MODEL)
extern const unsigned char ternlm_default_model[], ternlm_default_model_end[];
#endif

typedef enum { F_INT, F_FLOAT, F_STR, F_SIZE, F_U64, F_IGNORE_VALUE, F_IGNORE_FLAG } flag_kind;

typedef struct flag {
    const char *names; /* spellings separated by '|' */
    flag_kind kind;
    void *ptr;
    const char *help;
} flag;

static volatile sig_atomic_t g_signals;

static void on_signal(int sig) {
    (void)sig;
    if (g_signals++) _Exit(1); /* a second signal: stop at once */
}

static int name_matches(const char *names, const char *arg) {
    const size_t n = strlen(arg);
    for (const char *p = names; *p;) {
        const char *bar = strchr(p, '|');
        const size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, arg, n)) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

static void usage(const flag *flags, size_t n, FILE *f) {
    fprintf(f, "usage: ternlm-server [-m MODEL] [--host 127.0.0.1] [--port 8080] [-c CTX] [-t THREADS] [-np SLOTS]\n"
               "                     [--api-key KEY] [--timeout S] ...   (also: ternlm serve ...)\n\n"
               "An OpenAI-compatible HTTP server: POST /v1/chat/completions, /v1/completions, /tokenize, /detokenize;\n"
               "GET /v1/models, /health, /metrics. Requests share each pass over the weights (continuous batching).\n\noptions:\n");
    for (size_t i = 0; i < n; i++)
        if (flags[i].help) fprintf(f, "  %-34s %s\n", flags[i].names, flags[i].help);
    fprintf(f, "\naccepted for llama-server / run_inference_server.py compatibility and ignored:\n");
    for (size_t i = 0; i < n; i++)
        if (!flags[i].help) fprintf(f, "  %-34s %s\n", flags[i].names, (const char *)flags[i].ptr);
}

static int parse_value(const flag *fl, const char *arg, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (fl->kind) {
    case F_INT: {
        const long x = strtol(v, &end, 10);
        if (*end || errno || x < -1 || x > 1000000000L) break;
        *(int *)fl->ptr = (int)x;
        return 1;
    }
    case F_FLOAT: {
        const float x = strtof(v, &end);
        if (*end || errno) break;
        *(float *)fl->ptr = x;
        return 1;
    }
    case F_SIZE: {
        const unsigned long long x = strtoull(v, &end, 10);
        if (*end || errno || x == 0) break;
        *(size_t *)fl->ptr = (size_t)x;
        return 1;
    }
    case F_U64: {
        const unsigned long long x = strtoull(v, &end, 10);
        if (*end || errno) break;
        *(uint64_t *)fl->ptr = (uint64_t)x;
        return 1;
    }
    case F_STR: *(const char **)fl->ptr = v; return 1;
    case F_IGNORE_VALUE: fprintf(stderr, "ternlm-server: ignoring %s %s (%s)\n", arg, v, (const char *)fl->ptr); return 1;
    default: break;
    }
    fprintf(stderr, "ternlm-server: bad value '%s' for %s\n", v, arg);
    return 0;
}

/* 0 ok, 1 help printed, 2 usage error */
static int parse_flags(int argc, char **argv, srv_config *cfg) {
    const flag flags[] = {
        {"-m|--model", F_STR, &cfg->model_path, "GGUF model file (default: the embedded tiny story model)"},
        {"--host", F_STR, &cfg->host, "address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)"},
        {"--port", F_INT, &cfg->port, "TCP port (default 8080; 0 picks a free one, printed at start)"},
        {"-c|--ctx-size", F_INT, &cfg->n_ctx, "total context, shared by the slots (default: trained context x slots)"},
        {"-t|--threads", F_INT, &cfg->n_threads, "threads (default: physical cores)"},
        {"-np|--parallel", F_INT, &cfg->n_slots, "slots: sequences evaluated together (default 4)"},
        {"-n|--n-predict", F_INT, &cfg->n_predict, "max_tokens for requests that give none (default -1: fill the slot)"},
        {"--temp|--temperature", F_FLOAT, &cfg->sampling.temperature, "default temperature (0.8)"},
        {"--top-k", F_INT, &cfg->sampling.top_k, "default top_k (40)"},
        {"--top-p", F_FLOAT, &cfg->sampling.top_p, "default top_p (0.95)"},
        {"--min-p", F_FLOAT, &cfg->sampling.min_p, "default min_p (0.05)"},
        {"--repeat-penalty", F_FLOAT, &cfg->sampling.repeat_penalty, "default repeat penalty (1 = off)"},
        {"-s|--seed", F_U64, &cfg->sampling.seed, "default seed for requests without one (default: random per request)"},
        {"-a|--alias", F_STR, &cfg->alias, "another model name clients may ask for"},
        {"--head-quant", F_STR, &cfg->head_quant, "re-quantize an F16 head at load: q8_0, i8 (int8 rows; a multi-stream step's head costs far less) or i4 (int4 rows: fewer bytes, larger logit change)"},
        {"--api-key", F_STR, &cfg->api_key, "require Authorization: Bearer KEY (all routes but /health)"},
        {"-to|--timeout", F_INT, &cfg->timeout_s, "seconds a connection may stay idle (slow clients; default 60)"},
        {"--deadline", F_INT, &cfg->deadline_s, "seconds a request may take, queue wait included (default 600)"},
        {"--queue", F_INT, &cfg->max_queue, "requests that may wait for a slot before 503 (default 64)"},
        {"-b|--batch-size", F_INT, &cfg->step_tokens, "tokens per step: decode tokens + prompt chunks (default 64)"},
        {"--prefill-alone", F_INT, &cfg->prefill_alone, "1: a prompt's last chunk runs without decode tokens, at most two such steps in a row (default); 0: never"},
        {"--join-below", F_INT, &cfg->join_below, "a second prompt joins a step whole only while the step holds fewer tokens (default 0: never)"},
        {"--alone-max", F_INT, &cfg->alone_max, "most --prefill-alone steps in a row before the decode tokens get a step (default 2)"},
        {"--fill-tile", F_INT, &cfg->fill_tile, "pending prompt tokens fill each step up to a multiple of N tokens, the GEMM's tile (default 8; 0: off)"},
        {"--admit-wait", F_INT, &cfg->admit_wait_ms, "ms to wait, after a step that ended a request, for its client's next request (default 10; 0: off)"},
        {"--body-limit", F_SIZE, &cfg->body_limit, "largest request body in bytes (default 1048576)"},
        {"--header-limit", F_SIZE, &cfg->header_limit, "memory per connection for headers, bytes (default 32768)"},
        {"--max-messages", F_INT, &cfg->max_messages, "most chat messages per request (default 512)"},
        {"--max-connections", F_INT, &cfg->max_connections, "simultaneous connections (default 128)"},
        {"--reasoning-format", F_STR, &cfg->reasoning_format, "auto|deepseek: thinking models' <think> to reasoning_content (default); none"},
        {"--reasoning-budget", F_INT, &cfg->reasoning_budget, "-1: thinking models think (default); 0: enable_thinking = false"},
        {"-ngl|--n-gpu-layers|--gpu-layers", F_IGNORE_VALUE, "the server runs on the CPU", NULL},
        {"-ub|--ubatch-size", F_IGNORE_VALUE, "the micro-batch is fixed at 64 tokens", NULL},
        {"-tb|--threads-batch", F_IGNORE_VALUE, "one thread count for prompts and generation", NULL},
        {"-p|--prompt", F_IGNORE_VALUE, "prompts come with each request", NULL},
        {"--chat-template", F_IGNORE_VALUE, "the model's own chat format is used", NULL},
        {"-cb|--cont-batching", F_IGNORE_FLAG, "continuous batching is always on", NULL},
        {"--metrics", F_IGNORE_FLAG, "/metrics is always on", NULL},
        {"-fa|--flash-attn", F_IGNORE_FLAG, "not applicable", NULL},
        {"--mlock|--no-mmap|--no-webui|--log-disable", F_IGNORE_FLAG, "not applicable", NULL},
    };
    const size_t n = sizeof flags / sizeof *flags;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(flags, n, stdout);
            return 1;
        }
        const flag *fl = NULL;
        for (size_t k = 0; k < n && !fl; k++)
            if (name_matches(flags[k].names, a)) fl = &flags[k];
        if (!fl) {
            fprintf(stderr, "ternlm-server: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (fl->kind == F_IGNORE_FLAG) {
            fprintf(stderr, "ternlm-server: ignoring %s (%s)\n", a, (const char *)fl->ptr);
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ternlm-server: %s needs a value\n", a);
            return 2;
        }
        if (!parse_value(fl, a, argv[++i])) return 2;
    }
    if (cfg->n_slots < 1 || cfg->n_slots > 256) return fprintf(stderr, "ternlm-server: -np must be 1..256\n"), 2;
    if (cfg->port < 0 || cfg->port > 65535) return fprintf(stderr, "ternlm-server: --port must be 0..65535\n"), 2;
    if (cfg->n_ctx < 0 || cfg->n_threads < 0 || cfg->timeout_s < 1 || cfg->deadline_s < 1 || cfg->max_queue < 0 ||
        cfg->step_tokens < 1 || cfg->max_messages < 1 || cfg->max_connections < 1 ||
        (cfg->prefill_alone != 0 && cfg->prefill_alone != 1) || cfg->alone_max < 1 || cfg->fill_tile < 0 || cfg->join_below < 0 ||
        cfg->fill_tile > 64 || cfg->admit_wait_ms < 0 || cfg->admit_wait_ms > 1000)
        return fprintf(stderr, "ternlm-server: -c, -t must be >= 0; --timeout, --deadline, -b, --max-*, --alone-max >= 1; "
                               "--queue, --join-below >= 0; --prefill-alone 0 or 1; --fill-tile 0..64; --admit-wait 0..1000\n"), 2;
    if (cfg->header_limit < 4096) return fprintf(stderr, "ternlm-server: --header-limit must be at least 4096\n"), 2;
    if (cfg->head_quant && strcmp(cfg->head_quant, "q8_0") && strcmp(cfg->head_quant, "i8") && strcmp(cfg->head_quant, "i4"))
        return fprintf(stderr, "ternlm-server: --head-quant must be q8_0, i8 or i4\n"), 2;
    if (cfg->api_key && !*cfg->api_key) return fprintf(stderr, "ternlm-server: --api-key must not be empty\n"), 2;
    if (strcmp(cfg->reasoning_format, "auto") && strcmp(cfg->reasoning_format, "deepseek") && strcmp(cfg->reasoning_format, "none"))
        return fprintf(stderr, "ternlm-server: --reasoning-format must be auto, deepseek or none\n"), 2;
    if (cfg->reasoning_budget != -1 && cfg->reasoning_budget != 0)
        return fprintf(stderr, "ternlm-server: --reasoning-budget must be -1 (unrestricted) or 0 (no thinking)\n"), 2;
    return 0;
}

static void defaults(srv_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->host = "127.0.0.1";
    cfg->port = 8080;
    cfg->n_slots = 4;
    cfg->n_predict = -1;
    cfg->timeout_s = 60;
    cfg->deadline_s = 600;
    cfg->max_queue = 64;
    cfg->step_tokens = 64;
    cfg->prefill_alone = 1;
    cfg->alone_max = 2;
    cfg->fill_tile = 8;
    cfg->admit_wait_ms = 10;
    cfg->body_limit = 1u << 20;
    cfg->header_limit = 32768;
    cfg->max_messages = 512;
    cfg->max_connections = 128;
    cfg->reasoning_format = "auto";
    cfg->reasoning_budget = -1;
    cfg->sampling = ternlm_sampler_params_default();
    cfg->sampling.seed = TERNLM_SEED_RANDOM;
}

static int open_model(const srv_config *cfg, ternlm_model **m, char *id, size_t id_cap) {
    ternlm_error err = {0};
    ternlm_model_params mp = ternlm_model_params_default();
    mp.head_quant_q8_0 = cfg->head_quant && !strcmp(cfg->head_quant, "q8_0");
    mp.head_quant_i8 = cfg->head_quant && !strcmp(cfg->head_quant, "i8");
    mp.head_quant_i4 = cfg->head_quant && !strcmp(cfg->head_quant, "i4");
    if (!cfg->model_path) {
#if defined(TERNLM_EMBEDDED_MODEL)
        snprintf(id, id_cap, "ternlm-tinystories");
        if (!ternlm_model_open_memory(ternlm_default_model, (size_t)(ternlm_default_model_end - ternlm_default_model), &mp, m, &err))
            return 1;
#else
        fprintf(stderr, "ternlm-server: no model given (use -m FILE); this build has no embedded default model\n");
        return 0;
#endif
    } else {
        const char *slash = strrchr(cfg->model_path, '/');
        snprintf(id, id_cap, "%s", slash ? slash + 1 : cfg->model_path);
        if (!ternlm_model_open_file(cfg->model_path, &mp, m, &err)) return 1;
    }
    fprintf(stderr, "ternlm-server: %s\n", err.message);
    return 0;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
    srv_config cfg;
    defaults(&cfg);
    const int pr = parse_flags(argc, argv, &cfg);
    if (pr) return pr == 1 ? 0 : 2;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    char err[512];
    srv_http *http = http_start(&cfg, err, sizeof err); /* /health answers 503 while the model loads */
    if (!http) {
        fprintf(stderr, "ternlm-server: %s\n", err);
        return 1;
    }
    printf("ternlm-server: listening on http://%s:%d\n", cfg.host, http_port(http));
    fflush(stdout);
    ternlm_model *model = NULL;
    srv_engine *engine = NULL;
    char id[256];
    if (!open_model(&cfg, &model, id, sizeof id) || engine_start(&engine, model, &cfg, err, sizeof err)) {
        if (model) fprintf(stderr, "ternlm-server: %s\n", err);
        http_stop(http);
        ternlm_model_free(model);
        return 1;
    }
    http_set_ready(http, model, engine, id);
    printf("ternlm-server: ready: model %s, %d slots of %u positions, %s kernels\n", id, cfg.n_slots,
           engine_slot_ctx(engine), ternlm_cpu_kernels());
    fflush(stdout);
    while (!g_signals) sleep_ms(50);
    /* drain: no new connections or generations; what is in flight finishes (bounded by the deadline) */
    printf("ternlm-server: draining\n");
    fflush(stdout);
    engine_drain(engine);
    http_quiesce(http);
    const double give_up = srv_now() + cfg.deadline_s + 5;
    while ((!engine_idle(engine) || http_inflight(http) > 0) && srv_now() < give_up) sleep_ms(20);
    http_stop(http);
    engine_stop(engine);
    ternlm_model_free(model);
    printf("ternlm-server: stopped\n");
    return 0;
}
