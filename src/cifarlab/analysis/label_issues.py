"""Suspected label problems in the training data by confident learning (Northcutt et al. 2021): out-of-sample
probabilities from K-fold cross-validation (a fresh model per fold, trained by the engine with the run's own
recipe), then cleanlab's `find_label_issues` on them."""
from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..config import TrainConfig
from ..data.types import CifarData, ImageSet
from ..errors import CifarlabError
from ..training.inference import predict_logits
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


def fold_config(cfg: TrainConfig, epochs: int, seed: int, device: torch.device) -> TrainConfig:
    """The run's recipe for one fold model: same model, optimizer, schedule, augmentation, initialization and
    transfer set-up, trained for `epochs` on all of the fold's images (no validation, no test, no extras).
    `cfg` is resolved, so its recipe's settings are already filled in: the name goes, lest it reset `epochs`."""
    return dataclasses.replace(cfg, recipe=None, epochs=epochs, seed=seed, val_size=0, train_size=None,
                               label_fraction=None, classes=None, evaluate_test=False, early_stopping=None,
                               budget_minutes=None, tensorboard=False, out=None, device=str(device))


def train_fold_model(cfg: TrainConfig, fit: ImageSet, work_dir: Path) -> torch.nn.Module:
    """A model trained by the engine (cifarlab's train) on the fold's images, its run directory in `work_dir`."""
    from ..training.engine import train

    empty = ImageSet(np.zeros((0, *fit.images.shape[1:]), np.uint8), np.zeros(0, np.int64), list(fit.classes))
    result = train(dataclasses.replace(cfg, out=str(work_dir)), dataset=CifarData(fit, empty, "label-check fold"),
                   verbose=False, command="label check fold")
    return result.model.eval()


def out_of_sample_probabilities(train_set: ImageSet, cfg: TrainConfig, folds: int, *, epochs: int,
                                device: torch.device, precision: str = "fp32",
                                log: Callable[[str], None] = print) -> np.ndarray:
    """Probabilities (N, C) where each example is scored by a model that never saw it (fp32 logits by default).
    The fold models train with cfg's own precision and device; their run directories are temporary."""
    probs = np.zeros((len(train_set), train_set.num_classes), np.float32)
    with tempfile.TemporaryDirectory(prefix="cifarlab-label-check-") as work:
        for k, held in enumerate(fold_indices(train_set.labels, folds, cfg.seed)):
            start = time.perf_counter()
            fit = train_set.subset(np.setdiff1d(np.arange(len(train_set)), held))
            model = train_fold_model(fold_config(cfg, epochs, cfg.seed + k, device), fit, Path(work) / f"fold{k}")
            logits = predict_logits(model, train_set.images[held], device=device, precision=precision,
                                    batch_size=cfg.eval_batch_size, channels_last=cfg.channels_last)
            probs[held] = softmax(logits.numpy())
            log(f"  label check fold {k + 1}/{folds}: trained on {len(fit):,}, scored {len(held):,} "
                f"({time.perf_counter() - start:.1f} s)")
    return probs


def find_label_issues(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flagged indices (least self-confident first), the class each one looks like, and the per-class thresholds.

    The flagged set is cleanlab's `find_label_issues` with its defaults (prune by noise rate over the confident
    joint), ranked by self-confidence. The suspected class is the likeliest class other than the given one;
    threshold t_j is the mean probability of class j over the examples labelled j (cleanlab's confident threshold).
    """
    from cleanlab.count import get_confident_thresholds
    from cleanlab.filter import find_label_issues as cleanlab_find_label_issues

    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    order = np.asarray(cleanlab_find_label_issues(labels, probs, return_indices_ranked_by="self_confidence",
                                                  n_jobs=1), dtype=np.int64)
    others = probs.copy()
    others[np.arange(len(labels)), labels] = -1.0
    thresholds = get_confident_thresholds(labels, probs)
    return order, others.argmax(axis=1)[order], np.asarray(thresholds, dtype=np.float64)


def label_check(train_set: ImageSet, cfg: TrainConfig, out_dir: Path, *, folds: int = DEFAULT_FOLDS,
                epochs: int | None = None, device: torch.device, precision: str = "fp32",
                log: Callable[[str], None] = print) -> dict:
    """Cross-validate, flag suspected label problems, draw label_issues.png; the report for analysis.json."""
    epochs = epochs or min(cfg.epochs, MAX_EPOCHS)
    start = time.perf_counter()
    probs = out_of_sample_probabilities(train_set, cfg, folds, epochs=epochs, device=device, precision=precision,
                                        log=log)
    flagged, suspected, thresholds = find_label_issues(probs, train_set.labels)
    files, classes = image_names(train_set, "train"), train_set.classes
    issues = [{"index": int(i), "file": files[i], "given": classes[train_set.labels[i]], "suspected": classes[s],
               "given_probability": float(probs[i, train_set.labels[i]]), "suspected_probability": float(probs[i, s])}
              for i, s in zip(flagged, suspected)]
    picture = plot_label_issues(train_set.images, issues, Path(out_dir) / "label_issues.png")
    return {"folds": folds, "epochs": epochs, "model": cfg.model, "recipe": cfg.recipe, "images": len(train_set),
            "method": "cleanlab.filter.find_label_issues (prune_by_noise_rate) on out-of-fold probabilities",
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
