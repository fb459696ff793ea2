"""The ``euclidnet`` command line: ``demo``, ``train``, ``evaluate`` and ``md``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

_EPILOG_TRAIN = """\
examples:
  euclidnet train configs/nequip_emt.yaml
  euclidnet train configs/nequip_emt.yaml --resume            # continue run_dir/last.ckpt exactly
  euclidnet train cfg.yaml --set training.lr=1e-3 --set run_dir=runs/lr1e-3
  torchrun --nproc_per_node=4 -m euclidnet.cli train cfg.yaml  # data parallel (global batch from the config)

The run directory receives last.ckpt, best.ckpt, log.csv, learning_curves.png, parity_*.png, metrics.json.
"""


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demos import available_demos, run_demo

    if args.list:
        for name, desc in sorted(available_demos().items()):
            print(f"{name:<12} {desc}")
        return 0
    return run_demo(args.name or "potential", args.demo_args)


def _apply_overrides(raw: dict[str, Any], overrides: list[str]) -> None:
    import yaml

    from .data.config import ConfigError

    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE (dotted keys, e.g. training.lr=1e-3), got {item!r}")
        key, value = item.split("=", 1)
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section")
        node[parts[-1]] = yaml.safe_load(value)


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from .data.config import ConfigError, config_from_dict
    from .train.trainer import Trainer

    path = Path(args.config)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping at the top level")
    _apply_overrides(raw, args.set or [])
    if args.run_dir:
        raw["run_dir"] = args.run_dir
    cfg = config_from_dict(raw)
    for attr in ("train", "valid", "test"):
        p = getattr(cfg.data, attr)
        if p is not None and not Path(p).exists() and (path.parent / p).exists():
            setattr(cfg.data, attr, str(path.parent / p))
    trainer = Trainer(cfg, resume=args.resume, max_steps=args.max_steps, verbose=not args.quiet)
    summary = trainer.fit()
    if trainer.dist.is_main and not args.quiet:
        print(
            f"done: {summary['epochs']} epochs, {summary['steps']} steps, "
            f"{summary['structures_per_s_this_run']:.1f} structures/s; checkpoints in {cfg.run_dir}"
        )
    if trainer.dist.initialized_here:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .data.dataset import AtomicDataset
    from .data.extxyz import LabelSpec, label_specs_from_config
    from .train.evaluate import error_metrics, format_metrics_table, predict
    from .train.loading import load_potential

    pot, species, payload = load_potential(args.checkpoint, dtype=args.dtype)
    from .data.config import config_from_dict

    data_cfg = config_from_dict(payload["config"]).data
    for name in ("energy", "forces", "stress"):
        override = getattr(args, f"{name}_key")
        if override is not None:
            setattr(data_cfg, f"{name}_key", None if override.lower() == "none" else override)
    specs: list[LabelSpec] = label_specs_from_config(data_cfg)
    ds, _ = AtomicDataset.from_file(args.data, species, specs, dtype=next(pot.parameters()).dtype, r_max=pot.r_max)
    preds = predict(pot, ds, None, args.batch_size)
    metrics = error_metrics(preds)
    print(f"{args.data}: {len(ds)} frames, {sum(ds.num_atoms)} atoms, checkpoint {args.checkpoint}")
    print(format_metrics_table(metrics))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(metrics, f, indent=2)
    if args.parity:
        from .train.plots import plot_parity

        plot_parity(preds, args.parity, title=str(args.data))
    return 0


def _cmd_md(args: argparse.Namespace) -> int:
    from .train.md import run_md

    report = run_md(
        args.checkpoint,
        args.structure,
        steps=args.steps,
        timestep_fs=args.timestep,
        temperature_K=args.temperature,
        thermostat=args.thermostat,
        friction_per_fs=args.friction,
        trajectory=None if args.trajectory.lower() == "none" else args.trajectory,
        sample_every=args.sample_every,
        dtype=args.dtype,
        seed=args.seed,
        frame=args.frame,
    )
    print(
        f"{report['thermostat'].upper()} MD of {report['atoms']} atoms: {report['steps']} steps, "
        f"{report['simulated_ps']:.3f} ps in {report['wall_s']:.1f} s ({report['ns_per_day']:.3f} ns/day); "
        f"mean T {report['mean_temperature_K']:.1f} K"
    )
    drift = report["energy_drift_eV_per_atom_per_ps"]
    if report["thermostat"] == "nve":
        print(f"energy drift: {drift:.3e} eV/atom/ps")
    else:
        print(f"total-energy slope (thermostatted, not a conservation test): {drift:.3e} eV/atom/ps")
    if report["trajectory"]:
        print(f"trajectory: {report['trajectory']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="euclidnet", description="E(3)-equivariant neural networks: demos, training and evaluation."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="run a demo (`euclidnet demo --list` lists them)",
        description="Run a demo by name; arguments after the name go to the demo (try `euclidnet demo NAME -h`).",
    )
    demo.add_argument("name", nargs="?", help="which demo (default: potential)")
    demo.add_argument("demo_args", nargs=argparse.REMAINDER, help="arguments passed to the demo")
    demo.add_argument("--list", action="store_true", help="list the available demos")
    demo.set_defaults(func=_cmd_demo)

    train = sub.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train any registered model on extended-XYZ data as described by a YAML config.",
        epilog=_EPILOG_TRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("config", help="YAML config file")
    train.add_argument("--resume", action="store_true", help="continue exactly from RUN_DIR/last.ckpt")
    train.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps in total")
    train.add_argument("--run-dir", default=None, help="override run_dir of the config")
    train.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config value (dotted key, YAML value)"
    )
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.set_defaults(func=_cmd_train)

    ev = sub.add_parser(
        "evaluate",
        help="MAE/RMSE of a checkpoint on a data file",
        description="Evaluate a checkpoint on a data file; label keys default to those of the training config.",
    )
    ev.add_argument("checkpoint", help="checkpoint file (e.g. runs/x/best.ckpt)")
    ev.add_argument("data", help="extended XYZ (or any ASE-readable) file")
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--dtype", choices=["float32", "float64"], default=None, help="default: the training dtype")
    for name in ("energy", "forces", "stress"):
        ev.add_argument(f"--{name}-key", default=None, help=f"key of {name} in DATA ('none' to skip)")
    ev.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    ev.add_argument("--parity", default=None, help="also write a parity plot (PNG) here")
    ev.set_defaults(func=_cmd_evaluate)

    md = sub.add_parser(
        "md",
        help="molecular dynamics with a trained model (ASE)",
        description="NVE (velocity Verlet) or NVT (Langevin) MD with a checkpoint; reports the NVE energy drift.",
    )
    md.add_argument("checkpoint", help="checkpoint file")
    md.add_argument("structure", help="starting structure (any ASE-readable file; --frame picks one)")
    md.add_argument("--steps", type=int, default=1000)
    md.add_argument("--timestep", type=float, default=1.0, help="fs (default 1)")
    md.add_argument("--temperature", type=float, default=300.0, help="K: initial velocities and Langevin target")
    md.add_argument("--thermostat", choices=["nve", "langevin"], default="nve")
    md.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs (default 0.01)")
    md.add_argument("--trajectory", default="md.traj", help="output .traj or .extxyz ('none' to skip)")
    md.add_argument("--sample-every", type=int, default=10, help="record/write every N steps")
    md.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    md.add_argument("--seed", type=int, default=0)
    md.add_argument("--frame", type=int, default=-1, help="frame of STRUCTURE to start from (default: last)")
    md.add_argument("--json", default=None, help="also write the report to this JSON file")
    md.set_defaults(func=_cmd_md)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if args.command == "demo":
        return int(args.func(args))
    from .data.config import ConfigError
    from .data.extxyz import MissingLabelError
    from .train.checkpoint import CheckpointError

    try:
        return int(args.func(args))
    except (ConfigError, CheckpointError, MissingLabelError, FileNotFoundError, ValueError, KeyError) as exc:
        print(f"euclidnet {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
