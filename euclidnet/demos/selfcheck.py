"""Numerical self-check of the O(3) core: each identity evaluated on random data, as a printable table."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from ..o3 import Irreps, matrix_to_angles, rand_matrix, spherical_harmonics, wigner_3j, wigner_D


def _checks(lmax: int, gen: torch.Generator) -> list[tuple[str, str, Callable[[], float]]]:
    dtype = torch.float64
    R1, R2 = rand_matrix(2, 8, generator=gen, dtype=dtype)
    a1, a2, a12 = matrix_to_angles(R1), matrix_to_angles(R2), matrix_to_angles(R1 @ R2)
    x = torch.randn(2000, 3, generator=gen, dtype=dtype)

    def hom() -> float:
        return max(
            float((wigner_D(l, *a12) - wigner_D(l, *a1) @ wigner_D(l, *a2)).abs().max()) for l in range(lmax + 1)
        )

    def orth() -> float:
        errs = []
        for l in range(lmax + 1):
            D = wigner_D(l, *a1)
            errs.append(float((D @ D.transpose(-1, -2) - torch.eye(2 * l + 1, dtype=dtype)).abs().max()))
        return max(errs)

    def parity() -> float:
        ir = Irreps.spherical_harmonics(lmax) + Irreps.spherical_harmonics(lmax, p=1)
        DR, DmR = ir.D_from_matrix(R1), ir.D_from_matrix(-R1)
        p = torch.tensor([i.p for mul, i in ir for _ in range(mul * i.dim)], dtype=dtype)
        return float((DmR - DR * p[:, None]).abs().max())

    def sh_equiv() -> float:
        ls = list(range(lmax + 1))
        R = R1[0]
        D = Irreps.spherical_harmonics(lmax).D_from_matrix(R)
        return float((spherical_harmonics(ls, x @ R.T) - spherical_harmonics(ls, x) @ D.T).abs().max())

    def sh_inversion() -> float:
        ls = list(range(lmax + 1))
        D = Irreps.spherical_harmonics(lmax).D_from_matrix(-R1[0])
        return float((spherical_harmonics(ls, -x @ R1[0].T) - spherical_harmonics(ls, x) @ D.T).abs().max())

    def cg_invariance() -> float:
        lc = min(lmax, 6)
        Ds = [wigner_D(l, *[t[0] for t in a1]) for l in range(lc + 1)]
        err = 0.0
        for l1 in range(lc + 1):
            for l2 in range(lc + 1):
                for l3 in range(abs(l1 - l2), min(l1 + l2, lc) + 1):
                    C = wigner_3j(l1, l2, l3, dtype=dtype)
                    Cr = torch.einsum("ijk,ia,jb,kc->abc", C, Ds[l1], Ds[l2], Ds[l3])
                    err = max(err, float((Cr - C).abs().max()))
        return err

    return [
        ("D(R1 R2) = D(R1) D(R2)", f"l <= {lmax}, 8 pairs", hom),
        ("D(R) D(R)^T = I", f"l <= {lmax}", orth),
        ("D(-R) = p D(R)", f"l <= {lmax}, both parities", parity),
        ("Y(R x) = D(R) Y(x)", f"l <= {lmax}, 2000 points", sh_equiv),
        ("Y(-R x) = D(-R) Y(x)", f"l <= {lmax}, 2000 points", sh_inversion),
        ("3j invariant under D (x) D (x) D", f"all triples l <= {min(lmax, 6)}", cg_invariance),
    ]


def run_selfcheck(lmax: int = 12, seed: int = 0, tolerance: float = 1e-10) -> bool:
    """Print a table of the identities of the o3 core and their measured errors (float64).

    Returns True when every error is below ``tolerance``.
    """
    gen = torch.Generator().manual_seed(seed)
    rows = []
    ok = True
    for name, scope, fn in _checks(lmax, gen):
        t0 = time.perf_counter()
        err = fn()
        dt = time.perf_counter() - t0
        passed = err <= tolerance
        ok &= passed
        rows.append((name, scope, err, dt, "ok" if passed else "FAIL"))
    w = max(len(r[0]) for r in rows)
    ws = max(len(r[1]) for r in rows)
    print(f"euclidnet o3 self-check (float64, seed {seed}, tolerance {tolerance:.0e})")
    print(f"| {'identity':<{w}} | {'scope':<{ws}} | max abs error | time (s) | result |")
    print(f"|{'-' * (w + 2)}|{'-' * (ws + 2)}|---------------|----------|--------|")
    for name, scope, err, dt, res in rows:
        print(f"| {name:<{w}} | {scope:<{ws}} | {err:13.2e} | {dt:8.2f} | {res:<6} |")
    return ok


DESCRIPTION = "numerical self-check of the O(3) core (identities in float64, printed as a table)"


def main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="euclidnet demo selfcheck", description=DESCRIPTION)
    p.add_argument("--lmax", type=int, default=12, help="largest degree checked")
    args = p.parse_args(argv)
    return 0 if run_selfcheck(lmax=args.lmax) else 1
