"""The decoded-image cache: one uncompressed .npz per data source, keyed by a fingerprint of the
source (every file's path, size and modification time), written atomically.

Decoding 60,000 PNGs costs seconds; loading the cached arrays costs a fraction of one, so the second
run over the same data starts training almost at once. A changed, added or removed file changes the
key, so a stale cache is never read.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .._io import atomic_path
from .types import CifarData, ImageSet

CACHE_FORMAT = 1


def cache_root() -> Path:
    """`CIFARLAB_CACHE`, else `$XDG_CACHE_HOME/cifarlab`, else `~/.cache/cifarlab`."""
    if os.environ.get("CIFARLAB_CACHE"):
        return Path(os.environ["CIFARLAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifarlab"


def fingerprint(rows: list[tuple]) -> str:
    digest = hashlib.sha256(f"cifarlab-cache-v{CACHE_FORMAT}".encode())
    digest.update(json.dumps(rows, separators=(",", ":")).encode())
    return digest.hexdigest()[:24]


def cache_file(key: str, root: Path | None = None) -> Path:
    return (root or cache_root()) / "decoded" / f"{key}.npz"


def load(key: str, root: Path | None = None) -> CifarData | None:
    path = cache_file(key, root)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            classes = [str(c) for c in z["classes"]]
            train = ImageSet(z["train_images"], z["train_labels"], classes, z["train_files"].tolist())
            test = ImageSet(z["test_images"], z["test_labels"], classes, z["test_files"].tolist())
            return CifarData(train, test, str(z["source"]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        path.unlink(missing_ok=True)  # unreadable (e.g. disk trouble): decode again rather than fail
        return None


def save(key: str, data: CifarData, root: Path | None = None) -> Path:
    path = cache_file(key, root)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            train_images=data.train.images, train_labels=data.train.labels,
            test_images=data.test.images, test_labels=data.test.labels,
            classes=np.array(data.classes), source=np.array(data.source),
            train_files=np.array(data.train.files, dtype=str), test_files=np.array(data.test.files, dtype=str),
        )
    return path
