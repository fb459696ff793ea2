"""The main demo: train the default NequIP-style potential on the shipped Cu/Au EMT dataset, report its
test errors and plots, then run NVE molecular dynamics with it and report the energy drift."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = "train NequIP on the shipped Cu/Au dataset (time-limited), print test MAEs, plots, NVE MD drift"


def _repo_file(rel: str) -> Path:
    """A file shipped in the repository (configs/, data/), found from the source tree or the working dir."""
    for base in (Path(__file__).resolve().parents[2], Path.cwd()):
        p = base / rel
        if p.exists():
            return p
    raise FileNotFoundError(f"{rel} not found next to the euclidnet sources or in {Path.cwd()}: run from the repo")


def main(argv: list[str]) -> int:
    from ..cli import main as cli

    p = argparse.ArgumentParser(prog="euclidnet demo potential", description=DESCRIPTION)
    p.add_argument("--minutes", type=float, default=3.5, help="wall-clock training budget (default 3.5)")
    p.add_argument("--md-steps", type=int, default=200, help="NVE steps of 1 fs (default 200 = 0.2 ps)")
    p.add_argument("--run-dir", default="runs/demo", help="where checkpoints, logs and plots go")
    args = p.parse_args(argv)

    config = _repo_file("configs/nequip_emt.yaml")
    data = _repo_file("data/cu_au_emt.extxyz.gz")
    run_dir = Path(args.run_dir)
    print(f"== training NequIP on {data.name} for at most {args.minutes:g} min (config {config}) ==", flush=True)
    rc = cli([
        "train", str(config), "--run-dir", str(run_dir),
        "--set", f"training.max_time_minutes={args.minutes}",
    ])
    if rc != 0:
        return rc
    # best.ckpt exists once a validation pass has run; a very short budget may stop before the first one.
    ckpt = run_dir / "best.ckpt" if (run_dir / "best.ckpt").exists() else run_dir / "last.ckpt"
    print(f"\nplots: {run_dir / 'learning_curves.png'}, {run_dir / 'parity_test.png'}; log: {run_dir / 'log.csv'}")
    print(f"\n== NVE molecular dynamics with {ckpt} ({args.md_steps} steps of 1 fs, 300 K start) ==", flush=True)
    return cli([
        "md", str(ckpt), str(data), "--steps", str(args.md_steps), "--timestep", "1.0",
        "--temperature", "300", "--thermostat", "nve", "--trajectory", str(run_dir / "md.traj"),
    ])
