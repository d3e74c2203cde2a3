// debug.c — the /debug/* endpoints (see debug.h): /debug/pprof/* from the
// profiler (pprof.h), /debug/trace and /debug/trace/flight from the tracer.
#include "debug.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "prof/pmu.h"
#include "prof/pprof.h"
#include "prof/trace.h"
#include "util/util.h"

static int from_prof(prof_status st, prof_response *pr, debug_response *out) {
    if (st != PROF_OK) {
        snprintf(out->err, sizeof out->err, "%s", pr->error[0] ? pr->error : prof_strerror(st));
        prof_response_free(pr);
        return prof_http_status(st);
    }
    out->body = (char *)pr->body;
    out->len = pr->len;
    out->ctype = pr->content_type;
    return 200;
}

// GET /debug/trace?seconds=N: trace the next N seconds (default 5, at most
// 60) and return them. With the flight recorder on, tracing already runs.
static int trace_capture(debug_get_fn get, void *cls, debug_response *out) {
    const char *s = get(cls, "seconds");
    double secs = 5;
    if (s && !util_parse_f64(s, 0.001, 60, &secs)) {
        snprintf(out->err, sizeof out->err, "seconds must be a number from 0.001 to 60");
        return 400;
    }
    trace_hold();
    uint64_t t0 = util_now_ns();
    struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {}
    uint64_t t1 = util_now_ns();
    size_t len;
    char *j = trace_export_json(t0, t1, &len);
    trace_release();
    if (!j) { snprintf(out->err, sizeof out->err, "out of memory"); return 500; }
    out->body = j;
    out->len = len;
    out->ctype = "application/json";
    out->disposition = "attachment; filename=\"trace.json\"";
    return 200;
}

// GET /debug/trace/flight: the flight recorder's last window.
static int trace_flight(debug_response *out) {
    if (!trace_flight_on()) {
        snprintf(out->err, sizeof out->err, "the flight recorder is off (start llm-server with --enable-trace=true)");
        return 409;
    }
    uint64_t now = util_now_ns(), w = trace_flight_window_ns();
    size_t len;
    char *j = trace_export_json(now > w ? now - w : 0, now, &len);
    if (!j) { snprintf(out->err, sizeof out->err, "out of memory"); return 500; }
    out->body = j;
    out->len = len;
    out->ctype = "application/json";
    out->disposition = "attachment; filename=\"flight.json\"";
    return 200;
}

// GET /debug/counters[?seconds=N]: per-phase counters, cumulative or the
// change over the next N seconds (at most 600).
static int counters(debug_get_fn get, void *cls, debug_response *out) {
    const char *s = get(cls, "seconds");
    int64_t secs = 0;
    if (s && !util_parse_i64(s, 0, 600, &secs)) {
        snprintf(out->err, sizeof out->err, "seconds must be an integer from 0 to 600");
        return 400;
    }
    size_t len;
    char *j = pmu_counters_json((int)secs, &len);
    if (!j) { snprintf(out->err, sizeof out->err, "out of memory"); return 500; }
    out->body = j;
    out->len = len;
    out->ctype = "application/json";
    return 200;
}

int debug_handle(const char *url, debug_get_fn get, void *cls, debug_response *out) {
    if (!strcmp(url, "/debug/counters")) return counters(get, cls, out);
    if (!strcmp(url, "/debug/pprof") || !strncmp(url, "/debug/pprof/", 13)) {
        const char *name = url[12] ? url + 13 : "";
        prof_response pr = {0};
        prof_status st = prof_pprof_handle(name, get, cls, &pr);
        int code = from_prof(st, &pr, out);
        if (code == 200 && out->ctype && strstr(out->ctype, "octet-stream")) out->disposition = "attachment; filename=\"profile\"";
        return code;
    }
    if (!strcmp(url, "/debug/trace")) return trace_capture(get, cls, out);
    if (!strcmp(url, "/debug/trace/flight")) return trace_flight(out);
    return 0;
}
