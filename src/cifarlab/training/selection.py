"""Example selection (`--prune-easy R`): each epoch skips part of the images the model already fits.

InfoBatch (Qin et al., ICLR 2024, arXiv:2303.04947): every image's score is its training loss when it
was last seen. At the start of an epoch, the well-learned images (score under the mean score) are each
skipped with probability R, and the well-learned images kept are weighted 1/(1 − R) in the loss, so
the epoch's expected gradient stays that of the full data. The last epochs (from `prune_until` of
the run on) see every image, unweighted, so that the end of training is not biased towards the hard ones.
The first epoch prunes nothing: all scores start equal.

Each epoch still covers 1/epochs of the learning-rate schedule (loop.Progress counts epochs), so a
pruned epoch is simply shorter. Under torchrun each rank scores its own slice of every batch; the
epoch's scores are summed over the ranks once at its end, so every rank plans the same next epoch.
"""
from __future__ import annotations

import torch

from .._seeds import derived_generator
from ..config import last_pruned_epoch
from . import distributed

_STREAM = 0x5E1EC7  # the pruning draws' own random stream, apart from the shuffle's


class EasyPruning:
    """Scores, the epoch's plan (which images, with which loss weights) and the checkpointed state."""

    def __init__(self, num_images: int, ratio: float, epochs: int, until: float, seed: int, device: torch.device):
        self.ratio, self.seed = ratio, seed
        self.last_pruned_epoch = last_pruned_epoch(epochs, until)  # epochs after it see every image
        self.scores = torch.ones(num_images, device=device)
        self.weights = torch.ones(num_images, device=device)  # this epoch's loss weight per image
        self._fresh = torch.zeros(num_images, device=device)  # this epoch's losses, summed over ranks at its end
        self._seen = torch.zeros(num_images, device=device)
        self.recording = False  # whether this epoch's losses are needed (a later epoch prunes)
        self.active = False  # whether this epoch's step weights or records per-image losses

    def plan(self, epoch: int) -> torch.Tensor | None:
        """The sorted dataset indices epoch `epoch` trains on, or None for all of them; sets the weights."""
        self.recording = epoch < self.last_pruned_epoch
        self.active = epoch <= self.last_pruned_epoch
        self.weights.fill_(1.0)
        if epoch > self.last_pruned_epoch or epoch == 0:
            return None
        well_learned = self.scores < self.scores.mean()
        draw = torch.rand(len(self.scores), generator=self._generator(epoch)).to(self.scores.device)
        skipped = well_learned & (draw < self.ratio)
        self.weights[well_learned & ~skipped] = 1.0 / (1.0 - self.ratio)
        return (~skipped).nonzero().squeeze(1)

    def record(self, index: torch.Tensor, losses: torch.Tensor) -> None:
        """The per-image (unweighted) losses of a batch's images; no device sync."""
        if not self.recording:
            return
        self._fresh[index] = losses.detach().float()
        self._seen[index] = 1.0

    def end_epoch(self, ranks: distributed.Ranks) -> None:
        """The scores of the images trained this epoch (every rank's), in one collective."""
        if not self.recording:
            return
        both = distributed.all_reduce_sum(ranks, torch.stack([self._fresh, self._seen]))
        fresh, seen = both[0].to(self.scores.dtype), both[1].to(self.scores.dtype)
        self.scores = torch.where(seen > 0, fresh / seen.clamp(min=1), self.scores)
        self._fresh.zero_()
        self._seen.zero_()

    def _generator(self, epoch: int) -> torch.Generator:
        return derived_generator(self.seed, epoch, _STREAM)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"scores": self.scores.detach().cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        scores = state["scores"]
        if not isinstance(scores, torch.Tensor) or scores.shape != self.scores.shape:
            raise ValueError(f"pruning scores of shape {getattr(scores, 'shape', None)}, expected "
                             f"{tuple(self.scores.shape)}")
        self.scores = scores.to(self.scores.device, self.scores.dtype)
