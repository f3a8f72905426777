"""Batched inference over uint8 image arrays: large batches, no gradients, the run's precision."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.loader import DeviceLoader
from ..data.types import CIFAR10_MEAN, CIFAR10_STD
from .device import autocast

# Measured on the 2-core CPU (baseline, bf16): batch 256 runs at 2x the images/s of batch 1000, whose
# activations no longer fit in the caches.
EVAL_BATCH_SIZE = 256


def preprocessing(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std the model's weights expect (from its default_cfg), in [0, 1] units."""
    cfg = getattr(model, "default_cfg", {}) or {}
    return tuple(cfg.get("mean", CIFAR10_MEAN)), tuple(cfg.get("std", CIFAR10_STD))


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, *, device: torch.device, precision: str = "fp32",
                   batch_size: int = EVAL_BATCH_SIZE, channels_last: bool = True) -> torch.Tensor:
    """Logits (N, C) as float32 on the CPU for (N, H, W, 3) uint8 images."""
    mean, std = preprocessing(model)
    loader = DeviceLoader(images, np.zeros(len(images), np.int64), batch_size=batch_size, device=device,
                          mean=mean, std=std, channels_last=channels_last)
    was_training = model.training
    model.eval()
    outputs = []
    for x, _ in loader:
        with autocast(device, precision):
            outputs.append(model(x).float().cpu())
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.zeros(0)


def classification_metrics(logits: torch.Tensor, labels: np.ndarray | torch.Tensor) -> dict[str, float]:
    labels = torch.as_tensor(labels, dtype=torch.long)
    k = min(3, logits.shape[1])
    topk = logits.topk(k, dim=1).indices
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        "accuracy": (topk[:, 0] == labels).float().mean().item(),
        f"top{k}_accuracy": (topk == labels[:, None]).any(dim=1).float().mean().item(),
    }
