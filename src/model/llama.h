// llama.h — the llama-family model (LLaMA 1/2/3, TinyLlama, SmolLM, Mistral
// without sliding window) as GGUF describes it: RMSNorm, RoPE, grouped-query
// attention, SwiGLU, tied or separate output; and an inference context that
// runs one batched forward pass over tokens of several sequences at once
// (continuous batching), each sequence with its own slot of the KV cache.
//
// Thread safety: a llama_model is immutable after llama_load() and may be
// shared by any number of contexts. A llama_ctx is used by one thread at a
// time (llama_decode() itself fans out over the context's compute pool).
#ifndef LLMSCOPE_LLAMA_H
#define LLMSCOPE_LLAMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "gguf.h"
#include "tokenizer.h"
#include "../compute/matmul.h"

typedef struct llama_hparams {
    int32_t n_vocab;
    int32_t n_embd;        // model width ("dim")
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t n_ff;          // SwiGLU hidden width
    int32_t head_dim;      // n_embd / n_head
    int32_t n_rot;         // rotary dimensions per head (<= head_dim)
    int32_t kv_dim;        // n_head_kv * head_dim
    int32_t n_ctx_train;   // context length the model was trained for
    float rms_eps;
    float rope_theta;
} llama_hparams;

typedef struct llama_layer {
    const float *attn_norm;        // (n_embd)
    mm_weight wq;                  // (n_embd -> n_embd)
    mm_weight wk;                  // (n_embd -> kv_dim)
    mm_weight wv;                  // (n_embd -> kv_dim)
    mm_weight wo;                  // (n_embd -> n_embd)
    const float *ffn_norm;         // (n_embd)
    mm_weight w_gate;              // (n_embd -> n_ff)
    mm_weight w_up;                // (n_embd -> n_ff)
    mm_weight w_down;              // (n_ff -> n_embd)
} llama_layer;

typedef struct llama_model {
    llama_hparams hp;
    gguf_ctx *gguf;                // owns the memory the weights point into
    bool mmap_asked;               // llama_load_params.mmap
    tok_vocab *vocab;
    char name[128];                // general.name, or the file's base name
    enum ggml_type ftype;          // the type of most weights (for messages)
    mm_weight tok_embd;            // (n_vocab rows of n_embd)
    const float *output_norm;      // (n_embd)
    mm_weight output;              // (n_embd -> n_vocab); == tok_embd when tied
    llama_layer *layers;           // (n_layer)
    uint64_t n_params;             // elements in all weight tensors
    uint64_t weight_bytes;         // bytes one forward pass reads (each weight once)
    void *bsum_mem;                // the q8_0 weights' block sums (mm_weight.bsum), one region
    size_t bsum_len;
    int n_strips;                  // q8_0/q4_0 weights rewritten in strips of 16 rows (mm_to_strips)
    void **owned;                  // buffers made at load (converted tensors)
    int n_owned;
} llama_model;

// Loads a model. On failure returns NULL with one line in err naming the file
// and the problem (missing tensor, wrong shape, unsupported architecture …).
// The file is read into memory in 2 MiB transparent huge pages
// (GGUF_HOLD_COPY): decode streams every weight once a token, and with 4 KiB
// pages of a file mapping it takes a TLB miss every 4 KiB. In that copy the
// q8_0, q4_0, Q4_K and Q6_K matrices are rewritten in strips of 16 rows where the kernels read
// them (AVX-512 VNNI; mm_to_strips).
llama_model *llama_load(const char *path, char *err, size_t errlen);

typedef struct llama_load_params {
    bool mmap;   // map the file instead (--mmap): starts without a copy, shares the page cache
    bool rows;   // keep the weights in the file's row order (no strips; comparisons, tests)
} llama_load_params;
llama_model *llama_load_with(const char *path, const llama_load_params *p, char *err, size_t errlen);

// How the weights are held, one line for logs and reports: "read into memory,
// 136.6 of 136.6 MiB in 2 MiB pages", "file mapping (--mmap), 4 KiB pages" …
void llama_weights_memory(const llama_model *m, char *buf, size_t n);
// Bytes of the weights' memory in huge pages (0 for a file mapping; -1 when
// /proc/self/smaps cannot be read).
int64_t llama_weights_huge_bytes(const llama_model *m);
void llama_free(llama_model *m);

// Element type of the KV cache. f16 (the default, as in llama.cpp) halves
// the bytes attention reads per position; f32 keeps keys and values exact.
enum llama_kv_type { LLAMA_KV_F16 = 0, LLAMA_KV_F32 = 1 };

typedef struct llama_ctx_params {
    int32_t n_ctx;       // positions per sequence (0 = the model's, capped at 4096)
    int32_t n_seq;       // sequences (KV slots) held at once (>= 1)
    int32_t n_batch;     // most tokens one llama_decode() may carry (>= 1)
    int32_t n_threads;   // compute threads (0 = tp_default_threads())
    const char *cpu_affinity;   // --cpu-affinity LIST (NULL = not pinned; see compute/affinity.h)
    const char *numa;           // --numa off|distribute|isolate (NULL = off)
    enum llama_kv_type kv_type; // KV cache elements (LLAMA_KV_F16 unless set)
} llama_ctx_params;

typedef struct llama_ctx llama_ctx;

llama_ctx *llama_ctx_new(const llama_model *m, const llama_ctx_params *p, char *err, size_t errlen);
void llama_ctx_free(llama_ctx *c);
// Where the compute threads run, one line ("2 compute threads pinned to CPUs 0,1; 1 NUMA node").
const char *llama_ctx_placement(const llama_ctx *c);
int32_t llama_ctx_n_ctx(const llama_ctx *c);
int32_t llama_ctx_n_seq(const llama_ctx *c);
int32_t llama_ctx_n_batch(const llama_ctx *c);
int32_t llama_ctx_n_threads(const llama_ctx *c);
// Bytes held by the KV cache, and its element type ("f16" or "f32").
uint64_t llama_ctx_kv_bytes(const llama_ctx *c);
const char *llama_ctx_kv_type(const llama_ctx *c);
// Memory read bandwidth (bytes/s) the context's compute threads reach,
// where they run: the best of reps passes over a fresh buffer of `bytes`
// (mm_measure_read_bw). 0 when the buffer cannot be had.
double llama_ctx_read_bandwidth(llama_ctx *c, size_t bytes, int reps);
// Whether single-token steps run the strip kernels' software prefetch
// (mm_pf_ctl: chosen by measuring pairs of steps, one with and one
// without); *ratio: the median time of the other choice over this one's in
// the pairs kept (0 before any), *pairs and *switches so far. Any may be NULL.
bool llama_ctx_decode_prefetch(const llama_ctx *c, double *ratio, int *pairs, int *switches);
// "f16" or "f32" (--kv-type) into *out; false for anything else.
bool llama_kv_type_parse(const char *s, enum llama_kv_type *out);

// A batch: token i of sequence seq[i] at position pos[i]. Positions of one
// sequence must be consecutive and the KV slot must already hold positions
// 0..pos-1 of that sequence (from earlier calls or earlier in this batch).
// want_logits[i] != 0 asks for the logits after token i; NULL asks only for
// the last token.
typedef struct llama_batch {
    int32_t n_tokens;
    const int32_t *token;        // (n_tokens)
    const int32_t *pos;          // (n_tokens)
    const int32_t *seq;          // (n_tokens)
    const int8_t *want_logits;   // (n_tokens) or NULL
} llama_batch;

// Runs the forward pass. Returns 0, or -1 with a message in err for a bad
// batch (token id out of range, position past n_ctx, seq out of range, too
// many tokens). Logits of the j-th requested token: llama_logits(c, j).
int llama_decode(llama_ctx *c, const llama_batch *b, char *err, size_t errlen);
float *llama_logits(llama_ctx *c, int32_t j);     // (n_vocab)
int32_t llama_n_logits(const llama_ctx *c);        // rows from the last decode

// Forgets what a sequence's slot holds (it may be reused from position 0).
void llama_kv_clear(llama_ctx *c, int32_t seq);

#endif
