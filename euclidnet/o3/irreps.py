"""Irreducible representations of O(3) and their direct sums.

An :class:`Irrep` is a degree ``l >= 0`` and a parity ``p = +1`` (even, ``e``) or ``-1`` (odd, ``o``).
Under a rotation ``R`` (det +1) an ``l`` irrep transforms with the Wigner matrix ``D^l(R)``; under the
inversion ``-I`` it is multiplied by ``p``. Vectors are ``1o``, pseudovectors ``1e``, scalars ``0e``,
pseudoscalars ``0o``.

:class:`Irreps` is an immutable sequence of ``(mul, irrep)`` pairs written e.g. ``"16x0e + 8x1o + 2e"``.
A feature vector with these irreps is the concatenation of its blocks in order; a block of ``mul``
copies of an irrep of dimension ``2l + 1`` is stored mul-major, i.e. as a flattened ``[mul, 2l + 1]``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, Union

import torch

__all__ = ["Irrep", "Irreps", "MulIrrep"]

_IRREP_RE = re.compile(r"^(\d+)([eoy])$")
_TERM_RE = re.compile(r"^(?:(\d+)\s*x\s*)?(\d+[eoy])$")


class Irrep:
    """An irreducible representation of O(3): degree ``l`` and parity ``p``.

    ``Irrep(1, -1)``, ``Irrep("1o")`` and ``Irrep(Irrep("1o"))`` are the same value. In strings, ``e`` is
    even (p = +1), ``o`` odd (p = -1) and ``y`` means the parity of the spherical harmonics, ``(-1)^l``.
    """

    __slots__ = ("_l", "_p")

    def __init__(self, l: int | str | Irrep | tuple[int, int], p: int | None = None) -> None:
        if p is None:
            if isinstance(l, Irrep):
                l, p = l.l, l.p
            elif isinstance(l, str):
                m = _IRREP_RE.match(l.strip())
                if m is None:
                    raise ValueError(
                        f"cannot parse irrep {l!r}: expected a degree followed by a parity letter, "
                        "e.g. '0e', '1o', '2e' or '3y' (y = parity of the spherical harmonics)"
                    )
                l = int(m.group(1))
                p = {"e": 1, "o": -1, "y": (-1) ** l}[m.group(2)]
            elif isinstance(l, tuple) and len(l) == 2:
                l, p = l
            else:
                raise TypeError(f"cannot build an Irrep from {l!r}; expected e.g. Irrep(1, -1) or Irrep('1o')")
        if isinstance(l, bool) or not isinstance(l, int):
            raise TypeError(f"irrep degree l must be an int, got {l!r} ({type(l).__name__})")
        if l < 0:
            raise ValueError(f"irrep degree l must be >= 0, got l={l}")
        if isinstance(p, bool) or p not in (1, -1):
            raise ValueError(f"irrep parity p must be +1 (even) or -1 (odd), got p={p!r}")
        object.__setattr__(self, "_l", int(l))
        object.__setattr__(self, "_p", int(p))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Irrep is immutable")

    @property
    def l(self) -> int:  # noqa: E743 (the physics name)
        return self._l

    @property
    def p(self) -> int:
        return self._p

    @property
    def dim(self) -> int:
        """Dimension ``2l + 1``."""
        return 2 * self._l + 1

    def is_scalar(self) -> bool:
        """True for ``0e``."""
        return self._l == 0 and self._p == 1

    @staticmethod
    def iterator(lmax: int | None = None) -> Iterator[Irrep]:
        """All irreps in the order 0e, 0o, 1o, 1e, 2e, 2o, ... up to ``lmax`` (infinite if None)."""
        l = 0
        while lmax is None or l <= lmax:
            yield Irrep(l, (-1) ** l)
            yield Irrep(l, -((-1) ** l))
            l += 1

    def __mul__(self, other: Irrep) -> Iterator[Irrep]:
        """The irreps in the tensor product ``self (x) other``: ``|l1 - l2| <= l <= l1 + l2``, ``p1 p2``."""
        other = Irrep(other)
        p = self._p * other._p
        for l in range(abs(self._l - other._l), self._l + other._l + 1):
            yield Irrep(l, p)

    def __rmul__(self, mul: int) -> Irreps:
        if isinstance(mul, bool) or not isinstance(mul, int):
            return NotImplemented
        return Irreps([(mul, self)])

    def __add__(self, other: Any) -> Irreps:
        return Irreps(self) + Irreps(other)

    def __radd__(self, other: Any) -> Irreps:
        return Irreps(other) + Irreps(self)

    def __repr__(self) -> str:
        return f"{self._l}{'e' if self._p == 1 else 'o'}"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = Irrep(other)
            except ValueError:
                return False
        if not isinstance(other, Irrep):
            return NotImplemented
        return self._l == other._l and self._p == other._p

    def __hash__(self) -> int:
        return hash((self._l, self._p))

    def _key(self) -> tuple[int, int]:
        # Sort order: by l, then even before odd.
        return (self._l, -self._p)

    def __lt__(self, other: Irrep) -> bool:
        return self._key() < Irrep(other)._key()

    def __le__(self, other: Irrep) -> bool:
        return self._key() <= Irrep(other)._key()

    def __gt__(self, other: Irrep) -> bool:
        return self._key() > Irrep(other)._key()

    def __ge__(self, other: Irrep) -> bool:
        return self._key() >= Irrep(other)._key()

    def __iter__(self) -> Iterator[int]:
        yield self._l
        yield self._p

    def __reduce__(self) -> tuple[Any, ...]:
        return (Irrep, (self._l, self._p))

    # -- representation matrices -------------------------------------------------------------------

    def D_from_angles(
        self, alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, k: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Representation matrix of the rotation ``Y(alpha) X(beta) Y(gamma)`` followed by ``k`` inversions.

        Shapes broadcast; returns ``[..., 2l + 1, 2l + 1]``.
        """
        from .wigner import wigner_D

        D = wigner_D(self._l, alpha, beta, gamma)
        if k is not None and self._p == -1:
            k = torch.as_tensor(k, device=D.device)
            sign = torch.where(k % 2 == 1, -1.0, 1.0).to(D.dtype)
            D = D * sign[..., None, None]
        return D

    def D_from_matrix(self, R: torch.Tensor) -> torch.Tensor:
        """Representation matrix of an orthogonal matrix ``R`` ``[..., 3, 3]``, proper or improper.

        An improper ``R`` (det -1) is the inversion times the rotation ``-R``: ``D = p * D^l(-R)``.
        For ``1o`` this returns ``R`` itself.
        """
        from .rotations import _check_matrix, matrix_to_angles

        R = _check_matrix(R)
        det = torch.linalg.det(R)
        improper = det < 0
        R_proper = torch.where(improper[..., None, None], -R, R)
        alpha, beta, gamma = matrix_to_angles(R_proper)
        return self.D_from_angles(alpha, beta, gamma, improper.to(torch.int64))

    def D_from_quaternion(self, q: torch.Tensor, k: torch.Tensor | None = None) -> torch.Tensor:
        """Representation matrix of the rotation of unit quaternion ``q = (w, x, y, z)`` ``[..., 4]``."""
        from .rotations import quaternion_to_angles

        return self.D_from_angles(*quaternion_to_angles(q), k)


class MulIrrep(NamedTuple):
    """``mul`` copies of one irrep: a block of an :class:`Irreps`."""

    mul: int
    ir: Irrep

    @property
    def dim(self) -> int:
        return self.mul * self.ir.dim

    def __repr__(self) -> str:
        return f"{self.mul}x{self.ir}"


IrrepsLike = Union["Irreps", str, Irrep, Iterable[Any]]


class Irreps(tuple):
    """A direct sum of irreps: an immutable tuple of :class:`MulIrrep` ``(mul, ir)`` blocks.

    Built from a string ``"16x0e + 8x1o + 2e"`` (a missing multiplicity means 1), an :class:`Irrep`, or an
    iterable of ``(mul, irrep)`` pairs / irreps. The empty string gives the empty Irreps. Iterating yields
    ``(mul, ir)`` pairs in order; blocks are never merged implicitly (see :meth:`simplify`).
    """

    def __new__(cls, irreps: IrrepsLike | None = None) -> Irreps:
        if isinstance(irreps, Irreps):
            return super().__new__(cls, irreps)
        blocks: list[MulIrrep] = []
        if irreps is None:
            pass
        elif isinstance(irreps, Irrep):
            blocks.append(MulIrrep(1, irreps))
        elif isinstance(irreps, str):
            text = irreps.strip()
            if text:
                for term in text.split("+"):
                    term = term.strip()
                    m = _TERM_RE.match(term)
                    if m is None:
                        raise ValueError(
                            f"cannot parse {term!r} in irreps {irreps!r}: expected terms like '16x0e', '8x1o' "
                            "or '2e' (multiplicity >= 0, degree, parity e/o/y) joined by '+'"
                        )
                    mul = int(m.group(1)) if m.group(1) is not None else 1
                    blocks.append(MulIrrep(mul, Irrep(m.group(2))))
        else:
            try:
                items = list(irreps)
            except TypeError:
                raise TypeError(f"cannot build Irreps from {irreps!r} ({type(irreps).__name__})") from None
            for item in items:
                if isinstance(item, (Irrep, str)):
                    blocks.append(MulIrrep(1, Irrep(item)))
                    continue
                try:
                    mul, ir = item
                except (TypeError, ValueError):
                    raise TypeError(
                        f"cannot read {item!r} as a (mul, irrep) pair in Irreps({irreps!r})"
                    ) from None
                if isinstance(mul, bool) or not isinstance(mul, int):
                    raise TypeError(f"multiplicity must be an int, got {mul!r} in Irreps({irreps!r})")
                if mul < 0:
                    raise ValueError(f"multiplicity must be >= 0, got {mul} in Irreps({irreps!r})")
                blocks.append(MulIrrep(mul, Irrep(ir)))
        return super().__new__(cls, blocks)

    # -- constructors --------------------------------------------------------------------------------

    @staticmethod
    def spherical_harmonics(lmax: int, p: int = -1) -> Irreps:
        """``0e + 1o + 2e + ...`` up to ``lmax`` (``p = -1``), or all even with ``p = +1``."""
        if lmax < 0:
            raise ValueError(f"lmax must be >= 0, got {lmax}")
        if p not in (1, -1):
            raise ValueError(f"p must be +1 or -1, got {p}")
        return Irreps([(1, Irrep(l, p**l)) for l in range(lmax + 1)])

    # -- properties ----------------------------------------------------------------------------------

    # Irreps is immutable, so derived quantities are computed once per object (hot in layers' forward).
    @functools.cached_property
    def dim(self) -> int:
        """Total dimension ``sum mul * (2l + 1)``."""
        return sum(mul * ir.dim for mul, ir in self)

    @functools.cached_property
    def num_irreps(self) -> int:
        """Total number of irreps ``sum mul``."""
        return sum(mul for mul, _ in self)

    @property
    def ls(self) -> list[int]:
        """The degree of every irrep, repeated by multiplicity."""
        return [ir.l for mul, ir in self for _ in range(mul)]

    @property
    def lmax(self) -> int:
        """The largest degree; raises ValueError on empty irreps."""
        if len(self) == 0:
            raise ValueError("lmax of empty Irreps is undefined")
        return max(ir.l for _, ir in self)

    def slices(self) -> list[slice]:
        """The slice of each block in a feature vector."""
        return list(self._slices)

    @functools.cached_property
    def _slices(self) -> tuple[slice, ...]:
        out = []
        start = 0
        for mul, ir in self:
            out.append(slice(start, start + mul * ir.dim))
            start += mul * ir.dim
        return tuple(out)

    def count(self, ir: Irrep | str) -> int:  # type: ignore[override]
        """Total multiplicity of ``ir``."""
        ir = Irrep(ir)
        return sum(mul for mul, x in self if x == ir)

    def __contains__(self, ir: object) -> bool:
        try:
            ir = Irrep(ir)  # type: ignore[arg-type]
        except (ValueError, TypeError):
            return False
        return any(x == ir for _, x in self)

    def index(self, _object: object) -> int:  # type: ignore[override]
        raise AttributeError("Irreps.index is ambiguous; use slices() or count()")

    # -- transformations -----------------------------------------------------------------------------

    def simplify(self) -> Irreps:
        """Merge consecutive blocks of the same irrep and drop zero multiplicities (order is kept)."""
        out: list[tuple[int, Irrep]] = []
        for mul, ir in self:
            if mul == 0:
                continue
            if out and out[-1][1] == ir:
                out[-1] = (out[-1][0] + mul, ir)
            else:
                out.append((mul, ir))
        return Irreps(out)

    def remove_zero_multiplicities(self) -> Irreps:
        return Irreps([(mul, ir) for mul, ir in self if mul > 0])

    class _Sorted(NamedTuple):
        irreps: Irreps
        p: tuple[int, ...]
        inv: tuple[int, ...]

    def sort(self) -> Irreps._Sorted:  # type: ignore[override]
        """Sort blocks by irrep (stable). Returns ``(irreps, p, inv)``.

        ``p[i]`` is the new position of block ``i``; ``inv[j]`` the old position of new block ``j``, so
        ``sorted.irreps[j] == self[inv[j]]``.
        """
        inv = tuple(sorted(range(len(self)), key=lambda i: self[i].ir._key()))
        p = [0] * len(inv)
        for j, i in enumerate(inv):
            p[i] = j
        return Irreps._Sorted(Irreps([self[i] for i in inv]), tuple(p), inv)

    def filter(
        self,
        keep: IrrepsLike | Callable[[MulIrrep], bool] | None = None,
        *,
        drop: IrrepsLike | Callable[[MulIrrep], bool] | None = None,
        lmax: int | None = None,
    ) -> Irreps:
        """Blocks whose irrep is in ``keep`` (irreps or a predicate on ``(mul, ir)``), not in ``drop``,
        and of degree ``<= lmax``."""

        def as_pred(sel: Any) -> Callable[[MulIrrep], bool]:
            if callable(sel) and not isinstance(sel, (Irreps, Irrep, str)):
                return sel
            irs = {ir for _, ir in Irreps(sel)}
            return lambda mi: mi.ir in irs

        out = list(self)
        if keep is not None:
            pk = as_pred(keep)
            out = [mi for mi in out if pk(mi)]
        if drop is not None:
            pd = as_pred(drop)
            out = [mi for mi in out if not pd(mi)]
        if lmax is not None:
            out = [mi for mi in out if mi.ir.l <= lmax]
        return Irreps(out)

    def regroup(self) -> Irreps:
        """``sort().irreps.simplify()``: one block per distinct irrep, in canonical order."""
        return self.sort().irreps.simplify()

    # -- arithmetic ----------------------------------------------------------------------------------

    def __add__(self, other: Any) -> Irreps:  # type: ignore[override]
        return Irreps(tuple(self) + tuple(Irreps(other)))

    def __radd__(self, other: Any) -> Irreps:
        return Irreps(other) + self

    def __mul__(self, other: int) -> Irreps:  # type: ignore[override]
        """``irreps * n`` repeats the whole sequence ``n`` times (like a tuple)."""
        if isinstance(other, bool) or not isinstance(other, int):
            return NotImplemented
        if other < 0:
            raise ValueError(f"cannot repeat Irreps a negative number of times ({other})")
        return Irreps(tuple(self) * other)

    def __rmul__(self, other: int) -> Irreps:  # type: ignore[override]
        """``n * irreps`` multiplies every multiplicity by ``n``."""
        if isinstance(other, bool) or not isinstance(other, int):
            return NotImplemented
        if other < 0:
            raise ValueError(f"multiplicity factor must be >= 0, got {other}")
        return Irreps([(other * mul, ir) for mul, ir in self])

    def __getitem__(self, i: Any) -> Any:
        x = super().__getitem__(i)
        if isinstance(i, slice):
            return Irreps(x)
        return x

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = Irreps(other)
            except ValueError:
                return False
        if not isinstance(other, tuple):
            return NotImplemented
        try:
            other = Irreps(other)
        except (TypeError, ValueError):
            return False
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return tuple.__hash__(self)

    def __repr__(self) -> str:
        return "+".join(f"{mul}x{ir}" for mul, ir in self)

    def __str__(self) -> str:
        return self.__repr__()

    def __reduce__(self) -> tuple[Any, ...]:
        return (Irreps, (str(self),))

    # -- representation matrices -----------------------------------------------------------------

    def D_from_angles(
        self, alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, k: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Block-diagonal representation matrix ``[..., dim, dim]`` (see :meth:`Irrep.D_from_angles`)."""
        return _block_diag([ir.D_from_angles(alpha, beta, gamma, k) for mul, ir in self for _ in range(mul)])

    def D_from_matrix(self, R: torch.Tensor) -> torch.Tensor:
        """Block-diagonal representation matrix of orthogonal ``R`` ``[..., 3, 3]`` (proper or improper)."""
        from .rotations import _check_matrix, matrix_to_angles

        R = _check_matrix(R)
        improper = torch.linalg.det(R) < 0
        R_proper = torch.where(improper[..., None, None], -R, R)
        return self.D_from_angles(*matrix_to_angles(R_proper), improper.to(torch.int64))

    def D_from_quaternion(self, q: torch.Tensor, k: torch.Tensor | None = None) -> torch.Tensor:
        from .rotations import quaternion_to_angles

        return self.D_from_angles(*quaternion_to_angles(q), k)

    # -- random features -----------------------------------------------------------------------------

    def randn(
        self,
        *shape: int,
        normalization: str = "component",
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        requires_grad: bool = False,
    ) -> torch.Tensor:
        """Random features ``[*shape, dim]``.

        ``normalization="component"``: every component is N(0, 1); ``"norm"``: every irrep has unit norm
        (a random direction in its ``2l + 1`` dimensions).
        """
        if normalization not in ("component", "norm"):
            raise ValueError(f"normalization must be 'component' or 'norm', got {normalization!r}")
        x = torch.randn(*shape, self.dim, generator=generator, dtype=dtype, device=device)
        if normalization == "norm":
            parts = []
            for (mul, ir), s in zip(self, self.slices()):
                block = x[..., s].reshape(*shape, mul, ir.dim)
                block = block / block.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
                parts.append(block.reshape(*shape, mul * ir.dim))
            x = torch.cat(parts, dim=-1) if parts else x
        return x.requires_grad_(requires_grad)


def _block_diag(blocks: list[torch.Tensor]) -> torch.Tensor:
    """Batched block-diagonal assembly of ``[..., d_i, d_i]`` matrices (batch shapes broadcast)."""
    if not blocks:
        return torch.zeros(0, 0)
    batch = torch.broadcast_shapes(*[b.shape[:-2] for b in blocks])
    n = sum(b.shape[-1] for b in blocks)
    out = blocks[0].new_zeros(*batch, n, n)
    i = 0
    for b in blocks:
        d = b.shape[-1]
        out[..., i : i + d, i : i + d] = b
        i += d
    return out
