/* The reasoning splitter: replies cut into pieces at every byte position (a tag split across tokens), byte by byte,
 * and whole, must give the same reasoning and answer; order and the callback's stop value are kept. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ternlm.h"

typedef struct sink {
    char reasoning[512], answer[512];
    int answer_seen, order_broken, calls, stop_after;
} sink;

static int collect(void *user, int is_reasoning, const char *text, size_t len) {
    sink *s = user;
    char *dst = is_reasoning ? s->reasoning : s->answer;
    if (strlen(dst) + len < sizeof s->answer) strncat(dst, text, len);
    if (is_reasoning && s->answer_seen) s->order_broken = 1;
    if (!is_reasoning) s->answer_seen = 1;
    return s->stop_after && ++s->calls >= s->stop_after;
}

/* Feeds text in pieces that end at the given cut positions (sorted, within the text). */
static void run(ternlm_reasoning *r, const char *text, const size_t *cuts, size_t n_cuts, sink *s) {
    memset(s, 0, sizeof *s);
    ternlm_reasoning_reset(r);
    size_t at = 0;
    for (size_t i = 0; i <= n_cuts; i++) {
        const size_t end = i < n_cuts ? cuts[i] : strlen(text);
        ternlm_reasoning_feed(r, text + at, end - at, collect, s);
        at = end;
    }
    ternlm_reasoning_flush(r, collect, s);
}

static void expect_split(int in_reasoning, const char *text, const char *want_r, const char *want_a) {
    ternlm_reasoning *r = NULL;
    CHECK(ternlm_reasoning_new(in_reasoning, &r, NULL) == TERNLM_OK, "new");
    if (!r) return;
    sink s;
    const size_t n = strlen(text);
    run(r, text, NULL, 0, &s);
    CHECK(!strcmp(s.reasoning, want_r) && !strcmp(s.answer, want_a), "whole [%s]: reasoning [%s] answer [%s]", text, s.reasoning,
          s.answer);
    for (size_t a = 0; a <= n; a++) /* two cuts anywhere: every tag split across three pieces in every way */
        for (size_t b = a; b <= n; b++) {
            const size_t cuts[2] = {a, b};
            run(r, text, cuts, 2, &s);
            if (strcmp(s.reasoning, want_r) || strcmp(s.answer, want_a) || s.order_broken) {
                CHECK(0, "[%s] cut at %zu,%zu: reasoning [%s] answer [%s] order %d", text, a, b, s.reasoning, s.answer,
                      !s.order_broken);
                a = b = n + 1;
            }
        }
    size_t *all = malloc((n ? n : 1) * sizeof *all);
    for (size_t i = 0; i < n; i++) all[i] = i;
    run(r, text, all, n, &s);
    CHECK(!strcmp(s.reasoning, want_r) && !strcmp(s.answer, want_a), "byte by byte [%s]: reasoning [%s] answer [%s]", text,
          s.reasoning, s.answer);
    free(all);
    ternlm_reasoning_free(r);
}

int main(void) {
    expect_split(0, "<think>\nplan A\n</think>\n\nThe answer.", "plan A", "The answer.");
    expect_split(0, "<think>\n\n</think>\n\nHi", "", "Hi");
    expect_split(0, " \n<think>r</think>a b", "r", "a b");
    expect_split(0, "<think>unfinished\n", "unfinished", "");
    expect_split(0, "<think>a</thinking> b \n</think>c", "a</thinking> b", "c");
    expect_split(0, "<think>x < y </ think></think>z</think>", "x < y </ think>", "z</think>");
    expect_split(0, "Plain answer <think>x</think>", "", "Plain answer <think>x</think>");
    expect_split(0, "  plain", "", "  plain");
    expect_split(0, "<thin", "", "<thin");
    expect_split(0, "<thinker>", "", "<thinker>");
    expect_split(0, "", "", "");
    expect_split(0, "<think>\xc3\xa9\t</think>\xc3\xbc", "\xc3\xa9", "\xc3\xbc");
    expect_split(1, "plan\n</think>\n\nok", "plan", "ok");
    expect_split(1, "no close", "no close", "");

    /* the callback's stop value comes back from feed; text after it is still sorted */
    ternlm_reasoning *r = NULL;
    ternlm_reasoning_new(0, &r, NULL);
    sink s;
    memset(&s, 0, sizeof s);
    s.stop_after = 1;
    CHECK(ternlm_reasoning_feed(r, "<think>a</think>b", 17, collect, &s) == 1, "stop value returned");
    CHECK(ternlm_reasoning_in_answer(r) && !strcmp(s.reasoning, "a") && !strcmp(s.answer, "b"), "after stop: [%s] [%s]", s.reasoning,
          s.answer);
    CHECK(ternlm_reasoning_feed(NULL, "x", 1, collect, &s) == 0 && ternlm_reasoning_new(0, NULL, NULL) == TERNLM_ERR_ARG,
          "NULL arguments");
    ternlm_reasoning_free(r);
    return check_summary();
}
