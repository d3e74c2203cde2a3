// sampler.h — picks the next token from logits: greedy, or repetition
// penalty → top-k → top-p → min-p → temperature → a seeded draw, in
// llama.cpp's order. Deterministic for a given seed and input.
// Thread safety: one sampler per sequence; samplers share nothing.
#ifndef LLMSCOPE_SAMPLER_H
#define LLMSCOPE_SAMPLER_H

#include <stdint.h>

typedef struct sampler_params {
    float temperature;     // <= 0: greedy (argmax)
    int32_t top_k;         // <= 0: off
    float top_p;           // >= 1: off
    float min_p;           // <= 0: off
    float repeat_penalty;  // 1: off
    int32_t repeat_last_n; // tokens of history the penalty looks at
    uint64_t seed;
} sampler_params;

// Defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, no penalty, seed 0.
sampler_params sampler_default_params(void);

typedef struct sampler sampler;

sampler *sampler_new(const sampler_params *p, int32_t n_vocab);   // NULL on OOM
void sampler_free(sampler *s);
// Chooses a token. logits (n_vocab) is left unchanged; history holds the
// n_history tokens so far (prompt and generated), for the penalty.
int32_t sampler_sample(sampler *s, const float *logits, const int32_t *history, int32_t n_history);

// Index of the largest value (ties: the lowest index).
int32_t sampler_argmax(const float *x, int32_t n);

#endif
