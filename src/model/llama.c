// llama.c — loading a llama-family GGUF model and the batched forward pass.
// The pass runs on every thread of the context's pool at once (tp_run), each
// thread doing its share of every operation and meeting the others at
// barriers, so one call reads every weight once for all tokens of the batch.
// Thread safety: see llama.h.
#include "llama.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compute/affinity.h"
#include "../compute/ops.h"
#include "../compute/quant.h"
#include "../util/util.h"
#include "../compute/threadpool.h"

#define LLAMA_MAX_CTX_DEFAULT 4096

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void *model_own(llama_model *m, size_t bytes) {
    void **o = realloc(m->owned, sizeof(void *) * (size_t)(m->n_owned + 1));
    if (!o) return NULL;
    m->owned = o;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    m->owned[m->n_owned++] = p;
    return p;
}

// Reads an integer hyperparameter "<arch>.<key>".
static bool hp_int(const gguf_ctx *g, const char *arch, const char *key, int64_t *out) {
    char full[160];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return gguf_get_int(g, full, out);
}

static bool hp_float(const gguf_ctx *g, const char *arch, const char *key, double *out) {
    char full[160];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return gguf_get_float(g, full, out);
}

// Finds tensor `name` of shape {K, N} (N == 0: a vector of K) and makes it a
// matmul weight. Tensors whose rows are not whole blocks (the stories260K
// Q8_0 file's ffn_down, 172 per row) are dequantized as one flat stream of
// blocks into an f32 copy.
static int load_weight(llama_model *m, const char *name, int64_t K, int64_t N, mm_weight *w,
                       char *err, size_t errlen) {
    const gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    const char *path = gguf_path(m->gguf);
    if (!t) {
        seterr(err, errlen, "%s: missing tensor '%s'", path, name);
        return -1;
    }
    int64_t want_n = N ? N : 1;
    uint32_t want_dims = N ? 2 : 1;
    bool ok = t->ne[0] == K && t->ne[1] == want_n && t->ne[2] == 1 && t->ne[3] == 1 &&
              (t->n_dims == want_dims || (t->n_dims == 2 && N == 0 && t->ne[1] == 1));
    if (!ok) {
        seterr(err, errlen, "%s: offset %llu: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
               path, (unsigned long long)t->file_offset, name, (long long)t->ne[0], (long long)t->ne[1],
               (long long)t->ne[2], (long long)t->ne[3], (long long)K, (long long)want_n);
        return -1;
    }
    w->K = K;
    w->N = want_n;
    w->type = t->type;
    w->data = t->data;
    m->n_params += (uint64_t)(K * want_n);
    m->weight_bytes += t->nbytes;
    if (K % ggml_blck_size(t->type) != 0) {
        float *f = model_own(m, sizeof(float) * (size_t)(K * want_n));
        if (!f) {
            seterr(err, errlen, "%s: out of memory converting tensor '%s'", path, name);
            return -1;
        }
        dequantize_row(t->type, t->data, f, K * want_n);
        w->type = GGML_TYPE_F32;
        w->data = f;
    }
    return 0;
}

// The block sums the batched q8_0 kernel reads (mm_weight.bsum), where this
// machine's kernels use them: 4 bytes per 32-value block, 12% of the weight.
// All of a model's in one region of huge pages, as the weights are (the
// kernel streams them beside the weights), listed as "PATH, block sums".
static int attach_block_sums(llama_model *m, mm_weight **ws, int n, char *err, size_t errlen) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (mm_block_sums_size(ws[i]) + 63) & ~(size_t)63;
    if (!total) return 0;
    char name[300];
    snprintf(name, sizeof name, "%s, block sums", gguf_path(m->gguf));
    uint8_t *mem = util_huge_alloc(total, &m->bsum_len, name);
    if (!mem) {
        seterr(err, errlen, "%s: out of memory for the block sums (%zu bytes)", gguf_path(m->gguf), total);
        return -1;
    }
    m->bsum_mem = mem;
    for (int i = 0; i < n; i++) {
        const size_t bytes = mm_block_sums_size(ws[i]);
        if (!bytes) continue;
        mm_block_sums(ws[i], mem);
        ws[i]->bsum = mem;
        mem += (bytes + 63) & ~(size_t)63;
    }
    return 0;
}

// The q8_0, q4_0, Q4_K and Q6_K matrices rewritten in strips of 16 rows (mm_to_strips) where the
// kernels read strips, in the private copy only (a mapping stays as the
// file is). Not the embedding table when it is also the classifier: its
// rows are looked up one by one.
static bool strips_for(const llama_model *m, const mm_weight *w) {
    return mm_strips_wanted(w) && w->data != m->tok_embd.data;
}

static int lay_out_strips(llama_model *m, mm_weight **ws, int n, char *err, size_t errlen) {
    int want = 0;
    for (int i = 0; i < n; i++) want += strips_for(m, ws[i]);
    if (!want || gguf_hold_of(m->gguf) != GGUF_HOLD_COPY || gguf_set_writable(m->gguf, 1) != 0) return 0;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (!strips_for(m, ws[i])) continue;
        if (mm_to_strips(ws[i], (void *)ws[i]->data) != 0) {
            seterr(err, errlen, "%s: out of memory rewriting the weights in strips", gguf_path(m->gguf));
            rc = -1;
        } else m->n_strips++;
    }
    gguf_set_writable(m->gguf, 0);
    return rc;
}

// A vector weight (norm) as f32, converted when the file stores another type.
static const float *load_vector(llama_model *m, const char *name, int64_t n, char *err, size_t errlen) {
    mm_weight w;
    if (load_weight(m, name, n, 0, &w, err, errlen) != 0) return NULL;
    if (w.type == GGML_TYPE_F32) return w.data;
    float *f = model_own(m, sizeof(float) * (size_t)n);
    if (!f) {
        seterr(err, errlen, "%s: out of memory converting tensor '%s'", gguf_path(m->gguf), name);
        return NULL;
    }
    dequantize_row(w.type, w.data, f, n);
    return f;
}

llama_model *llama_load(const char *path, char *err, size_t errlen) {
    return llama_load_with(path, NULL, err, errlen);
}

llama_model *llama_load_with(const char *path, const llama_load_params *p, char *err, size_t errlen) {
    llama_model *m = calloc(1, sizeof *m);
    if (!m) {
        seterr(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    m->mmap_asked = p && p->mmap;
    m->gguf = gguf_open_with(path, m->mmap_asked ? GGUF_HOLD_MAP : GGUF_HOLD_COPY, err, errlen);
    if (!m->gguf) goto fail;
    const gguf_ctx *g = m->gguf;

    gguf_str s;
    char arch[64] = "";
    if (!gguf_get_str(g, "general.architecture", &s)) {
        seterr(err, errlen, "%s: no general.architecture key", path);
        goto fail;
    }
    snprintf(arch, sizeof arch, "%.*s", (int)(s.len < 63 ? s.len : 63), s.ptr);
    if (strcmp(arch, "llama") != 0) {
        seterr(err, errlen, "%s: architecture '%s' is not supported (llama only)", path, arch);
        goto fail;
    }
    if (gguf_get_str(g, "general.name", &s))
        snprintf(m->name, sizeof m->name, "%.*s", (int)(s.len < 127 ? s.len : 127), s.ptr);
    else {
        const char *b = strrchr(path, '/');
        snprintf(m->name, sizeof m->name, "%s", b ? b + 1 : path);
    }

    llama_hparams *hp = &m->hp;
    int64_t v;
    struct { const char *key; int32_t *dst; bool required; } ints[] = {
        {"embedding_length", &hp->n_embd, true},
        {"block_count", &hp->n_layer, true},
        {"attention.head_count", &hp->n_head, true},
        {"feed_forward_length", &hp->n_ff, true},
        {"attention.head_count_kv", &hp->n_head_kv, false},
        {"rope.dimension_count", &hp->n_rot, false},
        {"context_length", &hp->n_ctx_train, false},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (!hp_int(g, arch, ints[i].key, &v)) {
            if (ints[i].required) {
                seterr(err, errlen, "%s: missing metadata %s.%s", path, arch, ints[i].key);
                goto fail;
            }
            continue;
        }
        if (v <= 0 || v > (1 << 20)) {
            seterr(err, errlen, "%s: metadata %s.%s = %lld is out of range", path, arch, ints[i].key, (long long)v);
            goto fail;
        }
        *ints[i].dst = (int32_t)v;
    }
    if (!hp->n_head_kv) hp->n_head_kv = hp->n_head;
    if (hp->n_embd % hp->n_head != 0 || hp->n_head % hp->n_head_kv != 0) {
        seterr(err, errlen, "%s: inconsistent heads: embedding %d, heads %d, kv heads %d", path,
               hp->n_embd, hp->n_head, hp->n_head_kv);
        goto fail;
    }
    hp->head_dim = hp->n_embd / hp->n_head;
    if (!hp->n_rot) hp->n_rot = hp->head_dim;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2) {
        seterr(err, errlen, "%s: rope dimension %d does not fit head size %d", path, hp->n_rot, hp->head_dim);
        goto fail;
    }
    hp->kv_dim = hp->n_head_kv * hp->head_dim;
    if (!hp->n_ctx_train) hp->n_ctx_train = 2048;
    double f;
    hp->rms_eps = hp_float(g, arch, "attention.layer_norm_rms_epsilon", &f) ? (float)f : 1e-5f;
    hp->rope_theta = hp_float(g, arch, "rope.freq_base", &f) ? (float)f : 10000.0f;
    if (!(hp->rms_eps > 0 && hp->rms_eps < 1) || !(hp->rope_theta > 1)) {
        seterr(err, errlen, "%s: rms epsilon %g or rope base %g out of range", path, hp->rms_eps, hp->rope_theta);
        goto fail;
    }

    m->vocab = tok_load_gguf(g, err, errlen);
    if (!m->vocab) goto fail;
    const gguf_tensor *te = gguf_find_tensor(g, "token_embd.weight");
    if (!te) {
        seterr(err, errlen, "%s: missing tensor 'token_embd.weight'", path);
        goto fail;
    }
    hp->n_vocab = (int32_t)te->ne[1];
    if (hp->n_vocab != tok_n_vocab(m->vocab)) {
        seterr(err, errlen, "%s: token_embd has %lld rows but the vocabulary has %d tokens", path,
               (long long)te->ne[1], tok_n_vocab(m->vocab));
        goto fail;
    }
    m->ftype = te->type;

    const int64_t E = hp->n_embd, KV = hp->kv_dim, F = hp->n_ff, V = hp->n_vocab;
    if (load_weight(m, "token_embd.weight", E, V, &m->tok_embd, err, errlen)) goto fail;
    if (!(m->output_norm = load_vector(m, "output_norm.weight", E, err, errlen))) goto fail;
    if (gguf_find_tensor(g, "output.weight")) {
        if (load_weight(m, "output.weight", E, V, &m->output, err, errlen)) goto fail;
    } else {
        m->output = m->tok_embd;   // tied: the embedding table is also the classifier
    }
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        seterr(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    for (int l = 0; l < hp->n_layer; l++) {
        llama_layer *L = &m->layers[l];
        char nm[96];
#define W(field, tname, K_, N_)                                                     \
        snprintf(nm, sizeof nm, "blk.%d." tname ".weight", l);                        \
        if (load_weight(m, nm, K_, N_, &L->field, err, errlen)) goto fail;
#define NV(field, tname)                                                             \
        snprintf(nm, sizeof nm, "blk.%d." tname ".weight", l);                        \
        if (!(L->field = load_vector(m, nm, E, err, errlen))) goto fail;
        NV(attn_norm, "attn_norm")
        W(wq, "attn_q", E, E)
        W(wk, "attn_k", E, KV)
        W(wv, "attn_v", E, KV)
        W(wo, "attn_output", E, E)
        NV(ffn_norm, "ffn_norm")
        W(w_gate, "ffn_gate", E, F)
        W(w_up, "ffn_up", E, F)
        W(w_down, "ffn_down", F, E)
#undef W
#undef NV
    }
    {
        mm_weight **all = malloc(sizeof *all * (size_t)(7 * hp->n_layer + 1));
        if (!all) {
            seterr(err, errlen, "%s: out of memory", path);
            goto fail;
        }
        int n = 0;
        all[n++] = &m->output;
        for (int l = 0; l < hp->n_layer; l++) {
            llama_layer *L = &m->layers[l];
            mm_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
            for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) all[n++] = ws[i];
        }
        int rc = p && p->rows ? 0 : lay_out_strips(m, all, n, err, errlen);
        if (!rc) rc = attach_block_sums(m, all, n, err, errlen);
        free(all);
        if (rc) goto fail;
    }
    // A pass reads one embedding row per token, not the whole table (unless
    // the table is also the classifier).
    if (m->output.data != m->tok_embd.data) m->weight_bytes -= te->nbytes;
    return m;
fail:
    llama_free(m);
    return NULL;
}

int64_t llama_weights_huge_bytes(const llama_model *m) {
    if (gguf_hold_of(m->gguf) != GGUF_HOLD_COPY) return 0;
    const int64_t h = util_huge_bytes(gguf_file_data(m->gguf)), size = (int64_t)gguf_file_size(m->gguf);
    return h > size ? size : h;   // the mapping ends on a 2 MiB boundary, past the file
}

void llama_weights_memory(const llama_model *m, char *buf, size_t n) {
    const double mib = (double)gguf_file_size(m->gguf) / (1 << 20);
    if (gguf_hold_of(m->gguf) == GGUF_HOLD_COPY) {
        const int64_t h = llama_weights_huge_bytes(m);
        if (h < 0) snprintf(buf, n, "read into memory advised for 2 MiB pages (%.1f MiB; /proc/self/smaps unreadable)", mib);
        else snprintf(buf, n, "read into memory, %.1f of %.1f MiB in 2 MiB pages", (double)h / (1 << 20), mib);
        if (m->n_strips) {
            const size_t l = strlen(buf);
            snprintf(buf + l, n - l, "; %d matrices in strips of 16 rows", m->n_strips);
        }
    } else if (m->mmap_asked) {
        snprintf(buf, n, "file mapping (--mmap), %.1f MiB in 4 KiB pages", mib);
    } else {
        const char *thp = util_thp_mode();
        if (!strcmp(thp, "never") || !strcmp(thp, "unavailable"))
            snprintf(buf, n, "file mapping, %.1f MiB in 4 KiB pages (transparent huge pages: %s)", mib, thp);
        else
            snprintf(buf, n, "file mapping, %.1f MiB in 4 KiB pages (too little free memory for a copy)", mib);
    }
}

void llama_free(llama_model *m) {
    if (!m) return;
    util_huge_free(m->bsum_mem, m->bsum_len);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    tok_free(m->vocab);
    gguf_close(m->gguf);
    free(m);
}

// ---- Inference context -----------------------------------------------------

struct llama_ctx {
    const llama_model *m;
    tp_pool *pool;
    char placement[256];   // where the compute threads run (llama_ctx_placement)
    int32_t n_ctx, n_seq, n_batch;
    void *k_cache;         // (n_layer, n_seq, n_head_kv, n_ctx, head_dim): a KV head's positions contiguous
    void *v_cache;         // (n_layer, n_seq, n_head_kv, n_ctx, head_dim)
    bool kv_f16;           // cache elements are f16 (else f32)
    // Activations for up to n_batch tokens.
    float *x;              // (n_batch, n_embd) residual stream
    float *xb;             // (n_batch, n_embd)
    float *xb2;            // (n_batch, n_embd)
    float *q;              // (n_batch, n_embd)
    float *k;              // (n_batch, kv_dim)
    float *v;              // (n_batch, kv_dim)
    float *hb;             // (n_batch, n_ff)
    float *hb2;            // (n_batch, n_ff)
    float *rope;           // (n_batch, n_rot) cos/sin per token
    float *att;            // (n_threads, n_ctx, 8) attention scores (8 heads of a KV group at a time)
    void *wdata;           // quantized activations
    size_t wdata_bytes;
    float *logits;         // (n_batch, n_vocab)
    int32_t *out_idx;      // (n_batch) tokens whose logits are wanted
    int32_t *ablk;         // (n_batch + 1) starts of attention blocks: runs of up to 8
                           // tokens of one sequence at consecutive positions
    int32_t n_ablk;
    int32_t n_out;
    const llama_batch *batch;   // the batch of the decode in progress
    // Per-thread copies for small batches (see forward_small): each thread
    // keeps its own residual stream and quantizes its own matmul inputs, so
    // those steps need no barrier.
    int n_threads;
    float *p_x;            // (n_threads, SMALL_T, n_embd) residual stream
    float *p_xn;           // (n_threads, SMALL_T, max(n_embd, n_ff)) normed / SwiGLU input
    float *p_rope;         // (n_threads, SMALL_T, n_rot)
    void *p_wdata;         // (n_threads, p_wdata_bytes) quantized activations
    size_t p_wdata_bytes;
    _Atomic int *glu_halves;   // (mm_pair_halves(n_ff)) the SwiGLU's chunks (glu_split)
    mm_pf_ctl pf;          // single-token steps: the strip kernels' prefetch, chosen by measurement
};

// Batches up to this many tokens take the per-thread path (decode steps of
// a few sequences); larger ones split every step between threads.
#define SMALL_T 8

static void *xalloc(size_t bytes, bool *ok) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) { *ok = false; return NULL; }
    return p;
}

static size_t max_wdata(const llama_model *m, int64_t T) {
    const mm_weight *ws[] = {&m->output};
    size_t best = mm_wdata_size(ws[0]->type, ws[0]->K, T);
    for (int l = 0; l < m->hp.n_layer; l++) {
        const llama_layer *L = &m->layers[l];
        const mm_weight *lw[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) {
            size_t s = mm_wdata_size(lw[i]->type, lw[i]->K, T);
            if (s > best) best = s;
        }
    }
    return best;
}

llama_ctx *llama_ctx_new(const llama_model *m, const llama_ctx_params *p, char *err, size_t errlen) {
    const llama_hparams *hp = &m->hp;
    int32_t n_ctx = p->n_ctx > 0 ? p->n_ctx : (hp->n_ctx_train < LLAMA_MAX_CTX_DEFAULT ? hp->n_ctx_train : LLAMA_MAX_CTX_DEFAULT);
    int32_t n_seq = p->n_seq > 0 ? p->n_seq : 1;
    int32_t n_batch = p->n_batch > 0 ? p->n_batch : 512;
    int32_t n_threads = p->n_threads > 0 ? p->n_threads : tp_default_threads();
    if (n_ctx > (1 << 20) || n_seq > 4096 || n_batch > (1 << 16) || n_threads > 1024) {
        seterr(err, errlen, "context parameters out of range (ctx %d, seq %d, batch %d, threads %d)",
               n_ctx, n_seq, n_batch, n_threads);
        return NULL;
    }
    aff_plan plan;
    char aerr[200];
    if (!aff_plan_for_process(n_threads, p->cpu_affinity, p->numa, &plan, aerr, sizeof aerr)) {
        seterr(err, errlen, "%s", aerr);
        return NULL;
    }
    llama_ctx *c = calloc(1, sizeof *c);
    if (!c) { seterr(err, errlen, "out of memory"); return NULL; }
    snprintf(c->placement, sizeof c->placement, "%s", plan.summary);
    c->m = m;
    c->n_ctx = n_ctx;
    c->n_seq = n_seq;
    c->n_batch = n_batch;
    bool ok = true;
    const size_t B = (size_t)n_batch, E = (size_t)hp->n_embd, KV = (size_t)hp->kv_dim, F = (size_t)hp->n_ff;
    const size_t kv_elems = (size_t)hp->n_layer * (size_t)n_seq * (size_t)n_ctx * KV;
    c->kv_f16 = p->kv_type != LLAMA_KV_F32;
    const size_t kv_es = op_kv_elem_size(c->kv_f16);
    c->k_cache = xalloc(kv_es * kv_elems, &ok);
    c->v_cache = xalloc(kv_es * kv_elems, &ok);
    c->x = xalloc(sizeof(float) * B * E, &ok);
    c->xb = xalloc(sizeof(float) * B * E, &ok);
    c->xb2 = xalloc(sizeof(float) * B * E, &ok);
    c->q = xalloc(sizeof(float) * B * E, &ok);
    c->k = xalloc(sizeof(float) * B * KV, &ok);
    c->v = xalloc(sizeof(float) * B * KV, &ok);
    c->hb = xalloc(sizeof(float) * B * F, &ok);
    c->hb2 = xalloc(sizeof(float) * B * F, &ok);
    c->rope = xalloc(sizeof(float) * B * (size_t)hp->n_rot, &ok);
    c->att = xalloc(sizeof(float) * 8 * (size_t)n_threads * (size_t)n_ctx, &ok);
    c->wdata_bytes = max_wdata(m, n_batch);
    c->wdata = xalloc(c->wdata_bytes, &ok);
    c->logits = xalloc(sizeof(float) * B * (size_t)hp->n_vocab, &ok);
    c->out_idx = xalloc(sizeof(int32_t) * B, &ok);
    c->ablk = xalloc(sizeof(int32_t) * (B + 1), &ok);
    const size_t NT = (size_t)n_threads, S = SMALL_T, H = E > F ? E : F;
    c->n_threads = n_threads;
    c->p_x = xalloc(sizeof(float) * NT * S * E, &ok);
    c->p_xn = xalloc(sizeof(float) * NT * S * H, &ok);
    c->p_rope = xalloc(sizeof(float) * NT * S * (size_t)hp->n_rot, &ok);
    c->p_wdata_bytes = (max_wdata(m, SMALL_T) + 63) & ~(size_t)63;
    c->p_wdata = xalloc(NT * c->p_wdata_bytes, &ok);
    mm_pf_init(&c->pf);
    c->glu_halves = xalloc(sizeof(_Atomic int) * mm_pair_halves(hp->n_ff), &ok);
    if (c->glu_halves)
        for (size_t i = 0; i < mm_pair_halves(hp->n_ff); i++) atomic_init(&c->glu_halves[i], 0);
    if (!ok) {
        seterr(err, errlen, "out of memory for a context of %d positions x %d sequences (KV cache %.1f MiB)",
               n_ctx, n_seq, 2.0 * (double)kv_es * (double)kv_elems / (1 << 20));
        llama_ctx_free(c);
        return NULL;
    }
    c->pool = tp_create_placed(n_threads, "compute", plan.cpu[0] >= 0 ? plan.cpu : NULL);
    if (!c->pool) {
        seterr(err, errlen, "cannot start %d compute threads", n_threads);
        llama_ctx_free(c);
        return NULL;
    }
    return c;
}

const char *llama_ctx_placement(const llama_ctx *c) { return c->placement; }

void llama_ctx_free(llama_ctx *c) {
    if (!c) return;
    if (c->pool) tp_free(c->pool);
    void *bufs[] = {c->k_cache, c->v_cache, c->x, c->xb, c->xb2, c->q, c->k, c->v, c->hb, c->hb2,
                    c->rope, c->att, c->wdata, c->logits, c->out_idx, c->ablk, c->p_x, c->p_xn, c->p_rope, c->p_wdata,
                    (void *)c->glu_halves};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(c);
}

int32_t llama_ctx_n_ctx(const llama_ctx *c) { return c->n_ctx; }
int32_t llama_ctx_n_seq(const llama_ctx *c) { return c->n_seq; }
int32_t llama_ctx_n_batch(const llama_ctx *c) { return c->n_batch; }
int32_t llama_ctx_n_threads(const llama_ctx *c) { return tp_n_threads(c->pool); }
double llama_ctx_read_bandwidth(llama_ctx *c, size_t bytes, int reps) {
    return mm_measure_read_bw(c->pool, bytes, reps);
}

uint64_t llama_ctx_kv_bytes(const llama_ctx *c) {
    const llama_hparams *hp = &c->m->hp;
    return 2ull * op_kv_elem_size(c->kv_f16) * (uint64_t)hp->n_layer * (uint64_t)c->n_seq * (uint64_t)c->n_ctx *
           (uint64_t)hp->kv_dim;
}

const char *llama_ctx_kv_type(const llama_ctx *c) { return c->kv_f16 ? "f16" : "f32"; }

bool llama_kv_type_parse(const char *s, enum llama_kv_type *out) {
    if (!strcmp(s, "f16")) *out = LLAMA_KV_F16;
    else if (!strcmp(s, "f32")) *out = LLAMA_KV_F32;
    else return false;
    return true;
}

void llama_kv_clear(llama_ctx *c, int32_t seq) {
    (void)c;
    (void)seq;   // positions are overwritten before they are read; nothing to do
}

float *llama_logits(llama_ctx *c, int32_t j) {
    if (j < 0 || j >= c->n_out) return NULL;
    return c->logits + (size_t)j * (size_t)c->m->hp.n_vocab;
}

int32_t llama_n_logits(const llama_ctx *c) { return c->n_out; }

// Element i of a cache (k_cache or v_cache), f32 or f16.
static inline void *kv_elem(const llama_ctx *c, void *cache, size_t i) {
    return (char *)cache + i * op_kv_elem_size(c->kv_f16);
}

// The positions of one KV head from cache element `base` on, HD apart.
static inline op_kv kv_head(llama_ctx *c, size_t base, int64_t HD) {
    return (op_kv){kv_elem(c, c->k_cache, base), kv_elem(c, c->v_cache, base), HD, c->kv_f16};
}

// y_i = x · W_iᵀ for weights that read the same input x (T rows). Weights of
// one activation format share one mm_prepare(). Called by every thread; the
// rows mm_prepare_rows() gives this thread for ws[0] must be complete (or
// all rows, after a barrier), and it ends with a barrier.
static void matmul_group(llama_ctx *c, const mm_weight *const *ws, float *const *ys, int n,
                         const float *x, int64_t T, int ith, int nth) {
    bool done[8] = {false};
    for (int i = 0; i < n; i++) {
        if (done[i]) continue;
        mm_prepare(ws[i], x, T, c->wdata, ith, nth);
        tp_barrier(c->pool);
        for (int j = i; j < n; j++) {
            if (done[j] || !mm_same_input(ws[j], ws[i])) continue;
            mm_compute_shared(ws[j], x, c->wdata, T, ys[j], tp_shared_counter(c->pool), ith, nth);
            done[j] = true;
        }
        tp_barrier(c->pool);
    }
}

// The SwiGLU of rows [r0, r1) of the gate and up products (hb, hb2) of all
// the batch's tokens, into hb, then those columns of the down product's input
// packed into the shared wdata. Items of different threads own different
// rows, so no barrier is needed before the down product's.
typedef struct glu_arg {
    llama_ctx *c;
    const mm_weight *down;
    int64_t T, F;
} glu_arg;

static void glu_rows(void *p, long r0, long r1) {
    const glu_arg *a = p;
    for (int64_t t = 0; t < a->T; t++)
        op_silu_mul(a->c->hb + t * a->F + r0, a->c->hb + t * a->F + r0, a->c->hb2 + t * a->F + r0, (int)(r1 - r0));
    mm_prepare_range(a->down, a->c->hb, a->T, a->c->wdata, r0, r1);
}

// Whether a layer's FFN takes glu_rows: gate and up one input, down's input
// packed in pieces. Otherwise every thread computes the whole SwiGLU and
// packs it itself: in batched decode (8 sequences of stories110M Q8_0) the
// SwiGLU took 3.0% of the step's samples and the packing 3.6%, against
// 1.3% and 2.6% split. Same-process rounds of 64 steps: 1.010-1.018x
// (medians of three runs; the host's noise is larger than that).
static bool glu_split(const llama_layer *L, int64_t T, int64_t F) {
    return mm_same_input(&L->w_up, &L->w_gate) && L->w_up.N == F && L->w_gate.N == F && L->w_down.K == F &&
           mm_prepare_splits(&L->w_down, T);
}

// The pass for batches of at most SMALL_T tokens (decode). Every thread
// holds the whole residual stream and normalizes and quantizes every matmul
// input itself (a few thousand values: cheaper than a barrier), and computes
// its own rows of each product; a thread ropes, caches and attends the KV
// heads it owns. Five barriers per layer remain, one after each product and
// one after attention. Threads compute identical residuals: the same
// operations on the same values.
static void forward_small(llama_ctx *c, int ith, int nth) {
    const llama_model *m = c->m;
    const llama_hparams *hp = &m->hp;
    const llama_batch *b = c->batch;
    const int64_t T = b->n_tokens, E = hp->n_embd, KV = hp->kv_dim, F = hp->n_ff, HD = hp->head_dim;
    const int64_t H = E > F ? E : F;
    const int64_t rowb = (int64_t)ggml_nbytes(m->tok_embd.type, E);
    float *x = c->p_x + (size_t)ith * SMALL_T * (size_t)E;
    float *xn = c->p_xn + (size_t)ith * SMALL_T * (size_t)H;
    float *rope = c->p_rope + (size_t)ith * SMALL_T * (size_t)hp->n_rot;
    void *wd = (char *)c->p_wdata + (size_t)ith * c->p_wdata_bytes;
    for (int64_t t = 0; t < T; t++) {
        dequantize_row(m->tok_embd.type, (const char *)m->tok_embd.data + rowb * b->token[t], x + t * E, E);
        op_rope_table(rope + t * hp->n_rot, hp->n_rot, b->pos[t], hp->rope_theta);
    }
    const int group = hp->n_head / hp->n_head_kv;
    const size_t seq_stride = (size_t)c->n_ctx * (size_t)KV;
    const size_t head_stride = (size_t)c->n_ctx * (size_t)HD;   // the cache is [seq][kv head][position][HD]
    const size_t layer_stride = (size_t)c->n_seq * seq_stride;
    float *att = c->att + 8 * (size_t)ith * (size_t)c->n_ctx;
    long g0, g1;   // this thread's KV heads
    tp_split(hp->n_head_kv, ith, nth, 1, &g0, &g1);

    for (int l = 0; l < hp->n_layer; l++) {
        const llama_layer *L = &m->layers[l];
        const size_t lb = (size_t)l * layer_stride;   // the layer's first cache element
        if (l > 0) op_add(x, c->xb, (int)(T * E));   // the previous layer's FFN output
        for (int64_t t = 0; t < T; t++) op_rmsnorm(xn + t * E, x + t * E, L->attn_norm, (int)E, hp->rms_eps);
        const mm_weight *qkv[] = {&L->wq, &L->wk, &L->wv};
        float *qkv_out[] = {c->q, c->k, c->v};
        for (int i = 0; i < 3; i++) {
            if (i == 0 || !mm_same_input(qkv[i], qkv[i - 1])) mm_prepare(qkv[i], xn, T, wd, 0, 1);
            mm_compute_shared(qkv[i], xn, wd, T, qkv_out[i], tp_shared_counter(c->pool), ith, nth);
        }
        if (g1 > g0) {   // the first attention task's keys and values on their way while the peer ends
            const op_kv kv = kv_head(c, lb + (size_t)b->seq[0] * seq_stride + (size_t)g0 * head_stride, HD);
            op_kv_prefetch(&kv, b->pos[0], (int)HD);
        }
        tp_barrier(c->pool);
        // Own KV heads: rope, into the cache, then attention of their query heads.
        if (g1 > g0) {
            for (int64_t t = 0; t < T; t++) {
                const float *cs = rope + t * hp->n_rot;
                op_rope(c->q + t * E + g0 * group * HD, (int)((g1 - g0) * group), (int)HD, hp->n_rot, cs);
                op_rope(c->k + t * KV + g0 * HD, (int)(g1 - g0), (int)HD, hp->n_rot, cs);
                for (long g = g0; g < g1; g++) {
                    size_t at = (size_t)b->seq[t] * seq_stride + (size_t)g * head_stride + (size_t)b->pos[t] * (size_t)HD;
                    op_kv_store(kv_elem(c, c->k_cache, lb + at), c->k + t * KV + g * HD, (int)HD, c->kv_f16);
                    op_kv_store(kv_elem(c, c->v_cache, lb + at), c->v + t * KV + g * HD, (int)HD, c->kv_f16);
                }
            }
            // Each task prefetches the next one's keys and values into L2: with
            // several sequences the caches come from DRAM (a step's weights
            // evict them from L3), and a task of a few dozen positions was
            // over before the hardware prefetcher had ramped up. stories110M
            // Q8_0, 8 sequences, 64 steps, same-process rounds: 1.023-1.027x
            // (attention 8.8% -> 7.5% of the samples); one sequence 1.01x;
            // TinyLlama Q4_0 at 2048 positions 1.01x.
            for (int64_t t = 0; t < T; t++)
                for (long g = g0; g < g1; g++) {
                    const op_kv kv = kv_head(c, lb + (size_t)b->seq[t] * seq_stride + (size_t)g * head_stride, HD);
                    const int64_t tn = g + 1 < g1 ? t : t + 1;   // the next task's head, prefetched meanwhile
                    if (tn < T) {
                        const long gn = g + 1 < g1 ? g + 1 : g0;
                        const op_kv kn = kv_head(c, lb + (size_t)b->seq[tn] * seq_stride + (size_t)gn * head_stride, HD);
                        op_kv_prefetch(&kn, b->pos[tn] + 1, (int)HD);
                    }
                    op_attention_group(c->xb2 + t * E + g * group * HD, c->q + t * E + g * group * HD, (int)group,
                                       &kv, b->pos[t] + 1, (int)HD, att);
                }
        }
        tp_barrier(c->pool);
        mm_prepare(&L->wo, c->xb2, T, wd, 0, 1);
        mm_compute_shared(&L->wo, c->xb2, wd, T, c->xb, tp_shared_counter(c->pool), ith, nth);
        tp_barrier(c->pool);
        op_add(x, c->xb, (int)(T * E));
        for (int64_t t = 0; t < T; t++) op_rmsnorm(xn + t * E, x + t * E, L->ffn_norm, (int)E, hp->rms_eps);
        mm_prepare(&L->w_gate, xn, T, wd, 0, 1);
        if (glu_split(L, T, F)) {   // each item's SwiGLU and packing done where its rows were computed
            glu_arg ga = {c, &L->w_down, T, F};
            mm_compute_shared_pair(&L->w_gate, &L->w_up, xn, wd, T, c->hb, c->hb2, glu_rows, &ga, c->glu_halves,
                                   tp_shared_counter(c->pool), ith, nth);
            tp_barrier(c->pool);
            mm_compute_shared(&L->w_down, c->hb, c->wdata, T, c->xb, tp_shared_counter(c->pool), ith, nth);
            tp_barrier(c->pool);
            continue;
        }
        mm_compute_shared(&L->w_gate, xn, wd, T, c->hb, tp_shared_counter(c->pool), ith, nth);
        if (!mm_same_input(&L->w_up, &L->w_gate)) mm_prepare(&L->w_up, xn, T, wd, 0, 1);
        mm_compute_shared(&L->w_up, xn, wd, T, c->hb2, tp_shared_counter(c->pool), ith, nth);
        tp_barrier(c->pool);
        op_silu_mul(xn, c->hb, c->hb2, (int)(T * F));   // into this thread's copy: hb is shared
        mm_prepare(&L->w_down, xn, T, wd, 0, 1);
        mm_compute_shared(&L->w_down, xn, wd, T, c->xb, tp_shared_counter(c->pool), ith, nth);
        tp_barrier(c->pool);
    }
    op_add(x, c->xb, (int)(T * E));
    for (int32_t j = 0; j < c->n_out; j++)
        op_rmsnorm(xn + j * E, x + (int64_t)c->out_idx[j] * E, m->output_norm, (int)E, hp->rms_eps);
    mm_prepare(&m->output, xn, c->n_out, wd, 0, 1);
    mm_compute_shared(&m->output, xn, wd, c->n_out, c->logits, tp_shared_counter(c->pool), ith, nth);
}

static void forward_worker(int ith, int nth, void *arg) {
    llama_ctx *c = arg;
    if (c->batch->n_tokens <= SMALL_T) {
        forward_small(c, ith, nth);
        return;
    }
    const llama_model *m = c->m;
    const llama_hparams *hp = &m->hp;
    const llama_batch *b = c->batch;
    const int64_t T = b->n_tokens, E = hp->n_embd, KV = hp->kv_dim, F = hp->n_ff, HD = hp->head_dim;
    const int64_t rowb = (int64_t)ggml_nbytes(m->tok_embd.type, E);
    long t0, t1;

    // Embedding rows and rotary tables, split by token.
    tp_split(T, ith, nth, 1, &t0, &t1);
    for (long t = t0; t < t1; t++) {
        dequantize_row(m->tok_embd.type, (const char *)m->tok_embd.data + rowb * b->token[t], c->x + t * E, E);
        op_rope_table(c->rope + t * hp->n_rot, hp->n_rot, b->pos[t], hp->rope_theta);
    }
    tp_barrier(c->pool);

    const int group = hp->n_head / hp->n_head_kv;
    const size_t seq_stride = (size_t)c->n_ctx * (size_t)KV;               // one sequence's slot
    const size_t head_stride = (size_t)c->n_ctx * (size_t)HD;              // one KV head's positions in it
    const size_t layer_stride = (size_t)c->n_seq * seq_stride;
    float *att = c->att + 8 * (size_t)ith * (size_t)c->n_ctx;
    // Attention tasks per token: each KV head's query heads, in att_sub
    // parts of att_chunk heads when there would be too few tasks otherwise.
    long att_sub = 1;
    while (att_sub < group && T * hp->n_head_kv * att_sub < 2 * nth) att_sub++;
    const long att_chunk = (group + att_sub - 1) / att_sub;
    att_sub = (group + att_chunk - 1) / att_chunk;
    const long n_att_tasks = hp->n_head_kv * att_sub;

    for (int l = 0; l < hp->n_layer; l++) {
        const llama_layer *L = &m->layers[l];
        const size_t lb = (size_t)l * layer_stride;   // the layer's first cache element

        // Each thread adds the previous layer's FFN output to, and normalizes,
        // the rows it will quantize itself: no barrier before the product.
        long n0, n1;
        mm_prepare_rows(&L->wq, T, ith, nth, &n0, &n1);
        for (long t = n0; t < n1; t++) {
            if (l > 0) op_add(c->x + t * E, c->xb + t * E, (int)E);
            op_rmsnorm(c->xb + t * E, c->x + t * E, L->attn_norm, (int)E, hp->rms_eps);
        }
        {
            const mm_weight *ws[] = {&L->wq, &L->wk, &L->wv};
            float *ys[] = {c->q, c->k, c->v};
            matmul_group(c, ws, ys, 3, c->xb, T, ith, nth);
        }
        // Rotary embedding, then K and V into the sequence's cache slot.
        for (long t = t0; t < t1; t++) {
            const float *cs = c->rope + t * hp->n_rot;
            op_rope(c->q + t * E, hp->n_head, (int)HD, hp->n_rot, cs);
            op_rope(c->k + t * KV, hp->n_head_kv, (int)HD, hp->n_rot, cs);
            for (int64_t g = 0; g < hp->n_head_kv; g++) {
                size_t at = (size_t)b->seq[t] * seq_stride + (size_t)g * head_stride + (size_t)b->pos[t] * (size_t)HD;
                op_kv_store(kv_elem(c, c->k_cache, lb + at), c->k + t * KV + g * HD, (int)HD, c->kv_f16);
                op_kv_store(kv_elem(c, c->v_cache, lb + at), c->v + t * KV + g * HD, (int)HD, c->kv_f16);
            }
        }
        tp_barrier(c->pool);
        // Attention: one task per (token, KV head), dealt round-robin: a
        // later token attends to more positions, so contiguous shares would
        // leave the first threads idle. A task takes the query heads that
        // share its KV head together, so K and V are read once for them;
        // with fewer tasks than twice the threads, the heads of a group are
        // split so that every thread has work.
        // Without grouped heads (group 1), a task is a block of consecutive
        // tokens of one sequence (c->ablk) and one head: the block's queries
        // share each key and value read.
        if (group == 1) {
            for (long task = ith; task < (long)c->n_ablk * hp->n_head_kv; task += nth) {
                const long blk = task / hp->n_head_kv, g = task % hp->n_head_kv;
                const int32_t a = c->ablk[blk], nq = c->ablk[blk + 1] - a;
                int nkv[8];
                for (int32_t j = 0; j < nq; j++) nkv[j] = b->pos[a + j] + 1;
                const op_kv kv = kv_head(c, lb + (size_t)b->seq[a] * seq_stride + (size_t)g * head_stride, HD);
                op_attention_queries(c->xb2 + a * E + g * HD, E, c->q + a * E + g * HD, E, nq, nkv, &kv, (int)HD, att);
            }
        }
        for (long task = ith; group > 1 && task < T * n_att_tasks; task += nth) {
            long t = task / n_att_tasks, rem = task % n_att_tasks, g = rem / att_sub, sub = rem % att_sub;
            long h0 = g * group + sub * att_chunk, nr = group - sub * att_chunk < att_chunk ? group - sub * att_chunk : att_chunk;
            const op_kv kv = kv_head(c, lb + (size_t)b->seq[t] * seq_stride + (size_t)g * head_stride, HD);
            op_attention_group(c->xb2 + t * E + h0 * HD, c->q + t * E + h0 * HD, (int)nr, &kv, b->pos[t] + 1, (int)HD,
                               att);
        }
        tp_barrier(c->pool);
        {
            const mm_weight *ws[] = {&L->wo};
            float *ys[] = {c->xb};
            matmul_group(c, ws, ys, 1, c->xb2, T, ith, nth);
        }
        mm_prepare_rows(&L->w_gate, T, ith, nth, &n0, &n1);
        for (long t = n0; t < n1; t++) {
            op_add(c->x + t * E, c->xb + t * E, (int)E);
            op_rmsnorm(c->xb + t * E, c->x + t * E, L->ffn_norm, (int)E, hp->rms_eps);
        }
        {
            const mm_weight *ws[] = {&L->w_gate, &L->w_up};
            float *ys[] = {c->hb, c->hb2};
            matmul_group(c, ws, ys, 2, c->xb, T, ith, nth);
        }
        mm_prepare_rows(&L->w_down, T, ith, nth, &n0, &n1);
        op_silu_mul(c->hb + n0 * F, c->hb + n0 * F, c->hb2 + n0 * F, (int)((n1 - n0) * F));
        {
            const mm_weight *ws[] = {&L->w_down};
            float *ys[] = {c->xb};
            matmul_group(c, ws, ys, 1, c->hb, T, ith, nth);
        }
    }
    // The last layer's FFN output (earlier ones were added at the next layer's norm).
    for (long t = t0; t < t1; t++) op_add(c->x + t * E, c->xb + t * E, (int)E);
    tp_barrier(c->pool);

    // Final norm of the rows whose logits are wanted, then the classifier.
    long o0, o1;
    tp_split(c->n_out, ith, nth, 1, &o0, &o1);
    for (long j = o0; j < o1; j++)
        op_rmsnorm(c->xb + j * E, c->x + (int64_t)c->out_idx[j] * E, m->output_norm, (int)E, hp->rms_eps);
    tp_barrier(c->pool);
    const mm_weight *ws[] = {&m->output};
    float *ys[] = {c->logits};
    matmul_group(c, ws, ys, 1, c->xb, c->n_out, ith, nth);
}

int llama_decode(llama_ctx *c, const llama_batch *b, char *err, size_t errlen) {
    const llama_hparams *hp = &c->m->hp;
    if (b->n_tokens < 1 || b->n_tokens > c->n_batch) {
        seterr(err, errlen, "batch of %d tokens (1..%d allowed)", b->n_tokens, c->n_batch);
        return -1;
    }
    int32_t n_out = 0;
    for (int32_t i = 0; i < b->n_tokens; i++) {
        if (b->token[i] < 0 || b->token[i] >= hp->n_vocab) {
            seterr(err, errlen, "token id %d out of range (vocabulary of %d)", b->token[i], hp->n_vocab);
            return -1;
        }
        if (b->pos[i] < 0 || b->pos[i] >= c->n_ctx) {
            seterr(err, errlen, "position %d past the context of %d", b->pos[i], c->n_ctx);
            return -1;
        }
        if (b->seq[i] < 0 || b->seq[i] >= c->n_seq) {
            seterr(err, errlen, "sequence %d out of range (%d slots)", b->seq[i], c->n_seq);
            return -1;
        }
        bool want = b->want_logits ? b->want_logits[i] != 0 : i == b->n_tokens - 1;
        if (want) c->out_idx[n_out++] = i;
    }
    c->n_out = n_out;
    // Attention blocks: a prompt's tokens attend together, 8 at a time, so
    // each key and value is read once for the block (op_attention_queries).
    int32_t nb = 0;
    for (int32_t i = 0; i < b->n_tokens; i++)
        if (i == 0 || i - c->ablk[nb - 1] == 8 || b->seq[i] != b->seq[i - 1] || b->pos[i] != b->pos[i - 1] + 1)
            c->ablk[nb++] = i;
    c->ablk[nb] = b->n_tokens;
    c->n_ablk = nb;
    c->batch = b;
    // Single-token steps stream every weight once: the strip kernels'
    // software prefetch on or off, as this context's pairs of steps measure
    // (mm_pf_ctl).
    const bool one = b->n_tokens == 1;
    const uint64_t t0 = one ? util_now_ns() : 0;
    if (one) mm_set_decode_prefetch(mm_pf_arm(&c->pf));
    tp_run(c->pool, forward_worker, c);
    if (one) mm_pf_record(&c->pf, util_now_ns() - t0);
    c->batch = NULL;
    return 0;
}

bool llama_ctx_decode_prefetch(const llama_ctx *c, double *ratio, int *pairs, int *switches) {
    if (ratio) *ratio = mm_pf_median(&c->pf);
    if (pairs) *pairs = c->pf.pairs;
    if (switches) *switches = c->pf.switches;
    return c->pf.on;
}
