"""SO(2) (eSCN) convolution: edge frames, exact equality with the CG convolution, equivariance, gradients.

References are independent of the SO(2) code: the CG route (``ChannelwiseTensorProduct`` of the spherical
harmonics), ``wigner_D`` of the frame's Euler angles, finite differences (``gradcheck``) and e3nn.
"""

from __future__ import annotations

import pytest
import torch

import euclidnet.nn.so2 as so2mod
from euclidnet.nn import ChannelwiseConvolution, SO2Convolution
from euclidnet.o3 import Irreps, matrix_to_angles, spherical_harmonics, wigner_D
from euclidnet.o3.edge_frame import edge_frame_wigner_D
from euclidnet.testing import assert_equivariant
from euclidnet.tp import ChannelwiseTensorProduct

AXES = [[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -2.0, 0], [0, 0, 1.0], [0, 0, -0.5]]

CASES = [
    ("3x0e + 3x1o + 3x2e", "3x0e + 3x1o + 3x2e", 2),  # workload 7 at L = 2
    ("2x0e + 2x1e + 2x1o + 2x2o + 2x3o", "2x0o + 2x1o + 2x2e + 2x3e", 3),  # both parities, antisymmetric
    ("2x0e + 2x1o + 2x2e + 2x3o", "2x1o + 2x3o", 6),  # lmax >= l1 + lo for every coupling
]


@pytest.fixture(params=[True, False], ids=["kernel", "torch"])
def kernel(request, monkeypatch):
    monkeypatch.setattr(so2mod, "KERNEL_ENABLED", request.param)
    if request.param and not so2mod.so2_kernel_available():
        pytest.skip("no C compiler for the SO(2) kernel")
    return request.param


def _edges(n: int, zero: bool = True) -> torch.Tensor:
    r = torch.randn(n, 3)
    extra = AXES + ([[0.0, 0, 0]] if zero else [])
    return torch.cat([r, torch.tensor(extra)])


def _cg_reference(irreps_in: str, irreps_out: str, lmax: int, x, r, w, normalization: str = "component"):
    tp = ChannelwiseTensorProduct(irreps_in, Irreps.spherical_harmonics(lmax), irreps_out)
    return tp(x, spherical_harmonics(list(range(lmax + 1)), r, True, normalization), w)


# -- edge frames --------------------------------------------------------------------------------------------


def test_edge_frame_rotates_edges_to_pole_and_matches_wigner_D():
    r = _edges(40, zero=False)
    D, zero = edge_frame_wigner_D(r, 5)
    assert not zero.any()
    rhat = r / r.norm(dim=1, keepdim=True)
    R = D[1]
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(len(r), 3, 3), atol=1e-13, rtol=0)
    assert torch.allclose(torch.linalg.det(R), torch.ones(len(r)), atol=1e-13)
    ey = torch.tensor([0.0, 1, 0]).expand_as(r)
    torch.testing.assert_close((R @ rhat[:, :, None])[:, :, 0], ey, atol=1e-13, rtol=0)
    a, b, c = matrix_to_angles(R)
    for l in range(6):  # independent construction of D^l from the 3x3 frame
        torch.testing.assert_close(D[l], wigner_D(l, a, b, c), atol=1e-11, rtol=0)
        # Y(R r_hat) = Y(e_y): only m = 0 is nonzero
        pole = spherical_harmonics(l, torch.tensor([[0.0, 1, 0]]))
        DY = torch.einsum("eij,ej->ei", D[l], spherical_harmonics(l, r))
        torch.testing.assert_close(DY, pole.expand(len(r), -1), atol=1e-12, rtol=0)


def test_edge_frame_zero_length_is_finite():
    r = torch.zeros(3, 3, requires_grad=True)
    D, zero = edge_frame_wigner_D(r, 3)
    assert zero.all()
    (sum(d.sum() for d in D.values())).backward()
    assert torch.isfinite(r.grad).all() and (r.grad == 0).all()


# -- equality with the CG convolution -----------------------------------------------------------------------


@pytest.mark.parametrize("irreps_in,irreps_out,lmax", CASES)
def test_equals_cg_convolution(kernel, irreps_in, irreps_out, lmax):
    m = SO2Convolution(irreps_in, irreps_out, lmax)
    r = _edges(30)
    x = torch.randn(len(r), m.irreps_in.dim)
    w = torch.randn(len(r), m.weight_numel)
    ref = _cg_reference(irreps_in, irreps_out, lmax, x, r, w)
    assert (m(x, r, w) - ref).abs().max() <= 1e-9 * ref.abs().max()


@pytest.mark.parametrize("normalization", ["norm", "integral"])
def test_equals_cg_convolution_other_sh_normalizations(normalization):
    irreps_in, irreps_out, lmax = CASES[0]
    m = SO2Convolution(irreps_in, irreps_out, lmax, sh_normalization=normalization)
    r = _edges(10)
    x, w = torch.randn(len(r), m.irreps_in.dim), torch.randn(len(r), m.weight_numel)
    ref = _cg_reference(irreps_in, irreps_out, lmax, x, r, w, normalization)
    assert (m(x, r, w) - ref).abs().max() <= 1e-9 * ref.abs().max()


@pytest.mark.parametrize("irreps_in,irreps_out,lmax", CASES)
def test_free_weights_from_cg_give_the_same_function(irreps_in, irreps_out, lmax):
    cg = SO2Convolution(irreps_in, irreps_out, lmax)
    free = SO2Convolution(irreps_in, irreps_out, lmax, weights="free")
    r = _edges(20)
    x, w = torch.randn(len(r), cg.irreps_in.dim), torch.randn(len(r), cg.weight_numel)
    ref = _cg_reference(irreps_in, irreps_out, lmax, x, r, w)
    out = free(x, r, cg.free_weights_from_cg(w))
    assert (out - ref).abs().max() <= 1e-9 * ref.abs().max()


def test_free_mode_is_the_cg_class_when_lmax_covers_all_couplings():
    """With lmax >= l1 + lo the map is square and invertible: any free weights are some CG weights."""
    irreps_in, irreps_out, lmax = CASES[2]
    cg = SO2Convolution(irreps_in, irreps_out, lmax)
    free = SO2Convolution(irreps_in, irreps_out, lmax, weights="free")
    A = cg.cg_to_free_matrix()
    assert A.shape[0] == A.shape[1] and torch.linalg.matrix_rank(A) == A.shape[0]
    r = _edges(15)
    x = torch.randn(len(r), cg.irreps_in.dim)
    wf = torch.randn(len(r), free.weight_numel)
    C = cg.channels
    wcg = torch.linalg.solve(A.T, wf.reshape(len(r), -1, C)).reshape(len(r), -1)  # A^T w_cg = w_free
    ref = _cg_reference(irreps_in, irreps_out, lmax, x, r, wcg)
    assert (free(x, r, wf) - ref).abs().max() <= 1e-9 * ref.abs().max()


def test_free_mode_is_larger_when_lmax_is_truncated():
    irreps = "1x0e + 1x1o + 1x2e + 1x3o"
    cg = SO2Convolution(irreps, irreps, 2)
    A = cg.cg_to_free_matrix()
    assert torch.linalg.matrix_rank(A) == A.shape[0] < A.shape[1]


# -- symmetry -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights,mmax", [("cg", None), ("free", None), ("free", 1)])
@pytest.mark.parametrize("irreps_in,irreps_out,lmax", CASES[:2])
def test_equivariance_rotation_and_inversion(kernel, weights, mmax, irreps_in, irreps_out, lmax):
    m = SO2Convolution(irreps_in, irreps_out, lmax, weights=weights, mmax=mmax)
    r = _edges(12)
    args = (torch.randn(len(r), m.irreps_in.dim), r, torch.randn(len(r), m.weight_numel))
    assert_equivariant(m, [m.irreps_in, "1o", "invariant"], [m.irreps_out], args, do_translation=False)


# -- gradients ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", ["cg", "free"])
def test_gradcheck(kernel, weights):
    m = SO2Convolution("1x0e + 1x1o + 1x2e", "1x0e + 1x1o + 1x1e + 1x2e", 2, weights=weights)
    r = _edges(2, zero=False).requires_grad_(True)
    x = torch.randn(len(r), m.irreps_in.dim, requires_grad=True)
    w = torch.randn(len(r), m.weight_numel, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x, r, w), atol=1e-7, fast_mode=True)


def test_full_gradcheck_with_axis_edges(kernel):
    """Every input component (not a random projection), edges exactly along the axes and chart boundaries."""
    m = SO2Convolution("1x0e + 1x1o + 1x1e", "1x0e + 1x1o + 1x1e", 2)
    r = torch.tensor([[0.0, 1, 0], [0, 0, -1], [-1.0, 0, 0], [0.5**0.5, 0.5**0.5, 0]], requires_grad=True)
    x = torch.randn(len(r), m.irreps_in.dim, requires_grad=True)
    w = torch.randn(len(r), m.weight_numel, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x, r, w), atol=1e-7)


def test_gradgradcheck(kernel):
    m = SO2Convolution("1x0e + 1x1o + 1x2e", "1x0e + 1x1o + 1x2e", 2)
    r = _edges(2, zero=False).requires_grad_(True)
    x = torch.randn(len(r), m.irreps_in.dim, requires_grad=True)
    w = torch.randn(len(r), m.weight_numel, requires_grad=True)
    assert torch.autograd.gradgradcheck(m, (x, r, w), atol=1e-6, fast_mode=True)


def test_gradients_equal_cg_route_on_axes_and_zero_edges(kernel):
    irreps_in, irreps_out, lmax = CASES[1]
    m = SO2Convolution(irreps_in, irreps_out, lmax)
    r0 = torch.tensor(AXES + [[0.0, 0, 0], [0.0, 0, 0]])
    x0 = torch.randn(len(r0), m.irreps_in.dim)
    w0 = torch.randn(len(r0), m.weight_numel)
    g = torch.randn(len(r0), m.irreps_out.dim)
    grads = []
    for fn in (m, lambda x, r, w: _cg_reference(irreps_in, irreps_out, lmax, x, r, w)):
        x, r, w = (t.clone().requires_grad_(True) for t in (x0, r0, w0))
        out = fn(x, r, w)
        grads.append((out.detach(), *torch.autograd.grad(out, (x, r, w), g)))
    ours, ref = grads
    for a, b, name in zip(ours, ref, ("out", "x", "edge_vec", "weight")):
        assert torch.isfinite(a).all(), name
        if name == "edge_vec":  # direction undefined at r = 0: ours is 0 there (documented)
            a, b = a[:-2], b[:-2]
            assert (ours[2][-2:] == 0).all()
        assert (a - b).abs().max() <= 1e-9 * max(1.0, b.abs().max()), name


# -- dtypes, errors, route choice ---------------------------------------------------------------------------


def test_float32(kernel):
    irreps_in, irreps_out, lmax = CASES[1]
    m = SO2Convolution(irreps_in, irreps_out, lmax)
    r = _edges(20)
    x, w = torch.randn(len(r), m.irreps_in.dim), torch.randn(len(r), m.weight_numel)
    ref = m(x, r, w)
    out = m(x.float(), r.float(), w.float())
    assert out.dtype == torch.float32
    assert (out.double() - ref).abs().max() <= 1e-5 * ref.abs().max()
    xf = x.float().requires_grad_(True)
    m(xf, r.float(), w.float()).sum().backward()
    assert torch.isfinite(xf.grad).all()


def test_bad_inputs_raise_clear_errors():
    m = SO2Convolution("2x0e + 2x1o", "2x0e + 2x1o", 1)
    x, r, w = torch.randn(5, m.irreps_in.dim), torch.randn(5, 3), torch.randn(5, m.weight_numel)
    with pytest.raises(ValueError, match=r"x has shape \(5, 7\); expected \[num_edges, 8\]"):
        m(x[:, :7], r, w)
    with pytest.raises(ValueError, match=r"edge_vec has shape \(5, 2\); expected \[num_edges, 3\]"):
        m(x, r[:, :2], w)
    with pytest.raises(ValueError, match=rf"weight has shape \(4, {m.weight_numel}\)"):
        m(x, r, w[:4])
    with pytest.raises(TypeError, match="floating point"):
        m(x, r.long(), w)
    with pytest.raises(ValueError, match=r"one nonzero multiplicity.*multiplicities \[2, 3\]"):
        SO2Convolution("2x0e + 3x1o", "2x0e", 1)
    with pytest.raises(ValueError, match="mmax truncation"):
        SO2Convolution("2x0e", "2x0e", 1, mmax=0)
    with pytest.raises(ValueError, match="weights must be 'cg' or 'free', got 'x'"):
        SO2Convolution("2x0e", "2x0e", 1, weights="x")
    with pytest.raises(ValueError, match="lmax must be an int >= 0, got -1"):
        SO2Convolution("2x0e", "2x0e", -1)
    with pytest.raises(ValueError, match="route='so2' needs one nonzero multiplicity"):
        ChannelwiseConvolution("2x0e + 3x1o", 1, "2x0e + 3x1o", route="so2")
    with pytest.raises(ValueError, match="irreps_sh must be the harmonics of a vector"):
        ChannelwiseConvolution("2x0e", "0e + 1e", "2x0e")


def test_channelwise_convolution_routes_agree():
    irreps_in, irreps_out, lmax = CASES[1]
    cg = ChannelwiseConvolution(irreps_in, lmax, irreps_out, route="cg")
    so2 = ChannelwiseConvolution(irreps_in, Irreps.spherical_harmonics(lmax), irreps_out, route="so2")
    assert cg.weight_numel == so2.weight_numel and cg.instructions == so2.instructions
    r = _edges(10)
    x, w = torch.randn(len(r), cg.irreps_in.dim), torch.randn(len(r), cg.weight_numel)
    ref = cg(x, r, w)
    assert (so2(x, r, w) - ref).abs().max() <= 1e-9 * ref.abs().max()
    auto = ChannelwiseConvolution(irreps_in, lmax, irreps_out)
    assert auto.route in ("cg", "so2")
    assert ChannelwiseConvolution("2x0e + 3x1o", 1, "2x0e + 3x1o").route == "cg"  # SO(2) impossible


def test_auto_route_prefers_so2_at_high_l_and_cg_at_low_l():
    lo = ChannelwiseConvolution("32x0e + 32x1o", 1, "32x0e + 32x1o")
    hi_irreps = "+".join(f"32x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(7))
    hi = ChannelwiseConvolution(hi_irreps, 6, hi_irreps)
    assert lo.route == "cg" and hi.route == "so2"


def test_against_e3nn():
    e3o = pytest.importorskip("e3nn.o3")
    irreps_in, irreps_out, lmax = CASES[1]
    m = ChannelwiseConvolution(irreps_in, lmax, irreps_out, route="so2")
    theirs = e3o.TensorProduct(irreps_in, str(m.irreps_sh), irreps_out, m.instructions,
                               shared_weights=False, internal_weights=False)  # fmt: skip
    r = torch.randn(12, 3)
    x, w = torch.randn(len(r), m.irreps_in.dim), torch.randn(len(r), m.weight_numel)
    ref = theirs(x, e3o.spherical_harmonics(str(m.irreps_sh), r, True, "component"), w)
    assert (m(x, r, w) - ref).abs().max() <= 1e-9 * ref.abs().max()
