"""Photometric policies on the whole uint8 batch at once, on the training device.

As in geometric.py, every random number comes from the DeviceLoader's CPU generator, so a run is
reproducible on any device and no global RNG is touched.
"""
from __future__ import annotations

import torch

from ..data.types import CIFAR10_MEAN, CIFAR10_STD


class BrightnessContrast:
    """A random brightness shift and contrast scale per image, in the units of the normalized image
    (CIFAR-10 mean and std): x_norm -> (x_norm + b) * s, b uniform in ±brightness, s in 1 ± contrast.
    The contrast scales about the dataset's mean colour, not each image's own. This is the colour
    jitter of the 2025 CIFAR-10 speed record (Hiverge, github.com/hiverge/cifar10-speedrun), which
    tuned brightness 0.14 and contrast 0.13 for airbench's net; the result is rounded back to uint8
    and clipped to [0, 255] (the record works on the unclipped float batch)."""

    def __init__(self, brightness: float = 0.14, contrast: float = 0.13):
        self.brightness, self.contrast = brightness, contrast

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = len(x)
        u = torch.rand(n, 2, generator=generator)
        shift = ((2 * u[:, 0] - 1) * self.brightness).view(n, 1, 1, 1).to(x.device)
        scale = (1 + (2 * u[:, 1] - 1) * self.contrast).view(n, 1, 1, 1).to(x.device)
        mean = 255 * torch.tensor(CIFAR10_MEAN, device=x.device).view(1, 3, 1, 1)  # the data is always RGB
        std = 255 * torch.tensor(CIFAR10_STD, device=x.device).view(1, 3, 1, 1)
        # (x_norm + b) * s back in pixel units: mean + s * (x - mean + b * std).
        out = mean + scale * (x.float() - mean + shift * std)
        return out.round_().clamp_(0, 255).to(torch.uint8)
