// api.c — request validation and result JSON (see api.h).
#include "api.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define DEFAULT_PROMPT "Once upon a time"
#define MAX_MESSAGES 256

bool api_valid_utf8(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c == 0) return false;
        if (c < 0x80) { i++; continue; }
        int len;
        unsigned min;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; }
        else return false;
        if (n - i < (size_t)len) return false;
        unsigned cp = c & (0xFF >> (len + 1));
        for (int k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += (size_t)len;
    }
    return true;
}

static const char *err_type(int status) {
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 405: return "invalid_request_error";
    case 409: return "conflict_error";
    case 413: return "invalid_request_error";
    case 503: return "unavailable_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

// Jansson reports most of its allocation failures while parsing as syntax
// errors ("string expected"), and json_dumps() can return a text with a
// piece missing: its allocator is wrapped to notice them, so that running
// out of memory is a 500, never a 400 blaming the client or a garbled 200.
static __thread bool json_oom;

static void *json_malloc(size_t n) {
    void *p = malloc(n);
    if (!p) json_oom = true;
    return p;
}

static pthread_once_t json_once = PTHREAD_ONCE_INIT;
static void json_alloc_init(void) { json_set_alloc_funcs(json_malloc, free); }

char *api_json_dumps(const json_t *j) {
    if (!j) return NULL;
    pthread_once(&json_once, json_alloc_init);
    json_oom = false;
    char *s = json_dumps(j, JSON_COMPACT);
    if (s && json_oom) { free(s); s = NULL; }
    return s;
}

char *api_error_body(int status, const char *msg) {
    json_t *j = json_pack("{s:{s:s,s:s,s:i}}", "error", "message", msg, "type", err_type(status), "code", status);
    if (!j) {   // msg was not valid UTF-8 (it quotes input): say so without it
        j = json_pack("{s:{s:s,s:s,s:i}}", "error", "message", "invalid request", "type", err_type(status), "code", status);
    }
    char *s = api_json_dumps(j);
    json_decref(j);
    return s;
}

// ---- field readers -----------------------------------------------------------

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return 400; } while (0)

static int get_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out, char *err, size_t errlen) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    double d;
    if (json_is_integer(v)) d = (double)json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v))) d = json_real_value(v);
    else FAIL("'%s' must be an integer", key);
    if (d < (double)lo || d > (double)hi) FAIL("'%s' must be between %lld and %lld", key, (long long)lo, (long long)hi);
    *out = json_is_integer(v) ? json_integer_value(v) : (int64_t)d;
    return 0;
}

static int get_num(json_t *o, const char *key, double lo, double hi, double *out, char *err, size_t errlen) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) FAIL("'%s' must be a number", key);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) FAIL("'%s' must be between %g and %g", key, lo, hi);
    *out = d;
    return 0;
}

static int get_bool(json_t *o, const char *key, bool *out, char *err, size_t errlen) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) FAIL("'%s' must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

// A JSON string as UTF-8 without NUL bytes (Jansson has checked the UTF-8).
static int str_of(json_t *v, const char *what, const char **s, size_t *n, char *err, size_t errlen) {
    if (!json_is_string(v)) FAIL("'%s' must be a string", what);
    *s = json_string_value(v);
    *n = json_string_length(v);
    if (strlen(*s) != *n) FAIL("'%s' contains a NUL character", what);
    return 0;
}

static int set_prompt(srv_req *r, const char *s, size_t n, char *err, size_t errlen) {
    free(r->prompt);
    r->prompt = malloc(n + 1);
    if (!r->prompt) { snprintf(err, errlen, "out of memory"); return 500; }
    memcpy(r->prompt, s, n);
    r->prompt[n] = 0;
    r->prompt_len = n;
    return 0;
}

static int add_stop(srv_req *r, json_t *v, char *err, size_t errlen) {
    const char *s;
    size_t n;
    int rc = str_of(v, "stop", &s, &n, err, errlen);
    if (rc) return rc;
    if (n == 0) return 0;   // an empty stop string stops nothing
    if (n > REQ_MAX_STOP_LEN) FAIL("a 'stop' string is longer than %d bytes", REQ_MAX_STOP_LEN);
    if (r->n_stop == REQ_MAX_STOP) FAIL("'stop' holds at most %d strings", REQ_MAX_STOP);
    r->stop[r->n_stop] = strdup(s);
    if (!r->stop[r->n_stop]) { snprintf(err, errlen, "out of memory"); return 500; }
    r->n_stop++;
    return 0;
}

// Sampling fields shared by every generating endpoint.
static int parse_sampling(json_t *o, const api_limits *lim, srv_req *r, api_opts *opt, char *err, size_t errlen) {
    int64_t i;
    double d;
    int rc;
    i = r->max_tokens;
    if ((rc = get_int(o, "max_tokens", 1, lim->max_tokens_cap, &i, err, errlen))) return rc;
    if (json_object_get(o, "n_predict") && (rc = get_int(o, "n_predict", 1, lim->max_tokens_cap, &i, err, errlen))) return rc;
    r->max_tokens = (int32_t)i;
    d = r->sp.temperature;
    if ((rc = get_num(o, "temperature", 0, 100, &d, err, errlen))) return rc;
    r->sp.temperature = (float)d;
    i = r->sp.top_k;
    if ((rc = get_int(o, "top_k", 0, lim->n_vocab, &i, err, errlen))) return rc;
    r->sp.top_k = (int32_t)i;
    d = r->sp.top_p;
    if ((rc = get_num(o, "top_p", 0, 1, &d, err, errlen))) return rc;
    r->sp.top_p = (float)d;
    d = r->sp.min_p;
    if ((rc = get_num(o, "min_p", 0, 1, &d, err, errlen))) return rc;
    r->sp.min_p = (float)d;
    d = r->sp.repeat_penalty;
    if ((rc = get_num(o, "repeat_penalty", 0.01, 100, &d, err, errlen))) return rc;
    r->sp.repeat_penalty = (float)d;
    i = (int64_t)r->sp.seed;
    if ((rc = get_int(o, "seed", 0, INT64_MAX, &i, err, errlen))) return rc;
    r->sp.seed = (uint64_t)i;
    i = 1;
    if ((rc = get_int(o, "n", 1, 1, &i, err, errlen))) return rc;
    if ((rc = get_bool(o, "stream", &opt->stream, err, errlen))) return rc;
    json_t *st = json_object_get(o, "stop");
    if (st && !json_is_null(st)) {
        if (json_is_array(st)) {
            size_t k;
            json_t *e;
            json_array_foreach(st, k, e) if ((rc = add_stop(r, e, err, errlen))) return rc;
        } else if ((rc = add_stop(r, st, err, errlen))) {
            return rc;
        }
    }
    return 0;
}

static int parse_messages(json_t *msgs, const api_limits *lim, srv_req *r, char *err, size_t errlen) {
    if (!json_is_array(msgs)) FAIL("'messages' must be an array");
    size_t n = json_array_size(msgs);
    if (n == 0) FAIL("'messages' is empty");
    if (n > MAX_MESSAGES) FAIL("'messages' holds at most %d entries", MAX_MESSAGES);
    chat_msg *m = calloc(n, sizeof *m);
    char **owned = calloc(n, sizeof *owned);
    int rc = 0;
    if (!m || !owned) { rc = 500; snprintf(err, errlen, "out of memory"); goto out; }
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *e = json_array_get(msgs, i);
        if (!json_is_object(e)) { rc = 400; snprintf(err, errlen, "messages[%zu] must be an object", i); break; }
        json_t *role = json_object_get(e, "role"), *content = json_object_get(e, "content");
        size_t rl, cl;
        const char *rs, *cs;
        if (!json_is_string(role)) { rc = 400; snprintf(err, errlen, "messages[%zu].role must be a string", i); break; }
        if ((rc = str_of(role, "role", &rs, &rl, err, errlen))) break;
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") && strcmp(rs, "tool") && strcmp(rs, "developer")) {
            rc = 400;
            snprintf(err, errlen, "messages[%zu].role must be system, user, assistant, developer or tool", i);
            break;
        }
        m[i].role = !strcmp(rs, "developer") ? "system" : rs;
        if (json_is_string(content)) {
            if ((rc = str_of(content, "content", &cs, &cl, err, errlen))) break;
            m[i].content = cs;
        } else if (json_is_array(content)) {   // [{type:"text", text:"…"}, …]
            size_t total = 0, k;
            json_t *part;
            json_array_foreach(content, k, part) {
                json_t *tx = json_object_get(part, "text");
                if (!json_is_object(part) || !json_is_string(json_object_get(part, "type")) ||
                    strcmp(json_string_value(json_object_get(part, "type")), "text") || !json_is_string(tx)) {
                    rc = 400;
                    snprintf(err, errlen, "messages[%zu].content parts must be {\"type\":\"text\",\"text\":string}", i);
                    break;
                }
                if (strlen(json_string_value(tx)) != json_string_length(tx)) { rc = 400; snprintf(err, errlen, "'content' contains a NUL character"); break; }
                total += json_string_length(tx);
            }
            if (rc) break;
            owned[i] = malloc(total + 1);
            if (!owned[i]) { rc = 500; snprintf(err, errlen, "out of memory"); break; }
            size_t at = 0;
            json_array_foreach(content, k, part) {
                json_t *tx = json_object_get(part, "text");
                memcpy(owned[i] + at, json_string_value(tx), json_string_length(tx));
                at += json_string_length(tx);
            }
            owned[i][at] = 0;
            m[i].content = owned[i];
        } else if (json_is_null(content) && !strcmp(rs, "assistant")) {
            m[i].content = "";
        } else {
            rc = 400;
            snprintf(err, errlen, "messages[%zu].content must be a string or an array of text parts", i);
        }
    }
    if (!rc) {
        char *p = chat_render(lim->tmpl, m, (int)n);
        if (!p) { rc = 500; snprintf(err, errlen, "out of memory"); }
        else { rc = set_prompt(r, p, strlen(p), err, errlen); free(p); }
        r->parse_special = true;
    }
out:
    if (owned) for (size_t i = 0; i < n; i++) free(owned[i]);
    free(owned);
    free(m);
    return rc;
}


int api_parse_json(api_kind kind, const char *body, size_t len, const api_limits *lim, srv_req *r, api_opts *o,
                   char *err, size_t errlen) {
    json_error_t je;
    pthread_once(&json_once, json_alloc_init);
    json_oom = false;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (j && json_oom) {   // parsed, but a member may have been dropped on the way
        json_decref(j);
        snprintf(err, errlen, "out of memory");
        return 500;
    }
    if (!j) {
        // Out of memory is the server's failure, not a malformed body. (Jansson
        // leaves the text empty when it cannot even start its lexer.)
        if (json_oom || json_error_code(&je) == json_error_out_of_memory || !je.text[0]) {
            snprintf(err, errlen, "out of memory");
            return 500;
        }
        // Jansson's text may quote the input ("near '…'"): keep it one printable line.
        for (char *p = je.text; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
        FAIL("malformed JSON at byte %d: %s", je.position, je.text);
    }
    int rc = 0;
    if (!json_is_object(j)) { json_decref(j); FAIL("the body must be a JSON object"); }
    o->add_special = true;
    if (kind == API_CHAT) {
        rc = parse_messages(json_object_get(j, "messages"), lim, r, err, errlen);
        // max_completion_tokens is the newer name of max_tokens.
        if (!rc && json_object_get(j, "max_completion_tokens") && !json_object_get(j, "max_tokens")) {
            int64_t i = r->max_tokens;
            rc = get_int(j, "max_completion_tokens", 1, lim->max_tokens_cap, &i, err, errlen);
            r->max_tokens = (int32_t)i;
        }
    } else {
        const char *key = kind == API_TOKENIZE && json_object_get(j, "content") ? "content" : "prompt";
        json_t *p = json_object_get(j, key);
        if (p && json_is_array(p) && kind != API_TOKENIZE) {   // OpenAI: a list of prompts; one is supported
            if (json_array_size(p) != 1) { rc = 400; snprintf(err, errlen, "'prompt' as an array must hold exactly one string"); }
            else p = json_array_get(p, 0);
        }
        const char *s = DEFAULT_PROMPT;
        size_t n = strlen(s);
        if (!rc && p && !json_is_null(p)) rc = str_of(p, key, &s, &n, err, errlen);
        else if (!rc && kind != API_INFER) { rc = 400; snprintf(err, errlen, "'%s' is required", key); }
        if (!rc) rc = set_prompt(r, s, n, err, errlen);
    }
    if (!rc && kind == API_TOKENIZE) {
        if (!(rc = get_bool(j, "add_special", &o->add_special, err, errlen)))
            rc = get_bool(j, "with_pieces", &o->with_pieces, err, errlen);
    } else if (!rc) {
        rc = parse_sampling(j, lim, r, o, err, errlen);
    }
    json_decref(j);
    return rc;
}

int api_parse_query(api_get_fn get, void *cls, const api_limits *lim, srv_req *r, api_opts *o, char *err,
                    size_t errlen) {
    // The query's values become a JSON object of the right types, then go
    // through the same validation as a body.
    static const struct { const char *key; char type; } keys[] = {
        {"prompt", 's'}, {"max_tokens", 'n'}, {"n_predict", 'n'}, {"temperature", 'n'}, {"top_k", 'n'},
        {"top_p", 'n'}, {"min_p", 'n'}, {"repeat_penalty", 'n'}, {"seed", 'n'}, {"stream", 'b'}, {"stop", 's'},
    };
    json_t *j = json_object();
    if (!j) { snprintf(err, errlen, "out of memory"); return 500; }
    int rc = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && !rc; i++) {
        const char *v = get(cls, keys[i].key);
        if (!v) continue;
        if (!api_valid_utf8(v, strlen(v))) { rc = 400; snprintf(err, errlen, "'%s' is not valid UTF-8", keys[i].key); break; }
        json_t *x = NULL;
        if (keys[i].type == 's') {
            x = json_string(v);
        } else if (keys[i].type == 'b') {
            if (!strcmp(v, "true") || !strcmp(v, "1")) x = json_true();
            else if (!strcmp(v, "false") || !strcmp(v, "0")) x = json_false();
            else { rc = 400; snprintf(err, errlen, "'%s' must be true or false", keys[i].key); break; }
        } else {
            int64_t iv;
            double dv;
            if (util_parse_i64(v, INT64_MIN, INT64_MAX, &iv)) x = json_integer(iv);
            else if (util_parse_f64(v, -1e300, 1e300, &dv)) x = json_real(dv);
            else { rc = 400; snprintf(err, errlen, "'%s' must be a number", keys[i].key); break; }
        }
        if (!x || json_object_set_new(j, keys[i].key, x)) { rc = 500; snprintf(err, errlen, "out of memory"); }
    }
    if (!rc) {
        char *body = api_json_dumps(j);
        if (!body) { rc = 500; snprintf(err, errlen, "out of memory"); }
        else rc = api_parse_json(API_INFER, body, strlen(body), lim, r, o, err, errlen);
        free(body);
    }
    json_decref(j);
    return rc;
}

json_t *api_timings(const srv_req *r) {
#define MS(a, b) ((a) && (b) && (b) >= (a) ? (double)((b) - (a)) / 1e6 : 0.0)
    double prefill = MS(r->t_admit, r->t_first), decode = MS(r->t_first, r->t_last);
    double tpot = r->n_gen > 1 ? decode / (r->n_gen - 1) : 0.0;
    return json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:i,s:f,s:f,s:i,s:f,s:f}",
                     "queue_ms", MS(r->t_arrive, r->t_admit) - MS(r->t_tok_begin, r->t_tok_end),
                     "tokenize_ms", MS(r->t_tok_begin, r->t_tok_end),
                     "prefill_ms", prefill,
                     "decode_ms", decode,
                     "ttft_ms", MS(r->t_arrive, r->t_first),
                     "tpot_ms", tpot,
                     "total_ms", MS(r->t_arrive, r->t_done),
                     // llama.cpp's names, for tools that read its timings block
                     "prompt_n", (int)r->n_prompt,
                     "prompt_ms", prefill,
                     "prompt_per_second", prefill > 0 ? r->n_prompt * 1e3 / prefill : 0.0,
                     "predicted_n", (int)r->n_gen,
                     "predicted_ms", decode,
                     "predicted_per_second", decode > 0 && r->n_gen > 1 ? (r->n_gen - 1) * 1e3 / decode : 0.0);
#undef MS
}
