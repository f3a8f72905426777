"""Plotting helpers shared by the analyses: figures on matplotlib's Agg canvas (no pyplot, so no global
backend switch and no figures left open), one save function, and thumbnail grids with nearest-neighbour
enlargement so the 32x32 pixels stay visible."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .._io import save_figure_atomic

DPI = 120
THUMB_SCALE = 4  # 32x32 -> 128x128 pixels, each source pixel a 4x4 block
THUMB_INCHES = 1.75  # room for a title such as "true automobile 0.12" under each thumbnail
# The report shows a wide figure about this many CSS pixels wide (reporting/html.py): the fonts are sized so
# that text is still about 11 px or more on screen once a wide figure is scaled down to it.
SHOWN_WIDTH_PX = 1088
MIN_SHOWN_PX = 11.5


def readable_points(width_inches: float, largest: float = 12.0) -> float:
    """A font size (points) that stays >= MIN_SHOWN_PX on screen when a figure `width_inches` wide is shown
    SHOWN_WIDTH_PX wide (never below 9 pt, the size at 100%; capped at `largest`)."""
    scale = min(1.0, SHOWN_WIDTH_PX / (width_inches * DPI))
    return min(largest, max(9.0, MIN_SHOWN_PX / (scale * DPI / 72)))


def new_figure(width: float, height: float, constrained: bool = True) -> Figure:
    """A figure (inches) drawn by the Agg backend; constrained layout keeps titles and labels apart."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Write `fig` as a PNG and return its path (atomically, replacing a link at `path` rather than its target)."""
    return save_figure_atomic(fig, path, dpi=DPI, bbox_inches="tight")


def enlarge(image: np.ndarray, scale: int = THUMB_SCALE) -> np.ndarray:
    """Nearest-neighbour upscaling of an (H, W, 3) image: every pixel becomes a scale x scale block."""
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def show_thumbnail(ax, image: np.ndarray, title: str = "", fontsize: float = 9) -> None:
    ax.imshow(enlarge(image), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def thumbnail_rows(rows: Sequence[tuple[str, np.ndarray, Sequence[str]]], path: Path, title: str,
                   cols: int) -> Path:
    """One row per (row label, images, titles); at most `cols` thumbnails per row."""
    n_rows = max(1, len(rows))
    labelled = any(r[0] for r in rows)
    width = THUMB_INCHES * cols + (1.6 if labelled else 0)
    points = readable_points(width)
    # a row: the thumbnail (as wide as its column less the gaps) and two lines of title, no more
    height = (0.85 * THUMB_INCHES + 2.6 * points / 72) * n_rows + 0.7
    fig = new_figure(width, height, constrained=False)
    axes = fig.subplots(n_rows, cols, squeeze=False, gridspec_kw={"top": 1 - 0.7 / height, "bottom": 0.02,
                                                                   "hspace": 0.3, "wspace": 0.15})
    for r, (label, images, titles) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            if c < len(images):
                show_thumbnail(ax, images[c], titles[c], points)
            else:
                ax.axis("off")
        if label:
            axes[r][0].set_ylabel(label, fontsize=points, rotation=0, ha="right", va="center", labelpad=8)
    if not rows:
        for ax in axes[0]:
            ax.axis("off")
        fig.text(0.5, 0.5, "nothing to show", ha="center", va="center")
    fig.suptitle(title, fontsize=points + 2)
    return save_figure(fig, path)


def thumbnail_grid(images: np.ndarray, titles: Sequence[str], path: Path, title: str, cols: int = 6) -> Path:
    """Thumbnails in reading order, `cols` per row, each with its own title."""
    rows = [("", images[i:i + cols], titles[i:i + cols]) for i in range(0, len(images), cols)]
    return thumbnail_rows(rows, path, title, cols)
