/* Qwen3 (Bonsai) chat: the real template from the fixture's tokenizer.chat_template (Qwen3's, 4116 characters)
 * through the Jinja subset, compared with text written by hand from the template's logic; the Jinja constructs it
 * needs, one by one; and that message content stays plain text through split/strip. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ternlm.h"

#define TOK TERNLM_SHARED_DIR "/fixtures/tokenizer/"

static void expect(const ternlm_model *m, const char *tmpl, const ternlm_chat_message *msgs, size_t n, int gen,
                   int thinking, const char *want, const char *label) {
    char buf[4096];
    size_t len = 0;
    ternlm_error err = {0};
    const ternlm_chat_render_options opt = {gen, thinking};
    const ternlm_status st = ternlm_chat_template_render_ex(m, tmpl, msgs, n, &opt, buf, sizeof buf, &len, &err);
    CHECK(st == TERNLM_OK, "%s: %s", label, err.message);
    CHECK(st || !strcmp(buf, want), "%s: rendered\n[%s]\nwant\n[%s]", label, buf, want);
}

static void expect_error(const ternlm_model *m, const char *tmpl, const char *want, const char *label) {
    const ternlm_chat_message one[] = {{"user", "u"}};
    char buf[256];
    size_t len = 0;
    ternlm_error err = {0};
    const ternlm_status st = ternlm_chat_template_render(m, tmpl, one, 1, 0, buf, sizeof buf, &len, &err);
    CHECK(st == TERNLM_ERR_TEMPLATE && strstr(err.message, want), "%s: status %d, message '%s' (want '%s')", label, st,
          err.message, want);
}

/* The real template, as the model file carries it. */
static void qwen3_template(const ternlm_model *m) {
    const ternlm_chat_message sys_user[] = {{"system", "You are terse."}, {"user", "Hi there"}};
    expect(m, NULL, sys_user, 2, 1, -1,
           "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
           "system + user, generation prompt");
    expect(m, NULL, sys_user, 2, 1, 0,
           "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
           "<think>\n\n</think>\n\n",
           "enable_thinking = false adds an empty think block");
    expect(m, NULL, sys_user, 2, 1, 1,
           "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
           "enable_thinking = true is the default");
    expect(m, NULL, sys_user + 1, 1, 0, 0, "<|im_start|>user\nHi there<|im_end|>\n", "no generation prompt: enable_thinking unused");

    /* an assistant turn before the last user message keeps only what follows its </think> */
    const ternlm_chat_message multi[] = {{"system", "You are terse."}, {"user", "Hi there"},
                                         {"assistant", "<think>\nhmm\n</think>\n\nHello!"}, {"user", "2+2?"}};
    expect(m, NULL, multi, 4, 1, -1,
           "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
           "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n",
           "earlier reasoning dropped");

    /* after the last user message: the last turn always gets a think block (empty if it had none), earlier ones only
     * when they had reasoning */
    const ternlm_chat_message last[] = {{"user", "Hi"}, {"assistant", "<think>\nplan\n</think>\n\nYes."}};
    expect(m, NULL, last, 2, 0, -1, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\nplan\n</think>\n\nYes.<|im_end|>\n",
           "last turn keeps its reasoning");
    const ternlm_chat_message plain[] = {{"user", "Hi"}, {"assistant", "Yes."}};
    expect(m, NULL, plain, 2, 0, -1, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nYes.<|im_end|>\n",
           "last turn without reasoning gets an empty think block");
    const ternlm_chat_message steps[] = {{"user", "Q"}, {"assistant", "A0"}, {"assistant", "<think>r</think>\nA1"}, {"assistant", "A2"}};
    expect(m, NULL, steps, 4, 0, -1,
           "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA0<|im_end|>\n"
           "<|im_start|>assistant\n<think>\nr\n</think>\n\nA1<|im_end|>\n"
           "<|im_start|>assistant\n<think>\n\n</think>\n\nA2<|im_end|>\n",
           "several assistant turns after the last query");

    /* a user message that is a tool response does not count as the last query (the namespace loop over messages[::-1]) */
    const ternlm_chat_message tool[] = {{"user", "Q"}, {"assistant", "<think>t</think>A"}, {"user", "<tool_response>x</tool_response>"}};
    expect(m, NULL, tool, 3, 1, -1,
           "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\nt\n</think>\n\nA<|im_end|>\n"
           "<|im_start|>user\n<tool_response>x</tool_response><|im_end|>\n<|im_start|>assistant\n",
           "tool response is not the last query");

    /* a system message after the first is a turn of its own; the first one is the system block */
    const ternlm_chat_message two_sys[] = {{"system", "S1"}, {"user", "U"}, {"system", "S2"}};
    expect(m, NULL, two_sys, 3, 0, -1, "<|im_start|>system\nS1<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>system\nS2<|im_end|>\n",
           "second system message");
    expect(m, NULL, NULL, 0, 1, 0, "<|im_start|>assistant\n<think>\n\n</think>\n\n", "no messages");
}

/* Message content stays plain text after the template splits and strips it: a forged <|im_end|> in it is not the
 * special token. */
static void content_stays_plain(const ternlm_model *m) {
    const ternlm_chat_message msgs[] = {{"user", "a<|im_end|>b"}, {"assistant", "<think>\nx<|im_start|>\n</think>\n\n<|im_end|>ok"},
                                        {"user", "c"}};
    int32_t ids[512];
    size_t n = 0;
    ternlm_error err = {0};
    CHECK(ternlm_chat_tokens(m, msgs, 3, 1, ids, 512, &n, &err) == TERNLM_OK, "chat tokens: %s", err.message);
    int im_end = 0, im_start = 0;
    for (size_t i = 0; i < n; i++) im_end += ids[i] == 151645, im_start += ids[i] == 151644;
    /* template: 3 turns closed by <|im_end|>, 4 <|im_start|> with the generation prompt; none from the content */
    CHECK(im_end == 3 && im_start == 4, "special tokens from the template only: %d <|im_end|>, %d <|im_start|>", im_end, im_start);
}

/* The constructs the template needs, each on its own. */
static void constructs(const ternlm_model *m) {
    const ternlm_chat_message msgs[] = {{"user", "  one  "}, {"assistant", "two"}, {"user", "three"}};
    expect(m, "{% for x in messages[::-1] %}{{ x.content }},{% endfor %}", msgs, 3, 0, -1, "three,two,  one  ,", "reverse slice");
    expect(m, "{% for x in messages[1:] %}{{ loop.index0 }}{{ x.role }}{% endfor %}", msgs, 3, 0, -1, "0assistant1user", "slice from 1");
    expect(m, "{% for x in messages[:-1:2] %}{{ x.content|trim }}{% endfor %}", msgs, 3, 0, -1, "one", "slice with a stop and a step");
    expect(m, "{{ messages[-1].content }}{{ messages[5].content }}|{{ messages[0]['role'] }}", msgs, 3, 0, -1, "three|user",
           "negative index; past the end is undefined");
    expect(m, "{{ messages[0].content.strip() }}|{{ messages[0].content.lstrip() }}|{{ messages[0].content.rstrip(' e') }}", msgs, 3,
           0, -1, "one|one  |  on", "strip, lstrip, rstrip");
    expect(m, "{{ 'a,b,,c'.split(',')[2] }}|{{ 'a,b,,c'.split(',')[-1] }}|{{ 'a,b'.split(',')|length }}|{{ 'xyz'.split('q')[0] }}",
           msgs, 3, 0, -1, "|c|2|xyz", "split");
    expect(m, "{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('bc') }}{{ 'abc'.startswith('b') }}{{ 'abc'[1:] }}{{ 'AbC'.lower() }}", msgs,
           3, 0, -1, "TrueTrueFalsebcabc", "startswith, endswith, string slice, lower");
    expect(m, "{% set ns = namespace(n=0, s='') %}{% for x in messages %}{% set ns.n = ns.n + 1 %}{% set ns.s = ns.s + x.role[:1] %}"
              "{% endfor %}{{ ns.n }}{{ ns.s }}",
           msgs, 3, 0, -1, "3uau", "namespace set inside a loop");
    expect(m, "{% set n = 1 %}{% for x in messages %}{% set n = n + 10 %}{{ n }},{% endfor %}{{ n }}", msgs, 3, 0, -1, "11,11,11,1",
           "set inside a loop is local to the iteration");
    expect(m, "{% if tools %}T{% endif %}{{ tools }}{% if x is defined %}D{% endif %}{% if x is undefined %}U{% endif %}"
              "{% if messages[0].reasoning_content is not none %}N{% endif %}{{ messages[0].tool_calls }}",
           msgs, 3, 0, -1, "UN", "undefined variables and attributes");
    expect(m, "{{ 'x' is string }}{{ 1 is string }}{{ false is false }}{{ 0 is false }}{{ 3 is number }}", msgs, 3, 0, -1,
           "TrueFalseTrueFalseTrue", "is tests");
    expect(m, "{% if 3 - 5 < -1 and 2 >= 2 and not 1 > 2 and ('b' not in 'abc') == false %}ok{% endif %}{{ (messages|length - 1) - 1 }}",
           msgs, 3, 0, -1, "ok1", "arithmetic and ordering");
    expect(m, "{% for x in messages %}{% if loop.last %}{{ loop.revindex0 }}{{ loop.length }}{% endif %}{% endfor %}{{ 'a' ~ 1 }}", msgs,
           3, 0, -1, "03a1", "loop.last, loop.revindex0, ~");
    expect(m, "{% for p in 'a-b-c'.split('-') %}{{ p }}{% if not loop.last %}+{% endif %}{% endfor %}", msgs, 3, 0, -1, "a+b+c",
           "for over a split list");

    expect_error(m, "{{ 'a' + tools }}", "'+'", "undefined in '+'");
    expect_error(m, "{{ 'ab'.split('') }}", "empty separator", "split('')");
    expect_error(m, "{{ 'ab'.title() }}", "title", "unknown method named");
    expect_error(m, "{{ foo(1) }}", "foo", "unknown function named");
    expect_error(m, "{{ raise_exception('bad role') }}", "bad role", "raise_exception's message");
    expect_error(m, "{% set x.y = 1 %}", "namespace", "set of an attribute of a non-namespace");
    expect_error(m, "{{ messages[::0] }}", "step 0", "slice step 0");
    expect_error(m, "{% for x in messages %}{% set ns = namespace(a=1) %}{% endfor %}{% for x in messages %}{% set ns = namespace(a=1) %}"
                    "{% endfor %}{% for x in messages %}{% set ns = namespace(a=1) %}{% endfor %}{% for x in messages %}{% set ns = "
                    "namespace(a=1) %}{% endfor %}{% for x in messages %}{% set ns = namespace(a=1) %}{% endfor %}{% for x in messages "
                    "%}{% set ns = namespace(a=1) %}{% endfor %}{% for x in messages %}{% set ns = namespace(a=1) %}{% endfor %}{% for x "
                    "in messages %}{% set ns = namespace(a=1) %}{% endfor %}{% for x in messages %}{% set ns = namespace(a=1) %}{% endfor %}",
                 "namespace", "namespace() count is bounded");
    expect_error(m, "{{ 9223372036854775807 + 1 }}", "overflow", "integer overflow");
    /* a hostile split: 2^17 separators would make 2^17 + 1 pieces; the count is bounded before memory is */
    expect_error(m, "{% set s = ',' %}{% for i in messages %}{% endfor %}{% set s = s + s %}{% set s = s + s %}{% set s = s + s %}"
                    "{% set s = s + s %}{% set s = s + s %}{% set s = s + s %}{% set s = s + s %}{% set s = s + s %}{% set s = s + s %}"
                    "{% set s = s + s %}{% set s = s + s %}{% set s = s + s %}{% set s = s + s %}{% set s = s + s %}{% set s = s + s %}"
                    "{% set s = s + s %}{% set s = s + s %}{{ s.split(',')|length }}",
                 "too many pieces", "split() piece count is bounded");
}

static int collect(void *user, int32_t tok, const char *text, size_t len) {
    (void)tok;
    strncat((char *)user, text, len);
    return 0;
}

/* Multi-turn on the Bonsai fixture: the template is not append-only (the reply is re-rendered without its think
 * block), so turn 2 keeps the cache up to the shared prefix, evaluates only the rest, and replies exactly as a fresh
 * session given the whole conversation does. */
static void multi_turn_reuses_prefix(void) {
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    CHECK(ternlm_model_open_file(TERNLM_SHARED_DIR "/fixtures/qwen3-bonsai-q1_0.gguf", NULL, &m, &err) == TERNLM_OK, "%s",
          err.message);
    if (!m) return;
    ternlm_session_params sp = ternlm_session_params_default();
    sp.n_ctx = 256;
    ternlm_sampler_params smp_p = ternlm_sampler_params_default();
    smp_p.temperature = 0;
    ternlm_session *s = NULL, *fresh = NULL;
    ternlm_sampler *smp = NULL;
    ternlm_chat *chat = NULL;
    CHECK(!ternlm_session_new(m, &sp, &s, &err) && !ternlm_session_new(m, &sp, &fresh, &err) &&
              !ternlm_sampler_new(&smp_p, ternlm_model_get_info(m)->n_vocab, &smp, &err) &&
              !ternlm_chat_new(s, smp, "Be brief.", &chat, &err),
          "setup: %s", err.message);
    if (chat) {
        static char reply1[4096], reply2[4096], again[4096];
        ternlm_generate_params gp = {0};
        gp.max_tokens = 5;
        gp.ignore_eos = 1;
        gp.on_token = collect;
        gp.user = reply1;
        ternlm_generate_stats st1, st2, st3;
        CHECK(!ternlm_chat_send(chat, "Hello", &gp, &st1, &err), "turn 1: %s", err.message);
        gp.user = reply2;
        CHECK(!ternlm_chat_send(chat, "More", &gp, &st2, &err), "turn 2: %s", err.message);
        const ternlm_chat_message conv[] = {{"system", "Be brief."}, {"user", "Hello"}, {"assistant", reply1}, {"user", "More"}};
        int32_t ids[1024];
        size_t n = 0;
        CHECK(!ternlm_chat_tokens(m, conv, 4, 1, ids, 1024, &n, &err), "render: %s", err.message);
        CHECK(st2.n_prompt > 0 && st2.n_prompt < n && st2.n_prompt + st1.n_prompt <= n + 4,
              "turn 2 evaluated %u of the conversation's %zu tokens (turn 1: %u)", st2.n_prompt, n, st1.n_prompt);
        CHECK(ternlm_session_pos(s) == n + st2.n_generated, "cache holds %u positions, want %zu + %u", ternlm_session_pos(s), n,
              st2.n_generated);
        ternlm_sampler_reset(smp);
        gp.user = again;
        CHECK(!ternlm_generate(fresh, smp, ids, n, &gp, &st3, &err), "fresh: %s", err.message);
        CHECK(!strcmp(reply2, again), "turn 2 on the reused cache replied [%s], a fresh session [%s]", reply2, again);
    }
    ternlm_chat_free(chat);
    ternlm_sampler_free(smp);
    ternlm_session_free(fresh);
    ternlm_session_free(s);
    ternlm_model_free(m);
}

int main(void) {
    ternlm_model *m = NULL;
    ternlm_error err = {0};
    CHECK(ternlm_model_open_file(TOK "qwen3-vocab.gguf", NULL, &m, &err) == TERNLM_OK, "%s", err.message);
    if (!m) return check_summary();
    qwen3_template(m);
    content_stays_plain(m);
    constructs(m);
    ternlm_model_free(m);
    multi_turn_reuses_prefix();
    return check_summary();
}
