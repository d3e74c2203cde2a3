// kquant.h — ggml's K-quant weight formats Q4_K and Q6_K (super-blocks of
// 256 values, bit-compatible with llama.cpp files): block layouts, reference
// quantizers and dequantizers, and the matrix products y = x · Wᵀ for such
// weights, which matmul.c hands over to (the same {ith, nth, wdata}
// contract as mm_prepare / mm_compute). Pure functions; no allocation, no
// locks; thread-safe.
//
// Activations are quantized on the fly to 8-bit super-blocks of 256 values
// (ggml's Q8_K: one f32 scale, int16 sums of every 16 values), so a weight
// super-block meets one activation super-block in integer arithmetic.
#ifndef LLMSCOPE_KQUANT_H
#define LLMSCOPE_KQUANT_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "matmul.h"
#include "quant.h"

#define QK_K 256

// value = d·sc_j·q − dmin·m_j for q in 0..15, in 8 sub-blocks j of 32 values.
// scales[12] packs the 6-bit sc_j and m_j: bytes 0..3 hold sc_0..3 in their
// low 6 bits, bytes 4..7 hold m_0..3; bytes 8..11 hold the low 4 bits of
// sc_4..7 (low nibble) and m_4..7 (high nibble), whose top 2 bits sit in the
// top 2 bits of bytes 0..3 (sc) and 4..7 (m). qs: 4 chunks of 64 values,
// 32 bytes each; value l of a chunk is the low nibble of byte l, value
// 32 + l the high nibble.
typedef struct {
    fp16_t d;              // super-block scale of the sub-block scales
    fp16_t dmin;           // super-block scale of the sub-block mins
    uint8_t scales[12];    // 6-bit sub-block scales and mins, packed as above
    uint8_t qs[QK_K / 2];  // 4-bit values
} block_q4_K;              // 144 bytes: 4.5 bits per value

// value = d·scales[i/16]·(q − 32) for q in 0..63. Each half of 128 values
// uses 64 bytes of ql and 32 of qh: value l (0..31) of the half is
// ql[l] & 15 with bits 0-1 of qh[l] on top, value 32 + l is ql[32 + l] & 15
// with bits 2-3, value 64 + l is ql[l] >> 4 with bits 4-5, value 96 + l is
// ql[32 + l] >> 4 with bits 6-7.
typedef struct {
    uint8_t ql[QK_K / 2];  // low 4 bits
    uint8_t qh[QK_K / 4];  // high 2 bits
    int8_t scales[QK_K / 16]; // 8-bit scale of every 16 values
    fp16_t d;              // super-block scale
} block_q6_K;              // 210 bytes: 6.5625 bits per value

// The activation form (ggml's block_q8_K): value = d·qs[i].
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];  // Σ qs over each 16 values
} block_q8_K;              // 292 bytes

_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K layout");
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K layout");
_Static_assert(sizeof(block_q8_K) == 292, "block_q8_K layout");

static inline bool kq_type(enum ggml_type t) { return t == GGML_TYPE_Q4_K || t == GGML_TYPE_Q6_K; }

// Reference codecs over n values (n a multiple of 256; blocks are independent).
// The quantizers are simpler than llama.cpp's search (see docs/engine.md) but
// write the same format.
void quantize_row_q4_K(const float *x, block_q4_K *y, int64_t n);
void quantize_row_q6_K(const float *x, block_q6_K *y, int64_t n);
void dequantize_row_q4_K(const block_q4_K *x, float *y, int64_t n);
void dequantize_row_q6_K(const block_q6_K *x, float *y, int64_t n);
// Activations: scalar reference (the AVX2 quantizer is bit-identical).
void quantize_row_q8_K(const float *x, block_q8_K *y, int64_t n);

// The matmul.h contract for K-quant weights. Threads split the T activation
// rows in kq_prepare (as kq_prepare_rows says: whole groups of 8 tokens when
// Q4_K batches are packed) and the N weight rows in kq_compute.
size_t kq_wdata_size(enum ggml_type type, int64_t K, int64_t T);
void kq_prepare_rows(const mm_weight *w, int64_t T, int ith, int nth, long *t0, long *t1);
void kq_prepare(const mm_weight *w, const float *x, int64_t T, void *wdata, int ith, int nth);
void kq_compute(const mm_weight *w, const void *wdata, int64_t T, float *y, int ith, int nth);
// Rows [r0, r1) of the product (any range, whole strips of 16 for a weight
// in strips; kq_compute gives a thread its share by tp_split,
// mm_compute_shared in work items).
void kq_compute_rows(const mm_weight *w, const void *wdata, int64_t T, float *y, long r0, long r1);
// Q4_K and Q6_K in strips of 16 rows (mm_strips_wanted / mm_to_strips call
// these): whether w would be laid out so (a multiple of 16 rows, AVX-512
// VNNI), and the rewrite in place. Strip s takes the bytes of rows
// 16s .. 16s + 15 and holds, per super-block, the 16 rows' blocks side by
// side (kquant.c has the layouts): Q4_K in 2304 bytes, the 16 rows' d
// (f16), their dmin, scale byte k of the 16 rows at 64 + 16k, then 32
// groups of 64 bytes, group g holding qs bytes 4g .. 4g + 3 of the 16 rows;
// Q6_K in 3360 bytes, the 16 d, scale g of the 16 rows at 32 + 16g, then for
// each half h and j < 8 the bytes 4j .. 4j + 3 of ql[64h ..], ql[64h + 32 ..]
// and qh[32h ..] of the 16 rows, 64 bytes each.
int kq_strips_wanted(const mm_weight *w);
int kq_to_strips(mm_weight *w, void *data);

#endif
