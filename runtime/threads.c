#include "threads.h"

#include <stdlib.h>

#if defined(TERNLM_NO_THREADS)

struct tl_pool { int n; };
tl_pool *tl_pool_new(int n_threads) {
    (void)n_threads;
    tl_pool *p = calloc(1, sizeof *p);
    if (p) p->n = 1;
    return p;
}
void tl_pool_free(tl_pool *p) { free(p); }
int tl_pool_size(const tl_pool *p) { return p ? p->n : 1; }
void tl_pool_run(tl_pool *p, tl_task_fn fn, void *ctx) {
    (void)p;
    fn(ctx, 0, 1);
}
void tl_pool_run_chunks(tl_pool *p, long n_chunks, tl_chunk_fn fn, void *ctx) {
    (void)p;
    for (long c = 0; c < n_chunks; c++) fn(ctx, c, 0);
}

#else

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

/* Workers spin briefly on the generation counter (decode runs hundreds of small tasks per token, so a
 * sleep/wake per task would dominate), then sleep on the condition variable. */
#define SPIN_ITERS 20000

struct tl_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_uint gen;
    atomic_int pending;
    atomic_int stop;
    tl_task_fn fn;
    void *ctx;
};

typedef struct worker_arg {
    tl_pool *p;
    int ith;
} worker_arg;

static void *worker(void *arg) {
    worker_arg *wa = arg;
    tl_pool *p = wa->p;
    const int ith = wa->ith;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen && !atomic_load(&p->stop)) {
            if (++spins < SPIN_ITERS) continue;
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = g;
        p->fn(p->ctx, ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
}

tl_pool *tl_pool_new(int n_threads) {
    tl_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads < 1 ? 1 : n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, 0);
    if (p->n == 1) return p;
    p->threads = calloc((size_t)p->n, sizeof *p->threads);
    if (!p->threads) { free(p); return NULL; }
    for (int i = 1; i < p->n; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa || pthread_create(&p->threads[i], NULL, worker, wa ? (wa->p = p, wa->ith = i, wa) : NULL) != 0) {
            free(wa);
            p->n = i; /* keep the threads that started */
            break;
        }
    }
    return p;
}

void tl_pool_free(tl_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    free(p->threads);
    free(p);
}

int tl_pool_size(const tl_pool *p) { return p ? p->n : 1; }

void tl_pool_run(tl_pool *p, tl_task_fn fn, void *ctx) {
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) sched_yield();
}

typedef struct chunk_job {
    atomic_long next;
    long n;
    tl_chunk_fn fn;
    void *ctx;
} chunk_job;

/* Relaxed is enough for the counter: each chunk index is handed out once, and the pool's own join orders the
 * chunks' writes before the caller reads them. */
static void chunk_task(void *c, int ith, int nth) {
    chunk_job *j = c;
    (void)nth;
    for (long k; (k = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->n;) j->fn(j->ctx, k, ith);
}

void tl_pool_run_chunks(tl_pool *p, long n_chunks, tl_chunk_fn fn, void *ctx) {
    if (!p || p->n == 1 || n_chunks <= 1) {
        for (long c = 0; c < n_chunks; c++) fn(ctx, c, 0);
        return;
    }
    chunk_job job = {.n = n_chunks, .fn = fn, .ctx = ctx};
    atomic_init(&job.next, 0);
    tl_pool_run(p, chunk_task, &job);
}

#endif
