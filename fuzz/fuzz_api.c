// fuzz_api.c — libFuzzer target for llm-server's request validation: the
// first byte picks the endpoint (/infer, completions, chat, tokenize), the
// rest is the body. Whatever is accepted must be a consistent request
// (a NUL-free valid-UTF-8 prompt, in-range parameters); a refusal must carry
// a 4xx/5xx status and a one-line message.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "server/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    api_kind kind = (api_kind)(data[0] % 4);
    api_limits lim = {.n_vocab = 32000, .max_tokens_cap = 2048, .tmpl = (chat_tmpl)((data[0] >> 2) % 4)};
    srv_req *r = req_new();
    if (!r) return 0;
    api_opts o = {0};
    char err[512] = "";
    int rc = api_parse_json(kind, (const char *)data + 1, size - 1, &lim, r, &o, err, sizeof err);
    if (rc == 0) {
        if (!r->prompt || strlen(r->prompt) != r->prompt_len || !api_valid_utf8(r->prompt, r->prompt_len)) abort();
        if (kind != API_TOKENIZE && (r->max_tokens < 1 || r->max_tokens > lim.max_tokens_cap)) abort();
        if (r->sp.top_p < 0 || r->sp.top_p > 1 || r->sp.temperature < 0 || r->n_stop > REQ_MAX_STOP) abort();
        for (int i = 0; i < r->n_stop; i++)
            if (!r->stop[i][0] || strlen(r->stop[i]) > REQ_MAX_STOP_LEN) abort();
    } else {
        if (rc < 400 || rc > 599 || !err[0] || strchr(err, '\n')) abort();
        char *body = api_error_body(rc, err);
        if (!body) abort();
        free(body);
    }
    req_unref(r);
    return 0;
}
