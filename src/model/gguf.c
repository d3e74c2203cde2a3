// gguf.c — GGUF reader and writer (see gguf.h for the byte layout).
// The reader treats the file as hostile: it reads through a bounded cursor,
// checks every count, size and offset for overflow and against the caps in
// gguf.h, and reports the first problem as "PATH: offset N: reason".
// Thread safety: a gguf_ctx is read-only after open.
#include "gguf.h"
#include "../util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// ---- type tables -------------------------------------------------------------

static const struct { const char *name; int64_t blck; size_t size; } ggml_types[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {"f32", 1, 4},       [GGML_TYPE_F16] = {"f16", 1, 2},
    [GGML_TYPE_Q4_0] = {"q4_0", 32, 18},   [GGML_TYPE_Q4_1] = {"q4_1", 32, 20},
    [GGML_TYPE_Q5_0] = {"q5_0", 32, 22},   [GGML_TYPE_Q5_1] = {"q5_1", 32, 24},
    [GGML_TYPE_Q8_0] = {"q8_0", 32, 34},   [GGML_TYPE_Q8_1] = {"q8_1", 32, 36},
    [GGML_TYPE_Q2_K] = {"q2_k", 256, 84},  [GGML_TYPE_Q3_K] = {"q3_k", 256, 110},
    [GGML_TYPE_Q4_K] = {"q4_k", 256, 144}, [GGML_TYPE_Q5_K] = {"q5_k", 256, 176},
    [GGML_TYPE_Q6_K] = {"q6_k", 256, 210}, [GGML_TYPE_Q8_K] = {"q8_k", 256, 292},
    [GGML_TYPE_IQ2_XXS] = {"iq2_xxs", 256, 66}, [GGML_TYPE_IQ2_XS] = {"iq2_xs", 256, 74},
    [GGML_TYPE_IQ3_XXS] = {"iq3_xxs", 256, 98}, [GGML_TYPE_IQ1_S] = {"iq1_s", 256, 50},
    [GGML_TYPE_IQ4_NL] = {"iq4_nl", 32, 18},    [GGML_TYPE_IQ3_S] = {"iq3_s", 256, 110},
    [GGML_TYPE_IQ2_S] = {"iq2_s", 256, 82},     [GGML_TYPE_IQ4_XS] = {"iq4_xs", 256, 136},
    [GGML_TYPE_I8] = {"i8", 1, 1},   [GGML_TYPE_I16] = {"i16", 1, 2}, [GGML_TYPE_I32] = {"i32", 1, 4},
    [GGML_TYPE_I64] = {"i64", 1, 8}, [GGML_TYPE_F64] = {"f64", 1, 8}, [GGML_TYPE_IQ1_M] = {"iq1_m", 256, 56},
    [GGML_TYPE_BF16] = {"bf16", 1, 2}, [GGML_TYPE_TQ1_0] = {"tq1_0", 256, 54}, [GGML_TYPE_TQ2_0] = {"tq2_0", 256, 66},
};

static const char *gguf_type_names[GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64",
};

static const size_t gguf_scalar_size[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *gguf_type_name(enum gguf_type t) {
    return (unsigned)t < GGUF_TYPE_COUNT ? gguf_type_names[t] : "?";
}

const char *ggml_type_name(enum ggml_type t) {
    static __thread char buf[24];
    if ((unsigned)t < GGML_TYPE_COUNT && ggml_types[t].name) return ggml_types[t].name;
    snprintf(buf, sizeof buf, "type#%u", (unsigned)t);
    return buf;
}

int64_t ggml_blck_size(enum ggml_type t) {
    return (unsigned)t < GGML_TYPE_COUNT ? ggml_types[t].blck : 0;
}

size_t ggml_type_size(enum ggml_type t) {
    return (unsigned)t < GGML_TYPE_COUNT ? ggml_types[t].size : 0;
}

uint64_t ggml_nbytes(enum ggml_type t, int64_t n) {
    int64_t b = ggml_blck_size(t);
    if (b <= 0 || n < 0 || n % b) return 0;
    uint64_t blocks = (uint64_t)(n / b), sz = ggml_type_size(t);
    if (blocks > UINT64_MAX / sz) return 0;
    return blocks * sz;
}

bool ggml_type_supported(enum ggml_type t) {
    return t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16 || t == GGML_TYPE_Q8_0 ||
           t == GGML_TYPE_Q4_0 || t == GGML_TYPE_Q4_K || t == GGML_TYPE_Q6_K;
}

// ---- reader ----------------------------------------------------------------

typedef struct gguf_kv {
    char *key;                 // NUL-terminated copy
    enum gguf_type type;
    enum gguf_type arr_type;   // arrays only
    uint64_t n;                // array elements (1 for scalars)
    const uint8_t *data;       // value bytes (scalar, string header, or array elements)
    uint64_t *str_off;         // string arrays: offset of each element's length field, from data
} gguf_kv;

struct gguf_ctx {
    char *path;
    const uint8_t *base;       // the whole file
    uint64_t size;             // bytes
    bool mapped;               // base is ours to release (not gguf_open_mem's buffer)
    enum gguf_hold hold;
    size_t hold_len;           // util_huge_alloc's length, for GGUF_HOLD_COPY
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    int64_t n_kv;
    gguf_kv *kv;               // (n_kv)
    int64_t n_tensors;
    gguf_tensor *tensors;      // (n_tensors)
    uint32_t *kv_hash;         // open addressing: index+1, 0 empty
    uint32_t *t_hash;
    uint32_t hash_cap_kv, hash_cap_t;
};

typedef struct cursor {
    const uint8_t *p;
    uint64_t off;              // bytes consumed
    uint64_t size;             // bytes in total
} cursor;

typedef struct rd {
    gguf_ctx *ctx;
    cursor c;
    char *err;
    size_t errlen;
} rd;

static int fail_at(rd *r, uint64_t off, const char *fmt, ...) {
    if (r->err && r->errlen) {
        int n = snprintf(r->err, r->errlen, "%s: offset %llu: ", r->ctx->path, (unsigned long long)off);
        if (n > 0 && (size_t)n < r->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
        // Names come from the file: keep the message on one printable line.
        for (char *p = r->err; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    }
    return -1;
}

static bool have(rd *r, uint64_t n) { return n <= r->c.size - r->c.off; }

static int rd_bytes(rd *r, void *dst, uint64_t n, const char *what) {
    memset(dst, 0, n);
    if (!have(r, n)) return fail_at(r, r->c.off, "file ends inside %s (%llu bytes needed, %llu left)", what,
                                    (unsigned long long)n, (unsigned long long)(r->c.size - r->c.off));
    memcpy(dst, r->c.p + r->c.off, n);
    r->c.off += n;
    return 0;
}

static int rd_u32(rd *r, uint32_t *v, const char *what) { return rd_bytes(r, v, 4, what); }
static int rd_u64(rd *r, uint64_t *v, const char *what) { return rd_bytes(r, v, 8, what); }

// A string: u64 length + bytes. Returns its start in *s (pointing at the bytes).
static int rd_str(rd *r, gguf_str *s, uint64_t cap, const char *what) {
    uint64_t at = r->c.off, len;
    if (rd_u64(r, &len, what)) return -1;
    if (len > cap) return fail_at(r, at, "%s length %llu exceeds the limit of %llu", what, (unsigned long long)len,
                                  (unsigned long long)cap);
    if (!have(r, len)) return fail_at(r, at, "file ends inside %s (length %llu)", what, (unsigned long long)len);
    s->ptr = (const char *)r->c.p + r->c.off;
    s->len = len;
    r->c.off += len;
    return 0;
}

static uint32_t hash_str(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

// Inserts index i under name; returns false when the name is already there.
static bool hash_insert(uint32_t *tab, uint32_t cap, const char *name, uint32_t i, const char *(*name_of)(const gguf_ctx *, uint32_t),
                        const gguf_ctx *ctx) {
    size_t n = strlen(name);
    for (uint32_t h = hash_str(name, n) & (cap - 1);; h = (h + 1) & (cap - 1)) {
        if (!tab[h]) { tab[h] = i + 1; return true; }
        if (!strcmp(name_of(ctx, tab[h] - 1), name)) return false;
    }
}

static int64_t hash_find(const uint32_t *tab, uint32_t cap, const char *name, const char *(*name_of)(const gguf_ctx *, uint32_t),
                         const gguf_ctx *ctx) {
    if (!cap) return -1;
    size_t n = strlen(name);
    for (uint32_t h = hash_str(name, n) & (cap - 1);; h = (h + 1) & (cap - 1)) {
        if (!tab[h]) return -1;
        if (!strcmp(name_of(ctx, tab[h] - 1), name)) return tab[h] - 1;
    }
}

static const char *kv_name(const gguf_ctx *c, uint32_t i) { return c->kv[i].key; }
static const char *t_name(const gguf_ctx *c, uint32_t i) { return c->tensors[i].name; }

static uint32_t hash_cap_for(int64_t n) {
    uint32_t cap = 16;
    while (cap < 2 * (uint64_t)n) cap <<= 1;
    return cap;
}

// A name (key or tensor): printable copy, no NUL inside, not empty.
static char *dup_name(rd *r, gguf_str s, uint64_t at, const char *what) {
    if (s.len == 0) { fail_at(r, at, "empty %s", what); return NULL; }
    if (memchr(s.ptr, 0, s.len)) { fail_at(r, at, "%s contains a NUL byte", what); return NULL; }
    char *p = malloc(s.len + 1);
    if (!p) { fail_at(r, at, "out of memory"); return NULL; }
    memcpy(p, s.ptr, s.len);
    p[s.len] = 0;
    return p;
}

static int read_kv(rd *r, gguf_kv *kv) {
    uint64_t at = r->c.off;
    gguf_str key;
    if (rd_str(r, &key, GGUF_MAX_KEY_LEN, "a metadata key")) return -1;
    if (!(kv->key = dup_name(r, key, at, "metadata key"))) return -1;
    uint64_t tat = r->c.off;
    uint32_t type;
    if (rd_u32(r, &type, "a metadata type")) return -1;
    if (type >= GGUF_TYPE_COUNT) return fail_at(r, tat, "key '%s' has unknown value type %u", kv->key, type);
    kv->type = type;
    kv->n = 1;
    kv->arr_type = GGUF_TYPE_COUNT;
    if (type == GGUF_TYPE_STRING) {
        kv->data = r->c.p + r->c.off;
        gguf_str s;
        return rd_str(r, &s, GGUF_MAX_STRING_LEN, "a string value");
    }
    if (type != GGUF_TYPE_ARRAY) {
        kv->data = r->c.p + r->c.off;
        if (!have(r, gguf_scalar_size[type]))
            return fail_at(r, r->c.off, "file ends inside the value of '%s'", kv->key);
        if (type == GGUF_TYPE_BOOL && r->c.p[r->c.off] > 1)
            return fail_at(r, r->c.off, "key '%s': bool value %u is not 0 or 1", kv->key, r->c.p[r->c.off]);
        r->c.off += gguf_scalar_size[type];
        return 0;
    }
    uint64_t aat = r->c.off;
    uint32_t et;
    uint64_t n;
    if (rd_u32(r, &et, "an array type") || rd_u64(r, &n, "an array length")) return -1;
    if (et >= GGUF_TYPE_COUNT) return fail_at(r, aat, "key '%s': array of unknown type %u", kv->key, et);
    if (et == GGUF_TYPE_ARRAY) return fail_at(r, aat, "key '%s': nested arrays are not supported", kv->key);
    if (n > GGUF_MAX_ARRAY_LEN)
        return fail_at(r, aat + 4, "key '%s': array length %llu exceeds the limit of %u", kv->key, (unsigned long long)n,
                       GGUF_MAX_ARRAY_LEN);
    kv->arr_type = et;
    kv->n = n;
    kv->data = r->c.p + r->c.off;
    if (et != GGUF_TYPE_STRING) {
        uint64_t bytes = n * gguf_scalar_size[et];   // n <= 2^24, size <= 8: no overflow
        if (!have(r, bytes)) return fail_at(r, r->c.off, "file ends inside the array '%s' (%llu bytes)", kv->key,
                                            (unsigned long long)bytes);
        if (et == GGUF_TYPE_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (r->c.p[r->c.off + i] > 1) return fail_at(r, r->c.off + i, "key '%s': bool value is not 0 or 1", kv->key);
        r->c.off += bytes;
        return 0;
    }
    kv->str_off = malloc(sizeof(uint64_t) * (n ? n : 1));
    if (!kv->str_off) return fail_at(r, aat, "out of memory for array '%s'", kv->key);
    const uint64_t start = r->c.off;
    for (uint64_t i = 0; i < n; i++) {
        kv->str_off[i] = r->c.off - start;
        gguf_str s;
        if (rd_str(r, &s, GGUF_MAX_STRING_LEN, "a string array element")) return -1;
    }
    return 0;
}

static int read_tensor_info(rd *r, gguf_tensor *t) {
    uint64_t at = r->c.off;
    t->file_offset = at;
    gguf_str name;
    if (rd_str(r, &name, GGUF_MAX_KEY_LEN, "a tensor name")) return -1;
    char *nm = dup_name(r, name, at, "tensor name");
    if (!nm) return -1;
    t->name = nm;
    uint64_t dat = r->c.off;
    if (rd_u32(r, &t->n_dims, "a tensor's dimension count")) return -1;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return fail_at(r, dat, "tensor '%s' has %u dimensions (1..%d allowed)", nm, t->n_dims, GGUF_MAX_DIMS);
    int64_t total = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t eat = r->c.off, v;
        if (rd_u64(r, &v, "a tensor dimension")) return -1;
        if (v > (uint64_t)INT64_MAX) return fail_at(r, eat, "tensor '%s' dimension %u is negative", nm, d);
        t->ne[d] = (int64_t)v;
        if (v != 0 && (uint64_t)total > (uint64_t)INT64_MAX / v)
            return fail_at(r, eat, "tensor '%s' element count overflows", nm);
        total *= (int64_t)v;
    }
    uint64_t tat = r->c.off;
    uint32_t type;
    if (rd_u32(r, &type, "a tensor type")) return -1;
    t->type = (enum ggml_type)type;
    if (!ggml_type_supported(t->type))
        return fail_at(r, tat, "tensor '%s' has type %s, which is not supported (f32, f16, bf16, q8_0, q4_0, q4_k, q6_k)", nm,
                       ggml_type_name(t->type));
    int64_t blck = ggml_blck_size(t->type);
    // K-quant super-blocks never cross rows: a row must be whole super-blocks.
    if (blck == 256 && t->ne[0] % blck)
        return fail_at(r, dat, "tensor '%s' has rows of %lld elements, not a multiple of the %s block of %lld", nm,
                       (long long)t->ne[0], ggml_type_name(t->type), (long long)blck);
    // Rows are normally whole blocks; a tensor whose total is a whole number of
    // blocks is accepted as one flat stream (the stories260K Q8_0 file does this).
    if (total % blck) return fail_at(r, dat, "tensor '%s' has %lld elements, not a multiple of the %s block of %lld", nm,
                                     (long long)total, ggml_type_name(t->type), (long long)blck);
    t->nbytes = ggml_nbytes(t->type, total);
    if (total && !t->nbytes) return fail_at(r, dat, "tensor '%s' byte size overflows", nm);
    uint64_t oat = r->c.off;
    (void)oat;
    if (rd_u64(r, &t->offset, "a tensor offset")) return -1;
    return 0;
}

typedef struct span { uint64_t off, n, idx; } span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int parse(rd *r) {
    gguf_ctx *ctx = r->ctx;
    uint32_t magic;
    if (rd_u32(r, &magic, "the magic")) return -1;
    if (magic != GGUF_MAGIC) return fail_at(r, 0, "not a GGUF file (magic %02x %02x %02x %02x)", magic & 0xff,
                                            (magic >> 8) & 0xff, (magic >> 16) & 0xff, magic >> 24);
    if (rd_u32(r, &ctx->version, "the version")) return -1;
    if (ctx->version == 1) return fail_at(r, 4, "version 1 is not supported (v1 used 32-bit counts)");
    if (ctx->version != 2 && ctx->version != 3) return fail_at(r, 4, "unsupported version %u", ctx->version);
    uint64_t nt, nkv;
    if (rd_u64(r, &nt, "the tensor count") || rd_u64(r, &nkv, "the metadata count")) return -1;
    if (nt > GGUF_MAX_TENSORS) return fail_at(r, 8, "tensor count %llu exceeds the limit of %d", (unsigned long long)nt, GGUF_MAX_TENSORS);
    if (nkv > GGUF_MAX_KV) return fail_at(r, 16, "metadata count %llu exceeds the limit of %d", (unsigned long long)nkv, GGUF_MAX_KV);
    // Each pair takes at least 12 bytes, each tensor info at least 28: refuse
    // counts the file cannot hold before allocating for them.
    if (nkv * 12 > r->c.size - r->c.off) return fail_at(r, 16, "metadata count %llu does not fit in the file", (unsigned long long)nkv);
    ctx->kv = calloc(nkv ? nkv : 1, sizeof(gguf_kv));
    ctx->hash_cap_kv = hash_cap_for((int64_t)nkv);
    ctx->kv_hash = calloc(ctx->hash_cap_kv, sizeof(uint32_t));
    if (!ctx->kv || !ctx->kv_hash) return fail_at(r, 16, "out of memory");
    ctx->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < nkv; i++) {
        uint64_t at = r->c.off;
        gguf_kv *kv = &ctx->kv[i];
        ctx->n_kv = (int64_t)i + 1;
        if (read_kv(r, kv)) return -1;
        if (!hash_insert(ctx->kv_hash, ctx->hash_cap_kv, kv->key, (uint32_t)i, kv_name, ctx))
            return fail_at(r, at, "duplicate metadata key '%s'", kv->key);
        if (!strcmp(kv->key, "general.alignment")) {
            uint32_t a;
            if (kv->type != GGUF_TYPE_UINT32) return fail_at(r, at, "general.alignment has type %s, expected u32", gguf_type_name(kv->type));
            memcpy(&a, kv->data, 4);
            if (a == 0 || (a & (a - 1))) return fail_at(r, at, "general.alignment %u is not a power of two", a);
            if (a > (1u << 20)) return fail_at(r, at, "general.alignment %u is too large", a);
            ctx->alignment = a;
        }
    }
    if (nt * 28 > r->c.size - r->c.off) return fail_at(r, 8, "tensor count %llu does not fit in the file", (unsigned long long)nt);
    ctx->tensors = calloc(nt ? nt : 1, sizeof(gguf_tensor));
    ctx->hash_cap_t = hash_cap_for((int64_t)nt);
    ctx->t_hash = calloc(ctx->hash_cap_t, sizeof(uint32_t));
    if (!ctx->tensors || !ctx->t_hash) return fail_at(r, 8, "out of memory");
    for (uint64_t i = 0; i < nt; i++) {
        uint64_t at = r->c.off;
        ctx->n_tensors = (int64_t)i + 1;
        if (read_tensor_info(r, &ctx->tensors[i])) return -1;
        if (!hash_insert(ctx->t_hash, ctx->hash_cap_t, ctx->tensors[i].name, (uint32_t)i, t_name, ctx))
            return fail_at(r, at, "duplicate tensor name '%s'", ctx->tensors[i].name);
    }
    // The data section starts at the next multiple of the alignment.
    uint64_t a = ctx->alignment;
    uint64_t header_end = r->c.off;
    uint64_t data = (header_end + a - 1) / a * a;
    ctx->data_offset = data;
    if (nt == 0) return 0;   // a vocabulary-only file may end right after the header
    if (data > r->c.size) return fail_at(r, header_end, "file ends before the data section (at %llu)", (unsigned long long)data);
    uint64_t data_size = r->c.size - data;
    // Offsets aligned, inside the file, and not overlapping.
    span *sp = malloc(sizeof(span) * nt);
    if (!sp) return fail_at(r, header_end, "out of memory");
    for (uint64_t i = 0; i < nt; i++) {
        gguf_tensor *t = &ctx->tensors[i];
        if (t->offset % a) {
            free(sp);
            return fail_at(r, t->file_offset, "tensor '%s' offset %llu is not a multiple of the alignment %llu", t->name,
                           (unsigned long long)t->offset, (unsigned long long)a);
        }
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            free(sp);
            return fail_at(r, t->file_offset, "tensor '%s' (offset %llu, %llu bytes) extends past the end of the file",
                           t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes);
        }
        t->data = r->c.p + data + t->offset;
        // The codecs read f32 values, and the f16 scales of blocks, in place:
        // the data must sit at a multiple of its element or block size's
        // power-of-two part, up to 4 (f32 4, f16 and q8_0 2). Only files whose
        // general.alignment is below 4 can miss it.
        const size_t tsz = ggml_type_size(t->type), need = tsz % 4 == 0 ? 4 : tsz % 2 == 0 ? 2 : 1;
        if ((uintptr_t)t->data % need) {
            free(sp);
            return fail_at(r, t->file_offset,
                           "tensor '%s' data is not aligned to %zu bytes, which type %s needs (offset %llu, alignment %llu)",
                           t->name, need, ggml_type_name(t->type), (unsigned long long)t->offset, (unsigned long long)a);
        }
        sp[i] = (span){t->offset, t->nbytes, i};
    }
    qsort(sp, nt, sizeof(span), span_cmp);
    for (uint64_t i = 1; i < nt; i++) {
        if (sp[i - 1].off + sp[i - 1].n > sp[i].off) {
            const gguf_tensor *t = &ctx->tensors[sp[i].idx], *p = &ctx->tensors[sp[i - 1].idx];
            free(sp);
            return fail_at(r, t->file_offset, "tensor '%s' overlaps tensor '%s'", t->name, p->name);
        }
    }
    free(sp);
    return 0;
}

// On failure the caller still owns data (and releases it when it is its own).
static gguf_ctx *open_common(const void *data, size_t size, const char *name, bool mapped, enum gguf_hold hold,
                             size_t hold_len, char *err, size_t errlen) {
    gguf_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) { if (err && errlen) snprintf(err, errlen, "%s: out of memory", name); return NULL; }
    ctx->path = strdup(name);
    ctx->base = data;
    ctx->size = size;
    if (!ctx->path) { if (err && errlen) snprintf(err, errlen, "%s: out of memory", name); free(ctx); return NULL; }
    rd r = {.ctx = ctx, .c = {.p = data, .off = 0, .size = size}, .err = err, .errlen = errlen};
    if (parse(&r)) {
        gguf_close(ctx);   // not yet `mapped`: leaves data alone
        return NULL;
    }
    ctx->mapped = mapped;
    ctx->hold = hold;
    ctx->hold_len = hold_len;
    return ctx;
}

gguf_ctx *gguf_open_mem(const void *data, size_t size, const char *name, char *err, size_t errlen) {
    return open_common(data, size, name ? name : "<memory>", false, GGUF_HOLD_MAP, 0, err, errlen);
}

// Reads the whole file into memory from util_huge_alloc(), named by the
// path, and makes it read-only (a stray write faults, as on the mapping).
// NULL with *read_error false when the memory cannot be had; NULL with
// *read_error true (and err set) when the file cannot be read.
static void *read_huge(int fd, const char *path, size_t size, size_t *len, bool *read_error, char *err, size_t errlen) {
    *len = 0;
    *read_error = false;
    size_t hl;
    uint8_t *p = util_huge_alloc(size, &hl, path);
    if (!p) return NULL;
    for (size_t got = 0; got < size;) {
        const size_t chunk = size - got < ((size_t)64 << 20) ? size - got : (size_t)64 << 20;
        const ssize_t k = pread(fd, p + got, chunk, (off_t)got);
        if (k <= 0) {
            if (err && errlen)
                snprintf(err, errlen, "%s: offset %zu: read: %s", path, got, k < 0 ? strerror(errno) : "file shrank while loading");
            util_huge_free(p, hl);
            *read_error = true;
            return NULL;
        }
        got += (size_t)k;
    }
    mprotect(p, hl, PROT_READ);
    *len = hl;
    return p;
}

gguf_ctx *gguf_open(const char *path, char *err, size_t errlen) {
    return gguf_open_with(path, GGUF_HOLD_MAP, err, errlen);
}

gguf_ctx *gguf_open_with(const char *path, enum gguf_hold hold, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { if (err && errlen) snprintf(err, errlen, "%s: %s", path, strerror(errno)); return NULL; }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (err && errlen) snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size < 24) {
        if (err && errlen) snprintf(err, errlen, "%s: offset %lld: file too short for a GGUF header (%lld bytes)", path,
                                    (long long)st.st_size, (long long)st.st_size);
        close(fd);
        return NULL;
    }
    const size_t size = (size_t)st.st_size;
    size_t hold_len = 0;
    void *p = NULL;
    if (hold == GGUF_HOLD_COPY) {
        const char *thp = util_thp_mode();
        // A copy is private memory: only where it leaves at least as much
        // again free (a file mapping pages instead of pushing others out).
        const int64_t avail = util_mem_available();
        if ((!strcmp(thp, "always") || !strcmp(thp, "madvise")) && (avail < 0 || (int64_t)size <= avail / 2)) {
            bool read_error;
            p = read_huge(fd, path, size, &hold_len, &read_error, err, errlen);
            if (read_error) { close(fd); return NULL; }
        }
        if (!p) hold = GGUF_HOLD_MAP;
    }
    if (!p) {
        p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) { if (err && errlen) snprintf(err, errlen, "%s: mmap: %s", path, strerror(errno)); close(fd); return NULL; }
    }
    close(fd);
    gguf_ctx *ctx = open_common(p, size, path, true, hold, hold_len, err, errlen);
    if (!ctx) {   // open_common released nothing of ours
        if (hold == GGUF_HOLD_COPY) util_huge_free(p, hold_len);
        else munmap(p, size);
    }
    return ctx;
}

enum gguf_hold gguf_hold_of(const gguf_ctx *ctx) { return ctx->hold; }

int gguf_set_writable(gguf_ctx *ctx, int writable) {
    if (!ctx->mapped || ctx->hold != GGUF_HOLD_COPY) return -1;
    return mprotect((void *)ctx->base, ctx->hold_len, writable ? PROT_READ | PROT_WRITE : PROT_READ);
}

void gguf_close(gguf_ctx *ctx) {
    if (!ctx) return;
    for (int64_t i = 0; i < ctx->n_kv; i++) { free(ctx->kv[i].key); free(ctx->kv[i].str_off); }
    for (int64_t i = 0; i < ctx->n_tensors; i++) free((char *)ctx->tensors[i].name);
    free(ctx->kv);
    free(ctx->tensors);
    free(ctx->kv_hash);
    free(ctx->t_hash);
    if (ctx->mapped && ctx->hold == GGUF_HOLD_COPY) util_huge_free((void *)ctx->base, ctx->hold_len);
    else if (ctx->mapped) munmap((void *)ctx->base, ctx->size);
    free(ctx->path);
    free(ctx);
}

const char *gguf_path(const gguf_ctx *ctx) { return ctx->path; }
uint32_t gguf_version(const gguf_ctx *ctx) { return ctx->version; }
uint32_t gguf_alignment(const gguf_ctx *ctx) { return ctx->alignment; }
uint64_t gguf_data_offset(const gguf_ctx *ctx) { return ctx->data_offset; }
uint64_t gguf_file_size(const gguf_ctx *ctx) { return ctx->size; }
const void *gguf_file_data(const gguf_ctx *ctx) { return ctx->base; }

int64_t gguf_n_kv(const gguf_ctx *ctx) { return ctx->n_kv; }
int64_t gguf_find_key(const gguf_ctx *ctx, const char *key) {
    return hash_find(ctx->kv_hash, ctx->hash_cap_kv, key, kv_name, ctx);
}
static bool kv_ok(const gguf_ctx *ctx, int64_t i) { return i >= 0 && i < ctx->n_kv; }
const char *gguf_kv_key(const gguf_ctx *ctx, int64_t i) { return kv_ok(ctx, i) ? ctx->kv[i].key : NULL; }
enum gguf_type gguf_kv_type(const gguf_ctx *ctx, int64_t i) { return kv_ok(ctx, i) ? ctx->kv[i].type : GGUF_TYPE_COUNT; }
enum gguf_type gguf_kv_arr_type(const gguf_ctx *ctx, int64_t i) {
    return kv_ok(ctx, i) && ctx->kv[i].type == GGUF_TYPE_ARRAY ? ctx->kv[i].arr_type : GGUF_TYPE_COUNT;
}
uint64_t gguf_kv_arr_n(const gguf_ctx *ctx, int64_t i) {
    return kv_ok(ctx, i) && ctx->kv[i].type == GGUF_TYPE_ARRAY ? ctx->kv[i].n : 0;
}
const void *gguf_kv_arr_data(const gguf_ctx *ctx, int64_t i) {
    return kv_ok(ctx, i) && ctx->kv[i].type == GGUF_TYPE_ARRAY ? ctx->kv[i].data : NULL;
}

gguf_str gguf_kv_arr_str(const gguf_ctx *ctx, int64_t i, uint64_t j) {
    gguf_str s = {NULL, 0};
    if (!kv_ok(ctx, i) || ctx->kv[i].type != GGUF_TYPE_ARRAY || ctx->kv[i].arr_type != GGUF_TYPE_STRING || j >= ctx->kv[i].n)
        return s;
    const uint8_t *p = ctx->kv[i].data + ctx->kv[i].str_off[j];
    memcpy(&s.len, p, 8);
    s.ptr = (const char *)p + 8;
    return s;
}

// Converts a scalar of type t at p.
static bool scalar_int(enum gguf_type t, const uint8_t *p, int64_t *out) {
    switch (t) {
    case GGUF_TYPE_UINT8: *out = p[0]; return true;
    case GGUF_TYPE_INT8: *out = (int8_t)p[0]; return true;
    case GGUF_TYPE_BOOL: *out = p[0] != 0; return true;
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case GGUF_TYPE_UINT64: { uint64_t v; memcpy(&v, p, 8); if (v > INT64_MAX) return false; *out = (int64_t)v; return true; }
    case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); *out = v; return true; }
    default: return false;
    }
}

static bool scalar_float(enum gguf_type t, const uint8_t *p, double *out) {
    if (t == GGUF_TYPE_FLOAT32) { float v; memcpy(&v, p, 4); *out = v; return true; }
    if (t == GGUF_TYPE_FLOAT64) { double v; memcpy(&v, p, 8); *out = v; return true; }
    int64_t i;
    if (scalar_int(t, p, &i)) { *out = (double)i; return true; }
    return false;
}

int64_t gguf_kv_arr_int(const gguf_ctx *ctx, int64_t i, uint64_t j) {
    enum gguf_type t = gguf_kv_arr_type(ctx, i);
    int64_t v = 0;
    if (t == GGUF_TYPE_COUNT || t == GGUF_TYPE_STRING || j >= ctx->kv[i].n) return 0;
    if (!scalar_int(t, ctx->kv[i].data + j * gguf_scalar_size[t], &v)) {
        double d;
        // Floats convert only when finite and in range (anything else is 0).
        if (scalar_float(t, ctx->kv[i].data + j * gguf_scalar_size[t], &d) && d > -9.2e18 && d < 9.2e18) v = (int64_t)d;
    }
    return v;
}

double gguf_kv_arr_float(const gguf_ctx *ctx, int64_t i, uint64_t j) {
    enum gguf_type t = gguf_kv_arr_type(ctx, i);
    double v = 0;
    if (t == GGUF_TYPE_COUNT || t == GGUF_TYPE_STRING || j >= ctx->kv[i].n) return 0;
    scalar_float(t, ctx->kv[i].data + j * gguf_scalar_size[t], &v);
    return v;
}

bool gguf_kv_int(const gguf_ctx *ctx, int64_t i, int64_t *out) {
    return kv_ok(ctx, i) && ctx->kv[i].type < GGUF_TYPE_COUNT && ctx->kv[i].type != GGUF_TYPE_ARRAY &&
           ctx->kv[i].type != GGUF_TYPE_STRING && scalar_int(ctx->kv[i].type, ctx->kv[i].data, out);
}
bool gguf_kv_float(const gguf_ctx *ctx, int64_t i, double *out) {
    return kv_ok(ctx, i) && ctx->kv[i].type != GGUF_TYPE_ARRAY && ctx->kv[i].type != GGUF_TYPE_STRING &&
           scalar_float(ctx->kv[i].type, ctx->kv[i].data, out);
}
bool gguf_kv_str(const gguf_ctx *ctx, int64_t i, gguf_str *out) {
    if (!kv_ok(ctx, i) || ctx->kv[i].type != GGUF_TYPE_STRING) return false;
    memcpy(&out->len, ctx->kv[i].data, 8);
    out->ptr = (const char *)ctx->kv[i].data + 8;
    return true;
}
bool gguf_get_int(const gguf_ctx *ctx, const char *key, int64_t *out) { return gguf_kv_int(ctx, gguf_find_key(ctx, key), out); }
bool gguf_get_float(const gguf_ctx *ctx, const char *key, double *out) { return gguf_kv_float(ctx, gguf_find_key(ctx, key), out); }
bool gguf_get_str(const gguf_ctx *ctx, const char *key, gguf_str *out) { return gguf_kv_str(ctx, gguf_find_key(ctx, key), out); }
bool gguf_get_bool(const gguf_ctx *ctx, const char *key, bool *out) {
    int64_t i = gguf_find_key(ctx, key), v;
    if (!kv_ok(ctx, i) || ctx->kv[i].type != GGUF_TYPE_BOOL || !scalar_int(GGUF_TYPE_BOOL, ctx->kv[i].data, &v)) return false;
    *out = v != 0;
    return true;
}

int64_t gguf_n_tensors(const gguf_ctx *ctx) { return ctx->n_tensors; }
const gguf_tensor *gguf_tensor_at(const gguf_ctx *ctx, int64_t i) {
    return i >= 0 && i < ctx->n_tensors ? &ctx->tensors[i] : NULL;
}
const gguf_tensor *gguf_find_tensor(const gguf_ctx *ctx, const char *name) {
    int64_t i = hash_find(ctx->t_hash, ctx->hash_cap_t, name, t_name, ctx);
    return i >= 0 ? &ctx->tensors[i] : NULL;
}

// ---- writer ------------------------------------------------------------------

typedef struct wkv {
    char *key;
    uint32_t type;
    uint8_t *bytes;    // the encoded value (after the type field)
    size_t n;
} wkv;

typedef struct wtensor {
    char *name;
    enum ggml_type type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes, offset;
    const void *data;
    gguf_fill_fn fill;
    void *user;
} wtensor;

struct gguf_writer {
    uint32_t alignment;
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    bool oom;
};

gguf_writer *gguf_writer_new(uint32_t alignment) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->alignment = alignment ? alignment : GGUF_DEFAULT_ALIGNMENT;
    // Readers assume 32 unless the file says otherwise.
    if (w->alignment != GGUF_DEFAULT_ALIGNMENT) gguf_writer_set_u32(w, "general.alignment", w->alignment);
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) { free(w->kv[i].key); free(w->kv[i].bytes); }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

static void set_raw(gguf_writer *w, const char *key, uint32_t type, const void *bytes, size_t n) {
    uint8_t *b = malloc(n ? n : 1);
    if (!b) { w->oom = true; return; }
    memcpy(b, bytes, n);
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            free(w->kv[i].bytes);
            w->kv[i].type = type;
            w->kv[i].bytes = b;
            w->kv[i].n = n;
            return;
        }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *p = realloc(w->kv, cap * sizeof *p);
        if (!p) { free(b); w->oom = true; return; }
        w->kv = p;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) { free(b); w->oom = true; return; }
    w->kv[w->n_kv++] = (wkv){k, type, b, n};
}

void gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v) { set_raw(w, key, GGUF_TYPE_UINT32, &v, 4); }
void gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v) { set_raw(w, key, GGUF_TYPE_INT32, &v, 4); }
void gguf_writer_set_f32(gguf_writer *w, const char *key, float v) { set_raw(w, key, GGUF_TYPE_FLOAT32, &v, 4); }
void gguf_writer_set_bool(gguf_writer *w, const char *key, bool v) { uint8_t b = v; set_raw(w, key, GGUF_TYPE_BOOL, &b, 1); }
void gguf_writer_set_str(gguf_writer *w, const char *key, const char *v) {
    uint64_t n = strlen(v);
    uint8_t *b = malloc(8 + n);
    if (!b) { w->oom = true; return; }
    memcpy(b, &n, 8);
    memcpy(b + 8, v, n);
    set_raw(w, key, GGUF_TYPE_STRING, b, 8 + n);
    free(b);
}

void gguf_writer_copy_kv(gguf_writer *w, const gguf_ctx *src, int64_t i) {
    if (!kv_ok(src, i)) return;
    const gguf_kv *kv = &src->kv[i];
    size_t n;
    if (kv->type == GGUF_TYPE_STRING) {
        uint64_t len;
        memcpy(&len, kv->data, 8);
        n = 8 + len;
    } else if (kv->type == GGUF_TYPE_ARRAY) {
        size_t body;
        if (kv->arr_type == GGUF_TYPE_STRING) {
            const uint8_t *p = kv->data;
            body = 0;
            for (uint64_t j = 0; j < kv->n; j++) { uint64_t len; memcpy(&len, p + body, 8); body += 8 + len; }
        } else {
            body = kv->n * gguf_scalar_size[kv->arr_type];
        }
        // The array header (type, count) sits just before the elements.
        n = 12 + body;
        set_raw(w, kv->key, GGUF_TYPE_ARRAY, kv->data - 12, n);
        return;
    } else {
        n = gguf_scalar_size[kv->type];
    }
    set_raw(w, kv->key, kv->type, kv->data, n);
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, enum ggml_type type, uint32_t n_dims, const int64_t *ne,
                           const void *data, gguf_fill_fn fill, void *user) {
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || (!data && !fill)) return -1;
    int64_t total = 1;
    wtensor t = {.type = type, .n_dims = n_dims, .data = data, .fill = fill, .user = user};
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t.ne[d] = d < (int)n_dims ? ne[d] : 1;
    for (uint32_t d = 0; d < n_dims; d++) total *= ne[d];
    t.nbytes = ggml_nbytes(type, total);
    if (!t.nbytes) return -1;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *p = realloc(w->t, cap * sizeof *p);
        if (!p) return -1;
        w->t = p;
        w->cap_t = cap;
    }
    t.name = strdup(name);
    if (!t.name) return -1;
    uint64_t off = 0;
    if (w->n_t) {
        const wtensor *p = &w->t[w->n_t - 1];
        off = (p->offset + p->nbytes + w->alignment - 1) / w->alignment * w->alignment;
    }
    t.offset = off;
    w->t[w->n_t++] = t;
    return 0;
}

static int wr(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

static int wr_pad(FILE *f, uint64_t at, uint32_t align) {
    static const uint8_t zero[256];
    uint64_t pad = (align - at % align) % align;
    while (pad) { size_t k = pad > sizeof zero ? sizeof zero : pad; if (wr(f, zero, k)) return -1; pad -= k; }
    return 0;
}

int gguf_writer_write(gguf_writer *w, const char *path, char *err, size_t errlen) {
    if (w->oom) { snprintf(err, errlen, "%s: out of memory while building the file", path); return -1; }
    FILE *f = fopen(path, "wb");
    if (!f) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    int rc = 0;
    uint32_t magic = GGUF_MAGIC, version = 3;
    uint64_t nt = w->n_t, nkv = w->n_kv, at = 24;
    rc |= wr(f, &magic, 4) | wr(f, &version, 4) | wr(f, &nt, 8) | wr(f, &nkv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        uint64_t kl = strlen(w->kv[i].key);
        rc |= wr(f, &kl, 8) | wr(f, w->kv[i].key, kl) | wr(f, &w->kv[i].type, 4) | wr(f, w->kv[i].bytes, w->kv[i].n);
        at += 8 + kl + 4 + w->kv[i].n;
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t nl = strlen(t->name);
        uint32_t type = t->type;
        rc |= wr(f, &nl, 8) | wr(f, t->name, nl) | wr(f, &t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) { uint64_t v = (uint64_t)t->ne[d]; rc |= wr(f, &v, 8); }
        rc |= wr(f, &type, 4) | wr(f, &t->offset, 8);
        at += 8 + nl + 4 + 8ull * t->n_dims + 4 + 8;
    }
    if (w->n_t) rc |= wr_pad(f, at, w->alignment);
    uint64_t pos = 0;
    for (size_t i = 0; i < w->n_t && !rc; i++) {
        const wtensor *t = &w->t[i];
        rc |= wr_pad(f, pos, w->alignment);
        pos = t->offset;
        if (t->data) {
            rc |= wr(f, t->data, t->nbytes);
        } else {
            void *buf = malloc(t->nbytes);
            if (!buf) { rc = -1; break; }
            t->fill(t->user, t->name, buf, t->nbytes);
            rc |= wr(f, buf, t->nbytes);
            free(buf);
        }
        pos += t->nbytes;
    }
    if (w->n_t && !rc) rc |= wr_pad(f, pos, w->alignment);
    if (fclose(f) != 0) rc = -1;
    if (rc) { snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno)); return -1; }
    return 0;
}
