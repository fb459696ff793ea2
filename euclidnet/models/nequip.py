"""NequIP-style interatomic potential (Batzner et al., Nat. Commun. 13, 2453 (2022)).

``E = sum_i E_i``, ``E_i = Readout(h_i^(T))``, where the node features ``h`` start as a linear embedding of
the one-hot species and go through ``T`` interaction blocks (:class:`~euclidnet.models.convolution.
InteractionBlock`): channel-wise tensor products of neighbour features with the spherical harmonics of the
edge direction, weighted by an MLP of a Bessel radial basis with a smooth polynomial cutoff, summed over
neighbours, then a linear layer, a species-dependent self-connection and a gate nonlinearity.
Forces are ``-dE/dpos`` and stress is ``(1/V) dE/d(strain)`` (automatic differentiation).

Equivariance: node features carry irreps with parity, so the energy is invariant under rotations,
inversion, translations and permutations, forces are ``1o`` vectors and the stress transforms as a
rank-2 tensor.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..graph.data import AtomicGraph
from ..graph.scatter import scatter_mean, scatter_sum
from ..o3 import Irreps, Linear
from .convolution import EdgeEmbedding, InteractionBlock, species_one_hot
from .potential import energy_forces_stress
from .registry import register_model

__all__ = ["NequIP"]


def hidden_irreps(num_features: int, lmax: int, parity: bool = True) -> Irreps:
    """NequIP's hidden irreps: ``num_features`` channels of every ``l <= lmax`` (both parities if ``parity``)."""
    out = []
    for l in range(lmax + 1):
        for p in (1, -1) if parity else ((-1) ** l,):
            out.append((num_features, (l, p)))
    return Irreps(out)


@register_model("nequip")
class NequIP(torch.nn.Module):
    """NequIP-style potential.

    Args:
        num_types: number of species (atom_types are ``0 .. num_types - 1``).
        r_max: cutoff radius (same length unit as the positions).
        num_features: channels per irrep in the hidden layers.
        lmax: largest degree of the hidden features and edge harmonics.
        num_layers: interaction blocks.
        num_basis: Bessel radial functions.
        radial_hidden: hidden widths of the radial MLP.
        cutoff_p: exponent of the polynomial envelope.
        avg_num_neighbors: normalisation of the neighbour sum (set it from the data: see ``data`` stats).
        parity: use both parities (O(3)); ``False`` keeps only ``(-1)^l`` irreps.
        irreps_hidden: override the hidden irreps (e.g. ``"32x0e + 32x0o + 16x1e + 16x1o"``).
        irreps_node_out: ``None`` (default) makes the network a potential. Otherwise it is a feature network:
            the last features are mapped linearly to these irreps (e.g. ``"6x0e + 0o"`` logits), and
            ``forward`` returns ``node_features [N, dim]`` and ``graph_features [B, dim]`` (``reduce``:
            ``"sum"`` or ``"mean"`` over the nodes of each graph) instead of energies.

    ``forward(graph, compute_forces=False, compute_stress=False)`` returns ``energy [B]``, ``node_energy
    [N]`` and, when asked, ``forces [N, 3]``, ``stress``/``virial [B, 3, 3]``.
    """

    def __init__(
        self,
        num_types: int,
        r_max: float = 5.0,
        num_features: int = 16,
        lmax: int = 2,
        num_layers: int = 3,
        num_basis: int = 8,
        radial_hidden: tuple[int, ...] | list[int] = (64,),
        cutoff_p: int = 6,
        avg_num_neighbors: float = 10.0,
        parity: bool = True,
        irreps_hidden: str | Irreps | None = None,
        irreps_node_out: str | Irreps | None = None,
        reduce: str = "sum",
    ) -> None:
        super().__init__()
        if num_types < 1:
            raise ValueError(f"num_types must be >= 1, got {num_types}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.config: dict[str, Any] = dict(
            num_types=num_types, r_max=r_max, num_features=num_features, lmax=lmax, num_layers=num_layers,
            num_basis=num_basis, radial_hidden=list(radial_hidden), cutoff_p=cutoff_p,
            avg_num_neighbors=avg_num_neighbors, parity=parity,
            irreps_hidden=None if irreps_hidden is None else str(Irreps(irreps_hidden)),
            irreps_node_out=None if irreps_node_out is None else str(Irreps(irreps_node_out)), reduce=reduce,
        )
        if reduce not in ("sum", "mean"):
            raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
        self.reduce = reduce
        self.num_types = num_types
        self.r_max = float(r_max)
        self.irreps_attr = Irreps([(num_types, "0e")])
        irreps_hidden = (
            Irreps(irreps_hidden) if irreps_hidden is not None else hidden_irreps(num_features, lmax, parity)
        )
        self.edge = EdgeEmbedding(r_max, lmax, num_basis, cutoff_p)
        self.embedding = Linear(self.irreps_attr, Irreps([(irreps_hidden.count("0e"), "0e")]))
        layers = []
        irreps = self.embedding.irreps_out
        for _ in range(num_layers):
            block = InteractionBlock(
                irreps, self.irreps_attr, self.edge.irreps_sh, irreps_hidden, num_basis,
                tuple(radial_hidden), avg_num_neighbors,
            )
            layers.append(block)
            irreps = block.irreps_out
        self.layers = torch.nn.ModuleList(layers)
        if irreps_node_out is not None:
            out_irreps = Irreps(irreps_node_out)
            missing = [str(ir) for _, ir in out_irreps if ir not in irreps]
            if missing:
                raise ValueError(f"irreps_node_out {out_irreps}: {', '.join(missing)} not among the features {irreps}")
            self.feature_readout: Linear | None = Linear(irreps, out_irreps)
            self.irreps_out = {"node_features": str(out_irreps), "graph_features": str(out_irreps)}
            return
        self.feature_readout = None
        n_scalar = max(irreps.count("0e") // 2, 1)
        self.readout_1 = Linear(irreps, Irreps([(n_scalar, "0e")]))
        self.readout_2 = Linear(Irreps([(n_scalar, "0e")]), "0e")
        self.irreps_out = {"energy": "0e", "node_energy": "0e", "forces": "1o", "stress": "0e + 2e"}

    def node_features(self, graph: AtomicGraph, pos: Tensor, cell: Tensor | None) -> Tensor:
        """Last hidden node features ``[N, dim]`` for (possibly strained) ``pos`` and ``cell``."""
        attrs = species_one_hot(graph.atom_types, self.num_types, pos.dtype)
        edge_vec = graph.edge_vectors(pos, cell)
        sh, radial, _ = self.edge(edge_vec)
        x = self.embedding(attrs)
        for layer in self.layers:
            x = layer(x, attrs, graph.edge_index, sh, radial)
        return x

    def node_energies(self, graph: AtomicGraph, pos: Tensor, cell: Tensor | None) -> Tensor:
        """Per-atom energies ``[N]`` as a function of (possibly strained) ``pos`` and ``cell``."""
        if self.feature_readout is not None:
            raise ValueError("this NequIP was built as a feature network (irreps_node_out is set): it has no energy")
        h = self.readout_1(self.node_features(graph, pos, cell))
        return self.readout_2(torch.nn.functional.silu(h)).squeeze(-1)

    def forward(
        self, graph: AtomicGraph, compute_forces: bool = False, compute_stress: bool = False
    ) -> dict[str, Tensor]:
        graph = graph.with_edges(self.r_max)
        if self.feature_readout is not None:
            if compute_forces or compute_stress:
                raise ValueError("forces/stress need a potential: this NequIP was built with irreps_node_out")
            x = self.feature_readout(self.node_features(graph, graph.pos, graph.cell))
            reduce = scatter_sum if self.reduce == "sum" else scatter_mean
            return {"node_features": x, "graph_features": reduce(x, graph.batch, dim=0, dim_size=graph.num_graphs)}
        node_energy: dict[str, Tensor] = {}

        def energy_fn(g: AtomicGraph, pos: Tensor, cell: Tensor | None) -> Tensor:
            e = self.node_energies(g, pos, cell)
            node_energy["value"] = e
            return scatter_sum(e, g.batch, dim=0, dim_size=g.num_graphs)

        out = energy_forces_stress(energy_fn, graph, compute_forces, compute_stress)
        out["node_energy"] = node_energy["value"]
        return out
