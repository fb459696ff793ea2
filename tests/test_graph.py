"""Tests of euclidnet.graph: radius_graph against brute force and ASE, scatter ops, batch helpers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import euclidnet.graph.neighbors as nbr
from euclidnet.graph import (
    batch_from_ptr,
    batch_from_sizes,
    ptr_from_batch,
    radius_graph,
    scatter_max,
    scatter_mean,
    scatter_softmax,
    scatter_sum,
    sizes_from_batch,
    vesin_available,
)

BACKENDS = ["torch"] + (["vesin"] if vesin_available() else [])
DTYPES = [torch.float32, torch.float64]


# ----------------------------------------------------------------------------------------------------
# references


def brute_force(pos, r, cell=None, pbc=None, self_loops=False):
    """Set of (src, dst, s0, s1, s2) by enumerating every atom pair and every needed periodic image.

    Wraps positions itself, tries all images within ceil(r / height) + 1 cells, and converts the
    shifts back to the given (unwrapped) positions.
    """
    pos = pos.detach().double()
    n = pos.shape[0]
    if cell is None:
        pbc = [False, False, False]
        cell = torch.eye(3, dtype=torch.float64)
    cell = torch.as_tensor(cell).double()
    pbc = [bool(p) for p in (pbc if pbc is not None else [True, True, True])]
    if any(pbc):
        inv = torch.linalg.inv(cell)
        frac = pos @ inv
        wrap = torch.floor(frac) * torch.tensor(pbc, dtype=torch.float64)
        height = 1.0 / inv.norm(dim=0)
    else:
        wrap = torch.zeros(n, 3, dtype=torch.float64)
        height = torch.ones(3, dtype=torch.float64)
    wpos = pos - wrap @ cell
    reach = [math.ceil(r / float(height[k])) + 1 for k in range(3)]
    ranges = [range(-reach[k], reach[k] + 1) if pbc[k] else [0] for k in range(3)]
    images = torch.tensor(list(itertools.product(*ranges)), dtype=torch.float64)
    out = set()
    wrap_l = wrap.long()
    for chunk in torch.split(images, 64):
        vec = wpos[None, None, :, :] - wpos[None, :, None, :] + (chunk @ cell)[:, None, None, :]  # [M, i, j]
        d2 = (vec * vec).sum(-1)
        m_idx, i_idx, j_idx = torch.nonzero(d2 < r * r, as_tuple=True)
        for m, i, j in zip(m_idx.tolist(), i_idx.tolist(), j_idx.tolist()):
            s = chunk[m].long()
            if i == j and not bool(s.any()) and not self_loops:
                continue
            s = s - wrap_l[j] + wrap_l[i]
            out.add((j, i, *s.tolist()))
    return out


def edge_set(edge_index, shifts):
    return set(zip(edge_index[0].tolist(), edge_index[1].tolist(), *shifts.T.tolist()))


def edge_lengths(pos, edge_index, shifts, cell=None, batch=None):
    pos = pos.double()
    vec = pos[edge_index[0]] - pos[edge_index[1]]
    if cell is not None:
        cell = cell.double()
        if cell.dim() == 2:
            vec = vec + shifts.double() @ cell
        else:
            vec = vec + torch.einsum("ek,ekc->ec", shifts.double(), cell[batch[edge_index[1]]])
    return vec.norm(dim=1)


def check_graph(pos, r, cell=None, pbc=None, backend="torch", **kw):
    """Run radius_graph, check dtypes, sortedness and lengths; return its edge set."""
    pbc_t = None if pbc is None else torch.tensor(pbc)
    edge_index, shifts = radius_graph(pos, r, cell=cell, pbc=pbc_t, backend=backend, **kw)
    assert edge_index.dtype == torch.int64 and shifts.dtype == torch.int64
    assert edge_index.shape[0] == 2 and shifts.shape == (edge_index.shape[1], 3)
    assert_sorted(edge_index, shifts)
    if edge_index.shape[1]:
        assert float(edge_lengths(pos, edge_index, shifts, cell).max()) < r
    return edge_set(edge_index, shifts)


def assert_sorted(edge_index, shifts):
    rows = list(zip(edge_index[1].tolist(), edge_index[0].tolist(), *shifts.T.tolist()))
    assert rows == sorted(rows), "edges are not sorted by (dst, src, shift)"
    assert len(set(rows)) == len(rows), "duplicate edges"


def random_cell(gen, skew=0.0, scale=1.0):
    base = torch.eye(3, dtype=torch.float64) + skew * torch.tensor(
        [[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [-0.7, 0.8, 0.0]], dtype=torch.float64
    )
    base = base + 0.1 * torch.rand(3, 3, generator=gen, dtype=torch.float64)
    return base * scale


def inside(cell, n, gen, dtype=torch.float64):
    return (torch.rand(n, 3, generator=gen, dtype=torch.float64) @ cell).to(dtype)


# ----------------------------------------------------------------------------------------------------
# radius_graph vs brute force


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_open_boundaries(dtype, backend):
    gen = torch.Generator().manual_seed(1)
    pos = (torch.rand(150, 3, generator=gen, dtype=torch.float64) * 6.0 - 2.0).to(dtype)
    r = 1.7
    got = check_graph(pos, r, backend=backend)
    assert got == brute_force(pos, r)
    assert len(got) > 500


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "name, skew, scale, r, pbc",
    [
        ("cubic", 0.0, 7.0, 2.1, [True, True, True]),
        ("triclinic skewed", 1.0, 6.0, 1.9, [True, True, True]),
        ("cell below 2 r_max", 0.6, 3.0, 1.8, [True, True, True]),
        ("mixed pbc", 0.8, 5.0, 2.0, [True, False, True]),
        ("mixed pbc, one periodic", 0.5, 4.0, 2.3, [False, False, True]),
        ("cell given, no pbc", 0.5, 4.0, 1.5, [False, False, False]),
    ],
)
def test_periodic_vs_brute_force(dtype, backend, name, skew, scale, r, pbc):
    gen = torch.Generator().manual_seed(2)
    cell = random_cell(gen, skew, scale)
    pos = inside(cell, 60, gen, dtype)
    got = check_graph(pos, r, cell=cell, pbc=pbc, backend=backend)
    assert got == brute_force(pos, r, cell, pbc)
    assert len(got) > 100


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_cell_smaller_than_cutoff(dtype, backend):
    gen = torch.Generator().manual_seed(3)
    cell = random_cell(gen, skew=0.9, scale=1.5)
    height = 1.0 / torch.linalg.inv(cell).norm(dim=0)
    r = 2.5 * float(height.min())
    pos = inside(cell, 5, gen, dtype)
    got = check_graph(pos, r, cell=cell, backend=backend)
    ref = brute_force(pos, r, cell)
    assert got == ref
    # Several images per direction, and periodic images of an atom itself, must be present.
    assert max(abs(s) for e in got for s in e[2:]) >= 2
    assert any(e[0] == e[1] for e in got)


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_atom_images(backend):
    cell = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    pos = torch.tensor([[0.3, 0.4, 0.5]], dtype=torch.float64)
    got = check_graph(pos, 2.5, cell=cell, backend=backend)
    # Images at distance 2 (6 faces) and 2*sqrt(2) > 2.5 excluded: exactly the 6 face neighbours.
    expected = {(0, 0, *s) for s in [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]}
    assert got == expected


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_unwrapped_positions(dtype, backend):
    gen = torch.Generator().manual_seed(4)
    cell = random_cell(gen, skew=0.7, scale=4.0)
    frac = torch.rand(50, 3, generator=gen, dtype=torch.float64) * 7.0 - 3.0  # spans 7 cells
    pos = (frac @ cell).to(dtype)
    r = 1.9
    got = check_graph(pos, r, cell=cell, backend=backend)
    assert got == brute_force(pos, r, cell)
    assert any(abs(e[2]) > 2 for e in got)


@pytest.mark.parametrize("backend", BACKENDS)
def test_far_unwrapped_positions(backend):
    """Atoms 10^5 cells away: shifts must still satisfy the convention for the given positions."""
    gen = torch.Generator().manual_seed(5)
    cell = random_cell(gen, skew=0.4, scale=3.0)
    wrapped = inside(cell, 30, gen)
    jumps = torch.randint(-100_000, 100_000, (30, 3), generator=gen)
    pos = wrapped + jumps.double() @ cell
    r = 1.6
    got = check_graph(pos, r, cell=cell, backend=backend)
    ref_wrapped = check_graph(wrapped, r, cell=cell, backend=backend)
    expected = {
        (j, i, *(torch.tensor(s) - jumps[j] + jumps[i]).tolist()) for (j, i, *s) in ref_wrapped
    }
    assert got == expected and len(got) > 20


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_graphs_different_cells(dtype, backend):
    gen = torch.Generator().manual_seed(6)
    cells = torch.stack([random_cell(gen, 0.0, 5.0), random_cell(gen, 1.0, 4.0), random_cell(gen, 0.5, 1.2)])
    pbc = torch.tensor([[True, True, True], [True, False, True], [True, True, True]])
    sizes = [40, 30, 6]
    pos_parts = [inside(cells[b], sizes[b], gen, dtype) for b in range(3)]
    pos = torch.cat(pos_parts)
    batch = torch.cat([torch.full((s,), b) for b, s in enumerate(sizes)])
    perm = torch.randperm(pos.shape[0], generator=gen)  # unsorted batch
    pos, batch = pos[perm], batch[perm]
    r = 1.7
    edge_index, shifts = radius_graph(pos, r, batch=batch, cell=cells, pbc=pbc, backend=backend)
    assert_sorted(edge_index, shifts)
    assert bool((batch[edge_index[0]] == batch[edge_index[1]]).all())
    assert float(edge_lengths(pos, edge_index, shifts, cells, batch).max()) < r
    got = edge_set(edge_index, shifts)
    expected = set()
    for b in range(3):
        members = torch.nonzero(batch == b).squeeze(1)
        for j, i, *s in brute_force(pos[members], r, cells[b], pbc[b].tolist()):
            expected.add((int(members[j]), int(members[i]), *s))
    assert got == expected
    assert any(e[0] == e[1] for e in got)  # the small third cell has self-images


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_open_graphs_are_independent(backend):
    gen = torch.Generator().manual_seed(7)
    pos = torch.rand(80, 3, generator=gen, dtype=torch.float64) * 3.0  # both graphs overlap in space
    batch = torch.randint(0, 2, (80,), generator=gen)
    edge_index, shifts = radius_graph(pos, 1.0, batch=batch, backend=backend)
    got = edge_set(edge_index, shifts)
    expected = set()
    for b in range(2):
        members = torch.nonzero(batch == b).squeeze(1)
        expected |= {(int(members[j]), int(members[i]), *s) for j, i, *s in brute_force(pos[members], 1.0)}
    assert got == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_cloud_and_bin_cap(backend):
    """Small clusters 10^4 apart: the bin count is capped, the result must not change."""
    gen = torch.Generator().manual_seed(8)
    centres = torch.tensor([[0.0, 0.0, 0.0], [1e4, 0.0, 0.0], [0.0, 1e4, 5e3], [-3e3, 2e3, 1e4]])
    pos = (centres[:, None, :] + torch.rand(4, 10, 3, generator=gen, dtype=torch.float64)).reshape(-1, 3)
    got = check_graph(pos, 0.8, backend=backend)
    assert got == brute_force(pos, 0.8)
    assert len(got) > 0


def test_chunked_search_matches_single_chunk(monkeypatch):
    gen = torch.Generator().manual_seed(9)
    cell = random_cell(gen, skew=0.5, scale=6.0)
    pos = inside(cell, 80, gen) + 3.0
    reference = radius_graph(pos, 2.0, cell=cell, backend="torch")
    monkeypatch.setattr(nbr, "_ENTRY_BUDGET", 400)
    monkeypatch.setattr(nbr, "_PAIR_BUDGET", 100)
    chunked = radius_graph(pos, 2.0, cell=cell, backend="torch")
    assert torch.equal(reference[0], chunked[0]) and torch.equal(reference[1], chunked[1])
    assert edge_set(*chunked) == brute_force(pos, 2.0, cell)


# ----------------------------------------------------------------------------------------------------
# ASE as an independent reference


def ase_edges(pos, r, cell, pbc):
    ase = pytest.importorskip("ase")
    from ase.neighborlist import neighbor_list

    atoms = ase.Atoms(
        "H" * pos.shape[0],
        positions=pos.double().numpy(),
        cell=(cell if cell is not None else torch.zeros(3, 3)).double().numpy(),
        pbc=pbc,
    )
    i, j, s = neighbor_list("ijS", atoms, r)
    return {(int(b), int(a), *map(int, sh)) for a, b, sh in zip(i, j, s)}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "skew, scale, r, pbc, n",
    [
        (0.0, 6.0, 2.0, [True, True, True], 50),
        (1.0, 5.0, 2.2, [True, True, True], 40),
        (0.7, 1.4, 3.0, [True, True, True], 4),
        (0.5, 4.0, 1.8, [True, False, True], 40),
        (0.0, 5.0, 1.5, [False, False, False], 60),
    ],
)
def test_matches_ase(backend, skew, scale, r, pbc, n):
    pytest.importorskip("ase")
    gen = torch.Generator().manual_seed(10)
    cell = random_cell(gen, skew, scale)
    pos = inside(cell, n, gen) + 0.3 * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    got = check_graph(pos, r, cell=cell, pbc=pbc, backend=backend)
    assert got == ase_edges(pos, r, cell, pbc)
    assert len(got) > 0


# ----------------------------------------------------------------------------------------------------
# options and edge cases


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_num_neighbors_keeps_nearest(backend):
    gen = torch.Generator().manual_seed(11)
    cell = random_cell(gen, 0.5, 4.0)
    pos = inside(cell, 40, gen)
    r, k = 2.5, 7
    full_ei, full_sh = radius_graph(pos, r, cell=cell, backend=backend)
    ei, sh = radius_graph(pos, r, cell=cell, max_num_neighbors=k, backend=backend)
    assert_sorted(ei, sh)
    full_len = edge_lengths(pos, full_ei, full_sh, cell)
    expected = set()
    for i in range(pos.shape[0]):
        rows = torch.nonzero(full_ei[1] == i).squeeze(1).tolist()
        ranked = sorted(rows, key=lambda e: (float(full_len[e]), int(full_ei[0, e]), full_sh[e].tolist()))
        expected |= {(int(full_ei[0, e]), i, *full_sh[e].tolist()) for e in ranked[:k]}
    assert edge_set(ei, sh) == expected
    assert int(torch.bincount(ei[1]).max()) == k
    assert radius_graph(pos, r, cell=cell, max_num_neighbors=0, backend=backend)[0].shape == (2, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_self_loops(backend):
    gen = torch.Generator().manual_seed(12)
    pos = torch.rand(30, 3, generator=gen, dtype=torch.float64) * 4.0
    pos[0] = torch.tensor([100.0, 100.0, 100.0])  # isolated atom still gets its self-loop
    plain = edge_set(*radius_graph(pos, 1.2, backend=backend))
    ei, sh = radius_graph(pos, 1.2, self_loops=True, backend=backend)
    assert_sorted(ei, sh)
    loops = {(i, i, 0, 0, 0) for i in range(30)}
    assert edge_set(ei, sh) == plain | loops
    assert not (plain & loops)
    assert edge_set(ei, sh) == brute_force(pos, 1.2, self_loops=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_input(backend):
    for dtype in DTYPES:
        ei, sh = radius_graph(torch.zeros(0, 3, dtype=dtype), 1.0, backend=backend)
        assert ei.shape == (2, 0) and ei.dtype == torch.int64
        assert sh.shape == (0, 3) and sh.dtype == torch.int64
    ei, sh = radius_graph(
        torch.zeros(0, 3), 1.0, batch=torch.zeros(0, dtype=torch.long), cell=torch.eye(3), backend=backend
    )
    assert ei.shape == (2, 0) and sh.shape == (0, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_coincident_and_isolated_atoms(backend):
    pos = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [10.0, 0.0, 0.0]])
    ei, sh = radius_graph(pos, 1.0, backend=backend)
    got = edge_set(ei, sh)
    pairs = {(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)}
    assert got == {(a, b, 0, 0, 0) for a, b in pairs}
    assert 3 not in ei  # isolated


def test_backends_agree_exactly():
    if not vesin_available():
        pytest.skip("vesin not installed")
    gen = torch.Generator().manual_seed(13)
    cells = torch.stack([random_cell(gen, 0.8, 5.0), random_cell(gen, 0.2, 1.5)])
    pos = torch.cat([inside(cells[0], 50, gen), inside(cells[1], 5, gen)]) * 1.3  # partly unwrapped
    batch = torch.cat([torch.zeros(50, dtype=torch.long), torch.ones(5, dtype=torch.long)])
    pbc = torch.tensor([[True, False, True], [True, True, True]])
    for kw in ({}, {"max_num_neighbors": 5}, {"self_loops": True}):
        a = radius_graph(pos, 2.0, batch=batch, cell=cells, pbc=pbc, backend="torch", **kw)
        b = radius_graph(pos, 2.0, batch=batch, cell=cells, pbc=pbc, backend="vesin", **kw)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_permutation_equivariance(backend):
    gen = torch.Generator().manual_seed(14)
    cell = random_cell(gen, 0.6, 4.5)
    pos = inside(cell, 50, gen) * 1.5
    perm = torch.randperm(50, generator=gen)
    inv = torch.argsort(perm)
    before = edge_set(*radius_graph(pos, 2.0, cell=cell, backend=backend))
    after = edge_set(*radius_graph(pos[perm], 2.0, cell=cell, backend=backend))
    assert after == {(int(inv[j]), int(inv[i]), *s) for j, i, *s in before}


def test_deterministic_and_gradient_free_inputs():
    gen = torch.Generator().manual_seed(15)
    pos = torch.rand(60, 3, generator=gen, dtype=torch.float64, requires_grad=True) * 3.0
    a = radius_graph(pos, 1.0, cell=torch.eye(3) * 3.0)
    b = radius_graph(pos, 1.0, cell=torch.eye(3) * 3.0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"pos": torch.zeros(4, 2)}, ValueError, r"pos must have shape \[N, 3\], got \(4, 2\)"),
        ({"pos": torch.zeros(4)}, ValueError, r"pos must have shape \[N, 3\]"),
        ({"pos": [[0.0, 0.0, 0.0]]}, TypeError, "pos must be a torch.Tensor"),
        ({"pos": torch.zeros(4, 3, dtype=torch.long)}, TypeError, "floating-point dtype, got torch.int64"),
        ({"r_max": 0.0}, ValueError, "r_max must be finite and > 0, got 0.0"),
        ({"r_max": -1.0}, ValueError, "r_max must be finite and > 0, got -1.0"),
        ({"r_max": float("nan")}, ValueError, "r_max must be finite and > 0, got nan"),
        ({"r_max": float("inf")}, ValueError, "r_max must be finite and > 0, got inf"),
        ({"r_max": "1"}, TypeError, "r_max must be a real number"),
        ({"cell": torch.eye(2)}, ValueError, r"cell must have shape \[3, 3\] or \[B, 3, 3\], got \(2, 2\)"),
        ({"cell": torch.zeros(3, 3)}, ValueError, "cell of graph 0 is singular"),
        (
            {"cell": torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1.0]])},
            ValueError,
            "cell of graph 0 is singular",
        ),
        ({"cell": torch.full((3, 3), float("nan"))}, ValueError, "cell contains NaN or inf"),
        ({"cell": torch.eye(3), "pbc": torch.tensor([True, False])}, ValueError, r"pbc must have shape \[3\]"),
        ({"cell": torch.eye(3), "pbc": torch.ones(2, 3, dtype=torch.bool)}, ValueError, "B = 1 graphs"),
        ({"cell": torch.eye(3), "pbc": torch.ones(3)}, TypeError, "pbc must be booleans"),
        ({"pbc": torch.tensor([True, True, True])}, ValueError, "pbc has periodic directions but no cell"),
        ({"batch": torch.zeros(3, dtype=torch.long)}, ValueError, r"batch must have shape \[N\] = \[4\]"),
        ({"batch": torch.zeros(4)}, TypeError, "batch must have an integer dtype"),
        ({"batch": torch.tensor([0, -1, 0, 0])}, ValueError, "batch indices must be >= 0"),
        (
            {"batch": torch.tensor([0, 1, 2, 2]), "cell": torch.eye(3).expand(2, 3, 3)},
            ValueError,
            "batch has 3 graphs",
        ),
        ({"max_num_neighbors": -1}, ValueError, "max_num_neighbors must be >= 0, got -1"),
        ({"max_num_neighbors": 2.5}, TypeError, "max_num_neighbors must be an int"),
        ({"backend": "cuda-magic"}, ValueError, "backend must be one of"),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = {"pos": torch.rand(4, 3), "r_max": 1.0}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        radius_graph(**args)


def test_vesin_backend_requires_package(monkeypatch):
    monkeypatch.setattr(nbr, "vesin_available", lambda: False)
    with pytest.raises(ImportError, match="'vesin' package is not installed"):
        radius_graph(torch.rand(4, 3), 1.0, backend="vesin")
    assert radius_graph(torch.rand(4, 3), 1.0)[0].dtype == torch.int64  # default backend needs nothing


def test_non_finite_positions_name_first_bad_atom():
    pos = torch.rand(6, 3)
    pos[4, 1] = float("nan")
    pos[5, 0] = float("inf")
    with pytest.raises(ValueError, match="first bad atom index is 4"):
        radius_graph(pos, 1.0)
    pos = torch.rand(3, 3, dtype=torch.float64)
    pos[2, 2] = -float("inf")
    with pytest.raises(ValueError, match="first bad atom index is 2"):
        radius_graph(pos, 1.0)


def test_trailing_empty_graphs_and_scalar_pbc():
    pos = torch.rand(10, 3, dtype=torch.float64) * 2
    batch = torch.zeros(10, dtype=torch.long)
    reference = edge_set(*radius_graph(pos, 1.0))
    # pbc / cell rows for graphs 1 and 2, which have no atoms, are accepted.
    assert edge_set(*radius_graph(pos, 1.0, batch=batch, pbc=torch.zeros(3, 3, dtype=torch.bool))) == reference
    cells = torch.eye(3, dtype=torch.float64).expand(3, 3, 3) * 2
    periodic = edge_set(*radius_graph(pos, 1.0, batch=batch, cell=cells, pbc=True))
    assert periodic == edge_set(*radius_graph(pos, 1.0, cell=cells[0], pbc=[True, True, True]))
    assert periodic == brute_force(pos, 1.0, cells[0])


def test_open_graph_accepts_any_cell():
    # A non-periodic graph never uses its cell, so a zero cell (ASE's molecule default) is fine.
    pos = torch.rand(20, 3, dtype=torch.float64) * 2
    got = edge_set(*radius_graph(pos, 1.0, cell=torch.zeros(3, 3), pbc=torch.tensor([False] * 3)))
    assert got == brute_force(pos, 1.0)


# ----------------------------------------------------------------------------------------------------
# scatter ops


def segments(index, dim_size):
    return [torch.nonzero(index == s).squeeze(1) for s in range(dim_size)]


def reference_reduce(src, index, dim, dim_size, reduce):
    moved = src.movedim(dim, 0)
    out = []
    for rows in segments(index, dim_size):
        part = moved[rows]
        if part.shape[0] == 0:
            out.append(torch.zeros_like(moved[0]))
        elif reduce == "sum":
            out.append(part.sum(0))
        elif reduce == "mean":
            out.append(part.mean(0))
        else:
            out.append(part.max(0).values)
    return torch.stack(out).movedim(0, dim)


SCATTERS = {"sum": scatter_sum, "mean": scatter_mean, "max": scatter_max}


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("shape, dim", [((13,), 0), ((13, 4), 0), ((13, 2, 3), 0), ((4, 13), 1), ((2, 13, 3), -2)])
def test_scatter_matches_loops(reduce, shape, dim):
    gen = torch.Generator().manual_seed(20)
    src = torch.randn(*shape, generator=gen, dtype=torch.float64) - 3.0  # negative: max must not clip at 0
    index = torch.randint(0, 5, (src.shape[dim],), generator=gen)
    index[index == 2] = 3  # segment 2 is empty
    dim_size = 7  # segments 5, 6 are empty too
    out = SCATTERS[reduce](src, index, dim=dim, dim_size=dim_size)
    ref = reference_reduce(src, index, dim % src.dim(), dim_size, reduce)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert bool((out.movedim(dim, 0)[[2, 5, 6]] == 0).all())
    default = SCATTERS[reduce](src, index, dim=dim)
    assert default.shape[dim % src.dim()] == int(index.max()) + 1


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_scatter_gradcheck(reduce):
    gen = torch.Generator().manual_seed(21)
    src = torch.randn(9, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 2, 2, 0, 3, 3, 3, 0, 2])
    assert torch.autograd.gradcheck(lambda x: SCATTERS[reduce](x, index, dim_size=5), (src,))


def test_scatter_softmax():
    gen = torch.Generator().manual_seed(22)
    src = torch.randn(11, 3, generator=gen, dtype=torch.float64)
    index = torch.tensor([0, 1, 1, 3, 0, 3, 3, 1, 0, 0, 3])
    out = scatter_softmax(src, index, dim_size=6)
    assert out.shape == src.shape
    for rows in segments(index, 4):
        if rows.numel():
            torch.testing.assert_close(out[rows], torch.softmax(src[rows], dim=0), rtol=1e-12, atol=1e-14)
    non_empty = (torch.bincount(index, minlength=4) > 0).double()[:, None].expand(4, 3)  # segment 2 is empty
    torch.testing.assert_close(scatter_sum(out, index), non_empty, rtol=1e-12, atol=1e-12)

    big = torch.tensor([1000.0, 999.0, -1000.0, 1000.0, 1e4], dtype=torch.float64)
    idx = torch.tensor([0, 0, 1, 1, 2])
    out = scatter_softmax(big, idx)
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out[:2], torch.softmax(big[:2], 0), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(out[2:4], torch.tensor([0.0, 1.0], dtype=torch.float64), rtol=0, atol=1e-300)
    assert float(out[4]) == 1.0

    src_g = src.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: scatter_softmax(x, index, dim_size=6), (src_g,))

    transposed = scatter_softmax(src.T.contiguous(), index, dim=1)
    torch.testing.assert_close(transposed, scatter_softmax(src, index).T, rtol=1e-12, atol=1e-14)


def test_scatter_empty_src_and_validation():
    src = torch.zeros(0, 4)
    index = torch.zeros(0, dtype=torch.long)
    assert scatter_sum(src, index, dim_size=3).shape == (3, 4)
    assert bool((scatter_max(src, index, dim_size=3) == 0).all())
    assert bool((scatter_mean(src, index, dim_size=3) == 0).all())
    assert scatter_sum(src, index).shape == (0, 4)
    assert scatter_softmax(src, index).shape == (0, 4)

    src = torch.randn(5, 2)
    with pytest.raises(TypeError, match="index must have dtype int64"):
        scatter_sum(src, torch.zeros(5))
    with pytest.raises(ValueError, match=r"index must be 1-D .* got shape \(5, 1\)"):
        scatter_sum(src, torch.zeros(5, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \[5\]\), got shape \(4,\)"):
        scatter_mean(src, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="index must be >= 0"):
        scatter_max(src, torch.tensor([0, 1, -1, 0, 0]))
    with pytest.raises(ValueError, match="dim_size=2 is too small"):
        scatter_softmax(src, torch.tensor([0, 1, 2, 0, 0]), dim_size=2)
    with pytest.raises(ValueError, match="dim=2 is out of range"):
        scatter_sum(src, torch.zeros(5, dtype=torch.long), dim=2)
    int32 = scatter_sum(src, torch.tensor([0, 1, 1, 0, 0], dtype=torch.int32))
    torch.testing.assert_close(int32, scatter_sum(src, torch.tensor([0, 1, 1, 0, 0])))


# ----------------------------------------------------------------------------------------------------
# batch helpers


def test_batch_helpers_round_trip():
    sizes = torch.tensor([3, 0, 2, 4])
    batch = batch_from_sizes(sizes)
    assert batch.tolist() == [0, 0, 0, 2, 2, 3, 3, 3, 3]
    ptr = ptr_from_batch(batch, num_graphs=4)
    assert ptr.tolist() == [0, 3, 3, 5, 9]
    assert torch.equal(batch_from_ptr(ptr), batch)
    assert torch.equal(sizes_from_batch(batch, num_graphs=4), sizes)
    assert ptr_from_batch(batch).tolist() == [0, 3, 3, 5, 9]
    assert sizes_from_batch(torch.tensor([2, 0, 2])).tolist() == [1, 0, 2]
    assert batch_from_sizes(torch.zeros(0, dtype=torch.long)).shape == (0,)

    with pytest.raises(ValueError, match="batch must be sorted"):
        ptr_from_batch(torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="num_graphs=2 is smaller than max"):
        sizes_from_batch(torch.tensor([0, 2]), num_graphs=2)
    with pytest.raises(ValueError, match="ptr must be non-decreasing"):
        batch_from_ptr(torch.tensor([0, 3, 2]))
    with pytest.raises(ValueError, match="start at 0"):
        batch_from_ptr(torch.tensor([1, 3]))
    with pytest.raises(TypeError, match="sizes must have dtype int64"):
        batch_from_sizes(torch.tensor([1.0, 2.0]))
