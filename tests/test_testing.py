import pytest
import torch

from euclidnet.testing import assert_equivariant, equivariance_error


def cross(a, b):
    return torch.linalg.cross(a, b)


def test_cross_product_is_a_pseudovector():
    rep = assert_equivariant(cross, ["1o", "1o"], "1e")
    assert rep.max_error < 1e-13
    # Declaring it a vector fails only under improper rotations, and the message says so.
    with pytest.raises(AssertionError, match="improper rotation"):
        assert_equivariant(cross, ["1o", "1o"], "1o")
    rep = equivariance_error(cross, ["1o", "1o"], "1o")
    assert rep.errors[("rotation", 0, "1x1o")] < 1e-13
    assert rep.errors[("improper rotation", 0, "1x1o")] > 1e-2


def test_errors_reported_per_block():
    # First block correct (a norm, 0e), second block wrong (a fixed component treated as a vector).
    def fn(x):
        return torch.cat([x.norm(dim=-1, keepdim=True), x * x], dim=-1)

    rep = equivariance_error(fn, "1o", "0e + 1o")
    per = rep.per_irrep()
    assert per[(0, "1x0e")] < 1e-13
    assert per[(0, "1x1o")] > 1e-2
    assert "1x1o" in rep.table()


def test_translation_and_points():
    def centroid(pos):
        return pos.mean(0, keepdim=True)

    assert_equivariant(centroid, "cartesian_points", "cartesian_points")

    def radius_of_gyration(pos):
        return (pos - pos.mean(0)).pow(2).sum(-1).mean().reshape(1, 1)

    assert_equivariant(radius_of_gyration, "cartesian_points", "0e")

    def norm_of_positions(pos):  # rotation invariant but not translation invariant
        return pos.norm(dim=-1, keepdim=True)

    rep = equivariance_error(norm_of_positions, "cartesian_points", "0e")
    assert rep.errors[("rotation", 0, "1x0e")] < 1e-13
    assert rep.errors[("translation", 0, "1x0e")] > 1e-2


def test_permutation():
    def per_node(pos, feats):
        centred = pos - pos.mean(0)
        return centred.norm(dim=-1, keepdim=True) * feats

    assert_equivariant(
        per_node, ["cartesian_points", "2x0e"], "2x0e", do_permutation=True, node_dims_in=[0, 0], node_dims_out=[0]
    )

    def order_dependent(pos, feats):
        return torch.cumsum(feats, 0)

    with pytest.raises(AssertionError, match="permutation"):
        assert_equivariant(
            order_dependent,
            ["cartesian_points", "2x0e"],
            "2x0e",
            do_permutation=True,
            node_dims_in=[0, 0],
            node_dims_out=[0],
        )


def test_explicit_args_and_invariant_inputs():
    species = torch.tensor([0, 1, 1, 0])

    def fn(pos, z):
        return (pos - pos.mean(0)) * (z[:, None] + 1.0)

    pos = torch.randn(4, 3)
    assert_equivariant(fn, ["cartesian_points", "invariant"], "1o", args_in=(pos, species))


def test_bad_specs_and_shapes():
    with pytest.raises(ValueError, match="neither irreps"):
        equivariance_error(lambda x: x, "bogus", "1o")
    with pytest.raises(ValueError, match="does not match irreps"):
        equivariance_error(lambda x: x, "1o", "2e")
    with pytest.raises(ValueError, match="cannot be generated"):
        equivariance_error(lambda x: x, "invariant", "1o")
