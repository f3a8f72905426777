"""Named recipes (`cifarlab train --recipe NAME`): presets of TrainConfig settings that go beyond one
model's default recipe (the augmentation, the test-time augmentation, the data split).

    fast   airbench94 (Keller Jordan 2024, arXiv:2404.00498, and its Muon follow-up): the `airbench` model
           and its recipe (Muon + Nesterov SGD, batch 2000, 8 epochs, label smoothing 0.2, linear decay),
           alternating flip + 2-pixel translation, flip + translate TTA, and all 50,000 training images
           (no validation split: the hyperparameters are the paper's, not tuned here).
    fast-progressive
           fast with progressive resizing, for CPUs: the first 4 of 9 epochs on 24x24 images (0.56x the
           arithmetic), the rest at full size. Measured on a 2-core CPU (BENCHMARKS.md): as
           accurate as fast (94.07% vs 94.04%, 3 seeds) in 6% less time; not measured on a GPU.

A setting the user gives (flag, YAML or API) wins over the recipe's, even `--tta none`; only settings
left out are filled in. No torch import here, so the CLI can list the names cheaply.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from .errors import CifarlabError
from .registry import Registry

if TYPE_CHECKING:
    from .config import TrainConfig

# Each entry's target is its dict of TrainConfig settings.
RECIPES = Registry("recipe", flag="--recipe")
_FAST = {"model": "airbench", "augment": "altflip+translate", "tta": "flip-translate", "val_size": 0}
RECIPES.register("fast", _FAST, description="airbench94: the airbench model, Muon, 8 epochs, flip-translate TTA")
RECIPES.register("fast-progressive", {**_FAST, "epochs": 9, "progressive_resize": "24:4"},
                 description="fast with progressive resizing (24x24 for 4 of 9 epochs), for CPUs")


def list_recipes() -> list[str]:
    return RECIPES.names()


def recipe_settings(name: str) -> dict[str, Any]:
    """The TrainConfig settings of recipe `name` (a copy), or a one-line error listing the recipes."""
    return dict(RECIPES.get(name))


def apply_recipe(cfg: TrainConfig) -> TrainConfig:
    """cfg with the recipe's settings filled in where cfg still has the dataclass default (None for every
    setting a recipe fills but the model, so that a value the user gave, even "none" or 0, is kept); cfg
    itself when it names no recipe."""
    if not cfg.recipe:
        return cfg
    preset = recipe_settings(cfg.recipe)
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    if cfg.model not in (defaults["model"], preset["model"]):
        raise CifarlabError(f"--recipe {cfg.recipe} trains the {preset['model']} model; drop --model {cfg.model} "
                            "(or drop --recipe and set the flags yourself)")
    return dataclasses.replace(cfg, **{k: v for k, v in preset.items()
                                       if k == "model" or getattr(cfg, k) == defaults[k]})
