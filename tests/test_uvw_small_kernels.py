"""The compiled per-sample contractions and fused GEMMs of the shared-weight 'uvw' tensor product
(euclidnet.kernels._uvw_small) against float64 einsum references."""

from __future__ import annotations

import pytest
import torch

from euclidnet.kernels import _uvw_small as K

pytestmark = pytest.mark.skipif(not K.small_kernel_available(), reason="no C compiler: kernels unavailable")

# (d of the first operand, second, third; multiplicities ...): ones and threes as in l <= 1 paths, and odd sizes
DIMS = [(3, 3, 3), (1, 3, 3), (3, 1, 3), (3, 3, 1), (1, 1, 1), (5, 3, 7), (3, 5, 3)]
MULS = [(5, 9, 6, 11, 10), (64, 64, 64, 64, 64), (7, 8, 16, 32, 24), (3, 12, 5, 40, 16)]


def _strided(n: int, mul: int, d: int, dtype: torch.dtype, g: torch.Generator, transposed: bool) -> torch.Tensor:
    """A ``[n, mul, d]`` operand that is a view with non-trivial strides (a column slice, or transposed)."""
    if transposed:
        return torch.randn(n, d, mul, dtype=dtype, generator=g).transpose(1, 2)
    return torch.randn(n, mul * d + 7, dtype=dtype, generator=g)[:, 3 : 3 + mul * d].view(n, mul, d)


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.double() - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("muls", MULS)
@pytest.mark.parametrize("dims", DIMS)
def test_small_contractions(dims, muls, dtype):
    da, db, dc = dims
    mp, mq, mh, mt, mb = muls
    n = 7
    tol = 1e-13 if dtype == torch.float64 else 2e-5
    g = torch.Generator().manual_seed(hash((dims, muls)) % 1000)
    D = torch.float64

    P, Q = _strided(n, mp, da, dtype, g, False), _strided(n, mq, db, dtype, g, True)
    M = torch.randn(dc, db, da, dtype=dtype, generator=g)
    T = torch.empty(n, dc, mp, mq, dtype=dtype)
    K.outer(P, Q, M, T)
    assert _rel(T, torch.einsum("kji,zui,zvj->zkuv", M.to(D), P.to(D), Q.to(D))) <= tol

    H = _strided(n, mh, da, dtype, g, True)
    M = torch.randn(dc, db, da, dtype=dtype, generator=g)
    Y = torch.randn(n, db * mh, mt, dtype=dtype, generator=g)
    for beta in (0.0, 0.5):
        acc = torch.randn(n, dc, mt, dtype=dtype, generator=g)
        ref = torch.einsum("kfi,zui,zfuw->zkw", M.to(D), H.to(D), Y.view(n, db, mh, mt).to(D))
        ref = ref + beta * acc.to(D)
        K.rowmat(H, M, Y, acc, beta)
        assert _rel(acc, ref) <= tol

    B = _strided(n, mb, dc, dtype, g, False)
    M = torch.randn(da, db, dc, dtype=dtype, generator=g)
    Y = torch.randn(n, da * mq, mb, dtype=dtype, generator=g)
    for beta in (0.0, 1.0):
        acc = torch.randn(n, db, mq, dtype=dtype, generator=g)
        ref = torch.einsum("iks,zts,ziut->zku", M.to(D), B.to(D), Y.view(n, da, mq, mb).to(D)) + beta * acc.to(D)
        K.dotsum(B, M, Y, acc, beta)
        assert _rel(acc, ref) <= tol


fused = pytest.mark.skipif(not K.fused_available(), reason="fused kernels need an AVX2/FMA build")


@fused
@pytest.mark.parametrize(
    "dp,dq,dt,mp,mq,mt,n",
    [(3, 3, 3, 64, 64, 64, 13), (1, 1, 1, 64, 64, 64, 31), (3, 3, 1, 64, 64, 64, 7), (1, 3, 3, 64, 64, 64, 9),
     (3, 1, 3, 5, 7, 32, 11), (5, 3, 7, 6, 9, 16, 5), (3, 3, 5, 2, 3, 48, 1)],
)  # fmt: skip
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_outer(dp, dq, dt, mp, mq, mt, n, dtype):
    """Row blocks of 24 rows (8 samples of d = 3): full, ragged and single-sample ones; 6-row tiles with padding."""
    g = torch.Generator().manual_seed(n)
    P, Q = _strided(n, mp, dp, dtype, g, False), _strided(n, mq, dq, dtype, g, True)
    M = torch.randn(dt, dq, dp, generator=g, dtype=dtype)
    W = torch.randn(mp * mq, mt, generator=g, dtype=dtype)
    D = torch.float64
    T = torch.einsum("kji,zui,zvj->zkuv", M.to(D), P.to(D), Q.to(D)).reshape(n, dt, mp * mq)
    for beta in (0.0, 0.5):
        acc = torch.randn(n, dt, mt, generator=g, dtype=dtype)
        ref = T @ W.to(D) + beta * acc.to(D)
        K.fused_outer(P, Q, M, K.pack_weights(W), acc, beta)
        assert _rel(acc, ref) <= (1e-5 if dtype == torch.float32 else 1e-13)


@fused
@pytest.mark.parametrize(
    "ds,dp,dq,ms,mp,mq,n",
    [(3, 3, 3, 64, 64, 64, 130), (1, 1, 1, 64, 64, 64, 400), (1, 3, 3, 64, 64, 64, 97), (3, 1, 3, 64, 64, 64, 33),
     (3, 3, 1, 5, 7, 32, 11), (7, 5, 3, 13, 9, 16, 5), (3, 3, 3, 1, 3, 48, 40), (5, 3, 3, 2, 70, 16, 3)],
)  # fmt: skip
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_wgrad(ds, dp, dq, ms, mp, mq, n, dtype):
    """Every remainder of the 6-row register tiles (ms = 1, 2, 5, 13, 64), several row blocks and column slices."""
    g = torch.Generator().manual_seed(n)
    S, P = _strided(n, ms, ds, dtype, g, False), _strided(n, mp, dp, dtype, g, True)
    Q = _strided(n, mq, dq, dtype, g, False)
    M = torch.randn(ds, dq, dp, generator=g, dtype=dtype)
    G = torch.randn(ms, mp * mq, generator=g, dtype=dtype)
    D = torch.float64
    T = torch.einsum("kji,zai,zbj->zkab", M.to(D), P.to(D), Q.to(D))
    ref = G.to(D) + torch.einsum("zuk,zkab->uab", S.to(D), T).reshape(ms, mp * mq)
    K.fused_wgrad(S, P, Q, M, G)
    assert _rel(G, ref) <= (1e-5 if dtype == torch.float32 else 1e-13)


@fused
@pytest.mark.parametrize(
    "dp,dq,dt,mp,mq,mt,n",
    [(3, 3, 3, 64, 64, 64, 13), (1, 1, 1, 64, 64, 64, 31), (3, 3, 1, 64, 64, 64, 7), (1, 3, 3, 64, 64, 64, 9),
     (3, 1, 3, 5, 7, 32, 11), (5, 3, 7, 6, 9, 16, 5), (5, 5, 5, 3, 2, 48, 3), (1, 3, 3, 2, 3, 16, 1)],
)  # fmt: skip
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_first(dp, dq, dt, mp, mq, mt, n, dtype):
    """Tiles of whole samples (6 of d = 1, 2 of d = 3, 1 of d = 5) with partial last tiles; one target or two;
    beta 0 (the accumulators' contents are ignored), 1 and 0.5."""
    g = torch.Generator().manual_seed(n)
    D = torch.float64
    P, Qs, Ts = (_strided(n, m, d, dtype, g, tr) for m, d, tr in ((mp, dp, True), (mq, dq, False), (mt, dt, True)))
    M1 = torch.randn(dt, dp, dq, generator=g, dtype=dtype)
    M2 = torch.randn(dp, dq, dt, generator=g, dtype=dtype)
    W = torch.randn(mp, mq * mt, generator=g, dtype=dtype)
    Y = torch.einsum("zui,uvw->zivw", P.to(D), W.to(D).view(mp, mq, mt))
    R1 = torch.einsum("kij,zvj->zkiv", M1.to(D), Qs.to(D))
    R2 = torch.einsum("ikj,zwj->zikw", M2.to(D), Ts.to(D))
    tol = 1e-5 if dtype == torch.float32 else 1e-13
    for beta_t, beta_q in ((0.0, 0.0), (1.0, 1.0), (0.5, 0.0)):
        acc_t = torch.randn(n, dt, mt, generator=g, dtype=dtype)
        acc_q = torch.randn(n, dq, mq, generator=g, dtype=dtype)
        ref_t = torch.einsum("zkiv,zivw->zkw", R1, Y) + (beta_t * acc_t.to(D) if beta_t else 0)
        ref_q = torch.einsum("zikw,zivw->zkv", R2, Y) + (beta_q * acc_q.to(D) if beta_q else 0)
        if beta_t == 0.0:
            acc_t.fill_(float("nan"))  # not read
        K.fused_first(P, Qs, M1, K.pack_weights(W), acc_t, beta_t, Ts, M2, acc_q, beta_q)
        assert _rel(acc_t, ref_t) <= tol and _rel(acc_q, ref_q) <= tol
        only = torch.randn(n, dt, mt, generator=g, dtype=dtype)
        ref = torch.einsum("zkiv,zivw->zkw", R1, Y) + beta_t * only.to(D)
        K.fused_first(P, Qs, M1, K.pack_weights(W), only, beta_t)
        assert _rel(only, ref) <= tol


@fused
def test_fused_rejects_unsupported_input():
    f32 = {"dtype": torch.float32}
    P, M = torch.randn(2, 4, 3, **f32), torch.randn(3, 3, 3, **f32)
    with pytest.raises(ValueError, match="multiple of 16"):
        K.fused_outer(P, P, M, torch.randn(1, 12, 12, **f32), torch.empty(2, 3, 12, **f32), 0.0)
    with pytest.raises(ValueError, match="mq=4"):
        K.fused_wgrad(P, P, P, M, torch.zeros(4, 16, **f32))
    with pytest.raises(TypeError, match="one dtype"):
        K.fused_wgrad(P, P, P, M.double(), torch.zeros(4, 16, **f32))


def test_kernel_status_lists_them(monkeypatch):
    from euclidnet import kernels

    status = kernels.kernel_status()
    assert status["uvw_shared"].startswith("available") and "linear" in status
    monkeypatch.setenv("EUCLIDNET_DISABLE_KERNELS", "1")
    assert all(v.startswith("disabled") for v in kernels.kernel_status().values())
