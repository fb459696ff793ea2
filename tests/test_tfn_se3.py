"""Tensor Field Network and SE(3)-Transformer: equivariance, smoothness at the cutoff, errors."""

import pytest
import torch

from euclidnet.graph.data import AtomicGraph
from euclidnet.models import SE3Transformer, TensorFieldNetwork, build_model
from euclidnet.testing import assert_equivariant

OUT = "0e + 0o + 1o + 1e + 2e"


def _models():
    torch.manual_seed(0)
    return {
        "tfn": TensorFieldNetwork(OUT, num_types=2, r_max=2.0, irreps_hidden="8x0e + 2x0o + 4x1o + 4x1e + 2x2e"),
        "se3": SE3Transformer(OUT, num_types=2, r_max=2.0, irreps_hidden="8x0e + 2x0o + 4x1o + 2x1e + 2x2e"),
    }


@pytest.mark.parametrize("name", ["tfn", "se3"])
def test_equivariance_rotation_inversion_translation_permutation(name):
    model = _models()[name]
    g = torch.Generator().manual_seed(1)
    pos = torch.randn(10, 3, generator=g)
    types = torch.randint(0, 2, (10,), generator=g)

    def fn(p, t):
        o = model(AtomicGraph(pos=p, atom_types=t))
        return o["node_features"], o["graph_features"]

    assert_equivariant(
        fn, ["cartesian_points", "invariant"], [OUT, OUT], args_in=(pos, types),
        do_permutation=True, node_dims_in=[0, 0], node_dims_out=[0, None], ntrials=3,
    )


@pytest.mark.parametrize("name", ["tfn", "se3"])
def test_vector_input_features(name):
    torch.manual_seed(0)
    cls = TensorFieldNetwork if name == "tfn" else SE3Transformer
    model = cls("1o + 0e", irreps_node_in="2x0e + 1o", r_max=2.0, reduce=None)
    g = torch.Generator().manual_seed(2)
    pos, feats = torch.randn(7, 3, generator=g), torch.randn(7, 5, generator=g)

    def fn(p, f):
        return model(AtomicGraph(pos=p, node_features=f))["node_features"]

    assert_equivariant(fn, ["cartesian_points", "2x0e + 1o"], ["1o + 0e"], args_in=(pos, feats))


@pytest.mark.parametrize("name", ["tfn", "se3"])
def test_smooth_when_a_neighbour_crosses_the_cutoff(name):
    model = _models()[name]
    r_max = model.r_max
    base = torch.tensor([[0.0, 0.0, 0.0], [0.7, 0.3, 0.0], [0.1, -0.8, 0.4]])
    types = torch.tensor([0, 1, 0, 1])

    def out(d):
        pos = torch.cat([base, torch.tensor([[-d, 0.0, 0.0]])])
        return model(AtomicGraph(pos=pos, atom_types=types))["graph_features"]

    far = out(r_max + 0.5)
    for eps in (1e-3, 1e-5):
        assert (out(r_max - eps) - far).abs().max() < 1e-6
    # Gradients are finite at r_max and at r = 0 (coincident atoms).
    for d in (r_max, 0.0):
        pos = torch.cat([base, torch.tensor([[-d, 0.0, 0.0]])]).requires_grad_()
        y = model(AtomicGraph(pos=pos, atom_types=types))["graph_features"].sum()
        (grad,) = torch.autograd.grad(y, pos)
        assert torch.isfinite(grad).all()


def test_isolated_node_and_registry():
    torch.manual_seed(0)
    m = build_model("se3_transformer", irreps_out="0e + 1o", num_types=1, r_max=1.0)
    pos = torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [5.0, 5, 5]])
    o = m(AtomicGraph(pos=pos, atom_types=torch.zeros(3, dtype=torch.long)))
    assert torch.isfinite(o["node_features"]).all()
    assert isinstance(build_model("tfn", irreps_out="0e", num_types=1), TensorFieldNetwork)


def test_bad_configuration():
    with pytest.raises(ValueError, match="cannot be reached"):
        TensorFieldNetwork("3o", num_types=1, lmax=1, num_layers=1)
    with pytest.raises(ValueError, match="not both"):
        TensorFieldNetwork("0e", num_types=1, irreps_node_in="0e")
    with pytest.raises(ValueError, match="reduce"):
        SE3Transformer("0e", num_types=1, reduce="max")
