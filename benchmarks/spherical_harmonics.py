"""Benchmark sh_l{2,4,6,8}_fwd / _fwdbwd of /work/shared/bench/WORKLOADS.md: euclidnet vs e3nn.

x: [100000, 3] N(0, 1), float32, CPU, 2 threads; all degrees 0..L, normalize=True, 'component'.
fwdbwd = forward + torch.autograd.grad(y.sum(), [x]). 2 untimed warm-ups, then timed calls until >= 7 calls
and >= 1 s per contender (at most 50); MEDIAN reported. Contenders are interleaved call by call in one
process (euclidnet, e3nn, euclidnet pure-torch fallback, ...), and ratios are of medians from the same run.
e3nn is optional (``pip install euclidnet[compare]``); without it only euclidnet is timed.

Run: ``python benchmarks/spherical_harmonics.py [--n 100000] [--lmax 2 4 6 8]``.

On a heavily shared machine wall-clock medians of multi-threaded torch code are dominated by preemption
(every parallel region waits for its slowest thread). ``--threads 1 --cpu-time`` is a supplementary mode
(NOT the WORKLOADS.md definition): one thread, timed with ``time.thread_time()``, i.e. the CPU work of
each call, which is much less sensitive to other processes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--lmax", type=int, nargs="+", default=[2, 4, 6, 8])
    parser.add_argument("--threads", type=int, default=2, help="WORKLOADS.md: 2")
    parser.add_argument("--cpu-time", action="store_true", help="time CPU work (thread_time); needs --threads 1")
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
    print(f"e3nn: {'available' if e3nn_o3 is not None else 'not installed'}\n")

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
            rows.append((f"sh_l{L}_{kind}", med))
            print(f"sh_l{L}_{kind}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in med.items()), flush=True)

    print()
    print("| workload | euclidnet (ms) | e3nn (ms) | e3nn / euclidnet | pure torch (ms) | e3nn / pure torch |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, med in rows:
        ours = med["euclidnet"]
        pure = med["euclidnet (pure torch)"]
        ref = med.get("e3nn")
        ref_s = f"{ref * 1e3:.2f}" if ref is not None else "-"
        r1 = f"{ref / ours:.2f}x" if ref is not None else "-"
        r2 = f"{ref / pure:.2f}x" if ref is not None else "-"
        print(f"| {name} | {ours * 1e3:.2f} | {ref_s} | {r1} | {pure * 1e3:.2f} | {r2} |")


if __name__ == "__main__":
    main()
