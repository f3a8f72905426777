"""Figures for feature maps, filters, top-activating images and embeddings (matplotlib, no pyplot state:
each figure is a `matplotlib.figure.Figure` saved to a PNG and dropped)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._io import save_figure_atomic

SCALE = 4  # 32x32 images are drawn at 128x128


def enlarge(image: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """Nearest-neighbour upsampling of an (H, W[, C]) array: each pixel becomes a scale x scale block."""
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def resize_map(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map (a heat map, an activation map) to `size`."""
    if m.shape == tuple(size):
        return m
    t = torch.as_tensor(np.asarray(m, np.float32))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def unit(m: np.ndarray) -> np.ndarray:
    """Scale a map to [0, 1] (a constant map becomes all zeros)."""
    m = np.asarray(m, np.float32)
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def new_figure(rows: int, cols: int, cell: float = 1.7, extra_w: float = 0.0, extra_h: float = 0.4):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(cols * cell + extra_w, rows * cell + extra_h), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def save(fig, path: str | Path) -> Path:
    """Write `fig` as a PNG (atomically, replacing a link at `path` rather than its target)."""
    return save_figure_atomic(fig, path, dpi=100, bbox_inches="tight")


def grid_shape(n: int, max_cols: int = 8) -> tuple[int, int]:
    cols = min(max_cols, max(1, math.ceil(math.sqrt(n))))
    return max(1, math.ceil(n / cols)), cols


def feature_map_figure(image: np.ndarray, maps: np.ndarray, channels: list[int], layer: str, path: str | Path,
                       note: str = "") -> Path:
    """The input (left, 2x2 cells) beside a grid of one layer's channel maps, each scaled to its own range."""
    rows, cols = grid_shape(len(channels))
    from matplotlib.figure import Figure
    from matplotlib.gridspec import GridSpec

    cell = 1.2
    fig = Figure(figsize=((cols + 3) * cell, max(rows, 3) * cell + 0.6), layout="constrained")
    gs = GridSpec(max(rows, 3), cols + 3, figure=fig)
    ax = fig.add_subplot(gs[0:3, 0:3])
    ax.imshow(enlarge(image), interpolation="nearest")
    ax.set_title("input", fontsize=10)
    ax.axis("off")
    for i, (ch, m) in enumerate(zip(channels, maps)):
        a = fig.add_subplot(gs[i // cols, 3 + i % cols])
        a.imshow(m, cmap="viridis", interpolation="nearest")
        a.set_title(f"ch {ch}", fontsize=7)
        a.axis("off")
    h, w = maps.shape[-2:] if len(maps) else (0, 0)
    fig.suptitle(f"{layer}: {len(channels)} channels, {h}x{w}" + (f" ({note})" if note else ""), fontsize=11)
    return save(fig, path)


def filters_figure(weights: np.ndarray, path: str | Path, title: str) -> Path:
    """First-layer filters (O, I, kh, kw): RGB when I == 3 (each filter scaled to [0, 1]), else the mean."""
    n = len(weights)
    rows, cols = grid_shape(n, max_cols=16)
    fig, axes = new_figure(rows, cols, cell=0.6, extra_h=0.5)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        w = weights[i]
        img = unit(w.transpose(1, 2, 0)) if w.shape[0] == 3 else unit(w.mean(0))
        ax.imshow(enlarge(img, 8), cmap=None if img.ndim == 3 else "gray", interpolation="nearest")
    fig.suptitle(title, fontsize=11)
    return save(fig, path)


def top_images_figure(images: np.ndarray, acts: np.ndarray, scores: np.ndarray, captions: list[str],
                      path: str | Path, title: str) -> Path:
    """Each image (top row) above its activation map of the channel, overlaid (bottom row)."""
    import matplotlib

    k = len(images)
    fig, axes = new_figure(2, max(k, 1), cell=1.5, extra_h=0.7)
    cmap = matplotlib.colormaps["viridis"]
    for i in range(k):
        big = enlarge(images[i]).astype(np.float32) / 255
        axes[0, i].imshow(enlarge(images[i]), interpolation="nearest")
        axes[0, i].set_title(f"{captions[i]}\n{scores[i]:.3g}", fontsize=7)
        heat = unit(resize_map(acts[i], big.shape[:2]))
        axes[1, i].imshow(0.45 * big + 0.55 * cmap(heat)[..., :3], interpolation="nearest")
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    return save(fig, path)


def embedding_figure(coords: np.ndarray, labels: np.ndarray, preds: np.ndarray, classes: list[str],
                     path: str | Path, title: str) -> Path:
    """2-D points coloured by true class with a legend; misclassified points get a black x on top."""
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 7), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    size = 14 if len(coords) <= 2000 else 6
    for c, name in enumerate(classes):
        sel = labels == c
        if sel.any():
            ax.scatter(coords[sel, 0], coords[sel, 1], s=size, color=cmap(c % cmap.N), label=name, alpha=0.75,
                       linewidths=0)
    wrong = labels != preds
    if wrong.any():
        ax.scatter(coords[wrong, 0], coords[wrong, 1], s=size * 1.3, marker="x", color="black", linewidths=0.7,
                   label=f"misclassified ({int(wrong.sum())})")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, markerscale=1.5, frameon=False)
    ax.set_title(title, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    return save(fig, path)
