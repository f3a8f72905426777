"""What a training run is built from, given its resolved config. train() and lr-find build with the same
functions, so the range test sweeps the very model, data, loader and step a run would train:

    training_split(data, cfg)                 (fit set, validation set or None)
    build_training_model(cfg, classes, ...)   the model with its transfer set-up, on the device
    training_loader(cfg, fit_set, model, ...) the shuffled, augmented device loader
    initialize_from_data(model, loader, ...)  the data-dependent init (airbench's whitening)
    make_stepper(cfg, net, model, ...)        what a step needs: optimizer, loss scaler, EMA, their settings
    set_up(cfg, ranks, device, ...)           all of the above for train(), with DDP, torch.compile,
                                              --prune-easy, --progressive-resize and early stopping: a Setup

The parts themselves live where they are defined: the optimizers, their parameter groups and the lr
schedules in optim.py, the model's dropout rates, the penalties and the EMA in regularize.py, the loss
(mixup/cutmix-aware cross-entropy) in augment/mix.py, the one training step in loop.py.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..augment import create_augment
from ..config import TrainConfig, parse_progressive_resize
from ..data import CifarData, load_data, make_splits
from ..data.loader import DeviceLoader
from ..data.subsets import select_classes
from ..errors import CifarlabError
from ..pretrained.setup import prepare_model
from ..rundir.device import resolve_compile, resolve_precision, synchronize, use_fastest_kernels
from ..rundir.inference import preprocessing
from . import distributed
from .loop import Progress, Stepper, loss_every
from .optim import build_optimizer
from .progressive import check_model_accepts
from .regularize import EarlyStopping, build_model, make_ema
from .selection import EasyPruning
from .tensorboard import require_tensorboard


def training_split(data: CifarData, cfg: TrainConfig) -> tuple[Any, Any]:
    """(fit set, validation set or None): the validation split carved off, then --train-size and
    --label-fraction applied to what is left (train and lr-find both use this)."""
    splits = make_splits(cfg, data)  # as Run.splits() rebuilds them
    return splits.train, splits.val


def build_training_model(cfg: TrainConfig, classes: list[str], device: torch.device, log: Callable[..., None],
                         load_weights: bool = True) -> tuple[nn.Module, Any, dict[str, Any] | None]:
    """(model on the device, its freezer, the transfer info): create_model with the config's model_kwargs,
    then the transfer set-up: --pretrained / --init-from weights, their preprocessing (--input-size),
    --freeze and its schedule. On --resume (load_weights False) the weights come from the checkpoint."""
    model = build_model(cfg, len(classes))  # dropout and drop path included
    freezer, transfer_info = prepare_model(model, cfg, classes, log, load_weights=load_weights)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    return model.to(device=device, memory_format=memory_format), freezer, transfer_info


def training_loader(cfg: TrainConfig, fit_set, model: nn.Module, device: torch.device,
                    ranks: distributed.Ranks | None = None) -> tuple[DeviceLoader, Any]:
    """The shuffled, augmented loader of the training images (normalized as the model expects) and the
    augmentation: image policies run in the loader on each uint8 batch; mixup/cutmix in the step."""
    ranks = ranks or distributed.Ranks()
    mean, std = preprocessing(model)
    augment = create_augment(cfg.augment)
    loader = DeviceLoader(fit_set.images, fit_set.labels, batch_size=cfg.batch_size, device=device, mean=mean,
                          std=std, shuffle=True, drop_last=len(fit_set) > cfg.batch_size,  # a tiny last batch
                          seed=cfg.seed, channels_last=cfg.channels_last,  # makes batch norm noisy
                          augment=augment if augment.transforms else None, rank=ranks.rank, world_size=ranks.world_size)
    return loader, augment


def initialize_from_data(model: nn.Module, loader: DeviceLoader, seed: int, n: int = 5000) -> float:
    """Models that set weights from the training images (airbench's patch whitening) get a seeded
    sample of up to n of them, normalized; returns the seconds it took."""
    if not hasattr(model, "initialize_from_data"):
        return 0.0
    start = time.perf_counter()
    pick = torch.randperm(len(loader.labels), generator=torch.Generator().manual_seed(seed))[:n].to(loader.device)
    model.initialize_from_data(loader.normalize(loader.images[pick]))
    synchronize(loader.device)
    return time.perf_counter() - start


def make_stepper(cfg: TrainConfig, net: nn.Module, model: nn.Module, augment, device: torch.device, precision: str,
                 ranks: distributed.Ranks | None = None, selection: EasyPruning | None = None) -> Stepper:
    """The optimizer, the loss scaler (fp16 only) and the EMA (None unless --ema), with the step's settings."""
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    return Stepper(net, model, build_optimizer(model, cfg), scaler, augment, device, precision, cfg.batch_size,
                   cfg.grad_accum, cfg.label_smoothing, cfg.l1, cfg.l2,
                   make_ema(model, cfg.ema), selection, ranks or distributed.Ranks())


@dataclass
class Setup:
    """Everything train()'s epochs use, built by set_up."""

    cfg: TrainConfig
    ranks: distributed.Ranks
    device: torch.device
    precision: str
    compiled: bool
    data: CifarData
    classes: list[str]
    fit_set: Any
    val_set: Any
    model: nn.Module
    net: nn.Module
    freezer: Any
    transfer_info: dict[str, Any] | None
    mean: Any
    std: Any
    loader: DeviceLoader
    stepper: Stepper
    stopper: EarlyStopping
    selection: EasyPruning | None
    progress: Progress
    record_every: int
    resize_stages: list[tuple[int, int]]
    full_size: int
    params: int
    init_seconds: float
    label_issues: dict[str, Any] | None = None  # what --drop-label-issues did (data/cleaning.py)


def set_up(cfg: TrainConfig, ranks: distributed.Ranks, device: torch.device, dataset: CifarData | None,
           resuming: bool, verbose: bool, log: Callable[..., None]) -> Setup:
    """Precision, data, model (transfer set-up included), loader, optimizer, EMA and early stopping."""
    precision = resolve_precision(cfg.precision, device)
    compiled = resolve_compile(cfg.compile, device)
    use_fastest_kernels(device)
    if cfg.tensorboard:
        require_tensorboard()
    _seed_everything(cfg.seed)
    # Data: decoded once and cached; the test split is only touched at the very end.
    # --classes: those only, relabelled; `dataset` (the label check's folds) is used as given
    data = select_classes(load_data(cfg.data, progress=verbose), cfg.classes) if dataset is None else dataset
    splits = make_splits(cfg, data)  # as Run.splits() rebuilds them; --drop-label-issues applied to train
    fit_set, val_set = splits.train, splits.val
    if splits.label_issues:
        log(_label_issues_line(splits.label_issues))
    distributed.check_batch(ranks, cfg.batch_size, cfg.grad_accum, len(fit_set))  # the batch is global
    model, freezer, transfer_info = build_training_model(cfg, data.classes, device, log, load_weights=not resuming)
    if ranks.world_size > 1 and freezer.active:
        if cfg.unfreeze_schedule:  # DDP fixes the set of trained parameters when it wraps the model
            raise CifarlabError("--unfreeze-schedule does not work under torchrun yet: DDP cannot add parameters "
                                "to training later; use --freeze backbone or --freeze none")
        freezer.start_epoch(0)  # so that DDP registers only the parameters that train
    model, net = distributed.data_parallel(model, ranks, device, cfg.sync_bn)  # net trains: DDP(model) or model
    if compiled:  # --compile: the training forward only; evaluation and the saved weights use the plain model
        net = torch.compile(net)
    full_size = fit_set.images.shape[1]  # (N, H, W, C)
    resize_stages = parse_progressive_resize(cfg.progressive_resize) if cfg.progressive_resize else []
    if resize_stages:  # --progressive-resize: fail now, not in epoch 1, if the model cannot take the sizes
        check_model_accepts(model, resize_stages, full_size, device, cfg.model)
    loader, augment = training_loader(cfg, fit_set, model, device, ranks)
    init_seconds = 0.0 if resuming else initialize_from_data(model, loader, cfg.seed)
    selection = (EasyPruning(len(fit_set), cfg.prune_easy, cfg.epochs, cfg.prune_until, cfg.seed, device)
                 if cfg.prune_easy else None)  # --prune-easy
    stepper = make_stepper(cfg, net, model, augment, device, precision, ranks, selection)
    total_steps = cfg.epochs * len(loader)  # at most: --prune-easy shortens epochs
    mean, std = preprocessing(model)
    return Setup(cfg, ranks, device, precision, compiled, data, data.classes, fit_set, val_set, model, net, freezer,
                 transfer_info, mean, std, loader, stepper, EarlyStopping(cfg.early_stopping),  # off unless set
                 selection, Progress(cfg.epochs, cfg.budget_minutes * 60 if cfg.budget_minutes else None, ranks),
                 loss_every(total_steps), resize_stages, full_size, sum(p.numel() for p in model.parameters()),
                 init_seconds, splits.label_issues)


def _label_issues_line(applied: dict[str, Any]) -> str:
    done = "dropped" if applied["action"] == "drop" else "relabelled to the suspected class"
    return (f"label issues: {done} {applied['images']:,} of {applied['training_images_before']:,} training images, "
            f"flagged by the label check in {applied['source']}")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
