"""Compact matrix Lie groups SO(2), O(2), SO(3), O(3): Lie algebra generators, discrete generators, samplers.

Elements are orthogonal matrices in the standard representation. The Lie algebra generators are the
antisymmetric ``L_k`` with ``exp(t L_k)`` the rotation by ``t`` about axis ``k`` (the same generators as
``euclidnet.o3.so3_generators(1)``); the discrete generators connect the components (reflection / inversion).
"""

from __future__ import annotations

import math

import torch

from .base import Group, _check_n

__all__ = ["SO2", "O2", "SO3", "O3"]


def _so2_algebra() -> torch.Tensor:
    return torch.tensor([[[0.0, -1.0], [1.0, 0.0]]], dtype=torch.float64)


def _so3_algebra() -> torch.Tensor:
    L = torch.zeros(3, 3, 3, dtype=torch.float64)
    for k in range(3):
        i, j = (k + 1) % 3, (k + 2) % 3
        L[k, j, i] = 1.0
        L[k, i, j] = -1.0
    return L


def _rot2(theta: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


class SO2(Group):
    """Rotations of the plane, ``[[cos t, -sin t], [sin t, cos t]]``."""

    def __init__(self) -> None:
        self.name = "SO(2)"
        self.d = 2
        self.lie_algebra = _so2_algebra()
        self.discrete_generators = torch.zeros(0, 2, 2, dtype=torch.float64)

    def sample(self, n: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_n(n)
        theta = torch.rand(n, generator=generator, dtype=torch.float64) * 2 * math.pi
        return _rot2(theta)


class O2(SO2):
    """Rotations and reflections of the plane; discrete generator ``diag(1, -1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "O(2)"
        self.discrete_generators = torch.tensor([[[1.0, 0.0], [0.0, -1.0]]], dtype=torch.float64)

    def sample(self, n: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        R = super().sample(n, generator)
        flip = torch.randint(0, 2, (n,), generator=generator).to(torch.float64)
        F = torch.diag_embed(torch.stack([torch.ones(n, dtype=torch.float64), 1 - 2 * flip], -1))
        return R @ F


class SO3(Group):
    """Rotations of space (det +1)."""

    def __init__(self) -> None:
        self.name = "SO(3)"
        self.d = 3
        self.lie_algebra = _so3_algebra()
        self.discrete_generators = torch.zeros(0, 3, 3, dtype=torch.float64)

    def sample(self, n: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_n(n)
        from ..o3 import rand_matrix

        return rand_matrix(n, generator=generator, dtype=torch.float64)


class O3(SO3):
    """Rotations and improper rotations of space; discrete generator: the inversion ``-I``."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "O(3)"
        self.discrete_generators = -torch.eye(3, dtype=torch.float64)[None]

    def sample(self, n: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        R = super().sample(n, generator)
        sign = 1 - 2 * torch.randint(0, 2, (n,), generator=generator).to(torch.float64)
        return R * sign[:, None, None]
