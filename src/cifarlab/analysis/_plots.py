"""Plotting helpers shared by the analyses: figures on matplotlib's Agg canvas (no pyplot, so no global
backend switch and no figures left open), one save function, and thumbnail grids with nearest-neighbour
enlargement so the 32x32 pixels stay visible."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 120
THUMB_SCALE = 4  # 32x32 -> 128x128 pixels, each source pixel a 4x4 block


def new_figure(width: float, height: float, constrained: bool = True) -> Figure:
    """A figure (inches) drawn by the Agg backend; constrained layout keeps titles and labels apart."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Write `fig` as a PNG and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def enlarge(image: np.ndarray, scale: int = THUMB_SCALE) -> np.ndarray:
    """Nearest-neighbour upscaling of an (H, W, 3) image: every pixel becomes a scale x scale block."""
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def show_thumbnail(ax, image: np.ndarray, title: str = "", fontsize: float = 7) -> None:
    ax.imshow(enlarge(image), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def thumbnail_rows(rows: Sequence[tuple[str, np.ndarray, Sequence[str]]], path: Path, title: str,
                   cols: int) -> Path:
    """One row per (row label, images, titles); at most `cols` thumbnails per row."""
    n_rows = max(1, len(rows))
    height = 1.6 * n_rows + 0.6
    fig = new_figure(1.35 * cols + (1.2 if any(r[0] for r in rows) else 0), height, constrained=False)
    axes = fig.subplots(n_rows, cols, squeeze=False, gridspec_kw={"top": 1 - 0.6 / height, "bottom": 0.02,
                                                                   "hspace": 0.45, "wspace": 0.1})
    for r, (label, images, titles) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            if c < len(images):
                show_thumbnail(ax, images[c], titles[c])
            else:
                ax.axis("off")
        if label:
            axes[r][0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center", labelpad=8)
    if not rows:
        for ax in axes[0]:
            ax.axis("off")
        fig.text(0.5, 0.5, "nothing to show", ha="center", va="center")
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def thumbnail_grid(images: np.ndarray, titles: Sequence[str], path: Path, title: str, cols: int = 8) -> Path:
    """Thumbnails in reading order, `cols` per row, each with its own title."""
    rows = [("", images[i:i + cols], titles[i:i + cols]) for i in range(0, len(images), cols)]
    return thumbnail_rows(rows, path, title, cols)
