"""Tests for euclidnet.nn.BatchNorm and euclidnet.nn.LayerNorm."""

from __future__ import annotations

import copy

import pytest
import torch

from euclidnet import nn
from euclidnet.o3 import Irreps, rand_matrix

F64 = torch.float64
IRREPS = Irreps("4x0e+2x0o+3x1o+2x2e+1x0e+1x1e")


def _rand_orthogonal(improper: bool, seed: int) -> torch.Tensor:
    R = rand_matrix(generator=torch.Generator().manual_seed(seed), dtype=F64)
    return -R if improper else R


def _randomise_affine(m: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if m.weight is not None:
            m.weight.copy_(torch.rand(m.weight.shape, generator=g, dtype=F64) + 0.5)
        if m.bias is not None:
            m.bias.copy_(torch.randn(m.bias.shape, generator=g, dtype=F64))


def _input(shape: tuple[int, ...], seed: int, irreps: Irreps = IRREPS) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # non-zero mean and non-unit scale so that centring and scaling matter
    return 3.0 * irreps.randn(*shape, generator=g, dtype=F64) + 0.7


# ---------------------------------------------------------------------------------------------------------
# BatchNorm
# ---------------------------------------------------------------------------------------------------------

BN_CONFIGS = [
    dict(),
    dict(reduce="max"),
    dict(normalization="norm"),
    dict(instance=True),
    dict(affine=False, momentum=0.3),
]


@pytest.mark.parametrize("cfg", range(len(BN_CONFIGS)))
def test_batchnorm_matches_e3nn(cfg):
    e3nn_nn = pytest.importorskip("e3nn.nn")
    kwargs = BN_CONFIGS[cfg]
    ours = nn.BatchNorm(IRREPS, **kwargs).double()
    theirs = e3nn_nn.BatchNorm(str(IRREPS), **kwargs).double()
    if ours.affine:
        _randomise_affine(ours, cfg)
    theirs.load_state_dict(ours.state_dict())
    for step, shape in enumerate([(6, 5), (4,), (3, 2, 4)]):
        x = _input(shape, 10 * cfg + step)
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-10)
    for k, v in ours.state_dict().items():
        torch.testing.assert_close(v, theirs.state_dict()[k], rtol=0, atol=1e-12)
    ours.eval()
    theirs.eval()
    x = _input((5, 3), 99)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-10)


def test_batchnorm_scalars_match_torch():
    # independent reference: for 0e only, training mode = torch.nn.BatchNorm1d (biased variance)
    bn = nn.BatchNorm("6x0e", affine=False).double()
    ref = torch.nn.BatchNorm1d(6, affine=False).double()
    x = _input((32,), 1, Irreps("6x0e"))
    torch.testing.assert_close(bn(x), ref(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=0, atol=1e-14)


def test_batchnorm_vectors_definition():
    # l > 0: no centring; divide by sqrt(mean over batch of |x|^2/3 + eps)
    bn = nn.BatchNorm("2x1o", affine=False, eps=1e-5).double()
    x = _input((10,), 2, Irreps("2x1o")).reshape(10, 2, 3)
    v = x.pow(2).mean(-1).mean(0)  # [2]
    expected = x / (v + 1e-5).sqrt()[None, :, None]
    torch.testing.assert_close(bn(x.reshape(10, 6)), expected.reshape(10, 6), rtol=0, atol=1e-12)
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * v, rtol=0, atol=1e-14)


@pytest.mark.parametrize("instance", [False, True])
def test_batchnorm_equivariance(instance):
    bn = nn.BatchNorm(IRREPS, instance=instance).double()
    _randomise_affine(bn)
    x = _input((6, 4), 3)
    for improper in (False, True):
        D = IRREPS.D_from_matrix(_rand_orthogonal(improper, 4))
        for training in (True, False):
            if not training and instance:
                continue
            a, b = copy.deepcopy(bn).train(training), copy.deepcopy(bn).train(training)
            if not training:
                with torch.no_grad():
                    a.running_mean.normal_()
                    a.running_var.uniform_(0.5, 2.0)
                b.load_state_dict(a.state_dict())
            lhs, rhs = a(x @ D.T), b(x) @ D.T
            assert (lhs - rhs).abs().max().item() <= 1e-10
            if training and not instance:
                # running statistics are invariants
                torch.testing.assert_close(a.running_var, b.running_var, rtol=0, atol=1e-12)
                torch.testing.assert_close(a.running_mean, b.running_mean, rtol=0, atol=1e-12)


def test_batchnorm_gradcheck_and_float32():
    bn = nn.BatchNorm("2x0e+1x1o", reduce="mean").double()
    _randomise_affine(bn)
    x = _input((4,), 5, Irreps("2x0e+1x1o")).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: copy.deepcopy(bn)(t), (x,))
    bn32 = nn.BatchNorm(IRREPS).float()
    y = bn32(torch.randn(5, IRREPS.dim, dtype=torch.float32))
    assert y.dtype == torch.float32 and bn32.running_var.dtype == torch.float32


def test_batchnorm_errors():
    bn = nn.BatchNorm(IRREPS)
    with pytest.raises(ValueError, match=rf"\(4, 5\).*{IRREPS.dim}"):
        bn(torch.randn(4, 5))
    with pytest.raises(ValueError, match="batch"):
        bn(torch.randn(IRREPS.dim))
    with pytest.raises(ValueError, match="'median'"):
        nn.BatchNorm(IRREPS, reduce="median")
    with pytest.raises(ValueError, match="'l2'"):
        nn.BatchNorm(IRREPS, normalization="l2")
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm(IRREPS, momentum=2.0)


# ---------------------------------------------------------------------------------------------------------
# LayerNorm
# ---------------------------------------------------------------------------------------------------------


def test_layernorm_scalars_match_torch():
    ln = nn.LayerNorm("8x0e", eps=1e-5).double()
    _randomise_affine(ln)
    ref = torch.nn.LayerNorm(8, eps=1e-5).double()
    ref.load_state_dict(ln.state_dict())
    x = _input((5, 3), 6, Irreps("8x0e"))
    torch.testing.assert_close(ln(x), ref(x), rtol=0, atol=1e-12)


def test_layernorm_definition_mixed():
    irreps = Irreps("3x0e+2x1o+1x2e")
    ln = nn.LayerNorm(irreps, eps=1e-5, affine=False)
    x = _input((4,), 7, irreps)
    s, v, t = x[:, :3], x[:, 3:9], x[:, 9:14]
    s = s - s.mean(-1, keepdim=True)
    expected = torch.cat(
        [
            s / (s.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt(),
            v / (v.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt(),
            t / (t.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt(),
        ],
        dim=-1,
    )
    torch.testing.assert_close(ln(x), expected, rtol=0, atol=1e-12)


def test_layernorm_pools_blocks_of_same_irrep():
    x = _input((5,), 8, Irreps("8x0e+2x1o"))
    a = nn.LayerNorm("4x0e+4x0e+1x1o+1x1o")(x)
    b = nn.LayerNorm("8x0e+2x1o")(x)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-14)


def test_layernorm_per_sample():
    ln = nn.LayerNorm(IRREPS).double()
    x = _input((6,), 9)
    y = ln(x)
    for i in range(6):
        torch.testing.assert_close(ln(x[i]), y[i], rtol=0, atol=1e-14)


def test_layernorm_equivariance_and_gradcheck():
    ln = nn.LayerNorm(IRREPS).double()
    _randomise_affine(ln, 3)
    x = _input((5, 2), 10)
    for improper in (False, True):
        D = IRREPS.D_from_matrix(_rand_orthogonal(improper, 11))
        assert (ln(x @ D.T) - ln(x) @ D.T).abs().max().item() <= 1e-10
    xs = _input((2,), 12).requires_grad_(True)
    assert torch.autograd.gradcheck(ln, (xs,))


def test_layernorm_float32_and_errors():
    ln = nn.LayerNorm(IRREPS).float()
    assert ln(torch.randn(3, IRREPS.dim, dtype=torch.float32)).dtype == torch.float32
    with pytest.raises(ValueError, match=rf"\(3, 4\).*{IRREPS.dim}"):
        ln(torch.randn(3, 4))
    with pytest.raises(ValueError, match="eps"):
        nn.LayerNorm(IRREPS, eps=-1.0)


def test_norms_with_zero_multiplicity_blocks():
    irreps = Irreps("0x0e+2x1o+0x2e+1x0e")
    x = _input((5,), 13, irreps)
    dense = Irreps("2x1o+1x0e")
    bn, bn_dense = nn.BatchNorm(irreps).double(), nn.BatchNorm(dense).double()
    torch.testing.assert_close(bn(x), bn_dense(x), rtol=0, atol=1e-14)
    torch.testing.assert_close(nn.LayerNorm(irreps)(x), nn.LayerNorm(dense)(x), rtol=0, atol=1e-14)
    assert nn.BatchNorm("0x0e")(torch.randn(4, 0)).shape == (4, 0)
    assert nn.LayerNorm("")(torch.randn(4, 0)).shape == (4, 0)
