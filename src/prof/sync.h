// sync.h — the named primitives every hop between threads is built on: a
// mutex, a condition variable and a bounded FIFO queue, each with a name. A
// contended lock or a blocking wait marks the thread's registry slot with the
// name it waits on (the threads dump shows it) and reports the wait to the
// installed hook (the block/mutex profilers and the tracer consume it), so a
// wait shows up everywhere under the same name. Uncontended locking costs a
// trylock; no clock is read unless the thread actually waits.
//
// The block and mutex profiles (pprof.h) record here directly, so the hook
// stays free for another consumer (the tracer).
//
// Thread safety: as pthreads. The hook runs on the waiting thread, after the
// wait, outside any lock of this module; it must be cheap and must not use
// these primitives itself.
#ifndef LLMSCOPE_PROF_SYNC_H
#define LLMSCOPE_PROF_SYNC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum prof_wait_kind {
    PROF_WAIT_MUTEX,   // waited for a contended prof_mutex
    PROF_WAIT_COND,    // blocked in prof_cond_wait (a queue pop included)
} prof_wait_kind;

// Called after every wait: kind, the primitive's name, and the wait's
// monotonic start and end in ns. One hook; NULL removes it.
typedef void (*prof_wait_hook)(prof_wait_kind kind, const char *name, uint64_t start_ns, uint64_t end_ns);
void prof_sync_set_hook(prof_wait_hook hook);

typedef struct prof_mutex {
    pthread_mutex_t mu;
    const char *name;          // static string
    // For the mutex profile (charged at unlock to the holder, as Go does):
    _Atomic uint32_t nwaiters;               // threads blocked in prof_mutex_lock now
    _Atomic uint64_t contended_since_ns;     // when this hold first had a waiter; 0 = none
} prof_mutex;

void prof_mutex_init(prof_mutex *m, const char *name);
void prof_mutex_destroy(prof_mutex *m);
void prof_mutex_lock(prof_mutex *m);
void prof_mutex_unlock(prof_mutex *m);

typedef struct prof_cond {
    pthread_cond_t cv;         // on CLOCK_MONOTONIC
    const char *name;          // static string
} prof_cond;

void prof_cond_init(prof_cond *c, const char *name);
void prof_cond_destroy(prof_cond *c);
void prof_cond_wait(prof_cond *c, prof_mutex *m);
// Waits at most until the monotonic time deadline_ns; false on timeout.
bool prof_cond_wait_until(prof_cond *c, prof_mutex *m, uint64_t deadline_ns);
void prof_cond_signal(prof_cond *c);
void prof_cond_broadcast(prof_cond *c);

// A bounded FIFO of pointers between threads. Pushing never blocks (a full
// queue refuses, so callers can shed load); popping blocks until an item
// arrives or the queue is closed.
typedef struct prof_queue prof_queue;

prof_queue *prof_queue_new(const char *name, size_t cap);
void prof_queue_free(prof_queue *q);
// false when full or closed.
bool prof_queue_push(prof_queue *q, void *item);
// Blocks; NULL once the queue is closed and empty.
void *prof_queue_pop(prof_queue *q);
// Does not block; NULL when empty.
void *prof_queue_try_pop(prof_queue *q);
// Blocks until the monotonic deadline; NULL on timeout or when closed and empty.
void *prof_queue_pop_until(prof_queue *q, uint64_t deadline_ns);
// Wakes every popper; later pushes fail, pops drain what is left.
void prof_queue_close(prof_queue *q);
size_t prof_queue_len(const prof_queue *q);   // a racy read, for gauges
size_t prof_queue_cap(const prof_queue *q);
const char *prof_queue_name(const prof_queue *q);

#endif
