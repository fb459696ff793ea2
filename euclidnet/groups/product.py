"""Direct products of groups, acting block-diagonally in the sum of the factors' standard representations."""

from __future__ import annotations

import torch

from .base import Group, _check_n
from .finite import FiniteGroup

__all__ = ["ProductGroup"]


def _embed(blocks: list[torch.Tensor]) -> torch.Tensor:
    """Block-diagonal ``[..., sum d_i, sum d_i]`` from ``[..., d_i, d_i]`` (same batch shape)."""
    batch = blocks[0].shape[:-2]
    n = sum(b.shape[-1] for b in blocks)
    out = torch.zeros(*batch, n, n, dtype=blocks[0].dtype)
    i = 0
    for b in blocks:
        d = b.shape[-1]
        out[..., i : i + d, i : i + d] = b
        i += d
    return out


class ProductGroup(Group):
    """``G_1 x G_2 x ...``; an element is the block-diagonal matrix of one element of each factor.

    The Lie algebra is the union of the factors' generators (zero in the other blocks) and the discrete
    generators are each factor's discrete generators (identity in the other blocks). Use
    :class:`euclidnet.groups.reps.FactorRep` to let a representation of one factor act on the product.
    If every factor is finite, :attr:`finite` is the product as a :class:`FiniteGroup` (built lazily).
    """

    def __init__(self, *factors: Group) -> None:
        if len(factors) < 2:
            raise ValueError(f"a product needs at least two groups, got {len(factors)}")
        for f in factors:
            if not isinstance(f, Group):
                raise TypeError(f"ProductGroup factors must be Group instances, got {type(f).__name__}")
        self.factors = tuple(factors)
        self.name = " x ".join(f.name for f in factors)
        self.dims = [f.d for f in factors]
        self.d = sum(self.dims)
        self.offsets = [sum(self.dims[:i]) for i in range(len(factors))]
        lie, disc = [], []
        for i, f in enumerate(factors):
            for A in f.lie_algebra:
                lie.append(self._embed_one(i, A, zero=True))
            for h in f.discrete_generators:
                disc.append(self._embed_one(i, h, zero=False))
        self.lie_algebra = torch.stack(lie) if lie else torch.zeros(0, self.d, self.d, dtype=torch.float64)
        self.discrete_generators = torch.stack(disc) if disc else torch.zeros(0, self.d, self.d, dtype=torch.float64)
        self._finite: FiniteGroup | None = None

    def _embed_one(self, i: int, M: torch.Tensor, zero: bool) -> torch.Tensor:
        blocks = [
            M if j == i else (torch.zeros if zero else torch.eye)(f.d, dtype=torch.float64) * (1.0)
            for j, f in enumerate(self.factors)
        ]
        return _embed(blocks)

    @property
    def is_finite(self) -> bool:
        return all(f.is_finite for f in self.factors)

    @property
    def finite(self) -> FiniteGroup:
        """The product as a :class:`FiniteGroup` (only when every factor is finite)."""
        if not self.is_finite:
            raise TypeError(f"{self.name} is not finite; it has no element table")
        if self._finite is None:
            self._finite = FiniteGroup(self.discrete_generators, name=self.name)
        return self._finite

    def component(self, g: torch.Tensor, i: int) -> torch.Tensor:
        """The factor-``i`` block ``[..., d_i, d_i]`` of elements (or Lie algebra elements) ``g``."""
        if not 0 <= i < len(self.factors):
            raise ValueError(f"factor index {i} out of range for {self.name} ({len(self.factors)} factors)")
        if g.shape[-2:] != (self.d, self.d):
            raise ValueError(f"expected [..., {self.d}, {self.d}] matrices for {self.name}, got {tuple(g.shape)}")
        o, d = self.offsets[i], self.dims[i]
        return g[..., o : o + d, o : o + d]

    def sample(self, n: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_n(n)
        return _embed([f.sample(n, generator) for f in self.factors])
