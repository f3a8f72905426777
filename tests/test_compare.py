"""`cifarlab compare` end to end on tiny synthetic data with two small models."""
from __future__ import annotations

import csv
import json

import pytest

import cifarlab
from cifarlab.cli import main
from cifarlab.config import TrainConfig
from cifarlab.errors import CifarlabError

OUTPUTS = ["compare.csv", "compare.md", "compare.json", "accuracy_vs_time.png", "accuracy_vs_params.png",
           "learning_curves.png"]


def base(train_tree) -> TrainConfig:
    return TrainConfig(data=str(train_tree), epochs=1, val_size=30, precision="fp32", batch_size=64)


def test_compare_writes_every_output(train_tree, tmp_path):
    rows = cifarlab.compare(["baseline", "resnet20"], tmp_path / "cmp", seeds=[0, 1], base=base(train_tree),
                            verbose=False)
    for name in OUTPUTS:
        assert (tmp_path / "cmp" / name).stat().st_size > 0, name
    assert [r["model"] for r in rows] == ["baseline", "resnet20"]
    assert all(len(r["test_accuracy"]) == 2 and not r["error"] for r in rows)
    assert rows[1]["params"] == pytest.approx(269_722 - 7 * 65, rel=0.01)  # 3 classes
    with open(tmp_path / "cmp" / "compare.csv") as f:
        table = list(csv.DictReader(f))
    assert {"model", "params", "mflops", "test_accuracy_mean", "test_accuracy_std", "train_seconds_mean",
            "inference_images_per_second_mean", "val_accuracy_mean"} <= set(table[0])
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "± " in md and "resnet20" in md
    for model in ("baseline", "resnet20"):
        for seed in (0, 1):
            assert (tmp_path / "cmp" / "runs" / f"{model}-seed{seed}" / "model.safetensors").exists()


def test_a_failing_model_is_reported_and_the_others_run(train_tree, tmp_path, request):
    from cifarlab.models import MODELS, register_model

    def broken(num_classes=10, **kw):
        """always fails"""
        raise RuntimeError("CPU out of memory (simulated)")

    register_model(broken, name="broken_net")
    request.addfinalizer(lambda: MODELS.unregister("broken_net"))
    rows = cifarlab.compare(["broken_net", "baseline"], tmp_path / "cmp", base=base(train_tree), verbose=False)
    assert "out of memory" in rows[0]["error"] and not rows[0]["test_accuracy"]
    assert rows[1]["test_accuracy"] and not rows[1]["error"]
    assert "out of memory" in (tmp_path / "cmp" / "compare.md").read_text()


def test_same_recipe_gives_every_model_the_shared_settings(train_tree, tmp_path):
    cifarlab.compare(["baseline"], tmp_path / "cmp", same_recipe=True, base=base(train_tree), verbose=False)
    saved = json.loads((tmp_path / "cmp" / "runs" / "baseline-seed0" / "config.json").read_text())["config"]
    assert saved["optimizer"] == "sgd" and saved["batch_size"] == 64  # shared recipe, flags still win


def test_finished_runs_are_reused(train_tree, tmp_path, monkeypatch):
    cifarlab.compare(["baseline"], tmp_path / "cmp", base=base(train_tree), verbose=False)
    from cifarlab import training

    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("trained again"))
    cifarlab.compare(["baseline"], tmp_path / "cmp", base=base(train_tree), verbose=False)


def test_budget_stops_training_early(train_tree, tmp_path):
    rows = cifarlab.compare(["baseline"], tmp_path / "cmp", budget_minutes=0.02,
                            base=TrainConfig(data=str(train_tree), epochs=500, val_size=30, precision="fp32",
                                             batch_size=16), verbose=False)
    (summary_epochs,) = rows[0]["epochs"]
    assert summary_epochs < 500 and rows[0]["train_seconds"][0] < 10


def test_unknown_model_fails_before_training(tmp_path):
    with pytest.raises(CifarlabError, match="unknown model='nonet'"):
        cifarlab.compare(["baseline", "nonet"], tmp_path / "cmp")


def test_compare_cli(train_tree, tmp_path, capsys):
    code = main(["compare", "--models", "baseline", "--epochs", "1", "--data", str(train_tree), "--val-size", "30",
                 "--precision", "fp32", "--out", str(tmp_path / "cmp"), "--seeds", "0"])
    assert code == 0
    out = capsys.readouterr().out
    assert "# Model comparison" in out and "model 1 of 1: baseline seed 0" in out


def test_compare_cli_bad_seeds(capsys):
    with pytest.raises(SystemExit) as e:
        main(["compare", "--models", "baseline", "--out", "x", "--seeds", "a,b"])
    assert e.value.code == 2
    assert "--seeds takes comma-separated integers" in capsys.readouterr().err
