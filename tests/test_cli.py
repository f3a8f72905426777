"""The command line: every user error is one line on stderr, a non-zero exit and no traceback."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cifarlab.cli import main
from cifarlab.training.resolve import resolve


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifarlab", *args], capture_output=True, text=True, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_help_and_version():
    assert run_cli("--help").returncode == 0
    assert "cifarlab 0.1.0" in run_cli("--version").stdout


@pytest.mark.parametrize("args, fragments", [
    (["train", "--lr", "abc"], ["--lr", "invalid float value"]),
    (["train", "--optimizer", "rmsprop"], ["--optimizer", "invalid choice"]),
    (["train", "--model", "nonet", "--data", "x"], ["unknown --model 'nonet'", "baseline"]),
    (["train", "--epochs", "0"], ["--epochs must be in (0, 1000000], got 0"]),
    (["train", "--precision", "fp16", "--device", "cpu"], ["fp16 needs a GPU"]),
    (["train", "--device", "tpu"], ["unknown --device 'tpu'"]),
    (["train", "--data", "/no/such/folder", "--epochs", "1"], ["data path not found: /no/such/folder"]),
    (["evaluate", "/no/such/run"], ["run directory not found: /no/such/run"]),
    (["predict", "/no/such/run", "x.png"], ["image not found: x.png"]),
    (["nosuchcommand"], ["invalid choice"]),
])
def test_user_errors_are_one_line(args, fragments):
    assert_one_line_error(run_cli(*args), *fragments)


def test_unknown_model_fails_before_loading_data(capsys):
    assert main(["train", "--model", "nonet"]) == 2
    assert "unknown --model" in capsys.readouterr().err


def test_existing_run_directory_is_not_overwritten(trained_run, train_tree, capsys):
    code = main(["train", "--data", str(train_tree), "--out", str(trained_run), "--epochs", "1"])
    assert code == 2
    assert "already exists" in capsys.readouterr().err
    assert (trained_run / "summary.json").exists()


def test_resume_refuses_other_flags(trained_run, capsys):
    assert main(["train", "--resume", str(trained_run), "--lr", "0.5"]) == 2
    assert "only --epochs may change" in capsys.readouterr().err


def test_evaluate_without_weights(tmp_path, trained_run, capsys):
    run = tmp_path / "empty-run"
    run.mkdir()
    (run / "config.json").write_text((trained_run / "config.json").read_text())
    assert main(["evaluate", str(run)]) == 2
    assert "no trained weights" in capsys.readouterr().err


def test_evaluate_with_data_of_other_classes(trained_run, tmp_path, capsys):
    from conftest import write_image_tree

    other = write_image_tree(tmp_path / "other", n_train=3, n_test=2, classes=["a", "b", "c"])
    assert main(["evaluate", str(trained_run), "--data", str(other)]) == 2
    assert "differ from the run's" in capsys.readouterr().err


def test_not_a_run_directory(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a cifarlab run directory" in capsys.readouterr().err


def test_corrupt_image_through_the_cli(train_tree, tmp_path):
    import shutil

    root = shutil.copytree(train_tree, tmp_path / "data")
    (root / "train" / "cat" / "bad.png").write_bytes(b"junk")
    proc = run_cli("train", "--data", str(root), "--epochs", "1", "--out", str(tmp_path / "run"))
    assert_one_line_error(proc, "cannot read", "bad.png")
    assert not (tmp_path / "run").exists()


def test_evaluate_and_predict_json(trained_run, train_tree, capsys):
    assert main(["evaluate", str(trained_run), "--json", "--precision", "fp32"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "test" and 0 <= result["accuracy"] <= 1
    image = next((train_tree / "test" / "dog").iterdir())
    assert main(["predict", str(trained_run), str(image), "--top-k", "3", "--json"]) == 0
    (pred,) = json.loads(capsys.readouterr().out)
    assert len(pred["predictions"]) == 3


def test_config_file_sets_defaults_and_flags_override(train_tree, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 1\nlr: 0.01\nbatch-size: 32\nval_size: 30\nprecision: fp32\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--lr", "0.002", "--data", str(train_tree), "--out", str(out),
                 "--quiet"]) == 0
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["lr"] == 0.002 and saved["batch_size"] == 32 and saved["epochs"] == 1


@pytest.mark.parametrize("text, fragment", [("lr: [1\n", "cannot read config file"),
                                            ("learning_rate: 0.1\n", "unknown setting(s) learning_rate"),
                                            ("- 1\n- 2\n", "must hold a mapping")])
def test_bad_config_file(tmp_path, text, fragment, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and str(cfg) in err


def test_models_lists_the_registry(capsys):
    from cifarlab.models import list_models

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in list_models())
    assert "1,250,858" in out


def test_cifar_stem_is_a_model_argument_of_external_models():
    from cifarlab.config import TrainConfig
    from cifarlab.errors import CifarlabError

    assert resolve(TrainConfig(model="tv:resnet18", cifar_stem=True)).model_kwargs == {"cifar_stem": True}
    with pytest.raises(CifarlabError, match="cifar_stem adapts tv:NAME and timm:NAME models"):
        resolve(TrainConfig(model="resnet20", cifar_stem=True))


def test_train_a_torchvision_model_with_a_cifar_stem(train_tree, tmp_path):
    out = tmp_path / "tv"
    assert main(["train", "--model", "tv:resnet18", "--cifar-stem", "--epochs", "1", "--data", str(train_tree),
                 "--val-size", "30", "--train-size", "64", "--batch-size", "32", "--precision", "fp32",
                 "--out", str(out), "--quiet"]) == 0
    import cifarlab

    run = cifarlab.load_run(out, device="cpu")
    model = run.model
    assert run.config.model_kwargs == {"cifar_stem": True}
    assert model.get_submodule(model.default_cfg["first_conv"]).stride == (1, 1)
