"""Evaluate and predict with a trained run directory (the Python side of `cifarlab evaluate|predict`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CifarlabError
from .training.inference import EVAL_BATCH_SIZE, classification_metrics, predict_logits, resolve_eval_precision
from .training.run import Predictions, Run, load_run

__all__ = ["Run", "evaluate", "load_run", "open_run", "predict", "top_k_predictions"]


def open_run(run: str | Path | Run, device: str = "auto") -> Run:
    """`run` as a Run: a run directory is loaded on `device`; a Run is used as it is."""
    return run if isinstance(run, Run) else load_run(run, device)


def evaluate(run_dir: str | Path | Run, data: str | Path | None = None, *, split: str = "test", device: str = "auto",
             precision: str = "auto", batch_size: int = EVAL_BATCH_SIZE, tta: str | None = None) -> dict[str, Any]:
    """Accuracy, loss and top-3 accuracy of a run's model on the test split (or `split="val"`).
    `tta`: none, flip, flip-translate or flip-translate-unsure (see training.inference.tta_logits); default:
    the run's own.
    `precision="auto"` is fp32 here (training.inference.resolve_eval_precision)."""
    if split not in ("test", "val"):
        raise CifarlabError(f"unknown split {split!r}; choose test or val")
    run = open_run(run_dir, device)
    dev, model = run.device, run.model
    if split == "test":
        test = run.dataset(data).test
        images, labels = test.images, test.labels
    else:
        splits = run.splits(data)
        if splits.val is None:
            raise CifarlabError(f"{run.run_dir} was trained without a validation split (--val-size 0)")
        images, labels = splits.val.images, splits.val.labels
    prec = resolve_eval_precision(precision, dev)
    tta = tta or (run.config.tta if run.config is not None else None) or "none"
    start = time.perf_counter()
    logits = predict_logits(model, images, device=dev, precision=prec, batch_size=batch_size, tta=tta)
    seconds = time.perf_counter() - start
    return {"run_dir": str(run.run_dir), "split": split, "images": len(labels),
            **classification_metrics(logits, labels),
            "images_per_second": len(labels) / seconds, "precision": prec, "device": str(dev), "tta": tta}


def predict(run_dir: str | Path | Run | None, images: Any, *, top_k: int = 3, device: str = "auto",
            onnx: str | Path | None = None) -> Predictions:
    """Top-k classes of images: file paths of any size or mode (one, or a list), PIL images, arrays or
    tensors (see Run.predict), each resized to 32x32 and normalized as the run was trained.
    `run_dir`: a run directory or a Run from load_run.

    `onnx="model.onnx"` runs a model written by `cifarlab.export` with ONNX Runtime instead (run_dir unused;
    image files only).
    """
    if onnx is not None:
        from .deploy import predict_onnx

        return predict_onnx(onnx, [images] if isinstance(images, str | Path) else images, top_k=top_k)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise CifarlabError(f"--top-k must be >= 1, got {top_k}")
    if run_dir is None:
        raise CifarlabError("predict needs a run directory (or onnx=...)")
    files = [images] if isinstance(images, str | Path) else images
    if isinstance(files, list):  # a missing file fails before the model is loaded
        for path in files:
            if isinstance(path, str | Path) and not Path(path).exists():
                raise CifarlabError(f"image not found: {path}")
    return open_run(run_dir, device).predict(images, top_k=top_k)


def top_k_predictions(model: torch.nn.Module, classes: list[str], images: np.ndarray, top_k: int,
                      device: torch.device) -> list[list[dict[str, Any]]]:
    """For (N, 32, 32, 3) uint8 images: the top-k {"class", "probability"} of each, most probable first."""
    probs = predict_logits(model, images, device=device, precision="fp32").softmax(dim=1)
    top = probs.topk(min(top_k, probs.shape[1]), dim=1)
    return [[{"class": classes[c], "probability": float(p)} for p, c in zip(pv.tolist(), ci.tolist())]
            for pv, ci in zip(top.values, top.indices)]
