"""Chunked shared-weight 'uvw' tensor products (euclidnet.tp._uvw_shared) against the pure-torch plan."""

from __future__ import annotations

import threading

import pytest
import torch

import euclidnet.tp._uvw_shared as U
import euclidnet.tp.execution as ex
from euclidnet.o3.irreps import Irreps
from euclidnet.testing import assert_equivariant
from euclidnet.tp import ChannelwiseTensorProduct, FullyConnectedTensorProduct, TensorProduct

F64 = torch.float64


def _fc(i1: str, i2: str, out: str, **kw) -> TensorProduct:
    return FullyConnectedTensorProduct(i1, i2, out, **kw)


def _weighted_uvw() -> TensorProduct:
    """'uvw' paths with user path weights (one of them 0: an empty path), two paths into one output."""
    i1, i2, out = Irreps("3x0e+2x1o+2x2e"), Irreps("2x0e+3x1o"), Irreps("4x0e+2x1o+3x2e")
    ins = [(0, 0, 0, "uvw", True, 0.5), (1, 1, 0, "uvw", True, 2.0), (1, 0, 1, "uvw", True), (2, 1, 1, "uvw", True)]
    ins += [(2, 0, 2, "uvw", True, 0.0), (1, 1, 2, "uvw", True, 3.0)]
    return TensorProduct(i1, i2, out, ins)


DESCRIPTORS = {
    "mixed_l3": lambda: _fc("3x0e+2x1o+2x2e+1x3o", "2x0e+3x1o+1x2e+1x3e", "4x0e+2x1o+3x1e+2x2e+1x3o+2x3e"),
    "mul0_blocks": lambda: _fc("2x0e+0x1o+3x1e", "0x0e+2x1o+1x1e", "3x0e+0x1e+2x1o+2x1e"),
    "path_weights": _weighted_uvw,
    "norm_path": lambda: _fc(
        "2x0e+2x1o", "1x0e+2x1o", "2x0e+2x1e", irrep_normalization="norm", path_normalization="path"
    ),
    "scalars": lambda: _fc("5x0e", "3x0e", "4x0e"),
    "workload_small": lambda: _fc("4x0e+4x1o+4x1e", "4x0e+4x1o+4x1e", "4x0e+4x1o+4x1e"),
}


def _inputs(tp: TensorProduct, Z: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(Z, tp.irreps_in1.dim, generator=g, dtype=dtype, requires_grad=True)
    x2 = torch.randn(Z, tp.irreps_in2.dim, generator=g, dtype=dtype, requires_grad=True)
    return x1, x2


def _run(tp: TensorProduct, x1, x2, cot, chunked: bool, weight=None):
    """Output and gradients (x1, x2, weight) of <cot, tp(x1, x2)>, chunked code or the torch plan."""
    old = ex.FUSED_ENABLED
    ex.FUSED_ENABLED = chunked
    try:
        w = tp.weight if weight is None else weight
        out = tp(x1, x2, weight)
        grads = torch.autograd.grad((out * cot).sum(), [x1, x2, w], allow_unused=True)
    finally:
        ex.FUSED_ENABLED = old
    return [out.detach()] + [None if g is None else g.detach() for g in grads]


def _assert_rel(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    if b.numel() == 0:
        return
    scale = b.abs().max().clamp_min(1e-30)
    assert ((a - b).abs().max() / scale).item() <= tol


@pytest.fixture
def small_chunks(monkeypatch):
    """A few samples per chunk, so that small batches run several chunks and a ragged last one."""
    monkeypatch.setattr(U, "CHUNK_BYTES", 2048)


@pytest.mark.parametrize("name", sorted(DESCRIPTORS))
@pytest.mark.parametrize("Z", [0, 1, 5, 3000])
def test_equals_torch_plan_float64(name, Z, small_chunks):
    tp = DESCRIPTORS[name]().to(F64)
    assert tp._exec._uvw_shared is not None
    x1, x2 = _inputs(tp, Z, F64)
    cot = torch.randn(Z, tp.irreps_out.dim, dtype=F64, generator=torch.Generator().manual_seed(5))
    got = _run(tp, x1, x2, cot, True)
    want = _run(tp, x1, x2, cot, False)
    for a, b in zip(got, want):
        _assert_rel(a, b, 1e-12)


@pytest.mark.parametrize("offset", [-1, 0, 1])
@pytest.mark.parametrize("chunks", [1, 2, 3])
def test_chunk_boundaries(chunks, offset, small_chunks):
    """Batches of a whole number of chunks, one sample less or more, with two workers."""
    tp = DESCRIPTORS["mixed_l3"]().to(F64)
    plan = tp._exec._uvw_shared
    pieces = plan._pieces(plan._single[3], 8)
    n = max(pieces)
    assert min(pieces) > 1 and n > min(pieces)  # paths in one or several pieces per chunk
    Z = chunks * n + offset
    x1, x2 = _inputs(tp, Z, F64, seed=Z)
    cot = torch.randn(Z, tp.irreps_out.dim, dtype=F64)
    want = _run(tp, x1, x2, cot, False)
    torch.set_num_threads(2)
    got = _run(tp, x1, x2, cot, True)
    for a, b in zip(got, want):
        _assert_rel(a, b, 1e-12)


def test_concurrent_callers(small_chunks):
    """Python threads calling tensor products at once: right values, the thread count restored."""
    tp = DESCRIPTORS["workload_small"]().to(F64)
    x1, x2 = _inputs(tp, 300, F64)
    want = tp(x1, x2).detach()
    torch.set_num_threads(2)
    results: list[torch.Tensor] = []

    def call() -> None:
        for _ in range(3):
            results.append(tp(x1.detach(), x2.detach()))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 9
    for r in results:
        _assert_rel(r, want, 1e-12)
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_workers_and_ragged_chunks(threads, monkeypatch):
    """Several workers (one thread each), chunks not dividing the batch: same values; the caller's number
    of threads is restored."""
    monkeypatch.setattr(U, "CHUNK_BYTES", 3 * 8 * 64 * 7)  # 7 samples per chunk for this descriptor
    tp = _fc("8x0e+8x1o+8x1e", "8x0e+8x1o+8x1e", "8x0e+8x1o+8x1e").to(F64)
    x1, x2 = _inputs(tp, 101, F64)
    cot = torch.randn(101, tp.irreps_out.dim, dtype=F64)
    want = _run(tp, x1, x2, cot, False)
    torch.set_num_threads(threads)
    got = _run(tp, x1, x2, cot, True)
    assert torch.get_num_threads() == threads
    for a, b in zip(got, want):
        _assert_rel(a, b, 1e-12)


def test_float32(small_chunks):
    tp = DESCRIPTORS["mixed_l3"]()
    x1, x2 = _inputs(tp, 37, torch.float32)
    cot = torch.randn(37, tp.irreps_out.dim)
    got = _run(tp.float(), x1, x2, cot.float(), True)
    ref = _run(tp.double(), x1.detach().double().requires_grad_(), x2.detach().double().requires_grad_(), cot, False)
    for a, b in zip(got, ref):
        assert a.dtype == torch.float32
        _assert_rel(a.double(), b, 1e-5)


def _count_calls(monkeypatch, module, names) -> dict[str, int]:
    """Wraps ``module.<name>`` for each name so that calls are counted (in the returned dict)."""
    calls = dict.fromkeys(names, 0)
    for name in names:
        real = getattr(module, name)

        def counted(*a, _real=real, _name=name):
            calls[_name] += 1
            return _real(*a)

        monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.parametrize("Z", [1, 37, 130])
def test_float32_compiled_kernels(Z, monkeypatch):
    """float32 with multiplicities that are multiples of 16 (the fused GEMMs run) and others (they do not):
    values and gradients against the float64 torch plan; the fused kernels are seen to run."""
    from euclidnet.kernels import _uvw_small

    if not _uvw_small.fused_available():
        pytest.skip("fused kernels need an AVX2/FMA build")
    calls = _count_calls(monkeypatch, _uvw_small, ("fused_outer", "fused_wgrad", "fused_first"))
    tp = _fc("16x0e+32x1o+3x2e", "16x0e+16x1o+2x1e", "32x0e+16x1o+5x1e+16x2e")
    x1, x2 = _inputs(tp, Z, torch.float32)
    cot = torch.randn(Z, tp.irreps_out.dim, dtype=torch.float32)
    got = _run(tp.float(), x1, x2, cot, True)
    x1d, x2d = x1.detach().double().requires_grad_(), x2.detach().double().requires_grad_()
    ref = _run(tp.double(), x1d, x2d, cot.double(), False)
    for a, b in zip(got, ref):
        assert a.dtype == torch.float32
        _assert_rel(a.double(), b, 1e-5)
    assert min(calls.values()) > 0, calls


def test_float64_fused_kernels(small_chunks, monkeypatch):
    """float64 through the fused kernels (multiplicities multiples of 8): values, first and second derivatives
    equal the torch plan, and gradcheck / gradgradcheck pass w.r.t. both inputs."""
    from euclidnet.kernels import _uvw_small

    if not _uvw_small.fused_available():
        pytest.skip("fused kernels need an AVX2/FMA build")
    calls = _count_calls(monkeypatch, _uvw_small, ("fused_outer", "fused_wgrad", "fused_first"))
    tp = _fc("16x0e+8x1o+16x1e", "16x0e+8x1e", "8x0e+16x1o+8x1e").to(F64)
    x1, x2 = _inputs(tp, 19, F64)
    cot = torch.randn(19, tp.irreps_out.dim, dtype=F64)
    for a, b in zip(_run(tp, x1, x2, cot, True), _run(tp, x1, x2, cot, False)):
        _assert_rel(a, b, 1e-12)
    assert min(calls.values()) > 0, calls
    tp.weight.requires_grad_(False)
    a, b = x1[:2].detach().requires_grad_(), x2[:2].detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda u, v: tp(u, v), (a, b))
    assert torch.autograd.gradgradcheck(lambda u, v: tp(u, v), (a, b))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_wide_multiplicities(dtype, small_chunks, monkeypatch):
    """Multiplicities of 32 and 48, where the compiled small contractions run (float64, and float32 without the
    fused kernels): values and gradients equal the torch plan."""
    from euclidnet.kernels import _uvw_small

    if not _uvw_small.small_kernel_available():
        pytest.skip("no C compiler")
    monkeypatch.setattr(_uvw_small, "fused_available", lambda: False)
    calls = _count_calls(monkeypatch, _uvw_small, ("outer", "rowmat", "dotsum"))
    tp = _fc("32x0e+48x1o+32x2e", "32x0e+32x1e", "48x0e+32x1o+32x1e+32x2e").to(dtype)
    x1, x2 = _inputs(tp, 23, dtype)
    cot = torch.randn(23, tp.irreps_out.dim, dtype=dtype)
    got = _run(tp, x1, x2, cot, True)
    want = _run(tp, x1, x2, cot, False)
    for a, b in zip(got, want):
        _assert_rel(a, b, 1e-12 if dtype == torch.float64 else 1e-5)
    assert min(calls.values()) > 0, calls


def test_without_compiled_kernels(small_chunks, monkeypatch):
    """The torch fallbacks of the small contractions (used when no C compiler works) equal the torch plan."""
    from euclidnet.kernels import _uvw_small

    monkeypatch.setattr(_uvw_small, "small_kernel_available", lambda: False)
    tp = DESCRIPTORS["mixed_l3"]().to(F64)
    x1, x2 = _inputs(tp, 41, F64)
    cot = torch.randn(41, tp.irreps_out.dim, dtype=F64)
    for a, b in zip(_run(tp, x1, x2, cot, True), _run(tp, x1, x2, cot, False)):
        _assert_rel(a, b, 1e-12)


def test_external_weight_and_broadcast_batch(small_chunks):
    """Shared weights passed to forward (requiring grad), inputs with broadcast batch dimensions."""
    tp = DESCRIPTORS["mixed_l3"]().to(F64)
    tp_ext = _fc(str(tp.irreps_in1), str(tp.irreps_in2), str(tp.irreps_out), internal_weights=False).to(F64)
    w = torch.randn(tp_ext.weight_numel, dtype=F64, requires_grad=True)
    g = torch.Generator().manual_seed(2)
    x1 = torch.randn(3, 1, tp.irreps_in1.dim, dtype=F64, generator=g, requires_grad=True)
    x2 = torch.randn(1, 4, tp.irreps_in2.dim, dtype=F64, generator=g, requires_grad=True)
    cot = torch.randn(3, 4, tp.irreps_out.dim, dtype=F64, generator=g)
    got = _run(tp_ext, x1, x2, cot, True, weight=w)
    want = _run(tp_ext, x1, x2, cot, False, weight=w)
    for a, b in zip(got, want):
        _assert_rel(a, b, 1e-12)


GRADCHECK = {
    "l3": lambda: _fc("2x0e+1x1o+1x2e", "1x0e+1x1o+1x3o", "1x0e+2x1o+1x1e+1x2e+1x3e"),
    "path_weights": _weighted_uvw,
    "workload_like": lambda: _fc("2x0e+2x1o+2x1e", "2x0e+2x1o+2x1e", "2x0e+2x1o+2x1e"),
}


@pytest.mark.parametrize("name", sorted(GRADCHECK))
def test_gradcheck_gradgradcheck(name, monkeypatch):
    monkeypatch.setattr(U, "CHUNK_BYTES", 256)  # one or two samples per chunk
    tp = GRADCHECK[name]().to(F64)
    tp_ext = TensorProduct(tp.irreps_in1, tp.irreps_in2, tp.irreps_out, tp.instructions, internal_weights=False)
    tp_ext = tp_ext.to(F64)
    x1, x2 = _inputs(tp_ext, 3, F64)
    w = torch.randn(tp_ext.weight_numel, dtype=F64, requires_grad=True)
    calls = []
    orig = U.UVWShared.apply

    def spy(*a):
        calls.append(a[1])
        return orig(*a)

    U.UVWShared.apply = spy
    try:
        assert torch.autograd.gradcheck(tp_ext, (x1, x2, w))
        assert torch.autograd.gradgradcheck(tp_ext, (x1, x2, w))
    finally:
        U.UVWShared.apply = orig
    assert set(calls) == {0, 1, 2, 3}  # the derivatives ran the chunked contractions of every slot


def test_second_derivatives_equal_torch_plan(small_chunks):
    """Force training: a loss of d(energy)/d(x1) differentiated w.r.t. the weights and x2."""
    tp = DESCRIPTORS["workload_small"]().to(F64)
    x1, x2 = _inputs(tp, 23, F64)

    def loss(chunked: bool):
        old = ex.FUSED_ENABLED
        ex.FUSED_ENABLED = chunked
        try:
            energy = tp(x1, x2).pow(2).sum()
            (f,) = torch.autograd.grad(energy, [x1], create_graph=True)
            return torch.autograd.grad(f.pow(2).sum(), [tp.weight, x2])
        finally:
            ex.FUSED_ENABLED = old

    for a, b in zip(loss(True), loss(False)):
        _assert_rel(a, b, 1e-12)


def test_second_derivatives_float32_compiled_kernels(monkeypatch):
    """The same force-training derivatives in float32 through the fused kernels (every slot as a target, since
    the derivatives beyond the first run the forward with permuted slots), against the float64 torch plan."""
    from euclidnet.kernels import _uvw_small

    if not _uvw_small.fused_available():
        pytest.skip("fused kernels need an AVX2/FMA build")
    tp32 = _fc("16x0e+32x1o", "16x0e+16x1o+16x1e", "32x0e+16x1o+16x1e").float()
    tp64 = _fc("16x0e+32x1o", "16x0e+16x1o+16x1e", "32x0e+16x1o+16x1e").to(F64)
    with torch.no_grad():
        tp32.weight.copy_(tp64.weight)
    x1, x2 = _inputs(tp64, 29, F64)

    def loss(tp, chunked: bool, dtype):
        a, b = x1.detach().to(dtype).requires_grad_(), x2.detach().to(dtype).requires_grad_()
        old = ex.FUSED_ENABLED
        ex.FUSED_ENABLED = chunked
        try:
            energy = tp(a, b).pow(2).sum()
            (f,) = torch.autograd.grad(energy, [a], create_graph=True)
            return torch.autograd.grad(f.pow(2).sum(), [tp.weight, b, a])
        finally:
            ex.FUSED_ENABLED = old

    calls = _count_calls(monkeypatch, _uvw_small, ("fused_outer", "fused_wgrad", "fused_first"))
    for a, b in zip(loss(tp32, True, torch.float32), loss(tp64, False, F64)):
        assert a.dtype == torch.float32
        _assert_rel(a.double(), b, 1e-4)
    assert min(calls.values()) > 0, calls


@pytest.mark.parametrize("name", ["mixed_l3", "path_weights"])
def test_equivariance(name, small_chunks):
    tp = DESCRIPTORS[name]().to(F64)
    x1, x2 = _inputs(tp, 9, F64)
    assert_equivariant(
        tp,
        [tp.irreps_in1, tp.irreps_in2],
        [tp.irreps_out],
        (x1.detach(), x2.detach()),
        atol=1e-10,
        rtol=1e-10,
        do_translation=False,
    )


def test_equivariance_through_fused_kernels(small_chunks, monkeypatch):
    """Rotations and inversion in float64 with multiplicities that run the fused kernels (seen to run)."""
    from euclidnet.kernels import _uvw_small

    if not _uvw_small.fused_available():
        pytest.skip("fused kernels need an AVX2/FMA build")
    calls = _count_calls(monkeypatch, _uvw_small, ("fused_outer", "fused_first"))
    tp = _fc("16x0e+8x1o+8x2e", "16x0e+8x1e", "8x0e+16x1o+8x1e+8x2o").to(F64)
    x1, x2 = _inputs(tp, 9, F64)
    assert_equivariant(
        tp,
        [tp.irreps_in1, tp.irreps_in2],
        [tp.irreps_out],
        (x1.detach(), x2.detach()),
        atol=1e-10,
        rtol=1e-10,
        do_translation=False,
    )
    assert calls["fused_outer"] + calls["fused_first"] > 0, calls


def test_inference_mode_with_workers(small_chunks):
    tp = DESCRIPTORS["workload_small"]().to(F64)
    x1, x2 = _inputs(tp, 50, F64)
    want = _run(tp, x1, x2, torch.zeros(50, tp.irreps_out.dim, dtype=F64), False)[0]
    torch.set_num_threads(2)
    with torch.inference_mode():
        got = tp(x1.detach(), x2.detach())
    _assert_rel(got, want, 1e-12)


def test_dispatch(monkeypatch):
    calls = []
    orig = U.UVWShared.apply

    def spy(*a):
        calls.append(a[1])
        return orig(*a)

    monkeypatch.setattr(U.UVWShared, "apply", spy)
    tp = _fc("4x0e+2x1o", "2x0e+1x1o", "3x0e+2x1o")
    x1, x2 = tp.irreps_in1.randn(5), tp.irreps_in2.randn(5)
    ref = tp(x1, x2)
    assert calls == [3]
    calls.clear()
    monkeypatch.setattr(ex, "FUSED_ENABLED", False)  # the pure-torch plan
    torch.testing.assert_close(tp(x1, x2), ref)
    assert calls == []
    monkeypatch.setattr(ex, "FUSED_ENABLED", True)
    # traced: torch.compile (and torch.export, jit, functorch) run the torch plan
    compiled = torch.compile(tp, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x1, x2), ref)
    assert calls == []
    vmapped = torch.func.vmap(lambda a, b: tp(a, b))(x1.unsqueeze(1), x2.unsqueeze(1))
    torch.testing.assert_close(vmapped.squeeze(1), ref)
    assert calls == []
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: the torch plan, autocast's dtypes
        assert tp(x1.float(), x2.float()).dtype == torch.bfloat16
    assert calls == []
    # not this code: per-sample weights, other modes, float16
    assert _fc("2x0e", "2x0e", "2x0e", shared_weights=False)._exec._uvw_shared is None
    assert ChannelwiseTensorProduct("2x0e+2x1o", "0e+1o", "2x0e+2x1o")._exec._uvw_shared is None
    mixed = TensorProduct("2x0e", "2x0e", "2x0e", [(0, 0, 0, "uvw", True), (0, 0, 0, "uvu", True)])
    assert mixed._exec._uvw_shared is None
    half = tp.to(torch.bfloat16)
    half(x1.to(torch.bfloat16), x2.to(torch.bfloat16))
    assert calls == []


def test_order_plans_cover_every_slot():
    """Planner sanity on tp_uvw_fc's irreps: 19 GEMM units forward, 42 for the first-order backward."""
    tp = _fc("64x0e+64x1o+64x1e", "64x0e+64x1o+64x1e", "64x0e+64x1o+64x1e")
    plan = tp._exec._uvw_shared

    def units(ops_per_path):
        total = 0
        for pp, ops in zip(plan.paths, ops_per_path):
            for op in ops:
                total += pp.d[op.t] if op.kind in ("outer", "weight") else pp.d[op.p]
        return total

    assert units(plan._single[3]) == 19
    assert units(plan._backward_plan((True, True, True))) == 42
    assert {op.kind for ops in plan._backward_plan((True, True, True)) for op in ops} == {
        "outer",
        "first",
        "shared",
        "weight",
    }


def test_workspace_pool():
    """Scratch is kept between calls (no page faults per call) and can be released."""
    tp = DESCRIPTORS["workload_small"]().to(F64)
    x1, x2 = _inputs(tp, 40, F64)
    ref = tp(x1, x2)
    assert U._POOL._free
    U.release_workspaces()
    assert not U._POOL._free
    _assert_rel(tp(x1, x2), ref, 0.0)
