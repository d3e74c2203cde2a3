// test_ops.c — the forward pass's small operations against direct
// double-precision formulas.
#include "harness.h"
#include "compute/ops.h"

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
    op_attention_head(out, q, kc, vc, stride, n, hd, att);
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

static void test_silu_add(void) {
    float a[4] = {-2, 0, 1, 3}, b[4] = {1, 2, 3, 4}, c[4];
    memcpy(c, a, sizeof a);
    op_silu_mul(c, b, 4);
    for (int i = 0; i < 4; i++) CHECK(fabs(c[i] - a[i] / (1 + exp(-a[i])) * b[i]) < 1e-6);
    op_add(a, b, 4);
    CHECK(a[0] == -1 && a[3] == 7);
}

int main(void) {
    RUN(test_rmsnorm);
    RUN(test_rope);
    RUN(test_softmax_attention);
    RUN(test_silu_add);
    return harness_done();
}
