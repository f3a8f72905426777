"""Can an attribution map be trusted? Two checks, per method.

Faithfulness (Petsiuk et al. 2018, "RISE", the deletion and insertion metrics): pixels are removed
(deletion) or added (insertion) in order of decreasing attribution, in `steps` equal steps, and the
target class's probability is tracked. A removed pixel takes the baseline value: "mean" = 0 after
normalization (the per-channel mean colour), or "blur" = a Gaussian-blurred copy of the image. The area
under each curve (fraction of pixels on x, probability on y, trapezoid rule) summarizes it: deletion
AUC low and insertion AUC high mean the map found what the model uses. A random pixel order is the
reference ("random" row).

Model randomization (Adebayo et al. 2018, "Sanity Checks for Saliency Maps"): maps of the trained
model against maps of the same architecture with every weight re-initialized. Spearman rank correlation
(scipy.stats.spearmanr) of the absolute maps, per image, averaged; a method whose maps barely change
(|rho| > 0.5) does not depend on what the model learned and is flagged. Where one of the two maps is
constant (Grad-CAM of a random model is often all zero after its ReLU) rho is undefined and that image
is left out of the mean (`undefined` counts them).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn as nn

from ..errors import CifarlabError

BASELINES = ("mean", "blur")
RANDOMIZATION_THRESHOLD = 0.5


def baseline_images(x: torch.Tensor, baseline: str = "mean") -> torch.Tensor:
    """What a removed pixel becomes: 0 (the mean colour, after normalization) or a blurred image."""
    if baseline == "mean":
        return torch.zeros_like(x)
    if baseline == "blur":
        from torchvision.transforms.functional import gaussian_blur

        return gaussian_blur(x, kernel_size=[11, 11], sigma=[5.0, 5.0])
    raise CifarlabError(f"unknown baseline {baseline!r}; choose one of: {', '.join(BASELINES)}")


def pixel_order(maps: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """(N, H*W) pixel indices, most attributed first; ties broken at random (seeded), not by position."""
    n, hw = maps.shape[0], maps[0].numel()
    gen = torch.Generator().manual_seed(seed)
    perm = torch.stack([torch.randperm(hw, generator=gen) for _ in range(n)]).to(maps.device)
    flat = maps.reshape(n, hw).float().gather(1, perm)
    return perm.gather(1, flat.argsort(dim=1, descending=True, stable=True))


@torch.no_grad()
def perturbation_curves(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor, *,
                        steps: int = 16, baseline: str = "mean", batch_size: int = 256,
                        order: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """Deletion and insertion curves (N, steps + 1) of the target probability, and their AUCs (N,)."""
    if steps < 1:
        raise CifarlabError(f"steps must be >= 1, got {steps}")
    n, _, h, w = x.shape
    hw = h * w
    order = pixel_order(maps) if order is None else order
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(hw, device=order.device).expand(n, hw))
    counts = torch.tensor([round(k * hw / steps) for k in range(steps + 1)], device=x.device)
    masks = (rank[:, None, :] < counts[None, :, None]).reshape(n, steps + 1, 1, h, w).to(x.dtype)
    base = baseline_images(x, baseline)[:, None]
    target = torch.as_tensor(target, device=x.device).reshape(-1).expand(n).long()
    curves = {}
    per_chunk = max(1, batch_size // (steps + 1))  # whole images' step series per forward pass
    for kind in ("deletion", "insertion"):
        keep = 1 - masks if kind == "deletion" else masks  # deletion: masked pixels become the baseline
        probs = []
        for i in range(0, n, per_chunk):
            sl = slice(i, i + per_chunk)
            batch = x[sl, None] * keep[sl] + base[sl] * (1 - keep[sl])  # (n_chunk, steps + 1, C, H, W)
            p = model(batch.reshape(-1, *x.shape[1:])).float().softmax(1)
            p = p.reshape(batch.shape[0], steps + 1, -1)
            probs.append(p.gather(2, target[sl, None, None].expand(-1, steps + 1, 1))[..., 0].cpu())
        curve = torch.cat(probs).numpy()
        curves[kind] = curve
        curves[f"{kind}_auc"] = np.trapezoid(curve, dx=1.0 / steps, axis=1)
    return curves


def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of `model` with every weight re-initialized (modules' own reset_parameters(); loose
    parameters such as a ViT's class token and position embeddings drawn from N(0, 0.02²))."""
    clone = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in clone.modules():
            if callable(getattr(m, "reset_parameters", None)):
                m.reset_parameters()
            else:
                for p in m.parameters(recurse=False):
                    nn.init.normal_(p.data, std=0.02)
        # Modules with reset_parameters may hold extra parameters it does not touch: left as they are.
    return clone.eval()


def spearman_per_image(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Spearman's rho between |a[i]| and |b[i]| for each image; nan where one map is constant."""
    from scipy.stats import spearmanr

    out = []
    for x, y in zip(a.abs().reshape(len(a), -1).cpu().numpy(), b.abs().reshape(len(b), -1).cpu().numpy()):
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            out.append(math.nan)
        else:
            out.append(float(spearmanr(x, y).statistic))
    return out


def summarize_randomization(rhos: list[float], threshold: float = RANDOMIZATION_THRESHOLD) -> dict:
    valid = [r for r in rhos if not math.isnan(r)]
    mean = float(np.mean(valid)) if valid else None
    return {"randomization_spearman": mean, "randomization_flagged": bool(mean is not None and abs(mean) > threshold),
            "randomization_undefined": len(rhos) - len(valid)}
