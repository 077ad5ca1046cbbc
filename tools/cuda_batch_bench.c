/* Aggregate decode speed of a multi-sequence batch on the GPU (issue 15): n_seq sequences each take a prompt, then
 * `steps` decode steps in lockstep (one token per sequence per ternlm_batch_eval, every sequence's logits copied
 * out, as a server does). Prints the prompt and decode rates; the next token is the argmax of the sequence's logits.
 *   cc -std=c11 -O2 -Iruntime/include tools/cuda_batch_bench.c BUILD/libternlm.a -L/usr/local/cuda/lib64 \
 *      -lcudart_static -lstdc++ -lm -lpthread -ldl -lrt -o cuda_batch_bench
 *   cuda_batch_bench MODEL.gguf [n_seq 64] [steps 64] [prompt 64] [n_ctx 512] [gpu 1] [head file|i8|i4]
 * head: the file's head, or an F16 head re-quantized at load (--head-quant i8 / i4). */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ternlm.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int32_t argmax(const float *x, uint32_t n) {
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [n_seq] [steps] [prompt] [n_ctx] [gpu] [head file|i8|i4]\n", argv[0]);
        return 2;
    }
    const uint32_t n_seq = argc > 2 ? (uint32_t)atoi(argv[2]) : 64, steps = argc > 3 ? (uint32_t)atoi(argv[3]) : 64;
    const uint32_t prompt = argc > 4 ? (uint32_t)atoi(argv[4]) : 64, n_ctx = argc > 5 ? (uint32_t)atoi(argv[5]) : 512;
    const int gpu = argc > 6 ? atoi(argv[6]) : 1;
    const char *head = argc > 7 ? argv[7] : "file";
    if (strcmp(head, "file") && strcmp(head, "i8") && strcmp(head, "i4")) {
        fprintf(stderr, "head must be file, i8 or i4 (got %s)\n", head);
        return 2;
    }
    ternlm_model_params mp = ternlm_model_params_default();
    mp.head_quant_i8 = !strcmp(head, "i8");
    mp.head_quant_i4 = !strcmp(head, "i4");
    ternlm_error err = {0};
    ternlm_model *m = NULL;
    if (ternlm_model_open_file(argv[1], &mp, &m, &err)) {
        fprintf(stderr, "open: %s\n", err.message);
        return 1;
    }
    const uint32_t nv = ternlm_model_get_info(m)->n_vocab;
    ternlm_batch_params bp = ternlm_batch_params_default();
    bp.n_seq = n_seq, bp.n_ctx = n_ctx, bp.use_gpu = gpu;
    ternlm_batch *b = NULL;
    if (ternlm_batch_new(m, &bp, &b, &err)) {
        fprintf(stderr, "batch: %s\n", err.message);
        return 1;
    }
    int32_t *ids = malloc((size_t)prompt * sizeof *ids), *next = malloc((size_t)n_seq * sizeof *next);
    if (!ids || !next) return 1;
    int rc = 0;
    for (int round = 0; round < 2 && !rc; round++) { /* the first round warms up (allocations, module load) */
        for (uint32_t q = 0; q < n_seq && !rc; q++) {
            rc = ternlm_batch_seq_rewind(b, q, 0, &err) != TERNLM_OK;
            for (uint32_t i = 0; i < prompt; i++) ids[i] = (int32_t)((7919u * (i + 1) + 104729u * q) % nv);
            rc = rc || ternlm_batch_add(b, q, ids, prompt, 1, &err) != TERNLM_OK;
        }
        const double t0 = now_s();
        rc = rc || ternlm_batch_eval(b, &err) != TERNLM_OK;
        const double t1 = now_s();
        for (uint32_t q = 0; q < n_seq && !rc; q++) next[q] = argmax(ternlm_batch_logits(b, q), nv);
        double t_eval = 0.0;
        const double t2 = now_s();
        for (uint32_t s = 0; s < steps && !rc; s++) {
            for (uint32_t q = 0; q < n_seq && !rc; q++) rc = ternlm_batch_add(b, q, &next[q], 1, 1, &err) != TERNLM_OK;
            const double e0 = now_s();
            rc = rc || ternlm_batch_eval(b, &err) != TERNLM_OK;
            t_eval += now_s() - e0;
            for (uint32_t q = 0; q < n_seq && !rc; q++) next[q] = argmax(ternlm_batch_logits(b, q), nv);
        }
        const double t3 = now_s();
        if (!rc && round == 1)
            printf("%s (head %s): %u sequences, backend %s: prompt %u x %u tokens %.0f tokens/s; decode %u steps: %.0f tokens/s "
                   "aggregate (%.0f counting ternlm_batch_eval alone), %.2f ms a step\n",
                   argv[1], ternlm_model_get_info(m)->head_type, n_seq, ternlm_batch_backend(b), n_seq, prompt, n_seq * prompt / (t1 - t0), steps,
                   n_seq * steps / (t3 - t2), n_seq * steps / t_eval, 1e3 * (t3 - t2) / steps);
    }
    if (rc) fprintf(stderr, "error: %s\n", err.message);
    free(ids), free(next);
    ternlm_batch_free(b);
    ternlm_model_free(m);
    return rc;
}
