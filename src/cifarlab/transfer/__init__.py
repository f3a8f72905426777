"""Transfer learning: the cached-feature linear probes of frozen backbones and the zero-shot ImageNet head.

Starting weights, their preprocessing, freezing and discriminative learning rates prepare a model for
training and live below it, in `cifarlab.pretrained`; their names are re-exported here. Everything loads
lazily, so importing this package imports no torch."""
from importlib import import_module

_EXPORTS = {
    "Freezer": "..pretrained.freeze", "transfer_param_groups": "..pretrained.freeze",
    "ProbeResult": ".probe", "linear_probe": ".probe", "ZeroShotResult": ".zeroshot", "zero_shot": ".zeroshot",
    "apply_preprocessing": "..pretrained.setup", "prepare_model": "..pretrained.setup",
    "LoadReport": "..pretrained.weights", "init_from": "..pretrained.weights",
    "load_matching": "..pretrained.weights", "read_state_file": "..pretrained.weights",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
