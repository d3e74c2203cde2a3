// quant.h — tensor element formats: fp16/bf16 conversion, the Q8_0 and Q4_0
// block layouts (bit-compatible with ggml), row quantization and
// dequantization. Pure functions; thread-safe.
#ifndef LLMSCOPE_QUANT_H
#define LLMSCOPE_QUANT_H

#include <stdint.h>
#include <stddef.h>
#include "../model/gguf.h"

#define QK8_0 32
#define QK4_0 32

typedef uint16_t fp16_t;   // IEEE half, stored bits
typedef uint16_t bf16_t;   // bfloat16, stored bits

typedef struct {
    fp16_t d;              // scale
    int8_t qs[QK8_0];      // value = d * qs[i]
} block_q8_0;              // 34 bytes

typedef struct {
    fp16_t d;              // scale
    uint8_t qs[QK4_0 / 2]; // low nibbles hold elements 0..15, high nibbles 16..31; value = d * (q - 8)
} block_q4_0;              // 18 bytes

_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 layout");
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 layout");

float fp16_to_fp32(fp16_t h);
fp16_t fp32_to_fp16(float f);      // round to nearest even
float bf16_to_fp32(bf16_t h);
bf16_t fp32_to_bf16(float f);      // round to nearest even, NaN kept

// Quantize n floats (n a multiple of 32) exactly as ggml's reference does.
void quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t n);
void quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t n);
// Converts n elements of `type` at src to floats. For block types n must be a
// multiple of the block size; the blocks are read as one flat stream.
void dequantize_row(enum ggml_type type, const void *src, float *dst, int64_t n);
// Converts n floats into `type` (f32, f16, bf16, q8_0, q4_0, q4_k, q6_k; the
// K-quants need n a multiple of 256); dst holds ggml_nbytes(type, n).
void quantize_row(enum ggml_type type, const float *src, void *dst, int64_t n);

#endif
