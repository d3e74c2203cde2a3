// test_evidence.c — the readers of the threads dump, Prometheus text and the
// execution trace (src/util/evidence.c): good inputs read right, hand-made
// bad ones refused with a message, never a crash.
#include "harness.h"
#include "util/evidence.h"

static const char DUMP[] =
    "thread 1 \"main\" [role main, tid 100, running]:\n"
    "__sigtimedwait()\n\t../sysdeps/unix/sysv/linux/sigtimedwait.c:31 +0x72\n\n"
    "thread 3 \"tokenizer-1\" [role tokenizer, tid 102, waiting on \"tokenize\" for 371.978 ms]:\n"
    "__futex_abstimed_wait_common64()\n\t./nptl/futex-internal.c:57 +0xc4\n"
    "prof_cond_wait()\n\tsrc/prof/sync.c:71 +0x3f\n"
    "tok_main()\n\tsrc/server/engine.c:162 +0x58\n\n"
    "thread 4 \"scheduler\" [role scheduler, tid 103, running] {request=7, phase=decode}:\n"
    "matmul_group(inlined)\n\tsrc/model/llama.c:393\n"
    "forward_worker()\n\tsrc/model/llama.c:464 +0x74b\n\n"
    "thread 5 \"http-1\" [role http, tid 104, waiting on \"a]b\" for 6.5 ms]:\n"
    "0x7f9bec88b65e()\n\t?\n";

static void test_threads_good(void) {
    ev_threads t;
    char err[256] = "";
    REQUIRE(ev_threads_parse(DUMP, sizeof DUMP - 1, "dump", &t, err, sizeof err) == 0);
    REQUIRE(t.n == 4);
    CHECK(!strcmp(t.t[0].name, "main") && !strcmp(t.t[0].role, "main") && t.t[0].tid == 100 && !t.t[0].waiting);
    CHECK(t.t[0].n_frames == 1 && !strcmp(t.t[0].frames[0], "__sigtimedwait"));
    CHECK(t.t[1].waiting && !strcmp(t.t[1].wait_on, "tokenize") && fabs(t.t[1].wait_ms - 371.978) < 1e-9);
    CHECK(t.t[1].n_frames == 3 && !strcmp(t.t[1].frames[2], "tok_main"));
    CHECK(!strcmp(t.t[2].phase, "decode") && t.t[2].request == 7 && !strcmp(t.t[2].frames[0], "matmul_group"));
    CHECK(t.t[3].waiting && !strcmp(t.t[3].wait_on, "a]b"));
    ev_threads_free(&t);
}

static void test_threads_bad(void) {
    static const char *bad[] = {
        "thread 1 main [role main, tid 1, running]:\n",            // unquoted name
        "thread 1 \"main [role main, tid 1, running]:\n",          // unclosed quote
        "thread 1 \"main\" role main, tid 1, running:\n",          // no brackets
        "thread 1 \"main\" [tid 1, running]:\n",                   // no role
        "thread 1 \"main\" [role main, tid x1, running]:\n",       // bad tid
        "thread 1 \"m\" [role m, tid 1, waiting on \"q\" for abc ms]:\n",   // bad wait time
        "thread 1 \"m\" [role m, tid 1, waiting on \"q]:\n",       // unclosed wait name
        "thread 1 \"m\" [role m, tid 1, running] {request=-3}:\n", // bad request label
        "thread 1 \"m\" [role m, tid 1, running] {phase=x:\n",     // unclosed labels
        "thread 1 \"m\" [role m, tid 99999999999999999999, running]:\n",   // tid overflow
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ev_threads t;
        char err[256] = "";
        int rc = ev_threads_parse(bad[i], strlen(bad[i]), "dump", &t, err, sizeof err);
        CHECKF(rc == -1 && strstr(err, "dump: line 1"), "case %zu: rc %d err '%s'", i, rc, err);
    }
    // Empty input and text without threads are fine (nothing registered).
    ev_threads t;
    char err[64];
    CHECK(ev_threads_parse("", 0, "d", &t, err, sizeof err) == 0 && t.n == 0);
    CHECK(ev_threads_parse("hello\n", 6, "d", &t, err, sizeof err) == 0 && t.n == 0);
}

static void test_metrics(void) {
    static const char M[] =
        "# HELP x a counter\n# TYPE x counter\n"
        "llmscope_http_requests_total{endpoint=\"/infer\",status=\"200\"} 44\n"
        "llmscope_http_requests_total{endpoint=\"/a}b\",status=\"503\"} 2\n"
        "llmscope_num_requests_running 3\n"
        "h_bucket{le=\"+Inf\"} 5 1700000000\n"
        "g -Inf\n  \n";
    ev_metrics m;
    char err[256] = "";
    REQUIRE(ev_metrics_parse(M, sizeof M - 1, "m", &m, err, sizeof err) == 0);
    CHECK(m.n == 5);
    bool f;
    CHECK(ev_metrics_sum(&m, "llmscope_http_requests_total", NULL, &f) == 46 && f);
    CHECK(ev_metrics_sum(&m, "llmscope_http_requests_total", "status=\"503\"", &f) == 2 && f);
    CHECK(!strcmp(m.m[1].labels, "endpoint=\"/a}b\",status=\"503\""));
    CHECK(ev_metrics_sum(&m, "llmscope_num_requests_running", NULL, &f) == 3);
    ev_metrics_sum(&m, "nope", NULL, &f);
    CHECK(!f);
    ev_metrics_free(&m);
    static const char *bad[] = {"{a=\"b\"} 1\n", "x{a=\"b\" 1\n", "x 1x\n", "x\n", "9x 1\n", "x{a=\"}\"\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = ev_metrics_parse(bad[i], strlen(bad[i]), "m", &m, err, sizeof err);
        CHECKF(rc == -1 && strstr(err, "m: line 1"), "case %zu: rc %d err '%s'", i, rc, err);
    }
}

static const char TRACE[] =
    "{\"traceEvents\":["
    "{\"ph\":\"M\",\"pid\":1,\"tid\":10,\"name\":\"thread_name\",\"args\":{\"name\":\"http-3\"}},"
    "{\"ph\":\"M\",\"pid\":1,\"tid\":11,\"name\":\"thread_name\",\"args\":{\"name\":\"tokenizer-1\"}},"
    "{\"ph\":\"M\",\"pid\":1,\"tid\":12,\"name\":\"thread_name\",\"args\":{\"name\":\"scheduler\"}},"
    "{\"ph\":\"b\",\"cat\":\"request\",\"id\":5,\"pid\":1,\"tid\":10,\"name\":\"request\",\"ts\":1000},"
    "{\"ph\":\"X\",\"pid\":1,\"tid\":10,\"cat\":\"wait\",\"name\":\"wait global\",\"ts\":1001,\"dur\":2000,\"args\":{\"on\":\"global\"}},"
    "{\"ph\":\"X\",\"pid\":1,\"tid\":10,\"name\":\"submit\",\"ts\":3100,\"dur\":10,\"args\":{\"request\":5}},"
    "{\"ph\":\"X\",\"pid\":1,\"tid\":11,\"name\":\"tokenize\",\"ts\":3500,\"dur\":500,\"args\":{\"request\":5,\"tokens\":9}},"
    "{\"ph\":\"X\",\"pid\":1,\"tid\":11,\"cat\":\"wait\",\"name\":\"wait tokenize\",\"ts\":4000,\"dur\":800,\"args\":{\"on\":\"tokenize\"}},"
    "{\"ph\":\"X\",\"pid\":1,\"tid\":12,\"name\":\"step\",\"ts\":4100,\"dur\":900,\"args\":{\"sequences\":1}},"
    "{\"ph\":\"X\",\"pid\":1,\"tid\":12,\"name\":\"sample\",\"ts\":4900,\"dur\":100,\"args\":{\"tokens\":4}},"
    "{\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":12,\"name\":\"token\",\"ts\":5000,\"args\":{\"request\":5,\"index\":0,\"token\":3,\"gap_us\":900}},"
    "{\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":12,\"name\":\"token\",\"ts\":6000,\"args\":{\"request\":5,\"index\":1,\"token\":4,\"gap_us\":1000}},"
    "{\"ph\":\"C\",\"pid\":1,\"tid\":12,\"name\":\"queue.tokenize\",\"ts\":4100,\"args\":{\"value\":3}},"
    "{\"ph\":\"C\",\"pid\":1,\"tid\":12,\"name\":\"batch.tokens\",\"ts\":4100,\"args\":{\"value\":1}},"
    "{\"ph\":\"e\",\"cat\":\"request\",\"id\":5,\"pid\":1,\"tid\":10,\"name\":\"request\",\"ts\":6500},"
    "{\"ph\":\"b\",\"cat\":\"request\",\"id\":6,\"pid\":1,\"tid\":10,\"name\":\"request\",\"ts\":7000}"
    "]}";

static void test_trace(void) {
    ev_trace t;
    char err[256] = "";
    REQUIRE(ev_trace_parse(TRACE, sizeof TRACE - 1, "trace", &t, err, sizeof err) == 0);
    CHECK(t.n_req == 1 && t.tasks_begun == 2);   // request 6 never ended: not whole
    const ev_request *r = &t.req[0];
    CHECK(r->id == 5 && r->t_begin == 1000 && r->t_end == 6500 && r->t_submit == 3100);
    CHECK(r->t_tok0 == 3500 && r->t_tok1 == 4000 && r->t_first == 5000 && r->t_last == 6000 && r->tokens == 2);
    CHECK(r->lock_wait_us == 2000 && r->tid == 10);
    CHECK(t.n_gaps == 1 && t.gaps_us[0] == 1000);
    CHECK(t.steps == 1 && t.step_us == 900);
    CHECK(t.n_sample == 1 && t.sample_us[0] == 25);
    CHECK(t.q_tokenize.max == 3 && t.batch_tokens.n == 1);
    CHECK(t.t0 == 1000 && t.t1 == 7000);
    bool saw_global = false, saw_tok = false;
    for (size_t i = 0; i < t.n_waits; i++) {
        if (!strcmp(t.waits[i].on, "global")) saw_global = !strcmp(t.waits[i].role, "http") && t.waits[i].total_us == 2000;
        if (!strcmp(t.waits[i].on, "tokenize")) saw_tok = !strcmp(t.waits[i].role, "tokenizer") && t.waits[i].count == 1;
    }
    CHECK(saw_global && saw_tok);
    bool busy = false;
    for (size_t i = 0; i < t.n_threads; i++)
        if (!strcmp(t.threads[i].name, "tokenizer-1")) busy = t.threads[i].busy_us[EV_B_TOKENIZE] == 500 && !strcmp(t.threads[i].role, "tokenizer");
    CHECK(busy);
    ev_trace_free(&t);
}

static void test_trace_bad(void) {
    static const char *bad[] = {
        "", "{", "[1,2", "{\"traceEvents\":3}", "\"x\"", "{\"other\":[]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ev_trace t;
        char err[256] = "";
        int rc = ev_trace_parse(bad[i], strlen(bad[i]), "trace", &t, err, sizeof err);
        CHECKF(rc == -1 && !strncmp(err, "trace:", 6), "case %zu: rc %d err '%s'", i, rc, err);
    }
    // Odd but well-formed events are skipped, not trusted.
    static const char odd[] =
        "[{\"ph\":\"X\",\"name\":\"tokenize\",\"ts\":1e300,\"dur\":-5,\"tid\":1e30,\"args\":{\"request\":-1}},"
        "{\"ph\":\"b\",\"name\":\"request\",\"id\":1e40,\"ts\":1},{\"ph\":\"i\",\"name\":\"token\",\"ts\":2,"
        "\"args\":{\"request\":\"x\",\"index\":5,\"gap_us\":1e99}},{\"ph\":7},{\"name\":\"x\"},3,null]";
    ev_trace t;
    char err[256];
    CHECK(ev_trace_parse(odd, sizeof odd - 1, "odd", &t, err, sizeof err) == 0 && t.n_req == 0 && t.n_gaps == 0);
    ev_trace_free(&t);
}

static void test_pct(void) {
    double v[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    CHECK(ev_pct(v, 10, 50) == 5 && ev_pct(v, 10, 99) == 10 && ev_pct(v, 10, 0) == 1 && ev_pct(v, 0, 50) == 0);
}

int main(void) {
    RUN(test_threads_good);
    RUN(test_threads_bad);
    RUN(test_metrics);
    RUN(test_trace);
    RUN(test_trace_bad);
    RUN(test_pct);
    return harness_done();
}
