"""What train() returns, and how it shows itself: a one-line repr in a terminal, and in a notebook
the summary numbers beside the learning curves (per-step training loss, per-epoch validation)."""
from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    model: nn.Module

    def __repr__(self) -> str:
        s = self.summary
        test = f"test accuracy {s['test_accuracy']:.4f}" if s.get("test_accuracy") is not None else "no test"
        return (f"TrainResult({s.get('model')}, {_number(s.get('epochs_completed', 0))}/{s.get('epochs')} epochs, "
                f"{test}, run_dir={str(self.run_dir)!r})")

    def _repr_html_(self) -> str:
        s = self.summary
        rows = [("model", s.get("model")), ("epochs", f"{_number(s.get('epochs_completed', 0))} of {s.get('epochs')}"),
                ("test accuracy", _fmt(s.get("test_accuracy"))), ("best val accuracy", _fmt(s.get("best_val_accuracy"))
                 + (f" (epoch {_number(s['best_val_epoch'])})" if s.get("best_val_epoch") is not None else "")),
                ("train loss", _fmt(s.get("train_loss"))), ("training time", f"{s.get('train_seconds', 0):.1f} s"),
                ("images/s", f"{s['images_per_second']:,.0f}" if s.get("images_per_second") else "-"),
                ("run directory", str(self.run_dir))]
        table = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                        f"{html.escape(str(v))}</td></tr>" for k, v in rows)
        curves = (f"<img alt='learning curves' src='data:image/png;base64,{curves_png(self.history)}'>"
                  if self.history else "")
        return f"<div><table>{table}</table>{curves}</div>"


def step_losses(history: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(epoch, loss) for every recorded training step: x is the epoch's start plus the share of its steps
    done, so epochs of different lengths (--prune-easy) line up; [] when the history has no per-step
    losses (runs from before they were recorded)."""
    points, first_step = [], 0  # the global step an epoch starts at: the last mark of the one before
    for h in history:
        steps, per_epoch = h.get("train_loss_steps"), h.get("steps_per_epoch")
        if not steps or not per_epoch:
            continue
        start = math.ceil(h["epoch"]) - 1  # a partial last epoch (the time budget) is 2.4, say: it started at 2
        points += [(start + (step - first_step) / per_epoch, loss) for step, loss in steps if loss is not None]
        first_step = steps[-1][0]
    return points


def curves_png(history: list[dict[str, Any]]) -> str:
    """The learning curves as a base64 PNG: loss against steps (training per window of steps, validation
    per epoch) and accuracy per epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # here: importing training stays quick
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.2), dpi=100, layout="constrained")  # Agg canvas: no pyplot, no open figures
    FigureCanvasAgg(fig)
    loss_ax, acc_ax = fig.subplots(1, 2)
    points = step_losses(history)
    if points:  # x in epochs, so the per-step and per-epoch curves share the axis
        loss_ax.plot([x for x, _ in points], [v for _, v in points], lw=0.8, color="C0",
                     alpha=0.8, label="train (per step)")
    else:
        loss_ax.plot([h["epoch"] for h in history], [h["train_loss"] for h in history], "o-", color="C0",
                     label="train")
    epochs = [h["epoch"] for h in history]
    if any("val_loss" in h for h in history):
        loss_ax.plot(epochs, [h.get("val_loss") for h in history], "o-", color="C1", label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    acc_ax.plot(epochs, [h["train_accuracy"] for h in history], "o-", color="C0", label="train")
    if any("val_accuracy" in h for h in history):
        acc_ax.plot(epochs, [h.get("val_accuracy") for h in history], "o-", color="C1", label="validation")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _number(epoch: float) -> str:
    """3 for a whole epoch; 1.07 for one cut short by --budget-minutes."""
    return f"{epoch:.2f}".rstrip("0").rstrip(".")
