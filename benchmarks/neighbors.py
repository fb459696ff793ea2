"""Timing of ``euclidnet.graph.radius_graph`` on uniform random clouds at fixed density.

Density and cutoff give about 30 neighbours per atom; the box grows with N so the work per atom is
constant and a linear-scaling algorithm shows a flat time per atom and a log-log slope near 1.

    python benchmarks/neighbors.py                       # N = 1e3 .. 1e6, open and periodic
    python benchmarks/neighbors.py --sizes 1000 10000    # quicker
    python benchmarks/neighbors.py --backends torch      # pure-torch path only
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

from euclidnet.graph import radius_graph, vesin_available

R_MAX = 5.0
NEIGHBOURS = 30.0
DENSITY = NEIGHBOURS / (4.0 / 3.0 * math.pi * R_MAX**3)  # atoms per unit volume


def make_cloud(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    box = (n / DENSITY) ** (1.0 / 3.0)
    gen = torch.Generator().manual_seed(seed)
    pos = torch.rand(n, 3, generator=gen, dtype=torch.float64) * box
    return pos, torch.eye(3, dtype=torch.float64) * box


def time_call(fn, warmup: int, repeats: int) -> tuple[float, float, int]:
    """Median wall-clock and median CPU time (all threads) of ``fn``, and its edge count."""
    edges = 0
    for _ in range(warmup):
        edges = fn()[0].shape[1]
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), edges


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def slope(ns: list[int], ts: list[float]) -> float:
    x = [math.log(n) for n in ns]
    y = [math.log(t) for t in ts]
    mx, my = statistics.fmean(x), statistics.fmean(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--backends", nargs="+", default=["torch", "vesin"], help="vesin is skipped when not installed"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    backends = [b for b in args.backends if b != "vesin" or vesin_available()]
    print(
        f"radius_graph, r_max = {R_MAX}, density = {DENSITY:.4f} (~{NEIGHBOURS:.0f} neighbours/atom), "
        f"float64, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"median of {args.repeats} after {args.warmup} warm-up calls; load average at start: {load_average()} "
        f"on {os.cpu_count()} CPUs"
    )
    print("(wall = elapsed time; cpu = process CPU time summed over threads, less sensitive to other load)")
    print()
    print("| boundary | backend | N | edges | edges/atom | wall [s] | wall/atom [us] | cpu [s] |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    fits = []
    for periodic in (False, True):
        for backend in backends:
            ns, ts = [], []
            for n in args.sizes:
                pos, cell = make_cloud(n)
                if periodic:
                    def fn(pos=pos, cell=cell, backend=backend):
                        return radius_graph(pos, R_MAX, cell=cell, backend=backend)
                else:
                    def fn(pos=pos, backend=backend):
                        return radius_graph(pos, R_MAX, backend=backend)
                t, cpu, edges = time_call(fn, args.warmup, args.repeats)
                ns.append(n)
                ts.append(t)
                kind = "periodic" if periodic else "open"
                print(
                    f"| {kind} | {backend} | {n:,} | {edges:,} | {edges / n:.1f} | {t:.4f} | {1e6 * t / n:.2f} "
                    f"| {cpu:.4f} |",
                    flush=True,
                )
            if len(ns) > 1:
                fits.append((periodic, backend, slope(ns, ts), slope(ns[-2:], ts[-2:])))
    print()
    print(f"load average at end: {load_average()}")
    print()
    print("| boundary | backend | log-log slope of wall time (all N) | slope (two largest N) |")
    print("|---|---|---:|---:|")
    for periodic, backend, s_all, s_top in fits:
        print(f"| {'periodic' if periodic else 'open'} | {backend} | {s_all:.3f} | {s_top:.3f} |")


if __name__ == "__main__":
    main()
