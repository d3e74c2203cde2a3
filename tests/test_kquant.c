// test_kquant.c — the Q4_K / Q6_K formats and products: a hand-packed block
// decodes as the documented layout says; quantize → dequantize error stays
// within stated bounds; every SIMD level's product matches the scalar
// reference over random shapes split across simulated threads; and the
// product agrees with a float product of the dequantized weights up to the
// activation quantization. End to end: models written by `gguf synth` in
// K-quant types give nearly the logits of the same weights in f32.
#include "harness.h"
#include <unistd.h>
#include "compute/cpu.h"
#include "compute/kquant.h"
#include "compute/matmul.h"
#include "compute/quant.h"
#include "model/llama.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)(rng >> 16); }
static float frnd(void) { return (float)rnd() / 65536.0f / 32768.0f * 2.0f - 1.0f; }
static float grnd(void) { return (frnd() + frnd() + frnd() + frnd()) * 0.8660254f; }   // ~N(0, 1)

// A Q4_K block packed by hand from the layout in kquant.h (ggml's
// get_scale_min_k4), with scales and mins that use all 6 bits.
static void test_q4K_layout(void) {
    block_q4_K b;
    memset(&b, 0, sizeof b);
    const int sc[8] = {1, 63, 17, 32, 45, 5, 60, 33}, mn[8] = {62, 0, 31, 48, 7, 63, 16, 40};
    for (int j = 0; j < 4; j++) {
        b.scales[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        b.scales[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        b.scales[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
    b.d = fp32_to_fp16(0.5f);
    b.dmin = fp32_to_fp16(0.25f);
    int q[256];
    for (int i = 0; i < 256; i++) {
        q[i] = (i * 7 + 3) % 16;
        const int c = i / 64, l = i % 64;
        b.qs[32 * c + l % 32] |= (uint8_t)(l < 32 ? q[i] : q[i] << 4);
    }
    float y[256];
    dequantize_row_q4_K(&b, y, 256);
    int bad = 0;
    for (int i = 0; i < 256; i++) bad += y[i] != 0.5f * sc[i / 32] * q[i] - 0.25f * mn[i / 32];
    CHECKF(bad == 0, "%d values differ", bad);
}

// A Q6_K block packed by hand: value i has code (i·11) mod 64 and group
// scale (g·19 − 140) clamped to int8.
static void test_q6K_layout(void) {
    block_q6_K b;
    memset(&b, 0, sizeof b);
    int q[256], sc[16];
    for (int g = 0; g < 16; g++) { sc[g] = g * 19 - 140; if (sc[g] < -128) sc[g] = -128; if (sc[g] > 127) sc[g] = 127; b.scales[g] = (int8_t)sc[g]; }
    for (int i = 0; i < 256; i++) {
        q[i] = (i * 11) % 64;
        const int h = i / 128, r = i % 128, k = r / 32, l = r % 32;
        b.ql[64 * h + (k & 1) * 32 + l] |= (uint8_t)((q[i] & 15) << (k >= 2 ? 4 : 0));
        b.qh[32 * h + l] |= (uint8_t)((q[i] >> 4) << (2 * k));
    }
    b.d = fp32_to_fp16(0.125f);
    float y[256];
    dequantize_row_q6_K(&b, y, 256);
    int bad = 0;
    for (int i = 0; i < 256; i++) bad += y[i] != 0.125f * sc[i / 16] * (q[i] - 32);
    CHECKF(bad == 0, "%d values differ", bad);
}

// RMS error of quantize → dequantize relative to the RMS of the data, for
// normal data of several magnitudes (measured: q4_k 0.035, q6_k 0.014,
// q4_0 0.066; the bounds leave some room). Q4_K must also beat Q4_0 on the
// same data.
static double rt_error(enum ggml_type type, const float *x, int64_t n, float *y, void *buf) {
    quantize_row(type, x, buf, n);
    dequantize_row(type, buf, y, n);
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) { e += (double)(y[i] - x[i]) * (y[i] - x[i]); s += (double)x[i] * x[i]; }
    return sqrt(e / s);
}

static void test_roundtrip(void) {
    const int64_t n = 256 * 64;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    void *buf = malloc((size_t)n * 4);
    REQUIRE(x && y && buf);
    const float mags[] = {1e-3f, 0.02f, 1.0f, 300.0f};
    for (int m = 0; m < 4; m++) {
        for (int64_t i = 0; i < n; i++) x[i] = grnd() * mags[m] + (i / 256 % 5 == 0 ? mags[m] : 0.0f);   // some blocks off-centre
        const double e4 = rt_error(GGML_TYPE_Q4_K, x, n, y, buf), e6 = rt_error(GGML_TYPE_Q6_K, x, n, y, buf);
        const double e40 = rt_error(GGML_TYPE_Q4_0, x, n, y, buf);
        CHECKF(e4 < 0.045, "q4_k relative RMS error %g at magnitude %g", e4, mags[m]);
        CHECKF(e6 < 0.02, "q6_k relative RMS error %g at magnitude %g", e6, mags[m]);
        CHECKF(e4 < e40, "q4_k error %g not below q4_0's %g", e4, e40);
        fprintf(stderr, "  magnitude %g: relative RMS error q4_k %.4f, q6_k %.4f (q4_0 %.4f)\n", mags[m], e4, e6, e40);
    }
    // All-zero and constant super-blocks decode exactly.
    for (int64_t i = 0; i < 512; i++) x[i] = i < 256 ? 0.0f : -0.75f;
    for (int t = 0; t < 2; t++) {
        const enum ggml_type type = t ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K;
        quantize_row(type, x, buf, 512);
        dequantize_row(type, buf, y, 512);
        int bad = 0;
        for (int64_t i = 0; i < 512; i++) bad += fabsf(y[i] - x[i]) > 1e-3f;
        CHECKF(bad == 0, "%s: %d values of zero/constant blocks off", ggml_type_name(type), bad);
    }
    free(x); free(y); free(buf);
}

static void run_split(const mm_weight *w, const float *x, int64_t T, float *y, void *wd, int nth) {
    for (int i = 0; i < nth; i++) mm_prepare(w, x, T, wd, i, nth);
    for (int i = 0; i < nth; i++) mm_compute(w, x, wd, T, y, i, nth);
}

// Every SIMD level against the scalar reference: the activations must be
// quantized bit for bit alike, and the products differ only by the order of
// float additions (relative to Σ|w·x|, below 1e-5).
static void check_kernels(enum ggml_type type, int iters, bool model_shapes) {
    const enum cpu_level top = cpu_level();
    const int64_t shapes[][3] = {{768, 288, 1}, {2048, 256, 1}, {2048, 64, 13}, {5632, 48, 2}, {768, 100, 37}};
    for (int it = 0; it < iters; it++) {
        int64_t K = 256 * (1 + rnd() % 8), N = 1 + rnd() % 41, T = 1 + rnd() % (it % 3 ? 9 : 40);
        if (model_shapes) { K = shapes[it][0]; N = shapes[it][1]; T = shapes[it][2]; }
        const int nth = 1 + (int)(rnd() % 3);
        float *wf = malloc(sizeof(float) * (size_t)(N * K)), *x = malloc(sizeof(float) * (size_t)(T * K));
        float *wdq = malloc(sizeof(float) * (size_t)(N * K));
        const size_t rowb = ggml_nbytes(type, K);
        uint8_t *wq = malloc(rowb * (size_t)N);
        float *ref = malloc(sizeof(float) * (size_t)(T * N)), *y = malloc(sizeof(float) * (size_t)(T * N));
        float *y2 = malloc(sizeof(float) * (size_t)(T * N));
        const size_t wds = mm_wdata_size(type, K, T), wda = (wds + 63) & ~(size_t)63;
        uint8_t *wd0 = aligned_alloc(64, wda), *wd1 = aligned_alloc(64, wda);
        REQUIRE(wf && x && wdq && wq && ref && y && y2 && wd0 && wd1);
        for (int64_t i = 0; i < N * K; i++) wf[i] = grnd() * 0.02f;
        for (int64_t i = 0; i < T * K; i++) x[i] = grnd() * (rnd() % 50 == 0 ? 40.0f : 1.0f);
        if (rnd() % 2) memset(x, 0, 256 * sizeof(float));   // a zero super-block
        for (int64_t r = 0; r < N; r++) quantize_row(type, wf + r * K, wq + (size_t)r * rowb, K);
        dequantize_row(type, wq, wdq, N * K);
        mm_weight w = {.type = type, .data = wq, .K = K, .N = N};

        cpu_set_level(CPU_LEVEL_SCALAR);
        memset(wd0, 0, wda);
        run_split(&w, x, T, ref, wd0, 1);
        // The reference against the float product of the dequantized weights:
        // only the 8-bit activations differ, each by at most half its block's
        // step amax/127, so |error| ≤ Σ|w|·step/2 (plus float rounding).
        double worst_f = 0;
        for (int64_t t = 0; t < T; t++)
            for (int64_t r = 0; r < N; r++) {
                double exact = 0, mag = 0, bound = 0;
                for (int64_t b = 0; b < K / 256; b++) {
                    float amax = 0;
                    for (int k = 0; k < 256; k++) amax = fmaxf(amax, fabsf(x[t * K + b * 256 + k]));
                    for (int k = 0; k < 256; k++) bound += fabs((double)wdq[r * K + b * 256 + k]) * (amax / 127.0) / 2;
                }
                for (int64_t k = 0; k < K; k++) {
                    exact += (double)wdq[r * K + k] * x[t * K + k];
                    mag += fabs((double)wdq[r * K + k]) * fabs(x[t * K + k]);
                }
                const double e = fabs(ref[t * N + r] - exact) / (bound * 1.001 + 1e-5 * mag + 1e-30);
                if (!(e <= worst_f)) worst_f = e;
            }
        CHECKF(worst_f <= 1.0, "%s K=%lld N=%lld T=%lld: scalar product vs float: error %g of the bound", ggml_type_name(type),
               (long long)K, (long long)N, (long long)T, worst_f);
        for (int lv = CPU_LEVEL_AVX2; lv <= (int)top; lv++) {
            cpu_set_level((enum cpu_level)lv);
            memset(wd1, 0, wda);
            for (int64_t i = 0; i < T * N; i++) y[i] = NAN;
            run_split(&w, x, T, y, wd1, nth);
            // Every level above AVX2 computes the AVX2 path's integers with
            // its float steps: the same bits.
            if (lv == CPU_LEVEL_AVX2) memcpy(y2, y, sizeof(float) * (size_t)(T * N));
            else {
                const int64_t at = harness_first_diff(y, y2, T * N);
                CHECKF(at < 0, "%s K=%lld N=%lld T=%lld level %s: output %lld is %.9g, the AVX2 path's %.9g", ggml_type_name(type),
                       (long long)K, (long long)N, (long long)T, cpu_level_name((enum cpu_level)lv), (long long)at,
                       at < 0 ? 0.0 : (double)y[at], at < 0 ? 0.0 : (double)y2[at]);
            }
            // (Batches of 8+ tokens are packed in another layout on the SIMD path.)
            CHECKF(T >= 8 || !memcmp(wd0, wd1, wds), "%s K=%lld T=%lld: activation blocks differ at level %s", ggml_type_name(type),
                   (long long)K, (long long)T, cpu_level_name((enum cpu_level)lv));
            double worst = 0;
            for (int64_t t = 0; t < T; t++)
                for (int64_t r = 0; r < N; r++) {
                    double mag = 0;
                    for (int64_t k = 0; k < K; k++) mag += fabs((double)wdq[r * K + k] * x[t * K + k]);
                    const double e = fabs((double)y[t * N + r] - ref[t * N + r]) / (mag + 1e-30);
                    if (!(e <= worst)) worst = e;   // NaN (an unwritten output) counts as worst
                }
            CHECKF(worst < 1e-5, "%s K=%lld N=%lld T=%lld threads=%d level %s: relative error %g", ggml_type_name(type),
                   (long long)K, (long long)N, (long long)T, nth, cpu_level_name((enum cpu_level)lv), worst);
        }
        cpu_set_level(top);
        free(wf); free(x); free(wdq); free(wq); free(ref); free(y); free(y2); free(wd0); free(wd1);
    }
}

static void test_q4K_kernels(void) { check_kernels(GGML_TYPE_Q4_K, 150, false); }
static void test_q6K_kernels(void) { check_kernels(GGML_TYPE_Q6_K, 150, false); }
static void test_model_shapes(void) {
    check_kernels(GGML_TYPE_Q4_K, 5, true);
    check_kernels(GGML_TYPE_Q6_K, 5, true);
}

// Logits after a 12-token prompt (one prefill batch) and after one more
// token (a decode step), n_vocab each into l0 and l1.
static int two_steps(const char *path, float *l0, float *l1, int *n_vocab) {
    char err[512];
    llama_model *m = llama_load(path, err, sizeof err);
    if (!m) { fprintf(stderr, "  %s\n", err); return -1; }
    llama_ctx_params cp = {.n_ctx = 64, .n_seq = 1, .n_batch = 16, .n_threads = 2};
    llama_ctx *c = llama_ctx_new(m, &cp, err, sizeof err);
    if (!c) { fprintf(stderr, "  %s\n", err); llama_free(m); return -1; }
    const int32_t prompt[13] = {1, 9038, 2501, 263, 931, 727, 471, 263, 2217, 7826, 4257, 365, 2354};
    int32_t pos[13], seq[13] = {0};
    for (int i = 0; i < 13; i++) pos[i] = i;
    *n_vocab = m->hp.n_vocab;
    llama_batch b = {.n_tokens = 12, .token = prompt, .pos = pos, .seq = seq};
    int rc = llama_decode(c, &b, err, sizeof err);
    if (!rc) memcpy(l0, llama_logits(c, 0), sizeof(float) * (size_t)*n_vocab);
    llama_batch b1 = {.n_tokens = 1, .token = prompt + 12, .pos = pos + 12, .seq = seq};
    if (!rc) rc = llama_decode(c, &b1, err, sizeof err);
    if (!rc) memcpy(l1, llama_logits(c, 0), sizeof(float) * (size_t)*n_vocab);
    if (rc) fprintf(stderr, "  %s\n", err);
    llama_ctx_free(c);
    llama_free(m);
    return rc;
}

static double rel_rms(const float *a, const float *ref, int n) {
    double e = 0, s = 0;
    for (int i = 0; i < n; i++) { e += (double)(a[i] - ref[i]) * (a[i] - ref[i]); s += (double)ref[i] * ref[i]; }
    return sqrt(e / s);
}

// The tiny256 shape (every row whole super-blocks) synthesised in f32 and in
// each K-quant type from the same seed: the quantized models' logits must
// stay within a relative RMS distance of the f32 model's (bounds about
// twice what was measured; q8_0 shown for scale), for prefill and decode.
#define NT 6
static void test_synth_vs_f32(void) {
    const char *bin = getenv("LLMSCOPE_BIN");
    char dir[] = "/tmp/llmscope-kq-XXXXXX", cmd[2048], path[NT][512];
    REQUIRE(mkdtemp(dir));
    const char *types[NT] = {"f32", "q8_0", "q4_0", "q6_k", "q4_k_m", "q4_k"};
    const double bound[NT] = {0, 1, 1, 0.08, 0.25, 0.25};
    double err[NT] = {0};
    float *ref0 = NULL, *ref1 = NULL;
    int nv = 0;
    for (int i = 0; i < NT; i++) {
        snprintf(path[i], sizeof path[i], "%s/%s.gguf", dir, types[i]);
        snprintf(cmd, sizeof cmd, "%s/llmscope gguf synth --shape tiny256 --type %s --vocab %s --seed 5 -o %s >/dev/null",
                 bin && *bin ? bin : "build/bin", types[i], harness_model("vocab/ggml-vocab-llama-spm.gguf"), path[i]);
        CHECKF(system(cmd) == 0, "%s", cmd);
        float *l0 = malloc(sizeof(float) * 32000), *l1 = malloc(sizeof(float) * 32000);
        REQUIRE(l0 && l1);
        CHECKF(two_steps(path[i], l0, l1, &nv) == 0 && nv <= 32000, "%s", types[i]);
        if (i == 0) { ref0 = l0; ref1 = l1; continue; }
        const double e0 = rel_rms(l0, ref0, nv), e1 = rel_rms(l1, ref1, nv);
        fprintf(stderr, "  %-6s logits vs f32: relative RMS %.4f (prefill), %.4f (decode)\n", types[i], e0, e1);
        CHECKF(e0 < bound[i] && e1 < bound[i], "%s: %g / %g", types[i], e0, e1);
        err[i] = e0 + e1;
        free(l0); free(l1);
    }
    // More bits, closer: q6_k < q4_k_m < q4_k < q4_0.
    CHECK(err[3] < err[4] && err[4] < err[5] && err[5] < err[2]);
    free(ref0); free(ref1);
    for (int i = 0; i < NT; i++) unlink(path[i]);
    rmdir(dir);
}

int main(void) {
    char cpu[256];
    cpu_describe(cpu, sizeof cpu);
    fprintf(stderr, "  cpu: %s\n", cpu);
    RUN(test_q4K_layout);
    RUN(test_q6K_layout);
    RUN(test_roundtrip);
    RUN(test_q4K_kernels);
    RUN(test_q6K_kernels);
    RUN(test_model_shapes);
    RUN(test_synth_vs_f32);
    return harness_done();
}
