"""The per-sample small contractions of the chunked shared-weight 'uvw' tensor product, in C.

:mod:`euclidnet.tp._uvw_shared` spends its time in two kinds of work: GEMMs with the weights (MKL, through
torch) and, around them, per-sample contractions of a GEMM's operand or result with the Clebsch-Gordan block
and the two other operands. The latter stream a large intermediate (``[n, d, mul, mul]``) once at a few
multiply-adds per element: memory-bound work that torch runs as batched small GEMMs (``bmm`` with inner
dimension 3, one MKL call per sample) plus transposing copies. Each function here does one such contraction
in a single pass, per sample, with the small operands read in place (any strides) and the Clebsch-Gordan
contraction done on the fly. Single-threaded: the caller runs them on its own worker threads (ctypes
releases the GIL during the call).

Operand blocks are ``X[z, u, i]`` (sample ``z``, channel ``u < mul``, component ``i < d``) given by a pointer
and three element strides. ``M`` is a small dense coefficient tensor (the CG block, scaled and permuted).

* :func:`outer`: ``T[z, k, u, v] = sum_(i, j) M[k, j, i] P[z, u, i] Q[z, v, j]`` (``T`` contiguous);
* :func:`rowmat`: ``acc[z, k, w] = beta acc[z, k, w] + sum_(f, u) R[z, k, f, u] Y[z, f, u, w]`` with
  ``R[z, k, f, u] = sum_i M[k, f, i] H[z, u, i]``;
* :func:`dotsum`: ``acc[z, k, u] = beta acc[z, k, u] + sum_(i, t) R[z, i, k, t] Y[z, i, u, t]`` with
  ``R[z, i, k, t] = sum_s M[i, k, s] B[z, t, s]``.

``Y`` is contiguous per sample (sample stride given); ``acc`` has unit stride along its last axis.

The **fused kernels** (AVX2/FMA builds; float32 and float64) do a GEMM with the weights together with these
contractions, so that the large intermediate never reaches memory: :func:`fused_outer` (an outer product
times the weights), :func:`fused_wgrad` (the weight gradient) and :func:`fused_first` (the weights times one
operand, then contracted with the other one or two). Their register tiles are 6 rows by two vectors
(:data:`FUSED_COLUMNS`: 16 float or 8 double columns), over weights packed once per call
(:func:`pack_weights`).
"""

# ruff: noqa: E501
from __future__ import annotations

import ctypes
import re

import torch

from ._build import LazyLibrary

__all__ = ["dotsum", "outer", "rowmat", "small_kernel_available", "small_kernel_error"]

_BODY = r"""
/* out[r, u] = sum_(i < d) M[r, i] X[u, i] for r < rows (X[u, i] at X[u su + i si]), through Xt[i, u] = X[u, i]
   so that the sums are vector loops over u. */
static void contract_cols_SFX(const REAL *X, int64_t su, int64_t si, int64_t mul, int64_t d, const REAL *M,
                              int64_t rows, REAL *restrict Xt, REAL *restrict out) {
    for (int64_t u = 0; u < mul; u++)
        for (int64_t i = 0; i < d; i++) Xt[i * mul + u] = X[u * su + i * si];
    for (int64_t r = 0; r < rows; r++) {
        REAL *restrict o = out + r * mul;
        const REAL m0 = M[r * d];
#pragma omp simd
        for (int64_t u = 0; u < mul; u++) o[u] = m0 * Xt[u];
        for (int64_t i = 1; i < d; i++) {
            const REAL mi = M[r * d + i];
            const REAL *restrict x = Xt + i * mul;
#pragma omp simd
            for (int64_t u = 0; u < mul; u++) o[u] += mi * x[u];
        }
    }
}

/* o[k, x] = beta o[k, x] + S[k, x] for k < d, x < m (row k of o at o + k ldo; beta 0: o is not read). */
static void store_rows_SFX(REAL *o, int64_t ldo, const REAL *restrict S, int64_t d, int64_t m, double beta) {
    for (int64_t k = 0; k < d; k++) {
        REAL *restrict ok = o + k * ldo;
        const REAL *restrict s = S + k * m;
        if (beta == 0.0) {
#pragma omp simd
            for (int64_t x = 0; x < m; x++) ok[x] = s[x];
        } else {
            const REAL b = (REAL)beta;
#pragma omp simd
            for (int64_t x = 0; x < m; x++) ok[x] = b * ok[x] + s[x];
        }
    }
}

/* row[v] = sum_(j < dq) rf[j ldr] qt[j mq + v] for v < mq: one row (z, k, u) of an outer product T, from the
   contracted first operand (rf = Rf[z, k, 0, u], stride ldr between j) and the transposed second (qt). */
static inline void t_row_SFX(REAL *restrict row, const REAL *rf, int64_t ldr, const REAL *qt, int64_t mq, int64_t dq) {
    const REAL r0 = rf[0];
    if (dq == 3) {
        const REAL r1 = rf[ldr], r2 = rf[2 * ldr];
        const REAL *q0 = qt, *q1 = qt + mq, *q2 = qt + 2 * mq;
#pragma omp simd
        for (int64_t v = 0; v < mq; v++) row[v] = r0 * q0[v] + r1 * q1[v] + r2 * q2[v];
        return;
    }
#pragma omp simd
    for (int64_t v = 0; v < mq; v++) row[v] = r0 * qt[v];
    for (int64_t j = 1; j < dq; j++) {
        const REAL rj = rf[j * ldr];
        const REAL *qj = qt + j * mq;
#pragma omp simd
        for (int64_t v = 0; v < mq; v++) row[v] += rj * qj[v];
    }
}

/* T[z, k, u, v] = sum_(i, j) M[k, j, i] P[z, u, i] Q[z, v, j]; T contiguous [n, dt, mp, mq]. */
int euclidnet_uvw_outer_SFX(int64_t n, const REAL *P, int64_t psz, int64_t psu, int64_t psi, int64_t mp, int64_t dp,
                            const REAL *Q, int64_t qsz, int64_t qsu, int64_t qsi, int64_t mq, int64_t dq,
                            const REAL *M, int64_t dt, REAL *restrict T) {
    REAL *Qt = (REAL *)malloc(sizeof(REAL) * (size_t)(dq * mq + dp * mp + dt * dq * mp + 1));
    if (!Qt) return 1;
    REAL *Pt = Qt + dq * mq, *Rf = Pt + dp * mp;
    for (int64_t z = 0; z < n; z++) {
        const REAL *Qz = Q + z * qsz;
        for (int64_t j = 0; j < dq; j++)
            for (int64_t v = 0; v < mq; v++) Qt[j * mq + v] = Qz[v * qsu + j * qsi];
        /* Rf[k, j, u] = sum_i M[k, j, i] P[z, u, i] */
        contract_cols_SFX(P + z * psz, psu, psi, mp, dp, M, dt * dq, Pt, Rf);
        for (int64_t k = 0; k < dt; k++)
            for (int64_t u = 0; u < mp; u++)
                t_row_SFX(T + ((z * dt + k) * mp + u) * mq, Rf + k * dq * mp + u, mp, Qt, mq, dq);
    }
    free(Qt);
    return 0;
}

/* acc[z, k, w] = beta acc[z, k, w] + sum_(f, u) R[k, f, u] Y[z, f, u, w], R[k, f, u] = sum_i M[k, f, i] H[z, u, i].
   Y: [n, df, mh, mt] with sample stride ysz, contiguous otherwise; acc: strides (asz, ask, 1). */
int euclidnet_uvw_rowmat_SFX(int64_t n, const REAL *H, int64_t hsz, int64_t hsu, int64_t hsi, int64_t mh, int64_t dh,
                             const REAL *M, int64_t dt, int64_t df, const REAL *Y, int64_t ysz, int64_t mt,
                             double beta, REAL *acc, int64_t asz, int64_t ask) {
    const int64_t K = df * mh;
    REAL *R = (REAL *)malloc(sizeof(REAL) * (size_t)(dt * K + dt * mt + dh * mh + 1));
    if (!R) return 1;
    REAL *S = R + dt * K, *Ht = S + dt * mt;
    for (int64_t z = 0; z < n; z++) {
        contract_cols_SFX(H + z * hsz, hsu, hsi, mh, dh, M, dt * df, Ht, R);  /* R[k, f, u] */
        const REAL *Yz = Y + z * ysz;
#if UVW_AVX_SFX
        if ((dt == 3 || dt == 1) && mt % 8 == 0) {
            rowmat_avx(dt, K, R, Yz, mt, S);
        } else
#endif
        {
        memset(S, 0, sizeof(REAL) * (size_t)(dt * mt));
        for (int64_t a = 0; a < K; a++) {
            const REAL *restrict y = Yz + a * mt;
            for (int64_t k = 0; k < dt; k++) {
                const REAL rk = R[k * K + a];
                REAL *restrict s = S + k * mt;
#pragma omp simd
                for (int64_t w = 0; w < mt; w++) s[w] += rk * y[w];
            }
        }
        }
        store_rows_SFX(acc + z * asz, ask, S, dt, mt, beta);
    }
    free(R);
    return 0;
}

/* acc[z, k, u] = beta acc[z, k, u] + sum_(i, t) R[i, k, t] Y[z, i, u, t], R[i, k, t] = sum_s M[i, k, s] B[z, t, s].
   Y: [n, dp, mq, mb] with sample stride ysz, contiguous otherwise; acc: strides (asz, ask, 1). */
int euclidnet_uvw_dotsum_SFX(int64_t n, const REAL *B, int64_t bsz, int64_t bsu, int64_t bsi, int64_t mb, int64_t db,
                             const REAL *M, int64_t dp, int64_t dq, const REAL *Y, int64_t ysz, int64_t mq,
                             double beta, REAL *acc, int64_t asz, int64_t ask) {
    REAL *R = (REAL *)malloc(sizeof(REAL) * (size_t)(dp * dq * mb + dq * mq + db * mb + 1));
    if (!R) return 1;
    REAL *S = R + dp * dq * mb, *Bt = S + dq * mq;
    for (int64_t z = 0; z < n; z++) {
        contract_cols_SFX(B + z * bsz, bsu, bsi, mb, db, M, dp * dq, Bt, R);  /* R[i, k, t] */
        const REAL *Yz = Y + z * ysz;
#if UVW_AVX_SFX
        if (dq <= 3 && mb % 8 == 0 && mq % 4 == 0) {
            dotsum_avx(dp, dq, R, Yz, mq, mb, S);
        } else
#endif
        {
        memset(S, 0, sizeof(REAL) * (size_t)(dq * mq));
        for (int64_t i = 0; i < dp; i++)
            for (int64_t u = 0; u < mq; u++) {
                const REAL *restrict y = Yz + (i * mq + u) * mb;
                for (int64_t k = 0; k < dq; k++) {
                    const REAL *restrict r = R + (i * dq + k) * mb;
                    REAL s = 0;
#pragma omp simd reduction(+ : s)
                    for (int64_t t = 0; t < mb; t++) s += r[t] * y[t];
                    S[k * mq + u] += s;
                }
            }
        }
        store_rows_SFX(acc + z * asz, ask, S, dq, mq, beta);
    }
    free(R);
    return 0;
}
"""


_AVX = r"""
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define UVW_AVX_f32 1
#define UVW_FUSED 1
static inline float hsum_f32(__m256 y) {
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
    const __m128 h2 = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
}
static inline double hsum_f64(__m256d y) {
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(y), _mm256_extractf128_pd(y, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}
#else
#define UVW_AVX_f32 0
#define UVW_FUSED 0
#endif
#define UVW_AVX_f64 0
#ifndef UVW_PF
#define UVW_PF 8
#endif

#if UVW_AVX_f32
/* S[k, w] = sum_a R[k, a] Y[a, w] for k < dt (1 or 3), mt a multiple of 8: register tiles of dt x 32 columns
   (12 accumulators), Y read once per tile from cache. */
static void rowmat_avx(int64_t dt, int64_t K, const float *R, const float *Y, int64_t mt, float *S) {
    for (int64_t w0 = 0; w0 < mt; w0 += 32) {
        const int64_t nv = (mt - w0) >= 32 ? 4 : (mt - w0) / 8;
        if (dt == 3 && nv == 4) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            __m256 c0 = a0, c1 = a0, c2 = a0, c3 = a0;
            const float *R0 = R, *R1 = R + K, *R2 = R + 2 * K;
            for (int64_t a = 0; a < K; a++) {
                const float *y = Y + a * mt + w0;
                _mm_prefetch((const char *)(y + UVW_PF * mt), _MM_HINT_T0);
                _mm_prefetch((const char *)(y + UVW_PF * mt + 16), _MM_HINT_T0);
                const __m256 y0 = _mm256_loadu_ps(y), y1 = _mm256_loadu_ps(y + 8);
                const __m256 y2 = _mm256_loadu_ps(y + 16), y3 = _mm256_loadu_ps(y + 24);
                __m256 r = _mm256_broadcast_ss(R0 + a);
                a0 = _mm256_fmadd_ps(r, y0, a0); a1 = _mm256_fmadd_ps(r, y1, a1);
                a2 = _mm256_fmadd_ps(r, y2, a2); a3 = _mm256_fmadd_ps(r, y3, a3);
                r = _mm256_broadcast_ss(R1 + a);
                b0 = _mm256_fmadd_ps(r, y0, b0); b1 = _mm256_fmadd_ps(r, y1, b1);
                b2 = _mm256_fmadd_ps(r, y2, b2); b3 = _mm256_fmadd_ps(r, y3, b3);
                r = _mm256_broadcast_ss(R2 + a);
                c0 = _mm256_fmadd_ps(r, y0, c0); c1 = _mm256_fmadd_ps(r, y1, c1);
                c2 = _mm256_fmadd_ps(r, y2, c2); c3 = _mm256_fmadd_ps(r, y3, c3);
            }
            float *s = S + w0;
            _mm256_storeu_ps(s, a0); _mm256_storeu_ps(s + 8, a1); _mm256_storeu_ps(s + 16, a2); _mm256_storeu_ps(s + 24, a3);
            s += mt;
            _mm256_storeu_ps(s, b0); _mm256_storeu_ps(s + 8, b1); _mm256_storeu_ps(s + 16, b2); _mm256_storeu_ps(s + 24, b3);
            s += mt;
            _mm256_storeu_ps(s, c0); _mm256_storeu_ps(s + 8, c1); _mm256_storeu_ps(s + 16, c2); _mm256_storeu_ps(s + 24, c3);
            continue;
        }
        /* dt = 1, or a tail of fewer than 32 columns: one row at a time, nv vectors */
        for (int64_t k = 0; k < dt; k++) {
            __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            const float *Rk = R + k * K;
            if (nv == 4) {
                __m256 a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
                __m256 e0 = a0, e1 = a0, e2 = a0, e3 = a0;
                int64_t a = 0;
                for (; a + 1 < K; a += 2) {  /* two rows at once: two independent FMA chains per column */
                    const float *y = Y + a * mt + w0;
                    __m256 r = _mm256_broadcast_ss(Rk + a);
                    a0 = _mm256_fmadd_ps(r, _mm256_loadu_ps(y), a0); a1 = _mm256_fmadd_ps(r, _mm256_loadu_ps(y + 8), a1);
                    a2 = _mm256_fmadd_ps(r, _mm256_loadu_ps(y + 16), a2); a3 = _mm256_fmadd_ps(r, _mm256_loadu_ps(y + 24), a3);
                    y += mt;
                    r = _mm256_broadcast_ss(Rk + a + 1);
                    e0 = _mm256_fmadd_ps(r, _mm256_loadu_ps(y), e0); e1 = _mm256_fmadd_ps(r, _mm256_loadu_ps(y + 8), e1);
                    e2 = _mm256_fmadd_ps(r, _mm256_loadu_ps(y + 16), e2); e3 = _mm256_fmadd_ps(r, _mm256_loadu_ps(y + 24), e3);
                }
                if (a < K) {
                    const float *y = Y + a * mt + w0;
                    const __m256 r = _mm256_broadcast_ss(Rk + a);
                    a0 = _mm256_fmadd_ps(r, _mm256_loadu_ps(y), a0); a1 = _mm256_fmadd_ps(r, _mm256_loadu_ps(y + 8), a1);
                    a2 = _mm256_fmadd_ps(r, _mm256_loadu_ps(y + 16), a2); a3 = _mm256_fmadd_ps(r, _mm256_loadu_ps(y + 24), a3);
                }
                acc[0] = _mm256_add_ps(a0, e0); acc[1] = _mm256_add_ps(a1, e1);
                acc[2] = _mm256_add_ps(a2, e2); acc[3] = _mm256_add_ps(a3, e3);
            } else {
                for (int64_t a = 0; a < K; a++) {
                    const float *y = Y + a * mt + w0;
                    const __m256 r = _mm256_broadcast_ss(Rk + a);
                    for (int64_t v = 0; v < nv; v++) acc[v] = _mm256_fmadd_ps(r, _mm256_loadu_ps(y + 8 * v), acc[v]);
                }
            }
            for (int64_t v = 0; v < nv; v++) _mm256_storeu_ps(S + k * mt + w0 + 8 * v, acc[v]);
        }
    }
}

/* The four sums of the lanes of a, b, c, d. */
static inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* S[k, u] = sum_(i, t) R[i, k, t] Y[i, u, t] for k < dq (<= 3), mb a multiple of 8, mq a multiple of 4: register
   tiles of dq x 4 dot products (12 accumulators over 8 lanes of t), reduced with horizontal adds. */
static void dotsum_avx(int64_t dp, int64_t dq, const float *R, const float *Y, int64_t mq, int64_t mb, float *S) {
    memset(S, 0, sizeof(float) * (size_t)(dq * mq));
    for (int64_t i = 0; i < dp; i++) {
        const float *Ri = R + i * dq * mb;
        for (int64_t u = 0; u < mq; u += 4) {
            const float *y = Y + (i * mq + u) * mb;
            __m256 a[3][4];
            for (int k = 0; k < 3; k++)
                for (int v = 0; v < 4; v++) a[k][v] = _mm256_setzero_ps();
            for (int64_t t = 0; t < mb; t += 8) {
                const __m256 y0 = _mm256_loadu_ps(y + t), y1 = _mm256_loadu_ps(y + mb + t);
                const __m256 y2 = _mm256_loadu_ps(y + 2 * mb + t), y3 = _mm256_loadu_ps(y + 3 * mb + t);
                for (int k = 0; k < 3; k++) {
                    if (k >= dq) break;
                    const __m256 r = _mm256_loadu_ps(Ri + k * mb + t);
                    a[k][0] = _mm256_fmadd_ps(r, y0, a[k][0]); a[k][1] = _mm256_fmadd_ps(r, y1, a[k][1]);
                    a[k][2] = _mm256_fmadd_ps(r, y2, a[k][2]); a[k][3] = _mm256_fmadd_ps(r, y3, a[k][3]);
                }
            }
            for (int64_t k = 0; k < dq; k++) {
                float *s = S + k * mq + u;
                _mm_storeu_ps(s, _mm_add_ps(_mm_loadu_ps(s), hsum4(a[k][0], a[k][1], a[k][2], a[k][3])));
            }
        }
    }
}
#endif
"""


# The fused kernels, written once for a vector type: REAL, VEC (a 256-bit register of VL values), NR = 2 VL
# columns per register tile, and the intrinsics named V*; instantiated for float and double by _source().
_FUSED_TEMPLATE = r"""
/* ---- fused outer GEMM (AVX2/FMA): acc[z, k, w] = beta acc + sum_(u, v) T[z, k, u, v] Wp[(u, v), w],
   T[z, k, u, v] = sum_(i, j) M[k, j, i] P[z, u, i] Q[z, v, j] generated block by block in cache (never in
   memory). Wp: the weights [mp mq, mt] packed as [mt / NR][mp mq][NR]. Rows (z, k) in blocks of FO_ROWS, the
   sum over (u, v) in slices of FO_UB values of u; 6 x NR register tiles. */
#ifndef FO_ROWS
#define FO_ROWS 24
#endif
#ifndef FO_UB
#define FO_UB 4
#endif
#ifndef FO_KC
#define FO_KC 256
#endif

/* c[6][NR] (+)= A[r][0..kc) B[0..kc)[NR], A rows at a[r] */
static inline void fo_tile_SFX(int64_t kc, const REAL *const *a, const REAL *B, REAL *C, int64_t ldc, int first) {
    VEC c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (first) {
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = VZERO();
    } else {
        c00 = VLOAD(C); c01 = VLOAD(C + VL);
        c10 = VLOAD(C + ldc); c11 = VLOAD(C + ldc + VL);
        c20 = VLOAD(C + 2 * ldc); c21 = VLOAD(C + 2 * ldc + VL);
        c30 = VLOAD(C + 3 * ldc); c31 = VLOAD(C + 3 * ldc + VL);
        c40 = VLOAD(C + 4 * ldc); c41 = VLOAD(C + 4 * ldc + VL);
        c50 = VLOAD(C + 5 * ldc); c51 = VLOAD(C + 5 * ldc + VL);
    }
    const REAL *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
    for (int64_t k = 0; k < kc; k++) {
        const VEC b0 = VLOAD(B + NR * k), b1 = VLOAD(B + NR * k + VL);
        VEC x = VBCAST(a0 + k);
        c00 = VFMA(x, b0, c00); c01 = VFMA(x, b1, c01);
        x = VBCAST(a1 + k);
        c10 = VFMA(x, b0, c10); c11 = VFMA(x, b1, c11);
        x = VBCAST(a2 + k);
        c20 = VFMA(x, b0, c20); c21 = VFMA(x, b1, c21);
        x = VBCAST(a3 + k);
        c30 = VFMA(x, b0, c30); c31 = VFMA(x, b1, c31);
        x = VBCAST(a4 + k);
        c40 = VFMA(x, b0, c40); c41 = VFMA(x, b1, c41);
        x = VBCAST(a5 + k);
        c50 = VFMA(x, b0, c50); c51 = VFMA(x, b1, c51);
    }
    VSTORE(C, c00); VSTORE(C + VL, c01);
    VSTORE(C + ldc, c10); VSTORE(C + ldc + VL, c11);
    VSTORE(C + 2 * ldc, c20); VSTORE(C + 2 * ldc + VL, c21);
    VSTORE(C + 3 * ldc, c30); VSTORE(C + 3 * ldc + VL, c31);
    VSTORE(C + 4 * ldc, c40); VSTORE(C + 4 * ldc + VL, c41);
    VSTORE(C + 5 * ldc, c50); VSTORE(C + 5 * ldc + VL, c51);
}

int euclidnet_uvw_fused_outer_SFX(int64_t n, const REAL *P, int64_t psz, int64_t psu, int64_t psi, int64_t mp, int64_t dp,
                              const REAL *Q, int64_t qsz, int64_t qsu, int64_t qsi, int64_t mq, int64_t dq,
                              const REAL *M, int64_t dt, const REAL *Wp, int64_t mt,
                              double beta, REAL *acc, int64_t asz, int64_t ask) {
    if (mt % NR != 0 || dt > FO_ROWS) return 2;
    const int64_t zb = FO_ROWS / dt;            /* samples per row block */
    const int64_t rows_max = zb * dt, rows_pad = (rows_max + 5) / 6 * 6;
    const int64_t fo_ub = mq >= FO_KC / FO_UB ? FO_UB : FO_KC / mq;  /* values of u per slice: ~FO_KC columns */
    const int64_t kc_max = fo_ub * mq, K = mp * mq, nct = mt / NR;
    /* scratch: Qt [zb][dq][mq], Rf [zb][dt][dq][mp], Pt [dp][mp], A [rows_pad][kc_max], C [rows_pad][mt] */
    const size_t need = (size_t)(zb * dq * mq + zb * dt * dq * mp + dp * mp + rows_pad * kc_max + rows_pad * mt + 64);
    REAL *buf = (REAL *)aligned_alloc(64, sizeof(REAL) * ((need + 15) / 16 * 16));
    if (!buf) return 1;
    REAL *Qt = buf, *Rf = Qt + zb * dq * mq, *Pt = Rf + zb * dt * dq * mp;
    REAL *A = Pt + dp * mp, *C = A + rows_pad * kc_max;
    memset(A, 0, sizeof(REAL) * (size_t)(rows_pad * kc_max));  /* padding rows stay zero */
    for (int64_t z0 = 0; z0 < n; z0 += zb) {
        const int64_t nb = n - z0 < zb ? n - z0 : zb, rows = nb * dt, ntile = (rows + 5) / 6;
        for (int64_t s = 0; s < nb; s++) {
            const REAL *Qz = Q + (z0 + s) * qsz;
            REAL *qt = Qt + s * dq * mq;
            for (int64_t j = 0; j < dq; j++)
                for (int64_t v = 0; v < mq; v++) qt[j * mq + v] = Qz[v * qsu + j * qsi];
            contract_cols_SFX(P + (z0 + s) * psz, psu, psi, mp, dp, M, dt * dq, Pt, Rf + s * dt * dq * mp);
        }
        if (rows < rows_max)  /* a short last block: clear the rows its tiles read but do not fill */
            memset(A + rows * kc_max, 0, sizeof(REAL) * (size_t)((rows_pad - rows) * kc_max));
        for (int64_t u0 = 0; u0 < mp; u0 += fo_ub) {
            const int64_t ub = mp - u0 < fo_ub ? mp - u0 : fo_ub, kc = ub * mq;
            for (int64_t r = 0; r < rows; r++) {  /* A[r][(u - u0) mq + v] = T[z, k, u, v], r = (z, k) */
                const int64_t s = r / dt, k = r % dt;
                const REAL *qt = Qt + s * dq * mq, *rf = Rf + (s * dt + k) * dq * mp;
                REAL *restrict a = A + r * kc_max;
                for (int64_t u = 0; u < ub; u++) t_row_SFX(a + u * mq, rf + u0 + u, mp, qt, mq, dq);
            }
            for (int64_t t = 0; t < ntile; t++) {
                const REAL *ap[6];
                for (int r = 0; r < 6; r++) ap[r] = A + (t * 6 + r) * kc_max;
                for (int64_t ct = 0; ct < nct; ct++)
                    fo_tile_SFX(kc, ap, Wp + (ct * K + u0 * mq) * NR, C + t * 6 * mt + ct * NR, mt, u0 == 0);
            }
        }
        for (int64_t r = 0; r < rows; r++) {
            const int64_t s = r / dt, k = r % dt;
            REAL *restrict o = acc + (z0 + s) * asz + k * ask;
            const REAL *restrict c = C + r * mt;
            if (beta == 0.0) {
                memcpy(o, c, sizeof(REAL) * (size_t)mt);
            } else {
                const REAL b = (REAL)beta;
#pragma omp simd
                for (int64_t w = 0; w < mt; w++) o[w] = b * o[w] + c[w];
            }
        }
    }
    free(buf);
    return 0;
}

/* ---- fused 'first' order (AVX2/FMA): Y[(z, i), (v, w)] = sum_u P[z, u, i] W[u, (v, w)] computed
   NR columns at a time in registers (6-row tiles of whole samples: rows (z, i)) and contracted there:
     acc_t[z, k, w] (beta_t)+= sum_(i, v) R1[z, k, i, v] Y[z, i, v, w],  R1[z, k, i, v] = sum_j M1[k, i, j] Qs[z, v, j]
     acc_q[z, k, v] (beta_q)+= sum_(i, w) R2[z, i, k, w] Y[z, i, v, w],  R2[z, i, k, w] = sum_j M2[i, k, j] Ts[z, w, j]
   (the second only when M2 is given). Wp: W packed as [mq mt / NR][mp][NR]. Y never goes to memory. */
#ifndef FF_TILES
#define FF_TILES 4
#endif

static inline __attribute__((always_inline)) void ff_tile_SFX(
        const int SPT, const int DP, int64_t mp, const REAL *A, const REAL *B, int64_t ns, int64_t dt, int64_t dq,
        int64_t mq, int64_t mt, int64_t v, int64_t w0, const REAL *R1, int64_t r1s, const REAL *R2, int64_t r2s,
        REAL *acc_t, int64_t atz, int64_t atk, REAL *acc_q, int64_t aqz, int64_t aqk) {
    /* SPT samples of DP rows each: every index into c is a constant once the loops over s, i, r are unrolled,
       so the tile stays in registers */
    VEC c[6][2];
#pragma GCC unroll 6
    for (int r = 0; r < SPT * DP; r++) c[r][0] = c[r][1] = VZERO();
    for (int64_t u = 0; u < mp; u++) {
        const VEC b0 = VLOAD(B + NR * u), b1 = VLOAD(B + NR * u + VL);
#pragma GCC unroll 6
        for (int r = 0; r < SPT * DP; r++) {
            const VEC x = VBCAST(A + r * mp + u);
            c[r][0] = VFMA(x, b0, c[r][0]);
            c[r][1] = VFMA(x, b1, c[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int s = 0; s < SPT; s++) {  /* the samples of this tile: rows s DP + i */
        if (s < ns) {
            const REAL *r1 = R1 + s * r1s;
            for (int64_t k = 0; k < dt; k++) {
                VEC y0 = VZERO(), y1 = y0;
#pragma GCC unroll 5
                for (int i = 0; i < DP; i++) {
                    const VEC x = VBCAST(r1 + (k * DP + i) * mq + v);
                    y0 = VFMA(x, c[s * DP + i][0], y0);
                    y1 = VFMA(x, c[s * DP + i][1], y1);
                }
                REAL *o = acc_t + s * atz + k * atk + w0;
                VSTORE(o, VADD(VLOAD(o), y0));
                VSTORE(o + VL, VADD(VLOAD(o + VL), y1));
            }
            if (R2) {
                const REAL *r2 = R2 + s * r2s;
                for (int64_t k = 0; k < dq; k++) {
                    VEC y = VZERO();
#pragma GCC unroll 5
                    for (int i = 0; i < DP; i++) {
                        const REAL *rr = r2 + (i * dq + k) * mt + w0;
                        y = VFMA(VLOAD(rr), c[s * DP + i][0], y);
                        y = VFMA(VLOAD(rr + VL), c[s * DP + i][1], y);
                    }
                    acc_q[s * aqz + k * aqk + v] += VHSUM(y);
                }
            }
        }
    }
}

static void ff_scale_SFX(REAL *a, int64_t nb, int64_t asz, int64_t ask, int64_t d, int64_t m, double beta) {
    for (int64_t s = 0; s < nb; s++)
        for (int64_t k = 0; k < d; k++) {
            REAL *o = a + s * asz + k * ask;
            if (beta == 0.0) memset(o, 0, sizeof(REAL) * (size_t)m);
            else if (beta != 1.0)
                for (int64_t x = 0; x < m; x++) o[x] *= (REAL)beta;
        }
}

int euclidnet_uvw_fused_first_SFX(int64_t n, const REAL *P, int64_t psz, int64_t psu, int64_t psi, int64_t mp, int64_t dp,
                              const REAL *Qs, int64_t qsz, int64_t qsu, int64_t qsi, int64_t mq, int64_t dq,
                              const REAL *Ts, int64_t tsz, int64_t tsu, int64_t tsi, int64_t mt, int64_t dt,
                              const REAL *M1, const REAL *M2, const REAL *Wp,
                              double beta_t, REAL *acc_t, int64_t atz, int64_t atk,
                              double beta_q, REAL *acc_q, int64_t aqz, int64_t aqk) {
    if (mt % NR != 0 || !(dp == 1 || dp == 3 || dp == 5)) return 2;
    const int64_t spt = dp == 1 ? 6 : 6 / dp, zb = spt * FF_TILES, nwt = mt / NR;
    const int64_t r1s = dt * dp * mq, r2s = dp * dq * mt;
    const int64_t dmax = dq > dt ? dq : dt, mmax = mq > mt ? mq : mt;
    const size_t need = (size_t)(zb * dp * mp + 6 * mp + zb * r1s + (M2 ? zb * r2s : 0) + dmax * mmax + 64);
    REAL *buf = (REAL *)aligned_alloc(64, sizeof(REAL) * ((need + 15) / 16 * 16));
    if (!buf) return 1;
    REAL *A = buf, *R1 = A + (zb * dp + 6) * mp, *R2 = R1 + zb * r1s, *X = R2 + (M2 ? zb * r2s : 0);
    for (int64_t z0 = 0; z0 < n; z0 += zb) {
        const int64_t nb = n - z0 < zb ? n - z0 : zb;
        memset(A, 0, sizeof(REAL) * (size_t)((zb * dp + 6) * mp));  /* rows past the last sample stay zero */
        for (int64_t s = 0; s < nb; s++) {
            const REAL *Pz = P + (z0 + s) * psz;
            for (int64_t i = 0; i < dp; i++)
                for (int64_t u = 0; u < mp; u++) A[(s * dp + i) * mp + u] = Pz[u * psu + i * psi];
            contract_cols_SFX(Qs + (z0 + s) * qsz, qsu, qsi, mq, dq, M1, dt * dp, X, R1 + s * r1s);
            if (M2) contract_cols_SFX(Ts + (z0 + s) * tsz, tsu, tsi, mt, dt, M2, dp * dq, X, R2 + s * r2s);
        }
        REAL *at = acc_t + z0 * atz, *aq = M2 ? acc_q + z0 * aqz : NULL;
        ff_scale_SFX(at, nb, atz, atk, dt, mt, beta_t);
        if (M2) ff_scale_SFX(aq, nb, aqz, aqk, dq, mq, beta_q);
        for (int64_t ct = 0; ct < mq * nwt; ct++) {
            const int64_t v = ct / nwt, w0 = (ct % nwt) * NR;
            const REAL *B = Wp + ct * mp * NR;
            for (int64_t s0 = 0; s0 < nb; s0 += spt) {
                const int64_t ns = nb - s0 < spt ? nb - s0 : spt;
                const REAL *As = A + s0 * dp * mp;
                const REAL *r1 = R1 + s0 * r1s, *r2 = M2 ? R2 + s0 * r2s : NULL;
                REAL *ot = at + s0 * atz, *oq = M2 ? aq + s0 * aqz : NULL;
                if (dp == 1) ff_tile_SFX(6, 1, mp, As, B, ns, dt, dq, mq, mt, v, w0, r1, r1s, r2, r2s, ot, atz, atk, oq, aqz, aqk);
                else if (dp == 3) ff_tile_SFX(2, 3, mp, As, B, ns, dt, dq, mq, mt, v, w0, r1, r1s, r2, r2s, ot, atz, atk, oq, aqz, aqk);
                else ff_tile_SFX(1, 5, mp, As, B, ns, dt, dq, mq, mt, v, w0, r1, r1s, r2, r2s, ot, atz, atk, oq, aqz, aqk);
            }
        }
    }
    free(buf);
    return 0;
}

/* ---- fused weight gradient (AVX2/FMA): G[u, (a, b)] += sum_(z, k) S[z, u, k] T[z, k, a, b],
   T[z, k, a, b] = sum_(i, j) M[k, j, i] P[z, a, i] Q[z, b, j] generated in cache block by block: rows (z, k) in
   blocks of about FW_ROWS, columns in slices of FW_COLS (whole values of a), packed as [NR-column tile][row][NR];
   register tiles of up to 6 rows u of G by NR columns. G: [ms][mp mq] with row stride ldg. */
#ifndef FW_ROWS
#define FW_ROWS 384
#endif
#ifndef FW_COLS
#define FW_COLS 256
#endif

static inline __attribute__((always_inline)) void fw_tile_SFX(const int MR, int64_t kr, const REAL *St, int64_t lds,
                                                          const REAL *B, REAL *G, int64_t ldg) {
    VEC c[6][2];
    for (int r = 0; r < MR; r++) {
        c[r][0] = VLOAD(G + r * ldg);
        c[r][1] = VLOAD(G + r * ldg + VL);
    }
    for (int64_t k = 0; k < kr; k++) {
        const VEC b0 = VLOAD(B + NR * k), b1 = VLOAD(B + NR * k + VL);
        const REAL *a = St + k * lds;
        for (int r = 0; r < MR; r++) {
            const VEC x = VBCAST(a + r);
            c[r][0] = VFMA(x, b0, c[r][0]);
            c[r][1] = VFMA(x, b1, c[r][1]);
        }
    }
    for (int r = 0; r < MR; r++) {
        VSTORE(G + r * ldg, c[r][0]);
        VSTORE(G + r * ldg + VL, c[r][1]);
    }
}

int euclidnet_uvw_fused_wgrad_SFX(int64_t n, const REAL *S, int64_t ssz, int64_t ssu, int64_t ssi, int64_t ms, int64_t ds,
                              const REAL *P, int64_t psz, int64_t psu, int64_t psi, int64_t mp, int64_t dp,
                              const REAL *Q, int64_t qsz, int64_t qsu, int64_t qsi, int64_t mq, int64_t dq,
                              const REAL *M, REAL *G, int64_t ldg) {
    if (mq % NR != 0 || ds > FW_ROWS) return 2;
    const int64_t zb = FW_ROWS / ds, rows_max = zb * ds;
    const int64_t ua = mq >= FW_COLS ? 1 : FW_COLS / mq;  /* values of a per column slice */
    const int64_t ntq = mq / NR;                          /* NR-column tiles per value of a */
    const int64_t lds = ms + 8;
    const size_t need = (size_t)(zb * dq * mq + zb * ds * dq * mp + dp * mp + rows_max * lds + ua * mq * rows_max + 64);
    REAL *buf = (REAL *)aligned_alloc(64, sizeof(REAL) * ((need + 15) / 16 * 16));
    if (!buf) return 1;
    REAL *Tp = buf, *Qt = Tp + ua * mq * rows_max, *Rf = Qt + zb * dq * mq, *Pt = Rf + zb * ds * dq * mp;
    REAL *St = Pt + dp * mp;
    for (int64_t z0 = 0; z0 < n; z0 += zb) {
        const int64_t nb = n - z0 < zb ? n - z0 : zb, rows = nb * ds;
        for (int64_t s = 0; s < nb; s++) {
            const REAL *Qz = Q + (z0 + s) * qsz, *Sz = S + (z0 + s) * ssz;
            REAL *qt = Qt + s * dq * mq;
            for (int64_t j = 0; j < dq; j++)
                for (int64_t v = 0; v < mq; v++) qt[j * mq + v] = Qz[v * qsu + j * qsi];
            contract_cols_SFX(P + (z0 + s) * psz, psu, psi, mp, dp, M, ds * dq, Pt, Rf + s * ds * dq * mp);
            for (int64_t k = 0; k < ds; k++)
                for (int64_t u = 0; u < ms; u++) St[(s * ds + k) * lds + u] = Sz[u * ssu + k * ssi];
        }
        for (int64_t a0 = 0; a0 < mp; a0 += ua) {
            const int64_t na = mp - a0 < ua ? mp - a0 : ua;
            for (int64_t r = 0; r < rows; r++) {  /* Tp[(a - a0) ntq + tile][r][NR] = T[z, k, a, b], r = (z, k) */
                const int64_t s = r / ds, k = r % ds;
                const REAL *qt = Qt + s * dq * mq, *rf = Rf + (s * ds + k) * dq * mp;
                for (int64_t a = 0; a < na; a++) {
                    REAL row[mq] __attribute__((aligned(32)));
                    t_row_SFX(row, rf + a0 + a, mp, qt, mq, dq);
                    for (int64_t t = 0; t < ntq; t++)
                        memcpy(Tp + ((a * ntq + t) * rows + r) * NR, row + NR * t, NR * sizeof(REAL));
                }
            }
            for (int64_t t = 0; t < na * ntq; t++) {
                const REAL *B = Tp + t * rows * NR;
                REAL *Gt = G + a0 * mq + t * NR;
                int64_t u = 0;
                for (; u + 6 <= ms; u += 6) fw_tile_SFX(6, rows, St + u, lds, B, Gt + u * ldg, ldg);
                switch (ms - u) {
                    case 5: fw_tile_SFX(5, rows, St + u, lds, B, Gt + u * ldg, ldg); break;
                    case 4: fw_tile_SFX(4, rows, St + u, lds, B, Gt + u * ldg, ldg); break;
                    case 3: fw_tile_SFX(3, rows, St + u, lds, B, Gt + u * ldg, ldg); break;
                    case 2: fw_tile_SFX(2, rows, St + u, lds, B, Gt + u * ldg, ldg); break;
                    case 1: fw_tile_SFX(1, rows, St + u, lds, B, Gt + u * ldg, ldg); break;
                    default: break;
                }
            }
        }
    }
    free(buf);
    return 0;
}
"""

_VECTOR_TYPES = {
    "f32": {"REAL": "float", "VEC": "__m256", "VL": "8", "NR": "16", "VZERO": "_mm256_setzero_ps",
            "VLOAD": "_mm256_loadu_ps", "VSTORE": "_mm256_storeu_ps", "VBCAST": "_mm256_broadcast_ss",
            "VFMA": "_mm256_fmadd_ps", "VADD": "_mm256_add_ps", "VHSUM": "hsum_f32"},
    "f64": {"REAL": "double", "VEC": "__m256d", "VL": "4", "NR": "8", "VZERO": "_mm256_setzero_pd",
            "VLOAD": "_mm256_loadu_pd", "VSTORE": "_mm256_storeu_pd", "VBCAST": "_mm256_broadcast_sd",
            "VFMA": "_mm256_fmadd_pd", "VADD": "_mm256_add_pd", "VHSUM": "hsum_f64"},
}  # fmt: skip


def _fused_source() -> str:
    parts = ["#if UVW_FUSED\n"]
    for sfx, names in _VECTOR_TYPES.items():
        text = _FUSED_TEMPLATE.replace("SFX", sfx)
        for name, value in names.items():
            text = re.sub(rf"\b{name}\b", value, text)
        parts.append(text)
    parts.append("#endif\n")
    return "".join(parts)


def _source() -> str:
    head = "#include <stdint.h>\n#include <stdlib.h>\n#include <string.h>\n" + _AVX
    body = "".join(_BODY.replace("REAL", real).replace("SFX", sfx) for real, sfx in (("float", "f32"), ("double", "f64")))
    has = "int euclidnet_uvw_has_fused(void) { return UVW_FUSED; }\n"
    return head + body + _fused_source() + has


def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr, dbl = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double
    for sfx in ("f32", "f64"):
        f = getattr(lib, f"euclidnet_uvw_outer_{sfx}")
        f.argtypes = [i64, ptr, i64, i64, i64, i64, i64, ptr, i64, i64, i64, i64, i64, ptr, i64, ptr]
        f.restype = ctypes.c_int
        for name in ("rowmat", "dotsum"):
            f = getattr(lib, f"euclidnet_uvw_{name}_{sfx}")
            f.argtypes = [i64, ptr, i64, i64, i64, i64, i64, ptr, i64, i64, ptr, i64, i64, dbl, ptr, i64, i64]
            f.restype = ctypes.c_int


    lib.euclidnet_uvw_has_fused.argtypes = []
    lib.euclidnet_uvw_has_fused.restype = ctypes.c_int
    if lib.euclidnet_uvw_has_fused():
        for sfx in ("f32", "f64"):
            f = getattr(lib, f"euclidnet_uvw_fused_outer_{sfx}")
            f.argtypes = [i64, ptr, i64, i64, i64, i64, i64, ptr, i64, i64, i64, i64, i64, ptr, i64, ptr, i64, dbl, ptr, i64, i64]
            f.restype = ctypes.c_int
            f = getattr(lib, f"euclidnet_uvw_fused_first_{sfx}")
            f.argtypes = [i64] + [ptr, i64, i64, i64, i64, i64] * 3 + [ptr, ptr, ptr, dbl, ptr, i64, i64, dbl, ptr, i64, i64]
            f.restype = ctypes.c_int
            f = getattr(lib, f"euclidnet_uvw_fused_wgrad_{sfx}")
            f.argtypes = [i64] + [ptr, i64, i64, i64, i64, i64] * 3 + [ptr, ptr, i64]
            f.restype = ctypes.c_int


_LIBRARY = LazyLibrary("euclidnet_uvw_small", _source, _declare)
_SFX = {torch.float32: "f32", torch.float64: "f64"}


def small_kernel_available() -> bool:
    """Whether the compiled kernels can be used (builds them on first call)."""
    return _LIBRARY.get() is not None


def small_kernel_error() -> str | None:
    """Why the kernels are unavailable (``None`` if available or not yet tried)."""
    return _LIBRARY.error


#: Columns of the fused kernels' register tiles (two AVX vectors); output multiplicities must be multiples.
FUSED_COLUMNS = {torch.float32: 16, torch.float64: 8}


def fused_available() -> bool:
    """Whether the fused GEMM kernels (float32 and float64, AVX2/FMA builds only) can be used."""
    lib = _LIBRARY.get()
    return lib is not None and bool(lib.euclidnet_uvw_has_fused())


def pack_weights(W: torch.Tensor) -> torch.Tensor:
    """``W [K, mt]`` (``mt`` a multiple of ``nr = FUSED_COLUMNS[W.dtype]``) as the panels ``[mt / nr, K, nr]`` the
    fused kernels read."""
    K, mt = W.shape
    nr = FUSED_COLUMNS[W.dtype]
    out = torch.empty(mt // nr, K, nr, dtype=W.dtype)  # a fresh buffer (contiguous() may return a view)
    out.copy_(W.reshape(K, mt // nr, nr).transpose(0, 1))
    return out


def fused_outer(
    P: torch.Tensor, Q: torch.Tensor, M: torch.Tensor, Wp: torch.Tensor, acc: torch.Tensor, beta: float
) -> None:
    """``acc[z, k, w] = beta acc + sum_(u, v) T[z, k, u, v] W[(u, v), w]``, ``T`` as in :func:`outer`.

    ``Wp = pack_weights(W)`` with ``W [mp mq, mt]``; ``acc [n, dt, mt]`` with unit last stride. ``T`` is formed a
    few rows at a time in cache and multiplied there (6 x nr register tiles), never written to memory.
    """
    n, mp, dp = P.shape
    _, mq, dq = Q.shape
    dt = M.shape[0]
    if n == 0:
        return
    _operands("fused_outer", P, Q, M, Wp, acc)
    nr = FUSED_COLUMNS[P.dtype]
    mt = Wp.shape[0] * nr
    if Wp.shape[2] != nr or acc.shape[2] != mt:
        raise ValueError(f"fused_outer: packed weights {tuple(Wp.shape)} need mt a multiple of {nr}, acc {tuple(acc.shape)}")
    rc = _fn("fused_outer", P.dtype)(
        n, P.data_ptr(), *P.stride(), mp, dp, Q.data_ptr(), *Q.stride(), mq, dq, M.data_ptr(), dt,
        Wp.data_ptr(), mt, float(beta), acc.data_ptr(), acc.stride(0), acc.stride(1),
    )  # fmt: skip
    if rc == 2:
        raise ValueError(f"fused_outer: needs mt a multiple of {nr} and dt <= 24, got mt={mt}, dt={dt}")
    _check(rc, "fused_outer")


def fused_first(
    P: torch.Tensor,
    Qs: torch.Tensor,
    M1: torch.Tensor,
    Wp: torch.Tensor,
    acc_t: torch.Tensor,
    beta_t: float,
    Ts: torch.Tensor | None = None,
    M2: torch.Tensor | None = None,
    acc_q: torch.Tensor | None = None,
    beta_q: float = 0.0,
) -> None:
    """The 'first' order with its contractions fused: ``Y[z, i, v, w] = sum_u P[z, u, i] W[u, (v, w)]``
    in registers, then ``acc_t[z, k, w] (beta_t)+= sum_(i, v) R1[z, k, i, v] Y[z, i, v, w]`` with ``R1 = sum_j M1[k, i,
    j] Qs[z, v, j]`` and, when ``M2`` is given, ``acc_q[z, k, v] (beta_q)+= sum_(i, w) R2[z, i, k, w] Y[z, i, v, w]``
    with ``R2 = sum_j M2[i, k, j] Ts[z, w, j]``.

    Shapes: ``P [n, mp, dp]`` (``dp`` 1, 3 or 5), ``Qs [n, mq, dq]``, ``Ts [n, mt, dt]`` (any strides),
    ``M1 [dt, dp, dq]``, ``M2 [dp, dq, dt]``, ``Wp = pack_weights(W [mp, mq mt])`` (``mt`` a multiple of ``FUSED_COLUMNS``),
    ``acc_t [n, dt, mt]``, ``acc_q [n, dq, mq]`` (unit last strides).
    """
    n, mp, dp = P.shape
    _, mq, dq = Qs.shape
    dt = M1.shape[0]
    mt = acc_t.shape[2]
    if n == 0:
        return
    second = M2 is not None
    _operands("fused_first", P, Qs, M1, Wp, acc_t, *((Ts, M2, acc_q) if second else ()))
    t = Ts if second else P
    q = acc_q if second else acc_t
    rc = _fn("fused_first", P.dtype)(
        n, P.data_ptr(), *P.stride(), mp, dp, Qs.data_ptr(), *Qs.stride(), mq, dq, t.data_ptr(), *t.stride(), mt, dt,
        M1.data_ptr(), M2.data_ptr() if second else None, Wp.data_ptr(), float(beta_t), acc_t.data_ptr(),
        acc_t.stride(0), acc_t.stride(1), float(beta_q), q.data_ptr(), q.stride(0), q.stride(1),
    )  # fmt: skip
    if rc == 2:
        nr = FUSED_COLUMNS[P.dtype]
        raise ValueError(f"fused_first: needs mt a multiple of {nr} and dp in (1, 3, 5), got mt={mt}, dp={dp}")
    _check(rc, "fused_first")


def fused_wgrad(S: torch.Tensor, P: torch.Tensor, Q: torch.Tensor, M: torch.Tensor, G: torch.Tensor) -> None:
    """``G[u, (a, b)] += sum_(z, k) S[z, u, k] T[z, k, a, b]``, ``T[z, k, a, b] = sum M[k, j, i] P[z, a, i] Q[z, b, j]``
    (``Q``'s multiplicity a multiple of ``FUSED_COLUMNS[dtype]``).

    Shapes: ``S [n, ms, ds]``, ``P [n, mp, dp]``, ``Q [n, mq, dq]`` (any strides), ``M [ds, dq, dp]`` contiguous,
    ``G [ms, mp mq]`` with unit column stride. ``T`` is formed in cache a block at a time, never in memory.
    """
    n, ms, ds = S.shape
    _, mp, dp = P.shape
    _, mq, dq = Q.shape
    if n == 0:
        return
    _operands("fused_wgrad", S, P, Q, M, G)
    if G.stride(1) != 1:
        raise ValueError("fused_wgrad: G needs a unit column stride")
    rc = _fn("fused_wgrad", S.dtype)(
        n, S.data_ptr(), *S.stride(), ms, ds, P.data_ptr(), *P.stride(), mp, dp, Q.data_ptr(), *Q.stride(), mq, dq,
        M.data_ptr(), G.data_ptr(), G.stride(0),
    )  # fmt: skip
    if rc == 2:
        nr = FUSED_COLUMNS[S.dtype]
        raise ValueError(f"fused_wgrad: needs mq a multiple of {nr} and ds <= 96, got mq={mq}, ds={ds}")
    _check(rc, "fused_wgrad")


def _fn(name: str, dtype: torch.dtype):  # noqa: ANN202 - a ctypes function
    lib = _LIBRARY.get()
    if lib is None:
        raise RuntimeError(f"uvw small-contraction kernels unavailable: {_LIBRARY.error}")
    return getattr(lib, f"euclidnet_uvw_{name}_{_SFX[dtype]}")


def _operands(name: str, *tensors: torch.Tensor) -> None:
    """One dtype (float32 or float64) for all; the kernels read the buffers with that element type."""
    dtype = tensors[0].dtype
    for t in tensors:
        if t.dtype != dtype or dtype not in _SFX or t.device.type != "cpu":
            raise TypeError(f"{name}: expected CPU tensors of one dtype, float32 or float64; got {t.dtype} on {t.device}")


def _check(rc: int, name: str) -> None:
    if rc != 0:
        raise MemoryError(f"euclidnet_uvw_{name}: out of memory for its per-sample scratch")


def outer(P: torch.Tensor, Q: torch.Tensor, M: torch.Tensor, T: torch.Tensor) -> None:
    """``T[z, k, u, v] = sum_(i, j) M[k, j, i] P[z, u, i] Q[z, v, j]``.

    Shapes: ``P [n, mp, dp]``, ``Q [n, mq, dq]`` (any strides), ``M [dt, dq, dp]`` contiguous, ``T`` contiguous
    with ``n dt mp mq`` elements; all of one dtype.
    """
    n, mp, dp = P.shape
    _, mq, dq = Q.shape
    dt = M.shape[0]
    if n == 0:
        return
    _operands("outer", P, Q, M, T)
    if not (M.is_contiguous() and T.is_contiguous() and T.numel() == n * dt * mp * mq):
        raise ValueError("outer: M and T must be contiguous, T with n dt mp mq elements")
    rc = _fn("outer", P.dtype)(
        n, P.data_ptr(), *P.stride(), mp, dp, Q.data_ptr(), *Q.stride(), mq, dq, M.data_ptr(), dt, T.data_ptr()
    )
    _check(rc, "outer")


def rowmat(H: torch.Tensor, M: torch.Tensor, Y: torch.Tensor, acc: torch.Tensor, beta: float) -> None:
    """``acc[z, k, w] = beta acc + sum_(f, u) R[z, k, f, u] Y[z, f u, w]``, ``R = sum_i M[k, f, i] H[z, u, i]``.

    Shapes: ``H [n, mh, dh]`` (any strides), ``M [dt, df, dh]`` contiguous, ``Y [n, df mh, mt]`` contiguous per
    sample, ``acc [n, dt, mt]`` with unit last stride.
    """
    n, mh, dh = H.shape
    dt, df, _ = M.shape
    mt = Y.shape[2]
    if n == 0:
        return
    _operands("rowmat", H, M, Y, acc)
    if not (M.is_contiguous() and Y[0].is_contiguous() and acc.stride(2) == 1 and Y.shape[1] == df * mh):
        raise ValueError("rowmat: M contiguous, Y [n, df mh, mt] contiguous per sample, acc unit last stride")
    rc = _fn("rowmat", H.dtype)(
        n, H.data_ptr(), *H.stride(), mh, dh, M.data_ptr(), dt, df, Y.data_ptr(), Y.stride(0), mt,
        float(beta), acc.data_ptr(), acc.stride(0), acc.stride(1),
    )  # fmt: skip
    _check(rc, "rowmat")


def dotsum(B: torch.Tensor, M: torch.Tensor, Y: torch.Tensor, acc: torch.Tensor, beta: float) -> None:
    """``acc[z, k, u] = beta acc + sum_(i, t) R[z, i, k, t] Y[z, i, u, t]``, ``R = sum_s M[i, k, s] B[z, t, s]``.

    Shapes: ``B [n, mb, db]`` (any strides), ``M [dp, dq, db]`` contiguous, ``Y [n, dp mq, mb]`` contiguous per
    sample, ``acc [n, dq, mq]`` with unit last stride.
    """
    n, mb, db = B.shape
    dp, dq, _ = M.shape
    mq = Y.shape[1] // dp
    if n == 0:
        return
    _operands("dotsum", B, M, Y, acc)
    if not (M.is_contiguous() and Y[0].is_contiguous() and acc.stride(2) == 1 and Y.shape[2] == mb):
        raise ValueError("dotsum: M contiguous, Y [n, dp mq, mb] contiguous per sample, acc unit last stride")
    rc = _fn("dotsum", B.dtype)(
        n, B.data_ptr(), *B.stride(), mb, db, M.data_ptr(), dp, dq, Y.data_ptr(), Y.stride(0), mq,
        float(beta), acc.data_ptr(), acc.stride(0), acc.stride(1),
    )  # fmt: skip
    _check(rc, "dotsum")
