"""Fused CPU tensor products: ctypes bindings of :mod:`euclidnet.kernels._tp_source` and the autograd glue.

A weighted tensor product is a multilinear form ``F(x1, x2, w, out)`` (slots 0, 1, 2, 3), linear in each
slot. Its value ``out = T_3(x1, x2, w)`` and every derivative are the same kind of contraction: the gradient
w.r.t. slot ``s`` of ``<g, T_t(...)>`` is ``T_s(...)`` with ``g`` put in slot ``t``. :class:`TriLinear` is
one ``autograd.Function`` whose backward calls itself with permuted roles, so derivatives of any order run
through the same (exact) kernels.

Engines (which slot contraction is computed how):

* :class:`SampleBlockEngine`: every path weighted 'uvu' or 'uvw' with per-sample weights (convolutions,
  attention keys/values): the C kernel ``euclidnet_tp_blk`` computes any subset of the four contractions
  in one pass, vectorised over blocks of samples, optionally gathering ``x1`` and scattering the output by
  index and forming factored weights in the kernel (:class:`BlockTP`, behind ``weight_basis`` and
  :meth:`euclidnet.tp.TensorProduct.scatter`).
* :class:`UVUEngine`: every path weighted 'uvu' with shared weights: the C kernel ``euclidnet_tp_uvu``
  computes all four contractions directly.
* :class:`UVWEngine` (opt-in, :data:`ENABLE_UVW`): every path weighted 'uvw' with shared weights: the CG part
  ``z[k,u,v] = sum_ij C_ijk x1[u,i] x2[v,j]`` (and its two adjoints) is the C kernel ``euclidnet_tp_uvwcg``,
  the weight contraction is a GEMM (``torch.mm``, MKL/OpenBLAS). Samples are processed in blocks so the
  intermediate ``z`` is never materialised for the whole batch (memory O(block), recomputed in backward).
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import torch

from ._build import KernelBuildError, LazyLibrary
from ._tp_source import source

__all__ = [
    "SampleBlockEngine",
    "BlockTP",
    "TriLinear",
    "UVUEngine",
    "UVWEngine",
    "make_engine",
    "tp_kernel_available",
    "tp_kernel_error",
]

_MIN_SAMPLES_PER_THREAD = 32
# The 'uvw' engine is exact (tested) but not yet faster than the torch plan on CPU (tp_uvw_fc, 1 thread CPU
# time: 1.9x slower fwdbwd), so it is opt-in: set before building the module, or EUCLIDNET_TP_FUSED_UVW=1.
ENABLE_UVW = os.environ.get("EUCLIDNET_TP_FUSED_UVW", "").strip().lower() in ("1", "true", "yes", "on")
# Byte budget of the per-block intermediate of the 'uvw' engine (small blocks make the weight-gradient
# GEMMs slow: 8 MB was 4.6x slower than 256 MB on tp_uvw_fc; the torch plan saves ~900 MB there).
UVW_BLOCK_BYTES = 256 * 2**20


def _declare(lib: ctypes.CDLL) -> None:
    i64, i32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    for sfx in ("f32", "f64"):
        f = getattr(lib, f"euclidnet_tp_uvu_{sfx}")
        f.argtypes = [
            i32,
            ptr,
            ptr,
            ptr,
            ptr,
            ptr,
            i64,
            i32,
            i32,
            i32,
            i32,
            i64,
            i32,
            ptr,
            ptr,
            ptr,
            ptr,
            i32,
            ptr,
            i32,
            ptr,
            i32,
            i32,
            i32,
        ]
        f.restype = i32
        g = getattr(lib, f"euclidnet_tp_uvwcg_{sfx}")
        g.argtypes = [i32, ptr, ptr, ptr, ptr, i64, i32, i32, i32, ptr, ptr, ptr, i32, ptr, i32]
        g.restype = i32
        k = getattr(lib, f"euclidnet_tp_blk_{sfx}")
        k.argtypes = [i32] + [ptr] * 8 + [i64, i32, i32, i32, i32, i32, ptr, ptr, ptr, ptr, i32, i32, i32]
        k.argtypes += [ptr, ptr, ptr, i32, ptr, i32, i32]
        k.restype = i32


_LIBRARY = LazyLibrary("euclidnet_tp", source, _declare)


def _load() -> ctypes.CDLL | None:
    return _LIBRARY.get()


def tp_kernel_available() -> bool:
    """Whether the compiled tensor-product kernels can be used (builds them on first call)."""
    return _load() is not None


def tp_kernel_error() -> str | None:
    """Why the kernels are unavailable (``None`` if available or not yet tried)."""
    return _LIBRARY.error


def _sfx(dtype: torch.dtype) -> str:
    if dtype == torch.float32:
        return "f32"
    if dtype == torch.float64:
        return "f64"
    raise TypeError(f"tensor-product kernel: dtype must be float32 or float64, got {dtype}")


def _threads(n: int) -> int:
    return max(1, min(torch.get_num_threads(), n // _MIN_SAMPLES_PER_THREAD))


def _ints(values: list[int]) -> torch.Tensor:
    return torch.tensor(values if values else [0], dtype=torch.int32)


def _p(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _nonzero_entries(desc: Any, n: int) -> list[tuple[int, int, int, float]]:
    C = desc.cg(n, dtype=torch.float64, scaled=True)
    idx = (C != 0).nonzero().tolist()
    return [(i, j, k, float(C[i, j, k])) for i, j, k in idx]


def _blocks(irreps: Any) -> list[int]:
    out: list[int] = []
    for (mul, ir), s in zip(irreps, irreps.slices()):
        if mul * ir.dim > 0:
            out += [s.start, mul, ir.dim]
    return out


def _append_cg_table(desc: Any, n: int, pairs: list[int], ej: list[int], ec: list[float]) -> tuple[int, int]:
    """Append path ``n``'s nonzero CG entries grouped by ``(i, k)`` (the kernels' loop order): ``pairs`` gets
    ``[i, k, e0, e1]`` per group, ``ej``/``ec`` the group's ``j`` indices and coefficients ``[e0, e1)``.
    Returns the path's range ``[q0, q1)`` of pair groups."""
    groups: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for i, j, k, c in _nonzero_entries(desc, n):
        groups.setdefault((i, k), []).append((j, c))
    q0 = len(pairs) // 4
    for (i, k), ents in sorted(groups.items()):
        e0 = len(ej)
        for j, c in ents:
            ej.append(j)
            ec.append(c)
        pairs += [i, k, e0, len(ej)]
    return q0, len(pairs) // 4


class UVUEngine:
    """All paths weighted 'uvu': the four contractions of ``F(x1, x2, w, out)`` in one C kernel."""

    def __init__(self, desc: Any, live: list[int], shared_weights: bool) -> None:
        self.shared = shared_weights
        self.dim1, self.dim2, self.dimo = desc.irreps_in1.dim, desc.irreps_in2.dim, desc.irreps_out.dim
        self.wnum = desc.weight_numel
        s1, s2, so = desc.irreps_in1.slices(), desc.irreps_in2.slices(), desc.irreps_out.slices()
        pinfo, pairs, ej, ec = [], [], [], []
        maxbuf = maxpairs = 1
        for n in live:
            p = desc.paths[n]
            d1, d2, do = 2 * p.l1 + 1, 2 * p.l2 + 1, 2 * p.l_out + 1
            q0, q1 = _append_cg_table(desc, n, pairs, ej, ec)
            pinfo += [
                s1[p.i_in1].start,
                p.mul1,
                d1,
                s2[p.i_in2].start,
                p.mul2,
                d2,
                so[p.i_out].start,
                do,
                p.weight_offset,
                q0,
                q1,
            ]
            maxbuf = max(maxbuf, d1 * p.mul1)
            maxpairs = max(maxpairs, q1 - q0)
        self.npaths = len(live)
        self.pinfo, self.pairs, self.ej = _ints(pinfo), _ints(pairs), _ints(ej)
        ec64 = torch.tensor(ec if ec else [0.0], dtype=torch.float64)
        self.ec = {torch.float64: ec64, torch.float32: ec64.float()}
        b1, bo = _blocks(desc.irreps_in1), _blocks(desc.irreps_out)
        self.nb1, self.b1, self.nbo, self.bo = len(b1) // 3, _ints(b1), len(bo) // 3, _ints(bo)
        self.maxbuf, self.maxpairs = maxbuf, maxpairs

    def shape(self, slot: int, n: int) -> tuple[int, ...]:
        if slot == 2:
            return (self.wnum,) if self.shared else (n, self.wnum)
        return (n, (self.dim1, self.dim2, 0, self.dimo)[slot])

    def contract(self, target: int, ops: list[torch.Tensor | None]) -> torch.Tensor:
        ref = next(t for t in ops if t is not None)
        dtype = ref.dtype
        n = next(t.shape[0] for s, t in enumerate(ops) if t is not None and s != 2)
        ops = [None if t is None else t.contiguous() for t in ops]
        if target == 2 and self.shared:
            out = torch.empty(self.wnum, dtype=dtype)
        else:
            out = torch.empty(self.shape(target, n), dtype=dtype)
        if n == 0 or out.numel() == 0:
            return out.zero_()
        lib = _load()
        if lib is None:
            raise KernelBuildError(f"tensor-product kernel unavailable: {_LIBRARY.error}")
        fn = getattr(lib, f"euclidnet_tp_uvu_{_sfx(dtype)}")
        x1, x2, w, o = ops
        rc = fn(
            target,
            _p(x1),
            _p(x2),
            _p(w),
            _p(o),
            out.data_ptr(),
            n,
            self.dim1,
            self.dim2,
            self.wnum,
            self.dimo,
            0 if self.shared else self.wnum,
            self.npaths,
            self.pinfo.data_ptr(),
            self.pairs.data_ptr(),
            self.ej.data_ptr(),
            self.ec[dtype].data_ptr(),
            self.nb1,
            self.b1.data_ptr(),
            self.nbo,
            self.bo.data_ptr(),
            self.maxbuf,
            self.maxpairs,
            _threads(n),
        )
        if rc != 0:
            raise MemoryError("tensor-product kernel: out of memory for its workspace")
        return out


class UVWEngine:
    """All paths weighted 'uvw' with shared weights: C kernel for the CG part, ``torch.mm`` for the weights."""

    def __init__(self, desc: Any, live: list[int]) -> None:
        self.dim1, self.dim2, self.dimo = desc.irreps_in1.dim, desc.irreps_in2.dim, desc.irreps_out.dim
        self.wnum = desc.weight_numel
        s1, s2, so = desc.irreps_in1.slices(), desc.irreps_in2.slices(), desc.irreps_out.slices()
        pinfo, ent, ec = [], [], []
        zoff = 0
        self.paths = []  # (zoff, size, dout, m1m2, mul_out, weight slice, out block index)
        for n in live:
            p = desc.paths[n]
            d1, d2, do = 2 * p.l1 + 1, 2 * p.l2 + 1, 2 * p.l_out + 1
            e0 = len(ec)
            for i, j, k, c in _nonzero_entries(desc, n):
                ent += [i, j, k]
                ec.append(c)
            pinfo += [s1[p.i_in1].start, p.mul1, d1, s2[p.i_in2].start, p.mul2, d2, zoff, do, e0, len(ec)]
            size = do * p.mul1 * p.mul2
            ws = p.weight_slice
            self.paths.append((zoff, size, do, p.mul1 * p.mul2, p.mul_out, (ws.start, ws.stop), p.i_out))
            zoff += size
        self.zper = zoff
        self.npaths = len(live)
        self.pinfo, self.ent = _ints(pinfo), _ints(ent)
        ec64 = torch.tensor(ec if ec else [0.0], dtype=torch.float64)
        self.ec = {torch.float64: ec64, torch.float32: ec64.float()}
        b2 = _blocks(desc.irreps_in2)
        self.nb2, self.b2 = len(b2) // 3, _ints(b2)
        # output blocks: (start, mul, dim, [path indices])
        self.outs = []
        for io, ((mul, ir), s) in enumerate(zip(desc.irreps_out, so)):
            ps = [q for q, info in enumerate(self.paths) if info[6] == io]
            self.outs.append((s.start, mul, ir.dim, ps))

    def shape(self, slot: int, n: int) -> tuple[int, ...]:
        if slot == 2:
            return (self.wnum,)
        return (n, (self.dim1, self.dim2, 0, self.dimo)[slot])

    def _cg(self, target: int, x1: Any, x2: Any, z: Any, tgt: torch.Tensor, n: int, dtype: torch.dtype) -> None:
        lib = _load()
        if lib is None:
            raise KernelBuildError(f"tensor-product kernel unavailable: {_LIBRARY.error}")
        fn = getattr(lib, f"euclidnet_tp_uvwcg_{_sfx(dtype)}")
        rc = fn(
            target,
            _p(x1),
            _p(x2),
            _p(z),
            tgt.data_ptr(),
            n,
            self.dim1,
            self.dim2,
            self.npaths,
            self.pinfo.data_ptr(),
            self.ent.data_ptr(),
            self.ec[dtype].data_ptr(),
            self.nb2,
            self.b2.data_ptr(),
            _threads(n),
        )
        if rc != 0:
            raise MemoryError("tensor-product kernel: out of memory for its workspace")

    def _go_blocks(self, go: torch.Tensor) -> list[torch.Tensor | None]:
        """``go [B, dimo]`` -> per output block ``[B * dout, mul_out]`` (k-major rows)."""
        B = go.shape[0]
        res: list[torch.Tensor | None] = []
        for start, mul, dim, ps in self.outs:
            if not ps:
                res.append(None)
                continue
            blk = go[:, start : start + mul * dim].reshape(B, mul, dim).transpose(1, 2)
            res.append(blk.reshape(B * dim, mul))
        return res

    def contract(self, target: int, ops: list[torch.Tensor | None]) -> torch.Tensor:
        ref = next(t for t in ops if t is not None)
        dtype = ref.dtype
        n = next(t.shape[0] for s, t in enumerate(ops) if t is not None and s != 2)
        x1, x2, W, go = [None if t is None else t.contiguous() for t in ops]
        if target == 2:
            out = torch.zeros(self.wnum, dtype=dtype)
        else:
            out = torch.zeros(self.shape(target, n), dtype=dtype)
        if n == 0 or out.numel() == 0 or self.zper == 0:
            return out
        B = max(1, min(n, UVW_BLOCK_BYTES // (self.zper * ref.element_size())))
        zbuf = torch.empty(B * self.zper, dtype=dtype)
        for b0 in range(0, n, B):
            b1 = min(n, b0 + B)
            nb = b1 - b0
            zb = zbuf[: nb * self.zper]

            def zview(q: int, zb: torch.Tensor = zb, nb: int = nb) -> torch.Tensor:
                zoff, size, dout, m1m2 = self.paths[q][:4]
                return zb[zoff * nb : (zoff + size) * nb].view(nb * dout, m1m2)

            if target in (2, 3):
                self._cg(2, x1[b0:b1], x2[b0:b1], None, zb, nb, dtype)
            if target == 3:
                for start, mul, dim, ps in self.outs:
                    if not ps:
                        continue
                    acc = None
                    for q in ps:
                        _, _, dout, m1m2, mo, (w0, w1), _ = self.paths[q]
                        Wq = W[w0:w1].view(m1m2, mo)
                        acc = torch.mm(zview(q), Wq) if acc is None else torch.addmm(acc, zview(q), Wq)
                    out[b0:b1, start : start + mul * dim].view(nb, mul, dim).copy_(
                        acc.view(nb, dim, mul).transpose(1, 2)
                    )
            else:
                gob = self._go_blocks(go[b0:b1])
                if target == 2:
                    for q, (_, _, _dout, m1m2, mo, (w0, w1), io) in enumerate(self.paths):
                        gW = out[w0:w1].view(m1m2, mo)
                        gW.addmm_(zview(q).t(), gob[io])
                else:
                    for q, (_, _, _dout, m1m2, mo, (w0, w1), io) in enumerate(self.paths):
                        torch.mm(gob[io], W[w0:w1].view(m1m2, mo).t(), out=zview(q))
                    if target == 0:
                        self._cg(0, None, x2[b0:b1], zb, out[b0:b1], nb, dtype)
                    else:
                        self._cg(1, x1[b0:b1], None, zb, out[b0:b1], nb, dtype)
        return out


class SampleBlockEngine:
    """Weighted 'uvu' and 'uvw' paths (mixed freely) with per-sample weights: C kernel ``euclidnet_tp_blk``.

    Samples are taken 16 at a time and transposed so that every inner loop runs over the 16 samples of the
    block (vector code whatever the multiplicities and degrees). Per path and ``v``:
    ``t[(i,k)] = sum_j C_ijk x2[v,j]`` on the nonzero ``(i, k)`` pairs; 'uvw': ``A[u,k] = sum_i t x1[u,i]``,
    ``out[w,k] += sum_u W[u,v,w] A[u,k]``; 'uvu': ``out[u,k] += W[u,v] sum_i t x1[u,i]``. The kernel computes
    any subset of the four contractions in one pass (:meth:`contract_many`), so a first-order backward reads
    and transposes its operands once. Nothing of size ``[n, mul1, mul2, ...]`` is materialised.
    """

    def __init__(self, desc: Any, live: list[int]) -> None:
        self.dim1, self.dim2, self.dimo = desc.irreps_in1.dim, desc.irreps_in2.dim, desc.irreps_out.dim
        self.wnum = desc.weight_numel
        s1, s2, so = desc.irreps_in1.slices(), desc.irreps_in2.slices(), desc.irreps_out.slices()
        pinfo, pairs, ej, ec = [], [], [], []
        maxa = maxpairs = maxd = 1
        for n in live:
            p = desc.paths[n]
            d1, d2, do = 2 * p.l1 + 1, 2 * p.l2 + 1, 2 * p.l_out + 1
            q0, q1 = _append_cg_table(desc, n, pairs, ej, ec)
            uvw = p.mode == "uvw"
            pinfo += [int(uvw), s1[p.i_in1].start, p.mul1, d1, s2[p.i_in2].start, p.mul2, d2]
            pinfo += [so[p.i_out].start, p.mul_out, do, p.weight_offset, q0, q1]
            if uvw:
                maxa = max(maxa, p.mul1 * do)
            maxpairs, maxd = max(maxpairs, q1 - q0), max(maxd, d1, do)
        self.npaths = len(live)
        self.pinfo, self.pairs, self.ej = _ints(pinfo), _ints(pairs), _ints(ej)
        ec64 = torch.tensor(ec if ec else [0.0], dtype=torch.float64)
        self.ec = {torch.float64: ec64, torch.float32: ec64.float()}
        self.maxa, self.maxpairs, self.maxd = maxa, maxpairs, maxd

    def shape(self, slot: int, n: int) -> tuple[int, ...]:
        return (n, (self.dim1, self.dim2, self.wnum, self.dimo)[slot])

    def contract_many(
        self,
        ops: list[torch.Tensor | None],
        targets: tuple[int, ...],
        idx1: torch.Tensor | None = None,
        idxo: torch.Tensor | None = None,
        scatter_rows: int | None = None,
        basis: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """The contractions ``T_t`` for ``t`` in ``targets`` (slots: 0 x1, 1 x2, 2 w, 3 out), one pass.

        ``ops = [x1, x2, w, o]``: the operands the requested contractions read (``o`` is the cotangent of
        the output for targets 0-2); the slots being computed may be ``None``. Indexed form (message passing,
        ``n = len(idx1)`` samples): sample ``z`` reads row ``idx1[z]`` of ``x1`` and row ``idxo[z]`` of ``o``
        (gathers never materialised); with ``scatter_rows`` the product is summed into ``out[idxo[z]]``
        (``[scatter_rows, dim_out]``), each row in increasing ``z``, whatever the thread count.

        Factored weights: with ``basis [K, weight_numel]``, slot 2 holds coefficients ``[n, K]`` and the
        weights of sample ``z`` are ``w[z] @ basis``, formed block by block inside the kernel (e.g. the radial
        MLP's hidden features and output layer). Target 2 still yields the per-sample weight gradient
        ``[n, weight_numel]`` (the caller contracts it with the factors: two GEMMs).
        """
        ref = next(t for t in ops if t is not None)
        dtype = ref.dtype
        n = idx1.shape[0] if idx1 is not None else ref.shape[0]
        ops = [None if t is None else t.contiguous() for t in ops]
        scatter = scatter_rows is not None
        K = 0 if basis is None else basis.shape[0]
        if basis is not None:
            basis = basis.to(dtype).contiguous()
        outs = []
        for t in targets:
            if t == 3 and scatter:
                outs.append(torch.zeros(scatter_rows, self.dimo, dtype=dtype))
            else:
                outs.append(torch.empty(self.shape(t, n), dtype=dtype))
        if n == 0 or self.npaths == 0:
            return [t.zero_() for t in outs]
        lib = _load()
        if lib is None:
            raise KernelBuildError(f"tensor-product kernel unavailable: {_LIBRARY.error}")
        fn = getattr(lib, f"euclidnet_tp_blk_{_sfx(dtype)}")
        tgt: list[torch.Tensor | None] = [None] * 4
        for t, o in zip(targets, outs):
            tgt[t] = o
        idx = [None if t is None else t.to(torch.int64).contiguous() for t in (idx1, idxo)]
        # scattering: process the samples sorted by output row (stable), so each row's sum runs in sample
        # order and threads split between rows (deterministic, no write conflicts)
        order = torch.argsort(idx[1], stable=True) if scatter else None
        x1, x2, w, o = ops
        rc = fn(
            sum(1 << t for t in targets),
            _p(x1),
            _p(x2),
            _p(w),
            _p(o),
            *[_p(t) for t in tgt],
            n,
            self.dim1,
            self.dim2,
            self.wnum,
            self.dimo,
            self.npaths,
            self.pinfo.data_ptr(),
            self.pairs.data_ptr(),
            self.ej.data_ptr(),
            self.ec[dtype].data_ptr(),
            self.maxa,
            self.maxpairs,
            self.maxd,
            _p(order),
            _p(idx[0]),
            _p(idx[1]),
            int(scatter),
            _p(basis),
            K,
            _threads(n),
        )
        if rc != 0:
            raise MemoryError("tensor-product kernel: out of memory for its workspace")
        return outs

    def contract(self, target: int, ops: list[torch.Tensor | None]) -> torch.Tensor:
        return self.contract_many(ops, (target,))[0]


def make_engine(desc: Any, shared_weights: bool) -> SampleBlockEngine | UVUEngine | UVWEngine | None:
    """An engine for ``desc`` if all its live paths are supported (per-sample weights: weighted 'uvu' and
    'uvw'; shared weights: weighted 'uvu', or weighted 'uvw' when :data:`ENABLE_UVW`), else ``None``."""
    live = [n for n, p in enumerate(desc.paths) if not p.is_empty]
    if not live:
        return None
    modes = {(desc.paths[n].mode, desc.paths[n].has_weight) for n in live}
    if not shared_weights and modes <= {("uvu", True), ("uvw", True)}:
        return SampleBlockEngine(desc, live)
    if modes == {("uvu", True)}:
        return UVUEngine(desc, live, shared_weights)
    if modes == {("uvw", True)} and shared_weights and ENABLE_UVW:
        return UVWEngine(desc, live)
    return None


class TriLinear(torch.autograd.Function):
    """``T_target`` of an engine's multilinear form; ``a, b, c`` fill the other slots in order (x1, x2, w,
    out). Its backward is itself with the roles permuted, so it is differentiable to any order."""

    @staticmethod
    def forward(ctx: Any, engine: Any, target: int, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        ctx.engine, ctx.target = engine, target
        ctx.save_for_backward(a, b, c)
        ops: list[torch.Tensor | None] = [a, b, c]
        ops.insert(target, None)
        with torch.no_grad():
            return engine.contract(target, ops)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        ops: list[torch.Tensor | None] = list(ctx.saved_tensors)
        ops.insert(ctx.target, g)
        engine = ctx.engine
        if (
            ctx.target == 3
            and not torch.is_grad_enabled()  # first-order backward: the gradients need no graph
            and isinstance(engine, SampleBlockEngine)
        ):
            # All gradients in one pass (same contractions as TriLinear with targets 0, 1, 2).
            wanted = tuple(s for s in range(3) if ctx.needs_input_grad[2 + s])
            grads = iter(engine.contract_many(ops, wanted))
            return (None, None, *[next(grads) if s in wanted else None for s in range(3)])
        grads: list[torch.Tensor | None] = []
        slots = [s for s in range(4) if s != ctx.target]
        for idx, s in enumerate(slots):
            if ctx.needs_input_grad[2 + idx]:
                others = [ops[r] for r in range(4) if r != s]
                grads.append(TriLinear.apply(ctx.engine, s, *others))
            else:
                grads.append(None)
        return (None, None, *grads)


class BlockTP(torch.autograd.Function):
    """A :class:`SampleBlockEngine` product with optional indexing and factored weights, one kernel pass.

    ``out = sum over z with dst[z] = i of TP(x1[src[z]], x2[z], W[z])`` (``src``/``dst`` given; ``[num_out,
    dim_out]``) or ``TP(x1[z], x2[z], W[z])`` (``[n, dim_out]``), with ``W = w`` or, given ``basis``,
    ``W = w @ basis``. Neither the gathered ``x1``, nor the messages, nor ``W`` is materialised forward.
    First-order backward: one pass for all per-sample gradients (the output cotangent read at ``dst``, ``W``
    formed again in the kernel), then ``x1``'s gradient summed over ``src`` and the weight gradient
    contracted with the factors (two GEMMs). Under ``create_graph`` the
    backward is built from :class:`TriLinear` and differentiable torch ops, so every order is exact.
    """

    @staticmethod
    def forward(
        ctx: Any,
        engine: SampleBlockEngine,
        x1: torch.Tensor,
        x2: torch.Tensor,
        w: torch.Tensor,
        basis: torch.Tensor | None,
        src: torch.Tensor | None,
        dst: torch.Tensor | None,
        num_out: int | None,
    ) -> torch.Tensor:
        ctx.engine = engine
        ctx.indexed = src is not None
        ctx.factored = basis is not None
        ctx.save_for_backward(x1, x2, w, basis, src, dst)
        with torch.no_grad():
            return engine.contract_many(
                [x1, x2, w, None], (3,), idx1=src, idxo=dst, scatter_rows=num_out, basis=basis
            )[0]

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        x1, x2, w, basis, src, dst = ctx.saved_tensors
        engine = ctx.engine
        need = ctx.needs_input_grad[1:5]
        none = (None, None, None)
        if not any(need):
            return (None,) * 8
        if torch.is_grad_enabled():
            W = w @ basis if ctx.factored else w
            ge, x1e = (g[dst], x1[src]) if ctx.indexed else (g, x1)
            g1 = TriLinear.apply(engine, 0, x2, W, ge) if need[0] else None
            g2 = TriLinear.apply(engine, 1, x1e, W, ge) if need[1] else None
            gW = TriLinear.apply(engine, 2, x1e, x2, ge) if need[2] or need[3] else None
            if g1 is not None and ctx.indexed:
                g1 = torch.zeros_like(x1).index_add(0, src, g1)
            gw, gb = gW, None
            if ctx.factored:
                gw = gW @ basis.t() if need[2] else None
                gb = w.t() @ gW if need[3] else None
            return (None, g1, g2, gw, gb, *none)
        wanted = tuple(s for s in range(3) if need[s] or (s == 2 and need[3]))
        res = engine.contract_many(
            [x1, x2, w, g], wanted, idx1=src, idxo=dst, basis=basis if ctx.factored else None
        )
        grads: dict[int, torch.Tensor | None] = dict(zip(wanted, res))
        if 0 in grads and ctx.indexed:
            grads[0] = torch.zeros_like(x1).index_add_(0, src, grads[0])
        gb = None
        if ctx.factored and 2 in grads:
            gW = grads[2]  # per-sample weight gradient [n, weight_numel]: GEMMs with the factors
            gb = w.t() @ gW if need[3] else None
            grads[2] = gW @ basis.t() if need[2] else None
        return (None, grads.get(0), grads.get(1), grads.get(2), gb, *none)
