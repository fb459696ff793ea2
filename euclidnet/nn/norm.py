"""Equivariant normalisation layers: :class:`BatchNorm` and :class:`LayerNorm`.

Only rotation/inversion invariant statistics are used: scalars ``0e`` may be centred (their mean is an
invariant), every other irrep (including pseudoscalars ``0o``) is only rescaled by an invariant norm, since
subtracting a mean vector would break equivariance. Affine weights are per irrep copy (channel), biases
only for ``0e`` channels.
"""

from __future__ import annotations

import torch

from ..o3.irreps import Irreps
from .activation import _check_features

__all__ = ["BatchNorm", "LayerNorm"]


class BatchNorm(torch.nn.Module):
    r"""Equivariant batch normalisation (numerically the same as e3nn's ``BatchNorm``).

    Input ``[batch, ..., irreps.dim]``; the middle dimensions are "samples" (e.g. points). For every block
    ``x`` of shape ``[batch, sample, mul, 2l + 1]``:

    * ``0e`` channels are centred: ``x <- x - mean`` (mean over batch and samples, or over samples only with
      ``instance=True``; the running mean in eval mode).
    * ``v`` = ``|x|^2 / (2l + 1)`` (``normalization="component"``) or ``|x|^2`` (``"norm"``), reduced over the
      samples by ``reduce`` (``"mean"`` or ``"max"``) and then averaged over the batch (not with ``instance``);
      eval mode uses the running value.
    * ``y = x / sqrt(v + eps) * weight[channel] (+ bias[channel] for 0e)`` if ``affine``.

    Running statistics (not with ``instance``): ``running = (1 - momentum) * running + momentum * batch_stat``;
    ``running_mean`` has one entry per ``0e`` channel, ``running_var`` one per irrep copy (``num_irreps``).
    Shapes: ``[batch, ..., irreps.dim] -> same``.
    """

    def __init__(
        self,
        irreps: Irreps | str,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        reduce: str = "mean",
        instance: bool = False,
        normalization: str = "component",
    ) -> None:
        super().__init__()
        self.irreps = Irreps(irreps)
        if not (isinstance(eps, (int, float)) and eps >= 0):
            raise ValueError(f"BatchNorm: eps must be a float >= 0, got {eps!r}")
        if not (isinstance(momentum, (int, float)) and 0.0 <= momentum <= 1.0):
            raise ValueError(f"BatchNorm: momentum must be a float in [0, 1], got {momentum!r}")
        if reduce not in ("mean", "max"):
            raise ValueError(f"BatchNorm: reduce must be 'mean' or 'max', got {reduce!r}")
        if normalization not in ("component", "norm"):
            raise ValueError(f"BatchNorm: normalization must be 'component' or 'norm', got {normalization!r}")
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.affine = bool(affine)
        self.reduce = reduce
        self.instance = bool(instance)
        self.normalization = normalization

        num_scalar = sum(mul for mul, ir in self.irreps if ir.is_scalar())
        num_features = self.irreps.num_irreps
        if self.instance:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
        else:
            self.register_buffer("running_mean", torch.zeros(num_scalar))
            self.register_buffer("running_var", torch.ones(num_features))
        if self.affine:
            self.weight = torch.nn.Parameter(torch.ones(num_features))
            self.bias = torch.nn.Parameter(torch.zeros(num_scalar))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def extra_repr(self) -> str:
        return (
            f"{self.irreps}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"reduce={self.reduce!r}, instance={self.instance}, normalization={self.normalization!r}"
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (torch's name)
        """``[batch, ..., irreps.dim] -> [batch, ..., irreps.dim]``."""
        _check_features(input, self.irreps, "input", "BatchNorm")
        if input.dim() < 2:
            raise ValueError(
                f"BatchNorm: input must have shape [batch, ..., {self.irreps.dim}], got shape {tuple(input.shape)}"
            )
        orig_shape = input.shape
        batch = input.shape[0]
        n_sample = 1
        for s in input.shape[1:-1]:
            n_sample *= s
        x = input.reshape(batch, n_sample, self.irreps.dim)
        use_batch_stats = self.training or self.instance
        update_running = self.training and not self.instance
        new_means: list[torch.Tensor] = []
        new_vars: list[torch.Tensor] = []
        fields = []
        ix = irm = irv = iw = ib = 0
        for mul, ir in self.irreps:
            d = ir.dim
            if mul == 0:
                continue
            field = x[:, :, ix : ix + mul * d].reshape(batch, n_sample, mul, d)
            ix += mul * d
            if ir.is_scalar():
                if use_batch_stats:
                    if self.instance:
                        mean = field.mean(1).reshape(batch, mul)
                    else:
                        mean = field.mean((0, 1)).reshape(mul)
                        new_means.append(self._roll(self.running_mean[irm : irm + mul], mean))
                else:
                    mean = self.running_mean[irm : irm + mul]
                irm += mul
                field = field - mean.reshape(-1, 1, mul, 1)
            if use_batch_stats:
                sq = field.pow(2)
                v = sq.sum(3) if self.normalization == "norm" else sq.mean(3)  # [batch, sample, mul]
                v = v.mean(1) if self.reduce == "mean" else v.max(1).values  # [batch, mul]
                if not self.instance:
                    v = v.mean(0)  # [mul]
                    new_vars.append(self._roll(self.running_var[irv : irv + mul], v))
            else:
                v = self.running_var[irv : irv + mul]
            irv += mul
            scale = (v + self.eps).pow(-0.5)
            if self.affine:
                scale = scale * self.weight[iw : iw + mul]
                iw += mul
            field = field * scale.reshape(-1, 1, mul, 1)
            if self.affine and ir.is_scalar():
                field = field + self.bias[ib : ib + mul].reshape(mul, 1)
                ib += mul
            fields.append(field.reshape(batch, n_sample, mul * d))
        if update_running:
            with torch.no_grad():
                if new_means:
                    self.running_mean.copy_(torch.cat(new_means))
                if new_vars:
                    self.running_var.copy_(torch.cat(new_vars))
        if not fields:
            return input
        return torch.cat(fields, dim=2).reshape(orig_shape)

    def _roll(self, current: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.momentum) * current + self.momentum * update.detach().to(current.dtype)


class LayerNorm(torch.nn.Module):
    r"""Equivariant layer normalisation with per-sample statistics.

    For every feature vector (every index of the leading dimensions) and every distinct irrep ``ir`` of
    ``irreps`` -- pooling all blocks of that irrep, so ``"4x0e+4x0e"`` behaves like ``"8x0e"`` -- with
    ``M`` copies ``x_1..x_M`` (each of dimension ``d = 2l + 1``):

    .. math::

        \mu = \frac{1}{M}\sum_c x_c \ \text{(only for 0e, else } \mu = 0),\qquad
        \sigma^2 = \frac{1}{M d}\sum_c |x_c - \mu|^2,\qquad
        y_c = \frac{x_c - \mu}{\sqrt{\sigma^2 + \epsilon}}\, w_c \; (+\, b_c \text{ for 0e}).

    ``w`` (ones) has one entry per irrep copy (``num_irreps``), ``b`` (zeros) one per ``0e`` copy; both only
    if ``affine``. ``sigma^2`` and ``mu`` are rotation/inversion invariant, hence the layer is equivariant.
    With a single ``0e`` copy the centred value is 0 (as for ``torch.nn.LayerNorm`` with one feature).
    Shapes: ``[..., irreps.dim] -> [..., irreps.dim]``.
    """

    def __init__(self, irreps: Irreps | str, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.irreps = Irreps(irreps)
        if not (isinstance(eps, (int, float)) and eps >= 0):
            raise ValueError(f"LayerNorm: eps must be a float >= 0, got {eps!r}")
        self.eps = float(eps)
        self.affine = bool(affine)
        kinds: list = []
        self._kind: list[int] = []
        for _, ir in self.irreps:
            if ir not in kinds:
                kinds.append(ir)
            self._kind.append(kinds.index(ir))
        self._kinds = kinds
        self._kind_mul = [sum(mul for mul, ir in self.irreps if ir == k) for k in kinds]
        num_scalar = sum(mul for mul, ir in self.irreps if ir.is_scalar())
        if self.affine:
            self.weight = torch.nn.Parameter(torch.ones(self.irreps.num_irreps))
            self.bias = torch.nn.Parameter(torch.zeros(num_scalar))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def extra_repr(self) -> str:
        return f"{self.irreps}, eps={self.eps}, affine={self.affine}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., irreps.dim] -> [..., irreps.dim]``."""
        _check_features(x, self.irreps, "x", "LayerNorm")
        lead = x.shape[:-1]
        blocks = []
        ix = 0
        for mul, ir in self.irreps:
            blocks.append(x[..., ix : ix + mul * ir.dim].reshape(*lead, mul, ir.dim))
            ix += mul * ir.dim
        if not blocks:
            return x
        # centre the 0e copies with their per-sample mean
        sums: dict[int, torch.Tensor] = {}
        for (mul, ir), b, k in zip(self.irreps, blocks, self._kind):
            if ir.is_scalar() and mul > 0:
                s = b.sum((-2, -1))
                sums[k] = sums[k] + s if k in sums else s
        for i, k in enumerate(self._kind):
            if k in sums:
                blocks[i] = blocks[i] - (sums[k] / self._kind_mul[k])[..., None, None]
        # per-sample second moment per irrep kind
        sq: dict[int, torch.Tensor] = {}
        for (mul, _), b, k in zip(self.irreps, blocks, self._kind):
            if mul > 0:
                s = b.pow(2).sum((-2, -1))
                sq[k] = sq[k] + s if k in sq else s
        inv = {k: (s / (self._kind_mul[k] * self._kinds[k].dim) + self.eps).pow(-0.5) for k, s in sq.items()}
        out = []
        iw = ib = 0
        for (mul, ir), b, k in zip(self.irreps, blocks, self._kind):
            if mul == 0:
                out.append(b.reshape(*lead, 0))
                continue
            y = b * inv[k][..., None, None]
            if self.affine:
                y = y * self.weight[iw : iw + mul, None]
                if ir.is_scalar():
                    y = y + self.bias[ib : ib + mul, None]
                    ib += mul
            iw += mul
            out.append(y.reshape(*lead, mul * ir.dim))
        return torch.cat(out, dim=-1)
