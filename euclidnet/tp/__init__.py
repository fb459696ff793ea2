"""Tensor products: descriptors (the data), executors (the kernels) and the modules built on them."""

from .descriptor import MODES, Path, TensorProductDescriptor
from .execution import TensorProductExecutor
from .interop import load_e3nn_weights
from .tensor_product import (
    ChannelwiseTensorProduct,
    ElementwiseTensorProduct,
    FullTensorProduct,
    FullyConnectedTensorProduct,
    TensorProduct,
    TensorSquare,
)

__all__ = [
    "MODES",
    "Path",
    "TensorProductDescriptor",
    "TensorProductExecutor",
    "TensorProduct",
    "FullyConnectedTensorProduct",
    "ChannelwiseTensorProduct",
    "ElementwiseTensorProduct",
    "FullTensorProduct",
    "TensorSquare",
    "load_e3nn_weights",
]
