// simd.h — what the AVX2 kernels of matmul.c, kquant.c and ops.c share: the
// function attribute that compiles one function for AVX2/FMA/F16C (chosen at
// run time, never assumed), and the horizontal sum of eight floats.
#ifndef LLMSCOPE_SIMD_H
#define LLMSCOPE_SIMD_H

#include <immintrin.h>

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

AVX2_TARGET static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#endif
