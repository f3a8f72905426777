"""Data-parallel plumbing for the training loop: torchrun's environment, DistributedDataParallel,
gradient accumulation and metrics reduced across ranks. engine.py calls these; on one process every
function here is a no-op or the identity, so the loop reads the same either way.

    torchrun --nproc-per-node 2 -m cifarlab train --model resnet20 --batch-size 256

`--batch-size` is the GLOBAL batch: each of the W ranks takes B / W images of every batch (the same
seeded shuffle on every rank, each its own slice), and with `--grad-accum K` each rank splits its slice
into K micro-batches. The loss of a micro-batch is weighted by its share of the global batch, so the
summed gradient is the one a single process computes on the whole batch (exactly so for models without
batch norm; batch-norm statistics are per rank and micro-batch unless --sync-bn, which needs GPUs).
"""
from __future__ import annotations

import contextlib
import datetime
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from .._seeds import derived_seed
from .._threads import available_cpus, explicit_threads, fix_threads
from ..errors import CifarlabError
from ..rundir.device import resolve_device


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the job; the defaults are a single process."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    owns_group: bool = False  # True when setup() started the process group (and so ends it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_timeout_seconds: float | None = None  # --dist-timeout of the group this process set up, for error messages

# How gloo's transport reports a peer that died or stopped answering; these errors come out of DDP's
# backward hook as plain RuntimeErrors that do not name gloo.
_TRANSPORT_FAILURES = ("Timed out waiting", "pair closure", "Connection closed by peer", "Connection reset by peer",
                       "Broken pipe")


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def setup(device_name: str, timeout_seconds: float) -> tuple[Ranks, torch.device]:
    """Join the torchrun job (if this process is one of its workers) and pick this rank's device.

    gloo on CPUs, NCCL on GPUs (one GPU per rank: cuda:LOCAL_RANK). A collective that waits longer
    than `timeout_seconds` for a rank that died raises instead of hanging.
    """
    if not launched_by_torchrun():
        return Ranks(), resolve_device(device_name)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise CifarlabError(f"data-parallel training runs on CUDA GPUs or CPUs, not {device.type}")
    owns = not dist.is_initialized()
    if owns:
        global _timeout_seconds
        _timeout_seconds = timeout_seconds
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_seconds))
    if device.type == "cpu" and not explicit_threads():  # the ranks of one machine share its cores
        fix_threads(max(1, available_cpus() // local_world), f"CPUs // {local_world} ranks")  # (torchrun: 1)
    ranks = Ranks(dist.get_rank(), local_rank, dist.get_world_size(), local_world, owns)
    return ranks, device


def teardown(ranks: Ranks) -> None:
    if ranks.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def check_batch(ranks: Ranks, batch_size: int, grad_accum: int, train_images: int) -> None:
    """The global batch must split evenly over ranks × accumulation steps."""
    parts = ranks.world_size * grad_accum
    if batch_size % parts:
        raise CifarlabError(f"--batch-size {batch_size} is the global batch: it must be divisible by "
                            f"{ranks.world_size} rank(s) x --grad-accum {grad_accum} = {parts}")
    if train_images < parts:
        raise CifarlabError(f"{train_images} training images cannot be split over {ranks.world_size} rank(s) x "
                            f"--grad-accum {grad_accum}; use more images (--train-size)")


def data_parallel(model: nn.Module, ranks: Ranks, device: torch.device, sync_bn: bool) -> tuple[nn.Module, nn.Module]:
    """(model, net): the bare model (saved, evaluated, averaged by EMA) and what the loop trains (DDP over
    it when distributed, else the model itself). Both share the same parameters."""
    if not ranks.enabled:
        return model, model
    if sync_bn:
        if device.type != "cuda":
            raise CifarlabError("--sync-bn needs GPUs: torch's SyncBatchNorm has no CPU kernel "
                                "(on CPUs each rank normalizes with its own batch statistics)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model, net


def seed_rank(ranks: Ranks, seed: int, epoch: int) -> None:
    """Ranks other than 0 draw their own dropout and other global-RNG randomness, from (seed, rank, epoch),
    so a resumed run repeats it; rank 0 keeps the single-process stream (saved in checkpoints)."""
    if ranks.rank > 0:
        torch.manual_seed(derived_seed(seed, ranks.rank, epoch))


def micro_batches(net: nn.Module, ranks: Ranks, grad_accum: int, batch_size: int,
                  *tensors: torch.Tensor) -> Iterator[tuple[float, tuple[torch.Tensor, ...]]]:
    """Split this rank's slice of a batch into `grad_accum` micro-batches: yields (weight, tensors).

    Multiply each micro-batch's mean loss by `weight` before backward: its share of the global batch
    times the world size (DDP averages gradients over ranks), so the gradients add up to the mean over
    the global batch. Under DDP, gradients are only all-reduced on the last micro-batch (no_sync before).
    `batch_size` is the global batch size of this step (the last batch of an epoch may be smaller).
    """
    if grad_accum == 1 and not ranks.enabled:  # the usual case: the batch itself, no views to make
        yield len(tensors[0]) / batch_size, tensors
        return
    chunks = list(zip(*(t.tensor_split(grad_accum) for t in tensors)))  # K parts, sizes differ by at most 1
    for i, chunk in enumerate(chunks):
        weight = len(chunk[0]) * ranks.world_size / batch_size
        last = i == len(chunks) - 1
        with contextlib.nullcontext() if last or not ranks.enabled else net.no_sync():
            yield weight, chunk


def all_reduce_sum(ranks: Ranks, tensor: torch.Tensor) -> torch.Tensor:
    """The sum over ranks (float64 on the wire, so counts and sums stay exact); the tensor itself on one process."""
    if not ranks.enabled:
        return tensor
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    total = tensor.detach().to(device=device, dtype=torch.float64).clone()
    dist.all_reduce(total)
    return total.to(tensor.device)


def sum_over_ranks(ranks: Ranks, *values: float | torch.Tensor) -> list[float]:
    """Each value summed over the ranks (one collective for all of them)."""
    local = torch.stack([torch.as_tensor(v, dtype=torch.float64).detach().cpu() for v in values])
    return all_reduce_sum(ranks, local).tolist()


def from_main(ranks: Ranks, value: float) -> float:
    """Rank 0's value on every rank: decisions that change the step or end the loop (the clock of
    --budget-minutes, a pruned trial) must be the same everywhere, or the ranks fall out of step."""
    if not ranks.enabled:
        return value
    return sum_over_ranks(ranks, value if ranks.is_main else 0.0)[0]


def shard(ranks: Ranks, n: int) -> slice:
    """This rank's contiguous part of n evaluation images (sizes differ by at most one)."""
    bounds = np.linspace(0, n, ranks.world_size + 1).round().astype(int)
    return slice(int(bounds[ranks.rank]), int(bounds[ranks.rank + 1]))


def reduce_metrics(ranks: Ranks, metrics: dict[str, float], n: int, names: list[str]) -> dict[str, float]:
    """Means over each rank's shard of n images -> means over all images (weighted by the shards' sizes).
    A rank whose shard is empty passes no metrics."""
    if not ranks.enabled:
        return metrics
    local = torch.tensor([n, *(metrics.get(k, 0.0) * n for k in names)], dtype=torch.float64)
    total = all_reduce_sum(ranks, local)
    return {k: float(total[i + 1] / total[0]) for i, k in enumerate(names)}


def sync_buffers(ranks: Ranks, model: nn.Module) -> None:
    """Give every rank rank 0's buffers (batch-norm running statistics), so that each rank's part of an
    evaluation is made with the model rank 0 saves."""
    if not ranks.enabled:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def collective_failure(error: BaseException) -> str | None:
    """A one-line message when `error` is a collective that failed because another rank died, hung or
    could not be reached (a timeout of --dist-timeout, a closed connection); None for any other error."""
    if not launched_by_torchrun():
        return None
    text = str(error).strip()
    from_backend = isinstance(error, dist.DistError) or (isinstance(error, RuntimeError) and any(
        word in text for word in ("gloo", "NCCL", "nccl", "c10d", *_TRANSPORT_FAILURES)))
    if not from_backend:
        return None
    first = text.splitlines()[0] if text else type(error).__name__
    if "]" in first:  # drop gloo's source-file prefix: "[.../unbound_buffer.cc:129] Timed out ..."
        first = first.split("]", 1)[1].strip() or first
    if _timeout_seconds is not None and not re.search(r"\d+ ?ms", first):  # say how long it waited when gloo does not
        first += f", no answer within --dist-timeout {_timeout_seconds:g} s"
    rank = os.environ.get("RANK", "?")
    return (f"rank {rank} lost contact with the other ranks ({first}); another rank has probably died or hung "
            f"(see torchrun's report), the job stops here")
