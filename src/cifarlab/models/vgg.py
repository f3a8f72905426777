"""VGG with batch norm, sized for CIFAR: Karen Simonyan, Andrew Zisserman (2014), "Very Deep
Convolutional Networks for Large-Scale Image Recognition", ICLR 2015, arXiv:1409.1556.

Configurations A (VGG-11) and D (VGG-16) of the paper, with a BatchNorm after every conv (Ioffe &
Szegedy 2015, arXiv:1502.03167). Five max-pools take 32×32 down to 1×1, so the three 4096-wide fully
connected layers of the ImageNet model are replaced by one Linear(512, num_classes), the usual CIFAR
head (as in kuangliu/pytorch-cifar). Each stage here is [max-pool,] convs, and the fifth max-pool
belongs to the head, so the last stage still has a 2×2 map for Grad-CAM.

Recipe: SGD momentum 0.9, lr 0.1, batch 128, weight decay 5e-4, cosine over 200 epochs (the
kuangliu/pytorch-cifar recipe).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._base import CifarModel
from ._registry import Recipe, register_model

# Output channels of each conv, one list per stage (a max-pool separates stages).
_CFGS = {
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    16: [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
}


class VGG(CifarModel):
    default_cfg = {
        **CifarModel.default_cfg,
        "classifier": "classifier",
        "first_conv": "features.0.0",
        "stages": ["features.0", "features.1", "features.2", "features.3", "features.4"],
        "cam_layer": "features.4",
    }

    def __init__(self, depth: int = 16, num_classes: int = 10, dropout: float = 0.0):
        super().__init__()
        if depth not in _CFGS:
            raise ValueError(f"depth must be one of {sorted(_CFGS)}, got {depth}")
        stages, in_ch = [], 3
        for i, widths in enumerate(_CFGS[depth]):
            layers: list[nn.Module] = [nn.MaxPool2d(2)] if i else []
            for w in widths:
                layers += [nn.Conv2d(in_ch, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
                in_ch = w
            stages.append(nn.Sequential(*layers))
        self.features = nn.Sequential(*stages)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # The fifth max-pool (2×2 -> 1×1), then a global max in case the input was larger than 32×32.
        x = torch.flatten(F.adaptive_max_pool2d(F.max_pool2d(x, 2), 1), 1)
        x = self.drop(x)
        return x if pre_logits else self.classifier(x)


_RECIPE = Recipe(optimizer="sgd", lr=0.1, batch_size=128, weight_decay=5e-4, schedule="cosine", epochs=200)


@register_model(recipe=_RECIPE)
def vgg11(num_classes: int = 10, **kwargs) -> VGG:
    """VGG-11 (config A) with batch norm and a one-layer CIFAR head, 9.2 M parameters."""
    return VGG(11, num_classes=num_classes, **kwargs)


@register_model(recipe=_RECIPE)
def vgg16(num_classes: int = 10, **kwargs) -> VGG:
    """VGG-16 (config D) with batch norm and a one-layer CIFAR head, 14.7 M parameters."""
    return VGG(16, num_classes=num_classes, **kwargs)
