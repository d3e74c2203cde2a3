// gguf.h — GGUF v2/v3 model files: a bounded, overflow-checked reader that
// memory-maps the file and hands out tensors in place (zero copy), and a writer
// that produces spec-conformant files (used by `llmscope gguf synth`).
// Thread safety: a gguf_ctx is immutable after gguf_open*() and may be read
// from any number of threads; the writer is single-threaded.
//
// Byte layout (all little-endian):
//
//   u32  magic      "GGUF" (0x46554747)
//   u32  version    2 or 3 (v1 used u32 counts and is refused)
//   u64  n_tensors
//   u64  n_kv
//   n_kv × { str key; u32 type; value }
//          str   = u64 len, len bytes (not NUL-terminated)
//          value = scalar of the type, a str, or an array:
//                  u32 elem_type, u64 n, n × value (no nested arrays here)
//   n_tensors × { str name; u32 n_dims (1..4); n_dims × u64 ne; u32 ggml_type;
//                 u64 offset (relative to the data section, aligned) }
//   padding to `general.alignment` (default 32)
//   data section: tensor bytes, each tensor at its offset, padded to alignment
//
// ne[0] is the innermost (contiguous) dimension: a weight matrix of a linear
// layer y = W x has ne = {in_features, out_features}, one row per output.
#ifndef LLMSCOPE_GGUF_H
#define LLMSCOPE_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

// Metadata value types, numbered as in the GGUF spec.
enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
};

// Tensor element types, numbered as in ggml. Only the ones marked (*) are
// accepted by the reader; the others are named so that a refusal can say
// which type a file used.
enum ggml_type {
    GGML_TYPE_F32 = 0,   // (*)
    GGML_TYPE_F16 = 1,   // (*)
    GGML_TYPE_Q4_0 = 2,  // (*)
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,  // (*)
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12, // (*) rows a multiple of 256
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14, // (*) rows a multiple of 256
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_IQ2_XXS = 16,
    GGML_TYPE_IQ2_XS = 17,
    GGML_TYPE_IQ3_XXS = 18,
    GGML_TYPE_IQ1_S = 19,
    GGML_TYPE_IQ4_NL = 20,
    GGML_TYPE_IQ3_S = 21,
    GGML_TYPE_IQ2_S = 22,
    GGML_TYPE_IQ4_XS = 23,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_IQ1_M = 29,
    GGML_TYPE_BF16 = 30, // (*)
    GGML_TYPE_TQ1_0 = 34,
    GGML_TYPE_TQ2_0 = 35,
    GGML_TYPE_COUNT = 39
};

#define GGUF_MAGIC 0x46554747u          // "GGUF" read as little-endian u32
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

// Caps on untrusted counts (a real file is far below each).
#define GGUF_MAX_STRING_LEN (1u << 20)     // bytes in one key or string value
#define GGUF_MAX_KEY_LEN 65535             // bytes in a key or tensor name
#define GGUF_MAX_ARRAY_LEN (1u << 24)      // elements in one metadata array
#define GGUF_MAX_KV 65536                  // metadata pairs
#define GGUF_MAX_TENSORS 65536             // tensors

// A string inside the mapped file: not NUL-terminated.
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;   // bytes
} gguf_str;

typedef struct gguf_tensor {
    const char *name;       // NUL-terminated copy owned by the ctx
    uint32_t n_dims;        // 1..4
    int64_t ne[GGUF_MAX_DIMS]; // elements per dimension; unused dims are 1
    enum ggml_type type;
    uint64_t offset;        // bytes, relative to the data section
    uint64_t nbytes;        // bytes of tensor data
    const void *data;       // points into the file's bytes (aligned to the file's alignment)
    uint64_t file_offset;   // bytes from the start of the file to the tensor info (for messages)
} gguf_tensor;

typedef struct gguf_ctx gguf_ctx;

// Opens and validates a file. On failure returns NULL and writes one line to
// err: "PATH: offset N: reason". Never aborts on bad input.
gguf_ctx *gguf_open(const char *path, char *err, size_t errlen);
// How gguf_open_with() holds the file's bytes.
enum gguf_hold {
    GGUF_HOLD_MAP = 0,    // a read-only mapping of the file: pages shared with the page
                          // cache and other processes, 4 KiB each
    GGUF_HOLD_COPY = 1,   // read into private memory advised for 2 MiB transparent huge
                          // pages (util_huge_alloc): costs a copy and the load time of a
                          // read, and saves a TLB miss every 4 KiB when weights stream
};
// As gguf_open() (which maps), holding the bytes as asked. GGUF_HOLD_COPY
// falls back to a mapping where the kernel's transparent huge pages are
// "never" or absent (a copy would then buy nothing), where the file is more
// than half the memory still available (util_mem_available), or where the
// memory cannot be had; gguf_hold_of() says which it got. The copy is
// read-only, as the mapping is.
gguf_ctx *gguf_open_with(const char *path, enum gguf_hold hold, char *err, size_t errlen);
enum gguf_hold gguf_hold_of(const gguf_ctx *ctx);
// For GGUF_HOLD_COPY: makes the copy writable (1) or read-only again (0),
// all of it at once (the region stays one mapping, its huge pages whole),
// so a loader can rewrite tensors in place. 0 on success; -1 for a mapping
// or when mprotect fails.
int gguf_set_writable(gguf_ctx *ctx, int writable);
// Same over a caller-owned buffer (not copied; must outlive the ctx). `name`
// stands for the path in messages. Used by tests and the fuzz target.
gguf_ctx *gguf_open_mem(const void *data, size_t size, const char *name, char *err, size_t errlen);
void gguf_close(gguf_ctx *ctx);

const char *gguf_path(const gguf_ctx *ctx);
uint32_t gguf_version(const gguf_ctx *ctx);
uint32_t gguf_alignment(const gguf_ctx *ctx);
uint64_t gguf_data_offset(const gguf_ctx *ctx);  // bytes from file start to the data section
uint64_t gguf_file_size(const gguf_ctx *ctx);
const void *gguf_file_data(const gguf_ctx *ctx); // start of the file's bytes

// Metadata, by index.
int64_t gguf_n_kv(const gguf_ctx *ctx);
int64_t gguf_find_key(const gguf_ctx *ctx, const char *key); // -1 when absent
const char *gguf_kv_key(const gguf_ctx *ctx, int64_t i);     // NUL-terminated copy
enum gguf_type gguf_kv_type(const gguf_ctx *ctx, int64_t i);
// For arrays: element type and count (0 / GGUF_TYPE_COUNT otherwise).
enum gguf_type gguf_kv_arr_type(const gguf_ctx *ctx, int64_t i);
uint64_t gguf_kv_arr_n(const gguf_ctx *ctx, int64_t i);
// Raw pointer to a numeric array's elements inside the mapping (may be
// unaligned: read with memcpy or the gguf_arr_get_* helpers).
const void *gguf_kv_arr_data(const gguf_ctx *ctx, int64_t i);
// String array element j (bounds-checked; {NULL,0} when out of range).
gguf_str gguf_kv_arr_str(const gguf_ctx *ctx, int64_t i, uint64_t j);
// Numeric array element j converted (bounds- and type-checked; 0 on misuse).
int64_t gguf_kv_arr_int(const gguf_ctx *ctx, int64_t i, uint64_t j);
double gguf_kv_arr_float(const gguf_ctx *ctx, int64_t i, uint64_t j);

// Metadata, by key. Each returns true when the key exists with a compatible
// type and stores the value; false leaves *out untouched.
// Integer getters accept any integer type (and bool); float getters accept
// FLOAT32/FLOAT64 and integers.
bool gguf_get_int(const gguf_ctx *ctx, const char *key, int64_t *out);
bool gguf_get_float(const gguf_ctx *ctx, const char *key, double *out);
bool gguf_get_bool(const gguf_ctx *ctx, const char *key, bool *out);
bool gguf_get_str(const gguf_ctx *ctx, const char *key, gguf_str *out);
// Scalar value at index i (same conversions as above).
bool gguf_kv_int(const gguf_ctx *ctx, int64_t i, int64_t *out);
bool gguf_kv_float(const gguf_ctx *ctx, int64_t i, double *out);
bool gguf_kv_str(const gguf_ctx *ctx, int64_t i, gguf_str *out);

// Tensors.
int64_t gguf_n_tensors(const gguf_ctx *ctx);
const gguf_tensor *gguf_tensor_at(const gguf_ctx *ctx, int64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_ctx *ctx, const char *name); // NULL when absent

// Names for messages and `gguf info`.
const char *gguf_type_name(enum gguf_type t);
const char *ggml_type_name(enum ggml_type t);   // "q8_0", "f32", ... or "type#N"
// Block geometry: elements per block and bytes per block; 0 for types the
// project does not know.
int64_t ggml_blck_size(enum ggml_type t);
size_t ggml_type_size(enum ggml_type t);
// Bytes for n elements of type t (n a multiple of the block size); 0 on overflow or bad n.
uint64_t ggml_nbytes(enum ggml_type t, int64_t n);
bool ggml_type_supported(enum ggml_type t);      // the reader accepts it

// ---- Writer --------------------------------------------------------------

typedef struct gguf_writer gguf_writer;

// Fills `dst` with the `nbytes` bytes of tensor data (called once, at write time).
typedef void (*gguf_fill_fn)(void *user, const char *name, void *dst, uint64_t nbytes);

gguf_writer *gguf_writer_new(uint32_t alignment);   // 0 = default 32
void gguf_writer_free(gguf_writer *w);
// Each setter replaces an existing key of the same name.
void gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
void gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
void gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
// Copies metadata pair i of src (any type, arrays included) verbatim.
void gguf_writer_copy_kv(gguf_writer *w, const gguf_ctx *src, int64_t i);
// Adds a tensor whose bytes are produced by fill() when the file is written
// (data == NULL) or copied from data (fill == NULL).
int gguf_writer_add_tensor(gguf_writer *w, const char *name, enum ggml_type type,
                           uint32_t n_dims, const int64_t *ne,
                           const void *data, gguf_fill_fn fill, void *user);
// Writes version 3. Returns 0, or -1 with a one-line message in err.
int gguf_writer_write(gguf_writer *w, const char *path, char *err, size_t errlen);

#endif
