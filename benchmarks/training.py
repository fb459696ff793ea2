"""Training benchmark on the shipped Cu/Au EMT dataset: euclidnet's default model versus mace-torch.

For each code, on the same train / valid / test split and the same CPU-time budget (process CPU seconds
with ``--threads`` threads, default 1, so the figure does not depend on the machine's other load):

* training throughput (structures per second inside optimizer steps);
* test-set force MAE (and energy MAE per atom) of the model after the budget.

euclidnet trains through ``euclidnet train`` with ``training.max_time_minutes`` and
``time_limit_clock: cpu``. mace-torch is installed in a separate virtualenv created by this script
(``--mace-venv``, pinned ``torch==2.13.0`` through the repository's ``constraints.txt``; mace pins its own
e3nn) and trained with ``mace_run_train``; as mace has no time limit, its epoch count is chosen from the CPU
time of a 1-epoch and a 2-epoch run (setup cost excluded), then the test set is predicted with
``mace_eval_configs``. Results go to ``WORK_DIR/results.json`` and a table on stdout.

    python benchmarks/training.py                        # 20 CPU-minutes each (long)
    python benchmarks/training.py --budget-minutes 2 --max-train 200 --no-mace   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def child_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd: list[str], env: dict[str, str], log: Path, timeout: float | None = None) -> tuple[float, float]:
    """Run ``cmd`` (output to ``log``); returns (wall seconds, CPU seconds of the child)."""
    c0, t0 = child_cpu_seconds(), time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    wall, cpu = time.perf_counter() - t0, child_cpu_seconds() - c0
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n--- {log} ---\n{tail}")
    return wall, cpu


def make_split(cfg: dict, work: Path, max_train: int | None, seed: int) -> tuple[dict[str, Path], dict[str, int]]:
    """Write train / valid / test extxyz files from the config's data file and split settings."""
    from ase.io import write

    from euclidnet.data import read_atoms, split_indices

    src = Path(cfg["data"]["train"])
    if not src.is_absolute():
        src = (ROOT / "configs" / src).resolve() if (ROOT / "configs" / src).exists() else (ROOT / src)
    frames = read_atoms(src)
    split = cfg["data"].get("split", {})
    tr, va, te = split_indices(
        len(frames), split.get("valid_fraction", 0.1), split.get("test_fraction", 0.1), split.get("seed", seed)
    )
    if max_train is not None:
        tr = tr[:max_train]
    paths, counts = {}, {}
    for name, idx in (("train", tr), ("valid", va), ("test", te)):
        paths[name] = work / f"{name}.extxyz"
        out = []
        for i in idx:
            a = frames[i].copy()
            a.calc = None
            out.append(a)
        write(paths[name], out, format="extxyz")
        counts[name] = len(out)
    return paths, counts


# -- euclidnet ---------------------------------------------------------------------------------------------


def bench_euclidnet(cfg: dict, paths: dict[str, Path], work: Path, budget_min: float, env: dict) -> dict:
    cfg = json.loads(json.dumps(cfg))
    run_dir = work / "euclidnet"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cfg["run_dir"] = str(run_dir)
    cfg["data"].update({"train": str(paths["train"]), "valid": str(paths["valid"]), "test": str(paths["test"])})
    t = cfg.setdefault("training", {})
    t.update({"max_time_minutes": budget_min, "time_limit_clock": "cpu", "max_epochs": 100000, "max_steps": None})
    t["early_stopping_patience"] = None
    cfg_file = work / "euclidnet_config.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    wall, cpu = run([sys.executable, "-m", "euclidnet.cli", "train", str(cfg_file)], env, work / "euclidnet_train.log")
    summary = json.loads((run_dir / "summary.json").read_text())
    test = summary["test_metrics"]
    return {
        "model": f"euclidnet {cfg['model']['name']} {cfg['model'].get('kwargs', {})}",
        "epochs": summary["epochs"],
        "steps": summary["steps"],
        "budget_cpu_s_used": summary["train_time_s"],
        "process_cpu_s": cpu,
        "process_wall_s": wall,
        # Per CPU-second of the training process (1 thread by default): optimizer steps only, and overall
        # (validation included, comparable with mace's per-epoch figure).
        "step_structures_per_cpu_s": summary["step_structures_per_s"],
        "train_structures_per_s": summary["structures_per_s_this_run"],
        "test_force_mae_eV_per_A": test["forces"]["mae"],
        "test_energy_mae_eV_per_atom": test["energy"]["mae"],
        "test_stress_mae_eV_per_A3": test.get("stress", {}).get("mae"),
    }


# -- mace --------------------------------------------------------------------------------------------------


def ensure_mace_venv(venv: Path) -> Path:
    """Create ``venv`` with mace-torch (torch pinned by constraints.txt) unless it already works."""
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import mace"], capture_output=True).returncode == 0:
        return py
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), "mace-torch"], check=True
    )
    return py


def _mace_cmd(venv: Path, name: str, paths: dict, cfg: dict, epochs: int, seed: int, run_dir: Path) -> list[str]:
    t = cfg.get("training", {})
    w = t.get("loss_weights", {"energy": 1.0, "forces": 10.0})
    r_max = cfg["model"].get("kwargs", {}).get("r_max", 4.5)
    return [
        str(venv / "bin" / "mace_run_train"),
        f"--name={name}",
        f"--work_dir={run_dir}",
        f"--train_file={paths['train']}",
        f"--valid_file={paths['valid']}",
        f"--test_file={paths['test']}",
        "--energy_key=REF_energy",
        "--forces_key=REF_forces",
        "--stress_key=REF_stress",
        "--E0s=average",
        "--model=ScaleShiftMACE",
        "--scaling=rms_forces_scaling",
        "--hidden_irreps=16x0e + 16x1o",
        "--num_interactions=2",
        "--max_L=1",
        "--correlation=3",
        f"--r_max={r_max}",
        f"--batch_size={t.get('batch_size', 8)}",
        f"--valid_batch_size={t.get('batch_size', 8)}",
        f"--max_num_epochs={epochs}",
        f"--lr={t.get('lr', 0.01)}",
        f"--energy_weight={w.get('energy', 1.0)}",
        f"--forces_weight={w.get('forces', 10.0)}",
        f"--stress_weight={w.get('stress', 0.0)}",
        "--loss=stress" if w.get("stress", 0.0) > 0 else "--loss=weighted",
        "--ema",
        f"--ema_decay={t.get('ema_decay', 0.99) or 0.99}",
        "--device=cpu",
        "--default_dtype=float32",
        "--eval_interval=1",
        f"--seed={seed}",
        "--save_cpu",
    ]


def bench_mace(cfg: dict, paths: dict, work: Path, budget_min: float, env: dict, venv: Path, seed: int) -> dict:
    from ase.io import read

    py = ensure_mace_venv(venv)
    version = subprocess.run(
        [str(py), "-c", "import mace, torch, e3nn; print(mace.__version__, torch.__version__, e3nn.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    root = work / "mace"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    cpu = {}
    for epochs in (1, 2):
        _, cpu[epochs] = run(
            _mace_cmd(venv, f"probe{epochs}", paths, cfg, epochs, seed, root / f"probe{epochs}"),
            env,
            root / f"probe{epochs}.log",
        )
    per_epoch = max(cpu[2] - cpu[1], 1e-3)
    setup = max(cpu[1] - per_epoch, 0.0)
    epochs = max(1, int(60.0 * budget_min // per_epoch))
    if epochs <= 2:
        name, run_dir, used = f"probe{epochs}", root / f"probe{epochs}", cpu[epochs] - setup
    else:
        name, run_dir = "final", root / "final"
        _, c = run(_mace_cmd(venv, name, paths, cfg, epochs, seed, run_dir), env, root / "final.log")
        used = c - setup
    model = run_dir / f"{name}.model"
    if not model.exists():
        found = sorted(run_dir.rglob(f"{name}*.model"))
        if not found:
            raise RuntimeError(f"mace wrote no model under {run_dir}")
        model = found[0]
    out = root / "test_pred.xyz"
    run(
        [
            str(venv / "bin" / "mace_eval_configs"),
            f"--configs={paths['test']}",
            f"--model={model}",
            f"--output={out}",
            "--device=cpu",
            "--default_dtype=float32",
        ],
        env,
        root / "eval.log",
    )
    ref = read(paths["test"], ":")
    pred = read(out, ":")
    f_err = np.concatenate([p.arrays["MACE_forces"] - r.arrays["REF_forces"] for p, r in zip(pred, ref)])
    e_err = np.array([(p.info["MACE_energy"] - r.info["REF_energy"]) / len(r) for p, r in zip(pred, ref)])
    n_train = len(read(paths["train"], ":"))
    return {
        "model": "mace-torch ScaleShiftMACE 16x0e+16x1o, 2 interactions, max_L=1, correlation 3",
        "versions": {"mace": version[0], "torch": version[1], "e3nn": version[2]},
        "epochs": epochs,
        "budget_cpu_s_used": used,
        "cpu_s_per_epoch": per_epoch,
        "setup_cpu_s": setup,
        "train_structures_per_s": n_train / per_epoch,  # per CPU-second, validation included
        "test_force_mae_eV_per_A": float(np.mean(np.abs(f_err))),
        "test_energy_mae_eV_per_atom": float(np.mean(np.abs(e_err))),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "nequip_emt.yaml"), help="euclidnet training config")
    p.add_argument("--budget-minutes", type=float, default=20.0, help="CPU-time budget per code (default 20)")
    p.add_argument("--threads", type=int, default=1, help="threads per training process (default 1)")
    p.add_argument("--max-train", type=int, default=None, help="use only the first N training frames")
    p.add_argument("--work-dir", default=str(ROOT / "runs" / "bench_training"))
    p.add_argument("--mace-venv", default=str(ROOT / ".venv-mace-bench"), help="virtualenv for mace-torch")
    p.add_argument("--no-mace", action="store_true", help="skip mace-torch")
    p.add_argument("--no-euclidnet", action="store_true", help="skip euclidnet")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    cfg = yaml.safe_load(Path(args.config).read_text())
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    paths, counts = make_split(cfg, work, args.max_train, args.seed)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    results = {
        "budget_cpu_minutes": args.budget_minutes,
        "threads": args.threads,
        "frames": counts,
    }
    if not args.no_euclidnet:
        results["euclidnet"] = bench_euclidnet(cfg, paths, work, args.budget_minutes, env)
    if not args.no_mace:
        results["mace"] = bench_mace(cfg, paths, work, args.budget_minutes, env, Path(args.mace_venv), args.seed)
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"budget {args.budget_minutes} CPU-min per code, {args.threads} thread(s), frames {results['frames']}")
    header = ("code", "epochs", "CPU s", "struct/CPUs", "test F MAE (eV/Å)", "test E MAE (eV/atom)")
    print(f"{header[0]:<10} {header[1]:>7} {header[2]:>8} {header[3]:>11} {header[4]:>18} {header[5]:>21}")
    for code in ("euclidnet", "mace"):
        if code in results:
            r = results[code]
            print(
                f"{code:<10} {r['epochs']:>7} {r['budget_cpu_s_used']:>8.0f} {r['train_structures_per_s']:>11.2f} "
                f"{r['test_force_mae_eV_per_A']:>18.4f} {r['test_energy_mae_eV_per_atom']:>21.5f}"
            )
    print(f"details: {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
