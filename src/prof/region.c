// region.c — phase boundaries (see region.h).
#include "region.h"

#include "pmu.h"
#include "thread.h"
#include "trace.h"

#define MAX_DEPTH 8

static __thread const char *stack[MAX_DEPTH];
static __thread uint64_t reqs[MAX_DEPTH];
static __thread int depth;

void prof_region_begin(const char *phase, uint64_t req) {
    if (depth < MAX_DEPTH) { stack[depth] = phase; reqs[depth] = req; }
    depth++;
    prof_label_phase(phase);
    if (req) prof_label_req(req);
    pmu_phase_enter(phase);
    trace_region_begin(phase, req, NULL, 0);
}

void prof_region_end(const char *phase, const char *akey, int64_t a) {
    pmu_phase_exit(phase);
    if (TRACE_ON()) {   // the counters of the region ride on its slice
        pmu_region_counts pc;
        bool have = pmu_last_region(&pc);
        trace_region_end_(phase, akey, a, have ? "cpu_ns" : NULL, have ? (int64_t)pc.task_clock_ns : 0);
    }
    if (depth > 0) depth--;
    const char *outer = depth > 0 && depth <= MAX_DEPTH ? stack[depth - 1] : NULL;
    uint64_t oreq = depth > 0 && depth <= MAX_DEPTH ? reqs[depth - 1] : 0;
    prof_label_phase(outer);
    prof_label_req(oreq);
}
