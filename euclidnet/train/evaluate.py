"""Predictions and error metrics (MAE / RMSE per label) of a potential on a dataset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..data.dataset import AtomicDataset, make_loader
from .loss import label_errors

__all__ = ["predict", "error_metrics", "format_metrics_table", "UNITS"]

UNITS = {"energy": "eV/atom", "forces": "eV/Å", "stress": "eV/Å^3"}


def predict(
    potential: torch.nn.Module,
    dataset: AtomicDataset,
    labels: Sequence[str] | None = None,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{label: (predictions, references)}`` as flat float64 arrays (energies per atom).

    ``labels`` defaults to every label of the dataset that the potential outputs (energy, forces and
    stress are always predictable).
    """
    if len(dataset) == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    present = set(dataset.graphs[0].labels)
    for g in dataset.graphs[1:]:
        present &= set(g.labels)
    outputs = set(getattr(potential, "irreps_out", {})) | {"energy", "forces", "stress"}
    if labels is None:
        labels = sorted(present & outputs)
    missing = [n for n in labels if n not in present]
    if missing:
        raise KeyError(f"labels {missing} are not in every frame of the dataset (present: {sorted(present)})")
    compute_forces = "forces" in labels
    compute_stress = "stress" in labels
    dtype = next((p.dtype for p in potential.parameters() if p.is_floating_point()), torch.get_default_dtype())
    preds: dict[str, list[np.ndarray]] = {n: [] for n in labels}
    refs: dict[str, list[np.ndarray]] = {n: [] for n in labels}
    was_training = potential.training
    potential.eval()
    try:
        for batch in make_loader(dataset, batch_size):
            batch = batch.to(device=device, dtype=dtype)
            with torch.no_grad() if not (compute_forces or compute_stress) else torch.enable_grad():
                out = potential(batch, compute_forces=compute_forces, compute_stress=compute_stress)
            errs = label_errors({k: v.detach() for k, v in out.items()}, batch, list(labels))
            for name in labels:
                e = errs[name].detach().double().cpu().numpy().reshape(-1)
                if name == "energy":
                    natoms = np.bincount(batch.batch.cpu().numpy(), minlength=batch.num_graphs)
                    ref = batch.labels["energy"].double().cpu().numpy().reshape(-1) / natoms
                elif name == "stress":
                    periodic = batch.pbc.any(dim=1).cpu().numpy() if batch.pbc is not None else np.zeros(0, bool)
                    ref = batch.labels["stress"].double().cpu().numpy()[periodic].reshape(-1)
                else:
                    ref = batch.labels[name].double().cpu().numpy().reshape(-1)
                preds[name].append(ref + e)
                refs[name].append(ref)
    finally:
        potential.train(was_training)
    return {n: (np.concatenate(preds[n]), np.concatenate(refs[n])) for n in labels}


def error_metrics(predictions: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, Any]]:
    """``{label: {"mae", "rmse", "n", "unit"}}`` from :func:`predict` output."""
    out = {}
    for name, (p, r) in predictions.items():
        e = p - r
        out[name] = {
            "mae": float(np.mean(np.abs(e))) if e.size else float("nan"),
            "rmse": float(np.sqrt(np.mean(e**2))) if e.size else float("nan"),
            "n": int(e.size),
            "unit": UNITS.get(name, "label units"),
        }
    return out


def format_metrics_table(metrics: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of :func:`error_metrics`."""
    rows = [("label", "unit", "MAE", "RMSE", "N")]
    for name, m in metrics.items():
        rows.append((name, m["unit"], f"{m['mae']:.6g}", f"{m['rmse']:.6g}", str(m["n"])))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
