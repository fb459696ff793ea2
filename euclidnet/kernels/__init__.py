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
    from ._linear import linear_kernel_available, linear_kernel_error
    from ._tp import tp_kernel_available, tp_kernel_error
    from ._uvw_small import fused_available, small_kernel_available, small_kernel_error

    names = ("spherical_harmonics", "tensor_product", "linear", "uvw_shared")
    if kernels_disabled():
        return dict.fromkeys(names, "disabled (EUCLIDNET_DISABLE_KERNELS=1)")
    status = {}
    for name, ok, err in zip(
        names,
        (sh_kernel_available, tp_kernel_available, linear_kernel_available, small_kernel_available),
        (sh_kernel_error, tp_kernel_error, linear_kernel_error, small_kernel_error),
    ):
        status[name] = "available" if ok() else f"unavailable: {err()}"
    if status["uvw_shared"] == "available" and not fused_available():
        status["uvw_shared"] = "available (no AVX2/FMA: fused float32 GEMMs off)"
    return status
