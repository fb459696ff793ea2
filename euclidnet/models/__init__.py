"""Models: one file per family. Build by name with :func:`build_model` (names: :func:`available_models`)."""

from .nequip import NequIP
from .potential import energy_forces_stress
from .registry import available_models, build_model, register_model
from .schnet import SchNet
from .se3_transformer import EquivariantAttention, SE3Transformer
from .tensor_frames import TensorFrames
from .tfn import TensorFieldNetwork

__all__ = [
    "available_models",
    "build_model",
    "register_model",
    "energy_forces_stress",
    "NequIP",
    "TensorFieldNetwork",
    "SE3Transformer",
    "EquivariantAttention",
    "SchNet",
    "TensorFrames",
]
