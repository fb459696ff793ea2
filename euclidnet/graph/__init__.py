"""Graph construction and message-passing primitives: radius graphs with periodic boundaries,
scatter (segment) reductions and batch-index helpers."""

from .batch import batch_from_ptr, batch_from_sizes, ptr_from_batch, sizes_from_batch
from .data import AtomicGraph, collate  # noqa: E402  (after neighbors: data uses it)
from .neighbors import radius_graph, vesin_available
from .scatter import scatter_max, scatter_mean, scatter_softmax, scatter_sum

__all__ = [
    "AtomicGraph",
    "collate",
    "radius_graph",
    "vesin_available",
    "scatter_sum",
    "scatter_mean",
    "scatter_max",
    "scatter_softmax",
    "batch_from_sizes",
    "batch_from_ptr",
    "ptr_from_batch",
    "sizes_from_batch",
]
