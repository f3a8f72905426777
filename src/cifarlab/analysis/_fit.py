"""Train a fresh model on an in-memory ImageSet with a run's recipe, writing nothing to disk: the
engine's inner loop (same model factory, optimizer, schedule, loss and loader) without run-directory
bookkeeping, validation, checkpoints or a time budget. Used by the label check's cross-validation."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import TrainConfig
from ..data.loader import DeviceLoader
from ..data.types import ImageSet
from ..errors import CifarlabError
from ..models import create_model
from ..training.device import autocast
from ..training.inference import preprocessing
from ..training.optim import build_optimizer, lr_factor, set_lr


def fit_model(cfg: TrainConfig, train_set: ImageSet, *, device: torch.device, precision: str = "fp32",
              seed: int = 0) -> nn.Module:
    """A model trained for cfg.epochs on `train_set` (cfg must be resolved), returned in eval mode."""
    torch.manual_seed(seed)
    model = create_model(cfg.model, num_classes=train_set.num_classes, **cfg.model_kwargs)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    mean, std = preprocessing(model)
    loader = DeviceLoader(train_set.images, train_set.labels, batch_size=cfg.batch_size, device=device, mean=mean,
                          std=std, shuffle=True, drop_last=len(train_set) > cfg.batch_size, seed=seed,
                          channels_last=cfg.channels_last)
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    total_steps, step = cfg.epochs * len(loader), 0
    model.train()
    for epoch in range(cfg.epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            set_lr(optimizer, lr_factor(step / total_steps, cfg.schedule, cfg.warmup_epochs / cfg.epochs))
            with autocast(device, precision):
                loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
        if not math.isfinite(loss.item()):
            raise CifarlabError(f"label-check training diverged at epoch {epoch + 1} (loss {loss.item()})")
    return model.eval()
