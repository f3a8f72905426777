"""The classic Keras CIFAR-10 notebook's network, layer for layer (keras-team/keras examples,
`cifar10_cnn.py`): Conv32 same, Conv32 valid, MaxPool, Conv64 same, Conv64 valid, MaxPool, Dense 512,
Dropout 0.5, Dense 10, ReLU throughout. 1,250,858 parameters, as in Keras."""
from __future__ import annotations

import torch
import torch.nn as nn

from ._base import CifarModel
from ._registry import Recipe, register_model


class KerasBaseline(CifarModel):
    default_cfg = {**CifarModel.default_cfg, "classifier": "fc2", "first_conv": "features.0",
                   "stages": ["features.3", "features.8"], "cam_layer": "features.8"}

    def __init__(self, num_classes: int = 10, dropout: float = 0.5, keras_init: bool = True):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.fc1 = nn.Linear(64 * 6 * 6, 512)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(512, num_classes)
        if keras_init:
            self.apply(_glorot_uniform_zero_bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(torch.relu(self.fc1(torch.flatten(x, 1))))
        return x if pre_logits else self.fc2(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.fc2 = nn.Linear(self.fc2.in_features, num_classes)
        _glorot_uniform_zero_bias(self.fc2)


def _glorot_uniform_zero_bias(m: nn.Module) -> None:
    # Keras' defaults. PyTorch's own init costs about 3 points of accuracy after 2 epochs here.
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)


@register_model(recipe=Recipe(optimizer="adam", lr=1e-3, batch_size=128, weight_decay=0.0,
                              schedule="constant", epochs=2))
def baseline(num_classes: int = 10, **kwargs) -> KerasBaseline:
    """The Keras notebook's 4-conv CNN (Adam 1e-3, batch 128), 1.25 M parameters."""
    return KerasBaseline(num_classes=num_classes, **kwargs)
