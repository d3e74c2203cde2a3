// util.c — see util.h.
#include "util.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

uint64_t util_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool util_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool util_parse_f64(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || isnan(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

void util_buf_printf(util_buf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = true; return; }
        if (b->s && b->len + (size_t)n < b->cap) { b->len += (size_t)n; return; }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) { b->oom = true; return; }
        b->s = ns;
        b->cap = cap;
    }
}

// ---- memory in transparent huge pages ---------------------------------------

#define HUGE_SZ ((size_t)2 << 20)

static pthread_mutex_t regions_mu = PTHREAD_MUTEX_INITIALIZER;
static util_region regions[UTIL_MAX_REGIONS];
static int n_regions;

int util_huge_regions(util_region *out, int max) {
    pthread_mutex_lock(&regions_mu);
    int n = n_regions < max ? n_regions : max;
    memcpy(out, regions, sizeof *out * (size_t)(n > 0 ? n : 0));
    for (int i = 0; i < n; i++)
        if (!util_mapping_usage(out[i].p, &out[i].rss, &out[i].huge)) out[i].rss = out[i].huge = -1;
    pthread_mutex_unlock(&regions_mu);
    return n;
}

void *util_huge_alloc(size_t n, size_t *len, const char *name) {
    if (n == 0 || n > SIZE_MAX - 2 * HUGE_SZ) return NULL;
    const size_t want = (n + HUGE_SZ - 1) & ~(HUGE_SZ - 1);
    // Over-map by one huge page, then trim the ends so what is left starts
    // on a 2 MiB boundary (a huge page can only back an aligned 2 MiB).
    uint8_t *raw = mmap(NULL, want + HUGE_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw));
    const size_t tail = (size_t)(raw + want + HUGE_SZ - (p + want));
    if (tail) munmap(p + want, tail);
#ifdef MADV_HUGEPAGE
    madvise(p, want, MADV_HUGEPAGE);   // advice only: without it the memory still works
#endif
    *len = want;
    if (name) {
        pthread_mutex_lock(&regions_mu);
        if (n_regions < UTIL_MAX_REGIONS) {
            regions[n_regions] = (util_region){.p = p, .len = want};
            snprintf(regions[n_regions].name, sizeof regions[n_regions].name, "%s", name);
            n_regions++;
        }
        pthread_mutex_unlock(&regions_mu);
    }
    return p;
}

void util_huge_free(void *p, size_t len) {
    if (!p) return;
    pthread_mutex_lock(&regions_mu);
    for (int i = 0; i < n_regions; i++)
        if (regions[i].p == p) { regions[i] = regions[--n_regions]; break; }
    pthread_mutex_unlock(&regions_mu);
    munmap(p, len);
}

static const char *thp_word(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char line[128] = "";
    const char *mode = NULL;
    if (fgets(line, sizeof line, f)) {
        if (strstr(line, "[always]")) mode = "always";
        else if (strstr(line, "[madvise]")) mode = "madvise";
        else if (strstr(line, "[never]")) mode = "never";
        else if (strstr(line, "[inherit]")) mode = "inherit";
    }
    fclose(f);
    return mode;
}

const char *util_thp_mode(void) {
    // Kernels with transparent huge pages of several sizes (6.8+) set each
    // size on its own; "inherit" takes the top-level setting.
    const char *m = thp_word("/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/enabled");
    if (!m || !strcmp(m, "inherit")) m = thp_word("/sys/kernel/mm/transparent_hugepage/enabled");
    return m && strcmp(m, "inherit") ? m : "unavailable";
}

int64_t util_mem_available(void) {
    int64_t avail = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) { avail = (int64_t)kb * 1024; break; }
        fclose(f);
    }
    // A cgroup v2 limit (the process's own group, mounted at /sys/fs/cgroup).
    long long max = -1, cur = -1;
    f = fopen("/sys/fs/cgroup/memory.max", "r");
    if (f) {
        if (fscanf(f, "%lld", &max) != 1) max = -1;   // "max": no limit
        fclose(f);
    }
    f = fopen("/sys/fs/cgroup/memory.current", "r");
    if (f) {
        if (fscanf(f, "%lld", &cur) != 1) cur = -1;
        fclose(f);
    }
    if (max > 0 && cur >= 0) {
        const int64_t left = max > cur ? (int64_t)(max - cur) : 0;
        if (avail < 0 || left < avail) avail = left;
    }
    return avail;
}

bool util_mapping_usage(const void *p, int64_t *rss, int64_t *huge) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return false;
    char line[512];
    const uintptr_t a = (uintptr_t)p;
    bool in = false;
    long long r = -1, h = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        // A mapping's header line is "lo-hi perms offset dev inode [path]";
        // the field lines under it ("Rss:    12 kB") have no '-' before a space.
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            if (in) break;
            in = a >= lo && a < hi;
        } else if (in) {
            if (!strncmp(line, "Rss:", 4)) sscanf(line + 4, "%lld", &r);
            else if (!strncmp(line, "AnonHugePages:", 14)) sscanf(line + 14, "%lld", &h);
        }
    }
    fclose(f);
    if (r < 0 || h < 0) return false;
    *rss = (int64_t)r * 1024;
    *huge = (int64_t)h * 1024;
    return true;
}

int64_t util_huge_bytes(const void *p) {
    int64_t rss, huge;
    return util_mapping_usage(p, &rss, &huge) ? huge : -1;
}
