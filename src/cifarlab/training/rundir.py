"""The run directory, the unit of work: `train` writes it; evaluate, predict, analyze, explain and report
read it.

    config.json            the resolved TrainConfig, the classes and the command that made the run
    metrics.jsonl          one line of metrics per epoch
    checkpoints/epoch_NNN/ model.safetensors + state.pt (optimizer, scheduler, RNG, history), per epoch
    model.safetensors      the final weights, with the config in their metadata
    summary.json           the final numbers, versions and the command
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from .._io import write_json_atomic
from ..config import TrainConfig
from ..errors import CifarlabError

CONFIG, METRICS, SUMMARY = "config.json", "metrics.jsonl", "summary.json"
WEIGHTS, CHECKPOINTS = "model.safetensors", "checkpoints"


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous, unshared tensors; channels_last weights are not contiguous.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in unwrap(model).state_dict().items()}


def save_weights(path: Path, model: nn.Module, metadata: dict[str, Any]) -> None:
    from .._io import atomic_path

    with atomic_path(path) as tmp:
        save_file(state_dict_for_saving(model), str(tmp), metadata=_json_metadata(metadata))


def _json_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(v) for k, v in metadata.items()}


def save_checkpoint(run_dir: Path, epoch: int, model: nn.Module, state: dict[str, Any], metadata: dict) -> Path:
    """Write checkpoints/epoch_NNN atomically (built under a temporary name, then renamed) and keep only it."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"epoch_{epoch:03d}"
    tmp = root / f".epoch_{epoch:03d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(state_dict_for_saving(model), str(tmp / WEIGHTS), metadata=_json_metadata(metadata))
    torch.save(state, tmp / "state.pt")
    _fsync_dir_files(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in root.glob("epoch_*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    done = sorted(p for p in (Path(run_dir) / CHECKPOINTS).glob("epoch_*") if (p / "state.pt").exists())
    return done[-1] if done else None


def load_checkpoint_state(ckpt: Path) -> dict[str, Any]:
    return torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)


def load_weights_into(model: nn.Module, path: Path) -> None:
    state = load_file(str(path))
    missing, unexpected = unwrap(model).load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CifarlabError(f"weights in {path} do not fit the model "
                            f"(missing: {missing[:3]}, unexpected: {unexpected[:3]})")


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's config.json, or a one-line error when the directory is not a cifarlab run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CifarlabError(f"run directory not found: {run_dir}")
    path = run_dir / CONFIG
    if not path.exists():
        raise CifarlabError(f"not a cifarlab run directory (no {CONFIG}): {run_dir}")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: bad JSON or not UTF-8
        raise CifarlabError(f"cannot read {path}: {e}") from None
    if not (isinstance(info, dict) and isinstance(info.get("config"), dict) and isinstance(info.get("classes"), list)):
        raise CifarlabError(f"{path} is not a cifarlab run config (it needs a \"config\" mapping and \"classes\")")
    return info


def find_weights(run_dir: Path) -> Path:
    """The final weights, else the latest epoch checkpoint's (an interrupted run can still be evaluated)."""
    final = Path(run_dir) / WEIGHTS
    if final.exists():
        return final
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise CifarlabError(f"no trained weights in {run_dir} (no {WEIGHTS} and no checkpoint)")
    return ckpt / WEIGHTS


def load_run_model(run_dir: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a run's model with its trained weights, in eval mode, and return it with the run's config."""
    from ..models import create_model

    run_dir = Path(run_dir)
    info = read_run_config(run_dir)
    cfg = TrainConfig.from_dict(info["config"], source=str(run_dir / CONFIG))
    model = create_model(cfg.model, num_classes=len(info["classes"]), **cfg.model_kwargs)
    load_weights_into(model, find_weights(run_dir))
    from ..transfer.setup import apply_preprocessing

    apply_preprocessing(model, cfg)  # pretrained mean/std and --input-size, as in training
    return model.to(device).eval(), info


def write_run_config(run_dir: Path, cfg: TrainConfig, classes: list[str], data_source: str, command: str) -> None:
    write_json_atomic(Path(run_dir) / CONFIG, {
        "config": cfg.to_dict(), "classes": classes, "data_source": data_source,
        "command": command, "versions": versions(),
    })


def versions() -> dict[str, str]:
    import numpy
    import torchvision

    from .. import __version__

    return {
        "cifarlab": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
        "torchvision": torchvision.__version__, "numpy": numpy.__version__, "platform": platform.platform(),
        "cpu_threads": str(torch.get_num_threads()),
    }


def prepare_run_dir(out: Path, overwrite: bool = False) -> None:
    """Create `out` for a new run; refuse to mix a new run into an existing one."""
    from .._runlock import LOCK_NAME

    entries = [p for p in out.iterdir() if p.name != LOCK_NAME] if out.is_dir() else []  # our own lock stays
    if entries:
        if not overwrite:
            raise CifarlabError(f"run directory already exists and is not empty: {out} "
                                "(use --resume to continue it, --overwrite to replace it, or another --out)")
        if not (out / CONFIG).exists():
            raise CifarlabError(f"refusing to overwrite {out}: it is not a cifarlab run directory")
        for p in entries:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _fsync_dir_files(folder: Path) -> None:
    for f in folder.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
