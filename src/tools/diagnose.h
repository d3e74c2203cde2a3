// diagnose.h — what `llmscope collect`, `report` and `diagnose` share: the
// capture's options and file names, and the two steps as functions so
// `diagnose` runs them in one process.
#ifndef LLMSCOPE_DIAGNOSE_H
#define LLMSCOPE_DIAGNOSE_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct collect_opts {
    const char *url;        // http://host:port of the server
    double seconds;         // the capture window
    const char *load;       // `llmscope load` arguments, NULL = no load of our own
    bool perf;              // also `perf record -g -p PID`
    pid_t pid;              // the server's pid; 0 = find it by its listening port
    const char *dir;        // output directory (created)
    bool quiet;             // no progress lines on stderr
} collect_opts;

// Captures the evidence into o->dir (see docs/diagnose.md). Returns 0 when the
// capture ran (some instruments may be unavailable; the manifest says why),
// 1 on a failure that left no usable capture.
int collect_run(const collect_opts *o);

typedef enum report_format { REPORT_TEXT, REPORT_MD, REPORT_HTML } report_format;

// Reads the capture in dir and writes the report to out. Returns 0, or 1 when
// the capture cannot be read.
int report_run(const char *dir, report_format fmt, const char *out_path);

#endif
