// test_sync.c — the thread registry and the named primitives: FIFO order and
// bounds of the queue, close semantics, waits reported under their names, and
// the registry showing what a blocked thread waits on.
#include <pthread.h>
#include <unistd.h>
#include "harness.h"
#include "prof/sync.h"
#include "prof/thread.h"
#include "util/util.h"

static void test_queue_fifo_and_bound(void) {
    prof_queue *q = prof_queue_new("q.test", 3);
    REQUIRE(q);
    int v[4];
    for (int i = 0; i < 3; i++) CHECK(prof_queue_push(q, &v[i]));
    CHECK(!prof_queue_push(q, &v[3]));          // full: refused, not blocked
    CHECK(prof_queue_len(q) == 3);
    for (int i = 0; i < 3; i++) CHECK(prof_queue_pop(q) == &v[i]);
    CHECK(prof_queue_try_pop(q) == NULL);
    // Wrap around the ring.
    for (int r = 0; r < 5; r++) {
        CHECK(prof_queue_push(q, &v[r % 4]));
        CHECK(prof_queue_pop(q) == &v[r % 4]);
    }
    CHECK(prof_queue_push(q, &v[0]));
    prof_queue_close(q);
    CHECK(!prof_queue_push(q, &v[1]));          // closed: refused
    CHECK(prof_queue_pop(q) == &v[0]);          // but drains
    CHECK(prof_queue_pop(q) == NULL);           // then NULL without blocking
    prof_queue_free(q);
}

static void test_pop_until_times_out(void) {
    prof_queue *q = prof_queue_new("q.timeout", 2);
    uint64_t t0 = util_now_ns();
    CHECK(prof_queue_pop_until(q, t0 + 20 * 1000000ull) == NULL);
    CHECK(util_now_ns() - t0 >= 19 * 1000000ull);
    prof_queue_free(q);
}

static struct { const char *name; prof_wait_kind kind; uint64_t ns; int n; } seen;
static void hook(prof_wait_kind kind, const char *name, uint64_t a, uint64_t b) {
    seen.name = name; seen.kind = kind; seen.ns = b - a; seen.n++;
}

typedef struct { prof_queue *q; prof_mutex *m; int phase; } arg_t;

static void *popper(void *p) {
    arg_t *a = p;
    prof_thread_register("popper", "test");
    void *it = prof_queue_pop(a->q);
    prof_thread_unregister();
    return it;
}

static void *locker(void *p) {
    arg_t *a = p;
    prof_thread_register("locker", "test");
    prof_mutex_lock(a->m);
    prof_mutex_unlock(a->m);
    prof_thread_unregister();
    return NULL;
}

// Finds a registered thread by name in a snapshot and returns what it waits on.
static const char *waiting_on(const char *name) {
    prof_thread_info info[PROF_MAX_THREADS];
    int n = prof_thread_snapshot(info, PROF_MAX_THREADS);
    for (int i = 0; i < n; i++)
        if (!strcmp(info[i].name, name)) return info[i].wait ? info[i].wait : "";
    return NULL;
}

static void test_waits_are_named(void) {
    prof_sync_set_hook(hook);
    prof_queue *q = prof_queue_new("tokenize.queue", 4);
    arg_t a = {q, NULL, 0};
    pthread_t th;
    pthread_create(&th, NULL, popper, &a);
    const char *w = NULL;
    for (int i = 0; i < 500 && !(w && !strcmp(w, "tokenize.queue")); i++) { usleep(1000); w = waiting_on("popper"); }
    CHECKF(w && !strcmp(w, "tokenize.queue"), "popper waits on '%s'", w ? w : "(not registered)");
    usleep(5000);
    int x;
    seen.n = 0;
    prof_queue_push(q, &x);
    void *got;
    pthread_join(th, &got);
    CHECK(got == &x);
    CHECK(seen.n >= 1 && seen.name && !strcmp(seen.name, "tokenize.queue") && seen.kind == PROF_WAIT_COND);
    CHECKF(seen.ns >= 4000000, "wait of %llu ns", (unsigned long long)seen.ns);
    CHECK(waiting_on("popper") == NULL);        // unregistered on exit
    prof_queue_free(q);

    // A contended mutex: the waiter is marked and the wait reported.
    prof_mutex m;
    prof_mutex_init(&m, "kv.lock");
    a.m = &m;
    prof_mutex_lock(&m);
    seen.n = 0;
    pthread_create(&th, NULL, locker, &a);
    w = NULL;
    for (int i = 0; i < 500 && !(w && !strcmp(w, "kv.lock")); i++) { usleep(1000); w = waiting_on("locker"); }
    CHECKF(w && !strcmp(w, "kv.lock"), "locker waits on '%s'", w ? w : "(not registered)");
    prof_mutex_unlock(&m);
    pthread_join(th, NULL);
    CHECK(seen.n == 1 && !strcmp(seen.name, "kv.lock") && seen.kind == PROF_WAIT_MUTEX);
    // Uncontended: no report.
    seen.n = 0;
    prof_mutex_lock(&m);
    prof_mutex_unlock(&m);
    CHECK(seen.n == 0);
    prof_mutex_destroy(&m);
    prof_sync_set_hook(NULL);
}

static void test_registry_labels(void) {
    prof_thread *t = prof_thread_register("main-test", "main");
    REQUIRE(t);
    CHECK(prof_thread_self() == t);
    prof_label_req(42);
    prof_label_phase("tokenize");
    prof_thread_info info[PROF_MAX_THREADS];
    int n = prof_thread_snapshot(info, PROF_MAX_THREADS), found = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(info[i].name, "main-test")) {
            found = 1;
            CHECK(info[i].req == 42 && !strcmp(info[i].phase, "tokenize") && !strcmp(info[i].role, "main"));
        }
    CHECK(found);
    char kname[32] = "";
    pthread_getname_np(pthread_self(), kname, sizeof kname);
    CHECK(!strcmp(kname, "main-test"));
    prof_thread_unregister();
    CHECK(prof_thread_self() == NULL);
}

int main(void) {
    RUN(test_queue_fifo_and_bound);
    RUN(test_pop_until_times_out);
    RUN(test_waits_are_named);
    RUN(test_registry_labels);
    return harness_done();
}
