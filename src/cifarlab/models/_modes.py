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
