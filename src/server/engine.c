// engine.c — tokenizer stage and continuous-batching scheduler (see engine.h).
//
//   eng_submit ─(queue "tokenize")─> tok workers ─(queue "admit")─> scheduler
//   scheduler: admit up to `parallel` ─ one llama_decode() over every active
//   sequence (prefill chunks + one decode token each) ─ sample ─ detokenize ─
//   append to the request and wake its HTTP thread.
#include "engine.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lab.h"
#include "metrics.h"
#include "prof/pmu.h"
#include "prof/region.h"
#include "prof/thread.h"
#include "prof/trace.h"
#include "util/util.h"

struct srv_engine {
    eng_config cfg;
    const llama_model *m;
    llama_ctx *ctx;
    int32_t n_ctx;
    double read_bw;                // bytes/s the compute threads read at start (0: not measured)
    prof_queue *q_tok;             // "tokenize"
    prof_queue *q_admit;           // "admit"
    pthread_t *tok_threads;        // (cfg.tok_threads)
    struct tok_arg *tok_args;      // (cfg.tok_threads)
    int n_tok_started;
    pthread_t sched_thread;
    bool sched_started;
    struct sched *sched;           // the scheduler's state, made by eng_start()
    _Atomic int stopping;          // no new submissions
    _Atomic int cancel_all;        // scheduler cancels everything it holds
    _Atomic size_t in_flight;
    _Atomic int waiting;           // places taken in the tokenize and admit stages, <= cfg.max_queue
    _Atomic uint64_t next_id;
};

static uint64_t req_ids = 0;

srv_req *req_new(void) {
    srv_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    prof_mutex_init(&r->mu, "request");
    prof_cond_init(&r->cv, "request.output");
    r->refs = 1;
    r->slot = -1;
    r->status = 200;
    r->id = __atomic_add_fetch(&req_ids, 1, __ATOMIC_RELAXED);
    r->sp = sampler_default_params();
    r->max_tokens = 16;
    r->add_bos = true;
    return r;
}

void req_ref(srv_req *r) { atomic_fetch_add(&r->refs, 1); }

void req_unref(srv_req *r) {
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
    free(r->prompt);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->out);
    free(r->tok_end);
    free(r->gen_ids);
    free(r->tokens);
    sampler_free(r->smp);
    prof_mutex_destroy(&r->mu);
    prof_cond_destroy(&r->cv);
    free(r);
}

// Marks the request done (lock held by the caller).
static void finish_locked(srv_req *r) {
    if (r->done) return;
    r->done = true;
    r->visible = r->out_len;
    if (!r->t_done) r->t_done = util_now_ns();   // complete() may have stamped it already
    prof_cond_broadcast(&r->cv);
}

void req_fail(srv_req *r, int status, const char *fmt, ...) {
    prof_mutex_lock(&r->mu);
    if (!r->done) {
        r->status = status;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, sizeof r->err, fmt, ap);
        va_end(ap);
        finish_locked(r);
    }
    prof_mutex_unlock(&r->mu);
}

// The request leaves the engine (done, failed or cancelled).
static void release(srv_engine *e, srv_req *r) {
    atomic_fetch_sub(&e->in_flight, 1);
    req_unref(r);
}

eng_submit_rc eng_submit(srv_engine *e, srv_req *r) {
    if (atomic_load(&e->stopping)) return ENG_STOPPING;
    req_ref(r);
    atomic_fetch_add(&e->in_flight, 1);
    if (!r->t_arrive) r->t_arrive = util_now_ns();
    // A place is taken from submission until the scheduler takes the request
    // from "admit" (or the tokenizer stage drops it), so a request being
    // tokenized counts too and the push to "admit" never finds it full.
    int w = atomic_load(&e->waiting);
    bool room;
    while ((room = w < e->cfg.max_queue) && !atomic_compare_exchange_weak(&e->waiting, &w, w + 1)) {}
    if (!room || !prof_queue_push(e->q_tok, r)) {
        if (room) atomic_fetch_sub(&e->waiting, 1);
        atomic_fetch_sub(&e->in_flight, 1);
        req_unref(r);
        return atomic_load(&e->stopping) ? ENG_STOPPING : ENG_FULL;
    }
    met_gauge_set(MET_WAITING, (double)(prof_queue_len(e->q_tok) + prof_queue_len(e->q_admit)));
    return ENG_OK;
}

// ---- tokenizer stage ---------------------------------------------------------

// True when the request went on to "admit" (and keeps its place there).
static bool tokenize_one(srv_engine *e, srv_req *r) {
    const tok_vocab *v = e->m->vocab;
    r->t_tok_begin = util_now_ns();
    prof_region_begin("tokenize", r->id);
    trace_flow(r->id, 1);
    if (__builtin_expect(lab_case == LAB_ALLOC_CHURN, 0)) prompt_preprocess(r->prompt, r->prompt_len);
    int64_t cap = (int64_t)r->prompt_len + 8;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
    int64_t n = ids ? tok_encode(v, r->prompt, r->prompt_len, r->add_bos, r->parse_special, ids, cap) : -1;
    for (int pass = 1; ids && n >= 0 && pass < tokenize_passes(); pass++)
        n = tok_encode(v, r->prompt, r->prompt_len, r->add_bos, r->parse_special, ids, cap);
    prof_region_end("tokenize", "tokens", n);
    r->t_tok_end = util_now_ns();
    if (n < 0 || n > cap) {
        req_fail(r, 500, n < 0 ? "out of memory" : "cannot tokenize the prompt");   // -1: an allocation failed
        free(ids);
        release(e, r);
        return false;
    }
    if (n == 0) {   // nothing to start from: begin at BOS
        if (tok_bos(v) < 0) { free(ids); req_fail(r, 400, "the prompt is empty and the model has no BOS token"); release(e, r); return false; }
        ids[n++] = tok_bos(v);
    }
    if (n >= e->n_ctx) {
        free(ids);
        req_fail(r, 400, "the prompt has %lld tokens but the context holds %d", (long long)n, e->n_ctx);
        release(e, r);
        return false;
    }
    int32_t max_gen = r->max_tokens;
    if (n + max_gen > e->n_ctx) max_gen = (int32_t)(e->n_ctx - n);
    int32_t *toks = realloc(ids, sizeof(int32_t) * (size_t)(n + max_gen + 1));
    r->tok_end = malloc(sizeof(int32_t) * (size_t)(max_gen + 1));
    r->gen_ids = malloc(sizeof(int32_t) * (size_t)(max_gen + 1));
    if (!toks || !r->tok_end || !r->gen_ids) { free(toks ? toks : ids); req_fail(r, 500, "out of memory"); release(e, r); return false; }
    r->tokens = toks;
    r->max_tokens = max_gen;
    prof_mutex_lock(&r->mu);   // a streaming handler waits for the prompt to be accepted
    r->n_prompt = (int32_t)n;
    prof_cond_broadcast(&r->cv);
    prof_mutex_unlock(&r->mu);
    met_observe(MET_PROMPT_LEN, (double)n);
    if (!prof_queue_push(e->q_admit, r)) { req_fail(r, 503, "the server is shutting down"); release(e, r); return false; }
    return true;
}

typedef struct tok_arg { srv_engine *e; int i; } tok_arg;

static void *tok_main(void *p) {
    tok_arg *a = p;
    srv_engine *e = a->e;
    char name[16];
    snprintf(name, sizeof name, "tokenizer-%d", a->i);
    prof_thread_register(name, "tokenizer");
    srv_req *r;
    while ((r = prof_queue_pop(e->q_tok))) {
        bool admitted = false;
        if (atomic_load(&r->cancel) || atomic_load(&e->cancel_all)) { req_fail(r, 499, "cancelled"); release(e, r); }
        else admitted = tokenize_one(e, r);
        if (!admitted) atomic_fetch_sub(&e->waiting, 1);
    }
    prof_thread_unregister();
    return NULL;
}

// ---- scheduler ---------------------------------------------------------------

// Length of the longest suffix of s[0..n) that is a proper prefix of a stop string.
static size_t held_back(const srv_req *r, const char *s, size_t n) {
    size_t best = 0;
    for (int i = 0; i < r->n_stop; i++) {
        size_t sl = strlen(r->stop[i]);
        for (size_t k = sl - 1; k > best; k--)
            if (k <= n && !memcmp(s + n - k, r->stop[i], k)) { best = k; break; }
    }
    return best;
}

// Appends a token's text; applies stop strings. Returns 1 when a stop
// string was found (the text is cut before it), -1 when out of memory (the
// token is not appended), else 0. Lock held.
static int append_text(srv_req *r, int32_t id, const char *piece, int len) {
    if (r->out_len + (size_t)len + 1 > r->out_cap) {
        size_t nc = (r->out_cap + (size_t)len + 64) * 2;
        char *np = realloc(r->out, nc);
        if (!np) return -1;
        r->out = np;
        r->out_cap = nc;
    }
    size_t from = r->out_len;
    memcpy(r->out + r->out_len, piece, (size_t)len);
    r->out_len += (size_t)len;
    r->out[r->out_len] = 0;
    r->gen_ids[r->n_gen] = id;
    r->tok_end[r->n_gen] = (int32_t)r->out_len;
    r->n_gen++;
    for (int i = 0; i < r->n_stop; i++) {
        size_t sl = strlen(r->stop[i]);
        size_t start = from >= sl ? from - sl + 1 : 0;
        char *hit = r->out_len >= sl ? memmem(r->out + start, r->out_len - start, r->stop[i], sl) : NULL;
        if (hit) {
            size_t cut = (size_t)(hit - r->out);
            r->out_len = cut;
            r->out[cut] = 0;
            for (int t = 0; t < r->n_gen; t++)
                if ((size_t)r->tok_end[t] > cut) r->tok_end[t] = (int32_t)cut;
            return 1;
        }
    }
    r->visible = r->out_len - held_back(r, r->out, r->out_len);
    return 0;
}

typedef struct sched {
    srv_engine *e;
    srv_req **slots;          // (parallel) active requests, NULL = free
    srv_req **order;          // (parallel) active requests in admission order
    int n_active;
    int32_t *b_tok, *b_pos, *b_seq;   // (n_batch)
    int8_t *b_want;                   // (n_batch)
    srv_req **b_owner;                // (n_batch) whose logits row each wanted token is
} sched;

// The scheduler's buffers are made before its thread starts, so running
// out of memory for them is eng_start()'s error, not a crash later.
static sched *sched_new(srv_engine *e) {
    sched *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    size_t nb = (size_t)e->cfg.n_batch, par = (size_t)e->cfg.parallel;
    s->e = e;
    s->slots = calloc(par, sizeof *s->slots);
    s->order = calloc(par, sizeof *s->order);
    s->b_tok = malloc(sizeof(int32_t) * nb);
    s->b_pos = malloc(sizeof(int32_t) * nb);
    s->b_seq = malloc(sizeof(int32_t) * nb);
    s->b_want = malloc(nb);
    s->b_owner = malloc(sizeof(srv_req *) * nb);
    if (s->slots && s->order && s->b_tok && s->b_pos && s->b_seq && s->b_want && s->b_owner) return s;
    free(s->slots); free(s->order); free(s->b_tok); free(s->b_pos); free(s->b_seq); free(s->b_want); free(s->b_owner);
    free(s);
    return NULL;
}

static void sched_free(sched *s) {
    if (!s) return;
    free(s->slots); free(s->order); free(s->b_tok); free(s->b_pos); free(s->b_seq); free(s->b_want); free(s->b_owner);
    free(s);
}

static void slot_free(sched *s, srv_req *r) {
    if (r->slot >= 0) {
        s->slots[r->slot] = NULL;
        s->n_active--;
        met_gauge_set(MET_RUNNING, (double)s->n_active);
        llama_kv_clear(s->e->ctx, r->slot);
        r->slot = -1;
    }
}

static void complete(sched *s, srv_req *r, const char *finish) {
    char tail[16];
    // The slot (and the running gauge) is given back before the client is
    // told, so a client that asks /metrics right after its answer sees it.
    slot_free(s, r);   // the caller releases r once it no longer touches it
    prof_mutex_lock(&r->mu);
    int w = tok_stream_flush(&r->ts, tail, sizeof tail);
    if (w > 0 && r->n_gen > 0 && r->out_len + (size_t)w + 1 <= r->out_cap) {
        memcpy(r->out + r->out_len, tail, (size_t)w);
        r->out_len += (size_t)w;
        r->out[r->out_len] = 0;
        r->tok_end[r->n_gen - 1] = (int32_t)r->out_len;
    }
    r->finish = finish;
    if (!strcmp(finish, "cancelled") && r->status == 200) {
        bool shutdown = atomic_load(&s->e->cancel_all);
        r->status = shutdown ? 503 : 499;
        snprintf(r->err, sizeof r->err, "%s", shutdown ? "the server is shutting down" : "cancelled");
    }
    // The request's metrics too are recorded before the client is told:
    // a client that reads /metrics right after its answer finds them there.
    if (!r->done && r->status == 200) {
        r->t_done = util_now_ns();
        met_observe(MET_E2E, (double)(r->t_done - r->t_arrive) / 1e9);
        met_observe(MET_GEN_LEN, (double)r->n_gen);
        met_add_tokens((uint64_t)r->n_prompt, (uint64_t)r->n_gen);
        if (r->t_first) met_observe(MET_TTFT, (double)(r->t_first - r->t_arrive) / 1e9);
        if (r->n_gen > 1) met_observe(MET_TPOT, (double)(r->t_last - r->t_first) / 1e9 / (r->n_gen - 1));
    }
    finish_locked(r);
    prof_mutex_unlock(&r->mu);
    if (__builtin_expect(lab_case == LAB_HEAP_GROWTH, 0)) session_retain(r->prompt, r->prompt_len, r->out, r->out_len);
}

static bool admit(sched *s, srv_req *r) {
    if (atomic_load(&r->cancel) || atomic_load(&s->e->cancel_all)) { req_fail(r, 499, "cancelled"); release(s->e, r); return false; }
    int slot = -1;
    for (int i = 0; i < s->e->cfg.parallel; i++)
        if (!s->slots[i]) { slot = i; break; }
    if (slot < 0) { req_fail(r, 500, "no free slot"); release(s->e, r); return false; }
    r->smp = sampler_new(&r->sp, s->e->m->hp.n_vocab);
    if (!r->smp) { req_fail(r, 500, "out of memory"); release(s->e, r); return false; }
    r->slot = slot;
    r->n_past = 0;
    s->slots[slot] = r;
    s->n_active++;
    llama_kv_clear(s->e->ctx, slot);
    tok_stream_init(&r->ts, s->e->m->vocab, r->prompt_len == 0 && tok_kind(s->e->m->vocab) == TOK_KIND_SPM);
    r->t_admit = util_now_ns();
    met_observe(MET_QUEUE, (double)(r->t_admit - r->t_arrive) / 1e9);
    return true;
}

// One sampled token for r: record, detokenize, check the stop conditions.
static void on_token(sched *s, srv_req *r, int32_t id, uint64_t now) {
    const tok_vocab *v = s->e->m->vocab;
    if (tok_is_eog(v, id) || id == tok_bos(v)) { complete(s, r, "stop"); return; }
    char piece[TOK_STREAM_MAX];
    int w = tok_stream_push(v, &r->ts, id, piece, sizeof piece);
    r->tokens[r->n_prompt + r->n_gen] = id;
    prof_mutex_lock(&r->mu);
    int stopped = append_text(r, id, piece, w);
    if (stopped < 0) {   // the text so far stays; the request fails rather than end short
        prof_mutex_unlock(&r->mu);
        req_fail(r, 500, "out of memory");
        complete(s, r, "stop");
        return;
    }
    trace_token(r->id, r->n_gen - 1, id, r->n_gen == 1 ? now - r->t_admit : now - r->t_last);
    if (r->n_gen == 1) { r->t_first = now; trace_flow(r->id, 1); }
    else met_observe(MET_ITL, (double)(now - r->t_last) / 1e9);
    r->t_last = now;
    if (r->stream) prof_cond_broadcast(&r->cv);   // a non-streamed waiter wakes only at the end
    prof_mutex_unlock(&r->mu);
    if (__builtin_expect(lab_case == LAB_YIELD_PER_TOKEN, 0)) decode_yield();
    if (stopped) complete(s, r, "stop");
    else if (r->n_gen >= r->max_tokens) complete(s, r, "length");
}

static void *sched_main(void *p) {
    srv_engine *e = p;
    prof_thread_register("scheduler", "scheduler");
    sched s = *e->sched;
    int nb = e->cfg.n_batch, par = e->cfg.parallel;
    char err[256];
    bool closed = false;
    srv_req **order = s.order;   // admission order
    int n_order = 0;
    uint64_t win_t0 = util_now_ns(), gen_window = 0;
    for (;;) {
        // Admit: block only when nothing is running.
        while (s.n_active < par && !closed) {
            srv_req *r;
            if (s.n_active == 0) {
                r = prof_queue_pop(e->q_admit);   // idle: shows as a wait on "admit"
                if (!r) { closed = true; break; }
            } else if (!(r = prof_queue_try_pop(e->q_admit))) {
                break;
            }
            atomic_fetch_sub(&e->waiting, 1);
            if (admit(&s, r)) order[n_order++] = r;
        }
        met_gauge_set(MET_WAITING, (double)(prof_queue_len(e->q_tok) + prof_queue_len(e->q_admit)));
        if (s.n_active == 0) { if (closed) break; continue; }

        // Drop cancelled sequences; compact the admission order.
        int k = 0;
        for (int i = 0; i < n_order; i++) {
            srv_req *r = order[i];
            if (atomic_load(&r->cancel) || atomic_load(&e->cancel_all)) { complete(&s, r, "cancelled"); release(e, r); }
            else order[k++] = r;
        }
        n_order = k;
        if (n_order == 0) continue;

        // Build the step: one decode token per generating sequence, then
        // prefill chunks in admission order while the batch has room.
        int n = 0, n_want = 0, n_seqs = 0;
        for (int i = 0; i < n_order; i++) {
            srv_req *r = order[i];
            if (r->n_past < r->n_prompt || n >= nb) continue;
            s.b_tok[n] = r->tokens[r->n_past];
            s.b_pos[n] = r->n_past;
            s.b_seq[n] = r->slot;
            s.b_want[n] = 1;
            s.b_owner[n_want++] = r;
            n++;
            n_seqs++;
        }
        for (int i = 0; i < n_order && n < nb; i++) {
            srv_req *r = order[i];
            if (r->n_past >= r->n_prompt) continue;
            int32_t left = r->n_prompt - r->n_past, take = left;
            if (take > e->cfg.prefill_chunk) take = e->cfg.prefill_chunk;
            if (take > nb - n) take = nb - n;
            for (int32_t j = 0; j < take; j++) {
                s.b_tok[n] = r->tokens[r->n_past + j];
                s.b_pos[n] = r->n_past + j;
                s.b_seq[n] = r->slot;
                s.b_want[n] = (j == take - 1 && take == left);
                if (s.b_want[n]) s.b_owner[n_want++] = r;
                n++;
            }
            n_seqs++;
        }
        // Positions advance for every token in the step (a sequence's last
        // prompt token and its decode tokens are fed exactly once).
        for (int i = 0; i < n; i++) {
            srv_req *r = s.slots[s.b_seq[i]];
            r->n_past++;
        }
        llama_batch b = {.n_tokens = n, .token = s.b_tok, .pos = s.b_pos, .seq = s.b_seq, .want_logits = s.b_want};
        // A step with any prompt tokens is a prefill step (it may carry decode tokens too).
        const char *phase = n_want == n ? "decode" : "prefill";
        prof_region_begin("step", 0);
        prof_region_begin(phase, 0);
        int rc = llama_decode(e->ctx, &b, err, sizeof err);
        prof_region_end(phase, "tokens", n);
        prof_region_begin("sample", 0);
        met_observe(MET_BATCH, (double)n);
        met_gauge_set(MET_BATCH_SEQS, (double)n_seqs);
        met_gauge_set(MET_DECODE_PF, llama_ctx_decode_prefetch(e->ctx, NULL, NULL, NULL) ? 1.0 : 0.0);
        uint64_t now = util_now_ns();
        if (rc) {
            prof_region_end("sample", NULL, 0);
            prof_region_end("step", "sequences", n_seqs);
            for (int i = 0; i < n_order; i++) req_fail(order[i], 500, "forward pass failed: %s", err);
            for (int i = 0; i < n_order; i++) { complete(&s, order[i], "stop"); release(e, order[i]); }
            n_order = 0;
            continue;
        }
        for (int j = 0; j < n_want; j++) {
            srv_req *r = s.b_owner[j];
            int32_t id = sampler_sample(r->smp, llama_logits(e->ctx, j), r->tokens, r->n_prompt + r->n_gen);
            // The sampled token is fed at the next step (it is tokens[n_past]).
            on_token(&s, r, id, now);
        }
        prof_region_end("sample", "tokens", n_want);
        pmu_add_tokens(phase, (uint64_t)n);
        prof_region_end("step", "sequences", n_seqs);
        // Requests completed in on_token() left their slots: compact again.
        k = 0;
        for (int i = 0; i < n_order; i++) {
            if (order[i]->slot >= 0) order[k++] = order[i];
            else release(e, order[i]);
        }
        n_order = k;
        uint64_t used = 0;
        for (int i = 0; i < n_order; i++) used += (uint64_t)order[i]->n_past;
        met_gauge_set(MET_RUNNING, (double)s.n_active);
        met_gauge_set(MET_KV_USAGE, (double)used / ((double)par * e->n_ctx));
        if (TRACE_ON()) {
            // Counter tracks: queue depths, sequences, KV use, generated tokens/s over the last second.
            gen_window += (uint64_t)n_want;
            if (now - win_t0 >= 1000000000ull) {
                trace_counter("tokens_per_s", (double)gen_window * 1e9 / (double)(now - win_t0));
                win_t0 = now;
                gen_window = 0;
            }
            trace_counter("queue.tokenize", (double)prof_queue_len(e->q_tok));
            trace_counter("queue.admit", (double)prof_queue_len(e->q_admit));
            trace_counter("sequences.running", (double)s.n_active);
            trace_counter("kv.usage", (double)used / ((double)par * e->n_ctx));
            trace_counter("batch.tokens", (double)n);
        }
    }
    met_gauge_set(MET_RUNNING, 0);
    prof_thread_unregister();
    return NULL;
}

// ---- lifecycle ---------------------------------------------------------------

// Joins the threads that were started (the queues are closed first, so
// they drain and end).
static void eng_join(srv_engine *e) {
    atomic_store(&e->cancel_all, 1);
    if (e->q_tok) prof_queue_close(e->q_tok);
    for (int i = 0; i < e->n_tok_started; i++) pthread_join(e->tok_threads[i], NULL);
    e->n_tok_started = 0;
    if (e->q_admit) prof_queue_close(e->q_admit);
    if (e->sched_started) pthread_join(e->sched_thread, NULL);
    e->sched_started = false;
}

srv_engine *eng_start(const eng_config *cfg, const llama_model *m, char *err, size_t errlen) {
    srv_engine *e = calloc(1, sizeof *e);
    if (!e) { snprintf(err, errlen, "out of memory"); return NULL; }
    e->cfg = *cfg;
    if (e->cfg.parallel < 1) e->cfg.parallel = 1;
    if (e->cfg.max_queue < 1) e->cfg.max_queue = 1;
    if (e->cfg.tok_threads < 1) e->cfg.tok_threads = 1;
    if (e->cfg.n_batch < e->cfg.parallel) e->cfg.n_batch = e->cfg.parallel;
    if (e->cfg.prefill_chunk < 1) e->cfg.prefill_chunk = e->cfg.n_batch;
    e->m = m;
    llama_ctx_params cp = {.n_ctx = cfg->n_ctx, .n_seq = e->cfg.parallel, .n_batch = e->cfg.n_batch, .n_threads = cfg->n_threads,
                          .cpu_affinity = cfg->cpu_affinity, .numa = cfg->numa,
                          .kv_type = cfg->kv_type};
    e->ctx = llama_ctx_new(m, &cp, err, errlen);
    if (!e->ctx) { free(e); return NULL; }
    e->n_ctx = llama_ctx_n_ctx(e->ctx);
    met_gauge_set(MET_KV_BYTES, (double)llama_ctx_kv_bytes(e->ctx));
    met_gauge_set(MET_WEIGHT_BYTES, (double)gguf_file_size(m->gguf));
    const int64_t huge = llama_weights_huge_bytes(m);
    met_gauge_set(MET_WEIGHT_HUGE, huge > 0 ? (double)huge : 0.0);
    met_gauge_set(MET_WEIGHT_STEP, (double)m->weight_bytes);
    met_gauge_set(MET_DECODE_PF, llama_ctx_decode_prefetch(e->ctx, NULL, NULL, NULL) ? 1.0 : 0.0);
    // What the compute threads can read, before any request: the yardstick
    // for the weights a decode step streams (llmscope report,
    // memory-bandwidth). A few passes over a buffer far larger than the
    // caches, in 2 MiB pages where the kernel gives them, as the weights.
    if (e->cfg.bw_probe_mib > 0) {
        e->read_bw = llama_ctx_read_bandwidth(e->ctx, (size_t)e->cfg.bw_probe_mib << 20, 3);
        met_gauge_set(MET_READ_BW, e->read_bw);
    }
    e->q_tok = prof_queue_new("tokenize", (size_t)e->cfg.max_queue);
    e->q_admit = prof_queue_new("admit", (size_t)e->cfg.max_queue);
    e->tok_threads = calloc((size_t)e->cfg.tok_threads, sizeof(pthread_t));
    e->tok_args = calloc((size_t)e->cfg.tok_threads, sizeof(tok_arg));
    e->sched = sched_new(e);
    if (!e->q_tok || !e->q_admit || !e->tok_threads || !e->tok_args || !e->sched) {
        snprintf(err, errlen, "out of memory");
        eng_free(e);
        return NULL;
    }
    for (int i = 0; i < e->cfg.tok_threads; i++) {
        e->tok_args[i] = (tok_arg){e, i + 1};
        if (pthread_create(&e->tok_threads[i], NULL, tok_main, &e->tok_args[i]) != 0) {
            snprintf(err, errlen, "cannot start the tokenizer threads");
            eng_free(e);
            return NULL;
        }
        e->n_tok_started = i + 1;
    }
    if (pthread_create(&e->sched_thread, NULL, sched_main, e) != 0) {
        snprintf(err, errlen, "cannot start the scheduler thread");
        eng_free(e);
        return NULL;
    }
    e->sched_started = true;
    return e;
}

void eng_stop(srv_engine *e, uint64_t deadline_ns) {
    atomic_store(&e->stopping, 1);
    while (atomic_load(&e->in_flight) > 0 && util_now_ns() < deadline_ns) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    // Anything still queued behind a closed queue is drained by the workers;
    // the scheduler fails what it pops after cancel_all.
    eng_join(e);
}

void eng_free(srv_engine *e) {
    if (!e) return;
    eng_join(e);   // a no-op after eng_stop()
    prof_queue_free(e->q_tok);
    prof_queue_free(e->q_admit);
    free(e->tok_threads);
    free(e->tok_args);
    sched_free(e->sched);
    llama_ctx_free(e->ctx);
    free(e);
}

int32_t eng_n_ctx(const srv_engine *e) { return e->n_ctx; }
int eng_parallel(const srv_engine *e) { return e->cfg.parallel; }
int eng_n_threads(const srv_engine *e) { return llama_ctx_n_threads(e->ctx); }
const char *eng_placement(const srv_engine *e) { return llama_ctx_placement(e->ctx); }
const char *eng_kv_type(const srv_engine *e) { return llama_ctx_kv_type(e->ctx); }
double eng_read_bandwidth(const srv_engine *e) { return e->read_bw; }
size_t eng_in_flight(const srv_engine *e) { return atomic_load(&e->in_flight); }
