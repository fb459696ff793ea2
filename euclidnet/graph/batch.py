"""Conversions between the two usual encodings of a batch of graphs.

- ``batch``: int64 ``[N]``, graph index of every node (sorted: nodes of graph ``b`` are contiguous).
- ``ptr``: int64 ``[B + 1]``, node offsets; graph ``b`` owns nodes ``ptr[b]:ptr[b + 1]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["batch_from_sizes", "batch_from_ptr", "ptr_from_batch", "sizes_from_batch"]


def _check_int_1d(name: str, t: Tensor) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must have dtype int64 (or int32), got {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    return t.long()


def batch_from_sizes(sizes: Tensor) -> Tensor:
    """``[B]`` node counts per graph -> int64 ``[sum(sizes)]`` sorted graph index of every node."""
    sizes = _check_int_1d("sizes", sizes)
    if sizes.numel() and int(sizes.min()) < 0:
        raise ValueError(f"sizes must be >= 0, got min {int(sizes.min())}")
    return torch.repeat_interleave(torch.arange(sizes.numel(), device=sizes.device), sizes)


def batch_from_ptr(ptr: Tensor) -> Tensor:
    """``[B + 1]`` offsets (``ptr[0] = 0``, non-decreasing) -> int64 ``[ptr[-1]]`` graph index per node."""
    ptr = _check_int_1d("ptr", ptr)
    if ptr.numel() == 0 or int(ptr[0]) != 0:
        raise ValueError(f"ptr must be non-empty and start at 0, got {ptr.tolist()[:5]}")
    sizes = ptr[1:] - ptr[:-1]
    if sizes.numel() and int(sizes.min()) < 0:
        raise ValueError("ptr must be non-decreasing")
    return batch_from_sizes(sizes)


def sizes_from_batch(batch: Tensor, num_graphs: int | None = None) -> Tensor:
    """int64 ``[B]`` node count of every graph (``B = num_graphs`` or ``max(batch) + 1``); any order."""
    batch = _check_int_1d("batch", batch)
    if batch.numel() and int(batch.min()) < 0:
        raise ValueError(f"batch must be >= 0, got min {int(batch.min())}")
    needed = int(batch.max()) + 1 if batch.numel() else 0
    if num_graphs is None:
        num_graphs = needed
    elif num_graphs < needed:
        raise ValueError(f"num_graphs={num_graphs} is smaller than max(batch) + 1 = {needed}")
    return torch.bincount(batch, minlength=num_graphs)


def ptr_from_batch(batch: Tensor, num_graphs: int | None = None) -> Tensor:
    """Sorted ``[N]`` graph index -> int64 ``[B + 1]`` offsets. Raises if ``batch`` is not sorted,
    because offsets cannot describe interleaved graphs."""
    batch = _check_int_1d("batch", batch)
    if batch.numel() > 1 and not bool((batch[1:] >= batch[:-1]).all()):
        raise ValueError("batch must be sorted (non-decreasing) to be described by ptr offsets")
    sizes = sizes_from_batch(batch, num_graphs)
    return torch.cat([sizes.new_zeros(1), torch.cumsum(sizes, 0)])
