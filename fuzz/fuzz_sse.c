// fuzz_sse.c — libFuzzer target for the server-sent events parser and the LLM
// event classifier (which hands event data to Jansson). The first byte picks
// where the stream is split into two feeds and the event cap; every event is
// classified. Checks: events respect the cap and are NUL-terminated.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "util/sse.h"

typedef struct fuzz_ctx { size_t max; uint64_t n; } fuzz_ctx;

static bool on_event(void *ud, const char *p, size_t n) {
    fuzz_ctx *c = ud;
    if (n > c->max || p[n] != 0) abort();
    sse_llm_event e = sse_llm_classify(p, n);
    if (e.kind > SSE_LLM_ERROR || e.completion_tokens < -1) abort();
    c->n++;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size) return 0;
    size_t n = size - 1;
    char *copy = malloc(n ? n : 1);
    if (!copy) return 0;
    memcpy(copy, data + 1, n);
    size_t cut = n ? data[0] % (n + 1) : 0;
    fuzz_ctx c = {.max = data[0] & 0x80 ? 64 : 4096, .n = 0};
    sse_parser p;
    sse_init(&p, c.max);
    if (sse_feed(&p, copy, cut, on_event, &c) && sse_feed(&p, copy + cut, n - cut, on_event, &c))
        sse_finish(&p, on_event, &c);
    sse_free(&p);
    free(copy);
    return 0;
}
