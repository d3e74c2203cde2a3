// cmd_gguf.c — `llmscope gguf info FILE` prints a GGUF file's metadata and
// tensor table; `llmscope gguf synth` writes a llama model of a real shape
// with deterministic random weights and a vocabulary copied from a GGUF file.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/quant.h"
#include "model/gguf.h"
#include "opt.h"
#include "tools.h"

static void gguf_usage(FILE *f) {
    fprintf(f, "usage: llmscope gguf info FILE\n"
               "       llmscope gguf synth --shape NAME --type TYPE --vocab VOCAB.gguf\n"
               "                           [--seed N] [--ctx N] -o OUT.gguf\n"
               "shapes: stories15M, stories110M, tinyllama-1.1b, tiny, tiny256\n"
               "types:  f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, q4_k_m (q4_k with q6_k for output\n"
               "        and some attn_v/ffn_down, as llama.cpp's Q4_K_M); K-quant tensors whose rows\n"
               "        are not a multiple of 256 fall back to q4_0 (q4_k) or q8_0 (q6_k)\n");
}

static void print_str(gguf_str s, size_t max) {
    putchar('"');
    for (uint64_t i = 0; i < s.len && i < max; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c < 0x20) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (s.len > max) printf("… (%llu bytes)", (unsigned long long)s.len);
}

static int info(const char *path) {
    char err[512];
    gguf_ctx *g = gguf_open(path, err, sizeof err);
    if (!g) { fprintf(stderr, "llmscope gguf: %s\n", err); return 1; }
    printf("file: %s\nversion: %u\nalignment: %u\ndata offset: %llu\nfile size: %llu\n", path, gguf_version(g),
           gguf_alignment(g), (unsigned long long)gguf_data_offset(g), (unsigned long long)gguf_file_size(g));
    printf("\nmetadata (%lld):\n", (long long)gguf_n_kv(g));
    for (int64_t i = 0; i < gguf_n_kv(g); i++) {
        enum gguf_type t = gguf_kv_type(g, i);
        printf("  %-44s %-5s ", gguf_kv_key(g, i), gguf_type_name(t));
        int64_t iv; double fv; gguf_str sv;
        if (t == GGUF_TYPE_STRING && gguf_kv_str(g, i, &sv)) print_str(sv, 80);
        else if (t == GGUF_TYPE_ARRAY) {
            enum gguf_type et = gguf_kv_arr_type(g, i);
            uint64_t n = gguf_kv_arr_n(g, i);
            printf("%s[%llu] [", gguf_type_name(et), (unsigned long long)n);
            for (uint64_t j = 0; j < n && j < 5; j++) {
                if (j) printf(", ");
                if (et == GGUF_TYPE_STRING) print_str(gguf_kv_arr_str(g, i, j), 24);
                else if (et == GGUF_TYPE_FLOAT32 || et == GGUF_TYPE_FLOAT64) printf("%g", gguf_kv_arr_float(g, i, j));
                else printf("%lld", (long long)gguf_kv_arr_int(g, i, j));
            }
            printf("%s]", n > 5 ? ", …" : "");
        } else if ((t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64) && gguf_kv_float(g, i, &fv)) printf("%g", fv);
        else if (t == GGUF_TYPE_BOOL && gguf_kv_int(g, i, &iv)) printf("%s", iv ? "true" : "false");
        else if (gguf_kv_int(g, i, &iv)) printf("%lld", (long long)iv);
        putchar('\n');
    }
    printf("\ntensors (%lld):\n  %-32s %-5s %-24s %12s %12s\n", (long long)gguf_n_tensors(g), "name", "type", "shape", "offset", "bytes");
    uint64_t params = 0, bytes = 0;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        char shape[96];
        int o = snprintf(shape, sizeof shape, "[");
        uint64_t ne = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            o += snprintf(shape + o, sizeof shape - (size_t)o, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
            ne *= (uint64_t)t->ne[d];
        }
        snprintf(shape + o, sizeof shape - (size_t)o, "]");
        printf("  %-32s %-5s %-24s %12llu %12llu\n", t->name, ggml_type_name(t->type), shape, (unsigned long long)t->offset,
               (unsigned long long)t->nbytes);
        params += ne;
        bytes += t->nbytes;
    }
    printf("\ntotal: %llu elements, %llu bytes of tensor data\n", (unsigned long long)params, (unsigned long long)bytes);
    gguf_close(g);
    return 0;
}

typedef struct shape { const char *name; int dim, layers, heads, kv_heads, ffn; } shape;
static const shape shapes[] = {
    {"stories15M", 288, 6, 6, 6, 768},
    {"stories110M", 768, 12, 12, 12, 2048},
    {"tinyllama-1.1b", 2048, 22, 32, 4, 5632},
    {"tiny", 64, 2, 4, 2, 128},
    {"tiny256", 256, 2, 4, 2, 512},   // every row a multiple of 256: K-quants everywhere
};

typedef struct synth_ctx { enum ggml_type type; uint64_t seed; } synth_ctx;   // one per tensor

// llama.cpp's use_more_bits(): the layers where Q4_K_M spends Q6_K on attn_v
// and ffn_down (the first and last eighth, and every third in between).
static bool more_bits(int layer, int n_layer) {
    return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

// The type a weight of `ne0`-value rows gets: `base`, with Q4_K_M's Q6_K
// tensors when `mix` is set (output, and attn_v / ffn_down of more_bits()
// layers; layer < 0 for the others), and a block type for K-quant tensors
// whose rows are not whole super-blocks: q4_0 for q4_k (llama.cpp picks
// q5_0, which this project does not read) and q8_0 for q6_k (as llama.cpp).
static enum ggml_type weight_type(enum ggml_type base, bool mix, const char *name, int layer, int n_layer, int64_t ne0) {
    enum ggml_type t = base;
    if (mix && (!strcmp(name, "output.weight") || (layer >= 0 && more_bits(layer, n_layer)))) t = GGML_TYPE_Q6_K;
    if (ne0 % 256 == 0) return t;
    if (t == GGML_TYPE_Q4_K) return GGML_TYPE_Q4_0;
    if (t == GGML_TYPE_Q6_K) return GGML_TYPE_Q8_0;
    return t;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Deterministic weights: the sum of four uniforms (close to normal) with std
// 0.02, from a stream seeded by the seed and the tensor's name; norms are 1.
static void fill_tensor(void *user, const char *name, void *dst, uint64_t nbytes) {
    synth_ctx *sc = user;
    bool norm = strstr(name, "norm") != NULL;
    enum ggml_type type = sc->type;
    uint64_t n = nbytes / ggml_type_size(type) * (uint64_t)ggml_blck_size(type);
    uint64_t st = sc->seed;
    for (const char *p = name; *p; p++) st = st * 1099511628211ull ^ (uint8_t)*p;
    float buf[4096];
    for (uint64_t at = 0; at < n; at += 4096) {
        uint64_t k = n - at < 4096 ? n - at : 4096;
        for (uint64_t i = 0; i < k; i++) {
            if (norm) { buf[i] = 1.0f; continue; }
            uint64_t r = splitmix(&st);
            float s = (float)(r & 0xffff) + (float)((r >> 16) & 0xffff) + (float)((r >> 32) & 0xffff) + (float)(r >> 48);
            buf[i] = (s / 65536.0f - 2.0f) * (0.02f / 0.57735f);   // 4 uniforms: variance 1/3
        }
        quantize_row(type, buf, (char *)dst + ggml_nbytes(type, (int64_t)at), (int64_t)k);
    }
}

static int synth(int argc, char **argv) {
    const char *shape_name = NULL, *type_name = "q8_0", *vocab = NULL, *out = NULL;
    int64_t seed = 1, ctx = 2048;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        bool miss = false, ok = true;
        if (opt_value(argc, argv, &i, NULL, "--shape", &v, &miss)) shape_name = v;
        else if (opt_value(argc, argv, &i, NULL, "--type", &v, &miss)) type_name = v;
        else if (opt_value(argc, argv, &i, NULL, "--vocab", &v, &miss)) vocab = v;
        else if (opt_value(argc, argv, &i, "-o", "--output", &v, &miss)) out = v;
        else if (opt_value(argc, argv, &i, NULL, "--seed", &v, &miss)) ok = miss || opt_i64("gguf synth", "--seed", v, 0, INT64_MAX, &seed);
        else if (opt_value(argc, argv, &i, NULL, "--ctx", &v, &miss)) ok = miss || opt_i64("gguf synth", "--ctx", v, 16, 1 << 20, &ctx);
        else { fprintf(stderr, "llmscope gguf synth: unknown argument '%s'\n", argv[i]); gguf_usage(stderr); return 2; }
        if (miss) { fprintf(stderr, "llmscope gguf synth: %s needs a value\n", argv[i]); return 2; }
        if (!ok) return 2;
    }
    if (!shape_name || !vocab || !out) { gguf_usage(stderr); return 2; }
    const shape *sh = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) if (!strcmp(shapes[i].name, shape_name)) sh = &shapes[i];
    if (!sh) { fprintf(stderr, "llmscope gguf synth: unknown shape '%s'\n", shape_name); gguf_usage(stderr); return 2; }
    static const struct { const char *name; enum ggml_type t; uint32_t ftype; } types[] = {
        {"f32", GGML_TYPE_F32, 0}, {"f16", GGML_TYPE_F16, 1}, {"bf16", GGML_TYPE_BF16, 32},
        {"q8_0", GGML_TYPE_Q8_0, 7}, {"q4_0", GGML_TYPE_Q4_0, 2},
        // llama.cpp's file types: 14 is Q4_K_S (the closest to all-Q4_K), 15 Q4_K_M, 18 Q6_K.
        {"q4_k", GGML_TYPE_Q4_K, 14}, {"q6_k", GGML_TYPE_Q6_K, 18}, {"q4_k_m", GGML_TYPE_Q4_K, 15}};
    int ti = -1;
    for (int i = 0; i < (int)(sizeof types / sizeof types[0]); i++) if (!strcmp(types[i].name, type_name)) ti = i;
    if (ti < 0) { fprintf(stderr, "llmscope gguf synth: unknown type '%s'\n", type_name); return 2; }
    char err[512];
    gguf_ctx *vg = gguf_open(vocab, err, sizeof err);
    if (!vg) { fprintf(stderr, "llmscope gguf synth: %s\n", err); return 1; }
    int64_t tk = gguf_find_key(vg, "tokenizer.ggml.tokens");
    if (tk < 0 || gguf_kv_arr_type(vg, tk) != GGUF_TYPE_STRING) {
        fprintf(stderr, "llmscope gguf synth: %s has no tokenizer.ggml.tokens\n", vocab);
        gguf_close(vg);
        return 1;
    }
    const int64_t n_vocab = (int64_t)gguf_kv_arr_n(vg, tk);
    gguf_writer *w = gguf_writer_new(32);
    char name[128];
    snprintf(name, sizeof name, "%s (synthetic, seed %lld)", sh->name, (long long)seed);
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "general.name", name);
    gguf_writer_set_u32(w, "general.file_type", types[ti].ftype);
    if (types[ti].t != GGML_TYPE_F32 && types[ti].t != GGML_TYPE_F16 && types[ti].t != GGML_TYPE_BF16) gguf_writer_set_u32(w, "general.quantization_version", 2);
    gguf_writer_set_u32(w, "llama.context_length", (uint32_t)ctx);
    gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)sh->dim);
    gguf_writer_set_u32(w, "llama.block_count", (uint32_t)sh->layers);
    gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)sh->ffn);
    gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)sh->heads);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)sh->kv_heads);
    gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)(sh->dim / sh->heads));
    gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)n_vocab);
    for (int64_t i = 0; i < gguf_n_kv(vg); i++)
        if (!strncmp(gguf_kv_key(vg, i), "tokenizer.", 10)) gguf_writer_copy_kv(w, vg, i);
    const int64_t E = sh->dim, KV = (int64_t)sh->dim / sh->heads * sh->kv_heads, F = sh->ffn;
    const enum ggml_type t = types[ti].t;
    const bool mix = !strcmp(type_name, "q4_k_m");
    synth_ctx sc[3 + 9 * 32];   // the writer keeps a pointer per tensor until it writes
    int n_t = 0, rc = 0;
    // Tensor nm of ne = {a, b}: F32 for norms, else weight_type() (layer ≥ 0 where Q4_K_M may raise it).
#define ADD(nm, norm, layer, nd, a, b)                                                                               \
    do {                                                                                                      \
        int64_t ne_[2] = {a, b};                                                                              \
        sc[n_t] = (synth_ctx){norm ? GGML_TYPE_F32 : weight_type(t, mix, nm, layer, sh->layers, a), (uint64_t)seed}; \
        rc |= gguf_writer_add_tensor(w, nm, sc[n_t].type, nd, ne_, NULL, fill_tensor, &sc[n_t]);              \
        n_t++;                                                                                                \
    } while (0)
    ADD("token_embd.weight", false, -1, 2, E, n_vocab);
    ADD("output_norm.weight", true, -1, 1, E, 1);
    ADD("output.weight", false, -1, 2, E, n_vocab);
    for (int l = 0; l < sh->layers; l++) {
        char nm[64];
#define L(suffix, norm, layer, nd, a, b) snprintf(nm, sizeof nm, "blk.%d." suffix ".weight", l); ADD(nm, norm, layer, nd, a, b)
        L("attn_norm", true, -1, 1, E, 1);
        L("attn_q", false, -1, 2, E, E);
        L("attn_k", false, -1, 2, E, KV);
        L("attn_v", false, l, 2, E, KV);
        L("attn_output", false, -1, 2, E, E);
        L("ffn_norm", true, -1, 1, E, 1);
        L("ffn_gate", false, -1, 2, E, F);
        L("ffn_up", false, -1, 2, E, F);
        L("ffn_down", false, l, 2, F, E);
#undef L
    }
#undef ADD
    if (rc) fprintf(stderr, "llmscope gguf synth: cannot lay out the tensors\n");
    else if (gguf_writer_write(w, out, err, sizeof err)) { fprintf(stderr, "llmscope gguf synth: %s\n", err); rc = 1; }
    else printf("wrote %s: %s, %s, %lld tokens\n", out, sh->name, type_name, (long long)n_vocab);
    gguf_writer_free(w);
    gguf_close(vg);
    return rc ? 1 : 0;
}

int cmd_gguf(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) { gguf_usage(argc < 2 ? stderr : stdout); return argc < 2 ? 2 : 0; }
    if (!strcmp(argv[1], "info")) {
        if (argc != 3) { gguf_usage(stderr); return 2; }
        return info(argv[2]);
    }
    if (!strcmp(argv[1], "synth")) return synth(argc - 1, argv + 1);
    fprintf(stderr, "llmscope gguf: unknown subcommand '%s'\n", argv[1]);
    gguf_usage(stderr);
    return 2;
}
