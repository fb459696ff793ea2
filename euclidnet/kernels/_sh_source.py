"""C source of the spherical-harmonics kernel (compiled at first use by :mod:`euclidnet.kernels._build`).

The body is written once with the placeholders ``REAL`` and ``SFX`` and instantiated for float32 and
float64. Points are processed in blocks of ``BLK``; every per-point quantity is stored ``[..][BLK]`` so the
inner loops run across points and vectorise. Work is shared between threads by an atomic chunk counter.

Two kinds of workers:

* generic (any list of degrees, any ``lmax``): loops over ``l`` and ``m`` with the recursion coefficients in
  run-time tables;
* specialised, generated here for small ``lmax`` (``FULL_LMAX``) when the request is all degrees ``0..lmax``
  in order (what models ask for): straight-line code with the coefficients as literals, every intermediate
  a register-resident local, one ``omp simd`` loop over the block's points, no workspace allocation, and in
  the backward the known zero derivatives (``dP_l^l = 0``, ``dP_l^{l-1}/dr^2 = 0``) dropped. The
  coefficients are computed here with exactly the arithmetic of the C ``sh_tables`` (correctly rounded
  integer ratios and square roots) and printed with ``repr`` (round-trip exact), so both workers evaluate the
  same recursion; they differ only in dropped ``+ 0`` terms and in where the compiler fuses multiply-adds (round-off).
"""

from __future__ import annotations

import math

# Largest lmax with generated straight-line kernels, per direction and precision (measured, 1 thread, 1e5
# points: the backward gains 1.5-4x at every lmax <= 8; the forward, bound by writing the [N, (L+1)^2] rows
# for larger L, gains 1.2-3x in float32 up to 6 and in float64 only up to 3). Capped at 6 because the
# build time grows quickly with lmax (about 10 s of gcc for the set below) for gains at large lmax that no
# workload needs.
FULL_LMAX = {"fwd": {"f32": 6, "f64": 3}, "bwd": {"f32": 6, "f64": 6}}

_HEADER = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#define BLK 16
#define CHUNK_BLOCKS 32
#define EPS_NORM 1e-12

#define PIDX(l, m) ((l) * ((l) + 1) / 2 + (m))

/* Whether the request is every degree 0..lmax once, in order, with lmax <= limit (specialised code). */
static int is_full(int lmax, const int *ls, int nls, int limit) {
    if (lmax > limit || nls != lmax + 1) return 0;
    for (int j = 0; j < nls; j++)
        if (ls[j] != j) return 0;
    return 1;
}


/* Recursion tables in double, identical arithmetic to the Python reference. */
static void sh_tables(int lmax, double *a, double *b, double *diag, double *sd) {
    diag[0] = 1.0;
    for (int m = 1; m <= lmax; m++) {
        double d = diag[m - 1] * sqrt((double)(2 * m + 1) / (double)(2 * m));
        if (m == 1) d = d * sqrt(2.0);
        diag[m] = d;
    }
    for (int m = 0; m <= lmax; m++) sd[m] = sqrt((double)(2 * m + 3)) * diag[m];
    for (int l = 0; l <= lmax; l++)
        for (int m = 0; m <= l; m++) {
            a[PIDX(l, m)] = 0.0;
            b[PIDX(l, m)] = 0.0;
        }
    for (int l = 2; l <= lmax; l++)
        for (int m = 0; m <= l - 2; m++) {
            /* integer products are exact in double (< 2^53), as in the Python reference */
            a[PIDX(l, m)] = sqrt(((double)(2 * l - 1) * (double)(2 * l + 1)) / ((double)(l - m) * (double)(l + m)));
            b[PIDX(l, m)] = sqrt(((double)(2 * l + 1) * (double)(l + m - 1) * (double)(l - m - 1))
                                 / ((double)(l - m) * (double)(l + m) * (double)(2 * l - 3)));
        }
}

typedef struct {
    void *(*fn)(void *);
    void *arg;
} job_t;

/* Run fn(arg) on nthreads threads (the caller is one of them). Returns 0 on success. */
static int run_threads(void *(*fn)(void *), void *arg, int nthreads) {
    if (nthreads <= 1) {
        fn(arg);
        return 0;
    }
    pthread_t tid[64];
    if (nthreads > 64) nthreads = 64;
    int started = 0;
    for (int t = 0; t < nthreads - 1; t++) {
        if (pthread_create(&tid[t], NULL, fn, arg) != 0) break;
        started++;
    }
    fn(arg);
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    return 0;
}
"""

_BODY = r"""
typedef struct {
    const REAL *x;
    int64_t n;
    int lmax;
    int nls;
    const int *ls;
    const int *offs;
    const REAL *scales;
    int ncomp;
    int normalize;
    REAL *out;              /* forward: [n, ncomp] */
    const REAL *g;          /* backward: grad of out, strides gs0, gs1 */
    int64_t gs0, gs1;
    REAL *gx;               /* backward: [n, 3] */
    const REAL *ta, *tb, *tdiag, *tsd;
    int64_t nblocks;
    int covers_once;        /* every degree 0..lmax appears exactly once in ls */
    int unit_scales;        /* all scales are 1 */
    const int *src;         /* [ncomp]: offset (row * BLK) in the block buffer of each output column */
    const REAL *colscale;   /* [ncomp]: scale of each output column */
    int64_t next;           /* atomic block counter */
    int failed;
} ctx_SFX;

/* Direction, |u|^2, azimuth powers and Legendre parts of one block. With derivative arrays non-NULL also
   dP/dy and dP/d(r2). */
static inline void block_common_SFX(const ctx_SFX *c, int64_t i0, int np,
                                    REAL *restrict ux, REAL *restrict uy, REAL *restrict uz,
                                    REAL *restrict rr, REAL *restrict r2,
                                    REAL *restrict C, REAL *restrict S, REAL *restrict P,
                                    REAL *restrict Py, REAL *restrict Pr) {
    const int L = c->lmax;
    for (int p = 0; p < BLK; p++) {
        if (p < np) {
            ux[p] = c->x[(i0 + p) * 3 + 0];
            uy[p] = c->x[(i0 + p) * 3 + 1];
            uz[p] = c->x[(i0 + p) * 3 + 2];
        } else {
            ux[p] = 0; uy[p] = 0; uz[p] = 0;
        }
    }
    if (c->normalize) {
        #pragma omp simd
        for (int p = 0; p < BLK; p++) {
            REAL r = SQRT(ux[p] * ux[p] + uy[p] * uy[p] + uz[p] * uz[p]);
            r = (r < (REAL)EPS_NORM) ? (REAL)EPS_NORM : r;  /* NaN stays NaN */
            rr[p] = r;
            ux[p] = ux[p] / r; uy[p] = uy[p] / r; uz[p] = uz[p] / r;
        }
    }
    #pragma omp simd
    for (int p = 0; p < BLK; p++) r2[p] = ux[p] * ux[p] + uy[p] * uy[p] + uz[p] * uz[p];
    for (int p = 0; p < BLK; p++) { C[p] = 1; S[p] = 0; }
    for (int m = 1; m <= L; m++) {
        const REAL *restrict c0 = C + (m - 1) * BLK, *restrict s0 = S + (m - 1) * BLK;
        REAL *restrict c1 = C + m * BLK, *restrict s1 = S + m * BLK;
        if (m == 1) {  /* (z + ix)^1 taken as is (so that an inf/NaN in x does not leak into C_1) */
            for (int p = 0; p < BLK; p++) { c1[p] = uz[p]; s1[p] = ux[p]; }
            continue;
        }
        #pragma omp simd
        for (int p = 0; p < BLK; p++) {
            c1[p] = uz[p] * c0[p] - ux[p] * s0[p];
            s1[p] = ux[p] * c0[p] + uz[p] * s0[p];
        }
    }
    for (int l = 0; l <= L; l++) {
        for (int m = 0; m <= l - 2; m++) {
            const REAL a = c->ta[PIDX(l, m)], b = c->tb[PIDX(l, m)];
            const REAL *restrict p1 = P + PIDX(l - 1, m) * BLK, *restrict p2 = P + PIDX(l - 2, m) * BLK;
            REAL *restrict q = P + PIDX(l, m) * BLK;
            #pragma omp simd
            for (int p = 0; p < BLK; p++) q[p] = a * (uy[p] * p1[p]) - b * (p2[p] * r2[p]);
            if (Py) {
                const REAL *restrict y1 = Py + PIDX(l - 1, m) * BLK, *restrict y2 = Py + PIDX(l - 2, m) * BLK;
                const REAL *restrict s1 = Pr + PIDX(l - 1, m) * BLK, *restrict s2 = Pr + PIDX(l - 2, m) * BLK;
                REAL *restrict qy = Py + PIDX(l, m) * BLK, *restrict qr = Pr + PIDX(l, m) * BLK;
                #pragma omp simd
                for (int p = 0; p < BLK; p++) {
                    qy[p] = a * (p1[p] + uy[p] * y1[p]) - b * (r2[p] * y2[p]);
                    qr[p] = a * (uy[p] * s1[p]) - b * (p2[p] + r2[p] * s2[p]);
                }
            }
        }
        if (l >= 1) {
            const REAL sd = c->tsd[l - 1];
            REAL *restrict q = P + PIDX(l, l - 1) * BLK;
            #pragma omp simd
            for (int p = 0; p < BLK; p++) q[p] = sd * uy[p];
            if (Py) {
                for (int p = 0; p < BLK; p++) { Py[PIDX(l, l - 1) * BLK + p] = sd; Pr[PIDX(l, l - 1) * BLK + p] = 0; }
            }
        }
        const REAL dg = c->tdiag[l];
        for (int p = 0; p < BLK; p++) P[PIDX(l, l) * BLK + p] = dg;
        if (Py) {
            for (int p = 0; p < BLK; p++) { Py[PIDX(l, l) * BLK + p] = 0; Pr[PIDX(l, l) * BLK + p] = 0; }
        }
    }
}

static void *fwd_worker_SFX(void *arg) {
    ctx_SFX *c = (ctx_SFX *)arg;
    const int L = c->lmax;
    const int npl = (L + 1) * (L + 2) / 2;
    const int nall = (L + 1) * (L + 1);
    size_t words = (size_t)BLK * (5 + 2 * (L + 1) + npl + nall);
    REAL *ws = (REAL *)malloc(words * sizeof(REAL));
    if (!ws) { __atomic_store_n(&c->failed, 1, __ATOMIC_RELAXED); return NULL; }
    REAL *ux = ws, *uy = ux + BLK, *uz = uy + BLK, *rr = uz + BLK, *r2 = rr + BLK;
    REAL *C = r2 + BLK, *S = C + (L + 1) * BLK, *P = S + (L + 1) * BLK, *Y = P + npl * BLK;
    for (;;) {
        int64_t b0 = __atomic_fetch_add(&c->next, CHUNK_BLOCKS, __ATOMIC_RELAXED);
        if (b0 >= c->nblocks) break;
        int64_t b1 = b0 + CHUNK_BLOCKS < c->nblocks ? b0 + CHUNK_BLOCKS : c->nblocks;
        for (int64_t bk = b0; bk < b1; bk++) {
            int64_t i0 = bk * BLK;
            int np = (c->n - i0) < BLK ? (int)(c->n - i0) : BLK;
            block_common_SFX(c, i0, np, ux, uy, uz, rr, r2, C, S, P, NULL, NULL);
            for (int l = 0; l <= L; l++) {
                REAL *restrict y0 = Y + (l * l + l) * BLK;
                const REAL *restrict pl = P + PIDX(l, 0) * BLK;
                for (int p = 0; p < BLK; p++) y0[p] = pl[p];
                for (int m = 1; m <= l; m++) {
                    const REAL *restrict pm = P + PIDX(l, m) * BLK;
                    const REAL *restrict cm = C + m * BLK, *restrict sm = S + m * BLK;
                    REAL *restrict yp = Y + (l * l + l + m) * BLK, *restrict yn = Y + (l * l + l - m) * BLK;
                    #pragma omp simd
                    for (int p = 0; p < BLK; p++) {
                        yp[p] = pm[p] * cm[p];
                        yn[p] = pm[p] * sm[p];
                    }
                }
            }
            /* transpose into the output rows: column k of a point is row src[k] of Y, times colscale[k] */
            const int nc = c->ncomp;
            const int *restrict src = c->src;
            for (int p = 0; p < np; p++) {
                REAL *restrict o = c->out + (i0 + p) * (int64_t)nc;
                const REAL *restrict yp = Y + p;
                if (c->unit_scales) {
                    for (int k = 0; k < nc; k++) o[k] = yp[src[k]];
                } else {
                    const REAL *restrict cs = c->colscale;
                    for (int k = 0; k < nc; k++) o[k] = yp[src[k]] * cs[k];
                }
            }
        }
    }
    free(ws);
    return NULL;
}

static void *bwd_worker_SFX(void *arg) {
    ctx_SFX *c = (ctx_SFX *)arg;
    const int L = c->lmax;
    const int npl = (L + 1) * (L + 2) / 2;
    const int nall = (L + 1) * (L + 1);
    size_t words = (size_t)BLK * (12 + 4 * (L + 1) + 3 * npl + nall);
    REAL *ws = (REAL *)malloc(words * sizeof(REAL));
    if (!ws) { __atomic_store_n(&c->failed, 1, __ATOMIC_RELAXED); return NULL; }
    REAL *ux = ws, *uy = ux + BLK, *uz = uy + BLK, *rr = uz + BLK, *r2 = rr + BLK;
    REAL *gX = r2 + BLK, *gY = gX + BLK, *gZ = gY + BLK, *gR = gZ + BLK;
    REAL *x0 = gR + BLK, *y0 = x0 + BLK, *z0 = y0 + BLK;
    REAL *C = z0 + BLK, *S = C + (L + 1) * BLK, *gC = S + (L + 1) * BLK, *gS = gC + (L + 1) * BLK;
    REAL *P = gS + (L + 1) * BLK, *Py = P + npl * BLK, *Pr = Py + npl * BLK, *G = Pr + npl * BLK;
    for (;;) {
        int64_t b0 = __atomic_fetch_add(&c->next, CHUNK_BLOCKS, __ATOMIC_RELAXED);
        if (b0 >= c->nblocks) break;
        int64_t b1 = b0 + CHUNK_BLOCKS < c->nblocks ? b0 + CHUNK_BLOCKS : c->nblocks;
        for (int64_t bk = b0; bk < b1; bk++) {
            int64_t i0 = bk * BLK;
            int np = (c->n - i0) < BLK ? (int)(c->n - i0) : BLK;
            block_common_SFX(c, i0, np, ux, uy, uz, rr, r2, C, S, P, Py, Pr);
            const int direct = c->covers_once && c->gs1 == 1;
            if (!direct || np < BLK) memset(G, 0, sizeof(REAL) * (size_t)nall * BLK);
            if (direct) {
                /* every degree 0..lmax requested exactly once, contiguous rows: plain (scaled) copy */
                const int nc = c->ncomp;
                const int *restrict src = c->src;
                for (int p = 0; p < np; p++) {
                    const REAL *restrict gp = c->g + (i0 + p) * c->gs0;
                    REAL *restrict gq = G + p;
                    if (c->unit_scales) {
                        for (int k = 0; k < nc; k++) gq[src[k]] = gp[k];
                    } else {
                        const REAL *restrict cs = c->colscale;
                        for (int k = 0; k < nc; k++) gq[src[k]] = cs[k] * gp[k];
                    }
                }
            } else {
                for (int p = 0; p < np; p++) {
                    const REAL *restrict gp = c->g + (i0 + p) * c->gs0;
                    for (int j = 0; j < c->nls; j++) {
                        const int l = c->ls[j], d = 2 * l + 1;
                        const REAL s = c->scales[j];
                        const int64_t base = (int64_t)c->offs[j];
                        REAL *restrict gl = G + l * l * BLK + p;
                        for (int k = 0; k < d; k++) gl[k * BLK] += s * gp[(base + k) * c->gs1];
                    }
                }
            }
            for (int p = 0; p < BLK; p++) { gY[p] = 0; gR[p] = 0; }
            memset(gC, 0, sizeof(REAL) * (size_t)(L + 1) * BLK);
            memset(gS, 0, sizeof(REAL) * (size_t)(L + 1) * BLK);
            for (int l = 1; l <= L; l++) {
                {
                    const REAL *restrict g0 = G + (l * l + l) * BLK;
                    const REAL *restrict qy = Py + PIDX(l, 0) * BLK, *restrict qr = Pr + PIDX(l, 0) * BLK;
                    #pragma omp simd
                    for (int p = 0; p < BLK; p++) { gY[p] += g0[p] * qy[p]; gR[p] += g0[p] * qr[p]; }
                }
                for (int m = 1; m <= l; m++) {
                    const REAL *restrict gp = G + (l * l + l + m) * BLK, *restrict gn = G + (l * l + l - m) * BLK;
                    const REAL *restrict pm = P + PIDX(l, m) * BLK;
                    const REAL *restrict qy = Py + PIDX(l, m) * BLK, *restrict qr = Pr + PIDX(l, m) * BLK;
                    const REAL *restrict cm = C + m * BLK, *restrict sm = S + m * BLK;
                    REAL *restrict gc = gC + m * BLK, *restrict gs = gS + m * BLK;
                    #pragma omp simd
                    for (int p = 0; p < BLK; p++) {
                        REAL t = gp[p] * cm[p] + gn[p] * sm[p];
                        gY[p] += t * qy[p];
                        gR[p] += t * qr[p];
                        gc[p] += gp[p] * pm[p];
                        gs[p] += gn[p] * pm[p];
                    }
                }
            }
            for (int p = 0; p < BLK; p++) { gX[p] = 0; gZ[p] = 0; }
            for (int m = 1; m <= L; m++) {
                const REAL fm = (REAL)m;
                const REAL *restrict gc = gC + m * BLK, *restrict gs = gS + m * BLK;
                const REAL *restrict c0 = C + (m - 1) * BLK, *restrict s0 = S + (m - 1) * BLK;
                #pragma omp simd
                for (int p = 0; p < BLK; p++) {
                    gZ[p] += fm * (gc[p] * c0[p] + gs[p] * s0[p]);
                    gX[p] += fm * (gs[p] * c0[p] - gc[p] * s0[p]);
                }
            }
            #pragma omp simd
            for (int p = 0; p < BLK; p++) {
                gX[p] += 2 * ux[p] * gR[p];
                gY[p] += 2 * uy[p] * gR[p];
                gZ[p] += 2 * uz[p] * gR[p];
            }
            if (c->normalize) {
                for (int p = 0; p < np; p++) {
                    x0[p] = c->x[(i0 + p) * 3 + 0];
                    y0[p] = c->x[(i0 + p) * 3 + 1];
                    z0[p] = c->x[(i0 + p) * 3 + 2];
                }
                for (int p = np; p < BLK; p++) { x0[p] = 0; y0[p] = 0; z0[p] = 0; }
            }
            store_grad_SFX(c->gx, i0, np, c->normalize, gX, gY, gZ, x0, y0, z0, rr);
        }
    }
    free(ws);
    return NULL;
}

static int setup_SFX(ctx_SFX *c, const REAL *x, int64_t n, int lmax, const int *ls, const int *offs,
                     const double *scales, int nls, int ncomp, int normalize, REAL **tables) {
    memset(c, 0, sizeof(*c));
    int npl = (lmax + 1) * (lmax + 2) / 2;
    double *tab = (double *)malloc(sizeof(double) * (size_t)(2 * npl + 2 * (lmax + 1)));
    REAL *rt = (REAL *)malloc(sizeof(REAL) * (size_t)(2 * npl + 2 * (lmax + 1) + nls + ncomp));
    int *src = (int *)malloc(sizeof(int) * (size_t)(ncomp > 0 ? ncomp : 1));
    if (!tab || !rt || !src) { free(tab); free(rt); free(src); return -1; }
    sh_tables(lmax, tab, tab + npl, tab + 2 * npl, tab + 2 * npl + lmax + 1);
    for (int i = 0; i < 2 * npl + 2 * (lmax + 1); i++) rt[i] = (REAL)tab[i];
    for (int j = 0; j < nls; j++) rt[2 * npl + 2 * (lmax + 1) + j] = (REAL)scales[j];
    free(tab);
    c->x = x; c->n = n; c->lmax = lmax; c->nls = nls; c->ls = ls; c->offs = offs; c->ncomp = ncomp;
    c->normalize = normalize;
    c->ta = rt; c->tb = rt + npl; c->tdiag = rt + 2 * npl; c->tsd = rt + 2 * npl + lmax + 1;
    c->scales = rt + 2 * npl + 2 * (lmax + 1);
    c->nblocks = (n + BLK - 1) / BLK;
    c->unit_scales = 1;
    REAL *cs = rt + 2 * npl + 2 * (lmax + 1) + nls;
    for (int j = 0; j < nls; j++) {
        if ((REAL)scales[j] != 1) c->unit_scales = 0;
        for (int k = 0; k < 2 * ls[j] + 1; k++) {
            src[offs[j] + k] = (ls[j] * ls[j] + k) * BLK;
            cs[offs[j] + k] = (REAL)scales[j];
        }
    }
    c->src = src;
    c->colscale = cs;
    c->covers_once = (nls == lmax + 1);
    for (int j = 0; j < nls && c->covers_once; j++)
        for (int k = 0; k < j; k++)
            if (ls[k] == ls[j]) { c->covers_once = 0; break; }
    *tables = rt;
    return 0;
}

"""

_ENTRY = r"""
/* Scales of the output columns of a full request (degrees 0..lmax in order); returns whether all are 1. */
static int full_scales_SFX(int lmax, const double *scales, REAL *cs) {
    int unit = 1;
    for (int l = 0; l <= lmax; l++) {
        if ((REAL)scales[l] != 1) unit = 0;
        for (int k = 0; k < 2 * l + 1; k++) cs[l * l + k] = (REAL)scales[l];
    }
    return unit;
}

int euclidnet_sh_forward_SFX(const REAL *x, int64_t n, int lmax, const int *ls, const int *offs,
                             const double *scales, int nls, int ncomp, int normalize, REAL *out, int nthreads) {
    ctx_SFX c;
    if (is_full(lmax, ls, nls, FWD_LMAX_SFX)) {
        /* Specialised worker: no tables, no workspace; the context lives on this stack frame. */
        REAL cs[(FWD_LMAX_SFX + 1) * (FWD_LMAX_SFX + 1)];
        memset(&c, 0, sizeof(c));
        c.x = x; c.n = n; c.lmax = lmax; c.ncomp = ncomp; c.normalize = normalize; c.out = out;
        c.nblocks = (n + BLK - 1) / BLK;
        c.unit_scales = full_scales_SFX(lmax, scales, cs);
        c.colscale = cs;
        int64_t nchunks = (c.nblocks + CHUNK_BLOCKS - 1) / CHUNK_BLOCKS;
        if (nthreads > nchunks) nthreads = (int)nchunks;
        run_threads(fwd_full_SFX[lmax], &c, nthreads);
        return 0;
    }
    REAL *rt;
    if (setup_SFX(&c, x, n, lmax, ls, offs, scales, nls, ncomp, normalize, &rt)) return -1;
    c.out = out;
    int64_t nchunks = (c.nblocks + CHUNK_BLOCKS - 1) / CHUNK_BLOCKS;
    if (nthreads > nchunks) nthreads = (int)nchunks;
    run_threads(fwd_worker_SFX, &c, nthreads);
    free(rt);
    free((void *)c.src);
    return c.failed ? -1 : 0;
}

int euclidnet_sh_backward_SFX(const REAL *x, int64_t n, int lmax, const int *ls, const int *offs,
                              const double *scales, int nls, int ncomp, int normalize,
                              const REAL *g, int64_t gs0, int64_t gs1, REAL *gx, int nthreads) {
    ctx_SFX c;
    if (is_full(lmax, ls, nls, BWD_LMAX_SFX)) {
        REAL cs[(BWD_LMAX_SFX + 1) * (BWD_LMAX_SFX + 1)];
        memset(&c, 0, sizeof(c));
        c.x = x; c.n = n; c.lmax = lmax; c.ncomp = ncomp; c.normalize = normalize;
        c.g = g; c.gs0 = gs0; c.gs1 = gs1; c.gx = gx;
        c.nblocks = (n + BLK - 1) / BLK;
        c.unit_scales = full_scales_SFX(lmax, scales, cs);
        c.colscale = cs;
        int64_t nchunks = (c.nblocks + CHUNK_BLOCKS - 1) / CHUNK_BLOCKS;
        if (nthreads > nchunks) nthreads = (int)nchunks;
        run_threads(bwd_full_SFX[lmax], &c, nthreads);
        return 0;
    }
    REAL *rt;
    if (setup_SFX(&c, x, n, lmax, ls, offs, scales, nls, ncomp, normalize, &rt)) return -1;
    c.g = g; c.gs0 = gs0; c.gs1 = gs1; c.gx = gx;
    int64_t nchunks = (c.nblocks + CHUNK_BLOCKS - 1) / CHUNK_BLOCKS;
    if (nthreads > nchunks) nthreads = (int)nchunks;
    run_threads(bwd_worker_SFX, &c, nthreads);
    free(rt);
    free((void *)c.src);
    return c.failed ? -1 : 0;
}
"""


# -- generated straight-line kernels for full requests ---------------------------------------------------------

_BLOCK_IO = r"""
/* Load a block of points as [3][BLK] (zeros past np), keep the raw coordinates in x0/y0/z0 if non-NULL, and
   normalise in place (u = x / max(|x|, eps), rr = max(|x|, eps)) if asked. */
static inline void load_block_SFX(const REAL *restrict x, int64_t i0, int np, int normalize,
                                  REAL *restrict ux, REAL *restrict uy, REAL *restrict uz,
                                  REAL *restrict x0, REAL *restrict y0, REAL *restrict z0, REAL *restrict rr) {
    const REAL *restrict xb = x + i0 * 3;
    if (np == BLK) {
        for (int p = 0; p < BLK; p++) { ux[p] = xb[3 * p]; uy[p] = xb[3 * p + 1]; uz[p] = xb[3 * p + 2]; }
    } else {
        for (int p = 0; p < BLK; p++) {
            if (p < np) { ux[p] = xb[3 * p]; uy[p] = xb[3 * p + 1]; uz[p] = xb[3 * p + 2]; }
            else { ux[p] = 0; uy[p] = 0; uz[p] = 0; }
        }
    }
    if (x0) {
        for (int p = 0; p < BLK; p++) { x0[p] = ux[p]; y0[p] = uy[p]; z0[p] = uz[p]; }
    }
    if (normalize) {
        #pragma omp simd
        for (int p = 0; p < BLK; p++) {
            REAL r = SQRT(ux[p] * ux[p] + uy[p] * uy[p] + uz[p] * uz[p]);
            r = (r < (REAL)EPS_NORM) ? (REAL)EPS_NORM : r;  /* NaN stays NaN */
            rr[p] = r;
            ux[p] = ux[p] / r; uy[p] = uy[p] / r; uz[p] = uz[p] / r;
        }
    }
}

/* Chain rule through u = x / max(|x|, eps), then store [BLK][3]. Above eps the Jacobian is
   (I - n n^T) / |x| with n = x / |x|; below, I / eps (the clamp has zero derivative). Written without
   branches (the projection d is zeroed below eps) so that the loop vectorises; rr[p] = max(|x|, eps), so
   x / rr is n wherever d is used, and NaN/inf rows stay NaN through inv or n. */
static inline void store_grad_SFX(REAL *restrict gx, int64_t i0, int np, int normalize,
                                  REAL *restrict gX, REAL *restrict gY, REAL *restrict gZ,
                                  const REAL *restrict x0, const REAL *restrict y0, const REAL *restrict z0,
                                  const REAL *restrict rr) {
    if (normalize) {
        #pragma omp simd
        for (int p = 0; p < BLK; p++) {
            const REAL r = SQRT(x0[p] * x0[p] + y0[p] * y0[p] + z0[p] * z0[p]);
            const REAL q = rr[p];
            const REAL inv = 1 / q;
            const REAL nx = x0[p] / q, ny = y0[p] / q, nz = z0[p] / q;
            REAL d = nx * gX[p] + ny * gY[p] + nz * gZ[p];
            d = (r >= (REAL)EPS_NORM) ? d : (REAL)0;
            gX[p] = (gX[p] - nx * d) * inv;
            gY[p] = (gY[p] - ny * d) * inv;
            gZ[p] = (gZ[p] - nz * d) * inv;
        }
    }
    REAL *restrict gb = gx + i0 * 3;
    for (int p = 0; p < np; p++) { gb[3 * p] = gX[p]; gb[3 * p + 1] = gY[p]; gb[3 * p + 2] = gZ[p]; }
}
"""


_Table = dict[tuple[int, int], float]


def _coefficients(lmax: int) -> tuple[list[float], list[float], _Table, _Table]:
    """``diag``, ``sd``, ``a``, ``b`` exactly as the C ``sh_tables`` computes them (see the module docstring)."""
    diag = [1.0]
    for m in range(1, lmax + 1):
        d = diag[m - 1] * math.sqrt((2 * m + 1) / (2 * m))
        if m == 1:
            d = d * math.sqrt(2.0)
        diag.append(d)
    sd = [math.sqrt(float(2 * m + 3)) * diag[m] for m in range(lmax + 1)]
    a: dict[tuple[int, int], float] = {}
    b: dict[tuple[int, int], float] = {}
    for l in range(2, lmax + 1):
        for m in range(l - 1):
            a[l, m] = math.sqrt(((2 * l - 1) * (2 * l + 1)) / ((l - m) * (l + m)))
            b[l, m] = math.sqrt(((2 * l + 1) * (l + m - 1) * (l - m - 1)) / ((l - m) * (l + m) * (2 * l - 3)))
    return diag, sd, a, b


def _lit(v: float) -> str:
    return f"((REAL){v!r})"


def _legendre(L: int, lines: list[str], derivatives: bool) -> tuple[dict, dict, dict]:
    """Emit the Legendre recursion; return ``(l, m) ->`` expression of P, dP/duy, dP/dr2 (``None`` = 0)."""
    diag, sd, a, b = _coefficients(L)
    P: dict[tuple[int, int], str] = {}
    Py: dict[tuple[int, int], str | None] = {}
    Pr: dict[tuple[int, int], str | None] = {}
    for l in range(L + 1):
        for m in range(l - 1):
            A, B = _lit(a[l, m]), _lit(b[l, m])
            p1, p2 = P[l - 1, m], P[l - 2, m]
            lines.append(f"const REAL p{l}_{m} = {A} * (uy * {p1}) - {B} * ({p2} * r2);")
            P[l, m] = f"p{l}_{m}"
            if derivatives:
                y1, y2, s1, s2 = Py[l - 1, m], Py[l - 2, m], Pr[l - 1, m], Pr[l - 2, m]
                qy = f"{A} * ({p1} + uy * {y1})" if y1 is not None else f"{A} * {p1}"
                if y2 is not None:
                    qy += f" - {B} * (r2 * {y2})"
                inner = f"({p2} + r2 * {s2})" if s2 is not None else p2
                qr = f"{A} * (uy * {s1}) - {B} * {inner}" if s1 is not None else f"-({B} * {inner})"
                lines.append(f"const REAL py{l}_{m} = {qy};")
                lines.append(f"const REAL pr{l}_{m} = {qr};")
                Py[l, m], Pr[l, m] = f"py{l}_{m}", f"pr{l}_{m}"
        if l >= 1:
            lines.append(f"const REAL p{l}_{l - 1} = {_lit(sd[l - 1])} * uy;")
            P[l, l - 1] = f"p{l}_{l - 1}"
            Py[l, l - 1], Pr[l, l - 1] = _lit(sd[l - 1]), None
        P[l, l] = _lit(diag[l])
        Py[l, l], Pr[l, l] = None, None
    return P, Py, Pr


def _azimuth(L: int, lines: list[str]) -> None:
    """``c{m} + i s{m} = (uz + i ux)^m``; the first power is taken as is, like the generic worker."""
    if L >= 1:
        lines.append("const REAL c1 = uz, s1 = ux;")
    for m in range(2, L + 1):
        lines.append(f"const REAL c{m} = uz * c{m - 1} - ux * s{m - 1};")
        lines.append(f"const REAL s{m} = ux * c{m - 1} + uz * s{m - 1};")


# Degrees whose forward copies the block out sample by sample (measured per L, 1e5 vectors, 1 thread).
_COPY_SAMPLE_MAJOR = frozenset({0, 1, 2, 3})


def _full_forward(L: int) -> str:
    nc = (L + 1) ** 2
    lines: list[str] = []
    _azimuth(L, lines)
    P, _, _ = _legendre(L, lines, derivatives=False)
    for l in range(L + 1):
        base = l * l + l
        lines.append(f"yb[{base} * BLK + p] = {P[l, 0]};")
        for m in range(1, l + 1):
            lines.append(f"yb[{base + m} * BLK + p] = {P[l, m]} * c{m};")
            lines.append(f"yb[{base - m} * BLK + p] = {P[l, m]} * s{m};")
    body = "\n".join("            " + s for s in lines)
    if L in _COPY_SAMPLE_MAJOR:  # NC = 1, 4, 9, 16: the compiler vectorises the inner k loop
        copy = """            for (int p = 0; p < np; p++)
                for (int k = 0; k < NC; k++) o[p * NC + k] = yb[k * BLK + p];"""
    else:  # contiguous loads of yb, stores at stride NC: ~4x faster at L = 4, 1.4x at L = 5, 6
        copy = """            for (int k = 0; k < NC; k++) {
                const REAL *restrict y = yb + k * BLK;
                for (int p = 0; p < np; p++) o[p * NC + k] = y[p];
            }"""
    return rf"""
static void *fwd_full{L}_SFX(void *arg) {{
    ctx_SFX *c = (ctx_SFX *)arg;
    enum {{ NC = {nc} }};
    REAL vx[BLK] __attribute__((aligned(64))), vy[BLK] __attribute__((aligned(64)));
    REAL vz[BLK] __attribute__((aligned(64))), rr[BLK] __attribute__((aligned(64)));
    REAL yb[NC * BLK] __attribute__((aligned(64)));
    const REAL *restrict cs = c->colscale;
    for (;;) {{
        int64_t b0 = __atomic_fetch_add(&c->next, CHUNK_BLOCKS, __ATOMIC_RELAXED);
        if (b0 >= c->nblocks) break;
        int64_t b1 = b0 + CHUNK_BLOCKS < c->nblocks ? b0 + CHUNK_BLOCKS : c->nblocks;
        for (int64_t bk = b0; bk < b1; bk++) {{
            const int64_t i0 = bk * BLK;
            const int np = (c->n - i0) < BLK ? (int)(c->n - i0) : BLK;
            load_block_SFX(c->x, i0, np, c->normalize, vx, vy, vz, NULL, NULL, NULL, rr);
            #pragma omp simd
            for (int p = 0; p < BLK; p++) {{
            const REAL ux = vx[p], uy = vy[p], uz = vz[p];
            const REAL r2 = ux * ux + uy * uy + uz * uz;
            (void)r2; (void)ux; (void)uz;
{body}
            }}
            if (!c->unit_scales)
                for (int k = 0; k < NC; k++)
                    for (int p = 0; p < BLK; p++) yb[k * BLK + p] *= cs[k];
            REAL *restrict o = c->out + i0 * NC;
{copy}
        }}
    }}
    return NULL;
}}
"""


def _full_backward(L: int) -> str:
    nc = (L + 1) ** 2
    lines: list[str] = []
    _azimuth(L, lines)
    P, Py, Pr = _legendre(L, lines, derivatives=True)
    lines.append("REAL gu = 0, gr = 0;")  # d/d(uy) and d/d(r2) of sum(g * Y)
    for m in range(1, L + 1):
        lines.append(f"REAL gc{m} = 0, gs{m} = 0;")
    for l in range(1, L + 1):
        base = l * l + l
        lines.append(f"const REAL g{l}_0 = G[{base} * BLK + p];")
        if Py[l, 0] is not None:
            lines.append(f"gu += g{l}_0 * {Py[l, 0]};")
        if Pr[l, 0] is not None:
            lines.append(f"gr += g{l}_0 * {Pr[l, 0]};")
        for m in range(1, l + 1):
            lines.append(f"const REAL g{l}_p{m} = G[{base + m} * BLK + p], g{l}_n{m} = G[{base - m} * BLK + p];")
            if Py[l, m] is not None or Pr[l, m] is not None:
                lines.append(f"const REAL t{l}_{m} = g{l}_p{m} * c{m} + g{l}_n{m} * s{m};")
                if Py[l, m] is not None:
                    lines.append(f"gu += t{l}_{m} * {Py[l, m]};")
                if Pr[l, m] is not None:
                    lines.append(f"gr += t{l}_{m} * {Pr[l, m]};")
            lines.append(f"gc{m} += g{l}_p{m} * {P[l, m]};")
            lines.append(f"gs{m} += g{l}_n{m} * {P[l, m]};")
    # Through the azimuth recursion: d(c_m + i s_m)/duz = m (c_{m-1} + i s_{m-1}), d/dux = i m (...).
    lines.append("REAL gxa = 0, gza = 0;")
    if L >= 1:
        lines.append("gza += gc1;")
        lines.append("gxa += gs1;")
    for m in range(2, L + 1):
        lines.append(f"gza += (REAL){m} * (gc{m} * c{m - 1} + gs{m} * s{m - 1});")
        lines.append(f"gxa += (REAL){m} * (gs{m} * c{m - 1} - gc{m} * s{m - 1});")
    lines.append("gX[p] = gxa + 2 * ux * gr;")
    lines.append("gY[p] = gu + 2 * uy * gr;")
    lines.append("gZ[p] = gza + 2 * uz * gr;")
    body = "\n".join("            " + s for s in lines)
    return rf"""
static void *bwd_full{L}_SFX(void *arg) {{
    ctx_SFX *c = (ctx_SFX *)arg;
    enum {{ NC = {nc} }};
    REAL vx[BLK] __attribute__((aligned(64))), vy[BLK] __attribute__((aligned(64)));
    REAL vz[BLK] __attribute__((aligned(64))), rr[BLK] __attribute__((aligned(64)));
    REAL x0[BLK] __attribute__((aligned(64))), y0[BLK] __attribute__((aligned(64)));
    REAL z0[BLK] __attribute__((aligned(64)));
    REAL gX[BLK] __attribute__((aligned(64))), gY[BLK] __attribute__((aligned(64)));
    REAL gZ[BLK] __attribute__((aligned(64)));
    REAL G[NC * BLK] __attribute__((aligned(64)));
    const REAL *restrict cs = c->colscale;
    const int64_t st0 = c->gs0, st1 = c->gs1;
    for (;;) {{
        int64_t b0 = __atomic_fetch_add(&c->next, CHUNK_BLOCKS, __ATOMIC_RELAXED);
        if (b0 >= c->nblocks) break;
        int64_t b1 = b0 + CHUNK_BLOCKS < c->nblocks ? b0 + CHUNK_BLOCKS : c->nblocks;
        for (int64_t bk = b0; bk < b1; bk++) {{
            const int64_t i0 = bk * BLK;
            const int np = (c->n - i0) < BLK ? (int)(c->n - i0) : BLK;
            load_block_SFX(c->x, i0, np, c->normalize, vx, vy, vz, x0, y0, z0, rr);
            /* gradient rows -> [NC][BLK]: contiguous rows (unrolled), one row broadcast to every point
               (stride 0, as y.sum() hands over), or any strides */
            if (np == BLK && st1 == 1) {{
                for (int p = 0; p < BLK; p++) {{
                    const REAL *restrict gp = c->g + (i0 + p) * st0;
                    for (int k = 0; k < NC; k++) G[k * BLK + p] = gp[k];
                }}
            }} else if (np == BLK && st0 == 0) {{
                for (int k = 0; k < NC; k++) {{
                    const REAL v = c->g[k * st1];
                    for (int p = 0; p < BLK; p++) G[k * BLK + p] = v;
                }}
            }} else {{
                for (int p = 0; p < BLK; p++) {{
                    const REAL *restrict gp = c->g + (i0 + p) * st0;
                    for (int k = 0; k < NC; k++) G[k * BLK + p] = p < np ? gp[k * st1] : 0;
                }}
            }}
            if (!c->unit_scales)
                for (int k = 0; k < NC; k++)
                    for (int p = 0; p < BLK; p++) G[k * BLK + p] = cs[k] * G[k * BLK + p];
            #pragma omp simd
            for (int p = 0; p < BLK; p++) {{
            const REAL ux = vx[p], uy = vy[p], uz = vz[p];
            const REAL r2 = ux * ux + uy * uy + uz * uz;
{body}
            }}
            store_grad_SFX(c->gx, i0, np, c->normalize, gX, gY, gZ, x0, y0, z0, rr);
        }}
    }}
    return NULL;
}}
"""


def _full_kernels(sfx: str) -> str:
    """Specialised workers of one precision and their dispatch tables ``fwd_full_SFX[lmax]`` etc."""
    parts = []
    for kind, gen in (("fwd", _full_forward), ("bwd", _full_backward)):
        top = FULL_LMAX[kind][sfx]
        parts.append(f"#define {kind.upper()}_LMAX_SFX {top}")
        parts.extend(gen(L) for L in range(top + 1))
        names = ", ".join(f"{kind}_full{L}_SFX" for L in range(top + 1))
        parts.append(f"static void *(*const {kind}_full_SFX[{top + 1}])(void *) = {{{names}}};\n")
    return "\n".join(parts)


def source() -> str:
    """The complete C translation unit (float32 and float64 instantiations)."""
    parts = [_HEADER]
    for real, sfx, sqrt in (("float", "f32", "sqrtf"), ("double", "f64", "sqrt")):
        for text in (_BLOCK_IO, _BODY, _full_kernels(sfx), _ENTRY):
            parts.append(text.replace("REAL", real).replace("SFX", sfx).replace("SQRT", sqrt))
    return "\n".join(parts)
