"""DenseNet-BC for CIFAR: Gao Huang, Zhuang Liu, Laurens van der Maaten, Kilian Q. Weinberger (2017),
"Densely Connected Convolutional Networks", CVPR 2017, arXiv:1608.06993.

DenseNet-BC (L = 100, k = 12), the paper's CIFAR configuration: a 3×3 conv with 2k = 24 filters, then
three dense blocks of 16 bottleneck layers each at 32, 16 and 8 pixels. Every layer is
BN-ReLU-conv1×1(4k)-BN-ReLU-conv3×3(k) and its k new channels are concatenated to everything before
it; between blocks a transition BN-ReLU-conv1×1 halves the channels (compression 0.5) and a 2×2
average pool halves the resolution. A final BN-ReLU, global average pooling and one linear layer
(342 -> classes) close it: 0.77 M parameters (the paper rounds to 0.8 M). `dropout` is the rate after
each conv, which the paper used (0.2) only when training without data augmentation; default 0.

Recipe: SGD with Nesterov momentum 0.9, lr 0.1, batch 64, weight decay 1e-4 for 300 epochs; the paper
divides the lr by 10 at 50 % and 75 %, cosine annealing is used here instead.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._base import CifarModel
from ._registry import Recipe, register_model


class Bottleneck(nn.Module):
    """One dense layer: adds `growth` channels to its input."""

    def __init__(self, c_in: int, growth: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop(self.conv1(F.relu(self.bn1(x))))
        out = self.drop(self.conv2(F.relu(self.bn2(out))))
        return torch.cat([x, out], 1)


class Transition(nn.Module):
    def __init__(self, c_in: int, c_out: int, dropout: float = 0.0):
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.drop(self.conv(F.relu(self.bn(x)))), 2)


class DenseNet(CifarModel):
    default_cfg = {
        **CifarModel.default_cfg,
        "classifier": "fc",
        "first_conv": "conv1",
        "stages": ["dense1", "dense2", "dense3"],
        "cam_layer": "dense3",
    }

    def __init__(self, depth: int = 100, growth_rate: int = 12, compression: float = 0.5,
                 num_classes: int = 10, dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"DenseNet-BC depth must be 6n + 4 (40, 100, 190, ...), got {depth}")
        n = (depth - 4) // 6
        c = 2 * growth_rate
        self.conv1 = nn.Conv2d(3, c, 3, padding=1, bias=False)
        for i in (1, 2, 3):
            layers = []
            for _ in range(n):
                layers.append(Bottleneck(c, growth_rate, dropout))
                c += growth_rate
            self.add_module(f"dense{i}", nn.Sequential(*layers))
            if i < 3:
                c_out = int(c * compression)
                self.add_module(f"trans{i}", Transition(c, c_out, dropout))
                c = c_out
        self.bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trans1(self.dense1(self.conv1(x)))
        x = self.dense3(self.trans2(self.dense2(x)))
        return F.relu(self.bn(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.fc(x)


@register_model(recipe=Recipe(optimizer="sgd", lr=0.1, batch_size=64, weight_decay=1e-4, momentum=0.9,
                              nesterov=True, schedule="cosine", epochs=300))
def densenet_bc(num_classes: int = 10, **kwargs) -> DenseNet:
    """DenseNet-BC-100 with growth rate k = 12 (Huang et al. 2017), 0.77 M parameters."""
    return DenseNet(100, 12, num_classes=num_classes, **kwargs)
