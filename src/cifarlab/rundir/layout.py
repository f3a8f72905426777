"""The layout of a run directory, and readers of its JSON files. Imports no torch, so the report, the web
page and quick scripts can read a run without loading a model.

    config.json            the resolved TrainConfig, the classes, the command that made the run and each resume's
    command.txt            that command, then one line per resume
    metrics.jsonl          one line of metrics per epoch (the history)
    summary.json           the final numbers, versions and the command (absent until the run finishes)
    model.safetensors      the final weights, with the config in their metadata
    checkpoints/epoch_NNN/ model.safetensors, state.safetensors + state.json: the latest epoch only
    analysis/              `cifarlab analyze`: analysis.json, predictions.npz and its figures
    explain/               `cifarlab explain`: explain.json, explain.md and the heat maps
    features/, embed/      `cifarlab features` and `cifarlab embed`: their figures
    report.html            `cifarlab report`
    model.onnx             `cifarlab export` (its default --out)
    tensorboard/           `train --tensorboard`
    .cifarlab-run          the marker of a run directory: `train --overwrite` replaces only folders it marks
    .cifarlab.lock         held by the one process that writes into the run (lock.py)

Every reader here fails with a one-line CifarlabError that names the file. They read regular files inside the
run directory only (a symbolic link out of it is refused, _io.py), JSON files of a bounded size.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._io import check_regular_file, read_text_bounded
from .._io import read_jsonl as _read_jsonl
from ..errors import CifarlabError

CONFIG, METRICS, SUMMARY, COMMAND = "config.json", "metrics.jsonl", "summary.json", "command.txt"
WEIGHTS, CHECKPOINTS = "model.safetensors", "checkpoints"
STATE_TENSORS, STATE_JSON = "state.safetensors", "state.json"  # a checkpoint's training state
LEGACY_STATE = "state.pt"  # pickled by cifarlab before the safetensors + JSON state: never loaded
ANALYSIS_DIR, ANALYSIS_JSON, PREDICTIONS = "analysis", "analysis.json", "predictions.npz"
EXPLAIN_DIR, EXPLAIN_JSON, EXPLAIN_MD = "explain", "explain.json", "explain.md"
FEATURES_DIR, EMBED_DIR = "features", "embed"
REPORT_HTML = "report.html"
ONNX, TENSORBOARD_DIR = "model.onnx", "tensorboard"
RUN_MARKER = ".cifarlab-run"
LOCK_NAME = ".cifarlab.lock"
# Every name a run directory's own commands write there (and ".NAME.XXXX.tmp" leftovers of a killed write):
# `train --overwrite` deletes a folder only when it holds nothing else.
RUN_ENTRIES = frozenset({CONFIG, METRICS, SUMMARY, COMMAND, WEIGHTS, CHECKPOINTS, ANALYSIS_DIR, EXPLAIN_DIR,
                         FEATURES_DIR, EMBED_DIR, REPORT_HTML, ONNX, TENSORBOARD_DIR, RUN_MARKER, LOCK_NAME})


def read_json(path: str | Path, root: str | Path | None = None) -> Any:
    """A JSON file (a regular file of bounded size, inside `root` when given), or a one-line error naming it."""
    path = Path(path)
    try:
        return json.loads(read_text_bounded(path, root=root))
    except FileNotFoundError:
        raise CifarlabError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CifarlabError(f"cannot read {path}: {e}") from None


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's config.json (its "config" mapping, "classes", "command" ...), checked to be a cifarlab run's."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CifarlabError(f"run directory not found: {run_dir}")
    path = run_dir / CONFIG
    if not path.exists():
        raise CifarlabError(f"not a cifarlab run directory (no {CONFIG}): {run_dir}")
    info = read_json(path, root=run_dir)
    classes = info.get("classes") if isinstance(info, dict) else None
    if (not isinstance(info.get("config") if isinstance(info, dict) else None, dict) or not isinstance(classes, list)
            or not classes or not all(isinstance(c, str) for c in classes)):
        raise CifarlabError(f"{path} is not a cifarlab run config (it needs a \"config\" mapping and a "
                            "\"classes\" list of names)")
    return info


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """summary.json, or None while the run has not finished."""
    path = Path(run_dir) / SUMMARY
    if not os.path.lexists(path):
        return None
    summary = read_json(path, root=run_dir)
    if not isinstance(summary, dict):
        raise CifarlabError(f"{path} is not a run summary (a JSON object)")
    return summary


def read_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """metrics.jsonl, one record per finished epoch ([] before the first)."""
    path = Path(run_dir) / METRICS
    if not os.path.lexists(path):
        return []
    return read_jsonl(path, root=run_dir)


def read_jsonl(path: str | Path, root: str | Path | None = None) -> list[dict[str, Any]]:
    try:
        return _read_jsonl(path, root=root)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CifarlabError(f"cannot read {path}: {e}") from None


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint of the last completed epoch (a temporary .epoch_NNN.tmp never counts)."""
    done = sorted(p for p in (Path(run_dir) / CHECKPOINTS).glob("epoch_*")
                  if (p / WEIGHTS).is_file() and ((p / STATE_JSON).is_file() or (p / LEGACY_STATE).is_file()))
    return done[-1] if done else None


def find_weights(run_dir: str | Path) -> Path:
    """The final weights, else the latest epoch checkpoint's (an interrupted run can still be evaluated)."""
    final = Path(run_dir) / WEIGHTS
    if not os.path.lexists(final):
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise CifarlabError(f"no trained weights in {run_dir} (no {WEIGHTS} and no checkpoint)")
        final = ckpt / WEIGHTS
    try:
        check_regular_file(final, root=run_dir)
    except OSError as e:
        raise CifarlabError(f"cannot read the weights {final}: {e.strerror or e}") from None
    return final


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def foreign_entries(folder: str | Path) -> list[str]:
    """The names in `folder` that no cifarlab command writes into a run directory."""
    return sorted(p.name for p in Path(folder).iterdir()
                  if p.name not in RUN_ENTRIES and not (p.name.startswith(".") and p.name.endswith(".tmp")))


def is_own_run_dir(folder: str | Path) -> bool:
    """Whether cifarlab made `folder` as a run directory, so that --overwrite may delete what it holds: its
    marker (runs made since the marker exists) or, for older runs, a config.json that parses as a run's
    beside its command.txt; and in both cases nothing but what a run writes."""
    folder = Path(folder)
    if foreign_entries(folder):
        return False
    if (folder / RUN_MARKER).is_file() and not (folder / RUN_MARKER).is_symlink():
        return True
    try:
        read_config(folder)
    except CifarlabError:
        return False
    return (folder / COMMAND).is_file()
