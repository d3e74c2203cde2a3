// hdr.h — a log-linear ("HDR") histogram of non-negative integer values,
// typically nanoseconds: values below 2048 are counted exactly, larger ones in
// buckets whose width is at most 1/1024 of their lower bound, so any reported
// percentile is within 1/2048 of a recorded value (relative). Values above
// HDR_MAX are clamped to it (and counted in hdr_clamped()). One histogram is
// single-threaded; there is no global state.
#ifndef LLMSCOPE_HDR_H
#define LLMSCOPE_HDR_H

#include <stdbool.h>
#include <stdint.h>

#define HDR_SUB_BITS 11                       // 2^11 sub-buckets per power of two
#define HDR_MAX_BITS 43                       // values < 2^43 (ns: about 2.4 hours)
#define HDR_MAX ((UINT64_C(1) << HDR_MAX_BITS) - 1)

typedef struct hdr_hist hdr_hist;

hdr_hist *hdr_new(void);                      // NULL when out of memory
void hdr_free(hdr_hist *h);
void hdr_reset(hdr_hist *h);
void hdr_add(hdr_hist *h, uint64_t v);
void hdr_add_n(hdr_hist *h, uint64_t v, uint64_t n);
bool hdr_merge(hdr_hist *dst, const hdr_hist *src); // adds src's counts into dst

uint64_t hdr_count(const hdr_hist *h);
uint64_t hdr_clamped(const hdr_hist *h);      // values that were above HDR_MAX
uint64_t hdr_min(const hdr_hist *h);          // exact; 0 when empty
uint64_t hdr_max(const hdr_hist *h);          // exact (after clamping); 0 when empty
double hdr_mean(const hdr_hist *h);           // exact; 0 when empty
double hdr_stddev(const hdr_hist *h);         // population standard deviation
// The value at percentile p (0..100) by nearest rank: the smallest recorded
// value v such that at least p% of the values are <= v, to within the bucket
// resolution (the bucket's midpoint, clamped to [min, max]). 0 when empty.
uint64_t hdr_percentile(const hdr_hist *h, double p);
// How many recorded values are <= v, at bucket resolution (a bucket counts
// when its lowest possible value, at least min, is <= v).
uint64_t hdr_count_le(const hdr_hist *h, uint64_t v);

// The bucket a value falls in and the bucket's value range [lo, hi], for tests.
uint32_t hdr_bucket_of(uint64_t v);
void hdr_bucket_range(uint32_t b, uint64_t *lo, uint64_t *hi);

#endif
