"""Benchmark sh_l{2,4,6,8}_fwd / _fwdbwd of /work/shared/bench/WORKLOADS.md: euclidnet vs e3nn.

x: [100000, 3] N(0, 1), float32, CPU, 2 threads; all degrees 0..L, normalize=True, 'component'.
fwdbwd = forward + torch.autograd.grad(y.sum(), [x]). 2 untimed warm-ups, then timed calls until >= 7 calls
and >= 1 s per contender (at most 50); MEDIAN reported. Contenders are interleaved call by call in one
process (euclidnet, e3nn, euclidnet pure-torch fallback, ...), and ratios are of medians from the same run.
e3nn is optional (``pip install euclidnet[compare]``); without it only euclidnet is timed.

Run: ``python benchmarks/spherical_harmonics.py [--n 100000] [--lmax 2 4 6 8] [--no-memory]``.

GFLOP/s: 2 x the multiply-adds of the recursion every implementation needs (normalisation 6, azimuth powers 4
per m >= 2, Legendre recursion 3 per (l, m <= l - 2), sectoral 1 per l >= 1, one product per m != 0 output)
per point, over the median time; fwdbwd counted as 3x the forward. Printed next to the achieved GFLOP/s of a
1024^3 sgemm in the same run (``_common.sgemm_gflops``), the yardstick of what the cores deliver.

Peak memory (``--no-memory`` skips it): for each (library, L, fwd|fwdbwd) a fresh subprocess builds the
inputs, makes one call on 16 points (loads the compiled kernel / e3nn's scripted code), resets the peak RSS
(``/proc/self/clear_refs`` <- 5, Linux), records VmRSS, makes one full call and reports VmHWM - VmRSS: the
extra resident memory the call needed (its output, workspace and autograd buffers), in MB.

On a heavily shared machine wall-clock medians of multi-threaded torch code are dominated by preemption
(every parallel region waits for its slowest thread). ``--threads 1 --cpu-time`` is a supplementary mode
(NOT the WORKLOADS.md definition): one thread, timed with ``time.thread_time()``, i.e. the CPU work of
each call, which is much less sensitive to other processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from _common import sgemm_gflops  # noqa: E402  (sibling module of this script)

from euclidnet.kernels import kernel_status
from euclidnet.o3 import spherical_harmonics

try:  # optional reference library
    from e3nn import o3 as e3nn_o3
except ImportError:  # pragma: no cover - depends on the environment
    e3nn_o3 = None


class _PureTorch:
    """Run a call with the compiled kernels disabled (the env var is set outside the timed region)."""

    def __enter__(self) -> None:
        self.old = os.environ.get("EUCLIDNET_DISABLE_KERNELS")
        os.environ["EUCLIDNET_DISABLE_KERNELS"] = "1"

    def __exit__(self, *exc: object) -> None:
        if self.old is None:
            del os.environ["EUCLIDNET_DISABLE_KERNELS"]
        else:
            os.environ["EUCLIDNET_DISABLE_KERNELS"] = self.old


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _time_interleaved(
    fns: dict[str, tuple[Callable[[], object], object]],
    min_calls: int = 7,
    min_time: float = 1.0,
    max_calls: int = 50,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per call of each contender, timed call by call in turn (A, B, C, A, B, C, ...)."""
    for fn, ctx in fns.values():
        for _ in range(2):  # warm-ups
            with ctx:  # type: ignore[attr-defined]
                fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    while True:
        for name, (fn, ctx) in fns.items():
            with ctx:  # type: ignore[attr-defined]
                t0 = clock()
                fn()
                times[name].append(clock() - t0)
        done = all(len(t) >= min_calls and sum(t) >= min_time for t in times.values())
        if done or all(len(t) >= max_calls for t in times.values()):
            break
    return {k: statistics.median(v) for k, v in times.items()}


def macs_per_point(L: int) -> int:
    """Multiply-adds per point of one evaluation of all degrees 0..L (see the module docstring)."""
    legendre = sum(3 * max(l - 1, 0) for l in range(L + 1))
    return 6 + 4 * max(L - 1, 0) + legendre + L + L * (L + 1)


def peak_memory(lib: str, L: int, mode: str, n: int) -> float:
    """Extra resident memory (MB) of one call, measured in a fresh subprocess (see the module docstring)."""
    code = f"""
import json, torch
torch.set_num_threads(2)
if {lib!r} == "e3nn":
    from e3nn.o3 import spherical_harmonics as sh
else:
    from euclidnet.o3 import spherical_harmonics as sh
torch.manual_seed(0)
ls = list(range({L} + 1))
def call(x):
    if {mode!r} == "fwd":
        with torch.no_grad():
            return sh(ls, x, True, "component")
    y = sh(ls, x, True, "component")
    return torch.autograd.grad(y.sum(), [x])
call(torch.randn(16, 3, requires_grad=True))
x = torch.randn({n}, 3, requires_grad={mode!r} == "fwdbwd")
import gc; gc.collect()
open("/proc/self/clear_refs", "w").write("5")
st = lambda k: int([l for l in open("/proc/self/status") if l.startswith(k)][0].split()[1])
base = st("VmRSS:")
r = call(x)
print(json.dumps((st("VmHWM:") - base) / 1024))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--lmax", type=int, nargs="+", default=[2, 4, 6, 8])
    parser.add_argument("--threads", type=int, default=2, help="WORKLOADS.md: 2")
    parser.add_argument("--cpu-time", action="store_true", help="time CPU work (thread_time); needs --threads 1")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    args = parser.parse_args()
    if args.cpu_time and args.threads != 1:
        parser.error("--cpu-time measures one thread's CPU time; use it with --threads 1")
    clock = time.thread_time if args.cpu_time else time.perf_counter

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.n, 3, dtype=torch.float32)
    xg = x.clone().requires_grad_(True)

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, N = {args.n}, float32, "
          f"clock = {'thread CPU time' if args.cpu_time else 'wall'}")
    print(f"kernels: {kernel_status()}")
    print(f"e3nn: {'available' if e3nn_o3 is not None else 'not installed'}")
    print(f"sgemm 1024^3 yardstick: {sgemm_gflops():.1f} GFLOP/s\n")

    rows = []
    for L in args.lmax:
        ls = list(range(L + 1))

        def ours_fwd(ls=ls):
            return spherical_harmonics(ls, x, normalize=True, normalization="component")

        def ours_fwdbwd(ls=ls):
            y = spherical_harmonics(ls, xg, normalize=True, normalization="component")
            return torch.autograd.grad(y.sum(), [xg])

        fwd = {"euclidnet": (ours_fwd, _Null())}
        fwdbwd = {"euclidnet": (ours_fwdbwd, _Null())}
        if e3nn_o3 is not None:

            def e3nn_fwd(ls=ls):
                return e3nn_o3.spherical_harmonics(ls, x, normalize=True, normalization="component")

            def e3nn_fwdbwd(ls=ls):
                y = e3nn_o3.spherical_harmonics(ls, xg, normalize=True, normalization="component")
                return torch.autograd.grad(y.sum(), [xg])

            fwd["e3nn"] = (e3nn_fwd, _Null())
            fwdbwd["e3nn"] = (e3nn_fwdbwd, _Null())
        fwd["euclidnet (pure torch)"] = (ours_fwd, _PureTorch())
        fwdbwd["euclidnet (pure torch)"] = (ours_fwdbwd, _PureTorch())

        for kind, fns in (("fwd", fwd), ("fwdbwd", fwdbwd)):
            med = _time_interleaved(fns, clock=clock)
            rows.append((f"sh_l{L}_{kind}", L, kind, med))
            print(f"sh_l{L}_{kind}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in med.items()), flush=True)

    print()
    print("| workload | euclidnet (ms) | GFLOP/s | e3nn (ms) | GFLOP/s | e3nn / euclidnet | pure torch (ms) "
          "| e3nn / pure torch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, L, kind, med in rows:
        flops = 2 * macs_per_point(L) * args.n * (1 if kind == "fwd" else 3)
        ours = med["euclidnet"]
        pure = med["euclidnet (pure torch)"]
        ref = med.get("e3nn")
        ref_s = f"{ref * 1e3:.2f} | {flops / ref / 1e9:.2f}" if ref is not None else "- | -"
        r1 = f"{ref / ours:.2f}x" if ref is not None else "-"
        r2 = f"{ref / pure:.2f}x" if ref is not None else "-"
        print(f"| {name} | {ours * 1e3:.2f} | {flops / ours / 1e9:.2f} | {ref_s} | {r1} | {pure * 1e3:.2f} | {r2} |")

    if not args.no_memory:
        libs = ["euclidnet"] + (["e3nn"] if e3nn_o3 is not None else [])
        print("\npeak extra RSS of one call (MB, fresh subprocess each):")
        for _, L, kind, _ in rows:
            mem = {lib: peak_memory(lib, L, kind, args.n) for lib in libs}
            print(f"  sh_l{L}_{kind}: " + "  ".join(f"{k} {v:.1f}" for k, v in mem.items()), flush=True)


if __name__ == "__main__":
    main()
