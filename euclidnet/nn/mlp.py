"""A plain fully connected network with variance-preserving initialisation (for radial functions)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .activation import normalize2mom

__all__ = ["FullyConnectedNet"]


class _Layer(torch.nn.Module):
    """``x -> act(x @ W / sqrt(h_in * var_in)) * sqrt(var_out)`` or, without act,
    ``x -> x @ W / sqrt(h_in * var_in / var_out)``; ``W ~ N(0, 1)`` of shape ``[h_in, h_out]``."""

    def __init__(self, h_in: int, h_out: int, act: torch.nn.Module | None, var_in: float, var_out: float) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(h_in, h_out))
        self.act = act
        self.h_in = h_in
        self.h_out = h_out
        self.var_in = float(var_in)
        self.var_out = float(var_out)

    def extra_repr(self) -> str:
        return f"{self.h_in}->{self.h_out}, act={self.act is not None}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act is not None:
            x = x @ (self.weight / (self.h_in * self.var_in) ** 0.5)
            return self.act(x) * self.var_out**0.5
        return x @ (self.weight / (self.h_in * self.var_in / self.var_out) ** 0.5)


class FullyConnectedNet(torch.nn.Sequential):
    r"""Multilayer perceptron without biases, ``hs = [h_0, h_1, ..., h_n]``.

    Layer ``i`` holds ``layer{i}.weight`` ``[h_i, h_{i+1}]`` initialised ``N(0, 1)`` and divides it by
    ``sqrt(h_i)`` in the forward pass (so the state dict is the same as e3nn's ``FullyConnectedNet``).
    ``act`` is wrapped in :class:`normalize2mom` (``E[act(z)^2] = 1``), applied after every hidden layer and
    also after the last one if ``out_act``. With inputs of second moment ``variance_in`` the hidden
    pre-activations have second moment ~1 and the outputs ~``variance_out``.

    Shapes: ``[..., hs[0]] -> [..., hs[-1]]``.
    """

    def __init__(
        self,
        hs: Sequence[int],
        act: Callable[[torch.Tensor], torch.Tensor] | None = None,
        variance_in: float = 1,
        variance_out: float = 1,
        out_act: bool = False,
    ) -> None:
        super().__init__()
        hs = list(hs)
        if len(hs) < 2:
            raise ValueError(f"FullyConnectedNet: hs must list at least an input and an output size, got {hs!r}")
        for h in hs:
            if isinstance(h, bool) or not isinstance(h, int) or h < 1:
                raise ValueError(f"FullyConnectedNet: every size in hs must be a positive int, got {h!r} in {hs!r}")
        for name, v in (("variance_in", variance_in), ("variance_out", variance_out)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"FullyConnectedNet: {name} must be a number > 0, got {v!r}")
        if act is not None and not callable(act):
            raise TypeError(f"FullyConnectedNet: act must be callable or None, got {act!r}")
        self.hs = hs
        nact = None
        if act is not None:
            nact = act if isinstance(act, normalize2mom) else normalize2mom(act)
        var_in = float(variance_in)
        n = len(hs) - 1
        for i, (h1, h2) in enumerate(zip(hs, hs[1:])):
            last = i == n - 1
            var_out = float(variance_out) if last else 1.0
            a = (nact if out_act else None) if last else nact
            self.add_module(f"layer{i}", _Layer(h1, h2, a, var_in, var_out))
            var_in = var_out

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"FullyConnectedNet: input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 1 or x.shape[-1] != self.hs[0]:
            raise ValueError(
                f"FullyConnectedNet: input has shape {tuple(x.shape)} but its last dimension must be "
                f"hs[0] = {self.hs[0]}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``[..., hs[0]] -> [..., hs[-1]]``."""
        self._check_input(x)
        return super().forward(x)

    def factored(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hidden, basis)`` with ``hidden @ basis == self(x)``: the last hidden features ``[..., hs[-2]]``
        and the output layer as a matrix ``[hs[-2], hs[-1]]`` (its normalisation included).

        A consumer that is linear in this network's output can then take the factors instead of the output,
        e.g. a tensor product with ``weight_basis`` (the per-edge weights are never materialised). Needs a
        linear output layer (``out_act=False``).
        """
        last = self[-1]
        if last.act is not None:
            raise ValueError("FullyConnectedNet.factored needs a linear output layer (out_act=False)")
        self._check_input(x)
        for layer in list(self)[:-1]:
            x = layer(x)
        return x, last.weight / (last.h_in * last.var_in / last.var_out) ** 0.5

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}{self.hs}"
