// fuzz_gguf.c — libFuzzer target for the GGUF reader: arbitrary bytes go
// through gguf_open_mem(); whatever is accepted is walked completely (every
// key, array element and tensor byte), so a bad bound shows up as an ASan
// report rather than staying latent. The first row of every accepted
// tensor is also decoded, so the block codecs (K-quants included) read
// exactly the bytes the reader vouched for.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "compute/quant.h"
#include "model/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // An exact-size copy: any read past the end is caught.
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    char err[512];
    gguf_ctx *g = gguf_open_mem(copy, size, "fuzz.gguf", err, sizeof err);
    if (g) {
        volatile uint64_t sink = 0;
        for (int64_t i = 0; i < gguf_n_kv(g); i++) {
            int64_t v; double d; gguf_str s;
            sink += strlen(gguf_kv_key(g, i));
            if (gguf_kv_int(g, i, &v)) sink += (uint64_t)v;
            if (gguf_kv_float(g, i, &d)) sink += (uint64_t)(d == d);
            if (gguf_kv_str(g, i, &s) && s.len) sink += (uint8_t)s.ptr[s.len - 1];
            uint64_t n = gguf_kv_arr_n(g, i);
            for (uint64_t j = 0; j < n && j < 4096; j++) {
                if (gguf_kv_arr_type(g, i) == GGUF_TYPE_STRING) {
                    gguf_str e = gguf_kv_arr_str(g, i, j);
                    if (e.len) sink += (uint8_t)e.ptr[e.len - 1];
                } else {
                    sink += (uint64_t)gguf_kv_arr_int(g, i, j);
                }
            }
            if (gguf_find_key(g, gguf_kv_key(g, i)) < 0) abort();   // every key is findable
        }
        for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
            const gguf_tensor *t = gguf_tensor_at(g, i);
            if (gguf_find_tensor(g, t->name) != t) abort();
            if (t->nbytes) sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
            static float row[4096];
            const int64_t blck = ggml_blck_size(t->type);
            if (t->ne[0] > 0 && t->ne[0] <= 4096 && t->ne[0] % blck == 0 && ggml_nbytes(t->type, t->ne[0]) <= t->nbytes) {
                dequantize_row(t->type, t->data, row, t->ne[0]);
                sink += (uint64_t)(row[t->ne[0] - 1] == row[t->ne[0] - 1]);
            }
        }
        (void)sink;
        gguf_close(g);
    } else if (!memchr(err, ':', strlen(err)) || strchr(err, '\n')) {
        abort();   // refusals are one line naming the input
    }
    free(copy);
    return 0;
}
