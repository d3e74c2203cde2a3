// ops.c — element-wise and row operations of the forward pass (see ops.h).
// Plain loops are the reference; attention, softmax and SwiGLU, which cost a
// visible share of a small model's pass (an exp per score and per hidden
// unit), also have AVX2 paths chosen from cpu_level(), with an exp accurate
// to a few ulp; RMSNorm, RoPE and the residual add have AVX2 paths that give
// the loops' bits.
#include "ops.h"
#include <immintrin.h>
#include <math.h>
#include <string.h>
#include <stdbool.h>

#include "cpu.h"
#include "quant.h"
#include "simd.h"


// e^x for 8 floats: x = n·ln2 + r with |r| <= ln2/2, e^r by a degree-6
// polynomial (relative error about 2e-7), 2^n put in the exponent. Inputs
// below -87 give 0 (well under float's smallest normal), above 88 inf.
AVX2_TARGET static inline __m256 exp256(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365478515625f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(x, hi);
    x = _mm256_max_ps(x, lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

AVX2_TARGET static inline float hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static void softmax_scalar(float *x, int n) {
    float max = x[0];
    for (int i = 1; i < n; i++) if (x[i] > max) max = x[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - max); sum += x[i]; }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

AVX2_TARGET static void softmax_avx2(float *x, int n) {
    int i = 0;
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
    float max = hmax256(vm);
    for (; i < n; i++) if (x[i] > max) max = x[i];
    const __m256 bm = _mm256_set1_ps(max);
    __m256 vs = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), bm));
        _mm256_storeu_ps(x + i, e);
        vs = _mm256_add_ps(vs, e);
    }
    double sum = hsum256(vs);
    for (; i < n; i++) { x[i] = expf(x[i] - max); sum += x[i]; }
    const __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= (float)(1.0 / sum);
}

// The sum of squares in eight double partial sums, part[j] over elements
// 8k + j: one chain of dependent double adds cost 4 cycles an element (3% of
// a stories15M prefill); the compiler may not reorder the sum itself. The
// AVX2 path keeps the same eight sums in two vectors of four, so the norm is
// bit-identical at both levels. Returns the elements summed (a multiple of 8).
static int sumsq_parts_scalar(const float *x, int n, double part[8]) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) part[j] += (double)x[i + j] * x[i + j];
    return i;
}

AVX2_TARGET static int sumsq_parts_avx2(const float *x, int n, double part[8]) {
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();   // part[0..3], part[4..7]
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256d a = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), b = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        lo = _mm256_add_pd(lo, _mm256_mul_pd(a, a));   // a float's square is exact in double: no fma needed
        hi = _mm256_add_pd(hi, _mm256_mul_pd(b, b));
    }
    _mm256_storeu_pd(part, lo);
    _mm256_storeu_pd(part + 4, hi);
    return i;
}

// out = x · scale · w over whole vectors; returns the elements done.
AVX2_TARGET static int scale_mul_avx2(float *out, const float *x, float scale, const float *w, int n) {
    const __m256 sv = _mm256_set1_ps(scale);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv), _mm256_loadu_ps(w + i)));
    return i;
}

void op_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    const bool simd = cpu_level() >= CPU_LEVEL_AVX2;
    double part[8] = {0};
    int i = simd ? sumsq_parts_avx2(x, n, part) : sumsq_parts_scalar(x, n, part);
    double ss = ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
    for (; i < n; i++) ss += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (i = simd ? scale_mul_avx2(out, x, scale, w, n) : 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

void op_rope_table(float *cs, int n_rot, int pos, float theta) {
    for (int i = 0; i < n_rot / 2; i++) {
        float freq = 1.0f / powf(theta, (float)(2 * i) / (float)n_rot);
        float val = (float)pos * freq;
        cs[2 * i] = cosf(val);
        cs[2 * i + 1] = sinf(val);
    }
}

// Four pairs at a time: v·(c, c) ∓ swap(v)·(s, s) with addsub, the same
// products and sums as the loop (bit-identical). Returns the elements done.
AVX2_TARGET static int rope_avx2(float *v, int n_rot, const float *cs) {
    int i = 0;
    for (; i + 8 <= n_rot; i += 8) {
        const __m256 t = _mm256_loadu_ps(cs + i), a = _mm256_loadu_ps(v + i);
        const __m256 c = _mm256_moveldup_ps(t), s = _mm256_movehdup_ps(t);
        _mm256_storeu_ps(v + i, _mm256_addsub_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(_mm256_permute_ps(a, 0xb1), s)));
    }
    return i;
}

void op_rope(float *x, int n_heads, int head_dim, int n_rot, const float *cs) {
    const bool simd = cpu_level() >= CPU_LEVEL_AVX2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int i = simd ? rope_avx2(v, n_rot, cs) : 0; i < n_rot; i += 2) {
            float c = cs[i], s = cs[i + 1];
            float v0 = v[i], v1 = v[i + 1];
            v[i] = v0 * c - v1 * s;
            v[i + 1] = v0 * s + v1 * c;
        }
    }
}

void op_softmax(float *x, int n) {
    if (cpu_level() >= CPU_LEVEL_AVX2) softmax_avx2(x, n);
    else softmax_scalar(x, n);
}

AVX2_TARGET static void silu_mul_avx2(float *out, const float *a, const float *b, int n) {
    int i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(a + i);
        __m256 e = exp256(_mm256_xor_ps(v, sign));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(v, _mm256_add_ps(one, e)), _mm256_loadu_ps(b + i)));
    }
    for (; i < n; i++) out[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
}

void op_silu_mul(float *out, const float *a, const float *b, int n) {
    if (cpu_level() >= CPU_LEVEL_AVX2) { silu_mul_avx2(out, a, b, n); return; }
    for (int i = 0; i < n; i++) {
        float v = a[i];
        out[i] = v / (1.0f + expf(-v)) * b[i];
    }
}

// Returns the elements done.
AVX2_TARGET static int add_avx2(float *a, const float *b, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(a + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    return i;
}

void op_add(float *a, const float *b, int n) {
    for (int i = cpu_level() >= CPU_LEVEL_AVX2 ? add_avx2(a, b, n) : 0; i < n; i++) a[i] += b[i];
}

// ---- KV cache elements: f32 or f16 -----------------------------------------

static inline __attribute__((always_inline)) const void *kv_ptr(const void *p, int64_t i, bool f16) {
    return (const char *)p + i * (int64_t)op_kv_elem_size(f16);
}

static inline __attribute__((always_inline)) float kv_get(const void *p, int64_t i, bool f16) {
    return f16 ? fp16_to_fp32(((const fp16_t *)p)[i]) : ((const float *)p)[i];
}

// The cache lines of n elements at p, ahead of their use: a KV head's
// positions are one sequential stream, yet the hardware prefetcher left the
// score loop waiting on the keys (measured: half its time at depth 2048).
#define KV_AHEAD 8   // positions ahead
// Grouped attention's score pass asks for the key this many positions on,
// and for that position's values: the values pass after the softmax then
// finds them in cache instead of streaming them from DRAM (TinyLlama Q4_0
// at depth 2048, attention's own time counted in same-process rounds:
// 1.23x for the values, 1.03x more with the keys 16 positions on instead of
// 8, 1.03x with the values into L1 rather than L2; at depth 4000 1.28x for
// all three). Up to KV_PF_GROUP_VALUES bytes of a head's values: they must
// still be in L2 when the pass over the keys ends.
#define KV_GROUP_AHEAD 16
#define KV_PF_GROUP_VALUES (512 * 1024)
#define KV_PF_VALUES 128   // single-query attention prefetches the values up to this many positions

static inline __attribute__((always_inline)) void kv_prefetch(const void *p, int n, bool f16) {
    const int bytes = n * (int)op_kv_elem_size(f16);
    for (int o = 0; o < bytes; o += 64) __builtin_prefetch((const char *)p + o);
}

// kv_prefetch into L2 only (prefetcht1): the values, fetched while the
// scores are computed and used after the softmax.
static inline __attribute__((always_inline)) void kv_prefetch_l2(const void *p, int n, bool f16) {
    const int bytes = n * (int)op_kv_elem_size(f16);
    for (int o = 0; o < bytes; o += 64) __builtin_prefetch((const char *)p + o, 0, 2);
}

// The values only past KV_PF_VALUES positions: up to there both kernels'
// score passes prefetch them, and asking twice cost the batched step
// (stories110M Q8_0, 8 sequences, 64 steps, same-process rounds: without
// the second request 1.02x; 0.97-1.10 in three runs of 12-16 rounds).
void op_kv_prefetch(const op_kv *kv, int n_kv, int head_dim) {
    const int row = head_dim * (int)op_kv_elem_size(kv->f16);
    const int n = row && n_kv * row > OP_KV_PF_BYTES ? OP_KV_PF_BYTES / row : n_kv;
    const bool pv = n_kv > KV_PF_VALUES;
    if (kv->stride == head_dim) {   // the positions one after another: one run of lines each
        kv_prefetch_l2(kv->k, n * head_dim, kv->f16);
        if (pv) kv_prefetch_l2(kv->v, n * head_dim, kv->f16);
        return;
    }
    for (int t = 0; t < n; t++) {
        kv_prefetch_l2(kv_ptr(kv->k, t * kv->stride, kv->f16), head_dim, kv->f16);
        if (pv) kv_prefetch_l2(kv_ptr(kv->v, t * kv->stride, kv->f16), head_dim, kv->f16);
    }
}

// Element i as a float inside the AVX2 kernels: F16C's conversion inline
// (kv_get calls the portable one), for the tails of heads narrower than 8.
AVX2_TARGET static inline __attribute__((always_inline)) float kv_get_f16c(const void *p, int64_t i, bool f16) {
    return f16 ? _cvtsh_ss(((const fp16_t *)p)[i]) : ((const float *)p)[i];
}

// Eight elements at p as floats (F16C widens halves exactly).
AVX2_TARGET static inline __attribute__((always_inline)) __m256 kv_load8(const void *p, bool f16) {
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)) : _mm256_loadu_ps((const float *)p);
}

AVX2_TARGET static void kv_store_avx2(void *dst, const float *src, int n) {
    fp16_t *d = dst;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) d[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);   // inline, as the tails that read them
}

void op_kv_store(void *dst, const float *src, int n, bool f16) {
    if (!f16) {
        memcpy(dst, src, sizeof(float) * (size_t)n);
        return;
    }
    if (cpu_level() >= CPU_LEVEL_AVX2) {
        kv_store_avx2(dst, src, n);
        return;
    }
    fp16_t *d = dst;
    for (int i = 0; i < n; i++) d[i] = fp32_to_fp16(src[i]);
}

// out[0 .. 8w) (+)= Σ_{t0 <= t < t1} p[ps·t] · v[t·stride + 0 .. 8w): the
// output held in registers; added to out when add, else stored. w and f16
// (v's element type) are constants at each call (wsum_chunk dispatches).
AVX2_TARGET static inline __attribute__((always_inline)) void wsum_avx2(float *out, const float *p, int ps,
                                                                      const void *v, bool f16, int64_t stride,
                                                                      int t0, int t1, int w, bool add) {
    __m256 acc[8];
#pragma GCC unroll 8
    for (int j = 0; j < w; j++) acc[j] = add ? _mm256_loadu_ps(out + 8 * j) : _mm256_setzero_ps();
    for (int t = t0; t < t1; t++) {
        const __m256 pt = _mm256_broadcast_ss(p + (int64_t)ps * t);
        const void *vt = kv_ptr(v, t * stride, f16);
#pragma GCC unroll 8
        for (int j = 0; j < w; j++) acc[j] = _mm256_fmadd_ps(pt, kv_load8(kv_ptr(vt, 8 * j, f16), f16), acc[j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < w; j++) _mm256_storeu_ps(out + 8 * j, acc[j]);
}

#define WSUM_CASES(F16)                                                              \
    switch (w) {                                                                     \
    case 8: wsum_avx2(out, p, ps, v, F16, stride, t0, t1, 8, add); break;            \
    case 7: wsum_avx2(out, p, ps, v, F16, stride, t0, t1, 7, add); break;            \
    case 6: wsum_avx2(out, p, ps, v, F16, stride, t0, t1, 6, add); break;            \
    case 5: wsum_avx2(out, p, ps, v, F16, stride, t0, t1, 5, add); break;            \
    case 4: wsum_avx2(out, p, ps, v, F16, stride, t0, t1, 4, add); break;            \
    case 3: wsum_avx2(out, p, ps, v, F16, stride, t0, t1, 3, add); break;            \
    case 2: wsum_avx2(out, p, ps, v, F16, stride, t0, t1, 2, add); break;            \
    default: wsum_avx2(out, p, ps, v, F16, stride, t0, t1, 1, add); break;           \
    }

// wsum_avx2 over w = 1..8 vectors with w and the element type constants in each copy.
AVX2_TARGET static void wsum_chunk(float *out, const float *p, int ps, const void *v, bool f16, int64_t stride,
                                   int t0, int t1, int w, bool add) {
    if (f16) WSUM_CASES(true) else WSUM_CASES(false)
}
#undef WSUM_CASES

// Eight horizontal sums at once: lane r of the result is Σ a[r].
AVX2_TARGET static inline __attribute__((always_inline)) __m256 hsum8x8(const __m256 a[8]) {
    const __m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    const __m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

// Lane r = a_r · b over n (a multiple of 8) elements, for the NR (1..8) rows
// a_r = a + r·as: the scores of up to 8 query heads against one key
// (grouped attention), or of one query against 8 positions' keys. a16 and
// b16: the operand is f16 (a cached key), else f32.
AVX2_TARGET static inline __attribute__((always_inline)) __m256 dots8(int NR, const void *a, bool a16, int64_t as,
                                                                      const void *b, bool b16, int n) {
    __m256 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) acc[r] = _mm256_setzero_ps();
#pragma GCC unroll 16
    for (int c = 0; c < n; c += 8) {
        const __m256 bv = kv_load8(kv_ptr(b, c, b16), b16);
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) acc[r] = _mm256_fmadd_ps(kv_load8(kv_ptr(a, r * as + c, a16), a16), bv, acc[r]);
    }
    return hsum8x8(acc);
}

// Scores as 8-wide dot products (eight positions at a time when head_dim is
// a multiple of 8), the weighted sum of values with the output held in
// registers (head_dim <= 256 in chunks of 64), scalar tails. f16: the
// cache's element type, a constant in each copy. Up to KV_PF_VALUES
// positions, each position's values are prefetched into L2 as its key is
// scored: in batched decode the caches come from DRAM (the weights evict
// them from L3), and the value rows had no prefetch; stories110M Q8_0, 8
// sequences, same-process rounds: 1.01-1.03x over 64 steps from an empty
// context. Longer contexts lose by it (0.96x at 2048 positions, 0.97x at
// 1024, 0.98x at 512: the hardware prefetcher streams the values well
// there), so they keep to the keys' prefetch.
AVX2_TARGET static inline __attribute__((always_inline)) void attention_head_core(float *out, const float *q,
                                                                                const op_kv *kv, int n_kv,
                                                                                int head_dim, float *att, bool f16) {
    const float scale = 1.0f / sqrtf((float)head_dim);
    const int hd8 = head_dim & ~7;
    const int64_t kv_stride = kv->stride;
    const bool pv = n_kv <= KV_PF_VALUES;
    int t0 = 0;
    if (hd8 == head_dim) {   // eight positions at a time: one set of horizontal sums for all eight
        const __m256 sv = _mm256_set1_ps(scale);
        for (; t0 + 8 <= n_kv; t0 += 8) {
            for (int t = t0 + KV_AHEAD; t < t0 + KV_AHEAD + 8; t++) kv_prefetch(kv_ptr(kv->k, t * kv_stride, f16), head_dim, f16);
            if (pv) for (int t = t0; t < t0 + 8; t++) kv_prefetch_l2(kv_ptr(kv->v, t * kv_stride, f16), head_dim, f16);
            _mm256_storeu_ps(att + t0, _mm256_mul_ps(dots8(8, kv_ptr(kv->k, t0 * kv_stride, f16), f16, kv_stride, q,
                                                           false, head_dim), sv));
        }
    }
    for (int t = t0; t < n_kv; t++) {
        const void *k = kv_ptr(kv->k, t * kv_stride, f16);
        if (pv) kv_prefetch_l2(kv_ptr(kv->v, t * kv_stride, f16), head_dim, f16);
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int i = 0;
        for (; i + 16 <= hd8; i += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), kv_load8(kv_ptr(k, i, f16), f16), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), kv_load8(kv_ptr(k, i + 8, f16), f16), a1);
        }
        if (i < hd8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), kv_load8(kv_ptr(k, i, f16), f16), a0);
        float s = hsum256(_mm256_add_ps(a0, a1));
        for (i = hd8; i < head_dim; i++) s += q[i] * kv_get_f16c(k, i, f16);
        att[t] = s * scale;
    }
    softmax_avx2(att, n_kv);
    for (int c = 0; c < hd8; c += 64) {   // up to 64 output values at a time, in registers
        const int w = hd8 - c < 64 ? (hd8 - c) / 8 : 8;
        wsum_chunk(out + c, att, 1, kv_ptr(kv->v, c, f16), f16, kv_stride, 0, n_kv, w, false);
    }
    for (int i = hd8; i < head_dim; i++) {
        float o = 0.0f;
        for (int t = 0; t < n_kv; t++) o += att[t] * kv_get_f16c(kv->v, t * kv_stride + i, f16);
        out[i] = o;
    }
}

AVX2_TARGET static void attention_head_avx2(float *out, const float *q, const op_kv *kv, int n_kv, int head_dim,
                                            float *att) {
    if (kv->f16) attention_head_core(out, q, kv, n_kv, head_dim, att, true);
    else attention_head_core(out, q, kv, n_kv, head_dim, att, false);
}

// out_r[0 .. 16W) (+)= Σ_{t < nt} p[8t + r] · v[t·vs + 0 .. 16W), for the NQ
// (1..8) queries r, out_r at out + r·os: the weighted sum of wsum_avx2 in
// zmm registers, all the queries at once over 16W (W = 1, 2) values, so that
// each value row loaded and widened serves every query and NQ·W accumulator
// chains run side by side. Per lane the same fused multiply-adds in the same
// order: the same bits. f16: v is the f16 cache's, converted as it is read.
AVX512_TARGET static inline __attribute__((always_inline)) void wsumq_avx512(float *out, int64_t os, const float *p,
                                                                           const void *v, int64_t vs, int nt, int W,
                                                                           int NQ, bool add, bool f16) {
    __m512 acc[8][2];
#pragma GCC unroll 8
    for (int r = 0; r < NQ; r++)
#pragma GCC unroll 2
        for (int j = 0; j < W; j++) acc[r][j] = add ? _mm512_loadu_ps(out + r * os + 16 * j) : _mm512_setzero_ps();
    for (int t = 0; t < nt; t++) {
        __m512 vv[2];
#pragma GCC unroll 2
        for (int j = 0; j < W; j++)
            vv[j] = f16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)v + t * vs + 16 * j)))
                        : _mm512_loadu_ps((const float *)v + t * vs + 16 * j);
#pragma GCC unroll 8
        for (int r = 0; r < NQ; r++) {
            const __m512 pr = _mm512_set1_ps(p[8 * t + r]);
#pragma GCC unroll 2
            for (int j = 0; j < W; j++) acc[r][j] = _mm512_fmadd_ps(pr, vv[j], acc[r][j]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < NQ; r++)
#pragma GCC unroll 2
        for (int j = 0; j < W; j++) _mm512_storeu_ps(out + r * os + 16 * j, acc[r][j]);
}

#define WSUMQ_W(NQ)                                                                                  \
    if (W == 2) wsumq_avx512(out, os, p, v, vs, nt, 2, NQ, add, f16);                                 \
    else wsumq_avx512(out, os, p, v, vs, nt, 1, NQ, add, f16);
AVX512_TARGET static void wsumq_chunk(float *out, int64_t os, const float *p, const void *v, int64_t vs, int nt,
                                      int W, int nq, bool add, bool f16) {
    switch (nq) {
    case 8: WSUMQ_W(8) break;
    case 7: WSUMQ_W(7) break;
    case 6: WSUMQ_W(6) break;
    case 5: WSUMQ_W(5) break;
    case 4: WSUMQ_W(4) break;
    case 3: WSUMQ_W(3) break;
    case 2: WSUMQ_W(2) break;
    default: WSUMQ_W(1) break;
    }
}
#undef WSUMQ_W

// ---- grouped-query attention: the query heads that share a KV head --------


// nr (2..8) queries against one KV head, head_dim a multiple of 8: query r
// at q + r·qs, its output at out + r·os, attending to positions t < nkv[r].
// One pass over K for the scores (kept as att[8t + r]; positions a query does
// not see are -inf, their weights exactly 0), a softmax eight queries wide,
// then the values in blocks of positions small enough to stay in L1 while
// every query uses them. The queries are the heads of a group (grouped-query
// attention) or consecutive tokens of one sequence (prefill).
AVX2_TARGET static inline __attribute__((always_inline)) void attention_group_core(float *out, int64_t os,
                                                                                 const float *q, int64_t qs, int nr,
                                                                                 const int *nkv, const op_kv *kv,
                                                                                 int hd_arg, float *att, bool f16,
                                                                                 int HD) {
    const int hd = HD ? HD : hd_arg;   // a constant in the copies for common head sizes: loops unrolled
    const __m256 scale = _mm256_set1_ps(1.0f / sqrtf((float)hd)), ninf = _mm256_set1_ps(-INFINITY);
    const int64_t kv_stride = kv->stride;
    _Alignas(32) int lim[8];
    int n_kv = 0;
    bool ragged = false;
    for (int r = 0; r < 8; r++) {
        lim[r] = r < nr ? nkv[r] : 0;
        n_kv = lim[r] > n_kv ? lim[r] : n_kv;
        ragged |= r < nr && nkv[r] != nkv[0];
    }
    const __m256i limv = _mm256_load_si256((const __m256i *)lim);
    _Alignas(32) float qb[8 * 256];   // the queries side by side (qs != hd: hd <= 256), as dots8 reads them
    const float *qq = q;
    if (qs != hd) {
        for (int r = 0; r < nr; r++) memcpy(qb + r * hd, q + r * qs, sizeof(float) * (size_t)hd);
        qq = qb;
    }
    __m256 mx = ninf;
    const bool pv = (int64_t)n_kv * hd * (int64_t)op_kv_elem_size(f16) <= KV_PF_GROUP_VALUES;
    for (int t = 0; t < n_kv; t++) {
        const void *k = kv_ptr(kv->k, t * kv_stride, f16);
        kv_prefetch(kv_ptr(k, KV_GROUP_AHEAD * kv_stride, f16), hd, f16);
        if (pv) kv_prefetch(kv_ptr(kv->v, (t + KV_GROUP_AHEAD) * kv_stride, f16), hd, f16);
        __m256 s;
        switch (nr) {
        case 2: s = dots8(2, qq, false, hd, k, f16, hd); break;
        case 3: s = dots8(3, qq, false, hd, k, f16, hd); break;
        case 4: s = dots8(4, qq, false, hd, k, f16, hd); break;
        case 5: s = dots8(5, qq, false, hd, k, f16, hd); break;
        case 6: s = dots8(6, qq, false, hd, k, f16, hd); break;
        case 7: s = dots8(7, qq, false, hd, k, f16, hd); break;
        default: s = dots8(8, qq, false, hd, k, f16, hd); break;
        }
        s = _mm256_mul_ps(s, scale);
        if (ragged) s = _mm256_blendv_ps(ninf, s, _mm256_castsi256_ps(_mm256_cmpgt_epi32(limv, _mm256_set1_epi32(t))));
        mx = _mm256_max_ps(mx, s);
        _mm256_storeu_ps(att + 8 * t, s);
    }
    __m256 sum = _mm256_setzero_ps();
    for (int t = 0; t < n_kv; t++) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(att + 8 * t), mx));
        if (ragged) e = _mm256_and_ps(e, _mm256_castsi256_ps(_mm256_cmpgt_epi32(limv, _mm256_set1_epi32(t))));
        sum = _mm256_add_ps(sum, e);
        _mm256_storeu_ps(att + 8 * t, e);
    }
    _Alignas(32) float inv[8];
    _mm256_store_ps(inv, _mm256_div_ps(_mm256_set1_ps(1.0f), sum));
    // The values in blocks of TB positions: TB · head_dim values stay in L1
    // while every query uses them. An f16 cache's block of heads up to 64
    // wide is widened to f32 once (vb) for all the queries instead of once
    // per query (1.06-1.17x the attention at head_dim 48 and 64); at 128 the
    // wider block ran slower (0.95x) and the queries widen as they read.
    // No software prefetch here: the next block's lines asked for at once
    // held the loop back (without: 1.15-1.18x the attention of TinyLlama's
    // heads at depth 2048, the cache in DRAM); the score pass asks for them
    // instead (KV_GROUP_AHEAD). With AVX-512, heads of 16 to 64 values go
    // in zmm registers, reading an f16 cache as it is (vcvtph2ps), where
    // widening the block first cost a store and a load of every value (8
    // queries, head 64, 2048 positions, one thread: 1.16x from DRAM, 1.07x
    // in L3; the same bits). All the queries at once over 32 values
    // (wsumq_avx512) convert each row once, where four queries over 64
    // values converted it once per four: 1.17x in L2 (one thread), 1.03x of
    // attention's time in the model with the values prefetched.
    enum { TB = 32 };
    _Alignas(32) float vb[TB * 64];
    const bool wide = cpu_level() >= CPU_LEVEL_AVX512 && hd % 16 == 0 && hd <= 64;
    const bool widen = f16 && hd <= 64 && !wide;
    for (int t0 = 0; t0 < n_kv; t0 += TB) {
        const int t1 = n_kv - t0 < TB ? n_kv : t0 + TB;
        if (widen)   // position t0 + i at vb + i·hd
            for (int t = t0; t < t1; t++)
#pragma GCC unroll 8
                for (int c = 0; c < hd; c += 8)
                    _mm256_store_ps(vb + (t - t0) * hd + c, kv_load8(kv_ptr(kv->v, t * kv_stride + c, true), true));
        if (wide) {
            // The rows of a block: widened in vb, or the f32 cache's own.
            const void *vr = widen ? (const void *)vb : kv_ptr(kv->v, t0 * kv_stride, f16);
            const int64_t vs = widen ? hd : kv_stride;
            const bool v16 = f16 && !widen;
            int e1 = 0;   // up to the last limit: the others' weights past theirs are 0
            for (int i = 0; i < nr; i++) e1 = e1 > lim[i] ? e1 : lim[i];
            e1 = t1 < e1 ? t1 : e1;
            if (e1 > t0)
                for (int c = 0; c < hd; c += 32) {   // 32 values of every query, then the next 32
                    wsumq_chunk(out + c, os, att + 8 * t0, kv_ptr(vr, c, v16), vs, e1 - t0, hd - c >= 32 ? 2 : 1, nr,
                                t0 > 0, v16);
                }
            continue;
        }
        for (int r = 0; r < nr; r++) {
            const int e1 = t1 < lim[r] ? t1 : lim[r];   // a query's positions end at its own limit
            if (e1 <= t0) continue;
            for (int c = 0; c < hd; c += 64) {
                const int w = hd - c < 64 ? (hd - c) / 8 : 8;
                if (widen)   // the block's positions counted from t0: weights att[8(t0 + i) + r]
                    wsum_chunk(out + r * os + c, att + r + 8 * t0, 8, vb + c, false, hd, 0, e1 - t0, w, t0 > 0);
                else
                    wsum_chunk(out + r * os + c, att + r, 8, kv_ptr(kv->v, c, f16), f16, kv_stride, t0, e1, w, t0 > 0);
            }
        }
    }
    for (int r = 0; r < nr; r++) {
        const __m256 f = _mm256_set1_ps(inv[r]);
        for (int c = 0; c < hd; c += 8)
            _mm256_storeu_ps(out + r * os + c, _mm256_mul_ps(f, _mm256_loadu_ps(out + r * os + c)));
    }
}

AVX2_TARGET static void attention_group_avx2(float *out, int64_t os, const float *q, int64_t qs, int nr,
                                             const int *nkv, const op_kv *kv, int hd, float *att) {
#define GROUP_CORE(F16)                                                                        \
    switch (hd) {                                                                              \
    case 48: attention_group_core(out, os, q, qs, nr, nkv, kv, hd, att, F16, 48); break;       \
    case 64: attention_group_core(out, os, q, qs, nr, nkv, kv, hd, att, F16, 64); break;       \
    default: attention_group_core(out, os, q, qs, nr, nkv, kv, hd, att, F16, 0); break;        \
    }
    if (kv->f16) GROUP_CORE(true)
    else GROUP_CORE(false)
#undef GROUP_CORE
}

void op_attention_group(float *out, const float *q, int n_rep, const op_kv *kv, int n_kv, int head_dim, float *att) {
    const int nkv[8] = {n_kv, n_kv, n_kv, n_kv, n_kv, n_kv, n_kv, n_kv};
    for (int r0 = 0; r0 < n_rep; r0 += 8) {
        const int nr = n_rep - r0 < 8 ? n_rep - r0 : 8;
        float *o = out + (size_t)r0 * (size_t)head_dim;
        const float *qq = q + (size_t)r0 * (size_t)head_dim;
        if (nr >= 2 && head_dim % 8 == 0 && cpu_level() >= CPU_LEVEL_AVX2) {
            attention_group_avx2(o, head_dim, qq, head_dim, nr, nkv, kv, head_dim, att);
            continue;
        }
        for (int r = 0; r < nr; r++)
            op_attention_head(o + (size_t)r * (size_t)head_dim, qq + (size_t)r * (size_t)head_dim, kv, n_kv, head_dim,
                              att);
    }
}

void op_attention_queries(float *out, int64_t out_stride, const float *q, int64_t q_stride, int nq, const int *n_kv,
                          const op_kv *kv, int head_dim, float *att) {
    for (int r0 = 0; r0 < nq; r0 += 8) {
        const int nr = nq - r0 < 8 ? nq - r0 : 8;
        float *o = out + (size_t)r0 * (size_t)out_stride;
        const float *qq = q + (size_t)r0 * (size_t)q_stride;
        if (nr >= 2 && head_dim % 8 == 0 && (q_stride == head_dim || head_dim <= 256) && cpu_level() >= CPU_LEVEL_AVX2) {
            attention_group_avx2(o, out_stride, qq, q_stride, nr, n_kv + r0, kv, head_dim, att);
            continue;
        }
        for (int r = 0; r < nr; r++)
            op_attention_head(o + (size_t)r * (size_t)out_stride, qq + (size_t)r * (size_t)q_stride, kv, n_kv[r0 + r],
                              head_dim, att);
    }
}

void op_attention_head(float *out, const float *q, const op_kv *kv, int n_kv, int head_dim, float *att) {
    if (cpu_level() >= CPU_LEVEL_AVX2) {
        attention_head_avx2(out, q, kv, n_kv, head_dim, att);
        return;
    }
    const float scale = 1.0f / sqrtf((float)head_dim);
    const bool f16 = kv->f16;
    for (int t = 0; t < n_kv; t++) {
        float s = 0.0f;
        for (int i = 0; i < head_dim; i++) s += q[i] * kv_get(kv->k, t * kv->stride + i, f16);
        att[t] = s * scale;
    }
    softmax_scalar(att, n_kv);
    for (int i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int t = 0; t < n_kv; t++) {
        const float p = att[t];
        for (int i = 0; i < head_dim; i++) out[i] += p * kv_get(kv->v, t * kv->stride + i, f16);
    }
}
