"""Radial functions: smooth one-hot bases, the soft unit step, Bessel basis and smooth cutoff envelopes.

All functions act elementwise on distances (invariants), so they are trivially rotation/inversion invariant.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "soft_unit_step",
    "soft_one_hot_linspace",
    "BesselBasis",
    "PolynomialCutoff",
    "CosineCutoff",
    "BASES",
]

BASES = ("gaussian", "cosine", "smooth_finite", "fourier", "bessel")

# For x <= 1/800, exp(-1/x) <= exp(-800) underflows to exactly 0 in float64 (and float32), so masking these x
# does not change any value, while it keeps 1/x and 1/x^2 (hence every derivative) finite.
_SOFT_STEP_THRESHOLD = 1.0 / 800.0

# e3nn's normalisation of the "smooth_finite" basis, 1.14136 * e^2, in double precision. (e3nn evaluates e^2
# in torch's *default* dtype, so under a float32 default its constant differs from this one by ~1e-7 relative.)
_SMOOTH_FINITE_CST = 1.14136 * math.exp(2.0)


def soft_unit_step(x: torch.Tensor) -> torch.Tensor:
    r"""Smooth (:math:`C^\infty`) unit step :math:`\theta(x) e^{-1/x}`, elementwise, ``[...] -> [...]``.

    All derivatives are finite everywhere, including at ``x = 0`` (they are 0 for ``x <= 1/800``, where the
    value underflows to exactly 0 in float32 and float64). Values equal e3nn's ``soft_unit_step``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"soft_unit_step: x must be a torch.Tensor, got {type(x).__name__}")
    mask = x > _SOFT_STEP_THRESHOLD
    safe_x = torch.where(mask, x, torch.ones_like(x))
    return torch.where(mask, torch.exp(-1.0 / safe_x), torch.zeros_like(x))


def _sinc(u: torch.Tensor) -> torch.Tensor:
    """``sin(u) / u`` with value 1 at 0 and finite derivatives of every order (Taylor series for |u| < 1e-2)."""
    small = u.abs() < 1e-2
    safe_u = torch.where(small, torch.ones_like(u), u)
    u2 = u * u
    taylor = 1.0 - u2 / 6.0 * (1.0 - u2 / 20.0 * (1.0 - u2 / 42.0))
    return torch.where(small, taylor, torch.sin(safe_u) / safe_u)


def soft_one_hot_linspace(
    x: torch.Tensor, start: float, end: float, number: int, basis: str, cutoff: bool
) -> torch.Tensor:
    r"""Project ``x`` on ``number`` smooth basis functions spanning ``[start, end]``: ``[...] -> [..., number]``.

    Same definitions and normalisation constants as e3nn's ``soft_one_hot_linspace``. With centres
    ``v_i = linspace(start, end, number)`` (``cutoff=False``) or the interior points of
    ``linspace(start, end, number + 2)`` (``cutoff=True``), step ``s`` and ``u_i = (x - v_i)/s``:

    * ``"gaussian"``: ``exp(-u_i^2) / 1.12``
    * ``"cosine"``: ``cos(pi u_i / 2)`` for ``|u_i| < 1``, else 0
    * ``"smooth_finite"``: ``1.14136 e^2 * soft_unit_step(u_i + 1) * soft_unit_step(1 - u_i)``
    * ``"fourier"``: with ``t = (x - start)/(end - start)``: ``cos(pi i t)``, ``i = 0..N-1`` (no cutoff) or
      ``sin(pi i t) [0 < t < 1]``, ``i = 1..N`` (cutoff), both divided by ``sqrt(0.25 + N/2)``
    * ``"bessel"``: with ``r = x - start``, ``c = end - start``: ``sqrt(2/c) sin(pi i r / c) / r``,
      ``i = 1..N`` (times ``[0 < r < c]`` with cutoff). At ``r = 0`` the finite limit ``sqrt(2/c) pi i / c``
      is returned (0 with cutoff), where e3nn returns NaN; the gradient there is finite too.

    ``cutoff=True`` makes every function vanish outside ``(start, end)`` (exactly, except for ``"gaussian"``
    which only decays).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"soft_one_hot_linspace: x must be a torch.Tensor, got {type(x).__name__}")
    if basis not in BASES:
        raise ValueError(f"soft_one_hot_linspace: unknown basis {basis!r}; valid bases are {', '.join(BASES)}")
    if not isinstance(cutoff, bool):
        raise TypeError(f"soft_one_hot_linspace: cutoff must be True or False, got {cutoff!r}")
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError(f"soft_one_hot_linspace: number must be a positive int, got {number!r}")
    if not cutoff and number < 2 and basis in ("gaussian", "cosine", "smooth_finite"):
        raise ValueError(
            f"soft_one_hot_linspace: basis {basis!r} without cutoff needs number >= 2 (to define a step), "
            f"got number={number}"
        )
    start, end = float(start), float(end)
    if not end > start:
        raise ValueError(f"soft_one_hot_linspace: end must be > start, got start={start}, end={end}")

    if basis in ("gaussian", "cosine", "smooth_finite"):
        if cutoff:
            values = torch.linspace(start, end, number + 2, dtype=x.dtype, device=x.device)
            step = values[1] - values[0]
            values = values[1:-1]
        else:
            values = torch.linspace(start, end, number, dtype=x.dtype, device=x.device)
            step = values[1] - values[0]
        diff = (x[..., None] - values) / step
        if basis == "gaussian":
            return diff.pow(2).neg().exp().div(1.12)
        if basis == "cosine":
            return torch.cos(math.pi / 2 * diff) * (diff < 1) * (-1 < diff)
        return _SMOOTH_FINITE_CST * soft_unit_step(diff + 1) * soft_unit_step(1 - diff)

    if basis == "fourier":
        t = (x[..., None] - start) / (end - start)
        if not cutoff:
            i = torch.arange(0, number, dtype=x.dtype, device=x.device)
            return torch.cos(math.pi * i * t) / math.sqrt(0.25 + number / 2)
        i = torch.arange(1, number + 1, dtype=x.dtype, device=x.device)
        return torch.sin(math.pi * i * t) / math.sqrt(0.25 + number / 2) * (0 < t) * (t < 1)

    # bessel
    r = x[..., None] - start
    c = end - start
    roots = torch.arange(1, number + 1, dtype=x.dtype, device=x.device) * math.pi
    out = math.sqrt(2 / c) * (roots / c) * _sinc(roots * r / c)
    if not cutoff:
        return out
    return out * ((r / c) < 1) * (0 < r)


def _check_positive(value: object, name: str, who: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise ValueError(f"{who}: {name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_tensor(r: object, who: str) -> torch.Tensor:
    if not isinstance(r, torch.Tensor):
        raise TypeError(f"{who}: input must be a torch.Tensor of distances, got {type(r).__name__}")
    return r


class BesselBasis(torch.nn.Module):
    r"""Bessel radial basis :math:`\sqrt{2/r_{max}}\,\sin(w_n r / r_{max}) / r`, ``w_n = n \pi``, ``n = 1..N``.

    Evaluated as :math:`\sqrt{2/r_{max}}\,(w_n/r_{max})\,\mathrm{sinc}(w_n r/r_{max})` with a series expansion
    of ``sinc`` near 0, so it is finite at ``r = 0`` (value ``sqrt(2/r_max) w_n / r_max``) with finite
    derivatives of every order. ``w_n`` is a trainable ``bessel_weights`` parameter if ``trainable``, else a
    buffer. These functions are orthonormal on ``[0, r_max]`` w.r.t. the measure ``r^2 dr``.

    Note: NequIP's ``BesselBasis`` has the same shape with prefactor ``2 / r_max`` instead of
    ``sqrt(2 / r_max)``; the two differ by the constant factor ``sqrt(2 / r_max)``.

    Shapes: ``[...] -> [..., num_basis]``.
    """

    def __init__(self, r_max: float, num_basis: int = 8, trainable: bool = True) -> None:
        super().__init__()
        self.r_max = _check_positive(r_max, "r_max", "BesselBasis")
        if isinstance(num_basis, bool) or not isinstance(num_basis, int) or num_basis < 1:
            raise ValueError(f"BesselBasis: num_basis must be a positive int, got {num_basis!r}")
        self.num_basis = num_basis
        self.trainable = bool(trainable)
        self.prefactor = math.sqrt(2.0 / self.r_max)
        w = torch.linspace(1.0, num_basis, num_basis) * math.pi
        if self.trainable:
            self.bessel_weights = torch.nn.Parameter(w)
        else:
            self.register_buffer("bessel_weights", w)

    def extra_repr(self) -> str:
        return f"r_max={self.r_max}, num_basis={self.num_basis}, trainable={self.trainable}"

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """Distances ``[...]`` -> basis values ``[..., num_basis]``."""
        r = _check_tensor(r, "BesselBasis")
        w = self.bessel_weights
        return self.prefactor * (w / self.r_max) * _sinc(w * r[..., None] / self.r_max)


class PolynomialCutoff(torch.nn.Module):
    r"""Polynomial envelope of DimeNet/NequIP, with ``x = r / r_max``:

    .. math::

        f(x) = 1 - \frac{(p+1)(p+2)}{2} x^p + p(p+2) x^{p+1} - \frac{p(p+1)}{2} x^{p+2}
        \quad (x < 1), \qquad f(x) = 0 \quad (x \ge 1).

    ``f(0) = 1`` and ``f(1) = f'(1) = f''(1) = 0``, so the cut-off is :math:`C^2`. Inputs are distances
    ``r >= 0``. Shapes: ``[...] -> [...]``.
    """

    def __init__(self, r_max: float, p: float = 6) -> None:
        super().__init__()
        self.r_max = _check_positive(r_max, "r_max", "PolynomialCutoff")
        self.p = _check_positive(p, "p", "PolynomialCutoff")

    def extra_repr(self) -> str:
        return f"r_max={self.r_max}, p={self.p}"

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """Distances ``[...]`` -> envelope ``[...]``."""
        r = _check_tensor(r, "PolynomialCutoff")
        p = self.p
        x = r / self.r_max
        inside = x < 1.0
        xs = torch.where(inside, x, torch.zeros_like(x))
        xp = xs.pow(p)
        env = 1.0 - (p + 1.0) * (p + 2.0) / 2.0 * xp + p * (p + 2.0) * xp * xs - p * (p + 1.0) / 2.0 * xp * xs * xs
        return torch.where(inside, env, torch.zeros_like(env))


class CosineCutoff(torch.nn.Module):
    r"""Cosine cut-off (Behler): :math:`\tfrac12(\cos(\pi r / r_{max}) + 1)` for ``r < r_max``, else 0.

    ``C^1`` at ``r_max`` (value and first derivative vanish). Shapes: ``[...] -> [...]``.
    """

    def __init__(self, r_max: float) -> None:
        super().__init__()
        self.r_max = _check_positive(r_max, "r_max", "CosineCutoff")

    def extra_repr(self) -> str:
        return f"r_max={self.r_max}"

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """Distances ``[...]`` -> envelope ``[...]``."""
        r = _check_tensor(r, "CosineCutoff")
        inside = r < self.r_max
        env = 0.5 * (torch.cos(math.pi * r / self.r_max) + 1.0)
        return torch.where(inside, env, torch.zeros_like(env))
