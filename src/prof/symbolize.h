// symbolize.h — in-process symbolization: turns code addresses of this
// process into function, file and line, reading the mapped binaries' own
// ELF symbol tables and DWARF line tables with libdw (elfutils), inlined
// calls included. Also lists the executable mappings of /proc/self/maps with
// their GNU build IDs (read from each file's ELF notes).
//
// Thread safety: a prof_symbolizer is used by one thread at a time; create
// one per profile. Not for signal handlers (it allocates and reads files).
#ifndef LLMSCOPE_PROF_SYMBOLIZE_H
#define LLMSCOPE_PROF_SYMBOLIZE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct prof_symbolizer prof_symbolizer;

// One frame of an address: inlined frames come first, the function that
// physically holds the code last. Strings live as long as the symbolizer.
typedef struct prof_frame {
    const char *func;     // "matmul_q8_0", or NULL when unknown
    const char *file;     // source file, or NULL
    int line;             // source line, 0 when unknown
    int start_line;       // line where the function is declared, 0 when unknown
    uintptr_t offset;     // pc - symbol start (physical frame only)
} prof_frame;

// One executable file mapping of the process.
typedef struct prof_mapping {
    uintptr_t start, limit, offset;   // [start, limit) in memory; offset in the file (bytes)
    const char *file;                 // path
    char build_id[41 * 2];            // hex GNU build ID, "" when absent
} prof_mapping;

prof_symbolizer *prof_sym_new(void);
void prof_sym_free(prof_symbolizer *s);

// Frames for `pc` (the exact address to look up: callers pass return
// address - 1 for call sites). Writes up to max frames; returns the count,
// 0 when nothing is known about pc.
int prof_sym_lookup(prof_symbolizer *s, uintptr_t pc, prof_frame *out, int max);

// The executable file mappings (read once at prof_sym_new); *n gets the count.
const prof_mapping *prof_sym_mappings(prof_symbolizer *s, int *n);
// The mapping holding pc, or -1.
int prof_sym_mapping_of(prof_symbolizer *s, uintptr_t pc);

#endif
