"""Building models from configs and checkpoints (plugins, species count, dtype)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ..data.extxyz import SpeciesMap
from .checkpoint import CheckpointError, load_checkpoint
from .scaling import ScaledPotential

__all__ = ["import_plugins", "build_inner_model", "load_potential", "DTYPES"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def import_plugins(plugins: Sequence[str]) -> None:
    """Import modules (``package.module``) or Python files (``path/to/file.py``) that register models."""
    for p in plugins:
        if p.endswith(".py"):
            path = Path(p).resolve()
            if not path.is_file():
                raise FileNotFoundError(f"plugins: file not found: {p}")
            name = "euclidnet_plugin_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
            if name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(p)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype | None) -> Iterator[None]:
    """Temporarily set torch's default dtype (models are built under the training dtype, so that their
    initial weights do not depend on the caller's global default)."""
    old = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_inner_model(
    name: str,
    kwargs: dict[str, Any],
    num_types: int,
    dtype: torch.dtype | None = None,
    data_defaults: dict[str, Any] | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``build_model(name, **kwargs)`` under default dtype ``dtype``.

    ``num_types`` (the species count) and the entries of ``data_defaults`` (e.g. ``avg_num_neighbors``
    measured on the training set) are passed when the model's constructor takes them and the config did
    not set them. Returns the model and the keyword arguments used (saved in checkpoints)."""
    from ..models import build_model
    from ..models.registry import _MODELS

    kwargs = dict(kwargs)
    if name in _MODELS:
        params = inspect.signature(_MODELS[name].__init__).parameters
        if "num_types" in params and "num_types" not in kwargs:
            kwargs["num_types"] = num_types
        elif "num_types" in kwargs and kwargs["num_types"] < num_types:
            raise ValueError(f"model.kwargs.num_types={kwargs['num_types']} but the data has {num_types} species")
        for key, value in (data_defaults or {}).items():
            if key in params and key not in kwargs:
                kwargs[key] = value
    with default_dtype(dtype):
        model = build_model(name, **kwargs)
    for attr in ("r_max", "irreps_out"):
        if not hasattr(model, attr):
            raise TypeError(f"model {name!r} has no {attr!r}: it does not follow the euclidnet model interface")
    return model, kwargs


def load_potential(
    checkpoint: str | Path | dict[str, Any],
    dtype: torch.dtype | str | None = None,
    device: torch.device | str = "cpu",
) -> tuple[ScaledPotential, SpeciesMap, dict[str, Any]]:
    """The trained (EMA) potential of a checkpoint, its species map and the checkpoint payload.

    ``dtype`` defaults to the training dtype; models trained in float32 can be evaluated in float64.
    """
    payload = load_checkpoint(checkpoint) if not isinstance(checkpoint, dict) else checkpoint
    if payload.get("format") != "euclidnet-checkpoint":
        raise CheckpointError(f"{checkpoint}: not a euclidnet training checkpoint (format={payload.get('format')!r})")
    import_plugins(payload.get("plugins", []))
    species = SpeciesMap(payload["species"])
    inner, _ = build_inner_model(payload["model_name"], payload["model_kwargs"], len(species), DTYPES[payload["dtype"]])
    stats = payload["statistics"]
    pot = ScaledPotential(inner, stats["species_energies"], stats["scale"])
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not allowed (allowed: {', '.join(DTYPES)})")
        dtype = DTYPES[dtype]
    pot = pot.to(dtype or DTYPES[payload["dtype"]])
    missing, unexpected = pot.load_state_dict(payload["model_state"], strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{checkpoint}: weights do not match the model (missing {missing}, unexpected {unexpected})"
        )
    pot = pot.to(dtype or DTYPES[payload["dtype"]]).to(device)
    pot.eval()
    return pot, species, payload
