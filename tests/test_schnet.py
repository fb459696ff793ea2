import math

import pytest
import torch

from euclidnet.graph.data import AtomicGraph, collate
from euclidnet.models import build_model
from euclidnet.models.schnet import GaussianRBF, SchNet, cosine_cutoff, shifted_softplus
from euclidnet.testing import assert_equivariant


@pytest.fixture(autouse=True)
def _one_thread():
    # these graphs are tiny: intra-op threads only add contention on a shared machine
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _model(**kw):
    torch.manual_seed(0)
    args = dict(num_types=3, r_max=2.5, num_features=12, num_interactions=2, num_rbf=10)
    args.update(kw)
    return SchNet(**args)


def _cluster(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g) * 1.1, torch.randint(0, 3, (n,), generator=g)


def test_registered():
    m = build_model("schnet", num_types=2, num_features=4, num_interactions=1, num_rbf=4)
    assert isinstance(m, SchNet)
    assert m.r_max == 5.0 and m.irreps_out["energy"] == "0e" and m.irreps_out["forces"] == "1o"


def test_building_blocks():
    x = torch.tensor([-3.0, 0.0, 2.0])
    torch.testing.assert_close(shifted_softplus(x), torch.log(1 + torch.exp(x)) - math.log(2.0))
    r = torch.tensor([0.0, 1.0, 2.0, 2.5])
    torch.testing.assert_close(cosine_cutoff(r, 2.0), torch.tensor([1.0, 0.5, 0.0, 0.0]))
    rbf = GaussianRBF(4.0, 5, gamma=2.0)
    torch.testing.assert_close(rbf(torch.tensor([1.0])), torch.exp(-2.0 * (1.0 - torch.arange(5.0)) ** 2)[None])


def test_energy_invariant_forces_equivariant():
    m = _model()
    pos, types = _cluster()

    def fn(p, t):
        o = m(AtomicGraph(pos=p, atom_types=t), compute_forces=True)
        return o["energy"][:, None], o["forces"], o["node_energy"][:, None]

    assert_equivariant(
        fn, ["cartesian_points", "invariant"], ["0e", "1o", "0e"], args_in=(pos, types),
        do_permutation=True, node_dims_in=[0, 0], node_dims_out=[None, 0, 0], ntrials=3,
    )


def test_forces_match_finite_differences():
    m = _model()
    pos, types = _cluster(6, seed=1)
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


def test_stress_matches_strain_derivative():
    m = _model(r_max=2.0)
    g = torch.Generator().manual_seed(2)
    cell = torch.tensor([[3.1, 0.0, 0.0], [0.4, 2.9, 0.0], [0.2, -0.3, 3.3]])
    pos = torch.rand(4, 3, generator=g) @ cell
    types = torch.randint(0, 3, (4,), generator=g)
    out = m(AtomicGraph(pos=pos, atom_types=types, cell=cell), compute_stress=True)
    vol = torch.linalg.det(cell).abs()
    h = 1e-6
    fd = torch.zeros(3, 3)
    for a in range(3):
        for b in range(3):
            eps = torch.zeros(3, 3)
            eps[a, b] = eps[b, a] = h / 2 if a != b else h
            e = []
            for s in (1, -1):
                f = torch.eye(3) + s * eps
                e.append(m(AtomicGraph(pos=pos @ f, atom_types=types, cell=cell @ f))["energy"].sum())
            fd[a, b] = (e[0] - e[1]) / (2 * h) / vol
    torch.testing.assert_close(out["stress"][0], fd, atol=1e-7, rtol=1e-5)


def test_energy_continuous_across_cutoff():
    m = _model(r_max=2.0)
    types = torch.tensor([0, 1, 2])
    base = torch.tensor([[0.0, 0.0, 0.0], [-0.9, 0.3, 0.0]])
    direction = torch.tensor([0.6, 0.0, 0.8])

    def energy_forces(dist):
        pos = torch.cat([base, (dist * direction)[None]])
        o = m(AtomicGraph(pos=pos, atom_types=types), compute_forces=True)
        return o["energy"].sum().detach(), o["forces"].detach()

    e_in, f_in = energy_forces(2.0 - 1e-7)
    e_out, f_out = energy_forces(2.0 + 1e-7)
    assert abs(float(e_in - e_out)) < 1e-10
    assert float((f_in - f_out).abs().max()) < 1e-6
    # the third atom does not interact at all beyond the cutoff: same energy as far away
    e_far, _ = energy_forces(10.0)
    assert abs(float(e_out - e_far)) < 1e-12


def test_finite_gradients_at_coincident_atoms_and_at_cutoff():
    m = _model(r_max=2.0)
    types = torch.tensor([0, 1, 1])
    for pos in (
        torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.5, 0.2]]),  # two coincident atoms
        torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [1.0, 1.0, 0.0]]),  # a pair exactly at r_max
    ):
        o = m(AtomicGraph(pos=pos, atom_types=types), compute_forces=True)
        assert torch.isfinite(o["energy"]).all() and torch.isfinite(o["forces"]).all()
        # parameter gradients are finite as well
        m.zero_grad()
        (o["energy"].sum() + o["forces"].pow(2).sum()).backward()
        assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_batching_matches_separate_graphs():
    m = _model()
    graphs = [AtomicGraph(pos=p, atom_types=t) for p, t in (_cluster(5, 3), _cluster(7, 4))]
    batched = m(collate(graphs), compute_forces=True)
    for k, g in enumerate(graphs):
        single = m(g, compute_forces=True)
        torch.testing.assert_close(batched["energy"][k], single["energy"][0])
    torch.testing.assert_close(
        batched["forces"], torch.cat([m(g, compute_forces=True)["forces"] for g in graphs])
    )


def test_classifier_readout_invariant():
    m = _model(num_outputs=4, readout="mean")
    assert m.irreps_out == {"logits": "4x0e"}
    pos, types = _cluster(6, seed=5)

    def fn(p, t):
        return m(AtomicGraph(pos=p, atom_types=t))["logits"]

    assert_equivariant(fn, ["cartesian_points", "invariant"], ["4x0e"], args_in=(pos, types),
                       do_permutation=True, node_dims_in=[0, 0], node_dims_out=[None])
    with pytest.raises(ValueError, match="energy model"):
        m(AtomicGraph(pos=pos, atom_types=types), compute_forces=True)


def test_untyped_graph_and_float32():
    m = _model(num_types=1).float()
    pos = _cluster(5)[0].float()
    o = m(AtomicGraph(pos=pos), compute_forces=True)
    assert o["energy"].dtype == torch.float32 and o["forces"].shape == (5, 3)
    R = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0].float()
    o2 = m(AtomicGraph(pos=pos @ R.T), compute_forces=True)
    torch.testing.assert_close(o2["energy"], o["energy"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(o2["forces"], o["forces"] @ R.T, atol=1e-5, rtol=1e-4)


def test_bad_inputs():
    m = _model()
    pos, types = _cluster(4)
    with pytest.raises(ValueError, match="atom type 7"):
        m(AtomicGraph(pos=pos, atom_types=torch.tensor([0, 1, 7, 2])))
    with pytest.raises(TypeError, match="float32"):
        m(AtomicGraph(pos=pos.float(), atom_types=types))
    with pytest.raises(ValueError, match="r_max"):
        SchNet(r_max=-1.0)
    with pytest.raises(ValueError, match="readout"):
        SchNet(readout="max")
    with pytest.raises(ValueError, match="num_outputs"):
        SchNet(num_outputs=0)
