/* Shared by the libFuzzer targets: exercise a loaded model through the public API as a host would. */
#ifndef TERNLM_FUZZ_COMMON_H
#define TERNLM_FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ternlm.h"

/* Metadata, tensor table, tokenizer round trip, the file's chat template, and one token through a small model. */
static void fuzz_exercise(ternlm_model *m) {
    char buf[256];
    for (uint64_t i = 0; i < ternlm_model_meta_count(m); i++) {
        ternlm_model_meta_key(m, i, buf, sizeof buf);
        ternlm_model_meta_value_text(m, i, buf, sizeof buf);
    }
    ternlm_tensor_info ti;
    for (uint32_t i = 0; i < ternlm_model_tensor_count(m); i++) ternlm_model_tensor(m, i, &ti);
    const ternlm_model_info *info = ternlm_model_get_info(m);
    static const char text[] = "Hello <|eot_id|> wor\xC3\xA9ld <s>\xFF 123";
    int32_t ids[256];
    size_t n = 0, len;
    if (ternlm_tokenize(m, text, sizeof text - 1, TERNLM_TOKENIZE_ADD_SPECIAL | TERNLM_TOKENIZE_PARSE_SPECIAL, ids, 256, &n, NULL) ==
        TERNLM_OK)
        ternlm_detokenize(m, ids, n, TERNLM_DETOK_SPECIAL, buf, sizeof buf, &len, NULL);
    const ternlm_chat_message msgs[] = {{"system", "Be brief."}, {"user", "Hi <|im_start|>"}, {"assistant", "Hey"}};
    ternlm_chat_template_render(m, NULL, msgs, 3, 1, buf, sizeof buf, &len, NULL);
    ternlm_chat_tokens(m, msgs, 3, 1, ids, 256, &n, NULL);
    if (info->n_embd <= 1024 && info->n_ff <= 4096 && info->n_layer <= 8 && info->n_vocab <= 65536) {
        ternlm_session *s = NULL;
        ternlm_session_params sp = ternlm_session_params_default();
        sp.n_ctx = 8;
        sp.n_threads = 1;
        if (ternlm_session_new(m, &sp, &s, NULL) == TERNLM_OK) {
            const int32_t tok[2] = {0, info->n_vocab > 1 ? 1 : 0};
            if (ternlm_session_eval(s, tok, 2, TERNLM_LOGITS_LAST, NULL) == TERNLM_OK) {
                ternlm_sampler_params p = ternlm_sampler_params_default();
                p.seed = 1;
                ternlm_sampler *smp = NULL;
                if (ternlm_sampler_new(&p, info->n_vocab, &smp, NULL) == TERNLM_OK) {
                    ternlm_sampler_sample(smp, ternlm_session_logits(s, -1));
                    ternlm_sampler_free(smp);
                }
            }
            ternlm_session_free(s);
        }
    }
}

#endif
