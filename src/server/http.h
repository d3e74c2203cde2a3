// http.h — llm-server's HTTP surface on libmicrohttpd: routing, limits
// (body size, connections, read timeout, API key, loopback-only debug
// endpoints), JSON and server-sent-event responses, client disconnects
// cancelling their sequence. One thread per connection ("http-N"), which
// blocks while its request is generated; the engine does the work.
// Thread safety: http_start/http_quiesce/http_stop from the main thread only.
#ifndef LLMSCOPE_HTTP_H
#define LLMSCOPE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "engine.h"

typedef struct http_config {
    const char *host;          // NULL or "" = all interfaces
    uint16_t port;             // 0 = any free port (see http_port)
    int max_conns;
    int read_timeout_s;        // idle connections are closed after this
    size_t max_body;           // bytes
    const char *api_key;       // NULL = none
    bool debug_remote;         // /debug/* on the main listener answers non-loopback clients too …
    const char *debug_token;   // … when they present this token (X-Debug-Token)
    const char *debug_host;    // --debug-addr: NULL = no separate debug listener; "" = all interfaces
    uint16_t debug_port;       // its port (0 = any free port, see http_debug_port)
    int trace_slow_ms;         // 0 = off: requests slower than this dump the flight recorder's window
    const char *trace_dir;     // where those dumps go
} http_config;

// Starts listening (the server answers /health with 503 until
// http_set_ready()). false with a message in err.
bool http_start(const http_config *cfg, char *err, size_t errlen);
uint16_t http_port(void);
uint16_t http_debug_port(void);   // 0 without --debug-addr
// Connections open now (those whose threads MHD has not cleaned up included).
unsigned http_connections(void);
// The model is loaded and the engine runs: inference endpoints open.
void http_set_ready(const llama_model *m, srv_engine *e, const char *model_id);
// Stop accepting new connections (in-flight ones continue).
void http_quiesce(void);
// Close everything; waits for connection threads.
void http_stop(void);

// Parses "HOST:PORT", ":PORT" (all interfaces) or "PORT". false on junk.
bool http_parse_addr(const char *s, char *host, size_t hostlen, uint16_t *port);

#endif
