// trace.c — the execution tracer (see trace.h).
//
// Each registry slot owns a ring of 64-byte events. A thread writes its own
// ring: fill the slot at head % cap, then publish head + 1 (release). An
// exporter reads head, copies the ring, reads head again and keeps only the
// events that cannot have been overwritten meanwhile. Every event carries
// the writer's tid, so a slot reused by a new thread needs no reset.
#include "trace.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "thread.h"
#include "util/util.h"

enum ev_type { EV_BEGIN = 1, EV_END, EV_INSTANT, EV_COUNTER, EV_TASK_BEGIN, EV_TASK_END, EV_FLOW, EV_WAIT, EV_TOKEN };

typedef struct ev {
    uint64_t ts;             // monotonic ns
    const char *name;
    const char *akey, *bkey; // argument names (NULL = none)
    uint64_t id;             // request / flow id; EV_WAIT: end ns
    int64_t a, b;            // arguments; EV_COUNTER: a holds the double's bits
    int32_t tid;
    uint8_t type;
    uint8_t flow_phase;
} ev;

typedef struct ring {
    _Atomic uint64_t head;   // events ever written
    uint32_t cap;            // power of two
    ev *evs;                 // (cap)
} ring;

_Atomic int trace_on;
static ring rings[PROF_MAX_THREADS];
static uint32_t ring_events = TRACE_DEFAULT_EVENTS;
static _Atomic int holds;
static _Atomic int flight;
static _Atomic uint64_t flight_window = 10ull * 1000000000ull;

// Names of every thread that ever recorded (tid -> name, role), append-only.
#define MAX_NAMES 8192
static struct { int32_t tid; char name[PROF_NAME_LEN]; char role[PROF_NAME_LEN]; } names[MAX_NAMES];
static _Atomic int n_names;
static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;

static __thread ring *my_ring;
static __thread uint32_t my_seq;
static __thread int32_t my_tid;

void trace_init(uint32_t events_per_thread) {
    uint32_t c = 1024;
    while (c < events_per_thread && c < (1u << 24)) c <<= 1;
    ring_events = c;
}

static void update_on(void) {
    atomic_store(&trace_on, atomic_load(&flight) || atomic_load(&holds) > 0);
}

void trace_flight_start(uint64_t window_ns) {
    if (window_ns) atomic_store(&flight_window, window_ns);
    atomic_store(&flight, 1);
    update_on();
}

bool trace_flight_on(void) { return atomic_load(&flight) != 0; }
uint64_t trace_flight_window_ns(void) { return atomic_load(&flight_window); }

void trace_hold(void) { atomic_fetch_add(&holds, 1); update_on(); }
void trace_release(void) { atomic_fetch_sub(&holds, 1); update_on(); }

// The calling thread's ring, set up on its first event (NULL when the
// thread is not registered or memory is short).
static ring *get_ring(void) {
    prof_thread *t = prof_thread_self();
    if (!t) return NULL;
    if (my_ring && my_seq == t->seq) return my_ring;
    ring *r = &rings[t - prof_thread_table()];
    if (!r->evs) {
        // Connection threads record little; the rest get the full ring.
        uint32_t cap = strcmp(t->role, "http") ? ring_events : ring_events / 8;
        if (cap < 1024) cap = 1024;
        // Every page is written now: a ring that filled page by page over
        // hours (a connection slot sees a few events per request) would
        // make RSS creep long after warm-up; this way a ring costs its
        // full size once, when its slot is first used.
        ev *e = calloc(cap, sizeof *e);
        if (!e) return NULL;
        for (size_t o = 0; o < (size_t)cap * sizeof *e; o += 4096) ((volatile char *)e)[o] = 0;
        r->cap = cap;
        r->evs = e;
    }
    pthread_mutex_lock(&names_lock);
    int n = atomic_load(&n_names);
    if (n < MAX_NAMES) {
        names[n].tid = t->tid;
        memcpy(names[n].name, t->name, PROF_NAME_LEN);
        memcpy(names[n].role, t->role, PROF_NAME_LEN);
        atomic_store(&n_names, n + 1);
    }
    pthread_mutex_unlock(&names_lock);
    my_ring = r;
    my_seq = t->seq;
    my_tid = t->tid;
    return r;
}

static inline void put(uint8_t type, uint64_t ts, const char *name, uint64_t id, const char *akey, int64_t a,
                       const char *bkey, int64_t b, uint8_t fp) {
    ring *r = get_ring();
    if (!r) return;
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    ev *e = &r->evs[h & (r->cap - 1)];
    e->ts = ts;
    e->name = name;
    e->akey = akey;
    e->bkey = bkey;
    e->id = id;
    e->a = a;
    e->b = b;
    e->tid = my_tid;
    e->type = type;
    e->flow_phase = fp;
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
}

void trace_region_begin_(const char *name, uint64_t id, const char *akey, int64_t a) {
    put(EV_BEGIN, util_now_ns(), name, id, akey, a, NULL, 0, 0);
}
void trace_region_end_(const char *name, const char *akey, int64_t a, const char *bkey, int64_t b) {
    put(EV_END, util_now_ns(), name, 0, akey, a, bkey, b, 0);
}
void trace_instant_(const char *name, uint64_t id, const char *akey, int64_t a, const char *bkey, int64_t b) {
    put(EV_INSTANT, util_now_ns(), name, id, akey, a, bkey, b, 0);
}
void trace_counter_(const char *name, double v) {
    int64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put(EV_COUNTER, util_now_ns(), name, 0, NULL, bits, NULL, 0, 0);
}
void trace_task_begin_(const char *name, uint64_t id, const char *akey, int64_t a) {
    put(EV_TASK_BEGIN, util_now_ns(), name, id, akey, a, NULL, 0, 0);
}
void trace_task_end_(const char *name, uint64_t id, const char *akey, int64_t a, const char *bkey, int64_t b) {
    put(EV_TASK_END, util_now_ns(), name, id, akey, a, bkey, b, 0);
}
void trace_flow_(uint64_t id, int phase) {
    put(EV_FLOW, util_now_ns(), "request", id, NULL, 0, NULL, 0, (uint8_t)phase);
}
void trace_wait_(const char *name, uint64_t t0, uint64_t t1) {
    put(EV_WAIT, t0, name, t1, NULL, 0, NULL, 0, 0);
}

void trace_token_(uint64_t id, int64_t index, int64_t token, uint64_t gap_ns) {
    // The gap rides in the unused key slot (EV_TOKEN's keys are fixed).
    put(EV_TOKEN, util_now_ns(), "token", id, (const char *)(uintptr_t)gap_ns, index, NULL, token, 0);
}

void trace_sync_hook(prof_wait_kind kind, const char *name, uint64_t t0, uint64_t t1) {
    (void)kind;
    trace_wait(name, t0, t1);
}

void trace_stats(uint64_t *recorded, uint64_t *overwritten) {
    uint64_t ow = 0, rec = 0;
    for (int i = 0; i < PROF_MAX_THREADS; i++) {
        uint64_t h = atomic_load(&rings[i].head);
        rec += h;
        if (rings[i].evs && h > rings[i].cap) ow += h - rings[i].cap;
    }
    *recorded = rec;
    *overwritten = ow;
}

// ---- export ------------------------------------------------------------------

typedef struct jb { char *p; size_t n, cap; bool oom; } jb;

static void jraw(jb *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = (b->cap + n + 1) * 2;
        char *np = realloc(b->p, nc);
        if (!np) { b->oom = true; return; }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

#define JL(b, lit) jraw((b), lit, sizeof(lit) - 1)

static void jf(jb *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (w < 0) return;
    if ((size_t)w >= sizeof tmp) w = sizeof tmp - 1;
    jraw(b, tmp, (size_t)w);
}

// A JSON string (names are literals of this program, but escape anyway).
static void jstr(jb *b, const char *s) {
    JL(b, "\"");
    for (const char *p = s ? s : ""; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') { char e[2] = {'\\', (char)c}; jraw(b, e, 2); }
        else if (c < 0x20) jf(b, "\\u%04x", c);
        else jraw(b, (const char *)&c, 1);
    }
    JL(b, "\"");
}

// Microseconds with ns precision, as Chrome's "ts" wants.
static void jts(jb *b, const char *key, uint64_t ns) {
    jf(b, ",\"%s\":%llu.%03llu", key, (unsigned long long)(ns / 1000), (unsigned long long)(ns % 1000));
}

static void jargs(jb *b, const ev *e, uint64_t id_as_req) {
    bool any = e->akey || e->bkey || id_as_req;
    if (!any) return;
    JL(b, ",\"args\":{");
    bool first = true;
    if (id_as_req) { jf(b, "\"request\":%llu", (unsigned long long)id_as_req); first = false; }
    if (e->akey) { if (!first) JL(b, ","); jstr(b, e->akey); jf(b, ":%lld", (long long)e->a); first = false; }
    if (e->bkey) { if (!first) JL(b, ","); jstr(b, e->bkey); jf(b, ":%lld", (long long)e->b); }
    JL(b, "}");
}

// A slice's arguments: the request, the begin's argument, the end's two.
static void slice_args(jb *b, const ev *bg, const ev *end) {
    const char *k[3] = {bg->akey, end ? end->akey : NULL, end ? end->bkey : NULL};
    int64_t v[3] = {bg->a, end ? end->a : 0, end ? end->b : 0};
    if (!bg->id && !k[0] && !k[1] && !k[2]) return;
    JL(b, ",\"args\":{");
    bool first = true;
    if (bg->id) { jf(b, "\"request\":%llu", (unsigned long long)bg->id); first = false; }
    for (int i = 0; i < 3; i++) {
        if (!k[i]) continue;
        if (!first) JL(b, ",");
        jstr(b, k[i]);
        jf(b, ":%lld", (long long)v[i]);
        first = false;
    }
    JL(b, "}");
}

static int cmp_ts(const void *x, const void *y) {
    const ev *a = x, *b = y;
    if (a->tid != b->tid) return a->tid < b->tid ? -1 : 1;
    return a->ts < b->ts ? -1 : a->ts > b->ts ? 1 : 0;
}

// Copies every ring's surviving events (writers keep going).
__attribute__((no_sanitize("thread")))
static ev *snapshot(size_t *n_out) {
    size_t total = 0;
    for (int i = 0; i < PROF_MAX_THREADS; i++) {
        uint64_t h = atomic_load_explicit(&rings[i].head, memory_order_acquire);
        if (rings[i].evs) total += h < rings[i].cap ? h : rings[i].cap;
    }
    ev *all = malloc((total + 1) * sizeof *all);
    if (!all) return NULL;
    size_t n = 0;
    for (int i = 0; i < PROF_MAX_THREADS && n < total; i++) {
        ring *r = &rings[i];
        if (!r->evs) continue;
        uint64_t h1 = atomic_load_explicit(&r->head, memory_order_acquire);
        uint64_t lo = h1 > r->cap ? h1 - r->cap : 0;
        size_t start = n;
        for (uint64_t k = lo; k < h1 && n < total; k++) all[n++] = r->evs[k & (r->cap - 1)];
        uint64_t h2 = atomic_load_explicit(&r->head, memory_order_acquire);
        // Slots [lo, h2 - cap) may have been rewritten during the copy.
        uint64_t safe_lo = h2 > r->cap ? h2 - r->cap : 0;
        if (safe_lo > lo) {
            size_t drop = (size_t)(safe_lo - lo);
            if (drop > n - start) drop = n - start;
            memmove(all + start, all + start + drop, (n - start - drop) * sizeof *all);
            n -= drop;
        }
    }
    *n_out = n;
    return all;
}

typedef struct open_task { uint64_t id; const char *name; bool seen_begin; } open_task;

char *trace_export_json(uint64_t from, uint64_t to, size_t *len) {
    size_t n = 0;
    ev *all = snapshot(&n);
    if (!all) return NULL;
    qsort(all, n, sizeof *all, cmp_ts);
    jb b = {0};
    static const char head[] = "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"clock\":\"CLOCK_MONOTONIC\",\"generator\":\"llmscope\"},\"traceEvents\":[";
    jraw(&b, head, sizeof head - 1);
    int pid = (int)getpid();
    jf(&b, "{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"process_name\",\"args\":{\"name\":\"llm-server\"}}", pid, pid);
    // Thread names: the newest name recorded for each tid.
    int nn = atomic_load(&n_names);
    for (int i = 0; i < nn; i++) {
        bool later = false;
        for (int j = i + 1; j < nn; j++) if (names[j].tid == names[i].tid) { later = true; break; }
        if (later) continue;
        jf(&b, ",{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"thread_name\",\"args\":{\"name\":", pid, names[i].tid);
        jstr(&b, names[i].name);
        JL(&b, "}}");
        static const char *order[] = {"main", "http", "tokenizer", "scheduler", "compute"};
        int idx = 9;
        for (int k = 0; k < 5; k++) if (!strcmp(names[i].role, order[k])) idx = k;
        jf(&b, ",{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"thread_sort_index\",\"args\":{\"sort_index\":%d}}", pid,
           names[i].tid, idx * 1000 + (names[i].tid % 1000));
    }
    // Regions: matched per thread with a stack, clipped to [from, to].
    enum { MAXD = 64 };
    size_t stack[MAXD];
    open_task *tasks = calloc(4096, sizeof *tasks);
    int n_tasks = 0;
    for (size_t i = 0; i < n;) {
        int32_t tid = all[i].tid;
        int depth = 0;
        size_t j = i;
        for (; j < n && all[j].tid == tid; j++) {
            ev *e = &all[j];
            switch (e->type) {
            case EV_BEGIN:
                if (depth < MAXD) stack[depth++] = j;
                break;
            case EV_END: {
                int k = depth - 1;
                while (k >= 0 && strcmp(all[stack[k]].name, e->name)) k--;
                if (k < 0) break;   // its begin was overwritten
                // Anything opened inside and never closed ends here too.
                for (int d = depth - 1; d >= k; d--) {
                    ev *bg = &all[stack[d]];
                    uint64_t s = bg->ts < from ? from : bg->ts, t = e->ts > to ? to : e->ts;
                    if (t < s || e->ts < from || bg->ts > to) continue;
                    jf(&b, ",{\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"name\":", pid, tid);
                    jstr(&b, bg->name);
                    jts(&b, "ts", s);
                    jts(&b, "dur", t - s);
                    slice_args(&b, bg, d == k ? e : NULL);
                    JL(&b, "}");
                }
                depth = k;
                break;
            }
            case EV_WAIT: {
                uint64_t t1 = e->id;
                if (t1 < from || e->ts > to) break;
                uint64_t s = e->ts < from ? from : e->ts, t = t1 > to ? to : t1;
                jf(&b, ",{\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"cat\":\"wait\",\"name\":", pid, tid);
                char nm[96];
                snprintf(nm, sizeof nm, "wait %s", e->name);
                jstr(&b, nm);
                jts(&b, "ts", s);
                jts(&b, "dur", t - s);
                JL(&b, ",\"args\":{\"on\":");
                jstr(&b, e->name);
                JL(&b, "}}");
                break;
            }
            case EV_INSTANT:
                if (e->ts < from || e->ts > to) break;
                jf(&b, ",{\"ph\":\"i\",\"s\":\"t\",\"pid\":%d,\"tid\":%d,\"name\":", pid, tid);
                jstr(&b, e->name);
                jts(&b, "ts", e->ts);
                jargs(&b, e, e->id);
                JL(&b, "}");
                break;
            case EV_TOKEN:
                if (e->ts < from || e->ts > to) break;
                jf(&b, ",{\"ph\":\"i\",\"s\":\"t\",\"pid\":%d,\"tid\":%d,\"name\":\"token\"", pid, tid);
                jts(&b, "ts", e->ts);
                jf(&b, ",\"args\":{\"request\":%llu,\"index\":%lld,\"token\":%lld,\"gap_us\":%.3f}}",
                   (unsigned long long)e->id, (long long)e->a, (long long)e->b, (double)(uintptr_t)e->akey / 1e3);
                break;
            case EV_COUNTER: {
                if (e->ts < from || e->ts > to) break;
                double v;
                memcpy(&v, &e->a, sizeof v);
                if (!isfinite(v)) break;
                jf(&b, ",{\"ph\":\"C\",\"pid\":%d,\"tid\":%d,\"name\":", pid, tid);
                jstr(&b, e->name);
                jts(&b, "ts", e->ts);
                jf(&b, ",\"args\":{\"value\":%.9g}}", v);
                break;
            }
            case EV_TASK_BEGIN:
            case EV_TASK_END: {
                if (e->ts > to) break;
                int t;
                for (t = 0; t < n_tasks; t++) if (tasks[t].id == e->id) break;
                if (e->type == EV_TASK_BEGIN) {
                    if (e->ts < from) {   // begun before the window: starts at its edge if still open
                        if (t == n_tasks && n_tasks < 4096) tasks[n_tasks++] = (open_task){e->id, e->name, false};
                        break;
                    }
                    if (t == n_tasks && n_tasks < 4096) tasks[n_tasks++] = (open_task){e->id, e->name, true};
                    else if (t < n_tasks) tasks[t].seen_begin = true;
                    jf(&b, ",{\"ph\":\"b\",\"cat\":\"request\",\"id\":%llu,\"pid\":%d,\"tid\":%d,\"name\":",
                       (unsigned long long)e->id, pid, tid);
                    jstr(&b, e->name);
                    jts(&b, "ts", e->ts);
                    jargs(&b, e, 0);
                    JL(&b, "}");
                } else {
                    if (e->ts < from) { if (t < n_tasks) tasks[t].id = 0; break; }
                    if (t == n_tasks || !tasks[t].seen_begin) {   // begin outside the window or overwritten
                        jf(&b, ",{\"ph\":\"b\",\"cat\":\"request\",\"id\":%llu,\"pid\":%d,\"tid\":%d,\"name\":",
                           (unsigned long long)e->id, pid, tid);
                        jstr(&b, e->name);
                        jts(&b, "ts", from);
                        JL(&b, "}");
                    }
                    jf(&b, ",{\"ph\":\"e\",\"cat\":\"request\",\"id\":%llu,\"pid\":%d,\"tid\":%d,\"name\":",
                       (unsigned long long)e->id, pid, tid);
                    jstr(&b, e->name);
                    jts(&b, "ts", e->ts);
                    jargs(&b, e, 0);
                    JL(&b, "}");
                    if (t < n_tasks) tasks[t].id = 0;
                }
                break;
            }
            case EV_FLOW:
                if (e->ts < from || e->ts > to) break;
                jf(&b, ",{\"ph\":\"%c\",\"cat\":\"request\",\"id\":%llu,\"pid\":%d,\"tid\":%d,\"name\":\"request\"%s",
                   e->flow_phase == 0 ? 's' : e->flow_phase == 1 ? 't' : 'f', (unsigned long long)e->id, pid, tid,
                   e->flow_phase == 2 ? ",\"bp\":\"e\"" : "");
                jts(&b, "ts", e->ts);
                JL(&b, "}");
                break;
            }
        }
        // Regions still open at the end of the window end at `to`.
        for (int d = depth - 1; d >= 0; d--) {
            ev *bg = &all[stack[d]];
            if (bg->ts > to) continue;
            uint64_t s = bg->ts < from ? from : bg->ts;
            jf(&b, ",{\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"name\":", pid, tid);
            jstr(&b, bg->name);
            jts(&b, "ts", s);
            jts(&b, "dur", to - s);
            jargs(&b, bg, bg->id);
            JL(&b, "}");
        }
        i = j;
    }
    // Tasks still open: they end at the window's edge (tid of the begin is unknown here: use pid).
    for (int t = 0; t < n_tasks; t++) {
        if (!tasks[t].id) continue;
        if (!tasks[t].seen_begin) {
            jf(&b, ",{\"ph\":\"b\",\"cat\":\"request\",\"id\":%llu,\"pid\":%d,\"tid\":%d,\"name\":",
               (unsigned long long)tasks[t].id, pid, pid);
            jstr(&b, tasks[t].name);
            jts(&b, "ts", from);
            JL(&b, "}");
        }
        jf(&b, ",{\"ph\":\"e\",\"cat\":\"request\",\"id\":%llu,\"pid\":%d,\"tid\":%d,\"name\":",
           (unsigned long long)tasks[t].id, pid, pid);
        jstr(&b, tasks[t].name);
        jts(&b, "ts", to);
        JL(&b, ",\"args\":{\"unfinished\":1}}");
    }
    free(tasks);
    free(all);
    JL(&b, "]}\n");
    if (b.oom) { free(b.p); return NULL; }
#ifdef __GLIBC__
    // The copy of the rings and the JSON buffer's smaller steps were freed
    // into the serving thread's arena, which glibc keeps: without this each
    // flight-recorder dump left about 2 MB resident until the next trim
    // (the soak's RSS went up and down by that much with every capture).
    malloc_trim(0);
#endif
    *len = b.n;
    return b.p;
}

int trace_write_file(const char *dir, const char *name, uint64_t from, uint64_t to) {
    size_t len;
    char *j = trace_export_json(from, to, &len);
    if (!j) { errno = ENOMEM; return -1; }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { free(j); return -1; }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, j + off, len - off);
        if (w < 0) { if (errno == EINTR) continue; int e = errno; close(fd); free(j); errno = e; return -1; }
        off += (size_t)w;
    }
    free(j);
    return close(fd);
}
