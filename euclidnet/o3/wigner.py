"""Wigner D matrices and Wigner 3j symbols in the real basis.

The real basis of degree ``l`` has ``2l + 1`` components indexed ``i = m + l``, ``m = -l..l``, with the
polar axis along ``y`` (the basis of :func:`euclidnet.o3.spherical_harmonics`). It is related to the
complex (Condon-Shortley) basis quantised along that axis by the unitary matrix of
:func:`change_basis_real_to_complex`; the extra global phase ``(-i)^l`` of that matrix is what makes every
Clebsch-Gordan coefficient real. These are e3nn's conventions: ``wigner_D`` and ``wigner_3j`` are equal to
e3nn's to round-off.

``wigner_D`` uses no matrix exponential at run time. A rotation about ``y`` is block-diagonal in the real
basis (``cos(m a)``, ``sin(m a)`` pairs), and ``X(b) = P Y(b) P^T`` with ``P`` the quarter turn about ``z``
taking ``y`` to ``x``; ``D(P)`` is computed once per degree. ``wigner_3j`` starts from the exact Racah
formula in rational arithmetic, so it is exact to float64 round-off at any degree.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import torch

__all__ = [
    "change_basis_real_to_complex",
    "so3_generators",
    "wigner_D",
    "wigner_D_y",
    "wigner_3j",
    "clebsch_gordan_complex",
]


@functools.cache
def _change_basis_real_to_complex_f64(l: int) -> torch.Tensor:
    s = 2.0**-0.5
    q = torch.zeros(2 * l + 1, 2 * l + 1, dtype=torch.complex128)
    q[l, l] = 1.0
    for m in range(1, l + 1):
        # Rows: complex index m' + l; columns: real index m + l (cos-like for m > 0, sin-like for m < 0).
        q[l - m, l + m] = s
        q[l - m, l - m] = -1j * s
        q[l + m, l + m] = (-1) ** m * s
        q[l + m, l - m] = 1j * (-1) ** m * s
    return (-1j) ** l * q


def change_basis_real_to_complex(l: int) -> torch.Tensor:
    """Unitary ``Q`` ``[2l+1, 2l+1]`` (complex128) with ``v_complex = Q @ v_real``."""
    _check_l(l)
    return _change_basis_real_to_complex_f64(l).clone()


@functools.cache
def _so3_generators_f64(l: int) -> torch.Tensor:
    m = torch.arange(-l, l + 1, dtype=torch.float64)
    jp = torch.zeros(2 * l + 1, 2 * l + 1, dtype=torch.complex128)
    for i in range(2 * l):
        jp[i + 1, i] = math.sqrt(l * (l + 1) - m[i].item() * (m[i].item() + 1))
    jm = jp.T.clone()
    jx = (jp + jm) / 2
    jy = (jp - jm) / 2j
    jz = torch.diag(m).to(torch.complex128)
    q = _change_basis_real_to_complex_f64(l)
    gens = []
    # The complex basis is quantised along our y axis; these combinations are the infinitesimal
    # rotations about our x, y and z axes (checked against d/dt of matrix_x/y/z at l = 1).
    for g in (-1j * jy, 1j * jz, 1j * jx):
        g = q.conj().T @ g @ q
        if g.imag.abs().max() > 1e-12:  # pragma: no cover (a convention error, not a user error)
            raise RuntimeError(f"so(3) generator of degree {l} is not real")
        gens.append(g.real)
    return torch.stack(gens)


def so3_generators(l: int, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """Real antisymmetric generators ``[3, 2l+1, 2l+1]`` of rotations about x, y, z.

    ``wigner_D`` of a rotation by ``t`` about axis ``k`` equals ``matrix_exp(t * G[k])``.
    """
    _check_l(l)
    return _so3_generators_f64(l).to(dtype=dtype or torch.get_default_dtype(), device=device)


@functools.cache
def _quarter_turn_f64(l: int) -> torch.Tensor:
    # D(P), P = Z(-pi/2), which maps e_y to e_x. matrix_exp in float64 is accurate to ~1e-15; the polar
    # projection U V^T then makes it orthogonal to round-off, so D(identity) = P P^T is I to ~1e-16.
    P = torch.linalg.matrix_exp(-math.pi / 2 * _so3_generators_f64(l)[2])
    U, _, Vh = torch.linalg.svd(P)
    return U @ Vh


_QUARTER_CACHE: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


def _quarter_turn(l: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    key = (l, dtype, device)
    P = _QUARTER_CACHE.get(key)
    if P is None:
        P = _quarter_turn_f64(l).to(dtype=dtype, device=device)
        _QUARTER_CACHE[key] = P
    return P


def wigner_D_y(l: int, angle: torch.Tensor) -> torch.Tensor:
    """``D^l`` of the rotation by ``angle`` about the polar (y) axis, ``[..., 2l+1, 2l+1]``.

    In the real basis it mixes only the components ``m`` and ``-m``: ``cos(m a)`` on the diagonal and
    ``-sin(m a)`` on the anti-diagonal (row ``m + l``).
    """
    _check_l(l)
    angle = torch.as_tensor(angle)
    if not angle.is_floating_point():
        angle = angle.to(torch.get_default_dtype())
    m = torch.arange(-l, l + 1, dtype=angle.dtype, device=angle.device)
    ma = angle[..., None] * m
    return torch.diag_embed(torch.cos(ma)) + torch.diag_embed(-torch.sin(ma)).flip(-1)


def wigner_D(l: int, alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Wigner D matrix of the rotation ``Y(alpha) X(beta) Y(gamma)`` in the real basis.

    Args:
        l: degree >= 0.
        alpha, beta, gamma: YXY Euler angles, any broadcastable shapes ``[...]``.

    Returns:
        ``[..., 2l+1, 2l+1]`` orthogonal matrices with ``D(R1 R2) = D(R1) D(R2)``, ``D^1(R) = R`` and
        ``Y(R x) = D(R) Y(x)`` for the spherical harmonics ``Y`` of degree ``l``.
    """
    _check_l(l)
    alpha, beta, gamma = (torch.as_tensor(a) for a in (alpha, beta, gamma))
    dtype = torch.promote_types(torch.promote_types(alpha.dtype, beta.dtype), gamma.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    alpha, beta, gamma = torch.broadcast_tensors(alpha.to(dtype), beta.to(dtype), gamma.to(dtype))
    if l == 0:
        return torch.ones(*alpha.shape, 1, 1, dtype=dtype, device=alpha.device)
    P = _quarter_turn(l, dtype, alpha.device)
    return wigner_D_y(l, alpha) @ P @ wigner_D_y(l, beta) @ P.T @ wigner_D_y(l, gamma)


def _check_l(l: int) -> None:
    if isinstance(l, bool) or not isinstance(l, int):
        raise TypeError(f"degree l must be an int, got {l!r}")
    if l < 0:
        raise ValueError(f"degree l must be >= 0, got {l}")


# -- Clebsch-Gordan / 3j --------------------------------------------------------------------------------


def _cg_complex_exact(j1: int, m1: int, j2: int, m2: int, j3: int, m3: int) -> float:
    """Condon-Shortley Clebsch-Gordan coefficient <j1 m1 j2 m2 | j3 m3> (Racah's formula, exact)."""
    if m1 + m2 != m3:
        return 0.0
    f = math.factorial
    pref = Fraction(
        (2 * j3 + 1) * f(j3 + j1 - j2) * f(j3 - j1 + j2) * f(j1 + j2 - j3)
        * f(j3 + m3) * f(j3 - m3) * f(j1 - m1) * f(j1 + m1) * f(j2 - m2) * f(j2 + m2),
        f(j1 + j2 + j3 + 1),
    )
    kmin = max(0, j2 - j3 - m1, j1 - j3 + m2)
    kmax = min(j1 + j2 - j3, j1 - m1, j2 + m2)
    s = Fraction(0)
    for k in range(kmin, kmax + 1):
        s += Fraction(
            (-1) ** k,
            f(k) * f(j1 + j2 - j3 - k) * f(j1 - m1 - k) * f(j2 + m2 - k) * f(j3 - j2 + m1 + k)
            * f(j3 - j1 - m2 + k),
        )
    if s == 0:
        return 0.0
    # value = s * sqrt(pref), rounded once: sign(s) * sqrt(s^2 pref) with the rational part exact.
    return math.copysign(math.sqrt(s * s * pref), s)


def _check_triple(l1: int, l2: int, l3: int) -> None:
    for name, l in (("l1", l1), ("l2", l2), ("l3", l3)):
        if isinstance(l, bool) or not isinstance(l, int):
            raise TypeError(f"wigner_3j: {name} must be an int, got {l!r}")
        if l < 0:
            raise ValueError(f"wigner_3j: {name} must be >= 0, got {l}")
    if not abs(l1 - l2) <= l3 <= l1 + l2:
        raise ValueError(
            f"wigner_3j({l1}, {l2}, {l3}): the degrees violate the triangle rule |l1 - l2| <= l3 <= l1 + l2 "
            f"(here {abs(l1 - l2)} <= {l3} <= {l1 + l2} is false), so there is no invariant"
        )


@functools.cache
def clebsch_gordan_complex(l1: int, l2: int, l3: int) -> torch.Tensor:
    """Complex-basis CG coefficients ``[2l1+1, 2l2+1, 2l3+1]`` float64, index ``m + l``."""
    _check_triple(l1, l2, l3)
    C = torch.zeros(2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1, dtype=torch.float64)
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            m3 = m1 + m2
            if abs(m3) <= l3:
                C[l1 + m1, l2 + m2, l3 + m3] = _cg_complex_exact(l1, m1, l2, m2, l3, m3)
    return C


@functools.cache
def _wigner_3j_f64(l1: int, l2: int, l3: int) -> torch.Tensor:
    C = clebsch_gordan_complex(l1, l2, l3).to(torch.complex128)
    Q1 = _change_basis_real_to_complex_f64(l1)
    Q2 = _change_basis_real_to_complex_f64(l2)
    Q3 = _change_basis_real_to_complex_f64(l3)
    # C_real[a, b, c] = sum Q1[i, a] Q2[j, b] conj(Q3[k, c]) C[i, j, k]; contracted one index at a time.
    C = torch.einsum("ia,ijk->ajk", Q1, C)
    C = torch.einsum("jb,ajk->abk", Q2, C)
    C = torch.einsum("kc,abk->abc", Q3.conj(), C)
    if C.imag.abs().max() > 1e-12:  # pragma: no cover (a convention error, not a user error)
        raise RuntimeError(f"3j symbol ({l1}, {l2}, {l3}) is not real in the real basis")
    C = C.real.contiguous()
    # Zero the round-off of structurally vanishing entries so sparse kernels see the true pattern.
    C[C.abs() < 1e-14] = 0.0
    return C / C.norm()


_3J_CACHE: dict[tuple[int, int, int, torch.dtype, torch.device], torch.Tensor] = {}


def wigner_3j(
    l1: int, l2: int, l3: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Real-basis Wigner 3j symbol ``C`` ``[2l1+1, 2l2+1, 2l3+1]``.

    ``C`` is invariant, ``C_abc = C_ijk D1_ia D2_jb D3_kc`` for every rotation, and has Frobenius norm 1.
    ``C(0, l, l) = I / sqrt(2l+1)`` and ``C(1, 1, 1) = eps_ijk / sqrt(6)``. Exact to float64 round-off for
    any degree; computed once per triple and cached (a fresh copy is returned).

    Raises:
        ValueError: if the triple violates the triangle rule or a degree is negative.
    """
    _check_triple(l1, l2, l3)
    dtype = dtype or torch.get_default_dtype()
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = (l1, l2, l3, dtype, device)
    C = _3J_CACHE.get(key)
    if C is None:
        C = _wigner_3j_f64(l1, l2, l3).to(dtype=dtype, device=device)
        _3J_CACHE[key] = C
    return C.clone()
