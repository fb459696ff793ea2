"""Idealised molecular geometries (Angstrom) built from bond lengths and angles, for tests and examples."""

from __future__ import annotations

import math

import torch

__all__ = ["methane", "sulfur_hexafluoride", "water", "ammonia", "benzene", "bromochlorofluoromethane", "MOLECULES"]


def _t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def methane(d: float = 1.087) -> tuple[list[str], torch.Tensor]:
    """CH4 (T_d): C at the origin, H along (+-1, +-1, +-1) with an even number of minus signs."""
    s = d / math.sqrt(3)
    return ["C", "H", "H", "H", "H"], _t([[0, 0, 0], [s, s, s], [s, -s, -s], [-s, s, -s], [-s, -s, s]])


def sulfur_hexafluoride(d: float = 1.561) -> tuple[list[str], torch.Tensor]:
    """SF6 (O_h): F on the coordinate axes."""
    pos = [[0, 0, 0]] + [[d * (i == k) * sgn for k in range(3)] for i in range(3) for sgn in (1, -1)]
    return ["S"] + ["F"] * 6, _t(pos)


def water(d: float = 0.9572, angle_deg: float = 104.52) -> tuple[list[str], torch.Tensor]:
    """H2O (C_2v) in the yz plane."""
    h = math.radians(angle_deg) / 2
    return ["O", "H", "H"], _t(
        [[0, 0, 0], [0, d * math.sin(h), d * math.cos(h)], [0, -d * math.sin(h), d * math.cos(h)]]
    )


def ammonia(d: float = 1.012, hnh_deg: float = 106.7) -> tuple[list[str], torch.Tensor]:
    """NH3 (C_3v): N above the plane of the three H."""
    a = math.radians(hnh_deg)
    # H-H distance 2 d sin(a/2) = sqrt(3) rho, rho the radius of the H triangle
    rho = 2 * d * math.sin(a / 2) / math.sqrt(3)
    h = math.sqrt(d * d - rho * rho)
    pos = [[0, 0, h]] + [
        [rho * math.cos(2 * math.pi * k / 3), rho * math.sin(2 * math.pi * k / 3), 0] for k in range(3)
    ]
    return ["N", "H", "H", "H"], _t(pos)


def benzene(cc: float = 1.397, ch: float = 1.084) -> tuple[list[str], torch.Tensor]:
    """C6H6 (D_6h) in the xy plane."""
    pos = []
    for r in (cc, cc + ch):
        pos += [[r * math.cos(math.pi * k / 3), r * math.sin(math.pi * k / 3), 0.0] for k in range(6)]
    return ["C"] * 6 + ["H"] * 6, _t(pos)


def bromochlorofluoromethane() -> tuple[list[str], torch.Tensor]:
    """CHFClBr (C_1): a tetrahedral carbon with four different substituents (realistic bond lengths)."""
    dirs = _t([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / math.sqrt(3)
    lengths = torch.tensor([1.09, 1.35, 1.77, 1.94], dtype=torch.float64)  # C-H, C-F, C-Cl, C-Br
    return ["C", "H", "F", "Cl", "Br"], torch.cat([torch.zeros(1, 3, dtype=torch.float64), dirs * lengths[:, None]])


MOLECULES = {
    "CH4": (methane, "Td"),
    "SF6": (sulfur_hexafluoride, "Oh"),
    "H2O": (water, "C2v"),
    "NH3": (ammonia, "C3v"),
    "C6H6": (benzene, "D6h"),
    "CHFClBr": (bromochlorofluoromethane, "C1"),
}
