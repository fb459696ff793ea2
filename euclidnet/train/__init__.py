"""Training, evaluation, checkpoints and MD drivers behind ``euclidnet train / evaluate / md``."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .evaluate import error_metrics, format_metrics_table, predict
from .loading import build_inner_model, import_plugins, load_potential
from .scaling import ScaledPotential
from .trainer import EMA, Trainer, prepare_datasets

__all__ = [
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "error_metrics",
    "format_metrics_table",
    "predict",
    "build_inner_model",
    "import_plugins",
    "load_potential",
    "ScaledPotential",
    "EMA",
    "Trainer",
    "prepare_datasets",
]
