"""euclidnet: E(3)/O(3)-equivariant neural networks."""

from . import o3

__version__ = "0.1.0"

__all__ = ["o3", "__version__"]
