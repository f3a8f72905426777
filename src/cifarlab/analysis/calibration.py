"""Calibration: expected calibration error, a reliability diagram, and temperature scaling (Guo et al.
2017) fitted on the validation split and judged on the analyzed split."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ._plots import new_figure, save_figure
from .predictions import Predictions, log_softmax, softmax

N_BINS = 15
LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> dict:
    """Equal-width confidence bins: how many examples, their mean confidence and their accuracy."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(which, weights=correct, minlength=n_bins)
    safe = np.maximum(counts, 1)
    return {"edges": edges.tolist(), "counts": counts.tolist(), "confidence": (conf_sum / safe).tolist(),
            "accuracy": (acc_sum / safe).tolist()}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """Sum over bins of |accuracy - confidence|, weighted by the share of examples in the bin."""
    bins = reliability_bins(probs, labels, n_bins)
    counts = np.asarray(bins["counts"])
    gaps = np.abs(np.asarray(bins["accuracy"]) - np.asarray(bins["confidence"]))
    return float((gaps * counts).sum() / max(1, counts.sum()))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / T)."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64) / temperature)
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimizes the NLL of `logits / T` (1-D search on log T); never worse than T = 1."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(lambda log_t: nll(logits, labels, math.exp(log_t)), bounds=LOG_T_BOUNDS,
                             method="bounded", options={"xatol": 1e-4})
    t = math.exp(result.x)
    return t if nll(logits, labels, t) <= nll(logits, labels, 1.0) else 1.0


def calibration_report(pred: Predictions, val: Predictions | None, n_bins: int = N_BINS) -> dict:
    """ECE and NLL of the analyzed split before and after temperature scaling fitted on `val`."""
    before = reliability_bins(pred.probs, pred.labels, n_bins)
    report = {"bins": n_bins, "ece_before": expected_calibration_error(pred.probs, pred.labels, n_bins),
              "nll_before": nll(pred.logits, pred.labels), "reliability_before": before}
    if val is None:
        report["temperature"] = None
        report["note"] = "the run has no validation split (val_size 0): temperature scaling was not fitted"
        return report
    t = fit_temperature(val.logits, val.labels)
    scaled = softmax(pred.logits / t)
    report.update({
        "temperature": t, "fitted_on": "val", "val_nll_before": nll(val.logits, val.labels),
        "val_nll_after": nll(val.logits, val.labels, t),
        "ece_after": expected_calibration_error(scaled, pred.labels, n_bins),
        "nll_after": nll(pred.logits, pred.labels, t),
        "reliability_after": reliability_bins(scaled, pred.labels, n_bins),
    })
    return report


def plot_reliability(report: dict, path: Path, title: str = "") -> Path:
    """Accuracy against confidence per bin, before (and after) temperature scaling; the diagonal is perfect."""
    panels = [("before", report["reliability_before"], report["ece_before"])]
    if report.get("temperature") is not None:
        panels.append((f"after temperature scaling (T = {report['temperature']:.2f})", report["reliability_after"],
                       report["ece_after"]))
    fig = new_figure(4.6 * len(panels), 4.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, bins, ece) in zip(axes, panels):
        _reliability_panel(ax, bins)
        ax.set_title(f"{name}\nECE {ece:.3f}", fontsize=10)
    fig.suptitle(title or "reliability diagram", fontsize=12)
    return save_figure(fig, path)


def _reliability_panel(ax, bins: dict) -> None:
    edges = np.asarray(bins["edges"])
    width = np.diff(edges)
    counts = np.asarray(bins["counts"])
    accuracy = np.where(counts > 0, bins["accuracy"], 0.0)
    confidence = np.where(counts > 0, bins["confidence"], 0.0)
    ax.bar(edges[:-1], accuracy, width=width, align="edge", color="tab:blue", edgecolor="black", linewidth=0.5,
           label="accuracy")
    ax.bar(edges[:-1], confidence - accuracy, bottom=accuracy, width=width, align="edge", color="tab:red",
           alpha=0.3, edgecolor="tab:red", linewidth=0.5, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (probability of the predicted class)")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
