"""Feature visualization: what a trained network computes inside.

- `feature_maps(run, image, layers)`: the maps of chosen layers (default: the stages) for one image.
- `first_layer_filters(run)`: the first conv layer's weights as an image grid.
- `top_activating_images(model, images, layer, channel, k)`: the images that excite one channel most.
- `embed(run, method)`: penultimate-layer features of the test split in 2-D (PCA, t-SNE, UMAP).

`run` is a run directory or an nn.Module following the cifarlab model contract; layer names are dotted
module names (see `layers.suggested_layers`).
"""
from .embedding import Embedding, embed, penultimate_features, project
from .layers import capture_outputs, hook_guard, resolve_layer, suggested_layers
from .maps import (
    FeatureMaps,
    channel_top_images,
    feature_maps,
    first_layer_filters,
    layer_activations,
    top_activating_images,
)

__all__ = [
    "Embedding", "FeatureMaps", "capture_outputs", "channel_top_images", "embed", "feature_maps",
    "first_layer_filters", "hook_guard", "layer_activations", "penultimate_features", "project",
    "resolve_layer", "suggested_layers", "top_activating_images",
]
