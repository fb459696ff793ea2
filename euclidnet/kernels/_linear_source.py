"""C source of the equivariant-linear kernels (compiled at first use by :mod:`euclidnet.kernels._build`).

Features are irreps blocks, each ``[mul, d]`` flattened mul-major (element ``(u, i)`` at ``u * d + i``), one
row per sample with a row stride (``ld``; 0 repeats one row). A *pair* joins a source block ``(off, mul_a)``
and a destination block ``(off, mul_b)`` of the same ``d`` through a weight matrix; the rows ``(n, i)`` of
a block are the rows of its GEMM. Two operations, instantiated for float32 and float64 (``REAL`` / ``SFX``):

* **map**: ``dst[n, b, i] = sum_pairs sum_a alpha W[a, b] src[n, a, i]`` for every destination segment
  (fully overwritten), ``W[a, b] = w[woff + a * sa + b * sb]`` (``sa, sb`` = ``mul_out, 1`` for the forward,
  ``1, mul_out`` for the input gradient, which is the same map with the weights transposed). The weights are
  packed once per call, scaled, into panels ``[column tile][a][NC]`` (zero padded), so the register tile
  reads them with aligned vector loads. Each thread walks its samples in chunks (which stay in cache while
  every column tile of ``NC`` output channels passes over them); a register tile is ``R <= MR`` rows by
  ``NC`` channels: the rows are whole samples (``d = 1``: 6 samples; ``d = 3``: 2; ``d = 5``: 1; larger
  ``d``: up to ``MR`` rows of one sample), each reading ``src[n, a, i]`` in place (a broadcast, stride ``d``
  along ``a``: no transposing copy), and each sample's ``[d, NC]`` piece of the tile is transposed back to
  the mul-major ``dst`` on the way out.
* **wgrad**: ``gw[woff + a * ldw + b] = alpha sum_{n, i} x[n, a, i] g[n, b, i]``: per chunk, each ``g`` block
  is packed to GEMM rows ``[(n, i)][b]`` (not needed for ``d = 1`` blocks whose ``mul`` is a multiple of
  ``NC``), and an ``MR x NC`` register tile (``MR`` channels ``a`` of ``x``, read in place, by ``NC`` channels
  ``b``) sums over the chunk's rows into the partial sums of the work unit (below).

One call does a map, a wgrad or both (the backward: input and weight gradient chunk by chunk, reading the
same rows of ``g`` while they are in cache). The samples are cut into work units (one chunk each for a map
alone; with a weight gradient, about ``LIN_UNITS_PER_THREAD`` per thread, each with its own partial sums,
added in unit order at the end) that the threads take from an atomic counter: a thread slowed down by
another process on its core leaves more units to the others, and the result does not depend on which
thread ran which unit (it is deterministic for a given thread count and batch size). The threads are the
process's OpenMP team (torch's intra-op threads, found at load time) when there is one, else pthreads. The
float32 tiles use AVX2/FMA intrinsics when compiled for such a CPU (``__AVX2__`` and ``__FMA__``), else, as
for float64, plain C tiles that the compiler vectorises as it can.
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

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LIN_AVX 1
#define LIN_GENERIC_f32 0
#else
#define LIN_AVX 0
#define LIN_GENERIC_f32 1
#endif
#define LIN_GENERIC_f64 1

#define LIN_UNITS_PER_THREAD 8           /* work units per thread when they carry weight-gradient partial sums */
#define LIN_ACC_BYTES ((int64_t)64 << 20)  /* memory for those partial sums (at least one unit per thread) */
#define MR 6   /* rows of a register tile */
#define NC 16  /* columns (output channels) of a register tile: two 8-float AVX vectors */

/* segment table (map), per destination segment: dst offset, mul_b, d, first src entry, end src entry, K */
#define LIN_SEG 6
/* source table (map), per entry: src offset, mul_a, woff, sa, sb */
#define LIN_SRC 5
/* pair table (wgrad): x offset, mul_a, g offset, mul_b, d, woff, ldw */
#define LIN_PAIR 7

#define lin_job_t ek_job_t

/* The OpenMP runtime already loaded in the process (torch's libgomp, or an Intel runtime's GOMP entry
   points), found at load time; NULL when there is none. Running on its thread team means sharing torch's
   intra-op threads: they are usually awake (spinning after torch's last parallel op), while a thread of our
   own competes with them for the cores and, on a virtual machine, can take milliseconds to start. */
extern void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags) __attribute__((weak));
extern int omp_get_thread_num(void) __attribute__((weak));
extern int omp_get_num_threads(void) __attribute__((weak));

typedef struct {
    void *(*fn)(void *);
    void *arg;
    int err;
} lin_team_t;

static void lin_team_member(void *p) {
    lin_team_t *T = (lin_team_t *)p;
    lin_job_t job;
    job.fn = T->fn; job.arg = T->arg; job.tid = omp_get_thread_num(); job.nthreads = omp_get_num_threads(); job.err = 0;
    T->fn(&job);
    if (job.err) __atomic_fetch_or(&T->err, 1, __ATOMIC_RELAXED);
}

/* Run fn on nthreads threads (thread 0 is the caller): an OpenMP team when the process has a runtime (it may
   give fewer threads: fn reads job->nthreads), else pthreads (a thread that cannot start runs here). */
static int lin_run(void *(*fn)(void *), void *arg, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 64) nthreads = 64;
    if (nthreads > 1 && GOMP_parallel && omp_get_thread_num && omp_get_num_threads) {
        lin_team_t T = {fn, arg, 0};
        GOMP_parallel(lin_team_member, &T, (unsigned)nthreads, 0);
        return T.err;
    }
    return ek_run_pthreads(fn, arg, nthreads);
}

static void *lin_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

static inline int64_t lin_min(int64_t a, int64_t b) { return a < b ? a : b; }

static inline int64_t lin_ceil(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

#define LIN_INLINE static inline __attribute__((always_inline))

#if LIN_AVX
/* out[r][0:16] = sum over the segment's sources and their channels a of rp[r][off + a * d] * panel[a][0:16]
   for r < R (R <= MR, a constant after inlining): 2R accumulators, two weight vectors and one broadcast,
   at most 15 of the 16 ymm registers. */
LIN_INLINE void mk_map_f32(const int R, const float *const *rp, int64_t d, int nsrc, const int *src, const float *restrict b, float *restrict out) {
    __m256 c[MR][2];
    const float *ap[MR];
    for (int r = 0; r < R; r++) {
        c[r][0] = _mm256_setzero_ps();
        c[r][1] = _mm256_setzero_ps();
        ap[r] = rp[r];
    }
    for (int s = 0; s < nsrc; s++) {
        const int *S = src + LIN_SRC * s;
        int64_t k = S[0];
        const int64_t kend = k + (int64_t)S[1] * d;
        for (; k < kend; k += d, b += NC) {
            const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
            for (int r = 0; r < R; r++) {
                const __m256 a = _mm256_broadcast_ss(ap[r] + k);
                c[r][0] = _mm256_fmadd_ps(a, b0, c[r][0]);
                c[r][1] = _mm256_fmadd_ps(a, b1, c[r][1]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        _mm256_store_ps(out + r * NC, c[r][0]);
        _mm256_store_ps(out + r * NC + 8, c[r][1]);
    }
}

/* P[u][0:16] += sum_{n < cn, i < d} x_u[n * ldx + i] * gb[(n * d + i) * ldg + 0:16] for u < nu, x_u = xb +
   min(u, nu - 1) * d (the channels of one x block, read in place; D is d when a constant, else 0). */
LIN_INLINE void mk_wg_f32(const int D, int64_t d, const float *xb, int64_t ldx, int nu, const float *gb, int64_t ldg, int64_t cn, float *P, int64_t ldp) {
    if (D) d = D;
    __m256 c[MR][2];
    const float *xp[MR];
    for (int u = 0; u < MR; u++) {
        c[u][0] = _mm256_setzero_ps();
        c[u][1] = _mm256_setzero_ps();
        xp[u] = xb + (u < nu ? u : nu - 1) * d;
    }
    for (int64_t n = 0; n < cn; n++) {
        for (int64_t i = 0; i < d; i++, gb += ldg) {
            const __m256 b0 = _mm256_loadu_ps(gb), b1 = _mm256_loadu_ps(gb + 8);
            for (int u = 0; u < MR; u++) {
                const __m256 a = _mm256_broadcast_ss(xp[u] + i);
                c[u][0] = _mm256_fmadd_ps(a, b0, c[u][0]);
                c[u][1] = _mm256_fmadd_ps(a, b1, c[u][1]);
            }
        }
        for (int u = 0; u < MR; u++) xp[u] += ldx;
    }
    for (int u = 0; u < MR; u++) {  /* constant trip count: keeps c in registers (no variable index) */
        if (u < nu) {
            float *p = P + u * ldp;
            _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), c[u][0]));
            _mm256_storeu_ps(p + 8, _mm256_add_ps(_mm256_loadu_ps(p + 8), c[u][1]));
        }
    }
}
#endif
"""
)

_BODY = r"""
#if LIN_GENERIC_SFX
LIN_INLINE void mk_map_SFX(const int R, const REAL *const *rp, int64_t d, int nsrc, const int *src, const REAL *restrict b, REAL *restrict out) {
    REAL acc[MR][NC];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < NC; j++) acc[r][j] = 0;
    for (int s = 0; s < nsrc; s++) {
        const int *S = src + LIN_SRC * s;
        const int64_t k0 = S[0];
        for (int a = 0; a < S[1]; a++, b += NC) {
            const int64_t k = k0 + a * d;
            for (int r = 0; r < R; r++) {
                const REAL v = rp[r][k];
                for (int j = 0; j < NC; j++) acc[r][j] += v * b[j];
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < NC; j++) out[r * NC + j] = acc[r][j];
}

LIN_INLINE void mk_wg_SFX(const int D, int64_t d, const REAL *xb, int64_t ldx, int nu, const REAL *gb, int64_t ldg, int64_t cn, REAL *P, int64_t ldp) {
    if (D) d = D;
    REAL acc[MR][NC];
    memset(acc, 0, sizeof acc);
    for (int64_t n = 0; n < cn; n++, xb += ldx)
        for (int64_t i = 0; i < d; i++, gb += ldg)
            for (int u = 0; u < MR; u++) {
                const REAL v = xb[(u < nu ? u : nu - 1) * d + i];
                for (int j = 0; j < NC; j++) acc[u][j] += v * gb[j];
            }
    for (int u = 0; u < nu; u++)
        for (int j = 0; j < NC; j++) P[u * ldp + j] += acc[u][j];
}
#endif

typedef struct {
    int64_t n;
    const REAL *src; int64_t ldsrc;
    REAL *dst; int64_t lddst;
    int nseg; const int *seg; const int *msrc;
    const REAL *panel; const int64_t *poff;
    const REAL *x; int64_t ldx;
    int npair; const int *pair;
    const int64_t *pacc; int64_t accsize;
    REAL *acc;                 /* nunits * accsize partial weight gradients */
    double *red;               /* accsize: their sum over the units */
    int64_t gpsize;            /* per-thread pack buffer (elements) */
    int64_t chunk;
    int64_t unit, nunits;      /* work units: samples [u * unit, (u + 1) * unit) */
    int64_t next;              /* next unit to take (atomic) */
} lin_args_SFX;

/* y[w * d + i] = t[i * NC + w] for w < nw: one register tile's rows of one sample back to mul-major. */
LIN_INLINE void store_sample_SFX(const int D, int64_t d, REAL *restrict y, const REAL *restrict t, int nw) {
    if (D) d = D;
    if (d == 1) {
        if (nw == NC) memcpy(y, t, sizeof(REAL) * NC);  /* constant size: inlined vector moves */
        else memcpy(y, t, sizeof(REAL) * nw);
    } else if (D && nw == NC) {  /* constant shape: the compiler turns the transposition into shuffles */
        for (int w = 0; w < NC; w++)
            for (int64_t i = 0; i < d; i++) y[w * d + i] = t[i * NC + w];
    } else {
        for (int64_t i = 0; i < d; i++)
            for (int w = 0; w < nw; w++) y[w * d + i] = t[i * NC + w];
    }
}

/* The map of one destination segment's column tile on samples [n0, n0 + cn): tiles of SPT whole samples
   (R = SPT * D rows, D a constant) so the tile goes back to the output with one transposition per sample. */
LIN_INLINE void map_tiles_SFX(const int D, const int SPT, const lin_args_SFX *A, int64_t n0, int64_t cn, int64_t yoff, int nsrc, const int *src, const REAL *b, int64_t w0, int nw) {
    REAL tile[MR * NC] __attribute__((aligned(64)));
    for (int64_t s0 = 0; s0 < cn; s0 += SPT) {
        const int ns = (int)lin_min(SPT, cn - s0);
        const REAL *rp[MR];
        for (int q = 0; q < SPT; q++) {
            const int64_t n = n0 + s0 + (q < ns ? q : ns - 1);  /* samples past the end repeat the last one */
            for (int i = 0; i < D; i++) rp[q * D + i] = A->src + n * A->ldsrc + i;
        }
        mk_map_SFX(SPT * D, rp, D, nsrc, src, b, tile);
        for (int q = 0; q < ns; q++)
            store_sample_SFX(D, D, A->dst + (n0 + s0 + q) * A->lddst + yoff + w0 * D, tile + q * D * NC, nw);
    }
}

/* Any d: each sample's d rows in tiles of MR rows (rows past d repeat the last one). */
static void map_tiles_any_SFX(int64_t d, const lin_args_SFX *A, int64_t n0, int64_t cn, int64_t yoff, int nsrc, const int *src, const REAL *b, int64_t w0, int nw) {
    REAL tile[MR * NC] __attribute__((aligned(64)));
    for (int64_t n = n0; n < n0 + cn; n++) {
        for (int64_t i0 = 0; i0 < d; i0 += MR) {
            const int nr = (int)lin_min(MR, d - i0);
            const REAL *rp[MR];
            for (int r = 0; r < MR; r++) rp[r] = A->src + n * A->ldsrc + i0 + (r < nr ? r : nr - 1);
            mk_map_SFX(MR, rp, d, nsrc, src, b, tile);
            REAL *y = A->dst + n * A->lddst + yoff + w0 * d + i0;
            for (int r = 0; r < nr; r++)
                for (int w = 0; w < nw; w++) y[w * d + r] = tile[r * NC + w];
        }
    }
}

/* The map on samples [n0, n0 + cn). */
static void map_chunk_SFX(const lin_args_SFX *A, int64_t n0, int64_t cn) {
    for (int s = 0; s < A->nseg; s++) {
        const int *G = A->seg + LIN_SEG * s;
        const int64_t yoff = G[0], mulb = G[1], d = G[2], K = G[5];
        const int nsrc = G[4] - G[3];
        const int *src = A->msrc + LIN_SRC * G[3];
        const REAL *pan = A->panel + A->poff[s];
        for (int64_t w0 = 0; w0 < mulb; w0 += NC) {
            const REAL *b = pan + (w0 / NC) * K * NC;
            const int nw = (int)lin_min(NC, mulb - w0);
            if (d == 1) map_tiles_SFX(1, 6, A, n0, cn, yoff, nsrc, src, b, w0, nw);
            else if (d == 3) map_tiles_SFX(3, 2, A, n0, cn, yoff, nsrc, src, b, w0, nw);
            else if (d == 5) map_tiles_SFX(5, 1, A, n0, cn, yoff, nsrc, src, b, w0, nw);
            else map_tiles_any_SFX(d, A, n0, cn, yoff, nsrc, src, b, w0, nw);
        }
    }
}

/* gp[(n * d + i) * mpad + w] = g[n, goff + w * d + i] (0 for w >= mulb): one g block of a chunk as GEMM rows. */
LIN_INLINE void pack_g_SFX(const int D, int64_t d, const REAL *g, int64_t ldg, int64_t cn, int64_t mulb, int64_t mpad, REAL *restrict gp) {
    if (D) d = D;
    for (int64_t n = 0; n < cn; n++, g += ldg) {
        REAL *o = gp + n * d * mpad;
        for (int64_t w = 0; w < mulb; w++)
            for (int64_t i = 0; i < d; i++) o[i * mpad + w] = g[w * d + i];
        for (int64_t i = 0; i < d; i++)
            for (int64_t w = mulb; w < mpad; w++) o[i * mpad + w] = 0;
    }
}

LIN_INLINE void wg_tiles_SFX(const int D, int64_t d, const REAL *xb, int64_t ldx, int64_t mula, const REAL *gb, int64_t ldgb, int64_t mpad, int64_t cn, REAL *P) {
    for (int64_t w0 = 0; w0 < mpad; w0 += NC)
        for (int64_t u0 = 0; u0 < mula; u0 += MR)
            mk_wg_SFX(D, d, xb + u0 * d, ldx, (int)lin_min(MR, mula - u0), gb + w0, ldgb, cn, P + u0 * mpad + w0, mpad);
}

/* The weight-gradient partial sums of samples [n0, n0 + cn) added to acc. */
static void wg_chunk_SFX(const lin_args_SFX *A, REAL *acc, REAL *gp, int64_t n0, int64_t cn) {
    int64_t packed_g = -1;
    const REAL *gb = NULL;
    int64_t ldgb = 0;
    for (int p = 0; p < A->npair; p++) {
        const int *Q = A->pair + LIN_PAIR * p;
        const int64_t xoff = Q[0], mula = Q[1], goff = Q[2], mulb = Q[3], d = Q[4];
        const int64_t mpad = lin_ceil(mulb, NC);
        if (goff != packed_g) {  /* pairs are sorted by g block: pack each g block once per chunk */
            packed_g = goff;
            const REAL *g = A->src + n0 * A->ldsrc + goff;
            if (d == 1 && mulb % NC == 0) {  /* already GEMM rows */
                gb = g;
                ldgb = A->ldsrc;
            } else {
                if (d == 1) pack_g_SFX(1, 1, g, A->ldsrc, cn, mulb, mpad, gp);
                else if (d == 3) pack_g_SFX(3, 3, g, A->ldsrc, cn, mulb, mpad, gp);
                else if (d == 5) pack_g_SFX(5, 5, g, A->ldsrc, cn, mulb, mpad, gp);
                else pack_g_SFX(0, d, g, A->ldsrc, cn, mulb, mpad, gp);
                gb = gp;
                ldgb = mpad;
            }
        }
        const REAL *xb = A->x + n0 * A->ldx + xoff;
        REAL *P = acc + A->pacc[p];
        if (d == 1) wg_tiles_SFX(1, 1, xb, A->ldx, mula, gb, ldgb, mpad, cn, P);
        else if (d == 3) wg_tiles_SFX(3, 3, xb, A->ldx, mula, gb, ldgb, mpad, cn, P);
        else if (d == 5) wg_tiles_SFX(5, 5, xb, A->ldx, mula, gb, ldgb, mpad, cn, P);
        else wg_tiles_SFX(0, d, xb, A->ldx, mula, gb, ldgb, mpad, cn, P);
    }
}

/* Threads take work units dynamically (an atomic counter), so a thread slowed down by other processes on
   its core does not hold up the others; each unit has its own weight-gradient partial sums, so the result
   does not depend on which thread ran which unit. */
static void *lin_worker_SFX(void *jp) {
    lin_job_t *job = (lin_job_t *)jp;
    lin_args_SFX *A = (lin_args_SFX *)job->arg;
    REAL *gp = NULL;
    if (A->npair) {
        gp = (REAL *)lin_alloc(sizeof(REAL) * A->gpsize);
        if (!gp) { job->err = 1; return NULL; }
    }
    for (;;) {
        const int64_t u = __atomic_fetch_add(&A->next, 1, __ATOMIC_RELAXED);
        if (u >= A->nunits) break;
        const int64_t z0 = u * A->unit, z1 = lin_min(A->n, z0 + A->unit);
        REAL *acc = NULL;
        if (A->npair) {
            acc = A->acc + u * A->accsize;
            memset(acc, 0, sizeof(REAL) * A->accsize);
        }
        for (int64_t n0 = z0; n0 < z1; n0 += A->chunk) {
            const int64_t cn = lin_min(A->chunk, z1 - n0);
            if (A->nseg) map_chunk_SFX(A, n0, cn);
            if (A->npair) wg_chunk_SFX(A, acc, gp, n0, cn);
        }
    }
    free(gp);
    return NULL;
}

/* red[i] = sum over units, in unit order, of acc[unit][i], for a static range of i per thread. */
static void *lin_reduce_SFX(void *jp) {
    lin_job_t *job = (lin_job_t *)jp;
    const lin_args_SFX *A = (const lin_args_SFX *)job->arg;
    const int64_t i0 = A->accsize * job->tid / job->nthreads, i1 = A->accsize * (job->tid + 1) / job->nthreads;
    for (int64_t i = i0; i < i1; i++) A->red[i] = (double)A->acc[i];
    for (int64_t u = 1; u < A->nunits; u++) {
        const REAL *a = A->acc + u * A->accsize;
        for (int64_t i = i0; i < i1; i++) A->red[i] += (double)a[i];
    }
    return NULL;
}

/* map: dst = map(src) when dst != NULL (segments seg / msrc, scales malpha per msrc entry);
   wgrad: gw (pairs, scales palpha) from x and g = src when gw != NULL. Returns 0, or 1 when out of memory. */
int euclidnet_linear_SFX(int64_t n, const REAL *w,
                         const REAL *src, int64_t ldsrc, REAL *dst, int64_t lddst,
                         int nseg, const int *seg, const int *msrc, const double *malpha,
                         const REAL *x, int64_t ldx, REAL *gw, int npair, const int *pair, const double *palpha,
                         int64_t chunk, int nthreads) {
    lin_args_SFX A;
    memset(&A, 0, sizeof A);
    A.n = n; A.src = src; A.ldsrc = ldsrc; A.dst = dst; A.lddst = lddst; A.x = x; A.ldx = ldx;
    A.chunk = chunk < 1 ? 1 : chunk;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 64) nthreads = 64;  /* lin_run's limit */
    int64_t *poff = NULL, *pacc = NULL;
    REAL *panel = NULL;
    if (dst && nseg) {
        A.nseg = nseg; A.seg = seg; A.msrc = msrc;
        poff = (int64_t *)malloc(sizeof(int64_t) * nseg);
        if (!poff) return 1;
        int64_t total = 0;
        for (int s = 0; s < nseg; s++) {
            poff[s] = total;
            total += lin_ceil(seg[LIN_SEG * s + 1], NC) * seg[LIN_SEG * s + 5];
        }
        panel = (REAL *)lin_alloc(sizeof(REAL) * total);
        if (!panel) { free(poff); return 1; }
        /* panel[tile][a][j] = alpha W[a, tile * NC + j] (0 past mul_b), a running over the segment's sources */
        for (int s = 0; s < nseg; s++) {
            const int *G = seg + LIN_SEG * s;
            const int64_t mulb = G[1], K = G[5];
            REAL *pan = panel + poff[s];
            for (int64_t w0 = 0; w0 < mulb; w0 += NC) {
                REAL *o = pan + (w0 / NC) * K * NC;
                for (int e = G[3]; e < G[4]; e++) {
                    const int *S = msrc + LIN_SRC * e;
                    const int64_t mula = S[1], woff = S[2], sa = S[3], sb = S[4];
                    const double al = malpha[e];
                    for (int64_t a = 0; a < mula; a++, o += NC)
                        for (int64_t j = 0; j < NC; j++)
                            o[j] = w0 + j < mulb ? (REAL)(al * (double)w[woff + a * sa + (w0 + j) * sb]) : (REAL)0;
                }
            }
        }
        A.panel = panel; A.poff = poff;
    }
    if (gw && npair) {
        A.npair = npair; A.pair = pair;
        pacc = (int64_t *)malloc(sizeof(int64_t) * npair);
        if (!pacc) { free(poff); free(panel); return 1; }
        int64_t total = 0, gps = 0;
        for (int p = 0; p < npair; p++) {
            const int *Q = pair + LIN_PAIR * p;
            const int64_t mpad = lin_ceil(Q[3], NC), rows = A.chunk * Q[4];
            pacc[p] = total;
            total += Q[1] * mpad;
            if (rows * mpad > gps) gps = rows * mpad;
        }
        A.pacc = pacc; A.accsize = lin_ceil(total, 16); A.gpsize = gps;
    }
    /* Work units: single chunks for a map alone; with a weight gradient, fewer and larger units (each needs its
       own partial sums): LIN_UNITS_PER_THREAD per thread for load balancing, within LIN_ACC_BYTES of partial
       sums but at least one per thread. */
    int64_t nchunks = (n + A.chunk - 1) / A.chunk, nunits = nchunks;
    if (A.npair) {
        int64_t cap = LIN_ACC_BYTES / (int64_t)(sizeof(REAL) * A.accsize);
        if (cap < nthreads) cap = nthreads;
        if (nunits > (int64_t)LIN_UNITS_PER_THREAD * nthreads) nunits = (int64_t)LIN_UNITS_PER_THREAD * nthreads;
        if (nunits > cap) nunits = cap;
    }
    if (nunits < 1) nunits = 1;
    A.unit = (nchunks + nunits - 1) / nunits * A.chunk;  /* whole chunks per unit */
    if (A.unit < A.chunk) A.unit = A.chunk;  /* n = 0 */
    A.nunits = (n + A.unit - 1) / A.unit;
    if (A.nunits < 1) A.nunits = 1;
    if (A.npair) {
        A.acc = (REAL *)lin_alloc(sizeof(REAL) * A.accsize * A.nunits);
        A.red = (double *)lin_alloc(sizeof(double) * A.accsize);
        if (!A.acc || !A.red) { free(poff); free(panel); free(pacc); free(A.acc); free(A.red); return 1; }
    }
    int err = lin_run(lin_worker_SFX, &A, (int)lin_min(nthreads, A.nunits));
    if (!err && A.npair) {
        lin_run(lin_reduce_SFX, &A, A.accsize >= 4096 ? nthreads : 1);
        for (int p = 0; p < npair; p++) {
            const int *Q = pair + LIN_PAIR * p;
            const int64_t mula = Q[1], mulb = Q[3], woff = Q[5], ldw = Q[6], mpad = lin_ceil(mulb, NC);
            const double *r = A.red + pacc[p];
            for (int64_t u = 0; u < mula; u++)
                for (int64_t b = 0; b < mulb; b++) gw[woff + u * ldw + b] = (REAL)(palpha[p] * r[u * mpad + b]);
        }
    }
    free(poff); free(panel); free(pacc); free(A.acc); free(A.red);
    return err;
}
"""


def source() -> str:
    """The complete C source (float32 and float64 instantiations)."""
    parts = [_HEADER]
    for real, sfx in (("float", "f32"), ("double", "f64")):
        parts.append(_BODY.replace("REAL", real).replace("SFX", sfx))
    return "\n".join(parts)
