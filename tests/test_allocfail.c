// test_allocfail.c — allocation-failure injection sweeps. For N = 1, 2, …
// until N passes the last allocation, the Nth allocation of an operation
// fails (prof_heap_fail_nth): model load and context creation must return a
// clear error, a request must end with a 500 or 503 and a message, the next
// request must give the right greedy text, and nothing may leak (the
// interposer's net block count, open descriptors, engine slots).
// The injection lives in the heap interposer, which sanitizer builds leave
// out: there each sweep says it skipped.
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/time.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "model/gguf.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "prof/pprof.h"
#include "server/engine.h"
#include "server/http.h"
#include "server/metrics.h"

#define MAX_N 100000   // a sweep that gets here has lost its end

static bool available(void) {
    if (prof_heap_available()) return true;
    fprintf(stderr, "  skipped: the heap interposer (and its failure injection) is compiled out of this build\n");
    return false;
}

static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

// Disarms and checks the window freed what it allocated.
static bool disarm_no_leak(int64_t n, const char *what) {
    int64_t blocks, bytes;
    bool ok = prof_heap_fail_net(&blocks, &bytes);
    prof_heap_fail_disarm();
    CHECKF(ok, "%s: more live blocks than the leak check can follow", what);
    CHECKF(blocks == 0 && bytes == 0, "%s, allocation %lld failed: %lld blocks (%lld bytes) left allocated", what,
           (long long)n, (long long)blocks, (long long)bytes);
    return blocks == 0 && bytes == 0;
}

static void test_hook(void) {
    if (!available()) return;
    void *p[5];
    REQUIRE(prof_heap_fail_nth(3, PROF_FAIL_THIS_THREAD));
    for (int i = 0; i < 5; i++) { errno = 0; p[i] = malloc(16); if (i == 2) CHECK(errno == ENOMEM); }
    CHECK(p[0] && p[1] && !p[2] && p[3] && p[4]);
    CHECK(prof_heap_fail_fired());
    int64_t blocks, bytes;
    CHECK(prof_heap_fail_net(&blocks, &bytes));
    CHECK(blocks == 4 && bytes >= 4 * 16);
    for (int i = 0; i < 5; i++) free(p[i]);
    prof_heap_fail_net(&blocks, &bytes);
    CHECK(blocks == 0 && bytes == 0);
    CHECK(prof_heap_fail_disarm() == 5);

    // Every entry point fails as glibc does.
    char *old = malloc(8);
    REQUIRE(old);
    prof_heap_fail_nth(1, PROF_FAIL_THIS_THREAD);
    void *grown = realloc(old, 64);
    CHECK(grown == NULL);   // old stays valid
    if (grown) old = grown;
    prof_heap_fail_nth(1, PROF_FAIL_THIS_THREAD);
    CHECK(calloc(4, 4) == NULL && errno == ENOMEM);
    prof_heap_fail_nth(1, PROF_FAIL_THIS_THREAD);
    void *a = (void *)1;
    CHECK(posix_memalign(&a, 64, 64) == ENOMEM && a == (void *)1);
    prof_heap_fail_nth(1, PROF_FAIL_THIS_THREAD);
    CHECK(aligned_alloc(64, 64) == NULL && errno == ENOMEM);
    prof_heap_fail_nth(1, PROF_FAIL_THIS_THREAD);
    char *d = strdup("libc's own callers see it too");
    CHECK(d == NULL);
    prof_heap_fail_disarm();
    free(d);
    old[7] = 1;
    free(old);

    // Scope: another thread's allocations are not counted for this one.
    prof_heap_fail_nth(1, PROF_FAIL_OTHER_THREADS);
    void *mine = malloc(32);
    CHECK(mine != NULL && !prof_heap_fail_fired());
    free(mine);
    CHECK(prof_heap_fail_disarm() == 0);
}

// Model load (GGUF parse, tokenizer, weights) and context creation on the
// real stories260K file: every failure is a clear error and frees all.
static void test_load_sweep(void) {
    if (!available()) return;
    const char *path = harness_model("stories260K.gguf");
    int fds = open_fds();
    int64_t n, failed = 0;
    for (n = 1; n < MAX_N; n++) {
        char err[256] = "";
        prof_heap_fail_nth(n, PROF_FAIL_THIS_THREAD);
        llama_model *m = llama_load(path, err, sizeof err);
        bool fired = prof_heap_fail_fired();
        if (fired && !m) {
            failed++;
            CHECKF(err[0] && !strchr(err, '\n'), "allocation %lld: error '%s'", (long long)n, err);
        }
        llama_free(m);
        if (!disarm_no_leak(n, "llama_load")) break;
        if (!fired) { CHECK(m != NULL); break; }
    }
    CHECK(open_fds() == fds);
    CHECK(failed > 50);
    fprintf(stderr, "  llama_load: %lld allocations swept, %lld refused cleanly\n", (long long)n - 1, (long long)failed);

    char err[256];
    llama_model *m = llama_load(path, err, sizeof err);
    REQUIRE(m);
    // Context creation starts compute threads. glibc keeps the stacks (and
    // TLS vectors) of joined threads for reuse: one creation first fills
    // that cache, so the sweep sees the same allocations each time.
    llama_ctx_params cp = {.n_ctx = 64, .n_seq = 2, .n_batch = 16, .n_threads = 2};
    llama_ctx_free(llama_ctx_new(m, &cp, err, sizeof err));
    for (n = 1; n < MAX_N; n++) {
        err[0] = 0;
        prof_heap_fail_nth(n, PROF_FAIL_ALL_THREADS);
        llama_ctx *c = llama_ctx_new(m, &cp, err, sizeof err);
        if (!c) CHECKF(err[0], "allocation %lld: no error", (long long)n);
        llama_ctx_free(c);   // joins the threads: the failure may have been in one of them
        bool fired = prof_heap_fail_fired();
        if (!disarm_no_leak(n, "llama_ctx_new")) break;
        if (!fired) { CHECK(c != NULL); break; }
    }
    fprintf(stderr, "  llama_ctx_new: %lld allocations swept\n", (long long)n - 1);
    llama_free(m);
    CHECK(open_fds() == fds);
}

// ---- the request path -----------------------------------------------------------

static const eng_config ECFG = {.n_threads = 1, .parallel = 2, .n_ctx = 128, .max_queue = 8, .tok_threads = 1,
                                .n_batch = 32, .prefill_chunk = 32};
#define PROMPT "Once upon a time"
#define GEN 8

// One greedy request through the engine; returns its status (0: no
// request could be made) and copies its text.
static int engine_request(srv_engine *e, char *out, size_t outlen) {
    out[0] = 0;
    srv_req *r = req_new();
    if (!r) return 0;
    r->prompt = strdup(PROMPT);
    if (!r->prompt) { req_unref(r); return 0; }
    r->prompt_len = strlen(PROMPT);
    r->max_tokens = GEN;
    r->sp.temperature = 0;
    if (eng_submit(e, r) != ENG_OK) { req_unref(r); return 503; }
    prof_mutex_lock(&r->mu);
    while (!r->done) prof_cond_wait(&r->cv, &r->mu);
    int status = r->status;
    snprintf(out, outlen, "%s", status == 200 ? (r->out ? r->out : "") : r->err);
    prof_mutex_unlock(&r->mu);
    req_unref(r);
    return status;
}

// The engine lets go of a request just after waking its waiter.
static bool engine_idle(srv_engine *e) {
    for (int i = 0; i < 10000 && eng_in_flight(e) > 0; i++) sleep_ms(1);
    return eng_in_flight(e) == 0;
}

static void test_engine_sweep(void) {
    if (!available()) return;
    char err[256];
    llama_model *m = llama_load(harness_model("stories260K.gguf"), err, sizeof err);
    REQUIRE(m);
    met_init();
    int fds = open_fds();
    // Start-up and shutdown: threads, queues, the context (after one start
    // that fills glibc's cache of thread stacks, as above).
    srv_engine *e = eng_start(&ECFG, m, err, sizeof err);
    REQUIRE(e);
    eng_stop(e, 0);
    eng_free(e);
    int64_t n;
    for (n = 1; n < MAX_N; n++) {
        err[0] = 0;
        prof_heap_fail_nth(n, PROF_FAIL_ALL_THREADS);
        e = eng_start(&ECFG, m, err, sizeof err);
        bool started = e != NULL;
        if (e) { eng_stop(e, 0); eng_free(e); }
        else CHECKF(err[0], "allocation %lld: no error", (long long)n);
        bool fired = prof_heap_fail_fired();
        if (!disarm_no_leak(n, "eng_start")) break;
        if (!fired) { CHECK(started); break; }
    }
    fprintf(stderr, "  eng_start: %lld allocations swept\n", (long long)n - 1);

    e = eng_start(&ECFG, m, err, sizeof err);
    REQUIRE(e);
    char want[4096], got[4096];
    REQUIRE(engine_request(e, want, sizeof want) == 200 && want[0]);
    REQUIRE(engine_idle(e));
    int64_t failed = 0;
    for (n = 1; n < MAX_N; n++) {
        prof_heap_fail_nth(n, PROF_FAIL_ALL_THREADS);
        int st = engine_request(e, got, sizeof got);
        CHECK(engine_idle(e));
        bool fired = prof_heap_fail_fired();
        if (st == 200) CHECKF(!strcmp(got, want), "allocation %lld: 200 with '%s'", (long long)n, got);
        else if (st) { failed++; CHECKF((st == 500 || st == 503) && got[0], "allocation %lld: %d '%s'", (long long)n, st, got); }
        if (!disarm_no_leak(n, "request")) break;
        // The engine keeps serving, with the same answer.
        st = engine_request(e, got, sizeof got);
        CHECKF(st == 200 && !strcmp(got, want), "after allocation %lld failed: %d '%s'", (long long)n, st, got);
        CHECK(engine_idle(e));
        if (harness_cur_failed || !fired) break;
    }
    fprintf(stderr, "  engine request: %lld allocations swept, %lld answered 500/503\n", (long long)n - 1, (long long)failed);
    eng_stop(e, 0);
    eng_free(e);
    llama_free(m);
    CHECK(open_fds() == fds);
}

// ---- over HTTP -------------------------------------------------------------------

// One HTTP exchange on a fresh loopback connection (Connection: close).
// Returns the status (0: the server closed without answering; -1: the
// test could not connect) and the body.
static int http_exchange(uint16_t port, const char *req, char *body, size_t bodylen) {
    body[0] = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {60, 0};   // a hang fails the test instead of stalling it
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return -1; }
    size_t len = strlen(req);
    for (size_t off = 0; off < len;) {
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    static char buf[1 << 16];
    size_t got = 0;
    for (ssize_t r; got < sizeof buf - 1 && (r = recv(fd, buf + got, sizeof buf - 1 - got, 0)) > 0;) got += (size_t)r;
    buf[got] = 0;
    close(fd);
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) return 0;
    const char *b = strstr(buf, "\r\n\r\n");
    snprintf(body, bodylen, "%s", b ? b + 4 : "");
    return status;
}

// The part of an answer that must not change: the generated text of an
// /infer or /v1/completions answer, the whole body otherwise.
static void answer_of(const char *body, char *out, size_t outlen) {
    out[0] = 0;
    json_t *j = json_loads(body, 0, NULL);
    const char *t = json_string_value(json_object_get(j, "text"));
    if (!t) t = json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
    snprintf(out, outlen, "%s", t ? t : body);
    json_decref(j);
}

#define POST(path, json) "POST " path " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n" \
                         "Content-Length: %zu\r\n\r\n" json, json
static const struct http_case {
    const char *name, *fmt, *body;
} HTTP_CASES[] = {
    {"POST /infer", POST("/infer", "{\"prompt\":\"Once upon a time\",\"max_tokens\":8,\"temperature\":0}")},
    {"GET /infer", "GET /infer?prompt=Once+upon+a+time&max_tokens=8&temperature=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n%s", ""},
    {"POST /v1/completions", POST("/v1/completions", "{\"prompt\":\"Once upon a time\",\"max_tokens\":8,\"temperature\":0,\"stop\":[\"zzz\"]}")},
    {"POST /tokenize", POST("/tokenize", "{\"content\":\"Once upon a time\",\"with_pieces\":true}")},
};

static int http_case(uint16_t port, const struct http_case *hc, char *body, size_t bodylen) {
    char req[1024];
    if (strstr(hc->fmt, "%zu")) snprintf(req, sizeof req, hc->fmt, strlen(hc->body), hc->body);
    else snprintf(req, sizeof req, hc->fmt, hc->body);
    return http_exchange(port, req, body, bodylen);
}

// An error answer is {"error":{"message":...}}.
static bool json_error_body(const char *body) {
    json_t *j = json_loads(body, 0, NULL);
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    bool ok = m && m[0];
    json_decref(j);
    return ok;
}

// The server lets go of a connection (joins its thread, frees its state)
// shortly after the client saw it close, and MHD frees the connection a
// little after it stops counting it: wait for both (at most 10 s; a real
// leak then fails the check after the wait).
static void wait_settled(void) {
    for (int i = 0; i < 10000; i++) {
        int64_t blocks, bytes;
        prof_heap_fail_net(&blocks, &bytes);
        if (http_connections() == 0 && blocks == 0 && bytes == 0) return;
        sleep_ms(1);
    }
}

// The real server on a free loopback port, over the stories260K model.
static bool serve(llama_model **m, srv_engine **e, uint16_t *port) {
    char err[256];
    *m = llama_load(harness_model("stories260K.gguf"), err, sizeof err);
    *e = *m ? eng_start(&ECFG, *m, err, sizeof err) : NULL;
    http_config hc = {.host = "127.0.0.1", .port = 0, .max_conns = 16, .read_timeout_s = 30, .max_body = 1 << 20};
    if (!*e || !http_start(&hc, err, sizeof err)) {
        fprintf(stderr, "  cannot serve: %s\n", err);
        if (*e) { eng_stop(*e, 0); eng_free(*e); }
        llama_free(*m);
        return false;
    }
    http_set_ready(*m, *e, "stories260K.gguf");
    *port = http_port();
    return true;
}

static void unserve(llama_model *m, srv_engine *e) {
    eng_stop(e, 0);
    http_stop();
    eng_free(e);
    llama_free(m);
}

static void test_http_sweep(void) {
    if (!available()) return;
    llama_model *m;
    srv_engine *e;
    uint16_t port;
    REQUIRE(serve(&m, &e, &port));
    static char body[1 << 16];
    static char want[1 << 16], got[1 << 16];
    for (size_t k = 0; k < sizeof HTTP_CASES / sizeof HTTP_CASES[0] && !harness_cur_failed; k++) {
        const struct http_case *c = &HTTP_CASES[k];
        // Twice before the sweep: the first request fills lazily made state
        // (glibc's thread stack cache, the metrics' rows).
        for (int i = 0; i < 2; i++) REQUIRE(http_case(port, c, body, sizeof body) == 200);
        answer_of(body, want, sizeof want);
        REQUIRE(want[0]);
        wait_settled();
        int fds = open_fds();
        int64_t n, failed = 0, closed = 0;
        for (n = 1; n < MAX_N; n++) {
            prof_heap_fail_nth(n, PROF_FAIL_OTHER_THREADS);   // the server's threads, not this client
            int st = http_case(port, c, body, sizeof body);
            CHECK(engine_idle(e));
            wait_settled();
            bool fired = prof_heap_fail_fired();
            if (st == 200) {
                answer_of(body, got, sizeof got);
                CHECKF(!strcmp(got, want), "%s, allocation %lld: 200 with '%s'", c->name, (long long)n, body);
            } else if (st == 0) {
                closed++;
            } else {
                failed++;
                CHECKF((st == 500 || st == 503) && json_error_body(body), "%s, allocation %lld: %d '%s'", c->name,
                       (long long)n, st, body);
            }
            if (!disarm_no_leak(n, c->name)) break;
            st = http_case(port, c, body, sizeof body);
            answer_of(body, got, sizeof got);
            CHECKF(st == 200 && !strcmp(got, want), "%s, after allocation %lld failed: %d '%s'", c->name, (long long)n,
                   st, body);
            wait_settled();
            if (harness_cur_failed || !fired) break;
        }
        CHECK(open_fds() == fds);
        fprintf(stderr, "  HTTP %s: %lld allocations swept, %lld answered 500/503, %lld closed unanswered\n", c->name,
                (long long)n - 1, (long long)failed, (long long)closed);
    }
    http_quiesce();
    unserve(m, e);
}

// A streamed chat completion over HTTP/1.0 (no chunked framing to undo).
static const char *CHAT_STREAM_BODY =
    "{\"messages\":[{\"role\":\"user\",\"content\":\"Once upon a time\"}],\"max_tokens\":4,\"temperature\":0,\"stream\":true}";

static int chat_stream(uint16_t port, char *body, size_t bodylen) {
    char req[512];
    snprintf(req, sizeof req, "POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(CHAT_STREAM_BODY), CHAT_STREAM_BODY);
    return http_exchange(port, req, body, bodylen);
}

// Reads an event stream: the text of its deltas, whether it ended with
// [DONE], whether it carried an error event; false when an event is not JSON.
static bool sse_parse(const char *body, char *text, size_t textlen, bool *done, bool *error) {
    text[0] = 0;
    *done = *error = false;
    size_t tl = 0;
    for (const char *p = body; (p = strstr(p, "data: ")); ) {
        p += 6;
        const char *end = strstr(p, "\n\n");
        if (!end) return false;   // a cut event
        if (!strncmp(p, "[DONE]", 6)) { *done = true; break; }
        json_t *j = json_loadb(p, (size_t)(end - p), 0, NULL);
        if (!j) return false;
        if (json_object_get(j, "error")) *error = true;
        const char *c = json_string_value(json_object_get(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "delta"), "content"));
        if (c) tl += (size_t)snprintf(text + tl, tl < textlen ? textlen - tl : 0, "%s", c);
        json_decref(j);
        p = end + 2;
    }
    return tl < textlen;
}

static void test_stream_sweep(void) {
    if (!available()) return;
    llama_model *m;
    srv_engine *e;
    uint16_t port;
    REQUIRE(serve(&m, &e, &port));
    static char body[1 << 16];
    char want[4096], got[4096];
    bool done, error;
    for (int i = 0; i < 2; i++) REQUIRE(chat_stream(port, body, sizeof body) == 200);
    REQUIRE(sse_parse(body, want, sizeof want, &done, &error) && done && !error && want[0]);
    wait_settled();
    int64_t n, failed = 0, closed = 0, cut = 0, in_stream = 0;
    for (n = 1; n < MAX_N; n++) {
        prof_heap_fail_nth(n, PROF_FAIL_OTHER_THREADS);
        int st = chat_stream(port, body, sizeof body);
        CHECK(engine_idle(e));
        wait_settled();
        bool fired = prof_heap_fail_fired();
        if (st == 200) {
            bool ok = sse_parse(body, got, sizeof got, &done, &error);
            if (!ok || !done) cut++;   // cut short: the client knows it is incomplete
            else if (error) in_stream++;   // the failure reported as an error event
            else CHECKF(!strcmp(got, want), "allocation %lld: a whole stream with '%s'", (long long)n, got);
        } else if (st == 0) {
            closed++;
        } else {
            failed++;
            CHECKF((st == 500 || st == 503) && json_error_body(body), "allocation %lld: %d '%s'", (long long)n, st, body);
        }
        if (!disarm_no_leak(n, "streamed request")) break;
        st = chat_stream(port, body, sizeof body);
        CHECKF(st == 200 && sse_parse(body, got, sizeof got, &done, &error) && done && !error && !strcmp(got, want),
               "after allocation %lld failed: %d '%s'", (long long)n, st, body);
        wait_settled();
        if (harness_cur_failed || !fired) break;
    }
    fprintf(stderr, "  HTTP chat stream: %lld allocations swept: %lld answered 500/503, %lld error events, %lld cut, "
            "%lld closed unanswered\n", (long long)n - 1, (long long)failed, (long long)in_stream, (long long)cut,
            (long long)closed);
    http_quiesce();
    unserve(m, e);
}

int main(void) {
    // The block and mutex profilers keep a bucket per new stack for good:
    // not a leak, but it would read as one.
    prof_block_set_rate(0);
    prof_mutex_set_fraction(0);
    RUN(test_hook);
    RUN(test_load_sweep);
    RUN(test_engine_sweep);
    RUN(test_http_sweep);
    RUN(test_stream_sweep);
    return harness_done();
}
