// thread.h — the thread registry and per-thread labels: every thread the
// process cares about registers a name and a role ("http", "tokenizer",
// "scheduler", "compute" …); each carries a tiny label set (a request id and
// a phase) and what it is waiting on, which profilers, the tracer and the
// threads dump read. This layer knows nothing about what the threads do.
//
// Thread/signal safety: prof_label_* and prof_thread_set_wait() touch only
// the calling thread's slot (plain atomic stores, no locks) and may be called
// on hot paths. prof_thread_self() is async-signal-safe (a TLS read), so a
// signal handler may read its own thread's slot. prof_thread_register() and
// _unregister() take a lock; prof_thread_snapshot() reads every slot without
// stopping anyone (values may be a moment old).
#ifndef LLMSCOPE_PROF_THREAD_H
#define LLMSCOPE_PROF_THREAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define PROF_MAX_THREADS 512
#define PROF_NAME_LEN 16

// One registered thread. Fields other than the labels and `wait` are written
// once at registration.
typedef struct prof_thread {
    _Atomic int in_use;                 // 1 while the thread is registered
    pid_t tid;                          // kernel thread id
    uint64_t pthread;                   // pthread_t of the thread
    uint32_t seq;                       // registration number (unique per process)
    char name[PROF_NAME_LEN];           // "http-3", "compute-1" …
    char role[PROF_NAME_LEN];           // "http", "compute" …
    _Atomic uint64_t req;               // label: request id (0 = none)
    _Atomic(const char *) phase;        // label: static string, or NULL
    _Atomic(const char *) wait;         // what it blocks on now (static name), or NULL
    _Atomic uint64_t wait_since_ns;     // monotonic time the wait began
    _Atomic uintptr_t wait_fp;          // frame pointer of the prof_* call that waits, or 0
    _Atomic uintptr_t wait_pc;          // a code address inside that call
    void *user;                         // for the profiler's per-thread state
    uintptr_t stack_lo, stack_hi;       // the thread's stack [lo, hi) (0, 0 = unknown);
                                        // the unwinder checks every frame against it
} prof_thread;

// Registers the calling thread (name and role are copied, truncated to 15
// bytes; the kernel's thread name is set to `name` too). Registering twice
// renames. Returns the slot, or NULL when the table is full.
prof_thread *prof_thread_register(const char *name, const char *role);
// The calling thread's stack bounds [lo, hi), from pthread_getattr_np and
// cached per thread; false (and 0, 0) when unknown. Not async-signal-safe
// (the first call may allocate); a handler reads prof_thread.stack_lo/hi.
bool prof_thread_stack_bounds(uintptr_t *lo, uintptr_t *hi);
// Removes the calling thread (call before it exits).
void prof_thread_unregister(void);
// The calling thread's slot, or NULL when it is not registered.
prof_thread *prof_thread_self(void);

// Labels of the calling thread (no-ops when it is not registered). `phase`
// must be a string with static storage (a literal).
void prof_label_req(uint64_t req);
void prof_label_phase(const char *phase);
void prof_thread_set_wait(const char *what, uint64_t since_ns);
// The same, also recording the waiting call's frame (fp =
// __builtin_frame_address(0) of the caller) and a code address inside the
// caller, so the threads dump can unwind a thread blocked inside libc (whose
// code has no frame pointers).
void prof_thread_set_wait_frame(const char *what, uint64_t since_ns, void *fp);

// Copies every registered slot into out[0..max) (labels read atomically one
// by one); returns the count.
typedef struct prof_thread_info {
    pid_t tid;
    uint32_t seq;
    char name[PROF_NAME_LEN];
    char role[PROF_NAME_LEN];
    uint64_t req;
    const char *phase;
    const char *wait;
    uint64_t wait_since_ns;
    int slot;                           // index in prof_thread_table()
} prof_thread_info;
int prof_thread_snapshot(prof_thread_info *out, int max);

// A profiler that keeps per-thread state (a CPU timer, say) installs a hook:
// it runs on the thread itself, right after it registers (registered=true)
// and right before it unregisters (false). One hook; NULL removes it.
typedef void (*prof_thread_hook)(prof_thread *t, bool registered);
void prof_thread_set_hook(prof_thread_hook hook);

// The slot table itself, for profilers that walk it (e.g. to arm per-thread
// timers). Slots with in_use == 0 are free.
prof_thread *prof_thread_table(void);

#endif
