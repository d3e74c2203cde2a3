// llmscope.c — the `llmscope` tool: one binary, subcommands like perf's.
#include <stdio.h>
#include <string.h>
#include "tools.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"run", cmd_run, "generate text from a prompt (one shot)"},
    {"bench", cmd_bench, "prefill and decode tokens/s, memory bandwidth"},
    {"gguf", cmd_gguf, "inspect (info) and synthesise (synth) GGUF model files"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"load", cmd_load, "HTTP load generator (hey's flags) with LLM latency metrics"},
    {"flame", cmd_flame, "pprof, perf script or folded stacks to folded stacks or an SVG flame graph"},
    {"collect", cmd_collect, "capture a running server's profiles, trace, counters and metrics under load"},
    {"report", cmd_report, "cross-check a capture and name the bottleneck, with the evidence"},
    {"diagnose", cmd_diagnose, "collect + report in one command (optionally starting the server)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: llmscope <command> [args]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'llmscope <command> --help' describes a command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "llmscope: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
