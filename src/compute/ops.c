// ops.c — element-wise and row operations of the forward pass (see ops.h).
// Written as plain loops the compiler vectorises; they are a small share of
// the time next to the matrix products.
#include "ops.h"
#include <math.h>

void op_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

void op_rope_table(float *cs, int n_rot, int pos, float theta) {
    for (int i = 0; i < n_rot / 2; i++) {
        float freq = 1.0f / powf(theta, (float)(2 * i) / (float)n_rot);
        float val = (float)pos * freq;
        cs[2 * i] = cosf(val);
        cs[2 * i + 1] = sinf(val);
    }
}

void op_rope(float *x, int n_heads, int head_dim, int n_rot, const float *cs) {
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int i = 0; i < n_rot; i += 2) {
            float c = cs[i], s = cs[i + 1];
            float v0 = v[i], v1 = v[i + 1];
            v[i] = v0 * c - v1 * s;
            v[i + 1] = v0 * s + v1 * c;
        }
    }
}

void op_softmax(float *x, int n) {
    float max = x[0];
    for (int i = 1; i < n; i++) if (x[i] > max) max = x[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - max); sum += x[i]; }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void op_silu_mul(float *a, const float *b, int n) {
    for (int i = 0; i < n; i++) {
        float v = a[i];
        a[i] = v / (1.0f + expf(-v)) * b[i];
    }
}

void op_add(float *a, const float *b, int n) {
    for (int i = 0; i < n; i++) a[i] += b[i];
}

void op_attention_head(float *out, const float *q, const float *kc, const float *vc,
                       int64_t kv_stride, int n_kv, int head_dim, float *att) {
    const float scale = 1.0f / sqrtf((float)head_dim);
    for (int t = 0; t < n_kv; t++) {
        const float *k = kc + t * kv_stride;
        float s = 0.0f;
        for (int i = 0; i < head_dim; i++) s += q[i] * k[i];
        att[t] = s * scale;
    }
    op_softmax(att, n_kv);
    for (int i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int t = 0; t < n_kv; t++) {
        const float *v = vc + t * kv_stride;
        const float p = att[t];
        for (int i = 0; i < head_dim; i++) out[i] += p * v[i];
    }
}
