"""Copy weights from e3nn modules into ours (e3nn is never imported here: modules are duck-typed)."""

from __future__ import annotations

from typing import Any

import torch

from ..o3.irreps import Irreps

__all__ = ["load_e3nn_weights"]


def _irreps_str(x: Any) -> Irreps:
    return Irreps(str(x))


def _check_same(ours: Any, theirs: Any, what: str) -> None:
    a, b = _irreps_str(ours), _irreps_str(theirs)
    if a != b:
        raise ValueError(f"{what} differ: ours {a!r}, e3nn's {b!r}")


@torch.no_grad()
def load_e3nn_weights(module: torch.nn.Module, e3nn_module: Any) -> torch.nn.Module:
    """Copy the weights (and biases) of an e3nn ``TensorProduct`` (or subclass) or ``o3.Linear`` into ``module``.

    ``module`` is one of our :class:`~euclidnet.tp.TensorProduct` (any subclass) or
    :class:`~euclidnet.o3.linear.Linear`. The irreps and the instructions (indices, modes, has_weight and
    path shapes) must match; the flat weight layouts are then identical, so the vectors are copied as is.
    Modules with external weights have nothing to copy (the check still runs). Returns ``module``.

    Raises:
        ValueError: irreps, instructions or weight sizes differ (naming the first difference).
        TypeError: ``module`` is not one of ours, or ``e3nn_module`` looks like neither kind.
    """
    from ..o3.linear import Linear
    from .tensor_product import TensorProduct

    if isinstance(module, TensorProduct):
        for attr in ("irreps_in1", "irreps_in2", "irreps_out", "instructions", "weight"):
            if not hasattr(e3nn_module, attr):
                raise TypeError(f"e3nn_module has no attribute {attr!r}: expected an e3nn.o3.TensorProduct")
        _check_same(module.irreps_in1, e3nn_module.irreps_in1, "irreps_in1")
        _check_same(module.irreps_in2, e3nn_module.irreps_in2, "irreps_in2")
        _check_same(module.irreps_out, e3nn_module.irreps_out, "irreps_out")
        ours = [
            (p.i_in1, p.i_in2, p.i_out, p.mode, p.has_weight, tuple(p.weight_shape)) for p in module.descriptor.paths
        ]
        theirs = [
            (i.i_in1, i.i_in2, i.i_out, i.connection_mode, bool(i.has_weight), tuple(i.path_shape))
            for i in e3nn_module.instructions
        ]
        if ours != theirs:
            for n, (a, b) in enumerate(zip(ours, theirs)):
                if a != b:
                    raise ValueError(f"instruction {n} differs: ours {a}, e3nn's {b}")
            raise ValueError(f"number of instructions differs: ours {len(ours)}, e3nn's {len(theirs)}")
        if module.internal_weights and module.weight_numel > 0:
            w = e3nn_module.weight
            if w.shape != module.weight.shape:
                raise ValueError(f"e3nn weight has shape {tuple(w.shape)}, expected {tuple(module.weight.shape)}")
            module.weight.copy_(w)
        return module
    if isinstance(module, Linear):
        for attr in ("irreps_in", "irreps_out", "instructions", "weight", "bias"):
            if not hasattr(e3nn_module, attr):
                raise TypeError(f"e3nn_module has no attribute {attr!r}: expected an e3nn.o3.Linear")
        _check_same(module.irreps_in, e3nn_module.irreps_in, "irreps_in")
        _check_same(module.irreps_out, e3nn_module.irreps_out, "irreps_out")
        ours = [(i, o) for i, o in module.instructions]
        theirs = [(i.i_in, i.i_out) for i in e3nn_module.instructions if i.i_in != -1]
        if ours != theirs:
            raise ValueError(f"Linear instructions differ: ours {ours}, e3nn's {theirs}")
        ours_b = [io for io, b in enumerate(module.biases) if b]
        theirs_b = [i.i_out for i in e3nn_module.instructions if i.i_in == -1]
        if ours_b != theirs_b:
            raise ValueError(f"Linear biases differ: ours on output blocks {ours_b}, e3nn's on {theirs_b}")
        if module.internal_weights:
            if module.weight_numel > 0:
                w = e3nn_module.weight
                if w.shape != module.weight.shape:
                    raise ValueError(f"e3nn weight has shape {tuple(w.shape)}, expected {tuple(module.weight.shape)}")
                module.weight.copy_(w)
            if module.bias_numel > 0:
                b = e3nn_module.bias
                if b.shape != module.bias.shape:
                    raise ValueError(f"e3nn bias has shape {tuple(b.shape)}, expected {tuple(module.bias.shape)}")
                module.bias.copy_(b)
        return module
    raise TypeError(
        f"load_e3nn_weights: module must be a euclidnet TensorProduct or Linear, got {type(module).__name__}"
    )
