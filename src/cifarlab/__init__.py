"""cifarlab: learn, run and understand image classification on CIFAR-10.

The Python API mirrors the command line: every `cifarlab COMMAND` is a function here. Heavy modules
(torch) load on first use, so `import cifarlab` and `cifarlab --help` stay fast.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "train": "cifarlab.training",
    "TrainResult": "cifarlab.training",
    "TrainConfig": "cifarlab.config",
    "create_model": "cifarlab.models",
    "list_models": "cifarlab.models",
    "register_model": "cifarlab.models",
    "load_data": "cifarlab.data",
    "evaluate": "cifarlab.api",
    "predict": "cifarlab.api",
    "load_run": "cifarlab.api",
    "Run": "cifarlab.rundir.run",
    "export": "cifarlab.deploy",
    "compare": "cifarlab.experiments",
    "ablate": "cifarlab.experiments",
    "tune": "cifarlab.tuning",
    "lr_find": "cifarlab.training",
    "create_augment": "cifarlab.augment",
    "list_augments": "cifarlab.augment",
    "augment_preview": "cifarlab.augment",
    "analyze": "cifarlab.analysis",
    "CifarlabError": "cifarlab.errors",
    "explain": "cifarlab.attribution",
    "explain_gallery": "cifarlab.attribution",
    "evaluate_explanations": "cifarlab.attribution",
    "create_explainer": "cifarlab.attribution",
    "list_explainers": "cifarlab.attribution",
    "feature_maps": "cifarlab.features",
    "first_layer_filters": "cifarlab.features",
    "top_activating_images": "cifarlab.features",
    "embed": "cifarlab.features",
    "linear_probe": "cifarlab.transfer",
    "zero_shot": "cifarlab.transfer",
    "report": "cifarlab.reporting",
    "run": "cifarlab.pipeline",
    "serve": "cifarlab.webapp",
    "set_threads": "cifarlab._threads",
    "create_app": "cifarlab.webapp",
}

__all__ = sorted(_LAZY)


def __dir__() -> list[str]:  # so that `cifarlab.<TAB>` completes the lazy names too
    return sorted({*globals(), *_LAZY})


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cifarlab' has no attribute {name!r}")
