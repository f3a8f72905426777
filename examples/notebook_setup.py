"""The set-up of advanced_cifar10.ipynb, kept out of its way: where the data and the runs are, the budgets,
and two display helpers. The notebook calls `setup()` once.

The environment variable CIFARLAB_NOTEBOOK_MODE chooses the data:
  real (default)  CIFAR-10: $CIFARLAB_DATA, else ../shared/data/cifar10 beside the repository (`cifarlab`
                  downloads the archive when neither exists); runs go to $CIFARLAB_NOTEBOOK_OUT (default
                  notebook-runs)/TIMESTAMP.
  tiny            a small synthetic image-folder dataset in a temporary directory, for CI
                  (tests/test_notebook.py): every cell runs in about a minute, the same calls with smaller
                  numbers.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from IPython.display import Image, Markdown, display

warnings.filterwarnings("ignore", message="IProgress not found")  # no ipywidgets: plain progress lines
import cifarlab  # noqa: E402 - after the filter, so importing it prints no widget warning

MODES = ("real", "tiny")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# The same calls in both modes; only the numbers differ.
BUDGETS: dict[str, dict[str, Any]] = {
    "real": dict(epochs=2, robustness_images=1000, embed_samples=2000, explain_images=40,
                 compare_models=["baseline", "resnet20"], compare_minutes=1.5, lr_find_steps=100,
                 tune_trials=6, tune_epochs=2, tune_train_size=8000,
                 zero_shot_sizes=[32, 128], zero_shot_images=1000, frozen_sizes=[32, 96], frozen_epochs=2,
                 frozen_train_size=5000, source_epochs=2, transfer_epochs=5, label_fraction=0.1),
    "tiny": dict(epochs=2, robustness_images=30, embed_samples=2000, explain_images=6,
                 compare_models=["baseline", "resnet20"], compare_minutes=0.03, lr_find_steps=5,
                 tune_trials=2, tune_epochs=1, tune_train_size=None,
                 zero_shot_sizes=[32, 64], zero_shot_images=30, frozen_sizes=[32, 48], frozen_epochs=1,
                 frozen_train_size=None, source_epochs=1, transfer_epochs=1, label_fraction=None),
}


class Setup(NamedTuple):
    data_dir: str  # what every call's `data=` takes
    work: Path  # where the runs go
    budget: dict[str, Any]
    data: Any  # cifarlab.load_data(data_dir): the classes and the images, for the cells that show some


def setup(mode: str | None = None) -> Setup:
    """The data, the output folder and the budget of `mode` (default: $CIFARLAB_NOTEBOOK_MODE, else real)."""
    mode = mode or os.environ.get("CIFARLAB_NOTEBOOK_MODE", "real")
    if mode not in MODES:
        raise ValueError(f"CIFARLAB_NOTEBOOK_MODE must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "tiny":
        work = Path(tempfile.mkdtemp(prefix="cifarlab-notebook-"))
        os.environ["CIFARLAB_CACHE"] = str(work / "cache")  # keep the decoded tiny data out of the user's cache
        data_dir = str(synthetic_cifar(work / "data", CIFAR10_CLASSES, n_train=30, n_test=6))
    else:
        repo = Path.cwd().parent if Path.cwd().name == "examples" else Path.cwd()
        data_dir = os.environ.get("CIFARLAB_DATA") or str(repo.parent / "shared" / "data" / "cifar10")
        work = Path(os.environ.get("CIFARLAB_NOTEBOOK_OUT", "notebook-runs")) / datetime.now().strftime("%Y%m%d-%H%M%S")
        work.mkdir(parents=True)
    data = cifarlab.load_data(data_dir)
    print(f"mode {mode}: {len(data.train):,} training and {len(data.test):,} test images of {len(data.classes)} "
          f"classes from {data_dir}; runs go to {work}")
    return Setup(data_dir, work, BUDGETS[mode], data)


def synthetic_cifar(root: Path, classes: list[str], n_train: int, n_test: int, seed: int = 0) -> Path:
    """Tiny mode's data: each class is a colour plus a bright square in its own place, with noise, so a
    network learns it in an epoch or two; written as train/<class>/*.png and test/<class>/*.png."""
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(classes):
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = np.array([(c * 97) % 256, (c * 57 + 80) % 256, (c * 151 + 160) % 256], np.float32)
                img = img + rng.normal(0, 40, (32, 32, 3))
                r, q = 2 + 7 * (c % 4), 2 + 7 * (c // 4)
                img[r:r + 7, q:q + 7] = 255
                PILImage.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
    return Path(root)


def show(*pngs: str | Path, width: int | None = None) -> None:
    """Display PNG files, one below the other."""
    for png in pngs:
        display(Image(filename=str(png), width=width))


def say(text: str) -> None:
    """Display a sentence computed from the results, as Markdown."""
    display(Markdown(text))
