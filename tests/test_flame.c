// test_flame.c — unit tests of the flame-graph inputs and output: a pprof
// profile encoded here by hand (varints, packed and unpacked repeated fields,
// inlined frames, labels), gzip'd with zlib, decoded and folded to an exact
// text; folded-stack and `perf script` parsing of captured text; a table of
// hand-made bad inputs, each refused with one line naming the input and the
// offset; and the SVG writer's escaping and narrow-frame pruning.
#include <stdint.h>
#include <zlib.h>
#include "harness.h"
#include "util/flame_svg.h"
#include "util/folded.h"
#include "util/pprof_read.h"

// --- a minimal protobuf encoder ----------------------------------------------

typedef struct pb { uint8_t *p; size_t n, cap; } pb;

static void pb_byte(pb *b, uint8_t c) {
    if (b->n == b->cap) { b->cap = b->cap ? b->cap * 2 : 256; b->p = realloc(b->p, b->cap); }
    b->p[b->n++] = c;
}
static void pb_raw(pb *b, const void *p, size_t n) { for (size_t i = 0; i < n; i++) pb_byte(b, ((const uint8_t *)p)[i]); }
static void pb_varint(pb *b, uint64_t v) {
    while (v >= 0x80) { pb_byte(b, (uint8_t)(v | 0x80)); v >>= 7; }
    pb_byte(b, (uint8_t)v);
}
static void pb_uint(pb *b, uint32_t field, uint64_t v) { pb_varint(b, (uint64_t)field << 3 | 0); pb_varint(b, v); }
static void pb_bytes(pb *b, uint32_t field, const void *p, size_t n) {
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    pb_raw(b, p, n);
}
static void pb_str(pb *b, uint32_t field, const char *s) { pb_bytes(b, field, s, strlen(s)); }
// Appends sub as a length-delimited field and empties it.
static void pb_msg(pb *b, uint32_t field, pb *sub) { pb_bytes(b, field, sub->p, sub->n); sub->n = 0; }
static void pb_packed(pb *b, uint32_t field, const uint64_t *v, size_t n) {
    pb tmp = {0};
    for (size_t i = 0; i < n; i++) pb_varint(&tmp, v[i]);
    pb_bytes(b, field, tmp.p, tmp.n);
    free(tmp.p);
}

static uint8_t *gzip_bytes(const uint8_t *p, size_t n, size_t *out_len) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
    size_t cap = deflateBound(&zs, (uLong)n) + 64;
    uint8_t *out = malloc(cap);
    zs.next_in = (Bytef *)(uintptr_t)p;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int rc = deflate(&zs, Z_FINISH);
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) { free(out); return NULL; }
    return out;
}

enum { S_EMPTY, S_SAMPLES, S_COUNT, S_CPU, S_NS, S_MAIN, S_RUN, S_MATMUL, S_DOT, S_TOKENIZE, S_PHASE, S_DECODE,
       S_PREFILL, S_FILE, S_TID, S_HDR, S_N };
static const char *const strings[S_N] = {"", "samples", "count", "cpu", "nanoseconds", "main", "run", "matmul", "dot",
                                         "tokenize", "phase", "decode", "prefill", "main.c", "tid",
                                         "/usr/lib/gcc/x86_64-linux-gnu/12/include/avx512fintrin.h"};

// A sample: location ids (leaf first), values (samples, cpu ns), an optional label.
static void add_sample(pb *prof, const uint64_t *locs, size_t nloc, uint64_t count, uint64_t ns, int key, int str,
                       int64_t num, bool packed) {
    pb s = {0}, l = {0};
    if (packed) {
        pb_packed(&s, 1, locs, nloc);
        pb_packed(&s, 2, (uint64_t[]){count, ns}, 2);
    } else {
        for (size_t i = 0; i < nloc; i++) pb_uint(&s, 1, locs[i]);
        pb_uint(&s, 2, count);
        pb_uint(&s, 2, ns);
    }
    if (key) {
        pb_uint(&l, 1, (uint64_t)key);
        if (str) pb_uint(&l, 2, (uint64_t)str); else pb_uint(&l, 3, (uint64_t)num);
        pb_msg(&s, 3, &l);
    }
    pb_msg(prof, 2, &s);
    free(s.p);
    free(l.p);
}

// The test profile (raw protobuf). main → run → {matmul with dot inlined, tokenize};
// one location without lines (address 0x1234); one sample that ends in run.
static pb make_profile(void) {
    pb prof = {0}, m = {0}, ln = {0};
    // Sample types: samples/count, cpu/nanoseconds.
    pb_uint(&m, 1, S_SAMPLES); pb_uint(&m, 2, S_COUNT); pb_msg(&prof, 1, &m);
    pb_uint(&m, 1, S_CPU); pb_uint(&m, 2, S_NS); pb_msg(&prof, 1, &m);
    // Samples (before the locations they name, as the format allows).
    add_sample(&prof, (uint64_t[]){3, 2, 1}, 3, 2, 20, S_PHASE, S_DECODE, 0, true);
    add_sample(&prof, (uint64_t[]){4, 2, 1}, 3, 1, 10, S_PHASE, S_PREFILL, 0, false);
    add_sample(&prof, (uint64_t[]){3, 2, 1}, 3, 1, 5, S_PHASE, S_DECODE, 0, false);
    add_sample(&prof, (uint64_t[]){5, 1}, 2, 1, 7, S_TID, 0, 7, true);
    add_sample(&prof, (uint64_t[]){2, 1}, 2, 1, 3, 0, 0, 0, true);
    add_sample(&prof, (uint64_t[]){4, 2, 1}, 3, 1, 0, 0, 0, 0, true);   // zero value: left out
    // Locations: 1 main, 2 run, 3 dot inlined into matmul (innermost line first), 4 tokenize, 5 no lines.
    const int fn_of[] = {1, 2, 0, 5, 0};   // by location id - 1
    for (uint64_t id = 1; id <= 5; id++) {
        pb_uint(&m, 1, id);
        pb_uint(&m, 3, 0x1000 + id);
        if (id == 3) {
            pb_uint(&ln, 1, 4); pb_uint(&ln, 2, 42); pb_msg(&m, 4, &ln);
            pb_uint(&ln, 1, 3); pb_uint(&ln, 2, 17); pb_msg(&m, 4, &ln);
        } else if (id == 5) {
            m.n = 0;
            pb_uint(&m, 1, id);
            pb_uint(&m, 3, 0x1234);
        } else {
            pb_uint(&ln, 1, (uint64_t)fn_of[id - 1]); pb_uint(&ln, 2, 10 * id); pb_msg(&m, 4, &ln);
        }
        pb_msg(&prof, 4, &m);
    }
    // Functions 1..5: main, run, matmul, dot (from an intrinsics header), tokenize.
    const int names[] = {S_MAIN, S_RUN, S_MATMUL, S_DOT, S_TOKENIZE};
    for (uint64_t id = 1; id <= 5; id++) {
        pb_uint(&m, 1, id);
        pb_uint(&m, 2, (uint64_t)names[id - 1]);
        pb_uint(&m, 4, id == 4 ? S_HDR : S_FILE);
        pb_msg(&prof, 5, &m);
    }
    for (int i = 0; i < S_N; i++) pb_str(&prof, 6, strings[i]);
    pb_uint(&prof, 9, 1700000000000000000ull);   // time_nanos: skipped
    free(m.p);
    free(ln.p);
    return prof;
}

// Folds a profile and returns the folded text (malloc'd), or NULL with err set.
static char *fold_profile(const uint8_t *p, size_t n, const char *index, const char *key, const char *val, char *err,
                          size_t errlen) {
    pprof_data *d = pprof_data_parse(p, n, "test.pprof", err, errlen);
    if (!d) return NULL;
    int ti = index ? pprof_data_find_type(d, index) : (int)pprof_data_default_type(d);
    fold_tree *t = fold_new();
    char *out = NULL;
    size_t len = 0;
    if (ti >= 0 && pprof_data_fold(d, (size_t)ti, key, val, t, err, errlen) == 0) {
        FILE *f = open_memstream(&out, &len);
        fold_write(t, f);
        fclose(f);
    }
    fold_free(t);
    pprof_data_free(d);
    return out;
}

static void test_pprof_fold_gzip(void) {
    pb prof = make_profile();
    size_t gz_len;
    uint8_t *gz = gzip_bytes(prof.p, prof.n, &gz_len);
    REQUIRE(gz && gz[0] == 0x1f && gz[1] == 0x8b);
    CHECK(fold_detect(gz, gz_len) == FOLD_FORMAT_PPROF);
    CHECK(fold_detect(prof.p, prof.n) == FOLD_FORMAT_PPROF);
    char err[256] = "";
    char *out = fold_profile(gz, gz_len, NULL, NULL, NULL, err, sizeof err);
    CHECKF(out && !strcmp(out, "main;0x1234 7\nmain;run 3\nmain;run;matmul;dot 25\nmain;run;tokenize 10\n"), "got:\n%s%s",
           out ? out : "", err);
    free(out);
    // The same bytes un-gzip'd decode the same.
    out = fold_profile(prof.p, prof.n, NULL, NULL, NULL, err, sizeof err);
    CHECKF(out && !strcmp(out, "main;0x1234 7\nmain;run 3\nmain;run;matmul;dot 25\nmain;run;tokenize 10\n"), "raw: %s%s",
           out ? out : "", err);
    free(out);
    free(gz);
    free(prof.p);
}

static void test_pprof_sample_index_and_types(void) {
    pb prof = make_profile();
    char err[256] = "";
    pprof_data *d = pprof_data_parse(prof.p, prof.n, "t", err, sizeof err);
    REQUIRE(d);
    const char *unit;
    CHECK(pprof_data_n_types(d) == 2 && pprof_data_n_samples(d) == 6);
    CHECK(!strcmp(pprof_data_type(d, 1, &unit), "cpu") && !strcmp(unit, "nanoseconds"));
    CHECK(pprof_data_default_type(d) == 1);
    CHECK(pprof_data_find_type(d, "samples") == 0 && pprof_data_find_type(d, "1") == 1);
    CHECK(pprof_data_find_type(d, "2") == -1 && pprof_data_find_type(d, "bogus") == -1);
    // Inlined frames from an intrinsics header folded into their caller on
    // request: dot's time is matmul's; the plain fold keeps dot.
    fold_tree *ft = fold_new();
    char *fo = NULL;
    size_t fol = 0;
    REQUIRE(ft && pprof_data_fold_opt(d, 1, NULL, NULL, PPROF_FOLD_INTRINSICS_IN_CALLER, ft, err, sizeof err) == 0);
    FILE *ff = open_memstream(&fo, &fol);
    fold_write(ft, ff);
    fclose(ff);
    CHECKF(fo && !strcmp(fo, "main;0x1234 7\nmain;run 3\nmain;run;matmul 25\nmain;run;tokenize 10\n"), "got:\n%s", fo ? fo : "");
    free(fo);
    fold_free(ft);
    // The functions with their source files (the report's kernel test);
    // names cut to the buffer, out of range empty.
    CHECK(pprof_data_n_functions(d) == 5);
    char fn[64], file[64];
    pprof_data_function(d, 2, fn, sizeof fn, file, sizeof file);
    CHECKF(!strcmp(fn, "matmul") && !strcmp(file, "main.c"), "function 2: %s in %s", fn, file);
    pprof_data_function(d, 4, fn, 4, file, sizeof file);
    CHECKF(!strcmp(fn, "tok") && !strcmp(file, "main.c"), "cut: %s in %s", fn, file);
    pprof_data_function(d, 5, fn, sizeof fn, file, sizeof file);
    CHECK(!fn[0] && !file[0]);
    pprof_data_free(d);
    char *out = fold_profile(prof.p, prof.n, "samples", NULL, NULL, err, sizeof err);
    CHECKF(out && !strcmp(out, "main;0x1234 1\nmain;run 1\nmain;run;matmul;dot 3\nmain;run;tokenize 2\n"), "got:\n%s", out ? out : err);
    free(out);
    free(prof.p);
}

static void test_pprof_tagfocus(void) {
    pb prof = make_profile();
    char err[256] = "";
    char *out = fold_profile(prof.p, prof.n, NULL, "phase", "decode", err, sizeof err);
    CHECKF(out && !strcmp(out, "main;run;matmul;dot 25\n"), "decode: %s", out ? out : err);
    free(out);
    out = fold_profile(prof.p, prof.n, NULL, "phase", "prefill", err, sizeof err);
    CHECKF(out && !strcmp(out, "main;run;tokenize 10\n"), "prefill: %s", out ? out : err);
    free(out);
    out = fold_profile(prof.p, prof.n, NULL, "tid", "7", err, sizeof err);   // a numeric label
    CHECKF(out && !strcmp(out, "main;0x1234 7\n"), "tid: %s", out ? out : err);
    free(out);
    out = fold_profile(prof.p, prof.n, NULL, "phase", "nothing", err, sizeof err);
    CHECKF(out && !strcmp(out, ""), "none: %s", out ? out : err);
    free(out);
    free(prof.p);
}

// --- bad inputs ------------------------------------------------------------

typedef enum bad_case {
    BAD_TRUNCATED_VARINT,
    BAD_LENGTH_PAST_END,
    BAD_VARINT_TOO_LONG,
    BAD_WIRE_TYPE_GROUP,
    BAD_GZIP_DATA,
    BAD_GZIP_TRUNCATED,
    BAD_GZIP_TRAILING,
    BAD_LOCATION_NOT_FOUND,
    BAD_FUNCTION_NOT_FOUND,
    BAD_STRING_INDEX,
    BAD_VALUE_COUNT,
    BAD_DUPLICATE_LOCATION,
    BAD_LOCATION_ID_ZERO,
    BAD_NESTED_LENGTH,
    BAD_FIELD_ZERO,
    BAD_N
} bad_case;

static const struct { const char *name, *want; } bad_info[BAD_N] = {
    [BAD_TRUNCATED_VARINT] = {"truncated varint", "offset 1: truncated varint"},
    [BAD_LENGTH_PAST_END] = {"length past end", "offset 0: field 2 is 5 bytes long, past the end"},
    [BAD_VARINT_TOO_LONG] = {"varint of 11 bytes", "offset 1: varint longer than"},
    [BAD_WIRE_TYPE_GROUP] = {"group wire type", "wire type 3"},
    [BAD_GZIP_DATA] = {"bad gzip", "bad gzip data"},
    [BAD_GZIP_TRUNCATED] = {"truncated gzip", "truncated gzip stream"},
    [BAD_GZIP_TRAILING] = {"junk after gzip", "bytes after the end of the gzip stream"},
    [BAD_LOCATION_NOT_FOUND] = {"location id not found", "location 99, which is not defined"},
    [BAD_FUNCTION_NOT_FOUND] = {"function id not found", "function 77, which is not defined"},
    [BAD_STRING_INDEX] = {"string index out of range", "function name is string 500"},
    [BAD_VALUE_COUNT] = {"values vs sample types", "sample has 1 values but the profile has 2 sample types"},
    [BAD_DUPLICATE_LOCATION] = {"duplicate location id", "location id 1 defined twice"},
    [BAD_LOCATION_ID_ZERO] = {"location id 0", "location with id 0"},
    [BAD_NESTED_LENGTH] = {"nested length past its message", "past the end of its message"},
    [BAD_FIELD_ZERO] = {"field number 0", "bad field number 0"},
};

static pb make_bad(bad_case c) {
    pb b = {0}, m = {0}, ln = {0};
    switch (c) {
    case BAD_TRUNCATED_VARINT: pb_raw(&b, "\x12\x80", 2); break;
    case BAD_LENGTH_PAST_END: pb_raw(&b, "\x12\x05\x08", 3); break;
    case BAD_VARINT_TOO_LONG: pb_raw(&b, "\x48\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12); break;
    case BAD_WIRE_TYPE_GROUP: pb_raw(&b, "\x13\x14", 2); break;
    case BAD_GZIP_DATA: pb_raw(&b, "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xff\xff\xff\xff\xff", 16); break;
    case BAD_GZIP_TRUNCATED:
    case BAD_GZIP_TRAILING: {
        pb prof = make_profile();
        size_t n;
        uint8_t *gz = gzip_bytes(prof.p, prof.n, &n);
        if (c == BAD_GZIP_TRUNCATED) pb_raw(&b, gz, n / 2);
        else { pb_raw(&b, gz, n); pb_raw(&b, "junk", 4); }
        free(gz);
        free(prof.p);
        break;
    }
    case BAD_LOCATION_NOT_FOUND:
    case BAD_FUNCTION_NOT_FOUND:
    case BAD_STRING_INDEX:
    case BAD_VALUE_COUNT:
    case BAD_DUPLICATE_LOCATION:
    case BAD_LOCATION_ID_ZERO: {
        pb_uint(&m, 1, S_SAMPLES); pb_uint(&m, 2, S_COUNT); pb_msg(&b, 1, &m);
        pb_uint(&m, 1, S_CPU); pb_uint(&m, 2, S_NS); pb_msg(&b, 1, &m);
        if (c == BAD_VALUE_COUNT) { pb_uint(&m, 1, 1); pb_uint(&m, 2, 5); pb_msg(&b, 2, &m); }
        else add_sample(&b, (uint64_t[]){c == BAD_LOCATION_NOT_FOUND ? 99 : 1}, 1, 1, 10, 0, 0, 0, true);
        pb_uint(&m, 1, c == BAD_LOCATION_ID_ZERO ? 0 : 1);
        pb_uint(&ln, 1, c == BAD_FUNCTION_NOT_FOUND ? 77 : 1); pb_msg(&m, 4, &ln);
        pb_msg(&b, 4, &m);
        if (c == BAD_DUPLICATE_LOCATION) { pb_uint(&m, 1, 1); pb_msg(&b, 4, &m); }
        pb_uint(&m, 1, 1); pb_uint(&m, 2, c == BAD_STRING_INDEX ? 500 : S_MAIN); pb_msg(&b, 5, &m);
        for (int i = 0; i < S_N; i++) pb_str(&b, 6, strings[i]);
        break;
    }
    case BAD_NESTED_LENGTH:   // a Sample whose packed location ids claim more bytes than the Sample holds
        pb_raw(&b, "\x12\x03\x0a\x09\x01", 5);
        break;
    case BAD_FIELD_ZERO: pb_raw(&b, "\x00\x01", 2); break;
    default: break;
    }
    free(m.p);
    free(ln.p);
    return b;
}

static void test_pprof_bad_inputs(void) {
    for (int c = 0; c < BAD_N; c++) {
        pb b = make_bad((bad_case)c);
        char err[256] = "";
        pprof_data *d = pprof_data_parse(b.p, b.n, "bad.pprof", err, sizeof err);
        CHECKF(!d, "%s: accepted", bad_info[c].name);
        CHECKF(!strncmp(err, "bad.pprof: offset ", 18) && !strchr(err, '\n'), "%s: not one line naming the input and offset: %s",
               bad_info[c].name, err);
        CHECKF(strstr(err, bad_info[c].want), "%s: want '%s' in: %s", bad_info[c].name, bad_info[c].want, err);
        pprof_data_free(d);
        // Every prefix of a bad input is refused (or accepted) without a crash; ASan checks the reads.
        for (size_t k = 0; k < b.n; k++) {
            uint8_t *copy = malloc(k ? k : 1);
            memcpy(copy, b.p, k);
            pprof_data_free(pprof_data_parse(copy, k, "prefix", err, sizeof err));
            free(copy);
        }
        free(b.p);
    }
}

// A gzip bomb: the inflated size is capped.
static void test_pprof_inflate_cap(void) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    REQUIRE(deflateInit2(&zs, 1, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY) == Z_OK);
    static uint8_t zeros[1 << 20];
    size_t cap = 1 << 20, n = 0;
    uint8_t *out = malloc(cap);
    size_t todo = PPROF_READ_MAX_INFLATED / sizeof zeros + 1;
    for (size_t i = 0; i <= todo; i++) {
        zs.next_in = zeros;
        zs.avail_in = sizeof zeros;
        int flush = i == todo ? Z_FINISH : Z_NO_FLUSH;
        do {
            if (cap - n < 65536) { cap *= 2; out = realloc(out, cap); }
            zs.next_out = out + n;
            zs.avail_out = (uInt)(cap - n);
            deflate(&zs, flush);
            n = cap - zs.avail_out;
        } while (zs.avail_out == 0 || (flush == Z_FINISH && zs.avail_in));
    }
    deflateEnd(&zs);
    char err[256] = "";
    pprof_data *d = pprof_data_parse(out, n, "bomb.pprof", err, sizeof err);
    CHECK(!d);
    CHECKF(strstr(err, "bomb.pprof: offset") && strstr(err, "inflates to more than 256 MiB"), "%s", err);
    pprof_data_free(d);
    free(out);
}

// --- folded text and perf script ------------------------------------------------

static char *write_folded(fold_tree *t) {
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    fold_write(t, f);
    fclose(f);
    return out;
}

static void test_folded_parse(void) {
    const char *in = "# a comment\nmain;b 3\r\nmain;b;c 2\n\n  main;b 1  \nmain;semi colon;x 0\nother 5";
    CHECK(fold_detect((const uint8_t *)in, strlen(in)) == FOLD_FORMAT_FOLDED);
    const char *indented = "  add 3\nbeef;cafe 2\n";   // hex-looking names are not perf frames
    CHECK(fold_detect((const uint8_t *)indented, strlen(indented)) == FOLD_FORMAT_FOLDED);
    CHECK(fold_detect((const uint8_t *)"", 0) == FOLD_FORMAT_UNKNOWN);
    fold_tree *t = fold_new();
    char err[256] = "";
    CHECKF(fold_parse_folded(t, in, strlen(in), "in.folded", err, sizeof err) == 0, "%s", err);
    char *out = write_folded(t);
    CHECKF(!strcmp(out, "main;b 4\nmain;b;c 2\nother 5\n"), "got:\n%s", out);
    CHECK(fold_total(t) == 11 && fold_max_depth(t) == 3);
    free(out);
    fold_free(t);
    static const struct { const char *text, *want; } bad[] = {
        {"main;b x\n", "in.folded: line 1 (offset 0): expected"},
        {"ok 1\nmain;b\n", "in.folded: line 2 (offset 5): expected"},
        {"a 99999999999999999999\n", "line 1 (offset 0): expected"},
        {"a 9223372036854775807\nb 1\n", "line 2 (offset 22): the values add up"},
        {"a -3\n", "line 1 (offset 0): expected"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = fold_new();
        err[0] = 0;
        CHECKF(fold_parse_folded(t, bad[i].text, strlen(bad[i].text), "in.folded", err, sizeof err) == -1, "%zu accepted", i);
        CHECKF(strstr(err, bad[i].want) && !strchr(err, '\n'), "%zu: want '%s' in: %s", i, bad[i].want, err);
        fold_free(t);
    }
}

static void test_folded_names_cleaned_and_capped(void) {
    fold_tree *t = fold_new();
    char err[256];
    const char *fr[] = {"a;b", "ctl\x01x", ""};
    size_t fl[] = {3, 5, 0};
    CHECK(fold_add(t, fr, fl, 3, 2, err, sizeof err) == 0);
    char *out = write_folded(t);
    CHECKF(!strcmp(out, "a:b;ctl_x;?? 2\n"), "got %s", out);
    free(out);
    fold_free(t);
    // Deeper than FOLD_MAX_DEPTH: the root side is kept, the rest is "[truncated]".
    t = fold_new();
    const char **deep = malloc(2000 * sizeof *deep);
    size_t *dl = malloc(2000 * sizeof *dl);
    for (int i = 0; i < 2000; i++) { deep[i] = i == 0 ? "root" : "f"; dl[i] = strlen(deep[i]); }
    CHECK(fold_add(t, deep, dl, 2000, 1, err, sizeof err) == 0);
    CHECK(fold_max_depth(t) == FOLD_MAX_DEPTH);
    out = write_folded(t);
    CHECK(!strncmp(out, "root;f;f;", 9) && strstr(out, ";f;[truncated] 1\n"));
    free(out);
    free(deep);
    free(dl);
    fold_free(t);
}

// Captured from `perf record -g -e cpu-clock` on `llmscope run` (paths
// shortened), with a C++ frame, a two-word command, an unknown symbol and
// source lines (-F +srcline).
static const char perf_text[] =
    "llmscope 31361  1368.038238:     250000 cpu-clock: \n"
    "\t           34288 op_rmsnorm+0x98 (/opt/llmscope/bin/llmscope)\n"
    "\t           274df forward_worker+0x31f (/opt/llmscope/bin/llmscope)\n"
    "\t           235b0 tp_run+0x50 (/opt/llmscope/bin/llmscope)\n"
    "\t           291ac llama_decode+0xfc (/opt/llmscope/bin/llmscope)\n"
    "\t           10767 cmd_run+0x5f7 (/opt/llmscope/bin/llmscope)\n"
    "\t           2724a __libc_start_call_main+0x7a (/usr/lib/x86_64-linux-gnu/libc.so.6)\n"
    "\n"
    "compute-1 31363  1368.037344:     250000 cpu-clock: \n"
    "\tffffffff81ef3ac2 asm_sysvec_apic_timer_interrupt+0x1a ([kernel.kallsyms])\n"
    "\t           236bc tp_barrier+0x4c (/opt/llmscope/bin/llmscope)\n"
    "\t           232f9 worker_main+0x89 (/opt/llmscope/bin/llmscope)\n"
    "\t           891f5 start_thread+0x305 (/usr/lib/x86_64-linux-gnu/libc.so.6)\n"
    "\n"
    "compute-1 31363/31363 [001]  1368.037594:     250000 cpu-clock: \n"
    "\t           236bc tp_barrier+0x4c (/opt/llmscope/bin/llmscope)\n"
    "  threadpool.c:88\n"
    "\t           232f9 worker_main+0x89 (/opt/llmscope/bin/llmscope)\n"
    "  threadpool.c:120\n"
    "\t           891f5 start_thread+0x305 (/usr/lib/x86_64-linux-gnu/libc.so.6)\n"
    "\n"
    "Web Content 4242/4243 [000] 99.5: 1 cpu-clock:\n"
    "\t          4011d6 std::vector<int>::push_back(int const&)+0x16 (/usr/bin/app)\n"
    "\t          7f0010 [unknown] (/usr/lib/libxul.so)\n"
    "\t               0 [unknown] ([unknown])\n"
    "\n"
    "sleep 31199  1357.196235:     250000 cpu-clock: \n"
    "\t           1462a handle_amd+0xa (/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2)\n";

static void test_perf_script_parse(void) {
    CHECK(fold_detect((const uint8_t *)perf_text, strlen(perf_text)) == FOLD_FORMAT_PERF);
    fold_tree *t = fold_new();
    char err[256] = "";
    CHECKF(fold_parse_perf(t, perf_text, strlen(perf_text), "perf.txt", err, sizeof err) == 0, "%s", err);
    char *out = write_folded(t);
    const char *want =
        "Web Content;[unknown];[libxul.so];std::vector<int>::push_back(int const&) 1\n"
        "compute-1;start_thread;worker_main;tp_barrier 1\n"
        "compute-1;start_thread;worker_main;tp_barrier;asm_sysvec_apic_timer_interrupt 1\n"
        "llmscope;__libc_start_call_main;cmd_run;llama_decode;tp_run;forward_worker;op_rmsnorm 1\n"
        "sleep;handle_amd 1\n";
    CHECKF(!strcmp(out, want), "got:\n%s", out);
    free(out);
    fold_free(t);
    static const struct { const char *text, *want; } bad[] = {
        {"\t  1234 main+0x1 (/bin/x)\n", "perf.txt: line 1 (offset 0): a stack frame before any sample header"},
        {"cmd 1 1.0: 1 cpu-clock:\n\t  zzzz main (/bin/x)\n", "perf.txt: line 2 (offset 24): expected a stack frame"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = fold_new();
        err[0] = 0;
        CHECKF(fold_parse_perf(t, bad[i].text, strlen(bad[i].text), "perf.txt", err, sizeof err) == -1, "%zu accepted", i);
        CHECKF(strstr(err, bad[i].want) && !strchr(err, '\n'), "%zu: want '%s' in: %s", i, bad[i].want, err);
        fold_free(t);
    }
}

// --- SVG --------------------------------------------------------------------

static void test_svg_escapes_and_prunes(void) {
    fold_tree *t = fold_new();
    char err[256];
    const char *a[] = {"main", "<tag> & \"q\" 'a'"};
    const char *b[] = {"main", "bad\xff\xfe utf8 caf\xc3\xa9"};
    const char *c[] = {"main", "tiny"};
    size_t al[] = {4, strlen(a[1])}, bl[] = {4, strlen(b[1])}, cl[] = {4, 4};
    CHECK(fold_add(t, a, al, 2, 6000, err, sizeof err) == 0);
    CHECK(fold_add(t, b, bl, 2, 3999, err, sizeof err) == 0);
    CHECK(fold_add(t, c, cl, 2, 1, err, sizeof err) == 0);   // 0.01%: under the 0.1% cut
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    flame_svg_opts o = {.title = "a <title>", .min_frac = -1};
    long n = flame_svg_write(t, &o, f);
    fclose(f);
    CHECKF(n == 4, "drew %ld frames", n);   // all, main, the two wide leaves
    CHECK(strstr(out, "&lt;tag&gt; &amp; &quot;q&quot; &apos;a&apos;") != NULL);
    CHECK(strstr(out, "bad?? utf8 caf\xc3\xa9") != NULL);
    CHECK(strstr(out, "a &lt;title&gt;") != NULL);
    CHECK(strstr(out, "main (10000 samples, 100.00%)") != NULL);
    CHECK(strstr(out, "tiny") == NULL);
    CHECK(strstr(out, "\xff") == NULL);
    CHECK(strstr(out, "<script") && !strstr(out, "src=") && !strstr(out, "href"));
    free(out);
    fold_free(t);
}

int main(void) {
    RUN(test_pprof_fold_gzip);
    RUN(test_pprof_sample_index_and_types);
    RUN(test_pprof_tagfocus);
    RUN(test_pprof_bad_inputs);
    RUN(test_pprof_inflate_cap);
    RUN(test_folded_parse);
    RUN(test_folded_names_cleaned_and_capped);
    RUN(test_perf_script_parse);
    RUN(test_svg_escapes_and_prunes);
    return harness_done();
}
