// folded.c — see folded.h. The tree interns frame names in one pool and finds
// a node's child by name through one open-addressing table keyed by
// (parent, name), so adding a stack costs one lookup per frame.
#include "folded.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define POOL_MAX ((size_t)1 << 30)   // bytes of distinct names

struct fold_tree {
    fold_node *nodes;       // (n_nodes) node 0 is the root
    size_t n_nodes, cap_nodes;
    char *pool;             // NUL-terminated names, offset 0 = "all"
    size_t pool_len, pool_cap;
    uint32_t *names;        // (names_cap) hash table of pool offsets + 1, 0 = empty
    size_t names_cap, n_names;
    uint32_t *kids;         // (kids_cap) hash table of node ids keyed by (parent, name), 0 = empty
    size_t kids_cap;
    uint32_t max_depth;
    bool sorted;
};

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;   // FNV-1a
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_pair(uint32_t a, uint32_t b) {
    uint64_t h = ((uint64_t)a << 32 | b) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}

fold_tree *fold_new(void) {
    fold_tree *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->cap_nodes = 256;
    t->nodes = calloc(t->cap_nodes, sizeof *t->nodes);
    t->pool_cap = 4096;
    t->pool = malloc(t->pool_cap);
    t->names_cap = 1024;
    t->names = calloc(t->names_cap, sizeof *t->names);
    t->kids_cap = 1024;
    t->kids = calloc(t->kids_cap, sizeof *t->kids);
    if (!t->nodes || !t->pool || !t->names || !t->kids) { fold_free(t); return NULL; }
    memcpy(t->pool, "all", 4);
    t->pool_len = 4;
    t->n_nodes = 1;   // the root: name 0 ("all"), its own parent
    return t;
}

void fold_free(fold_tree *t) {
    if (!t) return;
    free(t->nodes);
    free(t->pool);
    free(t->names);
    free(t->kids);
    free(t);
}

// Interns a cleaned name; returns its pool offset, or UINT32_MAX when out of memory or the pool cap.
static uint32_t intern(fold_tree *t, const char *s, size_t n) {
    if (t->n_names * 2 >= t->names_cap) {
        size_t cap = t->names_cap * 2;
        uint32_t *h = calloc(cap, sizeof *h);
        if (!h) return UINT32_MAX;
        for (size_t i = 0; i < t->names_cap; i++) {
            if (!t->names[i]) continue;
            const char *e = t->pool + t->names[i] - 1;
            size_t j = hash_bytes(e, strlen(e)) & (cap - 1);
            while (h[j]) j = (j + 1) & (cap - 1);
            h[j] = t->names[i];
        }
        free(t->names);
        t->names = h;
        t->names_cap = cap;
    }
    size_t j = hash_bytes(s, n) & (t->names_cap - 1);
    for (; t->names[j]; j = (j + 1) & (t->names_cap - 1)) {
        const char *e = t->pool + t->names[j] - 1;
        if (!strncmp(e, s, n) && e[n] == 0) return t->names[j] - 1;
    }
    if (t->pool_len + n + 1 > POOL_MAX) return UINT32_MAX;
    if (t->pool_len + n + 1 > t->pool_cap) {
        size_t cap = t->pool_cap;
        while (cap < t->pool_len + n + 1) cap *= 2;
        char *p = realloc(t->pool, cap);
        if (!p) return UINT32_MAX;
        t->pool = p;
        t->pool_cap = cap;
    }
    uint32_t off = (uint32_t)t->pool_len;
    memcpy(t->pool + off, s, n);
    t->pool[off + n] = 0;
    t->pool_len += n + 1;
    t->names[j] = off + 1;
    t->n_names++;
    return off;
}

// Finds or makes the child of `parent` named `name`; 0 when out of memory or the node cap.
static uint32_t child(fold_tree *t, uint32_t parent, uint32_t name) {
    size_t mask = t->kids_cap - 1;
    size_t j = hash_pair(parent, name) & mask;
    for (; t->kids[j]; j = (j + 1) & mask) {
        const fold_node *c = &t->nodes[t->kids[j]];
        if (c->parent == parent && c->name == name) return t->kids[j];
    }
    if (t->n_nodes >= FOLD_MAX_NODES) return 0;
    if (t->n_nodes == t->cap_nodes) {
        fold_node *p = realloc(t->nodes, t->cap_nodes * 2 * sizeof *p);
        if (!p) return 0;
        t->nodes = p;
        t->cap_nodes *= 2;
    }
    uint32_t id = (uint32_t)t->n_nodes++;
    fold_node *c = &t->nodes[id];
    fold_node *p = &t->nodes[parent];
    *c = (fold_node){.name = name, .parent = parent, .next_sibling = p->first_child, .depth = p->depth + 1};
    p->first_child = id;
    if (c->depth > t->max_depth) t->max_depth = c->depth;
    t->kids[j] = id;
    t->sorted = false;
    if (t->n_nodes * 2 >= t->kids_cap) {   // grow: rehash every node but the root
        size_t cap = t->kids_cap * 2;
        uint32_t *h = calloc(cap, sizeof *h);
        if (!h) return id;   // still correct, only fuller; the next insert retries
        for (uint32_t k = 1; k < t->n_nodes; k++) {
            size_t i = hash_pair(t->nodes[k].parent, t->nodes[k].name) & (cap - 1);
            while (h[i]) i = (i + 1) & (cap - 1);
            h[i] = k;
        }
        free(t->kids);
        t->kids = h;
        t->kids_cap = cap;
    }
    return id;
}

// Cleans a frame name into buf (FOLD_MAX_NAME + 1 bytes); returns its length.
static size_t clean_name(const char *s, size_t n, char *buf) {
    if (n > FOLD_MAX_NAME) n = FOLD_MAX_NAME;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = c == ';' ? ':' : (c < 0x20 || c == 0x7f) ? '_' : (char)c;
    }
    if (n == 0) { memcpy(buf, "??", 2); n = 2; }
    buf[n] = 0;
    return n;
}

int fold_add(fold_tree *t, const char *const *frames, const size_t *lens, size_t n, int64_t value,
             char *err, size_t errlen) {
    if (value <= 0 || n == 0) return 0;
    if (value > INT64_MAX - t->nodes[0].total) {
        seterr(err, errlen, "the values add up to more than 2^63");
        return -1;
    }
    static const char trunc[] = "[truncated]";
    char buf[FOLD_MAX_NAME + 1];
    uint32_t id = 0;
    size_t keep = n > FOLD_MAX_DEPTH ? FOLD_MAX_DEPTH : n;
    for (size_t i = 0; i < keep; i++) {
        bool cut = n > FOLD_MAX_DEPTH && i == keep - 1;
        size_t k = cut ? clean_name(trunc, sizeof trunc - 1, buf) : clean_name(frames[i], lens[i], buf);
        uint32_t name = intern(t, buf, k);
        uint32_t next = name == UINT32_MAX ? 0 : child(t, id, name);
        if (!next) {
            seterr(err, errlen, t->n_nodes >= FOLD_MAX_NODES ? "more than %u distinct stack frames" : "out of memory",
                   FOLD_MAX_NODES);
            return -1;
        }
        id = next;
    }
    t->nodes[id].self += value;
    for (;; id = t->nodes[id].parent) {
        t->nodes[id].total += value;
        if (id == 0) break;
    }
    return 0;
}

static int by_name(const void *a, const void *b, void *arg) {
    const fold_tree *t = arg;
    const fold_node *na = &t->nodes[*(const uint32_t *)a], *nb = &t->nodes[*(const uint32_t *)b];
    return strcmp(t->pool + na->name, t->pool + nb->name);
}

void fold_sort(fold_tree *t) {
    if (t->sorted) return;
    uint32_t *ids = malloc(t->n_nodes * sizeof *ids);
    if (!ids) return;   // unsorted output is still correct output
    for (size_t p = 0; p < t->n_nodes; p++) {
        size_t k = 0;
        for (uint32_t c = t->nodes[p].first_child; c; c = t->nodes[c].next_sibling) ids[k++] = c;
        if (k < 2) continue;
        qsort_r(ids, k, sizeof *ids, by_name, t);
        t->nodes[p].first_child = ids[0];
        for (size_t i = 0; i < k; i++) t->nodes[ids[i]].next_sibling = i + 1 < k ? ids[i + 1] : 0;
    }
    free(ids);
    t->sorted = true;
}

const fold_node *fold_nodes(const fold_tree *t, size_t *n) {
    *n = t->n_nodes;
    return t->nodes;
}
const char *fold_name(const fold_tree *t, const fold_node *node) { return t->pool + node->name; }
int64_t fold_total(const fold_tree *t) { return t->nodes[0].total; }
uint32_t fold_max_depth(const fold_tree *t) { return t->max_depth; }

int fold_write(fold_tree *t, FILE *f) {
    fold_sort(t);
    uint32_t path[FOLD_MAX_DEPTH + 1];
    uint32_t id = t->nodes[0].first_child;
    while (id) {
        const fold_node *nd = &t->nodes[id];
        if (nd->self > 0) {
            size_t k = 0;
            for (uint32_t a = id; a && k <= FOLD_MAX_DEPTH; a = t->nodes[a].parent) path[k++] = a;
            while (k--) {
                fputs(t->pool + t->nodes[path[k]].name, f);
                if (k) fputc(';', f);
            }
            fprintf(f, " %lld\n", (long long)nd->self);
        }
        if (nd->first_child) { id = nd->first_child; continue; }
        while (id && !t->nodes[id].next_sibling) id = t->nodes[id].parent;
        if (id) id = t->nodes[id].next_sibling;
    }
    return ferror(f) ? -1 : 0;
}

const char *fold_format_name(fold_format f) {
    switch (f) {
    case FOLD_FORMAT_PPROF: return "pprof";
    case FOLD_FORMAT_PERF: return "perf script";
    case FOLD_FORMAT_FOLDED: return "folded";
    default: return "unknown";
    }
}

// --- text input ----------------------------------------------------------

typedef struct lines {
    const char *text;
    size_t len, pos;     // pos: offset of the next line
    size_t line_no;      // 1-based number of the current line
    size_t line_off;     // offset of the current line
} lines;

// The next line without its ending (LF or CRLF); false at the end.
static bool next_line(lines *L, const char **s, size_t *n) {
    if (L->pos >= L->len) return false;
    const char *p = L->text + L->pos;
    const char *nl = memchr(p, '\n', L->len - L->pos);
    size_t k = nl ? (size_t)(nl - p) : L->len - L->pos;
    L->line_off = L->pos;
    L->line_no++;
    L->pos += k + (nl ? 1 : 0);
    if (k && p[k - 1] == '\r') k--;
    *s = p;
    *n = k;
    return true;
}

static void line_err(const lines *L, const char *name, char *err, size_t errlen, const char *why) {
    seterr(err, errlen, "%s: line %zu (offset %zu): %s", name, L->line_no, L->line_off, why);
}

static bool is_sp(char c) { return c == ' ' || c == '\t'; }

static bool is_text(const uint8_t *d, size_t n) {
    for (size_t i = 0; i < n && i < 4096; i++)
        if ((d[i] < 0x20 && d[i] != '\t' && d[i] != '\n' && d[i] != '\r') || d[i] == 0x7f) return false;
    return true;
}

// An indented "hexaddr <space>" line: a perf script frame.
static bool is_frame_line(const char *s, size_t n) {
    size_t i = 0;
    if (!n || !is_sp(s[0])) return false;
    while (i < n && is_sp(s[i])) i++;
    size_t h = i;
    while (i < n && isxdigit((unsigned char)s[i])) i++;
    return i > h && i - h <= 16 && (i == n || s[i] == ' ');
}

fold_format fold_detect(const uint8_t *data, size_t len) {
    if (len >= 2 && data[0] == 0x1f && data[1] == 0x8b) return FOLD_FORMAT_PPROF;
    if (!len) return FOLD_FORMAT_UNKNOWN;
    if (!is_text(data, len)) return FOLD_FORMAT_PPROF;
    lines L = {.text = (const char *)data, .len = len < 65536 ? len : 65536};
    const char *s;
    size_t n;
    while (next_line(&L, &s, &n)) {
        // A frame, and not an indented folded line such as "  add 3": after
        // the address comes a symbol, not just a count.
        if (!is_frame_line(s, n)) continue;
        size_t i = 0;
        while (i < n && is_sp(s[i])) i++;
        while (i < n && !is_sp(s[i])) i++;
        while (i < n && is_sp(s[i])) i++;
        size_t d = i;
        while (i < n && isdigit((unsigned char)s[i])) i++;
        if (d < n && (i < n || i == d)) return FOLD_FORMAT_PERF;
    }
    return FOLD_FORMAT_FOLDED;
}

// Parses digits [s, s+n) as a non-negative int64; false on junk or overflow.
static bool parse_count(const char *s, size_t n, int64_t *out) {
    if (!n) return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

int fold_parse_folded(fold_tree *t, const char *text, size_t len, const char *name, char *err, size_t errlen) {
    const char **fr = malloc((FOLD_MAX_DEPTH + 1) * sizeof *fr);
    size_t *fl = malloc((FOLD_MAX_DEPTH + 1) * sizeof *fl);
    if (!fr || !fl) { free(fr); free(fl); seterr(err, errlen, "%s: out of memory", name); return -1; }
    lines L = {.text = text, .len = len};
    const char *s;
    size_t n;
    int rc = 0;
    char why[160];
    while (rc == 0 && next_line(&L, &s, &n)) {
        if (n > FOLD_MAX_LINE) { line_err(&L, name, err, errlen, "line longer than 1 MiB"); rc = -1; break; }
        while (n && is_sp(s[n - 1])) n--;
        size_t b = 0;
        while (b < n && is_sp(s[b])) b++;
        if (b == n || s[b] == '#') continue;
        size_t sp = n;
        while (sp > b && !is_sp(s[sp - 1])) sp--;
        int64_t count;
        if (sp == b || !parse_count(s + sp, n - sp, &count)) {
            line_err(&L, name, err, errlen, "expected 'frame;frame;... COUNT' with a non-negative integer count");
            rc = -1;
            break;
        }
        size_t e = sp;
        while (e > b && is_sp(s[e - 1])) e--;
        size_t k = 0;
        for (size_t i = b; k <= FOLD_MAX_DEPTH;) {
            const char *semi = memchr(s + i, ';', e - i);
            size_t j = semi ? (size_t)(semi - s) : e;
            fr[k] = s + i;
            fl[k++] = j - i;
            if (!semi) break;
            i = j + 1;
        }
        if (fold_add(t, fr, fl, k, count, why, sizeof why)) { line_err(&L, name, err, errlen, why); rc = -1; }
    }
    free(fr);
    free(fl);
    return rc;
}

// --- perf script ---------------------------------------------------------

typedef struct perf_sample {
    const char **fr;       // (cap) frame names, leaf first; fr[0] is reserved for the command
    size_t *fl;            // (cap) their lengths
    size_t n, cap;
    char *scratch;         // "[dso]" names made for unknown symbols (offsets into it are in fl/fr fix-ups)
    size_t scratch_len, scratch_cap;
    size_t *made;          // (cap) 1 + scratch offset of a made name, 0 = points into the text
    bool open;
} perf_sample;

static bool sample_push(perf_sample *S, const char *p, size_t n, size_t made) {
    if (S->n == S->cap) {
        size_t cap = S->cap ? S->cap * 2 : 64;
        const char **fr = realloc(S->fr, cap * sizeof *fr);
        if (fr) S->fr = fr;
        size_t *fl = realloc(S->fl, cap * sizeof *fl);
        if (fl) S->fl = fl;
        size_t *md = realloc(S->made, cap * sizeof *md);
        if (md) S->made = md;
        if (!fr || !fl || !md) return false;
        S->cap = cap;
    }
    S->fr[S->n] = p;
    S->fl[S->n] = n;
    S->made[S->n++] = made;
    return true;
}

// Makes "[basename]" in the scratch buffer; returns 1 + its offset, 0 when out of memory.
static size_t make_bracketed(perf_sample *S, const char *dso, size_t n, size_t *made_len) {
    for (size_t i = n; i > 0; i--)
        if (dso[i - 1] == '/') { dso += i; n -= i; break; }
    if (n > FOLD_MAX_NAME) n = FOLD_MAX_NAME;
    if (S->scratch_len + n + 2 > S->scratch_cap) {
        size_t cap = S->scratch_cap ? S->scratch_cap : 1024;
        while (cap < S->scratch_len + n + 2) cap *= 2;
        char *p = realloc(S->scratch, cap);
        if (!p) return 0;
        S->scratch = p;
        S->scratch_cap = cap;
    }
    size_t off = S->scratch_len;
    S->scratch[off] = '[';
    memcpy(S->scratch + off + 1, dso, n);
    S->scratch[off + n + 1] = ']';
    S->scratch_len += n + 2;
    *made_len = n + 2;
    return off + 1;
}

// Adds the open sample: the command, then the frames from the root down.
static int sample_flush(fold_tree *t, perf_sample *S, char *why, size_t whylen) {
    if (!S->open) return 0;
    S->open = false;
    for (size_t i = 0; i < S->n; i++)
        if (S->made[i]) S->fr[i] = S->scratch + S->made[i] - 1;
    for (size_t i = 1, j = S->n - 1; i < j; i++, j--) {   // leaf-first frames 1.. → root-first
        const char *p = S->fr[i]; S->fr[i] = S->fr[j]; S->fr[j] = p;
        size_t l = S->fl[i]; S->fl[i] = S->fl[j]; S->fl[j] = l;
    }
    int rc = fold_add(t, S->fr, S->fl, S->n, 1, why, whylen);
    S->n = 0;
    S->scratch_len = 0;
    return rc;
}

// The command of a sample header: the text before the first " PID" or " PID/TID" field.
static size_t header_comm(const char *s, size_t n) {
    for (size_t i = 1; i < n; i++) {
        if (!is_sp(s[i])) continue;
        size_t k = i;
        while (k < n && is_sp(s[k])) k++;
        size_t d = k;
        while (k < n && isdigit((unsigned char)s[k])) k++;
        if (k == d) continue;
        if (k < n && s[k] == '/') {
            size_t d2 = ++k;
            while (k < n && isdigit((unsigned char)s[k])) k++;
            if (k == d2) continue;
        }
        if (k == n || is_sp(s[k])) {
            while (i > 0 && is_sp(s[i - 1])) i--;
            return i;
        }
    }
    size_t i = 0;
    while (i < n && !is_sp(s[i])) i++;
    return i;
}

int fold_parse_perf(fold_tree *t, const char *text, size_t len, const char *name, char *err, size_t errlen) {
    perf_sample S = {0};
    lines L = {.text = text, .len = len};
    size_t n_frames = 0, bad_no = 0, bad_off = 0;   // frames read; the first indented line that was not one
    const char *s;
    size_t n;
    int rc = 0;
    char why[160];
    while (rc == 0 && next_line(&L, &s, &n)) {
        if (n > FOLD_MAX_LINE) { line_err(&L, name, err, errlen, "line longer than 1 MiB"); rc = -1; break; }
        size_t b = 0;
        while (b < n && is_sp(s[b])) b++;
        if (b == n) {   // a blank line ends a sample
            if (sample_flush(t, &S, why, sizeof why)) { line_err(&L, name, err, errlen, why); rc = -1; }
            continue;
        }
        if (b == 0) {   // a sample header (or a comment)
            if (s[0] == '#') continue;
            if (sample_flush(t, &S, why, sizeof why)) { line_err(&L, name, err, errlen, why); rc = -1; break; }
            size_t c = header_comm(s, n);
            S.open = true;
            if (!sample_push(&S, s, c, 0)) { line_err(&L, name, err, errlen, "out of memory"); rc = -1; }
            continue;
        }
        if (!S.open) { line_err(&L, name, err, errlen, "a stack frame before any sample header"); rc = -1; break; }
        if (!is_frame_line(s, n)) {   // e.g. a source line of -F +srcline: skipped, as stackcollapse-perf does
            if (!bad_no) { bad_no = L.line_no; bad_off = L.line_off; }
            continue;
        }
        n_frames++;
        size_t i = b;
        while (i < n && s[i] != ' ') i++;
        while (i < n && s[i] == ' ') i++;
        const char *sym = s + i, *dso = NULL;
        size_t sl = n - i, dl = 0;
        while (sl && is_sp(sym[sl - 1])) sl--;
        if (sl >= 2 && sym[sl - 1] == ')') {
            for (size_t k = sl - 1; k > 0; k--) {
                if (sym[k] == '(' && (k == 0 || sym[k - 1] == ' ')) {
                    dso = sym + k + 1;
                    dl = sl - 1 - (k + 1);
                    sl = k ? k - 1 : 0;
                    break;
                }
            }
            if (!dso && sym[0] == '(') { dso = sym + 1; dl = sl - 2; sl = 0; }
        }
        size_t k = sl;   // drop a trailing "+0x1f"
        while (k > 0 && isxdigit((unsigned char)sym[k - 1])) k--;
        if (k < sl && k >= 3 && sym[k - 1] == 'x' && sym[k - 2] == '0' && sym[k - 3] == '+') sl = k - 3;
        size_t made = 0;
        if (sl == 0 || (sl == 9 && !memcmp(sym, "[unknown]", 9))) {
            if (dso && dl && !(dl == 9 && !memcmp(dso, "[unknown]", 9))) {
                made = make_bracketed(&S, dso, dl, &sl);
                if (!made) { line_err(&L, name, err, errlen, "out of memory"); rc = -1; break; }
                sym = NULL;
            } else {
                sym = "[unknown]";
                sl = 9;
            }
        }
        if (!sample_push(&S, sym, sl, made)) { line_err(&L, name, err, errlen, "out of memory"); rc = -1; }
    }
    if (rc == 0 && sample_flush(t, &S, why, sizeof why)) { line_err(&L, name, err, errlen, why); rc = -1; }
    if (rc == 0 && n_frames == 0 && bad_no) {   // nothing but unreadable frames: not perf script output
        L.line_no = bad_no;
        L.line_off = bad_off;
        line_err(&L, name, err, errlen, "expected a stack frame 'address symbol+0xoffset (dso)'");
        rc = -1;
    }
    free(S.fr);
    free(S.fl);
    free(S.made);
    free(S.scratch);
    return rc;
}
