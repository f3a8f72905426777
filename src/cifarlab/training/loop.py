"""One training step and one epoch, as plain functions (after torchvision's references/classification/
train.py): `train()` (engine.py), `lr-find` (lr_find.py) and, through train(), the label check's folds
all train with these, so mixup/cutmix, progressive resizing, gradient accumulation, DDP, precision, the
L1/L2 penalties and the EMA are applied the same way everywhere.

Nothing here waits for the device per step: losses and accuracies are summed in device tensors; the
per-step loss curve (`train_loss_steps`) keeps one device scalar per window of `loss_every` steps and
reads them all at the end of the epoch, in one copy.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .._threads import adapt as adapt_threads
from ..augment.mix import mixed_cross_entropy
from ..data.loader import DeviceLoader
from ..rundir.device import autocast, synchronize
from . import distributed
from .optim import schedule_lr, stop_gradients_past_horizon
from .progressive import resize_batch
from .regularize import update_ema, weight_penalty

LOSS_POINTS = 300  # about this many points in a run's per-step loss curve
BAR_EVERY = 10  # the progress bar's numbers are read from the device every this many batches (when shown)


@dataclass
class Stepper:
    """What one optimizer step needs. `net` is what trains (DDP(model), compiled or the model itself);
    `model` is the plain module the penalties and the EMA look at."""

    net: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    augment: Any  # augment.Augment: its mix() does mixup/cutmix, (x, y, y, 1.0) without them
    device: torch.device
    precision: str
    batch_size: int
    grad_accum: int = 1
    label_smoothing: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    ema: Any = None  # torch.optim.swa_utils.AveragedModel or None
    selection: Any = None  # selection.EasyPruning (--prune-easy) or None
    ranks: distributed.Ranks = field(default_factory=distributed.Ranks)


def train_step(s: Stepper, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, *, batch_images: int,
               image_size: int | None = None,
               index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One optimizer step on a batch; returns (summed loss, correct count) as device tensors and the images.

    `batch_images`: the global batch size of this step (the last batch of an epoch may be smaller).
    `index`: the images' dataset indices, for --prune-easy's loss weights and scores (else None)."""
    selecting = index is not None and s.selection is not None and s.selection.active
    x, y_a, y_b, lam = s.augment.mix(x, y, generator)  # (x, y, y, 1.0) without mixup/cutmix
    x = resize_batch(x, image_size)  # --progressive-resize; None: as loaded
    s.optimizer.zero_grad(set_to_none=True)
    loss_sum = correct = None  # no zero tensors to fill: one micro-batch (the usual case) adds no kernel
    seen = 0
    # --grad-accum K: K micro-batches, each loss weighted by its share of the global batch.
    parts = (x, y_a, y_b, index) if selecting else (x, y_a, y_b)
    for weight, (xs, ys_a, ys_b, *index_part) in distributed.micro_batches(s.net, s.ranks, s.grad_accum,
                                                                           batch_images, *parts):
        with autocast(s.device, s.precision):
            logits = s.net(xs)
            if selecting:  # per-image losses: scored for the next epochs, weighted in the pruned ones
                losses = mixed_cross_entropy(logits, ys_a, ys_b, lam, s.label_smoothing, reduction="none")
                s.selection.record(index_part[0], losses)
                loss = (losses * s.selection.weights[index_part[0]]).mean()
            else:
                loss = mixed_cross_entropy(logits, ys_a, ys_b, lam, s.label_smoothing)
        penalty = weight_penalty(s.model, s.l1, s.l2)  # a tensor with --l1 / --l2, else 0.0
        if torch.is_tensor(penalty):  # no kernel for adding 0 or scaling by 1: each is host work per step on a GPU
            loss = loss + penalty
        s.scaler.scale(loss * weight if weight != 1 else loss).backward()
        shown = losses.detach().mean() + penalty if selecting else loss  # the train loss: unweighted
        part_loss, part_correct = shown.detach() * len(ys_a), (logits.argmax(1) == ys_a).sum()
        loss_sum = part_loss if loss_sum is None else loss_sum + part_loss
        correct = part_correct if correct is None else correct + part_correct
        seen += len(ys_a)
    s.scaler.step(s.optimizer)
    s.scaler.update()
    update_ema(s.ema, s.model)  # no-op unless --ema
    return loss_sum, correct, seen


class Progress:
    """A run's progress in [0, 1]: the share of epochs done (epoch + the share of its steps), or of the time
    budget spent, whichever is larger. Counting epochs, not steps, keeps the schedule when --prune-easy
    makes some epochs shorter than others."""

    def __init__(self, epochs: int, budget_seconds: float | None, ranks: distributed.Ranks):
        self.epochs, self.budget_seconds, self.ranks = epochs, budget_seconds, ranks

    def __call__(self, epoch: int, batch_index: int, batches: int, elapsed_seconds: float) -> float:
        done = (epoch * batches + batch_index) / (self.epochs * batches)  # = step / total steps, unpruned
        if not self.budget_seconds:
            return done
        elapsed = distributed.from_main(self.ranks, elapsed_seconds)  # one clock for every rank
        return max(done, elapsed / self.budget_seconds)


def loss_every(total_steps: int, points: int = LOSS_POINTS) -> int:
    """K: record the mean loss of every K steps, so that a run has about `points` of them (K >= 1)."""
    return max(1, round(total_steps / points))


@dataclass
class EpochResult:
    loss_sum: torch.Tensor  # over this rank's images
    correct: torch.Tensor
    seen: int
    step: int  # the global step after the epoch
    seconds: float
    out_of_time: bool  # the budget (or the step count) ran out before the epoch's end
    loss_steps: list[list[float]]  # [[global step, mean loss of the window ending there], ...] (this rank's)


def train_one_epoch(s: Stepper, loader: DeviceLoader, *, step: int, progress: Progress, schedule: str,
                    warmup: float, trained_seconds: float = 0.0, image_size: int | None = None,
                    record_every: int = 1, desc: str = "", verbose: bool = True) -> EpochResult:
    """One pass over the loader (the model already in training mode, the loader's epoch set).

    `step`: global steps done before; `trained_seconds`: training time before (for --budget-minutes);
    the learning rate follows `schedule` over the run's progress. Every `record_every` steps the window's
    summed loss is kept on the device (a copy, no sync); the epoch's end reads them in one transfer."""
    loss_sum = torch.zeros((), device=s.device)
    correct = torch.zeros((), device=s.device, dtype=torch.long)
    seen, out_of_time = 0, False
    marks: list[tuple[int, torch.Tensor, int]] = []  # (global step, loss_sum so far, images so far)
    bar = tqdm(loader.indexed(), total=len(loader), desc=desc, leave=False, unit="batch",
               disable=None if verbose else True, dynamic_ncols=True, mininterval=0.5)
    start = time.perf_counter()
    batches = len(loader)
    for batch_index, (x, y, index) in enumerate(bar):
        done = progress(loader.epoch, batch_index, batches, trained_seconds + time.perf_counter() - start)
        if done >= 1.0:
            out_of_time = True
            break
        schedule_lr(s.optimizer, done, schedule, warmup)
        if not s.ranks.enabled:
            stop_gradients_past_horizon(s.optimizer, done)
        batch_images = min(s.batch_size, loader.num_images - batch_index * s.batch_size)  # all ranks
        step_loss, step_correct, step_seen = train_step(s, x, y, loader.generator, batch_images=batch_images,
                                                        image_size=image_size, index=index)
        loss_sum += step_loss
        correct += step_correct
        seen += step_seen
        step += 1
        if step % record_every == 0:
            marks.append((step, loss_sum.clone(), seen))
        adapt_threads()  # --threads auto: use the cores other processes leave free (every 2 s)
        if batch_index % BAR_EVERY == 0 and not bar.disable:
            rate = seen / max(1e-9, time.perf_counter() - start)
            loss_value, correct_value = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).tolist()  # one sync
            bar.set_postfix(loss=f"{loss_value / seen:.3f}", acc=f"{correct_value / seen:.3f}", img_s=f"{rate:,.0f}")
    if seen and (not marks or marks[-1][0] != step):
        marks.append((step, loss_sum.clone(), seen))  # the epoch's last, shorter window
    synchronize(s.device)  # the epoch's time includes the steps a GPU still has queued
    return EpochResult(loss_sum, correct, seen, step, time.perf_counter() - start, out_of_time,
                       _window_means(marks))


def _window_means(marks: list[tuple[int, torch.Tensor, int]]) -> list[list[float]]:
    """[[step, mean loss since the previous mark], ...] from cumulative sums, read in one device copy."""
    if not marks:
        return []
    sums = torch.stack([m[1] for m in marks]).double().cpu().tolist()
    points, last_sum, last_seen = [], 0.0, 0
    for (step, _, seen), total in zip(marks, sums):
        if seen > last_seen:
            points.append([step, (total - last_sum) / (seen - last_seen)])
        last_sum, last_seen = total, seen
    return points


def batches(loader: DeviceLoader, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`steps` batches, going round the data as many times as needed (lr-find)."""
    epoch, done = 0, 0
    while done < steps:
        loader.set_epoch(epoch)
        for batch in loader:
            yield batch
            done += 1
            if done == steps:
                return
        epoch += 1

