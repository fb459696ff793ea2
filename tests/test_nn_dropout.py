"""Tests for euclidnet.nn.Dropout."""

from __future__ import annotations

import pytest
import torch

from euclidnet import nn
from euclidnet.o3 import Irreps, rand_matrix

F64 = torch.float64
IRREPS = Irreps("3x0e+2x0o+4x1o+2x2e+1x3o")


def _copy_index(irreps: Irreps) -> torch.Tensor:
    """For every component, the index of the irrep copy it belongs to."""
    idx: list[int] = []
    for ir in [ir for mul, ir in irreps for _ in range(mul)]:
        idx += [len(set(idx))] * ir.dim
    return torch.tensor(idx)


def test_dropout_mask_never_splits_an_irrep():
    drop = nn.Dropout(IRREPS, p=0.4)
    x = torch.ones(500, IRREPS.dim, dtype=F64)
    y = drop(x)
    idx = _copy_index(IRREPS)
    for c in range(IRREPS.num_irreps):
        block = y[:, idx == c]
        assert (block == block[:, :1]).all(), f"irrep copy {c} was split"
    vals = set(torch.unique(y).tolist())
    assert vals <= {0.0, 1 / 0.6}
    # every copy is dropped and kept somewhere, at a rate close to p
    per_copy = torch.stack([y[:, idx == c][:, 0] for c in range(IRREPS.num_irreps)], dim=-1)
    rate = (per_copy == 0).to(F64).mean().item()
    assert 0.35 < rate < 0.45
    # E[y] = x (inverted dropout)
    assert abs(y.mean().item() - 1.0) < 0.06


def test_dropout_equivariance_in_training():
    drop = nn.Dropout(IRREPS, p=0.5).train()
    x = IRREPS.randn(64, 2, dtype=F64)
    for improper in (False, True):
        R = rand_matrix(generator=torch.Generator().manual_seed(1), dtype=F64)
        R = -R if improper else R
        D = IRREPS.D_from_matrix(R)
        torch.manual_seed(123)
        lhs = drop(x @ D.T)
        torch.manual_seed(123)
        rhs = drop(x) @ D.T
        assert (lhs - rhs).abs().max().item() <= 1e-10
        assert (lhs == 0).any()  # the mask was not trivial
        lhs = drop(x @ D.T, generator=torch.Generator().manual_seed(7))
        rhs = drop(x, generator=torch.Generator().manual_seed(7)) @ D.T
        assert (lhs - rhs).abs().max().item() <= 1e-10


def test_dropout_eval_and_extreme_p():
    x = IRREPS.randn(8, dtype=F64)
    assert torch.equal(nn.Dropout(IRREPS, 0.9).eval()(x), x)
    assert torch.equal(nn.Dropout(IRREPS, 0.0)(x), x)
    assert torch.equal(nn.Dropout(IRREPS, 1.0)(x), torch.zeros_like(x))


def test_dropout_gradcheck_and_float32():
    drop = nn.Dropout(IRREPS, 0.3)
    x = IRREPS.randn(3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: drop(t, generator=torch.Generator().manual_seed(0)), (x,))
    y = drop(torch.randn(4, IRREPS.dim, dtype=torch.float32))
    assert y.dtype == torch.float32


def test_dropout_errors():
    with pytest.raises(ValueError, match="1.5"):
        nn.Dropout(IRREPS, 1.5)
    with pytest.raises(ValueError, match=rf"\(2, 3\).*{IRREPS.dim}"):
        nn.Dropout(IRREPS, 0.1)(torch.randn(2, 3))
