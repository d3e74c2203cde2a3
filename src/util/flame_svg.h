// flame_svg.h — draws merged stacks (folded.h) as a self-contained,
// interactive SVG flame graph in the manner of Brendan Gregg's
// flamegraph.pl: the root at the bottom, callees above their callers, each
// frame as wide as its share of the total, colored by a stable hash of its
// name. Embedded CSS and JavaScript only (no external scripts or fonts):
// hovering a frame shows its name, value and percentage; clicking zooms to
// it; a search box highlights matching frames and reports their share.
//
// Frame names are untrusted: they are escaped for XML and invalid UTF-8 is
// replaced, so the output is always well-formed XML.
#ifndef LLMSCOPE_FLAME_SVG_H
#define LLMSCOPE_FLAME_SVG_H

#include <stdio.h>
#include "util/folded.h"

typedef struct flame_svg_opts {
    const char *title;      // NULL: "Flame Graph"
    const char *subtitle;   // NULL: none (e.g. the input and the value type)
    const char *unit;       // what values count: NULL: "samples"
    int width;              // pixels; 0: 1200
    double min_frac;        // frames narrower than this share of the total are left out; < 0: 0.001
} flame_svg_opts;

// Writes the SVG (fold_sort()s the tree first). Returns the number of frames
// drawn, or -1 on a write error.
long flame_svg_write(fold_tree *t, const flame_svg_opts *o, FILE *f);

#endif
