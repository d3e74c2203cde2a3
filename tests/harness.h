// harness.h — the project's minimal unit-test harness. A test file defines
// test functions and a main() that calls RUN(fn) for each, then returns
// harness_done(). CHECK failures print file:line and the expression and mark
// the current test failed; the file's last line is "N passed, N failed".
#ifndef LLMSCOPE_HARNESS_H
#define LLMSCOPE_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <stdint.h>

static int harness_passed, harness_failed, harness_cur_failed;
static const char *harness_cur_name;

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "  %s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, harness_cur_name, #cond); \
    harness_cur_failed = 1; } } while (0)

#define CHECKF(cond, ...) do { if (!(cond)) { \
    fprintf(stderr, "  %s:%d: %s: CHECK(%s) failed: ", __FILE__, __LINE__, harness_cur_name, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); harness_cur_failed = 1; } } while (0)

// Stops the current test (use after a CHECK whose failure makes the rest meaningless).
#define REQUIRE(cond) do { if (!(cond)) { \
    fprintf(stderr, "  %s:%d: %s: REQUIRE(%s) failed\n", __FILE__, __LINE__, harness_cur_name, #cond); \
    harness_cur_failed = 1; return; } } while (0)

#define RUN(fn) do { harness_cur_name = #fn; harness_cur_failed = 0; fn(); \
    if (harness_cur_failed) { harness_failed++; fprintf(stderr, "FAIL %s\n", #fn); } \
    else { harness_passed++; fprintf(stderr, "ok   %s\n", #fn); } } while (0)

static inline int harness_done(void) {
    printf("%d passed, %d failed\n", harness_passed, harness_failed);
    return harness_failed ? 1 : 0;
}

// Path of a shared model file: $MODELS/<name> (MODELS defaults to ../shared/models).
static inline const char *harness_model(const char *name) {
    static char buf[8][4096];
    static int k;
    const char *dir = getenv("MODELS");
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", dir && *dir ? dir : "../shared/models", name);
    return b;
}

// The first of n floats whose bits differ between a and b, or −1 (for
// kernels that must give the same bits at every SIMD level).
static inline int64_t harness_first_diff(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float))) return i;
    return -1;
}

// Reads a whole file (malloc'd, NUL-terminated); NULL when unreadable.
static inline char *harness_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) { free(p); p = NULL; }
    fclose(f);
    if (p) { p[n] = 0; if (len) *len = (size_t)n; }
    return p;
}

#endif
