"""Execution of a :class:`~euclidnet.tp.descriptor.TensorProductDescriptor`.

The plan is made once, at construction; ``forward`` is a fixed, branch-free sequence of tensor ops on
static shapes (so ``torch.compile(fullgraph=True)`` and ``torch.export`` trace it as is). Three kernels:

* ``uvu`` paths with weights, fused per output block. For a path, ``out[z, u, k] = sum_(v,i) X[z, u, (v,i)]
  M[z, (v,i), k]`` with ``X = w[z,u,v] x1[z,u,i]`` and ``M = sum_j C[i,j,k] x2[z,v,j]``. ``M`` of *every*
  such path is one GEMM of ``x2`` with a constant block matrix of scaled CG entries; the ``X`` of all paths
  into an output block are concatenated, so each output block is a single batched matmul
  ``[Z, mul, K] x [Z, K, 2l+1]`` (the NequIP convolution: 3 bmm for 11 paths).
* ``uvw`` paths: ``T[z, k, (u,v)] = sum_ij C[i,j,k] x1[z,u,i] x2[z,v,j]`` (a small GEMM with the CG block
  then a batched outer product, a broadcast product when ``l2 = 0``), then one large GEMM
  ``[Z (2l+1), mul1 mul2] x [mul1 mul2, mul_out]`` with the weights, accumulated in place (``addmm``) over
  the paths into the same output block. With shared weights a path may instead meet the weights with ``x1``
  or ``x2`` first (the GEMM then has ``2 l1 + 1`` or ``2 l2 + 1`` rows per sample instead of
  ``2 l_out + 1``, and no ``[Z, mul1 mul2]`` outer product is formed): chosen per path at construction by
  :meth:`TensorProductExecutor._uvw_order`. Per-sample weights use ``bmm``/``baddbmm``.
* every other mode (and unweighted ``uvu``): one ``einsum`` per path with the scaled CG block.

Fused CPU path: when every live path is a weighted 'uvu' (per-sample or shared weights), a weighted 'uvw'
with per-sample weights (keys/values of attention, TFN convolutions) or (opt-in,
``euclidnet.kernels._tp.ENABLE_UVW``, not yet faster) a weighted 'uvw' with shared weights, ``forward``
calls the compiled kernels of :mod:`euclidnet.kernels._tp` (an ``autograd.Function`` whose derivatives
of every order run the same kernels), provided
:func:`fused_usable` holds: CPU float32/float64 plain tensors, not under ``torch.compile``/``torch.export``/
``torch.jit``/``torch.func``, ``EUCLIDNET_DISABLE_KERNELS`` unset and the kernels built. Otherwise the torch
plan below runs (the two agree to round-off; ``tests/test_tp_kernels.py``).

Chunked shared-weight 'uvw' path: when every live path is a 'uvw' with shared weights (e.g.
``FullyConnectedTensorProduct``) and the opt-in kernel above is off, ``forward`` runs
:class:`~euclidnet.tp._uvw_shared.UVWShared` instead, provided :func:`chunked_uvw_usable` holds (the
conditions of :func:`fused_usable` but for the compiled kernels, since it is pure torch; CPU autocast off).
It is the weights-first or outer-product-first sum of each path chosen like the torch plan's below
(re-derived for every gradient, the first-order backward computing all three gradients in one pass), run
over chunks of samples on worker threads so that the per-path ``[Z, 2l + 1, mul1 mul2]`` intermediates are
never formed for the whole batch (memory and traffic), with a backward that is itself differentiable
(second derivatives run the same code). It agrees with the torch plan to round-off
(``tests/test_uvw_shared.py``).

All constants (CG blocks times the path coefficients) live in one float64 buffer that is cast once per call
to the input dtype; it is rebuilt in float64 whenever the module is moved (``.to``, ``.float()``...), so
float64 results keep full precision whatever was done to the module before.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import kernels as _kernels
from ..kernels import _tp as _tpk
from . import _uvw_shared as _uvw
from .descriptor import Path, TensorProductDescriptor

__all__ = ["FUSED_ENABLED", "TensorProductExecutor", "chunked_uvw_usable", "fused_usable"]

#: Master switch of the fused CPU kernels (:mod:`euclidnet.kernels._tp`) and of the chunked shared-weight 'uvw'
#: code (:mod:`euclidnet.tp._uvw_shared`); ``EUCLIDNET_DISABLE_KERNELS=1`` disables the kernels at run time too.
FUSED_ENABLED = True


def _eager_cpu(*tensors: torch.Tensor) -> bool:
    """Plain CPU float32/float64 tensors of one dtype, in eager mode (not traced, compiled or transformed)."""
    dtype = tensors[0].dtype
    if dtype not in (torch.float32, torch.float64):
        return False
    for t in tensors:
        if t.device.type != "cpu" or t.dtype != dtype or t.layout != torch.strided:
            return False
        if type(t) is not torch.Tensor and not isinstance(t, torch.nn.Parameter):
            return False  # fake/functional tensors, user subclasses: generic path
    if torch.compiler.is_compiling() or torch.jit.is_scripting() or torch.jit.is_tracing():
        return False
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return not (active is not None and active())


def fused_usable(*tensors: torch.Tensor) -> bool:
    """Whether the fused C kernels may run on these tensors (else the pure-torch plan is used)."""
    if not FUSED_ENABLED or not _eager_cpu(*tensors):
        return False
    if _kernels.kernels_disabled():
        return False
    return _tpk.tp_kernel_available()


def chunked_uvw_usable(*tensors: torch.Tensor) -> bool:
    """Whether the chunked shared-weight 'uvw' code (:mod:`euclidnet.tp._uvw_shared`) may run on these tensors:
    :data:`FUSED_ENABLED` and plain CPU float32/float64 tensors in eager mode, CPU autocast off (the torch plan
    gives autocast's dtypes). It is pure torch, so neither ``EUCLIDNET_DISABLE_KERNELS`` nor the compiled
    kernels matter."""
    return FUSED_ENABLED and _eager_cpu(*tensors) and not torch.is_autocast_enabled("cpu")


class TensorProductExecutor(torch.nn.Module):
    """Runs a tensor product descriptor on flattened inputs.

    ``forward(x1 [Z, dim1], x2 [Z, dim2], weight)`` -> ``[Z, dim_out]``, ``weight`` being ``[weight_numel]``
    (``shared_weights=True``) or ``[Z, weight_numel]``. No input checking here: see
    :class:`~euclidnet.tp.tensor_product.TensorProduct`.
    """

    def __init__(self, descriptor: TensorProductDescriptor, shared_weights: bool = True) -> None:
        super().__init__()
        self.descriptor = descriptor
        self.shared_weights = bool(shared_weights)
        d = descriptor
        self._slices1 = [(s.start, s.stop) for s in d.irreps_in1.slices()]
        self._slices2 = [(s.start, s.stop) for s in d.irreps_in2.slices()]
        self._dim_out = d.irreps_out.dim
        self._out_blocks = [(mul, ir.dim) for mul, ir in d.irreps_out]

        live = [(n, p) for n, p in enumerate(d.paths) if not p.is_empty]
        # Plan: per output block, a uvu group, a list of uvw paths, and a list of generic paths.
        self._uvw: dict[int, list[int]] = {}
        self._generic: dict[int, list[int]] = {}
        for n, p in live:
            if p.mode == "uvu" and p.has_weight:
                continue
            if p.mode == "uvw":
                self._uvw.setdefault(p.i_out, []).append(n)
            else:
                self._generic.setdefault(p.i_out, []).append(n)

        # uvu bundles: paths with the same mul1 share one bmm (see _plan_uvu_bundles).
        self._bundles = self._plan_uvu_bundles([n for n, p in live if p.mode == "uvu" and p.has_weight])
        offset = 0
        for b in self._bundles:
            b["B_off"] = offset
            offset += d.irreps_in2.dim * b["rows"] * b["R"]
        self._uvu_B_numel = offset
        self._cg_offsets: dict[int, int] = {}
        for n, p in live:
            if p.mode == "uvu" and p.has_weight:
                continue
            self._cg_offsets[n] = offset
            offset += (2 * p.l1 + 1) * (2 * p.l2 + 1) * (2 * p.l_out + 1)
        self._const_numel = offset
        # Contraction order of each 'uvw' path (shared weights only; see _uvw_order).
        self._order = {n: self._uvw_order(p) for n, p in live if p.mode == "uvw" and self.shared_weights}
        self._triu: dict[int, str] = {}
        for _, p in live:
            if p.mode in ("uvu<v", "u<vw") and p.mul1 not in self._triu:
                name = f"_triu_{p.mul1}"
                self.register_buffer(name, torch.triu_indices(p.mul1, p.mul1, 1), persistent=False)
                self._triu[p.mul1] = name
        self.register_buffer("_consts", self._build_consts(), persistent=False)
        # Fused C kernels (CPU) when every live path is supported; see fused_usable for when they run.
        self._fused = _tpk.make_engine(descriptor, self.shared_weights)
        # Chunked shared-weight 'uvw' contractions (CPU eager); see chunked_uvw_usable for when they run.
        self._uvw_shared = _uvw.UVWSharedPlan(descriptor) if _uvw.supports(descriptor, self.shared_weights) else None

    @staticmethod
    def _uvw_order(p: Path) -> str:
        """Which operand a shared-weight 'uvw' path contracts the weights with first.

        ``out[k, w] = sum C_ijk x1[u, i] x2[v, j] W[u, v, w]`` can be summed in three orders; the weight
        contraction (a GEMM, the dominant cost) then runs over ``2l + 1`` rows per sample of the operand it
        meets first:

        * ``"out"``: ``T[k, u, v] = sum_ij C x1 x2`` then ``T @ W``: GEMM
          ``[Z dout, mul1 mul2] x [mul1 mul2, mul_out]``;
        * ``"x1"``: ``Y[i, v, w] = sum_u x1[u, i] W[u, v, w]`` (GEMM ``[Z d1, mul1] x [mul1, mul2 mul_out]``), then
          ``out[k, w] = sum_(i, v) P[k, i, v] Y[i, v, w]`` with ``P[k, i, v] = sum_j C_ijk x2[v, j]`` (one small bmm);
        * ``"x2"``: the same with the roles of ``x1`` and ``x2`` exchanged.

        All three are the same sum (exact up to round-off). The choice minimises multiply-adds plus twice the
        size of the per-sample intermediate (written once, read once), e.g. a scalar path into a single output
        (an attention dot product) never forms the ``[Z, mul1 mul2]`` outer product.
        """
        d1, d2, do = 2 * p.l1 + 1, 2 * p.l2 + 1, 2 * p.l_out + 1
        m1, m2, mo = p.mul1, p.mul2, p.mul_out
        cost = {
            "out": m1 * d1 * do * d2 + do * m1 * d2 * m2 + do * m1 * m2 * mo + 2 * do * m1 * m2,
            "x1": d1 * m1 * m2 * mo + m2 * d2 * do * d1 + do * d1 * m2 * mo + 2 * d1 * m2 * mo,
            "x2": d2 * m2 * m1 * mo + m1 * d1 * do * d2 + do * d2 * m1 * mo + 2 * d2 * m1 * mo,
        }
        return min(("out", "x1", "x2"), key=lambda k: cost[k])

    def _plan_uvu_bundles(self, ns: list[int]) -> list[dict[str, Any]]:
        """Group weighted 'uvu' paths into bmm bundles.

        A bundle computes ``out_t[z, (o, k), u] = sum_r Mt[z, (o, k), r] Xt[z, r, u]`` for all its paths at
        once, ``r = (path, v, i)``; ``Mt`` is block-sparse (a path only feeds its own output rows). On CPU one
        bmm over ``Z`` small matrices costs mostly per-matrix overhead, so all paths with the same ``mul1``
        share one bmm, unless the zero padding would exceed 4x the useful work: then one bmm per output block.
        """
        d = self.descriptor
        by_mul: dict[int, list[int]] = {}
        for n in ns:
            by_mul.setdefault(d.paths[n].mul1, []).append(n)
        candidates: list[list[int]] = []
        for group in by_mul.values():
            outs = sorted({d.paths[n].i_out for n in group})
            rows = sum(2 * d.irreps_out[o].ir.l + 1 for o in outs)
            R = sum(d.paths[n].mul2 * (2 * d.paths[n].l1 + 1) for n in group)
            useful = sum((2 * d.paths[n].l_out + 1) * d.paths[n].mul2 * (2 * d.paths[n].l1 + 1) for n in group)
            if rows * R <= 4 * useful:
                candidates.append(group)
            else:
                for o in outs:
                    candidates.append([n for n in group if d.paths[n].i_out == o])
        bundles = []
        for group in candidates:
            outs = sorted({d.paths[n].i_out for n in group})
            row_of = {}
            rows = 0
            for o in outs:
                row_of[o] = rows
                rows += 2 * d.irreps_out[o].ir.l + 1
            r_offsets = []
            R = 0
            for n in group:
                r_offsets.append(R)
                R += d.paths[n].mul2 * (2 * d.paths[n].l1 + 1)
            bundles.append(
                {
                    "paths": group,
                    "outs": outs,
                    "row_of": row_of,
                    "rows": rows,
                    "R": R,
                    "r_offsets": r_offsets,
                    "mul": d.paths[group[0]].mul1,
                }
            )
        return bundles

    # -- constants -----------------------------------------------------------------------------------

    def _build_consts(self) -> torch.Tensor:
        d = self.descriptor
        consts = torch.zeros(self._const_numel, dtype=torch.float64)
        dim2 = d.irreps_in2.dim
        for b in self._bundles:
            B = torch.zeros(dim2, b["rows"], b["R"], dtype=torch.float64)
            for n, rp in zip(b["paths"], b["r_offsets"]):
                p = d.paths[n]
                C = d.cg(n, scaled=True)  # [d1, d2, dout]
                d1, d2, dout = C.shape
                s2 = self._slices2[p.i_in2][0]
                ro = b["row_of"][p.i_out]
                for v in range(p.mul2):
                    # B[s2 + v d2 + j, ro + k, rp + v d1 + i] = C[i, j, k]
                    B[s2 + v * d2 : s2 + (v + 1) * d2, ro : ro + dout, rp + v * d1 : rp + (v + 1) * d1] = C.permute(
                        1, 2, 0
                    )
            consts[b["B_off"] : b["B_off"] + B.numel()] = B.reshape(-1)
        for n, off in self._cg_offsets.items():
            p = d.paths[n]
            C = d.cg(n, scaled=True)
            if p.mode == "uvw" and self._order.get(n) == "x1":
                C = C.permute(1, 2, 0)  # [j, k, i]
            elif p.mode == "uvw":
                C = C.permute(0, 2, 1)  # [i, k, j]
            consts[off : off + C.numel()] = C.reshape(-1)
        return consts

    def _apply(self, fn: Any, recurse: bool = True) -> TensorProductExecutor:
        super()._apply(fn, recurse)
        # Keep the master constants exact (float64) on whatever device the module went to.
        self._consts = self._build_consts().to(self._consts.device)
        return self

    # -- forward -------------------------------------------------------------------------------------

    def _block1(self, x1: torch.Tensor, p: Path) -> torch.Tensor:
        a, b = self._slices1[p.i_in1]
        return x1[:, a:b].reshape(x1.shape[0], p.mul1, 2 * p.l1 + 1)

    def _block2(self, x2: torch.Tensor, p: Path) -> torch.Tensor:
        a, b = self._slices2[p.i_in2]
        return x2[:, a:b].reshape(x2.shape[0], p.mul2, 2 * p.l2 + 1)

    def _weight(self, w: torch.Tensor, p: Path) -> torch.Tensor:
        s = p.weight_slice
        if self.shared_weights:
            return w[s.start : s.stop].reshape(p.weight_shape)
        return w[:, s.start : s.stop].reshape((w.shape[0],) + p.weight_shape)

    def _cg(self, consts: torch.Tensor, n: int) -> torch.Tensor:
        p = self.descriptor.paths[n]
        off = self._cg_offsets[n]
        d1, d2, d3 = 2 * p.l1 + 1, 2 * p.l2 + 1, 2 * p.l_out + 1
        C = consts[off : off + d1 * d2 * d3]
        if p.mode == "uvw" and self._order.get(n) == "x1":
            return C.reshape(d2, d3 * d1)
        if p.mode == "uvw":
            return C.reshape(d1, d3 * d2)
        return C.reshape(d1, d2, d3)

    def _generic_path(
        self, consts: torch.Tensor, n: int, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor
    ) -> torch.Tensor:
        p = self.descriptor.paths[n]
        Z = x1.shape[0]
        C = self._cg(consts, n)
        a = self._block1(x1, p)
        b = self._block2(x2, p)
        z = "" if self.shared_weights else "z"
        mode = p.mode
        if mode in ("uvu<v", "u<vw"):
            tri = getattr(self, self._triu[p.mul1])
            a = a[:, tri[0]]
            b = b[:, tri[1]]
        if p.has_weight:
            W = self._weight(w, p)
            eq = {
                "uvu": f"zui,zvj,ijk,{z}uv->zuk",
                "uvv": f"zui,zvj,ijk,{z}uv->zvk",
                "uuw": f"zui,zuj,ijk,{z}uw->zwk",
                "uuu": f"zui,zuj,ijk,{z}u->zuk",
                "uvuv": f"zui,zvj,ijk,{z}uv->zuvk",
                "uvu<v": f"zqi,zqj,ijk,{z}q->zqk",
                "u<vw": f"zqi,zqj,ijk,{z}qw->zwk",
            }[mode]
            out = torch.einsum(eq, a, b, C, W)
        else:
            eq = {
                "uvu": "zui,zvj,ijk->zuk",
                "uvv": "zui,zvj,ijk->zvk",
                "uuw": "zui,zuj,ijk->zk",
                "uuu": "zui,zuj,ijk->zuk",
                "uvuv": "zui,zvj,ijk->zuvk",
                "uvu<v": "zqi,zqj,ijk->zqk",
            }[mode]
            out = torch.einsum(eq, a, b, C)
        return out.reshape(Z, p.mul_out * (2 * p.l_out + 1))

    def _uvw_first(
        self,
        order: str,
        p: Path,
        C: torch.Tensor,
        x1: torch.Tensor,
        x2: torch.Tensor,
        weight: torch.Tensor,
        acc: torch.Tensor | None,
    ) -> torch.Tensor:
        """A shared-weight 'uvw' path summed weights-first (``order`` "x1" or "x2", see :meth:`_uvw_order`).

        Returns ``acc + contribution`` as ``[Z dout, mul_out]`` (rows ``(z, k)``), like the "out" order.
        """
        Z = x1.shape[0]
        d1, d2, dout = 2 * p.l1 + 1, 2 * p.l2 + 1, 2 * p.l_out + 1
        W = self._weight(weight, p)  # [mul1, mul2, mul_out]
        if order == "x1":
            first, other, df, do_, mf, mo_ = self._block1(x1, p), self._block2(x2, p), d1, d2, p.mul1, p.mul2
            Wf = W.reshape(p.mul1, p.mul2 * p.mul_out)
        else:
            first, other, df, do_, mf, mo_ = self._block2(x2, p), self._block1(x1, p), d2, d1, p.mul2, p.mul1
            Wf = W.transpose(0, 1).reshape(p.mul2, p.mul1 * p.mul_out)
        # Y[z, f, o, w] = sum_m first[z, m, f] W[m, o, w]   (f: the first operand's 2l+1, o: the other's mul)
        Y = (first.transpose(1, 2).reshape(Z * df, mf) @ Wf).reshape(Z, df * mo_, p.mul_out)
        # P[z, k, f, o] = sum_g C[f, g, k] other[z, o, g]   (C given as [g, (k, f)])
        P = (other.reshape(Z * mo_, do_) @ C).reshape(Z, mo_, dout, df).permute(0, 2, 3, 1)
        P = P.reshape(Z, dout, df * mo_)
        if acc is None:
            return torch.bmm(P, Y).reshape(Z * dout, p.mul_out)
        return torch.baddbmm(acc.reshape(Z, dout, p.mul_out), P, Y).reshape(Z * dout, p.mul_out)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``x1 [Z, dim1]``, ``x2 [Z, dim2]``, ``weight [numel]`` or ``[Z, numel]`` -> ``[Z, dim_out]``."""
        if self._fused is not None and fused_usable(x1, x2, weight):
            return _tpk.TriLinear.apply(self._fused, 3, x1, x2, weight)
        if self._uvw_shared is not None and chunked_uvw_usable(x1, x2, weight):
            return _uvw.UVWShared.apply(self._uvw_shared, 3, x1, x2, weight)
        d = self.descriptor
        Z = x1.shape[0]
        consts = self._consts.to(x1.dtype)
        contributions: dict[int, list[torch.Tensor]] = {}

        # uvu bundles: Mt = x2 @ B (one GEMM), Xt = w * x1 (transposed, concatenated), one bmm.
        for b in self._bundles:
            rows, R, mul = b["rows"], b["R"], b["mul"]
            B = consts[b["B_off"] : b["B_off"] + d.irreps_in2.dim * rows * R].reshape(d.irreps_in2.dim, rows * R)
            Mt = (x2 @ B).reshape(Z, rows, R)
            xs = []
            for n in b["paths"]:
                p = d.paths[n]
                a = self._block1(x1, p)  # [Z, u, i]
                W = self._weight(weight, p)  # [(Z,) u, v]
                if self.shared_weights:
                    W = W.unsqueeze(0)
                if p.mul2 == 1:
                    xs.append(a * W)
                else:
                    xs.append((W.unsqueeze(3) * a.unsqueeze(2)).reshape(Z, mul, p.mul2 * (2 * p.l1 + 1)))
            # X [Z, u, r] is built contiguous (cheap copies); bmm reads it transposed through BLAS flags.
            Xt = (xs[0] if len(xs) == 1 else torch.cat(xs, dim=2)).transpose(1, 2)
            out_t = torch.bmm(Mt, Xt)  # [Z, rows, u]
            for o in b["outs"]:
                ro = b["row_of"][o]
                dout = d.irreps_out[o].ir.dim
                blk = out_t[:, ro : ro + dout, :].transpose(1, 2).reshape(Z, mul * dout)
                contributions.setdefault(o, []).append(blk)

        # uvw paths: contract x1 (x) x2 with C, then one GEMM per path accumulated per output block.
        for io, ns in self._uvw.items():
            acc = torch.empty(0)
            first = True
            for n in ns:
                p = d.paths[n]
                d1, d2, dout = 2 * p.l1 + 1, 2 * p.l2 + 1, 2 * p.l_out + 1
                C = self._cg(consts, n)  # [d1, dout * d2] ([d2, dout * d1] for order "x1")
                order = self._order.get(n, "out")
                if order != "out":
                    acc = self._uvw_first(order, p, C, x1, x2, weight, None if first else acc)
                    first = False
                    continue
                a = self._block1(x1, p).reshape(Z * p.mul1, d1)
                b = self._block2(x2, p)  # [Z, v, j]
                A = (a @ C).reshape(Z, p.mul1, dout, d2).transpose(1, 2).reshape(Z, dout * p.mul1, d2)
                if d2 == 1:
                    # l2 = 0: the contraction over j has one term, an outer product; a broadcast multiply
                    # does it without a bmm of Z rank-1 products (slow per-matrix overhead on CPU).
                    T = A * b.reshape(Z, 1, p.mul2)  # [Z, dout * u, v]
                else:
                    T = torch.bmm(A, b.transpose(1, 2))  # [Z, dout * u, v]
                W = self._weight(weight, p)
                if self.shared_weights:
                    T2 = T.reshape(Z * dout, p.mul1 * p.mul2)
                    W2 = W.reshape(p.mul1 * p.mul2, p.mul_out)
                    acc = T2 @ W2 if first else torch.addmm(acc, T2, W2)
                else:
                    T2 = T.reshape(Z, dout, p.mul1 * p.mul2)
                    W2 = W.reshape(Z, p.mul1 * p.mul2, p.mul_out)
                    acc = torch.bmm(T2, W2) if first else torch.baddbmm(acc, T2, W2)
                first = False
            p0 = d.paths[ns[0]]
            dout = 2 * p0.l_out + 1
            out = acc.reshape(Z, dout, p0.mul_out).transpose(1, 2).reshape(Z, p0.mul_out * dout)
            contributions.setdefault(io, []).append(out)

        for io, ns in self._generic.items():
            for n in ns:
                contributions.setdefault(io, []).append(self._generic_path(consts, n, x1, x2, weight))

        blocks = []
        for io, (mul, dim) in enumerate(self._out_blocks):
            if mul * dim == 0:
                continue
            parts = contributions.get(io)
            if parts is None:
                blocks.append(x1.new_zeros(Z, mul * dim))
            else:
                out = parts[0]
                for extra in parts[1:]:
                    out = out + extra
                blocks.append(out)
        if not blocks:
            return x1.new_zeros(Z, self._dim_out)
        if len(blocks) == 1:
            return blocks[0]
        return torch.cat(blocks, dim=1)
