"""The sections of an experiment directory's report: `compare` (the comparison table and plots),
`tune` (the study), `ablate` (accuracy per value) and `lr-find` (the range test)."""
from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path
from typing import Any

from .._io import read_text_bounded
from ..errors import CifarlabError
from ..rundir import layout
from ..rundir.layout import read_json
from .blocks import Cell, Facts, Heading, Section, Table, Text, command, figure_file, figure_group, fmt, number, text


def _mean_std(values: list[float] | None, digits: int = 4, spec: str = "f") -> Cell:
    """"mean ± std" over seeds (just the value for one seed), sorted by the mean."""
    if not values:
        return Cell("-", "")
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    shown = f"{m:,.{digits}{spec}}" + (f" ± {s:,.{digits}{spec}}" if len(values) > 1 else "")
    return Cell(shown, repr(float(m)))


def compare_sections(out: Path) -> tuple[str, list[Section]]:
    rows = read_json(out / "compare.json", root=out)
    seeds = max((len(r.get("seeds", [])) for r in rows), default=1)
    table = Table(["model", "params", "MFLOPs/img", "train s", "train img/s", "infer img/s", "val acc", "test acc",
                   "epochs", "note"],
                  [[text(r.get("model")), number(r.get("params"), ","), number(r.get("mflops"), ",.1f"),
                    _mean_std(r.get("train_seconds"), 1), _mean_std(r.get("train_images_per_second"), 0),
                    _mean_std(r.get("inference_images_per_second"), 0), _mean_std(r.get("val_accuracy")),
                    _mean_std(r.get("test_accuracy")), _mean_std(r.get("epochs"), 1), text(r.get("error") or None)]
                   for r in rows],
                  f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed")
    plots = [(name, caption, wide) for name, caption, wide in (
        ("accuracy_vs_time.png", "validation accuracy during training; ★ final test accuracy", False),
        ("accuracy_vs_params.png", "test accuracy against parameters", False),
        ("learning_curves.png", "validation accuracy and training loss per epoch", True)) if (out / name).exists()]
    comparison = Section("comparison", "Comparison", [
        Text("Every model trained on the same data and split; click a column to sort."), table,
        *figure_group([figure_file(out / name, caption, wide, root=out) for name, caption, wide in plots])])
    return f"comparison of {len(rows)} models: {out.name}", [comparison, runs_section(out / "runs")]


def runs_section(runs: Path) -> Section:
    """The run directories an experiment made, with their numbers and how to report on each."""
    dirs = sorted(p for p in runs.iterdir() if (p / layout.SUMMARY).exists()) if runs.is_dir() else []
    if not dirs:
        return Section("runs", "Runs", [Text(f"No finished run directory under {runs}.")])
    rows = []
    for d in dirs:
        s = read_json(d / layout.SUMMARY, root=runs)
        rows.append([text(d.name), text(s.get("model")), number(s.get("seed"), "d"),
                     number(s.get("epochs_completed"), "d"), number(s.get("val_accuracy")),
                     number(s.get("test_accuracy")), number(s.get("train_seconds"), ".1f")])
    return Section("runs", "Runs", [
        Table(["run directory", "model", "seed", "epochs", "val acc", "test acc", "train s"], rows),
        Text("Each is a run directory with its own report:", command("cifarlab report", runs / "NAME"))])


def tune_sections(out: Path) -> tuple[str, list[Section]]:
    t = read_json(out / "tune.json", root=out)
    counts = t.get("trials") or {}
    blocks: list[Any] = [Facts([
        ("study", str(t.get("study", "-"))), ("storage", str(t.get("storage", "-"))),
        ("trials", ", ".join(f"{n} {state.lower()}" for state, n in counts.items() if n) or "none"),
        ("best trial", str(t.get("best_trial") if t.get("best_trial") is not None else "-")),
        ("best validation accuracy", fmt(t.get("best_value"))),
        ("saved by pruning", f"{fmt(t.get('pruned_epochs_saved'), 'g')} epochs ≈ "
                             f"{fmt(t.get('seconds_saved_by_pruning'), '.1f', ' s')}" if counts.get("PRUNED")
         else "nothing: no trial was pruned")])]
    if t.get("best_params"):
        blocks += [Heading("Best parameters"), Table(["parameter", "value"], [
            [Cell(str(k)), number(v, ".4g") if isinstance(v, float) else text(v)]
            for k, v in t["best_params"].items()], sortable=False),
            Text("Retrain them on train + validation and test once:", command("cifarlab train --from-study", out))]
    # The importance plot only where tune.json has importances: too few trials leave a note, not a plot.
    importances = t.get("param_importances")
    plots = [(n, c) for n, c in (("optimization_history.png", "validation accuracy per trial and the best so far"),
                                 ("param_importances.png", t.get("importance_note") or "parameter importances"))
             if (out / n).exists() and (importances or n != "param_importances.png")]
    blocks += figure_group([figure_file(out / n, c, root=out) for n, c in plots])
    if not importances and t.get("importance_note"):
        blocks.append(Text(f"No parameter importance: {t['importance_note']}."))
    if (out / "trials.csv").exists():
        blocks += [Heading("Trials"), trials_table(out / "trials.csv", root=out)]
    return f"tuning study {t.get('study', out.name)}", [Section("tuning", "Tuning study", blocks)]


# trials.csv's own columns; every other one is a tuned parameter
TRIAL_COLUMNS = {"number", "state", "val_accuracy", "last_reported", "epochs_completed", "epochs_planned",
                 "train_seconds", "run_dir"}


def trials_table(path: Path, *, root: Path) -> Table:
    """trials.csv as a sortable table that fits a wide screen: headers in words, a pruned trial's last reported
    accuracy in parentheses in the accuracy column, epochs as done/planned, no run directories."""
    rows = read_csv(path, root=root)
    if not rows:
        return Table([], [])
    trials = [dict(zip(rows[0], r)) for r in rows[1:]]
    params = [h for h in rows[0] if h not in TRIAL_COLUMNS]
    return Table(["#", "state", "val acc", *[p.replace("_", " ") for p in params], "epochs", "train s"], [
        [_csv_cell(t.get("number", "")), text(t.get("state", "").lower() or None), _trial_accuracy(t),
         *[_csv_cell(t.get(p, "")) for p in params], _trial_epochs(t), _csv_cell(t.get("train_seconds", ""), ".1f")]
        for t in trials], "val acc in parentheses: the last value a pruned trial reported")


def read_csv(path: Path, *, root: Path) -> list[list[str]]:
    """The rows of a CSV file (a regular file inside `root`, of bounded size)."""
    try:
        return list(csv.reader(io.StringIO(read_text_bounded(path, root=root), newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CifarlabError(f"cannot read {path}: {e}") from None


def _csv_cell(value: str, spec: str = ".4g") -> Cell:
    try:
        x = float(value)
    except ValueError:
        return text(value or None)
    whole = x.is_integer() and not any(c in value for c in ".eE")
    return number(x, "d" if whole else spec)


def _trial_accuracy(trial: dict[str, str]) -> Cell:
    if trial.get("val_accuracy"):
        return _csv_cell(trial["val_accuracy"], ".4f")
    last = _csv_cell(trial.get("last_reported", ""), ".4f")
    return Cell(f"({last.text})", last.sort) if last.numeric and last.sort else last


def _trial_epochs(trial: dict[str, str]) -> Cell:
    done, planned = _csv_cell(trial.get("epochs_completed", ""), "g"), trial.get("epochs_planned")
    return Cell(f"{done.text}/{planned}", done.sort) if done.sort and planned else done


def ablation_sections(out: Path) -> tuple[str, list[Section]]:
    rows = read_json(out / "ablation.json", root=out)
    name = rows[0].get("field", "value") if rows else "value"
    table = Table([name, "val acc", "test acc", "train s", "epochs", "note"], [
        [text(r.get("value")), _mean_std(r.get("val_accuracy")), _mean_std(r.get("test_accuracy")),
         _mean_std(r.get("train_seconds"), 1), _mean_std([e for e in r.get("epochs", []) if e is not None], 1),
         text(r.get("error") or None)] for r in rows])
    plots = [(n, c) for n, c in (("ablation.png", f"accuracy by {name}"),
                                 ("learning_curves.png", "validation accuracy and training loss per epoch"))
             if (out / n).exists()]
    return f"ablation of {name}: {out.name}", [
        Section("ablation", f"Ablation of {name}",
                [table, *figure_group([figure_file(out / n, c, root=out) for n, c in plots])]),
        runs_section(out / "runs")]


def lr_find_sections(out: Path) -> tuple[str, list[Section]]:
    r = read_json(out / "lr_find.json", root=out)
    return f"learning-rate range test: {r.get('model', out.name)}", [Section("lr-find", "Learning-rate range test", [
        Facts([("suggested lr", fmt(r.get("suggested_lr"), ".3g")), ("how", str(r.get("suggestion", "-"))),
               ("steepest descent at", fmt(r.get("steepest_lr"), ".3g")),
               ("steps", f"{r.get('steps_run', '?')}{', stopped when the loss diverged' if r.get('diverged') else ''}"),
               ("optimizer, batch", f"{r.get('optimizer', '?')}, {r.get('batch_size', '?')}")]),
        *figure_group([figure_file(out / "lr_find.png", "loss against learning rate", wide=True, root=out)])])]
