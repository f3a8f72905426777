"""Stratified, seeded splits: a validation set carved from train (the test split is for final reporting
only) and smaller training subsets for quick experiments."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import CifarlabError
from .cleaning import apply_label_issues
from .types import CifarData, ImageSet

DEFAULT_VAL_SIZE = 5000


def default_val_size(n_train: int) -> int:
    """5,000 images for the full CIFAR-10 train split; 10% of smaller datasets."""
    return DEFAULT_VAL_SIZE if n_train >= 10 * DEFAULT_VAL_SIZE else max(1, round(0.1 * n_train))


def split_train_val(train: ImageSet, val_size: int | None, seed: int) -> tuple[ImageSet, ImageSet | None]:
    """Carve a stratified validation split from `train`. `val_size=0` keeps every image for training."""
    if val_size is None:
        val_size = default_val_size(len(train))
    if val_size == 0:
        return train, None
    _check_size("--val-size", val_size, len(train), train.num_classes)
    if _stratify(train) is not None and len(train) - val_size < train.num_classes:  # one per class, at least
        raise CifarlabError(f"--val-size {val_size} leaves {len(train) - val_size} training images, fewer than the "
                            f"{train.num_classes} classes (the train split has {len(train)})")
    from sklearn.model_selection import train_test_split  # imported here: it costs ~0.7 s at start-up

    fit_idx, val_idx = train_test_split(
        np.arange(len(train)), test_size=val_size, stratify=_stratify(train), random_state=seed)
    return train.subset(np.sort(fit_idx)), train.subset(np.sort(val_idx))


class SplitSettings(Protocol):
    """The fields of a TrainConfig that decide the splits (the data layer does not import the config)."""

    val_size: int | None
    seed: int
    train_size: int | None
    label_fraction: float | None
    drop_label_issues: str | None
    label_issues_action: str


@dataclass(frozen=True)
class Splits:
    """The images a run trained on (`train`), validated on (`val`, None for --val-size 0) and is tested on;
    `label_issues`: what --drop-label-issues did to `train` (None without it)."""

    train: ImageSet
    val: ImageSet | None
    test: ImageSet
    classes: list[str]
    label_issues: dict | None = None

    def __repr__(self) -> str:
        val = f"{len(self.val):,}" if self.val is not None else "none"
        return (f"Splits(train {len(self.train):,}, val {val}, test {len(self.test):,} images; "
                f"{len(self.classes)} classes)")


def make_splits(cfg: SplitSettings, data: CifarData) -> Splits:
    """train/val/test exactly as training makes them: the validation split carved from train (--val-size,
    --seed), then --train-size and --label-fraction applied to what is left, then --drop-label-issues
    (cleaning.py). `data` has the run's classes already selected (data.subsets.select_classes)."""
    fit_set, val_set = split_train_val(data.train, cfg.val_size, cfg.seed)
    if cfg.train_size:
        fit_set = stratified_subset(fit_set, cfg.train_size, cfg.seed)
    fit_set = label_fraction_subset(fit_set, cfg.label_fraction, cfg.seed)
    applied = None
    if cfg.drop_label_issues:
        fit_set, applied = apply_label_issues(fit_set, data.train, cfg.drop_label_issues, cfg.label_issues_action)
    return Splits(fit_set, val_set, data.test, list(data.classes), applied)


def label_fraction_subset(fit_set: ImageSet, fraction: float | None, seed: int) -> ImageSet:
    """A stratified `fraction` of the training images (all of them for None or 1), at least one per class."""
    if fraction is None or fraction >= 1:
        return fit_set
    size = max(fit_set.num_classes, round(fraction * len(fit_set)))
    if size >= len(fit_set):
        return fit_set
    return stratified_subset(fit_set, size, seed)


def stratified_subset(data: ImageSet, size: int, seed: int) -> ImageSet:
    """`size` images with the class balance of `data` (the whole set when size >= len(data))."""
    if size >= len(data):
        return data
    _check_size("--train-size", size, len(data), data.num_classes)
    if _stratify(data) is not None and len(data) - size < data.num_classes:  # too few left out to stratify
        raise CifarlabError(f"--train-size {size} of {len(data)} images: use them all ({len(data)}) or at most "
                            f"{len(data) - data.num_classes}, so that each class gives up one")
    from sklearn.model_selection import train_test_split

    idx, _ = train_test_split(np.arange(len(data)), train_size=size, stratify=_stratify(data), random_state=seed)
    return data.subset(np.sort(idx))


def _stratify(data: ImageSet) -> np.ndarray | None:
    # Stratify only when every class has at least two images; tiny custom datasets fall back to random.
    counts = np.bincount(data.labels, minlength=data.num_classes)
    return data.labels if counts.min() >= 2 else None


def _check_size(flag: str, size: int, available: int, num_classes: int) -> None:
    if size < 0:
        raise CifarlabError(f"{flag} must be >= 0, got {size}")
    if size < num_classes:
        raise CifarlabError(f"{flag} {size} is smaller than the number of classes ({num_classes})")
    if size >= available:
        raise CifarlabError(f"{flag} {size} leaves no training images (the train split has {available})")
