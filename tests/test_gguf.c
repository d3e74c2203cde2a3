// test_gguf.c — the GGUF reader on the real shared files, on a table of
// hand-made bad files (each must be refused with its one-line reason and the
// byte offset of the problem), on every truncation of a valid file, the
// writer's round trip, and the file read into 2 MiB pages (GGUF_HOLD_COPY).
#include "harness.h"
#include <unistd.h>
#include "model/gguf.h"
#include "util/util.h"

// ---- a tiny file builder ---------------------------------------------------------

typedef struct buf { uint8_t *p; size_t n, cap; } buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void str(buf *b, const char *s) { u64(b, strlen(s)); put(b, s, strlen(s)); }
static void pad(buf *b, size_t a) { while (b->n % a) { uint8_t z = 0; put(b, &z, 1); } }

enum bad {
    OK = 0,
    BAD_MAGIC, VERSION_1, VERSION_99, TRUNC_HEADER, HUGE_N_TENSORS, HUGE_N_KV, N_KV_TOO_MANY_FOR_FILE,
    KEY_LEN_HUGE, KEY_EMPTY, UNKNOWN_KV_TYPE, STRING_PAST_END, ARRAY_HUGE, ARRAY_NESTED, ARRAY_TRUNCATED,
    DUP_KEY, ALIGN_ZERO, ALIGN_NOT_POW2, ALIGN_WRONG_TYPE, BOOL_BAD, NDIMS_ZERO, NDIMS_FIVE, NE_NEGATIVE,
    NE_OVERFLOW, NOT_BLOCK_MULTIPLE, KQ4_ROW_32, KQ6_ROW_288, TYPE_Q5_K, TYPE_999, OFFSET_MISALIGNED, OFFSET_PAST_END, SIZE_PAST_END,
    OVERLAP, DUP_TENSOR, TENSOR_NAME_NUL, DATA_MISSING, ARRAY_UNKNOWN_TYPE, DATA_UNALIGNED, N_BAD
};

static const struct { const char *name, *want; } bad_info[N_BAD] = {
    [BAD_MAGIC] = {"bad magic", "not a GGUF file"},
    [VERSION_1] = {"version 1", "version 1 is not supported"},
    [VERSION_99] = {"version 99", "unsupported version 99"},
    [TRUNC_HEADER] = {"truncated header", "file ends inside the tensor count"},
    [HUGE_N_TENSORS] = {"huge tensor count", "tensor count 1099511627776 exceeds"},
    [HUGE_N_KV] = {"huge metadata count", "metadata count 1099511627776 exceeds"},
    [N_KV_TOO_MANY_FOR_FILE] = {"metadata count larger than the file", "does not fit in the file"},
    [KEY_LEN_HUGE] = {"huge key length", "metadata key length"},
    [KEY_EMPTY] = {"empty key", "empty metadata key"},
    [UNKNOWN_KV_TYPE] = {"unknown value type", "unknown value type 99"},
    [STRING_PAST_END] = {"string past the end", "file ends inside a string value"},
    [ARRAY_HUGE] = {"huge array", "array length 1073741824 exceeds"},
    [ARRAY_NESTED] = {"nested array", "nested arrays"},
    [ARRAY_TRUNCATED] = {"truncated array", "file ends inside the array"},
    [DUP_KEY] = {"duplicate key", "duplicate metadata key 'general.architecture'"},
    [ALIGN_ZERO] = {"alignment 0", "general.alignment 0 is not a power of two"},
    [ALIGN_NOT_POW2] = {"alignment 48", "general.alignment 48 is not a power of two"},
    [ALIGN_WRONG_TYPE] = {"alignment as u64", "general.alignment has type u64"},
    [BOOL_BAD] = {"bool 2", "bool value 2 is not 0 or 1"},
    [NDIMS_ZERO] = {"0 dimensions", "has 0 dimensions"},
    [NDIMS_FIVE] = {"5 dimensions", "has 5 dimensions"},
    [NE_NEGATIVE] = {"negative dimension", "dimension 0 is negative"},
    [NE_OVERFLOW] = {"element count overflow", "element count overflows"},
    [NOT_BLOCK_MULTIPLE] = {"elements not whole blocks", "not a multiple of the q8_0 block"},
    [KQ4_ROW_32] = {"q4_k rows of 32", "rows of 32 elements, not a multiple of the q4_k block of 256"},
    [KQ6_ROW_288] = {"q6_k rows of 288", "rows of 288 elements, not a multiple of the q6_k block of 256"},
    [TYPE_Q5_K] = {"q5_k tensor", "type q5_k, which is not supported"},
    [TYPE_999] = {"type 999", "type type#999"},
    [OFFSET_MISALIGNED] = {"misaligned offset", "is not a multiple of the alignment"},
    [OFFSET_PAST_END] = {"offset past the end", "extends past the end of the file"},
    [SIZE_PAST_END] = {"size past the end", "extends past the end of the file"},
    [OVERLAP] = {"overlapping tensors", "overlaps tensor"},
    [DUP_TENSOR] = {"duplicate tensor", "duplicate tensor name 'a'"},
    [TENSOR_NAME_NUL] = {"NUL in a tensor name", "contains a NUL byte"},
    [DATA_MISSING] = {"data section missing", "extends past the end of the file"},
    [ARRAY_UNKNOWN_TYPE] = {"array of unknown type", "array of unknown type 77"},
    [DATA_UNALIGNED] = {"q8_0 data at an odd address (alignment 1)", "tensor 'b' data is not aligned to 2 bytes"},
};

// Builds the reference file with one defect; *at receives the offset the
// reader must name.
static buf build(enum bad c, uint64_t *at) {
    buf b = {0};
    *at = 0;
    u32(&b, c == BAD_MAGIC ? 0x46554746u : GGUF_MAGIC);
    if (c == VERSION_1 || c == VERSION_99) *at = b.n;
    u32(&b, c == VERSION_1 ? 1 : c == VERSION_99 ? 99 : 3);
    if (c == TRUNC_HEADER) { *at = b.n; u32(&b, 2); return b; }
    if (c == HUGE_N_TENSORS || c == N_KV_TOO_MANY_FOR_FILE) *at = c == HUGE_N_TENSORS ? 8 : 16;
    uint64_t nt = c == DUP_TENSOR ? 3 : 2;
    u64(&b, c == HUGE_N_TENSORS ? 1ull << 40 : nt);
    if (c == HUGE_N_KV) *at = b.n;
    u64(&b, c == HUGE_N_KV ? 1ull << 40 : c == N_KV_TOO_MANY_FOR_FILE ? 60000 : (c == DUP_KEY ? 5 : 4));
    // kv 0: general.architecture = "llama"
    if (c == KEY_LEN_HUGE || c == KEY_EMPTY) *at = b.n;
    if (c == KEY_LEN_HUGE) u64(&b, 1ull << 62);
    else str(&b, c == KEY_EMPTY ? "" : "general.architecture");
    if (c == UNKNOWN_KV_TYPE) *at = b.n;
    u32(&b, c == UNKNOWN_KV_TYPE ? 99 : GGUF_TYPE_STRING);
    if (c == STRING_PAST_END) { *at = b.n; u64(&b, 1000000); put(&b, "llama", 5); }
    else str(&b, "llama");
    // kv 1: general.alignment = 32 (u32)
    if (c == ALIGN_ZERO || c == ALIGN_NOT_POW2 || c == ALIGN_WRONG_TYPE) *at = b.n;
    str(&b, "general.alignment");
    if (c == ALIGN_WRONG_TYPE) { u32(&b, GGUF_TYPE_UINT64); u64(&b, 32); }
    else { u32(&b, GGUF_TYPE_UINT32); u32(&b, c == ALIGN_ZERO ? 0 : c == ALIGN_NOT_POW2 ? 48 : c == DATA_UNALIGNED ? 1 : 32); }
    // kv 2: tokenizer.ggml.tokens = ["a", "b", "c"]
    str(&b, "tokenizer.ggml.tokens");
    u32(&b, GGUF_TYPE_ARRAY);
    if (c == ARRAY_HUGE || c == ARRAY_NESTED || c == ARRAY_UNKNOWN_TYPE) *at = b.n + (c == ARRAY_HUGE ? 4 : 0);
    u32(&b, c == ARRAY_NESTED ? GGUF_TYPE_ARRAY : c == ARRAY_UNKNOWN_TYPE ? 77 : GGUF_TYPE_STRING);
    u64(&b, c == ARRAY_HUGE ? 1ull << 30 : 3);
    str(&b, "a"); str(&b, "b"); str(&b, "c");
    // kv 3: test.flag = true; or a truncated u32 array
    str(&b, "test.flag");
    if (c == ARRAY_TRUNCATED) { u32(&b, GGUF_TYPE_ARRAY); u32(&b, GGUF_TYPE_UINT32); u64(&b, 1000); *at = b.n; u32(&b, 1); return b; }
    u32(&b, GGUF_TYPE_BOOL);
    if (c == BOOL_BAD) *at = b.n;
    uint8_t flag = c == BOOL_BAD ? 2 : 1;
    put(&b, &flag, 1);
    if (c == DUP_KEY) { *at = b.n; str(&b, "general.architecture"); u32(&b, GGUF_TYPE_STRING); str(&b, "x"); }
    // tensor 0: "a", f32 [8] at 0
    if (c == TENSOR_NAME_NUL || c == DATA_MISSING) *at = b.n;   // the first tensor is already past the end
    if (c == TENSOR_NAME_NUL) { u64(&b, 3); put(&b, "a\0b", 3); }
    else str(&b, "a");
    if (c == NDIMS_ZERO || c == NDIMS_FIVE) *at = b.n;
    u32(&b, c == NDIMS_ZERO ? 0 : c == NDIMS_FIVE ? 5 : c == NE_OVERFLOW ? 2 : 1);
    if (c == NE_NEGATIVE) *at = b.n;
    if (c == NE_OVERFLOW) { u64(&b, 1ull << 40); *at = b.n; u64(&b, 1ull << 40); }   // the second overflows
    else u64(&b, c == NE_NEGATIVE ? (uint64_t)-8 : 8);
    u32(&b, GGML_TYPE_F32);
    const size_t off_a = b.n;
    u64(&b, 0);
    // tensor 1: "b", q8_0 [32, 2] at 32
    uint64_t t1 = b.n;
    str(&b, "b");
    u32(&b, 2);
    if (c == NOT_BLOCK_MULTIPLE || c == KQ4_ROW_32 || c == KQ6_ROW_288) *at = b.n - 4;
    u64(&b, c == NOT_BLOCK_MULTIPLE ? 33 : c == KQ6_ROW_288 ? 288 : 32);
    // 8 rows of 288 are 9 whole super-blocks: accepted as a flat stream for
    // q8_0, refused for K-quants, whose super-blocks must not cross rows.
    u64(&b, c == SIZE_PAST_END ? 1000 : c == KQ6_ROW_288 ? 8 : 2);
    if (c == TYPE_Q5_K || c == TYPE_999) *at = b.n;
    u32(&b, c == TYPE_Q5_K ? GGML_TYPE_Q5_K : c == TYPE_999 ? 999 : c == KQ4_ROW_32 ? GGML_TYPE_Q4_K
            : c == KQ6_ROW_288 ? GGML_TYPE_Q6_K : GGML_TYPE_Q8_0);
    if (c == OFFSET_MISALIGNED || c == OFFSET_PAST_END || c == SIZE_PAST_END || c == OVERLAP || c == DATA_UNALIGNED) *at = t1;
    const size_t off_b = b.n;
    u64(&b, c == OFFSET_MISALIGNED ? 36 : c == OFFSET_PAST_END ? 4096 : c == OVERLAP ? 0 : 32);
    if (c == DUP_TENSOR) { *at = b.n; str(&b, "a"); u32(&b, 1); u64(&b, 8); u32(&b, GGML_TYPE_F32); u64(&b, 128); }
    if (c == DATA_UNALIGNED) {
        // With alignment 1 the data section starts right after the header:
        // "a" (f32) placed at a multiple of 4 in the buffer, "b" (q8_0,
        // whose blocks hold an f16) at an odd byte.
        const uint64_t he = b.n, oa = (4 - he % 4) % 4, ob = 40 + (he % 2 == 0);
        memcpy(b.p + off_a, &oa, 8);
        memcpy(b.p + off_b, &ob, 8);
        uint8_t z[128] = {0};
        put(&b, z, sizeof z);
        return b;
    }
    pad(&b, 32);
    if (c == DATA_MISSING) return b;
    float a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    put(&b, a, sizeof a);
    uint8_t q[68];
    memset(q, 1, sizeof q);
    put(&b, q, sizeof q);
    if (c == DUP_TENSOR) { pad(&b, 32); put(&b, a, sizeof a); }
    return b;
}

static void test_good_handmade(void) {
    uint64_t at;
    buf b = build(OK, &at);
    char err[512] = "";
    gguf_ctx *g = gguf_open_mem(b.p, b.n, "good.gguf", err, sizeof err);
    CHECKF(g != NULL, "%s", err);
    if (g) {
        CHECK(gguf_version(g) == 3 && gguf_n_kv(g) == 4 && gguf_n_tensors(g) == 2 && gguf_alignment(g) == 32);
        gguf_str s;
        CHECK(gguf_get_str(g, "general.architecture", &s) && s.len == 5 && !memcmp(s.ptr, "llama", 5));
        int64_t k = gguf_find_key(g, "tokenizer.ggml.tokens");
        CHECK(gguf_kv_arr_n(g, k) == 3 && gguf_kv_arr_str(g, k, 2).len == 1 && gguf_kv_arr_str(g, k, 2).ptr[0] == 'c');
        CHECK(gguf_kv_arr_str(g, k, 3).ptr == NULL);   // out of range
        bool fl = false;
        CHECK(gguf_get_bool(g, "test.flag", &fl) && fl);
        const gguf_tensor *t = gguf_find_tensor(g, "b");
        CHECK(t && t->type == GGML_TYPE_Q8_0 && t->ne[0] == 32 && t->ne[1] == 2 && t->nbytes == 68);
        const gguf_tensor *a = gguf_find_tensor(g, "a");
        CHECK(a && ((const float *)a->data)[7] == 8.0f);
        CHECK(gguf_find_tensor(g, "zz") == NULL && gguf_find_key(g, "zz") == -1);
        gguf_close(g);
    }
    free(b.p);
}

static void test_bad_table(void) {
    int n_cases = 0;
    for (int c = 1; c < N_BAD; c++) {
        uint64_t at;
        buf b = build((enum bad)c, &at);
        char err[512] = "";
        gguf_ctx *g = gguf_open_mem(b.p, b.n, "bad.gguf", err, sizeof err);
        char want_off[64];
        snprintf(want_off, sizeof want_off, "bad.gguf: offset %llu: ", (unsigned long long)at);
        CHECKF(g == NULL, "case '%s' was accepted", bad_info[c].name);
        CHECKF(strstr(err, bad_info[c].want) != NULL, "case '%s': message [%s], expected [%s]", bad_info[c].name, err, bad_info[c].want);
        CHECKF(strncmp(err, want_off, strlen(want_off)) == 0, "case '%s': message [%s], expected it to start [%s]",
               bad_info[c].name, err, want_off);
        CHECKF(strchr(err, '\n') == NULL, "case '%s': message has more than one line", bad_info[c].name);
        gguf_close(g);
        free(b.p);
        n_cases++;
    }
    CHECK(n_cases >= 30);
}

// Every strict prefix of a valid file is refused, with no crash (ASan runs this too).
static void test_every_truncation(void) {
    uint64_t at;
    buf b = build(OK, &at);
    int refused = 0;
    for (size_t n = 0; n < b.n; n++) {
        char err[256];
        uint8_t *copy = malloc(n ? n : 1);   // exact-size copy so ASan sees any overread
        memcpy(copy, b.p, n);
        gguf_ctx *g = gguf_open_mem(copy, n, "t.gguf", err, sizeof err);
        if (!g) refused++;
        gguf_close(g);
        free(copy);
    }
    CHECKF(refused == (int)b.n, "%d of %zu prefixes refused", refused, b.n);
    free(b.p);
}

static void test_real_files(void) {
    char err[512];
    gguf_ctx *g = gguf_open(harness_model("stories260K.gguf"), err, sizeof err);
    REQUIRE(g);
    CHECK(gguf_version(g) == 3 && gguf_n_kv(g) == 19 && gguf_n_tensors(g) == 48);
    CHECK(gguf_data_offset(g) == 14176 && gguf_alignment(g) == 32);
    const gguf_tensor *t = gguf_find_tensor(g, "blk.0.ffn_down.weight");
    CHECK(t && t->ne[0] == 172 && t->ne[1] == 64 && t->type == GGML_TYPE_F32);
    int64_t v;
    CHECK(gguf_get_int(g, "llama.attention.head_count_kv", &v) && v == 4);
    gguf_close(g);

    g = gguf_open(harness_model("tinyllamas-stories-260k-q8_0.gguf"), err, sizeof err);
    CHECKF(g != NULL, "%s", err);
    if (g) {
        int q8 = 0, f32 = 0;
        for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
            q8 += gguf_tensor_at(g, i)->type == GGML_TYPE_Q8_0;
            f32 += gguf_tensor_at(g, i)->type == GGML_TYPE_F32;
        }
        CHECK(gguf_version(g) == 2 && q8 == 37 && f32 == 11 && gguf_data_offset(g) == 14240);
        t = gguf_find_tensor(g, "blk.0.ffn_down.weight");
        CHECK(t && t->ne[0] == 172 && t->nbytes == 11696);   // 344 blocks as one flat stream
        gguf_close(g);
    }
    g = gguf_open(harness_model("llama-2-tiny-random.gguf"), err, sizeof err);
    CHECKF(g != NULL, "%s", err);
    if (g) {
        int f16 = 0;
        for (int64_t i = 0; i < gguf_n_tensors(g); i++) f16 += gguf_tensor_at(g, i)->type == GGML_TYPE_F16;
        CHECK(f16 == 9 && gguf_n_tensors(g) == 12 && gguf_n_kv(g) == 18);
        gguf_close(g);
    }
    g = gguf_open(harness_model("vocab/ggml-vocab-llama-spm.gguf"), err, sizeof err);
    CHECKF(g != NULL, "%s", err);
    if (g) {
        CHECK(gguf_n_tensors(g) == 0 && gguf_n_kv(g) == 22);
        CHECK(gguf_kv_arr_n(g, gguf_find_key(g, "tokenizer.ggml.tokens")) == 32000);
        gguf_close(g);
    }
    CHECK(gguf_open("/nonexistent.gguf", err, sizeof err) == NULL && strstr(err, "/nonexistent.gguf"));
}

static void fill_ramp(void *user, const char *name, void *dst, uint64_t n) {
    (void)name;
    uint8_t base = *(uint8_t *)user;
    for (uint64_t i = 0; i < n; i++) ((uint8_t *)dst)[i] = (uint8_t)(base + i);
}

static void test_writer_roundtrip(void) {
    char err[512], path[] = "/tmp/llmscope-test-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    char err2[512];
    gguf_ctx *voc = gguf_open(harness_model("stories260K.gguf"), err2, sizeof err2);
    REQUIRE(voc);
    gguf_writer *w = gguf_writer_new(64);
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "x.u32", 7);
    gguf_writer_set_i32(w, "x.i32", -7);
    gguf_writer_set_f32(w, "x.f32", 0.25f);
    gguf_writer_set_bool(w, "x.bool", true);
    gguf_writer_set_u32(w, "x.u32", 9);   // replaces
    gguf_writer_copy_kv(w, voc, gguf_find_key(voc, "tokenizer.ggml.tokens"));
    gguf_writer_copy_kv(w, voc, gguf_find_key(voc, "tokenizer.ggml.scores"));
    float f[64];
    for (int i = 0; i < 64; i++) f[i] = (float)i * 0.5f;
    int64_t ne1[1] = {64}, ne2[2] = {32, 3};
    uint8_t base = 5;
    CHECK(gguf_writer_add_tensor(w, "f", GGML_TYPE_F32, 1, ne1, f, NULL, NULL) == 0);
    CHECK(gguf_writer_add_tensor(w, "q", GGML_TYPE_Q8_0, 2, ne2, NULL, fill_ramp, &base) == 0);
    CHECK(gguf_writer_add_tensor(w, "h", GGML_TYPE_F16, 2, ne2, NULL, fill_ramp, &base) == 0);
    CHECK(gguf_writer_add_tensor(w, "bad", GGML_TYPE_Q4_0, 1, (int64_t[]){33}, f, NULL, NULL) == -1);
    CHECK(gguf_writer_write(w, path, err, sizeof err) == 0);
    gguf_writer_free(w);
    gguf_ctx *g = gguf_open(path, err, sizeof err);
    CHECKF(g != NULL, "%s", err);
    if (g) {
        int64_t v;
        double d;
        bool b;
        gguf_str s;
        CHECK(gguf_alignment(g) == 64 || gguf_find_key(g, "general.alignment") < 0);
        CHECK(gguf_get_int(g, "x.u32", &v) && v == 9);
        CHECK(gguf_get_int(g, "x.i32", &v) && v == -7);
        CHECK(gguf_get_float(g, "x.f32", &d) && d == 0.25);
        CHECK(gguf_get_bool(g, "x.bool", &b) && b);
        CHECK(gguf_get_str(g, "general.architecture", &s) && s.len == 5);
        int64_t k = gguf_find_key(g, "tokenizer.ggml.tokens"), k0 = gguf_find_key(voc, "tokenizer.ggml.tokens");
        CHECK(gguf_kv_arr_n(g, k) == 512);
        for (uint64_t j = 0; j < 512; j++) {
            gguf_str a = gguf_kv_arr_str(g, k, j), c = gguf_kv_arr_str(voc, k0, j);
            if (a.len != c.len || memcmp(a.ptr, c.ptr, a.len)) { CHECKF(0, "token %llu differs", (unsigned long long)j); break; }
        }
        CHECK(gguf_kv_arr_float(g, gguf_find_key(g, "tokenizer.ggml.scores"), 300) ==
              gguf_kv_arr_float(voc, gguf_find_key(voc, "tokenizer.ggml.scores"), 300));
        const gguf_tensor *t = gguf_find_tensor(g, "f");
        CHECK(t && !memcmp(t->data, f, sizeof f));
        t = gguf_find_tensor(g, "q");
        CHECK(t && t->nbytes == 102 && ((const uint8_t *)t->data)[101] == (uint8_t)(5 + 101));
        t = gguf_find_tensor(g, "h");
        CHECK(t && t->nbytes == 192 && t->offset % 32 == 0);
        gguf_close(g);
    }
    gguf_close(voc);
    unlink(path);
}

// util_huge_alloc: 2 MiB-aligned zeroed memory that the kernel backs with
// huge pages where transparent huge pages are on (always or madvise).
static void test_huge_alloc(void) {
    const char *thp = util_thp_mode();
    const bool on = !strcmp(thp, "always") || !strcmp(thp, "madvise");
    size_t len = 0;
    const size_t n = ((size_t)5 << 20) + 1;
    uint8_t *p = util_huge_alloc(n, &len, NULL);
    REQUIRE(p);
    CHECKF(len == (size_t)6 << 20, "len %zu", len);
    CHECK(((uintptr_t)p & (((uintptr_t)2 << 20) - 1)) == 0);
    // Written before any read: a read would map the shared zero page, which
    // kernels before 6.12 split into 4 KiB pages on the first write.
    memset(p, 0x5a, len);
    const int64_t h = util_huge_bytes(p);
    CHECKF(h >= 0, "/proc/self/smaps unreadable");
    if (on) CHECKF(h >= (int64_t)2 << 20, "THP %s but %lld bytes of 6 MiB in huge pages", thp, (long long)h);
    else CHECKF(h == 0, "THP %s but %lld bytes in huge pages", thp, (long long)h);
    CHECK(h <= (int64_t)len);
    util_huge_free(p, len);
    CHECK(util_huge_alloc(0, &len, NULL) == NULL);
    p = util_huge_alloc(4096, &len, NULL);   // zero-filled
    REQUIRE(p);
    size_t nz = 0;
    for (size_t i = 0; i < len; i++) nz += p[i] != 0;
    CHECK(nz == 0 && len == (size_t)2 << 20);
    util_huge_free(p, len);
}

// Whether the mapping that holds p may be written (from /proc/self/maps).
static bool writable(const void *p) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return true;
    char line[512], perm[8] = "";
    bool w = true;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perm) == 3 && (uintptr_t)p >= lo && (uintptr_t)p < hi) {
            w = perm[1] == 'w';
            break;
        }
    }
    fclose(f);
    return w;
}

// GGUF_HOLD_COPY holds the same bytes as the mapping, in memory of its own
// (2 MiB-aligned) where THP is on, and falls back to the mapping where not.
static void test_hold_copy(void) {
    char err[512];
    const char *thp = util_thp_mode();
    const bool on = !strcmp(thp, "always") || !strcmp(thp, "madvise");
    const char *files[] = {"stories260K.gguf", "tinyllamas-stories-260k-q8_0.gguf"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        gguf_ctx *a = gguf_open_with(harness_model(files[f]), GGUF_HOLD_MAP, err, sizeof err);
        gguf_ctx *b = gguf_open_with(harness_model(files[f]), GGUF_HOLD_COPY, err, sizeof err);
        CHECKF(a && b, "%s", err);
        if (!a || !b) { gguf_close(a); gguf_close(b); continue; }
        CHECK(gguf_hold_of(a) == GGUF_HOLD_MAP);
        CHECKF(gguf_hold_of(b) == (on ? GGUF_HOLD_COPY : GGUF_HOLD_MAP), "THP %s", thp);
        CHECK(gguf_file_size(a) == gguf_file_size(b) && gguf_file_data(a) != gguf_file_data(b));
        CHECK(!memcmp(gguf_file_data(a), gguf_file_data(b), gguf_file_size(a)));
        if (on) CHECK(((uintptr_t)gguf_file_data(b) & (((uintptr_t)2 << 20) - 1)) == 0);
        CHECKF(!writable(gguf_file_data(b)), "%s: the copy is writable", files[f]);
        CHECK(gguf_n_tensors(a) == gguf_n_tensors(b));
        for (int64_t i = 0; i < gguf_n_tensors(b); i++) {
            const gguf_tensor *ta = gguf_tensor_at(a, i), *tb = gguf_tensor_at(b, i);
            CHECK((const uint8_t *)tb->data - (const uint8_t *)gguf_file_data(b) ==
                  (const uint8_t *)ta->data - (const uint8_t *)gguf_file_data(a));
        }
        gguf_close(a);
        gguf_close(b);
    }
    // A bad file read into memory is refused the same way, and its copy
    // released (it is listed in util_huge_regions while it lives).
    char path[] = "/tmp/llmscope-test-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    const uint8_t junk[64] = {'G', 'G', 'U', 'F', 9};
    CHECK(write(fd, junk, sizeof junk) == (ssize_t)sizeof junk);
    close(fd);
    util_region rg[UTIL_MAX_REGIONS];
    const int before = util_huge_regions(rg, UTIL_MAX_REGIONS);
    CHECK(gguf_open_with(path, GGUF_HOLD_COPY, err, sizeof err) == NULL && strstr(err, path) && strstr(err, "offset"));
    CHECK(util_huge_regions(rg, UTIL_MAX_REGIONS) == before);
    gguf_ctx *g = gguf_open_with(harness_model("stories260K.gguf"), GGUF_HOLD_COPY, err, sizeof err);
    REQUIRE(g);
    const int during = util_huge_regions(rg, UTIL_MAX_REGIONS);
    CHECK(during == before + (on ? 1 : 0));
    if (on) CHECK(rg[during - 1].p == gguf_file_data(g) && strstr(rg[during - 1].name, "stories260K.gguf"));
    gguf_close(g);
    CHECK(util_huge_regions(rg, UTIL_MAX_REGIONS) == before);
    unlink(path);
}

int main(void) {
    RUN(test_good_handmade);
    RUN(test_bad_table);
    RUN(test_every_truncation);
    RUN(test_real_files);
    RUN(test_writer_roundtrip);
    RUN(test_huge_alloc);
    RUN(test_hold_copy);
    return harness_done();
}
