// debug.c — the /debug/* endpoints (see debug.h).
#include "debug.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prof/thread.h"
#include "util/util.h"

typedef struct tb { char *p; size_t n, cap; } tb;

static void tprintf(tb *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) return;
        if (b->p && (size_t)w < b->cap - b->n) { b->n += (size_t)w; return; }
        size_t nc = (b->cap + (size_t)w + 1) * 2;
        char *np = realloc(b->p, nc);
        if (!np) return;
        b->p = np;
        b->cap = nc;
    }
}

// Every registered thread: name, role, labels and what it waits on.
static int threads_text(debug_response *out) {
    prof_thread_info *info = malloc(sizeof *info * PROF_MAX_THREADS);
    if (!info) { snprintf(out->err, sizeof out->err, "out of memory"); return 500; }
    int n = prof_thread_snapshot(info, PROF_MAX_THREADS);
    uint64_t now = util_now_ns();
    tb b = {0};
    tprintf(&b, "threads: %d registered\n\n", n);
    for (int i = 0; i < n; i++) {
        tprintf(&b, "thread %u [%s, role %s, tid %d", info[i].seq, info[i].name, info[i].role, (int)info[i].tid);
        if (info[i].req) tprintf(&b, ", request %llu", (unsigned long long)info[i].req);
        if (info[i].phase) tprintf(&b, ", phase %s", info[i].phase);
        if (info[i].wait)
            tprintf(&b, "]: waiting on %s for %.3f ms\n\n", info[i].wait,
                    (double)(now - info[i].wait_since_ns) / 1e6);
        else
            tprintf(&b, "]: running\n\n");
    }
    free(info);
    if (!b.p) { snprintf(out->err, sizeof out->err, "out of memory"); return 500; }
    out->body = b.p;
    out->len = b.n;
    out->ctype = "text/plain; charset=utf-8";
    return 200;
}

int debug_handle(const char *url, debug_get_fn get, void *cls, debug_response *out) {
    (void)get; (void)cls;
    if (!strcmp(url, "/debug/pprof/threads") || !strcmp(url, "/debug/pprof/goroutine")) return threads_text(out);
    if (!strcmp(url, "/debug/pprof/") || !strcmp(url, "/debug/pprof")) {
        tb b = {0};
        tprintf(&b, "/debug/pprof/\n\nthreads (alias goroutine): every thread's name, role, labels and wait\n");
        if (!b.p) return 500;
        out->body = b.p;
        out->len = b.n;
        out->ctype = "text/plain; charset=utf-8";
        return 200;
    }
    return 0;
}
