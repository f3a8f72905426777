"""Bad configs, bad flags, unwritable outputs and two commands on one run directory: each a one-line error
(exit 2, no traceback, nothing half-written). The Hypothesis tests at the end search for the cases nobody
thought of: generated configs and flag values must either work or fail with the project's own error."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cifarlab._flags import config_from_flags
from cifarlab.cli import build_parser, main
from cifarlab.config import TrainConfig, field_problem, load_yaml_config
from cifarlab.errors import CifarlabError
from conftest import one_line_error

SRC = str(Path(__file__).resolve().parents[1] / "src")


# --- config files ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, fragments", [
    ('epochs: "two"', ["epochs must be a whole number, got 'two'"]),
    ('lr: "0.01"', ["lr must be a number, got '0.01'", "remove the quotes"]),
    ("epochs: 1.5", ["epochs must be a whole number, got 1.5"]),
    ("epochs: 0", ["epochs must be in (0, 1000000], got 0"]),
    ("seed: -1", ["seed must be in [0, 4294967295], got -1"]),
    ("momentum: 1.5", ["momentum must be in [0, 1), got 1.5"]),
    ("lr: .nan", ["lr must be a finite number"]),
    ("nesterov: 1", ["nesterov must be true or false, got 1"]),
    ("model: 7", ["model must be text, got 7"]),
    ("classes: [cat, 3]", ["classes must be a list of names"]),
    ('model_kwargs: "abc"', ["model_kwargs must be a mapping of names to values, got 'abc'"]),
    ("model_kwargs: {width: 7}", ["model baseline has no argument width", "it takes: dropout"]),
    ("model: resnet20\nmodel_kwargs: {num_classes: 3}", ["num_classes is set from the data's classes"]),
    ("data: 2024-01-01", ["data must be text, got datetime.date"]),
    ("epochs: 2\nbogus: 1", ["unknown setting(s) bogus"]),
    ("- epochs\n- 2", ["must hold a mapping of settings, not a list"]),
    ("just text", ["must hold a mapping of settings, not text"]),
    ("1: 2", ["setting names are text, got 1"]),
    ("epochs: [", ["cannot read config file"]),
])
def test_bad_config_files_are_one_line_errors_naming_file_and_field(text, fragments, tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text(text + "\n")
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    one_line_error(capsys, str(path), *fragments)
    assert not (tmp_path / "run").exists()


def test_config_file_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("model: caf\xe9\n".encode("latin-1"))
    assert main(["train", "--config", str(path)]) == 2
    one_line_error(capsys, str(path), "is not UTF-8 text", "0xe9")


def test_yaml_alias_bomb_is_refused(tmp_path, capsys):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]  # 10**12 leaves
    path = _write(tmp_path / "bomb.yaml", "\n".join(lines) + "\nmodel_kwargs: {x: *a11}\n")
    assert main(["train", "--config", str(path), "--model", "tv:resnet18"]) == 2
    one_line_error(capsys, str(path), "111 YAML aliases", "at most 100")
    anchors = _write(tmp_path / "anchors.yaml", "lr: &lr 0.05\nl2: *lr\n")
    assert load_yaml_config(anchors) == {"lr": 0.05, "l2": 0.05}


def test_good_config_values_load_and_1e_minus_3_is_a_number(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("lr: 1e-3\nweight-decay: 5.0e-4\nepochs: 3\nclasses: cat,dog\nmodel: resnet20\n"
                    "model_kwargs: {shortcut: B}\nnesterov: false\n")
    values = load_yaml_config(path)
    assert values["lr"] == 0.001 and values["weight_decay"] == 0.0005
    cfg = resolve(TrainConfig.from_dict(values, source=str(path)))
    assert cfg.classes == ["cat", "dog"] and cfg.model_kwargs == {"shortcut": "B"}
    assert load_yaml_config(_write(tmp_path / "empty.yaml", "# nothing\n")) == {}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_every_field_has_a_type_check_derived_from_its_declaration():
    import dataclasses

    for f in dataclasses.fields(TrainConfig):
        assert field_problem(f.name, object()) is not None, f.name
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert field_problem(f.name, default) is None, f.name


@pytest.mark.parametrize("text, flags, problem", [
    ("model: resnet20\nmodel_kwargs: {shortcut: 7}\n", [], "model_kwargs for resnet20: shortcut must be 'A' or 'B'"),
    ("model_kwargs: {activation: tanh}\n", ["--recipe", "fast"], "model_kwargs activation: no activation 'tanh'"),
    ("model_kwargs: {bn_momentum: 1.5}\n", ["--recipe", "fast"], "bn_momentum must be a number in [0, 1)"),
])
def test_model_kwargs_of_a_bad_value_fail_before_the_data_is_read_naming_the_file(tmp_path, capsys, text, flags,
                                                                                  problem):
    cfg = _write(tmp_path / "cfg.yaml", text)
    assert main(["train", "--config", str(cfg), *flags, "--data", str(tmp_path / "no-data"), "--epochs", "1",
                 "--out", str(tmp_path / "run")]) == 2
    one_line_error(capsys, str(cfg), problem)  # the model's error, not the missing data's: it comes first
    assert not (tmp_path / "run").exists()


def test_config_model_kwargs_are_checked_against_the_recipes_model(tmp_path, capsys):
    """A --config file without `model` under --recipe fast holds airbench's arguments (freeze_out), not the
    default model's: the check must look at the recipe's model, from the flag or the file."""
    cfg = _write(tmp_path / "fast.yaml", "model_kwargs: {freeze_out: {block1: 0.75}}\n")
    args = build_parser().parse_args(["train", "--recipe", "fast", "--config", str(cfg)])
    assert resolve(config_from_flags(args)).model_kwargs == {"freeze_out": {"block1": 0.75}}
    in_file = _write(tmp_path / "in_file.yaml", "recipe: fast\nmodel_kwargs: {freeze_out: {block1: 0.75}}\n")
    from_file = config_from_flags(build_parser().parse_args(["train", "--config", str(in_file)]))
    assert resolve(from_file).model == "airbench"
    assert main(["train", "--config", str(cfg), "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    one_line_error(capsys, "fast.yaml", "model baseline has no argument freeze_out")


@pytest.mark.parametrize("config, fragment", [
    ({"config": {"model": "baseline", "epochs": "two"}, "classes": ["a", "b"]}, "epochs must be a whole number"),
    ({"config": {"model": "baseline", "bogus": 1}, "classes": ["a", "b"]}, "unknown setting(s) bogus"),
    ([1, 2, 3], "is not a cifarlab run config"),
    ({"config": "baseline", "classes": ["a"]}, "is not a cifarlab run config"),
])
def test_bad_config_json_of_a_run_directory(config, fragment, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config))
    assert main(["evaluate", str(run)]) == 2
    one_line_error(capsys, str(run / "config.json"), fragment)


# --- flags ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, fragment", [
    (["train", "--seed", "-1"], "--seed must be in [0, 4294967295], got -1"),
    (["train", "--seed", "4294967296"], "--seed must be in [0, 4294967295], got 4294967296"),
    (["train", "--momentum", "-1"], "--momentum must be in [0, 1), got -1"),
    (["train", "--warmup-epochs", "-2"], "--warmup-epochs must be >= 0, got -2"),
    (["train", "--lr", "-0.1"], "--lr must be > 0"),
    (["train", "--lr", "inf"], "--lr must be a finite number"),
    (["train", "--batch-size", "-8"], "--batch-size must be > 0"),
    (["train", "--epochs", "-1"], "--epochs must be in (0, 1000000], got -1"),
    (["train", "--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
    (["train", "--val-size", "-1"], "--val-size must be >= 0"),
    (["train", "--input-size", "4"], "--input-size must be in [8, 1024]"),
    (["compare", "--models", "baseline", "--out", "x", "--seeds", "0,-1"], "--seeds takes comma-separated integers in"),
    (["predict", "run", "x.png", "--top-k", "0"], "--top-k must be >= 1, got 0"),
    (["embed", "run", "--seed", "-3"], "--seed must be in [0, 4294967295]"),
    (["augment-preview", "--augment", "standard", "--out", "x.png", "--n", "0"], "--n must be in [1, 1000]"),
    (["lr-find", "--out", "x", "--start", "0"], "--start must be > 0"),
    (["tune", "--trials", "0", "--out", "x"], "--trials must be >= 1"),
    (["explain", "run", "--image", "x.png", "--occlusion-window", "0"], "--occlusion-window must be in [1, 32]"),
    (["analyze", "run", "--label-check-folds", "1"], "--label-check-folds must be >= 2"),
    (["export", "run", "--opset", "-1"], "--opset must be >= 7"),
])
def test_out_of_range_flags_are_refused(argv, fragment, capsys):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse refused it while parsing
        code = e.code
    assert code == 2
    one_line_error(capsys, fragment)


@pytest.mark.parametrize("val_size, fragment", [
    (58, "--val-size 58 leaves 2 training images, fewer than the 3 classes (the train split has 60)"),
    (60, "--val-size 60 leaves no training images (the train split has 60)"),
    (2, "--val-size 2 is smaller than the number of classes (3)"),
])
def test_val_size_must_leave_a_training_image_per_class(val_size, fragment, tiny_tree, tmp_path, capsys):
    assert main(["train", "--data", str(tiny_tree), "--val-size", str(val_size), "--epochs", "1",
                 "--out", str(tmp_path / "run")]) == 2
    one_line_error(capsys, fragment)
    assert not (tmp_path / "run").exists()


# --- unwritable outputs ---------------------------------------------------------------------------------------

def test_unwritable_train_outputs_fail_first_naming_the_path(tmp_path, capsys):
    a_file = tmp_path / "afile.txt"
    a_file.write_text("keep me\n")
    cases = [(a_file, "it is a file, not a directory"), (a_file / "run", "Not a directory"),
             (Path("/proc/cifarlab-test/run"), "No such file or directory")]
    if Path("/sys/kernel").is_dir():  # sysfs refuses new directories even to root: a read-only parent
        cases.append((Path("/sys/cifarlab-test"), "not permitted"))
    for out, reason in cases:  # --data does not exist: the output is checked before the data is read
        assert main(["train", "--out", str(out), "--epochs", "1", "--data", str(tmp_path / "none")]) == 2
        one_line_error(capsys, str(out), reason)
    assert a_file.read_text() == "keep me\n" and sorted(p.name for p in tmp_path.iterdir()) == ["afile.txt"]


@pytest.mark.parametrize("argv", [
    ["augment-preview", "--augment", "standard", "--out", "{file}/x.png"],
    ["augment-preview", "--augment", "standard", "--out", "/proc/cifarlab-test.png"],
    ["compare", "--models", "baseline", "--epochs", "1", "--out", "{file}"],
    ["ablate", "--model", "baseline", "--vary", "augment=none", "--epochs", "1", "--out", "{file}/x"],
    ["tune", "--trials", "1", "--epochs", "1", "--out", "/proc/cifarlab-test"],
])
def test_unwritable_outputs_of_other_commands(argv, tiny_tree, tmp_path, capsys):
    a_file = tmp_path / "afile.txt"
    a_file.write_text("keep me\n")
    assert main([a.format(file=a_file) for a in argv] + ["--data", str(tiny_tree)]) == 2
    one_line_error(capsys, "cannot use", "/proc/" if "/proc/" in " ".join(argv) else str(a_file))
    assert a_file.read_text() == "keep me\n" and sorted(p.name for p in tmp_path.iterdir()) == ["afile.txt"]


def _refuse_writes_under(monkeypatch, folder: Path) -> None:
    """A read-only directory even for root (chmod does not stop root): creating anything in it fails."""
    import builtins
    import errno
    import tempfile

    folder = os.path.realpath(folder)

    def inside(path) -> bool:
        return os.path.realpath(os.path.dirname(os.path.abspath(path))).startswith(folder)

    def deny(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    real_open, real_mkdir, real_mkstemp, real_builtin_open = os.open, os.mkdir, tempfile.mkstemp, builtins.open
    monkeypatch.setattr(os, "open", lambda p, flags, *a, **k: deny(p) if flags & os.O_CREAT and inside(p)
                        else real_open(p, flags, *a, **k))
    monkeypatch.setattr(os, "mkdir", lambda p, *a, **k: deny(p) if inside(p) else real_mkdir(p, *a, **k))
    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, dir=None, **k: deny(dir) if dir and
                        os.path.realpath(dir).startswith(folder) else real_mkstemp(*a, dir=dir, **k))
    monkeypatch.setattr(builtins, "open", lambda p, mode="r", *a, **k: deny(p) if any(c in mode for c in "wax+")
                        and isinstance(p, str | os.PathLike) and inside(p) else real_builtin_open(p, mode, *a, **k))


@pytest.mark.parametrize("argv, written", [
    (["analyze", "{run}", "--robustness-images", "0"], "analysis"),
    (["report", "{run}"], "report.html"),
    (["train", "--resume", "{run}", "--epochs", "3"], None),
    (["explain", "{run}", "--samples-per-class", "1", "--no-trust"], "explain"),
])
def test_read_only_run_directory_is_a_one_line_error(argv, written, trained_run, tmp_path, monkeypatch, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    _refuse_writes_under(monkeypatch, run)
    assert main([a.format(run=run) for a in argv]) == 2
    one_line_error(capsys, str(run), "Read-only file system")
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def _can_mount_read_only() -> bool:
    import shutil

    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-rm", "sh", "-c", "mount --bind /tmp /tmp && mount -o remount,ro,bind /tmp"],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_mount_read_only(), reason="needs unshare -rm and bind mounts (a private mount namespace)")
@pytest.mark.parametrize("argv", [["analyze", "{run}", "--robustness-images", "0"], ["report", "{run}"],
                                  ["train", "--resume", "{run}", "--epochs", "3"]])
def test_really_read_only_run_directory(argv, trained_run, tmp_path):
    """A read-only bind mount of the run, in a mount namespace of its own: read-only even for root."""
    import shlex
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    command = shlex.join([sys.executable, "-m", "cifarlab", *[a.format(run=run) for a in argv]])
    where = shlex.quote(str(run))
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount --bind {where} {where} && mount -o remount,ro,bind "
                           f"{where} && exec {command}"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(run) in lines[0] and "Read-only file system" in lines[0]
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 555 directory anyway; the monkeypatched "
                                               "read-only test above covers it")
def test_chmod_read_only_run_directory(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    run.chmod(0o555)
    try:
        assert main(["report", str(run)]) == 2
        one_line_error(capsys, str(run), "Permission denied")
    finally:
        run.chmod(0o755)


# --- one writer per run directory -----------------------------------------------------------------------------

def _python(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cifarlab", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_overwrite_of_a_run_being_trained_is_refused_and_the_lock_dies_with_kill_9(train_tree, tmp_path):
    run = tmp_path / "run"
    holder = _python(  # a real training process that pauses after its first epoch
        "import cifarlab, time\n"
        f"cifarlab.train(model='baseline', epochs=3, data={str(train_tree)!r}, val_size=30, out={str(run)!r},\n"
        "               precision='fp32', verbose=False,\n"
        "               on_epoch_end=lambda r: (print('epoch', flush=True), time.sleep(120)))\n")
    try:
        assert holder.stdout.readline().strip() == "epoch", holder.stderr.read()
        for args in (["train", "--overwrite", "--out", str(run), "--data", str(train_tree), "--epochs", "1"],
                     ["train", "--resume", str(run)], ["report", str(run)]):
            proc = _cli(*args)
            assert proc.returncode == 2, proc.stderr
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and f"in use by another cifarlab process (pid {holder.pid}" in lines[0], lines
        assert (run / "config.json").exists() and (run / "checkpoints").is_dir()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    proc = _cli("train", "--resume", str(run), "--epochs", "2")  # the kernel dropped the dead process's lock
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run / "summary.json").read_text())["epochs_completed"] == 2
    assert not (run / ".cifarlab.lock").exists()


def test_two_trains_started_together_on_one_out(tiny_tree, tmp_path):
    run = tmp_path / "run"
    args = ["-m", "cifarlab", "train", "--data", str(tiny_tree), "--out", str(run), "--epochs", "2",
            "--val-size", "6", "--precision", "fp32", "--quiet"]
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, *args, "--seed", str(seed)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for seed in (1, 2)]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    assert len(loser.strip().splitlines()) == 1 and ("in use by another cifarlab process" in loser
                                                     or "already exists and is not empty" in loser), loser
    winner_seed = 1 if results[0][0] == 0 else 2
    config = json.loads((run / "config.json").read_text())["config"]
    summary = json.loads((run / "summary.json").read_text())
    assert config["seed"] == summary["seed"] == winner_seed  # one run's files, not a mix
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


def test_lock_refuses_a_second_process_and_names_its_pid(tmp_path):
    from cifarlab.rundir.lock import run_dir_lock

    run = tmp_path / "run"
    holder = _python(f"from cifarlab.rundir.lock import run_dir_lock\nimport time\n"
                     f"with run_dir_lock({str(run)!r}, 'the holder'):\n    print('held', flush=True)\n"
                     "    time.sleep(60)\n")
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = f"in use by another cifarlab process \\(pid {holder.pid}: the holder"
        with pytest.raises(CifarlabError, match=refused), run_dir_lock(run):
            pass
    finally:
        holder.kill()
        holder.wait()
    with run_dir_lock(run), run_dir_lock(run):  # free again (kill -9 left only a stale file), re-entrant
        assert (run / ".cifarlab.lock").read_text().startswith(f"{os.getpid()} ")
    assert run.is_dir() and not any(run.iterdir())  # the holder made it; the lock file goes with the lock
    fresh = tmp_path / "a" / "b"
    with run_dir_lock(fresh):
        assert fresh.is_dir()
    assert not (tmp_path / "a").exists()  # made for the lock and left empty: removed again


# --- Hypothesis: generated configs and flag values ------------------------------------------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cifarlab.training.resolve import resolve  # noqa: E402

EXAMPLES = int(os.environ.get("CIFARLAB_HYPOTHESIS_EXAMPLES", "25"))  # raise it for a longer search
FIELDS = sorted(TrainConfig.__dataclass_fields__)
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12) | st.sampled_from(["1e-3", "0.1", "-1", "sgd", "cosine", "baseline", "standard",
                                                     "none", "24:4", "cat,dog", "imagenet", "backbone", "2"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=3), max_leaves=6)
keys = st.sampled_from(FIELDS) | st.sampled_from([f.replace("_", "-") for f in FIELDS]) | st.text(max_size=10)


@settings(max_examples=6 * EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(keys, values, max_size=5) | values)
def test_generated_yaml_configs_load_or_raise_cifarlab_error(tmp_path, document):
    import yaml

    path = tmp_path / "generated.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    try:
        cfg = TrainConfig.from_dict(load_yaml_config(path), source=str(path))
        resolve(cfg)
    except CifarlabError as e:
        assert "\n" not in str(e)


@settings(max_examples=4 * EXAMPLES, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), values, max_size=4))
def test_generated_python_api_configs_resolve_or_raise_cifarlab_error(settings_):
    """cifarlab.train(**settings) in a notebook checks the same way (no YAML, no flags in between)."""
    try:
        resolve(TrainConfig(**settings_))
    except CifarlabError as e:
        assert "\n" not in str(e) or "\n" in repr(settings_)


def _subcommands() -> dict:
    from cifarlab.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    return sub.choices


class _Reached(Exception):
    """The command got past its argument checks to the real work (patched out)."""


def _stop(*args, **kwargs):
    raise _Reached


# The work each command hands its checked arguments to, patched to stop there. train-like commands stop later,
# at the device setup inside train(), after the whole TrainConfig (recipe, ranges, transfer) was validated.
_WORK = ["cifarlab.training.distributed.setup", "cifarlab.api.evaluate", "cifarlab.api.predict",
         "cifarlab.deploy.export", "cifarlab.analysis.analyze", "cifarlab.features.embed",
         "cifarlab.features.feature_maps", "cifarlab.features.first_layer_filters",
         "cifarlab.attribution.api.explain", "cifarlab.attribution.api.explain_gallery",
         "cifarlab.attribution.api.evaluate_explanations", "cifarlab.reporting.report", "cifarlab.webapp.serve",
         "cifarlab.augment.augment_preview", "cifarlab.training.lr_find", "cifarlab.tuning.tune",
         "cifarlab.experiments.compare", "cifarlab.experiments.ablate", "cifarlab.pipeline.run",
         "cifarlab.transfer.probe.linear_probe", "cifarlab.models.profile.describe_models",
         "cifarlab.transfer.zeroshot.zero_shot"]

flag_text = (st.integers(-2**40, 2**40).map(str) | st.floats().map(str) | st.text(max_size=8)
             | st.sampled_from(["0", "-1", "1", "0.5", "1e9", "nan", "-inf", "", "é", "4294967296", "65535"]))


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_generated_flag_values_pass_or_exit_2_with_one_line(command, trained_run, tmp_path, monkeypatch, capsys):
    import importlib

    for target in _WORK:
        module, _, name = target.rpartition(".")
        monkeypatch.setattr(importlib.import_module(module), name, _stop)
    monkeypatch.chdir(tmp_path)
    parser = _subcommands()[command]
    options = [a for a in parser._actions if a.option_strings and a.nargs != 0 and a.dest != "help"]
    positionals = {"run_dir": str(trained_run), "path": str(trained_run), "images": "img.png"}
    required = [a for a in options if a.required]

    has_config = any(a.dest == "config" for a in options)

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.lists(st.tuples(st.sampled_from(options), flag_text), max_size=3) if options else st.just([]),
           st.none() | st.dictionaries(keys, values, max_size=3) if has_config else st.none())
    def check(picked, config):
        import yaml

        argv = [command]
        if config is not None:  # a generated --config file under the flags: the merged path
            (tmp_path / "generated.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
            argv += [f"--config={tmp_path / 'generated.yaml'}"]
        argv += [positionals[a.dest] for a in parser._actions if not a.option_strings and a.dest in positionals]
        for action in required:
            argv += [action.option_strings[-1], "baseline" if action.dest in ("models", "model") else
                     "augment=none,standard" if action.dest == "vary" else "standard" if action.dest == "augment"
                     else "2" if action.dest == "trials" else str(tmp_path / "out")]
        for action, text in picked:  # --flag=VALUE (a value may start with "-"); -C takes -CVALUE
            flag = action.option_strings[-1]
            argv += [f"{flag}={text}" if flag.startswith("--") else f"{flag}{text}"]
        capsys.readouterr()
        try:
            code = main(argv)
        except _Reached:
            outcomes.append("reached")
            return
        except SystemExit as e:  # argparse refused a value
            code = e.code
        err = capsys.readouterr().err
        assert code == 2, (argv, code, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in err, (argv, err)
        outcomes.append("refused")

    outcomes: list[str] = []
    check()
    assert "reached" in outcomes, outcomes  # the search also got past the checks, not only refused



def test_run_takes_model_and_epochs_from_its_config_file(tmp_path, monkeypatch):
    import cifarlab.pipeline

    seen = {}
    monkeypatch.setattr(cifarlab.pipeline, "run", lambda data, out, **kw: seen.update(kw, data=data, out=out))
    cfg = _write(tmp_path / "run.yaml", "model: resnet20\nepochs: 1\ndata: here\nlr: 0.05\n")
    assert main(["run", "--config", str(cfg), "--epochs", "3"]) == 0  # a TypeError before: model given twice
    assert (seen["model"], seen["epochs"], seen["data"], seen["lr"]) == ("resnet20", 3, "here", 0.05)


def test_every_model_recipe_and_named_recipe_passes_the_declared_ranges():
    from cifarlab.models import list_models
    from cifarlab.recipes import list_recipes

    for model in list_models():
        resolve(TrainConfig(model=model))
    for recipe in list_recipes():
        resolve(TrainConfig(recipe=recipe))
