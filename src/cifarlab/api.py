"""Evaluate and predict with a trained run directory (the Python side of `cifarlab evaluate|predict`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import load_data
from .data.images import load_rgb_image
from .data.subsets import select_classes
from .errors import CifarlabError
from .training.device import resolve_device
from .training.inference import EVAL_BATCH_SIZE, classification_metrics, predict_logits, resolve_eval_precision
from .training.rundir import load_run_model


def load_run(run_dir: str | Path, device: str = "auto") -> tuple[torch.nn.Module, dict[str, Any]]:
    """A run's model (eval mode, trained weights) and its config.json contents."""
    return load_run_model(run_dir, resolve_device(device))


def evaluate(run_dir: str | Path, data: str | Path | None = None, *, split: str = "test", device: str = "auto",
             precision: str = "auto", batch_size: int = EVAL_BATCH_SIZE, tta: str | None = None) -> dict[str, Any]:
    """Accuracy, loss and top-3 accuracy of a run's model on the test split (or `split="val"`).
    `tta`: none, flip or flip-translate (see training.inference.tta_logits); default: the run's own.
    `precision="auto"` is fp32 here (training.inference.resolve_eval_precision)."""
    if split not in ("test", "val"):
        raise CifarlabError(f"unknown split {split!r}; choose test or val")
    dev = resolve_device(device)
    model, info = load_run_model(run_dir, dev)
    cfg = info["config"]
    dataset = select_classes(load_data(data if data is not None else cfg.get("data")), cfg.get("classes"))
    if dataset.classes != info["classes"]:
        raise CifarlabError(f"the data's classes {dataset.classes} differ from the run's {info['classes']}")
    if split == "test":
        images, labels = dataset.test.images, dataset.test.labels
    else:
        from .data import split_train_val

        _, val = split_train_val(dataset.train, cfg.get("val_size"), cfg.get("seed", 0))
        if val is None:
            raise CifarlabError(f"{run_dir} was trained without a validation split (--val-size 0)")
        images, labels = val.images, val.labels
    prec = resolve_eval_precision(precision, dev)
    tta = tta or cfg.get("tta") or "none"
    start = time.perf_counter()
    logits = predict_logits(model, images, device=dev, precision=prec, batch_size=batch_size, tta=tta)
    seconds = time.perf_counter() - start
    return {"run_dir": str(run_dir), "split": split, "images": len(labels), **classification_metrics(logits, labels),
            "images_per_second": len(labels) / seconds, "precision": prec, "device": str(dev), "tta": tta}


def predict(run_dir: str | Path | None, images: list[str | Path], *, top_k: int = 3, device: str = "auto",
            onnx: str | Path | None = None) -> list[dict]:
    """Top-k classes for image files of any size or mode (converted to RGB and resized to 32x32).

    `onnx="model.onnx"` runs a model written by `cifarlab.export` with ONNX Runtime instead (run_dir unused).
    """
    if onnx is not None:
        from .deploy import predict_onnx

        return predict_onnx(onnx, images, top_k=top_k)
    if top_k < 1:
        raise CifarlabError(f"--top-k must be >= 1, got {top_k}")
    for path in images:
        if not Path(path).is_file():
            raise CifarlabError(f"image not found: {path}")
    dev = resolve_device(device)
    model, info = load_run_model(run_dir, dev)
    batch = np.stack([load_rgb_image(p)[0] for p in images])
    return [{"image": str(path), "predictions": top}
            for path, top in zip(images, top_k_predictions(model, info["classes"], batch, top_k, dev))]


def top_k_predictions(model: torch.nn.Module, classes: list[str], images: np.ndarray, top_k: int,
                      device: torch.device) -> list[list[dict[str, Any]]]:
    """For (N, 32, 32, 3) uint8 images: the top-k {"class", "probability"} of each, most probable first."""
    probs = predict_logits(model, images, device=device, precision="fp32").softmax(dim=1)
    top = probs.topk(min(top_k, probs.shape[1]), dim=1)
    return [[{"class": classes[c], "probability": float(p)} for p, c in zip(pv.tolist(), ci.tolist())]
            for pv, ci in zip(top.values, top.indices)]
