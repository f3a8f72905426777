"""A training run that dies right after one epoch's checkpoint is written, for the resume tests."""
from __future__ import annotations

import pytest

import cifarlab
from cifarlab.rundir import writer


class Killed(Exception):
    pass


def train_until_killed(monkeypatch, epoch: int, **kw) -> None:
    """cifarlab.train(**kw), killed once the checkpoint of `epoch` is on disk (before metrics.jsonl gets
    that epoch's line)."""
    real_save = writer.save_checkpoint

    def save_then_die(run_dir, saved_epoch, *args, **kwargs):
        path = real_save(run_dir, saved_epoch, *args, **kwargs)
        if saved_epoch == epoch:
            raise Killed
        return path

    monkeypatch.setattr(writer, "save_checkpoint", save_then_die)
    try:
        with pytest.raises(Killed):
            cifarlab.train(**kw)
    finally:
        monkeypatch.setattr(writer, "save_checkpoint", real_save)
