"""Molecular dynamics with a trained potential through ASE (behind ``euclidnet md``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_md"]


def run_md(
    checkpoint: str | Path,
    structure: str | Path,
    steps: int = 1000,
    timestep_fs: float = 1.0,
    temperature_K: float = 300.0,
    thermostat: str = "nve",
    friction_per_fs: float = 0.01,
    trajectory: str | Path | None = "md.traj",
    sample_every: int = 10,
    dtype: str = "float64",
    seed: int = 0,
    frame: int = -1,
    log: Any = print,
) -> dict[str, Any]:
    """Run NVE (velocity Verlet) or NVT (Langevin) dynamics of ``structure`` with ``checkpoint``.

    Velocities start from a Maxwell-Boltzmann distribution at ``temperature_K`` (seeded, zero total
    momentum). Every ``sample_every`` steps the total energy is recorded (and the frame written to
    ``trajectory``, an ASE ``.traj`` or ``.extxyz``); the NVE energy drift is the slope of a linear fit of
    the total energy per atom against time, in eV/atom/ps.
    """
    from ase import Atoms, units
    from ase.io import Trajectory, write
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    from ..calculators import EuclidNetCalculator
    from ..data.extxyz import read_atoms

    if thermostat not in ("nve", "langevin"):
        raise ValueError(f"thermostat {thermostat!r} is not allowed (allowed: nve, langevin)")
    if steps < 1 or sample_every < 1:
        raise ValueError(f"steps ({steps}) and sample_every ({sample_every}) must be >= 1")
    frames = read_atoms(structure)
    src = frames[frame]
    # A clean copy: labels of the input file (reference forces, ...) must not travel into the trajectory.
    atoms = Atoms(src.get_chemical_symbols(), positions=src.get_positions(), cell=src.cell, pbc=src.pbc)
    atoms.calc = EuclidNetCalculator(checkpoint=checkpoint, dtype=dtype)
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)
    dt = timestep_fs * units.fs
    if thermostat == "nve":
        dyn = VelocityVerlet(atoms, dt)
    else:
        friction = friction_per_fs / units.fs
        dyn = Langevin(atoms, dt, temperature_K=temperature_K, friction=friction, fixcm=False, rng=rng)
    writer = None
    xyz_frames: list[Any] = []
    if trajectory is not None:
        trajectory = Path(trajectory)
        if trajectory.suffix == ".traj":
            writer = Trajectory(str(trajectory), "w", atoms)
    n = len(atoms)
    times, etot, temps = [], [], []

    def sample() -> None:
        epot = atoms.get_potential_energy()
        ekin = atoms.get_kinetic_energy()
        times.append(dyn.get_time() / (1000 * units.fs))  # ps
        etot.append((epot + ekin) / n)
        temps.append(atoms.get_temperature())
        if writer is not None:
            writer.write()
        elif trajectory is not None:
            xyz_frames.append(atoms.copy())
            xyz_frames[-1].calc = None
        if log is not None and len(times) % max(1, (steps // sample_every) // 10) == 0:
            log(f"t={times[-1]:8.4f} ps  E_tot/atom={etot[-1]: .6f} eV  T={temps[-1]:7.1f} K")

    dyn.attach(sample, interval=sample_every)
    t0 = time.perf_counter()
    dyn.run(steps)
    wall = time.perf_counter() - t0
    if writer is not None:
        writer.close()
    elif trajectory is not None:
        write(str(trajectory), xyz_frames)
    t = np.asarray(times)
    e = np.asarray(etot)
    slope = float(np.polyfit(t, e, 1)[0]) if len(t) > 1 and np.ptp(t) > 0 else float("nan")
    sim_ps = steps * timestep_fs / 1000.0
    return {
        "atoms": n,
        "steps": steps,
        "thermostat": thermostat,
        "simulated_ps": sim_ps,
        "energy_drift_eV_per_atom_per_ps": slope,
        "energy_fluctuation_eV_per_atom": float(np.std(e)) if len(e) else float("nan"),
        "mean_temperature_K": float(np.mean(temps)) if temps else float("nan"),
        "wall_s": wall,
        "ns_per_day": sim_ps / 1000.0 / (wall / 86400.0) if wall > 0 else float("nan"),
        "trajectory": str(trajectory) if trajectory is not None else None,
    }
