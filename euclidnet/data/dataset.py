"""Datasets of atomic structures: precomputed neighbour lists, splits, statistics and batching.

* :class:`AtomicDataset` holds one :class:`~euclidnet.graph.data.AtomicGraph` per structure, with its
  radius graph precomputed for the model's ``r_max`` (and optionally cached on disk, keyed by a hash of
  the file contents, ``r_max``, the label keys, the species map and the dtype).
* :func:`split_indices` splits at random with a seed, or by a group key (whole groups go to one side).
* :func:`compute_statistics` fits per-species reference energies by least squares and measures the
  force RMS (used by :class:`euclidnet.train.scaling.ScaledPotential`).
* :func:`make_loader` batches graphs of different sizes with :func:`~euclidnet.graph.data.collate`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..graph.data import AtomicGraph, collate
from .extxyz import LabelSpec, SpeciesMap, atoms_to_graph, read_atoms

__all__ = ["AtomicDataset", "DatasetStatistics", "split_indices", "compute_statistics", "make_loader"]

_CACHE_VERSION = 1


class AtomicDataset(Dataset):
    """A list of single-structure graphs (with edges once :meth:`with_edges` ran) plus per-frame group ids."""

    def __init__(self, graphs: Sequence[AtomicGraph], groups: Sequence[Any] | None = None) -> None:
        self.graphs = list(graphs)
        if groups is not None and len(groups) != len(self.graphs):
            raise ValueError(f"groups has {len(groups)} entries for {len(self.graphs)} graphs")
        self.groups = list(groups) if groups is not None else None

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int) -> AtomicGraph:
        return self.graphs[i]

    @classmethod
    def from_atoms(
        cls,
        frames: Sequence[Any],
        species: SpeciesMap,
        specs: Sequence[LabelSpec] = (),
        dtype: torch.dtype = torch.float64,
        group_key: str | None = None,
        first_frame: int = 0,
    ) -> AtomicDataset:
        """Convert ASE frames; ``group_key`` (in ``atoms.info``) gives each frame's group for splitting."""
        graphs = [atoms_to_graph(a, species, specs, frame=first_frame + i, dtype=dtype) for i, a in enumerate(frames)]
        groups = None
        if group_key is not None:
            groups = []
            for i, a in enumerate(frames):
                if group_key not in a.info:
                    raise KeyError(f"frame {first_frame + i}: split group key {group_key!r} is not in atoms.info")
                g = a.info[group_key]
                groups.append(g.item() if isinstance(g, np.generic) else g)
        return cls(graphs, groups)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        species: SpeciesMap | None,
        specs: Sequence[LabelSpec] = (),
        dtype: torch.dtype = torch.float64,
        group_key: str | None = None,
        r_max: float | None = None,
        cache_dir: str | Path | None = None,
    ) -> tuple[AtomicDataset, SpeciesMap]:
        """Read a file (species inferred from it when ``species`` is None); with ``r_max`` the neighbour
        lists are computed, and with ``cache_dir`` too, loaded from / stored in an on-disk cache."""
        path = Path(path)
        cache_file = None
        if cache_dir is not None and r_max is not None and species is not None:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            h.update(repr((_CACHE_VERSION, float(r_max), list(specs), species.symbols, str(dtype), group_key)).encode())
            cache_file = Path(cache_dir) / f"{path.name}.{h.hexdigest()[:20]}.pt"
            if cache_file.is_file():
                try:
                    return cls._load_cache(cache_file), species
                except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
                    pass
        frames = read_atoms(path)
        if species is None:
            species = SpeciesMap.infer(frames)
        ds = cls.from_atoms(frames, species, specs, dtype=dtype, group_key=group_key)
        if r_max is not None:
            ds = ds.with_edges(r_max)
        if cache_file is not None:
            ds._save_cache(cache_file)
        return ds, species

    def with_edges(self, r_max: float) -> AtomicDataset:
        """The same dataset with every graph's radius graph computed for ``r_max`` (kept when already so)."""
        return AtomicDataset([g.with_edges(r_max) for g in self.graphs], self.groups)

    def subset(self, indices: Sequence[int]) -> AtomicDataset:
        """The graphs at ``indices`` (in that order)."""
        return AtomicDataset(
            [self.graphs[i] for i in indices], None if self.groups is None else [self.groups[i] for i in indices]
        )

    def to(self, dtype: torch.dtype) -> AtomicDataset:
        """Cast the floating tensors (positions, cells, labels) to ``dtype``."""
        return AtomicDataset([g.to(dtype) for g in self.graphs], self.groups)

    @property
    def num_atoms(self) -> list[int]:
        return [g.num_nodes for g in self.graphs]

    # -- on-disk cache ---------------------------------------------------------------------------------

    def _save_cache(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": _CACHE_VERSION,
            "graphs": [
                {f.name: getattr(g, f.name) for f in dataclasses.fields(g) if getattr(g, f.name) is not None}
                for g in self.graphs
            ],
            "groups": self.groups,
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def _load_cache(cls, path: Path) -> AtomicDataset:
        payload = torch.load(path, weights_only=True)
        if payload.get("version") != _CACHE_VERSION:
            raise ValueError(f"{path}: cache version {payload.get('version')} != {_CACHE_VERSION}")
        return cls([AtomicGraph(**d) for d in payload["graphs"]], payload["groups"])


def split_indices(
    n: int,
    valid_fraction: float,
    test_fraction: float,
    seed: int,
    groups: Sequence[Any] | None = None,
) -> tuple[list[int], list[int], list[int]]:
    """Train / valid / test indices of ``n`` frames.

    Without ``groups`` the frames are shuffled with ``seed`` and cut by the fractions. With ``groups``
    the distinct groups are shuffled and whole groups are given to test, then valid, until each holds at
    least its fraction of frames (each non-zero fraction gets at least one group); train keeps the rest.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        perm = rng.permutation(n).tolist()
        n_test = int(round(test_fraction * n))
        n_valid = int(round(valid_fraction * n))
        if n - n_test - n_valid < 1:
            raise ValueError(f"split leaves no training frames (n={n}, valid={n_valid}, test={n_test})")
        return perm[n_test + n_valid :], perm[n_test : n_test + n_valid], perm[:n_test]
    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} entries for {n} frames")
    members: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    keys = sorted(members, key=repr)
    order = [keys[i] for i in rng.permutation(len(keys))]
    out: list[list[int]] = [[], []]
    k = 0
    for side, frac in enumerate((test_fraction, valid_fraction)):
        target = frac * n
        while frac > 0 and k < len(order) and (len(out[side]) < target or not out[side]):
            out[side].extend(members[order[k]])
            k += 1
    train = [i for key in order[k:] for i in members[key]]
    if not train:
        raise ValueError(f"group split leaves no training groups ({len(keys)} groups in total)")
    return sorted(train), sorted(out[1]), sorted(out[0])


@dataclasses.dataclass
class DatasetStatistics:
    """Per-species reference energies (eV), the energy/force scale and RMS of every label."""

    species_energies: list[float]
    scale: float
    label_rms: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetStatistics:
        return cls(list(d["species_energies"]), float(d["scale"]), dict(d["label_rms"]))


def compute_statistics(dataset: AtomicDataset, num_types: int) -> DatasetStatistics:
    """Least-squares per-species energies ``E ~ sum_s n_s E_s`` and the scale.

    The scale is the force RMS when forces are labelled, else the RMS of the per-atom energy residual
    (after subtracting the reference energies), else 1. ``label_rms`` holds the RMS of every label after
    that subtraction for energies (per atom) and as is for the others; the training loss divides each
    label's error by it so that loss weights compare dimensionless numbers.
    """
    if len(dataset) == 0:
        raise ValueError("cannot compute statistics of an empty dataset")
    counts = np.zeros((len(dataset), num_types))
    for i, g in enumerate(dataset.graphs):
        counts[i] = np.bincount(g.atom_types.numpy(), minlength=num_types)[:num_types]
    natoms = counts.sum(1)
    stats: dict[str, float] = {}
    species_energies = [0.0] * num_types
    if all("energy" in g.labels for g in dataset.graphs):
        energies = np.array([float(g.labels["energy"][0]) for g in dataset.graphs])
        # Normal equations with exactly rounded sums (counts are integers, so counts.T @ counts is exact):
        # the result does not depend on BLAS threading, which keeps runs with different thread counts (and
        # data-parallel ranks) bit-identical. lstsq on the small S x S system gives the minimum-norm
        # solution when some species always occur in the same proportion.
        gram = counts.T @ counts
        rhs = np.array([math.fsum(counts[:, s] * energies) for s in range(num_types)])
        sol, *_ = np.linalg.lstsq(gram, rhs, rcond=None)
        species_energies = sol.tolist()
        resid = (energies - counts @ sol) / natoms
        stats["energy"] = float(np.sqrt(np.mean(resid**2)))
    for name in dataset.graphs[0].labels:
        if name == "energy" or not all(name in g.labels for g in dataset.graphs):
            continue
        sq = sum(float((g.labels[name].double() ** 2).sum()) for g in dataset.graphs)
        cnt = sum(g.labels[name].numel() for g in dataset.graphs)
        stats[name] = float(np.sqrt(sq / max(cnt, 1)))
    scale = stats.get("forces") or stats.get("energy") or 1.0
    if not np.isfinite(scale) or scale <= 0:
        scale = 1.0
    return DatasetStatistics(species_energies, float(scale), stats)


def make_loader(
    dataset: AtomicDataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    sampler: Any = None,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader yielding collated :class:`AtomicGraph` batches (``sampler`` overrides ``shuffle``)."""
    generator = None
    if shuffle and sampler is None:
        generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=generator,
    )
