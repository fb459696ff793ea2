"""Tests of euclidnet.tp: equivariance, e3nn oracle, normalisation, gradients, errors, compile/export."""

from __future__ import annotations

import math

import pytest
import torch

from euclidnet.o3.irreps import Irreps
from euclidnet.o3.rotations import rand_matrix
from euclidnet.o3.wigner import wigner_3j
from euclidnet.tp import (
    MODES,
    ChannelwiseTensorProduct,
    ElementwiseTensorProduct,
    FullTensorProduct,
    FullyConnectedTensorProduct,
    TensorProduct,
    TensorProductDescriptor,
    TensorSquare,
    load_e3nn_weights,
)

F64 = torch.float64


def _mode_tp(mode: str, has_weight: bool, shared: bool = True) -> TensorProduct:
    """A small TP exercising ``mode`` on several (l1, l2, l_out) triples, including repeated blocks."""
    i1 = i2 = "3x0e+3x1o+3x1e"
    mo = {"uvw": 2, "uvu": 3, "uvv": 3, "uuw": 4 if has_weight else 1, "uuu": 3, "uvuv": 9, "uvu<v": 3, "u<vw": 5}[mode]
    out = f"{mo}x0e+{mo}x1o+{mo}x1e+{mo}x2e"
    I1, I2, O = Irreps(i1), Irreps(i2), Irreps(out)
    ins = [
        (a, b, c, mode, has_weight)
        for a in range(len(I1))
        for b in range(len(I2))
        for c in range(len(O))
        if O[c].ir in list(I1[a].ir * I2[b].ir)
    ]
    return TensorProduct(i1, i2, out, ins, shared_weights=shared).to(F64)


MODE_CASES = [
    (m, hw, sw)
    for m in MODES
    for hw in (True, False)
    for sw in (True, False)
    if not (m in ("uvw", "u<vw") and not hw) and not (not hw and not sw)
]


def _check_equivariance(f, irreps_ins, irreps_out, batch=4, weight=None):
    g = torch.Generator().manual_seed(1)
    xs = [Irreps(i).randn(batch, generator=g, dtype=F64) for i in irreps_ins]
    for improper in (False, True):
        R = rand_matrix(dtype=F64, generator=g)
        if improper:
            R = -R
        Ds = [Irreps(i).D_from_matrix(R) for i in irreps_ins]
        Dout = Irreps(irreps_out).D_from_matrix(R)
        args = [x @ D.T for x, D in zip(xs, Ds)]
        lhs = f(*args) if weight is None else f(*args, weight)
        rhs = (f(*xs) if weight is None else f(*xs, weight)) @ Dout.T
        assert (lhs - rhs).abs().max().item() <= 1e-10


@pytest.mark.parametrize("mode,has_weight,shared", MODE_CASES)
def test_equivariance_every_mode(mode, has_weight, shared):
    tp = _mode_tp(mode, has_weight, shared)
    w = None if shared else torch.randn(4, tp.weight_numel, dtype=F64)
    _check_equivariance(tp, [tp.irreps_in1, tp.irreps_in2], tp.irreps_out, weight=w)


def test_equivariance_classes():
    cases = [
        (FullyConnectedTensorProduct("2x0e+2x1o+1x2e", "1x0e+1x1o+1x2o", "3x0e+2x1o+2x1e+1x2e+1x3o"), 2),
        (ElementwiseTensorProduct("2x0e+1x1o+1x2e", "1x1o+3x1e"), 2),
        (FullTensorProduct("2x0e+1x1o", "1x1o+1x2e"), 2),
    ]
    for tp, _ in cases:
        tp = tp.to(F64)
        _check_equivariance(tp, [tp.irreps_in1, tp.irreps_in2], tp.irreps_out)
    cw = ChannelwiseTensorProduct("4x0e+4x1o+2x2e", "0e+1o+2e").to(F64)
    _check_equivariance(
        cw, [cw.irreps_in1, cw.irreps_in2], cw.irreps_out, weight=torch.randn(4, cw.weight_numel, dtype=F64)
    )
    for sq in (TensorSquare("2x0e+3x1o+2x2e"), TensorSquare("2x0e+3x1o+1x1e", "2x0e+2x1e+1x2e+1x0o")):
        sq = sq.to(F64)
        _check_equivariance(sq, [sq.irreps_in], sq.irreps_out)


# -- e3nn oracle ---------------------------------------------------------------------------------------


def _e3nn():
    return pytest.importorskip("e3nn.o3")


def _close(a, b, tol=1e-10):
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= tol


@pytest.mark.parametrize(
    "i1,i2,out",
    [
        ("32x0e+32x1o+32x2e", "1x0e+1x1o+1x2e", "16x0e+8x1o+4x2e"),
        ("3x0e+2x1o+1x2e+2x1o", "2x0e+1x1o+1x1e+1x2e", "2x0e+3x1o+1x2e+2x1e+1x0o"),  # repeated, unsorted
        ("3x0e+0x1o+2x1e", "2x0e+1x1o", "0x0e+2x1e+3x1o+1x0e"),  # zero multiplicities
    ],
)
def test_fully_connected_matches_e3nn(i1, i2, out):
    eo = _e3nn()
    ours = FullyConnectedTensorProduct(i1, i2, out).to(F64)
    theirs = eo.FullyConnectedTensorProduct(i1, i2, out).to(F64)
    load_e3nn_weights(ours, theirs)
    x1, x2 = Irreps(i1).randn(6, dtype=F64), Irreps(i2).randn(6, dtype=F64)
    _close(ours(x1, x2), theirs(x1, x2))
    # per-sample weights
    ours = FullyConnectedTensorProduct(i1, i2, out, shared_weights=False)
    theirs = eo.FullyConnectedTensorProduct(i1, i2, out, shared_weights=False)
    w = torch.randn(6, ours.weight_numel, dtype=F64)
    _close(ours(x1, x2, w), theirs(x1, x2, w))


def test_channelwise_uvu_matches_e3nn_per_sample_weights():
    eo = _e3nn()
    for i1, i2, out in [
        ("32x0e+32x1o+32x2e", "1x0e+1x1o+1x2e", "32x0e+32x1o+32x2e"),
        ("4x0e+2x1o+4x1o+3x2e", "2x0e+1x1o+2x2e", None),  # mul2 > 1, repeated irreps, NequIP-built output
        ("4x0e+0x1o+3x1e", "1x0e+1x1o", "4x0e+3x1e+0x1o+3x0o"),
    ]:
        ours = ChannelwiseTensorProduct(i1, i2, out)
        theirs = eo.TensorProduct(
            i1, i2, str(ours.irreps_out), ours.instructions, shared_weights=False, internal_weights=False
        )
        load_e3nn_weights(ours, theirs)
        x1, x2 = Irreps(i1).randn(7, dtype=F64), Irreps(i2).randn(7, dtype=F64)
        w = torch.randn(7, ours.weight_numel, dtype=F64)
        _close(ours(x1, x2, w), theirs(x1, x2, w))


@pytest.mark.parametrize("mode,has_weight,shared", MODE_CASES)
def test_every_mode_matches_e3nn(mode, has_weight, shared):
    eo = _e3nn()
    ours = _mode_tp(mode, has_weight, shared)
    theirs = eo.TensorProduct(
        str(ours.irreps_in1), str(ours.irreps_in2), str(ours.irreps_out), ours.instructions, shared_weights=shared
    ).to(F64)
    load_e3nn_weights(ours, theirs)
    x1, x2 = ours.irreps_in1.randn(5, dtype=F64), ours.irreps_in2.randn(5, dtype=F64)
    w = None if shared else torch.randn(5, ours.weight_numel, dtype=F64)
    _close(ours(x1, x2, w), theirs(x1, x2, w) if w is not None else theirs(x1, x2))


@pytest.mark.parametrize("irrep_normalization", ["component", "norm", "none"])
@pytest.mark.parametrize("path_normalization", ["element", "path", "none"])
def test_normalization_options_match_e3nn(irrep_normalization, path_normalization):
    eo = _e3nn()
    args = ("2x0e+3x1o+1x2e", "1x0e+2x1o", "3x0e+2x1o+2x1e+1x2e")
    ours = FullyConnectedTensorProduct(
        *args, irrep_normalization=irrep_normalization, path_normalization=path_normalization
    ).to(F64)
    theirs = eo.FullyConnectedTensorProduct(
        *args, irrep_normalization=irrep_normalization, path_normalization=path_normalization
    ).to(F64)
    load_e3nn_weights(ours, theirs)
    x1, x2 = Irreps(args[0]).randn(4, dtype=F64), Irreps(args[1]).randn(4, dtype=F64)
    _close(ours(x1, x2), theirs(x1, x2))


def test_square_full_elementwise_match_e3nn():
    eo = _e3nn()
    for irr, out in [("3x0e+2x1o+2e", None), ("3x0e+2x1o+2e", "2x0e+3x1e+1x2e"), ("1x0e+1x1o", None), ("2x1e", None)]:
        ours, theirs = TensorSquare(irr, out).to(F64), eo.TensorSquare(irr, out).to(F64)
        assert str(ours.irreps_out) == str(theirs.irreps_out)
        load_e3nn_weights(ours, theirs)
        x = Irreps(irr).randn(3, dtype=F64)
        _close(ours(x), theirs(x))
    a, b = "2x0e+1x1o+3x2e", "1x1o+1x2e"
    ours, theirs = FullTensorProduct(a, b), eo.FullTensorProduct(a, b)
    assert str(ours.irreps_out) == str(theirs.irreps_out)
    x1, x2 = Irreps(a).randn(3, dtype=F64), Irreps(b).randn(3, dtype=F64)
    _close(ours(x1, x2), theirs(x1, x2))
    a, b = "2x0e+1x1o", "1x1o+2x2e"
    ours, theirs = (
        ElementwiseTensorProduct(a, b, ["1o", "2e", "3o"]),
        eo.ElementwiseTensorProduct(a, b, ["1o", "2e", "3o"]),
    )
    assert str(ours.irreps_out) == str(theirs.irreps_out)
    x1, x2 = Irreps(a).randn(3, dtype=F64), Irreps(b).randn(3, dtype=F64)
    _close(ours(x1, x2), theirs(x1, x2))


# -- independent reference (no e3nn) ------------------------------------------------------------------


def test_uvw_against_definition():
    """out[w,k] = sqrt((2l+1)/fan_in) sum C_ijk x1[u,i] x2[v,j] W[u,v,w] written out by hand."""
    tp = FullyConnectedTensorProduct("2x1o", "3x1o", "2x1e+1x0e").to(F64)
    x1, x2 = torch.randn(5, 6, dtype=F64), torch.randn(5, 9, dtype=F64)
    a, b = x1.reshape(5, 2, 3), x2.reshape(5, 3, 3)
    W1 = tp.weight[: 2 * 3 * 2].reshape(2, 3, 2)
    W0 = tp.weight[12:].reshape(2, 3, 1)
    o1 = math.sqrt(3 / 6) * torch.einsum("ijk,zui,zvj,uvw->zwk", wigner_3j(1, 1, 1, F64), a, b, W1)
    # C(1,1,0) = I/sqrt(3) (a dot product)
    o0 = math.sqrt(1 / 6) * torch.einsum("zui,zvi,uvw->zw", a, b, W0) / math.sqrt(3)
    ref = torch.cat([o1.reshape(5, 6), o0.reshape(5, 1)], dim=1)
    _close(tp(x1, x2), ref, 1e-12)


@pytest.mark.parametrize("order", ["out", "x1", "x2", "planned"])
def test_uvw_contraction_orders_equal_definition(order):
    """Each summation order of shared-weight 'uvw' paths (execution._uvw_order) equals the definition
    ``coefficient * sum C_ijk x1[u,i] x2[v,j] W[u,v,w]``, values and gradients, on every (l1, l2, l_out) with
    l <= 2, unequal multiplicities and two paths into one output block."""
    i1, i2, out = "3x0e+2x1o+2x2e", "2x0e+3x1o+1x2e", "4x0e+2x1o+3x1e+2x2e"
    tp = FullyConnectedTensorProduct(i1, i2, out).to(F64)
    ex = tp._exec
    uvw = [n for n, p in enumerate(tp.descriptor.paths) if not p.is_empty]
    if order == "planned":  # the planner's own choice, several orders accumulating into shared output blocks
        assert len(set(ex._order.values())) == 3
    else:
        ex._order = {n: order for n in uvw}
        ex._consts = ex._build_consts()  # the "x1" order keeps its CG block transposed
    g = torch.Generator().manual_seed(3)
    x1 = torch.randn(6, tp.irreps_in1.dim, generator=g, dtype=F64, requires_grad=True)
    x2 = torch.randn(6, tp.irreps_in2.dim, generator=g, dtype=F64, requires_grad=True)
    d = tp.descriptor
    s1, s2, so = d.irreps_in1.slices(), d.irreps_in2.slices(), d.irreps_out.slices()
    blocks = [torch.zeros(6, mul, ir.dim, dtype=F64) for mul, ir in d.irreps_out]
    for n, p in enumerate(d.paths):
        a = x1[:, s1[p.i_in1]].reshape(6, p.mul1, -1)
        b = x2[:, s2[p.i_in2]].reshape(6, p.mul2, -1)
        W = tp.weight_view_for_path(n)
        C = wigner_3j(p.l1, p.l2, p.l_out, F64)
        blocks[p.i_out] = blocks[p.i_out] + p.coefficient * torch.einsum("ijk,zui,zvj,uvw->zwk", C, a, b, W)
    ref = torch.cat([blk.reshape(6, -1) for blk in blocks], dim=1)
    assert so[-1].stop == ref.shape[1]
    import euclidnet.tp.execution as exe

    old = exe.FUSED_ENABLED
    exe.FUSED_ENABLED = False  # the torch plan (the opt-in fused 'uvw' engine has its own order)
    try:
        out_ = tp(x1, x2)
        _close(out_, ref, 1e-12)
        cot = torch.randn(ref.shape, generator=g, dtype=F64)
        got = torch.autograd.grad((out_ * cot).sum(), [x1, x2, tp.weight])
        want = torch.autograd.grad((ref * cot).sum(), [x1, x2, tp.weight])
        for a, b in zip(got, want):
            _close(a, b, 1e-12)
    finally:
        exe.FUSED_ENABLED = old


def test_uvw_order_choice_avoids_outer_products():
    """A scalar dot product (the attention logit) is summed weights-first; a large GEMM-bound path whose
    x2 block is scalar meets the weights with x2 (one row per sample instead of three)."""
    dot = FullyConnectedTensorProduct("11x0e+4x1o", "12x0e+3x1o", "0e")
    assert dot._exec._order[0] in ("x1", "x2")
    big = FullyConnectedTensorProduct("64x1o", "64x0e", "64x1o")
    assert big._exec._order[0] == "x2"
    same = FullyConnectedTensorProduct("64x1o", "64x1o", "64x1e")
    assert same._exec._order[0] == "out"


def test_cross_product_uuu():
    """C(1,1,1) = eps/sqrt(6): 'uuu' of two vectors is their cross product times sqrt(3)/sqrt(6)."""
    tp = TensorProduct("1x1o", "1x1o", "1x1e", [(0, 0, 0, "uuu", False)]).to(F64)
    x, y = torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    _close(tp(x, y), torch.linalg.cross(x, y) * math.sqrt(3) / math.sqrt(6), 1e-12)


def test_batch_broadcast_and_float32():
    tp = FullyConnectedTensorProduct("3x0e+2x1o", "1x0e+1x1o", "2x0e+2x1o").float()
    x1, x2 = torch.randn(2, 1, 9, dtype=torch.float32), torch.randn(1, 5, 4, dtype=torch.float32)
    out = tp(x1, x2)
    assert out.shape == (2, 5, 8) and out.dtype == torch.float32
    ref = tp.to(F64)(x1.double().expand(2, 5, 9), x2.double().expand(2, 5, 4))
    assert (out.double() - ref).abs().max() < 1e-5
    # the float64 master constants survive a float32 round trip of the module
    tp.float().double()
    assert (tp(x1.double(), x2.double()) - ref).abs().max() < 1e-13


# -- normalisation -------------------------------------------------------------------------------------


def test_variance_fully_connected_and_channelwise():
    torch.manual_seed(0)
    fc = FullyConnectedTensorProduct("16x0e+16x1o+8x2e", "8x0e+8x1o+4x2e", "8x0e+8x1o+8x1e+8x2e").float()
    x1, x2 = fc.irreps_in1.randn(2000, dtype=torch.float32), fc.irreps_in2.randn(2000, dtype=torch.float32)
    out = fc(x1, x2)
    for (mul, ir), s in zip(fc.irreps_out, fc.irreps_out.slices()):
        v = out[:, s].pow(2).mean().item()
        assert 0.8 < v < 1.2, (mul, ir, v)
    cw = ChannelwiseTensorProduct("16x0e+16x1o+16x2e", "0e+1o+2e", "16x0e+16x1o+16x2e")
    from euclidnet.o3.spherical_harmonics import spherical_harmonics

    cw = cw.float()
    x1 = cw.irreps_in1.randn(8000, dtype=torch.float32)
    x2 = spherical_harmonics([0, 1, 2], torch.randn(8000, 3, dtype=torch.float32), True)
    w = torch.randn(8000, cw.weight_numel, dtype=torch.float32)
    out = cw(x1, x2, w)
    for s in cw.irreps_out.slices():
        v = out[:, s].pow(2).mean().item()
        assert 0.8 < v < 1.2, v


# -- gradients -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: ChannelwiseTensorProduct("1x0e+1x1o", "0e+1o+2e", "1x0e+1x1o+1x2e"),
        lambda: FullyConnectedTensorProduct("1x0e+1x1o", "1x1o", "1x0e+1x1e", shared_weights=False),
        lambda: TensorProduct("2x1o", "2x1o", "1x1e", [(0, 0, 0, "uvu<v", True)], shared_weights=False),
        lambda: TensorProduct("1x1o", "2x0e", "2x1o", [(0, 0, 0, "uvv", True)], shared_weights=False),
    ],
)
def test_gradcheck_and_gradgradcheck(make):
    tp = make().to(F64)
    x1 = tp.irreps_in1.randn(1, dtype=F64, requires_grad=True)
    x2 = tp.irreps_in2.randn(1, dtype=F64, requires_grad=True)
    w = torch.randn(1, tp.weight_numel, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(tp, (x1, x2, w))
    assert torch.autograd.gradgradcheck(tp, (x1, x2, w))


def test_double_backward_internal_weights():
    tp = FullyConnectedTensorProduct("1x0e+1x1o", "1x1o", "1x1o").to(F64)
    x1 = tp.irreps_in1.randn(1, dtype=F64, requires_grad=True)
    x2 = tp.irreps_in2.randn(1, dtype=F64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b, w: tp(a, b, w), (x1, x2, tp.weight.detach().requires_grad_()))


# -- descriptor ----------------------------------------------------------------------------------------


def test_descriptor_is_inspectable_data():
    d = ChannelwiseTensorProduct("32x0e+32x1o+32x2e", "0e+1o+2e", "32x0e+32x1o+32x2e").descriptor
    assert isinstance(d, TensorProductDescriptor)
    assert len(d.paths) == 11 and d.weight_numel == 352
    assert [p.weight_offset for p in d.paths] == [32 * i for i in range(11)]
    p = d.paths[0]
    fan = sum(q.mul2 for q in d.paths if q.i_out == p.i_out)
    assert p.coefficient == pytest.approx(math.sqrt((2 * p.l_out + 1) / fan))
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        d.paths[0].mode = "uvw"  # frozen
    assert d.cg(0).shape == (1, 1, 1)


# -- errors --------------------------------------------------------------------------------------------


def test_errors():
    with pytest.raises(ValueError, match="selection rule"):
        TensorProduct("1x1o", "1x1o", "1x3o", [(0, 0, 0, "uvw", True)])
    with pytest.raises(ValueError, match="parity"):
        TensorProduct("1x1o", "1x1o", "1x1o", [(0, 0, 0, "uvw", True)])
    with pytest.raises(ValueError, match="i_in2=3 does not exist"):
        TensorProduct("1x1o", "1x1o", "1x0e", [(0, 3, 0, "uvw", True)])
    with pytest.raises(ValueError, match="valid modes are uvw, uvu"):
        TensorProduct("1x1o", "1x1o", "1x0e", [(0, 0, 0, "xyz", True)])
    with pytest.raises(ValueError, match="mul1 == mul_out"):
        TensorProduct("2x1o", "1x1o", "3x0e", [(0, 0, 0, "uvu", True)])
    with pytest.raises(ValueError, match="irrep_normalization"):
        TensorProduct("1x1o", "1x1o", "1x0e", [(0, 0, 0, "uvw", True)], irrep_normalization="bad")
    tp = FullyConnectedTensorProduct("2x0e+1x1o", "1x1o", "1x1o")
    with pytest.raises(ValueError, match=r"shape \(4, 6\).*2x0e\+1x1o.*= 5"):
        tp(torch.randn(4, 6), torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"shape \(13,\); expected \(2,\)"):
        tp(torch.randn(4, 5), torch.randn(4, 3), torch.randn(13))
    cw = ChannelwiseTensorProduct("2x0e", "1x0e", "2x0e")
    with pytest.raises(ValueError, match=r"pass weight of shape \[batch, 2\]"):
        cw(torch.randn(3, 2), torch.randn(3, 1))
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 2\]"):
        cw(torch.randn(3, 2), torch.randn(3, 1), torch.randn(3, 5))


# -- compile / export ----------------------------------------------------------------------------------


def _small():
    return ChannelwiseTensorProduct("4x0e+4x1o", "0e+1o", "4x0e+4x1o"), FullyConnectedTensorProduct(
        "4x0e+2x1o", "0e+1o", "2x0e+2x1o"
    )


def test_export():
    for tp in _small():
        args = (tp.irreps_in1.randn(5), tp.irreps_in2.randn(5))
        if not tp.shared_weights:
            args = args + (torch.randn(5, tp.weight_numel),)
        ep = torch.export.export(tp, args)
        assert (ep.module()(*args) - tp(*args)).abs().max() < 1e-6


def test_dynamo_fullgraph_no_graph_break():
    tp = _small()[0]
    args = (tp.irreps_in1.randn(5), tp.irreps_in2.randn(5), torch.randn(5, tp.weight_numel))
    f = torch.compile(tp, fullgraph=True, backend="eager")
    assert (f(*args) - tp(*args)).abs().max() < 1e-6


@pytest.mark.slow
def test_torch_compile_inductor_fwd_bwd():
    for tp in _small():
        args = [tp.irreps_in1.randn(5, requires_grad=True), tp.irreps_in2.randn(5, requires_grad=True)]
        if not tp.shared_weights:
            args.append(torch.randn(5, tp.weight_numel, requires_grad=True))
        f = torch.compile(tp, fullgraph=True)
        a, b = f(*args), tp(*args)
        assert (a - b).abs().max() < 1e-5
        ga = torch.autograd.grad(a.sum(), args)
        gb = torch.autograd.grad(b.sum(), args)
        for x, y in zip(ga, gb):
            assert (x - y).abs().max() < 1e-4
