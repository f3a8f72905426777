"""A trained run, opened: `cifarlab.load_run(dir) -> Run`, the one object every reader of a run starts from.

A Run carries what every reader of a run directory needs, so that evaluate, predict, analyze, explain,
features, embed, serve and export start from the same object and predict the same way:

    run.model       the network with its trained weights, in eval mode, on run.device
    run.config      its TrainConfig; run.classes its class names
    run.mean/std    the normalization its weights expect; run.input_size the side the network sees
    run.splits()    train/val/test exactly as training made them (data.splits.make_splits)
    run.summary     summary.json (None while unfinished); run.history: metrics.jsonl
    run.predict(x)  top-k classes for what a notebook holds: paths, PIL images, arrays, tensors, with
                    the run's own test-time augmentation unless tta= says otherwise
    run.logits(x)   the logits behind it: evaluate, serve, analyze and export use them too
    run.resolve_tta(), run.resolve_precision()   what tta=None and precision="auto" mean for this run

Also here: the one intake of images (image_batch) and what predict gives back (Predictions), and the
typed readers of a run's config (run_config) and model (load_run_model).

    >>> run = cifarlab.load_run("runs/resnet20")
    >>> run.predict(Image.open("cat.png"))
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..choices import TTA
from ..config import TrainConfig
from ..data import CifarData, Splits, load_data, make_splits
from ..data.folder import IMAGE_EXTENSIONS
from ..data.images import IMAGE_SIZE, load_rgb_image, to_rgb_array
from ..data.subsets import select_classes
from ..errors import CifarlabError
from . import layout
from .device import resolve_device
from .inference import EVAL_BATCH_SIZE, batched_logits, preprocessing, resolve_eval_precision
from .result import History
from .writer import load_weights_into, recorded_data


@dataclass(repr=False, eq=False)
class Run:
    """A model in eval mode with its classes, and (for a run directory) its config and files."""

    model: nn.Module
    classes: list[str]
    device: torch.device
    run_dir: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)  # config.json as read ({} for a bare model)
    config: TrainConfig | None = None

    # -- what the weights expect -------------------------------------------------------------------
    @property
    def mean(self) -> tuple[float, ...]:
        return preprocessing(self.model)[0]

    @property
    def std(self) -> tuple[float, ...]:
        return preprocessing(self.model)[1]

    @property
    def input_size(self) -> int:
        """The side the network sees (32 unless --input-size or pretrained weights upsample the input)."""
        size = (getattr(self.model, "default_cfg", None) or {}).get("input_size")
        return int(size[-1]) if size else IMAGE_SIZE

    @property
    def architecture(self) -> str:
        cfg = getattr(self.model, "default_cfg", {}) or {}
        return str(self.info.get("config", {}).get("model") or cfg.get("architecture") or type(self.model).__name__)

    # -- the run's files ---------------------------------------------------------------------------
    @property
    def summary(self) -> dict[str, Any] | None:
        """summary.json (None while the run has not finished, or for a bare model)."""
        return layout.read_summary(self.run_dir) if self.run_dir is not None else None

    @property
    def history(self) -> History:
        """metrics.jsonl: one record per finished epoch (a list, shown as a per-epoch table)."""
        return History(layout.read_history(self.run_dir) if self.run_dir is not None else [])

    # -- the data ----------------------------------------------------------------------------------
    def dataset(self, data: str | Path | None = None) -> CifarData:
        """The run's data (or `data`), restricted to its classes and checked to have them."""
        if data is None and self.config is None:
            raise CifarlabError("pass data=... (a bare model has no run config to find its data)")
        cfg = self.config
        if data is None and self.run_dir is not None:  # the run's own, found from here (an older run's relative path)
            data = recorded_data(self.run_dir, self.info)
        dataset = load_data(data if data is not None else cfg.data, progress=False)
        dataset = select_classes(dataset, cfg.classes if cfg is not None else None)
        if dataset.classes != self.classes:
            raise CifarlabError(f"the data's classes {dataset.classes} differ from the run's {self.classes}")
        return dataset

    def splits(self, data: str | Path | None = None) -> Splits:
        """train/val/test exactly as training made them (--val-size, --seed, --train-size, --label-fraction)."""
        if self.config is None:
            raise CifarlabError("a bare model has no run config: its training splits are unknown")
        return make_splits(self.config, self.dataset(data))

    # -- prediction --------------------------------------------------------------------------------
    # One path for every prediction: images in any accepted form -> image_batch (the one intake) -> logits
    # (batched_logits: normalized, `tta`, `precision`, batched) -> probabilities / Predictions. evaluate,
    # predict, serve, analyze and export's check all come through here.
    def resolve_tta(self, tta: str | None = None) -> str:
        """`tta` checked against cifarlab.choices.TTA; None: the run's own recorded --tta (the one its test
        accuracy was measured with), "none" for a bare model or a run without one."""
        if tta is None:
            tta = (self.config.tta if self.config is not None else None) or "none"
        return TTA.entry(tta).name

    def resolve_precision(self, precision: str = "auto") -> str:
        """`precision` on the run's device: "auto" is fp32 (numbers that get cited come from fp32 logits);
        bf16/fp16 run the body in low precision and the head in fp32 (inference.resolve_eval_precision)."""
        return resolve_eval_precision(precision, self.device)

    def logits(self, images: Any, *, tta: str | None = None, precision: str = "auto",
               batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
        """Float32 logits (N, C) on the CPU for images in any form `predict` takes, averaged over the views
        of `tta` (None: the run's own, see resolve_tta). `precision="auto"` is fp32 (resolve_eval_precision)."""
        tta = self.resolve_tta(tta)
        precision = self.resolve_precision(precision)
        pixels, _ = image_batch(images)
        return self._logits(pixels, tta, precision, batch_size)

    def _logits(self, pixels: torch.Tensor, tta: str, precision: str, batch_size: int) -> torch.Tensor:
        return batched_logits(self.model, pixels, device=self.device, tta=tta, precision=precision,
                              batch_size=batch_size)

    def probabilities(self, images: Any, *, tta: str | None = None, precision: str = "auto",
                      batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
        """Softmax probabilities (N, C) of `logits`, as a numpy array."""
        return self.logits(images, tta=tta, precision=precision, batch_size=batch_size).softmax(dim=1).numpy()

    def predict(self, images: Any, top_k: int = 3, tta: str | None = None, *, precision: str = "auto",
                batch_size: int = EVAL_BATCH_SIZE) -> Predictions:
        """Top-k classes of each image: a path (str or Path), a folder, PIL images, uint8 arrays (H, W, 3) or
        (N, H, W, 3), float arrays in [0, 1], tensors (C, H, W) / (N, C, H, W) (uint8, or float in [0, 1]),
        or a list of these. Each is resized to 32x32 as image files are, then normalized by the run's mean/std.
        `tta`: test-time augmentation (none, flip, ...; None: the run's own, as `evaluate` uses it);
        `precision="auto"` is fp32. The probabilities equal `evaluate`'s for the same images and settings."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise CifarlabError(f"top_k must be an integer >= 1, got {top_k!r}")
        tta = self.resolve_tta(tta)
        precision = self.resolve_precision(precision)
        pixels, names = image_batch(images)
        probs = self._logits(pixels, tta, precision, batch_size).softmax(dim=1).numpy()
        return Predictions.from_probabilities(probs, self.classes, names, top_k, pixels, tta=tta)

    # -- display -----------------------------------------------------------------------------------
    def _test_accuracy(self) -> float | None:
        try:
            value = (self.summary or {}).get("test_accuracy")
        except CifarlabError:
            return None
        return float(value) if isinstance(value, int | float) else None

    def __repr__(self) -> str:
        acc = self._test_accuracy()
        where = f"{str(self.run_dir)!r}: " if self.run_dir is not None else ""
        accuracy = f", test accuracy {acc:.4f}" if acc is not None else ""
        return f"Run({where}{self.architecture}, {len(self.classes)} classes{accuracy})"

    def _repr_html_(self) -> str:
        acc = self._test_accuracy()
        rows = [("model", self.architecture),
                ("classes", ", ".join(self.classes)),
                ("test accuracy", f"{acc:.4f}" if acc is not None else "-"),
                ("input", f"{self.input_size}x{self.input_size}, mean {_fmt(self.mean)}, std {_fmt(self.std)}"),
                ("path", str(self.run_dir) if self.run_dir is not None else "(a model in memory)")]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                       f"{html.escape(v)}</td></tr>" for k, v in rows)
        return f"<table><caption>cifarlab Run</caption>{body}</table>"


def load_run(run_dir: str | Path, device: str | torch.device = "auto") -> Run:
    """Open a run directory: its model (trained weights, eval mode, on `device`), config, classes and files."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    run_dir = Path(run_dir)
    config, info = run_config(run_dir)
    return Run(_run_model(run_dir, config, info, dev), list(info["classes"]), dev, run_dir, info, config)


def run_config(run_dir: str | Path) -> tuple[TrainConfig, dict[str, Any]]:
    """A run's TrainConfig, checked as a flag or a YAML file would be, and config.json as read (its "classes",
    "command", "cwd", ...). Reads no weights and builds no model: for what only needs the settings."""
    info = layout.read_config(run_dir)
    return TrainConfig.from_dict(info["config"], source=str(Path(run_dir) / layout.CONFIG)), info


def load_run_model(run_dir: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a run's model with its trained weights, in eval mode, and return it with config.json as read."""
    config, info = run_config(run_dir)
    return _run_model(Path(run_dir), config, info, device), info


def _run_model(run_dir: Path, config: TrainConfig, info: dict[str, Any], device: torch.device | str) -> nn.Module:
    from ..models import create_model
    from ..pretrained.setup import apply_preprocessing

    model = create_model(config.model, num_classes=len(info["classes"]), **config.model_kwargs)
    load_weights_into(model, layout.find_weights(run_dir))
    apply_preprocessing(model, config)  # pretrained mean/std and --input-size, as in training
    return model.to(device).eval()


def run_from_model(model: nn.Module, classes: list[str] | None = None, device: str | torch.device = "auto") -> Run:
    """A Run around a model in memory (no directory): classes default to 0..C-1; "auto" keeps its device."""
    if device == "auto":  # a model the caller built stays where it is
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    model = model.to(dev).eval()
    if classes is None:
        out = getattr(model.get_classifier(), "out_features", None) if hasattr(model, "get_classifier") else None
        classes = [str(i) for i in range(out or 10)]
    return Run(model, list(classes), dev)


# -- what predict takes in ------------------------------------------------------------------------
# The one intake of images a user hands over, in any form: Run.predict / logits (so evaluate, serve and
# analyze), ONNX predict, and explain / features (features.inputs.load_images). One rule for each kind:
# files and PIL images are read by data.images (EXIF, 16/32-bit, bicubic resize to 32x32); uint8 is 0..255;
# float is 0..1, and a float outside [0, 1] is refused, never guessed to be 0..255.
def image_batch(images: Any) -> tuple[torch.Tensor, list[str]]:
    """Pixels (N, 3, 32, 32) and a name for each image, from any input Run.predict takes: uint8 when every
    image is uint8 (files, PIL, uint8 arrays and tensors), else float in 0..255 (float inputs in [0, 1])."""
    parts = _parts(images)
    if not parts:
        raise CifarlabError("no images given")
    tensors = [p for p, _ in parts]
    if any(t.dtype != torch.uint8 for t in tensors):
        tensors = [t.float() for t in tensors]
    pixels = tensors[0] if len(tensors) == 1 else torch.cat(tensors)
    return pixels, [n for _, names in parts for n in names]


def as_uint8_images(pixels: torch.Tensor) -> np.ndarray:
    """image_batch's pixels as (N, H, W, 3) uint8 (float ones rounded)."""
    if pixels.dtype != torch.uint8:
        pixels = pixels.clamp(0, 255).round().to(torch.uint8)
    return np.ascontiguousarray(pixels.permute(0, 2, 3, 1).numpy())


def image_files(folder: str | Path) -> list[Path]:
    """The image files directly in `folder` (sorted), or a one-line error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CifarlabError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise CifarlabError(f"no image files in {folder} (expected {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


def _parts(images: Any) -> list[tuple[torch.Tensor, list[str]]]:
    if isinstance(images, list | tuple):
        return [part for item in images for part in _parts(item)]
    if isinstance(images, str | Path):
        return [_from_path(Path(images))]
    if _is_pil(images):
        name = str(getattr(images, "filename", "") or "PIL image")
        return [(_from_uint8(to_rgb_array(images, name)[0][None]), [name])]
    if isinstance(images, np.ndarray):
        return [_from_array(images, "array")]
    if isinstance(images, torch.Tensor):
        return [_from_tensor(images)]
    raise CifarlabError(f"cannot predict on a {type(images).__name__}: pass an image path, a PIL image, "
                        "a numpy array (H, W, 3) or a torch tensor (C, H, W), or a list of them")


def _is_pil(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with torchvision
        return False
    return isinstance(obj, Image.Image)


def _from_path(path: Path) -> tuple[torch.Tensor, list[str]]:
    if path.is_dir():
        files = image_files(path)
        return _from_uint8(np.stack([load_rgb_image(f)[0] for f in files])), [str(f) for f in files]
    if not path.is_file():
        raise CifarlabError(f"image not found: {path}")
    return _from_uint8(load_rgb_image(path)[0][None]), [str(path)]


def _from_array(arr: np.ndarray, what: str) -> tuple[torch.Tensor, list[str]]:
    """(H, W, 3) or (N, H, W, 3): uint8, or float in [0, 1]."""
    if arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        raise CifarlabError(f"an image {what} must be (H, W, 3) or (N, H, W, 3) RGB, got shape {tuple(arr.shape)}")
    batch = arr[None] if arr.ndim == 3 else arr
    names = [f"{what}[{i}]" for i in range(len(batch))]
    if batch.dtype == np.uint8:
        if batch.shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE):  # resized as image files are (bicubic, by Pillow)
            from PIL import Image

            batch = np.stack([to_rgb_array(Image.fromarray(np.ascontiguousarray(a)), n)[0]
                              for a, n in zip(batch, names)])
        return _from_uint8(batch), names
    if not np.issubdtype(batch.dtype, np.floating):
        raise CifarlabError(f"an image {what} must be uint8 (0..255) or float (0..1), got dtype {batch.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).permute(0, 3, 1, 2)
    return _from_unit_float(x, what), names


def _from_tensor(t: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    """(C, H, W) or (N, C, H, W) with C = 3: uint8, or float in [0, 1]."""
    if t.ndim not in (3, 4) or t.shape[-3] != 3:
        raise CifarlabError(f"an image tensor must be (3, H, W) or (N, 3, H, W), got shape {tuple(t.shape)}")
    batch = t.detach().cpu()
    batch = batch[None] if batch.ndim == 3 else batch
    if batch.dtype == torch.uint8:
        return _from_array(batch.permute(0, 2, 3, 1).numpy(), "tensor")
    if not batch.is_floating_point():
        raise CifarlabError(f"an image tensor must be uint8 (0..255) or float (0..1), got dtype {batch.dtype}")
    return _from_unit_float(batch.float(), "tensor"), [f"tensor[{i}]" for i in range(len(batch))]


def _from_unit_float(x: torch.Tensor, what: str) -> torch.Tensor:
    """Float (N, 3, H, W) in [0, 1] to float (N, 3, 32, 32) in 0..255; a value outside [0, 1] is refused."""
    if x.numel() and (not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1):
        raise CifarlabError(f"a float image {what} must hold values in [0, 1] (got {float(x.min()):.3g} to "
                            f"{float(x.max()):.3g}); pass uint8 for 0..255")
    if tuple(x.shape[-2:]) != (IMAGE_SIZE, IMAGE_SIZE):
        x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bicubic", antialias=True,
                          align_corners=False).clamp(0, 1)
    return x * 255


def _from_uint8(batch: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 to (N, 3, H, W) uint8 (a copy: the caller's array may be read-only or change later)."""
    return torch.from_numpy(np.array(batch, dtype=np.uint8)).permute(0, 3, 1, 2)


# -- what predict gives back ----------------------------------------------------------------------
class Predictions(list):
    """One {"image", "predictions": [{"class", "probability"}, ...]} per image, most probable first (a list,
    so it is JSON as it is); `.probabilities` holds all of them, (N, C), and `.tta` the test-time augmentation
    behind them. Shows itself as a table in Jupyter."""

    probabilities: np.ndarray
    classes: list[str]
    pixels: np.ndarray | None
    tta: str  # the test-time augmentation behind the probabilities

    @classmethod
    def from_probabilities(cls, probs: np.ndarray, classes: list[str], names: list[str], top_k: int,
                           pixels: torch.Tensor | np.ndarray | None = None, *, tta: str = "none") -> Predictions:
        """`pixels` (for the thumbnails): (N, 3, H, W) as image_batch gives, or uint8 (N, H, W, 3).
        `tta`: the test-time augmentation the probabilities were computed with."""
        k = min(top_k, probs.shape[1])
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        result = cls({"image": name, "predictions": [{"class": classes[c], "probability": float(p[c])} for c in top]}
                     for name, p, top in zip(names, probs, order))
        result.probabilities, result.classes, result.tta = probs, list(classes), tta
        result.pixels = as_uint8_images(pixels) if isinstance(pixels, torch.Tensor) else pixels
        return result

    def __repr__(self) -> str:
        shown = [f"{Path(r['image']).name}: {r['predictions'][0]['class']} {r['predictions'][0]['probability']:.2f}"
                 for r in self[:3]]
        more = f", ... ({len(self)} images)" if len(self) > 3 else ""
        tta = getattr(self, "tta", "none")
        return f"Predictions({', '.join(shown)}{more}{'; tta ' + tta if tta != 'none' else ''})"

    def _repr_html_(self) -> str:
        rows = []
        for i, r in enumerate(self[:50]):
            thumb = _thumbnail(self.pixels[i]) if getattr(self, "pixels", None) is not None else ""
            top = ", ".join(f"{html.escape(p['class'])} {p['probability']:.3f}" for p in r["predictions"])
            rows.append(f"<tr><td>{thumb}</td><td style='text-align:left'>{html.escape(Path(r['image']).name)}</td>"
                        f"<td style='text-align:left'>{top}</td></tr>")
        more = f"<caption>first 50 of {len(self)} images</caption>" if len(self) > 50 else ""
        return (f"<table>{more}<tr><th></th><th>image</th><th style='text-align:left'>top classes</th></tr>"
                f"{''.join(rows)}</table>")


def _thumbnail(pixels: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img src='data:image/png;base64,{data}' width='48' height='48' style='image-rendering:pixelated'>"


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


__all__ = ["Predictions", "Run", "as_uint8_images", "image_batch", "image_files", "load_run", "load_run_model",
           "run_config", "run_from_model"]
