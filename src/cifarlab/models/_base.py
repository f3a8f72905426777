"""The contract every cifarlab model follows, after timm: features, head, and a classifier that can be
reset. Transfer learning, feature maps, CAM layer choice and embeddings rely on it for every model."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..data.types import CIFAR10_MEAN, CIFAR10_STD


class CifarModel(nn.Module):
    """Base class. Subclasses build `self.features`-like modules and implement the two forward halves.

    `default_cfg` carries the preprocessing the weights expect, so it travels with every checkpoint.
    """

    default_cfg: dict = {
        "input_size": (3, 32, 32),
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        "classifier": "classifier",
    }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.default_cfg["classifier"])

    def reset_classifier(self, num_classes: int) -> None:
        old = self.get_classifier()
        if not isinstance(old, nn.Linear):
            raise TypeError(f"{type(self).__name__} must override reset_classifier")
        setattr(self, self.default_cfg["classifier"], nn.Linear(old.in_features, num_classes))
