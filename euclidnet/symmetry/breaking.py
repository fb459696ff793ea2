"""Symmetry breaking by the gradient of a loss with respect to the input.

By Curie's principle an equivariant model maps a D4h square onto a D4h output, so it can never fit a D2h
rectangle. The gradient of the loss with respect to the input, split into its part invariant under the
input's group and the rest, exposes the *missing order parameter*: the symmetry-breaking component (here
the B1g distortion that stretches one pair of sides and shrinks the other). Moving the input along it lowers
the symmetry to D2h, and then the model can fit the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .point_groups import detect_point_group

__all__ = [
    "PointCloudUpdate",
    "symmetrize_displacement",
    "BreakingResult",
    "symmetry_breaking_direction",
    "square_to_rectangle",
]


class PointCloudUpdate(nn.Module):
    """E(3)- and permutation-equivariant map of point clouds ``[N, 3] -> [N, 3]`` (EGNN-style coordinate updates):
    ``x_i <- x_i + sum_j (x_i - x_j) phi(|x_i - x_j|^2)`` repeated ``n_layers`` times."""

    def __init__(self, hidden: int = 16, n_layers: int = 2, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.phis = nn.ModuleList(
            nn.Sequential(nn.Linear(1, hidden, dtype=dtype), nn.SiLU(), nn.Linear(hidden, 1, dtype=dtype))
            for _ in range(n_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[-1] != 3:
            raise ValueError(f"expected a point cloud [N, 3], got {tuple(x.shape)}")
        for phi in self.phis:
            diff = x[:, None, :] - x[None, :, :]
            w = phi((diff**2).sum(-1, keepdim=True).to(phi[0].weight.dtype)).to(x.dtype)
            x = x + 0.1 * (diff * w).sum(1)
        return x


def symmetrize_displacement(v: torch.Tensor, ops: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """Project a displacement field ``v`` ``[N, 3]`` onto the fields invariant under the point operations
    ``ops`` ``[k, 3, 3]`` with atom permutations ``perms`` ``[k, N]`` (``(g v)_{perm(i)} = g v_i``, averaged)."""
    w = torch.einsum("kab,nb->kna", ops.to(v.dtype), v)
    out = torch.zeros_like(w).scatter_(1, perms[..., None].expand(-1, -1, 3), w)
    return out.mean(0)


@dataclass
class BreakingResult:
    """``gradient`` ``[N, 3]`` of the loss at the input; ``symmetric`` its input-group-invariant part;
    ``breaking = gradient - symmetric`` (the order parameter direction, or its negative)."""

    gradient: torch.Tensor
    symmetric: torch.Tensor
    breaking: torch.Tensor


def symmetry_breaking_direction(
    loss_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tol: float = 1e-6
) -> BreakingResult:
    """Gradient of ``loss_fn`` at the point cloud ``x`` ``[N, 3]``, split by the symmetry of ``x`` (detected with
    :func:`detect_point_group` at tolerance ``tol``, about the centroid)."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(x), x)
    pg = detect_point_group(x.detach(), tol=tol)
    sym = symmetrize_displacement(grad, pg.operations, pg.permutations)
    return BreakingResult(grad, sym, grad - sym)


def square_to_rectangle(
    side: float = 2.0, aspect: float = 1.5, seed: int = 1, step: float = 0.05, n_steps: int = 300
) -> dict[str, object]:
    """The D4h -> D2h example. Returns a dict with the detected groups, losses and directions:

    ``input_group`` (D4h), ``output_group`` (D4h: Curie), ``breaking_group`` (the group of ``x + eps * breaking``,
    D2h), ``loss_start``, ``curie_floor`` (the smallest loss any D4h-symmetric output can reach),
    ``loss_symmetric_descent`` (gradient descent restricted to D4h-invariant moves stalls above the floor),
    ``loss_free_descent`` (free gradient descent, which breaks the symmetry), ``final_group`` (D2h),
    ``breaking`` ``[4, 3]`` (the order parameter direction, unit norm).
    """
    torch.manual_seed(seed)
    model = PointCloudUpdate(dtype=torch.float64)
    for p in model.parameters():
        p.requires_grad_(False)
    a = side / 2
    x0 = torch.tensor([[a, a, 0.0], [a, -a, 0.0], [-a, a, 0.0], [-a, -a, 0.0]], dtype=torch.float64)
    bx, by = a * math.sqrt(aspect), a / math.sqrt(aspect)  # same area, aspect ratio `aspect`
    target = torch.tensor([[bx, by, 0.0], [bx, -by, 0.0], [-bx, by, 0.0], [-bx, -by, 0.0]], dtype=torch.float64)

    def loss_fn(x: torch.Tensor) -> torch.Tensor:
        return ((model(x) - target) ** 2).sum()

    pg_in = detect_point_group(x0, tol=1e-6)
    pg_out = detect_point_group(model(x0), tol=1e-6)
    res = symmetry_breaking_direction(loss_fn, x0)
    v = res.breaking / res.breaking.norm()
    pg_break = detect_point_group(x0 - 0.1 * v, tol=1e-6)

    def descend(project: bool) -> tuple[float, torch.Tensor]:
        x = x0.clone()
        for _ in range(n_steps):
            xg = x.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(loss_fn(xg), xg)
            if project:
                g = symmetrize_displacement(g, pg_in.operations, pg_in.permutations)
            x = x - step * g / max(1.0, float(g.norm()))  # clipped gradient step
        return float(loss_fn(x)), x

    loss_sym, _ = descend(True)
    loss_free, x_free = descend(False)
    return {
        "input_group": pg_in.name,
        "output_group": pg_out.name,
        "breaking_group": pg_break.name,
        "loss_start": float(loss_fn(x0)),
        # any D4h-symmetric output is a square (c, c): the best one has c = (bx + by) / 2, loss 2 (bx - by)^2
        "curie_floor": 2 * (bx - by) ** 2,
        "loss_symmetric_descent": loss_sym,
        "loss_free_descent": loss_free,
        "final_group": detect_point_group(x_free, tol=1e-3).name,
        "breaking": v,
        "symmetric_gradient_norm": float(res.symmetric.norm()),
        "breaking_gradient_norm": float(res.breaking.norm()),
    }
