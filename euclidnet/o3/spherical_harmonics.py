r"""Real spherical harmonics of any degree.

Convention (e3nn's): the polar axis is ``y``; component ``i`` of degree ``l`` has ``m = i - l``;

.. math::

    Y_l^m(x, y, z) = \bar P_l^{|m|}(y)\;\cdot\;\begin{cases}
        \operatorname{Re}\,(z + i x)^{m} & m > 0 \\ 1 & m = 0 \\ \operatorname{Im}\,(z + i x)^{|m|} & m < 0
    \end{cases}

where :math:`\bar P_l^m` is the fully normalised associated Legendre function with the
:math:`\sin^m\theta` factor moved into :math:`(z + ix)^m` (so each :math:`Y_l^m` is a polynomial, smooth at
the poles) and no Condon-Shortley phase. Hence ``Y_1 = sqrt(3) (x, y, z)`` and ``Y(R x) = D(R) Y(x)`` with
:func:`euclidnet.o3.wigner_D`.

Normalisations: ``"component"`` gives :math:`\|Y_l(\hat x)\|^2 = 2l+1` (each component has unit mean
square over the sphere); ``"norm"`` gives :math:`\|Y_l(\hat x)\|^2 = 1`; ``"integral"`` gives
:math:`\int_{S^2} Y_l^m Y_{l'}^{m'} = \delta_{ll'}\delta_{mm'}`.

Computation: the Legendre part follows the standard stable three-term recursion in ``l`` (vectorised over
``m``), the azimuthal part is a running complex power; both are evaluated for the whole batch at once, never
per sample. With ``normalize=False`` the same recursion runs homogeneously, returning the solid harmonics
:math:`|x|^l Y_l(\hat x)`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from .irreps import Irreps

__all__ = ["spherical_harmonics", "SphericalHarmonics"]

_NORMALIZATIONS = ("component", "norm", "integral")


@functools.cache
def _tables(lmax: int) -> dict[str, torch.Tensor]:
    """Recursion coefficients (float64) for degrees up to ``lmax``."""
    a = {}
    b = {}
    for l in range(2, lmax + 1):
        ms = range(0, l - 1)
        a[l] = torch.tensor([math.sqrt((2 * l - 1) * (2 * l + 1) / ((l - m) * (l + m))) for m in ms])
        b[l] = torch.tensor(
            [
                math.sqrt((2 * l + 1) * (l + m - 1) * (l - m - 1) / ((l - m) * (l + m) * (2 * l - 3)))
                for m in ms
            ]
        )
    # Sectoral seeds: P_m^m = diag[m], P_{m+1}^m = sub[m] * y * P_m^m.
    diag = [1.0]
    for m in range(1, lmax + 1):
        diag.append(diag[-1] * math.sqrt((2 * m + 1) / (2 * m)) * (math.sqrt(2) if m == 1 else 1.0))
    sub = [math.sqrt(2 * m + 3) for m in range(lmax + 1)]
    return {"a": a, "b": b, "diag": diag, "sub": sub}  # type: ignore[dict-item]


def _parse_ls(ls: int | Sequence[int] | str | Irreps) -> list[int]:
    """The degrees requested, checking that irreps input is a valid set of harmonics' irreps."""
    if isinstance(ls, (str, Irreps)):
        irreps = Irreps(ls)
        odd_parity: int | None = None
        out = []
        for mul, ir in irreps:
            # Harmonics of a vector (1o) have parity (-1)^l; of a pseudovector (1e), +1. Even l: +1 either way.
            if ir.l % 2 == 0 and ir.p != 1:
                raise ValueError(
                    f"spherical_harmonics: {ir} is not the irrep of a spherical harmonic (even l needs p = +1)"
                )
            if ir.l % 2 == 1:
                if odd_parity is None:
                    odd_parity = ir.p
                elif ir.p != odd_parity:
                    raise ValueError(
                        f"spherical_harmonics: irreps {irreps} mix the parities of a vector's and a "
                        "pseudovector's harmonics"
                    )
            out.extend([ir.l] * mul)
        return out
    if isinstance(ls, int) and not isinstance(ls, bool):
        return [ls]
    try:
        return [int(l) for l in ls]
    except TypeError:
        raise TypeError(f"spherical_harmonics: cannot read degrees from {ls!r}") from None


def _legendre_and_azimuth(
    u: torch.Tensor, lmax: int, r2: torch.Tensor | None
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Component-major pieces for ``u`` ``[3, N]``.

    Returns ``P`` (``P[l]`` is ``[l+1, N]``: the normalised Legendre parts for m = 0..l), and the azimuthal
    tables ``C``, ``S`` ``[lmax+1, N]`` with ``C[m] + i S[m] = (z + i x)^m``. ``r2`` (``|x|^2``) makes the
    recursion homogeneous; ``None`` means unit vectors.
    """
    x, y, z = u[0], u[1], u[2]
    N = u.shape[1]
    t = _tables(lmax)
    dtype = u.dtype
    # Azimuthal powers by the running product (z + ix)^m.
    C = [torch.ones_like(x)]
    S = [torch.zeros_like(x)]
    for _ in range(1, lmax + 1):
        c, s = C[-1], S[-1]
        C.append(z * c - x * s)
        S.append(x * c + z * s)
    Ct = torch.stack(C)
    St = torch.stack(S)
    P: list[torch.Tensor] = []
    for l in range(lmax + 1):
        rows = []
        if l >= 2:
            a = t["a"][l].to(dtype=dtype, device=u.device)[:, None]
            b = t["b"][l].to(dtype=dtype, device=u.device)[:, None]
            prev2 = P[l - 2][: l - 1]
            if r2 is not None:
                prev2 = prev2 * r2
            rows.append(a * (y * P[l - 1][: l - 1]) - b * prev2)
        if l >= 1:
            rows.append((t["sub"][l - 1] * t["diag"][l - 1]) * y[None])
        rows.append(torch.full((1, N), t["diag"][l], dtype=dtype, device=u.device))
        P.append(torch.cat(rows) if len(rows) > 1 else rows[0])
    return P, Ct, St


def _assemble(P: list[torch.Tensor], C: torch.Tensor, S: torch.Tensor, ls: list[int]) -> torch.Tensor:
    """Rows of all requested degrees, component-major ``[sum(2l+1), N]``."""
    blocks = []
    for l in ls:
        Pl = P[l]
        if l == 0:
            blocks.append(Pl)
            continue
        sin_part = (Pl[1:] * S[1 : l + 1]).flip(0)  # m = -l .. -1
        cos_part = Pl[1:] * C[1 : l + 1]  # m = 1 .. l
        blocks.append(torch.cat([sin_part, Pl[:1], cos_part]))
    return torch.cat(blocks)


def spherical_harmonics(
    ls: int | Sequence[int] | str | Irreps,
    x: torch.Tensor,
    normalize: bool = True,
    normalization: str = "component",
) -> torch.Tensor:
    r"""Real spherical harmonics of the vectors ``x``.

    Args:
        ls: a degree, a list of degrees, or irreps such as ``"0e + 1o + 2e"`` (parity ``(-1)^l``, the
            harmonics of a vector) or ``"0e + 1e + 2e"`` (of a pseudovector). Degrees are output in the
            order given; repeats are allowed.
        x: ``[..., 3]`` vectors ``(x, y, z)``, float32 or float64.
        normalize: evaluate on ``x / |x|`` (the usual choice). With ``False`` returns the solid harmonics
            ``|x|^l Y_l(x / |x|)``, polynomials in ``x``.
        normalization: ``"component"``, ``"norm"`` or ``"integral"`` (see the module docstring).

    Returns:
        ``[..., sum(2l + 1)]``.

    At ``x = 0`` with ``normalize=True`` the direction is undefined; the result is ``Y_0`` followed by
    zeros (the limit of the polynomial at the origin) and the gradient is finite. NaN or inf in a
    vector gives NaN in that vector's harmonics only (they propagate; nothing else is affected).
    """
    if normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"spherical_harmonics: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 0 or x.shape[-1] != 3:
        raise ValueError(
            f"spherical_harmonics: x must have shape [..., 3] (vectors x, y, z), got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"spherical_harmonics: x must be float32 or float64, got {x.dtype}")
    degrees = _parse_ls(ls)
    if not degrees:
        return x.new_zeros(*x.shape[:-1], 0)
    for l in degrees:
        if l < 0:
            raise ValueError(f"spherical_harmonics: degrees must be >= 0, got {l}")
    lmax = max(degrees)
    batch = x.shape[:-1]
    u = x.reshape(-1, 3)
    if normalize:
        # Same limit at 0 as torch.nn.functional.normalize: the zero vector stays zero, so every l > 0
        # harmonic (a homogeneous polynomial) vanishes there.
        u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    r2 = (u * u).sum(-1)
    P, C, S = _legendre_and_azimuth(u.T, lmax, r2)
    Y = _assemble(P, C, S, degrees)
    if normalization != "component":
        scale = []
        for l in degrees:
            f = 1.0 / math.sqrt(2 * l + 1) if normalization == "norm" else 1.0 / math.sqrt(4 * math.pi)
            scale.extend([f] * (2 * l + 1))
        Y = Y * torch.tensor(scale, dtype=Y.dtype, device=Y.device)[:, None]
    return Y.T.contiguous().reshape(*batch, Y.shape[0])


class SphericalHarmonics(torch.nn.Module):
    """Module form of :func:`spherical_harmonics` with its irreps declared.

    ``irreps_out`` is the requested irreps (``Irreps.spherical_harmonics(lmax)`` for an int ``lmax``).
    """

    def __init__(
        self,
        irreps_out: int | str | Irreps,
        normalize: bool = True,
        normalization: str = "component",
        irreps_in: str | Irreps = "1o",
    ) -> None:
        super().__init__()
        if isinstance(irreps_out, int) and not isinstance(irreps_out, bool):
            p = -1 if Irreps(irreps_in) == Irreps("1o") else 1
            irreps_out = Irreps.spherical_harmonics(irreps_out, p=p)
        self.irreps_out = Irreps(irreps_out)
        self.irreps_in = Irreps(irreps_in)
        if self.irreps_in not in (Irreps("1o"), Irreps("1e")):
            raise ValueError(f"SphericalHarmonics: irreps_in must be 1o or 1e, got {self.irreps_in}")
        for _, ir in self.irreps_out:
            expected = (-1) ** ir.l if self.irreps_in == Irreps("1o") else 1
            if ir.p != expected:
                raise ValueError(
                    f"SphericalHarmonics: {ir} cannot be a harmonic of a {self.irreps_in} input "
                    f"(expected parity {expected:+d} at l = {ir.l})"
                )
        if normalization not in _NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
        self.normalize = normalize
        self.normalization = normalization
        self._ls = self.irreps_out.ls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spherical_harmonics(self._ls, x, self.normalize, self.normalization)

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}, normalize={self.normalize}, {self.normalization}"
