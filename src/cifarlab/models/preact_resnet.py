"""Pre-activation ResNet-18: Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun (2016), "Identity
Mappings in Deep Residual Networks", ECCV 2016, arXiv:1603.05027.

Blocks are BN-ReLU-conv3×3-BN-ReLU-conv3×3 with a clean identity path (a 1×1 projection of the
pre-activated input where the shape changes). The layout is the ResNet-18 one (2-2-2-2 blocks, 64 to
512 filters) with a CIFAR stem: one 3×3 stride-1 conv and no max-pool, so the stages run at 32, 16, 8
and 4 pixels (as in kuangliu/pytorch-cifar). As in the paper, a final BN-ReLU follows the last block.

Recipe: SGD momentum 0.9, lr 0.1, batch 128, weight decay 5e-4, cosine over 200 epochs.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import StochasticDepth

from ._base import CifarModel
from ._registry import Recipe, register_model


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1, drop_path: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.drop_path = StochasticDepth(drop_path, mode="row")
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        sc = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return sc + self.drop_path(out)


class PreActResNet(CifarModel):
    default_cfg = {
        **CifarModel.default_cfg,
        "classifier": "fc",
        "first_conv": "conv1",
        "stages": ["layer1", "layer2", "layer3", "layer4"],
        "cam_layer": "layer4",
    }

    def __init__(self, num_blocks: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 10,
                 drop_path_rate: float = 0.0):
        super().__init__()
        rates = torch.linspace(0, drop_path_rate, sum(num_blocks)).tolist()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        in_planes, k, layers = 64, 0, []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks, strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(PreActBlock(in_planes, planes, 2 if (i and not j) else 1, rates[k]))
                in_planes, k = planes, k + 1
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(512)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return F.relu(self.bn(x))  # the final BN-ReLU of a pre-activation net

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.fc(x)


@register_model(recipe=Recipe(optimizer="sgd", lr=0.1, batch_size=128, weight_decay=5e-4,
                              schedule="cosine", epochs=200))
def preact_resnet18(num_classes: int = 10, **kwargs) -> PreActResNet:
    """Pre-activation ResNet-18 (He et al. 2016, identity mappings) with a CIFAR stem, 11.2 M parameters."""
    return PreActResNet((2, 2, 2, 2), num_classes=num_classes, **kwargs)
