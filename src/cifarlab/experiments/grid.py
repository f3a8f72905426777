"""Run many trainings, one run directory each, and collect their summaries. A run that fails (out of
memory, diverged, bad settings for that model) becomes a row with its error; the others still run.
A run whose summary.json already exists is reused, so re-running an interrupted experiment continues it."""
from __future__ import annotations

import contextlib
import dataclasses
import statistics
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import write_text_atomic
from ..config import TrainConfig
from ..rundir import layout


@dataclass
class RunOutcome:
    key: str  # what the run stands for in the table (a model name, an ablation value)
    seed: int
    run_dir: Path
    summary: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def run_one(key: str, cfg: TrainConfig, run_dir: Path, log: Callable[[str], None] = print,
            verbose: bool = True) -> RunOutcome:
    from ..training import train

    outcome = RunOutcome(key, cfg.seed, run_dir)
    if (run_dir / layout.SUMMARY).exists():
        log(f"{key} seed {cfg.seed}: reusing the finished run in {run_dir}")
        outcome.summary = layout.read_summary(run_dir)
    else:
        try:
            result = train(dataclasses.replace(cfg, out=str(run_dir)), overwrite=True, verbose=verbose)
            outcome.summary = result.summary
            if not verbose:  # side by side: one line per run instead of interleaved progress bars
                log(f"{key} seed {cfg.seed}: {_result_line(result.summary)} in {run_dir}")
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - one failed model must not stop the experiment
            outcome.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
            log(f"{key} seed {cfg.seed} failed: {outcome.error}")
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(run_dir.parent / f"{run_dir.name}.error.txt", traceback.format_exc())
            return outcome
    outcome.history = _read_history(run_dir)
    return outcome


def _result_line(summary: dict[str, Any]) -> str:
    for name in ("test_accuracy", "val_accuracy"):
        if summary.get(name) is not None:
            return f"{name.replace('_', ' ')} {summary[name]:.4f} after {summary['train_seconds']:.1f} s"
    return f"trained for {summary['train_seconds']:.1f} s"


def _run_one_in_worker(key: str, cfg: TrainConfig, run_dir: Path, show: bool) -> RunOutcome:
    return run_one(key, cfg, run_dir, print if show else (lambda *a, **k: None), verbose=False)


def run_many(jobs: list[tuple[str, TrainConfig, Path]], log: Callable[[str], None] = print, *, parallel: int = 1,
             pin: bool = False, verbose: bool = True, what: str = "run") -> Iterator[RunOutcome]:
    """run_one for each (key, cfg, run_dir), yielded in the order given. `parallel` K > 1: K worker
    processes side by side, the cores divided among them (threads = CPUs // K each, `pin`: CPUs of their
    own); the seeds are the runs' own, so the results are those of running them one after another with
    the same thread count."""
    if parallel <= 1:
        for i, (key, cfg, run_dir) in enumerate(jobs, 1):  # where a long experiment stands, before each run
            log(f"{what} {i} of {len(jobs)}: {key} seed {cfg.seed}")
            yield run_one(key, cfg, run_dir, log, verbose=verbose)
        return
    from concurrent.futures.process import BrokenProcessPool

    from .._parallel import run_parallel
    from ..data import load_data

    for data in dict.fromkeys(cfg.data for _, cfg, _ in jobs):  # decode the images here, once, into the cache:
        load_data(data, progress=False)                         # not K times at once in the workers
    with contextlib.closing(run_parallel(_run_one_in_worker, [(*job, verbose) for job in jobs], parallel,
                                         pin=pin)) as futures:
        for i, ((key, cfg, run_dir), future) in enumerate(zip(jobs, futures), 1):
            try:
                outcome = future.result()
                log(f"{what} {i} of {len(jobs)} done: {key} seed {cfg.seed}")
                yield outcome
            except BrokenProcessPool:  # a worker was killed (out of memory?): this run and those after it fail
                outcome = RunOutcome(key, cfg.seed, run_dir, error="worker process died (killed, out of memory?)")
                log(f"{key} seed {cfg.seed} failed: {outcome.error}")
                yield outcome


def _read_history(run_dir: Path) -> list[dict[str, Any]]:
    return layout.read_history(run_dir)


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def format_mean_std(values: list[float], digits: int = 4) -> str:
    if not values:
        return "-"
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, headers: list[str], rows: list[list[Any]]) -> None:
    """One CSV file, written atomically; None becomes an empty cell."""
    import csv

    from .._io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(headers)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
