"""The model registry: one decorator to add a model, one factory to build it (like timm's).

MODELS is a cifarlab.registry.Registry. Each entry carries its default training recipe (meta["recipe"]), so
`cifarlab train --model M` trains M the way it is meant to be trained unless flags say otherwise. Names
with a prefix (`tv:resnet18`, `timm:resnet18`) are handed to a prefix resolver registered with
`register_prefix`.
"""
from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch.nn as nn

from ..registry import Registry


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
    """One model as callers see it: its factory, default recipe and description (a view of a MODELS entry)."""

    name: str
    factory: Callable[..., nn.Module]
    recipe: Recipe
    description: str


# Every model; the entry's meta["recipe"] is its default training recipe. Names with a prefix (tv:, timm:)
# go to the prefix's resolver (models/external.py).
MODELS = Registry("model", flag="--model")


def register_model(fn: Callable | None = None, *, name: str | None = None, recipe: Recipe | None = None):
    """Register a factory `fn(num_classes=10, **kwargs) -> nn.Module` under `name` (default: its name)."""

    def wrap(factory: Callable) -> Callable:
        MODELS.register(name or factory.__name__, factory, recipe=recipe or Recipe())
        return factory

    return wrap(fn) if fn is not None else wrap


def register_prefix(prefix: str, resolver: Callable[..., nn.Module], recipe: Recipe | None = None, *,
                    description: str = "", names: Callable[[], Iterable[str]] | None = None) -> None:
    """Register `resolver(name, num_classes=..., **kwargs)` for names written `prefix:name`; `names()` lists
    the valid names (checked when the name is looked up, before any data is read; see Registry)."""
    MODELS.register_prefix(prefix, resolver, description=description, names=names, recipe=recipe or Recipe())


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, in registration order, optionally filtered by a glob pattern."""
    return MODELS.names(pattern)


def is_model(name: str) -> bool:
    return name in MODELS


def get_model_entry(name: str) -> ModelEntry:
    entry = MODELS.entry(name)
    return ModelEntry(entry.name, entry.load(), entry.meta["recipe"], entry.description)


def get_recipe(name: str) -> Recipe:
    return MODELS.entry(name).meta["recipe"]


def model_arguments(name: str) -> list[str] | None:
    """The keyword arguments `create_model(name, ...)` takes besides num_classes, or None when any are
    passed on unchecked (tv:/timm: models: their own builders check them). A factory that hands **kwargs to
    the class it returns (its return annotation) takes that class's arguments."""
    entry = MODELS.entry(name)
    if name not in MODELS.names():
        return None
    names: list[str] = []
    target: typing.Any = entry.load()
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
    return MODELS.create(name, num_classes=num_classes, **kwargs)
