// load.c — see load.h. Each worker is a `conn`: a socket (kept alive between
// requests when the server allows it) and the request in flight. The loop
// waits in epoll_pwait2 (nanosecond timeouts, for exact pacing) until a
// socket is ready or the next arrival, -q tick, timeout scan or progress line
// is due. Sockets are registered for EPOLLIN for their whole life; EPOLLOUT
// is added only while a connect or a short write is pending, so a request on
// a kept-alive connection costs one send, one recv and a share of one wait.
#include "load.h"

#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "util/http_resp.h"
#include "util/sse.h"
#include "util/util.h"

enum { P_IDLE, P_WAIT, P_CONNECTING, P_WRITING, P_READING, P_DONE };

typedef struct conn {
    int fd;                         // -1 when not connected
    uint32_t gen;                   // bumped per socket: events of a closed socket are told apart
    int phase;
    bool want_out;                  // EPOLLOUT is registered
    bool reused;                    // the current request went on a kept-alive connection
    bool retried;                   // the current request was already resent once
    bool got_bytes;                 // any response byte arrived for the current request
    bool extra;                     // bytes after the response: do not reuse the connection
    int64_t left;                   // closed loop: requests this worker still sends; -1 = unbounded
    uint64_t next_ns;               // closed loop with -q: when the next request may start
    uint64_t grid_ns;               // closed loop with -q: the last tick of the worker's grid used
    const load_req *req;
    size_t wr_off;                  // bytes of req written
    uint64_t intended_ns, start_ns, conn_start_ns, conn_ns, written_ns, first_byte_ns, deadline_ns;
    http_resp hr;
    // --stream
    sse_parser sse;
    bool sse_err;                   // the stream was malformed (bound hit)
    bool err_event;                 // the server sent an error event
    uint32_t n_tok;                 // events that carried text
    int64_t usage_tok;              // usage.completion_tokens seen, -1 = none
    uint64_t first_tok_ns, last_tok_ns;
    uint64_t *gaps;                 // inter-token gaps of this request (ns)
    size_t n_gaps, cap_gaps;
} conn;

#define MAX_GAPS (1u << 20)

typedef struct engine {
    const load_cfg *cfg;
    load_result *r;
    conn *cs;
    int ep;
    int *idle;                      // stack of conns ready for work
    int n_idle;
    int *snap;                      // a copy of idle, walked while idle refills
    uint64_t t0, end_ns;            // start; end of the duration (UINT64_MAX = none)
    uint64_t req_seq;               // requests started (picks the next prepared request)
    int64_t in_flight;
    // open loop
    uint64_t next_arrival_ns;       // UINT64_MAX when no more arrivals
    int64_t arrivals;               // generated so far
    uint64_t *q;                    // FIFO of intended send times of arrivals waiting for a connection
    size_t q_head, q_len, q_cap;
    uint64_t rng;
    bool stopping;                  // no new requests (duration over, or interrupted)
    uint64_t next_scan_ns, next_progress_ns;
    char *rbuf;                     // shared receive buffer
} engine;

#define RBUF 65536
#define SCAN_NS 10000000ull         // timeout scan period
#define PROGRESS_NS 500000000ull

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) { (void)sig; g_interrupted = 1; }

bool load_result_init(load_result *r) {
    memset(r, 0, sizeof *r);
    r->lat = hdr_new(); r->lat_sent = hdr_new();
    r->ttft = hdr_new(); r->tpot = hdr_new(); r->itl = hdr_new(); r->e2e = hdr_new();
    if (!r->lat || !r->lat_sent || !r->ttft || !r->tpot || !r->itl || !r->e2e) { load_result_free(r); return false; }
    return true;
}

void load_result_free(load_result *r) {
    hdr_free(r->lat); hdr_free(r->lat_sent);
    hdr_free(r->ttft); hdr_free(r->tpot); hdr_free(r->itl); hdr_free(r->e2e);
    free(r->rec);
    memset(r, 0, sizeof *r);
}

static void stat_add(load_stat *s, uint64_t v) {
    if (!s->n || v < s->min) s->min = v;
    if (!s->n || v > s->max) s->max = v;
    s->sum += (double)v;
    s->n++;
}

static void count_error(load_result *r, const char *msg) {
    for (int i = 0; i < r->n_err_kinds; i++)
        if (!strcmp(r->err[i].msg, msg)) { r->err[i].n++; return; }
    if (r->n_err_kinds < LOAD_MAX_ERRORS) {
        snprintf(r->err[r->n_err_kinds].msg, sizeof r->err[0].msg, "%s", msg);
        r->err[r->n_err_kinds++].n = 1;
    } else {
        r->err_other++;
    }
}

// splitmix64: the Poisson arrivals' random source (reproducible from --seed).
static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void gen_arrival(engine *e) {
    const load_cfg *cfg = e->cfg;
    if ((cfg->n > 0 && e->arrivals >= cfg->n) || e->stopping) { e->next_arrival_ns = UINT64_MAX; return; }
    uint64_t t;
    if (cfg->poisson) {
        double u = ((double)(rng_next(&e->rng) >> 11) + 0.5) / 9007199254740992.0;  // (0, 1)
        t = e->arrivals ? e->next_arrival_ns + (uint64_t)(-log(u) / cfg->rate * 1e9) : e->t0;
    } else {
        t = e->t0 + (uint64_t)((double)e->arrivals * 1e9 / cfg->rate);  // no drift from rounding
    }
    if (t >= e->end_ns) { e->next_arrival_ns = UINT64_MAX; return; }
    e->next_arrival_ns = t;
    e->arrivals++;
}

static bool q_push(engine *e, uint64_t t) {
    if (e->q_len == e->q_cap) {
        size_t nc = e->q_cap ? e->q_cap * 2 : 1024;
        uint64_t *nq = malloc(nc * sizeof *nq);
        if (!nq) return false;
        for (size_t i = 0; i < e->q_len; i++) nq[i] = e->q[(e->q_head + i) % e->q_cap];
        free(e->q);
        e->q = nq; e->q_cap = nc; e->q_head = 0;
    }
    e->q[(e->q_head + e->q_len++) % e->q_cap] = t;
    return true;
}

static uint64_t q_pop(engine *e) {
    uint64_t t = e->q[e->q_head];
    e->q_head = (e->q_head + 1) % e->q_cap;
    e->q_len--;
    return t;
}

// An event's key: the worker's index and its socket's generation.
static uint64_t ev_key(const engine *e, const conn *c) { return (uint64_t)c->gen << 32 | (uint32_t)(c - e->cs); }

static void set_out(engine *e, conn *c, bool on) {
    if (c->want_out == on || c->fd < 0) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u64 = ev_key(e, c)};
    if (!epoll_ctl(e->ep, EPOLL_CTL_MOD, c->fd, &ev)) c->want_out = on;
}

static void conn_close(engine *e, conn *c) {
    if (c->fd >= 0) {
        epoll_ctl(e->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->want_out = false;
}

static void make_idle(engine *e, conn *c) {
    c->phase = P_IDLE;
    e->idle[e->n_idle++] = (int)(c - e->cs);
}

// --- recording --------------------------------------------------------------

static bool on_event(void *ud, const char *p, size_t n) {
    conn *c = ud;
    sse_llm_event ev = sse_llm_classify(p, n);
    if (ev.completion_tokens >= 0) c->usage_tok = ev.completion_tokens;
    if (ev.kind == SSE_LLM_ERROR) c->err_event = true;
    if (ev.kind != SSE_LLM_TOKEN) return true;
    uint64_t now = util_now_ns();
    if (!c->n_tok) c->first_tok_ns = now;
    else if (c->n_gaps < MAX_GAPS) {
        if (c->n_gaps == c->cap_gaps) {
            size_t nc = c->cap_gaps ? c->cap_gaps * 2 : 64;
            uint64_t *g = realloc(c->gaps, nc * sizeof *g);
            if (!g) return true;                       // gaps are lost, the count is not
            c->gaps = g; c->cap_gaps = nc;
        }
        c->gaps[c->n_gaps++] = now - c->last_tok_ns;
    }
    c->last_tok_ns = now;
    c->n_tok++;
    return true;
}

static bool on_body(void *ud, const char *p, size_t n) {
    conn *c = ud;
    if (!c->sse_err && !sse_feed(&c->sse, p, n, on_event, c)) c->sse_err = true;
    return true;
}

static void record_llm(engine *e, conn *c, uint64_t lat_ns, uint64_t t_from) {
    load_result *r = e->r;
    const load_cfg *cfg = e->cfg;
    if (!c->sse_err) sse_finish(&c->sse, on_event, c);
    bool ok = c->hr.status >= 200 && c->hr.status < 300 && c->n_tok > 0 && !c->err_event && !c->sse_err;
    if (!ok) { r->llm_fail++; return; }
    uint64_t out = c->usage_tok >= 0 ? (uint64_t)c->usage_tok : c->n_tok;
    uint64_t ttft = c->first_tok_ns > t_from ? c->first_tok_ns - t_from : 0;
    uint64_t tpot = 0;
    if (out > 1 && lat_ns > ttft) tpot = (lat_ns - ttft) / (out - 1);
    r->llm_ok++;
    r->out_tokens += out;
    hdr_add(r->ttft, ttft);
    hdr_add(r->e2e, lat_ns);
    if (out > 1) hdr_add(r->tpot, tpot);
    for (size_t i = 0; i < c->n_gaps; i++) hdr_add(r->itl, c->gaps[i]);
    bool good = (cfg->slo_ttft_ms <= 0 || (double)ttft <= cfg->slo_ttft_ms * 1e6) &&
                (cfg->slo_tpot_ms <= 0 || (double)tpot <= cfg->slo_tpot_ms * 1e6) &&
                (cfg->slo_e2e_ms <= 0 || (double)lat_ns <= cfg->slo_e2e_ms * 1e6);
    if (good) r->llm_good++;
}

// Ends the current request: records it, keeps or closes the socket, and puts
// the worker back to work (or to rest).
static void finish(engine *e, conn *c, const char *err) {
    load_result *r = e->r;
    const load_cfg *cfg = e->cfg;
    uint64_t now = util_now_ns();
    bool open_loop = cfg->rate > 0;
    uint64_t from = open_loop ? c->intended_ns : c->start_ns;
    uint64_t lat = now > from ? now - from : 0;
    if (err) {
        r->n_err++;
        count_error(r, err);
        if (cfg->stream) r->llm_fail++;
    } else {
        r->n_resp++;
        hdr_add(r->lat, lat);
        if (open_loop) hdr_add(r->lat_sent, now - c->start_ns);
        r->status[c->hr.status % 1000]++;
        r->bytes += c->hr.body_bytes;
        uint64_t fb = c->first_byte_ns ? c->first_byte_ns : now;
        uint64_t wr = c->written_ns ? c->written_ns : fb;
        stat_add(&r->conn, c->conn_ns);
        uint64_t wstart = c->start_ns + c->conn_ns;
        stat_add(&r->write, wr > wstart ? wr - wstart : 0);
        stat_add(&r->wait, fb > wr ? fb - wr : 0);
        stat_add(&r->read, now > fb ? now - fb : 0);
        if (cfg->stream) record_llm(e, c, lat, from);
        if (cfg->records && r->rec && r->n_rec < LOAD_MAX_RECORDS) {
            load_record *x = &r->rec[r->n_rec++];
            x->total = (float)(lat / 1e9);
            x->conn = (float)(c->conn_ns / 1e9);
            x->write = (float)((wr > wstart ? wr - wstart : 0) / 1e9);
            x->wait = (float)((fb > wr ? fb - wr : 0) / 1e9);
            x->read = (float)((now > fb ? now - fb : 0) / 1e9);
            x->offset = (float)((from - e->t0) / 1e9);
            x->status = c->hr.status;
        }
    }
    e->in_flight--;
    // A response that came before the whole request was written (an early 413,
    // say) leaves the connection out of step: do not reuse it.
    bool reuse = !err && cfg->keepalive && c->hr.keep_alive && !c->extra && c->fd >= 0 &&
                 c->req && c->wr_off == c->req->len;
    if (!reuse) conn_close(e, c);
    else set_out(e, c, false);
    c->req = NULL;
    if (open_loop) { make_idle(e, c); return; }
    if (c->left > 0) c->left--;
    if (c->left == 0 || e->stopping) { c->phase = P_DONE; return; }
    if (cfg->qps > 0) {
        // hey's pacing is Go's time.Ticker: ticks on a fixed grid, and ticks
        // missed while a request ran are dropped but one, which fires at once.
        uint64_t period = (uint64_t)(1e9 / cfg->qps);
        uint64_t g = c->grid_ns + (period ? period : 1);
        if (g > now) {
            c->grid_ns = c->next_ns = g;
        } else {
            c->next_ns = now;
            c->grid_ns = period ? g + (now - g) / period * period : now;
        }
        c->phase = P_WAIT;
        return;
    }
    make_idle(e, c);
}

// --- sending and receiving --------------------------------------------------

static void fail_errno(engine *e, conn *c, const char *what, int err) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
    finish(e, c, msg);
}

static void try_write(engine *e, conn *c);
static void start_conn(engine *e, conn *c);

// A kept-alive connection failed before any response byte: the server closed
// it while it was idle. Resend once on a fresh connection, as browsers and
// Go's client do; true when resent.
static bool retry_fresh(engine *e, conn *c) {
    if (!c->reused || c->retried || c->got_bytes) return false;
    conn_close(e, c);
    c->retried = true;
    c->reused = false;
    c->wr_off = 0;
    start_conn(e, c);
    return true;
}

static void start_conn(engine *e, conn *c) {
    const load_cfg *cfg = e->cfg;
    c->conn_start_ns = util_now_ns();
    int fd = socket(cfg->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { fail_errno(e, c, "socket", errno); return; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->gen++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = ev_key(e, c)};
    if (epoll_ctl(e->ep, EPOLL_CTL_ADD, fd, &ev)) { int er = errno; close(fd); c->fd = -1; fail_errno(e, c, "epoll_ctl", er); return; }
    c->want_out = true;
    if (connect(fd, (const struct sockaddr *)&cfg->addr, cfg->addrlen) == 0) {
        c->conn_ns = util_now_ns() - c->conn_start_ns;
        c->phase = P_WRITING;
        try_write(e, c);
        return;
    }
    if (errno == EINPROGRESS) { c->phase = P_CONNECTING; return; }
    int er = errno;
    conn_close(e, c);
    fail_errno(e, c, "dial tcp", er);
}

static void try_write(engine *e, conn *c) {
    while (c->wr_off < c->req->len) {
        ssize_t k = send(c->fd, c->req->buf + c->wr_off, c->req->len - c->wr_off, MSG_NOSIGNAL);
        if (k > 0) { c->wr_off += (size_t)k; continue; }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { set_out(e, c, true); return; }
        int er = k < 0 ? errno : EPIPE;
        if (retry_fresh(e, c)) return;
        conn_close(e, c);
        fail_errno(e, c, "write", er);
        return;
    }
    c->written_ns = util_now_ns();
    c->phase = P_READING;
    set_out(e, c, false);
}

// Starts a request on worker c; intended is its intended send time (open loop).
static void start_request(engine *e, conn *c, uint64_t intended) {
    const load_cfg *cfg = e->cfg;
    c->req = &cfg->reqs[e->req_seq++ % cfg->n_reqs];
    c->wr_off = 0;
    c->start_ns = util_now_ns();
    c->intended_ns = intended ? intended : c->start_ns;
    uint64_t from = cfg->rate > 0 ? c->intended_ns : c->start_ns;
    c->deadline_ns = cfg->timeout_ns ? from + cfg->timeout_ns : UINT64_MAX;
    c->conn_ns = c->written_ns = c->first_byte_ns = 0;
    c->retried = c->got_bytes = c->extra = false;
    http_resp_init(&c->hr, cfg->head);
    if (cfg->stream) {
        sse_reset(&c->sse);
        c->sse_err = c->err_event = false;
        c->n_tok = 0;
        c->usage_tok = -1;
        c->first_tok_ns = c->last_tok_ns = 0;
        c->n_gaps = 0;
    }
    e->in_flight++;
    if (c->fd >= 0) {
        c->reused = true;
        c->phase = P_WRITING;
        try_write(e, c);
    } else {
        c->reused = false;
        start_conn(e, c);
    }
}

static void on_readable(engine *e, conn *c) {
    for (int rounds = 0; rounds < 16; rounds++) {
        ssize_t k = recv(c->fd, e->rbuf, RBUF, 0);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            int er = errno;
            if (retry_fresh(e, c)) return;
            conn_close(e, c);
            fail_errno(e, c, "read", er);
            return;
        }
        if (k == 0) {
            if (retry_fresh(e, c)) return;
            bool complete = http_resp_eof(&c->hr);
            conn_close(e, c);
            if (complete) finish(e, c, NULL);
            else finish(e, c, c->got_bytes ? "connection closed before the response ended" : "connection closed with no response (EOF)");
            return;
        }
        if (!c->got_bytes) { c->got_bytes = true; c->first_byte_ns = util_now_ns(); }
        ssize_t used = http_resp_feed(&c->hr, e->rbuf, (size_t)k, e->cfg->stream ? on_body : NULL, c);
        if (used < 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "malformed response: %s", http_resp_error(&c->hr));
            conn_close(e, c);
            finish(e, c, msg);
            return;
        }
        if (http_resp_done(&c->hr)) {
            if (used < k) c->extra = true;
            if (c->sse_err) {
                char msg[160];
                snprintf(msg, sizeof msg, "malformed event stream: %s", c->sse.err ? c->sse.err : "bad data");
                conn_close(e, c);
                finish(e, c, msg);
                return;
            }
            finish(e, c, NULL);
            return;
        }
        if ((size_t)k < RBUF) return;        // level-triggered: a short read drained the socket
    }
}

// Data or a close on a socket with no request on it: the server closed the
// idle connection (or sent something unasked for); drop the connection.
static void on_idle_event(engine *e, conn *c) {
    char b[256];
    ssize_t k = recv(c->fd, b, sizeof b, 0);
    if (k < 0 && (errno == EAGAIN || errno == EINTR)) return;
    conn_close(e, c);
}

static void on_event_fd(engine *e, conn *c, uint32_t ev) {
    if (c->fd < 0) return;
    switch (c->phase) {
    case P_CONNECTING: {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr) {
            if (!soerr) soerr = errno;
            conn_close(e, c);
            fail_errno(e, c, "dial tcp", soerr);
            return;
        }
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        c->conn_ns = util_now_ns() - c->conn_start_ns;
        c->phase = P_WRITING;
        try_write(e, c);
        return;
    }
    case P_WRITING:
        if (ev & EPOLLIN) { on_readable(e, c); if (c->phase != P_WRITING) return; }
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) try_write(e, c);
        return;
    case P_READING:
        on_readable(e, c);
        return;
    default:
        on_idle_event(e, c);
        return;
    }
}

// --- the loop ---------------------------------------------------------------

static void scan_timeouts(engine *e, uint64_t now) {
    const load_cfg *cfg = e->cfg;
    if (!cfg->timeout_ns) return;
    char msg[160];
    snprintf(msg, sizeof msg, "timeout (Client.Timeout %.4g s exceeded)", (double)cfg->timeout_ns / 1e9);
    for (int i = 0; i < cfg->c; i++) {
        conn *c = &e->cs[i];
        if (c->phase >= P_CONNECTING && c->phase <= P_READING && now >= c->deadline_ns) {
            conn_close(e, c);
            finish(e, c, msg);
        }
    }
    // Open loop: arrivals that waited for a connection past their deadline.
    while (e->q_len && now >= e->q[e->q_head] + cfg->timeout_ns) {
        q_pop(e);
        e->r->n_err++;
        count_error(e->r, msg);
        if (cfg->stream) e->r->llm_fail++;
    }
}

static void progress(engine *e, uint64_t now, bool last) {
    if (last) { fputs("\r\033[K", stderr); return; }
    double t = (double)(now - e->t0) / 1e9;
    uint64_t done = e->r->n_resp + e->r->n_err;
    fprintf(stderr, "\r\033[K  %6.1fs  %llu done  %llu errors  %.1f req/s  %lld in flight",
            t, (unsigned long long)done, (unsigned long long)e->r->n_err, t > 0 ? (double)e->r->n_resp / t : 0.0,
            (long long)e->in_flight + (long long)e->q_len);
    fflush(stderr);
}

static int wait_events(engine *e, struct epoll_event *evs, int max, uint64_t wake_ns) {
    uint64_t now = util_now_ns();
    uint64_t d = wake_ns > now ? wake_ns - now : 0;
    if (wake_ns == UINT64_MAX) d = 1000000000ull;      // nothing due: wake once a second anyway
    struct timespec ts = {.tv_sec = (time_t)(d / 1000000000ull), .tv_nsec = (long)(d % 1000000000ull)};
    int n = epoll_pwait2(e->ep, evs, max, &ts, NULL);
    if (n < 0 && errno == ENOSYS) n = epoll_wait(e->ep, evs, max, (int)((d + 999999) / 1000000));
    return n;
}

int load_run(const load_cfg *cfg, load_result *r, char *err, size_t errlen) {
    engine E = {0};
    engine *e = &E;
    e->cfg = cfg;
    e->r = r;
    bool open_loop = cfg->rate > 0;
    int rc = -1;
    struct rlimit rl;                                // a socket per worker, and some to spare
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < (rlim_t)cfg->c + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)cfg->c + 64 ? rl.rlim_max : (rlim_t)cfg->c + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    e->ep = epoll_create1(EPOLL_CLOEXEC);
    e->cs = calloc((size_t)cfg->c, sizeof *e->cs);
    e->idle = calloc((size_t)cfg->c, sizeof *e->idle);
    e->snap = calloc((size_t)cfg->c, sizeof *e->snap);
    e->rbuf = malloc(RBUF);
    if (cfg->records) r->rec = calloc(cfg->n > 0 && cfg->n < LOAD_MAX_RECORDS ? (size_t)cfg->n : LOAD_MAX_RECORDS, sizeof *r->rec);
    if (e->ep < 0 || !e->cs || !e->idle || !e->snap || !e->rbuf || (cfg->records && !r->rec)) {
        snprintf(err, errlen, "out of memory or file descriptors");
        goto out;
    }
    struct sigaction sa = {.sa_handler = on_sigint}, old_int;
    sigemptyset(&sa.sa_mask);
    g_interrupted = 0;
    sigaction(SIGINT, &sa, &old_int);

    e->t0 = util_now_ns();
    e->end_ns = cfg->duration_ns ? e->t0 + cfg->duration_ns : UINT64_MAX;
    e->rng = cfg->seed;
    int64_t per = cfg->n > 0 ? cfg->n / cfg->c : -1;  // hey: n / c requests per worker
    for (int i = 0; i < cfg->c; i++) {
        conn *c = &e->cs[i];
        c->fd = -1;
        c->left = open_loop ? -1 : per;
        if (cfg->stream) sse_init(&c->sse, SSE_EVENT_MAX_DEFAULT);
        c->next_ns = c->grid_ns = e->t0;
        if (!open_loop && c->left == 0) { c->phase = P_DONE; continue; }
        if (!open_loop && cfg->qps > 0) c->phase = P_WAIT;
        else make_idle(e, c);
    }
    if (open_loop) gen_arrival(e);
    e->next_scan_ns = e->t0 + SCAN_NS;
    e->next_progress_ns = e->t0 + PROGRESS_NS;
    struct epoll_event evs[256];

    for (;;) {
        uint64_t now = util_now_ns();
        if (g_interrupted && !r->interrupted) {
            r->interrupted = true;
            e->stopping = true;
        }
        if (now >= e->end_ns && !e->stopping) e->stopping = true;
        if (r->interrupted) {                        // abandon what is in flight
            for (int i = 0; i < cfg->c; i++) {
                conn *c = &e->cs[i];
                if (c->phase >= P_CONNECTING && c->phase <= P_READING) { conn_close(e, c); c->phase = P_DONE; e->in_flight--; }
            }
            r->n_unsent += e->q_len;
            e->q_len = 0;
            break;
        }
        // Dispatch.
        if (open_loop) {
            while (e->next_arrival_ns <= now) {
                if (!q_push(e, e->next_arrival_ns)) { count_error(r, "out of memory (arrival queue)"); r->n_err++; }
                gen_arrival(e);
            }
            if (e->stopping) e->next_arrival_ns = UINT64_MAX;
            while (e->q_len && e->n_idle) {
                conn *c = &e->cs[e->idle[--e->n_idle]];
                start_request(e, c, q_pop(e));
            }
        } else {
            int n = e->n_idle;                        // each ready worker starts once per pass
            e->n_idle = 0;
            memcpy(e->snap, e->idle, (size_t)n * sizeof *e->snap);
            for (int i = 0; i < n; i++) {
                conn *c = &e->cs[e->snap[i]];
                if (e->stopping) { c->phase = P_DONE; continue; }
                start_request(e, c, 0);
            }
            if (cfg->qps > 0)
                for (int i = 0; i < cfg->c; i++) {
                    conn *c = &e->cs[i];
                    if (c->phase != P_WAIT) continue;
                    if (e->stopping) c->phase = P_DONE;
                    else if (c->next_ns <= now) start_request(e, c, 0);
                }
        }
        if (now >= e->next_scan_ns) { scan_timeouts(e, now); e->next_scan_ns = now + SCAN_NS; }
        if (cfg->progress && now >= e->next_progress_ns) { progress(e, now, false); e->next_progress_ns = now + PROGRESS_NS; }
        // Done?
        bool more;
        if (open_loop) more = e->next_arrival_ns != UINT64_MAX || e->q_len || e->in_flight;
        else {
            more = e->in_flight > 0 || e->n_idle > 0;
            for (int i = 0; i < cfg->c && !more; i++) more = e->cs[i].phase == P_WAIT;
        }
        if (!more) break;
        // Sleep until something is due.
        uint64_t wake = UINT64_MAX;
        if (!open_loop && e->n_idle) wake = now;
        if (open_loop && e->next_arrival_ns < wake) wake = e->next_arrival_ns;
        if (!open_loop && cfg->qps > 0)
            for (int i = 0; i < cfg->c; i++)
                if (e->cs[i].phase == P_WAIT && e->cs[i].next_ns < wake) wake = e->cs[i].next_ns;
        if ((e->in_flight || e->q_len) && cfg->timeout_ns && e->next_scan_ns < wake) wake = e->next_scan_ns;
        if (cfg->progress && e->next_progress_ns < wake) wake = e->next_progress_ns;
        if (!e->stopping && e->end_ns < wake) wake = e->end_ns;
        int n = wait_events(e, evs, (int)(sizeof evs / sizeof evs[0]), wake);
        if (n < 0) {
            if (errno == EINTR) continue;
            snprintf(err, errlen, "epoll_wait: %s", strerror(errno));
            goto restore;
        }
        for (int i = 0; i < n; i++) {
            uint32_t k = (uint32_t)evs[i].data.u64, gen = (uint32_t)(evs[i].data.u64 >> 32);
            // A socket closed earlier in this batch may have left events behind.
            if (k < (uint32_t)cfg->c && e->cs[k].gen == gen) on_event_fd(e, &e->cs[k], evs[i].events);
        }
    }
    rc = 0;
restore:
    r->total_ns = util_now_ns() - e->t0;
    if (cfg->progress) progress(e, 0, true);
    sigaction(SIGINT, &old_int, NULL);
out:
    if (e->cs)
        for (int i = 0; i < cfg->c; i++) {
            conn_close(e, &e->cs[i]);
            if (cfg->stream) sse_free(&e->cs[i].sse);
            free(e->cs[i].gaps);
        }
    if (e->ep >= 0) close(e->ep);
    free(e->cs); free(e->idle); free(e->snap); free(e->rbuf); free(e->q);
    return rc;
}
