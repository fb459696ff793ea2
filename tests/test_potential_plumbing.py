"""AtomicGraph and energy_forces_stress checked on an independent model: a Lennard-Jones pair potential."""

import pytest
import torch

from euclidnet.graph.data import AtomicGraph, collate
from euclidnet.graph.scatter import scatter_sum
from euclidnet.models import energy_forces_stress


def lj_energy(graph, pos, cell):
    vec = graph.edge_vectors(pos, cell)
    r2 = (vec * vec).sum(-1)
    inv6 = (1.0 / r2) ** 3
    pair = 0.5 * 4 * (inv6 * inv6 - inv6)  # each pair is seen twice (i->j and j->i)
    atom = scatter_sum(pair, graph.edge_index[1], dim_size=graph.num_nodes)
    return scatter_sum(atom, graph.batch, dim_size=graph.num_graphs)


def _crystal(seed=0):
    g = torch.Generator().manual_seed(seed)
    cell = torch.tensor([[3.2, 0.0, 0.0], [0.9, 3.0, 0.0], [0.4, 0.7, 3.3]])
    frac = torch.rand(5, 3, generator=g)
    pos = frac @ cell + 0.05 * torch.randn(5, 3, generator=g)
    return AtomicGraph(pos=pos, atom_types=torch.zeros(5, dtype=torch.long), cell=cell)


def test_forces_are_minus_energy_gradient_by_finite_differences():
    g = torch.Generator().manual_seed(1)
    pos = torch.randn(6, 3, generator=g) * 1.3
    graph = AtomicGraph(pos=pos).with_edges(3.0)
    out = energy_forces_stress(lj_energy, graph)
    h = 1e-6
    fd = torch.zeros_like(pos)
    for a in range(6):
        for d in range(3):
            p, m = pos.clone(), pos.clone()
            p[a, d] += h
            m[a, d] -= h
            ep = lj_energy(graph, p, None)
            em = lj_energy(graph, m, None)
            fd[a, d] = -(ep - em).sum() / (2 * h)
    torch.testing.assert_close(out["forces"], fd, atol=1e-6 * max(1.0, fd.abs().max().item()), rtol=1e-6)


def test_stress_equals_strain_derivative_on_periodic_cell():
    graph = _crystal().with_edges(2.5)
    out = energy_forces_stress(lj_energy, graph, compute_stress=True)
    cell = graph.cell[0]
    vol = torch.linalg.det(cell)
    h = 1e-6
    fd = torch.zeros(3, 3)
    for i in range(3):
        for j in range(3):
            E = []
            for s in (h, -h):
                eps = torch.zeros(3, 3)
                eps[i, j] += s / 2
                eps[j, i] += s / 2
                F = torch.eye(3) + eps
                strained = AtomicGraph(pos=graph.pos @ F, cell=(cell @ F)[None]).with_edges(2.5)
                E.append(lj_energy(strained, strained.pos, strained.cell).sum())
            fd[i, j] = (E[0] - E[1]) / (2 * h) / vol
    torch.testing.assert_close(out["stress"][0], fd, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["stress"][0], out["stress"][0].T)


def test_collate_and_edge_offsets():
    a = _crystal(0).with_edges(2.5)
    b = AtomicGraph(pos=torch.randn(4, 3), atom_types=torch.zeros(4, dtype=torch.long)).with_edges(2.5)
    batch = collate([a, b])
    assert batch.num_graphs == 2 and batch.num_nodes == 9
    assert batch.cell.shape == (2, 3, 3) and not bool(batch.pbc[1].any())
    e = lj_energy(batch, batch.pos, batch.cell)
    torch.testing.assert_close(e, torch.cat([lj_energy(a, a.pos, a.cell), lj_energy(b, b.pos, None)]))


def test_bad_inputs():
    with pytest.raises(ValueError, match="atom 2"):
        AtomicGraph(pos=torch.tensor([[0.0, 0, 0], [1, 0, 0], [float("nan"), 0, 0]]))
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        AtomicGraph(pos=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="no edges"):
        AtomicGraph(pos=torch.zeros(2, 3)).edge_vectors()
    with pytest.raises(ValueError, match="no cell"):
        energy_forces_stress(lj_energy, AtomicGraph(pos=torch.randn(3, 3)).with_edges(2.0), compute_stress=True)
    with pytest.raises(ValueError, match="atom_types"):
        AtomicGraph(pos=torch.zeros(2, 3), atom_types=torch.zeros(3, dtype=torch.long))
