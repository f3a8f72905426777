"""`cifarlab lr-find`: the learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training
Neural Networks", section 3.3; the fastai lr_find): train a fresh model for `steps` mini-batches while
the learning rate grows exponentially from `start` to `end`, record the loss, smooth it (an exponential
moving average with bias correction, beta 0.98), and stop once the smoothed loss exceeds 4× its minimum.

The suggestion is the learning rate at the minimum of the smoothed loss divided by 10 ("min/10"): at the
minimum the loss is about to blow up, and a tenth of it is still on the steep, fast-learning part of
the curve. The point of steepest descent (the most negative slope of the smoothed loss against log lr)
is reported and drawn too; on short, noisy sweeps it jumps around more than min/10.

    DIR/lr_find.png    loss against learning rate (log x), both points marked
    DIR/lr_find.json   the sweep: lrs, losses, smoothed losses, the suggestion and how it was chosen
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_path, write_json_atomic
from ..config import TrainConfig, takes_settings, with_overrides
from ..data import load_data
from ..data.subsets import select_classes
from ..errors import CifarlabError
from ..rundir.device import resolve_device, resolve_precision
from .build import build_training_model, initialize_from_data, make_stepper, training_loader, training_split
from .loop import batches, train_step
from .resolve import resolve


@dataclass
class LrFindResult:
    suggested_lr: float  # min/10
    steepest_lr: float | None
    min_loss_lr: float
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    diverged: bool
    figure: Path
    json: Path


@takes_settings()
def lr_find(cfg: TrainConfig | None = None, *, out: str | Path, start: float = 1e-6, end: float = 1.0,
            steps: int = 100, beta: float = 0.98, diverge_factor: float = 4.0, verbose: bool = True,
            **overrides: Any) -> LrFindResult:
    """Run the range test on the run the config describes: its recipe, model (with --pretrained /
    --init-from weights, --input-size and --freeze), data subset (--classes, --train-size,
    --label-fraction), augmentation, batch size, optimizer and penalties, through train()'s own step.

    The swept lr plays the part of --lr: parameter groups the recipe gives another rate (airbench's
    whitening bias, a --backbone-lr-scale backbone) keep their ratio to it."""
    log = print if verbose else (lambda *a, **k: None)
    if not 0 < start < end:
        raise CifarlabError(f"lr-find needs 0 < --start < --end, got {start:g} and {end:g}")
    if steps < 5:
        raise CifarlabError(f"--steps must be at least 5, got {steps}")
    cfg = with_overrides(cfg, overrides)
    cfg = resolve(cfg)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)

    data = select_classes(load_data(cfg.data, progress=verbose), cfg.classes)
    fit_set, _ = training_split(data, cfg)  # the validation images stay unseen
    model, freezer, _ = build_training_model(cfg, data.classes, device, log)
    loader, augment = training_loader(cfg, fit_set, model, device)
    initialize_from_data(model, loader, cfg.seed)  # airbench's whitening, as train() does
    stepper = make_stepper(cfg, model, model, augment, device, precision)
    model.train()
    freezer.start_epoch(0, log)  # frozen layers as in the run's first epoch
    log(f"lr-find: {cfg.model}, {steps} steps from {start:g} to {end:g}, batch {cfg.batch_size}, {cfg.optimizer}, "
        f"{len(fit_set):,} images, {device.type} {precision}")

    lrs, losses, smoothed = [], [], []
    average, best, diverged = 0.0, math.inf, False
    for step, (x, y) in enumerate(batches(loader, steps)):
        lr = start * (end / start) ** (step / (steps - 1))
        for group in stepper.optimizer.param_groups:
            group["lr"] = lr * group.get("base_lr", cfg.lr) / cfg.lr
        loss_sum, _, seen = train_step(stepper, x, y, loader.generator, batch_images=len(y))
        value = loss_sum.item() / seen  # the range test reads every step's loss
        if not math.isfinite(value):
            diverged = True
            break
        average = beta * average + (1 - beta) * value
        smooth = average / (1 - beta ** (step + 1))
        lrs.append(lr)
        losses.append(value)
        smoothed.append(smooth)
        best = min(best, smooth)
        if smooth > diverge_factor * best:
            diverged = True
            break
    if len(lrs) < 2:
        raise CifarlabError(f"the loss diverged at once (lr {start:g}); try a smaller --start")

    i_min = int(np.argmin(smoothed))
    min_loss_lr = lrs[i_min]
    steepest_lr = _steepest(lrs, smoothed, i_min)
    suggested = min_loss_lr / 10
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figure, json_path = out / "lr_find.png", out / "lr_find.json"
    _plot(lrs, losses, smoothed, suggested, steepest_lr, figure, cfg.model)
    write_json_atomic(json_path, {
        "model": cfg.model, "suggested_lr": suggested, "suggestion": "min/10: the lr at the minimum of the smoothed "
        "loss, divided by 10", "min_loss_lr": min_loss_lr, "steepest_lr": steepest_lr, "diverged": diverged,
        "steps_run": len(lrs), "start": start, "end": end, "batch_size": cfg.batch_size, "optimizer": cfg.optimizer,
        "train_images": len(fit_set), "classes": data.classes,
        "lrs": lrs, "losses": losses, "smoothed_losses": smoothed, "config": cfg.to_dict(),
    })
    return LrFindResult(suggested, steepest_lr, min_loss_lr, lrs, losses, smoothed, diverged, figure, json_path)


def _steepest(lrs: list[float], smoothed: list[float], i_min: int) -> float | None:
    """The lr where the smoothed loss falls fastest against log(lr), before its minimum."""
    if i_min < 2:
        return None
    slopes = np.gradient(np.asarray(smoothed[:i_min + 1]), np.log(np.asarray(lrs[:i_min + 1])))
    return float(lrs[int(np.argmin(slopes))])


def _plot(lrs, losses, smoothed, suggested, steepest, path: Path, model: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # here: importing training stays quick
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))  # the Agg canvas, no pyplot: no global backend, no figure left open
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(lrs, losses, color="0.75", lw=0.8, label="loss")
    ax.plot(lrs, smoothed, color="C0", lw=1.8, label="smoothed loss")
    ax.axvline(suggested, color="C3", ls="--", label=f"suggested {suggested:.2g} (min/10)")
    if steepest:
        ax.axvline(steepest, color="C2", ls=":", label=f"steepest descent {steepest:.2g}")
    ax.set_xscale("log")
    top = max(smoothed[0], min(smoothed)) * 1.5
    ax.set_ylim(min(min(losses), min(smoothed)) * 0.95, max(top, min(smoothed) * 1.05))
    ax.set(xlabel="learning rate", ylabel="training loss", title=f"Learning-rate range test: {model}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
