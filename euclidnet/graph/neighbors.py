"""Radius graphs (neighbour lists) with open, periodic and mixed boundary conditions.

The default backend is a pure-torch O(N) cell-list search. ``backend="vesin"`` runs the candidate search
in the optional ``vesin`` package instead (CPU, one call per graph). Single-threaded it was no faster than
the torch path from 10^4 atoms on and several times slower on batches of many small graphs, so it is
opt-in, kept as an independent cross-check and for heavily loaded multi-threaded runs, where its own
threads degrade less than torch's (see ``benchmarks/neighbors.py``). Both backends end in the same final filter
(exact re-measurement of pairs near the cutoff), self-loop handling, ``max_num_neighbors`` truncation
and sorting, so they return identical results.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["radius_graph", "vesin_available"]

# Bins are made about r_max / _BINS_PER_CUTOFF thick. With 2 a centre scans 5 x 5 runs of 5 bins, about
# 3.7 candidates per true neighbour (6.5 with 1); 2 measured slightly faster than 1 or 3 at 10^5 atoms.
_BINS_PER_CUTOFF = 2
# Relative safety margin on the cutoff used for binning and for the first (wrapped-coordinate) distance
# test, so that rounding in fractional coordinates can never lose a pair; the exact test comes last.
_MARGIN = 1e-6
# Work-array budgets (elements) of one chunk of the search: temporaries stay at a few tens of MB
# whatever N is (beyond the output itself), small enough for the allocator to reuse them between chunks.
_ENTRY_BUDGET = 1 << 18
_PAIR_BUDGET = 1 << 18
# A graph gets at most max(_MIN_BINS, 2 * atoms) bins, so sparse or huge boxes cannot blow up memory.
_MIN_BINS = 8
_MAX_BINS_PER_DIM = 1 << 20

_BACKENDS = ("torch", "vesin")


@functools.lru_cache(maxsize=1)
def vesin_available() -> bool:
    """True when the optional ``vesin`` neighbour-list library can be imported."""
    try:
        import vesin  # noqa: F401
    except ImportError:
        return False
    return True


def radius_graph(
    pos: Tensor,
    r_max: float,
    batch: Tensor | None = None,
    cell: Tensor | None = None,
    pbc: Tensor | Sequence[bool] | None = None,
    max_num_neighbors: int | None = None,
    self_loops: bool = False,
    *,
    backend: str = "torch",
) -> tuple[Tensor, Tensor]:
    """All pairs of atoms closer than ``r_max``, with periodic images.

    Args:
        pos: ``[N, 3]`` floating-point positions (any floating dtype; need not be wrapped into the cell).
        r_max: cutoff radius, finite and > 0. A pair is an edge when its distance is strictly ``< r_max``.
        batch: optional ``[N]`` integer graph index of each atom (need not be sorted). Edges never
            connect atoms of different graphs. Without it all atoms form one graph.
        cell: optional lattice, ``[3, 3]`` shared by all graphs or ``[B, 3, 3]`` per graph; rows are the
            lattice vectors ``a_1, a_2, a_3``. ``B`` must be at least ``batch.max() + 1``.
        pbc: optional periodicity per lattice direction: one bool, bool ``[3]`` or ``[B, 3]`` (same ``B`` as a
            batched ``cell``; without a cell ``B >= batch.max() + 1``). Defaults to all
            ``True`` when ``cell`` is given and all ``False`` otherwise. ``True`` requires ``cell``.
            A graph with any periodic direction needs a non-singular cell; the cell of a graph with no
            periodic direction is never used and may be anything (e.g. zeros).
        max_num_neighbors: if given, keep for every centre only its ``max_num_neighbors`` closest edges
            (ties broken by ``src`` then ``shift``; a self-loop, at distance 0, counts as one of them).
        self_loops: also return the pair ``(i, i, shift=0)`` for every atom.
        backend: ``"torch"`` (default, always available) or ``"vesin"`` (needs the optional package).

    Returns:
        ``(edge_index, cell_shifts)``:

        - ``edge_index``: int64 ``[2, E]``, ``edge_index[0] = src`` (the neighbour ``j``) and
          ``edge_index[1] = dst`` (the centre ``i``).
        - ``cell_shifts``: int64 ``[E, 3]`` integer multiples of the lattice vectors such that the
          edge vector, pointing from the centre to the neighbour, is
          ``pos[src] - pos[dst] + cell_shifts @ cell`` (with the cell of the edge's graph when batched)
          for the positions *as given*, wrapped or not. Shifts are all zero without periodicity.

    Edges are all ordered triples ``(src, dst, shift)`` with ``|vec| < r_max``; both directions of a
    pair are present. Periodic images of an atom itself (``src == dst``, ``shift != 0``) are edges when
    within ``r_max``; ``(i, i, 0)`` is one only with ``self_loops=True``. Coincident atoms (distance 0)
    are edges; isolated atoms simply have none. Distances are evaluated in float64 whatever the input
    dtype. The output is sorted by ``dst``, then ``src``, then shift (lexicographically), so it is
    deterministic and identical for both backends.

    The torch search bins atoms in fractional coordinates of each graph's cell (Cartesian axes when
    nothing is periodic); a centre looks ``ceil(r_max / t_k)`` bins away along lattice direction ``k``,
    ``t_k`` being the bin thickness perpendicular to the two other lattice vectors. A cell whose
    perpendicular height ``h_k`` is below ``r_max`` is a single bin along ``k`` and the search then
    covers the ``ceil(r_max / h_k)`` nearest images on each side, so arbitrarily small and skewed cells
    are handled. Cost is O(N) for bounded density and memory is bounded by chunking.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    pos64, r, graph, num_graphs, cell64, pbc_b = _validate(pos, r_max, batch, cell, pbc)
    if max_num_neighbors is not None:
        if isinstance(max_num_neighbors, bool) or not isinstance(max_num_neighbors, numbers.Integral):
            raise TypeError(f"max_num_neighbors must be an int or None, got {max_num_neighbors!r}")
        if max_num_neighbors < 0:
            raise ValueError(f"max_num_neighbors must be >= 0, got {max_num_neighbors}")

    device = pos64.device
    n = pos64.shape[0]
    max_num_neighbors = None if max_num_neighbors is None else int(max_num_neighbors)
    if n == 0 or max_num_neighbors == 0:
        return (
            torch.empty(2, 0, dtype=torch.long, device=device),
            torch.empty(0, 3, dtype=torch.long, device=device),
        )

    use_vesin = backend == "vesin"
    if use_vesin and not vesin_available():
        raise ImportError("backend='vesin' requested but the 'vesin' package is not installed")

    ctx = _Context(pos64, r, graph, num_graphs, cell64, pbc_b, bool(self_loops), max_num_neighbors)
    chunks = _search_vesin(ctx) if use_vesin else _search_torch(ctx)
    return _assemble(chunks, n, device)


# ----------------------------------------------------------------------------------------------------
# validation


def _validate(pos, r_max, batch, cell, pbc):
    if not isinstance(pos, Tensor):
        raise TypeError(f"pos must be a torch.Tensor of shape [N, 3], got {type(pos).__name__}")
    if pos.dim() != 2 or pos.shape[1] != 3:
        raise ValueError(f"pos must have shape [N, 3], got {tuple(pos.shape)}")
    if not pos.is_floating_point():
        raise TypeError(f"pos must have a floating-point dtype, got {pos.dtype}")
    device = pos.device
    pos64 = pos.detach().to(torch.float64)
    finite = torch.isfinite(pos64).all(dim=1)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0, 0])
        raise ValueError(
            f"pos contains NaN or inf coordinates; first bad atom index is {first} "
            f"(pos[{first}] = {pos64[first].tolist()})"
        )

    if isinstance(r_max, Tensor):
        if r_max.numel() != 1:
            raise ValueError(f"r_max must be a scalar, got a tensor of shape {tuple(r_max.shape)}")
        r_max = r_max.item()
    if isinstance(r_max, bool) or not isinstance(r_max, numbers.Real):
        raise TypeError(f"r_max must be a real number, got {type(r_max).__name__}")
    r = float(r_max)
    if not math.isfinite(r) or r <= 0.0:
        raise ValueError(f"r_max must be finite and > 0, got {r_max}")

    n = pos.shape[0]
    if batch is None:
        graph = torch.zeros(n, dtype=torch.long, device=device)
        num_graphs = 1
    else:
        if not isinstance(batch, Tensor):
            raise TypeError(f"batch must be a torch.Tensor of shape [N], got {type(batch).__name__}")
        if batch.dtype == torch.bool or batch.is_floating_point() or batch.is_complex():
            raise TypeError(f"batch must have an integer dtype (int64), got {batch.dtype}")
        if batch.dim() != 1 or batch.shape[0] != n:
            raise ValueError(f"batch must have shape [N] = [{n}] to match pos, got {tuple(batch.shape)}")
        graph = batch.to(device=device, dtype=torch.long)
        if n > 0 and int(graph.min()) < 0:
            raise ValueError(f"batch indices must be >= 0, got min {int(graph.min())}")
        num_graphs = int(graph.max()) + 1 if n > 0 else 1

    cell64 = None
    if cell is not None:
        if not isinstance(cell, Tensor):
            cell = torch.as_tensor(cell)
        if not (cell.is_floating_point() or cell.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"cell must be a real-valued tensor, got {cell.dtype}")
        if cell.dim() == 2 and cell.shape == (3, 3):
            cell64 = cell.to(device=device, dtype=torch.float64).expand(num_graphs, 3, 3)
        elif cell.dim() == 3 and cell.shape[1:] == (3, 3):
            if cell.shape[0] < num_graphs:
                raise ValueError(
                    f"cell has shape {tuple(cell.shape)} but batch has {num_graphs} graphs; "
                    f"expected [3, 3] or [B, 3, 3] with B >= {num_graphs}"
                )
            num_graphs = cell.shape[0]
            cell64 = cell.to(device=device, dtype=torch.float64)
        else:
            raise ValueError(f"cell must have shape [3, 3] or [B, 3, 3], got {tuple(cell.shape)}")
        if not bool(torch.isfinite(cell64).all()):
            raise ValueError("cell contains NaN or inf entries")

    if pbc is None:
        pbc_b = torch.full((num_graphs, 3), cell is not None, dtype=torch.bool, device=device)
    else:
        pbc_t = torch.as_tensor(pbc, device=device)
        if pbc_t.dtype != torch.bool:
            raise TypeError(f"pbc must be booleans, got dtype {pbc_t.dtype}")
        # Like cell, a per-graph pbc may list trailing graphs that have no atoms.
        rows = pbc_t.shape[0] if pbc_t.dim() == 2 else -1
        ok_rows = rows == num_graphs if cell64 is not None else rows >= num_graphs
        if pbc_t.dim() == 0:
            pbc_b = pbc_t.expand(num_graphs, 3)
        elif pbc_t.shape == (3,):
            pbc_b = pbc_t.expand(num_graphs, 3)
        elif pbc_t.dim() == 2 and pbc_t.shape[1] == 3 and ok_rows:
            pbc_b = pbc_t
            num_graphs = pbc_t.shape[0]
        else:
            raise ValueError(
                f"pbc must have shape [3] or [B, 3] with B = {num_graphs} graphs, got {tuple(pbc_t.shape)}"
            )
        if cell64 is None and bool(pbc_b.any()):
            raise ValueError("pbc has periodic directions but no cell was given")
    pbc_b = pbc_b.contiguous()

    if cell64 is not None:
        periodic_graph = pbc_b.any(dim=1)
        vol = torch.linalg.det(cell64).abs()
        # Volume relative to the product of edge lengths is scale free: it is |sin| of the cell angles.
        scale = cell64.norm(dim=2).prod(dim=1)
        singular = periodic_graph & ~(vol > 1e-10 * scale)
        if bool(singular.any()):
            b = int(singular.nonzero()[0, 0])
            raise ValueError(
                f"cell of graph {b} is singular (volume {float(vol[b]):.3g}) but graph {b} is periodic "
                f"(pbc = {pbc_b[b].tolist()}); cell = {cell64[b].tolist()}"
            )
    return pos64, r, graph, num_graphs, cell64, pbc_b


# ----------------------------------------------------------------------------------------------------
# shared state and final exact filtering


class _Edges(NamedTuple):
    """Edge list in structure-of-arrays form: 1-D gathers are several times faster than row gathers."""

    src: Tensor
    dst: Tensor
    s0: Tensor
    s1: Tensor
    s2: Tensor

    def select(self, idx: Tensor) -> _Edges:
        return _Edges(*(t.index_select(0, idx) for t in self))

    @staticmethod
    def cat(parts: list[_Edges]) -> _Edges:
        return _Edges(*(torch.cat(ts) for ts in zip(*parts)))


class _Context:
    """Per-call data shared by both backends."""

    def __init__(self, pos64, r, graph, num_graphs, cell64, pbc_b, self_loops, max_nn):
        self.r = r
        self.graph = graph
        self.num_graphs = num_graphs
        self.pbc = pbc_b
        self.self_loops = self_loops
        self.max_nn = max_nn
        self.n = pos64.shape[0]
        self.device = pos64.device
        self.any_periodic = bool(pbc_b.any())
        periodic_graph = pbc_b.any(dim=1)
        eye = torch.eye(3, dtype=torch.float64, device=self.device).expand(num_graphs, 3, 3)
        # Cell used for binning and for shifts: the real cell where a graph is periodic (mixed pbc bins
        # along its lattice vectors), Cartesian axes otherwise, so non-periodic graphs accept any cell.
        if cell64 is None:
            self.cell = eye.contiguous()
        else:
            self.cell = torch.where(periodic_graph[:, None, None], cell64, eye).contiguous()
        self.single_cell = num_graphs == 1 or bool((self.cell == self.cell[:1]).all())
        self.cell_list = self.cell[0].tolist()
        # cell9[3 * a + c] = component c of lattice vector a, one entry per graph.
        self.cell9 = self.cell.reshape(num_graphs, 9).T.contiguous()
        self.pbc_atom = pbc_b.index_select(0, graph)
        self.inv = torch.linalg.inv(self.cell)

        # Wrap periodic directions into [0, 1) so binning sees the cell; `wrap` records what was removed.
        if self.single_cell:
            frac = pos64 @ self.inv[0]
        else:
            frac = torch.einsum("ni,nij->nj", pos64, self.inv.index_select(0, graph))
        wrap = torch.where(self.pbc_atom, torch.floor(frac), torch.zeros_like(frac))
        self.frac = frac - wrap
        wrap = wrap.long()
        self.wrap = [wrap[:, k].contiguous() for k in range(3)]
        self.has_wrap = bool((wrap != 0).any())
        self.pos = [pos64[:, k].contiguous() for k in range(3)]
        back = self.shift_to_cart(self.wrap[0], self.wrap[1], self.wrap[2], graph)
        self.wpos = [p - b for p, b in zip(self.pos, back)]

    def shift_to_cart(self, s0: Tensor, s1: Tensor, s2: Tensor, graph_of_row: Tensor) -> list[Tensor]:
        """Cartesian components of ``s @ cell[graph_of_row]`` for integer shift components."""
        if not self.any_periodic:
            z = torch.zeros(s0.shape[0], dtype=torch.float64, device=self.device)
            return [z, z, z]
        f = [s.to(torch.float64) for s in (s0, s1, s2)]
        if self.single_cell:
            c = self.cell_list
            return [f[0] * c[0][k] + f[1] * c[1][k] + f[2] * c[2][k] for k in range(3)]
        rows = [self.cell9[i].index_select(0, graph_of_row) for i in range(9)]
        return [f[0] * rows[k] + f[1] * rows[3 + k] + f[2] * rows[6 + k] for k in range(3)]

    def exact_d2(self, e: _Edges) -> Tensor:
        """Squared length of ``pos[src] - pos[dst] + shift @ cell`` from the positions as given."""
        shift = self.shift_to_cart(e.s0, e.s1, e.s2, self.graph.index_select(0, e.dst))
        d2 = None
        for p, sh in zip(self.pos, shift):
            v = p.index_select(0, e.src) - p.index_select(0, e.dst) + sh
            d2 = v * v if d2 is None else d2 + v * v
        return d2

    def finalize(self, e: _Edges, d2: Tensor, centres: Tensor) -> tuple[_Edges, Tensor] | None:
        """Exact filter, self-loop rule, neighbour cap and sorting of all candidate edges of ``centres``.

        ``e`` holds every edge of ``centres`` plus candidates up to ``r_max * (1 + _MARGIN)``, with
        shifts already expressed for the original (unwrapped) positions, and ``d2`` their squared
        lengths as computed by the search. Candidates whose ``d2`` is within the rounding band of
        ``r_max**2`` are re-measured with :meth:`exact_d2`, so the edge set is that of the stated
        convention, independent of wrapping and of the backend.
        Returns the kept edges sorted by (dst, src, shift) and their squared lengths.
        """
        r2 = self.r * self.r
        near = torch.nonzero(d2 > r2 * (1.0 - 8.0 * _MARGIN)).squeeze(1)
        if near.numel():
            d2 = d2.index_put((near,), self.exact_d2(e.select(near)))
        keep = d2 < r2
        keep &= ~((e.src == e.dst) & (e.s0 == 0) & (e.s1 == 0) & (e.s2 == 0))
        idx = torch.nonzero(keep).squeeze(1)
        e, d2 = e.select(idx), d2.index_select(0, idx)
        if self.self_loops:
            # Added explicitly rather than taken from the search so that every atom gets exactly one.
            z = torch.zeros_like(centres)
            e = _Edges.cat([e, _Edges(centres, centres, z, z, z)])
            d2 = torch.cat([d2, d2.new_zeros(centres.shape[0])])
        if e.src.numel() == 0:
            return None

        order = _lexsort_edges(e)
        e, d2 = e.select(order), d2.index_select(0, order)
        if self.max_nn is not None:
            # Stable sorts of a (dst, src, shift)-sorted list give (dst, d2, src, shift) order.
            by_d = torch.sort(d2, stable=True).indices
            by_dst = torch.sort(e.dst.index_select(0, by_d), stable=True).indices
            rank_order = by_d.index_select(0, by_dst)
            dst_r = e.dst.index_select(0, rank_order)
            first = torch.searchsorted(dst_r, dst_r, right=False)
            rank = torch.arange(dst_r.numel(), device=self.device) - first
            kept = torch.sort(rank_order[rank < self.max_nn]).values  # back to (dst, src, shift) order
            e, d2 = e.select(kept), d2.index_select(0, kept)
        return e, d2


def _lexsort_edges(e: _Edges) -> Tensor:
    """Permutation sorting edges by (dst, src, shift_0, shift_1, shift_2)."""
    shifts = (e.s0, e.s1, e.s2)
    smin = min(int(s.min()) for s in shifts)
    span = max(int(s.max()) for s in shifts) - smin + 1
    n_src = int(e.src.max()) + 1
    d0 = int(e.dst.min())
    n_dst = int(e.dst.max()) - d0 + 1
    if float(n_dst) * n_src * span**3 < 2.0**62:
        key = (e.dst - d0) * n_src + e.src
        for s in shifts:
            key = key * span + (s - smin)
        return torch.sort(key).indices
    order = torch.arange(e.src.numel(), device=e.src.device)
    for k in (e.s2, e.s1, e.s0, e.src, e.dst):
        order = order.index_select(0, torch.sort(k.index_select(0, order), stable=True).indices)
    return order


def _assemble(chunks: list[_Edges], n: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Write chunk results into the final ``edge_index`` and ``cell_shifts``, sorted by dst.

    Each chunk holds the complete, sorted edge runs of its centres, in any chunk order, so a counting
    placement (O(E), no global sort, outputs written once) puts every run at its dst's offset.
    """
    degree = torch.zeros(n, dtype=torch.long, device=device)
    for e in chunks:
        degree.index_add_(0, e.dst, torch.ones_like(e.dst))
    total = int(degree.sum())
    offset = torch.cumsum(degree, 0) - degree
    edge_index = torch.empty(2, total, dtype=torch.long, device=device)
    shifts = torch.empty(total, 3, dtype=torch.long, device=device)
    flat = shifts.view(-1)
    for e in chunks:
        m = e.dst.numel()
        ar = torch.arange(m, device=device)
        run_start = torch.ones(m, dtype=torch.bool, device=device)
        run_start[1:] = e.dst[1:] != e.dst[:-1]
        first = torch.cummax(torch.where(run_start, ar, 0), dim=0).values
        where = offset.index_select(0, e.dst) + (ar - first)
        edge_index[0].index_copy_(0, where, e.src)
        edge_index[1].index_copy_(0, where, e.dst)
        where *= 3
        for s in (e.s0, e.s1, e.s2):
            flat.index_copy_(0, where, s)
            where += 1
    return edge_index, shifts


# ----------------------------------------------------------------------------------------------------
# pure torch cell list


def _search_torch(ctx: _Context) -> list[_Edges]:
    """Cell-list search; returns finalised edges per chunk of centres (merged by :func:`_assemble`)."""
    device = ctx.device
    n, num_graphs, graph, r = ctx.n, ctx.num_graphs, ctx.graph, ctx.r
    pbc = ctx.pbc
    r_bin = r * (1.0 + _MARGIN)

    # Perpendicular height of the cell along each lattice direction: 1 / |reciprocal vector k|.
    height = 1.0 / ctx.inv.norm(dim=1)  # [B, 3]
    idx3 = graph[:, None].expand(n, 3)
    lo = torch.full((num_graphs, 3), math.inf, dtype=torch.float64, device=device)
    lo = lo.scatter_reduce(0, idx3, ctx.frac, "amin")
    hi = torch.full((num_graphs, 3), -math.inf, dtype=torch.float64, device=device)
    hi = hi.scatter_reduce(0, idx3, ctx.frac, "amax")
    empty = ~torch.isfinite(lo)
    lo = torch.where(empty, 0.0, lo)
    hi = torch.where(empty, 0.0, hi)
    extent = (hi - lo) * height  # perpendicular extent of the atoms, for open directions

    t0 = r_bin / _BINS_PER_CUTOFF
    nb_f = torch.where(pbc, torch.floor(height / t0).clamp(min=1.0), torch.floor(extent / t0) + 1.0)
    nb = nb_f.clamp(max=float(_MAX_BINS_PER_DIM)).long()
    atoms_per_graph = torch.bincount(graph, minlength=num_graphs)
    cap = (2 * atoms_per_graph).clamp(min=_MIN_BINS)
    while True:
        over = nb.prod(dim=1) > cap
        if not bool(over.any()):
            break
        nb = torch.where(over[:, None], (nb + 1) // 2, nb)

    nbf = nb.to(torch.float64)
    width = torch.where(pbc, 1.0 / nbf, torch.maximum(t0 / height, (hi - lo) / nbf))  # fractional units
    thickness = width * height
    # ceil(r / t) bins suffice; the half margin keeps it from rounding up to one more when t = r_bin / K.
    reach = torch.ceil(r * (1.0 + 0.5 * _MARGIN) / thickness).long()  # [B, 3]

    origin = torch.where(pbc, 0.0, lo)
    coord = torch.floor((ctx.frac - origin.index_select(0, graph)) / width.index_select(0, graph)).long()
    nb_a = nb.index_select(0, graph)
    coord = torch.minimum(coord.clamp(min=0), nb_a - 1)

    bins_per_graph = nb.prod(dim=1)
    bin_offset = torch.cumsum(bins_per_graph, 0) - bins_per_graph
    total_bins = int(bins_per_graph.sum())
    gbin = bin_offset.index_select(0, graph) + (coord[:, 0] * nb_a[:, 1] + coord[:, 1]) * nb_a[:, 2] + coord[:, 2]
    del nb_a
    # Atoms sorted by bin: the members of a bin are a contiguous run of `by_bin`, and their wrapped
    # positions are copied in that order so the pair loop reads memory sequentially.
    by_bin = torch.sort(gbin, stable=True).indices
    bin_count = torch.bincount(gbin, minlength=total_bins)
    bin_end = torch.cumsum(bin_count, 0)
    grid = _Grid(
        coord=[coord[:, k].contiguous() for k in range(3)],
        nb=nb,
        bin_offset=bin_offset,
        bin_start=bin_end - bin_count,
        bin_end=bin_end,
        by_bin=by_bin,
        wpos_sorted=[w.index_select(0, by_bin) for w in ctx.wpos],
        r_loose2=(r * (1.0 + _MARGIN)) ** 2,
    )

    # Graphs needing the same stencil (reach per direction) are processed together with one dense
    # stencil; centres are visited in bin order so neighbouring centres touch the same memory.
    if num_graphs == 1:
        groups = [(reach[0].tolist(), by_bin)]
    else:
        uniq, group_of_graph = torch.unique(reach, dim=0, return_inverse=True)
        group_sorted = group_of_graph.index_select(0, graph).index_select(0, by_bin)
        groups = [(uniq[u].tolist(), by_bin[group_sorted == u]) for u in range(uniq.shape[0])]

    out: list[_Edges] = []
    for reach_g, centres_g in groups:
        # Centres whose direction-2 stencil crosses the grid edge need two or more runs there; keeping
        # them apart lets all other chunks use exactly one run per (offset_0, offset_1).
        r2 = reach_g[2]
        c2 = grid.coord[2].index_select(0, centres_g)
        n2 = nb[:, 2].index_select(0, graph.index_select(0, centres_g))
        inside = (c2 >= r2) & (c2 + r2 < n2)
        for part, runs in ((centres_g[inside], 1), (centres_g[~inside], 2 + (2 * r2 + 1) // int(n2.min()))):
            if part.numel() == 0:
                continue
            per_centre = (2 * reach_g[0] + 1) * (2 * reach_g[1] + 1) * runs
            for centres in torch.split(part, max(1, _ENTRY_BUDGET // per_centre)):
                res = _torch_chunk(ctx, grid, centres, reach_g)
                if res is not None:
                    out.append(res)
    return out


class _Grid:
    """Cell-list arrays of :func:`_search_torch` (per atom, per bin and per graph)."""

    def __init__(self, coord, nb, bin_offset, bin_start, bin_end, by_bin, wpos_sorted, r_loose2):
        self.coord = coord
        self.nb = nb
        self.bin_offset = bin_offset
        self.bin_start = bin_start
        self.bin_end = bin_end
        self.by_bin = by_bin
        self.wpos_sorted = wpos_sorted
        self.r_loose2 = r_loose2


def _grid3(a: Tensor, b: Tensor, c: Tensor, op) -> Tensor:
    """``op`` of three per-centre tables [C, S0], [C, S1], [C, S2] over all offset triples, flattened."""
    return op(op(a[:, :, None, None], b[:, None, :, None]), c[:, None, None, :]).reshape(-1)


def _torch_chunk(ctx: _Context, grid: _Grid, centres: Tensor, reach: list[int]) -> _Edges | None:
    """All edges of one chunk of centres that share a stencil; see :func:`_search_torch`.

    Along directions 0 and 1 every bin offset is enumerated. Along direction 2 consecutive bins are
    consecutive in the bin-sorted atom order, so the offsets of one image (same shift) form a single
    run of atoms: one "entry" per (offset_0, offset_1, run) instead of per bin.
    """
    device = ctx.device
    g = ctx.graph.index_select(0, centres)
    nbc = grid.nb.index_select(0, g)
    pbcc = ctx.pbc.index_select(0, g)

    # Directions 0, 1: neighbour bin coordinate, image shift and validity of every offset.
    lin_k, valid_k, shift_k = [], [], []
    for k in range(2):
        d = torch.arange(-reach[k], reach[k] + 1, device=device)
        ck = grid.coord[k].index_select(0, centres)[:, None] + d
        nk = nbc[:, k, None]
        sk = torch.div(ck, nk, rounding_mode="floor")
        lin_k.append(ck - sk * nk)
        # An open direction has no images: an offset leaving [0, nb) (sk != 0) is no bin at all.
        valid_k.append(pbcc[:, k, None] | (sk == 0))
        shift_k.append(sk)
    # Direction 2: bins c-reach .. c+reach split into runs by image shift s (one run unless wrapping).
    n2 = nbc[:, 2]
    c2 = grid.coord[2].index_select(0, centres)
    lo, hi = c2 - reach[2], c2 + reach[2]
    s_lo = torch.div(lo, n2, rounding_mode="floor")
    s_hi = torch.div(hi, n2, rounding_mode="floor")
    n_runs = int((s_hi - s_lo).max()) + 1
    s2 = s_lo[:, None] + torch.arange(n_runs, device=device)
    img = s2 * n2[:, None]
    first = torch.maximum(lo[:, None], img) - img
    last = (torch.minimum(hi[:, None], img + n2[:, None] - 1) - img).clamp(min=0)
    valid_k.append((s2 <= s_hi[:, None]) & (pbcc[:, 2, None] | (s2 == 0)))
    shift_k.append(s2)
    sizes = [x.shape[1] for x in shift_k]
    stencil = sizes[0] * sizes[1] * sizes[2]

    row0 = lin_k[0] * (nbc[:, 1, None] * n2[:, None]) + grid.bin_offset.index_select(0, g)[:, None]
    row1 = lin_k[1] * n2[:, None]
    lin_first = _grid3(row0, row1, first, torch.add)
    lin_last = _grid3(row0, row1, last, torch.add)
    cnt = grid.bin_end.index_select(0, lin_last) - grid.bin_start.index_select(0, lin_first)
    cnt *= _grid3(valid_k[0], valid_k[1], valid_k[2], torch.logical_and)
    entry = torch.nonzero(cnt > 0).squeeze(1)  # flat (centre, offset_0, offset_1, run) of non-empty runs
    cnt = cnt.index_select(0, entry)
    start = grid.bin_start.index_select(0, lin_first.index_select(0, entry))
    del lin_first, lin_last

    # Centre-side part of the wrapped-coordinate edge vector (image offset minus centre position), once
    # per entry instead of once per candidate pair.
    if ctx.any_periodic:
        q = []
        for c in range(3):
            parts = []
            for k in range(3):
                f = shift_k[k].to(torch.float64)
                if ctx.single_cell:
                    parts.append(f * ctx.cell_list[k][c])
                else:
                    parts.append(f * ctx.cell9[3 * k + c].index_select(0, g)[:, None])
            parts[0] = parts[0] - ctx.wpos[c].index_select(0, centres)[:, None]
            q.append(_grid3(parts[0], parts[1], parts[2], torch.add).index_select(0, entry))
    else:
        entry_centre = torch.div(entry, stencil, rounding_mode="floor")
        q = [-ctx.wpos[c].index_select(0, centres).index_select(0, entry_centre) for c in range(3)]

    cum = torch.cumsum(cnt, 0)
    # Candidate number p (counted over the chunk) of entry k is atom by_bin[base[k] + p] in bin order.
    base = start - (cum - cnt)
    n_e = entry.numel()
    hits_k, hits_j, hits_d2 = [], [], []
    e0 = 0
    while e0 < n_e:
        pbase = int(cum[e0 - 1]) if e0 > 0 else 0
        e1 = int(torch.searchsorted(cum, pbase + _PAIR_BUDGET, right=True))
        e1 = min(max(e1, e0 + 1), n_e)
        p = int(cum[e1 - 1]) - pbase
        k = torch.repeat_interleave(torch.arange(e0, e1, device=device), cnt[e0:e1], output_size=p)
        jj = base.index_select(0, k)
        jj += torch.arange(pbase, pbase + p, device=device)
        d2 = None
        for c in range(3):
            v = grid.wpos_sorted[c].index_select(0, jj)
            v += q[c].index_select(0, k)
            v.square_()
            d2 = v if d2 is None else d2.add_(v)
        hit = torch.nonzero(d2 < grid.r_loose2).squeeze(1)
        hits_k.append(k.index_select(0, hit))
        hits_j.append(jj.index_select(0, hit))
        hits_d2.append(d2.index_select(0, hit))
        e0 = e1
    # hits_k is never empty: every centre's own bin holds the centre itself, at distance 0.
    kh = torch.cat(hits_k)
    j = grid.by_bin.index_select(0, torch.cat(hits_j))
    d2_hit = torch.cat(hits_d2)

    flat = entry.index_select(0, kh)
    ec = torch.div(flat, stencil, rounding_mode="floor")
    off = flat - ec * stencil
    idx_k = [
        torch.div(off, sizes[1] * sizes[2], rounding_mode="floor"),
        torch.div(off, sizes[2], rounding_mode="floor") % sizes[1],
        off % sizes[2],
    ]
    i = centres.index_select(0, ec)
    sh = [shift_k[k].reshape(-1).index_select(0, ec * sizes[k] + idx_k[k]) for k in range(3)]
    if ctx.has_wrap:
        sh = [sh[k] - ctx.wrap[k].index_select(0, j) + ctx.wrap[k].index_select(0, i) for k in range(3)]
    res = ctx.finalize(_Edges(j, i, *sh), d2_hit, centres)
    return None if res is None else res[0]


# ----------------------------------------------------------------------------------------------------
# vesin backend


def _search_vesin(ctx: _Context) -> list[_Edges]:
    import numpy as np
    import vesin

    # Same thread budget as torch, so torch.set_num_threads governs both backends.
    nl = vesin.NeighborList(
        cutoff=ctx.r * (1.0 + _MARGIN), full_list=True, n_threads=max(1, torch.get_num_threads())
    )
    graph = ctx.graph
    wpos = torch.stack(ctx.wpos, dim=1)
    if ctx.num_graphs == 1:
        members = [torch.arange(ctx.n, device=ctx.device)]
    else:
        perm = torch.sort(graph, stable=True).indices
        counts = torch.bincount(graph, minlength=ctx.num_graphs).tolist()
        members = list(torch.split(perm, counts))
    out = []
    for b, idx in enumerate(members):
        if idx.numel() == 0:
            continue
        periodic = ctx.pbc[b].tolist()
        box = ctx.cell[b].cpu().numpy() if any(periodic) else np.zeros((3, 3))
        points = wpos.index_select(0, idx).cpu().numpy()
        i, j, s, d = nl.compute(points, box, periodic, quantities="ijSd", copy=True)

        def to_torch(a, dtype):
            return torch.from_numpy(a.astype(dtype, copy=False)).to(ctx.device)

        i = idx.index_select(0, to_torch(i, np.int64))
        j = idx.index_select(0, to_torch(j, np.int64))
        s = to_torch(s, np.int64)
        sh = [s[:, k].contiguous() for k in range(3)]
        if ctx.has_wrap:
            sh = [sh[k] - ctx.wrap[k].index_select(0, j) + ctx.wrap[k].index_select(0, i) for k in range(3)]
        e = _Edges(j, i, *sh)
        d2 = to_torch(d, np.float64).square_()
        # Finalise in chunks of whole centres to bound the memory of sorting and filtering.
        order = torch.sort(e.dst, stable=True).indices
        e, d2 = e.select(order), d2.index_select(0, order)
        centres = torch.sort(idx).values
        degree = torch.bincount(torch.searchsorted(centres, e.dst), minlength=centres.numel())
        cum = torch.cumsum(degree, 0)
        start = 0
        while start < centres.numel():
            base = int(cum[start - 1]) if start > 0 else 0
            stop = int(torch.searchsorted(cum, base + _PAIR_BUDGET, right=True))
            stop = min(max(stop, start + 1), centres.numel())
            e1 = int(cum[stop - 1])
            res = ctx.finalize(_Edges(*(t[base:e1] for t in e)), d2[base:e1], centres[start:stop])
            if res is not None:
                out.append(res[0])
            start = stop
    return out
