"""Clebsch-Gordan network: O(3) invariance (rotations AND inversion), pseudoscalar output, per-irrep equivariance."""

import pytest
import torch

from euclidnet.groups import CGNet, cg_product, sh_projection
from euclidnet.o3 import Irrep, rand_matrix


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _cloud(B=3, N=6, C=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, N, 3, generator=g, dtype=torch.float64), torch.randn(
        B, N, C, generator=g, dtype=torch.float64
    )


def test_cgnet_invariant_under_rotations_and_inversion():
    torch.manual_seed(0)
    model = CGNet(in_channels=2, out_dim=3, lmax=2, channels=3, n_layers=2).double()
    pos, s = _cloud()
    y = model(pos, s)
    assert y.abs().max() > 1e-3
    for R in rand_matrix(4, dtype=torch.float64):
        for sign in (1.0, -1.0):
            Q = sign * R
            assert (model(pos @ Q.T, s) - y).abs().max() <= 1e-9
    perm = torch.randperm(pos.shape[1])
    assert (model(pos[:, perm], s[:, perm]) - y).abs().max() <= 1e-9  # a sum over points


def test_cgnet_pseudoscalar_output_tracks_parity():
    torch.manual_seed(1)
    model = CGNet(in_channels=2, out_dim=2, lmax=2, channels=3, n_layers=2, output="0o").double()
    pos, s = _cloud(seed=1)
    y = model(pos, s)
    assert y.abs().max() > 1e-6
    R = rand_matrix(dtype=torch.float64)
    assert (model(pos @ R.T, s) - y).abs().max() <= 1e-9
    assert (model(-pos @ R.T, s) + y).abs().max() <= 1e-9  # odd under improper rotations: detects chirality


def test_cgnet_features_are_equivariant_per_irrep():
    torch.manual_seed(2)
    model = CGNet(in_channels=2, lmax=3, channels=2, n_layers=2).double()
    pos, s = _cloud(seed=2)
    f = model.features(pos, s)
    assert Irrep("0o") in f and Irrep("1e") in f  # parity really is tracked (cross products appear)
    R = -rand_matrix(dtype=torch.float64)  # improper
    fR = model.features(pos @ R.T, s)
    for ir, x in f.items():
        D = ir.D_from_matrix(R)
        assert (fR[ir] - x @ D.T).abs().max() <= 1e-9, ir


def test_cg_product_is_equivariant_and_matches_cross_product():
    pos, s = _cloud(B=2, N=5, C=1, seed=3)
    f = sh_projection(pos, s, lmax=2, n_radial=2, r_max=2.0)
    g = cg_product(f, lmax=2)
    R = rand_matrix(dtype=torch.float64)
    gR = cg_product(sh_projection(pos @ R.T, s, lmax=2, n_radial=2, r_max=2.0), lmax=2)
    for ir in g:
        assert (gR[ir] - g[ir] @ ir.D_from_matrix(R).T).abs().max() <= 1e-9
    # the only 1o path from {1o, 1e} is 1e x 1o, which must be proportional to the cross product
    # (an independent check of the real-basis 3j symbols)
    a, b = torch.randn(4, 1, 3), torch.randn(4, 1, 3)
    out = cg_product({Irrep("1o"): a, Irrep("1e"): b}, lmax=1)[Irrep("1o")]
    assert out.shape == (4, 1, 3)
    cross = torch.linalg.cross(a, b)
    ratio = out / cross
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), atol=1e-9)
    assert abs(float(ratio.flatten()[0])) > 0.1


def test_a_broken_cg_net_is_detected():
    """The published mistake: a pointwise nonlinearity on l > 0 coefficients breaks invariance; our check sees it."""
    torch.manual_seed(3)
    model = CGNet(in_channels=1, lmax=2, channels=2, n_layers=1).double()
    pos, s = _cloud(B=2, N=5, C=1, seed=4)

    def broken(p):
        f = sh_projection(p, s, 2, model.n_radial, model.r_max)
        f = {ir: (torch.relu(x) if ir.l > 0 else x) for ir, x in f.items()}
        return cg_product(f, 2)[Irrep("0e")].sum((1, 2))

    R = rand_matrix(dtype=torch.float64)
    assert (broken(pos @ R.T) - broken(pos)).abs().max() > 1e-3


def test_cgnet_float32_and_bad_input():
    model = CGNet(in_channels=1, lmax=1, channels=2, n_layers=2).float()
    pos = torch.randn(2, 4, 3, dtype=torch.float32)
    y = model(pos, torch.ones(2, 4, 1, dtype=torch.float32))
    assert y.dtype == torch.float32 and y.shape == (2, 1)
    with pytest.raises(ValueError, match="output"):
        CGNet(output="1o")
    with pytest.raises(ValueError, match="lmax"):
        CGNet(lmax=-1)
    with pytest.raises(ValueError, match="signal"):
        model(pos, torch.ones(2, 5, 1, dtype=torch.float32))
    with pytest.raises(ValueError, match="no 0o"):
        CGNet(lmax=0, n_layers=1, output="0o")
