"""Explanations of single predictions, computed by Captum, and checks of how far they can be trusted.

- `explain(run, image, method)`: heat maps for one image (top prediction and an optional target).
- `explain_gallery(run, samples_per_class=N, mistakes=True)`: many images in one figure.
- `evaluate_explanations(run, n)`: deletion/insertion AUC and the model-randomization check per method.
- `create_explainer(name, model, layer)` / `list_explainers()`: the method registry (use in a `with`).

(Named `attribution`, not `explain`, so that `cifarlab.explain` stays the function.) Loaded lazily: the
CLI reads the registry without importing torch.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "EXPLAINERS": "methods", "Explainer": "methods", "MethodOptions": "methods", "create_explainer": "methods",
    "list_explainers": "methods",
    "register_explainer": "methods", "describe_explainers": "methods",
    "Explanation": "api", "Gallery": "api", "explain": "api", "explain_gallery": "api",
    "evaluate_explanations": "api", "attribute": "api", "trust_metrics": "api",
    "perturbation_curves": "trust", "randomized_copy": "trust", "spearman_per_image": "trust",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
