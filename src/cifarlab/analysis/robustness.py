"""Robustness: accuracy under CIFAR-10-C's corruptions (Hendrycks and Dietterich 2019) at five severities,
regenerated from the test images by `corruptions` with the benchmark's own parameters.

The headline is CIFAR-10-C's: the mean corruption accuracy (mCA) over its 15 corruptions x 5 severities,
comparable with published tables when measured on all 10,000 test images; the 4 extra corruptions (speckle
noise, gaussian blur, spatter, saturate) are reported beside it, not in it."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..rundir.inference import EVAL_BATCH_SIZE, predict_logits
from ._plots import new_figure, save_figure
from .corruptions import CORRUPTIONS, SEVERITIES, benchmark_corruptions, corrupt, extra_corruptions

__all__ = ["CORRUPTIONS", "CORRUPTION_SEED", "SEVERITIES", "corrupt", "plot_robustness", "robustness_table"]

# One seed for every model and run: the corrupted images are the same whoever is measured.
CORRUPTION_SEED = 0
SOURCE = ("CIFAR-10-C (Hendrycks and Dietterich, ICLR 2019): its 15 corruptions x 5 severities and 4 extra, "
          "regenerated from the test images with its released CIFAR parameters")


def robustness_table(model: nn.Module, images: np.ndarray, labels: np.ndarray, clean_accuracy: float, *,
                     device: torch.device, precision: str = "fp32", batch_size: int = EVAL_BATCH_SIZE,
                     seed: int = CORRUPTION_SEED, indices: Sequence[int] | np.ndarray | None = None,
                     names: Sequence[str] | None = None, log: Callable[[str], None] | None = None,
                     progress: bool = False) -> dict:
    """Accuracy for every corruption and severity, CIFAR-10-C's mean over its 15, the extras' mean, and the
    clean accuracy of the same images. `indices`: the images' indices in the test split (their corruption
    draws are seeded by it), default 0..N-1; `names`: the corruptions to measure (default all 19);
    `progress`: a tqdm bar over the passes (off outside a terminal)."""
    from tqdm.auto import tqdm

    names = list(names) if names is not None else CORRUPTIONS.names()
    table, seconds = {}, {}
    bar = tqdm(total=len(names) * len(SEVERITIES), desc="  robustness", unit="pass", leave=False,
               disable=None if progress else True)  # None: tqdm turns itself off when stderr is no terminal
    for name in names:
        row, spent = [], 0.0
        bar.set_postfix_str(name)
        for severity in SEVERITIES:
            start = time.perf_counter()
            corrupted = corrupt(images, name, severity, seed, indices)
            spent += time.perf_counter() - start
            logits = predict_logits(model, corrupted, device=device, precision=precision, batch_size=batch_size)
            row.append(float((logits.argmax(1).numpy() == labels).mean()))
            bar.update()
        table[name], seconds[name] = row, spent
        if log:
            log(f"    {name:18s} " + " ".join(f"{a:.4f}" for a in row) + f"   ({spent:.1f} s to corrupt)")
    bar.close()
    means = {name: float(np.mean(row)) for name, row in table.items()}
    benchmark = [n for n in benchmark_corruptions() if n in table]
    extra = [n for n in extra_corruptions() if n in table]
    complete = len(benchmark) == len(benchmark_corruptions())
    mca = float(np.mean([means[n] for n in benchmark])) if benchmark else None
    return {"source": SOURCE, "images": len(labels), "seed": seed, "severities": list(SEVERITIES),
            "clean_accuracy": clean_accuracy, "accuracy": table, "mean_accuracy": means,
            "benchmark_corruptions": benchmark, "extra_corruptions": extra,
            # CIFAR-10-C's mean over 15 x 5 (None unless all 15 were measured: a partial mean is not it)
            "mean_corrupted_accuracy": mca if complete else None,
            "mean_corruption_error": 1 - mca if complete else None,
            "extra_mean_accuracy": float(np.mean([means[n] for n in extra])) if extra else None,
            "relative_accuracy": mca / clean_accuracy if complete and clean_accuracy else None,
            "per_severity_accuracy": [float(np.mean([table[n][i] for n in benchmark])) if benchmark else None
                                      for i in range(len(SEVERITIES))],
            "corruption_seconds": float(sum(seconds.values())), "seconds_per_corruption": seconds}


def plot_robustness(report: dict, path: Path, title: str = "") -> Path:
    """A heat map of accuracy per corruption (rows: the 15, then the extras) and severity, with each row's mean
    and the clean accuracy beside it."""
    names = list(report["accuracy"])
    extra = set(report.get("extra_corruptions", []))
    grid = np.array([report["accuracy"][n] for n in names])
    fig = new_figure(7, 0.32 * len(names) + 1.6)
    ax = fig.subplots()
    ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                color="white" if value < 0.6 else "black")
    labels = [f"{n}{' (extra)' if n in extra else ''}  mean {report['mean_accuracy'][n]:.3f}" for n in names]
    ax.set_yticks(range(len(names)), labels, fontsize=7)
    ax.set_xticks(range(len(report["severities"])), [f"severity {s}" for s in report["severities"]], fontsize=8)
    n_bench = len(report.get("benchmark_corruptions", names))
    if 0 < n_bench < len(names):
        ax.axhline(n_bench - 0.5, color="white", linewidth=2)
    mca = report.get("mean_corrupted_accuracy")
    headline = f"mCA (15 x 5) {mca:.3f}" if mca is not None else "mCA not measured (fewer than 15 corruptions)"
    fig.suptitle(title or f"accuracy under CIFAR-10-C corruptions ({report['images']:,} images): {headline}, "
                 f"clean {report['clean_accuracy']:.3f}", fontsize=10)
    return save_figure(fig, path)
