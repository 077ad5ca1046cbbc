/* Built when ternlm has no GPU backend: --gpu fails with a clear message. */
#include <stdlib.h>

#include "internal.h"
#include "session.h"

ternlm_status tl_session_new_gpu(ternlm_model *m, const ternlm_session_params *p, uint32_t n_seq, ternlm_session **out,
                                 ternlm_error *err) {
    (void)m;
    (void)p;
    (void)n_seq;
    *out = NULL;
    return tl_fail(err, TERNLM_ERR_BACKEND, "this build of ternlm has no GPU backend (configure with -DTERNLM_CUDA=ON)");
}

void tl_session_free_gpu(ternlm_session *s) { (void)s; }

ternlm_status tl_gpu_eval(ternlm_session *s, const int32_t *tokens, size_t n, int which, ternlm_error *err) {
    (void)s;
    (void)tokens;
    (void)n;
    (void)which;
    return tl_fail(err, TERNLM_ERR_BACKEND, "no GPU backend");
}

ternlm_status tl_gpu_eval_ubatch(ternlm_session *s, const int32_t *tokens, int T, const int *logit_rows,
                                 int n_logit_rows, float *const *dst, ternlm_error *err) {
    (void)s, (void)tokens, (void)T, (void)logit_rows, (void)n_logit_rows, (void)dst;
    return tl_fail(err, TERNLM_ERR_BACKEND, "no GPU backend");
}

void *tl_gpu_host_alloc(size_t bytes) { return malloc(bytes); }
void tl_gpu_host_free(void *p) { free(p); }
