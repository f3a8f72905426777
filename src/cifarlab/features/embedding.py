"""Where a network puts the test images: penultimate-layer features (forward_features, then
forward_head(pre_logits=True)) projected to 2-D with PCA, t-SNE (scikit-learn) or UMAP (umap-learn, if
installed), coloured by class, misclassified images marked."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..errors import CifarlabError
from ..models._modes import eval_mode, hooked_input
from . import plots
from .inputs import RunLike, load, normalize, run_test_split, sample_indices

METHODS = ("pca", "tsne", "umap")
_TITLES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


@dataclass
class Embedding:
    coords: np.ndarray  # (N, 2)
    labels: np.ndarray  # true classes (N,)
    preds: np.ndarray  # predicted classes (N,)
    indices: np.ndarray  # positions in the test split
    classes: list[str]
    method: str
    figure: Path | None = None

    @property
    def accuracy(self) -> float:
        return float((self.labels == self.preds).mean()) if len(self.labels) else float("nan")


@torch.no_grad()
def penultimate_features(model: nn.Module, images: np.ndarray, *, device: torch.device | str = "cpu",
                         batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D), logits (N, C)) for uint8 images, from one forward_features pass per batch."""
    if not hasattr(model, "forward_features") or not hasattr(model, "forward_head"):
        raise CifarlabError(f"{type(model).__name__} has no forward_features/forward_head (the cifarlab model "
                            "contract); build it with cifarlab.create_model")
    feats, logits = [], []
    with eval_mode(model):
        for i in range(0, len(images), batch_size):
            f = model.forward_features(hooked_input(model, normalize(model, images[i:i + batch_size], device)))
            feats.append(model.forward_head(f, pre_logits=True).float().flatten(1).cpu())
            logits.append(model.forward_head(f).float().cpu())
    return torch.cat(feats).numpy(), torch.cat(logits).numpy()


def project(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, D) -> (N, 2). t-SNE and UMAP run on the first 50 principal components when D > 50."""
    if method not in METHODS:
        raise CifarlabError(f"unknown embedding method {method!r}; choose one of: {', '.join(METHODS)}")
    n = len(features)
    if n < 3:
        raise CifarlabError(f"an embedding needs at least 3 images, got {n}")
    from sklearn.decomposition import PCA

    x = features.astype(np.float32)
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise CifarlabError("--method umap needs the umap-learn package (pip install umap-learn); "
                                "or use --method pca or tsne") from None
    if x.shape[1] > 50 and n > 50:
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    return umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed).fit_transform(x)


def embed(run: RunLike, method: str = "pca", samples: int | None = 2000, *, out: str | Path | None = None,
          data: str | Path | None = None, seed: int = 0, device: str = "auto") -> Embedding:
    """Penultimate features of `samples` random test images (None: all) projected to 2-D by `method`.

    With `out`, writes embed_<method>.png: points coloured by true class (legend), misclassified marked x.
    """
    if method not in METHODS:
        raise CifarlabError(f"unknown embedding method {method!r}; choose one of: {', '.join(METHODS)}")
    loaded = load(run, device)
    test = run_test_split(loaded, data)
    idx = sample_indices(len(test), samples, seed)
    feats, logits = penultimate_features(loaded.model, test.images[idx], device=loaded.device)
    coords = project(feats, method, seed)
    result = Embedding(coords, test.labels[idx], logits.argmax(1), idx, loaded.classes, method)
    if out is not None:
        title = (f"{loaded.architecture}: penultimate features of {len(idx)} test images, {_TITLES[method]} "
                 f"(accuracy {result.accuracy:.1%})")
        result.figure = plots.embedding_figure(coords, result.labels, result.preds, loaded.classes,
                                               Path(out) / f"embed_{method}.png", title)
    return result
