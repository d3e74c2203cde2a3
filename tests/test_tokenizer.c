// test_tokenizer.c — the tokenizer against llama.cpp's conformance vectors
// (shared/models/vocab/*.inp/.out, SentencePiece and BPE) and the golden
// encodings, plus round trips and the streaming detokenizer.
#include <jansson.h>

#include "harness.h"
#include "model/gguf.h"
#include "model/tokenizer.h"

typedef struct vocab_file { gguf_ctx *g; tok_vocab *v; } vocab_file;

static vocab_file open_vocab(const char *name) {
    vocab_file f = {0};
    char err[512];
    f.g = gguf_open(harness_model(name), err, sizeof err);
    if (!f.g) { fprintf(stderr, "  %s\n", err); return f; }
    f.v = tok_load_gguf(f.g, err, sizeof err);
    if (!f.v) fprintf(stderr, "  %s\n", err);
    return f;
}

static void close_vocab(vocab_file *f) { tok_free(f->v); gguf_close(f->g); }

// Runs every vector of <name>.inp/.out; returns the number of mismatches.
static int run_vectors(const char *name, int *total) {
    char path[600];
    vocab_file f = open_vocab(name);
    if (!f.v) { close_vocab(&f); return -1; }
    snprintf(path, sizeof path, "%s.inp", harness_model(name));
    char *inp = harness_read_file(path, NULL);
    snprintf(path, sizeof path, "%s.out", harness_model(name));
    char *out = harness_read_file(path, NULL);
    if (!inp || !out) { free(inp); free(out); close_vocab(&f); return -1; }
    const char *sep = "\n__ggml_vocab_test__\n";
    int bad = 0, n = 0;
    char *p = inp, *line = out;
    for (;;) {
        char *e = strstr(p, sep);
        if (!e) break;
        char *nl = strchr(line, '\n');
        if (!nl) break;
        *nl = 0;
        // Expected ids.
        int32_t want[4096];
        int nw = 0;
        for (char *q = line; *q;) {
            while (*q == ' ') q++;
            if (!*q) break;
            want[nw++] = (int32_t)strtol(q, &q, 10);
        }
        int32_t got[4096];
        int64_t ng = tok_encode(f.v, p, (size_t)(e - p), false, false, got, 4096);
        if (ng != nw || memcmp(got, want, sizeof(int32_t) * (size_t)nw)) {
            if (bad < 3) {
                fprintf(stderr, "  %s #%d [%.*s]\n    want:", name, n, (int)(e - p > 60 ? 60 : e - p), p);
                for (int i = 0; i < nw && i < 20; i++) fprintf(stderr, " %d", want[i]);
                fprintf(stderr, "\n    got: ");
                for (int i = 0; i < ng && i < 20; i++) fprintf(stderr, " %d", got[i]);
                fprintf(stderr, "\n");
            }
            bad++;
        }
        // Decoding gives the text back (the SPM prefix space removed).
        char *dec = tok_decode(f.v, got, ng < 4096 ? ng : 4096, false);
        const char *d = dec;
        if (tok_kind(f.v) == TOK_KIND_SPM && d && *d == ' ' && ng > 0) d++;
        if (dec && (strlen(d) != (size_t)(e - p) || memcmp(d, p, (size_t)(e - p)))) {
            if (bad < 3) fprintf(stderr, "  %s #%d: decode differs: [%s]\n", name, n, d);
            bad++;
        }
        free(dec);
        n++;
        p = e + strlen(sep);
        line = nl + 1;
    }
    *total = n;
    fprintf(stderr, "  %s: %d vectors, %d mismatches\n", name, n, bad);
    free(inp);
    free(out);
    close_vocab(&f);
    return bad;
}

#define VOCAB_TEST(fn, file) static void fn(void) { int n = 0; int bad = run_vectors(file, &n); CHECK(bad == 0); CHECK(n > 10); }
VOCAB_TEST(test_llama_spm_vectors, "vocab/ggml-vocab-llama-spm.gguf")
VOCAB_TEST(test_phi3_vectors, "vocab/ggml-vocab-phi-3.gguf")
VOCAB_TEST(test_gpt2_vectors, "vocab/ggml-vocab-gpt-2.gguf")
VOCAB_TEST(test_starcoder_vectors, "vocab/ggml-vocab-starcoder.gguf")
VOCAB_TEST(test_falcon_vectors, "vocab/ggml-vocab-falcon.gguf")
VOCAB_TEST(test_deepseek_coder_vectors, "vocab/ggml-vocab-deepseek-coder.gguf")

// golden/tokenizer_encodings.json: Llama 2 vocabulary and the 512-token one.
static void test_golden_encodings(void) {
    json_error_t je;
    json_t *j = json_load_file(harness_model("golden/tokenizer_encodings.json"), 0, &je);
    REQUIRE(j);
    const char *sets[2][2] = {{"tokenizer_bin", "vocab/ggml-vocab-llama-spm.gguf"}, {"tok512_bin", "stories260K.gguf"}};
    for (int s = 0; s < 2; s++) {
        vocab_file f = open_vocab(sets[s][1]);
        REQUIRE(f.v);
        json_t *cases = json_object_get(j, sets[s][0]);
        CHECK(json_array_size(cases) >= 5);
        for (size_t i = 0; i < json_array_size(cases); i++) {
            json_t *c = json_array_get(cases, i);
            const char *text = json_string_value(json_object_get(c, "text"));
            json_t *want = json_object_get(c, "ids_with_bos");
            int32_t got[512];
            int64_t n = tok_encode(f.v, text, strlen(text), true, false, got, 512);
            bool same = n == (int64_t)json_array_size(want);
            for (int64_t k = 0; same && k < n; k++) same = got[k] == json_integer_value(json_array_get(want, (size_t)k));
            CHECKF(same, "%s case %zu [%s]", sets[s][0], i, text);
        }
        close_vocab(&f);
    }
    json_decref(j);
}

static void test_special_and_cap(void) {
    vocab_file f = open_vocab("vocab/ggml-vocab-llama-spm.gguf");
    REQUIRE(f.v);
    int32_t ids[64];
    // "<s>" is BOS when special tokens are parsed, text otherwise.
    int64_t n = tok_encode(f.v, "<s>Hi", 5, false, true, ids, 64);
    CHECK(n >= 2 && ids[0] == 1);
    n = tok_encode(f.v, "<s>Hi", 5, false, false, ids, 64);
    CHECK(n >= 2 && ids[0] != 1);
    // A small buffer still reports the full count; BOS only with add_special.
    int64_t full = tok_encode(f.v, "I believe the meaning of life is", 32, true, false, NULL, 0);
    CHECK(full == 8);
    n = tok_encode(f.v, "I believe the meaning of life is", 32, true, false, ids, 3);
    CHECK(n == 8 && ids[0] == 1 && ids[1] == 306 && ids[2] == 4658);
    CHECK(tok_is_eog(f.v, 2) && !tok_is_eog(f.v, 306));
    // Empty text: nothing but BOS.
    CHECK(tok_encode(f.v, "", 0, true, false, ids, 64) == 1 && ids[0] == 1);
    close_vocab(&f);
}

// Continuation bytes a UTF-8 lead byte announces (-1: not a lead byte).
static int utf8_need(unsigned char c) {
    return c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
}

// A stream over text's tokens (SentencePiece spaces stripped when strip).
static int64_t encode_for_stream(vocab_file *f, const char *text, int32_t *ids, int64_t cap, tok_stream *st, bool strip) {
    int64_t n = tok_encode(f->v, text, strlen(text), false, false, ids, cap);
    tok_stream_init(st, f->v, strip);
    return n;
}

// The streaming detokenizer holds back partial characters and matches decode().
static void test_stream_utf8(void) {
    vocab_file f = open_vocab("vocab/ggml-vocab-llama-spm.gguf");
    REQUIRE(f.v);
    const char *text = "Ünïcödé 日本語 🦙 emoji and bytes";
    int32_t ids[256];
    tok_stream st;
    int64_t n = encode_for_stream(&f, text, ids, 256, &st, true);
    REQUIRE(n > 0 && n < 256);
    char out[1024];
    int len = 0;
    for (int64_t i = 0; i < n; i++) {
        int k = tok_stream_push(f.v, &st, ids[i], out + len, (int)sizeof out - len);
        // Each emitted chunk is whole UTF-8: its last lead byte's sequence is complete.
        for (int b = len; b < len + k; b++) {
            int need = utf8_need((unsigned char)out[b]);
            if (need > 0) CHECK(b + need < len + k);
        }
        len += k;
    }
    len += tok_stream_flush(&st, out + len, (int)sizeof out - len);
    out[len] = 0;
    CHECKF(!strcmp(out, text), "[%s]", out);
    // A lone lead byte (from a byte token) is replaced at flush, never emitted raw.
    int32_t lead = tok_find(f.v, "<0xE6>", 6);
    REQUIRE(lead >= 0);
    tok_stream_init(&st, f.v, false);
    CHECK(tok_stream_push(f.v, &st, lead, out, (int)sizeof out) == 0);
    int k = tok_stream_flush(&st, out, (int)sizeof out);
    CHECK(k == 3 && !memcmp(out, "\xef\xbf\xbd", 3));
    close_vocab(&f);
}

// A short output buffer drops whole characters and never splits one, and a
// token of invalid bytes (each becomes U+FFFD, 3 bytes) fits TOK_STREAM_MAX.
static void test_stream_short_buffer(void) {
    vocab_file f = open_vocab("vocab/ggml-vocab-gpt-2.gguf");
    REQUIRE(f.v);
    const char *text = "日本語 ................................................................";
    int32_t ids[64];
    tok_stream st;
    int64_t n = encode_for_stream(&f, text, ids, 64, &st, false);
    REQUIRE(n > 1 && n < 64);
    char small[4];
    int total = 0;
    for (int64_t i = 0; i < n; i++) {
        int k = tok_stream_push(f.v, &st, ids[i], small, (int)sizeof small);
        CHECK(k >= 0 && k <= (int)sizeof small);
        // No byte of a multi-byte character is written without the others.
        for (int b = 0; b < k; b++) {
            int need = utf8_need((unsigned char)small[b]);
            CHECKF(need >= 0 && b + need < k, "push %lld byte %d of %d", (long long)i, b, k);
            if (need > 0) b += need;
        }
        total += k;
    }
    CHECK(total > 0 && total < (int)strlen(text));   // something was dropped, whole
    // 64 continuation bytes in a row: a single BPE token would be 64 x 3
    // bytes of replacement; whatever the split, each push fits the bound.
    char bad[65];
    memset(bad, 0x80, 64);
    bad[64] = 0;
    int32_t bids[128];
    int64_t bn = tok_encode(f.v, bad, 64, false, false, bids, 128);
    REQUIRE(bn > 0 && bn <= 128);
    static char out[TOK_STREAM_MAX];
    tok_stream_init(&st, f.v, false);
    int sum = 0;
    for (int64_t i = 0; i < bn; i++) {
        int k = tok_stream_push(f.v, &st, bids[i], out, (int)sizeof out);
        CHECK(k % 3 == 0 && k <= TOK_STREAM_MAX);
        for (int b = 0; b < k; b += 3) CHECK(!memcmp(out + b, "\xef\xbf\xbd", 3));
        sum += k;
    }
    sum += tok_stream_flush(&st, out, (int)sizeof out);
    CHECKF(sum == 64 * 3, "%d bytes of replacement for 64 invalid bytes", sum);
    close_vocab(&f);
}

// Long input: encodes (no quadratic blow-up in practice) and round-trips.
static void test_long_text(void) {
    vocab_file f = open_vocab("vocab/ggml-vocab-gpt-2.gguf");
    REQUIRE(f.v);
    size_t len = 200000;
    char *t = malloc(len + 1);
    const char *words[] = {"the ", "quick ", "brown ", "fox ", "jumps ", "over ", "lazy ", "dogs, ", "42 ", "times!\n"};
    size_t o = 0;
    for (int i = 0; o < len - 16; i++) { size_t w = strlen(words[i % 10]); memcpy(t + o, words[i % 10], w); o += w; }
    t[o] = 0;
    int64_t n = tok_encode(f.v, t, o, false, false, NULL, 0);
    REQUIRE(n > 10000);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    CHECK(tok_encode(f.v, t, o, false, false, ids, n) == n);
    char *d = tok_decode(f.v, ids, n, false);
    CHECK(d && !strcmp(d, t));
    free(d); free(ids); free(t);
    close_vocab(&f);
}

int main(void) {
    RUN(test_llama_spm_vectors);
    RUN(test_phi3_vectors);
    RUN(test_gpt2_vectors);
    RUN(test_starcoder_vectors);
    RUN(test_falcon_vectors);
    RUN(test_deepseek_coder_vectors);
    RUN(test_golden_encodings);
    RUN(test_special_and_cap);
    RUN(test_stream_utf8);
    RUN(test_stream_short_buffer);
    RUN(test_long_text);
    return harness_done();
}
