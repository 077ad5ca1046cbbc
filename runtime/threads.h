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

/* Work shared out at run time: chunks 0..n_chunks-1 go to whichever thread asks next, so a thread that is
 * preempted (the server's HTTP thread, another process on the same cores) or meets slower rows does not hold
 * the others up at the join. fn(ctx, chunk, ith) runs once per chunk; ith names the calling thread (for its
 * scratch). Chunks must be independent: which thread runs one, and in what order, must not change its result. */
typedef void (*tl_chunk_fn)(void *ctx, long chunk, int ith);
void tl_pool_run_chunks(tl_pool *p, long n_chunks, tl_chunk_fn fn, void *ctx);

#endif
