// profile.c — profile.proto builder, encoder and gzip (see profile.h).
//
// profile.proto field numbers used here:
//   Profile: 1 sample_type, 2 sample, 3 mapping, 4 location, 5 function,
//            6 string_table, 9 time_nanos, 10 duration_nanos, 11 period_type,
//            12 period, 13 comment, 14 default_sample_type
//   ValueType: 1 type, 2 unit            Sample: 1 location_id, 2 value, 3 label
//   Label: 1 key, 2 str, 3 num, 4 num_unit           Mapping: 1 id, 2 memory_start,
//   3 memory_limit, 4 file_offset, 5 filename, 6 build_id, 7 has_functions,
//   8 has_filenames, 9 has_line_numbers, 10 has_inline_frames
//   Location: 1 id, 2 mapping_id, 3 address, 4 line   Line: 1 function_id, 2 line
//   Function: 1 id, 2 name, 3 system_name, 4 filename, 5 start_line
#include "profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "symbolize.h"
#include "unwind.h"

// ---- the encoder ----------------------------------------------------------

static void put(prof_pbuf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *nd = realloc(b->data, cap);
        if (!nd) { b->oom = true; return; }
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, d, n);
    b->len += n;
}

void prof_pb_varint(prof_pbuf *b, uint64_t v) {
    uint8_t tmp[10];
    int n = 0;
    while (v >= 0x80) { tmp[n++] = (uint8_t)(v | 0x80); v >>= 7; }
    tmp[n++] = (uint8_t)v;
    put(b, tmp, (size_t)n);
}

static void key(prof_pbuf *b, int tag, int wire) { prof_pb_varint(b, (uint64_t)tag << 3 | (uint64_t)wire); }

void prof_pb_uint64(prof_pbuf *b, int tag, uint64_t v) {
    if (!v) return;
    key(b, tag, 0);
    prof_pb_varint(b, v);
}

void prof_pb_int64(prof_pbuf *b, int tag, int64_t v) { prof_pb_uint64(b, tag, (uint64_t)v); }

void prof_pb_bool(prof_pbuf *b, int tag, bool v) { prof_pb_uint64(b, tag, v ? 1 : 0); }

void prof_pb_bytes(prof_pbuf *b, int tag, const void *d, size_t n) {
    key(b, tag, 2);
    prof_pb_varint(b, n);
    put(b, d, n);
}

void prof_pb_packed(prof_pbuf *b, int tag, const uint64_t *v, int n) {
    if (n <= 0) return;
    prof_pbuf tmp = {0};
    for (int i = 0; i < n; i++) prof_pb_varint(&tmp, v[i]);
    if (tmp.oom) b->oom = true;
    prof_pb_bytes(b, tag, tmp.data, tmp.len);
    free(tmp.data);
}

// A nested message: encoded into `sub`, then appended with its length.
static void message(prof_pbuf *b, int tag, prof_pbuf *sub) {
    if (sub->oom) b->oom = true;
    prof_pb_bytes(b, tag, sub->data, sub->len);
    sub->len = 0;
    sub->oom = false;
}

bool prof_gzip(const uint8_t *in, size_t n, uint8_t **out, size_t *outlen) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
    uLong cap = deflateBound(&z, (uLong)n);
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) { deflateEnd(&z); return false; }
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = buf;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t got = z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) { free(buf); return false; }
    *out = buf;
    *outlen = got;
    return true;
}

// ---- small tables ---------------------------------------------------------

// u64 key -> u32 value (open addressing; value 0 = empty, so store index + 1).
typedef struct u64map { uint64_t *keys; uint32_t *vals; size_t cap, n; } u64map;

static uint64_t mix(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
    return x;
}

static bool map_grow(u64map *m) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    uint64_t *k = calloc(cap, sizeof *k);
    uint32_t *v = calloc(cap, sizeof *v);
    if (!k || !v) { free(k); free(v); return false; }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->vals[i]) continue;
        size_t j = mix(m->keys[i]) & (cap - 1);
        while (v[j]) j = (j + 1) & (cap - 1);
        k[j] = m->keys[i];
        v[j] = m->vals[i];
    }
    free(m->keys); free(m->vals);
    m->keys = k; m->vals = v; m->cap = cap;
    return true;
}

// The slot for key: *val is 0 when absent (set it to insert). NULL on OOM.
static uint32_t *map_slot(u64map *m, uint64_t k) {
    if ((m->n + 1) * 2 > m->cap && !map_grow(m)) return NULL;
    size_t j = mix(k) & (m->cap - 1);
    while (m->vals[j] && m->keys[j] != k) j = (j + 1) & (m->cap - 1);
    if (!m->vals[j]) { m->keys[j] = k; m->n++; }
    return &m->vals[j];
}

static void map_free(u64map *m) { free(m->keys); free(m->vals); }

typedef struct sample {
    uint32_t *locs;     // location indices (leaf first)
    int nloc;
    int64_t values[PROF_MAX_VALUES];
    int nlabels;
    struct { int64_t key, str, num, unit; } labels[PROF_MAX_LABELS];
} sample;

typedef struct location { uintptr_t addr; bool exact; const char *name; } location;   // name: a synthetic frame (owned)

struct prof_profile {
    char **strs;                 // string table; strs[0] = ""
    int nstr, capstr;
    u64map strmap;               // hash(string) -> chain head (index + 1); collisions by probing strs
    int64_t stype[PROF_MAX_VALUES][2];
    int nstype;
    int64_t ptype[2], period, time_nanos, duration_nanos, default_type;
    int64_t comments[8];
    int ncomments;
    sample *samples;
    size_t nsamples, capsamples;
    location *locs;
    size_t nlocs, caplocs;
    u64map locmap;               // (addr << 1 | exact) -> location index + 1
    bool oom;
};

static uint64_t strhash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

// Index of s in the string table, added when new.
static int64_t str_index(prof_profile *p, const char *s) {
    if (!s || !*s) return 0;
    uint64_t h = strhash(s);
    for (uint64_t probe = 0;; probe++) {   // rehash on collision of different strings
        uint32_t *slot = map_slot(&p->strmap, h + probe * 0x9e3779b97f4a7c15ULL);
        if (!slot) { p->oom = true; return 0; }
        if (*slot) {
            if (strcmp(p->strs[*slot - 1], s) == 0) return *slot - 1;
            continue;
        }
        if (p->nstr == p->capstr) {
            int cap = p->capstr * 2;
            char **ns = realloc(p->strs, (size_t)cap * sizeof *ns);
            if (!ns) { p->oom = true; p->strmap.n--; return 0; }
            p->strs = ns;
            p->capstr = cap;
        }
        char *copy = strdup(s);
        if (!copy) { p->oom = true; p->strmap.n--; return 0; }
        p->strs[p->nstr++] = copy;
        *slot = (uint32_t)p->nstr;
        return p->nstr - 1;
    }
}

prof_profile *prof_profile_new(void) {
    prof_profile *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->capstr = 64;
    p->strs = calloc((size_t)p->capstr, sizeof *p->strs);
    if (!p->strs || !(p->strs[0] = strdup(""))) { free(p->strs); free(p); return NULL; }
    p->nstr = 1;
    return p;
}

void prof_profile_free(prof_profile *p) {
    if (!p) return;
    for (int i = 0; i < p->nstr; i++) free(p->strs[i]);
    free(p->strs);
    map_free(&p->strmap);
    for (size_t i = 0; i < p->nsamples; i++) free(p->samples[i].locs);
    free(p->samples);
    for (size_t i = 0; i < p->nlocs; i++) free((char *)p->locs[i].name);
    free(p->locs);
    map_free(&p->locmap);
    free(p);
}

void prof_profile_sample_type(prof_profile *p, const char *type, const char *unit) {
    if (p->nstype >= PROF_MAX_VALUES) return;
    p->stype[p->nstype][0] = str_index(p, type);
    p->stype[p->nstype][1] = str_index(p, unit);
    p->nstype++;
}

void prof_profile_period(prof_profile *p, const char *type, const char *unit, int64_t period) {
    p->ptype[0] = str_index(p, type);
    p->ptype[1] = str_index(p, unit);
    p->period = period;
}

void prof_profile_default_sample_type(prof_profile *p, const char *type) { p->default_type = str_index(p, type); }

void prof_profile_times(prof_profile *p, int64_t time_nanos, int64_t duration_nanos) {
    p->time_nanos = time_nanos;
    p->duration_nanos = duration_nanos;
}

void prof_profile_comment(prof_profile *p, const char *comment) {
    if (p->ncomments < 8) p->comments[p->ncomments++] = str_index(p, comment);
}

static int64_t loc_index(prof_profile *p, uintptr_t addr, bool exact) {
    uint32_t *slot = map_slot(&p->locmap, (uint64_t)addr << 1 | exact);
    if (!slot) return -1;
    if (*slot) return *slot - 1;
    if (p->nlocs == p->caplocs) {
        size_t cap = p->caplocs ? p->caplocs * 2 : 256;
        location *nl = realloc(p->locs, cap * sizeof *nl);
        if (!nl) { p->locmap.n--; return -1; }   // slot stays 0: absent
        p->locs = nl;
        p->caplocs = cap;
    }
    p->locs[p->nlocs] = (location){addr, exact, NULL};
    *slot = (uint32_t)++p->nlocs;
    return (int64_t)p->nlocs - 1;
}

bool prof_profile_add(prof_profile *p, const uintptr_t *pcs, int n, bool leaf_exact,
                      const int64_t *values, const prof_label *labels, int nlabels) {
    if (p->nsamples == p->capsamples) {
        size_t cap = p->capsamples ? p->capsamples * 2 : 256;
        sample *ns = realloc(p->samples, cap * sizeof *ns);
        if (!ns) { p->oom = true; return false; }
        p->samples = ns;
        p->capsamples = cap;
    }
    sample *s = &p->samples[p->nsamples];
    memset(s, 0, sizeof *s);
    if (n > 0) {
        s->locs = malloc((size_t)n * sizeof *s->locs);
        if (!s->locs) { p->oom = true; return false; }
    }
    for (int i = 0; i < n; i++) {
        int64_t li = loc_index(p, pcs[i], leaf_exact && i == 0);
        if (li < 0) { free(s->locs); p->oom = true; return false; }
        s->locs[s->nloc++] = (uint32_t)li;
    }
    for (int i = 0; i < p->nstype; i++) s->values[i] = values[i];
    for (int i = 0; i < nlabels && s->nlabels < PROF_MAX_LABELS; i++) {
        if (!labels[i].key) continue;
        int k = s->nlabels++;
        s->labels[k].key = str_index(p, labels[i].key);
        s->labels[k].str = labels[i].str ? str_index(p, labels[i].str) : 0;
        s->labels[k].num = labels[i].str ? 0 : labels[i].num;
        s->labels[k].unit = labels[i].str ? 0 : str_index(p, labels[i].unit);
    }
    p->nsamples++;
    return !p->oom;
}

bool prof_profile_add_named(prof_profile *p, const char *frame, const int64_t *values, const prof_label *labels, int nlabels) {
    // A location of its own, keyed past every real address (the key is
    // addr << 1 | exact, so the location count goes in whole).
    uintptr_t key = (uintptr_t)1 << 62 | (uintptr_t)p->nlocs;
    char *name = strdup(frame);
    if (!name) { p->oom = true; return false; }
    int64_t li = loc_index(p, key, true);
    if (li < 0) { free(name); p->oom = true; return false; }
    p->locs[li].addr = 0;
    p->locs[li].name = name;
    size_t before = p->nsamples;
    uintptr_t none = 0;
    if (!prof_profile_add(p, &none, 0, false, values, labels, nlabels)) return false;
    sample *s = &p->samples[before];
    s->locs = malloc(sizeof *s->locs);
    if (!s->locs) { p->oom = true; return false; }
    s->locs[0] = (uint32_t)li;
    s->nloc = 1;
    return true;
}

bool prof_profile_write(prof_profile *p, bool gzip, uint8_t **out, size_t *len) {
    prof_pbuf b = {0}, sub = {0}, sub2 = {0};
    prof_symbolizer *sym = prof_sym_new();
    u64map funcmap = {0};     // (name index << 32 | file index) -> function id
    int64_t (*funcs)[3] = NULL;   // name, file, start_line
    size_t nfuncs = 0, capfuncs = 0;
    bool ok = false;

    for (int i = 0; i < p->nstype; i++) {
        prof_pb_int64(&sub, 1, p->stype[i][0]);
        prof_pb_int64(&sub, 2, p->stype[i][1]);
        message(&b, 1, &sub);
    }
    for (size_t i = 0; i < p->nsamples; i++) {
        sample *s = &p->samples[i];
        uint64_t *ids = malloc(((size_t)s->nloc + 1) * sizeof *ids);
        uint64_t vals[PROF_MAX_VALUES];
        if (!ids) goto done;
        for (int j = 0; j < s->nloc; j++) ids[j] = (uint64_t)s->locs[j] + 1;
        for (int j = 0; j < p->nstype; j++) vals[j] = (uint64_t)s->values[j];
        prof_pb_packed(&sub, 1, ids, s->nloc);
        prof_pb_packed(&sub, 2, vals, p->nstype);
        free(ids);
        for (int j = 0; j < s->nlabels; j++) {
            prof_pb_int64(&sub2, 1, s->labels[j].key);
            prof_pb_int64(&sub2, 2, s->labels[j].str);
            prof_pb_int64(&sub2, 3, s->labels[j].num);
            prof_pb_int64(&sub2, 4, s->labels[j].unit);
            message(&sub, 3, &sub2);
        }
        message(&b, 2, &sub);
    }
    int nmaps = 0;
    const prof_mapping *maps = sym ? prof_sym_mappings(sym, &nmaps) : NULL;
    for (int i = 0; i < nmaps; i++) {
        prof_pb_uint64(&sub, 1, (uint64_t)i + 1);
        prof_pb_uint64(&sub, 2, maps[i].start);
        prof_pb_uint64(&sub, 3, maps[i].limit);
        prof_pb_uint64(&sub, 4, maps[i].offset);
        prof_pb_int64(&sub, 5, str_index(p, maps[i].file));
        prof_pb_int64(&sub, 6, str_index(p, maps[i].build_id));
        prof_pb_bool(&sub, 7, true);
        prof_pb_bool(&sub, 8, true);
        prof_pb_bool(&sub, 9, true);
        prof_pb_bool(&sub, 10, true);
        message(&b, 3, &sub);
    }
    for (size_t i = 0; i < p->nlocs; i++) {
        location *l = &p->locs[i];
        prof_pb_uint64(&sub, 1, (uint64_t)i + 1);
        int mi = sym ? prof_sym_mapping_of(sym, l->addr) : -1;
        prof_pb_uint64(&sub, 2, mi >= 0 ? (uint64_t)mi + 1 : 0);
        prof_pb_uint64(&sub, 3, l->addr);
        prof_frame fr[16];
        int nf = l->name ? 1 : sym ? prof_sym_lookup(sym, l->exact ? l->addr : l->addr - 1, fr, 16) : 0;
        if (l->name) fr[0] = (prof_frame){l->name, NULL, 0, 0, 0};
        for (int j = 0; j < nf; j++) {
            char unknown[32];
            const char *name = fr[j].func;
            if (!name) { snprintf(unknown, sizeof unknown, "0x%lx", (unsigned long)l->addr); name = unknown; }
            int64_t ni = str_index(p, name), fi = str_index(p, fr[j].file);
            uint32_t *slot = map_slot(&funcmap, (uint64_t)ni << 32 | (uint64_t)fi);
            if (!slot) goto done;
            if (!*slot) {
                if (nfuncs == capfuncs) {
                    size_t cap = capfuncs ? capfuncs * 2 : 256;
                    void *nf2 = realloc(funcs, cap * sizeof *funcs);
                    if (!nf2) goto done;
                    funcs = nf2;
                    capfuncs = cap;
                }
                funcs[nfuncs][0] = ni;
                funcs[nfuncs][1] = fi;
                funcs[nfuncs][2] = fr[j].start_line;
                *slot = (uint32_t)++nfuncs;
            }
            prof_pb_uint64(&sub2, 1, *slot);
            prof_pb_int64(&sub2, 2, fr[j].line);
            message(&sub, 4, &sub2);
        }
        message(&b, 4, &sub);
    }
    for (size_t i = 0; i < nfuncs; i++) {
        prof_pb_uint64(&sub, 1, (uint64_t)i + 1);
        prof_pb_int64(&sub, 2, funcs[i][0]);
        prof_pb_int64(&sub, 3, funcs[i][0]);
        prof_pb_int64(&sub, 4, funcs[i][1]);
        prof_pb_int64(&sub, 5, funcs[i][2]);
        message(&b, 5, &sub);
    }
    prof_pb_int64(&b, 9, p->time_nanos);
    prof_pb_int64(&b, 10, p->duration_nanos);
    if (p->ptype[0] || p->ptype[1]) {
        prof_pb_int64(&sub, 1, p->ptype[0]);
        prof_pb_int64(&sub, 2, p->ptype[1]);
        message(&b, 11, &sub);
    }
    prof_pb_int64(&b, 12, p->period);
    for (int i = 0; i < p->ncomments; i++) {
        key(&b, 13, 0);
        prof_pb_varint(&b, (uint64_t)p->comments[i]);
    }
    prof_pb_int64(&b, 14, p->default_type);
    // The string table last: symbolization above added to it.
    for (int i = 0; i < p->nstr; i++) prof_pb_bytes(&b, 6, p->strs[i], strlen(p->strs[i]));
    if (b.oom || sub.oom || sub2.oom || p->oom) goto done;
    if (gzip) {
        ok = prof_gzip(b.data, b.len, out, len);
    } else {
        *out = b.data;
        *len = b.len;
        b.data = NULL;
        ok = true;
    }
done:
    free(b.data);
    free(sub.data);
    free(sub2.data);
    free(funcs);
    map_free(&funcmap);
    prof_sym_free(sym);
    return ok;
}
