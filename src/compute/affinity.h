// affinity.h — where compute threads run: `--cpu-affinity LIST` pins compute
// thread i to the i-th CPU of LIST (round robin when there are more threads
// than CPUs), and `--numa MODE` places them by NUMA node:
//   off         no placement (the default; the kernel schedules)
//   distribute  threads spread round robin over the nodes, each pinned to a
//               CPU of its node (as llama.cpp's --numa distribute)
//   isolate     every thread on the CPUs of the node the process starts on
// The node layout comes from /sys/devices/system/node; a machine without it,
// or with one node, has one node and the plan says so. Only CPUs the process
// may run on (sched_getaffinity) are used.
// Thread safety: aff_plan is pure; aff_pin_self affects the calling thread.
#ifndef LLMSCOPE_AFFINITY_H
#define LLMSCOPE_AFFINITY_H

#include <stdbool.h>
#include <stddef.h>

#define AFF_MAX_CPUS 1024

typedef enum { AFF_NUMA_OFF, AFF_NUMA_DISTRIBUTE, AFF_NUMA_ISOLATE } aff_numa;

typedef struct aff_plan {
    int n_threads;
    int cpu[AFF_MAX_CPUS];     // cpu[i] for compute thread i; -1 = not pinned
    int n_nodes;               // NUMA nodes seen (1 without sysfs)
    char summary[256];         // one line for logs: "2 threads pinned to CPUs 0,1; 1 NUMA node"
} aff_plan;

// Parses "0-3,6,8-9" into ascending unique CPU numbers. false with a message.
bool aff_parse_list(const char *s, int *cpus, int max, int *n, char *err, size_t errlen);
// "off", "distribute", "isolate" (also "" = off). false on anything else.
bool aff_parse_numa(const char *s, aff_numa *out);

// The node of each CPU (node_of[cpu], -1 = unknown) from sysfs root `root`
// (normally "/sys/devices/system/node"); returns the number of nodes (>= 1).
int aff_read_nodes(const char *root, int *node_of, int max_cpus);

// Plans placement for n_threads. `list` may be NULL (no --cpu-affinity).
// `allowed` / `n_allowed`: the CPUs the process may run on; `node_of`, `n_nodes`
// from aff_read_nodes; `start_cpu` the CPU the process runs on now.
// false with a message when the list names CPUs the process may not use.
bool aff_make_plan(int n_threads, const int *list, int n_list, aff_numa numa, const int *allowed, int n_allowed,
                   const int *node_of, int n_nodes, int start_cpu, aff_plan *plan, char *err, size_t errlen);

// Reads this process's allowed CPUs and node layout and makes the plan.
bool aff_plan_for_process(int n_threads, const char *list, const char *numa, aff_plan *plan, char *err,
                          size_t errlen);

// Pins the calling thread to one CPU; cpu < 0 does nothing. false on error.
bool aff_pin_self(int cpu);

#endif
