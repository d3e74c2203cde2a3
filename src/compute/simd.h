// simd.h — what the AVX2 kernels of matmul.c, kquant.c and ops.c share: the
// function attribute that compiles one function for AVX2/FMA/F16C (chosen at
// run time, never assumed), the horizontal sum of eight floats, and how far
// ahead the weights are prefetched.
#ifndef LLMSCOPE_SIMD_H
#define LLMSCOPE_SIMD_H

#include <immintrin.h>
#include <stddef.h>

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

AVX2_TARGET static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}


// Software prefetch of weights runs at least this far ahead, in whole rows
// or tiles of `span` bytes (matmul.c has the measurements behind it).
#define PF_MIN_BYTES 4096
static inline size_t pf_ahead(size_t span) {
    const size_t n = (PF_MIN_BYTES + span - 1) / span;
    return span * (n > 1 ? n : 1);
}

#endif
