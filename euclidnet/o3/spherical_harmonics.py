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

Computation: the Legendre part follows the standard stable three-term recursion in ``l`` (for every ``m``),
the azimuthal part is a running complex power of ``z + ix``. On CPU (float32/float64) a small C kernel
(:mod:`euclidnet.kernels`, compiled at first use) evaluates all degrees of a block of points at once and
computes the gradient analytically (derivatives of the same recursion, then the chain rule through
``x / |x|``); second derivatives differentiate the pure-torch path, which is also used on other devices, when
no C compiler is available, under ``torch.compile``/``torch.func`` and with ``EUCLIDNET_DISABLE_KERNELS=1``.
Both paths agree to round-off. With ``normalize=False`` the recursion runs homogeneously, returning the
solid harmonics :math:`|x|^l Y_l(\hat x)`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from .. import kernels as _kernels
from .irreps import Irreps

__all__ = ["spherical_harmonics", "SphericalHarmonics"]

_NORMALIZATIONS = ("component", "norm", "integral")


@functools.cache
def _tables(lmax: int) -> dict[str, object]:
    """Recursion coefficients for degrees up to ``lmax`` (float64; the C kernel uses the same arithmetic)."""
    a = {}
    b = {}
    for l in range(2, lmax + 1):
        ms = range(0, l - 1)
        a[l] = torch.tensor(
            [math.sqrt((2 * l - 1) * (2 * l + 1) / ((l - m) * (l + m))) for m in ms], dtype=torch.float64
        )[:, None]
        b[l] = torch.tensor(
            [
                math.sqrt((2 * l + 1) * (l + m - 1) * (l - m - 1) / ((l - m) * (l + m) * (2 * l - 3)))
                for m in ms
            ],
            dtype=torch.float64,
        )[:, None]
    # Sectoral seeds: P_m^m = diag[m], P_{m+1}^m = sub[m] * diag[m] * y.
    diag = [1.0]
    for m in range(1, lmax + 1):
        diag.append(diag[-1] * math.sqrt((2 * m + 1) / (2 * m)) * (math.sqrt(2) if m == 1 else 1.0))
    sd = [math.sqrt(2 * m + 3) * diag[m] for m in range(lmax + 1)]
    return {"a": a, "b": b, "diag": diag, "sd": sd}


@functools.cache
def _assembly_index(ls: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices into the stacked Legendre parts ``P`` and azimuthal factors ``A`` for the output rows.

    ``P`` rows are ordered ``(l, m)`` with ``l = 0..lmax``, ``m = 0..l``; ``A`` rows are
    ``[1, C_1, S_1, ..., C_lmax, S_lmax]`` with ``C_m + i S_m = (z + ix)^m``.
    """
    ip, ia = [], []
    for l in ls:
        for m in range(-l, l + 1):
            ip.append(l * (l + 1) // 2 + abs(m))
            ia.append(0 if m == 0 else (2 * m - 1 if m > 0 else 2 * (-m)))
    return torch.tensor(ip), torch.tensor(ia)


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


def _scales(ls: list[int], normalization: str) -> list[float]:
    if normalization == "component":
        return [1.0] * len(ls)
    if normalization == "norm":
        return [1.0 / math.sqrt(2 * l + 1) for l in ls]
    return [1.0 / math.sqrt(4 * math.pi)] * len(ls)


def _parse_request(ls: int | Sequence[int] | str | Irreps, normalization: str) -> tuple[list[int], list[float]]:
    """Validated degrees and per-degree scales of a request (raises on invalid degrees)."""
    degrees = _parse_ls(ls)
    for l in degrees:
        if l < 0:
            raise ValueError(f"spherical_harmonics: degrees must be >= 0, got {l}")
    return degrees, _scales(degrees, normalization)


@functools.lru_cache(maxsize=512)
def _cached_request(key: int | tuple[int, ...] | str | Irreps, normalization: str) -> tuple[list[int], list[float]]:
    return _parse_request(key, normalization)


def _request(ls: int | Sequence[int] | str | Irreps, normalization: str) -> tuple[list[int], list[float]]:
    """:func:`_parse_request`, memoised for the usual forms of ``ls`` (an int, a str or Irreps, a list or
    tuple of Python ints): parsing irreps strings and building the scale list on every call costs more than
    evaluating the harmonics of a small batch. The returned lists are shared: callers must not modify them."""
    if type(ls) in (list, tuple) and all(type(l) is int for l in ls):  # type: ignore[union-attr]
        return _cached_request(tuple(ls), normalization)  # type: ignore[arg-type]
    if type(ls) in (int, str) or isinstance(ls, Irreps):
        return _cached_request(ls, normalization)  # type: ignore[arg-type]
    return _parse_request(ls, normalization)


def _sh_torch(x: torch.Tensor, ls: list[int], scales: list[float], normalize: bool) -> torch.Tensor:
    """Pure-torch harmonics of ``x`` ``[N, 3]`` -> ``[N, sum(2l+1)]`` (differentiable to any order).

    Computed component-major (``[rows, N]``, so every op is over contiguous rows of points) and transposed
    once at the end.
    """
    lmax = max(ls)
    if normalize:
        # Same limit at 0 as torch.nn.functional.normalize: the zero vector stays zero, so every l > 0
        # harmonic (a homogeneous polynomial) vanishes there.
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    u = x.T
    ux, uy, uz = u[0], u[1], u[2]
    r2 = (x * x).sum(-1)
    dtype, device = x.dtype, x.device
    t = _tables(lmax)
    # Azimuthal factors: running complex power of (z + ix).
    A = [torch.ones_like(ux)]
    c, s = A[0], torch.zeros_like(ux)
    for m in range(1, lmax + 1):
        if m == 1:
            c, s = uz, ux
        else:
            c, s = uz * c - ux * s, ux * c + uz * s
        A += [c, s]
    # Legendre parts, one fused update per degree over all its orders m <= l - 2.
    P: list[torch.Tensor] = []
    ones = torch.ones(1, ux.shape[0], dtype=dtype, device=device)
    for l in range(lmax + 1):
        rows = []
        if l >= 2:
            a = t["a"][l].to(dtype=dtype, device=device)  # type: ignore[index]
            b = t["b"][l].to(dtype=dtype, device=device)  # type: ignore[index]
            rows.append(a * (uy * P[l - 1][: l - 1]) - b * (P[l - 2][: l - 1] * r2))
        if l >= 1:
            rows.append(t["sd"][l - 1] * uy[None])  # type: ignore[index]
        rows.append(ones * t["diag"][l])  # type: ignore[index]
        P.append(torch.cat(rows) if len(rows) > 1 else rows[0])
    ip, ia = _assembly_index(tuple(ls))
    Y = torch.cat(P)[ip.to(device)] * torch.stack(A)[ia.to(device)]
    if any(sc != 1.0 for sc in scales):
        col = torch.tensor([sc for l, sc in zip(ls, scales) for _ in range(2 * l + 1)], dtype=dtype, device=device)
        Y = Y * col[:, None]
    return Y.T


_functorch_active = getattr(torch._C, "_are_functorch_transforms_active", None)


def _kernel_usable(x: torch.Tensor) -> bool:
    """Whether the compiled CPU kernel may evaluate ``x`` (else the pure-torch path is used)."""
    if type(x) is not torch.Tensor and not isinstance(x, torch.nn.Parameter):
        return False  # tensor subclasses (fake/functional tensors, user subclasses) take the generic path
    if x.dtype not in (torch.float32, torch.float64) or x.device.type != "cpu" or x.layout != torch.strided:
        return False
    if torch.compiler.is_compiling():
        return False
    if _functorch_active is not None and _functorch_active():
        return False
    if _kernels.kernels_disabled():
        return False
    return _kernels.sh_kernel_available()


class _SHKernel(torch.autograd.Function):
    """Compiled forward and analytic backward; double backward differentiates the pure-torch path."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, ls: list[int], scales: list[float], normalize: bool):  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.args = (ls, scales, normalize)
        return _kernels.sh_forward(x, ls, scales, normalize)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        ls, scales, normalize = ctx.args
        if torch.is_grad_enabled():
            # create_graph=True: the gradient must itself be differentiable; recompute with torch ops.
            with torch.enable_grad():
                xg = x if x.requires_grad else x.detach().requires_grad_()
                y = _sh_torch(xg, ls, scales, normalize)
                if not y.requires_grad:  # only degree 0 requested: a constant
                    return torch.zeros_like(x), None, None, None
                (gx,) = torch.autograd.grad(y, xg, grad_out, create_graph=True)
        else:
            gx = _kernels.sh_backward(x, grad_out, ls, scales, normalize)
        return gx, None, None, None


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
        x: ``[..., 3]`` vectors ``(x, y, z)``, float32 or float64 (other floating dtypes use the
            pure-torch path).
        normalize: evaluate on ``x / |x|`` (the usual choice). With ``False`` returns the solid harmonics
            ``|x|^l Y_l(x / |x|)``, polynomials in ``x``.
        normalization: ``"component"``, ``"norm"`` or ``"integral"`` (see the module docstring).

    Returns:
        ``[..., sum(2l + 1)]``.

    On CPU with float32/float64 a compiled C kernel (see :mod:`euclidnet.kernels`) computes the values
    and the first derivative; otherwise (other devices, no C compiler, inside ``torch.compile`` or
    ``torch.func`` transforms, or ``EUCLIDNET_DISABLE_KERNELS=1``) the same recursion runs as torch ops.
    Both agree to round-off. Second derivatives (``create_graph=True``, e.g. training on forces) are
    always available.

    At ``x = 0`` with ``normalize=True`` the direction is undefined: ``x`` is divided by
    ``max(|x|, 1e-12)`` like :func:`torch.nn.functional.normalize`, so the result is ``Y_0`` followed by
    zeros (the limit of the polynomials at the origin) and the gradient is finite (that of ``x / 1e-12``).
    NaN in a vector gives NaN in all of that vector's ``l > 0`` harmonics (``Y_0`` is the constant); an
    infinite component gives NaN in some of them; other vectors are never affected.
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
    degrees, scales = _request(ls, normalization)
    if not degrees:
        return x.new_zeros(*x.shape[:-1], 0)
    batch = x.shape[:-1]
    u = x if x.dim() == 2 else x.reshape(-1, 3)
    if _kernel_usable(u):
        if u.requires_grad and torch.is_grad_enabled():
            Y = _SHKernel.apply(u, degrees, scales, bool(normalize))
        else:
            Y = _kernels.sh_forward(u, degrees, scales, bool(normalize))
    else:
        Y = _sh_torch(u, degrees, scales, bool(normalize)).contiguous()
    return Y if x.dim() == 2 else Y.reshape(*batch, Y.shape[-1])


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
