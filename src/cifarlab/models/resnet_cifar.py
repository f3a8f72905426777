"""The CIFAR-10 ResNets of He et al.: Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun (2016),
"Deep Residual Learning for Image Recognition", CVPR 2016, arXiv:1512.03385, section 4.2.

A 3×3 conv with 16 filters, then three stages of n basic blocks at 32×32, 16×16 and 8×8 with 16, 32 and
64 filters (depth 6n + 2: n = 3 gives ResNet-20, n = 9 ResNet-56), global average pooling and one
fully connected layer. Shortcuts are option A by default, as in the paper's CIFAR experiments: identity,
and where the shape changes a parameter-free shortcut that subsamples by 2 and pads the new channels
with zeros. `shortcut="B"` uses a 1×1 conv + BN projection there instead. With option A the parameter
counts are the paper's: 0.27 M (ResNet-20) and 0.85 M (ResNet-56).

Recipe: the paper trains with SGD (momentum 0.9, no Nesterov), lr 0.1, batch 128, weight decay 1e-4
for 64k iterations (about 180 epochs), dividing the lr by 10 at 50 % and 75 %; cosine annealing over
the same epochs is the common modern equivalent and is used here.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import StochasticDepth

from ._base import CifarModel
from ._registry import Recipe, register_model


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN, plus the shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A",
                 drop_path: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.drop_path = StochasticDepth(drop_path, mode="row")
        self.shortcut_type = shortcut
        self.pad = 0
        self.shortcut = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                # Subsample by 2 and zero-pad the extra channels on both sides: no parameters.
                self.pad = (planes - in_planes) // 2
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad)) if self.pad else self.shortcut(x)
        return F.relu(sc + self.drop_path(out))


class CifarResNet(CifarModel):
    default_cfg = {
        **CifarModel.default_cfg,
        "classifier": "fc",
        "first_conv": "conv1",
        "stages": ["layer1", "layer2", "layer3"],
        "cam_layer": "layer3",
    }

    def __init__(self, depth: int = 20, num_classes: int = 10, shortcut: str = "A",
                 drop_path_rate: float = 0.0):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 (20, 32, 44, 56, 110, ...), got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        n = (depth - 2) // 6
        rates = torch.linspace(0, drop_path_rate, 3 * n).tolist()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes, layers = 16, []
        for i, (planes, stride) in enumerate([(16, 1), (32, 2), (64, 2)]):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if j == 0 else 1, shortcut,
                                         rates[i * n + j]))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.fc(x)


_RECIPE = Recipe(optimizer="sgd", lr=0.1, batch_size=128, weight_decay=1e-4, momentum=0.9, nesterov=False,
                 schedule="cosine", epochs=180)


@register_model(recipe=_RECIPE)
def resnet20(num_classes: int = 10, **kwargs) -> CifarResNet:
    """He et al. 2016 CIFAR ResNet-20 (16/32/64 filters, option A shortcuts), 0.27 M parameters."""
    return CifarResNet(20, num_classes=num_classes, **kwargs)


@register_model(recipe=_RECIPE)
def resnet56(num_classes: int = 10, **kwargs) -> CifarResNet:
    """He et al. 2016 CIFAR ResNet-56 (16/32/64 filters, option A shortcuts), 0.85 M parameters."""
    return CifarResNet(56, num_classes=num_classes, **kwargs)
