"""Optimizers and learning-rate schedules. The schedule is a plain function of training progress
(0 → 1), like nanoGPT's get_lr(it): progress is the fraction of steps done, or of the wall-clock budget
spent when one is set, so a time-budgeted run still anneals to the end."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn

from ..choices import OPTIMIZERS, SCHEDULES
from ..config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer cfg.optimizer names (cifarlab.choices.OPTIMIZERS) over the model's trainable parameters."""
    return OPTIMIZERS.create(cfg.optimizer, model, cfg)


def _param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    # No weight decay on biases and norm scales: decaying them only hurts (Goyal et al. 2017).
    if cfg.freeze != "none" or cfg.backbone_lr_scale != 1:  # transfer: head and backbone groups, all parameters
        from ..pretrained.freeze import transfer_param_groups

        return transfer_param_groups(model, cfg.lr, cfg.weight_decay, cfg.backbone_lr_scale)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": cfg.weight_decay, "base_lr": cfg.lr},
            {"params": no_decay, "weight_decay": 0.0, "base_lr": cfg.lr}]


def _fused(model: nn.Module, cfg: TrainConfig) -> dict:
    # The fused kernels update every parameter in one call (CPU and CUDA); a few % of a small model's step.
    # They want every parameter of a group to have its momentum buffer once one has: not so when a frozen
    # stage is unfrozen mid-run.
    return {"fused": True} if cfg.freeze == "none" and _fused_supported(model) else {}


def build_sgd(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(_param_groups(model, cfg), lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0, **_fused(model, cfg))


def build_adam(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(_param_groups(model, cfg), lr=cfg.lr, **_fused(model, cfg))


def build_adamw(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(_param_groups(model, cfg), lr=cfg.lr, **_fused(model, cfg))


def build_muon(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Muon on the conv filters, Nesterov SGD on the rest (training/muon.py). A model may define its
    own groups (`param_groups(lr, batch_size, weight_decay, momentum, epochs)`, as airbench does)."""
    from .muon import MuonSGD

    if hasattr(model, "param_groups"):
        groups = model.param_groups(lr=cfg.lr, batch_size=cfg.batch_size, weight_decay=cfg.weight_decay,
                                    momentum=cfg.momentum, epochs=cfg.epochs)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.ndim == 4], "muon": True, "weight_decay": 0.0},
                  {"params": [p for p in params if p.ndim == 2], "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if p.ndim not in (2, 4)], "weight_decay": 0.0}]
        groups = [{**g, "base_lr": cfg.lr} for g in groups if g["params"]]
    return MuonSGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def _fused_supported(model: nn.Module) -> bool:
    devices = {p.device.type for p in model.parameters()}
    dtypes = {p.dtype for p in model.parameters()}
    return devices <= {"cpu", "cuda"} and len(devices) == 1 and dtypes <= {torch.float32, torch.float16, torch.bfloat16}


# The schedules (cifarlab.choices.SCHEDULES): the factor of the base learning rate at progress p in [0, 1].
def constant_schedule(p: float) -> float:
    return 1.0


def cosine_schedule(p: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * p))


def step_schedule(p: float) -> float:
    return 0.1 ** ((p >= 0.5) + (p >= 0.75))


def linear_schedule(p: float) -> float:
    return 1.0 - p


def onecycle_schedule(p: float) -> float:
    return max(p / 0.25, 1e-3) if p < 0.25 else max(0.0, (1 - p) / 0.75)


def lr_factor(progress: float, schedule: str | Callable[[float], float], warmup: float = 0.0) -> float:
    """The multiplier of the base learning rate at `progress` in [0, 1]; `warmup` is a fraction too.
    `schedule`: a name in SCHEDULES, or the schedule function itself."""
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 1e-3)
    factor = SCHEDULES.get(schedule) if isinstance(schedule, str) else schedule
    return factor(min(1.0, (progress - warmup) / max(1e-9, 1 - warmup)))


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def schedule_lr(optimizer: torch.optim.Optimizer, progress: float, schedule: str, warmup: float = 0.0) -> None:
    """set_lr at `progress`; a group with `lr_horizon` h < 1 runs the whole schedule over the first h of
    training and then stays at 0 (airbench's whitening bias learns for 3 of 8 epochs)."""
    factor = SCHEDULES.get(schedule)
    for group in optimizer.param_groups:
        horizon = group.get("lr_horizon", 1.0)
        group["lr"] = group["base_lr"] * (lr_factor(min(1.0, progress / horizon), factor, warmup)
                                          if progress < horizon else 0.0)


def stop_gradients_past_horizon(optimizer: torch.optim.Optimizer, progress: float) -> None:
    """The parameters of a group whose `lr_horizon` has passed (lr 0 for the rest of the run) stop needing
    gradients, so that backward skips the work that only fed them. airbench detaches its whitening bias
    after 3 epochs this way: on a CPU it saves the first block's input gradient, 2-5% of a step
    (BENCHMARKS.md). The weights are the same: the updates skipped were lr 0 times a gradient.
    Not under DDP, which expects a gradient for every parameter that had one when it wrapped the model."""
    for group in optimizer.param_groups:
        if progress >= group.get("lr_horizon", 1.0):
            for p in group["params"]:
                p.requires_grad_(False)


def restore_gradients(optimizer: torch.optim.Optimizer) -> None:
    """Undo stop_gradients_past_horizon after training: the model leaves train() as it came in."""
    for group in optimizer.param_groups:
        if group.get("lr_horizon", 1.0) < 1.0:
            for p in group["params"]:
                p.requires_grad_(True)
