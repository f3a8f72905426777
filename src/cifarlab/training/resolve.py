"""A TrainConfig resolved: the one pipeline every run, the command line, the Python API, --config files and
tune spaces go through, before anything is built or written:

    user values -> the named recipe -> the model's default recipe -> model arguments (dropout, drop path,
    CIFAR stem, head, published weights) -> checks

Each step is a pure function of the config (it returns a new one). A setting's type, range and choices are
declared once on its TrainConfig field (config.py); the checks here are those that need the models, the
augmentation registry or the transfer settings together."""
from __future__ import annotations

import dataclasses
from typing import Any

from ..augment import parse_augment_spec
from ..config import RECIPE_FIELDS, TrainConfig, class_list, model_kwarg_name
from ..errors import CifarlabError
from ..models import get_recipe, model_arguments
from ..pretrained.options import check_transfer
from ..pretrained.weights import pretrained_model_kwargs
from ..recipes import apply_recipe


def resolve(cfg: TrainConfig) -> TrainConfig:
    """A copy with every recipe field filled from the named recipe and the model's recipe, checked, and
    --dropout / --drop-path / --cifar-stem / --head-hidden / --pretrained turned into model arguments."""
    cfg._check_fields(ranges=False)  # the recipe lookups below need a model name of the right type
    for step in (apply_recipe, _fill_unset_choices, _apply_model_recipe, _normalize):
        cfg = step(cfg)
    validate(cfg)
    return _with_model_arguments(cfg)


def _fill_unset_choices(cfg: TrainConfig) -> TrainConfig:
    """augment and tta that neither the user nor the recipe set: none."""
    return dataclasses.replace(cfg, augment=cfg.augment or "none", tta=cfg.tta or "none")


def _apply_model_recipe(cfg: TrainConfig) -> TrainConfig:
    """The recipe fields still unset, from the model's default recipe (`cifarlab models --recipes`)."""
    recipe = get_recipe(cfg.model).as_dict()
    return dataclasses.replace(cfg, **{name: recipe[name] if getattr(cfg, name) is None else getattr(cfg, name)
                                       for name in RECIPE_FIELDS})


def _normalize(cfg: TrainConfig) -> TrainConfig:
    """Values written more than one way, in the one form the run records (--classes as a list)."""
    return dataclasses.replace(cfg, classes=class_list(cfg.classes))


def _with_model_arguments(cfg: TrainConfig) -> TrainConfig:
    kwargs = dict(cfg.model_kwargs)
    if cfg.dropout is not None:
        kwargs[model_kwarg_name(cfg.model, "dropout")] = cfg.dropout
    if cfg.drop_path is not None:
        kwargs[model_kwarg_name(cfg.model, "drop_path")] = cfg.drop_path
    if cfg.cifar_stem:
        if ":" not in cfg.model:
            raise CifarlabError(f"--cifar-stem adapts tv:NAME and timm:NAME models; {cfg.model} is built for "
                                "32x32 images already")
        kwargs["cifar_stem"] = True
    if cfg.head_hidden is not None:
        if ":" not in cfg.model:
            raise CifarlabError(f"--head-hidden replaces the head of tv:NAME and timm:NAME models, not {cfg.model}")
        kwargs["head_hidden"] = cfg.head_hidden
    if cfg.pretrained:
        kwargs.update(pretrained_model_kwargs(cfg.model))
    return dataclasses.replace(cfg, model_kwargs=kwargs)


def validate(cfg: TrainConfig) -> None:
    """cfg.validate() (each field alone, and the combinations config.py can judge) and the checks against
    the registries: model arguments, the augmentation spec, the transfer-learning settings together."""
    cfg.validate()
    check_model_kwargs(cfg.model, cfg.model_kwargs)
    parse_augment_spec(cfg.augment)
    check_transfer(cfg)


def check_model_builds(model: str, kwargs: dict[str, Any]) -> None:
    """Build a registered model with `kwargs` once, so that a bad value (an unknown activation, a momentum
    over 1) fails before any work. torchvision and timm models are left to their builders at training time:
    building one here could fetch pretrained weights. A constructor's TypeError or ValueError becomes a
    one-line CifarlabError naming the model."""
    if ":" not in model:
        from ..models import create_model

        try:
            create_model(model, **kwargs)
        except (TypeError, ValueError) as e:
            raise CifarlabError(f"model_kwargs for {model}: {str(e).splitlines()[0]}") from None


def check_model_kwargs(model: str, kwargs: Any) -> None:
    """model_kwargs must be arguments of the model's factory (or of the class it returns, when the factory
    passes **kwargs on); torchvision and timm models take any: their builders check them."""
    if not isinstance(kwargs, dict) or not kwargs:
        return
    if "num_classes" in kwargs:
        raise CifarlabError("model_kwargs: num_classes is set from the data's classes (use --classes)")
    takes = model_arguments(model)
    unknown = sorted(set(kwargs) - set(takes)) if takes is not None else []
    if unknown:
        raise CifarlabError(f"model_kwargs: model {model} has no argument {', '.join(unknown)} "
                            f"(it takes: {', '.join(takes) or 'none'})")
