"""Segment reductions ("scatter" ops) built on native torch ops, differentiable, no extra dependency.

All functions reduce ``src`` along ``dim`` into ``dim_size`` segments given by a 1-D ``index`` with one
entry per slice of ``src`` along ``dim`` (``index.shape == (src.shape[dim],)``); the other dimensions
of ``src`` (e.g. trailing feature dims ``[E, F...]``) are carried along. Segments that receive no
element (empty segments, including every segment ``>= max(index) + 1`` when ``dim_size`` is larger) are 0.
``index`` is checked on every call (dtype, shape, ``0 <= index < dim_size``); the range check reads
``index.min()``/``index.max()``, which synchronises with the device on GPU.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

__all__ = ["scatter_sum", "scatter_mean", "scatter_max", "scatter_softmax"]


def _check(src: Tensor, index: Tensor, dim: int, dim_size: int | None) -> tuple[Tensor, int, int]:
    if not isinstance(src, Tensor):
        raise TypeError(f"src must be a torch.Tensor, got {type(src).__name__}")
    if not isinstance(index, Tensor):
        raise TypeError(f"index must be a torch.Tensor, got {type(index).__name__}")
    if src.dim() == 0:
        raise ValueError("src must have at least one dimension, got a 0-d tensor")
    if not -src.dim() <= dim < src.dim():
        raise ValueError(f"dim={dim} is out of range for src with {src.dim()} dimensions")
    dim = dim % src.dim()
    if index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"index must have dtype int64 (or int32), got {index.dtype}")
    if index.dim() != 1 or index.shape[0] != src.shape[dim]:
        raise ValueError(
            f"index must be 1-D with one entry per element of src along dim {dim} "
            f"(shape [{src.shape[dim]}]), got shape {tuple(index.shape)}"
        )
    if index.device != src.device:
        raise ValueError(f"index is on {index.device} but src is on {src.device}")
    index = index.long()
    if index.numel() > 0:
        lo, hi = int(index.min()), int(index.max())
        if lo < 0:
            raise ValueError(f"index must be >= 0, got min(index) = {lo}")
    else:
        hi = -1
    if dim_size is None:
        dim_size = hi + 1
    else:
        if isinstance(dim_size, bool) or not isinstance(dim_size, numbers.Integral):
            raise TypeError(f"dim_size must be an int or None, got {dim_size!r}")
        dim_size = int(dim_size)
        if dim_size <= hi:
            raise ValueError(f"dim_size={dim_size} is too small: max(index) = {hi} needs dim_size >= {hi + 1}")
    return index, dim, dim_size


def _out_shape(src: Tensor, dim: int, dim_size: int) -> list[int]:
    shape = list(src.shape)
    shape[dim] = dim_size
    return shape


def _broadcast_index(index: Tensor, src: Tensor, dim: int) -> Tensor:
    view = [1] * src.dim()
    view[dim] = -1
    return index.view(view).expand_as(src)


def scatter_sum(src: Tensor, index: Tensor, dim: int = 0, dim_size: int | None = None) -> Tensor:
    """Sum of ``src`` slices per segment: ``out[s] = sum_{e: index[e] = s} src[e]`` along ``dim``.

    Args:
        src: ``[..., E, ...]`` tensor with ``E = src.shape[dim]``.
        index: ``[E]`` int64 segment id of each slice, ``>= 0``.
        dim: dimension of ``src`` being reduced.
        dim_size: number of segments; defaults to ``max(index) + 1`` (0 for empty ``index``).

    Returns:
        Tensor like ``src`` with ``shape[dim] = dim_size``; empty segments are 0.
    """
    index, dim, dim_size = _check(src, index, dim, dim_size)
    out = src.new_zeros(_out_shape(src, dim, dim_size))
    return out.index_add(dim, index, src)


def scatter_mean(src: Tensor, index: Tensor, dim: int = 0, dim_size: int | None = None) -> Tensor:
    """Mean of ``src`` slices per segment along ``dim`` (shapes as :func:`scatter_sum`); empty segments are 0."""
    index, dim, dim_size = _check(src, index, dim, dim_size)
    total = src.new_zeros(_out_shape(src, dim, dim_size)).index_add(dim, index, src)
    count = torch.bincount(index, minlength=dim_size).clamp(min=1).to(total.dtype)
    view = [1] * src.dim()
    view[dim] = -1
    return total / count.view(view)


def scatter_max(src: Tensor, index: Tensor, dim: int = 0, dim_size: int | None = None) -> Tensor:
    """Elementwise maximum of ``src`` slices per segment along ``dim`` (shapes as :func:`scatter_sum`).

    Returns the values only; empty segments are 0. The gradient flows to the maximal element(s),
    split evenly between exact ties (torch's ``scatter_reduce(..., "amax")`` rule).
    """
    index, dim, dim_size = _check(src, index, dim, dim_size)
    out = src.new_zeros(_out_shape(src, dim, dim_size))
    # include_self=False: the zeros only show through in segments no element reaches.
    return out.scatter_reduce(dim, _broadcast_index(index, src, dim), src, "amax", include_self=False)


def scatter_softmax(src: Tensor, index: Tensor, dim: int = 0, dim_size: int | None = None) -> Tensor:
    """Softmax of ``src`` within each segment along ``dim``: ``exp(src[e]) / sum_{index[e'] = index[e]} exp(src[e'])``.

    Returns a tensor of the same shape as ``src`` whose entries sum to 1 over every non-empty segment
    (for each trailing position). Numerically stable: the per-segment maximum is subtracted first, so
    logits of any magnitude (e.g. 1e3) give no overflow. A segment whose logits are all ``-inf`` gives
    NaN, like :func:`torch.softmax`. ``dim_size`` only needs to cover ``max(index) + 1``.
    """
    index, dim, dim_size = _check(src, index, dim, dim_size)
    if not src.is_floating_point():
        raise TypeError(f"scatter_softmax needs a floating-point src, got {src.dtype}")
    full_index = _broadcast_index(index, src, dim)
    with torch.no_grad():
        # Softmax is invariant to a per-segment constant, so the max needs no gradient path.
        seg_max = src.new_zeros(_out_shape(src, dim, dim_size)).scatter_reduce(
            dim, full_index, src, "amax", include_self=False
        )
        seg_max = torch.where(torch.isfinite(seg_max), seg_max, torch.zeros_like(seg_max))
    exp = (src - seg_max.gather(dim, full_index)).exp()
    denom = src.new_zeros(_out_shape(src, dim, dim_size)).index_add(dim, index, exp)
    return exp / denom.gather(dim, full_index)
