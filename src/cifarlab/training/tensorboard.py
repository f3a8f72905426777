"""TensorBoard logging for `train --tensorboard`: the same numbers as metrics.jsonl, as scalars in
RUN_DIR/tensorboard (open with `tensorboard --logdir RUN_DIR/tensorboard`).

The engine calls three methods; with logging off they do nothing, so the loop has no `if`s for it.
Tags are grouped so train and val share a section: loss/train, loss/val, accuracy/train, accuracy/val,
lr, images_per_second; the final test numbers are test/accuracy, test/loss and test/top3_accuracy.
The step is the epoch (1, 2, ...), as in metrics.jsonl.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import CifarlabError
from ..rundir.layout import TENSORBOARD_DIR

LOG_DIR = TENSORBOARD_DIR

# metrics.jsonl field -> TensorBoard tag
EPOCH_TAGS = {
    "train_loss": "loss/train", "val_loss": "loss/val",
    "train_accuracy": "accuracy/train", "val_accuracy": "accuracy/val",
    "val_top3_accuracy": "accuracy/val_top3",
    "lr": "lr", "images_per_second": "images_per_second",
}


def require_tensorboard() -> None:
    """Fail early, before a run directory is written, when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it at import time)
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise CifarlabError("--tensorboard needs the tensorboard package: "
                            "pip install -e '.[tensorboard]'") from None


class TensorBoardLogger:
    """Writes per-epoch scalars when `enabled` (only the process that writes the run directory should be)."""

    def __init__(self, run_dir: str | Path, *, enabled: bool, first_epoch: int = 0):
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: on --resume, TensorBoard hides events of epochs after the checkpoint we continue from.
            self.writer = SummaryWriter(log_dir=str(Path(run_dir) / LOG_DIR),
                                        purge_step=first_epoch + 1 if first_epoch else None)

    def log_epoch(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = _step(record["epoch"])
        for field, tag in EPOCH_TAGS.items():
            if record.get(field) is not None:
                self.writer.add_scalar(tag, record[field], step)
        self.writer.flush()  # visible in TensorBoard while training runs

    def log_test(self, metrics: dict[str, float], epoch: float) -> None:
        if self.writer is None:
            return
        for name, value in metrics.items():
            self.writer.add_scalar(f"test/{name}", value, _step(epoch))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _step(epoch: float) -> int:
    # A run cut short by --budget-minutes ends at a fractional epoch; TensorBoard wants integer steps.
    return max(1, math.ceil(epoch))
