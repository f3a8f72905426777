"""Image-folder trees: `<root>/train/<class>/*.png|jpg` and `<root>/test/<class>/*`.

This is how the real CIFAR-10 is provided here and how users bring their own images. Decoding runs in
worker processes on every core; this module imports no torch so those workers start fast.
"""
from __future__ import annotations

import contextlib
import errno
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np

from .._threads import available_cpus
from ..errors import DataError, DataWarning
from .images import IMAGE_SIZE, load_rgb_image  # noqa: F401  (load_rgb_image: the one safe way to open an image)
from .types import CifarData, ImageSet

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
_CHUNK = 2000  # files per worker task: large enough to amortize pickling, small enough to balance


@dataclass
class FolderListing:
    """Every image file of one split, in class-then-name order, with its class index and its
    (relative path, size, mtime) row for the cache key."""

    root: Path
    classes: list[str]
    files: list[str]
    labels: list[int]
    skipped: list[str]
    stats: list[tuple[str, int, int]]


def is_image_folder_tree(path: Path) -> bool:
    return path.is_dir() and (path / "train").is_dir()


def list_split(root: Path, split: str) -> FolderListing:
    split_dir = root / split
    if not split_dir.is_dir():
        if os.path.islink(split_dir):
            raise DataError(f"{split_dir} is a symbolic link that leads nowhere (a loop or a missing target)")
        raise DataError(f"missing folder: {split_dir} (an image-folder tree needs train/<class>/ and test/<class>/)")
    classes = sorted(e.name for e in os.scandir(split_dir) if _is_dir(e) and not e.name.startswith("."))
    if not classes:
        raise DataError(f"no class folders in {split_dir} (expected {split}/<class>/<image files>)")
    files, labels, skipped, stats = [], [], [], []
    for index, name in enumerate(classes):
        class_dir = os.path.join(split_dir, name)
        entries = sorted((e for e in os.scandir(class_dir) if _is_file(e) and not e.name.startswith(".")),
                         key=lambda e: e.name)
        images = [e for e in entries if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS]
        skipped += [e.path for e in entries if os.path.splitext(e.name)[1].lower() not in IMAGE_EXTENSIONS]
        if not images:
            raise DataError(f"class folder has no images: {class_dir}")
        for e in images:
            st = e.stat()
            files.append(e.path)
            stats.append((f"{split}/{name}/{e.name}", st.st_size, st.st_mtime_ns))
        labels += [index] * len(images)
    return FolderListing(split_dir, classes, files, labels, skipped, stats)


def _is_dir(entry: os.DirEntry) -> bool:
    with _entry_errors(entry):
        return entry.is_dir()


def _is_file(entry: os.DirEntry) -> bool:
    with _entry_errors(entry):
        return entry.is_file()


@contextlib.contextmanager
def _entry_errors(entry: os.DirEntry) -> Iterator[None]:
    """A symbolic link loop in the tree (a -> b -> a) is a one-line error naming the link: skipping it would
    quietly drop a class folder or images the user meant to train on."""
    try:
        yield
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(f"symbolic link loop at {entry.path}: fix or remove the link") from None
        raise DataError(f"cannot read {entry.path}: {e.strerror or e}") from None


def read_image_folder(root: str | Path, workers: int | None = None) -> CifarData:
    """Decode a whole tree into uint8 arrays, using every core. Errors name the offending file."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    train, test = list_split(root, "train"), list_split(root, "test")
    if len(train.classes) < 2:
        raise DataError(f"{train.root} has one class folder ({train.classes[0]}): a classifier needs at least 2")
    if train.classes != test.classes:
        only_train = sorted(set(train.classes) - set(test.classes))
        only_test = sorted(set(test.classes) - set(train.classes))
        raise DataError(f"train/ and test/ of {root} have different classes "
                        f"(only in train: {only_train or '-'}; only in test: {only_test or '-'})")
    skipped = train.skipped + test.skipped
    if skipped:
        warnings.warn(f"skipped {len(skipped)} files that are not images (first: {skipped[0]})",
                      DataWarning, stacklevel=2)
    images = decode_images(train.files + test.files, workers=workers)
    n = len(train.files)
    return CifarData(
        train=ImageSet(images[:n], np.array(train.labels), train.classes, _relative(train.files, root)),
        test=ImageSet(images[n:], np.array(test.labels), test.classes, _relative(test.files, root)),
        source=f"image folders {root}",
    )


def decode_images(files: list[str] | list[Path], workers: int | None = None) -> np.ndarray:
    """Decode files to (N, 32, 32, 3) uint8 in parallel; warn once per kind of fix-up applied."""
    workers = workers or available_cpus()  # the CPUs this process may use, not the host's
    if "fork" not in get_all_start_methods():
        workers = 1
    chunks = [files[i:i + _CHUNK] for i in range(0, len(files), _CHUNK)]
    if workers == 1 or len(chunks) == 1:
        results = [_decode_chunk(c) for c in chunks]
    else:
        # fork, not spawn: the workers need no re-import of the caller's __main__ (notebooks, scripts
        # without a main guard), and they only run Pillow and numpy, never torch's thread pools.
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            results = list(pool.map(_decode_chunk, chunks))
    resized, converted = [], []
    for _, r, c in results:
        resized += r
        converted += c
    if resized:
        warnings.warn(f"resized {len(resized)} images to {IMAGE_SIZE}x{IMAGE_SIZE} (first: {resized[0]})",
                      DataWarning, stacklevel=3)
    if converted:
        warnings.warn(f"converted {len(converted)} grayscale/RGBA/palette images to RGB (first: {converted[0]})",
                      DataWarning, stacklevel=3)
    if not results:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    return np.concatenate([a for a, _, _ in results])


def _decode_chunk(files: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    out = np.empty((len(files), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    resized, converted = [], []
    for i, f in enumerate(files):
        out[i], was_resized, was_converted = load_rgb_image(f)
        if was_resized:
            resized.append(str(f))
        if was_converted:
            converted.append(str(f))
    return out, resized, converted


def _relative(files: list[str], root: Path) -> list[str]:
    return [os.path.relpath(f, root) for f in files]


def fingerprint_listing(listings: list[FolderListing]) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime) of every file: what the decode cache is keyed on."""
    return [row for listing in listings for row in listing.stats]
