// profile.h — builds a google/pprof profile.proto message and writes it,
// gzip'd, the way `go tool pprof` reads it. A hand-written protobuf encoder
// (varints and length-delimited fields, as Go's runtime/pprof/protobuf.go),
// a string table with "" at index 0, Mapping entries from /proc/self/maps
// with GNU build IDs, and Locations/Functions symbolized in-process (see
// symbolize.h). Field numbers follow profile.proto (proto3).
//
// Thread safety: a prof_profile belongs to one thread. Not for signal handlers.
#ifndef LLMSCOPE_PROF_PROFILE_H
#define LLMSCOPE_PROF_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROF_MAX_VALUES 4   // sample types per profile
#define PROF_MAX_LABELS 8   // labels per sample

typedef struct prof_profile prof_profile;

// A sample label: a string value when str != NULL, else the number num
// (in `unit`, e.g. "bytes"; NULL = none).
typedef struct prof_label {
    const char *key;
    const char *str;
    int64_t num;
    const char *unit;
} prof_label;

prof_profile *prof_profile_new(void);
void prof_profile_free(prof_profile *p);

// Sample types in order (at most PROF_MAX_VALUES), e.g. ("samples", "count").
void prof_profile_sample_type(prof_profile *p, const char *type, const char *unit);
void prof_profile_period(prof_profile *p, const char *type, const char *unit, int64_t period);
void prof_profile_default_sample_type(prof_profile *p, const char *type);
void prof_profile_times(prof_profile *p, int64_t time_nanos, int64_t duration_nanos);
void prof_profile_comment(prof_profile *p, const char *comment);

// Adds one sample: pcs[0..n) leaf first. pcs are return addresses (looked up
// at pc - 1) except pcs[0] when leaf_exact (an interrupted instruction).
// values has one entry per sample type. Returns false on allocation failure.
bool prof_profile_add(prof_profile *p, const uintptr_t *pcs, int n, bool leaf_exact,
                      const int64_t *values, const prof_label *labels, int nlabels);

// Adds a sample whose only frame is the synthetic function `frame` (no
// address), e.g. "[mmap] model.gguf".
bool prof_profile_add_named(prof_profile *p, const char *frame, const int64_t *values,
                            const prof_label *labels, int nlabels);

// Symbolizes every address, encodes, and (when gzip) compresses. *out is
// malloc'd; the caller frees it. Returns false on allocation failure.
bool prof_profile_write(prof_profile *p, bool gzip, uint8_t **out, size_t *len);

// The raw encoder, also used by the tests' decoder round trip.
typedef struct prof_pbuf {
    uint8_t *data;
    size_t len, cap;
    bool oom;
} prof_pbuf;
void prof_pb_varint(prof_pbuf *b, uint64_t v);
void prof_pb_uint64(prof_pbuf *b, int tag, uint64_t v);       // omitted when 0
void prof_pb_int64(prof_pbuf *b, int tag, int64_t v);         // omitted when 0
void prof_pb_bool(prof_pbuf *b, int tag, bool v);             // omitted when false
void prof_pb_bytes(prof_pbuf *b, int tag, const void *d, size_t n);  // always written
void prof_pb_packed(prof_pbuf *b, int tag, const uint64_t *v, int n);  // packed repeated

// gzip (RFC 1952) of in[0..n) into a malloc'd buffer; false on failure.
bool prof_gzip(const uint8_t *in, size_t n, uint8_t **out, size_t *outlen);

#endif
