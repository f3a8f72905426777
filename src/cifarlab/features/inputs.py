"""What feature visualization and explanations take in: a run (or a model), images, the run's test split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..errors import CifarlabError
from ..rundir.run import Run, as_uint8_images, image_batch, load_run, run_from_model
from ..rundir.run import image_files as image_files  # the folder listing of the one intake, for explain

RunLike = str | Path | nn.Module | Run
ImageLike = str | Path | np.ndarray



def load(run: RunLike, device: str | torch.device = "auto", classes: list[str] | None = None) -> Run:
    """A run directory (its trained model and classes), a Run as it is, or an nn.Module (classes default to
    0..C-1)."""
    if isinstance(run, Run):
        return run
    if isinstance(run, nn.Module):
        return run_from_model(run, classes, device)
    return load_run(run, device)


def load_images(images: ImageLike | list[ImageLike]) -> np.ndarray:
    """(N, 32, 32, 3) uint8 from anything Run.predict takes (an image file, a folder of images, a PIL image, an
    array (H, W, 3) / (N, H, W, 3), a tensor (C, H, W) / (N, C, H, W), or a list of them), read by the same
    intake, rundir.run.image_batch, with its rule for floats: values in [0, 1], anything else refused."""
    return as_uint8_images(image_batch(images)[0])


def normalize(model: nn.Module, images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, H, W, 3) uint8 to the float (N, 3, H, W) input the model expects (its default_cfg mean/std)."""
    from ..rundir.inference import preprocessing

    mean, std = preprocessing(model)
    arr = np.ascontiguousarray(images)
    arr = arr if arr.flags.writeable else arr.copy()  # torch warns about read-only arrays (decoded PIL images)
    x = torch.from_numpy(arr).to(device).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(mean, device=device).view(1, 3, 1, 1)) / torch.tensor(std, device=device).view(1, 3, 1, 1)


def run_test_split(run: Run, data: str | Path | None = None):
    """The run's test split (an ImageSet), checked to have the run's classes."""
    return run.dataset(data).test


def per_class_indices(labels: np.ndarray, n_per_class: int, seed: int = 0) -> np.ndarray:
    """Up to `n_per_class` indices of each class, chosen with a seeded generator, in class order."""
    if n_per_class < 1:
        raise CifarlabError(f"--samples-per-class must be >= 1, got {n_per_class}")
    rng = np.random.default_rng(seed)
    picks = [np.sort(rng.permutation(np.flatnonzero(labels == c))[:n_per_class]) for c in np.unique(labels)]
    return np.concatenate(picks) if picks else np.zeros(0, np.int64)


def sample_indices(n_total: int, n: int | None, seed: int = 0) -> np.ndarray:
    """`n` seeded random indices out of `n_total`, sorted (all of them when n is None or larger)."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    if n < 1:
        raise CifarlabError(f"the number of samples must be >= 1, got {n}")
    return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Softmax probabilities (N, C) for normalized inputs, in batches."""
    out = [model(x[i:i + batch_size]).float().softmax(dim=1) for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


def default_out(run_dir: str | Path, out: str | Path | None, name: str) -> Path:
    """`out`, else RUN_DIR/<name> (where the CLI writes its pictures by default)."""
    return Path(out) if out else Path(run_dir) / name


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name.replace("+", "p"))
