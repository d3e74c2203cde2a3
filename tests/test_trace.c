// test_trace.c — the tracer: exported JSON is valid Chrome Trace Event
// format, slices nest and close per thread, clipping to the window keeps them
// nested, tasks and flows pair up, counters and instants carry their values,
// overwritten rings never produce half events, and a wait on a named queue
// appears with its duration.
#include <jansson.h>
#include <pthread.h>
#include <unistd.h>
#include "harness.h"
#include "prof/region.h"
#include "prof/sync.h"
#include "prof/thread.h"
#include "prof/trace.h"
#include "util/util.h"

static void sleep_us(int us) { usleep((useconds_t)us); }

// Checks per-thread nesting of X events: sorted by ts, each slice lies
// within the enclosing open one. Returns the number of X events.
static int check_nesting(json_t *evs, int *bad) {
    size_t n = json_array_size(evs);
    int nx = 0;
    // Collect (tid, ts, end) of X events.
    double (*x)[3] = malloc(sizeof *x * (n + 1));
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(evs, i);
        if (strcmp(json_string_value(json_object_get(e, "ph")), "X")) continue;
        double ts = json_number_value(json_object_get(e, "ts")), dur = json_number_value(json_object_get(e, "dur"));
        if (dur < 0) (*bad)++;
        x[nx][0] = (double)json_integer_value(json_object_get(e, "tid"));
        x[nx][1] = ts;
        x[nx][2] = ts + dur;
        nx++;
    }
    for (int i = 0; i < nx; i++)
        for (int j = 0; j < nx; j++) {
            if (i == j || x[i][0] != x[j][0]) continue;
            // Two slices of a thread either are disjoint or one contains the other.
            bool disjoint = x[i][2] <= x[j][1] + 1e-3 || x[j][2] <= x[i][1] + 1e-3;
            bool i_in_j = x[i][1] >= x[j][1] - 1e-3 && x[i][2] <= x[j][2] + 1e-3;
            bool j_in_i = x[j][1] >= x[i][1] - 1e-3 && x[j][2] <= x[i][2] + 1e-3;
            if (!disjoint && !i_in_j && !j_in_i) (*bad)++;
        }
    free(x);
    return nx;
}

static json_t *export_parse(uint64_t from, uint64_t to) {
    size_t len;
    char *s = trace_export_json(from, to, &len);
    if (!s) return NULL;
    json_error_t je;
    json_t *j = json_loadb(s, len, 0, &je);
    if (!j) fprintf(stderr, "  JSON error at %d: %s\n", je.position, je.text);
    free(s);
    return j;
}

static int count(json_t *evs, const char *ph, const char *name) {
    int c = 0;
    size_t i;
    json_t *e;
    json_array_foreach(evs, i, e) {
        if (strcmp(json_string_value(json_object_get(e, "ph")), ph)) continue;
        if (name && (!json_is_string(json_object_get(e, "name")) || strcmp(json_string_value(json_object_get(e, "name")), name))) continue;
        c++;
    }
    return c;
}

typedef struct { prof_queue *q; uint64_t id; } worker_arg;

static void *worker(void *p) {
    worker_arg *a = p;
    prof_thread_register("tok-test", "tokenizer");
    void *it = prof_queue_pop(a->q);   // blocks ~20 ms: a named wait
    prof_region_begin("tokenize", a->id);
    trace_flow(a->id, 1);
    sleep_us(2000);
    prof_region_end("tokenize", "tokens", 7);
    prof_thread_unregister();
    return it;
}

static void test_structure(void) {
    trace_init(4096);
    prof_sync_set_hook(trace_sync_hook);
    trace_hold();
    prof_thread_register("main-test", "main");
    uint64_t t0 = util_now_ns();
    prof_queue *q = prof_queue_new("tokenize", 4);
    worker_arg a = {q, 42};
    pthread_t th;
    pthread_create(&th, NULL, worker, &a);
    // Once the worker is blocked on the queue, it stays blocked 20 ms.
    for (int i = 0; i < 5000; i++) {
        prof_thread_info info[PROF_MAX_THREADS];
        int n = prof_thread_snapshot(info, PROF_MAX_THREADS), waiting = 0;
        for (int k = 0; k < n; k++)
            if (!strcmp(info[k].name, "tok-test") && info[k].wait && !strcmp(info[k].wait, "tokenize")) waiting = 1;
        if (waiting) break;
        sleep_us(1000);
    }
    trace_task_begin("request", 42, "prompt_tokens", 5);
    prof_region_begin("submit", 42);
    trace_flow(42, 0);
    sleep_us(20000);
    prof_queue_push(q, &a);
    prof_region_end("submit", NULL, 0);
    pthread_join(th, NULL);
    prof_region_begin("outer", 0);
    prof_region_begin("inner", 0);
    trace_instant("token", 42, "index", 0, "token", 123);
    trace_counter("queue.depth", 3.5);
    prof_region_end("inner", NULL, 0);
    trace_flow(42, 2);
    prof_region_end("outer", NULL, 0);
    trace_task_end("request", 42, "generated_tokens", 1, NULL, 0);
    uint64_t t1 = util_now_ns();
    json_t *j = export_parse(t0, t1);
    REQUIRE(j);
    json_t *evs = json_object_get(j, "traceEvents");
    REQUIRE(json_is_array(evs));
    int bad = 0;
    int nx = check_nesting(evs, &bad);
    CHECKF(bad == 0, "%d badly nested slices", bad);
    CHECK(nx >= 5);
    CHECK(count(evs, "X", "submit") == 1 && count(evs, "X", "tokenize") == 1);
    CHECK(count(evs, "X", "outer") == 1 && count(evs, "X", "inner") == 1);
    CHECK(count(evs, "b", "request") == 1 && count(evs, "e", "request") == 1);
    CHECK(count(evs, "s", NULL) == 1 && count(evs, "t", NULL) == 1 && count(evs, "f", NULL) == 1);
    CHECK(count(evs, "i", "token") == 1 && count(evs, "C", "queue.depth") == 1);
    CHECK(count(evs, "M", "thread_name") >= 2);
    // The worker's wait on the queue "tokenize" lasted about 20 ms.
    size_t i;
    json_t *e;
    int waits = 0;
    json_array_foreach(evs, i, e) {
        const char *nm = json_string_value(json_object_get(e, "name"));
        if (nm && !strcmp(nm, "wait tokenize")) {
            double dur = json_number_value(json_object_get(e, "dur"));
            CHECKF(dur >= 19000 && dur < 2000000, "wait of %.0f us", dur);
            waits++;
        }
        if (nm && !strcmp(nm, "tokenize") && !strcmp(json_string_value(json_object_get(e, "ph")), "X")) {
            json_t *args = json_object_get(e, "args");
            CHECK(json_integer_value(json_object_get(args, "request")) == 42);
            CHECK(json_integer_value(json_object_get(args, "tokens")) == 7);
        }
        if (nm && !strcmp(nm, "queue.depth"))
            CHECK(json_number_value(json_object_get(json_object_get(e, "args"), "value")) == 3.5);
    }
    CHECK(waits == 1);
    json_decref(j);

    // Clipped to a window that cuts "submit" in half: still nested, task
    // begun before the window starts at its edge.
    json_t *j2 = export_parse(t0 + 10 * 1000000ull, t1);
    REQUIRE(j2);
    evs = json_object_get(j2, "traceEvents");
    bad = 0;
    check_nesting(evs, &bad);
    CHECK(bad == 0);
    CHECK(count(evs, "b", "request") == 1 && count(evs, "e", "request") == 1);
    json_decref(j2);
    prof_queue_free(q);
    prof_thread_unregister();
    trace_release();
    prof_sync_set_hook(NULL);
}

static void test_off_records_nothing(void) {
    prof_thread_register("quiet", "main");
    uint64_t r0, r1, ow;
    trace_stats(&r0, &ow);
    CHECK(!TRACE_ON());
    prof_region_begin("x", 1);
    prof_region_end("x", NULL, 0);
    trace_stats(&r1, &ow);
    CHECK(r1 == r0);
    prof_thread_unregister();
}

static void test_overwrite_keeps_pairs(void) {
    // A ring much smaller than the events written: the export holds only
    // whole, matched slices.
    trace_hold();
    prof_thread_register("busy", "scheduler");
    uint64_t t0 = util_now_ns();
    for (int i = 0; i < 20000; i++) {
        prof_region_begin("step", 0);
        if (i % 3 == 0) { prof_region_begin("sample", 0); prof_region_end("sample", NULL, 0); }
        prof_region_end("step", "n", i);
    }
    uint64_t rec, ow;
    trace_stats(&rec, &ow);
    CHECK(ow > 0);
    json_t *j = export_parse(t0, util_now_ns());
    REQUIRE(j);
    json_t *evs = json_object_get(j, "traceEvents");
    int bad = 0;
    int nx = check_nesting(evs, &bad);
    CHECK(bad == 0);
    CHECK(nx > 1000 && nx <= 4096);
    json_decref(j);
    prof_thread_unregister();
    trace_release();
}

static void bench_cost(void) {
    // Per-event cost (reported, not asserted: timing belongs to benchmarks).
    trace_hold();
    prof_thread_register("bench", "main");
    enum { N = 200000 };
    uint64_t t0 = util_now_ns();
    for (int i = 0; i < N; i++) trace_instant("tick", 0, "i", i, NULL, 0);
    uint64_t t1 = util_now_ns();
    trace_release();
    uint64_t t2 = util_now_ns();
    for (int i = 0; i < N; i++) trace_instant("tick", 0, "i", i, NULL, 0);
    uint64_t t3 = util_now_ns();
    fprintf(stderr, "  trace event: %.1f ns on, %.2f ns off\n", (double)(t1 - t0) / N, (double)(t3 - t2) / N);
    prof_thread_unregister();
    CHECK(t1 > t0);
}

int main(void) {
    RUN(test_off_records_nothing);
    RUN(test_structure);
    RUN(test_overwrite_keeps_pairs);
    RUN(bench_cost);
    return harness_done();
}
