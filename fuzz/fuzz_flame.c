// fuzz_flame.c — libFuzzer target for `llmscope flame`'s decoders: the pprof
// reader (gzip'd or raw profile.proto), the `perf script` parser and the
// folded-stack parser, chosen by the first byte (or by detection). Whatever
// is accepted is folded, written as folded text and drawn as an SVG, so a bad
// bound anywhere shows up as an ASan report. Checks: refusals are one line
// naming the input; every node's total covers its children's.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util/flame_svg.h"
#include "util/folded.h"
#include "util/pprof_read.h"

static FILE *sink(void) {
    static FILE *f;
    if (!f) f = fopen("/dev/null", "w");
    return f;
}

static void check_err(const char *err) {
    if (!strstr(err, "fuzz:") || strchr(err, '\n')) abort();   // refusals are one line naming the input
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t mode = data[0] & 3;
    bool tag = data[0] & 4;
    uint8_t *copy = malloc(size - 1 ? size - 1 : 1);   // exact size: any read past the end is caught
    if (!copy) return 0;
    memcpy(copy, data + 1, size - 1);
    size_t n = size - 1;
    fold_format fmt = mode == 0 ? fold_detect(copy, n) : mode == 1 ? FOLD_FORMAT_PPROF : mode == 2 ? FOLD_FORMAT_PERF : FOLD_FORMAT_FOLDED;
    fold_tree *t = fold_new();
    char err[512] = "";
    int rc = 0;
    if (fmt == FOLD_FORMAT_PPROF) {
        pprof_data *p = pprof_data_parse(copy, n, "fuzz", err, sizeof err);
        if (!p) {
            check_err(err);
        } else {
            for (size_t i = 0; i < pprof_data_n_types(p) && i < 4; i++) {
                const char *unit;
                if (!pprof_data_type(p, i, &unit) || !unit) abort();
                if (pprof_data_fold(p, i, tag ? "phase" : NULL, "decode", t, err, sizeof err)) check_err(err);
            }
            if (pprof_data_find_type(p, "cpu") >= (int)pprof_data_n_types(p)) abort();
            pprof_data_free(p);
        }
    } else if (fmt == FOLD_FORMAT_PERF) {
        rc = fold_parse_perf(t, (const char *)copy, n, "fuzz", err, sizeof err);
    } else if (fmt == FOLD_FORMAT_FOLDED) {
        rc = fold_parse_folded(t, (const char *)copy, n, "fuzz", err, sizeof err);
    }
    if (rc) check_err(err);
    size_t nn;
    const fold_node *nodes = fold_nodes(t, &nn);
    for (size_t i = 0; i < nn; i++) {
        int64_t sum = nodes[i].self;
        for (uint32_t c = nodes[i].first_child; c; c = nodes[c].next_sibling) {
            if (c >= nn || nodes[c].parent != i || nodes[c].depth != nodes[i].depth + 1) abort();
            sum += nodes[c].total;
        }
        if (sum != nodes[i].total) abort();
    }
    FILE *f = sink();
    if (f) {
        fold_write(t, f);
        flame_svg_opts o = {.min_frac = (data[0] & 8) ? 0 : -1};
        flame_svg_write(t, &o, f);
    }
    fold_free(t);
    free(copy);
    return 0;
}
