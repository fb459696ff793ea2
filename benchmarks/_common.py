"""Helpers shared by the benchmark scripts (imported as a sibling module: run the scripts from anywhere)."""

from __future__ import annotations

import statistics
import time

import torch


def sgemm_gflops() -> float:
    """Achieved GFLOP/s of a 1024^3 float32 matmul: the yardstick of what the cores deliver in this run."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(2):
        a @ b
    ts = []
    for _ in range(7):
        t = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t)
    return 2 * 1024**3 / statistics.median(ts) / 1e9


def time_interleaved(fns: dict, min_calls: int, max_calls: int) -> dict:
    """Median seconds per call of each of ``fns`` (name -> zero-argument callable), WORKLOADS.md style: 2
    untimed warm-up calls each, then rounds of one call each (interleaved, so load changes hit all contenders
    alike) until ``min_calls`` rounds and about 1 s per contender have passed, at most ``max_calls`` rounds."""
    for fn in fns.values():
        fn()
        fn()
    ts: dict = {k: [] for k in fns}
    start = time.perf_counter()
    n = 0
    while n < max_calls and (n < min_calls or time.perf_counter() - start < len(fns) * 1.0):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            ts[k].append(time.perf_counter() - t)
        n += 1
    return {k: statistics.median(v) for k, v in ts.items()}
