"""Zero-shot CIFAR-10 from ImageNet: what a pretrained ImageNet classifier knows before any training.

    zero_shot(model="timm:efficientnet_lite0", input_size=224)        # or `cifarlab zero-shot ...`

The model keeps its 1000-class ImageNet head. Each image is upsampled to `input_size` (bilinear, on the
device) and normalized as the weights expect; the ImageNet softmax is then read through the grouping of
imagenet_to_cifar.py: the score of a CIFAR class is the SUM of the probabilities of its ImageNet classes
(the probability that the image is any one of them), and the prediction is the class with the largest
score. The 777 ImageNet classes of no CIFAR class are ignored. "sum" favours classes with many ImageNet
members (dog: 118, bird: 59) when the network hesitates; aggregate="max" (the single most probable member)
does not, and the result records both accuracies, computed from the same forward passes.

precision="auto" is fp32, as for `evaluate`: the accuracy gets quoted, and only fp32 gives the fp32 model's
logits. bf16/fp16 run the body in low precision and the head in fp32. The result (and zero_shot.json)
records the precision that ran.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import write_json_atomic
from ..config import TrainConfig, takes_settings, with_overrides
from ..errors import CifarlabError
from ..training.resolve import resolve
from .imagenet_to_cifar import CIFAR10_FROM_IMAGENET

AGGREGATES = ("sum", "max")
SPLITS = ("test", "train")


@dataclass
class ZeroShotResult:
    model: str
    weights: str
    input_size: int
    device: str
    precision: str  # the one that ran: "auto" resolved
    split: str
    images: int
    aggregate: str
    accuracy: float
    accuracy_by_aggregate: dict[str, float]
    per_class: dict[str, float]  # recall of each CIFAR class
    confusion: list[list[int]]  # rows: true class, columns: predicted class (CIFAR order)
    classes: list[str]
    mass_on_mapped: float  # mean softmax probability on the mapped ImageNet classes
    images_per_second: float
    seconds: float
    top_imagenet: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # per class: most frequent top-1

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def group_matrix(classes: list[str]) -> torch.Tensor:
    """(1000, len(classes)) 0/1 matrix: ImageNet class i belongs to CIFAR class j."""
    unknown = [c for c in classes if c not in CIFAR10_FROM_IMAGENET]
    if unknown:
        raise CifarlabError(f"zero-shot maps ImageNet to the CIFAR-10 classes; the data has classes with no "
                            f"ImageNet mapping: {', '.join(unknown)}")
    m = torch.zeros(1000, len(classes))
    for j, c in enumerate(classes):
        m[list(CIFAR10_FROM_IMAGENET[c]), j] = 1.0
    return m


def cifar_scores(probs: torch.Tensor, groups: torch.Tensor, aggregate: str) -> torch.Tensor:
    """(N, C) class scores from (N, 1000) ImageNet probabilities: sum, or max, over each group."""
    if aggregate == "sum":
        return probs @ groups
    masked = probs.unsqueeze(2) * groups.unsqueeze(0)  # (N, 1000, C)
    return masked.amax(1)


@takes_settings("model", "weights", "input_size", "data", "device", "precision", "eval_batch_size", "seed")
def zero_shot(cfg: TrainConfig | None = None, *, split: str = "test", aggregate: str = "sum",
              limit: int | None = None, out: str | Path | None = None, verbose: bool = True,
              **overrides: Any) -> ZeroShotResult:
    """Evaluate cfg.model's ImageNet weights on CIFAR-10 with no training; see the module doc.

    Takes TrainConfig fields (model, weights, input_size, data, device, precision, eval_batch_size, seed);
    `limit` takes a stratified subset of that many images; `out` gets zero_shot.json when given."""
    from ..data import load_data, stratified_subset
    from ..data.loader import DeviceLoader
    from ..pretrained.setup import apply_preprocessing
    from ..pretrained.weights import load_pretrained, pretrained_preprocessing
    from ..rundir.device import resolve_device
    from ..rundir.inference import fp32_logits, preprocessing, resolve_eval_precision
    from ..training.regularize import build_model

    log = print if verbose else (lambda *a, **k: None)
    if aggregate not in AGGREGATES:
        raise CifarlabError(f"unknown --aggregate {aggregate!r}; choose one of: {', '.join(AGGREGATES)}")
    if split not in SPLITS:
        raise CifarlabError(f"unknown --split {split!r}; choose one of: {', '.join(SPLITS)}")
    if limit is not None and limit < 10:
        raise CifarlabError(f"--limit must be at least 10 images (one per class), got {limit}")
    cfg = resolve(with_overrides(cfg, {**overrides, "pretrained": "imagenet"}))
    device = resolve_device(cfg.device)
    precision = resolve_eval_precision(cfg.precision, device)

    data = load_data(cfg.data, progress=verbose)
    images = data.test if split == "test" else data.train
    if limit is not None and limit < len(images.labels):
        images = stratified_subset(images, limit, cfg.seed)
    groups = group_matrix(list(data.classes)).to(device)

    model = build_model(cfg, 1000)
    report = load_pretrained(model, cfg, with_head=True)
    apply_preprocessing(model, cfg)
    prep = pretrained_preprocessing(cfg.model)
    size = cfg.input_size or prep.input_size
    log(f"zero-shot {cfg.model} ({prep.weights}, {report.line()}) on {len(images.labels):,} {split} images "
        f"at {size}x{size}, {precision}")
    model = model.to(device).eval()
    mean, std = preprocessing(model)
    loader = DeviceLoader(images.images, images.labels, batch_size=cfg.eval_batch_size, device=device,
                          mean=mean, std=std)
    preds = {a: [] for a in AGGREGATES}
    top1, labels, mass = [], [], 0.0
    start = time.perf_counter()
    with torch.no_grad():
        for x, y in loader:
            probs = fp32_logits(model, x, precision).softmax(1)
            for a in AGGREGATES:
                preds[a].append(cifar_scores(probs, groups, a).argmax(1).cpu())
            top1.append(probs.argmax(1).cpu())
            mass += (probs @ groups).sum().item()
            labels.append(y.cpu())
    seconds = time.perf_counter() - start
    y_true = torch.cat(labels).numpy()
    accuracy = {a: float((torch.cat(p).numpy() == y_true).mean()) for a, p in preds.items()}
    y_pred = torch.cat(preds[aggregate]).numpy()
    k = len(data.classes)
    confusion = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    per_class = {c: float(confusion[i, i] / max(confusion[i].sum(), 1)) for i, c in enumerate(data.classes)}
    result = ZeroShotResult(cfg.model, prep.weights, size, str(device), precision, split, len(y_true), aggregate,
                            accuracy[aggregate], accuracy, per_class, confusion.tolist(), list(data.classes),
                            mass / len(y_true), len(y_true) / seconds, seconds,
                            _top_imagenet(torch.cat(top1).numpy(), y_true, list(data.classes)))
    log(f"zero-shot accuracy ({aggregate}) {result.accuracy:.4f} (sum {accuracy['sum']:.4f}, max "
        f"{accuracy['max']:.4f}); {result.mass_on_mapped:.2f} of the probability on mapped classes; "
        f"{result.images_per_second:.0f} images/s")
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        config = {**cfg.to_dict(), "precision": precision}  # the one that ran, not "auto"
        write_json_atomic(Path(out) / "zero_shot.json", {**result.as_dict(), "config": config})
    return result


def _top_imagenet(top1: np.ndarray, y_true: np.ndarray, classes: list[str], n: int = 3) -> dict:
    """The n most frequent ImageNet top-1 predictions for each CIFAR class (names from timm, when present)."""
    try:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        name = lambda i: info.index_to_description(int(i)).split(",")[0]  # noqa: E731
    except ImportError:
        name = str
    out = {}
    for j, c in enumerate(classes):
        values, counts = np.unique(top1[y_true == j], return_counts=True)
        order = np.argsort(-counts)[:n]
        out[c] = [(name(values[i]), int(counts[i])) for i in order]
    return out
