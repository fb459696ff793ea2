"""An ASE calculator for trained euclidnet potentials (energy, forces, stress)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from ..data.extxyz import SpeciesMap, atoms_to_graph
from ..train.loading import DTYPES, load_potential

__all__ = ["EuclidNetCalculator"]


class EuclidNetCalculator(Calculator):
    """Energy (eV), forces (eV/Å) and stress (eV/Å^3, Voigt order, ASE sign) from a euclidnet model.

    Give either ``checkpoint`` (a path written by ``euclidnet train``; its species map and reference
    energies come with it) or ``model`` (any module following the model interface) plus ``species``
    (chemical symbols in type-index order). Works for molecules (no cell) and periodic cells; stress is
    only available when all three directions are periodic. ``dtype="float64"`` (default) evaluates the
    model in double precision, ``"float32"`` in single.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        model: torch.nn.Module | None = None,
        species: SpeciesMap | Sequence[str] | None = None,
        dtype: str = "float64",
        device: str = "cpu",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not allowed (allowed: {', '.join(DTYPES)})")
        if (checkpoint is None) == (model is None):
            raise ValueError("give exactly one of checkpoint= or model=")
        self.dtype = DTYPES[dtype]
        self.device = torch.device(device)
        if checkpoint is not None:
            self.model, self.species, _ = load_potential(checkpoint, dtype=self.dtype, device=self.device)
            if species is not None and list(getattr(species, "symbols", species)) != self.species.symbols:
                raise ValueError(f"species {list(species)} differ from the checkpoint's {self.species.symbols}")
        else:
            if species is None:
                raise ValueError("a model object needs species= (chemical symbols in type-index order)")
            self.species = species if isinstance(species, SpeciesMap) else SpeciesMap(species)
            if any(p.dtype != self.dtype for p in model.parameters() if p.is_floating_point()):
                model = copy.deepcopy(model).to(self.dtype)
            self.model = model.to(self.device)
        self.model.eval()
        self.r_max = float(self.model.r_max)

    def calculate(
        self,
        atoms: Any = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        want_stress = "stress" in properties
        if want_stress and not bool(np.all(atoms.pbc)):
            raise PropertyNotImplementedError(f"stress needs a fully periodic cell, got pbc={atoms.pbc.tolist()}")
        graph = atoms_to_graph(atoms, self.species, (), dtype=self.dtype).to(self.device).with_edges(self.r_max)
        out = self.model(graph, compute_forces=True, compute_stress=want_stress)
        energy = float(out["energy"].detach().sum())
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["forces"] = out["forces"].detach().cpu().double().numpy()
        if want_stress:
            s = out["stress"].detach().cpu().double().numpy()[0]
            self.results["stress"] = full_3x3_to_voigt_6_stress(s)
