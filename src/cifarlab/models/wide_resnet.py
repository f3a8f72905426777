"""Wide ResNets: Sergey Zagoruyko, Nikos Komodakis (2016), "Wide Residual Networks", BMVC 2016,
arXiv:1605.07146.

WRN-d-k: a 3×3 conv with 16 filters, then three stages of (d - 4) / 6 pre-activation blocks
(BN-ReLU-conv3×3-[dropout]-BN-ReLU-conv3×3) with 16k, 32k and 64k filters at 32, 16 and 8 pixels, a
final BN-ReLU, global average pooling and one linear layer. Where the shape changes the shortcut is a
1×1 conv of the pre-activated input (the authors' code). `dropout` is the rate between the two convs of
each block: the paper's best CIFAR-10 WRN-28-10 uses 0.3, which is the default for wide_resnet28_10;
WRN-16-4 defaults to 0. WRN-28-10 has 36.5 M parameters, WRN-16-4 2.7 M.

Recipe: SGD with Nesterov momentum 0.9, lr 0.1, batch 128, weight decay 5e-4 for 200 epochs; the
paper multiplies the lr by 0.2 at epochs 60, 120 and 160, cosine annealing is used here instead.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import StochasticDepth

from ._base import CifarModel
from ._registry import Recipe, register_model


class WideBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1, dropout: float = 0.0,
                 drop_path: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.drop = nn.Dropout(dropout)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.drop_path = StochasticDepth(drop_path, mode="row")
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        sc = self.shortcut(out) if self.shortcut is not None else x
        out = self.drop(self.conv1(out))
        out = self.conv2(F.relu(self.bn2(out)))
        return sc + self.drop_path(out)


class WideResNet(CifarModel):
    default_cfg = {
        **CifarModel.default_cfg,
        "classifier": "fc",
        "first_conv": "conv1",
        "stages": ["layer1", "layer2", "layer3"],
        "cam_layer": "layer3",
    }

    def __init__(self, depth: int = 28, widen_factor: int = 10, num_classes: int = 10, dropout: float = 0.0,
                 drop_path_rate: float = 0.0):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 (16, 22, 28, 40, ...), got {depth}")
        n = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        rates = torch.linspace(0, drop_path_rate, 3 * n).tolist()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        in_planes, layers = 16, []
        for i, planes in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i and not j) else 1
                blocks.append(WideBlock(in_planes, planes, stride, dropout, rates[i * n + j]))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.bn = nn.BatchNorm2d(widths[-1])
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return F.relu(self.bn(x))  # the final BN-ReLU of a pre-activation net

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.fc(x)


_RECIPE = Recipe(optimizer="sgd", lr=0.1, batch_size=128, weight_decay=5e-4, momentum=0.9, nesterov=True,
                 schedule="cosine", epochs=200)


@register_model(recipe=_RECIPE)
def wide_resnet16_4(num_classes: int = 10, dropout: float = 0.0, **kwargs) -> WideResNet:
    """Wide ResNet WRN-16-4 (Zagoruyko & Komodakis 2016), 2.7 M parameters."""
    return WideResNet(16, 4, num_classes=num_classes, dropout=dropout, **kwargs)


@register_model(recipe=_RECIPE)
def wide_resnet28_10(num_classes: int = 10, dropout: float = 0.3, **kwargs) -> WideResNet:
    """Wide ResNet WRN-28-10 (Zagoruyko & Komodakis 2016) with dropout 0.3, 36.5 M parameters."""
    return WideResNet(28, 10, num_classes=num_classes, dropout=dropout, **kwargs)
