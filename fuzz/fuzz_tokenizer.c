// fuzz_tokenizer.c — libFuzzer target for the tokenizer: arbitrary bytes are
// encoded by a SentencePiece and a BPE vocabulary, with and without special
// tokens, decoded again (whole and streamed), and for the BPE vocabulary the
// round trip must give the input back. The first input byte picks the mode.
// Vocabularies come from $MODELS (default ../shared/models), loaded once.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/gguf.h"
#include "model/tokenizer.h"

static gguf_ctx *g_spm, *g_bpe;
static tok_vocab *v_spm, *v_bpe;

static tok_vocab *load(const char *name, gguf_ctx **g) {
    char path[4096], err[512];
    const char *dir = getenv("MODELS");
    snprintf(path, sizeof path, "%s/vocab/%s", dir && *dir ? dir : "../shared/models", name);
    *g = gguf_open(path, err, sizeof err);
    if (!*g) { fprintf(stderr, "%s\n", err); abort(); }
    tok_vocab *v = tok_load_gguf(*g, err, sizeof err);
    if (!v) { fprintf(stderr, "%s\n", err); abort(); }
    return v;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    v_spm = load("ggml-vocab-llama-spm.gguf", &g_spm);
    v_bpe = load("ggml-vocab-gpt-2.gguf", &g_bpe);
    return 0;
}

static int valid_utf8(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        size_t l = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!l || i + l > n || (l == 2 && c < 0xc2) || (l == 4 && c > 0xf4)) return 0;
        for (size_t k = 1; k < l; k++) if ((p[i + k] & 0xc0) != 0x80) return 0;
        if (l == 3 && ((c == 0xe0 && p[i + 1] < 0xa0) || (c == 0xed && p[i + 1] >= 0xa0))) return 0;
        if (l == 4 && ((c == 0xf0 && p[i + 1] < 0x90) || (c == 0xf4 && p[i + 1] >= 0x90))) return 0;
        i += l;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    const uint8_t mode = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    tok_vocab *v = mode & 1 ? v_bpe : v_spm;
    bool special = mode & 2;
    int64_t n = tok_encode(v, text, len, mode & 4, special, NULL, 0);
    if (n < 0) return 0;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(n + 1));
    if (tok_encode(v, text, len, mode & 4, special, ids, n) != n) abort();
    for (int64_t i = 0; i < n; i++) if (ids[i] < 0 || ids[i] >= tok_n_vocab(v)) abort();
    char *dec = tok_decode(v, ids, n, false);
    // Byte-level BPE without special tokens is lossless.
    if ((mode & 7) == 1 && dec && (strlen(dec) != len || memcmp(dec, text, len)) && !memchr(text, 0, len)) abort();
    // The streamed text is always valid UTF-8, each push fits TOK_STREAM_MAX,
    // and for lossless byte-level BPE over valid UTF-8 it is the input again.
    // A deliberately short buffer may drop characters but never splits one.
    tok_stream st, st_short;
    // As the server and `run` do: SentencePiece drops the space it adds.
    tok_stream_init(&st, v, tok_kind(v) == TOK_KIND_SPM);
    tok_stream_init(&st_short, v, tok_kind(v) == TOK_KIND_SPM);
    static char piece[TOK_STREAM_MAX];
    char small[5];
    size_t cap = 4 * len + 64, at = 0;   // grown when needed (invalid bytes expand 3x)
    char *out = malloc(cap);
    for (int64_t i = 0; i <= n; i++) {
        int w = i < n ? tok_stream_push(v, &st, ids[i], piece, (int)sizeof piece) : tok_stream_flush(&st, piece, (int)sizeof piece);
        if (w < 0 || w > TOK_STREAM_MAX || !valid_utf8((const uint8_t *)piece, (size_t)w)) abort();
        if (at + (size_t)w > cap) {
            cap = 2 * (at + (size_t)w);
            out = realloc(out, cap);
            if (!out) abort();
        }
        memcpy(out + at, piece, (size_t)w);
        at += (size_t)w;
        int ws = i < n ? tok_stream_push(v, &st_short, ids[i], small, (int)sizeof small) : tok_stream_flush(&st_short, small, (int)sizeof small);
        if (ws < 0 || ws > (int)sizeof small || !valid_utf8((const uint8_t *)small, (size_t)ws)) abort();
    }
    if (!valid_utf8((const uint8_t *)out, at)) abort();
    if ((mode & 7) == 1 && valid_utf8((const uint8_t *)text, len) && !memchr(text, 0, len) && (at != len || memcmp(out, text, len))) abort();
    free(out);
    free(dec);
    free(ids);
    return 0;
}
