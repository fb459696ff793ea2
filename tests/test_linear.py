"""Tests of euclidnet.o3.linear.Linear: e3nn oracle, equivariance, normalisation, gradients, errors."""

from __future__ import annotations

import math

import pytest
import torch

from euclidnet.o3.irreps import Irreps
from euclidnet.o3.linear import Linear
from euclidnet.o3.rotations import rand_matrix
from euclidnet.tp import load_e3nn_weights

F64 = torch.float64
CASES = [
    ("128x0e+64x1o+32x2e", "128x0e+64x1o+32x2e", False),
    ("3x0e+2x1o+4x0e+1x3o+2x4e", "2x0e+3x1o+1x0e+2x3o+1x1e+1x4e", True),  # repeated, unsorted, l > 2, unused 1e
    ("3x0e+2x1o+0x2e+4x0e+1x3o", "2x0e+0x1o+3x1o+1x0e+2x3o+1x1e", False),  # zero multiplicities
]


@pytest.mark.parametrize("irreps_in,irreps_out,biases", CASES)
def test_matches_e3nn(irreps_in, irreps_out, biases):
    eo = pytest.importorskip("e3nn.o3")
    ours = Linear(irreps_in, irreps_out, biases=biases).to(F64)
    theirs = eo.Linear(irreps_in, irreps_out, biases=biases).to(F64)
    with torch.no_grad():
        if theirs.bias.numel():
            theirs.bias.normal_()
    load_e3nn_weights(ours, theirs)
    x = Irreps(irreps_in).randn(7, dtype=F64)
    assert (ours(x) - theirs(x)).abs().max() <= 1e-10
    if "0x" not in irreps_in and not biases:  # e3nn's per-sample path fails on these; checked below instead
        ours = Linear(irreps_in, irreps_out, shared_weights=False)
        theirs = eo.Linear(irreps_in, irreps_out, shared_weights=False)
        w = torch.randn(7, ours.weight_numel, dtype=F64)
        assert (ours(x, w) - theirs(x, w)).abs().max() <= 1e-10


def test_per_sample_equals_shared_rowwise():
    shared = Linear("3x0e+2x1o+1x2e+2x0e", "2x0e+3x1o+1x2e", biases=True).to(F64)
    per = Linear("3x0e+2x1o+1x2e+2x0e", "2x0e+3x1o+1x2e", biases=True, shared_weights=False)
    x = shared.irreps_in.randn(4, dtype=F64)
    w = torch.randn(4, shared.weight_numel, dtype=F64)
    b = torch.randn(4, shared.bias_numel, dtype=F64)
    out = per(x, w, b)
    for i in range(4):
        with torch.no_grad():
            shared.weight.copy_(w[i])
            shared.bias.copy_(b[i])
        assert (shared(x[i]) - out[i]).abs().max() <= 1e-12


def test_against_definition():
    """out_b = sum_a W_ab x_a / sqrt(sum mul_in) per irrep, written out by hand."""
    lin = Linear("2x1o+3x1o", "4x1o").to(F64)
    x = lin.irreps_in.randn(5, dtype=F64)
    W1 = lin.weight[:8].reshape(2, 4)
    W2 = lin.weight[8:].reshape(3, 4)
    ref = torch.einsum("uw,zui->zwi", W1, x[:, :6].reshape(5, 2, 3)) + torch.einsum(
        "uw,zui->zwi", W2, x[:, 6:].reshape(5, 3, 3)
    )
    assert (lin(x) - ref.reshape(5, 12) / math.sqrt(5)).abs().max() <= 1e-12


@pytest.mark.parametrize("irreps_in,irreps_out,biases", CASES[:2])
def test_equivariance(irreps_in, irreps_out, biases):
    lin = Linear(irreps_in, irreps_out, biases=biases).to(F64)
    with torch.no_grad():
        lin.bias.normal_()
    x = lin.irreps_in.randn(3, dtype=F64)
    for sign in (1.0, -1.0):
        R = sign * rand_matrix(dtype=F64)
        Din, Dout = lin.irreps_in.D_from_matrix(R), lin.irreps_out.D_from_matrix(R)
        assert (lin(x @ Din.T) - lin(x) @ Dout.T).abs().max() <= 1e-10


def test_variance():
    torch.manual_seed(0)
    lin = Linear("128x0e+64x1o+32x2e", "64x0e+32x1o+16x2e")
    out = lin(lin.irreps_in.randn(5000))
    for s in lin.irreps_out.slices():
        v = out[:, s].pow(2).mean().item()
        assert 0.8 < v < 1.2, v


def test_gradcheck_gradgradcheck():
    lin = Linear("2x0e+1x1o+2x2e+1x0e", "1x0e+2x1o+1x2e", biases=True, shared_weights=False)
    x = lin.irreps_in.randn(2, dtype=F64, requires_grad=True)
    w = torch.randn(2, lin.weight_numel, dtype=F64, requires_grad=True)
    b = torch.randn(2, lin.bias_numel, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lin, (x, w, b))
    assert torch.autograd.gradgradcheck(lin, (x, w, b))


def test_float32_and_batch_shapes():
    lin = Linear("4x0e+2x1o+2x3o", "3x0e+2x1o+1x3o").float()
    x = torch.randn(2, 3, lin.irreps_in.dim, dtype=torch.float32)
    out = lin(x)
    assert out.shape == (2, 3, lin.irreps_out.dim) and out.dtype == torch.float32
    ref = lin.double()(x.double())
    assert (out.double() - ref).abs().max() < 1e-5


def test_errors():
    lin = Linear("2x0e+1x1o", "1x1o")
    with pytest.raises(ValueError, match=r"shape \(3, 4\).*2x0e\+1x1o.*= 5"):
        lin(torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"weight has shape \(3,\); expected \(1,\)"):
        lin(torch.randn(3, 5), torch.randn(3))
    with pytest.raises(ValueError, match="joins different irreps"):
        Linear("1x0e", "1x1o", instructions=[(0, 0)])
    with pytest.raises(ValueError, match="i_out=2 does not exist"):
        Linear("1x0e", "1x0e", instructions=[(0, 2)])
    with pytest.raises(ValueError, match="only 0e output blocks can have a bias"):
        Linear("1x1o", "1x1o", biases=[True])
    per = Linear("1x0e", "2x0e", shared_weights=False)
    with pytest.raises(ValueError, match=r"pass weight of shape \[batch, 2\]"):
        per(torch.randn(3, 1))


def _plain(lin: Linear, monkeypatch: pytest.MonkeyPatch):
    """The same layer forced onto the plain (traceable) formulation instead of the custom autograd function."""
    monkeypatch.setattr(Linear, "_fast_path_ok", staticmethod(lambda x: False))
    return lin


FAST_CASES = [
    ("128x0e+64x1o+32x2e", "128x0e+64x1o+32x2e", False, None),
    # repeated irreps (non-adjacent blocks of one group), an unused input block, an unfed output block
    ("3x0e+2x1o+4x0e+1x3o+2x4e+2x1e", "2x0e+3x1o+1x0e+2x3o+1x1e+1x4e+2x2e", True, None),
    # a partial instruction list: blocks of one irrep only partly connected
    ("2x0e+3x1o+2x1o", "1x1o+2x0e+4x1o", False, [(1, 0), (2, 2), (0, 1)]),
]


@pytest.mark.parametrize("irreps_in,irreps_out,biases,instructions", FAST_CASES)
def test_fast_path_matches_plain_path(irreps_in, irreps_out, biases, instructions, monkeypatch):
    """The custom autograd function (preallocated output, manual backward) against the plain torch ops:
    values, first derivatives w.r.t. x, weights and biases, and second derivatives (create_graph)."""
    lin = Linear(irreps_in, irreps_out, biases=biases, instructions=instructions).to(F64)
    with torch.no_grad():
        lin.bias.normal_()
    x = lin.irreps_in.randn(6, dtype=F64, requires_grad=True)
    g = lin.irreps_out.randn(6, dtype=F64)

    def run():
        out = lin(x)
        params = [x, lin.weight] + ([lin.bias] if lin.bias.numel() else [])
        first = torch.autograd.grad((out * g).sum(), params, create_graph=True)
        second = torch.autograd.grad(sum((f * f).sum() for f in first), params, allow_unused=True)
        plain_first = torch.autograd.grad((lin(x) * g).sum(), params)
        return out.detach(), [f.detach() for f in first], second, plain_first

    fast = run()
    with monkeypatch.context() as m:
        _plain(lin, m)
        ref = run()
    assert (fast[0] - ref[0]).abs().max() <= 1e-12
    for a, b in zip(fast[1] + list(fast[3]), ref[1] + list(ref[3])):
        assert (a - b).abs().max() <= 1e-12
    for a, b in zip(fast[2], ref[2]):
        if a is None or b is None:
            assert a is None or a.abs().max() == 0
            assert b is None or b.abs().max() == 0
        else:
            assert (a - b).abs().max() <= 1e-11


def test_fast_path_gradcheck_and_expanded_grad():
    lin = Linear("2x0e+2x1o+1x2e+1x0e", "1x0e+3x1o+2x2e", biases=True).to(F64)
    x = lin.irreps_in.randn(3, dtype=F64, requires_grad=True)
    w = lin.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w: lin(x, w), (x, w))
    # y.sum() hands the backward a stride-0 gradient: equal to an explicit ones gradient
    (g1,) = torch.autograd.grad(lin(x).sum(), x)
    (g2,) = torch.autograd.grad(lin(x), x, torch.ones(3, lin.irreps_out.dim, dtype=F64))
    assert torch.equal(g1, g2)


def test_no_grad_and_weight_only_grad():
    lin = Linear("4x0e+3x1o+2x2e", "2x0e+3x1o+2x2e")
    x = lin.irreps_in.randn(5)
    with torch.no_grad():
        y0 = lin(x)
    y = lin(x)  # x does not require grad: only the weight gradient is formed
    (gw,) = torch.autograd.grad(y.pow(2).sum(), lin.weight)
    assert torch.equal(y0, y.detach())
    xr = x.clone().requires_grad_()
    gw2, _ = torch.autograd.grad(lin(xr).pow(2).sum(), [lin.weight, xr])
    assert torch.allclose(gw, gw2, atol=1e-6)


def test_torch_compile_fullgraph():
    lin = Linear("4x0e+2x1o+1x2e", "3x0e+2x1o+2x2e", biases=True)
    x = lin.irreps_in.randn(7, requires_grad=True)
    f = torch.compile(lin, fullgraph=True, backend="eager")
    out = f(x)
    assert torch.allclose(out, lin(x), atol=1e-6)
    (gc,) = torch.autograd.grad(out.sum(), x)
    (ge,) = torch.autograd.grad(lin(x).sum(), x)
    assert torch.allclose(gc, ge, atol=1e-6)
