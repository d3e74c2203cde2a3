// cpu.c — the CPU profiler: the timer and signal owner and its sample table.
// Every registered thread gets a timer on its own CPU-time clock
// (timer_create with SIGEV_THREAD_ID), so each thread is sampled in
// proportion to the CPU it uses (a process-wide itimer samples threads
// unevenly). SIGPROF's handler unwinds the interrupted frame-pointer stack
// and adds it, with the thread's labels, to a lock-free hash table made
// before the timers start; the collector reads the table after the timers
// are gone and no handler is running.
//
// Signal safety: on_sigprof() saves errno, allocates nothing, takes no lock,
// calls no stdio; it touches only the table (atomics) and its thread's slot.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "util/util.h"

#define PROBES 32   // slots tried per sample before it is dropped

typedef struct cpu_entry {
    _Atomic uint32_t state;         // 0 empty, 1 being written, 2 ready
    uint32_t depth;
    uint64_t hash;
    _Atomic int64_t count;          // samples (timer expirations)
    uint64_t req;
    const char *phase;
    uint32_t seq;                   // the thread's registration number
    char thread[PROF_NAME_LEN];
    char role[PROF_NAME_LEN];
    uintptr_t pcs[PROF_MAX_DEPTH];  // leaf first; pcs[0] is the interrupted pc
} cpu_entry;

static struct {
    pthread_mutex_t mu;                     // start/stop and timer (dis)arming
    _Atomic int active;                     // the handler records only while 1
    _Atomic int inflight;                   // handlers running now
    _Atomic int gen;                        // profile number, carried by the timers' signals
    cpu_entry *table;                       // (cap) entries, mmap'd at start
    size_t cap;
    _Atomic int64_t dropped;                // samples lost to a full table
    _Atomic int64_t signals, handler_ns;    // handler runs (not preempted) and their total time: the cost of a sample
    int64_t period_ns;
    uint64_t start_ns, start_wall_ns;
    timer_t timers[PROF_MAX_THREADS];
    pid_t armed_tid[PROF_MAX_THREADS];      // 0 = no timer in that slot
    bool installed;
} cpu = {.mu = PTHREAD_MUTEX_INITIALIZER};

static uint64_t hash_sample(const uintptr_t *pcs, int n, uint64_t req, const char *phase, uint32_t seq) {
    uint64_t h = 1469598103934665603ULL ^ seq;
    for (int i = 0; i < n; i++) h = (h ^ pcs[i]) * 1099511628211ULL;
    h = (h ^ req) * 1099511628211ULL;
    h = (h ^ (uintptr_t)phase) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static bool same(const cpu_entry *e, uint64_t h, const uintptr_t *pcs, int n, uint64_t req, const char *phase, uint32_t seq) {
    if (e->hash != h || e->depth != (uint32_t)n || e->req != req || e->phase != phase || e->seq != seq) return false;
    for (int i = 0; i < n; i++) if (e->pcs[i] != pcs[i]) return false;
    return true;
}

static int64_t mono_ns(void) {   // clock_gettime is async-signal-safe (and a vDSO call)
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void on_sigprof(int sig, siginfo_t *si, void *uc) {
    int saved_errno = errno;
    atomic_fetch_add(&cpu.inflight, 1);
    if (atomic_load(&cpu.active) && si && si->si_code == SI_TIMER && si->si_value.sival_int == atomic_load(&cpu.gen)) {
        int64_t t0 = mono_ns();
        prof_thread *t = prof_thread_self();
        uintptr_t pcs[PROF_MAX_DEPTH];
        int n = prof_unwind_context(uc, t ? t->stack_lo : 0, t ? t->stack_hi : 0, pcs, PROF_MAX_DEPTH);
        int64_t weight = 1 + (si->si_overrun > 0 ? si->si_overrun : 0);   // expirations merged by the kernel
        uint64_t req = t ? atomic_load_explicit(&t->req, memory_order_relaxed) : 0;
        const char *phase = t ? atomic_load_explicit(&t->phase, memory_order_relaxed) : NULL;
        uint32_t seq = t ? t->seq : 0;
        uint64_t h = hash_sample(pcs, n, req, phase, seq);
        bool done = false;
        for (size_t p = 0; p < PROBES && !done; p++) {
            cpu_entry *e = &cpu.table[(h + p) & (cpu.cap - 1)];
            uint32_t st = atomic_load_explicit(&e->state, memory_order_acquire);
            if (st == 2 && same(e, h, pcs, n, req, phase, seq)) {
                atomic_fetch_add_explicit(&e->count, weight, memory_order_relaxed);
                done = true;
            } else if (st == 0) {
                uint32_t zero = 0;
                if (!atomic_compare_exchange_strong(&e->state, &zero, 1)) continue;
                e->hash = h;
                e->depth = (uint32_t)n;
                e->req = req;
                e->phase = phase;
                e->seq = seq;
                for (int i = 0; i < n; i++) e->pcs[i] = pcs[i];
                for (int i = 0; i < PROF_NAME_LEN; i++) {
                    e->thread[i] = t ? t->name[i] : 0;
                    e->role[i] = t ? t->role[i] : 0;
                }
                e->thread[PROF_NAME_LEN - 1] = e->role[PROF_NAME_LEN - 1] = 0;
                atomic_store_explicit(&e->count, weight, memory_order_relaxed);
                atomic_store_explicit(&e->state, 2, memory_order_release);
                done = true;
            }
        }
        if (!done) atomic_fetch_add_explicit(&cpu.dropped, weight, memory_order_relaxed);
        // Runs longer than 100 us were preempted (the clock is wall time): left out of the mean.
        int64_t took = mono_ns() - t0;
        if (took < 100000) {
            atomic_fetch_add_explicit(&cpu.handler_ns, took, memory_order_relaxed);
            atomic_fetch_add_explicit(&cpu.signals, 1, memory_order_relaxed);
        }
    }
    atomic_fetch_sub(&cpu.inflight, 1);
    errno = saved_errno;
}

// The CPU-time clock of thread `tid` of this process (what glibc's
// pthread_getcpuclockid computes, from the tid, so a thread that has just
// exited gives EINVAL instead of undefined behaviour).
static clockid_t thread_clock(pid_t tid) { return (clockid_t)((~(unsigned)tid << 3) | 6u); }

// Arms slot i's timer for thread tid; cpu.mu is held.
static void arm(int i, pid_t tid) {
    if (cpu.armed_tid[i] == tid) return;
    if (cpu.armed_tid[i]) { timer_delete(cpu.timers[i]); cpu.armed_tid[i] = 0; }
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGPROF;
    sev.sigev_value.sival_int = atomic_load(&cpu.gen);
    sev._sigev_un._tid = tid;
    if (timer_create(thread_clock(tid), &sev, &cpu.timers[i]) != 0) return;
    struct itimerspec its;
    its.it_interval.tv_sec = its.it_value.tv_sec = (time_t)(cpu.period_ns / 1000000000);
    its.it_interval.tv_nsec = its.it_value.tv_nsec = (long)(cpu.period_ns % 1000000000);
    if (timer_settime(cpu.timers[i], 0, &its, NULL) != 0) { timer_delete(cpu.timers[i]); return; }
    cpu.armed_tid[i] = tid;
}

static void disarm(int i) {
    if (!cpu.armed_tid[i]) return;
    timer_delete(cpu.timers[i]);
    cpu.armed_tid[i] = 0;
}

void prof_cpu_thread_hook(prof_thread *t, bool registered) {
    int i = (int)(t - prof_thread_table());
    pthread_mutex_lock(&cpu.mu);
    if (atomic_load(&cpu.active)) {
        if (registered) arm(i, t->tid);
        else disarm(i);
    }
    pthread_mutex_unlock(&cpu.mu);
}

static prof_status install(void) {
    if (cpu.installed) return PROF_OK;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigprof;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPROF, &sa, NULL) != 0) return PROF_EINTERNAL;
    cpu.installed = true;   // stays installed: a late SIGPROF must never kill the process
    return PROF_OK;
}

prof_status prof_cpu_start(int hz, double expected_seconds) {
    if (hz < 1 || hz > 4000 || !(expected_seconds >= 0)) return PROF_EINVAL;
    pthread_mutex_lock(&cpu.mu);
    if (atomic_load(&cpu.active)) { pthread_mutex_unlock(&cpu.mu); return PROF_EBUSY; }
    prof_status st = install();
    if (st != PROF_OK) { pthread_mutex_unlock(&cpu.mu); return st; }
    prof_thread_set_hook(prof_cpu_thread_hook);
    prof_unwind_load_text();
    // Room for every sample of the run on every CPU, within [4096, 65536].
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double want = (double)hz * (expected_seconds > 0 ? expected_seconds : 30) * (double)(ncpu > 0 ? ncpu : 1);
    size_t cap = 4096;
    while (cap < 65536 && (double)cap < want) cap *= 2;
    void *mem = mmap(NULL, cap * sizeof(cpu_entry), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) { pthread_mutex_unlock(&cpu.mu); return PROF_ENOMEM; }
    cpu.table = mem;
    cpu.cap = cap;
    atomic_store(&cpu.dropped, 0);
    atomic_store(&cpu.signals, 0);
    atomic_store(&cpu.handler_ns, 0);
    cpu.period_ns = 1000000000 / hz;
    cpu.start_ns = util_now_ns();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    cpu.start_wall_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    atomic_fetch_add(&cpu.gen, 1);
    atomic_store(&cpu.active, 1);
    static prof_thread_info info[PROF_MAX_THREADS];   // under cpu.mu
    int n = prof_thread_snapshot(info, PROF_MAX_THREADS);
    for (int k = 0; k < n; k++) arm(info[k].slot, info[k].tid);
    pthread_mutex_unlock(&cpu.mu);
    return PROF_OK;
}

prof_status prof_cpu_stop(prof_response *r) {
    pthread_mutex_lock(&cpu.mu);
    if (!atomic_load(&cpu.active)) { pthread_mutex_unlock(&cpu.mu); return PROF_EINVAL; }
    for (int i = 0; i < PROF_MAX_THREADS; i++) disarm(i);
    atomic_store(&cpu.active, 0);
    // No handler may still be reading the table when it is folded and freed.
    while (atomic_load(&cpu.inflight) > 0) {
        struct timespec d = {0, 100000};
        nanosleep(&d, NULL);
    }
    cpu_entry *table = cpu.table;
    size_t cap = cpu.cap;
    cpu.table = NULL;
    uint64_t dur = util_now_ns() - cpu.start_ns;
    int64_t period = cpu.period_ns, dropped = atomic_load(&cpu.dropped);
    uint64_t wall = cpu.start_wall_ns;
    // Hold mu until the table is read: a new profile would reuse cpu.*.
    prof_profile *p = prof_profile_new();
    prof_status st = p ? PROF_OK : PROF_ENOMEM;
    if (p) {
        prof_profile_sample_type(p, "samples", "count");
        prof_profile_sample_type(p, "cpu", "nanoseconds");
        prof_profile_period(p, "cpu", "nanoseconds", period);
        prof_profile_times(p, (int64_t)wall, (int64_t)dur);
        int64_t sigs = atomic_load(&cpu.signals);
        if (sigs) {
            char c[96];
            snprintf(c, sizeof c, "%lld signals, %.0f ns per signal in the handler", (long long)sigs,
                     (double)atomic_load(&cpu.handler_ns) / (double)sigs);
            prof_profile_comment(p, c);
        }
        if (dropped) {
            char c[96];
            snprintf(c, sizeof c, "%lld samples dropped: the sample table was full", (long long)dropped);
            prof_profile_comment(p, c);
        }
        for (size_t i = 0; i < cap; i++) {
            cpu_entry *e = &table[i];
            if (atomic_load(&e->state) != 2) continue;
            int64_t n = atomic_load(&e->count);
            int64_t v[2] = {n, n * period};
            prof_label l[4];
            int nl = 0;
            l[nl++] = (prof_label){"thread", e->thread, 0, NULL};
            l[nl++] = (prof_label){"role", e->role, 0, NULL};
            if (e->phase) l[nl++] = (prof_label){"phase", e->phase, 0, NULL};
            if (e->req) l[nl++] = (prof_label){"request", NULL, (int64_t)e->req, "id"};
            if (!prof_profile_add(p, e->pcs, (int)e->depth, true, v, l, nl)) { st = PROF_ENOMEM; break; }
        }
    }
    munmap(table, cap * sizeof(cpu_entry));
    pthread_mutex_unlock(&cpu.mu);
    if (st != PROF_OK) { prof_profile_free(p); prof_set_error(r, "out of memory"); return st; }
    return prof_finish(p, r);
}

void prof_cpu_stats(int64_t *signals, int64_t *handler_ns) {
    *signals = atomic_load(&cpu.signals);
    *handler_ns = atomic_load(&cpu.handler_ns);
}

prof_status prof_cpu_profile(double seconds, int hz, prof_response *r) {
    if (!(seconds > 0 && seconds <= 3600) || hz < 1 || hz > 4000) {
        prof_set_error(r, "seconds must be in (0, 3600] and hz in [1, 4000]");
        return PROF_EINVAL;
    }
    prof_status st = prof_cpu_start(hz, seconds);
    if (st == PROF_EBUSY) { prof_set_error(r, "a CPU profile is already running"); return st; }
    if (st != PROF_OK) { prof_set_error(r, "could not start the CPU profiler: %s", prof_strerror(st)); return st; }
    uint64_t end = util_now_ns() + (uint64_t)(seconds * 1e9);
    for (uint64_t now; (now = util_now_ns()) < end;) {
        uint64_t left = end - now;
        struct timespec d = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
        nanosleep(&d, NULL);
    }
    return prof_cpu_stop(r);
}
