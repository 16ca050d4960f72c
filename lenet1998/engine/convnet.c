/* Per-pattern training steps of one small convolutional network of Fig. 9 (lenet1998/networks.py
 * LeNet1 and LeNet4; Sec. III-C.6-7), in float32, one replica at a time (its few thousand
 * parameters and steps stay in the L1/L2 cache).
 *
 *   input 28x28 -> C1 c1@(28-k1+1)^2 (k1 x k1) -> S2 c1*rep maps (trainable 2x2; S2 map m reads
 *   C1 map m / rep) -> C3 c3 maps (k3 x k3, a 0/1 connection table) -> S4 (trainable 2x2)
 *   -> [H: `hidden` units fully connected to S4, if hidden > 0] -> F 10 (full) -> penalties
 *   y_i = ||x - t_i||^2 to the +-1 targets (lenet1998/layers.py TargetOutput), criterion y_D.
 * LeNet-1: k1 5, c1 4, rep 1, c3 12, k3 5, hidden 0. LeNet-4: k1 5, c1 4, rep 2, c3 16, k3 7,
 * hidden 120. Every layer is squashed (A tanh(S a) or max(0, a)); S2/S4: a = coef * scale *
 * (2x2 sum) + bias.
 *
 * Same arithmetic as the one-network module and the reference trainer: forward, backward with
 * the weights before the update, w -= eps * g of every parameter (Eq. 18); absent C3
 * connections are neither read nor updated. Other rounding (summation order, fused
 * multiply-adds). Parameters in the module's own layouts, in this order: C1 (c1,1,k1,k1) (c1),
 * S2 coef (s2) bias (s2), C3 (c3,s2,k3,k3) (c3), S4 (c3) (c3), [H (hidden, n4) (hidden)],
 * F (10, n) (10).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { SQ_NONE, SQ_TANH, SQ_RELU };
typedef float v8 __attribute__((vector_size(32)));

static inline v8 ld(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline float hsum(v8 v) { float s = 0.0f; for (int k = 0; k < 8; k++) s += v[k]; return s; }

typedef struct {
    int kind; float A, S, scale;
    int k1, c1, rep, s2, c3, k3, hidden;          /* the shape */
    int h1, g2, h3, g4, n4;                        /* C1, S2, C3, S4 sides; S4 units */
    const float *mask;                             /* (c3, s2) */
    float *x0, *x1, *d1, *s2s, *x2, *d2, *x3, *d3, *s4s, *x4, *d4, *xh, *dh, *xf, *df;
    float *gr4, *grh, *gr3, *gr2, *gr1;           /* gradients to each layer's outputs */
    float *buf;
} net_t;

static int setup(net_t *h, const int *shape, int kind, float A, float S, float scale, const float *mask) {
    h->kind = kind; h->A = A; h->S = S; h->scale = scale; h->mask = mask;
    h->k1 = shape[0]; h->c1 = shape[1]; h->rep = shape[2]; h->c3 = shape[3]; h->k3 = shape[4]; h->hidden = shape[5];
    h->s2 = h->c1 * h->rep;
    h->h1 = 28 - h->k1 + 1;
    h->g2 = h->h1 / 2;
    h->h3 = h->g2 - h->k3 + 1;
    h->g4 = h->h3 / 2;
    h->n4 = h->c3 * h->g4 * h->g4;
    if (h->k1 < 1 || h->c1 < 1 || h->rep < 1 || h->c3 < 1 || h->k3 < 1 || h->hidden < 0 || h->h1 % 2 ||
        h->h3 < 2 || h->h3 % 2) return -1;
    size_t n1 = (size_t)h->c1 * h->h1 * h->h1, n2 = (size_t)h->s2 * h->g2 * h->g2, n3 = (size_t)h->c3 * h->h3 * h->h3;
    size_t n4 = h->n4, nh = h->hidden, total = 784 + 3 * n1 + 4 * n2 + 3 * n3 + 4 * n4 + 3 * nh + 20;  /* as taken below */
    h->buf = calloc(total, sizeof(float));
    if (!h->buf) return -1;
    float *p = h->buf;
#define TAKE(f, n) do { h->f = p; p += (n); } while (0)
    TAKE(x0, 784); TAKE(x1, n1); TAKE(d1, n1); TAKE(gr1, n1); TAKE(s2s, n2); TAKE(x2, n2); TAKE(d2, n2);
    TAKE(gr2, n2); TAKE(x3, n3); TAKE(d3, n3); TAKE(gr3, n3); TAKE(s4s, n4); TAKE(x4, n4); TAKE(d4, n4);
    TAKE(gr4, n4); TAKE(xh, nh); TAKE(dh, nh); TAKE(grh, nh); TAKE(xf, 10); TAKE(df, 10);
#undef TAKE
    return 0;
}

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

/* out[o][i][j] = b[o] + sum_{c connected} sum_{u,v} w[o][c][u][v] x[c][i+u][j+v] (valid k x k) */
static inline __attribute__((always_inline)) void conv_fwd_(const float *x, int cin, int H, int k, const float *w, const float *b, const float *mask,
                     int cout, float *out) {
    int G = H - k + 1;
    for (int o = 0; o < cout; o++) {
        float *y = out + o * G * G;
        for (int q = 0; q < G * G; q++) y[q] = b[o];
        for (int c = 0; c < cin; c++) {
            if (mask && mask[o * cin + c] == 0.0f) continue;
            const float *wc = w + (o * cin + c) * k * k, *xc = x + c * H * H;
            for (int i = 0; i < G; i++)
                for (int u = 0; u < k; u++)
                    for (int v = 0; v < k; v++) {
                        float wv = wc[u * k + v];
                        const float *xr = xc + (i + u) * H + v;
                        for (int j = 0; j < G; j++) y[i * G + j] += wv * xr[j];
                    }
        }
    }
}

/* weight gradients of a valid k x k conv, fused with its update, and (if gx) the gradient to its
 * input computed with the weights before the update: delta (cout, G, G) */
static inline __attribute__((always_inline)) void conv_bwd_update_(const float *x, int cin, int H, int k, float *w, float *b, const float *ew,
                            const float *eb, const float *mask, int cout, const float *delta, float *gx) {
    int G = H - k + 1;
    float gw[64];                                  /* k x k <= 64 */
    if (gx) memset(gx, 0, sizeof(float) * cin * H * H);
    for (int o = 0; o < cout; o++) {
        const float *dl = delta + o * G * G;
        for (int c = 0; c < cin; c++) {
            if (mask && mask[o * cin + c] == 0.0f) continue;
            float *wc = w + (o * cin + c) * k * k;
            const float *ec = ew + (o * cin + c) * k * k, *xc = x + c * H * H;
            if (G % 8 == 0) {                      /* rows of whole vectors: one sum per weight */
                for (int u = 0; u < k; u++)
                    for (int v = 0; v < k; v++) {
                        v8 acc = {0};
                        for (int i = 0; i < G; i++)
                            for (int j = 0; j < G; j += 8) acc += ld(dl + i * G + j) * ld(xc + (i + u) * H + j + v);
                        gw[u * k + v] = hsum(acc);
                    }
            } else {                               /* small maps: every weight's sum at once */
                memset(gw, 0, sizeof gw);
                for (int i = 0; i < G; i++)
                    for (int j = 0; j < G; j++) {
                        float d = dl[i * G + j];
                        for (int u = 0; u < k; u++)
                            for (int v = 0; v < k; v++) gw[u * k + v] += d * xc[(i + u) * H + j + v];
                    }
            }
            if (gx) {
                float *gc = gx + c * H * H;
                for (int i = 0; i < G; i++)
                    for (int u = 0; u < k; u++)
                        for (int v = 0; v < k; v++) {
                            float wv = wc[u * k + v];
                            for (int j = 0; j < G; j++) gc[(i + u) * H + j + v] += wv * dl[i * G + j];
                        }
            }
            for (int q = 0; q < k * k; q++) wc[q] -= ec[q] * gw[q];
        }
        float sb = 0.0f;
        for (int q = 0; q < G * G; q++) sb += dl[q];
        b[o] -= eb[o] * sb;
    }
}

/* The layer sizes of LeNet-1 and LeNet-4 compiled with constant sides and kernels (the loops
 * unrolled and vectorised for each), any other size by the general loops: same arithmetic. */
#define SIZES(X) X(28, 5) X(12, 5) X(12, 7)
static void conv_fwd(const float *x, int cin, int H, int k, const float *w, const float *b, const float *mask,
                     int cout, float *out) {
#define CASE(h, kk) if (H == h && k == kk) { conv_fwd_(x, cin, h, kk, w, b, mask, cout, out); return; }
    SIZES(CASE)
#undef CASE
    conv_fwd_(x, cin, H, k, w, b, mask, cout, out);
}

static void conv_bwd_update(const float *x, int cin, int H, int k, float *w, float *b, const float *ew,
                            const float *eb, const float *mask, int cout, const float *delta, float *gx) {
#define CASE(h, kk) if (H == h && k == kk) { conv_bwd_update_(x, cin, h, kk, w, b, ew, eb, mask, cout, delta, gx); return; }
    SIZES(CASE)
#undef CASE
    conv_bwd_update_(x, cin, H, k, w, b, ew, eb, mask, cout, delta, gx);
}

/* S2/S4 forward: s = 2x2 sums of input map m / rep (maps outputs of side G), a = coef * scale * s + bias */
static void sub_fwd(const net_t *h, const float *x, int maps, int rep, int G, const float *c, const float *b,
                    float *s, float *a) {
    int H = 2 * G;
    for (int m = 0; m < maps; m++)
        for (int i = 0; i < G; i++)
            for (int j = 0; j < G; j++) {
                const float *p = x + (m / rep) * H * H + 2 * i * H + 2 * j;
                float q = p[0] + p[1] + p[H] + p[H + 1];
                s[m * G * G + i * G + j] = q;
                a[m * G * G + i * G + j] = c[m] * h->scale * q + b[m];
            }
}

/* S2/S4 backward: delta = g * f'(a); gradient to the inputs (summed over the maps that read
 * each input map; with the coefficient before the update), then the update of coef and bias */
static void sub_bwd_update(const net_t *h, const float *g, const float *d, const float *s, int maps, int rep, int G,
                           float *c, float *b, const float *ec, const float *eb, float *gx) {
    int H = 2 * G;
    memset(gx, 0, sizeof(float) * (maps / rep) * H * H);
    for (int m = 0; m < maps; m++) {
        float gc = 0.0f, gb = 0.0f, k = c[m] * h->scale;
        for (int i = 0; i < G; i++)
            for (int j = 0; j < G; j++) {
                int q = m * G * G + i * G + j;
                float dl = g[q] * d[q];
                gc += dl * s[q];
                gb += dl;
                float *p = gx + (m / rep) * H * H + 2 * i * H + 2 * j;
                p[0] += dl * k; p[1] += dl * k; p[H] += dl * k; p[H + 1] += dl * k;
            }
        c[m] -= ec[m] * h->scale * gc;
        b[m] -= eb[m] * gb;
    }
}

/* a = W x + b (rows x n), then squashed */
static void full_fwd(const net_t *h, const float *w, const float *b, const float *x, int rows, int n, float *a,
                     float *d) {
    for (int i = 0; i < rows; i++) {
        float s = b[i];
        for (int j = 0; j < n; j++) s += w[i * n + j] * x[j];
        a[i] = s;
    }
    squash(h, a, d, rows);
}

/* g = W^T delta (old W), then W -= eps delta x^T, b -= eps_b delta */
static void full_bwd_update(float *w, float *b, const float *ew, const float *eb, const float *delta,
                            const float *x, int rows, int n, float *g) {
    memset(g, 0, sizeof(float) * n);
    for (int i = 0; i < rows; i++) {
        float *wi = w + i * n;
        const float *ei = ew + i * n;
        for (int j = 0; j < n; j++) {
            g[j] += wi[j] * delta[i];
            wi[j] -= ei[j] * (delta[i] * x[j]);
        }
        b[i] -= eb[i] * delta[i];
    }
}

/* the parameter pointers in order: C1W C1B S2C S2B C3W C3B S4C S4B [HW HB] FW FB */
enum { C1W, C1B, S2C, S2B, C3W, C3B, S4C, S4B };

static void forward(net_t *h, float *const *p, float *pen) {
    float *const *q = p + 8;                       /* H (if any), then F */
    conv_fwd(h->x0, 1, 28, h->k1, p[C1W], p[C1B], NULL, h->c1, h->x1);
    squash(h, h->x1, h->d1, h->c1 * h->h1 * h->h1);
    sub_fwd(h, h->x1, h->s2, h->rep, h->g2, p[S2C], p[S2B], h->s2s, h->x2);
    squash(h, h->x2, h->d2, h->s2 * h->g2 * h->g2);
    conv_fwd(h->x2, h->s2, h->g2, h->k3, p[C3W], p[C3B], h->mask, h->c3, h->x3);
    squash(h, h->x3, h->d3, h->c3 * h->h3 * h->h3);
    sub_fwd(h, h->x3, h->c3, 1, h->g4, p[S4C], p[S4B], h->s4s, h->x4);
    squash(h, h->x4, h->d4, h->n4);
    const float *in = h->x4;
    int n = h->n4;
    if (h->hidden) {
        full_fwd(h, q[0], q[1], h->x4, h->hidden, h->n4, h->xh, h->dh);
        in = h->xh;
        n = h->hidden;
        q += 2;
    }
    full_fwd(h, q[0], q[1], in, 10, n, h->xf, h->df);
    for (int i = 0; i < 10; i++) {
        float s = 0.0f;
        for (int j = 0; j < 10; j++) { float dj = h->xf[j] - (i == j ? 1.0f : -1.0f); s += dj * dj; }
        pen[i] = s;
    }
}

static void step(net_t *h, float **p, const float **e, int y, float *pen, float *loss) {
    forward(h, p, pen);
    *loss = pen[y];
    float df[10];
    for (int i = 0; i < 10; i++) df[i] = 2.0f * (h->xf[i] - (i == y ? 1.0f : -1.0f)) * h->df[i];
    if (h->hidden) {                               /* F, then H */
        full_bwd_update(p[10], p[11], e[10], e[11], df, h->xh, 10, h->hidden, h->grh);
        for (int i = 0; i < h->hidden; i++) h->grh[i] *= h->dh[i];
        full_bwd_update(p[8], p[9], e[8], e[9], h->grh, h->x4, h->hidden, h->n4, h->gr4);
    } else {
        full_bwd_update(p[8], p[9], e[8], e[9], df, h->x4, 10, h->n4, h->gr4);
    }
    sub_bwd_update(h, h->gr4, h->d4, h->s4s, h->c3, 1, h->g4, p[S4C], p[S4B], e[S4C], e[S4B], h->gr3);
    for (int q = 0; q < h->c3 * h->h3 * h->h3; q++) h->gr3[q] *= h->d3[q];
    conv_bwd_update(h->x2, h->s2, h->g2, h->k3, p[C3W], p[C3B], e[C3W], e[C3B], h->mask, h->c3, h->gr3, h->gr2);
    sub_bwd_update(h, h->gr2, h->d2, h->s2s, h->s2, h->rep, h->g2, p[S2C], p[S2B], e[S2C], e[S2B], h->gr1);
    for (int q = 0; q < h->c1 * h->h1 * h->h1; q++) h->gr1[q] *= h->d1[q];
    conv_bwd_update(h->x0, 1, 28, h->k1, p[C1W], p[C1B], e[C1W], e[C1B], NULL, h->c1, h->gr1, NULL);
}

/* T steps of one replica. shape: k1, c1, rep, c3, k3, hidden; p, e: the parameter and step
 * pointers (10, or 12 with a hidden layer); mask (c3, s2); x (T, 28, 28); y (T); pen (T, 10)
 * and loss (T) of each step's forward, before its update. Returns 0, -1 for a bad shape or label. */
int cn_steps(const int *shape, float **p, const float **e, int kind, float A, float S, float scale,
             const float *mask, const float *x, const int64_t *y, int T, float *pen, float *loss) {
    net_t h;
    if (setup(&h, shape, kind, A, S, scale, mask)) return -1;
    int rc = 0;
    for (int t = 0; t < T; t++) {
        if (y[t] < 0 || y[t] > 9) { rc = -1; break; }
        memcpy(h.x0, x + (size_t)t * 784, 784 * sizeof(float));
        step(&h, p, e, (int)y[t], pen + (size_t)t * 10, loss + t);
    }
    free(h.buf);
    return rc;
}

/* Penalties of N inputs (N, 28, 28) -> (N, 10), no update. */
int cn_forward(const int *shape, float **p, int kind, float A, float S, float scale, const float *mask,
               const float *x, int N, float *pen) {
    net_t h;
    if (setup(&h, shape, kind, A, S, scale, mask)) return -1;
    for (int s = 0; s < N; s++) {
        memcpy(h.x0, x + (size_t)s * 784, 784 * sizeof(float));
        forward(&h, p, pen + (size_t)s * 10);
    }
    free(h.buf);
    return 0;
}
