// pprof_read.h — a reader of pprof profiles (google/pprof profile.proto, raw
// or gzip'd, as `go tool pprof` reads and /debug/pprof/* serves) that turns
// their samples into merged stacks (folded.h). It decodes only what a flame
// graph needs: sample types, samples (location ids, values, labels),
// locations (address and lines, inlined frames included), functions and the
// string table; other fields are skipped.
//
// Input is untrusted: the inflated size is capped, every varint and length is
// checked against the bytes left, every count against what the input can
// hold, every id and string index is resolved before use; a refusal is one
// line "NAME: offset O: why" (offsets into the inflated profile, or into the
// gzip stream for decompression errors). No global state; thread-safe.
#ifndef LLMSCOPE_PPROF_READ_H
#define LLMSCOPE_PPROF_READ_H

#include <stddef.h>
#include <stdint.h>
#include "util/folded.h"

#define PPROF_READ_MAX_INFLATED ((size_t)256 << 20)   // bytes of profile.proto after gunzip

typedef struct pprof_data pprof_data;

// Decodes a profile (gzip'd when it starts with 1f 8b, else raw protobuf).
// `name` names the input in messages. NULL with a message in err on failure.
pprof_data *pprof_data_parse(const uint8_t *buf, size_t len, const char *name, char *err, size_t errlen);
void pprof_data_free(pprof_data *p);

size_t pprof_data_n_types(const pprof_data *p);
// The i-th sample type ("cpu", "samples", "alloc_space" …) and its unit.
const char *pprof_data_type(const pprof_data *p, size_t i, const char **unit);
size_t pprof_data_n_samples(const pprof_data *p);
// The value a viewer shows by default: default_sample_type when the profile
// names one, else the last (for a Go CPU profile: cpu nanoseconds).
size_t pprof_data_default_type(const pprof_data *p);
// Resolves "--sample-index" style choices: a number, or a type name. -1 when none matches.
int pprof_data_find_type(const pprof_data *p, const char *spec);

// The profile's functions: function i's name and source file (filename),
// copied NUL-terminated into the buffers (cut to their size).
size_t pprof_data_n_functions(const pprof_data *p);
void pprof_data_function(const pprof_data *p, size_t i, char *name, size_t nlen, char *file, size_t flen);

// Adds every sample's value at `type` to the tree as a stack of function
// names (inlined frames expanded; a location without lines becomes its
// address "0x..."), root first. With tag_key set, only samples that carry
// the label tag_key=tag_value (string labels compare exactly, numeric labels
// as decimal integers) are kept. Returns 0, or -1 with a message.
int pprof_data_fold(const pprof_data *p, size_t type, const char *tag_key, const char *tag_value, fold_tree *t,
                    char *err, size_t errlen);
// pprof_data_fold with options. PPROF_FOLD_INTRINSICS_IN_CALLER: inlined
// frames of functions from a compiler's intrinsics header (a file named
// *intrin.h: _mm512_dpbusd_epi32 …) are left out, their time going to the
// function they were inlined into.
enum { PPROF_FOLD_INTRINSICS_IN_CALLER = 1 };
int pprof_data_fold_opt(const pprof_data *p, size_t type, const char *tag_key, const char *tag_value, unsigned opts,
                        fold_tree *t, char *err, size_t errlen);

#endif
