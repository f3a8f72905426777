"""Geometric and erasing policies on the whole uint8 batch at once, on the training device.

Every random number comes from the generator the DeviceLoader passes in (a CPU torch.Generator seeded
per (seed, epoch)); parameters are drawn on the CPU and moved to the batch's device, so a run is
reproducible on any device and no global RNG is touched. No per-image Python loop anywhere.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.types import CIFAR10_MEAN


class KerasAffine:
    """The Keras notebook's ImageDataGenerator(rotation_range=20, width_shift_range=0.1,
    height_shift_range=0.1, horizontal_flip=True): a random rotation about the centre, a random shift
    of up to 10 % of the width and height, and a flip with probability 1/2, all in one affine_grid +
    grid_sample call for the batch. Like Keras: bilinear interpolation (its spline order 1) and the
    'nearest' fill mode (points outside the image take the nearest edge pixel: padding_mode="border")."""

    def __init__(self, rotation: float = 20.0, shift: float = 0.1, flip: bool = True):
        self.rotation, self.shift, self.flip = rotation, shift, flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        u = torch.rand(n, 4, generator=generator, dtype=torch.float64)
        angle = (2 * u[:, 0] - 1) * math.radians(self.rotation)
        # Normalized coordinates span 2 units per image side, so a shift of f·width is 2f units.
        tx, ty = (2 * u[:, 1] - 1) * 2 * self.shift, (2 * u[:, 2] - 1) * 2 * self.shift
        sx = torch.where(u[:, 3] < 0.5, -1.0, 1.0) if self.flip else torch.ones(n, dtype=torch.float64)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # As in Keras (shift, then rotate about the centre, then flip): output pixel p samples the input
        # at R·(S·p + t), S the flip, so the content moves by at most the shift along each axis.
        theta = torch.stack([torch.stack([cos * sx, -sin, cos * tx - sin * ty], 1),
                             torch.stack([sin * sx, cos, sin * tx + cos * ty], 1)], 1)
        grid = F.affine_grid(theta.float().to(x.device), list(x.shape), align_corners=False)
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.round_().clamp_(0, 255).to(torch.uint8)


class PadCropFlip:
    """The standard CIFAR augmentation: pad by 4 (reflect, as airbench does; He et al. pad with zeros),
    take a random 32×32 crop, flip horizontally with probability 1/2. The padding is never built: each
    output pixel's source row and column are computed (with the reflection folded in) and the whole
    batch is one gather."""

    def __init__(self, pad: int = 4, flip: bool = True):
        self.pad, self.flip = pad, flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        dy = torch.randint(-self.pad, self.pad + 1, (n, 1), generator=generator)
        dx = torch.randint(-self.pad, self.pad + 1, (n, 1), generator=generator)
        flip = torch.rand(n, 1, generator=generator) < 0.5 if self.flip else torch.zeros(n, 1, dtype=torch.bool)
        rows = _reflect(dy + torch.arange(h), h)
        cols = dx + torch.arange(w)
        cols = _reflect(torch.where(flip, cols.flip(1), cols), w)
        rows, cols = rows.to(x.device), cols.to(x.device)
        batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
        channel = torch.arange(c, device=x.device).view(1, c, 1, 1)
        return x[batch, channel, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


class Translate(PadCropFlip):
    """airbench's translation: pad 2 (reflect) and a random 32×32 crop, so a shift of at most 2 pixels
    each way; no flip (pair it with altflip)."""

    def __init__(self, pad: int = 2):
        super().__init__(pad=pad, flip=False)


class AlternatingFlip:
    """Alternating flip (Jordan 2024, arXiv:2404.00498, section 3.6): in the first epoch each image is
    flipped with probability 1/2; in every later epoch it is flipped exactly when it was not in the
    epoch before. Over any two consecutive epochs each image is seen both ways, with none of the
    repeats that independent random flips give.

    It needs to know which image is which: the DeviceLoader calls `bind(num_images, seed, device)`
    once (the first-epoch coins, drawn from the seed alone, so a resumed run flips the same way) and
    passes each batch's dataset `index` and the `epoch`. Without an index (a preview) it flips at random.
    """

    uses_index = True

    def __init__(self):
        self.first_epoch_flip: torch.Tensor | None = None

    def bind(self, num_images: int, seed: int, device) -> None:
        coins = torch.rand(num_images, generator=torch.Generator().manual_seed(seed * 7919 + 17)) < 0.5
        self.first_epoch_flip = coins.to(device)

    def __call__(self, x: torch.Tensor, generator: torch.Generator, index: torch.Tensor | None = None,
                 epoch: int = 0) -> torch.Tensor:
        if index is None or self.first_epoch_flip is None:
            flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)
        else:
            flip = self.first_epoch_flip[index] ^ bool(epoch % 2)
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Indices outside [0, size) mirrored about the edge pixel (numpy's and torch's 'reflect')."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


class Cutout:
    """Cutout (DeVries and Taylor 2017): a size×size square at a random centre (clipped at the image
    edge) set to the CIFAR-10 mean colour, which is zero after normalization, as in their code that
    masks the normalized image. One boolean mask for the batch."""

    def __init__(self, size: int = 16, fill: tuple[float, ...] = CIFAR10_MEAN):
        self.size = size
        self.fill = torch.tensor([round(255 * v) for v in fill], dtype=torch.uint8)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        cy = torch.randint(0, h, (n, 1), generator=generator)
        cx = torch.randint(0, w, (n, 1), generator=generator)
        half = self.size // 2
        in_rows = ((torch.arange(h) >= cy - half) & (torch.arange(h) < cy - half + self.size)).to(x.device)
        in_cols = ((torch.arange(w) >= cx - half) & (torch.arange(w) < cx - half + self.size)).to(x.device)
        mask = in_rows.view(n, 1, h, 1) & in_cols.view(n, 1, 1, w)
        fill = self.fill if c == len(self.fill) else self.fill.float().mean().round().to(torch.uint8).expand(c)
        return torch.where(mask, fill.to(x.device).view(1, c, 1, 1), x)
