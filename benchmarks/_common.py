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
