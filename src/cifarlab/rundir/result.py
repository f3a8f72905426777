"""A run's numbers as objects that show themselves: History (metrics.jsonl, Run.history) as a per-epoch table,
and TrainResult (what train() returns): a one-line repr in a terminal, and in a notebook the summary numbers
beside the learning curves (per-step training loss, per-epoch validation)."""
from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn

# The per-epoch numbers a History shows first, when its records have them; the rest are named below the table.
_HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds")
_HISTORY_ROWS = 20  # a longer history shows its first and last epochs


class History(list):
    """One metrics.jsonl record (a dict) per epoch, as a list. Shown as a per-epoch table in a terminal and a
    notebook, with the per-step training losses summarised; every record keeps them in full
    (`history[0]["train_loss_steps"]`, or `history.step_losses()` as (epoch, loss) points)."""

    def step_losses(self) -> list[tuple[float, float]]:
        return step_losses(self)

    def _table(self) -> tuple[list[str], list[list[Any]]]:
        headers = [c for c in _HISTORY_COLUMNS if any(c in h for h in self)]
        rows = [[h.get(c) for c in headers] for h in self]
        if len(rows) > _HISTORY_ROWS:
            half = _HISTORY_ROWS // 2
            rows = rows[:half] + [["…"] * len(headers)] + rows[-half:]
        return headers, rows

    def _notes(self) -> list[str]:
        steps = sum(len(h.get("train_loss_steps") or ()) for h in self)
        notes = [f"{_count(steps, 'step loss', 'step losses')} (train_loss_steps, about "
                 f"{steps // max(len(self), 1):,} per epoch): history[i]['train_loss_steps'], history.step_losses()"
                 ] if steps else []
        shown = set(_HISTORY_COLUMNS) | {"train_loss_steps"}
        rest = list(dict.fromkeys(k for h in self for k in h if k not in shown))
        if rest:
            notes.append(f"also in each record: {', '.join(rest)}")
        return notes

    def __repr__(self) -> str:
        if not self:
            return "History(no finished epoch)"
        headers, rows = self._table()
        cells = [headers] + [[_cell(v) for v in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
        return "\n".join([f"History({_count(len(self), 'epoch', 'epochs')})", *lines, *self._notes()])

    def _repr_html_(self) -> str:
        from .._display import rows_table

        headers, rows = self._table()
        table = rows_table(headers, [[_cell(v) for v in row] for row in rows], limit=len(rows))
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in self._notes())
        return f"<div><h4>History ({_count(len(self), 'epoch', 'epochs')})</h4>{table}{notes}</div>"


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    model: nn.Module

    def __post_init__(self) -> None:
        self.history = History(self.history)

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
