"""The model's predictions on one split, computed once (batched) and shared by every analysis."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .._io import atomic_path
from ..data.types import ImageSet
from ..rundir.inference import EVAL_BATCH_SIZE
from ..rundir.run import Run


@dataclass
class Predictions:
    """Logits (N, C) float32 and labels (N,) of one split, with each image's name and the class names."""

    logits: np.ndarray
    labels: np.ndarray
    files: list[str]
    classes: list[str]
    probs: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.logits = np.asarray(self.logits, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.probs = softmax(self.logits)

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @cached_property
    def confidence(self) -> np.ndarray:
        """The probability of the predicted class."""
        return self.probs.max(axis=1)

    @cached_property
    def label_probs(self) -> np.ndarray:
        """The probability given to the true label."""
        return self.probs[np.arange(len(self)), self.labels]

    @cached_property
    def losses(self) -> np.ndarray:
        """Per-example cross-entropy, from the log-softmax so that tiny probabilities stay finite."""
        return -log_softmax(self.logits)[np.arange(len(self)), self.labels]


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def image_names(images: ImageSet, split: str) -> list[str]:
    """The images' file names, or `split/NNNNN` for data read from an archive (no files)."""
    return list(images.files) if images.files else [f"{split}/{i:05d}" for i in range(len(images))]


def compute_predictions(run: Run, images: ImageSet, split: str, *, precision: str = "fp32",
                        batch_size: int = EVAL_BATCH_SIZE, tta: str = "none") -> Predictions:
    """The run's logits over a split (Run.logits: the path evaluate and predict take), in large batches
    without gradients. `tta` "none" by default: analyze measures the model itself, as its robustness and
    label check do."""
    logits = run.logits(images.images, tta=tta, precision=precision, batch_size=batch_size)
    return Predictions(logits.numpy(), images.labels, image_names(images, split), list(images.classes))


def save_predictions(pred: Predictions, path: Path) -> Path:
    """predictions.npz: index, file_name, label, pred, probs per image (and logits, classes)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: savez would add ".npz" to a name
        np.savez_compressed(f, index=np.arange(len(pred)), file_name=np.array(pred.files), label=pred.labels,
                            pred=pred.preds, probs=pred.probs, logits=pred.logits, classes=np.array(pred.classes))
    return Path(path)


def load_predictions(path: Path) -> Predictions:
    """Read back a predictions.npz written by `save_predictions`."""
    with np.load(path, allow_pickle=False) as z:  # never unpickle what a file hands us
        return Predictions(z["logits"], z["label"], z["file_name"].tolist(), z["classes"].tolist())
