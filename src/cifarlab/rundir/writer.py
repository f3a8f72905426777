"""Writing a run directory (`train`), and reading back what a resume needs: config.json, metrics.jsonl,
the epoch checkpoints, the final weights and summary.json. The file names and the torch-free readers are in
layout.py; opening a finished run for evaluate, predict, analyze and the rest is run.py (a Run).

    config.json            the resolved TrainConfig, the classes, the command that made the run and each resume's
    command.txt            that command, then one line per resume
    metrics.jsonl          one line of metrics per epoch
    checkpoints/epoch_NNN/ model.safetensors, state.safetensors + state.json (optimizer, scaler, RNG, history,
                           EMA, early stopping: safestate.py), the latest epoch only
    model.safetensors      the final weights, with the config in their metadata
    summary.json           the final numbers, versions and the command

Nothing read from a run directory can run code: weights and tensors are safetensors, the rest JSON. Every
file is written whole under a temporary name and renamed, with the usual mode (0666 minus the umask); a
failed write (a full disk) removes its temporary files, keeps the previous checkpoint and ends in a
one-line CifarlabError.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import shutil
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from .._io import (
    append_jsonl,
    atomic_path,
    check_inside,
    check_regular_file,
    read_text_bounded,
    write_json_atomic,
    write_text_atomic,
)
from .._threads import describe as describe_threads
from .._threads import settings as thread_settings
from ..config import TrainConfig
from ..errors import CifarlabError
from . import safestate
from .device import describe_cpu
from .layout import (  # noqa: F401  (the layout's names, re-exported for the writers here)
    CHECKPOINTS,
    COMMAND,
    CONFIG,
    LEGACY_STATE,
    LOCK_NAME,
    METRICS,
    RUN_MARKER,
    STATE_JSON,
    STATE_TENSORS,
    SUMMARY,
    WEIGHTS,
    find_weights,
    foreign_entries,
    is_own_run_dir,
    latest_checkpoint,
    read_config,
)

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


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
    data = _weights_bytes(model, metadata)
    with writing(path, "the final weights"), atomic_path(path) as tmp:
        write_file(tmp, data)


def _weights_bytes(model: nn.Module, metadata: dict[str, Any]) -> bytes:
    # Serialized in memory and written by write_file: safetensors' own save_file makes 0600 files.
    return safetensors_bytes(state_dict_for_saving(model), metadata=_json_metadata(metadata))


def _json_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(v) for k, v in metadata.items()}


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to a new file and flush it to disk (mode 0666 minus the umask, as open() makes it)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def writing(path: Path, what: str, hint: str = "") -> Iterator[None]:
    """Turn a failed write into a one-line error that names the file: "disk full" when it is."""
    try:
        yield
    except OSError as e:
        if e.errno in _DISK_FULL:
            raise CifarlabError(f"disk full: cannot write {what} to {path}; free some space{hint}") from None
        raise CifarlabError(f"cannot write {what} to {path}: {e.strerror or e}{hint}") from None


def save_checkpoint(run_dir: Path, epoch: int, model: nn.Module, state: dict[str, Any], metadata: dict) -> Path:
    """Write checkpoints/epoch_NNN (built under a temporary name, then renamed) and keep only it.

    A failed write (a full disk) removes the temporary folder and leaves the previous checkpoint as it was."""
    root = Path(run_dir) / CHECKPOINTS
    check_inside(root, run_dir)  # a checkpoints/ link out of the run: nothing is written through it
    final = root / f"epoch_{epoch:03d}"
    tmp = root / f".epoch_{epoch:03d}.tmp"
    tree, tensors = safestate.encode(state)
    files = {WEIGHTS: _weights_bytes(model, metadata),
             STATE_TENSORS: safetensors_bytes(tensors),
             STATE_JSON: json.dumps({"format": 1, "state": tree}).encode()}
    previous = latest_checkpoint(run_dir)
    hint = (f" (the checkpoint of epoch {previous.name.removeprefix('epoch_').lstrip('0') or 0} is intact: "
            f"continue with cifarlab train --resume {run_dir})" if previous is not None else "")
    with writing(tmp, f"the checkpoint of epoch {epoch}", hint):
        try:
            root.mkdir(parents=True, exist_ok=True)
            remove_temporaries(run_dir)
            tmp.mkdir()
            for name, data in files.items():
                write_file(tmp / name, data)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a partial checkpoint would only keep the disk full
            raise
    _fsync_dir(root)
    for old in root.glob("epoch_*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def remove_temporaries(run_dir: Path) -> None:
    """Delete what a kill -9 in the middle of a write left: .NAME.XXXX.tmp files, .epoch_NNN.tmp folders."""
    for stale in [*Path(run_dir).glob(".*.tmp"), *(Path(run_dir) / CHECKPOINTS).glob(".epoch_*.tmp")]:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def resumable_checkpoint(run_dir: Path) -> Path:
    """The checkpoint that --resume continues from; a one-line error when there is none to trust."""
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise CifarlabError(f"nothing to resume in {run_dir}: no completed epoch checkpoint")
    if not (ckpt / STATE_JSON).is_file():
        raise CifarlabError(
            f"{ckpt / LEGACY_STATE} was written by an older cifarlab as a pickle, which could run code when "
            "loaded, so it is not read: this run cannot be resumed; retrain it (its weights still work with "
            f"evaluate, analyze and --init-from {run_dir})")
    return ckpt


def checkpoint_epoch(ckpt: Path) -> int:
    """The number of epochs a checkpoint holds (from its state.json alone, without the tensors)."""
    epoch = _read_state_json(ckpt).get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise CifarlabError(f"{ckpt / STATE_JSON} has no valid epoch number; the checkpoint is damaged")
    return epoch


def load_checkpoint_state(ckpt: Path) -> dict[str, Any]:
    """The training state saved with a checkpoint: JSON and safetensors, never unpickled."""
    tree = _read_state_json(ckpt)
    path = ckpt / STATE_TENSORS
    try:
        check_regular_file(path, root=_run_dir_of(ckpt))
        tensors = load_file(str(path))
        state = safestate.decode(tree, tensors)
    except (OSError, SafetensorError, safestate.StateFormatError) as e:
        raise CifarlabError(f"cannot read the checkpoint {ckpt}: {_first_line(e)}") from None
    if not isinstance(state, dict):
        raise CifarlabError(f"cannot read the checkpoint {ckpt}: its state is not a mapping")
    return state


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _run_dir_of(ckpt: Path) -> Path:
    return Path(ckpt).parent.parent  # RUN_DIR/checkpoints/epoch_NNN


def _read_state_json(ckpt: Path) -> dict[str, Any]:
    path = Path(ckpt) / STATE_JSON
    try:
        doc = json.loads(read_text_bounded(path, root=_run_dir_of(ckpt)))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CifarlabError(f"cannot read {path}: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != 1 or not isinstance(doc.get("state"), dict):
        raise CifarlabError(f"{path} is not a cifarlab checkpoint state (format 1)")
    return doc["state"]


def load_weights_into(model: nn.Module, path: Path) -> None:
    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise CifarlabError(f"cannot read the weights {path} (not a safetensors file?): {_first_line(e)}") from None
    check_finite(state, path)
    try:
        missing, unexpected = unwrap(model).load_state_dict(state, strict=False)
    except RuntimeError as e:  # same names, other shapes: weights of another model or another config
        lines = [ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln] or [_first_line(e)]
        raise CifarlabError(f"weights in {path} do not fit the model ({lines[0]})") from None
    if missing or unexpected:
        raise CifarlabError(f"weights in {path} do not fit the model "
                            f"(missing: {missing[:3]}, unexpected: {unexpected[:3]})")


def check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights with a NaN or an infinity in any parameter or buffer: every prediction made with them
    would be NaN (a run that diverged, or a damaged file)."""
    bad = [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" and {len(bad) - 1} more tensor(s)" if len(bad) > 1 else ""
        raise CifarlabError(f"the weights {path} hold NaN or infinite values (in {bad[0]}{more}): the run diverged "
                            "or the file is damaged; retrain it")


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's config.json, or a one-line error when the directory is not a cifarlab run (layout.read_config)."""
    return read_config(run_dir)


def recorded_data(run_dir: str | Path, info: dict[str, Any]) -> str | None:
    """A run's --data as a path to read from here (None: the official archive). Runs record it absolute;
    an older run's relative path is looked up from the directory it was trained in (config.json's "cwd"),
    else from the run directory's parent, then from the current directory; a one-line error when it is in
    none of them."""
    data = info["config"].get("data")
    if not isinstance(data, str) or not data or Path(data).expanduser().is_absolute():
        return data
    trained_in = info.get("cwd")
    bases = [Path(trained_in) if isinstance(trained_in, str) else Path(run_dir).absolute().parent, Path.cwd()]
    for base in dict.fromkeys(bases):
        if (base / data).exists():
            return str((base / data).resolve())
    raise CifarlabError(f"{Path(run_dir) / CONFIG} names its data by the relative path {data!r}, found neither "
                        f"in {bases[0]} nor in {bases[1]}; pass --data PATH")


def write_run_config(run_dir: Path, cfg: TrainConfig, classes: list[str], data_source: str, command: str,
                     resumed_from: int | None = None) -> dict[str, Any]:
    """Write config.json and command.txt, and return what config.json holds.

    A new run records its command, the directory it ran in ("cwd") and its --threads / --thread-wait
    ("threads", which --resume repeats). A resume (`resumed_from`: the epochs already done) keeps those of
    the run and adds its command to "resumes", with the time and the epochs, so the history stays."""
    info = {"config": cfg.to_dict(), "classes": classes, "data_source": data_source, "command": command,
            "cwd": os.getcwd(), "threads": thread_settings(), "versions": versions()}
    if resumed_from is not None:
        before = read_run_config(run_dir)
        resumes = before.get("resumes") if isinstance(before.get("resumes"), list) else []
        resumes.append({"command": command, "time": datetime.now(UTC).isoformat(timespec="seconds"),
                        "from_epoch": resumed_from, "epochs": cfg.epochs, "cifarlab": info["versions"]["cifarlab"]})
        info.update(command=before.get("command", command), versions=before.get("versions", info["versions"]),
                    resumes=resumes)
        for key in ("cwd", "threads"):  # where and how the run was made (--resume repeats the threads)
            info[key] = before.get(key)
    info = {k: v for k, v in info.items() if v not in (None, {})}
    commands = [info["command"]] + [r.get("command", "") for r in info.get("resumes", []) if isinstance(r, dict)]
    write_json(Path(run_dir) / CONFIG, info, "the run's config")
    write_text(Path(run_dir) / COMMAND, "".join(f"{c}\n" for c in commands), "the run's commands")
    return info


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_json(Path(run_dir) / SUMMARY, summary, "the run's summary")


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    path = Path(run_dir) / METRICS
    with writing(path, "the epoch's metrics"):
        append_jsonl(path, record)


def rewrite_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl as the checkpoint's history: drops lines of an epoch whose checkpoint never landed."""
    write_text(Path(run_dir) / METRICS, "".join(json.dumps(h) + "\n" for h in history),
               "the run's metrics")


def write_json(path: Path, obj: Any, what: str) -> None:
    with writing(path, what):
        write_json_atomic(path, obj)


def write_text(path: Path, text: str, what: str) -> None:
    with writing(path, what):
        write_text_atomic(path, text)


def versions() -> dict[str, str]:
    import numpy
    import torchvision

    from .. import __version__

    return {
        "cifarlab": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
        "torchvision": torchvision.__version__, "numpy": numpy.__version__, "platform": platform.platform(),
        "cpu_threads": str(torch.get_num_threads()), **describe_cpu(),
        **describe_threads(),  # the --threads setting and OpenMP wait policy, when set
    }


def check_new_run_dir(out: Path, overwrite: bool = False) -> list[Path]:
    """What a new run in `out` would delete (nothing for a new or empty folder); a one-line error when `out`
    holds anything but a run that --overwrite may replace.

    --overwrite deletes only a folder that cifarlab made as a run directory (layout.is_own_run_dir): a
    folder that merely holds a config.json, or a run beside files of its own, is left as it is."""
    entries = [p for p in out.iterdir() if p.name != LOCK_NAME] if out.is_dir() else []  # our own lock stays
    if entries and not overwrite:
        raise CifarlabError(f"run directory already exists and is not empty: {out} "
                            "(use --resume to continue it, --overwrite to replace it, or another --out)")
    if entries and not is_own_run_dir(out):
        foreign = foreign_entries(out)
        why = (f"it holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, which no cifarlab run "
               "writes" if foreign else "it is not a cifarlab run directory")
        raise CifarlabError(f"refusing to overwrite {out}: {why}; delete it yourself or choose another --out")
    return entries


def prepare_run_dir(out: Path, overwrite: bool = False) -> None:
    """Create `out` for a new run, marked as one (RUN_MARKER); refuse to mix a new run into an existing one
    (check_new_run_dir)."""
    for p in check_new_run_dir(out, overwrite):
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / RUN_MARKER, "a cifarlab run directory: train --overwrite may replace it\n",
               "the run directory's marker")


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename itself already happened
    finally:
        os.close(fd)
