"""Error analysis of a trained run (`cifarlab analyze`): metrics, confusions, galleries, calibration,
robustness and, optionally, suspected label problems in the training data.

    analyze(run_dir) -> dict
      1. the run's model and data, the analyzed split and the validation split
      2. predictions, once, saved as predictions.npz and reused by every step below
      3. metrics and the confusion matrix; most-confused pairs; galleries of mistakes
      4. calibration (temperature scaling fitted on val); robustness to corruptions
      5. optionally the label check (K fold models; label_issues.py); analysis.json and a console summary
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._io import write_json_atomic
from .._stages import stage_timer
from ..analysis_choices import DEFAULT_LABEL_CHECK_MODEL
from ..config import TrainConfig
from ..data import CifarData, ImageSet, make_splits
from ..errors import CifarlabError
from ..rundir.inference import EVAL_BATCH_SIZE
from ..rundir.layout import ANALYSIS_DIR, ANALYSIS_JSON, PREDICTIONS
from ..rundir.run import Run, load_run
from ..training.resolve import resolve
from . import calibration, galleries, label_issues, metrics, robustness
from .predictions import Predictions, compute_predictions, save_predictions

__all__ = ["SPLITS", "analyze", "format_summary"]

SPLITS = ("test", "val")
# CIFAR-10-C's 19 corruptions x 5 severities = 95 corrupted copies: on a 1,000-image sample analyze stays
# quick on a CPU (a standard error of about 1.5 points per cell); use --robustness-images all (or
# benchmarks/bench_cifar10c.py) for the figure comparable with published tables.
DEFAULT_ROBUSTNESS_IMAGES = 1000


def analyze(run_dir: str | Path, split: str = "test", data: str | Path | None = None, out: str | Path | None = None,
            *, label_check: bool = False, label_check_model: str = DEFAULT_LABEL_CHECK_MODEL,
            label_check_folds: int | None = None, label_check_epochs: int | None = None,
            label_check_input_size: int | None = None, label_check_c: float | None = None,
            robustness_images: int | str | None = DEFAULT_ROBUSTNESS_IMAGES, device: str = "auto",
            precision: str = "auto", batch_size: int = EVAL_BATCH_SIZE, verbose: bool = True) -> dict[str, Any]:
    """Analyze a run's predictions on `split` and write PNGs and analysis.json into RUN_DIR/analysis (or `out`).

    `robustness_images`: how many images of the split the corruptions are measured on ("all" or None: all
    of them, 0: skip).
    `precision`: `auto` is fp32 (every number here comes from fp32 logits); bf16/fp16 run the body in low
    precision with the head and the logits still in fp32.
    `label_check`: out-of-fold probabilities of the run's training images from K fold models of
    `label_check_model` (features: a logistic regression on frozen ImageNet features, `label_check_input_size`
    px, `label_check_c`; fast: the fast recipe's net; run: the run's own recipe; these two for
    `label_check_epochs` each), suspected label problems flagged by cleanlab, and how far to trust them
    (label_issues.py). Returns the contents of analysis.json.
    """
    log = print if verbose else (lambda *a, **k: None)
    robustness_images = _image_count(robustness_images)
    _check_arguments(split)
    check_options = label_issues.check_options(label_check_model, label_check_folds, label_check_epochs,
                                               label_check_input_size, label_check_c) if label_check else None
    timings: dict[str, float] = {}
    files: dict[str, str] = {}  # what was written, by name
    steps = ["load", "predictions", "metrics", "galleries", "calibration"] + (
        ["robustness"] if robustness_images != 0 else []) + (["label_check"] if label_check else [])
    step = stage_timer(steps, log, timings)
    with step("load"):
        run = load_run(run_dir, device)  # the model first: a run without weights fails before any data is read
        precision = run.resolve_precision(precision)
        cfg = resolve(run.config)  # every recipe setting filled in, for the label check's "run" fold models
        dataset = run.dataset(data)
        splits = make_splits(cfg, dataset)  # the images the run trained and validated on
        fit_set, val_set = splits.train, splits.val
        target = _analyzed_set(dataset, val_set, split, run_dir)
        if check_options is not None:  # enough images of each class for the folds: before anything is written
            label_issues.fold_indices(fit_set.labels, check_options.folds, cfg.seed, fit_set.classes)
    out_dir = Path(out) if out is not None else Path(run_dir) / ANALYSIS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)

    with step("predictions"):
        pred = compute_predictions(run, target, split, precision=precision, batch_size=batch_size)
        val = pred if split == "val" else _predict_or_none(run, val_set, precision, batch_size)
        files["predictions"] = str(save_predictions(pred, out_dir / PREDICTIONS))
    report: dict[str, Any] = {
        "run_dir": str(run_dir), "model": cfg.model, "split": split, "images": len(pred),
        "classes": run.classes, "data_source": dataset.source, "device": str(run.device), "precision": precision,
        "logits": "float32" + ("" if precision == "fp32" else f" (body in {precision}, head in fp32)"),
    }
    with step("metrics"):
        report.update(_metrics(pred, f"{cfg.model} on {split}", out_dir, files))
    with step("galleries"):
        report.update(_galleries(pred, target.images, report["confused_pairs"], out_dir, files))
    with step("calibration"):
        report["calibration"] = _calibration(pred, val, split, out_dir, files)
    report["robustness"] = {"skipped": "robustness_images = 0"}
    if robustness_images != 0:
        with step("robustness"):
            report["robustness"] = _robustness(run, cfg.seed, precision, pred, target, robustness_images, batch_size,
                                               out_dir, files, verbose)
    report["label_check"] = {"skipped": "off by default (it fits K fold models); use --label-check"}
    if check_options is not None:
        with step("label_check"):
            report["label_check"] = _label_check(run, cfg, precision, fit_set, label_check_model, check_options,
                                                 out_dir, files, log)
    report["timings"] = timings
    files["analysis"] = str(out_dir / ANALYSIS_JSON)
    report["files"] = files
    write_json_atomic(out_dir / ANALYSIS_JSON, report)
    log(format_summary(report))
    return Analysis(report)


class Analysis(dict):
    """The contents of analysis.json (a dict), shown in a notebook as its headline numbers and figures."""

    def __repr__(self) -> str:
        m = self.get("metrics", {})
        return (f"Analysis({self.get('model')} on {self.get('split')}, {self.get('images', 0):,} images: accuracy "
                f"{m.get('accuracy', float('nan')):.4f}, macro F1 {m.get('macro', {}).get('f1', float('nan')):.4f}; "
                f"{len(self.figures())} figures)")

    def figures(self) -> list[str]:
        return [f for f in self.get("files", {}).values() if str(f).endswith(".png")]

    def _repr_html_(self) -> str:
        from .._display import result_html

        m, cal, rob = self["metrics"], self["calibration"], self["robustness"]
        return result_html(f"Error analysis: {self['model']} on {self['split']} ({self['images']:,} images)", [
            ("accuracy (fp32 logits)", m["accuracy"]), ("top-3 accuracy", m["top3_accuracy"]),
            ("macro F1", m["macro"]["f1"]), ("ECE before / after temperature",
                                            f"{cal['ece_before']:.4f} / {cal.get('ece_after') or float('nan'):.4f}"),
            ("CIFAR-10-C mean corruption accuracy", rob.get("mean_corrupted_accuracy"))], self.figures())


def _image_count(value: int | str | None) -> int | None:
    """`robustness_images` as a count, or None for all images."""
    if value is None or value == "all":
        return None
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise CifarlabError(f"--robustness-images must be a number of images or 'all', got {value!r}") from None
    if count < 0:
        raise CifarlabError(f"--robustness-images must be >= 0, got {count}")
    return count


def _check_arguments(split: str) -> None:
    """Reject bad arguments before anything is loaded (the label check's: label_issues.check_options)."""
    if split not in SPLITS:
        raise CifarlabError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")


def _analyzed_set(data: CifarData, val_set: ImageSet | None, split: str, run_dir: str | Path) -> ImageSet:
    """The images of `split`: the test split, or the run's validation split carved from train."""
    if split == "test":
        return data.test
    if val_set is None:
        raise CifarlabError(f"{run_dir} was trained without a validation split (--val-size 0); use --split test")
    return val_set


def _predict_or_none(run: Run, images: ImageSet | None, precision: str, batch_size: int) -> Predictions | None:
    """Predictions on the validation split, for temperature scaling (None when the run has none)."""
    if images is None:
        return None
    return compute_predictions(run, images, "val", precision=precision, batch_size=batch_size)


def _metrics(pred: Predictions, what: str, out_dir: Path, files: dict[str, str]) -> dict:
    """Summary metrics, the confusion matrix (drawn) and its most-confused pairs."""
    counts, normalized = metrics.confusion(pred.labels, pred.preds, len(pred.classes))
    files["confusion_matrix"] = str(metrics.plot_confusion_matrix(
        counts, normalized, pred.classes, out_dir / "confusion_matrix.png",
        f"confusion matrix: {what} ({len(pred):,} images)"))
    pairs = metrics.top_confused_pairs(counts, pred.classes)
    for pair in pairs:  # the file names of its examples, most confident first
        pair["examples"] = [pred.files[i] for i in galleries.pair_examples(pred, pair["true_index"],
                                                                           pair["predicted_index"])]
    return {"metrics": metrics.classification_summary(pred.labels, pred.probs, pred.classes),
            "confusion_matrix": {"counts": counts.tolist(), "normalized": normalized.tolist()},
            "confused_pairs": pairs}


def _galleries(pred: Predictions, images: np.ndarray, pairs: list[dict], out_dir: Path,
               files: dict[str, str]) -> dict:
    """The confused-pairs strips and the two galleries of mistakes."""
    files["confused_pairs"] = str(galleries.plot_confused_pairs(images, pred, pairs, out_dir / "confused_pairs.png"))
    report = {}
    for name, select, title in (
            ("confident_mistakes", galleries.confident_mistakes, "the most confident mistakes"),
            ("highest_loss", galleries.highest_loss, "the highest-loss examples")):
        index = select(pred)
        report[name] = galleries.describe(pred, index)
        files[name] = str(galleries.plot_gallery(images, pred, index, out_dir / f"{name}.png", title))
    return {"galleries": report}


def _calibration(pred: Predictions, val: Predictions | None, split: str, out_dir: Path,
                 files: dict[str, str]) -> dict:
    """ECE and NLL before and after temperature scaling, and the reliability diagram."""
    report = calibration.calibration_report(pred, val)
    if split == "val":
        report["note"] = "analyzing val: the temperature was fitted on the same images"
    files["reliability"] = str(calibration.plot_reliability(report, out_dir / "reliability.png"))
    return report


def _robustness(run: Run, seed: int, precision: str, pred: Predictions, target: ImageSet, size: int | None,
                batch_size: int, out_dir: Path, files: dict[str, str], verbose: bool = False) -> dict:
    """Corruption accuracies on a seeded random subset of the split (clean accuracy from `pred`, not recomputed)."""
    n = len(pred)
    index = np.arange(n) if size is None or size >= n else np.sort(
        np.random.default_rng(seed).choice(n, size, replace=False))
    clean = float((pred.preds[index] == pred.labels[index]).mean())
    # every image's corruption is seeded by its index in the split: a sample sees what the full set does
    table = robustness.robustness_table(run.model, target.images[index], pred.labels[index], clean,
                                        device=run.device, precision=precision, batch_size=batch_size,
                                        indices=index, progress=verbose)
    table["subset"] = (f"all {n:,} images of the split" if len(index) == n
                       else f"{len(index):,} of the split's {n:,} images (seeded random sample)")
    files["robustness"] = str(robustness.plot_robustness(table, out_dir / "robustness.png"))
    return table


def _label_check(run: Run, cfg: TrainConfig, precision: str, fit_set: ImageSet, model: str,
                 options: label_issues.CheckOptions, out_dir: Path, files: dict[str, str], log) -> dict:
    """The label check on the images the run trained on (its train split less val, subset as it was), with the
    run's resolved config `cfg`."""
    report = label_issues.label_check(fit_set, cfg, out_dir, model=model, options=options, device=run.device,
                                      precision=precision, log=log)
    files["label_issues"] = report["picture"]
    files["label_check_probabilities"] = report["probabilities"]
    return report


def format_summary(report: dict) -> str:
    """The headline numbers and the paths of the pictures, for the console."""
    m, cal, rob = report["metrics"], report["calibration"], report["robustness"]
    ece_after = f"{cal['ece_after']:.4f} (T = {cal['temperature']:.2f})" if cal.get("temperature") else "not fitted"
    pair = report["confused_pairs"][0] if report["confused_pairs"] else None
    lines = [
        f"analysis of {report['run_dir']} ({report['model']}) on {report['split']}, {report['images']:,} images",
        f"  accuracy {m['accuracy']:.4f}   top-3 {m['top3_accuracy']:.4f}   macro F1 {m['macro']['f1']:.4f}",
        f"  ECE before {cal['ece_before']:.4f}   after {ece_after}",
        f"  worst class {m['worst_class']['class']} (F1 {m['worst_class']['f1']:.3f})",
        "  top confused pair " + (f"{pair['true']} -> {pair['predicted']} ({pair['count']}, {pair['rate']:.1%})"
                                  if pair else "none (no mistakes)"),
    ]
    if rob.get("mean_corrupted_accuracy") is not None:
        lines.append(f"  CIFAR-10-C mean corruption accuracy (15 x 5) {rob['mean_corrupted_accuracy']:.4f}, "
                     f"4 extra {rob['extra_mean_accuracy']:.4f} (clean {rob['clean_accuracy']:.4f}, "
                     f"{rob['images']:,} images)")
    check = report["label_check"]
    if "flagged" in check:
        lines.append(f"  label check ({check['fold_model']} fold models, {check['folds']} folds, "
                     f"{check['seconds']:.1f} s): {check['flagged']:,} of {check['images']:,} training images flagged "
                     f"({check['flagged_share']:.1%}); cleanlab's estimated noise rate "
                     f"{check['estimated_noise_rate']:.1%}; out-of-fold accuracy "
                     f"{check['out_of_sample_accuracy']:.4f}, {check['kept_accuracy']:.4f} on the images kept")
        if check.get("warning"):
            lines.append(f"  warning: {check['warning']}")
    lines.append(f"  took {sum(report['timings'].values()):.1f} s; wrote:")
    lines += [f"    {path}" for path in report["files"].values()]
    return "\n".join(lines)
