"""The shared training step and epoch (training/loop.py): lr-find trains the run train() would (its
classes, label fraction, transfer set-up and recipe), and every epoch records its per-step loss curve."""
from __future__ import annotations

import base64
import json
import math

import pytest
import torch

import cifarlab
from cifarlab.data import load_data
from cifarlab.data.subsets import select_classes
from cifarlab.models.airbench import AirbenchNet
from cifarlab.training import build
from cifarlab.training.loop import _window_means, loss_every
from cifarlab.training.resolve import resolve

LR = dict(model="baseline", val_size=6, batch_size=8, precision="fp32", steps=6, verbose=False)


def test_lr_find_trains_on_the_runs_classes_and_label_fraction(tiny_tree, tmp_path):
    r = cifarlab.lr_find(**LR, data=str(tiny_tree), classes=["frog", "cat"], label_fraction=0.5, out=tmp_path / "lr")
    info = json.loads(r.json.read_text())
    settings = {k: v for k, v in LR.items() if k not in ("steps", "verbose")}
    cfg = resolve(cifarlab.TrainConfig(**settings, data=str(tiny_tree), classes=["frog", "cat"], label_fraction=0.5))
    fit_set, _ = build.training_split(select_classes(load_data(cfg.data), cfg.classes), cfg)
    assert info["classes"] == ["frog", "cat"]
    assert info["train_images"] == len(fit_set) < 2 * 20 / 2 + 1  # half of the two classes' training images
    assert set(fit_set.labels.tolist()) == {0, 1}


def test_lr_find_applies_the_transfer_set_up(trained_run, train_tree, tmp_path, capsys):
    cifarlab.lr_find(model="baseline", data=str(train_tree), val_size=30, batch_size=32, precision="fp32", steps=5,
                     init_from=str(trained_run), freeze="backbone", out=tmp_path / "lr")
    out = capsys.readouterr().out
    assert f"init from {trained_run}" in out and "freezing:" in out


def test_lr_find_on_the_fast_recipe_uses_airbench_and_its_whitening_init(train_tree, tmp_path, monkeypatch):
    calls = []
    original = AirbenchNet.initialize_from_data
    monkeypatch.setattr(AirbenchNet, "initialize_from_data", lambda self, x: calls.append(len(x)) or original(self, x))
    r = cifarlab.lr_find(recipe="fast", data=str(train_tree), batch_size=50, steps=5, out=tmp_path / "lr",
                         verbose=False)
    info = json.loads(r.json.read_text())
    assert info["model"] == "airbench" and info["config"]["recipe"] == "fast"
    assert calls == [info["train_images"]]  # the whitening saw the training images, as in train()


def test_epochs_record_their_per_step_loss(train_tree, tmp_path):
    result = cifarlab.train(model="baseline", data=str(train_tree), val_size=30, train_size=96, batch_size=32,
                            epochs=2, precision="fp32", verbose=False, out=str(tmp_path / "run"))
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines == json.loads(json.dumps(result.history))
    for epoch, record in enumerate(lines):
        assert record["steps_per_epoch"] == 3
        steps = [s for s, _ in record["train_loss_steps"]]
        assert steps == [3 * epoch + 1, 3 * epoch + 2, 3 * epoch + 3]  # K = 1: 6 steps is far fewer than 300
        losses = [v for _, v in record["train_loss_steps"]]
        assert all(math.isfinite(v) for v in losses)
        assert sum(losses) / 3 == pytest.approx(record["train_loss"], rel=1e-5)  # equal batches: the mean
    # the result shows itself: one line in a terminal, numbers and curves in a notebook
    assert repr(result) == (f"TrainResult(baseline, 2/2 epochs, test accuracy {result.summary['test_accuracy']:.4f}, "
                            f"run_dir={str(tmp_path / 'run')!r})")
    page = result._repr_html_()
    assert "<table>" in page and "test accuracy" in page and str(tmp_path / "run") in page
    png = base64.b64decode(page.split("data:image/png;base64,")[1].split("'")[0])
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_loss_windows_keep_about_300_points_and_cover_every_step():
    assert loss_every(10) == 1 and loss_every(300) == 1 and loss_every(30_000) == 100 and loss_every(0) == 1
    # cumulative (step, summed loss, images) marks every 2 steps and at the epoch's end (step 5)
    marks = [(2, torch.tensor(6.0), 4), (4, torch.tensor(10.0), 8), (5, torch.tensor(10.5), 9)]
    assert _window_means(marks) == [[2, 1.5], [4, 1.0], [5, 0.5]]
    assert _window_means([]) == []
