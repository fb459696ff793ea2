"""The training loop behind ``euclidnet train``.

* Any registered model (``model.name`` + ``model.kwargs``) wrapped in :class:`ScaledPotential`
  (per-species reference energies by least squares, energy scale = force RMS).
* Weighted losses on any declared label, AdamW, ReduceLROnPlateau or cosine schedule (optional warm-up),
  EMA of the weights (used for validation, saved as the model), gradient clipping, early stopping.
* Checkpoints (``last.ckpt``, ``best.ckpt``) written atomically; ``resume=True`` continues exactly:
  weights, optimizer, scheduler, EMA, RNG states (torch, numpy, python), epoch and position inside the
  epoch (data order is a pure function of seed and epoch), so an interrupted run ends with the same
  parameters bit for bit.
* Data parallel under ``torchrun``: the global ``batch_size`` is split across ranks by a
  ``DistributedSampler``; losses are sums divided by the global item counts (all-reduced), so the
  gradient equals the single-process one; rank 0 validates, logs and writes checkpoints.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from ..data.config import Config, config_to_dict
from ..data.dataset import AtomicDataset, DatasetStatistics, compute_statistics, split_indices
from ..data.extxyz import SpeciesMap, label_specs_from_config
from ..graph.data import collate
from .checkpoint import load_checkpoint, save_checkpoint
from .evaluate import error_metrics, format_metrics_table, predict
from .loading import DTYPES, build_inner_model, import_plugins
from .loss import LOSS_FUNCTIONS, label_errors, loss_terms
from .plots import plot_learning_curves, plot_parity, write_csv
from .scaling import ScaledPotential

__all__ = ["Trainer", "DistInfo", "init_distributed", "EMA", "prepare_datasets", "rng_state", "set_rng_state"]


# -- distributed -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class DistInfo:
    """Rank, world size and local rank; ``world_size == 1`` outside ``torchrun``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group ``torchrun`` set up (env ``WORLD_SIZE``/``RANK``): gloo on CPU, NCCL on GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, False)
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local_rank, True)


def _resolve_device(device: str, info: DistInfo) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and info.world_size > 1:
        return torch.device("cuda", info.local_rank)
    return torch.device(device)


# -- RNG state ---------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """torch, numpy and python RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()  # noqa: NPY002 - the global generator user code may draw from
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": np_state[0],
            "state": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np_state = (n["key"], n["state"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    np.random.set_state(np_state)  # noqa: NPY002
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- EMA ---------------------------------------------------------------------------------------------------


class EMA:
    """Exponential moving average of a module's floating parameters and buffers.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates.
    """

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.num_updates = 0
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for k, v in module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)

    @torch.no_grad()
    def copy_to(self, module: torch.nn.Module) -> None:
        state = module.state_dict()
        for k, v in self.shadow.items():
            state[k].copy_(v)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = state["decay"]
        self.num_updates = state["num_updates"]
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)


# -- data --------------------------------------------------------------------------------------------------


def prepare_datasets(
    cfg: Config, r_max: float, species: SpeciesMap | None = None
) -> tuple[dict[str, AtomicDataset], SpeciesMap]:
    """Train / valid / test datasets (neighbour lists for ``r_max``, in the config's dtype) and species map.

    Files not given are split off the training file (by ``data.split.group_key`` or at random with
    ``data.split.seed``); the species map comes from ``species``, else ``data.species``, else the
    training file.
    """
    d = cfg.data
    dtype = DTYPES[cfg.dtype]
    specs = label_specs_from_config(d)
    if species is None and d.species is not None:
        species = SpeciesMap(d.species)
    group_key = d.split.group_key if d.valid is None or d.test is None else None
    full, species = AtomicDataset.from_file(
        d.train, species, specs, dtype=dtype, group_key=group_key, r_max=r_max, cache_dir=d.cache_dir
    )
    valid_frac = d.split.valid_fraction if d.valid is None else 0.0
    test_frac = d.split.test_fraction if d.test is None else 0.0
    if valid_frac > 0 or test_frac > 0:
        tr, va, te = split_indices(len(full), valid_frac, test_frac, d.split.seed, full.groups)
    else:
        tr, va, te = list(range(len(full))), [], []
    out = {"train": full.subset(tr), "valid": full.subset(va), "test": full.subset(te)}
    for name in ("valid", "test"):
        path = getattr(d, name)
        if path is not None:
            out[name], _ = AtomicDataset.from_file(
                path, species, specs, dtype=dtype, r_max=r_max, cache_dir=d.cache_dir
            )
    if len(out["train"]) == 0:
        raise ValueError(f"no training frames in {d.train}")
    return out, species


# -- trainer -----------------------------------------------------------------------------------------------


class Trainer:
    """Train the model of ``cfg``; see the module docstring.

    Args:
        cfg: the parsed configuration.
        resume: continue from ``run_dir/last.ckpt`` (an error if it does not exist).
        max_steps: overrides ``training.max_steps`` (e.g. to stop early and resume later).
        final_eval: evaluate the best model on valid/test and write parity plots at the end.
        verbose: print progress (rank 0 only).
    """

    def __init__(
        self,
        cfg: Config,
        resume: bool = False,
        max_steps: int | None = None,
        final_eval: bool = True,
        verbose: bool = True,
    ) -> None:
        self.cfg = cfg
        self.t = cfg.training
        self.max_steps = max_steps if max_steps is not None else self.t.max_steps
        self.final_eval = final_eval
        self.dist = init_distributed(cfg.device)
        self.verbose = verbose and self.dist.is_main
        self.device = _resolve_device(cfg.device, self.dist)
        self.dtype = DTYPES[cfg.dtype]
        self.run_dir = Path(cfg.run_dir)
        if self.t.batch_size % self.dist.world_size:
            raise ValueError(
                f"training.batch_size={self.t.batch_size} is not divisible by the number of processes "
                f"({self.dist.world_size}): the global batch is split evenly across ranks"
            )
        self.local_batch = self.t.batch_size // self.dist.world_size
        import_plugins(cfg.plugins)

        payload = None
        if resume:
            payload = load_checkpoint(self.run_dir / "last.ckpt")
        self._seed_everything(cfg.seed)
        species = SpeciesMap(payload["species"]) if payload else None

        # The cutoff comes from the model: build a throw-away instance to read it when species is unknown.
        num_types = len(species) if species else len(cfg.data.species or []) or 1
        probe, _ = build_inner_model(cfg.model.name, cfg.model.kwargs, num_types, self.dtype)
        self.r_max = float(probe.r_max)
        del probe
        self.data, self.species = prepare_datasets(cfg, self.r_max, species)
        self._seed_everything(cfg.seed)
        if payload:
            data_defaults = {}  # the checkpoint's kwargs already hold everything measured on the data
            model_kwargs = payload["model_kwargs"]
        else:
            train = self.data["train"]
            avg = sum(g.num_edges for g in train.graphs) / max(1, sum(train.num_atoms))
            data_defaults = {"avg_num_neighbors": round(float(avg), 4)}
            model_kwargs = cfg.model.kwargs
        inner, self.model_kwargs = build_inner_model(
            cfg.model.name, model_kwargs, len(self.species), self.dtype, data_defaults
        )
        if payload:
            self.stats = DatasetStatistics.from_dict(payload["statistics"])
        else:
            self.stats = compute_statistics(self.data["train"], len(self.species))
        model = ScaledPotential(inner, self.stats.species_energies, self.stats.scale)
        self.model = model.to(device=self.device, dtype=self.dtype)

        outputs = set(self.model.irreps_out) | {"energy", "forces", "stress"}
        self.loss_names = [n for n, w in self.t.loss_weights.items() if w > 0]
        for n in self.loss_names:
            if n not in outputs:
                raise ValueError(
                    f"training.loss_weights.{n}: model {cfg.model.name!r} does not output {n!r} "
                    f"(irreps_out: {sorted(self.model.irreps_out)})"
                )
        if not self.loss_names:
            raise ValueError("training.loss_weights: at least one label needs a weight > 0")
        self.norms = {n: self.stats.label_rms.get(n, 1.0) or 1.0 for n in self.loss_names}
        self.norms.update({n: self.stats.scale for n in ("energy", "forces") if n in self.norms})

        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=self.t.lr, weight_decay=self.t.weight_decay, betas=tuple(self.t.betas)
        )
        sch = self.t.scheduler
        self.plateau = None
        if sch.name == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="min", factor=sch.factor, patience=sch.patience, min_lr=sch.min_lr
            )
        self.ema = EMA(self.model, self.t.ema_decay) if self.t.ema_decay else None
        self.eval_model = copy.deepcopy(self.model)

        self.train_model: torch.nn.Module = self.model
        if self.dist.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.best_metric = math.inf
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        self.elapsed = 0.0
        self.structures_seen = 0
        self.stopped_early = False
        if payload:
            self._load_train_state(payload)

    # -- setup helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)  # noqa: NPY002
        torch.manual_seed(seed)

    def _load_train_state(self, payload: dict[str, Any]) -> None:
        st = payload["train_state"]
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        if self.plateau is not None and st.get("plateau") is not None:
            self.plateau.load_state_dict(st["plateau"])
        if self.ema is not None and st.get("ema") is not None:
            self.ema.load_state_dict(st["ema"])
        for k in ("epoch", "step_in_epoch", "global_step", "best_metric", "bad_epochs", "elapsed", "structures_seen",
                  "stopped_early"):
            setattr(self, k, st[k])
        self.history = list(st["history"])
        set_rng_state(st["rng"])

    # -- checkpoints -----------------------------------------------------------------------------------

    def _ema_model(self) -> torch.nn.Module:
        """``eval_model`` holding the EMA (or current) weights."""
        self.eval_model.load_state_dict(self.model.state_dict())
        if self.ema is not None:
            self.ema.copy_to(self.eval_model)
        self.eval_model.eval()
        return self.eval_model

    def _payload(self) -> dict[str, Any]:
        cfgd = config_to_dict(self.cfg)
        return {
            "format": "euclidnet-checkpoint",
            "version": 1,
            "config": cfgd,
            "model_name": self.cfg.model.name,
            "model_kwargs": self.model_kwargs,
            "species": self.species.symbols,
            "statistics": self.stats.to_dict(),
            "dtype": self.cfg.dtype,
            "r_max": self.r_max,
            "plugins": [str(Path(p).resolve()) if p.endswith(".py") else p for p in self.cfg.plugins],
            "model_state": self._ema_model().state_dict(),
            "train_state": {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "plateau": self.plateau.state_dict() if self.plateau is not None else None,
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": rng_state(),
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step,
                "best_metric": self.best_metric,
                "bad_epochs": self.bad_epochs,
                "elapsed": self.elapsed,
                "structures_seen": self.structures_seen,
                "stopped_early": self.stopped_early,
                "history": self.history,
            },
        }

    def save(self, best: bool = False) -> None:
        """Write ``last.ckpt`` (and ``best.ckpt``) on rank 0."""
        if not self.dist.is_main:
            return
        payload = self._payload()
        save_checkpoint(payload, self.run_dir / "last.ckpt")
        if best:
            save_checkpoint(payload, self.run_dir / "best.ckpt")

    # -- one step --------------------------------------------------------------------------------------

    def _set_lr(self) -> None:
        sch = self.t.scheduler
        warm = sch.warmup_steps
        if sch.name == "cosine":
            # The horizon comes from the config, not from a --max-steps override, so that stopping early
            # and resuming follows the same schedule.
            total = self.t.max_steps or self.t.max_epochs * self._batches_per_epoch()
            frac = min(1.0, self.global_step / max(total, 1))
            lr = sch.min_lr + (self.t.lr - sch.min_lr) * 0.5 * (1 + math.cos(math.pi * frac))
        elif self.global_step < warm:
            lr = self.t.lr
        else:
            return
        if self.global_step < warm:
            lr *= (self.global_step + 1) / warm
        for g in self.optimizer.param_groups:
            g["lr"] = lr

    def _batches_per_epoch(self) -> int:
        return (len(self.data["train"]) // self.dist.world_size) // self.local_batch

    def _step(self, batch: Any) -> tuple[float, dict[str, float]]:
        batch = batch.to(device=self.device, dtype=self.dtype)
        self.train_model.train()
        self._set_lr()
        out = self.train_model(
            batch, compute_forces="forces" in self.loss_names, compute_stress="stress" in self.loss_names
        )
        errors = label_errors(out, batch, self.loss_names)
        terms = loss_terms(errors, self.norms, self.t.loss)
        counts = torch.tensor([float(terms[n][1]) for n in self.loss_names], dtype=torch.float64)
        if self.dist.world_size > 1:
            dist.all_reduce(counts)
        loss = out["energy"].new_zeros(())
        parts = {}
        for n, c in zip(self.loss_names, counts.tolist()):
            term = terms[n][0] / max(c, 1.0)
            parts[n] = float(term.detach()) * self.dist.world_size
            loss = loss + self.t.loss_weights[n] * term
        # DDP averages gradients over ranks: scale by the world size to get the global sum / global count.
        loss = loss * self.dist.world_size
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.t.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.t.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return float(loss.detach()), parts

    # -- validation ------------------------------------------------------------------------------------

    def _valid_loss(self, preds: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
        fn = LOSS_FUNCTIONS[self.t.loss]
        total = 0.0
        for n in self.loss_names:
            p, r = preds[n]
            e = torch.from_numpy((p - r) / self.norms[n])
            total += self.t.loss_weights[n] * float(fn(e).mean()) if e.numel() else 0.0
        return total

    def validate(self) -> dict[str, Any]:
        """Validation loss and MAE/RMSE per label with the EMA weights (computed on rank 0, shared)."""
        row: dict[str, Any] = {}
        value = torch.tensor([math.nan], dtype=torch.float64)
        if self.dist.is_main and len(self.data["valid"]):
            model = self._ema_model()
            vb = self.t.valid_batch_size or self.t.batch_size
            preds = predict(model, self.data["valid"], self.loss_names, vb, self.device)
            value[0] = self._valid_loss(preds)
            for n, m in error_metrics(preds).items():
                row[f"valid_{n}_mae"] = m["mae"]
                row[f"valid_{n}_rmse"] = m["rmse"]
        if self.dist.world_size > 1:
            dist.broadcast(value, src=0)
        row["valid_loss"] = float(value[0])
        return row

    # -- main loop -------------------------------------------------------------------------------------

    def _log(self, msg: str) -> None:
        if self.verbose:
            print(msg, flush=True)

    def _clock(self) -> float:
        return time.process_time() if self.t.time_limit_clock == "cpu" else time.perf_counter()

    def fit(self) -> dict[str, Any]:
        """Train until ``max_epochs``/``max_steps``/time limit/early stopping; returns a summary."""
        t = self.t
        train = self.data["train"]
        nb = self._batches_per_epoch()
        if nb == 0:
            raise ValueError(
                f"training.batch_size={t.batch_size} is larger than the training set ({len(train)} frames)"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._log(
            f"training {self.cfg.model.name} on {len(train)} frames (valid {len(self.data['valid'])}, test "
            f"{len(self.data['test'])}), species {self.species.symbols}, r_max {self.r_max}, "
            f"{sum(p.numel() for p in self.model.parameters())} parameters, {self.dist.world_size} process(es), "
            f"device {self.device}, {self.cfg.dtype}"
        )
        use_bar = self.verbose and sys.stderr.isatty()
        stop = False
        t0 = self._clock()
        elapsed0 = self.elapsed
        run_structures0 = self.structures_seen
        step_time = 0.0  # time (training clock) inside optimizer steps only: throughput without validation/IO
        step_structures = 0
        while self.epoch < t.max_epochs and not stop and not self.stopped_early:
            sampler = DistributedSampler(
                train,
                num_replicas=self.dist.world_size,
                rank=self.dist.rank,
                shuffle=True,
                seed=self.cfg.seed,
                drop_last=True,
            )
            sampler.set_epoch(self.epoch)
            order = list(sampler)[self.step_in_epoch * self.local_batch : nb * self.local_batch]
            loader = DataLoader(
                train,
                batch_size=self.local_batch,
                sampler=order,
                collate_fn=collate,
                num_workers=t.num_workers,
                drop_last=True,
            )
            bar = None
            if use_bar:
                try:
                    from tqdm import tqdm

                    bar = tqdm(total=nb, initial=self.step_in_epoch, desc=f"epoch {self.epoch + 1}", leave=False)
                except ImportError:
                    bar = None
            losses = []
            for batch in loader:
                ts = self._clock()
                loss, parts = self._step(batch)
                step_time += self._clock() - ts
                step_structures += t.batch_size
                losses.append(loss)
                self.step_in_epoch += 1
                self.global_step += 1
                self.structures_seen += t.batch_size
                self.elapsed = elapsed0 + (self._clock() - t0)
                lr = self.optimizer.param_groups[0]["lr"]
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4g}", lr=f"{lr:.2e}")
                elif self.global_step % t.log_every_steps == 0:
                    detail = " ".join(f"{k}={v:.4g}" for k, v in parts.items())
                    self._log(
                        f"epoch {self.epoch + 1} step {self.step_in_epoch}/{nb} (global {self.global_step}): "
                        f"loss={loss:.5g} {detail} lr={lr:.3g}"
                    )
                if self.max_steps is not None and self.global_step >= self.max_steps:
                    stop = True
                elif t.max_time_minutes is not None and self.elapsed >= 60.0 * t.max_time_minutes:
                    stop = True
                    self._log(f"time limit of {t.max_time_minutes} min ({t.time_limit_clock}) reached")
                if stop:
                    break
                if t.checkpoint_every_steps and self.global_step % t.checkpoint_every_steps == 0:
                    self.save()
            if bar is not None:
                bar.close()
            if self.step_in_epoch >= nb:
                self._end_of_epoch(float(np.mean(losses)) if losses else math.nan)
            else:
                self.save()
        if self.epoch >= t.max_epochs or self.stopped_early:
            self.save()
        summary = {
            "epochs": self.epoch,
            "steps": self.global_step,
            "best_valid_loss": self.best_metric,
            "train_time_s": self.elapsed,
            "structures_per_s_this_run": (self.structures_seen - run_structures0) / max(self.elapsed - elapsed0, 1e-9),
            "step_structures_per_s": step_structures / max(step_time, 1e-9),
            "clock": self.t.time_limit_clock,
            "stopped_early": self.stopped_early,
        }
        if self.final_eval and self.dist.is_main:
            summary.update(self.final_evaluation())
        if self.dist.is_main:
            with open(self.run_dir / "summary.json", "w") as f:
                json.dump(summary, f, indent=2)
        if self.dist.world_size > 1:
            dist.barrier()
        return summary

    def _end_of_epoch(self, train_loss: float) -> None:
        self.epoch += 1
        self.step_in_epoch = 0
        row: dict[str, Any] = {
            "epoch": self.epoch,
            "step": self.global_step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": train_loss,
            "time_s": round(self.elapsed, 3),
        }
        improved = False
        if self.epoch % self.t.valid_every_epochs == 0 or self.epoch >= self.t.max_epochs:
            row.update(self.validate())
            metric = row["valid_loss"]
            if math.isnan(metric):  # no validation set: follow the training loss
                metric = train_loss
            if self.plateau is not None:
                self.plateau.step(metric)
            if metric < self.best_metric:
                self.best_metric = metric
                self.bad_epochs = 0
                improved = True
            else:
                self.bad_epochs += 1
                pat = self.t.early_stopping_patience
                if pat is not None and self.bad_epochs >= pat:
                    self.stopped_early = True
                    self._log(f"early stopping: no improvement for {self.bad_epochs} validations")
        self.history.append(row)
        if self.dist.is_main:
            msg = " ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
            self._log(msg)
            write_csv(self.history, self.run_dir / "log.csv")
        self.save(best=improved)

    def final_evaluation(self) -> dict[str, Any]:
        """Metrics of the best checkpoint on valid and test, parity and learning-curve plots (rank 0)."""
        from .loading import load_potential

        ckpt = self.run_dir / ("best.ckpt" if (self.run_dir / "best.ckpt").exists() else "last.ckpt")
        pot, _, _ = load_potential(ckpt, dtype=self.dtype, device=self.device)
        out: dict[str, Any] = {}
        vb = self.t.valid_batch_size or self.t.batch_size
        for split in ("valid", "test"):
            ds = self.data[split]
            if len(ds) == 0:
                continue
            preds = predict(pot, ds, None, vb, self.device)
            metrics = error_metrics(preds)
            out[f"{split}_metrics"] = metrics
            plot_parity(preds, self.run_dir / f"parity_{split}.png", title=f"{split} ({ckpt.name})")
            self._log(f"{split} set ({len(ds)} frames, {ckpt.name}):\n{format_metrics_table(metrics)}")
        if self.history:
            plot_learning_curves(self.history, self.run_dir / "learning_curves.png")
        with open(self.run_dir / "metrics.json", "w") as f:
            json.dump(out, f, indent=2)
        return out
