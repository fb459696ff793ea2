"""The compiled CPU kernels of euclidnet.o3.Linear (euclidnet.kernels._linear) against the torch fallbacks:
values, first and second derivatives, gradcheck, float32 accuracy, equivariance, gating."""

from __future__ import annotations

import contextlib

import pytest
import torch

from euclidnet.kernels import _linear
from euclidnet.kernels._linear import LinearKernelPlan, linear_kernel_available, linear_kernel_error
from euclidnet.o3.linear import Linear
from euclidnet.o3.rotations import rand_matrix

F64 = torch.float64

pytestmark = pytest.mark.skipif(not linear_kernel_available(), reason=f"no linear kernel: {linear_kernel_error()}")

CASES = [
    # blocks absent on one side (7x3o in, 6x2e out fed by 1x2e), odd multiplicities
    ("3x0e+5x1o+1x2e+7x3o", "2x0e+4x1o+6x2e", None),
    ("128x0e+64x1o+32x2e", "128x0e+64x1o+32x2e", None),
    # repeated l in different places, l = 3, 4 (generic degree path), an unused input and an unfed output block
    ("3x0e+2x1o+4x0e+1x3o+2x4e+2x1e", "2x0e+3x1o+1x0e+2x3o+1x1e+1x4e+2x2e", None),
    # multiplicities off the 6-row / 16-column register tiles
    ("17x0e+19x1o+13x2e", "23x0e+11x1o+37x2e", None),
    # partial instruction list (one input block feeds two outputs, one output block is fed by nothing)
    ("2x0e+3x1o+2x1o", "1x1o+2x0e+4x1o+3x0e", [(1, 0), (2, 2), (0, 1), (1, 2)]),
    # zero multiplicities
    ("3x0e+0x1o+2x1o", "0x0e+2x0e+3x1o+0x2e", None),
    # no output for the 1o inputs: their input gradient is zero
    ("4x0e+3x1o", "2x0e", None),
]


@contextlib.contextmanager
def _path(monkeypatch: pytest.MonkeyPatch, path: str):
    """Run Linear on ``path``: 'kernel' (asserted to be used), 'shared' (EUCLIDNET_DISABLE_KERNELS: the torch
    custom autograd function) or 'plain' (the traceable torch formulation)."""
    calls = {"forward": 0, "backward": 0}
    with monkeypatch.context() as m:
        if path == "kernel":
            for name in calls:
                orig = getattr(LinearKernelPlan, name)

                def counted(self, *a, _orig=orig, _name=name, **k):
                    calls[_name] += 1
                    return _orig(self, *a, **k)

                m.setattr(LinearKernelPlan, name, counted)
        else:
            m.setenv("EUCLIDNET_DISABLE_KERNELS", "1")
            if path == "plain":
                m.setattr(Linear, "_fast_path_ok", staticmethod(lambda x: False))
        yield calls


def _rel(a: torch.Tensor | None, b: torch.Tensor | None) -> float:
    if a is None or b is None:
        assert a is None and b is None
        return 0.0
    assert a.shape == b.shape
    if a.numel() == 0:
        return 0.0
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def _layer(irreps_in, irreps_out, instructions, biases, internal=True, dtype=F64, seed=0):
    torch.manual_seed(seed)
    lin = Linear(irreps_in, irreps_out, biases=biases, instructions=instructions, internal_weights=internal).to(dtype)
    w = torch.randn(lin.weight_numel, dtype=F64).to(dtype)  # the same values whatever the dtype
    b = torch.randn(lin.bias_numel, dtype=F64).to(dtype)
    if internal:
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
    return lin, w, b


def _run(lin: Linear, x: torch.Tensor, g: torch.Tensor, w=None, b=None):
    """Output and gradients of ``sum(g * lin(x))`` w.r.t. x, the weights and the biases."""
    x = x.detach().clone().requires_grad_()
    if lin.internal_weights and w is None:
        params = [x, lin.weight] + ([lin.bias] if lin.bias_numel else [])
        out = lin(x)
    else:
        w = w.detach().clone().requires_grad_()
        params = [x, w]
        if lin.bias_numel:
            b = b.detach().clone().requires_grad_()
            params.append(b)
        out = lin(x, w, b if lin.bias_numel else None)
    grads = torch.autograd.grad((out * g).sum(), params, allow_unused=True)
    grads = [torch.zeros_like(p) if gr is None else gr for p, gr in zip(params, grads)]
    return [out.detach(), *grads]


@pytest.mark.parametrize("irreps_in,irreps_out,instructions", CASES)
@pytest.mark.parametrize("biases", [False, True])
@pytest.mark.parametrize("z", [0, 1, 7, 1000])
def test_kernel_matches_fallbacks(irreps_in, irreps_out, instructions, biases, z, monkeypatch):
    lin, _, _ = _layer(irreps_in, irreps_out, instructions, biases)
    x = lin.irreps_in.randn(z, dtype=F64)
    g = lin.irreps_out.randn(z, dtype=F64)
    with _path(monkeypatch, "kernel") as calls:
        got = _run(lin, x, g)
    assert calls["forward"] == 1 and calls["backward"] == 1
    for path in ("shared", "plain"):
        with _path(monkeypatch, path):
            ref = _run(lin, x, g)
        for a, r in zip(got, ref):
            assert _rel(a, r) <= 1e-12, path


@pytest.mark.parametrize("irreps_in,irreps_out,instructions", CASES[:4])
def test_kernel_external_weights(irreps_in, irreps_out, instructions, monkeypatch):
    """Weights (and biases) passed to forward: without internal weights, and overriding internal ones."""
    for internal in (False, True):
        lin, w, b = _layer(irreps_in, irreps_out, instructions, True, internal=internal, seed=1)
        x = lin.irreps_in.randn(300, dtype=F64)
        g = lin.irreps_out.randn(300, dtype=F64)
        with _path(monkeypatch, "kernel") as calls:
            got = _run(lin, x, g, w, b)
        assert calls["forward"] == 1 and calls["backward"] == 1
        with _path(monkeypatch, "plain"):
            ref = _run(lin, x, g, w, b)
        for a, r in zip(got, ref):
            assert _rel(a, r) <= 1e-12


def test_repeated_instruction_is_an_error():
    """e3nn sums repeated instructions; our gathered weight matrices hold one block per (i_in, i_out), so a
    repeat is refused rather than silently computing something else."""
    with pytest.raises(ValueError, match=r"instruction \(0, 0\) appears more than once"):
        _layer("3x0e+2x1o", "4x0e+2x1o", [(0, 0), (1, 1), (0, 0)], False)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_kernel_layouts_threads_chunks(dtype, monkeypatch):
    """Batch dimensions, a row-strided input, a stride-0 output gradient (as from ``out.sum()``), 1 to 3
    threads (uneven sample ranges) and chunks of 1, 5 and the default number of samples."""
    lin, _, _ = _layer("17x0e+19x1o+13x2e+2x3o", "23x0e+11x1o+37x2e+3x3o", None, True, dtype=dtype)
    base = lin.irreps_in.randn(2 * 200, dtype=dtype)
    x = base[::2].reshape(20, 10, -1)  # row stride twice the row length
    g = torch.ones(1, 1, 1, dtype=dtype).expand(20, 10, lin.irreps_out.dim)
    with _path(monkeypatch, "plain"):
        ref = _run(lin, x, g)
    old = torch.get_num_threads()
    monkeypatch.setattr(_linear, "_MIN_MACS_PER_THREAD", 1)  # let every requested thread start
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            for chunk in (1, 5, _linear.CHUNK):
                monkeypatch.setattr(_linear, "CHUNK", chunk)
                with _path(monkeypatch, "kernel") as calls:
                    got = _run(lin, x, g)
                assert calls["forward"] == 1 and calls["backward"] == 1
                for a, r in zip(got, ref):
                    assert _rel(a, r) <= (1e-12 if dtype == F64 else 1e-5)
    finally:
        torch.set_num_threads(old)
    # a column-strided input (x.T of a [dim, Z] tensor) is copied to rows first
    xt = lin.irreps_in.randn(40, dtype=dtype).T.contiguous().T
    with _path(monkeypatch, "kernel") as calls:
        got = lin(xt)
    assert calls["forward"] == 1
    with _path(monkeypatch, "plain"):
        assert _rel(got, lin(xt)) <= (1e-12 if dtype == F64 else 1e-5)


def test_kernel_second_derivatives_match_plain(monkeypatch):
    """create_graph=True through the kernel forward (differentiable torch backward) equals the plain path."""
    lin, _, _ = _layer("3x0e+5x1o+1x2e+7x3o+2x1o", "2x0e+4x1o+6x2e+1x3o", None, True)
    x = lin.irreps_in.randn(9, dtype=F64)
    g = lin.irreps_out.randn(9, dtype=F64)

    def run():
        xr = x.clone().requires_grad_()
        params = [xr, lin.weight, lin.bias]
        first = torch.autograd.grad((lin(xr) * g).sum(), params, create_graph=True)
        loss = sum((f.pow(2) * (1 + i)).sum() for i, f in enumerate(first))
        return [f.detach() for f in first] + list(torch.autograd.grad(loss, params, allow_unused=True))

    with _path(monkeypatch, "kernel") as calls:
        got = run()
    assert calls["forward"] == 1 and calls["backward"] == 0  # create_graph: differentiable torch backward
    with _path(monkeypatch, "plain"):
        ref = run()
    for a, r in zip(got, ref):
        if r is None or a is None:
            assert (a is None or a.abs().max() == 0) and (r is None or r.abs().max() == 0)
        else:
            assert _rel(a, r) <= 1e-11


def test_kernel_gradcheck_gradgradcheck(monkeypatch):
    lin, w, b = _layer("2x0e+3x1o+1x2e+1x0e+1x3o", "1x0e+2x1o+2x2e+1x3o", None, True, internal=False)
    x = lin.irreps_in.randn(5, dtype=F64, requires_grad=True)
    w.requires_grad_()
    b.requires_grad_()
    with _path(monkeypatch, "kernel") as calls:
        assert torch.autograd.gradcheck(lin, (x, w, b))
        assert calls["backward"] > 0
        assert torch.autograd.gradgradcheck(lin, (x, w, b))


@pytest.mark.parametrize("irreps_in,irreps_out,instructions", CASES[:4])
def test_kernel_float32_close_to_float64(irreps_in, irreps_out, instructions, monkeypatch):
    lin64, _, _ = _layer(irreps_in, irreps_out, instructions, True)
    lin32, _, _ = _layer(irreps_in, irreps_out, instructions, True, dtype=torch.float32)
    x = lin64.irreps_in.randn(1000, dtype=F64)
    g = lin64.irreps_out.randn(1000, dtype=F64)
    with _path(monkeypatch, "kernel") as calls:
        ref = _run(lin64, x, g)
        got = _run(lin32, x.float(), g.float())
    assert calls["forward"] == 2 and calls["backward"] == 2
    for a, r in zip(got, ref):
        assert a.dtype == torch.float32
        assert _rel(a.double(), r) <= 1e-5


@pytest.mark.parametrize("irreps_in,irreps_out,instructions", CASES[:4])
def test_kernel_equivariance(irreps_in, irreps_out, instructions, monkeypatch):
    """Rotations and rotations times inversion commute with the layer and with its input gradient."""
    lin, _, _ = _layer(irreps_in, irreps_out, instructions, True)
    x = lin.irreps_in.randn(50, dtype=F64)
    g = lin.irreps_out.randn(50, dtype=F64)
    torch.manual_seed(3)
    with _path(monkeypatch, "kernel") as calls:
        out, gx, *_ = _run(lin, x, g)
        for sign in (1.0, -1.0):
            R = sign * rand_matrix(dtype=F64)
            Din, Dout = lin.irreps_in.D_from_matrix(R), lin.irreps_out.D_from_matrix(R)
            out_r, gx_r, *_ = _run(lin, x @ Din.T, g @ Dout.T)
            assert (out_r - out @ Dout.T).abs().max() <= 1e-10
            assert (gx_r - gx @ Din.T).abs().max() <= 1e-10
    assert calls["forward"] == 3


def test_kernel_gate(monkeypatch):
    lin, _, _ = _layer("4x0e+2x1o", "3x0e+2x1o", None, False)
    x = lin.irreps_in.randn(4, dtype=F64)
    with _path(monkeypatch, "kernel") as calls:
        lin(x)
        lin(x.float().requires_grad_(False))  # dtype mismatch with the float64 weights: cast, kernel still used
        assert calls["forward"] == 2
        monkeypatch.setenv("EUCLIDNET_DISABLE_KERNELS", "1")
        ref = lin(x)
        monkeypatch.delenv("EUCLIDNET_DISABLE_KERNELS")
        assert calls["forward"] == 2
        assert _rel(lin(x), ref) <= 1e-12
        lin(x.to(torch.bfloat16))  # unsupported dtype: torch path
        per = Linear("4x0e+2x1o", "3x0e+2x1o", shared_weights=False).to(F64)
        per(x, torch.randn(4, per.weight_numel, dtype=F64))  # per-sample weights: torch path
        assert calls["forward"] == 3
