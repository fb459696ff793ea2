"""Normalisation for any model: ``E_total = scale * E_model + sum_i E_ref[species_i]``.

:class:`ScaledPotential` wraps a model that follows the euclidnet model interface (``r_max``,
``irreps_out``, ``forward(graph, compute_forces, compute_stress) -> dict``). The model then learns numbers
of order one; forces, stress and virial are multiplied by ``scale`` (the reference energies do not depend
on positions), other outputs are passed through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..graph.data import AtomicGraph
from ..graph.scatter import scatter_sum

__all__ = ["ScaledPotential"]

_SCALED = ("forces", "stress", "virial")


class ScaledPotential(torch.nn.Module):
    """A model plus per-species reference energies and an energy scale (both stored as buffers)."""

    def __init__(self, model: torch.nn.Module, species_energies: Sequence[float] | Tensor, scale: float = 1.0) -> None:
        super().__init__()
        if not hasattr(model, "r_max"):
            raise TypeError(f"{type(model).__name__} has no r_max: it does not follow the euclidnet model interface")
        if not float(scale) > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.model = model
        ref = torch.as_tensor(species_energies, dtype=torch.float64).reshape(-1)
        self.register_buffer("species_energies", ref.clone())
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float64))

    @property
    def r_max(self) -> float:
        return float(self.model.r_max)

    @property
    def irreps_out(self) -> dict[str, str]:
        return dict(self.model.irreps_out)

    def forward(
        self, graph: AtomicGraph, compute_forces: bool = False, compute_stress: bool = False
    ) -> dict[str, Tensor]:
        if graph.atom_types is None:
            raise ValueError("ScaledPotential needs atom_types on the graph")
        if graph.num_nodes and int(graph.atom_types.max()) >= self.species_energies.numel():
            raise ValueError(
                f"atom type {int(graph.atom_types.max())} is out of range for {self.species_energies.numel()} species"
            )
        out = dict(self.model(graph, compute_forces=compute_forces, compute_stress=compute_stress))
        if "energy" not in out:
            raise KeyError(f"{type(self.model).__name__} returned no 'energy' (outputs: {sorted(out)})")
        scale = self.scale.to(out["energy"].dtype)
        ref = scatter_sum(
            self.species_energies.to(out["energy"].dtype)[graph.atom_types], graph.batch, dim_size=graph.num_graphs
        )
        out["energy"] = scale * out["energy"] + ref
        for k in _SCALED:
            if k in out:
                out[k] = scale * out[k]
        return out
