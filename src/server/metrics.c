// metrics.c — Prometheus metrics (see metrics.h). Histograms are cumulative
// at render time; buckets are vLLM's, extended downward where a CPU serving
// small models lives (tokens every few milliseconds).
#include "metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/threadpool.h"
#include "util/util.h"

#define MAX_BUCKETS 32
#define MAX_ROUTES 16
#define MAX_STATUS 16

typedef struct hist_def {
    const char *name, *help;
    int n;
    double le[MAX_BUCKETS];
} hist_def;

static const hist_def hdefs[MET_N_HIST] = {
    [MET_E2E] = {"llmscope_e2e_request_latency_seconds", "End-to-end request latency (arrival to the last token).", 25,
                 {0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                  120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}},
    [MET_QUEUE] = {"llmscope_request_queue_time_seconds", "Time from arrival until the request is admitted to a batch slot.", 23,
                   {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                    40.0, 80.0, 160.0, 640.0, 2560.0, 7680.0}},
    [MET_TTFT] = {"llmscope_time_to_first_token_seconds", "Time from arrival to the first generated token.", 22,
                  {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
                   80.0, 160.0, 640.0, 2560.0}},
    [MET_ITL] = {"llmscope_inter_token_latency_seconds", "Time between consecutive generated tokens of a request.", 22,
                 {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                  10.0, 20.0, 40.0, 80.0}},
    [MET_TPOT] = {"llmscope_request_time_per_output_token_seconds", "Mean time per output token after the first, per request.", 22,
                  {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                   7.5, 10.0, 20.0, 40.0, 80.0}},
    [MET_PROMPT_LEN] = {"llmscope_request_prompt_tokens", "Prompt length in tokens.", 14,
                        {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000}},
    [MET_GEN_LEN] = {"llmscope_request_generation_tokens", "Generated tokens per request.", 14,
                     {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000}},
    [MET_BATCH] = {"llmscope_batch_tokens", "Tokens carried by one forward step (prefill chunks and decode tokens).", 11,
                   {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}},
};

static const struct { const char *name, *help; } gdefs[MET_N_GAUGE] = {
    [MET_RUNNING] = {"llmscope_num_requests_running", "Sequences holding a batch slot."},
    [MET_WAITING] = {"llmscope_num_requests_waiting", "Requests waiting to be tokenized or admitted."},
    [MET_KV_USAGE] = {"llmscope_kv_cache_usage_perc", "Fraction of KV-cache positions in use (0 to 1)."},
    [MET_BATCH_SEQS] = {"llmscope_batch_sequences", "Sequences in the last forward step."},
    [MET_KV_BYTES] = {"llmscope_kv_cache_bytes", "Bytes held by the KV cache (f16 or f32 elements: --kv-type)."},
    [MET_WEIGHT_BYTES] = {"llmscope_weights_bytes", "Bytes of the model file held in memory."},
    [MET_WEIGHT_HUGE] = {"llmscope_weights_huge_page_bytes",
                         "Bytes of the model held in 2 MiB pages at start (0 with --mmap or where the kernel gave none)."},
    [MET_WEIGHT_STEP] = {"llmscope_weights_read_per_step_bytes",
                         "Bytes of weights one forward step reads: every matrix once, whatever the batch."},
    [MET_READ_BW] = {"llmscope_memory_read_bandwidth_bytes_per_second",
                     "Memory read bandwidth the compute threads reached at start (--bw-probe-mib; 0: not measured)."},
    [MET_DECODE_PF] = {"llmscope_decode_prefetch",
                       "1 while single-token steps run the matrix kernels' software prefetch, 0 while they leave it to the "
                       "hardware: chosen by timing pairs of steps, one each way."},
};

typedef struct hist {
    uint64_t counts[MAX_BUCKETS + 1];   // last = +Inf
    uint64_t count;
    double sum;
} hist;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static hist hists[MET_N_HIST];
static double gauges[MET_N_GAUGE];
static uint64_t tok_prompt, tok_gen;
static struct { char route[32]; int status; uint64_t n; } reqs[MAX_ROUTES * MAX_STATUS];
static int n_reqs;

void met_init(void) {
    pthread_mutex_lock(&mu);
    memset(hists, 0, sizeof hists);
    memset(gauges, 0, sizeof gauges);
    tok_prompt = tok_gen = 0;
    n_reqs = 0;
    pthread_mutex_unlock(&mu);
}

void met_observe(met_hist h, double v) {
    if ((unsigned)h >= MET_N_HIST) return;
    const hist_def *d = &hdefs[h];
    int b = 0;
    while (b < d->n && v > d->le[b]) b++;
    pthread_mutex_lock(&mu);
    hists[h].counts[b]++;
    hists[h].count++;
    hists[h].sum += v;
    pthread_mutex_unlock(&mu);
}

void met_hist_read(met_hist h, double *sum, uint64_t *count) {
    pthread_mutex_lock(&mu);
    *sum = hists[h].sum;
    *count = hists[h].count;
    pthread_mutex_unlock(&mu);
}

void met_gauge_set(met_gauge g, double v) {
    if ((unsigned)g >= MET_N_GAUGE) return;
    pthread_mutex_lock(&mu);
    gauges[g] = v;
    pthread_mutex_unlock(&mu);
}

void met_add_tokens(uint64_t prompt, uint64_t generated) {
    pthread_mutex_lock(&mu);
    tok_prompt += prompt;
    tok_gen += generated;
    pthread_mutex_unlock(&mu);
}

void met_request(const char *endpoint, int status) {
    pthread_mutex_lock(&mu);
    int i;
    for (i = 0; i < n_reqs; i++)
        if (reqs[i].status == status && !strcmp(reqs[i].route, endpoint)) break;
    if (i == n_reqs && n_reqs < MAX_ROUTES * MAX_STATUS) {
        snprintf(reqs[i].route, sizeof reqs[i].route, "%s", endpoint);
        reqs[i].status = status;
        reqs[i].n = 0;
        n_reqs++;
    }
    if (i < n_reqs) reqs[i].n++;
    pthread_mutex_unlock(&mu);
}

char *met_render(size_t *len) {
    util_buf b = {0};
    pthread_mutex_lock(&mu);
    util_buf_printf(&b, "# HELP llmscope_http_requests_total HTTP requests answered, by endpoint and status.\n"
                  "# TYPE llmscope_http_requests_total counter\n");
    for (int i = 0; i < n_reqs; i++)
        util_buf_printf(&b, "llmscope_http_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", reqs[i].route, reqs[i].status,
                  (unsigned long long)reqs[i].n);
    util_buf_printf(&b, "# HELP llmscope_prompt_tokens_total Prompt tokens processed.\n# TYPE llmscope_prompt_tokens_total counter\n"
                  "llmscope_prompt_tokens_total %llu\n", (unsigned long long)tok_prompt);
    util_buf_printf(&b, "# HELP llmscope_generation_tokens_total Tokens generated.\n# TYPE llmscope_generation_tokens_total counter\n"
                  "llmscope_generation_tokens_total %llu\n", (unsigned long long)tok_gen);
    util_buf_printf(&b, "# HELP llmscope_compute_thread_moves_total Times a compute thread started a job on the CPU of "
                  "another thread of its pool and moved itself away (unpinned pools only).\n"
                  "# TYPE llmscope_compute_thread_moves_total counter\nllmscope_compute_thread_moves_total %llu\n",
                  (unsigned long long)tp_spread_moves());
    for (int g = 0; g < MET_N_GAUGE; g++)
        util_buf_printf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", gdefs[g].name, gdefs[g].help, gdefs[g].name,
                  gdefs[g].name, gauges[g]);
    for (int h = 0; h < MET_N_HIST; h++) {
        const hist_def *d = &hdefs[h];
        util_buf_printf(&b, "# HELP %s %s\n# TYPE %s histogram\n", d->name, d->help, d->name);
        uint64_t cum = 0;
        for (int i = 0; i < d->n; i++) {
            cum += hists[h].counts[i];
            util_buf_printf(&b, "%s_bucket{le=\"%g\"} %llu\n", d->name, d->le[i], (unsigned long long)cum);
        }
        cum += hists[h].counts[d->n];
        util_buf_printf(&b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.17g\n%s_count %llu\n", d->name, (unsigned long long)cum,
                  d->name, hists[h].sum, d->name, (unsigned long long)hists[h].count);
    }
    pthread_mutex_unlock(&mu);
    if (b.oom || !b.s) { free(b.s); return NULL; }
    *len = b.len;
    return b.s;
}
