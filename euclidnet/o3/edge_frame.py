"""Edge frames: per-edge rotations taking each edge direction to the polar (y) axis, and their Wigner D.

For an edge vector ``r`` with direction ``r_hat`` this module builds a rotation ``R_e`` with
``R_e r_hat = e_y`` (the polar axis of our spherical harmonics, so that ``Y_l(R_e r_hat) = Y_l(e_y)`` has only
its ``m = 0`` component nonzero) and the real-basis Wigner matrices ``D^l(R_e)`` for every degree, batched
over edges and differentiable w.r.t. the edge vectors. ``R_e`` is only defined up to a roll about ``e_y``
(any ``Y(t) R_e`` also works); the consumers of these frames (:class:`euclidnet.nn.SO2Convolution`) compute
functions that do not depend on the roll, which is what makes the two-chart construction below exact.

Construction (no angles, no ``atan2``): with ``v = r_hat`` written as ``(sin b sin a, cos b, sin b cos a)``,
``R_e = X(-b) Y(-a)`` (YXY Euler angles, see ``docs/conventions.md``) and
``D^l(R_e) = D_x^l(-b) D_y^l(-a)``. ``cos(m a), sin(m a)`` are the real and imaginary parts of
``((v_z + i v_x) / rho)^m`` and ``cos(m b), sin(m b)`` those of ``(v_y + i rho)^m`` with
``rho = sqrt(v_x^2 + v_z^2)``: polynomials of ``v`` and ``1 / rho``, smooth wherever ``rho > 0``.

* ``D_y(-a)`` mixes only the components ``m`` and ``-m``: an elementwise operation.
* ``D_x(-b) = P D_y(-b) P^T`` with ``P = D(Z(-pi/2))`` (the cached quarter turn of
  :mod:`euclidnet.o3.wigner`) is a fixed linear combination of ``cos(m b), sin(m b)``: one GEMM
  ``[E, 2l+1] @ [2l+1, (2l+1)^2]`` per degree.

Charts: the formula is singular where ``rho = 0`` (edges along ``+-y``; autograd would produce NaN there even
though ``D`` has a limit). Edges with ``x^2 + z^2 < 1/2`` (after normalisation) use a second chart: with
``G = Z(-pi/2)`` (which maps ``e_y`` to ``e_x``) the vector ``v = G r_hat = (y, -x, z)`` has
``rho^2 = y^2 + z^2 > 1/2``, and ``R_e = R(v) G`` so ``D(R_e) = D(R(v)) D(G)``. Each chart is used only where
its ``rho^2 >= 1/2``, so no derivative ever divides by less than ``1/sqrt(2)``; the two charts differ by a
roll about ``e_y``, invisible to roll-invariant consumers, so their gradients are exact everywhere.

Zero-length edges (``|r| == 0``): the direction is undefined; they are reported in the returned mask and
given the identity frame (the vector is replaced by ``e_x`` before any division, so gradients are finite
and zero). Consumers decide what a zero-length edge means (the SO(2) convolution uses the rotation average,
which equals the CG convolution with ``Y_{l>0}(0) = 0``).
"""

from __future__ import annotations

import functools

import torch

from .wigner import _quarter_turn, _quarter_turn_f64

__all__ = ["edge_frame", "edge_frame_wigner_D", "frame_tables", "wigner_D_from_tables"]


@functools.cache
def _dx_basis_f64(l: int) -> torch.Tensor:
    """``B [2l+1, (2l+1)^2]`` with ``D_x^l(-b) = phi(b) @ B``, ``phi = (1, cos b..cos lb, sin b..sin lb)``."""
    d = 2 * l + 1
    P = _quarter_turn_f64(l)
    B = torch.zeros(d, d, d, dtype=torch.float64)
    # D_y(-b)[l+m, l+m] = cos(m b) and D_y(-b)[l+m, l-m] = sin(m b) = sign(m) sin(|m| b) (see wigner_D_y).
    for m in range(-l, l + 1):
        E = torch.zeros(d, d, dtype=torch.float64)
        E[l + m, l + m] = 1.0
        B[abs(m)] += P @ E @ P.T
        if m != 0:
            E = torch.zeros(d, d, dtype=torch.float64)
            E[l + m, l - m] = 1.0 if m > 0 else -1.0
            B[l + abs(m)] += P @ E @ P.T
    return B.reshape(d, d * d)


_BASIS_CACHE: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


def _dx_basis(l: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    key = (l, dtype, device)
    B = _BASIS_CACHE.get(key)
    if B is None:
        B = _dx_basis_f64(l).to(dtype=dtype, device=device)
        _BASIS_CACHE[key] = B
    return B


def _powers(c: torch.Tensor, s: torch.Tensor, lmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos(m t), sin(m t)`` for ``m = 0..lmax`` from ``cos t, sin t`` (complex power): ``[E, lmax+1]`` each."""
    cs, ss = [torch.ones_like(c)], [torch.zeros_like(s)]
    for _ in range(lmax):
        cp, sp = cs[-1], ss[-1]
        cs.append(cp * c - sp * s)
        ss.append(sp * c + cp * s)
    return torch.stack(cs, -1), torch.stack(ss, -1)


def edge_frame(edge_vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The chart data of the edge frames.

    Args:
        edge_vec: ``[E, 3]`` edge vectors ``(x, y, z)``, float32 or float64, any length (zero allowed).

    Returns:
        ``(v, chart_b, zero, cos_sin)`` where ``v [E, 3]`` is the unit vector the frame is built from
        (``r_hat`` in chart A, ``Z(-pi/2) r_hat`` in chart B, ``e_x`` for zero-length edges), ``chart_b [E]``
        (bool) marks chart-B edges, ``zero [E]`` (bool) zero-length edges, and ``cos_sin [E, 4]`` is
        ``(cos a, sin a, cos b, sin b)`` of ``v = (sin b sin a, cos b, sin b cos a)``.
    """
    if not isinstance(edge_vec, torch.Tensor):
        raise TypeError(f"edge_vec must be a torch.Tensor, got {type(edge_vec).__name__}")
    if edge_vec.ndim != 2 or edge_vec.shape[-1] != 3:
        raise ValueError(f"edge_vec must have shape [num_edges, 3], got {tuple(edge_vec.shape)}")
    if not edge_vec.is_floating_point():
        raise TypeError(f"edge_vec must be a floating point tensor, got dtype {edge_vec.dtype}")
    with torch.no_grad():
        sq = (edge_vec * edge_vec).sum(-1)
        zero = sq == 0
    # Replace zero vectors before dividing (both torch.where branches are differentiated, so the division
    # must never see a zero: this is what keeps their gradients finite, and zero).
    ex = torch.zeros_like(edge_vec)
    ex[:, 0] = 1.0
    r = torch.where(zero[:, None], ex, edge_vec)
    r = r / r.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        chart_b = r[:, 0] ** 2 + r[:, 2] ** 2 < 0.5
    # Chart B: v = Z(-pi/2) r = (y, -x, z).
    rb = torch.stack([r[:, 1], -r[:, 0], r[:, 2]], -1)
    v = torch.where(chart_b[:, None], rb, r)
    rho = torch.sqrt(v[:, 0] ** 2 + v[:, 2] ** 2)  # >= 1/sqrt(2) by the choice of chart
    cos_sin = torch.stack([v[:, 2] / rho, v[:, 0] / rho, v[:, 1], rho], -1)
    return v, chart_b, zero, cos_sin


def frame_tables(cos_sin: torch.Tensor, lmax: int) -> torch.Tensor:
    """``[E, 4, lmax+1]``: ``cos(m a), sin(m a), cos(m b), sin(m b)`` for ``m = 0..lmax`` from ``edge_frame``'s
    ``cos_sin`` (a running complex power: polynomials, no trigonometric calls)."""
    ca, sa = _powers(cos_sin[:, 0], cos_sin[:, 1], lmax)
    cb, sb = _powers(cos_sin[:, 2], cos_sin[:, 3], lmax)
    return torch.stack([ca, sa, cb, sb], 1)


def wigner_D_from_tables(tables: torch.Tensor, chart_b: torch.Tensor, ls: list[int]) -> dict[int, torch.Tensor]:
    """``D^l(R_e)`` ``[E, 2l+1, 2l+1]`` for ``l in ls`` from :func:`frame_tables` and the chart mask."""
    ca, sa, cb, sb = tables.unbind(1)
    E = tables.shape[0]
    dtype, device = tables.dtype, tables.device
    any_b = bool(chart_b.any())
    out: dict[int, torch.Tensor] = {}
    for l in ls:
        d = 2 * l + 1
        if l == 0:
            out[0] = torch.ones(E, 1, 1, dtype=dtype, device=device)
            continue
        phi = torch.cat([cb[:, : l + 1], sb[:, 1 : l + 1]], -1)  # [E, 2l+1]
        Dx = (phi @ _dx_basis(l, dtype, device)).view(E, d, d)
        # Right-multiplication by D_y(-a): column l+m is cos(m a) D_x[:, l+m] - sin(m a) D_x[:, l-m]
        # (D_y(-a)[l-m, l+m] = -sin(m a)); the mirrored column l-m is D_x.flip(-1)[:, l+m].
        cosrow = torch.cat([ca[:, 1 : l + 1].flip(-1), ca[:, : l + 1]], -1)
        sinrow = torch.cat([sa[:, 1 : l + 1].flip(-1), -sa[:, : l + 1]], -1)
        D = Dx * cosrow[:, None, :] + Dx.flip(-1) * sinrow[:, None, :]
        if any_b:
            D = torch.where(chart_b[:, None, None], D @ _quarter_turn(l, dtype, device), D)
        out[l] = D
    return out


def edge_frame_wigner_D(
    edge_vec: torch.Tensor, ls: list[int] | int
) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """Wigner matrices ``D^l(R_e)`` of per-edge rotations with ``R_e r_hat = e_y``.

    Args:
        edge_vec: ``[E, 3]`` edge vectors (any length; zero-length edges get the identity frame).
        ls: the degrees wanted (an int ``L`` means ``0..L``).

    Returns:
        ``(D, zero)``: ``D[l]`` is ``[E, 2l+1, 2l+1]`` (orthogonal, ``D[1]`` is the 3x3 matrix ``R_e``
        itself), with ``D[l] @ Y_l(r_hat) = Y_l(e_y)`` (only ``m = 0`` nonzero); ``zero [E]`` (bool) marks
        zero-length edges. The roll of ``R_e`` about ``e_y`` depends on the chart (see the module
        docstring): only roll-invariant functions of these frames are smooth in ``edge_vec``.
    """
    if isinstance(ls, int):
        ls = list(range(ls + 1))
    ls = sorted(set(ls))
    _, chart_b, zero, cs = edge_frame(edge_vec)
    tables = frame_tables(cs, max(ls) if ls else 0)
    return wigner_D_from_tables(tables, chart_b, ls), zero
