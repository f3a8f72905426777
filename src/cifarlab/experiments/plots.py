"""Plots for experiments: accuracy against a cost, and learning curves of several runs in one figure."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .._io import atomic_path  # noqa: E402
from .grid import RunOutcome, mean_std  # noqa: E402


def save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_accuracy_vs(rows: list[dict[str, Any]], cost: str, label: str, path: Path, log_x: bool = False) -> None:
    """Test accuracy (mean, with std as error bars) against a cost, one labelled point per model."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for r in rows:
        if not r["test_accuracy"] or not r.get(cost):
            continue
        x = mean_std(r[cost]) if isinstance(r[cost], list) else (r[cost], 0.0)
        y = mean_std(r["test_accuracy"])
        ax.errorbar(x[0], y[0], xerr=x[1] or None, yerr=y[1] or None, fmt="o", capsize=3)
        ax.annotate(r["model"], (x[0], y[0]), textcoords="offset points", xytext=(5, 5), fontsize=9)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Test accuracy vs {label}")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_accuracy_vs_time(outcomes: dict[str, list[RunOutcome]], rows: list[dict[str, Any]], path: Path) -> None:
    """Validation accuracy against cumulative training time, one curve per model (first seed), with the
    final test accuracy (mean ± std over seeds) as a star at the end: which model is best at any budget."""
    fig, ax = plt.subplots(figsize=(7, 4.6))
    tests = {r["model"]: r["test_accuracy"] for r in rows}
    for name, runs in outcomes.items():
        run = next((r for r in runs if r.history), None)
        if run is None:
            continue
        seconds, total = [], 0.0
        for h in run.history:
            total += h["epoch_seconds"]
            seconds.append(total)
        (line,) = ax.plot(seconds, [h.get("val_accuracy") for h in run.history], marker=".", label=name)
        if tests.get(name):
            m, s = mean_std(tests[name])
            ax.errorbar(total, m, yerr=s or None, fmt="*", markersize=12, color=line.get_color(), capsize=3)
    ax.set(xlabel="training time (s)", ylabel="accuracy",
           title="Validation accuracy during training (★ final test accuracy)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=9.5)
    save_figure(fig, path)


def plot_learning_curves(outcomes: dict[str, list[RunOutcome]], path: Path) -> None:
    """Validation accuracy and training loss per epoch, every model in one figure (first seed)."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, runs in outcomes.items():
        run = next((r for r in runs if r.history), None)
        if run is None:
            continue
        epochs = [h["epoch"] for h in run.history]
        if any("val_accuracy" in h for h in run.history):
            ax_acc.plot(epochs, [h.get("val_accuracy") for h in run.history], marker=".", label=name)
        ax_loss.plot(epochs, [h["train_loss"] for h in run.history], marker=".", label=name)
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training loss", yscale="log")
    plain_log_ticks(ax_loss.yaxis)
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9.5)
    save_figure(fig, path)


def plain_log_ticks(axis) -> None:
    """Label a log axis with plain numbers (0.5, 1, 2) instead of matplotlib's 2.2×10⁰, minor ticks
    included when the axis spans less than about two decades (a loss curve's usual range)."""
    from matplotlib.ticker import LogFormatter

    axis.set_major_formatter(LogFormatter())
    axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def plot_bars(labels: list[str], series: dict[str, list[list[float]]], ylabel: str, title: str, path: Path) -> None:
    """Grouped bars: for each label, one bar per series at the mean of its values, std as error bars."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(labels) + 2), 4.4))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        stats = [mean_std(v) for v in values]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, [m for m, _ in stats], width,
               yerr=[s if s == s else 0 for _, s in stats], capsize=3, label=name)
    ax.set_xticks(x, labels, rotation=20 if max(map(len, labels), default=0) > 10 else 0, ha="right"
                  if max(map(len, labels), default=0) > 10 else "center")
    ax.set(ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, axis="y")
    if len(series) > 1:
        ax.legend(fontsize=9.5)
    save_figure(fig, path)
