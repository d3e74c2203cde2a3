// sse.c — see sse.h. Lines end at CRLF, LF or CR (a CR at the end of one
// feed and an LF at the start of the next are one line ending). Fields other
// than "data" (event, id, retry) and comments (":...") are ignored.
#include "sse.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

void sse_init(sse_parser *s, size_t max_event_bytes) {
    memset(s, 0, sizeof *s);
    s->max = max_event_bytes ? max_event_bytes : SSE_EVENT_MAX_DEFAULT;
}

void sse_reset(sse_parser *s) {
    s->line_len = s->data_len = 0;
    s->has_data = s->pending_cr = s->stopped = false;
    s->err = NULL;
    s->n_events = 0;
}

void sse_free(sse_parser *s) {
    free(s->line);
    free(s->data);
    memset(s, 0, sizeof *s);
}

// Makes room for `add` more bytes (plus a NUL) in *buf, within the cap.
static bool reserve(sse_parser *s, char **buf, size_t *cap, size_t len, size_t add) {
    if (add > s->max || len > s->max - add) { s->err = "event larger than the cap"; return false; }
    size_t need = len + add + 1;
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 256;
    while (nc < need) nc *= 2;
    char *q = realloc(*buf, nc);
    if (!q) { s->err = "out of memory"; return false; }
    *buf = q;
    *cap = nc;
    return true;
}

static bool dispatch(sse_parser *s, sse_event_fn fn, void *ud) {
    bool ok = true;
    if (s->has_data) {
        if (!s->data && !reserve(s, &s->data, &s->data_cap, 0, 0)) return false;
        s->data[s->data_len] = 0;
        s->n_events++;
        ok = fn ? fn(ud, s->data, s->data_len) : true;
    }
    s->data_len = 0;
    s->has_data = false;
    return ok;
}

// One complete line (no line ending).
static bool on_line(sse_parser *s, const char *p, size_t n, sse_event_fn fn, void *ud) {
    if (!n) return dispatch(s, fn, ud);
    if (p[0] == ':') return true;
    const char *colon = memchr(p, ':', n);
    size_t fn_len = colon ? (size_t)(colon - p) : n;
    if (fn_len != 4 || memcmp(p, "data", 4)) return true;
    const char *v = colon ? colon + 1 : p + n;
    size_t vn = colon ? n - fn_len - 1 : 0;
    if (vn && v[0] == ' ') { v++; vn--; }
    size_t add = vn + (s->has_data ? 1 : 0);
    if (!reserve(s, &s->data, &s->data_cap, s->data_len, add)) return false;
    if (s->has_data) s->data[s->data_len++] = '\n';
    memcpy(s->data + s->data_len, v, vn);
    s->data_len += vn;
    s->has_data = true;
    return true;
}

bool sse_feed(sse_parser *s, const char *p, size_t n, sse_event_fn fn, void *ud) {
    if (s->stopped) return false;
    size_t i = 0;
    if (s->pending_cr && n) {
        s->pending_cr = false;
        if (p[0] == '\n') i = 1;
    }
    while (i < n) {
        size_t j = i;
        while (j < n && p[j] != '\n' && p[j] != '\r') j++;
        if (j == n) {                               // partial line: keep it
            if (!reserve(s, &s->line, &s->line_cap, s->line_len, n - i)) { s->stopped = true; return false; }
            memcpy(s->line + s->line_len, p + i, n - i);
            s->line_len += n - i;
            break;
        }
        bool ok;
        if (s->line_len) {
            if (!reserve(s, &s->line, &s->line_cap, s->line_len, j - i)) { s->stopped = true; return false; }
            memcpy(s->line + s->line_len, p + i, j - i);
            s->line_len += j - i;
            ok = on_line(s, s->line, s->line_len, fn, ud);
            s->line_len = 0;
        } else {
            if (j - i > s->max) { s->err = "event larger than the cap"; s->stopped = true; return false; }
            ok = on_line(s, p + i, j - i, fn, ud);
        }
        if (!ok) { s->stopped = true; return false; }
        if (p[j] == '\r') {
            if (j + 1 == n) s->pending_cr = true;
            else if (p[j + 1] == '\n') j++;
        }
        i = j + 1;
    }
    return true;
}

bool sse_finish(sse_parser *s, sse_event_fn fn, void *ud) {
    if (s->stopped) return false;
    bool ok = true;
    if (s->line_len) {
        ok = on_line(s, s->line, s->line_len, fn, ud);
        s->line_len = 0;
    }
    if (ok) ok = dispatch(s, fn, ud);
    if (!ok) s->stopped = true;
    return ok;
}

static bool nonempty_str(json_t *v) { return json_is_string(v) && json_string_length(v) > 0; }

sse_llm_event sse_llm_classify(const char *p, size_t n) {
    sse_llm_event e = {SSE_LLM_OTHER, -1};
    while (n && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) { p++; n--; }
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\n' || p[n - 1] == '\r')) n--;
    if (!n) return e;
    if (n == 6 && !memcmp(p, "[DONE]", 6)) { e.kind = SSE_LLM_DONE; return e; }
    if (p[0] != '{') { e.kind = SSE_LLM_TOKEN; return e; }
    json_t *o = json_loadb(p, n, JSON_DECODE_ANY, NULL);
    if (!json_is_object(o)) { json_decref(o); e.kind = SSE_LLM_TOKEN; return e; }
    json_t *u = json_object_get(o, "usage");
    json_t *ct = json_is_object(u) ? json_object_get(u, "completion_tokens") : NULL;
    if (json_is_integer(ct) && json_integer_value(ct) >= 0) e.completion_tokens = json_integer_value(ct);
    json_t *choices = json_object_get(o, "choices");
    json_t *err = json_object_get(o, "error");
    if (json_is_array(choices)) {
        json_t *c0 = json_array_get(choices, 0);
        if (json_is_object(c0)) {
            json_t *d = json_object_get(c0, "delta");
            if (nonempty_str(json_object_get(c0, "text")) ||
                (json_is_object(d) && nonempty_str(json_object_get(d, "content"))))
                e.kind = SSE_LLM_TOKEN;
        }
    } else if (err && !json_is_null(err)) {
        e.kind = SSE_LLM_ERROR;
    } else {
        static const char *keys[] = {"token", "text", "content"};
        for (size_t i = 0; i < 3; i++) {
            json_t *v = json_object_get(o, keys[i]);
            if (v && !json_is_null(v) && !(json_is_string(v) && !json_string_length(v) && i > 0)) {
                e.kind = SSE_LLM_TOKEN;
                break;
            }
        }
    }
    json_decref(o);
    return e;
}
