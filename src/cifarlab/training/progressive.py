"""Progressive resizing (`--progressive-resize 24:4`): the first epochs train on smaller images.

A convolution's arithmetic grows with the pixels, so a 24×24 batch costs about (24/32)² = 0.56× a
32×32 one (airbench's epochs on a 2-core CPU: 0.49–0.57× the time); the epochs left at full size adapt
the net to the size it is evaluated at. The idea is fast.ai's (Howard et al., DAWNBench 2018); FixRes (Touvron et
al. 2019) explains why training smaller costs little accuracy. The batches are downscaled on the device
after augmentation (bilinear with antialiasing), so the loader and its augmentations are unchanged.
The schedule's parser and checks are in config.py (no torch).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CifarlabError
from ..models._modes import eval_mode


def size_for_epoch(stages: list[tuple[int, int]], epoch: int) -> int | None:
    """The training image size of a 0-based epoch; None: full size."""
    end = 0
    for size, epochs in stages:
        end += epochs
        if epoch < end:
            return size
    return None


def resize_batch(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """The normalized float batch downscaled to size×size; unchanged when size is None or already so."""
    if size is None or x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)  # keeps the layout


@torch.no_grad()
def check_model_accepts(model: nn.Module, stages: list[tuple[int, int]], image_size: int, device,
                        model_name: str) -> None:
    """Fail before training when a size is not smaller than the images or the model cannot take it
    (a flatten into a fixed dense layer, like the Keras baseline's)."""
    with eval_mode(model):  # batch-norm statistics untouched
        for size, _ in stages:
            if size >= image_size:
                raise CifarlabError(f"--progressive-resize size {size} is not smaller than the "
                                    f"{image_size}x{image_size} training images")
            try:
                model(torch.zeros(2, 3, size, size, device=device))
            except RuntimeError as e:
                raise CifarlabError(f"--progressive-resize: {model_name} cannot take {size}x{size} images (its layers "
                                    f"expect {image_size}x{image_size}: {str(e).splitlines()[0]})") from None
