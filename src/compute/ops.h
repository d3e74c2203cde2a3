// ops.h — the small element-wise and row operations of the llama forward
// pass: RMSNorm, rotary embedding, softmax, SwiGLU, residual add, and
// attention over a KV cache held in f32 or f16. Pure functions over caller memory;
// thread-safe; no allocation.
#ifndef LLMSCOPE_OPS_H
#define LLMSCOPE_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// out[i] = x[i] / sqrt(mean(x²) + eps) * w[i], i < n. out may alias x.
void op_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

// Rotary embedding on adjacent pairs (x[2i], x[2i+1]) of the first n_rot
// dimensions of each of n_heads heads of head_dim values, using
// cs[2i] = cos(pos·θ_i), cs[2i+1] = sin(pos·θ_i) from op_rope_table().
void op_rope(float *x, int n_heads, int head_dim, int n_rot, const float *cs);
// cs (n_rot) for position pos: θ_i = theta^(-2i/n_rot).
void op_rope_table(float *cs, int n_rot, int pos, float theta);

// In-place softmax of x (n), numerically stable.
void op_softmax(float *x, int n);

// out[i] = silu(a[i]) * b[i]; out may be a (in place), else must not
// overlap a or b.
void op_silu_mul(float *out, const float *a, const float *b, int n);

// a[i] += b[i]
void op_add(float *a, const float *b, int n);

// One KV head of a cache: position t's key at element t·stride of k and its
// value at element t·stride of v, stored as f32, or as IEEE half (f16: the
// scores and sums are still taken in f32 after exact widening).
typedef struct op_kv {
    const void *k, *v;
    int64_t stride;   // elements from one position to the next
    bool f16;
} op_kv;

// Bytes of one cache element.
static inline size_t op_kv_elem_size(bool f16) { return f16 ? 2 : sizeof(float); }

// dst (n elements of the cache) = src, converted to f16 (round to nearest
// even) when f16, else copied.
void op_kv_store(void *dst, const float *src, int n, bool f16);

// Into L2 (prefetcht1), the first positions of one KV head's keys and
// values, ahead of attending to them: at most OP_KV_PF_BYTES of each, the
// kernels' own prefetch and the hardware's streaming taking over after.
#define OP_KV_PF_BYTES (16 * 1024)
void op_kv_prefetch(const op_kv *kv, int n_kv, int head_dim);

// One attention head: q (head_dim) against the keys of positions t < n_kv,
// softmax with scale 1/sqrt(head_dim), out (head_dim) = Σ p_t v[t].
// att is scratch of n_kv floats.
void op_attention_head(float *out, const float *q, const op_kv *kv, int n_kv, int head_dim, float *att);

// n_rep query heads that share one KV head (grouped-query attention): head
// r's query at q + r*head_dim, its output at out + r*head_dim, each as
// op_attention_head computes it, with K and V read once for all of them.
// att is scratch of 8*n_kv floats.
void op_attention_group(float *out, const float *q, int n_rep, const op_kv *kv, int n_kv, int head_dim, float *att);

// nq queries against one KV head, each with its own number of positions:
// query r at q + r*q_stride attends to t < n_kv[r] (each n_kv[r] >= 1), its
// output at out + r*out_stride, each as op_attention_head computes it, K and
// V read once for up to 8 of them. For a prompt's consecutive tokens of one
// sequence: every position below the largest n_kv must hold a written key
// and value (masked scores get weight exactly 0). att: 8*max(n_kv) floats.
void op_attention_queries(float *out, int64_t out_stride, const float *q, int64_t q_stride, int nq, const int *n_kv,
                          const op_kv *kv, int head_dim, float *att);

#endif
