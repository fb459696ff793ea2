"""Optional compiled CPU kernels (plain C, built at first use, loaded with ctypes).

Everything here has a pure-torch equivalent; the kernels are used only when they can be: CPU tensors,
float32/float64, a working C compiler, not while ``torch.compile`` traces, not under ``torch.func``
transforms, and not when the environment variable ``EUCLIDNET_DISABLE_KERNELS=1`` is set.

:func:`kernel_status` says whether a kernel is available and, if not, why.
"""

from __future__ import annotations

from ._build import KernelBuildError, cache_dir
from ._sh import kernels_disabled, sh_backward, sh_forward, sh_kernel_available, sh_kernel_error

__all__ = [
    "KernelBuildError",
    "cache_dir",
    "kernels_disabled",
    "kernel_status",
    "sh_backward",
    "sh_forward",
    "sh_kernel_available",
]


def kernel_status() -> dict[str, str]:
    """``{kernel name: "available" | "disabled (...)" | "unavailable: <reason>"}``."""
    from ._tp import tp_kernel_available, tp_kernel_error

    if kernels_disabled():
        off = "disabled (EUCLIDNET_DISABLE_KERNELS=1)"
        return {"spherical_harmonics": off, "tensor_product": off}
    status = {}
    for name, ok, err in (
        ("spherical_harmonics", sh_kernel_available, sh_kernel_error),
        ("tensor_product", tp_kernel_available, tp_kernel_error),
    ):
        status[name] = "available" if ok() else f"unavailable: {err()}"
    return status
