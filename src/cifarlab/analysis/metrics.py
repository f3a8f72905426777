"""Accuracy, top-k, per-class precision / recall / F1 and the confusion matrix with its worst pairs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._plots import new_figure, readable_points, save_figure

TOP_K = 3


def top_k_accuracy(labels: np.ndarray, probs: np.ndarray, k: int = TOP_K) -> float:
    """Share of examples whose label is among the k most probable classes (k capped at the class count)."""
    k = min(k, probs.shape[1])
    topk = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return float((topk == labels[:, None]).any(axis=1).mean()) if len(labels) else 0.0


def classification_summary(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, top-3 accuracy, and precision / recall / F1 per class, macro- and weighted-averaged."""
    from sklearn.metrics import precision_recall_fscore_support

    preds = probs.argmax(axis=1)
    ids = list(range(len(classes)))
    p, r, f, support = precision_recall_fscore_support(labels, preds, labels=ids, zero_division=0)
    per_class = [{"class": c, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                  "support": int(support[i])} for i, c in enumerate(classes)]
    summary = {"accuracy": float((preds == labels).mean()), "top3_accuracy": top_k_accuracy(labels, probs),
               "per_class": per_class}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, preds, labels=ids, average=average, zero_division=0)
        summary[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    worst = min(per_class, key=lambda row: row["f1"])
    summary["worst_class"] = {"class": worst["class"], "f1": worst["f1"], "recall": worst["recall"]}
    return summary


def confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts (rows: true class, columns: predicted) and the same matrix with each row summing to 1."""
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(labels, preds, labels=list(range(num_classes)))
    totals = counts.sum(axis=1, keepdims=True)
    return counts, np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)


def top_confused_pairs(counts: np.ndarray, classes: list[str], k: int = 5) -> list[dict]:
    """The k largest off-diagonal cells: (true class, predicted class, count, share of the true class)."""
    off = counts.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:k]
    totals = counts.sum(axis=1)
    pairs = []
    for flat in order:
        t, p = np.unravel_index(flat, off.shape)
        if off[t, p] == 0:
            break
        pairs.append({"true": classes[t], "predicted": classes[p], "true_index": int(t), "predicted_index": int(p),
                      "count": int(off[t, p]), "rate": float(off[t, p] / totals[t])})
    return pairs


def plot_confusion_matrix(counts: np.ndarray, normalized: np.ndarray, classes: list[str], path: Path,
                          title: str = "") -> Path:
    """Two annotated heat maps side by side: counts and row-normalized shares."""
    n = len(classes)
    size = max(4.5, 0.5 * n + 1.5)
    width = 2 * size + 1
    points = readable_points(width)  # cell numbers and labels readable when the report shows it page-wide
    fig = new_figure(width, size)
    axes = fig.subplots(1, 2)
    panels = ((counts, "counts", "{:d}"), (normalized, "share of the true class (rows sum to 1)", "{:.2f}"))
    for ax, (matrix, name, fmt) in zip(axes, panels):
        image = ax.imshow(matrix, cmap="Blues", vmin=0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=points)
        ax.set_title(name, fontsize=points + 1)
        ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=points)
        ax.set_yticks(range(n), classes, fontsize=points)
        ax.set_xlabel("predicted class", fontsize=points)
        ax.set_ylabel("true class", fontsize=points)
        if n <= 20:  # beyond that the numbers no longer fit in the cells
            _annotate(ax, matrix, fmt, points if n <= 12 else points * 0.8)
    fig.suptitle(title or "confusion matrix", fontsize=points + 2)
    return save_figure(fig, path)


def _annotate(ax, matrix: np.ndarray, fmt: str, fontsize: float = 7) -> None:
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, fmt.format(value.item()), ha="center", va="center", fontsize=fontsize,
                color="white" if value > threshold else "black")
