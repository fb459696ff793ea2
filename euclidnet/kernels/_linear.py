"""ctypes bindings of the equivariant-linear C kernels (source in :mod:`euclidnet.kernels._linear_source`).

:class:`LinearKernelPlan` describes a linear map between irreps as *pairs* of blocks of the same irrep,
``(x offset, mul_in, y offset, mul_out, d, weight offset, alpha)``: ``y[n, w, i] += alpha sum_u W[u, w]
x[n, u, i]`` with ``W`` the row-major ``[mul_in, mul_out]`` block of the flat weight vector at the weight
offset, features laid out mul-major (``x[n, off + u * d + i]``). Its :meth:`~LinearKernelPlan.forward` and
:meth:`~LinearKernelPlan.backward` run the compiled kernels (first-order derivatives only: the results
carry no autograd graph).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import torch

from ._build import KernelBuildError, LazyLibrary
from ._linear_source import source

__all__ = ["LinearKernelPlan", "linear_kernel_available", "linear_kernel_error"]

# Multiply-adds per thread below which starting another thread costs more than it saves (~40 us of work).
_MIN_MACS_PER_THREAD = 1 << 21
# Samples per chunk: the unit of work that stays in cache between the tiles of the map (the chunk's input
# rows are re-read once per column tile of 16 output channels) and between the input gradient and the
# weight gradient of the backward (the packed rows of one chunk).
CHUNK = 48


def _declare(lib: ctypes.CDLL) -> None:
    i64, i32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    for sfx in ("f32", "f64"):
        f = getattr(lib, f"euclidnet_linear_{sfx}")
        f.argtypes = [i64, ptr, ptr, i64, ptr, i64, i32, ptr, ptr, ptr, ptr, i64, ptr, i32, ptr, ptr, i64, i32]
        f.restype = i32


_LIBRARY = LazyLibrary("euclidnet_linear", source, _declare)


def linear_kernel_available() -> bool:
    """Whether the compiled linear kernels can be used (builds them on first call)."""
    return _LIBRARY.get() is not None


def linear_kernel_error() -> str | None:
    """Why the kernels are unavailable (``None`` if available or not yet tried)."""
    return _LIBRARY.error


def _ints(rows: list[list[int]]) -> torch.Tensor:
    flat = [v for r in rows for v in r]
    return torch.tensor(flat if flat else [0], dtype=torch.int32)


def _doubles(values: list[float]) -> torch.Tensor:
    return torch.tensor(values if values else [0.0], dtype=torch.float64)


def _rows(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``t [Z, D]`` with unit column stride (a copy only if needed) and its row stride (0: one repeated row,
    as in the expanded gradient of ``out.sum()``)."""
    if t.shape[1] <= 1 or t.stride(1) == 1:
        return t, t.stride(0)
    if t.stride(0) == 0:
        return t[:1].contiguous().expand(t.shape[0], -1), 0
    t = t.contiguous()
    return t, t.shape[1]


class _Map:
    """Segment tables of one direction of the map: destination blocks, each fed by its source blocks."""

    def __init__(self, entries: list[tuple[int, int, int, int, int, int, int, float]], dim_dst: int) -> None:
        # entry: (dst offset, mul_dst, d, src offset, mul_src, woff, sa, sb, alpha) grouped by destination
        by_dst: dict[int, list[tuple[int, int, int, int, int, int, int, float]]] = {}
        for e in entries:
            by_dst.setdefault(e[0], []).append(e)
        seg, src, alpha = [], [], []
        covered = 0
        for yoff in sorted(by_dst):
            es = by_dst[yoff]
            _, mul_dst, d = es[0][:3]
            seg.append([yoff, mul_dst, d, len(src), len(src) + len(es), sum(e[4] for e in es)])
            for e in es:
                src.append([e[3], e[4], e[5], e[6], e[7]])
                alpha.append(e[8])
            covered += mul_dst * d
        self.nseg = len(seg)
        self.seg, self.src, self.alpha = _ints(seg), _ints(src), _doubles(alpha)
        self.covered = covered == dim_dst


class LinearKernelPlan:
    """A linear map between irreps as block pairs, run by the compiled kernels.

    Args:
        pairs: ``(x offset, mul_in, y offset, mul_out, d, weight offset, alpha)`` per pair of blocks, at most
            one pair per (input block, output block); ``mul_in, mul_out > 0``.
        dim_in, dim_out: row lengths of ``x`` and ``y``; columns no pair writes are zero.
        weight_numel: length of the flat weight vector (weights of no pair get a zero gradient).
    """

    def __init__(
        self, pairs: Sequence[tuple[int, int, int, int, int, int, float]], dim_in: int, dim_out: int, weight_numel: int
    ) -> None:
        self.dim_in, self.dim_out, self.weight_numel = dim_in, dim_out, weight_numel
        pairs = list(pairs)
        self.fwd = _Map([(yo, mo, d, xo, mi, wo, mo, 1, al) for xo, mi, yo, mo, d, wo, al in pairs], dim_out)
        self.bwd = _Map([(xo, mi, d, yo, mo, wo, 1, mo, al) for xo, mi, yo, mo, d, wo, al in pairs], dim_in)
        by_g = sorted(pairs, key=lambda p: p[2])  # the kernel packs each gradient block once per chunk
        self.npair = len(by_g)
        self.pair = _ints([[xo, mi, yo, mo, d, wo, mo] for xo, mi, yo, mo, d, wo, _ in by_g])
        self.palpha = _doubles([p[6] for p in by_g])
        self.macs_per_sample = sum(mi * mo * d for _, mi, _, mo, d, _, _ in pairs)

    def _call(
        self,
        n: int,
        w: torch.Tensor,
        src: torch.Tensor,
        ldsrc: int,
        dst: torch.Tensor | None,
        m: _Map | None,
        x: torch.Tensor | None,
        ldx: int,
        gw: torch.Tensor | None,
    ) -> None:
        lib = _LIBRARY.get()
        if lib is None:
            raise KernelBuildError(f"linear kernel unavailable: {_LIBRARY.error}")
        sfx = {torch.float32: "f32", torch.float64: "f64"}.get(src.dtype)
        if sfx is None:
            raise TypeError(f"linear kernel: dtype must be float32 or float64, got {src.dtype}")
        threads = max(1, min(torch.get_num_threads(), n * self.macs_per_sample // _MIN_MACS_PER_THREAD))
        rc = getattr(lib, f"euclidnet_linear_{sfx}")(
            n,
            w.data_ptr(),
            src.data_ptr(),
            ldsrc,
            None if dst is None else dst.data_ptr(),
            0 if dst is None else dst.shape[1],
            0 if m is None else m.nseg,
            None if m is None else m.seg.data_ptr(),
            None if m is None else m.src.data_ptr(),
            None if m is None else m.alpha.data_ptr(),
            None if x is None else x.data_ptr(),
            ldx,
            None if gw is None else gw.data_ptr(),
            0 if gw is None else self.npair,
            self.pair.data_ptr(),
            self.palpha.data_ptr(),
            CHUNK,
            threads,
        )
        if rc != 0:
            raise MemoryError("linear kernel: out of memory for its workspace")

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``x [Z, dim_in]``, ``w [weight_numel]`` (same dtype, CPU) -> ``y [Z, dim_out]`` (contiguous)."""
        z = x.shape[0]
        y = x.new_empty(z, self.dim_out) if self.fwd.covered else x.new_zeros(z, self.dim_out)
        if z == 0 or self.fwd.nseg == 0:
            return y
        x, ldx = _rows(x)
        self._call(z, w.contiguous(), x, ldx, y, self.fwd, None, 0, None)
        return y

    def backward(
        self, x: torch.Tensor, w: torch.Tensor, g: torch.Tensor, need_x: bool, need_w: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Gradients of ``sum(g * forward(x, w))``: ``(grad_x [Z, dim_in] or None, grad_w [weight_numel] or
        None)`` as asked by ``need_x`` / ``need_w``; both from one pass over the samples."""
        z = x.shape[0]
        gx = None
        if need_x:
            gx = x.new_empty(z, self.dim_in) if self.bwd.covered else x.new_zeros(z, self.dim_in)
        gw = x.new_zeros(self.weight_numel) if need_w else None
        if z == 0 or self.npair == 0 or not (need_x or need_w):
            return gx, gw
        g, ldg = _rows(g)
        x, ldx = _rows(x)
        self._call(z, w.contiguous(), g, ldg, gx, self.bwd if need_x else None, x, ldx, gw)
        return gx, gw
