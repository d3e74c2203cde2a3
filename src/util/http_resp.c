// http_resp.c — see http_resp.h. A byte-driven state machine over lines (the
// status line, header fields, chunk sizes, trailers) and counted runs (the
// body, chunk data). Lines that span reads are gathered in a bounded buffer;
// lines inside one read are parsed in place.
#include "http_resp.h"

#include <string.h>

enum {
    ST_STATUS, ST_HEADER, ST_BODY_LEN, ST_BODY_CLOSE, ST_CHUNK_SIZE, ST_CHUNK_DATA,
    ST_CHUNK_CRLF, ST_TRAILER, ST_DONE, ST_ERROR
};

void http_resp_init(http_resp *r, bool head_request) {
    memset(r, 0, offsetof(http_resp, line));
    r->content_length = -1;
    r->head_request = head_request;
    r->state = ST_STATUS;
    r->err = NULL;
}

static ssize_t fail(http_resp *r, const char *msg) {
    r->state = ST_ERROR;
    r->err = msg;
    return -1;
}

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }

// Case-insensitive comparison of p[0..n) with a lower-case literal.
static bool ieq(const char *p, size_t n, const char *lit) {
    size_t k = strlen(lit);
    if (n != k) return false;
    for (size_t i = 0; i < n; i++)
        if (lower(p[i]) != lit[i]) return false;
    return true;
}

static void trim(const char **p, size_t *n) {
    while (*n && (**p == ' ' || **p == '\t')) { (*p)++; (*n)--; }
    while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t')) (*n)--;
}

// Does the comma-separated list v[0..n) contain the token tok (lower case)?
static bool has_token(const char *v, size_t n, const char *tok) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && v[j] != ',') j++;
        const char *t = v + i;
        size_t tn = j - i;
        trim(&t, &tn);
        if (ieq(t, tn, tok)) return true;
        i = j + 1;
    }
    return false;
}

// The last comma-separated token of v[0..n) is tok?
static bool last_token_is(const char *v, size_t n, const char *tok) {
    size_t i = n;
    while (i && v[i - 1] != ',') i--;
    const char *t = v + i;
    size_t tn = n - i;
    trim(&t, &tn);
    return ieq(t, tn, tok);
}

static int parse_status(http_resp *r, const char *p, size_t n) {
    // "HTTP/1.x NNN reason"
    if (n < 12 || memcmp(p, "HTTP/1.", 7) || p[7] < '0' || p[7] > '9' || p[8] != ' ') return -1;
    if (p[9] < '1' || p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9') return -1;
    if (n > 12 && p[12] != ' ') return -1;
    r->minor = p[7] - '0';
    r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    r->keep_alive = r->minor >= 1;
    r->chunked = false;
    r->content_length = -1;
    r->n_headers = 0;
    return 0;
}

static int parse_header(http_resp *r, const char *p, size_t n) {
    if (++r->n_headers > HTTP_RESP_HEADERS_MAX) { r->err = "too many header fields"; return -1; }
    const char *colon = memchr(p, ':', n);
    if (!colon || colon == p) { r->err = "malformed header field"; return -1; }
    size_t kn = (size_t)(colon - p);
    for (size_t i = 0; i < kn; i++)
        if (p[i] == ' ' || p[i] == '\t') { r->err = "malformed header field"; return -1; }
    const char *v = colon + 1;
    size_t vn = n - kn - 1;
    trim(&v, &vn);
    if (ieq(p, kn, "content-length")) {
        if (!vn || vn > 18) { r->err = "bad Content-Length"; return -1; }
        int64_t x = 0;
        for (size_t i = 0; i < vn; i++) {
            if (v[i] < '0' || v[i] > '9') { r->err = "bad Content-Length"; return -1; }
            x = x * 10 + (v[i] - '0');
        }
        if (r->content_length >= 0 && r->content_length != x) { r->err = "conflicting Content-Length"; return -1; }
        r->content_length = x;
    } else if (ieq(p, kn, "transfer-encoding")) {
        if (last_token_is(v, vn, "chunked")) r->chunked = true;
        else if (!ieq(v, vn, "identity")) { r->err = "unsupported Transfer-Encoding"; return -1; }
    } else if (ieq(p, kn, "connection")) {
        if (has_token(v, vn, "close")) r->keep_alive = false;
        else if (has_token(v, vn, "keep-alive")) r->keep_alive = true;
    }
    return 0;
}

// The header block ended: decide how the body is delimited.
static int head_end(http_resp *r) {
    if (r->status < 200) {                       // interim response: a real one follows
        if (r->status == 101) { r->err = "unexpected protocol switch (101)"; return -1; }
        r->state = ST_STATUS;
        r->head_bytes = 0;
        return 0;
    }
    if (r->head_request || r->status == 204 || r->status == 304) { r->state = ST_DONE; return 0; }
    if (r->chunked) { r->content_length = -1; r->state = ST_CHUNK_SIZE; return 0; }
    if (r->content_length >= 0) {
        r->remaining = (uint64_t)r->content_length;
        r->state = r->remaining ? ST_BODY_LEN : ST_DONE;
        return 0;
    }
    r->keep_alive = false;                       // the body ends when the server closes
    r->state = ST_BODY_CLOSE;
    return 0;
}

static int parse_chunk_size(http_resp *r, const char *p, size_t n) {
    uint64_t x = 0;
    size_t i = 0, digits = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t')) i++;
    for (; i < n; i++, digits++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : lower(c) >= 'a' && lower(c) <= 'f' ? lower(c) - 'a' + 10 : -1;
        if (d < 0) break;
        if (x > (UINT64_MAX >> 4)) { r->err = "chunk size overflows"; return -1; }
        x = x << 4 | (uint64_t)d;
    }
    if (!digits) { r->err = "bad chunk size"; return -1; }
    while (i < n && (p[i] == ' ' || p[i] == '\t')) i++;
    if (i < n && p[i] != ';') { r->err = "bad chunk size"; return -1; }  // ';' starts extensions, ignored
    r->remaining = x;
    r->state = x ? ST_CHUNK_DATA : ST_TRAILER;
    return 0;
}

// One complete line (without its line ending) in the current line state.
static int on_line(http_resp *r, const char *p, size_t n) {
    switch (r->state) {
    case ST_STATUS:
        if (!n && !r->status) return 0;          // tolerate stray blank lines before the status line
        if (parse_status(r, p, n)) { r->err = "malformed status line"; return -1; }
        r->state = ST_HEADER;
        return 0;
    case ST_HEADER:
        if (!n) return head_end(r);
        if (p[0] == ' ' || p[0] == '\t') { r->err = "obsolete header line folding"; return -1; }
        return parse_header(r, p, n);
    case ST_CHUNK_SIZE:
        return parse_chunk_size(r, p, n);
    case ST_CHUNK_CRLF:
        if (n) { r->err = "chunk not followed by CRLF"; return -1; }
        r->state = ST_CHUNK_SIZE;
        return 0;
    case ST_TRAILER:
        if (!n) r->state = ST_DONE;
        else if (++r->n_headers > HTTP_RESP_HEADERS_MAX) { r->err = "too many trailer fields"; return -1; }
        return 0;
    default:
        r->err = "internal state";
        return -1;
    }
}

static bool line_state(int s) {
    return s == ST_STATUS || s == ST_HEADER || s == ST_CHUNK_SIZE || s == ST_CHUNK_CRLF || s == ST_TRAILER;
}

ssize_t http_resp_feed(http_resp *r, const char *p, size_t n, http_body_fn body, void *ud) {
    if (r->state == ST_ERROR) return -1;
    size_t i = 0;
    while (i < n && r->state != ST_DONE) {
        if (line_state(r->state)) {
            const char *s = p + i;
            const char *nl = memchr(s, '\n', n - i);
            size_t take = nl ? (size_t)(nl - s) + 1 : n - i;
            bool head = r->state == ST_STATUS || r->state == ST_HEADER || r->state == ST_TRAILER;
            if (head && (r->head_bytes += take) > HTTP_RESP_HEAD_MAX) return fail(r, "header block too large");
            if (!nl) {                                 // partial line: keep it
                if (r->line_len + take > sizeof r->line) return fail(r, "line too long");
                memcpy(r->line + r->line_len, s, take);
                r->line_len += take;
                i += take;
                break;
            }
            const char *lp = s;
            size_t ln = take - 1;
            if (r->line_len) {
                if (r->line_len + ln > sizeof r->line) return fail(r, "line too long");
                memcpy(r->line + r->line_len, s, ln);
                lp = r->line;
                ln += r->line_len;
                r->line_len = 0;
            } else if (ln > sizeof r->line) {
                return fail(r, "line too long");
            }
            if (ln && lp[ln - 1] == '\r') ln--;
            i += take;
            if (on_line(r, lp, ln)) return fail(r, r->err ? r->err : "malformed response");
            continue;
        }
        // Counted or close-delimited body bytes.
        size_t avail = n - i;
        size_t k = avail;
        if (r->state != ST_BODY_CLOSE && r->remaining < k) k = (size_t)r->remaining;
        if (k && body && !body(ud, p + i, k)) return fail(r, "body rejected");
        r->body_bytes += k;
        i += k;
        if (r->state == ST_BODY_CLOSE) continue;
        r->remaining -= k;
        if (!r->remaining) r->state = r->state == ST_BODY_LEN ? ST_DONE : ST_CHUNK_CRLF;
    }
    r->wire_bytes += i;
    return (ssize_t)i;
}

bool http_resp_eof(http_resp *r) {
    if (r->state == ST_BODY_CLOSE) { r->state = ST_DONE; return true; }
    if (r->state == ST_DONE) return true;
    if (r->state != ST_ERROR) { r->state = ST_ERROR; r->err = "connection closed before the response ended"; }
    return false;
}

bool http_resp_head_done(const http_resp *r) { return r->state != ST_STATUS && r->state != ST_HEADER && r->state != ST_ERROR; }
bool http_resp_done(const http_resp *r) { return r->state == ST_DONE; }
const char *http_resp_error(const http_resp *r) { return r->state == ST_ERROR ? r->err : NULL; }
