"""Model facts for choosing and teaching: parameters, forward FLOPs per image, description, recipe.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` on one 3×32×32 image (eval mode, no
grad): convolutions and matrix products only, a multiply-add counted as 2 FLOPs. Papers often quote
multiply-adds ("MACs") as FLOPs, which are half of these numbers; BN, activations and pooling are not
counted. Nothing is cached.
"""
from __future__ import annotations

import re

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..errors import CifarlabError
from ._registry import create_model, get_model_entry, is_model, list_models


def describe_model(name: str, **kwargs) -> dict:
    """{name, params, mflops, description, recipe} of model `name` built with `kwargs`."""
    entry = get_model_entry(name)
    model = create_model(name, **kwargs).eval()
    params = sum(p.numel() for p in model.parameters())
    input_size = tuple(getattr(model, "default_cfg", {}).get("input_size", (3, 32, 32)))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_size))
    return {
        "name": name,
        "params": int(params),
        "mflops": round(counter.get_total_flops() / 1e6, 2),
        "description": entry.description,
        "recipe": entry.recipe.as_dict(),
    }


def describe_models(names: str | list[str] | None = None) -> list[dict]:
    """describe_model for each name: a list of names, one glob pattern ('resnet*', or one exact name such as
    'resnet20' or 'tv:resnet18'), or None for every registered model, in registration order."""
    if isinstance(names, str):
        names = _matching(names)
    return [describe_model(n) for n in (list_models() if names is None else names)]


def _matching(pattern: str) -> list[str]:
    names = list_models(pattern)
    if not names and is_model(pattern):  # tv:NAME / timm:NAME are not listed, but can be described
        names = [pattern]
    if not names:
        raise CifarlabError(f"no model matches {pattern!r} (cifarlab models lists them; tv:NAME and timm:NAME "
                            "name torchvision and timm models)")
    return names


def model_summary(name: str, depth: int = 3, **kwargs) -> str:
    """A Keras-style `model.summary()` of one model: each layer with its output shape and parameters,
    for a batch of one image at the model's input size (torchinfo)."""
    from torchinfo import summary

    model = create_model(name, **kwargs).eval()
    input_size = tuple(getattr(model, "default_cfg", {}).get("input_size", (3, 32, 32)))
    stats = summary(model, input_size=(1, *input_size), depth=depth, verbose=0,
                    col_names=("output_size", "num_params"), row_settings=("var_names",))
    # torchinfo 1.8 prints its unit enum on Python >= 3.11 ("Total mult-adds (Units.MEGABYTES)"): say "M".
    text = re.sub(r"\(Units\.([A-Z])[A-Z]*\)", r"(\1)", str(stats))
    return text + "\n(one mult-add is 2 FLOPs in the MFLOPs column of `cifarlab models`)"
