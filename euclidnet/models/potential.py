"""Energies to forces and stress: the derivative plumbing every interatomic potential shares.

A potential supplies ``energy_fn(graph, pos, cell) -> [B]`` total energies computed from ``pos`` and
``cell`` (which may be strained copies of the graph's own). :func:`energy_forces_stress` then returns

* ``forces = -dE/dpos`` ``[N, 3]``;
* ``stress = (1/V) dE/d(strain)`` ``[B, 3, 3]`` for periodic graphs (ASE's sign convention: positive when
  the system is under tension), via a symmetric strain applied to both positions and cell;
* ``virial = -dE/d(strain)`` ``[B, 3, 3]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..graph.data import AtomicGraph

__all__ = ["energy_forces_stress"]

EnergyFn = Callable[[AtomicGraph, Tensor, "Tensor | None"], Tensor]


def energy_forces_stress(
    energy_fn: EnergyFn,
    graph: AtomicGraph,
    compute_forces: bool = True,
    compute_stress: bool = False,
    create_graph: bool | None = None,
) -> dict[str, Tensor]:
    """Evaluate ``energy_fn`` and, by automatic differentiation, forces and stress.

    ``create_graph`` (default: ``torch.is_grad_enabled()`` at call time) keeps the derivative graph so a
    loss on forces/stress can be back-propagated to the parameters (training).
    """
    if create_graph is None:
        create_graph = torch.is_grad_enabled()
    if compute_stress and graph.cell is None:
        raise ValueError("stress needs a periodic cell: this graph has no cell")
    pos = graph.pos
    cell = graph.cell
    out: dict[str, Tensor] = {}
    with torch.enable_grad():
        inputs: list[Tensor] = []
        if compute_forces:
            pos = pos.detach().requires_grad_(True) if not pos.requires_grad else pos
            inputs.append(pos)
        strain = None
        if compute_stress:
            assert cell is not None
            strain = torch.zeros(graph.num_graphs, 3, 3, dtype=pos.dtype, device=pos.device, requires_grad=True)
            sym = 0.5 * (strain + strain.transpose(-1, -2))
            # x -> x (1 + eps): rows of pos and of the cell are strained with their graph's eps.
            pos = pos + torch.einsum("ni,nij->nj", pos, sym[graph.batch])
            cell = cell + torch.einsum("bki,bij->bkj", cell, sym)
            inputs.append(strain)
        energy = energy_fn(graph, pos, cell)
        if energy.shape != (graph.num_graphs,):
            raise ValueError(f"energy_fn must return [num_graphs={graph.num_graphs}], got {tuple(energy.shape)}")
        out["energy"] = energy
        if inputs:
            grads = torch.autograd.grad(
                energy.sum(), inputs, create_graph=create_graph, allow_unused=True
            )
            grads = [g if g is not None else torch.zeros_like(x) for g, x in zip(grads, inputs)]
            k = 0
            if compute_forces:
                out["forces"] = -grads[0]
                k = 1
            if compute_stress:
                dE_deps = grads[k]
                volume = torch.linalg.det(graph.cell).abs()
                out["virial"] = -dE_deps
                out["stress"] = dE_deps / volume[:, None, None]
    return out
