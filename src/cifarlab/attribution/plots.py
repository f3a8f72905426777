"""Figures for attribution maps: input, heat map and overlay per method and class, and galleries."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..features.plots import enlarge, new_figure, resize_map, save, unit

HEAT_CMAP, SIGNED_CMAP = "jet", "bwr"


def _big(m: np.ndarray, image_big: np.ndarray) -> np.ndarray:
    return resize_map(m, image_big.shape[:2])


def heat_image(m: np.ndarray, image_big: np.ndarray, signed: bool):
    """(array, imshow kwargs) for a heat map panel: signed maps on a diverging scale centred at 0."""
    big = _big(m, image_big)
    if signed:
        lim = float(np.abs(big).max()) or 1.0
        return big, {"cmap": SIGNED_CMAP, "vmin": -lim, "vmax": lim}
    return unit(big), {"cmap": HEAT_CMAP, "vmin": 0.0, "vmax": 1.0}


def overlay(m: np.ndarray, image_big: np.ndarray, signed: bool) -> np.ndarray:
    """The image with the (positive part of the) map blended on top, stronger where the map is larger."""
    import matplotlib

    big = _big(m, image_big)
    heat = unit(np.clip(big, 0, None)) if signed else unit(big)
    rgb = matplotlib.colormaps[HEAT_CMAP](heat)[..., :3]
    alpha = 0.6 * heat[..., None]
    img = image_big.astype(np.float32) / 255
    return np.clip(img * (1 - alpha) + rgb * alpha, 0, 1)


def explanation_figure(image: np.ndarray, rows: list[tuple[str, dict[str, np.ndarray]]], signed: dict[str, bool],
                       path: str | Path, title: str) -> Path:
    """One method: a row per class with input | heat map | overlay. Several: the methods side by side, a
    heat-map row and an overlay row per class, the input first in each row."""
    img_big = enlarge(image)
    methods = list(rows[0][1]) if rows else []
    if len(methods) == 1:
        (m,) = methods
        fig, axes = new_figure(len(rows), 3, cell=2.0, extra_h=0.6)
        for r, (label, maps) in enumerate(rows):
            axes[r, 0].imshow(img_big, interpolation="nearest")
            axes[r, 0].set_ylabel(label, fontsize=9)
            arr, kw = heat_image(maps[m], img_big, signed[m])
            axes[r, 1].imshow(arr, interpolation="bilinear", **kw)
            axes[r, 2].imshow(overlay(maps[m], img_big, signed[m]), interpolation="nearest")
        for c, name in enumerate(("input", f"{m} heat map", "overlay")):
            axes[0, c].set_title(name, fontsize=10)
    else:
        fig, axes = new_figure(2 * len(rows), 1 + len(methods), cell=1.8, extra_h=0.6)
        for r, (label, maps) in enumerate(rows):
            for k, kind in enumerate(("heat map", "overlay")):
                row = axes[2 * r + k]
                row[0].imshow(img_big, interpolation="nearest")
                row[0].set_ylabel(f"{kind}\n{label}", fontsize=8)
                for c, m in enumerate(methods, start=1):
                    if kind == "heat map":
                        arr, kw = heat_image(maps[m], img_big, signed[m])
                        row[c].imshow(arr, interpolation="bilinear", **kw)
                    else:
                        row[c].imshow(overlay(maps[m], img_big, signed[m]), interpolation="nearest")
        for c, name in enumerate(["input", *methods]):
            axes[0, c].set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=11)
    return save(fig, path)


def gallery_figure(images: np.ndarray, captions: list[str], mistakes: list[bool], maps: dict[str, np.ndarray],
                   signed: dict[str, bool], path: str | Path, title: str) -> Path:
    """A row per image: the input (caption red for a mistake), then each method's overlay."""
    methods = list(maps)
    fig, axes = new_figure(len(images), 1 + len(methods), cell=1.6, extra_h=0.6)
    for i, img in enumerate(images):
        big = enlarge(img)
        axes[i, 0].imshow(big, interpolation="nearest")
        axes[i, 0].set_ylabel(captions[i], fontsize=7, color="red" if mistakes[i] else "black")
        for c, m in enumerate(methods, start=1):
            axes[i, c].imshow(overlay(maps[m][i], big, signed[m]), interpolation="nearest")
    for c, name in enumerate(["input", *methods]):
        axes[0, c].set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=11)
    return save(fig, path)
