// matmul.c — y = x · Wᵀ for f32/f16/bf16/q8_0/q4_0 weights (see matmul.h).
//
// Quantized weights: mm_prepare() quantizes each activation row once per
// matmul to 8-bit blocks of 32 (the q8_0 rule) into wdata, laid out per row as
//   [K int8 values][K/32 floats: each block's scale]
// mm_compute() gives each thread a slice of the weight rows and walks it in
// tiles of QR rows × QC tokens: a microkernel keeps the QR·QC accumulators
// in registers and, for every block of 32 weights, reuses each weight block
// for QC tokens and each activation block for QR rows. A thread's weight
// tile is read from memory once and then from L1 for every token tile, so
// prefill is bound by arithmetic, not by memory; decode (one token) runs
// tiles of 4 rows (q8_0 on AVX2 its own function, qrows4_q8_0), which keep
// four independent accumulator chains and four weight streams in flight.
// From 8 tokens on, the AVX2 path packs the activations instead (below).
//
// The int8 dot product of a block is ggml's: |w| (unsigned) times x with w's
// sign (signed), summed in pairs (_mm256_maddubs_epi16, which cannot
// saturate here: 2·128·127 < 2^15) and widened (_mm256_madd_epi16) — or one
// _mm256_dpbusd_epi32 where AVX512-VNNI (with VL) or AVX-VNNI is present.
// Each block's int32 sum is scaled by d_w·d_x in float.
//
// Paths: scalar (the reference the tests compare against), AVX2+FMA+F16C,
// AVX-512 (float weights in 512-bit code; quantized weights use the 256-bit
// kernels, with VNNI dot products when present). Chosen per call from
// cpu_level(). No allocation (but mm_simple), no locks.
#include "matmul.h"

#include <immintrin.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "simd.h"
#include "kquant.h"
#include "quant.h"
#include "threadpool.h"
#include "../util/util.h"

#define DO_PRAGMA(x) _Pragma(#x)
#define PRAGMA_UNROLL(n) DO_PRAGMA(GCC unroll n)   // loops over tile rows/tokens: unrolled, so accumulators stay in registers

#define TILE_T 4   // tokens per pass over a row (float weights)
#define QR 3       // weight rows per quantized tile (small batches)
#define QR1 4      // weight rows per quantized tile when one token is left (decode)
#define QC 4       // tokens per quantized tile (small batches)

static inline int64_t xq_stride(int64_t K) {   // bytes per prepared activation row
    int64_t s = K + (K / 32) * (int64_t)sizeof(float);
    return (s + 63) & ~(int64_t)63;
}

static bool is_quant(enum ggml_type t) { return t == GGML_TYPE_Q8_0 || t == GGML_TYPE_Q4_0; }

static inline int64_t pack_bytes(enum ggml_type type, int64_t K);

size_t mm_wdata_size(enum ggml_type type, int64_t K, int64_t T) {
    if (kq_type(type)) return kq_wdata_size(type, K, T);
    if (!is_quant(type)) return 0;
    const int64_t rows = xq_stride(K) * T, packed = (T + 7) / 8 * pack_bytes(type, K);
    return (size_t)(rows > packed ? rows : packed) + 64;
}

// ---- activation quantization -------------------------------------------------

// The scale is rounded through fp16 as in q8_0, so results match ggml's;
// values round half away from zero.
static void prep_row_scalar(const float *x, int64_t K, uint8_t *dst) {
    int8_t *qs = (int8_t *)dst;
    float *ds = (float *)(dst + K);
    for (int64_t b = 0; b < K / 32; b++) {
        const float *v = x + b * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) { float a = v[j] < 0 ? -v[j] : v[j]; if (a > amax) amax = a; }
        const float d = fp16_to_fp32(fp32_to_fp16(amax / 127.0f));
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 32; j++) {
            float q = v[j] * id;
            qs[b * 32 + j] = (int8_t)(q >= 0 ? (int)(q + 0.5f) : -(int)(-q + 0.5f));
        }
        ds[b] = d;
    }
}

#define ALWAYS_INLINE __attribute__((always_inline)) inline

// A block's 32 values: lane i = max over k of |v[i + 8k]|.
AVX2_TARGET static ALWAYS_INLINE __m256 block_absmax_avx2(const float *v) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 a = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(v), absmask), _mm256_and_ps(_mm256_loadu_ps(v + 8), absmask));
    const __m256 c = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(v + 16), absmask), _mm256_and_ps(_mm256_loadu_ps(v + 24), absmask));
    return _mm256_max_ps(a, c);
}

// A block's 32 values times vid (the reciprocal scale) as int8 in element
// order, bit-identical to prep_row_scalar: the same float operations in the
// same order per element (|q| + 0.5 truncated, sign put back).
AVX2_TARGET static ALWAYS_INLINE __m256i block_quant_avx2(const float *v, __m256 vid) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), half = _mm256_set1_ps(0.5f);
    __m256i qi[4];
    PRAGMA_UNROLL(4) for (int k = 0; k < 4; k++) {
        const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(v + 8 * k), vid);
        const __m256 sign = _mm256_andnot_ps(absmask, p);
        const __m256 r = _mm256_round_ps(_mm256_add_ps(_mm256_and_ps(p, absmask), half), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        qi[k] = _mm256_cvttps_epi32(_mm256_or_ps(r, sign));
    }
    const __m256i s01 = _mm256_packs_epi32(qi[0], qi[1]), s23 = _mm256_packs_epi32(qi[2], qi[3]);
    return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(s01, s23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// One block of 32 values as prep_row_scalar quantizes it. Returns the
// block's scale; q gets the 32 int8 values.
AVX2_TARGET static inline __attribute__((always_inline)) float quant_block_avx2(const float *v, __m256i *q) {
    const __m256 m = block_absmax_avx2(v);
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = _cvtsh_ss(_cvtss_sh(amax / 127.0f, _MM_FROUND_TO_NEAREST_INT));
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    *q = block_quant_avx2(v, _mm256_set1_ps(id));
    return d;
}

AVX2_TARGET static void prep_row_avx2(const float *x, int64_t K, uint8_t *dst) {
    int8_t *qs = (int8_t *)dst;
    float *ds = (float *)(dst + K);
    for (int64_t b = 0; b < K / 32; b++) {
        __m256i q;
        ds[b] = quant_block_avx2(x + b * 32, &q);
        _mm256_storeu_si256((__m256i *)(qs + b * 32), q);
    }
}

// One token for weights in strips (stile1): the row as prep_row_avx2 writes
// it, then per block −mul·Σq (int32): mul is 128 for q8_0 (values stored
// + 128), 8 for q4_0 (nibble − 8).
// Blocks [b0, b1) only (mm_prepare_range).
AVX2_TARGET static void prep_row_strip(const float *x, int64_t K, uint8_t *dst, int mul, int64_t b0, int64_t b1) {
    float *ds = (float *)(dst + K);
    for (int64_t b = b0; b < b1; b++) {
        __m256i q;
        ds[b] = quant_block_avx2(x + b * 32, &q);
        _mm256_storeu_si256((__m256i *)(dst + b * 32), q);
    }
    int32_t *neg = (int32_t *)(dst + K + (K / 32) * 4);
    for (int64_t b = b0; b < b1; b++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(dst + b * 32));
        const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
        neg[b] = -mul * _mm_cvtsi128_si32(h);
    }
}

// ---- packed activations for batches (lanes = tokens) ----------------------------
//
// From PACK_MIN tokens on, the AVX2 path lays the quantized activations out
// so that one 256-bit load holds the same few elements of 8 tokens (a token
// group; the last group is padded with zero tokens). The kernel then
// broadcasts a few weight values to all lanes and multiplies them by 8
// tokens at once: the lanes of every integer sum are tokens, so no
// horizontal sums are needed, and the float scaling (convert, scale, add)
// is paid once per block for 8 tokens instead of once per token.
//
//   q8_0 weights (PK8 bytes per block and group): 16 × [8 tokens × 2 int16]
//     (element pairs, for _mm256_madd_epi16), then the 8 tokens' scales.
//   q4_0 weights (PK4 bytes): 8 × [8 tokens × 4 int8] (element quads, for
//     _mm256_maddubs_epi16 with the unsigned nibbles), the 8 scales, then
//     8·Σq per token (int32): q4_0 values are nibble − 8. For weights in
//     strips (mm_to_strips) the same with −128·Σq (q8_0: the values are
//     stored + 128) or −8·Σq (q4_0).
#define PACK_MIN 8
#define PK8 (16 * 32 + 32)
#define PK4 (8 * 32 + 32 + 32)

static inline int64_t pack_bytes(enum ggml_type type, int64_t K) {   // per token group
    return (K / 32) * (type == GGML_TYPE_Q8_0 ? PK8 : PK4);
}

// The 32-bit words of 8 rows, transposed in place: r[h] gets word h of every
// row (lane j from row j).
AVX2_TARGET static ALWAYS_INLINE void transpose8x32(__m256i r[8]) {
    __m256i t[8], u[8];
    PRAGMA_UNROLL(4) for (int k = 0; k < 4; k++) {
        t[2 * k] = _mm256_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    PRAGMA_UNROLL(2) for (int k = 0; k < 2; k++) {
        u[4 * k + 0] = _mm256_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 1] = _mm256_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 2] = _mm256_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
        u[4 * k + 3] = _mm256_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
    }
    PRAGMA_UNROLL(4) for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2x128_si256(u[k], u[k + 4], 0x20);
        r[k + 4] = _mm256_permute2x128_si256(u[k], u[k + 4], 0x31);
    }
}

// The n (1..8) tokens at x into one group's pack; lanes n..7 are zero tokens
// (scale 0). Each block of the 8 tokens is quantized, then turned from rows
// of tokens into rows of lanes with two (q8_0) or one (q4_0) 8×8 transposes
// of 32-bit words. The 8 tokens' scales are found together: their |x| maxima
// transposed into one vector, the division, the f16 rounding and the
// reciprocal done once for the 8 lanes (token by token, the scalar chain
// through a general register took most of the packing's time). Same values
// as quant_block_avx2 per token.
// Blocks [b0, b1) of the group (K / 32 blocks).
AVX2_TARGET static void pack_group_avx2(enum ggml_type type, const float *x, int64_t K, int n, uint8_t *grp,
                                         int neg_shift, int64_t b0, int64_t b1) {
    _Alignas(32) static const float zeros[32];
    for (int64_t b = b0; b < b1; b++) {
        const float *v[8];
        __m256i q[8], mx[8];
        PRAGMA_UNROLL(8) for (int j = 0; j < 8; j++) {
            v[j] = j < n ? x + j * K + b * 32 : zeros;
            mx[j] = _mm256_castps_si256(block_absmax_avx2(v[j]));
        }
        transpose8x32(mx);   // lane j of mx[h]: lane h of token j's maxima
        __m256 amax = _mm256_castsi256_ps(mx[0]);
        PRAGMA_UNROLL(8) for (int h = 1; h < 8; h++) amax = _mm256_max_ps(amax, _mm256_castsi256_ps(mx[h]));
        const __m256 d = _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_div_ps(amax, _mm256_set1_ps(127.0f)), _MM_FROUND_TO_NEAREST_INT));
        const __m256 id = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), d), _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_OQ));
        PRAGMA_UNROLL(8) for (int j = 0; j < 8; j++) q[j] = block_quant_avx2(v[j], _mm256_permutevar8x32_ps(id, _mm256_set1_epi32(j)));
        if (type == GGML_TYPE_Q8_0) {
            uint8_t *blk = grp + b * PK8;
            __m256i hi[8];
            PRAGMA_UNROLL(8) for (int j = 0; j < 8; j++) {
                hi[j] = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(q[j], 1));
                q[j] = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(q[j]));
            }
            transpose8x32(q);
            transpose8x32(hi);
            PRAGMA_UNROLL(8) for (int h = 0; h < 8; h++) {
                _mm256_store_si256((__m256i *)(blk + h * 32), q[h]);
                _mm256_store_si256((__m256i *)(blk + (h + 8) * 32), hi[h]);
            }
            _mm256_store_ps((float *)(blk + 16 * 32), d);
        } else {
            uint8_t *blk = grp + b * PK4;
            transpose8x32(q);
            __m256i s16 = _mm256_setzero_si256();   // Σ per lane in int16 pairs: 8·2·127 fits
            for (int g = 0; g < 8; g++) {
                _mm256_store_si256((__m256i *)(blk + g * 32), q[g]);
                s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(_mm256_set1_epi8(1), q[g]));
            }
            _mm256_store_ps((float *)(blk + 8 * 32), d);
            const __m256i sum = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
            const __m256i off = neg_shift ? _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_sllv_epi32(sum, _mm256_set1_epi32(neg_shift)))
                                          : _mm256_slli_epi32(sum, 3);
            _mm256_store_si256((__m256i *)(blk + 8 * 32 + 32), off);
        }
    }
}

static bool use_pack(int64_t T) { return T >= PACK_MIN && cpu_level() >= CPU_LEVEL_AVX2; }

size_t mm_block_sums_size(const mm_weight *w) {
    if (w->type != GGML_TYPE_Q8_0 || w->strips || !cpu_vnni512()) return 0;
    return (size_t)(w->N / 8) * (size_t)(w->K / 32) * 32;
}

void mm_block_sums(const mm_weight *w, uint8_t *out) {
    const int64_t nb = w->K / 32;
    const block_q8_0 *blk = w->data;
    for (int64_t t = 0; t < w->N / 8; t++)
        for (int64_t b = 0; b < nb; b++) {
            int16_t neg[8];
            fp16_t d[8];
            for (int r = 0; r < 8; r++) {
                const block_q8_0 *q = &blk[(t * 8 + r) * nb + b];
                int s = 0;
                for (int j = 0; j < 32; j++) s += q->qs[j];
                neg[r] = (int16_t)-s;   // |Σq| <= 4096
                d[r] = q->d;
            }
            memcpy(out + (t * nb + b) * 32, neg, 16);
            memcpy(out + (t * nb + b) * 32 + 16, d, 16);
        }
}

// The layout activations are packed in. A q8_0 product of one token group
// (T = 8: batched decode) takes q4_0's int8 quads, which ptile_q8s reads
// against the weights' own bytes; more groups take the int16 pairs.
// With AVX-512 VNNI every product takes the quads (vrun_avx512vnni).
static inline enum ggml_type pack_layout(enum ggml_type type, int64_t T) {
    return type == GGML_TYPE_Q8_0 && (T <= 8 || cpu_vnni512()) ? GGML_TYPE_Q4_0 : type;
}

// Weights in strips are read by the strip kernels (stile8, stile1) where
// AVX-512 VNNI is used, from packed groups whatever T; elsewhere (a level
// lowered for tests) by the scalar code, from rows of q8_0 blocks.
static bool strip_vnni(const mm_weight *w) { return w->strips && cpu_vnni512(); }
static bool packs(const mm_weight *w, int64_t T) { return w->strips ? strip_vnni(w) : use_pack(T); }

void mm_prepare_rows(const mm_weight *w, int64_t T, int ith, int nth, long *t0, long *t1) {
    if (kq_type(w->type)) { kq_prepare_rows(w, T, ith, nth, t0, t1); return; }
    if (is_quant(w->type) && packs(w, T)) {   // threads split token groups
        tp_split((T + 7) / 8, ith, nth, 1, t0, t1);
        *t0 *= 8;
        *t1 = *t1 * 8 < T ? *t1 * 8 : T;
        if (*t0 > *t1) *t0 = *t1;
        return;
    }
    tp_split(T, ith, nth, 1, t0, t1);
}

void mm_prepare(const mm_weight *w, const float *x, int64_t T, void *wdata, int ith, int nth) {
    if (kq_type(w->type)) { kq_prepare(w, x, T, wdata, ith, nth); return; }
    if (!is_quant(w->type)) return;
    long t0, t1;
    if (strip_vnni(w) && T == 1) {
        if (ith == 0) prep_row_strip(x, w->K, wdata, w->type == GGML_TYPE_Q8_0 ? 128 : 8, 0, w->K / 32);
        return;
    }
    if (packs(w, T)) {   // threads split token groups (mm_prepare_rows)
        const enum ggml_type lay = w->strips ? GGML_TYPE_Q4_0 : pack_layout(w->type, T);
        const int64_t gb = pack_bytes(lay, w->K);
        tp_split((T + 7) / 8, ith, nth, 1, &t0, &t1);
        for (long g = t0; g < t1; g++) {
            const int n = T - g * 8 < 8 ? (int)(T - g * 8) : 8;
            pack_group_avx2(lay, x + g * 8 * w->K, w->K, n, (uint8_t *)wdata + g * gb,
                            !w->strips ? 0 : w->type == GGML_TYPE_Q8_0 ? 7 : 3, 0, w->K / 32);
        }
        return;
    }
    tp_split(T, ith, nth, 1, &t0, &t1);
    const int64_t st = xq_stride(w->K);
    const bool simd = cpu_level() >= CPU_LEVEL_AVX2;
    for (long t = t0; t < t1; t++) {
        if (simd) prep_row_avx2(x + t * w->K, w->K, (uint8_t *)wdata + t * st);
        else prep_row_scalar(x + t * w->K, w->K, (uint8_t *)wdata + t * st);
    }
}

bool mm_prepare_splits(const mm_weight *w, int64_t T) {   // q8_0 and q4_0 strips (K-quants take kq_prepare)
    return (w->type == GGML_TYPE_Q8_0 || w->type == GGML_TYPE_Q4_0) && strip_vnni(w) && T >= 1 && w->K % 32 == 0;
}

void mm_prepare_range(const mm_weight *w, const float *x, int64_t T, void *wdata, int64_t k0, int64_t k1) {
    const int neg = w->type == GGML_TYPE_Q8_0 ? 7 : 3;   // −128·Σq or −8·Σq, as a shift
    if (T == 1) {
        prep_row_strip(x, w->K, wdata, 1 << neg, k0 / 32, k1 / 32);
        return;
    }
    const int64_t gb = pack_bytes(GGML_TYPE_Q4_0, w->K);
    for (int64_t g = 0; g * 8 < T; g++) {
        const int n = T - g * 8 < 8 ? (int)(T - g * 8) : 8;
        pack_group_avx2(GGML_TYPE_Q4_0, x + g * 8 * w->K, w->K, n, (uint8_t *)wdata + g * gb, neg, k0 / 32, k1 / 32);
    }
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
        s += dw * ds[b] * (float)acc;
    }
    return s;
}

// Row r of a weight in strips (mm_to_strips) · a prepared activation row.
#define STRIP_BLOCK (16 * (int64_t)sizeof(block_q8_0))     // 544: 16 rows' q8_0 block
#define STRIP_BLOCK4 (16 * (int64_t)sizeof(block_q4_0))    // 288: 16 rows' q4_0 block
static float dot_strip_scalar(enum ggml_type type, const uint8_t *data, int64_t r, const uint8_t *xq, int64_t K) {
    const int8_t *qs = (const int8_t *)xq;
    const float *ds = (const float *)(xq + K);
    const int64_t nb = K / 32, i = r % 16, sb = type == GGML_TYPE_Q8_0 ? STRIP_BLOCK : STRIP_BLOCK4;
    const uint8_t *s = data + (size_t)(r / 16) * (size_t)(nb * sb);
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = s + b * sb;
        int32_t acc = 0;
        if (type == GGML_TYPE_Q8_0)
            for (int j = 0; j < 32; j++) acc += (int8_t)(blk[32 + (j / 4) * 64 + i * 4 + j % 4] ^ 0x80) * qs[b * 32 + j];
        else
            for (int j = 0; j < 16; j++) {   // byte j of the row: values j (low nibble) and j + 16
                const uint8_t v = blk[32 + (j / 4) * 64 + i * 4 + j % 4];
                acc += ((v & 0x0f) - 8) * qs[b * 32 + j];
                acc += ((v >> 4) - 8) * qs[b * 32 + 16 + j];
            }
        fp16_t d;
        memcpy(&d, blk + 2 * i, sizeof d);
        sum += fp16_to_fp32(d) * ds[b] * (float)acc;
    }
    return sum;
}

int mm_strips_wanted(const mm_weight *w) {
    if (kq_type(w->type)) return kq_strips_wanted(w);
    return (w->type == GGML_TYPE_Q8_0 || w->type == GGML_TYPE_Q4_0) && !w->strips && w->N >= 16 && w->N % 16 == 0 &&
           w->K % 32 == 0 && cpu_vnni512();
}

int mm_strips_walk(mm_weight *w, void *data, int64_t nb, int64_t bs, mm_strip_put put) {
    const size_t rowb = (size_t)(nb * bs), sb = 16 * rowb;
    uint8_t *tmp = malloc(sb);
    if (!tmp) return -1;
    for (int64_t st = 0; st < w->N / 16; st++) {
        uint8_t *s = (uint8_t *)data + (size_t)st * sb;
        memcpy(tmp, s, sb);
        for (int64_t b = 0; b < nb; b++) put(w->type, s + b * 16 * bs, tmp + b * bs, rowb);
    }
    free(tmp);
    w->strips = 1;
    return 0;
}

// A q8_0 or q4_0 block of 16 rows: their scales, then each 4 bytes of
// values of the 16 rows (q8_0's made unsigned, q4_0's as they are).
static void put_q(enum ggml_type type, uint8_t *o, const uint8_t *rows, size_t rowb) {
    const bool q8 = type == GGML_TYPE_Q8_0;
    for (int i = 0; i < 16; i++) {
        const uint8_t *blk = rows + (size_t)i * rowb;
        memcpy(o + 2 * i, blk, 2);   // the scale
        for (int g = 0; g < (q8 ? 8 : 4); g++) {   // 4 bytes at a time: q8_0 made unsigned, q4_0 as is
            uint32_t q;
            memcpy(&q, blk + 2 + 4 * g, 4);
            if (q8) q ^= 0x80808080u;
            memcpy(o + 32 + g * 64 + i * 4, &q, 4);
        }
    }
}

int mm_to_strips(mm_weight *w, void *data) {
    if (kq_type(w->type)) return kq_to_strips(w, data);
    const int64_t bs = w->type == GGML_TYPE_Q8_0 ? (int64_t)sizeof(block_q8_0) : (int64_t)sizeof(block_q4_0);
    if (mm_strips_walk(w, data, w->K / 32, bs, put_q) != 0) return -1;
    w->bsum = NULL;
    return 0;
}

// ---- AVX2: quantized tiles -----------------------------------------------------

#define AVXVNNI_TARGET __attribute__((target("avxvnni,avx2,fma,f16c")))

// Signed int8 values of block b of a weight row.
AVX2_TARGET static ALWAYS_INLINE __m256i load_wq(enum ggml_type type, const uint8_t *row, int64_t b) {
    if (type == GGML_TYPE_Q8_0) return _mm256_loadu_si256((const __m256i *)(row + b * sizeof(block_q8_0) + 2));
    __m128i q = _mm_loadu_si128((const __m128i *)(row + b * sizeof(block_q4_0) + 2));
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    v = _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
    return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
}

// The 32 nibbles (0..15) of q4_0 block b, in element order, as unsigned bytes.
AVX2_TARGET static ALWAYS_INLINE __m256i load_wnib(const uint8_t *row, int64_t b) {
    const __m128i q = _mm_loadu_si128((const __m128i *)(row + b * sizeof(block_q4_0) + 2));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0f));
}

AVX2_TARGET static ALWAYS_INLINE __m256 load_wd(enum ggml_type type, const uint8_t *row, int64_t b) {
    const size_t bs = type == GGML_TYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    fp16_t h;
    memcpy(&h, row + b * bs, sizeof h);
    return _mm256_set1_ps(_cvtsh_ss(h));
}

// Σ over 4-byte groups of u8(a)·s8(b), as int32 lanes.
AVX2_TARGET static ALWAYS_INLINE __m256i udot_avx2(__m256i a, __m256i b) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1));
}
AVX512VNNI_TARGET static ALWAYS_INLINE __m256i udot_avx512vnni(__m256i a, __m256i b) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b);
}
AVXVNNI_TARGET static ALWAYS_INLINE __m256i udot_avxvnni(__m256i a, __m256i b) {
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), a, b);
}

// Software prefetch of the weights, one tile ahead. Rows up to
// PF_LINEAR_ROW bytes: the rows of a tile ahead (tiles are contiguous, span
// bytes each) are prefetched in address order, a share of pf_step bytes at
// each of the nb blocks: one linear stream. Prefetching block b of each next
// row instead (R streams 816 bytes apart for q8_0 K = 768) read DRAM at 7-8
// G MAC/s on one thread of this machine in decode, the linear order at
// 10-12; longer rows are the other way round (K = 5632: 16 per row, 11
// linear), so they keep one prefetch per row and block. The linear stream
// runs whole tiles ahead, at least 4 KiB: one q4_0 tile of K = 768 (1.7
// KiB) ahead arrived too late (12-15 G MAC/s against 16.5).
#define PF_LINEAR_ROW 2304

// out[i*C + j] = row_i · x_j for R weight rows (rowb bytes apart, starting at
// w) and C prepared activation rows xq[j]. R and C are compile-time constants
// at every call, so the loops unroll and the accumulators live in registers.
#define DEF_QTILE(NAME, TARGET, UDOT)                                                                  \
    TARGET static ALWAYS_INLINE void NAME(enum ggml_type type, int R, int C, const uint8_t *w,        \
                                          size_t rowb, const uint8_t *const *xq, int64_t K,           \
                                          float *out) {                                               \
        __m256 acc[QR1][QC];                                                                           \
        PRAGMA_UNROLL(8) for (int i = 0; i < R; i++)                                            \
            _Pragma("GCC unroll 4") for (int j = 0; j < C; j++) acc[i][j] = _mm256_setzero_ps();       \
        const int64_t nb = K / 32;                                                                     \
        const size_t span = (size_t)R * rowb, pf_step = pf_step_of(span, nb), ahead = pf_ahead(span);  \
        const size_t bs = type == GGML_TYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);           \
        const bool lin = rowb <= PF_LINEAR_ROW, q4 = type == GGML_TYPE_Q4_0;                           \
        for (int64_t b = 0; b < nb; b++) {                                                             \
            __m256i aw[QR1], sw[QR1];                                                                  \
            __m256 dw[QR1];                                                                            \
            if (lin) pf_share(w + ahead, span, pf_step, b);                                            \
            PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) {                                      \
                const uint8_t *row = w + (size_t)i * rowb;                                             \
                if (!lin) __builtin_prefetch(row + span + (size_t)b * bs);                              \
                if (q4) {                                                                              \
                    aw[i] = load_wnib(row, b);                                                         \
                } else {                                                                               \
                    sw[i] = load_wq(type, row, b);                                                     \
                    aw[i] = _mm256_sign_epi8(sw[i], sw[i]);                                            \
                }                                                                                      \
                dw[i] = load_wd(type, row, b);                                                         \
            }                                                                                          \
            _Pragma("GCC unroll 4") for (int j = 0; j < C; j++) {                                      \
                const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq[j] + b * 32));              \
                const __m256 dx = _mm256_broadcast_ss((const float *)(xq[j] + K) + b);                 \
                /* q4_0: nibbles n are unsigned operands as they are; (n - 8)·x = n·x - 8·x */         \
                const __m256i c8 = q4 ? UDOT(_mm256_set1_epi8(8), xv) : _mm256_setzero_si256();       \
                PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) {                                  \
                    const __m256i p = q4 ? _mm256_sub_epi32(UDOT(aw[i], xv), c8)                      \
                                         : UDOT(aw[i], _mm256_sign_epi8(xv, sw[i]));                   \
                    acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw[i], dx), acc[i][j]); \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
        PRAGMA_UNROLL(8) for (int i = 0; i < R; i++)                                            \
            _Pragma("GCC unroll 4") for (int j = 0; j < C; j++) out[i * C + j] = hsum256(acc[i][j]);   \
    }

DEF_QTILE(qtile_avx2, AVX2_TARGET, udot_avx2)
DEF_QTILE(qtile_avx512vnni, AVX512VNNI_TARGET, udot_avx512vnni)
DEF_QTILE(qtile_avxvnni, AVXVNNI_TARGET, udot_avxvnni)

// One thread's rows [r0, r1) for all T tokens: tiles of QR rows × QC tokens
// (QR1 rows × 1 token for decode), then the ragged edges with narrower tiles.
// Every tile shape and the weight type are constants where the tile is inlined.
#define DEF_QRUN(NAME, TARGET, TILE)                                                                   \
    TARGET static ALWAYS_INLINE void NAME##_rows(enum ggml_type type, int R, const uint8_t *wr,       \
                                                 size_t rowb, const uint8_t *xq0, int64_t st,          \
                                                 int64_t K, int64_t T, int64_t N, long r, float *y) {  \
        float out[(QR1) * QC];                                                                           \
        const uint8_t *xs[QC];                                                                         \
        int64_t t = 0;                                                                                 \
        for (; t + QC <= T; t += QC) {                                                                 \
            for (int j = 0; j < QC; j++) xs[j] = xq0 + (t + j) * st;                                   \
            TILE(type, R, QC, wr, rowb, xs, K, out);                                                   \
            for (int i = 0; i < R; i++)                                                                \
                for (int j = 0; j < QC; j++) y[(t + j) * N + r + i] = out[i * QC + j];                 \
        }                                                                                              \
        const int nc = (int)(T - t);                                                                   \
        if (nc == 0) return;                                                                           \
        for (int j = 0; j < nc; j++) xs[j] = xq0 + (t + j) * st;                                       \
        if (nc == 1) TILE(type, R, 1, wr, rowb, xs, K, out);                                           \
        else if (nc == 2) TILE(type, R, 2, wr, rowb, xs, K, out);                                      \
        else TILE(type, R, 3, wr, rowb, xs, K, out);                                                   \
        for (int i = 0; i < R; i++)                                                                    \
            for (int j = 0; j < nc; j++) y[(t + j) * N + r + i] = out[i * nc + j];                     \
    }                                                                                                  \
    TARGET static ALWAYS_INLINE void NAME##_typed(enum ggml_type type, const uint8_t *wd, size_t rowb, \
                                                  const uint8_t *xq0, int64_t st, int64_t K, int64_t T, \
                                                  int64_t N, long r0, long r1, float *y) {              \
        long r = r0;                                                                                   \
        if (T == 1)                                                                                    \
            for (; r + QR1 <= r1; r += QR1) NAME##_rows(type, QR1, wd + (size_t)r * rowb, rowb, xq0, st, K, T, N, r, y); \
        else                                                                                           \
            for (; r + QR <= r1; r += QR) NAME##_rows(type, QR, wd + (size_t)r * rowb, rowb, xq0, st, K, T, N, r, y); \
        for (; r < r1; r++) NAME##_rows(type, 1, wd + (size_t)r * rowb, rowb, xq0, st, K, T, N, r, y);  \
    }                                                                                                  \
    TARGET static void NAME(enum ggml_type type, const uint8_t *wd, size_t rowb, const uint8_t *xq0,  \
                            int64_t st, int64_t K, int64_t T, int64_t N, long r0, long r1, float *y) { \
        if (type == GGML_TYPE_Q8_0) NAME##_typed(GGML_TYPE_Q8_0, wd, rowb, xq0, st, K, T, N, r0, r1, y); \
        else NAME##_typed(GGML_TYPE_Q4_0, wd, rowb, xq0, st, K, T, N, r0, r1, y);                     \
    }

DEF_QRUN(qrun_avx2, AVX2_TARGET, qtile_avx2)
DEF_QRUN(qrun_avx512vnni, AVX512VNNI_TARGET, qtile_avx512vnni)
DEF_QRUN(qrun_avxvnni, AVXVNNI_TARGET, qtile_avxvnni)

// Decode (one token) of q8_0 rows, four at a time, written out for AVX2:
// the generic tile (any type, rows and tokens) compiled with its accumulators
// and loop counters spilled to the stack and ran at 12-16 G MAC/s on one
// core with the rows in L2. Per block: the token's 32 values and scale once,
// then for each row ggml's sign trick (|w| · x·sign(w), vpmaddubsw,
// vpmaddwd by ones), the four rows' scales widened together (one
// vcvtph2ps), times the token's scale, and one FMA per row: 1.10-1.14x
// with the rows in L2 or L3 (K = 288-2048, same-process A/B), 1.03x from
// DRAM. Broadcasting the scales from a stored vector instead: 0.92x.
// The prefetch as vrows_dec's (rows of 1 KiB or more add a stream into L2
// one tile further, shorter rows go into L2 only): AVX2 forced, 2 threads,
// same-process rounds, slow memory mode: TinyLlama Q8_0 1.02-1.11x,
// stories110M Q8_0 0.99-1.10x (medians 1.07x and 1.04x).
AVX2_TARGET static void qrows4_q8_0(const uint8_t *w, size_t rowb, const uint8_t *xq, int64_t K, float *out) {
    const int64_t nb = K / 32;
    const float *xd = (const float *)(xq + K);
    const __m256i ones = _mm256_set1_epi16(1);
    const uint8_t *w0 = w, *w1 = w + rowb, *w2 = w + 2 * rowb, *w3 = w + 3 * rowb;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const size_t span = 4 * rowb, pf_step = pf_step_of(span, nb), ahead = pf_ahead(span);
    const bool lin = rowb <= PF_LINEAR_ROW, l2only = lin && rowb < 1024, far = rowb >= 1024;
    for (int64_t b = 0; b < nb; b++, w0 += sizeof(block_q8_0), w1 += sizeof(block_q8_0), w2 += sizeof(block_q8_0),
                 w3 += sizeof(block_q8_0)) {
        if (lin) {
            if (l2only) pf_share_l2(w + ahead, span, pf_step, b);
            else pf_share(w + ahead, span, pf_step, b);
            if (far) pf_share_l2(w + ahead + span, span, pf_step, b);
        } else {
            __builtin_prefetch(w0 + span);
            __builtin_prefetch(w1 + span);
            __builtin_prefetch(w2 + span);
            __builtin_prefetch(w3 + span);
            if (far) {
                __builtin_prefetch(w0 + 2 * span, 0, 2);
                __builtin_prefetch(w1 + 2 * span, 0, 2);
                __builtin_prefetch(w2 + 2 * span, 0, 2);
                __builtin_prefetch(w3 + 2 * span, 0, 2);
            }
        }
        const __m256i x = _mm256_loadu_si256((const __m256i *)(xq + b * 32));
        uint16_t h[4];
        memcpy(&h[0], w0, 2);
        memcpy(&h[1], w1, 2);
        memcpy(&h[2], w2, 2);
        memcpy(&h[3], w3, 2);
        __m128i hv = _mm_cvtsi32_si128(h[0] | (uint32_t)h[1] << 16);
        hv = _mm_insert_epi32(hv, (int)(h[2] | (uint32_t)h[3] << 16), 1);
        const __m128 d4 = _mm_mul_ps(_mm_cvtph_ps(hv), _mm_broadcast_ss(xd + b));
        const __m256 dd = _mm256_set_m128(d4, d4);
#define QR4_ROW(wi, ai, lane)                                                                          \
        {                                                                                              \
            const __m256i v = _mm256_loadu_si256((const __m256i *)(wi + 2));                          \
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(x, v)), ones); \
            ai = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_permute_ps(dd, lane * 0x55), ai);     \
        }
        QR4_ROW(w0, a0, 0)
        QR4_ROW(w1, a1, 1)
        QR4_ROW(w2, a2, 2)
        QR4_ROW(w3, a3, 3)
#undef QR4_ROW
    }
    out[0] = hsum256(a0);
    out[1] = hsum256(a1);
    out[2] = hsum256(a2);
    out[3] = hsum256(a3);
}

AVX2_TARGET static void qrun1_q8_avx2(const uint8_t *wd, size_t rowb, const uint8_t *xq, int64_t st, int64_t K,
                                      int64_t N, long r0, long r1, float *y) {
    long r = r0;
    for (; r + 4 <= r1; r += 4) qrows4_q8_0(wd + (size_t)r * rowb, rowb, xq, K, y + r);
    if (r < r1) qrun_avx2(GGML_TYPE_Q8_0, wd, rowb, xq, st, K, 1, N, r, r1, y);
}

// ---- AVX2: packed batches ---------------------------------------------------------

// Packed tile: PR weight rows × PG groups of 8 tokens, the inner loops
// unrolled by 4. Measured on Zen 3 (one core, K=N=768, T=128), q8_0 / q4_0
// GMAC/s: 4×1 43/59, 2×2 48/66, 6×1 46/66, 4×2 35/62 (spills), 3×2 52/73. A
// lone group of the int16 / nibble layouts (q4_0 batched decode, the odd group
// of a prompt) runs 6×1: at T = 8, K = 768, N = 2048 it gave +6% (q8_0) and
// +20% (q4_0) over 3×1, medians of rotated runs. q8_0 with T = 8 has its own
// tile (ptile_q8s, PRS rows).
#define PR 3
#define PG 2
#define PR1 6     // rows of the tile for a lone token group
#define PRS 4     // rows of ptile_q8s (q8_0, T = 8); 3 and 5 were slower
#define PRMAX 6   // arrays hold a tile of up to 6 rows
#define UNROLL_H 4
#define UNROLL_G 4

// The 4 bytes at p in all 8 lanes, as a load (vpbroadcastd m32): written in
// asm because compilers turn the intrinsic on stack data into shuffles.
AVX2_TARGET static ALWAYS_INLINE __m256i bcast32(const int32_t *p) {
    __m256i r;
    __asm__("vpbroadcastd %1, %0" : "=x"(r) : "m"(*p));
    return r;
}

// One q8_0 block's 32 values widened to int16 pairs at o (16 words, 32-byte
// aligned); returns the block's scale.
AVX2_TARGET static ALWAYS_INLINE float widen_block_q8(const uint8_t *blk, int32_t *o) {
    _mm256_store_si256((__m256i *)o, _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 2))));
    _mm256_store_si256((__m256i *)(o + 8), _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 18))));
    fp16_t h;
    memcpy(&h, blk, sizeof h);
    return _cvtsh_ss(h);
}

// One q4_0 block's 32 nibbles, one a byte in element order, at o (8 words,
// 32-byte aligned); returns the block's scale.
AVX2_TARGET static ALWAYS_INLINE float unpack_block_q4(const uint8_t *blk, int32_t *o) {
    const __m128i q = _mm_loadu_si128((const __m128i *)(blk + 2));
    _mm256_store_si256((__m256i *)o, _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0f)));
    fp16_t h;
    memcpy(&h, blk, sizeof h);
    return _cvtsh_ss(h);
}

// Block b of a strip widened ahead (widen_q8 / widen_q4: `words` 32-bit
// words a block): each row's block and its scale.
AVX2_TARGET static ALWAYS_INLINE void pre_block(int R, const int32_t *pre, const float *pds, int64_t nb, int64_t b,
                                                int words, const int32_t **wr, __m256 *dw) {
    PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) {
        wr[i] = pre + ((size_t)i * (size_t)nb + (size_t)b) * (size_t)words;
        dw[i] = _mm256_broadcast_ss(pds + (size_t)i * (size_t)nb + (size_t)b);
    }
}

// One block of the 3-row × 2-group q8_0 tile over rows widened ahead
// (widen_q8: row i's int16 pairs ws bytes after row i − 1's), in asm. Each of
// the 16 steps loads pair-word h of both groups' 8 tokens, broadcasts pair h
// of each row and does 6 vpmaddwd + 6 vpaddd. Every address is a base, an
// index and a constant, so the steps carry no pointer arithmetic and the 6
// sums stay in registers: compiled from intrinsics, the loop kept address
// arithmetic and register moves between the products, and this block gives
// 1.19-1.24x the products' rate (same process, interleaved rounds; K = 288,
// 2048, 5632, 128 tokens).
#define Q8W_STEP(h) T3X2_STEP(h, "vpmaddwd", "vpaddd")   // simd.h
AVX2_TARGET static ALWAYS_INLINE void block_q8w_3x2(const int32_t *wp, size_t ws, const uint8_t *xp, size_t xg,
                                                    __m256i ia[PRMAX][PG]) {
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, x0, x1, w, t;
    __asm__(Q8W_STEP(0) Q8W_STEP(1) Q8W_STEP(2) Q8W_STEP(3) Q8W_STEP(4) Q8W_STEP(5) Q8W_STEP(6) Q8W_STEP(7)
            Q8W_STEP(8) Q8W_STEP(9) Q8W_STEP(10) Q8W_STEP(11) Q8W_STEP(12) Q8W_STEP(13) Q8W_STEP(14) Q8W_STEP(15)
            : [a00] "+x"(a00), [a01] "+x"(a01), [a10] "+x"(a10), [a11] "+x"(a11), [a20] "+x"(a20), [a21] "+x"(a21),
              [x0] "=&x"(x0), [x1] "=&x"(x1), [w] "=&x"(w), [t] "=&x"(t)
            : [wp] "r"(wp), [ws] "r"(ws), [xp] "r"(xp), [xg] "r"(xg)
            : "memory");
    ia[0][0] = a00; ia[0][1] = a01; ia[1][0] = a10; ia[1][1] = a11; ia[2][0] = a20; ia[2][1] = a21;
}

// The q4_0 tile's block (block_q4w_3x2) is in simd.h: Q4_K's packed tile
// runs it too.

// res[i*G + k] (8 token lanes) = row_i · tokens of group k, for R weight rows
// rowb bytes apart at w and G packed token groups gb bytes apart at grp. R
// and G are constants at every call.
// With `pre` (not NULL), the rows come widened already (widen_q8): block b of
// row i at pre + (i·nb + b)·16 words, its scale at pds[i·nb + b]; w, when
// not NULL, is then the next strip, prefetched spread over the blocks.
AVX2_TARGET static ALWAYS_INLINE void ptile_q8(int R, int G, const uint8_t *w, size_t rowb, const uint8_t *grp,
                                               int64_t gb, int64_t nb, const int32_t *pre, const float *pds,
                                               __m256 *res) {
    __m256 acc[PRMAX][PG];
    _Alignas(32) int32_t wt[PRMAX][16];   // the rows' block widened to int16, as pairs
    PRAGMA_UNROLL(8) for (int i = 0; i < R; i++)
        PRAGMA_UNROLL(2) for (int k = 0; k < G; k++) acc[i][k] = _mm256_setzero_ps();
    const size_t span = (size_t)R * rowb, pf_step = pf_step_of(span, nb), ahead = pf_ahead(span);
    const bool lin = rowb <= PF_LINEAR_ROW;
    for (int64_t b = 0; b < nb; b++) {
        __m256 dw[PRMAX];
        __m256i ia[PRMAX][PG];
        const int32_t *wr[PRMAX];
        if (pre) {
            if (w) pf_share(w, span, pf_step, b);
            pre_block(R, pre, pds, nb, b, 16, wr, dw);
            PRAGMA_UNROLL(8) for (int i = 0; i < R; i++)
                PRAGMA_UNROLL(2) for (int k = 0; k < G; k++) ia[i][k] = _mm256_setzero_si256();
        } else {
            if (lin) pf_share(w + ahead, span, pf_step, b);
            PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) {
                const uint8_t *blk = w + (size_t)i * rowb + (size_t)b * sizeof(block_q8_0);
                if (!lin) __builtin_prefetch(blk + span);
                dw[i] = _mm256_set1_ps(widen_block_q8(blk, wt[i]));
                wr[i] = wt[i];
                PRAGMA_UNROLL(2) for (int k = 0; k < G; k++) ia[i][k] = _mm256_setzero_si256();
            }
        }
        if (pre && R == 3 && G == 2)
            block_q8w_3x2(wr[0], (size_t)nb * 64, grp + b * PK8, (size_t)gb, ia);
        else PRAGMA_UNROLL(UNROLL_H) for (int h = 0; h < 16; h++) {
            __m256i xv[PG];
            PRAGMA_UNROLL(2) for (int k = 0; k < G; k++)
                xv[k] = _mm256_load_si256((const __m256i *)(grp + k * gb + b * PK8 + h * 32));
            PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) {
                const __m256i wv = bcast32(wr[i] + h);
                PRAGMA_UNROLL(2) for (int k = 0; k < G; k++)
                    ia[i][k] = _mm256_add_epi32(ia[i][k], _mm256_madd_epi16(wv, xv[k]));
            }
        }
        PRAGMA_UNROLL(2) for (int k = 0; k < G; k++) {
            const __m256 dx = _mm256_load_ps((const float *)(grp + k * gb + b * PK8 + 16 * 32));
            PRAGMA_UNROLL(8) for (int i = 0; i < R; i++)
                acc[i][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[i][k]), _mm256_mul_ps(dw[i], dx), acc[i][k]);
        }
    }
    PRAGMA_UNROLL(8) for (int i = 0; i < R; i++)
        PRAGMA_UNROLL(2) for (int k = 0; k < G; k++) res[i * G + k] = acc[i][k];
}

// q4_0: the nibbles (0..15) are the unsigned operand of maddubs; Σ over the
// 8 quads of a block fits int16 (8·2·15·127 < 2^15); the −8 offset is taken
// off with the packed 8·Σq of each token.
// With `pre` (not NULL), the rows come unpacked already (widen_q4): block b
// of row i at pre + (i·nb + b)·8 words, its scale at pds[i·nb + b]; w, when
// not NULL, is then the next strip, as in ptile_q8.
AVX2_TARGET static ALWAYS_INLINE void ptile_q4(int R, int G, const uint8_t *w, size_t rowb, const uint8_t *grp,
                                               int64_t gb, int64_t nb, const int32_t *pre, const float *pds,
                                               __m256 *res) {
    __m256 acc[PRMAX][PG];
    _Alignas(32) int32_t wt[PRMAX][8];    // the rows' block as 32 nibbles in element order, as quads
    const __m256i ones = _mm256_set1_epi16(1);
    PRAGMA_UNROLL(8) for (int i = 0; i < R; i++)
        PRAGMA_UNROLL(2) for (int k = 0; k < G; k++) acc[i][k] = _mm256_setzero_ps();
    const size_t span = (size_t)R * rowb, pf_step = pf_step_of(span, nb), ahead = pf_ahead(span);
    const bool lin = rowb <= PF_LINEAR_ROW;
    for (int64_t b = 0; b < nb; b++) {
        __m256 dw[PRMAX];
        __m256i s16[PRMAX][PG];
        const int32_t *wr[PRMAX];
        if (pre) {
            if (w) pf_share(w, span, pf_step, b);
            pre_block(R, pre, pds, nb, b, 8, wr, dw);
            PRAGMA_UNROLL(8) for (int i = 0; i < R; i++)
                PRAGMA_UNROLL(2) for (int k = 0; k < G; k++) s16[i][k] = _mm256_setzero_si256();
        } else {
            if (lin) pf_share(w + ahead, span, pf_step, b);
            PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) {
                const uint8_t *blk = w + (size_t)i * rowb + (size_t)b * sizeof(block_q4_0);
                if (!lin) __builtin_prefetch(blk + span);
                dw[i] = _mm256_set1_ps(unpack_block_q4(blk, wt[i]));
                wr[i] = wt[i];
                PRAGMA_UNROLL(2) for (int k = 0; k < G; k++) s16[i][k] = _mm256_setzero_si256();
            }
        }
        if (pre && R == 3 && G == 2)
            block_q4w_3x2(wr[0], (size_t)nb * 32, grp + b * PK4, (size_t)gb, s16);
        else PRAGMA_UNROLL(UNROLL_G) for (int g = 0; g < 8; g++) {
            __m256i xv[PG];
            PRAGMA_UNROLL(2) for (int k = 0; k < G; k++)
                xv[k] = _mm256_load_si256((const __m256i *)(grp + k * gb + b * PK4 + g * 32));
            PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) {
                const __m256i wv = bcast32(wr[i] + g);
                PRAGMA_UNROLL(2) for (int k = 0; k < G; k++)
                    s16[i][k] = _mm256_add_epi16(s16[i][k], _mm256_maddubs_epi16(wv, xv[k]));
            }
        }
        PRAGMA_UNROLL(2) for (int k = 0; k < G; k++) {
            const uint8_t *xb = grp + k * gb + b * PK4;
            const __m256 dx = _mm256_load_ps((const float *)(xb + 8 * 32));
            const __m256i s8 = _mm256_load_si256((const __m256i *)(xb + 8 * 32 + 32));
            PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) {
                const __m256i ia = _mm256_sub_epi32(_mm256_madd_epi16(s16[i][k], ones), s8);
                acc[i][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia), _mm256_mul_ps(dw[i], dx), acc[i][k]);
            }
        }
    }
    PRAGMA_UNROLL(8) for (int i = 0; i < R; i++)
        PRAGMA_UNROLL(2) for (int k = 0; k < G; k++) res[i * G + k] = acc[i][k];
}

// q8_0 rows against one token group packed as int8 quads (pack_layout):
// no widening, ggml's sign trick on the weights' own bytes. For each quad of
// each row: the 4 weights broadcast, |w| times x with w's sign
// (_mm256_maddubs_epi16, pairs within int16: 2·127·127 < 2^15), widened to
// int32 (_mm256_madd_epi16) and summed: 32 multiply-adds in the operations
// the int16 path spends on 32 after widening every block first.
// The 4-row tile's block in asm: per step one load of the 8 tokens' quads, then
// for each row its broadcast quad, |w| and x·sign(w) (vpsignb), vpmaddubsw,
// vpmaddwd by ones, vpaddd. As for the prefill blocks, constant offsets
// from base registers replace the compiled loop's address arithmetic:
// 1.03-1.18x the products' rate at T = 8 (K = 288-2048, N = 768-32000).
#define Q8S_ROW(addr, a)                                                                            \
    "vpbroadcastd " addr ", %[v]\n\t"                                                                 \
    "vpsignb %[v], %[x], %[t]\n\t"                                                                    \
    "vpsignb %[v], %[v], %[u]\n\t"                                                                    \
    "vpmaddubsw %[t], %[u], %[t]\n\t"                                                                 \
    "vpmaddwd %[one], %[t], %[t]\n\t"                                                                 \
    "vpaddd %[t], %[" #a "], %[" #a "]\n\t"
#define Q8S_STEP(g)                                                                                   \
    "vmovdqa " #g "*32(%[xp]), %[x]\n\t"                                                              \
    Q8S_ROW(#g "*4(%[wb])", a0) Q8S_ROW(#g "*4(%[wb],%[rs])", a1) Q8S_ROW(#g "*4(%[wb],%[rs],2)", a2)    \
    Q8S_ROW(#g "*4(%[wb3])", a3)
AVX2_TARGET static ALWAYS_INLINE void ptile_q8s(int R, const uint8_t *w, size_t rowb, const uint8_t *grp, int64_t nb,
                                                __m256 *res) {
    __m256 acc[PRMAX];
    const __m256i ones = _mm256_set1_epi16(1);
    PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) acc[i] = _mm256_setzero_ps();
    const size_t span = (size_t)R * rowb, pf_step = pf_step_of(span, nb), ahead = pf_ahead(span);
    const bool lin = rowb <= PF_LINEAR_ROW;
    for (int64_t b = 0; b < nb; b++) {
        __m256i ia[PRMAX];
        if (lin) pf_share(w + ahead, span, pf_step, b);
        PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) {
            if (!lin) __builtin_prefetch(w + (size_t)i * rowb + (size_t)b * sizeof(block_q8_0) + span);
            ia[i] = _mm256_setzero_si256();
        }
        if (R == 4) {
            const uint8_t *wb = w + (size_t)b * sizeof(block_q8_0) + 2, *wb3 = wb + 3 * rowb;
            __m256i a0 = ia[0], a1 = ia[1], a2 = ia[2], a3 = ia[3], x, v, u, t;
            const __m256i one = ones;
            const uint8_t *xp = grp + b * PK4;
            __asm__(Q8S_STEP(0) Q8S_STEP(1) Q8S_STEP(2) Q8S_STEP(3) Q8S_STEP(4) Q8S_STEP(5) Q8S_STEP(6) Q8S_STEP(7)
                    : [a0] "+x"(a0), [a1] "+x"(a1), [a2] "+x"(a2), [a3] "+x"(a3), [x] "=&x"(x), [v] "=&x"(v),
                      [u] "=&x"(u), [t] "=&x"(t)
                    : [wb] "r"(wb), [rs] "r"(rowb), [wb3] "r"(wb3), [xp] "r"(xp), [one] "x"(one)
                    : "memory");
            ia[0] = a0; ia[1] = a1; ia[2] = a2; ia[3] = a3;
        } else
        PRAGMA_UNROLL(UNROLL_G) for (int g = 0; g < 8; g++) {
            const __m256i xv = _mm256_load_si256((const __m256i *)(grp + b * PK4 + g * 32));
            PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) {
                const uint8_t *blk = w + (size_t)i * rowb + (size_t)b * sizeof(block_q8_0);
                const __m256i wv = bcast32((const int32_t *)(blk + 2 + 4 * g));
                const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
                ia[i] = _mm256_add_epi32(ia[i], _mm256_madd_epi16(p, ones));
            }
        }
        const __m256 dx = _mm256_load_ps((const float *)(grp + b * PK4 + 8 * 32));
        PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) {
            fp16_t h;
            memcpy(&h, w + (size_t)i * rowb + (size_t)b * sizeof(block_q8_0), sizeof h);
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[i]), _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(h)), dx), acc[i]);
        }
    }
    PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) res[i] = acc[i];
}

AVX2_TARGET static ALWAYS_INLINE void prows_q8s(int R, const uint8_t *wd, size_t rowb, const uint8_t *pack,
                                                int64_t nb, int64_t T, int64_t N, long r, float *y) {
    __m256 res[PRMAX];
    _Alignas(32) float lanes[8];
    ptile_q8s(R, wd + (size_t)r * rowb, rowb, pack, nb, res);
    const int nt = T < 8 ? (int)T : 8;
    for (int i = 0; i < R; i++) {
        _mm256_store_ps(lanes, res[i]);
        for (int j = 0; j < nt; j++) y[j * N + r + i] = lanes[j];
    }
}

// Rows r.. (R of them) for token groups g.. (G of them): tile, then scatter
// the lanes of real tokens.
AVX2_TARGET static ALWAYS_INLINE void prows(enum ggml_type type, int R, int G, const uint8_t *wd, size_t rowb,
                                            const uint8_t *pack, int64_t gb, int64_t nb, int64_t g, int64_t T,
                                            int64_t N, long r, float *y) {
    __m256 res[PRMAX * PG];
    _Alignas(32) float lanes[8];
    if (type == GGML_TYPE_Q8_0) ptile_q8(R, G, wd + (size_t)r * rowb, rowb, pack + g * gb, gb, nb, NULL, NULL, res);
    else ptile_q4(R, G, wd + (size_t)r * rowb, rowb, pack + g * gb, gb, nb, NULL, NULL, res);
    for (int k = 0; k < G; k++) {
        const int64_t t0 = (g + k) * 8;
        const int nt = T - t0 < 8 ? (int)(T - t0) : 8;
        for (int i = 0; i < R; i++) {
            _mm256_store_ps(lanes, res[i * G + k]);
            for (int j = 0; j < nt; j++) y[(t0 + j) * N + r + i] = lanes[j];
        }
    }
}

AVX2_TARGET static ALWAYS_INLINE void prows_g(enum ggml_type type, int R, const uint8_t *wd, size_t rowb,
                                              const uint8_t *pack, int64_t gb, int64_t nb, int64_t ng, int64_t T,
                                              int64_t N, long r, float *y) {
    int64_t g = 0;
    for (; g + PG <= ng; g += PG) prows(type, R, PG, wd, rowb, pack, gb, nb, g, T, N, r, y);
    for (; g < ng; g++) prows(type, R, 1, wd, rowb, pack, gb, nb, g, T, N, r, y);
}

// q8_0 rows (R of them at w) widened to int16 pairs once, for all the token
// groups that pass over them (each tile would otherwise widen every block
// again: an eighth of the kernel's time at T = 128). No prefetch: the
// strip's first tile prefetches the next strip, spread over its blocks.
// From here the next rows arrived in a burst and the tiles after, from L1,
// left memory idle; moved (AVX2 level, 2 threads, same-process A/B):
// TinyLlama q8_0 16-token prompt 1.19x, 128 tokens 1.02x; stories110M q8_0,
// 16 sequences decoded together 1.16x.
#define STRIP_K 8192   // longest rows widened ahead: 3 × 8192 int16 (48 KiB) on the stack
AVX2_TARGET static void widen_q8(int R, const uint8_t *w, size_t rowb, int64_t nb, int32_t *pre, float *pds) {
    for (int i = 0; i < R; i++)
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = w + (size_t)i * rowb + (size_t)b * sizeof(block_q8_0);
            pds[(size_t)i * (size_t)nb + (size_t)b] = widen_block_q8(blk, pre + ((size_t)i * (size_t)nb + (size_t)b) * 16);
        }
}

// q4_0 rows unpacked to one nibble a byte (element order, as ptile_q4 reads
// them) once for all the token groups, like widen_q8.
AVX2_TARGET static void widen_q4(int R, const uint8_t *w, size_t rowb, int64_t nb, int32_t *pre, float *pds) {
    for (int i = 0; i < R; i++)
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = w + (size_t)i * rowb + (size_t)b * sizeof(block_q4_0);
            pds[(size_t)i * (size_t)nb + (size_t)b] = unpack_block_q4(blk, pre + ((size_t)i * (size_t)nb + (size_t)b) * 8);
        }
}

// Output blocks of the widened tiles: OB_ROWS rows (8 strips of PR) × up to
// OB_T tokens are kept row by row (each tile's 8-token vectors stored
// whole), then written to y (token-major) 8 rows × 8 tokens at a time
// through the 8×8 transpose. Scattering each tile's lanes to y instead (one
// scalar store per row and token, each token on another line) cost the
// small products most: this runs 1.09x at K = N = 288, 1.03x at 288 × 768,
// the same at K = 768-2048 (128 tokens).
#define OB_ROWS (8 * PR)
#define OB_T 128

// Rows r .. r + rb − 1 of the output block ob (row i's tokens at ob + i·OB_T)
// into y for the nt tokens from t0.
AVX2_TARGET static void prun_store_rows(const float *ob, long rb, int64_t t0, int64_t nt, int64_t N, long r, float *y) {
    long i = 0;
    for (; i + 8 <= rb; i += 8)
        for (int64_t t = 0; t < nt; t += 8) {
            __m256i v[8];
            for (int m = 0; m < 8; m++) v[m] = _mm256_load_si256((const __m256i *)(ob + (i + m) * OB_T + t));
            transpose8x32(v);   // v[j]: token t + j of the 8 rows
            const int n = nt - t < 8 ? (int)(nt - t) : 8;
            for (int j = 0; j < n; j++) _mm256_storeu_si256((__m256i *)(y + (t0 + t + j) * N + r + i), v[j]);
        }
    for (; i < rb; i++)
        for (int64_t t = 0; t < nt; t++) y[(t0 + t) * N + r + i] = ob[i * OB_T + t];
}

// One thread's rows [r0, r1): panels of rows small enough to stay in L2 while
// every token group passes over them, so the weights come from memory once.
AVX2_TARGET static ALWAYS_INLINE void prun_typed(enum ggml_type type, const uint8_t *wd, size_t rowb,
                                                 const uint8_t *pack, int64_t K, int64_t T, int64_t N, long r0,
                                                 long r1, float *y) {
    const int64_t nb = K / 32, ng = (T + 7) / 8, gb = pack_bytes(pack_layout(type, T), K);
    if (type == GGML_TYPE_Q8_0 && ng == 1) {   // one group, packed as quads
        long r = r0;
        for (; r + PRS <= r1; r += PRS) prows_q8s(PRS, wd, rowb, pack, nb, T, N, r, y);
        for (; r + PR <= r1; r += PR) prows_q8s(PR, wd, rowb, pack, nb, T, N, r, y);
        for (; r < r1; r++) prows_q8s(1, wd, rowb, pack, nb, T, N, r, y);
        return;
    }
    long panel = (long)((128 * 1024) / rowb) / PR * PR;
    if (panel < PR) panel = PR;
    for (long p0 = r0; p0 < r1; p0 += panel) {
        const long p1 = p0 + panel < r1 ? p0 + panel : r1;
        long r = p0;
        const int64_t ng2 = ng - ng % PG;
        // Rows widened once per strip, also for a single pair of groups (9-24
        // tokens: the same widening as inside the tile, and the asm blocks
        // then apply: 1.08-1.30x).
        if (ng2 >= PG && K <= STRIP_K) {
            _Alignas(32) int32_t pre[PR * STRIP_K / 2];
            float pds[PR * STRIP_K / 32];
            _Alignas(32) float ob[OB_ROWS * OB_T];
            while (r + PR <= p1) {
                const long rb = p1 - r < OB_ROWS ? (p1 - r) / PR * PR : OB_ROWS;
                for (int64_t gt = 0; gt < ng2; gt += OB_T / 8) {   // a block of up to OB_T tokens
                    const int64_t ngt = ng2 - gt < OB_T / 8 ? ng2 - gt : OB_T / 8;
                    for (long s = 0; s < rb; s += PR) {
                        if (type == GGML_TYPE_Q8_0) widen_q8(PR, wd + (size_t)(r + s) * rowb, rowb, nb, pre, pds);
                        else widen_q4(PR, wd + (size_t)(r + s) * rowb, rowb, nb, pre, pds);
                        for (int64_t g = gt; g < gt + ngt; g += PG) {
                            __m256 res[PR * PG];
                            const uint8_t *nxt = g == gt ? wd + (size_t)(r + s + PR) * rowb : NULL;   // the next strip
                            if (type == GGML_TYPE_Q8_0)
                                ptile_q8(PR, PG, nxt, rowb, pack + g * gb, gb, nb, pre, pds, res);
                            else ptile_q4(PR, PG, nxt, rowb, pack + g * gb, gb, nb, pre, pds, res);
                            for (int i = 0; i < PR; i++)
                                for (int k = 0; k < PG; k++)
                                    _mm256_store_ps(ob + (s + i) * OB_T + (g - gt + k) * 8, res[i * PG + k]);
                        }
                    }
                    prun_store_rows(ob, rb, gt * 8, T - gt * 8 < ngt * 8 ? T - gt * 8 : ngt * 8, N, r, y);
                }
                r += rb;
            }
        }
        for (; r + PR <= p1; r += PR) prows_g(type, PR, wd, rowb, pack, gb, nb, ng2, T, N, r, y);
        for (; r < p1; r++) prows_g(type, 1, wd, rowb, pack, gb, nb, ng2, T, N, r, y);
        if (ng % PG == 0) continue;
        // The odd group last, in taller tiles: with one group the broadcast
        // weights serve a single activation load, so more rows share it.
        for (r = p0; r + PR1 <= p1; r += PR1) prows(type, PR1, 1, wd, rowb, pack, gb, nb, ng - 1, T, N, r, y);
        for (; r + PR <= p1; r += PR) prows(type, PR, 1, wd, rowb, pack, gb, nb, ng - 1, T, N, r, y);
        for (; r < p1; r++) prows(type, 1, 1, wd, rowb, pack, gb, nb, ng - 1, T, N, r, y);
    }
}

AVX2_TARGET static void prun_avx2(enum ggml_type type, const uint8_t *wd, size_t rowb, const uint8_t *pack,
                                  int64_t K, int64_t T, int64_t N, long r0, long r1, float *y) {
    if (type == GGML_TYPE_Q8_0) prun_typed(GGML_TYPE_Q8_0, wd, rowb, pack, K, T, N, r0, r1, y);
    else prun_typed(GGML_TYPE_Q4_0, wd, rowb, pack, K, T, N, r0, r1, y);
}

// ---- AVX-512 VNNI: packed batches ----------------------------------------------
//
// Where AVX-512 VNNI is present, both q8_0 and q4_0 products of 8 tokens or
// more take the int8 quads layout (pack_layout) and one instruction per
// quad: vpdpbusd multiplies 4 unsigned weight bytes by 4 signed activation
// bytes and adds the 4 products to an int32 lane, where AVX2 spends
// vpmaddwd + vpaddd on 2 (q8_0 widened to int16) or vpmaddubsw + vpaddw on 4
// (q4_0, with a vpmaddwd per block). The weights are made unsigned: q4_0's
// nibbles are already (the value is nibble − 8), q8_0's bytes get 128
// added (xor 0x80). The offset comes off through the packed 8·Σq of each
// token: the int32 sums start at −8·Σq (q4_0) or −128·Σq (q8_0) instead of
// zero. The integer sums are exact and the float steps per block (convert,
// scale d_w·d_x, add) are the AVX2 kernels', so the results are
// bit-identical to theirs. 256-bit vectors: on Zen 4 a 512-bit vpdpbusd
// takes its unit twice as long, and the EVEX encoding already gives 32
// registers, enough for a tile of VR rows × VG token groups.
// On one Zen 4 core (same-process rounds against the AVX2 kernels, 128
// tokens): q8_0 2.1-2.2x (68-71 → 141-160 G MAC/s), q4_0 1.35-1.41x
// (104-118 → 141-166); one token group (batched decode, 8 tokens): q8_0
// 1.5-2.0x, q4_0 1.2x. vpdpbusd, vmulps and vfmadd231ps share two units
// there (2 a cycle in all), so a block of a row and a group (8 vpdpbusd,
// one multiply of the scales, one FMA) takes at least 5 cycles: 188 G
// MAC/s at 3.67 GHz. Tiles of 3 × 4 ran as 4 × 3; 6 rows for a lone group
// 0.94x of 8.
#define VR 4
#define VG 3
#define VR1 8   // rows of the tile for a lone token group

// The 4 bytes at p in all 8 lanes (any of the 32 registers).
AVX512VNNI_TARGET static ALWAYS_INLINE __m256i bcast32v(const void *p) {
    __m256i r;
    __asm__("vpbroadcastd %1, %0" : "=v"(r) : "m"(*(const int32_t *)p));
    return r;
}

// Block b of a weight row as 32 unsigned bytes in element order: q8_0 + 128,
// or q4_0's nibbles.
AVX512VNNI_TARGET static ALWAYS_INLINE __m256i load_wu8(enum ggml_type type, const uint8_t *blk) {
    if (type == GGML_TYPE_Q8_0)
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 2)), _mm256_set1_epi8((char)0x80));
    return load_wnib(blk, 0);
}

// R rows at w (rowb apart) as unsigned bytes, 32 a block (row i's block b at
// pre + (i·nb + b)·32), and their scales (pds[i·nb + b]): once per strip,
// for all the token groups that pass over it. No prefetch here: the strip's
// first tile prefetches the next strip (vstrip).
AVX512VNNI_TARGET static void widen_u8(enum ggml_type type, int R, const uint8_t *w, size_t rowb, int64_t nb,
                                       uint8_t *pre, float *pds) {
    const size_t bs = type == GGML_TYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    for (int i = 0; i < R; i++)
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = w + (size_t)i * rowb + (size_t)b * bs;
            _mm256_store_si256((__m256i *)(pre + ((size_t)i * (size_t)nb + (size_t)b) * 32), load_wu8(type, blk));
            fp16_t h;
            memcpy(&h, blk, sizeof h);
            pds[(size_t)i * (size_t)nb + (size_t)b] = _cvtsh_ss(h);
        }
}

// One step g of the lone-group tile's block in asm: quad-word g of the 8
// tokens, then for each of the 8 rows (32 bytes apart at wt) its quad g
// broadcast and one vpdpbusd. Compiled, the 8 sums and their copies of the
// offset term moved between registers and the stack: 1.06-1.10x (one
// group, K = 768-2048, rows in L2, L3 or DRAM). Broadcasting from the
// weights with an xor per quad instead of from the unsigned copy: 1.00x.
#define V1_ROW(g, i, a) "vpbroadcastd " #g "*4+" #i "*32(%[wt]), %[w]\n\tvpdpbusd %[x], %[w], %[" #a "]\n\t"
#define V1_STEP(g)                                                                                    \
    "vmovdqa32 " #g "*32(%[xp]), %[x]\n\t" V1_ROW(g, 0, a0) V1_ROW(g, 1, a1) V1_ROW(g, 2, a2) V1_ROW(g, 3, a3) \
    V1_ROW(g, 4, a4) V1_ROW(g, 5, a5) V1_ROW(g, 6, a6) V1_ROW(g, 7, a7)

// The lone-group tile for 8 q8_0 rows with their block sums
// (mm_weight.bsum), its whole loop over the blocks in asm. Per block: each
// row's block of the next tile prefetched into L2 (pn0/pn3/pn6: rows 0/3/6
// a span ahead, rows rowb apart), and the next tile's sums (cs ahead); the
// 8 rows' −Σw (int16) and scales (f16), 32 bytes at c, widened in one load
// each, the sums times 128 (vpslld 7) and each row's spread over the
// tokens' lanes by vpermd (the index vectors live in ymm8-15), which starts
// that row's int32 sum at −128·Σw; 8 steps, each the tokens' quad-word g
// made unsigned (xor 0x80: x + 128) and, per row, its quad g broadcast
// straight from the weights as the signed operand of one vpdpbusd
// ({1to8}; Σ(x + 128)·w = Σx·w + 128·Σw); then per row its scale spread by
// vpermps times the tokens' (dx, read once), the sums converted, one FMA.
// No copy of the rows made unsigned: the same integers as the other tiles,
// so the same results (before this loop, block sums instead of the copy:
// one core, rows in L2, 1.14-1.20x; stories110M q8_0, 8 sequences,
// 1.06-1.08x).
// The loop was compiled C with this asm as its block body; the compiler
// kept the 8 row and prefetch addresses partly on the stack and partly in
// vector registers (vmovq both ways at every block), read each scale with
// vpinsrw, vcvtph2ps and vbroadcastss, and the tokens' scales once per row.
// On Zen 4 its 97 loads a block weigh on it: with the 64 weight broadcasts
// replaced by a register operand (wrong results, a probe) it ran 1.23x,
// though vpdpbusd alone runs as fast from m32{1to8} as from a register
// (about 1.86 a cycle); the tokens' scales read once instead of 8 times
// gave 1.05x by themselves. Measured against the compiled loop, same-process
// rounds, results bit-identical: one core, rows in L1 or L2, K = 768-2048,
// 115-120 → 135-141 G MAC/s (1.18-1.26x); 2 threads from DRAM 1.13-1.19x;
// stories110M Q8_0, 8 sequences, 1.09-1.12x.
// The loop was then bound by its loads, not its multiply-adds: without
// the 8 scale loads of a block (a probe, wrong results) it ran 1.07-1.08x,
// without the 8 vmulps 1.01x, with each row's sum in two chains 0.97-1.01x.
// Each row's sum and scale used to be read from the row (vpbroadcastw) and
// from a row-major array of int32 sums (vpbroadcastd): 16 loads a block.
// Laid out by tile, as here, they are 2 loads and 16 register permutes, and
// take the same 4 bytes a row and block. Same-process rounds, results
// bit-identical: one core, rows in L1, 1.15-1.18x; 2 threads, rows in L2,
// 1.12x, from DRAM 1.05-1.12x; 8 sequences decoded together, stories110M
// Q8_0 1.03-1.11x, TinyLlama Q8_0 1.12x. As int32 sums and f32 scales (64
// bytes a tile and block) the tile ran 0.93-0.97x from DRAM: it then read
// 23% more than the weights, not 12%.
// Tried: each row's quads 2p and 2p + 1 as one 8-byte broadcast against
// the tokens' quads interleaved (half the weight loads, a vphaddd per row
// and block), 0.88-0.96x of this loop; prefetching each row every other
// block (4 a block) 0.75-0.81x from DRAM, as a line in 17 goes unfetched;
// one linear prefetch stream two tiles ahead (4.25 a block) 0.93x end to end.
#define VQ_PF(base, idx) "prefetcht1 (%[" #base "]" idx ")\n\t"
#define VQ_ROW(g, base, idx, a) "vpdpbusd " #g "*4(%[" #base "]" idx ")%{1to8%}, %%ymm24, %%" a "\n\t"
#define VQ_STEP(g)                                                                                        \
    "vpxord " #g "*32(%[xp]), %%ymm27, %%ymm24\n\t" VQ_ROW(g, p0, "", "ymm16") VQ_ROW(g, p0, ",%[rs],1", "ymm17") \
    VQ_ROW(g, p0, ",%[rs],2", "ymm18") VQ_ROW(g, p3, "", "ymm19") VQ_ROW(g, p0, ",%[rs],4", "ymm20")            \
    VQ_ROW(g, p3, ",%[rs],2", "ymm21") VQ_ROW(g, p6, "", "ymm22") VQ_ROW(g, p3, ",%[rs],4", "ymm23")
#define VQ_SUM(i, a) "vpermd %%ymm28, %%ymm" #i ", %%" a "\n\t"
#define VQ_SCALE(i, a, f)                                                                            \
    "vpermps %%ymm29, %%ymm" #i ", %%ymm25\n\tvmulps %%ymm26, %%ymm25, %%ymm25\n\t"                \
    "vcvtdq2ps %%" a ", %%" a "\n\tvfmadd231ps %%ymm25, %%" a ", %%" f "\n\t"
static const int32_t vq_lane_idx[64] __attribute__((aligned(32))) = {
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7};
AVX512VNNI_TARGET static void vtile_q8s(const uint8_t *w, size_t rowb, const uint8_t *ts, const uint8_t *grp,
                                        int64_t nb, __m256 *res) {
    const size_t span = 8 * rowb;
    const uint8_t *p0 = w + 2, *p3 = p0 + 3 * rowb, *p6 = p0 + 6 * rowb;
    const uint8_t *pn0 = w + span, *pn3 = pn0 + 3 * rowb, *pn6 = pn0 + 6 * rowb;
    const uint8_t *c = ts, *xp = grp;
    int64_t n = nb;
    const size_t cs = (size_t)nb * 32;   // the next tile's sums
    const __m256i m80 = _mm256_set1_epi8((char)0x80);
    __asm__ volatile(
        "vpxor %%xmm0, %%xmm0, %%xmm0\n\tvpxor %%xmm1, %%xmm1, %%xmm1\n\tvpxor %%xmm2, %%xmm2, %%xmm2\n\t"
        "vpxor %%xmm3, %%xmm3, %%xmm3\n\tvpxor %%xmm4, %%xmm4, %%xmm4\n\tvpxor %%xmm5, %%xmm5, %%xmm5\n\t"
        "vpxor %%xmm6, %%xmm6, %%xmm6\n\tvpxor %%xmm7, %%xmm7, %%xmm7\n\t"
        "vmovdqa32 %[m], %%ymm27\n\t"
        "vmovdqa (%[ix]), %%ymm8\n\tvmovdqa 32(%[ix]), %%ymm9\n\tvmovdqa 64(%[ix]), %%ymm10\n\t"
        "vmovdqa 96(%[ix]), %%ymm11\n\tvmovdqa 128(%[ix]), %%ymm12\n\tvmovdqa 160(%[ix]), %%ymm13\n\t"
        "vmovdqa 192(%[ix]), %%ymm14\n\tvmovdqa 224(%[ix]), %%ymm15\n\t"
        "1:\n\t"
        VQ_PF(pn0, "") VQ_PF(pn0, ",%[rs],1") VQ_PF(pn0, ",%[rs],2") VQ_PF(pn3, "") VQ_PF(pn0, ",%[rs],4")
        VQ_PF(pn3, ",%[rs],2") VQ_PF(pn6, "") VQ_PF(pn3, ",%[rs],4") VQ_PF(c, ",%[cs],1")
        "vpmovsxwd (%[c]), %%ymm28\n\tvcvtph2ps 16(%[c]), %%ymm29\n\tvpslld $7, %%ymm28, %%ymm28\n\t"
        VQ_SUM(8, "ymm16") VQ_SUM(9, "ymm17") VQ_SUM(10, "ymm18") VQ_SUM(11, "ymm19")
        VQ_SUM(12, "ymm20") VQ_SUM(13, "ymm21") VQ_SUM(14, "ymm22") VQ_SUM(15, "ymm23")
        "vmovaps 256(%[xp]), %%ymm26\n\t"
        VQ_STEP(0) VQ_STEP(1) VQ_STEP(2) VQ_STEP(3) VQ_STEP(4) VQ_STEP(5) VQ_STEP(6) VQ_STEP(7)
        VQ_SCALE(8, "ymm16", "ymm0") VQ_SCALE(9, "ymm17", "ymm1") VQ_SCALE(10, "ymm18", "ymm2")
        VQ_SCALE(11, "ymm19", "ymm3") VQ_SCALE(12, "ymm20", "ymm4") VQ_SCALE(13, "ymm21", "ymm5")
        VQ_SCALE(14, "ymm22", "ymm6") VQ_SCALE(15, "ymm23", "ymm7")
        "add $34, %[p0]\n\tadd $34, %[p3]\n\tadd $34, %[p6]\n\t"
        "add $34, %[pn0]\n\tadd $34, %[pn3]\n\tadd $34, %[pn6]\n\t"
        "add $32, %[c]\n\tadd $320, %[xp]\n\t"
        "dec %[n]\n\tjnz 1b\n\t"
        "vmovups %%ymm0, (%[res])\n\tvmovups %%ymm1, 32(%[res])\n\tvmovups %%ymm2, 64(%[res])\n\t"
        "vmovups %%ymm3, 96(%[res])\n\tvmovups %%ymm4, 128(%[res])\n\tvmovups %%ymm5, 160(%[res])\n\t"
        "vmovups %%ymm6, 192(%[res])\n\tvmovups %%ymm7, 224(%[res])\n\t"
        : [p0] "+r"(p0), [p3] "+r"(p3), [p6] "+r"(p6), [pn0] "+r"(pn0), [pn3] "+r"(pn3), [pn6] "+r"(pn6),
          [c] "+r"(c), [xp] "+r"(xp), [n] "+r"(n)
        : [rs] "r"(rowb), [cs] "r"(cs), [m] "v"(m80), [res] "r"(res), [ix] "r"(vq_lane_idx)
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
          "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24",
          "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "memory", "cc");
}
#undef VQ_PF
#undef VQ_SUM
#undef VQ_SCALE
#undef VQ_ROW
#undef VQ_STEP

// res[i*G + k] (8 token lanes) = row_i · tokens of group k, for R rows and G
// packed groups (gb bytes apart at grp). With `pre`, the rows come as
// widen_u8 left them, and w, when not NULL, is the next strip (rowb bytes
// of it) to prefetch, spread over the blocks; without, block b of row i is
// read from w + i·rowb and made unsigned in the tile (one group: each block
// serves one load of x), or, for 8 q8_0 rows of one group with their block
// sums ts (the tile's, mm_weight.bsum), used as they are (vtile_q8s).
// Read from the weights, each row's block of the next tile (span ahead) is
// prefetched into L2 only (prefetcht1), one line a row and block, whatever
// the row length. Into L1 and in address order, as decode does it, the
// prefetches held the tile back from DRAM: 2 threads, 8 tokens, rows from
// DRAM, same-process rounds: L2 1.09-1.14x (q8_0, K = 768), per row instead
// of in address order another 1.05-1.18x (q8_0, K = 768 and 2048), q4_0
// 1.01-1.07x; two tiles ahead instead of one 0.98-1.03x. Decode keeps L1:
// there L2 ran 0.92-0.96x.
AVX512VNNI_TARGET static ALWAYS_INLINE void vtile(enum ggml_type type, int R, int G, const uint8_t *w, size_t rowb,
                                                  const uint8_t *ts, const uint8_t *pre, const float *pds,
                                                  const uint8_t *grp, int64_t gb, int64_t nb, __m256 *res) {
    __m256 acc[VR1][VG];
    _Alignas(32) uint8_t wt[VR1][32];
    const int shift = type == GGML_TYPE_Q8_0 ? 4 : 0;   // 8·Σq → 128·Σq
    const size_t bs = type == GGML_TYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    if (type == GGML_TYPE_Q8_0 && R == 8 && G == 1 && !pre && ts) {   // the rows as they are, with their block sums
        vtile_q8s(w, rowb, ts, grp, nb, res);
        return;
    }
    PRAGMA_UNROLL(8) for (int i = 0; i < R; i++)
        PRAGMA_UNROLL(4) for (int k = 0; k < G; k++) acc[i][k] = _mm256_setzero_ps();
    const size_t span = (size_t)R * rowb;
    const size_t pf_step = pre && w ? pf_step_of(rowb, nb) : 0;
    for (int64_t b = 0; b < nb; b++) {
        __m256i ia[VR1][VG];
        const uint8_t *wr[VR1];
        float dw[VR1];
        if (pre) {
            if (w) pf_share(w, rowb, pf_step, b);
            PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) {
                wr[i] = pre + ((size_t)i * (size_t)nb + (size_t)b) * 32;
                dw[i] = pds[(size_t)i * (size_t)nb + (size_t)b];
            }
        } else {
            PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) {
                const uint8_t *blk = w + (size_t)i * rowb + (size_t)b * bs;
                __builtin_prefetch(blk + span, 0, 2);   // prefetcht1: see the comment above vtile
                _mm256_store_si256((__m256i *)wt[i], load_wu8(type, blk));
                fp16_t h;
                memcpy(&h, blk, sizeof h);
                dw[i] = _cvtsh_ss(h);
                wr[i] = wt[i];
            }
        }
        PRAGMA_UNROLL(4) for (int k = 0; k < G; k++) {
            const __m256i s8 = _mm256_load_si256((const __m256i *)(grp + k * gb + b * PK4 + 8 * 32 + 32));
            const __m256i neg = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(s8, shift));
            PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) ia[i][k] = neg;
        }
        if (!pre && R == 8 && G == 1) {
            __m256i a0 = ia[0][0], a1 = ia[1][0], a2 = ia[2][0], a3 = ia[3][0], a4 = ia[4][0], a5 = ia[5][0],
                    a6 = ia[6][0], a7 = ia[7][0], xr, wv;
            const uint8_t *xp = grp + b * PK4;
            __asm__(V1_STEP(0) V1_STEP(1) V1_STEP(2) V1_STEP(3) V1_STEP(4) V1_STEP(5) V1_STEP(6) V1_STEP(7)
                    : [a0] "+v"(a0), [a1] "+v"(a1), [a2] "+v"(a2), [a3] "+v"(a3), [a4] "+v"(a4), [a5] "+v"(a5),
                      [a6] "+v"(a6), [a7] "+v"(a7), [x] "=&v"(xr), [w] "=&v"(wv)
                    : [xp] "r"(xp), [wt] "r"(&wt[0][0])
                    : "memory");
            ia[0][0] = a0; ia[1][0] = a1; ia[2][0] = a2; ia[3][0] = a3;
            ia[4][0] = a4; ia[5][0] = a5; ia[6][0] = a6; ia[7][0] = a7;
        } else
        PRAGMA_UNROLL(8) for (int g = 0; g < 8; g++) {
            __m256i xv[VG];
            PRAGMA_UNROLL(4) for (int k = 0; k < G; k++)
                xv[k] = _mm256_load_si256((const __m256i *)(grp + k * gb + b * PK4 + g * 32));
            PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) {
                const __m256i wv = bcast32v(wr[i] + 4 * g);
                PRAGMA_UNROLL(4) for (int k = 0; k < G; k++) ia[i][k] = _mm256_dpbusd_epi32(ia[i][k], wv, xv[k]);
            }
        }
        PRAGMA_UNROLL(4) for (int k = 0; k < G; k++) {
            const __m256 dx = _mm256_load_ps((const float *)(grp + k * gb + b * PK4 + 8 * 32));
            PRAGMA_UNROLL(8) for (int i = 0; i < R; i++)
                acc[i][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[i][k]), _mm256_mul_ps(_mm256_set1_ps(dw[i]), dx), acc[i][k]);
        }
    }
    PRAGMA_UNROLL(8) for (int i = 0; i < R; i++)
        PRAGMA_UNROLL(4) for (int k = 0; k < G; k++) res[i * G + k] = acc[i][k];
}

// Rows r.. (R of them) against one token group g, straight from the weights:
// the tile, then the lanes of real tokens to y.
AVX512VNNI_TARGET static ALWAYS_INLINE void vrows1(enum ggml_type type, int R, const uint8_t *wd, size_t rowb,
                                                   const uint8_t *bsum, const uint8_t *pack, int64_t gb, int64_t nb,
                                                   int64_t g, int64_t T, int64_t N, long r, float *y) {
    __m256 res[VR1];
    _Alignas(32) float lanes[8];
    // The sums are laid out by tiles of 8 rows from row 0: a tile that starts
    // elsewhere (items of 12 rows, a static split by 4) goes without.
    const uint8_t *ts = bsum && R == 8 && r % 8 == 0 ? bsum + (size_t)(r / 8) * (size_t)nb * 32 : NULL;
    vtile(type, R, 1, wd + (size_t)r * rowb, rowb, ts, NULL, NULL, pack + g * gb, gb, nb, res);
    const int64_t t0 = g * 8;
    const int nt = T - t0 < 8 ? (int)(T - t0) : 8;
    if (R == 8) {   // 8 × 8 through the transpose: one store per token (about 1.01x end to end)
        __m256i v[8];
        PRAGMA_UNROLL(8) for (int i = 0; i < 8; i++) v[i] = _mm256_castps_si256(res[i]);
        transpose8x32(v);   // v[j]: token t0 + j of the 8 rows
        for (int j = 0; j < nt; j++) _mm256_storeu_si256((__m256i *)(y + (t0 + j) * N + r), v[j]);
        return;
    }
    for (int i = 0; i < R; i++) {
        _mm256_store_ps(lanes, res[i]);
        for (int j = 0; j < nt; j++) y[(t0 + j) * N + r + i] = lanes[j];
    }
}

// The tiles of one strip (R rows widened in pre) over token groups
// [g0, g0 + ng), into the output block (row s + i's token lanes at
// ob + (s + i)·OB_T + (g − gt)·8). The first tile prefetches the next
// strip (span bytes at nxt), spread over its blocks. Prefetched from the
// widening instead, the rows came in a burst while it ran, and the tiles
// after it, working from L1, left memory idle. Moved (2 threads, same-process A/B,
// alternating rounds): TinyLlama q8_0 16-token prompt 1.15x, 128 tokens
// 1.05x (q4_0 1.04x); stories110M q8_0 128 tokens 1.03x, 16 sequences
// decoded together 1.14x.
AVX512VNNI_TARGET static ALWAYS_INLINE void vstrip(enum ggml_type type, int R, const uint8_t *pre, const float *pds,
                                                   const uint8_t *pack, int64_t gb, int64_t nb, int64_t g0,
                                                   int64_t ng, int64_t gt, long s, float *ob, const uint8_t *nxt,
                                                   size_t span) {
    __m256 res[VR * VG];
    int64_t g = g0;
    for (; g + VG <= g0 + ng; g += VG, nxt = NULL) {
        vtile(type, R, VG, nxt, span, NULL, pre, pds, pack + g * gb, gb, nb, res);
        for (int i = 0; i < R; i++)
            for (int k = 0; k < VG; k++) _mm256_store_ps(ob + (s + i) * OB_T + (g - gt + k) * 8, res[i * VG + k]);
    }
    const int rest = (int)(g0 + ng - g);   // 0 .. VG - 1
    if (rest == 0) return;
    if (rest == 1) vtile(type, R, 1, nxt, span, NULL, pre, pds, pack + g * gb, gb, nb, res);
    else vtile(type, R, 2, nxt, span, NULL, pre, pds, pack + g * gb, gb, nb, res);
    for (int i = 0; i < R; i++)
        for (int k = 0; k < rest; k++) _mm256_store_ps(ob + (s + i) * OB_T + (g - gt + k) * 8, res[i * rest + k]);
}

// One thread's rows [r0, r1): as prun_typed, panels of rows that stay in L2
// while every token group passes over them, strips of VR rows widened once.
AVX512VNNI_TARGET static ALWAYS_INLINE void vrun_typed(enum ggml_type type, const uint8_t *wd, size_t rowb,
                                                       const uint8_t *bsum, const uint8_t *pack, int64_t K, int64_t T,
                                                       int64_t N, long r0, long r1, float *y) {
    const int64_t nb = K / 32, ng = (T + 7) / 8, gb = pack_bytes(GGML_TYPE_Q4_0, K);
    if (ng == 1 || K > STRIP_K) {   // each weight block serves one group: no widening ahead
        for (int64_t g = 0; g < ng; g++) {
            long r = r0;
            for (; r + VR1 <= r1; r += VR1) vrows1(type, VR1, wd, rowb, bsum, pack, gb, nb, g, T, N, r, y);
            for (; r + VR <= r1; r += VR) vrows1(type, VR, wd, rowb, NULL, pack, gb, nb, g, T, N, r, y);
            for (; r < r1; r++) vrows1(type, 1, wd, rowb, NULL, pack, gb, nb, g, T, N, r, y);
        }
        return;
    }
    long panel = (long)((128 * 1024) / rowb) / VR * VR;
    if (panel < VR) panel = VR;
    _Alignas(32) uint8_t pre[VR * STRIP_K];
    float pds[VR * STRIP_K / 32];
    _Alignas(32) float ob[OB_ROWS * OB_T];
    for (long p0 = r0; p0 < r1; p0 += panel) {
        const long p1 = p0 + panel < r1 ? p0 + panel : r1;
        for (long r = p0; r < p1;) {
            const long rb = p1 - r < OB_ROWS ? p1 - r : OB_ROWS;
            for (int64_t gt = 0; gt < ng; gt += OB_T / 8) {   // a block of up to OB_T tokens
                const int64_t ngt = ng - gt < OB_T / 8 ? ng - gt : OB_T / 8;
                long s = 0;
                for (; s + VR <= rb; s += VR) {
                    widen_u8(type, VR, wd + (size_t)(r + s) * rowb, rowb, nb, pre, pds);
                    vstrip(type, VR, pre, pds, pack, gb, nb, gt, ngt, gt, s, ob, wd + (size_t)(r + s + VR) * rowb, VR * rowb);
                }
                for (; s < rb; s++) {
                    widen_u8(type, 1, wd + (size_t)(r + s) * rowb, rowb, nb, pre, pds);
                    vstrip(type, 1, pre, pds, pack, gb, nb, gt, ngt, gt, s, ob, wd + (size_t)(r + s + 1) * rowb, rowb);
                }
                prun_store_rows(ob, rb, gt * 8, T - gt * 8 < ngt * 8 ? T - gt * 8 : ngt * 8, N, r, y);
            }
            r += rb;
        }
    }
}

AVX512VNNI_TARGET static void vrun_avx512vnni(enum ggml_type type, const uint8_t *wd, size_t rowb,
                                              const uint8_t *bsum, const uint8_t *pack, int64_t K, int64_t T,
                                              int64_t N, long r0, long r1, float *y) {
    if (type == GGML_TYPE_Q8_0) vrun_typed(GGML_TYPE_Q8_0, wd, rowb, bsum, pack, K, T, N, r0, r1, y);
    else vrun_typed(GGML_TYPE_Q4_0, wd, rowb, NULL, pack, K, T, N, r0, r1, y);
}

// Decode (one token) with AVX-512 VNNI, 4 rows at a time (q8_0 and q4_0):
// per block the token's 32 values, and its offset term once for all rows
// (vpdpbusd of the constant 128 or 8 bytes with the values: per lane 128 or
// 8 times the sum of a quad, negated); then per row the block made
// unsigned (q8_0 xor 0x80, q4_0's nibbles), one vpdpbusd into the offset
// term, its scale (vpbroadcastw, vcvtph2ps) times the token's, one convert
// and one FMA. The generic tile spent vpabsb, vpsignb and a zeroed vpdpbusd
// (q8_0) or a subtraction (q4_0) per row and block. Same integers per lane,
// same float steps: the same results. One Zen 4 core, same-process rounds:
// q8_0 1.12-1.18x with the rows in L2 or L3, q4_0 1.05-1.06x, about the same
// from DRAM. 8 rows ran 1.2-1.3x in L2 but 0.74x from DRAM (8 streams);
// the scales of 8 rows in one vpgatherdd 0.83x (the gather is slow here).
// Prefetch: the tiles ahead in address order into L1 (pf_share), or per row
// for rows longer than PF_LINEAR_ROW, as the AVX2 tile. Two changes, from
// the host's fast memory mode (probe 46-60 GB/s), where one core's L1 miss
// buffers held decode to about 40 GB/s of weights on two threads: q8_0
// rows of 1 KiB or more add a second stream into L2 only, one tile further
// (per row: two tiles); rows under 1 KiB go into L2 only. Same-process
// rounds, 2 threads, fast mode: TinyLlama Q8_0 decode 34.5 → 41.3 tok/s
// (1.13-1.22x; slow mode 1.01-1.05x); TinyLlama Q4_0, stories110M and
// stories15M medians 0.98-1.01x, in the noise. The second stream for q4_0
// ran 0.92x (its decode is closer to compute-bound, about 34 G MAC/s a core
// with the rows in L2 and 31 from DRAM: the extra prefetches cost more than
// they bring), and for rows under 1 KiB (in place of L2 only) 0.95-0.97x.
AVX512VNNI_TARGET static ALWAYS_INLINE void vrows_dec(enum ggml_type type, int R, const uint8_t *w, size_t rowb,
                                                      const uint8_t *xq, int64_t K, float *out) {
    const int64_t nb = K / 32;
    const float *xd = (const float *)(xq + K);
    const size_t bs = type == GGML_TYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    const __m256i off = _mm256_set1_epi8(type == GGML_TYPE_Q8_0 ? (char)0x80 : 8);
    __m256 acc[8];
    PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) acc[i] = _mm256_setzero_ps();
    const size_t span = (size_t)R * rowb, pf_step = pf_step_of(span, nb), ahead = pf_ahead(span);
    const bool lin = rowb <= PF_LINEAR_ROW;
    const bool l2only = lin && rowb < 1024, far = type == GGML_TYPE_Q8_0 && rowb >= 1024;
    for (int64_t b = 0; b < nb; b++) {
        if (lin) {
            if (l2only) pf_share_l2(w + ahead, span, pf_step, b);
            else pf_share(w + ahead, span, pf_step, b);
            if (far) pf_share_l2(w + ahead + span, span, pf_step, b);
        }
        const __m256i x = _mm256_loadu_si256((const __m256i *)(xq + b * 32));
        const __m256i neg = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), off, x));
        const __m256 dx = _mm256_set1_ps(xd[b]);
        PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) {
            const uint8_t *blk = w + (size_t)i * rowb + (size_t)b * bs;
            if (!lin) __builtin_prefetch(blk + span);
            if (!lin && far) __builtin_prefetch(blk + 2 * span, 0, 2);
            int16_t h;
            memcpy(&h, blk, 2);
            const __m256 dd = _mm256_mul_ps(_mm256_cvtph_ps(_mm_set1_epi16(h)), dx);
            const __m256i ia = _mm256_dpbusd_epi32(neg, load_wu8(type, blk), x);
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia), dd, acc[i]);
        }
    }
    PRAGMA_UNROLL(8) for (int i = 0; i < R; i++) out[i] = hsum256(acc[i]);
}

AVX512VNNI_TARGET static void vrun_dec(enum ggml_type type, const uint8_t *wd, size_t rowb, const uint8_t *xq,
                                       int64_t K, long r0, long r1, float *y) {
    long r = r0;
    if (type == GGML_TYPE_Q8_0) {
        for (; r + 4 <= r1; r += 4) vrows_dec(GGML_TYPE_Q8_0, 4, wd + (size_t)r * rowb, rowb, xq, K, y + r);
        for (; r < r1; r++) vrows_dec(GGML_TYPE_Q8_0, 1, wd + (size_t)r * rowb, rowb, xq, K, y + r);
    } else {
        for (; r + 4 <= r1; r += 4) vrows_dec(GGML_TYPE_Q4_0, 4, wd + (size_t)r * rowb, rowb, xq, K, y + r);
        for (; r < r1; r++) vrows_dec(GGML_TYPE_Q4_0, 1, wd + (size_t)r * rowb, rowb, xq, K, y + r);
    }
}

// ---- AVX-512 VNNI: q8_0 and q4_0 weights in strips of 16 rows -------------------
//
// In a strip (mm_to_strips) one 64-byte load holds quad g of a block for 16
// rows, the values made unsigned, and one vpdpbusd multiplies it by token
// t's quad g broadcast from the packed activations ({1to16}): 16 rows ×
// 4 values of one token in one instruction, from one load of the token's
// 4 bytes. The rows' tiles (vtile_q8s) broadcast each row's quad instead,
// against the 8 tokens: 8 rows a 256-bit vpdpbusd, one load each. Each
// int32 sum starts at the token's −128·Σx for q8_0 (its values stored
// + 128) or −8·Σx for q4_0 (nibble − 8), packed by mm_prepare, so it ends
// at Σ x·w; the float steps per block (convert, scale d_w·d_x, add) are the
// other kernels', so 8 tokens come out bit-identical to vtile's. A strip is
// one contiguous stream: the weights of a thread's rows are read in address
// order, by stile8 prefetched a fixed distance ahead.
#define STRIP_PF8 8192   // bytes ahead stile8 prefetches into L2

// y[t·N + 0..15] for the nt (1..8) real tokens of one packed group at grp,
// for the strip at sp (nb blocks); pf: prefetch ahead (the strip's first
// pass; later groups find it in cache). The loop in asm, so each token's
// quad is the {1to16} operand of its vpdpbusd: compiled, every quad took a
// vpbroadcastd of its own (same-process rounds, one group, K = 768, rows in
// L3: 1.10x as asm; from DRAM 0.98-1.07x, within the noise). The rows 8
// KiB ahead go to L2 (prefetcht1): 8 sequences of stories110M Q8_0 ran
// 1.02-1.11x against 2 KiB ahead into L1 (4 KiB ahead into L2 1.03-1.05x,
// 16-32 KiB 1.04-1.06x; 1, 4 and 8 KiB into L1 no better); TinyLlama and
// stories15M Q8_0 and prefill 0.99-1.03x.
// q8_0: step g, one 64-byte load (quad g of the 16 rows) against quad g of
// each token.
#define ST_STEP(g)                                                                                                  \
    "vmovdqu64 32+" #g "*64(%[wb]), %%zmm24\n\t"                                                                    \
    "vpdpbusd " #g "*32+0(%[xb])%{1to16%}, %%zmm24, %%zmm16\n\tvpdpbusd " #g "*32+4(%[xb])%{1to16%}, %%zmm24, %%zmm17\n\t" \
    "vpdpbusd " #g "*32+8(%[xb])%{1to16%}, %%zmm24, %%zmm18\n\tvpdpbusd " #g "*32+12(%[xb])%{1to16%}, %%zmm24, %%zmm19\n\t" \
    "vpdpbusd " #g "*32+16(%[xb])%{1to16%}, %%zmm24, %%zmm20\n\tvpdpbusd " #g "*32+20(%[xb])%{1to16%}, %%zmm24, %%zmm21\n\t" \
    "vpdpbusd " #g "*32+24(%[xb])%{1to16%}, %%zmm24, %%zmm22\n\tvpdpbusd " #g "*32+28(%[xb])%{1to16%}, %%zmm24, %%zmm23\n\t"
// q4_0 in strips: a block's 64-byte group h holds bytes 4h..4h+3 of the 16
// rows, whose low nibbles are quad h of the values and high nibbles quad
// h + 4; each load serves two vpdpbusd once its nibbles are split (a shift
// and two ands with the 0x0f bytes in zmm27). The sums start at the
// token's −8·Σx.
#define S4_STEP(h)                                                                                                   \
    "vmovdqu64 32+" #h "*64(%[wb]), %%zmm24\n\tvpsrlw $4, %%zmm24, %%zmm25\n\t"                                      \
    "vpandd %%zmm27, %%zmm24, %%zmm24\n\tvpandd %%zmm27, %%zmm25, %%zmm25\n\t"                                     \
    "vpdpbusd " #h "*32+0(%[xb])%{1to16%}, %%zmm24, %%zmm16\n\tvpdpbusd " #h "*32+4(%[xb])%{1to16%}, %%zmm24, %%zmm17\n\t" \
    "vpdpbusd " #h "*32+8(%[xb])%{1to16%}, %%zmm24, %%zmm18\n\tvpdpbusd " #h "*32+12(%[xb])%{1to16%}, %%zmm24, %%zmm19\n\t" \
    "vpdpbusd " #h "*32+16(%[xb])%{1to16%}, %%zmm24, %%zmm20\n\tvpdpbusd " #h "*32+20(%[xb])%{1to16%}, %%zmm24, %%zmm21\n\t" \
    "vpdpbusd " #h "*32+24(%[xb])%{1to16%}, %%zmm24, %%zmm22\n\tvpdpbusd " #h "*32+28(%[xb])%{1to16%}, %%zmm24, %%zmm23\n\t" \
    "vpdpbusd " #h "*32+128(%[xb])%{1to16%}, %%zmm25, %%zmm16\n\tvpdpbusd " #h "*32+132(%[xb])%{1to16%}, %%zmm25, %%zmm17\n\t" \
    "vpdpbusd " #h "*32+136(%[xb])%{1to16%}, %%zmm25, %%zmm18\n\tvpdpbusd " #h "*32+140(%[xb])%{1to16%}, %%zmm25, %%zmm19\n\t" \
    "vpdpbusd " #h "*32+144(%[xb])%{1to16%}, %%zmm25, %%zmm20\n\tvpdpbusd " #h "*32+148(%[xb])%{1to16%}, %%zmm25, %%zmm21\n\t" \
    "vpdpbusd " #h "*32+152(%[xb])%{1to16%}, %%zmm25, %%zmm22\n\tvpdpbusd " #h "*32+156(%[xb])%{1to16%}, %%zmm25, %%zmm23\n\t"
// Token t's sum converted and scaled (its scale times the rows', zmm28) into f.
#define ST_F(t, a, f)                                                                                    \
    "vmulps 256+" #t "*4(%[xb])%{1to16%}, %%zmm28, %%zmm26\n\tvcvtdq2ps %%" a ", %%" a "\n\t"            \
    "vfmadd231ps %%zmm26, %%" a ", %%" f "\n\t"
#define ST_PF(o) "prefetcht1 " #o "+8192(%[wb])\n\t"
#define ST_PF8 ST_PF(0) ST_PF(64) ST_PF(128) ST_PF(192) ST_PF(256) ST_PF(320) ST_PF(384) ST_PF(448) ST_PF(512)
#define ST_PF4 ST_PF(0) ST_PF(64) ST_PF(128) ST_PF(192) ST_PF(256)
// The loop over the blocks: PF (prefetches), each token's sum started at its
// packed offset, STEPS, the float step, BLOCK bytes on to the next block.
#define ST_ASM(PF, STEPS, BLOCK)                                                                                      \
    __asm__ volatile(                                                                                                 \
        "vpbroadcastd %[m], %%zmm27\n\t"                                                                              \
        "vpxord %%zmm0, %%zmm0, %%zmm0\n\tvpxord %%zmm1, %%zmm1, %%zmm1\n\tvpxord %%zmm2, %%zmm2, %%zmm2\n\t"            \
        "vpxord %%zmm3, %%zmm3, %%zmm3\n\tvpxord %%zmm4, %%zmm4, %%zmm4\n\tvpxord %%zmm5, %%zmm5, %%zmm5\n\t"            \
        "vpxord %%zmm6, %%zmm6, %%zmm6\n\tvpxord %%zmm7, %%zmm7, %%zmm7\n\t"                                             \
        "1:\n\t" PF                                                                                                   \
        "vpbroadcastd 288(%[xb]), %%zmm16\n\tvpbroadcastd 292(%[xb]), %%zmm17\n\tvpbroadcastd 296(%[xb]), %%zmm18\n\t"   \
        "vpbroadcastd 300(%[xb]), %%zmm19\n\tvpbroadcastd 304(%[xb]), %%zmm20\n\tvpbroadcastd 308(%[xb]), %%zmm21\n\t"   \
        "vpbroadcastd 312(%[xb]), %%zmm22\n\tvpbroadcastd 316(%[xb]), %%zmm23\n\t" STEPS                                \
        "vcvtph2ps (%[wb]), %%zmm28\n\t"                                                                              \
        ST_F(0, "zmm16", "zmm0") ST_F(1, "zmm17", "zmm1") ST_F(2, "zmm18", "zmm2") ST_F(3, "zmm19", "zmm3")           \
        ST_F(4, "zmm20", "zmm4") ST_F(5, "zmm21", "zmm5") ST_F(6, "zmm22", "zmm6") ST_F(7, "zmm23", "zmm7")           \
        "add $" BLOCK ", %[wb]\n\tadd $320, %[xb]\n\tdec %[n]\n\tjnz 1b\n\t"                                          \
        "vmovaps %%zmm0, (%[res])\n\tvmovaps %%zmm1, 64(%[res])\n\tvmovaps %%zmm2, 128(%[res])\n\t"                      \
        "vmovaps %%zmm3, 192(%[res])\n\tvmovaps %%zmm4, 256(%[res])\n\tvmovaps %%zmm5, 320(%[res])\n\t"                  \
        "vmovaps %%zmm6, 384(%[res])\n\tvmovaps %%zmm7, 448(%[res])\n\t"                                                 \
        : [wb] "+r"(wb), [xb] "+r"(xb), [n] "+r"(n)                                                                      \
        : [res] "r"(&res[0][0]), [m] "m"(strip_low_nibbles)                                                              \
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20",   \
          "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "memory", "cc")
#define ST_Q8 ST_STEP(0) ST_STEP(1) ST_STEP(2) ST_STEP(3) ST_STEP(4) ST_STEP(5) ST_STEP(6) ST_STEP(7)
#define ST_Q4 S4_STEP(0) S4_STEP(1) S4_STEP(2) S4_STEP(3)
_Static_assert(STRIP_PF8 == 8192 && STRIP_BLOCK == 544 && STRIP_BLOCK4 == 288 && PK4 == 320,
               "the strip kernels' asm constants");
static const int32_t strip_low_nibbles = 0x0f0f0f0f;
AVX512VNNI_TARGET static void stile8(enum ggml_type type, const uint8_t *sp, int64_t nb, const uint8_t *grp, float *y,
                                     int64_t N, int nt, bool pf) {
    _Alignas(64) float res[8][16];
    const uint8_t *wb = sp, *xb = grp;
    int64_t n = nb;
    if (type == GGML_TYPE_Q8_0) {
        if (pf) ST_ASM(ST_PF8, ST_Q8, "544");
        else ST_ASM("", ST_Q8, "544");
    } else {
        if (pf) ST_ASM(ST_PF4, ST_Q4, "288");
        else ST_ASM("", ST_Q4, "288");
    }
    for (int t = 0; t < nt; t++) _mm512_storeu_ps(y + t * N, _mm512_load_ps(res[t]));
}
#undef ST_STEP
#undef S4_STEP
#undef ST_F
#undef ST_PF
#undef ST_PF8
#undef ST_PF4
#undef ST_ASM
#undef ST_Q8
#undef ST_Q4

// One token (decode): the block's quads in 4 chains of int32 sums, added
// (exactly) before the float step, so the results are those of stile8.
// A thread's rows are one stream in 2 MiB pages, which the hardware
// prefetcher follows; whether a software prefetch on top pays depends on
// the memory's state (mm_set_decode_prefetch). With it off, same-process
// rounds against 2 KiB ahead into L1 and 4 KiB into L2 (every line of each
// block) once gave stories110M Q8_0 decode 1.15-1.18x, TinyLlama Q4_0
// 1.03-1.05x; in another state of the same host, MM_DECODE_PF bytes ahead
// into L2 gave TinyLlama Q4_0 1.33-1.41x, TinyLlama Q8_0 1.14-1.15x and
// stories110M Q8_0 1.17x against none, stories110M Q4_0 0.98x, and
// stories15M Q8_0 (in L3) 0.95x.
static _Atomic int decode_pf = 1;

void mm_set_decode_prefetch(bool on) { atomic_store_explicit(&decode_pf, on, memory_order_relaxed); }
bool mm_decode_prefetch(void) { return atomic_load_explicit(&decode_pf, memory_order_relaxed); }

AVX512VNNI_TARGET static ALWAYS_INLINE void stile1(enum ggml_type type, const uint8_t *sp, int64_t nb,
                                                   const uint8_t *xq, float *y, bool pf) {
    const bool q8 = type == GGML_TYPE_Q8_0;
    const int64_t bs = q8 ? STRIP_BLOCK : STRIP_BLOCK4;
    __m512 f = _mm512_setzero_ps();
    const float *xd = (const float *)(xq + nb * 32);
    const int32_t *xneg = (const int32_t *)(xq + nb * 36);
    const __m512i m = _mm512_set1_epi8(0x0f);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = sp + b * bs, *xb = xq + b * 32;
        if (pf)
            for (int o = 0; o < (int)bs; o += 64) _mm_prefetch((const char *)wb + MM_DECODE_PF + o, _MM_HINT_T1);
        __m512i a[4];
        a[0] = _mm512_set1_epi32(xneg[b]);
        PRAGMA_UNROLL(3) for (int c = 1; c < 4; c++) a[c] = _mm512_setzero_si512();
        if (q8) {
            PRAGMA_UNROLL(8) for (int g = 0; g < 8; g++)
                a[g % 4] = _mm512_dpbusd_epi32(a[g % 4], _mm512_loadu_si512((const void *)(wb + 32 + 64 * g)),
                                               _mm512_set1_epi32(*(const int32_t *)(xb + 4 * g)));
        } else {
            PRAGMA_UNROLL(4) for (int h = 0; h < 4; h++) {   // low nibbles quad h, high quad h + 4
                const __m512i v = _mm512_loadu_si512((const void *)(wb + 32 + 64 * h));
                a[h] = _mm512_dpbusd_epi32(a[h], _mm512_and_si512(v, m), _mm512_set1_epi32(*(const int32_t *)(xb + 4 * h)));
                a[h] = _mm512_dpbusd_epi32(a[h], _mm512_and_si512(_mm512_srli_epi16(v, 4), m),
                                           _mm512_set1_epi32(*(const int32_t *)(xb + 16 + 4 * h)));
            }
        }
        const __m512i s = _mm512_add_epi32(_mm512_add_epi32(a[0], a[1]), _mm512_add_epi32(a[2], a[3]));
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)wb));
        f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(xd[b])), f);
    }
    _mm512_storeu_ps(y, f);
}

// Rows [r0, r1) (whole strips) for the T tokens packed at pack.
AVX512VNNI_TARGET static void srun(enum ggml_type type, const uint8_t *wd, const uint8_t *pack, int64_t K, int64_t T,
                                   int64_t N, long r0, long r1, float *y) {
    const bool q8 = type == GGML_TYPE_Q8_0;
    const int64_t nb = K / 32, gb = nb * PK4;
    const size_t sb = (size_t)(nb * (q8 ? STRIP_BLOCK : STRIP_BLOCK4));
    const bool pf = T == 1 && mm_decode_prefetch();
    for (long r = r0; r < r1; r += 16) {
        const uint8_t *sp = wd + (size_t)(r / 16) * sb;
        if (T == 1) {
            if (q8) {
                if (pf) stile1(GGML_TYPE_Q8_0, sp, nb, pack, y + r, true);
                else stile1(GGML_TYPE_Q8_0, sp, nb, pack, y + r, false);
            } else if (pf) stile1(GGML_TYPE_Q4_0, sp, nb, pack, y + r, true);
            else stile1(GGML_TYPE_Q4_0, sp, nb, pack, y + r, false);
            continue;
        }
        for (int64_t g = 0; g * 8 < T; g++) {
            const int nt = T - g * 8 < 8 ? (int)(T - g * 8) : 8;
            stile8(type, sp, nb, pack + g * gb, y + g * 8 * N + r, N, nt, g == 0);
        }
    }
}

// ---- AVX2: float weights -------------------------------------------------------

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

// ---- AVX-512: float weights ------------------------------------------------------


AVX512_TARGET static inline __m512 load16_avx512(enum ggml_type type, const void *row, int64_t k) {
    if (type == GGML_TYPE_F32) return _mm512_loadu_ps((const float *)row + k);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k));
    if (type == GGML_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// The k..k+n-1 values (n < 16) of a row, the other lanes zero: masked loads
// read nothing past the row.
AVX512_TARGET static inline __m512 load_tail_avx512(enum ggml_type type, const void *row, int64_t k, __mmask16 m) {
    if (type == GGML_TYPE_F32) return _mm512_maskz_loadu_ps(m, (const float *)row + k);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)row + k);
    if (type == GGML_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Row tails (K not a multiple of 16) in masked vectors: rows of 8 values
// (a tokenizer-sized test model's classifier, 32000 rows) went through a
// scalar f16 conversion per value and took most of its prompt's time.
AVX512_TARGET static void dot_f_avx512(enum ggml_type type, const void *row, const float *const *x, int nt,
                                       int64_t K, float *out) {
    __m512 acc[TILE_T];
    for (int t = 0; t < TILE_T; t++) acc[t] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 w = load16_avx512(type, row, k);
        for (int t = 0; t < nt; t++) acc[t] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x[t] + k), acc[t]);
    }
    if (k < K) {
        const __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
        __m512 w = load_tail_avx512(type, row, k, m);
        for (int t = 0; t < nt; t++) acc[t] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, x[t] + k), acc[t]);
    }
    for (int t = 0; t < nt; t++) out[t] = _mm512_reduce_add_ps(acc[t]);
}

// ---- dispatch ----------------------------------------------------------------

typedef void (*qrun_fn)(enum ggml_type, const uint8_t *, size_t, const uint8_t *, int64_t, int64_t, int64_t,
                        int64_t, long, long, float *);
typedef void (*dot_f_fn)(enum ggml_type, const void *, const float *const *, int, int64_t, float *);

static void qrun_scalar(enum ggml_type type, const uint8_t *wd, size_t rowb, const uint8_t *xq0, int64_t st,
                        int64_t K, int64_t T, int64_t N, long r0, long r1, float *y) {
    for (int64_t t = 0; t < T; t++)
        for (long r = r0; r < r1; r++) y[t * N + r] = dot_q_scalar(type, wd + (size_t)r * rowb, xq0 + t * st, K);
}

static void dot_f_scalar_tile(enum ggml_type type, const void *row, const float *const *x, int nt, int64_t K,
                              float *out) {
    for (int t = 0; t < nt; t++) out[t] = dot_f32_scalar(type, row, x[t], K);
}

static qrun_fn pick_qrun(enum cpu_level lv) {
    const cpu_features *f = cpu_get_features();
    if (lv >= CPU_LEVEL_AVX512 && f->avx512_vnni) return qrun_avx512vnni;
    if (lv >= CPU_LEVEL_AVX2 && f->avx_vnni) return qrun_avxvnni;
    if (lv >= CPU_LEVEL_AVX2) return qrun_avx2;
    return qrun_scalar;
}

// Rows [r0, r1) of y = x · Wᵀ for all T tokens.
static void compute_rows(const mm_weight *w, const float *x, const void *wdata, int64_t T, float *y, long r0,
                         long r1) {
    if (kq_type(w->type)) { kq_compute_rows(w, wdata, T, y, r0, r1); return; }   // kquant.c
    const enum cpu_level lv = cpu_level();
    const int64_t K = w->K, N = w->N;
    const size_t rowb = (size_t)ggml_nbytes(w->type, K);
    if (r0 >= r1) return;
    if (w->strips) {
        if (strip_vnni(w)) srun(w->type, w->data, wdata, K, T, N, r0, r1, y);
        else
            for (int64_t t = 0; t < T; t++)
                for (long r = r0; r < r1; r++)
                    y[t * N + r] = dot_strip_scalar(w->type, w->data, r, (const uint8_t *)wdata + t * xq_stride(K), K);
        return;
    }
    if (is_quant(w->type)) {
        if (use_pack(T)) {
            if (cpu_vnni512()) vrun_avx512vnni(w->type, w->data, rowb, w->bsum, wdata, K, T, N, r0, r1, y);
            else prun_avx2(w->type, w->data, rowb, wdata, K, T, N, r0, r1, y);
            return;
        }
        const qrun_fn fn = pick_qrun(lv);
        if (T == 1 && fn == qrun_avx512vnni)
            vrun_dec(w->type, w->data, rowb, wdata, K, r0, r1, y);
        else if (T == 1 && w->type == GGML_TYPE_Q8_0 && fn == qrun_avx2)
            qrun1_q8_avx2(w->data, rowb, wdata, xq_stride(K), K, N, r0, r1, y);
        else fn(w->type, w->data, rowb, wdata, xq_stride(K), K, T, N, r0, r1, y);
        return;
    }
    dot_f_fn fn = dot_f_scalar_tile;
    if (lv >= CPU_LEVEL_AVX512) fn = dot_f_avx512;
    else if (lv >= CPU_LEVEL_AVX2) fn = dot_f_avx2;
    float out[TILE_T];
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

void mm_compute(const mm_weight *w, const float *x, const void *wdata, int64_t T, float *y, int ith, int nth) {
    if (kq_type(w->type)) { kq_compute(w, wdata, T, y, ith, nth); return; }   // kquant.c
    long r0, r1;
    tp_split(w->N, ith, nth, w->strips ? 16 : 4, &r0, &r1);
    compute_rows(w, x, wdata, T, y, r0, r1);
}

// Rows per work item of a shared product: about 8 items per thread, in whole
// tiles, and at least 32 KiB of weights per token of the batch, so drawing
// an item (an atomic, on a line of the thread's own unless it is taking
// over another's share) stays a small fraction of computing it. (Per token: a fixed 32 KiB gave a 288-row product of a small model 3
// items, 108 + 108 + 72 rows, and two threads split a 128-token prefill
// 180 : 108.) Items are a multiple of 48 rows (lcm of the 3- and 4-row
// tiles and of 16 floats), so no line of a token's output row is written by
// two threads, when that still leaves at least two items per thread; else a
// multiple of 12. 48-row items ran prefill of a 288-wide model 1.02x on 2
// threads (paired rounds in one process), where 12- and 24-row items had two
// threads writing the same lines.
static long chunk_rows(const mm_weight *w, int64_t T, int nth) {
    const long rowb = (long)ggml_nbytes(w->type, w->K);
    long rows = (long)w->N / (8L * nth);
    const int64_t per_row = (int64_t)rowb * (T > 0 ? T : 1);
    const long min_rows = (long)((32 * 1024 + per_row - 1) / per_row);
    if (rows < min_rows) rows = min_rows;
    const long r48 = (rows + 47) / 48 * 48;
    if (w->strips) return (long)w->N / r48 >= 2L * nth ? r48 : (rows + 15) / 16 * 16;   // whole strips
    return (long)w->N / r48 >= 2L * nth ? r48 : (rows + 11) / 12 * 12;
}

// Thread t owns the t-th share of the items, in row order, and draws them
// from its own counter; then it takes what is left of the other shares from
// theirs. One counter for all (the items dealt round-robin as threads came)
// moved the counter's line between the cores at every item, and gave each
// thread rows scattered in item-sized pieces, so the decode tiles' prefetch
// past an item's end fetched rows another thread would read, and each
// item's first rows came unprefetched. Same-process rounds, 2 threads:
// stories110M Q8_0 decode 1.24-1.26x, with 8 sequences 1.11-1.15x,
// stories110M Q4_0 1.15x, stories15M Q8_0 1.09x, TinyLlama Q8_0 1.07x,
// TinyLlama Q4_0 1.05x, prefill (128 tokens) 1.01-1.05x. K-quant products
// (kq_compute_rows) had a static split: drawing items instead ran 0.99-1.02x
// on a quiet host and 1.06x with a busy loop on one of the two CPUs.
void mm_compute_shared(const mm_weight *w, const float *x, const void *wdata, int64_t T, float *y,
                       _Atomic int *next, int ith, int nth) {
    if (!next || nth == 1) { mm_compute(w, x, wdata, T, y, ith, nth); return; }
    const long step = chunk_rows(w, T, nth);
    const long items = (w->N + step - 1) / step;
    for (int v = 0; v < nth; v++) {   // this thread's share first, then the others' in turn
        const int t = (ith + v) % nth;
        const long lo = items * t / nth, hi = items * (t + 1) / nth;
        _Atomic int *c = next + (size_t)t * TP_COUNTER_STRIDE;
        for (;;) {
            const long i = lo + (long)atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
            if (i >= hi) break;
            const long r0 = i * step;
            compute_rows(w, x, wdata, T, y, r0, r0 + step < w->N ? r0 + step : (long)w->N);
        }
    }
}

void mm_compute_shared_pair(const mm_weight *a, const mm_weight *b, const float *x, const void *wdata, int64_t T,
                            float *ya, float *yb, mm_rows_fn done, void *arg, _Atomic int *halves, _Atomic int *next,
                            int ith, int nth) {
    const bool shared = next && nth > 1;
    const long N = (long)a->N, step = (chunk_rows(a, T, nth) + 31) / 32 * 32, chunks = (N + step - 1) / step;
    for (int v = 0; v < (shared ? nth : 1); v++) {   // as mm_compute_shared: a's chunks of a share, then b's
        const int t = (ith + v) % nth;
        const long lo = chunks * t / nth, hi = chunks * (t + 1) / nth, n = hi - lo;
        _Atomic int *c = shared ? next + (size_t)t * TP_COUNTER_STRIDE : NULL;
        for (long j = 0;; j++) {
            const long i = c ? (long)atomic_fetch_add_explicit(c, 1, memory_order_relaxed) : j;
            if (i >= 2 * n) break;
            const long k = lo + (i < n ? i : i - n), r0 = k * step, r1 = r0 + step < N ? r0 + step : N;
            compute_rows(i < n ? a : b, x, wdata, T, i < n ? ya : yb, r0, r1);
            // The second half of a chunk to finish calls done: a chunk's count
            // goes up by 2 a call, so its parity tells the halves apart.
            if (atomic_fetch_add_explicit(&halves[k], 1, memory_order_acq_rel) & 1) done(arg, r0, r1);
        }
    }
}

void mm_pf_init(mm_pf_ctl *p) {
    memset(p, 0, sizeof *p);
    p->on = true;
    p->since = MM_PF_PERIOD - 2;   // the first pair soon
}

bool mm_pf_arm(const mm_pf_ctl *p) {
    if (p->phase == 1) return p->other_first ? !p->on : p->on;
    if (p->phase == 2) return p->other_first ? p->on : !p->on;
    return p->on;
}

double mm_pf_median(const mm_pf_ctl *p) {
    double r[MM_PF_PAIRS];
    const int n = p->n;
    if (n == 0) return 0;
    memcpy(r, p->ratio, sizeof(double) * (size_t)n);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && r[j] < r[j - 1]; j--) { const double x = r[j]; r[j] = r[j - 1]; r[j - 1] = x; }
    return n % 2 ? r[n / 2] : (r[n / 2 - 1] + r[n / 2]) / 2;
}

void mm_pf_record(mm_pf_ctl *p, uint64_t ns) {
    if (p->phase == 0) {
        if (++p->since >= MM_PF_PERIOD) {
            p->phase = 1;
            p->other_first = p->pairs % 2 == 0;   // the order alternates: no arm always runs on a warmer cache
        }
        return;
    }
    if (p->phase == 1) {
        p->t_first = ns;
        p->phase = 2;
        return;
    }
    const uint64_t other = p->other_first ? p->t_first : ns, cur = p->other_first ? ns : p->t_first;
    p->phase = 0;
    p->since = 0;
    p->pairs++;
    if (cur == 0 || other == 0) return;
    p->ratio[p->at] = (double)other / (double)cur;
    p->at = (p->at + 1) % MM_PF_PAIRS;
    if (p->n < MM_PF_PAIRS) p->n++;
    if (p->n == MM_PF_PAIRS && mm_pf_median(p) < MM_PF_SWITCH) {   // the other arm is faster: take it, and start counting again
        p->on = !p->on;
        p->switches++;
        p->n = p->at = 0;
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
    size_t len = 0;
    void *buf = NULL;
    if (a.bytes == 0 || reps < 1) return 0.0;
    // In 2 MiB pages where the kernel gives them, as the weights are
    // (llama_load): 3-4% faster to stream than 4 KiB pages on a Zen 4 host,
    // and decode's share of the bandwidth is measured against the best.
    buf = util_huge_alloc(a.bytes, &len, NULL);
    if (!buf && posix_memalign(&buf, 4096, a.bytes) != 0) return 0.0;
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
    if (len) util_huge_free(buf, len); else free(buf);
    return best;
}

// ---- vector multiply-add probe ---------------------------------------------

// 16 independent vpmaddwd + vpaddd pairs per iteration (16 int16 products
// summed in pairs into 8 int32 lanes each: 256 multiply-adds), the operation
// the packed q8_0 kernel is built on. Fixed registers in asm, so nothing is
// hoisted or fused away.
AVX2_TARGET static void madd_probe_loop(uint64_t iters) {
    for (uint64_t n = 0; n < iters; n++)
        __asm__ volatile(
            "vpmaddwd %%ymm8, %%ymm9, %%ymm0\n\tvpaddd %%ymm0, %%ymm4, %%ymm4\n\t"
            "vpmaddwd %%ymm10, %%ymm9, %%ymm1\n\tvpaddd %%ymm1, %%ymm5, %%ymm5\n\t"
            "vpmaddwd %%ymm11, %%ymm9, %%ymm2\n\tvpaddd %%ymm2, %%ymm6, %%ymm6\n\t"
            "vpmaddwd %%ymm12, %%ymm9, %%ymm3\n\tvpaddd %%ymm3, %%ymm7, %%ymm7\n\t"
            "vpmaddwd %%ymm8, %%ymm13, %%ymm0\n\tvpaddd %%ymm0, %%ymm4, %%ymm4\n\t"
            "vpmaddwd %%ymm10, %%ymm13, %%ymm1\n\tvpaddd %%ymm1, %%ymm5, %%ymm5\n\t"
            "vpmaddwd %%ymm11, %%ymm13, %%ymm2\n\tvpaddd %%ymm2, %%ymm6, %%ymm6\n\t"
            "vpmaddwd %%ymm12, %%ymm13, %%ymm3\n\tvpaddd %%ymm3, %%ymm7, %%ymm7\n\t"
            "vpmaddwd %%ymm8, %%ymm14, %%ymm0\n\tvpaddd %%ymm0, %%ymm4, %%ymm4\n\t"
            "vpmaddwd %%ymm10, %%ymm14, %%ymm1\n\tvpaddd %%ymm1, %%ymm5, %%ymm5\n\t"
            "vpmaddwd %%ymm11, %%ymm14, %%ymm2\n\tvpaddd %%ymm2, %%ymm6, %%ymm6\n\t"
            "vpmaddwd %%ymm12, %%ymm14, %%ymm3\n\tvpaddd %%ymm3, %%ymm7, %%ymm7\n\t"
            "vpmaddwd %%ymm8, %%ymm15, %%ymm0\n\tvpaddd %%ymm0, %%ymm4, %%ymm4\n\t"
            "vpmaddwd %%ymm10, %%ymm15, %%ymm1\n\tvpaddd %%ymm1, %%ymm5, %%ymm5\n\t"
            "vpmaddwd %%ymm11, %%ymm15, %%ymm2\n\tvpaddd %%ymm2, %%ymm6, %%ymm6\n\t"
            "vpmaddwd %%ymm12, %%ymm15, %%ymm3\n\tvpaddd %%ymm3, %%ymm7, %%ymm7\n\t"
            ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7");
}

// With AVX-512 VNNI the packed kernels are built on vpdpbusd instead: 16
// independent ones per iteration (32 int8 products summed in fours into 8
// int32 lanes each: 512 multiply-adds; 16 sums in flight cover its latency).
AVX512VNNI_TARGET static void dpbusd_probe_loop(uint64_t iters) {
    for (uint64_t n = 0; n < iters; n++)
        __asm__ volatile(
            "vpdpbusd %%ymm8, %%ymm9, %%ymm0\n\tvpdpbusd %%ymm10, %%ymm9, %%ymm1\n\t"
            "vpdpbusd %%ymm11, %%ymm9, %%ymm2\n\tvpdpbusd %%ymm12, %%ymm9, %%ymm3\n\t"
            "vpdpbusd %%ymm8, %%ymm13, %%ymm4\n\tvpdpbusd %%ymm10, %%ymm13, %%ymm5\n\t"
            "vpdpbusd %%ymm11, %%ymm13, %%ymm6\n\tvpdpbusd %%ymm12, %%ymm13, %%ymm7\n\t"
            "vpdpbusd %%ymm8, %%ymm14, %%ymm16\n\tvpdpbusd %%ymm10, %%ymm14, %%ymm17\n\t"
            "vpdpbusd %%ymm11, %%ymm14, %%ymm18\n\tvpdpbusd %%ymm12, %%ymm14, %%ymm19\n\t"
            "vpdpbusd %%ymm8, %%ymm15, %%ymm20\n\tvpdpbusd %%ymm10, %%ymm15, %%ymm21\n\t"
            "vpdpbusd %%ymm11, %%ymm15, %%ymm22\n\tvpdpbusd %%ymm12, %%ymm15, %%ymm23\n\t"
            ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm16", "xmm17", "xmm18",
                "xmm19", "xmm20", "xmm21", "xmm22", "xmm23");
}

#define PROBE_ITERS 1000000   // 256 M multiply-adds a thread: ~5-10 ms on one core here

static void probe_worker(int ith, int nth, void *p) {
    (void)ith; (void)nth; (void)p;
    if (cpu_vnni512()) dpbusd_probe_loop(PROBE_ITERS / 2);
    else madd_probe_loop(PROBE_ITERS);
}

const char *mm_madd_probe_name(void) {
    if (cpu_level() < CPU_LEVEL_AVX2) return "none";
    return cpu_vnni512() ? "int8 quads, vpdpbusd" : "int16 pairs, vpmaddwd + vpaddd";
}

double mm_measure_madd_peak(struct tp_pool *pool) {
    if (cpu_level() < CPU_LEVEL_AVX2) return 0.0;
    uint64_t t0 = util_now_ns();
    tp_run(pool, probe_worker, NULL);
    double s = (double)(util_now_ns() - t0) / 1e9;
    return s > 0 ? 256.0 * PROBE_ITERS * tp_n_threads(pool) / s : 0.0;
}
