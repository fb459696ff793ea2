"""Equivariance checks for any function or module — ours or a user's.

Describe each input and output of ``fn`` by how it transforms under O(3):

* an :class:`~euclidnet.o3.Irreps` (or its string, e.g. ``"8x0e + 4x1o"``): features in the last dimension
  transform with ``D(g)``;
* ``"cartesian_points"``: positions ``[..., 3]`` — rotated and, if translations are checked, shifted;
* ``"invariant"``: left untouched (atom types, masks, cutoffs, edge indices...).

Then :func:`equivariance_error` applies random proper rotations, random improper ones (rotation times
inversion), optional translations and an optional permutation of the node axis, and reports the largest
deviation of ``fn(g x)`` from ``g fn(x)`` for every output block::

    from euclidnet.testing import assert_equivariant
    # energy (0e) and forces (1o) of a potential taking positions and atom types:
    assert_equivariant(model, irreps_in=["cartesian_points", "invariant"], irreps_out=["0e", "1o"],
                       args_in=(pos, species))

Errors are absolute, in the units of the outputs; :func:`assert_equivariant` compares them with
``atol + rtol * scale`` where ``scale`` is the largest absolute output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .o3.irreps import Irreps
from .o3.rotations import rand_matrix

__all__ = ["EquivarianceReport", "equivariance_error", "assert_equivariant"]

_SPECIAL = ("cartesian_points", "invariant")
Spec = Any  # Irreps | str


def _parse_spec(spec: Spec, where: str) -> Irreps | str:
    if isinstance(spec, str) and spec in _SPECIAL:
        return spec
    if spec is None:
        return "invariant"
    try:
        return Irreps(spec)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{where}: {spec!r} is neither irreps nor one of {_SPECIAL} ({e})"
        ) from None


def _as_tuple(x: Any) -> tuple[Any, ...]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


@dataclasses.dataclass
class EquivarianceReport:
    """Largest deviation found, per output block and per kind of transformation.

    ``errors[(transform, i_out, block)]`` is the max absolute error of output ``i_out``'s block ``block``
    (a string like ``"8x1o"`` or ``"cartesian_points"``) under ``transform`` (``"rotation"``,
    ``"improper rotation"``, ``"translation"``, ``"permutation"``). ``scale`` is the largest absolute
    output value seen.
    """

    errors: dict[tuple[str, int, str], float]
    scale: float
    dtype: torch.dtype

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    def per_irrep(self) -> dict[tuple[int, str], float]:
        """Max error per (output index, block), over all transformations."""
        out: dict[tuple[int, str], float] = {}
        for (_, i, blk), e in self.errors.items():
            out[(i, blk)] = max(out.get((i, blk), 0.0), e)
        return out

    def table(self) -> str:
        rows = [f"{'transform':<18} {'output':>6} {'block':<20} {'max abs error':>14}"]
        for (t, i, blk), e in sorted(self.errors.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
            rows.append(f"{t:<18} {i:>6} {blk:<20} {e:>14.3e}")
        rows.append(f"(largest |output| = {self.scale:.3e}, dtype {self.dtype})")
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.table()


def _transform(x: torch.Tensor, spec: Irreps | str, R: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
    if spec == "invariant" or not isinstance(x, torch.Tensor):
        return x
    if spec == "cartesian_points":
        if x.shape[-1] != 3:
            raise ValueError(f"a 'cartesian_points' tensor must have last dimension 3, got shape {tuple(x.shape)}")
        y = x @ R.to(x.dtype).T
        return y + t.to(x.dtype) if t is not None else y
    assert isinstance(spec, Irreps)
    if x.shape[-1] != spec.dim:
        raise ValueError(
            f"tensor of shape {tuple(x.shape)} does not match irreps {spec} (dim {spec.dim}) in its last dimension"
        )
    D = spec.D_from_matrix(R.to(x.dtype))
    return x @ D.T


def _blocks(spec: Irreps | str) -> list[tuple[str, slice]]:
    if isinstance(spec, Irreps):
        return [(f"{mul}x{ir}", s) for (mul, ir), s in zip(spec, spec.slices())]
    return [(spec, slice(None))]


def _random_input(spec: Irreps | str, n: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    if spec == "cartesian_points":
        return torch.randn(n, 3, dtype=dtype, generator=gen)
    if spec == "invariant":
        raise ValueError("inputs described as 'invariant' cannot be generated: pass args_in explicitly")
    assert isinstance(spec, Irreps)
    return torch.randn(n, spec.dim, dtype=dtype, generator=gen)


def equivariance_error(
    fn: Callable[..., Any],
    irreps_in: Spec | Sequence[Spec],
    irreps_out: Spec | Sequence[Spec],
    args_in: Sequence[Any] | None = None,
    *,
    ntrials: int = 3,
    do_parity: bool = True,
    do_translation: bool = True,
    do_permutation: bool = False,
    node_dims_in: Sequence[int | None] | None = None,
    node_dims_out: Sequence[int | None] | None = None,
    permute_extra: Callable[[torch.Tensor, tuple[Any, ...]], tuple[Any, ...]] | None = None,
    num_nodes: int = 7,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> EquivarianceReport:
    """Measure how far ``fn`` is from O(3)-equivariance (and translation/permutation equivariance).

    Args:
        fn: callable taking the inputs positionally, returning a tensor or a tuple of tensors.
        irreps_in, irreps_out: one spec per input/output: irreps, ``"cartesian_points"`` or
            ``"invariant"`` (see the module docstring). A single spec may be given without a list.
        args_in: the inputs; by default random ones (``num_nodes`` rows) are drawn for each spec.
        ntrials: random group elements per kind of transformation.
        do_parity: also test improper rotations ``-R`` (rotation times inversion).
        do_translation: shift every ``"cartesian_points"`` input by the same random vector; points outputs
            must shift, everything else must be unchanged.
        do_permutation: permute the node axis. ``node_dims_in``/``node_dims_out`` give, per input/output,
            the dimension indexed by nodes (``None``: not node-indexed, the output must be unchanged).
            ``permute_extra(perm, args)`` may remap anything else that refers to node indices (e.g. an
            ``edge_index``) and return the new args.
        dtype: floating inputs are cast to this dtype (float64 by default, for tight tolerances).

    Returns:
        An :class:`EquivarianceReport`.
    """
    specs_in = [_parse_spec(s, "irreps_in") for s in _as_tuple(irreps_in)]
    specs_out = [_parse_spec(s, "irreps_out") for s in _as_tuple(irreps_out)]
    gen = torch.Generator().manual_seed(seed)
    if args_in is None:
        args = tuple(_random_input(s, num_nodes, dtype, gen) for s in specs_in)
    else:
        args = tuple(
            a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in _as_tuple(args_in)
        )
        if len(args) != len(specs_in):
            raise ValueError(f"got {len(args)} inputs but {len(specs_in)} irreps_in specs")

    def call(a: tuple[Any, ...]) -> tuple[torch.Tensor, ...]:
        out = _as_tuple(fn(*a))
        if len(out) != len(specs_out):
            raise ValueError(f"fn returned {len(out)} outputs but {len(specs_out)} irreps_out specs were given")
        return out

    with torch.no_grad():
        ref = call(args)
    for i, (o, s) in enumerate(zip(ref, specs_out)):
        if isinstance(s, Irreps) and o.shape[-1] != s.dim:
            raise ValueError(
                f"output {i} has shape {tuple(o.shape)}, which does not match irreps_out[{i}] = {s} (dim {s.dim})"
            )
    scale = max((float(o.detach().abs().max()) for o in ref if isinstance(o, torch.Tensor) and o.numel()), default=0.0)
    errors: dict[tuple[str, int, str], float] = {}

    def record(kind: str, got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...]) -> None:
        for i, (g, w, s) in enumerate(zip(got, want, specs_out)):
            for name, sl in _blocks(s):
                d = (g[..., sl] - w[..., sl]).abs()
                e = float(d.max()) if d.numel() else 0.0
                if d.numel() and not torch.isfinite(d).all():
                    e = float("inf")
                key = (kind, i, name)
                errors[key] = max(errors.get(key, 0.0), e)

    eye = torch.eye(3, dtype=dtype)
    kinds: list[tuple[str, bool, bool]] = [("rotation", False, False)]
    if do_parity:
        kinds.append(("improper rotation", True, False))
    if do_translation and any(s == "cartesian_points" for s in specs_in):
        kinds.append(("translation", False, True))
    with torch.no_grad():
        for kind, improper, translate in kinds:
            for _ in range(ntrials):
                if kind == "translation":
                    R = eye
                else:
                    R = rand_matrix(generator=gen, dtype=dtype)
                    if improper:
                        R = -R
                t = torch.randn(3, dtype=dtype, generator=gen) * 3.0 if translate else None
                got = call(tuple(_transform(a, s, R, t) for a, s in zip(args, specs_in)))
                want = tuple(_transform(o, s, R, t) for o, s in zip(ref, specs_out))
                record(kind, got, want)
        if do_permutation:
            if node_dims_in is None or node_dims_out is None:
                raise ValueError("do_permutation=True needs node_dims_in and node_dims_out")
            n = None
            for a, d in zip(args, node_dims_in):
                if d is not None:
                    n = a.shape[d]
                    break
            if n is None:
                raise ValueError("do_permutation=True but no input has a node dimension")
            for _ in range(ntrials):
                perm = torch.randperm(n, generator=gen)
                new = tuple(
                    a.index_select(d, perm) if d is not None else a for a, d in zip(args, node_dims_in)
                )
                if permute_extra is not None:
                    new = permute_extra(perm, new)
                got = call(new)
                want = tuple(o.index_select(d, perm) if d is not None else o for o, d in zip(ref, node_dims_out))
                record("permutation", got, want)
    return EquivarianceReport(errors=errors, scale=scale, dtype=dtype)


def assert_equivariant(
    fn: Callable[..., Any],
    irreps_in: Spec | Sequence[Spec],
    irreps_out: Spec | Sequence[Spec],
    args_in: Sequence[Any] | None = None,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    **kwargs: Any,
) -> EquivarianceReport:
    """Like :func:`equivariance_error`, raising ``AssertionError`` with a readable table when any block's
    error exceeds ``atol + rtol * scale``. Defaults: ``atol = rtol = 1e-9`` in float64, ``1e-4`` in float32.
    Returns the report when it passes."""
    report = equivariance_error(fn, irreps_in, irreps_out, args_in, **kwargs)
    default = 1e-9 if report.dtype == torch.float64 else 1e-4
    atol = default if atol is None else atol
    rtol = default if rtol is None else rtol
    limit = atol + rtol * report.scale
    bad = {k: e for k, e in report.errors.items() if not e <= limit}
    if bad:
        lines = [f"not equivariant: {len(bad)} output block(s) exceed tolerance {limit:.2e} "
                 f"(atol {atol:.1e} + rtol {rtol:.1e} x scale {report.scale:.2e})"]
        for (t, i, blk), e in sorted(bad.items(), key=lambda kv: -kv[1]):
            lines.append(f"  output {i} block {blk}: error {e:.3e} under {t}")
        lines.append("full report:\n" + report.table())
        raise AssertionError("\n".join(lines))
    return report
