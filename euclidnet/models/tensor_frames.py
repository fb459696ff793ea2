r"""Tensor Frames: make any message-passing backbone O(3)-equivariant with local frames and tensorial messages.

After Lippmann, Gerhartz, Remme & Hamprecht, "Beyond Canonicalization: How Tensorial Messages Improve
Equivariant Message Passing" (arXiv:2405.15389).

**Idea.** Every node ``i`` gets a local frame ``L_i`` in O(3) (a 3x3 orthogonal matrix whose *rows* are the
frame axes ``e1, e2, e3``), computed equivariantly from its neighbourhood: ``L_i(g x) = L_i(x) g^T`` for
every ``g`` in O(3). Node features live in the node's own frame and carry declared irreps (e.g.
``"16x0e + 8x1o + 4x2e"``). Then

* edge geometry enters as local coordinates ``L_i r_ij`` (``r_ij = x_j - x_i``), which are invariant;
* a message from ``j`` to ``i`` carries ``j``'s features re-expressed in ``i``'s frame:
  ``D(L_i L_j^T) h_j`` with ``D`` the representation of the irreps (``L_i L_j^T`` may be improper; ``D``
  handles parity) — this is the *tensorial message*, invariant under any global ``g``;
* global inputs are brought into the frame, ``h_i = D(L_i) f_i``, and local outputs brought back,
  ``y_i = D(L_i)^T o_i``: local scalars are invariant, local vectors become equivariant vectors, etc.

Everything the backbone sees is invariant, so **any** function of it (plain MLPs, max-pooling...) yields
an O(3)-, translation- and permutation-equivariant model.

**Backbone protocol.** A backbone is a ``torch.nn.Module`` with attributes ``irreps_in`` and ``irreps_out``
(:class:`~euclidnet.o3.Irreps` of *local* node features) and ``forward(x, ctx) -> Tensor``:

* ``x``: ``[N, irreps_in.dim]`` node input features in each node's own frame;
* ``ctx``: a :class:`FrameContext` with ``edge_index`` ``[2, E]``, ``src``/``dst`` ``[E]``,
  ``edge_vec_local`` ``[E, 3]`` (``L_i r_ij`` as seen by the centre ``i = dst``), ``edge_length``
  ``[E]``, ``edge_cutoff`` ``[E]`` (cosine cutoff, 1 at 0 and 0 at ``r_max``), ``num_nodes``, ``batch``,
  ``num_graphs``, ``r_max`` and :meth:`FrameContext.transport` ``(h, irreps) -> [E, irreps.dim]``,
  the neighbour's features in the centre's frame;
* returns ``[N, irreps_out.dim]`` local node outputs.

The one rule: features of *other* nodes may only be read through ``ctx.transport`` (never ``h[src]``),
and no global quantity (positions, the frames themselves) is used. Within a node, anything goes.
:mod:`euclidnet.models.backbones` ships an MLP-message GNN and a PointNet++-style set-abstraction network.

**Frames.** ``frames="learned"`` (default): three equivariant vectors per node
``v_k = sum_j w_k(|r_ij|, s_i, s_j) f_cut(|r_ij|) r_ij / sum_j |w_k f_cut| |r_ij|`` (``k = 1, 2, 3``,
``w`` an MLP of a radial basis and the input scalars ``s``), then Gram-Schmidt: ``e1 = v1/|v1|``,
``e2 = normalise(v2 - (v2.e1) e1)`` and ``e3 = sign(v3 . (e1 x e2)) e1 x e2``. ``e1 x e2`` alone is a
pseudovector; the sign taken from the *vector* ``v3`` makes ``e3`` a vector, so the frame is in O(3)
(``det L = +-1``) and transforms correctly under reflections too. ``frames="pca"``: the eigenvectors
``u_k`` of the local covariance ``C_i = sum_j f_cut r_ij r_ij^T``, each signed by its third moment
``m_k = sum_j f_cut (r_ij . u_k)^3 / sum_j f_cut |r_ij|^3`` (``m_k u_k`` does not depend on the sign
``eigh`` returns), down-weighted to 0 when its eigenvalue is (nearly) degenerate, and fed to the same
Gram-Schmidt in the order (smallest, largest, middle eigenvalue): for a surface patch ``e1`` is the normal.
``frames="none"``: ``L_i = I`` — the *same* backbone on plain global coordinates (not equivariant; the
baseline).

**Degenerate neighbourhoods** (isolated node, two atoms, collinear or coplanar neighbours, cancelling
weights) have no equivariant frame: a symmetric neighbourhood is fixed by a subgroup ``H`` of O(3) and
``L(hx) = L(x) h^T`` is then impossible. We measure three invariants in ``[0, 1]``: ``u1 = |v1|``,
``u2 = |v2 - (v2.e1) e1|`` and ``u3 = |v3 . (e1 x e2)|`` and turn them into smooth confidences
``c_k = smoothstep((u_k - tol) / tol)`` (0 below ``tol``, 1 above ``2 tol``, C^1). Below ``tol`` the
undetermined axes are filled by an arbitrary but finite completion (so no NaN), and every quantity
expressed in node ``i``'s frame (its input, its state before it is sent, what it receives, its local edge
vectors, its output) is multiplied by the *gate*

    ``G_i = P0 + c1 (P1 - P0) + c1 c2 (P2 - P1) + c1 c2 c3 (1 - P2)``,

with ``P0``, ``P1``, ``P2`` the projectors on the features fixed by O(3) (``0e`` only), by O(2) about the
local x axis (the frame's ambiguity when only ``e1`` is known) and by the reflection ``z -> -z`` (the
ambiguity when the handedness is unknown). With a full frame ``G_i = 1``; with no frame only invariant
scalars pass; with an axis but no plane only the components symmetric about that axis pass, and so on.
Since the arbitrary part of the frame is exactly what ``G_i`` removes, outputs stay equivariant (an
isolated atom's vector outputs are 0, a dimer's are along its axis), and, as the confidences are
invariant, exact equivariance is untouched for nearly-degenerate inputs above ``tol``. ``tol``
(``degeneracy_tol``) defaults to ``1e-6`` in float64 and ``1e-3`` in float32; the frame's round-off
amplification is ``eps / u``, so errors stay ``<~ eps / tol``.

PCA frames differentiate through ``torch.linalg.eigh``; at exact eigenvalue crossings that gradient is not
finite — use learned frames for forces.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor

from ..graph.data import AtomicGraph
from ..graph.scatter import scatter_mean, scatter_sum
from ..o3.irreps import Irrep, Irreps
from ..o3.spherical_harmonics import spherical_harmonics
from .potential import energy_forces_stress
from .registry import register_model
from .schnet import GaussianRBF, cosine_cutoff, safe_norm

__all__ = [
    "TensorFrames",
    "FrameContext",
    "FrameRepresentation",
    "learned_frame_vectors",
    "pca_frame_vectors",
    "gram_schmidt_frames",
]

FRAME_KINDS = ("learned", "pca", "none")


def _smoothstep(u: Tensor, tol: float) -> Tensor:
    """0 for ``u <= tol``, 1 for ``u >= 2 tol``, ``3z^2 - 2z^3`` in between (``z = (u - tol) / tol``)."""
    z = torch.clamp((u - tol) / tol, 0.0, 1.0)
    return z * z * (3.0 - 2.0 * z)


def default_tol(dtype: torch.dtype) -> float:
    """Default degeneracy tolerance: ``1e-6`` for float64, ``1e-3`` for lower precision."""
    return 1e-6 if dtype == torch.float64 else 1e-3


# ------------------------------------------------------------------------------------------------------
# Representation matrices from frames, and the degeneracy projectors
# ------------------------------------------------------------------------------------------------------


class FrameRepresentation(torch.nn.Module):
    r"""``D(R)`` of irreps for batches of orthogonal matrices, as polynomials in ``R`` (smooth, exact).

    For degree ``l`` we use ``Y_l(R x) = D_l(R) Y_l(x)`` (solid harmonics, polynomials of degree ``l``):
    with fixed sample points ``X`` ``[K, 3]`` (``K >= 2l + 1``), ``D_l(R)^T = Y(X)^+ Y(X R^T)``. For an
    irrep ``(l, p)`` the improper part is ``D = det(R)^{[p != (-1)^l]} D_l(R)``; ``D_{1o}(R) = R`` and
    ``D_{0e} = 1`` directly. Unlike the Euler-angle route this has no gimbal-lock singularity in its
    gradient. Also holds the projectors used by the degeneracy gate (see the module docstring).
    """

    def __init__(self, lmax: int) -> None:
        super().__init__()
        self.lmax = int(lmax)
        gen = torch.Generator().manual_seed(1234)
        for l in range(2, self.lmax + 1):
            k = 2 * (2 * l + 1)
            x = torch.randn(k, 3, generator=gen, dtype=torch.float64)
            x = x / x.norm(dim=1, keepdim=True)
            y = spherical_harmonics(l, x, normalize=False, normalization="component")  # [K, 2l+1]
            self.register_buffer(f"points_{l}", x.to(torch.get_default_dtype()))
            self.register_buffer(f"pinv_{l}", torch.linalg.pinv(y).to(torch.get_default_dtype()))  # [2l+1, K]

    def degree_blocks(self, R: Tensor) -> dict[int, Tensor]:
        """``{l: D_l(R)}`` for ``l = 1 .. lmax`` (proper-rotation convention, parity handled by the caller)."""
        out: dict[int, Tensor] = {}
        if self.lmax >= 1:
            out[1] = R
        for l in range(2, self.lmax + 1):
            x = getattr(self, f"points_{l}").to(R.dtype)
            pinv = getattr(self, f"pinv_{l}").to(R.dtype)
            xr = torch.einsum("kb,...ab->...ka", x, R)  # rows R x_k
            y = spherical_harmonics(l, xr, normalize=False, normalization="component")  # [..., K, 2l+1]
            out[l] = torch.einsum("mk,...kn->...nm", pinv, y)  # D = (pinv @ Y(XR^T))^T
        return out

    @staticmethod
    def irrep_block(ir: Irrep, blocks: dict[int, Tensor], det: Tensor) -> Tensor:
        """``D`` of one irrep from :meth:`degree_blocks` and ``det(R)`` ``[...]``: ``[..., 2l+1, 2l+1]``."""
        if ir.l == 0:
            d = torch.ones(det.shape + (1, 1), dtype=det.dtype, device=det.device)
        else:
            d = blocks[ir.l]
        if ir.p != (-1) ** ir.l:
            d = d * det[..., None, None]
        return d

    def forward(self, irreps: Irreps | str, R: Tensor) -> Tensor:
        """Full block-diagonal ``D(R)`` ``[..., dim, dim]`` (for tests and small irreps)."""
        irreps = Irreps(irreps)
        blocks = self.degree_blocks(R)
        det = torch.linalg.det(R)
        mats = [self.irrep_block(ir, blocks, det) for mul, ir in irreps for _ in range(mul)]
        out = R.new_zeros(R.shape[:-2] + (irreps.dim, irreps.dim))
        i = 0
        for m in mats:
            d = m.shape[-1]
            out[..., i : i + d, i : i + d] = m
            i += d
        return out


def _gate_matrices(ir: Irrep, dtype: torch.dtype) -> Tensor:
    """``[4, d, d]``: ``P0, P1 - P0, P2 - P1, 1 - P2`` for one irrep (see the module docstring)."""
    d = ir.dim
    eye = torch.eye(d, dtype=torch.float64)
    irs = Irreps([(1, ir)])
    refl_z = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    p2 = 0.5 * (eye + irs.D_from_matrix(refl_z))
    # O(2) about x: average of D over rotations about x (exact with > 2l equispaced angles), times the
    # average over the reflection z -> -z (which, with those rotations, generates O(2)).
    m = 2 * ir.l + 2
    rot_avg = torch.zeros(d, d, dtype=torch.float64)
    for k in range(m):
        t = 2 * math.pi * k / m
        c, s = math.cos(t), math.sin(t)
        rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)
        rot_avg = rot_avg + irs.D_from_matrix(rx) / m
    p1 = rot_avg @ p2
    p0 = eye if (ir.l == 0 and ir.p == 1) else torch.zeros(d, d, dtype=torch.float64)
    return torch.stack([p0, p1 - p0, p2 - p1, eye - p2]).to(dtype)


def _apply_blocks(x: Tensor, irreps: Irreps, mats: dict[tuple[int, int], Tensor]) -> Tensor:
    """Apply per-irrep matrices ``mats[(l, p)]`` ``[R, d, d]`` to ``x`` ``[R, irreps.dim]`` block by block."""
    outs = []
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        if mul == 0:
            continue
        xb = x[:, sl].reshape(x.shape[0], mul, ir.dim)
        m = mats.get((ir.l, ir.p))
        if m is None:
            outs.append(x[:, sl])
        else:
            outs.append(torch.einsum("rab,rmb->rma", m, xb).reshape(x.shape[0], mul * ir.dim))
    return torch.cat(outs, dim=1) if outs else x[:, :0]


# ------------------------------------------------------------------------------------------------------
# Frames
# ------------------------------------------------------------------------------------------------------


def learned_frame_vectors(
    edge_vec: Tensor, weights: Tensor, dst: Tensor, num_nodes: int
) -> Tensor:
    """``v_k = sum_j w_jk r_ij / sum_j |w_jk| |r_ij|`` ``[N, K, 3]`` from edge vectors ``[E, 3]`` and
    invariant edge weights ``[E, K]`` (cutoff included). ``|v_k| <= 1``; 0 for an isolated node."""
    num = scatter_sum(weights[:, :, None] * edge_vec[:, None, :], dst, dim=0, dim_size=num_nodes)
    den = scatter_sum(weights.abs() * safe_norm(edge_vec)[:, None], dst, dim=0, dim_size=num_nodes)
    return num / (den[:, :, None] + 1e-30)


class _SafeEigh(torch.autograd.Function):
    """``torch.linalg.eigh`` whose backward drops the ``1 / (lambda_j - lambda_i)`` terms of (nearly)
    equal eigenvalues instead of returning inf/NaN (those eigenvectors are gated out downstream)."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, gap: float) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        lam, vecs = torch.linalg.eigh(a)
        ctx.save_for_backward(lam, vecs)
        ctx.gap = gap
        return lam, vecs

    @staticmethod
    def backward(ctx: Any, g_lam: Tensor, g_vecs: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        lam, vecs = ctx.saved_tensors
        diff = lam[..., None, :] - lam[..., :, None]  # [.., i, j] = lambda_j - lambda_i
        scale = lam.abs().amax(dim=-1, keepdim=True)[..., None] + 1e-30
        ok = diff.abs() > ctx.gap * scale
        inv = torch.where(ok, 1.0 / torch.where(ok, diff, torch.ones_like(diff)), torch.zeros_like(diff))
        inner = vecs.transpose(-1, -2) @ g_vecs
        inner = 0.5 * (inner - inner.transpose(-1, -2))  # eigenvectors move by rotations only
        inner = inv * inner + torch.diag_embed(g_lam)
        return vecs @ inner @ vecs.transpose(-1, -2), None


def pca_frame_vectors(edge_vec: Tensor, weight: Tensor, dst: Tensor, num_nodes: int, tol: float) -> Tensor:
    """Signed, confidence-weighted principal axes ``[N, 3, 3]`` ordered (smallest, largest, middle).

    ``C_i = sum_j w_ij r_ij r_ij^T``; eigenvector ``u_k`` contributes ``m_k gamma_k u_k`` with the third
    moment ``m_k = sum_j w (r.u_k)^3 / sum_j w |r|^3`` and ``gamma_k`` = product of smoothsteps of its
    relative eigen-gaps ``(lambda_b - lambda_a) / tr C`` (0 when degenerate within ``tol``).
    """
    cov = scatter_sum(weight[:, None, None] * edge_vec[:, :, None] * edge_vec[:, None, :], dst, 0, num_nodes)
    trace = cov.diagonal(dim1=-2, dim2=-1).sum(-1)
    # Exactly empty neighbourhoods: give eigh a harmless matrix (the result is gated out: gamma = 0).
    dummy = torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=cov.dtype, device=cov.device))
    empty = trace <= 1e-30
    lam, vecs = _SafeEigh.apply(torch.where(empty[:, None, None], dummy, cov), 1e-3 * tol)  # ascending, vecs columns
    scale = torch.where(empty, torch.ones_like(trace), trace)
    g_lo = _smoothstep((lam[:, 1] - lam[:, 0]) / scale, tol)
    g_hi = _smoothstep((lam[:, 2] - lam[:, 1]) / scale, tol)
    g_lo = torch.where(empty, torch.zeros_like(g_lo), g_lo)
    g_hi = torch.where(empty, torch.zeros_like(g_hi), g_hi)
    gamma = torch.stack([g_lo, g_lo * g_hi, g_hi], dim=1)  # [N, 3] for ascending eigenvalues
    proj = torch.einsum("ec,eck->ek", edge_vec, vecs[dst])  # [E, 3] components along each eigenvector
    r3 = safe_norm(edge_vec) ** 3
    m = scatter_sum(weight[:, None] * proj**3, dst, 0, num_nodes)
    m = m / (scatter_sum(weight * r3, dst, 0, num_nodes)[:, None] + 1e-30)
    axes = vecs.transpose(1, 2) * (m * gamma)[:, :, None]  # [N, 3(k), 3]
    return axes[:, [0, 2, 1]]


def gram_schmidt_frames(v: Tensor, tol: float) -> tuple[Tensor, Tensor]:
    """Frames ``[N, 3, 3]`` (rows ``e1, e2, e3``, always orthonormal) and confidences ``[N, 3]``.

    ``v`` ``[N, 3, 3]`` holds three equivariant vectors per node with ``|v_k| <~ 1``. See the module
    docstring for the equations and for what happens below ``tol``.
    """
    v1, v2, v3 = v[:, 0], v[:, 1], v[:, 2]
    dtype, device = v.dtype, v.device
    n1 = safe_norm(v1)
    ok1 = n1 > tol
    ex = torch.tensor([1.0, 0.0, 0.0], dtype=dtype, device=device).expand_as(v1)
    e1 = torch.where(ok1[:, None], v1 / n1[:, None], ex)
    w = v2 - (v2 * e1).sum(-1, keepdim=True) * e1
    n2 = safe_norm(w)
    ok2 = n2 > tol
    # Arbitrary finite completion: the coordinate axis least aligned with e1, orthogonalised.
    axis = torch.nn.functional.one_hot(e1.abs().argmin(dim=1), 3).to(dtype)
    a = axis - (axis * e1).sum(-1, keepdim=True) * e1
    a = a / safe_norm(a)[:, None]
    e2 = torch.where(ok2[:, None], w / n2[:, None], a)
    n = torch.linalg.cross(e1, e2)
    t = (v3 * n).sum(-1)
    u3 = t.abs()
    sign = torch.where(u3 > tol, torch.sign(t), torch.ones_like(t))
    e3 = sign[:, None] * n
    frames = torch.stack([e1, e2, e3], dim=1)
    conf = torch.stack([_smoothstep(n1, tol), _smoothstep(n2, tol), _smoothstep(u3, tol)], dim=1)
    return frames, conf


class _LearnedFrameWeights(torch.nn.Module):
    """``w_k(|r_ij|, s_i, s_j)`` ``[E, 3]``: MLP of a Gaussian radial basis and the endpoint scalars."""

    def __init__(self, r_max: float, num_scalars: int, hidden: int, num_rbf: int) -> None:
        super().__init__()
        self.rbf = GaussianRBF(r_max, num_rbf)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(num_rbf + 2 * num_scalars, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, 3),
        )

    def forward(self, r: Tensor, s_src: Tensor, s_dst: Tensor) -> Tensor:
        return self.net(torch.cat([self.rbf(r), s_src, s_dst], dim=1))


# ------------------------------------------------------------------------------------------------------
# The context handed to backbones
# ------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FrameContext:
    """Everything a backbone may use (see the module docstring); all of it is O(3)-invariant.

    Attributes:
        edge_index: ``[2, E]`` (``src = edge_index[0]`` neighbour ``j``, ``dst = edge_index[1]`` centre ``i``).
        edge_vec_local: ``[E, 3]`` gated ``L_i r_ij``.
        edge_length: ``[E]`` ``|r_ij|``; ``edge_cutoff``: ``[E]`` cosine cutoff of it.
        num_nodes, batch ``[N]``, num_graphs, r_max: as in the graph.
    """

    edge_index: Tensor
    edge_vec_local: Tensor
    edge_length: Tensor
    edge_cutoff: Tensor
    num_nodes: int
    batch: Tensor
    num_graphs: int
    r_max: float
    frames: Tensor  # [N, 3, 3]; private to the wrapper (do not use in backbones)
    gate_coef: Tensor  # [N, 4]: (1, c1, c1 c2, c1 c2 c3)
    rep: FrameRepresentation | None  # None: identity frames (frames="none")
    gate_mats: dict[tuple[int, int], Tensor]
    _node_blocks: dict[int, Tensor] | None = None
    _det: Tensor | None = None

    @property
    def src(self) -> Tensor:
        return self.edge_index[0]

    @property
    def dst(self) -> Tensor:
        return self.edge_index[1]

    def _blocks(self) -> tuple[dict[int, Tensor], Tensor]:
        assert self.rep is not None
        if self._node_blocks is None:
            self._node_blocks = self.rep.degree_blocks(self.frames)
            self._det = torch.linalg.det(self.frames)
        assert self._det is not None
        return self._node_blocks, self._det

    def node_D(self, irreps: Irreps) -> dict[tuple[int, int], Tensor]:
        """``{(l, p): D_{l,p}(L_i)}`` ``[N, d, d]`` for the irreps in ``irreps`` (wrapper use)."""
        blocks, det = self._blocks()
        out = {}
        for _, ir in irreps:
            if (ir.l, ir.p) not in out and not (ir.l == 0 and ir.p == 1):
                out[(ir.l, ir.p)] = FrameRepresentation.irrep_block(ir, blocks, det)
        return out

    def gate_at(self, irreps: Irreps, index: Tensor | None = None) -> dict[tuple[int, int], Tensor]:
        """Gate matrices ``G`` ``[R, d, d]`` of the nodes ``index`` (all nodes if ``None``), per irrep."""
        coef = self.gate_coef if index is None else self.gate_coef[index]
        out = {}
        for _, ir in irreps:
            key = (ir.l, ir.p)
            if key in out or key == (0, 1) or self.rep is None:
                continue
            out[key] = torch.einsum("rk,kab->rab", coef, self.gate_mats[key].to(coef.dtype))
        return out

    def gate(self, x: Tensor, irreps: Irreps | str) -> Tensor:
        """``G_i x_i`` for node features ``[N, irreps.dim]`` (identity when frames are complete)."""
        irreps = Irreps(irreps)
        if self.rep is None:
            return x
        return _apply_blocks(x, irreps, self.gate_at(irreps))

    def transport(self, x: Tensor, irreps: Irreps | str) -> Tensor:
        """Neighbour features in the centre's frame: ``G_i D(L_i) D(L_j)^T G_j x_j`` ``[E, irreps.dim]``.

        ``x``: ``[N, irreps.dim]`` node features, each in its own node's frame.
        """
        irreps = Irreps(irreps)
        if x.shape != (self.num_nodes, irreps.dim):
            raise ValueError(
                f"transport: expected features [{self.num_nodes}, {irreps.dim}] for irreps {irreps}, "
                f"got {tuple(x.shape)}"
            )
        if self.rep is None:
            return x[self.src]
        d_node = self.node_D(irreps)
        g_node = self.gate_at(irreps)
        # to global coordinates at the source: D(L_j)^T G_j x_j
        to_global = {k: d.transpose(-1, -2) @ g_node[k] if k in g_node else d.transpose(-1, -2)
                     for k, d in d_node.items()}
        y = _apply_blocks(x, irreps, to_global)[self.src]
        # into the centre's frame and gated there: G_i D(L_i)
        to_local = {k: g_node[k] @ d if k in g_node else d for k, d in d_node.items()}
        to_local = {k: m[self.dst] for k, m in to_local.items()}
        return _apply_blocks(y, irreps, to_local)


# ------------------------------------------------------------------------------------------------------
# The wrapper
# ------------------------------------------------------------------------------------------------------


@register_model("tensor_frames")
class TensorFrames(torch.nn.Module):
    """Wrap a message-passing backbone with local frames and tensorial messages (module docstring).

    Args:
        backbone: ``"mlp"`` (:class:`~euclidnet.models.backbones.MLPMessageBackbone`), ``"pointnet"``
            (:class:`~euclidnet.models.backbones.PointNetPPBackbone`) or a module following the backbone
            protocol, whose ``irreps_in``/``irreps_out`` must equal :attr:`irreps_backbone_in` /
            :attr:`irreps_backbone_out`.
        frames: ``"learned"``, ``"pca"`` or ``"none"`` (identity frames: the non-equivariant baseline).
        r_max: cutoff of the radius graph (computed here when the graph has none).
        num_types: species count: inputs get a one-hot of ``graph.atom_types`` (``num_types x 0e``);
            ``None``: a constant ``1x0e`` input instead.
        irreps_node_in: irreps of ``graph.node_features`` in the global frame (e.g. ``"1x1o"``), or ``None``.
        irreps_hidden: irreps of the backbone's hidden node features (what messages carry).
        node_outputs: per-node outputs, name -> irreps (e.g. ``{"normal": "1o"}``), returned ``[N, dim]``.
        graph_outputs: per-graph outputs, name -> irreps, reduced over nodes with ``readout``. An output
            named ``"energy"`` with irreps ``"0e"`` is returned as ``[B]`` and enables forces/stress.
        readout: ``"sum"`` or ``"mean"``.
        num_layers, mlp_hidden: size of the built-in backbones.
        frame_hidden, num_rbf: size of the learned-frame weight MLP and of its radial basis.
        degeneracy_tol: the ``tol`` of the degeneracy gate (default by dtype, see module docstring).
        max_num_neighbors: passed to the radius graph.
    """

    def __init__(
        self,
        backbone: str | torch.nn.Module = "mlp",
        frames: str = "learned",
        r_max: float = 5.0,
        num_types: int | None = None,
        irreps_node_in: str | Irreps | None = None,
        irreps_hidden: str | Irreps = "16x0e + 8x1o + 4x2e",
        node_outputs: dict[str, str] | None = None,
        graph_outputs: dict[str, str] | None = None,
        readout: str = "sum",
        num_layers: int = 3,
        mlp_hidden: int = 64,
        frame_hidden: int = 32,
        num_rbf: int = 16,
        degeneracy_tol: float | None = None,
        max_num_neighbors: int | None = None,
    ) -> None:
        super().__init__()
        if frames not in FRAME_KINDS:
            raise ValueError(f"TensorFrames: frames must be one of {FRAME_KINDS}, got {frames!r}")
        if not (isinstance(r_max, (int, float)) and math.isfinite(r_max) and r_max > 0):
            raise ValueError(f"TensorFrames: r_max must be a finite number > 0, got {r_max!r}")
        if num_types is not None and not (isinstance(num_types, int) and num_types >= 1):
            raise ValueError(f"TensorFrames: num_types must be None or a positive int, got {num_types!r}")
        if readout not in ("sum", "mean"):
            raise ValueError(f"TensorFrames: readout must be 'sum' or 'mean', got {readout!r}")
        if degeneracy_tol is not None and not (0 < degeneracy_tol < 0.5):
            raise ValueError(f"TensorFrames: degeneracy_tol must be in (0, 0.5), got {degeneracy_tol!r}")
        if node_outputs is None and graph_outputs is None:
            graph_outputs = {"energy": "0e"}
        self.node_output_irreps = {k: Irreps(v) for k, v in (node_outputs or {}).items()}
        self.graph_output_irreps = {k: Irreps(v) for k, v in (graph_outputs or {}).items()}
        both = set(self.node_output_irreps) & set(self.graph_output_irreps)
        if both:
            raise ValueError(f"TensorFrames: output names used as both node and graph outputs: {sorted(both)}")
        if not self.node_output_irreps and not self.graph_output_irreps:
            raise ValueError("TensorFrames: at least one output is needed (node_outputs or graph_outputs)")
        self.frames_kind = frames
        self.r_max = float(r_max)
        self.num_types = num_types
        self.readout = readout
        self.degeneracy_tol = degeneracy_tol
        self.max_num_neighbors = max_num_neighbors
        self.irreps_node_in = Irreps(irreps_node_in) if irreps_node_in is not None else Irreps("")
        self.irreps_hidden = Irreps(irreps_hidden)
        self.num_scalars = num_types if num_types is not None else 1
        self.irreps_backbone_in = Irreps(f"{self.num_scalars}x0e") + self.irreps_node_in
        out_list = list(self.node_output_irreps.values()) + list(self.graph_output_irreps.values())
        total = out_list[0]
        for ir in out_list[1:]:
            total = total + ir
        self.irreps_backbone_out = total

        if isinstance(backbone, str):
            from .backbones import MLPMessageBackbone, PointNetPPBackbone

            kinds = {"mlp": MLPMessageBackbone, "pointnet": PointNetPPBackbone}
            if backbone not in kinds:
                raise ValueError(f"TensorFrames: backbone must be one of {sorted(kinds)} or a module, got {backbone!r}")
            backbone = kinds[backbone](
                self.irreps_backbone_in, self.irreps_hidden, self.irreps_backbone_out,
                num_layers=num_layers, mlp_hidden=mlp_hidden,
            )
        elif isinstance(backbone, torch.nn.Module):
            for attr, want in (("irreps_in", self.irreps_backbone_in), ("irreps_out", self.irreps_backbone_out)):
                got = getattr(backbone, attr, None)
                if got is None or Irreps(got) != want:
                    raise ValueError(f"TensorFrames: backbone.{attr} must be {want}, got {got!r}")
        else:
            raise TypeError(
                f"TensorFrames: backbone must be a name or a torch.nn.Module, got {type(backbone).__name__}"
            )
        self.backbone = backbone

        lmax = max([ir.l for _, ir in self.irreps_hidden + self.irreps_backbone_in + self.irreps_backbone_out] + [1])
        self.rep = FrameRepresentation(lmax)
        all_irreps = self.irreps_hidden + self.irreps_backbone_in + self.irreps_backbone_out + Irreps("1o")
        for _, ir in all_irreps:
            name = f"gate_{ir.l}_{'e' if ir.p == 1 else 'o'}"
            if not hasattr(self, name):
                self.register_buffer(name, _gate_matrices(ir, torch.get_default_dtype()))
        self._gate_keys = sorted({(ir.l, ir.p) for _, ir in all_irreps})
        self.frame_weights = (
            _LearnedFrameWeights(self.r_max, self.num_scalars, frame_hidden, num_rbf) if frames == "learned" else None
        )
        given = {**(node_outputs or {}), **(graph_outputs or {})}
        self.irreps_out: dict[str, str] = {k: v if isinstance(v, str) else str(v) for k, v in given.items()}
        if self._is_potential:
            self.irreps_out.update({"forces": "1o", "stress": "0e + 2e"})

    @property
    def _is_potential(self) -> bool:
        return self.graph_output_irreps.get("energy") == Irreps("0e")

    def _gate_mats(self) -> dict[tuple[int, int], Tensor]:
        return {k: getattr(self, f"gate_{k[0]}_{'e' if k[1] == 1 else 'o'}") for k in self._gate_keys}

    def _scalars(self, graph: AtomicGraph, dtype: torch.dtype) -> Tensor:
        n = graph.num_nodes
        if self.num_types is None:
            return torch.ones(n, 1, dtype=dtype, device=graph.pos.device)
        if graph.atom_types is None:
            raise ValueError(f"TensorFrames: built with num_types={self.num_types} but the graph has no atom_types")
        t = graph.atom_types
        if t.numel() and int(t.max()) >= self.num_types:
            raise ValueError(f"TensorFrames: atom type {int(t.max())} is out of range for num_types={self.num_types}")
        return torch.nn.functional.one_hot(t, self.num_types).to(dtype)

    def compute_frames(self, graph: AtomicGraph, pos: Tensor, cell: Tensor | None) -> tuple[Tensor, Tensor]:
        """Frames ``[N, 3, 3]`` (rows = axes) and confidences ``[N, 3]`` for a graph with edges."""
        n = graph.num_nodes
        dtype = pos.dtype
        if self.frames_kind == "none":
            eye = torch.eye(3, dtype=dtype, device=pos.device).expand(n, 3, 3)
            return eye, torch.ones(n, 3, dtype=dtype, device=pos.device)
        tol = self.degeneracy_tol if self.degeneracy_tol is not None else default_tol(dtype)
        vec = graph.edge_vectors(pos, cell)
        r = safe_norm(vec)
        fcut = cosine_cutoff(r, self.r_max)
        src, dst = graph.edge_index[0], graph.edge_index[1]
        if self.frames_kind == "learned":
            assert self.frame_weights is not None
            s = self._scalars(graph, dtype)
            w = self.frame_weights(r, s[src], s[dst]) * fcut[:, None]
            v = learned_frame_vectors(vec, w, dst, n)
        else:
            v = pca_frame_vectors(vec, fcut, dst, n, tol)
        return gram_schmidt_frames(v, tol)

    def _outputs(self, graph: AtomicGraph, pos: Tensor, cell: Tensor | None) -> dict[str, Tensor]:
        dtype = pos.dtype
        frames, conf = self.compute_frames(graph, pos, cell)
        ones = torch.ones_like(conf[:, 0])
        coef = torch.stack([ones, conf[:, 0], conf[:, 0] * conf[:, 1], conf.prod(dim=1)], dim=1)
        vec = graph.edge_vectors(pos, cell)
        r = safe_norm(vec)
        ctx = FrameContext(
            edge_index=graph.edge_index,
            edge_vec_local=vec,  # replaced below
            edge_length=r,
            edge_cutoff=cosine_cutoff(r, self.r_max),
            num_nodes=graph.num_nodes,
            batch=graph.batch,
            num_graphs=graph.num_graphs,
            r_max=self.r_max,
            frames=frames,
            gate_coef=coef,
            rep=None if self.frames_kind == "none" else self.rep,
            gate_mats=self._gate_mats(),
        )
        irreps_in = self.irreps_backbone_in
        x = self._scalars(graph, dtype)
        if self.irreps_node_in.dim:
            f = graph.node_features
            if f is None or f.shape != (graph.num_nodes, self.irreps_node_in.dim):
                got = None if f is None else tuple(f.shape)
                raise ValueError(
                    f"TensorFrames: graph.node_features must be [{graph.num_nodes}, {self.irreps_node_in.dim}] "
                    f"({self.irreps_node_in}), got {got}"
                )
            x = torch.cat([x, f.to(dtype)], dim=1)
        if ctx.rep is not None:
            d = ctx.node_D(irreps_in)
            g = ctx.gate_at(irreps_in)
            x = _apply_blocks(x, irreps_in, {k: g[k] @ m if k in g else m for k, m in d.items()})
            # local edge vectors, gated at the centre: G_i L_i r_ij
            g1 = ctx.gate_at(Irreps("1o"), graph.edge_index[1])[(1, -1)]
            ctx.edge_vec_local = torch.einsum("eab,ebc,ec->ea", g1, frames[graph.edge_index[1]], vec)
        y = self.backbone(x, ctx)
        irreps_out = self.irreps_backbone_out
        if y.shape != (graph.num_nodes, irreps_out.dim):
            raise ValueError(f"TensorFrames: backbone returned {tuple(y.shape)}, expected [{graph.num_nodes}, "
                             f"{irreps_out.dim}] ({irreps_out})")
        if ctx.rep is not None:
            d = ctx.node_D(irreps_out)
            g = ctx.gate_at(irreps_out)
            y = _apply_blocks(y, irreps_out, {k: d[k].transpose(-1, -2) @ g[k] if k in g else d[k].transpose(-1, -2)
                                              for k in d})
        out: dict[str, Tensor] = {}
        i = 0
        for name, ir in self.node_output_irreps.items():
            out[name] = y[:, i : i + ir.dim]
            i += ir.dim
        reduce = scatter_sum if self.readout == "sum" else scatter_mean
        for name, ir in self.graph_output_irreps.items():
            val = reduce(y[:, i : i + ir.dim], graph.batch, dim=0, dim_size=graph.num_graphs)
            if name == "energy" and ir == Irreps("0e"):
                out["node_energy"] = y[:, i]
                val = val[:, 0]
            out[name] = val
            i += ir.dim
        out["frames"] = frames
        out["frame_confidence"] = conf
        return out

    def forward(
        self, graph: AtomicGraph, compute_forces: bool = False, compute_stress: bool = False
    ) -> dict[str, Tensor]:
        """Outputs by name (node outputs ``[N, dim]``, graph outputs ``[B, dim]``, ``energy`` ``[B]``), plus
        ``"frames"`` ``[N, 3, 3]`` and ``"frame_confidence"`` ``[N, 3]`` (``c1, c2, c3``) diagnostics and,
        for potentials, ``"forces"``/``"stress"``/``"virial"`` when asked."""
        model_dtype = self.gate_1_o.dtype
        if graph.pos.dtype != model_dtype:
            raise TypeError(
                f"TensorFrames: positions are {graph.pos.dtype} but the model is {model_dtype}; "
                f"convert one of them (graph.to(dtype) or model.to(dtype))"
            )
        graph = graph.with_edges(self.r_max, max_num_neighbors=self.max_num_neighbors)
        if not (compute_forces or compute_stress):
            return self._outputs(graph, graph.pos, graph.cell)
        if not self._is_potential:
            raise ValueError("TensorFrames: forces/stress need a graph output 'energy' with irreps '0e'")
        store: dict[str, Any] = {}

        def energy_fn(g: AtomicGraph, pos: Tensor, cell: Tensor | None) -> Tensor:
            o = self._outputs(g, pos, cell)
            store.update(o)
            return o["energy"]

        out = energy_forces_stress(energy_fn, graph, compute_forces=compute_forces, compute_stress=compute_stress)
        store.update(out)
        return store
