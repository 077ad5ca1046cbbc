/* Built when ternlm has no GPU backend: --gpu fails with a clear message. */
#include "internal.h"
#include "session.h"

ternlm_status tl_session_new_gpu(ternlm_model *m, const ternlm_session_params *p, ternlm_session **out,
                                 ternlm_error *err) {
    (void)m;
    (void)p;
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
