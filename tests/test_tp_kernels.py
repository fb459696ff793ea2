"""Fused CPU tensor-product kernels (euclidnet.kernels._tp): equal to the pure-torch plan to round-off for
values and derivatives of every order, and dispatched only when they may run."""

from __future__ import annotations

import random

import pytest
import torch

import euclidnet.tp.execution as ex
from euclidnet.kernels import _tp as K
from euclidnet.o3.irreps import Irreps
from euclidnet.o3.spherical_harmonics import spherical_harmonics
from euclidnet.tp import ChannelwiseTensorProduct, FullyConnectedTensorProduct, TensorProduct

pytestmark = pytest.mark.skipif(not K.tp_kernel_available(), reason=f"no TP kernel: {K.tp_kernel_error()}")

F64 = torch.float64


@pytest.fixture(autouse=True)
def _enable_uvw(monkeypatch):
    """The 'uvw' engine is opt-in (not yet faster); these tests check its exactness."""
    monkeypatch.setattr(K, "ENABLE_UVW", True)
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def _rand_irreps(rng: random.Random, lmax: int = 3, nblocks: int = 4) -> str:
    blocks = []
    for _ in range(nblocks):
        l = rng.randint(0, lmax)
        p = rng.choice(["e", "o"])
        blocks.append(f"{rng.randint(1, 5)}x{l}{p}")
    return "+".join(blocks)  # unsorted, may repeat (l, p)


def _rand_tp(seed: int, mode: str, shared: bool) -> TensorProduct:
    rng = random.Random(seed)
    while True:
        i1, i2 = Irreps(_rand_irreps(rng)), Irreps(_rand_irreps(rng, nblocks=3))
        out_blocks = []
        ins = []
        for a, (m1, ir1) in enumerate(i1):
            for b, (_, ir2) in enumerate(i2):
                for ir in ir1 * ir2:
                    if rng.random() < 0.6:
                        mo = m1 if mode == "uvu" else rng.randint(1, 5)
                        out_blocks.append(f"{mo}x{ir}")
                        pw = rng.choice([1.0, 0.5, 2.5])
                        ins.append((a, b, len(out_blocks) - 1, mode, True, pw))
        if ins:
            # a repeated output block fed by two paths (exercises accumulation and fan-in)
            a, b, o = ins[0][:3]
            if mode == "uvw":
                ins.append((a, b, o, mode, True, 0.7))
            return TensorProduct(i1, i2, "+".join(out_blocks), ins, shared_weights=shared)


def _run(tp: TensorProduct, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None, fused: bool, order: int = 2):
    """Value, first derivatives (all operands) and a second-order quantity, with one path forced."""
    old = ex.FUSED_ENABLED
    ex.FUSED_ENABLED = fused
    try:
        ins = [x1, x2] + ([w] if w is not None else [tp.weight])
        out = tp(x1, x2, w) if w is not None else tp(x1, x2)
        g = torch.Generator().manual_seed(7)
        cot = torch.randn(out.shape, generator=g, dtype=out.dtype)
        res = [out.detach()]
        if order == 0:
            return res
        grads = torch.autograd.grad((out * cot).sum(), ins, create_graph=order > 1)
        res += [gr.detach() for gr in grads]
        if order > 1:
            s = sum((gr.sin() * (k + 1)).sum() for k, gr in enumerate(grads))
            res += [gr.detach() for gr in torch.autograd.grad(s, ins)]
        return res
    finally:
        ex.FUSED_ENABLED = old


def _assert_close(a: list[torch.Tensor], b: list[torch.Tensor], tol: float) -> None:
    for n, (p, q) in enumerate(zip(a, b)):
        assert p.shape == q.shape, (n, p.shape, q.shape)
        if q.numel() == 0:
            continue
        scale = q.abs().max().clamp_min(1e-30)
        err = ((p - q).abs().max() / scale).item()
        assert err <= tol, f"quantity {n}: relative error {err:.2e} > {tol:.0e}"


def _inputs(tp: TensorProduct, Z: int, dtype: torch.dtype, shared: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(Z, tp.irreps_in1.dim, generator=g, dtype=dtype, requires_grad=True)
    x2 = torch.randn(Z, tp.irreps_in2.dim, generator=g, dtype=dtype, requires_grad=True)
    w = None if shared else torch.randn(Z, tp.weight_numel, generator=g, dtype=dtype, requires_grad=True)
    return x1, x2, w


CASES = [
    (mode, shared, seed)
    for mode, shared in (("uvu", False), ("uvu", True), ("uvw", True), ("uvw", False))
    for seed in range(3)
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode,shared,seed", CASES)
def test_fused_equals_torch_path(mode, shared, seed, dtype):
    tp = _rand_tp(seed, mode, shared).to(dtype)
    assert tp._exec._fused is not None
    x1, x2, w = _inputs(tp, 13, dtype, shared, seed)
    _assert_close(_run(tp, x1, x2, w, True), _run(tp, x1, x2, w, False), TOL[dtype])


def _mixed_tp(seed: int) -> TensorProduct:
    """Per-sample 'uvu' and 'uvw' paths into shared output blocks (the block kernel takes both modes)."""
    a, b = _rand_tp(seed, "uvu", False), _rand_tp(seed, "uvw", False)
    ins = [(p.i_in1, p.i_in2, p.i_out, p.mode, True, p.path_weight) for p in a.descriptor.paths]
    ins += [(p.i_in1, p.i_in2, p.i_out + len(a.irreps_out), "uvw", True, p.path_weight) for p in b.descriptor.paths
            if p.i_in1 < len(a.irreps_in1) and p.i_in2 < len(a.irreps_in2)
            and a.irreps_in1[p.i_in1].ir == b.irreps_in1[p.i_in1].ir
            and a.irreps_in2[p.i_in2].ir == b.irreps_in2[p.i_in2].ir]
    out = Irreps(list(a.irreps_out) + list(b.irreps_out))
    return TensorProduct(a.irreps_in1, a.irreps_in2, out, ins, shared_weights=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("Z", [1, 15, 16, 17, 50])
def test_sample_blocks_mixed_modes(Z, dtype):
    """Batches that are not a multiple of the kernel's block of samples (and smaller than one block), with
    'uvu' and 'uvw' paths mixed: equal to the torch plan, values and derivatives of orders 1 and 2."""
    for seed in range(4):
        tp = _mixed_tp(seed).to(dtype)
        assert isinstance(tp._exec._fused, K.SampleBlockEngine)
        assert {p.mode for p in tp.descriptor.paths} <= {"uvu", "uvw"}
        x1, x2, w = _inputs(tp, Z, dtype, False, seed)
        _assert_close(_run(tp, x1, x2, w, True), _run(tp, x1, x2, w, False), TOL[dtype])


def _small_tp(mode: str, shared: bool) -> TensorProduct:
    i1, i2 = Irreps("2x0e+1x1o+1x2e"), Irreps("1x1o+1x0e")
    out = Irreps("2x0e+1x1o+2x1o+1x2e+1x3o+1x1e")
    ins = []
    for a, (m1, ir1) in enumerate(i1):
        for b, (_, ir2) in enumerate(i2):
            for c, (mo, ir) in enumerate(out):
                if ir in list(ir1 * ir2) and (mode == "uvw" or mo == m1):
                    ins.append((a, b, c, mode, True, 1.5 if c % 2 else 1.0))
    return TensorProduct(i1, i2, out, ins, shared_weights=shared).to(F64)


@pytest.mark.parametrize("mode,shared", [("uvu", False), ("uvu", True), ("uvw", True), ("uvw", False)])
def test_gradgradcheck(mode, shared):
    tp = _small_tp(mode, shared)
    assert tp._exec._fused is not None
    x1, x2, w = _inputs(tp, 2, F64, shared)
    if shared:
        w = torch.randn(tp.weight_numel, dtype=F64, requires_grad=True)

    def f(a, b, c):
        assert ex.fused_usable(a, b, c)
        return tp._exec(a, b, c)  # the executor: the fused path with explicit (also shared) weights

    assert torch.autograd.gradcheck(f, (x1, x2, w))
    assert torch.autograd.gradgradcheck(f, (x1, x2, w))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("which", [(True, True, True), (True, False, True), (False, True, True), (True, True, False)])
@pytest.mark.parametrize("mode", ["uvu", "uvw"])
def test_one_pass_first_order_backward(mode, which, seed, dtype, monkeypatch):
    """First-order backward of per-sample 'uvu'/'uvw' (the one-pass kernel) equals the torch plan, for every subset
    of operands that need a gradient; a path_weight 0 path keeps a zero weight gradient."""
    tp = _rand_tp(seed, mode, False).to(dtype)
    x1, x2, w = _inputs(tp, 37, dtype, False, seed)
    for t, need in zip((x1, x2, w), which):
        t.requires_grad_(need)
    ins = [t for t in (x1, x2, w) if t.requires_grad]
    calls = []
    orig = K.SampleBlockEngine.contract_many

    def spy(self, ops, targets):
        calls.append(targets)
        return orig(self, ops, targets)

    monkeypatch.setattr(K.SampleBlockEngine, "contract_many", spy)
    res = {}
    for fused in (True, False):
        ex.FUSED_ENABLED = fused
        try:
            out = tp(x1, x2, w)
            cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=dtype)
            res[fused] = [out.detach()] + list(torch.autograd.grad((out * cot).sum(), ins))
        finally:
            ex.FUSED_ENABLED = True
    # the forward (target 3), then every wanted gradient in one call
    assert calls == [(3,), tuple(s for s in range(3) if which[s])]
    _assert_close(res[True], res[False], TOL[dtype])


def test_per_sample_uvw_zero_path_weight():
    """A path with path_weight 0 is not computed but owns weights: their gradient must be exactly 0."""
    tp = TensorProduct(
        "2x0e+1x1o", "0e+1o", "3x0e+2x1o",
        [(0, 0, 0, "uvw", True), (1, 1, 0, "uvw", True, 0.0), (1, 0, 1, "uvw", True), (0, 1, 1, "uvw", True)],
        shared_weights=False,
    ).to(F64)
    assert isinstance(tp._exec._fused, K.SampleBlockEngine)
    x1, x2, w = _inputs(tp, 9, F64, False)
    fused, ref = _run(tp, x1, x2, w, True), _run(tp, x1, x2, w, False)
    _assert_close(fused, ref, 1e-12)
    dead = tp.descriptor.paths[1].weight_slice
    assert fused[3][:, dead].abs().max() == 0


def test_zero_batch_and_noncontiguous():
    for mode, shared in (("uvu", False), ("uvu", True), ("uvw", True)):
        tp = _small_tp(mode, shared)
        x1, x2, w = _inputs(tp, 0, F64, shared)
        a = _run(tp, x1, x2, w, True)
        b = _run(tp, x1, x2, w, False)
        _assert_close(a, b, 0.0)
        # non-contiguous inputs
        g = torch.Generator().manual_seed(5)
        X1 = torch.randn(tp.irreps_in1.dim, 9, generator=g, dtype=F64).t().requires_grad_(True)
        X2 = torch.randn(9, 2 * tp.irreps_in2.dim, generator=g, dtype=F64)[:, ::2].requires_grad_(True)
        W = None if shared else torch.randn(tp.weight_numel, 9, generator=g, dtype=F64).t().requires_grad_(True)
        _assert_close(_run(tp, X1, X2, W, True), _run(tp, X1, X2, W, False), TOL[F64])


def test_broadcast_batch_dims():
    tp = ChannelwiseTensorProduct("3x0e+2x1o+2x2e", "0e+1o+2e", "3x0e+2x1o+2x2e").to(F64)
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(4, 1, tp.irreps_in1.dim, generator=g, dtype=F64)
    x2 = torch.randn(1, 5, 9, generator=g, dtype=F64)
    w = torch.randn(4, 5, tp.weight_numel, generator=g, dtype=F64)
    _assert_close(_run(tp, x1, x2, w, True, 0), _run(tp, x1, x2, w, False, 0), TOL[F64])


def test_force_training_double_backward():
    """E = sum of a uvu convolution over edges of SH(r_ij); loss on forces -dE/dpos; grads of the
    parameters (a double backward through the kernel) agree between the fused and the torch path."""
    torch.manual_seed(0)
    irr = "4x0e+3x1o+2x2e"
    conv = ChannelwiseTensorProduct(irr, "0e+1o+2e", irr).to(F64)
    lin = FullyConnectedTensorProduct(irr, "0e", "2x0e").to(F64)
    g = torch.Generator().manual_seed(1)
    pos0 = torch.randn(6, 3, generator=g, dtype=F64)
    feats = Irreps(irr).randn(6, generator=g, dtype=F64)
    radial = torch.nn.Linear(1, conv.weight_numel).to(F64)
    src, dst = torch.tensor([0, 1, 2, 3, 4, 5, 0, 2]), torch.tensor([1, 2, 3, 4, 5, 0, 3, 5])

    def loss(fused: bool):
        old = ex.FUSED_ENABLED
        ex.FUSED_ENABLED = fused
        try:
            pos = pos0.clone().requires_grad_(True)
            vec = pos[src] - pos[dst]
            sh = spherical_harmonics([0, 1, 2], vec, True, "component")
            w = radial(vec.norm(dim=1, keepdim=True))
            msg = conv(feats[src], sh, w)
            node = torch.zeros(6, msg.shape[1], dtype=F64).index_add(0, dst, msg)
            E = lin(node, torch.ones(6, 1, dtype=F64)).sum()
            forces = -torch.autograd.grad(E, pos, create_graph=True)[0]
            L = (forces**2).sum()
            params = list(radial.parameters()) + [lin.weight]
            return [L.detach()] + [p.detach() for p in torch.autograd.grad(L, params)]
        finally:
            ex.FUSED_ENABLED = old

    _assert_close(loss(True), loss(False), 1e-11)


def test_dispatch(monkeypatch):
    calls = []
    orig = K.TriLinear.apply

    def spy(*a):
        calls.append(a[1])
        return orig(*a)

    monkeypatch.setattr(K.TriLinear, "apply", spy)
    tp = ChannelwiseTensorProduct("2x0e+2x1o", "0e+1o", "2x0e+2x1o")
    x1, x2, w = _inputs(tp, 5, torch.float32, False)
    ref = tp(x1, x2, w)
    assert calls == [3]
    # the environment variable disables the kernels
    monkeypatch.setenv("EUCLIDNET_DISABLE_KERNELS", "1")
    calls.clear()
    out = tp(x1, x2, w)
    assert calls == []
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    monkeypatch.delenv("EUCLIDNET_DISABLE_KERNELS")
    # unsupported dtype / modes take the torch path
    calls.clear()
    tp.to(torch.float16)  # constants stay exact; float16 is not a kernel dtype
    tp.float()
    full = TensorProduct("2x0e+2x1o", "2x0e", "2x0e+2x1o", [(0, 0, 0, "uvu", True), (1, 0, 1, "uuu", False)])
    assert full._exec._fused is None
    per_sample_uvw = TensorProduct("2x0e", "0e", "2x0e", [(0, 0, 0, "uvw", True)], shared_weights=False)
    assert isinstance(per_sample_uvw._exec._fused, K.SampleBlockEngine)  # per-sample 'uvw': always fused
    mixed = TensorProduct(
        "2x0e", "0e", "2x0e", [(0, 0, 0, "uvw", True), (0, 0, 0, "uvu", True)], shared_weights=False
    )
    assert isinstance(mixed._exec._fused, K.SampleBlockEngine)  # per-sample 'uvu' and 'uvw' mix freely
    mixed_shared = TensorProduct("2x0e", "0e", "2x0e", [(0, 0, 0, "uvw", True), (0, 0, 0, "uvu", True)])
    assert mixed_shared._exec._fused is None
    monkeypatch.setattr(K, "ENABLE_UVW", False)  # the default: 'uvw' takes the torch plan
    assert FullyConnectedTensorProduct("2x0e+1x1o", "0e+1o", "2x0e+1x1o")._exec._fused is None
    monkeypatch.setattr(K, "ENABLE_UVW", True)
    # under torch.compile the torch plan is traced
    compiled = torch.compile(tp, backend="eager", fullgraph=True)
    calls.clear()
    out = compiled(x1, x2, w)
    assert calls == []
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def _e3nn_case(name: str, Z: int):
    g = torch.Generator().manual_seed(0)
    if name == "uvu":
        i1, i2 = "32x0e+32x1o+32x2e", "1x0e+1x1o+1x2e"
        ours = ChannelwiseTensorProduct(i1, i2, i1)
        x1 = torch.randn(Z, 288, generator=g)
        x2 = spherical_harmonics([0, 1, 2], torch.randn(Z, 3, generator=g), True, "component")
        w = torch.randn(Z, 352, generator=g)
        return ours, (x1, x2, w)
    irr = "64x0e+64x1o+64x1e"
    ours = FullyConnectedTensorProduct(irr, irr, irr)
    return ours, (torch.randn(Z, 448, generator=g), torch.randn(Z, 448, generator=g))


@pytest.mark.parametrize("name", ["uvu", "uvw"])
def test_equals_e3nn_on_workloads(name):
    eo = pytest.importorskip("e3nn.o3")
    ours, args = _e3nn_case(name, 6)
    if name == "uvu":
        theirs = eo.TensorProduct(
            *[str(i) for i in (ours.irreps_in1, ours.irreps_in2, ours.irreps_out)],
            ours.instructions,
            shared_weights=False,
            internal_weights=False,
        )
    else:
        theirs = eo.FullyConnectedTensorProduct("64x0e+64x1o+64x1e", "64x0e+64x1o+64x1e", "64x0e+64x1o+64x1e")
        with torch.no_grad():
            theirs.weight.copy_(ours.weight)
    args = [a.double().requires_grad_(True) for a in args]
    ours.double(), theirs.double()
    assert ours._exec._fused is not None and ex.fused_usable(*args)
    out = ours(*args)
    ref = theirs(*args)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    params_o = list(args) + ([ours.weight] if name == "uvw" else [])
    params_t = list(args) + ([theirs.weight] if name == "uvw" else [])
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=F64)
    go = torch.autograd.grad((out * cot).sum(), params_o)
    gt = torch.autograd.grad((ref * cot).sum(), params_t)
    for a, b in zip(go, gt):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["uvu", "uvw"])
def test_workloads_float32_fused_vs_torch(name):
    ours, args = _e3nn_case(name, 300)
    args = [a.requires_grad_(True) for a in args]
    x1, x2 = args[:2]
    w = args[2] if name == "uvu" else None
    _assert_close(_run(ours, x1, x2, w, True, 1), _run(ours, x1, x2, w, False, 1), 1e-5)


def _scatter_case(kind: str, E: int, dtype: torch.dtype, seed: int = 0):
    tp = {"uvu": lambda: _rand_tp(seed, "uvu", False), "uvw": lambda: _rand_tp(seed, "uvw", False),
          "mixed": lambda: _mixed_tp(seed)}[kind]().to(dtype)
    g = torch.Generator().manual_seed(seed)
    N, M = 6, 9  # M > number of distinct dst: some output rows receive nothing (isolated nodes)
    x1 = torch.randn(N, tp.irreps_in1.dim, generator=g, dtype=dtype, requires_grad=True)
    x2 = torch.randn(E, tp.irreps_in2.dim, generator=g, dtype=dtype, requires_grad=True)
    w = torch.randn(E, tp.weight_numel, generator=g, dtype=dtype, requires_grad=True)
    src = torch.randint(0, N, (E,), generator=g)
    dst = torch.randint(0, M - 2, (E,), generator=g)
    return tp, x1, x2, w, src, dst, M


def _scatter_run(tp, x1, x2, w, src, dst, M, fused: bool, order: int = 2):
    old = ex.FUSED_ENABLED
    ex.FUSED_ENABLED = fused
    try:
        out = tp.scatter(x1, x2, src, dst, M, w)
        assert (type(out.grad_fn).__name__ == "BlockTPBackward") == (fused and x2.shape[0] > 0)
        cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
        res = [out.detach()]
        grads = torch.autograd.grad((out * cot).sum(), [x1, x2, w], create_graph=order > 1)
        res += [gr.detach() for gr in grads]
        if order > 1:
            s = sum((gr.sin() * (k + 1)).sum() for k, gr in enumerate(grads))
            second = torch.autograd.grad(s, [x1, x2, w], allow_unused=True, materialize_grads=True)
            res += [gr.detach() for gr in second]
        return res
    finally:
        ex.FUSED_ENABLED = old


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("E", [1, 17, 100])
@pytest.mark.parametrize("kind", ["uvu", "uvw", "mixed"])
def test_scatter_equals_gather_product_sum(kind, E, dtype):
    """``TensorProduct.scatter`` (fused gather + product + sum over dst) equals the torch plan's
    ``index_add(dst, tp(x1[src], x2, w))``: values, first derivatives and a second-order quantity."""
    case = _scatter_case(kind, E, dtype)
    _assert_close(_scatter_run(*case, fused=True), _scatter_run(*case, fused=False), TOL[dtype])


def test_scatter_first_order_backward_one_pass(monkeypatch):
    """Without create_graph the backward is one indexed kernel pass (the output cotangent is read at dst,
    no per-edge gather) computing exactly the gradients that are needed."""
    tp, x1, x2, w, src, dst, M = _scatter_case("mixed", 40, F64)
    calls = []
    orig = K.SampleBlockEngine.contract_many

    def spy(self, ops, targets, idx1=None, idxo=None, scatter_rows=None, basis=None):
        calls.append((targets, idx1 is not None, idxo is not None, scatter_rows))
        return orig(self, ops, targets, idx1, idxo, scatter_rows, basis)

    monkeypatch.setattr(K.SampleBlockEngine, "contract_many", spy)
    x2.requires_grad_(False)
    out = tp.scatter(x1, x2, src, dst, M, w)
    g1, gw = torch.autograd.grad(out.square().sum(), [x1, w])
    assert calls == [((3,), True, True, M), ((0, 2), True, True, None)]
    ex.FUSED_ENABLED = False
    try:
        ref = tp(x1[src], x2, w)
        ref = ref.new_zeros(M, ref.shape[1]).index_add(0, dst, ref)
        r1, rw = torch.autograd.grad(ref.square().sum(), [x1, w])
    finally:
        ex.FUSED_ENABLED = True
    _assert_close([out.detach(), g1, gw], [ref.detach(), r1, rw], 1e-12)


def test_scatter_deterministic_across_threads():
    """Rows are summed in increasing sample order whatever the number of threads: bitwise equal."""
    tp, x1, x2, w, src, dst, M = _scatter_case("mixed", 3000, torch.float32)
    old = torch.get_num_threads()
    res = []
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            res.append(_scatter_run(tp, x1, x2, w, src, dst, M, fused=True, order=1))
    finally:
        torch.set_num_threads(old)
    for a, b in zip(*res):
        assert torch.equal(a, b)


def _tiny_mixed_case():
    """A 4-path 'uvu'/'uvw' product with 3 nodes and 7 edges (small enough for gradgradcheck), its node and
    edge inputs and a generator for more."""
    tp = TensorProduct(
        "2x0e+1x1o", "0e+1o", "2x0e+1x1o+1x0e",
        [(0, 0, 0, "uvu", True), (1, 1, 2, "uvw", True), (1, 0, 1, "uvu", True), (0, 1, 1, "uvw", True)],
        shared_weights=False,
    ).to(F64)
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(3, tp.irreps_in1.dim, generator=g, dtype=F64, requires_grad=True)
    x2 = torch.randn(7, tp.irreps_in2.dim, generator=g, dtype=F64, requires_grad=True)
    return tp, x1, x2, g


def test_scatter_gradgradcheck_and_empty():
    tp, x1, x2, g = _tiny_mixed_case()
    w = torch.randn(7, tp.weight_numel, generator=g, dtype=F64, requires_grad=True)
    src, dst, M = torch.tensor([0, 1, 2, 0, 1, 2, 2]), torch.tensor([1, 1, 0, 3, 1, 0, 1]), 4

    def f(a, b, c):
        return tp.scatter(a, b, src, dst, M, c)

    assert torch.autograd.gradcheck(f, (x1, x2, w))
    assert torch.autograd.gradgradcheck(f, (x1, x2, w))
    # no edges: zeros of the right shape, gradients zero
    tp0, x1, x2, w, src, dst, M = _scatter_case("uvw", 0, F64)
    out = tp0.scatter(x1, x2, src, dst, M, w)
    assert out.shape == (M, tp0.irreps_out.dim) and out.abs().max() == 0


def test_scatter_bad_input():
    tp, x1, x2, w, src, dst, M = _scatter_case("uvu", 10, F64)
    with pytest.raises(ValueError, match=r"src must be an integer tensor of shape \(10,\)"):
        tp.scatter(x1, x2, src[:5], dst, M, w)
    with pytest.raises(ValueError, match="dst must be an integer tensor"):
        tp.scatter(x1, x2, src, dst.double(), M, w)
    with pytest.raises(IndexError, match=r"src has values in \[.*\]; expected \[0, 5\]"):
        tp.scatter(x1, x2, src + 6, dst, M, w)
    with pytest.raises(IndexError, match=r"dst has values in \[-1, .*\]; expected \[0, 8\]"):
        tp.scatter(x1, x2, src, dst - dst.min() - 1, M, w)
    with pytest.raises(ValueError, match=rf"expected \(10, {tp.weight_numel}\)"):
        tp.scatter(x1, x2, src, dst, M, w[:3])
    with pytest.raises(ValueError, match="x2"):
        tp.scatter(x1, x2[:, :-1], src, dst, M, w)


def _factored_run(tp, x1, x2, c, B, src, dst, M, fused: bool, order: int = 2):
    """Values and derivatives (w.r.t. x1, x2, coefficients and basis) of the factored-weight product,
    plain (``src is None``) or scattered."""
    old = ex.FUSED_ENABLED
    ex.FUSED_ENABLED = fused
    try:
        if src is None:
            out = tp(x1, x2, c, weight_basis=B)
        else:
            out = tp.scatter(x1, x2, src, dst, M, c, weight_basis=B)
        fn = out.grad_fn
        if type(fn).__name__ == "ViewBackward0":  # forward reshapes to the batch shape
            fn = fn.next_functions[0][0]
        assert (type(fn).__name__ == "BlockTPBackward") == (fused and x2.shape[0] > 0)
        cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
        ins = [x1, x2, c, B]
        grads = torch.autograd.grad((out * cot).sum(), ins, create_graph=order > 1)
        res = [out.detach()] + [gr.detach() for gr in grads]
        if order > 1:
            s = sum((gr.sin() * (k + 1)).sum() for k, gr in enumerate(grads))
            second = torch.autograd.grad(s, ins, allow_unused=True, materialize_grads=True)
            res += [gr.detach() for gr in second]
        return res
    finally:
        ex.FUSED_ENABLED = old


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scattered", [False, True])
@pytest.mark.parametrize("kind", ["uvu", "uvw", "mixed"])
def test_factored_weights_equal_torch_path(kind, scattered, dtype):
    """``weight_basis``: the kernel forms ``w = c @ B`` block by block; equal to the torch plan on the
    materialised weights, with gradients for the coefficients and the basis (orders 1 and 2)."""
    tp, x1, x2, _, src, dst, M = _scatter_case(kind, 37, dtype)
    g = torch.Generator().manual_seed(11)
    c = torch.randn(37, 5, generator=g, dtype=dtype, requires_grad=True)
    B = torch.randn(5, tp.weight_numel, generator=g, dtype=dtype, requires_grad=True)
    if not scattered:
        x1 = torch.randn(37, tp.irreps_in1.dim, generator=g, dtype=dtype, requires_grad=True)
        src = dst = M = None
    a = _factored_run(tp, x1, x2, c, B, src, dst, M, True)
    b = _factored_run(tp, x1, x2, c, B, src, dst, M, False)
    _assert_close(a, b, TOL[dtype])


def test_factored_one_pass_backward_and_gradcheck(monkeypatch):
    tp, x1, x2, g = _tiny_mixed_case()
    c = torch.randn(7, 3, generator=g, dtype=F64, requires_grad=True)
    B = torch.randn(3, tp.weight_numel, generator=g, dtype=F64, requires_grad=True)
    src, dst, M = torch.tensor([0, 1, 2, 0, 1, 2, 2]), torch.tensor([1, 1, 0, 3, 1, 0, 1]), 4

    def f(a, b, cc, bb):
        return tp.scatter(a, b, src, dst, M, cc, weight_basis=bb)

    assert torch.autograd.gradcheck(f, (x1, x2, c, B))
    assert torch.autograd.gradgradcheck(f, (x1, x2, c, B))
    calls = []
    orig = K.SampleBlockEngine.contract_many

    def spy(self, ops, targets, idx1=None, idxo=None, scatter_rows=None, basis=None):
        calls.append((targets, basis is not None))
        return orig(self, ops, targets, idx1, idxo, scatter_rows, basis)

    monkeypatch.setattr(K.SampleBlockEngine, "contract_many", spy)
    c.requires_grad_(False)  # only the basis (and x1, x2) need gradients: target 2 still runs, for the basis
    torch.autograd.grad(f(x1, x2, c, B).sum(), [x1, x2, B])
    assert calls == [((3,), True), ((0, 1, 2), True)]


def test_factored_bad_input_and_mlp_factors():
    from euclidnet.nn import FullyConnectedNet

    tp, x1, x2, w, src, dst, M = _scatter_case("uvw", 10, F64)
    B = torch.randn(4, tp.weight_numel, dtype=F64)
    with pytest.raises(ValueError, match=r"with weight_basis \[4, .*\] expected \[\.\.\., 4\]"):
        tp.scatter(x1, x2, src, dst, M, w, weight_basis=B)
    with pytest.raises(ValueError, match="weight_basis has shape"):
        tp.scatter(x1, x2, src, dst, M, w[:, :4], weight_basis=B[:, :-1])
    shared = FullyConnectedTensorProduct("2x0e", "0e", "2x0e").to(F64)
    with pytest.raises(ValueError, match="per-sample weights"):
        shared(torch.randn(3, 2, dtype=F64), torch.randn(3, 1, dtype=F64), torch.randn(3, 2, dtype=F64),
               weight_basis=torch.randn(2, shared.weight_numel, dtype=F64))
    mlp = FullyConnectedNet([6, 8, 5, tp.weight_numel], torch.nn.functional.silu).to(F64)
    r = torch.randn(10, 6, dtype=F64)
    h, basis = mlp.factored(r)
    torch.testing.assert_close(h @ basis, mlp(r), rtol=1e-13, atol=1e-13)
    a = tp.scatter(x1, x2, src, dst, M, h, weight_basis=basis)
    torch.testing.assert_close(a, tp.scatter(x1, x2, src, dst, M, mlp(r)), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="linear output layer"):
        FullyConnectedNet([6, 5], torch.tanh, out_act=True).factored(r)


@pytest.mark.parametrize("factored", [False, True])
def test_scatter_equivariant_rotations_and_inversion(factored):
    """The fused message-passing product of edge harmonics, scattered to nodes, is O(3)-equivariant:
    node features and edge vectors rotated (and inverted) give rotated node outputs (float64, 1e-10)."""
    from euclidnet.testing import assert_equivariant

    tp = ChannelwiseTensorProduct("3x0e+2x1o+2x2e", "0e+1o+2e+3o", "3x0e+2x1o+2x2e+1x1e", shared_weights=False)
    tp = tp.to(F64)
    g = torch.Generator().manual_seed(4)
    N, E, Kb = 5, 23, 3
    x = tp.irreps_in1.randn(N, generator=g, dtype=F64)
    vec = torch.randn(E, 3, generator=g, dtype=F64)
    src, dst = torch.randint(0, N, (E,), generator=g), torch.randint(0, N, (E,), generator=g)
    coef = torch.randn(E, Kb if factored else tp.weight_numel, generator=g, dtype=F64)
    basis = torch.randn(Kb, tp.weight_numel, generator=g, dtype=F64) if factored else None

    def f(xn, v):
        sh = spherical_harmonics([0, 1, 2, 3], v, True, "component")
        return tp.scatter(xn, sh, src, dst, N, coef, weight_basis=basis)

    assert ex.fused_usable(x, vec)
    assert_equivariant(f, [tp.irreps_in1, "1o"], [tp.irreps_out], (x, vec), atol=1e-10, rtol=1e-10)
