"""Curie's principle and symmetry breaking: D4h square -> D2h rectangle; point groups of molecules.

Run: ``python examples/symmetry_breaking.py``.
"""

import torch

from euclidnet.symmetry import MOLECULES, detect_point_group, square_to_rectangle


def main() -> dict:
    g = torch.Generator().manual_seed(0)
    print("point groups (ideal / noisy 0.01 A, tol 0.1 A):")
    for name, (build, expected) in MOLECULES.items():
        species, pos = build()
        noisy = pos + 0.01 * torch.randn(pos.shape, generator=g, dtype=torch.float64)
        a, b = detect_point_group(pos, species, tol=0.1), detect_point_group(noisy, species, tol=0.1)
        print(f"  {name:8s} expected {expected:4s} ideal {a.name:4s} ({a.order} ops) noisy {b.name:4s} ({b.order} ops)")
    out = square_to_rectangle()
    print("square -> rectangle:")
    for k, v in out.items():
        if k != "breaking":
            print(f"  {k:>26}: {v}")
    print("  order parameter (rows: atoms at (+,+), (+,-), (-,+), (-,-)):")
    print(out["breaking"])
    return out


if __name__ == "__main__":
    main()
