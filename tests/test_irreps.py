import pickle

import pytest
import torch

from euclidnet.o3 import Irrep, Irreps, rand_matrix


def test_irrep_parsing_and_values():
    assert Irrep("1o") == Irrep(1, -1) == Irrep(Irrep(1, -1)) == Irrep((1, -1))
    assert Irrep("3y") == Irrep(3, -1) and Irrep("2y") == Irrep(2, 1)
    assert Irrep("2e").dim == 5
    assert str(Irrep(4, 1)) == "4e"
    assert hash(Irrep("1o")) == hash(Irrep(1, -1))
    assert sorted([Irrep("1o"), Irrep("0o"), Irrep("1e"), Irrep("0e")]) == ["0e", "0o", "1e", "1o"]
    assert list(Irrep("1o") * Irrep("1o")) == [Irrep("0e"), Irrep("1e"), Irrep("2e")]
    with pytest.raises(AttributeError):
        Irrep("1o").l = 2


@pytest.mark.parametrize(
    "bad, exc, words",
    [
        ("1q", ValueError, "1q"),
        ("x1o", ValueError, "x1o"),
        ("", ValueError, "''"),
    ],
)
def test_irrep_bad_strings(bad, exc, words):
    with pytest.raises(exc, match=words):
        Irrep(bad)


def test_irrep_bad_values():
    with pytest.raises(ValueError, match="p=0"):
        Irrep(1, 0)
    with pytest.raises(ValueError, match="l=-1"):
        Irrep(-1, 1)
    with pytest.raises(TypeError, match="int"):
        Irrep(1.5, 1)


def test_irreps_grammar():
    ir = Irreps("16x0e + 8x1o + 2e")
    assert list(ir) == [(16, Irrep("0e")), (8, Irrep("1o")), (1, Irrep("2e"))]
    assert ir.dim == 16 + 24 + 5
    assert ir.num_irreps == 25
    assert ir.lmax == 2
    assert ir.ls == [0] * 16 + [1] * 8 + [2]
    assert [s.stop - s.start for s in ir.slices()] == [16, 24, 5]
    assert Irreps("16x0e+8x1o+1x2e") == ir == "16x0e + 8x1o + 2e"
    assert Irreps("") == Irreps() and Irreps("").dim == 0
    assert Irreps([(2, "1o"), (1, (0, 1))]) == Irreps("2x1o + 0e")
    assert Irreps(Irrep("1e")) == Irreps("1x1e")
    assert Irreps("0x1o").dim == 0
    assert Irreps("3x1o") + "2e" == Irreps("3x1o + 2e")
    assert 2 * Irreps("3x1o + 0e") == Irreps("6x1o + 2x0e")
    assert Irreps("1o") * 2 == Irreps("1o + 1o")
    assert 3 * Irrep("2e") == Irreps("3x2e")
    assert Irreps("1o + 2e")[1:] == Irreps("2e") and isinstance(Irreps("1o + 2e")[1:], Irreps)
    assert {Irreps("1o"): 1}[Irreps("1x1o")] == 1
    assert pickle.loads(pickle.dumps(ir)) == ir


@pytest.mark.parametrize(
    "bad, exc, words",
    [
        ("3x1q", ValueError, "3x1q"),
        ("-1x0e", ValueError, "-1x0e"),
        ("2x", ValueError, "2x"),
        ("1o + + 2e", ValueError, "''"),
        ("1.5x0e", ValueError, "1.5x0e"),
    ],
)
def test_irreps_bad_strings(bad, exc, words):
    with pytest.raises(exc, match=words.replace("+", r"\+").replace(".", r"\.")):
        Irreps(bad)


def test_irreps_bad_items():
    with pytest.raises(ValueError, match="-2"):
        Irreps([(-2, "1o")])
    with pytest.raises(TypeError):
        Irreps(3.5)
    with pytest.raises(ValueError, match="empty"):
        _ = Irreps("").lmax


def test_simplify_sort_filter_count():
    ir = Irreps("1o + 1o + 0e + 0x2e + 2e + 0e")
    assert ir.simplify() == Irreps("2x1o + 0e + 2e + 0e")
    s = ir.sort()
    assert s.irreps == Irreps("0e + 0e + 1o + 1o + 0x2e + 2e")
    for j, i in enumerate(s.inv):
        assert s.irreps[j] == ir[i]
        assert s.p[i] == j
    assert ir.regroup() == Irreps("2x0e + 2x1o + 2e")
    assert ir.count("1o") == 2 and ir.count("2e") == 1 and ir.count("3o") == 0
    assert "2e" in ir and "3o" not in ir
    assert ir.filter("1o + 0e") == Irreps("1o + 1o + 0e + 0e")
    assert ir.filter(drop="1o") == Irreps("0e + 0x2e + 2e + 0e")
    assert ir.filter(lmax=0) == Irreps("0e + 0e")
    assert ir.filter(lambda mi: mi.mul > 0 and mi.ir.l == 2) == Irreps("2e")


def test_spherical_harmonics_irreps():
    assert Irreps.spherical_harmonics(3) == Irreps("0e + 1o + 2e + 3o")
    assert Irreps.spherical_harmonics(2, p=1) == Irreps("0e + 1e + 2e")


def test_D_from_matrix_is_block_diagonal_representation():
    irreps = Irreps("2x0e + 0o + 1o + 1e + 2e + 2x3o")
    R1, R2 = rand_matrix(2)
    for s1 in (1, -1):
        for s2 in (1, -1):
            A, B = s1 * R1, s2 * R2
            DA, DB, DAB = irreps.D_from_matrix(A), irreps.D_from_matrix(B), irreps.D_from_matrix(A @ B)
            torch.testing.assert_close(DAB, DA @ DB, atol=1e-12, rtol=0)
            torch.testing.assert_close(DA @ DA.T, torch.eye(irreps.dim), atol=1e-12, rtol=0)
    # 1o is R itself, 1e is det(R) R, 0o is det(R).
    R = -R1
    torch.testing.assert_close(Irreps("1o").D_from_matrix(R), R, atol=1e-13, rtol=0)
    torch.testing.assert_close(Irreps("1e").D_from_matrix(R), -R, atol=1e-13, rtol=0)
    torch.testing.assert_close(Irreps("0o").D_from_matrix(R), -torch.ones(1, 1), atol=0, rtol=0)


def test_D_from_quaternion_and_batching():
    from euclidnet.o3 import matrix_to_quaternion

    R = rand_matrix(4, 2)
    ir = Irreps("1o + 2e")
    q = matrix_to_quaternion(R)
    D = ir.D_from_quaternion(q)
    assert D.shape == (4, 2, 8, 8)
    torch.testing.assert_close(D, ir.D_from_matrix(R), atol=1e-12, rtol=0)


def test_randn_normalizations():
    ir = Irreps("3x0e + 2x1o + 2e")
    x = ir.randn(10, normalization="norm")
    for (mul, i), s in zip(ir, ir.slices()):
        n = x[:, s].reshape(10, mul, i.dim).norm(dim=-1)
        torch.testing.assert_close(n, torch.ones_like(n))
    assert ir.randn(2, 5).shape == (2, 5, ir.dim)
    with pytest.raises(ValueError, match="normalization"):
        ir.randn(3, normalization="bad")
