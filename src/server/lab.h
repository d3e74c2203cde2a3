// lab.h — the teaching and validation lab: `llm-server --inject NAME`
// switches on one known-bad implementation that engineers meet in the field,
// so the diagnosis can be checked against a known cause. Every hook is one
// predictable branch on `lab_case` when the lab is off. The switch is never
// reported by the server (not in /health, /metrics, /v1/models or logs after
// start-up): a diagnosis must find the cause from evidence alone.
// Thread safety: lab_case is set once before the server starts; the hooks
// may be called from any thread.
#ifndef LLMSCOPE_LAB_H
#define LLMSCOPE_LAB_H

#include <stdbool.h>
#include <stddef.h>

typedef enum lab_kind {
    LAB_OFF = 0,
    LAB_ALLOC_CHURN,       // prompt pre-processing in many small heap allocations
    LAB_SINGLE_TOKENIZER,  // one tokenizer worker, doing redundant work per byte
    LAB_YIELD_PER_TOKEN,   // the decode loop yields the CPU after every token
    LAB_FALSE_SHARING,     // per-thread hot counters packed into one cache line
    LAB_GLOBAL_LOCK,       // a slow synchronous step under one global lock per request
    LAB_SLOW_CLIENTS,      // read timeouts disabled: slow clients hold connections
    LAB_HEAP_GROWTH,       // per-request state retained and never freed
} lab_kind;

extern lab_kind lab_case;

// Parses a case name; false when unknown. lab_names() lists them.
bool lab_parse(const char *name, lab_kind *out);
const char *lab_names(void);
// Installs hooks that live outside the server (the compute pool's).
void lab_install(void);

// alloc-churn: the prompt is split into pieces, copied and re-joined through
// many small allocations before it is encoded (the result is the prompt).
void prompt_preprocess(const char *prompt, size_t len);
// single-tokenizer: how many times the stage encodes each prompt.
int tokenize_passes(void);
// yield-per-token: called after each sampled token.
void decode_yield(void);
// global-lock: a blocking step under the lock "global", per request.
void auth_check(void);
// heap-growth: keeps a copy of the request's state forever.
void session_retain(const char *prompt, size_t plen, const char *out, size_t olen);

#endif
