"""The training engine: one loop, readable top to bottom (after nanoGPT and airbench's `main`).

    train(cfg) -> TrainResult
      1. set up: resolve the config (the saved one on --resume), claim the run directory, build the data,
         model, loader, step and early stopping (build.set_up); open the run directory, or restore the last
         checkpoint (checkpoint.py)
      2. epochs: train (--prune-easy's images, then loop.train_one_epoch: the step lr-find shares),
         validate, checkpoint, log; stop early on --early-stopping, at the time budget, or when on_epoch_end
         says so
      3. the end: test once (unless evaluate_test is off), write the final weights and summary.json

The optional parts are objects that do nothing when off (TensorBoard, EMA, the freezer, DDP's helpers).
Under torchrun every rank runs this same function (distributed.py: DDP, sharded batches, reduced
metrics); only rank 0 prints and writes the run directory.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import shlex
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401 - the loss is augment.mix.mixed_cross_entropy; tests patch F

from .._threads import recorded_settings
from ..config import TrainConfig, takes_settings, with_overrides
from ..data import CifarData
from ..data.sources import resolve_data_path
from ..errors import CifarlabError, TrainingDiverged
from ..rundir import writer as rundir
from ..rundir.device import describe_cpu
from ..rundir.inference import classification_metrics, predict_logits
from ..rundir.lock import run_dir_lock
from ..rundir.result import TrainResult, _number
from . import distributed
from .build import Setup, set_up
from .checkpoint import checkpoint_state, restore_state, weights_metadata
from .loop import EpochResult, train_one_epoch
from .optim import restore_gradients
from .progressive import size_for_epoch
from .regularize import evaluated_model
from .resolve import resolve
from .tensorboard import TensorBoardLogger


@takes_settings()
def train(cfg: TrainConfig | None = None, *, resume: str | Path | None = None, overwrite: bool = False,
          verbose: bool = True, command: str | None = None,
          on_epoch_end: Callable[[dict[str, Any]], bool] | None = None, dataset: CifarData | None = None,
          **overrides: Any) -> TrainResult:
    """Train a model and return its run directory, summary and history.

    `cifarlab.train(model="baseline", epochs=2, data="path/to/cifar10")` in a notebook does what
    `cifarlab train --model baseline --epochs 2 --data path/to/cifar10` does in a terminal.
    `resume=RUN_DIR` continues an interrupted run from its last checkpoint (only `epochs` and `augment`
    may change: `--augment keras` on resume continues the same weights and optimizer with a new policy).
    `on_epoch_end(record)` is called after each epoch's checkpoint; returning True ends training there
    (tuning prunes trials this way).
    `dataset`: train on these in-memory images instead of loading cfg.data (the label check's folds do).
    """
    with contextlib.ExitStack() as held:  # the run directory's write lock (rundir/lock.py), until train returns
        return _train(cfg, resume=resume, overwrite=overwrite, verbose=verbose, command=command,
                      on_epoch_end=on_epoch_end, dataset=dataset, held=held, **overrides)


def _train(cfg: TrainConfig | None, *, resume: str | Path | None, overwrite: bool, verbose: bool, command: str | None,
           on_epoch_end: Callable[[dict[str, Any]], bool] | None, dataset: CifarData | None,
           held: contextlib.ExitStack, **overrides: Any) -> TrainResult:
    # 1. Config, device, precision, data, model, optimizer: every user error surfaces here, before anything is written.
    command = command or shlex.join(sys.argv)
    cfg, run_dir = _resolve_config(cfg, resume, overrides)
    ranks, device = distributed.setup(cfg.device, cfg.dist_timeout)  # one process unless under torchrun
    verbose = verbose and ranks.is_main
    if ranks.is_main:  # one writer per run directory: a second train, --resume or --overwrite of it refuses now
        held.enter_context(run_dir_lock(run_dir, command))
        if resume is None:  # a folder --overwrite may not replace: refused before the data is read
            rundir.check_new_run_dir(run_dir, overwrite)
    log = print if verbose else (lambda *a, **k: None)
    r = set_up(cfg, ranks, device, dataset, resume is not None, verbose, log)
    start_epoch, step, history, train_seconds, run_info = _open_run(r, run_dir, resume is not None, overwrite, command)
    tensorboard = TensorBoardLogger(run_dir, enabled=cfg.tensorboard and ranks.is_main,  # no-op unless on
                                    first_epoch=start_epoch)
    log(_start_line(r))

    # 2. The epochs: train, validate, checkpoint, log.
    wall_start = time.perf_counter()
    stopped = False
    try:
        for epoch in range(start_epoch, cfg.epochs):
            image_size = size_for_epoch(r.resize_stages, epoch)  # --progressive-resize; None: full size
            done = _train_epoch(r, epoch, image_size, step, train_seconds, verbose, log)
            step, train_seconds = done.step, train_seconds + done.seconds
            record = _train_record(r, epoch, done, image_size)
            if record is None:  # the time budget ran out before this epoch's first step
                break
            record.update(_validate(r))
            history.append(record)
            stopped = r.stopper.update(record)  # --early-stopping: no better val accuracy for PATIENCE epochs
            if ranks.is_main:
                _save_epoch(r, run_dir, epoch + 1, step, history, train_seconds)
            tensorboard.log_epoch(record)
            log(_epoch_line(record, cfg.epochs))
            stopped = _stop_after(r, record, stopped, on_epoch_end, log)
            if stopped or done.out_of_time:
                break
    except KeyboardInterrupt:
        tensorboard.close()
        log(f"\ninterrupted; continue with: cifarlab train --resume {run_dir}")
        raise
    except BaseException:
        tensorboard.close()
        if resume is None and ranks.is_main and rundir.latest_checkpoint(run_dir) is None:
            shutil.rmtree(run_dir, ignore_errors=True)  # no epoch saved: leave no half-made run behind
        raise
    finally:  # a parameter past its lr horizon stopped computing gradients; the model leaves as it came in
        restore_gradients(r.stepper.optimizer)

    # 3. The end: the test split, once (never in tuning trials); final weights (the EMA's with --ema); summary.
    model = evaluated_model(r.model, r.stepper.ema)
    test, eval_seconds = _test(r, model)
    if ranks.is_main:
        rundir.save_weights(run_dir / rundir.WEIGHTS, model, weights_metadata(cfg, r.classes, r.mean, r.std,
                                                                              cfg.epochs))
    last = history[-1] if history else {}
    tensorboard.log_test(test, last.get("epoch", 0))
    tensorboard.close()
    summary = _summary(r, history, test, stopped, train_seconds, time.perf_counter() - wall_start, eval_seconds,
                       run_info)
    if ranks.is_main:
        rundir.write_summary(run_dir, summary)
    distributed.teardown(ranks)
    result = f"test accuracy {test['accuracy']:.4f} (loss {test['loss']:.4f})" if test else "no test evaluation"
    log(f"{result} after {last.get('epoch', 0):g} epochs, {train_seconds:.1f} s of training; run directory: {run_dir}")
    return TrainResult(run_dir, summary, history, model)


# 1. Set up: the config and the run directory (the builders are build.py's).

def _resolve_config(cfg: TrainConfig | None, resume: str | Path | None,
                    overrides: dict[str, Any]) -> tuple[TrainConfig, Path]:
    """The run's config and directory: the saved config on --resume (only a few settings may change)."""
    if resume is None:
        cfg = with_overrides(cfg, overrides)
        cfg = resolve(cfg)
        run_dir = Path(cfg.out) if cfg.out else _default_run_dir(cfg.model)
        analyzed = cfg.drop_label_issues and str(Path(cfg.drop_label_issues).absolute())  # found from anywhere
        return dataclasses.replace(cfg, out=str(run_dir), data=_absolute_data(cfg.data),
                                   drop_label_issues=analyzed), run_dir
    run_dir = Path(resume)
    info = rundir.read_run_config(run_dir)
    _warn_if_threads_differ(run_dir, info)
    cfg = TrainConfig.from_dict(info["config"], source=str(run_dir / rundir.CONFIG))
    extra = {k: v for k, v in overrides.items()
             if v is not None and k not in ("epochs", "augment", "out", "dist_timeout")}
    if extra:
        raise CifarlabError(f"--resume continues {run_dir} with its saved config; only --epochs may change, "
                            f"plus --augment to switch the augmentation (got {', '.join(sorted(extra))})")
    cfg = dataclasses.replace(cfg, out=str(run_dir), data=rundir.recorded_data(run_dir, info),  # moved, copied
                              **{k: overrides[k] for k in ("epochs", "augment", "dist_timeout")
                                 if overrides.get(k) is not None})
    cfg = resolve(cfg)
    _check_resume_epochs(run_dir, cfg.epochs)
    return cfg, run_dir


def _default_run_dir(model: str) -> Path:
    return Path("runs") / f"{model.replace(':', '-')}-{datetime.now():%Y%m%d-%H%M%S}"


def _absolute_data(data: str | None) -> str | None:
    """The data path as a run records it: absolute, so that evaluate, analyze and --resume find it from any
    directory ($CIFARLAB_DATA included); None (the official archive) and a path that does not exist (which
    load_data reports) as they are."""
    path = resolve_data_path(data)
    return str(path.resolve()) if path is not None and path.exists() else data


def _warn_if_threads_differ(run_dir: Path, info: dict[str, Any]) -> None:
    """`cifarlab train --resume` repeats the run's --threads; the Python API leaves the process's threads alone
    but says when they differ from the run's fixed count (the results' last digits would)."""
    threads = recorded_settings(info).get("threads")
    if threads not in (None, "auto") and int(threads) != torch.get_num_threads():
        warnings.warn(f"{run_dir} was trained with {threads} CPU thread(s), this process computes with "
                      f"{torch.get_num_threads()}: the resumed run may end slightly differently from an uninterrupted "
                      f"one (cifarlab.set_threads({threads}) first repeats it exactly)", stacklevel=3)


def _check_resume_epochs(run_dir: Path, epochs: int) -> None:
    """Refuse, before anything is loaded or written, a resume that would shorten the run or redo a
    finished one (its summary would then say fewer epochs than were trained)."""
    done = rundir.checkpoint_epoch(rundir.resumable_checkpoint(run_dir))
    if epochs < done:
        raise CifarlabError(f"--epochs {epochs} is fewer than the {done} epochs {run_dir} has already trained; "
                            f"the run is left as it is (pass --epochs N with N > {done} to train it longer)")
    if epochs == done and (run_dir / rundir.SUMMARY).exists():
        raise CifarlabError(f"{run_dir} is already complete ({done} epochs); the run is left as it is "
                            f"(pass --epochs N with N > {done} to train it longer)")


def _open_run(r: Setup, run_dir: Path, resuming: bool, overwrite: bool,
              command: str) -> tuple[int, int, list[dict[str, Any]], float, dict[str, Any]]:
    """(first epoch, step, history, training seconds, run info): the checkpoint's state on --resume, else a
    fresh run directory; config.json written, metrics.jsonl made to agree with the history."""
    start_epoch, step, history, train_seconds = 0, 0, [], r.init_seconds  # the data-dependent init is training time
    if resuming:
        start_epoch, step, history, train_seconds = restore_state(run_dir, r.model, r.stepper, r.stopper, r.selection)
        if r.ranks.is_main:
            rundir.remove_temporaries(run_dir)  # what a kill -9 in the middle of a write left
    elif r.ranks.is_main:
        rundir.prepare_run_dir(run_dir, overwrite=overwrite)
    run_info = {"command": command}
    if r.ranks.is_main:  # a resume keeps the command that made the run and adds its own
        run_info = rundir.write_run_config(run_dir, r.cfg, r.classes, r.data.source, command,
                                           resumed_from=start_epoch if resuming else None)
        rundir.rewrite_metrics(run_dir, history)  # drops lines of an epoch whose checkpoint never landed
    return start_epoch, step, history, train_seconds, run_info


def _cpu_note(r: Setup) -> str:
    """Why `--precision auto` chose fp32 on a CPU: its bf16 would be emulated (about 10x slower than fp32)."""
    if r.device.type == "cpu" and r.cfg.precision == "auto" and r.precision == "fp32":
        cpu = describe_cpu()
        return f" ({cpu['cpu_isa']}, no native bf16)"
    return ""


def _start_line(r: Setup) -> str:
    cfg, ranks = r.cfg, r.ranks
    return (f"run {cfg.out}: {cfg.model} ({r.params:,} params), {len(r.fit_set):,} train / "
            f"{len(r.val_set) if r.val_set else 0:,} val images, {_planned(cfg)}, batch {cfg.batch_size}, "
            f"{cfg.optimizer} lr {cfg.lr:g}, {r.device.type} {r.precision}{_cpu_note(r)}"
            + (", compiled" if r.compiled else "")
            + (f", {ranks.world_size} ranks of {cfg.batch_size // ranks.world_size}" if ranks.enabled else "")
            + (f", {cfg.grad_accum} micro-batches per step" if cfg.grad_accum > 1 else "")
            + (f", progressive resize {cfg.progressive_resize}" if r.resize_stages else "")
            + (f", pruning {cfg.prune_easy:g} of the well-learned images" if r.selection is not None else ""))


def _planned(cfg: TrainConfig) -> str:
    """"30 epochs", or under --budget-minutes "10 minutes (at most 180 epochs)": the clock decides."""
    if cfg.budget_minutes:
        return f"{cfg.budget_minutes:g} minutes (at most {cfg.epochs} epochs)"
    return f"{cfg.epochs} epochs"


# 2. One epoch: train, validate, checkpoint, stop or go on.

def _train_epoch(r: Setup, epoch: int, image_size: int | None, step: int, trained_seconds: float, verbose: bool,
                 log: Callable[..., None]) -> EpochResult:
    """The epoch's steps (loop.train_one_epoch) on its images, with its frozen layers and dropout masks."""
    r.loader.set_epoch(epoch)
    if r.selection is not None:  # --prune-easy: this epoch's images and loss weights
        r.loader.set_subset(r.selection.plan(epoch))
    distributed.seed_rank(r.ranks, r.cfg.seed, epoch)  # ranks > 0: their own dropout masks
    r.net.train()
    r.freezer.start_epoch(epoch, log)  # frozen layers: no gradient, batch-norm statistics fixed
    done = train_one_epoch(r.stepper, r.loader, step=step, progress=r.progress, schedule=r.cfg.schedule,
                           warmup=r.cfg.warmup_epochs / r.cfg.epochs, trained_seconds=trained_seconds,
                           image_size=image_size, record_every=r.record_every, verbose=verbose,
                           desc=f"epoch {epoch + 1}/{r.cfg.epochs}")
    if r.selection is not None:
        r.selection.end_epoch(r.ranks)  # the scores the next epoch's plan reads
    return done


def _train_record(r: Setup, epoch: int, done: EpochResult, image_size: int | None) -> dict[str, Any] | None:
    """The epoch's metrics.jsonl line before validation (None when it trained no image): train loss over all
    ranks' images, the per-step loss curve."""
    loss_sum, correct, seen = distributed.sum_over_ranks(r.ranks, done.loss_sum, done.correct, done.seen)
    if seen == 0:
        return None
    train_loss = loss_sum / seen
    if not math.isfinite(train_loss):
        raise TrainingDiverged(f"training diverged at epoch {epoch + 1} (loss {train_loss}); lower --lr")
    record = {"epoch": epoch + seen / r.loader.num_images if done.out_of_time else epoch + 1,
              "train_loss": train_loss, "train_accuracy": correct / seen,
              "lr": r.stepper.optimizer.param_groups[0]["lr"], "epoch_seconds": done.seconds,
              "images_per_second": seen / done.seconds, "augment": r.cfg.augment,
              "image_size": image_size or r.full_size,
              "steps_per_epoch": len(r.loader), "train_loss_steps": _over_ranks(r.ranks, done.loss_steps)}
    if r.selection is not None:  # --prune-easy: the images this epoch skipped
        record["pruned_images"] = len(r.fit_set) - len(r.loader.subset) if r.loader.subset is not None else 0
    return record


def _over_ranks(ranks: distributed.Ranks, points: list[list[float]]) -> list[list[float]]:
    """Each window's loss averaged over the ranks (their shards differ by at most an image), in one collective."""
    if not ranks.enabled or not points:
        return points
    total = distributed.all_reduce_sum(ranks, torch.tensor([v for _, v in points], dtype=torch.float64))
    return [[step, value / ranks.world_size] for (step, _), value in zip(points, total.tolist())]


def _validate(r: Setup) -> dict[str, float]:
    """The validation split's val_loss, val_accuracy, val_top3_accuracy (nothing without one), of the EMA's
    weights when --ema: they are what gets saved."""
    if r.val_set is None:
        return {}
    val = _evaluate(evaluated_model(r.model, r.stepper.ema), r.val_set.images, r.val_set.labels, len(r.classes),
                    r.device, r.precision, r.cfg, r.ranks)
    return {f"val_{k}": v for k, v in val.items()}


def _save_epoch(r: Setup, run_dir: Path, epoch: int, step: int, history: list[dict[str, Any]],
                train_seconds: float) -> None:
    """The checkpoint (weights and everything an exact resume needs), then the epoch's metrics line."""
    state = checkpoint_state(epoch, step, r.stepper, r.stopper, r.selection, history, train_seconds)
    rundir.save_checkpoint(run_dir, epoch, r.model, state, weights_metadata(r.cfg, r.classes, r.mean, r.std, epoch))
    rundir.append_metrics(run_dir, history[-1])


def _stop_after(r: Setup, record: dict[str, Any], early: bool, on_epoch_end: Callable[[dict[str, Any]], bool] | None,
                log: Callable[..., None]) -> bool:
    """Whether training ends with this epoch: early stopping (`early`, said here) or on_epoch_end's answer."""
    if early:
        log(f"early stopping: no better validation accuracy than {r.stopper.best:.4f} (epoch "
            f"{r.stopper.best_epoch}) for {r.stopper.patience} epochs")
    if on_epoch_end is not None and distributed.from_main(r.ranks, r.ranks.is_main and on_epoch_end(record)):
        return True  # e.g. a tuning trial being pruned (asked on rank 0 only)
    return early


def _epoch_line(r: dict, epochs: int) -> str:
    val = f"  val loss {r['val_loss']:.4f} acc {r['val_accuracy']:.4f}" if "val_accuracy" in r else ""
    return (f"epoch {_number(r['epoch'])}/{epochs}  train loss {r['train_loss']:.4f} "
            f"acc {r['train_accuracy']:.4f}{val}"
            f"  {r['epoch_seconds']:.1f} s ({r['images_per_second']:,.0f} img/s)")


# 3. The end: the test split and the summary.

def _test(r: Setup, model: nn.Module) -> tuple[dict[str, float], float | None]:
    """The test split's metrics (with --tta) and the seconds they took; nothing when evaluate_test is off."""
    if not r.cfg.evaluate_test:
        return {}, None
    start = time.perf_counter()
    test = _evaluate(model, r.data.test.images, r.data.test.labels, len(r.classes), r.device, r.precision, r.cfg,
                     r.ranks, tta=r.cfg.tta)
    return test, time.perf_counter() - start


def _evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, num_classes: int, device, precision: str,
              cfg: TrainConfig, ranks: distributed.Ranks, tta: str = "none") -> dict[str, float]:
    """Loss and accuracies; under torchrun each rank scores its shard (with rank 0's batch-norm statistics)."""
    distributed.sync_buffers(ranks, model)
    part = distributed.shard(ranks, len(labels))
    logits = _logits(model, images[part], device, precision, cfg, tta)
    metrics = classification_metrics(logits, labels[part]) if len(logits) else {}
    return distributed.reduce_metrics(ranks, metrics, len(logits), ["loss", "accuracy",
                                                                    f"top{min(3, num_classes)}_accuracy"])


def _logits(model: nn.Module, images: np.ndarray, device, precision: str, cfg: TrainConfig,
            tta: str = "none") -> torch.Tensor:
    return predict_logits(model, images, device=device, precision=precision, batch_size=cfg.eval_batch_size,
                          channels_last=cfg.channels_last, tta=tta)


def _summary(r: Setup, history: list[dict[str, Any]], test: dict[str, float], stopped: bool, train_seconds: float,
             wall_seconds: float, eval_seconds: float | None, run_info: dict[str, Any]) -> dict[str, Any]:
    cfg, data = r.cfg, r.data
    last = history[-1] if history else {}
    best = max((h for h in history if h.get("val_accuracy") is not None), key=lambda h: h["val_accuracy"],
               default={})
    images_trained = sum(h["images_per_second"] * h["epoch_seconds"] for h in history)
    return {
        "model": cfg.model, "epochs": cfg.epochs, "epochs_completed": last.get("epoch", 0), "params": r.params,
        "test_accuracy": test.get("accuracy"), "test_loss": test.get("loss"),
        "test_top3_accuracy": test.get("top3_accuracy"),
        "val_accuracy": last.get("val_accuracy"), "val_loss": last.get("val_loss"),
        "best_val_accuracy": best.get("val_accuracy"), "best_val_epoch": best.get("epoch"),
        "stopped_early": stopped, "augment": cfg.augment, "ema": cfg.ema,
        "train_accuracy": last.get("train_accuracy"), "train_loss": last.get("train_loss"),
        "train_seconds": train_seconds, "wall_seconds": wall_seconds,
        "images_per_second": images_trained / train_seconds if train_seconds else None,
        "inference_images_per_second": len(data.test) / eval_seconds if eval_seconds else None,
        "test_seconds": eval_seconds, "tta": cfg.tta, "recipe": cfg.recipe,
        "train_images": len(r.fit_set), "val_images": len(r.val_set) if r.val_set else 0,
        "test_images": len(data.test),
        "batch_size": cfg.batch_size, "optimizer": cfg.optimizer, "lr": cfg.lr, "seed": cfg.seed,
        "device": str(r.device), "world_size": r.ranks.world_size, "precision": r.precision, "compile": r.compiled,
        "classes": r.classes,
        "data_source": data.source,
        "run_dir": cfg.out, "command": run_info["command"], "resumes": run_info.get("resumes", []),
        "versions": rundir.versions(),
        "transfer": r.transfer_info,
        "label_issues": r.label_issues,
    }
