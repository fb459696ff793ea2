"""SchNet: continuous-filter convolutions on interatomic distances (Schütt et al., NeurIPS 2017; JCP 2018).

An invariant model: it only ever sees distances ``r_ij = |x_j - x_i|``, so its outputs are invariant under
rotations, inversion, translations and permutations of atoms, and its forces ``-dE/dx`` are equivariant.

Architecture (``F`` = ``num_features``, ``K`` = ``num_rbf``)::

    x_i^0      = Embedding(Z_i)                                               [N, F]
    e_k(r)     = exp(-gamma (r - mu_k)^2),  mu_k = k r_max / (K - 1)           [E, K]
    W(r_ij)    = Dense(ssp(Dense(e(r_ij)))) * f_cut(r_ij)                      [E, F_filter]
    f_cut(r)   = 0.5 (cos(pi r / r_max) + 1) for r < r_max, 0 beyond
    cfconv:      y_i = sum_j (Lin_in(x^t))_j * W(r_ij)                        (elementwise product)
    x_i^{t+1}  = x_i^t + Dense(ssp(Dense(y_i)))                               (residual interaction)
    out_i      = Dense(ssp(Dense(x_i^T)))  -> per-atom scalars                 [N, n_out]
    energy_b   = scale * sum_{i in b} out_i + shift * n_b                      [B]

with the shifted softplus ``ssp(x) = softplus(x) - ln 2`` (``ssp(0) = 0``). Because ``f_cut`` and its
derivative vanish at ``r_max``, the energy is continuous (C^1) as a neighbour crosses the cutoff; the
distance is computed as ``sqrt(max(|r|^2, tiny))`` so coincident atoms give finite gradients.

Outputs of :meth:`SchNet.forward` (``num_outputs=None``, the potential): ``"energy"`` ``[B]``,
``"node_energy"`` ``[N]``, ``"node_features"`` ``[N, F]`` and, when asked, ``"forces"`` ``[N, 3]``,
``"stress"``/``"virial"`` ``[B, 3, 3]``. With ``num_outputs=C`` (an invariant classifier/regressor):
``"logits"`` ``[B, C]`` (per-graph sum or mean of per-atom outputs, see ``readout``) and
``"node_features"``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..graph.data import AtomicGraph
from ..graph.scatter import scatter_mean, scatter_sum
from .potential import energy_forces_stress
from .registry import register_model

__all__ = ["SchNet", "shifted_softplus", "ShiftedSoftplus", "GaussianRBF", "cosine_cutoff"]

_LN2 = math.log(2.0)


def shifted_softplus(x: Tensor) -> Tensor:
    """``ssp(x) = softplus(x) - ln 2`` (so that ``ssp(0) = 0``), elementwise."""
    return torch.nn.functional.softplus(x) - _LN2


class ShiftedSoftplus(torch.nn.Module):
    """Module form of :func:`shifted_softplus`."""

    def forward(self, x: Tensor) -> Tensor:
        return shifted_softplus(x)


def cosine_cutoff(r: Tensor, r_max: float) -> Tensor:
    """``f(r) = 0.5 (cos(pi r / r_max) + 1)`` for ``r < r_max`` and 0 beyond; ``f(0) = 1``, ``f'(r_max) = 0``."""
    f = 0.5 * (torch.cos(r * (math.pi / r_max)) + 1.0)
    return torch.where(r < r_max, f, torch.zeros_like(f))


def safe_norm(v: Tensor, tiny: float = 1e-20) -> Tensor:
    """``|v|`` over the last dim as ``sqrt(max(|v|^2, tiny))``: finite gradient (zero) at ``v = 0``."""
    return torch.sqrt(torch.clamp((v * v).sum(-1), min=tiny))


class GaussianRBF(torch.nn.Module):
    """Gaussian radial basis ``e_k(r) = exp(-gamma (r - mu_k)^2)`` with ``K`` centres evenly on ``[0, r_max]``.

    ``gamma`` defaults to ``0.5 / delta^2`` with ``delta = r_max / (K - 1)`` the spacing of the centres.
    Input ``[...]``, output ``[..., K]``.
    """

    def __init__(self, r_max: float, num_basis: int = 50, gamma: float | None = None) -> None:
        super().__init__()
        if not (isinstance(num_basis, int) and num_basis >= 2):
            raise ValueError(f"GaussianRBF: num_basis must be an int >= 2, got {num_basis!r}")
        if not r_max > 0:
            raise ValueError(f"GaussianRBF: r_max must be > 0, got {r_max!r}")
        spacing = r_max / (num_basis - 1)
        self.gamma = float(0.5 / spacing**2 if gamma is None else gamma)
        if not self.gamma > 0:
            raise ValueError(f"GaussianRBF: gamma must be > 0, got {gamma!r}")
        self.register_buffer("centers", torch.linspace(0.0, r_max, num_basis, dtype=torch.get_default_dtype()))

    def forward(self, r: Tensor) -> Tensor:
        return torch.exp(-self.gamma * (r[..., None] - self.centers) ** 2)


class _Interaction(torch.nn.Module):
    """One SchNet interaction block: ``x + Dense(ssp(Dense(cfconv(Lin_in(x), W(r)))))``."""

    def __init__(self, num_features: int, num_filters: int, num_rbf: int) -> None:
        super().__init__()
        self.filter_net = torch.nn.Sequential(
            torch.nn.Linear(num_rbf, num_filters), ShiftedSoftplus(), torch.nn.Linear(num_filters, num_filters)
        )
        self.lin_in = torch.nn.Linear(num_features, num_filters, bias=False)
        self.lin_out = torch.nn.Sequential(
            torch.nn.Linear(num_filters, num_features), ShiftedSoftplus(), torch.nn.Linear(num_features, num_features)
        )

    def forward(self, x: Tensor, rbf: Tensor, fcut: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        w = self.filter_net(rbf) * fcut[:, None]  # [E, F_filter]
        y = scatter_sum(self.lin_in(x)[src] * w, dst, dim=0, dim_size=x.shape[0])  # [N, F_filter]
        return x + self.lin_out(y)


@register_model("schnet")
class SchNet(torch.nn.Module):
    """SchNet (see the module docstring for the equations).

    Args:
        num_types: number of atom species (``graph.atom_types`` in ``0 .. num_types - 1``; graphs without
            ``atom_types`` are treated as all species 0).
        r_max: cutoff radius of the radius graph and of ``f_cut``.
        num_features: atom-wise feature width ``F``.
        num_filters: width of the continuous filters (default ``F``).
        num_interactions: number of interaction blocks.
        num_rbf: number of Gaussians ``K``; ``gamma``: their width parameter (default ``0.5 / spacing^2``).
        num_outputs: ``None`` for an interatomic potential (output ``"energy"``); an int ``C`` for ``C``
            invariant per-graph outputs ``"logits"`` ``[B, C]`` (classification or invariant regression).
        readout: ``"sum"`` (extensive, default for energies) or ``"mean"`` over the atoms of each graph.
        scale, shift: energy = ``scale * sum_i out_i + shift * n_atoms`` (dataset statistics).
        max_num_neighbors: passed to the radius graph when edges are computed here.
    """

    def __init__(
        self,
        num_types: int = 1,
        r_max: float = 5.0,
        num_features: int = 64,
        num_filters: int | None = None,
        num_interactions: int = 3,
        num_rbf: int = 50,
        gamma: float | None = None,
        num_outputs: int | None = None,
        readout: str = "sum",
        scale: float = 1.0,
        shift: float = 0.0,
        max_num_neighbors: int | None = None,
    ) -> None:
        super().__init__()
        for name, val in (("num_types", num_types), ("num_features", num_features), ("num_rbf", num_rbf)):
            if not (isinstance(val, int) and val >= 1):
                raise ValueError(f"SchNet: {name} must be a positive int, got {val!r}")
        if not (isinstance(num_interactions, int) and num_interactions >= 0):
            raise ValueError(f"SchNet: num_interactions must be an int >= 0, got {num_interactions!r}")
        if not (isinstance(r_max, (int, float)) and math.isfinite(r_max) and r_max > 0):
            raise ValueError(f"SchNet: r_max must be a finite number > 0, got {r_max!r}")
        if num_outputs is not None and not (isinstance(num_outputs, int) and num_outputs >= 1):
            raise ValueError(f"SchNet: num_outputs must be None or a positive int, got {num_outputs!r}")
        if readout not in ("sum", "mean"):
            raise ValueError(f"SchNet: readout must be 'sum' or 'mean', got {readout!r}")
        num_filters = num_features if num_filters is None else num_filters
        self.num_types = num_types
        self.r_max = float(r_max)
        self.num_outputs = num_outputs
        self.readout = readout
        self.scale = float(scale)
        self.shift = float(shift)
        self.max_num_neighbors = max_num_neighbors
        self.embedding = torch.nn.Embedding(num_types, num_features)
        self.rbf = GaussianRBF(self.r_max, num_rbf, gamma)
        self.interactions = torch.nn.ModuleList(
            [_Interaction(num_features, num_filters, num_rbf) for _ in range(num_interactions)]
        )
        n_out = 1 if num_outputs is None else num_outputs
        self.head = torch.nn.Sequential(
            torch.nn.Linear(num_features, max(num_features // 2, 1)),
            ShiftedSoftplus(),
            torch.nn.Linear(max(num_features // 2, 1), n_out),
        )
        if num_outputs is None:
            self.irreps_out = {"energy": "0e", "node_energy": "0e", "forces": "1o", "stress": "0e + 2e"}
        else:
            self.irreps_out = {"logits": f"{num_outputs}x0e"}

    # ------------------------------------------------------------------------------------------------

    def _types(self, graph: AtomicGraph) -> Tensor:
        if graph.atom_types is None:
            return torch.zeros(graph.num_nodes, dtype=torch.long, device=graph.pos.device)
        t = graph.atom_types
        if t.numel() and int(t.max()) >= self.num_types:
            bad = int(t.max())
            raise ValueError(f"SchNet: atom type {bad} is out of range for num_types={self.num_types}")
        return t

    def node_outputs(self, graph: AtomicGraph, pos: Tensor, cell: Tensor | None) -> tuple[Tensor, Tensor]:
        """Per-atom outputs ``[N, n_out]`` and final features ``[N, F]`` for positions ``pos`` (and ``cell``)."""
        src, dst = graph.edge_index[0], graph.edge_index[1]
        r = safe_norm(graph.edge_vectors(pos, cell))  # [E]
        rbf = self.rbf(r)
        fcut = cosine_cutoff(r, self.r_max)
        x = self.embedding(self._types(graph))
        for block in self.interactions:
            x = block(x, rbf, fcut, src, dst)
        return self.head(x), x

    def forward(
        self, graph: AtomicGraph, compute_forces: bool = False, compute_stress: bool = False
    ) -> dict[str, Tensor]:
        """Run the model on a batch; see the module docstring for the returned keys and shapes."""
        if graph.pos.dtype != self.embedding.weight.dtype:
            raise TypeError(
                f"SchNet: positions are {graph.pos.dtype} but the model is {self.embedding.weight.dtype}; "
                f"convert one of them (graph.to(dtype) or model.to(dtype))"
            )
        graph = graph.with_edges(self.r_max, max_num_neighbors=self.max_num_neighbors)
        if self.num_outputs is not None:
            if compute_forces or compute_stress:
                raise ValueError("SchNet: forces/stress need an energy model (num_outputs=None)")
            out_i, feats = self.node_outputs(graph, graph.pos, graph.cell)
            reduce = scatter_sum if self.readout == "sum" else scatter_mean
            logits = reduce(out_i, graph.batch, dim=0, dim_size=graph.num_graphs)
            return {"logits": logits, "node_features": feats}

        store: dict[str, Tensor] = {}

        def energy_fn(g: AtomicGraph, pos: Tensor, cell: Tensor | None) -> Tensor:
            out_i, feats = self.node_outputs(g, pos, cell)
            node_energy = self.scale * out_i[:, 0] + self.shift
            store["node_energy"], store["node_features"] = node_energy, feats
            if self.readout == "sum":
                return scatter_sum(node_energy, g.batch, dim=0, dim_size=g.num_graphs)
            return scatter_mean(node_energy, g.batch, dim=0, dim_size=g.num_graphs)

        out = energy_forces_stress(energy_fn, graph, compute_forces=compute_forces, compute_stress=compute_stress)
        out.update(store)
        return out
