"""What a checkpoint holds; how it is stored is cifarlab.rundir's: writer.py (the files, written so that a
kill -9 leaves the last whole checkpoint) and safestate.py (the state as safetensors + JSON, never pickle).

    metadata = weights_metadata(cfg, classes, mean, std, epoch)   # in every weights file, final ones too
    state = checkpoint_state(epoch, step, stepper, stopper, selection, history, train_seconds)
    writer.save_checkpoint(run_dir, epoch, model, state, metadata)
    epoch, step, history, train_seconds = restore_state(run_dir, model, stepper, stopper, selection)

The state is everything a resumed run needs to go on exactly as if never stopped: the optimizer, the fp16
loss scaler, the EMA (--ema), early stopping, --prune-easy's scores, the random generators (torch, numpy,
Python and CUDA), the history, the step and the seconds trained so far.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..config import TrainConfig
from ..errors import CifarlabError
from ..rundir import writer
from .loop import Stepper
from .regularize import EarlyStopping
from .selection import EasyPruning


def weights_metadata(cfg: TrainConfig, classes, mean, std, epoch: int) -> dict[str, Any]:
    return {"model": cfg.model, "classes": classes, "mean": mean, "std": std, "epoch": epoch,
            "model_kwargs": cfg.model_kwargs}


def checkpoint_state(epoch: int, step: int, s: Stepper, stopper: EarlyStopping, selection: EasyPruning | None,
                     history: list[dict[str, Any]], train_seconds: float) -> dict[str, Any]:
    """The training state after `epoch` epochs (the weights are saved beside it)."""
    return {
        "epoch": epoch, "step": step, "optimizer": s.optimizer.state_dict(), "scaler": s.scaler.state_dict(),
        "rng": _rng_state(), "history": history, "train_seconds": train_seconds,
        "ema": s.ema.state_dict() if s.ema is not None else None, "early_stopping": stopper.state_dict(),
        "selection": selection.state_dict() if selection is not None else None,
    }


def restore_state(run_dir: Path, model: nn.Module, s: Stepper, stopper: EarlyStopping,
                  selection: EasyPruning | None = None) -> tuple[int, int, list[dict], float]:
    """The last whole checkpoint of `run_dir` loaded into the model, the stepper, early stopping, --prune-easy
    and the random generators; returns (epoch, step, history, training seconds)."""
    ckpt = writer.resumable_checkpoint(run_dir)
    writer.load_weights_into(model, ckpt / writer.WEIGHTS)
    state = writer.load_checkpoint_state(ckpt)
    try:
        s.optimizer.load_state_dict(state["optimizer"])
        s.scaler.load_state_dict(state["scaler"])
        if s.ema is not None and state.get("ema") is not None:
            s.ema.load_state_dict(state["ema"])
        stopper.load_state_dict(state.get("early_stopping"))
        if selection is not None:
            selection.load_state_dict(state["selection"])
        _set_rng_state(state["rng"])
        return int(state["epoch"]), int(state["step"]), list(state["history"]), float(state["train_seconds"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a damaged or hand-edited state
        raise CifarlabError(f"the checkpoint {ckpt} does not fit this run ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from None


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
