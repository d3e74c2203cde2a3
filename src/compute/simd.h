// simd.h — what the SIMD kernels of matmul.c, kquant.c and ops.c share: the
// function attributes that compile one function for AVX2/FMA/F16C or for
// AVX-512, with or without VNNI (chosen at run time, never assumed), the
// horizontal sum of eight floats, how far ahead the weights are prefetched,
// and the asm of the 3-row × 2-group tiles.
#ifndef LLMSCOPE_SIMD_H
#define LLMSCOPE_SIMD_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define AVX512VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

AVX2_TARGET static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}


// acc + the 16 dword dot products of w's unsigned bytes with the 4 signed
// bytes at p broadcast ({1to16}): one vpdpbusd with a memory operand. The
// intrinsic with _mm512_set1_epi32 compiles to a vpbroadcastd of its own
// per vpdpbusd, an instruction more per 64 multiply-adds (matmul.c and
// kquant.c measure what that cost).
AVX512VNNI_TARGET static inline __attribute__((always_inline)) __m512i dpbusd_b(__m512i acc, __m512i w, const void *p) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const int32_t *)p));
    return acc;
}

// Software prefetch of weights runs at least this far ahead, in whole rows
// or tiles of `span` bytes (matmul.c has the measurements behind it).
#define PF_MIN_BYTES 4096
static inline size_t pf_ahead(size_t span) {
    const size_t n = (PF_MIN_BYTES + span - 1) / span;
    return span * (n > 1 ? n : 1);
}

// The next `span` bytes at nxt prefetched in address order, a share of
// pf_step bytes (pf_step_of: span over nb steps, in whole lines) at step b.
static inline size_t pf_step_of(size_t span, int64_t nb) {
    return ((span + 63) / 64 + (size_t)nb - 1) / (size_t)nb * 64;
}
static inline __attribute__((always_inline)) void pf_share(const uint8_t *nxt, size_t span, size_t pf_step, int64_t b) {
    for (size_t o = (size_t)b * pf_step, e = o + pf_step; o < e && o < span; o += 64) __builtin_prefetch(nxt + o);
}
// The same share into L2 only (prefetcht1).
static inline __attribute__((always_inline)) void pf_share_l2(const uint8_t *nxt, size_t span, size_t pf_step, int64_t b) {
    for (size_t o = (size_t)b * pf_step, e = o + pf_step; o < e && o < span; o += 64) __builtin_prefetch(nxt + o, 0, 2);
}

// One block of a 3-row × 2-group tile of unsigned nibbles against packed
// int8 quads (matmul.c's q4_0 tile, kquant.c's Q4_K tile), in asm: 8 steps,
// each loading quad-word g of both groups' 8 tokens (xp, xp + xg) and
// broadcasting quad g of each row (wp, wp + ws, wp + 2·ws), 6 vpmaddubsw (the
// nibbles unsigned, the tokens' int8 signed) + 6 vpaddw into int16 sums
// s16[row][group] (8·2·15·127 < 2^15). Every address is a base, an index and
// a constant: 1.12-1.18x the compiled loop for q4_0 at K = 288, 768, 2048
// (1.03x at 5632), 128 tokens. Four rows a tile (4 × 2) was no better:
// 0.95-1.10x of this.
// One step of a 3-row × 2-group asm block, for the nibble tile here and
// matmul.c's int16 tile: load word g of both groups' activations, broadcast
// word g of each row, MUL it with both, ADD the products into a[row][group].
#define T3X2_MUL(MUL, ADD, x, a) MUL " %[" #x "], %[w], %[t]\n\t" ADD " %[t], %[" #a "], %[" #a "]\n\t"
#define T3X2_STEP(g, MUL, ADD)                                                                        \
    "vmovdqa " #g "*32(%[xp]), %[x0]\n\t"                                                             \
    "vmovdqa " #g "*32(%[xp],%[xg]), %[x1]\n\t"                                                       \
    "vpbroadcastd " #g "*4(%[wp]), %[w]\n\t" T3X2_MUL(MUL, ADD, x0, a00) T3X2_MUL(MUL, ADD, x1, a01)  \
    "vpbroadcastd " #g "*4(%[wp],%[ws]), %[w]\n\t" T3X2_MUL(MUL, ADD, x0, a10) T3X2_MUL(MUL, ADD, x1, a11) \
    "vpbroadcastd " #g "*4(%[wp],%[ws],2), %[w]\n\t" T3X2_MUL(MUL, ADD, x0, a20) T3X2_MUL(MUL, ADD, x1, a21)
#define Q4W_STEP(g) T3X2_STEP(g, "vpmaddubsw", "vpaddw")
AVX2_TARGET static inline __attribute__((always_inline)) void block_q4w_3x2(const int32_t *wp, size_t ws, const uint8_t *xp, size_t xg,
                                                    __m256i (*s16)[2]) {
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, x0, x1, w, t;
    __asm__(Q4W_STEP(0) Q4W_STEP(1) Q4W_STEP(2) Q4W_STEP(3) Q4W_STEP(4) Q4W_STEP(5) Q4W_STEP(6) Q4W_STEP(7)
            : [a00] "+x"(a00), [a01] "+x"(a01), [a10] "+x"(a10), [a11] "+x"(a11), [a20] "+x"(a20), [a21] "+x"(a21),
              [x0] "=&x"(x0), [x1] "=&x"(x1), [w] "=&x"(w), [t] "=&x"(t)
            : [wp] "r"(wp), [ws] "r"(ws), [xp] "r"(xp), [xg] "r"(xg)
            : "memory");
    s16[0][0] = a00; s16[0][1] = a01; s16[1][0] = a10; s16[1][1] = a11; s16[2][0] = a20; s16[2][1] = a21;
}


#endif
