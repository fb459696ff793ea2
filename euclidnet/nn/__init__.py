"""Equivariant building blocks: nonlinearities, normalisation, dropout, radial bases and cut-offs, MLPs."""

from .activation import Gate, NormActivation, activation_parity, moment, normalize2mom
from .dropout import Dropout
from .mlp import FullyConnectedNet
from .norm import BatchNorm, LayerNorm
from .radial import BASES, BesselBasis, CosineCutoff, PolynomialCutoff, soft_one_hot_linspace, soft_unit_step
from .so2 import ChannelwiseConvolution, SO2Convolution, so2_kernel_available

__all__ = [
    "Gate",
    "NormActivation",
    "normalize2mom",
    "moment",
    "activation_parity",
    "BatchNorm",
    "LayerNorm",
    "Dropout",
    "FullyConnectedNet",
    "soft_one_hot_linspace",
    "soft_unit_step",
    "BASES",
    "BesselBasis",
    "PolynomialCutoff",
    "CosineCutoff",
    "SO2Convolution",
    "ChannelwiseConvolution",
    "so2_kernel_available",
]
