// cmd_flame.c — `llmscope flame`: turns a pprof profile, `perf script`
// output or folded stacks into folded stacks or a self-contained interactive
// SVG flame graph. The decoding lives in src/util (pprof_read, folded,
// flame_svg) so the tests and the fuzz targets reach it.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opt.h"
#include "tools.h"
#include "util/flame_svg.h"
#include "util/folded.h"
#include "util/pprof_read.h"

#define MAX_INPUT ((size_t)1 << 30)   // bytes read from the input file

static void flame_usage(FILE *f) {
    fprintf(f,
            "usage: llmscope flame [options] [FILE|-]\n"
            "  FILE is a pprof profile (gzip'd or raw profile.proto), `perf script` output, or folded\n"
            "  stacks ('a;b;c N' lines); the format is detected. Without FILE (or with -) it reads stdin.\n"
            "  --folded               print folded stacks (root first), not an SVG\n"
            "  -o, --output FILE      write to FILE (default: stdout)\n"
            "  --sample-index N|NAME  pprof: the value to use (default: the profile's default, else the last)\n"
            "  --tagfocus KEY=VALUE   pprof: keep only samples with that label (e.g. phase=decode)\n"
            "  --title TEXT           the SVG's title (default: Flame Graph)\n"
            "  --width PIXELS         the SVG's width (default: 1200)\n"
            "  --min-width PERCENT    leave out frames narrower than this (default: 0.1)\n"
            "  --format pprof|perf|folded  skip detection\n");
}

// Reads a whole file (or stdin for "-"), up to MAX_INPUT bytes.
static uint8_t *read_input(const char *path, size_t *len, char *err, size_t errlen) {
    bool is_stdin = !strcmp(path, "-");
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap >= MAX_INPUT) { snprintf(err, errlen, "%s: larger than %zu MiB", path, MAX_INPUT >> 20); free(buf); buf = NULL; break; }
            uint8_t *q = realloc(buf, cap * 2);
            if (!q) { free(buf); buf = NULL; snprintf(err, errlen, "%s: out of memory", path); break; }
            buf = q;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) {
            if (ferror(f)) { snprintf(err, errlen, "%s: read error: %s", path, strerror(errno)); free(buf); buf = NULL; }
            break;
        }
    }
    if (!buf && !err[0]) snprintf(err, errlen, "%s: out of memory", path);
    if (!is_stdin) fclose(f);
    *len = n;
    return buf;
}

int cmd_flame(int argc, char **argv) {
    const char *input = NULL, *output = NULL, *sample_index = NULL, *tagfocus = NULL, *title = NULL, *format = NULL;
    const char *width_s = NULL, *minw_s = NULL;
    bool folded = false;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        bool miss = false;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { flame_usage(stdout); return 0; }
        else if (!strcmp(argv[i], "--folded")) folded = true;
        else if (opt_value(argc, argv, &i, "-o", "--output", &v, &miss)) output = v;
        else if (opt_value(argc, argv, &i, NULL, "--sample-index", &v, &miss)) sample_index = v;
        else if (opt_value(argc, argv, &i, NULL, "--tagfocus", &v, &miss)) tagfocus = v;
        else if (opt_value(argc, argv, &i, NULL, "--title", &v, &miss)) title = v;
        else if (opt_value(argc, argv, &i, NULL, "--width", &v, &miss)) width_s = v;
        else if (opt_value(argc, argv, &i, NULL, "--min-width", &v, &miss)) minw_s = v;
        else if (opt_value(argc, argv, &i, NULL, "--format", &v, &miss)) format = v;
        else if (argv[i][0] == '-' && argv[i][1]) { fprintf(stderr, "llmscope flame: unknown argument '%s'\n", argv[i]); flame_usage(stderr); return 2; }
        else if (!input) input = argv[i];
        else { fprintf(stderr, "llmscope flame: more than one input given\n"); return 2; }
        if (miss) { fprintf(stderr, "llmscope flame: %s needs a value\n", argv[i]); return 2; }
    }
    int64_t width = 1200;
    double minw = 0.1;
    if (width_s && !opt_i64("flame", "--width", width_s, 200, 100000, &width)) return 2;
    if (minw_s && !opt_f64("flame", "--min-width", minw_s, 0, 100, &minw)) return 2;
    char *tag_key = NULL;
    const char *tag_value = NULL;
    if (tagfocus) {
        const char *eq = strchr(tagfocus, '=');
        if (!eq || eq == tagfocus) { fprintf(stderr, "llmscope flame: --tagfocus wants KEY=VALUE, got '%s'\n", tagfocus); return 2; }
        tag_key = strndup(tagfocus, (size_t)(eq - tagfocus));
        tag_value = eq + 1;
        if (!tag_key) { fprintf(stderr, "llmscope flame: out of memory\n"); return 1; }
    }
    fold_format fmt = FOLD_FORMAT_UNKNOWN;
    if (format) {
        if (!strcmp(format, "pprof")) fmt = FOLD_FORMAT_PPROF;
        else if (!strcmp(format, "perf")) fmt = FOLD_FORMAT_PERF;
        else if (!strcmp(format, "folded")) fmt = FOLD_FORMAT_FOLDED;
        else { fprintf(stderr, "llmscope flame: --format is pprof, perf or folded, not '%s'\n", format); free(tag_key); return 2; }
    }
    if (!input) input = "-";
    const char *name = strcmp(input, "-") ? input : "<stdin>";

    char err[512] = "";
    size_t len = 0;
    uint8_t *data = read_input(input, &len, err, sizeof err);
    fold_tree *t = data ? fold_new() : NULL;
    pprof_data *pd = NULL;
    char subtitle[512];
    const char *unit = "samples";
    int rc = 1;
    if (!data) goto done;
    if (!t) { snprintf(err, sizeof err, "out of memory"); goto done; }
    if (fmt == FOLD_FORMAT_UNKNOWN) fmt = fold_detect(data, len);
    if (fmt == FOLD_FORMAT_UNKNOWN) { snprintf(err, sizeof err, "%s: empty input", name); goto done; }
    if (fmt != FOLD_FORMAT_PPROF && (sample_index || tag_key)) {
        fprintf(stderr, "llmscope flame: %s is %s input: --sample-index and --tagfocus apply to pprof profiles only\n", name,
                fold_format_name(fmt));
        rc = 2;
        goto done;
    }
    snprintf(subtitle, sizeof subtitle, "%s (%s)", name, fold_format_name(fmt));
    if (fmt == FOLD_FORMAT_PPROF) {
        pd = pprof_data_parse(data, len, name, err, sizeof err);
        if (!pd) goto done;
        if (pprof_data_n_types(pd) == 0) {
            if (pprof_data_n_samples(pd)) { snprintf(err, sizeof err, "%s: the profile has samples but no sample types", name); goto done; }
        } else {
            size_t ti = pprof_data_default_type(pd);
            if (sample_index) {
                int k = pprof_data_find_type(pd, sample_index);
                if (k < 0) {
                    fprintf(stderr, "llmscope flame: %s: no sample type '%s'; it has:", name, sample_index);
                    for (size_t i = 0; i < pprof_data_n_types(pd); i++) fprintf(stderr, " %zu=%s", i, pprof_data_type(pd, i, NULL));
                    fputc('\n', stderr);
                    rc = 2;
                    goto done;
                }
                ti = (size_t)k;
            }
            const char *u = NULL;
            const char *tn = pprof_data_type(pd, ti, &u);
            unit = u && *u ? u : "samples";
            snprintf(subtitle, sizeof subtitle, "%s (pprof): %s/%s%s%s%s%s", name, tn, unit, tag_key ? ", samples with " : "",
                     tag_key ? tag_key : "", tag_key ? "=" : "", tag_key ? tag_value : "");
            if (pprof_data_fold(pd, ti, tag_key, tag_value, t, err, sizeof err)) goto done;
        }
    } else if (fmt == FOLD_FORMAT_PERF) {
        if (fold_parse_perf(t, (const char *)data, len, name, err, sizeof err)) goto done;
    } else {
        if (fold_parse_folded(t, (const char *)data, len, name, err, sizeof err)) goto done;
    }
    if (fold_total(t) == 0)
        fprintf(stderr, "llmscope flame: %s: no samples%s\n", name, tag_key ? " match --tagfocus" : "");

    FILE *out = output ? fopen(output, "w") : stdout;
    if (!out) { snprintf(err, sizeof err, "%s: cannot create: %s", output, strerror(errno)); goto done; }
    int wrc;
    if (folded) {
        wrc = fold_write(t, out);
    } else {
        flame_svg_opts o = {.title = title, .subtitle = subtitle, .unit = unit, .width = (int)width, .min_frac = minw / 100.0};
        wrc = flame_svg_write(t, &o, out) < 0 ? -1 : 0;
    }
    if (fflush(out) || wrc) wrc = -1;
    if (output && fclose(out)) wrc = -1;
    if (wrc) { snprintf(err, sizeof err, "%s: write error", output ? output : "<stdout>"); goto done; }
    rc = 0;
done:
    if (rc == 1 && err[0]) fprintf(stderr, "llmscope flame: %s\n", err);
    pprof_data_free(pd);
    fold_free(t);
    free(data);
    free(tag_key);
    return rc;
}
