"""SE(3)-Transformer: equivariant attention over a radius graph (Fuchs et al., NeurIPS 2020), in the form of
e3nn's attention example, extended to O(3) (parity) and multiple heads.

One attention block, for node ``i`` with neighbours ``j`` (edge vector ``r_ij``)::

    q_i   = Linear(f_i)                                         (per head h: q_i^h)
    k_ij  = TP(f_j, Y(r_ij); W_k(|r_ij|)),  v_ij = TP(f_j, Y(r_ij); W_v(|r_ij|))   (radial MLPs)
    a_ij^h = <q_i^h, k_ij^h>                                    (a tensor product to 0e)
    alpha_ij^h = c(r_ij) exp(a_ij^h) / sum_j' c(r_ij') exp(a_ij'^h)   with the smooth cutoff
                 c(r) = soft_unit_step(10 (1 - r / r_max))
    out_i^h = sum_j sqrt(alpha_ij^h) v_ij^h

``sqrt(alpha)`` keeps the output normalised (the weights' squares sum to 1). Because ``c`` and all its
derivatives vanish at ``r_max``, outputs are smooth as a neighbour crosses the cutoff. A node without
neighbours gets zero attention output. The block is followed by an equivariant linear map, a gate, a
residual connection (when the irreps agree) and an equivariant layer norm.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..graph.data import AtomicGraph
from ..graph.scatter import scatter_max, scatter_sum
from ..nn import FullyConnectedNet, Gate, LayerNorm, soft_one_hot_linspace, soft_unit_step
from ..o3 import FullyConnectedTensorProduct, Irreps, Linear, spherical_harmonics
from .convolution import gate_irreps
from .registry import register_model
from .tfn import NodeEmbedding, graph_readout

__all__ = ["EquivariantAttention", "SE3Transformer"]


def _repeat(irreps: Irreps, n: int) -> Irreps:
    return Irreps(list(irreps) * n)


class EquivariantAttention(torch.nn.Module):
    """Multi-head equivariant graph attention (the equations of the module docstring).

    Args:
        irreps_in: node feature irreps.
        irreps_query, irreps_key, irreps_value: irreps of ONE head's query, key and value.
        irreps_sh: edge harmonics irreps.
        num_heads: heads; their values are concatenated (``num_heads`` copies of ``irreps_value`` in order).
        num_basis, radial_hidden, r_max: radial embedding (``smooth_finite`` basis with cutoff, times
            ``sqrt(num_basis)``) and the MLPs producing the key and value weights.

    ``forward(x [N, irreps_in], edge_index, sh [E, irreps_sh], radial [E, num_basis], cutoff [E])`` ->
    ``[N, num_heads * irreps_value.dim]``.
    """

    #: Edges per chunk for the keys and values (memory locality only; the result does not depend on it).
    EDGE_CHUNK = 8192
    #: Radial MLPs with at most this many last hidden units hand their output layer to the tensor products
    #: (``weight_basis``). Measured on benchmarks/models.py (1 thread, CPU time): 16 units: forward 147 ->
    #: 107-121 ms, forward+backward unchanged; with 64 units (gate_points) the separate GEMM was faster.
    FACTORED_MAX_HIDDEN = 32

    def __init__(
        self,
        irreps_in: Irreps | str,
        irreps_query: Irreps | str,
        irreps_key: Irreps | str,
        irreps_value: Irreps | str,
        irreps_sh: Irreps | str,
        num_heads: int = 1,
        num_basis: int = 10,
        radial_hidden: tuple[int, ...] = (16,),
    ) -> None:
        super().__init__()
        if num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        self.irreps_in = Irreps(irreps_in)
        self.irreps_query = Irreps(irreps_query)
        self.irreps_key = Irreps(irreps_key)
        self.irreps_value = Irreps(irreps_value)
        self.irreps_sh = Irreps(irreps_sh)
        self.num_heads = num_heads
        H = num_heads
        self.h_q = Linear(self.irreps_in, _repeat(self.irreps_query, H))
        self.tp_k = FullyConnectedTensorProduct(
            self.irreps_in, self.irreps_sh, _repeat(self.irreps_key, H), shared_weights=False
        )
        self.fc_k = FullyConnectedNet([num_basis, *radial_hidden, self.tp_k.weight_numel], torch.nn.functional.silu)
        self.tp_v = FullyConnectedTensorProduct(
            self.irreps_in, self.irreps_sh, _repeat(self.irreps_value, H), shared_weights=False
        )
        self.fc_v = FullyConnectedNet([num_basis, *radial_hidden, self.tp_v.weight_numel], torch.nn.functional.silu)
        # One dot product per head: a fully connected TP of the head's query and key into a single 0e.
        self.dots = torch.nn.ModuleList(
            [FullyConnectedTensorProduct(self.irreps_query, self.irreps_key, "0e") for _ in range(H)]
        )
        self.irreps_out = _repeat(self.irreps_value, H)
        dq, dk, dv = self.irreps_query.dim, self.irreps_key.dim, self.irreps_value.dim
        self._dq, self._dk, self._dv = dq, dk, dv

    def _keys_values(
        self, q: Tensor, x: Tensor, src: Tensor, dst: Tensor, sh: Tensor, radial: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Logits ``[e, H]`` and values ``[e, H * dim_v]`` of a range of edges (``q`` is per node)."""
        xs = x[src]
        if self.fc_k.hs[-2] <= self.FACTORED_MAX_HIDDEN:
            # the radial MLPs' output layers are applied inside the tensor products (weight_basis): the
            # per-edge weights [E, weight_numel], the largest tensors of the block, are never stored
            hk, basis_k = self.fc_k.factored(radial)
            hv, basis_v = self.fc_v.factored(radial)
            k = self.tp_k(xs, sh, hk, weight_basis=basis_k)
            v = self.tp_v(xs, sh, hv, weight_basis=basis_v)
        else:
            k = self.tp_k(xs, sh, self.fc_k(radial))
            v = self.tp_v(xs, sh, self.fc_v(radial))
        qd = q[dst]
        logits = torch.cat(
            [
                dot(qd[:, h * self._dq : (h + 1) * self._dq], k[:, h * self._dk : (h + 1) * self._dk])
                for h, dot in enumerate(self.dots)
            ],
            dim=-1,
        )
        return logits, v

    def forward(self, x: Tensor, edge_index: Tensor, sh: Tensor, radial: Tensor, cutoff: Tensor) -> Tensor:
        src, dst = edge_index[0], edge_index[1]
        N, H = x.shape[0], self.num_heads
        E = src.shape[0]
        q = self.h_q(x)
        # The per-edge weights of the key/value TPs ([E, weight_numel], the largest tensors here) are made and
        # consumed in chunks of edges, so a chunk's weights are read by the TP soon after the radial MLP wrote
        # them, instead of a full [E, weight_numel] pass through memory (measured 10-15% faster at 40k edges,
        # benchmarks/models.py). Edge-wise computations are independent: chunking changes no value.
        step = max(1, self.EDGE_CHUNK)
        if E <= step:
            logits, v = self._keys_values(q, x, src, dst, sh, radial)
        else:
            parts = [
                self._keys_values(q, x, src[a : a + step], dst[a : a + step], sh[a : a + step], radial[a : a + step])
                for a in range(0, E, step)
            ]
            logits = torch.cat([p[0] for p in parts])  # [E, H]
            v = torch.cat([p[1] for p in parts])
        # Subtracting the per-centre maximum leaves alpha unchanged and keeps exp finite; it is a constant
        # shift of each softmax, so it can be detached without changing any gradient.
        m = scatter_max(logits.detach(), dst, dim=0, dim_size=N)[dst]
        w = cutoff[:, None] * torch.exp(logits - m)
        z = scatter_sum(w, dst, dim=0, dim_size=N)
        z = torch.where(z == 0, torch.ones_like(z), z)
        alpha = w / z[dst]
        scale = torch.sqrt(torch.relu(alpha))  # [E, H]
        v = (v.reshape(-1, H, self._dv) * scale[:, :, None]).reshape(-1, H * self._dv)
        return scatter_sum(v, dst, dim=0, dim_size=N)


@register_model("se3_transformer")
class SE3Transformer(torch.nn.Module):
    """A stack of equivariant attention blocks with gates, residuals and equivariant layer norms.

    Args:
        irreps_out: per-node output irreps (scalars, vectors or tensors).
        num_types / irreps_node_in: node input (one-hot species or given features); neither: constant 1.
        irreps_hidden: node irreps between blocks.
        irreps_query, irreps_key, irreps_value: per-head irreps of the attention blocks.
        num_heads, num_layers, lmax, r_max, num_basis, radial_hidden: as in :class:`EquivariantAttention`.
        reduce: ``"sum"``/``"mean"`` adds per-graph outputs; ``None`` for per-node only.

    ``forward(graph)`` -> ``{"node_features": [N, irreps_out.dim], "graph_features": [B, dim]}``.
    """

    def __init__(
        self,
        irreps_out: Irreps | str,
        num_types: int | None = None,
        irreps_node_in: Irreps | str | None = None,
        irreps_hidden: Irreps | str = "16x0e + 4x0o + 8x1o + 4x1e + 4x2e",
        irreps_query: Irreps | str = "8x0e + 4x1o",
        irreps_key: Irreps | str = "8x0e + 4x1o",
        irreps_value: Irreps | str = "8x0e + 4x0o + 4x1o + 4x1e + 2x2e",
        num_heads: int = 2,
        num_layers: int = 2,
        lmax: int = 2,
        r_max: float = 2.5,
        num_basis: int = 10,
        radial_hidden: tuple[int, ...] | list[int] = (16,),
        reduce: str | None = "sum",
        layer_norm: bool = True,
    ) -> None:
        super().__init__()
        if reduce not in ("sum", "mean", None):
            raise ValueError(f"reduce must be 'sum', 'mean' or None, got {reduce!r}")
        self.r_max = float(r_max)
        self.num_basis = num_basis
        self.reduce = reduce
        self.embed = NodeEmbedding(num_types, irreps_node_in)
        self.irreps_sh = Irreps.spherical_harmonics(lmax)
        irreps = self.embed.irreps_out
        hidden = Irreps(irreps_hidden)
        self.blocks = torch.nn.ModuleList()
        for _ in range(num_layers):
            att = EquivariantAttention(
                irreps, irreps_query, irreps_key, irreps_value, self.irreps_sh, num_heads, num_basis,
                tuple(radial_hidden),
            )
            scalars, gates, gated = gate_irreps(hidden, att.irreps_out)
            gate = Gate(
                scalars,
                [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars],
                gates,
                [torch.sigmoid] * len(gates),
                gated,
            )
            block: dict[str, Any] = {
                "attention": att,
                "linear": Linear(att.irreps_out, gate.irreps_in),
                "self": Linear(irreps, gate.irreps_in),
                "gate": gate,
            }
            if layer_norm:
                block["norm"] = LayerNorm(gate.irreps_out)
            self.blocks.append(torch.nn.ModuleDict(block))
            irreps = gate.irreps_out
        reachable = {ir_o for _, ir1 in irreps for _, ir2 in self.irreps_sh for ir_o in ir1 * ir2} | {
            ir for _, ir in irreps
        }
        out_irreps = Irreps(irreps_out)
        missing = [str(ir) for _, ir in out_irreps if ir not in reachable]
        if missing:
            raise ValueError(f"irreps_out {out_irreps}: {', '.join(missing)} cannot be produced from {irreps}")
        self.head = EquivariantAttention(
            irreps, irreps_query, irreps_key, out_irreps, self.irreps_sh, 1, num_basis, tuple(radial_hidden)
        )
        self.head_self = Linear(irreps, out_irreps)
        self.irreps_out = {"node_features": str(out_irreps), "graph_features": str(out_irreps)}

    def forward(self, graph: AtomicGraph) -> dict[str, Tensor]:
        graph = graph.with_edges(self.r_max)
        x = self.embed(graph, graph.pos.dtype)
        vec = graph.edge_vectors()
        length = vec.norm(dim=-1)
        sh = spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        radial = soft_one_hot_linspace(
            length, 0.0, self.r_max, self.num_basis, basis="smooth_finite", cutoff=True
        ) * math.sqrt(self.num_basis)
        cutoff = soft_unit_step(10 * (1 - length / self.r_max))
        for block in self.blocks:
            y = block["attention"](x, graph.edge_index, sh, radial, cutoff)
            y = block["gate"](block["linear"](y) + block["self"](x))
            if y.shape == x.shape and block["gate"].irreps_out == block["attention"].irreps_in:
                y = y + x
            x = block["norm"](y) if "norm" in block else y
        x = self.head(x, graph.edge_index, sh, radial, cutoff) + self.head_self(x)
        out = {"node_features": x}
        g = graph_readout(x, graph, self.reduce)
        if g is not None:
            out["graph_features"] = g
        return out
