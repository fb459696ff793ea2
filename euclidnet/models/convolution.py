"""Building blocks shared by the equivariant message-passing models.

* :class:`EdgeEmbedding`: spherical harmonics of the edge direction and a radial basis of its length that
  vanishes smoothly at ``r_max`` (so messages switch off continuously as a neighbour leaves the cutoff).
* :class:`InteractionBlock`: NequIP's convolution — linear, channel-wise tensor product of neighbour
  features with the edge harmonics weighted by a radial MLP, sum over neighbours, linear, self-connection,
  gate — with a residual update when the irreps allow it.
* :func:`gate_irreps`: split target irreps into what a :class:`~euclidnet.nn.Gate` needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..nn import BesselBasis, FullyConnectedNet, Gate, PolynomialCutoff
from ..o3 import Irreps, Linear, spherical_harmonics
from ..tp import ChannelwiseTensorProduct, FullyConnectedTensorProduct

__all__ = ["EdgeEmbedding", "InteractionBlock", "gate_irreps"]


class EdgeEmbedding(torch.nn.Module):
    """Edge attributes from edge vectors ``[E, 3]``.

    Returns ``(sh [E, irreps_sh.dim], radial [E, num_basis], length [E])`` where ``radial`` is the Bessel
    basis of NequIP times the polynomial envelope: ``sqrt(2 / r_max) sin(n pi r / r_max) / r * u(r / r_max)``.
    It is finite at ``r = 0`` and vanishes with its first ``p`` derivatives continuous at ``r = r_max``.
    """

    def __init__(self, r_max: float, lmax: int, num_basis: int = 8, cutoff_p: int = 6, trainable_basis: bool = False):
        super().__init__()
        if not r_max > 0:
            raise ValueError(f"r_max must be > 0, got {r_max}")
        self.r_max = float(r_max)
        self.irreps_sh = Irreps.spherical_harmonics(lmax)
        self.num_basis = num_basis
        self.basis = BesselBasis(r_max, num_basis=num_basis, trainable=trainable_basis)
        self.cutoff = PolynomialCutoff(r_max, p=cutoff_p)

    def forward(self, edge_vec: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        length = edge_vec.norm(dim=-1)
        sh = spherical_harmonics(self.irreps_sh, edge_vec, normalize=True, normalization="component")
        radial = self.basis(length) * self.cutoff(length)[:, None]
        return sh, radial, length


def gate_irreps(
    irreps_target: Irreps, irreps_reachable: Irreps
) -> tuple[Irreps, Irreps, Irreps]:
    """``(scalars, gates, gated)`` for a Gate whose output is ``irreps_target`` restricted to irreps that the
    previous layer can produce (``irreps_reachable``). One ``0e`` gate per gated irrep."""
    reachable = {ir for _, ir in irreps_reachable}
    scalars = Irreps([(mul, ir) for mul, ir in irreps_target if ir.l == 0 and ir in reachable])
    gated = Irreps([(mul, ir) for mul, ir in irreps_target if ir.l > 0 and ir in reachable])
    gates = Irreps([(gated.num_irreps, "0e")]) if gated.num_irreps > 0 else Irreps("")
    return scalars, gates, gated


def _scalar_acts(irreps: Irreps, even: Callable, odd: Callable) -> list[Callable]:
    return [even if ir.p == 1 else odd for _, ir in irreps]


class InteractionBlock(torch.nn.Module):
    """One NequIP interaction block.

    ``x [N, irreps_in]``, ``node_attrs [N, irreps_attr]`` (one-hot species, ``Kx0e``), edge harmonics and
    radial embedding -> ``[N, irreps_out]`` where ``irreps_out`` is ``irreps_target`` restricted to what the
    convolution can reach, after the gate. Equations::

        h = Linear_1(x)
        m_i = 1/sqrt(avg_neighbors) sum_j TP_uvu(h_j, Y(r_ij); w = MLP(radial(r_ij)))
        y = Linear_2(m) + SelfConnection(x, node_attrs)          (fully connected TP with the species)
        out = Gate(y)  (+ x if irreps_in == irreps_out)
    """

    def __init__(
        self,
        irreps_in: Irreps | str,
        irreps_attr: Irreps | str,
        irreps_sh: Irreps | str,
        irreps_target: Irreps | str,
        num_basis: int,
        radial_hidden: tuple[int, ...] = (64,),
        avg_num_neighbors: float = 10.0,
        resnet: bool = True,
        act: Callable = torch.nn.functional.silu,
        act_odd: Callable = torch.tanh,
        act_gate: Callable = torch.sigmoid,
    ) -> None:
        super().__init__()
        self.irreps_in = Irreps(irreps_in)
        self.irreps_attr = Irreps(irreps_attr)
        self.irreps_sh = Irreps(irreps_sh)
        irreps_target = Irreps(irreps_target)
        self.avg_num_neighbors = float(avg_num_neighbors)

        self.linear_1 = Linear(self.irreps_in, self.irreps_in)
        self.tp = ChannelwiseTensorProduct(self.irreps_in, self.irreps_sh, None, shared_weights=False)
        self.radial = FullyConnectedNet([num_basis, *radial_hidden, self.tp.weight_numel], torch.nn.functional.silu)
        scalars, gates, gated = gate_irreps(irreps_target, self.tp.irreps_out)
        self.gate = Gate(
            scalars,
            _scalar_acts(scalars, act, act_odd),
            gates,
            [act_gate] * len(gates),
            gated,
        )
        irreps_pre_gate = self.gate.irreps_in
        self.linear_2 = Linear(self.tp.irreps_out, irreps_pre_gate)
        self.self_connection = FullyConnectedTensorProduct(self.irreps_in, self.irreps_attr, irreps_pre_gate)
        self.irreps_out = self.gate.irreps_out
        self.resnet = resnet and self.irreps_out == self.irreps_in

    def forward(
        self, x: Tensor, node_attrs: Tensor, edge_index: Tensor, edge_sh: Tensor, edge_radial: Tensor
    ) -> Tensor:
        src, dst = edge_index[0], edge_index[1]
        h = self.linear_1(x)
        weights = self.radial(edge_radial)
        # sum over neighbours of TP(h[src], Y, w): one fused pass, no per-edge messages in memory
        m = self.tp.scatter(h, edge_sh, src, dst, x.shape[0], weights) / math.sqrt(self.avg_num_neighbors)
        y = self.linear_2(m) + self.self_connection(x, node_attrs)
        out = self.gate(y)
        return out + x if self.resnet else out


def species_one_hot(atom_types: Tensor, num_types: int, dtype: torch.dtype) -> Tensor:
    """``[N]`` int64 -> ``[N, num_types]`` one-hot (``num_types x 0e``), with a clear error on bad types."""
    if atom_types is None:
        raise ValueError("this model needs atom_types (one integer species index per atom)")
    if atom_types.numel() and (int(atom_types.max()) >= num_types or int(atom_types.min()) < 0):
        raise ValueError(
            f"atom_types must lie in 0..{num_types - 1} (num_types={num_types}), got values "
            f"{int(atom_types.min())}..{int(atom_types.max())}"
        )
    return torch.nn.functional.one_hot(atom_types, num_types).to(dtype)

