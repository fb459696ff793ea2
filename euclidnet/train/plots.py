"""CSV logs and PNG plots (matplotlib, Agg backend) of a training run."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_csv", "plot_learning_curves", "plot_parity"]


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Write ``rows`` (dicts; the header is the union of their keys, in first-seen order) atomically."""
    path = Path(path)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    os.replace(tmp, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Train / valid loss and validation MAE per label against the epoch (log scale)."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    mae_keys = sorted({k for r in rows for k in r if k.startswith("valid_") and k.endswith("_mae")})
    fig, axes = plt.subplots(1, 1 + bool(mae_keys), figsize=(5 + 5 * bool(mae_keys), 4), squeeze=False)
    ax = axes[0, 0]
    for key in ("train_loss", "valid_loss"):
        vals = [r.get(key) for r in rows]
        pts = [(e, v) for e, v in zip(epochs, vals) if v not in (None, "") and np.isfinite(float(v))]
        if pts:
            ax.plot(*zip(*pts), marker=".", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (normalised units)")
    ax.set_yscale("log")
    ax.legend()
    if mae_keys:
        ax = axes[0, 1]
        for key in mae_keys:
            pts = [(e, float(r[key])) for e, r in zip(epochs, rows) if r.get(key) not in (None, "")]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=key[len("valid_") : -len("_mae")])
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation MAE (label units)")
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_parity(predictions: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "") -> None:
    """One predicted-vs-reference panel per label."""
    from .evaluate import UNITS

    plt = _pyplot()
    names = list(predictions)
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        p, r = predictions[name]
        ax.scatter(r, p, s=3, alpha=0.4)
        if r.size:
            lo, hi = float(min(r.min(), p.min())), float(max(r.max(), p.max()))
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        mae = float(np.mean(np.abs(p - r))) if r.size else float("nan")
        unit = UNITS.get(name, "")
        ax.set_title(f"{name}: MAE {mae:.3g} {unit}")
        ax.set_xlabel(f"reference ({unit})" if unit else "reference")
        ax.set_ylabel("predicted")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
