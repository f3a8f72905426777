"""The model registry: one decorator to add a model, one factory to build it (like timm's).

Each entry carries its default training recipe, so `cifarlab train --model M` trains M the way it is
meant to be trained unless flags say otherwise. Names with a prefix (`tv:resnet18`, `timm:resnet18`)
are handed to a prefix resolver registered with `register_prefix`.
"""
from __future__ import annotations

import fnmatch
import inspect
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch.nn as nn

from ..errors import CifarlabError


@dataclass(frozen=True)
class Recipe:
    """How a model is trained by default. Units: lr per the batch size given; weight decay per step."""

    optimizer: str = "sgd"
    lr: float = 0.1
    batch_size: int = 128
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = True
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    epochs: int = 30
    label_smoothing: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., nn.Module]
    recipe: Recipe
    description: str


_MODELS: dict[str, ModelEntry] = {}
_PREFIXES: dict[str, tuple[Callable[..., nn.Module], Recipe]] = {}


def register_model(fn: Callable | None = None, *, name: str | None = None, recipe: Recipe | None = None):
    """Register a factory `fn(num_classes=10, **kwargs) -> nn.Module` under `name` (default: its name)."""

    def wrap(factory: Callable) -> Callable:
        model_name = name or factory.__name__
        if model_name in _MODELS:
            raise ValueError(f"model {model_name!r} is already registered")
        doc = (factory.__doc__ or "").strip().splitlines()
        _MODELS[model_name] = ModelEntry(model_name, factory, recipe or Recipe(), doc[0] if doc else "")
        return factory

    return wrap(fn) if fn is not None else wrap


def register_prefix(prefix: str, resolver: Callable[..., nn.Module], recipe: Recipe | None = None) -> None:
    """Register `resolver(name, num_classes=..., **kwargs)` for names written `prefix:name`."""
    _PREFIXES[prefix] = (resolver, recipe or Recipe())


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, in registration order, optionally filtered by a glob pattern."""
    names = list(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def is_model(name: str) -> bool:
    prefix, _, rest = name.partition(":")
    return name in _MODELS or (bool(rest) and prefix in _PREFIXES)


def get_model_entry(name: str) -> ModelEntry:
    if name in _MODELS:
        return _MODELS[name]
    prefix, _, rest = name.partition(":")
    if rest and prefix in _PREFIXES:
        resolver, recipe = _PREFIXES[prefix]
        return ModelEntry(name, lambda **kw: resolver(rest, **kw), recipe, f"{prefix} model {rest}")
    known = ", ".join(list_models())
    prefixes = ", ".join(f"{p}:NAME" for p in _PREFIXES)
    raise CifarlabError(f"unknown model {name!r}; choose one of: {known}" + (f" (or {prefixes})" if prefixes else ""))


def get_recipe(name: str) -> Recipe:
    return get_model_entry(name).recipe


def model_arguments(name: str) -> list[str] | None:
    """The keyword arguments `create_model(name, ...)` takes besides num_classes, or None when any are
    passed on unchecked (tv:/timm: models: their own builders check them). A factory that hands **kwargs to
    the class it returns (its return annotation) takes that class's arguments."""
    entry = get_model_entry(name)
    if name not in _MODELS:
        return None
    names: list[str] = []
    target: typing.Any = entry.factory
    while target is not None:
        params = inspect.signature(target).parameters.values()
        names += [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.name not in ("self", "num_classes") and p.name not in names]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names
        returned = typing.get_type_hints(target).get("return") if not inspect.isclass(target) else None
        target = returned if inspect.isclass(returned) and issubclass(returned, nn.Module) else None
    return None


def create_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build a registered model by name, e.g. `create_model("baseline", num_classes=10)`."""
    return get_model_entry(name).factory(num_classes=num_classes, **kwargs)
