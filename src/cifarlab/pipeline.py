"""`cifarlab run`: the README's main job in one call. Train the default model, analyze its mistakes,
explain a sample of test images, draw feature maps and the embedding, and write the HTML report.

    run(data, out) -> RunReport
      1. train (the baseline, 2 epochs unless told; any train setting may be passed)
      2. analyze: metrics, confusion matrix, galleries, calibration, robustness (RUN_DIR/analysis)
      3. explain one test image per class with Grad-CAM, saliency and integrated gradients, with their
         faithfulness numbers (RUN_DIR/explain); the most faithful of them is the one the report and
         `serve` show first (attribution.choice)
      4. feature maps of the first explained image and the PCA embedding (RUN_DIR/features, RUN_DIR/embed)
      5. the report: RUN_DIR/report.html
Every step after training reads the run directory, so a failed step can be redone by its own command.
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import runfiles
from .errors import CifarlabError

DEFAULT_EPOCHS = 2
# Three methods of different kinds (CAM, gradient, path integral): the faithfulness table then compares
# something. One image per class keeps the whole explanation step to seconds on a CPU.
DEFAULT_METHODS = "gradcam,saliency,integrated-gradients"
DEFAULT_EXPLAIN_PER_CLASS = 1
DEFAULT_EMBED_SAMPLES = 2000


@dataclass
class RunReport:
    run_dir: Path
    report: Path
    summary: dict[str, Any]
    analysis: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)  # per step


def run(data: str | Path | None = None, out: str | Path | None = None, *, model: str = "baseline",
        epochs: int = DEFAULT_EPOCHS, explain_per_class: int = DEFAULT_EXPLAIN_PER_CLASS,
        methods: str = DEFAULT_METHODS, robustness_images: int | str = 1000,
        embed_samples: int = DEFAULT_EMBED_SAMPLES, overwrite: bool = False, device: str = "auto",
        verbose: bool = True, **train_settings: Any) -> RunReport:
    """Train, analyze, explain and report; returns where everything is and the headline numbers.

    `train_settings` are TrainConfig fields (lr, batch_size, augment, seed, precision, ...), as for
    `cifarlab.train`. `explain_per_class=0` skips explanations and feature maps, `embed_samples=0` the
    embedding, `robustness_images=0` the corruption study.
    """
    log = print if verbose else (lambda *a, **k: None)
    _check(explain_per_class, embed_samples, methods)
    from .analysis import analyze
    from .reporting import report
    from .training import train

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    result = train(model=model, epochs=epochs, data=str(data) if data is not None else None,
                   out=str(out) if out is not None else None, device=device, overwrite=overwrite,
                   verbose=verbose, **train_settings)
    run_dir, seconds["train"] = result.run_dir, time.perf_counter() - start

    step = time.perf_counter()
    analysis = analyze(run_dir, robustness_images=robustness_images, device=device, verbose=False)
    seconds["analyze"] = time.perf_counter() - step
    log(_analysis_line(analysis, seconds["analyze"]))

    if explain_per_class:
        step = time.perf_counter()
        sample = _explain(run_dir, explain_per_class, methods, device)
        seconds["explain"] = time.perf_counter() - step
        log(f"explained {len(sample.images)} test images with {methods} in {seconds['explain']:.1f} s: "
            + _faithfulness_line(sample.metrics))
        log(_choice_line(run_dir))
        step = time.perf_counter()
        _features(run_dir, sample.images[0], embed_samples, device)
        seconds["features"] = time.perf_counter() - step

    step = time.perf_counter()
    path = report(run_dir)
    seconds["report"] = time.perf_counter() - step
    total = time.perf_counter() - start
    test = result.summary.get("test_accuracy")
    log(f"test accuracy {test:.4f} after {result.summary.get('epochs_completed')} epochs; "
        f"{total:.0f} s in all ({', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())})")
    log(f"run directory: {run_dir}")
    log(f"report: {path}")
    return RunReport(Path(run_dir), path, result.summary, analysis, seconds)


def _check(explain_per_class: int, embed_samples: int, methods: str) -> None:
    """Bad arguments and a missing Captum fail here, before minutes of training."""
    if explain_per_class < 0:
        raise CifarlabError(f"--explain-per-class must be >= 0, got {explain_per_class}")
    if embed_samples < 0:
        raise CifarlabError(f"--embed-samples must be >= 0, got {embed_samples}")
    if explain_per_class:
        from .attribution.api import resolve_methods

        resolve_methods(methods)
        if importlib.util.find_spec("captum") is None:
            raise CifarlabError("cifarlab run explains test images with Captum: pip install 'cifarlab[explain]' "
                                "(or --explain-per-class 0 to skip explanations)")


def _explain(run_dir: Path, per_class: int, methods: str, device: str):
    from .attribution.api import explain_gallery

    return explain_gallery(run_dir, samples_per_class=per_class, method=methods, out=run_dir / runfiles.EXPLAIN_DIR,
                           device=device)


def _features(run_dir: Path, image, embed_samples: int, device: str) -> None:
    from .features import embed, feature_maps

    feature_maps(run_dir, image, out=run_dir / runfiles.FEATURES_DIR, device=device)
    if embed_samples:
        embed(run_dir, "pca", embed_samples, out=run_dir / runfiles.EMBED_DIR, device=device)


def _analysis_line(a: dict[str, Any], seconds: float) -> str:
    m, cal = a["metrics"], a["calibration"]
    pair = a["confused_pairs"][0] if a["confused_pairs"] else None
    confused = f"; most confused {pair['true']} -> {pair['predicted']} ({pair['count']})" if pair else ""
    return (f"analyzed {a['images']:,} {a['split']} images in {seconds:.1f} s: macro F1 {m['macro']['f1']:.4f}, "
            f"ECE {cal['ece_before']:.4f}{confused}")


def _choice_line(run_dir: Path) -> str:
    """Which explanation the report and `serve` show for this run, by its own measurements, and the marks."""
    from .attribution.choice import choose_method

    choice = choose_method(run_dir)
    marked = [f"{name} {', '.join(marks)}" for name, marks in choice.marks.items() if marks and name != choice.method]
    return f"explanation to show: {choice.caption()}" + (f"; marked: {'; '.join(marked)}" if marked else "")


def _faithfulness_line(metrics: dict[str, dict[str, Any]]) -> str:
    return ", ".join(f"{name} deletion AUC {r['deletion_auc']:.3f}" for name, r in metrics.items())
