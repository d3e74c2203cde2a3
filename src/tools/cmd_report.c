// cmd_report.c — `llmscope report DIR`: reads a capture written by
// `llmscope collect` and cross-checks its instruments the way an engineer
// does by hand — the CPU profile for where the time goes, the trace for who
// waits on whom, the counters for how well the instructions run, the heap
// profiles, the threads dump, /metrics, /proc and the load's results — then
// writes ranked findings, each citing the sources that agree, and the tables
// behind them, as text, Markdown or one self-contained HTML file.
//
// Every rule reads the evidence only; the capture says nothing about how the
// server was configured beyond what /v1/models publishes.
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diagnose.h"
#include "opt.h"
#include "tools.h"
#include "util/evidence.h"
#include "util/flame_svg.h"
#include "util/folded.h"
#include "util/pprof_read.h"

#define MAX_FILE ((size_t)1 << 30)
#define MAX_FINDINGS 16
#define MAX_EVIDENCE 6
#define MAX_NAMES 64

// ---- reading the capture ----------------------------------------------------------------

static char *read_file(const char *dir, const char *file, size_t *len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 65536, n = 0;
    char *p = malloc(cap);
    while (p) {
        if (n + 1 >= cap) {
            char *q = cap < MAX_FILE ? realloc(p, cap * 2) : NULL;
            if (!q) { free(p); p = NULL; break; }
            p = q;
            cap *= 2;
        }
        size_t k = fread(p + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0) break;
    }
    fclose(f);
    if (p) { p[n] = 0; *len = n; }
    return p;
}

// Function statistics of a folded tree: self and inclusive value per name
// (inclusive counted once per stack, at the outermost frame of that name).
typedef struct fnstat {
    const char *name;   // in the tree's pool
    double self, incl;
} fnstat;

typedef struct fnview {
    fold_tree *t;
    double total;
    fnstat *f;
    size_t n;
} fnview;

static fnstat *fn_find(fnview *v, const char *name, bool add) {
    for (size_t i = 0; i < v->n; i++)
        if (!strcmp(v->f[i].name, name)) return &v->f[i];
    if (!add) return NULL;
    fnstat *nf = realloc(v->f, (v->n + 1) * sizeof *nf);
    if (!nf) return NULL;
    v->f = nf;
    v->f[v->n] = (fnstat){name, 0, 0};
    return &v->f[v->n++];
}

static void fnview_free(fnview *v) {
    fold_free(v->t);
    free(v->f);
    memset(v, 0, sizeof *v);
}

// Folds the profile (filtered by key=value when key is set) into a view.
static bool fnview_make(const pprof_data *p, size_t type, const char *key, const char *value, fnview *v) {
    memset(v, 0, sizeof *v);
    if (!p) return false;
    v->t = fold_new();
    char err[256];
    // Inlined intrinsics count as the kernel they sit in: "stile1", not
    // "_mm512_dpbusd_epi32", in the top functions.
    if (!v->t || pprof_data_fold_opt(p, type, key, value, PPROF_FOLD_INTRINSICS_IN_CALLER, v->t, err, sizeof err) != 0) {
        fnview_free(v);
        return false;
    }
    size_t n;
    const fold_node *nodes = fold_nodes(v->t, &n);
    v->total = (double)fold_total(v->t);
    for (size_t i = 1; i < n; i++) {
        const char *name = fold_name(v->t, &nodes[i]);
        fnstat *s = fn_find(v, name, true);
        if (!s) continue;
        s->self += (double)nodes[i].self;
        bool outer = true;
        for (uint32_t a = nodes[i].parent; a != 0; a = nodes[a].parent)
            if (!strcmp(fold_name(v->t, &nodes[a]), name)) { outer = false; break; }
        if (outer) s->incl += (double)nodes[i].total;
    }
    return true;
}

// Fills a view's function table from its tree (for trees not made from a profile).
static void perf_digest(fnview *v) {
    size_t n;
    const fold_node *nodes = fold_nodes(v->t, &n);
    v->total = (double)fold_total(v->t);
    for (size_t i = 1; i < n; i++) {
        const char *name = fold_name(v->t, &nodes[i]);
        fnstat *st = fn_find(v, name, true);
        if (!st) continue;
        st->self += (double)nodes[i].self;
        bool outer = true;
        for (uint32_t a = nodes[i].parent; a != 0; a = nodes[a].parent)
            if (!strcmp(fold_name(v->t, &nodes[a]), name)) { outer = false; break; }
        if (outer) st->incl += (double)nodes[i].total;
    }
}

static int cmp_self(const void *a, const void *b) {
    double x = ((const fnstat *)a)->self, y = ((const fnstat *)b)->self;
    return (x < y) - (x > y);
}

// A name matches a set when it equals one of its entries or, for an entry
// ending in '*', starts with it.
static bool in_set(const char *name, const char *const *set) {
    for (; *set; set++) {
        size_t k = strlen(*set);
        if ((*set)[k - 1] == '*' ? !strncmp(name, *set, k - 1) : !strcmp(name, *set)) return true;
    }
    return false;
}

static const char *const ALLOC_FNS[] = {
    "malloc", "free", "calloc", "realloc", "strdup", "strndup", "__strdup", "__strndup", "cfree", "memalign",
    "posix_memalign", "aligned_alloc", "__libc_*", "_int_malloc", "_int_free", "_int_realloc", "malloc_consolidate",
    "unlink_chunk*", "tcache_*", "sysmalloc", "_mid_memalign", "alloc_perturb", "operator new*", "operator delete*",
    // a sanitizer build's allocator
    "__interceptor_malloc", "__interceptor_free", "__interceptor_calloc", "__interceptor_realloc", "__interceptor_strdup",
    "__interceptor_strndup", "__asan_*", "asan_*", "__asan::*", "Allocate", "Deallocate", "Reallocate", "SetUsedSize", NULL};
static const char *const COPY_FNS[] = {"memcpy", "memmove", "strlen", "__memmove_*", "__memcpy_*", "__strlen_*", "__strnlen_*",
                                       "strnlen", "__memset_*", "memset", "__memchr_*", NULL};
static const char *const YIELD_FNS[] = {"sched_yield", "__sched_yield", "nanosleep", "__nanosleep", "clock_nanosleep",
                                        "__clock_nanosleep*", "usleep", "pthread_yield", NULL};
// The compute pool's own waiting: a spinning waiter yields when another thread
// of its pool shares its CPU (so that one runs), which is not a yield per token.
static const char *const POOL_WAIT_FNS[] = {"tp_run", "tp_barrier", "wait_change", "spin_step", NULL};
// Waiting (spinning or sleeping) rather than working.
static const char *const WAIT_FNS[] = {"wait_change", "futex_wait", "syscall", "__futex_abstimed_wait*", "prof_cond_wait*",
                                       "pthread_cond_*", "__pthread_cond_*", "__sigtimedwait", "epoll_wait", "poll", "__poll",
                                       "select", "__select", "recv", "__libc_recv", "read", "__libc_read", "accept", "sched_yield",
                                       "__sched_yield", "nanosleep", "__nanosleep", "clock_nanosleep", "__clock_nanosleep*",
                                       "tp_barrier*", "barrier*", "spin*", "cpu_relax", "_mm_pause", "__GI___*", NULL};
// The model's arithmetic.
static const char *const KERNEL_FNS[] = {"matmul*", "mm_*", "dot_*", "vec_dot*", "gemm*", "gemv*", "attention*", "softmax*",
                                         "rmsnorm*", "rope*", "swiglu*", "silu*", "quant*", "dequant*", "_mm*", "_mm256*",
                                         "_mm512*", "*_avx2", "*_avx512", "forward*", "llama_*", "ops_*", "tp_run", "worker_main",
                                         "matmul_group", "op_*", "ggml_*", "embed*", "get_rows*", "compute_rows", "qrun_*", "prun_*",
                                         "kq_*", "q4K_*", "q6K_*", "pack_*", "widen_*", "fp16_*", "fp32_*", "bf16_*", NULL};
// The instruments' own frames.
static const char *const INSTR_FNS[] = {"prof_*", "trace_*", "pmu_*", "get_ring", "heap_*", "bt_*", "unwind*", "symbolize*",
                                        "dwfl_*", "dwarf_*", "elf_*", "gelf_*", "deflate*", "inflate*", "[libz*", "[libdw*",
                                        "[libelf*", "collect", "thread_charge", "thread_open", "thread_self", "thread_cs_split",
                                        "group_*", "snap_*", "ru_read", "sys_perf_open", "put", "record", "untrack*", "on_sigprof",
                                        "waited", "take", "thread_clock", NULL};

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}


// ---- findings ---------------------------------------------------------------------------

typedef enum conf { CONF_LOW = 1, CONF_MEDIUM = 2, CONF_HIGH = 3 } conf;
static const char *conf_name(conf c) { return c == CONF_HIGH ? "high" : c == CONF_MEDIUM ? "medium" : "low"; }

typedef struct evidence {
    char source[32];     // profile, trace, counters, metrics, load, threads, heap, proc, mutex, block
    char signal[400];
} evidence;

typedef struct finding {
    char key[32];        // stable identifier: alloc-churn, tokenizer-saturated, ...
    char title[512];     // names the bottleneck concretely
    conf confidence;
    double cpu_share;    // of the process's sampled CPU time (0..1), -1 = n/a
    double wall_share;   // of the window's wall time on the affected thread(s), -1 = n/a
    double tail_share;   // of the P99 requests' latency, -1 = n/a
    double score;        // ranking within a confidence level
    evidence ev[MAX_EVIDENCE];
    int n_ev;
    char change[600];    // the proposed change
} finding;

static void add_ev(finding *f, const char *src, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add_ev(finding *f, const char *src, const char *fmt, ...) {
    if (f->n_ev >= MAX_EVIDENCE) return;
    evidence *e = &f->ev[f->n_ev++];
    snprintf(e->source, sizeof e->source, "%s", src);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->signal, sizeof e->signal, fmt, ap);
    va_end(ap);
}

// Distinct sources among a finding's evidence.
static int n_sources(const finding *f) {
    int n = 0;
    for (int i = 0; i < f->n_ev; i++) {
        bool seen = false;
        for (int j = 0; j < i; j++)
            if (!strcmp(f->ev[i].source, f->ev[j].source)) seen = true;
        if (!seen) n++;
    }
    return n;
}

// ---- the analysis state -------------------------------------------------------------------

enum { C_PRE, C_QTOK, C_TOK, C_PREFILL, C_DECODE, C_RESPOND, C_N };
static const char *const COMP_NAMES[C_N] = {"arrival -> submit (handler, locks)", "tokenize queue", "tokenize",
                                            "admit + prefill (to first token)", "decode (first -> last token)",
                                            "respond (last token -> answered)"};
static const char *const COMP_SHORT[C_N] = {"handler", "tokenize queue", "tokenize", "prefill", "decode", "respond"};

typedef struct report {
    const char *dir;
    json_t *man;
    double seconds;
    int ncpu;
    // instruments, NULL / empty when unavailable
    pprof_data *cpu, *block, *mutex, *block0, *mutex0, *heap0, *heap1;   // block/mutex: end and start
    bool have_trace, have_threads, have_m0, have_m1;
    ev_trace tr;
    ev_threads th;
    ev_metrics m0, m1;
    json_t *counters, *load, *proc;
    char unavail[16][400];
    int n_unavail;
    // perf record's stacks (with --perf), as a second CPU sampler
    fnview perf;
    // CPU profile digests
    fnview all;
    double cpu_total_s;                 // sampled CPU seconds
    char phases[MAX_NAMES][EV_NAME];
    double phase_cpu[MAX_NAMES];
    fnview phase_view[MAX_NAMES];
    int n_phases;
    char roles[MAX_NAMES][EV_NAME];
    double role_cpu[MAX_NAMES];
    int role_threads[MAX_NAMES];
    int n_roles;
    char threads[MAX_NAMES][EV_NAME];
    double thread_cpu[MAX_NAMES];
    int n_threads;
    // waits
    char objs[MAX_NAMES][EV_NAME];
    double obj_block_s[MAX_NAMES], obj_mutex_s[MAX_NAMES];
    int n_objs;
    // heap growth by site
    char sites[MAX_NAMES][160];
    double site_growth[MAX_NAMES];
    int n_sites;
    double heap_growth_total, heap_start_total, heap_end_total;
    // latency breakdown (ms)
    size_t n_req;
    double *comp[C_N], *total;          // per request, in arrival order
    double pct50[C_N + 1], pct99[C_N + 1];
    double at50[C_N + 1], at99[C_N + 1]; // mean components of the median and tail requests
    double *lockw;                      // per request: `wait NAME` before submit (ms)
    double at99_lockw;                  // its mean over the tail requests
    // findings
    finding f[MAX_FINDINGS];
    int n_f;
    // Functions the CPU profile places in the engine's math sources (note_kernel_fns).
    char **kernel_names;
    size_t n_kernel_names;
} report;

// The engine's math sources: a function the CPU profile places in one of
// them is a kernel whatever its name. By name alone, a prefetch helper
// inlined in the row kernels (pf_share_l2, with --mmap) showed as a hot
// frame of its own on both compute threads and read as false sharing.
// (Inlined intrinsics are folded into their callers: fnview_make.)
static const char *const KERNEL_FILES[] = {"compute/matmul.c", "compute/kquant.c", "compute/ops.c", "compute/quant.c",
                                           "compute/simd.h", NULL};

static void note_kernel_fns(report *r, const pprof_data *p) {
    const size_t n = p ? pprof_data_n_functions(p) : 0;
    for (size_t i = 0; i < n; i++) {
        char name[256], file[512];
        pprof_data_function(p, i, name, sizeof name, file, sizeof file);
        bool k = false;
        for (const char *const *f = KERNEL_FILES; *f && !k; f++) k = strstr(file, *f) != NULL;
        if (!k || !name[0]) continue;
        char **nk = realloc(r->kernel_names, (r->n_kernel_names + 1) * sizeof *nk);
        if (!nk) return;
        r->kernel_names = nk;
        if ((nk[r->n_kernel_names] = strdup(name))) r->n_kernel_names++;
    }
}

static bool is_kernel(const report *r, const char *n) {
    for (size_t i = 0; i < r->n_kernel_names; i++)
        if (!strcmp(n, r->kernel_names[i])) return true;
    return in_set(n, KERNEL_FNS) || ends_with(n, "_avx2") || ends_with(n, "_avx512") || ends_with(n, "_scalar") ||
           ends_with(n, "_f32") || ends_with(n, "_q8_0") || ends_with(n, "_f16");
}

static void note_unavail(report *r, const char *what, const char *why) {
    if (r->n_unavail < 16) snprintf(r->unavail[r->n_unavail++], sizeof r->unavail[0], "%.40s: %.340s", what, why);
}

static pprof_data *load_pprof(report *r, const char *key) {
    json_t *c = json_object_get(json_object_get(r->man, "captured"), key);
    const char *file = json_string_value(json_object_get(c, "file"));
    if (!file) {
        const char *why = json_string_value(json_object_get(json_object_get(r->man, "unavailable"), key));
        note_unavail(r, key, why ? why : "not captured");
        return NULL;
    }
    size_t n;
    char *b = read_file(r->dir, file, &n);
    if (!b) { note_unavail(r, key, "file missing"); return NULL; }
    char err[256];
    pprof_data *p = pprof_data_parse((const uint8_t *)b, n, file, err, sizeof err);
    free(b);
    if (!p) note_unavail(r, key, err);
    return p;
}

static char *load_text(report *r, const char *key, size_t *n) {
    json_t *c = json_object_get(json_object_get(r->man, "captured"), key);
    const char *file = json_string_value(json_object_get(c, "file"));
    if (!file) {
        const char *why = json_string_value(json_object_get(json_object_get(r->man, "unavailable"), key));
        note_unavail(r, key, why ? why : "not captured");
        return NULL;
    }
    char *b = read_file(r->dir, file, n);
    if (!b) note_unavail(r, key, "file missing");
    return b;
}

static json_t *load_json(report *r, const char *key) {
    size_t n;
    char *b = load_text(r, key, &n);
    if (!b) return NULL;
    json_error_t je;
    json_t *j = json_loadb(b, n, 0, &je);
    free(b);
    if (!j) {
        char w[300];
        snprintf(w, sizeof w, "unreadable JSON: %s", je.text);
        note_unavail(r, key, w);
    }
    return j;
}

static int add_name(char names[][EV_NAME], int *n, const char *name) {
    if (!name || !*name) return -1;
    for (int i = 0; i < *n; i++)
        if (!strcmp(names[i], name)) return i;
    if (*n >= MAX_NAMES) return -1;
    snprintf(names[*n], EV_NAME, "%s", name);
    return (*n)++;
}

static double sample_period_s(const pprof_data *p) {
    // CPU profiles are in nanoseconds; the value is the sampled CPU time.
    (void)p;
    return 1e-9;
}

// ---- digests -------------------------------------------------------------------------------

static void digest_cpu(report *r) {
    if (!r->cpu) return;
    size_t ty = pprof_data_default_type(r->cpu);
    const char *unit = NULL;
    pprof_data_type(r->cpu, ty, &unit);
    double scale = unit && !strcmp(unit, "nanoseconds") ? 1e-9 : sample_period_s(r->cpu);
    if (!fnview_make(r->cpu, ty, NULL, NULL, &r->all)) return;
    r->cpu_total_s = r->all.total * scale;
    // Candidate label values: what the trace and the threads dump name.
    const char *known_phases[] = {"tokenize", "prefill", "decode", "sample", "step", "submit", "wait", "respond", "send", "trace.dump", NULL};
    for (int i = 0; known_phases[i]; i++) add_name(r->phases, &r->n_phases, known_phases[i]);
    const char *known_roles[] = {"main", "http", "tokenizer", "scheduler", "compute", NULL};
    for (int i = 0; known_roles[i]; i++) add_name(r->roles, &r->n_roles, known_roles[i]);
    for (size_t i = 0; i < r->th.n; i++) {
        add_name(r->roles, &r->n_roles, r->th.t[i].role);
        add_name(r->threads, &r->n_threads, r->th.t[i].name);
        add_name(r->phases, &r->n_phases, r->th.t[i].phase);
    }
    for (size_t i = 0; i < r->tr.n_threads; i++) {
        add_name(r->threads, &r->n_threads, r->tr.threads[i].name);
    }
    int np = 0;
    for (int i = 0; i < r->n_phases; i++) {
        fnview v;
        if (!fnview_make(r->cpu, ty, "phase", r->phases[i], &v)) continue;
        if (v.total <= 0) { fnview_free(&v); continue; }
        if (np != i) memcpy(r->phases[np], r->phases[i], EV_NAME);
        r->phase_cpu[np] = v.total * scale;
        r->phase_view[np++] = v;
    }
    r->n_phases = np;
    int nr = 0;
    for (int i = 0; i < r->n_roles; i++) {
        fnview v;
        if (!fnview_make(r->cpu, ty, "role", r->roles[i], &v)) continue;
        double s = v.total * scale;
        fnview_free(&v);
        int th = 0;
        for (size_t k = 0; k < r->th.n; k++) th += !strcmp(r->th.t[k].role, r->roles[i]);
        if (s <= 0 && th == 0) continue;
        if (nr != i) memcpy(r->roles[nr], r->roles[i], EV_NAME);
        r->role_cpu[nr] = s;
        r->role_threads[nr++] = th;
    }
    r->n_roles = nr;
    int nt = 0;
    for (int i = 0; i < r->n_threads; i++) {
        fnview v;
        if (!fnview_make(r->cpu, ty, "thread", r->threads[i], &v)) continue;
        double s = v.total * scale;
        fnview_free(&v);
        if (s <= 0) continue;
        if (nt != i) memcpy(r->threads[nt], r->threads[i], EV_NAME);
        r->thread_cpu[nt++] = s;
    }
    r->n_threads = nt;
}

static int phase_index(const report *r, const char *ph) {
    for (int i = 0; i < r->n_phases; i++)
        if (!strcmp(r->phases[i], ph)) return i;
    return -1;
}

static double phase_cpu(const report *r, const char *ph) {
    int i = phase_index(r, ph);
    return i < 0 ? 0 : r->phase_cpu[i];
}

// Sum of a set's inclusive values in a view (each stack once: only frames
// with no ancestor in the set), leaving out stacks that pass through a
// function of `unless` (NULL: none) above them.
static double set_incl_unless(const fnview *v, const char *const *set, const char *const *unless) {
    if (!v->t) return 0;
    size_t n;
    const fold_node *nodes = fold_nodes(v->t, &n);
    double s = 0;
    for (size_t i = 1; i < n; i++) {
        if (!in_set(fold_name(v->t, &nodes[i]), set)) continue;
        bool outer = true;
        for (uint32_t a = nodes[i].parent; a != 0 && outer; a = nodes[a].parent) {
            const char *an = fold_name(v->t, &nodes[a]);
            if (in_set(an, set) || (unless && in_set(an, unless))) outer = false;
        }
        if (outer) s += (double)nodes[i].total;
    }
    return s;
}

static double set_incl(const fnview *v, const char *const *set) { return set_incl_unless(v, set, NULL); }

// Share of perf's samples under a set of functions (0 when there is no perf capture).
static double perf_share(const report *r, const char *const *set) {
    return r->perf.t && r->perf.total > 0 ? set_incl(&r->perf, set) / r->perf.total : 0;
}

// Delay (s) charged to one named object: the end profile less the start one
// (both cumulative); a profile that came as a delta has no start.
static double obj_delay(const pprof_data *end, const pprof_data *start, const char *obj) {
    double d = 0;
    fnview v;
    if (end && fnview_make(end, pprof_data_default_type(end), "object", obj, &v)) { d += v.total; fnview_free(&v); }
    if (start && fnview_make(start, pprof_data_default_type(start), "object", obj, &v)) { d -= v.total; fnview_free(&v); }
    return d > 0 ? d * 1e-9 : 0;
}

static void digest_waits(report *r) {
    // Candidate object names: the trace's waits and the threads dump's.
    for (size_t i = 0; i < r->tr.n_waits; i++) add_name(r->objs, &r->n_objs, r->tr.waits[i].on);
    for (size_t i = 0; i < r->th.n; i++) add_name(r->objs, &r->n_objs, r->th.t[i].wait_on);
    const char *known[] = {"tokenize", "admit", "request", "request.output", NULL};
    for (int i = 0; known[i]; i++) add_name(r->objs, &r->n_objs, known[i]);
    for (int i = 0; i < r->n_objs; i++) {
        r->obj_block_s[i] = obj_delay(r->block, r->block0, r->objs[i]);
        r->obj_mutex_s[i] = obj_delay(r->mutex, r->mutex0, r->objs[i]);
    }
}

// The allocation site of a heap stack: the innermost frame that is neither
// the allocator nor an instrument; instrument allocations are left out.
static void digest_heap(report *r) {
    if (!r->heap0 || !r->heap1) return;
    for (int k = 0; k < 2; k++) {
        pprof_data *p = k ? r->heap1 : r->heap0;
        int ty = pprof_data_find_type(p, "inuse_space");
        if (ty < 0) return;
        fold_tree *t = fold_new();
        char err[256];
        if (!t || pprof_data_fold(p, (size_t)ty, NULL, NULL, t, err, sizeof err)) { fold_free(t); return; }
        size_t n;
        const fold_node *nodes = fold_nodes(t, &n);
        for (size_t i = 1; i < n; i++) {
            if (nodes[i].self <= 0) continue;
            // Walk from the leaf to the first frame that is not the allocator.
            uint32_t s = (uint32_t)i;
            while (s != 0 && (in_set(fold_name(t, &nodes[s]), ALLOC_FNS) || in_set(fold_name(t, &nodes[s]), COPY_FNS)))
                s = nodes[s].parent;
            if (s == 0) s = (uint32_t)i;
            const char *site = fold_name(t, &nodes[s]);
            if (site[0] == '[') continue;   // a mapped file, not a heap allocation
            bool instr = false;
            for (uint32_t a = s; a != 0; a = nodes[a].parent)
                if (in_set(fold_name(t, &nodes[a]), INSTR_FNS)) { instr = true; break; }
            double v = (double)nodes[i].self;
            if (k == 0) r->heap_start_total += v; else r->heap_end_total += v;
            if (instr) continue;
            char key[160];
            // Name the site with its caller, so two callers of one helper stay apart.
            uint32_t c = nodes[s].parent;
            if (c) snprintf(key, sizeof key, "%.70s <- %.70s", site, fold_name(t, &nodes[c]));
            else snprintf(key, sizeof key, "%.150s", site);
            int j = -1;
            for (int q = 0; q < r->n_sites; q++)
                if (!strcmp(r->sites[q], key)) { j = q; break; }
            if (j < 0 && r->n_sites < MAX_NAMES) { j = r->n_sites++; snprintf(r->sites[j], sizeof r->sites[j], "%s", key); r->site_growth[j] = 0; }
            if (j >= 0) r->site_growth[j] += k ? v : -v;
        }
        fold_free(t);
    }
    for (int i = 0; i < r->n_sites; i++) r->heap_growth_total += r->site_growth[i];
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void digest_latency(report *r) {
    size_t n = r->tr.n_req;
    if (!n) return;
    for (int c = 0; c < C_N; c++) r->comp[c] = calloc(n, sizeof(double));
    r->total = calloc(n, sizeof(double));
    r->lockw = calloc(n, sizeof(double));
    double *tmp = calloc(n, sizeof(double));
    if (!r->total || !r->lockw || !tmp) { free(tmp); return; }
    for (int c = 0; c < C_N; c++) if (!r->comp[c]) { free(tmp); return; }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const ev_request *q = &r->tr.req[i];
        if (q->t_submit < 0 || q->t_tok0 < 0 || q->t_first < 0) continue;   // refused or cut: not a served request
        double b = q->t_begin, e = q->t_end;
        double sub = q->t_submit, t0 = q->t_tok0, t1 = q->t_tok1, f = q->t_first, l = q->t_last >= f ? q->t_last : f;
        r->comp[C_PRE][k] = (sub - b) / 1e3;
        r->comp[C_QTOK][k] = (t0 - sub) / 1e3;
        r->comp[C_TOK][k] = (t1 - t0) / 1e3;
        r->comp[C_PREFILL][k] = (f - t1) / 1e3;
        r->comp[C_DECODE][k] = (l - f) / 1e3;
        r->comp[C_RESPOND][k] = (e - l) / 1e3;
        for (int c = 0; c < C_N; c++) if (r->comp[c][k] < 0) r->comp[c][k] = 0;
        r->total[k] = (e - b) / 1e3;
        r->lockw[k] = q->lock_wait_us / 1e3;
        k++;
    }
    r->n_req = k;
    if (!k) { free(tmp); return; }
    for (int c = 0; c <= C_N; c++) {
        memcpy(tmp, c < C_N ? r->comp[c] : r->total, k * sizeof(double));
        qsort(tmp, k, sizeof(double), cmp_dbl);
        r->pct50[c] = ev_pct(tmp, k, 50);
        r->pct99[c] = ev_pct(tmp, k, 99);
    }
    // The median request(s) and the tail: requests at or above the P99 total
    // (with fewer than 100 requests, the slowest), and at least the slowest 5 %.
    memcpy(tmp, r->total, k * sizeof(double));
    qsort(tmp, k, sizeof(double), cmp_dbl);
    double lo50 = ev_pct(tmp, k, 45), hi50 = ev_pct(tmp, k, 55), tail = ev_pct(tmp, k, 95);
    int n50 = 0, n99 = 0;
    for (size_t i = 0; i < k; i++) {
        bool m = r->total[i] >= lo50 && r->total[i] <= hi50, t = r->total[i] >= tail;
        for (int c = 0; c < C_N; c++) {
            if (m) r->at50[c] += r->comp[c][i];
            if (t) r->at99[c] += r->comp[c][i];
        }
        if (m) { r->at50[C_N] += r->total[i]; n50++; }
        if (t) { r->at99[C_N] += r->total[i]; r->at99_lockw += r->lockw[i]; n99++; }
    }
    for (int c = 0; c <= C_N; c++) {
        if (n50) r->at50[c] /= n50;
        if (n99) r->at99[c] /= n99;
    }
    if (n99) r->at99_lockw /= n99;
    free(tmp);
}

// The share of the tail requests' latency spent in component c.
static double tail_share(const report *r, int c) {
    return r->at99[C_N] > 0 ? r->at99[c] / r->at99[C_N] : -1;
}

// ---- small readers -------------------------------------------------------------------------

static double jnum(json_t *o, const char *path) {
    // "a.b.c" into nested objects
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = o;
    for (char *s = strtok(buf, "."); s && cur; s = strtok(NULL, ".")) cur = json_object_get(cur, s);
    return json_is_number(cur) ? json_number_value(cur) : NAN;
}

static double counter_phase(const report *r, const char *phase, const char *field) {
    json_t *p = json_object_get(json_object_get(r->counters, "phases"), phase);
    json_t *v = json_object_get(p, field);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static bool hw_available(const report *r) {
    const char *hw = json_string_value(json_object_get(r->counters, "hardware"));
    return hw && (!strcmp(hw, "available") || !strcmp(hw, "on"));
}

static const char *hw_reason(const report *r) {
    if (!r->counters) {
        for (int i = 0; i < r->n_unavail; i++)
            if (!strncmp(r->unavail[i], "counters:", 9)) return r->unavail[i] + 10;
        return "no counters in the capture";
    }
    const char *why = json_string_value(json_object_get(r->counters, "reason"));
    return why ? why : "hardware events not counted";
}

static json_t *proc_at(const report *r, int i) {
    size_t n = json_array_size(r->proc);
    if (!n) return NULL;
    if (i < 0) return json_array_get(r->proc, n - 1);
    return json_array_get(r->proc, (size_t)i);
}

static double metric_delta(const report *r, const char *name, const char *labels) {
    bool f0, f1;
    double a = ev_metrics_sum(&r->m0, name, labels, &f0), b = ev_metrics_sum(&r->m1, name, labels, &f1);
    return f1 ? b - (f0 ? a : 0) : NAN;
}

// The wall time the trace shows threads of a role in region b.
static double trace_busy(const report *r, const char *role, int b, int *nthreads, double *max_one) {
    double s = 0, mx = 0;
    int n = 0;
    for (size_t i = 0; i < r->tr.n_threads; i++) {
        const ev_tthread *t = &r->tr.threads[i];
        if (strcmp(t->role, role)) continue;
        n++;
        s += t->busy_us[b];
        if (t->busy_us[b] > mx) mx = t->busy_us[b];
    }
    if (nthreads) *nthreads = n;
    if (max_one) *max_one = mx;
    return s;
}

static const ev_wait *trace_wait(const report *r, const char *on, const char *role) {
    for (size_t i = 0; i < r->tr.n_waits; i++)
        if (!strcmp(r->tr.waits[i].on, on) && (!role || !strcmp(r->tr.waits[i].role, role))) return &r->tr.waits[i];
    return NULL;
}

static finding *new_finding(report *r, const char *key) {
    if (r->n_f >= MAX_FINDINGS) return NULL;
    finding *f = &r->f[r->n_f++];
    memset(f, 0, sizeof *f);
    snprintf(f->key, sizeof f->key, "%s", key);
    f->cpu_share = f->wall_share = f->tail_share = -1;
    return f;
}

// The confidence a finding's evidence earns: two or more independent
// sources that agree make it high when its primary signal is strong.
static conf grade(const finding *f, bool strong) {
    int ns = n_sources(f);
    if (ns >= 2 && strong) return CONF_HIGH;
    if (ns >= 2 || strong) return CONF_MEDIUM;
    return CONF_LOW;
}

// ---- the detectors ---------------------------------------------------------------------------

static double window_s(const report *r) {
    double w = r->tr.t1 > r->tr.t0 ? (r->tr.t1 - r->tr.t0) / 1e6 : 0;
    return w > 0.5 ? w : r->seconds;
}

// Tokenize-stage findings: allocation churn inside it, or the stage saturated.
static void detect_tokenize(report *r) {
    double cpu_tok = phase_cpu(r, "tokenize");
    double share = r->cpu_total_s > 0 ? cpu_tok / r->cpu_total_s : 0;
    int pi = phase_index(r, "tokenize");
    double alloc = 0, copy = 0;
    const char *top_alloc = NULL, *top_fn = NULL;
    const char *alloc_caller = NULL;
    if (pi >= 0) {
        fnview *v = &r->phase_view[pi];
        // Who calls the allocator: the frame above each outermost allocator frame.
        size_t nn;
        const fold_node *nodes = fold_nodes(v->t, &nn);
        fnview callers = {0};
        for (size_t i = 1; i < nn; i++) {
            if (!in_set(fold_name(v->t, &nodes[i]), ALLOC_FNS)) continue;
            uint32_t a = nodes[i].parent;
            while (a != 0 && (in_set(fold_name(v->t, &nodes[a]), ALLOC_FNS) || in_set(fold_name(v->t, &nodes[a]), COPY_FNS))) a = nodes[a].parent;
            if (a == 0 || nodes[i].parent != a) {
                // only outermost allocator frames (their parent chain up to a is allocator/copy frames)
                uint32_t q = nodes[i].parent;
                bool outer = true;
                while (q != a) { if (in_set(fold_name(v->t, &nodes[q]), ALLOC_FNS)) { outer = false; break; } q = nodes[q].parent; }
                if (!outer || a == 0) continue;
            }
            fnstat *c = fn_find(&callers, fold_name(v->t, &nodes[a]), true);
            if (c) c->incl += (double)nodes[i].total;
        }
        double bc = 0;
        for (size_t i = 0; i < callers.n; i++)
            if (callers.f[i].incl > bc && callers.f[i].name[0] != '0') { bc = callers.f[i].incl; alloc_caller = callers.f[i].name; }
        free(callers.f);
        alloc = set_incl(v, ALLOC_FNS) / v->total;
        copy = set_incl(v, COPY_FNS) / v->total;
        double best = 0, bestf = 0;
        for (size_t i = 0; i < v->n; i++) {
            if (in_set(v->f[i].name, ALLOC_FNS) && v->f[i].incl > best) { best = v->f[i].incl; top_alloc = v->f[i].name; }
            // The hottest function of the program's own (not the C library's internals).
            if (!in_set(v->f[i].name, ALLOC_FNS) && !in_set(v->f[i].name, COPY_FNS) && !in_set(v->f[i].name, WAIT_FNS)
                && !in_set(v->f[i].name, INSTR_FNS) && v->f[i].name[0] != '_' && v->f[i].name[0] != '[' && v->f[i].name[0] != '0'
                && v->f[i].self > bestf) { bestf = v->f[i].self; top_fn = v->f[i].name; }
        }
    }
    // The trace: requests queued before the stage, and how busy its workers were.
    int ntok = 0;
    double max_busy = 0;
    double busy = trace_busy(r, "tokenizer", EV_B_TOKENIZE, &ntok, &max_busy);
    double w = window_s(r) * 1e6;
    int busy_workers = 0;
    for (size_t i = 0; i < r->tr.n_threads; i++)
        if (!strcmp(r->tr.threads[i].role, "tokenizer") && r->tr.threads[i].busy_us[EV_B_TOKENIZE] > 0.5 * w) busy_workers++;
    int dump_workers = 0;
    for (size_t i = 0; i < r->th.n; i++) dump_workers += !strcmp(r->th.t[i].role, "tokenizer");
    int workers = dump_workers > ntok ? dump_workers : ntok;
    double q_share = tail_share(r, C_QTOK), t_share = tail_share(r, C_TOK);
    double stage_share = (q_share > 0 ? q_share : 0) + (t_share > 0 ? t_share : 0);
    double tok50 = r->pct50[C_TOK], q50 = r->pct50[C_QTOK], q99 = r->pct99[C_QTOK];
    // Enough samples to read the phase's make-up: at 100 Hz, 50 ms is 5 samples.
    bool sampled = pi >= 0 && cpu_tok >= 0.05;
    bool alloc_heavy = sampled && alloc >= 0.30 && (tok50 >= 2 || share >= 0.15);
    if (alloc_heavy) {
        finding *f = new_finding(r, "alloc-churn");
        if (!f) return;
        snprintf(f->title, sizeof f->title,
                 "allocation churn in prompt pre-processing: the tokenize phase spends %.0f%% of its CPU in the allocator (%s%s%s)",
                 alloc * 100, top_alloc ? top_alloc : "malloc/free", alloc_caller ? ", called from " : "", alloc_caller ? alloc_caller : "");
        f->cpu_share = share;
        f->tail_share = stage_share;
        f->wall_share = w > 0 ? max_busy / w : -1;
        add_ev(f, "profile", "tokenize is %.0f%% of sampled CPU (%.0f ms); malloc/free/realloc/strdup frames hold %.0f%% of it, string copying %.0f%%",
               share * 100, cpu_tok * 1e3, alloc * 100, copy * 100);
        if (r->n_req && tok50 >= 1)
            add_ev(f, "trace", "tokenize takes %.1f ms per request at P50 (%.1f ms at P99), %.0f%% of the P99 requests' latency with its queue (queue P99 %.1f ms)",
                   tok50, r->pct99[C_TOK], stage_share * 100, q99);
        double ps = perf_share(r, ALLOC_FNS);
        if (ps >= 0.05) add_ev(f, "perf", "perf record: allocator frames in %.0f%% of the process's samples", ps * 100);
        double ipc = counter_phase(r, "tokenize", "ipc"), nsrt = counter_phase(r, "tokenize", "task_clock_ns"),
               pf = counter_phase(r, "tokenize", "page_faults"), regs = counter_phase(r, "tokenize", "regions");
        if (isfinite(ipc)) add_ev(f, "counters", "tokenize runs at IPC %.2f", ipc);
        else if (isfinite(nsrt) && isfinite(regs) && regs > 0 && nsrt / regs >= 1e6)
            add_ev(f, "counters", "tokenize costs %.2f ms of CPU per request (%.0f page faults over %.0f regions; IPC unavailable: %s)",
                   nsrt / regs / 1e6, isfinite(pf) ? pf : 0, regs, hw_reason(r));
        f->confidence = grade(f, alloc >= 0.3 && tok50 >= 2);
        f->score = stage_share > 0 ? stage_share : share;
        snprintf(f->change, sizeof f->change,
                 "pre-process the prompt in place or in one pre-allocated, pooled buffer per tokenizer worker (reset, not freed, between requests) instead of one heap allocation per piece");
        return;
    }
    // Requests wait for a tokenizer that is slow per request: the stage is saturated in bursts.
    // "Slow" is 1 ms a prompt, or 5% of the median request where requests
    // are short (on a fast machine a saturated stage took 0.8 ms of 11).
    const double tok_floor = fmin(1.0, 0.05 * r->pct50[C_N]);
    bool queued = r->n_req && tok50 >= tok_floor && ((q50 >= 0.5 * tok50 && q99 >= 2 * tok50) || (share >= 0.2 && q99 >= tok50));
    if (queued) {
        finding *f = new_finding(r, "tokenizer-saturated");
        if (!f) return;
        snprintf(f->title, sizeof f->title,
                 "tokenizer stage saturated: requests queue on \"tokenize\" for %d worker%s that take %.1f ms per prompt%s%s",
                 workers, workers == 1 ? "" : "s", tok50, top_fn ? "; hottest function " : "", top_fn ? top_fn : "");
        f->cpu_share = share;
        f->wall_share = w > 0 ? max_busy / w : -1;
        f->tail_share = stage_share;
        add_ev(f, "trace", "requests wait %.1f ms at P50 (%.1f ms at P99) in the queue \"tokenize\", then %.1f ms inside it; the queue held up to %.0f; busiest worker in tokenize %.0f%% of the window",
               q50, q99, tok50, r->tr.q_tokenize.max, w > 0 ? max_busy / w * 100 : 0);
        if (sampled) add_ev(f, "profile", "tokenize is %.0f%% of sampled CPU (%.0f ms), in %s; the allocator only %.0f%% of it", share * 100, cpu_tok * 1e3,
                            top_fn ? top_fn : "the encoder", alloc * 100);
        if (dump_workers) add_ev(f, "threads", "the threads dump lists %d tokenizer thread%s", dump_workers, dump_workers == 1 ? "" : "s");
        double nsrt = counter_phase(r, "tokenize", "task_clock_ns"), regs = counter_phase(r, "tokenize", "regions");
        if (isfinite(nsrt) && regs > 0 && nsrt / regs >= 1e6) add_ev(f, "counters", "tokenize costs %.2f ms of CPU per request", nsrt / regs / 1e6);
        f->confidence = grade(f, q50 >= 0.5 * tok50 && workers <= 2);
        f->score = stage_share;
        snprintf(f->change, sizeof f->change,
                 "add tokenizer workers (--tokenizer-threads) up to the cores free of compute, and make per-prompt encoding cheaper (%s)",
                 top_fn ? top_fn : "the encoder's hot loop");
    }
    (void)busy;
}

// A named lock (or queue) that requests convoy on.
static void detect_lock(report *r) {
    int best = -1;
    double best_s = 0;
    for (int i = 0; i < r->n_objs; i++) {
        // Waits that are the stage workers idling, or handlers awaiting their answer, are not contention.
        if (!strcmp(r->objs[i], "request.output") || !strcmp(r->objs[i], "tokenize") || !strcmp(r->objs[i], "admit")) continue;
        double s = r->obj_mutex_s[i] + r->obj_block_s[i];
        const ev_wait *tw = trace_wait(r, r->objs[i], NULL);
        double ts = 0;
        for (size_t k = 0; k < r->tr.n_waits; k++)
            if (!strcmp(r->tr.waits[k].on, r->objs[i])) ts += r->tr.waits[k].total_us / 1e6;
        if (tw && ts > s) s = ts;
        if (s > best_s) { best_s = s; best = i; }
    }
    if (best < 0) return;
    char obj[EV_NAME];
    snprintf(obj, sizeof obj, "%s", r->objs[best]);
    double w = window_s(r);
    double tw_s = 0, tw_max = 0;
    int64_t tw_n = 0;
    for (size_t k = 0; k < r->tr.n_waits; k++)
        if (!strcmp(r->tr.waits[k].on, obj)) {
            tw_s += r->tr.waits[k].total_us / 1e6;
            tw_n += r->tr.waits[k].count;
            if (r->tr.waits[k].max_us > tw_max) tw_max = r->tr.waits[k].max_us;
        }
    double lockw_tail = 0;
    // The tail requests' lock waits (`wait NAME` slices before submit), as a share of their latency.
    if (r->n_req && r->at99[C_N] > 0) lockw_tail = r->at99_lockw / r->at99[C_N];
    int waiting_now = 0;
    for (size_t i = 0; i < r->th.n; i++) waiting_now += r->th.t[i].waiting && !strcmp(r->th.t[i].wait_on, obj);
    // Waited-for time per second of window: 1.0 = one thread always waiting.
    double intensity = best_s / (w > 0 ? w : 1);
    if (intensity < 0.1 && lockw_tail < 0.1) return;
    finding *f = new_finding(r, "lock-convoy");
    if (!f) return;
    snprintf(f->title, sizeof f->title, "lock convoy on \"%s\": requests queue for one lock held across a slow step (%.2f thread-seconds of waiting per second)",
             obj, intensity);
    f->tail_share = lockw_tail;
    if (r->obj_mutex_s[best] > 0)
        add_ev(f, "mutex", "the mutex profile charges %.2f s of contention to \"%s\" over %.1f s", r->obj_mutex_s[best], obj, w);
    if (r->obj_block_s[best] > 0)
        add_ev(f, "block", "the block profile shows %.2f s of blocking on \"%s\"", r->obj_block_s[best], obj);
    if (tw_n)
        add_ev(f, "trace", "%lld `wait %s` slices, %.2f s in total, longest %.1f ms; the P99 requests waited on locks before submit for %.0f%% of their latency",
               (long long)tw_n, obj, tw_s, tw_max / 1e3, lockw_tail * 100);
    if (waiting_now) add_ev(f, "threads", "%d thread%s waiting on \"%s\" in the threads dump", waiting_now, waiting_now == 1 ? "" : "s", obj);
    f->confidence = grade(f, intensity >= 0.3 || lockw_tail >= 0.25);
    f->score = lockw_tail > 0 ? lockw_tail : intensity / 10;
    snprintf(f->change, sizeof f->change,
             "take the slow step out of the critical section of \"%s\" (do the blocking call before locking, cache its result, or make it asynchronous); if it must be serialised, shard the lock per key",
             obj);
}

// The scheduler giving up the CPU between tokens.
static void detect_yield(report *r) {
    double yield_s = 0, sched_cpu = 0;
    int ri = -1;
    for (int i = 0; i < r->n_roles; i++) if (!strcmp(r->roles[i], "scheduler")) ri = i;
    if (ri >= 0) sched_cpu = r->role_cpu[ri];
    const char *fn = NULL;
    double fn_best = 0;
    const char *phs[] = {"sample", "decode", "step", "prefill"};
    for (int k = 0; k < 4; k++) {
        int pi = phase_index(r, phs[k]);
        if (pi < 0) continue;
        fnview *v = &r->phase_view[pi];
        yield_s += set_incl_unless(v, YIELD_FNS, POOL_WAIT_FNS) * 1e-9;
        for (size_t i = 0; i < v->n; i++) {
            if (!in_set(v->f[i].name, YIELD_FNS)) continue;
            const char *one[] = {v->f[i].name, NULL};
            double incl = set_incl_unless(v, one, POOL_WAIT_FNS);
            if (incl > fn_best) { fn_best = incl; fn = v->f[i].name; }
        }
    }
    // The trace: the scheduler's wall time in `sample` against its CPU time there.
    double sample_wall = 0;
    trace_busy(r, "scheduler", EV_B_SAMPLE, NULL, &sample_wall);
    sample_wall /= 1e6;
    double sample_cpu = phase_cpu(r, "sample");
    double csw = counter_phase(r, "sample", "context_switches"), toks = counter_phase(r, "sample", "tokens");
    if (!(toks > 0)) toks = (double)r->tr.tokens;
    double csw_per_tok = isfinite(csw) && toks > 0 ? csw / toks : NAN;
    double off_cpu = sample_wall > 0 ? 1 - sample_cpu / sample_wall : 0;
    double w = window_s(r);
    // The floor of sampling's wall time per token: even the fastest tenth of
    // the `sample` slices take this long per token. Preemption on a busy
    // machine delays some slices; a sleep or yield per token delays them all.
    double p10 = r->tr.n_sample >= 20 ? ev_pct(r->tr.sample_us, r->tr.n_sample, 10) : 0;
    double cpu_tok_us = NAN;
    double sc = counter_phase(r, "sample", "task_clock_ns");
    if (isfinite(sc) && r->tr.tokens > 0) cpu_tok_us = sc / 1e3 / (double)r->tr.tokens;
    else if (sample_cpu > 0 && r->tr.tokens > 0) cpu_tok_us = sample_cpu * 1e6 / (double)r->tr.tokens;
    double floor_us = p10 - (isfinite(cpu_tok_us) ? cpu_tok_us : 0);
    bool prof_sig = fn && yield_s > 0 && (yield_s >= 0.02 * (sched_cpu > 0 ? sched_cpu : 1) || yield_s > 0.01);
    bool trace_sig = floor_us >= 100 && (!isfinite(cpu_tok_us) || floor_us >= 2 * cpu_tok_us);
    bool ctr_sig = isfinite(csw_per_tok) && csw_per_tok >= 1.0;   // a sleep is a switch per token
    // The profile shows the yield itself when it catches it; the trace's
    // per-token floor and the counters' switch per token show the time given
    // away even when it does not.
    if (!(trace_sig && (prof_sig || ctr_sig)) && !(prof_sig && off_cpu > 0.5 && ctr_sig)) return;
    finding *f = new_finding(r, "scheduler-thrash");
    if (!f) return;
    snprintf(f->title, sizeof f->title,
             "scheduler thrash: the scheduler gives up the CPU after every token (%s) — each sampled token waits at least %.0f µs off-CPU",
             fn ? fn : "a sleep or yield in the decode loop", floor_us > 0 ? floor_us : 0);
    f->wall_share = w > 0 ? sample_wall / w : -1;
    f->tail_share = tail_share(r, C_DECODE);
    f->cpu_share = r->cpu_total_s > 0 ? yield_s / r->cpu_total_s : -1;
    if (prof_sig) add_ev(f, "profile", "%s in the scheduler's sample/decode phases (%.0f ms of CPU samples in yield/sleep calls)", fn, yield_s * 1e3);
    add_ev(f, "trace", "sampling takes at least %.0f µs per token in 90%% of `sample` slices (%.0f µs of it CPU); the scheduler spends %.0f%% of the window in `sample`, %.0f%% of it off-CPU; token gap P50 %.2f ms",
           p10, isfinite(cpu_tok_us) ? cpu_tok_us : 0, w > 0 ? sample_wall / w * 100 : 0, off_cpu * 100,
           r->tr.n_gaps ? (double)r->tr.gaps_us[r->tr.n_gaps / 2] / 1e3 : 0);
    double ps = r->perf.t && r->perf.total > 0 ? set_incl_unless(&r->perf, YIELD_FNS, POOL_WAIT_FNS) / r->perf.total : 0;
    if (ps > 0) add_ev(f, "perf", "perf record: yield/sleep calls in %.1f%% of the process's samples", ps * 100);
    if (ctr_sig)
        add_ev(f, "counters", "%.2f context switches per sampled token in `sample` (%.0f switches, %.0f tokens); %.0f µs of CPU per token there", csw_per_tok, csw, toks,
               isfinite(cpu_tok_us) ? cpu_tok_us : 0);
    f->confidence = grade(f, trace_sig && floor_us >= 150 && (prof_sig || csw_per_tok >= 1.5));
    f->score = f->tail_share > 0 ? f->tail_share : 0.3;
    snprintf(f->change, sizeof f->change,
             "remove the per-token yield/sleep from the decode loop: let the step run to completion and block only when there is no work (a condition variable on the admit queue)");
}

// A non-kernel function hot on several compute threads at once.
static void detect_false_sharing(report *r) {
    if (!r->cpu || r->cpu_total_s <= 0) return;
    const char *phs[] = {"decode", "prefill"};
    double pc = 0;
    fnstat best = {0};
    for (int k = 0; k < 2; k++) {
        int pi = phase_index(r, phs[k]);
        if (pi < 0) continue;
        fnview *v = &r->phase_view[pi];
        pc += v->total;
        for (size_t i = 0; i < v->n; i++) {
            const char *n = v->f[i].name;
            if (in_set(n, WAIT_FNS)) pc -= v->f[i].self;   // spinning at the step's barrier is not work
            if (is_kernel(r, n) || in_set(n, WAIT_FNS) || in_set(n, INSTR_FNS) || in_set(n, ALLOC_FNS) || in_set(n, COPY_FNS) || n[0] == '[')
                continue;
            if (v->f[i].self > best.self) best = v->f[i];
        }
    }
    if (!best.name || pc <= 0) return;
    double share = best.self / pc;
    // At 100 Hz, 100 ms is ten samples: fewer say nothing about where a thread spends its time.
    if (share < 0.15 || best.self * 1e-9 < 0.06 || best.name[0] == '0') return;
    // On how many threads is it hot? Fold per thread and look for it.
    size_t ty = pprof_data_default_type(r->cpu);
    int hot_threads = 0;
    char names[256] = "";
    for (int i = 0; i < r->n_threads; i++) {
        fnview v;
        if (!fnview_make(r->cpu, ty, "thread", r->threads[i], &v)) continue;
        fnstat *s = fn_find(&v, best.name, false);
        if (s && v.total > 0 && s->self / v.total >= 0.05 && s->self * 1e-9 >= 0.03) {
            hot_threads++;
            size_t l = strlen(names);
            snprintf(names + l, sizeof names - l, "%s%s", l ? ", " : "", r->threads[i]);
        }
        fnview_free(&v);
    }
    if (hot_threads < 2) return;
    finding *f = new_finding(r, "false-sharing");
    if (!f) return;
    char fname[128];
    snprintf(fname, sizeof fname, "%s", best.name);
    snprintf(f->title, sizeof f->title,
             "false sharing suspected in %.80s: a hot per-thread update runs on %d compute threads at once (%.120s) and takes %.0f%% of the forward pass's work",
             fname, hot_threads, names, share * 100);
    f->cpu_share = best.self * 1e-9 / r->cpu_total_s;
    f->tail_share = tail_share(r, C_DECODE);
    add_ev(f, "profile", "%s holds %.0f%% of decode/prefill CPU (barrier spinning left out) in its own frame, is not a math kernel, and is hot on %s", fname, share * 100, names);
    if (r->perf.t && r->perf.total > 0) {
        fnstat *ps = fn_find(&r->perf, fname, false);
        if (ps && ps->self > 0) add_ev(f, "perf", "perf record: %s in %.0f%% of the process's samples (own frame)", fname, ps->self / r->perf.total * 100);
    }
    if (hw_available(r)) {
        double mr = counter_phase(r, "decode", "cache_miss_rate"), ipc = counter_phase(r, "decode", "ipc");
        add_ev(f, "counters", "decode IPC %.2f, cache-miss rate %.1f%%", ipc, mr * 100);
    } else {
        double per_tok = counter_phase(r, "decode", "cpu_ns_per_token");
        if (isfinite(per_tok)) add_ev(f, "counters", "decode costs %.2f ms CPU per token; cache-miss counts unavailable (%s)", per_tok / 1e6, hw_reason(r));
    }
    if (r->tr.steps) {
        double step_ms = r->tr.step_us / (double)r->tr.steps / 1e3;
        double bt = r->tr.batch_tokens.n ? r->tr.batch_tokens.sum / (double)r->tr.batch_tokens.n : 0;
        add_ev(f, "trace", "forward steps average %.2f ms for %.1f tokens; decode is %.0f%% of P99 latency", step_ms, bt,
               f->tail_share > 0 ? f->tail_share * 100 : 0);
    }
    f->confidence = grade(f, share >= 0.2 && hot_threads >= 2);
    f->score = share;
    snprintf(f->change, sizeof f->change,
             "give each thread's hot counters their own cache line (align and pad per-thread fields to 64 bytes, or keep them in thread-local storage and sum on read); count once per step, not in the inner loop");
}

// Connections held open by clients that send little.
static void detect_slow_clients(report *r) {
    json_t *p0 = proc_at(r, 0), *p1 = proc_at(r, -1);
    size_t n_conn = p1 ? json_array_size(json_object_get(p1, "connections")) : 0;
    if (!p1) return;
    // Connections present in every snapshot: held for the whole window.
    size_t held = 0;
    json_t *last = json_object_get(p1, "connections");
    for (size_t i = 0; i < json_array_size(last); i++) {
        const char *c = json_string_value(json_array_get(last, i));
        bool all = true;
        for (size_t s = 0; s + 1 < json_array_size(r->proc) && all; s++) {
            json_t *cs = json_object_get(json_array_get(r->proc, s), "connections");
            bool found = false;
            for (size_t k = 0; k < json_array_size(cs); k++)
                if (c && !strcmp(c, json_string_value(json_array_get(cs, k)) ? json_string_value(json_array_get(cs, k)) : "")) { found = true; break; }
            all = found;
        }
        held += all;
    }
    int conc = (int)jnum(r->load, "config.concurrency");
    if (conc < 0) conc = 0;
    double running = 0;
    bool fr;
    running = ev_metrics_sum(&r->m1, "llmscope_num_requests_running", NULL, &fr) + ev_metrics_sum(&r->m1, "llmscope_num_requests_waiting", NULL, NULL);
    int dump_http = 0, dump_http_idle = 0;
    for (size_t i = 0; i < r->th.n; i++) {
        if (strcmp(r->th.t[i].role, "http")) continue;
        dump_http++;
        if (!r->th.t[i].waiting && !r->th.t[i].phase[0] && !r->th.t[i].request) dump_http_idle++;
    }
    double idle_conns = (double)held - (conc > 0 ? conc : 0) - running;
    // A connection's thread registers with the profiler when its first
    // request arrives whole: threads of the process that never registered
    // are connections that never delivered a request (keep-alive clients
    // that send requests register).
    json_t *pm = proc_at(r, (int)json_array_size(r->proc) / 2);
    double os_threads = jnum(pm, "threads");
    double unreg = r->have_threads && isfinite(os_threads) ? os_threads - (double)r->th.n : idle_conns;
    if (held < 16 || idle_conns < 12 || unreg < 12) return;
    finding *f = new_finding(r, "slow-clients");
    if (!f) return;
    double cpu_util = r->cpu_total_s / (window_s(r) * (r->ncpu > 0 ? r->ncpu : 1));
    snprintf(f->title, sizeof f->title,
             "slow clients hold connections: %zu connections held open through the whole window, about %.0f of them carrying no request, while the CPU is %.0f%% used",
             held, idle_conns, cpu_util * 100);
    f->wall_share = -1;
    add_ev(f, "proc", "%zu established connections to the server at the end (%zu held since the start); the process has %lld threads and %lld open files",
           n_conn, held, (long long)jnum(p1, "threads"), (long long)jnum(p1, "fds"));
    if (r->load) {
        double errs = jnum(r->load, "summary.errors"), rps = jnum(r->load, "summary.requests_per_sec");
        double p99 = jnum(r->load, "latency_ms.p99");
        add_ev(f, "load", "the load's %d workers got %.1f requests/s, %.0f errors, P99 %.0f ms — far fewer requests than connections",
               conc, isfinite(rps) ? rps : 0, isfinite(errs) ? errs : 0, isfinite(p99) ? p99 : 0);
    }
    add_ev(f, "metrics", "only %.0f requests running or waiting at the end (llmscope_num_requests_running + _waiting)", running);
    if (r->cpu) add_ev(f, "profile", "the process used %.2f CPU-seconds per second of %d cores (%.0f%%): the connections are idle, not busy", cpu_util * (r->ncpu > 0 ? r->ncpu : 1), r->ncpu, cpu_util * 100);
    if (r->have_threads && isfinite(os_threads))
        add_ev(f, "threads", "the process has %.0f threads but only %zu registered (%d HTTP threads, %d of them idle): about %.0f connection threads never received a whole request",
               os_threads, r->th.n, dump_http, dump_http_idle, unreg);
    (void)p0;
    f->confidence = grade(f, idle_conns >= 32);
    f->score = 0.5;
    snprintf(f->change, sizeof f->change,
             "restore a read timeout (--read-timeout) and a header deadline so trickling clients are cut, cap connections per client address, and put a buffering proxy in front for slow networks");
}

// In-use heap growing at one allocation site between the two heap profiles.
static void detect_heap_growth(report *r) {
    if (r->n_sites == 0) return;
    int best = 0;
    for (int i = 1; i < r->n_sites; i++) if (r->site_growth[i] > r->site_growth[best]) best = i;
    double g = r->site_growth[best];
    char site[160];
    snprintf(site, sizeof site, "%s", r->sites[best]);
    double reqs = metric_delta(r, "llmscope_e2e_request_latency_seconds_count", NULL);
    if (!(reqs > 0)) reqs = (double)r->tr.n_req;
    double per_req = reqs > 0 ? g / reqs : 0;
    // One heap sample stands for about 512 KiB: ask for several, and for a
    // steady cost per request, before calling it growth.
    if (g < 4 * 1048576 || per_req < 16384 || site[0] == '0' || !strncmp(site, "_dl_", 4)) return;
    finding *f = new_finding(r, "heap-growth");
    if (!f) return;
    snprintf(f->title, sizeof f->title, "heap growth at %s: in-use memory there grew %.1f MiB over the window, about %.1f KiB per request, and is not freed",
             site, g / 1048576, per_req / 1024);
    add_ev(f, "heap", "in-use bytes allocated at %s grew from the start profile to the end profile by %.1f MiB (%.0f requests served)",
           site, g / 1048576, reqs);
    json_t *p0 = proc_at(r, 0), *p1 = proc_at(r, -1);
    double rss0 = jnum(p0, "rss_kb"), rss1 = jnum(p1, "rss_kb");
    if (isfinite(rss0) && isfinite(rss1) && rss1 > rss0)
        add_ev(f, "proc", "the process's resident memory grew %.1f MiB during the window (%.0f -> %.0f MiB)", (rss1 - rss0) / 1024, rss0 / 1024, rss1 / 1024);
    double pf = 0;
    json_t *ph = json_object_get(r->counters, "phases");
    const char *k;
    json_t *v;
    json_object_foreach(ph, k, v) {
        json_t *x = json_object_get(v, "minor_faults");
        if (json_is_number(x)) pf += json_number_value(x);
    }
    if (pf > 0 && isfinite(rss0) && rss1 > rss0) add_ev(f, "counters", "%.0f minor page faults in the window (fresh memory being touched)", pf);
    f->confidence = grade(f, per_req >= 32768 && g >= 8 * 1048576);
    f->score = 0.4;
    snprintf(f->change, sizeof f->change,
             "free the per-request state when the request completes (or bound the cache that keeps it: an LRU with a byte limit), and reuse scratch buffers from a pool");
}

// Single-stream decode bound by memory bandwidth.
static void detect_bandwidth(report *r) {
    double dec = phase_cpu(r, "decode");
    if (r->cpu_total_s <= 0 || dec / r->cpu_total_s < 0.5) return;
    int pi = phase_index(r, "decode");
    fnview *v = &r->phase_view[pi];
    double kern = 0;
    for (size_t i = 0; i < v->n; i++) if (is_kernel(r, v->f[i].name)) kern += v->f[i].self;
    double kshare = kern / v->total;
    double bt = r->tr.batch_tokens.n ? r->tr.batch_tokens.sum / (double)r->tr.batch_tokens.n : 0;
    if (kshare < 0.5 || bt <= 0 || bt > 1.5) return;
    finding *f = new_finding(r, "memory-bandwidth");
    if (!f) return;
    snprintf(f->title, sizeof f->title,
             "memory-bandwidth-bound decode: %.0f%% of CPU is decode, %.0f%% of that in matmul kernels, at %.2f tokens per step (batch 1 reads every weight once per token)",
             dec / r->cpu_total_s * 100, kshare * 100, bt);
    f->cpu_share = dec / r->cpu_total_s;
    f->tail_share = tail_share(r, C_DECODE);
    add_ev(f, "profile", "decode %.0f%% of CPU, math kernels %.0f%% of decode", dec / r->cpu_total_s * 100, kshare * 100);
    add_ev(f, "trace", "batch.tokens averages %.2f per step over %lld steps", bt, (long long)r->tr.steps);
    if (hw_available(r)) add_ev(f, "counters", "decode IPC %.2f, MPKI %.1f", counter_phase(r, "decode", "ipc"), counter_phase(r, "decode", "mpki"));
    // The weights the steps streamed against what the compute threads read
    // at the server's start: a measure of the bound that needs no hardware
    // counter. Steps read every matrix once whatever their batch, and the
    // caches and the KV reads are left out, so the rate is a floor.
    bool fw, fb, fh, ft;
    const double wstep = ev_metrics_sum(&r->m1, "llmscope_weights_read_per_step_bytes", NULL, &fw);
    const double bw = ev_metrics_sum(&r->m1, "llmscope_memory_read_bandwidth_bytes_per_second", NULL, &fb);
    const double huge = ev_metrics_sum(&r->m1, "llmscope_weights_huge_page_bytes", NULL, &fh);
    const double wtot = ev_metrics_sum(&r->m1, "llmscope_weights_bytes", NULL, &ft);
    double share = NAN;
    if (fw && wstep > 0 && r->tr.steps > 0 && r->tr.step_us > 0) {
        const double rate = wstep * (double)r->tr.steps / (r->tr.step_us / 1e6);
        share = fb && bw > 0 ? rate / bw : NAN;
        if (isfinite(share))
            add_ev(f, "metrics", "the steps streamed %.1f GB/s of weights (%.1f MB a step, llmscope_weights_read_per_step_bytes, over %.2f s of steps): %.0f%% of the %.1f GB/s the compute threads read at start (llmscope_memory_read_bandwidth_bytes_per_second)",
                   rate / 1e9, wstep / 1e6, r->tr.step_us / 1e6, share * 100, bw / 1e9);
        else
            add_ev(f, "metrics", "the steps streamed %.1f GB/s of weights (%.1f MB a step, llmscope_weights_read_per_step_bytes, over %.2f s of steps); the server did not measure its read bandwidth (--bw-probe-mib 0)",
                   rate / 1e9, wstep / 1e6, r->tr.step_us / 1e6);
    }
    // Weights in 4 KiB pages cost a TLB miss every 4 KiB of the stream.
    const bool small_pages = fh && ft && wtot > 0 && huge < 0.9 * wtot;
    if (small_pages) {
        char part[64];
        if (huge > 0) snprintf(part, sizeof part, "only %.0f", huge / 1048576);
        else snprintf(part, sizeof part, "none");
        add_ev(f, "metrics", "%s of the weights' %.0f MiB are in 2 MiB pages (llmscope_weights_huge_page_bytes)", part, wtot / 1048576);
    }
    // Counters, or most of the measured bandwidth streamed by weights too
    // large for any cache (64 MiB and more), make it high; else this is
    // what single-stream decode always looks like: medium at most.
    const bool streams = isfinite(share) && share >= 0.6 && wstep >= 64.0 * 1048576;
    f->confidence = (hw_available(r) && counter_phase(r, "decode", "ipc") < 1.0) || streams ? CONF_HIGH : CONF_MEDIUM;
    if (f->confidence > grade(f, true)) f->confidence = grade(f, true);
    f->score = f->tail_share > 0 ? f->tail_share * 0.5 : 0.2;
    snprintf(f->change, sizeof f->change,
             "batch more sequences per step (raise concurrency or --parallel) so each weight read serves several tokens, and use a smaller weight type (Q8_0/Q4_0) to cut bytes per token%s",
             small_pages ? "; give the weights 2 MiB pages (transparent huge pages in madvise or always mode, and no --mmap)" : "");
}

static int cmp_finding(const void *a, const void *b) {
    const finding *x = a, *y = b;
    if (x->confidence != y->confidence) return (int)y->confidence - (int)x->confidence;
    return (x->score < y->score) - (x->score > y->score);
}

// ---- loading and analysing ---------------------------------------------------------------

static int analyse(report *r) {
    char err[512];
    size_t n;
    json_error_t je;
    char mp[4096];
    snprintf(mp, sizeof mp, "%s/manifest.json", r->dir);
    r->man = json_load_file(mp, 0, &je);
    if (!r->man) { fprintf(stderr, "llmscope report: %s: %s\n", mp, je.text); return 1; }
    r->seconds = jnum(r->man, "seconds");
    if (!(r->seconds > 0)) r->seconds = 1;
    r->ncpu = (int)jnum(r->man, "host_cpus");
    if (r->ncpu <= 0) r->ncpu = 1;
    r->cpu = load_pprof(r, "cpu");
    note_kernel_fns(r, r->cpu);
    r->block = load_pprof(r, "block_end");
    r->mutex = load_pprof(r, "mutex_end");
    r->block0 = load_pprof(r, "block_start");
    r->mutex0 = load_pprof(r, "mutex_start");
    r->heap0 = load_pprof(r, "heap_start");
    r->heap1 = load_pprof(r, "heap_end");
    char *t = load_text(r, "trace", &n);
    if (t) {
        r->have_trace = ev_trace_parse(t, n, "trace.json", &r->tr, err, sizeof err) == 0;
        if (!r->have_trace) note_unavail(r, "trace", err);
        free(t);
    }
    t = load_text(r, "threads", &n);
    if (t) {
        r->have_threads = ev_threads_parse(t, n, "threads.txt", &r->th, err, sizeof err) == 0;
        if (!r->have_threads) note_unavail(r, "threads", err);
        free(t);
    }
    t = load_text(r, "metrics_before", &n);
    if (t) { r->have_m0 = ev_metrics_parse(t, n, "metrics_before.txt", &r->m0, err, sizeof err) == 0; free(t); }
    t = load_text(r, "metrics_after", &n);
    if (t) { r->have_m1 = ev_metrics_parse(t, n, "metrics_after.txt", &r->m1, err, sizeof err) == 0; free(t); }
    if (json_object_get(json_object_get(r->man, "captured"), "perf_script")) {
        t = load_text(r, "perf_script", &n);
        fold_tree *pt = t ? fold_new() : NULL;
        if (pt && fold_parse_perf(pt, t, n, "perf.script", err, sizeof err) == 0) {
            r->perf.t = pt;
            perf_digest(&r->perf);
        } else {
            fold_free(pt);
            if (t) note_unavail(r, "perf_script", err);
        }
        free(t);
    }
    r->counters = load_json(r, "counters");
    r->load = load_json(r, "load");
    r->proc = load_json(r, "proc");
    json_t *un = json_object_get(r->man, "unavailable");
    const char *k;
    json_t *v;
    json_object_foreach(un, k, v) {
        bool seen = false;
        for (int i = 0; i < r->n_unavail; i++) if (!strncmp(r->unavail[i], k, strlen(k)) && r->unavail[i][strlen(k)] == ':') seen = true;
        if (!seen && json_is_string(v)) note_unavail(r, k, json_string_value(v));
    }
    digest_cpu(r);
    digest_waits(r);
    digest_heap(r);
    digest_latency(r);
    detect_tokenize(r);
    detect_lock(r);
    detect_yield(r);
    detect_false_sharing(r);
    detect_slow_clients(r);
    detect_heap_growth(r);
    detect_bandwidth(r);
    qsort(r->f, (size_t)r->n_f, sizeof r->f[0], cmp_finding);
    return 0;
}

static void report_free(report *r) {
    for (size_t i = 0; i < r->n_kernel_names; i++) free(r->kernel_names[i]);
    free(r->kernel_names);
    json_decref(r->man);
    json_decref(r->counters);
    json_decref(r->load);
    json_decref(r->proc);
    pprof_data_free(r->cpu);
    pprof_data_free(r->block);
    pprof_data_free(r->mutex);
    pprof_data_free(r->block0);
    pprof_data_free(r->mutex0);
    pprof_data_free(r->heap0);
    pprof_data_free(r->heap1);
    ev_trace_free(&r->tr);
    ev_threads_free(&r->th);
    ev_metrics_free(&r->m0);
    ev_metrics_free(&r->m1);
    fnview_free(&r->all);
    fnview_free(&r->perf);
    for (int i = 0; i < r->n_phases; i++) fnview_free(&r->phase_view[i]);
    for (int c = 0; c < C_N; c++) free(r->comp[c]);
    free(r->total);
    free(r->lockw);
}

// ---- output ----------------------------------------------------------------------------------

typedef struct out {
    FILE *f;
    report_format fmt;
} out;

// Escapes text for HTML (other formats print it as it is).
static void put(out *o, const char *s) {
    if (o->fmt != REPORT_HTML) { fputs(s, o->f); return; }
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", o->f); break;
        case '>': fputs("&gt;", o->f); break;
        case '&': fputs("&amp;", o->f); break;
        case '"': fputs("&quot;", o->f); break;
        default: fputc(*s, o->f);
        }
    }
}

static void heading(out *o, int level, const char *text) {
    switch (o->fmt) {
    case REPORT_TEXT: fprintf(o->f, "\n%s\n", text); for (size_t i = strlen(text); i > 0; i--) fputc(level == 1 ? '=' : '-', o->f); fputc('\n', o->f); break;
    case REPORT_MD: fprintf(o->f, "\n%s %s\n\n", level == 1 ? "#" : level == 2 ? "##" : "###", text); break;
    case REPORT_HTML: fprintf(o->f, "<h%d>", level); put(o, text); fprintf(o->f, "</h%d>\n", level); break;
    }
}

static void para(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void para(out *o, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (o->fmt == REPORT_HTML) { fputs("<p>", o->f); put(o, buf); fputs("</p>\n", o->f); }
    else fprintf(o->f, "%s\n%s", buf, o->fmt == REPORT_MD ? "\n" : "");
}

// A table: cells are given row by row; the text form pads columns.
typedef struct table {
    int ncol, nrow;
    char cell[64][8][200];
} table;

static void row(table *t, ...) {
    if (t->nrow >= 64) return;
    va_list ap;
    va_start(ap, t);
    for (int c = 0; c < t->ncol; c++) {
        const char *s = va_arg(ap, const char *);
        snprintf(t->cell[t->nrow][c], sizeof t->cell[0][0], "%s", s ? s : "");
    }
    va_end(ap);
    t->nrow++;
}

static void print_table(out *o, table *t) {
    if (o->fmt == REPORT_HTML) {
        fputs("<table>\n", o->f);
        for (int r = 0; r < t->nrow; r++) {
            fputs("<tr>", o->f);
            for (int c = 0; c < t->ncol; c++) {
                fputs(r == 0 ? "<th>" : "<td>", o->f);
                put(o, t->cell[r][c]);
                fputs(r == 0 ? "</th>" : "</td>", o->f);
            }
            fputs("</tr>\n", o->f);
        }
        fputs("</table>\n", o->f);
        return;
    }
    if (o->fmt == REPORT_MD) {
        for (int r = 0; r < t->nrow; r++) {
            fputs("|", o->f);
            for (int c = 0; c < t->ncol; c++) {
                fputc(' ', o->f);
                for (const char *s = t->cell[r][c]; *s; s++) { if (*s == '|') fputc('\\', o->f); fputc(*s, o->f); }
                fputs(" |", o->f);
            }
            fputc('\n', o->f);
            if (r == 0) { fputs("|", o->f); for (int c = 0; c < t->ncol; c++) fputs(" --- |", o->f); fputc('\n', o->f); }
        }
        fputc('\n', o->f);
        return;
    }
    int w[8] = {0};
    for (int r = 0; r < t->nrow; r++)
        for (int c = 0; c < t->ncol; c++) { int l = (int)strlen(t->cell[r][c]); if (l > w[c]) w[c] = l > 60 ? 60 : l; }
    for (int r = 0; r < t->nrow; r++) {
        for (int c = 0; c < t->ncol; c++) fprintf(o->f, "%s%-*s", c ? "  " : "  ", c == t->ncol - 1 ? 0 : w[c], t->cell[r][c]);
        fputc('\n', o->f);
    }
}

static const char *fmt_pct(char *b, double v) {
    if (v < 0 || !isfinite(v)) snprintf(b, 16, "-");
    else snprintf(b, 16, "%.0f%%", v * 100);
    return b;
}

static void print_findings(out *o, report *r) {
    heading(o, 2, "Findings (ranked by contribution to P99 latency)");
    int shown = 0;
    for (int i = 0; i < r->n_f; i++) {
        finding *f = &r->f[i];
        if (f->confidence < CONF_MEDIUM) continue;
        shown++;
        char a[16], b[16], c[16];
        char h[700];
        snprintf(h, sizeof h, "%d. [%s] %s", shown, f->key, f->title);
        heading(o, 3, h);
        para(o, "confidence: %s (%d independent sources agree) — share of CPU %s, of wall time %s, of P99 latency %s",
             conf_name(f->confidence), n_sources(f), fmt_pct(a, f->cpu_share), fmt_pct(b, f->wall_share), fmt_pct(c, f->tail_share));
        if (o->fmt == REPORT_HTML) fputs("<ul>\n", o->f);
        for (int k = 0; k < f->n_ev; k++) {
            if (o->fmt == REPORT_HTML) { fputs("<li><b>", o->f); put(o, f->ev[k].source); fputs("</b>: ", o->f); put(o, f->ev[k].signal); fputs("</li>\n", o->f); }
            else fprintf(o->f, "  - %s: %s\n", f->ev[k].source, f->ev[k].signal);
        }
        if (o->fmt == REPORT_HTML) fputs("</ul>\n", o->f);
        else if (o->fmt == REPORT_MD) fputc('\n', o->f);
        para(o, "proposed change: %s", f->change);
    }
    if (!shown) para(o, "No bottleneck stands out: no finding reaches medium confidence. The server is either under-loaded or limited by its plain work (see the tables below).");
    int weak = 0;
    for (int i = 0; i < r->n_f; i++) if (r->f[i].confidence < CONF_MEDIUM) weak++;
    if (weak) {
        heading(o, 3, "Weak signals (one source, low confidence)");
        for (int i = 0; i < r->n_f; i++)
            if (r->f[i].confidence < CONF_MEDIUM) para(o, "- [%s] %s", r->f[i].key, r->f[i].title);
    }
}

static void print_crosscheck(out *o, report *r) {
    heading(o, 2, "Cross-check");
    table t = {.ncol = 3};
    row(&t, "instrument", "signal", "confirmed");
    const char *srcs[] = {"profile", "trace", "counters", "mutex", "block", "heap", "threads", "metrics", "proc", "load", "perf"};
    const char *keys[] = {"cpu", "trace", "counters", "mutex_end", "block_end", "heap_end", "threads", "metrics_after", "proc", "load", "perf"};
    for (size_t s = 0; s < sizeof srcs / sizeof srcs[0]; s++) {
        if (!json_object_get(json_object_get(r->man, "captured"), keys[s])) {
            const char *why = json_string_value(json_object_get(json_object_get(r->man, "unavailable"), keys[s]));
            char w[200];
            snprintf(w, sizeof w, "unavailable: %.180s", why ? why : "not captured");
            row(&t, srcs[s], w, "-");
            continue;
        }
        bool any = false;
        for (int i = 0; i < r->n_f; i++)
            for (int k = 0; k < r->f[i].n_ev; k++)
                if (!strcmp(r->f[i].ev[k].source, srcs[s])) {
                    char c[80];
                    snprintf(c, sizeof c, "%s (%s)", r->f[i].key, conf_name(r->f[i].confidence));
                    row(&t, srcs[s], r->f[i].ev[k].signal, c);
                    any = true;
                }
        if (!any) row(&t, srcs[s], "nothing anomalous", "-");
    }
    print_table(o, &t);
}

static void print_latency(out *o, report *r) {
    heading(o, 2, "Latency breakdown by phase (trace)");
    if (!r->n_req) { para(o, "unavailable: %s", r->have_trace ? "no whole request in the trace window" : "no trace in the capture"); return; }
    para(o, "%zu requests began and ended inside the %.1f s trace window. P50/P99 per component; the last two columns split the median requests and the slowest 5%% (the P99 tail) into their parts.",
         r->n_req, window_s(r));
    table t = {.ncol = 5};
    row(&t, "component", "P50 ms", "P99 ms", "median request ms", "tail request ms (share)");
    for (int c = 0; c <= C_N; c++) {
        char a[32], b[32], d[32], e[48];
        snprintf(a, sizeof a, "%.2f", r->pct50[c]);
        snprintf(b, sizeof b, "%.2f", r->pct99[c]);
        snprintf(d, sizeof d, "%.2f", r->at50[c]);
        snprintf(e, sizeof e, "%.2f (%.0f%%)", r->at99[c], r->at99[C_N] > 0 ? r->at99[c] / r->at99[C_N] * 100 : 0);
        row(&t, c < C_N ? COMP_NAMES[c] : "total", a, b, d, e);
    }
    print_table(o, &t);
}

static void print_cpu(out *o, report *r) {
    heading(o, 2, "Top CPU functions per phase (profile labels)");
    if (!r->cpu) { para(o, "unavailable: no CPU profile"); return; }
    para(o, "%.2f CPU-seconds sampled over %.0f s.", r->cpu_total_s, r->seconds);
    // phases by CPU
    int order[MAX_NAMES];
    for (int i = 0; i < r->n_phases; i++) order[i] = i;
    for (int i = 1; i < r->n_phases; i++) {
        int x = order[i], j = i;
        while (j > 0 && r->phase_cpu[order[j - 1]] < r->phase_cpu[x]) { order[j] = order[j - 1]; j--; }
        order[j] = x;
    }
    table t = {.ncol = 4};
    row(&t, "phase", "phase CPU", "function (self)", "share of phase");
    double labelled = 0;
    for (int q = 0; q < r->n_phases && q < 8; q++) {
        int i = order[q];
        labelled += r->phase_cpu[i];
        fnview *v = &r->phase_view[i];
        qsort(v->f, v->n, sizeof *v->f, cmp_self);
        for (size_t k = 0; k < v->n && k < 4; k++) {
            char a[48] = "", b[16];
            if (k == 0) snprintf(a, sizeof a, "%.0f ms (%.0f%%)", r->phase_cpu[i] * 1e3, r->cpu_total_s > 0 ? r->phase_cpu[i] / r->cpu_total_s * 100 : 0);
            snprintf(b, sizeof b, "%.0f%%", v->total > 0 ? v->f[k].self / v->total * 100 : 0);
            row(&t, k == 0 ? r->phases[i] : "", a, v->f[k].name, b);
        }
    }
    print_table(o, &t);
    para(o, "Outside any phase: %.0f ms (%.0f%%).", (r->cpu_total_s - labelled) * 1e3,
         r->cpu_total_s > 0 ? (r->cpu_total_s - labelled) / r->cpu_total_s * 100 : 0);
    if (r->perf.t && r->perf.total > 0) {
        qsort(r->perf.f, r->perf.n, sizeof *r->perf.f, cmp_self);
        table pt = {.ncol = 2};
        row(&pt, "perf record: function (self)", "share of samples");
        for (size_t k = 0; k < r->perf.n && k < 8; k++) {
            char b[16];
            snprintf(b, sizeof b, "%.1f%%", r->perf.f[k].self / r->perf.total * 100);
            row(&pt, r->perf.f[k].name, b);
        }
        print_table(o, &pt);
    }
}

static void print_waits(out *o, report *r) {
    heading(o, 2, "Top waits (block and mutex profiles, trace)");
    table t = {.ncol = 6};
    row(&t, "object", "block s", "mutex s", "trace waits (role: count, total s, max ms)", "", "");
    t.ncol = 4;
    for (int i = 0; i < r->n_objs; i++) {
        char a[32], b[32], c[200] = "";
        snprintf(a, sizeof a, "%.3f", r->obj_block_s[i]);
        snprintf(b, sizeof b, "%.3f", r->obj_mutex_s[i]);
        for (size_t k = 0; k < r->tr.n_waits; k++) {
            const ev_wait *w = &r->tr.waits[k];
            if (strcmp(w->on, r->objs[i])) continue;
            size_t l = strlen(c);
            snprintf(c + l, sizeof c - l, "%s%s: %lld, %.3f, %.1f", l ? "; " : "", w->role, (long long)w->count, w->total_us / 1e6, w->max_us / 1e3);
        }
        if (r->obj_block_s[i] == 0 && r->obj_mutex_s[i] == 0 && !c[0]) continue;
        row(&t, r->objs[i], a, b, c);
    }
    print_table(o, &t);
    para(o, "Waits of a stage's own workers on their input queue (tokenizer on \"tokenize\", scheduler on \"admit\") are idle time; handlers on \"request.output\" await their answer.");
}

static void print_heap(out *o, report *r) {
    heading(o, 2, "Heap growth by allocation site (in-use bytes, end minus start)");
    if (!r->heap0 || !r->heap1) { para(o, "unavailable: both heap profiles are needed"); return; }
    para(o, "In use (sampled, scaled): %.1f MiB at the start, %.1f MiB at the end; the instruments' own buffers are left out of the sites.",
         r->heap_start_total / 1048576, r->heap_end_total / 1048576);
    int order[MAX_NAMES];
    for (int i = 0; i < r->n_sites; i++) order[i] = i;
    for (int i = 1; i < r->n_sites; i++) {
        int x = order[i], j = i;
        while (j > 0 && r->site_growth[order[j - 1]] < r->site_growth[x]) { order[j] = order[j - 1]; j--; }
        order[j] = x;
    }
    table t = {.ncol = 2};
    row(&t, "site (allocating function <- caller)", "growth");
    for (int q = 0; q < r->n_sites && q < 6; q++) {
        if (r->site_growth[order[q]] == 0) continue;
        char a[32];
        snprintf(a, sizeof a, "%+.1f KiB", r->site_growth[order[q]] / 1024);
        row(&t, r->sites[order[q]], a);
    }
    print_table(o, &t);
}

static void print_counters(out *o, report *r) {
    heading(o, 2, "Per-phase IPC and miss rates (counters)");
    if (!r->counters) { para(o, "unavailable: %s", hw_reason(r)); return; }
    bool hw = hw_available(r);
    if (!hw) para(o, "IPC and miss rates unavailable: %s. Software figures follow.", hw_reason(r));
    table t = {.ncol = 6};
    row(&t, "phase", "CPU ms", "IPC", "cache-miss rate", "ctx switches", "CPU ms/token");
    json_t *ph = json_object_get(r->counters, "phases");
    const char *k;
    json_t *v;
    json_object_foreach(ph, k, v) {
        double tc = jnum(v, "task_clock_ns");
        if (!(tc > 0)) continue;
        char a[32], b[32], c[32], d[32], e[32];
        double ipc = jnum(v, "ipc"), mr = jnum(v, "cache_miss_rate"), cs = jnum(v, "context_switches"), pt = jnum(v, "cpu_ns_per_token");
        snprintf(a, sizeof a, "%.1f", tc / 1e6);
        if (isfinite(ipc)) snprintf(b, sizeof b, "%.2f", ipc); else snprintf(b, sizeof b, "unavailable");
        if (isfinite(mr)) snprintf(c, sizeof c, "%.1f%%", mr * 100); else snprintf(c, sizeof c, "unavailable");
        if (isfinite(cs)) snprintf(d, sizeof d, "%.0f", cs); else snprintf(d, sizeof d, "-");
        if (isfinite(pt)) snprintf(e, sizeof e, "%.3f", pt / 1e6); else snprintf(e, sizeof e, "-");
        row(&t, k, a, b, c, d, e);
    }
    print_table(o, &t);
}

static void print_roles(out *o, report *r) {
    heading(o, 2, "CPU utilisation per thread role (profile labels)");
    if (!r->cpu) { para(o, "unavailable: no CPU profile"); return; }
    double w = r->seconds;
    table t = {.ncol = 4};
    row(&t, "role", "threads (dump)", "CPU s", "cores busy (CPU s / window s)");
    for (int i = 0; i < r->n_roles; i++) {
        char a[16], b[32], c[32];
        snprintf(a, sizeof a, "%d", r->role_threads[i]);
        snprintf(b, sizeof b, "%.2f", r->role_cpu[i]);
        snprintf(c, sizeof c, "%.2f", r->role_cpu[i] / w);
        row(&t, r->roles[i], a, b, c);
    }
    print_table(o, &t);
    json_t *p0 = proc_at(r, 0), *p1 = proc_at(r, -1);
    double c0 = jnum(p0, "cpu_s"), c1 = jnum(p1, "cpu_s"), t0 = jnum(p0, "t_s"), t1 = jnum(p1, "t_s");
    if (isfinite(c0) && isfinite(c1) && t1 > t0)
        para(o, "The process as a whole (/proc): %.2f of %d cores busy.", (c1 - c0) / (t1 - t0), r->ncpu);
}

static void print_sources(out *o, report *r) {
    heading(o, 2, "Capture");
    json_t *srv = json_object_get(r->man, "server");
    para(o, "%s, %.0f s window, load: %s; model %s, context %lld.", json_string_value(json_object_get(r->man, "url")) ? json_string_value(json_object_get(r->man, "url")) : "?",
         r->seconds, json_string_value(json_object_get(r->man, "load")) ? json_string_value(json_object_get(r->man, "load")) : "none",
         json_string_value(json_object_get(srv, "model")) ? json_string_value(json_object_get(srv, "model")) : "?", (long long)jnum(srv, "n_ctx"));
    if (r->load) {
        para(o, "Load results: %.1f requests/s, P50 %.1f ms, P99 %.1f ms, %.0f errors%s.", jnum(r->load, "summary.requests_per_sec"),
             jnum(r->load, "latency_ms.p50"), jnum(r->load, "latency_ms.p99"), jnum(r->load, "summary.errors"),
             json_is_object(json_object_get(r->load, "llm")) ? "" : "");
    }
    for (int i = 0; i < r->n_unavail; i++) para(o, "unavailable: %s", r->unavail[i]);
}

// The latency breakdown drawn: two stacked bars (median and tail request).
static void svg_latency(FILE *f, report *r) {
    static const char *colors[C_N] = {"#d62728", "#ff7f0e", "#bcbd22", "#17becf", "#1f77b4", "#9467bd"};
    int W = 900, bar = 28, x0 = 150, wmax = W - x0 - 20;
    double mx = r->at99[C_N] > r->at50[C_N] ? r->at99[C_N] : r->at50[C_N];
    if (mx <= 0) mx = 1;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif' font-size='12'>\n", W, 150);
    const double *rows[2] = {r->at50, r->at99};
    const char *labels[2] = {"median request", "P99 tail request"};
    for (int k = 0; k < 2; k++) {
        int y = 10 + k * (bar + 14);
        fprintf(f, "<text x='0' y='%d'>%s (%.1f ms)</text>\n", y + 18, labels[k], rows[k][C_N]);
        double x = x0;
        for (int c = 0; c < C_N; c++) {
            double w = rows[k][c] / mx * wmax;
            if (w <= 0) continue;
            fprintf(f, "<rect x='%.1f' y='%d' width='%.1f' height='%d' fill='%s'><title>%s: %.2f ms</title></rect>\n", x, y, w, bar, colors[c],
                    COMP_SHORT[c], rows[k][c]);
            x += w;
        }
    }
    for (int c = 0; c < C_N; c++)
        fprintf(f, "<rect x='%d' y='105' width='12' height='12' fill='%s'/><text x='%d' y='115'>%s</text>\n", 10 + c * 145, colors[c], 26 + c * 145, COMP_SHORT[c]);
    fputs("</svg>\n", f);
}

static void print_report(out *o, report *r) {
    if (o->fmt == REPORT_HTML) {
        fputs("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>llmscope report</title>\n<style>"
              "body{font-family:sans-serif;max-width:1250px;margin:1em auto;color:#222}"
              "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px;text-align:left}"
              "h3{margin-bottom:.2em}</style></head><body>\n", o->f);
    }
    heading(o, 1, "llmscope report");
    print_findings(o, r);
    if (o->fmt == REPORT_HTML && r->n_req) { heading(o, 2, "Latency breakdown (drawn)"); svg_latency(o->f, r); }
    print_latency(o, r);
    print_crosscheck(o, r);
    print_cpu(o, r);
    print_waits(o, r);
    print_heap(o, r);
    print_counters(o, r);
    print_roles(o, r);
    print_sources(o, r);
    if (o->fmt == REPORT_HTML) {
        if (r->all.t) {
            heading(o, 2, "CPU flame graph");
            flame_svg_opts fo = {.title = "CPU", .subtitle = "all threads, the capture's window", .unit = "ns"};
            flame_svg_write(r->all.t, &fo, o->f);
        }
        fputs("</body></html>\n", o->f);
    }
}

int report_run(const char *dir, report_format fmt, const char *out_path) {
    report *r = calloc(1, sizeof *r);
    if (!r) return 1;
    r->dir = dir;
    if (analyse(r)) { report_free(r); free(r); return 1; }
    FILE *f = out_path && strcmp(out_path, "-") ? fopen(out_path, "w") : stdout;
    if (!f) { fprintf(stderr, "llmscope report: cannot write %s: %s\n", out_path, strerror(errno)); report_free(r); free(r); return 1; }
    out o = {f, fmt};
    print_report(&o, r);
    int rc = 0;
    if (f != stdout) rc = fclose(f) ? 1 : 0;
    else fflush(stdout);
    report_free(r);
    free(r);
    return rc;
}

static void report_usage(FILE *f) {
    fprintf(f,
"usage: llmscope report DIR [--format text|md|html] [-o FILE]\n"
"\n"
"Reads a capture written by `llmscope collect` and writes ranked findings\n"
"(each naming the bottleneck, its share of CPU, wall time and P99 latency, the\n"
"sources that agree, a confidence and the proposed change), the cross-check\n"
"table, the latency breakdown by phase, top CPU functions per phase, top waits,\n"
"heap growth by site, per-phase IPC and CPU per thread role. --format html\n"
"writes one self-contained file with the flame graph and the breakdown drawn.\n");
}

int cmd_report(int argc, char **argv) {
    const char *dir = NULL, *outp = NULL;
    report_format fmt = REPORT_TEXT;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        bool missing = false;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { report_usage(stdout); return 0; }
        if (opt_value(argc, argv, &i, NULL, "--format", &v, &missing)) {
            if (missing) { fprintf(stderr, "llmscope report: --format needs a value\n"); return 2; }
            if (!strcmp(v, "text")) fmt = REPORT_TEXT;
            else if (!strcmp(v, "md") || !strcmp(v, "markdown")) fmt = REPORT_MD;
            else if (!strcmp(v, "html")) fmt = REPORT_HTML;
            else { fprintf(stderr, "llmscope report: --format must be text, md or html\n"); return 2; }
        } else if (opt_value(argc, argv, &i, "-o", "--output", &v, &missing)) {
            if (missing) { fprintf(stderr, "llmscope report: -o needs a value\n"); return 2; }
            outp = v;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "llmscope report: unknown flag '%s'\n", argv[i]);
            report_usage(stderr);
            return 2;
        } else if (!dir) dir = argv[i];
        else { fprintf(stderr, "llmscope report: one capture directory, please\n"); return 2; }
    }
    if (!dir) { report_usage(stderr); return 2; }
    return report_run(dir, fmt, outp);
}
