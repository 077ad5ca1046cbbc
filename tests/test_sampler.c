/* Sampler: the PCG32 test vector from ../shared/specs/sampling.md, greedy tie-breaking, each stage of the
 * chain, and a table of seeded draws on a fixture's stored logits that every target must reproduce. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "json.h"
#include "ternlm.h"

void tl_pcg32_sequence(uint64_t seed, uint32_t *out, int n);
#include "mathx.h"

static ternlm_sampler *make(float temp, int top_k, float top_p, float min_p, float rep, uint64_t seed, uint32_t nv) {
    ternlm_sampler_params p = ternlm_sampler_params_default();
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.repeat_penalty = rep;
    p.seed = seed;
    ternlm_sampler *s = NULL;
    ternlm_sampler_new(&p, nv, &s, NULL);
    return s;
}

int main(void) {
    const uint32_t want[6] = {0xa15c02b7, 0x7b47f409, 0xba1d3330, 0x83d2f293, 0xbfa4784b, 0xcbed606e};
    uint32_t got[6];
    tl_pcg32_sequence(42, got, 6);
    CHECK(!memcmp(got, want, sizeof want), "PCG32 seed 42 gives %08x %08x ...", got[0], got[1]);
    int exp_bad = 0;
    for (double x = -700; x < 700; x += 0.37) exp_bad += fabs(tl_exp(x) / exp(x) - 1) > 1e-14;
    CHECK(exp_bad == 0, "our exp differs from libm by more than 1e-14 relative at %d points", exp_bad);

    /* greedy: lowest id on ties, no RNG draw */
    const float tie[5] = {1, 3, 3, 2, 0};
    ternlm_sampler *g = make(0, 40, 0.95f, 0.05f, 1, 1, 5);
    CHECK(ternlm_sampler_sample(g, tie) == 1, "greedy picks the lowest id among equal maxima");
    ternlm_sampler_free(g);

    /* top-k 2: only ids 1 and 2 can come out; min-p 0.5 removes everything below half the best probability */
    const float l[6] = {0.0f, 5.0f, 4.9f, 4.0f, -1.0f, 4.95f};
    ternlm_sampler *k2 = make(1.0f, 2, 1.0f, 0.0f, 1, 7, 6);
    int seen[6] = {0};
    for (int i = 0; i < 2000; i++) seen[ternlm_sampler_sample(k2, l)]++;
    CHECK(seen[1] > 0 && seen[5] > 0 && seen[0] + seen[2] + seen[3] + seen[4] == 0, "top-k 2 kept %d %d %d %d %d %d",
          seen[0], seen[1], seen[2], seen[3], seen[4], seen[5]);
    ternlm_sampler_free(k2);
    ternlm_sampler *mp = make(1.0f, 0, 1.0f, 0.5f, 1, 7, 6);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 2000; i++) seen[ternlm_sampler_sample(mp, l)]++;
    CHECK(seen[1] && seen[2] && seen[5] && !seen[3] && !seen[0] && !seen[4], "min-p 0.5 kept %d %d %d %d", seen[1], seen[2], seen[3], seen[5]);
    ternlm_sampler_free(mp);
    /* top-p: with p = 0.3 only the best token survives (its probability is above 0.3) */
    ternlm_sampler *tp = make(1.0f, 0, 0.3f, 0.0f, 1, 7, 6);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 200; i++) seen[ternlm_sampler_sample(tp, l)]++;
    CHECK(seen[1] == 200, "top-p 0.3 must keep only id 1 (got %d)", seen[1]);
    ternlm_sampler_free(tp);
    /* repetition penalty: after accepting id 1, a strong penalty moves greedy to id 5 */
    ternlm_sampler *rp = make(0, 40, 1, 0, 2.0f, 1, 6);
    ternlm_sampler_accept(rp, 1);
    CHECK(ternlm_sampler_sample(rp, l) == 5, "repeat penalty");
    ternlm_sampler_reset(rp);
    CHECK(ternlm_sampler_sample(rp, l) == 1, "reset clears the history");
    ternlm_sampler_free(rp);

    /* seeded draws on real logits (stories260k, BOS position): this table was computed once with the
     * scalar build; every target must reproduce it exactly */
    size_t n;
    float *logits = (float *)read_whole_file(TERNLM_SHARED_DIR "/fixtures/llama-stories260k.case0.f32", &n);
    CHECK(logits && n == 512 * 4, "stories260k case0 logits");
    if (logits) {
        static const int32_t table[16] = {385, 403, 385, 403, 403, 385, 403, 403, 403, 403, 385, 385, 403, 403, 403, 403};
        ternlm_sampler *s = make(0.8f, 40, 0.95f, 0.05f, 1, 1234, 512);
        int32_t drawn[16];
        for (int i = 0; i < 16; i++) drawn[i] = ternlm_sampler_sample(s, logits);
        if (getenv("TERNLM_PRINT_TABLE"))
            for (int i = 0; i < 16; i++) printf("%d%s", drawn[i], i == 15 ? "\n" : ", ");
        CHECK(!memcmp(drawn, table, sizeof table), "seeded draws differ from the table (first %d, want %d)", drawn[0], table[0]);
        CHECK(ternlm_sampler_seed(s) == 1234, "effective seed");
        ternlm_sampler_free(s);
        ternlm_sampler *r = make(0.8f, 40, 0.95f, 0.05f, 1, TERNLM_SEED_RANDOM, 512);
        CHECK(ternlm_sampler_seed(r) != TERNLM_SEED_RANDOM, "a random seed is drawn and reported");
        ternlm_sampler_free(r);
    }
    free(logits);
    return check_summary();
}
