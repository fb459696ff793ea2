"""Constraint-solved equivariant layers (EMLP-style).

:class:`EquivariantLinear`, :class:`GatedNonlinearity` and :class:`EMLP`.

Works for any group/representation pair that :func:`~euclidnet.groups.constraints.equivariant_basis` solves:
SO(3), O(3), SO(2), O(2), finite groups (S_n, point groups, ...) and products.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .constraints import equivariant_basis
from .reps import Rep, SumRep, Trivial

__all__ = ["EquivariantLinear", "GatedNonlinearity", "EMLP", "gated_rep"]


class EquivariantLinear(nn.Module):
    """``y = W x + b`` with ``W`` and ``b`` projected onto the equivariant subspaces.

    The free parameters are a full ``weight`` ``[n_out, n_in]`` and ``bias`` ``[n_out]``; the forward pass uses
    their orthogonal projections ``P_W(weight) = sum_i <Q_i, weight> Q_i`` onto the basis ``Q`` of
    :func:`equivariant_basis` (and of the invariant vectors of ``rep_out`` for the bias), so ``W`` is exactly
    equivariant and gradient steps never leave the subspace.

    Shapes: ``x`` ``[..., n_in]`` -> ``[..., n_out]``; float32 or float64.
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, bias: bool = True, **basis_kwargs: object) -> None:
        super().__init__()
        if not isinstance(rep_in, Rep) or not isinstance(rep_out, Rep):
            raise TypeError("EquivariantLinear needs Rep instances for rep_in and rep_out")
        self.rep_in, self.rep_out = rep_in, rep_out
        Q = equivariant_basis(rep_in, rep_out, **basis_kwargs)  # type: ignore[arg-type]
        self.register_buffer("basis", Q.reshape(Q.shape[0], rep_out.size * rep_in.size))  # [k, n_out * n_in], float64
        dtype = torch.get_default_dtype()
        # initialise inside the subspace with E|W|_F^2 = n_out (unit-variance outputs for unit-variance inputs)
        k = max(Q.shape[0], 1)
        c = torch.randn(Q.shape[0], dtype=torch.float64) * math.sqrt(rep_out.size / k)
        self.weight = nn.Parameter((c @ self.basis).reshape(rep_out.size, rep_in.size).to(dtype))
        if bias:
            Qb = equivariant_basis(Trivial(rep_in.G, 1), rep_out, **basis_kwargs)  # type: ignore[arg-type]
            self.register_buffer("bias_basis", Qb.reshape(Qb.shape[0], rep_out.size))
            self.bias = nn.Parameter(torch.zeros(rep_out.size, dtype=dtype))
        else:
            self.register_buffer("bias_basis", None)
            self.bias = None

    @property
    def num_basis(self) -> int:
        """Dimension of the space of equivariant weights."""
        return int(self.basis.shape[0])

    def projected_weight(self) -> torch.Tensor:
        """The equivariant ``W`` ``[n_out, n_in]`` actually applied."""
        Q = self.basis.to(self.weight.dtype)
        return (Q.T @ (Q @ self.weight.reshape(-1))).reshape(self.weight.shape)

    def projected_bias(self) -> torch.Tensor | None:
        if self.bias is None:
            return None
        Q = self.bias_basis.to(self.bias.dtype)
        return Q.T @ (Q @ self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.rep_in.size:
            raise ValueError(f"expected input [..., {self.rep_in.size}] for {self.rep_in!r}, got {tuple(x.shape)}")
        W = self.projected_weight().to(x.dtype)
        y = x @ W.T
        b = self.projected_bias()
        return y if b is None else y + b.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.rep_in!r} -> {self.rep_out!r}, basis={self.num_basis}"


def _components(rep: Rep) -> tuple[Rep, ...]:
    return rep.reps if isinstance(rep, SumRep) else (rep,)


def gated_rep(rep: Rep) -> Rep:
    """``rep + Trivial(n_gates)``: the input representation of :class:`GatedNonlinearity` for ``rep``."""
    n_gates = sum(1 for r in _components(rep) if not r.is_trivial)
    return SumRep(rep, Trivial(rep.G, n_gates)) if n_gates else rep


class GatedNonlinearity(nn.Module):
    """Equivariant nonlinearity on ``gated_rep(rep) = rep + Trivial(n_gates)`` features.

    SiLU acts on the trivial (scalar) components; every other summand ``v_c`` of ``rep`` is multiplied by
    ``sigmoid`` of its own gate scalar (an invariant, the extra channels after ``rep``). With ``norms=True``
    (default) the gate channels of the output are replaced by the invariants ``sqrt(1 + |v_c|^2) - 1`` of the
    gated components, so information flows from non-scalar to scalar channels (needed e.g. to output
    ``|x|^2`` from a vector); this requires orthogonal representations, which is checked.

    Shapes: ``[..., gated_rep(rep).size]`` -> ``[..., rep.size]`` (``norms=False``) or
    ``[..., gated_rep(rep).size]`` (``norms=True``).
    """

    def __init__(self, rep: Rep, norms: bool = True) -> None:
        super().__init__()
        self.rep, self.norms = rep, norms
        index = []
        gate = 0
        for r in _components(rep):
            if r.is_trivial:
                index.extend([-1] * r.size)
            else:
                if norms:
                    _check_orthogonal(r)
                index.extend([gate] * r.size)
                gate += 1
        self.n_gates = gate
        self.register_buffer("gate_index", torch.tensor(index, dtype=torch.int64))

    @property
    def out_rep(self) -> Rep:
        """The representation of the output features."""
        return gated_rep(self.rep) if self.norms else self.rep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.rep.size
        if x.shape[-1] != n + self.n_gates:
            raise ValueError(f"expected input [..., {n + self.n_gates}] (rep + gates), got {tuple(x.shape)}")
        values, gates = x[..., :n], torch.sigmoid(x[..., n:])
        scalar = self.gate_index < 0
        if not self.n_gates:
            return nn.functional.silu(values)
        g = gates[..., self.gate_index.clamp_min(0)]
        out = torch.where(scalar, nn.functional.silu(values), values * g)
        if not self.norms:
            return out
        sq = torch.where(scalar, torch.zeros_like(out), out * out)
        norm2 = torch.zeros(*out.shape[:-1], self.n_gates, dtype=out.dtype, device=out.device)
        norm2 = norm2.index_add(-1, self.gate_index.clamp_min(0), sq)
        return torch.cat([out, torch.sqrt(1 + norm2) - 1], dim=-1)


def _check_orthogonal(rep: Rep, atol: float = 1e-9) -> None:
    D = rep.discrete_images().to(torch.float64)
    L = rep.lie_images().to(torch.float64)
    eye = torch.eye(rep.size, dtype=torch.float64)
    bad_d = D.shape[0] and float((D @ D.transpose(-1, -2) - eye).abs().max()) > atol
    bad_l = L.shape[0] and float((L + L.transpose(-1, -2)).abs().max()) > atol
    if bad_d or bad_l:
        raise ValueError(
            f"norm features need orthogonal representations, but {rep!r} is not orthogonal; use norms=False"
        )


class EMLP(nn.Module):
    """Equivariant MLP: ``[EquivariantLinear(-> hidden + gates), GatedNonlinearity] x n_layers``, then
    ``EquivariantLinear(-> rep_out)``. With ``norms=True`` every layer also passes the norms of the gated
    components on as scalars (see :class:`GatedNonlinearity`); this needs orthogonal representations.

    Shapes: ``[..., rep_in.size]`` -> ``[..., rep_out.size]``.
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, hidden: Rep, n_layers: int = 2, norms: bool = True) -> None:
        super().__init__()
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"n_layers must be a positive int, got {n_layers!r}")
        for name, r in (("rep_in", rep_in), ("rep_out", rep_out), ("hidden", hidden)):
            if not isinstance(r, Rep):
                raise TypeError(f"{name} must be a Rep, got {type(r).__name__}")
            if not r.G.same_as(rep_in.G):
                raise ValueError(f"{name} is a representation of {r.G.name}, expected {rep_in.G.name}")
        layers: list[nn.Module] = []
        r = rep_in
        for _ in range(n_layers):
            act = GatedNonlinearity(hidden, norms=norms)
            layers += [EquivariantLinear(r, gated_rep(hidden)), act]
            r = act.out_rep
        layers.append(EquivariantLinear(r, rep_out))
        self.net = nn.Sequential(*layers)
        self.rep_in, self.rep_out = rep_in, rep_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
