/* The scheduler: one thread owns the batch. Each step it admits queued requests into free slots (the
 * slot whose cached tokens share the longest prefix with the prompt, so only the rest is evaluated),
 * lets a pending prompt copy a longer prefix from any other slot (adopt_prefix), queues one decode token
 * for every generating slot and the oldest pending prompts in the step's remaining token budget,
 * evaluates them in one ternlm_batch_eval, then samples for every slot that got logits and releases its
 * new text to the waiting HTTP thread. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

typedef struct slot {
    srv_request *req;      /* NULL: free */
    size_t fed;            /* prompt tokens in the KV cache or queued */
    int32_t next;          /* the sampled token to evaluate next */
    int has_next;
    ternlm_sampler *smp;
    ternlm_text_stream *ts;
    char *gen;             /* every byte generated for this request */
    size_t gen_len, gen_cap, released;
    int stopped;           /* a stop string matched: gen is cut at it */
    double admitted_at, last_used;
} slot;

struct srv_engine {
    ternlm_model *model;
    ternlm_batch *batch;
    srv_config cfg;
    uint32_t n_slots, slot_ctx;
    slot *slots;
    pthread_t thread;

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;
    srv_request **queue; /* ring of waiting requests */
    size_t q_head, q_len, q_cap;
    int draining, stopping;
    uint32_t processing;
    /* metrics */
    uint64_t prompt_tokens, predicted_tokens, n_decode, busy_slot_sum, requests_total, requests_rejected, kv_tokens;
    uint64_t prompt_tokens_copied; /* prompt tokens taken from another slot's KV cache (adopt_prefix) */
    double prompt_seconds, predicted_seconds;
    int alone_run;    /* steps in a row that held the decode tokens back for a prompt (cfg.prefill_alone) */
    FILE *step_log;   /* TERNLM_STEP_LOG: one line per step (when it started, the gap before it, its tokens, times) */
    double last_step_end;
};

double srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------------------------------------
 * Requests (shared by an HTTP thread and the scheduler, freed by whichever lets go last)
 * ------------------------------------------------------------------------------------------ */

srv_request *request_new(void) {
    srv_request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->refs = 1;
    return r;
}

void request_release(srv_request *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    const int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left) return;
    free(r->prompt);
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->text);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

void request_cancel(srv_request *r) {
    pthread_mutex_lock(&r->mu);
    r->cancelled = 1;
    pthread_mutex_unlock(&r->mu);
}

static int request_is_cancelled(srv_request *r) {
    pthread_mutex_lock(&r->mu);
    const int c = r->cancelled;
    pthread_mutex_unlock(&r->mu);
    return c;
}

/* Append released text; the caller holds r->mu. Out of memory ends the request with a 500. */
static void request_append(srv_request *r, const char *text, size_t len) {
    if (r->text_len + len + 1 > r->text_cap) {
        size_t cap = r->text_cap ? r->text_cap : 256;
        while (cap < r->text_len + len + 1) cap *= 2;
        char *p = realloc(r->text, cap);
        if (!p) {
            r->http_status = 500;
            snprintf(r->error_msg, sizeof r->error_msg, "out of memory for the generated text");
            return;
        }
        r->text = p;
        r->text_cap = cap;
    }
    memcpy(r->text + r->text_len, text, len);
    r->text_len += len;
    r->text[r->text_len] = 0;
}

static void request_fail(srv_request *r, int status, const char *msg) {
    pthread_mutex_lock(&r->mu);
    r->http_status = status;
    snprintf(r->error_msg, sizeof r->error_msg, "%s", msg);
    r->done = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* ---------------------------------------------------------------------------------------------
 * Slots
 * ------------------------------------------------------------------------------------------ */

static int gen_append(slot *s, const char *text, size_t len) {
    if (s->gen_len + len + 1 > s->gen_cap) {
        size_t cap = s->gen_cap ? s->gen_cap : 256;
        while (cap < s->gen_len + len + 1) cap *= 2;
        char *p = realloc(s->gen, cap);
        if (!p) return 0;
        s->gen = p;
        s->gen_cap = cap;
    }
    memcpy(s->gen + s->gen_len, text, len);
    s->gen_len += len;
    s->gen[s->gen_len] = 0;
    return 1;
}

/* How many trailing bytes of gen could still be the start of a stop string (held back from the client). */
static size_t stop_holdback(const slot *s) {
    const srv_request *r = s->req;
    size_t hold = 0;
    for (size_t i = 0; i < r->n_stop; i++) {
        const size_t sl = strlen(r->stop[i]);
        for (size_t k = sl - 1; k > hold; k--)
            if (k <= s->gen_len && !memcmp(s->gen + s->gen_len - k, r->stop[i], k)) {
                hold = k;
                break;
            }
    }
    return hold;
}

/* Cut gen at the earliest stop string, if one occurs in the part not yet released. */
static int find_stop(slot *s) {
    const srv_request *r = s->req;
    size_t best = (size_t)-1;
    for (size_t i = 0; i < r->n_stop; i++) {
        const char *hit = strstr(s->gen + s->released, r->stop[i]);
        if (hit && (size_t)(hit - s->gen) < best) best = (size_t)(hit - s->gen);
    }
    if (best == (size_t)-1) return 0;
    s->gen_len = best;
    s->gen[best] = 0;
    return 1;
}

static void release_text(slot *s, size_t upto) {
    if (upto <= s->released) return;
    srv_request *r = s->req;
    pthread_mutex_lock(&r->mu);
    request_append(r, s->gen + s->released, upto - s->released);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    s->released = upto;
}

/* The request is over: release what is left, wake its HTTP thread, free the slot (its KV cache stays for reuse). */
static void finish_slot(srv_engine *e, slot *s, int finish) {
    srv_request *r = s->req;
    if (!s->stopped && s->ts) {
        size_t len = 0;
        const char *rest = ternlm_text_stream_flush(s->ts, &len);
        if (len) gen_append(s, rest, len);
    }
    if (e->step_log) /* before the text goes out, so a client that read its last chunk finds the line written */
        fprintf(e->step_log, "%.6f request arrived %.6f admitted %.6f first %.6f prompt %zu cached %u generated %u\n",
                srv_now(), r->t_arrival, s->admitted_at, r->t_first_token, r->n_prompt, r->n_cached, r->n_generated);
    release_text(s, s->gen_len);
    pthread_mutex_lock(&r->mu);
    r->done = 1;
    r->finish = finish;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    request_release(r);
    ternlm_sampler_free(s->smp);
    ternlm_text_stream_free(s->ts);
    s->smp = NULL;
    s->ts = NULL;
    s->req = NULL;
    s->has_next = 0;
    s->last_used = srv_now();
    pthread_mutex_lock(&e->mu);
    e->processing--;
    pthread_mutex_unlock(&e->mu);
}

/* Shared prefixes shorter than this are not worth a slot's cache (BOS and a word or two): they neither choose the
 * slot a request overwrites nor make a prompt wait for another's evaluation. */
#define SHARE_MIN 8

/* The free slot whose cached tokens share the longest prefix with the prompt (counted from SHARE_MIN tokens on);
 * ties go to the least recently used, so a short match never overwrites a long conversation another request may
 * still copy from. */
static uint32_t pick_slot(srv_engine *e, const srv_request *r, uint32_t *keep) {
    uint32_t best = UINT32_MAX, best_score = 0;
    for (uint32_t i = 0; i < e->n_slots; i++) {
        if (e->slots[i].req) continue;
        const uint32_t k = ternlm_batch_seq_prefix(e->batch, i, r->prompt, r->n_prompt), score = k >= SHARE_MIN ? k : 0;
        if (best == UINT32_MAX || score > best_score ||
            (score == best_score && e->slots[i].last_used < e->slots[best].last_used)) {
            best = i;
            best_score = score;
            *keep = k;
        }
    }
    return best;
}

static int start_slot(srv_engine *e, uint32_t i, srv_request *r, uint32_t keep) {
    slot *s = &e->slots[i];
    ternlm_error err = {0};
    if (ternlm_batch_seq_rewind(e->batch, i, keep, &err) ||
        ternlm_sampler_new(&r->sampling, ternlm_model_get_info(e->model)->n_vocab, &s->smp, &err)) {
        request_fail(r, 500, err.message);
        return 0;
    }
    s->ts = ternlm_text_stream_new(e->model, 0);
    if (!s->ts) {
        ternlm_sampler_free(s->smp);
        s->smp = NULL;
        request_fail(r, 500, "out of memory");
        return 0;
    }
    for (size_t k = 0; k < r->n_prompt; k++) ternlm_sampler_accept(s->smp, r->prompt[k]); /* as ternlm_generate does */
    s->req = r;
    s->fed = keep;
    s->has_next = 0;
    s->gen_len = s->released = 0;
    s->stopped = 0;
    s->admitted_at = srv_now();
    pthread_mutex_lock(&r->mu);
    r->admitted = 1;
    r->n_cached = keep;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return 1;
}

/* Under e->mu: drop expired or abandoned waiting requests, then fill free slots from the queue. */
static void admit(srv_engine *e) {
    const double now = srv_now();
    size_t kept = 0;
    for (size_t k = 0; k < e->q_len; k++) {
        srv_request *r = e->queue[(e->q_head + k) % e->q_cap];
        if (request_is_cancelled(r)) {
            request_release(r);
        } else if (now > r->deadline) {
            request_fail(r, 503, "the request waited past its deadline for a free slot");
            request_release(r);
        } else {
            e->queue[(e->q_head + kept++) % e->q_cap] = r;
        }
    }
    e->q_len = kept;
    while (e->q_len) {
        uint32_t keep = 0;
        const uint32_t i = pick_slot(e, e->queue[e->q_head], &keep);
        if (i == UINT32_MAX) break;
        srv_request *r = e->queue[e->q_head];
        e->q_head = (e->q_head + 1) % e->q_cap;
        e->q_len--;
        if (start_slot(e, i, r, keep)) e->processing++;
        else request_release(r);
    }
}

/* ---------------------------------------------------------------------------------------------
 * One step
 * ------------------------------------------------------------------------------------------ */

/* Samples slot i's next token and streams it, or finishes the request. */
static void on_logits(srv_engine *e, uint32_t i, const float *logits) {
    slot *s = &e->slots[i];
    srv_request *r = s->req;
    const int32_t tok = ternlm_sampler_sample(s->smp, logits);
    ternlm_sampler_accept(s->smp, tok);
    pthread_mutex_lock(&r->mu);
    if (!r->t_first_token) r->t_first_token = srv_now();
    pthread_mutex_unlock(&r->mu);
    if (!r->ignore_eos && ternlm_token_is_eog(e->model, tok)) {
        finish_slot(e, s, FINISH_STOP);
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->n_generated++;
    const uint32_t n_gen = r->n_generated;
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&e->mu); /* counted before finish_slot answers the client, so /metrics read next includes it */
    e->predicted_tokens++;
    pthread_mutex_unlock(&e->mu);
    size_t len = 0;
    const char *piece = ternlm_text_stream_push(s->ts, tok, &len);
    if (len && !gen_append(s, piece, len)) {
        request_fail(r, 500, "out of memory for the generated text");
        finish_slot(e, s, FINISH_NONE);
        return;
    }
    if (r->n_stop && find_stop(s)) {
        s->stopped = 1;
        finish_slot(e, s, FINISH_STOP);
        return;
    }
    if ((int32_t)n_gen >= r->max_tokens || ternlm_batch_seq_pos(e->batch, i) >= e->slot_ctx) {
        finish_slot(e, s, FINISH_LENGTH);
        return;
    }
    release_text(s, s->gen_len - (r->n_stop ? stop_holdback(s) : 0));
    s->next = tok;
    s->has_next = 1;
}

/* Slots in the order they were admitted, so the oldest pending prompt gets the step's budget first. */
static uint32_t prompt_order(srv_engine *e, uint32_t *order) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < e->n_slots; i++)
        if (e->slots[i].req && e->slots[i].fed < e->slots[i].req->n_prompt) order[n++] = i;
    for (uint32_t a = 1; a < n; a++)
        for (uint32_t b = a; b > 0 && e->slots[order[b]].admitted_at < e->slots[order[b - 1]].admitted_at; b--) {
            const uint32_t t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    return n;
}

/* A pending prompt copies the longest prefix another slot holds (busy or free: chat templates and system prompts
 * give requests the same head), so only the rest is evaluated. Called before the slot queues anything this step,
 * when its fed tokens are exactly its slot's position. */
static void adopt_prefix(srv_engine *e, uint32_t i) {
    slot *s = &e->slots[i];
    srv_request *r = s->req;
    uint32_t best = (uint32_t)s->fed, donor = UINT32_MAX;
    for (uint32_t j = 0; j < e->n_slots; j++) {
        if (j == i) continue;
        const uint32_t k = ternlm_batch_seq_prefix(e->batch, j, r->prompt, r->n_prompt);
        if (k > best) best = k, donor = j;
    }
    ternlm_error err = {0};
    if (donor == UINT32_MAX || ternlm_batch_seq_copy(e->batch, i, donor, best, &err)) return; /* else: evaluate it */
    pthread_mutex_lock(&e->mu);
    e->prompt_tokens_copied += best - s->fed; /* the tokens this copy saved evaluating */
    pthread_mutex_unlock(&e->mu);
    s->fed = best;
    pthread_mutex_lock(&r->mu);
    r->n_cached = best;
    pthread_mutex_unlock(&r->mu);
}

/* Prompts that arrive together with the same head: the later ones wait while an earlier pending prompt evaluates
 * at least SHARE_MIN more of the head they share, then copy it (adopt_prefix) instead of evaluating it too. Only
 * earlier prompts are waited for, so the first always proceeds. */
static int waits_for_shared(srv_engine *e, const uint32_t *order, uint32_t k) {
    const slot *s = &e->slots[order[k]];
    const srv_request *r = s->req;
    for (uint32_t a = 0; a < k; a++) {
        const srv_request *o = e->slots[order[a]].req;
        if (!o) continue; /* failed while queueing this step */
        const size_t limit = (o->n_prompt < r->n_prompt ? o->n_prompt : r->n_prompt - 1);
        size_t common = 0;
        while (common < limit && o->prompt[common] == r->prompt[common]) common++;
        if (common >= s->fed + SHARE_MIN && ternlm_batch_seq_pos(e->batch, order[a]) < common) return 1;
    }
    return 0;
}

/* A step's line of the debug log: start (s), idle gap before it, queueing, eval and sampling times (ms), tokens
 * (decode, prompt, and of the prompt tokens those that filled the last tile). */
static void log_step(srv_engine *e, double start, double t0, double t1, uint32_t n_decode, uint32_t n_prompt,
                     uint32_t n_fill) {
    const double end = srv_now();
    if (e->step_log)
        fprintf(e->step_log, "%.6f gap %.3f queue %.3f eval %.3f after %.3f decode %u prompt %u fill %u\n", start,
                e->last_step_end ? (start - e->last_step_end) * 1e3 : 0.0, (t0 - start) * 1e3, (t1 - t0) * 1e3,
                (end - t1) * 1e3, n_decode, n_prompt, n_fill);
    e->last_step_end = end;
}

/* Whether the first pending prompt that may run now finishes within one step's budget. Its step then runs without
 * the decode tokens (prefill_alone): a prompt step is compute-bound, so each decode token lengthens the step that
 * ends with the prompt's first token by about what a prompt token costs; they ride in a later step instead. At most
 * cfg.alone_max steps (default 2) in a row go without them: two prompts that arrive within one step both get a short step, and a
 * run of arriving prompts cannot stall the streams that are generating for longer. */
static int next_prompt_finishes(srv_engine *e, const uint32_t *order, uint32_t n_pending) {
    for (uint32_t k = 0; k < n_pending; k++) {
        if (waits_for_shared(e, order, k)) continue;
        const slot *s = &e->slots[order[k]];
        return s->req->n_prompt - s->fed <= (size_t)e->cfg.step_tokens;
    }
    return 0;
}

/* Queue the next n prompt tokens of slot i (logits when they end the prompt). 0 when the slot failed instead. */
static int queue_prompt(srv_engine *e, uint32_t i, size_t n) {
    slot *s = &e->slots[i];
    ternlm_error err = {0};
    if (ternlm_batch_add(e->batch, i, s->req->prompt + s->fed, n, s->fed + n == s->req->n_prompt, &err)) {
        request_fail(s->req, 500, err.message);
        finish_slot(e, s, FINISH_NONE);
        return 0;
    }
    s->fed += n;
    return 1;
}

/* The GEMMs take the step's tokens in tiles of cfg.fill_tile (8 for the AVX2 and AVX-512 kernels), and a tile that
 * is not full costs about what a full one does (2b4t, AVX2, 2 threads: a 4-token prompt step 164 ms, an 8-token one
 * 168 ms). So a step of n tokens has room for the rest of its last tile at little cost: pending prompt tokens fill
 * it, oldest prompt first, in chunks of any length. They cost no head row unless they end a prompt (whose first
 * token then comes out of this step). Returns the prompt tokens queued. */
static uint32_t fill_tile(srv_engine *e, const uint32_t *order, uint32_t n_pending, uint32_t n_tokens) {
    const uint32_t tile = (uint32_t)e->cfg.fill_tile;
    if (tile < 2 || n_tokens % tile == 0) return 0;
    uint32_t room = tile - n_tokens % tile, added = 0;
    for (uint32_t k = 0; k < n_pending && room; k++) {
        slot *s = &e->slots[order[k]];
        if (!s->req || s->fed >= s->req->n_prompt || waits_for_shared(e, order, k)) continue;
        const size_t left = s->req->n_prompt - s->fed, n = left < room ? left : room;
        if (!queue_prompt(e, order[k], n)) continue;
        room -= (uint32_t)n;
        added += (uint32_t)n;
    }
    return added;
}

static void step(srv_engine *e) {
    ternlm_error err = {0};
    const double now = srv_now();
    uint32_t n_decode = 0, n_prompt = 0, busy = 0;
    for (uint32_t i = 0; i < e->n_slots; i++) {
        slot *s = &e->slots[i];
        if (!s->req) continue;
        if (request_is_cancelled(s->req)) finish_slot(e, s, FINISH_NONE);
        else if (now > s->req->deadline) finish_slot(e, s, FINISH_LENGTH);
    }
    uint32_t order[256];
    const uint32_t n_pending = prompt_order(e, order);
    for (uint32_t k = 0; k < n_pending; k++) adopt_prefix(e, order[k]);
    const int alone = e->cfg.prefill_alone && e->alone_run < e->cfg.alone_max && next_prompt_finishes(e, order, n_pending);
    for (uint32_t i = 0; i < e->n_slots && !alone; i++) {
        slot *s = &e->slots[i];
        if (!s->req || !s->has_next) continue;
        if (ternlm_batch_add(e->batch, i, &s->next, 1, 1, &err)) {
            request_fail(s->req, 500, err.message);
            finish_slot(e, s, FINISH_NONE);
            continue;
        }
        s->has_next = 0;
        n_decode++;
    }
    /* Pending prompts, oldest first, get what the decode tokens leave of the step's budget (at least a quarter of
     * it). Prompt evaluation is compute-bound: when two prompts share a step the older one finishes later than it
     * would alone and the other sooner only by a step's fixed cost. So the oldest takes the budget (in chunks when
     * it is longer), and a later prompt joins only whole and only while the step holds fewer than cfg.join_below
     * tokens (default 0: never; the AVX-512 machine of the third session gained from 32, where a step's fixed
     * cost was 11 prompt tokens' worth; on AVX2 it is 2-3, and a joined pair delays the older prompt by the
     * other's whole time). The rest of the step's last tile is filled either way (fill_tile). */
    const uint32_t small_step = (uint32_t)e->cfg.join_below;
    uint32_t budget = (uint32_t)e->cfg.step_tokens > n_decode ? (uint32_t)e->cfg.step_tokens - n_decode : 0;
    if (budget < (uint32_t)e->cfg.step_tokens / 4 + 1) budget = (uint32_t)e->cfg.step_tokens / 4 + 1;
    for (uint32_t k = 0; k < n_pending && budget; k++) {
        slot *s = &e->slots[order[k]];
        if (waits_for_shared(e, order, k)) continue;
        const size_t left = s->req->n_prompt - s->fed, n = left < budget ? left : budget;
        if (n_prompt && (n < left || n_decode + n_prompt >= small_step)) continue;
        if (queue_prompt(e, order[k], n)) {
            budget -= (uint32_t)n;
            n_prompt += (uint32_t)n;
        }
    }
    const uint32_t n_fill = n_decode + n_prompt ? fill_tile(e, order, n_pending, n_decode + n_prompt) : 0;
    n_prompt += n_fill;
    e->alone_run = alone && n_prompt ? e->alone_run + 1 : 0;
    if (!n_decode && !n_prompt) return;
    const double t0 = srv_now();
    const ternlm_status st = ternlm_batch_eval(e->batch, &err);
    const double t1 = srv_now(), dt = t1 - t0;
    pthread_mutex_lock(&e->mu); /* before any request of this step is answered (see on_logits) */
    e->prompt_tokens += n_prompt;
    pthread_mutex_unlock(&e->mu);
    for (uint32_t i = 0; i < e->n_slots; i++) {
        slot *s = &e->slots[i];
        if (!s->req) continue;
        busy++;
        if (st) {
            request_fail(s->req, 500, err.message);
            finish_slot(e, s, FINISH_NONE);
            continue;
        }
        const float *lg = ternlm_batch_logits(e->batch, i);
        if (lg) on_logits(e, i, lg);
    }
    uint64_t kv = 0;
    for (uint32_t i = 0; i < e->n_slots; i++) kv += ternlm_batch_seq_pos(e->batch, i);
    pthread_mutex_lock(&e->mu);
    const double share = (double)n_prompt / (double)(n_prompt + n_decode); /* the step's time split by token count */
    e->prompt_seconds += dt * share;
    e->predicted_seconds += dt * (1.0 - share);
    e->n_decode++;
    e->busy_slot_sum += busy;
    e->kv_tokens = kv;
    pthread_mutex_unlock(&e->mu);
    log_step(e, now, t0, t1, n_decode, n_prompt, n_fill);
}

static int any_active(const srv_engine *e) {
    for (uint32_t i = 0; i < e->n_slots; i++)
        if (e->slots[i].req) return 1;
    return 0;
}

/* cfg.admit_wait_ms: a client whose request just ended often sends its next one at once (an agent's loop, a
 * pipeline, a benchmark's closed loop), a few ms after the step that ended it; without this wait the next step
 * starts first and the new prompt waits a whole step before its own. So after a step that ended a request, while
 * nothing waits in the queue, the scheduler waits up to admit_wait_ms for an arrival (engine_submit signals it). */
static void await_follow_up(srv_engine *e, uint32_t processing_before) {
    pthread_mutex_lock(&e->mu);
    if (e->processing < processing_before && !e->q_len && !e->draining) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)e->cfg.admit_wait_ms * 1000000L;
        while (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&e->cv, &e->mu, &ts);
    }
    pthread_mutex_unlock(&e->mu);
}

static void *scheduler(void *arg) {
    srv_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        admit(e);
        if (!any_active(e)) {
            if (e->stopping) {
                pthread_mutex_unlock(&e->mu);
                break;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000 * 1000; /* wake up now and then to expire queued deadlines */
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&e->cv, &e->mu, &ts);
            pthread_mutex_unlock(&e->mu);
            continue;
        }
        const uint32_t before = e->processing;
        pthread_mutex_unlock(&e->mu);
        step(e);
        if (e->cfg.admit_wait_ms) await_follow_up(e, before);
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Public side
 * ------------------------------------------------------------------------------------------ */

int engine_start(srv_engine **out, ternlm_model *model, const srv_config *cfg, char *err_buf, size_t err_cap) {
    srv_engine *e = calloc(1, sizeof *e);
    if (!e) return snprintf(err_buf, err_cap, "out of memory"), 1;
    e->model = model;
    e->cfg = *cfg;
    e->n_slots = (uint32_t)cfg->n_slots;
    ternlm_batch_params bp = ternlm_batch_params_default();
    bp.n_seq = e->n_slots;
    bp.n_threads = (uint32_t)cfg->n_threads;
    const uint32_t train = ternlm_model_get_info(model)->n_ctx_train;
    const uint32_t total = cfg->n_ctx > 0 ? (uint32_t)cfg->n_ctx : (train < 4096 ? train : 4096) * e->n_slots;
    bp.n_ctx = total / e->n_slots; /* llama-server's rule: -c is shared by the slots */
    ternlm_error err = {0};
    if (bp.n_ctx < 8) {
        snprintf(err_buf, err_cap, "context %u over %u slots leaves fewer than 8 positions per slot", total, e->n_slots);
        free(e);
        return 1;
    }
    e->q_cap = (size_t)cfg->max_queue + e->n_slots + 1;
    e->queue = calloc(e->q_cap, sizeof *e->queue);
    e->slots = calloc(e->n_slots, sizeof *e->slots);
    if (!e->queue || !e->slots || ternlm_batch_new(model, &bp, &e->batch, &err)) {
        snprintf(err_buf, err_cap, "%s", err.message[0] ? err.message : "out of memory");
        free(e->queue);
        free(e->slots);
        free(e);
        return 1;
    }
    e->slot_ctx = ternlm_batch_n_ctx(e->batch);
    const char *log_path = getenv("TERNLM_STEP_LOG");
    if (log_path && *log_path && !(e->step_log = fopen(log_path, "w")))
        fprintf(stderr, "ternlm-server: TERNLM_STEP_LOG: cannot write %s; no step log\n", log_path);
    if (e->step_log) {
        setvbuf(e->step_log, NULL, _IOLBF, 0); /* readable while the server runs */
        struct timespec rt;
        clock_gettime(CLOCK_REALTIME, &rt); /* lets a reader line the log up with its own wall clock */
        fprintf(e->step_log, "%.6f clock realtime %.6f\n", srv_now(), (double)rt.tv_sec + (double)rt.tv_nsec * 1e-9);
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pthread_create(&e->thread, NULL, scheduler, e)) {
        ternlm_batch_free(e->batch);
        free(e->queue);
        free(e->slots);
        free(e);
        return snprintf(err_buf, err_cap, "cannot start the scheduler thread"), 1;
    }
    *out = e;
    return 0;
}

int engine_submit(srv_engine *e, srv_request *r) {
    pthread_mutex_lock(&e->mu);
    int status = 0;
    if (e->draining || e->stopping) status = 503;
    else if (e->q_len >= (size_t)e->cfg.max_queue + (e->n_slots - e->processing)) status = 503; /* free slots take one each */
    if (status) {
        e->requests_rejected++;
    } else {
        pthread_mutex_lock(&r->mu);
        r->refs++;
        pthread_mutex_unlock(&r->mu);
        e->queue[(e->q_head + e->q_len++) % e->q_cap] = r;
        e->requests_total++;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return status;
}

void engine_drain(srv_engine *e) {
    pthread_mutex_lock(&e->mu);
    e->draining = 1;
    pthread_mutex_unlock(&e->mu);
}

int engine_draining(srv_engine *e) {
    pthread_mutex_lock(&e->mu);
    const int d = e->draining;
    pthread_mutex_unlock(&e->mu);
    return d;
}

int engine_idle(srv_engine *e) {
    pthread_mutex_lock(&e->mu);
    const int idle = e->q_len == 0 && e->processing == 0;
    pthread_mutex_unlock(&e->mu);
    return idle;
}

uint32_t engine_slot_ctx(const srv_engine *e) { return e->slot_ctx; }

void engine_stop(srv_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    e->draining = 1;
    while (e->q_len) { /* nothing new starts: fail whatever still waits */
        srv_request *r = e->queue[e->q_head];
        e->q_head = (e->q_head + 1) % e->q_cap;
        e->q_len--;
        request_fail(r, 503, "the server is shutting down");
        request_release(r);
    }
    for (uint32_t i = 0; i < e->n_slots; i++)
        if (e->slots[i].req) request_cancel(e->slots[i].req);
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    for (uint32_t i = 0; i < e->n_slots; i++) free(e->slots[i].gen);
    ternlm_batch_free(e->batch);
    if (e->step_log) fclose(e->step_log);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e->queue);
    free(e->slots);
    free(e);
}

char *engine_metrics(srv_engine *e, size_t *len) {
    pthread_mutex_lock(&e->mu);
    const double cap = (double)e->n_slots * e->slot_ctx;
    const double pps = e->prompt_seconds > 0 ? (double)e->prompt_tokens / e->prompt_seconds : 0;
    const double tps = e->predicted_seconds > 0 ? (double)e->predicted_tokens / e->predicted_seconds : 0;
    const double busy = e->n_decode ? (double)e->busy_slot_sum / (double)e->n_decode : 0;
    char *out = malloc(8192);
    int n = out ? snprintf(out, 8192,
        "# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.\n# TYPE llamacpp:prompt_tokens_total counter\n"
        "llamacpp:prompt_tokens_total %llu\n"
        "# HELP llamacpp:prompt_seconds_total Prompt process time.\n# TYPE llamacpp:prompt_seconds_total counter\n"
        "llamacpp:prompt_seconds_total %.6f\n"
        "# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.\n# TYPE llamacpp:tokens_predicted_total counter\n"
        "llamacpp:tokens_predicted_total %llu\n"
        "# HELP llamacpp:tokens_predicted_seconds_total Predict process time.\n# TYPE llamacpp:tokens_predicted_seconds_total counter\n"
        "llamacpp:tokens_predicted_seconds_total %.6f\n"
        "# HELP llamacpp:n_decode_total Total number of batch evaluations.\n# TYPE llamacpp:n_decode_total counter\n"
        "llamacpp:n_decode_total %llu\n"
        "# HELP llamacpp:n_busy_slots_per_decode Average number of busy slots per batch evaluation.\n# TYPE llamacpp:n_busy_slots_per_decode gauge\n"
        "llamacpp:n_busy_slots_per_decode %.6f\n"
        "# HELP llamacpp:prompt_tokens_seconds Average prompt throughput in tokens/s.\n# TYPE llamacpp:prompt_tokens_seconds gauge\n"
        "llamacpp:prompt_tokens_seconds %.6f\n"
        "# HELP llamacpp:predicted_tokens_seconds Average generation throughput in tokens/s.\n# TYPE llamacpp:predicted_tokens_seconds gauge\n"
        "llamacpp:predicted_tokens_seconds %.6f\n"
        "# HELP llamacpp:kv_cache_usage_ratio KV-cache usage. 1 means 100 percent usage.\n# TYPE llamacpp:kv_cache_usage_ratio gauge\n"
        "llamacpp:kv_cache_usage_ratio %.6f\n"
        "# HELP llamacpp:kv_cache_tokens KV-cache tokens.\n# TYPE llamacpp:kv_cache_tokens gauge\n"
        "llamacpp:kv_cache_tokens %llu\n"
        "# HELP llamacpp:requests_processing Number of requests processing.\n# TYPE llamacpp:requests_processing gauge\n"
        "llamacpp:requests_processing %u\n"
        "# HELP llamacpp:requests_deferred Number of requests deferred.\n# TYPE llamacpp:requests_deferred gauge\n"
        "llamacpp:requests_deferred %zu\n"
        "# HELP ternlm:requests_total Requests accepted into the queue.\n# TYPE ternlm:requests_total counter\n"
        "ternlm:requests_total %llu\n"
        "# HELP ternlm:requests_rejected_total Requests refused with 503 (queue full or draining).\n# TYPE ternlm:requests_rejected_total counter\n"
        "ternlm:requests_rejected_total %llu\n"
        "# HELP ternlm:slots Sequence slots in the batch.\n# TYPE ternlm:slots gauge\n"
        "ternlm:slots %u\n"
        "# HELP ternlm:prompt_tokens_copied_total Prompt tokens copied from another slot's KV cache instead of evaluated.\n"
        "# TYPE ternlm:prompt_tokens_copied_total counter\n"
        "ternlm:prompt_tokens_copied_total %llu\n",
        (unsigned long long)e->prompt_tokens, e->prompt_seconds, (unsigned long long)e->predicted_tokens,
        e->predicted_seconds, (unsigned long long)e->n_decode, busy, pps, tps, cap > 0 ? (double)e->kv_tokens / cap : 0,
        (unsigned long long)e->kv_tokens, e->processing, e->q_len, (unsigned long long)e->requests_total,
        (unsigned long long)e->requests_rejected, e->n_slots, (unsigned long long)e->prompt_tokens_copied) : 0;
    pthread_mutex_unlock(&e->mu);
    if (out && (n < 0 || n >= 8192)) n = 8191;
    *len = out ? (size_t)n : 0;
    return out;
}
