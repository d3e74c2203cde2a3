// thread.c — the thread registry (see thread.h): a fixed table of slots, so
// readers (profilers, the threads dump, a signal handler) never chase freed
// memory; a TLS pointer to the caller's own slot.
#include "thread.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static prof_thread table[PROF_MAX_THREADS];
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t next_seq = 1;
static _Atomic(prof_thread_hook) hook;
static __thread prof_thread *self __attribute__((tls_model("initial-exec")));
static __thread uintptr_t my_stack_lo __attribute__((tls_model("initial-exec")));
static __thread uintptr_t my_stack_hi __attribute__((tls_model("initial-exec")));
static __thread int my_stack_known __attribute__((tls_model("initial-exec")));   // 1 known, -1 failed

prof_thread *prof_thread_table(void) { return table; }
prof_thread *prof_thread_self(void) { return self; }

void prof_thread_set_hook(prof_thread_hook h) { atomic_store(&hook, h); }

bool prof_thread_stack_bounds(uintptr_t *lo, uintptr_t *hi) {
    if (!my_stack_known) {
        pthread_attr_t a;
        void *addr = NULL;
        size_t size = 0;
        my_stack_known = -1;
        if (pthread_getattr_np(pthread_self(), &a) == 0) {
            if (pthread_attr_getstack(&a, &addr, &size) == 0 && addr && size) {
                my_stack_lo = (uintptr_t)addr;
                my_stack_hi = (uintptr_t)addr + size;
                my_stack_known = 1;
            }
            pthread_attr_destroy(&a);
        }
    }
    *lo = my_stack_known > 0 ? my_stack_lo : 0;
    *hi = my_stack_known > 0 ? my_stack_hi : 0;
    return my_stack_known > 0;
}

// The profilers' signals (SIGPROF from CPU timers, SIGURG from the threads
// dump) reach registered threads only: a thread unblocks them when it
// registers and blocks them when it leaves, so a signal sent just before a
// thread exits never lands in its teardown (where a sanitizer runtime, for
// one, cannot take it).
static void profiler_signals(int how) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGPROF);
    sigaddset(&s, SIGURG);
    pthread_sigmask(how, &s, NULL);
}

prof_thread *prof_thread_register(const char *name, const char *role) {
    prof_thread *t = self;
    profiler_signals(SIG_UNBLOCK);
    uintptr_t lo, hi;
    prof_thread_stack_bounds(&lo, &hi);   // outside the lock: may read /proc
    pthread_mutex_lock(&reg_lock);
    if (!t) {
        for (int i = 0; i < PROF_MAX_THREADS; i++)
            if (!atomic_load(&table[i].in_use)) { t = &table[i]; break; }
        if (!t) { pthread_mutex_unlock(&reg_lock); return NULL; }
        t->tid = (pid_t)syscall(SYS_gettid);
        t->pthread = (uint64_t)pthread_self();
        t->seq = next_seq++;
        atomic_store(&t->req, 0);
        atomic_store(&t->phase, NULL);
        atomic_store(&t->wait, NULL);
        atomic_store(&t->wait_fp, 0);
        t->user = NULL;
        t->stack_lo = lo;
        t->stack_hi = hi;
    }
    snprintf(t->name, sizeof t->name, "%s", name ? name : "thread");
    snprintf(t->role, sizeof t->role, "%s", role ? role : "other");
    bool fresh = !atomic_load(&t->in_use);
    atomic_store(&t->in_use, 1);
    pthread_mutex_unlock(&reg_lock);
    self = t;
    pthread_setname_np(pthread_self(), t->name);
    prof_thread_hook h = atomic_load(&hook);
    if (h && fresh) h(t, true);
    return t;
}

void prof_thread_unregister(void) {
    prof_thread *t = self;
    if (!t) return;
    prof_thread_hook h = atomic_load(&hook);
    if (h) h(t, false);
    pthread_mutex_lock(&reg_lock);
    self = NULL;
    atomic_store(&t->in_use, 0);
    pthread_mutex_unlock(&reg_lock);
    profiler_signals(SIG_BLOCK);
}

void prof_label_req(uint64_t req) {
    if (self) atomic_store_explicit(&self->req, req, memory_order_relaxed);
}

void prof_label_phase(const char *phase) {
    if (self) atomic_store_explicit(&self->phase, phase, memory_order_relaxed);
}

void prof_thread_set_wait(const char *what, uint64_t since_ns) {
    if (!self) return;
    atomic_store_explicit(&self->wait_fp, 0, memory_order_relaxed);
    atomic_store_explicit(&self->wait_since_ns, since_ns, memory_order_relaxed);
    atomic_store_explicit(&self->wait, what, memory_order_relaxed);
}

__attribute__((noinline)) void prof_thread_set_wait_frame(const char *what, uint64_t since_ns, void *fp) {
    if (!self) return;
    atomic_store_explicit(&self->wait_since_ns, since_ns, memory_order_relaxed);
    atomic_store_explicit(&self->wait_pc, (uintptr_t)__builtin_return_address(0), memory_order_relaxed);
    atomic_store_explicit(&self->wait_fp, (uintptr_t)fp, memory_order_release);
    atomic_store_explicit(&self->wait, what, memory_order_relaxed);
}

int prof_thread_snapshot(prof_thread_info *out, int max) {
    int n = 0;
    pthread_mutex_lock(&reg_lock);   // names and tids are stable while held
    for (int i = 0; i < PROF_MAX_THREADS && n < max; i++) {
        prof_thread *t = &table[i];
        if (!atomic_load(&t->in_use)) continue;
        prof_thread_info *o = &out[n++];
        o->tid = t->tid;
        o->seq = t->seq;
        memcpy(o->name, t->name, sizeof o->name);
        memcpy(o->role, t->role, sizeof o->role);
        o->req = atomic_load_explicit(&t->req, memory_order_relaxed);
        o->phase = atomic_load_explicit(&t->phase, memory_order_relaxed);
        o->wait = atomic_load_explicit(&t->wait, memory_order_relaxed);
        o->wait_since_ns = atomic_load_explicit(&t->wait_since_ns, memory_order_relaxed);
        o->slot = i;
    }
    pthread_mutex_unlock(&reg_lock);
    return n;
}
