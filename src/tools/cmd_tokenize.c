// cmd_tokenize.c — `llmscope tokenize`: prints the token ids of a text, as
// llama.cpp's llama-tokenize does.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"
#include "model/tokenizer.h"
#include "opt.h"
#include "tools.h"

static void tokenize_usage(FILE *f) {
    fprintf(f, "usage: llmscope tokenize -m FILE [--ids] [--no-bos] [--no-parse-special] (TEXT | -f FILE | --stdin)\n"
               "  --ids               print only the ids, as [1, 2, 3]\n"
               "  --no-bos            do not add BOS/EOS even when the model asks for them\n"
               "  --no-parse-special  treat texts like <s> as text, not as special tokens\n");
}

static char *slurp(FILE *f, size_t *len) {
    size_t cap = 4096, n = 0;
    char *p = malloc(cap);
    while (p) {
        size_t k = fread(p + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0) break;
        if (n + 1 == cap) { char *q = realloc(p, cap * 2); if (!q) { free(p); return NULL; } p = q; cap *= 2; }
    }
    if (p) { p[n] = 0; *len = n; }
    return p;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL;
    bool ids_only = false, no_bos = false, parse_special = true, from_stdin = false;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        bool miss = false;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { tokenize_usage(stdout); return 0; }
        else if (!strcmp(argv[i], "--ids")) ids_only = true;
        else if (!strcmp(argv[i], "--no-bos")) no_bos = true;
        else if (!strcmp(argv[i], "--no-parse-special")) parse_special = false;
        else if (!strcmp(argv[i], "--stdin")) from_stdin = true;
        else if (opt_value(argc, argv, &i, "-m", "--model", &v, &miss)) model = v;
        else if (opt_value(argc, argv, &i, "-f", "--file", &v, &miss)) file = v;
        else if (argv[i][0] == '-' && argv[i][1]) { fprintf(stderr, "llmscope tokenize: unknown argument '%s'\n", argv[i]); tokenize_usage(stderr); return 2; }
        else if (!text) text = argv[i];
        else { fprintf(stderr, "llmscope tokenize: more than one text given\n"); return 2; }
        if (miss) { fprintf(stderr, "llmscope tokenize: %s needs a value\n", argv[i]); return 2; }
    }
    if (!model || (!text && !file && !from_stdin)) { tokenize_usage(stderr); return 2; }
    char err[512];
    gguf_ctx *g = gguf_open(model, err, sizeof err);
    if (!g) { fprintf(stderr, "llmscope tokenize: %s\n", err); return 1; }
    tok_vocab *v = tok_load_gguf(g, err, sizeof err);
    if (!v) { fprintf(stderr, "llmscope tokenize: %s\n", err); gguf_close(g); return 1; }
    char *buf = NULL;
    size_t len = text ? strlen(text) : 0;
    if (!text) {
        FILE *f = from_stdin ? stdin : fopen(file, "rb");
        if (!f) { fprintf(stderr, "llmscope tokenize: %s: cannot open\n", file); tok_free(v); gguf_close(g); return 1; }
        buf = slurp(f, &len);
        if (f != stdin) fclose(f);
        text = buf;
    }
    int64_t n = text ? tok_encode(v, text, len, !no_bos, parse_special, NULL, 0) : -1;
    int32_t *ids = n >= 0 ? malloc(sizeof(int32_t) * (size_t)(n + 1)) : NULL;
    if (!ids || tok_encode(v, text, len, !no_bos, parse_special, ids, n) != n) {
        fprintf(stderr, "llmscope tokenize: out of memory\n");
        free(ids); free(buf); tok_free(v); gguf_close(g);
        return 1;
    }
    if (ids_only) {
        printf("[");
        for (int64_t i = 0; i < n; i++) printf("%s%d", i ? ", " : "", ids[i]);
        printf("]\n");
    } else {
        for (int64_t i = 0; i < n; i++) {
            char piece[4200];
            int k = tok_piece(v, ids[i], true, piece, (int)sizeof piece - 1);
            if (k > (int)sizeof piece - 1) k = (int)sizeof piece - 1;
            piece[k] = 0;
            printf("%6d -> '%s'\n", ids[i], piece);
        }
    }
    free(ids); free(buf); tok_free(v); gguf_close(g);
    return 0;
}
