// fuzz_evidence.c — libFuzzer target for the readers of a capture's text
// evidence (src/util/evidence.c): the first byte picks the reader (threads
// dump, Prometheus text, trace JSON); the rest is its input, copied so reads
// past the end are caught. Checks: results stay within their bounds.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "util/evidence.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size) return 0;
    size_t n = size - 1;
    char *copy = malloc(n ? n : 1);
    if (!copy) return 0;
    memcpy(copy, data + 1, n);
    char err[256];
    switch (data[0] % 3) {
    case 0: {
        ev_threads t;
        if (ev_threads_parse(copy, n, "fuzz", &t, err, sizeof err) == 0) {
            for (size_t i = 0; i < t.n; i++) {
                if (t.t[i].n_frames < 0 || t.t[i].n_frames > EV_FRAMES) abort();
                if (strlen(t.t[i].name) >= EV_NAME || strlen(t.t[i].wait_on) >= EV_NAME) abort();
            }
            ev_threads_free(&t);
        }
        break;
    }
    case 1: {
        ev_metrics m;
        if (ev_metrics_parse(copy, n, "fuzz", &m, err, sizeof err) == 0) {
            bool f;
            (void)ev_metrics_sum(&m, "llmscope_num_requests_running", NULL, &f);
            ev_metrics_free(&m);
        }
        break;
    }
    default: {
        ev_trace t;
        if (ev_trace_parse(copy, n, "fuzz", &t, err, sizeof err) == 0) {
            for (size_t i = 0; i < t.n_req; i++)
                if (t.req[i].t_end < t.req[i].t_begin) abort();
            for (size_t i = 1; i < t.n_gaps; i++)
                if (t.gaps_us[i] < t.gaps_us[i - 1]) abort();
            ev_trace_free(&t);
        }
        break;
    }
    }
    free(copy);
    return 0;
}
