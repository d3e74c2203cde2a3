// evidence.c — readers of the threads dump, the Prometheus text format and
// the execution trace (see evidence.h). Bounded, allocation-checked, no
// global state.
#include "evidence.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

// Copies at most n bytes of s into a NUL-terminated buffer of EV_NAME bytes,
// replacing control bytes.
static void copyname(char dst[EV_NAME], const char *s, size_t n) {
    if (n > EV_NAME - 1) n = EV_NAME - 1;
    for (size_t i = 0; i < n; i++) dst[i] = (unsigned char)s[i] < 0x20 ? '_' : s[i];
    dst[n] = 0;
}

// A line cursor over the input: returns the next line (without its end) or NULL.
typedef struct lines {
    const char *p, *end;
    size_t no;
} lines;

static const char *next_line(lines *l, size_t *n) {
    if (l->p >= l->end) return NULL;
    const char *s = l->p;
    const char *e = memchr(s, '\n', (size_t)(l->end - s));
    if (!e) e = l->end;
    l->p = e < l->end ? e + 1 : e;
    l->no++;
    *n = (size_t)(e - s);
    if (*n && s[*n - 1] == '\r') (*n)--;
    return s;
}

// Finds `needle` in s[0..n); NULL when absent.
static const char *find(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    if (k > n) return NULL;
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(s + i, needle, k)) return s + i;
    return NULL;
}

// Parses a decimal number from s[0..n) into *out (strict: the whole span).
static bool span_f64(const char *s, size_t n, double *out) {
    char buf[64];
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *e;
    errno = 0;
    double v = strtod(buf, &e);
    if (*e || errno == ERANGE || isnan(v)) return false;
    *out = v;
    return true;
}

static bool span_i64(const char *s, size_t n, int64_t *out) {
    if (n == 0 || n > 19) return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

// ---- threads dump -------------------------------------------------------------

// Parses the bracketed and braced parts of a thread header line.
static bool thread_header(const char *s, size_t n, ev_thread *t) {
    // thread SEQ "NAME" [role R, tid T, running|waiting on "O" for MS ms] {request=I, phase=P}:
    if (n < 8 || memcmp(s, "thread ", 7)) return false;
    const char *q1 = memchr(s, '"', n);
    if (!q1) return false;
    const char *q2 = memchr(q1 + 1, '"', (size_t)(s + n - q1 - 1));
    if (!q2) return false;
    copyname(t->name, q1 + 1, (size_t)(q2 - q1 - 1));
    const char *b = memchr(q2, '[', (size_t)(s + n - q2));
    if (!b) return false;
    // The closing bracket is the last ']' (a wait name may hold one).
    const char *be = NULL;
    for (const char *p = s + n - 1; p > b; p--)
        if (*p == ']') { be = p; break; }
    if (!be) return false;
    const char *in = b + 1;
    size_t inn = (size_t)(be - in);
    if (inn < 5 || memcmp(in, "role ", 5)) return false;
    const char *c = memchr(in, ',', inn);
    if (!c) return false;
    copyname(t->role, in + 5, (size_t)(c - in - 5));
    const char *tid = find(in, inn, "tid ");
    if (tid) {
        const char *te = tid + 4;
        while (te < be && isdigit((unsigned char)*te)) te++;
        if (!span_i64(tid + 4, (size_t)(te - tid - 4), &t->tid)) return false;
    }
    const char *w = find(in, inn, "waiting on \"");
    if (w) {
        const char *o = w + 12;
        const char *oe = NULL;
        const char *fo = find(o, (size_t)(be - o), "\" for ");
        if (fo) oe = fo;
        if (!oe) return false;
        t->waiting = true;
        copyname(t->wait_on, o, (size_t)(oe - o));
        const char *ms = oe + 6, *me = find(ms, (size_t)(be - ms), " ms");
        if (!me || !span_f64(ms, (size_t)(me - ms), &t->wait_ms)) return false;
    }
    const char *br = memchr(be, '{', (size_t)(s + n - be));
    if (br) {
        const char *bre = memchr(br, '}', (size_t)(s + n - br));
        if (!bre) return false;
        const char *ph = find(br, (size_t)(bre - br), "phase=");
        if (ph) {
            const char *pe = ph + 6;
            while (pe < bre && *pe != ',') pe++;
            copyname(t->phase, ph + 6, (size_t)(pe - ph - 6));
        }
        const char *rq = find(br, (size_t)(bre - br), "request=");
        if (rq) {
            const char *re = rq + 8;
            while (re < bre && isdigit((unsigned char)*re)) re++;
            if (!span_i64(rq + 8, (size_t)(re - rq - 8), &t->request)) return false;
        }
    }
    return true;
}

int ev_threads_parse(const char *text, size_t len, const char *name, ev_threads *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (len > EV_MAX_INPUT) { seterr(err, errlen, "%s: input larger than %zu bytes", name, EV_MAX_INPUT); return -1; }
    lines l = {text, text + len, 0};
    size_t n, cap = 0;
    const char *s;
    ev_thread *cur = NULL;
    while ((s = next_line(&l, &n))) {
        if (n == 0) { cur = NULL; continue; }
        if (n >= 7 && !memcmp(s, "thread ", 7)) {
            if (out->n >= EV_MAX_THREADS) { seterr(err, errlen, "%s: line %zu: more than %d threads", name, l.no, EV_MAX_THREADS); goto fail; }
            if (out->n == cap) {
                size_t nc = cap ? cap * 2 : 16;
                ev_thread *nt = realloc(out->t, nc * sizeof *nt);
                if (!nt) { seterr(err, errlen, "%s: out of memory", name); goto fail; }
                out->t = nt;
                cap = nc;
            }
            cur = &out->t[out->n];
            memset(cur, 0, sizeof *cur);
            if (!thread_header(s, n, cur)) { seterr(err, errlen, "%s: line %zu: malformed thread header", name, l.no); goto fail; }
            out->n++;
            continue;
        }
        if (!cur || s[0] == '\t' || s[0] == ' ') continue;   // a file:line line, or text outside a thread
        if (cur->n_frames < EV_FRAMES) {
            const char *pa = memchr(s, '(', n);
            size_t fn = pa ? (size_t)(pa - s) : n;
            copyname(cur->frames[cur->n_frames++], s, fn);
        }
    }
    return 0;
fail:
    ev_threads_free(out);
    return -1;
}

void ev_threads_free(ev_threads *t) {
    if (!t) return;
    free(t->t);
    t->t = NULL;
    t->n = 0;
}

// ---- Prometheus text format ------------------------------------------------------

int ev_metrics_parse(const char *text, size_t len, const char *name, ev_metrics *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (len > EV_MAX_INPUT) { seterr(err, errlen, "%s: input larger than %zu bytes", name, EV_MAX_INPUT); return -1; }
    lines l = {text, text + len, 0};
    size_t n, cap = 0;
    const char *s;
    while ((s = next_line(&l, &n))) {
        while (n && (*s == ' ' || *s == '\t')) s++, n--;
        if (n == 0 || *s == '#') continue;
        size_t i = 0;
        while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':')) i++;
        if (i == 0 || isdigit((unsigned char)s[0])) { seterr(err, errlen, "%s: line %zu: no metric name", name, l.no); goto fail; }
        size_t name_n = i;
        const char *lab = "";
        size_t lab_n = 0;
        if (i < n && s[i] == '{') {
            // Label values are quoted and may hold '}' or escaped quotes.
            size_t j = i + 1;
            bool q = false;
            for (; j < n; j++) {
                if (q && s[j] == '\\') { j++; continue; }
                if (s[j] == '"') q = !q;
                else if (!q && s[j] == '}') break;
            }
            if (j >= n) { seterr(err, errlen, "%s: line %zu: unclosed label set", name, l.no); goto fail; }
            lab = s + i + 1;
            lab_n = j - i - 1;
            i = j + 1;
        }
        while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
        size_t v0 = i;
        while (i < n && s[i] != ' ' && s[i] != '\t') i++;
        double v;
        if (i - v0 == 4 && !memcmp(s + v0, "+Inf", 4)) v = INFINITY;
        else if (i - v0 == 4 && !memcmp(s + v0, "-Inf", 4)) v = -INFINITY;
        else if (i - v0 == 3 && !memcmp(s + v0, "NaN", 3)) v = NAN;
        else if (!span_f64(s + v0, i - v0, &v)) { seterr(err, errlen, "%s: line %zu: bad sample value", name, l.no); goto fail; }
        if (out->n >= EV_MAX_METRICS) { seterr(err, errlen, "%s: line %zu: more than %d samples", name, l.no, EV_MAX_METRICS); goto fail; }
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            ev_metric *nm = realloc(out->m, nc * sizeof *nm);
            if (!nm) { seterr(err, errlen, "%s: out of memory", name); goto fail; }
            out->m = nm;
            cap = nc;
        }
        ev_metric *m = &out->m[out->n];
        m->name = strndup(s, name_n);
        m->labels = strndup(lab, lab_n);
        m->value = v;
        if (!m->name || !m->labels) { free(m->name); free(m->labels); seterr(err, errlen, "%s: out of memory", name); goto fail; }
        out->n++;
    }
    return 0;
fail:
    ev_metrics_free(out);
    return -1;
}

double ev_metrics_sum(const ev_metrics *m, const char *metric, const char *label_sub, bool *found) {
    double s = 0;
    bool any = false;
    for (size_t i = 0; m && i < m->n; i++) {
        if (strcmp(m->m[i].name, metric)) continue;
        if (label_sub && !strstr(m->m[i].labels, label_sub)) continue;
        if (isfinite(m->m[i].value)) s += m->m[i].value;
        any = true;
    }
    if (found) *found = any;
    return s;
}

void ev_metrics_free(ev_metrics *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) { free(m->m[i].name); free(m->m[i].labels); }
    free(m->m);
    m->m = NULL;
    m->n = 0;
}

// ---- execution trace ---------------------------------------------------------------

double ev_pct(const double *sorted, size_t n, double p) {
    if (n == 0) return 0;
    if (p <= 0) return sorted[0];
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return sorted[k - 1];
}

// Requests by id: a small open-addressing table over an array.
typedef struct reqtab {
    ev_request *r;
    size_t n, cap;
    int64_t *slot;   // index + 1, 0 = empty
    size_t nslot;
} reqtab;

static ev_request *req_get(reqtab *t, int64_t id, bool create) {
    if (t->nslot) {
        size_t h = (size_t)((uint64_t)id * 0x9e3779b97f4a7c15ull) & (t->nslot - 1);
        for (;;) {
            int64_t s = t->slot[h];
            if (!s) break;
            if (t->r[s - 1].id == id) return &t->r[s - 1];
            h = (h + 1) & (t->nslot - 1);
        }
    }
    if (!create || t->n >= EV_MAX_REQUESTS) return NULL;
    if ((t->n + 1) * 2 > t->nslot) {
        size_t ns = t->nslot ? t->nslot * 2 : 256;
        int64_t *sl = calloc(ns, sizeof *sl);
        if (!sl) return NULL;
        for (size_t i = 0; i < t->n; i++) {
            size_t h = (size_t)((uint64_t)t->r[i].id * 0x9e3779b97f4a7c15ull) & (ns - 1);
            while (sl[h]) h = (h + 1) & (ns - 1);
            sl[h] = (int64_t)i + 1;
        }
        free(t->slot);
        t->slot = sl;
        t->nslot = ns;
    }
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 64;
        ev_request *nr = realloc(t->r, nc * sizeof *nr);
        if (!nr) return NULL;
        t->r = nr;
        t->cap = nc;
    }
    ev_request *r = &t->r[t->n];
    *r = (ev_request){.id = id, .t_begin = -1, .t_end = -1, .t_submit = -1, .t_tok0 = -1, .t_tok1 = -1,
                      .t_first = -1, .t_last = -1};
    size_t h = (size_t)((uint64_t)id * 0x9e3779b97f4a7c15ull) & (t->nslot - 1);
    while (t->slot[h]) h = (h + 1) & (t->nslot - 1);
    t->slot[h] = (int64_t)t->n + 1;
    t->n++;
    return r;
}

static ev_tthread *thread_get(ev_trace *t, int64_t tid, size_t *cap) {
    for (size_t i = 0; i < t->n_threads; i++)
        if (t->threads[i].tid == tid) return &t->threads[i];
    if (t->n_threads >= EV_MAX_NAMED) return NULL;
    if (t->n_threads == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        ev_tthread *nt = realloc(t->threads, nc * sizeof *nt);
        if (!nt) return NULL;
        t->threads = nt;
        *cap = nc;
    }
    ev_tthread *th = &t->threads[t->n_threads++];
    memset(th, 0, sizeof *th);
    th->tid = tid;
    return th;
}

static ev_wait *wait_get(ev_trace *t, const char *on, const char *role, size_t *cap) {
    for (size_t i = 0; i < t->n_waits; i++)
        if (!strcmp(t->waits[i].on, on) && !strcmp(t->waits[i].role, role)) return &t->waits[i];
    if (t->n_waits >= EV_MAX_NAMED) return NULL;
    if (t->n_waits == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        ev_wait *nw = realloc(t->waits, nc * sizeof *nw);
        if (!nw) return NULL;
        t->waits = nw;
        *cap = nc;
    }
    ev_wait *w = &t->waits[t->n_waits++];
    memset(w, 0, sizeof *w);
    copyname(w->on, on, strlen(on));
    copyname(w->role, role, strlen(role));
    return w;
}

static double num(json_t *o, const char *k, bool *ok) {
    json_t *v = json_object_get(o, k);
    if (!json_is_number(v)) { if (ok) *ok = false; return 0; }
    if (ok) *ok = true;
    return json_number_value(v);
}

// A JSON number as an integer; 0 when it is not finite or out of range.
static int64_t to_i64(double v) {
    return v > -9.2e18 && v < 9.2e18 ? (int64_t)v : 0;
}

static void counter_add(ev_counter *c, double v) {
    if (!isfinite(v)) return;
    if (c->n == 0 || v > c->max) c->max = v;
    c->sum += v;
    c->n++;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_f64(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// The role of a thread name: the name without a trailing "-N".
static void role_of(const char *name, char role[EV_NAME]) {
    size_t n = strlen(name), k = n;
    while (k > 0 && isdigit((unsigned char)name[k - 1])) k--;
    if (k > 0 && k < n && name[k - 1] == '-') n = k - 1;
    copyname(role, name, n);
}

int ev_trace_parse(const char *json, size_t len, const char *name, ev_trace *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (len > EV_MAX_INPUT) { seterr(err, errlen, "%s: input larger than %zu bytes", name, EV_MAX_INPUT); return -1; }
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!root) { seterr(err, errlen, "%s: line %d: %s", name, je.line, je.text); return -1; }
    json_t *ev = json_is_object(root) ? json_object_get(root, "traceEvents") : root;
    if (!json_is_array(ev)) { json_decref(root); seterr(err, errlen, "%s: no traceEvents array", name); return -1; }
    reqtab rt = {0};
    size_t tcap = 0, wcap = 0, gcap = 0, scap = 0;
    bool first = true;
    int rc = -1;
    size_t n = json_array_size(ev);
    // Pass 1: thread names (metadata may come anywhere).
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(ev, i);
        const char *ph = json_string_value(json_object_get(e, "ph"));
        const char *nm = json_string_value(json_object_get(e, "name"));
        if (!ph || !nm || strcmp(ph, "M") || strcmp(nm, "thread_name")) continue;
        bool ok;
        int64_t tid = to_i64(num(e, "tid", &ok));
        const char *tn = json_string_value(json_object_get(json_object_get(e, "args"), "name"));
        if (!ok || !tn) continue;
        ev_tthread *th = thread_get(out, tid, &tcap);
        if (!th) continue;
        copyname(th->name, tn, strlen(tn));
        role_of(th->name, th->role);
    }
    // Pass 2: everything else.
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(ev, i);
        const char *ph = json_string_value(json_object_get(e, "ph"));
        const char *nm = json_string_value(json_object_get(e, "name"));
        if (!ph || !nm || !strcmp(ph, "M")) continue;
        bool ok;
        double ts = num(e, "ts", &ok);
        if (!ok || !isfinite(ts)) continue;
        double dur = num(e, "dur", NULL);
        if (!isfinite(dur) || dur < 0) dur = 0;
        if (first || ts < out->t0) out->t0 = ts;
        if (first || ts + dur > out->t1) out->t1 = ts + dur;
        first = false;
        int64_t tid = to_i64(num(e, "tid", NULL));
        json_t *args = json_object_get(e, "args");
        if (!strcmp(ph, "X")) {
            ev_tthread *th = thread_get(out, tid, &tcap);
            if (!strncmp(nm, "wait ", 5)) {
                const char *on = json_string_value(json_object_get(args, "on"));
                if (!on) on = nm + 5;
                ev_wait *w = wait_get(out, on, th && th->role[0] ? th->role : "?", &wcap);
                if (w) {
                    w->count++;
                    w->total_us += dur;
                    if (dur > w->max_us) w->max_us = dur;
                }
                if (th) th->wait_us += dur;
                continue;
            }
            int b = !strcmp(nm, "tokenize") ? EV_B_TOKENIZE : !strcmp(nm, "prefill") ? EV_B_PREFILL
                  : !strcmp(nm, "decode") ? EV_B_DECODE : !strcmp(nm, "sample") ? EV_B_SAMPLE
                  : !strcmp(nm, "step") ? EV_B_STEP : !strcmp(nm, "submit") ? EV_B_SUBMIT
                  : (!strcmp(nm, "send") || !strcmp(nm, "respond")) ? EV_B_SEND : EV_B_OTHER;
            if (th) th->busy_us[b] += dur;
            if (b == EV_B_STEP) { out->steps++; out->step_us += dur; }
            if (b == EV_B_SAMPLE) {
                double nt = num(args, "tokens", &ok);
                if (ok && nt >= 1 && nt < 1e9) {
                    if (out->n_sample == scap) {
                        size_t nc = scap ? scap * 2 : 256;
                        double *ns = realloc(out->sample_us, nc * sizeof *ns);
                        if (!ns) { seterr(err, errlen, "%s: out of memory", name); goto done; }
                        out->sample_us = ns;
                        scap = nc;
                    }
                    out->sample_us[out->n_sample++] = dur / nt;
                }
            }
            double rid = num(args, "request", &ok);
            if (ok && rid > 0 && rid < 9.2e18 && (b == EV_B_TOKENIZE || b == EV_B_SUBMIT)) {
                ev_request *r = req_get(&rt, (int64_t)rid, true);
                if (!r) continue;
                if (b == EV_B_TOKENIZE) { r->t_tok0 = ts; r->t_tok1 = ts + dur; }
                else { r->t_submit = ts; r->tid = tid; }
            }
        } else if (!strcmp(ph, "b") || !strcmp(ph, "e")) {
            if (strcmp(nm, "request")) continue;
            double id = num(e, "id", &ok);
            if (!ok || id <= 0 || id >= 9.2e18) continue;
            ev_request *r = req_get(&rt, (int64_t)id, true);
            if (!r) continue;
            if (ph[0] == 'b') { r->t_begin = ts; out->tasks_begun++; }
            else r->t_end = ts;
        } else if (!strcmp(ph, "i")) {
            if (strcmp(nm, "token")) continue;
            out->tokens++;
            double id = num(args, "request", &ok);
            double idx = num(args, "index", NULL);
            double gap = num(args, "gap_us", NULL);
            if (ok && id > 0 && id < 9.2e18) {
                ev_request *r = req_get(&rt, (int64_t)id, true);
                if (r) {
                    if (r->t_first < 0 || ts < r->t_first) r->t_first = ts;
                    if (ts > r->t_last) r->t_last = ts;
                    r->tokens++;
                }
            }
            if (idx > 0 && isfinite(gap) && gap >= 0 && gap < 9e15) {
                if (out->n_gaps == gcap) {
                    size_t nc = gcap ? gcap * 2 : 256;
                    int64_t *ng = realloc(out->gaps_us, nc * sizeof *ng);
                    if (!ng) { seterr(err, errlen, "%s: out of memory", name); goto done; }
                    out->gaps_us = ng;
                    gcap = nc;
                }
                out->gaps_us[out->n_gaps++] = (int64_t)gap;
            }
        } else if (!strcmp(ph, "C")) {
            double v = num(args, "value", &ok);
            if (!ok) continue;
            ev_counter *c = !strcmp(nm, "queue.tokenize") ? &out->q_tokenize : !strcmp(nm, "queue.admit") ? &out->q_admit
                          : !strcmp(nm, "sequences.running") ? &out->running : !strcmp(nm, "batch.tokens") ? &out->batch_tokens
                          : !strcmp(nm, "tokens_per_s") ? &out->tokens_per_s : NULL;
            if (c) counter_add(c, v);
        }
    }
    // Keep whole requests only, in order of arrival.
    size_t w = 0;
    for (size_t k = 0; k < rt.n; k++) {
        ev_request *r = &rt.r[k];
        if (r->t_begin >= 0 && r->t_end >= r->t_begin) rt.r[w++] = *r;
    }
    out->req = rt.r;
    out->n_req = w;
    rt.r = NULL;
    for (size_t a = 1; a < out->n_req; a++) {   // insertion sort by arrival (already nearly sorted)
        ev_request x = out->req[a];
        size_t b = a;
        while (b > 0 && out->req[b - 1].t_begin > x.t_begin) { out->req[b] = out->req[b - 1]; b--; }
        out->req[b] = x;
    }
    // `wait NAME` slices (other than a handler's wait for its answer) that
    // fall between a request's arrival and its submit count against it: the
    // nearest earlier arrivals are searched (a bounded look-back).
    for (size_t i = 0; i < n && out->n_req; i++) {
        json_t *e = json_array_get(ev, i);
        const char *ph = json_string_value(json_object_get(e, "ph"));
        const char *nm = json_string_value(json_object_get(e, "name"));
        if (!ph || !nm || strcmp(ph, "X") || strncmp(nm, "wait ", 5)) continue;
        const char *on = json_string_value(json_object_get(json_object_get(e, "args"), "on"));
        if (on && (!strcmp(on, "request.output") || !strcmp(on, "request"))) continue;
        double ts = num(e, "ts", NULL), dur = num(e, "dur", NULL);
        int64_t tid = to_i64(num(e, "tid", NULL));
        if (!isfinite(ts) || !isfinite(dur) || dur < 0) continue;
        size_t lo = 0, hi = out->n_req;   // first arrival after ts
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (out->req[mid].t_begin <= ts) lo = mid + 1; else hi = mid;
        }
        for (size_t k = lo, look = 0; k > 0 && look < 256; k--, look++) {
            ev_request *r = &out->req[k - 1];
            if (r->tid == tid && r->t_submit >= 0 && ts <= r->t_submit) { r->lock_wait_us += dur; break; }
        }
    }
    if (out->n_gaps) qsort(out->gaps_us, out->n_gaps, sizeof *out->gaps_us, cmp_i64);
    if (out->n_sample) qsort(out->sample_us, out->n_sample, sizeof *out->sample_us, cmp_f64);
    rc = 0;
done:
    free(rt.r);
    free(rt.slot);
    json_decref(root);
    if (rc) ev_trace_free(out);
    return rc;
}

void ev_trace_free(ev_trace *t) {
    if (!t) return;
    free(t->req);
    free(t->waits);
    free(t->threads);
    free(t->gaps_us);
    free(t->sample_us);
    memset(t, 0, sizeof *t);
}
