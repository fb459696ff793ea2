"""Two message-passing backbones for :class:`~euclidnet.models.tensor_frames.TensorFrames`.

Both follow the backbone protocol of :mod:`euclidnet.models.tensor_frames`: ``forward(x, ctx)`` maps local
node features ``x`` ``[N, irreps_in.dim]`` to local outputs ``[N, irreps_out.dim]``, reading neighbours only
through ``ctx.transport`` and geometry only through ``ctx.edge_vec_local`` / ``ctx.edge_length`` /
``ctx.edge_cutoff``. Inside they are ordinary, non-equivariant networks (plain ``Linear`` layers on the
flattened features); the frames make the whole equivariant. With ``frames="none"`` the same backbone runs
on global coordinates.

* :class:`MLPMessageBackbone` (``H = irreps_hidden.dim``, ``T_ij`` = transport, ``u_ij = L_i r_ij / r_max``)::

      h^0_i = Lin(x_i)
      m_ij  = MLP_t([h_i, T_ij h_j, u_ij, |r_ij| / r_max]) * f_cut(r_ij)
      h_i  <- h_i + MLP'_t([h_i, sum_j m_ij / (1 + sum_j f_cut(r_ij))])
      out_i = MLP_out(h_i)

* :class:`PointNetPPBackbone`: PointNet++ set abstraction with every point as a centroid (no subsampling,
  since per-point outputs are wanted): a local max-pool of an MLP of the neighbour's features and its
  relative position in the centre's frame::

      h^0_i = Lin(x_i)
      p_i   = max_j [ relu(MLP_t([T_ij h_j, u_ij])) * f_cut(r_ij) ]        (0 for no neighbours)
      h_i  <- h_i + MLP'_t([h_i, p_i])
      out_i = MLP_out(h_i)

  The features are >= 0 and scaled by ``f_cut``, so the max-pool is continuous as points cross ``r_max``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..graph.scatter import scatter_max, scatter_sum
from ..o3.irreps import Irreps

if TYPE_CHECKING:
    from .tensor_frames import FrameContext

__all__ = ["MLPMessageBackbone", "PointNetPPBackbone"]


def _mlp(n_in: int, hidden: int, n_out: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Linear(n_in, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
        torch.nn.Linear(hidden, n_out),
    )


class _Backbone(torch.nn.Module):
    def __init__(
        self, irreps_in: Irreps | str, irreps_hidden: Irreps | str, irreps_out: Irreps | str, num_layers: int,
        mlp_hidden: int,
    ) -> None:
        super().__init__()
        if not (isinstance(num_layers, int) and num_layers >= 1):
            raise ValueError(f"{type(self).__name__}: num_layers must be an int >= 1, got {num_layers!r}")
        if not (isinstance(mlp_hidden, int) and mlp_hidden >= 1):
            raise ValueError(f"{type(self).__name__}: mlp_hidden must be a positive int, got {mlp_hidden!r}")
        self.irreps_in = Irreps(irreps_in)
        self.irreps_hidden = Irreps(irreps_hidden)
        self.irreps_out = Irreps(irreps_out)
        if self.irreps_in.dim == 0 or self.irreps_hidden.dim == 0 or self.irreps_out.dim == 0:
            raise ValueError(
                f"{type(self).__name__}: irreps must be non-empty, got in={self.irreps_in}, "
                f"hidden={self.irreps_hidden}, out={self.irreps_out}"
            )
        h = self.irreps_hidden.dim
        self.embed = torch.nn.Linear(self.irreps_in.dim, h)
        self.head = _mlp(h, mlp_hidden, self.irreps_out.dim)

    def _check(self, x: Tensor, ctx: FrameContext) -> None:
        if x.shape != (ctx.num_nodes, self.irreps_in.dim):
            raise ValueError(
                f"{type(self).__name__}: expected input [{ctx.num_nodes}, {self.irreps_in.dim}] "
                f"({self.irreps_in}), got {tuple(x.shape)}"
            )


class MLPMessageBackbone(_Backbone):
    """MLP messages, normalised sum aggregation and residual MLP updates (module docstring).

    Args:
        irreps_in, irreps_hidden, irreps_out: local feature irreps (input, carried by messages, output).
        num_layers: message-passing rounds; ``mlp_hidden``: width of every MLP.
    """

    def __init__(
        self, irreps_in: Irreps | str, irreps_hidden: Irreps | str, irreps_out: Irreps | str, num_layers: int = 3,
        mlp_hidden: int = 64,
    ) -> None:
        super().__init__(irreps_in, irreps_hidden, irreps_out, num_layers, mlp_hidden)
        h = self.irreps_hidden.dim
        self.message = torch.nn.ModuleList([_mlp(2 * h + 4, mlp_hidden, h) for _ in range(num_layers)])
        self.update = torch.nn.ModuleList([_mlp(2 * h, mlp_hidden, h) for _ in range(num_layers)])

    def forward(self, x: Tensor, ctx: FrameContext) -> Tensor:
        """``[N, irreps_in.dim]`` local inputs -> ``[N, irreps_out.dim]`` local outputs."""
        self._check(x, ctx)
        h = self.embed(x)
        geo = torch.cat([ctx.edge_vec_local / ctx.r_max, ctx.edge_length[:, None] / ctx.r_max], dim=1)
        fc = ctx.edge_cutoff[:, None]
        norm = 1.0 + scatter_sum(ctx.edge_cutoff, ctx.dst, dim=0, dim_size=ctx.num_nodes)[:, None]
        for msg, upd in zip(self.message, self.update):
            hj = ctx.transport(h, self.irreps_hidden)
            m = msg(torch.cat([h[ctx.dst], hj, geo], dim=1)) * fc
            agg = scatter_sum(m, ctx.dst, dim=0, dim_size=ctx.num_nodes) / norm
            h = h + upd(torch.cat([h, agg], dim=1))
        return self.head(h)


class PointNetPPBackbone(_Backbone):
    """PointNet++-style set abstraction: local max-pooling of ``MLP(T_ij h_j, L_i r_ij)`` (module docstring).

    Args:
        irreps_in, irreps_hidden, irreps_out: local feature irreps (input, carried by messages, output).
        num_layers: set-abstraction rounds; ``mlp_hidden``: width of every MLP.
    """

    def __init__(
        self, irreps_in: Irreps | str, irreps_hidden: Irreps | str, irreps_out: Irreps | str, num_layers: int = 3,
        mlp_hidden: int = 64,
    ) -> None:
        super().__init__(irreps_in, irreps_hidden, irreps_out, num_layers, mlp_hidden)
        h = self.irreps_hidden.dim
        self.local = torch.nn.ModuleList([_mlp(h + 3, mlp_hidden, mlp_hidden) for _ in range(num_layers)])
        self.update = torch.nn.ModuleList([_mlp(h + mlp_hidden, mlp_hidden, h) for _ in range(num_layers)])

    def forward(self, x: Tensor, ctx: FrameContext) -> Tensor:
        """``[N, irreps_in.dim]`` local inputs -> ``[N, irreps_out.dim]`` local outputs."""
        self._check(x, ctx)
        h = self.embed(x)
        u = ctx.edge_vec_local / ctx.r_max
        fc = ctx.edge_cutoff[:, None]
        for loc, upd in zip(self.local, self.update):
            hj = ctx.transport(h, self.irreps_hidden)
            f = torch.relu(loc(torch.cat([hj, u], dim=1))) * fc
            pooled = scatter_max(f, ctx.dst, dim=0, dim_size=ctx.num_nodes)
            h = h + upd(torch.cat([h, pooled], dim=1))
        return self.head(h)
