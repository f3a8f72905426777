"""MobileNetV2 with a CIFAR stem: Mark Sandler, Andrew Howard, Menglong Zhu, Andrey Zhmoginov,
Liang-Chieh Chen (2018), "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018,
arXiv:1801.04381.

The paper's table 2 (width 1.0): a 3×3 conv with 32 filters, 17 inverted-residual bottlenecks
(1×1 expand by t, ReLU6, 3×3 depthwise, ReLU6, 1×1 linear projection; a residual connection where
stride is 1 and the channels match), a 1×1 conv to 1280, global average pooling, dropout and a
linear layer. ImageNet downsamples 32× (224 -> 7); for 32×32 inputs the first conv and the second
bottleneck group use stride 1 instead of 2 (as in kuangliu/pytorch-cifar), so the groups run at 32,
32, 16, 8, 8, 4 and 4 pixels. 2.2 M parameters. `dropout` before the classifier defaults to 0.2, as
in torchvision's model.

Recipe: SGD momentum 0.9, lr 0.1, batch 128, weight decay 5e-4, cosine over 200 epochs (the paper's
RMSProp recipe is for ImageNet).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._base import CifarModel
from ._registry import Recipe, register_model

# (expansion t, output channels c, repeats n, stride s) of each bottleneck group; strides for 32×32.
_CFG = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
        (6, 320, 1, 1)]


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, act: bool = True):
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(c_out)]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        layers = [_conv_bn(c_in, hidden, 1)] if expand != 1 else []
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), _conv_bn(hidden, c_out, 1, act=False)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(CifarModel):
    default_cfg = {
        **CifarModel.default_cfg,
        "classifier": "classifier",
        "first_conv": "stem.0",
        # The last group at each resolution (32, 16, 8 px) and the final 1×1 conv (4 px).
        "stages": ["blocks.1", "blocks.2", "blocks.4", "conv_head"],
        "cam_layer": "conv_head",
    }

    def __init__(self, num_classes: int = 10, dropout: float = 0.2):
        super().__init__()
        self.stem = _conv_bn(3, 32, 3, stride=1)
        c_in, groups = 32, []
        for t, c, n, s in _CFG:
            blocks = []
            for i in range(n):
                blocks.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                c_in = c
            groups.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*groups)
        self.conv_head = _conv_bn(c_in, 1280, 1)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(1280, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(self.blocks(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return x if pre_logits else self.classifier(x)


@register_model(recipe=Recipe(optimizer="sgd", lr=0.1, batch_size=128, weight_decay=5e-4,
                              schedule="cosine", epochs=200))
def mobilenetv2(num_classes: int = 10, **kwargs) -> MobileNetV2:
    """MobileNetV2 (Sandler et al. 2018) with a stride-1 CIFAR stem, 2.2 M parameters."""
    return MobileNetV2(num_classes=num_classes, **kwargs)
