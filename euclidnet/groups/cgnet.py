"""The Clebsch-Gordan network, done right: SH features -> per-irrep linear maps -> CG nonlinearity.

Input: a batch of point clouds ``pos`` ``[B, N, 3]`` (relative to the origin they are described about) with a
per-point signal ``s`` ``[B, N, C_in]`` (e.g. one-hot species; padding points get ``s = 0``). Layer 0 projects
the signal onto spherical harmonics and a Gaussian radial basis:

    f^{l}_{c r}[m] = sum_i s_{i c} phi_r(|x_i|) |x_i|^l Y^l_m(x_i / |x_i|),       irrep  l with parity (-1)^l

(solid harmonics, so that a point at the origin contributes only to ``l = 0``).

Each layer then

1. mixes channels *within each irrep* ``(l, p)`` with its own matrix ``W_{(l,p)}`` ``[C_out, C_in]`` -- never across
   different ``l`` or parity (that is the usual bug that breaks equivariance);
2. applies the CG nonlinearity channel-wise: for every pair of irreps ``(l1, p1), (l2, p2)`` present and every
   ``l`` in ``|l1 - l2| .. min(l1 + l2, lmax)``,
   ``g^{(l, p1 p2)}_c[m] = sum C^{l1 l2 l}_{m1 m2 m} f^{l1}_c[m1] f^{l2}_c[m2]``
   with the real-basis Wigner 3j symbols, which are exactly invariant; no pointwise nonlinearity ever touches an
   ``l > 0`` coefficient;
3. concatenates the products with its input (a skip) per irrep.

Parity is tracked (irreps are ``(l, p)``), so the final ``0e`` channels are O(3) invariants (rotations and the
inversion); the ``0o`` channels are pseudoscalars (rotation invariant, odd under inversion) and are available
via ``output="0o"`` for chirality-sensitive targets.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..o3 import Irrep, spherical_harmonics, wigner_3j

__all__ = ["CGNet", "cg_product", "sh_projection"]


def sh_projection(pos: torch.Tensor, signal: torch.Tensor, lmax: int, n_radial: int, r_max: float) -> dict:
    """Layer-0 features ``{Irrep(l, (-1)^l): [B, C_in * n_radial, 2l + 1]}`` of point clouds ``[B, N, 3]``."""
    if pos.dim() != 3 or pos.shape[-1] != 3:
        raise ValueError(f"pos must have shape [B, N, 3], got {tuple(pos.shape)}")
    if signal.dim() != 3 or signal.shape[:2] != pos.shape[:2]:
        raise ValueError(f"signal must have shape [B, N, C] matching pos {tuple(pos.shape)}, got {tuple(signal.shape)}")
    r = pos.norm(dim=-1)  # [B, N]
    centers = torch.linspace(0.0, r_max, n_radial, dtype=pos.dtype)
    width = r_max / max(n_radial - 1, 1)
    phi = torch.exp(-(((r[..., None] - centers) / width) ** 2))  # [B, N, R]
    # solid harmonics |x|^l Y_l(x / |x|): continuous at x = 0 (an atom at the centre has no direction)
    Y = spherical_harmonics(list(range(lmax + 1)), pos, normalize=False)  # [B, N, (lmax+1)^2]
    w = (signal[..., :, None] * phi[..., None, :]).flatten(-2)  # [B, N, C*R]
    out = {}
    i = 0
    for l in range(lmax + 1):
        out[Irrep(l, (-1) ** l)] = torch.einsum("bnc,bnm->bcm", w, Y[..., i : i + 2 * l + 1])
        i += 2 * l + 1
    return out


def cg_product(feats: dict, lmax: int) -> dict:
    """Channel-wise CG products of all pairs ``ir1 <= ir2`` of ``feats`` (``{Irrep: [B, C, 2l+1]}``, same ``C``),
    returning ``{Irrep: [B, C * n_paths, 2l+1]}``."""
    irs = sorted(feats)
    out: dict = {}
    for a, ir1 in enumerate(irs):
        for ir2 in irs[a:]:
            f1, f2 = feats[ir1], feats[ir2]
            for l in range(abs(ir1.l - ir2.l), min(ir1.l + ir2.l, lmax) + 1):
                C = wigner_3j(ir1.l, ir2.l, l, dtype=f1.dtype) * math.sqrt(2 * l + 1)
                g = torch.einsum("ijk,bci,bcj->bck", C, f1, f2)
                out.setdefault(Irrep(l, ir1.p * ir2.p), []).append(g)
    return {ir: torch.cat(v, dim=1) for ir, v in out.items()}


def _paths(irs: list[Irrep], lmax: int) -> dict:
    """Number of CG paths producing each irrep from ``irs`` (mirrors :func:`cg_product`)."""
    irs = sorted(irs)
    count: dict = {}
    for a, ir1 in enumerate(irs):
        for ir2 in irs[a:]:
            for l in range(abs(ir1.l - ir2.l), min(ir1.l + ir2.l, lmax) + 1):
                ir = Irrep(l, ir1.p * ir2.p)
                count[ir] = count.get(ir, 0) + 1
    return count


class CGNet(nn.Module):
    """Clebsch-Gordan network: O(3)-invariant (``output="0e"``) or pseudoscalar (``"0o"``) point-cloud model.

    Args:
        in_channels: per-point signal channels ``C_in``.
        out_dim: outputs per cloud.
        lmax: largest degree kept.
        channels: channels per irrep after each per-irrep linear map.
        n_layers: number of (linear, CG) layers.
        n_radial, r_max: Gaussian radial basis of layer 0.
        output: ``"0e"`` (invariant) or ``"0o"`` (pseudoscalar).

    Shapes: ``pos`` ``[B, N, 3]``, ``signal`` ``[B, N, C_in]`` -> ``[B, out_dim]``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_dim: int = 1,
        lmax: int = 2,
        channels: int = 4,
        n_layers: int = 2,
        n_radial: int = 4,
        r_max: float = 2.0,
        output: str = "0e",
    ) -> None:
        super().__init__()
        for name, v in (
            ("in_channels", in_channels),
            ("out_dim", out_dim),
            ("channels", channels),
            ("n_layers", n_layers),
            ("n_radial", n_radial),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if isinstance(lmax, bool) or not isinstance(lmax, int) or lmax < 0:
            raise ValueError(f"lmax must be an int >= 0, got {lmax!r}")
        if output not in ("0e", "0o"):
            raise ValueError(f"output must be '0e' (invariant) or '0o' (pseudoscalar), got {output!r}")
        self.lmax, self.n_radial, self.r_max, self.output = lmax, n_radial, float(r_max), Irrep(output)
        c0 = in_channels * n_radial
        dims = {Irrep(l, (-1) ** l): c0 for l in range(lmax + 1)}
        self.layers = nn.ModuleList()
        self.keys: list[list[Irrep]] = []
        for _ in range(n_layers):
            lin = nn.ParameterDict()
            keys = sorted(dims)
            for ir in keys:
                lin[str(ir)] = nn.Parameter(torch.randn(channels, dims[ir]) / math.sqrt(dims[ir]))
            self.layers.append(lin)
            self.keys.append(keys)
            paths = _paths(keys, lmax)
            dims = {ir: channels * (paths.get(ir, 0) + (1 if ir in keys else 0)) for ir in set(paths) | set(keys)}
        if self.output not in dims:
            raise ValueError(f"no {output} features are produced with lmax={lmax}, n_layers={n_layers}; add a layer")
        self.readout = nn.Sequential(nn.Linear(dims[self.output], 16), nn.SiLU(), nn.Linear(16, out_dim))
        self.odd = output == "0o"

    def features(self, pos: torch.Tensor, signal: torch.Tensor) -> dict:
        """All irreps features ``{Irrep: [B, C, 2l+1]}`` after the last layer."""
        feats = sh_projection(pos, signal, self.lmax, self.n_radial, self.r_max)
        for lin, keys in zip(self.layers, self.keys):
            mixed = {ir: torch.einsum("oc,bcm->bom", lin[str(ir)].to(pos.dtype), feats[ir]) for ir in keys}
            prods = cg_product(mixed, self.lmax)
            feats = {}
            for ir in set(prods) | set(mixed):
                parts = ([mixed[ir]] if ir in mixed else []) + ([prods[ir]] if ir in prods else [])
                feats[ir] = torch.cat(parts, dim=1)
        return feats

    def forward(self, pos: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        s = self.features(pos, signal)[self.output][..., 0]  # [B, C]
        s = s.to(self.readout[0].weight.dtype)
        out = self.readout(s)
        if self.odd:  # an odd function of the pseudoscalars keeps the output a pseudoscalar
            out = out - self.readout(-s)
        return out.to(pos.dtype)
