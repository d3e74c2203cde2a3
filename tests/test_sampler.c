// test_sampler.c — the sampler's filters and its seeded determinism, checked
// against the probabilities they should produce.
#include "harness.h"
#include "model/sampler.h"

static sampler_params plain(float temp) {
    sampler_params p = {.temperature = temp, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
                        .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 42};
    return p;
}

static void test_greedy(void) {
    float l[] = {0.1f, 3.0f, -2.0f, 3.0f, 1.0f};
    sampler_params p = plain(0.0f);
    sampler *s = sampler_new(&p, 5);
    REQUIRE(s);
    CHECK(sampler_sample(s, l, NULL, 0) == 1);   // ties: lowest id
    CHECK(sampler_argmax(l, 5) == 1);
    sampler_free(s);
}

static void test_distribution(void) {
    float l[] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    sampler_params p = plain(1.0f);
    sampler *s = sampler_new(&p, 3);
    REQUIRE(s);
    int cnt[3] = {0};
    const int N = 30000;
    for (int i = 0; i < N; i++) cnt[sampler_sample(s, l, NULL, 0)]++;
    CHECKF(fabs(cnt[0] / (double)N - 0.5) < 0.02 && fabs(cnt[1] / (double)N - 0.3) < 0.02 &&
           fabs(cnt[2] / (double)N - 0.2) < 0.02, "frequencies %d %d %d", cnt[0], cnt[1], cnt[2]);
    sampler_free(s);
    // Temperature 0.5 squares the odds: p ∝ 0.25, 0.09, 0.04.
    p.temperature = 0.5f;
    s = sampler_new(&p, 3);
    memset(cnt, 0, sizeof cnt);
    for (int i = 0; i < N; i++) cnt[sampler_sample(s, l, NULL, 0)]++;
    double z = 0.25 + 0.09 + 0.04;
    CHECKF(fabs(cnt[0] / (double)N - 0.25 / z) < 0.02 && fabs(cnt[2] / (double)N - 0.04 / z) < 0.015,
           "frequencies at T=0.5: %d %d %d", cnt[0], cnt[1], cnt[2]);
    sampler_free(s);
}

static void test_filters(void) {
    float l[] = {logf(0.05f), logf(0.5f), logf(0.3f), logf(0.15f)};
    int seen[4];
    // top-k 2 keeps ids 1 and 2.
    sampler_params p = plain(1.0f);
    p.top_k = 2;
    sampler *s = sampler_new(&p, 4);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 5000; i++) seen[sampler_sample(s, l, NULL, 0)]++;
    CHECK(seen[0] == 0 && seen[3] == 0 && seen[1] > 0 && seen[2] > 0);
    sampler_free(s);
    // top-p 0.75 keeps 0.5 + 0.3 (cumulative reaches 0.8 >= 0.75).
    p = plain(1.0f);
    p.top_p = 0.75f;
    s = sampler_new(&p, 4);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 5000; i++) seen[sampler_sample(s, l, NULL, 0)]++;
    CHECK(seen[0] == 0 && seen[3] == 0 && seen[1] > 0 && seen[2] > 0);
    sampler_free(s);
    // min-p 0.35 keeps tokens with p >= 0.175: ids 1 and 2.
    p = plain(1.0f);
    p.min_p = 0.35f;
    s = sampler_new(&p, 4);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 5000; i++) seen[sampler_sample(s, l, NULL, 0)]++;
    CHECK(seen[0] == 0 && seen[3] == 0 && seen[1] > 0 && seen[2] > 0);
    sampler_free(s);
    // top-k 1 is greedy at any temperature.
    p = plain(5.0f);
    p.top_k = 1;
    s = sampler_new(&p, 4);
    for (int i = 0; i < 100; i++) CHECK(sampler_sample(s, l, NULL, 0) == 1);
    sampler_free(s);
}

static void test_repeat_penalty(void) {
    float l[] = {2.0f, 2.0f, -1.0f};
    sampler_params p = plain(0.0f);
    p.repeat_penalty = 1.5f;
    sampler *s = sampler_new(&p, 3);
    int32_t hist[] = {0, 0};
    CHECK(sampler_sample(s, l, hist, 2) == 1);     // 2/1.5 < 2
    CHECK(l[0] == 2.0f);                           // logits untouched
    float neg[] = {-1.0f, -1.2f};
    sampler_free(s);
    s = sampler_new(&p, 2);
    CHECK(sampler_sample(s, neg, hist, 2) == 1);   // -1*1.5 < -1.2
    sampler_free(s);
}

static void test_seeded(void) {
    float l[64];
    for (int i = 0; i < 64; i++) l[i] = sinf((float)i);
    sampler_params p = plain(1.0f);
    int32_t a[50], b[50], c[50];
    sampler *s1 = sampler_new(&p, 64), *s2 = sampler_new(&p, 64);
    p.seed = 43;
    sampler *s3 = sampler_new(&p, 64);
    for (int i = 0; i < 50; i++) {
        a[i] = sampler_sample(s1, l, NULL, 0);
        b[i] = sampler_sample(s2, l, NULL, 0);
        c[i] = sampler_sample(s3, l, NULL, 0);
    }
    CHECK(!memcmp(a, b, sizeof a));
    CHECK(memcmp(a, c, sizeof a) != 0);
    sampler_free(s1); sampler_free(s2); sampler_free(s3);
}

int main(void) {
    RUN(test_greedy);
    RUN(test_distribution);
    RUN(test_filters);
    RUN(test_repeat_penalty);
    RUN(test_seeded);
    return harness_done();
}
