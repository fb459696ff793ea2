"""Tests for euclidnet.nn.FullyConnectedNet."""

from __future__ import annotations

import pytest
import torch

from euclidnet import nn

F64 = torch.float64

MLP_CONFIGS = [
    dict(hs=[5, 16, 16, 3], act=torch.nn.functional.silu),
    dict(hs=[4, 8, 2], act=torch.tanh, out_act=True, variance_in=2.0, variance_out=0.5),
    dict(hs=[6, 3], act=None),
    dict(hs=[3, 7, 1], act=torch.relu, variance_out=3.0),
]


@pytest.mark.parametrize("cfg", range(len(MLP_CONFIGS)))
def test_fc_matches_e3nn(cfg):
    e3nn_nn = pytest.importorskip("e3nn.nn")
    kw = MLP_CONFIGS[cfg]
    ours = nn.FullyConnectedNet(**kw).double()
    theirs = e3nn_nn.FullyConnectedNet(**kw).double()
    theirs.load_state_dict(ours.state_dict())  # same parameter names and shapes
    # e3nn's normalize2mom constant is a Monte Carlo estimate; use our exact one
    for a, b in zip(ours, theirs):
        if a.act is not None:
            b.act.cst = a.act.cst
            b.act._is_id = False
    x = torch.randn(11, kw["hs"][0], dtype=F64)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-10)


def test_fc_definition():
    net = nn.FullyConnectedNet([3, 5, 2], act=torch.tanh, variance_out=4.0).double()
    c = nn.normalize2mom(torch.tanh).cst
    x = torch.randn(7, 3, dtype=F64)
    h = c * torch.tanh(x @ net.layer0.weight / 3**0.5)
    expected = h @ net.layer1.weight / (5 / 4.0) ** 0.5
    torch.testing.assert_close(net(x), expected, rtol=0, atol=1e-14)
    assert not any("bias" in name for name, _ in net.named_parameters())


def test_fc_second_moment():
    torch.manual_seed(1)
    net = nn.FullyConnectedNet([16, 256, 256, 64], act=torch.nn.functional.silu).double()
    x = torch.randn(2000, 16, dtype=F64)
    m = net(x).pow(2).mean().item()
    assert 0.8 < m < 1.2, m
    net2 = nn.FullyConnectedNet([16, 256, 64], act=torch.nn.functional.silu, variance_in=4.0, variance_out=2.0)
    m2 = net2.double()(2.0 * x).pow(2).mean().item()
    assert 1.6 < m2 < 2.4, m2


def test_fc_gradcheck_float32_and_shapes():
    net = nn.FullyConnectedNet([3, 4, 2], act=torch.nn.functional.silu).double()
    x = torch.randn(2, 5, 3, dtype=F64, requires_grad=True)
    assert net(x).shape == (2, 5, 2)
    assert torch.autograd.gradcheck(net, (x,))
    net32 = nn.FullyConnectedNet([3, 4, 2], act=torch.tanh).float()
    assert net32(torch.randn(4, 3, dtype=torch.float32)).dtype == torch.float32


def test_fc_errors():
    net = nn.FullyConnectedNet([3, 4, 2], act=torch.tanh)
    with pytest.raises(ValueError, match=r"\(4, 5\).*hs\[0\] = 3"):
        net(torch.randn(4, 5))
    with pytest.raises(ValueError, match="at least"):
        nn.FullyConnectedNet([3])
    with pytest.raises(ValueError, match="positive int"):
        nn.FullyConnectedNet([3, 0, 2])
    with pytest.raises(TypeError, match="callable"):
        nn.FullyConnectedNet([3, 2], act="relu")
