// threadpool.h — the explicit compute pool: N named threads (the caller is
// thread 0) that all run the same function with {ith, nth} and meet at
// barriers, as ggml's graph compute does. No OpenMP: every thread is known by
// name ("compute-1" …) to the profiler and to `perf`.
// Thread safety: one tp_run() at a time per pool (callers serialise); tp_barrier()
// may only be called from inside the function given to tp_run(), by every thread.
#ifndef LLMSCOPE_THREADPOOL_H
#define LLMSCOPE_THREADPOOL_H

#include <stdint.h>

typedef struct tp_pool tp_pool;

// Work item: every thread ith in [0, nth) calls fn(ith, nth, arg).
typedef void (*tp_fn)(int ith, int nth, void *arg);

// Creates a pool of n_threads (>= 1; n_threads-1 worker threads are started,
// the caller of tp_run() is thread 0). `name` prefixes the thread names
// ("compute" -> "compute-1" …). Returns NULL on failure.
tp_pool *tp_create(int n_threads, const char *name);
// The same, with thread i pinned to CPU cpu[i] (cpu NULL or cpu[i] < 0: not
// pinned). Workers pin as they start; thread 0 — whichever thread calls
// tp_run() — is pinned at its first run (and again if another thread calls).
tp_pool *tp_create_placed(int n_threads, const char *name, const int *cpu);
void tp_free(tp_pool *pool);
int tp_n_threads(const tp_pool *pool);

// Runs fn on all threads and returns when every thread has returned.
void tp_run(tp_pool *pool, tp_fn fn, void *arg);

// All threads of the current tp_run() wait here for each other. Spins briefly,
// then sleeps (futex), so an idle pool costs no CPU.
void tp_barrier(tp_pool *pool);

// Shared loops: counters the threads draw work items from (atomic_fetch_add
// until the items run out), so a thread that runs ahead takes over the work
// of one that the scheduler has put aside instead of waiting for it at the
// next barrier. A loop has one counter per thread of the pool, each on its
// own cache line (counter t at c + t·TP_COUNTER_STRIDE): thread t draws its
// own share of the items from counter t, then what is left of the others'
// shares from theirs, so in the common case no counter's line moves between
// cores. The k-th call on each thread since the last barrier (or the start
// of the run) returns the same counters, zeroed: every thread must make the
// same calls. NULL past TP_SHARED loops in one barrier interval (the caller
// then splits the work statically).
#define TP_SHARED 8
#define TP_COUNTER_STRIDE 16   // ints: one 64-byte line per counter
_Atomic int *tp_shared_counter(tp_pool *pool);

// When set, every thread of every pool calls it at the start of each run,
// before the work function (one predictable branch when unset). The
// server's teaching lab uses it; nothing else should.
extern void (*tp_lab_hook)(int ith, int nth);

// Default thread count: the number of CPUs this process may run on.
int tp_default_threads(void);
// How many times an unpinned pool thread found itself on the CPU of another
// thread of its pool at the start of a job and moved away (all pools).
uint64_t tp_spread_moves(void);

// Splits [0, n) into nth near-equal parts; part ith is [*begin, *end).
// `align` rounds part boundaries to multiples of it (use 1 for none).
void tp_split(long n, int ith, int nth, long align, long *begin, long *end);

#endif
