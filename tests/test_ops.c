// test_ops.c — the forward pass's small operations against direct
// double-precision formulas.
#include "harness.h"
#include "compute/cpu.h"
#include "compute/ops.h"
#include "compute/quant.h"

// A cache of n elements in f16 (rounded from x), with x overwritten by the
// rounded values, so an f32 cache of x holds exactly what the f16 one does.
static fp16_t *halves(float *x, int n) {
    fp16_t *h = malloc(sizeof(fp16_t) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) { h[i] = fp32_to_fp16(x[i]); x[i] = fp16_to_fp32(h[i]); }
    return h;
}

// The cache a test reads: kc and vc (n elements each) as they are, or with
// f16 their halves in *k16 and *v16 (kc and vc rounded to match; free them).
static op_kv test_cache(float *kc, float *vc, int n, int stride, bool f16, fp16_t **k16, fp16_t **v16) {
    *k16 = f16 ? halves(kc, n) : NULL;
    *v16 = f16 ? halves(vc, n) : NULL;
    return f16 ? (op_kv){*k16, *v16, stride, true} : (op_kv){kc, vc, stride, false};
}

// The randomized tests' generator: a linear congruential step of the
// calling test's own state r.
#define RND() ((r = r * 1664525u + 1013904223u) >> 8)
#define FRND() ((float)RND() / (float)(1u << 24) * 2.0f - 1.0f)

static void test_rmsnorm(void) {
    float x[37], w[37], out[37];
    double ss = 0;
    for (int i = 0; i < 37; i++) { x[i] = sinf(i * 0.7f) * 3; w[i] = 0.5f + i * 0.01f; ss += (double)x[i] * x[i]; }
    op_rmsnorm(out, x, w, 37, 1e-5f);
    double r = 1.0 / sqrt(ss / 37 + 1e-5);
    for (int i = 0; i < 37; i++) CHECK(fabs(out[i] - x[i] * r * w[i]) < 1e-5);
    op_rmsnorm(x, x, w, 37, 1e-5f);   // in place
    CHECK(!memcmp(x, out, sizeof x));
}

static void test_rope(void) {
    const int hd = 8, nh = 2, pos = 5;
    float x[16], ref[16], cs[8];
    for (int i = 0; i < 16; i++) x[i] = ref[i] = (float)(i + 1);
    op_rope_table(cs, hd, pos, 10000.0f);
    op_rope(x, nh, hd, hd, cs);
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < hd; i += 2) {
            double th = pos * pow(10000.0, -(double)i / hd);
            double a = ref[h * hd + i], b = ref[h * hd + i + 1];
            CHECK(fabs(x[h * hd + i] - (a * cos(th) - b * sin(th))) < 1e-4);
            CHECK(fabs(x[h * hd + i + 1] - (a * sin(th) + b * cos(th))) < 1e-4);
        }
    // Partial rotation leaves the dimensions past n_rot alone.
    float y[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float cs4[4];
    op_rope_table(cs4, 4, 3, 10000.0f);
    op_rope(y, 1, 8, 4, cs4);
    CHECK(y[4] == 5 && y[5] == 6 && y[6] == 7 && y[7] == 8);
}

static void test_softmax_attention(void) {
    float x[5] = {1000, 1001, 999, -1e30f, 1000};
    op_softmax(x, 5);
    double s = 0;
    for (int i = 0; i < 5; i++) { CHECK(isfinite(x[i])); s += x[i]; }
    CHECK(fabs(s - 1) < 1e-6 && x[1] > x[0] && x[3] == 0.0f);
    // One head over 3 cached positions with stride 6 (two kv heads of 3).
    const int hd = 3, n = 3, stride = 6;
    float q[3] = {0.5f, -1, 2}, kc[18], vc[18], out[3], att[3];
    for (int i = 0; i < 18; i++) { kc[i] = cosf(i); vc[i] = sinf(i); }
    const op_kv kv = {kc, vc, stride, false};
    op_attention_head(out, q, &kv, n, hd, att);
    double sc[3], z = 0, m = -1e300;
    for (int t = 0; t < n; t++) {
        sc[t] = 0;
        for (int i = 0; i < hd; i++) sc[t] += q[i] * kc[t * stride + i];
        sc[t] /= sqrt(hd);
        if (sc[t] > m) m = sc[t];
    }
    for (int t = 0; t < n; t++) z += exp(sc[t] - m);
    for (int i = 0; i < hd; i++) {
        double o = 0;
        for (int t = 0; t < n; t++) o += exp(sc[t] - m) / z * vc[t * stride + i];
        CHECK(fabs(out[i] - o) < 1e-5);
    }
}

// Grouped heads equal the heads one by one (the scalar reference), for
// group sizes past 8 (chunks), head widths that are and are not multiples
// of 8, and short and long contexts.
static void test_attention_group(void) {
    const enum cpu_level top = cpu_level();
    uint32_t r = 777;
    double worst = 0;
    for (int it = 0; it < 150; it++) {
        // The first 8: the kernel's copies for head_dim 48 and 64, over more
        // than one block of 32 positions (the f16 values widened per block).
        const int nrep = 1 + (int)(RND() % 12);
        const int nkv = it < 8 ? 33 + (int)(RND() % 300) : 1 + (int)(RND() % (it % 5 == 0 ? 700 : 70));
        const int hd = it < 8 ? (it % 2 ? 48 : 64) : it % 3 == 0 ? 1 + (int)(RND() % 140) : 8 * (1 + (int)(RND() % 20));
        const int spread = 1 + (int)(RND() % 3);
        const int stride = hd * spread + (int)(RND() % 9);
        float *q = malloc(sizeof(float) * (size_t)(nrep * hd)), *kc = malloc(sizeof(float) * (size_t)(stride * nkv));
        float *vc = malloc(sizeof(float) * (size_t)(stride * nkv)), *o0 = malloc(sizeof(float) * (size_t)(nrep * hd));
        float *o1 = malloc(sizeof(float) * (size_t)(nrep * hd)), *att = malloc(sizeof(float) * 8 * (size_t)nkv);
        for (int i = 0; i < nrep * hd; i++) q[i] = FRND() * 3;
        for (int i = 0; i < stride * nkv; i++) { kc[i] = FRND(); vc[i] = FRND(); }
        const bool f16 = it % 2;
        fp16_t *k16, *v16;
        const op_kv kv = test_cache(kc, vc, stride * nkv, stride, f16, &k16, &v16);
        cpu_set_level(CPU_LEVEL_SCALAR);
        for (int h = 0; h < nrep; h++) op_attention_head(o0 + h * hd, q + h * hd, &kv, nkv, hd, att);
        for (int lv = CPU_LEVEL_SCALAR; lv <= (int)top; lv++) {
            cpu_set_level((enum cpu_level)lv);
            for (int i = 0; i < nrep * hd; i++) o1[i] = NAN;
            op_attention_group(o1, q, nrep, &kv, nkv, hd, att);
            double e = 0;
            for (int i = 0; i < nrep * hd; i++) e = fmax(e, isnan(o1[i]) ? INFINITY : fabs(o1[i] - o0[i]));
            worst = fmax(worst, e);
            CHECKF(e < 3e-6, "level %s n_rep=%d hd=%d n_kv=%d stride=%d %s cache: max error %g",
                   cpu_level_name((enum cpu_level)lv), nrep, hd, nkv, stride, f16 ? "f16" : "f32", e);
        }
        cpu_set_level(top);
        free(q); free(kc); free(vc); free(o0); free(o1); free(att); free(k16); free(v16);
    }
    printf("  grouped attention: max abs error %.2g against the scalar heads\n", worst);
}

// Consecutive tokens of one sequence as the queries: each attends to its own
// number of positions; the result must be op_attention_head's for each one,
// at every level, with queries and outputs strided as rows of a batch.
static void test_attention_queries(void) {
    const enum cpu_level top = cpu_level();
    uint32_t r = 4242;
    double worst = 0;
    for (int it = 0; it < 150; it++) {
        const int nq = 1 + (int)(RND() % 19);
        // The first 8: head_dim 48 and 64 (the kernel's own copies), past 32 positions.
        const int hd = it < 8 ? (it % 2 ? 48 : 64)
                     : it % 4 == 0 ? 1 + (int)(RND() % 70) : 8 * (1 + (int)(RND() % (it % 7 == 0 ? 40 : 16)));
        const int spread = 1 + (int)(RND() % 3), pad = (int)(RND() % 5);
        const int qs = hd * spread + pad, os = hd + (int)(RND() % 9);
        const int first = it < 8 ? 33 + (int)(RND() % 200) : 1 + (int)(RND() % (it % 5 == 0 ? 300 : 30));
        int nkv[19];
        for (int i = 0; i < nq; i++) nkv[i] = first + i;   // a prompt: each token one position further
        if (it % 6 == 5) for (int i = 0; i < nq; i++) nkv[i] = 1 + (int)(RND() % (first + nq));   // any limits
        const int maxkv = first + nq, stride = hd + (int)(RND() % 9);
        float *q = malloc(sizeof(float) * (size_t)(nq * qs)), *kc = malloc(sizeof(float) * (size_t)(stride * maxkv));
        float *vc = malloc(sizeof(float) * (size_t)(stride * maxkv)), *o0 = malloc(sizeof(float) * (size_t)(nq * os));
        float *o1 = malloc(sizeof(float) * (size_t)(nq * os)), *att = malloc(sizeof(float) * 8 * (size_t)maxkv);
        for (int i = 0; i < nq * qs; i++) q[i] = FRND() * 3;
        for (int i = 0; i < stride * maxkv; i++) { kc[i] = FRND(); vc[i] = FRND(); }
        const bool f16 = it % 2;
        fp16_t *k16, *v16;
        const op_kv kv = test_cache(kc, vc, stride * maxkv, stride, f16, &k16, &v16);
        for (int i = 0; i < nq * os; i++) o0[i] = 7.0f;   // the gaps between output rows stay untouched
        cpu_set_level(CPU_LEVEL_SCALAR);
        for (int h = 0; h < nq; h++) op_attention_head(o0 + h * os, q + h * qs, &kv, nkv[h], hd, att);
        for (int lv = CPU_LEVEL_SCALAR; lv <= (int)top; lv++) {
            cpu_set_level((enum cpu_level)lv);
            for (int i = 0; i < nq * os; i++) o1[i] = 7.0f;
            for (int h = 0; h < nq; h++)
                for (int i = 0; i < hd; i++) o1[h * os + i] = NAN;
            op_attention_queries(o1, os, q, qs, nq, nkv, &kv, hd, att);
            double e = 0;
            for (int i = 0; i < nq * os; i++) e = fmax(e, isnan(o1[i]) ? INFINITY : fabs(o1[i] - o0[i]));
            worst = fmax(worst, e);
            CHECKF(e < 3e-6, "level %s nq=%d hd=%d first n_kv=%d %s cache: max error %g",
                   cpu_level_name((enum cpu_level)lv), nq, hd, first, f16 ? "f16" : "f32", e);
        }
        cpu_set_level(top);
        free(q); free(kc); free(vc); free(o0); free(o1); free(att); free(k16); free(v16);
    }
    printf("  attention of consecutive queries: max abs error %.2g against the scalar heads\n", worst);
}

static void test_silu_add(void) {
    float a[4] = {-2, 0, 1, 3}, b[4] = {1, 2, 3, 4}, c[4];
    float d[4];
    memcpy(c, a, sizeof a);
    op_silu_mul(c, c, b, 4);   // in place
    for (int i = 0; i < 4; i++) CHECK(fabs(c[i] - a[i] / (1 + exp(-a[i])) * b[i]) < 1e-6);
    op_silu_mul(d, a, b, 4);   // out of place: the same values, a kept
    CHECK(!memcmp(c, d, sizeof c) && a[0] == -2 && a[3] == 3);
    op_add(a, b, 4);
    CHECK(a[0] == -1 && a[3] == 7);
}

// Every SIMD level against the scalar code over random sizes (tails
// included): softmax, SwiGLU and attention heads of several widths.
static void test_levels(void) {
    const enum cpu_level top = cpu_level();
    uint32_t r = 12345;
    for (int it = 0; it < 200; it++) {
        const int n = 1 + (int)(RND() % 300), hd = 1 + (int)(RND() % 140), nkv = 1 + (int)(RND() % 70);
        const int stride = hd + (int)(RND() % 9);
        float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n), *a0 = malloc(sizeof(float) * n);
        float *s0 = malloc(sizeof(float) * n), *s1 = malloc(sizeof(float) * n);
        float *q = malloc(sizeof(float) * hd), *kc = malloc(sizeof(float) * stride * nkv), *vc = malloc(sizeof(float) * stride * nkv);
        float *o0 = malloc(sizeof(float) * hd), *o1 = malloc(sizeof(float) * hd), *att = malloc(sizeof(float) * nkv);
        for (int i = 0; i < n; i++) { a[i] = FRND() * 12; b[i] = FRND(); s0[i] = s1[i] = FRND() * 30; }
        for (int i = 0; i < hd; i++) q[i] = FRND() * 3;
        for (int i = 0; i < stride * nkv; i++) { kc[i] = FRND(); vc[i] = FRND(); }
        memcpy(a0, a, sizeof(float) * n);
        cpu_set_level(CPU_LEVEL_SCALAR);
        op_silu_mul(a0, a0, b, n);
        op_softmax(s0, n);
        const bool f16 = it % 2;   // odd rounds: an f16 cache (kc, vc rounded to the same values)
        fp16_t *k16, *v16;
        const op_kv kv = test_cache(kc, vc, stride * nkv, stride, f16, &k16, &v16);
        op_attention_head(o0, q, &kv, nkv, hd, att);
        if (f16) {   // the scalar f16 path is the f32 one on the widened values, bit for bit
            const op_kv k32 = {kc, vc, stride, false};
            op_attention_head(o1, q, &k32, nkv, hd, att);
            CHECKF(!memcmp(o0, o1, sizeof(float) * (size_t)hd), "f16 cache, scalar: hd=%d nkv=%d", hd, nkv);
        }
        for (int lv = CPU_LEVEL_AVX2; lv <= (int)top; lv++) {
            cpu_set_level((enum cpu_level)lv);
            float *a1 = malloc(sizeof(float) * n), *s2 = malloc(sizeof(float) * n);
            memcpy(s2, s1, sizeof(float) * n);
            op_silu_mul(a1, a, b, n);   // out of place here, in place in the scalar round
            op_softmax(s2, n);
            op_attention_head(o1, q, &kv, nkv, hd, att);
            double es = 0, ea = 0, eo = 0;
            for (int i = 0; i < n; i++) {
                es = fmax(es, fabs(a1[i] - a0[i]) / (fabs(a0[i]) + 1e-6));
                ea = fmax(ea, fabs(s2[i] - s0[i]) / (s0[i] + 1e-30));
            }
            for (int i = 0; i < hd; i++) eo = fmax(eo, fabs(o1[i] - o0[i]));
            // Observed: about 3e-7 for each.
            CHECKF(es < 2e-6 && ea < 2e-6 && eo < 3e-6,
                   "level %s n=%d hd=%d nkv=%d %s cache: silu %g softmax %g attention %g",
                   cpu_level_name((enum cpu_level)lv), n, hd, nkv, f16 ? "f16" : "f32", es, ea, eo);
            free(a1); free(s2);
        }
        cpu_set_level(top);
        free(a); free(b); free(a0); free(s0); free(s1); free(q); free(kc); free(vc); free(o0); free(o1); free(att);
        free(k16); free(v16);
    }
}

// Writing the cache: f16 elements are fp32_to_fp16's (round to nearest
// even, subnormals, overflow to inf) at every level; f32 ones are copies.
static void test_kv_store(void) {
    const enum cpu_level top = cpu_level();
    float x[67];
    for (int i = 0; i < 67; i++) x[i] = ldexpf(sinf((float)i * 1.3f), (i % 40) - 28);   // 2^-28 .. 2^11
    x[3] = 65520.0f;         // rounds past the largest half: inf
    x[4] = -1e-8f;           // below the smallest subnormal half: -0
    x[5] = 1.0f + 0x1p-11f;  // a tie: to even (1.0)
    x[6] = INFINITY;
    for (int lv = CPU_LEVEL_SCALAR; lv <= (int)top; lv++) {
        cpu_set_level((enum cpu_level)lv);
        fp16_t h[67];
        float f[67];
        op_kv_store(h, x, 67, true);
        op_kv_store(f, x, 67, false);
        for (int i = 0; i < 67; i++)
            CHECKF(h[i] == fp32_to_fp16(x[i]) && f[i] == x[i], "level %s element %d (%g): %04x", cpu_level_name((enum cpu_level)lv),
                   i, (double)x[i], h[i]);
        CHECK(h[3] == 0x7c00 && h[4] == 0x8000 && h[5] == 0x3c00 && h[6] == 0x7c00);
    }
    cpu_set_level(top);
}

// The AVX2 row operations (norm, rope, add) give the scalar loops' bits,
// in place or not, for lengths with and without a tail of 8.
static void test_row_ops_levels(void) {
    const enum cpu_level top = cpu_level();
    uint32_t r = 4242;
    for (int it = 0; it < 200; it++) {
        const int n = it < 80 ? 1 + it : (int[]){288, 768, 2048, 4096, 5632}[it % 5] + (int)(RND() % 9);
        float *x = malloc(sizeof(float) * (size_t)n), *w = malloc(sizeof(float) * (size_t)n);
        float *o[2], *a[2], *ro[2];
        for (int i = 0; i < n; i++) { x[i] = FRND() * (1 + it % 7) * 10; w[i] = 0.5f + FRND(); }
        const int hd = 2 * (1 + (int)(RND() % 64)), nh = 1 + (int)(RND() % 4), nrot = 2 * (1 + (int)(RND() % (hd / 2)));
        float *cs = malloc(sizeof(float) * (size_t)nrot);
        op_rope_table(cs, nrot, (int)(RND() % 4096), 10000.0f);
        for (int k = 0; k < 2; k++) {   // k = 0: scalar, 1: the top level
            cpu_set_level(k ? top : CPU_LEVEL_SCALAR);
            o[k] = malloc(sizeof(float) * (size_t)n);
            op_rmsnorm(o[k], x, w, n, 1e-5f);
            a[k] = malloc(sizeof(float) * (size_t)n);
            memcpy(a[k], x, sizeof(float) * (size_t)n);
            op_add(a[k], w, n);
            op_rmsnorm(a[k], a[k], w, n, 1e-6f);   // in place
            ro[k] = malloc(sizeof(float) * (size_t)(nh * hd));
            for (int i = 0; i < nh * hd; i++) ro[k][i] = x[i % n] + (float)i;
            op_rope(ro[k], nh, hd, nrot, cs);
        }
        cpu_set_level(top);
        CHECKF(!memcmp(o[0], o[1], sizeof(float) * (size_t)n), "rmsnorm n=%d: levels differ", n);
        CHECKF(!memcmp(a[0], a[1], sizeof(float) * (size_t)n), "add + rmsnorm in place n=%d: levels differ", n);
        CHECKF(!memcmp(ro[0], ro[1], sizeof(float) * (size_t)(nh * hd)), "rope heads=%d hd=%d n_rot=%d: levels differ", nh,
               hd, nrot);
        for (int k = 0; k < 2; k++) { free(o[k]); free(a[k]); free(ro[k]); }
        free(x); free(w); free(cs);
    }
}

int main(void) {
    RUN(test_rmsnorm);
    RUN(test_rope);
    RUN(test_softmax_attention);
    RUN(test_silu_add);
    RUN(test_levels);
    RUN(test_attention_group);
    RUN(test_attention_queries);
    RUN(test_kv_store);
    RUN(test_row_ops_levels);
    return harness_done();
}
