"""What feature visualization and explanations take in: a run (or a model), images, the run's test split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..errors import CifarlabError
from ..training.run import Run, image_batch, load_run, run_from_model

RunLike = str | Path | nn.Module | Run
ImageLike = str | Path | np.ndarray


LoadedRun = Run  # the name feature maps, embeddings and explanations used before Run existed


def load(run: RunLike, device: str | torch.device = "auto", classes: list[str] | None = None) -> Run:
    """A run directory (its trained model and classes), a Run as it is, or an nn.Module (classes default to
    0..C-1)."""
    if isinstance(run, Run):
        return run
    if isinstance(run, nn.Module):
        return run_from_model(run, classes, device)
    return load_run(run, device)


def load_images(images: ImageLike | list[ImageLike]) -> np.ndarray:
    """(N, 32, 32, 3) uint8 from an image file, a folder of images, an array (H, W, 3) / (N, H, W, 3), a PIL
    image, a tensor (C, H, W) / (N, C, H, W), or a list of them."""
    from ..data.images import load_rgb_image

    if isinstance(images, np.ndarray):
        arr = images[None] if images.ndim == 3 else images
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise CifarlabError(f"images must be (H, W, 3) or (N, H, W, 3), got shape {images.shape}")
        if arr.dtype != np.uint8:
            arr = np.clip(arr * 255 if arr.max() <= 1.0 else arr, 0, 255).astype(np.uint8)
        return arr
    if not isinstance(images, list | str | Path):  # PIL images and tensors: as Run.predict reads them
        pixels, _ = image_batch(images)
        return pixels.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if isinstance(images, list):
        return np.concatenate([load_images(i) for i in images]) if images else np.zeros((0, 32, 32, 3), np.uint8)
    path = Path(images)
    if path.is_dir():
        files = image_files(path)
        return np.stack([load_rgb_image(f)[0] for f in files])
    if not path.is_file():
        raise CifarlabError(f"image not found: {path}")
    return load_rgb_image(path)[0][None]


def image_files(folder: str | Path) -> list[Path]:
    """The image files directly in `folder` (sorted), or a one-line error when there are none."""
    from ..data.folder import IMAGE_EXTENSIONS

    folder = Path(folder)
    if not folder.is_dir():
        raise CifarlabError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise CifarlabError(f"no image files in {folder} (expected {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


def normalize(model: nn.Module, images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, H, W, 3) uint8 to the float (N, 3, H, W) input the model expects (its default_cfg mean/std)."""
    from ..training.inference import preprocessing

    mean, std = preprocessing(model)
    arr = np.ascontiguousarray(images)
    arr = arr if arr.flags.writeable else arr.copy()  # torch warns about read-only arrays (decoded PIL images)
    x = torch.from_numpy(arr).to(device).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(mean, device=device).view(1, 3, 1, 1)) / torch.tensor(std, device=device).view(1, 3, 1, 1)


def run_test_split(loaded: Run, data: str | Path | None = None):
    """The run's test split (an ImageSet), checked to have the run's classes."""
    return loaded.dataset(data).test


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
