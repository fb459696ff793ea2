"""C source of the SO(2)-convolution kernel (:mod:`euclidnet.nn.so2`) and its lazily built library.

One template instantiated for float and double: per edge, the Wigner-D blocks of the edge frame from a
``[4, L+1]`` cos/sin table, the rotation into the frame, the sparse trilinear SO(2) map and the rotation back,
plus the contraction used by the backward; threaded over edges with pthreads. The meaning of every argument
is in :mod:`euclidnet.nn.so2`, which owns the math and the pure-torch equivalent.
"""

from __future__ import annotations

import ctypes

from ._build import LazyLibrary

__all__ = ["SO2_LIBRARY"]

# -- the C kernel ---------------------------------------------------------------------------------------

_TEMPLATE = r"""
/* Contract slot `target` of F(x, w, o) = sum_t c_t x[i_t] w[p_t] o[k_t] (rows of [E, rows, C] tensors). */
static void so2_range_SFX(const so2_args *A, int64_t e0, int64_t e1) {
    const int t = A->target, a = (t == 0) ? 1 : 0, b = (t == 2) ? 1 : 2;
    const int64_t C = A->c;
    const REAL *coef = (const REAL *)A->coef;
    const int32_t *it = A->idx[t], *ia = A->idx[a], *ib = A->idx[b];
    for (int64_t e = e0; e < e1; e++) {
        REAL *y = (REAL *)A->dst + e * A->k[t] * C;
        const REAL *pa = (const REAL *)A->src[a] + e * A->k[a] * C;
        const REAL *pb = (const REAL *)A->src[b] + e * A->k[b] * C;
        memset(y, 0, sizeof(REAL) * (size_t)(A->k[t] * C));
        for (int64_t q = 0; q < A->nterms; q++) {
            const REAL cq = coef[q];
            REAL *restrict yy = y + (int64_t)it[q] * C;
            const REAL *restrict aa = pa + (int64_t)ia[q] * C;
            const REAL *restrict bb = pb + (int64_t)ib[q] * C;
            #pragma omp simd
            for (int64_t u = 0; u < C; u++) yy[u] += cq * aa[u] * bb[u];
        }
    }
}

/* Edge block [C, d] (mul-major, at xoff of an edge row) -> frame rows: dst[row + i] = sum_j D[i, j] x[:, j].
   tmp holds the transposed block [d, C] (returned for the gradient of D). */
static void so2_to_frame_SFX(const REAL *x, const int32_t *blk, int nb, const REAL *D, REAL *dst, REAL *tmp,
                             int64_t C) {
    for (int bi = 0; bi < nb; bi++) {
        const int64_t xoff = blk[4 * bi], d = blk[4 * bi + 1], row = blk[4 * bi + 2], doff = blk[4 * bi + 3];
        REAL *tb = tmp + row * C;
        for (int64_t u = 0; u < C; u++)
            for (int64_t j = 0; j < d; j++) tb[j * C + u] = x[xoff + u * d + j];
        for (int64_t i = 0; i < d; i++) {
            REAL *restrict y = dst + (row + i) * C;
            for (int64_t u = 0; u < C; u++) y[u] = 0;
            for (int64_t j = 0; j < d; j++) {
                const REAL dij = D[doff + i * d + j];
                const REAL *restrict s = tb + j * C;
                #pragma omp simd
                for (int64_t u = 0; u < C; u++) y[u] += dij * s[u];
            }
        }
    }
}

/* Frame rows -> edge block: out[:, k] = sum_i D[i, k] src[row + i] (the transpose rotation). */
static void so2_from_frame_SFX(const REAL *src, const int32_t *blk, int nb, const REAL *D, REAL *out, REAL *tmp,
                               int64_t C) {
    for (int bi = 0; bi < nb; bi++) {
        const int64_t xoff = blk[4 * bi], d = blk[4 * bi + 1], row = blk[4 * bi + 2], doff = blk[4 * bi + 3];
        for (int64_t k = 0; k < d; k++) {
            REAL *restrict y = tmp + k * C;
            for (int64_t u = 0; u < C; u++) y[u] = 0;
            for (int64_t i = 0; i < d; i++) {
                const REAL dik = D[doff + i * d + k];
                const REAL *restrict s = src + (row + i) * C;
                #pragma omp simd
                for (int64_t u = 0; u < C; u++) y[u] += dik * s[u];
            }
        }
        for (int64_t u = 0; u < C; u++)
            for (int64_t k = 0; k < d; k++) out[xoff + u * d + k] = tmp[k * C + u];
    }
}

/* gD[i, j] += sum_u A[row + i, u] B[row + j, u]  (B is a transposed edge block from so2_to_frame). */
static void so2_outer_SFX(const REAL *Arows, const REAL *Brows, const int32_t *blk, int nb, REAL *gD, int64_t C) {
    for (int bi = 0; bi < nb; bi++) {
        const int64_t d = blk[4 * bi + 1], row = blk[4 * bi + 2], doff = blk[4 * bi + 3];
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = 0; j < d; j++) {
                const REAL *restrict a = Arows + (row + i) * C, *restrict b = Brows + (row + j) * C;
                REAL s = 0;
                #pragma omp simd reduction(+ : s)
                for (int64_t u = 0; u < C; u++) s += a[u] * b[u];
                gD[doff + i * d + j] += s;
            }
    }
}

/* D^l for every degree of one edge from its tables T = [ca, sa, cb, sb][L1] (see o3/edge_frame.py):
   D = (phi(b) @ Bx) o (column mix by cos/sin(m a)) [@ P if chart B]. Keeps Dx and Dt for the backward. */
static void so2_build_D_SFX(const so2f_args *A, const REAL *T, int chart, REAL *D, REAL *Dx, REAL *Dt) {
    const int64_t L1 = A->L1;
    const REAL *ca = T, *sa = T + L1, *cb = T + 2 * L1, *sb = T + 3 * L1;
    for (int li = 0; li < A->nls; li++) {
        const int64_t l = A->ls[4 * li], doff = A->ls[4 * li + 1], boff = A->ls[4 * li + 2], poff = A->ls[4 * li + 3];
        const int64_t d = 2 * l + 1, dd = d * d;
        if (l == 0) { D[doff] = 1; Dx[doff] = 1; Dt[doff] = 1; continue; }
        const REAL *B = (const REAL *)A->bx + boff;
        REAL *x = Dx + doff, *t = Dt + doff, *y = D + doff;
        for (int64_t q = 0; q < dd; q++) x[q] = 0;
        for (int64_t k = 0; k < d; k++) {
            const REAL f = (k <= l) ? cb[k] : sb[k - l];
            const REAL *restrict Bk = B + k * dd;
            #pragma omp simd
            for (int64_t q = 0; q < dd; q++) x[q] += f * Bk[q];
        }
        for (int64_t r = 0; r < d; r++)
            for (int64_t c = 0; c < d; c++) {
                const int64_t m = c - l, am = m < 0 ? -m : m;
                const REAL cr = ca[am], sr = m > 0 ? -sa[m] : (m < 0 ? sa[-m] : 0);
                t[r * d + c] = x[r * d + c] * cr + x[r * d + (2 * l - c)] * sr;
            }
        if (chart) {
            const REAL *P = (const REAL *)A->pq + poff;
            for (int64_t r = 0; r < d; r++)
                for (int64_t c = 0; c < d; c++) {
                    REAL s = 0;
                    for (int64_t k = 0; k < d; k++) s += t[r * d + k] * P[k * d + c];
                    y[r * d + c] = s;
                }
        } else {
            for (int64_t q = 0; q < dd; q++) y[q] = t[q];
        }
    }
}

/* Backward of so2_build_D: gD (consumed, overwritten) -> gT [4][L1] (accumulated). */
static void so2_build_D_bwd_SFX(const so2f_args *A, const REAL *T, int chart, const REAL *Dx, REAL *gD, REAL *gT,
                                REAL *scratch) {
    const int64_t L1 = A->L1;
    const REAL *ca = T, *sa = T + L1;
    REAL *gca = gT, *gsa = gT + L1, *gcb = gT + 2 * L1, *gsb = gT + 3 * L1;
    for (int li = 0; li < A->nls; li++) {
        const int64_t l = A->ls[4 * li], doff = A->ls[4 * li + 1], boff = A->ls[4 * li + 2], poff = A->ls[4 * li + 3];
        const int64_t d = 2 * l + 1, dd = d * d;
        if (l == 0) continue;
        const REAL *x = Dx + doff;
        REAL *g = gD + doff, *gt = scratch, *gx = scratch + dd;
        if (chart) {  /* D = Dt P  ->  gDt = gD P^T */
            const REAL *P = (const REAL *)A->pq + poff;
            for (int64_t r = 0; r < d; r++)
                for (int64_t k = 0; k < d; k++) {
                    REAL s = 0;
                    for (int64_t c = 0; c < d; c++) s += g[r * d + c] * P[k * d + c];
                    gt[r * d + k] = s;
                }
        } else {
            for (int64_t q = 0; q < dd; q++) gt[q] = g[q];
        }
        for (int64_t q = 0; q < dd; q++) gx[q] = 0;
        for (int64_t r = 0; r < d; r++)
            for (int64_t c = 0; c < d; c++) {
                const int64_t m = c - l, am = m < 0 ? -m : m, cm = 2 * l - c;
                const REAL cr = ca[am], sr = m > 0 ? -sa[m] : (m < 0 ? sa[-m] : 0);
                const REAL gv = gt[r * d + c];
                gca[am] += gv * x[r * d + c];
                const REAL s = gv * x[r * d + cm];
                if (m > 0) gsa[m] -= s;
                else if (m < 0) gsa[-m] += s;
                gx[r * d + c] += gv * cr;
                gx[r * d + cm] += gv * sr;
            }
        const REAL *B = (const REAL *)A->bx + boff;
        for (int64_t k = 0; k < d; k++) {
            const REAL *restrict Bk = B + k * dd;
            REAL s = 0;
            #pragma omp simd reduction(+ : s)
            for (int64_t q = 0; q < dd; q++) s += Bk[q] * gx[q];
            if (k <= l) gcb[k] += s;
            else gsb[k - l] += s;
        }
    }
}

static void so2f_range_SFX(const so2f_args *A, int64_t e0, int64_t e1) {
    const int64_t C = A->c, kin = A->kin, kout = A->kout, kw = A->kw, ds = A->dstride, L1 = A->L1;
    const REAL *coef = (const REAL *)A->coef;
    const int32_t *ti = A->ti, *tp = A->tp, *to = A->to;
    REAL *buf = (REAL *)malloc(sizeof(REAL) * (size_t)(C * (4 * kin + 4 * kout) + 5 * ds + 2 * A->maxdd + 64));
    if (!buf) { *A->err = 1; return; }
    REAL *xr = buf, *xt = xr + kin * C, *gxr = xt + kin * C;
    REAL *orr = gxr + kin * C, *gr = orr + kout * C, *gt = gr + kout * C, *tmp = gt + kout * C;
    REAL *D = tmp + (kin + kout) * C, *Dx = D + ds, *Dt = Dx + ds, *gD = Dt + ds, *fs = gD + ds;
    for (int64_t e = e0; e < e1; e++) {
        const REAL *x = (const REAL *)A->x + e * A->dim_in;
        const REAL *T = (const REAL *)A->tables + e * 4 * L1;
        const REAL *w = (const REAL *)A->w + e * kw * C;
        so2_build_D_SFX(A, T, A->chart[e], D, Dx, Dt);
        so2_to_frame_SFX(x, A->bin, A->nbin, D, xr, xt, C);
        if (A->g == NULL) {  /* forward */
            memset(orr, 0, sizeof(REAL) * (size_t)(kout * C));
            for (int64_t q = 0; q < A->nterms; q++) {
                const REAL cq = coef[q];
                REAL *restrict y = orr + (int64_t)to[q] * C;
                const REAL *restrict a = xr + (int64_t)ti[q] * C, *restrict b = w + (int64_t)tp[q] * C;
                #pragma omp simd
                for (int64_t u = 0; u < C; u++) y[u] += cq * a[u] * b[u];
            }
            so2_from_frame_SFX(orr, A->bout, A->nbout, D, (REAL *)A->out + e * A->dim_out, tmp, C);
            continue;
        }
        const REAL *g = (const REAL *)A->g + e * A->dim_out;
        so2_to_frame_SFX(g, A->bout, A->nbout, D, gr, gt, C);
        REAL *gw = A->gw ? (REAL *)A->gw + e * kw * C : NULL;
        if (gw) memset(gw, 0, sizeof(REAL) * (size_t)(kw * C));
        memset(gxr, 0, sizeof(REAL) * (size_t)(kin * C));
        if (A->gT) memset(orr, 0, sizeof(REAL) * (size_t)(kout * C));
        for (int64_t q = 0; q < A->nterms; q++) {
            const REAL cq = coef[q];
            const REAL *restrict gq = gr + (int64_t)to[q] * C;
            const REAL *restrict xq = xr + (int64_t)ti[q] * C, *restrict wq = w + (int64_t)tp[q] * C;
            REAL *restrict gxq = gxr + (int64_t)ti[q] * C;
            #pragma omp simd
            for (int64_t u = 0; u < C; u++) gxq[u] += cq * wq[u] * gq[u];
            if (gw) {
                REAL *restrict gwq = gw + (int64_t)tp[q] * C;
                #pragma omp simd
                for (int64_t u = 0; u < C; u++) gwq[u] += cq * xq[u] * gq[u];
            }
            if (A->gT) {
                REAL *restrict oq = orr + (int64_t)to[q] * C;
                #pragma omp simd
                for (int64_t u = 0; u < C; u++) oq[u] += cq * xq[u] * wq[u];
            }
        }
        if (A->gx) so2_from_frame_SFX(gxr, A->bin, A->nbin, D, (REAL *)A->gx + e * A->dim_in, tmp, C);
        if (A->gT) {
            REAL *gTe = (REAL *)A->gT + e * 4 * L1;
            memset(gD, 0, sizeof(REAL) * (size_t)ds);
            memset(gTe, 0, sizeof(REAL) * (size_t)(4 * L1));
            so2_outer_SFX(gxr, xt, A->bin, A->nbin, gD, C);  /* x' = D x */
            so2_outer_SFX(orr, gt, A->bout, A->nbout, gD, C);  /* out = D^T o' */
            so2_build_D_bwd_SFX(A, T, A->chart[e], Dx, gD, gTe, fs);
        }
    }
    free(buf);
}

static void *so2_thread_SFX(void *p) {
    so2_job *j = (so2_job *)p;
    if (j->fused) so2f_range_SFX((const so2f_args *)j->args, j->e0, j->e1);
    else so2_range_SFX((const so2_args *)j->args, j->e0, j->e1);
    return NULL;
}

static int so2_launch_SFX(const void *args, int fused, int64_t n, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 64) nthreads = 64;
    so2_job jobs[64];
    pthread_t tid[64];
    int started[64];
    for (int t = 0; t < nthreads; t++) {
        jobs[t].args = args; jobs[t].fused = fused; jobs[t].e0 = n * t / nthreads; jobs[t].e1 = n * (t + 1) / nthreads;
    }
    for (int t = 1; t < nthreads; t++) started[t] = pthread_create(&tid[t], NULL, so2_thread_SFX, &jobs[t]) == 0;
    so2_thread_SFX(&jobs[0]);
    /* A thread that failed to start: run its range here (correct, just slower). */
    for (int t = 1; t < nthreads; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else so2_thread_SFX(&jobs[t]);
    }
    return 0;
}

int euclidnet_so2_SFX(int target, const void *x, const void *w, const void *o, void *dst, int64_t n,
                      int64_t kx, int64_t kw, int64_t ko, int64_t c, int64_t nterms, const int32_t *ix,
                      const int32_t *iw, const int32_t *io, const void *coef, int nthreads) {
    so2_args A;
    A.target = target; A.src[0] = x; A.src[1] = w; A.src[2] = o; A.dst = dst; A.n = n;
    A.k[0] = kx; A.k[1] = kw; A.k[2] = ko; A.c = c; A.nterms = nterms;
    A.idx[0] = ix; A.idx[1] = iw; A.idx[2] = io; A.coef = coef;
    return so2_launch_SFX(&A, 0, n, nthreads);
}

int euclidnet_so2f_SFX(const void *x, const void *tables, const int32_t *chart, const void *w, const void *g,
                       void *out, void *gx, void *gT, void *gw, int64_t n, int64_t c, int64_t dim_in,
                       int64_t dim_out, int64_t dstride, int64_t kin, int64_t kout, int64_t kw, int nbin,
                       const int32_t *bin, int nbout, const int32_t *bout, int64_t nterms, const int32_t *ti,
                       const int32_t *tp, const int32_t *to, const void *coef, int64_t L1, int nls,
                       const int32_t *ls, const void *bx, const void *pq, int64_t maxdd, int nthreads) {
    int err = 0;
    so2f_args A = {x, tables, chart, w, g, out, gx, gT, gw, n, c, dim_in, dim_out, dstride, kin, kout, kw, nbin,
                   bin, nbout, bout, nterms, ti, tp, to, coef, L1, nls, ls, bx, pq, maxdd, &err};
    so2_launch_SFX(&A, 1, n, nthreads);
    return err;
}
"""

_HEADER = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
typedef struct {
    int target; const void *src[3]; void *dst; int64_t n; int64_t k[3]; int64_t c; int64_t nterms;
    const int32_t *idx[3]; const void *coef;
} so2_args;
typedef struct {
    const void *x, *tables; const int32_t *chart; const void *w, *g; void *out, *gx, *gT, *gw;
    int64_t n, c, dim_in, dim_out, dstride, kin, kout, kw;
    int nbin; const int32_t *bin; int nbout; const int32_t *bout;
    int64_t nterms; const int32_t *ti, *tp, *to; const void *coef;
    int64_t L1; int nls; const int32_t *ls; const void *bx, *pq; int64_t maxdd; int *err;
} so2f_args;
typedef struct { const void *args; int fused; int64_t e0, e1; } so2_job;
"""


def _source() -> str:
    return (
        _HEADER
        + _TEMPLATE.replace("REAL", "float").replace("SFX", "f32")
        + _TEMPLATE.replace("REAL", "double").replace("SFX", "f64")
    )


def _declare(lib: ctypes.CDLL) -> None:
    i64, i32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    for sfx in ("f32", "f64"):
        f = getattr(lib, f"euclidnet_so2_{sfx}")
        f.argtypes = [i32, ptr, ptr, ptr, ptr, i64, i64, i64, i64, i64, i64, ptr, ptr, ptr, ptr, i32]
        f.restype = i32
        f = getattr(lib, f"euclidnet_so2f_{sfx}")
        f.argtypes = [ptr] * 9 + [i64] * 8 + [i32, ptr, i32, ptr, i64, ptr, ptr, ptr, ptr, i64, i32, ptr, ptr, ptr]
        f.argtypes += [i64, i32]
        f.restype = i32


SO2_LIBRARY = LazyLibrary("euclidnet_so2", _source, _declare)
