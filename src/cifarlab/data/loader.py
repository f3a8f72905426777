"""The in-memory batch loader: the whole split lives on the training device as one uint8 tensor, and a
batch is one gather, one cast and one normalization, with no per-image Python (after airbench)."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from .._seeds import derived_generator

BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class DeviceLoader:
    """Iterate (images, labels) batches; images are normalized float NCHW in channels_last memory.

    The shuffle order of epoch `e` depends only on (seed, e), so a resumed run sees the same batches.
    `augment`, if given, receives a uint8 NCHW batch and a generator and returns a uint8 batch.
    `generator` is the current epoch's generator (a CPU torch.Generator), for draws the training loop
    makes per batch (mixup, cutmix) in the same reproducible sequence.

    `set_subset(indices)` restricts the following epochs to those images (example selection); the
    batches of `indexed()` also carry each image's index in the dataset.

    Data-parallel training (`rank`, `world_size`): every rank draws the same shuffle, cuts the same
    global batches of `batch_size` images and takes its own contiguous slice of each, so the ranks
    together see exactly the batches one process would. Rank 0 augments with the shuffle's generator,
    as one process does; the other ranks with generators of their own, seeded by (seed, epoch, rank).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, batch_size: int, device: torch.device,
                 mean: tuple[float, ...], std: tuple[float, ...], shuffle: bool = False, drop_last: bool = False,
                 seed: int = 0, augment: BatchTransform | None = None, channels_last: bool = True,
                 rank: int = 0, world_size: int = 1):
        # (N, H, W, C) uint8 viewed as NCHW: the same memory, already channels_last.
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2)
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
        self.batch_size, self.device = batch_size, device
        self.shuffle, self.drop_last, self.seed, self.augment = shuffle, drop_last, seed, augment
        self.rank, self.world_size = rank, world_size
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.epoch = 0
        self.subset: torch.Tensor | None = None  # dataset indices to iterate over; None: all
        self.generator: torch.Generator | None = None
        # Policies that follow each image across epochs (alternating flip) learn the dataset once.
        self.augment_uses_index = bool(getattr(augment, "uses_index", False))
        if self.augment_uses_index:
            augment.bind(len(self.labels), seed, device)

    def __len__(self) -> int:
        n = self._size()
        return n // self.batch_size if self._drops_last(n) else -(-n // self.batch_size)

    @property
    def num_images(self) -> int:
        """The images one epoch trains on (all ranks)."""
        n = self._size()
        return len(self) * self.batch_size if self._drops_last(n) else n

    def _size(self) -> int:
        return len(self.labels) if self.subset is None else len(self.subset)

    def _drops_last(self, n: int) -> bool:
        return self.drop_last and n >= self.batch_size  # a subset smaller than a batch is still one batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_subset(self, indices: torch.Tensor | None) -> None:
        """Iterate over these dataset indices only (None: all images), from the next epoch's iteration on."""
        self.subset = None if indices is None else indices.to(self.device)

    def normalize(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        return (batch_uint8.float() - self.mean) / self.std

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y, _ in self.indexed():
            yield x, y

    def indexed(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(images, labels, their indices in the dataset) batches, as iteration gives (images, labels)."""
        n = self._size()
        gen = self.generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=gen).to(self.device) if self.shuffle else None
        if self.subset is not None:
            order = self.subset if order is None else self.subset[order]
        if self.rank > 0:
            gen = self.generator = derived_generator(self.seed, self.epoch, self.rank)
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, n)
            if self.world_size > 1:  # this rank's slice of the global batch
                size = hi - lo
                lo, hi = lo + size * self.rank // self.world_size, lo + size * (self.rank + 1) // self.world_size
            if order is None:
                index = torch.arange(lo, hi, device=self.device)
                x, y = self.images[lo:hi], self.labels[lo:hi]
            else:
                index = order[lo:hi]
                x, y = self.images[index], self.labels[index]
            if self.augment_uses_index:
                x = self.augment(x, gen, index=index, epoch=self.epoch)
            elif self.augment is not None:
                x = self.augment(x, gen)
            yield self.normalize(x).contiguous(memory_format=self.memory_format), y, index
