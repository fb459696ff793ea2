"""Weighted losses on any labelled output, written as sums over items divided by (global) counts.

Errors are divided by a per-label norm (the energy scale for energies per atom and forces, the label's
training RMS for the others) so that weights compare dimensionless numbers. Every term is returned as a
*sum* of per-item losses plus the number of items, so that data-parallel training can divide by the
count summed over all ranks and give exactly the single-process loss.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ..graph.data import AtomicGraph
from ..graph.scatter import scatter_sum

__all__ = ["label_errors", "loss_terms", "LOSS_FUNCTIONS"]


def _mse(x: Tensor) -> Tensor:
    return x.square()


def _mae(x: Tensor) -> Tensor:
    return x.abs()


def _huber(x: Tensor) -> Tensor:
    return torch.nn.functional.huber_loss(x, torch.zeros_like(x), reduction="none", delta=1.0)


LOSS_FUNCTIONS = {"mse": _mse, "mae": _mae, "huber": _huber}


def label_errors(out: Mapping[str, Tensor], batch: AtomicGraph, names: list[str]) -> dict[str, Tensor]:
    """Prediction minus reference for each of ``names`` (energies per atom, stress of periodic graphs only).

    A name the model did not output is an error listing what it did output.
    """
    errors: dict[str, Tensor] = {}
    for name in names:
        if name not in out:
            raise KeyError(f"the model did not output {name!r} (outputs: {sorted(out)}); remove it from the losses")
        if name not in batch.labels:
            raise KeyError(f"the batch has no label {name!r} (labels: {sorted(batch.labels)})")
        pred, ref = out[name], batch.labels[name].to(out[name].dtype)
        if name == "energy":
            natoms = scatter_sum(torch.ones_like(batch.pos[:, 0]), batch.batch, dim_size=batch.num_graphs)
            errors[name] = (pred.reshape(-1) - ref.reshape(-1)) / natoms
        elif name == "stress":
            if batch.pbc is not None:
                periodic = batch.pbc.any(dim=1)
            else:
                periodic = torch.zeros(batch.num_graphs, dtype=torch.bool, device=pred.device)
            errors[name] = (pred - ref.reshape(pred.shape))[periodic]
        else:
            if pred.shape != ref.shape:
                try:
                    ref = ref.reshape(pred.shape)
                except RuntimeError:
                    raise ValueError(
                        f"label {name!r}: model output has shape {tuple(pred.shape)}, reference {tuple(ref.shape)}"
                    ) from None
            errors[name] = pred - ref
    return errors


def loss_terms(
    errors: Mapping[str, Tensor], norms: Mapping[str, float], kind: str = "mse"
) -> dict[str, tuple[Tensor, int]]:
    """``{name: (sum of per-item losses of the normalised error, number of items)}``."""
    fn = LOSS_FUNCTIONS[kind]
    return {name: (fn(e / float(norms.get(name, 1.0))).sum(), e.numel()) for name, e in errors.items()}
