import pytest
import torch

from euclidnet.graph.data import AtomicGraph, collate
from euclidnet.models import build_model
from euclidnet.models.backbones import MLPMessageBackbone, PointNetPPBackbone
from euclidnet.models.tensor_frames import FrameRepresentation, TensorFrames, _gate_matrices
from euclidnet.o3 import Irrep, Irreps, rand_matrix
from euclidnet.testing import assert_equivariant, equivariance_error

OUT = "0e + 1o + 2e + 0o + 1e"


@pytest.fixture(autouse=True)
def _one_thread():
    # these graphs are tiny: intra-op threads only add contention on a shared machine
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _model(backbone="mlp", frames="learned", **kw):
    torch.manual_seed(0)
    args = dict(
        r_max=2.5, num_types=3, irreps_node_in="1o + 0e", irreps_hidden="4x0e + 2x1o + 1x2e + 1x1e",
        node_outputs={"y": OUT}, graph_outputs={"energy": "0e"}, num_layers=2, mlp_hidden=12,
    )
    args.update(kw)
    return TensorFrames(backbone, frames=frames, **args)


def _cluster(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, 3, generator=g)
    return pos, torch.randint(0, 3, (n,), generator=g), torch.randn(n, 4, generator=g)


def _fn(m, forces=True):
    def fn(p, t, f):
        o = m(AtomicGraph(pos=p, atom_types=t, node_features=f), compute_forces=forces)
        outs = (o["energy"][:, None], o["y"])
        return outs + (o["forces"],) if forces else outs

    return fn


def test_registered():
    m = build_model("tensor_frames", num_types=2, irreps_hidden="2x0e + 1x1o", num_layers=1, mlp_hidden=4)
    assert isinstance(m, TensorFrames)
    assert m.irreps_out["energy"] == "0e" and m.irreps_out["forces"] == "1o"


def test_representation_matches_wigner_d():
    rep = FrameRepresentation(3)
    g = torch.Generator().manual_seed(0)
    R = rand_matrix(5, generator=g, dtype=torch.float64)
    R = torch.cat([R, -R])  # proper and improper
    irreps = Irreps("0e + 0o + 1o + 1e + 2e + 2o + 3o + 3e")
    torch.testing.assert_close(rep(irreps, R), irreps.D_from_matrix(R), atol=1e-12, rtol=0)


@pytest.mark.parametrize("ir", ["0e", "0o", "1o", "1e", "2e", "2o", "3o"])
def test_gate_projectors(ir):
    ir = Irrep(ir)
    p0, q1, q2, q3 = _gate_matrices(ir, torch.float64)
    p1, p2 = p0 + q1, p0 + q1 + q2
    irreps = Irreps([(1, ir)])
    for p in (p0, p1, p2):  # orthogonal projectors, nested P0 <= P1 <= P2
        torch.testing.assert_close(p @ p, p, atol=1e-12, rtol=0)
        torch.testing.assert_close(p, p.T, atol=1e-12, rtol=0)
    torch.testing.assert_close(p1 @ p0, p0, atol=1e-12, rtol=0)
    torch.testing.assert_close(p2 @ p1, p1, atol=1e-12, rtol=0)
    # each projects onto the vectors fixed by its group: O(3), O(2) about x, the reflection z -> -z
    g = torch.Generator().manual_seed(1)
    t = float(torch.rand((), generator=g)) * 6.28
    c, s = torch.cos(torch.tensor(t)), torch.sin(torch.tensor(t))
    rot_x = torch.tensor([[1.0, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64)
    refl_y = torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))
    refl_z = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    for h, p in ((rand_matrix(generator=g, dtype=torch.float64), p0), (-torch.eye(3, dtype=torch.float64), p0),
                 (rot_x, p1), (refl_y, p1), (refl_z, p2)):
        torch.testing.assert_close(irreps.D_from_matrix(h) @ p, p, atol=1e-12, rtol=0)
    # and nothing more: the rank of P1 is the number of O(2)-invariants (1 for l >= 1 of the right parity)
    expected_rank_p0 = 1 if (ir.l == 0 and ir.p == 1) else 0
    assert round(float(torch.trace(p0))) == expected_rank_p0
    assert round(float(torch.trace(p1))) == (1 if ir.p == (-1) ** ir.l else 0)
    torch.testing.assert_close(irreps.D_from_matrix(refl_z) @ (p2 - p1) @ irreps.D_from_matrix(refl_z).T,
                               p2 - p1, atol=1e-12, rtol=0)


@pytest.mark.parametrize("frames", ["learned", "pca"])
def test_frames_are_equivariant(frames):
    m = _model(frames=frames)
    pos, types, feat = _cluster(10, seed=1)
    g = torch.Generator().manual_seed(3)
    out = m(AtomicGraph(pos=pos, atom_types=types, node_features=feat))
    L, conf = out["frames"], out["frame_confidence"]
    full = (conf == 1).all(dim=1)
    assert full.sum() >= 5
    torch.testing.assert_close(L @ L.transpose(1, 2), torch.eye(3).expand(10, 3, 3), atol=1e-12, rtol=0)
    for R in (rand_matrix(generator=g, dtype=torch.float64), -rand_matrix(generator=g, dtype=torch.float64)):
        feat2 = feat @ Irreps("1o+0e").D_from_matrix(R).T
        o2 = m(AtomicGraph(pos=pos @ R.T + 1.5, atom_types=types, node_features=feat2))
        torch.testing.assert_close(o2["frames"][full], (L @ R.T)[full], atol=1e-10, rtol=0)
        torch.testing.assert_close(o2["frame_confidence"], conf, atol=1e-10, rtol=0)


@pytest.mark.parametrize("frames", ["learned", "pca"])
@pytest.mark.parametrize("backbone", ["mlp", "pointnet"])
def test_model_equivariant(backbone, frames):
    m = _model(backbone, frames)
    pos, types, feat = _cluster()
    assert_equivariant(
        _fn(m), ["cartesian_points", "invariant", "1o + 0e"], ["0e", OUT, "1o"], args_in=(pos, types, feat),
        do_permutation=True, node_dims_in=[0, 0, 0], node_dims_out=[None, 0, 0], ntrials=2,
    )


def test_plain_backbone_is_not_equivariant():
    # frames="none" runs the same backbone on global coordinates: the check must catch it
    m = _model(frames="none")
    pos, types, feat = _cluster()
    rep = equivariance_error(_fn(m, forces=False), ["cartesian_points", "invariant", "1o + 0e"], ["0e", OUT],
                             args_in=(pos, types, feat), ntrials=1, do_translation=False)
    assert rep.max_error > 1e-3


def _degenerate(kind, delta, gen):
    if kind == "line":
        t = torch.linspace(-1, 1, 5)[:, None]
        return t * torch.tensor([[0.3, 0.5, 0.8]]) + delta * torch.randn(5, 3, generator=gen)
    if kind == "plane":
        p = torch.randn(6, 3, generator=gen)
        p[:, 2] = delta * torch.randn(6, generator=gen)
        return p
    if kind == "dimer":
        return torch.tensor([[0.0, 0.0, 0.0], [0.7, 0.2, 0.1]]) + delta * torch.randn(2, 3, generator=gen)
    if kind == "square":  # symmetric planar square: degenerate covariance and zero third moments
        return torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [-1.0, 0, 0], [0, -1.0, 0]]) * 0.8 + delta * torch.randn(
            4, 3, generator=gen
        )
    return torch.tensor([[0.3, -0.2, 0.5]])  # single atom


@pytest.mark.parametrize("frames", ["learned", "pca"])
def test_degenerate_neighbourhoods(frames):
    """Exactly and nearly degenerate inputs: finite outputs and equivariance within 1e-6 (float64)."""
    m = _model("mlp", frames, num_types=None, irreps_node_in="1o", num_layers=1)
    gen = torch.Generator().manual_seed(0)

    def fn(p, f):
        o = m(AtomicGraph(pos=p, node_features=f), compute_forces=True)
        return o["energy"][:, None], o["y"], o["forces"]

    for kind in ("line", "plane", "dimer", "square", "single"):
        for delta in (0.0, 1e-9, 1.5e-6, 1e-4):
            pos = _degenerate(kind, delta, gen)
            feat = pos - pos.mean(0)
            o = m(AtomicGraph(pos=pos, node_features=feat), compute_forces=True)
            assert all(torch.isfinite(v).all() for v in o.values()), (kind, delta)
            rep = equivariance_error(fn, ["cartesian_points", "1o"], ["0e", OUT, "1o"], args_in=(pos, feat), ntrials=2)
            assert rep.max_error <= 1e-6 * max(1.0, rep.scale), (kind, delta, rep.table())
            if kind == "single":
                # no direction at all: only invariant scalars survive, every other output is exactly 0
                y = o["y"][0]
                assert float(y[1:].detach().abs().max()) == 0.0
                assert float(o["frame_confidence"].detach().max()) == 0.0


def test_dimer_vectors_along_axis():
    m = _model("pointnet", "learned", num_types=None, irreps_node_in=None)
    pos = torch.tensor([[0.1, 0.2, -0.3], [0.8, -0.1, 0.4]])
    y = m(AtomicGraph(pos=pos))["y"].detach()
    axis = (pos[1] - pos[0]) / (pos[1] - pos[0]).norm()
    v = y[:, 1:4]  # the 1o output
    assert float(v.abs().max()) > 1e-4
    torch.testing.assert_close(torch.linalg.cross(v, axis.expand_as(v)), torch.zeros_like(v), atol=1e-12, rtol=0)
    assert float(y[:, 9:10].abs().max()) == 0.0  # 0o: a dimer is mirror-symmetric, pseudoscalars vanish


def test_forces_match_finite_differences():
    m = _model("mlp", "learned")
    pos, types, feat = _cluster(6, seed=2)
    out = m(AtomicGraph(pos=pos, atom_types=types, node_features=feat), compute_forces=True)
    h = 1e-6
    fd = torch.zeros_like(pos)
    for a in range(pos.shape[0]):
        for d in range(3):
            e = []
            for s in (1, -1):
                p = pos.clone()
                p[a, d] += s * h
                e.append(m(AtomicGraph(pos=p, atom_types=types, node_features=feat))["energy"].sum())
            fd[a, d] = -(e[0] - e[1]) / (2 * h)
    torch.testing.assert_close(out["forces"], fd, atol=1e-6, rtol=1e-5)


def test_batching_and_float32():
    m = _model("pointnet", "pca")
    graphs = []
    for s in (4, 5):
        pos, types, feat = _cluster(6, seed=s)
        graphs.append(AtomicGraph(pos=pos, atom_types=types, node_features=feat))
    batched = m(collate(graphs))
    for k, g in enumerate(graphs):
        torch.testing.assert_close(batched["energy"][k], m(g)["energy"][0])
    m32 = _model("pointnet", "learned").float()
    pos, types, feat = _cluster(9, seed=6)
    assert_equivariant(_fn(m32, forces=False), ["cartesian_points", "invariant", "1o + 0e"], ["0e", OUT],
                       args_in=(pos, types, feat), dtype=torch.float32, atol=1e-4, rtol=1e-4, ntrials=2)


class _TinyBackbone(torch.nn.Module):
    """A user backbone following the protocol: one round of mean-aggregated tensorial messages."""

    def __init__(self, irreps_in, irreps_out):
        super().__init__()
        self.irreps_in, self.irreps_out = Irreps(irreps_in), Irreps(irreps_out)
        self.lin = torch.nn.Linear(2 * self.irreps_in.dim + 3, self.irreps_out.dim)

    def forward(self, x, ctx):
        from euclidnet.graph.scatter import scatter_mean

        msg = torch.cat([ctx.transport(x, self.irreps_in), ctx.edge_vec_local], dim=1)
        agg = scatter_mean(msg * ctx.edge_cutoff[:, None], ctx.dst, dim=0, dim_size=ctx.num_nodes)
        return torch.tanh(self.lin(torch.cat([x, agg], dim=1)))


def test_custom_backbone_and_errors():
    bb = _TinyBackbone("1x0e + 1x1o", "1x1o")
    m = TensorFrames(bb, frames="learned", r_max=2.0, irreps_node_in="1o", node_outputs={"v": "1o"})
    pos = _cluster(7, seed=7)[0]

    def fn(p, f):
        return m(AtomicGraph(pos=p, node_features=f))["v"]

    assert_equivariant(fn, ["cartesian_points", "1o"], ["1o"], args_in=(pos, pos - pos.mean(0)))
    with pytest.raises(ValueError, match="irreps_out must be"):
        TensorFrames(bb, r_max=2.0, irreps_node_in="1o", node_outputs={"v": "2e"})
    with pytest.raises(ValueError, match="frames must be one of"):
        TensorFrames("mlp", frames="canonical")
    with pytest.raises(ValueError, match="backbone must be one of"):
        TensorFrames("transformer")
    with pytest.raises(ValueError, match="node_features must be"):
        m(AtomicGraph(pos=pos))
    with pytest.raises(TypeError, match="float32"):
        m(AtomicGraph(pos=pos.float(), node_features=pos.float()))
    with pytest.raises(ValueError, match="atom type 5"):
        bad_types = torch.tensor([0, 1, 5, 0, 0, 0, 0])
        _model()(AtomicGraph(pos=pos, atom_types=bad_types, node_features=pos.new_zeros(7, 4)))
    with pytest.raises(ValueError, match="transport: expected"):
        m2 = TensorFrames(_BadBackbone("1x0e", "1x0e"), r_max=2.0, graph_outputs={"s": "0e"})
        m2(AtomicGraph(pos=pos))
    for cls in (MLPMessageBackbone, PointNetPPBackbone):
        with pytest.raises(ValueError, match="num_layers"):
            cls("1x0e", "2x0e", "1x0e", num_layers=0)


class _BadBackbone(_TinyBackbone):
    def forward(self, x, ctx):
        return ctx.transport(x[:, :0], self.irreps_in)[: ctx.num_nodes]
