"""The in-memory form of a dataset split: one uint8 array of images and one array of labels."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# Per-channel statistics of the CIFAR-10 training images, scaled to [0, 1].
CIFAR10_MEAN = (0.49139968, 0.48215841, 0.44653091)
CIFAR10_STD = (0.24703223, 0.24348513, 0.26158784)


@dataclass(repr=False)
class ImageSet:
    """Images as (N, H, W, 3) uint8, labels as (N,) int64, and where each image came from."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    files: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be (N, H, W, 3) uint8, got {self.images.shape} {self.images.dtype}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.files and len(self.files) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.files)} file names")
        self.labels = np.asarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:  # short: the arrays hold thousands of numbers
        h, w = self.images.shape[1:3]
        return f"ImageSet({len(self):,} images {h}x{w}, {self.num_classes} classes)"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: np.ndarray) -> ImageSet:
        index = np.asarray(index)
        files = [self.files[i] for i in index] if self.files else []
        return ImageSet(self.images[index], self.labels[index], list(self.classes), files)


@dataclass
class CifarData:
    """A train and a test split with the same classes, and a description of where they came from."""

    train: ImageSet
    test: ImageSet
    source: str

    @property
    def classes(self) -> list[str]:
        return self.train.classes
