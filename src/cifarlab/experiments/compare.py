"""`cifarlab compare`: train several models on the same data and split, and put them side by side —
accuracy against training time, parameters and FLOPs, with learning curves — in a table and plots.

    DIR/compare.csv, DIR/compare.md      one row per model (mean ± std over seeds)
    DIR/accuracy_vs_time.png, DIR/accuracy_vs_params.png, DIR/learning_curves.png
    DIR/runs/MODEL-seedS/                each model's own run directory
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .._io import write_json_atomic, write_text_atomic
from ..config import RECIPE_FIELDS, TrainConfig
from ..errors import CifarlabError
from ..models import Recipe, get_model_entry
from ..rundir.layout import read_json
from .grid import RunOutcome, format_mean_std, markdown_table, mean_std, run_many, write_csv

COLUMNS = ["model", "params", "mflops", "train_seconds", "train_images_per_second", "inference_images_per_second",
           "val_accuracy", "test_accuracy", "epochs", "seeds", "error"]


def compare(models: list[str], out: str | Path, *, seeds: list[int] | None = None, same_recipe: bool = False,
            budget_minutes: float | None = None, base: TrainConfig | None = None,
            verbose: bool = True, parallel: int = 1, pin_cores: bool = False) -> list[dict[str, Any]]:
    """Train each model (per seed) and write the comparison into `out`; returns the table rows.

    Each model trains with its own default recipe; `same_recipe=True` gives every model one shared
    recipe instead (the settings of `base`, the rest from `Recipe()`: SGD 0.1, batch 128, cosine).
    `parallel=K` trains K runs side by side in worker processes that divide the cores (`pin_cores`: CPUs of
    their own); the table is the same, in the same order.
    """
    log = print if verbose else (lambda *a, **k: None)
    if parallel < 1:
        raise CifarlabError(f"--parallel must be >= 1, got {parallel}")
    if not models:
        raise CifarlabError("--models needs at least one model name")
    for name in models:
        get_model_entry(name)  # an unknown name fails here, before any training
    seeds = seeds or [0]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = base or TrainConfig()
    if budget_minutes:
        base = dataclasses.replace(base, budget_minutes=budget_minutes)

    from ..models.profile import describe_model

    configs = {}
    for name in models:
        cfg = dataclasses.replace(base, model=name)
        if same_recipe:
            shared = Recipe().as_dict()
            cfg = dataclasses.replace(cfg, **{k: getattr(base, k) if getattr(base, k) is not None else shared[k]
                                              for k in RECIPE_FIELDS})
        configs[name] = cfg
    jobs = [(name, dataclasses.replace(cfg, seed=s), out / "runs" / f"{name.replace(':', '-')}-seed{s}")
            for name, cfg in configs.items() for s in seeds]
    rows, outcomes = [], {}
    for outcome in run_many(jobs, log, parallel=parallel, pin=pin_cores, verbose=verbose,
                            what="model" if len(seeds) == 1 else "run"):  # in job order
        outcomes.setdefault(outcome.key, []).append(outcome)
        if len(outcomes[outcome.key]) == len(seeds):
            name = outcome.key
            facts = _model_facts(describe_model, name, configs[name])
            rows.append(_row(name, facts, outcomes[name]))
            _write_outputs(out, rows, outcomes)  # after every model, so a long compare shows progress
    log(f"comparison written to {out}/compare.md")
    return Comparison(rows, out)


class Comparison(list):
    """compare()'s table rows (a list of dicts), shown in a notebook as the table and its plots."""

    def __init__(self, rows: list[dict[str, Any]], out: Path):
        super().__init__(rows)
        self.out = Path(out)

    def __repr__(self) -> str:
        return f"Comparison({', '.join(str(r.get('model')) for r in self)}; {self.out})"

    def _repr_html_(self) -> str:
        from .._display import result_html

        headers = [h for h in ("model", "params", "mflops", "train_seconds", "val_accuracy", "test_accuracy", "error")
                   if any(h in r for r in self)]
        return result_html(f"Model comparison ({self.out})", [], [self.out / f"{name}.png" for name in (
            "accuracy_vs_time", "accuracy_vs_params", "learning_curves")],
            table=(headers, [[r.get(h) for h in headers] for r in self]))


def _model_facts(describe_model, name: str, cfg: TrainConfig) -> dict[str, Any]:
    try:
        return describe_model(name, **cfg.model_kwargs)
    except Exception as e:  # noqa: BLE001 - the training error, if any, is the one to report
        return {"params": None, "mflops": None, "error": str(e)}


def _row(name: str, facts: dict[str, Any], runs: list[RunOutcome]) -> dict[str, Any]:
    ok = [r for r in runs if r.summary]
    errors = sorted({r.error for r in runs if r.error})

    def values(key: str) -> list[float]:
        return [r.summary[key] for r in ok if r.summary.get(key) is not None]

    return {
        "model": name, "params": facts.get("params"), "mflops": facts.get("mflops"),
        "train_seconds": values("train_seconds"), "train_images_per_second": values("images_per_second"),
        "inference_images_per_second": values("inference_images_per_second"),
        "val_accuracy": values("val_accuracy"), "test_accuracy": values("test_accuracy"),
        "epochs": values("epochs_completed") or values("epochs"), "seeds": [r.seed for r in ok],
        "error": "; ".join(errors) if errors else "",
    }


def _write_outputs(out: Path, rows: list[dict[str, Any]], outcomes: dict[str, list[RunOutcome]]) -> None:
    write_json_atomic(out / "compare.json", rows)
    _write_csv(out / "compare.csv", rows)
    write_text_atomic(out / "compare.md", _markdown(rows))
    from .plots import plot_accuracy_vs, plot_accuracy_vs_time, plot_learning_curves

    plot_accuracy_vs_time(outcomes, rows, out / "accuracy_vs_time.png")
    plot_accuracy_vs(rows, "params", "parameters", out / "accuracy_vs_params.png", log_x=True)
    plot_learning_curves(outcomes, out / "learning_curves.png")


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    stat_columns = COLUMNS[3:8]
    headers = COLUMNS[:3] + [f"{c}{suffix}" for c in stat_columns for suffix in ("_mean", "_std")]
    write_csv(path, headers + ["epochs", "seeds", "error"], [
        [r["model"], r["params"], r["mflops"], *[v for c in stat_columns for v in mean_std(r[c])],
         mean_std(r["epochs"])[0], " ".join(map(str, r["seeds"])), r["error"]] for r in rows])


def _markdown(rows: list[dict[str, Any]]) -> str:
    headers = ["model", "params", "MFLOPs/img", "train s", "train img/s", "infer img/s", "val acc", "test acc",
               "epochs", "note"]
    table = []
    for r in sorted(rows, key=lambda r: -mean_std(r["test_accuracy"])[0] if r["test_accuracy"] else 1):
        table.append([
            r["model"], f"{r['params']:,}" if r["params"] else "-", f"{r['mflops']:,.1f}" if r["mflops"] else "-",
            format_mean_std(r["train_seconds"], 1), format_mean_std(r["train_images_per_second"], 0),
            format_mean_std(r["inference_images_per_second"], 0), format_mean_std(r["val_accuracy"]),
            format_mean_std(r["test_accuracy"]), f"{mean_std(r['epochs'])[0]:.1f}" if r["epochs"] else "-",
            r["error"] or "",
        ])
    seeds = max((len(r["seeds"]) for r in rows), default=1)
    note = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
    return f"# Model comparison ({note})\n\n" + markdown_table(headers, table)


def load_compare(out: str | Path) -> list[dict[str, Any]]:
    return read_json(Path(out) / "compare.json", root=out)
