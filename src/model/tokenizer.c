// tokenizer.c — SentencePiece-style and byte-level BPE tokenization from
// GGUF metadata, reproducing llama.cpp's results (see tokenizer.h).
// SPM: text (with a leading space when add_space_prefix) has ' ' replaced by
// U+2581, is split into UTF-8 characters, and adjacent pairs are merged by
// highest vocabulary score; leftovers fall back to <0xXX> byte tokens.
// BPE: a pre-tokenizer (PCRE2 regexes named by tokenizer.ggml.pre) splits
// the text into words; each word's bytes are mapped to GPT-2's printable
// alphabet and merged by lowest merge rank.
// Thread safety: the vocabulary is immutable after load; every call keeps its
// scratch on its own stack or heap.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include <errno.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

#define MAX_REGEX 6

typedef struct tok_entry {
    char *text;        // NUL-terminated
    int32_t len;       // bytes
    float score;
    int32_t type;
} tok_entry;

typedef struct hmap {   // string -> int32 (open addressing)
    uint32_t cap;
    const char **key;
    int32_t *klen;
    int32_t *val;
} hmap;

struct tok_vocab {
    enum tok_kind kind;
    char pre[64];
    int32_t n;
    tok_entry *tok;             // (n)
    hmap by_text;               // token text -> id
    hmap merges;                // "left right" -> rank (BPE)
    char **merge_keys;          // owned merge strings
    int32_t n_merges;
    int32_t bos, eos, eot, unk;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
    int32_t byte_tok[256];      // SPM <0xXX> ids, -1 when absent
    int32_t *special;           // ids of control/user/unknown tokens, longest text first
    int32_t n_special;
    pcre2_code *re[MAX_REGEX];
    int n_re;
    char byte_enc[256][4];      // GPT-2 byte -> UTF-8 of its printable codepoint
    uint8_t byte_enc_len[256];
    int16_t byte_dec[512];      // codepoint (< 512) -> byte, -1 when not in the alphabet
};

// ---- small helpers --------------------------------------------------------------

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static bool hmap_init(hmap *m, int32_t n) {
    uint32_t cap = 64;
    while (cap < 2u * (uint32_t)n + 1) cap <<= 1;
    m->cap = cap;
    m->key = calloc(cap, sizeof *m->key);
    m->klen = calloc(cap, sizeof *m->klen);
    m->val = calloc(cap, sizeof *m->val);
    return m->key && m->klen && m->val;
}

static void hmap_free(hmap *m) { free(m->key); free(m->klen); free(m->val); }

// Inserts or overwrites (the last of duplicate texts wins, as in llama.cpp).
static void hmap_put(hmap *m, const char *k, int32_t n, int32_t v) {
    for (uint32_t h = hash_bytes(k, (size_t)n) & (m->cap - 1);; h = (h + 1) & (m->cap - 1)) {
        if (!m->key[h]) { m->key[h] = k; m->klen[h] = n; m->val[h] = v; return; }
        if (m->klen[h] == n && !memcmp(m->key[h], k, (size_t)n)) { m->val[h] = v; return; }
    }
}

static int32_t hmap_get(const hmap *m, const char *k, size_t n) {
    if (!m->cap) return -1;
    for (uint32_t h = hash_bytes(k, n) & (m->cap - 1);; h = (h + 1) & (m->cap - 1)) {
        if (!m->key[h]) return -1;
        if ((size_t)m->klen[h] == n && !memcmp(m->key[h], k, n)) return m->val[h];
    }
}

static int utf8_len(uint8_t c) {   // as llama.cpp's unicode_len_utf8
    static const int lookup[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

static int put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

// A growable id list.
typedef struct ids { int32_t *v; int64_t n, cap; bool oom; } ids;

static void ids_push(ids *o, int32_t id) {
    if (o->n == o->cap) {
        int64_t cap = o->cap ? 2 * o->cap : 64;
        int32_t *p = realloc(o->v, sizeof(int32_t) * (size_t)cap);
        if (!p) { o->oom = true; return; }
        o->v = p;
        o->cap = cap;
    }
    o->v[o->n++] = id;
}

// ---- pre-tokenizer regexes (llama.cpp's, per tokenizer.ggml.pre) ------------------

static const char *RE_GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
static const char *RE_LLAMA3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int pre_regexes(const char *pre, const char **out) {
    if (!strcmp(pre, "llama3") || !strcmp(pre, "llama-bpe") || !strcmp(pre, "llama-v3") || !strcmp(pre, "dbrx") ||
        !strcmp(pre, "smaug-bpe")) {
        out[0] = RE_LLAMA3;
        return 1;
    }
    if (!strcmp(pre, "deepseek-coder")) {
        out[0] = "[\\r\\n]";
        out[1] = "\\s?\\p{L}+";
        out[2] = "\\s?\\p{P}+";
        out[3] = "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+";   // [一-龥ࠀ-一가-퟿]+
        out[4] = "\\p{N}";
        return 5;
    }
    if (!strcmp(pre, "falcon")) {
        out[0] = "[\\p{P}\\$\\+<=>\\^~\\|`]+";
        out[1] = RE_GPT2;
        out[2] = "[0-9][0-9][0-9]";
        return 3;
    }
    if (!strcmp(pre, "starcoder") || !strcmp(pre, "refact") || !strcmp(pre, "command-r") || !strcmp(pre, "smollm") ||
        !strcmp(pre, "codeshell") || !strcmp(pre, "exaone") || !strcmp(pre, "minerva-7b")) {
        out[0] = "\\p{N}";
        out[1] = RE_GPT2;
        return 2;
    }
    if (!strcmp(pre, "gpt-2") || !strcmp(pre, "gpt2") || !strcmp(pre, "mpt") || !strcmp(pre, "olmo") || !strcmp(pre, "jais")) {
        out[0] = RE_GPT2;
        return 1;
    }
    // "default" and unknown names: llama.cpp's default BPE pre-tokenizer.
    out[0] = "[\\p{P}\\$\\+<=>\\^~\\|]+";
    out[1] = RE_GPT2;
    out[2] = "\\p{N}+";
    out[3] = "[0-9][0-9][0-9]";
    return 4;
}

// ---- loading ------------------------------------------------------------------------

static void init_byte_map(tok_vocab *v) {
    // GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256+.
    int n = 0;
    for (int i = 0; i < 512; i++) v->byte_dec[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)n++;
        v->byte_enc_len[b] = (uint8_t)put_utf8(v->byte_enc[b], cp);
        v->byte_dec[cp] = (int16_t)b;
    }
}

static int cmp_special_len;
static const tok_vocab *cmp_vocab;

static int special_cmp(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    int lx = cmp_vocab->tok[x].len, ly = cmp_vocab->tok[y].len;
    if (lx != ly) return ly - lx;
    return x - y;
}

static int32_t meta_id(const gguf_ctx *g, const char *key, int32_t n, int32_t dflt) {
    int64_t v;
    if (!gguf_get_int(g, key, &v)) return dflt;
    return v >= 0 && v < n ? (int32_t)v : -1;
}

tok_vocab *tok_load_gguf(const gguf_ctx *g, char *err, size_t errlen) {
    const char *path = gguf_path(g);
    gguf_str s;
    if (!gguf_get_str(g, "tokenizer.ggml.model", &s)) {
        seterr(err, errlen, "%s: no tokenizer (tokenizer.ggml.model is missing)", path);
        return NULL;
    }
    enum tok_kind kind;
    if (s.len == 5 && !memcmp(s.ptr, "llama", 5)) kind = TOK_KIND_SPM;
    else if (s.len == 4 && !memcmp(s.ptr, "gpt2", 4)) kind = TOK_KIND_BPE;
    else {
        seterr(err, errlen, "%s: tokenizer model '%.*s' is not supported (llama, gpt2)", path, (int)(s.len > 32 ? 32 : s.len), s.ptr);
        return NULL;
    }
    int64_t ki = gguf_find_key(g, "tokenizer.ggml.tokens");
    if (ki < 0 || gguf_kv_arr_type(g, ki) != GGUF_TYPE_STRING || gguf_kv_arr_n(g, ki) == 0 || gguf_kv_arr_n(g, ki) > (1u << 22)) {
        seterr(err, errlen, "%s: tokenizer.ggml.tokens is missing or not a string array", path);
        return NULL;
    }
    tok_vocab *v = calloc(1, sizeof *v);
    if (!v) { seterr(err, errlen, "%s: out of memory", path); return NULL; }
    v->kind = kind;
    v->n = (int32_t)gguf_kv_arr_n(g, ki);
    v->tok = calloc((size_t)v->n, sizeof *v->tok);
    if (!v->tok || !hmap_init(&v->by_text, v->n)) goto oom;
    int64_t si = gguf_find_key(g, "tokenizer.ggml.scores"), ti = gguf_find_key(g, "tokenizer.ggml.token_type");
    bool have_scores = si >= 0 && gguf_kv_arr_n(g, si) == (uint64_t)v->n && gguf_kv_arr_type(g, si) != GGUF_TYPE_STRING;
    bool have_types = ti >= 0 && gguf_kv_arr_n(g, ti) == (uint64_t)v->n && gguf_kv_arr_type(g, ti) != GGUF_TYPE_STRING;
    for (int32_t i = 0; i < v->n; i++) {
        gguf_str t = gguf_kv_arr_str(g, ki, (uint64_t)i);
        if (t.len > TOK_PIECE_MAX) { seterr(err, errlen, "%s: token %d is %llu bytes long", path, i, (unsigned long long)t.len); goto fail; }
        v->tok[i].text = malloc(t.len + 1);
        if (!v->tok[i].text) goto oom;
        memcpy(v->tok[i].text, t.ptr, t.len);
        v->tok[i].text[t.len] = 0;
        v->tok[i].len = (int32_t)t.len;
        v->tok[i].score = have_scores ? (float)gguf_kv_arr_float(g, si, (uint64_t)i) : 0.0f;
        v->tok[i].type = have_types ? (int32_t)gguf_kv_arr_int(g, ti, (uint64_t)i) : TT_NORMAL;
        hmap_put(&v->by_text, v->tok[i].text, v->tok[i].len, i);
    }
    v->bos = meta_id(g, "tokenizer.ggml.bos_token_id", v->n, kind == TOK_KIND_SPM ? 1 : -1);
    v->eos = meta_id(g, "tokenizer.ggml.eos_token_id", v->n, kind == TOK_KIND_SPM ? 2 : -1);
    v->eot = meta_id(g, "tokenizer.ggml.eot_token_id", v->n, -1);
    v->unk = meta_id(g, "tokenizer.ggml.unknown_token_id", v->n, kind == TOK_KIND_SPM ? 0 : -1);
    v->add_bos = kind == TOK_KIND_SPM;
    v->add_eos = false;
    v->add_space_prefix = kind == TOK_KIND_SPM;
    gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos);
    gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos);
    gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix);
    if (v->bos < 0) v->add_bos = false;
    if (v->eos < 0) v->add_eos = false;
    snprintf(v->pre, sizeof v->pre, "default");
    if (gguf_get_str(g, "tokenizer.ggml.pre", &s))
        snprintf(v->pre, sizeof v->pre, "%.*s", (int)(s.len < 63 ? s.len : 63), s.ptr);

    for (int b = 0; b < 256; b++) {
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        v->byte_tok[b] = hmap_get(&v->by_text, hex, 6);
    }
    // Special tokens, longest first (for partitioning text).
    v->special = malloc(sizeof(int32_t) * (size_t)v->n);
    if (!v->special) goto oom;
    for (int32_t i = 0; i < v->n; i++) {
        int t = v->tok[i].type;
        if ((t == TT_CONTROL || t == TT_USER || t == TT_UNKNOWN) && v->tok[i].len > 0) v->special[v->n_special++] = i;
    }
    cmp_vocab = v;
    (void)cmp_special_len;
    qsort(v->special, (size_t)v->n_special, sizeof(int32_t), special_cmp);

    if (kind == TOK_KIND_BPE) {
        init_byte_map(v);
        v->ignore_merges = !strcmp(v->pre, "llama3") || !strcmp(v->pre, "llama-bpe") || !strcmp(v->pre, "llama-v3");
        int64_t mi = gguf_find_key(g, "tokenizer.ggml.merges");
        if (mi < 0 || gguf_kv_arr_type(g, mi) != GGUF_TYPE_STRING) {
            seterr(err, errlen, "%s: BPE tokenizer without tokenizer.ggml.merges", path);
            goto fail;
        }
        v->n_merges = (int32_t)gguf_kv_arr_n(g, mi);
        v->merge_keys = calloc((size_t)v->n_merges + 1, sizeof(char *));
        if (!v->merge_keys || !hmap_init(&v->merges, v->n_merges)) goto oom;
        for (int32_t i = 0; i < v->n_merges; i++) {
            gguf_str m = gguf_kv_arr_str(g, mi, (uint64_t)i);
            if (m.len > 8192) { seterr(err, errlen, "%s: merge %d is too long", path, i); goto fail; }
            v->merge_keys[i] = malloc(m.len + 1);
            if (!v->merge_keys[i]) goto oom;
            memcpy(v->merge_keys[i], m.ptr, m.len);
            v->merge_keys[i][m.len] = 0;
            // Keep the first (lowest) rank of duplicate merges.
            if (hmap_get(&v->merges, v->merge_keys[i], m.len) < 0) hmap_put(&v->merges, v->merge_keys[i], (int32_t)m.len, i);
        }
        const char *res[MAX_REGEX];
        v->n_re = pre_regexes(v->pre, res);
        for (int i = 0; i < v->n_re; i++) {
            int ec;
            PCRE2_SIZE eo;
            v->re[i] = pcre2_compile((PCRE2_SPTR)res[i], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK,
                                     &ec, &eo, NULL);
            if (!v->re[i]) { seterr(err, errlen, "%s: pre-tokenizer regex %d does not compile", path, i); goto fail; }
            pcre2_jit_compile(v->re[i], PCRE2_JIT_COMPLETE);   // optional: falls back to the interpreter
        }
    }
    return v;
oom:
    seterr(err, errlen, "%s: out of memory loading the vocabulary", path);
fail:
    tok_free(v);
    return NULL;
}

void tok_free(tok_vocab *v) {
    if (!v) return;
    if (v->tok) for (int32_t i = 0; i < v->n; i++) free(v->tok[i].text);
    free(v->tok);
    if (v->merge_keys) for (int32_t i = 0; i < v->n_merges; i++) free(v->merge_keys[i]);
    free(v->merge_keys);
    hmap_free(&v->by_text);
    hmap_free(&v->merges);
    free(v->special);
    for (int i = 0; i < v->n_re; i++) pcre2_code_free(v->re[i]);
    free(v);
}

enum tok_kind tok_kind(const tok_vocab *v) { return v->kind; }
const char *tok_pre_name(const tok_vocab *v) { return v->pre; }
int32_t tok_n_vocab(const tok_vocab *v) { return v->n; }
int32_t tok_bos(const tok_vocab *v) { return v->bos; }
int32_t tok_eos(const tok_vocab *v) { return v->eos; }
bool tok_add_bos(const tok_vocab *v) { return v->add_bos; }
bool tok_add_eos(const tok_vocab *v) { return v->add_eos; }
const char *tok_text(const tok_vocab *v, int32_t id) { return id >= 0 && id < v->n ? v->tok[id].text : ""; }
bool tok_is_control(const tok_vocab *v, int32_t id) { return id >= 0 && id < v->n && v->tok[id].type == TT_CONTROL; }
int32_t tok_find(const tok_vocab *v, const char *text, size_t len) { return hmap_get(&v->by_text, text, len); }

bool tok_is_eog(const tok_vocab *v, int32_t id) {
    if (id < 0 || id >= v->n) return false;
    if (id == v->eos || id == v->eot) return true;
    if (v->tok[id].type != TT_CONTROL) return false;
    static const char *eog[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|endoftext|>", "<|end_of_text|>", "<end_of_turn>", "<|eom_id|>"};
    for (size_t i = 0; i < sizeof eog / sizeof eog[0]; i++) if (!strcmp(v->tok[id].text, eog[i])) return true;
    return false;
}

// ---- merging (shared by SPM and BPE) ------------------------------------------

typedef struct sym { int32_t prev, next; int32_t off, n; } sym;   // a run of bytes of the word
typedef struct big { float prio; int32_t left, right, nl, nr; } big; // a candidate merge

typedef struct heap { big *v; int32_t n, cap; } heap;

// Max-heap on prio, ties: smaller left first (llama.cpp's order).
static bool big_before(const big *a, const big *b) {
    return a->prio > b->prio || (a->prio == b->prio && a->left < b->left);
}

static bool heap_push(heap *h, big b) {
    if (h->n == h->cap) {
        int32_t cap = h->cap ? 2 * h->cap : 64;
        big *p = realloc(h->v, sizeof(big) * (size_t)cap);
        if (!p) return false;
        h->v = p;
        h->cap = cap;
    }
    int32_t i = h->n++;
    while (i > 0 && big_before(&b, &h->v[(i - 1) / 2])) { h->v[i] = h->v[(i - 1) / 2]; i = (i - 1) / 2; }
    h->v[i] = b;
    return true;
}

static big heap_pop(heap *h) {
    big top = h->v[0], last = h->v[--h->n];
    int32_t i = 0;
    for (;;) {
        int32_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && big_before(&h->v[c + 1], &h->v[c])) c++;
        if (!big_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

// Priority of merging symbols l and r of word w, or false when not mergeable.
static bool pair_prio(const tok_vocab *v, const char *w, const sym *l, const sym *r, float *prio, char *scratch, size_t cap) {
    if (v->kind == TOK_KIND_SPM) {
        int32_t id = hmap_get(&v->by_text, w + l->off, (size_t)(l->n + r->n));
        if (id < 0) return false;
        *prio = v->tok[id].score;
        return true;
    }
    size_t n = (size_t)l->n + 1 + (size_t)r->n;
    if (n > cap) return false;
    memcpy(scratch, w + l->off, (size_t)l->n);
    scratch[l->n] = ' ';
    memcpy(scratch + l->n + 1, w + r->off, (size_t)r->n);
    int32_t rank = hmap_get(&v->merges, scratch, n);
    if (rank < 0) return false;
    *prio = -(float)rank;   // lower rank first
    return true;
}

// Merges the word w (n bytes) and appends its token ids.
static int merge_word(const tok_vocab *v, const char *w, int32_t n, ids *out) {
    if (n == 0) return 0;
    if (v->kind == TOK_KIND_BPE && v->ignore_merges) {
        int32_t id = hmap_get(&v->by_text, w, (size_t)n);
        if (id >= 0) { ids_push(out, id); return 0; }
    }
    sym *s = malloc(sizeof(sym) * (size_t)n);
    heap h = {0};
    char *scratch = malloc((size_t)n + 2);
    if (!s || !scratch) { free(s); free(scratch); return -1; }
    int32_t ns = 0;
    for (int32_t off = 0; off < n;) {
        int32_t len = utf8_len((uint8_t)w[off]);
        if (len > n - off) len = n - off;
        s[ns] = (sym){ns - 1, ns + 1, off, len};
        ns++;
        off += len;
    }
    s[ns - 1].next = -1;
    int rc = 0;
    for (int32_t i = 0; i + 1 < ns; i++) {
        float p;
        if (pair_prio(v, w, &s[i], &s[i + 1], &p, scratch, (size_t)n + 2) && !heap_push(&h, (big){p, i, i + 1, s[i].n, s[i + 1].n})) rc = -1;
    }
    while (h.n > 0 && rc == 0) {
        big b = heap_pop(&h);
        sym *l = &s[b.left], *r = &s[b.right];
        if (l->n == 0 || r->n == 0 || l->n != b.nl || r->n != b.nr || l->next != b.right) continue;   // stale
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = b.left;
        float p;
        if (l->prev >= 0 && pair_prio(v, w, &s[l->prev], l, &p, scratch, (size_t)n + 2) &&
            !heap_push(&h, (big){p, l->prev, b.left, s[l->prev].n, l->n})) rc = -1;
        if (l->next >= 0 && pair_prio(v, w, l, &s[l->next], &p, scratch, (size_t)n + 2) &&
            !heap_push(&h, (big){p, b.left, l->next, l->n, s[l->next].n})) rc = -1;
    }
    for (int32_t i = 0; i >= 0 && i < ns && rc == 0; i = s[i].next) {
        int32_t id = hmap_get(&v->by_text, w + s[i].off, (size_t)s[i].n);
        if (id >= 0) { ids_push(out, id); continue; }
        // Fallback: one token per byte.
        for (int32_t k = 0; k < s[i].n; k++) {
            uint8_t c = (uint8_t)w[s[i].off + k];
            int32_t bid = v->kind == TOK_KIND_SPM ? v->byte_tok[c] : hmap_get(&v->by_text, (const char *)&c, 1);
            if (v->kind == TOK_KIND_SPM && bid < 0) bid = v->unk;
            if (bid >= 0) ids_push(out, bid);
        }
    }
    free(h.v);
    free(s);
    free(scratch);
    return rc;
}

// SPM: one text fragment, with ' ' → U+2581 and an optional leading space.
static int spm_fragment(const tok_vocab *v, const char *text, size_t len, bool prefix, ids *out) {
    size_t n_sp = prefix ? 1 : 0;
    for (size_t i = 0; i < len; i++) n_sp += text[i] == ' ';
    size_t cap = len + 2 * n_sp + 1;
    if (cap > INT32_MAX) return -1;
    char *w = malloc(cap);
    if (!w) return -1;
    size_t o = 0;
    if (prefix) { memcpy(w, "\xe2\x96\x81", 3); o = 3; }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') { memcpy(w + o, "\xe2\x96\x81", 3); o += 3; }
        else w[o++] = text[i];
    }
    int rc = merge_word(v, w, (int32_t)o, out);
    free(w);
    return rc;
}

typedef struct span { size_t off, len; } span;
typedef struct spans { span *v; size_t n, cap; } spans;

static bool spans_push(spans *s, size_t off, size_t len) {
    if (!len) return true;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        span *p = realloc(s->v, sizeof(span) * cap);
        if (!p) return false;
        s->v = p;
        s->cap = cap;
    }
    s->v[s->n++] = (span){off, len};
    return true;
}

static int utf8_seq(const uint8_t *p, int n);

static bool valid_utf8(const char *p, size_t n) {
    for (size_t i = 0; i < n;) {
        int l = utf8_seq((const uint8_t *)p + i, (int)(n - i > 8 ? 8 : n - i));
        if (l <= 0) return false;
        i += (size_t)l;
    }
    return true;
}

// BPE: pre-tokenize with each regex in turn (matches and the gaps between
// them both become pieces), then byte-encode and merge every piece.
static int bpe_fragment(const tok_vocab *v, const char *text, size_t len, ids *out) {
    spans cur = {0}, nxt = {0};
    int rc = 0;
    // Invalid UTF-8 bytes become pieces of their own (the regexes only ever
    // see valid text); each still becomes its byte's token.
    for (size_t i = 0, run = 0; i <= len && rc == 0;) {
        int l = i < len ? utf8_seq((const uint8_t *)text + i, (int)(len - i > 8 ? 8 : len - i)) : 1;
        if (i == len || l <= 0) {
            if (!spans_push(&cur, run, i - run)) rc = -1;
            if (i < len && !spans_push(&cur, i, 1)) rc = -1;
            i++;
            run = i;
        } else {
            i += (size_t)l;
        }
    }
    pcre2_match_data *md = NULL;
    for (int r = 0; r < v->n_re && rc == 0; r++) {
        md = pcre2_match_data_create_from_pattern(v->re[r], NULL);
        if (!md) { rc = -1; break; }
        nxt.n = 0;
        for (size_t i = 0; i < cur.n && rc == 0; i++) {
            const char *p = text + cur.v[i].off;
            size_t n = cur.v[i].len, at = 0, prev = 0;
            if (!valid_utf8(p, n)) { if (!spans_push(&nxt, cur.v[i].off, n)) rc = -1; continue; }
            while (at <= n) {
                int m = pcre2_match(v->re[r], (PCRE2_SPTR)p, n, at, PCRE2_NO_UTF_CHECK, md, NULL);
                if (m < 0) break;
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                size_t s = ov[0], e = ov[1];
                if (e == s) {   // empty match: step one character
                    at = s + 1;
                    while (at < n && ((uint8_t)p[at] & 0xc0) == 0x80) at++;
                    continue;
                }
                if (!spans_push(&nxt, cur.v[i].off + prev, s - prev) || !spans_push(&nxt, cur.v[i].off + s, e - s)) rc = -1;
                prev = at = e;
            }
            if (!spans_push(&nxt, cur.v[i].off + prev, n - prev)) rc = -1;
        }
        pcre2_match_data_free(md);
        spans t = cur; cur = nxt; nxt = t;
    }
    char *w = NULL;
    size_t wcap = 0;
    for (size_t i = 0; i < cur.n && rc == 0; i++) {
        size_t need = cur.v[i].len * 2 + 1;   // each byte encodes to at most 2 bytes of UTF-8
        if (need > wcap) {
            char *p = realloc(w, need);
            if (!p) { rc = -1; break; }
            w = p;
            wcap = need;
        }
        size_t o = 0;
        for (size_t k = 0; k < cur.v[i].len; k++) {
            uint8_t c = (uint8_t)text[cur.v[i].off + k];
            memcpy(w + o, v->byte_enc[c], v->byte_enc_len[c]);
            o += v->byte_enc_len[c];
        }
        if (o > INT32_MAX || merge_word(v, w, (int32_t)o, out)) rc = -1;
    }
    free(w);
    free(cur.v);
    free(nxt.v);
    return rc;
}

// Splits text around special tokens (longest first); text fragments are
// encoded with spm/bpe_fragment, special ones emitted as their ids.
typedef struct frag { size_t off, len; int32_t id; } frag;   // id >= 0: a special token

int64_t tok_encode(const tok_vocab *v, const char *text, size_t len, bool add_special, bool parse_special, int32_t *out,
                   int64_t cap) {
    ids o = {0};
    frag *fr = malloc(sizeof(frag) * 16);
    size_t nf = 0, fcap = 16;
    int rc = 0;
    if (!fr) { errno = ENOMEM; return -1; }
    if (len) fr[nf++] = (frag){0, len, -1};
    for (int32_t si = 0; si < v->n_special && rc == 0; si++) {
        const tok_entry *t = &v->tok[v->special[si]];
        if (!parse_special && t->type != TT_USER) continue;
        for (size_t f = 0; f < nf; f++) {
            if (fr[f].id >= 0 || fr[f].len < (size_t)t->len) continue;
            const char *p = text + fr[f].off;
            const char *hit = memmem(p, fr[f].len, t->text, (size_t)t->len);
            if (!hit) continue;
            size_t a = (size_t)(hit - p), b = a + (size_t)t->len;
            // Replace fragment f by [before][special][after].
            if (nf + 2 > fcap) {
                frag *q = realloc(fr, sizeof(frag) * fcap * 2);
                if (!q) { rc = -1; break; }
                fr = q;
                fcap *= 2;
            }
            frag before = {fr[f].off, a, -1}, sp = {fr[f].off + a, (size_t)t->len, v->special[si]},
                 after = {fr[f].off + b, fr[f].len - b, -1};
            memmove(fr + f + 3, fr + f + 1, sizeof(frag) * (nf - f - 1));
            fr[f] = before;
            fr[f + 1] = sp;
            fr[f + 2] = after;
            nf += 2;
            // Continue scanning the "after" part in the next iterations (f + 2).
            f += 1;
        }
        // Drop empty text fragments.
        size_t k = 0;
        for (size_t f = 0; f < nf; f++) if (fr[f].id >= 0 || fr[f].len > 0) fr[k++] = fr[f];
        nf = k;
    }
    if (add_special && v->add_bos) ids_push(&o, v->bos);
    bool prev_special = true;
    for (size_t f = 0; f < nf && rc == 0; f++) {
        if (fr[f].id >= 0) { ids_push(&o, fr[f].id); prev_special = true; continue; }
        if (v->kind == TOK_KIND_SPM) rc = spm_fragment(v, text + fr[f].off, fr[f].len, v->add_space_prefix && prev_special, &o);
        else rc = bpe_fragment(v, text + fr[f].off, fr[f].len, &o);
        prev_special = false;
    }
    if (add_special && v->add_eos) ids_push(&o, v->eos);
    free(fr);
    if (rc || o.oom) { free(o.v); errno = ENOMEM; return -1; }
    int64_t n = o.n;
    if (out && n > 0 && cap > 0) memcpy(out, o.v, sizeof(int32_t) * (size_t)(n < cap ? n : cap));
    free(o.v);
    return n;
}

// ---- decoding ------------------------------------------------------------------

int tok_piece(const tok_vocab *v, int32_t id, bool render_special, char *buf, int cap) {
    if (id < 0 || id >= v->n) return 0;
    const tok_entry *t = &v->tok[id];
    char tmp[4096 + 8];
    int n = 0;
    if (t->type == TT_CONTROL || t->type == TT_UNUSED) {
        if (render_special) { memcpy(tmp, t->text, (size_t)t->len); n = t->len; }
    } else if (v->kind == TOK_KIND_SPM) {
        if (t->type == TT_BYTE && t->len == 6 && !strncmp(t->text, "<0x", 3)) {
            tmp[0] = (char)strtol(t->text + 3, NULL, 16);
            n = 1;
        } else {
            for (int i = 0; i < t->len;) {
                if (i + 2 < t->len && !memcmp(t->text + i, "\xe2\x96\x81", 3)) { tmp[n++] = ' '; i += 3; }
                else tmp[n++] = t->text[i++];
            }
        }
    } else {
        if (t->type == TT_USER) { memcpy(tmp, t->text, (size_t)t->len); n = t->len; }
        else {
            // Reverse the GPT-2 byte alphabet, codepoint by codepoint.
            for (int i = 0; i < t->len;) {
                uint8_t c = (uint8_t)t->text[i];
                int l = utf8_len(c);
                if (l > t->len - i) l = t->len - i;
                uint32_t cp = c;
                if (l == 2) cp = ((c & 0x1fu) << 6) | ((uint8_t)t->text[i + 1] & 0x3fu);
                if (l <= 2 && cp < 512 && v->byte_dec[cp] >= 0) tmp[n++] = (char)v->byte_dec[cp];
                else { memcpy(tmp + n, t->text + i, (size_t)l); n += l; }
                i += l;
            }
        }
    }
    if (buf && cap > 0) memcpy(buf, tmp, (size_t)(n < cap ? n : cap));
    return n;
}

void tok_stream_init(tok_stream *s, const tok_vocab *v, bool strip_leading_space) {
    (void)v;
    memset(s, 0, sizeof *s);
    s->strip_leading_space = strip_leading_space;
}

// Length of a complete, valid UTF-8 sequence at p (n bytes available):
// > 0 valid, 0 incomplete (may complete later), < 0 invalid (one byte to replace).
static int utf8_seq(const uint8_t *p, int n) {
    int l = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3 : (p[0] & 0xf8) == 0xf0 ? 4 : -1;
    if (l < 0 || (l == 2 && p[0] < 0xc2) || (l == 4 && p[0] > 0xf4)) return -1;
    for (int i = 1; i < l; i++) {
        if (i >= n) return 0;
        if ((p[i] & 0xc0) != 0x80) return -1;
    }
    if (l == 3 && ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0))) return -1;
    if (l == 4 && ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))) return -1;
    return l;
}

// Appends one whole UTF-8 sequence (or nothing when it does not fit: a
// sequence is never split, so the output stays valid UTF-8 even when the
// caller's buffer is short).
static int emit(tok_stream *s, const char *p, int n, char *out, int cap, int at) {
    if (!s->started) {
        s->started = true;
        if (s->strip_leading_space && n == 1 && p[0] == ' ') return at;
    }
    if (n > cap - at) return at;
    memcpy(out + at, p, (size_t)n);
    return at + n;
}

static int stream_feed(tok_stream *s, const char *piece, int n, bool flush, char *out, int cap) {
    char buf[4096 + 16];
    int len = 0;
    memcpy(buf, s->pending, (size_t)s->n_pending);
    len = s->n_pending;
    if (n > (int)sizeof buf - len) n = (int)sizeof buf - len;
    memcpy(buf + len, piece, (size_t)n);
    len += n;
    s->n_pending = 0;
    int at = 0, i = 0;
    while (i < len) {
        int l = utf8_seq((const uint8_t *)buf + i, len - i);
        if (l > 0) { at = emit(s, buf + i, l, out, cap, at); i += l; continue; }
        if (l == 0 && !flush) {   // hold back the incomplete tail
            memcpy(s->pending, buf + i, (size_t)(len - i));
            s->n_pending = len - i;
            break;
        }
        at = emit(s, "\xef\xbf\xbd", 3, out, cap, at);   // U+FFFD for an invalid or unfinished byte
        i += 1;
        if (l == 0) break;   // flushing an incomplete character: one replacement for it
    }
    return at;
}

int tok_stream_push(const tok_vocab *v, tok_stream *s, int32_t id, char *out, int cap) {
    char piece[TOK_PIECE_MAX + 8];
    int n = tok_piece(v, id, false, piece, (int)sizeof piece);
    if (n > (int)sizeof piece) n = (int)sizeof piece;
    return stream_feed(s, piece, n, false, out, cap);
}

int tok_stream_flush(tok_stream *s, char *out, int cap) {
    if (!s->n_pending) return 0;
    return stream_feed(s, "", 0, true, out, cap);
}

char *tok_decode(const tok_vocab *v, const int32_t *idv, int64_t n, bool render_special) {
    size_t cap = 64, len = 0;
    char *o = malloc(cap);
    if (!o) return NULL;
    for (int64_t i = 0; i < n; i++) {
        char piece[4096 + 8];
        int k = tok_piece(v, idv[i], render_special, piece, (int)sizeof piece);
        if (k > (int)sizeof piece) k = (int)sizeof piece;
        if (len + (size_t)k + 1 > cap) {
            while (len + (size_t)k + 1 > cap) cap *= 2;
            char *p = realloc(o, cap);
            if (!p) { free(o); return NULL; }
            o = p;
        }
        memcpy(o + len, piece, (size_t)k);
        len += (size_t)k;
    }
    o[len] = 0;
    return o;
}
