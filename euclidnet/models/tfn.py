"""Tensor Field Networks (Thomas et al., arXiv:1802.08219, 2018).

Each layer is a point convolution followed by self-interaction and a norm nonlinearity::

    conv_i = 1/sqrt(avg_neighbors) sum_j TP_uvw(f_j, Y(r_ij); W = R(|r_ij|))     (every CG path, learned radial R)
    f_i'   = Nonlinearity(conv_i + SelfInteraction(f_i))

``R`` is an MLP of a smooth radial basis that vanishes at ``r_max``; ``Y`` are the spherical harmonics of the
edge direction; the tensor product has one weight per (input channel, filter, output channel, path), i.e. the
filters of the paper with the Clebsch-Gordan coupling of every ``l_in (x) l_filter -> l_out`` path. The
nonlinearity acts on the norm of every irrep (``eta(|V| + b) V``), scalars get an ordinary activation (odd
for pseudoscalars, so parity is kept). Any irreps per layer; the last layer maps to ``irreps_out`` without
nonlinearity: scalar, vector or tensor outputs per node, optionally summed or averaged per graph.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..graph.data import AtomicGraph
from ..graph.scatter import scatter_mean, scatter_sum
from ..nn import FullyConnectedNet, NormActivation, soft_one_hot_linspace
from ..o3 import FullyConnectedTensorProduct, Irreps, Linear, spherical_harmonics
from .convolution import species_one_hot
from .registry import register_model

__all__ = ["TensorFieldNetwork", "NodeEmbedding", "ScalarAndNormActivation", "graph_readout"]


class NodeEmbedding(torch.nn.Module):
    """Initial node features: one-hot species (``num_types``), given ``node_features`` (``irreps_node_in``)
    or, with neither, a constant ``1x0e`` per node."""

    def __init__(self, num_types: int | None, irreps_node_in: Irreps | str | None) -> None:
        super().__init__()
        if num_types is not None and irreps_node_in is not None:
            raise ValueError("give num_types (one-hot species input) or irreps_node_in (feature input), not both")
        self.num_types = num_types
        if num_types is not None:
            self.irreps_out = Irreps([(num_types, "0e")])
        elif irreps_node_in is not None:
            self.irreps_out = Irreps(irreps_node_in)
        else:
            self.irreps_out = Irreps("0e")

    def forward(self, graph: AtomicGraph, dtype: torch.dtype) -> Tensor:
        if self.num_types is not None:
            return species_one_hot(graph.atom_types, self.num_types, dtype)
        if self.irreps_out == Irreps("0e") and graph.node_features is None:
            return graph.pos.new_ones(graph.num_nodes, 1).to(dtype)
        x = graph.node_features
        if x is None or x.shape[-1] != self.irreps_out.dim:
            got = None if x is None else tuple(x.shape)
            raise ValueError(f"graph.node_features must be [N, {self.irreps_out.dim}] ({self.irreps_out}), got {got}")
        return x.to(dtype)


class ScalarAndNormActivation(torch.nn.Module):
    """Scalars: ``silu`` (0e) / ``tanh`` (0o, odd so the output stays 0o); every ``l > 0`` irrep ``V``:
    ``sigmoid(|V| + b) V`` with a learned bias per irrep copy (TFN's norm nonlinearity)."""

    def __init__(self, irreps: Irreps | str) -> None:
        super().__init__()
        self.irreps_in = self.irreps_out = Irreps(irreps)
        self._slices = list(zip(self.irreps_in, self.irreps_in.slices()))
        nonscalar = Irreps([(mul, ir) for mul, ir in self.irreps_in if ir.l > 0])
        self.norm_act = NormActivation(nonscalar, torch.sigmoid, normalize=False, bias=True) if nonscalar.dim else None

    def forward(self, x: Tensor) -> Tensor:
        out = []
        for (_, ir), s in self._slices:
            if ir.l == 0:
                out.append(("s", torch.nn.functional.silu(x[..., s]) if ir.p == 1 else torch.tanh(x[..., s])))
            else:
                out.append(("n", x[..., s]))
        if self.norm_act is not None:
            parts = [t for k, t in out if k == "n"]
            y = self.norm_act(torch.cat(parts, dim=-1))
            i = 0
            for j, (k, t) in enumerate(out):
                if k == "n":
                    d = t.shape[-1]
                    out[j] = ("n", y[..., i : i + d])
                    i += d
        return torch.cat([t for _, t in out], dim=-1)


def graph_readout(node_out: Tensor, graph: AtomicGraph, reduce: str | None) -> Tensor | None:
    if reduce is None:
        return None
    if reduce == "sum":
        return scatter_sum(node_out, graph.batch, dim=0, dim_size=graph.num_graphs)
    if reduce == "mean":
        return scatter_mean(node_out, graph.batch, dim=0, dim_size=graph.num_graphs)
    raise ValueError(f"reduce must be 'sum', 'mean' or None, got {reduce!r}")


@register_model("tfn")
class TensorFieldNetwork(torch.nn.Module):
    """Tensor Field Network.

    Args:
        irreps_out: per-node output irreps (e.g. ``"0e"``, ``"1o"``, ``"0e + 2e"``).
        num_types / irreps_node_in: node input (one-hot species or given features); neither: constant 1.
        irreps_hidden: irreps of every hidden layer (one string, or a list, one per hidden layer).
        num_layers: number of convolutions (the last one maps to ``irreps_out``).
        lmax: degree of the edge harmonics (the filters' angular part).
        r_max, num_basis, radial_hidden: radial part — ``smooth_finite`` basis of ``|r|`` on ``[0, r_max]``
            (vanishes smoothly at ``r_max``) fed to an MLP.
        avg_num_neighbors: normalisation of the neighbour sum.
        reduce: ``"sum"``/``"mean"`` adds ``graph_features [B, irreps_out.dim]``; ``None`` only per node.

    ``forward(graph)`` -> ``{"node_features": [N, irreps_out.dim], "graph_features": [B, dim]}``.
    """

    def __init__(
        self,
        irreps_out: Irreps | str,
        num_types: int | None = None,
        irreps_node_in: Irreps | str | None = None,
        irreps_hidden: Irreps | str | list[Any] = "16x0e + 4x0o + 8x1o + 8x1e + 4x2e + 4x2o",
        num_layers: int = 3,
        lmax: int = 2,
        r_max: float = 2.5,
        num_basis: int = 10,
        radial_hidden: tuple[int, ...] | list[int] = (32,),
        avg_num_neighbors: float = 4.0,
        reduce: str | None = "sum",
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if reduce not in ("sum", "mean", None):
            raise ValueError(f"reduce must be 'sum', 'mean' or None, got {reduce!r}")
        self.r_max = float(r_max)
        self.num_basis = num_basis
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.reduce = reduce
        self.embed = NodeEmbedding(num_types, irreps_node_in)
        self.irreps_sh = Irreps.spherical_harmonics(lmax)
        hidden = irreps_hidden if isinstance(irreps_hidden, list) else [irreps_hidden] * (num_layers - 1)
        if len(hidden) != num_layers - 1:
            raise ValueError(f"irreps_hidden lists {len(hidden)} layers; expected num_layers - 1 = {num_layers - 1}")
        targets = [Irreps(h) for h in hidden] + [Irreps(irreps_out)]
        self.convs = torch.nn.ModuleList()
        self.radials = torch.nn.ModuleList()
        self.self_interactions = torch.nn.ModuleList()
        self.acts = torch.nn.ModuleList()
        irreps = self.embed.irreps_out
        for i, target in enumerate(targets):
            # Keep only the target irreps that some CG path can produce from (irreps, sh).
            reachable = {ir_o for _, ir1 in irreps for _, ir2 in self.irreps_sh for ir_o in ir1 * ir2}
            target = Irreps([(m, ir) for m, ir in target if ir in reachable])
            if i == len(targets) - 1 and target != Irreps(irreps_out):
                raise ValueError(f"irreps_out {Irreps(irreps_out)} cannot be reached from {irreps} with lmax={lmax}")
            tp = FullyConnectedTensorProduct(irreps, self.irreps_sh, target, shared_weights=False)
            self.convs.append(tp)
            self.radials.append(
                FullyConnectedNet([num_basis, *radial_hidden, tp.weight_numel], torch.nn.functional.silu)
            )
            self.self_interactions.append(Linear(irreps, target))
            last = i == len(targets) - 1
            self.acts.append(torch.nn.Identity() if last else ScalarAndNormActivation(target))
            irreps = target
        self.irreps_out = {"node_features": str(Irreps(irreps_out)), "graph_features": str(Irreps(irreps_out))}

    def forward(self, graph: AtomicGraph) -> dict[str, Tensor]:
        graph = graph.with_edges(self.r_max)
        dtype = graph.pos.dtype
        x = self.embed(graph, dtype)
        vec = graph.edge_vectors()
        length = vec.norm(dim=-1)
        sh = spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        emb = soft_one_hot_linspace(
            length, 0.0, self.r_max, self.num_basis, basis="smooth_finite", cutoff=True
        ) * math.sqrt(self.num_basis)
        src, dst = graph.edge_index[0], graph.edge_index[1]
        for tp, radial, si, act in zip(self.convs, self.radials, self.self_interactions, self.acts):
            conv = tp.scatter(x, sh, src, dst, graph.num_nodes, radial(emb)) / math.sqrt(self.avg_num_neighbors)
            x = act(conv + si(x))
        out = {"node_features": x}
        g = graph_readout(x, graph, self.reduce)
        if g is not None:
            out["graph_features"] = g
        return out
