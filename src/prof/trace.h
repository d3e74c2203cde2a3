// trace.h — the execution tracer: per-thread rings of compact binary events
// (64 bytes, monotonic ns timestamps) written without locks, exported as
// Chrome Trace Event JSON that Perfetto and chrome://tracing load. With the
// flight recorder on, tracing never stops and the rings hold the last
// seconds; a capture (/debug/trace?seconds=N) switches tracing on for its
// window when the recorder is off.
//
// Events: regions (slices that nest per thread), tasks (one async track per
// id, e.g. a request), instants (logs), counters, flows (arrows that tie one
// id's hops across threads), and waits (a slice with a known start and end).
// Names and argument keys are static strings (literals): the rings hold the
// pointers.
//
// Thread safety: recording touches only the calling thread's ring; export
// reads every ring while writers continue (events overwritten during the copy
// are dropped). Recording from a thread the registry does not know is a no-op.
// Not async-signal-safe.
#ifndef LLMSCOPE_PROF_TRACE_H
#define LLMSCOPE_PROF_TRACE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sync.h"

// Capacity of each thread's ring (events); set before the first event.
#define TRACE_DEFAULT_EVENTS (1u << 15)   // 32768 events, 2 MiB per thread

// Nonzero while events are recorded: the recording calls test it first, so
// tracing off costs one predictable branch.
extern _Atomic int trace_on;

void trace_init(uint32_t events_per_thread);
// The flight recorder keeps tracing on permanently (window: how far back
// /debug/trace/flight reaches).
void trace_flight_start(uint64_t window_ns);
bool trace_flight_on(void);
uint64_t trace_flight_window_ns(void);
// A capture holds tracing on while it lasts (counted: captures may overlap).
void trace_hold(void);
void trace_release(void);

void trace_region_begin_(const char *name, uint64_t id, const char *akey, int64_t a);
// Ends the innermost region named `name`, adding up to two arguments.
void trace_region_end_(const char *name, const char *akey, int64_t a, const char *bkey, int64_t b);
void trace_instant_(const char *name, uint64_t id, const char *akey, int64_t a, const char *bkey, int64_t b);
void trace_counter_(const char *name, double v);
void trace_task_begin_(const char *name, uint64_t id, const char *akey, int64_t a);
void trace_task_end_(const char *name, uint64_t id, const char *akey, int64_t a, const char *bkey, int64_t b);
// Flow arrows for id: phase 0 starts the arrow, 1 passes through, 2 ends it.
// Each binds to the region that encloses it on its thread.
void trace_flow_(uint64_t id, int phase);
// A finished wait on a named primitive, [t0_ns, t1_ns].
void trace_wait_(const char *name, uint64_t t0_ns, uint64_t t1_ns);
// One generated token of request id: its index, token id, and the gap since
// the request's previous token (an instant "token" with those three args).
void trace_token_(uint64_t id, int64_t index, int64_t token, uint64_t gap_ns);

#define TRACE_ON() __builtin_expect(atomic_load_explicit(&trace_on, memory_order_relaxed) != 0, 0)
#define trace_region_begin(...) do { if (TRACE_ON()) trace_region_begin_(__VA_ARGS__); } while (0)
#define trace_region_end(name, akey, a) do { if (TRACE_ON()) trace_region_end_(name, akey, a, NULL, 0); } while (0)
#define trace_instant(...) do { if (TRACE_ON()) trace_instant_(__VA_ARGS__); } while (0)
#define trace_counter(...) do { if (TRACE_ON()) trace_counter_(__VA_ARGS__); } while (0)
#define trace_task_begin(...) do { if (TRACE_ON()) trace_task_begin_(__VA_ARGS__); } while (0)
#define trace_task_end(...) do { if (TRACE_ON()) trace_task_end_(__VA_ARGS__); } while (0)
#define trace_flow(...) do { if (TRACE_ON()) trace_flow_(__VA_ARGS__); } while (0)
#define trace_wait(...) do { if (TRACE_ON()) trace_wait_(__VA_ARGS__); } while (0)
#define trace_token(...) do { if (TRACE_ON()) trace_token_(__VA_ARGS__); } while (0)

// A prof_sync wait hook that records every wait on a named primitive
// (install with prof_sync_set_hook).
void trace_sync_hook(prof_wait_kind kind, const char *name, uint64_t t0_ns, uint64_t t1_ns);

// Chrome Trace Event JSON of the events in [from_ns, to_ns] (monotonic):
// malloc'd, NUL-terminated, NULL on OOM. Slices are emitted as complete
// ("X") events matched per thread, so they always nest and close: a region
// still open at to_ns ends there, one begun before from_ns starts there.
char *trace_export_json(uint64_t from_ns, uint64_t to_ns, size_t *len);

// Writes trace_export_json(from, to) to dir/name; 0 or -1 (errno set).
int trace_write_file(const char *dir, const char *name, uint64_t from_ns, uint64_t to_ns);

// Events recorded so far and dropped by ring overwrite (for tests and docs).
void trace_stats(uint64_t *recorded, uint64_t *overwritten);

#endif
