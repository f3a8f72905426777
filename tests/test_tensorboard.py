"""`train --tensorboard`: the events file holds the epoch and test metrics TensorBoard shows."""
from __future__ import annotations

import builtins

import pytest

import cifarlab
from cifarlab.cli import main

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_train_logs_epoch_and_test_scalars(train_tree, tmp_path):
    out = tmp_path / "run"
    result = cifarlab.train(model="baseline", data=str(train_tree), epochs=2, val_size=30, precision="fp32",
                            out=str(out), tensorboard=True, verbose=False)
    scalars = _scalars(out)
    for tag in ("loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr", "images_per_second"):
        assert [step for step, _ in scalars[tag]] == [1, 2], tag
    for record, (_, value) in zip(result.history, scalars["loss/val"]):
        assert value == pytest.approx(record["val_loss"], rel=1e-6)
    assert scalars["test/accuracy"] == [(2, pytest.approx(result.summary["test_accuracy"], rel=1e-6))]
    assert {"test/loss", "test/top3_accuracy"} <= set(scalars)


def test_without_the_flag_nothing_is_written(trained_run):
    assert not (trained_run / "tensorboard").exists()


def test_missing_tensorboard_is_one_line_and_writes_nothing(train_tree, tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith(("tensorboard.", "torch.utils.tensorboard")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    out = tmp_path / "never"
    code = main(["train", "--data", str(train_tree), "--epochs", "1", "--out", str(out), "--tensorboard"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--tensorboard needs the tensorboard package" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_resumed_run_continues_the_same_curves(train_tree, tmp_path):
    out = tmp_path / "run"
    kw = dict(model="baseline", data=str(train_tree), val_size=30, precision="fp32", verbose=False)
    cifarlab.train(**kw, epochs=1, out=str(out), tensorboard=True)
    cifarlab.train(resume=out, epochs=2, verbose=False)  # tensorboard=True comes from the saved config
    scalars = _scalars(out)
    assert [step for step, _ in scalars["loss/train"]] == [1, 2]
    assert [step for step, _ in scalars["test/accuracy"]] == [1, 2]  # the test after each completed train()
