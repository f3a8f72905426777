"""Robustness: accuracy under common corruptions at five severities, after CIFAR-10-C (Hendrycks and
Dietterich 2019, whose CIFAR severity parameters are used). Each corruption works on a whole batch at once:
a float tensor (N, 3, H, W) in [0, 1] in, the same out; only JPEG goes through Pillow image by image."""
from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..training.inference import EVAL_BATCH_SIZE, predict_logits
from ._plots import new_figure, save_figure

SEVERITIES = (1, 2, 3, 4, 5)
Corruption = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]
CORRUPTIONS: dict[str, Corruption] = {}


def register_corruption(name: str) -> Callable[[Corruption], Corruption]:
    """Add `fn(images, severity, generator)` to CORRUPTIONS under `name`."""
    def wrap(fn: Corruption) -> Corruption:
        CORRUPTIONS[name] = fn
        return fn
    return wrap


@register_corruption("gaussian_noise")
def gaussian_noise(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    sigma = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    return x + sigma * torch.randn(x.shape, generator=gen)


@register_corruption("gaussian_blur")
def gaussian_blur(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    from torchvision.transforms.functional import gaussian_blur as blur

    sigma = (0.4, 0.6, 0.7, 0.8, 1.0)[severity - 1]
    size = 2 * math.ceil(3 * sigma) + 1
    return blur(x, [size, size], [sigma, sigma])


@register_corruption("contrast")
def contrast(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * c + mean


@register_corruption("brightness")
def brightness(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    # CIFAR-10-C adds c to the HSV value. With hue and saturation fixed, RGB is proportional to the value
    # V = max(R, G, B), so scaling RGB by (V + c) / V is the same thing, without a colour-space round trip.
    c = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    v = x.amax(dim=1, keepdim=True)
    new_v = (v + c).clamp(max=1.0)
    return torch.where(v > 0, x * new_v / v.clamp(min=1e-8), new_v)  # black has no hue: it turns grey


@register_corruption("jpeg")
def jpeg(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    quality = (80, 65, 58, 50, 40)[severity - 1]
    images = to_uint8(x)
    out = np.stack([_jpeg_round_trip(img, quality) for img in images])
    return to_float(out)


@register_corruption("pixelate")
def pixelate(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    c = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(int(h * c), int(w * c)), mode="area")  # a box filter, like PIL's BOX
    return F.interpolate(small, size=(h, w), mode="nearest")


def _jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def to_float(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] -> (N, H, W, 3) uint8, clipped and rounded."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """A corrupted copy of (N, H, W, 3) uint8 images; random corruptions are reproducible from `seed`."""
    gen = torch.Generator().manual_seed(seed * 1000 + severity)
    return to_uint8(CORRUPTIONS[name](to_float(images), severity, gen))


def robustness_table(model: nn.Module, images: np.ndarray, labels: np.ndarray, clean_accuracy: float, *,
                     device: torch.device, precision: str = "fp32", batch_size: int = EVAL_BATCH_SIZE,
                     seed: int = 0, progress: bool = False) -> dict:
    """Accuracy for every corruption and severity, their means, and the clean accuracy of the same images.
    `progress`: a tqdm bar over the corruption x severity passes (off outside a terminal)."""
    from tqdm.auto import tqdm

    table, corruption_seconds = {}, 0.0
    bar = tqdm(total=len(CORRUPTIONS) * len(SEVERITIES), desc="  robustness", unit="pass", leave=False,
               disable=None if progress else True)  # None: tqdm turns itself off when stderr is no terminal
    for name in CORRUPTIONS:
        row = []
        bar.set_postfix_str(name)
        for severity in SEVERITIES:
            start = time.perf_counter()
            corrupted = corrupt(images, name, severity, seed)
            corruption_seconds += time.perf_counter() - start
            logits = predict_logits(model, corrupted, device=device, precision=precision, batch_size=batch_size)
            row.append(float((logits.argmax(1).numpy() == labels).mean()))
            bar.update()
        table[name] = row
    bar.close()
    means = {name: float(np.mean(row)) for name, row in table.items()}
    mean_corrupted = float(np.mean(list(means.values())))
    return {"images": len(labels), "severities": list(SEVERITIES), "clean_accuracy": clean_accuracy,
            "accuracy": table, "mean_accuracy": means, "mean_corrupted_accuracy": mean_corrupted,
            "relative_accuracy": mean_corrupted / clean_accuracy if clean_accuracy else None,
            "corruption_seconds": corruption_seconds}


def plot_robustness(report: dict, path: Path, title: str = "") -> Path:
    """Accuracy against severity, one line per corruption, with the clean accuracy as a dashed line."""
    fig = new_figure(7, 4.6)
    ax = fig.subplots()
    for name, row in report["accuracy"].items():
        ax.plot(report["severities"], row, marker="o", label=f"{name} (mean {report['mean_accuracy'][name]:.3f})")
    ax.axhline(report["clean_accuracy"], color="black", linestyle="--",
               label=f"clean ({report['clean_accuracy']:.3f})")
    ax.set_xticks(report["severities"])
    ax.set_xlabel("severity")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.suptitle(title or f"accuracy under corruptions ({report['images']:,} images)", fontsize=12)
    return save_figure(fig, path)
