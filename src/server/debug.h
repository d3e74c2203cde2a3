// debug.h — the /debug/* endpoints (named as Go's net/http/pprof names them):
// the HTTP layer hands the URL and a query accessor; this file turns them into
// calls of the instrumentation layer (src/prof) and returns the bytes.
// Thread-safe: each call runs on its own connection's thread.
#ifndef LLMSCOPE_DEBUG_H
#define LLMSCOPE_DEBUG_H

#include <stddef.h>

typedef struct debug_response {
    char *body;                // malloc'd
    size_t len;
    const char *ctype;         // static
    const char *disposition;   // static or NULL
    char err[256];             // message when the status is not 200
} debug_response;

typedef const char *(*debug_get_fn)(void *cls, const char *key);

// Returns 200 with the body set, another HTTP status with err set, or 0 when
// the URL names no debug endpoint.
int debug_handle(const char *url, debug_get_fn get, void *cls, debug_response *out);

#endif
