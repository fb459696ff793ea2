"""Tensor product modules (e3nn-compatible conventions, weight layouts and normalisation).

:class:`TensorProduct` is the general module built from instructions; the subclasses build the usual
instruction sets. The data (paths, normalisation, weight layout) is ``module.descriptor``
(:class:`~euclidnet.tp.descriptor.TensorProductDescriptor`); the kernels are in
:mod:`euclidnet.tp.execution`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from ..kernels import _tp as _tpk
from ..o3.irreps import Irrep, Irreps
from .descriptor import TensorProductDescriptor
from .execution import TensorProductExecutor, fused_usable

__all__ = [
    "TensorProduct",
    "FullyConnectedTensorProduct",
    "ChannelwiseTensorProduct",
    "ElementwiseTensorProduct",
    "FullTensorProduct",
    "TensorSquare",
]


def _check_features(x: Any, irreps: Irreps, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != irreps.dim:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)} but its last dimension must be {irreps!r}.dim = {irreps.dim}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {x.dtype}")


class TensorProduct(torch.nn.Module):
    """Equivariant bilinear map ``(x1, x2) -> out`` defined by a list of paths.

    Args:
        irreps_in1, irreps_in2, irreps_out: irreps of ``x1``, ``x2`` and of the output.
        instructions: ``(i_in1, i_in2, i_out, mode, has_weight[, path_weight])`` tuples, modes
            ``uvw``, ``uvu``, ``uvv``, ``uuw``, ``uuu``, ``uvuv``, ``uvu<v``, ``u<vw`` (meaning in
            :mod:`euclidnet.tp.descriptor`).
        irrep_normalization: 'component' (default), 'norm' or 'none'.
        path_normalization: 'element' (default), 'path' or 'none'.
        internal_weights: store the weights as a parameter (default: ``shared_weights`` and some path
            has weights).
        shared_weights: one weight vector for the whole batch (default True); ``False`` means per-sample
            weights ``[..., weight_numel]`` passed to ``forward``.

    ``forward(x1 [..., dim1], x2 [..., dim2], weight=None)`` -> ``[..., dim_out]``; batch dimensions
    broadcast (also with per-sample weights). Internal weights are initialised N(0, 1) (as in e3nn), which
    with unit-variance inputs gives unit-variance outputs.
    """

    def __init__(
        self,
        irreps_in1: Any,
        irreps_in2: Any,
        irreps_out: Any,
        instructions: Sequence[Any],
        irrep_normalization: str = "component",
        path_normalization: str = "element",
        internal_weights: bool | None = None,
        shared_weights: bool | None = None,
    ) -> None:
        super().__init__()
        desc = TensorProductDescriptor.build(
            irreps_in1, irreps_in2, irreps_out, instructions, irrep_normalization, path_normalization
        )
        if shared_weights is False and internal_weights is None:
            internal_weights = False
        if shared_weights is None:
            shared_weights = True
        if internal_weights is None:
            internal_weights = shared_weights and any(p.has_weight for p in desc.paths)
        if internal_weights and not shared_weights:
            raise ValueError("internal_weights=True requires shared_weights=True (got shared_weights=False)")
        self.descriptor = desc
        self.irreps_in1 = desc.irreps_in1
        self.irreps_in2 = desc.irreps_in2
        self.irreps_out = desc.irreps_out
        self.internal_weights = bool(internal_weights)
        self.shared_weights = bool(shared_weights)
        self.weight_numel = desc.weight_numel
        if self.internal_weights and self.weight_numel > 0:
            self.weight = torch.nn.Parameter(torch.randn(self.weight_numel))
        else:
            self.register_buffer("weight", torch.empty(0), persistent=False)
        self._exec = TensorProductExecutor(desc, self.shared_weights)

    @property
    def instructions(self) -> list[tuple[int, int, int, str, bool, float]]:
        """The instruction tuples (user path weights, before normalisation)."""
        return self.descriptor.instructions

    def weight_view_for_path(self, index: int, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The weights of path ``index`` shaped ``[..., *weight_shape]`` (a view of the flat weights)."""
        p = self.descriptor.paths[index]
        if not p.has_weight:
            raise ValueError(f"path {index} {p.as_instruction()} has no weights")
        w = self.weight if weight is None else weight
        return w[..., p.weight_slice].reshape(w.shape[:-1] + p.weight_shape)

    def _resolve_weight(self, weight: torch.Tensor | None) -> torch.Tensor:
        if weight is None:
            if self.weight_numel > 0 and not self.internal_weights:
                raise ValueError(
                    f"{type(self).__name__} has no internal weights: pass weight of shape "
                    f"{'[' if self.shared_weights else '[batch, '}{self.weight_numel}]"
                )
            return self.weight
        if not isinstance(weight, torch.Tensor):
            raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
        if self.shared_weights:
            if weight.shape != (self.weight_numel,):
                raise ValueError(
                    f"weight has shape {tuple(weight.shape)}; expected ({self.weight_numel},) (shared weights)"
                )
        elif weight.ndim < 2 or weight.shape[-1] != self.weight_numel:
            raise ValueError(
                f"weight has shape {tuple(weight.shape)}; expected [..., {self.weight_numel}] with a batch "
                "dimension (per-sample weights, shared_weights=False)"
            )
        return weight

    def _resolve_basis(self, weight: torch.Tensor | None, weight_basis: torch.Tensor) -> torch.Tensor:
        """Check factored weights: coefficients ``[..., K]`` and ``weight_basis [K, weight_numel]``."""
        if self.shared_weights:
            raise ValueError("weight_basis needs per-sample weights (shared_weights=False)")
        if not isinstance(weight_basis, torch.Tensor) or weight_basis.ndim != 2:
            got = tuple(weight_basis.shape) if isinstance(weight_basis, torch.Tensor) else type(weight_basis).__name__
            raise ValueError(f"weight_basis must be a [K, {self.weight_numel}] tensor, got {got}")
        K = weight_basis.shape[0]
        if weight_basis.shape[1] != self.weight_numel:
            raise ValueError(f"weight_basis has shape {tuple(weight_basis.shape)}; expected [K, {self.weight_numel}]")
        if not isinstance(weight, torch.Tensor) or weight.ndim < 2 or weight.shape[-1] != K:
            got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
            raise ValueError(
                f"weight has shape {got}; with weight_basis [{K}, {self.weight_numel}] expected [..., {K}] "
                "(per-sample coefficients)"
            )
        return weight

    def _factored_engine(self, *tensors: torch.Tensor) -> Any:
        """The block engine when it may run the product with per-sample weights on these tensors, else None."""
        engine = self._exec._fused
        if isinstance(engine, _tpk.SampleBlockEngine) and fused_usable(*tensors):
            return engine
        return None

    def forward(
        self,
        x1: torch.Tensor,
        x2: torch.Tensor,
        weight: torch.Tensor | None = None,
        weight_basis: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x1 [..., irreps_in1.dim]``, ``x2 [..., irreps_in2.dim]`` -> ``[..., irreps_out.dim]``.

        ``weight``: ``[weight_numel]`` (shared) or ``[..., weight_numel]`` (per sample). With
        ``weight_basis [K, weight_numel]`` the per-sample weights are ``weight @ weight_basis``, ``weight``
        being ``[..., K]`` coefficients (e.g. the hidden features of a radial MLP and its output layer, see
        :meth:`euclidnet.nn.FullyConnectedNet.factored`): on CPU the fused kernel then forms each sample's
        weights in cache instead of materialising ``[..., weight_numel]``.
        """
        _check_features(x1, self.irreps_in1, "x1")
        _check_features(x2, self.irreps_in2, "x2")
        if x1.dtype != x2.dtype:
            raise TypeError(f"x1 and x2 must have the same dtype, got {x1.dtype} and {x2.dtype}")
        if weight_basis is not None:
            w = self._resolve_basis(weight, weight_basis)
        else:
            w = self._resolve_weight(weight)
        if self.shared_weights:
            batch = torch.broadcast_shapes(x1.shape[:-1], x2.shape[:-1])
        else:
            batch = torch.broadcast_shapes(x1.shape[:-1], x2.shape[:-1], w.shape[:-1])
            w = w.expand(batch + (w.shape[-1],)).reshape(-1, w.shape[-1])
        x1 = x1.expand(batch + (self.irreps_in1.dim,)).reshape(-1, self.irreps_in1.dim)
        x2 = x2.expand(batch + (self.irreps_in2.dim,)).reshape(-1, self.irreps_in2.dim)
        if w.dtype != x1.dtype and w.numel() > 0:
            w = w.to(x1.dtype)
        if weight_basis is None:
            out = self._exec(x1, x2, w)
        else:
            basis = weight_basis.to(x1.dtype)
            engine = self._factored_engine(x1, x2, w, basis)
            if engine is not None:
                out = _tpk.BlockTP.apply(engine, x1, x2, w, basis, None, None, None)
            else:
                out = self._exec(x1, x2, w @ basis)
        return out.reshape(batch + (self.irreps_out.dim,))

    def scatter(
        self,
        x1: torch.Tensor,
        x2: torch.Tensor,
        src: torch.Tensor,
        dst: torch.Tensor,
        num_out: int,
        weight: torch.Tensor | None = None,
        weight_basis: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Message passing: ``out[i] = sum over samples e with dst[e] = i of self(x1[src[e]], x2[e], weight[e])``.

        ``x1 [N, irreps_in1.dim]`` (e.g. node features), ``x2 [E, irreps_in2.dim]`` (e.g. edge harmonics),
        ``src``, ``dst`` integer ``[E]`` with ``0 <= src < N`` and ``0 <= dst < num_out``, ``weight``
        ``[E, weight_numel]`` (per-sample), ``[E, K]`` with ``weight_basis [K, weight_numel]`` (factored, as
        in :meth:`forward`) or as in :meth:`forward` (shared) -> ``[num_out, irreps_out.dim]``.
        Equal to ``index_add(0, dst, self(x1[src], x2, weight))``; with per-sample weights on CPU the fused
        kernel computes it without materialising ``x1[src]``, the ``[E, irreps_out.dim]`` messages or the
        factored weights (each output row is summed in increasing ``e``, independently of the thread count).
        """
        _check_features(x1, self.irreps_in1, "x1")
        _check_features(x2, self.irreps_in2, "x2")
        if x1.ndim != 2 or x2.ndim != 2:
            raise ValueError(f"scatter: x1 and x2 must be 2-D, got shapes {tuple(x1.shape)} and {tuple(x2.shape)}")
        if x1.dtype != x2.dtype:
            raise TypeError(f"x1 and x2 must have the same dtype, got {x1.dtype} and {x2.dtype}")
        E = x2.shape[0]
        for name, idx in (("src", src), ("dst", dst)):
            if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.int32, torch.int64) or idx.shape != (E,):
                got = f"{idx.dtype} {tuple(idx.shape)}" if isinstance(idx, torch.Tensor) else type(idx).__name__
                raise ValueError(f"scatter: {name} must be an integer tensor of shape ({E},) (one per row of x2), "
                                 f"got {got}")
        num_out = int(num_out)
        if E > 0:
            for name, idx, hi in (("src", src, x1.shape[0]), ("dst", dst, num_out)):
                lo_v, hi_v = int(idx.min()), int(idx.max())
                if lo_v < 0 or hi_v >= hi:
                    raise IndexError(f"scatter: {name} has values in [{lo_v}, {hi_v}]; expected [0, {hi - 1}]")
        if weight_basis is not None:
            w = self._resolve_basis(weight, weight_basis)
        else:
            w = self._resolve_weight(weight)
        if not self.shared_weights:
            K = w.shape[-1]
            if w.shape != (E, K):
                raise ValueError(f"weight has shape {tuple(w.shape)}; expected ({E}, {K})")
            if w.dtype != x1.dtype and w.numel() > 0:
                w = w.to(x1.dtype)
            basis = None if weight_basis is None else weight_basis.to(x1.dtype)
            engine = self._factored_engine(x1, x2, w, *([] if basis is None else [basis]))
            if engine is not None:
                return _tpk.BlockTP.apply(engine, x1, x2, w, basis, src, dst, num_out)
            if basis is not None:
                weight = w @ basis
        msg = self.forward(x1[src], x2, weight)
        return msg.new_zeros(num_out, msg.shape[1]).index_add(0, dst, msg)

    def extra_repr(self) -> str:
        d = self.descriptor
        return (
            f"{d.irreps_in1} x {d.irreps_in2} -> {d.irreps_out} | {len(d.paths)} paths | "
            f"{self.weight_numel} weights, shared_weights={self.shared_weights}, "
            f"internal_weights={self.internal_weights}"
        )


def _sort_e3nn(blocks: list[tuple[int, Irrep]]) -> tuple[Irreps, list[int]]:
    """Stable sort of blocks by ``(l, p)`` (odd before even at equal ``l``): e3nn's ``Irreps.sort`` order.

    Returns the sorted irreps and ``perm`` with ``perm[old] = new``. (Note: this differs from
    :meth:`Irreps.sort`, which puts even before odd; it is used so that the output irreps of
    :class:`FullTensorProduct`, :class:`TensorSquare` and :class:`ChannelwiseTensorProduct` are e3nn's.)
    """
    order = sorted(range(len(blocks)), key=lambda i: (blocks[i][1].l, blocks[i][1].p))
    perm = [0] * len(blocks)
    for new, old in enumerate(order):
        perm[old] = new
    return Irreps([blocks[i] for i in order]), perm


def _filter(filter_ir_out: Iterable[Any] | None) -> list[Irrep] | None:
    if filter_ir_out is None:
        return None
    try:
        return [Irrep(ir) for ir in filter_ir_out]
    except (ValueError, TypeError) as exc:
        raise ValueError(f"filter_ir_out={filter_ir_out!r} must be an iterable of irreps: {exc}") from None


class FullyConnectedTensorProduct(TensorProduct):
    """All 'uvw' paths allowed by the selection rules, weighted (internal shared weights by default).

    ``out_w = sum_{u,v} W_uvw x1_u (x) x2_v`` summed over every ``(i_in1, i_in2, i_out)`` with
    ``ir_out in ir1 * ir2``, in e3nn's instruction order (loops over in1, in2, out blocks).
    """

    def __init__(
        self,
        irreps_in1: Any,
        irreps_in2: Any,
        irreps_out: Any,
        irrep_normalization: str = "component",
        path_normalization: str = "element",
        internal_weights: bool | None = None,
        shared_weights: bool | None = None,
    ) -> None:
        irreps_in1, irreps_in2, irreps_out = Irreps(irreps_in1), Irreps(irreps_in2), Irreps(irreps_out)
        instr = [
            (i1, i2, io, "uvw", True, 1.0)
            for i1, (_, ir1) in enumerate(irreps_in1)
            for i2, (_, ir2) in enumerate(irreps_in2)
            for io, (_, iro) in enumerate(irreps_out)
            if iro in list(ir1 * ir2)
        ]
        super().__init__(
            irreps_in1,
            irreps_in2,
            irreps_out,
            instr,
            irrep_normalization,
            path_normalization,
            internal_weights,
            shared_weights,
        )


class ChannelwiseTensorProduct(TensorProduct):
    """Channel-wise ('uvu') tensor product with per-sample weights: the NequIP edge convolution.

    With ``irreps_out`` given, one 'uvu' path for every ``(i_in1, i_in2, i_out)`` allowed by the selection
    rules whose output multiplicity equals ``mul1`` (other output blocks cannot be reached channel-wise).
    With ``irreps_out=None`` the output is built like NequIP's: one block ``mul1 x ir_out`` for every
    ``(i_in1, i_in2, ir_out in ir1 * ir2)`` (optionally kept only if in ``filter_ir_out``), then the blocks
    are sorted by irrep (stable; blocks of the same irrep are *not* merged, so every path has its own
    output block). Default: per-sample weights ``[..., weight_numel]`` (``shared_weights=False``).
    """

    def __init__(
        self,
        irreps_in1: Any,
        irreps_in2: Any,
        irreps_out: Any | None = None,
        filter_ir_out: Iterable[Any] | None = None,
        irrep_normalization: str = "component",
        path_normalization: str = "element",
        internal_weights: bool | None = None,
        shared_weights: bool | None = False,
    ) -> None:
        irreps_in1, irreps_in2 = Irreps(irreps_in1), Irreps(irreps_in2)
        filt = _filter(filter_ir_out)
        if irreps_out is None:
            out: list[tuple[int, Irrep]] = []
            instr = []
            for i1, (mul1, ir1) in enumerate(irreps_in1):
                for i2, (_, ir2) in enumerate(irreps_in2):
                    for iro in ir1 * ir2:
                        if filt is not None and iro not in filt:
                            continue
                        instr.append((i1, i2, len(out), "uvu", True, 1.0))
                        out.append((mul1, iro))
            sorted_out, perm = _sort_e3nn(out)
            instr = [(a, b, perm[c], m, h, pw) for a, b, c, m, h, pw in instr]
            irreps_out = sorted_out
        else:
            if filt is not None:
                raise ValueError("give irreps_out or filter_ir_out, not both (ambiguous)")
            irreps_out = Irreps(irreps_out)
            instr = [
                (i1, i2, io, "uvu", True, 1.0)
                for i1, (mul1, ir1) in enumerate(irreps_in1)
                for i2, (_, ir2) in enumerate(irreps_in2)
                for io, (mulo, iro) in enumerate(irreps_out)
                if iro in list(ir1 * ir2) and mulo == mul1
            ]
        super().__init__(
            irreps_in1,
            irreps_in2,
            irreps_out,
            instr,
            irrep_normalization,
            path_normalization,
            internal_weights,
            shared_weights,
        )


class ElementwiseTensorProduct(TensorProduct):
    """``out_u = x1_u (x) x2_u`` ('uuu', no weights) for every pair of irreps at the same position.

    Both inputs must have the same number of irreps (``num_irreps``); blocks are split so that they line
    up. The output has one block per (aligned block, ``ir_out in ir1 * ir2``) in that order, optionally
    filtered by ``filter_ir_out`` (e3nn's construction).
    """

    def __init__(
        self,
        irreps_in1: Any,
        irreps_in2: Any,
        filter_ir_out: Iterable[Any] | None = None,
        irrep_normalization: str = "component",
        path_normalization: str = "element",
    ) -> None:
        irreps_in1, irreps_in2 = Irreps(irreps_in1).simplify(), Irreps(irreps_in2).simplify()
        filt = _filter(filter_ir_out)
        if irreps_in1.num_irreps != irreps_in2.num_irreps:
            raise ValueError(
                f"ElementwiseTensorProduct needs inputs with the same number of irreps: {irreps_in1!r} has "
                f"{irreps_in1.num_irreps}, {irreps_in2!r} has {irreps_in2.num_irreps}"
            )
        a, b = list(irreps_in1), list(irreps_in2)
        i = 0
        while i < len(a):
            (m1, ir1), (m2, ir2) = a[i], b[i]
            if m1 < m2:
                b[i] = (m1, ir2)
                b.insert(i + 1, (m2 - m1, ir2))
            elif m2 < m1:
                a[i] = (m2, ir1)
                a.insert(i + 1, (m1 - m2, ir1))
            i += 1
        out: list[tuple[int, Irrep]] = []
        instr = []
        for i, ((mul, ir1), (_, ir2)) in enumerate(zip(a, b)):
            for iro in ir1 * ir2:
                if filt is not None and iro not in filt:
                    continue
                instr.append((i, i, len(out), "uuu", False))
                out.append((mul, iro))
        super().__init__(Irreps(a), Irreps(b), Irreps(out), instr, irrep_normalization, path_normalization)


class FullTensorProduct(TensorProduct):
    """The full, unweighted tensor product ``out_(u,v) = x1_u (x) x2_v`` ('uvuv' paths).

    Inputs are simplified; for every pair of blocks ``(i1, i2)`` and every ``ir_out in ir1 * ir2`` (optionally
    filtered by ``filter_ir_out``) there is an output block ``(mul1 * mul2) x ir_out``, its channel index
    being ``u * mul2 + v``. The output blocks are then sorted by irrep (stable, not merged): the output
    irreps are e3nn's ``FullTensorProduct(...).irreps_out`` exactly.
    """

    def __init__(
        self,
        irreps_in1: Any,
        irreps_in2: Any,
        filter_ir_out: Iterable[Any] | None = None,
        irrep_normalization: str = "component",
        path_normalization: str = "element",
    ) -> None:
        irreps_in1, irreps_in2 = Irreps(irreps_in1).simplify(), Irreps(irreps_in2).simplify()
        filt = _filter(filter_ir_out)
        out: list[tuple[int, Irrep]] = []
        instr = []
        for i1, (m1, ir1) in enumerate(irreps_in1):
            for i2, (m2, ir2) in enumerate(irreps_in2):
                for iro in ir1 * ir2:
                    if filt is not None and iro not in filt:
                        continue
                    instr.append((i1, i2, len(out), "uvuv", False))
                    out.append((m1 * m2, iro))
        sorted_out, perm = _sort_e3nn(out)
        instr = [(a, b, perm[c], m, h) for a, b, c, m, h in instr]
        super().__init__(irreps_in1, irreps_in2, sorted_out, instr, irrep_normalization, path_normalization)


def _alpha(irrep_normalization: str, ir1: Irrep, ir2: Irrep, iro: Irrep, diagonal: bool) -> float:
    """Path weight of a square path; ``diagonal`` = the symmetric u == v part (e3nn's values)."""
    if not diagonal:
        return {"component": iro.dim, "norm": ir1.dim * ir2.dim, "none": 1.0}[irrep_normalization]
    if irrep_normalization == "component":
        return iro.dim / (ir1.dim + 2) if iro.l == 0 else iro.dim / 2
    if irrep_normalization == "norm":
        return iro.dim * ir1.dim if iro.l == 0 else ir1.dim * (ir1.dim + 2) / 2
    return 1.0


class TensorSquare(TensorProduct):
    """``x (x) x`` decomposed into irreps, without double counting (e3nn's construction and normalisation).

    ``x (x) x`` is symmetric under exchanging the two factors, so only independent products are formed:
    between different blocks ``i1 < i2`` all pairs (``uvuv`` / ``uvw``); within a block of multiplicity
    ``mul``, the pairs ``u < v`` (``uvu<v`` / ``u<vw``) plus the diagonal ``u == v``, for which only even
    ``l_out`` survive (``x_u (x) x_u`` is symmetric, the odd-l part is identically zero) (``uuu`` / ``uuw``).
    The diagonal paths get e3nn's path weights, which make unit-variance inputs give unit-variance outputs.

    * ``TensorSquare(irreps_in)``: no weights, output = the full decomposition of the square (optionally
      filtered by ``filter_ir_out``), blocks sorted by irrep (not merged): e3nn's ``irreps_out``.
    * ``TensorSquare(irreps_in, irreps_out)``: weighted, fully connected into the (simplified) ``irreps_out``.

    ``irreps_in`` is simplified first. ``forward(x, weight=None)``.
    """

    def __init__(
        self,
        irreps_in: Any,
        irreps_out: Any | None = None,
        filter_ir_out: Iterable[Any] | None = None,
        irrep_normalization: str = "component",
        internal_weights: bool | None = None,
        shared_weights: bool | None = None,
    ) -> None:
        from .descriptor import IRREP_NORMALIZATIONS

        if irrep_normalization not in IRREP_NORMALIZATIONS:
            raise ValueError(f"irrep_normalization must be one of {IRREP_NORMALIZATIONS}, got {irrep_normalization!r}")
        irreps_in = Irreps(irreps_in).simplify()
        filt = _filter(filter_ir_out)
        instr: list[tuple] = []
        if irreps_out is None:
            out: list[tuple[int, Irrep]] = []
            for i1, (m1, ir1) in enumerate(irreps_in):
                for i2, (m2, ir2) in enumerate(irreps_in):
                    for iro in ir1 * ir2:
                        if filt is not None and iro not in filt:
                            continue
                        if i1 < i2:
                            instr.append(
                                (i1, i2, len(out), "uvuv", False, _alpha(irrep_normalization, ir1, ir2, iro, False))
                            )
                            out.append((m1 * m2, iro))
                        elif i1 == i2:
                            if m1 > 1:
                                instr.append(
                                    (
                                        i1,
                                        i1,
                                        len(out),
                                        "uvu<v",
                                        False,
                                        _alpha(irrep_normalization, ir1, ir2, iro, False),
                                    )
                                )
                                out.append((m1 * (m1 - 1) // 2, iro))
                            if iro.l % 2 == 0:
                                instr.append(
                                    (i1, i1, len(out), "uuu", False, _alpha(irrep_normalization, ir1, ir2, iro, True))
                                )
                                out.append((m1, iro))
            sorted_out, perm = _sort_e3nn(out)
            instr = [(a, b, perm[c], m, h, pw) for a, b, c, m, h, pw in instr]
            irreps_out = sorted_out
        else:
            if filt is not None:
                raise ValueError("give irreps_out or filter_ir_out, not both (ambiguous)")
            irreps_out = Irreps(irreps_out).simplify()
            for i1, (m1, ir1) in enumerate(irreps_in):
                for i2, (_, ir2) in enumerate(irreps_in):
                    for io, (_, iro) in enumerate(irreps_out):
                        if iro not in list(ir1 * ir2):
                            continue
                        if i1 < i2:
                            instr.append((i1, i2, io, "uvw", True, _alpha(irrep_normalization, ir1, ir2, iro, False)))
                        elif i1 == i2:
                            if m1 > 1:
                                instr.append(
                                    (i1, i1, io, "u<vw", True, _alpha(irrep_normalization, ir1, ir2, iro, False))
                                )
                            if iro.l % 2 == 0:
                                instr.append(
                                    (i1, i1, io, "uuw", True, _alpha(irrep_normalization, ir1, ir2, iro, True))
                                )
        self.irreps_in = irreps_in
        super().__init__(irreps_in, irreps_in, irreps_out, instr, "none", "element", internal_weights, shared_weights)

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """``x [..., irreps_in.dim]`` -> ``[..., irreps_out.dim]``."""
        return super().forward(x, x, weight)
