"""Benchmarks workload 7 (high-L channelwise convolution) of /work/shared/bench/WORKLOADS.md.

Usage: python benchmarks/high_l.py [--ls 2,4,6,8] [--no-e3nn] [--e3nn-max-l L] [--min-calls N] [--max-calls N]
       [--scale S]

Workload 2 (``tp_uvu_conv``) with in1 = out = ``32x0e+32x1o+...+32xLy`` and edge SH ``l <= L``, every allowed
'uvu' path with per-edge weights, E = 20,000 edges, for L = 2, 4, 6, 8. Timed in one process, interleaved
(A, B, C, A, B, C, ...), 2 threads, float32, 2 untimed warm-ups, median of >= 7 calls (until >= 1 s per
library, at most 50):

* ``so2``: :class:`euclidnet.nn.SO2Convolution` with ``weights="cg"``: the *same function* as the CG
  convolution with the same per-edge CG weights (exact to round-off, tested). Its inputs are the edge
  vectors, not their harmonics: the edge-frame construction (Wigner D per edge) is inside the timed call,
  and fwdbwd differentiates w.r.t. (x1, edge vectors, w), including the frame.
* ``cg``: our CG route, :class:`euclidnet.tp.ChannelwiseTensorProduct` (fused C kernel) of (x1, SH, w).
* ``e3nn``: ``e3nn.o3.TensorProduct`` with the same instructions, of (x1, SH, w) (optional dependency).

The CG routes take precomputed harmonics (untimed) and fwdbwd differentiates w.r.t. (x1, SH, w), as in
workload 2, so the SO(2) route does strictly more work per call (frame + gradient through it).
GFLOP/s use WORKLOADS.md's useful multiply-adds of the CG product (nonzero CG entries x multiplicities x
batch, 2 flops each, fwdbwd counted as 3x) for every library, so they compare times, not implementations.
The scaling exponent of each route is the least-squares slope of log(median time) vs log(L).
"""

from __future__ import annotations

import argparse
import math
import sys

import torch
from _common import sgemm_gflops, time_interleaved  # noqa: E402  (sibling module of this script)

from euclidnet.nn import SO2Convolution
from euclidnet.o3 import Irreps
from euclidnet.o3.spherical_harmonics import spherical_harmonics
from euclidnet.tp import ChannelwiseTensorProduct


def irreps_for(L: int, mul: int = 32) -> str:
    return "+".join(f"{mul}x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(L + 1))


def build(L: int, lib: str, scale: float = 1.0):
    """Return (fwd, fwdbwd, useful multiply-adds); inputs built here (untimed), seeded."""
    g = torch.Generator().manual_seed(L)
    E = int(20000 * scale)
    irr = irreps_for(L)
    cg = ChannelwiseTensorProduct(irr, Irreps.spherical_harmonics(L), irr)
    x1 = torch.randn(E, cg.irreps_in1.dim, generator=g)
    r = torch.randn(E, 3, generator=g)
    x2 = spherical_harmonics(list(range(L + 1)), r, True, "component")
    w = torch.randn(E, cg.weight_numel, generator=g)
    macs = cg.descriptor.num_multiply_adds(E)
    if lib == "so2":
        mod = SO2Convolution(irr, irr, L, weights="cg")
        args = (x1.requires_grad_(True), r.requires_grad_(True), w.requires_grad_(True))
    elif lib == "cg":
        mod = cg
        args = (x1.requires_grad_(True), x2.requires_grad_(True), w.requires_grad_(True))
    else:
        import e3nn.o3 as eo

        mod = eo.TensorProduct(irr, str(Irreps.spherical_harmonics(L)), irr, cg.instructions,
                               shared_weights=False, internal_weights=False)  # fmt: skip
        args = (x1.requires_grad_(True), x2.requires_grad_(True), w.requires_grad_(True))

    def fwd():
        with torch.no_grad():
            return mod(*args)

    def fwdbwd():
        out = mod(*args)
        return torch.autograd.grad(out.sum(), list(args))

    return fwd, fwdbwd, macs


def slope(ls: list[int], ts: list[float]) -> float:
    x = [math.log(v) for v in ls]
    y = [math.log(v) for v in ts]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ls", default="2,4,6,8")
    ap.add_argument("--no-e3nn", action="store_true")
    ap.add_argument("--e3nn-max-l", type=int, default=99, help="skip e3nn above this L (it is slow)")
    ap.add_argument("--no-cg", action="store_true", help="skip our CG route")
    ap.add_argument("--min-calls", type=int, default=7)
    ap.add_argument("--max-calls", type=int, default=50)
    ap.add_argument("--scale", type=float, default=1.0)
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    ls = [int(v) for v in a.ls.split(",")]
    have_e3nn = False
    if not a.no_e3nn:
        try:
            import e3nn  # noqa: F401

            have_e3nn = True
        except ImportError:
            print("e3nn not installed: timing euclidnet only")
    print(f"threads=2 float32 E={int(20000 * a.scale)} min_calls={a.min_calls} (WORKLOADS.md: scale 1, >= 7 calls)")
    print(f"sgemm 1024^3 yardstick: {sgemm_gflops():.1f} GFLOP/s")
    table: dict = {}
    for L in ls:
        libs = {"so2": build(L, "so2", a.scale)}
        if not a.no_cg:
            libs["cg"] = build(L, "cg", a.scale)
        if have_e3nn and L <= a.e3nn_max_l:
            libs["e3nn"] = build(L, "e3nn", a.scale)
        macs = libs["so2"][2]
        for mode, idx in (("fwd", 0), ("fwdbwd", 1)):
            med = time_interleaved({k: v[idx] for k, v in libs.items()}, a.min_calls, a.max_calls)
            flops = 2 * macs * (1 if mode == "fwd" else 3)
            print(
                f"high_l L={L} {mode}: "
                + "  ".join(f"{k} {t * 1e3:.1f} ms ({flops / t / 1e9:.3g} GFLOP/s)" for k, t in med.items())
            )
            for k in med:
                if k != "so2":
                    print(f"    {k} / so2: {med[k] / med['so2']:.2f}x")
                table[(L, mode, k)] = med[k]
            sys.stdout.flush()
        print(f"  useful multiply-adds per fwd (CG count): {macs / 1e6:.1f} M")
    if len(ls) >= 2:
        for mode in ("fwd", "fwdbwd"):
            for k in ("so2", "cg", "e3nn"):
                pts = [(L, table[(L, mode, k)]) for L in ls if (L, mode, k) in table]
                if len(pts) >= 2:
                    print(f"scaling exponent {k} {mode} (L={pts[0][0]}..{pts[-1][0]}): "
                          f"{slope([p[0] for p in pts], [p[1] for p in pts]):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
