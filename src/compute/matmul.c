// matmul.c — y = x · Wᵀ for f32/f16/bf16/q8_0/q4_0 weights (see matmul.h).
//
// Quantized weights: mm_prepare() quantizes each activation row to 8-bit
// blocks of 32 (the q8_0 rule) into wdata, laid out per row as
//   [K int8 values][K/32 × 8 floats: each block's scale repeated 8 times]
// so a 512-bit load gives the scales of two blocks lane-aligned with the
// int32 sums of those blocks. mm_compute() gives each thread a slice of the
// weight rows and walks it once for every group of up to 4 tokens, so a
// weight block fetched from memory serves several tokens (prefill) and
// decode streams the weights exactly once.
//
// Paths: scalar (reference, used by tests), AVX2+FMA+F16C, AVX-512
// (F/BW/VL/DQ, with VNNI dot products when present). Chosen per call from
// cpu_level(). No allocation (but mm_simple), no locks.
#include "matmul.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "quant.h"
#include "threadpool.h"
#include "../util/util.h"

#define TILE_T 4   // tokens per pass over a weight row

static inline int64_t xq_stride(int64_t K) {   // bytes per prepared activation row
    int64_t s = K + (K / 32) * 8 * (int64_t)sizeof(float);
    return (s + 63) & ~(int64_t)63;
}

static bool is_quant(enum ggml_type t) { return t == GGML_TYPE_Q8_0 || t == GGML_TYPE_Q4_0; }

size_t mm_wdata_size(enum ggml_type type, int64_t K, int64_t T) {
    return is_quant(type) ? (size_t)(xq_stride(K) * T) + 64 : 0;
}

static void prep_row(const float *x, int64_t K, uint8_t *dst) {
    int8_t *qs = (int8_t *)dst;
    float *ds = (float *)(dst + K);
    for (int64_t b = 0; b < K / 32; b++) {
        const float *v = x + b * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) { float a = v[j] < 0 ? -v[j] : v[j]; if (a > amax) amax = a; }
        // The scale is rounded through fp16 as in q8_0, so results match ggml's.
        const float d = fp16_to_fp32(fp32_to_fp16(amax / 127.0f));
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 32; j++) {
            float q = v[j] * id;
            qs[b * 32 + j] = (int8_t)(q >= 0 ? (int)(q + 0.5f) : -(int)(-q + 0.5f));
        }
        for (int j = 0; j < 8; j++) ds[b * 8 + j] = d;
    }
}

void mm_prepare(const mm_weight *w, const float *x, int64_t T, void *wdata, int ith, int nth) {
    if (!is_quant(w->type)) return;
    long t0, t1;
    tp_split(T, ith, nth, 1, &t0, &t1);
    const int64_t st = xq_stride(w->K);
    for (long t = t0; t < t1; t++) prep_row(x + t * w->K, w->K, (uint8_t *)wdata + t * st);
}

// ---- scalar reference ------------------------------------------------------

static float dot_f32_scalar(enum ggml_type type, const void *row, const float *x, int64_t K) {
    double s = 0.0;   // accumulates in double: the reference for the SIMD paths
    if (type == GGML_TYPE_F32) {
        const float *r = row;
        for (int64_t k = 0; k < K; k++) s += (double)r[k] * x[k];
    } else if (type == GGML_TYPE_F16) {
        const fp16_t *r = row;
        for (int64_t k = 0; k < K; k++) s += (double)fp16_to_fp32(r[k]) * x[k];
    } else {
        const bf16_t *r = row;
        for (int64_t k = 0; k < K; k++) s += (double)bf16_to_fp32(r[k]) * x[k];
    }
    return (float)s;
}

static float dot_q_scalar(enum ggml_type type, const void *row, const uint8_t *xq, int64_t K) {
    const int8_t *qs = (const int8_t *)xq;
    const float *ds = (const float *)(xq + K);
    float s = 0.0f;
    for (int64_t b = 0; b < K / 32; b++) {
        int32_t acc = 0;
        float dw;
        if (type == GGML_TYPE_Q8_0) {
            const block_q8_0 *blk = (const block_q8_0 *)row + b;
            for (int j = 0; j < 32; j++) acc += blk->qs[j] * qs[b * 32 + j];
            dw = fp16_to_fp32(blk->d);
        } else {
            const block_q4_0 *blk = (const block_q4_0 *)row + b;
            for (int j = 0; j < 16; j++) {
                acc += ((blk->qs[j] & 0x0f) - 8) * qs[b * 32 + j];
                acc += ((blk->qs[j] >> 4) - 8) * qs[b * 32 + 16 + j];
            }
            dw = fp16_to_fp32(blk->d);
        }
        s += dw * ds[b * 8] * (float)acc;
    }
    return s;
}

// ---- AVX2 ------------------------------------------------------------------

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

AVX2_TARGET static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2_TARGET static inline __m256i load_wq_avx2(enum ggml_type type, const void *row, int64_t b) {
    if (type == GGML_TYPE_Q8_0) return _mm256_loadu_si256((const __m256i *)((const block_q8_0 *)row + b)->qs);
    const block_q4_0 *blk = (const block_q4_0 *)row + b;
    __m128i q = _mm_loadu_si128((const __m128i *)blk->qs);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    v = _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
    return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
}

AVX2_TARGET static inline fp16_t block_d(enum ggml_type type, const void *row, int64_t b) {
    return type == GGML_TYPE_Q8_0 ? ((const block_q8_0 *)row + b)->d : ((const block_q4_0 *)row + b)->d;
}

// out[t] = row · x_t for nt (<= TILE_T) prepared activation rows.
AVX2_TARGET static void dot_q_avx2(enum ggml_type type, const void *row, const uint8_t *const *xq, int nt,
                                   int64_t K, float *out) {
    __m256 acc[TILE_T];
    for (int t = 0; t < TILE_T; t++) acc[t] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < K / 32; b++) {
        __m256i w = load_wq_avx2(type, row, b);
        __m256i aw = _mm256_sign_epi8(w, w);
        __m256 dw = _mm256_set1_ps(_cvtsh_ss(block_d(type, row, b)));
        for (int t = 0; t < nt; t++) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(xq[t] + b * 32));
            __m256i sx = _mm256_sign_epi8(x, w);
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
            __m256 dx = _mm256_loadu_ps((const float *)(xq[t] + K) + b * 8);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw, dx), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = hsum256(acc[t]);
}

AVX2_TARGET static inline __m256 load8_avx2(enum ggml_type type, const void *row, int64_t k) {
    if (type == GGML_TYPE_F32) return _mm256_loadu_ps((const float *)row + k);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + k));
    if (type == GGML_TYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AVX2_TARGET static void dot_f_avx2(enum ggml_type type, const void *row, const float *const *x, int nt,
                                   int64_t K, float *out) {
    __m256 acc[TILE_T];
    for (int t = 0; t < TILE_T; t++) acc[t] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 w = load8_avx2(type, row, k);
        for (int t = 0; t < nt; t++) acc[t] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x[t] + k), acc[t]);
    }
    for (int t = 0; t < nt; t++) {
        float s = hsum256(acc[t]);
        for (int64_t j = k; j < K; j++) {
            float wv = type == GGML_TYPE_F32 ? ((const float *)row)[j]
                     : type == GGML_TYPE_F16 ? fp16_to_fp32(((const fp16_t *)row)[j]) : bf16_to_fp32(((const bf16_t *)row)[j]);
            s += wv * x[t][j];
        }
        out[t] = s;
    }
}

// ---- AVX-512 ---------------------------------------------------------------

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define AVX512VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

AVX512_TARGET static inline __m512i load_wq2_avx512(enum ggml_type type, const void *row, int64_t b) {
    __m256i lo = load_wq_avx2(type, row, b), hi = load_wq_avx2(type, row, b + 1);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

AVX512_TARGET static inline __m512 load_d2_avx512(enum ggml_type type, const void *row, int64_t b) {
    __m256i h = _mm256_setr_m128i(_mm_set1_epi16((short)block_d(type, row, b)),
                                  _mm_set1_epi16((short)block_d(type, row, b + 1)));
    return _mm512_cvtph_ps(h);
}

// Pairs of blocks per 512-bit step; an odd last block goes through 256-bit code.
#define DEF_DOT_Q_AVX512(NAME, TARGET, DPBUSD)                                                             \
    TARGET static void NAME(enum ggml_type type, const void *row, const uint8_t *const *xq, int nt,        \
                            int64_t K, float *out) {                                                     \
        __m512 acc[TILE_T];                                                                              \
        for (int t = 0; t < TILE_T; t++) acc[t] = _mm512_setzero_ps();                                   \
        const int64_t nb = K / 32;                                                                       \
        int64_t b = 0;                                                                                   \
        for (; b + 2 <= nb; b += 2) {                                                                    \
            __m512i w = load_wq2_avx512(type, row, b);                                                   \
            __m512i aw = _mm512_abs_epi8(w);                                                             \
            __mmask64 neg = _mm512_movepi8_mask(w);                                                      \
            __m512 dw = load_d2_avx512(type, row, b);                                                    \
            for (int t = 0; t < nt; t++) {                                                               \
                __m512i x = _mm512_loadu_si512((const void *)(xq[t] + b * 32));                          \
                __m512i sx = _mm512_mask_sub_epi8(x, neg, _mm512_setzero_si512(), x);                    \
                __m512i p = DPBUSD(aw, sx);                                                              \
                __m512 dx = _mm512_loadu_ps((const float *)(xq[t] + K) + b * 8);                         \
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, dx), acc[t]);          \
            }                                                                                            \
        }                                                                                                \
        for (int t = 0; t < nt; t++) out[t] = _mm512_reduce_add_ps(acc[t]);                              \
        if (b < nb) {                                                                                    \
            float tail[TILE_T];                                                                          \
            tail_q(type, row, xq, nt, K, b, tail);                                                       \
            for (int t = 0; t < nt; t++) out[t] += tail[t];                                              \
        }                                                                                                \
    }

// The last block of an odd count (scalar; at most one block per row).
static void tail_q(enum ggml_type type, const void *row, const uint8_t *const *xq, int nt, int64_t K, int64_t b,
                   float *out) {
    for (int t = 0; t < nt; t++) {
        const int8_t *qs = (const int8_t *)xq[t] + b * 32;
        const float dx = ((const float *)(xq[t] + K))[b * 8];
        int32_t acc = 0;
        float dw;
        if (type == GGML_TYPE_Q8_0) {
            const block_q8_0 *blk = (const block_q8_0 *)row + b;
            for (int j = 0; j < 32; j++) acc += blk->qs[j] * qs[j];
            dw = fp16_to_fp32(blk->d);
        } else {
            const block_q4_0 *blk = (const block_q4_0 *)row + b;
            for (int j = 0; j < 16; j++) acc += ((blk->qs[j] & 0x0f) - 8) * qs[j] + ((blk->qs[j] >> 4) - 8) * qs[16 + j];
            dw = fp16_to_fp32(blk->d);
        }
        out[t] = dw * dx * (float)acc;
    }
}

AVX512_TARGET static inline __m512i dpbusd_bw(__m512i a, __m512i b) {
    return _mm512_madd_epi16(_mm512_maddubs_epi16(a, b), _mm512_set1_epi16(1));
}
AVX512VNNI_TARGET static inline __m512i dpbusd_vnni(__m512i a, __m512i b) {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), a, b);
}

DEF_DOT_Q_AVX512(dot_q_avx512, AVX512_TARGET, dpbusd_bw)
DEF_DOT_Q_AVX512(dot_q_avx512vnni, AVX512VNNI_TARGET, dpbusd_vnni)

AVX512_TARGET static inline __m512 load16_avx512(enum ggml_type type, const void *row, int64_t k) {
    if (type == GGML_TYPE_F32) return _mm512_loadu_ps((const float *)row + k);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k));
    if (type == GGML_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AVX512_TARGET static void dot_f_avx512(enum ggml_type type, const void *row, const float *const *x, int nt,
                                       int64_t K, float *out) {
    __m512 acc[TILE_T];
    for (int t = 0; t < TILE_T; t++) acc[t] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 w = load16_avx512(type, row, k);
        for (int t = 0; t < nt; t++) acc[t] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x[t] + k), acc[t]);
    }
    for (int t = 0; t < nt; t++) {
        float s = _mm512_reduce_add_ps(acc[t]);
        for (int64_t j = k; j < K; j++) {
            float wv = type == GGML_TYPE_F32 ? ((const float *)row)[j]
                     : type == GGML_TYPE_F16 ? fp16_to_fp32(((const fp16_t *)row)[j]) : bf16_to_fp32(((const bf16_t *)row)[j]);
            s += wv * x[t][j];
        }
        out[t] = s;
    }
}

// ---- dispatch ----------------------------------------------------------------

typedef void (*dot_q_fn)(enum ggml_type, const void *, const uint8_t *const *, int, int64_t, float *);
typedef void (*dot_f_fn)(enum ggml_type, const void *, const float *const *, int, int64_t, float *);

static void dot_q_scalar_tile(enum ggml_type type, const void *row, const uint8_t *const *xq, int nt, int64_t K,
                              float *out) {
    for (int t = 0; t < nt; t++) out[t] = dot_q_scalar(type, row, xq[t], K);
}

static void dot_f_scalar_tile(enum ggml_type type, const void *row, const float *const *x, int nt, int64_t K,
                              float *out) {
    for (int t = 0; t < nt; t++) out[t] = dot_f32_scalar(type, row, x[t], K);
}

void mm_compute(const mm_weight *w, const float *x, const void *wdata, int64_t T, float *y, int ith, int nth) {
    const enum cpu_level lv = cpu_level();
    const int64_t K = w->K, N = w->N;
    const size_t rowb = (size_t)ggml_nbytes(w->type, K);
    long r0, r1;
    tp_split(N, ith, nth, 4, &r0, &r1);
    if (r0 >= r1) return;
    float out[TILE_T];
    if (is_quant(w->type)) {
        dot_q_fn fn = dot_q_scalar_tile;
        if (lv >= CPU_LEVEL_AVX512) fn = cpu_get_features()->avx512_vnni ? dot_q_avx512vnni : dot_q_avx512;
        else if (lv >= CPU_LEVEL_AVX2) fn = dot_q_avx2;
        const int64_t st = xq_stride(K);
        for (int64_t t0 = 0; t0 < T; t0 += TILE_T) {
            const int nt = (int)(T - t0 < TILE_T ? T - t0 : TILE_T);
            const uint8_t *xs[TILE_T];
            for (int t = 0; t < nt; t++) xs[t] = (const uint8_t *)wdata + (t0 + t) * st;
            for (long r = r0; r < r1; r++) {
                const char *row = (const char *)w->data + (size_t)r * rowb;
                if (r + 2 < r1) __builtin_prefetch(row + 2 * rowb);
                fn(w->type, row, xs, nt, K, out);
                for (int t = 0; t < nt; t++) y[(t0 + t) * N + r] = out[t];
            }
        }
    } else {
        dot_f_fn fn = dot_f_scalar_tile;
        if (lv >= CPU_LEVEL_AVX512) fn = dot_f_avx512;
        else if (lv >= CPU_LEVEL_AVX2) fn = dot_f_avx2;
        for (int64_t t0 = 0; t0 < T; t0 += TILE_T) {
            const int nt = (int)(T - t0 < TILE_T ? T - t0 : TILE_T);
            const float *xs[TILE_T];
            for (int t = 0; t < nt; t++) xs[t] = x + (t0 + t) * K;
            for (long r = r0; r < r1; r++) {
                fn(w->type, (const char *)w->data + (size_t)r * rowb, xs, nt, K, out);
                for (int t = 0; t < nt; t++) y[(t0 + t) * N + r] = out[t];
            }
        }
    }
}

int mm_simple(const mm_weight *w, const float *x, int64_t T, float *y) {
    size_t sz = mm_wdata_size(w->type, w->K, T);
    void *wd = NULL;
    if (sz && posix_memalign(&wd, 64, sz) != 0) return -1;
    mm_prepare(w, x, T, wd, 0, 1);
    mm_compute(w, x, wd, T, y, 0, 1);
    free(wd);
    return 0;
}

// ---- memory bandwidth --------------------------------------------------------

typedef struct bw_arg {
    const uint8_t *buf;
    size_t bytes;
    volatile uint64_t sink[64];
} bw_arg;

AVX2_TARGET static uint64_t read_avx2(const uint8_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a0 = _mm256_xor_si256(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_xor_si256(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_xor_si256(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_xor_si256(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    a0 = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    return (uint64_t)_mm256_extract_epi64(a0, 0) ^ (uint64_t)_mm256_extract_epi64(a0, 3);
}

static uint64_t read_scalar(const uint8_t *p, size_t n) {
    uint64_t s = 0;
    for (size_t i = 0; i + 8 <= n; i += 8) { uint64_t v; memcpy(&v, p + i, 8); s ^= v; }
    return s;
}

static void bw_worker(int ith, int nth, void *p) {
    bw_arg *a = p;
    long b, e;
    tp_split((long)(a->bytes / 4096), ith, nth, 1, &b, &e);
    const uint8_t *s = a->buf + (size_t)b * 4096;
    size_t n = (size_t)(e - b) * 4096;
    a->sink[ith & 63] = cpu_level() >= CPU_LEVEL_AVX2 ? read_avx2(s, n) : read_scalar(s, n);
}

static void bw_touch(int ith, int nth, void *p) {   // first touch by the reading thread
    bw_arg *a = p;
    long b, e;
    tp_split((long)(a->bytes / 4096), ith, nth, 1, &b, &e);
    memset((uint8_t *)a->buf + (size_t)b * 4096, ith + 1, (size_t)(e - b) * 4096);
}

double mm_measure_read_bw(struct tp_pool *pool, size_t bytes, int reps) {
    bw_arg a = {.bytes = bytes & ~(size_t)4095};
    void *buf = NULL;
    if (a.bytes == 0 || reps < 1 || posix_memalign(&buf, 4096, a.bytes) != 0) return 0.0;
    a.buf = buf;
    tp_run(pool, bw_touch, &a);
    tp_run(pool, bw_worker, &a);   // warm-up
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        uint64_t t0 = util_now_ns();
        tp_run(pool, bw_worker, &a);
        double s = (double)(util_now_ns() - t0) / 1e9;
        if (s > 0 && a.bytes / s > best) best = (double)a.bytes / s;
    }
    free(buf);
    return best;
}
