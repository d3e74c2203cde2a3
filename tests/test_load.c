// test_load.c — unit tests of the load generator's parsers and histogram:
// the HDR histogram's bucket layout, error bound and percentiles; the HTTP/1.1
// response parser on good responses fed whole and byte by byte, and on a
// table of hand-made bad ones; the SSE parser and the LLM event classifier.
#include <stdint.h>
#include "harness.h"
#include "util/hdr.h"
#include "util/http_resp.h"
#include "util/sse.h"

// --- HDR histogram ----------------------------------------------------------

static void test_hdr_buckets_cover_and_bound(void) {
    uint64_t prev_hi = 0;
    uint32_t last = hdr_bucket_of(HDR_MAX);
    for (uint32_t b = 0; b <= last; b++) {
        uint64_t lo, hi;
        hdr_bucket_range(b, &lo, &hi);
        if (b) CHECKF(lo == prev_hi + 1, "bucket %u starts at %llu, previous ended at %llu", b, (unsigned long long)lo, (unsigned long long)prev_hi);
        CHECK(hdr_bucket_of(lo) == b && hdr_bucket_of(hi) == b);
        CHECKF((double)(hi - lo) <= (double)lo / 1024.0, "bucket %u [%llu, %llu] too wide", b, (unsigned long long)lo, (unsigned long long)hi);
        prev_hi = hi;
        if (harness_cur_failed) return;
    }
    CHECK(prev_hi == HDR_MAX);
    for (uint64_t v = 0; v < 2048; v++) CHECK(hdr_bucket_of(v) == v);
}

static void test_hdr_percentiles(void) {
    hdr_hist *h = hdr_new();
    REQUIRE(h);
    CHECK(hdr_percentile(h, 50) == 0 && hdr_count(h) == 0 && hdr_mean(h) == 0);
    // 1..100000 µs in ns: the p-th percentile by nearest rank is p * 1000 µs.
    for (uint64_t i = 1; i <= 100000; i++) hdr_add(h, i * 1000);
    CHECK(hdr_count(h) == 100000);
    CHECK(hdr_min(h) == 1000 && hdr_max(h) == 100000000);
    CHECK(fabs(hdr_mean(h) - 50000.5 * 1000) < 1e-3);
    CHECK(fabs(hdr_stddev(h) / 1000 - 28867.5) < 1.0);
    double ps[] = {10, 25, 50, 75, 90, 99, 99.9};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        double want = ps[i] * 1000 * 1000, got = (double)hdr_percentile(h, ps[i]);
        CHECKF(fabs(got - want) / want <= 1.0 / 1024, "p%g = %.0f, want %.0f", ps[i], got, want);
    }
    CHECK(hdr_percentile(h, 100) == 100000000 && hdr_percentile(h, 0) == 1000);
    CHECK(hdr_count_le(h, 999) == 0 && hdr_count_le(h, 1000) == 1 && hdr_count_le(h, 100000000) == 100000);
    uint64_t half = hdr_count_le(h, 50000000);
    CHECKF(half >= 49950 && half <= 50050, "count_le(50 ms) = %llu", (unsigned long long)half);
    hdr_free(h);
}

static void test_hdr_small_exact_clamp_merge(void) {
    hdr_hist *a = hdr_new(), *b = hdr_new(), *c = hdr_new();
    REQUIRE(a && b && c);
    uint64_t vals[] = {5, 7, 7, 1000, 2047};
    for (size_t i = 0; i < 5; i++) hdr_add(a, vals[i]);
    CHECK(hdr_percentile(a, 20) == 5 && hdr_percentile(a, 60) == 7 && hdr_percentile(a, 80) == 1000 && hdr_percentile(a, 81) == 2047);
    hdr_add(b, UINT64_MAX);
    CHECK(hdr_max(b) == HDR_MAX && hdr_clamped(b) == 1);
    hdr_add_n(c, 3000000, 4);
    CHECK(hdr_count(c) == 4 && fabs(hdr_stddev(c)) < 1e-6);
    hdr_merge(a, b);
    hdr_merge(a, c);
    CHECK(hdr_count(a) == 10 && hdr_min(a) == 5 && hdr_max(a) == HDR_MAX && hdr_clamped(a) == 1);
    double mean = (5 + 7 + 7 + 1000 + 2047 + (double)HDR_MAX + 4 * 3e6) / 10;
    CHECK(fabs(hdr_mean(a) - mean) / mean < 1e-12);
    hdr_reset(a);
    CHECK(hdr_count(a) == 0 && hdr_percentile(a, 99) == 0);
    hdr_free(a); hdr_free(b); hdr_free(c);
}

// --- HTTP responses ---------------------------------------------------------

typedef struct body_buf { char b[4096]; size_t n; } body_buf;
static bool collect(void *ud, const char *p, size_t n) {
    body_buf *bb = ud;
    if (bb->n + n > sizeof bb->b) return false;
    memcpy(bb->b + bb->n, p, n);
    bb->n += n;
    return true;
}

// Parses a whole response fed in pieces of `step` bytes (0 = at once).
// Returns bytes consumed, -1 on error; eof: signal the close after the bytes.
static ssize_t parse(http_resp *r, const char *s, size_t n, size_t step, bool head, bool eof, body_buf *bb) {
    http_resp_init(r, head);
    bb->n = 0;
    size_t at = 0;
    while (at < n && !http_resp_done(r)) {
        size_t k = step && n - at > step ? step : n - at;
        ssize_t used = http_resp_feed(r, s + at, k, collect, bb);
        if (used < 0) return -1;
        at += (size_t)used;
        if ((size_t)used < k) break;
    }
    if (eof && !http_resp_done(r) && !http_resp_eof(r)) return -1;
    return (ssize_t)at;
}

static void test_http_good_responses(void) {
    static const struct {
        const char *name, *resp, *body;
        int status;
        bool keep_alive, head, eof;
    } cases[] = {
        {"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello", "hello", 200, true, false, false},
        {"no reason phrase", "HTTP/1.1 204\r\n\r\n", "", 204, true, false, false},
        {"LF only", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "ok", 200, true, false, false},
        {"http/1.0 closes", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", 200, false, false, false},
        {"http/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok", "ok", 200, true, false, false},
        {"connection close", "HTTP/1.1 200 OK\r\nconnection: foo, Close\r\ncontent-length: 2\r\n\r\nok", "ok", 200, false, false, false},
        {"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nA;ext=1\r\n, world!!!\r\n0\r\nTrailer: x\r\n\r\n", "hello, world!!!", 200, true, false, false},
        {"chunked upper-case hex", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1F\r\n0123456789012345678901234567890\r\n0\r\n\r\n", "0123456789012345678901234567890", 200, true, false, false},
        {"until close", "HTTP/1.1 200 OK\r\n\r\nsome body", "some body", 200, false, false, true},
        {"interim 100", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx", "x", 201, true, false, false},
        {"HEAD has no body", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", "", 200, true, true, false},
        {"304 has no body", "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", "", 304, true, false, false},
        {"zero length", "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", "", 500, true, false, false},
        {"duplicate equal lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nz", "z", 200, true, false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].resp);
        for (size_t step = 0; step <= 3; step++) {
            http_resp r;
            body_buf bb;
            ssize_t used = parse(&r, cases[i].resp, n, step, cases[i].head, cases[i].eof, &bb);
            CHECKF(used == (ssize_t)n, "%s (step %zu): used %zd of %zu: %s", cases[i].name, step, used, n,
                   http_resp_error(&r) ? http_resp_error(&r) : "");
            CHECKF(http_resp_done(&r) && r.status == cases[i].status && r.keep_alive == cases[i].keep_alive,
                   "%s (step %zu): done %d status %d keep-alive %d", cases[i].name, step, http_resp_done(&r), r.status, r.keep_alive);
            CHECKF(bb.n == strlen(cases[i].body) && !memcmp(bb.b, cases[i].body, bb.n) && r.body_bytes == bb.n,
                   "%s (step %zu): body '%.*s'", cases[i].name, step, (int)bb.n, bb.b);
        }
    }
}

static void test_http_pipelined_and_reuse(void) {
    const char *two = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nonetHTTP/1.1 404 NF\r\nContent-Length: 3\r\n\r\ntwo";
    http_resp r;
    body_buf bb = {.n = 0};
    http_resp_init(&r, false);
    ssize_t used = http_resp_feed(&r, two, strlen(two), collect, &bb);
    CHECK(used == 41 && http_resp_done(&r) && r.status == 200 && bb.n == 3);
    // The parser stops at the end of a response: the leftover byte is not consumed.
    CHECK(two[used] == 't');
    http_resp_init(&r, false);
    bb.n = 0;
    used = http_resp_feed(&r, two + 42, strlen(two + 42), collect, &bb);
    CHECK(used == (ssize_t)strlen(two + 42) && r.status == 404 && bb.n == 3 && !memcmp(bb.b, "two", 3));
    // A body callback that refuses stops the parse with an error.
    http_resp_init(&r, false);
    CHECK(http_resp_feed(&r, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", 41, NULL, NULL) == 41 && http_resp_done(&r));
}

static void test_http_bad_responses(void) {
    static char longline[HTTP_RESP_LINE_MAX + 64], many[HTTP_RESP_HEADERS_MAX * 8 + 128], big[HTTP_RESP_HEAD_MAX + 8192];
    snprintf(longline, sizeof longline, "HTTP/1.1 200 OK\r\nX: %0*d\r\n\r\n", HTTP_RESP_LINE_MAX, 0);
    size_t k = (size_t)snprintf(many, sizeof many, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i <= HTTP_RESP_HEADERS_MAX; i++) k += (size_t)snprintf(many + k, sizeof many - k, "A: b\r\n");
    k = (size_t)snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\n");
    while (k + 4100 < sizeof big) k += (size_t)snprintf(big + k, sizeof big - k, "X: %04000d\r\n", 1);
    static const struct { const char *name, *resp; bool eof; } bad[] = {
        {"not http", "HTTP/2 200 OK\r\n\r\n", false},
        {"bad status digits", "HTTP/1.1 2x0 OK\r\n\r\n", false},
        {"status 099", "HTTP/1.1 099 OK\r\n\r\n", false},
        {"no space after status", "HTTP/1.1 200OK\r\n\r\n", false},
        {"garbage", "\x16\x03\x01\x02\x05\x01\x01\x01\xfc\x03\x03\r\n", false},
        {"header without colon", "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", false},
        {"space in header name", "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", false},
        {"obsolete folding", "HTTP/1.1 200 OK\r\nX: a\r\n  b\r\n\r\n", false},
        {"negative length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false},
        {"length with junk", "HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n", false},
        {"length too long", "HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n", false},
        {"conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", false},
        {"unsupported coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx", false},
        {"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false},
        {"empty chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", false},
        {"chunk size overflow", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n", false},
        {"chunk without CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY\r\n0\r\n\r\n", false},
        {"protocol switch", "HTTP/1.1 101 Switching Protocols\r\n\r\n", false},
        {"cut in the head", "HTTP/1.1 200 OK\r\nContent-Len", true},
        {"cut in the body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true},
        {"cut in a chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", true},
        {"no response at all", "", true},
        {"line too long", longline, false},
        {"too many headers", many, false},
        {"header block too large", big, false},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (size_t step = 0; step <= 1; step++) {
            http_resp r;
            body_buf bb;
            ssize_t used = parse(&r, bad[i].resp, strlen(bad[i].resp), step ? 7 : 0, false, bad[i].eof, &bb);
            CHECKF(used < 0 && http_resp_error(&r) && !http_resp_done(&r), "%s (step %zu) accepted", bad[i].name, step);
            const char *e = http_resp_error(&r);
            if (e) CHECKF(strlen(e) > 5 && !strchr(e, '\n'), "%s: message '%s'", bad[i].name, e);
        }
    }
}

// --- SSE --------------------------------------------------------------------

typedef struct events { char d[16][256]; int n; } events;
static bool on_ev(void *ud, const char *p, size_t n) {
    events *e = ud;
    if (e->n < 16) {
        snprintf(e->d[e->n], sizeof e->d[0], "%.*s", (int)n, p);
        CHECK(p[n] == 0);
    }
    e->n++;
    return true;
}

static void test_sse_parse_any_split(void) {
    const char *s = ": comment\r\nevent: message\r\ndata: {\"a\":1}\r\n\r\ndata:two\ndata: lines\n\nid: 7\rdata: cr\r\rdata:  sp\n\nretry: 10\n\ndata\n\ndata: [DONE]\n\ndata: tail";
    const char *want[] = {"{\"a\":1}", "two\nlines", "cr", " sp", "", "[DONE]", "tail"};
    size_t n = strlen(s);
    for (size_t cut = 0; cut <= n; cut++) {
        sse_parser p;
        events ev = {.n = 0};
        sse_init(&p, 0);
        CHECK(sse_feed(&p, s, cut, on_ev, &ev));
        CHECK(sse_feed(&p, s + cut, n - cut, on_ev, &ev));
        CHECK(sse_finish(&p, on_ev, &ev));
        CHECKF(ev.n == 7, "cut %zu: %d events", cut, ev.n);
        for (int i = 0; i < 7 && i < ev.n; i++) CHECKF(!strcmp(ev.d[i], want[i]), "cut %zu: event %d '%s'", cut, i, ev.d[i]);
        sse_free(&p);
        if (harness_cur_failed) return;
    }
    // Byte by byte.
    sse_parser p;
    events ev = {.n = 0};
    sse_init(&p, 0);
    for (size_t i = 0; i < n; i++) CHECK(sse_feed(&p, s + i, 1, on_ev, &ev));
    sse_finish(&p, on_ev, &ev);
    CHECK(ev.n == 7 && !strcmp(ev.d[1], "two\nlines") && !strcmp(ev.d[2], "cr"));
    sse_free(&p);
}

static void test_sse_bounds(void) {
    sse_parser p;
    events ev = {.n = 0};
    sse_init(&p, 64);
    char line[200];
    memset(line, 'x', sizeof line);
    memcpy(line, "data: ", 6);
    CHECK(sse_feed(&p, "data: small\n\n", 13, on_ev, &ev) && ev.n == 1);
    CHECK(!sse_feed(&p, line, sizeof line, on_ev, &ev) && p.err);      // a line over the cap
    CHECK(!sse_feed(&p, "data: more\n\n", 12, on_ev, &ev) && ev.n == 1); // stays stopped
    sse_reset(&p);
    // Many data lines that add up past the cap.
    bool ok = true;
    for (int i = 0; i < 20 && ok; i++) ok = sse_feed(&p, "data: 0123456789\n", 17, on_ev, &ev);
    CHECK(!ok && p.err && ev.n == 1);
    sse_reset(&p);
    CHECK(sse_feed(&p, "data: again\n\n", 13, on_ev, &ev) && ev.n == 2);
    sse_free(&p);
}

static void test_sse_llm_classify(void) {
    static const struct { const char *data; sse_llm_kind kind; int64_t usage; } cases[] = {
        {"[DONE]", SSE_LLM_DONE, -1},
        {"  [DONE]\n", SSE_LLM_DONE, -1},
        {"", SSE_LLM_OTHER, -1},
        {"{\"choices\":[{\"index\":0,\"text\":\" Once\"}]}", SSE_LLM_TOKEN, -1},
        {"{\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"stop\"}],\"usage\":{\"completion_tokens\":17}}", SSE_LLM_OTHER, 17},
        {"{\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}", SSE_LLM_OTHER, -1},
        {"{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"}}]}", SSE_LLM_TOKEN, -1},
        {"{\"choices\":[{\"delta\":{\"content\":\"\"}}]}", SSE_LLM_OTHER, -1},
        {"{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":8}}", SSE_LLM_OTHER, 8},
        {"{\"choices\":[{\"text\":\"x\"}],\"usage\":{\"completion_tokens\":-4}}", SSE_LLM_TOKEN, -1},
        {"{\"index\":0,\"token\":450,\"text\":\" The\"}", SSE_LLM_TOKEN, -1},
        {"{\"index\":3,\"token\":13,\"text\":\"\"}", SSE_LLM_TOKEN, -1},
        {"{\"done\":true,\"finish_reason\":\"length\",\"generated_tokens\":16}", SSE_LLM_OTHER, -1},
        {"{\"content\":\"llama.cpp style\",\"stop\":false}", SSE_LLM_TOKEN, -1},
        {"{\"error\":{\"message\":\"overloaded\"}}", SSE_LLM_ERROR, -1},
        {"{\"error\":null,\"text\":\"a\"}", SSE_LLM_TOKEN, -1},
        {"plain text token", SSE_LLM_TOKEN, -1},
        {"{not json", SSE_LLM_TOKEN, -1},
        {"[1,2]", SSE_LLM_TOKEN, -1},
        {"{\"choices\":\"nope\",\"text\":\"a\"}", SSE_LLM_TOKEN, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sse_llm_event e = sse_llm_classify(cases[i].data, strlen(cases[i].data));
        CHECKF(e.kind == cases[i].kind && e.completion_tokens == cases[i].usage, "'%s': kind %d usage %lld",
               cases[i].data, e.kind, (long long)e.completion_tokens);
    }
    // Deep nesting is refused by Jansson's depth limit, not by the stack.
    static char deep[40000];
    memset(deep, '[', sizeof deep - 1);
    deep[0] = '{';
    sse_llm_event e = sse_llm_classify(deep, sizeof deep - 1);
    CHECK(e.kind == SSE_LLM_TOKEN);
}

int main(void) {
    RUN(test_hdr_buckets_cover_and_bound);
    RUN(test_hdr_percentiles);
    RUN(test_hdr_small_exact_clamp_merge);
    RUN(test_http_good_responses);
    RUN(test_http_pipelined_and_reuse);
    RUN(test_http_bad_responses);
    RUN(test_sse_parse_any_split);
    RUN(test_sse_bounds);
    RUN(test_sse_llm_classify);
    return harness_done();
}
