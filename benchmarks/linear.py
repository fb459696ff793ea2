"""Benchmark linear_fwd / linear_fwdbwd (see /work/shared/bench/WORKLOADS.md).

Usage: python benchmarks/linear.py [--no-compile] [--no-e3nn] [--no-memory] [--min-calls N] [--max-calls N]

Equivariant linear ``128x0e+64x1o+32x2e`` -> same, no bias, x [10000, 480] N(0, 1), float32, 2 threads.
euclidnet vs e3nn eager vs e3nn under torch.compile (compiled outside the timed region), interleaved.
Useful multiply-adds = sum over irreps of mul_in * mul_out * (2l + 1) * batch; fwdbwd counted as 3x.
Peak memory: peak RSS (VmHWM, reset via /proc/self/clear_refs) minus RSS before one call, in a fresh
subprocess per library.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
from _common import sgemm_gflops  # noqa: E402  (sibling module of this script)

from euclidnet.o3.irreps import Irreps
from euclidnet.o3.linear import Linear

IRREPS = "128x0e+64x1o+32x2e"
N = 10000


def build(lib: str, compile_e3nn: bool = False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, Irreps(IRREPS).dim, generator=g).requires_grad_(True)
    if lib == "ours":
        mod = Linear(IRREPS, IRREPS)
    else:
        import e3nn.o3 as eo

        mod = eo.Linear(IRREPS, IRREPS)
    with torch.no_grad():
        mod.weight.copy_(torch.randn(mod.weight.shape, generator=g))
    f = torch.compile(mod) if compile_e3nn else mod

    def fwd():
        with torch.no_grad():
            return f(x)

    def fwdbwd():
        return torch.autograd.grad(f(x).sum(), [x, mod.weight])

    return fwd, fwdbwd


def macs() -> int:
    return sum(mul * mul * ir.dim for mul, ir in Irreps(IRREPS)) * N


def peak_memory(lib: str, mode: str) -> float:
    code = (  # noqa: UP031
        "import sys, json, resource, torch; torch.set_num_threads(2); sys.path.insert(0, %r);"
        "import linear as b; f, fb = b.build(%r);"
        "import gc; gc.collect(); open('/proc/self/clear_refs', 'w').write('5');"
        "st = lambda k: int([l for l in open('/proc/self/status') if l.startswith(k)][0].split()[1]);"
        "base = st('VmRSS:');"
        "(f if %r == 'fwd' else fb)();"
        "print(json.dumps((st('VmHWM:') - base) / 1024))"
    ) % (sys.path[0], lib, mode)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-e3nn", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--min-calls", type=int, default=7)
    ap.add_argument("--max-calls", type=int, default=50)
    a = ap.parse_args()
    torch.set_num_threads(2)
    libs = {"ours": build("ours")}
    if not a.no_e3nn:
        try:
            libs["e3nn"] = build("e3nn")
            if not a.no_compile:
                libs["e3nn_compiled"] = build("e3nn", compile_e3nn=True)
                libs["e3nn_compiled"][0]()
                libs["e3nn_compiled"][1]()
        except ImportError:
            print("e3nn not installed: timing euclidnet only")
    print(f"threads=2 min_calls={a.min_calls} (WORKLOADS.md: >= 7)")
    print(f"sgemm 1024^3 yardstick: {sgemm_gflops():.1f} GFLOP/s")
    for mode, idx in (("fwd", 0), ("fwdbwd", 1)):
        fns = {k: v[idx] for k, v in libs.items()}
        for fn in fns.values():
            fn()
            fn()
        ts = {k: [] for k in fns}
        start, n = time.perf_counter(), 0
        while n < a.max_calls and (n < a.min_calls or time.perf_counter() - start < len(fns) * 1.0):
            for k, fn in fns.items():
                t = time.perf_counter()
                fn()
                ts[k].append(time.perf_counter() - t)
            n += 1
        med = {k: statistics.median(v) for k, v in ts.items()}
        flops = 2 * macs() * (1 if mode == "fwd" else 3)
        print(
            f"linear_{mode}: "
            + "  ".join(f"{k} {t * 1e3:.2f} ms ({flops / t / 1e9:.3g} GFLOP/s)" for k, t in med.items())
        )
        for k in med:
            if k != "ours":
                print(f"    speedup vs {k}: {med[k] / med['ours']:.2f}x")
        if not a.no_memory:
            mems = {k: peak_memory(k, mode) for k in libs if k != "e3nn_compiled"}
            print("    peak memory (MB over baseline): " + "  ".join(f"{k} {m:.0f}" for k, m in mems.items()))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
