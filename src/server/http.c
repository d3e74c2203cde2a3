// http.c — llm-server's HTTP surface on libmicrohttpd (see http.h).
//
// Each connection has its own thread (registered as "http-N"); a request's
// handler validates, submits to the engine and blocks until the answer is
// ready (or, for a stream, until each next token), polling its socket so a
// client that leaves cancels its sequence. Every error is a JSON body
// {"error":{"message","type","code"}} with its status.
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "debug.h"
#include "lab.h"
#include "metrics.h"
#include "prof/pmu.h"
#include "prof/region.h"
#include "prof/thread.h"
#include "prof/trace.h"
#include "util/util.h"

#define WAKE_NS (100 * 1000 * 1000ull)   // how often a waiting handler checks its socket
#define DEBUG_MAX_ACTIVE 4                // concurrent /debug/* requests (each may block for its capture)

typedef enum route {
    R_NOT_FOUND, R_HEALTH, R_METRICS, R_MODELS, R_TOKENIZE, R_INFER, R_COMPLETIONS, R_CHAT, R_DEBUG,
} route;

static const char *route_names[] = {
    [R_NOT_FOUND] = "other", [R_HEALTH] = "/health", [R_METRICS] = "/metrics", [R_MODELS] = "/v1/models",
    [R_TOKENIZE] = "/tokenize", [R_INFER] = "/infer", [R_COMPLETIONS] = "/v1/completions",
    [R_CHAT] = "/v1/chat/completions", [R_DEBUG] = "/debug",
};

static struct {
    struct MHD_Daemon *d;
    struct MHD_Daemon *dbg;        // --debug-addr: a second listener that serves /debug/* only
    http_config cfg;
    char api_key[256];
    char debug_token[256];
    _Atomic int debug_active;      // debug requests running now
    _Atomic(const llama_model *) model;
    srv_engine *eng;
    api_limits lim;
    char model_id[256];
    time_t created;
    _Atomic int n_threads;
    pthread_key_t thread_key;
} S;

typedef struct conn_ctx {
    route rt;
    bool responded;          // a response was queued on an earlier call
    char *body;
    size_t len, cap;
    bool too_large;
    bool oom;                // the body could not be stored
} conn_ctx;

// ---- threads -----------------------------------------------------------------

static void thread_gone(void *p) { (void)p; prof_thread_unregister(); }

// Connection threads register on their first request and unregister when
// MHD reports their connection closed, which it does on the connection's own
// thread before the thread function returns (so no profiler signal can land
// in the thread's teardown); the key's destructor is the fallback.
static void conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe) {
    (void)cls; (void)c; (void)socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED && pthread_getspecific(S.thread_key)) {
        pthread_setspecific(S.thread_key, NULL);
        prof_thread_unregister();
    }
}

static void ensure_registered(void) {
    if (prof_thread_self()) return;
    char name[16];
    snprintf(name, sizeof name, "http-%d", atomic_fetch_add(&S.n_threads, 1) + 1);
    if (prof_thread_register(name, "http")) pthread_setspecific(S.thread_key, (void *)1);
}

// ---- responses ---------------------------------------------------------------

static enum MHD_Result send_body(struct MHD_Connection *c, conn_ctx *cc, int status, const char *ctype, char *body,
                                 size_t len, const char *retry_after) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) { free(body); return MHD_NO; }
    MHD_add_response_header(resp, "Content-Type", ctype);
    if (retry_after) MHD_add_response_header(resp, "Retry-After", retry_after);
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    met_request(route_names[cc->rt], status);
    cc->responded = true;
    return rc;
}

// The answer when memory ran out, made without allocating: only MHD's own
// response object is needed. cc may be NULL (its allocation failed).
static const char oom_body[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"code\":500}}";

static enum MHD_Result send_oom(struct MHD_Connection *c, conn_ctx *cc) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(sizeof oom_body - 1, (void *)oom_body, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    enum MHD_Result rc = MHD_queue_response(c, 500, resp);
    MHD_destroy_response(resp);
    met_request(route_names[cc ? cc->rt : R_NOT_FOUND], 500);
    if (cc) cc->responded = true;
    return rc;
}

static enum MHD_Result send_json(struct MHD_Connection *c, conn_ctx *cc, int status, json_t *j) {
    char *s = api_json_dumps(j);
    json_decref(j);
    if (!s) return send_oom(c, cc);
    return send_body(c, cc, status, "application/json", s, strlen(s), NULL);
}

static enum MHD_Result send_error(struct MHD_Connection *c, conn_ctx *cc, int status, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *s = api_error_body(status, msg);
    if (!s) return send_oom(c, cc);
    return send_body(c, cc, status, "application/json", s, strlen(s), status == 503 ? "1" : NULL);
}

// ---- helpers -----------------------------------------------------------------

static int conn_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

// The peer closed its end (or the socket failed).
static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static bool is_loopback(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return false;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

// Constant-time comparison of a presented secret with the expected one.
static bool secret_eq(const char *got, const char *want) {
    size_t a = strlen(got), b = strlen(want);
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned char)(got[i] ^ want[i]);
    return diff == 0;
}

static bool debug_token_ok(struct MHD_Connection *c) {
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Debug-Token");
    return S.debug_token[0] && h && secret_eq(h, S.debug_token);
}

static bool auth_ok(struct MHD_Connection *c) {
    if (!S.api_key[0]) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7)) return false;
    return secret_eq(h + 7, S.api_key);
}

static route route_of(const char *url) {
    if (!strcmp(url, "/health") || !strcmp(url, "/v1/health")) return R_HEALTH;
    if (!strcmp(url, "/metrics")) return R_METRICS;
    if (!strcmp(url, "/v1/models") || !strcmp(url, "/models")) return R_MODELS;
    if (!strcmp(url, "/tokenize")) return R_TOKENIZE;
    if (!strcmp(url, "/infer")) return R_INFER;
    if (!strcmp(url, "/v1/completions") || !strcmp(url, "/completions")) return R_COMPLETIONS;
    if (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/chat/completions")) return R_CHAT;
    if (!strncmp(url, "/debug/", 7) || !strcmp(url, "/debug")) return R_DEBUG;
    return R_NOT_FOUND;
}

static const char *query_get(void *cls, const char *key) {
    return MHD_lookup_connection_value(cls, MHD_GET_ARGUMENT_KIND, key);
}

static json_t *usage_json(const srv_req *r) {
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", (int)r->n_prompt, "completion_tokens", (int)r->n_gen,
                     "total_tokens", (int)(r->n_prompt + r->n_gen));
}

// NULL only when out of memory (invalid UTF-8, which the detokenizer never
// lets through, becomes ""): the caller's json_pack() then fails, and the
// answer is a 500, never a 200 with the text missing.
static json_t *text_json(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    return j || api_valid_utf8(s, n) ? j : json_string("");
}

// The final JSON of a non-streamed request.
static json_t *result_json(route rt, const srv_req *r) {
    json_t *text = text_json(r->out, r->out_len);
    const char *finish = r->finish ? r->finish : "stop";
    char id[48];
    if (rt == R_INFER) {
        json_t *ids = json_array();
        for (int i = 0; ids && i < r->n_gen; i++)
            if (json_array_append_new(ids, json_integer(r->gen_ids[i]))) { json_decref(ids); ids = NULL; }
        return json_pack("{s:I,s:o,s:o,s:s,s:i,s:i,s:o}", "id", (json_int_t)r->id, "text", text, "tokens", ids,
                         "finish_reason", finish, "prompt_tokens", (int)r->n_prompt, "generated_tokens", (int)r->n_gen,
                         "timings", api_timings(r));
    }
    if (rt == R_COMPLETIONS) {
        snprintf(id, sizeof id, "cmpl-%llu", (unsigned long long)r->id);
        return json_pack("{s:s,s:s,s:I,s:s,s:[{s:o,s:i,s:n,s:s}],s:o,s:o}", "id", id, "object", "text_completion",
                         "created", (json_int_t)S.created, "model", S.model_id, "choices", "text", text, "index", 0,
                         "logprobs", "finish_reason", finish, "usage", usage_json(r), "timings", api_timings(r));
    }
    snprintf(id, sizeof id, "chatcmpl-%llu", (unsigned long long)r->id);
    return json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:{s:s,s:o},s:s}],s:o,s:o}", "id", id, "object", "chat.completion",
                     "created", (json_int_t)S.created, "model", S.model_id, "choices", "index", 0, "message", "role",
                     "assistant", "content", text, "finish_reason", finish, "usage", usage_json(r), "timings",
                     api_timings(r));
}

// The end of a request's life on its HTTP thread: closes its trace task and,
// when it was slower than --trace-slow-ms and the flight recorder runs,
// writes the window around it to --trace-dir (at most one file a second).
static void request_done(const srv_req *r, int status) {
    trace_task_end("request", r->id, "generated_tokens", r->n_gen, "status", status);
    if (!S.cfg.trace_slow_ms || !S.cfg.trace_dir || !trace_flight_on()) return;
    uint64_t now = util_now_ns(), total = now - r->t_arrive;
    if (total < (uint64_t)S.cfg.trace_slow_ms * 1000000ull) return;
    static _Atomic uint64_t last_dump;
    uint64_t prev = atomic_load(&last_dump);
    if (now - prev < 1000000000ull || !atomic_compare_exchange_strong(&last_dump, &prev, now)) return;
    uint64_t w = trace_flight_window_ns(), from = r->t_arrive > 1000000000ull ? r->t_arrive - 1000000000ull : 0;
    if (now - from > w) from = now - w;
    char name[96];
    snprintf(name, sizeof name, "slow-request-%llu-%llums.json", (unsigned long long)r->id,
             (unsigned long long)(total / 1000000ull));
    prof_region_begin("trace.dump", r->id);
    if (trace_write_file(S.cfg.trace_dir, name, from, now) == 0)
        fprintf(stderr, "llm-server: request %llu took %llu ms: trace written to %s/%s\n", (unsigned long long)r->id,
                (unsigned long long)(total / 1000000ull), S.cfg.trace_dir, name);
    prof_region_end("trace.dump", NULL, 0);
}

// ---- streaming (server-sent events) -------------------------------------------

typedef struct stream_ctx {
    srv_req *r;
    route rt;
    int fd;
    int next;               // next token to send
    bool role_sent, finished;
    bool broken;            // an event could not be formatted (out of memory): the stream is cut
    char *buf;              // pending bytes
    size_t len, off, cap;
} stream_ctx;

static bool sbuf_add(stream_ctx *s, const char *p, size_t n) {
    if (s->len + n > s->cap) {
        size_t nc = (s->len + n) * 2 + 256;
        char *np = realloc(s->buf, nc);
        if (!np) { s->broken = true; return false; }
        s->buf = np;
        s->cap = nc;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return true;
}

static void sse_json(stream_ctx *s, json_t *j) {
    char *t = api_json_dumps(j);
    json_decref(j);
    if (!t) { s->broken = true; return; }
    sbuf_add(s, "data: ", 6);
    sbuf_add(s, t, strlen(t));
    sbuf_add(s, "\n\n", 2);
    free(t);
}

static json_t *chunk_json(stream_ctx *s, json_t *text, const char *finish) {
    const srv_req *r = s->r;
    char id[48];
    json_t *fin = finish ? json_string(finish) : json_null();
    if (s->rt == R_COMPLETIONS) {
        snprintf(id, sizeof id, "cmpl-%llu", (unsigned long long)r->id);
        return json_pack("{s:s,s:s,s:I,s:s,s:[{s:o,s:i,s:n,s:o}]}", "id", id, "object", "text_completion", "created",
                         (json_int_t)S.created, "model", S.model_id, "choices", "text", text, "index", 0, "logprobs",
                         "finish_reason", fin);
    }
    snprintf(id, sizeof id, "chatcmpl-%llu", (unsigned long long)r->id);
    json_t *delta = json_object();
    if (!s->role_sent) {
        if (json_object_set_new(delta, "role", json_string("assistant"))) { json_decref(delta); delta = NULL; }
        s->role_sent = true;
    }
    if (text && json_object_set_new(delta, "content", text)) { json_decref(delta); delta = NULL; }
    // A NULL delta (out of memory) makes json_pack() fail: the caller cuts the stream.
    return json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:o}]}", "id", id, "object", "chat.completion.chunk", "created",
                     (json_int_t)S.created, "model", S.model_id, "choices", "index", 0, "delta", delta,
                     "finish_reason", fin);
}

// Formats the events for tokens that can no longer change, and the end.
// The request's lock is held.
static void stream_collect(stream_ctx *s) {
    srv_req *r = s->r;
    while (s->next < r->n_gen && (r->done || (size_t)r->tok_end[s->next] <= r->visible)) {
        int i = s->next++;
        size_t a = i ? (size_t)r->tok_end[i - 1] : 0, b = (size_t)r->tok_end[i];
        if (b > r->out_len) b = r->out_len;
        if (a > b) a = b;
        if (s->rt == R_INFER)
            sse_json(s, json_pack("{s:i,s:i,s:o}", "index", i, "token", (int)r->gen_ids[i], "text",
                                  text_json(r->out + a, b - a)));
        else if (b > a || s->rt == R_CHAT) {
            json_t *t = text_json(r->out + a, b - a);   // NULL would mean "no content" to chunk_json()
            if (!t) { s->broken = true; return; }
            sse_json(s, chunk_json(s, t, NULL));
        }
        if (s->broken) return;
    }
    if (!r->done || s->next < r->n_gen) return;
    if (r->status != 200) {
        char *e = api_error_body(r->status, r->err);
        if (e) { sbuf_add(s, "data: ", 6); sbuf_add(s, e, strlen(e)); sbuf_add(s, "\n\n", 2); free(e); }
        else s->broken = true;
    } else if (s->rt == R_INFER) {
        sse_json(s, json_pack("{s:b,s:s,s:i,s:i,s:o}", "done", 1, "finish_reason", r->finish ? r->finish : "stop",
                              "prompt_tokens", (int)r->n_prompt, "generated_tokens", (int)r->n_gen, "timings",
                              api_timings(r)));
    } else {
        json_t *j = chunk_json(s, s->rt == R_COMPLETIONS ? json_string("") : NULL, r->finish ? r->finish : "stop");
        if (j && json_object_set_new(j, "usage", usage_json(r))) { json_decref(j); j = NULL; }
        sse_json(s, j);
    }
    sbuf_add(s, "data: [DONE]\n\n", 14);
    s->finished = true;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
    stream_ctx *s = cls;
    (void)pos;
    for (;;) {
        if (s->off < s->len) {
            size_t n = s->len - s->off < max ? s->len - s->off : max;
            memcpy(out, s->buf + s->off, n);
            s->off += n;
            return (ssize_t)n;
        }
        s->off = s->len = 0;
        if (s->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        srv_req *r = s->r;
        prof_mutex_lock(&r->mu);
        while (!r->done && !(s->next < r->n_gen && (size_t)r->tok_end[s->next] <= r->visible)) {
            if (!prof_cond_wait_until(&r->cv, &r->mu, util_now_ns() + WAKE_NS) && client_gone(s->fd)) {
                atomic_store(&r->cancel, 1);
                prof_mutex_unlock(&r->mu);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
        }
        prof_region_begin("send", r->id);
        stream_collect(s);
        if (s->broken) {
            // Out of memory mid-stream: the status went out already, and a
            // stream with an event missing must not look whole. Cut the
            // connection (the client sees no [DONE]) and stop the sequence.
            atomic_store(&r->cancel, 1);
            prof_mutex_unlock(&r->mu);
            prof_region_end("send", "bytes", 0);
            s->finished = false;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (s->finished) trace_flow(r->id, 2);
        prof_mutex_unlock(&r->mu);
        prof_region_end("send", "bytes", (int64_t)s->len);
    }
}

static void stream_free(void *cls) {
    stream_ctx *s = cls;
    atomic_store(&s->r->cancel, 1);   // no-op when done; frees the slot when the client left early
    request_done(s->r, s->finished ? 200 : 499);
    req_unref(s->r);
    free(s->buf);
    free(s);
}

// ---- inference ---------------------------------------------------------------

static enum MHD_Result infer(struct MHD_Connection *c, conn_ctx *cc, const char *method) {
    const llama_model *m = atomic_load(&S.model);
    if (!m) return send_error(c, cc, 503, "the model is loading");
    srv_req *r = req_new();
    if (!r) return send_error(c, cc, 500, "out of memory");
    r->t_arrive = util_now_ns();
    prof_label_req(r->id);
    api_opts o = {0};
    char err[512];
    int rc;
    api_kind kind = cc->rt == R_CHAT ? API_CHAT : cc->rt == R_COMPLETIONS ? API_COMPLETIONS : API_INFER;
    if (cc->rt == R_INFER && !strcmp(method, "GET")) {
        rc = api_parse_query(query_get, c, &S.lim, r, &o, err, sizeof err);
    } else {
        if (!api_valid_utf8(cc->body ? cc->body : "", cc->len)) rc = 400, snprintf(err, sizeof err, "the body is not valid UTF-8");
        else rc = api_parse_json(kind, cc->body ? cc->body : "", cc->len, &S.lim, r, &o, err, sizeof err);
    }
    if (rc) { req_unref(r); prof_label_req(0); return send_error(c, cc, rc, "%s", err); }
    r->stream = o.stream;
    trace_task_begin("request", r->id, "prompt_bytes", (int64_t)r->prompt_len);
    if (__builtin_expect(lab_case == LAB_GLOBAL_LOCK, 0)) auth_check();
    prof_region_begin("submit", r->id);
    trace_flow(r->id, 0);
    eng_submit_rc sr = eng_submit(S.eng, r);
    prof_region_end("submit", NULL, 0);
    if (sr != ENG_OK) {
        request_done(r, 503);
        req_unref(r);
        prof_label_req(0);
        return send_error(c, cc, 503, sr == ENG_FULL ? "the server is overloaded: the queue is full" : "the server is shutting down");
    }
    int fd = conn_fd(c);
    // Wait for the answer (or, for a stream, until the prompt is accepted),
    // cancelling when the client goes away.
    prof_region_begin("wait", r->id);
    prof_mutex_lock(&r->mu);
    while (!r->done && !(o.stream && r->n_prompt > 0)) {
        if (!prof_cond_wait_until(&r->cv, &r->mu, util_now_ns() + WAKE_NS) && client_gone(fd)) {
            atomic_store(&r->cancel, 1);
            break;
        }
    }
    bool failed = r->done && r->status != 200;
    prof_mutex_unlock(&r->mu);
    prof_region_end("wait", NULL, 0);
    if (atomic_load(&r->cancel)) {   // the client is gone: drop the connection
        request_done(r, 499);
        req_unref(r);
        prof_label_req(0);
        return MHD_NO;
    }
    if (failed) {
        enum MHD_Result res = send_error(c, cc, r->status, "%s", r->err);
        request_done(r, r->status);
        req_unref(r);
        prof_label_req(0);
        return res;
    }
    if (!o.stream) {
        prof_region_begin("respond", r->id);
        trace_flow(r->id, 2);
        enum MHD_Result res = send_json(c, cc, 200, result_json(cc->rt, r));
        prof_region_end("respond", NULL, 0);
        request_done(r, 200);
        req_unref(r);
        prof_label_req(0);
        return res;
    }
    prof_label_req(0);
    stream_ctx *s = calloc(1, sizeof *s);
    if (!s) { atomic_store(&r->cancel, 1); req_unref(r); return send_error(c, cc, 500, "out of memory"); }
    s->r = r;
    s->rt = cc->rt;
    s->fd = fd;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s, stream_free);
    if (!resp) { stream_free(s); return MHD_NO; }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    enum MHD_Result res = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    met_request(route_names[cc->rt], 200);
    cc->responded = true;
    return res;
}

static enum MHD_Result tokenize(struct MHD_Connection *c, conn_ctx *cc) {
    const llama_model *m = atomic_load(&S.model);
    if (!m) return send_error(c, cc, 503, "the model is loading");
    srv_req *r = req_new();
    if (!r) return send_error(c, cc, 500, "out of memory");
    api_opts o = {0};
    char err[512];
    int rc = api_valid_utf8(cc->body ? cc->body : "", cc->len)
                 ? api_parse_json(API_TOKENIZE, cc->body ? cc->body : "", cc->len, &S.lim, r, &o, err, sizeof err)
                 : (snprintf(err, sizeof err, "the body is not valid UTF-8"), 400);
    if (rc) { req_unref(r); return send_error(c, cc, rc, "%s", err); }
    prof_label_phase("tokenize");
    int64_t cap = (int64_t)r->prompt_len + 8;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
    int64_t n = ids ? tok_encode(m->vocab, r->prompt, r->prompt_len, o.add_special, true, ids, cap) : -1;
    prof_label_phase(NULL);
    req_unref(r);
    if (n < 0 || n > cap) {
        bool oom = n < 0;   // tok_encode fails only when an allocation does
        free(ids);
        return send_error(c, cc, 500, oom ? "out of memory" : "cannot tokenize");
    }
    // Any allocation that fails on the way makes the answer a 500 (arr
    // becomes NULL), never a 200 with a token or a piece missing.
    json_t *arr = json_array();
    for (int64_t i = 0; arr && i < n; i++) {
        json_t *item;
        if (o.with_pieces) {
            char piece[512];
            int w = tok_piece(m->vocab, ids[i], true, piece, sizeof piece);
            if (w > (int)sizeof piece) w = sizeof piece;
            size_t pl = (size_t)(w < 0 ? 0 : w);
            json_t *p = json_stringn(piece, pl);
            if (!p && !api_valid_utf8(piece, pl)) {   // a lone byte of a multi-byte character: give the bytes
                p = json_array();
                for (size_t k = 0; p && k < pl; k++)
                    if (json_array_append_new(p, json_integer((unsigned char)piece[k]))) { json_decref(p); p = NULL; }
            }
            item = p ? json_pack("{s:i,s:o}", "id", (int)ids[i], "piece", p) : NULL;
        } else {
            item = json_integer(ids[i]);
        }
        if (json_array_append_new(arr, item)) { json_decref(arr); arr = NULL; }
    }
    free(ids);
    return send_json(c, cc, 200, json_pack("{s:o}", "tokens", arr));
}

static enum MHD_Result models(struct MHD_Connection *c, conn_ctx *cc) {
    const llama_model *m = atomic_load(&S.model);
    if (!m) return send_error(c, cc, 503, "the model is loading");
    return send_json(c, cc, 200,
                     json_pack("{s:s,s:[{s:s,s:s,s:I,s:s,s:{s:i,s:i,s:i,s:I,s:I,s:s}}]}", "object", "list", "data", "id",
                               S.model_id, "object", "model", "created", (json_int_t)S.created, "owned_by", "llmscope",
                               "meta", "n_ctx", (int)eng_n_ctx(S.eng), "n_vocab", (int)m->hp.n_vocab, "n_embd",
                               (int)m->hp.n_embd, "n_params", (json_int_t)m->n_params, "size", (json_int_t)m->weight_bytes,
                               "chat_template", chat_tmpl_name(S.lim.tmpl)));
}

// ---- the access handler -------------------------------------------------------

// Marks a connection whose conn_ctx could not be allocated (never written).
static conn_ctx oom_cc;

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    ensure_registered();
    bool debug_listener = cls != NULL;
    conn_ctx *cc = *con_cls;
    if (cc == &oom_cc) { *upload_size = 0; return MHD_YES; }   // answered 500 on the first call
    if (!cc) {
        cc = calloc(1, sizeof *cc);
        if (!cc) { *con_cls = &oom_cc; return send_oom(c, NULL); }
        *con_cls = cc;
        cc->rt = route_of(url);
        if (debug_listener && cc->rt != R_DEBUG)
            return send_error(c, cc, 404, "this listener (--debug-addr) serves /debug/ only");
        bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
        switch (cc->rt) {
        case R_NOT_FOUND: return send_error(c, cc, 404, "no such endpoint");
        case R_HEALTH: case R_METRICS: case R_MODELS: case R_DEBUG:
            if (!get && !(cc->rt == R_DEBUG && post)) return send_error(c, cc, 405, "use GET");
            break;
        case R_INFER:
            if (!get && !post) return send_error(c, cc, 405, "use GET or POST");
            break;
        default:
            if (!post) return send_error(c, cc, 405, "use POST");
        }
        if (cc->rt == R_DEBUG && !is_loopback(c)) {
            if (!S.cfg.debug_remote && !debug_listener)
                return send_error(c, cc, 403, "debug endpoints answer only on loopback (see --debug-addr)");
            if (!debug_token_ok(c))
                return send_error(c, cc, 401, "debug endpoints need the debug token (X-Debug-Token: TOKEN)");
        }
        if (cc->rt != R_HEALTH && cc->rt != R_METRICS && !auth_ok(c))
            return send_error(c, cc, 401, "a valid API key is required (Authorization: Bearer KEY)");
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        int64_t n;
        if (cl && util_parse_i64(cl, 0, INT64_MAX, &n) && (uint64_t)n > S.cfg.max_body)
            return send_error(c, cc, 413, "the body is larger than %zu bytes", S.cfg.max_body);
        return MHD_YES;
    }
    if (cc->responded) { *upload_size = 0; return MHD_YES; }
    if (*upload_size) {   // a piece of the body
        if (!cc->too_large && !cc->oom) {
            if (cc->len + *upload_size > S.cfg.max_body) {
                cc->too_large = true;
            } else {
                if (cc->len + *upload_size + 1 > cc->cap) {
                    size_t nc = (cc->len + *upload_size + 1) * 2;
                    if (nc > S.cfg.max_body + 1) nc = S.cfg.max_body + 1;
                    char *np = realloc(cc->body, nc);
                    if (!np) { cc->oom = true; *upload_size = 0; return MHD_YES; }   // answered at the end
                    cc->body = np;
                    cc->cap = nc;
                }
                memcpy(cc->body + cc->len, upload, *upload_size);
                cc->len += *upload_size;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cc->too_large) return send_error(c, cc, 413, "the body is larger than %zu bytes", S.cfg.max_body);
    if (cc->oom) return send_oom(c, cc);
    switch (cc->rt) {
    case R_HEALTH:
        if (!atomic_load(&S.model)) return send_error(c, cc, 503, "the model is loading");
        return send_json(c, cc, 200, json_pack("{s:s}", "status", "ok"));
    case R_METRICS: {
        size_t len, plen = 0;
        char *t = met_render(&len);
        if (!t) return send_error(c, cc, 500, "out of memory");
        char *pm = pmu_prometheus(&plen);   // the per-phase counters
        char *both = pm ? realloc(t, len + plen + 1) : NULL;
        if (both) { memcpy(both + len, pm, plen + 1); t = both; len += plen; }
        free(pm);
        return send_body(c, cc, 200, "text/plain; version=0.0.4; charset=utf-8", t, len, NULL);
    }
    case R_MODELS: return models(c, cc);
    case R_TOKENIZE: return tokenize(c, cc);
    case R_DEBUG: {
        // Captures block their connection's thread: a few at a time.
        if (atomic_fetch_add(&S.debug_active, 1) >= DEBUG_MAX_ACTIVE) {
            atomic_fetch_sub(&S.debug_active, 1);
            return send_error(c, cc, 429, "%d debug requests are running already; try again later", DEBUG_MAX_ACTIVE);
        }
        debug_response d = {0};
        int st = debug_handle(url, query_get, c, &d);
        atomic_fetch_sub(&S.debug_active, 1);
        if (st == 0) return send_error(c, cc, 404, "no such debug endpoint");
        if (st != 200) { free(d.body); return send_error(c, cc, st, "%s", d.err[0] ? d.err : "debug endpoint failed"); }
        struct MHD_Response *resp = MHD_create_response_from_buffer(d.len, d.body, MHD_RESPMEM_MUST_FREE);
        if (!resp) { free(d.body); return MHD_NO; }
        MHD_add_response_header(resp, "Content-Type", d.ctype ? d.ctype : "application/octet-stream");
        if (d.disposition) MHD_add_response_header(resp, "Content-Disposition", d.disposition);
        enum MHD_Result res = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        met_request(route_names[cc->rt], 200);
        cc->responded = true;
        return res;
    }
    default: return infer(c, cc, method);
    }
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls; (void)c; (void)toe;
    conn_ctx *cc = *con_cls;
    if (!cc || cc == &oom_cc) { *con_cls = NULL; return; }
    free(cc->body);
    free(cc);
    *con_cls = NULL;
}

// ---- lifecycle ---------------------------------------------------------------

bool http_parse_addr(const char *s, char *host, size_t hostlen, uint16_t *port) {
    const char *colon = strrchr(s, ':');
    const char *ps = colon ? colon + 1 : s;
    int64_t p;
    if (!util_parse_i64(ps, 0, 65535, &p)) return false;
    *port = (uint16_t)p;
    size_t hl = colon ? (size_t)(colon - s) : 0;
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') { s++; hl -= 2; }   // [::1]:8080
    if (hl >= hostlen) return false;
    memcpy(host, s, hl);
    host[hl] = 0;
    return true;
}

// Starts one listener on host:port (host NULL or "" = all interfaces);
// cls marks the --debug-addr listener. NULL with a message in err.
static struct MHD_Daemon *listen_on(const char *host, uint16_t port, unsigned max_conns, void *cls,
                                    const char *what, char *err, size_t errlen) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC;
    if (host && host[0]) {
        struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM}, *ai = NULL;
        char portstr[8];
        snprintf(portstr, sizeof portstr, "%u", port);
        int gai = getaddrinfo(host, portstr, &hints, &ai);
        if (gai) {   // a name, not a number: resolve it
            hints.ai_flags = AI_NUMERICSERV;
            gai = getaddrinfo(host, portstr, &hints, &ai);
        }
        if (gai || !ai) { snprintf(err, errlen, "%s: cannot resolve '%s': %s", what, host, gai_strerror(gai)); return NULL; }
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        freeaddrinfo(ai);
        if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_ANY);
        in->sin_port = htons(port);
    }
    struct MHD_Daemon *d = MHD_start_daemon(flags, port, NULL, NULL, handler, cls,
                           MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                           MHD_OPTION_CONNECTION_LIMIT, max_conns,
                           MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)S.cfg.read_timeout_s,
                           MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                           MHD_OPTION_NOTIFY_CONNECTION, conn_notify, NULL,
                           // 2 MiB: a debug capture symbolizes on this thread, and
                           // libdw's line-table reader alone keeps ~150 KiB on the
                           // stack; 512 KiB overflowed under TSan's larger frames.
                           MHD_OPTION_THREAD_STACK_SIZE, (size_t)(2048 * 1024),
                           MHD_OPTION_END);
    if (!d)
        snprintf(err, errlen, "%s: cannot listen on %s:%u (in use, or not an address of this machine)", what,
                 host && host[0] ? host : "*", port);
    return d;
}

static uint16_t port_of(struct MHD_Daemon *d) {
    const union MHD_DaemonInfo *di = d ? MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    return di ? di->port : 0;
}

bool http_start(const http_config *cfg, char *err, size_t errlen) {
    S.cfg = *cfg;
    snprintf(S.api_key, sizeof S.api_key, "%s", cfg->api_key ? cfg->api_key : "");
    snprintf(S.debug_token, sizeof S.debug_token, "%s", cfg->debug_token ? cfg->debug_token : "");
    S.created = time(NULL);
    pthread_key_create(&S.thread_key, thread_gone);
    S.d = listen_on(cfg->host, cfg->port, (unsigned)cfg->max_conns, NULL, "--http-addr", err, errlen);
    if (!S.d) return false;
    if (cfg->debug_host) {   // a few debug clients at a time; captures are capped at 4 anyway
        S.dbg = listen_on(cfg->debug_host, cfg->debug_port, 16, (void *)1, "--debug-addr", err, errlen);
        if (!S.dbg) { http_stop(); return false; }
    }
    return true;
}

uint16_t http_port(void) { return port_of(S.d); }
uint16_t http_debug_port(void) { return port_of(S.dbg); }

void http_set_ready(const llama_model *m, srv_engine *e, const char *model_id) {
    S.eng = e;
    S.lim.n_vocab = m->hp.n_vocab;
    S.lim.max_tokens_cap = eng_n_ctx(e);
    gguf_str t = {0};
    int64_t k = gguf_find_key(m->gguf, "tokenizer.chat_template");
    S.lim.tmpl = (k >= 0 && gguf_kv_str(m->gguf, k, &t)) ? chat_detect(t.ptr, t.len) : CHAT_CHATML;
    snprintf(S.model_id, sizeof S.model_id, "%s", model_id);
    atomic_store(&S.model, m);
}

unsigned http_connections(void) {
    const union MHD_DaemonInfo *di = S.d ? MHD_get_daemon_info(S.d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS) : NULL;
    return di ? di->num_connections : 0;
}

void http_quiesce(void) {
    struct MHD_Daemon *ds[2] = {S.d, S.dbg};
    for (int i = 0; i < 2; i++) {
        if (!ds[i]) continue;
        MHD_socket s = MHD_quiesce_daemon(ds[i]);
        if (s != MHD_INVALID_SOCKET) close(s);
    }
}

void http_stop(void) {
    if (S.dbg) MHD_stop_daemon(S.dbg);
    if (S.d) MHD_stop_daemon(S.d);
    S.d = S.dbg = NULL;
}
