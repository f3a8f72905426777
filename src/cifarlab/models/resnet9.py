"""The fast ResNet-9 of the DAWNBench CIFAR-10 entries: David C. Page (2018), "How to train your
ResNet" (myrtle.ai blog series, parts 1-4; https://myrtle.ai/learn/how-to-train-your-resnet/), no
arXiv paper. It reached 94 % test accuracy in 24 epochs (79 s on one V100). The residual design
follows He et al. (2016), "Deep Residual Learning for Image Recognition", arXiv:1512.03385.

prep: conv 64; layer1: conv 128, max-pool 2, plus a residual of two conv 128; layer2: conv 256,
max-pool 2; layer3: conv 512, max-pool 2, plus a residual of two conv 512; then a global max-pool, a
bias-free Linear(512, classes) and a fixed output scale of 0.125. Every conv is 3×3-BN-ReLU.
6.6 M parameters. `drop_path_rate` (default 0) adds stochastic depth to the two residual branches.

Recipe (part 4): SGD with Nesterov momentum 0.9, batch 512, weight decay 5e-4, 24 epochs, the lr
rising linearly from 0 to 0.4 over 5 epochs then falling linearly to 0 ("onecycle", with
warmup_epochs = 5). Page sums the loss over the batch and divides lr by the batch size and multiplies
weight decay by it; with a mean loss that is exactly lr 0.4 and weight decay 5e-4.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import StochasticDepth

from ._base import CifarModel
from ._registry import Recipe, register_model


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class ResidualLayer(nn.Module):
    """conv-BN-ReLU, max-pool, then x + res(x) where res is two conv-BN-ReLU."""

    def __init__(self, c_in: int, c_out: int, drop_path: float = 0.0):
        super().__init__()
        self.conv = _conv_bn(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.res = nn.Sequential(_conv_bn(c_out, c_out), _conv_bn(c_out, c_out))
        self.drop_path = StochasticDepth(drop_path, mode="row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv(x))
        return x + self.drop_path(self.res(x))


class ResNet9(CifarModel):
    default_cfg = {
        **CifarModel.default_cfg,
        "classifier": "fc",
        "first_conv": "prep.0",
        "stages": ["prep", "layer1", "layer2", "layer3"],
        "cam_layer": "layer3",
    }

    def __init__(self, num_classes: int = 10, scale: float = 0.125, drop_path_rate: float = 0.0):
        super().__init__()
        self.scale = scale
        self.prep = _conv_bn(3, 64)
        self.layer1 = ResidualLayer(64, 128, drop_path_rate)
        self.layer2 = nn.Sequential(_conv_bn(128, 256), nn.MaxPool2d(2))
        self.layer3 = ResidualLayer(256, 512, drop_path_rate)
        self.fc = nn.Linear(512, num_classes, bias=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer3(self.layer2(self.layer1(self.prep(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(F.adaptive_max_pool2d(x, 1), 1)
        return x if pre_logits else self.fc(x) * self.scale

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.fc.in_features, num_classes, bias=False)


@register_model(recipe=Recipe(optimizer="sgd", lr=0.4, batch_size=512, weight_decay=5e-4, momentum=0.9,
                              nesterov=True, schedule="onecycle", warmup_epochs=5, epochs=24))
def resnet9(num_classes: int = 10, **kwargs) -> ResNet9:
    """David Page's DAWNBench ResNet-9 (94 % in 24 epochs), 6.6 M parameters."""
    return ResNet9(num_classes=num_classes, **kwargs)
