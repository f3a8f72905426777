"""The transfer-learning settings' choices (declared on TrainConfig's fields) and the checks of their
combinations, so every bad one fails before anything is built or written, with the flag's name in the message.
No torch: the command line reads it while it builds its parser."""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import CifarlabError

PRETRAINED = ("imagenet",)
FREEZE = ("none", "backbone")
STAGE_PER_EPOCH = "stage-per-epoch"
_SCHEDULE_ITEM = re.compile(r"^\s*(\d+)\s*:\s*([A-Za-z_][\w.]*)\s*$")


def check_transfer(cfg) -> None:
    """The transfer-learning settings that only make sense together (each field's own type, range and
    choices are declared on it in config.py and checked there). Pure: reads cfg, changes nothing. The files
    named by --weights / --init-from are checked by check_weight_files when a new run loads them, not here:
    a finished run stays loadable (evaluate, analyze, --resume) after they are gone."""
    if cfg.pretrained is not None and not cfg.model.startswith(("tv:", "timm:")):
        raise CifarlabError(f"--pretrained needs a tv:NAME or timm:NAME model; {cfg.model} has no published "
                            "weights (use --init-from RUN_DIR to start from a cifarlab run)")
    if cfg.weights is not None and cfg.pretrained is None:
        raise CifarlabError("--weights is the local file of the --pretrained weights (e.g. --pretrained imagenet "
                            "--weights vgg16-397923af.pth); to start from any other state dict use --init-from")
    if cfg.init_from is not None and cfg.pretrained is not None:
        raise CifarlabError("--init-from and --pretrained both set the starting weights: give one of them")
    if cfg.unfreeze_schedule is not None:
        if cfg.freeze != "backbone":
            raise CifarlabError("--unfreeze-schedule unfreezes a frozen backbone step by step: add --freeze backbone")
        parse_unfreeze_schedule(cfg.unfreeze_schedule)


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
