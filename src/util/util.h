// util.h — small helpers shared by the library and the tools: monotonic
// time, strict number parsing for command-line flags, memory in transparent
// huge pages. Thread-safe.
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

// Memory for data read over and over (model weights, the bandwidth probe's
// buffer): an anonymous private mapping aligned to 2 MiB and advised for
// transparent huge pages (MADV_HUGEPAGE), so the kernel backs it with 2 MiB
// pages where it can and streaming it costs one TLB entry per 2 MiB, not per
// 4 KiB. Zero-filled. *len receives the mapped length to pass to
// util_huge_free(). NULL when the mapping fails. A non-NULL `name` (a model
// file's path) lists the memory in util_huge_regions() until it is freed,
// so the heap profile can show it.
void *util_huge_alloc(size_t n, size_t *len, const char *name);
void util_huge_free(void *p, size_t len);
// The named util_huge_alloc() memory that is live (at most `max` copied),
// each with its resident bytes and bytes in huge pages (-1 when
// /proc/self/smaps cannot be read), read while no region can be freed.
#define UTIL_MAX_REGIONS 16   // named regions listed at once; later ones are not listed
typedef struct util_region { const void *p; size_t len; int64_t rss, huge; char name[256]; } util_region;
int util_huge_regions(util_region *out, int max);
// Resident bytes and bytes in huge pages of the mapping that holds p (Rss and
// AnonHugePages in /proc/self/smaps); false when that cannot be read.
bool util_mapping_usage(const void *p, int64_t *rss, int64_t *huge);
// The kernel's transparent huge page mode for 2 MiB pages: "always",
// "madvise" or "never" (the bracketed word of
// /sys/kernel/mm/transparent_hugepage/hugepages-2048kB/enabled where the
// kernel has per-size settings and it is not "inherit", else of
// .../transparent_hugepage/enabled), or "unavailable" where neither can be
// read.
const char *util_thp_mode(void);
// Bytes this process could still take without pushing others out:
// MemAvailable, or less where a cgroup v2 memory.max is lower; -1 when
// unknown.
int64_t util_mem_available(void);
// Bytes of the mapping that holds p which sit in huge pages (AnonHugePages in
// /proc/self/smaps); -1 when that cannot be read.
int64_t util_huge_bytes(const void *p);

#endif
