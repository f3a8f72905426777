"""Build small CIFAR-10 datasets in the official python format (the layout of cifar-10-python.tar.gz).

Import it from a test as a sibling module (pytest puts tests/ on sys.path for test files in a folder
without __init__.py):

    from cifar_archive_helper import make_cifar10_archive

The batches are pickled at protocol 2 with bytes keys, like the real ones; the data rows are CHW
(1024 red, then 1024 green, then 1024 blue values per image), while the arrays returned here are
HWC, i.e. what a correct reader must give back.
"""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class CifarArrays(NamedTuple):
    """What was written: images (N, 32, 32, 3) uint8 HWC, labels (N,) int64, file names, class names."""

    train_images: np.ndarray
    train_labels: np.ndarray
    train_files: list[str]
    test_images: np.ndarray
    test_labels: np.ndarray
    test_files: list[str]
    classes: list[str]


def batch_pickle(
    images: np.ndarray, labels, filenames: list[str] | None = None, batch_label: str = "batch"
) -> bytes:
    """One batch, pickled like the official ones, from HWC images."""
    n = len(images)
    data = np.ascontiguousarray(np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2)).reshape(n, 3072)
    if filenames is None:
        filenames = [f"image_{i:05d}.png" for i in range(n)]
    batch = {
        b"batch_label": batch_label.encode(),
        b"labels": [int(x) for x in labels],
        b"data": data,
        b"filenames": [f.encode() for f in filenames],
    }
    return pickle.dumps(batch, protocol=2)


def meta_pickle(classes: list[str] = CLASSES, per_batch: int = 10000) -> bytes:
    meta = {
        b"num_cases_per_batch": per_batch,
        b"label_names": [c.encode() for c in classes],
        b"num_vis": 3072,
    }
    return pickle.dumps(meta, protocol=2)


def cifar10_members(
    n_train_per_batch: int = 4, n_test: int = 6, seed: int = 0, classes: list[str] = CLASSES
) -> tuple[dict[str, bytes], CifarArrays]:
    """The member files (name -> pickled bytes) of a random CIFAR-10-format dataset, and its arrays."""
    rng = np.random.default_rng(seed)
    members: dict[str, bytes] = {}
    train_images, train_labels, train_files = [], [], []
    for b, name in enumerate(TRAIN_BATCHES):
        images = rng.integers(0, 256, size=(n_train_per_batch, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, len(classes), size=n_train_per_batch)
        files = [f"img_{b}_{i}.png" for i in range(n_train_per_batch)]
        members[name] = batch_pickle(images, labels, files, f"training batch {b + 1} of 5")
        train_images.append(images)
        train_labels.append(labels)
        train_files += [f"{name}/{f}" for f in files]
    test_images = rng.integers(0, 256, size=(n_test, 32, 32, 3), dtype=np.uint8)
    test_labels = rng.integers(0, len(classes), size=n_test)
    test_files = [f"test_{i}.png" for i in range(n_test)]
    members["test_batch"] = batch_pickle(test_images, test_labels, test_files, "testing batch 1 of 1")
    members["batches.meta"] = meta_pickle(classes, n_train_per_batch)
    arrays = CifarArrays(
        np.concatenate(train_images),
        np.concatenate(train_labels).astype(np.int64),
        train_files,
        test_images,
        test_labels.astype(np.int64),
        [f"test_batch/{f}" for f in test_files],
        list(classes),
    )
    return members, arrays


def _ordered(members: dict[str, bytes]) -> list[tuple[str, bytes]]:
    # The official archive stores its members in this (unsorted) order, with a readme in the middle.
    order = ["data_batch_4", "readme.html", "test_batch", "data_batch_3", "batches.meta",
             "data_batch_2", "data_batch_5", "data_batch_1"]
    named = dict(members)
    named.setdefault("readme.html", b"<html><body>CIFAR-10 (test copy)</body></html>\n")
    first = [(n, named.pop(n)) for n in order if n in named]
    return first + sorted(named.items())


def make_cifar10_archive(
    path: str | Path,
    n_train_per_batch: int = 4,
    n_test: int = 6,
    seed: int = 0,
    *,
    omit: tuple[str, ...] = (),
    replace: dict[str, bytes] | None = None,
) -> CifarArrays:
    """Write a cifar-10-python.tar.gz-style archive to `path` and return what it holds.

    `omit` drops members (e.g. "data_batch_3"); `replace` swaps a member's bytes for others (a bad
    batch, a malicious pickle). The returned arrays describe the regular, unmodified dataset.
    """
    members, arrays = cifar10_members(n_train_per_batch, n_test, seed)
    members.update(replace or {})
    for name in omit:
        members.pop(name, None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(BATCHES_DIR)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1244000000
        tf.addfile(info)
        for name, data in _ordered(members):
            info = tarfile.TarInfo(f"{BATCHES_DIR}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1244000000
            tf.addfile(info, io.BytesIO(data))
    return arrays


def write_cifar10_batches(
    directory: str | Path,
    n_train_per_batch: int = 4,
    n_test: int = 6,
    seed: int = 0,
    *,
    omit: tuple[str, ...] = (),
    replace: dict[str, bytes] | None = None,
) -> CifarArrays:
    """Write an extracted `directory/cifar-10-batches-py/` (same content as make_cifar10_archive)."""
    members, arrays = cifar10_members(n_train_per_batch, n_test, seed)
    members.update(replace or {})
    for name in omit:
        members.pop(name, None)
    out = Path(directory) / BATCHES_DIR
    out.mkdir(parents=True, exist_ok=True)
    for name, data in _ordered(members):
        (out / name).write_bytes(data)
    return arrays
