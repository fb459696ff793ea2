"""Group convolutional networks (G-CNNs) for finite groups: lifting, group convolution, projection.

Two settings, both fully vectorised (transformed kernels are built by one gather; no loop over group
elements in the forward pass):

* a finite group acting on a finite set of points (e.g. Z_6 on the vertices of a hexagon): signals are
  ``[B, C, n_points]``, group features ``[B, C, |G|]``. :class:`FiniteGroupAction`, :class:`LiftingConv`,
  :class:`GroupConv`, :func:`group_pool`.
* p4m on images: the point group D_4 (rotations by 90 degrees and mirrors, see :data:`P4M_ELEMENTS`) with
  integer translations. Images are ``[B, C, H, W]``, group features ``[B, C, 8, H, W]``.
  :class:`P4MLifting`, :class:`P4MGroupConv`, :func:`group_pool`, and the transformations
  :func:`p4m_transform_image`, :func:`p4m_transform_features` used to state (and test) equivariance:

      lift(T_g f)[:, :, h] = T_g lift(f)[:, :, g^-1 h]      gconv(T_g F)[:, :, h] = T_g gconv(F)[:, :, g^-1 h]

Conventions: ``(T_g f)(x) = f(g^-1 x)``; the lifting output at ``g`` is ``sum_x f(x) psi(g^-1 x)``
(correlation with the kernel transformed by ``g``); group convolution
``(F * psi)(g) = sum_k F(k) psi(g^-1 k)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .finite import FiniteGroup

__all__ = [
    "FiniteGroupAction",
    "LiftingConv",
    "GroupConv",
    "group_pool",
    "P4M_ELEMENTS",
    "p4m_cayley",
    "p4m_transform_image",
    "p4m_transform_features",
    "P4MLifting",
    "P4MGroupConv",
]


class FiniteGroupAction:
    """A finite group acting on ``n`` points: ``perm[g, x]`` is the image of point ``x`` under element ``g``."""

    def __init__(self, group: FiniteGroup, perm: torch.Tensor) -> None:
        if not isinstance(group, FiniteGroup):
            raise TypeError(f"group must be a FiniteGroup, got {type(group).__name__}")
        perm = torch.as_tensor(perm, dtype=torch.int64)
        if perm.dim() != 2 or perm.shape[0] != group.order:
            raise ValueError(f"perm must have shape [{group.order}, n_points], got {tuple(perm.shape)}")
        n = perm.shape[1]
        if not bool((perm.sort(dim=1).values == torch.arange(n)).all()):
            raise ValueError("every row of perm must be a permutation of 0..n_points-1")
        # homomorphism: perm[g h] = perm[g] o perm[h]
        comp = perm[:, None, :].expand(-1, group.order, -1).gather(2, perm[None].expand(group.order, -1, -1))
        if not bool((perm[group.cayley] == comp).all()):
            raise ValueError("perm is not a group action: perm[g h, x] != perm[g, perm[h, x]] for some g, h, x")
        self.group, self.perm, self.n_points = group, perm, n

    @staticmethod
    def from_permutation_group(group: FiniteGroup) -> FiniteGroupAction:
        """The action of a group of permutation matrices (e.g. :func:`cyclic`, :func:`dihedral`) on its points."""
        E = group.elements
        if not bool(((E == 0) | (E == 1)).all()) or not bool((E.sum(1) == 1).all()):
            raise ValueError(f"{group.name} is not a group of permutation matrices")
        return FiniteGroupAction(group, E.argmax(dim=1))  # column x has its 1 in row perm[x]

    def transform_signal(self, f: torch.Tensor, g: int) -> torch.Tensor:
        """``(T_g f)(x) = f(g^-1 x)`` for signals ``[..., n_points]``."""
        return f[..., self.perm[int(self.group.inverse[g])]]

    def transform_group_signal(self, F: torch.Tensor, g: int) -> torch.Tensor:
        """``(T_g F)(h) = F(g^-1 h)`` for group signals ``[..., |G|]``."""
        return F[..., self.group.cayley[int(self.group.inverse[g])]]


class LiftingConv(nn.Module):
    """Lift a signal on points ``[B, C_in, n]`` to the group ``[B, C_out, |G|]``: ``out(g) = sum_x f(g x) psi(x)``."""

    def __init__(self, action: FiniteGroupAction, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        self.action = action
        self.register_buffer("perm", action.perm.clone())
        n = action.n_points
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, n) / math.sqrt(in_channels * n))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if f.dim() != 3 or f.shape[1:] != self.weight.shape[1:]:
            raise ValueError(f"expected [B, {self.weight.shape[1]}, {self.weight.shape[2]}], got {tuple(f.shape)}")
        fg = f[:, :, self.perm]  # [B, C, |G|, n]: f(g x)
        out = torch.einsum("bcgx,ocx->bog", fg, self.weight.to(f.dtype))
        return out if self.bias is None else out + self.bias.to(f.dtype)[:, None]


class GroupConv(nn.Module):
    """Group convolution ``[B, C_in, |G|] -> [B, C_out, |G|]``: ``out(g) = sum_k F(k) psi(g^-1 k)``."""

    def __init__(self, group: FiniteGroup, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        N = group.order
        self.register_buffer("index", group.cayley[group.inverse])  # [g, k] -> g^-1 k
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, N) / math.sqrt(in_channels * N))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, F: torch.Tensor) -> torch.Tensor:
        if F.dim() != 3 or F.shape[1:] != self.weight.shape[1:]:
            raise ValueError(f"expected [B, {self.weight.shape[1]}, {self.weight.shape[2]}], got {tuple(F.shape)}")
        psi = self.weight.to(F.dtype)[:, :, self.index]  # [O, C, g, k]
        out = torch.einsum("bck,ocgk->bog", F, psi)
        return out if self.bias is None else out + self.bias.to(F.dtype)[:, None]


def group_pool(F: torch.Tensor, dim: int = 2, mode: str = "max") -> torch.Tensor:
    """Projection: pool over the group axis (``max`` or ``mean``), giving features invariant under the point group
    (``[B, C, |G|] -> [B, C]``; ``[B, C, 8, H, W] -> [B, C, H, W]``, a scalar field)."""
    if mode == "max":
        return F.amax(dim=dim)
    if mode == "mean":
        return F.mean(dim=dim)
    raise ValueError(f"mode must be 'max' or 'mean', got {mode!r}")


# -- p4m ---------------------------------------------------------------------------------------------------

#: The 8 elements of D_4 as (number of 90-degree rotations r, mirror m): ``T = rot90^r o flip^m``.
P4M_ELEMENTS: tuple[tuple[int, int], ...] = tuple((r, m) for m in (0, 1) for r in range(4))


def _apply(x: torch.Tensor, g: int) -> torch.Tensor:
    r, m = P4M_ELEMENTS[g]
    if m:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, r, dims=(-2, -1))


def p4m_transform_image(x: torch.Tensor, g: int) -> torch.Tensor:
    """``T_g`` on images ``[..., H, W]`` (square for exact rotations): ``rot90^r(flip^m(x))``."""
    if not isinstance(g, int) or not 0 <= g < 8:
        raise ValueError(f"p4m point-group element must be an int in [0, 8), got {g!r}")
    return _apply(x, g)


def _p4m_tables() -> tuple[torch.Tensor, torch.Tensor]:
    base = torch.arange(9.0).reshape(3, 3)
    imgs = torch.stack([_apply(base, g) for g in range(8)]).reshape(8, -1)
    cayley = torch.zeros(8, 8, dtype=torch.int64)
    for a in range(8):
        for b in range(8):
            ab = _apply(_apply(base, b), a).reshape(-1)
            cayley[a, b] = int((imgs == ab).all(1).nonzero()[0])
    inverse = (cayley == 0).to(torch.int64).argmax(1)
    return cayley, inverse


_P4M_CAYLEY, _P4M_INVERSE = _p4m_tables()


def p4m_cayley() -> tuple[torch.Tensor, torch.Tensor]:
    """Cayley table ``[8, 8]`` (``T_a T_b = T_{cayley[a, b]}``) and inverses ``[8]`` of :data:`P4M_ELEMENTS`."""
    return _P4M_CAYLEY.clone(), _P4M_INVERSE.clone()


def p4m_transform_features(F: torch.Tensor, g: int) -> torch.Tensor:
    """``(T_g F)(h, x) = F(g^-1 h, g^-1 x)`` on group features ``[..., 8, H, W]``."""
    if not isinstance(g, int) or not 0 <= g < 8:
        raise ValueError(f"p4m point-group element must be an int in [0, 8), got {g!r}")
    return _apply(F[..., _P4M_CAYLEY[_P4M_INVERSE[g]], :, :], g)


def _spatial_index(k: int) -> torch.Tensor:
    """``[8, k*k]``: ``T_g(psi).flatten() = psi.flatten()[index[g]]``."""
    base = torch.arange(k * k).reshape(k, k)
    return torch.stack([_apply(base, g).reshape(-1) for g in range(8)])


class _P4MBase(nn.Module):
    def __init__(self, kernel_size: int, padding_mode: str) -> None:
        super().__init__()
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd positive int, got {kernel_size!r}")
        if padding_mode not in ("zeros", "circular"):
            raise ValueError(f"padding_mode must be 'zeros' or 'circular', got {padding_mode!r}")
        self.k, self.padding_mode = kernel_size, padding_mode
        self.register_buffer("spatial", _spatial_index(kernel_size))

    def _conv(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        p = self.k // 2
        if self.padding_mode == "circular":
            return nn.functional.conv2d(nn.functional.pad(x, (p, p, p, p), mode="circular"), w)
        return nn.functional.conv2d(x, w, padding=p)


class P4MLifting(_P4MBase):
    """p4m lifting convolution ``[B, C_in, H, W] -> [B, C_out, 8, H, W]``: one conv2d with the 8 transformed kernels.

    ``padding_mode="circular"`` makes it exactly equivariant to (cyclic) translations as well.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding_mode: str = "zeros") -> None:
        super().__init__(kernel_size, padding_mode)
        k = kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, k, k) / math.sqrt(in_channels * k * k))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"expected images [B, {self.weight.shape[1]}, H, W], got {tuple(x.shape)}")
        O, C, k, _ = self.weight.shape
        w = self.weight.to(x.dtype).reshape(O, C, k * k)[:, :, self.spatial]  # [O, C, 8, k*k]
        w = w.permute(0, 2, 1, 3).reshape(O * 8, C, k, k)
        y = self._conv(x, w)
        return y.reshape(x.shape[0], O, 8, *y.shape[-2:]) + self.bias.to(x.dtype)[:, None, None, None]


class P4MGroupConv(_P4MBase):
    """p4m group convolution ``[B, C_in, 8, H, W] -> [B, C_out, 8, H, W]``: kernels transformed spatially AND
    permuted along the group axis (``W_h(k, y) = psi(h^-1 k, h^-1 y)``), applied by one conv2d."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding_mode: str = "zeros") -> None:
        super().__init__(kernel_size, padding_mode)
        k = kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 8, k, k) / math.sqrt(in_channels * 8 * k * k))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("group_index", _P4M_CAYLEY[_P4M_INVERSE])  # [h, k] -> h^-1 k

    def forward(self, F: torch.Tensor) -> torch.Tensor:
        if F.dim() != 5 or F.shape[1] != self.weight.shape[1] or F.shape[2] != 8:
            raise ValueError(f"expected group features [B, {self.weight.shape[1]}, 8, H, W], got {tuple(F.shape)}")
        O, C, _, k, _ = self.weight.shape
        psi = self.weight.to(F.dtype).reshape(O, C, 8, k * k)
        w = psi[:, :, self.group_index[:, :, None], self.spatial[:, None, :]]  # [O, C, h, k', k*k]
        w = w.permute(0, 2, 1, 3, 4).reshape(O * 8, C * 8, k, k)
        B = F.shape[0]
        y = self._conv(F.reshape(B, C * 8, *F.shape[-2:]), w)
        return y.reshape(B, O, 8, *y.shape[-2:]) + self.bias.to(F.dtype)[:, None, None, None]
