"""Model facts for choosing and teaching: parameters, forward FLOPs per image, description, recipe.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` on one 3×32×32 image (eval mode, no
grad): convolutions and matrix products only, a multiply-add counted as 2 FLOPs. Papers often quote
multiply-adds ("MACs") as FLOPs, which are half of these numbers; BN, activations and pooling are not
counted. The counts of registered models are cached (`$CIFARLAB_CACHE/model_facts.json`, JSON numbers
keyed by the model's name and the size and time of its source file), so `cifarlab models` builds each
model once, not on every call.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import re
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from .._io import read_text_bounded, write_json_atomic
from ..data.cache import cache_root
from ..errors import CifarlabError
from ._registry import create_model, get_model_entry, is_model, list_models


def describe_model(name: str, **kwargs) -> dict:
    """{name, params, mflops, description, recipe} of model `name` built with `kwargs`."""
    entry = get_model_entry(name)
    key = None if kwargs else _facts_key(name, entry)
    facts = _cached_facts().get(key) if key else None
    if not (isinstance(facts, dict) and all(isinstance(facts.get(k), (int, float)) for k in ("params", "mflops"))):
        facts = _count(name, **kwargs)
        if key:
            _store_facts(key, facts)
    return {"name": name, "params": int(facts["params"]), "mflops": facts["mflops"],
            "description": entry.description, "recipe": entry.recipe.as_dict()}


def _count(name: str, **kwargs) -> dict:
    model = create_model(name, **kwargs).eval()
    params = sum(p.numel() for p in model.parameters())
    input_size = tuple(getattr(model, "default_cfg", {}).get("input_size", (3, 32, 32)))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_size))
    return {"params": int(params), "mflops": round(counter.get_total_flops() / 1e6, 2)}


def _facts_key(name: str, entry) -> str | None:
    """The cache key of a registered model: its name and its source file's size and mtime (an edit recounts)."""
    try:
        source = Path(inspect.getsourcefile(entry.factory) or "")
        stat = source.stat()
    except (TypeError, OSError):
        return None  # tv:/timm: resolvers and models without a source file: counted every time
    return f"{name}|{source.name}|{stat.st_size}|{stat.st_mtime_ns}|torch {torch.__version__}"


def _facts_file() -> Path:
    return cache_root() / "model_facts.json"


def _cached_facts() -> dict:
    try:
        facts = json.loads(read_text_bounded(_facts_file()))
    except (OSError, ValueError, CifarlabError):  # missing, damaged or not a regular file: counted again
        return {}
    return facts if isinstance(facts, dict) else {}


def _store_facts(key: str, facts: dict) -> None:
    with contextlib.suppress(OSError):  # a read-only cache only costs the recount next time
        write_json_atomic(_facts_file(), {**_cached_facts(), key: facts})


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
