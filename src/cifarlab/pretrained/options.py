"""Validation of the transfer-learning settings of TrainConfig, so every bad combination fails before
anything is built or written, with the flag's name in the message."""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import CifarlabError

PRETRAINED = ("imagenet",)
FREEZE = ("none", "backbone")
STAGE_PER_EPOCH = "stage-per-epoch"
_SCHEDULE_ITEM = re.compile(r"^\s*(\d+)\s*:\s*([A-Za-z_][\w.]*)\s*$")


def validate_transfer(cfg) -> None:
    """Check the transfer fields of a TrainConfig (called by TrainConfig.validate). The files named by
    --weights / --init-from are checked by check_weight_files when a new run loads them, not here: a
    finished run stays loadable (evaluate, analyze, --resume) after they are gone."""
    if cfg.pretrained is not None:
        if cfg.pretrained not in PRETRAINED:
            raise CifarlabError(f"unknown --pretrained {cfg.pretrained!r}; choose one of: {', '.join(PRETRAINED)}")
        if not cfg.model.startswith(("tv:", "timm:")):
            raise CifarlabError(f"--pretrained needs a tv:NAME or timm:NAME model; {cfg.model} has no published "
                                "weights (use --init-from RUN_DIR to start from a cifarlab run)")
    if cfg.weights is not None and cfg.pretrained is None:
        raise CifarlabError("--weights is the local file of the --pretrained weights (e.g. --pretrained imagenet "
                            "--weights vgg16-397923af.pth); to start from any other state dict use --init-from")
    if cfg.init_from is not None and cfg.pretrained is not None:
        raise CifarlabError("--init-from and --pretrained both set the starting weights: give one of them")
    if cfg.freeze not in FREEZE:
        raise CifarlabError(f"unknown --freeze {cfg.freeze!r}; choose one of: {', '.join(FREEZE)}")
    if cfg.unfreeze_schedule is not None:
        if cfg.freeze != "backbone":
            raise CifarlabError("--unfreeze-schedule unfreezes a frozen backbone step by step: add --freeze backbone")
        parse_unfreeze_schedule(cfg.unfreeze_schedule)
    if not (isinstance(cfg.backbone_lr_scale, (int, float)) and cfg.backbone_lr_scale > 0):
        raise CifarlabError(f"--backbone-lr-scale must be > 0 (for 0 use --freeze backbone), got "
                            f"{cfg.backbone_lr_scale}")
    if cfg.input_size is not None and not (isinstance(cfg.input_size, int) and 8 <= cfg.input_size <= 1024):
        raise CifarlabError(f"--input-size must be an image side in pixels between 8 and 1024, got {cfg.input_size}")
    if cfg.classes is not None:
        if isinstance(cfg.classes, str):  # a YAML file may write them as one comma-separated string
            cfg.classes = [c.strip() for c in cfg.classes.split(",") if c.strip()]
        if len(cfg.classes) < 2:
            raise CifarlabError(f"--classes needs at least two class names, got {cfg.classes}")
        dupes = sorted({c for c in cfg.classes if cfg.classes.count(c) > 1})
        if dupes:
            raise CifarlabError(f"--classes names {', '.join(dupes)} more than once")
    if cfg.label_fraction is not None:
        if not 0 < cfg.label_fraction <= 1:
            raise CifarlabError(f"--label-fraction must be in (0, 1], got {cfg.label_fraction}")
        if cfg.train_size is not None:
            raise CifarlabError("--label-fraction and --train-size both subset the training labels: give one")


def check_weight_files(cfg) -> None:
    if cfg.weights is not None and not Path(cfg.weights).is_file():
        raise CifarlabError(f"--weights file not found: {cfg.weights}")
    if cfg.init_from is not None and not Path(cfg.init_from).exists():
        raise CifarlabError(f"--init-from: no such run directory or weights file: {cfg.init_from}")


def parse_unfreeze_schedule(text: str) -> list[tuple[int, str]] | str:
    """"stage-per-epoch", or "E:MODULE,E:MODULE" as a list of (epoch, module name) sorted by epoch."""
    if text.strip() == STAGE_PER_EPOCH:
        return STAGE_PER_EPOCH
    items = []
    for part in text.split(","):
        m = _SCHEDULE_ITEM.match(part)
        if not m:
            raise CifarlabError(f"--unfreeze-schedule: cannot read {part.strip()!r}; write {STAGE_PER_EPOCH} or "
                                "EPOCH:MODULE pairs, e.g. 3:layer4,6:layer3 (MODULE unfrozen after EPOCH epochs)")
        items.append((int(m.group(1)), m.group(2)))
    return sorted(items, key=lambda item: item[0])
