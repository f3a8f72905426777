"""Learning curves drawn from a run's history (metrics.jsonl): loss, accuracy and learning rate per epoch,
one small figure each, so that a phone shows them one under the other and a wide screen side by side.
The loss panel draws the training loss per step when the history records it (`train_loss_steps`:
[[global_step, loss], ...] and `steps_per_epoch` in each epoch's record), against epochs, beside the
per-epoch validation loss: a 2-epoch run then has a curve, not two points. A learning rate that every
epoch recorded the same is no curve at all: the report states it in one line instead (constant_lr)."""
from __future__ import annotations

import io
from typing import Any

from ..rundir.result import step_losses

SERIES = {
    "loss": [("train_loss", "train"), ("val_loss", "validation")],
    "accuracy": [("train_accuracy", "train"), ("val_accuracy", "validation")],
    "learning rate": [("lr", "lr")],
}


def learning_curve_pngs(history: list[dict[str, Any]]) -> dict[str, bytes]:
    """PNG bytes per panel ("loss", "accuracy", "learning rate"); panels without any value are left out, and
    so is the learning rate when it never changed (constant_lr)."""
    constant = constant_lr(history) is not None
    return {name: png for name, series in SERIES.items()
            if not (constant and name == "learning rate") and (png := _panel(history, name, series)) is not None}


def constant_lr(history: list[dict[str, Any]]) -> float | None:
    """The learning rate when every epoch that recorded one recorded the same, else None."""
    rates = {h["lr"] for h in history if h.get("lr") is not None}
    return rates.pop() if len(rates) == 1 else None


def _panel(history: list[dict[str, Any]], name: str, series: list[tuple[str, str]]) -> bytes | None:
    from matplotlib.figure import Figure

    lines = []
    for key, label in series:
        points = step_losses(history) if key == "train_loss" else []
        label = f"{label} (per step)" if points else label
        points = points or [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
        if points:
            lines.append((label, points))
    if not lines:
        return None
    fig = Figure(figsize=(4.4, 3.2), layout="constrained")
    ax = fig.subplots()
    for label, points in lines:
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=4, label=label,
                linewidth=0.8 if len(xs) > 30 else 1.5, alpha=0.8 if len(xs) > 30 else 1.0)
    ax.set(xlabel="epoch", ylabel=name, title=name.capitalize())
    if name == "learning rate":
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    else:
        ax.legend(fontsize=9.5)
    ax.grid(alpha=0.3)
    if len(history) and max(h["epoch"] for h in history) <= 20:  # whole epochs on a short run's axis
        ax.xaxis.get_major_locator().set_params(integer=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
