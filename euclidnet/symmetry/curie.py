"""Curie's principle, checked numerically.

If ``y = f(x)`` is equivariant (``f(g x) = rho(g) f(x)``) and invariant under relabelling of the points, and the
input ``x`` is mapped onto itself (up to a permutation of its points) by every operation ``h`` of its point group
``H``, then ``y = f(h x) = rho(h) y``: the output has *at least* the symmetry of the input. It lies in the
``H``-fixed subspace of ``rho``, whose dimension is ``(1/|H|) sum_h chi(h)`` (character theory); when that is 0
the output must vanish (e.g. no dipole for T_d or O_h inputs, no quadrupole for them either).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..o3 import Irreps

__all__ = ["CurieResult", "fixed_subspace_projector", "fixed_subspace_dim", "curie_check"]


def fixed_subspace_projector(irreps: Irreps | str, ops: torch.Tensor) -> torch.Tensor:
    """``P = (1/|H|) sum_h D(h)`` ``[dim, dim]``: projector onto the vectors fixed by ``ops`` ``[k, 3, 3]``."""
    irreps = Irreps(irreps)
    ops = torch.as_tensor(ops, dtype=torch.float64)
    if ops.dim() != 3 or ops.shape[1:] != (3, 3) or ops.shape[0] == 0:
        raise ValueError(f"ops must have shape [k >= 1, 3, 3], got {tuple(ops.shape)}")
    return irreps.D_from_matrix(ops).mean(0)


def fixed_subspace_dim(irreps: Irreps | str, ops: torch.Tensor) -> int:
    """``(1/|H|) sum_h chi(h)``: the multiplicity of the trivial representation of ``H`` in ``irreps``."""
    return int(round(float(torch.trace(fixed_subspace_projector(irreps, ops)))))


@dataclass
class CurieResult:
    """``violation = max_h |rho(h) y - y|``; ``outside = |y - P y|`` (component outside the fixed subspace);
    ``fixed_dim`` from character theory; ``norm = |y|``."""

    violation: float
    outside: float
    fixed_dim: int
    norm: float

    def holds(self, atol: float = 1e-9) -> bool:
        return self.violation <= atol and self.outside <= atol


def curie_check(
    fn: Callable[[torch.Tensor], torch.Tensor], positions: torch.Tensor, ops: torch.Tensor, irreps: Irreps | str
) -> CurieResult:
    """Apply an equivariant, permutation-invariant ``fn`` (``[N, 3] -> [irreps.dim]``) to a symmetric input whose
    symmetry operations ``ops`` ``[k, 3, 3]`` act about the origin, and measure how far the output is from
    being ``ops``-invariant (Curie's principle says: not at all)."""
    irreps = Irreps(irreps)
    y = fn(torch.as_tensor(positions, dtype=torch.float64)).detach()
    if y.shape[-1] != irreps.dim:
        raise ValueError(f"fn returned shape {tuple(y.shape)}, expected [..., {irreps.dim}] for {irreps}")
    ops = torch.as_tensor(ops, dtype=torch.float64)
    D = irreps.D_from_matrix(ops)  # [k, dim, dim]
    violation = float((torch.einsum("kij,...j->k...i", D, y) - y).abs().max())
    P = D.mean(0)
    outside = float((y - y @ P.T).abs().max())
    return CurieResult(violation, outside, int(round(float(torch.trace(P)))), float(y.norm()))
