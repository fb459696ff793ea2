"""C source of the fused tensor-product kernels (compiled at first use by :mod:`euclidnet.kernels._build`).

Two kernel families, each "contract three operands of a multilinear form into the fourth", instantiated
for float32 and float64 (placeholders ``REAL`` / ``SFX``):

* ``euclidnet_tp_uvu_SFX``: the form ``F(x1, x2, w, out) = sum_path c sum C_ijk w[u,v] x1[u,i] x2[v,j]
  out[u,k]`` of weighted 'uvu' paths. ``target`` 0/1/2/3 = x1/x2/w/out is written (fully overwritten),
  the three others are read. Weights are per sample (``wstride`` = row length) or shared (``wstride`` =
  0; target 2 then sums over the batch: per-thread partial sums over static sample ranges, added in thread
  order, so the result is deterministic for a given thread count). Per sample, ``x1``, ``out`` and ``w``
  are transposed to a ``[2l+1][mul]`` scratch so every inner loop runs along ``u`` (contiguous, vectorised),
  and per (path, v) the tiny ``t[i,k] = sum_j c C_ijk x2[v,j]`` is formed on the nonzero (i, k) pairs.
* ``euclidnet_tp_uvwcg_SFX``: the form ``G(x1, x2, z) = sum_path sum C_ijk x1[u,i] x2[v,j] z[k,u,v]``
  (the CG part of 'uvw' paths; the weight contraction is a GEMM done by torch). ``target`` 0/1/2 =
  x1/x2/z. ``z`` is path-major: path ``p`` occupies ``[n, dout, mul1, mul2]`` at ``zoff[p] * n``.

* ``euclidnet_tp_uvws_SFX``: the form ``F(x1, x2, w, out)`` of weighted 'uvw' paths with per-sample weights
  ``w[u,v,w]``. Per sample, path and ``v``: ``t[i,k] = sum_j c C_ijk x2[v,j]`` on the nonzero (i, k) pairs,
  ``A[u,k] = sum_i t[i,k] x1[u,i]``, then ``out[w,k] += sum_u W[u,v,w] A[u,k]`` with the inner loop along
  ``w`` (contiguous in the weights; ``out`` is accumulated in a ``[2l+1][mul]`` scratch). The adjoints use
  ``B[u,k] = sum_w W[u,v,w] out[w,k]``. Each weight belongs to one path, so target 2 writes every weight
  of the live paths exactly once per sample.

* ``euclidnet_tp_uvub_SFX``: with per-sample weights, the three first derivatives of the 'uvu' form
  (w.r.t. x1, x2, w; each optional) in one pass over the samples (used by first-order backward).

Work is split over pthreads by static contiguous sample ranges.
"""

# ruff: noqa: E501
from __future__ import annotations

_HEADER = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

typedef struct {
    void *(*fn)(void *);
    void *arg;
    int tid;
    int nthreads;
    int err;
} tp_job_t;

static void *tp_trampoline(void *p) {
    tp_job_t *j = (tp_job_t *)p;
    j->fn(p);
    return NULL;
}

/* Run fn on nthreads threads; job[t].tid = t (thread 0 is the caller). Returns the OR of job errors. */
static int tp_run(void *(*fn)(void *), void *arg, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 64) nthreads = 64;
    tp_job_t jobs[64];
    pthread_t tid[64];
    int started[64];
    for (int t = 0; t < nthreads; t++) {
        jobs[t].fn = fn; jobs[t].arg = arg; jobs[t].tid = t; jobs[t].nthreads = nthreads; jobs[t].err = 0;
        started[t] = 0;
    }
    for (int t = 1; t < nthreads; t++)
        started[t] = pthread_create(&tid[t], NULL, tp_trampoline, &jobs[t]) == 0;
    fn(&jobs[0]);
    int err = jobs[0].err;
    for (int t = 1; t < nthreads; t++) {
        if (started[t]) {
            pthread_join(tid[t], NULL);
            err |= jobs[t].err;
        } else {
            /* could not start: run its share here */
            fn(&jobs[t]);
            err |= jobs[t].err;
        }
    }
    return err;
}

static inline void tp_range(int64_t n, int tid, int nthreads, int64_t *a, int64_t *b) {
    *a = n * tid / nthreads;
    *b = n * (tid + 1) / nthreads;
}

/* path info (uvu): off1 mul1 d1 off2 mul2 d2 offo dout offw q0 q1 */
#define UVU_PI 11
/* path info (uvw cg): off1 mul1 d1 off2 mul2 d2 zoff dout e0 e1 */
#define CG_PI 10
"""

_BODY = r"""
typedef struct {
    int target;
    const REAL *x1, *x2, *w, *o;
    REAL *tgt;
    int64_t n;
    int dim1, dim2, wnum, dimo;
    int64_t wstride;
    int npaths;
    const int *pinfo;
    const int *pairs;     /* per pair: i, k, e0, e1 */
    const int *ej;        /* per entry: j */
    const REAL *ec;       /* per entry: coefficient (CG * path normalisation) */
    int nb1; const int *b1;   /* x1 blocks: off, mul, d */
    int nbo; const int *bo;   /* out blocks: off, mul, d */
    int maxbuf;           /* max d1 * mul1 over paths */
    int maxpairs;
    REAL *wacc;           /* shared weights, target 2: nthreads * wnum partial sums (T layout) */
} uvu_args_SFX;

/* [mul][d] -> [d][mul] */
static inline void tr_in_SFX(const REAL *restrict src, REAL *restrict dst, int mul, int d) {
    for (int u = 0; u < mul; u++)
        for (int i = 0; i < d; i++) dst[i * mul + u] = src[u * d + i];
}

static inline void tr_out_SFX(const REAL *restrict src, REAL *restrict dst, int mul, int d) {
    for (int u = 0; u < mul; u++)
        for (int i = 0; i < d; i++) dst[u * d + i] = src[i * mul + u];
}

static void uvu_weights_T_SFX(const uvu_args_SFX *A, const REAL *wr, REAL *wT) {
    for (int p = 0; p < A->npaths; p++) {
        const int *P = A->pinfo + UVU_PI * p;
        int mul1 = P[1], mul2 = P[4], offw = P[8];
        for (int u = 0; u < mul1; u++)
            for (int v = 0; v < mul2; v++) wT[offw + v * mul1 + u] = wr[offw + u * mul2 + v];
    }
}

static void *uvu_worker_SFX(void *jp) {
    tp_job_t *job = (tp_job_t *)jp;
    const uvu_args_SFX *A = (const uvu_args_SFX *)job->arg;
    const int target = A->target;
    int64_t z0, z1;
    tp_range(A->n, job->tid, job->nthreads, &z0, &z1);
    size_t tsz = (size_t)A->dim1;
    if ((size_t)A->dimo > tsz) tsz = A->dimo;
    if ((size_t)A->wnum > tsz) tsz = A->wnum;
    size_t total = (size_t)A->dim1 + A->dimo + A->wnum + tsz + 2 * (size_t)A->maxbuf + A->maxpairs + 16;
    REAL *mem = (REAL *)malloc(total * sizeof(REAL));
    if (!mem) { job->err = 1; return NULL; }
    REAL *x1T = mem, *oT = x1T + A->dim1, *wT = oT + A->dimo, *tT = wT + A->wnum, *buf = tT + tsz;
    REAL *buf2 = buf + A->maxbuf, *tq = buf2 + A->maxbuf;
    const int shared = A->wstride == 0;
    REAL *wacc = (target == 2 && shared) ? A->wacc + (size_t)job->tid * A->wnum : NULL;
    if (wacc) memset(wacc, 0, sizeof(REAL) * A->wnum);
    if (target != 2 && shared) uvu_weights_T_SFX(A, A->w, wT);

    for (int64_t z = z0; z < z1; z++) {
        const REAL *x2r = (target == 1) ? NULL : A->x2 + z * A->dim2;
        if (target != 0) {
            const REAL *x1r = A->x1 + z * A->dim1;
            for (int b = 0; b < A->nb1; b++) tr_in_SFX(x1r + A->b1[3 * b], x1T + A->b1[3 * b], A->b1[3 * b + 1], A->b1[3 * b + 2]);
        }
        if (target != 3) {
            const REAL *orow = A->o + z * A->dimo;
            for (int b = 0; b < A->nbo; b++) tr_in_SFX(orow + A->bo[3 * b], oT + A->bo[3 * b], A->bo[3 * b + 1], A->bo[3 * b + 2]);
        }
        if (target != 2 && !shared) uvu_weights_T_SFX(A, A->w + z * A->wstride, wT);
        REAL *g2 = NULL;
        if (target == 1) {
            g2 = A->tgt + z * A->dim2;
            memset(g2, 0, sizeof(REAL) * A->dim2);
            x2r = NULL;
        }
        REAL *acc = tT;
        if (target == 2 && shared) acc = wacc;
        else if (target != 1) {
            size_t m = target == 0 ? A->dim1 : (target == 2 ? A->wnum : A->dimo);
            memset(tT, 0, sizeof(REAL) * m);
        }
        for (int p = 0; p < A->npaths; p++) {
            const int *P = A->pinfo + UVU_PI * p;
            const int off1 = P[0], mul = P[1], d1 = P[2], off2 = P[3], mul2 = P[4], d2 = P[5];
            const int offo = P[6], offw = P[8], q0 = P[9], q1 = P[10];
            const REAL *xb = x1T + off1;
            const REAL *ob = oT + offo;
            for (int v = 0; v < mul2; v++) {
                const REAL *wv = wT + offw + v * mul;
                if (target != 1) {
                    const REAL *x2v = x2r + off2 + v * d2;
                    for (int q = q0; q < q1; q++) {
                        const int *Q = A->pairs + 4 * q;
                        REAL s = 0;
                        for (int e = Q[2]; e < Q[3]; e++) s += A->ec[e] * x2v[A->ej[e]];
                        tq[q - q0] = s;
                    }
                }
                if (target == 3) {
                    REAL *restrict y = buf;
                    for (int i = 0; i < d1; i++) {
                        const REAL *restrict xi = xb + i * mul;
                        REAL *restrict yi = y + i * mul;
                        for (int u = 0; u < mul; u++) yi[u] = wv[u] * xi[u];
                    }
                    for (int q = q0; q < q1; q++) {
                        const int *Q = A->pairs + 4 * q;
                        const REAL t = tq[q - q0];
                        REAL *restrict ok = acc + offo + Q[1] * mul;
                        const REAL *restrict yi = y + Q[0] * mul;
                        for (int u = 0; u < mul; u++) ok[u] += t * yi[u];
                    }
                } else if (target == 0 || target == 2) {
                    REAL *restrict a = buf;
                    memset(a, 0, sizeof(REAL) * d1 * mul);
                    for (int q = q0; q < q1; q++) {
                        const int *Q = A->pairs + 4 * q;
                        const REAL t = tq[q - q0];
                        REAL *restrict ai = a + Q[0] * mul;
                        const REAL *restrict gk = ob + Q[1] * mul;
                        for (int u = 0; u < mul; u++) ai[u] += t * gk[u];
                    }
                    if (target == 0) {
                        for (int i = 0; i < d1; i++) {
                            REAL *restrict gi = acc + off1 + i * mul;
                            const REAL *restrict ai = a + i * mul;
                            for (int u = 0; u < mul; u++) gi[u] += wv[u] * ai[u];
                        }
                    } else {
                        REAL *restrict gw = acc + offw + v * mul;
                        for (int i = 0; i < d1; i++) {
                            const REAL *restrict xi = xb + i * mul;
                            const REAL *restrict ai = a + i * mul;
                            for (int u = 0; u < mul; u++) gw[u] += xi[u] * ai[u];
                        }
                    }
                } else { /* target 1 */
                    REAL *restrict y = buf;
                    for (int i = 0; i < d1; i++) {
                        const REAL *restrict xi = xb + i * mul;
                        REAL *restrict yi = y + i * mul;
                        for (int u = 0; u < mul; u++) yi[u] = wv[u] * xi[u];
                    }
                    REAL *g2v = g2 + off2 + v * d2;
                    for (int q = q0; q < q1; q++) {
                        const int *Q = A->pairs + 4 * q;
                        const REAL *restrict yi = y + Q[0] * mul;
                        const REAL *restrict gk = ob + Q[1] * mul;
                        REAL s = 0;
                        for (int u = 0; u < mul; u++) s += yi[u] * gk[u];
                        for (int e = Q[2]; e < Q[3]; e++) g2v[A->ej[e]] += A->ec[e] * s;
                    }
                }
            }
        }
        if (target == 0) {
            REAL *row = A->tgt + z * A->dim1;
            for (int b = 0; b < A->nb1; b++) tr_out_SFX(acc + A->b1[3 * b], row + A->b1[3 * b], A->b1[3 * b + 1], A->b1[3 * b + 2]);
        } else if (target == 3) {
            REAL *row = A->tgt + z * A->dimo;
            for (int b = 0; b < A->nbo; b++) tr_out_SFX(acc + A->bo[3 * b], row + A->bo[3 * b], A->bo[3 * b + 1], A->bo[3 * b + 2]);
        } else if (target == 2 && !shared) {
            REAL *row = A->tgt + z * A->wstride;
            for (int p = 0; p < A->npaths; p++) {
                const int *P = A->pinfo + UVU_PI * p;
                int mul1 = P[1], mul2 = P[4], offw = P[8];
                for (int u = 0; u < mul1; u++)
                    for (int v = 0; v < mul2; v++) row[offw + u * mul2 + v] = acc[offw + v * mul1 + u];
            }
        }
    }
    free(mem);
    return NULL;
}

int euclidnet_tp_uvu_SFX(int target, const REAL *x1, const REAL *x2, const REAL *w, const REAL *o, REAL *tgt,
                         int64_t n, int dim1, int dim2, int wnum, int dimo, int64_t wstride,
                         int npaths, const int *pinfo, const int *pairs, const int *ej, const REAL *ec,
                         int nb1, const int *b1, int nbo, const int *bo, int maxbuf, int maxpairs, int nthreads) {
    uvu_args_SFX A;
    A.target = target; A.x1 = x1; A.x2 = x2; A.w = w; A.o = o; A.tgt = tgt;
    A.n = n; A.dim1 = dim1; A.dim2 = dim2; A.wnum = wnum; A.dimo = dimo; A.wstride = wstride;
    A.npaths = npaths; A.pinfo = pinfo; A.pairs = pairs; A.ej = ej; A.ec = ec;
    A.nb1 = nb1; A.b1 = b1; A.nbo = nbo; A.bo = bo; A.maxbuf = maxbuf; A.maxpairs = maxpairs; A.wacc = NULL;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 64) nthreads = 64;
    const int shared = wstride == 0;
    if (target == 2 && shared) {
        A.wacc = (REAL *)malloc(sizeof(REAL) * ((size_t)wnum * nthreads + 1));
        if (!A.wacc) return 1;
    }
    int err = tp_run(uvu_worker_SFX, &A, nthreads);
    if (target == 2 && shared) {
        if (!err) {
            for (int k = 0; k < wnum; k++) {
                REAL s = A.wacc[k];
                for (int t = 1; t < nthreads; t++) s += A.wacc[(size_t)t * wnum + k];
                A.wacc[k] = s;
            }
            for (int p = 0; p < npaths; p++) {
                const int *P = pinfo + UVU_PI * p;
                int mul1 = P[1], mul2 = P[4], offw = P[8];
                for (int u = 0; u < mul1; u++)
                    for (int v = 0; v < mul2; v++) tgt[offw + u * mul2 + v] = A.wacc[offw + v * mul1 + u];
            }
        }
        free(A.wacc);
    }
    return err;
}

/* ---------------------------------------------------------------- uvu, all first derivatives --------- */
/* Per-sample weights only: the gradients w.r.t. x1, x2 and w (each optional) of <o, out> in one pass, so
   the transposes and the per-(path, v) CG contraction of x2 are done once instead of once per gradient. */
typedef struct {
    const REAL *x1, *x2, *w, *o;
    REAL *g1, *g2, *gw;
    int64_t n;
    int dim1, dim2, wnum, dimo;
    int npaths;
    const int *pinfo, *pairs, *ej;
    const REAL *ec;
    int nb1; const int *b1;
    int nbo; const int *bo;
    int maxbuf, maxpairs;
} uvub_args_SFX;

static void *uvub_worker_SFX(void *jp) {
    tp_job_t *job = (tp_job_t *)jp;
    const uvub_args_SFX *A = (const uvub_args_SFX *)job->arg;
    int64_t z0, z1;
    tp_range(A->n, job->tid, job->nthreads, &z0, &z1);
    size_t total = 2 * (size_t)A->dim1 + A->dimo + 2 * (size_t)A->wnum + 2 * (size_t)A->maxbuf + A->maxpairs + 16;
    REAL *mem = (REAL *)malloc(total * sizeof(REAL));
    if (!mem) { job->err = 1; return NULL; }
    REAL *x1T = mem, *g1T = x1T + A->dim1, *oT = g1T + A->dim1, *wT = oT + A->dimo, *gwT = wT + A->wnum;
    REAL *abuf = gwT + A->wnum, *ybuf = abuf + A->maxbuf, *tq = ybuf + A->maxbuf;
    for (int64_t z = z0; z < z1; z++) {
        const REAL *x1r = A->x1 + z * A->dim1;
        const REAL *x2r = A->x2 + z * A->dim2;
        const REAL *wr = A->w + z * A->wnum;
        const REAL *orow = A->o + z * A->dimo;
        for (int b = 0; b < A->nb1; b++) tr_in_SFX(x1r + A->b1[3 * b], x1T + A->b1[3 * b], A->b1[3 * b + 1], A->b1[3 * b + 2]);
        for (int b = 0; b < A->nbo; b++) tr_in_SFX(orow + A->bo[3 * b], oT + A->bo[3 * b], A->bo[3 * b + 1], A->bo[3 * b + 2]);
        for (int p = 0; p < A->npaths; p++) {
            const int *P = A->pinfo + UVU_PI * p;
            int mul1 = P[1], mul2 = P[4], offw = P[8];
            for (int u = 0; u < mul1; u++)
                for (int v = 0; v < mul2; v++) wT[offw + v * mul1 + u] = wr[offw + u * mul2 + v];
        }
        if (A->g1) memset(g1T, 0, sizeof(REAL) * A->dim1);
        if (A->gw) memset(gwT, 0, sizeof(REAL) * A->wnum);
        REAL *g2r = A->g2 ? A->g2 + z * A->dim2 : NULL;
        if (g2r) memset(g2r, 0, sizeof(REAL) * A->dim2);
        for (int p = 0; p < A->npaths; p++) {
            const int *P = A->pinfo + UVU_PI * p;
            const int off1 = P[0], mul = P[1], d1 = P[2], off2 = P[3], mul2 = P[4], d2 = P[5];
            const int offo = P[6], offw = P[8], q0 = P[9], q1 = P[10];
            const REAL *xb = x1T + off1;
            const REAL *ob = oT + offo;
            for (int v = 0; v < mul2; v++) {
                const REAL *wv = wT + offw + v * mul;
                if (A->g1 || A->gw) {
                    const REAL *x2v = x2r + off2 + v * d2;
                    for (int q = q0; q < q1; q++) {
                        const int *Q = A->pairs + 4 * q;
                        REAL s = 0;
                        for (int e = Q[2]; e < Q[3]; e++) s += A->ec[e] * x2v[A->ej[e]];
                        tq[q - q0] = s;
                    }
                    REAL *restrict a = abuf;
                    memset(a, 0, sizeof(REAL) * d1 * mul);
                    for (int q = q0; q < q1; q++) {
                        const int *Q = A->pairs + 4 * q;
                        const REAL t = tq[q - q0];
                        REAL *restrict ai = a + Q[0] * mul;
                        const REAL *restrict gk = ob + Q[1] * mul;
                        for (int u = 0; u < mul; u++) ai[u] += t * gk[u];
                    }
                    if (A->g1) {
                        for (int i = 0; i < d1; i++) {
                            REAL *restrict gi = g1T + off1 + i * mul;
                            const REAL *restrict ai = a + i * mul;
                            for (int u = 0; u < mul; u++) gi[u] += wv[u] * ai[u];
                        }
                    }
                    if (A->gw) {
                        REAL *restrict gwv = gwT + offw + v * mul;
                        for (int i = 0; i < d1; i++) {
                            const REAL *restrict xi = xb + i * mul;
                            const REAL *restrict ai = a + i * mul;
                            for (int u = 0; u < mul; u++) gwv[u] += xi[u] * ai[u];
                        }
                    }
                }
                if (g2r) {
                    REAL *restrict y = ybuf;
                    for (int i = 0; i < d1; i++) {
                        const REAL *restrict xi = xb + i * mul;
                        REAL *restrict yi = y + i * mul;
                        for (int u = 0; u < mul; u++) yi[u] = wv[u] * xi[u];
                    }
                    REAL *g2v = g2r + off2 + v * d2;
                    for (int q = q0; q < q1; q++) {
                        const int *Q = A->pairs + 4 * q;
                        const REAL *restrict yi = y + Q[0] * mul;
                        const REAL *restrict gk = ob + Q[1] * mul;
                        REAL s = 0;
                        for (int u = 0; u < mul; u++) s += yi[u] * gk[u];
                        for (int e = Q[2]; e < Q[3]; e++) g2v[A->ej[e]] += A->ec[e] * s;
                    }
                }
            }
        }
        if (A->g1) {
            REAL *row = A->g1 + z * A->dim1;
            for (int b = 0; b < A->nb1; b++) tr_out_SFX(g1T + A->b1[3 * b], row + A->b1[3 * b], A->b1[3 * b + 1], A->b1[3 * b + 2]);
        }
        if (A->gw) {
            REAL *row = A->gw + z * A->wnum;
            memset(row, 0, sizeof(REAL) * A->wnum);
            for (int p = 0; p < A->npaths; p++) {
                const int *P = A->pinfo + UVU_PI * p;
                int mul1 = P[1], mul2 = P[4], offw = P[8];
                for (int u = 0; u < mul1; u++)
                    for (int v = 0; v < mul2; v++) row[offw + u * mul2 + v] = gwT[offw + v * mul1 + u];
            }
        }
    }
    free(mem);
    return NULL;
}

int euclidnet_tp_uvub_SFX(const REAL *x1, const REAL *x2, const REAL *w, const REAL *o, REAL *g1, REAL *g2,
                          REAL *gw, int64_t n, int dim1, int dim2, int wnum, int dimo, int npaths,
                          const int *pinfo, const int *pairs, const int *ej, const REAL *ec, int nb1,
                          const int *b1, int nbo, const int *bo, int maxbuf, int maxpairs, int nthreads) {
    uvub_args_SFX A;
    A.x1 = x1; A.x2 = x2; A.w = w; A.o = o; A.g1 = g1; A.g2 = g2; A.gw = gw;
    A.n = n; A.dim1 = dim1; A.dim2 = dim2; A.wnum = wnum; A.dimo = dimo;
    A.npaths = npaths; A.pinfo = pinfo; A.pairs = pairs; A.ej = ej; A.ec = ec;
    A.nb1 = nb1; A.b1 = b1; A.nbo = nbo; A.bo = bo; A.maxbuf = maxbuf; A.maxpairs = maxpairs;
    return tp_run(uvub_worker_SFX, &A, nthreads);
}

/* ---------------------------------------------------------------- uvw CG part ------------------------- */

typedef struct {
    int target;
    const REAL *x1, *x2, *z;
    REAL *tgt;
    int64_t n;
    int dim1, dim2;
    int npaths;
    const int *pinfo;
    const int *ent;   /* per entry: i, j, k */
    const REAL *ec;
    int nb2; const int *b2;   /* x2 blocks: off, mul, d */
} cg_args_SFX;

static void *cg_worker_SFX(void *jp) {
    tp_job_t *job = (tp_job_t *)jp;
    const cg_args_SFX *A = (const cg_args_SFX *)job->arg;
    const int target = A->target;
    int64_t z0, z1;
    tp_range(A->n, job->tid, job->nthreads, &z0, &z1);
    REAL *x2T = (REAL *)malloc(sizeof(REAL) * ((size_t)A->dim2 + 1));
    if (!x2T) { job->err = 1; return NULL; }
    for (int64_t s = z0; s < z1; s++) {
        const REAL *x1r = target == 0 ? NULL : A->x1 + s * A->dim1;
        if (target != 1) {
            const REAL *x2r = A->x2 + s * A->dim2;
            for (int b = 0; b < A->nb2; b++) tr_in_SFX(x2r + A->b2[3 * b], x2T + A->b2[3 * b], A->b2[3 * b + 1], A->b2[3 * b + 2]);
        } else {
            memset(x2T, 0, sizeof(REAL) * A->dim2);
        }
        REAL *g1 = NULL;
        if (target == 0) {
            g1 = A->tgt + s * A->dim1;
            memset(g1, 0, sizeof(REAL) * A->dim1);
        }
        for (int p = 0; p < A->npaths; p++) {
            const int *P = A->pinfo + CG_PI * p;
            const int off1 = P[0], mul1 = P[1], d1 = P[2], off2 = P[3], mul2 = P[4];
            const int zoff = P[6], dout = P[7], e0 = P[8], e1 = P[9];
            const int64_t sz = (int64_t)dout * mul1 * mul2;
            const REAL *zp = (target == 2 ? (const REAL *)A->tgt : A->z) + zoff * A->n + s * sz;
            if (target == 2) memset((REAL *)zp, 0, sizeof(REAL) * sz);
            for (int e = e0; e < e1; e++) {
                const int i = A->ent[3 * e], j = A->ent[3 * e + 1], k = A->ent[3 * e + 2];
                const REAL c = A->ec[e];
                REAL *restrict xj = x2T + off2 + j * mul2;
                for (int u = 0; u < mul1; u++) {
                    const REAL a = target == 0 ? (REAL)0 : c * x1r[off1 + u * d1 + i];
                    const REAL *zr = zp + ((int64_t)k * mul1 + u) * mul2;
                    if (target == 2) {
                        REAL *restrict zw = (REAL *)zr;
                        for (int v = 0; v < mul2; v++) zw[v] += a * xj[v];
                    } else if (target == 1) {
                        const REAL *restrict zz = zr;
                        for (int v = 0; v < mul2; v++) xj[v] += a * zz[v];
                    } else {
                        const REAL *restrict zz = zr;
                        REAL acc = 0;
                        for (int v = 0; v < mul2; v++) acc += zz[v] * xj[v];
                        g1[off1 + u * d1 + i] += c * acc;
                    }
                }
            }
        }
        if (target == 1) {
            REAL *row = A->tgt + s * A->dim2;
            for (int b = 0; b < A->nb2; b++) tr_out_SFX(x2T + A->b2[3 * b], row + A->b2[3 * b], A->b2[3 * b + 1], A->b2[3 * b + 2]);
        }
    }
    free(x2T);
    return NULL;
}

int euclidnet_tp_uvwcg_SFX(int target, const REAL *x1, const REAL *x2, const REAL *z, REAL *tgt, int64_t n,
                           int dim1, int dim2, int npaths, const int *pinfo, const int *ent, const REAL *ec,
                           int nb2, const int *b2, int nthreads) {
    cg_args_SFX A;
    A.target = target; A.x1 = x1; A.x2 = x2; A.z = z; A.tgt = tgt; A.n = n; A.dim1 = dim1; A.dim2 = dim2;
    A.npaths = npaths; A.pinfo = pinfo; A.ent = ent; A.ec = ec; A.nb2 = nb2; A.b2 = b2;
    return tp_run(cg_worker_SFX, &A, nthreads);
}
/* ---------------------------------------------------------------- uvw, per-sample weights ------------- */
/* path info (uvws): off1 mul1 d1 off2 mul2 d2 offo mulo dout offw q0 q1 */
#define UVWS_PI 12

typedef struct {
    int target;
    const REAL *x1, *x2, *w, *o;
    REAL *tgt;
    int64_t n;
    int dim1, dim2, wnum, dimo;
    int npaths;
    const int *pinfo;
    const int *pairs;     /* per pair: i, k, e0, e1 */
    const int *ej;
    const REAL *ec;
    int nbo; const int *bo;   /* out blocks: off, mul, d */
    int maxa;             /* max mul1 * dout over paths */
    int maxpairs;
} uvws_args_SFX;

static void *uvws_worker_SFX(void *jp) {
    tp_job_t *job = (tp_job_t *)jp;
    const uvws_args_SFX *A = (const uvws_args_SFX *)job->arg;
    const int target = A->target;
    int64_t z0, z1;
    tp_range(A->n, job->tid, job->nthreads, &z0, &z1);
    size_t total = (size_t)A->dimo + 2 * (size_t)A->maxa + A->maxpairs + 16;
    REAL *mem = (REAL *)malloc(total * sizeof(REAL));
    if (!mem) { job->err = 1; return NULL; }
    REAL *oT = mem, *Am = oT + A->dimo, *Bm = Am + A->maxa, *tq = Bm + A->maxa;

    for (int64_t z = z0; z < z1; z++) {
        const REAL *x1r = A->x1 + z * A->dim1;
        const REAL *x2r = A->x2 + z * A->dim2;
        const REAL *wr = A->w + z * A->wnum;
        if (target == 3) {
            memset(oT, 0, sizeof(REAL) * A->dimo);
        } else {
            const REAL *orow = A->o + z * A->dimo;
            for (int b = 0; b < A->nbo; b++) tr_in_SFX(orow + A->bo[3 * b], oT + A->bo[3 * b], A->bo[3 * b + 1], A->bo[3 * b + 2]);
        }
        REAL *g = NULL;
        if (target == 0) { g = A->tgt + z * A->dim1; memset(g, 0, sizeof(REAL) * A->dim1); }
        if (target == 1) { g = A->tgt + z * A->dim2; memset(g, 0, sizeof(REAL) * A->dim2); }
        REAL *gw = target == 2 ? A->tgt + z * A->wnum : NULL;
        for (int p = 0; p < A->npaths; p++) {
            const int *P = A->pinfo + UVWS_PI * p;
            const int off1 = P[0], mul1 = P[1], d1 = P[2], off2 = P[3], mul2 = P[4], d2 = P[5];
            const int offo = P[6], mulo = P[7], dout = P[8], offw = P[9], q0 = P[10], q1 = P[11];
            const REAL *xb = x1r + off1;
            REAL *ob = oT + offo;   /* [dout][mulo] */
            for (int v = 0; v < mul2; v++) {
                /* W[u, v, :] rows of this path: wv + u * mul2 * mulo */
                const REAL *wv = wr + offw + (int64_t)v * mulo;
                const int64_t wstep = (int64_t)mul2 * mulo;
                if (target != 1) {
                    const REAL *x2v = x2r + off2 + v * d2;
                    for (int q = q0; q < q1; q++) {
                        const int *Q = A->pairs + 4 * q;
                        REAL s = 0;
                        for (int e = Q[2]; e < Q[3]; e++) s += A->ec[e] * x2v[A->ej[e]];
                        tq[q - q0] = s;
                    }
                }
                if (target == 3 || target == 2) {
                    /* Am[u, k] = sum_(i,k) t[i,k] x1[u, i] */
                    memset(Am, 0, sizeof(REAL) * mul1 * dout);
                    for (int u = 0; u < mul1; u++) {
                        const REAL *xu = xb + u * d1;
                        REAL *au = Am + u * dout;
                        for (int q = q0; q < q1; q++) {
                            const int *Q = A->pairs + 4 * q;
                            au[Q[1]] += tq[q - q0] * xu[Q[0]];
                        }
                    }
                    if (target == 3) {
                        for (int u = 0; u < mul1; u++) {
                            const REAL *restrict wu = wv + u * wstep;
                            for (int k = 0; k < dout; k++) {
                                const REAL a = Am[u * dout + k];
                                REAL *restrict ok = ob + k * mulo;
                                for (int w = 0; w < mulo; w++) ok[w] += a * wu[w];
                            }
                        }
                    } else {
                        for (int u = 0; u < mul1; u++) {
                            REAL *restrict gu = gw + offw + (int64_t)v * mulo + u * wstep;
                            const REAL a0 = Am[u * dout];
                            const REAL *restrict o0 = ob;
                            for (int w = 0; w < mulo; w++) gu[w] = a0 * o0[w];
                            for (int k = 1; k < dout; k++) {
                                const REAL a = Am[u * dout + k];
                                const REAL *restrict ok = ob + k * mulo;
                                for (int w = 0; w < mulo; w++) gu[w] += a * ok[w];
                            }
                        }
                    }
                } else {
                    /* Bm[u, k] = sum_w W[u, v, w] o[w, k] */
                    for (int u = 0; u < mul1; u++) {
                        const REAL *restrict wu = wv + u * wstep;
                        for (int k = 0; k < dout; k++) {
                            const REAL *restrict ok = ob + k * mulo;
                            REAL s = 0;
                            for (int w = 0; w < mulo; w++) s += wu[w] * ok[w];
                            Bm[u * dout + k] = s;
                        }
                    }
                    if (target == 0) {
                        for (int u = 0; u < mul1; u++) {
                            REAL *gu = g + off1 + u * d1;
                            const REAL *bu = Bm + u * dout;
                            for (int q = q0; q < q1; q++) {
                                const int *Q = A->pairs + 4 * q;
                                gu[Q[0]] += tq[q - q0] * bu[Q[1]];
                            }
                        }
                    } else {
                        REAL *g2v = g + off2 + v * d2;
                        for (int q = q0; q < q1; q++) {
                            const int *Q = A->pairs + 4 * q;
                            const int i = Q[0], k = Q[1];
                            REAL s = 0;
                            for (int u = 0; u < mul1; u++) s += xb[u * d1 + i] * Bm[u * dout + k];
                            for (int e = Q[2]; e < Q[3]; e++) g2v[A->ej[e]] += A->ec[e] * s;
                        }
                    }
                }
            }
        }
        if (target == 3) {
            REAL *row = A->tgt + z * A->dimo;
            for (int b = 0; b < A->nbo; b++) tr_out_SFX(oT + A->bo[3 * b], row + A->bo[3 * b], A->bo[3 * b + 1], A->bo[3 * b + 2]);
        }
    }
    free(mem);
    return NULL;
}

int euclidnet_tp_uvws_SFX(int target, const REAL *x1, const REAL *x2, const REAL *w, const REAL *o, REAL *tgt,
                          int64_t n, int dim1, int dim2, int wnum, int dimo, int npaths, const int *pinfo,
                          const int *pairs, const int *ej, const REAL *ec, int nbo, const int *bo, int maxa,
                          int maxpairs, int nthreads) {
    uvws_args_SFX A;
    A.target = target; A.x1 = x1; A.x2 = x2; A.w = w; A.o = o; A.tgt = tgt;
    A.n = n; A.dim1 = dim1; A.dim2 = dim2; A.wnum = wnum; A.dimo = dimo;
    A.npaths = npaths; A.pinfo = pinfo; A.pairs = pairs; A.ej = ej; A.ec = ec;
    A.nbo = nbo; A.bo = bo; A.maxa = maxa; A.maxpairs = maxpairs;
    return tp_run(uvws_worker_SFX, &A, nthreads);
}
"""


def source() -> str:
    """The complete C source (float32 and float64 instantiations)."""
    parts = [_HEADER]
    for real, sfx in (("float", "f32"), ("double", "f64")):
        parts.append(_BODY.replace("REAL", real).replace("SFX", sfx))
    return "\n".join(parts)
