"""Equivariant dropout: whole irreps are dropped, never single components."""

from __future__ import annotations

import torch

from ..o3.irreps import Irreps
from .activation import _check_features

__all__ = ["Dropout"]


class Dropout(torch.nn.Module):
    r"""Equivariant dropout.

    In training mode, for every feature vector (every index of the leading dimensions) and every irrep copy
    ``i`` an independent ``b_i ~ Bernoulli(1 - p)`` is drawn; the whole irrep (all its ``2l + 1`` components)
    is multiplied by ``b_i / (1 - p)`` (by 0 if ``p == 1``). Because the mask is constant on each irrep the
    layer commutes with every ``D(R)``. In eval mode it is the identity.

    Unlike e3nn's ``Dropout`` (one mask per batch index, shared over the middle dimensions) the mask here is
    independent for every leading index, like ``torch.nn.Dropout``.

    Shapes: ``[..., irreps.dim] -> [..., irreps.dim]``.
    """

    def __init__(self, irreps: Irreps | str, p: float) -> None:
        super().__init__()
        self.irreps = Irreps(irreps)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)
        # index of the irrep copy each component belongs to: [dim]
        idx: list[int] = []
        copy = 0
        for mul, ir in self.irreps:
            for _ in range(mul):
                idx += [copy] * ir.dim
                copy += 1
        self.register_buffer("_component_to_irrep", torch.tensor(idx, dtype=torch.long), persistent=False)

    def extra_repr(self) -> str:
        return f"{self.irreps}, p={self.p}"

    def mask(
        self,
        shape: torch.Size | tuple[int, ...],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """A scaled dropout mask ``[*shape, irreps.dim]`` (values ``0`` or ``1/(1-p)``), constant on each irrep."""
        num = self.irreps.num_irreps
        if self.p >= 1.0:
            keep = torch.zeros(*shape, num, dtype=dtype, device=device)
        elif self.p <= 0.0:
            keep = torch.ones(*shape, num, dtype=dtype, device=device)
        else:
            u = torch.rand(*shape, num, dtype=dtype, device=device, generator=generator)
            keep = (u >= self.p).to(dtype) / (1.0 - self.p)
        return keep[..., self._component_to_irrep.to(keep.device)]

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[..., irreps.dim] -> [..., irreps.dim]``; ``generator`` (optional) drives the Bernoulli draws."""
        _check_features(x, self.irreps, "x", "Dropout")
        if not self.training or self.p == 0.0:
            return x
        return x * self.mask(x.shape[:-1], dtype=x.dtype, device=x.device, generator=generator)
