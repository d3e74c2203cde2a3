// opt.c — see opt.h.
#include "opt.h"

#include <stdio.h>
#include <string.h>
#include "util/util.h"

bool opt_value(int argc, char **argv, int *i, const char *shortf, const char *longf,
               const char **val, bool *missing) {
    const char *a = argv[*i];
    size_t ll = longf ? strlen(longf) : 0;
    if (longf && !strncmp(a, longf, ll) && a[ll] == '=') {
        *val = a + ll + 1;
        return true;
    }
    if ((shortf && !strcmp(a, shortf)) || (longf && !strcmp(a, longf))) {
        if (*i + 1 >= argc) {
            *missing = true;
            return true;
        }
        *val = argv[++*i];
        return true;
    }
    return false;
}

bool opt_i64(const char *cmd, const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out) {
    if (util_parse_i64(v, lo, hi, out)) return true;
    fprintf(stderr, "llmscope %s: bad value '%s' for %s (an integer in %lld..%lld)\n", cmd, v, flag,
            (long long)lo, (long long)hi);
    return false;
}

bool opt_f64(const char *cmd, const char *flag, const char *v, double lo, double hi, double *out) {
    if (util_parse_f64(v, lo, hi, out)) return true;
    fprintf(stderr, "llmscope %s: bad value '%s' for %s (a number in %g..%g)\n", cmd, v, flag, lo, hi);
    return false;
}
