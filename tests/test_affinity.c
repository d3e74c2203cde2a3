// test_affinity.c — --cpu-affinity lists, --numa placement over a made-up
// sysfs node layout, pinning a real thread, and an unpinned compute pool
// that moves a thread off its caller's CPU.
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compute/affinity.h"
#include "compute/threadpool.h"
#include <immintrin.h>
#include <stdatomic.h>
#include "harness.h"

static void test_parse_list(void) {
    int c[64], n;
    char err[128];
    CHECK(aff_parse_list("0-3,6", c, 64, &n, err, sizeof err) && n == 5 && c[0] == 0 && c[3] == 3 && c[4] == 6);
    CHECK(aff_parse_list("5,1,1,2-3", c, 64, &n, err, sizeof err) && n == 4 && c[0] == 1 && c[1] == 2 && c[3] == 5);
    CHECK(aff_parse_list("7", c, 64, &n, err, sizeof err) && n == 1 && c[0] == 7);
    const char *bad[] = {"", "a", "1-", "3-1", "1,,2", "-1", "1;2", "99999", "0-"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        bool ok = aff_parse_list(bad[i], c, 64, &n, err, sizeof err);
        CHECKF(!ok && strstr(err, "CPU list"), "'%s' accepted or bad message: %s", bad[i], err);
    }
    CHECK(!aff_parse_list("0-100", c, 8, &n, err, sizeof err) && strstr(err, "too long"));
    aff_numa m;
    CHECK(aff_parse_numa("distribute", &m) && m == AFF_NUMA_DISTRIBUTE);
    CHECK(aff_parse_numa("isolate", &m) && m == AFF_NUMA_ISOLATE);
    CHECK(aff_parse_numa("off", &m) && m == AFF_NUMA_OFF);
    CHECK(!aff_parse_numa("numactl", &m));
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) { fputs(text, f); fclose(f); }
}

// Two nodes: node0 = CPUs 0-1, node1 = CPUs 2-3, and a memory-only node2.
static void test_numa_plans(void) {
    char root[] = "/tmp/llmscope-nodes-XXXXXX", p[256];
    REQUIRE(mkdtemp(root));
    const char *cpulists[] = {"0-1\n", "2-3\n", "\n"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/node%d", root, i);
        mkdir(p, 0700);
        snprintf(p, sizeof p, "%s/node%d/cpulist", root, i);
        write_file(p, cpulists[i]);
    }
    static int node_of[AFF_MAX_CPUS];
    int nodes = aff_read_nodes(root, node_of, AFF_MAX_CPUS);
    CHECK(nodes == 3 && node_of[0] == 0 && node_of[1] == 0 && node_of[2] == 1 && node_of[3] == 1 && node_of[4] == -1);
    int allowed[] = {0, 1, 2, 3};
    aff_plan plan;
    char err[256];
    REQUIRE(aff_make_plan(4, NULL, 0, AFF_NUMA_DISTRIBUTE, allowed, 4, node_of, nodes, 0, &plan, err, sizeof err));
    CHECKF(plan.cpu[0] == 0 && plan.cpu[1] == 2 && plan.cpu[2] == 1 && plan.cpu[3] == 3, "%s", plan.summary);
    REQUIRE(aff_make_plan(4, NULL, 0, AFF_NUMA_ISOLATE, allowed, 4, node_of, nodes, 3, &plan, err, sizeof err));
    CHECKF(plan.cpu[0] == 2 && plan.cpu[1] == 3 && plan.cpu[2] == 2 && plan.cpu[3] == 3, "%s", plan.summary);
    REQUIRE(aff_make_plan(2, NULL, 0, AFF_NUMA_OFF, allowed, 4, node_of, nodes, 0, &plan, err, sizeof err));
    CHECK(plan.cpu[0] == -1 && plan.cpu[1] == -1 && strstr(plan.summary, "not pinned; 3 NUMA nodes"));
    int list[] = {1, 3};
    REQUIRE(aff_make_plan(3, list, 2, AFF_NUMA_OFF, allowed, 4, node_of, nodes, 0, &plan, err, sizeof err));
    CHECKF(plan.cpu[0] == 1 && plan.cpu[1] == 3 && plan.cpu[2] == 1 && strstr(plan.summary, "pinned to CPUs 1,3,1"), "%s",
           plan.summary);
    int outside[] = {1, 9};
    CHECK(!aff_make_plan(2, outside, 2, AFF_NUMA_OFF, allowed, 4, node_of, nodes, 0, &plan, err, sizeof err) &&
          strstr(err, "CPU 9"));
    // No sysfs at all: one node with every CPU; --numa says it has nothing to do.
    snprintf(p, sizeof p, "%s/none", root);
    CHECK(aff_read_nodes(p, node_of, AFF_MAX_CPUS) == 1 && node_of[3] == 0);
    REQUIRE(aff_make_plan(2, NULL, 0, AFF_NUMA_DISTRIBUTE, allowed, 2, node_of, 1, 0, &plan, err, sizeof err));
    CHECKF(plan.cpu[0] == 0 && plan.cpu[1] == 1 && strstr(plan.summary, "1 NUMA node (--numa has nothing"), "%s",
           plan.summary);
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/node%d/cpulist", root, i);
        unlink(p);
        snprintf(p, sizeof p, "%s/node%d", root, i);
        rmdir(p);
    }
    rmdir(root);
}

static void *pin_and_report(void *arg) {
    int *cpu = arg;
    if (!aff_pin_self(*cpu)) { *cpu = -2; return NULL; }
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    for (volatile int i = 0; i < 1000000; i++) {}
    *cpu = CPU_COUNT(&set) == 1 && CPU_ISSET(*cpu, &set) && sched_getcpu() == *cpu ? *cpu : -3;
    return NULL;
}

// The real machine: the process's plan is valid and a thread really pins.
static void test_pin_real_thread(void) {
    aff_plan plan;
    char err[256];
    REQUIRE(aff_plan_for_process(2, NULL, "distribute", &plan, err, sizeof err));
    CHECKF(plan.n_nodes >= 1 && plan.cpu[0] >= 0, "%s", plan.summary);
    fprintf(stderr, "  this machine: %s\n", plan.summary);
    cpu_set_t set;
    CPU_ZERO(&set);
    REQUIRE(sched_getaffinity(0, sizeof set, &set) == 0);
    int last = -1;
    for (int c = 0; c < CPU_SETSIZE; c++) if (CPU_ISSET(c, &set)) last = c;
    REQUIRE(last >= 0);
    int cpu = last;
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, pin_and_report, &cpu) == 0);
    pthread_join(t, NULL);
    CHECKF(cpu == last, "pinned thread reported %d, wanted %d", cpu, last);
    CHECK(!aff_plan_for_process(2, "0-1", "sideways", &plan, err, sizeof err) && strstr(err, "--numa"));
}

typedef struct { _Atomic int cpu[2], tid[2]; } where_t;

static void where_job(int ith, int nth, void *arg) {
    (void)nth;
    where_t *w = arg;
    atomic_store(&w->cpu[ith], sched_getcpu());
    atomic_store(&w->tid[ith], (int)gettid());
}

static _Atomic int hog_stop;

static void *hog(void *p) {
    aff_pin_self(*(int *)p);
    while (!atomic_load(&hog_stop)) _mm_pause();
    return NULL;
}

// The kernel can wake a pool thread on the CPU of the thread that wakes it
// (here forced: it last ran there and every other CPU is busy). The pool
// thread then moves itself away rather than share the CPU with its caller.
static void test_pool_spreads(void) {
    cpu_set_t all;
    REQUIRE(sched_getaffinity(0, sizeof all, &all) == 0);
    if (CPU_COUNT(&all) < 2) { fprintf(stderr, "  skipped: one CPU\n"); return; }
    int a = -1, others[64], n_others = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &all)) continue;
        if (a < 0) a = c;
        else if (n_others < 64) others[n_others++] = c;
    }
    REQUIRE(aff_pin_self(a));
    tp_pool *pool = tp_create(2, "spread");
    REQUIRE(pool);
    where_t w = {0};
    tp_run(pool, where_job, &w);
    int worker = atomic_load(&w.tid[1]);
    REQUIRE(worker > 0);
    atomic_store(&hog_stop, 0);
    pthread_t hogs[64];
    for (int i = 0; i < n_others; i++) REQUIRE(pthread_create(&hogs[i], NULL, hog, &others[i]) == 0);
    // Move the worker to CPU a, then give it every CPU back: it stays on a
    // and falls asleep there.
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(a, &one);
    CHECK(sched_setaffinity(worker, sizeof one, &one) == 0);
    usleep(5000);
    CHECK(sched_setaffinity(worker, sizeof all, &all) == 0);
    usleep(20000);
    uint64_t moves = tp_spread_moves();
    for (int round = 0; round < 3; round++) {
        tp_run(pool, where_job, &w);
        CHECKF(atomic_load(&w.cpu[0]) == a, "caller on %d, pinned to %d", atomic_load(&w.cpu[0]), a);
        CHECKF(atomic_load(&w.cpu[1]) != a, "round %d: the worker ran its job on its caller's CPU %d", round, a);
    }
    fprintf(stderr, "  worker on CPU %d, caller on %d; %llu moves\n", atomic_load(&w.cpu[1]), a,
            (unsigned long long)(tp_spread_moves() - moves));
    atomic_store(&hog_stop, 1);
    for (int i = 0; i < n_others; i++) pthread_join(hogs[i], NULL);
    tp_free(pool);
    sched_setaffinity(0, sizeof all, &all);
}

int main(void) {
    RUN(test_parse_list);
    RUN(test_numa_plans);
    RUN(test_pin_real_thread);
    RUN(test_pool_spreads);
    return harness_done();
}
