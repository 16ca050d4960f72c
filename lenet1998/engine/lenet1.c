/* Per-pattern training steps of one LeNet-1 (lenet1998/networks.py LeNet1; Sec. III-C.6), in
 * float32, one replica at a time (its 2,578 parameters and steps live in the L1 cache).
 *
 *   input 28x28 (the 16x16 digit centred) -> C1 4@24x24 (5x5) -> S2 4@12x12 (trainable 2x2)
 *   -> C3 12@8x8 (5x5, a 0/1 connection table) -> S4 12@4x4 -> F 10 (full) -> penalties
 *   y_i = ||x - t_i||^2 to the +-1 targets (lenet1998/layers.py TargetOutput), criterion y_D.
 * Every layer is squashed (A tanh(S a) or max(0, a)); S2/S4: a = coef * scale * (2x2 sum) + bias.
 *
 * Same arithmetic as the one-network module and the reference trainer: forward, backward with
 * the weights before the update, w -= eps * g of every parameter (Eq. 18); absent C3
 * connections are neither read nor updated. Other rounding (summation order, fused
 * multiply-adds). Parameters in the module's own layouts: C1 (4,1,5,5) (4), S2 (4) (4),
 * C3 (12,4,5,5) (12), S4 (12) (12), F (10,192) (10).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

enum { C1W, C1B, S2C, S2B, C3W, C3B, S4C, S4B, FW, FB, NPARAM };
enum { SQ_NONE, SQ_TANH, SQ_RELU };
typedef float v8 __attribute__((vector_size(32)));

static inline v8 ld(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline float hsum(v8 v) { float s = 0.0f; for (int k = 0; k < 8; k++) s += v[k]; return s; }

typedef struct {
    int kind; float A, S, scale;
    const float *mask;                                /* (12, 4) */
    float x0[28 * 28];
    float x1[4 * 24 * 24], d1[4 * 24 * 24];           /* C1 */
    float s2[4 * 144], x2[4 * 144], d2[4 * 144];      /* S2: 2x2 sums, outputs */
    float x3[12 * 64], d3[12 * 64];                   /* C3 */
    float s4[12 * 16], x4[12 * 16], d4[12 * 16];      /* S4 */
    float xf[10], df[10];                             /* F */
    float g4[192], g3[12 * 64], g2[4 * 144], g1[4 * 576];
} net_t;

static void squash(const net_t *h, float *a, float *d, int n) {
    for (int i = 0; i < n; i++) {
        if (h->kind == SQ_TANH) {
            float t = tanhf(h->S * a[i]);
            a[i] = h->A * t;
            d[i] = h->A * h->S * (1.0f - t * t);
        } else if (h->kind == SQ_RELU) {
            d[i] = a[i] > 0.0f ? 1.0f : 0.0f;
            a[i] = a[i] > 0.0f ? a[i] : 0.0f;
        } else {
            d[i] = 1.0f;
        }
    }
}

/* out[o][i][j] = b[o] + sum_{c connected} sum_{u,v} w[o][c][u][v] x[c][i+u][j+v] (valid 5x5) */
static void conv_fwd(const float *x, int cin, int H, const float *w, const float *b, const float *mask, int cout,
                     float *out) {
    int G = H - 4;
    for (int o = 0; o < cout; o++) {
        float *y = out + o * G * G;
        for (int q = 0; q < G * G; q++) y[q] = b[o];
        for (int c = 0; c < cin; c++) {
            if (mask && mask[o * cin + c] == 0.0f) continue;
            const float *wc = w + (o * cin + c) * 25, *xc = x + c * H * H;
            for (int i = 0; i < G; i++)
                for (int u = 0; u < 5; u++)
                    for (int v = 0; v < 5; v++) {
                        float wv = wc[u * 5 + v];
                        const float *xr = xc + (i + u) * H + v;
                        for (int j = 0; j < G; j++) y[i * G + j] += wv * xr[j];
                    }
        }
    }
}

/* weight gradients of a valid 5x5 conv, fused with its update, and (if gx) the gradient to its
 * input computed with the weights before the update: delta (cout, G, G), G a multiple of 8 */
static void conv_bwd_update(const float *x, int cin, int H, float *w, float *b, const float *ew, const float *eb,
                            const float *mask, int cout, const float *delta, float *gx) {
    int G = H - 4;
    if (gx) memset(gx, 0, sizeof(float) * cin * H * H);
    for (int o = 0; o < cout; o++) {
        const float *dl = delta + o * G * G;
        for (int c = 0; c < cin; c++) {
            if (mask && mask[o * cin + c] == 0.0f) continue;
            float *wc = w + (o * cin + c) * 25;
            const float *ec = ew + (o * cin + c) * 25, *xc = x + c * H * H;
            for (int u = 0; u < 5; u++)
                for (int v = 0; v < 5; v++) {
                    v8 acc = {0};
                    for (int i = 0; i < G; i++)
                        for (int j = 0; j < G; j += 8) acc += ld(dl + i * G + j) * ld(xc + (i + u) * H + j + v);
                    float old = wc[u * 5 + v];
                    if (gx) {
                        float *gc = gx + c * H * H;
                        for (int i = 0; i < G; i++)
                            for (int j = 0; j < G; j++) gc[(i + u) * H + j + v] += old * dl[i * G + j];
                    }
                    wc[u * 5 + v] = old - ec[u * 5 + v] * hsum(acc);
                }
        }
        float sb = 0.0f;
        for (int q = 0; q < G * G; q++) sb += dl[q];
        b[o] -= eb[o] * sb;
    }
}

/* S2/S4 forward: s = 2x2 sums of x (maps, H, H), a = coef * scale * s + bias (then squashed) */
static void sub_fwd(const net_t *h, const float *x, int maps, int H, const float *c, const float *b, float *s,
                    float *a) {
    int G = H / 2;
    for (int m = 0; m < maps; m++)
        for (int i = 0; i < G; i++)
            for (int j = 0; j < G; j++) {
                const float *p = x + m * H * H + 2 * i * H + 2 * j;
                float q = p[0] + p[1] + p[H] + p[H + 1];
                s[m * G * G + i * G + j] = q;
                a[m * G * G + i * G + j] = c[m] * h->scale * q + b[m];
            }
}

/* S2/S4 backward: delta = g * f'(a) (in place of g); gradient to the inputs (with the
 * coefficient before the update), then the update of coef and bias */
static void sub_bwd_update(const net_t *h, float *g, const float *d, const float *s, int maps, int H, float *c,
                           float *b, const float *ec, const float *eb, float *gx) {
    int G = H / 2;
    for (int m = 0; m < maps; m++) {
        float gc = 0.0f, gb = 0.0f, k = c[m] * h->scale;
        for (int i = 0; i < G; i++)
            for (int j = 0; j < G; j++) {
                int q = m * G * G + i * G + j;
                float dl = g[q] * d[q];
                gc += dl * s[q];
                gb += dl;
                float *p = gx + m * H * H + 2 * i * H + 2 * j;
                p[0] = p[1] = p[H] = p[H + 1] = dl * k;
            }
        c[m] -= ec[m] * h->scale * gc;
        b[m] -= eb[m] * gb;
    }
}

/* forward: the penalties of the input in h->x0, every layer's outputs and f' kept for backward */
static void forward(net_t *h, float *const *p, float *pen) {
    conv_fwd(h->x0, 1, 28, p[C1W], p[C1B], NULL, 4, h->x1);
    squash(h, h->x1, h->d1, 4 * 576);
    sub_fwd(h, h->x1, 4, 24, p[S2C], p[S2B], h->s2, h->x2);
    squash(h, h->x2, h->d2, 4 * 144);
    conv_fwd(h->x2, 4, 12, p[C3W], p[C3B], h->mask, 12, h->x3);
    squash(h, h->x3, h->d3, 12 * 64);
    sub_fwd(h, h->x3, 12, 8, p[S4C], p[S4B], h->s4, h->x4);
    squash(h, h->x4, h->d4, 192);
    for (int i = 0; i < 10; i++) {
        float a = p[FB][i];
        for (int j = 0; j < 192; j++) a += p[FW][i * 192 + j] * h->x4[j];
        h->xf[i] = a;
    }
    squash(h, h->xf, h->df, 10);
    for (int i = 0; i < 10; i++) {
        float q = 0.0f;
        for (int j = 0; j < 10; j++) { float dj = h->xf[j] - (i == j ? 1.0f : -1.0f); q += dj * dj; }
        pen[i] = q;
    }
}

static void step(net_t *h, float **p, const float **e, int y, float *pen, float *loss) {
    forward(h, p, pen);
    *loss = pen[y];
    /* backward and update: F */
    float df[10];
    for (int i = 0; i < 10; i++) df[i] = 2.0f * (h->xf[i] - (i == y ? 1.0f : -1.0f)) * h->df[i];
    memset(h->g4, 0, sizeof h->g4);
    for (int i = 0; i < 10; i++) {
        float *wi = p[FW] + i * 192;
        const float *ei = e[FW] + i * 192;
        for (int j = 0; j < 192; j++) {
            h->g4[j] += wi[j] * df[i];
            wi[j] -= ei[j] * (df[i] * h->x4[j]);
        }
        p[FB][i] -= e[FB][i] * df[i];
    }
    /* S4, C3 (its delta = g3 * f'), S2, C1 */
    sub_bwd_update(h, h->g4, h->d4, h->s4, 12, 8, p[S4C], p[S4B], e[S4C], e[S4B], h->g3);
    for (int q = 0; q < 12 * 64; q++) h->g3[q] *= h->d3[q];
    conv_bwd_update(h->x2, 4, 12, p[C3W], p[C3B], e[C3W], e[C3B], h->mask, 12, h->g3, h->g2);
    sub_bwd_update(h, h->g2, h->d2, h->s2, 4, 24, p[S2C], p[S2B], e[S2C], e[S2B], h->g1);
    for (int q = 0; q < 4 * 576; q++) h->g1[q] *= h->d1[q];
    conv_bwd_update(h->x0, 1, 28, p[C1W], p[C1B], e[C1W], e[C1B], NULL, 4, h->g1, NULL);
}

static void setup(net_t *h, int kind, float A, float S, float scale, const float *mask) {
    h->kind = kind; h->A = A; h->S = S; h->scale = scale; h->mask = mask;
}

/* T steps of one replica: p, e: NPARAM pointers (parameters, steps); x (T, 28, 28) inputs;
 * y (T); pen (T, 10) and loss (T) of each step's forward, before its update. */
int l1_steps(float **p, const float **e, int kind, float A, float S, float scale, const float *mask,
             const float *x, const int64_t *y, int T, float *pen, float *loss) {
    static _Thread_local net_t h;
    setup(&h, kind, A, S, scale, mask);
    for (int t = 0; t < T; t++) {
        if (y[t] < 0 || y[t] > 9) return -1;
        memcpy(h.x0, x + (size_t)t * 784, sizeof h.x0);
        step(&h, p, e, (int)y[t], pen + (size_t)t * 10, loss + t);
    }
    return 0;
}

/* Penalties of N inputs (N, 28, 28) -> (N, 10), no update. */
int l1_forward(float **p, int kind, float A, float S, float scale, const float *mask, const float *x, int N,
               float *pen) {
    static _Thread_local net_t h;
    setup(&h, kind, A, S, scale, mask);
    for (int s = 0; s < N; s++) {
        memcpy(h.x0, x + (size_t)s * 784, sizeof h.x0);
        forward(&h, p, pen + (size_t)s * 10);
    }
    return 0;
}
