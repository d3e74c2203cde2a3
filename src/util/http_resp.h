// http_resp.h — an incremental parser of HTTP/1.1 responses, for clients that
// read from non-blocking sockets: feed whatever bytes arrived, get the body
// (de-chunked) through a callback, learn when the message is complete and
// whether the connection may be reused. Bytes come from the network and are
// untrusted: every line, header block and count is bounded, sizes are
// overflow-checked, and errors are a short message, never a crash. One parser
// per connection; no global state.
#ifndef LLMSCOPE_HTTP_RESP_H
#define LLMSCOPE_HTTP_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP_RESP_LINE_MAX 8192      // longest status, header or chunk-size line (bytes)
#define HTTP_RESP_HEAD_MAX 65536     // longest header block (bytes)
#define HTTP_RESP_HEADERS_MAX 128    // most header fields in one response

// Receives body bytes (after de-chunking). Returns false to stop parsing
// (http_resp_feed then fails with the error "body rejected").
typedef bool (*http_body_fn)(void *ud, const char *p, size_t n);

typedef struct http_resp {
    // Results, valid once the header block is parsed (http_resp_head_done).
    int status;                  // 100..999
    int minor;                   // HTTP/1.<minor>
    bool keep_alive;             // the connection may carry another request after this one
    bool chunked;                // Transfer-Encoding: chunked
    int64_t content_length;      // -1 when absent
    uint64_t body_bytes;         // body bytes delivered so far (de-chunked)
    uint64_t wire_bytes;         // bytes consumed so far, head included
    // Private state.
    int state;
    bool head_request;           // a response to HEAD has no body
    uint32_t n_headers;
    uint64_t remaining;          // bytes left in the body or the current chunk
    size_t head_bytes;           // bytes of the current header block
    size_t line_len;
    char line[HTTP_RESP_LINE_MAX];
    const char *err;             // static message when state is the error state
} http_resp;

// Prepares for the response to one request (head_request: the request was HEAD).
void http_resp_init(http_resp *r, bool head_request);
// Consumes bytes up to the end of the response. Returns how many were consumed
// (fewer than n only when the response ended: the rest belongs to the next
// one), or -1 on a malformed response (see http_resp_error). Interim 1xx
// responses (100 Continue, 103 Early Hints) are skipped.
ssize_t http_resp_feed(http_resp *r, const char *p, size_t n, http_body_fn body, void *ud);
// The peer closed the connection: completes a body delimited by the close.
// Returns true when the response is complete, false when it was cut short.
bool http_resp_eof(http_resp *r);
bool http_resp_head_done(const http_resp *r);  // status line and headers parsed
bool http_resp_done(const http_resp *r);       // the whole response parsed
const char *http_resp_error(const http_resp *r);  // NULL when no error

#endif
