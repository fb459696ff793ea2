"""Benchmarks se3_attention_fwd/_fwdbwd and gate_points_energy_fwd/_forces (WORKLOADS.md workloads 5 and 6).

Usage: python benchmarks/models.py [--workload se3|gate|all] [--min-calls N] [--max-calls N] [--scale S]
       [--threads T] [--clock wall|cpu]

euclidnet vs e3nn, the same architecture on the same inputs, interleaved in one process (A, B, A, B, ...).
Before timing, e3nn's weights (and its activation normalisation constants, which e3nn estimates by sampling)
are copied into ours and the outputs (and, for fwdbwd, the gradients) are compared: the run stops if they
differ, so every ratio printed is a ratio between two implementations of one function.

* se3_attention: e3nn's documented transformer example (``o3.Linear`` query, ``FullyConnectedTensorProduct``
  keys/values with per-edge weights from ``nn.FullyConnectedNet([10, 16, numel], silu)``, ``smooth_finite``
  radial basis, ``soft_unit_step`` cutoff, dot product ``FullyConnectedTensorProduct(q, k -> 0e)``, scatter)
  vs our :class:`~euclidnet.models.se3_transformer.EquivariantAttention` (one head) with the same edge
  embedding. Ours also subtracts the per-centre maximum logit before ``exp`` (numerical safety; the softmax
  is unchanged), work e3nn's example does not do.
* gate_points: ``e3nn.nn.models.gate_points_2101.Network`` vs :class:`GatePointsNetwork` below (the same
  layers built from euclidnet's public modules). e3nn's ``Network.forward`` builds its radius graph itself;
  the graph is not part of the timed workload, so :func:`e3nn_gate_points_energy` runs e3nn's own layers on
  the precomputed graph (every other line of ``Network.forward`` unchanged).

Timed region: from positions (and node features) to the output: edge vectors, harmonics, radial embedding,
the model. The graph (edge index) is built outside. Medians of >= 7 calls after 2 warm-ups; GFLOP/s counts
useful multiply-adds (tensor products: nonzero CG entries x multiplicities; linear maps and MLPs: their
GEMM sizes) as 2 flops each; fwdbwd/forces are counted as 3x the forward (a convention, stated in the
table); sgemm 1024^3 is the yardstick. ``--clock cpu`` (process CPU time) is a diagnostic for busy shared
machines, where wall-clock medians mostly measure the other processes; it is not the workload definition.

Graphs: seed 0. gate_points then has 9,182 edges (35.9 neighbours per atom); WORKLOADS.md says "about 7,900"
but uniform 256-atom boxes vary with the seed (7,950-9,210 over seeds 0-19, mean 8,450).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from _common import sgemm_gflops  # noqa: E402  (sibling module of this script)

from euclidnet.models.se3_transformer import EquivariantAttention
from euclidnet.nn import FullyConnectedNet, Gate, soft_one_hot_linspace, soft_unit_step
from euclidnet.nn.activation import normalize2mom
from euclidnet.o3 import Irreps, spherical_harmonics
from euclidnet.tp import FullyConnectedTensorProduct, TensorProduct, load_e3nn_weights

__all__ = [
    "GatePointsNetwork",
    "SE3AttentionWorkload",
    "build_gate_points",
    "build_se3_attention",
    "e3nn_gate_points_energy",
    "gate_points_graph",
    "se3_attention_graph",
]

SE3_IRREPS = {"in": "10x0e+5x1o+2x2e", "query": "11x0e+4x1o", "key": "12x0e+3x1o", "value": "14x0e+6x1o"}
SE3_MAX_RADIUS = 1.3
SE3_BASIS = 10
GATE_HIDDEN = "32x0e+32x0o+16x1e+16x1o+8x2e+8x2o"
GATE_MAX_RADIUS = 5.0
GATE_BASIS = 10
GATE_SPECIES = 4


# -- graphs (built outside the timed region) --------------------------------------------------------------


def _radius_pairs(pos: torch.Tensor, r_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ordered pairs ``src != dst`` with ``|pos[src] - pos[dst]| < r_max`` (float64 distances)."""
    p = pos.double()
    r = torch.cdist(p, p)
    src, dst = ((r < r_max) & ~torch.eye(len(p), dtype=torch.bool)).nonzero().T
    return src, dst


def se3_attention_graph(num_nodes: int = 2000, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """WORKLOADS.md 5: ``num_nodes`` points uniform in ``[0, 9.2)^3`` (density kept when ``num_nodes`` is
    smaller: the box side scales as ``num_nodes^(1/3)``), features ``N(0, 1)`` ``[N, 32]``, radius 1.3."""
    g = torch.Generator().manual_seed(seed)
    side = 9.2 * (num_nodes / 2000) ** (1 / 3)
    pos = (torch.rand(num_nodes, 3, generator=g, dtype=torch.float64) * side).to(dtype)
    f = torch.randn(num_nodes, Irreps(SE3_IRREPS["in"]).dim, generator=g, dtype=torch.float64).to(dtype)
    src, dst = _radius_pairs(pos, SE3_MAX_RADIUS)
    return {"pos": pos, "f": f, "src": src, "dst": dst}


def gate_points_graph(num_atoms: int = 256, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """WORKLOADS.md 6: ``num_atoms`` uniform in a cube of side ``13.68 (num_atoms / 256)^(1/3)`` A (open
    boundaries), species uniform in 0..3 (one-hot ``[N, 4]``), radius 5.0."""
    g = torch.Generator().manual_seed(seed)
    side = 13.68 * (num_atoms / 256) ** (1 / 3)
    pos = (torch.rand(num_atoms, 3, generator=g, dtype=torch.float64) * side).to(dtype)
    species = torch.randint(0, GATE_SPECIES, (num_atoms,), generator=g)
    z = torch.nn.functional.one_hot(species, GATE_SPECIES).to(dtype)
    src, dst = _radius_pairs(pos, GATE_MAX_RADIUS)
    return {"pos": pos, "z": z, "src": src, "dst": dst}


# -- shared helpers ----------------------------------------------------------------------------------------


def _copy_normalize2mom(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """Give our normalised activations e3nn's constants.

    e3nn estimates ``E[f(Z)^2]^(-1/2)`` from 10^6 samples, we integrate it by quadrature: the constants differ
    by ~1e-4 relative, which is the *only* difference between the two functions once weights are copied. The
    activations are paired in module order and must wrap the same function.
    """
    mine = [m for m in ours.modules() if isinstance(m, normalize2mom)]
    other = [m for m in theirs.modules() if type(m).__name__ == "normalize2mom"]
    if len(mine) != len(other):
        raise ValueError(f"{len(mine)} normalised activations in ours, {len(other)} in e3nn's")
    for a, b in zip(mine, other):
        if a.f is not b.f:
            raise ValueError(f"activation mismatch: ours {a.f!r}, e3nn's {b.f!r}")
        a.cst = float(b.cst)
        a.is_identity = bool(b._is_id)


def _linear_macs(irreps_in: Irreps, irreps_out: Irreps, batch: int) -> int:
    """Multiply-adds of a fully connected equivariant linear map (every pair of blocks with equal irreps)."""
    return batch * sum(m1 * m2 * ir1.dim for m1, ir1 in irreps_in for m2, ir2 in irreps_out if ir1 == ir2)


def _mlp_macs(hs: list[int], batch: int) -> int:
    return batch * sum(a * b for a, b in zip(hs, hs[1:]))


def _e3nn_sort(irreps: Irreps) -> tuple[Irreps, list[int]]:
    """e3nn's ``Irreps.sort()``: stable sort of the blocks by ``(l, p)`` (odd before even); ``perm[old] = new``."""
    order = sorted(range(len(irreps)), key=lambda i: (irreps[i].ir.l, irreps[i].ir.p, i))
    perm = [0] * len(order)
    for new, old in enumerate(order):
        perm[old] = new
    return Irreps([irreps[i] for i in order]), perm


# -- se3_attention -----------------------------------------------------------------------------------------


class SE3AttentionWorkload(torch.nn.Module):
    """Workload 5 with euclidnet: edge embedding + :class:`EquivariantAttention` (one head).

    ``forward(f [N, 32], pos [N, 3], src [E], dst [E])`` -> ``[N, 32]`` (``14x0e+6x1o``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.irreps_sh = Irreps.spherical_harmonics(3)
        self.att = EquivariantAttention(
            SE3_IRREPS["in"], SE3_IRREPS["query"], SE3_IRREPS["key"], SE3_IRREPS["value"], self.irreps_sh, 1,
            SE3_BASIS, (16,),
        )

    def forward(self, f: torch.Tensor, pos: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        vec = pos[src] - pos[dst]
        length = vec.norm(dim=1)
        sh = spherical_harmonics(self.irreps_sh, vec, True, normalization="component")
        radial = soft_one_hot_linspace(
            length, 0.0, SE3_MAX_RADIUS, SE3_BASIS, basis="smooth_finite", cutoff=True
        ) * math.sqrt(SE3_BASIS)
        cutoff = soft_unit_step(10 * (1 - length / SE3_MAX_RADIUS))
        return self.att(f, torch.stack([src, dst]), sh, radial, cutoff)


class _E3nnSE3Attention(torch.nn.Module):
    """e3nn's documented transformer example, line for line, as a module (e3nn imported lazily)."""

    def __init__(self) -> None:
        super().__init__()
        from e3nn import nn as enn
        from e3nn import o3 as eo

        irreps_in, irreps_q = eo.Irreps(SE3_IRREPS["in"]), eo.Irreps(SE3_IRREPS["query"])
        irreps_k, irreps_out = eo.Irreps(SE3_IRREPS["key"]), eo.Irreps(SE3_IRREPS["value"])
        self.irreps_sh = eo.Irreps.spherical_harmonics(3)
        self.h_q = eo.Linear(irreps_in, irreps_q)
        self.tp_k = eo.FullyConnectedTensorProduct(irreps_in, self.irreps_sh, irreps_k, shared_weights=False)
        self.fc_k = enn.FullyConnectedNet([SE3_BASIS, 16, self.tp_k.weight_numel], act=torch.nn.functional.silu)
        self.tp_v = eo.FullyConnectedTensorProduct(irreps_in, self.irreps_sh, irreps_out, shared_weights=False)
        self.fc_v = enn.FullyConnectedNet([SE3_BASIS, 16, self.tp_v.weight_numel], act=torch.nn.functional.silu)
        self.dot = eo.FullyConnectedTensorProduct(irreps_q, irreps_k, "0e")

    def forward(self, f: torch.Tensor, pos: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        from e3nn import o3 as eo
        from e3nn.math import soft_one_hot_linspace as e_soft_one_hot
        from e3nn.math import soft_unit_step as e_soft_unit_step

        edge_vec = pos[src] - pos[dst]
        edge_length = edge_vec.norm(dim=1)
        edge_sh = eo.spherical_harmonics(self.irreps_sh, edge_vec, True, normalization="component")
        emb = e_soft_one_hot(edge_length, 0.0, SE3_MAX_RADIUS, SE3_BASIS, basis="smooth_finite", cutoff=True)
        emb = emb.mul(SE3_BASIS**0.5)
        edge_weight_cutoff = e_soft_unit_step(10 * (1 - edge_length / SE3_MAX_RADIUS))
        q = self.h_q(f)
        k = self.tp_k(f[src], edge_sh, self.fc_k(emb))
        v = self.tp_v(f[src], edge_sh, self.fc_v(emb))
        exp = edge_weight_cutoff[:, None] * self.dot(q[dst], k).exp()
        z = exp.new_zeros(len(f), exp.shape[1]).index_add_(0, dst, exp)
        z[z == 0] = 1
        alpha = exp / z[dst]
        msg = alpha.relu().sqrt() * v
        return msg.new_zeros(len(f), msg.shape[1]).index_add_(0, dst, msg)


@torch.no_grad()
def load_se3_weights(ours: SE3AttentionWorkload, theirs: torch.nn.Module) -> None:
    """Copy e3nn's example weights (and activation constants) into ours."""
    att = ours.att
    load_e3nn_weights(att.h_q, theirs.h_q)
    load_e3nn_weights(att.tp_k, theirs.tp_k)
    load_e3nn_weights(att.tp_v, theirs.tp_v)
    load_e3nn_weights(att.dots[0], theirs.dot)
    att.fc_k.load_state_dict(theirs.fc_k.state_dict())
    att.fc_v.load_state_dict(theirs.fc_v.state_dict())
    _copy_normalize2mom(att.fc_k, theirs.fc_k)
    _copy_normalize2mom(att.fc_v, theirs.fc_v)


def build_se3_attention(num_nodes: int = 2000, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """Both modules (e3nn's weights copied into ours), the graph and the useful multiply-adds per forward."""
    torch.manual_seed(seed)
    theirs = _E3nnSE3Attention().to(dtype)
    ours = SE3AttentionWorkload().to(dtype)
    load_se3_weights(ours, theirs)
    graph = se3_attention_graph(num_nodes, seed, dtype)
    N, E = num_nodes, len(graph["src"])
    att = ours.att
    macs = (
        _linear_macs(att.irreps_in, att.irreps_query, N)
        + att.tp_k.descriptor.num_multiply_adds(E)
        + att.tp_v.descriptor.num_multiply_adds(E)
        + att.dots[0].descriptor.num_multiply_adds(E)
        + _mlp_macs(att.fc_k.hs, E)
        + _mlp_macs(att.fc_v.hs, E)
    )
    return {"ours": ours, "e3nn": theirs, "graph": graph, "macs": macs}


# -- gate_points ---------------------------------------------------------------------------------------------


def _smooth_cutoff(x: torch.Tensor) -> torch.Tensor:
    """gate_points_2101's cutoff: 1 for ``x <= 1/2``, ``(1 - cos(2 pi (x - 1))) / 2`` up to 1, 0 beyond."""
    u = 2 * (x - 1)
    y = (1 - torch.cos(math.pi * u)) / 2
    return torch.where(u > 0, torch.zeros_like(y), torch.where(u < -1, torch.ones_like(y), y))


class _Convolution(torch.nn.Module):
    """gate_points_2101's ``Convolution`` from euclidnet layers (same paths, weight layouts and order).

    ``forward(x [N, irreps_in], z [N, 4], src, dst, edge_attr [E, 9], emb [E, 10])`` -> ``[N, irreps_out]``:
    ``s = SC(x, z)``, ``x' = Lin1(x, z)``, messages ``TP_uvu(x'[src], edge_attr; MLP(emb))`` summed on ``dst``
    over ``sqrt(num_neighbors)``, ``Lin2(., z)``, and ``sin(pi/8) s + cos(pi/8) x'`` (``x'`` alone on the
    outputs SC cannot reach).
    """

    def __init__(
        self, irreps_in: Irreps, irreps_attr: Irreps, irreps_edge: Irreps, irreps_out: Irreps, num_neighbors: float
    ) -> None:
        super().__init__()
        self.irreps_in, self.irreps_out = irreps_in, irreps_out
        self.num_neighbors = float(num_neighbors)
        self.sc = FullyConnectedTensorProduct(irreps_in, irreps_attr, irreps_out)
        self.lin1 = FullyConnectedTensorProduct(irreps_in, irreps_attr, irreps_in)
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(irreps_in):
            for j, (_, ir_edge) in enumerate(irreps_edge):
                for ir_out in ir_in * ir_edge:
                    if ir_out in [ir for _, ir in irreps_out]:
                        instructions.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        irreps_mid, perm = _e3nn_sort(Irreps(mid))
        instructions = [(a, b, perm[c], m, t) for a, b, c, m, t in instructions]
        self.tp = TensorProduct(
            irreps_in, irreps_edge, irreps_mid, instructions, internal_weights=False, shared_weights=False
        )
        self.fc = FullyConnectedNet([GATE_BASIS, 64, self.tp.weight_numel], torch.nn.functional.silu)
        self.lin2 = FullyConnectedTensorProduct(irreps_mid, irreps_attr, irreps_out)
        m = self.sc.descriptor.output_mask()
        c_s, c_x = math.sin(math.pi / 8), math.cos(math.pi / 8)
        self.c_s = c_s
        self.register_buffer("c_x", (1 - m) + c_x * m, persistent=False)

    def forward(
        self,
        x: torch.Tensor,
        z: torch.Tensor,
        src: torch.Tensor,
        dst: torch.Tensor,
        edge_attr: torch.Tensor,
        emb: torch.Tensor,
    ) -> torch.Tensor:
        # (64 hidden units: the MLP's output layer is cheaper as its own GEMM than inside the kernel, see
        # EquivariantAttention.FACTORED_MAX_HIDDEN)
        weight = self.fc(emb)
        s = self.sc(x, z)
        x = self.lin1(x, z)
        # e3nn: tp(x[src], edge_attr, weight) then scatter over dst; ours: the same sum in one fused pass
        x = self.tp.scatter(x, edge_attr, src, dst, x.shape[0], weight) / self.num_neighbors**0.5
        x = self.lin2(x, z)
        return self.c_s * s + self.c_x * x


class _SortedGate(torch.nn.Module):
    """Our :class:`~euclidnet.nn.Gate` fed in e3nn's layout (blocks sorted by irrep, then merged).

    The column permutation from the sorted layout back to ``scalars + gates + gated`` is one gather
    (e3nn's Gate does the same split with its ``Extract``).
    """

    def __init__(self, scalars: Irreps, gates: Irreps, gated: Irreps) -> None:
        super().__init__()
        acts = {1: torch.nn.functional.silu, -1: torch.tanh}
        gate_acts = {1: torch.sigmoid, -1: torch.tanh}
        self.gate = Gate(
            scalars, [acts[ir.p] for _, ir in scalars], gates, [gate_acts[ir.p] for _, ir in gates], gated
        )
        cat = Irreps(list(scalars) + list(gates) + list(gated))
        sorted_irreps, perm = _e3nn_sort(cat)
        starts_sorted = [0]
        for mul, ir in sorted_irreps:
            starts_sorted.append(starts_sorted[-1] + mul * ir.dim)
        cols = []
        for old, (mul, ir) in enumerate(cat):
            a = starts_sorted[perm[old]]
            cols.append(torch.arange(a, a + mul * ir.dim))
        self.irreps_in = sorted_irreps.simplify()
        self.irreps_out = Irreps(list(self.gate.act_scalars.irreps_out) + list(gated))
        self.register_buffer("cols", torch.cat(cols) if cols else torch.zeros(0, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x.index_select(-1, self.cols))


def _path_exists(irreps1: Irreps, irreps2: Irreps, ir_out: Any) -> bool:
    return any(ir_out in ir1 * ir2 for _, ir1 in irreps1 for _, ir2 in irreps2)


class GatePointsNetwork(torch.nn.Module):
    """e3nn's ``gate_points_2101.Network`` (``irreps_in=None``, one-hot node attributes) from euclidnet layers.

    ``forward(pos [N, 3], z [N, 4], src [E], dst [E])`` -> energy ``[1, 1]`` (sum over atoms / sqrt(num_nodes)).
    """

    def __init__(self, num_neighbors: float, num_nodes: float, layers: int = 3) -> None:
        super().__init__()
        from euclidnet.o3.irreps import Irrep

        self.num_nodes = float(num_nodes)
        self.irreps_sh = Irreps.spherical_harmonics(2)
        attr = Irreps(f"{GATE_SPECIES}x0e")
        hidden = Irreps(GATE_HIDDEN)
        irreps = Irreps("0e")
        self.convs = torch.nn.ModuleList()
        self.gates = torch.nn.ModuleList()
        for _ in range(layers):
            scalars = Irreps([(m, ir) for m, ir in hidden if ir.l == 0 and _path_exists(irreps, self.irreps_sh, ir)])
            gated = Irreps([(m, ir) for m, ir in hidden if ir.l > 0 and _path_exists(irreps, self.irreps_sh, ir)])
            gate_ir = Irrep("0e") if _path_exists(irreps, self.irreps_sh, Irrep("0e")) else Irrep("0o")
            gates = Irreps([(m, gate_ir) for m, _ in gated])
            gate = _SortedGate(scalars, gates, gated)
            self.convs.append(_Convolution(irreps, attr, self.irreps_sh, gate.irreps_in, num_neighbors))
            self.gates.append(gate)
            irreps = gate.irreps_out
        self.convs.append(_Convolution(irreps, attr, self.irreps_sh, Irreps("0e"), num_neighbors))

    def forward(self, pos: torch.Tensor, z: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        vec = pos[src] - pos[dst]
        sh = spherical_harmonics(self.irreps_sh, vec, True, normalization="component")
        length = vec.norm(dim=1)
        emb = soft_one_hot_linspace(length, 0.0, GATE_MAX_RADIUS, GATE_BASIS, basis="gaussian", cutoff=False)
        emb = emb * GATE_BASIS**0.5
        edge_attr = _smooth_cutoff(length / GATE_MAX_RADIUS)[:, None] * sh
        x = pos.new_ones(pos.shape[0], 1)
        for i, conv in enumerate(self.convs):
            x = conv(x, z, src, dst, edge_attr, emb)
            if i < len(self.gates):
                x = self.gates[i](x)
        return x.sum(0, keepdim=True) / self.num_nodes**0.5


def e3nn_gate_points_energy(
    net: torch.nn.Module, pos: torch.Tensor, z: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
) -> torch.Tensor:
    """``gate_points_2101.Network.forward`` on a precomputed graph (its radius_graph call is the only change)."""
    from e3nn import o3 as eo
    from e3nn.math import soft_one_hot_linspace as e_soft_one_hot
    from e3nn.nn.models.gate_points_2101 import scatter, smooth_cutoff

    batch = pos.new_zeros(pos.shape[0], dtype=torch.long)
    edge_vec = pos[src] - pos[dst]
    edge_sh = eo.spherical_harmonics(net.irreps_edge_attr, edge_vec, True, normalization="component")
    edge_length = edge_vec.norm(dim=1)
    emb = e_soft_one_hot(
        x=edge_length, start=0.0, end=net.max_radius, number=net.number_of_basis, basis="gaussian", cutoff=False
    ).mul(net.number_of_basis**0.5)
    edge_attr = smooth_cutoff(edge_length / net.max_radius)[:, None] * edge_sh
    x = pos.new_ones((pos.shape[0], 1))
    for lay in net.layers:
        x = lay(x, z, src, dst, edge_attr, emb)
    return scatter(x, batch, dim_size=int(batch.max()) + 1).div(net.num_nodes**0.5)


@torch.no_grad()
def load_gate_points_weights(ours: GatePointsNetwork, net: torch.nn.Module) -> None:
    """Copy the weights (and activation constants) of e3nn's ``Network`` into ours, layer by layer."""
    e_convs = [lay.first for lay in net.layers[:-1]] + [net.layers[-1]]
    e_gates = [lay.second for lay in net.layers[:-1]]
    if len(e_convs) != len(ours.convs):
        raise ValueError(f"{len(ours.convs)} convolutions in ours, {len(e_convs)} in e3nn's")
    for c, ec in zip(ours.convs, e_convs):
        for name in ("sc", "lin1", "tp", "lin2"):
            load_e3nn_weights(getattr(c, name), getattr(ec, name))
        c.fc.load_state_dict(ec.fc.state_dict())
        _copy_normalize2mom(c.fc, ec.fc)
        if str(c.irreps_out) != str(ec.irreps_out):
            raise ValueError(f"convolution output irreps differ: ours {c.irreps_out}, e3nn's {ec.irreps_out}")
    for g, eg in zip(ours.gates, e_gates):
        if str(g.irreps_in) != str(eg.irreps_in) or str(g.irreps_out) != str(eg.irreps_out):
            raise ValueError(f"gate irreps differ: ours {g.irreps_in} -> {g.irreps_out}, e3nn's {eg}")
        _copy_normalize2mom(g.gate, eg)


def build_gate_points(num_atoms: int = 256, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """Both networks (e3nn's weights copied into ours), the graph and the useful multiply-adds per forward.

    ``num_neighbors`` and ``num_nodes`` are the measured averages of this graph (as the workload says).
    """
    from e3nn.nn.models.gate_points_2101 import Network

    graph = gate_points_graph(num_atoms, seed, dtype)
    N, E = num_atoms, len(graph["src"])
    torch.manual_seed(seed)
    net = Network(
        irreps_in=None,
        irreps_hidden=GATE_HIDDEN,
        irreps_out="0e",
        irreps_node_attr=f"{GATE_SPECIES}x0e",
        irreps_edge_attr=str(Irreps.spherical_harmonics(2)),
        layers=3,
        max_radius=GATE_MAX_RADIUS,
        number_of_basis=GATE_BASIS,
        radial_layers=1,
        radial_neurons=64,
        num_neighbors=E / N,
        num_nodes=float(N),
        reduce_output=True,
    ).to(dtype)
    ours = GatePointsNetwork(E / N, float(N)).to(dtype)
    load_gate_points_weights(ours, net)
    macs = 0
    for c in ours.convs:
        for tp, batch in ((c.sc, N), (c.lin1, N), (c.lin2, N), (c.tp, E)):
            macs += tp.descriptor.num_multiply_adds(batch)
        macs += _mlp_macs(c.fc.hs, E)
    return {"ours": ours, "e3nn": net, "graph": graph, "macs": macs}


# -- timing --------------------------------------------------------------------------------------------------


def se3_calls(b: dict) -> dict[str, dict[str, Callable[[], Any]]]:
    """``{lib: {"fwd": fn, "fwdbwd": fn}}``: fwdbwd = grads w.r.t. features, positions and all parameters."""
    g = b["graph"]
    f = g["f"].clone().requires_grad_(True)
    pos = g["pos"].clone().requires_grad_(True)
    src, dst = g["src"], g["dst"]
    out: dict[str, dict[str, Callable[[], Any]]] = {}
    for lib in ("ours", "e3nn"):
        mod = b[lib]
        params = [f, pos] + [p for p in mod.parameters() if p.requires_grad and p.numel() > 0]

        def fwd(mod: torch.nn.Module = mod) -> torch.Tensor:
            with torch.no_grad():
                return mod(f, pos, src, dst)

        def fwdbwd(mod: torch.nn.Module = mod, params: list = params) -> tuple:
            return torch.autograd.grad(mod(f, pos, src, dst).sum(), params)

        out[lib] = {"fwd": fwd, "fwdbwd": fwdbwd}
    return out


def gate_calls(b: dict) -> dict[str, dict[str, Callable[[], Any]]]:
    """``{lib: {"energy_fwd": fn, "forces": fn}}``: forces = energy and its gradient w.r.t. positions."""
    g = b["graph"]
    pos = g["pos"].clone().requires_grad_(True)
    z, src, dst = g["z"], g["src"], g["dst"]
    energy = {
        "ours": lambda: b["ours"](pos, z, src, dst),
        "e3nn": lambda: e3nn_gate_points_energy(b["e3nn"], pos, z, src, dst),
    }
    out: dict[str, dict[str, Callable[[], Any]]] = {}
    for lib, en in energy.items():

        def fwd(en: Callable = en) -> torch.Tensor:
            with torch.no_grad():
                return en()

        def forces(en: Callable = en) -> tuple:
            e = en()
            return e, torch.autograd.grad(e.sum(), [pos])[0]

        out[lib] = {"energy_fwd": fwd, "forces": forces}
    return out


def check_same(calls: dict[str, dict[str, Callable[[], Any]]], rtol: float = 1e-4) -> dict[str, float]:
    """Max difference, relative to the largest magnitude, between ours and e3nn for every mode's outputs."""
    res = {}
    for mode in calls["ours"]:
        a, b = calls["ours"][mode](), calls["e3nn"][mode]()
        a = a if isinstance(a, tuple) else (a,)
        b = b if isinstance(b, tuple) else (b,)
        worst = 0.0
        for x, y in zip(a, b):
            scale = max(float(y.detach().abs().max()), 1e-30)
            worst = max(worst, float((x - y).detach().abs().max()) / scale)
        res[mode] = worst
        if not worst <= rtol:
            raise AssertionError(f"{mode}: ours and e3nn differ by {worst:.2e} (relative to max |e3nn|)")
    return res


def time_interleaved(
    fns: dict[str, Callable[[], Any]], min_calls: int, max_calls: int, clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """2 warm-ups each, then rounds A, B, A, B ... until >= min_calls and >= 1 s per library (<= max_calls).

    ``clock`` is wall time (the definition) or ``time.process_time`` (CPU time of all threads of this process:
    much less disturbed by other processes on a busy machine)."""
    for fn in fns.values():
        fn()
        fn()
    ts: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    n = 0
    while n < max_calls and (n < min_calls or time.perf_counter() - start < len(fns) * 1.0):
        for k, fn in fns.items():
            t = clock()
            fn()
            ts[k].append(clock() - t)
        n += 1
    return {k: statistics.median(v) for k, v in ts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="all", choices=["se3", "gate", "all"])
    ap.add_argument("--min-calls", type=int, default=7)
    ap.add_argument("--max-calls", type=int, default=50)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the nodes (density kept)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--clock", default="wall", choices=["wall", "cpu"], help="cpu: process CPU time (diagnostic on busy machines)"
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    clock = time.perf_counter if a.clock == "wall" else time.process_time
    try:
        import e3nn  # noqa: F401
    except ImportError:
        sys.exit("e3nn is not installed (pip install -e '.[compare]'): this benchmark compares against it")
    print(
        f"threads={a.threads} clock={a.clock} float32 scale={a.scale} min_calls={a.min_calls} "
        "(WORKLOADS.md: 2 threads, wall clock, scale 1, >= 7 calls)"
    )
    peak = sgemm_gflops()
    print(f"sgemm 1024^3 yardstick: {peak:.1f} GFLOP/s")
    work = []
    if a.workload in ("se3", "all"):
        b = build_se3_attention(int(2000 * a.scale))
        g = b["graph"]
        print(f"se3_attention: N={len(g['f'])} E={len(g['src'])} ({len(g['src']) / len(g['f']):.1f} neighbours)")
        work.append(("se3_attention", b, se3_calls(b)))
    if a.workload in ("gate", "all"):
        b = build_gate_points(int(256 * a.scale))
        g = b["graph"]
        print(f"gate_points: N={len(g['z'])} E={len(g['src'])} ({len(g['src']) / len(g['z']):.1f} neighbours)")
        work.append(("gate_points", b, gate_calls(b)))
    print(f"{'workload':<28}{'ours ms':>10}{'e3nn ms':>10}{'e3nn/ours':>11}{'ours GF/s':>11}{'e3nn GF/s':>11}")
    for name, b, calls in work:
        diffs = check_same(calls)
        for mode in calls["ours"]:
            med = time_interleaved({lib: calls[lib][mode] for lib in calls}, a.min_calls, a.max_calls, clock)
            flops = 2 * b["macs"] * (1 if mode.endswith("fwd") else 3)
            gf_ours, gf_e3nn = flops / med["ours"] / 1e9, flops / med["e3nn"] / 1e9
            print(
                f"{name + '_' + mode:<28}{med['ours'] * 1e3:>10.2f}{med['e3nn'] * 1e3:>10.2f}"
                f"{med['e3nn'] / med['ours']:>10.2f}x{gf_ours:>11.2f}{gf_e3nn:>11.2f}"
                f"   (same function: max rel. diff {diffs[mode]:.1e})"
            )
            sys.stdout.flush()
        print(f"  {name}: useful multiply-adds per forward {b['macs'] / 1e6:.1f} M (backward modes counted as 3x)")


if __name__ == "__main__":
    main()
