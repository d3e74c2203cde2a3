// util.h — small helpers shared by the library and the tools: monotonic
// time, strict number parsing for command-line flags. Thread-safe.
#ifndef LLMSCOPE_UTIL_H
#define LLMSCOPE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Monotonic clock in nanoseconds.
uint64_t util_now_ns(void);

// Parses the whole string as a number in [lo, hi]; false on junk or range.
bool util_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
bool util_parse_f64(const char *s, double lo, double hi, double *out);

// A growing text buffer: printf-append; after an allocation failure every
// later append is a no-op and `oom` stays set. s is NUL-terminated (or NULL
// before the first append); the caller frees it.
typedef struct util_buf { char *s; size_t len, cap; bool oom; } util_buf;
void util_buf_printf(util_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
