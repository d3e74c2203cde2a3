// internal.h — what the files of src/prof share and nothing outside uses:
// the recorders sync.c calls, the stack-bucket table of the heap, block and
// mutex profiles, and helpers that turn a prof_profile into a response.
#ifndef LLMSCOPE_PROF_INTERNAL_H
#define LLMSCOPE_PROF_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "pprof.h"
#include "profile.h"
#include "thread.h"
#include "unwind.h"

// Called by sync.c after a wait (every kind) and after unlocking a mutex that
// others waited for (delay_ns = waiters x time they waited during this hold).
// Cheap when the rates are 0: one relaxed load.
void prof_block_on_wait(int kind, const char *name, uint64_t start_ns, uint64_t end_ns);
void prof_mutex_on_unlock(const char *name, uint64_t delay_ns);

// Registry hook of the CPU profiler (arms and disarms a thread's timer).
void prof_cpu_thread_hook(prof_thread *t, bool registered);
// Installs the SIGURG handler of the threads dump.
prof_status prof_threads_install(void);

// A table of stacks with counters, for the heap, block and mutex profiles.
// Buckets live until exit, so a record may point at its bucket; get() locks.
#define PROF_BUCKET_VALUES 4
typedef struct prof_bucket {
    struct prof_bucket *next;           // hash chain
    struct prof_bucket *all;            // every bucket, newest first
    uint64_t hash;
    uint32_t id;                        // 0, 1, … in creation order
    const char *name;                   // static label (a wait's object), or NULL
    _Atomic int64_t v[PROF_BUCKET_VALUES];
    int depth;
    uintptr_t pcs[PROF_MAX_DEPTH];      // return addresses, leaf first
} prof_bucket;

typedef struct prof_btable {
    pthread_mutex_t mu;
    prof_bucket **heads;                // (nheads) chains, allocated on first use
    uint32_t nheads;
    _Atomic uint32_t count;             // buckets made
    _Atomic(prof_bucket *) all;
} prof_btable;
#define PROF_BTABLE_INIT {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, NULL}

// The bucket of (pcs, name), made when new; NULL on allocation failure.
prof_bucket *prof_bucket_get(prof_btable *t, const uintptr_t *pcs, int n, const char *name);
// Copies every bucket's values: *out[(id * PROF_BUCKET_VALUES) + k] (malloc'd);
// returns the bucket count, -1 on allocation failure.
int64_t prof_btable_snapshot(prof_btable *t, int64_t **out);

// Unwinds the caller's stack (skipping the frame of the function that calls
// this, whose frame address is `fp`). Not for signal handlers.
int prof_stack_here(void *fp, uintptr_t *pcs, int max);

// Encodes p (gzip'd) into r; frees p.
prof_status prof_finish(prof_profile *p, prof_response *r);
void prof_set_error(prof_response *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// A per-thread xorshift generator (seeded from the thread's id and clock).
uint64_t prof_rand(void);
double prof_rand_unit(void);   // (0, 1]

#endif
