"""Small G-CNN training demos on synthesised data (no downloads): Z_6 on hexagons and p4m on images.

Used by ``examples/gcnn_hexagon.py``, ``examples/p4m_images.py`` and the tests.
"""

from __future__ import annotations

import torch
from torch import nn

from .finite import cyclic
from .gconv import (
    FiniteGroupAction,
    GroupConv,
    LiftingConv,
    P4MGroupConv,
    P4MLifting,
    group_pool,
    p4m_transform_image,
)

__all__ = [
    "HEXAGON_PATTERNS",
    "make_hexagon_dataset",
    "HexagonGCNN",
    "make_p4m_dataset",
    "P4MCNN",
    "train_classifier",
]

#: Class prototypes on the 6 vertices; classes 3 and 4 are mirror images (distinct under Z_6, not under D_6).
HEXAGON_PATTERNS = torch.tensor(
    [
        [1.0, 1.0, 0, 0, 0, 0],  # adjacent pair
        [1.0, 0, 1.0, 0, 0, 0],  # pair at distance 2
        [1.0, 0, 0, 1.0, 0, 0],  # opposite pair
        [1.0, 0.5, 0, 0, 0, 0],  # chiral, clockwise
        [0.5, 1.0, 0, 0, 0, 0],  # chiral, anticlockwise
    ]
)


def make_hexagon_dataset(
    n: int, noise: float = 0.05, generator: torch.Generator | None = None, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` signals ``[n, 1, 6]`` on hexagon vertices and labels ``[n]``.

    Each signal is a random prototype, randomly rotated by Z_6, scaled by U(0.8, 1.2), plus Gaussian noise;
    ``dtype`` defaults to torch's default dtype.
    """
    y = torch.randint(0, len(HEXAGON_PATTERNS), (n,), generator=generator)
    shift = torch.randint(0, 6, (n,), generator=generator)
    idx = (torch.arange(6)[None, :] - shift[:, None]) % 6
    x = HEXAGON_PATTERNS.to(torch.float64)[y[:, None], idx]
    x = x * (0.8 + 0.4 * torch.rand(n, 1, generator=generator, dtype=torch.float64))
    x = x + noise * torch.randn(n, 6, generator=generator, dtype=torch.float64)
    return x[:, None, :].to(dtype or torch.get_default_dtype()), y


class HexagonGCNN(nn.Module):
    """Z_6 G-CNN on hexagon signals: lifting -> group conv -> group conv -> max over the group -> linear.

    ``[B, 1, 6] -> [B, n_classes]`` logits, exactly invariant to rotations of the hexagon;
    :meth:`group_features` ``[B, C, 6]`` are equivariant.
    """

    def __init__(self, channels: int = 8, n_classes: int = 5) -> None:
        super().__init__()
        G = cyclic(6)
        self.action = FiniteGroupAction.from_permutation_group(G)
        self.lift = LiftingConv(self.action, 1, channels)
        self.conv1 = GroupConv(G, channels, channels)
        self.conv2 = GroupConv(G, channels, channels)
        self.head = nn.Linear(channels, n_classes)

    def group_features(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.lift(x))
        h = torch.relu(self.conv1(h))
        return self.conv2(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(group_pool(self.group_features(x), dim=2, mode="max"))


_SHAPES = [
    [(0, -1), (0, 0), (0, 1), (-1, 0), (1, 0)],  # plus
    [(-1, 0), (0, 0), (1, 0), (1, 1)],  # L
    [(-1, -1), (-1, 0), (-1, 1), (0, 0), (1, 0)],  # T
    [(-1, -1), (0, 0), (1, 1)],  # diagonal line
]


def make_p4m_dataset(
    n: int,
    size: int = 13,
    noise: float = 0.1,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images ``[n, 1, size, size]`` of four shapes (plus, L, T, diagonal) at a random position and a random
    p4m point-group transformation, with Gaussian noise; labels ``[n]``."""
    y = torch.randint(0, len(_SHAPES), (n,), generator=generator)
    g = torch.randint(0, 8, (n,), generator=generator)
    pos = torch.randint(3, size - 3, (n, 2), generator=generator)
    imgs = torch.zeros(n, 1, size, size, dtype=torch.float64)
    for i in range(n):  # data synthesis, not the model's forward pass
        stamp = torch.zeros(3, 3, dtype=torch.float64)
        for dy, dx in _SHAPES[int(y[i])]:
            stamp[1 + dy, 1 + dx] = 1.0
        stamp = p4m_transform_image(stamp, int(g[i]))
        r, c = int(pos[i, 0]), int(pos[i, 1])
        imgs[i, 0, r - 1 : r + 2, c - 1 : c + 2] = stamp
    imgs = imgs + noise * torch.randn(imgs.shape, generator=generator, dtype=torch.float64)
    return imgs.to(dtype or torch.get_default_dtype()), y


class P4MCNN(nn.Module):
    """p4m G-CNN: lifting -> group conv -> pool over the group (projection) -> global max over space -> linear.

    ``[B, 1, H, W] -> [B, n_classes]``, invariant to the 8 rotations/flips (square images) and, with circular
    padding, to cyclic translations.
    """

    def __init__(self, channels: int = 6, n_classes: int = 4, padding_mode: str = "circular") -> None:
        super().__init__()
        self.lift = P4MLifting(1, channels, 3, padding_mode)
        self.conv = P4MGroupConv(channels, channels, 3, padding_mode)
        self.head = nn.Linear(channels, n_classes)

    def group_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.relu(self.lift(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = group_pool(torch.relu(self.group_features(x)), dim=2, mode="max")  # [B, C, H, W]
        return self.head(h.amax(dim=(-2, -1)))


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 200,
    lr: float = 0.02,
    batch: int = 64,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Adam on cross-entropy; returns the loss of every step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=generator)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses
