/* The generation loop: evaluate the prompt, then sample, stream and feed back one token at a time. */
#include <stdlib.h>

#include "model.h"
#include "platform.h"
#include "session.h"

static int is_stop(const ternlm_session *s, const ternlm_generate_params *gp, int32_t tok) {
    if (!gp->ignore_eos && ternlm_token_is_eog(s->m, tok)) return 1;
    for (size_t i = 0; i < gp->n_stop_tokens; i++)
        if (gp->stop_tokens[i] == tok) return 1;
    return 0;
}

static int emit(ternlm_text_stream *ts, const ternlm_generate_params *gp, int32_t tok) {
    size_t len = 0;
    const char *text = ts ? ternlm_text_stream_push(ts, tok, &len) : "";
    return gp->on_token ? gp->on_token(gp->user, tok, text, len) : 0;
}

ternlm_status ternlm_generate(ternlm_session *s, ternlm_sampler *smp, const int32_t *prompt, size_t n_prompt,
                              const ternlm_generate_params *gp_in, ternlm_generate_stats *stats, ternlm_error *err) {
    if (!s || !smp || (!prompt && n_prompt)) return tl_fail(err, TERNLM_ERR_ARG, "session, sampler and prompt must not be NULL");
    ternlm_generate_params gp = {0};
    if (gp_in) gp = *gp_in;
    ternlm_generate_stats st_local = {0}, *st = stats ? stats : &st_local;
    *st = st_local;
    if (!n_prompt && !s->logits_rows) return tl_fail(err, TERNLM_ERR_ARG, "nothing to continue from: the prompt is empty");

    double t0 = tl_now_seconds();
    for (size_t i = 0; i < n_prompt; i++) ternlm_sampler_accept(smp, prompt[i]);
    ternlm_status rc = ternlm_session_eval(s, prompt, n_prompt, TERNLM_LOGITS_LAST, err);
    if (rc) return rc;
    st->n_prompt = (uint32_t)n_prompt;
    st->prompt_seconds = tl_now_seconds() - t0;

    ternlm_text_stream *ts = ternlm_text_stream_new(s->m, 0);
    t0 = tl_now_seconds();
    st->stopped_by = 0;
    for (int32_t n = 0; gp.max_tokens < 0 || n < gp.max_tokens; n++) {
        if (gp.abort_flag && *gp.abort_flag) {
            st->stopped_by = 3;
            rc = tl_fail(err, TERNLM_ERR_ABORTED, "generation aborted");
            break;
        }
        const int32_t tok = ternlm_sampler_sample(smp, ternlm_session_logits(s, -1));
        ternlm_sampler_accept(smp, tok);
        if (is_stop(s, &gp, tok)) {
            st->stopped_by = 1;
            break;
        }
        st->n_generated++;
        if (emit(ts, &gp, tok)) {
            st->stopped_by = 2;
            break;
        }
        if (s->pos >= s->n_ctx) {
            st->stopped_by = 4;
            break;
        }
        if ((rc = ternlm_session_eval(s, &tok, 1, TERNLM_LOGITS_LAST, err))) break;
    }
    if (ts) {
        size_t len;
        const char *rest = ternlm_text_stream_flush(ts, &len);
        if (len && gp.on_token) gp.on_token(gp.user, -1, rest, len); /* an unfinished character, as U+FFFD */
        ternlm_text_stream_free(ts);
    }
    st->generate_seconds = tl_now_seconds() - t0;
    return rc;
}
