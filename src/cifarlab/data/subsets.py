"""Subsets for transfer experiments: a chosen list of classes (relabelled 0..k-1 in the order given) and a
stratified fraction of the training labels."""
from __future__ import annotations

import numpy as np

from ..errors import CifarlabError
from .splits import label_fraction_subset  # noqa: F401  (it lives with the other splits)
from .types import CifarData, ImageSet


def select_classes(data: CifarData, classes: list[str] | None) -> CifarData:
    """`data` restricted to `classes` in train and test, labels renumbered in the order given (None: all)."""
    if not classes:
        return data
    unknown = [c for c in classes if c not in data.classes]
    if unknown:
        raise CifarlabError(f"--classes: {', '.join(unknown)} not in the data's classes ({', '.join(data.classes)})")
    return CifarData(_select(data.train, classes), _select(data.test, classes), data.source)


def _select(images: ImageSet, classes: list[str]) -> ImageSet:
    old = [images.classes.index(c) for c in classes]
    keep = np.flatnonzero(np.isin(images.labels, old))
    relabel = np.full(len(images.classes), -1, np.int64)
    relabel[old] = np.arange(len(classes))
    files = [images.files[i] for i in keep] if images.files else []
    return ImageSet(images.images[keep], relabel[images.labels[keep]], list(classes), files)
