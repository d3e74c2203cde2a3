// kquant.c — Q4_K and Q6_K weights (see kquant.h): reference codecs, the
// activation quantizer (Q8_K), and y = x · Wᵀ with a scalar reference, an
// AVX2 path and an AVX-512 VNNI path chosen per call from cpu_level() and
// the CPU's features. Pure functions; no allocation, no locks.
//
// Both products work per super-block of 256 values in integers, as ggml does:
//   Q4_K: Σ_j sc_j·Σ q·x  (q unsigned 0..15: _mm256_maddubs_epi16 with x)
//         minus the mins, Σ_j m_j·(Σ x over sub-block j), from the 16-value
//         sums stored with the activations; scaled by d·d_x and dmin·d_x.
//   Q6_K: Σ_g sc_g·Σ (q − 32)·x, computed as Σ q·x (q unsigned 0..63 for
//         maddubs) minus 32·Σ_g sc_g·(Σ x over group g); scaled by d·d_x.
// No int16 sum can saturate (2·63·127 < 2^15) and no int32 overflows (the
// super-block total stays below 2^27).
//
// Rows are computed in panels of weights small enough to stay in L1/L2
// while a batch of tokens passes over them, so prefill reads each weight
// byte from memory once; decode is the same loop with one token. The row
// tiles take 4 tokens per weight row (a super-block's scales and codes
// unpacked once for 4 tokens) or 4 rows per token (decode). Batches of 8+
// tokens use activations packed with tokens in lanes instead (below): in
// AVX2, tiles of 3 rows × 2 token groups whose inner block is the q4_0
// tile's asm (simd.h); with AVX-512 VNNI, strips of 4 rows widened once and
// vpdpbusd tiles of 4 rows × 2 groups. Both SIMD levels compute the same
// integers with the same float steps, so they give the same bits.
#include "kquant.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "cpu.h"
#include "matmul.h"
#include "simd.h"
#include "threadpool.h"

static inline int nearest(float v) { return (int)lrintf(v); }

// fp16 of v rounded away from zero: a super-block scale never comes out
// smaller than asked, so the largest code never has to be clipped.
static fp16_t fp16_up(float v) {
    fp16_t h = fp32_to_fp16(v);
    if (fabsf(fp16_to_fp32(h)) < fabsf(v) && (h & 0x7fff) < 0x7bff) h++;
    return h;
}

// Sub-block j's 6-bit scale and min from a Q4_K scales[12] (layout in kquant.h).
static inline void scale_min_q4K(int j, const uint8_t *s, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// ---- reference codecs ------------------------------------------------------

void dequantize_row_q4_K(const block_q4_K *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
        for (int c = 0; c < 4; c++) {
            int sc0, m0, sc1, m1;
            scale_min_q4K(2 * c, x[i].scales, &sc0, &m0);
            scale_min_q4K(2 * c + 1, x[i].scales, &sc1, &m1);
            const float d0 = d * sc0, d1 = d * sc1, mm0 = dmin * m0, mm1 = dmin * m1;
            const uint8_t *q = x[i].qs + 32 * c;
            float *o = y + i * QK_K + 64 * c;
            for (int l = 0; l < 32; l++) {
                o[l] = d0 * (q[l] & 0x0f) - mm0;
                o[32 + l] = d1 * (q[l] >> 4) - mm1;
            }
        }
    }
}

// Value l (0..255) of a Q6_K block as its unsigned 6-bit code.
static inline int q6_code(const block_q6_K *b, int l) {
    const int h = l / 128, r = l % 128, k = r / 32, p = r % 32;
    const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
    const int lo = k & 1 ? ql[32 + p] : ql[p];
    return ((k < 2 ? lo : lo >> 4) & 0x0f) | (((qh[p] >> (2 * k)) & 3) << 4);
}

void dequantize_row_q6_K(const block_q6_K *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = fp16_to_fp32(x[i].d);
        for (int l = 0; l < QK_K; l++) y[i * QK_K + l] = d * x[i].scales[l / 16] * (q6_code(&x[i], l) - 32);
    }
}

// Squared error of sub-block v (32 values) coded with scale ds and min dm.
static float q4K_err(const float *v, float ds, float dm) {
    float e = 0.0f;
    for (int l = 0; l < 32; l++) {
        int q = ds > 0 ? nearest((v[l] + dm) / ds) : 0;
        q = q < 0 ? 0 : q > 15 ? 15 : q;
        const float r = ds * q - dm - v[l];
        e += r * r;
    }
    return e;
}

// Per sub-block of 32: min/max (the min clamped to ≤ 0, so the stored min is
// ≥ 0) gives scale (max − min)/15; the 8 scales and 8 mins are coded in 6 bits
// against the largest of each, and each sub-block then keeps the best of the
// 3×3 neighbouring (scale, min) codes by squared error. Values are coded last
// with the stored (fp16-rounded) factors, so dequantization is exact.
void quantize_row_q4_K(const float *x, block_q4_K *y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *v = x + i * QK_K;
        float scale[8], mins[8], max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 8; j++) {
            float lo = 0.0f, hi = v[32 * j];
            for (int l = 0; l < 32; l++) {
                if (v[32 * j + l] < lo) lo = v[32 * j + l];
                if (v[32 * j + l] > hi) hi = v[32 * j + l];
            }
            if (hi < 0.0f) hi = 0.0f;
            scale[j] = (hi - lo) / 15.0f;
            mins[j] = -lo;
            if (scale[j] > max_scale) max_scale = scale[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        block_q4_K *b = &y[i];
        memset(b, 0, sizeof *b);
        b->d = fp16_up(max_scale / 63.0f);
        b->dmin = fp16_up(max_min / 63.0f);
        const float d = fp16_to_fp32(b->d), dmin = fp16_to_fp32(b->dmin);
        uint8_t ls[8], lm[8];
        for (int j = 0; j < 8; j++) {
            const int s0 = d > 0 ? nearest(scale[j] / d) : 0, m0 = dmin > 0 ? nearest(mins[j] / dmin) : 0;
            int bs = 0, bm = 0;
            float best = INFINITY;
            for (int s = s0 - 1; s <= s0 + 1; s++)
                for (int m = m0 - 1; m <= m0 + 1; m++) {
                    if (s < 0 || s > 63 || m < 0 || m > 63) continue;
                    const float e = q4K_err(v + 32 * j, d * s, dmin * m);
                    if (e < best) { best = e; bs = s; bm = m; }
                }
            ls[j] = (uint8_t)bs;
            lm[j] = (uint8_t)bm;
        }
        for (int j = 0; j < 4; j++) {
            b->scales[j] = (uint8_t)(ls[j] | ((ls[j + 4] >> 4) << 6));
            b->scales[j + 4] = (uint8_t)(lm[j] | ((lm[j + 4] >> 4) << 6));
            b->scales[j + 8] = (uint8_t)((ls[j + 4] & 0x0f) | ((lm[j + 4] & 0x0f) << 4));
        }
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min_q4K(j, b->scales, &sc, &m);
            const float ds = d * sc, dm = dmin * m;
            for (int l = 0; l < 32; l++) {
                int q = ds > 0 ? nearest((v[32 * j + l] + dm) / ds) : 0;
                q = q < 0 ? 0 : q > 15 ? 15 : q;
                b->qs[32 * (j / 2) + l] |= (uint8_t)(j & 1 ? q << 4 : q);
            }
        }
    }
}

// Per group of 16: the value of largest magnitude maps to −32 (ggml's
// starting point), giving a signed group scale; the 16 scales are coded in
// 8 bits against the largest (d = max/−128), and each group keeps the best
// of its 3 neighbouring codes by squared error. Values are coded last with
// the stored factors.
void quantize_row_q6_K(const float *x, block_q6_K *y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *v = x + i * QK_K;
        block_q6_K *b = &y[i];
        memset(b, 0, sizeof *b);
        float gs[16], max_scale = 0.0f;
        for (int g = 0; g < 16; g++) {
            float amax = 0.0f, mx = 0.0f;
            for (int l = 0; l < 16; l++)
                if (fabsf(v[16 * g + l]) > amax) { amax = fabsf(v[16 * g + l]); mx = v[16 * g + l]; }
            gs[g] = mx / -32.0f;
            if (fabsf(gs[g]) > fabsf(max_scale)) max_scale = gs[g];
        }
        if (max_scale == 0.0f) continue;   // all zero: d = 0
        b->d = fp16_up(max_scale / -128.0f);
        const float d = fp16_to_fp32(b->d);
        int8_t L[QK_K];
        for (int g = 0; g < 16; g++) {
            const int s0 = d != 0.0f ? nearest(gs[g] / d) : 0;
            int bs = 0;
            float best = INFINITY;
            for (int s = s0 - 1; s <= s0 + 1; s++) {
                if (s < -128 || s > 127) continue;
                const float ds = d * s;
                float e = 0.0f;
                for (int l = 0; l < 16; l++) {
                    int q = ds != 0.0f ? nearest(v[16 * g + l] / ds) : 0;
                    q = q < -32 ? -32 : q > 31 ? 31 : q;
                    const float r = ds * q - v[16 * g + l];
                    e += r * r;
                }
                if (e < best) { best = e; bs = s; }
            }
            b->scales[g] = (int8_t)bs;
            const float ds = d * bs;
            for (int l = 0; l < 16; l++) {
                int q = ds != 0.0f ? nearest(v[16 * g + l] / ds) : 0;
                L[16 * g + l] = (int8_t)(q < -32 ? -32 : q > 31 ? 31 : q);
            }
        }
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const int q1 = L[128 * h + l] + 32, q2 = L[128 * h + 32 + l] + 32;
                const int q3 = L[128 * h + 64 + l] + 32, q4 = L[128 * h + 96 + l] + 32;
                b->ql[64 * h + l] = (uint8_t)((q1 & 0x0f) | ((q3 & 0x0f) << 4));
                b->ql[64 * h + 32 + l] = (uint8_t)((q2 & 0x0f) | ((q4 & 0x0f) << 4));
                b->qh[32 * h + l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
    }
}

// ---- activations -----------------------------------------------------------

static void q8K_bsums(block_q8_K *b) {
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int l = 0; l < 16; l++) s += b->qs[16 * g + l];
        b->bsums[g] = (int16_t)s;
    }
}

// Symmetric, d = amax/127 kept in f32; values round half away from zero.
void quantize_row_q8_K(const float *x, block_q8_K *y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *v = x + i * QK_K;
        float amax = 0.0f;
        for (int l = 0; l < QK_K; l++) { float a = v[l] < 0 ? -v[l] : v[l]; if (a > amax) amax = a; }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int l = 0; l < QK_K; l++) {
            const float q = v[l] * id;
            y[i].qs[l] = (int8_t)(q >= 0 ? (int)(q + 0.5f) : -(int)(-q + 0.5f));
        }
        y[i].d = d;
        q8K_bsums(&y[i]);
    }
}


// Bit-identical to quantize_row_q8_K: the same float operations per value.
AVX2_TARGET static void quantize_row_q8_K_avx2(const float *x, block_q8_K *y, int64_t n) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), half = _mm256_set1_ps(0.5f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *v = x + i * QK_K;
        __m256 m = _mm256_setzero_ps();
        for (int l = 0; l < QK_K; l += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(v + l), absmask));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float d = _mm_cvtss_f32(m4) / 127.0f;
        const __m256 vid = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        for (int l = 0; l < QK_K; l += 32) {
            __m256i qi[4];
            for (int k = 0; k < 4; k++) {
                const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(v + l + 8 * k), vid);
                const __m256 sign = _mm256_andnot_ps(absmask, p);
                const __m256 r = _mm256_round_ps(_mm256_add_ps(_mm256_and_ps(p, absmask), half),
                                                 _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
                qi[k] = _mm256_cvttps_epi32(_mm256_or_ps(r, sign));
            }
            const __m256i s01 = _mm256_packs_epi32(qi[0], qi[1]), s23 = _mm256_packs_epi32(qi[2], qi[3]);
            _mm256_storeu_si256((__m256i *)(y[i].qs + l), _mm256_permutevar8x32_epi32(_mm256_packs_epi16(s01, s23), perm));
        }
        y[i].d = d;
        q8K_bsums(&y[i]);
    }
}

// ---- scalar reference products ---------------------------------------------

static float dot_q4K_scalar(const void *row, const block_q8_K *x, int64_t nb) {
    const block_q4_K *w = row;
    float s = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int32_t sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min_q4K(j, w[i].scales, &sc, &m);
            const uint8_t *q = w[i].qs + 32 * (j / 2);
            const int8_t *a = x[i].qs + 32 * j;
            int32_t acc = 0;
            for (int l = 0; l < 32; l++) acc += (j & 1 ? q[l] >> 4 : q[l] & 0x0f) * a[l];
            sumi += sc * acc;
            summ += m * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        }
        s += fp16_to_fp32(w[i].d) * x[i].d * (float)sumi - fp16_to_fp32(w[i].dmin) * x[i].d * (float)summ;
    }
    return s;
}

static float dot_q6K_scalar(const void *row, const block_q8_K *x, int64_t nb) {
    const block_q6_K *w = row;
    float s = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int32_t sumi = 0;
        for (int g = 0; g < 16; g++) {
            int32_t acc = 0;
            for (int l = 0; l < 16; l++) acc += (q6_code(&w[i], 16 * g + l) - 32) * x[i].qs[16 * g + l];
            sumi += w[i].scales[g] * acc;
        }
        s += fp16_to_fp32(w[i].d) * x[i].d * (float)sumi;
    }
    return s;
}

// ---- AVX2 products ---------------------------------------------------------

AVX2_TARGET static inline float hsum4(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Byte-shuffle control that copies int16 element e of a 128-bit lane to all
// 8 elements of the low lane, and element f to all of the high lane.
#define PICK16(e, f) _mm256_set_m128i(_mm_set1_epi16((short)(((2 * (f) + 1) << 8) | (2 * (f)))), \
                                      _mm_set1_epi16((short)(((2 * (e) + 1) << 8) | (2 * (e)))))

#define ALWAYS_INLINE __attribute__((always_inline)) inline
#define DO_PRAGMA(x) _Pragma(#x)
#define UNROLL(n) DO_PRAGMA(GCC unroll n)   // loops over the tile's tokens: unrolled, so accumulators stay in registers
#define KQ_C 4                              // tokens per tile (prefill)

// A Q4_K super-block's 6-bit scales and mins as four words of 4 bytes each:
// sm[0], sm[1] the 8 scales, sm[2], sm[3] the 8 mins (the layout in kquant.h).
static inline __attribute__((always_inline)) void q4K_scale_words(const uint8_t *scales, uint32_t sm[4]) {
    uint32_t u[3];
    memcpy(u, scales, 12);
    const uint32_t k1 = 0x3f3f3f3fu, k2 = 0x0f0f0f0fu, k3 = 0x03030303u;
    sm[0] = u[0] & k1;
    sm[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
    sm[2] = u[1] & k1;
    sm[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
}

// A Q4_K super-block's 256 nibbles, a byte each, sub-block by sub-block in
// element order.
AVX2_TARGET static inline __attribute__((always_inline)) void q4K_nibbles(const block_q4_K *b, uint8_t wt[8][32]) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int c = 0; c < 4; c++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * c));
        _mm256_store_si256((__m256i *)wt[2 * c], _mm256_and_si256(q, m4));
        _mm256_store_si256((__m256i *)wt[2 * c + 1], _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
    }
}

// Half h (values 128h .. 128h + 127) of a Q6_K super-block's codes (0..63),
// a byte each: v[k] holds values 128h + 32k .. 128h + 32k + 31.
AVX2_TARGET static inline __attribute__((always_inline)) void q6K_codes(const block_q6_K *b, int h, __m256i v[4]) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
    const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
    const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
    v[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
    v[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
    v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30));
    v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
}

// The AVX2 tiles widen the super-block scales with F16C (_cvtsh_ss): the
// portable fp16_to_fp32 is a call with branches, and per super-block of one
// token it cost a fifth of decode (with F16C: Q4_K decode 1.25-1.37x, Q6_K
// 1.18-1.21x, one thread, K = 768-2048, same-process A/B, bit-identical).

// ---- Row tiles: R rows × C tokens -------------------------------------------
//
// out[r*C + j] = row r · x_j (R, C compile-time constants at each instance):
// a weight super-block is unpacked once (scales, codes) for all C tokens,
// and the R rows of one token share its activation loads and sub-block sums.
// Each pair of maddubs results is scaled and added by DPW: one vpdpwssd with
// AVX-512 VNNI, a vpmaddwd and a vpaddd in AVX2 (the same int32 sums, so the
// two levels give the same bits; test_kquant checks it). Q4_K's sub-block
// scales are dwords (sc·0x10001) broadcast from a small table built once per
// row and super-block. One token takes 4 rows a tile; in AVX2 these tiles
// replaced a 1-row kernel that picked the scales by vpshufb and prefetched
// each row whole as it started it: TinyLlama Q4_K decode, 2 threads,
// alternating runs, AVX2 31-34 → 40-49 tok/s, AVX-512 VNNI 33-35 → 47-53.
#define KQ_DPW_AVX2(acc, p, s) _mm256_add_epi32(acc, _mm256_madd_epi16(p, s))   // vpdpwssd's sum, in AVX2
#define DEF_Q4K_VTILE(NAME, TARGET, DPW)                                                                                 \
    TARGET static ALWAYS_INLINE void NAME(int R, int C, const uint8_t *w, size_t rowb, const block_q8_K *const *xs,          \
                                          int64_t nb, size_t ahead, float *out) {                                            \
        const size_t span = (size_t)R * rowb, pf_step = pf_step_of(span, nb);                                                \
        const __m256i m4 = _mm256_set1_epi8(0x0f);                                                                           \
        __m256 acc[4][KQ_C];                                                                                                 \
        __m128 accm[4][KQ_C];                                                                                                \
        UNROLL(4) for (int r = 0; r < R; r++)                                                                                \
            UNROLL(4) for (int j = 0; j < C; j++) { acc[r][j] = _mm256_setzero_ps(); accm[r][j] = _mm_setzero_ps(); }        \
        for (int64_t i = 0; i < nb; i++) {                                                                                   \
            if (ahead) pf_share(w + ahead, span, pf_step, i);                                                                \
            __m128i b32[KQ_C];   /* each token's 8 sub-block sums (int16) */                                                 \
            UNROLL(4) for (int j = 0; j < C; j++)                                                                            \
                b32[j] = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)xs[j][i].bsums),                                    \
                                        _mm_loadu_si128((const __m128i *)(xs[j][i].bsums + 8)));                             \
            UNROLL(4) for (int r = 0; r < R; r++) {                                                                          \
                const block_q4_K *b = (const block_q4_K *)(w + (size_t)r * rowb) + i;                                        \
                uint32_t sm[4];                                                                                              \
                q4K_scale_words(b->scales, sm);                                                                              \
                const __m128i sc16 = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)sm[1], (int)sm[0]));                         \
                const __m128i mn16 = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)sm[3], (int)sm[2]));                         \
                _Alignas(32) int32_t s32[8];   /* scale j in both halves of dword j */                                       \
                _mm_store_si128((__m128i *)s32, _mm_unpacklo_epi16(sc16, sc16));                                             \
                _mm_store_si128((__m128i *)(s32 + 4), _mm_unpackhi_epi16(sc16, sc16));                                       \
                const float d = _cvtsh_ss(b->d), dmin = _cvtsh_ss(b->dmin);                                                  \
                UNROLL(4) for (int j = 0; j < C; j++)                                                                        \
                    accm[r][j] = _mm_fmadd_ps(_mm_set1_ps(dmin * xs[j][i].d), _mm_cvtepi32_ps(_mm_madd_epi16(mn16, b32[j])), \
                                              accm[r][j]);                                                                   \
                __m256i sumi[KQ_C];                                                                                          \
                UNROLL(4) for (int j = 0; j < C; j++) sumi[j] = _mm256_setzero_si256();                                      \
                UNROLL(4) for (int c = 0; c < 4; c++) {                                                                      \
                    const __m256i q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * c));                                 \
                    const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);          \
                    const __m256i s0 = _mm256_set1_epi32(s32[2 * c]), s1 = _mm256_set1_epi32(s32[2 * c + 1]);                \
                    UNROLL(4) for (int j = 0; j < C; j++) {                                                                  \
                        const int8_t *a = xs[j][i].qs + 64 * c;                                                              \
                        sumi[j] = DPW(sumi[j], _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)a)), s0);        \
                        sumi[j] = DPW(sumi[j], _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(a + 32))), s1); \
                    }                                                                                                        \
                }                                                                                                            \
                UNROLL(4) for (int j = 0; j < C; j++)                                                                        \
                    acc[r][j] = _mm256_fmadd_ps(_mm256_set1_ps(d * xs[j][i].d), _mm256_cvtepi32_ps(sumi[j]), acc[r][j]);     \
            }                                                                                                                \
        }                                                                                                                    \
        UNROLL(4) for (int r = 0; r < R; r++)                                                                                \
            UNROLL(4) for (int j = 0; j < C; j++) out[r * C + j] = hsum256(acc[r][j]) - hsum4(accm[r][j]);                   \
    }

DEF_Q4K_VTILE(q4K_vtile, AVX512VNNI_TARGET, _mm256_dpwssd_epi32)
DEF_Q4K_VTILE(q4K_vtile2, AVX2_TARGET, KQ_DPW_AVX2)

// Q6_K: the codes unpacked by q6K_codes (with AVX-512 the compiler merges the
// masks into vpternlogd here), the group scales picked by vpshufb, and each
// pair of maddubs results scaled and added by DPW.
#define DEF_Q6K_VTILE(NAME, TARGET, DPW)                                                                                             \
    TARGET static ALWAYS_INLINE void NAME(int R, int C, const uint8_t *w, size_t rowb, const block_q8_K *const *xs,                      \
                                          int64_t nb, size_t ahead, float *out) {                                                        \
        const size_t span = (size_t)R * rowb, pf_step = pf_step_of(span, nb);                                                            \
        __m256 acc[4][KQ_C];                                                                                                             \
        UNROLL(4) for (int r = 0; r < R; r++)                                                                                            \
            UNROLL(4) for (int j = 0; j < C; j++) acc[r][j] = _mm256_setzero_ps();                                                       \
        for (int64_t i = 0; i < nb; i++) {                                                                                               \
            if (ahead) pf_share(w + ahead, span, pf_step, i);                                                                            \
            __m256i bs[KQ_C];   /* each token's 16 group sums (int16) */                                                                 \
            UNROLL(4) for (int j = 0; j < C; j++) bs[j] = _mm256_loadu_si256((const __m256i *)xs[j][i].bsums);                           \
            UNROLL(4) for (int r = 0; r < R; r++) {                                                                                      \
                const block_q6_K *b = (const block_q6_K *)(w + (size_t)r * rowb) + i;                                                    \
                const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));                                  \
                __m256i sumi[KQ_C];                                                                                                      \
                /* Start from −32·Σ_g sc_g·(Σ x over group g): the offset of every value. */                                             \
                UNROLL(4) for (int j = 0; j < C; j++)                                                                                    \
                    sumi[j] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(bs[j], sc16), 5));            \
                UNROLL(2) for (int h = 0; h < 2; h++) {                                                                                  \
                    const __m256i S = _mm256_broadcastsi128_si256(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16)); \
                    __m256i v[4], sv[4];                                                                                                 \
                    q6K_codes(b, h, v);                                                                                                  \
                    sv[0] = _mm256_shuffle_epi8(S, PICK16(0, 1));                                                                        \
                    sv[1] = _mm256_shuffle_epi8(S, PICK16(2, 3));                                                                        \
                    sv[2] = _mm256_shuffle_epi8(S, PICK16(4, 5));                                                                        \
                    sv[3] = _mm256_shuffle_epi8(S, PICK16(6, 7));                                                                        \
                    UNROLL(4) for (int j = 0; j < C; j++) {                                                                              \
                        const int8_t *a = xs[j][i].qs + 128 * h;                                                                         \
                        UNROLL(4) for (int k = 0; k < 4; k++)                                                                            \
                            sumi[j] = DPW(sumi[j], _mm256_maddubs_epi16(v[k], _mm256_loadu_si256((const __m256i *)(a + 32 * k))), sv[k]); \
                    }                                                                                                                    \
                }                                                                                                                        \
                const float d = _cvtsh_ss(b->d);                                                                                         \
                UNROLL(4) for (int j = 0; j < C; j++)                                                                                    \
                    acc[r][j] = _mm256_fmadd_ps(_mm256_set1_ps(d * xs[j][i].d), _mm256_cvtepi32_ps(sumi[j]), acc[r][j]);                 \
            }                                                                                                                            \
        }                                                                                                                                \
        UNROLL(4) for (int r = 0; r < R; r++)                                                                                            \
            UNROLL(4) for (int j = 0; j < C; j++) out[r * C + j] = hsum256(acc[r][j]);                                                   \
    }

DEF_Q6K_VTILE(q6K_vtile, AVX512VNNI_TARGET, _mm256_dpwssd_epi32)
DEF_Q6K_VTILE(q6K_vtile2, AVX2_TARGET, KQ_DPW_AVX2)

// The instances kq_compute calls: 4 rows × 1 token (decode), 1 row × 4
// tokens (short batches) and 1 × 1 (the rest). With `ahead`, the tile's
// rows that far ahead are prefetched in address order, a share per
// super-block.
typedef void (*kvtile_fn)(const uint8_t *w, size_t rowb, const block_q8_K *const *xs, int64_t nb, size_t ahead,
                          float *out);
#define DEF_KV(NAME, TARGET, TILE, R, C)                                                                  \
    TARGET static void NAME(const uint8_t *w, size_t rs, const block_q8_K *const *x, int64_t nb, size_t a, \
                            float *o) {                                                                    \
        TILE(R, C, w, rs, x, nb, a, o);                                                                   \
    }
// T_v41, T_v14, T_v11 (AVX-512 VNNI) and T_a41, T_a14, T_a11 (AVX2) for type T.
#define DEF_KV_SET(T)                                      \
    DEF_KV(T##_v41, AVX512VNNI_TARGET, T##_vtile, 4, 1)    \
    DEF_KV(T##_v14, AVX512VNNI_TARGET, T##_vtile, 1, KQ_C) \
    DEF_KV(T##_v11, AVX512VNNI_TARGET, T##_vtile, 1, 1)    \
    DEF_KV(T##_a41, AVX2_TARGET, T##_vtile2, 4, 1)         \
    DEF_KV(T##_a14, AVX2_TARGET, T##_vtile2, 1, KQ_C)      \
    DEF_KV(T##_a11, AVX2_TARGET, T##_vtile2, 1, 1)
DEF_KV_SET(q4K)
DEF_KV_SET(q6K)

// ---- the matmul.h contract -------------------------------------------------

static inline int64_t xk_stride(int64_t K) {   // bytes per prepared activation row
    const int64_t s = K / QK_K * (int64_t)sizeof(block_q8_K);
    return (s + 63) & ~(int64_t)63;
}

// ---- Q4_K batches: packed activations, lanes = tokens ------------------------
//
// From PACK_MIN tokens on, Q4_K's AVX2 path lays the Q8_K activations of 8
// tokens (a group; the last one padded with zero tokens) out so that one
// 256-bit load holds the same 4 values of all 8 tokens, as matmul.c does for
// Q4_0. The kernel broadcasts 4 weight nibbles to all lanes and multiplies 8
// tokens at once; a sub-block's 8 maddubs results add up in int16 (8·3810 <
// 2^15) before one madd applies its scale. Per super-block and group
// (PKK bytes):
//   [64 quads × 8 tokens × 4 int8] [8 tokens' d (f32)]
//   [4 pairs of sub-blocks × 8 tokens × (2 int16: Σ x of sub-blocks 2p, 2p+1)]
// Q6_K packs the same quads and scales, then 8 pairs of 16-value groups:
// [8 pairs × 8 tokens × (2 int16: Σ x of groups 2p, 2p+1)] (PKK6 bytes).
#define PACK_MIN 8
#define PKK (64 * 32 + 32 + 4 * 32)
#define PKK6 (64 * 32 + 32 + 8 * 32)

static inline int64_t pkk(enum ggml_type type) { return type == GGML_TYPE_Q6_K ? PKK6 : PKK; }

static bool kq_pack(enum ggml_type type, int64_t T) {
    return kq_type(type) && T >= PACK_MIN && cpu_level() >= CPU_LEVEL_AVX2;
}

// Q4_K and Q6_K weights in strips (kq_to_strips) are read by the strip kernels where
// AVX-512 VNNI is used: one token packed alone (pk_lanes), 2+ in groups of 8
// lanes; elsewhere (a level lowered for tests) by the scalar code, from
// rows of block_q8_K.
static bool ks_vnni(const mm_weight *w) { return w->strips && cpu_vnni512(); }
static bool kq_groups(const mm_weight *w, int64_t T) { return w->strips ? ks_vnni(w) && T >= 2 : kq_pack(w->type, T); }

size_t kq_wdata_size(enum ggml_type type, int64_t K, int64_t T) {
    const int64_t rows = xk_stride(K) * T, packed = (T + 7) / 8 * (K / QK_K) * pkk(type);
    return (size_t)(kq_type(type) && packed > rows ? packed : rows) + 64;
}

void kq_prepare_rows(const mm_weight *w, int64_t T, int ith, int nth, long *t0, long *t1) {
    if (kq_groups(w, T)) {   // whole token groups
        tp_split((T + 7) / 8, ith, nth, 1, t0, t1);
        *t0 *= 8;
        *t1 = *t1 * 8 < T ? *t1 * 8 : T;
        if (*t0 > *t1) *t0 = *t1;
        return;
    }
    tp_split(T, ith, nth, 1, t0, t1);
}

// A group's bytes per super-block when it has L lanes: 8 (PKK, PKK6), or 1
// for one token against weights in strips (the same layout with one lane:
// 256 bytes of values, d, then the 4 (Q4_K) or 8 (Q6_K) pairs of sums).
#define KS_PK1 (64 * 4 + 4 + 4 * 4)
#define KS6_PK1 (64 * 4 + 4 + 8 * 4)
static inline int64_t pk_lanes(enum ggml_type type, int L) {
    return L == 8 ? pkk(type) : type == GGML_TYPE_Q6_K ? KS6_PK1 : KS_PK1;
}

// Token x (K values; NULL: a zero padding token) into lane `lane` of a group
// of L lanes (8; or 1 for one token against weights in strips).
AVX2_TARGET static void pack_token(enum ggml_type type, const float *x, int64_t K, uint8_t *grp, int lane, int L) {
    for (int64_t b = 0; b < K / QK_K; b++) {
        block_q8_K q;
        if (x) quantize_row_q8_K_avx2(x + b * QK_K, &q, QK_K);
        else memset(&q, 0, sizeof q);
        uint8_t *blk = grp + b * pk_lanes(type, L);
        for (int g = 0; g < 64; g++) memcpy(blk + g * 4 * L + lane * 4, q.qs + 4 * g, 4);
        memcpy(blk + 64 * 4 * L + lane * 4, &q.d, 4);
        if (type == GGML_TYPE_Q6_K) {
            for (int p = 0; p < 8; p++) memcpy(blk + 65 * 4 * L + p * 4 * L + lane * 4, q.bsums + 2 * p, 4);
            continue;
        }
        for (int p = 0; p < 4; p++) {
            const int16_t s[2] = {(int16_t)(q.bsums[4 * p] + q.bsums[4 * p + 1]), (int16_t)(q.bsums[4 * p + 2] + q.bsums[4 * p + 3])};
            memcpy(blk + 65 * 4 * L + p * 4 * L + lane * 4, s, 4);
        }
    }
}

void kq_prepare(const mm_weight *w, const float *x, int64_t T, void *wdata, int ith, int nth) {
    long t0, t1;
    kq_prepare_rows(w, T, ith, nth, &t0, &t1);
    if (ks_vnni(w) && T == 1) {
        if (t0 < t1) pack_token(w->type, x, w->K, wdata, 0, 1);
        return;
    }
    if (kq_groups(w, T)) {
        const int64_t gb = (w->K / QK_K) * pkk(w->type);
        const long end = t0 < t1 ? (t1 + 7) / 8 * 8 : t1;   // the owner of the last group pads it
        for (long t = t0; t < end; t++)
            pack_token(w->type, t < T ? x + t * w->K : NULL, w->K, (uint8_t *)wdata + t / 8 * gb, (int)(t % 8), 8);
        return;
    }
    const int64_t st = xk_stride(w->K);
    const bool simd = cpu_level() >= CPU_LEVEL_AVX2;
    for (long t = t0; t < t1; t++) {
        block_q8_K *dst = (block_q8_K *)((uint8_t *)wdata + t * st);
        if (simd) quantize_row_q8_K_avx2(x + t * w->K, dst, w->K);
        else quantize_row_q8_K(x + t * w->K, dst, w->K);
    }
}

#define PG 2   // token groups per packed tile

// res[k] (8 token lanes) = row · group k, for G (≤ PG) groups gb bytes apart.
AVX2_TARGET static ALWAYS_INLINE void q4K_ptile(const block_q4_K *w, const uint8_t *grp, int64_t gb, int G, int64_t nb,
                                                const uint8_t *nxt, size_t span, __m256 *res) {
    __m256 acc[PG];
    _Alignas(32) uint8_t wt[8][32];   // the super-block's nibbles, sub-block by sub-block, in element order
    const size_t pf_step = nxt ? pf_step_of(span, nb) : 0;
    UNROLL(2) for (int k = 0; k < G; k++) acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        if (nxt) pf_share(nxt, span, pf_step, i);
        uint32_t sm[4];   // scales 0..7, then mins 0..7
        q4K_scale_words(w[i].scales, sm);
        uint8_t sc[16];
        memcpy(sc, sm, 16);
        q4K_nibbles(&w[i], wt);
        __m256i sumi[PG], summ[PG];
        UNROLL(2) for (int k = 0; k < G; k++) { sumi[k] = _mm256_setzero_si256(); summ[k] = _mm256_setzero_si256(); }
        for (int j = 0; j < 8; j++) {
            __m256i s16[PG];
            UNROLL(2) for (int k = 0; k < G; k++) s16[k] = _mm256_setzero_si256();
            UNROLL(8) for (int g = 0; g < 8; g++) {
                int32_t quad;
                memcpy(&quad, wt[j] + 4 * g, 4);
                const __m256i wv = _mm256_set1_epi32(quad);
                UNROLL(2) for (int k = 0; k < G; k++)
                    s16[k] = _mm256_add_epi16(s16[k], _mm256_maddubs_epi16(wv, _mm256_load_si256(
                                                  (const __m256i *)(grp + k * gb + i * PKK + (8 * j + g) * 32))));
            }
            const __m256i scv = _mm256_set1_epi16(sc[j]);
            UNROLL(2) for (int k = 0; k < G; k++) sumi[k] = _mm256_add_epi32(sumi[k], _mm256_madd_epi16(s16[k], scv));
        }
        UNROLL(4) for (int p = 0; p < 4; p++) {
            const __m256i mv = _mm256_set1_epi32((int)((uint32_t)sc[8 + 2 * p] | ((uint32_t)sc[9 + 2 * p] << 16)));
            UNROLL(2) for (int k = 0; k < G; k++)
                summ[k] = _mm256_add_epi32(summ[k], _mm256_madd_epi16(mv, _mm256_load_si256(
                                                        (const __m256i *)(grp + k * gb + i * PKK + 64 * 32 + 32 + p * 32))));
        }
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(w[i].d)), dmin = _mm256_set1_ps(_cvtsh_ss(w[i].dmin));
        UNROLL(2) for (int k = 0; k < G; k++) {
            const __m256 dx = _mm256_load_ps((const float *)(grp + k * gb + i * PKK + 64 * 32));
            acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[k]), _mm256_mul_ps(d, dx), acc[k]);
            acc[k] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(summ[k]), _mm256_mul_ps(dmin, dx), acc[k]);
        }
    }
    UNROLL(2) for (int k = 0; k < G; k++) res[k] = acc[k];
}

// res[i*2 + k] = row i · group k for 3 rows (rowb bytes apart at w) and 2
// groups: per super-block the rows' nibbles are unpacked once, and each
// sub-block is one run of simd.h's block_q4w_3x2 (the q4_0 tile's asm: each
// activation load serves 3 rows, each broadcast 2 groups), then the rows'
// 6-bit scales by one madd per row and group. The 1-row tile above loaded
// both groups' activations for every row: this runs 1.08-1.14x that tile at
// 128 tokens (K × N = 768 × 2048, 2048², 2048 × 5632, 5632 × 2048; one
// thread, same-process A/B, bit-identical).
AVX2_TARGET static ALWAYS_INLINE void q4K_ptile3(const uint8_t *w, size_t rowb, const uint8_t *grp, int64_t gb,
                                                 int64_t nb, const uint8_t *nxt, size_t span, __m256 *res) {
    __m256 acc[3][2];
    _Alignas(32) uint8_t wt[3][8][32];   // each row's nibbles, sub-block by sub-block, in element order
    uint8_t sc[3][16];                    // each row's 8 scales, then 8 mins
    const size_t pf_step = nxt ? pf_step_of(span, nb) : 0;
    for (int r = 0; r < 3; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        if (nxt) pf_share(nxt, span, pf_step, i);
        float d[3], dmin[3];
        for (int r = 0; r < 3; r++) {
            const block_q4_K *b = (const block_q4_K *)(w + (size_t)r * rowb) + i;
            uint32_t sm[4];
            q4K_scale_words(b->scales, sm);
            memcpy(sc[r], sm, 16);
            q4K_nibbles(b, wt[r]);
            d[r] = _cvtsh_ss(b->d);
            dmin[r] = _cvtsh_ss(b->dmin);
        }
        const uint8_t *xb = grp + i * PKK;
        __m256i sumi[3][2], summ[3][2];
        for (int r = 0; r < 3; r++) sumi[r][0] = sumi[r][1] = summ[r][0] = summ[r][1] = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
            __m256i s16[3][2];
            block_q4w_3x2((const int32_t *)wt[0][j], sizeof wt[0], xb + 8 * j * 32, (size_t)gb, s16);
            UNROLL(3) for (int r = 0; r < 3; r++) {
                const __m256i scv = _mm256_set1_epi16(sc[r][j]);
                sumi[r][0] = _mm256_add_epi32(sumi[r][0], _mm256_madd_epi16(s16[r][0], scv));
                sumi[r][1] = _mm256_add_epi32(sumi[r][1], _mm256_madd_epi16(s16[r][1], scv));
            }
        }
        UNROLL(4) for (int p = 0; p < 4; p++) {
            const __m256i m0 = _mm256_load_si256((const __m256i *)(xb + 64 * 32 + 32 + p * 32));
            const __m256i m1 = _mm256_load_si256((const __m256i *)(xb + gb + 64 * 32 + 32 + p * 32));
            UNROLL(3) for (int r = 0; r < 3; r++) {
                const __m256i mv = _mm256_set1_epi32((int)((uint32_t)sc[r][8 + 2 * p] | ((uint32_t)sc[r][9 + 2 * p] << 16)));
                summ[r][0] = _mm256_add_epi32(summ[r][0], _mm256_madd_epi16(mv, m0));
                summ[r][1] = _mm256_add_epi32(summ[r][1], _mm256_madd_epi16(mv, m1));
            }
        }
        const __m256 dx[2] = {_mm256_load_ps((const float *)(xb + 64 * 32)), _mm256_load_ps((const float *)(xb + gb + 64 * 32))};
        UNROLL(3) for (int r = 0; r < 3; r++) {
            const __m256 dr = _mm256_set1_ps(d[r]), mr = _mm256_set1_ps(dmin[r]);
            UNROLL(2) for (int k = 0; k < 2; k++) {
                acc[r][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[r][k]), _mm256_mul_ps(dr, dx[k]), acc[r][k]);
                acc[r][k] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(summ[r][k]), _mm256_mul_ps(mr, dx[k]), acc[r][k]);
            }
        }
    }
    for (int r = 0; r < 3; r++) { res[2 * r] = acc[r][0]; res[2 * r + 1] = acc[r][1]; }
}

// Q6_K: res[k] = row · group k. Per super-block the row's 6-bit codes are
// unpacked to a byte each in element order (q6K_codes);
// per 16-value group two pairs of quads go through vpmaddubsw (the codes
// 0..63 unsigned: a pair of results, 2·2·63·127, still fits int16) and one
// madd each applies the group's signed scale; the −32 offset of every code
// is taken off at the end as 32·Σ_g sc_g·(Σ x over group g), from the
// packed group sums.
AVX2_TARGET static ALWAYS_INLINE void q6K_ptile(const block_q6_K *w, const uint8_t *grp, int64_t gb, int G, int64_t nb,
                                                const uint8_t *nxt, size_t span, __m256 *res) {
    __m256 acc[PG];
    _Alignas(32) uint8_t wt[8][32];   // the super-block's codes in element order
    const size_t pf_step = nxt ? pf_step_of(span, nb) : 0;
    UNROLL(2) for (int k = 0; k < G; k++) acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        if (nxt) pf_share(nxt, span, pf_step, i);
        UNROLL(2) for (int h = 0; h < 2; h++) {
            __m256i v[4];
            q6K_codes(&w[i], h, v);
            for (int k = 0; k < 4; k++) _mm256_store_si256((__m256i *)wt[4 * h + k], v[k]);
        }
        const uint8_t *xb = grp + i * PKK6, *wq = &wt[0][0];
        __m256i sumi[PG], summ[PG];
        UNROLL(2) for (int k = 0; k < G; k++) { sumi[k] = _mm256_setzero_si256(); summ[k] = _mm256_setzero_si256(); }
        for (int gi = 0; gi < 16; gi++) {
            const __m256i scv = _mm256_set1_epi16(w[i].scales[gi]);
            UNROLL(2) for (int half = 0; half < 2; half++) {
                const int q0 = 4 * gi + 2 * half;   // quad index of the pair
                int32_t a, b;
                memcpy(&a, wq + 4 * q0, 4);
                memcpy(&b, wq + 4 * q0 + 4, 4);
                const __m256i wa = _mm256_set1_epi32(a), wb = _mm256_set1_epi32(b);
                UNROLL(2) for (int k = 0; k < G; k++) {
                    const uint8_t *xq = xb + k * gb + q0 * 32;
                    const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(wa, _mm256_load_si256((const __m256i *)xq)),
                                                         _mm256_maddubs_epi16(wb, _mm256_load_si256((const __m256i *)(xq + 32))));
                    sumi[k] = _mm256_add_epi32(sumi[k], _mm256_madd_epi16(s16, scv));
                }
            }
        }
        UNROLL(8) for (int p = 0; p < 8; p++) {
            const uint32_t s0 = (uint16_t)(int16_t)w[i].scales[2 * p], s1 = (uint16_t)(int16_t)w[i].scales[2 * p + 1];
            const __m256i mv = _mm256_set1_epi32((int)(s0 | s1 << 16));
            UNROLL(2) for (int k = 0; k < G; k++)
                summ[k] = _mm256_add_epi32(summ[k], _mm256_madd_epi16(mv, _mm256_load_si256(
                                                        (const __m256i *)(xb + k * gb + 64 * 32 + 32 + p * 32))));
        }
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(w[i].d));
        UNROLL(2) for (int k = 0; k < G; k++) {
            const __m256 dx = _mm256_load_ps((const float *)(xb + k * gb + 64 * 32));
            const __m256i tot = _mm256_sub_epi32(sumi[k], _mm256_slli_epi32(summ[k], 5));
            acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(tot), _mm256_mul_ps(d, dx), acc[k]);
        }
    }
    UNROLL(2) for (int k = 0; k < G; k++) res[k] = acc[k];
}

// One row × G groups of either type.
AVX2_TARGET static ALWAYS_INLINE void kq_ptile1(enum ggml_type type, const uint8_t *row, const uint8_t *grp, int64_t gb,
                                                int G, int64_t nb, const uint8_t *nxt, size_t span, __m256 *res) {
    if (type == GGML_TYPE_Q4_K) q4K_ptile((const block_q4_K *)row, grp, gb, G, nb, nxt, span, res);
    else q6K_ptile((const block_q6_K *)row, grp, gb, G, nb, nxt, span, res);
}

// The rows `ahead` rows on from r..r+n-1, clipped to r1: what a tile of the
// panel's last pass prefetches (NULL when none is left; kq_vprows_typed's
// strips use it too, so neither prefetches past the thread's rows). kq_prows reads a
// panel of rows once per pair of token groups; the first pass takes them
// from memory, the others from L2. So the last pass prefetches the next
// panel, each tile its own rows one panel on, spread over its super-blocks
// (pf_share). Before, these tiles issued no prefetch: AVX2 forced, TinyLlama
// Q4_K, 2 threads, same-process A/B: 8 sequences 1.10-1.13x, a 16-token
// prompt 1.26-1.30x, 128 tokens 1.04x. 8 rows ahead instead of a panel gave
// the same for decode and 0.98x at 128 tokens.
static inline const uint8_t *kq_pnext(const uint8_t *wd, size_t rowb, long r, long n, long ahead, long r1, size_t *span) {
    if (r + ahead >= r1) return NULL;
    const long e = r + ahead + n < r1 ? r + ahead + n : r1;
    *span = (size_t)(e - r - ahead) * rowb;
    return wd + (size_t)(r + ahead) * rowb;
}

AVX2_TARGET static void kq_prows(enum ggml_type type, const uint8_t *wd, size_t rowb, const uint8_t *pack, int64_t K,
                                 int64_t T, int64_t N, long r0, long r1, float *y) {
    const int64_t nb = K / QK_K, ng = (T + 7) / 8, gb = nb * pkk(type);
    long panel = (long)(64 * 1024 / rowb);
    if (panel < 1) panel = 1;
    _Alignas(32) float lanes[8];
    for (long p0 = r0; p0 < r1; p0 += panel) {
        const long p1 = p0 + panel < r1 ? p0 + panel : r1;
        for (int64_t g = 0; g < ng;) {
            const int G = ng - g >= PG ? PG : 1;
            const long ahead = g + G >= ng ? p1 - p0 : 0;   // the last pass prefetches the next panel
            long r = p0;
            if (G == PG && type == GGML_TYPE_Q4_K)
                for (; r + 3 <= p1; r += 3) {
                    __m256 res[6];
                    size_t span = 0;
                    const uint8_t *nxt = ahead ? kq_pnext(wd, rowb, r, 3, ahead, r1, &span) : NULL;
                    q4K_ptile3(wd + (size_t)r * rowb, rowb, pack + g * gb, gb, nb, nxt, span, res);
                    for (int i = 0; i < 3; i++)
                        for (int k = 0; k < 2; k++) {
                            _mm256_store_ps(lanes, res[2 * i + k]);
                            const int64_t t0 = (g + k) * 8;
                            const int nt = T - t0 < 8 ? (int)(T - t0) : 8;
                            for (int j = 0; j < nt; j++) y[(t0 + j) * N + r + i] = lanes[j];
                        }
                }
            for (; r < p1; r++) {
                __m256 res[PG];
                size_t span = 0;
                const uint8_t *nxt = ahead ? kq_pnext(wd, rowb, r, 1, ahead, r1, &span) : NULL;
                if (G == PG) kq_ptile1(type, wd + (size_t)r * rowb, pack + g * gb, gb, PG, nb, nxt, span, res);
                else kq_ptile1(type, wd + (size_t)r * rowb, pack + g * gb, gb, 1, nb, nxt, span, res);
                for (int k = 0; k < G; k++) {
                    _mm256_store_ps(lanes, res[k]);
                    const int64_t t0 = (g + k) * 8;
                    const int nt = T - t0 < 8 ? (int)(T - t0) : 8;
                    for (int j = 0; j < nt; j++) y[(t0 + j) * N + r] = lanes[j];
                }
            }
            g += G;
        }
    }
}

// ---- K-quant batches with AVX-512 VNNI -------------------------------------------
//
// The packed activations above, against strips of KV_R rows widened once:
// each row's codes as bytes in element order (Q4_K's nibbles, Q6_K's 6-bit
// codes), each scaled unit's scale as a dword (Q4_K: 8 sub-blocks of 32
// values, Q6_K: 16 groups of 16), the pairs of mins (Q4_K) or of scales
// (Q6_K, for the −32 offset) as the dwords vpdpwssd takes, and d (and
// dmin) as floats. The tile broadcasts a row's quad and adds it times a
// group's 8 tokens with one vpdpbusd per row and group (the AVX2 tiles: a
// vpmaddubsw and a vpaddw, or more); each unit's sums are scaled by one
// vpmulld. The int32 lanes hold the AVX2 tiles' sums (Σ over a lane's 4
// products in the unit, times the scale) and the float steps are the same,
// so the results are their bits.
// The strip's first tile prefetches the next strip, spread over its
// super-blocks (pf_share); the widening only loads. Prefetched from the
// widening, the next rows came in a burst while it ran, and the tile after
// it, working from L1, left memory idle: in a profile the widening's
// hottest instructions were its prefetch (16% of its samples) and its
// first load of the weights (12%). Moved into the tile (2 threads,
// same-process A/B):
// TinyLlama Q4_K, 8 sequences 1.20-1.23x, a 16-token prompt 1.20x, 128
// tokens 1.03-1.04x. The scales stored as vectors rather than byte by
// byte: stories110M Q4_K, 8 sequences 1.08x.
#define KV_R 4        // rows a strip
#define KV_K 16384    // longest rows widened: 4 × 16 KiB of bytes on the stack; longer rows take the AVX2 tiles

static inline int kv_units(enum ggml_type type) { return type == GGML_TYPE_Q6_K ? 16 : 8; }   // scales a super-block
static inline int kv_pairs(enum ggml_type type) { return type == GGML_TYPE_Q6_K ? 8 : 4; }    // packed pair sums

AVX512VNNI_TARGET static void kq_widen(enum ggml_type type, int R, const uint8_t *w, size_t rowb, int64_t nb,
                                       uint8_t *pre, int32_t *sc, int32_t *mn, float *dd, float *dm) {
    const size_t bs = type == GGML_TYPE_Q6_K ? sizeof(block_q6_K) : sizeof(block_q4_K);
    const int nu = kv_units(type), np = kv_pairs(type);
    for (int i = 0; i < R; i++)
        for (int64_t b = 0; b < nb; b++) {
            const size_t ib = (size_t)i * (size_t)nb + (size_t)b;
            const uint8_t *blk = w + (size_t)i * rowb + (size_t)b * bs;
            int32_t *s = sc + ib * (size_t)nu, *m = mn + ib * (size_t)np;
            if (type == GGML_TYPE_Q6_K) {
                const block_q6_K *q = (const block_q6_K *)blk;
                for (int h = 0; h < 2; h++) {
                    __m256i v[4];
                    q6K_codes(q, h, v);
                    for (int k = 0; k < 4; k++) _mm256_store_si256((__m256i *)(pre + ib * QK_K + 128 * h + 32 * k), v[k]);
                }
                // Scales as dwords, and as the int16 pairs vpdpwssd takes (sign-extended).
                const __m128i sv = _mm_loadu_si128((const __m128i *)q->scales);
                _mm256_storeu_si256((__m256i *)s, _mm256_cvtepi8_epi32(sv));
                _mm256_storeu_si256((__m256i *)(s + 8), _mm256_cvtepi8_epi32(_mm_srli_si128(sv, 8)));
                _mm256_storeu_si256((__m256i *)m, _mm256_cvtepi8_epi16(sv));
                dd[ib] = _cvtsh_ss(q->d);
                continue;
            }
            const block_q4_K *q = (const block_q4_K *)blk;
            uint32_t sm[4];
            q4K_scale_words(q->scales, sm);
            // The 8 scales as dwords; the 8 mins as the int16 pairs vpdpwssd takes.
            const __m128i sv = _mm_loadu_si128((const __m128i *)sm);
            _mm256_storeu_si256((__m256i *)s, _mm256_cvtepu8_epi32(sv));
            _mm_storeu_si128((__m128i *)m, _mm_cvtepu8_epi16(_mm_srli_si128(sv, 8)));
            q4K_nibbles(q, (uint8_t(*)[32])(pre + ib * QK_K));
            dd[ib] = _cvtsh_ss(q->d);
            dm[ib] = _cvtsh_ss(q->dmin);
        }
}

// res[i*G + k] (8 token lanes) = row i · group k, R widened rows, G groups.
// nxt, when not NULL: the next strip (span bytes), prefetched spread over
// the super-blocks.
AVX512VNNI_TARGET static ALWAYS_INLINE void kq_vptile(enum ggml_type type, int R, int G, const uint8_t *pre,
                                                      const int32_t *sc, const int32_t *mn, const float *dd,
                                                      const float *dm, int64_t nb, const uint8_t *grp, int64_t gb,
                                                      const uint8_t *nxt, size_t span, __m256 *res) {
    const bool q6 = type == GGML_TYPE_Q6_K;
    const int nu = kv_units(type), np = kv_pairs(type), qu = 64 / nu;   // quads a unit
    const int64_t pk = q6 ? PKK6 : PKK;
    __m256 acc[KV_R][PG];
    UNROLL(4) for (int i = 0; i < R; i++)
        UNROLL(2) for (int k = 0; k < G; k++) acc[i][k] = _mm256_setzero_ps();
    const size_t pf_step = nxt ? pf_step_of(span, nb) : 0;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *xb = grp + b * pk;
        if (nxt) pf_share(nxt, span, pf_step, b);
        __m256i sumi[KV_R][PG];
        UNROLL(4) for (int i = 0; i < R; i++)
            UNROLL(2) for (int k = 0; k < G; k++) sumi[i][k] = _mm256_setzero_si256();
        for (int u = 0; u < nu; u++) {
            __m256i ia[KV_R][PG];
            UNROLL(4) for (int i = 0; i < R; i++)
                UNROLL(2) for (int k = 0; k < G; k++) ia[i][k] = _mm256_setzero_si256();
            UNROLL(8) for (int g = 0; g < qu; g++) {
                __m256i xv[PG];
                UNROLL(2) for (int k = 0; k < G; k++) xv[k] = _mm256_load_si256((const __m256i *)(xb + k * gb + (qu * u + g) * 32));
                UNROLL(4) for (int i = 0; i < R; i++) {
                    int32_t quad;
                    memcpy(&quad, pre + ((size_t)i * (size_t)nb + (size_t)b) * QK_K + 4 * (qu * u + g), 4);
                    const __m256i wv = _mm256_set1_epi32(quad);
                    UNROLL(2) for (int k = 0; k < G; k++) ia[i][k] = _mm256_dpbusd_epi32(ia[i][k], wv, xv[k]);
                }
            }
            UNROLL(4) for (int i = 0; i < R; i++) {
                const __m256i s = _mm256_set1_epi32(sc[((size_t)i * (size_t)nb + (size_t)b) * (size_t)nu + (size_t)u]);
                UNROLL(2) for (int k = 0; k < G; k++) sumi[i][k] = _mm256_add_epi32(sumi[i][k], _mm256_mullo_epi32(ia[i][k], s));
            }
        }
        __m256 dx[PG];
        UNROLL(2) for (int k = 0; k < G; k++) dx[k] = _mm256_load_ps((const float *)(xb + k * gb + 64 * 32));
        UNROLL(4) for (int i = 0; i < R; i++) {
            const size_t ib = (size_t)i * (size_t)nb + (size_t)b;
            __m256i summ[PG];
            UNROLL(2) for (int k = 0; k < G; k++) summ[k] = _mm256_setzero_si256();
            UNROLL(8) for (int p = 0; p < np; p++) {
                const __m256i mv = _mm256_set1_epi32(mn[ib * (size_t)np + (size_t)p]);
                UNROLL(2) for (int k = 0; k < G; k++)
                    summ[k] = _mm256_dpwssd_epi32(summ[k], mv, _mm256_load_si256((const __m256i *)(xb + k * gb + 64 * 32 + 32 + p * 32)));
            }
            const __m256 dr = _mm256_set1_ps(dd[ib]);
            if (q6) {
                UNROLL(2) for (int k = 0; k < G; k++) {
                    const __m256i tot = _mm256_sub_epi32(sumi[i][k], _mm256_slli_epi32(summ[k], 5));
                    acc[i][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(tot), _mm256_mul_ps(dr, dx[k]), acc[i][k]);
                }
                continue;
            }
            const __m256 mr = _mm256_set1_ps(dm[ib]);
            UNROLL(2) for (int k = 0; k < G; k++) {
                acc[i][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[i][k]), _mm256_mul_ps(dr, dx[k]), acc[i][k]);
                acc[i][k] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(summ[k]), _mm256_mul_ps(mr, dx[k]), acc[i][k]);
            }
        }
    }
    UNROLL(4) for (int i = 0; i < R; i++)
        UNROLL(2) for (int k = 0; k < G; k++) res[i * G + k] = acc[i][k];
}

// Rows r.. (R of them, widened) against groups g.. (G of them): the tile,
// then the lanes of real tokens to y.
AVX512VNNI_TARGET static ALWAYS_INLINE void kq_vpstore(enum ggml_type type, int R, int G, const uint8_t *pre,
                                                       const int32_t *sc, const int32_t *mn, const float *dd,
                                                       const float *dm, int64_t nb, const uint8_t *pack, int64_t gb,
                                                       int64_t g, int64_t T, int64_t N, long r, float *y,
                                                       const uint8_t *nxt, size_t span) {
    __m256 res[KV_R * PG];
    _Alignas(32) float lanes[8];
    kq_vptile(type, R, G, pre, sc, mn, dd, dm, nb, pack + g * gb, gb, nxt, span, res);
    for (int i = 0; i < R; i++)
        for (int k = 0; k < G; k++) {
            _mm256_store_ps(lanes, res[i * G + k]);
            const int64_t t0 = (g + k) * 8;
            const int nt = T - t0 < 8 ? (int)(T - t0) : 8;
            for (int j = 0; j < nt; j++) y[(t0 + j) * N + r + i] = lanes[j];
        }
}

AVX512VNNI_TARGET static ALWAYS_INLINE void kq_vprows_typed(enum ggml_type type, const uint8_t *wd, size_t rowb,
                                                            const uint8_t *pack, int64_t K, int64_t T, int64_t N,
                                                            long r0, long r1, float *y) {
    const int64_t nb = K / QK_K, ng = (T + 7) / 8, gb = nb * pkk(type);
    _Alignas(32) uint8_t pre[KV_R * KV_K];
    int32_t sc[KV_R * KV_K / 16], mn[KV_R * KV_K / 32];
    float dd[KV_R * KV_K / QK_K], dm[KV_R * KV_K / QK_K];
    for (long r = r0; r < r1;) {
        const int R = r1 - r >= KV_R ? KV_R : 1;
        kq_widen(type, R, wd + (size_t)r * rowb, rowb, nb, pre, sc, mn, dd, dm);
        size_t span = 0;   // the strip's first tile prefetches the next strip, up to the thread's last row
        const uint8_t *nxt0 = kq_pnext(wd, rowb, r, KV_R, R, r1, &span);
        for (int64_t g = 0; g < ng; g += PG) {
            const int G = ng - g >= PG ? PG : 1;
            const uint8_t *nxt = g == 0 ? nxt0 : NULL;
            if (R == KV_R && G == PG) kq_vpstore(type, KV_R, PG, pre, sc, mn, dd, dm, nb, pack, gb, g, T, N, r, y, nxt, span);
            else if (R == KV_R) kq_vpstore(type, KV_R, 1, pre, sc, mn, dd, dm, nb, pack, gb, g, T, N, r, y, nxt, span);
            else if (G == PG) kq_vpstore(type, 1, PG, pre, sc, mn, dd, dm, nb, pack, gb, g, T, N, r, y, nxt, span);
            else kq_vpstore(type, 1, 1, pre, sc, mn, dd, dm, nb, pack, gb, g, T, N, r, y, nxt, span);
        }
        r += R;
    }
}

AVX512VNNI_TARGET static void kq_vprows(enum ggml_type type, const uint8_t *wd, size_t rowb, const uint8_t *pack,
                                        int64_t K, int64_t T, int64_t N, long r0, long r1, float *y) {
    if (type == GGML_TYPE_Q6_K) kq_vprows_typed(GGML_TYPE_Q6_K, wd, rowb, pack, K, T, N, r0, r1, y);
    else kq_vprows_typed(GGML_TYPE_Q4_K, wd, rowb, pack, K, T, N, r0, r1, y);
}

// ---- AVX-512 VNNI: Q4_K and Q6_K in strips of 16 rows ----------------------
//
// kq_to_strips lays each 16 rows of a Q4_K weight out as one stream, per
// super-block the 16 rows' 2304 bytes rearranged (KS_SB):
//   [0, 32)      the 16 rows' d (f16)
//   [32, 64)     their dmin (f16)
//   [64, 256)    scale byte k (0..11) of the 16 rows at 64 + 16k
//   [256, 2304)  32 groups of 64 bytes: group 8c + h holds bytes
//                qs[32c + 4h .. 32c + 4h + 3] of the 16 rows (row i at 4i),
//                whose low nibbles are quad h of sub-block 2c and high
//                nibbles quad h of sub-block 2c + 1.
// One 64-byte load then serves 16 rows: a 512-bit vpdpbusd multiplies a
// sub-block quad of 16 rows by one token's quad broadcast ({1to16}), as the
// q8_0 and q4_0 strips do (matmul.c, stile8). The 16 rows' scales and mins
// are unpacked from their bytes with 128-bit operations once per
// super-block for all the tokens. Each sub-block's int32 sum is multiplied
// by its scale (vpmulld) and the mins' sum is taken by vpdpwssd from the
// pair sums packed with the tokens, so the integers and the float steps per
// super-block are kq_vptile's: the same bits, with one token as in a batch.
//
// Q6_K's strips (KS6_SB, the 16 rows' 3360 bytes a super-block):
//   [0, 32)      the 16 rows' d (f16)
//   [32, 288)    scale g (int8, values 16g .. 16g + 15) of the 16 rows at 32 + 16g
//   [288, 3360)  for half h (0, 1) and j (0..7), three groups of 64 bytes at
//                288 + 192·(8h + j): bytes 4j .. 4j + 3 of ql[64h ..], of
//                ql[64h + 32 ..] and of qh[32h ..] of the 16 rows.
// The three give quad j of the values 128h + 32k + 0..31 for k = 0..3
// (codes 0..63, as q6K_codes makes them); their groups' int32 sums are
// multiplied by the scales, and 32·Σ sc·(Σ x) comes off by vpdpwssd from the
// packed pair sums, as in kq_vptile.
#define KS_SB ((int64_t)(16 * sizeof(block_q4_K)))
#define KS6_SB ((int64_t)(16 * sizeof(block_q6_K)))
// Each token's quad is vpdpbusd's {1to16} memory operand (dpbusd_b): with
// _mm512_set1_epi32 every quad took a vpbroadcastd of its own, and the
// batch tiles ran 0.84-0.94x (8 sequences of stories110M Q4_K and of a
// tiny256 Q4_K model, a 128-token TinyLlama Q4_K prompt; one token 1.00x).
// A sub-block's scaled sums added where the code adds them: left alone, the
// compiler kept all 8 sub-blocks' (16 groups') sums of 8 tokens for the
// multiplies at the end, 64-128 of them spilled to the stack.
#define KS_KEEP(v) __asm__("" : "+v"(v))
// A batch tile's first group prefetches the strip KS_PF8 ahead, n lines
// from line l0 of the super-block at o at each step: all 36 (Q4_K) or 53
// (Q6_K) lines at a super-block's start held the product back. One token
// (ks_tile1, ks6_tile1) prefetches the same way when the context's chooser
// says so (mm_set_decode_prefetch; q8_0 and q4_0 strips follow the same
// choice): a thread's rows are one stream in 2 MiB pages, which the
// hardware prefetcher follows well in some states of the memory and not
// in others. Against 2 KiB ahead into L1 and 4 KiB into L2, spread, none
// once ran Q4_K decode 1.02-1.15x, Q6_K 1.00-1.05x, TinyLlama Q4_K_M 1.04x
// (issued at each super-block's start, that prefetch had made Q6_K decode
// from DRAM 0.85x the rows' kernel, while it ran 2.1x in cache). Taking the batch
// tiles' prefetch out ran 0.76-0.88x with 8 sequences.
#define KS_PREFETCH8(o, l0, n) \
    UNROLL(5) for (int l_ = (l0); l_ < (l0) + (n); l_++) _mm_prefetch((const char *)(o) + KS_PF8 + 64 * l_, _MM_HINT_T1)
#define KS_PF8 8192   // bytes ahead ks_tile8 prefetches into L2

int kq_strips_wanted(const mm_weight *w) {
    return kq_type(w->type) && !w->strips && w->N >= 16 && w->N % 16 == 0 && w->K % QK_K == 0 && cpu_vnni512();
}

// A super-block of 16 rows in the layouts above.
static void put_kq(enum ggml_type type, uint8_t *o, const uint8_t *rows, size_t rowb) {
    for (int i = 0; type == GGML_TYPE_Q6_K && i < 16; i++) {
        const block_q6_K *q = (const block_q6_K *)(rows + (size_t)i * rowb);
        memcpy(o + 2 * i, &q->d, 2);
        for (int g = 0; g < 16; g++) o[32 + 16 * g + i] = (uint8_t)q->scales[g];
        for (int h = 0; h < 2; h++)
            for (int j = 0; j < 8; j++) {
                uint8_t *e = o + 288 + 192 * (8 * h + j) + 4 * i;
                memcpy(e, q->ql + 64 * h + 4 * j, 4);
                memcpy(e + 64, q->ql + 64 * h + 32 + 4 * j, 4);
                memcpy(e + 128, q->qh + 32 * h + 4 * j, 4);
            }
    }
    for (int i = 0; type == GGML_TYPE_Q4_K && i < 16; i++) {
        const block_q4_K *q = (const block_q4_K *)(rows + (size_t)i * rowb);
        memcpy(o + 2 * i, &q->d, 2);
        memcpy(o + 32 + 2 * i, &q->dmin, 2);
        for (int k = 0; k < 12; k++) o[64 + 16 * k + i] = q->scales[k];
        for (int g = 0; g < 32; g++) memcpy(o + 256 + 64 * g + 4 * i, q->qs + 4 * g, 4);
    }
}

int kq_to_strips(mm_weight *w, void *data) {
    const int64_t bs = w->type == GGML_TYPE_Q6_K ? (int64_t)sizeof(block_q6_K) : (int64_t)sizeof(block_q4_K);
    return mm_strips_walk(w, data, w->K / QK_K, bs, put_kq);
}

// Row r of a weight in strips · a Q8_K activation row: the row's block put
// back together, then the rows' scalar reference (the same sum, the same
// bits).
static float ks_dot_scalar(enum ggml_type type, const uint8_t *data, int64_t r, const block_q8_K *x, int64_t nb) {
    const bool q6 = type == GGML_TYPE_Q6_K;
    const int64_t sbb = q6 ? KS6_SB : KS_SB;
    const uint8_t *s = data + (size_t)(r / 16) * (size_t)(nb * sbb);
    const int i = (int)(r % 16);
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *o = s + b * sbb;
        if (q6) {
            block_q6_K q;
            memcpy(&q.d, o + 2 * i, 2);
            for (int g = 0; g < 16; g++) q.scales[g] = (int8_t)o[32 + 16 * g + i];
            for (int h = 0; h < 2; h++)
                for (int j = 0; j < 8; j++) {
                    const uint8_t *e = o + 288 + 192 * (8 * h + j) + 4 * i;
                    memcpy(q.ql + 64 * h + 4 * j, e, 4);
                    memcpy(q.ql + 64 * h + 32 + 4 * j, e + 64, 4);
                    memcpy(q.qh + 32 * h + 4 * j, e + 128, 4);
                }
            sum += dot_q6K_scalar(&q, x + b, 1);
            continue;
        }
        block_q4_K q;
        memcpy(&q.d, o + 2 * i, 2);
        memcpy(&q.dmin, o + 32 + 2 * i, 2);
        for (int k = 0; k < 12; k++) q.scales[k] = o[64 + 16 * k + i];
        for (int g = 0; g < 32; g++) memcpy(q.qs + 4 * g, o + 256 + 64 * g + 4 * i, 4);
        sum += dot_q4K_scalar(&q, x + b, 1);
    }
    return sum;
}

// The 16 rows' 6-bit scales (sc[j], bytes) and mins of a strip's
// super-block at o, the mins as the int16 pairs (m_2p, m_2p+1) of each row
// vpdpwssd takes (mp[p]). Byte shifts are 16-bit shifts masked.
AVX512VNNI_TARGET static ALWAYS_INLINE void ks_scales(const uint8_t *o, __m128i sc[8], __m512i mp[4]) {
    __m128i S[12], m[8];
    UNROLL(12) for (int k = 0; k < 12; k++) S[k] = _mm_loadu_si128((const __m128i *)(o + 64 + 16 * k));
    const __m128i k63 = _mm_set1_epi8(63), k15 = _mm_set1_epi8(15), k48 = _mm_set1_epi8(0x30);
    UNROLL(4) for (int j = 0; j < 4; j++) {
        sc[j] = _mm_and_si128(S[j], k63);
        m[j] = _mm_and_si128(S[j + 4], k63);
        const __m128i top_s = _mm_and_si128(_mm_srli_epi16(S[j], 2), k48), top_m = _mm_and_si128(_mm_srli_epi16(S[j + 4], 2), k48);
        sc[j + 4] = _mm_or_si128(_mm_and_si128(S[j + 8], k15), top_s);
        m[j + 4] = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(S[j + 8], 4), k15), top_m);
    }
    UNROLL(4) for (int p = 0; p < 4; p++)
        mp[p] = _mm512_cvtepu8_epi16(_mm256_set_m128i(_mm_unpackhi_epi8(m[2 * p], m[2 * p + 1]),
                                                      _mm_unpacklo_epi8(m[2 * p], m[2 * p + 1])));
}

// The float steps of one super-block for the 16 rows and one token (its d
// and pair sums at xd, xp): kq_vptile's, lane by lane.
AVX512VNNI_TARGET static ALWAYS_INLINE __m512 ks_float(__m512 acc, __m512i sumi, const __m512i mp[4], __m512 dd,
                                                       __m512 dm, const uint8_t *xd, const uint8_t *xp, int L) {
    __m512i summ = _mm512_setzero_si512();
    UNROLL(4) for (int p = 0; p < 4; p++)
        summ = _mm512_dpwssd_epi32(summ, mp[p], _mm512_set1_epi32(*(const int32_t *)(xp + p * 4 * L)));
    const __m512 dx = _mm512_set1_ps(*(const float *)xd);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_mul_ps(dd, dx), acc);
    return _mm512_fnmadd_ps(_mm512_cvtepi32_ps(summ), _mm512_mul_ps(dm, dx), acc);
}

// One token (decode): y[0..15] for the strip at sp (nb super-blocks), the
// token packed alone at xq (KS_PK1 a super-block). Each pair of sub-blocks
// in 4 chains of int32 sums (added exactly before their scales).
AVX512VNNI_TARGET static void ks_tile1(const uint8_t *sp, int64_t nb, const uint8_t *xq, float *y, bool pf) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *o = sp + b * KS_SB, *xb = xq + b * KS_PK1;
        __m128i sc[8];
        __m512i mp[4];
        ks_scales(o, sc, mp);
        __m512i sumi = _mm512_setzero_si512();
        UNROLL(4) for (int c = 0; c < 4; c++) {
            if (pf) KS_PREFETCH8(o, 9 * c, 9);   // the 36 lines KS_PF8 ahead, spread
            __m512i a[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
            UNROLL(8) for (int h = 0; h < 8; h++) {
                const __m512i v = _mm512_loadu_si512((const void *)(o + 256 + 64 * (8 * c + h)));
                a[h & 1] = dpbusd_b(a[h & 1], _mm512_and_si512(v, m4), xb + 4 * (16 * c + h));
                a[2 + (h & 1)] = dpbusd_b(a[2 + (h & 1)], _mm512_and_si512(_mm512_srli_epi16(v, 4), m4), xb + 4 * (16 * c + 8 + h));
            }
            sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(_mm512_add_epi32(a[0], a[1]), _mm512_cvtepu8_epi32(sc[2 * c])));
            sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(_mm512_add_epi32(a[2], a[3]), _mm512_cvtepu8_epi32(sc[2 * c + 1])));
            KS_KEEP(sumi);
        }
        const __m512 dd = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)o));
        const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(o + 32)));
        acc = ks_float(acc, sumi, mp, dd, dm, xb + 256, xb + 260, 1);
    }
    _mm512_storeu_ps(y, acc);
}

// A group of 8 token lanes (PKK a super-block) at grp: y[t·N + 0..15] for
// its nt real tokens. pf: prefetch the strip ahead (its first group; later
// groups find it in cache). Sub-block by sub-block, the 8 tokens' sums side
// by side.
AVX512VNNI_TARGET static void ks_tile8(const uint8_t *sp, int64_t nb, const uint8_t *grp, float *y, int64_t N, int nt,
                                       bool pf) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 acc[8];
    UNROLL(8) for (int t = 0; t < 8; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *o = sp + b * KS_SB, *xb = grp + b * PKK;
        __m128i sc[8];
        __m512i mp[4];
        ks_scales(o, sc, mp);
        __m512i sumi[8];
        UNROLL(8) for (int t = 0; t < 8; t++) sumi[t] = _mm512_setzero_si512();
        UNROLL(8) for (int s = 0; s < 8; s++) {
            __m512i a[8];
            UNROLL(8) for (int t = 0; t < 8; t++) a[t] = _mm512_setzero_si512();
            if (pf) KS_PREFETCH8(o, 5 * s, 5);
            UNROLL(8) for (int h = 0; h < 8; h++) {
                __m512i v = _mm512_loadu_si512((const void *)(o + 256 + 64 * (8 * (s / 2) + h)));
                v = s & 1 ? _mm512_and_si512(_mm512_srli_epi16(v, 4), m4) : _mm512_and_si512(v, m4);
                UNROLL(8) for (int t = 0; t < 8; t++)
                    a[t] = dpbusd_b(a[t], v, xb + 32 * (8 * s + h) + 4 * t);
            }
            const __m512i scv = _mm512_cvtepu8_epi32(sc[s]);
            UNROLL(8) for (int t = 0; t < 8; t++) {
                sumi[t] = _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(a[t], scv));
                KS_KEEP(sumi[t]);
            }
        }
        const __m512 dd = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)o));
        const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(o + 32)));
        UNROLL(8) for (int t = 0; t < 8; t++)
            acc[t] = ks_float(acc[t], sumi[t], mp, dd, dm, xb + 64 * 32 + 4 * t, xb + 65 * 32 + 4 * t, 8);
    }
    for (int t = 0; t < nt; t++) _mm512_storeu_ps(y + t * N, acc[t]);
}

// Q6_K: the 16 rows' scale g as dwords, sign-extended.
AVX512VNNI_TARGET static ALWAYS_INLINE __m512i ks6_scale(const uint8_t *o, int g) {
    return _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(o + 32 + 16 * g)));
}

// Q6_K: the 16 rows' scales as the int16 pairs (sc_2p, sc_2p+1) vpdpwssd
// takes (sp[p]), sign-extended.
AVX512VNNI_TARGET static ALWAYS_INLINE void ks6_pairs(const uint8_t *o, __m512i sp[8]) {
    UNROLL(8) for (int p = 0; p < 8; p++) {
        const __m128i a = _mm_loadu_si128((const __m128i *)(o + 32 + 32 * p)), b = _mm_loadu_si128((const __m128i *)(o + 48 + 32 * p));
        sp[p] = _mm512_cvtepi8_epi16(_mm256_set_m128i(_mm_unpackhi_epi8(a, b), _mm_unpacklo_epi8(a, b)));
    }
}

// Quad j of the codes of values 128h + 32k + 0..31 of the 16 rows, from the
// three groups at e (ql, ql + 32, qh): q6K_codes' bits.
AVX512VNNI_TARGET static ALWAYS_INLINE __m512i ks6_codes(const uint8_t *e, int k) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const __m512i l = _mm512_loadu_si512((const void *)(e + (k & 1) * 64)), hb = _mm512_loadu_si512((const void *)(e + 128));
    const __m512i lo = k < 2 ? _mm512_and_si512(l, m4) : _mm512_and_si512(_mm512_srli_epi16(l, 4), m4);
    const __m512i hi = k == 0 ? _mm512_slli_epi16(hb, 4) : k == 1 ? _mm512_slli_epi16(hb, 2) : k == 2 ? hb : _mm512_srli_epi16(hb, 2);
    return _mm512_or_si512(lo, _mm512_and_si512(hi, m30));
}

// The float step of one Q6_K super-block for one token (d at xd, pair sums at xp).
AVX512VNNI_TARGET static ALWAYS_INLINE __m512 ks6_float(__m512 acc, __m512i sumi, const __m512i sp[8], __m512 dd,
                                                        const uint8_t *xd, const uint8_t *xp, int L) {
    __m512i summ = _mm512_setzero_si512();
    UNROLL(8) for (int p = 0; p < 8; p++)
        summ = _mm512_dpwssd_epi32(summ, sp[p], _mm512_set1_epi32(*(const int32_t *)(xp + p * 4 * L)));
    const __m512i tot = _mm512_sub_epi32(sumi, _mm512_slli_epi32(summ, 5));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(tot), _mm512_mul_ps(dd, _mm512_set1_ps(*(const float *)xd)), acc);
}

// ks_tile1 for Q6_K: per half and pair of 16-value groups, the 4 quarters'
// sums in 4 chains.
AVX512VNNI_TARGET static void ks6_tile1(const uint8_t *sp0, int64_t nb, const uint8_t *xq, float *y, bool pf) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *o = sp0 + b * KS6_SB, *xb = xq + b * KS6_PK1;
        __m512i sumi = _mm512_setzero_si512();
        UNROLL(2) for (int h = 0; h < 2; h++)
            UNROLL(2) for (int jj = 0; jj < 2; jj++) {   // quads 4jj .. 4jj + 3: group 8h + 2k + jj of each quarter k
                if (pf) KS_PREFETCH8(o, 14 * (2 * h + jj), 14);   // the 53 lines KS_PF8 ahead, spread
                __m512i a[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
                UNROLL(4) for (int j = 4 * jj; j < 4 * jj + 4; j++) {
                    const uint8_t *e = o + 288 + 192 * (8 * h + j);
                    UNROLL(4) for (int k = 0; k < 4; k++)
                        a[k] = dpbusd_b(a[k], ks6_codes(e, k), xb + 4 * (32 * h + 8 * k + j));
                }
                UNROLL(4) for (int k = 0; k < 4; k++) sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(a[k], ks6_scale(o, 8 * h + 2 * k + jj)));
                KS_KEEP(sumi);
            }
        __m512i sp[8];
        ks6_pairs(o, sp);
        const __m512 dd = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)o));
        acc = ks6_float(acc, sumi, sp, dd, xb + 256, xb + 260, 1);
    }
    _mm512_storeu_ps(y, acc);
}

// ks_tile8 for Q6_K: 16-value group by group, the 8 tokens' sums side by side.
// pre, when not NULL: the super-blocks' codes decoded ahead (ks6_decode),
// and the sums go on from y's (add) instead of from 0.
AVX512VNNI_TARGET static ALWAYS_INLINE void ks6_tile8_core(const uint8_t *sp0, int64_t nb, const uint8_t *grp, float *y,
                                                           int64_t N, int nt, bool pf, const uint8_t *pre, bool add) {
    __m512 acc[8];
    UNROLL(8) for (int t = 0; t < 8; t++) acc[t] = add && t < nt ? _mm512_loadu_ps(y + t * N) : _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *o = sp0 + b * KS6_SB, *xb = grp + b * PKK6;
        __m512i sumi[8];
        UNROLL(8) for (int t = 0; t < 8; t++) sumi[t] = _mm512_setzero_si512();
        UNROLL(16) for (int g = 0; g < 16; g++) {   // group g = 8h + 2k + jj: quads 4jj .. 4jj + 3 of quarter k of half h
            const int h = g / 8, k = (g % 8) / 2, jj = g % 2;
            __m512i a[8];
            UNROLL(8) for (int t = 0; t < 8; t++) a[t] = _mm512_setzero_si512();
            if (pf) KS_PREFETCH8(o, 4 * g, 4);
            UNROLL(4) for (int j = 4 * jj; j < 4 * jj + 4; j++) {
                const __m512i v = pre ? _mm512_load_si512((const void *)(pre + (b * 64 + 32 * h + 8 * k + j) * 64))
                                      : ks6_codes(o + 288 + 192 * (8 * h + j), k);
                UNROLL(8) for (int t = 0; t < 8; t++)
                    a[t] = dpbusd_b(a[t], v, xb + 32 * (32 * h + 8 * k + j) + 4 * t);
            }
            const __m512i scv = ks6_scale(o, g);
            UNROLL(8) for (int t = 0; t < 8; t++) {
                sumi[t] = _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(a[t], scv));
                KS_KEEP(sumi[t]);
            }
        }
        __m512i sp[8];
        ks6_pairs(o, sp);
        const __m512 dd = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)o));
        UNROLL(8) for (int t = 0; t < 8; t++)
            acc[t] = ks6_float(acc[t], sumi[t], sp, dd, xb + 64 * 32 + 4 * t, xb + 65 * 32 + 4 * t, 8);
    }
    for (int t = 0; t < nt; t++) _mm512_storeu_ps(y + t * N, acc[t]);
}

AVX512VNNI_TARGET static void ks6_tile8(const uint8_t *sp0, int64_t nb, const uint8_t *grp, float *y, int64_t N, int nt,
                                        bool pf) {
    ks6_tile8_core(sp0, nb, grp, y, N, nt, pf, NULL, false);
}

AVX512VNNI_TARGET static void ks6_tile8_pre(const uint8_t *sp0, int64_t nb, const uint8_t *grp, float *y, int64_t N,
                                            int nt, const uint8_t *pre, bool add) {
    ks6_tile8_core(sp0, nb, grp, y, N, nt, false, pre, add);
}

// Q6_K batches of 2+ token groups: the codes of KS6_PRE super-blocks of a
// strip decoded once (4 KiB each: quad q of super-block b at (64b + q)·64)
// for all the groups, instead of once per group, prefetched as the batch
// tiles' first group does. Same-process rounds against the rows, TinyLlama
// Q6_K: a 128-token prompt 0.97x -> 1.15-1.39x, 16 sequences 1.10x
// (without the prefetch 0.92x).
#define KS6_PRE 8
AVX512VNNI_TARGET static void ks6_decode(const uint8_t *sp0, int64_t nb, uint8_t *pre) {
    for (int64_t b = 0; b < nb; b++)
        UNROLL(2) for (int h = 0; h < 2; h++)
            for (int j = 0; j < 8; j++) {
                const uint8_t *e = sp0 + b * KS6_SB + 288 + 192 * (8 * h + j);
                KS_PREFETCH8(sp0 + b * KS6_SB, 4 * (8 * h + j), 4);
                UNROLL(4) for (int k = 0; k < 4; k++)
                    _mm512_store_si512((void *)(pre + (b * 64 + 32 * h + 8 * k + j) * 64), ks6_codes(e, k));
            }
}

// Rows [r0, r1) (whole strips) for the T tokens packed at pack.
AVX512VNNI_TARGET static void ks_run(enum ggml_type type, const uint8_t *wd, const uint8_t *pack, int64_t K, int64_t T,
                                     int64_t N, long r0, long r1, float *y) {
    const bool q6 = type == GGML_TYPE_Q6_K;
    const int64_t nb = K / QK_K, gb = nb * pkk(type);
    const bool pf = T == 1 && mm_decode_prefetch();
    for (long r = r0; r < r1; r += 16) {
        const uint8_t *sp = wd + (size_t)(r / 16) * (size_t)(nb * (q6 ? KS6_SB : KS_SB));
        if (T == 1) {
            if (q6) ks6_tile1(sp, nb, pack, y + r, pf);
            else ks_tile1(sp, nb, pack, y + r, pf);
            continue;
        }
        if (q6 && T > 8) {
            _Alignas(64) uint8_t pre[KS6_PRE * 64 * 64];
            for (int64_t b0 = 0; b0 < nb; b0 += KS6_PRE) {
                const int64_t nbc = nb - b0 < KS6_PRE ? nb - b0 : KS6_PRE;
                ks6_decode(sp + b0 * KS6_SB, nbc, pre);
                for (int64_t g = 0; g * 8 < T; g++) {
                    const int nt = T - g * 8 < 8 ? (int)(T - g * 8) : 8;
                    ks6_tile8_pre(sp + b0 * KS6_SB, nbc, pack + g * gb + b0 * PKK6, y + g * 8 * N + r, N, nt, pre, b0 > 0);
                }
            }
            continue;
        }
        for (int64_t g = 0; g * 8 < T; g++) {
            const int nt = T - g * 8 < 8 ? (int)(T - g * 8) : 8;
            if (q6) ks6_tile8(sp, nb, pack + g * gb, y + g * 8 * N + r, N, nt, g == 0);
            else ks_tile8(sp, nb, pack + g * gb, y + g * 8 * N + r, N, nt, g == 0);
        }
    }
}

// Rows in panels of about 32 KiB of weights; within a panel, tiles of
// KQ_C tokens × 1 row, then the tokens left one at a time, 4 rows a tile.
// Without AVX2, the scalar reference, a row and a token at a time.
void kq_compute_rows(const mm_weight *w, const void *wdata, int64_t T, float *y, long r0, long r1) {
    const int64_t K = w->K, N = w->N, nb = K / QK_K, st = xk_stride(K);
    const size_t rowb = (size_t)ggml_nbytes(w->type, K);
    const bool simd = cpu_level() >= CPU_LEVEL_AVX2, q4 = w->type == GGML_TYPE_Q4_K;
    const bool vnni = cpu_vnni512();
    if (r0 >= r1) return;
    if (w->strips) {
        if (ks_vnni(w)) ks_run(w->type, w->data, wdata, K, T, N, r0, r1, y);
        else
            for (int64_t t = 0; t < T; t++)
                for (long r = r0; r < r1; r++)
                    y[t * N + r] = ks_dot_scalar(w->type, w->data, r, (const block_q8_K *)((const uint8_t *)wdata + t * st), nb);
        return;
    }
    if (!simd) {
        for (int64_t t = 0; t < T; t++) {
            const block_q8_K *xq = (const block_q8_K *)((const uint8_t *)wdata + t * st);
            for (long r = r0; r < r1; r++) {
                const uint8_t *row = (const uint8_t *)w->data + (size_t)r * rowb;
                y[t * N + r] = q4 ? dot_q4K_scalar(row, xq, nb) : dot_q6K_scalar(row, xq, nb);
            }
        }
        return;
    }
    if (kq_pack(w->type, T)) {
        if (vnni && K <= KV_K) kq_vprows(w->type, w->data, rowb, wdata, K, T, N, r0, r1, y);
        else kq_prows(w->type, w->data, rowb, wdata, K, T, N, r0, r1, y);
        return;
    }
    const kvtile_fn v14 = vnni ? (q4 ? q4K_v14 : q6K_v14) : (q4 ? q4K_a14 : q6K_a14);
    const kvtile_fn v41 = vnni ? (q4 ? q4K_v41 : q6K_v41) : (q4 ? q4K_a41 : q6K_a41);
    const kvtile_fn v11 = vnni ? (q4 ? q4K_v11 : q6K_v11) : (q4 ? q4K_a11 : q6K_a11);
    long panel = T == 1 ? r1 - r0 : (long)(32 * 1024 / rowb);
    if (panel < 1) panel = 1;
    // One token (decode): the rows are one linear stream, prefetched at
    // least 4 KiB ahead, the tile ahead spread over a tile's super-blocks
    // (pf_share). Prefetching the whole next tile at its start (72 lines for
    // TinyLlama's 4 rows of K = 2048) ran 0.4x the 1-row kernel from DRAM,
    // spread it ran 1.25x (AVX-512 VNNI, one thread). Spread, it helps
    // stories110M's short rows too: 4 rows of 432 bytes, prefetched, 470-490
    // against 421-458 tok/s unprefetched (2 threads, alternating). A lone
    // row of 1 KiB or more prefetches itself whole.
    const size_t ahead4 = T == 1 ? pf_ahead(4 * rowb) : 0, ahead = T == 1 && rowb >= 1024 ? pf_ahead(rowb) : 0;
    for (long p0 = r0; p0 < r1; p0 += panel) {
        const long p1 = p0 + panel < r1 ? p0 + panel : r1;
        int64_t t = 0;
        for (; t + KQ_C <= T; t += KQ_C) {
            const block_q8_K *xs[KQ_C];
            for (int j = 0; j < KQ_C; j++) xs[j] = (const block_q8_K *)((const uint8_t *)wdata + (t + j) * st);
            float out[KQ_C];
            for (long r = p0; r < p1; r++) {
                v14((const uint8_t *)w->data + (size_t)r * rowb, rowb, xs, nb, 0, out);
                for (int j = 0; j < KQ_C; j++) y[(t + j) * N + r] = out[j];
            }
        }
        for (; t < T; t++) {
            const block_q8_K *xq = (const block_q8_K *)((const uint8_t *)wdata + t * st);
            long r = p0;
            for (; r + 4 <= p1; r += 4) v41((const uint8_t *)w->data + (size_t)r * rowb, rowb, &xq, nb, ahead4, &y[t * N + r]);
            for (; r < p1; r++) v11((const uint8_t *)w->data + (size_t)r * rowb, rowb, &xq, nb, ahead, &y[t * N + r]);
        }
    }
}

void kq_compute(const mm_weight *w, const void *wdata, int64_t T, float *y, int ith, int nth) {
    long r0, r1;
    tp_split(w->N, ith, nth, w->strips ? 16 : 4, &r0, &r1);
    kq_compute_rows(w, wdata, T, y, r0, r1);
}
