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

from ._stages import stage_timer
from .config import takes_settings
from .errors import CifarlabError
from .rundir import layout

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


@takes_settings()
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
    from .features import embed, feature_maps
    from .reporting import report
    from .training import train

    seconds: dict[str, float] = {}
    stages = ["train", "analyze", *(["explain", "features"] if explain_per_class else []),
              *(["embed"] if explain_per_class and embed_samples else []), "report"]
    stage = stage_timer(stages, log, seconds, indent="")
    start = time.perf_counter()
    with stage("train", f"{model}, {epochs} epochs"):
        result = train(model=model, epochs=epochs, data=str(data) if data is not None else None,
                       out=str(out) if out is not None else None, device=device, overwrite=overwrite,
                       verbose=verbose, **train_settings)
    run_dir = result.run_dir
    with stage("analyze", "metrics, confusions, galleries, calibration"
               + (f", robustness on {robustness_images} images" if str(robustness_images) != "0" else "")):
        analysis = analyze(run_dir, robustness_images=robustness_images, device=device, verbose=verbose)

    if explain_per_class:
        with stage("explain", f"{explain_per_class} test image(s) per class with {methods}, and how faithful "
                              "each method is"):
            sample = _explain(run_dir, explain_per_class, methods, device)
            log(f"explained {len(sample.images)} test images: " + _faithfulness_line(sample.metrics))
            log(_choice_line(run_dir))
        with stage("features", "feature maps of the first explained image"):
            feature_maps(run_dir, sample.images[0], out=run_dir / layout.FEATURES_DIR, device=device)
        if embed_samples:
            with stage("embed", f"PCA of the penultimate features of {embed_samples} test images"):
                embed(run_dir, "pca", embed_samples, out=run_dir / layout.EMBED_DIR, device=device)

    with stage("report", "the HTML page of all of the above"):
        path = report(run_dir)
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
            raise CifarlabError("cifarlab run explains test images with Captum: pip install -e '.[explain]' "
                                "(or --explain-per-class 0 to skip explanations)")


def _explain(run_dir: Path, per_class: int, methods: str, device: str):
    from .attribution.api import explain_gallery

    return explain_gallery(run_dir, samples_per_class=per_class, method=methods, out=run_dir / layout.EXPLAIN_DIR,
                           device=device)


def _choice_line(run_dir: Path) -> str:
    """Which explanation the report and `serve` show for this run, by its own measurements, and the marks."""
    from .attribution.choice import choose_method

    choice = choose_method(run_dir)
    marked = [f"{name} {', '.join(marks)}" for name, marks in choice.marks.items() if marks and name != choice.method]
    return f"explanation to show: {choice.caption()}" + (f"; marked: {'; '.join(marked)}" if marked else "")


def _faithfulness_line(metrics: dict[str, dict[str, Any]]) -> str:
    return ", ".join(f"{name} deletion AUC {r['deletion_auc']:.3f}" for name, r in metrics.items())
