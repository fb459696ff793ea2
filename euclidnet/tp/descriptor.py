"""Tensor products as data: the paths, their normalisation, their weight layout and their CG blocks.

A :class:`TensorProductDescriptor` says *what* a tensor product computes, independently of *how* it is
executed (see :mod:`euclidnet.tp.execution`). It is immutable and cheap to inspect::

    desc = TensorProductDescriptor("32x0e+32x1o", "0e+1o", "32x0e+32x1o", [(0, 0, 0, "uvu", True), ...])
    desc.paths[0].coefficient, desc.paths[0].weight_slice, desc.cg(0)

Semantics of one path ``(i_in1, i_in2, i_out, mode, has_weight, path_weight)`` (e3nn's conventions, which
are ours): with ``x1`` block ``i_in1`` viewed as ``[mul1, 2l1 + 1]``, ``x2`` block ``i_in2`` as
``[mul2, 2l2 + 1]`` and ``C`` = ``wigner_3j(l1, l2, l_out)``, the path adds to output block ``i_out``

=========  ==========================================================  ====================================
mode       contribution ``out[w, k]`` (times ``coefficient``)             weight shape
=========  ==========================================================  ====================================
``uvw``    ``sum_uvij W[u,v,w] C[i,j,k] x1[u,i] x2[v,j]``              ``[mul1, mul2, mul_out]``
``uvu``    ``out[u,k] = sum_vij W[u,v] C x1[u,i] x2[v,j]``             ``[mul1, mul2]`` (mul_out = mul1)
``uvv``    ``out[v,k] = sum_uij W[u,v] C x1[u,i] x2[v,j]``             ``[mul1, mul2]`` (mul_out = mul2)
``uuw``    ``out[w,k] = sum_uij W[u,w] C x1[u,i] x2[u,j]``             ``[mul1, mul_out]`` (mul1 = mul2)
``uuu``    ``out[u,k] = sum_ij W[u] C x1[u,i] x2[u,j]``                ``[mul1]`` (all muls equal)
``uvuv``   ``out[(u,v),k] = sum_ij W[u,v] C x1[u,i] x2[v,j]``          ``[mul1, mul2]`` (mul_out = mul1 mul2)
``uvu<v``  ``out[q,k] = sum_ij W[q] C x1[u_q,i] x2[v_q,j]``, u_q < v_q   ``[mul (mul - 1) / 2]``
``u<vw``   ``out[w,k] = sum_qij W[q,w] C x1[u_q,i] x2[v_q,j]``          ``[mul (mul - 1) / 2, mul_out]``
=========  ==========================================================  ====================================

Without weights, ``W`` is 1 (``uuw`` then needs mul_out = 1, ``uvw`` and ``u<vw`` need weights). The pairs
``q = (u_q, v_q)`` enumerate ``u < v`` row-major (``torch.triu_indices(mul, mul, 1)``).

Normalisation (``coefficient``, exactly e3nn's): ``sqrt(alpha * path_weight / fan_in)`` with ``alpha`` =
``2 l_out + 1`` ('component'), ``(2 l1 + 1)(2 l2 + 1)`` ('norm') or 1 ('none'); ``fan_in`` = for
'element' the sum of ``num_elements`` over all paths into the same output block, for 'path' the path's own
``num_elements`` times the number of paths into that output, for 'none' 1 (a zero fan-in counts as 1).
``num_elements`` is ``mul1 mul2`` (uvw), ``mul2`` (uvu), ``mul1`` (uvv, uuw), ``1`` (uuu, uvuv, uvu<v) and
``mul1 (mul1 - 1) / 2`` (u<vw).

Weights are one flat vector, the weighted paths in instruction order, each row-major in its shape (the
layout of e3nn, so weights port unchanged).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..o3.irreps import Irreps
from ..o3.wigner import wigner_3j

__all__ = ["MODES", "Path", "TensorProductDescriptor", "parse_instruction"]

MODES: tuple[str, ...] = ("uvw", "uvu", "uvv", "uuw", "uuu", "uvuv", "uvu<v", "u<vw")
IRREP_NORMALIZATIONS = ("component", "norm", "none")
PATH_NORMALIZATIONS = ("element", "path", "none")


def _weight_shape(mode: str, mul1: int, mul2: int, mul_out: int) -> tuple[int, ...]:
    return {
        "uvw": (mul1, mul2, mul_out),
        "uvu": (mul1, mul2),
        "uvv": (mul1, mul2),
        "uuw": (mul1, mul_out),
        "uuu": (mul1,),
        "uvuv": (mul1, mul2),
        "uvu<v": (mul1 * (mul2 - 1) // 2,),
        "u<vw": (mul1 * (mul2 - 1) // 2, mul_out),
    }[mode]


def _num_elements(mode: str, mul1: int, mul2: int) -> int:
    return {
        "uvw": mul1 * mul2,
        "uvu": mul2,
        "uvv": mul1,
        "uuw": mul1,
        "uuu": 1,
        "uvuv": 1,
        "uvu<v": 1,
        "u<vw": mul1 * (mul2 - 1) // 2,
    }[mode]


@dataclass(frozen=True)
class Path:
    """One path of a tensor product (see the module docstring for its meaning).

    Attributes:
        i_in1, i_in2, i_out: block indices into ``irreps_in1``, ``irreps_in2``, ``irreps_out``.
        mode: one of :data:`MODES`.
        has_weight: whether the path has learnable weights.
        path_weight: the user's extra factor (inside the square root, as in e3nn).
        coefficient: the final multiplicative normalisation of this path.
        weight_shape: the shape of its weights (also given when it has none, for reference).
        weight_offset: offset of its weights in the flat weight vector (``-1`` without weights).
        l1, l2, l_out: degrees; mul1, mul2, mul_out: multiplicities.
    """

    i_in1: int
    i_in2: int
    i_out: int
    mode: str
    has_weight: bool
    path_weight: float
    coefficient: float
    weight_shape: tuple[int, ...]
    weight_offset: int
    l1: int
    l2: int
    l_out: int
    mul1: int
    mul2: int
    mul_out: int

    @property
    def weight_numel(self) -> int:
        """Number of weights of this path (0 without weights)."""
        return math.prod(self.weight_shape) if self.has_weight else 0

    @property
    def weight_slice(self) -> slice:
        """Slice of this path's weights in the flat weight vector (empty without weights)."""
        if not self.has_weight:
            return slice(0, 0)
        return slice(self.weight_offset, self.weight_offset + self.weight_numel)

    @property
    def is_empty(self) -> bool:
        """True if the path computes nothing (some multiplicity is zero or its coefficient is 0)."""
        return self.mul1 == 0 or self.mul2 == 0 or self.mul_out == 0 or self.coefficient == 0.0

    def as_instruction(self) -> tuple[int, int, int, str, bool, float]:
        """The instruction tuple this path was built from."""
        return (self.i_in1, self.i_in2, self.i_out, self.mode, self.has_weight, self.path_weight)


def parse_instruction(ins: Any, irreps_in1: Irreps, irreps_in2: Irreps, irreps_out: Irreps) -> tuple:
    """Validate one instruction ``(i_in1, i_in2, i_out, mode, has_weight[, path_weight])``.

    Returns the normalised 6-tuple. Raises ValueError/TypeError naming the instruction.
    """
    try:
        items = tuple(ins)
    except TypeError:
        raise TypeError(
            f"instruction {ins!r} must be a tuple (i_in1, i_in2, i_out, mode, has_weight[, path_weight])"
        ) from None
    if len(items) not in (5, 6):
        raise ValueError(
            f"instruction {ins!r} has {len(items)} entries; expected (i_in1, i_in2, i_out, mode, has_weight"
            "[, path_weight])"
        )
    i1, i2, io, mode, has_weight = items[:5]
    path_weight = float(items[5]) if len(items) == 6 else 1.0
    for name, idx, irreps in (("i_in1", i1, irreps_in1), ("i_in2", i2, irreps_in2), ("i_out", io, irreps_out)):
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise TypeError(f"instruction {ins!r}: {name} must be an int, got {idx!r}")
        if not 0 <= idx < len(irreps):
            raise ValueError(
                f"instruction {ins!r}: {name}={idx} does not exist; {irreps!r} has {len(irreps)} blocks "
                f"(valid indices 0..{len(irreps) - 1})"
            )
    if mode not in MODES:
        raise ValueError(f"instruction {ins!r}: invalid mode {mode!r}; valid modes are {', '.join(MODES)}")
    if not isinstance(has_weight, bool):
        raise TypeError(f"instruction {ins!r}: has_weight must be a bool, got {has_weight!r}")
    if not math.isfinite(path_weight) or path_weight < 0:
        raise ValueError(f"instruction {ins!r}: path_weight must be a finite number >= 0, got {path_weight}")
    (m1, ir1), (m2, ir2), (mo, iro) = irreps_in1[i1], irreps_in2[i2], irreps_out[io]
    if not abs(ir1.l - ir2.l) <= iro.l <= ir1.l + ir2.l:
        raise ValueError(
            f"instruction {ins!r} violates the selection rule |l1 - l2| <= l_out <= l1 + l2: {ir1} x {ir2} -> {iro}"
        )
    if ir1.p * ir2.p != iro.p:
        raise ValueError(f"instruction {ins!r} violates parity p1 * p2 == p_out: {ir1} x {ir2} -> {iro}")
    need = {
        "uvu": (m1 == mo, f"mul1 == mul_out ({m1} != {mo})"),
        "uvv": (m2 == mo, f"mul2 == mul_out ({m2} != {mo})"),
        "uuw": (m1 == m2 and (has_weight or mo == 1), f"mul1 == mul2 ({m1}, {m2}) and, without weights, mul_out == 1"),
        "uuu": (m1 == m2 == mo, f"mul1 == mul2 == mul_out ({m1}, {m2}, {mo})"),
        "uvuv": (m1 * m2 == mo, f"mul1 * mul2 == mul_out ({m1} * {m2} != {mo})"),
        "uvu<v": (
            m1 == m2 and m1 * (m1 - 1) // 2 == mo,
            f"mul1 == mul2 == m and mul_out == m(m-1)/2 ({m1}, {m2}, {mo})",
        ),
        "u<vw": (m1 == m2 and has_weight, f"mul1 == mul2 ({m1}, {m2}) and has_weight=True"),
        "uvw": (has_weight, "has_weight=True"),
    }[mode]
    if not need[0]:
        raise ValueError(f"instruction {ins!r}: mode {mode!r} requires {need[1]}")
    return (i1, i2, io, mode, has_weight, path_weight)


@dataclass(frozen=True)
class TensorProductDescriptor:
    """Immutable description of a tensor product: irreps, paths with normalisation, weight layout.

    Args:
        irreps_in1, irreps_in2, irreps_out: the irreps of the two inputs and of the output.
        instructions: ``(i_in1, i_in2, i_out, mode, has_weight[, path_weight])`` tuples.
        irrep_normalization: 'component' (default), 'norm' or 'none'.
        path_normalization: 'element' (default), 'path' or 'none'.

    Raises:
        ValueError: bad instruction (missing block, selection rule, parity, invalid mode, multiplicities)
            or bad normalisation name.
    """

    irreps_in1: Irreps
    irreps_in2: Irreps
    irreps_out: Irreps
    paths: tuple[Path, ...]
    irrep_normalization: str
    path_normalization: str

    @classmethod
    def build(
        cls,
        irreps_in1: Any,
        irreps_in2: Any,
        irreps_out: Any,
        instructions: Sequence[Any],
        irrep_normalization: str = "component",
        path_normalization: str = "element",
    ) -> TensorProductDescriptor:
        """Validate the instructions and compute the normalisation and the weight layout."""
        irreps_in1, irreps_in2, irreps_out = Irreps(irreps_in1), Irreps(irreps_in2), Irreps(irreps_out)
        if irrep_normalization not in IRREP_NORMALIZATIONS:
            raise ValueError(f"irrep_normalization must be one of {IRREP_NORMALIZATIONS}, got {irrep_normalization!r}")
        if path_normalization not in PATH_NORMALIZATIONS:
            raise ValueError(f"path_normalization must be one of {PATH_NORMALIZATIONS}, got {path_normalization!r}")
        if isinstance(instructions, (str, bytes)):
            raise TypeError(f"instructions must be a list of tuples, got {instructions!r}")
        ins = [parse_instruction(x, irreps_in1, irreps_in2, irreps_out) for x in instructions]

        def n_el(x: tuple) -> int:
            return _num_elements(x[3], irreps_in1[x[0]].mul, irreps_in2[x[1]].mul)

        paths = []
        offset = 0
        for x in ins:
            i1, i2, io, mode, has_weight, pw = x
            (m1, ir1), (m2, ir2), (mo, iro) = irreps_in1[i1], irreps_in2[i2], irreps_out[io]
            alpha = {"component": iro.dim, "norm": ir1.dim * ir2.dim, "none": 1}[irrep_normalization]
            if path_normalization == "element":
                fan = sum(n_el(y) for y in ins if y[2] == io)
            elif path_normalization == "path":
                fan = n_el(x) * sum(1 for y in ins if y[2] == io)
            else:
                fan = 1
            if fan > 0:
                alpha /= fan
            coefficient = math.sqrt(alpha * pw)
            shape = _weight_shape(mode, m1, m2, mo)
            paths.append(
                Path(
                    i1,
                    i2,
                    io,
                    mode,
                    has_weight,
                    pw,
                    coefficient,
                    shape,
                    offset if has_weight else -1,
                    ir1.l,
                    ir2.l,
                    iro.l,
                    m1,
                    m2,
                    mo,
                )
            )
            if has_weight:
                offset += math.prod(shape)
        return cls(irreps_in1, irreps_in2, irreps_out, tuple(paths), irrep_normalization, path_normalization)

    @property
    def weight_numel(self) -> int:
        """Length of the flat weight vector."""
        return sum(p.weight_numel for p in self.paths)

    @property
    def instructions(self) -> list[tuple[int, int, int, str, bool, float]]:
        """The instruction tuples (with the user's path weights)."""
        return [p.as_instruction() for p in self.paths]

    def cg(self, index: int, dtype: torch.dtype = torch.float64, scaled: bool = False) -> torch.Tensor:
        """The CG block ``wigner_3j(l1, l2, l_out)`` of path ``index``; times its coefficient if ``scaled``."""
        p = self.paths[index]
        C = wigner_3j(p.l1, p.l2, p.l_out, dtype=torch.float64)
        if scaled:
            C = C * p.coefficient
        return C.to(dtype)

    def output_mask(self) -> torch.Tensor:
        """``[dim_out]`` 1.0 where some non-empty path writes, 0.0 elsewhere (e3nn's ``output_mask``)."""
        parts = []
        for io, (mul, ir) in enumerate(self.irreps_out):
            live = any(p.i_out == io and not p.is_empty for p in self.paths)
            parts.append(torch.full((mul * ir.dim,), 1.0 if live else 0.0))
        return torch.cat(parts) if parts else torch.zeros(0)

    def num_multiply_adds(self, batch: int = 1) -> int:
        """Useful multiply-adds: nonzero CG entries x multiplicities x batch (WORKLOADS.md's count).

        The multiplicity factor is the number of ``(u, v, w)`` index combinations of the mode.
        """
        total = 0
        for p in self.paths:
            if p.is_empty:
                continue
            nnz = int((wigner_3j(p.l1, p.l2, p.l_out, dtype=torch.float64) != 0).sum())
            muls = {
                "uvw": p.mul1 * p.mul2 * p.mul_out,
                "uvu": p.mul1 * p.mul2,
                "uvv": p.mul1 * p.mul2,
                "uuw": p.mul1 * p.mul_out,
                "uuu": p.mul1,
                "uvuv": p.mul1 * p.mul2,
                "uvu<v": p.mul_out,
                "u<vw": p.weight_shape[0] * p.mul_out,
            }[p.mode]
            total += nnz * muls
        return total * batch

    def __repr__(self) -> str:
        return (
            f"TensorProductDescriptor({self.irreps_in1} x {self.irreps_in2} -> {self.irreps_out} | "
            f"{len(self.paths)} paths | {self.weight_numel} weights)"
        )
