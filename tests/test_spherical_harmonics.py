"""Tests of euclidnet.o3.spherical_harmonics: both the compiled C kernel and the pure-torch path.

References are independent of our code: e3nn (optional), exact Legendre polynomials from sympy evaluated
with mpmath at 50 digits, Wigner D matrices (equivariance), quadrature (orthonormality), finite
differences and torch's gradcheck.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from euclidnet import kernels
from euclidnet.o3 import Irreps, SphericalHarmonics, rand_matrix, spherical_harmonics
from euclidnet.o3 import spherical_harmonics as sh_module_fn  # noqa: F401  (public name)

KERNEL = kernels.sh_kernel_available()
needs_kernel = pytest.mark.skipif(not KERNEL, reason=f"C kernel unavailable: {kernels.sh_kernel_error()}")


@pytest.fixture(params=["kernel", "torch"])
def path(request, monkeypatch):
    """Run the test once with the compiled kernel and once with the pure-torch path."""
    if request.param == "kernel":
        if not KERNEL:
            pytest.skip(f"C kernel unavailable: {kernels.sh_kernel_error()}")
        monkeypatch.delenv("EUCLIDNET_DISABLE_KERNELS", raising=False)
    else:
        monkeypatch.setenv("EUCLIDNET_DISABLE_KERNELS", "1")
    return request.param


def _torch_path(fn, *args, **kwargs):
    old = os.environ.get("EUCLIDNET_DISABLE_KERNELS")
    os.environ["EUCLIDNET_DISABLE_KERNELS"] = "1"
    try:
        return fn(*args, **kwargs)
    finally:
        if old is None:
            del os.environ["EUCLIDNET_DISABLE_KERNELS"]
        else:
            os.environ["EUCLIDNET_DISABLE_KERNELS"] = old


def _points(n: int, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=dtype)


# ---------------------------------------------------------------------------------------------------------
# values against independent references


@pytest.mark.parametrize("normalization", ["component", "norm", "integral"])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_e3nn(path, normalization, normalize, dtype):
    e3nn_o3 = pytest.importorskip("e3nn.o3")
    x = _points(300, dtype, seed=1)
    ls = list(range(12))
    ours = spherical_harmonics(ls, x, normalize=normalize, normalization=normalization)
    ref = e3nn_o3.spherical_harmonics(ls, x, normalize=normalize, normalization=normalization)
    assert ours.shape == ref.shape == (300, 144)
    assert ours.dtype == dtype
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    if normalize:
        scale = ref.abs().max()
        assert (ours - ref).abs().max() <= tol * scale
    else:
        # Solid harmonics grow like |x|^l: compare each entry relative to the size of its row block.
        for l in ls:
            sl = slice(l * l, (l + 1) * (l + 1))
            scale = ref[:, sl].abs().amax(dim=1, keepdim=True).clamp_min(1e-30)
            assert ((ours[:, sl] - ref[:, sl]).abs() / scale).max() <= tol, l


def _exact_reference(ls: list[int], pts: np.ndarray) -> np.ndarray:
    """Y_l^m at unit vectors ``pts`` in 50-digit arithmetic from exact Legendre polynomials (sympy).

    Convention (documented in the module): polar axis y; (z + ix)^m = sin^m(theta) e^{i m phi};
    component normalisation Y_l^m = sqrt((2l+1)(2 - delta_m0)(l-m)!/(l+m)!) P_l^m(cos theta) trig(m phi),
    with P_l^m = (1 - t^2)^{m/2} d^m/dt^m P_l(t) (no Condon-Shortley phase), cos for m > 0, sin for m < 0.
    """
    mpmath = pytest.importorskip("mpmath")
    sympy = pytest.importorskip("sympy")
    mpmath.mp.dps = 50
    t = sympy.Symbol("t")
    out = np.zeros((len(pts), sum(2 * l + 1 for l in ls)))
    for l in ls:
        base = sympy.legendre(l, t)
        derivs = [base]
        for _ in range(l):
            derivs.append(sympy.diff(derivs[-1], t))
        polys = [sympy.Poly(d, t).all_coeffs() for d in derivs]
        off = sum(2 * k + 1 for k in ls[: ls.index(l)])
        for i, (px, py, pz) in enumerate(pts):
            px, py, pz = mpmath.mpf(px), mpmath.mpf(py), mpmath.mpf(pz)
            r = mpmath.sqrt(px * px + py * py + pz * pz)
            ct = py / r
            st = mpmath.sqrt(1 - ct * ct)
            phi = mpmath.atan2(px, pz)
            for m in range(-l, l + 1):
                am = abs(m)
                dm = mpmath.polyval([mpmath.mpf(sympy.Rational(c).p) / sympy.Rational(c).q for c in polys[am]], ct)
                plm = st**am * dm
                norm = mpmath.sqrt(
                    mpmath.mpf((2 * l + 1) * (1 if m == 0 else 2)) * mpmath.factorial(l - am) / mpmath.factorial(l + am)
                )
                trig = 1 if m == 0 else (mpmath.cos(am * phi) if m > 0 else mpmath.sin(am * phi))
                out[i, off + m + l] = float(norm * plm * trig)
    return out


def test_exact_reference_up_to_l20(path):
    x = torch.tensor(
        [[0.3, -0.5, 0.8], [-1.2, 0.1, 0.4], [0.05, 0.99, -0.02], [0.7, -0.7, -0.1], [2.0, 0.3, -1.5]],
        dtype=torch.float64,
    )
    ls = [0, 1, 2, 5, 13, 20]
    ref = torch.from_numpy(_exact_reference(ls, x.numpy()))
    ours = spherical_harmonics(ls, x)
    # Values reach ~sqrt(2l+1) * O(1); round-off relative to that scale.
    assert (ours - ref).abs().max() <= 1e-12 * ref.abs().max()
    # l = 1 is sqrt(3) x / |x| (the documented convention, checked on its own).
    assert torch.allclose(ours[:, 1:4], math.sqrt(3) * x / x.norm(dim=1, keepdim=True), atol=1e-14)


def test_norm_per_point(path):
    ls = list(range(21))
    for dtype, tol in ((torch.float64, 1e-11), (torch.float32, 1e-4)):
        x = _points(200, dtype, seed=2)
        y = spherical_harmonics(ls, x)
        yn = spherical_harmonics(ls, x, normalization="norm")
        for l in ls:
            sl = slice(l * l, (l + 1) * (l + 1))
            assert torch.allclose(y[:, sl].pow(2).sum(-1), torch.full((200,), 2.0 * l + 1, dtype=dtype), rtol=tol)
            assert torch.allclose(yn[:, sl].pow(2).sum(-1), torch.ones(200, dtype=dtype), rtol=tol), l


def _sphere_quadrature(L: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points and weights exact for polynomials of degree <= 2L on the sphere (polar axis y)."""
    t, w = np.polynomial.legendre.leggauss(L + 1)  # exact in cos(theta) up to degree 2L + 1
    nphi = 2 * L + 2  # exact for trigonometric polynomials of degree <= 2L + 1
    phi = 2 * np.pi * np.arange(nphi) / nphi
    T, PHI = np.meshgrid(t, phi, indexing="ij")
    s = np.sqrt(1 - T**2)
    pts = np.stack([s * np.sin(PHI), T, s * np.cos(PHI)], -1).reshape(-1, 3)
    wts = (w[:, None] * np.full(nphi, 2 * np.pi / nphi)[None, :]).reshape(-1)
    return torch.from_numpy(pts), torch.from_numpy(wts)


@pytest.mark.parametrize("normalization", ["component", "norm", "integral"])
def test_orthonormality_by_quadrature(path, normalization):
    L = 12
    pts, wts = _sphere_quadrature(L)
    assert abs(wts.sum().item() - 4 * math.pi) < 1e-12
    ls = list(range(L + 1))
    y = spherical_harmonics(ls, pts, normalization=normalization)
    gram = y.T @ (wts[:, None] * y)
    if normalization == "integral":
        diag = torch.ones(y.shape[1], dtype=torch.float64)
    elif normalization == "component":
        diag = torch.full((y.shape[1],), 4 * math.pi, dtype=torch.float64)
    else:
        diag = torch.tensor([4 * math.pi / (2 * l + 1) for l in ls for _ in range(2 * l + 1)], dtype=torch.float64)
    assert (gram - torch.diag(diag)).abs().max() < 1e-11


@pytest.mark.slow
def test_orthonormality_by_quadrature_l20(path):
    L = 20
    pts, wts = _sphere_quadrature(L)
    y = spherical_harmonics(list(range(L + 1)), pts, normalization="integral")
    gram = y.T @ (wts[:, None] * y)
    assert (gram - torch.eye(y.shape[1], dtype=torch.float64)).abs().max() < 1e-11


# ---------------------------------------------------------------------------------------------------------
# equivariance


def test_equivariance_rotations(path):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 3, generator=g, dtype=torch.float64)
    irreps = Irreps.spherical_harmonics(12)
    R = rand_matrix(20, generator=g, dtype=torch.float64)
    D = irreps.D_from_matrix(R)  # [20, dim, dim]
    y = spherical_harmonics(irreps, x)
    y_rot = spherical_harmonics(irreps, torch.einsum("rij,nj->rni", R, x))
    assert (y_rot - torch.einsum("rij,nj->rni", D, y)).abs().max() < 1e-10


@pytest.mark.parametrize("l", [16, 20])
def test_equivariance_high_l(path, l):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(16, 3, generator=g, dtype=torch.float64)
    R = rand_matrix(3, generator=g, dtype=torch.float64)
    D = Irreps(f"{l}e").D_from_matrix(R)
    y = spherical_harmonics(l, x)
    y_rot = spherical_harmonics(l, torch.einsum("rij,nj->rni", R, x))
    assert (y_rot - torch.einsum("rij,nj->rni", D, y)).abs().max() < 1e-10 * math.sqrt(2 * l + 1)


def test_improper_rotations_and_parity(path):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(64, 3, generator=g, dtype=torch.float64)
    irreps = Irreps.spherical_harmonics(10)  # 0e + 1o + 2e + ...
    y = spherical_harmonics(irreps, x)
    sign = torch.tensor([(-1.0) ** l for l in irreps.ls for _ in range(2 * l + 1)], dtype=torch.float64)
    assert (spherical_harmonics(irreps, -x) - sign * y).abs().max() < 1e-12
    R = -rand_matrix(10, generator=g, dtype=torch.float64)  # improper: det = -1
    D = irreps.D_from_matrix(R)
    y_rot = spherical_harmonics(irreps, torch.einsum("rij,nj->rni", R, x))
    assert (y_rot - torch.einsum("rij,nj->rni", D, y)).abs().max() < 1e-10
    # Pseudovector harmonics (all parities even) are invariant under inversion.
    assert torch.equal(spherical_harmonics("0e + 1e + 2e", x), spherical_harmonics([0, 1, 2], x))


# ---------------------------------------------------------------------------------------------------------
# gradients


def _special_points() -> torch.Tensor:
    return torch.tensor(
        [[0.0, 1.0, 0.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0],
         [1e-9, 1.0, -2e-9], [0.3, -0.5, 0.8], [-1.2, 0.1, 0.4], [2.0, 3.0, -1.0]],
        dtype=torch.float64,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("normalize", "normalization"), [(True, "component"), (False, "component"), (True, "integral")]
)
def test_gradcheck(path, normalize, normalization):
    x = _special_points().requires_grad_()
    for ls in ([1, 2, 3], [6, 0, 4, 6]):
        assert torch.autograd.gradcheck(
            lambda v, ls=ls: spherical_harmonics(ls, v, normalize=normalize, normalization=normalization), (x,)
        )


def test_gradient_at_poles_matches_central_differences(path):
    ls = list(range(9))
    for pole in ([0.0, 1.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 2.0]):
        x = torch.tensor([pole], dtype=torch.float64, requires_grad=True)
        w = torch.randn(81, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
        (g,) = torch.autograd.grad((spherical_harmonics(ls, x) * w).sum(), x)
        assert torch.isfinite(g).all()
        h = 1e-6
        fd = torch.zeros(3, dtype=torch.float64)
        with torch.no_grad():
            for i in range(3):
                e = torch.zeros(1, 3, dtype=torch.float64)
                e[0, i] = h
                fp = (spherical_harmonics(ls, x + e) * w).sum()
                fm = (spherical_harmonics(ls, x - e) * w).sum()
                fd[i] = (fp - fm) / (2 * h)
        assert torch.allclose(g[0], fd, atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("normalize", [True, False])
def test_gradgradcheck(path, normalize):
    x = _special_points()[[0, 7, 9]].requires_grad_()
    assert torch.autograd.gradgradcheck(lambda v: spherical_harmonics([0, 1, 2, 4], v, normalize=normalize), (x,))


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_force_training_double_backward_matches_torch_path(dtype):
    """Loss on forces (-dE/dx) differentiated again, as in force training."""
    x0 = _points(50, dtype, seed=7)
    w = torch.randn(49, generator=torch.Generator().manual_seed(8), dtype=dtype)

    def run():
        x = x0.clone().requires_grad_()
        e = (spherical_harmonics(list(range(7)), x) * w).sum()
        (f,) = torch.autograd.grad(-e, x, create_graph=True)
        (gg,) = torch.autograd.grad(f.pow(2).sum(), x)
        return f.detach(), gg

    f_k, gg_k = run()
    f_t, gg_t = _torch_path(run)
    tol = 1e-10 if dtype == torch.float64 else 1e-3
    assert torch.allclose(f_k, f_t, rtol=tol, atol=tol * f_t.abs().max())
    assert torch.allclose(gg_k, gg_t, rtol=tol, atol=tol * gg_t.abs().max())


# ---------------------------------------------------------------------------------------------------------
# kernel vs pure torch


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("normalize", [True, False])
def test_kernel_matches_torch_path(dtype, normalize):
    g = torch.Generator().manual_seed(9)
    cases = [
        torch.randn(2, 5, 3, generator=g, dtype=dtype),  # batch dims
        torch.randn(3, generator=g, dtype=dtype),  # a single vector
        torch.randn(0, 3, dtype=dtype),  # empty batch
        torch.randn(3, 1001, generator=g, dtype=dtype).T,  # non-contiguous, not a multiple of the block size
        torch.randn(40, 6, generator=g, dtype=dtype)[:, ::2],  # strided columns
    ]
    for ls, normalizations in (
        ([3, 0, 3, 1], ("component", "norm", "integral")),
        ([2, 0, 1], ("integral",)),
        (list(range(21)), ("component",)),
    ):
        for x in cases:
            for normalization in normalizations:
                xk = x.detach().clone().requires_grad_()
                xt = x.detach().clone().requires_grad_()
                yk = spherical_harmonics(ls, xk, normalize=normalize, normalization=normalization)
                yt = _torch_path(spherical_harmonics, ls, xt, normalize=normalize, normalization=normalization)
                assert yk.shape == yt.shape == (*x.shape[:-1], sum(2 * l + 1 for l in ls))
                if x.numel() == 0:
                    continue
                # Solid harmonics scale like |x|^l: compare per row, relative to the row's size.
                scale = yt.abs().amax(-1, keepdim=True).clamp_min(1e-30)
                tol = 1e-12 if dtype == torch.float64 else 2e-5
                assert ((yk - yt).abs() / scale).max() <= tol, (ls, normalization)
                gout = torch.randn(yt.shape, generator=g, dtype=dtype)
                (gk,) = torch.autograd.grad(yk, xk, gout)
                (gt,) = torch.autograd.grad(yt, xt, gout)
                gscale = gt.abs().amax(-1, keepdim=True).clamp_min(1e-30)
                gtol = 1e-11 if dtype == torch.float64 else 1e-4
                assert ((gk - gt).abs() / gscale).max() <= gtol, (ls, normalization)


@needs_kernel
def test_kernel_backward_with_expanded_grad():
    """y.sum() hands the backward a stride-0 gradient; the kernel reads it without materialising."""
    x = _points(257, seed=10)
    xk = x.clone().requires_grad_()
    (gk,) = torch.autograd.grad(spherical_harmonics(list(range(9)), xk).sum(), xk)
    xt = x.clone().requires_grad_()
    (gt,) = torch.autograd.grad(_torch_path(spherical_harmonics, list(range(9)), xt).sum(), xt)
    assert torch.allclose(gk, gt, atol=1e-12)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("normalize", [True, False])
def test_specialised_kernels_match_generic_and_torch(dtype, normalize):
    """Requests of all degrees 0..L (small L) run generated straight-line code; any other request the generic
    worker. Each degree's values agree to round-off either way (same recursion; the compiler may fuse
    multiply-adds differently), and the gradients (any strides of the incoming gradient) agree with the
    generic worker and pure torch."""
    g = torch.Generator().manual_seed(14)
    x = torch.randn(1003, 3, generator=g, dtype=dtype)  # not a multiple of the block size
    x[5] = 0.0  # the zero vector (clamped norm)
    for L in range(9):
        full = list(range(L + 1))
        for normalization in ("component", "norm", "integral"):
            xs = x.clone().requires_grad_()
            y = spherical_harmonics(full, xs, normalize=normalize, normalization=normalization)
            for l in full:  # a single degree never takes the specialised path when L > 0 ...
                yl = spherical_harmonics([l, 0] if l else [0, 0], x, normalize=normalize, normalization=normalization)
                # solid harmonics (normalize=False) grow like |x|^l: compare relative to each row's size
                ref = yl[:, : 2 * l + 1]
                rscale = ref.abs().amax(-1, keepdim=True).clamp_min(1e-30)
                vtol = 1e-13 if dtype == torch.float64 else 2e-6
                assert ((y[:, l * l : (l + 1) ** 2].detach() - ref).abs() / rscale).max() <= vtol, (L, l)
            if L == 0:
                continue  # a constant: no gradient graph
            gouts = [
                torch.randn(y.shape, generator=g, dtype=dtype),
                torch.randn(y.shape[1], 2 * y.shape[0], generator=g, dtype=dtype).T[::2],  # strided rows/cols
                torch.ones(1, 1, dtype=dtype).expand(y.shape),  # stride 0, as from y.sum()
            ]
            for gout in gouts:
                (gk,) = torch.autograd.grad(y, xs, gout, retain_graph=True)
                # ... nor does the same request in another order (generic worker), nor the pure-torch path
                perm = full[::-1]
                xr = x.clone().requires_grad_()
                yr = spherical_harmonics(perm, xr, normalize=normalize, normalization=normalization)
                gperm = torch.cat([gout[:, l * l : (l + 1) ** 2] for l in perm], dim=1)
                (gg,) = torch.autograd.grad(yr, xr, gperm)
                xt = x.clone().requires_grad_()
                yt = _torch_path(spherical_harmonics, full, xt, normalize=normalize, normalization=normalization)
                (gt,) = torch.autograd.grad(yt, xt, gout)
                scale = gt.abs().amax(-1, keepdim=True).clamp_min(1e-30)
                # float32: sums of up to 2 (L + 1)^2 terms with cancellation, relative to the row's largest
                tol = 1e-11 if dtype == torch.float64 else 1e-3
                assert ((gk - gg).abs() / scale).max() <= tol, (L, normalization)
                assert ((gk - gt).abs() / scale).max() <= tol, (L, normalization)


def test_kernel_used_only_when_allowed(monkeypatch):
    from euclidnet.o3.spherical_harmonics import _kernel_usable

    x = torch.randn(4, 3)
    monkeypatch.setenv("EUCLIDNET_DISABLE_KERNELS", "1")
    assert not _kernel_usable(x)
    assert kernels.kernel_status()["spherical_harmonics"].startswith("disabled")
    monkeypatch.delenv("EUCLIDNET_DISABLE_KERNELS")
    assert _kernel_usable(x) == KERNEL
    assert not _kernel_usable(x.to(torch.float16))
    assert not _kernel_usable(torch.randn(4, 3, device="meta"))


def test_torch_func_transforms(path):
    """torch.func transforms run through the pure-torch path and give the same derivatives."""
    x = _points(5, seed=11)
    jac = torch.func.jacrev(lambda v: spherical_harmonics([1, 2], v).sum(0))(x)
    xr = x.clone().requires_grad_()
    y = spherical_harmonics([1, 2], xr).sum(0)
    rows = [torch.autograd.grad(y[i], xr, retain_graph=True)[0] for i in range(8)]
    assert torch.allclose(jac, torch.stack(rows), atol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# special inputs and errors


@pytest.mark.parametrize("normalization", ["component", "norm", "integral"])
def test_zero_vector(path, normalization):
    x = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    ls = list(range(5))
    y = spherical_harmonics(ls, x, normalization=normalization)
    y0 = {"component": 1.0, "norm": 1.0, "integral": 1 / math.sqrt(4 * math.pi)}[normalization]
    expected = torch.zeros(2, 25, dtype=torch.float64)
    expected[:, 0] = y0
    assert torch.equal(y.detach(), expected)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(g).all()
    # Documented: below |x| = 1e-12 the direction is x / 1e-12, so only Y_1 (linear) contributes:
    # d/dx of sum(sqrt(3) x / 1e-12 * s_1) with s_1 the l = 1 scale.
    s1 = {"component": 1.0, "norm": 1 / math.sqrt(3), "integral": 1 / math.sqrt(4 * math.pi)}[normalization]
    assert torch.allclose(g, torch.full_like(g, math.sqrt(3) * s1 / 1e-12), rtol=1e-12)
    # normalize=False: solid harmonics vanish at the origin for l > 0 as well.
    assert torch.equal(spherical_harmonics(ls, x.detach(), normalize=False, normalization=normalization), expected)


def test_nan_stays_in_its_row(path):
    for dtype in (torch.float64, torch.float32):
        x = _points(40, dtype, seed=12)
        x[7, 1] = float("nan")
        x[20, 0] = float("inf")
        xr = x.clone().requires_grad_()
        y = spherical_harmonics(list(range(6)), xr)
        bad = torch.zeros(40, dtype=torch.bool)
        bad[[7, 20]] = True
        assert torch.isfinite(y[~bad]).all()
        assert torch.isnan(y[7, 1:]).all()  # NaN: every l > 0 entry
        assert torch.isnan(y[20, 1:]).any()  # inf: undefined direction
        assert torch.equal(y[bad][:, 0], torch.ones(2, dtype=dtype))  # Y_0 is the constant
        if KERNEL:  # both paths treat the bad rows alike
            ref = _torch_path(spherical_harmonics, list(range(6)), x)
            torch.testing.assert_close(y.detach(), ref, equal_nan=True, rtol=1e-5, atol=1e-5)
        good = spherical_harmonics(list(range(6)), x[~bad])
        assert torch.equal(y[~bad], good)
        (g,) = torch.autograd.grad(y.sum(), xr)
        assert torch.isfinite(g[~bad]).all()
        assert torch.isnan(g[bad]).all()


def test_bad_input():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"\(5, 4\)"):
        spherical_harmonics(2, torch.randn(5, 4))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        spherical_harmonics(2, torch.tensor(1.0))
    with pytest.raises(TypeError, match="int64"):
        spherical_harmonics(2, torch.ones(5, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="list"):
        spherical_harmonics(2, [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="-1"):
        spherical_harmonics([1, -1], x)
    with pytest.raises(ValueError, match="2o"):
        spherical_harmonics("2o", x)
    with pytest.raises(ValueError, match="mix"):
        spherical_harmonics("1e + 3o", x)
    with pytest.raises(ValueError, match="normalization"):
        spherical_harmonics(2, x, normalization="unit")
    with pytest.raises(TypeError, match="degrees"):
        spherical_harmonics(object(), x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2o"):
        SphericalHarmonics("0e + 2o")


def test_module_and_ls_forms(path):
    x = _points(30, seed=13)
    m = SphericalHarmonics(3)
    assert m.irreps_out == Irreps("0e + 1o + 2e + 3o")
    assert torch.equal(m(x), spherical_harmonics([0, 1, 2, 3], x))
    assert torch.equal(spherical_harmonics(2, x), spherical_harmonics([2], x))
    assert torch.equal(spherical_harmonics("1x0e + 2x1o", x), spherical_harmonics([0, 1, 1], x))
    assert spherical_harmonics([], x).shape == (30, 0)
    y = spherical_harmonics([3, 0, 3], x)
    full = spherical_harmonics([0, 1, 2, 3], x)
    # [3, 0, 3] runs the generic kernel worker, [0, 1, 2, 3] a specialised one: equal up to round-off
    torch.testing.assert_close(y, torch.cat([full[:, 9:16], full[:, :1], full[:, 9:16]], 1), rtol=1e-13, atol=1e-13)


def test_compile_cache_is_reused(tmp_path, monkeypatch):
    """A built library is cached under the cache dir (content-hashed name) and reused, not rebuilt."""
    from euclidnet.kernels._build import KernelBuildError, compile_library

    monkeypatch.setenv("EUCLIDNET_CACHE_DIR", str(tmp_path))
    src = "int euclidnet_test_add(int a, int b) { return a + b; }\n"
    try:
        lib = compile_library("euclidnet_test", src)
    except KernelBuildError as e:
        pytest.skip(f"no working C compiler: {e}")
    assert lib.euclidnet_test_add(2, 3) == 5
    files = list(tmp_path.glob("euclidnet_test-*.so"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    compile_library("euclidnet_test", src)
    assert files[0].stat().st_mtime_ns == mtime
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left behind
