"""`cifarlab tune`: an Optuna study over training settings, maximizing the final validation accuracy.

Each trial is one `train()` run in DIR/trials/trial_NNNN with `evaluate_test=False`, so the test split
is never evaluated while tuning; the validation accuracy is reported to the trial after every epoch
and the pruner may stop it there (train's on_epoch_end callback). The study lives in a storage
(default sqlite:///DIR/study.db), so running the same command again finishes the remaining trials, and
several processes on one storage share the study (Optuna hands out trial numbers). `--trials N` is the
number of finished (complete or pruned) trials the study should hold.

    DIR/study.db                       the study (unless --storage points elsewhere)
    DIR/trials.csv, DIR/trials.md      one row per trial: state, validation accuracy, parameters, epochs, time
    DIR/tune.json                      best parameters, counts, the time pruning saved
    DIR/optimization_history.png       validation accuracy per trial and the best so far
    DIR/param_importances.png          fANOVA importances (from MIN_IMPORTANCE_TRIALS complete trials on)
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shlex
import stat
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import file_kind, write_json_atomic, write_text_atomic
from ..config import TrainConfig, check_settings, takes_settings, with_overrides
from ..errors import CifarlabError, TrainingDiverged
from ..training.resolve import resolve
from .space import Param, as_fields, check_space, default_space, load_space, parse_space, with_params

PRUNERS = ("median", "hyperband", "none")


@dataclass
class TuneResult:
    out: Path
    study_name: str
    storage: str
    best_params: dict[str, Any] | None
    best_value: float | None
    best_trial: int | None
    rows: list[dict[str, Any]]
    pruned_epochs_saved: float
    seconds_saved: float | None
    ran: list[int] = field(default_factory=list)  # the trial numbers this call ran

    def __repr__(self) -> str:
        best = f"best trial {self.best_trial}: val acc {self.best_value:.4f}" if self.best_value is not None else \
            "no complete trial yet"
        return f"TuneResult({self.study_name}: {len(self.rows)} trials, {best}; {self.out})"

    def _repr_html_(self) -> str:
        from .._display import result_html

        headers = sorted({k for r in self.rows for k in r}, key=lambda k: (k not in ("number", "state", "value"), k))
        return result_html(f"Tuning study {self.study_name}", [
            ("trials", len(self.rows)), ("best trial", self.best_trial), ("best validation accuracy", self.best_value),
            ("best parameters", self.best_params), ("epochs saved by pruning", self.pruned_epochs_saved)],
            [self.out / "optimization_history.png", self.out / "param_importances.png"],
            table=(headers, [[r.get(h) for h in headers] for r in self.rows]))


def _optuna():
    try:
        import optuna
    except ImportError:
        raise CifarlabError("tuning needs optuna: pip install -e '.[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # cifarlab prints one line per trial instead
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _NoInterruptTraceback) for f in handler.filters):
            handler.addFilter(_NoInterruptTraceback())
    return optuna


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs the trial that Ctrl-C or SIGTERM stops as failed, with a traceback; an interrupt is no
    error: _run_trials says so in one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt))


MIN_IMPORTANCE_TRIALS = 5  # fewer complete trials: no importance plot, a note instead


def make_pruner(pruner, epochs: int):
    """A pruner by name: median (once 3 trials are complete, from the end of epoch 2 on: one epoch's
    accuracy says little about a trial; from epoch 1 on when a trial has only 2, else it could only stop
    a trial at its end, saving nothing), hyperband (from epoch 1, rungs growing 3×), none."""
    optuna = _optuna()
    if not isinstance(pruner, str):
        return pruner
    if pruner == "median":
        # steps are epochs 1, 2, ...
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=min(2, max(epochs - 1, 1)))
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    if pruner == "none":
        return optuna.pruners.NopPruner()
    raise CifarlabError(f"unknown --pruner {pruner!r}; choose one of: {', '.join(PRUNERS)}")


def open_storage(url: str):
    """An Optuna storage. SQLite (one machine) connections wait for a lock instead of failing; server
    databases (PostgreSQL, MySQL: workers on many machines) check a pooled connection before using it,
    since the server may have closed it during a long trial."""
    optuna = _optuna()
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        _check_driver(url)
        engine_kwargs = {"pool_pre_ping": True}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except Exception as e:  # noqa: BLE001 - two processes creating the tables at once: try again
            if attempt == 4:
                raise CifarlabError(f"cannot open the Optuna storage {_shown(url)}: "
                                    f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
                                    ) from None
            time.sleep(0.5 * (attempt + 1))


def _shown(url: str) -> str:
    """The URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not even a URL: show it as given
        return url


def _check_driver(url: str) -> None:
    # SQLAlchemy 2.1 reads postgresql:// as postgresql+psycopg:// (psycopg 3)
    if url.split(":", 1)[0] in ("postgresql", "postgresql+psycopg"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise CifarlabError("a postgresql:// storage needs the psycopg driver: "
                                "pip install -e '.[postgres]'") from None


@contextlib.contextmanager
def _decoding(study_name: str, url: str) -> Iterator[None]:
    """Optuna decodes a study's trials and attributes as it reads them; one it cannot decode (a categorical
    index past its choices, an unknown distribution, broken JSON: a damaged or foreign storage) becomes one
    line naming the study instead of a traceback."""
    try:
        yield
    except (ValueError, IndexError, KeyError, TypeError, AttributeError) as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CifarlabError(f"study {study_name} in {_shown(url)} cannot be read: {type(e).__name__}: {text} (a "
                            "damaged storage, or one written by another program?)") from None


def resolve_storage(source: str | Path) -> str:
    """A tune directory (its study.db), a .db file, or a storage URL -> a storage URL."""
    text = str(source)
    if "://" in text:
        return text
    path = Path(text)
    if path.is_dir():
        path = path / "study.db"
    if not path.is_file():
        raise CifarlabError(f"no study found at {source} (give a tune --out directory, a .db file or a storage URL)")
    return f"sqlite:///{path.resolve()}"


def _own_study_db(out: Path) -> Path:
    """out/study.db, refused when it is a link: the study is written only inside the tune directory (another
    database is a choice made with --storage, not one a link in a shared folder makes)."""
    db = out / "study.db"
    try:
        mode = os.lstat(db).st_mode  # the name itself: a link is refused, not followed
    except FileNotFoundError:
        return db.resolve()
    if not stat.S_ISREG(mode):
        raise CifarlabError(f"{db} is {file_kind(mode)}; cifarlab keeps a study only in a regular file inside the tune "
                            "directory (move it away, or pass --storage to use another database)")
    return db.resolve()


@takes_settings()
def tune(base: TrainConfig | None = None, out: str | Path = "tune", *, trials: int = 20, timeout: float | None = None,
         storage: str | None = None, study_name: str | None = None, space: dict | str | Path | None = None,
         pruner: Any = "median", verbose: bool = True, workers: int = 1, pin_cores: bool = False,
         **overrides: Any) -> TuneResult:
    """Run trials until the study holds `trials` complete or pruned ones (or `timeout` seconds pass).

    `base` (and keyword overrides) are the fixed settings; `space` is a YAML file, a mapping in the same
    schema, or None for `default_space`. `pruner` is median, hyperband, none or an Optuna pruner.
    `workers` N > 1 runs N worker processes on this machine sharing the study, the cores divided among them
    (threads = CPUs // N each; `pin_cores`: CPUs of their own). Other machines may join through `storage`.
    """
    optuna = _optuna()
    log = print if verbose else (lambda *a, **k: None)
    if trials <= 0:
        raise CifarlabError(f"--trials must be > 0, got {trials}")
    if workers < 1:
        raise CifarlabError(f"--workers must be >= 1, got {workers}")
    base = with_overrides(base, overrides)
    base = dataclasses.replace(base, evaluate_test=False, out=None)
    if base.data and Path(base.data).exists():  # the study remembers it: --from-study may run from elsewhere
        base = dataclasses.replace(base, data=str(Path(base.data).resolve()))
    resolved = resolve(base)
    if resolved.val_size == 0:
        raise CifarlabError("tuning maximizes the validation accuracy: --val-size must be > 0")
    space, label = _space(space, base)
    check_space(space, base, label)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage_url = storage or f"sqlite:///{_own_study_db(out)}"
    study_name = study_name or f"cifarlab-{resolved.model.replace(':', '-')}"
    study = optuna.create_study(storage=open_storage(storage_url), study_name=study_name, direction="maximize",
                                load_if_exists=True, pruner=make_pruner(pruner, resolved.epochs))
    if "base_config" not in study.user_attrs:
        study.set_user_attr("base_config", base.to_dict())
        study.set_user_attr("space", {n: p.as_dict() for n, p in space.items()})

    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    with _decoding(study_name, storage_url):  # every trial, once: the sampler and the report read them all
        done = sum(t.state in finished for t in study.get_trials(deepcopy=False))
    log(f"study {study_name} in {storage_url}: {done} of {trials} trials finished; searching "
        f"{', '.join(space)}; pruner {pruner if isinstance(pruner, str) else type(pruner).__name__}")
    command = shlex.join(sys.argv)
    session = uuid.uuid4().hex  # marks this call's trials, so that its workers stop at `trials` together
    if done < trials and workers > 1:
        from .._parallel import run_parallel
        from ..data import load_data

        load_data(base.data, progress=verbose)  # decoded here, once, into the cache: not N times at once
        log(f"{workers} worker processes on this machine, the cores divided among them")
        jobs = [(storage_url, study_name, pruner, base, out, space, trials, timeout, command, session, verbose)
                for _ in range(workers)]
        with contextlib.closing(run_parallel(_run_trials_in_worker, jobs, workers, pin=pin_cores)) as futures:
            ran = sorted(n for future in futures for n in future.result())  # a failed worker stops the others
    else:
        ran = _run_trials(study, base, out, space, trials, timeout, command, session, log) if done < trials else []
    result = write_report(study, out, storage_url)
    result.ran = ran
    return result


def _run_trials_in_worker(storage_url: str, study_name: str, pruner: Any, base: TrainConfig, out: Path,
                          space: dict[str, Param], trials: int, timeout: float | None, command: str, session: str,
                          verbose: bool) -> list[int]:
    """One of `tune --workers N`'s processes: the same study, its own trials."""
    optuna = _optuna()
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage_url),
                              pruner=make_pruner(pruner, resolve(base).epochs))
    return _run_trials(study, base, out, space, trials, timeout, command, session,
                       print if verbose else (lambda *a, **k: None))


def _run_trials(study, base: TrainConfig, out: Path, space: dict[str, Param], trials: int, timeout: float | None,
                command: str, session: str, log) -> list[int]:
    """Run trials in this process until the study holds `trials` finished ones (counting the trials this
    call's other workers are running); returns the numbers of the trials run here."""
    from ..training import train

    optuna = _optuna()
    ran: list[int] = []

    def objective(trial) -> float:
        ran.append(trial.number)
        trial.set_user_attr("session", session)
        trial.set_user_attr("pid", os.getpid())  # which process ran it (tune --workers)
        params = {name: p.suggest(trial) for name, p in space.items()}
        run_dir = out / "trials" / f"trial_{trial.number:04d}"
        cfg = dataclasses.replace(with_params(base, params), out=str(run_dir))
        trial.set_user_attr("run_dir", str(run_dir))
        planned = resolve(cfg).epochs
        trial.set_user_attr("epochs_planned", planned)
        pruned_at: list[int] = []

        def report(record: dict[str, Any]) -> bool:
            step = math.ceil(record["epoch"])
            trial.report(record["val_accuracy"], step)
            # After the last epoch there is nothing left to save: a trial that ran to its end completes
            # (pruning it there would only throw its result away, and "save" 0 epochs).
            if step < planned and trial.should_prune():
                pruned_at.append(step)
                return True
            return False

        result = train(cfg, overwrite=True, verbose=False, on_epoch_end=report, command=command)
        s = result.summary
        trial.set_user_attr("epochs_completed", s["epochs_completed"])
        trial.set_user_attr("train_seconds", s["train_seconds"])
        shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
        which = f"trial {trial.number} ({_finished(study) + 1} of {trials})"
        if pruned_at:
            log(f"{which}: pruned after epoch {pruned_at[0]} of {planned} (val acc {s['val_accuracy']:.4f}); "
                f"{shown}; {_best_so_far(study)}")
            raise optuna.TrialPruned(f"pruned after epoch {pruned_at[0]}")
        log(f"{which}: val acc {s['val_accuracy']:.4f} after {s['epochs_completed']:g} epochs, "
            f"{s['train_seconds']:.1f} s; {shown}; {_best_so_far(study, (trial.number, s['val_accuracy']))}")
        return s["val_accuracy"]

    state = optuna.trial.TrialState

    def enough(study, _trial) -> None:
        # Like Optuna's MaxTrialsCallback, but the trials this call's other workers are running count too:
        # N workers do not start N - 1 trials past `trials` at the end.
        all_trials = study.get_trials(deepcopy=False)
        finished = sum(t.state in (state.COMPLETE, state.PRUNED) for t in all_trials)
        running = sum(t.state == state.RUNNING and t.user_attrs.get("session") == session for t in all_trials)
        if finished + running >= trials:
            study.stop()

    done = len(study.get_trials(deepcopy=False, states=(state.COMPLETE, state.PRUNED)))
    if done < trials:
        try:
            study.optimize(objective, n_trials=trials - done, timeout=timeout, catch=(TrainingDiverged,),
                           callbacks=[enough])
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: no trial of this process is left marked running
            stopped = _fail_running(study, ran)
            log(f"interrupted{f': trial {stopped} marked failed' if stopped is not None else ''}; run the same "
                "command again to finish the study")
            raise
    return ran


def _fail_running(study, numbers: list[int]) -> int | None:
    """Mark the trials `numbers` that are still running as failed (Optuna marks the trial an interrupt
    stops as failed itself, unless the interrupt came while it was storing the trial's end); return the
    number of the last one when it ended failed."""
    state = _optuna().trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        if t.number in numbers:
            study.tell(t.number, state=state.FAIL)
    failed = {t.number for t in study.get_trials(deepcopy=False, states=(state.FAIL,))}
    return numbers[-1] if numbers and numbers[-1] in failed else None


def _finished(study) -> int:
    state = _optuna().trial.TrialState
    return len(study.get_trials(deepcopy=False, states=(state.COMPLETE, state.PRUNED)))


def _best_so_far(study, current: tuple[int, float] | None = None) -> str:
    """"best so far: trial N, val acc X", counting the trial that just ended (not yet stored as complete)."""
    state = _optuna().trial.TrialState
    done = [(t.number, t.value) for t in study.get_trials(deepcopy=False, states=(state.COMPLETE,))]
    done += [current] if current is not None else []
    if not done:
        return "no complete trial yet"
    number, value = max(done, key=lambda d: (d[1], -d[0]))
    return f"best so far: trial {number}, val acc {value:.4f}"


def _space(space, base: TrainConfig) -> tuple[dict[str, Param], str]:
    if space is None:
        return default_space(base), "default search space"
    if isinstance(space, (str, Path)):
        return load_space(space), f"space file {space}"
    if all(isinstance(p, Param) for p in space.values()):
        return dict(space), "search space"
    return parse_space(space, "(given as a mapping)"), "search space"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write_report(study, out: Path, storage_url: str) -> TuneResult:
    """trials.csv / trials.md / tune.json and the two plots, from every trial of the study so far."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    names = sorted({n for t in trials for n in t.params})
    rows = []
    for t in trials:
        a = t.user_attrs
        # Optuna gives a pruned trial the value last reported; only complete trials have a final accuracy.
        rows.append({"number": t.number, "state": t.state.name,
                     "val_accuracy": t.value if t.state == state.COMPLETE else None,
                     "last_reported": t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values
                     else None, **{n: t.params.get(n) for n in names},
                     "epochs_completed": a.get("epochs_completed"), "epochs_planned": a.get("epochs_planned"),
                     "train_seconds": a.get("train_seconds"), "run_dir": a.get("run_dir")})
    finished = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED") and r["epochs_completed"]]
    epochs_run = sum(r["epochs_completed"] for r in finished)
    mean_epoch = sum(r["train_seconds"] for r in finished) / epochs_run if epochs_run else None
    saved_epochs = sum(max(0, r["epochs_planned"] - r["epochs_completed"]) for r in finished
                       if r["state"] == "PRUNED")
    saved_seconds = saved_epochs * mean_epoch if mean_epoch is not None else None
    complete = [t for t in trials if t.state == state.COMPLETE]
    best = study.best_trial if complete else None
    importances, note = _importances(optuna, study, complete)
    counts = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}

    from ..experiments.grid import write_csv

    headers = ["number", "state", "val_accuracy", "last_reported", *names, "epochs_completed", "epochs_planned",
               "train_seconds", "run_dir"]
    write_csv(out / "trials.csv", headers, [[r[h] for h in headers] for r in rows])
    write_text_atomic(out / "trials.md", _markdown(study.study_name, rows, names, best, counts, saved_epochs,
                                                   saved_seconds, mean_epoch, note))
    write_json_atomic(out / "tune.json", {
        "study": study.study_name, "storage": storage_url, "best_trial": best.number if best else None,
        "best_value": best.value if best else None, "best_params": best.params if best else None,
        "trials": counts, "pruned_epochs_saved": saved_epochs, "mean_epoch_seconds": mean_epoch,
        "seconds_saved_by_pruning": saved_seconds, "param_importances": importances, "importance_note": note,
        "base_config": study.user_attrs.get("base_config"), "space": study.user_attrs.get("space"),
    })
    _plot_history(rows, out / "optimization_history.png", study.study_name)
    if importances:
        _plot_importances(importances, out / "param_importances.png")
    return TuneResult(out, study.study_name, storage_url, best.params if best else None,
                      best.value if best else None, best.number if best else None, rows, saved_epochs, saved_seconds)


def _importances(optuna, study, complete) -> tuple[dict[str, float] | None, str]:
    if len(complete) < MIN_IMPORTANCE_TRIALS:  # fANOVA's forest over 2 or 3 points ranks noise
        return None, (f"parameter importance skipped: it needs at least {MIN_IMPORTANCE_TRIALS} complete trials "
                      f"to mean anything (have {len(complete)})")
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as e:  # noqa: BLE001 - e.g. every complete trial drew the same values
        return None, f"parameter importance not available: {type(e).__name__}: {e}"
    if not values:
        return None, "parameter importance not available: no parameter varied across complete trials"
    return {k: float(v) for k, v in values.items()}, f"fANOVA over {len(complete)} complete trials"


def _markdown(name, rows, names, best, counts, saved_epochs, saved_seconds, mean_epoch, note) -> str:
    from ..experiments.grid import markdown_table

    lines = [f"# Tuning: study {name}", ""]
    lines.append(", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v) + " trials")
    if best:
        params = ", ".join(f"{k}={_short(v)}" for k, v in best.params.items())
        lines.append(f"best: trial {best.number}, validation accuracy {best.value:.4f} with {params}")
    if not counts.get("PRUNED"):
        lines.append("no trial was pruned")
    elif mean_epoch is not None:
        lines.append(f"pruning saved {saved_epochs:g} epochs ≈ {saved_seconds:.1f} s "
                     f"(mean epoch {mean_epoch:.2f} s)")
    lines += [note, ""]
    headers = ["#", "state", "val acc", *names, "epochs", "train s"]
    table = [[r["number"], r["state"].lower(),
              f"{r['val_accuracy']:.4f}" if r["val_accuracy"] is not None else
              (f"({r['last_reported']:.4f})" if r["last_reported"] is not None else "-"),
              *[_short(r[n]) if r[n] is not None else "-" for n in names],
              f"{r['epochs_completed']:g}/{r['epochs_planned']}" if r["epochs_completed"] else "-",
              f"{r['train_seconds']:.1f}" if r["train_seconds"] else "-"] for r in rows]
    return "\n".join(lines) + "\n" + markdown_table(headers, table) + \
        "\n(val acc in parentheses: the last value reported before pruning)\n"


def _plot_history(rows, path: Path, name: str) -> None:
    from ..experiments.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    done = [r for r in rows if r["state"] == "COMPLETE"]
    pruned = [r for r in rows if r["state"] == "PRUNED" and r["last_reported"] is not None]
    if done:
        ax.plot([r["number"] for r in done], [r["val_accuracy"] for r in done], "o", label="complete")
        best, xs, ys = -math.inf, [], []
        for r in done:
            best = max(best, r["val_accuracy"])
            xs.append(r["number"])
            ys.append(best)
        ax.step(xs, ys, where="post", color="C3", label="best so far")
    if pruned:
        ax.plot([r["number"] for r in pruned], [r["last_reported"] for r in pruned], "x", color="0.5",
                label="pruned (last reported)")
    ax.set(xlabel="trial", ylabel="validation accuracy", title=f"Optimization history: {name}")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if done or pruned:
        ax.legend(fontsize=9.5)
    save_figure(fig, path)


def _plot_importances(importances: dict[str, float], path: Path) -> None:
    from ..experiments.plots import plt, save_figure

    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6.4, 0.5 * len(names) + 1.5))
    ax.barh(names, [importances[n] for n in names], color="C0")
    ax.set(xlabel="importance (fANOVA, sums to 1)", title="Parameter importance for validation accuracy")
    ax.grid(alpha=0.3, axis="x")
    save_figure(fig, path)


def config_from_study(source: str | Path, study_name: str | None = None,
                      overrides: dict[str, Any] | None = None) -> tuple[TrainConfig, dict[str, Any]]:
    """The best trial's settings on top of the study's fixed ones, for a final run on train + val
    (val_size 0) that evaluates the test split once. `overrides` (flags) win. Returns (config, info)."""
    optuna = _optuna()
    url = resolve_storage(source)
    storage = open_storage(url)
    names = optuna.get_all_study_names(storage)
    if study_name is None:
        if len(names) != 1:
            raise CifarlabError(f"{source} holds {len(names)} studies; pick one with --study "
                                f"({', '.join(names) or 'none'})")
        study_name = names[0]
    elif study_name not in names:
        raise CifarlabError(f"no study {study_name!r} in {source} (studies: {', '.join(names) or 'none'})")
    with _decoding(study_name, url):
        study = optuna.load_study(study_name=study_name, storage=storage)
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not complete:
            raise CifarlabError(f"study {study_name} has no complete trial yet")
        best = study.best_trial
        fixed = study.user_attrs.get("base_config", {})
    check_settings(fixed, f"study {study_name}: its base_config", ranges=False)  # before merging into it
    values = {**fixed, **as_fields(best.params, fixed.get("model_kwargs")), "val_size": 0, "evaluate_test": True,
              "out": None, **(overrides or {})}
    info = {"study": study_name, "storage": url, "trial": best.number, "val_accuracy": best.value,
            "params": best.params}
    return TrainConfig.from_dict(values, source=f"study {study_name}"), info
