// evidence.h — readers of the server's text evidence for `llmscope report`:
// the threads dump (/debug/pprof/threads?debug=2), the Prometheus text format
// (/metrics) and the execution trace (/debug/trace, Chrome Trace Event JSON),
// each reduced to the figures the diagnosis needs.
//
// Input is untrusted (it comes from a server over the network, or from a
// capture directory anyone may have edited): lines, names and counts are
// bounded, numbers are parsed strictly, and a refusal is one line
// "NAME: line L: why" (or the JSON parser's message). No global state;
// thread-safe.
#ifndef LLMSCOPE_EVIDENCE_H
#define LLMSCOPE_EVIDENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EV_MAX_INPUT ((size_t)512 << 20)   // bytes of any one input
#define EV_MAX_THREADS 65536               // threads kept from a dump
#define EV_MAX_METRICS 1000000             // samples kept from a metrics page
#define EV_MAX_REQUESTS 1000000            // requests kept from a trace
#define EV_MAX_NAMED 256                   // distinct wait objects / threads kept from a trace
#define EV_NAME 64                         // bytes kept of a name (NUL included)
#define EV_FRAMES 8                        // innermost frames kept per thread

// ---- threads dump -------------------------------------------------------------

typedef struct ev_thread {
    char name[EV_NAME];            // "tokenizer-1"
    char role[EV_NAME];            // "tokenizer"
    int64_t tid;
    bool waiting;                  // blocked on a named primitive
    char wait_on[EV_NAME];         // its name, "" when running
    double wait_ms;                // how long it has waited
    char phase[EV_NAME];           // the phase label, "" when none
    int64_t request;               // the request label, 0 when none
    int n_frames;
    char frames[EV_FRAMES][EV_NAME];   // innermost first
} ev_thread;

typedef struct ev_threads {
    ev_thread *t;
    size_t n;
} ev_threads;

// Parses the debug=2 text: "thread N \"NAME\" [role R, tid T, waiting on \"O\"
// for MS ms | running] {request=I, phase=P}:" followed by frame lines
// ("func()" then a tab-indented "file:line" line). Returns 0, or -1 with a message.
int ev_threads_parse(const char *text, size_t len, const char *name, ev_threads *out, char *err, size_t errlen);
void ev_threads_free(ev_threads *t);

// ---- Prometheus text format ------------------------------------------------------

typedef struct ev_metric {
    char *name;     // metric name
    char *labels;   // the text between the braces, "" when none
    double value;
} ev_metric;

typedef struct ev_metrics {
    ev_metric *m;
    size_t n;
} ev_metrics;

// Parses "name{labels} value [timestamp]" lines; comments and blank lines are
// skipped. Returns 0, or -1 with a message.
int ev_metrics_parse(const char *text, size_t len, const char *name, ev_metrics *out, char *err, size_t errlen);
// Sum of the samples named `metric` whose labels contain `label_sub` (NULL:
// any). *found says whether any matched.
double ev_metrics_sum(const ev_metrics *m, const char *metric, const char *label_sub, bool *found);
void ev_metrics_free(ev_metrics *m);

// ---- execution trace ---------------------------------------------------------------

// One request seen whole in the window (its task began and ended in it). Times
// are µs of the trace clock; a stage the trace did not show is -1.
typedef struct ev_request {
    int64_t id;
    int64_t tid;                   // the HTTP thread that submitted it
    double t_begin, t_end;         // task begin (arrival) and end (answered)
    double t_submit;               // submit region start
    double t_tok0, t_tok1;         // tokenize region
    double t_first, t_last;        // first and last token instants
    int64_t tokens;                // token instants seen
    double lock_wait_us;           // `wait NAME` slices on the request's HTTP thread before submit
} ev_request;

// Waits on one named primitive, split by the role of the waiting thread.
typedef struct ev_wait {
    char on[EV_NAME];
    char role[EV_NAME];
    int64_t count;
    double total_us, max_us;
} ev_wait;

// Per trace thread: its name, role (the name without its "-N" suffix) and
// time inside regions by kind.
typedef struct ev_tthread {
    int64_t tid;
    char name[EV_NAME];
    char role[EV_NAME];
    double busy_us[8];            // tokenize, prefill, decode, sample, step, submit, send+respond, other regions
    double wait_us;               // in `wait NAME` slices
} ev_tthread;

enum { EV_B_TOKENIZE, EV_B_PREFILL, EV_B_DECODE, EV_B_SAMPLE, EV_B_STEP, EV_B_SUBMIT, EV_B_SEND, EV_B_OTHER, EV_B_N };

// A counter track's summary.
typedef struct ev_counter {
    int64_t n;
    double max, sum;              // mean = sum / n
} ev_counter;

typedef struct ev_trace {
    double t0, t1;                // first and last timestamps (µs)
    ev_request *req;              // whole requests, in order of arrival
    size_t n_req;
    int64_t tasks_begun;          // request tasks begun in the window
    ev_wait *waits;
    size_t n_waits;
    ev_tthread *threads;
    size_t n_threads;
    int64_t tokens;               // token instants
    int64_t steps;                // scheduler step slices
    double step_us;               // their total duration
    int64_t *gaps_us;             // gap_us of tokens after a request's first (sorted)
    size_t n_gaps;
    double *sample_us;            // each `sample` slice's duration per token it sampled (µs, sorted)
    size_t n_sample;
    ev_counter q_tokenize, q_admit, running, batch_tokens, tokens_per_s;
} ev_trace;

// Reduces Chrome Trace Event JSON (as /debug/trace writes it) to an ev_trace.
// Returns 0, or -1 with a message.
int ev_trace_parse(const char *json, size_t len, const char *name, ev_trace *out, char *err, size_t errlen);
void ev_trace_free(ev_trace *t);

// The p-th percentile (0..100, nearest rank) of n sorted values; 0 when n is 0.
double ev_pct(const double *sorted, size_t n, double p);

#endif
