r"""Channelwise edge convolutions in O(L^3): the SO(2) (eSCN) route, and automatic CG/SO(2) route choice.

The channelwise ('uvu') convolution of NequIP-like models is, per edge ``e`` with vector ``r``,

.. math::

    \mathrm{out}_{l_o}[u] = \sum_{(l_1, l_f, l_o)} \alpha_p\, w_p[u]\; C^{l_1 l_f l_o} \cdot
        \big(x_{l_1}[u] \otimes Y_{l_f}(\hat r)\big)

(``euclidnet.tp.ChannelwiseTensorProduct(irreps_in, Y(lmax), irreps_out)`` applied to
``(x[src], Y(r), w(|r|))``). With ``D = D(R_e)`` for a rotation taking ``r_hat`` to the pole ``e_y``
(:mod:`euclidnet.o3.edge_frame`), equivariance of the product gives
``out = D^T TP(D x, Y(e_y), w)``; ``Y_{l_f}(e_y)`` has only its ``m = 0`` component, so in the edge frame every
coupling ``l_1 -> l_o`` only connects components with the same ``|m|`` (Passaro & Zitnick, eSCN, 2023):

* **symmetric** couplings (``p_1 p_o = (-1)^{l_1 + l_o}``, i.e. the CG paths with ``l_1 + l_f + l_o``
  even): ``out'[l_o, +-m] += a_m x'[l_1, +-m]`` for ``m = 0..min(l_1, l_o)``;
* **antisymmetric** couplings (``p_1 p_o = -(-1)^{l_1 + l_o}``, ``l_1 + l_f + l_o`` odd):
  ``out'[l_o, -m] += b_m x'[l_1, +m]``, ``out'[l_o, +m] -= b_m x'[l_1, -m]`` for ``m = 1..min(l_1, l_o)``
  (there is no ``m = 0`` term).

These are exactly the linear maps commuting with rotations about ``e_y`` *and* with the reflections fixing
``e_y`` (parity), i.e. the equivariant kernels of O(3); the parity is what forbids ``b`` terms in
symmetric couplings and ``a`` terms in antisymmetric ones. Cost per edge and channel: two rotations
(``sum_l (2l+1)^2`` each) plus the ``O(L^3)`` SO(2) map, versus ``O(L^5..L^6)`` CG entries.

**Weight map (CG -> SO(2)).** Matching the two forms in the edge frame,

.. math::

    a_m\,(\text{or } b_m) = \frac{1}{c}\sum_{l_f} \alpha_{(l_1 l_f l_o)}\; Y_{l_f}(e_y)_{m=0}\;
        C^{l_1 l_f l_o}_{(l_1, m),\,(l_f, 0),\,(l_o, m\ \text{or}\ -m)}\; w_{(l_1 l_f l_o)}

with ``c`` the free-mode normalisation below, a linear map per ``(l_1, l_o)`` coupling (``l_f`` ranges over
the CG paths of that coupling). For a coupling with all ``l_f`` up to ``l_1 + l_o`` present the map is
square and invertible (both sides span all equivariant kernels), so the two parametrisations are the same
function class; with edge harmonics truncated at ``lmax < l_1 + l_o`` the CG weights span a strict subspace.

**Modes** of :class:`SO2Convolution`:

* ``weights="cg"`` (CG-equivalent): the weights are the CG path weights, in the exact layout of
  ``ChannelwiseTensorProduct(irreps_in, Irreps.spherical_harmonics(lmax), irreps_out)``; the module computes
  the same function as that product applied to ``spherical_harmonics(lmax, edge_vec)`` (tested to 1e-12).
  The weight map is folded into the kernel's coefficient table: nothing is materialised per edge.
* ``weights="free"``: one weight per (coupling, ``m``, channel): the full SO(2)-equivariant class, which
  equals the CG convolution with edge harmonics up to ``l_1 + l_o`` for each coupling (a superset of
  ``weights="cg"``, equal when ``lmax >= l_1 + l_o`` everywhere). Couplings are those a CG convolution with
  harmonics up to ``lmax`` would have (symmetric: ``|l_1 - l_o| <= lmax``; antisymmetric:
  ``|l_1 - l_o| + 1 <= min(lmax, l_1 + l_o)``). ``mmax`` keeps only ``m <= mmax`` (eSCN's truncation, a
  strictly smaller, still equivariant class). Each term is scaled by ``c = 1/sqrt(couplings into the
  output block)`` so N(0, 1) weights and features give unit-variance outputs.
  :meth:`SO2Convolution.free_weights_from_cg` converts CG weights to free weights (same function).

**Zero-length edges** have no direction; the module returns the rotation average of the edge map, which is
what the CG convolution gives with ``Y_{l>0}(0) = 0`` (``spherical_harmonics``' convention): only
``l_1 = l_o`` symmetric couplings survive, as ``trace / (2l + 1)`` times the identity. Their gradient w.r.t.
the edge vector is zero (the CG route's is that of ``r / 1e-12``, meaningless either way).

Kernel: the SO(2) map ``out'[e, k, u] = sum_t c_t x'[e, i_t, u] w[e, p_t, u]`` is a sparse trilinear form
over a table of terms. One small C kernel (built at first use with the system compiler,
:mod:`euclidnet.kernels._build`; vectorised over channels, threaded over edges) does, per edge, the Wigner-D
construction from a ``[4, L+1]`` cos/sin table (:mod:`euclidnet.o3.edge_frame`), the rotation in, the terms
and the rotation out, all in cache, and in its backward the gradients w.r.t. features, weights and the
table (torch differentiates the ``[E]``-sized ops from edge vectors to table). Nothing of size
``E x sum (2l+1)^2`` is allocated. Second derivatives, other devices and machines without a compiler use an
equivalent pure-torch composition (same results to round-off; the tests run both).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from ..kernels._so2 import SO2_LIBRARY
from ..o3.edge_frame import _dx_basis_f64, edge_frame, frame_tables, wigner_D_from_tables
from ..o3.irreps import Irreps
from ..o3.spherical_harmonics import spherical_harmonics
from ..o3.wigner import _quarter_turn_f64, wigner_3j
from ..tp import ChannelwiseTensorProduct

__all__ = ["SO2Convolution", "ChannelwiseConvolution", "so2_kernel_available"]

_LIBRARY = SO2_LIBRARY
# Set to False to force the pure-torch contraction (tests use it as a cross-check of the kernel).
KERNEL_ENABLED = True


def so2_kernel_available() -> bool:
    """Whether the compiled SO(2) kernel can be used (builds it on first call)."""
    return _LIBRARY.get() is not None


class _Terms:
    """A table of terms ``(i, p, k, c)`` of the trilinear form ``F(x, w, o) = sum_t c_t x[i_t] w[p_t] o[k_t]``
    (each index a row of a ``[E, rows, C]`` tensor; the channel ``u`` is shared by all three)."""

    def __init__(self, terms: list[tuple[int, int, int, float]], rows: tuple[int, int, int]) -> None:
        terms = sorted(terms, key=lambda t: (t[2], t[0], t[1]))  # by output row: locality in the kernel
        self.rows = rows
        self.n = len(terms)
        cols = list(zip(*terms)) if terms else [(), (), (), ()]
        self.idx = [torch.tensor(list(c) or [0], dtype=torch.int32) for c in cols[:3]]
        self.idx64 = [i.long() for i in self.idx]
        c64 = torch.tensor(list(cols[3]) or [0.0], dtype=torch.float64)
        self._coef: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {(torch.float64, c64.device): c64}

    def coef_for(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The coefficients ``c_t`` in ``dtype`` on ``device`` (converted once, cached)."""
        key = (dtype, torch.device(device))
        c = self._coef.get(key)
        if c is None:
            c = self._coef[(torch.float64, torch.device("cpu"))].to(dtype=dtype, device=device)
            self._coef[key] = c
        return c


def _contract_torch(terms: _Terms, target: int, ops: list[torch.Tensor | None]) -> torch.Tensor:
    """Pure-torch contraction of slot ``target`` (chunked over edges to bound the memory)."""
    ref = next(t for t in ops if t is not None)
    n, C = ref.shape[0], ref.shape[2]
    a, b = [s for s in range(3) if s != target]
    out = torch.zeros(n, terms.rows[target], C, dtype=ref.dtype, device=ref.device)
    if terms.n == 0 or n == 0:
        return out
    dev = ref.device
    it, ia, ib = (terms.idx64[s].to(dev) for s in (target, a, b))
    coef = terms.coef_for(ref.dtype, dev)[:, None]
    chunk = max(1, (1 << 22) // max(1, terms.n * C))
    for e0 in range(0, n, chunk):
        A = ops[a][e0 : e0 + chunk]  # type: ignore[index]
        B = ops[b][e0 : e0 + chunk]  # type: ignore[index]
        out[e0 : e0 + chunk].index_add_(1, it, coef * A[:, ia] * B[:, ib])
    return out


def _contract_raw(terms: _Terms, target: int, ops: list[torch.Tensor | None]) -> torch.Tensor:
    ref = next(t for t in ops if t is not None)
    lib = _LIBRARY.get() if (KERNEL_ENABLED and ref.device.type == "cpu") else None
    if lib is None or ref.dtype not in (torch.float32, torch.float64):
        return _contract_torch(terms, target, ops)
    n, C = ref.shape[0], ref.shape[2]
    out = torch.empty(n, terms.rows[target], C, dtype=ref.dtype)
    if n == 0 or out.numel() == 0:
        return out.zero_()
    if terms.n == 0:
        return out.zero_()
    ops = [None if t is None else t.contiguous() for t in ops]
    fn = getattr(lib, "euclidnet_so2_f32" if ref.dtype == torch.float32 else "euclidnet_so2_f64")
    threads = max(1, min(torch.get_num_threads(), n // 16))
    ptrs = [0 if t is None else t.data_ptr() for t in ops]
    coef = terms.coef_for(ref.dtype, ref.device)
    fn(
        target,
        ptrs[0],
        ptrs[1],
        ptrs[2],
        out.data_ptr(),
        n,
        terms.rows[0],
        terms.rows[1],
        terms.rows[2],
        C,
        terms.n,
        terms.idx[0].data_ptr(),
        terms.idx[1].data_ptr(),
        terms.idx[2].data_ptr(),
        coef.data_ptr(),
        threads,
    )
    return out


class _Contract(torch.autograd.Function):
    """Slot ``target`` of the trilinear form from the other two; its backward calls itself (any order)."""

    @staticmethod
    def forward(ctx: Any, terms: _Terms, target: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        sa, sb = [s for s in range(3) if s != target]
        ops: list[torch.Tensor | None] = [None, None, None]
        ops[sa], ops[sb] = a, b
        ctx.terms, ctx.target, ctx.slots = terms, target, (sa, sb)
        ctx.save_for_backward(a, b)
        return _contract_raw(terms, target, ops)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        a, b = ctx.saved_tensors
        sa, sb = ctx.slots
        ga = gb = None
        if ctx.needs_input_grad[2]:
            ga = _contract(ctx.terms, sa, {ctx.target: g, sb: b})
        if ctx.needs_input_grad[3]:
            gb = _contract(ctx.terms, sb, {ctx.target: g, sa: a})
        return None, None, ga, gb


def _contract(terms: _Terms, target: int, ops: dict[int, torch.Tensor]) -> torch.Tensor:
    sa, sb = [s for s in range(3) if s != target]
    return _Contract.apply(terms, target, ops[sa], ops[sb])


class _FusedPlan:
    """Static data of the fused kernel (edge frame, rotate in, SO(2) map, rotate out) for one module."""

    def __init__(self, terms: _Terms, irreps_in: Irreps, irreps_out: Irreps, ls: list[int], C: int) -> None:
        self.terms, self.C, self.ls = terms, C, ls
        self.L1 = max(ls) + 1
        self.doff: dict[int, int] = {}
        table, bx, pq = [], [], []
        s = boff = poff = 0
        for l in ls:
            d = 2 * l + 1
            self.doff[l] = s
            table += [l, s, boff, poff]
            if l > 0:
                bx.append(_dx_basis_f64(l).reshape(-1))
                pq.append(_quarter_turn_f64(l).reshape(-1))
                boff, poff = boff + d**3, poff + d * d
            s += d * d
        self.dstride, self.maxdd = s, max((2 * l + 1) ** 2 for l in ls)
        self.ls_t = torch.tensor(table, dtype=torch.int32)
        z = torch.zeros(1, dtype=torch.float64)
        self.consts = {torch.float64: (torch.cat(bx) if bx else z, torch.cat(pq) if pq else z)}
        self.dim_in, self.dim_out = irreps_in.dim, irreps_out.dim

        def blocks(irreps: Irreps) -> list[int]:
            out, row = [], 0
            for (_, ir), sl in zip(irreps, irreps.slices()):
                out += [sl.start, ir.dim, row, self.doff[ir.l]]
                row += ir.dim
            return out

        self.bin, self.bout = blocks(irreps_in), blocks(irreps_out)
        self.nbin, self.nbout = len(self.bin) // 4, len(self.bout) // 4
        self.bin_t = torch.tensor(self.bin, dtype=torch.int32)
        self.bout_t = torch.tensor(self.bout, dtype=torch.int32)

    def run(
        self,
        x: torch.Tensor,
        tables: torch.Tensor,
        chart: torch.Tensor,
        w: torch.Tensor,
        g: torch.Tensor | None,
        need: tuple[bool, ...],
    ) -> tuple[torch.Tensor | None, ...]:
        """Forward (``g is None``): ``(out,)``; backward: ``(gx, gtables, gw)`` for the flags in ``need``."""
        lib = _LIBRARY.get()
        if lib is None:  # pragma: no cover (callers check availability first)
            raise RuntimeError(f"SO(2) kernel unavailable: {_LIBRARY.error}")
        n, dt = x.shape[0], x.dtype
        x, tables, w = x.contiguous(), tables.contiguous(), w.contiguous()
        chart = chart.to(torch.int32).contiguous()
        if dt not in self.consts:
            self.consts[dt] = tuple(c.to(dt) for c in self.consts[torch.float64])  # type: ignore[assignment]
        bx, pq = self.consts[dt]
        t = self.terms
        if g is None:
            res: tuple[torch.Tensor | None, ...] = (torch.empty(n, self.dim_out, dtype=dt),)
            ptr_out, ptr_g, gx_p, gT_p, gw_p = res[0].data_ptr(), None, None, None, None  # type: ignore[union-attr]
        else:
            g = g.contiguous()
            res = (
                torch.empty_like(x) if need[0] else None,
                torch.empty_like(tables) if need[1] else None,
                torch.empty_like(w) if need[2] else None,
            )
            ptr_out, ptr_g = None, g.data_ptr()
            gx_p, gT_p, gw_p = (None if r is None else r.data_ptr() for r in res)
        fn = getattr(lib, "euclidnet_so2f_f32" if dt == torch.float32 else "euclidnet_so2f_f64")
        err = fn(
            x.data_ptr(), tables.data_ptr(), chart.data_ptr(), w.data_ptr(), ptr_g, ptr_out, gx_p, gT_p, gw_p,
            n, self.C, self.dim_in, self.dim_out, self.dstride, t.rows[0], t.rows[2], t.rows[1],
            self.nbin, self.bin_t.data_ptr(), self.nbout, self.bout_t.data_ptr(),
            t.n, t.idx[0].data_ptr(), t.idx[1].data_ptr(), t.idx[2].data_ptr(), t.coef_for(dt, x.device).data_ptr(),
            self.L1, len(self.ls), self.ls_t.data_ptr(), bx.data_ptr(), pq.data_ptr(), self.maxdd,
            max(1, min(torch.get_num_threads(), n // 16)),
        )  # fmt: skip
        if err:  # pragma: no cover
            raise MemoryError("SO(2) kernel: out of memory for its per-thread scratch buffers")
        return res

    def torch_forward(
        self, x: torch.Tensor, tables: torch.Tensor, chart: torch.Tensor, w: torch.Tensor
    ) -> torch.Tensor:
        """The same function as torch ops (differentiable to any order): reference and higher derivatives."""
        n, C = x.shape[0], self.C
        D = wigner_D_from_tables(tables, chart.bool(), self.ls)
        xr = []
        for b in range(self.nbin):
            xoff, d, _, _ = self.bin[4 * b : 4 * b + 4]
            xb = x[:, xoff : xoff + C * d].reshape(n, C, d)
            xr.append(torch.einsum("nij,nuj->niu", D[(d - 1) // 2], xb))
        o = _contract(self.terms, 2, {0: torch.cat(xr, 1), 1: w})
        outs = []
        for b in range(self.nbout):
            _, d, row, _ = self.bout[4 * b : 4 * b + 4]
            outs.append(torch.einsum("nik,niu->nuk", D[(d - 1) // 2], o[:, row : row + d]).reshape(n, C * d))
        return torch.cat(outs, 1)


class _Fused(torch.autograd.Function):
    """``out = D^T SO2(D x, w)`` by the C kernel; first derivatives by the kernel, higher ones by torch ops."""

    @staticmethod
    def forward(
        ctx: Any, plan: _FusedPlan, x: torch.Tensor, tables: torch.Tensor, chart: torch.Tensor, w: torch.Tensor
    ) -> torch.Tensor:
        ctx.plan = plan
        ctx.save_for_backward(x, tables, chart, w)
        return plan.run(x, tables, chart, w, None, ())[0]

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        x, tables, chart, w = ctx.saved_tensors
        need = (ctx.needs_input_grad[1], ctx.needs_input_grad[2], ctx.needs_input_grad[4])
        if torch.is_grad_enabled():
            # create_graph=True (e.g. training on forces): differentiate the torch composition, which is the
            # same function, so that the returned gradients are themselves differentiable.
            ins = [t for t, k in zip((x, tables, w), need) if k]
            out = ctx.plan.torch_forward(x, tables, chart, w)
            gs = iter(torch.autograd.grad(out, ins, g, create_graph=True, allow_unused=True))
            gx, gT, gw = (next(gs) if k else None for k in need)
        else:
            gx, gT, gw = ctx.plan.run(x, tables, chart, w, g, need)
        return None, gx, gT, None, gw


# -- the weight map -------------------------------------------------------------------------------------


@functools.cache
def _pole_sh(l: int, normalization: str) -> float:
    """``Y_l(e_y)`` at ``m = 0`` (the only nonzero component) under ``normalization``."""
    y = spherical_harmonics(l, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), True, normalization)
    return float(y[l])


def _symmetric(ir_in: Any, ir_out: Any) -> bool:
    return ir_in.p * ir_out.p == (-1) ** (ir_in.l + ir_out.l)


class SO2Convolution(torch.nn.Module):
    r"""Channelwise edge convolution computed in each edge's frame (eSCN), ``O(L^3)`` per edge and channel.

    Args:
        irreps_in: irreps of the (already gathered) edge features ``x[src]``; every block must have the same
            multiplicity ``C`` (the channel count), as in ``"32x0e + 32x1o + 32x2e"``.
        irreps_out: output irreps, same multiplicity ``C`` in every block.
        lmax: degree of the edge spherical harmonics of the equivalent CG convolution (parity ``(-1)^l``,
            i.e. edges are vectors, ``1o``).
        weights: ``"cg"`` (default): the weights are the CG path weights of
            ``ChannelwiseTensorProduct(irreps_in, Irreps.spherical_harmonics(lmax), irreps_out)`` in that
            module's layout, and the result equals that product of ``(x, spherical_harmonics(lmax, r), w)``.
            ``"free"``: one weight per (coupling, ``m``, channel), the larger SO(2) class (module docstring).
        mmax: only with ``weights="free"``: keep ``m <= mmax`` (eSCN's truncation; a smaller function class).
        sh_normalization: normalisation of the equivalent CG convolution's harmonics ('component',
            'norm' or 'integral'); only matters for ``weights="cg"``.

    ``forward(x [E, irreps_in.dim], edge_vec [E, 3], weight [E, weight_numel]) -> [E, irreps_out.dim]``.
    Free weights are laid out ``[num_entries, C]`` per edge (entry-major, channel-minor); entry ``s`` is
    described by ``self.free_entries[s] = (i_in, i_out, m, kind)`` with ``kind`` ``"sym"`` or ``"anti"``,
    entries ordered by ``i_in``, then ``i_out``, then ``m``.
    """

    def __init__(
        self,
        irreps_in: Any,
        irreps_out: Any,
        lmax: int,
        weights: str = "cg",
        mmax: int | None = None,
        sh_normalization: str = "component",
    ) -> None:
        super().__init__()
        irreps_in, irreps_out = Irreps(irreps_in), Irreps(irreps_out)
        if isinstance(lmax, bool) or not isinstance(lmax, int) or lmax < 0:
            raise ValueError(f"lmax must be an int >= 0, got {lmax!r}")
        if weights not in ("cg", "free"):
            raise ValueError(f"weights must be 'cg' or 'free', got {weights!r}")
        if mmax is not None and (isinstance(mmax, bool) or not isinstance(mmax, int) or mmax < 0):
            raise ValueError(f"mmax must be None or an int >= 0, got {mmax!r}")
        if mmax is not None and weights == "cg":
            raise ValueError(
                "mmax truncation changes the function class, so it has no CG-equivalent weights: "
                "use weights='free' with mmax, or mmax=None"
            )
        if sh_normalization not in ("component", "norm", "integral"):
            raise ValueError(f"sh_normalization must be 'component', 'norm' or 'integral', got {sh_normalization!r}")
        muls = {mul for mul, _ in irreps_in} | {mul for mul, _ in irreps_out}
        if len(muls) != 1 or 0 in muls:
            raise ValueError(
                f"SO2Convolution needs one nonzero multiplicity in every block of irreps_in and irreps_out "
                f"(channelwise), got irreps_in={irreps_in!r}, irreps_out={irreps_out!r} (multiplicities "
                f"{sorted(muls)}); use ChannelwiseConvolution(route='cg') for mixed multiplicities"
            )
        self.irreps_in, self.irreps_out, self.lmax = irreps_in, irreps_out, lmax
        self.irreps_sh = Irreps.spherical_harmonics(lmax)
        self.mode, self.mmax, self.sh_normalization = weights, mmax, sh_normalization
        self.channels = C = muls.pop()
        # Rows of the edge-frame layouts [E, rows, C]: block b occupies rows off[b] .. off[b] + 2l + 1.
        self._off_in = _offsets(irreps_in)
        self._off_out = _offsets(irreps_out)
        rows_in, rows_out = sum(ir.dim for _, ir in irreps_in), sum(ir.dim for _, ir in irreps_out)
        self.free_entries = self._build_free_entries()
        self._free_terms = self._free_term_list()
        if weights == "cg":
            tp = ChannelwiseTensorProduct(irreps_in, self.irreps_sh, irreps_out)
            self.cg_descriptor = tp.descriptor
            self.instructions = tp.instructions
            self.weight_numel = tp.weight_numel
            terms = self._cg_term_list()
        else:
            self.cg_descriptor = None
            self.instructions = []
            self.weight_numel = len(self.free_entries) * C
            terms = self._free_terms
        rows_w = self.weight_numel // C
        self._terms = _Terms(terms, (rows_in, rows_w, rows_out))
        self._iso = _Terms(self._isotropic(terms), (rows_in, rows_w, rows_out))
        self._ls = sorted({ir.l for _, ir in irreps_in} | {ir.l for _, ir in irreps_out})
        self._plan = _FusedPlan(self._terms, irreps_in, irreps_out, self._ls, C)

    # -- tables ------------------------------------------------------------------------------------------

    def _build_free_entries(self) -> list[tuple[int, int, int, str]]:
        ents = []
        for bi, (_, ir1) in enumerate(self.irreps_in):
            for bo, (_, iro) in enumerate(self.irreps_out):
                top = min(ir1.l, iro.l) if self.mmax is None else min(ir1.l, iro.l, self.mmax)
                dl = abs(ir1.l - iro.l)
                if _symmetric(ir1, iro):
                    if dl <= self.lmax:
                        ents += [(bi, bo, m, "sym") for m in range(0, top + 1)]
                elif dl + 1 <= min(self.lmax, ir1.l + iro.l):
                    ents += [(bi, bo, m, "anti") for m in range(1, top + 1)]
        return ents

    def _free_norm(self) -> dict[int, float]:
        n: dict[int, set[int]] = {}
        for bi, bo, _, _ in self.free_entries:
            n.setdefault(bo, set()).add(bi)
        return {bo: 1.0 / math.sqrt(len(s)) for bo, s in n.items()}

    def _free_rep(self, s: int) -> list[tuple[int, int, float]]:
        """Block-local (i, k, sign) of the terms of free entry ``s`` (first one is the representative)."""
        bi, bo, m, kind = self.free_entries[s]
        l1, lo = self.irreps_in[bi].ir.l, self.irreps_out[bo].ir.l
        if kind == "sym":
            if m == 0:
                return [(l1, lo, 1.0)]
            return [(l1 + m, lo + m, 1.0), (l1 - m, lo - m, 1.0)]
        return [(l1 + m, lo - m, 1.0), (l1 - m, lo + m, -1.0)]

    def _free_term_list(self) -> list[tuple[int, int, int, float]]:
        norm = self._free_norm()
        terms = []
        for s, (bi, bo, _, _) in enumerate(self.free_entries):
            for i, k, sign in self._free_rep(s):
                terms.append((self._off_in[bi] + i, s, self._off_out[bo] + k, sign * norm[bo]))
        return terms

    def _cg_coupling(self, p: Any) -> torch.Tensor:
        """``alpha_p Y_lf(e_y) C[:, lf(m=0), :]`` ``[2l1+1, 2lo+1]`` float64 of CG path ``p``."""
        C3 = wigner_3j(p.l1, p.l2, p.l_out, dtype=torch.float64)
        return p.coefficient * _pole_sh(p.l2, self.sh_normalization) * C3[:, p.l2, :]

    def _cg_term_list(self) -> list[tuple[int, int, int, float]]:
        terms = []
        C = self.channels
        for p in self.cg_descriptor.paths:  # type: ignore[union-attr]
            if not p.has_weight or p.weight_numel == 0:
                continue
            if p.weight_offset % C or p.weight_shape != (C, 1):
                raise RuntimeError(f"unexpected CG weight layout for path {p}")  # pragma: no cover
            M = self._cg_coupling(p)
            for i, k in (M != 0).nonzero().tolist():
                if abs(i - p.l1) != abs(k - p.l_out):  # the m = 0 structure of the pole (a convention check)
                    raise RuntimeError(f"CG path {p} couples m={i - p.l1} to m={k - p.l_out} at the pole")
                row_in, row_out = self._off_in[p.i_in1] + i, self._off_out[p.i_out] + k
                terms.append((row_in, p.weight_offset // C, row_out, float(M[i, k])))
        return terms

    def _isotropic(self, terms: list[tuple[int, int, int, float]]) -> list[tuple[int, int, int, float]]:
        """Terms of the rotation average of the edge map: ``trace / (2l+1)`` of each ``l -> l`` block pair."""
        blk_in = _row_blocks(self.irreps_in, self._off_in)
        blk_out = _row_blocks(self.irreps_out, self._off_out)
        iso = []
        for i, p, k, c in terms:
            bi, bo = blk_in[i], blk_out[k]
            l1, lo = self.irreps_in[bi].ir.l, self.irreps_out[bo].ir.l
            if l1 != lo or i - self._off_in[bi] != k - self._off_out[bo]:
                continue
            d = 2 * l1 + 1
            iso += [(self._off_in[bi] + j, p, self._off_out[bo] + j, c / d) for j in range(d)]
        return iso

    def cg_to_free_matrix(self) -> torch.Tensor:
        """``A [P, S]`` float64 with ``w_free[e, s, u] = sum_p A[p, s] w_cg[e, p, u]`` (``weights="cg"`` only).

        ``P`` = number of CG paths, ``S = len(self.free_entries)``; the free module is
        ``SO2Convolution(irreps_in, irreps_out, lmax, weights="free")`` (``mmax=None``).
        """
        if self.mode != "cg":
            raise ValueError("cg_to_free_matrix needs a module built with weights='cg'")
        C = self.channels
        norm = self._free_norm()
        index = {(bi, bo, m, kind): s for s, (bi, bo, m, kind) in enumerate(self.free_entries)}
        paths = [p for p in self.cg_descriptor.paths if p.has_weight and p.weight_numel]  # type: ignore[union-attr]
        A = torch.zeros(self.weight_numel // C, len(self.free_entries), dtype=torch.float64)
        for p in paths:
            M = self._cg_coupling(p)
            kind = "sym" if _symmetric(self.irreps_in[p.i_in1].ir, self.irreps_out[p.i_out].ir) else "anti"
            for m in range(0 if kind == "sym" else 1, min(p.l1, p.l_out) + 1):
                s = index[(p.i_in1, p.i_out, m, kind)]
                i, k, _ = self._free_rep(s)[0]
                A[p.weight_offset // C, s] = M[i, k] / norm[p.i_out]
        return A

    def free_weights_from_cg(self, weight: torch.Tensor) -> torch.Tensor:
        """Convert CG weights ``[..., weight_numel]`` to the free module's weights (same function).

        Returns ``[..., len(free_entries) * C]`` for ``SO2Convolution(irreps_in, irreps_out, lmax,
        weights="free")``; differentiable (a linear map).
        """
        A = self.cg_to_free_matrix().to(dtype=weight.dtype, device=weight.device)
        C = self.channels
        w = weight.reshape(*weight.shape[:-1], -1, C)
        return torch.einsum("...pu,ps->...su", w, A).reshape(*weight.shape[:-1], A.shape[1] * C)

    # -- forward -----------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, edge_vec: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``x [E, irreps_in.dim]``, ``edge_vec [E, 3]``, ``weight [E, weight_numel]`` -> ``[E, irreps_out.dim]``."""
        _check(x, edge_vec, weight, self.irreps_in, self.weight_numel)
        E, C = x.shape[0], self.channels
        weight = weight.to(x.dtype)
        edge_vec = edge_vec.to(x.dtype)
        if E == 0:
            return x.new_zeros(0, self.irreps_out.dim) + 0 * (weight.sum() + edge_vec.sum())
        _, chart_b, zero, cos_sin = edge_frame(edge_vec)
        tables = frame_tables(cos_sin, max(self._ls))  # [E, 4, L+1]
        w = weight.reshape(E, -1, C)
        if KERNEL_ENABLED and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and (
            _LIBRARY.get() is not None
        ):
            out = _Fused.apply(self._plan, x, tables, chart_b, w)
        else:
            out = self._plan.torch_forward(x, tables, chart_b, w)
        if bool(zero.any()):
            idx = zero.nonzero()[:, 0]
            xz = torch.cat([b.transpose(1, 2) for _, b in _blocks(x[idx], self.irreps_in, C)], 1)
            oz = _contract(self._iso, 2, {0: xz, 1: w[idx]})
            oz = torch.cat(
                [oz[:, s : s + ir.dim].transpose(1, 2).reshape(-1, C * ir.dim)
                 for s, (_, ir) in zip(self._off_out, self.irreps_out)],
                1,
            )
            out = out.index_put((idx,), oz)
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.irreps_in} -> {self.irreps_out} | lmax={self.lmax} weights={self.mode!r} "
            f"mmax={self.mmax} | {self.weight_numel} weights per edge, {self._terms.n} terms"
        )


def _offsets(irreps: Irreps) -> list[int]:
    off, s = [], 0
    for _, ir in irreps:
        off.append(s)
        s += ir.dim
    return off


def _row_blocks(irreps: Irreps, off: list[int]) -> dict[int, int]:
    return {o + j: b for b, ((_, ir), o) in enumerate(zip(irreps, off)) for j in range(ir.dim)}


def _blocks(x: torch.Tensor, irreps: Irreps, C: int) -> list[tuple[Any, torch.Tensor]]:
    """The blocks of ``x [E, dim]`` as ``[E, C, 2l+1]`` views."""
    return [(ir, x[:, sl].reshape(x.shape[0], C, ir.dim)) for (_, ir), sl in zip(irreps, irreps.slices())]


def _check(x: Any, edge_vec: Any, weight: Any, irreps_in: Irreps, weight_numel: int) -> None:
    for name, t in (("x", x), ("edge_vec", edge_vec), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating point tensor, got dtype {t.dtype}")
    if x.ndim != 2 or x.shape[1] != irreps_in.dim:
        raise ValueError(f"x has shape {tuple(x.shape)}; expected [num_edges, {irreps_in.dim}] ({irreps_in!r}.dim)")
    if edge_vec.shape != (x.shape[0], 3):
        raise ValueError(f"edge_vec has shape {tuple(edge_vec.shape)}; expected [num_edges, 3] = [{x.shape[0]}, 3]")
    if weight.shape != (x.shape[0], weight_numel):
        raise ValueError(
            f"weight has shape {tuple(weight.shape)}; expected [num_edges, weight_numel] = "
            f"[{x.shape[0]}, {weight_numel}] (per-edge weights)"
        )


# Cost model of the route choice: predicted fwd+bwd nanoseconds per edge (2 threads, float32), fitted to
# benchmarks/high_l.py (workload 7, 32 channels, L = 2..8, both routes interleaved in one run; numbers in
# docs/so2.md). CG route: ~3.5 ns per useful CG multiply-add (nonzero CG entry x channel). SO(2) route:
# ~4 ns per multiply-add of its own (rotations in and out, SO(2) terms x channel, Wigner-D construction)
# plus a per-edge overhead of the edge-frame tensor ops. The constants were fitted on a loaded machine; only
# their ratios matter for the choice. Measured crossover: at L = 2 the routes are close (loaded: CG 2.4x
# faster; quiet: CG 1.15x faster forward, SO(2) 1.2x faster fwd+bwd), from L = 4 SO(2) wins (quiet: 1.7x);
# the model puts the switch at L = 4 for 32 channels.
_NS_CG_MAC = 3.5
_NS_SO2_MAC = 4.0
_NS_SO2_FIXED = 20000.0


class ChannelwiseConvolution(torch.nn.Module):
    r"""Channelwise edge convolution ``TP_uvu(x[src], Y(edge_vec), w)`` by the faster of two exact routes.

    Args:
        irreps_in: irreps of the gathered edge features ``x[src]``.
        irreps_sh: the edge harmonics, an int ``lmax`` or ``Irreps.spherical_harmonics(lmax)``
            (``"0e + 1o + 2e + ..."``, parity ``(-1)^l``: edges are vectors).
        irreps_out: output irreps (blocks reachable channel-wise, as in ``ChannelwiseTensorProduct``).
        route: ``"cg"`` (Clebsch-Gordan product, :class:`euclidnet.tp.ChannelwiseTensorProduct`),
            ``"so2"`` (:class:`SO2Convolution` with ``weights="cg"``), or ``"auto"`` (default): the route
            with the smaller predicted cost (:meth:`predicted_costs`), a deterministic model calibrated by
            measurement; ``"so2"`` needs one multiplicity in all blocks, otherwise ``"auto"`` picks ``"cg"``.
        sh_normalization: normalisation of the harmonics ('component', 'norm', 'integral').

    Both routes compute the same function with the same weights: per-edge weights ``[E, weight_numel]`` in
    ``ChannelwiseTensorProduct(irreps_in, irreps_sh, irreps_out)``'s layout (``self.instructions``), so the
    route can be switched, e.g. after loading a checkpoint, without changing results beyond round-off.

    ``forward(x [E, irreps_in.dim], edge_vec [E, 3], weight [E, weight_numel]) -> [E, irreps_out.dim]``.
    """

    def __init__(
        self,
        irreps_in: Any,
        irreps_sh: Any,
        irreps_out: Any,
        route: str = "auto",
        sh_normalization: str = "component",
    ) -> None:
        super().__init__()
        if isinstance(irreps_sh, bool) or not isinstance(irreps_sh, (int, str, Irreps)):
            raise TypeError(f"irreps_sh must be an int lmax or irreps, got {irreps_sh!r}")
        if isinstance(irreps_sh, int):
            if irreps_sh < 0:
                raise ValueError(f"lmax must be >= 0, got {irreps_sh}")
            lmax = irreps_sh
        else:
            irreps_sh = Irreps(irreps_sh)
            lmax = irreps_sh.lmax
            if irreps_sh != Irreps.spherical_harmonics(lmax):
                raise ValueError(
                    f"irreps_sh must be the harmonics of a vector, {Irreps.spherical_harmonics(lmax)!r}, "
                    f"got {irreps_sh!r}"
                )
        if route not in ("auto", "cg", "so2"):
            raise ValueError(f"route must be 'auto', 'cg' or 'so2', got {route!r}")
        self.irreps_sh = Irreps.spherical_harmonics(lmax)
        self.lmax, self.sh_normalization = lmax, sh_normalization
        self.tp = ChannelwiseTensorProduct(irreps_in, self.irreps_sh, irreps_out)
        self.irreps_in, self.irreps_out = self.tp.irreps_in1, self.tp.irreps_out
        self.weight_numel = self.tp.weight_numel
        self.instructions = self.tp.instructions
        muls = {mul for mul, _ in self.irreps_in} | {mul for mul, _ in self.irreps_out}
        so2_possible = len(muls) == 1 and 0 not in muls
        if route == "so2" and not so2_possible:
            raise ValueError(
                f"route='so2' needs one nonzero multiplicity in every block, got irreps_in={self.irreps_in!r}, "
                f"irreps_out={self.irreps_out!r}; use route='cg' or 'auto'"
            )
        self.so2 = SO2Convolution(irreps_in, irreps_out, lmax, "cg", None, sh_normalization) if so2_possible else None
        if route == "auto":
            if self.so2 is None:
                route = "cg"
            else:
                c = self.predicted_costs()
                route = "so2" if c["so2"] < c["cg"] else "cg"
        self.route = route

    def predicted_costs(self) -> dict[str, float]:
        """Predicted fwd+bwd time per edge (ns, 2 threads, float32) of each route (the ``"auto"`` rule)."""
        C = max((mul for mul, _ in self.irreps_in), default=1)
        cg = _NS_CG_MAC * self.tp.descriptor.num_multiply_adds(1)
        if self.so2 is None:
            return {"cg": cg, "so2": math.inf}
        rot = sum(mul * ir.dim**2 for mul, ir in self.irreps_in) + sum(mul * ir.dim**2 for mul, ir in self.irreps_out)
        frame = sum((2 * l + 1) ** 3 for l in self.so2._ls)
        so2 = _NS_SO2_FIXED + _NS_SO2_MAC * (rot + self.so2._terms.n * C + frame)
        return {"cg": cg, "so2": so2}

    def forward(self, x: torch.Tensor, edge_vec: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``x [E, irreps_in.dim]``, ``edge_vec [E, 3]``, ``weight [E, weight_numel]`` -> ``[E, irreps_out.dim]``."""
        if self.route == "so2":
            return self.so2(x, edge_vec, weight)  # type: ignore[misc]
        _check(x, edge_vec, weight, self.irreps_in, self.weight_numel)
        Y = spherical_harmonics(list(range(self.lmax + 1)), edge_vec.to(x.dtype), True, self.sh_normalization)
        return self.tp(x, Y, weight)

    def extra_repr(self) -> str:
        return f"{self.irreps_in} x Y(lmax={self.lmax}) -> {self.irreps_out} | route={self.route!r}"
