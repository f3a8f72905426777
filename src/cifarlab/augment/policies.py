"""The learned and random policies of torchvision (transforms v2), applied to the uint8 batch tensor.

These are per-image policies: given a batched tensor, torchvision samples ONE operation (and magnitude)
for the whole batch. Running them image by image is a Python loop per image; running them once per
batch makes every image in a batch identical in kind (all rotated, all solarized, ...), which weakens
the regularization and adds batch-to-batch noise. The trade-off taken here: split the batch into
chunks of `chunk` images (default 16) and sample one operation per chunk — a batch of 128 sees 8
draws, at 1/16th of the per-image Python overhead. `chunk=1` is the faithful, slow per-image version.

torchvision draws from the global torch RNG; to stay reproducible under the DeviceLoader's generator
(and leave the global RNG as it was) each call seeds a forked CPU RNG from that generator.
"""
from __future__ import annotations

import torch
from torchvision.transforms import v2


class TorchvisionPolicy:
    def __init__(self, transform, chunk: int = 16):
        self.transform, self.chunk = transform, chunk

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):  # these transforms draw on the CPU only
            torch.set_rng_state(torch.Generator().manual_seed(seed).get_state())
            return torch.cat([self.transform(part) for part in x.split(self.chunk)])

    def __repr__(self) -> str:
        return f"TorchvisionPolicy({self.transform}, chunk={self.chunk})"


def autoaugment(chunk: int = 16) -> TorchvisionPolicy:
    return TorchvisionPolicy(v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10), chunk)


def randaugment(chunk: int = 16) -> TorchvisionPolicy:
    return TorchvisionPolicy(v2.RandAugment(num_ops=2, magnitude=9), chunk)


def trivialaugment(chunk: int = 16) -> TorchvisionPolicy:
    return TorchvisionPolicy(v2.TrivialAugmentWide(), chunk)
