// pmu.c — per-thread perf_event_open counter groups charged to phases (see
// pmu.h). Each thread owns a pmu_thread: its counter groups, the readings at
// its previous boundary, its phase stack and its per-phase accumulators. Only
// the owner writes its accumulators (relaxed atomic stores, no lock); readers
// sum every live thread plus the totals folded in by threads that exited,
// under `g.mu`, which also guards the thread list, so a thread's state is
// never freed under a reader.
#include "pmu.h"

#include <errno.h>
#include <jansson.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "thread.h"

#define PMU_MAX_PHASES 32      // distinct phase names; later ones share "other"
#define PMU_MAX_ROLES 16       // distinct thread roles; later ones share "other"
#define PMU_DEPTH 8            // phase stack depth per thread
#define PMU_GROUP_MAX 8        // events per group

// What is accumulated per phase (and per role). Counts unless the name says
// otherwise; the hardware ones are scaled by enabled/running per interval.
enum {
    F_TASK_CLOCK_NS,
    F_CYCLES,
    F_INSTRUCTIONS,
    F_CACHE_REFS,
    F_CACHE_MISSES,
    F_BRANCHES,
    F_BRANCH_MISSES,
    F_LLC_LOAD_MISSES,
    F_CS,                  // context switches, voluntary + involuntary
    F_VCS,                 // voluntary (known per phase only when read from rusage)
    F_IVCS,                // involuntary
    F_MINFLT,
    F_MAJFLT,
    F_HW_ENABLED_NS,       // time the hardware group was enabled / actually counting
    F_HW_RUNNING_NS,
    F_MUX,                 // intervals in which the hardware group was multiplexed
    F_REGIONS,             // regions entered
    F_NF
};

typedef struct pmu_event_def {
    uint32_t type;
    uint64_t config;
    int field;
    const char *name;      // perf's name for it
} pmu_event_def;

#define LLC_LOAD_MISS (PERF_COUNT_HW_CACHE_LL | (PERF_COUNT_HW_CACHE_OP_READ << 8) | \
                       (PERF_COUNT_HW_CACHE_RESULT_MISS << 16))

// Hardware group, leader first. The tail is dropped, one event at a time,
// when the whole group cannot be scheduled on the PMU at once.
static const pmu_event_def hw_defs[] = {
    {PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES, F_CYCLES, "cycles"},
    {PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS, F_INSTRUCTIONS, "instructions"},
    {PERF_TYPE_HARDWARE, PERF_COUNT_HW_CACHE_REFERENCES, F_CACHE_REFS, "cache-references"},
    {PERF_TYPE_HARDWARE, PERF_COUNT_HW_CACHE_MISSES, F_CACHE_MISSES, "cache-misses"},
    {PERF_TYPE_HARDWARE, PERF_COUNT_HW_BRANCH_INSTRUCTIONS, F_BRANCHES, "branches"},
    {PERF_TYPE_HARDWARE, PERF_COUNT_HW_BRANCH_MISSES, F_BRANCH_MISSES, "branch-misses"},
    {PERF_TYPE_HW_CACHE, LLC_LOAD_MISS, F_LLC_LOAD_MISSES, "LLC-load-misses"},
};
#define N_HW_DEFS (int)(sizeof hw_defs / sizeof hw_defs[0])

// Software group, leader first. Context switches are counted in the kernel's
// scheduler, so a user-space-only event never sees one: when paranoid makes
// us exclude the kernel, they (and page faults) come from getrusage instead.
static const pmu_event_def sw_defs[] = {
    {PERF_TYPE_SOFTWARE, PERF_COUNT_SW_TASK_CLOCK, F_TASK_CLOCK_NS, "task-clock"},
    {PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES, F_CS, "context-switches"},
    {PERF_TYPE_SOFTWARE, PERF_COUNT_SW_PAGE_FAULTS_MIN, F_MINFLT, "minor-faults"},
    {PERF_TYPE_SOFTWARE, PERF_COUNT_SW_PAGE_FAULTS_MAJ, F_MAJFLT, "major-faults"},
};
#define N_SW_DEFS (int)(sizeof sw_defs / sizeof sw_defs[0])

// One open group of one thread, with the readings at the previous boundary.
typedef struct pmu_group {
    int n;                          // events open (0 = no group)
    int fd[PMU_GROUP_MAX];          // fd[0] is the leader
    uint64_t id[PMU_GROUP_MAX];     // kernel event ids (PERF_FORMAT_ID)
    int field[PMU_GROUP_MAX];       // F_* each event adds to
    uint64_t last[PMU_GROUP_MAX];   // raw value at the previous read
    uint64_t last_enabled_ns, last_running_ns;
} pmu_group;

// Per-phase accumulators of one thread. Written only by the owner.
typedef struct pmu_acc {
    _Atomic uint64_t v[F_NF];
} pmu_acc;

typedef struct pmu_thread {
    struct pmu_thread *next, *prev;     // g.threads, under g.mu
    pid_t tid;
    _Atomic int role;                   // index into g.roles (0 = "unregistered")
    pmu_group sw, hw;
    bool rusage;                        // context switches / faults from getrusage at boundaries
    bool thread_clock;                  // CPU time from CLOCK_THREAD_CPUTIME_ID (no task-clock)
    uint64_t last_cpu_ns;
    struct rusage last_ru;
    long base_nvcsw, base_nivcsw;       // at first use, for the per-role split
    int stack[PMU_DEPTH];               // phase indices; the top is current
    uint64_t total[F_NF];               // everything charged so far, all phases
    uint64_t at_enter[PMU_DEPTH][F_NF]; // `total` when each stacked region began
    pmu_region_counts last_region;      // the region the latest exit ended
    bool last_region_valid;
    int depth;
    int overflow;                       // enters beyond PMU_DEPTH not yet exited
    pmu_acc acc[PMU_MAX_PHASES];
} pmu_thread;

enum { INJ_NONE, INJ_EACCES, INJ_ENOSYS, INJ_KERNEL };
enum { ST_UNINIT, ST_OFF, ST_ON };

static struct {
    _Atomic int state;
    pthread_once_t once;
    pthread_key_t key;
    int inject;
    int paranoid;                       // /proc/sys/kernel/perf_event_paranoid, or -99
    // What the probe found.
    bool hw;
    pmu_event_def hw_defs[N_HW_DEFS];   // the hardware events this PMU counts, leader first
    int n_hw;                           // how many of them fit in one group
    bool hw_field[F_NF];                // F_* counted by the hardware group
    bool hw_user_only;
    bool sw_perf;                       // software group via perf_event_open
    bool sw_user_only;
    int n_sw;                           // leading sw_defs opened (1 = task-clock only)
    bool rusage;                        // boundaries also read getrusage
    char hw_why[256];
    char sw_why[256];
    char notes[256];                    // e.g. hardware events the PMU lacks
    _Atomic uint64_t open_failures;     // threads whose counters could not be opened
    _Atomic uint64_t unbalanced;        // pmu_phase_exit without a matching enter

    // Phase names: append-only; read without a lock.
    _Atomic int nphases;
    _Atomic(const char *) phase_key[PMU_MAX_PHASES];   // the caller's pointer
    char phase_name[PMU_MAX_PHASES][32];
    _Atomic uint64_t tokens[PMU_MAX_PHASES];

    pthread_mutex_t mu;                 // guards what follows and phase/role appends
    int nroles;
    char role_name[PMU_MAX_ROLES][PROF_NAME_LEN];
    pmu_thread *threads;
    // Totals of threads that exited.
    uint64_t exited_phase[PMU_MAX_PHASES][F_NF];
    uint64_t exited_role[PMU_MAX_ROLES][F_NF];
    uint32_t exited_threads[PMU_MAX_ROLES];
} g = {
    .once = PTHREAD_ONCE_INIT,
    .mu = PTHREAD_MUTEX_INITIALIZER,
};

static __thread pmu_thread *tls_t __attribute__((tls_model("initial-exec")));
static __thread int tls_dead __attribute__((tls_model("initial-exec")));   // destructor ran

// ---- opening events ----------------------------------------------------------------------------

static int sys_perf_open(const pmu_event_def *d, bool user_only, int group_fd) {
    if (g.inject == INJ_EACCES) { errno = EACCES; return -1; }
    if (g.inject == INJ_ENOSYS) { errno = ENOSYS; return -1; }
    if (g.inject == INJ_KERNEL && !user_only) { errno = EACCES; return -1; }
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = d->type;
    a.config = d->config;
    a.read_format = PERF_FORMAT_GROUP | PERF_FORMAT_TOTAL_TIME_ENABLED |
                    PERF_FORMAT_TOTAL_TIME_RUNNING | PERF_FORMAT_ID;
    a.exclude_kernel = user_only;
    a.exclude_hv = 1;
    a.disabled = 0;            // counts from open; the first read is the baseline
    a.inherit = 0;
    return (int)syscall(SYS_perf_event_open, &a, 0 /* this thread */, -1 /* any cpu */, group_fd,
                        PERF_FLAG_FD_CLOEXEC);
}

static void group_close(pmu_group *gp) {
    for (int i = gp->n - 1; i >= 0; i--) close(gp->fd[i]);
    gp->n = 0;
}

// Reads the group: nr, time_enabled, time_running, then {value, id} per event.
typedef struct group_read { uint64_t nr, enabled_ns, running_ns, v[2 * PMU_GROUP_MAX]; } group_read;

static bool group_read_raw(const pmu_group *gp, group_read *r) {
    ssize_t got = read(gp->fd[0], r, sizeof *r);
    if (got < (ssize_t)(3 * sizeof(uint64_t))) return false;
    size_t nr = ((size_t)got / sizeof(uint64_t) - 3) / 2;
    if (r->nr > nr) r->nr = nr;
    return true;
}

// The slot of the event with kernel id `id` (the i-th value read; usually slot i).
static int group_slot(const pmu_group *gp, uint64_t id, uint64_t i) {
    if (i < (uint64_t)gp->n && gp->id[i] == id) return (int)i;
    for (int k = 0; k < gp->n; k++)
        if (gp->id[k] == id) return k;
    return -1;
}

// Opens defs[0..n) as one group on the calling thread. Returns the event
// count opened (members the PMU lacks are skipped when skip_missing; the
// leader must open), 0 with errno set when the leader is refused.
static int group_open(pmu_group *gp, const pmu_event_def *defs, int n, bool user_only, bool skip_missing) {
    gp->n = 0;
    for (int i = 0; i < n && gp->n < PMU_GROUP_MAX; i++) {
        int fd = sys_perf_open(&defs[i], user_only, gp->n ? gp->fd[0] : -1);
        if (fd < 0) {
            if (gp->n == 0 || !skip_missing) { int e = errno; group_close(gp); errno = e; return 0; }
            continue;
        }
        uint64_t id = 0;
        if (ioctl(fd, PERF_EVENT_IOC_ID, &id) != 0) {
            int e = errno; close(fd); group_close(gp); errno = e; return 0;
        }
        gp->fd[gp->n] = fd;
        gp->id[gp->n] = id;
        gp->field[gp->n] = defs[i].field;
        gp->n++;
    }
    group_read r;
    if (gp->n && group_read_raw(gp, &r)) {     // baseline
        for (uint64_t i = 0; i < r.nr; i++) {
            int j = group_slot(gp, r.v[2 * i + 1], i);
            if (j >= 0) gp->last[j] = r.v[2 * i];
        }
        gp->last_enabled_ns = r.enabled_ns;
        gp->last_running_ns = r.running_ns;
    }
    return gp->n;
}

// Reads the group and adds to d[] what each event counted since the previous
// read, scaled by the interval's enabled/running time (libperf's rule: a
// counter that was multiplexed off the PMU for part of the interval is
// extrapolated over the whole of it). When `hw`, also the times themselves.
static void group_delta(pmu_group *gp, uint64_t d[F_NF], bool hw) {
    group_read r;
    if (!gp->n || !group_read_raw(gp, &r)) return;
    uint64_t den = r.enabled_ns - gp->last_enabled_ns;
    uint64_t drun = r.running_ns - gp->last_running_ns;
    gp->last_enabled_ns = r.enabled_ns;
    gp->last_running_ns = r.running_ns;
    for (uint64_t i = 0; i < r.nr; i++) {
        uint64_t val = r.v[2 * i], id = r.v[2 * i + 1];
        int j = group_slot(gp, id, i);
        if (j < 0) continue;
        uint64_t dv = val - gp->last[j];
        gp->last[j] = val;
        if (drun == den) d[gp->field[j]] += dv;
        else if (drun) d[gp->field[j]] += (uint64_t)((double)dv * (double)den / (double)drun);
        // drun == 0: the group never counted in this interval; nothing to scale.
    }
    if (hw) {
        d[F_HW_ENABLED_NS] += den;
        d[F_HW_RUNNING_NS] += drun;
        if (drun < den) d[F_MUX] += 1;
    }
}

// ---- probing -----------------------------------------------------------------------------------

static const char *errno_name(int e) {
    switch (e) {
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOSYS: return "ENOSYS";
    case ENODEV: return "ENODEV";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case EBUSY: return "EBUSY";
    default: return "errno";
    }
}

static const char *errno_meaning(int e) {
    switch (e) {
    case EACCES: case EPERM:
        return "not permitted (perf_event_paranoid too high for this user; CAP_PERFMON or a lower setting lifts it)";
    case ENOENT: case EOPNOTSUPP: case ENODEV:
        return "the CPU's PMU does not expose this event here (e.g. a VM without a virtual PMU)";
    case ENOSYS:
        return "perf_event_open is not available (seccomp filter, or a kernel without perf events)";
    case EMFILE: case ENFILE:
        return "out of file descriptors";
    default:
        return "refused";
    }
}

static void explain(char *buf, size_t cap, const char *what, int e) {
    snprintf(buf, cap, "%s: %s (%s): %s; perf_event_paranoid=%d", what, strerror(e), errno_name(e),
             errno_meaning(e), g.paranoid);
}

static int read_paranoid(void) {
    FILE *f = fopen("/proc/sys/kernel/perf_event_paranoid", "r");
    int v = -99;
    if (f) {
        if (fscanf(f, "%d", &v) != 1) v = -99;
        fclose(f);
    }
    return v;
}

// Opens a group, first counting the kernel too, then (when refused for
// permission, as paranoid >= 2 does) user space only.
static int group_open_any(pmu_group *gp, const pmu_event_def *defs, int n, bool *user_only, bool skip) {
    *user_only = false;
    int k = group_open(gp, defs, n, false, skip);
    if (k == 0 && (errno == EACCES || errno == EPERM)) {
        *user_only = true;
        k = group_open(gp, defs, n, true, skip);
    }
    return k;
}

static void spin_a_little(void) {
    volatile uint64_t x = 0;
    for (int i = 0; i < 200000; i++) x += (uint64_t)i * 2654435761u;
}

static void probe_hw(void) {
    pmu_group gp;
    bool user_only;
    if (!group_open_any(&gp, hw_defs, N_HW_DEFS, &user_only, true)) {
        explain(g.hw_why, sizeof g.hw_why, "hardware events refused: cycles", errno);
        return;
    }
    // Keep the events that opened, in order; name the ones the PMU lacks.
    char missing[128] = "";
    int n = 0;
    for (int i = 0; i < N_HW_DEFS; i++) {
        bool ok = false;
        for (int j = 0; j < gp.n; j++) ok |= gp.field[j] == hw_defs[i].field;
        if (ok) g.hw_defs[n++] = hw_defs[i];
        else snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s",
                      missing[0] ? ", " : "", hw_defs[i].name);
    }
    // A group larger than the PMU's free counters never runs: shrink until it does.
    int opened = n;
    for (;;) {
        spin_a_little();
        group_read r;
        bool ran = group_read_raw(&gp, &r) && r.running_ns > 0;
        group_close(&gp);
        if (ran) break;
        if (--n < 2) {
            snprintf(g.hw_why, sizeof g.hw_why,
                     "hardware events opened but never counted (the PMU's counters are all in use); "
                     "perf_event_paranoid=%d", g.paranoid);
            return;
        }
        if (!group_open(&gp, g.hw_defs, n, user_only, false)) {
            explain(g.hw_why, sizeof g.hw_why, "hardware events refused", errno);
            return;
        }
    }
    g.hw = true;
    g.n_hw = n;
    g.hw_user_only = user_only;
    for (int i = 0; i < n; i++) g.hw_field[g.hw_defs[i].field] = true;
    if (missing[0]) snprintf(g.notes, sizeof g.notes, "not counted on this PMU: %s", missing);
    if (n < opened) {
        size_t l = strlen(g.notes);
        snprintf(g.notes + l, sizeof g.notes - l, "%sgroup shrunk to %d events to fit the PMU",
                 l ? "; " : "", n);
    }
}

static void probe_sw(void) {
    pmu_group gp;
    bool user_only;
    if (!group_open_any(&gp, sw_defs, N_SW_DEFS, &user_only, false)) {
        int e = errno;
        explain(g.sw_why, sizeof g.sw_why, "perf_event_open refused (task-clock)", e);
        g.sw_perf = false;
        g.rusage = true;
        // Hardware can hardly work when software events are refused for the
        // same reason; say the real reason instead of probing again.
        if (e == EACCES || e == EPERM || e == ENOSYS) {
            explain(g.hw_why, sizeof g.hw_why, "perf_event_open refused", e);
            g.hw = false;
        }
        return;
    }
    group_close(&gp);
    g.sw_perf = true;
    g.sw_user_only = user_only;
    // User-space-only events never see a context switch: take those and the
    // page faults from getrusage at each boundary, and task-clock alone from perf.
    g.n_sw = user_only ? 1 : N_SW_DEFS;
    g.rusage = user_only;
    if (user_only)
        snprintf(g.sw_why, sizeof g.sw_why,
                 "user-space-only events (perf_event_paranoid=%d): context switches and page faults from getrusage",
                 g.paranoid);
}

static void thread_exit(void *p);

static void init_once(void) {
    g.paranoid = read_paranoid();
    const char *off = getenv("LLMSCOPE_PMU");
    if (off && (!strcmp(off, "off") || !strcmp(off, "0"))) {
        snprintf(g.hw_why, sizeof g.hw_why, "disabled by LLMSCOPE_PMU=off");
        snprintf(g.sw_why, sizeof g.sw_why, "disabled by LLMSCOPE_PMU=off");
        atomic_store(&g.state, ST_OFF);
        return;
    }
    const char *inj = getenv("LLMSCOPE_PMU_FAIL");
    if (inj && !strcmp(inj, "eacces")) g.inject = INJ_EACCES;
    else if (inj && !strcmp(inj, "enosys")) g.inject = INJ_ENOSYS;
    else if (inj && !strcmp(inj, "kernel")) g.inject = INJ_KERNEL;
    // Closes a thread's counters when it exits (not run for the main thread
    // at exit(): the kernel closes those fds then).
    if (pthread_key_create(&g.key, thread_exit) != 0) {
        snprintf(g.hw_why, sizeof g.hw_why, "disabled: no pthread key left for per-thread counters");
        snprintf(g.sw_why, sizeof g.sw_why, "%s", g.hw_why);
        atomic_store(&g.state, ST_OFF);
        return;
    }
    // Phase 0 is "none": time outside any region.
    snprintf(g.phase_name[0], sizeof g.phase_name[0], "none");
    atomic_store(&g.phase_key[0], NULL);
    atomic_store(&g.nphases, 1);
    snprintf(g.role_name[0], sizeof g.role_name[0], "unregistered");
    g.nroles = 1;
    probe_sw();
    if (!g.hw_why[0]) probe_hw();
    atomic_store(&g.state, ST_ON);
}

void pmu_init(void) {
    pthread_once(&g.once, init_once);
}

pmu_status pmu_get_status(void) {
    pmu_init();
    pmu_status s;
    memset(&s, 0, sizeof s);
    s.hardware = g.hw;
    s.software = atomic_load(&g.state) == ST_ON;
    snprintf(s.why, sizeof s.why, "%s", g.hw ? "" : g.hw_why);
    return s;
}

// ---- phases and roles --------------------------------------------------------------------------

// Index of a phase name, registering it on first sight (static strings are
// matched by pointer first, so the usual case is a short pointer scan).
static int phase_index(const char *phase) {
    if (!phase) return 0;
    int n = atomic_load_explicit(&g.nphases, memory_order_acquire);
    for (int i = 1; i < n; i++)
        if (atomic_load_explicit(&g.phase_key[i], memory_order_relaxed) == phase) return i;
    for (int i = 1; i < n; i++)
        if (!strcmp(g.phase_name[i], phase)) return i;
    pthread_mutex_lock(&g.mu);
    n = atomic_load_explicit(&g.nphases, memory_order_relaxed);
    int idx = -1;
    for (int i = 1; i < n && idx < 0; i++)
        if (!strcmp(g.phase_name[i], phase)) idx = i;
    if (idx < 0 && n < PMU_MAX_PHASES - 1) {
        idx = n;
        snprintf(g.phase_name[idx], sizeof g.phase_name[idx], "%s", phase);
        atomic_store_explicit(&g.phase_key[idx], phase, memory_order_relaxed);
        atomic_store_explicit(&g.nphases, n + 1, memory_order_release);
    } else if (idx < 0) {
        // Table full: everything else is "other", kept in the last slot.
        idx = PMU_MAX_PHASES - 1;
        if (n == PMU_MAX_PHASES - 1) {
            snprintf(g.phase_name[idx], sizeof g.phase_name[idx], "other");
            atomic_store_explicit(&g.nphases, PMU_MAX_PHASES, memory_order_release);
        }
    }
    pthread_mutex_unlock(&g.mu);
    return idx;
}

// Called with g.mu held.
static int role_index_locked(const char *role) {
    if (!role || !role[0]) return 0;
    for (int i = 1; i < g.nroles; i++)
        if (!strcmp(g.role_name[i], role)) return i;
    if (g.nroles < PMU_MAX_ROLES) {
        snprintf(g.role_name[g.nroles], sizeof g.role_name[0], "%s", role);
        return g.nroles++;
    }
    return PMU_MAX_ROLES - 1;
}

static void resolve_role(pmu_thread *t) {
    prof_thread *pt = prof_thread_self();
    if (!pt) return;
    pthread_mutex_lock(&g.mu);
    atomic_store_explicit(&t->role, role_index_locked(pt->role), memory_order_relaxed);
    pthread_mutex_unlock(&g.mu);
}

// ---- the calling thread's state ----------------------------------------------------------------

static void ru_read(struct rusage *ru) {
    if (getrusage(RUSAGE_THREAD, ru) != 0) memset(ru, 0, sizeof *ru);
}

static uint64_t thread_cpu_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static pmu_thread *thread_open(void) {
    pmu_thread *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->tid = (pid_t)syscall(SYS_gettid);
    if (g.sw_perf) {
        bool uo = g.sw_user_only;
        if (!group_open(&t->sw, sw_defs, g.n_sw, uo, false)) atomic_fetch_add(&g.open_failures, 1);
    }
    if (g.hw && !group_open(&t->hw, g.hw_defs, g.n_hw, g.hw_user_only, false))
        atomic_fetch_add(&g.open_failures, 1);
    t->thread_clock = t->sw.n == 0;
    t->rusage = g.rusage || t->sw.n == 0;
    if (t->thread_clock) t->last_cpu_ns = thread_cpu_ns();
    ru_read(&t->last_ru);
    t->base_nvcsw = t->last_ru.ru_nvcsw;
    t->base_nivcsw = t->last_ru.ru_nivcsw;
    pthread_mutex_lock(&g.mu);
    t->next = g.threads;
    if (g.threads) g.threads->prev = t;
    g.threads = t;
    pthread_mutex_unlock(&g.mu);
    resolve_role(t);
    pthread_setspecific(g.key, t);
    return t;
}

// Adds what ran since the previous boundary to the current phase.
static void thread_charge(pmu_thread *t) {
    uint64_t d[F_NF] = {0};
    group_delta(&t->sw, d, false);
    group_delta(&t->hw, d, true);
    if (t->thread_clock) {
        uint64_t now = thread_cpu_ns();
        d[F_TASK_CLOCK_NS] = now - t->last_cpu_ns;
        t->last_cpu_ns = now;
    }
    if (t->rusage) {
        struct rusage ru;
        ru_read(&ru);
        d[F_VCS] = (uint64_t)(ru.ru_nvcsw - t->last_ru.ru_nvcsw);
        d[F_IVCS] = (uint64_t)(ru.ru_nivcsw - t->last_ru.ru_nivcsw);
        d[F_CS] = d[F_VCS] + d[F_IVCS];
        d[F_MINFLT] = (uint64_t)(ru.ru_minflt - t->last_ru.ru_minflt);
        d[F_MAJFLT] = (uint64_t)(ru.ru_majflt - t->last_ru.ru_majflt);
        t->last_ru = ru;
    }
    int cur = t->depth ? t->stack[t->depth - 1] : 0;
    _Atomic uint64_t *v = t->acc[cur].v;
    for (int f = 0; f < F_NF; f++)
        if (d[f]) {
            atomic_store_explicit(&v[f], atomic_load_explicit(&v[f], memory_order_relaxed) + d[f],
                                  memory_order_relaxed);
            t->total[f] += d[f];
        }
}

static pmu_thread *thread_self(void) {
    pmu_thread *t = tls_t;
    if (t) return t;
    if (tls_dead) return NULL;
    int s = atomic_load_explicit(&g.state, memory_order_acquire);
    if (s == ST_UNINIT) { pmu_init(); s = atomic_load(&g.state); }
    if (s != ST_ON) return NULL;
    tls_t = t = thread_open();
    if (!t) tls_dead = 1;
    return t;
}

// Per-role voluntary/involuntary split of a live thread since its first use:
// from the per-phase sums when boundaries read rusage, else from /proc.
static void thread_cs_split(const pmu_thread *t, uint64_t *vcs, uint64_t *ivcs) {
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)t->tid);
    FILE *f = fopen(path, "r");
    *vcs = *ivcs = 0;
    if (!f) return;
    long v = -1, iv = -1;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1) continue;
        if (sscanf(line, "nonvoluntary_ctxt_switches: %ld", &iv) == 1) continue;
    }
    fclose(f);
    if (v >= t->base_nvcsw) *vcs = (uint64_t)(v - t->base_nvcsw);
    if (iv >= t->base_nivcsw) *ivcs = (uint64_t)(iv - t->base_nivcsw);
}

// Thread exit (pthread key destructor, on the exiting thread): charge the
// last interval, fold the totals into the exited accumulators, close the fds.
static void thread_exit(void *p) {
    pmu_thread *t = p;
    if (!t) return;
    thread_charge(t);
    struct rusage ru;
    ru_read(&ru);
    pthread_mutex_lock(&g.mu);
    int role = atomic_load_explicit(&t->role, memory_order_relaxed);
    for (int ph = 0; ph < PMU_MAX_PHASES; ph++)
        for (int f = 0; f < F_NF; f++) {
            uint64_t x = atomic_load_explicit(&t->acc[ph].v[f], memory_order_relaxed);
            g.exited_phase[ph][f] += x;
            g.exited_role[role][f] += x;
        }
    if (!t->rusage) {
        g.exited_role[role][F_VCS] += (uint64_t)(ru.ru_nvcsw - t->base_nvcsw);
        g.exited_role[role][F_IVCS] += (uint64_t)(ru.ru_nivcsw - t->base_nivcsw);
    }
    g.exited_threads[role]++;
    if (t->prev) t->prev->next = t->next;
    else g.threads = t->next;
    if (t->next) t->next->prev = t->prev;
    pthread_mutex_unlock(&g.mu);
    group_close(&t->hw);
    group_close(&t->sw);
    free(t);
    tls_t = NULL;
    tls_dead = 1;
}

// ---- boundaries --------------------------------------------------------------------------------

void pmu_phase_enter(const char *phase) {
    if (atomic_load_explicit(&g.state, memory_order_relaxed) == ST_OFF) return;
    pmu_thread *t = thread_self();
    if (!t) return;
    thread_charge(t);
    int idx = phase_index(phase);
    // A thread may register with the registry after its first boundary.
    if (atomic_load_explicit(&t->role, memory_order_relaxed) == 0 && prof_thread_self()) resolve_role(t);
    if (t->depth < PMU_DEPTH) {
        memcpy(t->at_enter[t->depth], t->total, sizeof t->total);
        t->stack[t->depth++] = idx;
    } else {
        t->overflow++;
    }
    _Atomic uint64_t *r = &t->acc[idx].v[F_REGIONS];
    atomic_store_explicit(r, atomic_load_explicit(r, memory_order_relaxed) + 1, memory_order_relaxed);
}

void pmu_phase_exit(const char *phase) {
    (void)phase;
    if (atomic_load_explicit(&g.state, memory_order_relaxed) == ST_OFF) return;
    pmu_thread *t = thread_self();
    if (!t) return;
    thread_charge(t);
    t->last_region_valid = false;
    if (t->overflow) {
        t->overflow--;
    } else if (t->depth) {
        t->depth--;
        const uint64_t *a = t->at_enter[t->depth], *b = t->total;
        t->last_region = (pmu_region_counts){
            .task_clock_ns = b[F_TASK_CLOCK_NS] - a[F_TASK_CLOCK_NS],
            .cycles = b[F_CYCLES] - a[F_CYCLES],
            .instructions = b[F_INSTRUCTIONS] - a[F_INSTRUCTIONS],
            .context_switches = b[F_CS] - a[F_CS],
            .page_faults = b[F_MINFLT] + b[F_MAJFLT] - a[F_MINFLT] - a[F_MAJFLT],
            .hardware = t->hw.n > 0,
        };
        t->last_region_valid = true;
    } else {
        atomic_fetch_add_explicit(&g.unbalanced, 1, memory_order_relaxed);
    }
}

bool pmu_last_region(pmu_region_counts *out) {
    pmu_thread *t = tls_t;
    if (!t || !t->last_region_valid) return false;
    *out = t->last_region;
    return true;
}

void pmu_add_tokens(const char *phase, uint64_t n) {
    pmu_init();
    if (atomic_load(&g.state) != ST_ON) return;
    atomic_fetch_add_explicit(&g.tokens[phase_index(phase)], n, memory_order_relaxed);
}

// ---- readers -----------------------------------------------------------------------------------

// Totals over every thread, live and exited.
typedef struct pmu_snap {
    int nphases, nroles;
    uint64_t phase[PMU_MAX_PHASES][F_NF];
    uint64_t tokens[PMU_MAX_PHASES];
    uint64_t role[PMU_MAX_ROLES][F_NF];
    uint32_t live[PMU_MAX_ROLES], exited[PMU_MAX_ROLES];
} pmu_snap;

static void snap_take(pmu_snap *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&g.mu);
    memcpy(s->phase, g.exited_phase, sizeof s->phase);
    memcpy(s->role, g.exited_role, sizeof s->role);
    memcpy(s->exited, g.exited_threads, sizeof s->exited);
    for (pmu_thread *t = g.threads; t; t = t->next) {
        int r = atomic_load_explicit(&t->role, memory_order_relaxed);
        for (int ph = 0; ph < PMU_MAX_PHASES; ph++)
            for (int f = 0; f < F_NF; f++) {
                uint64_t x = atomic_load_explicit(&t->acc[ph].v[f], memory_order_relaxed);
                s->phase[ph][f] += x;
                s->role[r][f] += x;
            }
        if (!t->rusage) {
            uint64_t v, iv;
            thread_cs_split(t, &v, &iv);
            s->role[r][F_VCS] += v;
            s->role[r][F_IVCS] += iv;
        }
        s->live[r]++;
    }
    s->nroles = g.nroles;
    pthread_mutex_unlock(&g.mu);
    s->nphases = atomic_load_explicit(&g.nphases, memory_order_acquire);
    for (int ph = 0; ph < PMU_MAX_PHASES; ph++)
        s->tokens[ph] = atomic_load_explicit(&g.tokens[ph], memory_order_relaxed);
}

// b -= a, counter by counter (live-thread counts stay b's).
static void snap_sub(pmu_snap *b, const pmu_snap *a) {
    for (int ph = 0; ph < PMU_MAX_PHASES; ph++) {
        for (int f = 0; f < F_NF; f++) b->phase[ph][f] -= a->phase[ph][f];
        b->tokens[ph] -= a->tokens[ph];
    }
    for (int r = 0; r < PMU_MAX_ROLES; r++) {
        for (int f = 0; f < F_NF; f++) b->role[r][f] -= a->role[r][f];
        b->exited[r] -= a->exited[r];
    }
}

static const char *software_mode(void) {
    if (atomic_load(&g.state) != ST_ON) return "off";
    if (!g.sw_perf) return "rusage";
    return g.rusage ? "perf_event+rusage" : "perf_event";
}

static json_t *json_u64(uint64_t v) { return json_integer((json_int_t)(v > INT64_MAX ? INT64_MAX : v)); }
static json_t *json_ratio(uint64_t a, uint64_t b, double mul) {
    return b ? json_real((double)a * mul / (double)b) : json_null();
}
static json_t *hw_u64(const uint64_t *v, int f) { return g.hw && g.hw_field[f] ? json_u64(v[f]) : json_null(); }
static json_t *hw_ratio(const uint64_t *v, int fa, int fb, double mul) {
    return g.hw && g.hw_field[fa] && g.hw_field[fb] ? json_ratio(v[fa], v[fb], mul) : json_null();
}

// The figures of one phase or role.
static json_t *figures_json(const uint64_t *v, bool split_known) {
    json_t *o = json_object();
    json_object_set_new(o, "task_clock_ns", json_u64(v[F_TASK_CLOCK_NS]));
    json_object_set_new(o, "cycles", hw_u64(v, F_CYCLES));
    json_object_set_new(o, "instructions", hw_u64(v, F_INSTRUCTIONS));
    json_object_set_new(o, "ipc", hw_ratio(v, F_INSTRUCTIONS, F_CYCLES, 1));
    json_object_set_new(o, "cache_references", hw_u64(v, F_CACHE_REFS));
    json_object_set_new(o, "cache_misses", hw_u64(v, F_CACHE_MISSES));
    json_object_set_new(o, "cache_miss_rate", hw_ratio(v, F_CACHE_MISSES, F_CACHE_REFS, 1));
    json_object_set_new(o, "mpki", hw_ratio(v, F_CACHE_MISSES, F_INSTRUCTIONS, 1000));
    json_object_set_new(o, "llc_load_misses", hw_u64(v, F_LLC_LOAD_MISSES));
    json_object_set_new(o, "branches", hw_u64(v, F_BRANCHES));
    json_object_set_new(o, "branch_misses", hw_u64(v, F_BRANCH_MISSES));
    json_object_set_new(o, "branch_miss_rate", hw_ratio(v, F_BRANCH_MISSES, F_BRANCHES, 1));
    json_object_set_new(o, "context_switches", json_u64(v[F_CS]));
    json_object_set_new(o, "voluntary_context_switches", split_known ? json_u64(v[F_VCS]) : json_null());
    json_object_set_new(o, "involuntary_context_switches", split_known ? json_u64(v[F_IVCS]) : json_null());
    json_object_set_new(o, "page_faults", json_u64(v[F_MINFLT] + v[F_MAJFLT]));
    json_object_set_new(o, "minor_faults", json_u64(v[F_MINFLT]));
    json_object_set_new(o, "major_faults", json_u64(v[F_MAJFLT]));
    json_object_set_new(o, "regions", json_u64(v[F_REGIONS]));
    json_object_set_new(o, "multiplexed", json_boolean(g.hw && v[F_MUX] > 0));
    json_object_set_new(o, "hw_running_fraction",
                        g.hw ? json_ratio(v[F_HW_RUNNING_NS], v[F_HW_ENABLED_NS], 1) : json_null());
    return o;
}

static json_t *names_json(const pmu_event_def *defs, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_string(defs[i].name));
    return a;
}

char *pmu_counters_json(int seconds, size_t *len) {
    pmu_init();
    pmu_snap *s = malloc(sizeof *s);
    if (!s) return NULL;
    snap_take(s);
    if (seconds > 0) {
        pmu_snap *a = s;
        s = malloc(sizeof *s);
        if (!s) { free(a); return NULL; }
        struct timespec ts = {.tv_sec = seconds};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
        snap_take(s);
        snap_sub(s, a);
        free(a);
    }
    bool on = atomic_load(&g.state) == ST_ON;
    json_t *o = json_object();
    json_object_set_new(o, "hardware", json_string(g.hw ? "available" : "unavailable"));
    json_object_set_new(o, "reason", g.hw ? (g.notes[0] ? json_string(g.notes) : json_null()) : json_string(g.hw_why));
    json_object_set_new(o, "software", json_string(software_mode()));
    json_object_set_new(o, "software_reason", g.sw_why[0] ? json_string(g.sw_why) : json_null());
    json_object_set_new(o, "perf_event_paranoid", g.paranoid == -99 ? json_null() : json_integer(g.paranoid));
    json_object_set_new(o, "exclude_kernel", json_boolean(g.hw ? g.hw_user_only : g.sw_user_only));
    json_object_set_new(o, "hardware_events", names_json(g.hw_defs, g.hw ? g.n_hw : 0));
    json_object_set_new(o, "software_events", names_json(sw_defs, on && g.sw_perf ? g.n_sw : 0));
    json_object_set_new(o, "window_seconds", json_integer(seconds > 0 ? seconds : 0));
    json_object_set_new(o, "counter_open_failures", json_u64(atomic_load(&g.open_failures)));
    json_object_set_new(o, "unbalanced_exits", json_u64(atomic_load(&g.unbalanced)));
    // The voluntary/involuntary split per phase exists only when every
    // boundary reads getrusage; per thread role it always does.
    bool split = on && g.rusage;
    json_t *phases = json_object();
    for (int ph = 0; on && ph < s->nphases; ph++) {
        json_t *p = figures_json(s->phase[ph], split);
        uint64_t tok = s->tokens[ph];
        json_object_set_new(p, "tokens", json_u64(tok));
        json_object_set_new(p, "cpu_ns_per_token", json_ratio(s->phase[ph][F_TASK_CLOCK_NS], tok, 1));
        json_object_set_new(phases, g.phase_name[ph], p);
    }
    json_object_set_new(o, "phases", phases);
    json_t *roles = json_object();
    for (int r = 0; on && r < s->nroles; r++) {
        if (!s->live[r] && !s->exited[r]) continue;
        json_t *p = figures_json(s->role[r], true);
        json_object_set_new(p, "threads", json_integer(s->live[r]));
        json_object_set_new(p, "exited", json_integer(s->exited[r]));
        json_object_set_new(roles, g.role_name[r], p);
    }
    json_object_set_new(o, "threads", roles);
    free(s);
    char *out = json_dumps(o, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (out && len) *len = strlen(out);
    return out;
}

// A Prometheus label value: backslash, quote and newline escaped.
static void prom_label(FILE *f, const char *v) {
    for (; *v; v++) {
        if (*v == '\\' || *v == '"') fputc('\\', f), fputc(*v, f);
        else if (*v == '\n') fputs("\\n", f);
        else fputc(*v, f);
    }
}

// One metric family over the phases: v[fa] (+ v[fa2]) times mul, divided by
// v[fb] when fb >= 0 (phases where v[fb] is 0 are left out).
static void prom_family(FILE *f, const pmu_snap *s, const char *name, const char *type, const char *help,
                        int fa, int fa2, int fb, double mul, bool hw_only) {
    if (hw_only && !(g.hw && g.hw_field[fa] && g.hw_field[fb])) return;
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (int ph = 0; ph < s->nphases; ph++) {
        const uint64_t *v = s->phase[ph];
        double x = (double)(v[fa] + (fa2 >= 0 ? v[fa2] : 0)) * mul;
        if (fb >= 0) {
            if (!v[fb]) continue;
            x /= (double)v[fb];
        }
        fprintf(f, "%s{phase=\"", name);
        prom_label(f, g.phase_name[ph]);
        fprintf(f, "\"} %.9g\n", x);
    }
}

char *pmu_prometheus(size_t *len) {
    pmu_init();
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return NULL;
    fprintf(f, "# HELP llmscope_pmu_hardware_available 1 when hardware performance counters are counted.\n"
               "# TYPE llmscope_pmu_hardware_available gauge\n"
               "llmscope_pmu_hardware_available %d\n", g.hw ? 1 : 0);
    if (atomic_load(&g.state) == ST_ON) {
        pmu_snap *s = malloc(sizeof *s);
        if (s) {
            snap_take(s);
            prom_family(f, s, "llmscope_phase_cpu_seconds_total", "counter",
                        "CPU time of all threads while in the phase.", F_TASK_CLOCK_NS, -1, -1, 1e-9, false);
            prom_family(f, s, "llmscope_phase_regions_total", "counter",
                        "Regions of the phase entered.", F_REGIONS, -1, -1, 1, false);
            prom_family(f, s, "llmscope_phase_context_switches_total", "counter",
                        "Context switches while in the phase.", F_CS, -1, -1, 1, false);
            prom_family(f, s, "llmscope_phase_page_faults_total", "counter",
                        "Minor and major page faults while in the phase.", F_MINFLT, F_MAJFLT, -1, 1, false);
            prom_family(f, s, "llmscope_phase_ipc", "gauge",
                        "Instructions per cycle in the phase since start.", F_INSTRUCTIONS, -1, F_CYCLES, 1, true);
            prom_family(f, s, "llmscope_phase_cache_miss_rate", "gauge",
                        "Cache misses per cache reference in the phase since start.",
                        F_CACHE_MISSES, -1, F_CACHE_REFS, 1, true);
            prom_family(f, s, "llmscope_phase_mpki", "gauge",
                        "Cache misses per thousand instructions in the phase since start.",
                        F_CACHE_MISSES, -1, F_INSTRUCTIONS, 1000, true);
            free(s);
        }
    }
    if (fclose(f) != 0) { free(buf); return NULL; }
    if (len) *len = n;
    return buf;
}
