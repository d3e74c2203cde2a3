// test_pmu.c — per-phase counters: CPU time lands in the phase that burned
// it, sleeps show as context switches, fresh pages as page faults; the JSON
// says hardware available exactly when a direct perf_event_open of
// instructions succeeds; ?seconds windows are deltas; exiting threads close
// their fds and keep their totals; refusal (injected EACCES, a real seccomp
// filter returning ENOSYS, kernel-inclusive events refused) falls back to
// rusage and says why; LLMSCOPE_PMU=off turns everything off.
//
// `test_pmu --bench` prints the cost of one pmu_phase_enter+exit pair with
// the counters on (perf_event), with the rusage fallback, and off.
#include <errno.h>
#include <dirent.h>
#include <jansson.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/perf_event.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "prof/pmu.h"
#include "prof/thread.h"

static uint64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// Burns `ms` of this thread's CPU time (not wall time: the machine may be busy).
static volatile uint64_t sink;
static void burn_cpu_ms(int ms) {
    uint64_t end = cpu_ns() + (uint64_t)ms * 1000000u, x = sink;
    while (cpu_ns() < end)
        for (int i = 0; i < 10000; i++) x = x * 6364136223846793005u + 1442695040888963407u;
    sink = x;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

// Touches n fresh pages (4 KiB, no huge pages), one minor fault each.
static void touch_fresh_pages(size_t n) {
    size_t len = n * 4096;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    madvise(p, len, MADV_NOHUGEPAGE);
    for (size_t i = 0; i < len; i += 4096) p[i] = (char)i;
    munmap(p, len);
}

static json_t *counters(int seconds) {
    size_t len = 0;
    char *s = pmu_counters_json(seconds, &len);
    if (!s) return NULL;
    json_error_t err;
    json_t *j = json_loadb(s, len, 0, &err);
    if (!j) fprintf(stderr, "  bad JSON: %s: %s\n", err.text, s);
    free(s);
    return j;
}

static json_t *phase(json_t *j, const char *name) { return json_object_get(json_object_get(j, "phases"), name); }

static int64_t num(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

// ---- the common workload ----------------------------------------------------------------------

// A registered thread that works in "work", sleeps in "idle" and faults in
// "touch", then exits (its totals fold into the exited accumulators).
static void *workload(void *arg) {
    (void)arg;
    prof_thread_register("pmu-worker", "pmutest");
    pmu_phase_enter("work");
    burn_cpu_ms(100);
    pmu_phase_exit("work");
    pmu_phase_enter("idle");
    for (int i = 0; i < 10; i++) sleep_ms(10);
    pmu_phase_exit("idle");
    pmu_phase_enter("touch");
    touch_fresh_pages(4096);       // 16 MiB
    pmu_phase_exit("touch");
    prof_thread_unregister();
    return NULL;
}

static void run_workload(void) {
    pthread_t th;
    if (pthread_create(&th, NULL, workload, NULL) == 0) pthread_join(th, NULL);
}

// What must hold in every mode where counting is on.
static void check_workload(json_t *j) {
    json_t *work = phase(j, "work"), *idle = phase(j, "idle"), *touch = phase(j, "touch");
    REQUIRE(work && idle && touch);
    int64_t wt = num(work, "task_clock_ns"), it = num(idle, "task_clock_ns");
    CHECKF(wt >= 90000000, "work task_clock_ns %lld", (long long)wt);
    CHECKF(wt < 2000000000, "work task_clock_ns %lld", (long long)wt);
    CHECKF(it >= 0 && it < 20000000 && it * 5 < wt, "idle task_clock_ns %lld (work %lld)", (long long)it, (long long)wt);
    int64_t cs = num(idle, "context_switches");
    // Ten sleeps, ten voluntary switches; one may be counted on the far side
    // of a phase boundary when the read races the switch.
    CHECKF(cs >= 9, "idle context_switches %lld", (long long)cs);
    int64_t pf = num(touch, "page_faults");
    CHECKF(pf >= 4000, "touch page_faults %lld", (long long)pf);
    CHECKF(num(work, "page_faults") < pf / 4, "work page_faults %lld", (long long)num(work, "page_faults"));
    CHECK(num(work, "regions") == 1 && num(idle, "regions") == 1 && num(touch, "regions") == 1);
    json_t *role = json_object_get(json_object_get(j, "threads"), "pmutest");
    REQUIRE(role);
    CHECK(num(role, "exited") >= 1);
    CHECK(num(role, "task_clock_ns") >= wt);
    CHECKF(num(role, "voluntary_context_switches") >= 10, "role voluntary %lld",
           (long long)num(role, "voluntary_context_switches"));
}

// ---- tests in this process ---------------------------------------------------------------------

// A direct probe of the instructions event, as an unprivileged user may open it.
static bool hw_instructions_open(void) {
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = PERF_TYPE_HARDWARE;
    a.config = PERF_COUNT_HW_INSTRUCTIONS;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    int fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd >= 0) close(fd);
    return fd >= 0;
}

static void test_work_idle_touch(void) {
    run_workload();
    json_t *j = counters(0);
    REQUIRE(j);
    check_workload(j);
    const char *sw = json_string_value(json_object_get(j, "software"));
    CHECKF(sw && !strncmp(sw, "perf_event", 10), "software %s", sw ? sw : "(null)");
    fprintf(stderr, "  pmu: hardware %s, software %s; work %.1f ms CPU, idle %.1f ms and %lld switches, touch %lld faults\n",
            json_string_value(json_object_get(j, "hardware")), sw ? sw : "?",
            (double)num(phase(j, "work"), "task_clock_ns") / 1e6, (double)num(phase(j, "idle"), "task_clock_ns") / 1e6,
            (long long)num(phase(j, "idle"), "context_switches"), (long long)num(phase(j, "touch"), "page_faults"));
    json_decref(j);
}

static void test_hardware_reported_truthfully(void) {
    bool direct = hw_instructions_open();
    pmu_status st = pmu_get_status();
    json_t *j = counters(0);
    REQUIRE(j);
    const char *hw = json_string_value(json_object_get(j, "hardware"));
    REQUIRE(hw);
    CHECKF(!strcmp(hw, direct ? "available" : "unavailable"), "hardware %s, direct probe %d", hw, direct);
    CHECK(st.hardware == direct);
    CHECK(st.software);
    json_t *work = phase(j, "work");
    REQUIRE(work);
    if (direct) {
        CHECK(num(work, "instructions") > 0 && num(work, "cycles") > 0);
        CHECK(json_is_real(json_object_get(work, "ipc")));
        CHECK(st.why[0] == 0);
    } else {
        const char *why = json_string_value(json_object_get(j, "reason"));
        CHECKF(why && strstr(why, "perf_event_paranoid="), "reason %s", why ? why : "(null)");
        CHECK(st.why[0] && strstr(st.why, "perf_event_paranoid="));
        CHECK(json_is_null(json_object_get(work, "instructions")));
        CHECK(json_is_null(json_object_get(work, "ipc")));
        CHECK(json_is_null(json_object_get(work, "cache_miss_rate")));
        CHECK(json_is_null(json_object_get(work, "mpki")));
        CHECK(json_object_get(work, "multiplexed") == json_false());
    }
    json_decref(j);
}

static atomic_int ticker_stop, ticker_regions;
static void *ticker(void *arg) {
    (void)arg;
    while (!atomic_load(&ticker_stop)) {
        pmu_phase_enter("during");
        burn_cpu_ms(1);
        pmu_phase_exit("during");
        atomic_fetch_add(&ticker_regions, 1);
    }
    return NULL;
}

// Waits until the ticker has ended n more regions (it may be starved of CPU).
static void ticker_wait(int n) {
    int until = atomic_load(&ticker_regions) + n;
    while (atomic_load(&ticker_regions) < until) sleep_ms(1);
}

// ?seconds=N: what happened in the window, not since start.
static void test_seconds_is_a_delta(void) {
    pmu_phase_enter("before");
    burn_cpu_ms(50);
    pmu_phase_exit("before");
    atomic_store(&ticker_stop, 0);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, ticker, NULL) == 0);
    ticker_wait(5);            // regions before the window…
    uint64_t t0 = mono_ns();
    json_t *d = counters(1);
    uint64_t wall = mono_ns() - t0;
    ticker_wait(5);            // …and after it
    atomic_store(&ticker_stop, 1);
    pthread_join(th, NULL);
    json_t *c = counters(0);
    REQUIRE(d && c);
    CHECK(wall >= 1000000000u);
    CHECK(num(d, "window_seconds") == 1 && num(c, "window_seconds") == 0);
    CHECKF(num(phase(d, "before"), "task_clock_ns") == 0, "before in window %lld",
           (long long)num(phase(d, "before"), "task_clock_ns"));
    CHECK(num(phase(d, "before"), "regions") == 0);
    CHECK(num(phase(c, "before"), "task_clock_ns") >= 45000000);
    int64_t dd = num(phase(d, "during"), "task_clock_ns"), cd = num(phase(c, "during"), "task_clock_ns");
    int64_t dr = num(phase(d, "during"), "regions"), cr = num(phase(c, "during"), "regions");
    // One thread cannot burn more than the window's wall time (+ one region in flight).
    CHECKF(dd > 0 && (uint64_t)dd <= wall + 20000000u, "during in window %lld, wall %llu", (long long)dd,
           (unsigned long long)wall);
    CHECKF(cd > dd, "during cumulative %lld vs window %lld", (long long)cd, (long long)dd);
    CHECKF(dr > 0 && dr < cr, "regions window %lld cumulative %lld", (long long)dr, (long long)cr);
    json_decref(d);
    json_decref(c);
}

static void test_tokens_and_nesting(void) {
    pmu_phase_enter("outer");
    burn_cpu_ms(5);
    pmu_phase_enter("inner");
    burn_cpu_ms(20);
    pmu_phase_exit("inner");
    burn_cpu_ms(5);
    pmu_phase_exit("outer");
    pmu_add_tokens("inner", 4);
    // Deeper than the stack: charged to the 8th level, and unwound exactly.
    for (int i = 0; i < 12; i++) pmu_phase_enter("deep");
    for (int i = 0; i < 12; i++) pmu_phase_exit("deep");
    pmu_phase_enter("after-deep");
    burn_cpu_ms(5);
    pmu_phase_exit("after-deep");
    json_t *j = counters(0);
    REQUIRE(j);
    json_t *in = phase(j, "inner"), *out = phase(j, "outer");
    REQUIRE(in && out);
    int64_t ti = num(in, "task_clock_ns"), to = num(out, "task_clock_ns");
    CHECKF(ti >= 18000000 && to >= 9000000 && to < ti, "inner %lld outer %lld", (long long)ti, (long long)to);
    CHECK(num(in, "tokens") == 4);
    json_t *per = json_object_get(in, "cpu_ns_per_token");
    CHECK(json_is_real(per) && fabs(json_real_value(per) - (double)ti / 4) < 1);
    CHECK(json_is_null(json_object_get(out, "cpu_ns_per_token")));
    CHECK(num(phase(j, "deep"), "regions") == 12);
    CHECK(num(phase(j, "after-deep"), "task_clock_ns") >= 4500000);
    CHECK(num(j, "unbalanced_exits") == 0);
    json_decref(j);
}

// pmu_last_region: what the region just ended ran, nested regions included.
static void test_last_region(void) {
    pmu_region_counts rc;
    pmu_phase_enter("reg-outer");
    burn_cpu_ms(20);
    const uint64_t w0 = mono_ns();
    pmu_phase_enter("reg-inner");
    burn_cpu_ms(10);
    pmu_phase_exit("reg-inner");
    const uint64_t inner_wall = mono_ns() - w0;
    REQUIRE(pmu_last_region(&rc));
    // The inner region holds its own 10 ms, not the outer's 20 before it. The
    // upper bound is the wall time it took, not 20 ms: perf's task-clock also
    // counts time a hypervisor steals from a running vCPU, which the thread
    // CPU clock that paces burn_cpu_ms() leaves out (30 ms once in CI).
    CHECKF(rc.task_clock_ns >= 9000000 && rc.task_clock_ns <= inner_wall, "inner %llu, in %llu ns of wall time",
           (unsigned long long)rc.task_clock_ns, (unsigned long long)inner_wall);
    pmu_phase_exit("reg-outer");
    REQUIRE(pmu_last_region(&rc));
    CHECKF(rc.task_clock_ns >= 29000000, "outer %llu", (unsigned long long)rc.task_clock_ns);
    CHECK(rc.hardware == pmu_get_status().hardware);
    CHECK(rc.hardware ? rc.instructions > 0 : rc.instructions == 0);
    pmu_phase_enter("reg-touch");
    touch_fresh_pages(256);
    pmu_phase_exit("reg-touch");
    REQUIRE(pmu_last_region(&rc));
    CHECKF(rc.page_faults >= 250, "faults %llu", (unsigned long long)rc.page_faults);
    pmu_phase_exit(NULL);                      // nothing to exit: counted, no region
    CHECK(!pmu_last_region(&rc));
    json_t *j = counters(0);
    CHECK(j && num(j, "unbalanced_exits") == 1);
    json_decref(j);
}

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void *short_lived(void *arg) {
    (void)arg;
    prof_thread_register("pmu-short", "pmushort");
    pmu_phase_enter("short");
    volatile uint64_t work = 0;   // thread-local work (a shared counter would be a race)
    for (int i = 0; i < 1000; i++) work += (uint64_t)i;
    pmu_phase_exit("short");
    prof_thread_unregister();
    return NULL;
}

static void test_exiting_threads_close_fds(void) {
    int before = count_fds();
    for (int round = 0; round < 50; round++) {
        pthread_t th[4];
        for (int i = 0; i < 4; i++) REQUIRE(pthread_create(&th[i], NULL, short_lived, NULL) == 0);
        for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    }
    int after = count_fds();
    CHECKF(before > 0 && after == before, "fds before %d after %d", before, after);
    json_t *j = counters(0);
    REQUIRE(j);
    json_t *role = json_object_get(json_object_get(j, "threads"), "pmushort");
    REQUIRE(role);
    CHECK(num(role, "exited") == 200 && num(role, "threads") == 0);
    CHECK(num(phase(j, "short"), "regions") == 200);
    CHECK(num(j, "counter_open_failures") == 0);
    json_decref(j);
}

static void test_prometheus(void) {
    size_t len = 0;
    char *t = pmu_prometheus(&len);
    REQUIRE(t);
    CHECK(len == strlen(t));
    char want[64];
    snprintf(want, sizeof want, "llmscope_pmu_hardware_available %d\n", pmu_get_status().hardware ? 1 : 0);
    CHECK(strstr(t, want) != NULL);
    CHECK(strstr(t, "# TYPE llmscope_phase_cpu_seconds_total counter\n") != NULL);
    CHECK(strstr(t, "llmscope_phase_cpu_seconds_total{phase=\"work\"} ") != NULL);
    CHECK((strstr(t, "llmscope_phase_ipc{phase=\"work\"}") != NULL) == pmu_get_status().hardware);
    // promtool, where installed, must accept it.
    if (access("/usr/bin/promtool", X_OK) == 0 || access("/usr/local/bin/promtool", X_OK) == 0) {
        FILE *p = popen("promtool check metrics >/dev/null 2>&1", "w");
        REQUIRE(p);
        fwrite(t, 1, len, p);
        CHECK(pclose(p) == 0);
    }
    free(t);
}

// ---- child processes: refusal, seccomp, off ----------------------------------------------------

// A seccomp filter under which perf_event_open fails with ENOSYS.
static bool seccomp_deny_perf(void) {
#if defined(__x86_64__)
    const uint32_t arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
    const uint32_t arch = AUDIT_ARCH_AARCH64;
#else
    return false;
#endif
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_perf_event_open, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

static const char *child_mode;

static void child_checks(void) {
    pmu_status st = pmu_get_status();
    run_workload();
    json_t *j = counters(0);
    REQUIRE(j);
    const char *hw = json_string_value(json_object_get(j, "hardware"));
    const char *why = json_string_value(json_object_get(j, "reason"));
    const char *sw = json_string_value(json_object_get(j, "software"));
    REQUIRE(hw && sw);
    if (!strcmp(child_mode, "off")) {
        CHECK(!strcmp(hw, "unavailable") && !strcmp(sw, "off"));
        CHECK(json_object_size(json_object_get(j, "phases")) == 0);
        if (access("/proc/sys/kernel/perf_event_paranoid", R_OK) == 0)
            CHECK(json_is_integer(json_object_get(j, "perf_event_paranoid")));
        CHECK(!st.hardware && !st.software && strstr(st.why, "LLMSCOPE_PMU=off"));
        char *t = pmu_prometheus(NULL);
        CHECK(t && strstr(t, "llmscope_pmu_hardware_available 0\n") && !strstr(t, "phase="));
        free(t);
    } else if (!strcmp(child_mode, "kernel")) {
        // Events that count the kernel refused (paranoid 2 for a user): user-space
        // events plus getrusage, and the voluntary/involuntary split per phase.
        CHECKF(!strcmp(sw, "perf_event+rusage"), "software %s", sw);
        CHECK(json_object_get(j, "exclude_kernel") == json_true());
        check_workload(j);
        CHECK(num(phase(j, "idle"), "voluntary_context_switches") >= 10);
    } else {
        const char *code = !strcmp(child_mode, "eacces") ? "EACCES" : "ENOSYS";
        CHECK(!strcmp(hw, "unavailable"));
        CHECKF(why && strstr(why, code) && strstr(why, "perf_event_paranoid="), "reason %s", why ? why : "(null)");
        CHECKF(!strcmp(sw, "rusage"), "software %s", sw);
        CHECK(!st.hardware && st.software && strstr(st.why, code));
        check_workload(j);
        CHECK(num(phase(j, "idle"), "voluntary_context_switches") >= 10);
        CHECK(json_array_size(json_object_get(j, "software_events")) == 0);
    }
    json_decref(j);
}

// Runs this binary again as `--child mode` with env set; true when it passes.
static bool run_child(const char *mode, const char *env_name, const char *env_value) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return false;
    self[n] = 0;
    pid_t pid = fork();
    if (pid == 0) {
        if (env_name) setenv(env_name, env_value, 1);
        int null = open("/dev/null", O_WRONLY);    // its "N passed" line is not ours
        if (null >= 0) dup2(null, 1);
        execl(self, self, "--child", mode, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void test_refused_eacces(void) { CHECK(run_child("eacces", "LLMSCOPE_PMU_FAIL", "eacces")); }
static void test_refused_by_seccomp(void) { CHECK(run_child("seccomp", NULL, NULL)); }
static void test_kernel_events_refused(void) { CHECK(run_child("kernel", "LLMSCOPE_PMU_FAIL", "kernel")); }
static void test_off(void) { CHECK(run_child("off", "LLMSCOPE_PMU", "off")); }

// ---- benchmark ---------------------------------------------------------------------------------

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

// Median, p10 and p90 of the per-pair cost over batches of pairs.
static void bench_child(void) {
    enum { BATCHES = 401, PAIRS = 100 };
    static uint64_t ns[BATCHES];
    for (int i = 0; i < 1000; i++) { pmu_phase_enter("bench"); pmu_phase_exit("bench"); }
    for (int b = 0; b < BATCHES; b++) {
        uint64_t t0 = mono_ns();
        for (int i = 0; i < PAIRS; i++) {
            pmu_phase_enter("bench");
            pmu_phase_exit("bench");
        }
        ns[b] = (mono_ns() - t0) / PAIRS;
    }
    qsort(ns, BATCHES, sizeof ns[0], cmp_u64);
    size_t len = 0;
    char *j = pmu_counters_json(0, &len);
    json_t *o = j ? json_loads(j, 0, NULL) : NULL;
    const char *sw = o ? json_string_value(json_object_get(o, "software")) : NULL;
    const char *hw = o ? json_string_value(json_object_get(o, "hardware")) : NULL;
    printf("%-18s %-12s %8llu %8llu %8llu\n", sw ? sw : "?", hw ? hw : "?", (unsigned long long)ns[BATCHES / 2],
           (unsigned long long)ns[BATCHES / 10], (unsigned long long)ns[BATCHES * 9 / 10]);
    json_decref(o);
    free(j);
}

static void bench(void) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return;
    self[n] = 0;
    uint64_t t0 = mono_ns();
    for (int i = 0; i < 100000; i++) syscall(SYS_getppid);
    printf("a bare system call (getppid): %llu ns\n", (unsigned long long)((mono_ns() - t0) / 100000));
    printf("one pmu_phase_enter + pmu_phase_exit pair, ns (batches of 100 pairs, 401 batches)\n");
    printf("%-18s %-12s %8s %8s %8s\n", "software", "hardware", "median", "p10", "p90");
    fflush(stdout);
    const char *env[][2] = {{NULL, NULL}, {"LLMSCOPE_PMU_FAIL", "eacces"}, {"LLMSCOPE_PMU", "off"}};
    for (int i = 0; i < 3; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            if (env[i][0]) setenv(env[i][0], env[i][1], 1);
            execl(self, self, "--bench-child", (char *)NULL);
            _exit(127);
        }
        int st;
        if (pid > 0) waitpid(pid, &st, 0);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--bench")) { bench(); return 0; }
    if (argc > 1 && !strcmp(argv[1], "--bench-child")) { bench_child(); return 0; }
    if (argc > 2 && !strcmp(argv[1], "--child")) {
        child_mode = argv[2];
        if (!strcmp(child_mode, "seccomp") && !seccomp_deny_perf()) {
            fprintf(stderr, "cannot install a seccomp filter here\n");
            return 1;
        }
        RUN(child_checks);
        return harness_done();
    }
    RUN(test_work_idle_touch);
    RUN(test_hardware_reported_truthfully);
    RUN(test_seconds_is_a_delta);
    RUN(test_tokens_and_nesting);
    RUN(test_last_region);
    RUN(test_exiting_threads_close_fds);
    RUN(test_prometheus);
    RUN(test_refused_eacces);
    RUN(test_refused_by_seccomp);
    RUN(test_kernel_events_refused);
    RUN(test_off);
    return harness_done();
}
