// quant.c — element formats (see quant.h): exact fp16/bf16 conversion and
// the Q8_0 / Q4_0 block codecs, bit-compatible with ggml's reference
// quantizers. Pure functions; thread-safe.
#include "quant.h"

#include "kquant.h"

#include <math.h>
#include <string.h>

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float fp16_to_fp32(fp16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return u2f(sign | 0x7f800000u | (man << 13));        // inf / NaN
    if (exp == 0) {
        if (man == 0) return u2f(sign);                                    // ±0
        float v = (float)man * (1.0f / 16777216.0f);                       // subnormal: man · 2^-24
        return sign ? -v : v;
    }
    return u2f(sign | ((exp + 112) << 23) | (man << 13));
}

fp16_t fp32_to_fp16(float f) {
    uint32_t x = f2u(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (fp16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));   // inf / NaN
    if (ax >= 0x477ff000u) return (fp16_t)(sign | 0x7c00);   // rounds past 65504: inf
    if (ax < 0x38800000u) {                                  // below 2^-14: subnormal or zero
        // value / 2^-24, rounded to nearest even
        float v = u2f(ax) * 16777216.0f;
        float r = rintf(v);   // default rounding mode: nearest even
        return (fp16_t)(sign | (uint32_t)r);
    }
    uint32_t e = ((ax >> 23) - 112) << 10;
    uint32_t m = (ax >> 13) & 0x3ff;
    uint32_t rest = ax & 0x1fff;
    uint32_t h = e | m;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;   // may carry into the exponent: correct
    return (fp16_t)(sign | h);
}

float bf16_to_fp32(bf16_t h) { return u2f((uint32_t)h << 16); }

bf16_t fp32_to_bf16(float f) {
    uint32_t x = f2u(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((x >> 16) | 0x40);   // quiet NaN
    x += 0x7fff + ((x >> 16) & 1);
    return (bf16_t)(x >> 16);
}

void quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t n) {
    const int64_t nb = n / QK8_0;
    for (int64_t i = 0; i < nb; i++) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) {
            float v = fabsf(x[i * QK8_0 + j]);
            if (v > amax) amax = v;
        }
        const float d = amax / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++) y[i].qs[j] = (int8_t)roundf(x[i * QK8_0 + j] * id);
    }
}

void quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t n) {
    const int64_t nb = n / QK4_0;
    for (int64_t i = 0; i < nb; i++) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK4_0; j++) {
            const float v = x[i * QK4_0 + j];
            if (fabsf(v) > amax) { amax = fabsf(v); max = v; }
        }
        const float d = max / -8.0f;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const float x0 = x[i * QK4_0 + j] * id;
            const float x1 = x[i * QK4_0 + QK4_0 / 2 + j] * id;
            int q0 = (int)(x0 + 8.5f), q1 = (int)(x1 + 8.5f);
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void dequantize_row(enum ggml_type type, const void *src, float *dst, int64_t n) {
    switch (type) {
    case GGML_TYPE_F32:
        memcpy(dst, src, sizeof(float) * (size_t)n);
        break;
    case GGML_TYPE_F16: {
        const uint8_t *p = src;   // may be unaligned in odd files: read bytes
        for (int64_t i = 0; i < n; i++) dst[i] = fp16_to_fp32((fp16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        break;
    }
    case GGML_TYPE_BF16: {
        const uint8_t *p = src;
        for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_fp32((bf16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        break;
    }
    case GGML_TYPE_Q8_0: {
        const block_q8_0 *b = src;
        for (int64_t i = 0; i < n / QK8_0; i++) {
            const float d = fp16_to_fp32(b[i].d);
            for (int j = 0; j < QK8_0; j++) dst[i * QK8_0 + j] = d * b[i].qs[j];
        }
        break;
    }
    case GGML_TYPE_Q4_0: {
        const block_q4_0 *b = src;
        for (int64_t i = 0; i < n / QK4_0; i++) {
            const float d = fp16_to_fp32(b[i].d);
            for (int j = 0; j < QK4_0 / 2; j++) {
                dst[i * QK4_0 + j] = d * ((b[i].qs[j] & 0x0f) - 8);
                dst[i * QK4_0 + j + QK4_0 / 2] = d * ((b[i].qs[j] >> 4) - 8);
            }
        }
        break;
    }
    case GGML_TYPE_Q4_K: dequantize_row_q4_K(src, dst, n); break;
    case GGML_TYPE_Q6_K: dequantize_row_q6_K(src, dst, n); break;
    default:
        memset(dst, 0, sizeof(float) * (size_t)n);   // unreachable: the reader refuses other types
        break;
    }
}

void quantize_row(enum ggml_type type, const float *src, void *dst, int64_t n) {
    switch (type) {
    case GGML_TYPE_F32: memcpy(dst, src, sizeof(float) * (size_t)n); break;
    case GGML_TYPE_F16: {
        fp16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = fp32_to_fp16(src[i]);
        break;
    }
    case GGML_TYPE_BF16: {
        bf16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = fp32_to_bf16(src[i]);
        break;
    }
    case GGML_TYPE_Q8_0: quantize_row_q8_0(src, dst, n); break;
    case GGML_TYPE_Q4_0: quantize_row_q4_0(src, dst, n); break;
    case GGML_TYPE_Q4_K: quantize_row_q4_K(src, dst, n); break;
    case GGML_TYPE_Q6_K: quantize_row_q6_K(src, dst, n); break;
    default: break;
    }
}
