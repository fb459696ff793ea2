import itertools
import math

import pytest
import torch

from euclidnet.o3 import (
    Irrep,
    angles_to_matrix,
    matrix_to_angles,
    rand_angles,
    rand_matrix,
    so3_generators,
    wigner_3j,
    wigner_D,
)


@pytest.mark.parametrize("l", range(0, 13))
def test_D_homomorphism_and_orthogonality(l):
    R1, R2 = rand_matrix(2, 5)
    D1 = wigner_D(l, *matrix_to_angles(R1))
    D2 = wigner_D(l, *matrix_to_angles(R2))
    D12 = wigner_D(l, *matrix_to_angles(R1 @ R2))
    torch.testing.assert_close(D12, D1 @ D2, atol=1e-12, rtol=0)
    I = torch.eye(2 * l + 1).expand_as(D1)
    torch.testing.assert_close(D1 @ D1.transpose(-1, -2), I, atol=1e-12, rtol=0)
    # Identity and inverse.
    z = torch.zeros(())
    torch.testing.assert_close(wigner_D(l, z, z, z), torch.eye(2 * l + 1), atol=1e-13, rtol=0)
    a, b, c = rand_angles()
    torch.testing.assert_close(wigner_D(l, -c, -b, -a), wigner_D(l, a, b, c).T, atol=1e-12, rtol=0)


def test_D_of_vectors_is_the_matrix():
    a, b, c = rand_angles(10)
    torch.testing.assert_close(wigner_D(1, a, b, c), angles_to_matrix(a, b, c), atol=1e-13, rtol=0)


@pytest.mark.parametrize("l", [1, 2, 5, 9])
def test_D_equals_matrix_exp_of_generators(l):
    # Independent route: D(Y(a) X(b) Y(c)) = exp(a Gy) exp(b Gx) exp(c Gy).
    G = so3_generators(l)
    a, b, c = rand_angles(3)
    E = torch.linalg.matrix_exp
    ref = E(a[:, None, None] * G[1]) @ E(b[:, None, None] * G[0]) @ E(c[:, None, None] * G[1])
    torch.testing.assert_close(wigner_D(l, a, b, c), ref, atol=1e-12, rtol=0)
    # Generators satisfy the so(3) commutation relations [Gx, Gy] = Gz (cyclic) and are antisymmetric.
    torch.testing.assert_close(G[0] @ G[1] - G[1] @ G[0], G[2], atol=1e-12, rtol=0)
    torch.testing.assert_close(G[1] @ G[2] - G[2] @ G[1], G[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(G + G.transpose(-1, -2), torch.zeros_like(G), atol=0, rtol=0)


def test_improper_D_is_parity_times_proper():
    R = rand_matrix(6)
    for l in range(5):
        for p in (1, -1):
            ir = Irrep(l, p)
            torch.testing.assert_close(ir.D_from_matrix(-R), p * ir.D_from_matrix(R), atol=1e-13, rtol=0)


def test_float32_D():
    a, b, c = rand_angles(10, dtype=torch.float32)
    D = wigner_D(6, a, b, c)
    assert D.dtype == torch.float32
    ref = wigner_D(6, a.double(), b.double(), c.double())
    torch.testing.assert_close(D.double(), ref, atol=2e-6, rtol=0)


def _triples(lmax):
    for l1, l2 in itertools.product(range(lmax + 1), repeat=2):
        for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1):
            yield l1, l2, l3


def test_3j_invariance_and_norm_all_triples_to_8():
    R = rand_matrix(2)
    angles = matrix_to_angles(R)
    Ds = [wigner_D(l, *angles) for l in range(9)]
    for l1, l2, l3 in _triples(8):
        C = wigner_3j(l1, l2, l3)
        assert C.shape == (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
        assert abs(C.norm().item() - 1) < 1e-13
        rotated = torch.einsum("ijk,nia,njb,nkc->nabc", C, Ds[l1], Ds[l2], Ds[l3])
        assert (rotated - C).abs().max() < 1e-12, (l1, l2, l3)


def test_3j_orthogonality_to_8():
    # sum_{m1 m2} C(l1 l2 l3)_{m1 m2 m3} C(l1 l2 l3')_{m1 m2 m3'} = delta_{l3 l3'} delta_{m3 m3'} / (2 l3 + 1)
    for l1, l2 in itertools.product(range(9), repeat=2):
        Cs = {l3: wigner_3j(l1, l2, l3) for l3 in range(abs(l1 - l2), l1 + l2 + 1)}
        for l3, A in Cs.items():
            for l3b, B in Cs.items():
                G = torch.einsum("ijk,ijl->kl", A, B)
                ref = torch.eye(2 * l3 + 1) / (2 * l3 + 1) if l3 == l3b else torch.zeros(2 * l3 + 1, 2 * l3b + 1)
                assert (G - ref).abs().max() < 1e-13, (l1, l2, l3, l3b)


def test_3j_known_values():
    for l in range(6):
        torch.testing.assert_close(wigner_3j(0, l, l), torch.eye(2 * l + 1)[None] / math.sqrt(2 * l + 1))
    eps = torch.zeros(3, 3, 3)
    for i, j, k in itertools.permutations(range(3)):
        eps[i, j, k] = 1.0 if (i, j, k) in [(0, 1, 2), (1, 2, 0), (2, 0, 1)] else -1.0
    torch.testing.assert_close(wigner_3j(1, 1, 1), eps / math.sqrt(6), atol=1e-15, rtol=0)


def test_3j_symmetries():
    # Swapping two degrees permutes the indices and multiplies by (-1)^(l1 + l2 + l3).
    for l1, l2, l3 in [(1, 2, 3), (2, 2, 2), (3, 4, 2), (5, 3, 4)]:
        C = wigner_3j(l1, l2, l3)
        s = (-1) ** (l1 + l2 + l3)
        torch.testing.assert_close(wigner_3j(l2, l1, l3), s * C.permute(1, 0, 2), atol=1e-14, rtol=0)
        torch.testing.assert_close(wigner_3j(l3, l2, l1), s * C.permute(2, 1, 0), atol=1e-14, rtol=0)
        torch.testing.assert_close(wigner_3j(l2, l3, l1), C.permute(1, 2, 0), atol=1e-14, rtol=0)


@pytest.mark.parametrize("triple", [(20, 20, 20), (10, 20, 15), (20, 19, 1), (12, 8, 20), (17, 17, 0)])
def test_3j_high_degree_spot_checks(triple):
    l1, l2, l3 = triple
    C = wigner_3j(l1, l2, l3)
    assert abs(C.norm().item() - 1) < 1e-13
    R = rand_matrix()
    a = matrix_to_angles(R)
    rot = torch.einsum("ijk,ia,jb,kc->abc", C, wigner_D(l1, *a), wigner_D(l2, *a), wigner_D(l3, *a))
    assert (rot - C).abs().max() < 1e-12
    # Orthogonality in (m1, m2) for fixed l3: C C^T over (m1, m2) gives I / (2 l3 + 1).
    G = torch.einsum("ijk,ijl->kl", C, C)
    torch.testing.assert_close(G, torch.eye(2 * l3 + 1) / (2 * l3 + 1), atol=1e-14, rtol=0)


def test_3j_errors_and_caching():
    with pytest.raises(ValueError, match="triangle"):
        wigner_3j(1, 1, 3)
    with pytest.raises(ValueError, match="l2 must be >= 0"):
        wigner_3j(1, -1, 1)
    with pytest.raises(TypeError, match="int"):
        wigner_3j(1, 1.0, 1)
    C = wigner_3j(2, 2, 2)
    C.zero_()  # a returned tensor is a copy: mutating it does not poison the cache
    assert wigner_3j(2, 2, 2).abs().max() > 0
    assert wigner_3j(2, 2, 2, dtype=torch.float32).dtype == torch.float32


def test_D_errors():
    with pytest.raises(ValueError, match="l must be >= 0"):
        wigner_D(-1, 0.0, 0.0, 0.0)
