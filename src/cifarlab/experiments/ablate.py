"""`cifarlab ablate`: vary one training setting over a few values (per seed), everything else fixed, and
report validation and test accuracy as mean ± std per value.

    DIR/ablation.csv, DIR/ablation.md, DIR/ablation.json    one row per value
    DIR/ablation.png                                         bars: accuracy per value, std as error bars
    DIR/learning_curves.png                                  validation accuracy per epoch, first seed
    DIR/runs/FIELD-VALUE-seedS/                              each run's own directory
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any

from .._io import write_json_atomic, write_text_atomic
from ..config import NONE_IS_A_CHOICE, TrainConfig
from ..errors import CifarlabError
from ..training.resolve import resolve
from .grid import RunOutcome, format_mean_std, markdown_table, mean_std, run_many, write_csv

NOT_VARIED = {"out", "model_kwargs"}
STATS = ("val_accuracy", "test_accuracy", "train_seconds")


def parse_vary(text: str) -> tuple[str, list[Any]]:
    """`"augment=none,keras"` -> ("augment", ["none", "keras"]); values are parsed to the field's type
    (`none` or `default` is None for optional fields: the model's default; but `none` stays a value for
    augment and tta, where it means no augmentation)."""
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name or not values.strip():
        raise CifarlabError(f"--vary takes FIELD=V1,V2,..., e.g. augment=none,standard; got {text!r}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - NOT_VARIED
    if name not in fields:
        raise CifarlabError(f"--vary: {name!r} is not a training setting; choose one of: {', '.join(sorted(fields))}")
    raw = [v.strip() for v in values.split(",") if v.strip()]
    parsed = [_parse(name, v) for v in raw]
    if len(set(map(repr, parsed))) < len(parsed):
        raise CifarlabError(f"--vary {name}: a value is repeated in {values!r}")
    return name, parsed


def _parse(name: str, text: str) -> Any:
    hint = typing.get_type_hints(TrainConfig)[name]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if name in NONE_IS_A_CHOICE and text.lower() == "none":
        return "none"
    if type(None) in options and text.lower() in ("none", "null", "default"):
        return None
    kind = next(t for t in options if t is not type(None))
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
                raise ValueError(text)
            return text.lower() in ("true", "yes", "1", "on")
        return kind(text)
    except ValueError:
        raise CifarlabError(f"--vary {name}: {text!r} is not a valid {kind.__name__}") from None


def ablate(model: str, vary: str | tuple[str, list[Any]], out: str | Path, *, seeds: list[int] | None = None,
           budget_minutes: float | None = None, base: TrainConfig | None = None,
           verbose: bool = True, parallel: int = 1, pin_cores: bool = False) -> list[dict[str, Any]]:
    """Train `model` once per (value, seed) and write the ablation table and plots; returns the rows.
    `parallel=K`: K runs side by side, the cores divided (as in `compare`)."""
    log = print if verbose else (lambda *a, **k: None)
    if parallel < 1:
        raise CifarlabError(f"--parallel must be >= 1, got {parallel}")
    name, values = parse_vary(vary) if isinstance(vary, str) else vary
    seeds = seeds or [0]
    base = dataclasses.replace(base or TrainConfig(), model=model)
    if budget_minutes:
        base = dataclasses.replace(base, budget_minutes=budget_minutes)
    configs = {}
    for value in values:
        cfg = dataclasses.replace(base, **{name: value})
        try:
            resolve(cfg)  # a bad value fails here, before hours of training
        except CifarlabError as e:
            raise CifarlabError(f"--vary {name}={value}: {e}") from None
        configs[_label(value)] = cfg
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(label, dataclasses.replace(cfg, seed=s), out / "runs" / f"{_slug(name)}-{_slug(label)}-seed{s}")
            for label, cfg in configs.items() for s in seeds]
    rows, outcomes = [], {}
    for outcome in run_many(jobs, log, parallel=parallel, pin=pin_cores, verbose=verbose):  # in job order
        outcomes.setdefault(outcome.key, []).append(outcome)
        if len(outcomes[outcome.key]) == len(seeds):
            rows.append(_row(name, outcome.key, outcomes[outcome.key]))
            _write_outputs(out, name, model, rows, outcomes, seeds, base)
    log(f"ablation written to {out}/ablation.md")
    return rows


def _label(value: Any) -> str:
    return "default" if value is None else str(value)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", text)


def _row(name: str, label: str, runs: list[RunOutcome]) -> dict[str, Any]:
    ok = [r for r in runs if r.summary]
    row: dict[str, Any] = {"field": name, "value": label}
    for key in STATS:
        row[key] = [r.summary[key] for r in ok if r.summary.get(key) is not None]
    row["epochs"] = [r.summary.get("epochs_completed") for r in ok]
    row["seeds"] = [r.seed for r in ok]
    row["error"] = "; ".join(sorted({r.error for r in runs if r.error}))
    return row


def _write_outputs(out: Path, name: str, model: str, rows: list[dict[str, Any]],
                   outcomes: dict[str, list[RunOutcome]], seeds: list[int], base: TrainConfig) -> None:
    from .plots import plot_bars, plot_learning_curves

    write_json_atomic(out / "ablation.json", rows)
    headers = ["value", *[f"{k}_{s}" for k in STATS for s in ("mean", "std")], "epochs_mean", "seeds", "error"]
    write_csv(out / "ablation.csv", headers, [
        [r["value"], *[v for k in STATS for v in mean_std(r[k])], mean_std(r["epochs"])[0],
         " ".join(map(str, r["seeds"])), r["error"]] for r in rows])
    table = [[r["value"], format_mean_std(r["val_accuracy"]), format_mean_std(r["test_accuracy"]),
              format_mean_std(r["train_seconds"], 1), f"{mean_std(r['epochs'])[0]:.1f}" if r["epochs"] else "-",
              r["error"]] for r in rows]
    budget = f", budget {base.budget_minutes:g} min per run" if base.budget_minutes else ""
    spread = f"mean ± std over {len(seeds)} seeds" if len(seeds) > 1 else "one seed"
    write_text_atomic(out / "ablation.md", f"# Ablation of {name} on {model} ({spread}{budget})\n\n" + markdown_table(
        [name, "val acc", "test acc", "train s", "epochs", "note"], table))
    plot_bars([r["value"] for r in rows], {"validation": [r["val_accuracy"] for r in rows],
                                           "test": [r["test_accuracy"] for r in rows]},
              "accuracy", f"{model}: accuracy by {name} ({spread})", out / "ablation.png")
    plot_learning_curves(outcomes, out / "learning_curves.png")
