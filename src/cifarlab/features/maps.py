"""What a trained network computes inside: feature maps of chosen layers for one image, the first conv
layer's filters, and the images of a dataset that excite one channel most."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..errors import CifarlabError
from ..models._modes import eval_mode
from . import plots
from .inputs import ImageLike, RunLike, load, load_images, normalize, run_test_split, safe_name
from .layers import capture_outputs, model_cfg, resolve_layer, stage_names, to_spatial, token_layout

MAX_CHANNELS_SHOWN = 64
MOST_ACTIVE_SHOWN = 8  # a layer at a glance (the report shows these first; the full grid is a click away)
MOST_ACTIVE_PREFIX = "most_active_"


@dataclass
class FeatureMaps:
    """Per layer: the (C, H, W) maps of one image, channel ids in the same order, and the figures."""

    image: np.ndarray
    maps: dict[str, np.ndarray]
    channels: dict[str, list[int]]
    figures: dict[str, Path] = field(default_factory=dict)


def parse_layers(layers: str | list[str] | None, model: nn.Module) -> list[str]:
    names = [s.strip() for s in layers.split(",") if s.strip()] if isinstance(layers, str) else list(layers or [])
    names = names or stage_names(model)
    if not names:
        raise CifarlabError(f"{type(model).__name__} lists no stages in default_cfg; pass layers explicitly")
    for n in names:
        resolve_layer(model, n)
    return names


@torch.no_grad()
def raw_activations(model: nn.Module, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """The named layers' outputs for normalized inputs x, as the layers return them."""
    with capture_outputs(model, layers) as outputs:
        model(x)
    missing = [n for n in layers if n not in outputs]
    if missing:
        raise CifarlabError(f"layer(s) {', '.join(missing)} produced no tensor output in the forward pass")
    return dict(outputs)


def layer_activations(model: nn.Module, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """(N, C, H, W) outputs of the named layers for normalized inputs x (tokens reshaped to their grid)."""
    layout = token_layout(model)
    return {n: to_spatial(t, layout, n) for n, t in raw_activations(model, x, layers).items()}


def feature_maps(run: RunLike, image: ImageLike, layers: str | list[str] | None = None, *,
                 top_k_channels: int | None = None, out: str | Path | None = None, filters: bool = True,
                 device: str = "auto") -> FeatureMaps:
    """Feature maps of `layers` (default: every stage in default_cfg) for one image.

    With `top_k_channels`, only the K channels with the largest mean activation are kept, most active
    first. With `out`, writes features_<layer>.png per layer (input beside the maps), most_active_<layer>.png
    with its 8 most active channels (by mean activation) where it has more, and, unless filters=False,
    first_layer_filters.png.
    """
    if top_k_channels is not None and top_k_channels < 1:
        raise CifarlabError(f"--top-k-channels must be >= 1, got {top_k_channels}")
    loaded = load(run, device)
    model = loaded.model
    names = parse_layers(layers, model)
    img = load_images(image)
    if len(img) != 1:
        raise CifarlabError(f"feature maps are drawn for one image, got {len(img)}")
    raw = raw_activations(model, normalize(model, img, loaded.device), names)
    layout = token_layout(model)
    acts = {n: to_spatial(t, layout, n) for n, t in raw.items()}
    result = FeatureMaps(img[0], {}, {})
    for n in names:
        a = acts[n][0].float().cpu()
        if top_k_channels is not None:
            order = a.mean(dim=(1, 2)).argsort(descending=True)[:top_k_channels].tolist()
        else:
            order = list(range(a.shape[0]))
        result.maps[n] = a[order].numpy()
        result.channels[n] = order
    if out is not None:
        out = Path(out)
        for n in names:
            shown = result.channels[n][:MAX_CHANNELS_SHOWN]
            notes = [f"top {len(shown)} by mean activation" if top_k_channels is not None
                     else (f"first {len(shown)}" if len(shown) < len(result.channels[n]) else ""),
                     "patch tokens on their grid" if raw[n].ndim == 3 else ""]
            result.figures[n] = plots.feature_map_figure(img[0], result.maps[n][:len(shown)], shown, n,
                                                         out / f"features_{safe_name(n)}.png",
                                                         ", ".join(x for x in notes if x))
            if len(result.channels[n]) > MOST_ACTIVE_SHOWN:
                result.figures[f"{n} (most active)"] = _most_active_figure(
                    img[0], result, n, raw[n].ndim == 3, out / f"{MOST_ACTIVE_PREFIX}{safe_name(n)}.png")
        if filters:
            result.figures["first_layer_filters"] = first_layer_filters(loaded, out=out)[1]
    return result


def _most_active_figure(image: np.ndarray, result: FeatureMaps, layer: str, tokens: bool, path: Path) -> Path:
    """The layer's MOST_ACTIVE_SHOWN channels with the largest mean activation, most active first."""
    maps = result.maps[layer]
    top = np.argsort(-maps.mean(axis=(1, 2)), kind="stable")[:MOST_ACTIVE_SHOWN]
    note = f"the {len(top)} most active by mean activation" + (", patch tokens on their grid" if tokens else "")
    return plots.feature_map_figure(image, maps[top], [result.channels[layer][i] for i in top], layer, path, note)


def first_layer_filters(run: RunLike, *, out: str | Path | None = None,
                        device: str = "auto") -> tuple[np.ndarray, Path | None]:
    """The weights (O, I, kh, kw) of default_cfg["first_conv"], and first_layer_filters.png under `out`."""
    loaded = load(run, device)  # a Run as it is
    name = model_cfg(loaded.model).get("first_conv")
    conv = resolve_layer(loaded.model, name) if name else None
    if not isinstance(conv, nn.Conv2d):
        conv = next((m for m in loaded.model.modules() if isinstance(m, nn.Conv2d)), None)
        name = next((n for n, m in loaded.model.named_modules() if m is conv), None)
    if conv is None:
        raise CifarlabError(f"{loaded.architecture} has no Conv2d layer whose filters could be drawn")
    w = conv.weight.detach().float().cpu().numpy()
    path = None
    if out is not None:
        o, i, kh, kw = w.shape
        path = plots.filters_figure(w, Path(out) / "first_layer_filters.png",
                                    f"{loaded.architecture} {name}: {o} filters {i}x{kh}x{kw}")
    return w, path


@torch.no_grad()
def top_activating_images(model: nn.Module, images: np.ndarray, layer: str, channel: int, k: int = 9, *,
                          batch_size: int = 256, reduce: str = "mean",
                          device: torch.device | str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k images (of uint8 (N, H, W, 3)) whose `layer` channel `channel` responds most.

    Returns (indices into images, their scores, their (k, h, w) activation maps of that channel); the
    score is the channel's mean (reduce="mean") or max (reduce="max") over positions.
    """
    if reduce not in ("mean", "max"):
        raise CifarlabError(f"reduce must be mean or max, got {reduce!r}")
    if k < 1:
        raise CifarlabError(f"k must be >= 1, got {k}")
    resolve_layer(model, layer)
    device = device or next(model.parameters()).device
    scores, maps = [], []
    with eval_mode(model):
        for i in range(0, len(images), batch_size):
            a = layer_activations(model, normalize(model, images[i:i + batch_size], device), [layer])[layer]
            if not 0 <= channel < a.shape[1]:
                raise CifarlabError(f"channel {channel} out of range: {layer} has {a.shape[1]} channels "
                                    f"(0-{a.shape[1] - 1})")
            c = a[:, channel].float().cpu()
            scores.append(c.mean(dim=(1, 2)) if reduce == "mean" else c.amax(dim=(1, 2)))
            maps.append(c)
    if not scores:
        raise CifarlabError("no images to search")
    s, m = torch.cat(scores), torch.cat(maps)
    top = s.argsort(descending=True)[:k]
    return top.numpy(), s[top].numpy(), m[top].numpy()


def parse_channel_spec(spec: str) -> tuple[str, int]:
    layer, sep, ch = spec.rpartition(":")
    if not sep or not layer or not ch.strip().lstrip("-").isdigit():
        raise CifarlabError(f"--channel-top-images wants LAYER:CHANNEL (e.g. layer3:12), got {spec!r}")
    return layer.strip(), int(ch)


def channel_top_images(run: RunLike, layer: str, channel: int, k: int = 16, *, out: str | Path | None = None,
                       data: str | Path | None = None, images: np.ndarray | None = None,
                       device: str = "auto") -> dict:
    """Top-k test images (the run's test split, or `images`) for one channel, and a figure under `out`."""
    loaded = load(run, device)
    labels = None
    if images is None:
        test = run_test_split(loaded, data)
        images, labels = test.images, test.labels
    idx, scores, acts = top_activating_images(loaded.model, images, layer, channel, k, device=loaded.device)
    captions = [loaded.classes[labels[i]] if labels is not None else f"#{i}" for i in idx]
    result = {"layer": layer, "channel": channel, "indices": idx.tolist(), "scores": scores.tolist(),
              "classes": captions, "figure": None}
    if out is not None:
        result["figure"] = plots.top_images_figure(
            images[idx], acts, scores, captions, Path(out) / f"channel_top_{safe_name(layer)}_{channel}.png",
            f"{loaded.architecture} {layer} channel {channel}: top {len(idx)} images by mean activation")
    return result
