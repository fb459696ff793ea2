r"""Synthetic point clouds with exact surface normals: ellipsoids, tori, superquadrics, deformed spheres.

Everything is generated here from a seed (nothing is downloaded). Shapes come in a *canonical
orientation* (axes along x, y, z; tori around z), roughly unit size and centred at the origin, which is
what the ``normals`` demo trains on.

Sampling is uniform in surface area. Star-shaped surfaces are given by a radial function
``x = rho(u) u`` (``u`` on the unit sphere): ``u`` is drawn uniformly and accepted with probability
proportional to the area element ``dA / dOmega = rho^2 / |n . u|``; their normals are
``n = grad F / |grad F|`` for ``F(x) = |x| - rho(x / |x|)`` (by automatic differentiation, exact to
round-off). Radial functions:

* ellipsoid with semi-axes ``(a, b, c)``: ``rho(u) = 1 / |(u_x / a, u_y / b, u_z / c)|``;
* superquadric with exponents ``(eps1, eps2)``: with
  ``F_sq(x) = (|x/a|^{2/eps2} + |y/b|^{2/eps2})^{eps2/eps1} + |z/c|^{2/eps1}`` (homogeneous of degree
  ``2/eps1``), ``rho(u) = F_sq(u)^{-eps1/2}``;
* deformed sphere: ``rho(u) = 1 + sum_k a_k exp(kappa_k (u . d_k - 1))`` (smooth Gaussian-like bumps,
  ``|a_k|`` small so that the surface stays star-shaped and smooth).

Torus (axis z, radii ``R > r``): ``x = ((R + r cos v) cos t, (R + r cos v) sin t, r sin v)``, accepted with
probability ``(R + r cos v) / (R + r)``, normal ``(cos v cos t, cos v sin t, sin v)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..graph.data import AtomicGraph

__all__ = [
    "SHAPE_KINDS",
    "sample_star_shaped",
    "sample_ellipsoid",
    "sample_superquadric",
    "sample_deformed_sphere",
    "sample_torus",
    "random_shape",
    "point_cloud_graph",
    "normals_dataset",
]

SHAPE_KINDS = ("ellipsoid", "torus", "superquadric", "deformed_sphere")


def _check_n(n: int, who: str) -> None:
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"{who}: the number of points must be a positive int, got {n!r}")


def _unit_vectors(n: int, gen: torch.Generator) -> Tensor:
    u = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return u / u.norm(dim=1, keepdim=True)


def sample_star_shaped(
    rho: Callable[[Tensor], Tensor], n: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """``n`` area-uniform points ``[n, 3]`` and outward unit normals ``[n, 3]`` (float64) of ``x = rho(u) u``.

    ``rho`` maps unit vectors ``[M, 3]`` to positive radii ``[M]`` and must be differentiable (torch ops).
    """
    _check_n(n, "sample_star_shaped")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    pts: list[Tensor] = []
    nrm: list[Tensor] = []
    count = 0
    for _ in range(200):
        m = max(4 * (n - count), 64)
        u = _unit_vectors(m, gen)
        with torch.no_grad():
            radius = rho(u)
        if not bool((radius > 0).all()):
            raise ValueError("sample_star_shaped: rho must be positive on the unit sphere")
        x = (radius[:, None] * u).requires_grad_(True)
        with torch.enable_grad():
            r = x.norm(dim=1)
            f = r - rho(x / r[:, None])
            (grad,) = torch.autograd.grad(f.sum(), x)
        normal = grad / grad.norm(dim=1, keepdim=True)
        cos = (normal * u).sum(1).abs().clamp_min(1e-3)
        area = radius**2 / cos
        keep = torch.rand(m, generator=gen, dtype=torch.float64) * area.max() * 1.05 < area
        pts.append((radius[:, None] * u)[keep])
        nrm.append(normal[keep])
        count += int(keep.sum())
        if count >= n:
            break
    points, normals = torch.cat(pts)[:n], torch.cat(nrm)[:n]
    if points.shape[0] < n:
        raise RuntimeError(f"sample_star_shaped: rejection sampling produced only {points.shape[0]} of {n} points")
    return points, normals


def sample_ellipsoid(
    n: int, axes: Sequence[float] = (1.0, 0.7, 0.5), generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Points and normals of the ellipsoid ``(x/a)^2 + (y/b)^2 + (z/c)^2 = 1``."""
    a = torch.tensor([float(v) for v in axes], dtype=torch.float64)
    if a.shape != (3,) or not bool((a > 0).all()):
        raise ValueError(f"sample_ellipsoid: axes must be three positive numbers, got {axes!r}")
    return sample_star_shaped(lambda u: 1.0 / (u / a).norm(dim=1), n, generator)


def sample_superquadric(
    n: int,
    axes: Sequence[float] = (1.0, 0.8, 0.6),
    eps: Sequence[float] = (0.7, 0.9),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Points and normals of a superquadric (module docstring); ``eps`` in ``[0.4, 1.8]`` keeps it smooth."""
    a = torch.tensor([float(v) for v in axes], dtype=torch.float64)
    if a.shape != (3,) or not bool((a > 0).all()):
        raise ValueError(f"sample_superquadric: axes must be three positive numbers, got {axes!r}")
    e1, e2 = (float(v) for v in eps)
    for e in (e1, e2):
        if not 0.4 <= e <= 1.8:
            raise ValueError(f"sample_superquadric: exponents must be in [0.4, 1.8], got {tuple(eps)!r}")

    def rho(u: Tensor) -> Tensor:
        q = (u / a).abs()
        f = (q[:, 0] ** (2 / e2) + q[:, 1] ** (2 / e2)) ** (e2 / e1) + q[:, 2] ** (2 / e1)
        return f ** (-e1 / 2)

    return sample_star_shaped(rho, n, generator)


def sample_deformed_sphere(
    n: int,
    amplitudes: Tensor | Sequence[float] = (0.15, -0.1),
    directions: Tensor | Sequence[Sequence[float]] = ((0.0, 0.0, 1.0), (1.0, 0.0, 0.0)),
    kappas: Tensor | Sequence[float] = (3.0, 4.0),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Unit sphere with smooth bumps ``rho(u) = 1 + sum_k a_k exp(kappa_k (u.d_k - 1))``; needs ``sum |a_k| < 0.5``."""
    amp = torch.as_tensor(amplitudes, dtype=torch.float64).reshape(-1)
    d = torch.as_tensor(directions, dtype=torch.float64).reshape(-1, 3)
    kap = torch.as_tensor(kappas, dtype=torch.float64).reshape(-1)
    if not (amp.shape[0] == d.shape[0] == kap.shape[0]):
        raise ValueError(
            f"sample_deformed_sphere: got {amp.shape[0]} amplitudes, {d.shape[0]} directions, {kap.shape[0]} kappas"
        )
    if float(amp.abs().sum()) >= 0.5:
        raise ValueError(f"sample_deformed_sphere: sum |amplitudes| must be < 0.5, got {float(amp.abs().sum())}")
    if not bool((kap > 0).all()):
        raise ValueError(f"sample_deformed_sphere: kappas must be > 0, got {kap.tolist()}")
    d = d / d.norm(dim=1, keepdim=True)
    return sample_star_shaped(lambda u: 1.0 + (amp * torch.exp(kap * (u @ d.T - 1.0))).sum(1), n, generator)


def sample_torus(
    n: int, major: float = 0.7, minor: float = 0.3, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Area-uniform points and outward normals of the torus around the z axis (module docstring)."""
    _check_n(n, "sample_torus")
    if not (0 < minor < major):
        raise ValueError(f"sample_torus: need 0 < minor < major, got major={major!r}, minor={minor!r}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    pts, nrm, count = [], [], 0
    while count < n:
        m = 3 * (n - count) + 16
        t = torch.rand(m, generator=gen, dtype=torch.float64) * 2 * math.pi
        v = torch.rand(m, generator=gen, dtype=torch.float64) * 2 * math.pi
        keep = torch.rand(m, generator=gen, dtype=torch.float64) * (major + minor) < major + minor * torch.cos(v)
        t, v = t[keep], v[keep]
        ring = major + minor * torch.cos(v)
        pts.append(torch.stack([ring * torch.cos(t), ring * torch.sin(t), minor * torch.sin(v)], dim=1))
        nrm.append(torch.stack([torch.cos(v) * torch.cos(t), torch.cos(v) * torch.sin(t), torch.sin(v)], dim=1))
        count += int(keep.sum())
    return torch.cat(pts)[:n], torch.cat(nrm)[:n]


def random_shape(
    n: int, generator: torch.Generator, kinds: Sequence[str] = SHAPE_KINDS
) -> tuple[Tensor, Tensor, str]:
    """One random shape of a random kind in canonical orientation: ``(points, normals, kind)``.

    Parameter ranges: ellipsoid axes ``a in [0.9, 1.2]``, ``b = a * U(0.55, 0.85)``, ``c = b * U(0.55, 0.85)``;
    torus ``R in [0.6, 0.8]``, ``r = R * U(0.3, 0.5)``; superquadric axes as the ellipsoid, ``eps in
    [0.6, 1.4]``; deformed sphere: 2-4 bumps, ``a_k`` of total size < 0.45, ``kappa in [2, 6]``.
    """
    bad = [k for k in kinds if k not in SHAPE_KINDS]
    if bad or not kinds:
        raise ValueError(f"random_shape: kinds must be a non-empty subset of {SHAPE_KINDS}, got {list(kinds)!r}")

    def u(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64))

    gen = generator
    kind = kinds[int(torch.randint(len(kinds), (), generator=gen))]
    if kind in ("ellipsoid", "superquadric"):
        a = u(0.9, 1.2)
        b = a * u(0.55, 0.85)
        c = b * u(0.55, 0.85)
        if kind == "ellipsoid":
            p, nn = sample_ellipsoid(n, (a, b, c), gen)
        else:
            p, nn = sample_superquadric(n, (a, b, c), (u(0.6, 1.4), u(0.6, 1.4)), gen)
    elif kind == "torus":
        major = u(0.6, 0.8)
        p, nn = sample_torus(n, major, major * u(0.3, 0.5), gen)
    else:
        k = int(torch.randint(2, 5, (), generator=gen))
        amp = torch.rand(k, generator=gen, dtype=torch.float64) * 2 - 1
        amp = amp / amp.abs().sum() * u(0.15, 0.45)
        dirs = torch.randn(k, 3, generator=gen, dtype=torch.float64)
        kap = torch.rand(k, generator=gen, dtype=torch.float64) * 4 + 2
        p, nn = sample_deformed_sphere(n, amp, dirs, kap, gen)
    return p, nn, kind


def point_cloud_graph(points: Tensor, normals: Tensor, dtype: torch.dtype | None = None) -> AtomicGraph:
    """An :class:`AtomicGraph` of one cloud: ``pos = points``, ``node_features = points - centroid``
    (``1x1o``, translation-invariant) and ``labels["normals"]`` ``[n, 3]``."""
    if points.shape != normals.shape or points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(
            f"point_cloud_graph: points and normals must both be [n, 3], got {tuple(points.shape)} and "
            f"{tuple(normals.shape)}"
        )
    dtype = dtype or torch.get_default_dtype()
    points, normals = points.to(dtype), normals.to(dtype)
    return AtomicGraph(pos=points, node_features=points - points.mean(0), labels={"normals": normals})


def normals_dataset(
    num_clouds: int,
    num_points: int = 256,
    seed: int = 0,
    kinds: Sequence[str] = SHAPE_KINDS,
    dtype: torch.dtype | None = None,
) -> list[AtomicGraph]:
    """``num_clouds`` random shapes (:func:`random_shape`) as graphs (:func:`point_cloud_graph`), canonical
    orientation, reproducible from ``seed``."""
    if not (isinstance(num_clouds, int) and num_clouds >= 1):
        raise ValueError(f"normals_dataset: num_clouds must be a positive int, got {num_clouds!r}")
    _check_n(num_points, "normals_dataset")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num_clouds):
        p, nn, _kind = random_shape(num_points, gen, kinds)
        out.append(point_cloud_graph(p, nn, dtype))
    return out
