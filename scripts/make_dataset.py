"""Generate the shipped Cu/Au EMT dataset (``data/cu_au_emt.extxyz.gz``) from ASE's EMT potential.

Frames (32-atom fcc supercells, 2x2x2 conventional cells, a = 3.61 Å):

* Langevin MD of pure Cu, a random Cu(24)Au(8) alloy and Cu with one vacancy (31 atoms), at
  300, 800 and 1500 K (1 fs steps, 200 fs equilibration, then one frame every 20 fs);
* strained cells: random symmetric strains up to ±4 % plus 0.05 Å rattles, for all three systems.

Each frame stores ``REF_energy`` (eV), ``REF_forces`` (eV/Å) and ``REF_stress`` (eV/Å^3, ASE sign
convention, full 3x3) in ``atoms.info``/``atoms.arrays`` (not as ASE calculator results, so that the
training config has to name the keys, like it would for a file written by another code), plus
``system``, ``config_type``, ``temperature_K`` and ``traj_id`` (a group key: frames of one trajectory
share it, so a split by ``traj_id`` keeps correlated MD frames on one side).

Deterministic given ``--seed``: run ``python scripts/make_dataset.py`` to regenerate the shipped file.
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, thermalize_momenta

LATTICE = 3.61
TEMPERATURES = (300.0, 800.0, 1500.0)


def make_system(kind: str, rng: np.random.Generator) -> Atoms:
    """The 32-atom starting structure of ``kind`` ("Cu", "CuAu" or "Cu_vac")."""
    atoms = bulk("Cu", "fcc", a=LATTICE, cubic=True).repeat((2, 2, 2))
    if kind == "CuAu":
        symbols = atoms.get_chemical_symbols()
        for i in rng.choice(len(atoms), size=8, replace=False):
            symbols[int(i)] = "Au"
        atoms.set_chemical_symbols(symbols)
        # Vegard-like expansion for the Au content.
        atoms.set_cell(atoms.cell * (1 + 0.25 * (4.08 / LATTICE - 1)), scale_atoms=True)
    elif kind == "Cu_vac":
        del atoms[int(rng.integers(len(atoms)))]
    elif kind != "Cu":
        raise ValueError(f"unknown system {kind!r}; allowed: Cu, CuAu, Cu_vac")
    return atoms


def labelled(atoms: Atoms, **info: object) -> Atoms:
    """A copy of ``atoms`` with EMT energy/forces/stress stored under REF_* keys."""
    calc = EMT()
    atoms = atoms.copy()
    atoms.calc = calc
    energy = float(atoms.get_potential_energy())
    forces = atoms.get_forces().copy()
    stress = atoms.get_stress(voigt=False).copy()
    out = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(), cell=atoms.cell, pbc=atoms.pbc)
    out.info.update(info)
    out.info["REF_energy"] = energy
    out.info["REF_stress"] = stress.reshape(9)
    out.arrays["REF_forces"] = forces
    return out


def md_frames(
    kind: str, temperature: float, n_frames: int, traj_id: int, rng: np.random.Generator
) -> list[Atoms]:
    """``n_frames`` Langevin-MD snapshots of ``kind`` at ``temperature`` (K)."""
    atoms = make_system(kind, rng)
    atoms.calc = EMT()
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    dyn = Langevin(atoms, 1.0 * units.fs, temperature_K=temperature, friction=0.02, fixcm=False, rng=rng)
    dyn.run(200)
    frames = []
    for _ in range(n_frames):
        dyn.run(20)
        frames.append(
            labelled(atoms, system=kind, config_type="md", temperature_K=temperature, traj_id=traj_id)
        )
    return frames


def strained_frames(kind: str, n_frames: int, traj_id: int, rng: np.random.Generator) -> list[Atoms]:
    """``n_frames`` randomly strained and rattled copies of ``kind``."""
    frames = []
    for _ in range(n_frames):
        atoms = make_system(kind, rng)
        eps = rng.uniform(-0.04, 0.04, size=(3, 3))
        eps = 0.5 * (eps + eps.T)
        atoms.set_cell(atoms.cell @ (np.eye(3) + eps), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.05, size=atoms.positions.shape)
        frames.append(labelled(atoms, system=kind, config_type="strain", temperature_K=0.0, traj_id=traj_id))
    return frames


def generate(seed: int, frames_per_traj: int, strained_per_system: int) -> list[Atoms]:
    """All frames, in a fixed order, from one seeded generator."""
    rng = np.random.default_rng(seed)
    frames: list[Atoms] = []
    traj_id = 0
    for kind in ("Cu", "CuAu", "Cu_vac"):
        for temperature in TEMPERATURES:
            frames += md_frames(kind, temperature, frames_per_traj, traj_id, rng)
            traj_id += 1
        frames += strained_frames(kind, strained_per_system, traj_id, rng)
        traj_id += 1
    return frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/cu_au_emt.extxyz.gz", help="output file (.gz is gzipped)")
    parser.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
    parser.add_argument("--frames-per-traj", type=int, default=100, help="MD frames per (system, T) trajectory")
    parser.add_argument("--strained-per-system", type=int, default=60, help="strained frames per system")
    args = parser.parse_args(argv)
    frames = generate(args.seed, args.frames_per_traj, args.strained_per_system)
    buf = io.StringIO()
    write(buf, frames, format="extxyz")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = buf.getvalue().encode()
    if out.suffix == ".gz":
        # mtime=0 and no file name in the header: the same seed gives a byte-identical file.
        with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
            f.write(data)
    else:
        out.write_bytes(data)
    print(f"wrote {len(frames)} frames to {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
