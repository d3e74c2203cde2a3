// pmu.h — per-thread performance counters aggregated per phase: a
// perf_event_open group per thread (hardware: cycles, instructions, cache and
// branch events where the PMU has them; software: task-clock, context
// switches, page faults), read at region boundaries and charged to the phase
// that was current, so /debug/counters can say how well each phase runs (IPC,
// cache-miss rate, MPKI, branch-miss rate, CPU ns per token). Counters are
// always read with time_enabled/time_running and scaled per interval.
// Where the kernel refuses hardware events the JSON says so and why; where it
// refuses perf_event_open entirely, CPU time, context switches and page faults
// come from clock_gettime(CLOCK_THREAD_CPUTIME_ID) and getrusage(RUSAGE_THREAD).
//
// Environment: LLMSCOPE_PMU=off disables everything (the boundary calls cost
// one branch). LLMSCOPE_PMU_FAIL=eacces|enosys|kernel is for tests: it makes
// perf_event_open fail as under perf_event_paranoid (eacces), under a seccomp
// filter (enosys), or only for events that include the kernel (kernel, as
// paranoid=2 does for an unprivileged user).
//
// Thread safety: pmu_phase_enter/_exit touch only the calling thread's state
// (no lock; the first call in a thread opens its counters and takes a lock
// once). The readers (pmu_counters_json, pmu_prometheus) take a lock and may
// be called from any thread; a thread's figures are as of its last boundary.
// Not async-signal-safe.
#ifndef LLMSCOPE_PROF_PMU_H
#define LLMSCOPE_PROF_PMU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pmu_status {
    bool hardware;        // hardware events are counted
    bool software;        // software figures are collected (perf_event or rusage)
    char why[256];        // why hardware events are refused (errno text, perf_event_paranoid), or ""
} pmu_status;

// Probes once what the kernel grants. Never fails; later calls do nothing.
// The boundary calls and readers call it themselves when needed.
void pmu_init(void);
pmu_status pmu_get_status(void);

// Region boundaries of the calling thread. phase is a static string
// ("tokenize", "prefill", "decode", …) or NULL for "none". Each call reads the
// thread's counters (one read() per group) and adds what ran since the
// previous boundary to the phase that was current; enter then makes `phase`
// current, exit returns to the enclosing one (a per-thread stack, 8 deep;
// deeper regions are charged to the 8th). The first call in a thread opens
// its counters; they are closed, and the thread's totals kept, when it exits.
void pmu_phase_enter(const char *phase);
void pmu_phase_exit(const char *phase);

// What the region that the calling thread's latest pmu_phase_exit ended ran,
// inclusive of the regions nested in it, so a tracer can put it on the
// region's slice. false when counting is off, the thread has ended no region
// yet, or the region was nested deeper than the stack.
typedef struct pmu_region_counts {
    uint64_t task_clock_ns;
    uint64_t cycles, instructions;          // 0 unless hardware is true
    uint64_t context_switches, page_faults;
    bool hardware;
} pmu_region_counts;
bool pmu_last_region(pmu_region_counts *out);

// Tells the counters that `phase` produced n tokens (any thread), so the JSON
// gives cpu_ns_per_token for it.
void pmu_add_tokens(const char *phase, uint64_t n);

// Per-phase and per-role aggregates as JSON (malloc'd, NUL-terminated; *len
// set when len is not NULL; NULL only when out of memory). seconds > 0 sleeps
// that long and returns the change over that window; otherwise the totals
// since start. Hardware fields are null when hardware events are unavailable.
char *pmu_counters_json(int seconds, size_t *len);

// Prometheus text exposition (HELP/TYPE lines) of the per-phase figures and
// llmscope_pmu_hardware_available, malloc'd, for the server's /metrics.
char *pmu_prometheus(size_t *len);

#endif
