// metrics.h — the server's Prometheus metrics: request counts by endpoint and
// status, latency and length histograms (names and buckets follow vLLM's
// `vllm:` set, with the prefix `llmscope_`), token counters and gauges, and the
// text exposition format (version 0.0.4) for GET /metrics.
// Thread safety: every function may be called from any thread (one mutex;
// updates are a few per request and one per generated token).
#ifndef LLMSCOPE_METRICS_H
#define LLMSCOPE_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef enum met_hist {
    MET_E2E,          // llmscope_e2e_request_latency_seconds
    MET_QUEUE,        // llmscope_request_queue_time_seconds (arrival -> admitted to a slot)
    MET_TTFT,         // llmscope_time_to_first_token_seconds
    MET_ITL,          // llmscope_inter_token_latency_seconds (each gap between tokens)
    MET_TPOT,         // llmscope_request_time_per_output_token_seconds (per request)
    MET_PROMPT_LEN,   // llmscope_request_prompt_tokens
    MET_GEN_LEN,      // llmscope_request_generation_tokens
    MET_BATCH,        // llmscope_batch_tokens (tokens in one forward step)
    MET_N_HIST
} met_hist;

typedef enum met_gauge {
    MET_RUNNING,      // llmscope_num_requests_running
    MET_WAITING,      // llmscope_num_requests_waiting (tokenize + admit queues)
    MET_KV_USAGE,     // llmscope_kv_cache_usage_perc (0..1)
    MET_BATCH_SEQS,   // llmscope_batch_sequences (sequences in the last step)
    MET_KV_BYTES,     // llmscope_kv_cache_bytes (set at start)
    MET_WEIGHT_BYTES, // llmscope_weights_bytes (set at start)
    MET_WEIGHT_HUGE,  // llmscope_weights_huge_page_bytes (set at start)
    MET_WEIGHT_STEP,  // llmscope_weights_read_per_step_bytes (set at start)
    MET_READ_BW,      // llmscope_memory_read_bandwidth_bytes_per_second (measured at start)
    MET_DECODE_PF,    // llmscope_decode_prefetch (1: single-token steps run the kernels' software prefetch)
    MET_N_GAUGE
} met_gauge;

void met_init(void);
void met_observe(met_hist h, double v);
void met_gauge_set(met_gauge g, double v);
void met_add_tokens(uint64_t prompt, uint64_t generated);
// One finished HTTP request: endpoint is a route ("/infer", "/v1/completions",
// "other" …), status the HTTP status sent.
void met_request(const char *endpoint, int status);
// Sum of observations and count of a histogram (for tests).
void met_hist_read(met_hist h, double *sum, uint64_t *count);
// Renders the exposition text (malloc'd, NUL-terminated; NULL on OOM).
char *met_render(size_t *len);

#endif
