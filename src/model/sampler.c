// sampler.c — token sampling (see sampler.h). The candidate list is built
// once per call in memory made at sampler_new(); nothing is allocated per token.
#include "sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand { float logit; int32_t id; } cand;

struct sampler {
    sampler_params p;
    int32_t n_vocab;
    uint64_t rng;          // xorshift64* state
    cand *cands;           // (n_vocab)
    float *work;           // (n_vocab) penalised logits
};

sampler_params sampler_default_params(void) {
    sampler_params p = {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                        .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0};
    return p;
}

sampler *sampler_new(const sampler_params *p, int32_t n_vocab) {
    if (n_vocab <= 0) return NULL;
    sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->n_vocab = n_vocab;
    // splitmix64 of the seed, so seed 0 gives a usable xorshift state.
    uint64_t z = p->seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    s->rng = (z ^ (z >> 31)) | 1;
    s->cands = malloc(sizeof(cand) * (size_t)n_vocab);
    s->work = malloc(sizeof(float) * (size_t)n_vocab);
    if (!s->cands || !s->work) { sampler_free(s); return NULL; }
    return s;
}

void sampler_free(sampler *s) {
    if (!s) return;
    free(s->cands);
    free(s->work);
    free(s);
}

int32_t sampler_argmax(const float *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

static double rng_uniform(sampler *s) {   // [0, 1)
    uint64_t x = s->rng;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    s->rng = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

static int cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit > y->logit) return -1;
    if (x->logit < y->logit) return 1;
    return x->id - y->id;
}

int32_t sampler_sample(sampler *s, const float *logits, const int32_t *history, int32_t n_history) {
    const int32_t n = s->n_vocab;
    const float *l = logits;
    if (s->p.repeat_penalty != 1.0f && n_history > 0 && s->p.repeat_last_n > 0) {
        memcpy(s->work, logits, sizeof(float) * (size_t)n);
        int32_t from = n_history > s->p.repeat_last_n ? n_history - s->p.repeat_last_n : 0;
        for (int32_t i = from; i < n_history; i++) {
            int32_t id = history[i];
            if (id < 0 || id >= n) continue;
            // Penalise each distinct token once (as llama.cpp does).
            bool seen = false;
            for (int32_t j = from; j < i; j++) if (history[j] == id) { seen = true; break; }
            if (seen) continue;
            float v = s->work[id];
            s->work[id] = v > 0 ? v / s->p.repeat_penalty : v * s->p.repeat_penalty;
        }
        l = s->work;
    }
    if (s->p.temperature <= 0.0f) return sampler_argmax(l, n);

    // Candidates sorted by logit; with top-k, a min-heap of k keeps the k
    // best in O(n log k) before the sort.
    int32_t k = n;
    if (s->p.top_k > 0 && s->p.top_k < n) {
        k = s->p.top_k;
        cand *h = s->cands;   // h[0] is the worst of the k kept
        for (int32_t i = 0; i < n; i++) {
            cand c = {l[i], i};
            int32_t pos;
            if (i < k) {            // sift up
                pos = i;
                while (pos > 0 && cand_desc(&h[(pos - 1) / 2], &c) < 0) { h[pos] = h[(pos - 1) / 2]; pos = (pos - 1) / 2; }
                h[pos] = c;
            } else if (cand_desc(&c, &h[0]) < 0) {   // better than the worst kept: sift down
                pos = 0;
                for (;;) {
                    int32_t ch = 2 * pos + 1;
                    if (ch >= k) break;
                    if (ch + 1 < k && cand_desc(&h[ch + 1], &h[ch]) > 0) ch++;
                    if (cand_desc(&h[ch], &c) <= 0) break;
                    h[pos] = h[ch];
                    pos = ch;
                }
                h[pos] = c;
            }
        }
    } else {
        for (int32_t i = 0; i < n; i++) s->cands[i] = (cand){l[i], i};
    }
    qsort(s->cands, (size_t)k, sizeof(cand), cand_desc);
    // Probabilities at temperature 1 for top-p / min-p (llama.cpp order).
    double max = s->cands[0].logit, sum = 0.0;
    for (int32_t i = 0; i < k; i++) sum += exp((double)s->cands[i].logit - max);
    if (s->p.top_p < 1.0f) {
        double cum = 0.0;
        int32_t keep = k;
        for (int32_t i = 0; i < k; i++) {
            cum += exp((double)s->cands[i].logit - max) / sum;
            if (cum >= s->p.top_p) { keep = i + 1; break; }
        }
        k = keep;
    }
    if (s->p.min_p > 0.0f) {
        // Keep tokens whose probability is at least min_p times the best one's.
        double thresh = log(s->p.min_p);
        int32_t keep = 1;
        while (keep < k && (double)s->cands[keep].logit - max >= thresh) keep++;
        k = keep;
    }
    // Temperature, softmax over the survivors, draw.
    double total = 0.0;
    for (int32_t i = 0; i < k; i++) total += exp(((double)s->cands[i].logit - max) / s->p.temperature);
    double r = rng_uniform(s) * total, acc = 0.0;
    for (int32_t i = 0; i < k; i++) {
        acc += exp(((double)s->cands[i].logit - max) / s->p.temperature);
        if (r < acc) return s->cands[i].id;
    }
    return s->cands[k - 1].id;
}
