/* The chat API the CLI's conversation mode stands on: ternlm_chat_fit (the context shift: oldest turns dropped,
 * the system prompt kept, what is kept evaluated again) and ternlm_chat_set_template (names and Jinja text). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ternlm.h"

static ternlm_chat *new_chat(ternlm_model *m, uint32_t n_ctx, const char *system, ternlm_session **s, ternlm_sampler **smp) {
    ternlm_error err = {0};
    ternlm_session_params sp = ternlm_session_params_default();
    sp.n_ctx = n_ctx;
    ternlm_sampler_params gp = ternlm_sampler_params_default();
    gp.temperature = 0;
    ternlm_chat *chat = NULL;
    CHECK(!ternlm_session_new(m, &sp, s, &err) && !ternlm_sampler_new(&gp, ternlm_model_get_info(m)->n_vocab, smp, &err) &&
              !ternlm_chat_new(*s, *smp, system, &chat, &err),
          "chat setup: %s", err.message);
    return chat;
}

static size_t turn_tokens(ternlm_chat *c, const char *text) {
    size_t n = 0;
    ternlm_chat_begin_turn(c, text, NULL, 0, &n, NULL); /* a count: nothing changes */
    return n;
}

static void test_fit(ternlm_model *m) {
    ternlm_session *s = NULL;
    ternlm_sampler *smp = NULL;
    ternlm_chat *c = new_chat(m, 96, "You are terse.", &s, &smp);
    if (!c) return;
    ternlm_error err = {0};
    ternlm_generate_params gp = {0};
    gp.max_tokens = 8;
    gp.ignore_eos = 1;
    const char *msg = "Tell me about the weather today";
    size_t dropped = 0, total_dropped = 0;
    /* fresh: nothing to drop */
    CHECK(ternlm_chat_fit(c, msg, 8, &dropped, &err) == TERNLM_OK && dropped == 0, "fit on an empty chat: %s", err.message);
    const size_t first_turn = turn_tokens(c, msg); /* the system prompt plus one message, from position 0 */
    int turns = 0;
    for (; turns < 12 && !total_dropped; turns++) {
        CHECK(ternlm_chat_fit(c, msg, 8, &dropped, &err) == TERNLM_OK, "fit, turn %d: %s", turns, err.message);
        total_dropped += dropped;
        const uint32_t pos_before = ternlm_session_pos(s);
        const uint64_t eval_before = ternlm_session_tokens_evaluated(s);
        ternlm_generate_stats st;
        CHECK(ternlm_chat_send(c, msg, &gp, &st, &err) == TERNLM_OK, "send, turn %d: %s", turns, err.message);
        CHECK(ternlm_session_pos(s) <= 96, "turn %d: position %u", turns, ternlm_session_pos(s));
        if (dropped) { /* the shift rewound the session: what was kept (system prompt included) is evaluated again */
            CHECK(pos_before == 0, "after dropping, the session starts over (pos %u)", pos_before);
            CHECK(st.n_prompt > first_turn, "the kept turns are evaluated again: %u prompt tokens, one turn is %zu",
                  st.n_prompt, first_turn);
            CHECK(ternlm_session_tokens_evaluated(s) - eval_before == (uint64_t)ternlm_session_pos(s),
                  "a shifted turn evaluates everything it keeps, from position 0");
        }
    }
    CHECK(total_dropped >= 1, "a 96-token context must shift within %d turns", turns);
    /* after the shift and a reset the system prompt is still there: the first turn costs what it cost at the start */
    ternlm_chat_reset(c);
    CHECK(turn_tokens(c, msg) == first_turn, "the system prompt survives the shift and reset: %zu vs %zu tokens",
          turn_tokens(c, msg), first_turn);
    /* a message that cannot fit even alone */
    char *huge = malloc(4000);
    if (huge) {
        for (int i = 0; i < 3999; i++) huge[i] = i % 5 == 4 ? ' ' : "word"[i % 5];
        huge[3999] = 0;
        CHECK(ternlm_chat_fit(c, huge, 8, &dropped, &err) == TERNLM_ERR_CONTEXT_FULL && strstr(err.message, "context holds 96"),
              "a message larger than the context: %s", err.message);
        free(huge);
    }
    CHECK(ternlm_chat_fit(NULL, msg, 0, NULL, &err) == TERNLM_ERR_ARG, "fit(NULL) is an argument error");
    ternlm_chat_free(c);
    ternlm_sampler_free(smp);
    ternlm_session_free(s);
}

static void test_templates(ternlm_model *m) {
    ternlm_session *s = NULL;
    ternlm_sampler *smp = NULL;
    ternlm_chat *c = new_chat(m, 256, NULL, &s, &smp);
    if (!c) return;
    ternlm_error err = {0};
    CHECK(ternlm_chat_set_template(c, "chatml", &err) == TERNLM_ERR_ARG && strstr(err.message, "header tokens"),
          "chatml on a Llama 3 vocabulary: %s", err.message);
    CHECK(ternlm_chat_set_template(c, "{% macro x() %}{% endmacro %}", &err) == TERNLM_ERR_TEMPLATE && strstr(err.message, "macro"),
          "a bad template fails at once: %s", err.message);
    const size_t auto_n = turn_tokens(c, "Hi");
    CHECK(ternlm_chat_set_template(c, "llama3", &err) == TERNLM_OK, "llama3: %s", err.message);
    const size_t llama3_n = turn_tokens(c, "Hi");
    CHECK(llama3_n > 0, "llama3 renders");
    CHECK(ternlm_chat_set_template(c, "{% for m in messages %}<<{{ m.role }}>>{{ m.content }}{% endfor %}"
                                      "{% if add_generation_prompt %}<<assistant>>{% endif %}", &err) == TERNLM_OK,
          "a Jinja template: %s", err.message);
    int32_t want[32];
    size_t want_n = 0;
    ternlm_tokenize(m, "<<user>>Hi<<assistant>>", 23, 0, want, 32, &want_n, &err);
    CHECK(turn_tokens(c, "Hi") == want_n, "the Jinja template's tokens: %zu, want %zu", turn_tokens(c, "Hi"), want_n);
    CHECK(ternlm_chat_set_template(c, "auto", &err) == TERNLM_OK && turn_tokens(c, "Hi") == auto_n, "back to auto");
    ternlm_chat_free(c);
    ternlm_sampler_free(smp);
    ternlm_session_free(s);
}

int main(void) {
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    CHECK(ternlm_model_open_file(TERNLM_SHARED_DIR "/fixtures/b158-llama3-i2s.gguf", NULL, &m, &err) == TERNLM_OK, "%s", err.message);
    if (!m) return check_summary();
    test_fit(m);
    test_templates(m);
    ternlm_model_free(m);
    return check_summary();
}
