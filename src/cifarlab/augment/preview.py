"""`cifarlab augment-preview`: originals and several augmented views of a few training images, as one
PNG grid, enlarged with nearest-neighbour so single pixels stay visible."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .._io import atomic_path
from ..errors import CifarlabError
from ._registry import create_augment


def augment_preview(spec: str, out: str | Path, *, data: str | None = None, n: int = 8, views: int = 5,
                    seed: int = 0, scale: int = 4) -> Path:
    """Write a grid: one row per image, the original in the first column, then `views` augmented views
    (each view is one call of the policy on the n-image batch, with its own seeded generator)."""
    from ..data import load_data

    if n <= 0 or views <= 0 or scale <= 0:
        raise CifarlabError("--n, --views and --scale must be > 0")
    augment = create_augment(spec)
    train = load_data(data, progress=False).train
    pick = np.sort(np.random.default_rng(seed).choice(len(train), size=min(n, len(train)), replace=False))
    x = torch.from_numpy(np.ascontiguousarray(train.images[pick])).permute(0, 3, 1, 2)
    y = torch.from_numpy(np.asarray(train.labels[pick], dtype=np.int64))
    columns = [x]
    for view in range(views):
        gen = torch.Generator().manual_seed(seed * 1_000 + view)
        xv = augment(x, gen)
        if augment.mixers:
            xv = augment.mix(xv.float(), y, gen)[0].round().clamp(0, 255).to(torch.uint8)
        columns.append(xv)
    grid = _grid(torch.stack(columns, 1).permute(0, 1, 3, 4, 2).numpy(), scale)
    out = Path(out)
    with atomic_path(out) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return out


def _grid(images: np.ndarray, scale: int, gap: int = 2) -> np.ndarray:
    """(rows, cols, H, W, 3) uint8 -> one image, each tile enlarged `scale` times, white gaps, and a wider
    gap after the first (original) column."""
    rows, cols, h, w, _ = images.shape
    big = images.repeat(scale, axis=2).repeat(scale, axis=3)
    th, tw = h * scale, w * scale
    extra = 3 * gap  # sets the originals apart
    canvas = np.full((rows * (th + gap) + gap, cols * (tw + gap) + gap + extra, 3), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            x0 = gap + c * (tw + gap) + (extra if c else 0)
            y0 = gap + r * (th + gap)
            canvas[y0:y0 + th, x0:x0 + tw] = big[r, c]
    return canvas
