/* Chat: the Jinja subset on real templates (the b158 fixture's, Llama 3's, ChatML), its errors, and multi-turn
 * conversations that evaluate only new tokens (counted through the session). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ternlm.h"

static const char *k_llama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
static const char *k_chatml =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

static void expect_render(const ternlm_model *m, const char *tmpl, const ternlm_chat_message *msgs, size_t n, int gen,
                          const char *want, const char *label) {
    char buf[2048];
    size_t len = 0;
    ternlm_error err = {0};
    const ternlm_status st = ternlm_chat_template_render(m, tmpl, msgs, n, gen, buf, sizeof buf, &len, &err);
    CHECK(st == TERNLM_OK, "%s: %s", label, err.message);
    CHECK(st || !strcmp(buf, want), "%s: rendered\n[%s]\nwant\n[%s]", label, buf, want);
}

static int count_tokens(void *user, int32_t tok, const char *text, size_t len) {
    (void)tok, (void)text, (void)len;
    ++*(int *)user;
    return 0;
}

int main(void) {
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    CHECK(ternlm_model_open_file(TERNLM_SHARED_DIR "/fixtures/b158-llama3-i2s.gguf", NULL, &m, &err) == TERNLM_OK, "%s", err.message);
    if (!m) return check_summary();
    const ternlm_chat_message one[] = {{"user", "Hi there"}};
    const ternlm_chat_message two[] = {{"system", "  Be brief. "}, {"user", "Hello"}, {"assistant", "Hey!"}, {"user", "Bye"}};
    expect_render(m, NULL, one, 1, 0, "<|begin_of_text|>Human: Hi there\n\nBITNETAssistant: <|end_of_text|>", "b158 fixture template");
    expect_render(m, NULL, two, 4, 0,
                  "<|begin_of_text|>Human: Hello\n\nBITNETAssistant: <|end_of_text|>Hey!<|end_of_text|>Human: Bye\n\nBITNETAssistant: <|end_of_text|>",
                  "b158 fixture template, several turns");
    expect_render(m, k_llama3, two, 4, 1,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHey!<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                  "Llama 3 template");
    expect_render(m, k_chatml, one, 1, 1, "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", "ChatML template");
    {
        char buf[256];
        size_t len;
        const ternlm_status st = ternlm_chat_template_render(m, "{% macro x() %}{% endmacro %}", one, 1, 0, buf, sizeof buf, &len, &err);
        CHECK(st == TERNLM_ERR_TEMPLATE && strstr(err.message, "macro"), "unsupported construct must be named: %s", err.message);
        ternlm_chat_template_render(m, "{{ raise_exception('no') }}", one, 1, 0, buf, sizeof buf, &len, &err);
        CHECK(strstr(err.message, "raise_exception") != NULL, "unknown function named: %s", err.message);
    }

    /* multi-turn: each turn evaluates only new tokens; nothing is evaluated twice */
    ternlm_session_params sp = ternlm_session_params_default();
    sp.n_ctx = 512;
    ternlm_session *s = NULL;
    ternlm_sampler *smp = NULL;
    ternlm_sampler_params gp0 = ternlm_sampler_params_default();
    gp0.temperature = 0;
    ternlm_chat *chat = NULL;
    CHECK(!ternlm_session_new(m, &sp, &s, &err) && !ternlm_sampler_new(&gp0, ternlm_model_get_info(m)->n_vocab, &smp, &err) &&
              !ternlm_chat_new(s, smp, "You are terse.", &chat, &err),
          "chat setup: %s", err.message);
    if (chat) {
        int pieces = 0;
        ternlm_generate_params gp = {0};
        gp.max_tokens = 6;
        gp.on_token = count_tokens;
        gp.user = &pieces;
        ternlm_generate_stats st1, st2, st3;
        CHECK(ternlm_chat_send(chat, "Hello there", &gp, &st1, &err) == TERNLM_OK, "turn 1: %s", err.message);
        CHECK(ternlm_session_tokens_evaluated(s) == ternlm_session_pos(s), "turn 1 evaluated %llu tokens for %u positions",
              (unsigned long long)ternlm_session_tokens_evaluated(s), ternlm_session_pos(s));
        const uint32_t pos1 = ternlm_session_pos(s);
        CHECK(ternlm_chat_send(chat, "And now?", &gp, &st2, &err) == TERNLM_OK, "turn 2: %s", err.message);
        /* turn 2's prompt: the close of reply 1, "User: " + text + <|eot_id|>, "Assistant: " -- never turn 1 again */
        CHECK(st2.n_prompt > 0 && st2.n_prompt < 16, "turn 2 evaluated %u prompt tokens; only the new turn is expected", st2.n_prompt);
        CHECK(ternlm_session_tokens_evaluated(s) == ternlm_session_pos(s) && ternlm_session_pos(s) > pos1,
              "after turn 2: %llu evaluated, %u in the cache", (unsigned long long)ternlm_session_tokens_evaluated(s),
              ternlm_session_pos(s));
        CHECK(pieces > 0 && strlen(ternlm_chat_last_reply(chat)) > 0, "replies stream text");
        /* the system prompt is still the first turn: a render of the conversation starts with its header */
        ternlm_chat_reset(chat);
        CHECK(ternlm_session_pos(s) == 0, "/reset clears the cache");
        CHECK(ternlm_chat_send(chat, "Hello there", &gp, &st3, &err) == TERNLM_OK && st3.n_prompt == st1.n_prompt,
              "after reset the first turn is evaluated in full again (%u vs %u)", st3.n_prompt, st1.n_prompt);
    }
    /* without a system prompt (the CLI's default) */
    ternlm_chat_free(chat);
    chat = NULL;
    if (s && smp && !ternlm_chat_new(s, smp, NULL, &chat, &err)) {
        ternlm_session_rewind(s, 0, NULL);
        ternlm_generate_params gp = {0};
        gp.max_tokens = 3;
        ternlm_generate_stats st1, st2;
        CHECK(!ternlm_chat_send(chat, "Hi", &gp, &st1, &err) && !ternlm_chat_send(chat, "Again", &gp, &st2, &err),
              "chat without a system prompt: %s", err.message);
        CHECK(st1.n_prompt == 9 && ternlm_session_tokens_evaluated(s) > 0, "first turn: BOS, User: (3), Hi, eot, Assistant: (3) = 9 tokens, got %u", st1.n_prompt);
    }
    ternlm_chat_free(chat);
    ternlm_sampler_free(smp);
    ternlm_session_free(s);
    ternlm_model_free(m);
    return check_summary();
}
