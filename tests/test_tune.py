"""Tuning with Optuna (pruning, resuming, two processes on one SQLite study, space files, retraining
the best trial) and ablations, on the tiny synthetic tree."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest

from cifarlab.cli import main
from cifarlab.config import TrainConfig
from cifarlab.errors import CifarlabError
from cifarlab.experiments import ablate
from cifarlab.experiments.ablate import parse_vary
from cifarlab.tuning import default_space, load_space, tune

SPACE = {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
         "batch_size": {"type": "categorical", "choices": [16, 32]},
         "augment": {"type": "categorical", "choices": ["none", "standard"]}}
TINY = ["--epochs", "1", "--train-size", "30", "--val-size", "15", "--precision", "fp32"]


class PruneTrialOne(optuna.pruners.BasePruner):
    """Deterministic: trial 1 is pruned at its first report, every other trial runs to the end."""

    def prune(self, study, trial) -> bool:
        return trial.number == 1


def base(tree) -> TrainConfig:
    return TrainConfig(model="baseline", data=str(tree), epochs=2, train_size=30, val_size=15, precision="fp32")


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, tiny_tree):
    cache = tmp_path_factory.mktemp("tune-cache")
    old = os.environ.get("CIFARLAB_CACHE")
    os.environ["CIFARLAB_CACHE"] = str(cache)
    try:
        out = tmp_path_factory.mktemp("tune") / "study"
        result = tune(base(tiny_tree), out, trials=3, space=SPACE, pruner=PruneTrialOne(), verbose=False)
    finally:
        if old is None:
            os.environ.pop("CIFARLAB_CACHE", None)
        else:
            os.environ["CIFARLAB_CACHE"] = old
    return out, result


def test_a_study_runs_its_trials_with_one_pruned(study_dir):
    out, result = study_dir
    assert result.ran == [0, 1, 2]
    assert [r["state"] for r in result.rows] == ["COMPLETE", "PRUNED", "COMPLETE"]
    for name in ("study.db", "trials.csv", "trials.md", "tune.json", "optimization_history.png"):
        assert (out / name).stat().st_size > 0, name
    with open(out / "trials.csv") as f:
        table = list(csv.DictReader(f))
    assert [t["state"] for t in table] == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert {"lr", "batch_size", "augment", "val_accuracy", "epochs_completed"} <= set(table[0])
    info = json.loads((out / "tune.json").read_text())
    assert info["pruned_epochs_saved"] == 1 and info["seconds_saved_by_pruning"] > 0  # trial 1 stopped at 1 of 2
    assert info["best_trial"] in (0, 2) and set(info["best_params"]) == set(SPACE)
    assert (out / "param_importances.png").exists() or "importance" in info["importance_note"]
    md = (out / "trials.md").read_text()
    assert "pruning saved 1 epochs" in md and "pruned" in md
    for n in range(3):  # the test split is never evaluated in a trial
        summary = json.loads((out / "trials" / f"trial_{n:04d}" / "summary.json").read_text())
        assert summary["test_accuracy"] is None and summary["val_images"] == 15
    pruned = json.loads((out / "trials" / "trial_0001" / "summary.json").read_text())
    assert pruned["epochs_completed"] == 1 and pruned["stopped_early"]


def test_running_again_finishes_only_the_remaining_trials(study_dir, tiny_tree):
    out, _ = study_dir
    assert tune(base(tiny_tree), out, trials=3, space=SPACE, pruner="none", verbose=False).ran == []
    again = tune(base(tiny_tree), out, trials=4, space=SPACE, pruner="none", verbose=False)
    assert again.ran == [3] and len(again.rows) == 4


def test_train_from_study_retrains_the_best_on_train_and_val(study_dir, tmp_path, capsys):
    out, result = study_dir
    study = optuna.load_study(study_name=result.study_name, storage=result.storage)
    assert main(["train", "--from-study", str(out), "--out", str(tmp_path / "final")]) == 0
    printed = capsys.readouterr().out
    assert f"retraining trial {study.best_trial.number}" in printed and "test accuracy" in printed
    summary = json.loads((tmp_path / "final" / "summary.json").read_text())
    config = json.loads((tmp_path / "final" / "config.json").read_text())["config"]
    assert summary["val_images"] == 0 and summary["test_accuracy"] is not None
    assert summary["train_images"] == 30 and config["evaluate_test"] is True
    for key, value in study.best_trial.params.items():
        assert config[key] == value
    assert main(["train", "--from-study", str(tmp_path / "nothing")]) == 2
    assert "no study found" in capsys.readouterr().err


def test_too_few_complete_trials_skip_the_importance_plot(tiny_tree, tmp_path):
    result = tune(base(tiny_tree), tmp_path / "one", trials=1, space=SPACE, pruner="none", epochs=1, verbose=False)
    info = json.loads((tmp_path / "one" / "tune.json").read_text())
    assert result.best_trial == 0 and info["param_importances"] is None
    assert "at least 5 complete trials" in info["importance_note"]
    assert not (tmp_path / "one" / "param_importances.png").exists()


def test_two_processes_share_one_sqlite_study(tiny_tree, tmp_path):
    (tmp_path / "space.yaml").write_text(json.dumps(SPACE))  # JSON is YAML
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    cmd = [sys.executable, "-m", "cifarlab", "tune", "--model", "baseline", "--trials", "4", "--data", str(tiny_tree),
           "--storage", storage, "--study", "shared", "--space", str(tmp_path / "space.yaml"), "--pruner", "none",
           *TINY]
    procs = [subprocess.Popen([*cmd, "--out", str(tmp_path / f"w{i}")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    ran = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stderr
        ran.append(re.search(r"this process ran (\d+) trial\(s\): (.*)", stdout).groups())
    numbers = [int(n) for _, text in ran for n in re.findall(r"#(\d+)", text)]
    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # distinct, none lost
    assert len(trials) == sum(int(n) for n, _ in ran) == len(numbers) and sorted(numbers) == list(range(len(trials)))
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) >= 4


@pytest.mark.parametrize("text, problem", [
    ("lr: [1, 2]", "lr: expected a mapping"),
    ("lr: {type: float, low: 0.1, high: 0.01}", "lr: low must be < high"),
    ("lr: {type: float, low: 0, high: 0.1, log: true}", "a log scale needs low > 0"),
    ("lr: {type: normal, low: 0, high: 1}", "type must be one of float, int, categorical"),
    ("speed: {type: float, low: 0, high: 1}", "'speed' is not a training setting"),
    ("batch_size: {type: categorical}", "needs a non-empty list of choices"),
    ("lr: {type: float, low: 0.1, high: 1, step: 2}", "unknown key(s) step"),
    ("lr: {type: float, low: a, high: 1}", "low must be a number"),
    ("- just a list", "must be a mapping"),
    ("lr: {type: float, low: 0.1", "cannot read space file"),
    ("model_kwargs.: {type: float, low: 0, high: 1}", "model_kwargs.KEY needs the name of a model argument"),
    ("model_kwargs.bn-mom.x: {type: float, low: 0, high: 1}", "model_kwargs.KEY needs the name"),
    ("model_kwargs: {type: float, low: 0, high: 1}", "'model_kwargs' cannot be tuned"),
])
def test_a_bad_space_file_is_one_clear_error(tmp_path, text, problem):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(CifarlabError) as info:
        load_space(path)
    message = str(info.value)
    assert str(path) in message and problem in message and "\n" not in message


def test_space_values_must_make_valid_configs(tiny_tree, tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_text("augment: {type: categorical, choices: [none, warp]}\n")
    assert main(["tune", "--model", "baseline", "--trials", "1", "--data", str(tiny_tree), "--space", str(path),
                 "--out", str(tmp_path / "t"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "augment = 'warp'" in err[0]


@pytest.mark.parametrize("model, entry, problem", [
    ("baseline", "model_kwargs.widht: {type: float, low: 0.1, high: 0.5}", "model baseline has no argument widht"),
    ("airbench", "model_kwargs.activation: {type: categorical, choices: [silu, tanh]}",
     "model_kwargs.activation = 'tanh': model_kwargs activation: no activation 'tanh'"),
    ("airbench", "model_kwargs.bn_momentum: {type: float, low: 0.5, high: 1.5}", "bn_momentum must be a number in"),
])
def test_a_model_argument_in_the_space_must_build_the_model(tiny_tree, tmp_path, capsys, model, entry, problem):
    path = tmp_path / "space.yaml"
    path.write_text(entry + "\n")
    assert main(["tune", "--model", model, "--trials", "1", "--data", str(tiny_tree), "--space", str(path),
                 "--out", str(tmp_path / "t"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and problem in err[0]
    assert not (tmp_path / "t").exists()


def test_a_study_tunes_model_arguments_beside_the_fixed_ones(tiny_tree, tmp_path, capsys):
    space = {"model_kwargs.dropout": {"type": "float", "low": 0.1, "high": 0.3},
             "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}
    fixed = TrainConfig(model="baseline", data=str(tiny_tree), epochs=1, train_size=30, val_size=15,
                        precision="fp32", model_kwargs={"keras_init": False})
    result = tune(fixed, tmp_path / "study", trials=2, space=space, pruner="none", verbose=False)
    assert result.ran == [0, 1]
    study = optuna.load_study(study_name=result.study_name, storage=result.storage)
    for trial in study.get_trials():
        config = json.loads((tmp_path / "study" / "trials" / f"trial_{trial.number:04d}" / "config.json")
                            .read_text())["config"]
        assert config["model_kwargs"] == {"keras_init": False, "dropout": trial.params["model_kwargs.dropout"]}
        assert 0.1 <= config["model_kwargs"]["dropout"] <= 0.3 and config["lr"] == trial.params["lr"]
    assert main(["train", "--from-study", str(tmp_path / "study"), "--out", str(tmp_path / "final")]) == 0
    config = json.loads((tmp_path / "final" / "config.json").read_text())["config"]
    assert config["model_kwargs"] == {"keras_init": False, "dropout": study.best_trial.params["model_kwargs.dropout"]}


def test_the_default_space_has_dropout_only_where_the_model_has_it():
    assert set(default_space(TrainConfig(model="baseline"))) == {"lr", "weight_decay", "batch_size", "label_smoothing",
                                                                "augment", "dropout"}
    space = default_space(TrainConfig(model="resnet20"))
    assert "dropout" not in space and space["lr"].low == pytest.approx(0.01) and space["lr"].log


def _laughs(levels: int = 9) -> str:
    """A "billion laughs" under the alias cap: 9 levels of 9 aliases expand to 9**9 strings."""
    lines = ["l0: &l0 [ha, ha, ha, ha, ha, ha, ha, ha, ha]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nlr: {{type: categorical, choices: *l{levels - 1}}}\n"


@pytest.mark.parametrize("content, problem", [
    ("lr: {type: float, low: 0.001, high: 0.1}\n# caf\xe9\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9"),
    (("lr: " + "[" * 20_000 + "]" * 20_000 + "\n").encode(), "nested more than 100 levels deep"),
    (("lr:\n" + "- " * 20_000 + "x\n").encode(), "nested more than 100 levels deep"),
    (_laughs().encode(), "expands to more than 100,000 values through its YAML aliases"),
], ids=["latin-1", "20000-deep", "20000-deep-block", "billion-laughs"])
def test_a_hostile_space_file_is_one_line_naming_it_and_fast(tiny_tree, tmp_path, capsys, content, problem):
    path = tmp_path / "space.yaml"
    path.write_bytes(content)
    start = time.perf_counter()
    with pytest.raises(CifarlabError, match=re.escape(problem)):
        load_space(path)
    assert time.perf_counter() - start < 2  # the same reader as --config files, within its bounds
    assert main(["tune", "--model", "baseline", "--trials", "1", "--data", str(tiny_tree), "--space", str(path),
                 "--out", str(tmp_path / "t"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and problem in err and len(err) < 500, err


TAMPER = {  # SQL on a copy of a study's storage, as a damaged or foreign one would hold it
    "categorical index out of range": "UPDATE trial_params SET param_value = 99 WHERE param_name = 'batch_size'",
    "unknown distribution": "UPDATE trial_params SET distribution_json = "
                            "'{\"name\": \"NormalDistribution\", \"attributes\": {}}' WHERE param_name = 'lr'",
    "base config not a mapping": "UPDATE study_user_attributes SET value_json = '[1, 2]' WHERE key = 'base_config'",
}


@pytest.mark.parametrize("damage", list(TAMPER))
def test_a_tampered_study_is_one_line_naming_it(study_dir, tiny_tree, tmp_path, capsys, damage):
    import shutil
    import sqlite3

    out, result = study_dir
    copy = tmp_path / "study"
    copy.mkdir()
    shutil.copy(out / "study.db", copy / "study.db")
    with contextlib.closing(sqlite3.connect(copy / "study.db")) as db:
        db.execute(TAMPER[damage])
        db.commit()
    assert main(["train", "--from-study", str(copy), "--out", str(tmp_path / "final")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"study {result.study_name}" in err, err
    assert not (tmp_path / "final").exists()
    if damage != "base config not a mapping":  # tune reads the trials, not the fixed settings, to go on
        (tmp_path / "space.yaml").write_text(json.dumps(SPACE))
        assert main(["tune", "--model", "baseline", "--trials", "4", "--data", str(tiny_tree), "--space",
                     str(tmp_path / "space.yaml"), "--out", str(copy), *TINY]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"study {result.study_name}" in err and "cannot be read" in err, err


def test_sigterm_fails_the_running_trial_as_ctrl_c_does(tiny_tree, tmp_path):
    out = tmp_path / "t"
    (tmp_path / "space.yaml").write_text(json.dumps(SPACE))
    cmd = [sys.executable, "-m", "cifarlab", "tune", "--model", "baseline", "--trials", "2", "--data", str(tiny_tree),
           "--space", str(tmp_path / "space.yaml"), "--pruner", "none", "--out", str(out), "--epochs", "10000",
           "--train-size", "30", "--val-size", "15", "--precision", "fp32"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    trial = out / "trials" / "trial_0000"
    deadline = time.time() + 120
    while not (trial / "metrics.jsonl").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "cifarlab: interrupted (SIGTERM)" in stderr and "Traceback" not in stderr, stderr
    assert "interrupted: trial 0 marked failed; run the same command again" in stdout, stdout
    [t] = optuna.load_study(study_name="cifarlab-baseline", storage=f"sqlite:///{out / 'study.db'}").get_trials()
    assert t.state == optuna.trial.TrialState.FAIL
    assert not (trial / ".cifarlab.lock").exists()


def test_parse_vary_types_values_by_field():
    assert parse_vary("augment=none,keras,standard+cutout") == ("augment", ["none", "keras", "standard+cutout"])
    assert parse_vary("lr=0.1, 0.01") == ("lr", [0.1, 0.01])
    assert parse_vary("early-stopping=none,2") == ("early_stopping", [None, 2])
    assert parse_vary("nesterov=true,false") == ("nesterov", [True, False])
    for bad, problem in (("speed=1,2", "not a training setting"), ("epochs=two", "not a valid int"),
                         ("augment", "FIELD=V1,V2"), ("lr=0.1,0.1", "repeated")):
        with pytest.raises(CifarlabError, match=problem):
            parse_vary(bad)
    with pytest.raises(CifarlabError, match="unknown augment='warp'"):
        ablate("baseline", "augment=none,warp", "/nonexistent/never-written")


def test_ablate_writes_its_table_and_plot(tiny_tree, tmp_path, capsys):
    assert main(["ablate", "--model", "baseline", "--vary", "augment=none,standard", "--seeds", "0,1",
                 "--data", str(tiny_tree), "--batch-size", "16", "--out", str(tmp_path / "abl"), *TINY]) == 0
    out = tmp_path / "abl"
    for name in ("ablation.csv", "ablation.md", "ablation.json", "ablation.png", "learning_curves.png"):
        assert (out / name).stat().st_size > 0, name
    with open(out / "ablation.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["value"] for r in rows] == ["none", "standard"] and rows[0]["seeds"] == "0 1"
    assert {"val_accuracy_mean", "val_accuracy_std", "test_accuracy_mean", "test_accuracy_std"} <= set(rows[0])
    md = (out / "ablation.md").read_text()
    assert "± " in md and "mean ± std over 2 seeds" in md and "| standard |" in md
    assert (out / "runs" / "augment-standard-seed1" / "summary.json").exists()
    assert "Ablation of augment" in capsys.readouterr().out


class PruneEverything(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_a_trial_is_never_pruned_after_its_last_epoch_and_each_says_where_the_study_stands(tiny_tree, tmp_path,
                                                                                           capsys):
    # Pruning after the last epoch saves nothing and throws the result away: those trials complete.
    result = tune(base(tiny_tree), tmp_path / "t", trials=2, space=SPACE, pruner=PruneEverything(), epochs=1)
    assert [r["state"] for r in result.rows] == ["COMPLETE", "COMPLETE"] and result.pruned_epochs_saved == 0
    out = capsys.readouterr().out
    assert "trial 0 (1 of 2): val acc" in out and "trial 1 (2 of 2): val acc" in out
    assert re.search(r"trial 1 \(2 of 2\).*best so far: trial \d, val acc [01]\.\d{4}", out)
    assert "no trial was pruned" in (tmp_path / "t" / "trials.md").read_text()


def test_the_median_pruner_can_stop_a_two_epoch_trial_after_its_first_epoch():
    from cifarlab.tuning.study import make_pruner

    assert make_pruner("median", 2)._n_warmup_steps == 1 and make_pruner("median", 10)._n_warmup_steps == 2


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_a_study_db_that_is_a_link_or_not_a_file_is_refused_and_nothing_is_written_through_it(tiny_tree, tmp_path,
                                                                                               capsys, kind):
    out = tmp_path / "t"
    out.mkdir()
    outside = tmp_path / "elsewhere.db"
    outside.write_bytes(b"the user's file\n")
    if kind == "link":
        (out / "study.db").symlink_to(outside)
    else:
        os.mkfifo(out / "study.db")
    assert main(["tune", "--model", "baseline", "--trials", "1", "--data", str(tiny_tree), "--out", str(out),
                 *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out / "study.db") in err and "--storage" in err, err
    assert outside.read_bytes() == b"the user's file\n"
