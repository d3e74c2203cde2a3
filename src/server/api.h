// api.h — turns untrusted request input (a JSON body, or the query parameters
// of GET /infer) into a validated srv_req, and results into JSON. Every
// refusal is an HTTP status and a one-line message naming the field; nothing
// here trusts sizes, types or encodings it is given.
// Thread-safe (no shared state).
#ifndef LLMSCOPE_API_H
#define LLMSCOPE_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "chat.h"
#include "engine.h"

typedef enum api_kind { API_INFER, API_COMPLETIONS, API_CHAT, API_TOKENIZE } api_kind;

typedef struct api_limits {
    int32_t n_vocab;
    int32_t max_tokens_cap;    // largest max_tokens accepted (the context length)
    chat_tmpl tmpl;            // for API_CHAT
} api_limits;

// What a request asks for beyond the srv_req fields.
typedef struct api_opts {
    bool stream;
    bool add_special;          // /tokenize: add BOS as the model does (default true)
    bool with_pieces;          // /tokenize: return each token's text too
} api_opts;

// Parses a JSON body into r (prompt, sampling parameters, stop strings).
// Returns 0, or an HTTP status (400) with a message in err.
int api_parse_json(api_kind kind, const char *body, size_t len, const api_limits *lim, srv_req *r,
                   api_opts *o, char *err, size_t errlen);

// Parses GET /infer's query: get(key) returns a parameter's value or NULL.
typedef const char *(*api_get_fn)(void *cls, const char *key);
int api_parse_query(api_get_fn get, void *cls, const api_limits *lim, srv_req *r, api_opts *o, char *err,
                    size_t errlen);

// json_dumps(j, JSON_COMPACT), or NULL when any allocation failed on the way
// (Jansson may otherwise return the text with a piece missing).
char *api_json_dumps(const json_t *j);

// true when s[0..n) is valid UTF-8 without NUL bytes.
bool api_valid_utf8(const char *s, size_t n);

// {"error":{"message","type","code"}} for a status; malloc'd text.
char *api_error_body(int status, const char *msg);

// The timings object (ms) of a finished request.
json_t *api_timings(const srv_req *r);

#endif
