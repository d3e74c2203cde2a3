// threads.c — the threads profile (Go's goroutine profile): every registered
// thread's current stack, taken by the thread itself: the collector sends it
// SIGURG (tgkill) and its handler unwinds its own interrupted frame-pointer
// stack into a preallocated slot and marks the slot answered; a thread that
// does not answer within the timeout is reported without a stack.
// debug=0: profile.proto, one sample per thread (labels thread, role, tid,
// phase, request, waiting); debug=1: text, threads grouped by identical stack;
// debug=2: every thread with name, role, tid, labels, what it waits on and for
// how long, and its symbolized stack (Go's goroutine dump layout).
//
// Signal safety: on_sigurg() saves errno and writes only its own slot
// (plain stores, then a release store of the answer).
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "symbolize.h"
#include "util/util.h"

#define ANSWER_TIMEOUT_NS 200000000ull   // all threads together

static struct capture {
    _Atomic uint32_t want, done;          // request and answer generations
    int n;
    uintptr_t pcs[PROF_MAX_DEPTH];        // pcs[0] is the interrupted pc
} caps[PROF_MAX_THREADS];
static pthread_mutex_t dump_mu = PTHREAD_MUTEX_INITIALIZER;   // one dump at a time
static uint32_t dump_gen;

static void on_sigurg(int sig, siginfo_t *si, void *uc) {
    int saved_errno = errno;
    prof_thread *t = prof_thread_self();
    if (t) {
        struct capture *c = &caps[t - prof_thread_table()];
        uint32_t w = atomic_load_explicit(&c->want, memory_order_acquire);
        if (w != atomic_load_explicit(&c->done, memory_order_relaxed)) {
            uintptr_t wfp = atomic_load_explicit(&t->wait_fp, memory_order_acquire);
            if (wfp && atomic_load_explicit(&t->wait, memory_order_relaxed)) {
                // Blocked in a prof_* wait, inside libc whose code keeps no
                // frame chain: the interrupted pc, the waiting call, and the
                // chain from the waiting call's frame.
                c->n = prof_unwind_context(uc, t->stack_lo, t->stack_hi, c->pcs, 1);
                c->pcs[c->n++] = atomic_load_explicit(&t->wait_pc, memory_order_relaxed);
                c->n += prof_unwind_fp(wfp, t->stack_lo, t->stack_hi, c->pcs + c->n, PROF_MAX_DEPTH - c->n);
            } else {
                c->n = prof_unwind_context(uc, t->stack_lo, t->stack_hi, c->pcs, PROF_MAX_DEPTH);
            }
            atomic_store_explicit(&c->done, w, memory_order_release);
        }
    }
    errno = saved_errno;
}

prof_status prof_threads_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigurg;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGURG, &sa, NULL) == 0 ? PROF_OK : PROF_EINTERNAL;
}

typedef struct tstate {
    prof_thread_info info;
    int slot;
    int n;                        // stack depth; -1 = did not answer
    uintptr_t pcs[PROF_MAX_DEPTH];
} tstate;

// Snapshots the registry (under its lock: slots may be reused meanwhile)
// and collects every thread's stack. *out is malloc'd.
static int collect(tstate **out) {
    static _Atomic int installed;
    if (!atomic_exchange(&installed, 1) && prof_threads_install() != PROF_OK) atomic_store(&installed, 0);
    tstate *ts = calloc(PROF_MAX_THREADS, sizeof *ts);
    prof_thread_info *info = calloc(PROF_MAX_THREADS, sizeof *info);
    if (!ts || !info) { free(ts); free(info); return -1; }
    prof_unwind_load_text();
    pthread_mutex_lock(&dump_mu);
    int m = prof_thread_snapshot(info, PROF_MAX_THREADS), n = 0;
    uint32_t gen = ++dump_gen;
    pid_t pid = getpid();
    for (int k = 0; k < m; k++) {
        int i = info[k].slot;
        atomic_store_explicit(&caps[i].want, gen, memory_order_release);
        ts[n].info = info[k];
        ts[n].slot = i;
        ts[n].n = -1;
        // A thread that has exited since the snapshot is left out (ESRCH).
        if (syscall(SYS_tgkill, (long)pid, (long)info[k].tid, (long)SIGURG) == 0) n++;
    }
    uint64_t deadline = util_now_ns() + ANSWER_TIMEOUT_NS;
    for (int k = 0; k < n; k++) {
        struct capture *c = &caps[ts[k].slot];
        while (atomic_load_explicit(&c->done, memory_order_acquire) != gen && util_now_ns() < deadline) {
            struct timespec d = {0, 200000};
            nanosleep(&d, NULL);
        }
        if (atomic_load_explicit(&c->done, memory_order_acquire) == gen) {
            ts[k].n = c->n;
            memcpy(ts[k].pcs, c->pcs, sizeof ts[k].pcs);
        }
    }
    pthread_mutex_unlock(&dump_mu);
    free(info);
    *out = ts;
    return n;
}

static prof_status text_response(util_buf *b, prof_response *r) {
    if (b->oom) { free(b->s); prof_set_error(r, "out of memory"); return PROF_ENOMEM; }
    r->body = (uint8_t *)b->s;
    r->len = b->len;
    r->content_type = "text/plain; charset=utf-8";
    return PROF_OK;
}

// Prints the frames of one stack: "func()\n\tfile:line +0xoff\n" per frame.
static void print_stack(util_buf *b, prof_symbolizer *sym, const uintptr_t *pcs, int n, bool exact_leaf) {
    for (int i = 0; i < n; i++) {
        uintptr_t pc = (exact_leaf && i == 0) ? pcs[i] : pcs[i] - 1;
        prof_frame fr[16];
        int nf = sym ? prof_sym_lookup(sym, pc, fr, 16) : 0;
        if (nf == 0) { util_buf_printf(b, "0x%lx()\n\t?\n", (unsigned long)pcs[i]); continue; }
        for (int j = 0; j < nf; j++) {
            util_buf_printf(b, "%s(%s)\n\t%s:%d", fr[j].func ? fr[j].func : "?", j < nf - 1 ? "inlined" : "",
                    fr[j].file ? fr[j].file : "?", fr[j].line);
            if (j == nf - 1) util_buf_printf(b, " +0x%lx", (unsigned long)fr[j].offset);
            util_buf_printf(b, "\n");
        }
    }
}

static int cmp_stack(const void *a, const void *b) {
    const tstate *x = a, *y = b;
    if (x->n != y->n) return x->n < y->n ? 1 : -1;
    for (int i = 0; i < x->n; i++) if (x->pcs[i] != y->pcs[i]) return x->pcs[i] < y->pcs[i] ? -1 : 1;
    return 0;
}

prof_status prof_threads_profile(int debug, prof_response *r) {
    if (debug < 0 || debug > 2) { prof_set_error(r, "debug must be 0, 1 or 2"); return PROF_EINVAL; }
    tstate *ts = NULL;
    int n = collect(&ts);
    if (n < 0) { prof_set_error(r, "out of memory"); return PROF_ENOMEM; }
    uint64_t now = util_now_ns();
    prof_status st;
    if (debug == 0) {
        prof_profile *p = prof_profile_new();
        if (!p) { free(ts); prof_set_error(r, "out of memory"); return PROF_ENOMEM; }
        prof_profile_sample_type(p, "goroutine", "count");
        prof_profile_period(p, "goroutine", "count", 1);
        bool ok = true;
        for (int k = 0; k < n && ok; k++) {
            prof_thread_info *t = &ts[k].info;
            prof_label l[6];
            int nl = 0;
            l[nl++] = (prof_label){"thread", t->name, 0, NULL};
            l[nl++] = (prof_label){"role", t->role, 0, NULL};
            l[nl++] = (prof_label){"tid", NULL, t->tid, "id"};
            if (t->phase) l[nl++] = (prof_label){"phase", t->phase, 0, NULL};
            if (t->req) l[nl++] = (prof_label){"request", NULL, (int64_t)t->req, "id"};
            if (t->wait) l[nl++] = (prof_label){"waiting", t->wait, 0, NULL};
            int64_t one = 1;
            ok = prof_profile_add(p, ts[k].pcs, ts[k].n > 0 ? ts[k].n : 0, true, &one, l, nl);
        }
        free(ts);
        if (!ok) { prof_profile_free(p); prof_set_error(r, "out of memory"); return PROF_ENOMEM; }
        return prof_finish(p, r);
    }
    util_buf b = {0};
    prof_symbolizer *sym = prof_sym_new();
    if (debug == 1) {
        qsort(ts, (size_t)n, sizeof *ts, cmp_stack);
        util_buf_printf(&b, "threads profile: total %d\n", n);
        for (int k = 0; k < n;) {
            int j = k + 1;
            while (j < n && cmp_stack(&ts[k], &ts[j]) == 0) j++;
            util_buf_printf(&b, "%d @", j - k);
            for (int i = 0; i < ts[k].n; i++) util_buf_printf(&b, " 0x%lx", (unsigned long)ts[k].pcs[i]);
            util_buf_printf(&b, "\n# threads:");
            for (int i = k; i < j; i++) util_buf_printf(&b, " %s", ts[i].info.name);
            util_buf_printf(&b, "\n");
            for (int i = 0; i < ts[k].n; i++) {
                uintptr_t pc = i == 0 ? ts[k].pcs[0] : ts[k].pcs[i] - 1;
                prof_frame fr[16];
                int nf = sym ? prof_sym_lookup(sym, pc, fr, 16) : 0;
                for (int f = 0; f < nf; f++)
                    util_buf_printf(&b, "#\t0x%lx\t%s+0x%lx\t%s:%d\n", (unsigned long)ts[k].pcs[i], fr[f].func ? fr[f].func : "?",
                            (unsigned long)fr[nf - 1].offset, fr[f].file ? fr[f].file : "?", fr[f].line);
                if (nf == 0) util_buf_printf(&b, "#\t0x%lx\t?\n", (unsigned long)ts[k].pcs[i]);
            }
            util_buf_printf(&b, "\n");
            k = j;
        }
    } else {
        for (int k = 0; k < n; k++) {
            prof_thread_info *t = &ts[k].info;
            util_buf_printf(&b, "thread %u \"%s\" [role %s, tid %d", t->seq, t->name, t->role, (int)t->tid);
            if (t->wait)
                util_buf_printf(&b, ", waiting on \"%s\" for %.3f ms", t->wait,
                        now > t->wait_since_ns ? (double)(now - t->wait_since_ns) / 1e6 : 0.0);
            else
                util_buf_printf(&b, ", running");
            util_buf_printf(&b, "]");
            if (t->req || t->phase) {
                util_buf_printf(&b, " {");
                if (t->req) util_buf_printf(&b, "request=%llu%s", (unsigned long long)t->req, t->phase ? ", " : "");
                if (t->phase) util_buf_printf(&b, "phase=%s", t->phase);
                util_buf_printf(&b, "}");
            }
            util_buf_printf(&b, ":\n");
            if (ts[k].n < 0) util_buf_printf(&b, "(stack unavailable: the thread did not answer SIGURG)\n");
            else print_stack(&b, sym, ts[k].pcs, ts[k].n, true);
            util_buf_printf(&b, "\n");
        }
    }
    prof_sym_free(sym);
    free(ts);
    st = text_response(&b, r);
    return st;
}
