"""Freezing, gradual unfreezing and discriminative learning rates.

The model is split into the head (its classifier module, `default_cfg["classifier"]`) and the backbone
(everything else). The backbone is cut into stages, `default_cfg["stages"]`: each parameter belongs to
the stage module it lives in; parameters outside every stage (the stem before the first stage, a final
norm after the last) go with the nearest stage before them, or the first stage for the stem.

- `--freeze backbone`: only the head trains. A frozen parameter has requires_grad=False (no gradient,
  so the optimizer skips it: no update, no weight decay) and frozen batch-norm layers run in eval mode,
  so their running statistics stay as loaded too.
- `--unfreeze-schedule stage-per-epoch`: after epoch 1 the last stage trains too, after epoch 2 the last
  two, ... (the stem with the first stage, last), as in ULMFiT's gradual unfreezing (Howard & Ruder 2018).
  `--unfreeze-schedule 3:layer4,6:layer3`: module layer4 trains from epoch 4 on (after 3 epochs), layer3
  from epoch 7 on; modules never named stay frozen. Names are dotted module names of the model (the
  `model.` prefix of tv:/timm: adapters may be left out).
- `--backbone-lr-scale S`: the backbone's learning rate is S × the head's (discriminative fine-tuning).
- `--freeze-bn`: every batch-norm layer runs in eval mode while training (statistics fixed), frozen or not.

Every parameter is in the optimizer from the start, so a stage unfrozen later is updated with its own
learning rate from then on; the state is recomputed from the epoch number, so --resume gets it right.
"""
from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from ..errors import CifarlabError
from .options import STAGE_PER_EPOCH, parse_unfreeze_schedule
from .weights import head_names

_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm,)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def split_head_backbone(model: nn.Module) -> tuple[list[str], list[str]]:
    """(head parameter names, backbone parameter names), in registration order."""
    heads = head_names(model)
    if not heads:
        raise CifarlabError(f"{type(model).__name__} names no classifier (default_cfg['classifier']), so its "
                            "backbone can't be told from its head")
    head, backbone = [], []
    for name, _ in model.named_parameters():
        (head if any(_under(name, h) for h in heads) else backbone).append(name)
    return head, backbone


def stage_of_parameters(model: nn.Module, backbone: list[str], stages: list[str]) -> dict[str, int]:
    """Stage index of each backbone parameter (see the module doc for parameters outside every stage)."""
    index, current = {}, 0
    for name in backbone:
        inside = [i for i, s in enumerate(stages) if _under(name, s)]
        if inside:
            current = inside[-1]
        index[name] = current
    return index


def resolve_module(model: nn.Module, name: str) -> str:
    """`name` or `model.name`, whichever the model has; an error listing the stages otherwise."""
    for candidate in (name, f"model.{name}"):
        try:
            model.get_submodule(candidate)
            return candidate
        except AttributeError:
            continue
    stages = (getattr(model, "default_cfg", {}) or {}).get("stages") or []
    raise CifarlabError(f"--unfreeze-schedule: the model has no module {name!r}"
                        + (f"; its stages are {', '.join(stages)}" if stages else ""))


class Freezer:
    """Which parameters train in which epoch; `start_epoch(epoch)` applies it after `model.train()`."""

    def __init__(self, model: nn.Module, freeze: str = "none", unfreeze_schedule: str | None = None,
                 freeze_bn: bool = False):
        self.model, self.freeze_bn = model, freeze_bn
        self.active = freeze != "none" or freeze_bn
        self.unlocks: list[tuple[int, list[str], str]] = []  # (after epoch, parameter names, label)
        self.head, self.backbone = split_head_backbone(model) if freeze != "none" else ([], [])
        self.frozen_all = freeze == "backbone"
        if unfreeze_schedule:
            self._plan(parse_unfreeze_schedule(unfreeze_schedule))

    def _plan(self, schedule) -> None:
        if schedule == STAGE_PER_EPOCH:
            stages = list((getattr(self.model, "default_cfg", {}) or {}).get("stages") or [])
            if not stages:
                raise CifarlabError(f"--unfreeze-schedule {STAGE_PER_EPOCH}: {type(self.model).__name__} lists no "
                                    "stages (default_cfg['stages']); name modules instead, e.g. 2:layer3")
            where = stage_of_parameters(self.model, self.backbone, stages)
            for k, i in enumerate(reversed(range(len(stages)))):
                names = [n for n in self.backbone if where[n] == i]
                self.unlocks.append((k + 1, names, stages[i]))
            return
        for epoch, module in schedule:
            prefix = resolve_module(self.model, module)
            names = [n for n in self.backbone if _under(n, prefix)]
            if not names:
                raise CifarlabError(f"--unfreeze-schedule: {module} has no backbone parameters to unfreeze")
            self.unlocks.append((epoch, names, prefix))

    def trainable(self, epoch: int) -> set[str]:
        """Names of the parameters that train in the epoch after `epoch` completed epochs."""
        if not self.frozen_all:
            return {n for n, _ in self.model.named_parameters()}
        names = set(self.head)
        for after, unlocked, _ in self.unlocks:
            if epoch >= after:
                names.update(unlocked)
        return names

    def unfrozen_at(self, epoch: int) -> list[str]:
        return [label for after, _, label in self.unlocks if after == epoch]

    def start_epoch(self, epoch: int, log: Callable[[str], None] = lambda s: None) -> None:
        """Set requires_grad and the batch-norm modes for epoch `epoch` (0-based); call after model.train()."""
        if not self.active:
            return
        trainable = self.trainable(epoch)
        for name, p in self.model.named_parameters():
            p.requires_grad_(name in trainable)
        for module in self.model.modules():
            if isinstance(module, _BATCH_NORMS):
                params = list(module.parameters(recurse=False))
                frozen = self.freeze_bn or (self.frozen_all and not any(p.requires_grad for p in params))
                if frozen:
                    module.eval()
        labels = self.unfrozen_at(epoch)
        if labels and epoch > 0:
            log(f"unfreezing {', '.join(labels)} from epoch {epoch + 1}")

    def describe(self) -> str:
        if not self.frozen_all:
            return "all layers train" + (" (batch-norm statistics frozen)" if self.freeze_bn else "")
        plan = "; ".join(f"{label} after epoch {after}" for after, _, label in self.unlocks)
        return f"backbone frozen ({len(self.backbone)} tensors), head trains" + (f"; unfreezing {plan}" if plan else "")


def transfer_param_groups(model: nn.Module, lr: float, weight_decay: float, backbone_lr_scale: float) -> list[dict]:
    """Optimizer groups: head and backbone, each with and without weight decay (no decay on biases and norm
    scales, as build_optimizer does); the backbone's base_lr is lr × backbone_lr_scale. Frozen parameters
    are included: they have no gradient, so the optimizer skips them until they are unfrozen."""
    head, _ = split_head_backbone(model)
    head = set(head)
    groups = []
    for is_head, scale in ((False, backbone_lr_scale), (True, 1.0)):
        params = [(n, p) for n, p in model.named_parameters() if (n in head) == is_head]
        for decay in (True, False):
            chosen = [p for _, p in params if (p.ndim > 1) == decay]
            if chosen:
                groups.append({"params": chosen, "weight_decay": weight_decay if decay else 0.0,
                               "base_lr": lr * scale, "lr": lr * scale})
    return groups
