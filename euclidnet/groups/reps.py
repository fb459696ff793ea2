"""Representations of :class:`~euclidnet.groups.base.Group` objects.

A :class:`Rep` of size ``n`` maps group elements ``g`` ``[..., d, d]`` (standard representation) to
``rho(g)`` ``[..., n, n]`` and Lie algebra elements ``A`` ``[..., d, d]`` to ``drho(A)`` ``[..., n, n]``.
Available: :class:`Standard`, :class:`Trivial`, :class:`Regular` (finite groups), :class:`SumRep` (``a + b``,
``3 * a``), :class:`TensorRep` (``a * b``, ``a ** 2``), :class:`DualRep` (``a.dual()``), :class:`IrrepsRep`
(O(3)/SO(3) irreps bridged to :mod:`euclidnet.o3`), :class:`CircularRep` (SO(2)/O(2) frequency ``k``),
:class:`FactorRep` (a factor's rep on a product group) and :class:`MatrixRep` (user-given images of the
generators, checked to be a homomorphism). :func:`check_homomorphism` tests any rep on random pairs.
"""

from __future__ import annotations

import torch

from .base import Group
from .continuous import O2, O3, SO2, SO3
from .finite import FiniteGroup
from .product import ProductGroup

__all__ = [
    "Rep",
    "Standard",
    "Trivial",
    "Regular",
    "SumRep",
    "TensorRep",
    "DualRep",
    "IrrepsRep",
    "CircularRep",
    "FactorRep",
    "MatrixRep",
    "check_homomorphism",
]


def _check_elements(G: Group, g: torch.Tensor, what: str = "g") -> torch.Tensor:
    if not isinstance(g, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor [..., {G.d}, {G.d}], got {type(g).__name__}")
    if g.dim() < 2 or g.shape[-2:] != (G.d, G.d):
        raise ValueError(f"{what} must have shape [..., {G.d}, {G.d}] for {G.name}, got {tuple(g.shape)}")
    return g


def _kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    n1, m1 = a.shape[-2:]
    n2, m2 = b.shape[-2:]
    return (a[..., :, None, :, None] * b[..., None, :, None, :]).reshape(*batch, n1 * n2, m1 * m2)


class Rep:
    """A representation ``rho`` of ``G`` on ``R^size``. Subclasses implement ``rho`` and ``drho``."""

    G: Group
    size: int

    def rho(self, g: torch.Tensor) -> torch.Tensor:
        """Representation matrices ``[..., size, size]`` of elements ``g`` ``[..., d, d]``."""
        raise TypeError(f"{type(self).__name__} does not implement rho")

    def drho(self, A: torch.Tensor) -> torch.Tensor:
        """Lie algebra representation ``[..., size, size]`` of ``A`` ``[..., d, d]``."""
        A = _check_elements(self.G, A, "A")
        if self.G.is_finite:  # the Lie algebra of a finite group is {0}
            return A.new_zeros(*A.shape[:-2], self.size, self.size)
        raise TypeError(f"{type(self).__name__} does not implement drho")

    # images of the generators, used by the constraint solver
    def discrete_images(self) -> torch.Tensor:
        """``rho`` of the group's discrete generators, ``[n_disc, size, size]`` float64."""
        return self.rho(self.G.discrete_generators)

    def lie_images(self) -> torch.Tensor:
        """``drho`` of the group's Lie algebra generators, ``[n_lie, size, size]`` float64."""
        return self.drho(self.G.lie_algebra)

    @property
    def is_trivial(self) -> bool:
        """True for a trivial representation (every ``rho(g) = I``)."""
        return False

    def dual(self) -> Rep:
        """The dual (contragredient) representation ``rho(g)^{-T}``."""
        return DualRep(self)

    def __add__(self, other: Rep) -> SumRep:
        return SumRep(self, other)

    def __mul__(self, other: Rep | int) -> Rep:
        if isinstance(other, int) and not isinstance(other, bool):
            return self.__rmul__(other)
        return TensorRep(self, other)

    def __rmul__(self, n: int) -> SumRep:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"a representation can be repeated a positive int number of times, got {n!r}")
        return SumRep(*([self] * n))

    def __pow__(self, n: int) -> Rep:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"tensor power must be a positive int, got {n!r}")
        out: Rep = self
        for _ in range(n - 1):
            out = TensorRep(out, self)
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rep) and repr(self) == repr(other) and self.G.same_as(other.G)

    def __hash__(self) -> int:
        return hash(repr(self))


class Standard(Rep):
    """The defining representation ``rho(g) = g``."""

    def __init__(self, G: Group) -> None:
        if not isinstance(G, Group):
            raise TypeError(f"Standard needs a Group, got {type(G).__name__}")
        self.G, self.size = G, G.d

    def rho(self, g: torch.Tensor) -> torch.Tensor:
        return _check_elements(self.G, g)

    def drho(self, A: torch.Tensor) -> torch.Tensor:
        return _check_elements(self.G, A, "A")

    def __repr__(self) -> str:
        return f"V[{self.G.name}]"


class Trivial(Rep):
    """``n`` copies of the trivial representation (scalars): ``rho(g) = I_n``, ``drho(A) = 0``."""

    def __init__(self, G: Group, n: int = 1) -> None:
        if not isinstance(G, Group):
            raise TypeError(f"Trivial needs a Group, got {type(G).__name__}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"Trivial size must be a positive int, got {n!r}")
        self.G, self.size = G, n

    def rho(self, g: torch.Tensor) -> torch.Tensor:
        g = _check_elements(self.G, g)
        return torch.eye(self.size, dtype=g.dtype).expand(*g.shape[:-2], self.size, self.size).clone()

    def drho(self, A: torch.Tensor) -> torch.Tensor:
        A = _check_elements(self.G, A, "A")
        return A.new_zeros(*A.shape[:-2], self.size, self.size)

    @property
    def is_trivial(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"{self.size}xScalar[{self.G.name}]"


class Regular(Rep):
    """The left regular representation of a finite group: ``rho(g) e_h = e_{g h}`` (size ``|G|``)."""

    def __init__(self, G: Group) -> None:
        if isinstance(G, ProductGroup) and G.is_finite:
            self._F = G.finite
        elif isinstance(G, FiniteGroup):
            self._F = G
        else:
            raise TypeError(f"the regular representation needs a finite group; {G.name} is not finite")
        self.G, self.size = G, self._F.order

    def rho(self, g: torch.Tensor) -> torch.Tensor:
        g = _check_elements(self.G, g)
        idx = self._F.index_of(g)
        rows = self._F.cayley[idx]  # [..., N]: g h for every h
        return torch.nn.functional.one_hot(rows, self.size).transpose(-1, -2).to(g.dtype)

    def __repr__(self) -> str:
        return f"Regular[{self.G.name}]"


class SumRep(Rep):
    """Direct sum ``rho_1 + rho_2 + ...`` (block diagonal, blocks in order; nested sums are flattened)."""

    def __init__(self, *reps: Rep) -> None:
        flat: list[Rep] = []
        for r in reps:
            if not isinstance(r, Rep):
                raise TypeError(f"SumRep parts must be Rep instances, got {type(r).__name__}")
            flat.extend(r.reps if isinstance(r, SumRep) else [r])
        if not flat:
            raise ValueError("SumRep needs at least one representation")
        G = flat[0].G
        for r in flat:
            if not r.G.same_as(G):
                raise ValueError(f"cannot sum representations of different groups: {G.name} and {r.G.name}")
        self.G, self.reps, self.size = G, tuple(flat), sum(r.size for r in flat)

    def _blocks(self, mats: list[torch.Tensor]) -> torch.Tensor:
        batch = torch.broadcast_shapes(*[m.shape[:-2] for m in mats])
        out = mats[0].new_zeros(*batch, self.size, self.size)
        i = 0
        for m in mats:
            d = m.shape[-1]
            out[..., i : i + d, i : i + d] = m
            i += d
        return out

    def rho(self, g: torch.Tensor) -> torch.Tensor:
        return self._blocks([r.rho(g) for r in self.reps])

    def drho(self, A: torch.Tensor) -> torch.Tensor:
        return self._blocks([r.drho(A) for r in self.reps])

    def discrete_images(self) -> torch.Tensor:
        return self._blocks([r.discrete_images() for r in self.reps])

    def lie_images(self) -> torch.Tensor:
        return self._blocks([r.lie_images() for r in self.reps])

    @property
    def is_trivial(self) -> bool:
        return all(r.is_trivial for r in self.reps)

    def slices(self) -> list[slice]:
        """Slice of each summand in a feature vector."""
        out, i = [], 0
        for r in self.reps:
            out.append(slice(i, i + r.size))
            i += r.size
        return out

    def __repr__(self) -> str:
        return "(" + " + ".join(repr(r) for r in self.reps) + ")"


class TensorRep(Rep):
    """Tensor product ``rho_a (x) rho_b`` (Kronecker product, ``a`` index major)."""

    def __init__(self, a: Rep, b: Rep) -> None:
        if not isinstance(a, Rep) or not isinstance(b, Rep):
            raise TypeError("TensorRep needs two Rep instances")
        if not a.G.same_as(b.G):
            raise ValueError(f"cannot tensor representations of different groups: {a.G.name} and {b.G.name}")
        self.G, self.a, self.b, self.size = a.G, a, b, a.size * b.size

    def rho(self, g: torch.Tensor) -> torch.Tensor:
        return _kron(self.a.rho(g), self.b.rho(g))

    def drho(self, A: torch.Tensor) -> torch.Tensor:
        da, db = self.a.drho(A), self.b.drho(A)
        Ia = torch.eye(self.a.size, dtype=da.dtype)
        Ib = torch.eye(self.b.size, dtype=db.dtype)
        return _kron(da, Ib) + _kron(Ia, db)

    def discrete_images(self) -> torch.Tensor:
        return _kron(self.a.discrete_images(), self.b.discrete_images())

    def lie_images(self) -> torch.Tensor:
        da, db = self.a.lie_images(), self.b.lie_images()
        return _kron(da, torch.eye(self.b.size, dtype=da.dtype)) + _kron(torch.eye(self.a.size, dtype=db.dtype), db)

    @property
    def is_trivial(self) -> bool:
        return self.a.is_trivial and self.b.is_trivial

    def __repr__(self) -> str:
        return f"({self.a!r} (x) {self.b!r})"


class DualRep(Rep):
    """The dual representation ``rho(g)^{-T}``, ``drho(A) -> -drho(A)^T`` (equal to ``rho`` if orthogonal)."""

    def __init__(self, rep: Rep) -> None:
        if not isinstance(rep, Rep):
            raise TypeError(f"DualRep needs a Rep, got {type(rep).__name__}")
        self.G, self.rep, self.size = rep.G, rep, rep.size

    def rho(self, g: torch.Tensor) -> torch.Tensor:
        return torch.linalg.inv(self.rep.rho(g)).transpose(-1, -2)

    def drho(self, A: torch.Tensor) -> torch.Tensor:
        return -self.rep.drho(A).transpose(-1, -2)

    def discrete_images(self) -> torch.Tensor:
        return torch.linalg.inv(self.rep.discrete_images()).transpose(-1, -2)

    def lie_images(self) -> torch.Tensor:
        return -self.rep.lie_images().transpose(-1, -2)

    @property
    def is_trivial(self) -> bool:
        return self.rep.is_trivial

    def __repr__(self) -> str:
        return f"{self.rep!r}*"


class IrrepsRep(Rep):
    """O(3) / SO(3) irreps as a representation, bridged to :class:`euclidnet.o3.Irreps`.

    ``rho(g) = irreps.D_from_matrix(g)`` (block diagonal, mul-major blocks as in the rest of euclidnet) and
    ``drho(A) = sum_k a_k so3_generators(l)[k]`` for ``A = sum_k a_k L_k``. On SO(3) the parity is ignored.
    """

    def __init__(self, G: Group, irreps: object) -> None:
        from ..o3 import Irreps

        if not isinstance(G, (SO3, O3)):
            raise TypeError(
                f"IrrepsRep supports the groups SO(3) and O(3) only, got {getattr(G, 'name', G)!r}; use "
                "Standard/TensorRep for other groups or FactorRep on a product"
            )
        self.G = G
        self.irreps = Irreps(irreps)
        self.size = self.irreps.dim
        if self.size == 0:
            raise ValueError("IrrepsRep needs non-empty irreps")

    def rho(self, g: torch.Tensor) -> torch.Tensor:
        g = _check_elements(self.G, g)
        return self.irreps.D_from_matrix(g)

    def drho(self, A: torch.Tensor) -> torch.Tensor:
        from ..o3 import so3_generators

        A = _check_elements(self.G, A, "A")
        coeff = torch.stack([A[..., 2, 1], A[..., 0, 2], A[..., 1, 0]], -1)  # [..., 3]
        blocks = []
        for mul, ir in self.irreps:
            gen = so3_generators(ir.l, dtype=A.dtype)
            blk = torch.einsum("...k,kij->...ij", coeff, gen)
            blocks.extend([blk] * mul)
        out = A.new_zeros(*A.shape[:-2], self.size, self.size)
        i = 0
        for b in blocks:
            d = b.shape[-1]
            out[..., i : i + d, i : i + d] = b
            i += d
        return out

    @property
    def is_trivial(self) -> bool:
        if isinstance(self.G, SO3) and not isinstance(self.G, O3):
            return all(ir.l == 0 for _, ir in self.irreps)
        return all(ir.is_scalar() for _, ir in self.irreps)

    def __repr__(self) -> str:
        return f"Irreps({self.irreps})[{self.G.name}]"


class CircularRep(Rep):
    """The frequency-``k`` representation of SO(2) / O(2) on R^2: ``R(t) -> R(k t)``, reflection ``F -> F``.

    For ``k = 0`` on O(2) this is the trivial plus the sign (det) representation.
    """

    def __init__(self, G: Group, k: int) -> None:
        if not isinstance(G, (SO2, O2)):
            raise TypeError(f"CircularRep supports SO(2) and O(2) only, got {getattr(G, 'name', G)!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"frequency k must be an int >= 0, got {k!r}")
        self.G, self.k, self.size = G, k, 2

    def rho(self, g: torch.Tensor) -> torch.Tensor:
        g = _check_elements(self.G, g)
        theta = torch.atan2(g[..., 1, 0], g[..., 0, 0])
        c, s = torch.cos(self.k * theta), torch.sin(self.k * theta)
        R = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
        det = g[..., 0, 0] * g[..., 1, 1] - g[..., 0, 1] * g[..., 1, 0]
        f = torch.stack([torch.ones_like(det), torch.sign(det)], -1)
        return R * f[..., None, :]

    def drho(self, A: torch.Tensor) -> torch.Tensor:
        return self.k * _check_elements(self.G, A, "A")

    @property
    def is_trivial(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"Circ{self.k}[{self.G.name}]"


class FactorRep(Rep):
    """A representation of factor ``i`` of a :class:`ProductGroup`, acting on the product through that factor."""

    def __init__(self, G: ProductGroup, i: int, rep: Rep) -> None:
        if not isinstance(G, ProductGroup):
            raise TypeError(f"FactorRep needs a ProductGroup, got {type(G).__name__}")
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(G.factors):
            raise ValueError(f"factor index must be in [0, {len(G.factors)}), got {i!r}")
        if not rep.G.same_as(G.factors[i]):
            raise ValueError(f"rep is a representation of {rep.G.name}, but factor {i} is {G.factors[i].name}")
        self.G, self.i, self.rep, self.size = G, i, rep, rep.size

    def rho(self, g: torch.Tensor) -> torch.Tensor:
        return self.rep.rho(self.G.component(_check_elements(self.G, g), self.i))

    def drho(self, A: torch.Tensor) -> torch.Tensor:
        return self.rep.drho(self.G.component(_check_elements(self.G, A, "A"), self.i))

    @property
    def is_trivial(self) -> bool:
        return self.rep.is_trivial

    def __repr__(self) -> str:
        return f"{self.rep!r}@{self.i}"


class MatrixRep(Rep):
    """A representation given by the images of the group's generators, checked to be a homomorphism.

    Args:
        G: a :class:`FiniteGroup`, or a continuous group (SO(2), O(2), SO(3), O(3), products).
        discrete_images: ``[n_disc, n, n]``: ``rho`` of ``G.discrete_generators`` in order.
        lie_images: ``[n_lie, n, n]``: ``drho`` of ``G.lie_algebra`` (required iff the group has a Lie algebra).
        atol: tolerance of the checks.

    For a finite group every element's image is built by breadth-first search over the Cayley graph and every
    edge ``rho(g h) = rho(g) rho(h)`` is checked; for a Lie group the bracket relations
    ``drho([A_i, A_j]) = [drho(A_i), drho(A_j)]``, the conjugation relations
    ``rho(h) drho(A) rho(h)^-1 = drho(h A h^-1)`` and ``rho(h)^m = I`` (``h^m = I``) are checked.

    Raises:
        ValueError: naming the first generator whose image violates a relation.
    """

    def __init__(
        self,
        G: Group,
        discrete_images: torch.Tensor | None = None,
        lie_images: torch.Tensor | None = None,
        atol: float = 1e-8,
    ) -> None:
        if not isinstance(G, Group):
            raise TypeError(f"MatrixRep needs a Group, got {type(G).__name__}")
        self.G = G
        nd, nl = G.discrete_generators.shape[0], G.lie_algebra.shape[0]
        di = torch.zeros(0, 0, 0, dtype=torch.float64) if discrete_images is None else torch.as_tensor(discrete_images)
        li = torch.zeros(0, 0, 0, dtype=torch.float64) if lie_images is None else torch.as_tensor(lie_images)
        di, li = di.to(torch.float64), li.to(torch.float64)
        if di.shape[0] != nd:
            raise ValueError(f"{G.name} has {nd} discrete generators but {di.shape[0]} images were given")
        if li.shape[0] != nl:
            raise ValueError(f"{G.name} has {nl} Lie algebra generators but {li.shape[0]} images were given")
        n = di.shape[-1] if nd else li.shape[-1]
        for what, t in (("discrete", di), ("lie", li)):
            if t.shape[0] and (t.dim() != 3 or t.shape[1:] != (n, n)):
                raise ValueError(f"{what} images must have shape [k, {n}, {n}], got {tuple(t.shape)}")
        self.size, self._di, self._li, self.atol = n, di, li, atol
        self._table: torch.Tensor | None = None
        if isinstance(G, FiniteGroup):
            self._build_finite(G)
        else:
            self._check_lie()

    def _build_finite(self, G: FiniteGroup) -> None:
        N, n = G.order, self.size
        # relations of one generator alone: s^m = e must give rho(s)^m = I
        for k, s in enumerate(G.generator_indices.tolist()):
            m = int(G.element_orders[s])
            err = float((torch.linalg.matrix_power(self._di[k], m) - torch.eye(n, dtype=torch.float64)).abs().max())
            if err > self.atol:
                raise ValueError(
                    f"not a homomorphism: generator {k} has order {m} in {G.name} but its image to the power {m} "
                    f"is not the identity (error {err:.3g})"
                )
        table = torch.full((N, n, n), float("nan"), dtype=torch.float64)
        table[0] = torch.eye(n, dtype=torch.float64)
        frontier = [0]
        gi = G.generator_indices.tolist()
        while frontier:
            nxt = []
            for a in frontier:
                for k, s in enumerate(gi):
                    b = int(G.cayley[a, s])
                    img = table[a] @ self._di[k]
                    if torch.isnan(table[b, 0, 0]):
                        table[b] = img
                        nxt.append(b)
            frontier = nxt
        # every Cayley edge must agree: rho(a s_k) = rho(a) rho(s_k)
        for k, s in enumerate(gi):
            lhs = table[G.cayley[:, s]]
            rhs = table @ self._di[k]
            err = (lhs - rhs).abs().amax(dim=(-1, -2))
            if float(err.max()) > self.atol:
                a = int(err.argmax())
                raise ValueError(
                    f"not a homomorphism: the image of generator {k} violates a relation of {G.name} "
                    f"(rho(g s_{k}) != rho(g) rho(s_{k}) at element {a}, error {float(err[a]):.3g})"
                )
        self._table = table

    def _check_lie(self) -> None:
        G, n = self.G, self.size
        L = G.lie_algebra
        if L.shape[0]:
            basis = L.reshape(L.shape[0], -1).T  # [d*d, nl]
            for i in range(L.shape[0]):
                for j in range(L.shape[0]):
                    br = L[i] @ L[j] - L[j] @ L[i]
                    c = torch.linalg.lstsq(basis, br.reshape(-1, 1)).solution.flatten()
                    lhs = torch.einsum("k,kab->ab", c, self._li)
                    rhs = self._li[i] @ self._li[j] - self._li[j] @ self._li[i]
                    err = float((lhs - rhs).abs().max())
                    if err > self.atol:
                        raise ValueError(
                            f"not a homomorphism: Lie algebra generator {i} (with generator {j}) violates the "
                            f"bracket relation of {G.name} (error {err:.3g})"
                        )
        for k, h in enumerate(G.discrete_generators):
            Rh = self._di[k]
            hinv = torch.linalg.inv(h)
            for i, A in enumerate(L):
                target = hinv.new_zeros(n, n)
                conj = h @ A @ hinv
                c = torch.linalg.lstsq(L.reshape(L.shape[0], -1).T, conj.reshape(-1, 1)).solution.flatten()
                target = torch.einsum("k,kab->ab", c, self._li)
                err = float((Rh @ self._li[i] @ torch.linalg.inv(Rh) - target).abs().max())
                if err > self.atol:
                    raise ValueError(
                        f"not a homomorphism: discrete generator {k} does not normalise Lie algebra generator {i} "
                        f"as in {G.name} (error {err:.3g})"
                    )
            P, Q = h.clone(), Rh.clone()
            for _ in range(1, 25):
                if float((P - torch.eye(G.d, dtype=P.dtype)).abs().max()) < 1e-9:
                    err = float((Q - torch.eye(n, dtype=Q.dtype)).abs().max())
                    if err > self.atol:
                        raise ValueError(
                            f"not a homomorphism: discrete generator {k} satisfies h^m = I but its image does not "
                            f"(error {err:.3g})"
                        )
                    break
                P, Q = P @ h, Q @ Rh

    def rho(self, g: torch.Tensor) -> torch.Tensor:
        g = _check_elements(self.G, g)
        if self._table is None:
            raise TypeError(
                f"MatrixRep on the continuous group {self.G.name} only knows the images of the generators; "
                "rho(g) of an arbitrary element is unavailable (the constraint solver does not need it)"
            )
        assert isinstance(self.G, FiniteGroup)
        return self._table[self.G.index_of(g)].to(g.dtype)

    def drho(self, A: torch.Tensor) -> torch.Tensor:
        A = _check_elements(self.G, A, "A")
        if self.G.is_finite:
            return A.new_zeros(*A.shape[:-2], self.size, self.size)
        L = self.G.lie_algebra
        c = torch.linalg.lstsq(L.reshape(L.shape[0], -1).T.to(A.dtype), A.reshape(-1, self.G.d**2).T).solution
        return torch.einsum("kb,kij->bij", c, self._li.to(A.dtype)).reshape(*A.shape[:-2], self.size, self.size)

    def discrete_images(self) -> torch.Tensor:
        return self._di

    def lie_images(self) -> torch.Tensor:
        return self._li

    def __repr__(self) -> str:
        return f"MatrixRep#{id(self)}[{self.G.name}]"


def check_homomorphism(
    rep: Rep, n_pairs: int = 16, atol: float = 1e-9, generator: torch.Generator | None = None
) -> float:
    """Check ``rho(g1 g2) = rho(g1) rho(g2)`` on random pairs, and for Lie groups
    ``rho(exp(t A_k)) = exp(t drho(A_k))`` for every Lie algebra generator and ``rho(h) = discrete image``.

    Returns the largest error; raises ValueError naming the failing generator or pair if it exceeds ``atol``.
    """
    G = rep.G
    for k, A in enumerate(G.lie_algebra):
        t = 0.7
        lhs = rep.rho(torch.linalg.matrix_exp(t * A)[None])[0]
        rhs = torch.linalg.matrix_exp(t * rep.drho(A[None])[0])
        err = float((lhs - rhs).abs().max())
        if err > atol:
            raise ValueError(f"{rep!r} is not a homomorphism: Lie algebra generator {k} fails (error {err:.3g})")
    worst = 0.0
    if G.discrete_generators.shape[0]:
        err_d = (rep.rho(G.discrete_generators) - rep.discrete_images()).abs().amax(dim=(-1, -2))
        if err_d.numel() and float(err_d.max()) > atol:
            k = int(err_d.argmax())
            raise ValueError(
                f"{rep!r}: rho(discrete generator {k}) disagrees with its image (error {float(err_d[k]):.3g})"
            )
    g1, g2 = G.sample(n_pairs, generator), G.sample(n_pairs, generator)
    err = (rep.rho(g1 @ g2) - rep.rho(g1) @ rep.rho(g2)).abs().amax(dim=(-1, -2))
    worst = float(err.max()) if err.numel() else 0.0
    if worst > atol:
        i = int(err.argmax())
        raise ValueError(
            f"{rep!r} is not a homomorphism: rho(g1 g2) != rho(g1) rho(g2) for pair {i} (error {worst:.3g})"
        )
    return worst
