"""ctypes bindings of the spherical-harmonics C kernel (source in :mod:`euclidnet.kernels._sh_source`)."""

from __future__ import annotations

import ctypes
import os

import torch

from ._build import KernelBuildError, LazyLibrary
from ._sh_source import source

__all__ = ["kernels_disabled", "sh_kernel_available", "sh_kernel_error", "sh_forward", "sh_backward"]

# Below this many points a single thread is faster than starting others.
_MIN_POINTS_PER_THREAD = 4096


def kernels_disabled() -> bool:
    """True when ``EUCLIDNET_DISABLE_KERNELS`` is set to a true value (read at every call)."""
    return os.environ.get("EUCLIDNET_DISABLE_KERNELS", "").strip().lower() in ("1", "true", "yes", "on")


def _declare(lib: ctypes.CDLL) -> None:
    i64, i32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    for sfx in ("f32", "f64"):
        f = getattr(lib, f"euclidnet_sh_forward_{sfx}")
        f.argtypes = [ptr, i64, i32, ptr, ptr, ptr, i32, i32, i32, ptr, i32]
        f.restype = i32
        b = getattr(lib, f"euclidnet_sh_backward_{sfx}")
        b.argtypes = [ptr, i64, i32, ptr, ptr, ptr, i32, i32, i32, ptr, i64, i64, ptr, i32]
        b.restype = i32


_LIBRARY = LazyLibrary("euclidnet_sh", source, _declare)


def _load() -> ctypes.CDLL | None:
    return _LIBRARY.get()


def sh_kernel_available() -> bool:
    """Whether the compiled kernel can be used (builds it on first call); ignores the disabling variable."""
    return _load() is not None


def sh_kernel_error() -> str | None:
    """Why the kernel is unavailable (``None`` if it is available or not yet tried)."""
    return _LIBRARY.error


class _Plan:
    """ctypes arrays describing the requested degrees: ``ls``, output offsets and per-block scales."""

    __slots__ = ("ls", "offs", "scales", "nls", "ncomp", "lmax")

    def __init__(self, ls: list[int], scales: list[float]) -> None:
        self.nls = len(ls)
        self.lmax = max(ls)
        offs = []
        o = 0
        for l in ls:
            offs.append(o)
            o += 2 * l + 1
        self.ncomp = o
        self.ls = (ctypes.c_int * self.nls)(*ls)
        self.offs = (ctypes.c_int * self.nls)(*offs)
        self.scales = (ctypes.c_double * self.nls)(*scales)


_plans: dict[tuple[tuple[int, ...], tuple[float, ...]], _Plan] = {}


def _plan(ls: list[int], scales: list[float]) -> _Plan:
    key = (tuple(ls), tuple(scales))
    p = _plans.get(key)
    if p is None:
        p = _plans[key] = _Plan(ls, scales)
    return p


def _threads(n: int) -> int:
    return max(1, min(torch.get_num_threads(), n // _MIN_POINTS_PER_THREAD))


_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_functions: dict[tuple[str, torch.dtype], ctypes._CFuncPtr] = {}


def _function(kind: str, dtype: torch.dtype) -> ctypes._CFuncPtr:
    """The C entry point ``euclidnet_sh_{kind}_{f32|f64}`` (looked up once: getattr on a CDLL is slow)."""
    fn = _functions.get((kind, dtype))
    if fn is None:
        sfx = _SUFFIX.get(dtype)
        if sfx is None:
            raise TypeError(f"spherical-harmonics kernel: dtype must be float32 or float64, got {dtype}")
        lib = _load()
        if lib is None:
            raise KernelBuildError(f"spherical-harmonics kernel unavailable: {_LIBRARY.error}")
        fn = _functions[(kind, dtype)] = getattr(lib, f"euclidnet_sh_{kind}_{sfx}")
    return fn


def sh_forward(x: torch.Tensor, ls: list[int], scales: list[float], normalize: bool) -> torch.Tensor:
    """Harmonics of the rows of ``x`` ``[N, 3]`` (CPU, float32/64) -> ``[N, sum(2l+1)]``.

    ``scales[j]`` multiplies the block of degree ``ls[j]``. The caller checks availability first.
    """
    fn = _function("forward", x.dtype)
    x = x.contiguous()
    plan = _plan(ls, scales)
    n = x.shape[0]
    out = torch.empty(n, plan.ncomp, dtype=x.dtype)
    if n == 0:
        return out
    rc = fn(x.data_ptr(), n, plan.lmax, plan.ls, plan.offs, plan.scales, plan.nls, plan.ncomp,
            int(normalize), out.data_ptr(), _threads(n))
    if rc != 0:
        raise MemoryError("spherical-harmonics kernel: out of memory for its workspace")
    return out


def sh_backward(
    x: torch.Tensor, grad_out: torch.Tensor, ls: list[int], scales: list[float], normalize: bool
) -> torch.Tensor:
    """Gradient w.r.t. ``x`` ``[N, 3]`` of ``sum(grad_out * sh_forward(x, ...))``; ``grad_out`` ``[N, D]``
    may have any strides (e.g. the stride-0 tensor of ``y.sum()``'s gradient, read without materialising)."""
    fn = _function("backward", x.dtype)
    x = x.contiguous()
    plan = _plan(ls, scales)
    n = x.shape[0]
    gx = torch.empty(n, 3, dtype=x.dtype)
    if n == 0:
        return gx
    if grad_out.dtype != x.dtype:
        grad_out = grad_out.to(x.dtype)
    rc = fn(x.data_ptr(), n, plan.lmax, plan.ls, plan.offs, plan.scales, plan.nls, plan.ncomp,
            int(normalize), grad_out.data_ptr(), grad_out.stride(0), grad_out.stride(1), gx.data_ptr(),
            _threads(n))
    if rc != 0:
        raise MemoryError("spherical-harmonics kernel: out of memory for its workspace")
    return gx
