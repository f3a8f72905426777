"""torchvision and timm models behind the cifarlab model contract: `tv:NAME` and `timm:NAME`.

`create_model("tv:resnet18", num_classes=10, cifar_stem=False)` builds
`torchvision.models.get_model(NAME, weights=None, num_classes=...)` (any name from
`torchvision.models.list_models(module=torchvision.models)`); `create_model("timm:resnet18", ...)` builds
`timm.create_model(NAME, pretrained=False, num_classes=...)` (any name from `timm.list_models()`).
Extra keyword arguments go to those builders. timm is optional and imported only when a `timm:` model
is built. Pretrained weights are not supported yet: `pretrained` must be False.

The adapters (after the contract in `_base.py`):

- timm models already have forward_features / forward_head(pre_logits=) / get_classifier /
  reset_classifier; the adapter delegates to them. `default_cfg["stages"]` comes from timm's
  `model.feature_info` (cam_layer: the last stage larger than 1×1 on 32×32), `first_conv` and
  `classifier` from its pretrained_cfg, all prefixed `model.`.
- torchvision models have no common feature/head split. The adapter takes the final nn.Linear out of
  `fc` / `classifier` / `heads` / `head` into its own `classifier` attribute (leaving an nn.Identity in
  its place), so `forward_features` returns the pre-logit vector (N, D), not a feature map, and
  `forward_head` applies the Linear. Stages are found by running one 3×32×32 image through the model
  with forward hooks: the outermost (then the last) module to output each spatial resolution is a
  stage (squeeze-excitation 1×1 maps, adaptive pools and identities excluded); `cam_layer` is the last
  stage larger than 1×1 (ResNets without cifar_stem end at 1×1 on 32×32 images: cam_layer is layer3).

`head_hidden=N` replaces the final Linear by Linear(D, N)-ReLU-Dropout(0.5)-Linear(N, classes), the
Keras notebook's transfer head (Flatten-Dense(512)-Dropout-Dense(10) on VGG16); `default_cfg["classifier"]`
names the whole Sequential, so freezing and --pretrained treat it as the head.

Names in default_cfg ("classifier", "first_conv", "stages", "cam_layer") are dotted module names of the
adapter: resolve them with `adapter.get_submodule(name)`.

`cifar_stem=True` adapts a ResNet-like stem (conv1 + maxpool: torchvision and timm ResNet, ResNeXt,
Wide ResNet, SE-ResNet, ...) or a DenseNet stem (features.conv0 + features.pool0) to 32×32 images: the
first conv becomes 3×3 stride 1 (deep stems keep their convs with the first one at stride 1) and the
max-pool is removed, so the network downsamples 8× instead of 32×. Other families raise CifarlabError.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import CifarlabError, did_you_mean
from ._base import CifarModel
from ._modes import eval_mode
from ._registry import Recipe, register_prefix

_PRETRAINED_MSG = "pretrained weights for tv:/timm: models are not supported yet"
_STEMS = (("conv1", "maxpool"), ("features.conv0", "features.pool0"))  # (first conv, stem pool)
_TV_CLASSIFIER_ATTRS = ("fc", "classifier", "heads", "head")
_INPUT_SIZE = (3, 32, 32)


def _check_pretrained(pretrained) -> None:
    if pretrained:
        raise CifarlabError(_PRETRAINED_MSG)


def adapt_cifar_stem(model: nn.Module, label: str) -> None:
    """Make the stem of a ResNet-like or DenseNet model fit 32×32 images, in place (see module doc)."""
    for conv_name, pool_name in _STEMS:
        try:
            conv, _ = model.get_submodule(conv_name), model.get_submodule(pool_name)
        except AttributeError:
            continue
        if isinstance(conv, nn.Conv2d):
            model.set_submodule(conv_name, nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1,
                                                     padding=1, bias=conv.bias is not None))
        else:  # a deep stem (timm's resnet*d, *t): several 3×3 convs, the first one strided
            first = next((m for m in conv.modules() if isinstance(m, nn.Conv2d)), None)
            if first is None:
                break
            first.stride = (1, 1)
        model.set_submodule(pool_name, nn.Identity())
        return
    raise CifarlabError(
        f"cifar_stem=True: the stem of {label} ({type(model).__name__}) can't be adapted to 32×32 images; "
        "only ResNet-like (conv1 + maxpool) and DenseNet (features.conv0 + features.pool0) stems can. "
        "Use cifar_stem=False or one of cifarlab's own CIFAR models (cifarlab.models.list_models())")


def probe_stages(model: nn.Module, input_size: tuple[int, ...] = _INPUT_SIZE,
                 exclude: tuple[str, ...] = ()) -> tuple[str | None, list[str], str | None]:
    """Run one zero image through `model` with forward hooks; return (first conv, stages, cam layer).

    Stages: for each spatial resolution, in order, the outermost module that outputs it, the last
    one if several do. Limitation: (N, H, W, C) outputs (torchvision Swin) are read as (N, C, H, W).
    """
    records: list[tuple[str, nn.Module, tuple[int, ...]]] = []

    def hook(name):
        def fn(module, args, out):
            if isinstance(out, torch.Tensor):
                records.append((name, module, tuple(out.shape)))
        return fn

    skip = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Identity, nn.Flatten, nn.Dropout)
    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if n and not any(n == e or n.startswith(e + ".") for e in exclude)]
    try:
        with torch.no_grad(), eval_mode(model):
            model(torch.zeros(1, *input_size))
    finally:
        for h in handles:
            h.remove()

    first_conv = next((n for n, m, _ in records if isinstance(m, nn.Conv2d)), None)
    maps = [(n, s[-2] * s[-1]) for n, m, s in records if len(s) == 4 and not isinstance(m, skip)]
    # Drop 1×1 maps that come before larger ones (squeeze-excitation gates).
    kept, largest_after = [], 0
    for n, area in reversed(maps):
        if area > 1 or largest_after <= 1:
            kept.append((n, area))
        largest_after = max(largest_after, area)
    groups: list[tuple[int, list[str]]] = []  # (area, modules with that output size), in order
    for n, area in reversed(kept):
        if not groups or area < groups[-1][0]:
            groups.append((area, [n]))
        elif area == groups[-1][0]:
            groups[-1][1].append(n)
    # In each group the outermost module that completed last: `layer1` rather than `layer1.1.relu`,
    # `features.1` rather than the 1×1 expansion conv that opens the next (strided) block.
    stages = []
    for area, members in groups:
        depth = min(n.count(".") for n in members)
        stages.append(([n for n in members if n.count(".") == depth][-1], area))
    names = [n for n, _ in stages]
    cam = next((n for n, area in reversed(stages) if area > 1), names[-1] if names else None)
    return first_conv, names, cam


def _output_areas(model: nn.Module, names: list[str]) -> dict[str, int]:
    """H × W of the 4-D output of each named module for one zero 3×32×32 image (others left out)."""
    areas: dict[str, int] = {}

    def hook(name):
        def fn(module, args, out):
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                areas[name] = out.shape[-2] * out.shape[-1]
        return fn

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    try:
        with torch.no_grad(), eval_mode(model):
            model(torch.zeros(1, *_INPUT_SIZE))
    finally:
        for h in handles:
            h.remove()
    return areas


class TorchvisionModel(CifarModel):
    """A torchvision classification model with its final Linear moved to `self.classifier`."""

    def __init__(self, name: str, model: nn.Module):
        super().__init__()
        path = _find_tv_classifier(name, model)
        linear = model.get_submodule(path)
        model.set_submodule(path, nn.Identity())
        self.model = model
        self.classifier = linear
        try:
            first_conv, stages, cam = probe_stages(model)
        except Exception as e:  # any failure here means 3×32×32 images do not fit
            raise CifarlabError(f"tv:{name} can't process 3×32×32 images ({type(e).__name__}: {e}); pick "
                                "another model (or cifar_stem=True for ResNet-like and DenseNet ones)") from e
        self.default_cfg = {
            **CifarModel.default_cfg,
            "architecture": f"tv:{name}",
            "classifier": "classifier",
            "first_conv": f"model.{first_conv}" if first_conv else None,
            "stages": [f"model.{s}" for s in stages],
            "cam_layer": f"model.{cam}" if cam else None,
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # everything up to the final Linear: (N, D)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.classifier(x)


def _find_tv_classifier(name: str, model: nn.Module) -> str:
    for attr in _TV_CLASSIFIER_ATTRS:
        m = getattr(model, attr, None)
        if isinstance(m, nn.Linear):
            return attr
        if isinstance(m, nn.Sequential) and len(m):
            last_name, last = list(m.named_children())[-1]
            if isinstance(last, nn.Linear):
                return f"{attr}.{last_name}"
    raise CifarlabError(f"tv:{name}: no final nn.Linear found in {' / '.join(_TV_CLASSIFIER_ATTRS)}, "
                        "so it can't be used as a cifarlab model")


def create_tv_model(name: str, num_classes: int = 10, cifar_stem: bool = False, pretrained: bool = False,
                    head_hidden: int | None = None, **kwargs) -> TorchvisionModel:
    """Build torchvision model `name` from scratch, wrapped in the cifarlab contract."""
    import torchvision.models as tvm

    _check_pretrained(pretrained)
    _check_pretrained(kwargs.pop("weights", None))
    if name in ("googlenet", "inception_v3"):
        kwargs.setdefault("aux_logits", False)  # one output, not a namedtuple, in train mode
    try:
        model = tvm.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as e:
        raise CifarlabError(f"tv:{name}: {e}") from e
    if cifar_stem:
        adapt_cifar_stem(model, f"tv:{name}")
    wrapped = TorchvisionModel(name, model)
    if head_hidden:
        wrapped.classifier = hidden_head(wrapped.classifier, head_hidden)
    return wrapped


def hidden_head(linear: nn.Linear, hidden: int, dropout: float = 0.5) -> nn.Sequential:
    return nn.Sequential(nn.Linear(linear.in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(hidden, linear.out_features))


def _import_timm():
    try:
        import timm
    except ImportError as e:
        raise CifarlabError("timm is not installed: pip install -e '.[timm]'") from e
    return timm


class TimmModel(CifarModel):
    """A timm model; its own forward_features / forward_head / classifier methods do the work."""

    def __init__(self, name: str, model: nn.Module):
        super().__init__()
        self.model = model
        cfg = dict(getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {})
        first_conv, stages, cam = None, [], None
        for info in getattr(model, "feature_info", None) or []:
            module = info.get("module") if isinstance(info, dict) else None
            if module and self._resolves(f"model.{module}"):
                stages.append(f"model.{module}")
        try:
            if stages:
                # cam_layer: the last stage whose map is still larger than 1×1 on 32×32 images.
                areas = _output_areas(self, stages)
                cam = next((s for s in reversed(stages) if areas.get(s, 0) > 1), stages[-1])
            else:
                exclude = (self._cfg_name(cfg.get("classifier")) or "",)
                _, found, found_cam = probe_stages(model, exclude=exclude)
                stages, cam = [f"model.{s}" for s in found], f"model.{found_cam}" if found_cam else None
        except Exception as e:  # any failure here means 3×32×32 images do not fit
            raise CifarlabError(f"timm:{name} can't process 3×32×32 images ({type(e).__name__}: {e}); pick "
                                "another model, or pass img_size=32 where the model takes it") from e
        conv = self._cfg_name(cfg.get("first_conv"))
        if conv and self._resolves(f"model.{conv}"):
            first_conv = f"model.{conv}"
        classifier = self._find_classifier(cfg)
        self.default_cfg = {
            **CifarModel.default_cfg,
            "architecture": f"timm:{name}",
            "classifier": classifier,
            "first_conv": first_conv,
            "stages": stages,
            "cam_layer": cam,
        }

    @staticmethod
    def _cfg_name(value) -> str | None:
        return value[0] if isinstance(value, (tuple, list)) and value else value or None

    def _resolves(self, name: str) -> bool:
        try:
            self.get_submodule(name)
        except AttributeError:
            return False
        return True

    def _find_classifier(self, cfg: dict) -> str | None:
        head = self.model.get_classifier()
        head = head[0] if isinstance(head, (tuple, list)) else head
        for n, m in self.model.named_modules():
            if m is head and n:
                return f"model.{n}"
        name = self._cfg_name(cfg.get("classifier"))
        return f"model.{name}" if name and self._resolves(f"model.{name}") else None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.model.forward_head(x, pre_logits=pre_logits)

    def get_classifier(self) -> nn.Module:
        return self.model.get_classifier()

    def reset_classifier(self, num_classes: int) -> None:
        self.model.reset_classifier(num_classes)
        name = self.default_cfg["classifier"]
        if name and not self._resolves(name):
            self.default_cfg["classifier"] = self._find_classifier({})


def create_timm_model(name: str, num_classes: int = 10, cifar_stem: bool = False, pretrained: bool = False,
                      head_hidden: int | None = None, **kwargs) -> TimmModel:
    """Build timm model `name` from scratch (pretrained=False), wrapped in the cifarlab contract."""
    _check_pretrained(pretrained)
    timm = _import_timm()
    if not timm.is_model(name):
        raise CifarlabError(f"unknown timm model {name!r}{did_you_mean(name, timm.list_models())}; list the "
                            "valid names with timm.list_models('*pattern*')")
    try:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as e:
        raise CifarlabError(f"timm:{name}: {e}") from e
    if cifar_stem:
        adapt_cifar_stem(model, f"timm:{name}")
    wrapped = TimmModel(name, model)
    if head_hidden:
        path = wrapped.default_cfg["classifier"]
        linear = wrapped.get_submodule(path) if path else None
        if not isinstance(linear, nn.Linear):
            raise CifarlabError(f"--head-hidden: timm:{name} has no single Linear classifier to replace")
        wrapped.set_submodule(path, hidden_head(linear, head_hidden))
    return wrapped


_EXTERNAL_RECIPE = Recipe(optimizer="sgd", lr=0.1, batch_size=128, weight_decay=5e-4, schedule="cosine",
                          epochs=30)


def torchvision_names() -> list[str]:
    """The names tv:NAME takes (the registry checks a name against them before anything is built)."""
    import torchvision.models as tvm

    return tvm.list_models(module=tvm)


register_prefix("tv", create_tv_model, _EXTERNAL_RECIPE, names=torchvision_names,
                description="a torchvision classification model: torchvision.models.list_models("
                            "module=torchvision.models) lists them")
register_prefix("timm", create_timm_model, _EXTERNAL_RECIPE)
