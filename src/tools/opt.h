// opt.h — command-line flag matching shared by the subcommands:
// "-m X", "--model X" and "--model=X" all match opt_value(..., "-m", "--model").
#ifndef LLMSCOPE_OPT_H
#define LLMSCOPE_OPT_H

#include <stdbool.h>
#include <stdint.h>

// When argv[*i] is the flag (short or long form), stores its value, advances
// *i past it and returns true. A flag without its value sets *missing.
bool opt_value(int argc, char **argv, int *i, const char *shortf, const char *longf,
               const char **val, bool *missing);
// Parses a flag value as a number, printing "llmscope CMD: bad value for FLAG" on failure.
bool opt_i64(const char *cmd, const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out);
bool opt_f64(const char *cmd, const char *flag, const char *v, double lo, double hi, double *out);

#endif
