"""Equivariant linear map between irreps (e3nn-compatible weights, biases and normalisation)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..kernels import kernels_disabled
from ..kernels._linear import LinearKernelPlan, linear_kernel_available
from .irreps import Irreps

__all__ = ["Linear"]


_functorch_active = getattr(torch._C, "_are_functorch_transforms_active", None)

# One irrep's product as planned by Linear: (d, K, M, input column ranges, output column ranges); the ranges
# are the irrep's blocks in x / out, in the order their rows / columns appear in the group matrix [K, M].
_GroupSpec = tuple[int, int, int, tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]


def _columns(t: torch.Tensor, ranges: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """The columns ``ranges`` of ``t`` ``[Z, D]`` side by side (a view when there is one range)."""
    if len(ranges) == 1:
        return t[:, ranges[0][0] : ranges[0][1]]
    return torch.cat([t[:, a:b] for a, b in ranges], dim=1)


# Plain (traceable) path only: largest 2l + 1 multiplied as the GEMM [Z, K d] x (W kron I_d), d times the
# multiply-adds of the transposed GEMM [Z d, K] x W but no transposing copies. The custom function always
# transposes: with its weight gradient reusing the forward's transposed copy it measured faster for
# forward + backward (1e4 x 128x0e+64x1o+32x2e, 1 thread: 75 vs 91-96 ms; forward 33-35 ms either way).
_KRON_MAX_DIM = 5


def _kron(W: torch.Tensor, d: int) -> torch.Tensor:
    """``W kron I_d`` ``[K d, M d]``: the map of ``[Z, K, d]`` -> ``[Z, M, d]`` features as a plain matrix."""
    k, m = W.shape
    eye = torch.eye(d, dtype=W.dtype, device=W.device)
    return (W[:, None, :, None] * eye[None, :, None, :]).reshape(k * d, m * d)


def _to_rows(t: torch.Tensor, z: int, k: int, d: int) -> torch.Tensor:
    """``[Z, K d]`` (columns u-major, i-minor) -> contiguous ``[Z d, K]`` (rows (z, i)), the GEMM layout."""
    return t.reshape(z, k, d).transpose(1, 2).reshape(z * d, k)


def _scatter(dst: torch.Tensor, src: torch.Tensor, ranges: tuple[tuple[int, int], ...], z: int, d: int) -> None:
    """Write ``src`` (``[Z, n]``, or ``[Z d, n / d]`` GEMM rows when ``d > 1``) into the column ``ranges``
    of ``dst``, transposing the GEMM layout back on the fly (one strided copy, no temporary)."""
    o = 0
    for a, b in ranges:
        w = (b - a) // d
        if d == 1:
            dst[:, a:b].copy_(src[:, o : o + w])
        else:
            dst[:, a:b].view(z, w, d).copy_(src.view(z, d, src.shape[1])[:, :, o : o + w].transpose(1, 2))
        o += w


class _SharedLinear(torch.autograd.Function):
    """``out = Linear(x)`` with shared weights: every GEMM writes straight into one preallocated output and
    the backward straight into one input gradient (see :class:`Linear`'s *Execution*)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, plan: tuple[_GroupSpec, ...], din: int, dout: int, covered: bool,
                *Ws: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        z = x.shape[0]
        out = x.new_empty(z, dout) if covered else x.new_zeros(z, dout)
        want_w = any(ctx.needs_input_grad[5:])
        xts: list[torch.Tensor] = []
        for (d, k, _m, rin, rout), W in zip(plan, Ws):
            xg = _columns(x, rin)
            if d == 1:
                if len(rout) == 1:
                    torch.mm(xg, W, out=out[:, rout[0][0] : rout[0][1]])
                else:
                    _scatter(out, torch.mm(xg, W), rout, z, 1)
                continue
            xt = _to_rows(xg, z, k, d)
            if want_w:
                xts.append(xt)  # the weight gradient is xt^T g_t: keep the transposed copy
            _scatter(out, torch.mm(xt, W), rout, z, d)
        ctx.plan, ctx.din, ctx.want_w = plan, din, want_w
        ctx.save_for_backward(x, *Ws, *xts)
        return out

    @staticmethod
    def backward(ctx, gy: torch.Tensor):  # type: ignore[override]
        plan, din = ctx.plan, ctx.din
        saved = ctx.saved_tensors
        x, Ws = saved[0], saved[1 : 1 + len(plan)]
        z = x.shape[0]
        if torch.is_grad_enabled():
            # create_graph=True: the gradients must themselves be differentiable (w.r.t. gy, x and W), so
            # use out-of-place ops only (cat instead of writes into a preallocated buffer).
            gx, *gws = _differentiable_grads(x, Ws, gy, plan, din, ctx.needs_input_grad)
            return (gx, None, None, None, None, *gws)
        xts = saved[1 + len(plan) :]
        need_x = ctx.needs_input_grad[0]
        covered_in = sum(b - a for _, _, _, rin, _ in plan for a, b in rin) == din
        gx = (x.new_empty(z, din) if covered_in else x.new_zeros(z, din)) if need_x else None
        gws: list[torch.Tensor | None] = []
        it = iter(xts)
        for n, ((d, _k, m, rin, rout), W) in enumerate(zip(plan, Ws)):
            gg = _columns(gy, rout)
            need_w = ctx.needs_input_grad[5 + n]
            if d == 1:
                if gx is not None:
                    if len(rin) == 1:
                        torch.mm(gg, W.T, out=gx[:, rin[0][0] : rin[0][1]])
                    else:
                        _scatter(gx, torch.mm(gg, W.T), rin, z, 1)
                gws.append(torch.mm(_columns(x, rin).T, gg) if need_w else None)
                continue
            xt = next(it) if ctx.want_w else None  # saved for every d > 1 group when any weight needs grad
            gt = _to_rows(gg, z, m, d)
            if gx is not None:
                _scatter(gx, torch.mm(gt, W.T), rin, z, d)
            gws.append(torch.mm(xt.T, gt) if need_w and xt is not None else None)
        return (gx, None, None, None, None, *gws)


def _differentiable_grads(
    x: torch.Tensor,
    Ws: tuple[torch.Tensor, ...],
    gy: torch.Tensor,
    plan: tuple[_GroupSpec, ...],
    din: int,
    needs: tuple[bool, ...],
) -> list[torch.Tensor | None]:
    """Gradients of ``sum(gy * _SharedLinear(x, W))`` w.r.t. ``x`` and each ``W`` with differentiable ops."""
    z = x.shape[0]
    pieces: dict[int, torch.Tensor] = {}  # input column start -> its gradient columns
    gws: list[torch.Tensor | None] = []
    for n, ((d, k, m, rin, rout), W) in enumerate(zip(plan, Ws)):
        gg = _columns(gy, rout)
        gt = gg if d == 1 else _to_rows(gg, z, m, d)
        if needs[0]:
            gxt = gt @ W.T
            if d > 1:
                gxt = gxt.reshape(z, d, k).transpose(1, 2).reshape(z, k * d)
            o = 0
            for a, b in rin:
                pieces[a] = gxt[:, o : o + (b - a)]
                o += b - a
        if needs[5 + n]:
            xg = _columns(x, rin)
            gws.append((xg if d == 1 else _to_rows(xg, z, k, d)).T @ gt)
        else:
            gws.append(None)
    gx = None
    if needs[0]:
        cols, at = [], 0
        for a in sorted(pieces):
            if a > at:
                cols.append(x.new_zeros(z, a - at))
            cols.append(pieces[a])
            at = a + pieces[a].shape[1]
        if at < din:
            cols.append(x.new_zeros(z, din - at))
        gx = torch.cat(cols, dim=1) if len(cols) > 1 else cols[0]
    return [gx, *gws]


class _KernelLinear(torch.autograd.Function):
    """``out = Linear(x)`` with shared weights through the compiled CPU kernels (:mod:`euclidnet.kernels._linear`):
    ``x [Z, irreps_in.dim]`` and the flat unscaled weights ``w [weight_numel]`` (the normalisation is applied
    inside the kernel) -> ``[Z, irreps_out.dim]``. The first-order backward is one kernel pass giving both
    gradients. With ``create_graph`` the gradients must be differentiable, so the backward then uses torch ops
    on the gathered group matrices (exactly :class:`_SharedLinear`'s formulas)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, lin: Linear) -> torch.Tensor:  # type: ignore[override]
        ctx.lin = lin
        ctx.save_for_backward(x, w)
        return lin._kernel.forward(x, w)

    @staticmethod
    def backward(ctx, gy: torch.Tensor):  # type: ignore[override]
        x, w = ctx.saved_tensors
        lin: Linear = ctx.lin
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if torch.is_grad_enabled():
            Ws = lin._group_weights(w)
            needs = (need_x, False, False, False, False) + (need_w,) * len(Ws)
            gx, *gWs = _differentiable_grads(x, Ws, gy, lin._plan, lin.irreps_in.dim, needs)
            return gx, (lin._flat_weight_grad(w, gWs) if need_w else None), None
        gx, gw = lin._kernel.backward(x, w, gy, need_x, need_w)
        return gx, gw, None


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Column ranges in order, adjacent ones merged (so a group of adjacent blocks is one slice)."""
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return tuple(out)


class Linear(torch.nn.Module):
    """Equivariant linear layer ``irreps_in -> irreps_out``.

    Every instruction ``(i_in, i_out)`` joins an input and an output block of the same irrep with a weight
    matrix ``[mul_in, mul_out]``: ``out_b[w, k] += W[u, w] x_a[u, k] / sqrt(fan_in(b))``, ``fan_in(b)`` being
    the sum of ``mul_in`` over the instructions into ``b`` ('element', default) or ``mul_in`` times their
    number ('path'). By default every pair of blocks with the same irrep is connected, in e3nn's order (loop
    over input blocks, then output blocks). Weights are one flat vector, instruction after instruction, each
    row-major ``[mul_in, mul_out]``: e3nn's layout. Internal weights are initialised N(0, 1), so unit-variance
    inputs give unit-variance outputs.

    Args:
        irreps_in, irreps_out: input and output irreps.
        internal_weights: store the weights as a parameter (default True unless ``shared_weights=False``).
        shared_weights: one weight vector for the batch (default True); ``False``: ``forward(x, weight)``
            with ``weight [..., weight_numel]`` (and ``bias [..., bias_numel]`` if there are biases).
        biases: ``True`` puts a bias (initialised 0) on every ``0e`` output block; or one bool per output
            block (only ``0e`` blocks may have one). Bias layout: the biased blocks in order, ``mul`` each.
        instructions: optional list of ``(i_in, i_out)`` pairs (default: all pairs with the same irrep).
        path_normalization: 'element' (default) or 'path'.

    Execution: with shared weights on CPU (float32/float64 strided tensors, outside ``torch.compile``,
    ``torch.func`` and tracing) the compiled kernels of :mod:`euclidnet.kernels._linear` run every pair of
    blocks in place: register-blocked products over the rows ``(sample, component)`` of each block, reading
    ``x`` and writing the output in their mul-major layout (no transposing copies), multithreaded over
    samples (``torch.get_num_threads()``); the first-order backward is one kernel pass giving both the input
    and the weight gradient. ``EUCLIDNET_DISABLE_KERNELS=1``, a missing C compiler, other devices and the
    double backward (``create_graph=True``) use torch ops instead: one product per distinct irrep, whatever
    the number of blocks. The blocks of one irrep are gathered into a single ``[K, M]`` weight matrix (zeros
    where no instruction, pre-scaled by the normalisation). With shared weights on CPU/GPU (outside
    ``torch.compile``/``torch.func``) a custom autograd function writes every product straight into one
    preallocated output (``mm(..., out=slice)``, no final concatenation) and its backward writes the input
    gradient the same way: scalars are one GEMM ``[Z, K] x [K, M]``; ``l > 0`` blocks (``x`` viewed
    ``[Z, K, 2l+1]``) are transposed once to ``[Z (2l+1), K]``, multiplied by ``W`` in one GEMM and
    transposed back into the output slice; the weight gradient is one GEMM ``x_t^T g_t`` per irrep. With
    ``create_graph=True`` both custom functions compute the gradients with these GEMMs as differentiable
    torch ops, so higher derivatives follow. The plain formulation (``torch.compile``, ``torch.func``) uses
    the ``kron`` GEMM ``[Z, K (2l+1)] x (W kron I_{2l+1})`` for small degrees, which needs no transposition
    but ``2l + 1`` times the multiply-adds. Per-sample weights use one ``bmm`` per irrep.
    """

    def __init__(
        self,
        irreps_in: Any,
        irreps_out: Any,
        internal_weights: bool | None = None,
        shared_weights: bool | None = None,
        biases: bool | Sequence[bool] = False,
        instructions: Sequence[tuple[int, int]] | None = None,
        path_normalization: str = "element",
    ) -> None:
        super().__init__()
        irreps_in, irreps_out = Irreps(irreps_in), Irreps(irreps_out)
        if path_normalization not in ("element", "path"):
            raise ValueError(f"path_normalization must be 'element' or 'path', got {path_normalization!r}")
        if instructions is None:
            instructions = [
                (i, o)
                for i, (_, ir_i) in enumerate(irreps_in)
                for o, (_, ir_o) in enumerate(irreps_out)
                if ir_i == ir_o
            ]
        ins: list[tuple[int, int]] = []
        for x in instructions:
            try:
                i, o = x
            except (TypeError, ValueError):
                raise TypeError(f"Linear instruction {x!r} must be a pair (i_in, i_out)") from None
            if not (isinstance(i, int) and 0 <= i < len(irreps_in)):
                raise ValueError(
                    f"Linear instruction {x!r}: i_in={i!r} does not exist; {irreps_in!r} has {len(irreps_in)} blocks"
                )
            if not (isinstance(o, int) and 0 <= o < len(irreps_out)):
                raise ValueError(
                    f"Linear instruction {x!r}: i_out={o!r} does not exist; {irreps_out!r} has {len(irreps_out)} blocks"
                )
            if irreps_in[i].ir != irreps_out[o].ir:
                raise ValueError(
                    f"Linear instruction {x!r} joins different irreps {irreps_in[i].ir} -> {irreps_out[o].ir}"
                )
            if (i, o) in ins:
                raise ValueError(
                    f"Linear instruction {x!r} appears more than once; merge the repeats into one block "
                    f"(e3nn would sum them, with {irreps_in[i].mul} more inputs in the fan-in per repeat)"
                )
            ins.append((i, o))
        if isinstance(biases, bool):
            biases = [biases and ir.is_scalar() for _, ir in irreps_out]
        biases = [bool(b) for b in biases]
        if len(biases) != len(irreps_out):
            raise ValueError(f"biases has {len(biases)} entries; expected one per output block ({len(irreps_out)})")
        for b, (mul, ir) in zip(biases, irreps_out):
            if b and not ir.is_scalar():
                raise ValueError(f"only 0e output blocks can have a bias, got a bias on {mul}x{ir}")

        if shared_weights is False and internal_weights is None:
            internal_weights = False
        if shared_weights is None:
            shared_weights = True
        if internal_weights is None:
            internal_weights = True
        if internal_weights and not shared_weights:
            raise ValueError("internal_weights=True requires shared_weights=True (got shared_weights=False)")

        self.irreps_in = irreps_in
        self.irreps_out = irreps_out
        self.instructions = ins
        self.biases = biases
        self.shared_weights = bool(shared_weights)
        self.internal_weights = bool(internal_weights)
        self.path_normalization = path_normalization

        # Normalisation and flat offsets.
        self._offsets: list[int] = []
        self._alphas: list[float] = []
        off = 0
        for i, o in ins:
            if path_normalization == "element":
                fan = sum(irreps_in[a].mul for a, b in ins if b == o)
            else:
                fan = irreps_in[i].mul * sum(1 for _, b in ins if b == o)
            self._alphas.append(1.0 / math.sqrt(fan if fan > 0 else 1))
            self._offsets.append(off)
            off += irreps_in[i].mul * irreps_out[o].mul
        self.weight_numel = off
        self.bias_numel = sum(mul for b, (mul, _) in zip(biases, irreps_out) if b)

        if self.internal_weights:
            self.weight = torch.nn.Parameter(torch.randn(self.weight_numel))
            self.bias = torch.nn.Parameter(torch.zeros(self.bias_numel))
        else:
            self.register_buffer("weight", torch.empty(0), persistent=False)
            self.register_buffer("bias", torch.empty(0), persistent=False)

        # Plan: one group per distinct irrep that has a live instruction.
        in_sl = irreps_in.slices()
        groups: dict[Any, dict[str, Any]] = {}
        for n, (i, o) in enumerate(ins):
            if irreps_in[i].mul == 0 or irreps_out[o].mul == 0:
                continue
            g = groups.setdefault(irreps_in[i].ir, {"in": [], "out": [], "ins": []})
            if i not in g["in"]:
                g["in"].append(i)
            if o not in g["out"]:
                g["out"].append(o)
            g["ins"].append(n)
        self._groups: list[dict[str, Any]] = []
        gather: list[torch.Tensor] = []
        scale = torch.zeros(self.weight_numel, dtype=torch.float64)
        for n, a in enumerate(self._alphas):
            i, o = ins[n]
            scale[self._offsets[n] : self._offsets[n] + irreps_in[i].mul * irreps_out[o].mul] = a
        gpos = 0
        for ir, g in groups.items():
            g["in"].sort()
            g["out"].sort()
            rows = {i: sum(irreps_in[j].mul for j in g["in"] if j < i) for i in g["in"]}
            cols = {o: sum(irreps_out[j].mul for j in g["out"] if j < o) for o in g["out"]}
            K = sum(irreps_in[i].mul for i in g["in"])
            M = sum(irreps_out[o].mul for o in g["out"])
            idx = torch.full((K, M), self.weight_numel, dtype=torch.long)  # points at an appended zero
            for n in g["ins"]:
                i, o = ins[n]
                mi, mo = irreps_in[i].mul, irreps_out[o].mul
                flat = torch.arange(self._offsets[n], self._offsets[n] + mi * mo).reshape(mi, mo)
                idx[rows[i] : rows[i] + mi, cols[o] : cols[o] + mo] = flat
            gather.append(idx.reshape(-1))
            self._groups.append(
                {
                    "d": ir.dim,
                    "K": K,
                    "M": M,
                    "wpos": (gpos, gpos + K * M),
                    "in": [(in_sl[i].start, in_sl[i].stop) for i in g["in"]],
                    "out": [(o, irreps_out[o].mul * ir.dim) for o in g["out"]],
                }
            )
            gpos += K * M
        out_sl = irreps_out.slices()
        self._plan: tuple[_GroupSpec, ...] = tuple(
            (
                g["d"],
                g["K"],
                g["M"],
                _merge(g["in"]),
                _merge([(out_sl[o].start, out_sl[o].stop) for o, _ in g["out"]]),
            )
            for g in self._groups
        )
        # Whether the products fill every output column (else the output starts from zeros).
        self._covered = sum(b - a for *_, rout in self._plan for a, b in rout) == irreps_out.dim
        self.register_buffer(
            "_gather", torch.cat(gather) if gather else torch.zeros(0, dtype=torch.long), persistent=False
        )
        self.register_buffer("_scale", scale, persistent=False)
        self._bias_pos: dict[int, tuple[int, int]] = {}
        bo = 0
        for o, (b, (mul, _)) in enumerate(zip(biases, irreps_out)):
            if b:
                self._bias_pos[o] = (bo, bo + mul)
                bo += mul
        self._out_dims = [mul * ir.dim for mul, ir in irreps_out]
        # Block pairs of the compiled kernels: one per (input block, output block); a repeated instruction
        # replaces the earlier one, as in the gathered group matrices above.
        pairs: dict[tuple[int, int], tuple[int, int, int, int, int, int, float]] = {}
        for n, (i, o) in enumerate(ins):
            (mi, ir), mo = irreps_in[i], irreps_out[o].mul
            if mi > 0 and mo > 0:
                pairs[(i, o)] = (in_sl[i].start, mi, out_sl[o].start, mo, ir.dim, self._offsets[n], self._alphas[n])
        self._kernel = LinearKernelPlan(list(pairs.values()), irreps_in.dim, irreps_out.dim, self.weight_numel)

    def _apply(self, fn: Any, recurse: bool = True) -> Linear:
        scale = self._scale.detach().to(torch.float64).clone()
        super()._apply(fn, recurse)
        # Keep the normalisation constants exact (float64 master copy).
        self._scale = scale.to(self._scale.device)
        return self

    def forward(
        self, x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x [..., irreps_in.dim]`` -> ``[..., irreps_out.dim]``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim < 1 or x.shape[-1] != self.irreps_in.dim:
            raise ValueError(
                f"x has shape {tuple(x.shape)} but its last dimension must be "
                f"{self.irreps_in!r}.dim = {self.irreps_in.dim}"
            )
        w = self._check_param(weight, self.weight, self.weight_numel, "weight")
        b = self._check_param(bias, self.bias, self.bias_numel, "bias")
        batch = x.shape[:-1]
        if not self.shared_weights:
            shapes = [batch]
            if self.weight_numel:
                shapes.append(w.shape[:-1])
            if self.bias_numel:
                shapes.append(b.shape[:-1])
            batch = torch.broadcast_shapes(*shapes)
            x = x.expand(batch + (self.irreps_in.dim,))
            n = math.prod(batch)
            w = w.expand(batch + (self.weight_numel,)).reshape(n, self.weight_numel)
            b = b.expand(batch + (self.bias_numel,)).reshape(n, self.bias_numel)
        x = x.reshape(-1, self.irreps_in.dim)
        Z = x.shape[0]
        w = w.to(x.dtype)
        b = b.to(x.dtype)
        if self.shared_weights and self._groups and self._kernel_ok(x, w):
            out = _KernelLinear.apply(x, w, self)
            if self._bias_pos:
                out = out + self._bias_row(b, x)
            return out.reshape(batch + (self.irreps_out.dim,))
        if self.shared_weights and self._groups and self._fast_path_ok(x):
            Ws = self._group_weights(w)
            out = _SharedLinear.apply(x, self._plan, self.irreps_in.dim, self.irreps_out.dim, self._covered, *Ws)
            if self._bias_pos:
                out = out + self._bias_row(b, x)
            return out.reshape(batch + (self.irreps_out.dim,))
        parts: dict[int, torch.Tensor] = {}
        if self._groups:
            scale = self._scale.to(x.dtype)
            zero = w.new_zeros(w.shape[:-1] + (1,))
            wext = torch.cat([w * scale, zero], dim=-1)
            wall = wext[..., self._gather]
            for g in self._groups:
                d, K, M = g["d"], g["K"], g["M"]
                W = wall[..., g["wpos"][0] : g["wpos"][1]]
                xs = [x[:, s:e] for s, e in g["in"]]
                xg = xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)  # [Z, K * d]
                if self.shared_weights:
                    W = W.reshape(K, M)
                    if d == 1:
                        y = xg @ W
                    elif d <= _KRON_MAX_DIM:
                        y = xg @ _kron(W, d)
                    else:
                        y = (xg.reshape(Z, K, d).transpose(1, 2) @ W).transpose(1, 2).reshape(Z, M * d)
                else:
                    W = W.reshape(Z, K, M)
                    y = torch.bmm(W.transpose(1, 2), xg.reshape(Z, K, d)).reshape(Z, M * d)
                if len(g["out"]) == 1:
                    parts[g["out"][0][0]] = y
                else:
                    pieces = torch.split(y, [n for _, n in g["out"]], dim=1)
                    for (o, _), piece in zip(g["out"], pieces):
                        parts[o] = piece
        outs = []
        for o, n in enumerate(self._out_dims):
            if n == 0:
                continue
            y = parts.get(o)
            if o in self._bias_pos:
                s, e = self._bias_pos[o]
                bb = b[..., s:e]
                y = bb.expand(Z, n) if y is None else y + bb
            if y is None:
                y = x.new_zeros(Z, n)
            outs.append(y)
        if not outs:
            out = x.new_zeros(Z, self.irreps_out.dim)
        elif len(outs) == 1:
            out = outs[0]
        else:
            out = torch.cat(outs, dim=1)
        return out.reshape(batch + (self.irreps_out.dim,))

    @staticmethod
    def _fast_path_ok(x: torch.Tensor) -> bool:
        """Whether :class:`_SharedLinear` may run: not while ``torch.compile`` traces or under ``torch.func``
        transforms (both take the plain formulation, which they can trace and batch)."""
        if torch.jit.is_scripting() or torch.compiler.is_compiling():
            return False
        if _functorch_active is not None and _functorch_active():
            return False
        return type(x) is torch.Tensor or isinstance(x, torch.nn.Parameter)

    def _kernel_ok(self, x: torch.Tensor, w: torch.Tensor) -> bool:
        """Whether :class:`_KernelLinear` may run: where :class:`_SharedLinear` may (see :meth:`_fast_path_ok`),
        on CPU float32/float64 strided tensors, not while tracing, unless ``EUCLIDNET_DISABLE_KERNELS`` is set
        or the kernels cannot be built."""
        if not self._fast_path_ok(x) or torch.jit.is_tracing():
            return False
        if x.dtype not in (torch.float32, torch.float64) or w.dtype != x.dtype:
            return False
        for t in (x, w):
            if t.device.type != "cpu" or t.layout != torch.strided:
                return False
            if type(t) is not torch.Tensor and not isinstance(t, torch.nn.Parameter):
                return False
        return not kernels_disabled() and linear_kernel_available()

    def _group_weights(self, w: torch.Tensor) -> list[torch.Tensor]:
        """The scaled group matrices ``[K, M]`` (one per irrep of :attr:`_plan`) from the flat weights ``w``."""
        scale = self._scale.to(w.dtype)
        wall = torch.cat([w * scale, w.new_zeros(1)])[self._gather]
        return [wall[g["wpos"][0] : g["wpos"][1]].view(g["K"], g["M"]) for g in self._groups]

    def _flat_weight_grad(self, w: torch.Tensor, gWs: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """The gradient w.r.t. the flat weights ``w`` from those w.r.t. :meth:`_group_weights` (differentiable)."""
        parts = [
            (gW if gW is not None else w.new_zeros(g["K"], g["M"])).reshape(-1) for gW, g in zip(gWs, self._groups)
        ]
        full = w.new_zeros(self.weight_numel + 1).index_add(0, self._gather, torch.cat(parts))
        return full[:-1] * self._scale.to(w.dtype)

    def _bias_row(self, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The biases laid out as one output row ``[irreps_out.dim]`` (zeros off the biased blocks)."""
        cols, at = [], 0
        out_sl = self.irreps_out.slices()
        for o, (s, e) in sorted(self._bias_pos.items()):
            start = out_sl[o].start
            if start > at:
                cols.append(x.new_zeros(start - at))
            cols.append(b[s:e])
            at = start + (e - s)
        if at < self.irreps_out.dim:
            cols.append(x.new_zeros(self.irreps_out.dim - at))
        return torch.cat(cols)

    def _check_param(self, given: torch.Tensor | None, internal: torch.Tensor, numel: int, name: str) -> torch.Tensor:
        if given is None:
            if numel > 0 and not self.internal_weights:
                raise ValueError(
                    f"Linear has no internal weights: pass {name} of shape "
                    f"{'[' if self.shared_weights else '[batch, '}{numel}]"
                )
            if numel == 0 and not self.shared_weights:
                return internal.new_zeros(1, 0)
            return internal
        if not isinstance(given, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(given).__name__}")
        if self.shared_weights:
            if given.shape != (numel,):
                raise ValueError(f"{name} has shape {tuple(given.shape)}; expected ({numel},) (shared weights)")
        elif given.ndim < 2 or given.shape[-1] != numel:
            raise ValueError(
                f"{name} has shape {tuple(given.shape)}; expected [..., {numel}] with a batch dimension "
                "(per-sample weights, shared_weights=False)"
            )
        return given

    def extra_repr(self) -> str:
        return (
            f"{self.irreps_in} -> {self.irreps_out} | {self.weight_numel} weights, {self.bias_numel} biases, "
            f"shared_weights={self.shared_weights}"
        )
