"""Equivariant nonlinearities: second-moment normalised activations, :class:`Gate`, :class:`NormActivation`.

Feature layout is the one of :class:`~euclidnet.o3.Irreps`: blocks in order, each block of ``mul`` copies of
an irrep of dimension ``2l + 1`` stored as a flattened ``[mul, 2l + 1]`` (mul-major).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch

from ..o3.irreps import Irrep, Irreps

__all__ = ["Gate", "NormActivation", "moment", "normalize2mom", "activation_parity"]

# Composite Gauss-Legendre rule on [-12, 12]: panels of width 1/8 (so 0, the integers and all multiples of
# 1/8 -- the kinks of relu, abs, hardtanh, relu6, hardswish, ... -- are panel boundaries) with 20 nodes each.
# The Gaussian weight beyond |z| = 12 is < 1e-32, far below float64 resolution for any polynomially bounded f.
_QUAD_HALF_WIDTH = 12.0
_QUAD_PANELS_PER_UNIT = 8
_QUAD_NODES_PER_PANEL = 20


@lru_cache(maxsize=1)
def _gaussian_quadrature() -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``z`` and weights ``w`` with ``sum w f(z) ~= E[f(Z)]`` for ``Z ~ N(0, 1)`` (float64 numpy)."""
    t, wt = np.polynomial.legendre.leggauss(_QUAD_NODES_PER_PANEL)
    n_panels = int(2 * _QUAD_HALF_WIDTH * _QUAD_PANELS_PER_UNIT)
    h = 1.0 / _QUAD_PANELS_PER_UNIT
    left = -_QUAD_HALF_WIDTH + h * np.arange(n_panels)
    z = (left[:, None] + 0.5 * h * (t[None, :] + 1.0)).reshape(-1)
    w = (0.5 * h * wt[None, :] * np.ones((n_panels, 1))).reshape(-1)
    w = w * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return z, w


def _eval_float64(f: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """Evaluate ``f`` on float64 ``z``; fall back to float32 for callables that only accept float32."""
    with torch.no_grad():
        try:
            y = f(z)
        except RuntimeError:
            y = f(z.to(torch.float32))
    if not isinstance(y, torch.Tensor) or y.shape != z.shape:
        raise TypeError(
            f"activation {f!r} must map a tensor of shape {tuple(z.shape)} elementwise to a tensor of the same "
            f"shape, got {type(y).__name__} of shape {getattr(y, 'shape', None)}"
        )
    return y.to(torch.float64)


def moment(f: Callable[[torch.Tensor], torch.Tensor], n: int) -> float:
    r"""The ``n``-th moment :math:`E[f(Z)^n]`, :math:`Z \sim N(0, 1)`, by deterministic quadrature.

    Uses a composite 20-point Gauss-Legendre rule on ``[-12, 12]`` with panels of width 1/8 (kinks at
    multiples of 1/8, e.g. those of ``relu``/``abs``, are integrated exactly up to rounding). No random
    sampling: the result is reproducible bit-for-bit. ``f`` must act elementwise on a 1-D tensor.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"moment order n must be a positive int, got {n!r}")
    z_np, w_np = _gaussian_quadrature()
    z = torch.from_numpy(z_np)
    y = _eval_float64(f, z)
    val = float((torch.from_numpy(w_np) * y.pow(n)).sum())
    if not math.isfinite(val):
        raise ValueError(f"the {n}-th Gaussian moment of activation {f!r} is not finite ({val})")
    return val


class normalize2mom(torch.nn.Module):  # noqa: N801 (e3nn's name)
    r"""``f`` rescaled to unit second moment: ``cst * f(x)`` with :math:`cst = E[f(Z)^2]^{-1/2}`, ``Z ~ N(0,1)``.

    The constant is computed once, deterministically, by :func:`moment` (quadrature, not sampling), and stored
    as the Python float ``cst``. If ``|cst - 1| < 1e-4`` the multiplication is skipped (``is_identity``).

    Shapes: ``[...] -> [...]`` (elementwise).
    """

    cst: float

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        if not callable(f):
            raise TypeError(f"activation must be callable, got {f!r} ({type(f).__name__})")
        m2 = moment(f, 2)
        if m2 <= 0.0:
            raise ValueError(f"activation {f!r} has zero second moment under N(0, 1); it cannot be normalised")
        self.f = f
        self.cst = m2**-0.5
        self.is_identity = abs(self.cst - 1.0) < 1e-4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_identity:
            return self.f(x)
        return self.f(x) * self.cst

    def extra_repr(self) -> str:
        name = getattr(self.f, "__name__", type(self.f).__name__)
        return f"f={name}, cst={self.cst:.6f}"


def activation_parity(f: Callable[[torch.Tensor], torch.Tensor]) -> int:
    """``+1`` if ``f`` is even, ``-1`` if odd, ``0`` if neither (checked on ``[0, 10]`` in float64).

    The check compares ``f(x)`` and ``f(-x)`` on 256 points with an absolute tolerance of
    ``1e-5 * max(1, max|f|)``.
    """
    x = torch.linspace(0.0, 10.0, 256, dtype=torch.float64)
    a1, a2 = _eval_float64(f, x), _eval_float64(f, -x)
    tol = 1e-5 * max(1.0, float(a1.abs().max()), float(a2.abs().max()))
    if float((a1 - a2).abs().max()) < tol:
        return 1
    if float((a1 + a2).abs().max()) < tol:
        return -1
    return 0


def _check_features(x: torch.Tensor, irreps: Irreps, name: str, who: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[-1] != irreps.dim:
        raise ValueError(
            f"{who}: {name} has shape {tuple(x.shape)} but its last dimension must be irreps.dim = {irreps.dim} "
            f"for irreps {irreps}"
        )


def _as_act_list(acts: object, irreps: Irreps, what: str) -> list[Callable | None]:
    if acts is None:
        acts = [None] * len(irreps)
    if callable(acts) and not isinstance(acts, (list, tuple)):
        raise TypeError(
            f"{what} must be a list with one activation (or None) per block of {irreps} ({len(irreps)} blocks), "
            f"got a single callable {acts!r}; wrap it in a list"
        )
    acts = list(acts)  # type: ignore[call-overload]
    if len(acts) != len(irreps):
        raise ValueError(
            f"{what} has {len(acts)} entries but the irreps {irreps} have {len(irreps)} blocks; "
            "give one activation (or None) per block"
        )
    for a in acts:
        if a is not None and not callable(a):
            raise TypeError(f"{what}: every entry must be callable or None, got {a!r}")
    return acts


class _ScalarActivation(torch.nn.Module):
    """Applies one normalised activation per block of scalar irreps; ``None`` is the identity."""

    def __init__(self, irreps: Irreps, acts: Sequence[Callable | None], what: str) -> None:
        super().__init__()
        irreps_out = []
        modules: list[torch.nn.Module] = []
        for (mul, ir), act in zip(irreps, acts):
            if ir.l != 0:
                raise ValueError(f"{what}: irrep {ir} is not a scalar; only 0e and 0o irreps can be activated")
            if act is None:
                irreps_out.append((mul, ir))
                modules.append(torch.nn.Identity())
                continue
            nact = act if isinstance(act, normalize2mom) else normalize2mom(act)
            if ir.p == -1:
                p_act = activation_parity(nact)
                if p_act == 0:
                    raise ValueError(
                        f"{what}: activation {act!r} applied to odd scalars {mul}x{ir} is neither even nor odd, "
                        "which would break parity equivariance; use an odd (e.g. tanh) or even (e.g. abs) function"
                    )
                ir = Irrep(0, p_act)
            irreps_out.append((mul, ir))
            modules.append(nact)
        self.irreps_in = Irreps(irreps)
        self.irreps_out = Irreps(irreps_out)
        self.acts = torch.nn.ModuleList(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [..., num_scalars] (scalars have dimension 1, so dim == num_irreps)
        out = []
        i = 0
        for (mul, _), act in zip(self.irreps_in, self.acts):
            out.append(act(x[..., i : i + mul]))
            i += mul
        if not out:
            return x
        return torch.cat(out, dim=-1)


class Gate(torch.nn.Module):
    r"""Gate nonlinearity.

    The input is the concatenation ``scalars + gates + gated`` (in that order, each in its own block layout);
    the output is ``act_scalars(scalars) + act_gates(gates) * gated``: the ``j``-th gate scalar multiplies the
    ``j``-th gated irrep (counted over all blocks of ``irreps_gated``, mul-major).

    Every activation is wrapped in :class:`normalize2mom` (unit second moment under ``N(0, 1)``) unless it is
    already one; ``None`` means identity. Parity rule: an activation applied to odd scalars (``0o``) must be
    odd (output ``0o``) or even (output ``0e``); otherwise ValueError. A gate's parity multiplies the parity of
    the irrep it gates.

    Args:
        irreps_scalars: scalar irreps (``0e``/``0o`` only) passed through ``act_scalars``.
        act_scalars: one activation (or None) per block of ``irreps_scalars``.
        irreps_gates: scalar irreps, ``irreps_gates.num_irreps == irreps_gated.num_irreps``.
        act_gates: one activation (or None) per block of ``irreps_gates``.
        irreps_gated: any irreps, gated by the gates.

    Attributes:
        irreps_in: ``(irreps_scalars + irreps_gates + irreps_gated).simplify()`` (same layout as the
            concatenation).
        irreps_out: ``(act_scalars out + gated out).simplify()``.

    Shapes: ``[..., irreps_in.dim] -> [..., irreps_out.dim]``.

    Note: e3nn's ``Gate`` expects its input in *sorted* irreps order; ours keeps the concatenation order.
    """

    def __init__(
        self,
        irreps_scalars: Irreps | str,
        act_scalars: Sequence[Callable | None] | None,
        irreps_gates: Irreps | str,
        act_gates: Sequence[Callable | None] | None,
        irreps_gated: Irreps | str,
    ) -> None:
        super().__init__()
        irreps_scalars = Irreps(irreps_scalars)
        irreps_gates = Irreps(irreps_gates)
        irreps_gated = Irreps(irreps_gated)
        for mul, ir in irreps_scalars:
            if ir.l != 0:
                raise ValueError(
                    f"Gate: irreps_scalars must contain only scalars (0e or 0o), got {mul}x{ir} in {irreps_scalars}"
                )
        for mul, ir in irreps_gates:
            if ir.l != 0:
                raise ValueError(
                    f"Gate: gates must be scalars (0e or 0o), got the non-scalar gate irrep {mul}x{ir} in "
                    f"irreps_gates = {irreps_gates}"
                )
        if irreps_gates.num_irreps != irreps_gated.num_irreps:
            raise ValueError(
                f"Gate: irreps_gates = {irreps_gates} has {irreps_gates.num_irreps} gate scalars but "
                f"irreps_gated = {irreps_gated} has {irreps_gated.num_irreps} irreps; they must be equal "
                "(one gate per gated irrep)"
            )
        act_scalars_l = _as_act_list(act_scalars, irreps_scalars, "Gate: act_scalars")
        act_gates_l = _as_act_list(act_gates, irreps_gates, "Gate: act_gates")

        self.irreps_scalars = irreps_scalars
        self.irreps_gates = irreps_gates
        self.irreps_gated = irreps_gated
        self.act_scalars = _ScalarActivation(irreps_scalars, act_scalars_l, "Gate (scalars)")
        self.act_gates = _ScalarActivation(irreps_gates, act_gates_l, "Gate (gates)")

        gate_parities = [ir.p for mul, ir in self.act_gates.irreps_out for _ in range(mul)]
        gated_out = []
        j = 0
        for mul, ir in irreps_gated:
            for _ in range(mul):
                gated_out.append((1, Irrep(ir.l, ir.p * gate_parities[j])))
                j += 1
        self.irreps_gated_out = Irreps(gated_out).simplify()
        self.irreps_in = (irreps_scalars + irreps_gates + irreps_gated).simplify()
        self.irreps_out = (self.act_scalars.irreps_out + self.irreps_gated_out).simplify()
        self._n_scalars = irreps_scalars.dim
        self._n_gates = irreps_gates.dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[..., irreps_in.dim] -> [..., irreps_out.dim]``."""
        _check_features(features, self.irreps_in, "features", "Gate")
        ns, ng = self._n_scalars, self._n_gates
        scalars = self.act_scalars(features[..., :ns])
        if ng == 0:
            return scalars
        gates = self.act_gates(features[..., ns : ns + ng])
        gated = features[..., ns + ng :]
        lead = features.shape[:-1]
        out = [scalars]
        i = 0  # position in gated
        j = 0  # gate index
        for mul, ir in self.irreps_gated:
            d = ir.dim
            block = gated[..., i : i + mul * d].reshape(*lead, mul, d)
            out.append((block * gates[..., j : j + mul, None]).reshape(*lead, mul * d))
            i += mul * d
            j += mul
        return torch.cat(out, dim=-1)

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}"


class NormActivation(torch.nn.Module):
    r"""Norm nonlinearity: every irrep ``x`` becomes ``x * f(|x|) / |x|`` (or ``x * f(|x|)``).

    With ``normalize=True`` (default) the norm is regularised smoothly,
    :math:`n = \sqrt{|x|^2 + \epsilon^2}` (``epsilon`` defaults to ``1e-8``), and the output is
    :math:`x \, f(n + b) / n`. This is :math:`C^\infty` wherever ``f`` is, 0 at ``x = 0`` with the finite
    Jacobian ``f(epsilon + b)/epsilon * I`` there, and differs from the unregularised map by a relative
    :math:`O(\epsilon^2/|x|^2)` (e3nn instead clamps ``|x|^2`` below at ``epsilon^2``).
    The output norm is ``|f(n + b)| |x| / n ~= |f(|x| + b)|``.
    Note that if ``f(0) != 0`` the unregularised map is discontinuous at 0, so the gradient there is of order
    ``f(epsilon)/epsilon``.

    With ``normalize=False`` the output is :math:`x \, f(|x| + b)` with an exact norm whose gradient is taken
    as 0 at ``x = 0`` (the output gradient there is the exact ``f(b) I``); ``epsilon`` must then be None.

    ``b`` is a learnable bias per irrep copy (``num_irreps`` of them, zero-initialised) if ``bias=True``.
    Shapes: ``[..., irreps_in.dim] -> [..., irreps_in.dim]``; ``irreps_out == irreps_in``.
    ``f`` is used as given (wrap it in :class:`normalize2mom` yourself if wanted). With ``f = normalize2mom(g)``
    for an odd or even ``g`` and ``N(0, 1)`` scalar (``l = 0``) inputs the second moment is preserved, since
    ``f(|z|)^2 = f(z)^2``; for ``l > 0`` and component-normalised inputs it is ``E[f(rho)^2] / (2l + 1)`` with
    ``rho ~ chi_{2l+1}``, which is in general not 1.
    """

    def __init__(
        self,
        irreps_in: Irreps | str,
        scalar_nonlinearity: Callable[[torch.Tensor], torch.Tensor],
        normalize: bool = True,
        epsilon: float | None = None,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if not callable(scalar_nonlinearity):
            raise TypeError(f"NormActivation: scalar_nonlinearity must be callable, got {scalar_nonlinearity!r}")
        if normalize:
            if epsilon is None:
                epsilon = 1e-8
            if not (isinstance(epsilon, (int, float)) and epsilon > 0):
                raise ValueError(f"NormActivation: epsilon must be a float > 0, got {epsilon!r}")
        elif epsilon is not None:
            raise ValueError(
                f"NormActivation: epsilon={epsilon!r} is only meaningful with normalize=True; got normalize=False"
            )
        self.irreps_in = Irreps(irreps_in)
        self.irreps_out = self.irreps_in
        self.scalar_nonlinearity = scalar_nonlinearity
        self.normalize = bool(normalize)
        self.epsilon = None if epsilon is None else float(epsilon)
        self.bias = bool(bias)
        if self.bias:
            self.biases = torch.nn.Parameter(torch.zeros(self.irreps_in.num_irreps))
        else:
            self.register_parameter("biases", None)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[..., irreps_in.dim] -> [..., irreps_in.dim]``."""
        _check_features(features, self.irreps_in, "features", "NormActivation")
        lead = features.shape[:-1]
        blocks = []
        i = 0
        for mul, ir in self.irreps_in:
            d = ir.dim
            blocks.append(features[..., i : i + mul * d].reshape(*lead, mul, d))
            i += mul * d
        if not blocks:
            return features
        sq = torch.cat([b.pow(2).sum(-1) for b in blocks], dim=-1)  # [..., num_irreps]
        if self.normalize:
            assert self.epsilon is not None
            n = (sq + self.epsilon**2).sqrt()
        else:
            pos = sq > 0
            n = torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))
        arg = n + self.biases if self.biases is not None else n
        scale = self.scalar_nonlinearity(arg)
        if self.normalize:
            scale = scale / n
        out = []
        j = 0
        for (mul, ir), b in zip(self.irreps_in, blocks):
            out.append((b * scale[..., j : j + mul, None]).reshape(*lead, mul * ir.dim))
            j += mul
        return torch.cat(out, dim=-1)

    def extra_repr(self) -> str:
        name = getattr(self.scalar_nonlinearity, "__name__", type(self.scalar_nonlinearity).__name__)
        return f"{self.irreps_in}, f={name}, normalize={self.normalize}, epsilon={self.epsilon}, bias={self.bias}"
