"""Transfer learning: pretrained and cifarlab starting weights, freezing and gradual unfreezing,
discriminative learning rates, input upsampling, and the cached-feature probes of frozen backbones.

The names load lazily, so that the CLI can read `transfer.options` (no torch) while it builds its parser."""
from importlib import import_module

_EXPORTS = {
    "Freezer": "freeze", "transfer_param_groups": "freeze",
    "ProbeResult": "probe", "linear_probe": "probe", "ZeroShotResult": "zeroshot", "zero_shot": "zeroshot",
    "apply_preprocessing": "setup", "prepare_model": "setup",
    "LoadReport": "weights", "init_from": "weights", "load_matching": "weights", "read_state_file": "weights",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
