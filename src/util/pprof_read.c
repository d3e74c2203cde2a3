// pprof_read.c — see pprof_read.h. Decoding is two steps: a pass over the
// protobuf that copies the fields a flame graph needs into flat arrays (every
// read through a bounded cursor), then a resolution step that checks every
// string index and turns location and function ids into array indexes, so
// folding never meets an unchecked reference.
//
// profile.proto field numbers used (google/pprof proto/profile.proto):
//   Profile:  1 sample_type (ValueType), 2 sample, 4 location, 5 function,
//             6 string_table, 14 default_sample_type
//   ValueType: 1 type, 2 unit (string indexes)
//   Sample:   1 location_id (packed or not), 2 value (packed or not), 3 label
//   Label:    1 key, 2 str (string indexes), 3 num
//   Location: 1 id, 3 address, 4 line (Line: 1 function_id, 2 line)
//   Function: 1 id, 2 name, 3 system_name, 4 filename
#include "pprof_read.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define MAX_ITEMS ((size_t)1 << 26)   // entries in any one table

typedef struct str_ref { const char *p; size_t len; } str_ref;
typedef struct vtype { int64_t type, unit; size_t off; char *type_s, *unit_s; } vtype;   // *_s: NUL-terminated copies
typedef struct sample {
    size_t loc0, nloc;   // location ids (indexes once resolved) in locids[loc0 .. loc0+nloc), leaf first
    size_t val0, nval;   // values in vals[]
    size_t lab0, nlab;   // labels in labels[]
    size_t off;          // offset of the message, for errors
} sample;
typedef struct label { int64_t key, str, num; size_t off; } label;
typedef struct location { uint64_t id, address; size_t line0, nline, off; } location;
typedef struct line { uint64_t function; size_t off; } line;   // function id, then index + 1 (0 = none)
typedef struct function { uint64_t id; int64_t name, system_name, filename; size_t off; } function;

#define VEC(T, name) T *name; size_t n_##name, cap_##name
struct pprof_data {
    uint8_t *bytes;      // the inflated (or copied) profile; strings point into it
    size_t len;
    VEC(str_ref, strs);
    VEC(vtype, types);
    VEC(sample, samples);
    VEC(uint64_t, locids);
    VEC(int64_t, vals);
    VEC(label, labels);
    VEC(location, locs);
    VEC(line, lines);
    VEC(function, funcs);
    int64_t default_type;   // string index, 0 = none
    char name[256];         // the input's name, for messages
};

// Appends one element to a vector; false when out of memory or over MAX_ITEMS.
static bool vpush(void **arr, size_t *n, size_t *cap, size_t elem, const void *item) {
    if (*n >= MAX_ITEMS) return false;
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        void *p = realloc(*arr, c * elem);
        if (!p) return false;
        *arr = p;
        *cap = c;
    }
    memcpy((char *)*arr + *n * elem, item, elem);
    (*n)++;
    return true;
}
#define PUSH(p, name, item) vpush((void **)&(p)->name, &(p)->n_##name, &(p)->cap_##name, sizeof *(p)->name, (item))

typedef struct dec {
    const char *name;
    char *err;
    size_t errlen;
    const uint8_t *base;   // start of the profile bytes (offsets are from here)
} dec;

static int fail(dec *d, size_t off, const char *fmt, ...) {
    if (d->err && d->errlen) {
        int k = snprintf(d->err, d->errlen, "%s: offset %zu: ", d->name, off);
        if (k > 0 && (size_t)k < d->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(d->err + k, d->errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

// --- gzip ------------------------------------------------------------------

// Inflates one or more concatenated gzip members into a new buffer.
static uint8_t *gunzip(const uint8_t *in, size_t len, size_t *out_len, dec *d) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) { fail(d, 0, "cannot start zlib"); return NULL; }
    size_t cap = len < ((size_t)1 << 16) ? (size_t)1 << 16 : len * 4;
    if (cap > PPROF_READ_MAX_INFLATED) cap = PPROF_READ_MAX_INFLATED;
    uint8_t *out = malloc(cap);
    size_t n = 0;
    const uint8_t *p = in;
    size_t left = len;
    bool ok = out != NULL;
    if (!ok) fail(d, 0, "out of memory");
    while (ok) {
        if (n == cap) {
            if (cap >= PPROF_READ_MAX_INFLATED) {
                ok = false;
                fail(d, (size_t)(p - in), "the profile inflates to more than %zu MiB", PPROF_READ_MAX_INFLATED >> 20);
                break;
            }
            size_t c = cap * 2 > PPROF_READ_MAX_INFLATED ? PPROF_READ_MAX_INFLATED : cap * 2;
            uint8_t *q = realloc(out, c);
            if (!q) { ok = false; fail(d, (size_t)(p - in), "out of memory"); break; }
            out = q;
            cap = c;
        }
        uInt in_chunk = left > (1u << 30) ? 1u << 30 : (uInt)left;
        uInt out_chunk = cap - n > (1u << 30) ? 1u << 30 : (uInt)(cap - n);
        zs.next_in = (Bytef *)(uintptr_t)p;
        zs.avail_in = in_chunk;
        zs.next_out = out + n;
        zs.avail_out = out_chunk;
        int rc = inflate(&zs, Z_NO_FLUSH);
        p += in_chunk - zs.avail_in;
        left -= in_chunk - zs.avail_in;
        n += out_chunk - zs.avail_out;
        if (rc == Z_STREAM_END) {
            if (left == 0) break;
            if (left >= 2 && p[0] == 0x1f && p[1] == 0x8b) { inflateReset(&zs); continue; }
            ok = false;
            fail(d, (size_t)(p - in), "bytes after the end of the gzip stream");
        } else if (rc == Z_OK || rc == Z_BUF_ERROR) {
            if (left == 0 && zs.avail_out != 0) { ok = false; fail(d, len, "truncated gzip stream"); }
        } else if (rc == Z_MEM_ERROR) {
            ok = false;
            fail(d, (size_t)(p - in), "out of memory");
        } else {
            ok = false;
            fail(d, (size_t)(p - in), "bad gzip data (%s)", zs.msg ? zs.msg : "corrupt stream");
        }
    }
    inflateEnd(&zs);
    if (!ok) { free(out); return NULL; }
    *out_len = n;
    return out;
}

// --- protobuf --------------------------------------------------------------

typedef struct cur { const uint8_t *p, *end; } cur;

typedef struct field {
    uint32_t num;   // field number
    int wt;         // wire type: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
    uint64_t v;     // the value of wire types 0, 1, 5
    cur body;       // the bytes of wire type 2
    size_t off;     // offset of the field's key
} field;

static int varint(cur *c, uint64_t *v, dec *d) {
    uint64_t x = 0;
    const uint8_t *start = c->p;
    for (int shift = 0; shift < 64; shift += 7) {
        if (c->p >= c->end) return fail(d, (size_t)(start - d->base), "truncated varint");
        uint8_t b = *c->p++;
        if (shift == 63 && b > 1) return fail(d, (size_t)(start - d->base), "varint longer than 64 bits");
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) { *v = x; return 0; }
    }
    return fail(d, (size_t)(start - d->base), "varint longer than 10 bytes");
}

// Reads the next field of the message in c.
static int next_field(cur *c, field *f, dec *d) {
    f->off = (size_t)(c->p - d->base);
    uint64_t key;
    if (varint(c, &key, d)) return -1;
    if (key >> 3 == 0 || key >> 3 > 0x1fffffff) return fail(d, f->off, "bad field number %llu", (unsigned long long)(key >> 3));
    f->num = (uint32_t)(key >> 3);
    f->wt = (int)(key & 7);
    size_t left = (size_t)(c->end - c->p);
    switch (f->wt) {
    case 0: return varint(c, &f->v, d);
    case 1:
        if (left < 8) return fail(d, f->off, "truncated 64-bit field %u", f->num);
        f->v = 0;
        for (int i = 7; i >= 0; i--) f->v = f->v << 8 | c->p[i];
        c->p += 8;
        return 0;
    case 5:
        if (left < 4) return fail(d, f->off, "truncated 32-bit field %u", f->num);
        f->v = (uint64_t)c->p[0] | (uint64_t)c->p[1] << 8 | (uint64_t)c->p[2] << 16 | (uint64_t)c->p[3] << 24;
        c->p += 4;
        return 0;
    case 2: {
        uint64_t n;
        if (varint(c, &n, d)) return -1;
        left = (size_t)(c->end - c->p);
        if (n > left) return fail(d, f->off, "field %u is %llu bytes long, past the end of its message (%zu bytes left)",
                                  f->num, (unsigned long long)n, left);
        f->body.p = c->p;
        f->body.end = c->p + n;
        c->p += n;
        return 0;
    }
    default:
        return fail(d, f->off, "field %u has wire type %d, which profile.proto does not use", f->num, f->wt);
    }
}

static int want(const field *f, int wt, const char *what, dec *d) {
    if (f->wt == wt) return 0;
    return fail(d, f->off, "%s has wire type %d, expected %d", what, f->wt, wt);
}

// A repeated integer field: one varint, or a packed run of them.
static int repeated(pprof_data *p, const field *f, bool ids, const char *what, dec *d) {
    if (f->wt == 0) {
        if (ids) return PUSH(p, locids, &f->v) ? 0 : fail(d, f->off, "more than %zu location ids", MAX_ITEMS);
        int64_t v = (int64_t)f->v;
        return PUSH(p, vals, &v) ? 0 : fail(d, f->off, "more than %zu values", MAX_ITEMS);
    }
    if (f->wt != 2) return fail(d, f->off, "%s has wire type %d, expected 0 or 2 (packed)", what, f->wt);
    cur c = f->body;
    while (c.p < c.end) {
        uint64_t v;
        if (varint(&c, &v, d)) return -1;
        bool ok = ids ? PUSH(p, locids, &v) : PUSH(p, vals, &(int64_t){(int64_t)v});
        if (!ok) return fail(d, (size_t)(c.p - d->base), "more than %zu %s", MAX_ITEMS, what);
    }
    return 0;
}

static int parse_value_type(pprof_data *p, const field *pf, dec *d) {
    vtype t = {.off = pf->off};
    cur c = pf->body;
    field f;
    while (c.p < c.end) {
        if (next_field(&c, &f, d)) return -1;
        if (f.num == 1 || f.num == 2) {
            if (want(&f, 0, "ValueType field", d)) return -1;
            if (f.num == 1) t.type = (int64_t)f.v; else t.unit = (int64_t)f.v;
        }
    }
    return PUSH(p, types, &t) ? 0 : fail(d, pf->off, "too many sample types");
}

static int parse_label(pprof_data *p, const field *pf, dec *d) {
    label l = {.off = pf->off};
    cur c = pf->body;
    field f;
    while (c.p < c.end) {
        if (next_field(&c, &f, d)) return -1;
        if (f.num >= 1 && f.num <= 4) {
            if (want(&f, 0, "Label field", d)) return -1;
            if (f.num == 1) l.key = (int64_t)f.v;
            else if (f.num == 2) l.str = (int64_t)f.v;
            else if (f.num == 3) l.num = (int64_t)f.v;
        }
    }
    return PUSH(p, labels, &l) ? 0 : fail(d, pf->off, "more than %zu labels", MAX_ITEMS);
}

static int parse_sample(pprof_data *p, const field *pf, dec *d) {
    sample s = {.loc0 = p->n_locids, .val0 = p->n_vals, .lab0 = p->n_labels, .off = pf->off};
    cur c = pf->body;
    field f;
    while (c.p < c.end) {
        if (next_field(&c, &f, d)) return -1;
        if (f.num == 1 && repeated(p, &f, true, "location ids", d)) return -1;
        if (f.num == 2 && repeated(p, &f, false, "values", d)) return -1;
        if (f.num == 3 && (want(&f, 2, "Sample.label", d) || parse_label(p, &f, d))) return -1;
    }
    s.nloc = p->n_locids - s.loc0;
    s.nval = p->n_vals - s.val0;
    s.nlab = p->n_labels - s.lab0;
    return PUSH(p, samples, &s) ? 0 : fail(d, pf->off, "more than %zu samples", MAX_ITEMS);
}

static int parse_location(pprof_data *p, const field *pf, dec *d) {
    location l = {.line0 = p->n_lines, .off = pf->off};
    cur c = pf->body;
    field f;
    while (c.p < c.end) {
        if (next_field(&c, &f, d)) return -1;
        if (f.num == 1 || f.num == 3) {
            if (want(&f, 0, "Location field", d)) return -1;
            if (f.num == 1) l.id = f.v; else l.address = f.v;
        } else if (f.num == 4) {
            if (want(&f, 2, "Location.line", d)) return -1;
            line ln = {.off = f.off};
            cur lc = f.body;
            field g;
            while (lc.p < lc.end) {
                if (next_field(&lc, &g, d)) return -1;
                if (g.num == 1) {
                    if (want(&g, 0, "Line.function_id", d)) return -1;
                    ln.function = g.v;
                }
            }
            if (!PUSH(p, lines, &ln)) return fail(d, f.off, "more than %zu lines", MAX_ITEMS);
        }
    }
    l.nline = p->n_lines - l.line0;
    return PUSH(p, locs, &l) ? 0 : fail(d, pf->off, "more than %zu locations", MAX_ITEMS);
}

static int parse_function(pprof_data *p, const field *pf, dec *d) {
    function fn = {.off = pf->off};
    cur c = pf->body;
    field f;
    while (c.p < c.end) {
        if (next_field(&c, &f, d)) return -1;
        if (f.num >= 1 && f.num <= 5) {
            if (want(&f, 0, "Function field", d)) return -1;
            if (f.num == 1) fn.id = f.v;
            else if (f.num == 2) fn.name = (int64_t)f.v;
            else if (f.num == 3) fn.system_name = (int64_t)f.v;
            else if (f.num == 4) fn.filename = (int64_t)f.v;
        }
    }
    return PUSH(p, funcs, &fn) ? 0 : fail(d, pf->off, "more than %zu functions", MAX_ITEMS);
}

static int parse_profile(pprof_data *p, dec *d) {
    cur c = {p->bytes, p->bytes + p->len};
    field f;
    while (c.p < c.end) {
        if (next_field(&c, &f, d)) return -1;
        int rc = 0;
        switch (f.num) {
        case 1: rc = want(&f, 2, "Profile.sample_type", d) || parse_value_type(p, &f, d); break;
        case 2: rc = want(&f, 2, "Profile.sample", d) || parse_sample(p, &f, d); break;
        case 4: rc = want(&f, 2, "Profile.location", d) || parse_location(p, &f, d); break;
        case 5: rc = want(&f, 2, "Profile.function", d) || parse_function(p, &f, d); break;
        case 6: {
            if (want(&f, 2, "Profile.string_table", d)) return -1;
            str_ref s = {(const char *)f.body.p, (size_t)(f.body.end - f.body.p)};
            if (!PUSH(p, strs, &s)) return fail(d, f.off, "more than %zu strings", MAX_ITEMS);
            break;
        }
        case 14: rc = want(&f, 0, "Profile.default_sample_type", d); p->default_type = (int64_t)f.v; break;
        default: break;   // mappings, comments, period, times: not needed here
        }
        if (rc) return -1;
    }
    return 0;
}

// --- resolution ------------------------------------------------------------

static int check_str(const pprof_data *p, int64_t i, size_t off, const char *what, dec *d) {
    if (i == 0 || (i > 0 && (uint64_t)i < p->n_strs)) return 0;
    return fail(d, off, "%s is string %lld, but the string table has %zu entries", what, (long long)i, p->n_strs);
}

static str_ref str_at(const pprof_data *p, int64_t i) {
    if (i > 0 && (uint64_t)i < p->n_strs) return p->strs[i];
    return (str_ref){"", 0};
}

// An id → index map (open addressing; ids are nonzero).
typedef struct idmap { uint64_t *ids; uint32_t *idx; size_t cap; } idmap;

static uint64_t mix(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33;
    return x;
}

static bool idmap_init(idmap *m, size_t n) {
    m->cap = 16;
    while (m->cap < n * 2) m->cap *= 2;
    m->ids = calloc(m->cap, sizeof *m->ids);
    m->idx = calloc(m->cap, sizeof *m->idx);
    return m->ids && m->idx;
}
static void idmap_free(idmap *m) { free(m->ids); free(m->idx); }
// Inserts; false when the id is already present.
static bool idmap_put(idmap *m, uint64_t id, uint32_t idx) {
    size_t j = mix(id) & (m->cap - 1);
    for (; m->ids[j]; j = (j + 1) & (m->cap - 1))
        if (m->ids[j] == id) return false;
    m->ids[j] = id;
    m->idx[j] = idx;
    return true;
}
static bool idmap_get(const idmap *m, uint64_t id, uint32_t *idx) {
    if (!id) return false;
    for (size_t j = mix(id) & (m->cap - 1); m->ids[j]; j = (j + 1) & (m->cap - 1))
        if (m->ids[j] == id) { *idx = m->idx[j]; return true; }
    return false;
}

static char *cstr(str_ref s) {
    size_t n = s.len < 256 ? s.len : 256;
    char *c = malloc(n + 1);
    if (c) { memcpy(c, s.p, n); c[n] = 0; }
    return c;
}

static int resolve(pprof_data *p, dec *d) {
    for (size_t i = 0; i < p->n_types; i++) {
        vtype *t = &p->types[i];
        if (check_str(p, t->type, t->off, "sample type", d) || check_str(p, t->unit, t->off, "sample unit", d)) return -1;
        t->type_s = cstr(str_at(p, t->type));
        t->unit_s = cstr(str_at(p, t->unit));
        if (!t->type_s || !t->unit_s) return fail(d, t->off, "out of memory");
    }
    if (check_str(p, p->default_type, 0, "default_sample_type", d)) return -1;
    idmap fm = {0}, lm = {0};
    int rc = -1;
    if (!idmap_init(&fm, p->n_funcs) || !idmap_init(&lm, p->n_locs)) { fail(d, 0, "out of memory"); goto out; }
    for (size_t i = 0; i < p->n_funcs; i++) {
        const function *fn = &p->funcs[i];
        if (!fn->id) { fail(d, fn->off, "function with id 0"); goto out; }
        if (!idmap_put(&fm, fn->id, (uint32_t)i)) { fail(d, fn->off, "function id %llu defined twice", (unsigned long long)fn->id); goto out; }
        if (check_str(p, fn->name, fn->off, "function name", d) || check_str(p, fn->system_name, fn->off, "function system name", d) ||
            check_str(p, fn->filename, fn->off, "function file name", d)) goto out;
    }
    for (size_t i = 0; i < p->n_lines; i++) {
        line *ln = &p->lines[i];
        uint32_t k;
        if (!ln->function) continue;   // a line without a function: the location's address is shown
        if (!idmap_get(&fm, ln->function, &k)) { fail(d, ln->off, "line refers to function %llu, which is not defined", (unsigned long long)ln->function); goto out; }
        ln->function = (uint64_t)k + 1;
    }
    for (size_t i = 0; i < p->n_locs; i++) {
        const location *l = &p->locs[i];
        if (!l->id) { fail(d, l->off, "location with id 0"); goto out; }
        if (!idmap_put(&lm, l->id, (uint32_t)i)) { fail(d, l->off, "location id %llu defined twice", (unsigned long long)l->id); goto out; }
    }
    for (size_t i = 0; i < p->n_samples; i++) {
        const sample *s = &p->samples[i];
        if (s->nval != p->n_types) {
            fail(d, s->off, "sample has %zu values but the profile has %zu sample types", s->nval, p->n_types);
            goto out;
        }
        for (size_t j = 0; j < s->nloc; j++) {
            uint64_t *id = &p->locids[s->loc0 + j];
            uint32_t k;
            if (!idmap_get(&lm, *id, &k)) { fail(d, s->off, "sample refers to location %llu, which is not defined", (unsigned long long)*id); goto out; }
            *id = k;
        }
        for (size_t j = 0; j < s->nlab; j++) {
            const label *l = &p->labels[s->lab0 + j];
            if (check_str(p, l->key, l->off, "label key", d) || check_str(p, l->str, l->off, "label value", d)) goto out;
        }
    }
    rc = 0;
out:
    idmap_free(&fm);
    idmap_free(&lm);
    return rc;
}

pprof_data *pprof_data_parse(const uint8_t *buf, size_t len, const char *name, char *err, size_t errlen) {
    dec d = {.name = name ? name : "profile", .err = err, .errlen = errlen};
    pprof_data *p = calloc(1, sizeof *p);
    if (!p) { fail(&d, 0, "out of memory"); return NULL; }
    if (len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b) {
        p->bytes = gunzip(buf, len, &p->len, &d);
    } else {
        if (len > PPROF_READ_MAX_INFLATED) { fail(&d, 0, "the profile is larger than %zu MiB", PPROF_READ_MAX_INFLATED >> 20); free(p); return NULL; }
        p->bytes = malloc(len ? len : 1);
        if (p->bytes) memcpy(p->bytes, buf, len);
        else fail(&d, 0, "out of memory");
        p->len = len;
    }
    if (!p->bytes) { free(p); return NULL; }
    snprintf(p->name, sizeof p->name, "%s", d.name);
    d.base = p->bytes;
    if (parse_profile(p, &d) || resolve(p, &d)) { pprof_data_free(p); return NULL; }
    return p;
}

void pprof_data_free(pprof_data *p) {
    if (!p) return;
    free(p->bytes);
    free(p->strs);
    for (size_t i = 0; p->types && i < p->n_types; i++) { free(p->types[i].type_s); free(p->types[i].unit_s); }
    free(p->types);
    free(p->samples);
    free(p->locids);
    free(p->vals);
    free(p->labels);
    free(p->locs);
    free(p->lines);
    free(p->funcs);
    free(p);
}

size_t pprof_data_n_types(const pprof_data *p) { return p->n_types; }
size_t pprof_data_n_samples(const pprof_data *p) { return p->n_samples; }

size_t pprof_data_n_functions(const pprof_data *p) { return p->n_funcs; }

static void str_copy(str_ref s, char *out, size_t n) {
    if (!n) return;
    const size_t k = s.len < n - 1 ? s.len : n - 1;
    memcpy(out, s.p, k);
    out[k] = 0;
}

void pprof_data_function(const pprof_data *p, size_t i, char *name, size_t nlen, char *file, size_t flen) {
    const bool ok = i < p->n_funcs;
    str_copy(ok ? str_at(p, p->funcs[i].name) : (str_ref){"", 0}, name, nlen);
    str_copy(ok ? str_at(p, p->funcs[i].filename) : (str_ref){"", 0}, file, flen);
}

const char *pprof_data_type(const pprof_data *p, size_t i, const char **unit) {
    if (i >= p->n_types) { if (unit) *unit = ""; return ""; }
    if (unit) *unit = p->types[i].unit_s;
    return p->types[i].type_s;
}

static bool str_eq(str_ref s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && !memcmp(s.p, c, n);
}

size_t pprof_data_default_type(const pprof_data *p) {
    if (!p->n_types) return 0;
    if (p->default_type) {
        str_ref want_s = str_at(p, p->default_type);
        for (size_t i = 0; i < p->n_types; i++) {
            str_ref t = str_at(p, p->types[i].type);
            if (t.len == want_s.len && !memcmp(t.p, want_s.p, t.len)) return i;
        }
    }
    return p->n_types - 1;
}

int pprof_data_find_type(const pprof_data *p, const char *spec) {
    if (!spec || !*spec) return -1;
    bool digits = true;
    for (const char *c = spec; *c; c++) digits &= *c >= '0' && *c <= '9';
    if (digits) {
        if (strlen(spec) > 9) return -1;
        long v = atol(spec);
        return (size_t)v < p->n_types ? (int)v : -1;
    }
    for (size_t i = 0; i < p->n_types && i < (size_t)INT32_MAX; i++)
        if (str_eq(str_at(p, p->types[i].type), spec)) return (int)i;
    return -1;
}

static bool has_label(const pprof_data *p, const sample *s, const char *key, const char *value) {
    for (size_t j = 0; j < s->nlab; j++) {
        const label *l = &p->labels[s->lab0 + j];
        if (!str_eq(str_at(p, l->key), key)) continue;
        if (l->str ? str_eq(str_at(p, l->str), value) : false) return true;
        if (!l->str) {
            char num[32];
            snprintf(num, sizeof num, "%lld", (long long)l->num);
            if (!strcmp(num, value)) return true;
        }
    }
    return false;
}

static bool intrinsics_header(str_ref f) {
    static const char suf[] = "intrin.h";
    const size_t k = sizeof suf - 1;
    return f.len >= k && !memcmp(f.p + f.len - k, suf, k);
}

int pprof_data_fold(const pprof_data *p, size_t type, const char *tag_key, const char *tag_value, fold_tree *t,
                    char *err, size_t errlen) {
    return pprof_data_fold_opt(p, type, tag_key, tag_value, 0, t, err, errlen);
}

int pprof_data_fold_opt(const pprof_data *p, size_t type, const char *tag_key, const char *tag_value, unsigned opts,
                        fold_tree *t, char *err, size_t errlen) {
    if (type >= p->n_types) {
        snprintf(err, errlen, "%s: sample index %zu is out of range (the profile has %zu sample types)", p->name, type, p->n_types);
        return -1;
    }
    const size_t max = FOLD_MAX_DEPTH + 1;
    const char **fr = malloc(max * sizeof *fr);
    size_t *fl = malloc(max * sizeof *fl);
    char *addr = malloc(max * 20);   // "0x" + 16 hex digits + NUL per frame
    int rc = 0;
    if (!fr || !fl || !addr) { snprintf(err, errlen, "%s: out of memory", p->name); rc = -1; }
    char why[160];
    for (size_t i = 0; rc == 0 && i < p->n_samples; i++) {
        const sample *s = &p->samples[i];
        int64_t v = p->vals[s->val0 + type];
        if (v <= 0) continue;
        if (tag_key && !has_label(p, s, tag_key, tag_value ? tag_value : "")) continue;
        size_t n = 0;
        for (size_t j = s->nloc; j-- > 0 && n < max;) {   // root (the last location) first
            const location *l = &p->locs[p->locids[s->loc0 + j]];
            bool named = false;
            for (size_t k = l->nline; k-- > 0 && n < max;) {   // the last line is the outermost inlined frame
                const line *ln = &p->lines[l->line0 + k];
                if (!ln->function) continue;
                const function *fn = &p->funcs[ln->function - 1];
                if ((opts & PPROF_FOLD_INTRINSICS_IN_CALLER) && k + 1 < l->nline && intrinsics_header(str_at(p, fn->filename)))
                    continue;   // an inlined intrinsic: its time stays with its caller
                str_ref nm = str_at(p, fn->name);
                if (!nm.len) nm = str_at(p, fn->system_name);
                if (!nm.len) continue;
                fr[n] = nm.p;
                fl[n++] = nm.len;
                named = true;
            }
            if (!named && n < max) {
                char *a = addr + n * 20;
                fl[n] = (size_t)snprintf(a, 20, "0x%llx", (unsigned long long)l->address);
                fr[n++] = a;
            }
        }
        if (n == 0) {
            fr[0] = "[no frames]";
            fl[0] = strlen(fr[0]);
            n = 1;
        }
        rc = fold_add(t, fr, fl, n, v, why, sizeof why);
        if (rc) snprintf(err, errlen, "%s: offset %zu: %s", p->name, s->off, why);
    }
    free(fr);
    free(fl);
    free(addr);
    return rc;
}
