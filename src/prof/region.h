// region.h — the one call a phase boundary needs: it sets the thread's phase
// label (CPU samples pick it up), records the region in the tracer (with the
// CPU time the counters measured for it), and lets the counters attribute
// what the thread ran since the last boundary to the phase (pmu.h).
// Regions nest per thread (at most 8 deep is tracked for the label).
// Thread safety: touches only the calling thread's state; cheap when tracing
// is off (a label store and one branch).
#ifndef LLMSCOPE_PROF_REGION_H
#define LLMSCOPE_PROF_REGION_H

#include <stdint.h>

// phase: a string literal. req: the request it works for (0 = none).
void prof_region_begin(const char *phase, uint64_t req);
// Ends the innermost region (phase must name it); a and akey (or NULL) are
// recorded with the region, e.g. ("tokens", n).
void prof_region_end(const char *phase, const char *akey, int64_t a);

#endif
