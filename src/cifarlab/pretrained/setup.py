"""The transfer steps of a training run, in order: starting weights (--pretrained or --init-from), the
preprocessing the weights expect (mean, std, input size), then freezing. `apply_preprocessing` is also
what a reload of the run does (rundir.load_run_model), so evaluate/predict/analyze see the same inputs."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .freeze import Freezer
from .options import check_weight_files
from .weights import init_from, load_pretrained, pretrained_preprocessing

CIFAR_SIZE = 32


class ResizeInput:
    """A forward pre-hook: bilinear upsampling of each batch to size × size, on the batch's device.

    A plain object (not a closure over the model), so copies of the model (EMA, deepcopy) resize too."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        if isinstance(x, torch.Tensor) and x.ndim == 4 and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (x, *args[1:])


def effective_input_size(cfg) -> int | None:
    """The side the network sees: --input-size, else the pretrained weights' own, else None (32×32)."""
    if cfg.input_size:
        return cfg.input_size
    return pretrained_preprocessing(cfg.model).input_size if cfg.pretrained else None


def apply_preprocessing(model: nn.Module, cfg) -> None:
    """Give `model` the mean/std of its pretrained weights and the input resize of the run (in place)."""
    extra: dict[str, Any] = {}
    if cfg.pretrained:
        prep = pretrained_preprocessing(cfg.model)
        extra.update(mean=prep.mean, std=prep.std, pretrained_weights=prep.weights)
    size = effective_input_size(cfg)
    if size and size != CIFAR_SIZE:
        model.register_forward_pre_hook(ResizeInput(size))
        extra["input_size"] = (3, size, size)
    if extra:
        model.default_cfg = {**(getattr(model, "default_cfg", None) or {}), **extra}


def prepare_model(model: nn.Module, cfg, classes: list[str], log: Callable[[str], None] = print,
                  load_weights: bool = True) -> tuple[Freezer, dict[str, Any]]:
    """Starting weights (unless load_weights=False: a resumed run), preprocessing and the freezer for a
    training run; returns the freezer and what happened (for the run's summary.json under "transfer")."""
    info: dict[str, Any] = {}
    if load_weights:
        check_weight_files(cfg)
    if cfg.pretrained and load_weights:
        report = load_pretrained(model, cfg)
        prep = pretrained_preprocessing(cfg.model)
        info["pretrained"] = {"weights": prep.weights, **report.as_dict()}
        log(f"pretrained {prep.weights}: {report.line()}")
    if cfg.init_from and load_weights:
        report = init_from(model, cfg.init_from, classes, label=cfg.model)
        info["init_from"] = report.as_dict()
        log(f"init from {cfg.init_from}: {report.line()}")
    apply_preprocessing(model, cfg)
    size = effective_input_size(cfg)
    if size and size != CIFAR_SIZE:
        log(f"input: 32x32 images upsampled to {size}x{size} on the device")
    freezer = Freezer(model, cfg.freeze, cfg.unfreeze_schedule, cfg.freeze_bn)
    if freezer.active:
        log(f"freezing: {freezer.describe()}")
    info.update(freeze=cfg.freeze, unfreeze_schedule=cfg.unfreeze_schedule, backbone_lr_scale=cfg.backbone_lr_scale,
                freeze_bn=cfg.freeze_bn, input_size=size or CIFAR_SIZE, classes=classes)
    return freezer, info
