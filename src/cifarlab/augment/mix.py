"""Mixup and CutMix: batch-level policies that mix pairs of images and so their labels.

A mixer returns (x, y_a, y_b, lam); the loss is lam·CE(logits, y_a) + (1 − lam)·CE(logits, y_b), which
equals the cross-entropy against the soft target lam·onehot(y_a) + (1 − lam)·onehot(y_b). Label
smoothing is linear in the target, so smoothing each term smooths the mixed target exactly. One lam per
batch (as in the mixup paper's code), partners by a random permutation of the batch. They run on the
normalized float batch (mixing after an affine normalization is the same as mixing before it).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _beta(alpha: float, generator: torch.Generator) -> float:
    if alpha == 1.0:  # Beta(1, 1) is uniform: no detour through numpy
        return float(torch.rand((), generator=generator, dtype=torch.float64))
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


class Mixup:
    """Zhang et al. (2018), "mixup: Beyond Empirical Risk Minimization" (alpha 1 in their CIFAR-10 runs)."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        lam = _beta(self.alpha, generator)
        perm = torch.randperm(len(y), generator=generator).to(x.device)
        return x * lam + x[perm] * (1 - lam), y, y[perm], lam


class CutMix:
    """Yun et al. (2019), "CutMix": a box of the partner image, area about 1 − lam, pasted in; lam is
    then recomputed from the box actually pasted (it is clipped at the image edge)."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        lam = _beta(self.alpha, generator)
        perm = torch.randperm(len(y), generator=generator).to(x.device)
        h, w = x.shape[-2:]
        ch, cw = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
        cy = int(torch.randint(0, h, (1,), generator=generator))
        cx = int(torch.randint(0, w, (1,), generator=generator))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch - ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw - cw // 2, w)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
        return x, y, y[perm], 1 - (y1 - y0) * (x1 - x0) / (h * w)


def mixed_cross_entropy(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float,
                        label_smoothing: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    """lam·CE(logits, y_a) + (1 − lam)·CE(logits, y_b); plain cross-entropy when lam == 1.
    `reduction="none"`: one loss per image (example selection weights and scores them)."""
    loss = F.cross_entropy(logits, y_a, label_smoothing=label_smoothing, reduction=reduction)
    if lam < 1.0:
        loss = lam * loss + (1 - lam) * F.cross_entropy(logits, y_b, label_smoothing=label_smoothing,
                                                        reduction=reduction)
    return loss


def soft_targets(y_a: torch.Tensor, y_b: torch.Tensor, lam: float, num_classes: int) -> torch.Tensor:
    """The mixed target as a probability vector per image (rows sum to one)."""
    return lam * F.one_hot(y_a, num_classes).float() + (1 - lam) * F.one_hot(y_b, num_classes).float()
