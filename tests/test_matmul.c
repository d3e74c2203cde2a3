// test_matmul.c — the matrix products at every SIMD level the machine has
// against the scalar reference, over randomized shapes with ragged tails
// (rows not a multiple of the tile, tokens not a multiple of the tile, float
// rows not a multiple of the vector width), split across simulated threads.
#include "harness.h"
#include "compute/cpu.h"
#include "compute/kquant.h"
#include "compute/matmul.h"
#include "compute/quant.h"
#include "compute/threadpool.h"

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)(rng >> 16); }
static float frnd(void) { return (float)rnd() / 65536.0f / 32768.0f * 2.0f - 1.0f; }

// Runs prepare + compute the way the forward pass does: nth threads, each
// preparing its tokens, then each computing its rows (here one after another).
static void run_split(const mm_weight *w, const float *x, int64_t T, float *y, void *wd, int nth) {
    for (int i = 0; i < nth; i++) mm_prepare(w, x, T, wd, i, nth);
    for (int i = 0; i < nth; i++) mm_compute(w, x, wd, T, y, i, nth);
}

static void check_type(enum ggml_type type, int iters) {
    const enum cpu_level top = cpu_level();
    const bool q = type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0;
    for (int it = 0; it < iters; it++) {
        const int64_t K = q ? 32 * (1 + rnd() % 24) : 1 + rnd() % 300;
        const int64_t N = 1 + rnd() % 41;
        const int64_t T = 1 + rnd() % (it % 3 ? 11 : 72);   // from 9: token groups in pairs on widened rows
        const int nth = 1 + (int)(rnd() % 3);
        float *wf = malloc(sizeof(float) * (size_t)(N * K));
        float *x = malloc(sizeof(float) * (size_t)(T * K));
        const size_t rowb = ggml_nbytes(type, K);
        uint8_t *wq = malloc(rowb * (size_t)N);
        float *ref = malloc(sizeof(float) * (size_t)(T * N)), *y = malloc(sizeof(float) * (size_t)(T * N));
        size_t wds = mm_wdata_size(type, K, T);
        const size_t wda = (wds + 64 + 63) & ~(size_t)63;   // aligned_alloc wants a multiple of the alignment
        uint8_t *wd0 = aligned_alloc(64, wda), *wd1 = aligned_alloc(64, wda);
        REQUIRE(wf && x && wq && ref && y && wd0 && wd1);
        for (int64_t i = 0; i < N * K; i++) wf[i] = frnd();
        // Activations with an outlier now and then (a block's scale set by one value) and zero blocks.
        for (int64_t i = 0; i < T * K; i++) x[i] = frnd() * (rnd() % 50 == 0 ? 40.0f : 1.0f);
        if (K >= 64 && rnd() % 2) memset(x + 32, 0, 32 * sizeof(float));
        for (int64_t r = 0; r < N; r++) quantize_row(type, wf + r * K, wq + (size_t)r * rowb, K);
        // A file may hold q8_0 values of −128, which quantize_row never writes.
        if (type == GGML_TYPE_Q8_0 && rnd() % 2)
            for (int64_t i = 0; i < N * K / 16; i++) {
                const int64_t e = rnd() % (N * K);
                ((block_q8_0 *)wq)[e / 32].qs[e % 32] = -128;
                wf[e] = -128.0f * fp16_to_fp32(((block_q8_0 *)wq)[e / 32].d);
            }
        mm_weight w = {.type = type, .data = wq, .K = K, .N = N};

        cpu_set_level(CPU_LEVEL_SCALAR);
        memset(wd0, 0, wds + 64);
        run_split(&w, x, T, ref, wd0, 1);
        float *y2 = malloc(sizeof(float) * (size_t)(T * N));
        REQUIRE(y2);
        for (int lv = CPU_LEVEL_AVX2; lv <= (int)top; lv++) {
            cpu_set_level((enum cpu_level)lv);
            memset(wd1, 0, wds + 64);
            for (int64_t i = 0; i < T * N; i++) y[i] = NAN;
            run_split(&w, x, T, y, wd1, nth);
            // The activations are quantized bit for bit as the scalar code does
            // (from 8 tokens on the SIMD path packs them in another layout).
            CHECKF(!q || T >= 8 || !memcmp(wd0, wd1, wds), "%s K=%lld T=%lld: activation blocks differ at level %s",
                   ggml_type_name(type), (long long)K, (long long)T, cpu_level_name((enum cpu_level)lv));
            double worst = 0;
            for (int64_t t = 0; t < T; t++)
                for (int64_t r = 0; r < N; r++) {
                    // Scale of the sum: Σ|w·x| bounds the rounding of any summation order.
                    double mag = 0;
                    for (int64_t k = 0; k < K; k++) mag += fabs((double)wf[r * K + k] * x[t * K + k]);
                    double e = fabs((double)y[t * N + r] - ref[t * N + r]) / (mag + 1e-30);
                    if (!(e <= worst)) worst = e;   // NaN (an unwritten output) counts as worst
                }
            CHECKF(worst < 1e-5, "%s K=%lld N=%lld T=%lld threads=%d level %s: relative error %g",
                   ggml_type_name(type), (long long)K, (long long)N, (long long)T, nth,
                   cpu_level_name((enum cpu_level)lv), worst);
            // Batches (packed activations): the AVX-512 kernels (VNNI where
            // present) give the AVX2 kernels' results bit for bit: exact
            // integer block sums, the same float steps in the same order.
            if (q && T >= 8 && lv == CPU_LEVEL_AVX2) memcpy(y2, y, sizeof(float) * (size_t)(T * N));
            if (q && T >= 8 && lv > CPU_LEVEL_AVX2) {
                const int64_t diff = harness_first_diff(y, y2, T * N);
                CHECKF(diff < 0, "%s K=%lld N=%lld T=%lld level %s: token %lld row %lld is %.9g, AVX2's %.9g",
                       ggml_type_name(type), (long long)K, (long long)N, (long long)T,
                       cpu_level_name((enum cpu_level)lv), (long long)(diff / N), (long long)(diff % N),
                       diff < 0 ? 0.0 : y[diff], diff < 0 ? 0.0 : y2[diff]);
            }
        }
        cpu_set_level(top);
        // With the block sums attached (the model loader does it where the
        // kernels use them): the same bits again.
        const size_t sb = mm_block_sums_size(&w);
        if (sb && T >= 8) {
            uint8_t *bsum = malloc(sb);
            REQUIRE(bsum);
            mm_block_sums(&w, bsum);
            w.bsum = bsum;
            memset(wd1, 0, wds + 64);
            for (int64_t i = 0; i < T * N; i++) y[i] = NAN;
            run_split(&w, x, T, y, wd1, nth);
            const int64_t diff = harness_first_diff(y, y2, T * N);
            CHECKF(diff < 0, "q8_0 with block sums K=%lld N=%lld T=%lld: token %lld row %lld is %.9g, AVX2's %.9g",
                   (long long)K, (long long)N, (long long)T, (long long)(diff / N), (long long)(diff % N),
                   diff < 0 ? 0.0 : y[diff], diff < 0 ? 0.0 : y2[diff]);
            free(bsum);
        }
        free(wf); free(x); free(wq); free(ref); free(y); free(y2); free(wd0); free(wd1);
    }
}

static void test_q8_0(void) { check_type(GGML_TYPE_Q8_0, 300); }
static void test_q4_0(void) { check_type(GGML_TYPE_Q4_0, 300); }
static void test_f32(void) { check_type(GGML_TYPE_F32, 100); }
static void test_f16(void) { check_type(GGML_TYPE_F16, 100); }
static void test_bf16(void) { check_type(GGML_TYPE_BF16, 100); }

// Decode-sized and prefill-sized shapes of the real models (one token; a
// batch of 13), where the row and token tiles are full.
static void test_model_shapes(void) {
    const enum cpu_level top = cpu_level();
    // {96, 50, 150}, {256, 60, 290}: more tokens than one output block of the
    // widened tiles (OB_T = 128), the second with an odd token group and an
    // output block of fewer than 24 rows; {8192, 30, 20}: the longest rows
    // widened ahead (STRIP_K), {8224, 30, 20}: rows widened inside the tile.
    const int64_t shapes[][3] = {{288, 768, 1},   {768, 288, 13},  {2048, 256, 5},  {64, 4 * 8 + 3, 9},
                                 {256, 100, 37},  {96, 50, 150},   {256, 60, 290},  {8192, 30, 20},
                                 {8224, 30, 20},  {768, 64, 8}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ty = 0; ty < 2; ty++) {
            enum ggml_type type = ty ? GGML_TYPE_Q4_0 : GGML_TYPE_Q8_0;
            const int64_t K = shapes[s][0], N = shapes[s][1], T = shapes[s][2];
            float *wf = malloc(sizeof(float) * (size_t)(N * K)), *x = malloc(sizeof(float) * (size_t)(T * K));
            const size_t rowb = ggml_nbytes(type, K);
            uint8_t *wq = malloc(rowb * (size_t)N);
            float *ref = malloc(sizeof(float) * (size_t)(T * N)), *y = malloc(sizeof(float) * (size_t)(T * N));
            REQUIRE(wf && x && wq && ref && y);
            for (int64_t i = 0; i < N * K; i++) wf[i] = frnd();
            for (int64_t i = 0; i < T * K; i++) x[i] = frnd();
            for (int64_t r = 0; r < N; r++) quantize_row(type, wf + r * K, wq + (size_t)r * rowb, K);
            mm_weight w = {.type = type, .data = wq, .K = K, .N = N};
            cpu_set_level(CPU_LEVEL_SCALAR);
            REQUIRE(mm_simple(&w, x, T, ref) == 0);
            cpu_set_level(top);
            uint8_t *bsum = NULL;   // q8_0: as the model loader attaches them
            if (mm_block_sums_size(&w)) {
                REQUIRE((bsum = malloc(mm_block_sums_size(&w))));
                mm_block_sums(&w, bsum);
                w.bsum = bsum;
            }
            REQUIRE(mm_simple(&w, x, T, y) == 0);
            free(bsum);
            double worst = 0;
            for (int64_t i = 0; i < T * N; i++) {
                double e = fabs((double)y[i] - ref[i]) / (fabs(ref[i]) + 1.0);
                if (!(e <= worst)) worst = e;
            }
            CHECKF(worst < 1e-4, "%s %lldx%lld T=%lld: error %g", ggml_type_name(type), (long long)K, (long long)N,
                   (long long)T, worst);
            free(wf); free(x); free(wq); free(ref); free(y);
        }
}

// Products whose rows threads draw from shared counters (as the forward
// pass runs them): two products in one barrier interval, a third after a
// barrier, on a real pool of 3 threads, equal bit for bit to one thread
// computing all rows. Then with one thread that never draws from the first
// product's counters: the other two must take over its share. K-quants too
// (K = 256: one super-block a row).
typedef struct shared_job {
    tp_pool *pool;
    const mm_weight *w[3];
    const float *x;
    int64_t T;
    void *wd;
    float *y[3];
    int absent;   // this thread skips the first product (-1: none)
} shared_job;

static void shared_worker(int ith, int nth, void *arg) {
    shared_job *j = arg;
    mm_prepare(j->w[0], j->x, j->T, j->wd, ith, nth);
    tp_barrier(j->pool);
    _Atomic int *c0 = tp_shared_counter(j->pool);
    if (ith != j->absent) mm_compute_shared(j->w[0], j->x, j->wd, j->T, j->y[0], c0, ith, nth);
    mm_compute_shared(j->w[1], j->x, j->wd, j->T, j->y[1], tp_shared_counter(j->pool), ith, nth);
    tp_barrier(j->pool);
    mm_compute_shared(j->w[2], j->x, j->wd, j->T, j->y[2], tp_shared_counter(j->pool), ith, nth);
}

static void test_shared_rows(void) {
    tp_pool *pool = tp_create(3, "mmtest");
    REQUIRE(pool);
    const int64_t Ts[] = {1, 5, 20};
    const enum ggml_type types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    for (int ty = 0; ty < 4; ty++)
        for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
            const enum ggml_type type = types[ty];
            const int64_t K = 256, T = Ts[ti];
            const int64_t Ns[3] = {1000 + rnd() % 500, 700 + rnd() % 300, 2000 + rnd() % 100};
            const size_t rowb = ggml_nbytes(type, K);
            float *x = malloc(sizeof(float) * (size_t)(T * K)), *wf = malloc(sizeof(float) * (size_t)K);
            REQUIRE(x && wf);
            for (int64_t i = 0; i < T * K; i++) x[i] = frnd();
            mm_weight w[3];
            float *y[3], *ref[3];
            for (int k = 0; k < 3; k++) {
                uint8_t *wq = malloc(rowb * (size_t)Ns[k]);
                y[k] = malloc(sizeof(float) * (size_t)(T * Ns[k]));
                ref[k] = malloc(sizeof(float) * (size_t)(T * Ns[k]));
                REQUIRE(wq && y[k] && ref[k]);
                for (int64_t r = 0; r < Ns[k]; r++) {
                    for (int64_t i = 0; i < K; i++) wf[i] = frnd();
                    quantize_row(type, wf, wq + (size_t)r * rowb, K);
                }
                w[k] = (mm_weight){.type = type, .data = wq, .K = K, .N = Ns[k]};
                REQUIRE(mm_simple(&w[k], x, T, ref[k]) == 0);
                for (int64_t i = 0; i < T * Ns[k]; i++) y[k][i] = NAN;
            }
            const size_t wds = (mm_wdata_size(type, K, T) + 63) & ~(size_t)63;
            void *wd = aligned_alloc(64, wds);
            REQUIRE(wd);
            shared_job j = {pool, {&w[0], &w[1], &w[2]}, x, T, wd, {y[0], y[1], y[2]}, -1};
            for (int rep = 0; rep < 5; rep++) {   // the counters start from zero on every run
                j.absent = rep < 3 ? -1 : rep - 3;   // then thread 0, then thread 1 skips product 0
                for (int k = 0; k < 3; k++)
                    for (int64_t i = 0; i < T * Ns[k]; i++) y[k][i] = NAN;
                tp_run(pool, shared_worker, &j);
                for (int k = 0; k < 3; k++)
                    CHECKF(!memcmp(y[k], ref[k], sizeof(float) * (size_t)(T * Ns[k])),
                           "%s T=%lld product %d (N=%lld), thread %d absent, differs from one thread's",
                           ggml_type_name(type), (long long)T, k, (long long)Ns[k], j.absent);
            }
            for (int k = 0; k < 3; k++) { free((void *)w[k].data); free(y[k]); free(ref[k]); }
            free(wd); free(x); free(wf);
        }
    tp_free(pool);
}

// The activation quantizer's rule (matmul.c's scalar path): scale amax/127
// rounded through fp16, |x/scale| + 0.5 truncated, the sign put back.
static float act_quant_ref(const float *v, int8_t q[32]) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fabsf(v[j]) > amax ? fabsf(v[j]) : amax;
    const float d = fp16_to_fp32(fp32_to_fp16(amax / 127.0f)), id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++) {
        const float p = v[j] * id;
        q[j] = (int8_t)(p >= 0 ? (int)(p + 0.5f) : -(int)(-p + 0.5f));
    }
    return d;
}

// The packed activations of a batch (AVX2 and up, from 8 tokens) hold
// exactly that rule's values and scales, in the layout matmul.c documents:
// with q8_0 weights and more than 8 tokens on AVX2 (no AVX-512 VNNI), per
// block and group of 8 tokens 16 words of [8 tokens × 2 int16] then the 8
// scales (f32); else 8 quads of [8 tokens × 4 int8], the 8 scales, then
// 8·Σq per token. Lanes past the last token are zero tokens with scale 0.
static void test_packed_activations(void) {
    const enum cpu_level top = cpu_level();
    if (top < CPU_LEVEL_AVX2) {
        fprintf(stderr, "  no AVX2 here: the packed layout is not used, nothing to check\n");
        return;
    }
    int checked = 0;
    for (int it = 0; it < 160; it++) {
        const enum cpu_level lv = it % 4 >= 2 && top >= CPU_LEVEL_AVX512 ? CPU_LEVEL_AVX512 : CPU_LEVEL_AVX2;
        cpu_set_level(lv);
        const bool vnni = lv >= CPU_LEVEL_AVX512 && cpu_get_features()->avx512_vnni;
        const enum ggml_type type = it % 2 ? GGML_TYPE_Q4_0 : GGML_TYPE_Q8_0;
        const int64_t K = 32 * (1 + rnd() % 24), T = it % 8 < 2 ? 8 : 8 + rnd() % 30;
        const bool wide = type == GGML_TYPE_Q8_0 && T > 8 && !vnni;   // int16 pairs, else int8 quads
        const int64_t nb = K / 32, pk = wide ? 16 * 32 + 32 : 8 * 32 + 32 + 32, gb = nb * pk;
        float *x = malloc(sizeof(float) * (size_t)(T * K));
        int8_t *rq = malloc((size_t)K);
        float *rd = malloc(sizeof(float) * (size_t)nb);
        const size_t wds = mm_wdata_size(type, K, T);
        uint8_t *wd = aligned_alloc(64, (wds + 63) & ~(size_t)63);
        REQUIRE(x && rq && rd && wd);
        for (int64_t i = 0; i < T * K; i++) {
            x[i] = frnd() * (rnd() % 40 == 0 ? 50.0f : 1.0f);
            if (it % 5 == 0) x[i] = (float)((int)(x[i] * 8)) / 4.0f;   // ties of the rounding
        }
        if (K >= 64) memset(x + K + 32, 0, 32 * sizeof(float));   // a zero block (token 1)
        memset(wd, 0xA5, wds);
        const mm_weight w = {.type = type, .data = NULL, .K = K, .N = 1};
        mm_prepare(&w, x, T, wd, 0, 2);   // the two threads' shares of the groups
        mm_prepare(&w, x, T, wd, 1, 2);
        for (int64_t t = 0; t < (T + 7) / 8 * 8; t++) {
            if (t < T)
                for (int64_t b = 0; b < nb; b++) rd[b] = act_quant_ref(x + t * K + b * 32, rq + b * 32);
            const int j = (int)(t % 8);
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = wd + (t / 8) * gb + b * pk;
                float d;
                memcpy(&d, blk + (wide ? 16 : 8) * 32 + j * 4, 4);
                const float dref = t < T ? rd[b] : 0.0f;
                CHECKF(d == dref, "%s K=%lld T=%lld token %lld block %lld: scale %g, the rule's %g",
                       ggml_type_name(type), (long long)K, (long long)T, (long long)t, (long long)b, d, dref);
                int32_t sum = 0;
                for (int e = 0; e < 32; e++) {
                    int v;
                    if (wide) {
                        int16_t h;
                        memcpy(&h, blk + (e / 2) * 32 + j * 4 + (e % 2) * 2, 2);
                        v = h;
                    } else v = (int8_t)blk[(e / 4) * 32 + j * 4 + e % 4];
                    const int vref = t < T ? rq[b * 32 + e] : 0;
                    sum += v;
                    CHECKF(v == vref, "%s K=%lld T=%lld token %lld block %lld element %d: %d, the rule's %d",
                           ggml_type_name(type), (long long)K, (long long)T, (long long)t, (long long)b, e, v, vref);
                    checked++;
                }
                if (!wide) {
                    int32_t s8;
                    memcpy(&s8, blk + 8 * 32 + 32 + j * 4, 4);
                    CHECKF(s8 == 8 * sum, "%s K=%lld T=%lld token %lld block %lld: 8·Σq %d, expected %d",
                           ggml_type_name(type), (long long)K, (long long)T, (long long)t, (long long)b, s8, 8 * sum);
                }
            }
        }
        free(x); free(rq); free(rd); free(wd);
    }
    cpu_set_level(top);
    fprintf(stderr, "  packed activations: %d values equal to the rule's\n", checked);
}

// q8_0 and q4_0 weights rewritten in strips of 16 rows (mm_to_strips), as the model
// loader does where the kernels read them: the layout matmul.h documents,
// the scalar code's results bit for bit (levels below AVX-512 VNNI read
// strips with it), and with VNNI the packed kernels' results bit for bit
// from 8 tokens on, one token alone the same bits as in a batch, and every
// batch within the reference's rounding.
typedef struct strip_job {
    tp_pool *pool;
    const mm_weight *w;
    const float *x;
    int64_t T;
    void *wd;
    float *y;
} strip_job;

static void strip_worker(int ith, int nth, void *p) {
    strip_job *j = p;
    mm_prepare(j->w, j->x, j->T, j->wd, ith, nth);
    tp_barrier(j->pool);
    mm_compute_shared(j->w, j->x, j->wd, j->T, j->y, tp_shared_counter(j->pool), ith, nth);
}

static void test_strips(void) {
    const enum cpu_level top = cpu_level();
    const bool vnni = top >= CPU_LEVEL_AVX512 && cpu_get_features()->avx512_vnni;
    tp_pool *pool = tp_create(2, "mmstrip");
    REQUIRE(pool);
    int fast = 0;
    const enum ggml_type types[4] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    for (int it = 0; it < 640; it++) {
        const enum ggml_type type = types[it % 4];
        const bool kq = kq_type(type);
        // Q6_K up to 12 super-blocks: batches decode the codes of 8 at a time (ks6_decode).
        const int64_t K = kq ? 256 * (1 + rnd() % (type == GGML_TYPE_Q6_K && (it / 4) % 2 ? 12 : 4)) : 32 * (1 + rnd() % 24);
        const int64_t N = 16 * (1 + rnd() % ((it / 4) % 8 > 1 ? 12 : kq ? 24 : 80));
        const int64_t T = 1 + rnd() % ((it / 4) % 3 ? 11 : 40);
        const int nth = 1 + (int)(rnd() % 3);
        const size_t rowb = ggml_nbytes(type, K);
        float *wf = malloc(sizeof(float) * (size_t)(N * K)), *x = malloc(sizeof(float) * (size_t)(T * K));
        uint8_t *wq = malloc(rowb * (size_t)N), *ws = malloc(rowb * (size_t)N);
        float *ref = malloc(sizeof(float) * (size_t)(T * N)), *y = malloc(sizeof(float) * (size_t)(T * N));
        float *yv = malloc(sizeof(float) * (size_t)(T * N));
        const size_t wds = mm_wdata_size(type, K, T), wda = (wds + 64 + 63) & ~(size_t)63;
        uint8_t *wd = aligned_alloc(64, wda);
        REQUIRE(wf && x && wq && ws && ref && y && yv && wd);
        for (int64_t r = 0; r < N; r++) {
            for (int64_t k = 0; k < K; k++) wf[k] = frnd();
            quantize_row(type, wf, wq + (size_t)r * rowb, K);
        }
        if (type == GGML_TYPE_Q8_0 && rnd() % 2)   // values of −128, which a file may hold: 0 once made unsigned
            for (int64_t i = 0; i < N * K / 16; i++) {
                const int64_t e = rnd() % (N * K);
                ((block_q8_0 *)wq)[e / 32].qs[e % 32] = -128;
            }
        for (int64_t i = 0; i < T * K; i++) x[i] = frnd() * (rnd() % 50 == 0 ? 40.0f : 1.0f);
        for (int64_t r = 0; r < N; r++) dequantize_row(type, wq + (size_t)r * rowb, wf + r * K, K);
        const mm_weight w = {.type = type, .data = wq, .K = K, .N = N};
        memcpy(ws, wq, rowb * (size_t)N);
        mm_weight s = w;
        s.data = ws;
        REQUIRE(mm_to_strips(&s, ws) == 0);
        CHECK(s.strips);
        // The layout: strip r/16, block b at (r/16·nb + b)·16·(block bytes): 16 scales, then 64 bytes
        // for each 4 bytes of the rows' blocks (q8_0's values + 128, q4_0's nibble bytes as they are).
        // Q4_K: 16 d, 16 dmin, scale byte k of the 16 rows at 64 + 16k, then 64 bytes for each 4 bytes of qs.
        // Q6_K: 16 d, scale g of the 16 rows at 32 + 16g, then per half h and quad j 64 bytes each of
        // ql[64h + 4j ..], ql[64h + 32 + 4j ..], qh[32h + 4j ..].
        const int64_t nb = K / (kq ? 256 : 32), bs = kq ? (type == GGML_TYPE_Q6_K ? 210 : 144) : type == GGML_TYPE_Q8_0 ? 34 : 18;
        for (int k = 0; type == GGML_TYPE_Q6_K && k < 16; k++) {
            const int64_t r = rnd() % N, b = rnd() % nb, e = rnd() % 210, i = r % 16;
            const uint8_t *q = wq + (size_t)r * rowb + (size_t)(b * bs);
            const uint8_t *blk = ws + (size_t)((r / 16) * nb + b) * (size_t)(16 * bs);
            const int64_t w64 = e % 64, qh = e - 128;
            const int64_t at = e < 128   ? 288 + 192 * (8 * (e / 64) + (w64 % 32) / 4) + 64 * (w64 / 32) + 4 * i + w64 % 4
                               : e < 192 ? 288 + 192 * (8 * (qh / 32) + (qh % 32) / 4) + 128 + 4 * i + qh % 4
                               : e < 208 ? 32 + 16 * (e - 192) + i
                                         : 2 * i + e - 208;
            CHECKF(blk[at] == q[e], "q6_K strips K=%lld row %lld super-block %lld byte %lld misplaced", (long long)K,
                   (long long)r, (long long)b, (long long)e);
        }
        for (int k = 0; type == GGML_TYPE_Q4_K && k < 16; k++) {
            const int64_t r = rnd() % N, b = rnd() % nb, e = rnd() % 144, i = r % 16;
            const uint8_t *q = wq + (size_t)r * rowb + (size_t)(b * bs);
            const uint8_t *blk = ws + (size_t)((r / 16) * nb + b) * (size_t)(16 * bs);
            const int64_t at = e < 2 ? 2 * i + e : e < 4 ? 32 + 2 * i + e - 2 : e < 16 ? 64 + 16 * (e - 4) + i
                                                                            : 256 + ((e - 16) / 4) * 64 + 4 * i + (e - 16) % 4;
            CHECKF(blk[at] == q[e], "q4_K strips K=%lld row %lld super-block %lld byte %lld misplaced", (long long)K,
                   (long long)r, (long long)b, (long long)e);
        }
        for (int k = 0; !kq && k < 8; k++) {
            const int64_t r = rnd() % N, b = rnd() % nb, e = rnd() % (bs - 2);
            const uint8_t *q = wq + (size_t)r * rowb + (size_t)(b * bs);
            const uint8_t *blk = ws + (size_t)((r / 16) * nb + b) * (size_t)(16 * bs);
            CHECKF(!memcmp(blk + 2 * (r % 16), q, 2), "%s strips K=%lld row %lld block %lld: scale misplaced",
                   ggml_type_name(type), (long long)K, (long long)r, (long long)b);
            CHECKF(blk[32 + (e / 4) * 64 + (r % 16) * 4 + e % 4] == (uint8_t)(q[2 + e] ^ (type == GGML_TYPE_Q8_0 ? 0x80 : 0)),
                   "%s strips K=%lld row %lld block %lld byte %lld misplaced", ggml_type_name(type), (long long)K,
                   (long long)r, (long long)b, (long long)e);
        }
        mm_set_decode_prefetch(it % 8 < 4);   // the one-token kernels with and without their prefetch
        for (int lv = CPU_LEVEL_SCALAR; lv <= (int)top; lv++) {
            cpu_set_level((enum cpu_level)lv);
            const bool v = lv >= CPU_LEVEL_AVX512 && vnni;
            memset(wd, 0, wds + 64);
            run_split(&w, x, T, ref, wd, 1);   // the rows, this level's kernels
            if (lv == CPU_LEVEL_SCALAR) memcpy(yv, ref, sizeof(float) * (size_t)(T * N));
            memset(wd, 0, wds + 64);
            for (int64_t i = 0; i < T * N; i++) y[i] = NAN;
            run_split(&s, x, T, y, wd, nth);
            int64_t diff = harness_first_diff(y, v ? y : yv, T * N);   // below VNNI: the scalar rows' bits
            CHECKF(diff < 0, "%s strips K=%lld N=%lld T=%lld threads=%d level %s: token %lld row %lld is %.9g, rows' %.9g",
                   ggml_type_name(type), (long long)K, (long long)N, (long long)T, nth, cpu_level_name((enum cpu_level)lv),
                   (long long)(diff / N), (long long)(diff % N), diff < 0 ? 0.0 : y[diff], diff < 0 ? 0.0 : yv[diff]);
            if (!v) continue;
            fast++;
            if (T >= 8) {   // the rows' packed kernels, bit for bit
                diff = harness_first_diff(y, ref, T * N);
                CHECKF(diff < 0, "%s strips K=%lld N=%lld T=%lld: token %lld row %lld is %.9g, the rows' kernel %.9g",
                       ggml_type_name(type), (long long)K, (long long)N, (long long)T, (long long)(diff / N), (long long)(diff % N),
                       diff < 0 ? 0.0 : y[diff], diff < 0 ? 0.0 : ref[diff]);
            }
            double worst = 0;   // against the scalar rows, within the rounding of the sums
            for (int64_t t = 0; t < T; t++)
                for (int64_t r = 0; r < N; r++) {
                    double mag = 0;
                    for (int64_t k = 0; k < K; k++) mag += fabs((double)wf[r * K + k] * x[t * K + k]);
                    const double e = fabs((double)y[t * N + r] - yv[t * N + r]) / (mag + 1e-30);
                    if (!(e <= worst)) worst = e;
                }
            CHECKF(worst < 1e-5, "%s strips K=%lld N=%lld T=%lld: relative error %g", ggml_type_name(type), (long long)K, (long long)N,
                   (long long)T, worst);
            if (T > 1) {   // token 0 alone (stile1) gives its bits in the batch (stile8)
                float *y1 = malloc(sizeof(float) * (size_t)N);
                REQUIRE(y1);
                memset(wd, 0, wds + 64);
                run_split(&s, x, 1, y1, wd, nth);
                diff = harness_first_diff(y1, y, N);
                CHECKF(diff < 0, "%s strips K=%lld N=%lld: one token's row %lld is %.9g, in a batch of %lld %.9g",
                       ggml_type_name(type), (long long)K, (long long)N, (long long)diff, diff < 0 ? 0.0 : y1[diff], (long long)T,
                       diff < 0 ? 0.0 : y[diff]);
                free(y1);
            }
            // Rows dealt out in work items over a pool (whole strips each).
            strip_job j = {pool, &s, x, T, wd, yv};
            float *keep = malloc(sizeof(float) * (size_t)(T * N));
            REQUIRE(keep);
            memcpy(keep, yv, sizeof(float) * (size_t)(T * N));
            for (int64_t i = 0; i < T * N; i++) yv[i] = NAN;
            tp_run(pool, strip_worker, &j);
            diff = harness_first_diff(yv, y, T * N);
            CHECKF(diff < 0, "%s strips K=%lld N=%lld T=%lld over a pool: token %lld row %lld is %.9g, one thread's %.9g",
                   ggml_type_name(type), (long long)K, (long long)N, (long long)T, (long long)(diff / N), (long long)(diff % N),
                   diff < 0 ? 0.0 : yv[diff], diff < 0 ? 0.0 : y[diff]);
            memcpy(yv, keep, sizeof(float) * (size_t)(T * N));
            free(keep);
        }
        cpu_set_level(top);
        free(wf); free(x); free(wq); free(ws); free(ref); free(y); free(yv); free(wd);
    }
    tp_free(pool);
    if (!vnni) fprintf(stderr, "  no AVX-512 VNNI here: strips checked with the scalar code only\n");
    else fprintf(stderr, "  strips: %d products checked with the VNNI kernels\n", fast);
}

// The prefetch chooser against step times made up for it: it takes the
// faster arm within a few pairs when the two differ by 20%, keeps it, never
// switches on noise of ±2% or when the arm in use is the faster, and at
// 3% apart switches at most once (towards the faster arm).
static uint64_t pf_time(bool arm_on, double on_ns, double off_ns, uint32_t *seed) {
    *seed = *seed * 1664525u + 1013904223u;
    const double noise = 1.0 + 0.02 * ((double)(*seed >> 8) / (double)(1u << 24) * 2.0 - 1.0);
    return (uint64_t)((arm_on ? on_ns : off_ns) * noise);
}

static void test_decode_prefetch_choice(void) {
    const struct { double on, off; int end_on, switches; } cases[] = {   // end_on 2: either; switches -1: 0 or 1
        {120e3, 100e3, 0, 1},   // off is faster: one switch
        {100e3, 120e3, 1, 0},   // on is faster: none
        {100e3, 100e3, 1, 0},   // the same but for noise: none
        {100e3, 97e3, 2, -1},   // 3% apart: near the 5% it takes; never back
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        mm_pf_ctl p;
        mm_pf_init(&p);
        CHECK(mm_pf_arm(&p));   // on until measured otherwise
        uint32_t seed = 12345u + (uint32_t)k;
        int other_steps = 0, switched_at = -1;
        for (int step = 0; step < 3000; step++) {
            const bool arm = mm_pf_arm(&p);
            if (arm != p.on) other_steps++;
            const int sw = p.switches;
            mm_pf_record(&p, pf_time(arm, cases[k].on, cases[k].off, &seed));
            if (p.switches != sw && switched_at < 0) switched_at = step;
        }
        CHECKF((cases[k].end_on == 2 || p.on == (cases[k].end_on == 1)) &&
                   (cases[k].switches < 0 ? p.switches <= 1 && p.on == (p.switches == 0) : p.switches == cases[k].switches),
               "case %zu: ends %s after %d switches", k, p.on ? "on" : "off", p.switches);
        if (cases[k].switches > 0)
            CHECKF(switched_at >= 0 && switched_at < 6 * (MM_PF_PERIOD + 2), "case %zu: switched at step %d", k, switched_at);
        // One step in MM_PF_PERIOD + 2 runs the other arm.
        CHECKF(other_steps > 3000 / (MM_PF_PERIOD + 2) - 5 && other_steps < 3000 / (MM_PF_PERIOD + 2) + 5,
               "case %zu: %d steps on the other arm", k, other_steps);
        const double med = mm_pf_median(&p), want = p.on ? cases[k].off / cases[k].on : cases[k].on / cases[k].off;
        CHECKF(fabs(med - want) < 0.03, "case %zu: median ratio %.3f, made %.3f", k, med, want);
    }
    mm_set_decode_prefetch(true);
    CHECK(mm_decode_prefetch());
    mm_set_decode_prefetch(false);
    CHECK(!mm_decode_prefetch());
    mm_set_decode_prefetch(true);
}

int main(void) {
    char cpu[256];
    cpu_describe(cpu, sizeof cpu);
    fprintf(stderr, "  cpu: %s\n", cpu);
    RUN(test_q8_0);
    RUN(test_q4_0);
    RUN(test_f32);
    RUN(test_f16);
    RUN(test_bf16);
    RUN(test_model_shapes);
    RUN(test_shared_rows);
    RUN(test_packed_activations);
    RUN(test_strips);
    RUN(test_decode_prefetch_choice);
    return harness_done();
}
