/* Per-pattern training steps of one fully connected network (lenet1998/networks.py: the linear
 * classifier and the 28x28-H-10 / 28x28-H1-H2-10 nets of Fig. 9), in float32.
 *
 * These networks are nearly all first-layer weights (fc1000: 785k of 795k), and a per-pattern
 * step must read every weight and its step size and write every weight: the step is bound by
 * memory traffic, not arithmetic. So one replica runs at a time (its weights and steps stay in
 * the last-level cache: 6.3 MB for fc1000) through all T patterns of a call, and the update of
 * the first layer is fused with the next pattern's forward pass through it: one sweep per row,
 *     w_ij -= eps_ij * delta_i * x_j      (step t's update, Eq. 18)
 *     a_i  += w_ij * x'_j                 (step t+1's forward, with the updated weight)
 * instead of two. Every layer above is updated in the sweep that backpropagates through it (with
 * the weights before the update, as the gradient requires). Same arithmetic as the one-network
 * module and the reference trainer: forward, the penalties y_i = ||x - t_i||^2 to the +-1 targets
 * t_i = 2 e_i - 1 (lenet1998/layers.py TargetOutput), the criterion y_D (MLE, Eq. 8), backward,
 * w -= eps * g; other rounding (summation order, fused multiply-adds).
 *
 * Layout: layer l has n[l] inputs and n[l+1] outputs, weights (n[l+1], m[l]) row-major where
 * m[l] = n[l] rounded up to a multiple of VW (16) with zero padding (padded weights have zero
 * steps and zero inputs: they never change and add nothing), biases (n[l+1]). Plain C11 with GCC
 * vector extensions; no dependency beyond libm.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VW 16
#define MAXL 8
typedef float vf __attribute__((vector_size(4 * VW)));

enum { SQ_NONE, SQ_TANH, SQ_RELU };  /* a layer's squashing: none, A tanh(S a), max(0, a) */

static inline vf ld(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void st(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline float hsum(vf v) { float s = 0.0f; for (int k = 0; k < VW; k++) s += v[k]; return s; }
static inline int padded(int n) { return (n + VW - 1) / VW * VW; }

/* x[i] = f(a[i]) and d[i] = f'(a[i]) in place of a */
static void squash(int kind, float A, float S, float *a, float *d, int n) {
    for (int i = 0; i < n; i++) {
        if (kind == SQ_TANH) {
            float t = tanhf(S * a[i]);
            a[i] = A * t;
            d[i] = A * S * (1.0f - t * t);
        } else if (kind == SQ_RELU) {
            d[i] = a[i] > 0.0f ? 1.0f : 0.0f;
            a[i] = a[i] > 0.0f ? a[i] : 0.0f;
        } else {
            d[i] = 1.0f;
        }
    }
}

/* a = W x + b: rows of m inputs (padded) */
static void matvec(const float *restrict w, const float *restrict b, const float *restrict x, int rows, int m,
                   float *restrict a) {
    for (int i = 0; i < rows; i++) {
        const float *wi = w + (size_t)i * m;
        vf acc = {0};
        for (int j = 0; j < m; j += VW) acc += ld(wi + j) * ld(x + j);
        a[i] = hsum(acc) + b[i];
    }
}

/* w -= eps (delta x^T), b -= eps_b delta; and, if x_next: a = W x_next + b with the updated W */
static void update_forward(float *restrict w, float *restrict b, const float *restrict ew, const float *restrict eb,
                           const float *restrict delta, const float *restrict x, const float *restrict x_next,
                           int rows, int m, float *restrict a) {
    for (int i = 0; i < rows; i++) {
        float *wi = w + (size_t)i * m;
        const float *ei = ew + (size_t)i * m;
        vf d = (vf){0} + delta[i], acc = {0};
        if (x_next) {
            for (int j = 0; j < m; j += VW) {
                vf v = ld(wi + j) - ld(ei + j) * (d * ld(x + j));
                st(wi + j, v);
                acc += v * ld(x_next + j);
            }
        } else {
            for (int j = 0; j < m; j += VW) st(wi + j, ld(wi + j) - ld(ei + j) * (d * ld(x + j)));
        }
        b[i] -= eb[i] * delta[i];
        if (x_next) a[i] = hsum(acc) + b[i];
    }
}

/* g = W^T delta (with W before the update: g has m entries, zeroed here), then the update */
static void backward_update(float *restrict w, float *restrict b, const float *restrict ew, const float *restrict eb,
                            const float *restrict delta, const float *restrict x, int rows, int m, float *restrict g) {
    memset(g, 0, sizeof(float) * (size_t)m);
    for (int i = 0; i < rows; i++) {
        float *wi = w + (size_t)i * m;
        const float *ei = ew + (size_t)i * m;
        vf d = (vf){0} + delta[i];
        for (int j = 0; j < m; j += VW) {
            vf v = ld(wi + j);
            st(g + j, ld(g + j) + v * d);
            st(wi + j, v - ld(ei + j) * (d * ld(x + j)));
        }
        b[i] -= eb[i] * delta[i];
    }
}

/* T per-pattern steps of one replica.
 *   L: layers; n: L+1 sizes (n[0] = inputs, n[L] = 10 outputs); w, b, ew, eb: L pointers each;
 *   kind, A, S: each layer's squashing; x: (T, padded(n[0])) inputs; y: (T) classes;
 *   pen: (T, 10) penalties of each step's forward (before its update); loss: (T) its y_D.
 * Returns 0, or -1 for bad sizes or a failed allocation. */
int dn_steps(int L, const int *n, float **w, float **b, const float **ew, const float **eb, const int *kind,
             const float *A, const float *S, const float *x, const int64_t *y, int T, float *pen, float *loss) {
    if (L < 1 || L > MAXL || n[L] != 10 || T < 1) return -1;
    int m[MAXL + 1], total = 0, widest = 0;
    for (int l = 0; l <= L; l++) {
        if (n[l] < 1) return -1;
        m[l] = padded(n[l]);
        total += 3 * m[l];
        if (m[l] > widest) widest = m[l];
    }
    /* per layer l >= 1: its activations (m[l], zero past n[l]), derivatives f'(a) and deltas
     * dE/da; g: the gradient backpropagated to a layer's input */
    float *buf = calloc((size_t)total + (size_t)widest, sizeof(float));
    if (!buf) return -1;
    float *act[MAXL + 1], *der[MAXL + 1], *del[MAXL + 1], *p = buf;
    for (int l = 1; l <= L; l++) { act[l] = p; der[l] = p + m[l]; del[l] = p + 2 * m[l]; p += 3 * m[l]; }
    float *g = p;
    int m0 = m[0];

    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * m0;
        /* layer 1: step t-1's pending update fused with this forward, or a plain forward */
        if (t == 0) matvec(w[0], b[0], xt, n[1], m0, act[1]);
        else update_forward(w[0], b[0], ew[0], eb[0], del[1], xt - m0, xt, n[1], m0, act[1]);
        squash(kind[0], A[0], S[0], act[1], der[1], n[1]);
        for (int l = 1; l < L; l++) {
            matvec(w[l], b[l], act[l], n[l + 1], m[l], act[l + 1]);
            squash(kind[l], A[l], S[l], act[l + 1], der[l + 1], n[l + 1]);
        }
        /* penalties to the +-1 targets, the criterion y_D and its gradient 2 (x_j - t_Dj) */
        const float *out = act[L];
        for (int i = 0; i < 10; i++) {
            float s = 0.0f;
            for (int j = 0; j < 10; j++) { float dj = out[j] - (i == j ? 1.0f : -1.0f); s += dj * dj; }
            pen[(size_t)t * 10 + i] = s;
        }
        int D = (int)y[t];
        loss[t] = pen[(size_t)t * 10 + D];
        for (int j = 0; j < 10; j++) del[L][j] = 2.0f * (out[j] - (j == D ? 1.0f : -1.0f)) * der[L][j];
        /* layers L..2: backpropagate with the old weights and update in one sweep */
        for (int l = L - 1; l >= 1; l--) {
            backward_update(w[l], b[l], ew[l], eb[l], del[l + 1], act[l], n[l + 1], m[l], g);
            for (int j = 0; j < n[l]; j++) del[l][j] = g[j] * der[l][j];
        }
        /* layer 1's update waits for the next pattern's forward; the last one is applied now */
        if (t == T - 1) update_forward(w[0], b[0], ew[0], eb[0], del[1], xt, NULL, n[1], m0, NULL);
    }
    free(buf);
    return 0;
}

/* Penalties of N patterns (N, padded(n[0])) -> (N, 10), no update. */
int dn_forward(int L, const int *n, const float **w, const float **b, const int *kind, const float *A,
               const float *S, const float *x, int N, float *pen) {
    if (L < 1 || L > MAXL || n[L] != 10) return -1;
    int m[MAXL + 1], total = 0;
    for (int l = 0; l <= L; l++) { m[l] = padded(n[l]); total += 2 * m[l]; }
    float *buf = calloc((size_t)total, sizeof(float));
    if (!buf) return -1;
    float *act[MAXL + 1], *der[MAXL + 1], *p = buf;
    for (int l = 1; l <= L; l++) { act[l] = p; p += m[l]; der[l] = p; p += m[l]; }
    for (int s = 0; s < N; s++) {
        const float *in = x + (size_t)s * m[0];
        for (int l = 0; l < L; l++) {
            matvec(w[l], b[l], l ? act[l] : in, n[l + 1], m[l], act[l + 1]);
            squash(kind[l], A[l], S[l], act[l + 1], der[l + 1], n[l + 1]);
        }
        for (int i = 0; i < 10; i++) {
            float q = 0.0f;
            for (int j = 0; j < 10; j++) { float dj = act[L][j] - (i == j ? 1.0f : -1.0f); q += dj * dj; }
            pen[(size_t)s * 10 + i] = q;
        }
    }
    free(buf);
    return 0;
}
