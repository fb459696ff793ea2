"""The :class:`Group` interface shared by finite groups, matrix Lie groups and their products.

A group is described by its *standard* (defining) matrix representation of dimension ``d``: every
element is a ``[d, d]`` float64 matrix. Constraint solvers only need

* ``lie_algebra``: ``[n_lie, d, d]`` generators of the identity component's Lie algebra (empty for finite groups);
* ``discrete_generators``: ``[n_disc, d, d]`` elements that, together with the identity component, generate
  the group (all generators of a finite group; the reflection of O(2); the inversion of O(3)).

``sample(n)`` draws random elements ``[n, d, d]`` (uniform / Haar measure) for tests.
"""

from __future__ import annotations

import torch

__all__ = ["Group"]


class Group:
    """Abstract matrix group. Subclasses set ``name``, ``d``, ``lie_algebra``, ``discrete_generators``."""

    name: str = "Group"
    d: int = 0
    lie_algebra: torch.Tensor
    discrete_generators: torch.Tensor

    @property
    def is_finite(self) -> bool:
        """True when the group has finitely many elements (no Lie algebra)."""
        return False

    def sample(self, n: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` random elements ``[n, d, d]`` float64 in the standard representation."""
        raise TypeError(f"{type(self).__name__} does not implement sample()")

    def identity(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The identity ``[d, d]``."""
        return torch.eye(self.d, dtype=dtype)

    def same_as(self, other: object) -> bool:
        """True when ``other`` is this group: the same object, or the same class with identical generators."""
        if self is other:
            return True
        if type(self) is not type(other) or not isinstance(other, Group) or self.d != other.d:
            return False
        return bool(
            self.lie_algebra.shape == other.lie_algebra.shape
            and self.discrete_generators.shape == other.discrete_generators.shape
            and torch.equal(self.lie_algebra, other.lie_algebra)
            and torch.equal(self.discrete_generators, other.discrete_generators)
        )

    def __repr__(self) -> str:
        return self.name


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"number of samples must be a non-negative int, got {n!r}")
    return n
