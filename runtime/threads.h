/* A small persistent thread pool: run one task on every thread and wait for all of them. */
#ifndef TERNLM_THREADS_H
#define TERNLM_THREADS_H

typedef void (*tl_task_fn)(void *ctx, int ith, int nth);
typedef struct tl_pool tl_pool;

/* n_threads <= 1 (or a build without threads) gives a pool that runs tasks inline. NULL on failure. */
tl_pool *tl_pool_new(int n_threads);
void tl_pool_free(tl_pool *p);
int tl_pool_size(const tl_pool *p);
/* Calls fn(ctx, i, n) for i in 0..n-1, one per thread (the caller is thread 0), and returns when all are done. */
void tl_pool_run(tl_pool *p, tl_task_fn fn, void *ctx);

#endif
