"""Our Wigner D and 3j equal e3nn's (an independent implementation) — run when the [compare] extra is present."""

import itertools

import pytest
import torch

from euclidnet.o3 import Irreps, rand_angles, rand_matrix, wigner_3j, wigner_D

e3nn_o3 = pytest.importorskip("e3nn.o3")


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_wigner_D_equals_e3nn(dtype, tol):
    a, b, c = rand_angles(20, dtype=dtype)
    for l in range(0, 11):
        ours = wigner_D(l, a, b, c)
        ref = e3nn_o3.wigner_D(l, a, b, c)
        assert (ours - ref).abs().max() < tol, l


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_wigner_3j_equals_e3nn(dtype, tol):
    for l1, l2 in itertools.product(range(6), repeat=2):
        for l3 in range(abs(l1 - l2), l1 + l2 + 1):
            ours = wigner_3j(l1, l2, l3, dtype=dtype)
            ref = e3nn_o3.wigner_3j(l1, l2, l3, dtype=dtype)
            assert (ours - ref).abs().max() < tol, (l1, l2, l3)


def test_irreps_D_from_matrix_equals_e3nn():
    R = rand_matrix(5)
    for s in ("0e + 0o + 2x1o + 1e + 2e + 3o", "16x0e + 8x1o + 2e"):
        for sign in (1, -1):
            ours = Irreps(s).D_from_matrix(sign * R)
            ref = e3nn_o3.Irreps(s).D_from_matrix(sign * R)
            assert (ours - ref).abs().max() < 1e-10


def test_irreps_strings_agree_with_e3nn():
    for s in ("16x0e + 8x1o + 2e", "0o + 3x2y", "1e+1e+0x3o"):
        ours, ref = Irreps(s), e3nn_o3.Irreps(s)
        assert ours.dim == ref.dim and ours.num_irreps == ref.num_irreps
        assert [(m, (i.l, i.p)) for m, i in ours] == [(m, (i.l, i.p)) for m, i in ref]
        assert str(ours.simplify()) == str(ref.simplify())
