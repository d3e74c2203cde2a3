// folded.h — merged call stacks (a tree of frames, root first, each node with
// its own and its subtree's value) and the two text formats that fill it:
// Brendan Gregg's folded stacks ("main;parse;strlen 12") and `perf script`
// output. The tree is what `llmscope flame` prints as folded text or draws as
// a flame graph; the pprof reader (pprof_read.h) fills it too.
//
// Input is untrusted: lines and names are bounded, counts are checked for
// overflow, the tree has a node cap, and a refusal is one line
// "NAME: line L (offset O): why". One tree per caller; no global state.
#ifndef LLMSCOPE_FOLDED_H
#define LLMSCOPE_FOLDED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FOLD_MAX_DEPTH 1024        // frames kept per stack; deeper ones end in "[truncated]"
#define FOLD_MAX_NAME 1024         // bytes kept of a frame name
#define FOLD_MAX_NODES (1u << 22)  // distinct (caller path, frame) nodes in one tree
#define FOLD_MAX_LINE (1u << 20)   // bytes in one line of text input

// A node of the tree. Node 0 is the root ("all"); its total is the sum of
// every stack's value. Children are linked through first_child/next_sibling,
// sorted by name once fold_sort() ran.
typedef struct fold_node {
    uint32_t name;          // offset of the NUL-terminated name in the tree's name pool
    uint32_t parent;        // node id (the root is its own parent)
    uint32_t first_child;   // node id, 0 = none
    uint32_t next_sibling;  // node id, 0 = none
    uint32_t depth;         // 0 for the root, 1 for outermost frames
    int64_t self;           // value of stacks that end here (samples, ns, bytes: the input's unit)
    int64_t total;          // self + the children's totals
} fold_node;

typedef struct fold_tree fold_tree;

fold_tree *fold_new(void);
void fold_free(fold_tree *t);

// Adds `value` (> 0; others are ignored) to the stack frames[0..n), root
// first; lens[i] is the length of frames[i] (names need no NUL). Names are
// cleaned as stackcollapse does: ';' becomes ':', control bytes become '_',
// empty names become "??"; longer than FOLD_MAX_NAME bytes they are cut.
// Returns 0, or -1 with a message in err (out of memory, the node cap, or the
// total overflowing int64).
int fold_add(fold_tree *t, const char *const *frames, const size_t *lens, size_t n, int64_t value,
             char *err, size_t errlen);

// Sorts every node's children by name (fold_write and the flame graph call it).
void fold_sort(fold_tree *t);

const fold_node *fold_nodes(const fold_tree *t, size_t *n);
const char *fold_name(const fold_tree *t, const fold_node *node);
int64_t fold_total(const fold_tree *t);
uint32_t fold_max_depth(const fold_tree *t);   // deepest frame's depth

// Writes folded stacks, one line per distinct stack with a value of its own,
// "root;...;leaf VALUE\n", in name order. Returns 0, or -1 on a write error.
int fold_write(fold_tree *t, FILE *f);

// The input formats `llmscope flame` recognises.
typedef enum fold_format {
    FOLD_FORMAT_UNKNOWN = 0,
    FOLD_FORMAT_PPROF,    // gzip'd (1f 8b) or raw profile.proto
    FOLD_FORMAT_PERF,     // `perf script` text: sample header lines, then indented "addr sym+off (dso)" frames
    FOLD_FORMAT_FOLDED,   // "a;b;c N" lines
} fold_format;
const char *fold_format_name(fold_format f);

// Guesses the format from the bytes: gzip magic → pprof; bytes that are not
// text (controls other than tab, CR, LF in the first 4 KiB) → raw protobuf;
// text with an indented line starting with a hex address → perf script;
// other text → folded.
fold_format fold_detect(const uint8_t *data, size_t len);

// Parses folded stacks: "frame;frame;... COUNT" per line (COUNT a
// non-negative integer after the last space; blank lines and lines starting
// with '#' are skipped). Returns 0, or -1 with "NAME: line L (offset O): why".
int fold_parse_folded(fold_tree *t, const char *text, size_t len, const char *name, char *err, size_t errlen);

// Parses `perf script` output (the default fields, with -g callchains): each
// sample is a header line "comm pid/tid [cpu] time: period event:" followed
// by indented frames "addr symbol+0xoff (dso)", leaf first, and a blank line.
// Each sample counts 1, under a root frame named after its command (as
// stackcollapse-perf.pl does); "+0x..." offsets are dropped and an unknown
// symbol becomes "[dso basename]". Other indented lines (source lines of
// -F +srcline) are skipped, unless no frame at all could be read. Returns 0,
// or -1 as fold_parse_folded.
int fold_parse_perf(fold_tree *t, const char *text, size_t len, const char *name, char *err, size_t errlen);

#endif
