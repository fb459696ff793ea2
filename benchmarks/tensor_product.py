"""Benchmarks tp_uvu_conv_fwd/_fwdbwd and tp_uvw_fc_fwd/_fwdbwd (see /work/shared/bench/WORKLOADS.md).

Usage: python benchmarks/tensor_product.py [--workload uvu|uvw|all] [--no-compile] [--max-calls N]
       [--min-calls N] [--no-memory] [--scale S]

euclidnet vs e3nn eager vs e3nn under torch.compile (compiled outside the timed region), interleaved in one
process (A, B, C, A, B, C, ...). Prints medians, ratios (e3nn / ours), achieved GFLOP/s (useful
multiply-adds = nonzero CG entries x multiplicities x batch, as 2 flops each) and an sgemm 1024^3
yardstick; peak memory (peak RSS VmHWM, reset via /proc/self/clear_refs, minus RSS before one call, in a
fresh subprocess per library and workload). ``--scale`` shrinks the batch for quick runs (the WORKLOADS.md
definition is scale 1); ``--min-calls`` below 7 departs from it too and is printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
from _common import sgemm_gflops, time_interleaved  # noqa: E402  (sibling module of this script)

from euclidnet.kernels import kernel_status
from euclidnet.o3.spherical_harmonics import spherical_harmonics
from euclidnet.tp import ChannelwiseTensorProduct, FullyConnectedTensorProduct, execution, load_e3nn_weights


def build(workload: str, lib: str, scale: float = 1.0, compile_e3nn: bool = False):
    """Return (fn_fwd, fn_fwdbwd, useful multiply-adds) for one library; inputs built here, untimed."""
    g = torch.Generator().manual_seed(0)
    if workload == "uvu":
        E = int(20000 * scale)
        i1, i2 = "32x0e+32x1o+32x2e", "1x0e+1x1o+1x2e"
        ours = ChannelwiseTensorProduct(i1, i2, i1)
        x1 = torch.randn(E, 288, generator=g)
        x2 = spherical_harmonics([0, 1, 2], torch.randn(E, 3, generator=g), True, "component")
        w = torch.randn(E, 352, generator=g)
        x1.requires_grad_(True), x2.requires_grad_(True), w.requires_grad_(True)
        macs = ours.descriptor.num_multiply_adds(E)
        if lib.startswith("ours"):
            mod = ours
        else:
            import e3nn.o3 as eo

            mod = eo.TensorProduct(i1, i2, i1, ours.instructions, shared_weights=False, internal_weights=False)
        f = torch.compile(mod) if compile_e3nn else mod
        args, params = (x1, x2, w), [x1, x2, w]
    else:
        N = int(2000 * scale)
        irr = "64x0e+64x1o+64x1e"
        ours = FullyConnectedTensorProduct(irr, irr, irr)
        with torch.no_grad():
            ours.weight.copy_(torch.randn(ours.weight_numel, generator=g))
        x1 = torch.randn(N, 448, generator=g).requires_grad_(True)
        x2 = torch.randn(N, 448, generator=g).requires_grad_(True)
        macs = ours.descriptor.num_multiply_adds(N)
        if lib.startswith("ours"):
            mod = ours
        else:
            import e3nn.o3 as eo

            mod = eo.FullyConnectedTensorProduct(irr, irr, irr)
            load_e3nn_weights(ours, mod)  # same check of layout; copy ours -> theirs below
            with torch.no_grad():
                mod.weight.copy_(ours.weight)
        f = torch.compile(mod) if compile_e3nn else mod
        args, params = (x1, x2), [x1, x2, mod.weight]

    fused = lib != "ours_torch"  # "ours_torch": euclidnet's pure-torch plan (fused kernels switched off)

    def fwd():
        execution.FUSED_ENABLED = fused
        try:
            with torch.no_grad():
                return f(*args)
        finally:
            execution.FUSED_ENABLED = True

    def fwdbwd():
        execution.FUSED_ENABLED = fused
        try:
            out = f(*args)
            return torch.autograd.grad(out.sum(), params)
        finally:
            execution.FUSED_ENABLED = True

    return fwd, fwdbwd, macs


def peak_memory(workload: str, lib: str, mode: str, scale: float) -> float:
    """Peak RSS increase (MB) of one fwd or fwdbwd call in a fresh subprocess."""
    code = (  # noqa: UP031
        "import sys, json, resource, torch; torch.set_num_threads(2); sys.path.insert(0, %r);"
        "import tensor_product as b; f, fb, _ = b.build(%r, %r, %r);"
        "import gc; gc.collect(); open('/proc/self/clear_refs', 'w').write('5');"
        "st = lambda k: int([l for l in open('/proc/self/status') if l.startswith(k)][0].split()[1]);"
        "base = st('VmRSS:');"
        "(f if %r == 'fwd' else fb)();"
        "print(json.dumps((st('VmHWM:') - base) / 1024))"
    ) % (sys.path[0], workload, lib, scale, mode)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="all", choices=["uvu", "uvw", "all"])
    ap.add_argument("--no-compile", action="store_true", help="skip e3nn under torch.compile")
    ap.add_argument("--no-e3nn", action="store_true")
    ap.add_argument("--no-torch-path", action="store_true", help="skip euclidnet's pure-torch plan")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--min-calls", type=int, default=7)
    ap.add_argument("--max-calls", type=int, default=50)
    ap.add_argument("--scale", type=float, default=1.0)
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    have_e3nn = False
    if not a.no_e3nn:
        try:
            import e3nn  # noqa: F401

            have_e3nn = True
        except ImportError:
            print("e3nn not installed: timing euclidnet only")
    print(f"threads=2 scale={a.scale} min_calls={a.min_calls} (WORKLOADS.md: scale 1, >= 7 calls)")
    peak = sgemm_gflops()
    print(f"sgemm 1024^3 yardstick: {peak:.1f} GFLOP/s")
    print(f"compiled kernels: {kernel_status()}")
    workloads = ["uvu", "uvw"] if a.workload == "all" else [a.workload]
    names = {"uvu": "tp_uvu_conv", "uvw": "tp_uvw_fc"}
    for wl in workloads:
        libs = {"ours": build(wl, "ours", a.scale)}
        if not a.no_torch_path:
            libs["ours_torch"] = build(wl, "ours_torch", a.scale)
        if have_e3nn:
            libs["e3nn"] = build(wl, "e3nn", a.scale)
            if not a.no_compile:
                t = time.perf_counter()
                libs["e3nn_compiled"] = build(wl, "e3nn", a.scale, compile_e3nn=True)
                libs["e3nn_compiled"][0]()
                libs["e3nn_compiled"][1]()
                print(f"  (compiled e3nn {wl} in {time.perf_counter() - t:.0f} s, untimed)")
        macs = libs["ours"][2]
        for mode, idx in (("fwd", 0), ("fwdbwd", 1)):
            med = time_interleaved({k: v[idx] for k, v in libs.items()}, a.min_calls, a.max_calls)
            flops = 2 * macs * (1 if mode == "fwd" else 3)
            line = f"{names[wl]}_{mode}: " + "  ".join(
                f"{k} {t * 1e3:.1f} ms ({flops / t / 1e9:.3g} GFLOP/s)" for k, t in med.items()
            )
            print(line)
            for k in med:
                if k != "ours":
                    print(f"    speedup vs {k}: {med[k] / med['ours']:.2f}x")
            sys.stdout.flush()
            if not a.no_memory:
                mems = {
                    k: peak_memory(wl, k if k.startswith("ours") else "e3nn", mode, a.scale)
                    for k in libs
                    if k != "e3nn_compiled"
                }
                print("    peak memory (MB over baseline): " + "  ".join(f"{k} {m:.0f}" for k, m in mems.items()))
        print(f"  useful multiply-adds per fwd: {macs / 1e6:.1f} M (fwdbwd counted as 3x)")


if __name__ == "__main__":
    main()
