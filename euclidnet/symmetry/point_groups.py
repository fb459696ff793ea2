"""Point-group detection for point clouds (molecules) with a distance tolerance.

:func:`detect_point_group` centres the cloud at its centroid, proposes candidate symmetry elements (principal
axes of inertia, atom directions, midpoints and differences of equidistant same-species pairs, normals of
atom pairs and of equilateral triples), tests rotations ``C_n`` (n <= ``max_order``), improper rotations
``S_n``, mirrors and the inversion, closes the accepted operations into a group (every product is verified
on the cloud) and names it with the Schoenflies rules.

Tolerance semantics: an orthogonal operation ``R`` (about the centroid) is a symmetry when a one-to-one
matching exists in which every atom ``R x_i`` lies within ``tol`` (same length unit as the input, e.g. Angstrom)
of an atom of the same species. ``tol`` must exceed the noise (a few standard deviations of it) and be
smaller than half the distance between distinct same-species atoms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..groups.finite import point_group_order, rotation_matrix

__all__ = ["PointGroupResult", "detect_point_group", "classify_operations", "symmetry_operations_valid"]


@dataclass
class PointGroupResult:
    """Result of :func:`detect_point_group`.

    Attributes:
        name: Schoenflies symbol (``"C1"``, ``"C2v"``, ``"Td"``, ``"D6h"``, ``"C*v"`` / ``"D*h"`` for linear,
            ``"Kh"`` for a single atom).
        operations: ``[k, 3, 3]`` float64 orthogonal matrices acting about ``center`` (for linear molecules
            only the identity and, for D*h, the inversion are listed).
        permutations: ``[k, N]`` int64: operation ``j`` maps atom ``i`` onto atom ``permutations[j, i]``.
        center: ``[3]`` the centroid used.
        max_error: the largest atom displacement over all accepted operations.
        consistent: whether ``len(operations)`` equals the order of the named group.
    """

    name: str
    operations: torch.Tensor
    permutations: torch.Tensor
    center: torch.Tensor
    max_error: float
    consistent: bool

    @property
    def order(self) -> int:
        return int(self.operations.shape[0])


def _species_ids(species: Sequence[object] | torch.Tensor | None, n: int) -> torch.Tensor:
    if species is None:
        return torch.zeros(n, dtype=torch.int64)
    if isinstance(species, torch.Tensor):
        sp = species.tolist()
    else:
        sp = list(species)
    if len(sp) != n:
        raise ValueError(f"species has {len(sp)} entries but positions has {n} atoms")
    table: dict[object, int] = {}
    return torch.tensor([table.setdefault(s, len(table)) for s in sp], dtype=torch.int64)


def _match(
    X: torch.Tensor, ops: torch.Tensor, same: torch.Tensor, tol: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For ops ``[k, 3, 3]``: (valid ``[k]``, permutation ``[k, N]``, max error ``[k]``)."""
    Y = X @ ops.transpose(-1, -2)  # [k, N, 3]
    D = torch.cdist(Y, X[None].expand(ops.shape[0], -1, -1))  # [k, N, N]
    D = torch.where(same[None], D, torch.full_like(D, float("inf")))
    err, perm = D.min(-1)
    worst = err.amax(-1)
    one_to_one = (torch.sort(perm, dim=-1).values == torch.arange(X.shape[0])).all(-1)
    return (worst <= tol) & one_to_one, perm, worst


def _unit(v: torch.Tensor) -> torch.Tensor:
    n = v.norm(dim=-1, keepdim=True)
    return v[(n > 1e-6).flatten()] / n[(n > 1e-6).flatten()]


def _dedupe_axes(A: torch.Tensor, angle: float = 0.02) -> torch.Tensor:
    """Drop directions parallel (up to sign, within ``angle``) to an earlier one (vectorised)."""
    if A.shape[0] == 0:
        return A
    dup = torch.triu((A @ A.T).abs() > math.cos(angle), diagonal=1).any(0)
    return A[~dup]


def _match_many(
    X: torch.Tensor, ops: torch.Tensor, same: torch.Tensor, tol: float, probe: torch.Tensor, chunk: int = 512
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_match` for many ops: a cheap test on the ``probe`` atoms first, then the full test on survivors."""
    keep = torch.zeros(ops.shape[0], dtype=torch.bool)
    Xp = X[probe]
    for i in range(0, ops.shape[0], chunk):
        Y = Xp @ ops[i : i + chunk].transpose(-1, -2)  # [k, P, 3]
        D = torch.cdist(Y, X[None].expand(Y.shape[0], -1, -1))
        D = torch.where(same[probe][None], D, torch.full_like(D, float("inf")))
        keep[i : i + chunk] = D.min(-1).values.amax(-1) <= tol
    idx = keep.nonzero().flatten()
    ok = torch.zeros(ops.shape[0], dtype=torch.bool)
    perm = torch.zeros(ops.shape[0], X.shape[0], dtype=torch.int64)
    err = torch.full((ops.shape[0],), float("inf"), dtype=X.dtype)
    if len(idx):
        ok_i, perm_i, err_i = _match(X, ops[idx], same, tol)
        ok[idx], perm[idx], err[idx] = ok_i, perm_i, err_i
    return ok, perm, err


def _candidate_axes(X: torch.Tensor, sp: torch.Tensor, tol: float) -> torch.Tensor:
    cands = [torch.linalg.eigh(X.T @ X).eigenvectors.T, torch.eye(3, dtype=X.dtype)]
    r = X.norm(dim=1)
    cands.append(_unit(X))
    for s in sp.unique():
        idx = ((sp == s) & (r > tol)).nonzero().flatten()
        if len(idx) > 60:  # large shells: atom directions and principal axes, plus closure, suffice in practice
            idx = idx[:60]
        P = X[idx]
        i, j = torch.triu_indices(len(idx), len(idx), 1)
        eq = (r[idx][i] - r[idx][j]).abs() <= 2 * tol
        i, j = i[eq], j[eq]
        cands += [_unit(P[i] + P[j]), _unit(P[i] - P[j]), _unit(torch.linalg.cross(P[i], P[j]))]
        if len(idx) <= 24 and len(idx) >= 3:
            a, b, c = torch.combinations(torch.arange(len(idx)), 3).T
            d_ab = (P[a] - P[b]).norm(dim=1)
            d_bc = (P[b] - P[c]).norm(dim=1)
            d_ca = (P[c] - P[a]).norm(dim=1)
            eqt = ((d_ab - d_bc).abs() <= 2 * tol) & ((d_bc - d_ca).abs() <= 2 * tol)
            a, b, c = a[eqt], b[eqt], c[eqt]
            cands.append(_unit(torch.linalg.cross(P[b] - P[a], P[c] - P[a])))
    # merge only directions closer than what the tolerance can resolve at the cloud's radius
    angle = min(0.02, 0.2 * tol / max(float(r.max()), 1e-12))
    return _dedupe_axes(torch.cat(cands), angle)


def _ops_about(axes: torch.Tensor, max_order: int) -> torch.Tensor:
    ops = []
    for u in axes:
        for n in range(2, max_order + 1):
            R = rotation_matrix(u, 2 * math.pi / n)
            ops.append(R)
            sigma = torch.eye(3, dtype=torch.float64) - 2 * torch.outer(u, u)
            if n >= 3:
                ops.append(sigma @ R)  # S_n
        ops.append(torch.eye(3, dtype=torch.float64) - 2 * torch.outer(u, u))  # mirror
    return torch.stack(ops)


def _merge(found: torch.Tensor, new: torch.Tensor, atol: float = 0.2) -> torch.Tensor:
    """Append to ``found`` ``[k, 3, 3]`` the matrices of ``new`` that differ (max abs entry >= atol) from all."""
    for op in new:
        if found.shape[0] == 0 or float((found - op).abs().amax(dim=(-1, -2)).min()) >= atol:
            found = torch.cat([found, op[None]])
    return found


def _novel(found: torch.Tensor, new: torch.Tensor, atol: float = 0.2) -> torch.Tensor:
    """The matrices of ``new`` farther than ``atol`` from every element of ``found`` (vectorised filter)."""
    d = (new[:, None] - found[None]).abs().amax(dim=(-1, -2)).min(1).values
    return new[d >= atol]


def _refine(X: torch.Tensor, ops: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Orthogonal Procrustes: the matrix of each op's determinant best mapping ``X`` onto ``X[perm]``."""
    M = X[perm].transpose(-1, -2) @ X  # [k, 3, 3] = sum_i y_i x_i^T
    U, _, Vh = torch.linalg.svd(M)
    s = torch.sign(torch.linalg.det(ops)) * torch.sign(torch.linalg.det(U @ Vh))
    D = torch.diag_embed(torch.stack([torch.ones_like(s), torch.ones_like(s), s], -1))
    return U @ D @ Vh


def _axis_of(R: torch.Tensor) -> torch.Tensor:
    """Unit rotation axis of a proper rotation (arbitrary for the identity)."""
    w = torch.stack([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if float(w.norm()) > 1e-3:
        return w / w.norm()
    M = R + torch.eye(3, dtype=R.dtype)  # angle ~ pi: columns of R + I are along the axis
    col = M[:, int(M.norm(dim=0).argmax())]
    return col / col.norm().clamp_min(1e-12)


def classify_operations(ops: torch.Tensor, angle_tol: float = 0.1) -> str:
    """Schoenflies name of a complete set of point operations ``[k, 3, 3]`` (a closed group)."""
    eye = torch.eye(3, dtype=ops.dtype)
    has_inv = any(float((op + eye).abs().max()) < 0.2 for op in ops)
    rot_axes: list[list] = []  # [axis, count of non-identity rotations]
    mirrors: list[torch.Tensor] = []
    improper_axes: list[tuple[torch.Tensor, float]] = []
    for op in ops:
        det = float(torch.linalg.det(op))
        R = op if det > 0 else -op
        theta = math.acos(max(-1.0, min(1.0, (float(torch.trace(R)) - 1) / 2)))
        if det > 0:
            if theta < angle_tol:
                continue
            u = _axis_of(R)
            for entry in rot_axes:
                if abs(float(entry[0] @ u)) > math.cos(angle_tol):
                    entry[1] += 1
                    break
            else:
                rot_axes.append([u, 1])
        else:
            if theta < angle_tol:
                continue  # inversion
            u = _axis_of(R)
            if abs(theta - math.pi) < angle_tol:
                mirrors.append(u)
            else:
                improper_axes.append((u, theta))
    axis_order = [(u, c + 1) for u, c in rot_axes]
    high = [a for a in axis_order if a[1] >= 3]
    if len(high) >= 2:
        orders = {o for _, o in high}
        if 5 in orders:
            return "Ih" if has_inv else "I"
        if 4 in orders:
            return "Oh" if has_inv else "O"
        if has_inv:
            return "Th"
        return "Td" if mirrors else "T"
    if not axis_order:
        if mirrors:
            return "Cs"
        return "Ci" if has_inv else "C1"
    n = max(o for _, o in axis_order)
    principal = [u for u, o in axis_order if o == n]
    u = principal[0]
    for cand in principal:  # prefer the axis carrying an S_2n (D2d, S4)
        if any(abs(float(cand @ v)) > math.cos(angle_tol) for v, _ in improper_axes):
            u = cand
            break
    perp_c2 = sum(1 for v, o in axis_order if o % 2 == 0 and abs(float(v @ u)) < math.sin(angle_tol))
    sigma_h = any(abs(float(m @ u)) > math.cos(angle_tol) for m in mirrors)
    sigma_v = sum(1 for m in mirrors if abs(float(m @ u)) < math.sin(angle_tol))
    s2n = any(abs(float(v @ u)) > math.cos(angle_tol) for v, _ in improper_axes)
    if perp_c2 >= n:
        if sigma_h:
            return f"D{n}h"
        return f"D{n}d" if sigma_v >= n else f"D{n}"
    if sigma_h:
        return f"C{n}h"
    if sigma_v >= n:
        return f"C{n}v"
    if s2n:
        return f"S{2 * n}"
    return f"C{n}"


def symmetry_operations_valid(
    positions: torch.Tensor,
    ops: torch.Tensor,
    species: Sequence[object] | torch.Tensor | None = None,
    tol: float = 0.1,
) -> torch.Tensor:
    """Boolean ``[k]``: which operations ``[k, 3, 3]`` (about the centroid) map the cloud onto itself within ``tol``."""
    X = torch.as_tensor(positions, dtype=torch.float64)
    X = X - X.mean(0)
    sp = _species_ids(species, X.shape[0])
    return _match(X, torch.as_tensor(ops, dtype=torch.float64), sp[:, None] == sp[None, :], tol)[0]


def detect_point_group(
    positions: torch.Tensor | Sequence[Sequence[float]],
    species: Sequence[object] | torch.Tensor | None = None,
    tol: float = 0.1,
    max_order: int = 8,
) -> PointGroupResult:
    """Detect the point group of a point cloud.

    Args:
        positions: ``[N, 3]`` coordinates (any length unit; ``tol`` is in the same unit).
        species: ``N`` labels (element symbols or numbers); atoms only map onto atoms of the same species.
            ``None``: all atoms alike.
        tol: distance tolerance (see the module docstring).
        max_order: largest rotation order tested on candidate axes (closure can still find others).

    Returns:
        :class:`PointGroupResult`.
    """
    X = torch.as_tensor(positions, dtype=torch.float64)
    if X.dim() != 2 or X.shape[-1] != 3 or X.shape[0] == 0:
        raise ValueError(f"positions must have shape [N >= 1, 3], got {tuple(X.shape)}")
    if not torch.isfinite(X).all():
        raise ValueError("positions contain NaN or inf")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if isinstance(max_order, bool) or not isinstance(max_order, int) or max_order < 2:
        raise ValueError(f"max_order must be an int >= 2, got {max_order!r}")
    N = X.shape[0]
    sp = _species_ids(species, N)
    center = X.mean(0)
    X = X - center
    same = sp[:, None] == sp[None, :]
    eye = torch.eye(3, dtype=torch.float64)
    if N == 1:
        return PointGroupResult("Kh", eye[None], torch.zeros(1, 1, dtype=torch.int64), center, 0.0, True)
    # linear: every atom within tol of the line through the centroid along the principal direction
    d = torch.linalg.svd(X, full_matrices=False).Vh[0]
    if float((X - (X @ d)[:, None] * d).norm(dim=1).max()) <= tol:
        ok, perm, err = _match(X, torch.stack([eye, -eye]), same, tol)
        name = "D*h" if bool(ok[1]) else "C*v"
        keep = ok.clone()
        keep[0] = True
        return PointGroupResult(name, torch.stack([eye, -eye])[keep], perm[keep], center, float(err[keep].max()), True)
    axes = _candidate_axes(X, sp, tol)
    ops = torch.cat([eye[None], -eye[None], _ops_about(axes, max_order)])
    # probe atoms: the off-centre atoms of the rarest species (at most 8)
    r = X.norm(dim=1)
    counts = torch.bincount(sp)
    off = r > tol
    rare = min(sp[off].unique().tolist(), key=lambda s: int(counts[s])) if bool(off.any()) else int(sp[0])
    probe = ((sp == rare) & off).nonzero().flatten()[:8]
    if len(probe) == 0:
        probe = torch.arange(min(N, 8))
    ok, perm, _ = _match_many(X, ops, same, tol, probe)
    found = _merge(eye[None], _refine(X, ops[ok], perm[ok]))
    # close under products, verifying every new product on the cloud
    while found.shape[0] <= 240:
        prods = _novel(found, (found[:, None] @ found[None]).reshape(-1, 3, 3))
        if prods.shape[0] == 0:
            break
        okp, permp, _ = _match_many(X, prods, same, tol, probe)
        if not bool(okp.any()):
            break
        found = _merge(found, _refine(X, prods[okp], permp[okp]))
    F = found
    _, perm, err = _match(X, F, same, tol)
    name = classify_operations(F)
    consistent = point_group_order(name) == F.shape[0]
    return PointGroupResult(name, F, perm, center, float(err.max()), consistent)
