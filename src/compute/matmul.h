// matmul.h — the matrix products of the forward pass, y = x · Wᵀ, for weights
// in f32, f16, bf16, q8_0, q4_0, q4_k and q6_k (the K-quants in kquant.c),
// with scalar, AVX2 and AVX-512 (VNNI) paths chosen at run time (cpu.h).
// Quantized weights are multiplied by activations quantized on the fly to
// 8-bit blocks (q8_0; q8_K super-blocks for the K-quants), as ggml does.
//
// Shapes: W has N rows of K elements (GGUF ne = {K, N}), row r at
// W + r * ggml_nbytes(type, K); x is (T, K) floats row-major; y is (T, N).
// Kernels follow the {ith, nth, wdata} convention: every thread of a
// tp_run() calls mm_prepare(), then tp_barrier(), then mm_compute(); each
// thread does its own share. No allocation, no locks.
#ifndef LLMSCOPE_MATMUL_H
#define LLMSCOPE_MATMUL_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "../model/gguf.h"

typedef struct mm_weight {
    enum ggml_type type;   // f32, f16, bf16, q8_0, q4_0, q4_k or q6_k
    const void *data;      // (N, K) in `type`
    int64_t K;             // elements per row (a multiple of 32 for block types, 256 for K-quants)
    int64_t N;             // rows
    // q8_0 only, optional: for each tile of 8 rows from row 0 (rows 8i ..
    // 8i + 7) and block b, 32 bytes at bsum + (i·K/32 + b)·32: the 8 rows'
    // −Σ of the block's 32 values (int16), then their scales (f16)
    // (mm_block_sums). With it, batched decode on AVX-512 VNNI reads the
    // weight bytes as they are (matmul.c, vtile_q8s).
    const uint8_t *bsum;
    // q8_0, q4_0, Q4_K and Q6_K: nonzero when the rows are stored in strips of 16
    // (see mm_to_strips) instead of one after the other.
    int strips;
} mm_weight;

// Whether mm_to_strips() would lay w out in strips: a q8_0, q4_0, Q4_K or
// Q6_K weight of a multiple of 16 rows, on a machine whose kernels read strips
// (AVX-512 VNNI).
int mm_strips_wanted(const mm_weight *w);
// Rewrites w's rows in place (data is w->data, writable) as strips of 16:
// strip s (rows 16s .. 16s + 15) takes the bytes rows 16s .. 16s + 15 took,
// and holds for each block b, in 16 blocks' bytes (q8_0 544, q4_0 288) at
// data + (s·K/32 + b)·that, the 16 rows' scales (f16), then for each 4
// bytes g of the block's values 64 bytes: those 4 bytes of the 16 rows.
// For q8_0 they are values 4g .. 4g + 3, made unsigned (+128); for q4_0
// bytes 4g .. 4g + 3 of the nibbles as they are (values 4g .. 4g + 3 in
// the low nibbles, 16 + 4g .. in the high). One 64-byte load then serves
// 16 rows (matmul.c, stile8). Q4_K's and Q6_K's strips hold whole super-blocks
// (kquant.h, kq_to_strips). Sets w->strips. 0, or -1 if the scratch for
// one strip cannot be had (w is then unchanged).
int mm_to_strips(mm_weight *w, void *data);
// The walk every type's rewrite shares: each 16 rows of w (nb blocks of bs
// bytes a row) copied aside, then put() writes block b of the 16 rows
// (the first at rows, the others rowb bytes apart) into the strip's 16·bs
// bytes at out. Sets w->strips; 0, or -1 without the scratch (w unchanged).
typedef void (*mm_strip_put)(enum ggml_type type, uint8_t *out, const uint8_t *rows, size_t rowb);
int mm_strips_walk(mm_weight *w, void *data, int64_t nb, int64_t bs, mm_strip_put put);

// Bytes mm_block_sums() writes for w: 4 per block of the rows in whole
// tiles of 8, for a q8_0 weight when this machine's kernels use them
// (AVX-512 VNNI), else 0.
size_t mm_block_sums_size(const mm_weight *w);
// Fills out (mm_block_sums_size(w) bytes) with the block sums of w.bsum.
void mm_block_sums(const mm_weight *w, uint8_t *out);

// Whether one mm_prepare() serves both weights: the same type, both in
// strips or neither (strips take their activations in another form).
static inline int mm_same_input(const mm_weight *a, const mm_weight *b) {
    return a->type == b->type && !a->strips == !b->strips;
}

// Bytes of scratch ("wdata") the activations of T rows need for this weight type.
size_t mm_wdata_size(enum ggml_type type, int64_t K, int64_t T);

// Converts x (T, K) into the form the kernel reads (q8_0 blocks for quantized
// weights; nothing for float weights). Threads split the T rows.
void mm_prepare(const mm_weight *w, const float *x, int64_t T, void *wdata, int ith, int nth);

// The rows [*t0, *t1) of x that thread ith reads in mm_prepare() (an even
// split of T when the weight needs no conversion). A caller that produces x
// row by row can produce exactly these rows on each thread and call
// mm_prepare() with no barrier in between.
void mm_prepare_rows(const mm_weight *w, int64_t T, int ith, int nth, long *t0, long *t1);

// y (T, N) = x · Wᵀ. Threads split the N rows of W (so each thread streams its
// own slice of the weights once for all T tokens). `x` is the float input and
// `wdata` what mm_prepare() wrote from it.
void mm_compute(const mm_weight *w, const float *x, const void *wdata, int64_t T,
                float *y, int ith, int nth);

// mm_compute() with the rows dealt out in work items from counters all nth
// threads share (tp_shared_counter(): one per thread, zeroed before the
// first of them calls): each thread takes its own share of the items first,
// then what is left of the others', so threads that run ahead take over the
// rows of one that is descheduled. Every thread must call it. NULL `next`:
// the static split of mm_compute().
void mm_compute_shared(const mm_weight *w, const float *x, const void *wdata, int64_t T, float *y,
                       _Atomic int *next, int ith, int nth);

// Whether mm_prepare_range() can write w's input (T rows) in pieces: the
// packed forms of q8_0 and q4_0 weights in strips.
bool mm_prepare_splits(const mm_weight *w, int64_t T);
// Columns [k0, k1) (multiples of 32) of x (T, K) converted where mm_prepare()
// would put them, the same bytes: threads that each produce some columns
// of an input can pack them with no barrier in between.
void mm_prepare_range(const mm_weight *w, const float *x, int64_t T, void *wdata, int64_t k0, int64_t k1);

// Two products of the same input (mm_same_input(), the same N and K, x
// prepared in wdata), drawn in work items as mm_compute_shared: a thread's
// share of the rows in chunks (multiples of 32 rows) of a, then the same
// chunks of b, one stream of weights after the other. Whichever thread
// finishes the second of a chunk's two products calls done(arg, r0, r1),
// so work on those rows of both results (the SwiGLU and the next product's
// packing) needs no barrier. halves: mm_pair_halves(a->N) counters, zeroed
// once when made; each call leaves them as it found them, modulo 2.
typedef void (*mm_rows_fn)(void *arg, long r0, long r1);
static inline size_t mm_pair_halves(int64_t N) { return (size_t)(N + 31) / 32 + 1; }
void mm_compute_shared_pair(const mm_weight *a, const mm_weight *b, const float *x, const void *wdata, int64_t T,
                            float *ya, float *yb, mm_rows_fn done, void *arg, _Atomic int *halves, _Atomic int *next,
                            int ith, int nth);

// The software prefetch of the one-token strip kernels (q8_0 and q4_0 in
// strips, one token): MM_DECODE_PF bytes ahead into L2, or none, the
// hardware prefetcher alone. Which is faster depends on where the weights
// come from and on the memory's state, which on a shared host changes from
// minute to minute (measured on one host: 1.15-1.4x faster with it from
// DRAM in one state, 1.15x slower in another, 0.95x with the weights in
// L3). Process-wide (relaxed); on until set.
#define MM_DECODE_PF 8192
void mm_set_decode_prefetch(bool on);
bool mm_decode_prefetch(void);

// Chooses between the two by measurement (llama_decode keeps one per
// context, for single-token steps): the steps run the arm in use; after
// every MM_PF_PERIOD steps, a pair of steps runs one with each arm (the
// order alternating between pairs), and when the median of the last
// MM_PF_PAIRS pairs' time ratios (other arm / arm in use) is below
// MM_PF_SWITCH, the other arm takes over and the pairs are counted anew. Adjacent steps decode at
// nearly the same depth, so a pair compares like with like; the pairs cost
// one step in MM_PF_PERIOD + 2 at the slower arm.
#define MM_PF_PERIOD 16
#define MM_PF_PAIRS 5
#define MM_PF_SWITCH 0.95
typedef struct mm_pf_ctl {
    bool on;              // the arm in use
    bool other_first;     // the pair in progress runs the other arm first
    int since, phase;     // steps since the last pair; 0, or 1/2: the pair's first/second step comes next
    int n, at, pairs, switches;
    uint64_t t_first;
    double ratio[MM_PF_PAIRS];
} mm_pf_ctl;
void mm_pf_init(mm_pf_ctl *p);
bool mm_pf_arm(const mm_pf_ctl *p);            // the arm the next step runs
void mm_pf_record(mm_pf_ctl *p, uint64_t ns);  // that step's time
double mm_pf_median(const mm_pf_ctl *p);       // of the ratios kept (0: none yet)

// Convenience for single-threaded callers and tests: prepare + compute on one
// thread, allocating scratch internally. Returns 0, -1 on allocation failure.
int mm_simple(const mm_weight *w, const float *x, int64_t T, float *y);

// Memory read bandwidth, measured on the pool by streaming a buffer of `bytes`
// (larger than the caches; held in 2 MiB pages where the kernel gives them,
// as loaded weights are) `reps` times; returns the best, in bytes per second.
struct tp_pool;
double mm_measure_read_bw(struct tp_pool *pool, size_t bytes, int reps);

// The rate of the pool's threads at the independent 256-bit integer
// multiply-adds the packed q8_0 prefill kernel issues (vpmaddwd + vpaddd on
// int16 pairs; vpdpbusd on int8 quads where AVX-512 VNNI is used), in
// multiply-adds per second, from one short run (~10 ms) on every thread; 0
// without AVX2. It is the machine's speed at the moment: on a virtual machine
// whose core is shared with another guest's thread it drops by up to half.
double mm_measure_madd_peak(struct tp_pool *pool);
// Which instruction mm_measure_madd_peak times, for reports.
const char *mm_madd_probe_name(void);

#endif
