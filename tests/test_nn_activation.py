"""Tests for euclidnet.nn activations: normalize2mom, Gate, NormActivation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from euclidnet import nn
from euclidnet.o3 import Irreps, rand_matrix

F64 = torch.float64


def _rand_orthogonal(improper: bool, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    R = rand_matrix(generator=g, dtype=F64)
    return -R if improper else R


def _assert_equivariant(module: torch.nn.Module, irreps_in: Irreps, irreps_out: Irreps, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    x = irreps_in.randn(7, generator=g, dtype=F64)
    for improper in (False, True):
        R = _rand_orthogonal(improper, seed + 1)
        D_in = irreps_in.D_from_matrix(R)
        D_out = irreps_out.D_from_matrix(R)
        lhs = module(x @ D_in.T)
        rhs = module(x) @ D_out.T
        assert (lhs - rhs).abs().max().item() <= 1e-10, f"not equivariant (improper={improper})"


# ---------------------------------------------------------------------------------------------------------
# normalize2mom / moment / parity
# ---------------------------------------------------------------------------------------------------------


def _hermite_second_moment(f_np) -> float:
    """Independent reference: 200-point Gauss-Hermite (probabilists') quadrature of E[f(Z)^2]."""
    z, w = np.polynomial.hermite_e.hermegauss(200)
    return float((w * f_np(z) ** 2).sum() / math.sqrt(2 * math.pi))


def test_normalize2mom_closed_forms():
    # E[relu(Z)^2] = 1/2, E[|Z|^2] = E[Z^2] = 1, E[(Z^2)^2] = 3
    assert abs(nn.normalize2mom(torch.relu).cst - math.sqrt(2.0)) < 1e-12
    assert abs(nn.normalize2mom(torch.abs).cst - 1.0) < 1e-12
    assert abs(nn.normalize2mom(lambda x: x).cst - 1.0) < 1e-12
    assert abs(nn.normalize2mom(lambda x: x * x).cst - 3**-0.5) < 1e-12
    # exp: E[exp(2Z)] = e^2
    assert abs(nn.moment(torch.exp, 2) - math.e**2) < 1e-10
    assert abs(nn.moment(torch.relu, 1) - 1 / math.sqrt(2 * math.pi)) < 1e-12


def test_normalize2mom_against_gauss_hermite():
    cases = [
        (torch.tanh, np.tanh),
        (torch.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
        (torch.nn.functional.silu, lambda x: x / (1 + np.exp(-x))),
    ]
    for f_t, f_np in cases:
        ref = _hermite_second_moment(f_np) ** -0.5
        assert abs(nn.normalize2mom(f_t).cst - ref) < 1e-10


def test_normalize2mom_deterministic_and_unit_moment():
    a, b = nn.normalize2mom(torch.tanh), nn.normalize2mom(torch.tanh)
    assert a.cst == b.cst
    g = torch.Generator().manual_seed(0)
    z = torch.randn(400_000, generator=g, dtype=F64)
    assert abs(a(z).pow(2).mean().item() - 1.0) < 0.01
    # module activations work and float32 inputs keep their dtype
    m = nn.normalize2mom(torch.nn.SiLU())
    assert m(torch.randn(3, dtype=torch.float32)).dtype == torch.float32


def test_normalize2mom_close_to_e3nn():
    e3nn_math = pytest.importorskip("e3nn.math")
    for f in (torch.tanh, torch.relu, torch.nn.functional.silu):
        # e3nn uses 10^6 Monte Carlo samples: agreement only up to its sampling error
        assert abs(nn.normalize2mom(f).cst / e3nn_math.normalize2mom(f).cst - 1) < 5e-3


def test_normalize2mom_errors():
    with pytest.raises(TypeError, match="callable"):
        nn.normalize2mom(3.0)
    with pytest.raises(ValueError, match="zero second moment"):
        nn.normalize2mom(lambda x: 0 * x)


def test_activation_parity():
    assert nn.activation_parity(torch.tanh) == -1
    assert nn.activation_parity(torch.abs) == 1
    assert nn.activation_parity(torch.cos) == 1
    assert nn.activation_parity(torch.relu) == 0
    assert nn.activation_parity(torch.sigmoid) == 0


# ---------------------------------------------------------------------------------------------------------
# Gate
# ---------------------------------------------------------------------------------------------------------

GATE_CASES = [
    ("8x0e+4x0o", [torch.relu, torch.tanh], "2x0e+3x0o", [torch.sigmoid, torch.tanh], "2x1o+2x2e+1x1e"),
    ("3x0o", [torch.abs], "4x0e", [torch.sigmoid], "1x1o+2x0e+1x3o"),
    ("5x0e", [torch.nn.functional.silu], "", [], ""),
    ("", [], "2x0o+1x0e", [torch.tanh, None], "1x1e+1x0o+1x2o"),
]


def test_gate_irreps_and_parity():
    g = nn.Gate("8x0e+4x0o", [torch.relu, torch.tanh], "2x0e+3x0o", [torch.sigmoid, torch.tanh], "2x1o+2x2e+1x1e")
    assert g.irreps_in == Irreps("8x0e+4x0o+2x0e+3x0o+2x1o+2x2e+1x1e")
    # tanh on 0o stays 0o; gates are 0e 0e 0o 0o 0o (tanh odd keeps 0o), the 0o gates flip the parity of
    # what they gate: 1o 1o 2e 2e 1e -> 1o 1o 2o 2o 1o
    assert g.irreps_out == Irreps("8x0e+4x0o+2x1o+2x2o+1x1o")
    g2 = nn.Gate("3x0o", [torch.abs], "4x0e", [torch.sigmoid], "4x1o")
    assert g2.irreps_out == Irreps("3x0e+4x1o")  # even activation: 0o -> 0e


def test_gate_matches_definition():
    g = nn.Gate("2x0e+1x0o", [torch.relu, torch.tanh], "1x0e+1x0o", [torch.sigmoid, torch.tanh], "1x1o+1x2e")
    x = Irreps("2x0e+1x0o+1x0e+1x0o+1x1o+1x2e").randn(5, dtype=F64)
    c = {f: nn.normalize2mom(f).cst for f in (torch.relu, torch.tanh, torch.sigmoid)}
    expected = torch.cat(
        [
            c[torch.relu] * torch.relu(x[:, 0:2]),
            c[torch.tanh] * torch.tanh(x[:, 2:3]),
            c[torch.sigmoid] * torch.sigmoid(x[:, 3:4]) * x[:, 5:8],
            c[torch.tanh] * torch.tanh(x[:, 4:5]) * x[:, 8:13],
        ],
        dim=-1,
    )
    torch.testing.assert_close(g(x), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("case", range(len(GATE_CASES)))
def test_gate_equivariance(case):
    g = nn.Gate(*GATE_CASES[case])
    _assert_equivariant(g, g.irreps_in, g.irreps_out, seed=case)


@pytest.mark.parametrize("case", range(len(GATE_CASES)))
def test_gate_matches_e3nn(case):
    e3nn_nn = pytest.importorskip("e3nn.nn")
    e3o3 = pytest.importorskip("e3nn.o3")
    args = GATE_CASES[case]
    ours = nn.Gate(*args)
    theirs = e3nn_nn.Gate(*args)
    # e3nn estimates the normalisation constants by Monte Carlo; use our exact ones so that everything else
    # (block routing, parities, gating) is compared to 1e-10.
    pairs = [(ours.act_scalars.acts, theirs.act_scalars.acts), (ours.act_gates.acts, theirs.act_gates.acts)]
    for our_acts, their_acts in pairs:
        for a, b in zip(our_acts, their_acts):
            if isinstance(a, nn.normalize2mom):
                b.cst = a.cst
                b._is_id = False
    assert str(ours.irreps_out.simplify()) == str(theirs.irreps_out.simplify())
    # e3nn's Gate expects its input sorted by irrep; ours keeps the concatenation order
    s, _, gates, _, gated = args
    cat = e3o3.Irreps(s).simplify() + e3o3.Irreps(gates).simplify() + e3o3.Irreps(gated).simplify()
    x = ours.irreps_in.randn(11, dtype=F64, generator=torch.Generator().manual_seed(case))
    chunks = [x[..., sl] for sl in cat.slices()]
    x_e3nn = torch.cat([chunks[i] for i in cat.sort().inv], dim=-1)
    assert str(cat.sort().irreps.simplify()) == str(theirs.irreps_in)
    torch.testing.assert_close(ours(x), theirs(x_e3nn), rtol=0, atol=1e-10)


def test_gate_gradcheck_and_float32():
    g = nn.Gate("2x0e", [torch.tanh], "2x0o", [torch.tanh], "1x1o+1x1e")
    x = g.irreps_in.randn(3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(g, (x,))
    y = g(g.irreps_in.randn(4, dtype=torch.float32))
    assert y.dtype == torch.float32 and y.shape == (4, g.irreps_out.dim)


def test_gate_second_moment():
    g = nn.Gate("64x0e", [torch.nn.functional.silu], "32x0e", [torch.sigmoid], "16x1o+16x2e")
    x = g.irreps_in.randn(4000, generator=torch.Generator().manual_seed(3))
    m = g(x).pow(2).mean().item()
    assert 0.8 < m < 1.2, m


def test_gate_errors():
    with pytest.raises(ValueError, match="1o"):
        nn.Gate("4x0e", [torch.relu], "2x1o", [torch.sigmoid], "2x1o")
    with pytest.raises(ValueError, match="4 irreps"):
        nn.Gate("", [], "2x0e", [torch.sigmoid], "4x1o")
    with pytest.raises(ValueError, match="neither even nor odd"):
        nn.Gate("2x0o", [torch.relu], "", [], "")
    with pytest.raises(ValueError, match="scalars"):
        nn.Gate("2x1o", [None], "", [], "")
    with pytest.raises(ValueError, match="2 entries"):
        nn.Gate("4x0e", [torch.relu, torch.relu], "", [], "")
    g = nn.Gate("4x0e", [torch.relu], "1x0e", [torch.sigmoid], "1x1o")
    with pytest.raises(ValueError, match=r"\(3, 7\).*8"):
        g(torch.randn(3, 7))


# ---------------------------------------------------------------------------------------------------------
# NormActivation
# ---------------------------------------------------------------------------------------------------------

IRREPS_NA = Irreps("3x0e+2x0o+2x1o+1x1e+2x2e")


def test_norm_activation_definition():
    na = nn.NormActivation(IRREPS_NA, torch.sigmoid)
    x = IRREPS_NA.randn(6, dtype=F64)
    y = na(x)
    i = 0
    for mul, ir in IRREPS_NA:
        for _ in range(mul):
            xi, yi = x[:, i : i + ir.dim], y[:, i : i + ir.dim]
            n = xi.norm(dim=-1, keepdim=True)
            torch.testing.assert_close(yi, xi / n * torch.sigmoid(n), rtol=1e-12, atol=1e-14)
            i += ir.dim
    na2 = nn.NormActivation(IRREPS_NA, torch.sigmoid, normalize=False)
    x1 = x[:, 3:5]  # the two 0o copies: x * sigmoid(|x|)
    torch.testing.assert_close(na2(x)[:, 3:5], x1 * torch.sigmoid(x1.abs()), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("normalize", [True])  # e3nn 0.6.0 cannot build NormActivation(normalize=False)
def test_norm_activation_matches_e3nn(normalize):
    e3nn_nn = pytest.importorskip("e3nn.nn")
    e3o3 = pytest.importorskip("e3nn.o3")
    ours = nn.NormActivation(IRREPS_NA, torch.tanh, normalize=normalize, bias=True)
    theirs = e3nn_nn.NormActivation(e3o3.Irreps(str(IRREPS_NA)), torch.tanh, normalize=normalize, bias=True)
    with torch.no_grad():
        ours.biases.copy_(torch.linspace(-0.5, 0.5, IRREPS_NA.num_irreps))
        theirs.biases.copy_(ours.biases)
    x = IRREPS_NA.randn(9, dtype=F64)
    torch.testing.assert_close(ours.double()(x), theirs.double()(x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("normalize", [True, False])
def test_norm_activation_equivariance(normalize):
    na = nn.NormActivation(IRREPS_NA, torch.nn.functional.silu, normalize=normalize, bias=True).double()
    with torch.no_grad():
        na.biases.normal_()
    _assert_equivariant(na, IRREPS_NA, na.irreps_out)


def test_norm_activation_at_zero():
    # f(0) = 0: the map is smooth at 0 with Jacobian f'(0) I; tanh'(0) = 1
    na = nn.NormActivation("1x1o+1x0e", torch.tanh)
    J = torch.autograd.functional.jacobian(na, torch.zeros(4, dtype=F64))
    assert torch.isfinite(J).all()
    torch.testing.assert_close(J, torch.eye(4, dtype=F64), rtol=0, atol=1e-12)
    # normalize=False: d/dx [x f(|x|)] at 0 is f(0) I exactly
    na2 = nn.NormActivation("1x1o+1x2e", torch.sigmoid, normalize=False)
    J2 = torch.autograd.functional.jacobian(na2, torch.zeros(8, dtype=F64))
    torch.testing.assert_close(J2, 0.5 * torch.eye(8, dtype=F64), rtol=0, atol=0)
    assert na2(torch.zeros(8)).abs().max() == 0


@pytest.mark.parametrize("normalize", [True, False])
def test_norm_activation_gradcheck(normalize):
    na = nn.NormActivation("2x0e+1x1o+1x2e", torch.tanh, normalize=normalize, bias=True).double()
    x = Irreps("2x0e+1x1o+1x2e").randn(3, dtype=F64)
    x[0, 2:5] = 0.0  # one vector exactly at the origin
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(na, (x,))


def test_norm_activation_second_moment_scalars():
    # for an odd (or even) f, f(|z|)^2 = f(z)^2, so normalize2mom makes the second moment exactly 1 in
    # expectation for scalar irreps; (for l > 0 it is E[f(rho)^2]/(2l+1) with rho ~ chi_{2l+1}, not 1)
    irreps = Irreps("64x0e+64x0o")
    na = nn.NormActivation(irreps, nn.normalize2mom(torch.tanh))
    x = irreps.randn(4000, generator=torch.Generator().manual_seed(5))
    m = na(x).pow(2).mean().item()
    assert 0.8 < m < 1.2, m


def test_norm_activation_float32_and_errors():
    na = nn.NormActivation("2x1o", torch.tanh)
    assert na(torch.randn(3, 6, dtype=torch.float32)).dtype == torch.float32
    with pytest.raises(ValueError, match="normalize=False"):
        nn.NormActivation("2x1o", torch.tanh, normalize=False, epsilon=1e-3)
    with pytest.raises(ValueError, match="epsilon"):
        nn.NormActivation("2x1o", torch.tanh, epsilon=-1.0)
    with pytest.raises(TypeError, match="callable"):
        nn.NormActivation("2x1o", "tanh")
    with pytest.raises(ValueError, match=r"\(3, 5\).*6"):
        na(torch.randn(3, 5))


def test_empty_and_zero_multiplicity_inputs():
    g = nn.Gate("0x0e+2x0e", [torch.relu, torch.relu], "0x0e+1x0e", [None, torch.sigmoid], "0x1o+1x1o")
    assert g.irreps_out == Irreps("2x0e+1x1o")
    assert g(torch.randn(0, 6)).shape == (0, 5)
    assert nn.Gate("", [], "", [], "")(torch.randn(3, 0)).shape == (3, 0)
    na = nn.NormActivation("0x1o+1x1o", torch.tanh)
    assert na(torch.randn(0, 3)).shape == (0, 3)
