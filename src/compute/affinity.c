// affinity.c — compute-thread placement (see affinity.h).
#include "affinity.h"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

bool aff_parse_list(const char *s, int *cpus, int max, int *n, char *err, size_t errlen) {
    *n = 0;
    const char *p = s;
    if (!s || !*s) { snprintf(err, errlen, "empty CPU list"); return false; }
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10), b;
        if (end == p || a < 0 || a >= AFF_MAX_CPUS) goto bad;
        b = a;
        p = end;
        if (*p == '-') {
            b = strtol(p + 1, &end, 10);
            if (end == p + 1 || b < a || b >= AFF_MAX_CPUS) goto bad;
            p = end;
        }
        for (long c = a; c <= b; c++) {
            if (*n >= max) { snprintf(err, errlen, "CPU list '%s' is too long", s); return false; }
            cpus[(*n)++] = (int)c;
        }
        if (*p == ',') p++;
        else if (*p) goto bad;
    }
    qsort(cpus, (size_t)*n, sizeof *cpus, cmp_int);
    int u = 0;
    for (int i = 0; i < *n; i++)
        if (!u || cpus[u - 1] != cpus[i]) cpus[u++] = cpus[i];
    *n = u;
    return true;
bad:
    snprintf(err, errlen, "bad CPU list '%s' at '%s' (want e.g. 0-3,6)", s, p);
    return false;
}

bool aff_parse_numa(const char *s, aff_numa *out) {
    if (!s || !*s || !strcmp(s, "off")) *out = AFF_NUMA_OFF;
    else if (!strcmp(s, "distribute")) *out = AFF_NUMA_DISTRIBUTE;
    else if (!strcmp(s, "isolate")) *out = AFF_NUMA_ISOLATE;
    else return false;
    return true;
}

int aff_read_nodes(const char *root, int *node_of, int max_cpus) {
    for (int i = 0; i < max_cpus; i++) node_of[i] = -1;
    DIR *d = opendir(root);
    int n_nodes = 0;
    if (d) {
        for (struct dirent *e; (e = readdir(d));) {
            int node;
            char tail;
            if (sscanf(e->d_name, "node%d%c", &node, &tail) != 1 || node < 0 || node >= max_cpus) continue;
            char path[512], line[4096], err[128];
            snprintf(path, sizeof path, "%s/%s/cpulist", root, e->d_name);
            FILE *f = fopen(path, "r");
            if (!f) continue;
            bool got = fgets(line, sizeof line, f) != NULL;
            fclose(f);
            if (!got) continue;
            line[strcspn(line, "\n")] = 0;
            static int cpus[AFF_MAX_CPUS];
            int nc = 0;
            n_nodes++;
            if (!line[0] || !aff_parse_list(line, cpus, AFF_MAX_CPUS, &nc, err, sizeof err)) continue;   // a memory-only node
            for (int i = 0; i < nc; i++)
                if (cpus[i] < max_cpus) node_of[cpus[i]] = node;
        }
        closedir(d);
    }
    if (n_nodes == 0) {   // no sysfs: one node holding every CPU
        for (int i = 0; i < max_cpus; i++) node_of[i] = 0;
        n_nodes = 1;
    }
    return n_nodes;
}

bool aff_make_plan(int n_threads, const int *list, int n_list, aff_numa numa, const int *allowed, int n_allowed,
                   const int *node_of, int n_nodes, int start_cpu, aff_plan *plan, char *err, size_t errlen) {
    memset(plan, 0, sizeof *plan);
    if (n_threads < 1 || n_threads > AFF_MAX_CPUS) { snprintf(err, errlen, "bad thread count %d", n_threads); return false; }
    plan->n_threads = n_threads;
    plan->n_nodes = n_nodes;
    for (int i = 0; i < n_threads; i++) plan->cpu[i] = -1;
    util_buf b = {0};
    if (list && n_list > 0) {
        for (int i = 0; i < n_list; i++) {
            bool ok = false;
            for (int j = 0; j < n_allowed && !ok; j++) ok = allowed[j] == list[i];
            if (!ok) {
                snprintf(err, errlen, "--cpu-affinity names CPU %d, which this process may not run on", list[i]);
                return false;
            }
        }
        for (int i = 0; i < n_threads; i++) plan->cpu[i] = list[i % n_list];
    } else if (numa == AFF_NUMA_DISTRIBUTE || numa == AFF_NUMA_ISOLATE) {
        // The allowed CPUs of each node, in order.
        int start_node = start_cpu >= 0 && start_cpu < AFF_MAX_CPUS ? node_of[start_cpu] : -1;
        static int by_node[AFF_MAX_CPUS];
        int taken[AFF_MAX_CPUS] = {0}, nb = 0;
        if (numa == AFF_NUMA_ISOLATE) {
            for (int j = 0; j < n_allowed; j++)
                if (node_of[allowed[j]] == start_node || start_node < 0) by_node[nb++] = allowed[j];
            for (int i = 0; i < n_threads && nb; i++) plan->cpu[i] = by_node[i % nb];
        } else {
            // Round robin over nodes: thread i goes to the (i mod nodes)-th node
            // that has allowed CPUs, on its next unused CPU.
            int nodes[AFF_MAX_CPUS], nn = 0;
            for (int j = 0; j < n_allowed; j++) {
                int nd = node_of[allowed[j]];
                bool seen = false;
                for (int k = 0; k < nn && !seen; k++) seen = nodes[k] == nd;
                if (!seen) nodes[nn++] = nd;
            }
            for (int i = 0; i < n_threads && nn; i++) {
                int nd = nodes[i % nn], pick = -1, least = 1 << 30;
                for (int j = 0; j < n_allowed; j++)
                    if (node_of[allowed[j]] == nd && taken[j] < least) { least = taken[j]; pick = j; }
                if (pick >= 0) { taken[pick]++; plan->cpu[i] = allowed[pick]; }
            }
        }
    }
    bool pinned = plan->cpu[0] >= 0;
    if (pinned) {
        util_buf_printf(&b, "%d compute threads pinned to CPUs ", n_threads);
        for (int i = 0; i < n_threads && i < 16; i++) util_buf_printf(&b, "%s%d", i ? "," : "", plan->cpu[i]);
        if (n_threads > 16) util_buf_printf(&b, ",…");
    } else {
        util_buf_printf(&b, "%d compute threads, not pinned", n_threads);
    }
    util_buf_printf(&b, "; %d NUMA node%s", n_nodes, n_nodes == 1 ? "" : "s");
    if (n_nodes == 1 && numa != AFF_NUMA_OFF) util_buf_printf(&b, " (--numa has nothing to place on one node)");
    snprintf(plan->summary, sizeof plan->summary, "%s", b.s ? b.s : "");
    free(b.s);
    return true;
}

bool aff_plan_for_process(int n_threads, const char *list, const char *numa, aff_plan *plan, char *err,
                          size_t errlen) {
    aff_numa mode;
    if (!aff_parse_numa(numa, &mode)) {
        snprintf(err, errlen, "bad --numa '%s' (off, distribute or isolate)", numa);
        return false;
    }
    static int want[AFF_MAX_CPUS], allowed[AFF_MAX_CPUS], node_of[AFF_MAX_CPUS];
    int n_want = 0, n_allowed = 0;
    if (list && !aff_parse_list(list, want, AFF_MAX_CPUS, &n_want, err, errlen)) return false;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        for (int c = 0; c < AFF_MAX_CPUS && c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &set)) allowed[n_allowed++] = c;
    }
    int n_nodes = aff_read_nodes("/sys/devices/system/node", node_of, AFF_MAX_CPUS);
    return aff_make_plan(n_threads, list ? want : NULL, n_want, mode, allowed, n_allowed, node_of, n_nodes,
                         sched_getcpu(), plan, err, errlen);
}

bool aff_pin_self(int cpu) {
    if (cpu < 0) return true;
    if (cpu >= CPU_SETSIZE) return false;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}
