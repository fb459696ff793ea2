"""Demos run by ``euclidnet demo NAME``: each module here defines ``DESCRIPTION`` and ``main(argv) -> int``."""

from __future__ import annotations

import importlib
import pkgutil

__all__ = ["available_demos", "run_demo"]


def available_demos() -> dict[str, str]:
    """Demo name -> one-line description, discovered from the modules of this package."""
    out = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "main"):
            out[info.name] = getattr(mod, "DESCRIPTION", "")
    return out


def run_demo(name: str, argv: list[str]) -> int:
    demos = available_demos()
    if name not in demos:
        raise SystemExit(f"unknown demo {name!r}; available: {', '.join(sorted(demos))}")
    return int(importlib.import_module(f"{__name__}.{name}").main(argv))
