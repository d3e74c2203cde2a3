// pprof.h — the built-in profiler's public API: each call returns the
// finished bytes of one /debug/pprof/* response (names, parameters and
// formats as Go's net/http/pprof; profiles are gzip'd google/pprof
// profile.proto that `go tool pprof` reads). The HTTP layer maps the status
// codes below to HTTP statuses and copies the bytes out.
//
//   CPU      per-thread CPU-time timers → SIGPROF → frame-pointer stacks
//   heap     sampled malloc/free interposition (allocs: the same data)
//   block    time blocked in prof_cond/prof_queue waits and contended locks
//   mutex    contended prof_mutex delay, charged to the holder's unlock
//   threads  every registered thread's stack (alias goroutine)
//
// Thread safety: every function may be called from any thread, concurrently;
// only one CPU profile runs at a time (PROF_EBUSY). None may be called from
// a signal handler. See docs/profiling.md for the design and its costs.
#ifndef LLMSCOPE_PROF_PPROF_H
#define LLMSCOPE_PROF_PPROF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Status codes (the HTTP status to answer with in brackets).
typedef enum prof_status {
    PROF_OK = 0,            // [200]
    PROF_EINVAL = -1,       // bad parameter                          [400]
    PROF_EBUSY = -2,        // a CPU profile is already running        [409 Conflict]
    PROF_ENOMEM = -3,       // allocation failed                       [500]
    PROF_EUNAVAIL = -4,     // not in this build (heap under ASan/TSan) or the OS refused [501]
    PROF_ENOTFOUND = -5,    // no such profile                         [404]
    PROF_EINTERNAL = -6,    // timer or signal set-up failed           [500]
} prof_status;

// The HTTP status for a prof_status (200, 400, 404, 409, 500, 501).
int prof_http_status(prof_status s);
const char *prof_strerror(prof_status s);

// Call once at start-up, before starting threads (idempotent): installs the
// SIGPROF and SIGURG handlers (SA_RESTART) and the thread-registry hook, and
// reads LLMSCOPE_MEMPROFILERATE (the heap sampling rate in bytes, 0 = off;
// as Go's GODEBUG=memprofilerate). The block and mutex recorders are on from
// the start at their default rates. The
// profiler owns SIGPROF and SIGURG; the process must not use them.
prof_status prof_init(void);

// A response: body is malloc'd (free it with free()); content_type is static.
typedef struct prof_response {
    uint8_t *body;
    size_t len;
    const char *content_type;  // "application/octet-stream" (gzip'd proto) or "text/plain; charset=utf-8"
    char error[160];           // on failure: a one-line message for the body
} prof_response;
void prof_response_free(prof_response *r);

// One call per endpoint. `arg` returns the value of a query parameter or
// NULL (MHD_lookup_connection_value with MHD_GET_ARGUMENT_KIND fits, through
// a one-line adapter); `name` is the path after /debug/pprof/ ("" for the
// index, "profile", "heap", "allocs", "block", "mutex", "threads",
// "goroutine"). Parameters: profile: seconds (1..3600, default 30),
// hz (1..4000, default 100); heap/allocs/block/mutex: seconds (0..3600, the
// delta over that many seconds when > 0), gc (ignored); threads/goroutine:
// debug (0, 1, 2); every profile: debug=0 (the proto; threads also 1 and 2).
// Blocks for `seconds` where given. Fills *r; returns the status.
typedef const char *(*prof_arg_fn)(void *ctx, const char *key);
prof_status prof_pprof_handle(const char *name, prof_arg_fn arg, void *ctx, prof_response *r);

// The same, typed (each fills *r; body and len only on PROF_OK).
prof_status prof_pprof_index(prof_response *r);
prof_status prof_cpu_profile(double seconds, int hz, prof_response *r);
prof_status prof_heap_profile(bool allocs, double seconds, prof_response *r);
prof_status prof_block_profile(double seconds, prof_response *r);
prof_status prof_mutex_profile(double seconds, prof_response *r);
prof_status prof_threads_profile(int debug, prof_response *r);

// CPU profiling in two steps (what prof_cpu_profile does around a sleep).
prof_status prof_cpu_start(int hz, double expected_seconds);
prof_status prof_cpu_stop(prof_response *r);
// Of the last (or running) CPU profile: SIGPROF handler runs and their total
// time in ns (the profile's comments carry the same figures).
void prof_cpu_stats(int64_t *signals, int64_t *handler_ns);

// Rates. Heap: mean bytes between samples (Go's MemProfileRate; 512 KiB by
// default, 1 = every allocation, 0 = off). A change applies to the calling
// thread at once and to other threads at their next sample.
void prof_heap_set_rate(int64_t bytes);
int64_t prof_heap_rate(void);
bool prof_heap_available(void);   // false when the interposer is compiled out

// Allocation-failure injection, for tests. prof_heap_fail_nth() makes the
// nth allocation (1-based) counted from now fail as glibc fails: NULL with
// errno ENOMEM (posix_memalign returns ENOMEM). Counted are the allocating
// calls (malloc, calloc, realloc but not realloc(p, 0), reallocarray,
// posix_memalign, aligned_alloc, memalign, valloc, pvalloc) of the threads in
// scope: every thread, only the calling one, or every thread but it. Only
// that one allocation fails. Returns false (nothing armed) when the
// interposer is compiled out. prof_heap_fail_disarm() stops counting and
// returns how many allocations were counted: when that is below n, n has
// passed the last allocation of what ran. The environment variable
// LLMSCOPE_FAIL_ALLOC=N arms N over every thread before main().
typedef enum { PROF_FAIL_ALL_THREADS, PROF_FAIL_THIS_THREAD, PROF_FAIL_OTHER_THREADS } prof_fail_scope;
bool prof_heap_fail_nth(int64_t n, prof_fail_scope scope);
int64_t prof_heap_fail_disarm(void);
bool prof_heap_fail_fired(void);   // the armed failure happened
// The blocks, and their bytes (usable size), that the threads in scope
// allocated since arming and have not freed (a leak check: 0 and 0 after
// work that freed all it made; frees of older blocks do not count). False
// when the books overflowed (more than 65536 live blocks) or the interposer
// is compiled out.
bool prof_heap_fail_net(int64_t *blocks, int64_t *bytes);
// Block: waits of at least rate_ns are all recorded, shorter ones with
// probability wait/rate_ns (Go's SetBlockProfileRate; default 10000 ns,
// 0 = off, 1 = every wait). Mutex: 1 in `fraction` contention events is
// recorded (Go's SetMutexProfileFraction; default 10, 0 = off).
void prof_block_set_rate(int64_t rate_ns);
void prof_mutex_set_fraction(int fraction);

#endif
