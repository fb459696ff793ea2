"""Symmetry tools: point-group detection, Curie's principle, symmetry breaking by input gradients."""

import math

import pytest
import torch

from euclidnet.groups import CGNet, point_group, point_group_order
from euclidnet.o3 import Irreps, rand_matrix
from euclidnet.symmetry import (
    MOLECULES,
    curie_check,
    detect_point_group,
    fixed_subspace_dim,
    methane,
    square_to_rectangle,
    sulfur_hexafluoride,
    symmetrize_displacement,
    symmetry_operations_valid,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _place(pos, seed):
    g = torch.Generator().manual_seed(seed)
    R = rand_matrix(generator=g, dtype=torch.float64)
    return pos @ R.T + torch.randn(3, generator=g, dtype=torch.float64) * 5, g


@pytest.mark.parametrize("noise", [0.0, 0.01])
@pytest.mark.parametrize("mol", list(MOLECULES))
def test_molecule_point_groups(mol, noise):
    build, expected = MOLECULES[mol]
    species, pos = build()
    x, g = _place(pos, seed=hash(mol) % 1000)
    x = x + noise * torch.randn(x.shape, generator=g, dtype=torch.float64)
    res = detect_point_group(x, species, tol=0.1)
    assert res.name == expected
    assert res.order == point_group_order(expected) and res.consistent
    # the operations are symmetries of the (noisy) cloud, are orthogonal, and are closed under products
    assert bool(symmetry_operations_valid(x, res.operations, species, tol=0.1).all())
    ops = res.operations
    assert torch.allclose(ops @ ops.transpose(1, 2), torch.eye(3).expand_as(ops), atol=1e-9)
    prods = (ops[:, None] @ ops[None]).reshape(-1, 3, 3)
    dist = (prods[:, None] - ops[None]).abs().amax(dim=(-1, -2)).min(1).values
    assert float(dist.max()) < 0.05
    # the permutations respect species
    sp = list(species)
    for perm in res.permutations:
        assert [sp[int(j)] for j in perm] == sp


def test_species_are_respected():
    species, pos = methane()
    assert detect_point_group(pos, ["C", "F", "H", "H", "H"]).name == "C3v"  # CH3F
    assert detect_point_group(pos, ["C", "F", "F", "H", "H"]).name == "C2v"  # CH2F2
    assert detect_point_group(pos, ["C", "F", "Cl", "H", "H"]).name == "Cs"
    assert detect_point_group(pos).name == "Td"  # a regular tetrahedron plus its centre


def test_tolerance_semantics():
    species, pos = sulfur_hexafluoride()
    g = torch.Generator().manual_seed(0)
    noisy = pos + 0.01 * torch.randn(pos.shape, generator=g, dtype=torch.float64)
    assert detect_point_group(noisy, species, tol=0.1).name == "Oh"
    assert detect_point_group(noisy, species, tol=1e-4).name == "C1"  # tolerance below the noise: symmetry lost
    # a distortion larger than tol lowers the symmetry: stretch one S-F bond by 0.3 A
    stretched = pos.clone()
    stretched[1, 0] += 0.3
    assert detect_point_group(stretched, species, tol=0.1).name == "C4v"


def test_linear_and_single_atom():
    co2 = torch.tensor([[0.0, 0, 0], [0, 0, 1.16], [0, 0, -1.16]])
    assert detect_point_group(co2, ["C", "O", "O"]).name == "D*h"
    hcn = torch.tensor([[0.0, 0, -1.066], [0, 0, 0], [0, 0, 1.156]])
    assert detect_point_group(hcn, ["H", "C", "N"]).name == "C*v"
    assert detect_point_group(torch.zeros(1, 3), ["Ar"]).name == "Kh"


def _orbit_cloud(name, seed):
    G = point_group(name)
    g = torch.Generator().manual_seed(seed)
    motif = torch.randn(4, 3, generator=g, dtype=torch.float64)  # four species: generic, chiral
    pos = (G.elements @ motif.T).permute(0, 2, 1).reshape(-1, 3)
    R = rand_matrix(generator=g, dtype=torch.float64)
    return pos @ R.T, [0, 1, 2, 3] * G.order


FAST_GROUPS = ["C1", "Cs", "Ci", "C3", "C2v", "C2h", "D3", "D2d", "S4"]
SLOW_GROUPS = [
    "C6",
    "C3v",
    "C4v",
    "C3h",
    "D2",
    "D6",
    "D2h",
    "D3h",
    "D4h",
    "D6h",
    "D3d",
    "S6",
    "S8",
    "T",
    "Th",
    "Td",
    "O",
]


@pytest.mark.parametrize("name", FAST_GROUPS)
def test_generic_orbits_have_exactly_the_group(name):
    """The orbit of a generic 4-species motif under G has symmetry group exactly G."""
    pos, sp = _orbit_cloud(name, seed=1)
    res = detect_point_group(pos, sp, tol=1e-3)
    assert res.name == name and res.order == point_group_order(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_GROUPS + ["Oh", "I", "Ih"])
def test_generic_orbits_have_exactly_the_group_all(name):
    pos, sp = _orbit_cloud(name, seed=2)
    res = detect_point_group(pos, sp, tol=1e-3)
    assert res.name == name and res.order == point_group_order(name)


def test_detection_bad_input():
    with pytest.raises(ValueError, match="shape"):
        detect_point_group(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="tol"):
        detect_point_group(torch.zeros(2, 3), tol=0)
    with pytest.raises(ValueError, match="species"):
        detect_point_group(torch.zeros(3, 3), ["H", "H"])
    with pytest.raises(ValueError, match="NaN"):
        detect_point_group(torch.full((2, 3), float("nan")))


# -- Curie's principle --------------------------------------------------------------------------------------


def test_fixed_subspace_dims_match_textbook_character_tables():
    """Number of totally symmetric functions of each degree (independent values from the character tables)."""
    td = point_group("Td").elements
    oh = point_group("Oh").elements
    expected_td = {"0e": 1, "1o": 0, "2e": 0, "3o": 1, "4e": 1}  # xyz at l=3; x^4 + y^4 + z^4 at l=4
    expected_oh = {"0e": 1, "1o": 0, "2e": 0, "3o": 0, "4e": 1, "5o": 0, "6e": 1, "8e": 1}  # cubic harmonics
    for ir, n in expected_td.items():
        assert fixed_subspace_dim(ir, td) == n, ("Td", ir)
    for ir, n in expected_oh.items():
        assert fixed_subspace_dim(ir, oh) == n, ("Oh", ir)


def _cg_features_fn(model, species_signal, irreps, channels, dim):
    """positions [N, 3] -> the CG-net features of one irrep, [channels, dim]."""

    def fn(pos):
        f = model.features(pos[None], species_signal[None])
        return torch.cat([f[ir][0].reshape(-1) for _, ir in irreps], dim=0).reshape(channels, dim)

    return fn


@pytest.mark.parametrize("build", [methane, sulfur_hexafluoride], ids=["tetrahedron", "octahedron"])
def test_curie_principle_on_symmetric_inputs(build):
    torch.manual_seed(0)
    species, pos = build()
    names = sorted(set(species))
    signal = torch.tensor([[float(s == n) for n in names] for s in species], dtype=torch.float64)
    model = CGNet(in_channels=len(names), lmax=4, channels=2, n_layers=1, n_radial=3, r_max=2.0).double()
    x, _ = _place(pos, seed=3)
    res = detect_point_group(x, species, tol=1e-6)
    center = res.center
    x = x - center
    feats = model.features(x[None], signal[None])
    for ir in [i for i in feats if i.l <= 4]:
        fn = _cg_features_fn(model, signal, Irreps([(1, ir)]), feats[ir].shape[1], ir.dim)
        ch = curie_check(fn, x, res.operations, Irreps([(1, ir)]))
        assert ch.holds(atol=1e-9), (ir, ch)
        if ch.fixed_dim == 0:
            assert ch.norm <= 1e-9, ir  # e.g. no dipole / quadrupole for Td and Oh inputs
    # a less symmetric input can have a dipole: the constraint really comes from the input's symmetry
    y = x.clone()
    y[1] = y[1] * 1.2
    f1 = model.features(y[None], signal[None])[Irreps("1o")[0].ir]
    assert f1.abs().max() > 1e-3


# -- symmetry breaking ------------------------------------------------------------------------------------------


def test_square_to_rectangle_symmetry_breaking():
    out = square_to_rectangle(n_steps=150)
    assert out["input_group"] == "D4h" and out["output_group"] == "D4h"  # Curie: the model keeps D4h
    assert out["breaking_group"] == "D2h" and out["final_group"] == "D2h"  # the order parameter breaks D4h -> D2h
    assert out["breaking_gradient_norm"] > 1e-3
    # Curie: with D4h-invariant moves the loss cannot go below the best square's loss 2 (bx - by)^2 = 1/3 ...
    assert math.isclose(out["curie_floor"], 2 * (math.sqrt(1.5) - 1 / math.sqrt(1.5)) ** 2)
    assert out["loss_symmetric_descent"] >= out["curie_floor"] - 1e-9
    # ... while following the symmetry-breaking gradient goes below it
    assert out["loss_free_descent"] < 0.5 * out["curie_floor"]
    # the order parameter is the B1g (rectangular) distortion: equal and opposite stretches along x and y
    v = out["breaking"]
    assert torch.allclose(v[:, 2], torch.zeros(4), atol=1e-12)
    assert torch.allclose(v[:, 0].abs(), v[:, 1].abs(), atol=1e-9)
    assert torch.allclose((v[:, 0] * torch.tensor([1.0, 1, -1, -1])).sign().unique().abs(), torch.ones(1))


def test_symmetrize_displacement_is_a_projector():
    species, pos = methane()
    res = detect_point_group(pos, species, tol=1e-6)
    v = torch.randn(5, 3, dtype=torch.float64)
    P = symmetrize_displacement(v, res.operations, res.permutations)
    assert torch.allclose(symmetrize_displacement(P, res.operations, res.permutations), P, atol=1e-12)
    # Td-invariant displacement fields of CH4 = breathing of the four H (one dimension) : character theory
    basis = torch.eye(15, dtype=torch.float64).reshape(15, 5, 3)
    M = torch.stack([symmetrize_displacement(b, res.operations, res.permutations).reshape(-1) for b in basis])
    assert round(float(torch.trace(M))) == 1
    assert math.isclose(float(torch.linalg.matrix_rank(M)), 1.0)
