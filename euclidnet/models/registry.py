"""Model registry: configs name a model family and its keyword arguments.

Each model file registers its class with :func:`register_model`; :func:`build_model` builds one by name
(``build_model("nequip", r_max=5.0, ...)``), which is what training configs and checkpoints use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["register_model", "build_model", "available_models"]

_MODELS: dict[str, type[torch.nn.Module]] = {}


def register_model(name: str) -> Callable[[type[torch.nn.Module]], type[torch.nn.Module]]:
    def deco(cls: type[torch.nn.Module]) -> type[torch.nn.Module]:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered to {_MODELS[name].__name__}")
        _MODELS[name] = cls
        return cls

    return deco


def available_models() -> list[str]:
    return sorted(_MODELS)


def build_model(name: str, **kwargs: Any) -> torch.nn.Module:
    """Instantiate the model registered as ``name`` with ``kwargs``."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available_models()) or '(none)'}")
    return _MODELS[name](**kwargs)
