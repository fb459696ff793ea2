"""One container for a batch of atomic / point-cloud graphs.

:class:`AtomicGraph` holds, for ``B`` graphs with ``N`` nodes in total:

* ``pos`` ``[N, 3]`` float positions;
* ``atom_types`` ``[N]`` int64 species indices (``0 .. num_types - 1``), optional;
* ``node_features`` ``[N, F]`` float features, optional (their irreps are the model's business);
* ``batch`` ``[N]`` int64 graph index of every node (nodes of a graph need not be contiguous);
* ``cell`` ``[B, 3, 3]`` lattice vectors as rows and ``pbc`` ``[B, 3]`` bool, optional;
* ``edge_index`` ``[2, E]`` int64 and ``cell_shifts`` ``[E, 3]`` integer lattice multiples, optional
  (computed on the fly by :meth:`with_edges`);
* ``labels``: any other tensors by name (``energy`` ``[B]``, ``forces`` ``[N, 3]``, ...).

Edge convention (everywhere in euclidnet): ``edge_index[0]`` is the source ``j`` (the neighbour),
``edge_index[1]`` the destination ``i`` (the centre that receives the message), and the edge vector is
``pos[j] - pos[i] + cell_shifts @ cell[batch[i]]`` (:meth:`edge_vectors`), pointing from the centre to
the neighbour.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from .neighbors import radius_graph

__all__ = ["AtomicGraph", "collate"]


@dataclasses.dataclass
class AtomicGraph:
    """A batch of graphs (see the module docstring for shapes and conventions)."""

    pos: Tensor
    atom_types: Tensor | None = None
    node_features: Tensor | None = None
    batch: Tensor | None = None
    num_graphs: int | None = None
    cell: Tensor | None = None
    pbc: Tensor | None = None
    edge_index: Tensor | None = None
    cell_shifts: Tensor | None = None
    labels: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    edge_r_max: float | None = None

    def __post_init__(self) -> None:
        pos = self.pos
        if not isinstance(pos, Tensor):
            raise TypeError(f"pos must be a torch.Tensor, got {type(pos).__name__}")
        if pos.dim() != 2 or pos.shape[1] != 3:
            raise ValueError(f"pos must have shape [N, 3], got {tuple(pos.shape)}")
        if not pos.is_floating_point():
            raise TypeError(f"pos must be float32 or float64, got {pos.dtype}")
        finite = torch.isfinite(pos).all(dim=1)
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0, 0])
            raise ValueError(f"pos has a non-finite coordinate at atom {bad}: {pos[bad].tolist()}")
        n = pos.shape[0]
        if self.batch is None:
            self.batch = torch.zeros(n, dtype=torch.long, device=pos.device)
            if self.num_graphs is None:
                self.num_graphs = 1
        else:
            if self.batch.shape != (n,) or self.batch.dtype not in (torch.int64, torch.int32):
                raise ValueError(
                    f"batch must be an int64 tensor of shape [{n}] (one graph index per atom), "
                    f"got {self.batch.dtype} {tuple(self.batch.shape)}"
                )
            self.batch = self.batch.long()
            needed = int(self.batch.max()) + 1 if n else 0
            if self.num_graphs is None:
                self.num_graphs = needed
            elif self.num_graphs < needed:
                raise ValueError(f"num_graphs={self.num_graphs} but batch refers to graph {needed - 1}")
        if self.atom_types is not None:
            t = self.atom_types
            if t.shape != (n,) or t.dtype not in (torch.int64, torch.int32):
                raise ValueError(
                    f"atom_types must be an integer tensor of shape [{n}], got {t.dtype} {tuple(t.shape)}"
                )
            self.atom_types = t.long()
            if n and int(self.atom_types.min()) < 0:
                raise ValueError(f"atom_types must be >= 0, got {int(self.atom_types.min())}")
        if self.node_features is not None and self.node_features.shape[0] != n:
            raise ValueError(
                f"node_features must have {n} rows (one per atom), got shape {tuple(self.node_features.shape)}"
            )
        if self.cell is not None:
            cell = self.cell
            if cell.shape == (3, 3):
                cell = cell.expand(self.num_graphs, 3, 3)
            if cell.shape != (self.num_graphs, 3, 3):
                raise ValueError(
                    f"cell must have shape [3, 3] or [num_graphs={self.num_graphs}, 3, 3], got {tuple(cell.shape)}"
                )
            self.cell = cell.to(pos.dtype)
            pbc = self.pbc if self.pbc is not None else torch.ones(3, dtype=torch.bool, device=pos.device)
            if pbc.shape == (3,):
                pbc = pbc.expand(self.num_graphs, 3)
            if pbc.shape != (self.num_graphs, 3):
                raise ValueError(f"pbc must have shape [3] or [num_graphs, 3], got {tuple(pbc.shape)}")
            self.pbc = pbc.bool()
        elif self.pbc is not None and bool(torch.as_tensor(self.pbc).any()):
            raise ValueError("pbc is set but no cell was given")
        if self.edge_index is not None:
            ei = self.edge_index
            if ei.dim() != 2 or ei.shape[0] != 2 or ei.dtype != torch.long:
                raise ValueError(f"edge_index must be int64 of shape [2, E], got {ei.dtype} {tuple(ei.shape)}")
            if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
                raise ValueError(f"edge_index refers to nodes outside 0..{n - 1}")
            if self.cell_shifts is None:
                self.cell_shifts = torch.zeros(ei.shape[1], 3, dtype=torch.long, device=pos.device)
            elif self.cell_shifts.shape != (ei.shape[1], 3):
                raise ValueError(
                    f"cell_shifts must have shape [E={ei.shape[1]}, 3], got {tuple(self.cell_shifts.shape)}"
                )

    # -- sizes ---------------------------------------------------------------------------------------------

    @property
    def num_nodes(self) -> int:
        return self.pos.shape[0]

    @property
    def num_edges(self) -> int:
        return 0 if self.edge_index is None else self.edge_index.shape[1]

    # -- edges ---------------------------------------------------------------------------------------------

    def with_edges(self, r_max: float, max_num_neighbors: int | None = None, recompute: bool = False) -> AtomicGraph:
        """This graph with a radius graph of cutoff ``r_max`` (kept if already computed for that cutoff)."""
        if self.edge_index is not None and not recompute and self.edge_r_max == r_max:
            return self
        with torch.no_grad():
            edge_index, shifts = radius_graph(
                self.pos.detach(),
                r_max,
                batch=self.batch,
                cell=None if self.cell is None else self.cell.detach(),
                pbc=self.pbc,
                max_num_neighbors=max_num_neighbors,
            )
        return dataclasses.replace(self, edge_index=edge_index, cell_shifts=shifts, edge_r_max=r_max)

    def edge_vectors(self, pos: Tensor | None = None, cell: Tensor | None = None) -> Tensor:
        """``[E, 3]`` vectors from centre ``i = edge_index[1]`` to neighbour ``j = edge_index[0]``.

        ``pos``/``cell`` override the stored ones (e.g. strained copies that require grad, for stress).
        """
        if self.edge_index is None:
            raise ValueError("this graph has no edges: call with_edges(r_max) first")
        pos = self.pos if pos is None else pos
        cell = self.cell if cell is None else cell
        src, dst = self.edge_index[0], self.edge_index[1]
        vec = pos[src] - pos[dst]
        if cell is not None and self.cell_shifts is not None:
            shifts = self.cell_shifts.to(pos.dtype)
            vec = vec + torch.einsum("ek,ekd->ed", shifts, cell[self.batch[dst]])
        return vec

    # -- conversion ----------------------------------------------------------------------------------------

    def to(self, *args: Any, **kwargs: Any) -> AtomicGraph:
        """Move to a device and/or cast floating tensors to a dtype (integer tensors keep their dtype)."""

        def conv(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            if t.is_floating_point():
                return t.to(*args, **kwargs)
            device = kwargs.get("device", next((a for a in args if isinstance(a, (str, torch.device))), None))
            return t.to(device) if device is not None else t

        return dataclasses.replace(
            self,
            pos=conv(self.pos),
            atom_types=conv(self.atom_types),
            node_features=conv(self.node_features),
            batch=conv(self.batch),
            cell=conv(self.cell),
            pbc=conv(self.pbc),
            edge_index=conv(self.edge_index),
            cell_shifts=conv(self.cell_shifts),
            labels={k: conv(v) for k, v in self.labels.items()},
        )

    @classmethod
    def from_pyg(cls, data: Any) -> AtomicGraph:
        """Build from a PyTorch Geometric ``Data``/``Batch`` (reads ``pos``, ``z`` or ``atom_types``, ``x``,
        ``batch``, ``cell``, ``pbc``, ``edge_index``, ``cell_shifts`` when present; other tensor attributes
        become labels)."""
        get = lambda k: getattr(data, k, None)  # noqa: E731
        known = {"pos", "z", "atom_types", "x", "batch", "cell", "pbc", "edge_index", "cell_shifts", "ptr"}
        labels = {}
        for k in data.keys() if callable(getattr(data, "keys", None)) else []:
            v = data[k]
            if k not in known and isinstance(v, Tensor):
                labels[k] = v
        types = get("atom_types") if get("atom_types") is not None else get("z")
        num_graphs = int(data.num_graphs) if hasattr(data, "num_graphs") else None
        return cls(
            pos=get("pos"),
            atom_types=types,
            node_features=get("x"),
            batch=get("batch"),
            num_graphs=num_graphs,
            cell=get("cell"),
            pbc=get("pbc"),
            edge_index=get("edge_index"),
            cell_shifts=get("cell_shifts"),
            labels=labels,
        )


def collate(graphs: Iterable[AtomicGraph] | Sequence[AtomicGraph]) -> AtomicGraph:
    """Concatenate single- or multi-graph :class:`AtomicGraph` s into one batch.

    Node tensors are concatenated, ``batch`` and ``edge_index`` offset, cells and ``pbc`` stacked (a graph
    without a cell gets a zero cell with ``pbc`` all False when others have one). Labels present in every
    graph are concatenated along dim 0 (per-graph labels such as ``energy`` ``[1]`` become ``[B]``).
    """
    graphs = list(graphs)
    if not graphs:
        raise ValueError("collate needs at least one graph")
    pos = torch.cat([g.pos for g in graphs])
    node_off = 0
    graph_off = 0
    batches, edges, shifts = [], [], []
    for g in graphs:
        batches.append(g.batch + graph_off)
        if g.edge_index is not None:
            edges.append(g.edge_index + node_off)
            shifts.append(g.cell_shifts)
        node_off += g.num_nodes
        graph_off += g.num_graphs
    has_edges = all(g.edge_index is not None for g in graphs)
    r_maxes = {g.edge_r_max for g in graphs}
    any_cell = any(g.cell is not None for g in graphs)
    cell = pbc = None
    if any_cell:
        cell = torch.cat([g.cell if g.cell is not None else pos.new_zeros(g.num_graphs, 3, 3) for g in graphs])
        pbc = torch.cat(
            [g.pbc if g.pbc is not None else torch.zeros(g.num_graphs, 3, dtype=torch.bool) for g in graphs]
        )

    def cat_opt(name: str) -> Tensor | None:
        vals = [getattr(g, name) for g in graphs]
        if all(v is None for v in vals):
            return None
        if any(v is None for v in vals):
            raise ValueError(f"cannot collate: some graphs have {name} and others do not")
        return torch.cat(vals)

    common = set(graphs[0].labels)
    for g in graphs[1:]:
        common &= set(g.labels)
    labels = {k: torch.cat([g.labels[k] for g in graphs]) for k in sorted(common)}
    return AtomicGraph(
        pos=pos,
        atom_types=cat_opt("atom_types"),
        node_features=cat_opt("node_features"),
        batch=torch.cat(batches),
        num_graphs=graph_off,
        cell=cell,
        pbc=pbc,
        edge_index=torch.cat(edges, dim=1) if has_edges else None,
        cell_shifts=torch.cat(shifts) if has_edges else None,
        labels=labels,
        edge_r_max=r_maxes.pop() if has_edges and len(r_maxes) == 1 else None,
    )
