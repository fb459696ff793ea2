"""Training configuration: a YAML file parsed into typed dataclasses with helpful errors.

Every section is a dataclass; :func:`load_config` / :func:`config_from_dict` check each key against the
dataclass fields (an unknown key is an error with a did-you-mean suggestion), check types, and check
choice-valued keys against their allowed values. Error messages name the full dotted key
(``training.scheduler.name``) and the allowed values.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "LabelConfig",
    "SplitConfig",
    "DataConfig",
    "ModelConfig",
    "SchedulerConfig",
    "TrainingConfig",
    "Config",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "STANDARD_LABELS",
]

STANDARD_LABELS = ("energy", "forces", "stress")


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or not one of the allowed values."""


@dataclasses.dataclass
class LabelConfig:
    """An extra label to read and (optionally) train on.

    ``key`` is the name in the extended XYZ file (``atoms.info`` for per-frame labels, ``atoms.arrays``
    for per-atom ones, or the ASE calculator results); ``irreps`` its O(3) content (e.g. ``1o``,
    ``0e + 2e``), whose dimension is the number of values per frame / per atom in the file.
    """

    key: str
    irreps: str
    per_atom: bool = False


@dataclasses.dataclass
class SplitConfig:
    """How frames are split into train / valid / test when those files are not given separately."""

    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    group_key: str | None = None  # e.g. "traj_id" or "molecule_id" in atoms.info: whole groups stay together
    seed: int = 0


@dataclasses.dataclass
class DataConfig:
    """Where the data is and which keys hold the labels."""

    train: str
    valid: str | None = None
    test: str | None = None
    energy_key: str | None = "energy"
    forces_key: str | None = "forces"
    stress_key: str | None = None
    virial_key: str | None = None
    labels: dict[str, LabelConfig] = dataclasses.field(default_factory=dict)
    species: list[str] | None = None  # chemical symbols -> type index by position; inferred if absent
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    cache_dir: str | None = None  # on-disk neighbour-list cache keyed by a hash of file + r_max + keys


@dataclasses.dataclass
class ModelConfig:
    """A registered model (``euclidnet.models.available_models()``) and its keyword arguments."""

    name: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class SchedulerConfig:
    """Learning-rate schedule: ``plateau`` (ReduceLROnPlateau on the validation loss), ``cosine`` or ``none``."""

    name: str = "plateau"
    factor: float = 0.5
    patience: int = 5
    min_lr: float = 1e-6
    warmup_steps: int = 0


@dataclasses.dataclass
class TrainingConfig:
    """Optimisation settings."""

    batch_size: int = 8  # global batch size (split across ranks under torchrun)
    valid_batch_size: int | None = None
    max_epochs: int = 100
    max_steps: int | None = None
    max_time_minutes: float | None = None
    time_limit_clock: str = "wall"  # "wall" (elapsed) or "cpu" (process CPU time, all threads)
    lr: float = 5e-3
    weight_decay: float = 0.0
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.999])
    scheduler: SchedulerConfig = dataclasses.field(default_factory=SchedulerConfig)
    ema_decay: float | None = 0.99
    grad_clip: float | None = 10.0
    early_stopping_patience: int | None = 20
    loss_weights: dict[str, float] = dataclasses.field(default_factory=lambda: {"energy": 1.0, "forces": 10.0})
    loss: str = "mse"
    valid_every_epochs: int = 1
    checkpoint_every_steps: int | None = None
    log_every_steps: int = 10
    num_workers: int = 0


@dataclasses.dataclass
class Config:
    """The whole training configuration."""

    data: DataConfig
    model: ModelConfig
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    run_dir: str = "runs/run"
    seed: int = 0
    dtype: str = "float32"
    device: str = "auto"
    plugins: list[str] = dataclasses.field(default_factory=list)  # modules or .py files registering models


# Keys whose values are restricted, by dotted path.
_CHOICES: dict[str, tuple[str, ...]] = {
    "dtype": ("float32", "float64"),
    "training.scheduler.name": ("plateau", "cosine", "none"),
    "training.loss": ("mse", "huber", "mae"),
    "training.time_limit_clock": ("wall", "cpu"),
}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check/convert ``value`` against the annotation ``tp``; errors name ``path``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        errors = []
        for a in non_none:
            try:
                return _convert(value, a, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} is not valid ({'; '.join(errors)})")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping (section {tp.__name__}), got {type(value).__name__}")
        return _build(tp, value, path)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__} {value!r}")
        kt, vt = args
        return {str(k): _convert(v, vt, f"{path}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        (et,) = args
        return [_convert(v, et, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if isinstance(value, str):
            try:  # YAML 1.1 reads "5e-3" as a string
                return float(value)
            except ValueError:
                raise ConfigError(f"{path}: expected a number, got {value!r}") from None
        if not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported type {_type_name(tp)}")


def _build(cls: type, raw: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            where = f"{prefix}.{key}" if prefix else str(key)
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown config key {where!r}{hint} (allowed here: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        path = f"{prefix}.{name}" if prefix else name
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"missing required config key {path!r}")
            continue
        value = _convert(raw[name], hints[name], path)
        if path in _CHOICES and value not in _CHOICES[path]:
            close = difflib.get_close_matches(str(value), _CHOICES[path], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{path}: {value!r} is not allowed{hint} (allowed: {', '.join(_CHOICES[path])})")
        kwargs[name] = value
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    t = cfg.training
    for key, value, lo in (
        ("training.batch_size", t.batch_size, 1),
        ("training.max_epochs", t.max_epochs, 1),
        ("training.valid_every_epochs", t.valid_every_epochs, 1),
        ("training.log_every_steps", t.log_every_steps, 1),
    ):
        if value < lo:
            raise ConfigError(f"{key}: must be >= {lo}, got {value}")
    if t.lr <= 0:
        raise ConfigError(f"training.lr: must be > 0, got {t.lr}")
    if t.ema_decay is not None and not 0.0 <= t.ema_decay < 1.0:
        raise ConfigError(f"training.ema_decay: must be in [0, 1) or null, got {t.ema_decay}")
    if len(t.betas) != 2:
        raise ConfigError(f"training.betas: expected two numbers, got {t.betas}")
    s = cfg.data.split
    if not (0.0 <= s.valid_fraction < 1 and 0.0 <= s.test_fraction < 1 and s.valid_fraction + s.test_fraction < 1):
        raise ConfigError(
            f"data.split: valid_fraction={s.valid_fraction} and test_fraction={s.test_fraction} must be in "
            "[0, 1) with a sum below 1"
        )
    known = set(STANDARD_LABELS) | set(cfg.data.labels)
    for name, w in t.loss_weights.items():
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"training.loss_weights.{name}: no such label{hint} (allowed: {', '.join(sorted(known))})"
            )
        if w < 0:
            raise ConfigError(f"training.loss_weights.{name}: must be >= 0, got {w}")
    key_of = {"energy": cfg.data.energy_key, "forces": cfg.data.forces_key}
    for name, key in key_of.items():
        if t.loss_weights.get(name, 0) > 0 and key is None:
            raise ConfigError(f"training.loss_weights.{name} is > 0 but data.{name}_key is null")
    if t.loss_weights.get("stress", 0) > 0 and cfg.data.stress_key is None and cfg.data.virial_key is None:
        raise ConfigError("training.loss_weights.stress is > 0 but data.stress_key and data.virial_key are null")
    for name in cfg.data.labels:
        if name in STANDARD_LABELS:
            raise ConfigError(f"data.labels.{name}: {name} is a standard label; set data.{name}_key instead")
    from ..o3 import Irreps

    for name, lab in cfg.data.labels.items():
        try:
            Irreps(lab.irreps)
        except Exception as exc:  # noqa: BLE001 - any parse failure is a config error
            raise ConfigError(f"data.labels.{name}.irreps: cannot parse {lab.irreps!r} ({exc})") from None


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Build and validate a :class:`Config` from a plain mapping (e.g. parsed YAML)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"the config must be a mapping at the top level, got {type(raw).__name__}")
    cfg = _build(Config, raw, "")
    _validate(cfg)
    return cfg


def load_config(path: str | Path) -> Config:
    """Read a YAML config file. Relative data paths are resolved against the config file's directory
    when they do not exist relative to the working directory."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path) as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        raise ConfigError(f"{path}: the config file is empty")
    cfg = config_from_dict(raw)
    for attr in ("train", "valid", "test"):
        p = getattr(cfg.data, attr)
        if p is not None and not Path(p).exists() and (path.parent / p).exists():
            setattr(cfg.data, attr, str(path.parent / p))
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain-dict form (for checkpoints and YAML)."""
    return dataclasses.asdict(cfg)
