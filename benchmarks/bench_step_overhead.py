"""The engine's host work per training step, measured on the CPU: a tiny model at a tiny batch, so that the
arithmetic is small and what is left is the Python and dispatch work around it (on a GPU, that work decides
the fast recipe's time: the device finishes a step before the host has queued the next).

Three ways to run the same steps, each on the same model, optimizer (the recipe's own) and batches:

    bare     airbench's loop: batches made beforehand; set the lr, forward, loss, backward, optimizer step
    step     cifarlab's one training step (loop.train_step) on the same prepared batches
    epoch    cifarlab's epoch (loop.train_one_epoch): the step plus the device loader (gather, augment,
             normalize), the schedule, the progress bar's bookkeeping and the loss curve

Each is timed as the best of --repeats passes of --steps steps (after a warm-up pass), in microseconds per
step; "overhead" is the difference to `bare`. The aten operations each dispatches per step are counted too
(a TorchDispatchMode over one more pass): on a GPU each is at least one kernel launch, so the count is the
host work that a CPU's timing, where the arithmetic and its noise are larger, cannot show. --profile adds
cProfile's heaviest functions of one `epoch` pass, which name where the time goes.

    python benchmarks/bench_step_overhead.py                       # the fast recipe's model, narrowed
    python benchmarks/bench_step_overhead.py --recipe none --model baseline --batch-size 8 --profile
"""
from __future__ import annotations

import argparse
import collections
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, reference_seconds  # noqa: E402

from cifarlab.config import TrainConfig  # noqa: E402
from cifarlab.data.types import CIFAR10_CLASSES, CifarData, ImageSet  # noqa: E402
from cifarlab.rundir.device import autocast, cpu_has_fast_bf16  # noqa: E402
from cifarlab.training import distributed  # noqa: E402
from cifarlab.training.build import set_up  # noqa: E402
from cifarlab.training.loop import train_one_epoch, train_step  # noqa: E402
from cifarlab.training.optim import restore_gradients  # noqa: E402
from cifarlab.training.resolve import resolve  # noqa: E402


def synthetic_data(images: int, seed: int = 0) -> CifarData:
    rng = np.random.default_rng(seed)
    train = ImageSet(rng.integers(0, 256, (images, 32, 32, 3), dtype=np.uint8),
                     rng.integers(0, 10, images), list(CIFAR10_CLASSES))
    test = ImageSet(train.images[:10], train.labels[:10], list(CIFAR10_CLASSES))
    return CifarData(train, test, "synthetic")


def build(cfg: TrainConfig, images: int):
    """The Setup train() would build for cfg (resolved as train() resolves it) on synthetic images."""
    cfg = resolve(cfg)
    return set_up(cfg, distributed.Ranks(), torch.device("cpu"), synthetic_data(images, cfg.seed), resuming=False,
                  verbose=False, log=lambda *a, **k: None)


def prepared_batches(r, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`steps` batches from the run's own loader, made before timing (as airbench augments a whole epoch)."""
    out = []
    while len(out) < steps:
        out.extend((x, y) for x, y in r.loader)
    return out[:steps]


def bare_pass(r, batches) -> None:
    """airbench94's loop body, nothing else."""
    opt, model, n = r.stepper.optimizer, r.net, len(batches)
    for i, (x, y) in enumerate(batches):
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * (1 - i / n) if "base_lr" in group else group["lr"]
        with autocast(r.device, r.precision):
            loss = F.cross_entropy(model(x), y, label_smoothing=r.cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def step_pass(r, batches) -> None:
    generator = torch.Generator().manual_seed(0)
    for x, y in batches:
        train_step(r.stepper, x, y, generator, batch_images=len(y))


def epoch_pass(r, steps: int) -> None:
    done = 0
    while done < steps:
        result = train_one_epoch(r.stepper, r.loader, step=done, progress=r.progress, schedule=r.cfg.schedule,
                                 warmup=r.cfg.warmup_epochs / r.cfg.epochs, record_every=r.record_every,
                                 verbose=False)
        done = result.step
    restore_gradients(r.stepper.optimizer)  # as train() does: the next pass starts with every gradient


def best_microseconds(fn, steps: int, repeats: int) -> float:
    fn()  # warm-up: the allocator, oneDNN's primitive cache, the optimizer's state
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / steps * 1e6


class CountOps(TorchDispatchMode):
    """Counts the aten operations dispatched inside it (each is at least one kernel launch on a GPU)."""

    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def ops_per_step(fn, steps: int) -> tuple[float, collections.Counter]:
    with CountOps() as counted:
        fn()
    return sum(counted.ops.values()) / steps, counted.ops


def profile_epoch(r, steps: int, top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    epoch_pass(r, steps)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="fast", help="a named recipe, or 'none' (default fast)")
    p.add_argument("--model", default=None, help="the model (default: the recipe's)")
    p.add_argument("--widths", default="8,16,16", help="airbench's block widths (default 8,16,16: tiny); '' keeps them")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=200, help="steps per timed pass")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", default="fp32", help="fp32 (default: the least arithmetic per dispatch) or bf16")
    p.add_argument("--profile", action="store_true", help="print cProfile's heaviest functions of an epoch pass")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    ref_before = reference_seconds()
    settings = {"batch_size": args.batch_size, "precision": args.precision, "seed": 0, "val_size": 0, "tta": "none",
                "epochs": 1}
    if args.recipe != "none":
        settings["recipe"] = args.recipe
    if args.model:
        settings["model"] = args.model
    if args.widths and (args.model or "airbench") == "airbench":
        settings["model_kwargs"] = {"widths": [int(w) for w in args.widths.split(",")]}
    cfg = TrainConfig(**settings)
    images = args.steps * args.batch_size
    r = build(cfg, images)
    batches = prepared_batches(r, args.steps)
    rows, results, ops, counts = [], {}, {}, {}
    for name, fn in (("bare", lambda: bare_pass(r, batches)), ("step", lambda: step_pass(r, batches)),
                     ("epoch", lambda: epoch_pass(r, args.steps))):
        results[name] = best_microseconds(fn, args.steps, args.repeats)
        ops[name], counts[name] = ops_per_step(fn, args.steps)
    ref_after = reference_seconds()
    for name, us in results.items():
        over = us - results["bare"]
        rows.append([name, f"{us:,.0f}", f"{over:+,.0f}" if name != "bare" else "",
                     f"{us / results['bare']:.2f}x", f"{ops[name]:.1f}",
                     f"{ops[name] - ops['bare']:+.1f}" if name != "bare" else ""])
    cpu = f"{torch.backends.cpu.get_cpu_capability()}, {'native' if cpu_has_fast_bf16() else 'emulated'} bf16"
    print(f"{r.cfg.model} {r.cfg.model_kwargs or ''}, batch {args.batch_size}, {args.precision}, {args.threads} "
          f"thread(s), {args.steps} steps per pass, best of {args.repeats}; CPU {cpu}; reference workload "
          f"{ref_before:.2f} s before, {ref_after:.2f} s after")
    print(markdown_table(["loop", "us per step", "overhead us", "vs bare", "ops per step", "extra ops"], rows))
    for name in ("step", "epoch"):
        extra = {k: round(v / args.steps, 2) for k, v in (counts[name] - counts["bare"]).items()}
        print(f"{name}'s extra ops per step: {extra}")
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "us_per_step": results,
                                         "ops_per_step": ops, "reference_seconds": [ref_before, ref_after],
                                         "cpu": cpu}, indent=1))
    if args.profile:
        print(profile_epoch(r, args.steps, 25))


if __name__ == "__main__":
    main()
