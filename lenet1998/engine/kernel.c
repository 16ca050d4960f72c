/* One per-pattern training step of K replicas of LeNet-5, replicas as SIMD lanes.
 *
 * A group of K replicas runs as ceil(K / KP) independent blocks of KP lanes (KP = 8: one 256-bit
 * register of floats; built with -DKP=16: one 512-bit register). Every array of a block keeps the
 * lane innermost: x[c][i][j][k], w[o][c][u][v][k], so that every inner operation is one vector
 * over the block's replicas; the last
 * block's lanes past K are dummies (zero weights, input and steps: they never change).
 *
 * Step: forward (C1 S2 C3 S4 C5 F6, then the output and the loss), backward, and the update
 * w -= eps * g of every parameter, fused with the backward pass wherever a layer's gradient is
 * final (F6, C5, a linear output: one sweep over the weights backpropagates to the layer below
 * and updates; C3, C1, S2, S4: as soon as the layer's weight gradient is summed). Absent C3
 * connections (a per-replica 0/1 mask) are never updated, whatever their step. The
 * convolutions are register-blocked (several outputs or weight gradients in registers, one
 * load per input).
 *
 * What the replicas of one group may differ in: the squashing (A tanh(S a) or max(0, a)), the
 * C3 mask, the S2/S4 scale (trainable average 1/4 or sum 1) and the criterion of an RBF output
 * (MAP or MLE). What a whole group shares (lenet1998/engine lockstep_key separates the rest):
 *   S2/S4  POOL_TRAINABLE: a = coef * scale * (2x2 sum) + bias, then the squashing (the paper);
 *          POOL_AVG: the 2x2 mean, POOL_MAX: the 2x2 maximum (its first occurrence in row-major
 *          order, PyTorch's rule for ties), both parameter-free and with no squashing after them.
 *   output OUT_RBF: penalties y_i = sum_j (x_j - c_ij)^2 (Eq. 7), MAP/MLE (Eq. 9/8);
 *          OUT_LINEAR: logits z = W x + b (10 x 84, with bias), softmax cross-entropy.
 * A parameter the group's network lacks (S2/S4 of a pooling, the linear output's under RBF)
 * is still allocated, stays zero and is never read.
 *
 * Parameters are indexed by the ids below; each one is a (K, N) "stacked" matrix outside and
 * (N, KP) per block inside. Plain C11 with GCC/Clang vector extensions, no dependency beyond
 * libm. -DLK_PROFILE adds a per-stage CPU-time profile (lk_profile).
 */
#ifdef LK_PROFILE
#define _POSIX_C_SOURCE 199309L
#endif
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef KP
#define KP 8 /* lanes of a block: one register of floats, 8 (256-bit, AVX2) or -DKP=16 (512-bit, AVX-512F) */
#endif

/* -DLK_PROFILE: seconds spent in each stage, accumulated, read with lk_profile */
#ifdef LK_PROFILE
#include <time.h>
static double prof[16];
static double now(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
#define TICK(i) do { double t_ = now(); prof[i] += t_ - tprev; tprev = t_; } while (0)
#define TSTART double tprev = now()
#else
#define TICK(i) do { } while (0)
#define TSTART do { } while (0)
#endif
int lk_profile(double *out) {
#ifdef LK_PROFILE
    for (int i = 0; i < 16; i++) { out[i] = prof[i]; prof[i] = 0.0; }
    return 1;
#else
    (void)out;
    return 0;
#endif
}

#define LANES for (int k = 0; k < KP; k++)
#define VEC _Pragma("GCC ivdep") LANES

enum { C1W, C1B, S2C, S2B, C3W, C3B, S4C, S4B, C5W, C5B, F6W, F6B, OUTW, OUTB, NPARAM };
static const int PSIZE[NPARAM] = {150, 6, 6, 6, 2400, 16, 16, 16, 48000, 120, 10080, 84, 840, 10};
enum { POOL_TRAINABLE, POOL_AVG, POOL_MAX };  /* S2/S4 of a group */
enum { OUT_RBF, OUT_LINEAR };                 /* output layer and criterion of a group */

typedef struct {
    int K;
    int pool, out;                          /* POOL_*, OUT_*: shared by the group */
    float *p[NPARAM], *e[NPARAM];          /* parameters and their steps, (N, KP) */
    float *sum[NPARAM];                     /* gradient sums (lk_accumulate), NULL: the step updates */
    float *A, *S, *AS, *relu, *scale, *mapw; /* per lane */
    float j;
    int nrelu;                              /* lanes (dummies included) with relu */
    float *mask3;                           /* (16*6, KP): C3 connection per lane, 0/1 */
    int ncon[16], con[16][6];               /* C3: the input maps of each output map, any lane */
    float centres[10 * 84];
    /* activations (x), derivatives f'(a) (d), 2x2 sums (s; POOL_MAX: the argmax 0..3 of each window) */
    float *x0, *x1, *d1, *s2, *x2, *d2, *x3, *d3, *s4, *x4, *d4, *x5, *d5, *x6, *d6, *pen;
    /* gradients */
    float *g1, *g2, *g3, *g4, *g5, *g6, *gw;
} lk_t;

static float *falloc(size_t n) {
    size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    float *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

int lk_kp(void) { return KP; }
int lk_psize(int id) { return (id >= 0 && id < NPARAM) ? PSIZE[id] : -1; }

static void blk_free(lk_t *h) {
    if (!h) return;
    for (int i = 0; i < NPARAM; i++) { free(h->p[i]); free(h->e[i]); free(h->sum[i]); }
    float *bufs[] = {h->A, h->S, h->AS, h->relu, h->scale, h->mapw, h->mask3, h->x0, h->x1, h->d1,
                     h->s2, h->x2, h->d2, h->x3, h->d3, h->s4, h->x4, h->d4, h->x5, h->d5, h->x6,
                     h->d6, h->pen, h->g1, h->g2, h->g3, h->g4, h->g5, h->g6, h->gw};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(h);
}

/* A, S: squashing A tanh(S a) per replica; relu: 1 for max(0, a); scale: 0.25 or 1 (S2/S4);
 * mapw: 1 (MAP) or 0 (MLE); mask: (K, 16, 6) C3 connections; centres: (10, 84);
 * pool: POOL_*; out: OUT_* (OUT_LINEAR ignores mapw, j and centres). */
static lk_t *blk_create(int K, const float *A, const float *S, const float *relu, const float *scale,
                const float *mapw, float j, const float *mask, const float *centres, int pool, int out) {
    if (K < 1 || K > KP || pool < POOL_TRAINABLE || pool > POOL_MAX || out < OUT_RBF || out > OUT_LINEAR) return NULL;
    lk_t *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->K = K;
    h->pool = pool;
    h->out = out;
    h->j = j;
    int ok = 1;
    for (int i = 0; i < NPARAM; i++) {
        h->p[i] = falloc((size_t)PSIZE[i] * KP);
        h->e[i] = falloc((size_t)PSIZE[i] * KP);
        ok &= h->p[i] && h->e[i];
    }
#define AL(f, n) ok &= (h->f = falloc((size_t)(n) * KP)) != NULL
    AL(A, 1); AL(S, 1); AL(AS, 1); AL(relu, 1); AL(scale, 1); AL(mapw, 1); AL(mask3, 96);
    AL(x0, 1024); AL(x1, 4704); AL(d1, 4704); AL(s2, 1176); AL(x2, 1176); AL(d2, 1176);
    AL(x3, 1600); AL(d3, 1600); AL(s4, 400); AL(x4, 400); AL(d4, 400); AL(x5, 120); AL(d5, 120);
    AL(x6, 84); AL(d6, 84); AL(pen, 10);
    AL(g1, 4704); AL(g2, 1176); AL(g3, 16 * 324); AL(g4, 400); AL(g5, 120); AL(g6, 84); AL(gw, 2400);
#undef AL
    if (!ok) { blk_free(h); return NULL; }
    for (int k = 0; k < KP; k++) {
        int real = k < K;
        h->A[k] = real ? A[k] : 1.0f;
        h->S[k] = real ? S[k] : 1.0f;
        h->AS[k] = real ? (float)((double)A[k] * (double)S[k]) : 1.0f;
        h->relu[k] = real ? relu[k] : 0.0f;
        h->nrelu += h->relu[k] != 0.0f;
        h->scale[k] = real ? scale[k] : 1.0f;
        h->mapw[k] = real ? mapw[k] : 0.0f;
        for (int oc = 0; oc < 96; oc++) h->mask3[oc * KP + k] = real ? mask[k * 96 + oc] : 0.0f;
    }
    for (int o = 0; o < 16; o++) {
        h->ncon[o] = 0;
        for (int c = 0; c < 6; c++) {
            int any = 0;
            for (int k = 0; k < K; k++) any |= mask[k * 96 + o * 6 + c] != 0.0f;
            if (any) h->con[o][h->ncon[o]++] = c;
        }
    }
    memcpy(h->centres, centres, sizeof h->centres);
    return h;
}

/* stacked (K, N) <-> internal (N, KP); which: 0 parameters, 1 steps, 2 gradient sums */
static float *blk_array(const lk_t *h, int which, int id) {
    return which == 0 ? h->p[id] : which == 1 ? h->e[id] : h->sum[id];
}

static void blk_load(lk_t *h, int which, int id, const float *src) {
    float *dst = blk_array(h, which, id);
    int N = PSIZE[id];
    for (int n = 0; n < N; n++)
        for (int k = 0; k < KP; k++) dst[n * KP + k] = k < h->K ? src[(size_t)k * N + n] : 0.0f;
}

static void blk_export(const lk_t *h, int which, int id, float *dst) {
    const float *src = blk_array(h, which, id);
    int N = PSIZE[id];
    for (int k = 0; k < h->K; k++)
        for (int n = 0; n < N; n++) dst[(size_t)k * N + n] = src[n * KP + k];
}

/* ---------------------------------------------------------------------------------------- */
/* tanh in float, vectorisable, one branch-free path: tanh|x| = -m / (2 + m), m = exp(-2|x|) - 1
 * computed as 2^n (expm1(r)) + (2^n - 1) with Cephes' expf range reduction and polynomial, so
 * that it keeps its relative accuracy for small |x| (a few ulp everywhere). */

static inline float tanh_lane(float x) {
    float t = -2.0f * fabsf(x);
    t = t < -87.0f ? -87.0f : t;            /* 2^n stays a normal float */
    float fx = floorf(t * 1.44269504088896341f + 0.5f);
    float r = t - fx * 0.693359375f;        /* |r| <= ln2 / 2 */
    r = r + fx * 2.12194440e-4f;
    float q = (((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r +
                 4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f) * (r * r) + r;
    int32_t bits = ((int32_t)fx + 127) << 23;
    float p;
    memcpy(&p, &bits, sizeof p);
    float m = p * q + (p - 1.0f);           /* exp(t) - 1, in (-1, 0] */
    float th = -m / (2.0f + m);
    return x < 0.0f ? -th : th;
}

/* x = f(a) in place, d = f'(a), for n units; relu lanes take max(0, a) */
static void squash(const lk_t *h, float *restrict a, float *restrict d, int n) {
    const float *restrict A = h->A, *restrict S = h->S, *restrict AS = h->AS, *restrict R = h->relu;
    if (h->nrelu == KP) {                   /* no tanh at all */
        for (int i = 0; i < n * KP; i++) {
            float v = a[i];
            a[i] = v > 0.0f ? v : 0.0f;
            d[i] = v > 0.0f ? 1.0f : 0.0f;
        }
        return;
    }
    if (h->nrelu == 0) {
        for (int i = 0; i < n; i++) {
            float *restrict ai = a + i * KP, *restrict di = d + i * KP;
            VEC {
                float t = tanh_lane(S[k] * ai[k]);
                ai[k] = A[k] * t;
                di[k] = AS[k] * (1.0f - t * t);
            }
        }
        return;
    }
    for (int i = 0; i < n; i++) {
        float *restrict ai = a + i * KP, *restrict di = d + i * KP;
        VEC {
            float v = ai[k];
            float t = tanh_lane(S[k] * v);
            float xt = A[k] * t, dt = AS[k] * (1.0f - t * t);
            float xr = v > 0.0f ? v : 0.0f, dr = v > 0.0f ? 1.0f : 0.0f;
            int r = R[k] != 0.0f;
            ai[k] = r ? xr : xt;
            di[k] = r ? dr : dt;
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Hot loops: one v8 holds the KP lanes (8 or 16) of one unit. Each kernel keeps several independent
 * accumulators in registers and one operand in a register for several multiply-adds, so that
 * the multiply-adds, not the loads, set the pace. */

typedef float v8 __attribute__((vector_size(4 * KP)));   /* the KP lanes of one unit (the name is historical) */
typedef int32_t v8i __attribute__((vector_size(4 * KP)));
#define LD(p) (*(const v8 *)(const void *)(p))
#define ST(p, v) (*(v8 *)(void *)(p) = (v))
#define AI static inline __attribute__((always_inline))
#define JMAX 10
/* register blocking: outputs per row block of each convolution (tuned on AVX2) */
#ifndef J_C1F
#define J_C1F 7
#endif
#ifndef J_C3F
#define J_C3F 10
#endif
#ifndef J_C3X
#define J_C3X 7
#endif
#ifndef J_C3W
#define J_C3W 2
#endif
#ifndef J_C1W
#define J_C1W 4
#endif

/* out[i][j] (+)= sum_uv w'[u][v] x[i+u][j+v] for a valid 5x5 window, w' = w or w rotated by 180
 * degrees (flip: the input gradient as a convolution of the zero-padded output gradient).
 * Only input rows in [rlo, rhi) and columns in [clo, chi) are read (the others are known zeros:
 * with ow == 2 J the column tests fold away). J outputs of a row at a time (ow % J == 0): 5
 * weights and J accumulators in registers, one load per input value. */
AI void conv5(const float *restrict x, int W, const float *restrict w, float *restrict out, int oh, int ow,
              const int J, const int flip, const int acc_in, int rlo, int rhi, const int clo, const int chi) {
    for (int i = 0; i < oh; i++) {
        int ulo = rlo - i > 0 ? rlo - i : 0, uhi = rhi - i < 5 ? rhi - i : 5;
#pragma GCC unroll 2
        for (int j = 0; j < ow; j += J) {
            float *restrict o = out + (i * ow + j) * KP;
            v8 acc[JMAX];
#pragma GCC unroll 8
            for (int t = 0; t < J; t++) acc[t] = acc_in ? LD(o + t * KP) : (v8){0};
            for (int u = ulo; u < uhi; u++) {
                v8 wr[5];
#pragma GCC unroll 5
                for (int v = 0; v < 5; v++) wr[v] = LD(w + (flip ? 24 - (u * 5 + v) : u * 5 + v) * KP);
                const float *restrict xr = x + ((i + u) * W + j) * KP;
#pragma GCC unroll 16
                for (int t = 0; t < J + 4; t++) {
                    if (j + t < clo || j + t >= chi) continue;
                    v8 xv = LD(xr + t * KP);
#pragma GCC unroll 5
                    for (int v = 0; v < 5; v++) {
                        int q = t - v;
                        if (q >= 0 && q < J) acc[q] += wr[v] * xv;
                    }
                }
            }
#pragma GCC unroll 8
            for (int t = 0; t < J; t++) ST(o + t * KP, acc[t]);
        }
    }
}

/* weight gradient of a valid 5x5 window: gw[uv] = sum_ij g[i][j] x[i+u][j+v] (g rows gW apart),
 * and (if gb) the bias gradient sum_ij g[i][j]. Per u: J gradients of a row in registers, each
 * input value loaded once and multiplied into the five v accumulators it meets; two sets of
 * accumulators (even and odd output column) keep ten independent chains. ow % J == 0. */
AI void wgrad5(const float *restrict x, int W, const float *restrict g, int gW, int oh, int ow,
               const int J, float *restrict gw, float *restrict gb) {
    if (gb) {
        v8 b0 = {0}, b1 = {0};
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j += 2) {
                b0 += LD(g + (i * gW + j) * KP);
                b1 += LD(g + (i * gW + j + 1) * KP);
            }
        ST(gb, b0 + b1);
    }
    for (int u = 0; u < 5; u++) {
        v8 a[2][5] = {{{0}}};
        for (int i = 0; i < oh; i++) {
            const float *restrict gr = g + i * gW * KP, *restrict xr = x + ((i + u) * W) * KP;
            for (int j = 0; j < ow; j += J) {
                v8 gv[JMAX];
#pragma GCC unroll 10
                for (int q = 0; q < J; q++) gv[q] = LD(gr + (j + q) * KP);
#pragma GCC unroll 16
                for (int t = 0; t < J + 4; t++) {
                    v8 xv = LD(xr + (j + t) * KP);
#pragma GCC unroll 5
                    for (int v = 0; v < 5; v++) {
                        int q = t - v;
                        if (q >= 0 && q < J) a[q & 1][v] += gv[q] * xv;
                    }
                }
            }
        }
#pragma GCC unroll 5
        for (int v = 0; v < 5; v++) ST(gw + (u * 5 + v) * KP, a[0][v] + a[1][v]);
    }
}

/* out[o] = b[o] + sum_i w[o][i] x[i]: four outputs at a time, two partial sums each */
static void full_fwd(const float *restrict x, int n_in, const float *restrict w, const float *restrict b,
                     float *restrict out, int n_out) {
    for (int o = 0; o < n_out; o += 4) {  /* n_out % 4 == 0, n_in % 2 == 0 */
        const float *restrict wo = w + (size_t)o * n_in * KP;
        v8 a[4][2];
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) { a[t][0] = LD(b + (o + t) * KP); a[t][1] = (v8){0}; }
        for (int i = 0; i < n_in; i += 2) {
#pragma GCC unroll 2
            for (int p = 0; p < 2; p++) {
                v8 xv = LD(x + (i + p) * KP);
#pragma GCC unroll 4
                for (int t = 0; t < 4; t++) a[t][p] += LD(wo + ((size_t)t * n_in + i + p) * KP) * xv;
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) ST(out + (o + t) * KP, a[t][0] + a[t][1]);
    }
}

/* fully connected backward fused with the update, four outputs at a time:
 * gx[i] = sum_o w[o][i] g[o] (old w), w[o][i] -= eps * (g[o] x[i]), b[o] -= eps_b g[o];
 * with gradient sums sw, sb (accumulating): sw[o][i] += g[o] x[i], sb[o] += g[o], w and b kept */
static void full_bwd_update(const float *restrict x, int n_in, float *restrict w, const float *restrict ew,
                            float *restrict b, const float *restrict eb, const float *restrict g,
                            int n_out, float *restrict gx, float *restrict sw, float *restrict sb) {
    memset(gx, 0, sizeof(float) * n_in * KP);
    for (int o = 0; o < n_out; o += 4) {
        v8 gt[4];
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            gt[t] = LD(g + (o + t) * KP);
            if (sb) ST(sb + (o + t) * KP, LD(sb + (o + t) * KP) + gt[t]);
            else ST(b + (o + t) * KP, LD(b + (o + t) * KP) - LD(eb + (o + t) * KP) * gt[t]);
        }
        if (sw) {  /* accumulating: the same sweep, the weights only read */
            const float *restrict wo = w + (size_t)o * n_in * KP;
            float *restrict so = sw + (size_t)o * n_in * KP;
            for (int i = 0; i < n_in; i++) {
                v8 xv = LD(x + i * KP), gxv = LD(gx + i * KP);
#pragma GCC unroll 4
                for (int t = 0; t < 4; t++) {
                    size_t n = ((size_t)t * n_in + i) * KP;
                    gxv += LD(wo + n) * gt[t];
                    ST(so + n, LD(so + n) + gt[t] * xv);
                }
                ST(gx + i * KP, gxv);
            }
            continue;
        }
        float *restrict wo = w + (size_t)o * n_in * KP;
        const float *restrict eo = ew + (size_t)o * n_in * KP;
        for (int i = 0; i < n_in; i++) {
            v8 xv = LD(x + i * KP), gxv = LD(gx + i * KP);
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) {
                size_t n = ((size_t)t * n_in + i) * KP;
                v8 wv = LD(wo + n);
                gxv += wv * gt[t];
                ST(wo + n, wv - LD(eo + n) * (gt[t] * xv));
            }
            ST(gx + i * KP, gxv);
        }
    }
}

/* 2x2 sums s of maps (H x H) and a = coef * scale * s + bias */
static void subsample_fwd(const lk_t *h, const float *restrict x, int maps, int H, float *restrict s,
                          float *restrict a, const float *restrict coef, const float *restrict bias) {
    int G = H / 2;
    v8 sc = LD(h->scale);
    for (int m = 0; m < maps; m++) {
        v8 cs = LD(coef + m * KP) * sc, bm = LD(bias + m * KP);
        for (int p = 0; p < G; p++)
            for (int q = 0; q < G; q++) {
                const float *restrict x00 = x + ((m * H + 2 * p) * H + 2 * q) * KP;
                int n = ((m * G + p) * G + q) * KP;
                v8 v = (LD(x00) + LD(x00 + KP)) + (LD(x00 + H * KP) + LD(x00 + H * KP + KP));
                ST(s + n, v);
                ST(a + n, cs * v + bm);
            }
    }
}

/* subsampling backward: ga = gradient at a (maps x G x G); writes the gradient at the pre-
 * activation of the layer below, f'(a) (d, maps x 2G x 2G) included, into gx (rows gW apart,
 * map m at gx + m * gmap) and updates coef and bias */
static void subsample_bwd_update(const lk_t *h, const float *restrict ga, const float *restrict s, int maps,
                                 int G, float *restrict coef, const float *restrict ec,
                                 float *restrict bias, const float *restrict eb, const float *restrict d,
                                 float *restrict gx, int gW, int gmap, float *restrict sc_sum,
                                 float *restrict sb_sum) {
    int H = 2 * G;
    v8 sc = LD(h->scale);
    for (int m = 0; m < maps; m++) {
        v8 gc = {0}, gb = {0}, cs = LD(coef + m * KP) * sc;
        for (int p = 0; p < G; p++)
            for (int q = 0; q < G; q++) {
                int n = ((m * G + p) * G + q) * KP;
                v8 g = LD(ga + n);
                gc += g * LD(s + n);
                gb += g;
                v8 v = g * cs;
                const float *restrict d00 = d + ((m * H + 2 * p) * H + 2 * q) * KP;
                float *restrict x00 = gx + (m * gmap + (2 * p) * gW + 2 * q) * KP;
                ST(x00, v * LD(d00));
                ST(x00 + KP, v * LD(d00 + KP));
                ST(x00 + gW * KP, v * LD(d00 + H * KP));
                ST(x00 + gW * KP + KP, v * LD(d00 + H * KP + KP));
            }
        if (sc_sum) {  /* accumulating */
            ST(sc_sum + m * KP, LD(sc_sum + m * KP) + gc * sc);
            ST(sb_sum + m * KP, LD(sb_sum + m * KP) + gb);
            continue;
        }
        ST(coef + m * KP, LD(coef + m * KP) - LD(ec + m * KP) * (gc * sc));
        ST(bias + m * KP, LD(bias + m * KP) - LD(eb + m * KP) * gb);
    }
}

/* lanes of a where t is set (-1), of b elsewhere */
AI v8 sel(v8i t, v8 a, v8 b) { return (v8)(((v8i)a & t) | ((v8i)b & ~t)); }

/* S2/S4 as parameter-free pooling, maps x (H x H) -> out (maps x G x G), G = H / 2, no squashing:
 * POOL_AVG  out = (((x00 + x01) + x10) + x11) / 4 (PyTorch's order of the sum)
 * POOL_MAX  out = the first maximum of x00, x01, x10, x11 (row-major; a NaN wins, as in PyTorch),
 *           its position 0..3 kept in idx for the backward pass */
static void pool_fwd(const lk_t *h, const float *restrict x, int maps, int H, float *restrict idx,
                     float *restrict out) {
    int G = H / 2;
    for (int m = 0; m < maps; m++)
        for (int p = 0; p < G; p++)
            for (int q = 0; q < G; q++) {
                const float *restrict x00 = x + ((m * H + 2 * p) * H + 2 * q) * KP;
                v8 v[4] = {LD(x00), LD(x00 + KP), LD(x00 + H * KP), LD(x00 + H * KP + KP)};
                int n = ((m * G + p) * G + q) * KP;
                if (h->pool == POOL_AVG) {
                    ST(out + n, (((v[0] + v[1]) + v[2]) + v[3]) * 0.25f);
                } else {
                    v8 best = v[0], at = {0};
#pragma GCC unroll 3
                    for (int t = 1; t < 4; t++) {
                        v8i wins = (v[t] > best) | (v[t] != v[t]);  /* strictly greater, or NaN */
                        best = sel(wins, v[t], best);
                        at = sel(wins, (v8){0} + (float)t, at);
                    }
                    ST(out + n, best);
                    ST(idx + n, at);
                }
            }
}

/* pooling backward: ga = gradient at the pooled maps (maps x G x G); writes the gradient at the
 * pre-activation of the layer below, f'(a) (d, maps x 2G x 2G) included, into gx (rows gW apart,
 * map m at gx + m * gmap): g / 4 to each input of a window (POOL_AVG), g to its argmax and 0 to
 * the other three (POOL_MAX) */
static void pool_bwd(const lk_t *h, const float *restrict ga, const float *restrict idx, int maps, int G,
                     const float *restrict d, float *restrict gx, int gW, int gmap) {
    int H = 2 * G;
    for (int m = 0; m < maps; m++)
        for (int p = 0; p < G; p++)
            for (int q = 0; q < G; q++) {
                int n = ((m * G + p) * G + q) * KP;
                const float *restrict d00 = d + ((m * H + 2 * p) * H + 2 * q) * KP;
                float *restrict x00 = gx + (m * gmap + (2 * p) * gW + 2 * q) * KP;
                const int din[4] = {0, KP, H * KP, H * KP + KP}, xin[4] = {0, KP, gW * KP, gW * KP + KP};
                v8 g = LD(ga + n), at = LD(idx + n);
#pragma GCC unroll 4
                for (int t = 0; t < 4; t++) {
                    v8 dt = LD(d00 + din[t]);
                    ST(x00 + xin[t], h->pool == POOL_AVG ? (g * 0.25f) * dt : sel(at == (float)t, g * dt, (v8){0}));
                }
            }
}

static void forward(lk_t *h) {
    float *const *P = h->p;
    TSTART;
    /* C1 */
    for (int o = 0; o < 6; o++) {
        float *out = h->x1 + o * 784 * KP;
        v8 b = LD(P[C1B] + o * KP);
        for (int n = 0; n < 784; n++) ST(out + n * KP, b);
        conv5(h->x0, 32, P[C1W] + o * 25 * KP, out, 28, 28, J_C1F, 0, 1, 0, 32, 0, 32);
    }
    TICK(0);
    squash(h, h->x1, h->d1, 4704);
    TICK(1);
    /* S2: 6@28x28 -> 6@14x14 */
    if (h->pool == POOL_TRAINABLE) {
        subsample_fwd(h, h->x1, 6, 28, h->s2, h->x2, P[S2C], P[S2B]);
        squash(h, h->x2, h->d2, 1176);
    } else {
        pool_fwd(h, h->x1, 6, 28, h->s2, h->x2);
    }
    TICK(2);
    /* C3 */
    for (int o = 0; o < 16; o++) {
        float *out = h->x3 + o * 100 * KP;
        v8 b = LD(P[C3B] + o * KP);
        for (int n = 0; n < 100; n++) ST(out + n * KP, b);
        for (int t = 0; t < h->ncon[o]; t++) {
            int c = h->con[o][t];
            conv5(h->x2 + c * 196 * KP, 14, P[C3W] + (o * 6 + c) * 25 * KP, out, 10, 10, J_C3F, 0, 1, 0, 14, 0, 14);
        }
    }
    TICK(3);
    squash(h, h->x3, h->d3, 1600);
    /* S4: 16@10x10 -> 16@5x5 */
    if (h->pool == POOL_TRAINABLE) {
        subsample_fwd(h, h->x3, 16, 10, h->s4, h->x4, P[S4C], P[S4B]);
        squash(h, h->x4, h->d4, 400);
    } else {
        pool_fwd(h, h->x3, 16, 10, h->s4, h->x4);
    }
    TICK(4);
    /* C5, F6 */
    full_fwd(h->x4, 400, P[C5W], P[C5B], h->x5, 120);
    TICK(5);
    squash(h, h->x5, h->d5, 120);
    full_fwd(h->x5, 120, P[F6W], P[F6B], h->x6, 84);
    squash(h, h->x6, h->d6, 84);
    if (h->out == OUT_LINEAR) {
        /* linear output: logits z[i] = b[i] + sum_j W[i][j] x6[j], 84 -> 10 (into pen) */
        for (int i = 0; i < 10; i++) {
            v8 acc = LD(P[OUTB] + i * KP);
            for (int jj = 0; jj < 84; jj++) acc += LD(P[OUTW] + (i * 84 + jj) * KP) * LD(h->x6 + jj * KP);
            ST(h->pen + i * KP, acc);
        }
        TICK(6);
        return;
    }
    /* RBF: penalties y[i] = sum_j (x6[j] - c[i][j])^2, 84 -> 10 */
    for (int i = 0; i < 10; i++) {
        v8 acc = {0};
        for (int jj = 0; jj < 84; jj++) {
            v8 dlt = LD(h->x6 + jj * KP) - h->centres[i * 84 + jj];
            acc += dlt * dlt;
        }
        ST(h->pen + i * KP, acc);
    }
    TICK(6);
}

/* Backward and the update; accumulating (h->sum set, lk_accumulate), the gradient of each
 * parameter is added to its sum instead, and the parameters stay as they are. */
static void backward_update(lk_t *h, const int64_t *y, float *loss) {
    float *const *P = h->p, *const *E = h->e, *const *G = h->sum;
    const int acc = G[0] != NULL;
    int K = h->K;
    TSTART;
    float gy[10][KP] __attribute__((aligned(32)));
    if (h->out == OUT_LINEAR) {
        /* softmax cross-entropy and its gradient at the logits z, per lane:
         * E = log sum_i e^{z_i} - z_D, dE/dz_i = p_i - [i = D] */
        for (int k = 0; k < KP; k++) {
            int D = k < K ? (int)y[k] : 0;
            float M = h->pen[k];
            for (int i = 1; i < 10; i++) M = fmaxf(M, h->pen[i * KP + k]);
            float ex[10], Z = 0.0f;
            for (int i = 0; i < 10; i++) { ex[i] = expf(h->pen[i * KP + k] - M); Z += ex[i]; }
            if (k < K) loss[k] = M + logf(Z) - h->pen[D * KP + k];
            for (int i = 0; i < 10; i++) gy[i][k] = ex[i] / Z - (i == D ? 1.0f : 0.0f);
        }
        /* linear output backward fused with the update, 10 x 84:
         * g6[j] = f'(a6[j]) sum_i W[i][j] gy[i] (old W), W[i][j] -= eps gy[i] x6[j], b[i] -= eps_b gy[i] */
        memset(h->g6, 0, sizeof(float) * 84 * KP);
        for (int i = 0; i < 10; i++) {
            v8 g = LD(gy[i]);
            float *restrict w = P[OUTW] + i * 84 * KP;
            const float *restrict e = E[OUTW] + i * 84 * KP;
            for (int jj = 0; jj < 84; jj++) {
                v8 wv = LD(w + jj * KP);
                ST(h->g6 + jj * KP, LD(h->g6 + jj * KP) + wv * g);
                if (acc) ST(G[OUTW] + (i * 84 + jj) * KP, LD(G[OUTW] + (i * 84 + jj) * KP) + g * LD(h->x6 + jj * KP));
                else ST(w + jj * KP, wv - LD(e + jj * KP) * (g * LD(h->x6 + jj * KP)));
            }
            if (acc) ST(G[OUTB] + i * KP, LD(G[OUTB] + i * KP) + g);
            else ST(P[OUTB] + i * KP, LD(P[OUTB] + i * KP) - LD(E[OUTB] + i * KP) * g);
        }
        for (int jj = 0; jj < 84; jj++) ST(h->g6 + jj * KP, LD(h->g6 + jj * KP) * LD(h->d6 + jj * KP));
    } else {
        /* MAP/MLE loss and its gradient at the penalties, per lane (scalar: 11 exponentials a lane) */
        for (int k = 0; k < KP; k++) {
            int D = k < K ? (int)y[k] : 0;
            float m = h->mapw[k];
            float M = -h->j;
            for (int i = 0; i < 10; i++) M = fmaxf(M, -h->pen[i * KP + k]);
            float ex[10], Z = expf(-h->j - M);
            for (int i = 0; i < 10; i++) { ex[i] = expf(-h->pen[i * KP + k] - M); Z += ex[i]; }
            float lse = M + logf(Z);
            if (k < K) loss[k] = h->pen[D * KP + k] + m * lse;
            for (int i = 0; i < 10; i++) gy[i][k] = (i == D ? 1.0f : 0.0f) - m * (ex[i] / Z);
        }
        /* RBF: dy_i/dx_j = 2 (x_j - c_ij); then through f of F6 */
        for (int jj = 0; jj < 84; jj++) {
            v8 acc = {0}, xj = LD(h->x6 + jj * KP);
            for (int i = 0; i < 10; i++) acc += LD(gy[i]) * (2.0f * (xj - h->centres[i * 84 + jj]));
            ST(h->g6 + jj * KP, acc * LD(h->d6 + jj * KP));
        }
    }
    TICK(7);
    /* F6, C5: backward fused with the update */
    full_bwd_update(h->x5, 120, P[F6W], E[F6W], P[F6B], E[F6B], h->g6, 84, h->g5, G[F6W], G[F6B]);
    for (int n = 0; n < 120; n++) ST(h->g5 + n * KP, LD(h->g5 + n * KP) * LD(h->d5 + n * KP));
    TICK(8);
    full_bwd_update(h->x4, 400, P[C5W], E[C5W], P[C5B], E[C5B], h->g5, 120, h->g4, G[C5W], G[C5B]);
    if (h->pool == POOL_TRAINABLE)  /* a pooling has no squashing after it */
        for (int n = 0; n < 400; n++) ST(h->g4 + n * KP, LD(h->g4 + n * KP) * LD(h->d4 + n * KP));
    TICK(9);
    /* S4: the gradient at C3's pre-activation, into the interior of 18x18 zero-padded maps */
    if (h->pool == POOL_TRAINABLE)
        subsample_bwd_update(h, h->g4, h->s4, 16, 5, P[S4C], E[S4C], P[S4B], E[S4B], h->d3,
                             h->g3 + (4 * 18 + 4) * KP, 18, 324, G[S4C], G[S4B]);
    else
        pool_bwd(h, h->g4, h->s4, 16, 5, h->d3, h->g3 + (4 * 18 + 4) * KP, 18, 324);
    TICK(10);
    /* C3: input gradient with the old weights (a convolution of the padded gradient with the
     * rotated kernel), weight and bias gradients, then the update (absent connections stay 0) */
    memset(h->g2, 0, sizeof(float) * 1176 * KP);
    for (int o = 0; o < 16; o++) {
        const float *gp = h->g3 + o * 324 * KP;           /* padded 18 x 18 */
        const float *g = gp + (4 * 18 + 4) * KP;         /* the 10 x 10 interior */
        for (int t = 0; t < h->ncon[o]; t++) {
            int c = h->con[o][t];
            float *w = P[C3W] + (o * 6 + c) * 25 * KP;
            const float *e = E[C3W] + (o * 6 + c) * 25 * KP;
            v8 mk = LD(h->mask3 + (o * 6 + c) * KP);
            conv5(gp, 18, w, h->g2 + c * 196 * KP, 14, 14, J_C3X, 1, 1, 4, 14, 4, 14);
            wgrad5(h->x2 + c * 196 * KP, 14, g, 18, 10, 10, J_C3W, h->gw, t == 0 ? h->gw + 25 * KP : NULL);
            v8i keep = mk != 0.0f;  /* -1 where connected */
            if (acc) {  /* an absent connection's sum stays 0 */
                float *restrict sw = G[C3W] + (o * 6 + c) * 25 * KP;
                for (int n = 0; n < 25; n++) ST(sw + n * KP, LD(sw + n * KP) + sel(keep, LD(h->gw + n * KP), (v8){0}));
                continue;
            }
            for (int n = 0; n < 25; n++) {
                v8 old = LD(w + n * KP), nw = old - LD(e + n * KP) * LD(h->gw + n * KP);
                ST(w + n * KP, (v8)(((v8i)nw & keep) | ((v8i)old & ~keep)));
            }
        }
        if (h->ncon[o] && acc) {
            ST(G[C3B] + o * KP, LD(G[C3B] + o * KP) + LD(h->gw + 25 * KP));
        } else if (h->ncon[o]) {
            float *b = P[C3B] + o * KP;
            ST(b, LD(b) - LD(E[C3B] + o * KP) * LD(h->gw + 25 * KP));
        }
    }
    if (h->pool == POOL_TRAINABLE)
        for (int n = 0; n < 1176; n++) ST(h->g2 + n * KP, LD(h->g2 + n * KP) * LD(h->d2 + n * KP));
    TICK(11);
    /* S2 */
    if (h->pool == POOL_TRAINABLE)
        subsample_bwd_update(h, h->g2, h->s2, 6, 14, P[S2C], E[S2C], P[S2B], E[S2B], h->d1, h->g1, 28, 784,
                             G[S2C], G[S2B]);
    else
        pool_bwd(h, h->g2, h->s2, 6, 14, h->d1, h->g1, 28, 784);
    TICK(12);
    /* C1: weights and bias only */
    for (int o = 0; o < 6; o++) {
        wgrad5(h->x0, 32, h->g1 + o * 784 * KP, 28, 28, 28, J_C1W, h->gw, h->gw + 25 * KP);
        if (acc) {
            for (int n = 0; n < 26; n++) {  /* 25 weights, then the bias */
                float *s = n < 25 ? G[C1W] + (o * 25 + n) * KP : G[C1B] + o * KP;
                ST(s, LD(s) + LD(h->gw + n * KP));
            }
            continue;
        }
        float *restrict w = P[C1W] + o * 25 * KP;
        const float *restrict e = E[C1W] + o * 25 * KP;
        for (int n = 0; n < 25; n++) ST(w + n * KP, LD(w + n * KP) - LD(e + n * KP) * LD(h->gw + n * KP));
        float *b = P[C1B] + o * KP;
        ST(b, LD(b) - LD(E[C1B] + o * KP) * LD(h->gw + 25 * KP));
    }
    TICK(13);
}

static void load_input(lk_t *h, const float *x) {
    for (int n = 0; n < 1024; n++)
        for (int k = 0; k < KP; k++) h->x0[n * KP + k] = k < h->K ? x[(size_t)k * 1024 + n] : 0.0f;
}

static void store_penalties(const lk_t *h, float *pen) {
    for (int k = 0; k < h->K; k++)
        for (int i = 0; i < 10; i++) pen[k * 10 + i] = h->pen[i * KP + k];
}

/* The core's multiply-add peak at this width, for the benchmark's share of peak: n rounds of
 * 12 independent chains of fused multiply-adds on one register of KP floats each (more chains
 * than two FMA units' latency needs). The result depends on every chain, so none is dropped.
 * FLOPs: n * 12 * KP * 2. */
float lk_peak(long n) {
    v8 acc[12], a = (v8){0} + 0.9999999f, b = (v8){0} + 1e-7f, sum = {0};
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) acc[i] = (v8){0} + 1e-3f * (float)i;
    for (long r = 0; r < n; r++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) acc[i] = acc[i] * a + b;
    }
    for (int i = 0; i < 12; i++) sum += acc[i];
    float out = 0.0f;
    LANES out += sum[k];
    return out;
}

/* ---------------------------------------------------------------------------------------- */
/* the public API: a group of K replicas, run as ceil(K / KP) independent blocks of KP lanes */

typedef struct {
    int K, nb;
    lk_t *blk[];
} lkg_t;

void lk_free(lkg_t *g) {
    if (!g) return;
    for (int b = 0; b < g->nb; b++) blk_free(g->blk[b]);
    free(g);
}

/* per-replica arrays of length K (mask: (K, 16, 6)); see blk_create */
lkg_t *lk_create(int K, const float *A, const float *S, const float *relu, const float *scale,
                 const float *mapw, float j, const float *mask, const float *centres, int pool, int out) {
    if (K < 1) return NULL;
    int nb = (K + KP - 1) / KP;
    lkg_t *g = calloc(1, sizeof *g + nb * sizeof(lk_t *));
    if (!g) return NULL;
    g->K = K;
    g->nb = nb;
    for (int b = 0; b < nb; b++) {
        int o = b * KP, kb = K - o < KP ? K - o : KP;
        g->blk[b] = blk_create(kb, A + o, S + o, relu + o, scale + o, mapw + o, j, mask + (size_t)o * 96, centres, pool, out);
        if (!g->blk[b]) { lk_free(g); return NULL; }
    }
    return g;
}

/* Accumulating (on = 1): from now on each step adds every parameter's gradient (the step's
 * own, at the unchanged parameters) to its sum, which starts at zero, and updates nothing: a
 * minibatch's gradient, for an optimizer outside (lenet1998/engine/minibatch.py). Calling it
 * again zeroes the sums; on = 0 frees them, and steps update again. Returns 0, or -1 without memory. */
int lk_accumulate(lkg_t *g, int on) {
    for (int b = 0; b < g->nb; b++) {
        lk_t *h = g->blk[b];
        for (int i = 0; i < NPARAM; i++) {
            if (!on) { free(h->sum[i]); h->sum[i] = NULL; continue; }
            if (!h->sum[i] && !(h->sum[i] = falloc((size_t)PSIZE[i] * KP))) {
                for (int t = 0; t < NPARAM; t++) { free(h->sum[t]); h->sum[t] = NULL; }
                return -1;
            }
            memset(h->sum[i], 0, sizeof(float) * PSIZE[i] * KP);
        }
    }
    return 0;
}

/* stacked (K, N) <-> internal; which: 0 parameters, 1 steps, 2 gradient sums (accumulating) */
int lk_load(lkg_t *g, int which, int id, const float *src) {
    if (id < 0 || id >= NPARAM || which < 0 || which > 2 || (which == 2 && !g->blk[0]->sum[id])) return -1;
    for (int b = 0; b < g->nb; b++) blk_load(g->blk[b], which, id, src + (size_t)b * KP * PSIZE[id]);
    return 0;
}

int lk_export(const lkg_t *g, int which, int id, float *dst) {
    if (id < 0 || id >= NPARAM || which < 0 || which > 2 || (which == 2 && !g->blk[0]->sum[id])) return -1;
    for (int b = 0; b < g->nb; b++) blk_export(g->blk[b], which, id, dst + (size_t)b * KP * PSIZE[id]);
    return 0;
}

/* T steps, one pattern per replica each: x (T, K, 32, 32), y (T, K) -> penalties (T, K, 10) and
 * loss (T, K), each of the forward pass before that step's update. The blocks are independent,
 * so each block runs its T steps before the next starts: one block's weights and steps (3.8 MB)
 * stay in cache for T steps instead of K / KP blocks' competing for it at every step. */
void lk_steps(lkg_t *g, const float *x, const int64_t *y, float *pen, float *loss, int T) {
    for (int b = 0; b < g->nb; b++) {
        lk_t *h = g->blk[b];
        for (int t = 0; t < T; t++) {
            size_t o = (size_t)t * g->K + (size_t)b * KP;
            load_input(h, x + o * 1024);
            forward(h);
            store_penalties(h, pen + o * 10);
            backward_update(h, y + o, loss + o);
        }
    }
}

/* one step: x (K, 32, 32), y (K,) -> penalties (K, 10) and loss (K,) before the update */
void lk_step(lkg_t *g, const float *x, const int64_t *y, float *pen, float *loss) {
    lk_steps(g, x, y, pen, loss, 1);
}

/* forward only: x (n, K, 32, 32) -> penalties (or logits) (n, K, 10) */
void lk_forward(lkg_t *g, const float *x, int n, float *pen) {
    for (int b = 0; b < g->nb; b++)
        for (int i = 0; i < n; i++) {
            lk_t *h = g->blk[b];
            size_t o = (size_t)i * g->K + (size_t)b * KP;
            load_input(h, x + o * 1024);
            forward(h);
            store_penalties(h, pen + o * 10);
        }
}
