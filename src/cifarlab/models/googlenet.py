"""GoogLeNet (Inception-v1) adapted to 32×32: Christian Szegedy, Wei Liu, Yangqing Jia, Pierre
Sermanet, Scott Reed, Dragomir Anguelov, Dumitru Erhan, Vincent Vanhoucke, Andrew Rabinovich (2014),
"Going Deeper with Convolutions", CVPR 2015, arXiv:1409.4842.

Nine Inception modules (3a-3b, 4a-4e, 5a-5b) with the paper's filter counts (its table 1). Each module
runs four branches in parallel and concatenates them: 1×1; 1×1 reduce then 3×3; 1×1 reduce then
"5×5", built as two stacked 3×3 convs (same receptive field, fewer weights, as in Inception-v2,
arXiv:1502.03167); and 3×3 max-pool then 1×1. Every conv is followed by BatchNorm and ReLU (the
original had no BN). For CIFAR the ImageNet stem (7×7/2 conv, pools, 3×3 conv: 224 -> 28) is replaced
by a single 3×3 conv with 192 filters at full resolution, so the modules run at 32, 16 and 8 pixels
(as in kuangliu/pytorch-cifar), and the auxiliary classifiers are left out. `dropout` is the rate
before the classifier (the paper used 0.4 on ImageNet; default 0 here, as in the CIFAR recipe).

Recipe: SGD momentum 0.9, lr 0.1, batch 128, weight decay 5e-4, cosine over 200 epochs.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._base import CifarModel
from ._registry import Recipe, register_model


def _conv_bn_relu(c_in: int, c_out: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU())


class Inception(nn.Module):
    """Four parallel branches, concatenated on the channel axis."""

    def __init__(self, c_in: int, n1x1: int, n3x3red: int, n3x3: int, n5x5red: int, n5x5: int,
                 pool_proj: int):
        super().__init__()
        self.b1 = _conv_bn_relu(c_in, n1x1, 1)
        self.b2 = nn.Sequential(_conv_bn_relu(c_in, n3x3red, 1), _conv_bn_relu(n3x3red, n3x3, 3))
        self.b3 = nn.Sequential(_conv_bn_relu(c_in, n5x5red, 1), _conv_bn_relu(n5x5red, n5x5, 3),
                                _conv_bn_relu(n5x5, n5x5, 3))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), _conv_bn_relu(c_in, pool_proj, 1))
        self.out_channels = n1x1 + n3x3 + n5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class GoogLeNet(CifarModel):
    default_cfg = {
        **CifarModel.default_cfg,
        "classifier": "fc",
        "first_conv": "stem.0",
        "stages": ["inception3", "inception4", "inception5"],
        "cam_layer": "inception5",
    }

    def __init__(self, num_classes: int = 10, dropout: float = 0.0):
        super().__init__()
        self.stem = _conv_bn_relu(3, 192, 3)
        self.inception3 = nn.Sequential(
            Inception(192, 64, 96, 128, 16, 32, 32),          # 3a -> 256
            Inception(256, 128, 128, 192, 32, 96, 64),        # 3b -> 480
        )
        self.inception4 = nn.Sequential(
            nn.MaxPool2d(3, stride=2, padding=1),
            Inception(480, 192, 96, 208, 16, 48, 64),         # 4a -> 512
            Inception(512, 160, 112, 224, 24, 64, 64),        # 4b -> 512
            Inception(512, 128, 128, 256, 24, 64, 64),        # 4c -> 512
            Inception(512, 112, 144, 288, 32, 64, 64),        # 4d -> 528
            Inception(528, 256, 160, 320, 32, 128, 128),      # 4e -> 832
        )
        self.inception5 = nn.Sequential(
            nn.MaxPool2d(3, stride=2, padding=1),
            Inception(832, 256, 160, 320, 32, 128, 128),      # 5a -> 832
            Inception(832, 384, 192, 384, 48, 128, 128),      # 5b -> 1024
        )
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.inception5(self.inception4(self.inception3(self.stem(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return x if pre_logits else self.fc(x)


@register_model(recipe=Recipe(optimizer="sgd", lr=0.1, batch_size=128, weight_decay=5e-4,
                              schedule="cosine", epochs=200))
def googlenet(num_classes: int = 10, **kwargs) -> GoogLeNet:
    """GoogLeNet / Inception-v1 (Szegedy et al. 2014) with BN and a 32×32 stem, 6.2 M parameters."""
    return GoogLeNet(num_classes=num_classes, **kwargs)
