"""Preparing a model from starting weights, below training: published pretrained weights and the weight
packages (`cifarlab[pretrained]`), cifarlab runs as starting points (`--init-from`), the input
preprocessing those weights expect, freezing and gradual unfreezing, and discriminative learning-rate
groups. train() and lr-find apply it to every run (setup.prepare_model); `cifarlab.transfer` (the linear
probe, zero-shot) builds on it.

A package of its own, not `cifarlab.models.pretrained`: importing `cifarlab.models` builds the model zoo
(torch), and the CLI reads `pretrained.options` (no torch) while it builds its parser. The names below
load lazily for the same reason."""
from importlib import import_module

_EXPORTS = {
    "Freezer": "freeze", "transfer_param_groups": "freeze",
    "apply_preprocessing": "setup", "prepare_model": "setup",
    "LoadReport": "weights", "init_from": "weights", "load_matching": "weights", "load_pretrained": "weights",
    "read_state_file": "weights",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
