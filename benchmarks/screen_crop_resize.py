"""Screening: progressive resizing's small stage as random size x size crops of the
full-size batch (object scale as at test time) instead of a downscale of the whole image. Takes
`cifarlab`'s command line; measured once (BENCHMARKS.md) and not kept in the engine:

    PYTHONPATH=src python benchmarks/screen_crop_resize.py train --recipe fast-progressive \
        --data ../shared/data/cifar10 --seed 0 --config benchmarks/configs/fast_b1000_24x3_of_7.yaml --out DIR
"""
import sys

import torch

import cifarlab.training.loop as loop
from cifarlab.cli import main


def crop_batch(x, size):
    """Each image's own random size x size window (a drop-in for loop.resize_batch)."""
    if size is None or x.shape[-1] == size:
        return x
    n, c, h, w = x.shape
    oy, ox = (torch.randint(0, side - size + 1, (n, 1), device=x.device) for side in (h, w))
    window = torch.arange(size, device=x.device)
    rows, cols = (oy + window)[:, :, None], (ox + window)[:, None, :]
    out = x[torch.arange(n, device=x.device)[:, None, None], :, rows, cols]  # (n, size, size, c)
    return out.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: channels_last


loop.resize_batch = crop_batch
sys.exit(main())
