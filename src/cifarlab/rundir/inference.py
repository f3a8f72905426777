"""How a run's model predicts: batched inference (large batches, no gradients), the precision of the logits, and
the test-time augmentations that cifarlab.choices.TTA names. Run.logits, evaluate, analyze, serve, export and
the final test of `train` all come through batched_logits."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .._threads import adapt as adapt_threads
from ..choices import TTA
from ..config import TrainConfig
from ..data.types import CIFAR10_MEAN, CIFAR10_STD
from ..models._modes import eval_mode, hooked_input
from .device import autocast, resolve_precision

# Measured on the 2-core CPU (baseline, bf16): batch 256 runs at 2x the images/s of batch 1000, whose
# activations no longer fit in the caches. Declared once, as TrainConfig's default.
EVAL_BATCH_SIZE = TrainConfig.eval_batch_size


def preprocessing(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std the model's weights expect (from its default_cfg), in [0, 1] units."""
    cfg = getattr(model, "default_cfg", {}) or {}
    return tuple(cfg.get("mean", CIFAR10_MEAN)), tuple(cfg.get("std", CIFAR10_STD))


TTA_MODES = TTA  # its names: "none", "flip", "flip-translate", "flip-translate-unsure"


def resolve_eval_precision(name: str, device: torch.device) -> str:
    """The precision of `evaluate` and `analyze`: their numbers get cited, so `auto` is fp32 there (the only
    choice whose logits equal the fp32 model's; BENCHMARKS.md). bf16/fp16 when asked for: the
    body in low precision, the head and the logits still in fp32 (see fp32_logits)."""
    return "fp32" if name == "auto" else resolve_precision(name, device)


def fp32_logits(model: nn.Module, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """The model's float32 logits for a normalized batch. Under bf16/fp16 only the body (forward_features)
    runs in low precision: the head runs in fp32 on the features cast to fp32. Logits computed under
    autocast keep bf16's 8 significant bits, which tied the top-1 logits of 71 of the 10,000 CIFAR-10
    test images (the tie always going to the lower class index) and moved ECE by up to 0.0014.
    A model without the features/head contract runs wholly in fp32."""
    if precision == "fp32" or not hasattr(model, "forward_features"):
        return model(x).float()
    with autocast(x.device, precision):
        features = model.forward_features(hooked_input(model, x))
    with torch.autocast(x.device.type, enabled=False):
        return model.forward_head(features.float()).float()


def tta_logits(model: nn.Module, x: torch.Tensor, tta: str = "none", precision: str = "fp32") -> torch.Tensor:
    """The model's logits for a normalized batch, averaged over the test-time views of `tta` (a name in
    cifarlab.choices.TTA). Each view is one forward pass of the whole batch (fp32_logits at `precision`)."""
    return TTA.get(tta)(lambda v: fp32_logits(model, v, precision), x)


# The test-time augmentations (cifarlab.choices.TTA), as airbench does them: views(logits, x) -> logits.
def tta_none(logits: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return logits(x)


def tta_flip(logits: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
             plain: torch.Tensor | None = None) -> torch.Tensor:
    """The image and its mirror, averaged. `plain`: the image's own logits when already computed."""
    return 0.5 * (logits(x) if plain is None else plain) + 0.5 * logits(x.flip(-1))


def tta_flip_translate(logits: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                       plain: torch.Tensor | None = None) -> torch.Tensor:
    """tta_flip with half the weight; the other half: the mirrored pairs of the image shifted by one pixel
    up-left and down-right (reflect padding). Six forward passes of the batch."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[..., :h, :w], padded[..., 2:, 2:]]
    translated = sum(tta_flip(logits, _like(v, x)) for v in shifted) / len(shifted)
    return 0.5 * tta_flip(logits, x, plain) + 0.5 * translated


UNSURE_SHARE = 0.2  # the share of each batch that gets flip-translate under "flip-translate-unsure"


def tta_flip_translate_unsure(logits: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """flip-translate for the fifth of the batch whose plain view is least sure (the lowest top softmax
    probability), the plain view for the rest: 2 forward passes of the batch instead of 6. The views go where
    a prediction can still change; a confident one rarely does. After the 2025 CIFAR-10 speedrun record
    (Hiverge, github.com/hiverge/cifar10-speedrun), which spends its test-time views this way. The logits mix
    averaged and single views: compare a run's accuracy with flip-translate's, not its loss or calibration."""
    plain = logits(x)
    k = math.ceil(UNSURE_SHARE * len(x))
    if k == 0:
        return plain
    unsure = plain.softmax(1).amax(1).topk(k, largest=False).indices
    out = plain.clone()
    out[unsure] = tta_flip_translate(logits, _like(x[unsure], x), plain[unsure])
    return out


def _like(view: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`view` in x's memory format (slicing and indexing lose channels_last)."""
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    return view.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@torch.no_grad()
def batched_logits(model: nn.Module, pixels: torch.Tensor, *, device: torch.device, tta: str = "none",
                   precision: str = "fp32", batch_size: int = EVAL_BATCH_SIZE, channels_last: bool = True
                   ) -> torch.Tensor:
    """Logits (N, C) as float32 on the CPU for pixels (N, 3, H, W): uint8, or float in 0..255. The one loop
    every prediction runs (evaluate, predict, serve, analyze, the final test of train): batch by batch on
    `device`, normalized by the model's mean/std with the training loader's arithmetic, then tta_logits
    (`tta` a name in cifarlab.choices.TTA; bf16/fp16: the body in low precision, the head in fp32)."""
    TTA.entry(tta)  # an unknown name fails before any work
    mean, std = preprocessing(model)
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    outputs = []
    with eval_mode(model):
        for i in range(0, len(pixels), batch_size):
            x = (pixels[i:i + batch_size].to(device).float() - mean_t) / std_t  # as DeviceLoader.normalize
            outputs.append(tta_logits(model, x.contiguous(memory_format=memory_format), tta, precision).cpu())
            adapt_threads()  # --threads auto: use the cores other processes leave free
    return torch.cat(outputs) if outputs else torch.zeros(0)


def predict_logits(model: nn.Module, images: np.ndarray, *, device: torch.device, precision: str = "fp32",
                   batch_size: int = EVAL_BATCH_SIZE, channels_last: bool = True, tta: str = "none") -> torch.Tensor:
    """Logits (N, C) as float32 on the CPU for (N, H, W, 3) uint8 images: batched_logits on their pixels."""
    pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # NCHW view, channels_last
    return batched_logits(model, pixels, device=device, tta=tta, precision=precision, batch_size=batch_size,
                          channels_last=channels_last)


def classification_metrics(logits: torch.Tensor, labels: np.ndarray | torch.Tensor) -> dict[str, float]:
    labels = torch.as_tensor(labels, dtype=torch.long)
    k = min(3, logits.shape[1])
    topk = logits.topk(k, dim=1).indices
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        "accuracy": (topk[:, 0] == labels).float().mean().item(),
        f"top{k}_accuracy": (topk == labels[:, None]).any(dim=1).float().mean().item(),
    }
