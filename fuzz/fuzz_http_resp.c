// fuzz_http_resp.c — libFuzzer target for the HTTP/1.1 response parser. The
// first byte picks HEAD or not and the size of the pieces the rest is fed in;
// responses are parsed one after another (as on a kept-alive connection)
// until the bytes run out, then the peer "closes". Checks the parser's own
// invariants: it never consumes more than it is given, a counted body has
// exactly its length, and errors are one short line.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "util/http_resp.h"

static bool body(void *ud, const char *p, size_t n) {
    uint64_t *sum = ud;
    if (n) *sum += (uint8_t)p[0] + (uint8_t)p[n - 1];   // touch both ends: ASan checks the bounds
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size) return 0;
    bool head = data[0] & 1;
    size_t step = (data[0] >> 1) + 1;
    char *copy = malloc(size - 1 ? size - 1 : 1);   // exact size: reads past the end are caught
    if (!copy) return 0;
    memcpy(copy, data + 1, size - 1);
    size_t n = size - 1, at = 0;
    uint64_t sum = 0;
    http_resp r;
    for (int responses = 0; responses < 64; responses++) {
        http_resp_init(&r, head);
        while (at < n && !http_resp_done(&r)) {
            size_t k = n - at < step ? n - at : step;
            ssize_t used = http_resp_feed(&r, copy + at, k, body, &sum);
            if (used < 0) break;
            if ((size_t)used > k) abort();
            at += (size_t)used;
            if ((size_t)used < k && !http_resp_done(&r)) abort();   // stops early only at the end of a response
        }
        if (!http_resp_done(&r)) {
            if (!http_resp_error(&r)) http_resp_eof(&r);
            break;
        }
        if (!head && !r.chunked && r.content_length >= 0 && r.status != 204 && r.status != 304 &&
            r.body_bytes != (uint64_t)r.content_length) abort();
        if (at >= n) break;
    }
    const char *e = http_resp_error(&r);
    if (e && (!*e || strchr(e, '\n'))) abort();
    free(copy);
    return 0;
}
