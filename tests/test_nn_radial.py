"""Tests for euclidnet.nn radial functions: soft_one_hot_linspace, soft_unit_step, Bessel basis, cut-offs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from euclidnet import nn
from euclidnet.o3 import rand_matrix

F64 = torch.float64


# ---------------------------------------------------------------------------------------------------------
# soft_one_hot_linspace / soft_unit_step
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("basis", nn.BASES)
@pytest.mark.parametrize("cutoff", [True, False])
def test_soft_one_hot_linspace_matches_e3nn(basis, cutoff):
    e3nn_math = pytest.importorskip("e3nn.math")
    x = torch.linspace(-1.3, 2.7, 401, dtype=F64)  # step 0.01: hits start=-0.5 and end=1.5 exactly
    x = x[(x - (-0.5)).abs() > 1e-9] if basis == "bessel" else x  # e3nn's bessel is NaN (0/0) at x = start
    for number in (1, 5) if cutoff else (2, 5):  # e3nn needs number >= 2 without cutoff
        ours = nn.soft_one_hot_linspace(x, -0.5, 1.5, number, basis=basis, cutoff=cutoff)
        theirs = e3nn_math.soft_one_hot_linspace(x, -0.5, 1.5, number, basis=basis, cutoff=cutoff)
        assert ours.shape == (x.shape[0], number)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)
        x32 = x.to(torch.float32)
        ours32 = nn.soft_one_hot_linspace(x32, -0.5, 1.5, number, basis=basis, cutoff=cutoff)
        theirs32 = e3nn_math.soft_one_hot_linspace(x32, -0.5, 1.5, number, basis=basis, cutoff=cutoff)
        assert ours32.dtype == torch.float32
        torch.testing.assert_close(ours32, theirs32, rtol=0, atol=1e-5)


@pytest.mark.parametrize("cutoff", [True, False])
def test_soft_one_hot_bessel_finite_at_start(cutoff):
    x = torch.tensor([0.0, 1e-30, 1e-8], dtype=F64, requires_grad=True)
    y = nn.soft_one_hot_linspace(x, 0.0, 2.0, 4, basis="bessel", cutoff=cutoff)
    limit = math.sqrt(2 / 2.0) * torch.arange(1, 5, dtype=F64) * math.pi / 2.0
    if cutoff:
        assert (y[0] == 0).all()
    else:
        torch.testing.assert_close(y[0], limit, rtol=0, atol=1e-14)
    torch.testing.assert_close(y[2], limit, rtol=1e-12, atol=0)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(g).all()


def test_soft_one_hot_linspace_gradcheck():
    x = torch.linspace(-0.2, 1.2, 9, dtype=F64, requires_grad=True)
    for basis in nn.BASES:
        assert torch.autograd.gradcheck(lambda t, b=basis: nn.soft_one_hot_linspace(t, 0.1, 1.0, 4, b, True), (x,))


def test_soft_one_hot_linspace_errors():
    x = torch.rand(3)
    with pytest.raises(ValueError, match="gaussian, cosine, smooth_finite, fourier, bessel"):
        nn.soft_one_hot_linspace(x, 0.0, 1.0, 4, basis="gauss", cutoff=True)
    with pytest.raises(TypeError, match="cutoff"):
        nn.soft_one_hot_linspace(x, 0.0, 1.0, 4, basis="gaussian", cutoff=None)
    with pytest.raises(ValueError, match="end must be > start"):
        nn.soft_one_hot_linspace(x, 1.0, 0.0, 4, basis="gaussian", cutoff=True)
    with pytest.raises(ValueError, match="number"):
        nn.soft_one_hot_linspace(x, 0.0, 1.0, 0, basis="gaussian", cutoff=True)


def test_soft_unit_step_matches_e3nn_and_definition():
    x = torch.cat([torch.linspace(-2.0, 5.0, 701, dtype=F64), torch.tensor([1e-300, 1e-3, 2e-3, 1 / 800])])
    expected = torch.where(x > 0, torch.exp(-1.0 / x), torch.zeros_like(x))  # exp(-1/x) underflows for tiny x
    torch.testing.assert_close(nn.soft_unit_step(x), expected, rtol=1e-15, atol=0)
    e3nn_math = pytest.importorskip("e3nn.math")
    torch.testing.assert_close(nn.soft_unit_step(x), e3nn_math.soft_unit_step(x), rtol=0, atol=0)


def test_soft_unit_step_derivatives_finite_everywhere():
    x = torch.tensor([-1.0, 0.0, 1e-300, 1e-200, 1e-3, 0.01, 0.5, 3.0], dtype=F64, requires_grad=True)
    y = nn.soft_unit_step(x)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    assert torch.isfinite(g).all() and torch.isfinite(h).all()
    xd = x.detach()
    pos = xd > 0.005
    torch.testing.assert_close(g[pos], torch.exp(-1 / xd[pos]) / xd[pos] ** 2, rtol=1e-12, atol=0)
    assert (g[:4] == 0).all()
    xs = torch.tensor([-0.5, 0.0, 0.05, 0.3, 2.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(nn.soft_unit_step, (xs,))
    assert torch.autograd.gradgradcheck(nn.soft_unit_step, (xs,))


# ---------------------------------------------------------------------------------------------------------
# PolynomialCutoff / CosineCutoff
# ---------------------------------------------------------------------------------------------------------


def _derivatives(f, r: torch.Tensor, n: int) -> list[torch.Tensor]:
    r = r.clone().requires_grad_(True)
    out = [f(r)]
    for _ in range(n):
        (d,) = torch.autograd.grad(out[-1].sum(), r, create_graph=True)
        out.append(d)
    return [o.detach() for o in out]


@pytest.mark.parametrize("p", [2, 5, 6, 9])
def test_polynomial_cutoff_defining_properties(p):
    rc = 2.5
    env = nn.PolynomialCutoff(rc, p=p)
    f0, d0, _ = _derivatives(env, torch.tensor([0.0], dtype=F64), 2)
    assert f0.item() == 1.0 and d0.item() == 0.0
    # value, first and second derivative vanish at r_max (from below: C^2 junction with the 0 outside)
    delta = 1e-7
    f, d1, d2 = _derivatives(env, torch.tensor([rc * (1 - delta)], dtype=F64), 2)
    assert abs(f.item()) < 1e-12 and abs(d1.item()) < 1e-9 and abs(d2.item()) < 1e-4
    fo, d1o, d2o = _derivatives(env, torch.tensor([rc, rc * 1.3, 10.0], dtype=F64), 2)
    assert (fo == 0).all() and (d1o == 0).all() and (d2o == 0).all()
    # the formula, written out with x = r / r_max
    r = torch.linspace(0, rc * 0.999, 50, dtype=F64)
    x = r / rc
    ref = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
    torch.testing.assert_close(env(r), ref, rtol=0, atol=1e-13)
    assert ((env(r) >= 0) & (env(r) <= 1)).all()
    assert torch.autograd.gradcheck(env, (torch.linspace(0.1, 3.0, 7, dtype=F64, requires_grad=True),))


def test_cosine_cutoff():
    env = nn.CosineCutoff(2.0)
    f, d1 = _derivatives(env, torch.tensor([0.0, 1.0, 2.0 - 1e-9, 2.0, 3.0], dtype=F64), 1)
    torch.testing.assert_close(f[:2], torch.tensor([1.0, 0.5], dtype=F64), rtol=0, atol=1e-15)
    assert abs(f[2].item()) < 1e-15 and abs(d1[2].item()) < 1e-8
    assert (f[3:] == 0).all() and (d1[3:] == 0).all()


def test_cutoff_errors():
    with pytest.raises(ValueError, match="r_max"):
        nn.PolynomialCutoff(0.0)
    with pytest.raises(ValueError, match="p must"):
        nn.PolynomialCutoff(1.0, p=-2)
    with pytest.raises(ValueError, match="r_max"):
        nn.CosineCutoff(-1.0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        nn.PolynomialCutoff(1.0)([0.5])


# ---------------------------------------------------------------------------------------------------------
# BesselBasis
# ---------------------------------------------------------------------------------------------------------


def test_bessel_basis_definition_and_e3nn():
    rc, n = 3.0, 6
    bb = nn.BesselBasis(rc, n).double()
    r = torch.linspace(0.01, 3.5, 120, dtype=F64)
    w = torch.arange(1, n + 1, dtype=F64) * math.pi
    ref = math.sqrt(2 / rc) * torch.sin(w * r[:, None] / rc) / r[:, None]
    torch.testing.assert_close(bb(r), ref, rtol=0, atol=1e-12)
    e3nn_math = pytest.importorskip("e3nn.math")
    theirs = e3nn_math.soft_one_hot_linspace(r, 0.0, rc, n, basis="bessel", cutoff=False)
    torch.testing.assert_close(bb(r), theirs, rtol=0, atol=1e-10)


def test_bessel_basis_orthonormal():
    # int_0^rc b_n(r) b_m(r) r^2 dr = delta_nm (Gauss-Legendre, 200 nodes)
    rc = 2.0
    t, wt = np.polynomial.legendre.leggauss(200)
    r = torch.from_numpy(0.5 * rc * (t + 1))
    wq = torch.from_numpy(0.5 * rc * wt)
    b = nn.BesselBasis(rc, 5, trainable=False).double()(r)
    gram = (b * (wq * r**2)[:, None]).T @ b
    torch.testing.assert_close(gram, torch.eye(5, dtype=F64), rtol=0, atol=1e-10)


def test_bessel_basis_at_zero():
    rc = 1.5
    bb = nn.BesselBasis(rc, 4).double()
    w = torch.arange(1, 5, dtype=F64) * math.pi
    f, d1, d2 = (
        torch.stack(
            [_derivatives(lambda r, i=i: bb(r)[..., i], torch.tensor([0.0], dtype=F64), 2)[k][0] for i in range(4)]
        )
        for k in range(3)
    )
    k = w / rc
    torch.testing.assert_close(f, math.sqrt(2 / rc) * k, rtol=1e-14, atol=0)
    torch.testing.assert_close(d1, torch.zeros(4, dtype=F64), rtol=0, atol=1e-14)  # sin(kr)/r is even
    torch.testing.assert_close(d2, -math.sqrt(2 / rc) * k**3 / 3, rtol=1e-10, atol=0)
    r = torch.tensor([0.0, 1e-6, 0.5, 1.7], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(bb, (r,))
    wts = bb.bessel_weights.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w_: torch.func.functional_call(bb, {"bessel_weights": w_}, (r,)), (wts,))


def test_bessel_basis_trainable_and_invariance():
    assert isinstance(nn.BesselBasis(1.0, 3).bessel_weights, torch.nn.Parameter)
    fixed = nn.BesselBasis(1.0, 3, trainable=False)
    assert "bessel_weights" in dict(fixed.named_buffers()) and not list(fixed.parameters())
    bb = nn.BesselBasis(2.0, 8).double()
    v = torch.randn(10, 3, dtype=F64)
    R = -rand_matrix(generator=torch.Generator().manual_seed(0), dtype=F64)  # improper
    torch.testing.assert_close(bb((v @ R.T).norm(dim=-1)), bb(v.norm(dim=-1)), rtol=0, atol=1e-12)
    y = nn.BesselBasis(2.0, 8).float()(torch.rand(5, dtype=torch.float32))
    assert y.dtype == torch.float32 and y.shape == (5, 8)
    with pytest.raises(ValueError, match="num_basis"):
        nn.BesselBasis(1.0, 0)
