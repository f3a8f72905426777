"""`eval_mode(model)`: evaluation mode for a block, the model's own mode restored afterwards (even when
the block raises), so a helper that looks at a model never leaves a training one in eval mode."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch.nn as nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`with eval_mode(model): ...` runs the block with dropout off and batch-norm statistics fixed.

    Every submodule's own flag is put back, not just the top one: a partly frozen model (--freeze keeps
    its frozen batch norms in eval mode while the rest trains) comes out exactly as it went in."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def hooked_input(model: nn.Module, x):
    """`x` as `model(x)` would hand it to forward(): after the model's forward pre-hooks (the --input-size
    upsampling is one). Code that calls forward_features directly, to run the head apart, must start here."""
    for hook in model._forward_pre_hooks.values():
        result = hook(model, (x,))
        if result is not None:
            x = result[0] if isinstance(result, tuple) else result
    return x
