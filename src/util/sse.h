// sse.h — a bounded, incremental parser of server-sent event streams (the
// text/event-stream format of the WHATWG HTML standard) and a classifier of
// the events LLM servers send: OpenAI-style completion and chat chunks,
// "[DONE]", usage reports, errors. Bytes come from the network: each event's
// data is capped, and JSON is parsed by Jansson with its depth limit. One
// parser per stream; no global state.
#ifndef LLMSCOPE_SSE_H
#define LLMSCOPE_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SSE_EVENT_MAX_DEFAULT (1u << 20)   // bytes of data in one event

// Receives one event's data (the "data:" lines joined by '\n', NUL-terminated
// at p[n]). Returns false to stop parsing.
typedef bool (*sse_event_fn)(void *ud, const char *p, size_t n);

typedef struct sse_parser {
    char *line;            // the current line (bytes so far)
    size_t line_len, line_cap;
    char *data;            // the current event's data
    size_t data_len, data_cap;
    size_t max;            // cap on a line and on an event's data (bytes)
    bool has_data;         // a data field was seen in the current event
    bool pending_cr;       // the last byte fed was a CR (a following LF belongs to it)
    bool stopped;          // the callback asked to stop, or a bound was hit
    const char *err;       // why parsing stopped on a bound (static), or NULL
    uint64_t n_events;     // events dispatched
} sse_parser;

void sse_init(sse_parser *s, size_t max_event_bytes);
void sse_reset(sse_parser *s);     // ready for a new stream; keeps its buffers
void sse_free(sse_parser *s);
// Parses bytes; returns false when parsing stopped (the callback said so, a
// line or event exceeded the cap, or out of memory; see s->err).
bool sse_feed(sse_parser *s, const char *p, size_t n, sse_event_fn fn, void *ud);
// End of the stream: an event not yet ended by a blank line is dispatched
// (servers that omit the last blank line are common). Returns as sse_feed.
bool sse_finish(sse_parser *s, sse_event_fn fn, void *ud);

// What an LLM server's event means for a load generator.
typedef enum sse_llm_kind {
    SSE_LLM_OTHER,   // metadata, a usage-only chunk, a role-only delta, an empty event
    SSE_LLM_TOKEN,   // carries generated text: one token (or one chunk of tokens)
    SSE_LLM_DONE,    // "[DONE]"
    SSE_LLM_ERROR,   // a JSON object with an "error" member and no choices
} sse_llm_kind;

typedef struct sse_llm_event {
    sse_llm_kind kind;
    int64_t completion_tokens;   // usage.completion_tokens when present, else -1
} sse_llm_event;

// Classifies one event's data. A JSON object with "choices" is a token when
// choices[0].text or choices[0].delta.content is a non-empty string; another
// JSON object is a token when it has a non-null "token", "text" or "content"
// member (llmscope's own /infer stream); data that is not a JSON object
// (plain text) is a token when it is not blank.
sse_llm_event sse_llm_classify(const char *p, size_t n);

#endif
