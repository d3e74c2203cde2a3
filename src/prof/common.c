// common.c — what the profiles share: the stack-bucket table (heap, block,
// mutex), stack capture outside signal context, per-thread random numbers,
// status codes, responses, and prof_init().
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "util/util.h"

#define BTABLE_HEADS 4096

prof_bucket *prof_bucket_get(prof_btable *t, const uintptr_t *pcs, int n, const char *name) {
    if (n > PROF_MAX_DEPTH) n = PROF_MAX_DEPTH;
    uint64_t h = 1469598103934665603ULL ^ (uintptr_t)name;
    for (int i = 0; i < n; i++) h = (h ^ pcs[i]) * 1099511628211ULL;
    h ^= h >> 31;
    pthread_mutex_lock(&t->mu);
    if (!t->heads) {
        t->heads = calloc(BTABLE_HEADS, sizeof *t->heads);
        if (!t->heads) { pthread_mutex_unlock(&t->mu); return NULL; }
        t->nheads = BTABLE_HEADS;
    }
    prof_bucket **head = &t->heads[h & (t->nheads - 1)];
    for (prof_bucket *b = *head; b; b = b->next) {
        if (b->hash != h || b->depth != n || b->name != name) continue;
        if (memcmp(b->pcs, pcs, (size_t)n * sizeof *pcs) == 0) { pthread_mutex_unlock(&t->mu); return b; }
    }
    prof_bucket *b = calloc(1, sizeof *b);
    if (b) {
        b->hash = h;
        b->depth = n;
        b->name = name;
        memcpy(b->pcs, pcs, (size_t)n * sizeof *pcs);
        b->id = atomic_load(&t->count);
        b->next = *head;
        *head = b;
        b->all = atomic_load(&t->all);
        atomic_store(&t->all, b);          // published after it is complete
        atomic_store(&t->count, b->id + 1);
    }
    pthread_mutex_unlock(&t->mu);
    return b;
}

int64_t prof_btable_snapshot(prof_btable *t, int64_t **out) {
    pthread_mutex_lock(&t->mu);
    uint32_t n = atomic_load(&t->count);
    prof_bucket *all = atomic_load(&t->all);
    pthread_mutex_unlock(&t->mu);
    int64_t *v = calloc((size_t)n * PROF_BUCKET_VALUES + 1, sizeof *v);
    if (!v) return -1;
    for (prof_bucket *b = all; b; b = b->all)
        for (int k = 0; k < PROF_BUCKET_VALUES; k++) v[b->id * PROF_BUCKET_VALUES + k] = atomic_load(&b->v[k]);
    *out = v;
    return n;
}

int prof_stack_here(void *fp, uintptr_t *pcs, int max) {
    uintptr_t lo, hi;
    prof_thread_stack_bounds(&lo, &hi);
    return prof_unwind_fp((uintptr_t)fp, lo, hi, pcs, max);
}

static __thread uint64_t rng_state __attribute__((tls_model("initial-exec")));

uint64_t prof_rand(void) {
    uint64_t x = rng_state;
    if (!x) x = (util_now_ns() ^ ((uint64_t)syscall(SYS_gettid) << 32)) | 1;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    rng_state = x;
    return x;
}

double prof_rand_unit(void) { return ((double)(prof_rand() >> 11) + 1.0) / 9007199254740992.0; }

int prof_http_status(prof_status s) {
    switch (s) {
    case PROF_OK: return 200;
    case PROF_EINVAL: return 400;
    case PROF_EBUSY: return 409;
    case PROF_ENOTFOUND: return 404;
    case PROF_EUNAVAIL: return 501;
    case PROF_ENOMEM: case PROF_EINTERNAL: default: return 500;
    }
}

const char *prof_strerror(prof_status s) {
    switch (s) {
    case PROF_OK: return "ok";
    case PROF_EINVAL: return "bad parameter";
    case PROF_EBUSY: return "a CPU profile is already running";
    case PROF_ENOMEM: return "out of memory";
    case PROF_EUNAVAIL: return "not available in this build";
    case PROF_ENOTFOUND: return "no such profile";
    case PROF_EINTERNAL: return "timer or signal set-up failed";
    }
    return "unknown error";
}

void prof_response_free(prof_response *r) {
    if (!r) return;
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

void prof_set_error(prof_response *r, const char *fmt, ...) {
    if (!r) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    r->content_type = "text/plain; charset=utf-8";
}

prof_status prof_finish(prof_profile *p, prof_response *r) {
    uint8_t *out = NULL;
    size_t len = 0;
    bool ok = prof_profile_write(p, true, &out, &len);
    prof_profile_free(p);
    if (!ok) { prof_set_error(r, "out of memory while encoding the profile"); return PROF_ENOMEM; }
    r->body = out;
    r->len = len;
    r->content_type = "application/octet-stream";
    r->error[0] = 0;
    return PROF_OK;
}

prof_status prof_init(void) {
    static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;
    static bool done;
    pthread_mutex_lock(&once);
    prof_status st = PROF_OK;
    if (!done) {
        // LLMSCOPE_MEMPROFILERATE=N sets the heap sampling rate at start-up
        // (bytes; 0 = off, 1 = every allocation), as GODEBUG=memprofilerate.
        const char *e = getenv("LLMSCOPE_MEMPROFILERATE");
        int64_t rate;
        if (e && util_parse_i64(e, 0, INT64_MAX, &rate)) prof_heap_set_rate(rate);
        prof_thread_set_hook(prof_cpu_thread_hook);
        st = prof_threads_install();
        done = st == PROF_OK;
    }
    pthread_mutex_unlock(&once);
    return st;
}
