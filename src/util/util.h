// util.h — small helpers shared by the library and the tools: monotonic
// time, strict number parsing for command-line flags. Thread-safe.
#ifndef LLMSCOPE_UTIL_H
#define LLMSCOPE_UTIL_H

#include <stdbool.h>
#include <stdint.h>

// Monotonic clock in nanoseconds.
uint64_t util_now_ns(void);

// Parses the whole string as a number in [lo, hi]; false on junk or range.
bool util_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
bool util_parse_f64(const char *s, double lo, double hi, double *out);

#endif
