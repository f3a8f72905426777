"""Evaluate and predict with a trained run directory (the Python side of `cifarlab evaluate|predict`).

Both compute their logits with Run.logits (one intake, one batched loop): for the same images, test-time
augmentation and precision, evaluate's probabilities and predict's are the same numbers. Both use the run's
own recorded --tta unless `tta=` names another (none, flip, flip-translate, flip-translate-unsure)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .choices import TTA
from .errors import CifarlabError
from .rundir.inference import EVAL_BATCH_SIZE, classification_metrics
from .rundir.run import Predictions, Run, load_run

__all__ = ["Run", "evaluate", "load_run", "open_run", "predict"]


def open_run(run: str | Path | Run, device: str = "auto") -> Run:
    """`run` as a Run: a run directory is loaded on `device`; a Run is used as it is."""
    return run if isinstance(run, Run) else load_run(run, device)


def evaluate(run_dir: str | Path | Run, data: str | Path | None = None, *, split: str = "test", device: str = "auto",
             precision: str = "auto", batch_size: int = EVAL_BATCH_SIZE, tta: str | None = None,
             per_image: bool = False) -> dict[str, Any]:
    """Accuracy, loss and top-3 accuracy of a run's model on the test split (or `split="val"`).
    `tta`: none, flip, flip-translate or flip-translate-unsure (see rundir.inference.tta_logits); default:
    the run's own, as `predict` and `serve` use it.
    `precision="auto"` is fp32 here (Run.resolve_precision).
    `per_image=True` adds "probabilities": the (N, C) softmax of each image (a numpy array, in split order),
    the numbers Run.predict gives for the same images."""
    if split not in ("test", "val"):
        raise CifarlabError(f"unknown split {split!r}; choose test or val")
    run = open_run(run_dir, device)
    tta = run.resolve_tta(tta)  # a bad name fails before the data is read
    prec = run.resolve_precision(precision)
    if split == "test":
        test = run.dataset(data).test
        images, labels = test.images, test.labels
    else:
        splits = run.splits(data)
        if splits.val is None:
            raise CifarlabError(f"{run.run_dir} was trained without a validation split (--val-size 0)")
        images, labels = splits.val.images, splits.val.labels
    start = time.perf_counter()
    logits = run.logits(images, tta=tta, precision=prec, batch_size=batch_size)
    seconds = time.perf_counter() - start
    result = {"run_dir": str(run.run_dir), "split": split, "images": len(labels),
              **classification_metrics(logits, labels),
              "images_per_second": len(labels) / seconds, "precision": prec, "device": str(run.device), "tta": tta}
    if per_image:
        result["probabilities"] = logits.softmax(dim=1).numpy()
    return result


def predict(run_dir: str | Path | Run | None, images: Any, *, top_k: int = 3, tta: str | None = None,
            precision: str = "auto", device: str = "auto", onnx: str | Path | None = None) -> Predictions:
    """Top-k classes of images: file paths of any size or mode (one, or a list), PIL images, arrays or
    tensors (see Run.predict), each resized to 32x32 and normalized as the run was trained.
    `run_dir`: a run directory or a Run from load_run.
    `tta`: test-time augmentation (none, flip, flip-translate, flip-translate-unsure); default: the run's own
    --tta, as `evaluate` uses it. `precision="auto"` is fp32.

    `onnx="model.onnx"` runs a model written by `cifarlab.export` with ONNX Runtime instead (run_dir unused),
    with the same intake and the same test-time augmentation (default: the run's own, recorded at export).
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise CifarlabError(f"--top-k must be >= 1, got {top_k}")
    if tta is not None:
        TTA.entry(tta)  # a bad name fails before any model is loaded
    if onnx is not None:
        from .deploy import predict_onnx

        if precision not in ("auto", "fp32"):
            raise CifarlabError(f"--precision {precision} is for PyTorch; ONNX models run in fp32")
        return predict_onnx(onnx, images, top_k=top_k, tta=tta)
    if run_dir is None:
        raise CifarlabError("predict needs a run directory (or onnx=...)")
    files = [images] if isinstance(images, str | Path) else images
    if isinstance(files, list):  # a missing file fails before the model is loaded
        for path in files:
            if isinstance(path, str | Path) and not Path(path).exists():
                raise CifarlabError(f"image not found: {path}")
    return open_run(run_dir, device).predict(images, top_k=top_k, tta=tta, precision=precision)
