// engine.h — the request path behind the HTTP layer: a request object, the
// tokenizer stage (a pool of workers fed by the named queue "tokenize") and
// the scheduler (fed by the named queue "admit"), which runs continuous
// batching: each step it admits waiting sequences up to `parallel`, runs
// prefill chunks and one decode token of every active sequence in a single
// forward pass (weights are read once per step), samples, detokenizes and
// hands text to the waiting HTTP thread.
//
// Thread safety: eng_submit() and the srv_req accessors may be called from any
// thread. A request's output fields are guarded by its mutex `mu`; waiters
// sleep on `cv`. The scheduler owns the fields marked "scheduler".
#ifndef LLMSCOPE_ENGINE_H
#define LLMSCOPE_ENGINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/llama.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "prof/sync.h"

#define REQ_MAX_STOP 4
#define REQ_MAX_STOP_LEN 256

typedef struct srv_req {
    uint64_t id;
    // What was asked (set before eng_submit(), then read-only).
    char *prompt;                  // UTF-8, owned
    size_t prompt_len;
    bool add_bos;                  // prepend BOS when the model asks for it
    bool parse_special;            // control-token texts become tokens (chat templates)
    bool stream;                   // the waiter wants every token (else only the end)
    int32_t max_tokens;
    sampler_params sp;
    char *stop[REQ_MAX_STOP];      // owned
    int n_stop;

    // Output, guarded by mu.
    prof_mutex mu;
    prof_cond cv;
    char *out;                     // generated text (stop strings removed)
    size_t out_len, out_cap;
    size_t visible;                // out[0..visible) can no longer change
    int32_t *tok_end;              // (n_gen) end offset in out of each token's text
    int32_t *gen_ids;              // (n_gen) generated token ids
    int32_t n_gen;
    int32_t n_prompt;
    bool done;
    int status;                    // 200, or the HTTP status of the failure
    char err[256];                 // message when status != 200
    const char *finish;            // "stop", "length", "cancelled"
    // Times, monotonic ns (0 = not reached).
    uint64_t t_arrive, t_tok_begin, t_tok_end, t_admit, t_first, t_last, t_done;

    _Atomic int cancel;            // set by the HTTP side when the client left
    _Atomic int refs;

    // Scheduler-owned.
    int32_t *tokens;               // (n_prompt + max_tokens) prompt then generated ids
    int32_t n_past;                // positions in the KV slot
    int slot;
    sampler *smp;
    tok_stream ts;
} srv_req;

typedef struct eng_config {
    int n_threads;       // compute threads (0 = all CPUs)
    int parallel;        // sequences decoded together (KV slots)
    int n_ctx;           // positions per sequence (0 = the model's, at most 4096)
    int max_queue;       // requests waiting (tokenize + admit) before 503
    int tok_threads;     // tokenizer workers
    int n_batch;         // most tokens per forward step
    int prefill_chunk;   // most prompt tokens of one sequence per step
    const char *cpu_affinity;   // --cpu-affinity LIST (NULL = compute threads not pinned)
    const char *numa;           // --numa off|distribute|isolate (NULL = off)
    enum llama_kv_type kv_type; // --kv-type f16 (default) | f32
    int bw_probe_mib;           // --bw-probe-mib: MiB streamed to measure the read bandwidth at start (0 = not)
} eng_config;

typedef struct srv_engine srv_engine;

srv_engine *eng_start(const eng_config *cfg, const llama_model *m, char *err, size_t errlen);
// Stops accepting; waits until the monotonic deadline for in-flight requests
// to finish, then cancels what is left and joins every thread.
void eng_stop(srv_engine *e, uint64_t deadline_ns);
void eng_free(srv_engine *e);

int32_t eng_n_ctx(const srv_engine *e);
int eng_parallel(const srv_engine *e);
int eng_n_threads(const srv_engine *e);
const char *eng_placement(const srv_engine *e);   // where the compute threads run
const char *eng_kv_type(const srv_engine *e);     // the KV cache's elements: "f16" or "f32"
double eng_read_bandwidth(const srv_engine *e);   // bytes/s measured at start (0 = not measured)
size_t eng_in_flight(const srv_engine *e);   // submitted and not yet done

// A new request with one reference (the caller's). NULL on OOM.
srv_req *req_new(void);
void req_ref(srv_req *r);
void req_unref(srv_req *r);
// Fails the request (status, message) and wakes its waiter; no-op when done.
void req_fail(srv_req *r, int status, const char *fmt, ...);

typedef enum { ENG_OK = 0, ENG_FULL = -1, ENG_STOPPING = -2 } eng_submit_rc;
// Hands the request to the tokenizer stage (the engine takes a reference).
eng_submit_rc eng_submit(srv_engine *e, srv_req *r);

#endif
