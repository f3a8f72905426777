"""The airbench94 network: the fastest published way to 94 % on CIFAR-10, rewritten for cifarlab.

Keller Jordan (2024), "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv:2404.00498, and its
Muon follow-up (airbench94_muon: 94.01 % mean over 200 runs in 2.59 s on an A100;
github.com/KellerJordan/cifar10-airbench; Muon: Jordan et al. 2024, kellerjordan.github.io/posts/muon).
Both descend from David Page (2018), "How to train your ResNet" (myrtle.ai), and tysam-code's
hlb-CIFAR10.

The net (about 2 M parameters): a 2×2 conv of 24 filters whose weights are fixed to the whitening of
the training images' 2×2 patches (the eigenvectors of their covariance, scaled by 1/sqrt(eigenvalue),
and their negatives: `initialize_from_data`), GELU, then three blocks of [3×3 conv, max-pool 2, BN,
GELU, 3×3 conv, BN, GELU] of widths 64, 256, 256, a global max-pool (airbench's max-pool 3 over the 3×3 maps
of a 32×32 image; global, so that smaller training images fit), and a bias-free linear head whose
output is divided by its width. Every 3×3 conv starts as the identity on its first input-width
filters (dirac init); batch norm scales are frozen at 1 (only the shifts learn) with a stats momentum
of 0.6 and eps 1e-12; the head is initialized to unit standard deviation.

The recipe (`Recipe` below, and `cifarlab train --recipe fast`, which adds the augmentation and TTA):
8 epochs at batch 2000, label smoothing 0.2, lr decaying linearly to 0. The conv filters are trained by
Muon (lr 0.24, Nesterov momentum 0.6; `training/muon.py`); the BN shifts, the whitening bias and the
head by Nesterov SGD (momentum 0.85). airbench sums the loss over the batch; cifarlab averages it, so
the SGD learning rates below are airbench's per-image ones times the batch size (`param_groups`),
which is the same update. The whitening bias learns only during the first 3 of the 8 epochs.

`model_kwargs` change what the 2025 record (Hiverge's cifar10-speedrun, 94.01 % in 2.1 s on an A100)
retuned as a set: `activation` (gelu, silu, relu), `bn_momentum`, `muon_momentum`, `whiten_bias_epochs`,
and the SGD groups' per-image `bias_lr` and `head_lr` (taken as given; by default airbench's, scaled with
`--lr`). FreezeOut (`freeze_out`) is described at `param_groups`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CifarlabError
from ._base import CifarModel
from ._registry import Recipe, register_model

WHITEN_KERNEL = 2
WHITEN_WIDTH = 2 * 3 * WHITEN_KERNEL**2  # each eigenvector and its negative: the activation keeps both signs
# airbench94_muon's learning rates for a loss SUMMED over the batch, i.e. per image (sum → mean: × batch).
BIAS_LR_PER_IMAGE = 0.053
HEAD_LR_PER_IMAGE = 0.67
FILTER_LR = 0.24  # Muon's; scale-free (the update is orthogonalized), so the same for a mean loss
WEIGHT_DECAY_PER_IMAGE = 2e-6  # airbench: wd = 2e-6 × batch, applied as SGD weight_decay = wd / lr
SGD_MOMENTUM = 0.85
MUON_MOMENTUM = 0.6
WHITEN_BIAS_EPOCHS = 3
BN_MOMENTUM = 0.6  # airbench's convention: the weight of the old running statistics (torch's momentum is 1 − it)


class FrozenScaleBatchNorm(nn.BatchNorm2d):
    """Batch norm whose scale stays 1 (only the shift learns): fewer knobs for the short schedule."""

    def __init__(self, num_features: int, momentum: float = BN_MOMENTUM, eps: float = 1e-12):
        super().__init__(num_features, eps=eps, momentum=1 - momentum)  # torch's momentum is 1 − airbench's
        self.weight.requires_grad_(False)


class DiracConv(nn.Conv2d):
    """3×3 conv, no bias; the first in_channels filters start as the identity, so the untrained net
    passes its input through and the random filters add to it."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        nn.init.dirac_(self.weight.data[:self.in_channels])


ACTIVATIONS = {"gelu": nn.GELU, "silu": nn.SiLU, "relu": nn.ReLU}


class ConvGroup(nn.Module):
    def __init__(self, c_in: int, c_out: int, activation: str = "gelu", bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        self.conv1 = DiracConv(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = FrozenScaleBatchNorm(c_out, momentum=bn_momentum)
        self.conv2 = DiracConv(c_out, c_out)
        self.norm2 = FrozenScaleBatchNorm(c_out, momentum=bn_momentum)
        self.activ = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


def patch_whitening_weights(images: torch.Tensor, kernel_size: int = WHITEN_KERNEL, eps: float = 5e-4,
                            chunk: int = 1000) -> torch.Tensor:
    """Conv filters (2·k, C, kh, kw) that whiten the images' kernel_size² patches: the eigenvectors of
    the patches' (uncentred, as airbench) covariance divided by sqrt(eigenvalue + eps), then their
    negatives. `images` are normalized float NCHW; the covariance is accumulated in chunks in float64."""
    c = images.shape[1]
    dim = c * kernel_size * kernel_size
    cov = torch.zeros(dim, dim, dtype=torch.float64, device=images.device)
    count = 0
    for part in images.split(chunk):
        # im2col: (n, dim, positions) with dim ordered (channel, row, col) like a conv weight.
        cols = F.unfold(part.float(), kernel_size).transpose(1, 2).reshape(-1, dim).double()
        cov += cols.T @ cols
        count += len(cols)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov / count)
    filters = eigenvectors.T.reshape(dim, c, kernel_size, kernel_size) / torch.sqrt(eigenvalues + eps).view(-1, 1, 1, 1)
    return torch.cat((filters, -filters)).float()


FREEZE_OUT_BLOCKS = ("block1", "block2", "block3")


def check_freeze_out(freeze_out: dict[str, float] | None) -> dict[str, float]:
    """{block: fraction of training after which it stops learning}, checked; {} for None."""
    if freeze_out is not None and not isinstance(freeze_out, dict):
        raise CifarlabError(f"model_kwargs freeze_out must map blocks to fractions of training, e.g. "
                            f"{{block1: 0.75}}; got {freeze_out!r}")
    freeze_out = dict(freeze_out or {})
    for name, horizon in freeze_out.items():
        if name not in FREEZE_OUT_BLOCKS:
            raise CifarlabError(f"model_kwargs freeze_out: no block {name!r} (the blocks: "
                                f"{', '.join(FREEZE_OUT_BLOCKS)})")
        if isinstance(horizon, bool) or not isinstance(horizon, (int, float)) or not 0 < horizon <= 1:
            raise CifarlabError(f"model_kwargs freeze_out: {name} must be a fraction of training in (0, 1], "
                                f"got {horizon!r}")
    return {name: float(freeze_out[name]) for name in FREEZE_OUT_BLOCKS if name in freeze_out}


def _number(name: str, value, low: float, high: float | None, low_open: bool) -> float:
    """`value` as a float in its interval, or a one-line error naming the setting and the interval."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    ok = ok and (value > low if low_open else value >= low) and (high is None or value < high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {'∞' if high is None else f'{high:g}'})"
        raise CifarlabError(f"model_kwargs {name} must be a number in {interval}, got {value!r}")
    return float(value)


def check_hyperparameters(activation, bn_momentum, muon_momentum, whiten_bias_epochs, bias_lr, head_lr) -> dict:
    """The airbench settings a config may change, checked (the 2025 record, Hiverge's cifar10-speedrun,
    retuned them as a set: SiLU, BN momentum 0.5566, Muon momentum 0.655, 0.19 epochs of whitening bias)."""
    if activation not in ACTIVATIONS:
        raise CifarlabError(f"model_kwargs activation: no activation {activation!r} "
                            f"(choose from {', '.join(ACTIVATIONS)})")
    return dict(activation=activation,
                bn_momentum=_number("bn_momentum", bn_momentum, 0, 1, low_open=False),
                muon_momentum=_number("muon_momentum", muon_momentum, 0, 1, low_open=False),
                whiten_bias_epochs=_number("whiten_bias_epochs", whiten_bias_epochs, 0, None, low_open=True),
                bias_lr=None if bias_lr is None else _number("bias_lr", bias_lr, 0, None, low_open=True),
                head_lr=None if head_lr is None else _number("head_lr", head_lr, 0, None, low_open=True))


class AirbenchNet(CifarModel):
    default_cfg = {
        **CifarModel.default_cfg,
        "classifier": "head",
        "first_conv": "whiten",
        "stages": ["whiten", "block1", "block2", "block3"],
        "cam_layer": "block3",
    }

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (64, 256, 256),
                 freeze_out: dict[str, float] | None = None, freeze_out_scaled: bool = False,
                 activation: str = "gelu", bn_momentum: float = BN_MOMENTUM, muon_momentum: float = MUON_MOMENTUM,
                 whiten_bias_epochs: float = WHITEN_BIAS_EPOCHS, bias_lr: float | None = None,
                 head_lr: float | None = None):
        super().__init__()
        self.widths = tuple(widths)
        self.freeze_out = check_freeze_out(freeze_out)
        self.freeze_out_scaled = bool(freeze_out_scaled)
        self.hyper = check_hyperparameters(activation, bn_momentum, muon_momentum, whiten_bias_epochs,
                                           bias_lr, head_lr)
        self.whiten = nn.Conv2d(3, WHITEN_WIDTH, WHITEN_KERNEL, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)  # set from the data, never trained
        self.activ = ACTIVATIONS[activation]()
        block = dict(activation=activation, bn_momentum=self.hyper["bn_momentum"])
        self.block1 = ConvGroup(WHITEN_WIDTH, widths[0], **block)
        self.block2 = ConvGroup(widths[0], widths[1], **block)
        self.block3 = ConvGroup(widths[1], widths[2], **block)
        self.pool = nn.AdaptiveMaxPool2d(1)  # = airbench's MaxPool2d(3) at 32x32; any size for --progressive-resize
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self._init_head()

    def _init_head(self) -> None:
        with torch.no_grad():
            self.head.weight.mul_(1 / self.head.weight.std())

    @torch.no_grad()
    def initialize_from_data(self, images: torch.Tensor) -> None:
        """Set the first layer to whiten the 2×2 patches of `images` (normalized float NCHW training
        images; airbench uses 5,000). The engine calls this once before the first step."""
        self.whiten.weight.copy_(patch_whitening_weights(images.to(self.whiten.weight.device)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.whiten(x))
        return self.block3(self.block2(self.block1(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.pool(x), 1)
        return x if pre_logits else self.head(x) / x.shape[-1]

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.head.in_features, num_classes, bias=False)
        self._init_head()

    def param_groups(self, lr: float, batch_size: int, weight_decay: float, momentum: float,
                     epochs: float) -> list[dict]:
        """airbench94_muon's optimizer groups for a MEAN loss. `lr` is Muon's filter lr (0.24 in the
        recipe); the SGD groups keep airbench's ratio to it, times the batch size (sum → mean).
        `weight_decay` is per image (airbench: 2e-6); SGD's coupled decay is wd·batch / lr_sum, which
        for a mean loss is wd / lr_per_image. `lr_horizon` makes the whitening bias's lr reach 0 after
        WHITEN_BIAS_EPOCHS epochs (its schedule runs over that fraction of training), and each block of
        `freeze_out` after its own fraction (FreezeOut, Brock et al. 2017, arXiv:1706.04983: the early
        blocks settle first). `freeze_out_scaled` multiplies their lr by 1 / fraction, so that it sums to
        the same over the shorter schedule. Once a block's lr is 0 the engine stops its gradients, and
        backward skips that block and the input gradient of the block after it: 20% of a 32-pixel step
        for block1 on a CPU, 48% for block1 and block2 (BENCHMARKS.md). Its batch norms still
        track their running statistics."""
        scale = lr / FILTER_LR
        hyper = self.hyper  # a bias_lr or head_lr given in model_kwargs is per image, as is, not scaled
        bias_lr = hyper["bias_lr"] if hyper["bias_lr"] is not None else scale * BIAS_LR_PER_IMAGE
        head_lr = hyper["head_lr"] if hyper["head_lr"] is not None else scale * HEAD_LR_PER_IMAGE

        def sgd(params, lr_per_image, **extra):
            return {"params": params, "lr": lr_per_image * batch_size, "base_lr": lr_per_image * batch_size,
                    "weight_decay": weight_decay / lr_per_image, "momentum": momentum, "muon": False, **extra}

        def muon(params, factor=1.0, **extra):
            return {"params": params, "lr": lr * factor, "base_lr": lr * factor, "weight_decay": 0.0,
                    "momentum": hyper["muon_momentum"], "muon": True, **extra}

        def horizon_scale(horizon):  # FreezeOut's scaled variant: the same sum of lr over a shorter schedule
            return 1 / horizon if self.freeze_out_scaled else 1.0

        def filters(modules):
            return [p for m in modules for p in m.parameters() if p.ndim == 4 and p.requires_grad]

        def norm_biases(modules):
            return [n.bias for m in modules for n in m.modules() if isinstance(n, FrozenScaleBatchNorm)]

        early = [getattr(self, name) for name in self.freeze_out]  # blocks with their own horizon
        rest = [m for m in (self.block1, self.block2, self.block3) if m not in early]
        return [  # the filters first: the engine logs param_groups[0]'s lr
            muon(filters(rest)),
            sgd([self.whiten.bias], bias_lr, lr_horizon=min(1.0, hyper["whiten_bias_epochs"] / epochs)),
            sgd(norm_biases(rest), bias_lr),
            sgd([self.head.weight], head_lr),
            *[group for name, horizon in self.freeze_out.items()
              for group in (muon(filters([getattr(self, name)]), horizon_scale(horizon), lr_horizon=horizon),
                            sgd(norm_biases([getattr(self, name)]), bias_lr * horizon_scale(horizon),
                                lr_horizon=horizon))],
        ]


@register_model(recipe=Recipe(optimizer="muon", lr=FILTER_LR, batch_size=2000, weight_decay=WEIGHT_DECAY_PER_IMAGE,
                              momentum=SGD_MOMENTUM, nesterov=True, schedule="linear", warmup_epochs=0, epochs=8,
                              label_smoothing=0.2))
def airbench(num_classes: int = 10, **kwargs) -> AirbenchNet:
    """Keller Jordan's airbench94 net (patch whitening, dirac init, frozen-scale BN; Muon + SGD), 2 M params."""
    return AirbenchNet(num_classes=num_classes, **kwargs)
