"""Galleries of examples worth looking at: the most confident mistakes, the highest-loss examples and
the examples behind each of the most-confused class pairs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._plots import thumbnail_grid, thumbnail_rows
from .predictions import Predictions

GALLERY_SIZE = 24
PAIR_EXAMPLES = 8


def confident_mistakes(pred: Predictions, k: int = GALLERY_SIZE) -> np.ndarray:
    """Indices of wrong predictions, most confident first."""
    wrong = np.flatnonzero(pred.preds != pred.labels)
    return wrong[np.argsort(-pred.confidence[wrong], kind="stable")][:k]


def highest_loss(pred: Predictions, k: int = GALLERY_SIZE) -> np.ndarray:
    """Indices of the examples with the largest cross-entropy, largest first."""
    return np.argsort(-pred.losses, kind="stable")[:k]


def pair_examples(pred: Predictions, true_index: int, predicted_index: int, k: int = PAIR_EXAMPLES) -> np.ndarray:
    """Indices of class `true_index` predicted as `predicted_index`, most confident first."""
    hits = np.flatnonzero((pred.labels == true_index) & (pred.preds == predicted_index))
    return hits[np.argsort(-pred.confidence[hits], kind="stable")][:k]


def describe(pred: Predictions, index: np.ndarray) -> list[dict]:
    """JSON rows for examples: file, true and predicted class with their probabilities, loss."""
    losses = pred.losses
    return [{"index": int(i), "file": pred.files[i], "label": pred.classes[pred.labels[i]],
             "predicted": pred.classes[pred.preds[i]], "label_probability": float(pred.label_probs[i]),
             "predicted_probability": float(pred.confidence[i]), "loss": float(losses[i])} for i in index]


def example_title(pred: Predictions, i: int) -> str:
    """Two lines: the true class with its probability, the predicted class with its probability."""
    t, p = pred.labels[i], pred.preds[i]
    return f"true {pred.classes[t]} {pred.probs[i, t]:.2f}\npred {pred.classes[p]} {pred.probs[i, p]:.2f}"


def plot_gallery(images: np.ndarray, pred: Predictions, index: np.ndarray, path: Path, title: str) -> Path:
    """Thumbnails of `images[index]` titled with true and predicted class."""
    return thumbnail_grid(images[index], [example_title(pred, i) for i in index], path, title)


def plot_confused_pairs(images: np.ndarray, pred: Predictions, pairs: list[dict], path: Path,
                        k: int = PAIR_EXAMPLES) -> Path:
    """One strip of example thumbnails per confused pair (true -> predicted)."""
    rows = []
    for pair in pairs:
        index = pair_examples(pred, pair["true_index"], pair["predicted_index"], k)
        label = f"{pair['true']}\n-> {pair['predicted']}\n({pair['count']}, {pair['rate']:.0%})"
        rows.append((label, images[index], [f"pred {pred.confidence[i]:.2f}" for i in index]))
    return thumbnail_rows(rows, path, "most-confused class pairs (true -> predicted, count, share of the true class)",
                          cols=k)
