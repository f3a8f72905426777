"""Shared fixtures: tiny synthetic datasets with learnable structure, written as image-folder trees."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))  # so tests can import sibling helper modules

# Tiny test batches gain nothing from a second thread, and OpenMP threads that spin-wait for a busy
# core make them many times slower on a shared 2-core machine.
torch.set_num_threads(1)
# The same for `main([...])` in this process and the cifarlab processes tests start: a fixed count, so
# --threads auto never adapts to the machine's load in the middle of a test that compares two runs.
os.environ.setdefault("OMP_NUM_THREADS", "1")

CLASSES = ["cat", "dog", "frog"]


def synthetic_images(n_per_class: int, classes: list[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each class has its own colour and a bright square in its own place: learnable in one epoch."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c in range(len(classes)):
        base = np.array([(c * 97) % 256, (c * 57 + 80) % 256, (c * 151 + 160) % 256], np.float32)
        for _ in range(n_per_class):
            img = base + rng.normal(0, 40, (32, 32, 3))
            r0 = 4 + 8 * (c % 3)
            img[r0:r0 + 8, r0:r0 + 8] = 255
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(c)
    return np.stack(images), np.array(labels)


def one_line_error(capsys, *fragments: str) -> str:
    """The captured stderr is one error line (no traceback) holding every fragment; returns it."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def write_image_tree(root: Path, n_train: int = 20, n_test: int = 6, classes: list[str] = CLASSES,
                     seed: int = 0) -> Path:
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = synthetic_images(n, classes, s)
        for i, (img, lab) in enumerate(zip(images, labels)):
            folder = root / split / classes[lab]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"img_{i:04d}.png")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own decode cache and no CIFARLAB_DATA from the environment."""
    monkeypatch.setenv("CIFARLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("CIFARLAB_DATA", raising=False)


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory) -> Path:
    """3 classes x (20 train + 6 test) images, read-only for tests: copy it before changing it."""
    return write_image_tree(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="session")
def train_tree(tmp_path_factory) -> Path:
    """3 classes x (100 train + 20 test): enough for a model to learn something in an epoch."""
    return write_image_tree(tmp_path_factory.mktemp("train") / "data", n_train=100, n_test=20)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, train_tree) -> Path:
    """One finished baseline run on the synthetic data, shared by the read-only tests."""
    import cifarlab

    cache = tmp_path_factory.mktemp("run-cache")
    old = os.environ.get("CIFARLAB_CACHE")
    os.environ["CIFARLAB_CACHE"] = str(cache)
    try:
        out = tmp_path_factory.mktemp("runs") / "baseline"
        cifarlab.train(model="baseline", epochs=2, data=str(train_tree), val_size=30, out=str(out),
                       precision="fp32", verbose=False)
    finally:
        if old is None:
            os.environ.pop("CIFARLAB_CACHE", None)
        else:
            os.environ["CIFARLAB_CACHE"] = old
    return out


REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"


@pytest.fixture
def real_data() -> Path:
    if not (REAL_DATA / "train").is_dir():
        pytest.skip(f"the real CIFAR-10 image folders are not at {REAL_DATA}")
    return REAL_DATA
