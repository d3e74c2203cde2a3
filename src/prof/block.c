// block.c — the block and mutex profiles (Go's formats and sampling).
// Block: every wait in a prof_cond / prof_queue and every contended
// prof_mutex acquisition, at the waiting stack; a wait of at least
// rate_ns is always recorded, a shorter one with probability wait/rate_ns and
// then counted as rate_ns/wait events of rate_ns (unbiased, as Go since 1.23).
// Mutex: the delay other threads spent waiting for a prof_mutex, charged to
// the stack that unlocked it (as Go does); 1 in `fraction` events recorded,
// each then counted `fraction` times. Both carry the waited-on object's name
// as the label "object".
//
// Runs on the waiting/unlocking thread, outside every lock of sync.c; takes
// the bucket table's mutex (never a prof_mutex, so it cannot recurse).
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"
#include "sync.h"
#include "util/util.h"

#define FIX 1000   // counts are kept in thousandths (sampled events count fractionally)

static _Atomic int64_t block_rate = 10000;     // ns
static _Atomic int mutex_fraction = 10;
static prof_btable block_buckets = PROF_BTABLE_INIT;   // v: count x FIX, delay ns
static prof_btable mutex_buckets = PROF_BTABLE_INIT;

void prof_block_set_rate(int64_t rate_ns) { atomic_store(&block_rate, rate_ns < 0 ? 0 : rate_ns); }
void prof_mutex_set_fraction(int fraction) { atomic_store(&mutex_fraction, fraction < 0 ? 0 : fraction); }

__attribute__((noinline)) static void add(prof_btable *t, const char *name, int64_t count_fix, int64_t delay_ns, void *fp) {
    uintptr_t pcs[PROF_MAX_DEPTH];
    int n = prof_stack_here(fp, pcs, PROF_MAX_DEPTH);
    prof_bucket *b = prof_bucket_get(t, pcs, n, name);
    if (!b) return;
    atomic_fetch_add_explicit(&b->v[0], count_fix, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->v[1], delay_ns, memory_order_relaxed);
}

// Called from sync.c's waited(), which is inlined into the prof_* call that
// waited; the recorded stack starts at that call's caller's return address.
__attribute__((noinline)) void prof_block_on_wait(int kind, const char *name, uint64_t start_ns, uint64_t end_ns) {
    int64_t rate = atomic_load_explicit(&block_rate, memory_order_relaxed);
    if (rate <= 0) return;
    int64_t d = end_ns > start_ns ? (int64_t)(end_ns - start_ns) : 0;
    if (d <= 0) d = 1;
    if (d >= rate) {
        add(&block_buckets, name, FIX, d, __builtin_frame_address(0));
    } else if ((int64_t)(prof_rand() % (uint64_t)rate) < d) {
        add(&block_buckets, name, FIX * rate / d, rate, __builtin_frame_address(0));
    }
}

__attribute__((noinline)) void prof_mutex_on_unlock(const char *name, uint64_t delay_ns) {
    int f = atomic_load_explicit(&mutex_fraction, memory_order_relaxed);
    if (f <= 0) return;
    if (f > 1 && prof_rand() % (uint64_t)f != 0) return;
    add(&mutex_buckets, name, (int64_t)FIX * f, (int64_t)delay_ns * f, __builtin_frame_address(0));
}

static prof_status write_profile(prof_btable *t, int64_t period, double seconds, prof_response *r) {
    if (!(seconds >= 0 && seconds <= 3600)) { prof_set_error(r, "seconds must be in [0, 3600]"); return PROF_EINVAL; }
    int64_t *base = NULL, *cur = NULL, nbase = 0;
    uint64_t t0 = util_now_ns();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    if (seconds > 0) {
        nbase = prof_btable_snapshot(t, &base);
        if (nbase < 0) { prof_set_error(r, "out of memory"); return PROF_ENOMEM; }
        struct timespec d = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
        while (nanosleep(&d, &d) != 0 && errno == EINTR) {}
    }
    int64_t n = prof_btable_snapshot(t, &cur);
    prof_profile *p = n >= 0 ? prof_profile_new() : NULL;
    if (!p) { free(base); free(cur); prof_set_error(r, "out of memory"); return PROF_ENOMEM; }
    prof_profile_sample_type(p, "contentions", "count");
    prof_profile_sample_type(p, "delay", "nanoseconds");
    prof_profile_period(p, "contentions", "count", period);
    prof_profile_times(p, (int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec, seconds > 0 ? (int64_t)(util_now_ns() - t0) : 0);
    pthread_mutex_lock(&t->mu);
    prof_bucket *all = atomic_load(&t->all);
    pthread_mutex_unlock(&t->mu);
    bool ok = true;
    for (prof_bucket *b = all; b && ok; b = b->all) {
        if ((int64_t)b->id >= n) continue;
        int64_t v[2];
        for (int k = 0; k < 2; k++) {
            v[k] = cur[b->id * PROF_BUCKET_VALUES + k];
            if (base && (int64_t)b->id < nbase) v[k] -= base[b->id * PROF_BUCKET_VALUES + k];
        }
        if (v[0] <= 0 && v[1] <= 0) continue;
        v[0] = (v[0] + FIX / 2) / FIX;
        if (v[0] < 1) v[0] = 1;
        prof_label l = {"object", b->name ? b->name : "?", 0, NULL};
        ok = prof_profile_add(p, b->pcs, b->depth, false, v, &l, 1);
    }
    free(base);
    free(cur);
    if (!ok) { prof_profile_free(p); prof_set_error(r, "out of memory"); return PROF_ENOMEM; }
    return prof_finish(p, r);
}

prof_status prof_block_profile(double seconds, prof_response *r) { return write_profile(&block_buckets, 1, seconds, r); }

prof_status prof_mutex_profile(double seconds, prof_response *r) {
    return write_profile(&mutex_buckets, atomic_load(&mutex_fraction), seconds, r);
}
