"""Groups and representations: axioms, textbook orders / class counts, homomorphisms, bad input."""

import math

import pytest
import torch

from euclidnet.groups import (
    O2,
    O3,
    SO2,
    SO3,
    CircularRep,
    FactorRep,
    FiniteGroup,
    IrrepsRep,
    MatrixRep,
    ProductGroup,
    Regular,
    Standard,
    SumRep,
    TensorRep,
    Trivial,
    check_homomorphism,
    cyclic,
    dihedral,
    equivariant_basis,
    p4m_point_group,
    point_group,
    point_group_order,
    rotation_matrix,
    symmetric,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


POINT_GROUPS = [
    "C1", "Ci", "Cs", "C2", "C3", "C4", "C6", "C2v", "C3v", "C4v", "C6v", "C2h", "C3h", "C4h", "C6h",
    "D2", "D3", "D4", "D6", "D2h", "D3h", "D4h", "D6h", "D2d", "D3d", "D4d", "S4", "S6", "S8",
    "T", "Td", "Th", "O", "Oh", "I", "Ih",
]  # fmt: skip


def _finite_groups():
    gs = [cyclic(1), cyclic(6), cyclic(7), dihedral(4), dihedral(6), symmetric(3), symmetric(4), symmetric(5)]
    gs.append(p4m_point_group())
    gs += [point_group(n) for n in POINT_GROUPS]
    gs.append(ProductGroup(cyclic(2), symmetric(3)).finite)
    return gs


@pytest.mark.parametrize("G", _finite_groups(), ids=lambda g: g.name)
def test_finite_group_axioms(G):
    G.check_axioms()
    # matrices agree with the Cayley table
    E = G.elements
    i, j = torch.randint(0, G.order, (2, 50))
    assert torch.allclose(E[i] @ E[j], E[G.cayley[i, j]], atol=1e-9)
    assert torch.allclose(E @ E[G.inverse], torch.eye(G.d).expand_as(E), atol=1e-9)
    # element orders divide the group order (Lagrange) and g^order = e
    assert bool((G.order % G.element_orders == 0).all())
    for k in range(G.order):
        assert torch.allclose(torch.linalg.matrix_power(E[k], int(G.element_orders[k])), torch.eye(G.d), atol=1e-9)
    # the generators are elements
    assert torch.allclose(E[G.generator_indices], G.discrete_generators, atol=1e-9)


@pytest.mark.parametrize("name", POINT_GROUPS)
def test_point_group_orders_match_textbook_formula(name):
    G = point_group(name)
    assert G.order == point_group_order(name)
    assert torch.allclose(G.elements @ G.elements.transpose(1, 2), torch.eye(3).expand(G.order, 3, 3), atol=1e-12)


def test_textbook_orders_and_class_counts():
    expected = {  # (order, number of conjugacy classes) from the character tables
        "Z6": (6, 6), "D6": (12, 6), "S3": (6, 3), "S4": (24, 5), "S5": (120, 7), "D4": (8, 5),
        "Td": (24, 5), "Oh": (48, 10), "Ih": (120, 10), "D6h": (24, 12), "C3v": (6, 3), "T": (12, 4),
    }  # fmt: skip
    groups = {g.name: g for g in [cyclic(6), dihedral(6), symmetric(3), symmetric(4), symmetric(5), p4m_point_group()]}
    groups.update({n: point_group(n) for n in ["Td", "Oh", "Ih", "D6h", "C3v", "T"]})
    for name, (order, n_classes) in expected.items():
        G = groups[name]
        assert G.order == order, name
        classes = G.conjugacy_classes()
        assert len(classes) == n_classes, name
        assert sum(len(c) for c in classes) == order


def test_regular_character_and_class_equation():
    for G in [symmetric(4), point_group("Td"), dihedral(5)]:
        chi = G.character(Regular(G))
        assert chi[0] == G.order and bool((chi[1:] == 0).all())
        # sum over irreps of dim^2 = |G| is encoded by <chi_reg, chi_reg> = |G|
        assert float((chi * chi).sum()) / G.order == G.order


@pytest.mark.parametrize("G", [SO2(), O2(), SO3(), O3()], ids=lambda g: g.name)
def test_continuous_group_axioms(G):
    g = torch.Generator().manual_seed(1)
    a, b = G.sample(20, g), G.sample(20, g)
    eye = torch.eye(G.d).expand(20, G.d, G.d)
    for x in (a, b, a @ b, a.transpose(1, 2)):
        assert torch.allclose(x @ x.transpose(1, 2), eye, atol=1e-12)  # closure in O(d), inverse = transpose
    dets = torch.linalg.det(a)
    if isinstance(G, (O2, O3)):
        assert bool((dets < 0).any()) and bool((dets > 0).any())
    else:
        assert torch.allclose(dets, torch.ones(20))
    for A in G.lie_algebra:
        assert torch.allclose(A, -A.T)
        R = torch.linalg.matrix_exp(0.9 * A)
        assert abs(float(torch.linalg.det(R)) - 1) < 1e-12
    assert torch.allclose((a @ b) @ a, a @ (b @ a))


def test_so3_lie_algebra_matches_o3_generators():
    from euclidnet.o3 import so3_generators

    assert torch.allclose(SO3().lie_algebra, so3_generators(1, dtype=torch.float64), atol=1e-14)


def _all_reps():
    so3, o3, so2, o2 = SO3(), O3(), SO2(), O2()
    S4, Z6, Oh = symmetric(4), cyclic(6), point_group("Oh")
    P = ProductGroup(SO3(), symmetric(3))
    Pf = ProductGroup(cyclic(3), dihedral(4))
    V = Standard(so3)
    return [
        V, Trivial(so3, 2), V * V, (V + Trivial(so3)) * V, V.dual(), V**3,
        IrrepsRep(so3, "0e + 1o + 2e + 3o"), IrrepsRep(o3, "2x0o + 1e + 1o + 2o"), Standard(o3) * IrrepsRep(o3, "1e"),
        Standard(so2), CircularRep(so2, 3), CircularRep(o2, 2) * Standard(o2), Standard(o2) + CircularRep(o2, 0),
        Standard(S4), Regular(S4), Standard(S4) * Standard(S4), Regular(Z6) + Standard(Z6), Standard(Oh) * Standard(Oh),
        FactorRep(P, 0, Standard(P.factors[0])) * FactorRep(P, 1, Standard(P.factors[1])),
        Standard(P), FactorRep(Pf, 1, Regular(Pf.factors[1])) + Standard(Pf), Regular(Pf),
    ]  # fmt: skip


@pytest.mark.parametrize("rep", _all_reps(), ids=repr)
def test_every_rep_is_a_homomorphism(rep):
    err = check_homomorphism(rep, n_pairs=16, atol=1e-10, generator=torch.Generator().manual_seed(3))
    assert err <= 1e-10
    g = rep.G.sample(3)
    assert rep.rho(g).shape == (3, rep.size, rep.size)
    # identity maps to identity
    assert torch.allclose(rep.rho(rep.G.identity()[None])[0], torch.eye(rep.size), atol=1e-12)


def test_irreps_rep_bridges_to_o3():
    from euclidnet.o3 import Irreps

    G = O3()
    g = G.sample(5)
    assert torch.equal(IrrepsRep(G, "1o").rho(g), Irreps("1o").D_from_matrix(g))
    assert torch.allclose(IrrepsRep(G, "1o").rho(g), g, atol=1e-12)  # D^1o(R) = R in euclidnet's basis
    # 1e: det(R) R
    assert torch.allclose(IrrepsRep(G, "1e").rho(g), torch.linalg.det(g)[:, None, None] * g, atol=1e-12)
    # drho is the derivative of rho
    for A in G.lie_algebra:
        t = 1e-6
        num = (IrrepsRep(G, "2e").rho(torch.linalg.matrix_exp(t * A)[None]) - torch.eye(5)) / t
        assert torch.allclose(num[0], IrrepsRep(G, "2e").drho(A[None])[0], atol=1e-5)


def test_dual_of_non_orthogonal_rep():
    Z = cyclic(4)
    M = torch.tensor([[2.0, 1.0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 3.0], [0, 0, 0, 1.0]])
    img = M @ Z.discrete_generators[0] @ torch.linalg.inv(M)
    rep = MatrixRep(Z, img[None])
    check_homomorphism(rep)
    check_homomorphism(rep.dual())
    # the dual of a non-orthogonal rep differs from it, but has the same character
    g = Z.elements
    assert not torch.allclose(rep.rho(g), rep.dual().rho(g))
    assert torch.allclose(Z.character(rep), Z.character(rep.dual()))


# -- bad input ---------------------------------------------------------------------------------------------


def test_matrix_rep_rejects_non_homomorphism_naming_generator():
    Z3 = cyclic(3)
    quarter = torch.tensor([[[0.0, -1.0], [1.0, 0.0]]])  # order 4, but the generator of Z3 has order 3
    with pytest.raises(ValueError, match="generator 0"):
        MatrixRep(Z3, quarter)
    S3 = symmetric(3)  # generators: transposition (0 1), 3-cycle
    MatrixRep(S3, torch.tensor([[[-1.0]], [[1.0]]]))  # the sign representation is fine
    with pytest.raises(ValueError, match="generator 1"):
        MatrixRep(S3, torch.tensor([[[-1.0]], [[-1.0]]]))  # a 3-cycle cannot map to -1
    so3 = SO3()
    L = so3.lie_algebra.clone()
    MatrixRep(so3, None, L)
    bad = L.clone()
    bad[1] *= 2
    with pytest.raises(ValueError, match="Lie algebra generator"):
        MatrixRep(so3, None, bad)
    with pytest.raises(ValueError, match="discrete generator 0"):
        MatrixRep(O3(), 2 * torch.eye(3)[None], L)  # the inversion squares to I, its image does not
    with pytest.raises(ValueError, match="images were given"):
        MatrixRep(S3, torch.ones(1, 1, 1))


def test_check_homomorphism_catches_broken_rep():
    class Broken(Standard):
        def rho(self, g):
            return g @ g  # not a homomorphism on a non-abelian group

    with pytest.raises(ValueError, match="not a homomorphism"):
        check_homomorphism(Broken(SO3()))


def test_unsupported_combinations_fail_clearly():
    with pytest.raises(TypeError, match="SO\\(3\\) and O\\(3\\)"):
        IrrepsRep(O2(), "1o")
    with pytest.raises(TypeError, match="SO\\(2\\) and O\\(2\\)"):
        CircularRep(SO3(), 1)
    with pytest.raises(TypeError, match="finite group"):
        Regular(SO3())
    with pytest.raises(ValueError, match="different groups"):
        SumRep(Standard(SO3()), Standard(O3()))
    with pytest.raises(ValueError, match="different groups"):
        TensorRep(Standard(SO3()), Standard(O3()))
    with pytest.raises(ValueError, match="same group"):
        equivariant_basis(Standard(SO3()), Standard(O3()))
    with pytest.raises(ValueError, match="not finite|more than"):
        FiniteGroup(rotation_matrix([0, 0, 1], 1.0)[None])
    with pytest.raises(ValueError, match="not an element"):
        point_group("C4").index_of(rotation_matrix([0, 0, 1], 0.3)[None])
    with pytest.raises(ValueError, match="C3d"):
        point_group("C3d")
    with pytest.raises(ValueError, match="not a permutation"):
        FiniteGroup.from_permutations([[0, 0, 1]])
    with pytest.raises(TypeError, match="continuous group"):
        MatrixRep(SO3(), None, SO3().lie_algebra).rho(SO3().sample(1))
    with pytest.raises(ValueError, match="shape"):
        Standard(SO3()).rho(torch.eye(2))
    with pytest.raises(ValueError, match="factor 1"):
        P = ProductGroup(SO3(), cyclic(2))
        FactorRep(P, 1, Standard(SO3()))
    with pytest.raises(TypeError, match="not finite"):
        _ = ProductGroup(SO3(), cyclic(2)).finite
    with pytest.raises(ValueError, match="singular"):
        FiniteGroup(torch.zeros(1, 2, 2))


def test_float32_elements_supported():
    G = O3()
    g = G.sample(4).float()
    for rep in [Standard(G) * Standard(G), IrrepsRep(G, "1o + 2e")]:
        out = rep.rho(g)
        assert out.dtype == torch.float32
        assert torch.allclose(out.double(), rep.rho(g.double()), atol=1e-5)
    assert math.isclose(float(Regular(cyclic(3)).rho(cyclic(3).elements.float()).sum()), 9.0)
