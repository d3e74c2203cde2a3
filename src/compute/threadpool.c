// threadpool.c — the explicit compute pool (see threadpool.h). Dispatch and
// barriers are generation counters: waiters spin for a bounded time (cheap
// when the pool is busy, as in a decode step), then sleep on a futex, so an
// idle pool costs no CPU. Wakers make the futex call only when someone sleeps.
#include "threadpool.h"
#include "affinity.h"
#include "prof/region.h"
#include "prof/thread.h"

#include <immintrin.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TP_SPIN 4000   // pause iterations before sleeping (~100-200 µs)

void (*tp_lab_hook)(int ith, int nth);

typedef struct tp_slot {
    _Alignas(64) _Atomic int cpu;   // -1 = not seen yet
} tp_slot;

typedef struct tp_worker {
    tp_pool *pool;
    int ith;
    int cpu;         // pinned to this CPU; -1 = not pinned
    char name[16];   // "compute-1" …
} tp_worker;

struct tp_pool {
    int n;                       // threads, the caller included
    pthread_t *threads;          // (n - 1) workers
    tp_worker *workers;          // (n - 1)
    tp_fn fn;
    void *arg;
    const char *phase;           // the caller's phase label, worn by the workers during the run
    _Alignas(64) _Atomic uint32_t work_gen;    // bumped per tp_run()
    _Atomic int work_sleepers;
    _Alignas(64) _Atomic int n_done;           // workers finished with the current run
    _Atomic int done_sleepers;
    _Alignas(64) _Atomic int bar_count;        // threads arrived at the barrier
    _Atomic uint32_t bar_gen;
    _Atomic int bar_sleepers;
    _Atomic int stop;
    int cpu0;                    // thread 0's CPU (-1 = not pinned) …
    pthread_t placed_caller;     // … and the caller pinned to it
    bool caller_placed;
    tp_slot *slot;               // per thread: the CPU it was last seen on (note_cpu())
    _Atomic int *shared;         // tp_shared_counter(): TP_SHARED loops × n threads' counters, a line each, zeroed at every barrier
    char name[11];
};

static _Thread_local int shared_next;   // this thread's shared loops since the last barrier

static void shared_reset(tp_pool *pool) {
    for (int i = 0; i < TP_SHARED * pool->n; i++)
        atomic_store_explicit(&pool->shared[(size_t)i * TP_COUNTER_STRIDE], 0, memory_order_relaxed);
}

_Atomic int *tp_shared_counter(tp_pool *pool) {
    return shared_next < TP_SHARED ? &pool->shared[(size_t)shared_next++ * (size_t)pool->n * TP_COUNTER_STRIDE] : NULL;
}

static void futex_wait(_Atomic uint32_t *addr, uint32_t val) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

// Which thread of its pool the calling thread is (0 for the caller of tp_run).
static _Thread_local int my_ith;

// Records the CPU the calling thread is on now, read by peer_here() and
// spread(). Called where the kernel may have moved it: at the start of a job,
// at a barrier, after a sleep.
static inline int note_cpu(tp_pool *pool) {
    int me = sched_getcpu();
    if (atomic_load_explicit(&pool->slot[my_ith].cpu, memory_order_relaxed) != me)
        atomic_store_explicit(&pool->slot[my_ith].cpu, me, memory_order_relaxed);
    return me;
}

// Whether another thread of the pool was last seen on the calling thread's CPU.
static bool peer_here(tp_pool *pool) {
    int me = sched_getcpu();
    for (int j = 0; j < pool->n; j++)
        if (j != my_ith && atomic_load_explicit(&pool->slot[j].cpu, memory_order_relaxed) == me) return true;
    return false;
}

// One step of a spin-wait: a pause, and every 64th step a look at where the
// others are. A waiter that shares its CPU with a thread of its pool (the
// kernel can place both there, and after a burst of wake-ups elsewhere keeps
// them there for tens of milliseconds) would otherwise spin out its whole
// turn before that thread runs: every barrier then cost ~150 µs. It yields
// instead, so the peer runs at once. A waiter alone on its CPU never yields:
// a yield would hand the CPU to whatever else is runnable there (another
// process, at any priority) for a whole slice.
static inline void spin_step(tp_pool *pool, int i) {
    if ((i & 63) == 63 && peer_here(pool)) sched_yield();
    else _mm_pause();
}

// Waits until *addr != val: spin, then sleep counting itself in *sleepers.
static void wait_change(tp_pool *pool, _Atomic uint32_t *addr, uint32_t val, _Atomic int *sleepers) {
    for (int i = 0; i < TP_SPIN; i++) {
        if (atomic_load_explicit(addr, memory_order_acquire) != val) return;
        spin_step(pool, i);
    }
    while (atomic_load(addr) == val) {
        atomic_fetch_add(sleepers, 1);
        futex_wait(addr, val);
        atomic_fetch_sub(sleepers, 1);
    }
    note_cpu(pool);
}

static _Atomic uint64_t n_spread;   // tp_spread_moves()

uint64_t tp_spread_moves(void) { return atomic_load_explicit(&n_spread, memory_order_relaxed); }

// Called by an unpinned worker as it starts a job. When the kernel has
// put it on the CPU of a lower-numbered thread of the pool (it does so after
// bursts of wake-ups elsewhere: the waker's CPU looks cheap), the two share
// one CPU while another may sit idle, and the scheduler keeps them together
// for tens of milliseconds because both are cache-hot. The thread then moves
// itself: it narrows its affinity to the CPUs no pool thread is on, which
// migrates it at once, and restores its affinity, which leaves it there.
static void spread(tp_pool *pool) {
    int me = note_cpu(pool);
    if (me < 0) return;
    bool clash = false;
    for (int j = 0; j < my_ith && !clash; j++) clash = atomic_load_explicit(&pool->slot[j].cpu, memory_order_relaxed) == me;
    if (!clash) return;
    cpu_set_t all, away;
    if (sched_getaffinity(0, sizeof all, &all) != 0) return;
    away = all;
    for (int j = 0; j < pool->n; j++) {
        int c = atomic_load_explicit(&pool->slot[j].cpu, memory_order_relaxed);
        if (c >= 0 && c < CPU_SETSIZE) CPU_CLR(c, &away);
    }
    if (CPU_COUNT(&away) == 0) return;
    if (sched_setaffinity(0, sizeof away, &away) != 0) return;
    sched_setaffinity(0, sizeof all, &all);
    note_cpu(pool);
    atomic_fetch_add_explicit(&n_spread, 1, memory_order_relaxed);
}

static void *worker_main(void *p) {
    tp_worker *w = p;
    tp_pool *pool = w->pool;
    uint32_t seen = 0;
    // Known by name and role to the profiler, the tracer and the threads dump.
    prof_thread_register(w->name, "compute");
    aff_pin_self(w->cpu);
    my_ith = w->ith;
    for (;;) {
        wait_change(pool, &pool->work_gen, seen, &pool->work_sleepers);
        seen = atomic_load(&pool->work_gen);
        if (atomic_load(&pool->stop)) break;
        if (w->cpu < 0) spread(pool);
        else note_cpu(pool);
        // The workers work for the caller's phase: samples, traces and
        // counters of this run are attributed to it.
        const char *phase = pool->phase ? pool->phase : "compute";
        prof_region_begin(phase, 0);
        if (__builtin_expect(tp_lab_hook != NULL, 0)) tp_lab_hook(w->ith, pool->n);
        shared_next = 0;
        pool->fn(w->ith, pool->n, pool->arg);
        prof_region_end(phase, NULL, 0);
        if (atomic_fetch_add(&pool->n_done, 1) == pool->n - 2 && atomic_load(&pool->done_sleepers))
            futex_wake((_Atomic uint32_t *)&pool->n_done);
    }
    prof_thread_unregister();
    return NULL;
}

tp_pool *tp_create(int n_threads, const char *name) { return tp_create_placed(n_threads, name, NULL); }

tp_pool *tp_create_placed(int n_threads, const char *name, const int *cpu) {
    if (n_threads < 1 || n_threads > 1024) return NULL;
    // The counters sit on their own cache lines: the struct needs 64-byte
    // alignment, which malloc does not promise.
    size_t sz = (sizeof(tp_pool) + 63) / 64 * 64;
    tp_pool *pool = aligned_alloc(64, sz);
    if (!pool) return NULL;
    memset(pool, 0, sz);
    pool->n = n_threads;
    pool->shared = aligned_alloc(64, (size_t)TP_SHARED * (size_t)n_threads * TP_COUNTER_STRIDE * sizeof(_Atomic int));
    if (!pool->shared) { free(pool); return NULL; }
    for (int i = 0; i < TP_SHARED * n_threads; i++) atomic_init(&pool->shared[(size_t)i * TP_COUNTER_STRIDE], 0);
    pool->cpu0 = cpu ? cpu[0] : -1;
    snprintf(pool->name, sizeof pool->name, "%s", name ? name : "pool");
    if (n_threads > 1) {
        pool->threads = calloc((size_t)n_threads - 1, sizeof(pthread_t));
        pool->workers = calloc((size_t)n_threads - 1, sizeof(tp_worker));
        pool->slot = aligned_alloc(64, (size_t)n_threads * sizeof *pool->slot);
        if (!pool->threads || !pool->workers || !pool->slot) {
            free(pool->threads); free(pool->workers); free(pool->slot); free(pool->shared); free(pool);
            return NULL;
        }
        for (int i = 0; i < n_threads; i++) atomic_init(&pool->slot[i].cpu, -1);
    }
    for (int i = 1; i < n_threads; i++) {
        pool->workers[i - 1] = (tp_worker){pool, i, cpu ? cpu[i] : -1, ""};
        snprintf(pool->workers[i - 1].name, sizeof pool->workers[i - 1].name, "%.10s-%d", pool->name, i);
        if (pthread_create(&pool->threads[i - 1], NULL, worker_main, &pool->workers[i - 1]) != 0) {
            pool->n = i;   // stop the ones already started
            tp_free(pool);
            return NULL;
        }
    }
    return pool;
}

void tp_free(tp_pool *pool) {
    if (!pool) return;
    atomic_store(&pool->stop, 1);
    atomic_fetch_add(&pool->work_gen, 1);
    futex_wake(&pool->work_gen);
    for (int i = 1; i < pool->n; i++) pthread_join(pool->threads[i - 1], NULL);
    free(pool->threads);
    free(pool->workers);
    free(pool->slot);
    free(pool->shared);
    free(pool);
}

int tp_n_threads(const tp_pool *pool) { return pool->n; }

void tp_run(tp_pool *pool, tp_fn fn, void *arg) {
    if (__builtin_expect(pool->cpu0 >= 0, 0) && (!pool->caller_placed || !pthread_equal(pool->placed_caller, pthread_self()))) {
        aff_pin_self(pool->cpu0);
        pool->placed_caller = pthread_self();
        pool->caller_placed = true;
    }
    if (__builtin_expect(tp_lab_hook != NULL, 0)) tp_lab_hook(0, pool->n);
    shared_next = 0;
    shared_reset(pool);   // the workers see it through work_gen (below)
    if (pool->n == 1) { fn(0, 1, arg); return; }
    pool->fn = fn;
    pool->arg = arg;
    prof_thread *self = prof_thread_self();
    pool->phase = self ? atomic_load_explicit(&self->phase, memory_order_relaxed) : NULL;
    atomic_store(&pool->n_done, 0);
    my_ith = 0;
    note_cpu(pool);
    atomic_fetch_add(&pool->work_gen, 1);
    if (atomic_load(&pool->work_sleepers)) futex_wake(&pool->work_gen);
    fn(0, pool->n, arg);
    // Wait for the workers.
    for (;;) {
        int d = atomic_load(&pool->n_done);
        if (d == pool->n - 1) break;
        int spun = 0;
        while (spun < TP_SPIN && atomic_load_explicit(&pool->n_done, memory_order_acquire) == d) spin_step(pool, spun++);
        if (spun == TP_SPIN) {
            atomic_fetch_add(&pool->done_sleepers, 1);
            futex_wait((_Atomic uint32_t *)&pool->n_done, (uint32_t)d);
            atomic_fetch_sub(&pool->done_sleepers, 1);
            note_cpu(pool);
        }
    }
}

void tp_barrier(tp_pool *pool) {
    shared_next = 0;
    if (pool->n == 1) { shared_reset(pool); return; }
    uint32_t gen = atomic_load(&pool->bar_gen);
    note_cpu(pool);
    if (atomic_fetch_add(&pool->bar_count, 1) == pool->n - 1) {
        // Everyone is done with this interval's shared loops: zero their
        // counters before anyone is released into the next one.
        shared_reset(pool);
        atomic_store(&pool->bar_count, 0);
        atomic_fetch_add(&pool->bar_gen, 1);
        if (atomic_load(&pool->bar_sleepers)) futex_wake(&pool->bar_gen);
        return;
    }
    wait_change(pool, &pool->bar_gen, gen, &pool->bar_sleepers);
}

int tp_default_threads(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void tp_split(long n, int ith, int nth, long align, long *begin, long *end) {
    if (align < 1) align = 1;
    long chunk = (n + nth - 1) / nth;
    chunk = (chunk + align - 1) / align * align;
    long b = (long)ith * chunk, e = b + chunk;
    if (b > n) b = n;
    if (e > n) e = n;
    *begin = b;
    *end = e;
}
