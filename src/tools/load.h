// load.h — the engine of `llmscope load`: one thread, epoll, non-blocking
// sockets, a minimal HTTP/1.1 client with keep-alive. It runs either hey's
// closed loop (-c workers, each sending its next request when the last one
// ends, optionally paced by -q) or an open loop (--rate arrivals per second,
// latency counted from each arrival's intended send time), and records
// hey's figures plus, with --stream, the LLM serving metrics. Not thread-safe:
// one run at a time per load_result.
#ifndef LLMSCOPE_LOAD_H
#define LLMSCOPE_LOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include "util/hdr.h"

typedef struct load_req {           // one prepared request, written as is
    char *buf;
    size_t len;                     // bytes
} load_req;

typedef struct load_cfg {
    struct sockaddr_storage addr;   // the target, resolved once
    socklen_t addrlen;
    const load_req *reqs;           // cycled through, request k uses reqs[k % n_reqs]
    size_t n_reqs;
    bool head;                      // the method is HEAD (responses have no body)
    int64_t n;                      // requests (closed loop: n / c per worker; open loop: arrivals); 0 = until duration
    int c;                          // workers (connections)
    double qps;                     // closed loop: per-worker rate limit (requests/s), 0 = none
    uint64_t duration_ns;           // stop starting requests after this long, 0 = none
    double rate;                    // open loop: total arrivals/s; 0 = closed loop
    bool poisson;                   // open loop: exponential gaps instead of constant ones
    uint64_t seed;                  // for poisson arrivals
    uint64_t timeout_ns;            // per request (open loop: from the intended send time); 0 = none
    bool keepalive;
    bool stream;                    // parse the body as server-sent events, LLM metrics
    double slo_ttft_ms, slo_tpot_ms, slo_e2e_ms;  // goodput bounds, 0 = not set
    bool records;                   // keep per-request records (for -o csv), at most LOAD_MAX_RECORDS
    bool progress;                  // a live line on stderr
} load_cfg;

#define LOAD_MAX_RECORDS 1000000    // as hey's maxResult
#define LOAD_MAX_ERRORS 64          // distinct error messages kept; the rest count as "other errors"

typedef struct load_record {        // one request, times in seconds (hey's CSV columns)
    float total, conn, write, wait, read, offset;
    int status;
} load_record;

typedef struct load_stat {          // sum / min / max of a phase's duration (ns)
    double sum;
    uint64_t min, max, n;
} load_stat;

typedef struct load_result {
    uint64_t total_ns;              // wall time of the run
    uint64_t n_resp;                // responses received (any status)
    uint64_t n_err;                 // requests that ended in an error
    uint64_t n_unsent;              // open loop: arrivals never sent (interrupted)
    uint64_t bytes;                 // response body bytes (de-chunked) of all responses
    hdr_hist *lat;                  // response latency (ns); open loop: from the intended send time
    hdr_hist *lat_sent;             // open loop: from the actual send time (the uncorrected view)
    load_stat conn, write, wait, read;  // hey's details: connect, request write, wait for first byte, read
    uint64_t status[1000];          // responses per status code
    struct { char msg[160]; uint64_t n; } err[LOAD_MAX_ERRORS];
    int n_err_kinds;
    uint64_t err_other;
    // With --stream (vLLM's benchmark definitions).
    uint64_t llm_ok, llm_fail;      // completed: 2xx, at least one token, no error event
    uint64_t llm_good;              // completed and within every SLO given
    uint64_t out_tokens;            // output tokens of completed requests
    hdr_hist *ttft, *tpot, *itl, *e2e;  // ns
    load_record *rec;               // with cfg.records
    uint64_t n_rec;
    bool interrupted;               // SIGINT ended the run early
} load_result;

// Allocates the histograms; false when out of memory.
bool load_result_init(load_result *r);
void load_result_free(load_result *r);
// Runs the load. Returns 0, or -1 with a message in err for a failure that
// stops the run before it starts (no socket, no epoll). Connection and
// protocol errors during the run are counted in r->err, never fatal.
int load_run(const load_cfg *cfg, load_result *r, char *err, size_t errlen);

#endif
