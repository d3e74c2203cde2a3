// heap.c — the heap profiler: sampled allocation profiling over every
// allocation of the process. The C allocator's entry points (malloc, free,
// calloc, realloc, reallocarray, posix_memalign, aligned_alloc, memalign,
// valloc, pvalloc) are defined here and forward to glibc's __libc_* entry
// points, so calls from every library (libc's own strdup and fopen included)
// are seen. A thread-local countdown of bytes decides which allocation is
// sampled (exponentially distributed intervals with mean = rate, as Go's
// MemProfileRate): the fast path is one subtraction and one predictable
// branch. A sampled allocation records its stack in a bucket and its address
// in a sharded hash; free() checks a 64 Ki-entry counting filter first, so
// the free of an unsampled block costs one load.
//
// Safety: the recorder may allocate (it sets a thread-local guard, so it
// never samples itself); it takes mutexes but no signal handler of the
// profiler ever allocates, so a SIGPROF landing inside malloc is harmless.
// Compiled out under ASan/TSan/MSan (they own malloc), or with
// -DPROF_HEAP_INTERPOSE=0: the heap profile then answers PROF_EUNAVAIL.
//
// Allocation-failure injection (tests): prof_heap_fail_nth() or the
// environment variable LLMSCOPE_FAIL_ALLOC=N make one chosen allocation fail
// the way glibc fails (NULL with errno ENOMEM; posix_memalign returns
// ENOMEM), and keeps the set of blocks allocated since arming for a leak
// check. Disarmed, it costs each entry point a load of one flag and a
// predictable branch (two for the allocating ones).
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "util/util.h"

#ifndef PROF_HEAP_INTERPOSE
#  if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#    define PROF_HEAP_INTERPOSE 0
#  elif defined(__has_feature)
#    if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#      define PROF_HEAP_INTERPOSE 0
#    endif
#  endif
#endif
#ifndef PROF_HEAP_INTERPOSE
#  define PROF_HEAP_INTERPOSE 1
#endif

#define DEFAULT_RATE (512 * 1024)
#define OFF_COUNTDOWN ((int64_t)1 << 30)   // while off, look at the rate again after 1 GiB

static _Atomic int64_t heap_rate = DEFAULT_RATE;
static prof_btable heap_buckets = PROF_BTABLE_INIT;   // v: allocs, alloc bytes, frees, freed bytes

int64_t prof_heap_rate(void) { return atomic_load(&heap_rate); }
bool prof_heap_available(void) { return PROF_HEAP_INTERPOSE; }

#if PROF_HEAP_INTERPOSE

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

#define TLS __thread __attribute__((tls_model("initial-exec")))
static TLS int64_t countdown;     // bytes until the next sample; starts at 0 so the first allocation initializes
static TLS uint8_t busy;          // the recorder is running on this thread
static TLS uint8_t inited;
static TLS uint8_t fail_mine;     // this thread armed the failure injection

// Failure injection: armed, allocation number fail_at (1-based, counted from
// arming over the threads of fail_scope) fails; fail_seen counts them.
static _Atomic int fail_armed;
static _Atomic int fail_scope;
static _Atomic int64_t fail_at, fail_seen;
static _Atomic int fail_fired;

// A sampled, live block.
typedef struct rec {
    struct rec *next;
    uintptr_t addr;
    size_t size;             // bytes requested
    prof_bucket *b;
} rec;

#define SHARDS 64
#define SHARD_HEADS 256
#define FILTER (1u << 16)
static struct shard {
    pthread_mutex_t mu;
    rec *heads[SHARD_HEADS];
} shards[SHARDS];
static _Atomic uint16_t filter[FILTER];   // live sampled blocks per hash value (a counting filter)
static pthread_once_t shards_once = PTHREAD_ONCE_INIT;

static void shards_init(void) {
    for (int i = 0; i < SHARDS; i++) pthread_mutex_init(&shards[i].mu, NULL);
}

static inline uint32_t addr_hash(const void *p) {
    return (uint32_t)(((uintptr_t)p * 0x9E3779B97F4A7C15ULL) >> 32);
}

static int64_t next_interval(int64_t rate) {
    if (rate <= 1) return 0;
    double x = -log(prof_rand_unit()) * (double)rate;
    return x > 1e12 ? (int64_t)1e12 : (int64_t)x;
}

static void record(void *p, size_t n, void *fp) {
    uintptr_t pcs[PROF_MAX_DEPTH];
    int depth = prof_stack_here(fp, pcs, PROF_MAX_DEPTH);
    prof_bucket *b = prof_bucket_get(&heap_buckets, pcs, depth, NULL);
    rec *r = b ? __libc_malloc(sizeof *r) : NULL;
    if (!r) return;
    pthread_once(&shards_once, shards_init);
    r->addr = (uintptr_t)p;
    r->size = n;
    r->b = b;
    atomic_fetch_add_explicit(&b->v[0], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->v[1], (int64_t)n, memory_order_relaxed);
    uint32_t h = addr_hash(p);
    struct shard *s = &shards[(h >> 16) % SHARDS];
    pthread_mutex_lock(&s->mu);
    rec **head = &s->heads[(h >> 22) % SHARD_HEADS];
    r->next = *head;
    *head = r;
    atomic_fetch_add_explicit(&filter[h & (FILTER - 1)], 1, memory_order_relaxed);
    pthread_mutex_unlock(&s->mu);
}

// The slow path: the countdown ran out. fp is the allocating entry point's
// frame, so the recorded stack starts at its caller.
__attribute__((noinline)) static void sample(void *p, size_t n, void *fp) {
    if (busy) return;        // the recorder's own allocations: the countdown stays negative until it is done
    busy = 1;
    int64_t rate = atomic_load_explicit(&heap_rate, memory_order_relaxed);
    if (rate <= 0) {
        countdown = OFF_COUNTDOWN;
    } else if (!inited) {
        // First allocation of this thread: draw its first interval as if
        // the countdown had started before this allocation.
        inited = 1;
        countdown += next_interval(rate);
        if (countdown < 0) {
            if (p) record(p, n, fp);
            countdown = next_interval(rate);
        }
    } else {
        if (p) record(p, n, fp);
        countdown = next_interval(rate);
    }
    busy = 0;
}

#define TRACK(p, n) do { \
    if (__builtin_expect((countdown -= (int64_t)(n)) < 0, 0)) sample((p), (n), __builtin_frame_address(0)); \
} while (0)

static void untrack_slow(void *p, uint32_t h) {
    pthread_once(&shards_once, shards_init);
    struct shard *s = &shards[(h >> 16) % SHARDS];
    rec *found = NULL;
    pthread_mutex_lock(&s->mu);
    for (rec **pp = &s->heads[(h >> 22) % SHARD_HEADS]; *pp; pp = &(*pp)->next) {
        if ((*pp)->addr != (uintptr_t)p) continue;
        found = *pp;
        *pp = found->next;
        atomic_fetch_sub_explicit(&filter[h & (FILTER - 1)], 1, memory_order_relaxed);
        break;
    }
    pthread_mutex_unlock(&s->mu);
    if (!found) return;
    atomic_fetch_add_explicit(&found->b->v[2], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&found->b->v[3], (int64_t)found->size, memory_order_relaxed);
    __libc_free(found);
}

// Before the block goes back to the allocator (after, its address could be
// handed out and sampled again before the old record is gone).
static inline void untrack(void *p) {
    uint32_t h = addr_hash(p);
    if (__builtin_expect(atomic_load_explicit(&filter[h & (FILTER - 1)], memory_order_relaxed) != 0, 0))
        untrack_slow(p, h);
}

// The injection's slow path: counts this allocation when its thread is in
// scope and says whether it is the one to fail. The recorder's own
// allocations (busy) are never counted: sampling is random, a sweep must not be.
static inline bool fail_in_scope(void) {
    if (busy) return false;
    int scope = atomic_load_explicit(&fail_scope, memory_order_relaxed);
    return !((scope == PROF_FAIL_THIS_THREAD && !fail_mine) || (scope == PROF_FAIL_OTHER_THREADS && fail_mine));
}

__attribute__((noinline)) static bool inject_fail(void) {
    if (!fail_in_scope()) return false;
    int64_t k = atomic_fetch_add_explicit(&fail_seen, 1, memory_order_relaxed) + 1;
    if (k != atomic_load_explicit(&fail_at, memory_order_relaxed)) return false;
    atomic_store(&fail_fired, 1);
    return true;
}

// While armed, the blocks allocated by the threads in scope and not freed
// yet: a sweep's leak check. A set of addresses, so that the free of a
// block made before arming (a previous request's, freed late) does not
// offset a leak of this window.
#define LIVE_CAP (1u << 16)
#define LIVE_GONE ((uintptr_t)1)   // a deleted entry (probing goes on past it)
static struct live { uintptr_t p; int64_t n; } live[LIVE_CAP];
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t net_blocks, net_bytes;   // guarded by live_mu
static bool live_overflow;

__attribute__((noinline)) static void note(void *p, int sign) {
    if (!fail_in_scope()) return;
    uintptr_t a = (uintptr_t)p;
    uint32_t h = addr_hash(p) & (LIVE_CAP - 1);
    pthread_mutex_lock(&live_mu);
    if (sign > 0) {
        uint32_t i = h, n = 0;
        while (live[i].p > LIVE_GONE && n++ < LIVE_CAP) i = (i + 1) & (LIVE_CAP - 1);
        if (n >= LIVE_CAP) {
            live_overflow = true;
        } else {
            live[i] = (struct live){a, (int64_t)malloc_usable_size(p)};
            net_blocks++;
            net_bytes += live[i].n;
        }
    } else {
        for (uint32_t i = h, n = 0; live[i].p && n < LIVE_CAP; i = (i + 1) & (LIVE_CAP - 1), n++) {
            if (live[i].p != a) continue;
            net_blocks--;
            net_bytes -= live[i].n;
            live[i].p = LIVE_GONE;
            break;
        }
    }
    pthread_mutex_unlock(&live_mu);
}

#define FAIL_ARMED() __builtin_expect(atomic_load_explicit(&fail_armed, memory_order_relaxed), 0)
#define FAIL_NOW() (FAIL_ARMED() && inject_fail())
#define NOTE_ALLOC(p) do { if (FAIL_ARMED() && (p)) note((p), 1); } while (0)
#define NOTE_FREE(p) do { if (FAIL_ARMED()) note((p), -1); } while (0)

bool prof_heap_fail_nth(int64_t n, prof_fail_scope scope) {
    atomic_store(&fail_armed, 0);
    fail_mine = 1;
    atomic_store(&fail_scope, (int)scope);
    atomic_store(&fail_at, n);
    atomic_store(&fail_seen, 0);
    atomic_store(&fail_fired, 0);
    pthread_mutex_lock(&live_mu);
    memset(live, 0, sizeof live);
    net_blocks = net_bytes = 0;
    live_overflow = false;
    pthread_mutex_unlock(&live_mu);
    atomic_store(&fail_armed, 1);
    return true;
}

int64_t prof_heap_fail_disarm(void) {
    atomic_store(&fail_armed, 0);
    fail_mine = 0;
    return atomic_load(&fail_seen);
}

bool prof_heap_fail_fired(void) { return atomic_load(&fail_fired); }

bool prof_heap_fail_net(int64_t *blocks, int64_t *bytes) {
    pthread_mutex_lock(&live_mu);
    *blocks = net_blocks;
    *bytes = net_bytes;
    bool ok = !live_overflow;
    pthread_mutex_unlock(&live_mu);
    return ok;
}

// LLMSCOPE_FAIL_ALLOC=N arms the injection before main() over every thread,
// so a shell loop can sweep a command; when the command ends without
// reaching allocation N, one line on stderr says so (the loop's end).
static int64_t fail_env_n;

__attribute__((constructor)) static void fail_env_init(void) {
    const char *v = getenv("LLMSCOPE_FAIL_ALLOC");
    if (!v || !*v) return;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*end || n < 1) return;
    fail_env_n = n;
    prof_heap_fail_nth(n, PROF_FAIL_ALL_THREADS);
    fail_mine = 0;
}

__attribute__((destructor)) static void fail_env_report(void) {
    if (!fail_env_n || atomic_load(&fail_fired)) return;
    fprintf(stderr, "LLMSCOPE_FAIL_ALLOC=%lld: not reached (%lld allocations)\n", (long long)fail_env_n,
            (long long)atomic_load(&fail_seen));
}

void *malloc(size_t n) {
    if (FAIL_NOW()) { errno = ENOMEM; return NULL; }
    void *p = __libc_malloc(n);
    NOTE_ALLOC(p);
    TRACK(p, n);
    return p;
}

void free(void *p) {
    if (!p) return;
    NOTE_FREE(p);
    untrack(p);
    __libc_free(p);
}

void *calloc(size_t a, size_t b) {
    if (FAIL_NOW()) { errno = ENOMEM; return NULL; }
    void *p = __libc_calloc(a, b);
    NOTE_ALLOC(p);
    if (p) TRACK(p, a * b);   // no overflow: calloc succeeded
    return p;
}

void *realloc(void *old, size_t n) {
    // A failed realloc leaves old allocated but forgotten by the profile.
    // realloc(p, 0) frees p: it never fails.
    if ((n || !old) && FAIL_NOW()) { errno = ENOMEM; return NULL; }
    if (old) { NOTE_FREE(old); untrack(old); }
    void *p = __libc_realloc(old, n);
    if (!p && n && old) NOTE_ALLOC(old);   // it failed: old is still there
    NOTE_ALLOC(p);
    if (p && n) TRACK(p, n);
    return p;
}

void *reallocarray(void *old, size_t a, size_t b) {
    size_t n;
    if (__builtin_mul_overflow(a, b, &n)) { errno = ENOMEM; return NULL; }
    if ((n || !old) && FAIL_NOW()) { errno = ENOMEM; return NULL; }
    if (old) { NOTE_FREE(old); untrack(old); }
    void *p = __libc_realloc(old, n);
    if (!p && n && old) NOTE_ALLOC(old);   // it failed: old is still there
    NOTE_ALLOC(p);
    if (p && n) TRACK(p, n);
    return p;
}

int posix_memalign(void **out, size_t align, size_t n) {
    if (align < sizeof(void *) || (align & (align - 1))) return EINVAL;
    if (FAIL_NOW()) return ENOMEM;
    int saved = errno;
    void *p = __libc_memalign(align, n);
    errno = saved;
    if (!p) return ENOMEM;
    NOTE_ALLOC(p);
    TRACK(p, n);
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t n) {
    if (align == 0 || (align & (align - 1))) { errno = EINVAL; return NULL; }
    if (FAIL_NOW()) { errno = ENOMEM; return NULL; }
    void *p = __libc_memalign(align, n);
    NOTE_ALLOC(p);
    if (p) TRACK(p, n);
    return p;
}

void *memalign(size_t align, size_t n) {
    if (FAIL_NOW()) { errno = ENOMEM; return NULL; }
    void *p = __libc_memalign(align, n);
    NOTE_ALLOC(p);
    if (p) TRACK(p, n);
    return p;
}

void *valloc(size_t n) {
    if (FAIL_NOW()) { errno = ENOMEM; return NULL; }
    void *p = __libc_valloc(n);
    NOTE_ALLOC(p);
    if (p) TRACK(p, n);
    return p;
}

void *pvalloc(size_t n) {
    if (FAIL_NOW()) { errno = ENOMEM; return NULL; }
    void *p = __libc_pvalloc(n);
    NOTE_ALLOC(p);
    if (p) TRACK(p, n);
    return p;
}

void prof_heap_set_rate(int64_t bytes) {
    if (bytes < 0) bytes = 0;
    atomic_store(&heap_rate, bytes);
    countdown = bytes > 0 ? next_interval(bytes) : OFF_COUNTDOWN;
    inited = 1;
}

#else

void prof_heap_set_rate(int64_t bytes) { atomic_store(&heap_rate, bytes < 0 ? 0 : bytes); }
bool prof_heap_fail_nth(int64_t n, prof_fail_scope scope) { (void)n; (void)scope; return false; }
int64_t prof_heap_fail_disarm(void) { return 0; }
bool prof_heap_fail_fired(void) { return false; }
bool prof_heap_fail_net(int64_t *blocks, int64_t *bytes) { *blocks = *bytes = 0; return false; }

__attribute__((constructor)) static void fail_env_init(void) {
    const char *v = getenv("LLMSCOPE_FAIL_ALLOC");
    if (v && *v) fprintf(stderr, "LLMSCOPE_FAIL_ALLOC ignored: the allocator interposer is compiled out of this build\n");
}

#endif

// Go's scaleHeapSample: a block of average size s is sampled with
// probability 1 - exp(-s / rate), so each sampled count and size stand for
// 1 / (1 - exp(-s / rate)) of them.
static void scale(int64_t count, int64_t size, int64_t rate, int64_t *oc, int64_t *os) {
    if (count <= 0 || size <= 0) { *oc = *os = 0; return; }
    if (rate <= 1) { *oc = count; *os = size; return; }
    double avg = (double)size / (double)count;
    double s = 1.0 / (1.0 - exp(-avg / (double)rate));
    *oc = (int64_t)((double)count * s);
    *os = (int64_t)((double)size * s);
}

// Memory-mapped data files (model weights) of at least 256 KiB, from
// /proc/self/smaps: each becomes a sample "[mmap] PATH" with
// alloc_space = mapped bytes and inuse_space = resident bytes, labelled
// kind=mmap (go tool pprof -tagignore kind=mmap leaves them out). Files
// with an executable mapping (the program, shared libraries) are code, not
// data, and are left out.
#define MAX_MMAP_FILES 256
typedef struct mapped_file { char path[256]; int64_t size, rss; bool exec; } mapped_file;

static bool add_mapped_files(prof_profile *p) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return true;
    mapped_file *files = calloc(MAX_MMAP_FILES, sizeof *files);
    if (!files) { fclose(f); return false; }
    int n = 0, cur = -1;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        uintptr_t lo, hi;
        char perm[8];
        int pos = 0;
        long long kb;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, perm, &pos) >= 3 && pos > 0) {
            char *path = line + pos;
            path[strcspn(path, "\n")] = 0;
            cur = -1;
            if (path[0] != '/') continue;
            for (int i = 0; i < n && cur < 0; i++) if (!strcmp(files[i].path, path)) cur = i;
            if (cur < 0 && n < MAX_MMAP_FILES) {
                cur = n++;
                snprintf(files[cur].path, sizeof files[cur].path, "%s", path);
            }
            if (cur < 0) continue;
            if (perm[2] == 'x') { files[cur].exec = true; cur = -1; continue; }
            files[cur].size += (int64_t)(hi - lo);
        } else if (cur >= 0 && sscanf(line, "Rss: %lld kB", &kb) == 1) {
            files[cur].rss += (int64_t)kb * 1024;
        }
    }
    fclose(f);
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        if (files[i].exec || files[i].size < (256 << 10)) continue;
        char name[300];
        snprintf(name, sizeof name, "[mmap] %.255s", files[i].path);
        int64_t v[4] = {1, files[i].size, 1, files[i].rss};
        prof_label l[3] = {{"kind", "mmap", 0, NULL}, {"mapped", NULL, files[i].size, "bytes"}, {"resident", NULL, files[i].rss, "bytes"}};
        ok = prof_profile_add_named(p, name, v, l, 3);
    }
    free(files);
    // Model files read into memory (llama_load's default) are anonymous
    // memory, not a mapped file: each named util_huge_alloc() region is a
    // sample "[weights] PATH" the same way, with the bytes in huge pages.
    util_region *rg = calloc(UTIL_MAX_REGIONS, sizeof *rg);
    if (!rg) return false;
    const int nr = util_huge_regions(rg, UTIL_MAX_REGIONS);
    for (int i = 0; i < nr && ok; i++) {
        const int64_t rss = rg[i].rss, huge = rg[i].huge;
        if (rss < 0) continue;
        char name[300];
        snprintf(name, sizeof name, "[weights] %.255s", rg[i].name);
        int64_t v[4] = {1, (int64_t)rg[i].len, 1, rss};
        prof_label l[4] = {{"kind", "weights", 0, NULL}, {"mapped", NULL, (int64_t)rg[i].len, "bytes"},
                           {"resident", NULL, rss, "bytes"}, {"huge_pages", NULL, huge, "bytes"}};
        ok = prof_profile_add_named(p, name, v, l, 4);
    }
    free(rg);
    return ok;
}

prof_status prof_heap_profile(bool allocs, double seconds, prof_response *r) {
    if (!PROF_HEAP_INTERPOSE) {
        prof_set_error(r, "heap profiling is compiled out of this build (sanitizer or PROF_HEAP_INTERPOSE=0)");
        return PROF_EUNAVAIL;
    }
    if (!(seconds >= 0 && seconds <= 3600)) { prof_set_error(r, "seconds must be in [0, 3600]"); return PROF_EINVAL; }
    int64_t *base = NULL, *cur = NULL, nbase = 0;
    uint64_t t0 = util_now_ns();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    if (seconds > 0) {
        nbase = prof_btable_snapshot(&heap_buckets, &base);
        if (nbase < 0) { prof_set_error(r, "out of memory"); return PROF_ENOMEM; }
        struct timespec d = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
        while (nanosleep(&d, &d) != 0 && errno == EINTR) {}
    }
    int64_t n = prof_btable_snapshot(&heap_buckets, &cur);
    prof_profile *p = n >= 0 ? prof_profile_new() : NULL;
    if (!p) { free(base); free(cur); prof_set_error(r, "out of memory"); return PROF_ENOMEM; }
    int64_t rate = prof_heap_rate();
    prof_profile_sample_type(p, "alloc_objects", "count");
    prof_profile_sample_type(p, "alloc_space", "bytes");
    prof_profile_sample_type(p, "inuse_objects", "count");
    prof_profile_sample_type(p, "inuse_space", "bytes");
    prof_profile_period(p, "space", "bytes", rate);
    if (allocs) prof_profile_default_sample_type(p, "alloc_space");
    prof_profile_times(p, (int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec, seconds > 0 ? (int64_t)(util_now_ns() - t0) : 0);
    pthread_mutex_lock(&heap_buckets.mu);
    prof_bucket *all = atomic_load(&heap_buckets.all);
    pthread_mutex_unlock(&heap_buckets.mu);
    bool ok = true;
    for (prof_bucket *b = all; b && ok; b = b->all) {
        if ((int64_t)b->id >= n) continue;   // made after the snapshot
        int64_t v[4];
        for (int k = 0; k < 4; k++) {
            v[k] = cur[b->id * PROF_BUCKET_VALUES + k];
            if (base && (int64_t)b->id < nbase) v[k] -= base[b->id * PROF_BUCKET_VALUES + k];
        }
        int64_t out[4];
        scale(v[0], v[1], rate, &out[0], &out[1]);
        scale(v[0] - v[2], v[1] - v[3], rate, &out[2], &out[3]);
        if (!out[0] && !out[2]) continue;
        prof_label l = {"bytes", NULL, v[0] ? v[1] / v[0] : 0, "bytes"};
        ok = prof_profile_add(p, b->pcs, b->depth, false, out, &l, 1);
    }
    free(base);
    free(cur);
    if (ok && seconds == 0) ok = add_mapped_files(p);
    if (!ok) { prof_profile_free(p); prof_set_error(r, "out of memory"); return PROF_ENOMEM; }
    return prof_finish(p, r);
}
