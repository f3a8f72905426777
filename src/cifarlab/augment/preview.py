"""`cifarlab augment-preview`: originals and several augmented views of a few training images, as one
PNG grid, enlarged with nearest-neighbour so single pixels stay visible."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._io import atomic_path, check_destination
from ..errors import CifarlabError
from ._registry import create_augment


def augment_preview(spec: str, out: str | Path, *, data: str | None = None, n: int = 8, views: int = 5,
                    seed: int = 0, scale: int = 4) -> Path:
    """Write a grid: one row per image, the original in the first column, then `views` augmented views
    (each view is one call of the policy on the n-image batch, with its own seeded generator)."""
    from ..data import load_data

    if n <= 0 or views <= 0 or scale <= 0:
        raise CifarlabError("--n, --views and --scale must be > 0")
    check_destination(out)  # a device or a FIFO (--out /dev/null) is refused before the data is read
    augment = create_augment(spec)
    train = load_data(data, progress=False).train
    pick = _one_per_class(np.asarray(train.labels), n, seed)
    x = torch.from_numpy(np.ascontiguousarray(train.images[pick])).permute(0, 3, 1, 2)
    y = torch.from_numpy(np.asarray(train.labels[pick], dtype=np.int64))
    columns = [x]
    for view in range(views):
        gen = torch.Generator().manual_seed(seed * 1_000 + view)
        xv = augment(x, gen)
        if augment.mixers:
            xv = augment.mix(xv.float(), y, gen)[0].round().clamp(0, 255).to(torch.uint8)
        columns.append(xv)
    views_hwc = torch.stack(columns, 1).permute(0, 1, 3, 4, 2).numpy()
    names = [train.classes[int(c)] for c in y]
    return _save_grid(views_hwc, names, spec, scale, Path(out))


def _one_per_class(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n image indices, seeded: the classes in turn (one image each, then a second round), so a grid of
    10 shows every CIFAR-10 class once."""
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(labels == c)).tolist() for c in np.unique(labels)]
    pick: list[int] = []
    while len(pick) < min(n, len(labels)):
        for pool in pools:
            if pool and len(pick) < n:
                pick.append(pool.pop())
    return np.array(pick)


def _save_grid(images: np.ndarray, names: list[str], spec: str, scale: int, out: Path) -> Path:
    """(rows, cols, H, W, 3) uint8 as a labelled grid: the class of each row beside its original, the
    original column set apart from the views, each pixel `scale` screen pixels (nearest neighbour)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows, cols, h, w, _ = images.shape
    dpi = 100
    tile = max(h * scale / dpi, 0.5)  # inches; labels stay readable on tiny scales
    fig, axes = plt.subplots(rows, cols, figsize=(cols * tile + 1.2, rows * tile + 0.6), dpi=dpi, squeeze=False,
                             layout="constrained")
    fig.get_layout_engine().set(w_pad=0.01, h_pad=0.01, wspace=0.01, hspace=0.01)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(images[r, c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():  # the original in a dark frame, the views in a light one
                side.set_edgecolor("#222" if c == 0 else "#bbb")
                side.set_linewidth(2 if c == 0 else 0.8)
        axes[r, 0].set_ylabel(names[r], rotation=0, ha="right", va="center", fontsize=11)
    axes[0, 0].set_title("original", fontsize=11)
    for c in range(1, cols):
        axes[0, c].set_title(f"view {c}", fontsize=11)
    fig.suptitle(f"--augment {spec}", fontsize=12)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return out
