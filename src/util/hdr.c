// hdr.c — see hdr.h. Bucket layout (S = HDR_SUB_BITS, H = 2^(S-1)): a value
// v < 2^S is bucket v; otherwise, with m the index of v's top bit and
// shift = m - (S - 1), the bucket is shift * H + (v >> shift), which lies in
// [shift * H + H, shift * H + 2H): H buckets per power of two, each 2^shift wide.
#include "hdr.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SUB (UINT32_C(1) << HDR_SUB_BITS)
#define HALF (SUB / 2)
#define NBUCKETS ((uint32_t)(HDR_MAX_BITS - HDR_SUB_BITS + 1) * HALF + HALF)

struct hdr_hist {
    uint64_t count, clamped, min, max;
    double mean, m2;                  // Welford running mean and sum of squared deviations
    uint64_t counts[NBUCKETS];
};

uint32_t hdr_bucket_of(uint64_t v) {
    if (v > HDR_MAX) v = HDR_MAX;
    if (v < SUB) return (uint32_t)v;
    int m = 63 - __builtin_clzll(v);
    int shift = m - (HDR_SUB_BITS - 1);
    return (uint32_t)shift * HALF + (uint32_t)(v >> shift);
}

void hdr_bucket_range(uint32_t b, uint64_t *lo, uint64_t *hi) {
    if (b < SUB) { *lo = *hi = b; return; }
    uint32_t shift = b / HALF - 1;
    uint64_t top = b - shift * HALF;               // in [HALF, SUB)
    *lo = top << shift;
    *hi = *lo + ((UINT64_C(1) << shift) - 1);
}

hdr_hist *hdr_new(void) { return calloc(1, sizeof(hdr_hist)); }
void hdr_free(hdr_hist *h) { free(h); }
void hdr_reset(hdr_hist *h) { memset(h, 0, sizeof *h); }

void hdr_add_n(hdr_hist *h, uint64_t v, uint64_t n) {
    if (!n) return;
    if (v > HDR_MAX) { v = HDR_MAX; h->clamped += n; }
    if (!h->count || v < h->min) h->min = v;
    if (!h->count || v > h->max) h->max = v;
    // Welford's update for n equal values at once (Chan et al.'s pairwise form).
    double nb = (double)n, na = (double)h->count, d = (double)v - h->mean;
    h->count += n;
    h->mean += d * nb / (double)h->count;
    h->m2 += d * d * na * nb / (double)h->count;
    h->counts[hdr_bucket_of(v)] += n;
}

void hdr_add(hdr_hist *h, uint64_t v) { hdr_add_n(h, v, 1); }

bool hdr_merge(hdr_hist *dst, const hdr_hist *src) {
    if (!src->count) return true;
    if (!dst->count || src->min < dst->min) dst->min = src->min;
    if (!dst->count || src->max > dst->max) dst->max = src->max;
    double na = (double)dst->count, nb = (double)src->count, d = src->mean - dst->mean;
    dst->count += src->count;
    dst->clamped += src->clamped;
    dst->mean += d * nb / (double)dst->count;
    dst->m2 += src->m2 + d * d * na * nb / (double)dst->count;
    for (uint32_t i = 0; i < NBUCKETS; i++) dst->counts[i] += src->counts[i];
    return true;
}

uint64_t hdr_count(const hdr_hist *h) { return h->count; }
uint64_t hdr_clamped(const hdr_hist *h) { return h->clamped; }
uint64_t hdr_min(const hdr_hist *h) { return h->count ? h->min : 0; }
uint64_t hdr_max(const hdr_hist *h) { return h->count ? h->max : 0; }
double hdr_mean(const hdr_hist *h) { return h->count ? h->mean : 0.0; }
double hdr_stddev(const hdr_hist *h) { return h->count ? sqrt(h->m2 / (double)h->count) : 0.0; }

static uint64_t bucket_value(const hdr_hist *h, uint32_t b) {
    uint64_t lo, hi;
    hdr_bucket_range(b, &lo, &hi);
    uint64_t mid = lo + (hi - lo) / 2;
    if (mid < h->min) mid = h->min;
    if (mid > h->max) mid = h->max;
    return mid;
}

uint64_t hdr_percentile(const hdr_hist *h, double p) {
    if (!h->count) return 0;
    if (!(p > 0)) return h->min;              // also catches NaN
    if (p >= 100) return h->max;
    double r = ceil(p / 100.0 * (double)h->count);
    uint64_t rank = r < 1 ? 1 : r > (double)h->count ? h->count : (uint64_t)r;
    uint64_t seen = 0;
    for (uint32_t b = hdr_bucket_of(h->min); b < NBUCKETS; b++) {
        seen += h->counts[b];
        if (seen >= rank) return bucket_value(h, b);
    }
    return h->max;
}

uint64_t hdr_count_le(const hdr_hist *h, uint64_t v) {
    if (!h->count || v < h->min) return 0;
    if (v >= h->max) return h->count;
    uint64_t n = 0;
    uint32_t last = hdr_bucket_of(v);
    for (uint32_t b = hdr_bucket_of(h->min); b <= last; b++)
        if (h->counts[b]) {
            uint64_t lo, hi;
            hdr_bucket_range(b, &lo, &hi);
            if (lo < h->min) lo = h->min;
            if (lo <= v) n += h->counts[b];
        }
    return n;
}
