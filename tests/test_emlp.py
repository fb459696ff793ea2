"""Constraint-solved equivariant maps: basis sizes vs character theory, span vs o3.Linear, EMLP equivariance."""

import math

import pytest
import torch

from euclidnet.groups import (
    EMLP,
    O2,
    O3,
    SO2,
    SO3,
    CircularRep,
    EquivariantLinear,
    FactorRep,
    IrrepsRep,
    ProductGroup,
    Regular,
    Standard,
    Trivial,
    cyclic,
    dihedral,
    equivariant_basis,
    point_group,
    symmetric,
)
from euclidnet.groups.finite import rotation_matrix


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# -- independent dimension predictions ----------------------------------------------------------------------


def _chi(rep, g):
    return torch.diagonal(rep.rho(g), dim1=-2, dim2=-1).sum(-1)


def hom_dim_finite(G, rin, rout):
    """(1/|G|) sum_g chi_in(g) chi_out(g): real characters, chi(g^-1) = chi(g)."""
    E = G.finite.elements if isinstance(G, ProductGroup) else G.elements
    return float((_chi(rin, E) * _chi(rout, E)).mean())


def _weyl_grid(M=64):
    theta = torch.arange(M, dtype=torch.float64) * 2 * math.pi / M
    return theta, 1 - torch.cos(theta)  # Weyl density (relative to d theta / 2 pi); exact for trig polys


def _rz(theta):
    return torch.stack([rotation_matrix([0, 0, 1], float(t)) for t in theta])


def hom_dim_so3(rin, rout, improper=False):
    theta, w = _weyl_grid()
    R = _rz(theta)
    val = (w * _chi(rin, R) * _chi(rout, R)).mean()
    if improper:
        val = (val + (w * _chi(rin, -R) * _chi(rout, -R)).mean()) / 2
    return float(val)


def hom_dim_o2(rin, rout, reflections):
    theta, _ = _weyl_grid()
    c, s = torch.cos(theta), torch.sin(theta)
    R = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    val = (_chi(rin, R) * _chi(rout, R)).mean()
    if reflections:
        F = R @ torch.diag(torch.tensor([1.0, -1.0]))
        val = (val + (_chi(rin, F) * _chi(rout, F)).mean()) / 2
    return float(val)


def _finite_cases():
    S4, S5, D6, Td, Oh, Z6 = symmetric(4), symmetric(5), dihedral(6), point_group("Td"), point_group("Oh"), cyclic(6)
    P = ProductGroup(cyclic(2), symmetric(3))
    Vp = FactorRep(P, 1, Standard(P.factors[1]))
    sgn = FactorRep(P, 0, Standard(P.factors[0]))
    return [
        (S4, Standard(S4), Standard(S4)),
        (S4, Standard(S4) * Standard(S4), Standard(S4)),
        (S5, Standard(S5) * Standard(S5), Standard(S5) * Standard(S5)),
        (D6, Regular(D6), Regular(D6)),
        (D6, Standard(D6) + Regular(D6), Standard(D6) * Standard(D6)),
        (Z6, Regular(Z6), Standard(Z6)),
        (Td, Standard(Td) * Standard(Td), Standard(Td)),
        (Td, Standard(Td) ** 3, Trivial(Td)),
        (Oh, Standard(Oh) * Standard(Oh), Standard(Oh) * Standard(Oh)),
        (P, Vp * sgn, Vp + sgn * Vp),
    ]


@pytest.mark.parametrize("case", _finite_cases(), ids=lambda c: f"{c[0].name}:{c[1]!r}->{c[2]!r}")
def test_basis_size_matches_character_theory_finite(case):
    G, rin, rout = case
    Q = equivariant_basis(rin, rout)
    predicted = hom_dim_finite(G, rin, rout)
    assert abs(predicted - round(predicted)) < 1e-9
    assert Q.shape[0] == round(predicted)
    # orthonormal and exactly equivariant on every element
    flat = Q.reshape(Q.shape[0], -1)
    assert torch.allclose(flat @ flat.T, torch.eye(Q.shape[0]), atol=1e-10)
    E = G.finite.elements if isinstance(G, ProductGroup) else G.elements
    lhs = torch.einsum("gab,kbc->gkac", rout.rho(E), Q)
    rhs = torch.einsum("kab,gbc->gkac", Q, rin.rho(E))
    assert (lhs - rhs).abs().max() <= 1e-10


def test_textbook_values_for_symmetric_group():
    # Hom_{S_n}(V^{(x)a}, V^{(x)b}) for the permutation rep V has dimension Bell(a + b) once n >= a + b
    S5 = symmetric(5)
    V = Standard(S5)
    bell = {1: 1, 2: 2, 3: 5, 4: 15}
    assert equivariant_basis(V, V).shape[0] == bell[2]
    assert equivariant_basis(V * V, V).shape[0] == bell[3]
    assert equivariant_basis(V * V, V * V).shape[0] == bell[4]
    S4 = symmetric(4)
    assert equivariant_basis(Regular(S4), Regular(S4)).shape[0] == 24  # End of the regular rep = group algebra


def _so3_cases():
    so3, o3 = SO3(), O3()
    V, W = Standard(so3), Standard(o3)
    return [
        (V, V, False), (V * V, V * V, False), (V * V, V, False), (V**3, Trivial(so3), False),
        (V * V, Trivial(so3), False),
        (IrrepsRep(so3, "2x0e + 1o + 2e"), IrrepsRep(so3, "0e + 3x1o + 2x2e"), False),
        (IrrepsRep(so3, "1e"), V, False),
        (W * W, W, True), (W**3, Trivial(o3), True), (IrrepsRep(o3, "1e + 1o + 0o"), W * W, True),
        (IrrepsRep(o3, "2x0e + 1o + 2e + 0o"), IrrepsRep(o3, "0e + 3x1o + 2x2e + 1e"), True),
    ]  # fmt: skip


@pytest.mark.parametrize("case", _so3_cases(), ids=lambda c: f"{c[0]!r}->{c[1]!r}")
def test_basis_size_matches_weyl_character_integral_so3_o3(case):
    rin, rout, improper = case
    Q = equivariant_basis(rin, rout)
    predicted = hom_dim_so3(rin, rout, improper)
    assert abs(predicted - round(predicted)) < 1e-9
    assert Q.shape[0] == round(predicted)
    g = rin.G.sample(8, torch.Generator().manual_seed(5))
    err = torch.einsum("gab,kbc->gkac", rout.rho(g), Q) - torch.einsum("kab,gbc->gkac", Q, rin.rho(g))
    assert err.numel() == 0 or err.abs().max() <= 1e-9


def test_basis_size_matches_schur_for_irreps():
    from euclidnet.o3 import Irreps

    o3, so3 = O3(), SO3()
    a, b = Irreps("2x0e + 1o + 3x1e + 2e + 0o"), Irreps("0e + 2x1o + 1e + 2x2e")
    schur = sum(mul_a * b.count(ir) for mul_a, ir in a.regroup())
    assert equivariant_basis(IrrepsRep(o3, a), IrrepsRep(o3, b)).shape[0] == schur
    schur_so3 = sum(ma * mb for ma, ia in a for mb, ib in b if ia.l == ib.l)  # SO(3) ignores parity
    assert equivariant_basis(IrrepsRep(so3, a), IrrepsRep(so3, b)).shape[0] == schur_so3


@pytest.mark.parametrize("reflections", [False, True])
def test_basis_size_matches_haar_integral_o2_so2(reflections):
    G = O2() if reflections else SO2()
    V = Standard(G)
    cases = [
        (V, V),
        (V * V, V * V),
        (CircularRep(G, 2), V * V),
        (V**3, V),
        (CircularRep(G, 1) + V, CircularRep(G, 3) + V),
    ]
    for rin, rout in cases:
        predicted = hom_dim_o2(rin, rout, reflections)
        assert abs(predicted - round(predicted)) < 1e-9
        assert equivariant_basis(rin, rout).shape[0] == round(predicted), (rin, rout)


def _span_projector(Q):
    flat = Q.reshape(Q.shape[0], -1)
    return flat.T @ torch.linalg.pinv(flat @ flat.T) @ flat


def _linear_maps(lin, dim_in):
    """Matrices [k, n_out, n_in] of o3.Linear for every unit weight vector."""
    eye = torch.eye(lin.weight_numel)
    x = torch.eye(dim_in)
    maps = [lin(x, weight=eye[k].expand(dim_in, -1)).T for k in range(lin.weight_numel)]
    return torch.stack(maps)


@pytest.mark.parametrize(
    "irreps_in, irreps_out, group",
    [
        ("2x0e + 1o + 2e", "0e + 3x1o + 2x2e", "O3"),
        ("3x0e + 2x1o + 1e + 0o", "2x0e + 1o + 2x1e + 0o", "O3"),
        ("2x0e + 3x1o + 2e + 3o", "0e + 2x1o + 2e + 2x3o", "SO3"),  # one parity per l: SO(3) maps = O(3) maps
    ],
)
def test_equivariant_basis_spans_same_space_as_o3_linear(irreps_in, irreps_out, group):
    from euclidnet.o3 import Irreps

    linear_mod = pytest.importorskip("euclidnet.o3.linear")
    lin = linear_mod.Linear(irreps_in, irreps_out, shared_weights=False, internal_weights=False)
    maps = _linear_maps(lin, Irreps(irreps_in).dim)
    G = O3() if group == "O3" else SO3()
    Q = equivariant_basis(IrrepsRep(G, irreps_in), IrrepsRep(G, irreps_out))
    assert Q.shape[0] == lin.weight_numel
    assert torch.allclose(_span_projector(maps), _span_projector(Q), atol=1e-9)


def test_equivariant_basis_spans_kron_construction():
    """Independent of o3.Linear: the maps are the block matrices kron(W, I_{2l+1}) between matching irreps."""
    from euclidnet.o3 import Irreps

    a, b = Irreps("2x0e + 1o + 2x2e"), Irreps("0e + 2x1o + 2e")
    blocks = []
    sa, sb = a.slices(), b.slices()
    for i, (ma, ia) in enumerate(a):
        for j, (mb, ib) in enumerate(b):
            if ia != ib:
                continue
            for u in range(ma):
                for w in range(mb):
                    E = torch.zeros(mb, ma)
                    E[w, u] = 1.0
                    M = torch.zeros(b.dim, a.dim)
                    M[sb[j], sa[i]] = torch.kron(E, torch.eye(ia.dim))
                    blocks.append(M)
    ref = torch.stack(blocks)
    Q = equivariant_basis(IrrepsRep(O3(), a), IrrepsRep(O3(), b))
    assert torch.allclose(_span_projector(ref), _span_projector(Q), atol=1e-9)


@pytest.mark.parametrize("which", ["so3", "s4", "s5_large"])
def test_iterative_solver_matches_dense(which):
    if which == "so3":
        V = Standard(SO3())
        rin, rout = V * V, V * V
    elif which == "s4":
        V = Standard(symmetric(4))
        rin, rout = V * V, V * V
    else:
        V = Standard(symmetric(5))
        rin, rout = V * V, V * V  # n = 625
    Qd = equivariant_basis(rin, rout, method="dense")
    Qi = equivariant_basis(rin, rout, method="iterative")
    assert Qd.shape == Qi.shape
    assert torch.allclose(_span_projector(Qd), _span_projector(Qi), atol=1e-9)


def test_auto_uses_structure_of_sums():
    G = SO3()
    V = Standard(G)
    big = 6 * V + 4 * Trivial(G)  # 22-dim, solved per pair of summands (identical pairs once)
    Q = equivariant_basis(big, big, dense_limit=16)
    assert Q.shape[0] == 6 * 6 + 4 * 4
    Qd = equivariant_basis(big, big, method="dense", structured=False)
    assert torch.allclose(_span_projector(Q), _span_projector(Qd), atol=1e-9)


# -- layers ----------------------------------------------------------------------------------------------------


def _emlp_cases():
    so3, o3, o2, s4, oh = SO3(), O3(), O2(), symmetric(4), point_group("Oh")
    P = ProductGroup(O2(), cyclic(3))
    Pf = [FactorRep(P, 0, Standard(P.factors[0])), FactorRep(P, 1, Standard(P.factors[1]))]
    return [
        (Standard(so3) * 2, Standard(so3) + Trivial(so3), 4 * Trivial(so3) + 2 * Standard(so3) + Standard(so3) ** 2),
        (IrrepsRep(o3, "1o") + IrrepsRep(o3, "1e"), IrrepsRep(o3, "0o") + Standard(o3),
         3 * Trivial(o3) + 2 * Standard(o3) + IrrepsRep(o3, "0o") + IrrepsRep(o3, "1e")),
        (Standard(o2) + Standard(o2), Standard(o2) * Standard(o2),
         2 * Trivial(o2) + 2 * Standard(o2) + CircularRep(o2, 2)),
        (Standard(s4) * Standard(s4), Standard(s4), 2 * Trivial(s4) + 2 * Standard(s4)),
        (2 * Standard(oh), Trivial(oh) + Standard(oh) * Standard(oh), 2 * Trivial(oh) + 2 * Standard(oh)),
        (Pf[0] * Pf[1], Pf[0] + Pf[1], 2 * Trivial(P) + Pf[0] + Pf[1] + Pf[0] * Pf[1]),
    ]  # fmt: skip


@pytest.mark.parametrize("case", _emlp_cases(), ids=lambda c: c[0].G.name)
def test_emlp_equivariance_float64(case):
    rin, rout, hidden = case
    torch.manual_seed(0)
    model = EMLP(rin, rout, hidden, n_layers=2).double()
    G = rin.G
    g = G.sample(6, torch.Generator().manual_seed(2))
    x = torch.randn(6, rin.size, dtype=torch.float64)
    y = model(x)
    y_rot = model(torch.einsum("gab,gb->ga", rin.rho(g), x))
    err = (y_rot - torch.einsum("gab,gb->ga", rout.rho(g), y)).abs().max()
    assert err <= 1e-9
    assert y.abs().max() > 1e-3  # not trivially zero


def test_equivariant_linear_projection_and_dtypes():
    G = O3()
    rin, rout = Standard(G) * Standard(G), Standard(G) + Trivial(G)
    lin = EquivariantLinear(rin, rout)
    W = lin.projected_weight()
    # O(3): V (x) V -> V has no maps (epsilon is a pseudotensor); V (x) V -> scalar is the trace only
    assert lin.num_basis == 1
    g = G.sample(5)
    assert (
        torch.einsum("gab,bc->gac", rout.rho(g), W) - torch.einsum("ab,gbc->gac", W, rin.rho(g))
    ).abs().max() < 1e-12
    # the projection is idempotent and the forward pass accepts float32
    Q = lin.basis
    assert torch.allclose(Q.T @ (Q @ W.reshape(-1)), W.reshape(-1), atol=1e-12)
    x32 = torch.randn(3, rin.size, dtype=torch.float32)
    assert lin(x32).dtype == torch.float32
    with pytest.raises(ValueError, match="expected input"):
        lin(torch.randn(3, rin.size + 1))


def test_gated_norms_need_orthogonal_reps():
    from euclidnet.groups import GatedNonlinearity, MatrixRep

    Z = cyclic(4)
    M = torch.tensor([[2.0, 1.0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 3.0], [0, 0, 0, 1.0]])
    rep = MatrixRep(Z, (M @ Z.discrete_generators[0] @ torch.linalg.inv(M))[None])
    with pytest.raises(ValueError, match="orthogonal"):
        GatedNonlinearity(rep + Trivial(Z), norms=True)
    act = GatedNonlinearity(rep + Trivial(Z), norms=False)  # gating alone is fine for any rep
    x = torch.randn(3, rep.size + 1 + act.n_gates)
    g = Z.elements[1]
    y = act(x)
    xg = torch.cat([x[:, :4] @ rep.rho(g[None])[0].T, x[:, 4:]], dim=1)
    assert torch.allclose(act(xg)[:, :4], y[:, :4] @ rep.rho(g[None])[0].T, atol=1e-12)


@pytest.mark.slow
def test_emlp_trains_on_so3_invariant_target():
    """EMLP regresses |x|^2 + (x . y) from two vectors (an invariant target)."""
    torch.manual_seed(0)
    G = SO3()
    V = Standard(G)
    model = EMLP(V + V, Trivial(G), 2 * Trivial(G) + 2 * V, n_layers=2).double()
    x = torch.randn(256, 6)
    target = ((x[:, :3] ** 2).sum(-1) + (x[:, :3] * x[:, 3:]).sum(-1))[:, None]
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    first = None
    for _ in range(150):
        loss = ((model(x) - target) ** 2).mean()
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first
