"""G-CNNs: Z_6 on hexagon vertices and p4m on images (equivariance in float64, training demos)."""

import pytest
import torch

from euclidnet.groups import (
    FiniteGroupAction,
    GroupConv,
    LiftingConv,
    P4MGroupConv,
    P4MLifting,
    cyclic,
    dihedral,
    group_pool,
    p4m_cayley,
    p4m_point_group,
    p4m_transform_features,
    p4m_transform_image,
)
from euclidnet.groups.demos import P4MCNN, HexagonGCNN, make_hexagon_dataset, make_p4m_dataset, train_classifier


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("G", [cyclic(6), dihedral(6)], ids=lambda g: g.name)
def test_finite_gconv_equivariance(G):
    A = FiniteGroupAction.from_permutation_group(G)
    lift, conv = LiftingConv(A, 2, 4).double(), GroupConv(G, 4, 3).double()
    f = torch.randn(5, 2, 6, dtype=torch.float64)
    F = conv(torch.tanh(lift(f)))
    for g in range(G.order):
        F_g = conv(torch.tanh(lift(A.transform_signal(f, g))))
        assert (F_g - A.transform_group_signal(F, g)).abs().max() <= 1e-12
        assert (group_pool(F_g) - group_pool(F)).abs().max() <= 1e-12  # projection: invariant


def test_group_action_transform_is_an_action():
    G = dihedral(6)
    A = FiniteGroupAction.from_permutation_group(G)
    f = torch.randn(6)
    for a in range(G.order):
        for b in range(G.order):
            ab = int(G.cayley[a, b])
            assert torch.equal(A.transform_signal(A.transform_signal(f, b), a), A.transform_signal(f, ab))


def test_lifting_matches_explicit_definition():
    """out(g) = sum_x f(g x) psi(x), evaluated with a plain loop as reference."""
    G = cyclic(6)
    A = FiniteGroupAction.from_permutation_group(G)
    lift = LiftingConv(A, 1, 1, bias=False).double()
    f = torch.randn(1, 1, 6, dtype=torch.float64)
    psi = lift.weight[0, 0]
    ref = torch.stack([sum(f[0, 0, A.perm[g, x]] * psi[x] for x in range(6)) for g in range(6)])
    assert torch.allclose(lift(f)[0, 0], ref)


def test_p4m_tables_are_the_group_d4():
    cay, inv = p4m_cayley()
    D4 = p4m_point_group()
    # same group: both non-abelian of order 8 with 5 classes and 5 elements of order 2
    assert sorted(torch.bincount(D4.element_orders).tolist()) == sorted(
        torch.bincount(torch.tensor([_order(cay, g) for g in range(8)])).tolist()
    )
    assert not torch.equal(cay, cay.T)
    x = torch.randn(7, 7)
    for a in range(8):
        assert torch.equal(p4m_transform_image(p4m_transform_image(x, int(inv[a])), a), x)
        for b in range(8):
            lhs = p4m_transform_image(p4m_transform_image(x, b), a)
            assert torch.equal(lhs, p4m_transform_image(x, int(cay[a, b])))


def _order(cay, g):
    k, h = 1, g
    while h != 0:
        h, k = int(cay[g, h]), k + 1
    return k


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_p4m_equivariance_float64(padding_mode):
    lift = P4MLifting(2, 3, 3, padding_mode).double()
    conv = P4MGroupConv(3, 2, 5, padding_mode).double()
    x = torch.randn(2, 2, 9, 9, dtype=torch.float64)
    y = conv(torch.relu(lift(x)))
    for g in range(8):
        y_g = conv(torch.relu(lift(p4m_transform_image(x, g))))
        assert (y_g - p4m_transform_features(y, g)).abs().max() <= 1e-12
        pooled = group_pool(y_g, dim=2)
        assert (pooled - p4m_transform_image(group_pool(y, dim=2), g)).abs().max() <= 1e-12


def test_p4m_translation_equivariance_with_circular_padding():
    lift = P4MLifting(1, 2, 3, "circular").double()
    conv = P4MGroupConv(2, 2, 3, "circular").double()
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    y = conv(torch.relu(lift(x)))
    shifted = conv(torch.relu(lift(torch.roll(x, (2, -3), dims=(-2, -1)))))
    assert (shifted - torch.roll(y, (2, -3), dims=(-2, -1))).abs().max() <= 1e-12


def test_p4m_float32_and_bad_input():
    lift = P4MLifting(1, 2, 3).float()
    y = lift(torch.randn(1, 1, 5, 5, dtype=torch.float32))
    assert y.dtype == torch.float32 and y.shape == (1, 2, 8, 5, 5)
    with pytest.raises(ValueError, match="odd"):
        P4MLifting(1, 2, 4)
    with pytest.raises(ValueError, match="padding_mode"):
        P4MGroupConv(1, 2, 3, "reflect")
    with pytest.raises(ValueError, match="group features"):
        P4MGroupConv(2, 2)(torch.randn(1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        p4m_transform_image(torch.randn(3, 3), 8)
    with pytest.raises(ValueError, match="not a group action"):
        FiniteGroupAction(cyclic(3), torch.tensor([[0, 1, 2], [2, 0, 1], [2, 0, 1]]))
    with pytest.raises(ValueError, match="mode"):
        group_pool(torch.randn(2, 3, 4), mode="median")


def _train_hexagon(steps):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    x, y = make_hexagon_dataset(256, generator=g, dtype=torch.float32)
    xt, yt = make_hexagon_dataset(256, generator=g, dtype=torch.float32)
    model = HexagonGCNN(channels=6).float()
    losses = train_classifier(model, x, y, steps=steps, lr=0.03, batch=64, generator=g)
    return model, losses, float((model(xt).argmax(1) == yt).float().mean()), xt


def _check_hexagon_invariance(model, xt):
    model = model.double()
    xd = xt[:16].double()
    A = model.action
    for s in range(6):
        assert (model(A.transform_signal(xd, s)) - model(xd)).abs().max() <= 1e-12
        Fs = model.group_features(A.transform_signal(xd, s))
        assert (Fs - A.transform_group_signal(model.group_features(xd), s)).abs().max() <= 1e-12


def test_hexagon_gcnn_trains_and_is_invariant():
    model, losses, acc, xt = _train_hexagon(steps=50)
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])
    _check_hexagon_invariance(model, xt)


@pytest.mark.slow
def test_hexagon_gcnn_reaches_high_accuracy():
    model, losses, acc, xt = _train_hexagon(steps=300)
    assert acc >= 0.95
    _check_hexagon_invariance(model, xt)


def _train_p4m(steps):
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    x, y = make_p4m_dataset(192, size=11, generator=g, dtype=torch.float32)
    xt, yt = make_p4m_dataset(128, size=11, generator=g, dtype=torch.float32)
    model = P4MCNN(channels=4).float()
    losses = train_classifier(model, x, y, steps=steps, lr=0.03, batch=32, generator=g)
    return model, losses, float((model(xt).argmax(1) == yt).float().mean()), xt


def _check_p4m_invariance(model, xt):
    model = model.double()
    xd = xt[:4].double()
    for s in range(8):
        assert (model(p4m_transform_image(xd, s)) - model(xd)).abs().max() <= 1e-12


def test_p4m_cnn_trains_and_is_invariant():
    model, losses, acc, xt = _train_p4m(steps=25)
    assert sum(losses[-5:]) < sum(losses[:5])
    _check_p4m_invariance(model, xt)


@pytest.mark.slow
def test_p4m_cnn_reaches_high_accuracy():
    model, losses, acc, xt = _train_p4m(steps=200)
    assert acc >= 0.9
    _check_p4m_invariance(model, xt)
