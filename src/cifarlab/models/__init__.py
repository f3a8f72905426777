"""Model registry and zoo. Importing this package registers every built-in model."""
# Import order is list_models() order: baseline first, then the zoo by year.
# isort: off
from . import baseline  # noqa: F401  (registers the model)
from . import vgg, googlenet, resnet_cifar, preact_resnet, wide_resnet, densenet  # noqa: F401
from . import mobilenetv2, resnet9, vit, airbench, external  # noqa: F401
# isort: on
from ._base import CifarModel
from ._modes import eval_mode
from ._registry import (
    MODELS,
    Recipe,
    create_model,
    get_model_entry,
    get_recipe,
    is_model,
    list_models,
    model_arguments,
    register_model,
    register_prefix,
)

__all__ = [
    "MODELS", "CifarModel", "Recipe", "create_model", "eval_mode", "get_model_entry", "get_recipe", "is_model",
    "list_models",
    "model_arguments", "register_model", "register_prefix",
]
