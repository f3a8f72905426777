"""Regularization helpers of the training loop, one call each in engine.py and loop.py: the model with its dropout
and stochastic-depth rates, the L1/L2 weight penalties, an EMA of the weights, and early stopping.

Weight decay itself lives in the optimizer (optim.py): decoupled for AdamW, coupled (added to the
gradient, which for SGD equals an L2 penalty of weight_decay/2·sum w²) for SGD and Adam. The penalties
here are the classic loss terms instead, as Keras' kernel_regularizer adds them: lambda·sum|w| and
lambda·sum w², over the weights of convolutions and linear layers (every parameter with more than one
dimension). Biases and normalization scales are left out, as the optimizer leaves them out of decay.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..config import TrainConfig, model_kwarg_name
from ..errors import CifarlabError
from ..models import create_model
from .resolve import resolve


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """create_model with the config's model_kwargs; a model without a dropout or stochastic-depth
    argument fails with the flag's name instead of a TypeError."""
    try:
        return create_model(cfg.model, num_classes=num_classes, **cfg.model_kwargs)
    except (TypeError, ValueError, RuntimeError, CifarlabError) as e:  # bad model_kwargs
        for flag, setting in (("--dropout", "dropout"), ("--drop-path", "drop_path")):
            name = model_kwarg_name(cfg.model, setting)
            if name in cfg.model_kwargs and f"'{name}'" in str(e):
                raise CifarlabError(f"{flag}: model {cfg.model} has no {name} argument to set "
                                    f"({'dropout' if setting == 'dropout' else 'stochastic depth'} "
                                    "is not part of this architecture)") from None
        if cfg.model_kwargs and not isinstance(e, CifarlabError):  # e.g. a value of the wrong type
            raise CifarlabError(f"model_kwargs {cfg.model_kwargs} do not fit model {cfg.model}: "
                                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        raise


def supports(model: str, setting: str) -> bool:
    """Whether `model` takes the argument behind --dropout / --drop-path (builds it once to find out)."""
    cfg = resolve(TrainConfig(model=model, **{setting: 0.0}))
    try:
        build_model(cfg, 10)
    except CifarlabError:
        return False
    return True


def penalized_weights(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad and p.ndim > 1]


def weight_penalty(model: nn.Module, l1: float = 0.0, l2: float = 0.0) -> torch.Tensor | float:
    """l1·sum|w| + l2·sum w² over the conv and linear weights (no biases, no norm scales); 0.0 when off."""
    if not l1 and not l2:
        return 0.0
    weights = penalized_weights(model)
    penalty = 0.0
    if l1:
        penalty = penalty + l1 * sum(w.abs().sum() for w in weights)
    if l2:
        penalty = penalty + l2 * sum(w.square().sum() for w in weights)
    return penalty


def make_ema(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """An exponential moving average of the weights and buffers (batch-norm statistics too), or None.
    The first update copies the weights; each later one moves the average by (1 − decay) towards them."""
    if decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def update_ema(ema: AveragedModel | None, model: nn.Module) -> None:
    if ema is not None:
        ema.update_parameters(model)


def evaluated_model(model: nn.Module, ema: AveragedModel | None) -> nn.Module:
    """The weights that are validated, tested and saved: the EMA's when there is one."""
    return ema.module if ema is not None else model


class EarlyStopping:
    """Stop when the validation accuracy has not improved for `patience` epochs (off when None).
    Its state goes into every checkpoint, so a resumed run counts on where it stopped."""

    def __init__(self, patience: int | None):
        self.patience = patience
        self.best: float | None = None
        self.best_epoch: float | None = None
        self.bad_epochs = 0

    def update(self, record: dict[str, Any]) -> bool:
        """Take one epoch's record; True when training should stop."""
        value = record.get("val_accuracy")
        if self.patience is None or value is None:
            return False
        if self.best is None or value > self.best:
            self.best, self.best_epoch, self.bad_epochs = value, record["epoch"], 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state:
            self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]
