"""The fast path for frozen backbones: compute the backbone's features once, cache them, fit heads on them.

    linear_probe(model="tv:resnet18", pretrained="imagenet", data=...)   # or init_from=RUN_DIR, ...

A frozen backbone without augmentation gives every image the same features in every epoch, so training
a head with `train --freeze backbone` repeats the same backbone forward passes epoch after epoch. Here
they run once per split (train subset, validation, test): the pooled pre-logit features
(`forward_head(forward_features(x), pre_logits=True)`) are stored under `$CIFARLAB_CACHE/features/` in
a file keyed by a hash of the backbone's weights, the model's name and arguments, the preprocessing
(mean, std, input size), the precision and the images themselves: new weights (another checkpoint,
another --init-from) or other preprocessing mean another key, never a stale file. Two heads are then fit
on the standardized features, in seconds: a linear layer trained with AdamW (the head `train --freeze
backbone` would train, minus the repeated forward passes), and scikit-learn's LogisticRegression
(L-BFGS, L2, `C`). Model selection uses the validation split; the test split is reported once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .._io import atomic_path, write_json_atomic
from ..config import TrainConfig, takes_settings, with_overrides
from ..data import ImageSet, load_data, make_splits
from ..data.cache import cache_root
from ..data.loader import DeviceLoader
from ..data.subsets import select_classes
from ..errors import CifarlabError
from ..models._modes import hooked_input
from ..rundir.device import autocast, resolve_device, resolve_precision
from ..rundir.inference import preprocessing
from ..training.resolve import resolve

FEATURE_CACHE_FORMAT = 1


@dataclass
class ProbeResult:
    model: str
    feature_dim: int
    train_images: int
    linear: dict[str, float]  # val_accuracy, test_accuracy, seconds
    logistic: dict[str, float]  # val_accuracy, test_accuracy, seconds
    feature_seconds: float  # computing (or reading) the features of every split
    cache_hits: dict[str, bool]  # split -> read from the cache
    cache_key: str
    starting_weights: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@takes_settings("model", "pretrained", "weights", "init_from", "cifar_stem", "input_size", "data", "classes",
                "label_fraction", "train_size", "val_size", "seed", "device", "precision", "eval_batch_size")
def linear_probe(cfg: TrainConfig | None = None, *, out: str | Path | None = None, probe_epochs: int = 50,
                 probe_lr: float = 1e-3, C: float = 1.0, use_cache: bool = True, verbose: bool = True,
                 **overrides: Any) -> ProbeResult:
    """Fit a linear head and a logistic regression on cached frozen-backbone features; see the module doc.

    Takes TrainConfig fields (model, pretrained, weights, init_from, cifar_stem, input_size, data, classes,
    label_fraction, train_size, val_size, seed, device, precision); `out` gets probe.json when given."""
    log = print if verbose else (lambda *a, **k: None)
    cfg = with_overrides(cfg, overrides)
    cfg = resolve(dataclasses.replace(cfg, freeze="backbone", unfreeze_schedule=None))
    if probe_epochs < 1:
        raise CifarlabError(f"--probe-epochs must be >= 1, got {probe_epochs}")
    if not C > 0:
        raise CifarlabError(f"-C must be > 0, got {C}")
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)

    data = select_classes(load_data(cfg.data, progress=verbose), cfg.classes)
    made = make_splits(cfg, data)  # the splits a training run with this config would use
    fit_set = made.train
    splits = {"train": made.train, "val": made.val, "test": made.test}

    model, info, key = frozen_backbone(cfg, data.classes, device, precision, log)
    start = time.perf_counter()
    feats, hits = {}, {}
    for name, images in splits.items():
        if images is None:
            continue
        feats[name], hits[name] = cached_features(model, images, key, device, precision, cfg.eval_batch_size,
                                                  use_cache=use_cache)
    feature_seconds = time.perf_counter() - start
    log(f"features: {feats['train'].shape[1]} per image; " + ", ".join(
        f"{n} {len(f):,} ({'cache' if hits[n] else 'computed'})" for n, f in feats.items())
        + f"; {feature_seconds:.1f} s")

    scaler = _standardizer(feats["train"])
    x = {n: scaler(f) for n, f in feats.items()}
    y = {n: s.labels for n, s in splits.items() if s is not None}
    linear = _fit_linear(x, y, len(data.classes), probe_epochs, probe_lr, cfg.seed)
    logistic = _fit_logistic(x, y, C, cfg.seed)
    result = ProbeResult(cfg.model, int(feats["train"].shape[1]), len(fit_set), linear, logistic, feature_seconds,
                         hits, key, {k: v for k, v in info.items() if k in ("pretrained", "init_from")})
    for name, r in (("linear probe", linear), ("logistic regression", logistic)):
        log(f"{name}: val accuracy {_fmt(r.get('val_accuracy'))}, test accuracy {r['test_accuracy']:.4f} "
            f"({r['seconds']:.1f} s)")
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(out) / "probe.json", {**result.as_dict(), "config": cfg.to_dict()})
    return result


def frozen_backbone(cfg: TrainConfig, classes: list[str], device: torch.device, precision: str,
                    log=print) -> tuple[nn.Module, dict[str, Any], str]:
    """(the model of a resolved config with its starting weights and preprocessing, in eval mode on `device`;
    what the transfer set-up did; the feature cache key of its backbone)."""
    from ..pretrained.setup import prepare_model
    from ..training.regularize import build_model

    model = build_model(cfg, len(classes))
    _, info = prepare_model(model, cfg, classes, log)
    model = model.to(device).eval()
    return model, info, backbone_key(model, cfg, precision)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def backbone_key(model: nn.Module, cfg: TrainConfig, precision: str) -> str:
    """A hash of everything the features depend on: weights, architecture, preprocessing, precision."""
    digest = hashlib.sha256(f"cifarlab-features-v{FEATURE_CACHE_FORMAT}".encode())
    mean, std = preprocessing(model)
    size = (getattr(model, "default_cfg", {}) or {}).get("input_size")
    digest.update(json.dumps([cfg.model, cfg.model_kwargs, mean, std, size, precision], sort_keys=True,
                             default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                      if tensor.numel() else b"")
    return digest.hexdigest()[:24]


def _images_key(images: ImageSet) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(images.images).tobytes())
    digest.update(np.asarray(images.labels).tobytes())
    return digest.hexdigest()[:16]


def feature_cache_file(key: str, images: ImageSet) -> Path:
    return cache_root() / "features" / f"{key}-{_images_key(images)}.npy"


def cached_features(model: nn.Module, images: ImageSet, key: str, device: torch.device, precision: str,
                    batch_size: int = 256, use_cache: bool = True) -> tuple[np.ndarray, bool]:
    """(features (N, D) float32, whether they came from the cache); computed and stored on a miss."""
    path = feature_cache_file(key, images)
    if use_cache and path.exists():
        try:
            return np.load(path, allow_pickle=False), True
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # unreadable: compute again
    feats = compute_features(model, images.images, device, precision, batch_size)
    if use_cache:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, feats)
    return feats, False


@torch.no_grad()
def compute_features(model: nn.Module, images: np.ndarray, device: torch.device, precision: str,
                     batch_size: int = 256) -> np.ndarray:
    """Pooled pre-logit features of uint8 (N, H, W, 3) images, with the model's preprocessing and resize."""
    mean, std = preprocessing(model)
    loader = DeviceLoader(images, np.zeros(len(images), np.int64), batch_size=batch_size, device=device,
                          mean=mean, std=std)
    model.eval()
    out = []
    for x, _ in loader:
        with autocast(device, precision):  # hooked_input: the --input-size resize, which forward_features skips
            f = model.forward_head(model.forward_features(hooked_input(model, x)), pre_logits=True)
        out.append(f.float().flatten(1).cpu())
    return torch.cat(out).numpy()


def _standardizer(train: np.ndarray):
    mean, std = train.mean(0), train.std(0) + 1e-6
    return lambda f: ((f - mean) / std).astype(np.float32)


def _fit_linear(x: dict, y: dict, num_classes: int, epochs: int, lr: float, seed: int) -> dict[str, float]:
    """A Linear head trained with AdamW on the features (batch 256, cosine), as a frozen-backbone run would."""
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x["train"]), torch.from_numpy(y["train"])
    head = nn.Linear(xt.shape[1], num_classes)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(yt) // 256)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        order = torch.randperm(len(yt), generator=gen)
        for i in range(0, len(yt), 256):
            idx = order[i:i + 256]
            loss = nn.functional.cross_entropy(head(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        acc = {f"{n}_accuracy": (head(torch.from_numpy(x[n])).argmax(1).numpy() == y[n]).mean().item()
               for n in ("val", "test") if n in x}
    return {**acc, "seconds": time.perf_counter() - start}


def _fit_logistic(x: dict, y: dict, C: float, seed: int) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    clf = LogisticRegression(C=C, max_iter=1000, random_state=seed)
    clf.fit(x["train"], y["train"])
    acc = {f"{n}_accuracy": float(clf.score(x[n], y[n])) for n in ("val", "test") if n in x}
    return {**acc, "seconds": time.perf_counter() - start}
