"""Extended XYZ (and anything else ASE reads) to :class:`~euclidnet.graph.data.AtomicGraph`.

Labels are looked up by the key the config names, first in ``atoms.info`` (per frame) or
``atoms.arrays`` (per atom), then in the results of an attached ASE calculator: ASE moves ``energy``,
``forces``, ``stress``, ... of an extxyz file into a ``SinglePointCalculator`` on reading, so both places
must be searched. Stress may be given as 6 Voigt numbers (xx yy zz yz xz xy) or as 9 (a 3x3 matrix); a
virial (``-dE/d strain``, eV) is converted to stress with ``stress = -virial / volume``.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..graph.data import AtomicGraph

__all__ = ["LabelSpec", "SpeciesMap", "read_atoms", "atoms_to_graph", "label_specs_from_config", "MissingLabelError"]


class MissingLabelError(KeyError):
    """A frame lacks a label the config declares."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class LabelSpec:
    """How to read one label: the name used by the model/loss, the key in the file, shape information."""

    name: str
    key: str
    dim: int  # values per frame or per atom
    per_atom: bool
    kind: str = "generic"  # "energy", "forces", "stress", "virial" or "generic"


class SpeciesMap:
    """Chemical symbols <-> type indices ``0 .. num_types - 1``."""

    def __init__(self, symbols: Sequence[str]) -> None:
        from ase.data import atomic_numbers

        symbols = list(symbols)
        if not symbols:
            raise ValueError("a species map needs at least one chemical symbol")
        for s in symbols:
            if s not in atomic_numbers:
                raise ValueError(f"species: {s!r} is not a chemical symbol")
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"species: duplicate symbols in {symbols}")
        self.symbols = symbols
        self._index = {s: i for i, s in enumerate(symbols)}

    @classmethod
    def infer(cls, frames: Sequence[Any]) -> SpeciesMap:
        """All symbols occurring in ``frames`` (ASE Atoms), ordered by atomic number."""
        from ase.data import atomic_numbers

        seen: set[str] = set()
        for atoms in frames:
            seen.update(atoms.get_chemical_symbols())
        return cls(sorted(seen, key=lambda s: atomic_numbers[s]))

    def __len__(self) -> int:
        return len(self.symbols)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpeciesMap) and other.symbols == self.symbols

    def __repr__(self) -> str:
        return f"SpeciesMap({self.symbols})"

    def types(self, symbols: Sequence[str], frame: int | None = None) -> torch.Tensor:
        """int64 type indices of ``symbols``; an unknown symbol is an error naming it (and the frame)."""
        out = []
        for s in symbols:
            if s not in self._index:
                where = f"frame {frame}: " if frame is not None else ""
                raise ValueError(f"{where}species {s!r} is not in the species map {self.symbols}")
            out.append(self._index[s])
        return torch.tensor(out, dtype=torch.long)


def label_specs_from_config(data_cfg: Any) -> list[LabelSpec]:
    """The :class:`LabelSpec` s a :class:`~euclidnet.data.config.DataConfig` declares."""
    from ..o3 import Irreps

    specs = []
    if data_cfg.energy_key is not None:
        specs.append(LabelSpec("energy", data_cfg.energy_key, 1, False, "energy"))
    if data_cfg.forces_key is not None:
        specs.append(LabelSpec("forces", data_cfg.forces_key, 3, True, "forces"))
    if data_cfg.stress_key is not None:
        specs.append(LabelSpec("stress", data_cfg.stress_key, 9, False, "stress"))
    elif data_cfg.virial_key is not None:
        specs.append(LabelSpec("stress", data_cfg.virial_key, 9, False, "virial"))
    for name, lab in data_cfg.labels.items():
        specs.append(LabelSpec(name, lab.key, Irreps(lab.irreps).dim, lab.per_atom, "generic"))
    return specs


def read_atoms(path: str | Path, index: str = ":") -> list[Any]:
    """All frames of ``path`` as ASE ``Atoms`` (gzip/bz2/xz compressed files work; format from the name)."""
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    name = path.name
    opener = None
    for ext, module in ((".gz", "gzip"), (".bz2", "bz2"), (".xz", "lzma")):
        if name.endswith(ext):
            name = name[: -len(ext)]
            opener = importlib.import_module(module).open
    fmt = "extxyz" if name.endswith((".xyz", ".extxyz")) else None
    if opener is not None and fmt is not None:
        # ASE's extxyz reader seeks back to the start of every frame; on a compressed stream each backward seek
        # decompresses the file again from its start (the shipped 1080-frame dataset: ~20 s instead of ~1 s).
        # The text is decompressed once into memory instead (the frames it becomes are larger still).
        with opener(path, "rt") as f:
            text = io.StringIO(f.read())
        frames = read(text, index=index, format=fmt)
    else:
        frames = read(str(path), index=index, format=fmt)
    return frames if isinstance(frames, list) else [frames]


def _lookup(atoms: Any, key: str, per_atom: bool) -> Any:
    source = atoms.arrays if per_atom else atoms.info
    if key in source:
        return source[key]
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", None) or {}
    if key in results:
        return results[key]
    if key == "energy" and "free_energy" in results:
        return results["free_energy"]
    # A per-frame value stored per atom or vice versa is reported as missing with a hint below.
    return None


def _stress_matrix(value: np.ndarray, frame: int, key: str) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.size == 9:
        return v.reshape(3, 3)
    if v.size == 6:
        xx, yy, zz, yz, xz, xy = v
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    raise ValueError(f"frame {frame}: {key!r} has {v.size} values; expected 6 (Voigt) or 9 (3x3)")


def atoms_to_graph(
    atoms: Any,
    species: SpeciesMap,
    specs: Sequence[LabelSpec] = (),
    frame: int = 0,
    dtype: torch.dtype = torch.float64,
) -> AtomicGraph:
    """One ASE ``Atoms`` as a single-graph :class:`AtomicGraph` with the labels of ``specs``.

    Labels are stored as ``energy`` ``[1]``, ``forces`` ``[N, 3]``, ``stress`` ``[1, 3, 3]`` and generic
    labels ``[1, dim]`` (per frame) or ``[N, dim]`` (per atom). A missing label raises
    :class:`MissingLabelError` naming ``frame`` and the key.
    """
    n = len(atoms)
    pos = torch.tensor(np.asarray(atoms.get_positions()), dtype=dtype)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = None
    if pbc.any():
        cellm = np.asarray(atoms.cell[:], dtype=np.float64)
        if abs(np.linalg.det(cellm)) < 1e-12:
            raise ValueError(f"frame {frame}: periodic (pbc={pbc.tolist()}) but the cell is singular: {cellm.tolist()}")
        cell = torch.tensor(cellm, dtype=dtype)[None]
    labels: dict[str, torch.Tensor] = {}
    for spec in specs:
        value = _lookup(atoms, spec.key, spec.per_atom)
        if value is None:
            other = _lookup(atoms, spec.key, not spec.per_atom)
            hint = ""
            if other is not None:
                hint = f" (found it as a per-{'frame' if spec.per_atom else 'atom'} value: check per_atom)"
            raise MissingLabelError(f"frame {frame}: missing label {spec.name!r} (key {spec.key!r} in the file){hint}")
        if spec.kind == "energy":
            arr = np.asarray(value, dtype=np.float64).reshape(-1)
            if arr.size != 1:
                raise ValueError(f"frame {frame}: energy key {spec.key!r} has {arr.size} values, expected 1")
            labels["energy"] = torch.tensor(arr, dtype=dtype)
        elif spec.kind in ("stress", "virial"):
            mat = _stress_matrix(value, frame, spec.key)
            if spec.kind == "virial":
                if cell is None:
                    raise ValueError(f"frame {frame}: a virial ({spec.key!r}) needs a periodic cell to give stress")
                mat = -mat / abs(np.linalg.det(np.asarray(atoms.cell[:])))
            labels["stress"] = torch.tensor(mat, dtype=dtype)[None]
        else:
            arr = np.asarray(value, dtype=np.float64)
            rows = n if spec.per_atom else 1
            if arr.size != rows * spec.dim:
                raise ValueError(
                    f"frame {frame}: label {spec.name!r} (key {spec.key!r}) has {arr.size} values; expected "
                    f"{rows} x {spec.dim} ({'per atom' if spec.per_atom else 'per frame'}, dim of its irreps)"
                )
            labels[spec.name] = torch.tensor(arr.reshape(rows, spec.dim), dtype=dtype)
        if not bool(torch.isfinite(labels[spec.name]).all()):
            raise ValueError(f"frame {frame}: label {spec.name!r} (key {spec.key!r}) has non-finite values")
    return AtomicGraph(
        pos=pos,
        atom_types=species.types(atoms.get_chemical_symbols(), frame=frame),
        cell=cell,
        pbc=torch.tensor(pbc)[None] if cell is not None else None,
        labels=labels,
    )
