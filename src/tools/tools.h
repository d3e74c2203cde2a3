// tools.h — the `llmscope` subcommands. Each takes the arguments after its
// own name (argv[0] is the subcommand) and returns the process exit code:
// 0 on success, 1 on a runtime failure, 2 on a usage error.
#ifndef LLMSCOPE_TOOLS_H
#define LLMSCOPE_TOOLS_H

int cmd_run(int argc, char **argv);       // one-shot generation
int cmd_bench(int argc, char **argv);     // prefill / decode tokens per second
int cmd_gguf(int argc, char **argv);      // gguf info | gguf synth
int cmd_tokenize(int argc, char **argv);  // text -> token ids
int cmd_load(int argc, char **argv);      // HTTP load generator with LLM metrics
int cmd_flame(int argc, char **argv);     // profiles -> folded stacks / SVG flame graph
int cmd_collect(int argc, char **argv);   // capture a server's evidence under load
int cmd_report(int argc, char **argv);    // cross-checked diagnosis of a capture
int cmd_diagnose(int argc, char **argv);  // collect + report

#endif
