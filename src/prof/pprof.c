// pprof.c — the /debug/pprof/ dispatcher: parameter parsing and validation
// for every endpoint, and the index page (see pprof.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "util/util.h"

static const struct {
    const char *name, *desc;
} profiles[] = {
    {"allocs", "A sampling of all past memory allocations"},
    {"block", "Stack traces that led to blocking on named queues, condition variables and locks"},
    {"goroutine", "Stack traces of all registered threads (alias of threads)"},
    {"heap", "A sampling of memory allocations of live objects. You can specify the gc GET parameter (ignored here)."},
    {"mutex", "Stack traces of holders of contended named mutexes"},
    {"profile", "CPU profile. You can specify the duration in the seconds GET parameter, and the rate in hz. After you get the profile file, use the go tool pprof command to investigate the profile."},
    {"threads", "Stack traces of all registered threads, with name, role, labels and what each waits on (debug=2)"},
};

prof_status prof_pprof_index(prof_response *r) {
    size_t cap = 4096;
    char *s = malloc(cap);
    if (!s) { prof_set_error(r, "out of memory"); return PROF_ENOMEM; }
    size_t n = 0;
    n += (size_t)snprintf(s + n, cap - n, "/debug/pprof/\n\nTypes of profiles available:\n");
    for (size_t i = 0; i < sizeof profiles / sizeof profiles[0]; i++)
        n += (size_t)snprintf(s + n, cap - n, "%-10s %s\n", profiles[i].name, profiles[i].desc);
    n += (size_t)snprintf(s + n, cap - n,
                          "\nfull thread stack dump: /debug/pprof/threads?debug=2\n"
                          "Profiles are gzip'd profile.proto: go tool pprof http://HOST/debug/pprof/NAME\n");
    if (n >= cap) n = cap - 1;
    r->body = (uint8_t *)s;
    r->len = n;
    r->content_type = "text/plain; charset=utf-8";
    return PROF_OK;
}

// Reads a numeric parameter: absent → def; junk or out of [lo, hi] → false.
static bool num(prof_arg_fn arg, void *ctx, const char *key, double lo, double hi, double def, double *out) {
    const char *v = arg ? arg(ctx, key) : NULL;
    if (!v || !*v) { *out = def; return true; }
    return util_parse_f64(v, lo, hi, out);
}

prof_status prof_pprof_handle(const char *name, prof_arg_fn arg, void *ctx, prof_response *r) {
    memset(r, 0, sizeof *r);
    r->content_type = "text/plain; charset=utf-8";
    prof_init();
    if (!name) name = "";
    while (*name == '/') name++;
    double debug, seconds, hz;
    if (!num(arg, ctx, "debug", 0, 2, 0, &debug) || debug != (int)debug) {
        prof_set_error(r, "debug must be 0, 1 or 2");
        return PROF_EINVAL;
    }
    if (!*name) return prof_pprof_index(r);
    if (!strcmp(name, "threads") || !strcmp(name, "goroutine")) return prof_threads_profile((int)debug, r);
    if (debug != 0) {
        prof_set_error(r, "only debug=0 (profile.proto) is served for %s", name);
        return PROF_EINVAL;
    }
    if (!strcmp(name, "profile")) {
        if (!num(arg, ctx, "seconds", 1, 3600, 30, &seconds)) { prof_set_error(r, "seconds must be a number in [1, 3600]"); return PROF_EINVAL; }
        if (!num(arg, ctx, "hz", 1, 4000, 100, &hz) || hz != (int)hz) { prof_set_error(r, "hz must be an integer in [1, 4000]"); return PROF_EINVAL; }
        return prof_cpu_profile(seconds, (int)hz, r);
    }
    bool heap = !strcmp(name, "heap"), allocs = !strcmp(name, "allocs");
    bool block = !strcmp(name, "block"), mutex = !strcmp(name, "mutex");
    if (!heap && !allocs && !block && !mutex) {
        prof_set_error(r, "unknown profile: %.60s", name);
        return PROF_ENOTFOUND;
    }
    if (!num(arg, ctx, "seconds", 0, 3600, 0, &seconds)) { prof_set_error(r, "seconds must be a number in [0, 3600]"); return PROF_EINVAL; }
    if (heap || allocs) return prof_heap_profile(allocs, seconds, r);
    if (block) return prof_block_profile(seconds, r);
    return prof_mutex_profile(seconds, r);
}
