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
    fast-record
           fast-progressive with the 2025 speed record's settings as a set (Hiverge's cifar10-speedrun: SiLU,
           its batch-norm and Muon momenta, learning rates per parameter kind, weight decay, label smoothing
           0.09, colour jitter, the unsure TTA) at batch 1000, one epoch at 20x20 and four at 24x24 of 9.
           Measured on a 2-core CPU: 93.92 ± 0.07% (3 seeds) in 0.71x the airbench94 port's time, where
           fast-progressive takes 0.81x for 94.07%: quicker, 0.15 points less accurate.

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
# The 2025 record's settings (github.com/Hiverge/cifar10-speedrun) on the progressive schedule: they were tuned
# as a set and only work as one (docs/history.md: the jitter or the label smoothing alone cost 0.3-0.45 points).
RECIPES.register("fast-record", {
    **_FAST, "epochs": 9, "progressive_resize": "20:1,24:4", "batch_size": 1000, "tta": "flip-translate-unsure",
    "augment": "altflip+translate+color", "lr": 0.205, "momentum": 0.825, "weight_decay": 1.0418e-6,
    "label_smoothing": 0.09,
    "model_kwargs": {"activation": "silu", "bn_momentum": 0.5566, "muon_momentum": 0.655, "whiten_bias_epochs": 0.19,
                     "bias_lr": 0.0573, "head_lr": 0.5415}},
    description="fast-progressive with the 2025 speed record's settings at batch 1000: quicker on CPUs, 93.9%")


def list_recipes() -> list[str]:
    return RECIPES.names()


def recipe_settings(name: str) -> dict[str, Any]:
    """The TrainConfig settings of recipe `name` (a copy), or a one-line error listing the recipes."""
    return dict(RECIPES.get(name))


def apply_recipe(cfg: TrainConfig) -> TrainConfig:
    """cfg with the recipe's settings filled in where cfg still has the dataclass default (None for every
    setting a recipe fills but the model, so that a value the user gave, even "none" or 0, is kept), and the
    recipe's model_kwargs under the user's; cfg itself when it names no recipe."""
    if not cfg.recipe:
        return cfg
    preset = recipe_settings(cfg.recipe)
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    if cfg.model not in (defaults["model"], preset["model"]):
        raise CifarlabError(f"--recipe {cfg.recipe} trains the {preset['model']} model; drop --model {cfg.model} "
                            "(or drop --recipe and set the flags yourself)")
    updates = {k: v for k, v in preset.items() if k == "model" or getattr(cfg, k) == defaults[k]}
    if "model_kwargs" in preset:  # merged: the model arguments the user gives win, one by one
        updates["model_kwargs"] = {**preset["model_kwargs"], **cfg.model_kwargs}
    return dataclasses.replace(cfg, **updates)
