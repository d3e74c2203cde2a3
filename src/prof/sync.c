// sync.c — named mutex, condition variable and queue (see sync.h).
#include "sync.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"
#include "thread.h"
#include "util/util.h"

static _Atomic(prof_wait_hook) wait_hook;

void prof_sync_set_hook(prof_wait_hook hook) { atomic_store(&wait_hook, hook); }

static void waited(prof_wait_kind kind, const char *name, uint64_t t0) {
    prof_thread_set_wait(NULL, 0);
    uint64_t t1 = util_now_ns();
    prof_wait_hook h = atomic_load_explicit(&wait_hook, memory_order_relaxed);
    if (h) h(kind, name, t0, t1);
    prof_block_on_wait(kind, name, t0, t1);
}

void prof_mutex_init(prof_mutex *m, const char *name) {
    pthread_mutex_init(&m->mu, NULL);
    m->name = name ? name : "mutex";
    atomic_init(&m->nwaiters, 0);
    atomic_init(&m->contended_since_ns, 0);
}

void prof_mutex_destroy(prof_mutex *m) { pthread_mutex_destroy(&m->mu); }

void prof_mutex_lock(prof_mutex *m) {
    if (pthread_mutex_trylock(&m->mu) == 0) return;
    uint64_t t0 = util_now_ns();
    prof_thread_set_wait_frame(m->name, t0, __builtin_frame_address(0));
    atomic_fetch_add(&m->nwaiters, 1);
    uint64_t none = 0;
    atomic_compare_exchange_strong(&m->contended_since_ns, &none, t0);
    pthread_mutex_lock(&m->mu);
    atomic_fetch_sub(&m->nwaiters, 1);
    waited(PROF_WAIT_MUTEX, m->name, t0);
}

// Uncontended: one relaxed load more than pthread_mutex_unlock. When threads
// waited during this hold, the holder is charged waiters x (now - since) for
// the mutex profile, and the next hold starts counting from now.
void prof_mutex_unlock(prof_mutex *m) {
    uint64_t since = atomic_load_explicit(&m->contended_since_ns, memory_order_relaxed);
    if (__builtin_expect(since == 0, 1)) { pthread_mutex_unlock(&m->mu); return; }
    uint32_t n = atomic_load(&m->nwaiters);
    uint64_t now = util_now_ns();
    atomic_store(&m->contended_since_ns, n ? now : 0);
    pthread_mutex_unlock(&m->mu);
    if (n && now > since) prof_mutex_on_unlock(m->name, (now - since) * n);
}

void prof_cond_init(prof_cond *c, const char *name) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &a);
    pthread_condattr_destroy(&a);
    c->name = name ? name : "cond";
}

void prof_cond_destroy(prof_cond *c) { pthread_cond_destroy(&c->cv); }

void prof_cond_wait(prof_cond *c, prof_mutex *m) {
    uint64_t t0 = util_now_ns();
    prof_thread_set_wait_frame(c->name, t0, __builtin_frame_address(0));
    pthread_cond_wait(&c->cv, &m->mu);
    waited(PROF_WAIT_COND, c->name, t0);
}

bool prof_cond_wait_until(prof_cond *c, prof_mutex *m, uint64_t deadline_ns) {
    uint64_t t0 = util_now_ns();
    if (deadline_ns <= t0) return false;
    struct timespec ts = {(time_t)(deadline_ns / 1000000000u), (long)(deadline_ns % 1000000000u)};
    prof_thread_set_wait_frame(c->name, t0, __builtin_frame_address(0));
    int rc = pthread_cond_timedwait(&c->cv, &m->mu, &ts);
    waited(PROF_WAIT_COND, c->name, t0);
    return rc != ETIMEDOUT;
}

void prof_cond_signal(prof_cond *c) { pthread_cond_signal(&c->cv); }
void prof_cond_broadcast(prof_cond *c) { pthread_cond_broadcast(&c->cv); }

struct prof_queue {
    prof_mutex mu;
    prof_cond nonempty;
    void **items;            // (cap) ring
    size_t cap, head;
    _Atomic size_t len;
    bool closed;
    const char *name;
};

prof_queue *prof_queue_new(const char *name, size_t cap) {
    if (cap == 0) cap = 1;
    prof_queue *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->items = calloc(cap, sizeof *q->items);
    if (!q->items) { free(q); return NULL; }
    q->cap = cap;
    q->name = name ? name : "queue";
    prof_mutex_init(&q->mu, q->name);
    prof_cond_init(&q->nonempty, q->name);
    return q;
}

void prof_queue_free(prof_queue *q) {
    if (!q) return;
    prof_mutex_destroy(&q->mu);
    prof_cond_destroy(&q->nonempty);
    free(q->items);
    free(q);
}

bool prof_queue_push(prof_queue *q, void *item) {
    prof_mutex_lock(&q->mu);
    size_t n = atomic_load_explicit(&q->len, memory_order_relaxed);
    bool ok = !q->closed && n < q->cap;
    if (ok) {
        q->items[(q->head + n) % q->cap] = item;
        atomic_store_explicit(&q->len, n + 1, memory_order_relaxed);
        prof_cond_signal(&q->nonempty);
    }
    prof_mutex_unlock(&q->mu);
    return ok;
}

// Takes the head item; the lock is held and the queue is not empty.
static void *take(prof_queue *q) {
    void *it = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    atomic_store_explicit(&q->len, atomic_load_explicit(&q->len, memory_order_relaxed) - 1, memory_order_relaxed);
    return it;
}

void *prof_queue_pop(prof_queue *q) {
    prof_mutex_lock(&q->mu);
    while (atomic_load_explicit(&q->len, memory_order_relaxed) == 0 && !q->closed) prof_cond_wait(&q->nonempty, &q->mu);
    void *it = atomic_load_explicit(&q->len, memory_order_relaxed) ? take(q) : NULL;
    prof_mutex_unlock(&q->mu);
    return it;
}

void *prof_queue_pop_until(prof_queue *q, uint64_t deadline_ns) {
    prof_mutex_lock(&q->mu);
    while (atomic_load_explicit(&q->len, memory_order_relaxed) == 0 && !q->closed)
        if (!prof_cond_wait_until(&q->nonempty, &q->mu, deadline_ns)) break;
    void *it = atomic_load_explicit(&q->len, memory_order_relaxed) ? take(q) : NULL;
    prof_mutex_unlock(&q->mu);
    return it;
}

void *prof_queue_try_pop(prof_queue *q) {
    if (atomic_load_explicit(&q->len, memory_order_relaxed) == 0) return NULL;
    prof_mutex_lock(&q->mu);
    void *it = atomic_load_explicit(&q->len, memory_order_relaxed) ? take(q) : NULL;
    prof_mutex_unlock(&q->mu);
    return it;
}

void prof_queue_close(prof_queue *q) {
    prof_mutex_lock(&q->mu);
    q->closed = true;
    prof_cond_broadcast(&q->nonempty);
    prof_mutex_unlock(&q->mu);
}

size_t prof_queue_len(const prof_queue *q) { return atomic_load_explicit(&q->len, memory_order_relaxed); }
size_t prof_queue_cap(const prof_queue *q) { return q->cap; }
const char *prof_queue_name(const prof_queue *q) { return q->name; }
