"""benchmarks/models.py builds the same functions on both sides: with e3nn's weights copied in, our
se3_attention and gate_points workloads equal e3nn's (values and gradients) at tiny size, in float64."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest
import torch

pytest.importorskip("e3nn")

_BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(_BENCH))  # models.py imports its sibling _common
    try:
        spec = importlib.util.spec_from_file_location("euclidnet_bench_models", _BENCH / "models.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(_BENCH))


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    assert a.shape == b.shape
    scale = max(float(b.detach().abs().max()), 1e-30)
    err = float((a - b).detach().abs().max()) / scale
    assert err <= tol, f"relative error {err:.2e} > {tol:.0e}"


def test_se3_attention_equals_e3nn(bench):
    b = bench.build_se3_attention(num_nodes=60, seed=1, dtype=torch.float64)
    g = b["graph"]
    assert len(g["src"]) > 100  # a real graph (density of the workload: ~20 neighbours)
    assert not (g["src"] == g["dst"]).any()
    calls = bench.se3_calls(b)
    for mode in ("fwd", "fwdbwd"):
        ours, theirs = calls["ours"][mode](), calls["e3nn"][mode]()
        ours = ours if isinstance(ours, tuple) else (ours,)
        theirs = theirs if isinstance(theirs, tuple) else (theirs,)
        assert len(ours) == len(theirs)
        for a, c in zip(ours, theirs):
            _close(a, c, 1e-10)
    # our module is chunked over edges (memory locality): the chunk size changes no value
    att = b["ours"].att
    ref = calls["ours"]["fwd"]()
    old = att.EDGE_CHUNK
    try:
        att.EDGE_CHUNK = 37
        _close(calls["ours"]["fwd"](), ref, 1e-12)
    finally:
        att.EDGE_CHUNK = old


def test_gate_points_equals_e3nn(bench):
    b = bench.build_gate_points(num_atoms=24, seed=2, dtype=torch.float64)
    g = b["graph"]
    assert len(g["src"]) > 50
    calls = bench.gate_calls(b)
    e_ours, f_ours = calls["ours"]["forces"]()
    e_theirs, f_theirs = calls["e3nn"]["forces"]()
    _close(e_ours, e_theirs, 1e-10)
    _close(f_ours, f_theirs, 1e-10)
    # e3nn's own Network.forward (radius graph inside) gives the same energy as the precomputed-graph path
    data = {"pos": g["pos"], "z": g["z"]}
    _close(b["e3nn"](data), e_theirs, 1e-12)


def test_check_same_rejects_a_different_function(bench):
    b = bench.build_se3_attention(num_nodes=40, seed=0, dtype=torch.float64)
    with torch.no_grad():
        b["ours"].att.dots[0].weight.mul_(1.01)
    with pytest.raises(AssertionError):
        bench.check_same(bench.se3_calls(b))
