"""The training engine: one loop, readable top to bottom (after nanoGPT and airbench).

    train(cfg) -> TrainResult
      1. resolve the config, the device and the precision
      2. data: load (cached), carve the validation split, optionally subset, put it on the device
      3. model, augmentation, optimizer, schedule, EMA, early stopping; when resuming, the last checkpoint
      4. epochs: train, validate, checkpoint, log; stop early on --early-stopping or when on_epoch_end says so
      5. the end: test once (unless evaluate_test is off), write the final weights and summary.json

Under torchrun every rank runs this same function (distributed.py: DDP, sharded batches, reduced
metrics); only rank 0 prints and writes the run directory.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401 - the loss is augment.mix.mixed_cross_entropy; tests patch F
from tqdm.auto import tqdm

from .._runlock import run_dir_lock
from .._threads import adapt as adapt_threads
from ..augment import create_augment
from ..augment.mix import mixed_cross_entropy
from ..config import TrainConfig, parse_progressive_resize
from ..data import CifarData, load_data, make_splits
from ..data.loader import DeviceLoader
from ..data.subsets import select_classes
from ..errors import CifarlabError, TrainingDiverged
from ..transfer.setup import prepare_model
from . import distributed, rundir
from .device import autocast, resolve_compile, resolve_precision
from .inference import classification_metrics, predict_logits, preprocessing
from .optim import build_optimizer, schedule_lr
from .progressive import check_model_accepts, resize_batch, size_for_epoch
from .regularize import EarlyStopping, build_model, evaluated_model, make_ema, update_ema, weight_penalty
from .tensorboard import TensorBoardLogger, require_tensorboard


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    model: nn.Module


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
    with contextlib.ExitStack() as held:  # the run directory's write lock (_runlock.py), until train returns
        return _train(cfg, resume=resume, overwrite=overwrite, verbose=verbose, command=command,
                      on_epoch_end=on_epoch_end, dataset=dataset, held=held, **overrides)


def _train(cfg: TrainConfig | None, *, resume: str | Path | None, overwrite: bool, verbose: bool, command: str | None,
           on_epoch_end: Callable[[dict[str, Any]], bool] | None, dataset: CifarData | None,
           held: contextlib.ExitStack, **overrides: Any) -> TrainResult:
    command = command or shlex.join(sys.argv)

    # 1. Config, device, precision. Every user error surfaces here, before anything is written.
    if resume is not None:
        run_dir = Path(resume)
        info = rundir.read_run_config(run_dir)
        cfg = TrainConfig.from_dict(info["config"], source=str(run_dir / rundir.CONFIG))
        extra = {k: v for k, v in overrides.items()
                 if v is not None and k not in ("epochs", "augment", "out", "dist_timeout")}
        if extra:
            raise CifarlabError(f"--resume continues {run_dir} with its saved config; only --epochs may change, "
                                f"plus --augment to switch the augmentation (got {', '.join(sorted(extra))})")
        cfg = dataclasses.replace(cfg, out=str(run_dir),  # the run may have been copied or moved
                                  **{k: overrides[k] for k in ("epochs", "augment", "dist_timeout")
                                     if overrides.get(k) is not None})
        cfg = cfg.resolved()
        _check_resume_epochs(run_dir, cfg.epochs)
    else:
        cfg = dataclasses.replace(cfg or TrainConfig(), **{k: v for k, v in overrides.items() if v is not None})
        cfg = cfg.resolved()
        run_dir = Path(cfg.out) if cfg.out else _default_run_dir(cfg.model)
        cfg = dataclasses.replace(cfg, out=str(run_dir))
    ranks, device = distributed.setup(cfg.device, cfg.dist_timeout)  # one process unless under torchrun
    verbose = verbose and ranks.is_main
    if ranks.is_main:  # one writer per run directory: a second train, --resume or --overwrite of it refuses now
        held.enter_context(run_dir_lock(run_dir, command))
    log = print if verbose else (lambda *a, **k: None)
    precision = resolve_precision(cfg.precision, device)
    compiled = resolve_compile(cfg.compile, device)
    if cfg.tensorboard:
        require_tensorboard()
    _seed_everything(cfg.seed)

    # 2. Data: decoded once and cached; the test split is only touched at the very end.
    # --classes: those only, relabelled; `dataset` (the label check's folds) is used as given
    data = select_classes(load_data(cfg.data, progress=verbose), cfg.classes) if dataset is None else dataset
    classes = data.classes
    splits = make_splits(cfg, data)  # --val-size, --train-size, --label-fraction: as Run.splits() rebuilds them
    fit_set, val_set = splits.train, splits.val

    # 3. Model, augmentation, optimizer, schedule.
    distributed.check_batch(ranks, cfg.batch_size, cfg.grad_accum, len(fit_set))  # the batch is global
    model = build_model(cfg, len(classes))  # create_model(cfg.model, **cfg.model_kwargs), dropout included
    # Transfer: --pretrained / --init-from weights, their preprocessing (--input-size), --freeze and its schedule.
    # On --resume the weights come from the checkpoint instead.
    freezer, transfer_info = prepare_model(model, cfg, classes, log, load_weights=resume is None)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    if ranks.world_size > 1 and freezer.active:
        if cfg.unfreeze_schedule:  # DDP fixes the set of trained parameters when it wraps the model
            raise CifarlabError("--unfreeze-schedule does not work under torchrun yet: DDP cannot add parameters "
                                "to training later; use --freeze backbone or --freeze none")
        freezer.start_epoch(0)  # so that DDP registers only the parameters that train
    model, net = distributed.data_parallel(model, ranks, device, cfg.sync_bn)  # net trains: DDP(model) or model
    if compiled:  # --compile: the training forward only; evaluation and the saved weights use the plain model
        net = torch.compile(net)
    mean, std = preprocessing(model)
    full_size = fit_set.images.shape[1]  # (N, H, W, C)
    resize_stages = parse_progressive_resize(cfg.progressive_resize) if cfg.progressive_resize else []
    if resize_stages:  # --progressive-resize: fail now, not in epoch 1, if the model cannot take the sizes
        check_model_accepts(model, resize_stages, full_size, device, cfg.model)
    drop_last = len(fit_set) > cfg.batch_size  # a tiny final batch makes batch norm noisy
    # Image policies run in the loader on each uint8 batch; mixup/cutmix run in the loop (augment.mix).
    augment = create_augment(cfg.augment)
    loader = DeviceLoader(fit_set.images, fit_set.labels, batch_size=cfg.batch_size, device=device, mean=mean,
                          std=std, shuffle=True, drop_last=drop_last, seed=cfg.seed, channels_last=cfg.channels_last,
                          augment=augment if augment.transforms else None, rank=ranks.rank, world_size=ranks.world_size)
    init_seconds = 0.0 if resume is not None else _initialize_from_data(model, loader, cfg.seed)
    optimizer = build_optimizer(model, cfg)
    ema = make_ema(model, cfg.ema)  # None unless --ema
    stopper = EarlyStopping(cfg.early_stopping)  # never stops unless --early-stopping
    total_steps = cfg.epochs * len(loader)
    budget_seconds = cfg.budget_minutes * 60 if cfg.budget_minutes else None
    warmup = cfg.warmup_epochs / cfg.epochs
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    params = sum(p.numel() for p in model.parameters())

    start_epoch, step, history, train_seconds = 0, 0, [], init_seconds  # the data-dependent init is training time
    if resume is not None:
        start_epoch, step, history, train_seconds = _restore(run_dir, model, optimizer, scaler, ema, stopper)
        if ranks.is_main:
            rundir.remove_temporaries(run_dir)  # what a kill -9 in the middle of a write left
    elif ranks.is_main:
        rundir.prepare_run_dir(run_dir, overwrite=overwrite)
    run_info = {"command": command}
    if ranks.is_main:  # a resume keeps the command that made the run and adds its own
        run_info = rundir.write_run_config(run_dir, cfg, classes, data.source, command,
                                           resumed_from=start_epoch if resume is not None else None)
        rundir.rewrite_metrics(run_dir, history)  # drops lines of an epoch whose checkpoint never landed
    tensorboard = TensorBoardLogger(run_dir, enabled=cfg.tensorboard and ranks.is_main,  # no-op unless on
                                    first_epoch=start_epoch)
    log(f"run {run_dir}: {cfg.model} ({params:,} params), {len(fit_set):,} train / "
        f"{len(val_set) if val_set else 0:,} val images, {cfg.epochs} epochs, batch {cfg.batch_size}, "
        f"{cfg.optimizer} lr {cfg.lr:g}, {device.type} {precision}" + (", compiled" if compiled else "")
        + (f", {ranks.world_size} ranks of {cfg.batch_size // ranks.world_size}" if ranks.enabled else "")
        + (f", {cfg.grad_accum} micro-batches per step" if cfg.grad_accum > 1 else "")
        + (f", progressive resize {cfg.progressive_resize}" if resize_stages else ""))

    # 4. The epochs.
    wall_start = time.perf_counter()
    out_of_time = stopped = False
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if out_of_time or stopped:
                break
            loader.set_epoch(epoch)
            image_size = size_for_epoch(resize_stages, epoch)  # --progressive-resize; None: full size
            distributed.seed_rank(ranks, cfg.seed, epoch)  # ranks > 0: their own dropout masks
            net.train()
            freezer.start_epoch(epoch, log)  # frozen layers: no gradient, batch-norm statistics fixed
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, unit="batch",
                       disable=None if verbose else True, dynamic_ncols=True, mininterval=0.5)
            epoch_start = time.perf_counter()
            for batch_index, (x, y) in enumerate(bar):
                # Progress is the share of steps done, or of the time budget spent, whichever is larger.
                elapsed = train_seconds + time.perf_counter() - epoch_start
                if budget_seconds:  # one clock for every rank: the same lr, the same last step
                    elapsed = distributed.from_main(ranks, elapsed)
                progress = max(step / total_steps, elapsed / budget_seconds if budget_seconds else 0.0)
                if progress >= 1.0:
                    out_of_time = True
                    break
                schedule_lr(optimizer, progress, cfg.schedule, warmup)
                x, y_a, y_b, lam = augment.mix(x, y, loader.generator)  # (x, y, y, 1.0) without mixup/cutmix
                x = resize_batch(x, image_size)
                batch_images = min(cfg.batch_size, loader.num_images - batch_index * cfg.batch_size)  # all ranks
                optimizer.zero_grad(set_to_none=True)
                # --grad-accum K: K micro-batches, each loss weighted by its share of the global batch.
                for weight, (xs, ys_a, ys_b) in distributed.micro_batches(net, ranks, cfg.grad_accum, batch_images,
                                                                          x, y_a, y_b):
                    with autocast(device, precision):
                        logits = net(xs)
                        loss = mixed_cross_entropy(logits, ys_a, ys_b, lam, cfg.label_smoothing)
                    loss = loss + weight_penalty(model, cfg.l1, cfg.l2)  # 0 unless --l1 / --l2
                    scaler.scale(loss * weight).backward()
                    loss_sum += loss.detach() * len(ys_a)
                    correct += (logits.argmax(1) == ys_a).sum()
                    seen += len(ys_a)
                scaler.step(optimizer)
                scaler.update()
                update_ema(ema, model)  # no-op unless --ema
                step += 1
                adapt_threads()  # --threads auto: use the cores other processes leave free (every 2 s)
                if batch_index % 25 == 0 and not bar.disable:
                    rate = seen / max(1e-9, time.perf_counter() - epoch_start)
                    bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}",
                                    img_s=f"{rate:,.0f}")
            epoch_seconds = time.perf_counter() - epoch_start
            train_seconds += epoch_seconds
            loss_sum, correct, seen = distributed.sum_over_ranks(ranks, loss_sum, correct, seen)  # all images
            if seen == 0:
                break
            train_loss = loss_sum / seen
            if not math.isfinite(train_loss):
                raise TrainingDiverged(f"training diverged at epoch {epoch + 1} (loss {train_loss}); lower --lr")

            record = {"epoch": epoch + seen / loader.num_images if out_of_time else epoch + 1,
                      "train_loss": train_loss, "train_accuracy": correct / seen,
                      "lr": optimizer.param_groups[0]["lr"], "epoch_seconds": epoch_seconds,
                      "images_per_second": seen / epoch_seconds, "augment": cfg.augment,
                      "image_size": image_size or full_size}
            if val_set is not None:  # the EMA's weights when --ema: they are what gets saved
                val = _evaluate(evaluated_model(model, ema), val_set.images, val_set.labels, len(classes), device,
                                precision, cfg, ranks)
                record.update({f"val_{k}": v for k, v in val.items()})
            history.append(record)
            stopped = stopper.update(record)  # --early-stopping: no better val accuracy for PATIENCE epochs
            if ranks.is_main:
                rundir.save_checkpoint(run_dir, epoch + 1, model, {
                    "epoch": epoch + 1, "step": step, "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(), "rng": _rng_state(), "history": history,
                    "train_seconds": train_seconds, "ema": ema.state_dict() if ema is not None else None,
                    "early_stopping": stopper.state_dict(),
                }, _weights_metadata(cfg, classes, mean, std, epoch + 1))
                rundir.append_metrics(run_dir, record)
            tensorboard.log_epoch(record)
            log(_epoch_line(record, cfg.epochs))
            if stopped:
                log(f"early stopping: no better validation accuracy than {stopper.best:.4f} (epoch "
                    f"{stopper.best_epoch}) for {stopper.patience} epochs")
            if on_epoch_end is not None and distributed.from_main(ranks, ranks.is_main and on_epoch_end(record)):
                stopped = True  # e.g. a tuning trial being pruned (asked on rank 0 only)
    except KeyboardInterrupt:
        tensorboard.close()
        log(f"\ninterrupted; continue with: cifarlab train --resume {run_dir}")
        raise
    except BaseException:
        tensorboard.close()
        if resume is None and ranks.is_main and rundir.latest_checkpoint(run_dir) is None:
            shutil.rmtree(run_dir, ignore_errors=True)  # no epoch saved: leave no half-made run behind
        raise

    # 5. The end: the test split, once (never in tuning trials); final weights (the EMA's with --ema); summary.
    model = evaluated_model(model, ema)
    test, eval_seconds = {}, None
    if cfg.evaluate_test:
        eval_start = time.perf_counter()
        test = _evaluate(model, data.test.images, data.test.labels, len(classes), device, precision, cfg, ranks,
                         tta=cfg.tta)
        eval_seconds = time.perf_counter() - eval_start
    if ranks.is_main:
        rundir.save_weights(run_dir / rundir.WEIGHTS, model, _weights_metadata(cfg, classes, mean, std, cfg.epochs))
    last = history[-1] if history else {}
    tensorboard.log_test(test, last.get("epoch", 0))
    tensorboard.close()
    best = max((h for h in history if h.get("val_accuracy") is not None), key=lambda h: h["val_accuracy"],
               default={})
    images_trained = sum(h["images_per_second"] * h["epoch_seconds"] for h in history)
    summary = {
        "model": cfg.model, "epochs": cfg.epochs, "epochs_completed": last.get("epoch", 0), "params": params,
        "test_accuracy": test.get("accuracy"), "test_loss": test.get("loss"),
        "test_top3_accuracy": test.get("top3_accuracy"),
        "val_accuracy": last.get("val_accuracy"), "val_loss": last.get("val_loss"),
        "best_val_accuracy": best.get("val_accuracy"), "best_val_epoch": best.get("epoch"),
        "stopped_early": stopped, "augment": cfg.augment, "ema": cfg.ema,
        "train_accuracy": last.get("train_accuracy"), "train_loss": last.get("train_loss"),
        "train_seconds": train_seconds, "wall_seconds": time.perf_counter() - wall_start,
        "images_per_second": images_trained / train_seconds if train_seconds else None,
        "inference_images_per_second": len(data.test) / eval_seconds if eval_seconds else None,
        "test_seconds": eval_seconds, "tta": cfg.tta, "recipe": cfg.recipe,
        "train_images": len(fit_set), "val_images": len(val_set) if val_set else 0, "test_images": len(data.test),
        "batch_size": cfg.batch_size, "optimizer": cfg.optimizer, "lr": cfg.lr, "seed": cfg.seed,
        "device": str(device), "world_size": ranks.world_size, "precision": precision, "compile": compiled,
        "classes": classes,
        "data_source": data.source,
        "run_dir": str(run_dir), "command": run_info["command"], "resumes": run_info.get("resumes", []),
        "versions": rundir.versions(),
        "transfer": transfer_info,
    }
    if ranks.is_main:
        rundir.write_summary(run_dir, summary)
    distributed.teardown(ranks)
    result = f"test accuracy {test['accuracy']:.4f} (loss {test['loss']:.4f})" if test else "no test evaluation"
    log(f"{result} after {last.get('epoch', 0):g} epochs, {train_seconds:.1f} s of training; run directory: {run_dir}")
    return TrainResult(run_dir, summary, history, model)


def _logits(model: nn.Module, images: np.ndarray, device, precision: str, cfg: TrainConfig,
            tta: str = "none") -> torch.Tensor:
    return predict_logits(model, images, device=device, precision=precision, batch_size=cfg.eval_batch_size,
                          channels_last=cfg.channels_last, tta=tta)


def _initialize_from_data(model: nn.Module, loader: DeviceLoader, seed: int, n: int = 5000) -> float:
    """Models that set weights from the training images (airbench's patch whitening) get a seeded
    sample of up to n of them, normalized; returns the seconds it took."""
    if not hasattr(model, "initialize_from_data"):
        return 0.0
    start = time.perf_counter()
    pick = torch.randperm(len(loader.labels), generator=torch.Generator().manual_seed(seed))[:n].to(loader.device)
    model.initialize_from_data(loader.normalize(loader.images[pick]))
    return time.perf_counter() - start


def _evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, num_classes: int, device, precision: str,
              cfg: TrainConfig, ranks: distributed.Ranks, tta: str = "none") -> dict[str, float]:
    """Loss and accuracies; under torchrun each rank scores its shard (with rank 0's batch-norm statistics)."""
    distributed.sync_buffers(ranks, model)
    part = distributed.shard(ranks, len(labels))
    logits = _logits(model, images[part], device, precision, cfg, tta)
    metrics = classification_metrics(logits, labels[part]) if len(logits) else {}
    return distributed.reduce_metrics(ranks, metrics, len(logits), ["loss", "accuracy",
                                                                    f"top{min(3, num_classes)}_accuracy"])


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


def _restore(run_dir: Path, model, optimizer, scaler, ema, stopper) -> tuple[int, int, list[dict], float]:
    ckpt = rundir.resumable_checkpoint(run_dir)
    rundir.load_weights_into(model, ckpt / rundir.WEIGHTS)
    state = rundir.load_checkpoint_state(ckpt)
    try:
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        stopper.load_state_dict(state.get("early_stopping"))
        _set_rng_state(state["rng"])
        return int(state["epoch"]), int(state["step"]), list(state["history"]), float(state["train_seconds"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a damaged or hand-edited state
        raise CifarlabError(f"the checkpoint {ckpt} does not fit this run ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from None


def _weights_metadata(cfg: TrainConfig, classes, mean, std, epoch: int) -> dict[str, Any]:
    return {"model": cfg.model, "classes": classes, "mean": mean, "std": std, "epoch": epoch,
            "model_kwargs": cfg.model_kwargs}


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _default_run_dir(model: str) -> Path:
    return Path("runs") / f"{model.replace(':', '-')}-{datetime.now():%Y%m%d-%H%M%S}"


def _epoch_line(r: dict, epochs: int) -> str:
    val = f"  val loss {r['val_loss']:.4f} acc {r['val_accuracy']:.4f}" if "val_accuracy" in r else ""
    return (f"epoch {_epoch_number(r['epoch'])}/{epochs}  train loss {r['train_loss']:.4f} "
            f"acc {r['train_accuracy']:.4f}{val}"
            f"  {r['epoch_seconds']:.1f} s ({r['images_per_second']:,.0f} img/s)")


def _epoch_number(epoch: float) -> str:
    """3 for a whole epoch; 1.07 for one cut short by --budget-minutes (not 1.0683760683760684)."""
    return f"{epoch:.2f}".rstrip("0").rstrip(".")
