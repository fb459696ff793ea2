"""A small test-only potential that follows the euclidnet model interface (registered as "test_pair").

Embedded-atom-like: ``E = sum_i [ 1/2 sum_j phi_{s_i s_j}(r_ij) + sum_k c_{s_i k} sqrt(1 + rho_ik) ]`` with
``rho_ik = sum_j exp(-gamma (r_ij - mu_k)^2) fcut(r_ij)`` and learnable per-species(-pair) weights: smooth
(cosine cutoff), invariant under rotations, translations and permutations. With ``charges=True`` it also
predicts a per-atom scalar ``charges`` [N, 1] (a linear function of the densities). This file holds no
tests; other test files and ``torchrun`` workers load it as a plugin (``plugins: [this file]``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from euclidnet.graph.data import AtomicGraph
from euclidnet.graph.scatter import scatter_sum
from euclidnet.models import available_models, energy_forces_stress, register_model

SUPPORT_FILE = __file__


class PairEAM(torch.nn.Module):
    """See the module docstring."""

    def __init__(self, num_types: int = 1, r_max: float = 4.5, num_basis: int = 8, charges: bool = False) -> None:
        super().__init__()
        self.r_max = float(r_max)
        self.num_types = num_types
        g = torch.Generator().manual_seed(1234)
        self.register_buffer("mu", torch.linspace(1.5, r_max, num_basis))
        self.gamma = (num_basis / (r_max - 1.5)) ** 2
        self.pair_w = torch.nn.Parameter(0.1 * torch.randn(num_types, num_types, num_basis, generator=g))
        self.emb_w = torch.nn.Parameter(0.1 * torch.randn(num_types, num_basis, generator=g))
        self.charges = charges
        if charges:
            self.charge_w = torch.nn.Parameter(0.1 * torch.randn(num_types, num_basis, generator=g))
        self.irreps_out = {"energy": "0e", "forces": "1o", "stress": "0e + 2e"}
        if charges:
            self.irreps_out["charges"] = "0e"

    def _basis(self, graph: AtomicGraph, pos: Tensor, cell: Tensor | None) -> Tensor:
        r = graph.edge_vectors(pos, cell).norm(dim=-1)
        fcut = 0.5 * (torch.cos(math.pi * r / self.r_max) + 1.0) * (r < self.r_max)
        return torch.exp(-self.gamma * (r[:, None] - self.mu) ** 2) * fcut[:, None]  # [E, K]

    def _energy(self, graph: AtomicGraph, pos: Tensor, cell: Tensor | None) -> Tensor:
        basis = self._basis(graph, pos, cell)
        src, dst = graph.edge_index
        t = graph.atom_types
        w = self.pair_w + self.pair_w.transpose(0, 1)  # symmetric in the species pair
        pair = 0.5 * (basis * w[t[dst], t[src]]).sum(-1)
        rho = scatter_sum(basis, dst, dim_size=graph.num_nodes)  # [N, K]
        embed = (self.emb_w[t] * torch.sqrt(1.0 + rho)).sum(-1)
        atom = scatter_sum(pair, dst, dim_size=graph.num_nodes) + embed
        return scatter_sum(atom, graph.batch, dim_size=graph.num_graphs)

    def forward(self, graph: AtomicGraph, compute_forces: bool = False, compute_stress: bool = False) -> dict:
        if graph.edge_index is None or graph.edge_r_max != self.r_max:
            graph = graph.with_edges(self.r_max)
        out = energy_forces_stress(self._energy, graph, compute_forces, compute_stress)
        if self.charges:
            rho = scatter_sum(self._basis(graph, graph.pos, graph.cell), graph.edge_index[1], dim_size=graph.num_nodes)
            out["charges"] = (self.charge_w[graph.atom_types] * rho).sum(-1, keepdim=True)
        return out


if "test_pair" not in available_models():
    register_model("test_pair")(PairEAM)


def make_frames(n: int = 12, seed: int = 0, charges: bool = False) -> list:
    """``n`` rattled 8-atom Cu/Au fcc cells (some strained) labelled with ASE's EMT under REF_* keys."""
    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.65, cubic=True).repeat((2, 1, 1))
        symbols = ["Au" if rng.random() < 0.25 else "Cu" for _ in range(len(atoms))]
        atoms.set_chemical_symbols(symbols)
        eps = rng.uniform(-0.03, 0.03, (3, 3))
        atoms.set_cell(atoms.cell @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
        atoms.calc = EMT()
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.info["REF_stress"] = atoms.get_stress(voigt=False).reshape(9)
        atoms.arrays["REF_forces"] = atoms.get_forces()
        if charges:
            # A smooth per-atom target: minus the EMT energy per atom, known per atom.
            atoms.arrays["REF_charges"] = -atoms.get_potential_energies()[:, None]
        atoms.info["group"] = i // 3
        atoms.calc = None
        frames.append(atoms)
    return frames


def tiny_config(tmp_path, data_file, **training) -> dict:
    """A config dict training "test_pair" on ``data_file``."""
    cfg = {
        "seed": 3,
        "run_dir": str(tmp_path / "run"),
        "dtype": "float64",
        "plugins": [SUPPORT_FILE],
        "data": {
            "train": str(data_file),
            "energy_key": "REF_energy",
            "forces_key": "REF_forces",
            "stress_key": "REF_stress",
            "split": {"valid_fraction": 0.2, "test_fraction": 0.0, "seed": 1},
        },
        "model": {"name": "test_pair", "kwargs": {"r_max": 4.0, "num_basis": 6}},
        "training": {
            "batch_size": 4,
            "max_epochs": 3,
            "lr": 0.02,
            "ema_decay": 0.9,
            "loss_weights": {"energy": 1.0, "forces": 10.0, "stress": 1.0},
            "log_every_steps": 1000,
        },
    }
    cfg["training"].update(training)
    return cfg
