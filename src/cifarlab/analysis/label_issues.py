"""Suspected label problems in the training data, confident-learning style (Northcutt et al. 2021):
out-of-sample probabilities from K-fold cross-validation (a fresh model per fold, the run's recipe), then
flag examples whose given label gets less than its class's mean self-confidence while another class
reaches its own threshold."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..config import TrainConfig
from ..data.types import ImageSet
from ..errors import CifarlabError
from ..training.inference import predict_logits
from ._fit import fit_model
from ._plots import thumbnail_grid
from .predictions import image_names, softmax

DEFAULT_FOLDS = 3
MAX_EPOCHS = 5  # the label check trains K models: by default at most this many epochs each
GALLERY_SIZE = 32


def fold_indices(labels: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Held-out index sets of K folds, stratified when every class has at least K examples."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if folds < 2:
        raise CifarlabError(f"--label-check-folds must be >= 2, got {folds}")
    if folds > len(labels):
        raise CifarlabError(f"--label-check-folds {folds} is more than the {len(labels)} training images")
    counts = np.bincount(labels)
    splitter = (StratifiedKFold if counts[counts > 0].min() >= folds else KFold)(folds, shuffle=True,
                                                                                 random_state=seed)
    return [held for _, held in splitter.split(np.zeros(len(labels)), labels)]


def out_of_sample_probabilities(train_set: ImageSet, cfg: TrainConfig, folds: int, *, device: torch.device,
                                precision: str = "fp32", log: Callable[[str], None] = print) -> np.ndarray:
    """Probabilities (N, C) where each example is scored by a model that never saw it."""
    probs = np.zeros((len(train_set), train_set.num_classes), np.float32)
    for k, held in enumerate(fold_indices(train_set.labels, folds, cfg.seed)):
        start = time.perf_counter()
        fit = train_set.subset(np.setdiff1d(np.arange(len(train_set)), held))
        model = fit_model(cfg, fit, device=device, precision=precision, seed=cfg.seed + k)
        logits = predict_logits(model, train_set.images[held], device=device, precision=precision,
                                batch_size=cfg.eval_batch_size, channels_last=cfg.channels_last)
        probs[held] = softmax(logits.numpy())
        log(f"  label check fold {k + 1}/{folds}: trained on {len(fit):,}, scored {len(held):,} "
            f"({time.perf_counter() - start:.1f} s)")
    return probs


def find_label_issues(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flagged indices (least self-confident first), the class each one looks like, and the per-class thresholds.

    Threshold t_j = mean probability of class j over the examples labelled j. An example labelled y is
    flagged when p_y < t_y and some other class j has p_j >= t_j; its suspected class is the likeliest such j.
    """
    num_classes = probs.shape[1]
    thresholds = np.array([probs[labels == j, j].mean() if (labels == j).any() else 1.0 for j in range(num_classes)])
    n = np.arange(len(labels))
    self_conf = probs[n, labels]
    above = probs >= thresholds[None, :]
    above[n, labels] = False
    candidate = np.where(above, probs, -1.0)
    suspected = candidate.argmax(axis=1)
    flagged = np.flatnonzero((self_conf < thresholds[labels]) & above.any(axis=1))
    order = flagged[np.argsort(self_conf[flagged], kind="stable")]
    return order, suspected[order], thresholds


def label_check(train_set: ImageSet, cfg: TrainConfig, out_dir: Path, *, folds: int = DEFAULT_FOLDS,
                epochs: int | None = None, device: torch.device, precision: str = "fp32",
                log: Callable[[str], None] = print) -> dict:
    """Cross-validate, flag suspected label problems, draw label_issues.png; the report for analysis.json."""
    epochs = epochs or min(cfg.epochs, MAX_EPOCHS)
    cfg = dataclasses.replace(cfg, epochs=epochs)
    start = time.perf_counter()
    probs = out_of_sample_probabilities(train_set, cfg, folds, device=device, precision=precision, log=log)
    flagged, suspected, thresholds = find_label_issues(probs, train_set.labels)
    files, classes = image_names(train_set, "train"), train_set.classes
    issues = [{"index": int(i), "file": files[i], "given": classes[train_set.labels[i]], "suspected": classes[s],
               "given_probability": float(probs[i, train_set.labels[i]]), "suspected_probability": float(probs[i, s])}
              for i, s in zip(flagged, suspected)]
    picture = plot_label_issues(train_set.images, issues, Path(out_dir) / "label_issues.png")
    return {"folds": folds, "epochs": epochs, "model": cfg.model, "images": len(train_set),
            "out_of_sample_accuracy": float((probs.argmax(1) == train_set.labels).mean()),
            "thresholds": {c: float(t) for c, t in zip(classes, thresholds)}, "flagged": len(issues),
            "issues": issues, "seconds": time.perf_counter() - start, "picture": str(picture)}


def plot_label_issues(images: np.ndarray, issues: list[dict], path: Path, k: int = GALLERY_SIZE) -> Path:
    """The k least self-confident flagged examples, titled with the given and the suspected class."""
    shown = issues[:k]
    titles = [f"given {r['given']} {r['given_probability']:.2f}\nlooks {r['suspected']} "
              f"{r['suspected_probability']:.2f}" for r in shown]
    return thumbnail_grid(images[[r["index"] for r in shown]], titles, path,
                          f"suspected label problems in the training data ({len(issues)} flagged, "
                          f"{len(shown)} shown)")
