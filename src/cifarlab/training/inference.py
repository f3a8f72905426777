"""Batched inference over uint8 image arrays: large batches, no gradients, the run's precision."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .._threads import adapt as adapt_threads
from ..data.loader import DeviceLoader
from ..data.types import CIFAR10_MEAN, CIFAR10_STD
from ..errors import CifarlabError
from .device import autocast

# Measured on the 2-core CPU (baseline, bf16): batch 256 runs at 2x the images/s of batch 1000, whose
# activations no longer fit in the caches.
EVAL_BATCH_SIZE = 256


def preprocessing(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std the model's weights expect (from its default_cfg), in [0, 1] units."""
    cfg = getattr(model, "default_cfg", {}) or {}
    return tuple(cfg.get("mean", CIFAR10_MEAN)), tuple(cfg.get("std", CIFAR10_STD))


TTA_MODES = ("none", "flip", "flip-translate")


def tta_logits(model: nn.Module, x: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """The model's logits for a normalized batch, averaged over test-time views, as airbench does:
    "flip" averages the image and its mirror; "flip-translate" gives those two half the weight and
    the mirrored pairs of the image shifted by one pixel up-left and down-right (reflect padding)
    the other half. Each view is one forward pass of the whole batch."""
    def mirrored(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * model(v).float() + 0.5 * model(v.flip(-1)).float()

    if tta == "none":
        return model(x).float()
    if tta == "flip":
        return mirrored(x)
    if tta == "flip-translate":
        h, w = x.shape[-2:]
        memory_format = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else \
            torch.contiguous_format
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = [padded[..., :h, :w], padded[..., 2:, 2:]]
        translated = sum(mirrored(v.contiguous(memory_format=memory_format)) for v in shifted) / len(shifted)
        return 0.5 * mirrored(x) + 0.5 * translated
    raise CifarlabError(f"unknown --tta {tta!r}; choose one of: {', '.join(TTA_MODES)}")


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, *, device: torch.device, precision: str = "fp32",
                   batch_size: int = EVAL_BATCH_SIZE, channels_last: bool = True, tta: str = "none") -> torch.Tensor:
    """Logits (N, C) as float32 on the CPU for (N, H, W, 3) uint8 images; `tta` as in tta_logits."""
    if tta not in TTA_MODES:
        raise CifarlabError(f"unknown --tta {tta!r}; choose one of: {', '.join(TTA_MODES)}")
    mean, std = preprocessing(model)
    loader = DeviceLoader(images, np.zeros(len(images), np.int64), batch_size=batch_size, device=device,
                          mean=mean, std=std, channels_last=channels_last)
    was_training = model.training
    model.eval()
    outputs = []
    for x, _ in loader:
        with autocast(device, precision):
            outputs.append(tta_logits(model, x, tta).cpu())
        adapt_threads()  # --threads auto: use the cores other processes leave free
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
