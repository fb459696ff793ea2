"""C source of the fused tensor-product kernels (compiled at first use by :mod:`euclidnet.kernels._build`).

Three kernel families, each "contract three operands of a multilinear form into the fourth", instantiated
for float32 and float64 (placeholders ``REAL`` / ``SFX``):

* ``euclidnet_tp_uvu_SFX``: the form ``F(x1, x2, w, out) = sum_path c sum C_ijk w[u,v] x1[u,i] x2[v,j]
  out[u,k]`` of weighted 'uvu' paths (used for shared weights; per-sample weights take the block kernel). ``target`` 0/1/2/3 = x1/x2/w/out is written (fully overwritten),
  the three others are read. Weights are per sample (``wstride`` = row length) or shared (``wstride`` =
  0; target 2 then sums over the batch: per-thread partial sums over static sample ranges, added in thread
  order, so the result is deterministic for a given thread count). Per sample, ``x1``, ``out`` and ``w``
  are transposed to a ``[2l+1][mul]`` scratch so every inner loop runs along ``u`` (contiguous, vectorised),
  and per (path, v) the tiny ``t[i,k] = sum_j c C_ijk x2[v,j]`` is formed on the nonzero (i, k) pairs.
* ``euclidnet_tp_uvwcg_SFX``: the form ``G(x1, x2, z) = sum_path sum C_ijk x1[u,i] x2[v,j] z[k,u,v]``
  (the CG part of 'uvw' paths; the weight contraction is a GEMM done by torch). ``target`` 0/1/2 =
  x1/x2/z. ``z`` is path-major: path ``p`` occupies ``[n, dout, mul1, mul2]`` at ``zoff[p] * n``.

* ``euclidnet_tp_blk_SFX``: weighted 'uvu' and 'uvw' paths (mixed) with per-sample weights, any subset of
  the four contractions in one pass (``mask`` bit t = slot t; bits 0-2 read the output cotangent ``o``).
  Samples are taken 16 at a time and transposed to ``[feature][16]`` so every inner loop runs over the 16
  samples (vector code for any multiplicities). Per path and ``v``: ``t[(i,k)] = sum_j c C_ijk x2[v,j]``
  on the nonzero (i, k) pairs; 'uvw': ``A[u,k] = sum_i t x1[u,i]``, ``out[w,k] += sum_u W[u,v,w] A[u,k]``,
  adjoints through ``B[u,k] = sum_w W[u,v,w] o[w,k]``; 'uvu': ``out[u,k] += W[u,v] sum_i t x1[u,i]``.
  Optional indices make it a message-passing kernel: sample ``z`` reads row ``idx1[z]`` of ``x1`` and row
  ``idxo[z]`` of ``o``, and (``scatter``) adds its product to row ``idxo[z]`` of the output, the samples
  being visited in an order sorted by ``idxo`` that threads split between rows (no write conflicts, the
  same summation order for any thread count).

Work is split over pthreads by static contiguous sample ranges.
"""

# ruff: noqa: E501
from __future__ import annotations

from ._c_threads import PTHREADS

_HEADER = (
    r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
"""
    + PTHREADS
    + r"""
#define tp_job_t ek_job_t
#define tp_run ek_run_pthreads

static inline void tp_range(int64_t n, int tid, int nthreads, int64_t *a, int64_t *b) {
    *a = n * tid / nthreads;
    *b = n * (tid + 1) / nthreads;
}

/* path info (uvu): off1 mul1 d1 off2 mul2 d2 offo dout offw q0 q1 */
#define UVU_PI 11
/* path info (uvw cg): off1 mul1 d1 off2 mul2 d2 zoff dout e0 e1 */
#define CG_PI 10
/* path info (blk): mode(0 uvu, 1 uvw) off1 mul1 d1 off2 mul2 d2 offo mulo dout offw q0 q1; samples per block */
#define BLK_PI 13
#define BLK 16
/* Without the pragma GCC unrolls these 16-trip loops into scalar code instead of vectorising them. */
#define VL _Pragma("omp simd") for (int s = 0; s < BLK; s++)

/* Block transposes of the sample-block kernel: rows[s][0:dim] (s < nb) <-> [dim][BLK] (zero lanes >= nb).
   Full blocks go through 8x8 (float) / 4x4 (double) register transposes: element-wise, the compiler turns
   the 16 row pointers into gathers, which cost more than all the arithmetic of a block. The output side
   writes, or adds in increasing s (a row repeated within the block receives its terms in sample order). */
#ifdef __AVX__
#include <immintrin.h>
static inline void tr8_f32(__m256 *r) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)), s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)), s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)), s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)), s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20); r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20); r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31); r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31); r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}
static inline void tr4_f64(__m256d *r) {
    __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20); r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31); r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}
#define TILE_f32 8
#define TILE_f64 4
#endif

#define BLK_IO(REAL, SFX, VT, LOADU, STOREU, LOAD, STORE, ADD, TR)                                               \
static inline void blk_in_##SFX(const REAL *const *rows, REAL *restrict dst, int nb, int dim) {                 \
    int f0 = 0;                                                                                                  \
    if (nb == BLK) {                                                                                             \
        for (; f0 + TILE_##SFX <= dim; f0 += TILE_##SFX)                                                         \
            for (int s0 = 0; s0 < BLK; s0 += TILE_##SFX) {                                                       \
                VT r[TILE_##SFX];                                                                                \
                for (int i = 0; i < TILE_##SFX; i++) r[i] = LOADU(rows[s0 + i] + f0);                            \
                TR(r);                                                                                           \
                for (int j = 0; j < TILE_##SFX; j++) STORE(dst + (size_t)(f0 + j) * BLK + s0, r[j]);           \
            }                                                                                                    \
    }                                                                                                            \
    for (int f = f0; f < dim; f++) {                                                                             \
        REAL *restrict d = dst + (size_t)f * BLK;                                                                \
        for (int s = 0; s < nb; s++) d[s] = rows[s][f];                                                          \
        for (int s = nb; s < BLK; s++) d[s] = (REAL)0;                                                           \
    }                                                                                                            \
}                                                                                                                \
static inline void blk_out_##SFX(const REAL *restrict src, REAL *const *rows, int nb, int dim, int accumulate) { \
    int f0 = 0;                                                                                                  \
    if (nb == BLK) {                                                                                             \
        for (; f0 + TILE_##SFX <= dim; f0 += TILE_##SFX)                                                         \
            for (int s0 = 0; s0 < BLK; s0 += TILE_##SFX) {                                                       \
                VT r[TILE_##SFX];                                                                                \
                for (int j = 0; j < TILE_##SFX; j++) r[j] = LOAD(src + (size_t)(f0 + j) * BLK + s0);           \
                TR(r);                                                                                           \
                if (accumulate)                                                                                  \
                    for (int i = 0; i < TILE_##SFX; i++) STOREU(rows[s0 + i] + f0, ADD(LOADU(rows[s0 + i] + f0), r[i])); \
                else                                                                                             \
                    for (int i = 0; i < TILE_##SFX; i++) STOREU(rows[s0 + i] + f0, r[i]);                       \
            }                                                                                                    \
    }                                                                                                            \
    for (int s = 0; s < nb; s++) {                                                                              \
        REAL *r = rows[s];                                                                                       \
        if (accumulate) for (int f = f0; f < dim; f++) r[f] += src[(size_t)f * BLK + s];                         \
        else for (int f = f0; f < dim; f++) r[f] = src[(size_t)f * BLK + s];                                     \
    }                                                                                                            \
}
#ifdef __AVX__
BLK_IO(float, f32, __m256, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_load_ps, _mm256_store_ps, _mm256_add_ps, tr8_f32)
BLK_IO(double, f64, __m256d, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_load_pd, _mm256_store_pd, _mm256_add_pd, tr4_f64)
#else
/* portable build: element-wise copies */
#define BLK_IO_PLAIN(REAL, SFX)                                                                                  \
static inline void blk_in_##SFX(const REAL *const *rows, REAL *restrict dst, int nb, int dim) {                 \
    for (int f = 0; f < dim; f++) {                                                                              \
        REAL *restrict d = dst + (size_t)f * BLK;                                                                \
        for (int s = 0; s < nb; s++) d[s] = rows[s][f];                                                          \
        for (int s = nb; s < BLK; s++) d[s] = (REAL)0;                                                           \
    }                                                                                                            \
}                                                                                                                \
static inline void blk_out_##SFX(const REAL *restrict src, REAL *const *rows, int nb, int dim, int accumulate) { \
    for (int s = 0; s < nb; s++) {                                                                              \
        REAL *r = rows[s];                                                                                       \
        if (accumulate) for (int f = 0; f < dim; f++) r[f] += src[(size_t)f * BLK + s];                          \
        else for (int f = 0; f < dim; f++) r[f] = src[(size_t)f * BLK + s];                                     \
    }                                                                                                            \
}
BLK_IO_PLAIN(float, f32)
BLK_IO_PLAIN(double, f64)
#endif

/* Thread tid's share [a, b) of n ordered samples; with keys, boundaries move forward past equal keys so
   that no two threads write the same scattered output row. */
static void blk_range(int64_t n, int tid, int nthreads, const int64_t *order, const int64_t *keys,
                      int64_t *a, int64_t *b) {
    int64_t r[2];
    for (int h = 0; h < 2; h++) {
        int64_t x = n * (tid + h) / nthreads;
        if (keys && x > 0)
            while (x < n && keys[order ? order[x] : x] == keys[order ? order[x - 1] : x - 1]) x++;
        r[h] = x;
    }
    *a = r[0];
    *b = r[1];
}
"""
)

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
/* ---------------------------------------------------------------- per-sample weights, sample blocks ---- */
/* Samples are processed BLK at a time in a transposed ("SIMD over samples") layout: feature f of the block
   is the row T[f * BLK + s], s < BLK. Every inner loop then runs over the BLK samples with a compile-time
   trip count, which the compiler turns into full-width vector code whatever the multiplicities and degrees
   (loops over mul or 2l+1, as short as 1-14, barely vectorise). Lanes past the end of the batch are zero. */

typedef struct {
    int mask;             /* bit t: compute contraction t (3: the product; 0, 1, 2: gradients w.r.t. x1, x2, w of <o, out>) */
    const REAL *x1, *x2, *w, *o;
    REAL *t0, *t1, *t2, *t3;
    int64_t n;
    int dim1, dim2, wnum, dimo;
    int npaths;
    const int *pinfo;
    const int *pairs;     /* per pair: i, k, e0, e1 (the path's nonzero CG entries grouped by (i, k)) */
    const int *ej;
    const REAL *ec;
    int maxa;             /* max mul1 * dout over 'uvw' paths */
    int maxpairs;
    int maxd;             /* max d1, dout over paths */
    const int64_t *order; /* processing order of the samples (NULL: 0..n-1) */
    const int64_t *idx1;  /* row of x1 per sample (NULL: the sample) */
    const int64_t *idxo;  /* row of o, and of out when scattering, per sample (NULL: the sample) */
    int scatter;          /* out[idxo[z]] += product of sample z (out zeroed by the caller; order sorted by idxo) */
    const REAL *basis;    /* K > 0: w holds coefficients [n][K] and the weights are w[z] @ basis ([K][wnum]);
                             target 2 is still the per-sample weight gradient [n][wnum] */
    int K;
} blk_args_SFX;

static void *blk_worker_SFX(void *jp) {
    tp_job_t *job = (tp_job_t *)jp;
    const blk_args_SFX *A = (const blk_args_SFX *)job->arg;
    const int fwd = A->mask & 8, want0 = A->mask & 1, want1 = A->mask & 2, want2 = A->mask & 4;
    const int need_x1 = fwd || want1 || want2, need_x2 = fwd || want0 || want2;
    const int need_w = fwd || want0 || want1, need_o = want0 || want1 || want2;
    int64_t p0, p1;
    blk_range(A->n, job->tid, job->nthreads, A->order, A->scatter ? A->idxo : NULL, &p0, &p1);
    if (p0 >= p1) return NULL;
    const size_t d1n = (size_t)A->dim1 * BLK, d2n = (size_t)A->dim2 * BLK;
    const size_t wn = (size_t)A->wnum * BLK, don = (size_t)A->dimo * BLK;
    size_t total = d1n + d2n + wn + don;                         /* X1 X2 W O */
    total += (want0 ? d1n : 0) + (want1 ? d2n : 0) + (want2 ? wn : 0) + (fwd ? don : 0);
    total += ((size_t)A->maxa + 2 * (size_t)A->maxpairs + 2 * (size_t)A->maxd + 4) * BLK;
    const int K = A->K;
    if (K > 0) total += (size_t)K * BLK;                   /* HT */
    REAL *mem = (REAL *)aligned_alloc(64, ((total * sizeof(REAL) + 63) / 64) * 64);
    if (!mem) { job->err = 1; return NULL; }
    REAL *X1 = mem, *X2 = X1 + d1n, *W = X2 + d2n, *O = W + wn, *cur = O + don;
    REAL *G1 = NULL, *G2 = NULL, *GW = NULL, *F = NULL;
    if (want0) { G1 = cur; cur += d1n; }
    if (want1) { G2 = cur; cur += d2n; }
    if (want2) { GW = cur; cur += wn; }
    if (fwd) { F = cur; cur += don; }
    REAL *AB = cur; cur += (size_t)A->maxa * BLK;           /* uvw: A[u,k] (x1 side) or B[u,k] (out side) */
    REAL *TQ = cur; cur += (size_t)A->maxpairs * BLK;       /* CG-contracted x2 per (i, k) pair */
    REAL *SQ = cur; cur += (size_t)A->maxpairs * BLK;       /* x2-gradient sums per pair */
    REAL *Y = cur; cur += (size_t)A->maxd * BLK;            /* uvu: per-u scratch of length d1 or dout */
    REAL *Y2 = cur; cur += (size_t)A->maxd * BLK;
    REAL *HT = K > 0 ? cur : NULL;                           /* coefficients of the block */

    for (int64_t z0 = p0; z0 < p1; z0 += BLK) {
        const int nb = p1 - z0 < BLK ? (int)(p1 - z0) : BLK;
        int64_t id[BLK], r1[BLK], ro[BLK];
        for (int s = 0; s < nb; s++) {
            id[s] = A->order ? A->order[z0 + s] : z0 + s;
            r1[s] = A->idx1 ? A->idx1[id[s]] : id[s];
            ro[s] = A->idxo ? A->idxo[id[s]] : id[s];
        }
        const REAL *rin[BLK];
        REAL *rout[BLK];
#define ROWS(base, idx, dim) for (int s = 0; s < nb; s++) rin[s] = (base) + (idx)[s] * (int64_t)(dim)
#define OUTROWS(base, idx, dim) for (int s = 0; s < nb; s++) rout[s] = (base) + (idx)[s] * (int64_t)(dim)
        if (need_x1) { ROWS(A->x1, r1, A->dim1); blk_in_SFX(rin, X1, nb, A->dim1); }
        if (need_x2) { ROWS(A->x2, id, A->dim2); blk_in_SFX(rin, X2, nb, A->dim2); }
        if (need_w && K == 0) { ROWS(A->w, id, A->wnum); blk_in_SFX(rin, W, nb, A->wnum); }
        if (need_w && K > 0) { ROWS(A->w, id, K); blk_in_SFX(rin, HT, nb, K); }
        if (need_w && K > 0) {
            /* W[p] = sum_k basis[k, p] HT[k]: the weights are made in the block, never stored per sample */
            for (int p = 0; p < A->wnum; p++) {
                REAL acc[BLK];
                VL acc[s] = 0;
                for (int k = 0; k < K; k++) {
                    const REAL c = A->basis[(size_t)k * A->wnum + p];
                    const REAL *restrict h = HT + (size_t)k * BLK;
                    VL acc[s] += c * h[s];
                }
                REAL *restrict wp = W + (size_t)p * BLK;
                VL wp[s] = acc[s];
            }
        }
        if (need_o) { ROWS(A->o, ro, A->dimo); blk_in_SFX(rin, O, nb, A->dimo); }
        if (want0) memset(G1, 0, sizeof(REAL) * d1n);
        if (want1) memset(G2, 0, sizeof(REAL) * d2n);
        if (want2) memset(GW, 0, sizeof(REAL) * wn);
        if (fwd) memset(F, 0, sizeof(REAL) * don);
        for (int p = 0; p < A->npaths; p++) {
            const int *P = A->pinfo + BLK_PI * p;
            const int uvw = P[0], off1 = P[1], mul1 = P[2], d1 = P[3], off2 = P[4], mul2 = P[5], d2 = P[6];
            const int offo = P[7], mulo = P[8], dout = P[9], offw = P[10], q0 = P[11], q1 = P[12];
            const int nq = q1 - q0;
            const int *Q0 = A->pairs + 4 * q0;
            for (int v = 0; v < mul2; v++) {
                if (need_x2) {
                    /* TQ[q] = sum_e c_e x2[v, j_e] over the entries of pair q */
                    for (int q = 0; q < nq; q++) {
                        const int *Q = Q0 + 4 * q;
                        REAL *restrict t = TQ + (size_t)q * BLK;
                        const REAL c0 = A->ec[Q[2]];
                        const REAL *restrict xa = X2 + (size_t)(off2 + v * d2 + A->ej[Q[2]]) * BLK;
                        VL t[s] = c0 * xa[s];
                        for (int e = Q[2] + 1; e < Q[3]; e++) {
                            const REAL c = A->ec[e];
                            const REAL *restrict xe = X2 + (size_t)(off2 + v * d2 + A->ej[e]) * BLK;
                            VL t[s] += c * xe[s];
                        }
                    }
                }
                if (want1) memset(SQ, 0, sizeof(REAL) * (size_t)nq * BLK);
                if (uvw) {
                    /* W[u, v, w] is row offw + (u * mul2 + v) * mulo + w */
                    const size_t wstep = (size_t)mul2 * mulo;
                    const REAL *Wv = W + (size_t)(offw + v * mulo) * BLK;
                    REAL *GWv = want2 ? GW + (size_t)(offw + v * mulo) * BLK : NULL;
                    if (fwd || want2) {
                        /* AB[u, k] = sum_(i,k) TQ[q] x1[u, i] */
                        memset(AB, 0, sizeof(REAL) * (size_t)mul1 * dout * BLK);
                        for (int u = 0; u < mul1; u++) {
                            const REAL *xu = X1 + (size_t)(off1 + u * d1) * BLK;
                            REAL *au = AB + (size_t)u * dout * BLK;
                            for (int q = 0; q < nq; q++) {
                                const int *Q = Q0 + 4 * q;
                                REAL *restrict a = au + (size_t)Q[1] * BLK;
                                const REAL *restrict t = TQ + (size_t)q * BLK;
                                const REAL *restrict x = xu + (size_t)Q[0] * BLK;
                                VL a[s] += t[s] * x[s];
                            }
                        }
                        if (fwd) {
                            /* out[w, k] += sum_u W[u, v, w] AB[u, k] */
                            for (int w = 0; w < mulo; w++) {
                                for (int k = 0; k < dout; k++) {
                                    REAL acc[BLK];
                                    REAL *restrict f = F + (size_t)(offo + w * dout + k) * BLK;
                                    VL acc[s] = f[s];
                                    for (int u = 0; u < mul1; u++) {
                                        const REAL *restrict wu = Wv + ((size_t)u * wstep + w) * BLK;
                                        const REAL *restrict a = AB + ((size_t)u * dout + k) * BLK;
                                        VL acc[s] += wu[s] * a[s];
                                    }
                                    VL f[s] = acc[s];
                                }
                            }
                        }
                        if (want2) {
                            /* gW[u, v, w] = sum_k AB[u, k] o[w, k] */
                            for (int u = 0; u < mul1; u++) {
                                for (int w = 0; w < mulo; w++) {
                                    REAL acc[BLK];
                                    VL acc[s] = 0;
                                    for (int k = 0; k < dout; k++) {
                                        const REAL *restrict a = AB + ((size_t)u * dout + k) * BLK;
                                        const REAL *restrict g = O + (size_t)(offo + w * dout + k) * BLK;
                                        VL acc[s] += a[s] * g[s];
                                    }
                                    REAL *restrict gw = GWv + ((size_t)u * wstep + w) * BLK;
                                    VL gw[s] = acc[s];
                                }
                            }
                        }
                    }
                    if (want0 || want1) {
                        /* AB[u, k] = sum_w W[u, v, w] o[w, k] */
                        for (int u = 0; u < mul1; u++) {
                            for (int k = 0; k < dout; k++) {
                                REAL acc[BLK];
                                VL acc[s] = 0;
                                for (int w = 0; w < mulo; w++) {
                                    const REAL *restrict wu = Wv + ((size_t)u * wstep + w) * BLK;
                                    const REAL *restrict g = O + (size_t)(offo + w * dout + k) * BLK;
                                    VL acc[s] += wu[s] * g[s];
                                }
                                REAL *restrict b = AB + ((size_t)u * dout + k) * BLK;
                                VL b[s] = acc[s];
                            }
                        }
                        for (int u = 0; u < mul1; u++) {
                            const REAL *bu = AB + (size_t)u * dout * BLK;
                            for (int q = 0; q < nq; q++) {
                                const int *Q = Q0 + 4 * q;
                                const REAL *restrict b = bu + (size_t)Q[1] * BLK;
                                if (want0) {
                                    REAL *restrict g = G1 + (size_t)(off1 + u * d1 + Q[0]) * BLK;
                                    const REAL *restrict t = TQ + (size_t)q * BLK;
                                    VL g[s] += t[s] * b[s];
                                }
                                if (want1) {
                                    REAL *restrict sq = SQ + (size_t)q * BLK;
                                    const REAL *restrict x = X1 + (size_t)(off1 + u * d1 + Q[0]) * BLK;
                                    VL sq[s] += x[s] * b[s];
                                }
                            }
                        }
                    }
                } else {
                    /* 'uvu': W[u, v] is row offw + u * mul2 + v; out[u, k] += W[u, v] sum_(i,k) TQ[q] x1[u, i] */
                    for (int u = 0; u < mul1; u++) {
                        const REAL *restrict wuv = W + (size_t)(offw + u * mul2 + v) * BLK;
                        const REAL *xu = X1 + (size_t)(off1 + u * d1) * BLK;
                        const REAL *ou = O + (size_t)(offo + u * dout) * BLK;
                        if (fwd) {
                            for (int i = 0; i < d1; i++) {
                                REAL *restrict y = Y + (size_t)i * BLK;
                                const REAL *restrict x = xu + (size_t)i * BLK;
                                VL y[s] = wuv[s] * x[s];
                            }
                            REAL *fu = F + (size_t)(offo + u * dout) * BLK;
                            for (int q = 0; q < nq; q++) {
                                const int *Q = Q0 + 4 * q;
                                REAL *restrict f = fu + (size_t)Q[1] * BLK;
                                const REAL *restrict t = TQ + (size_t)q * BLK;
                                const REAL *restrict y = Y + (size_t)Q[0] * BLK;
                                VL f[s] += t[s] * y[s];
                            }
                        }
                        if (want2) {
                            REAL acc[BLK];
                            VL acc[s] = 0;
                            for (int q = 0; q < nq; q++) {
                                const int *Q = Q0 + 4 * q;
                                const REAL *restrict t = TQ + (size_t)q * BLK;
                                const REAL *restrict x = xu + (size_t)Q[0] * BLK;
                                const REAL *restrict g = ou + (size_t)Q[1] * BLK;
                                VL acc[s] += t[s] * x[s] * g[s];
                            }
                            REAL *restrict gw = GW + (size_t)(offw + u * mul2 + v) * BLK;
                            VL gw[s] = acc[s];
                        }
                        if (want0 || want1) {
                            /* Y2[k] = W[u, v] o[u, k] */
                            for (int k = 0; k < dout; k++) {
                                REAL *restrict y = Y2 + (size_t)k * BLK;
                                const REAL *restrict g = ou + (size_t)k * BLK;
                                VL y[s] = wuv[s] * g[s];
                            }
                            for (int q = 0; q < nq; q++) {
                                const int *Q = Q0 + 4 * q;
                                const REAL *restrict y = Y2 + (size_t)Q[1] * BLK;
                                if (want0) {
                                    REAL *restrict g = G1 + (size_t)(off1 + u * d1 + Q[0]) * BLK;
                                    const REAL *restrict t = TQ + (size_t)q * BLK;
                                    VL g[s] += t[s] * y[s];
                                }
                                if (want1) {
                                    REAL *restrict sq = SQ + (size_t)q * BLK;
                                    const REAL *restrict x = xu + (size_t)Q[0] * BLK;
                                    VL sq[s] += x[s] * y[s];
                                }
                            }
                        }
                    }
                }
                if (want1) {
                    /* gx2[v, j_e] += c_e SQ[q] */
                    for (int q = 0; q < nq; q++) {
                        const int *Q = Q0 + 4 * q;
                        const REAL *restrict sq = SQ + (size_t)q * BLK;
                        for (int e = Q[2]; e < Q[3]; e++) {
                            const REAL c = A->ec[e];
                            REAL *restrict g = G2 + (size_t)(off2 + v * d2 + A->ej[e]) * BLK;
                            VL g[s] += c * sq[s];
                        }
                    }
                }
            }
        }
        if (want0) { OUTROWS(A->t0, id, A->dim1); blk_out_SFX(G1, rout, nb, A->dim1, 0); }
        if (want1) { OUTROWS(A->t1, id, A->dim2); blk_out_SFX(G2, rout, nb, A->dim2, 0); }
        if (want2) { OUTROWS(A->t2, id, A->wnum); blk_out_SFX(GW, rout, nb, A->wnum, 0); }
        if (fwd) {
            if (A->scatter) { OUTROWS(A->t3, ro, A->dimo); } else { OUTROWS(A->t3, id, A->dimo); }
            blk_out_SFX(F, rout, nb, A->dimo, A->scatter);
        }
#undef ROWS
#undef OUTROWS
    }
    free(mem);
    return NULL;
}

int euclidnet_tp_blk_SFX(int mask, const REAL *x1, const REAL *x2, const REAL *w, const REAL *o, REAL *t0, REAL *t1,
                         REAL *t2, REAL *t3, int64_t n, int dim1, int dim2, int wnum, int dimo, int npaths,
                         const int *pinfo, const int *pairs, const int *ej, const REAL *ec, int maxa, int maxpairs,
                         int maxd, const int64_t *order, const int64_t *idx1, const int64_t *idxo, int scatter,
                         const REAL *basis, int K, int nthreads) {
    blk_args_SFX A;
    A.mask = mask; A.x1 = x1; A.x2 = x2; A.w = w; A.o = o; A.t0 = t0; A.t1 = t1; A.t2 = t2; A.t3 = t3;
    A.n = n; A.dim1 = dim1; A.dim2 = dim2; A.wnum = wnum; A.dimo = dimo; A.npaths = npaths; A.pinfo = pinfo;
    A.pairs = pairs; A.ej = ej; A.ec = ec; A.maxa = maxa; A.maxpairs = maxpairs; A.maxd = maxd;
    A.order = order; A.idx1 = idx1; A.idxo = idxo; A.scatter = scatter;
    A.basis = basis; A.K = basis ? K : 0;
    return tp_run(blk_worker_SFX, &A, nthreads);
}
"""


def source() -> str:
    """The complete C source (float32 and float64 instantiations)."""
    parts = [_HEADER]
    for real, sfx in (("float", "f32"), ("double", "f64")):
        parts.append(_BODY.replace("REAL", real).replace("SFX", sfx))
    return "\n".join(parts)
