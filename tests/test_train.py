"""Training end to end on synthetic data: the run directory, resume, evaluate and predict."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

import cifarlab
from cifarlab.training import rundir
from crash_helper import train_until_killed

RUN_KW = dict(model="baseline", data=None, val_size=30, precision="fp32", verbose=False)


def test_one_epoch_run_writes_a_complete_run_directory(train_tree, tmp_path):
    result = cifarlab.train(**{**RUN_KW, "data": str(train_tree)}, epochs=1, train_size=256 - 30,
                            out=str(tmp_path / "run"), command="cifarlab train (test)")
    run = result.run_dir
    for name in ("config.json", "metrics.jsonl", "summary.json", "model.safetensors", "command.txt"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "epoch_001" / "state.json").is_file()
    assert (run / "checkpoints" / "epoch_001" / "state.safetensors").is_file()
    summary = json.loads((run / "summary.json").read_text())
    for key in ("model", "epochs", "params", "test_accuracy", "test_loss", "val_accuracy", "train_seconds",
                "images_per_second", "inference_images_per_second", "versions", "command"):
        assert summary[key] is not None, key
    assert summary["params"] == 1_250_858 - 7 * 513  # 3 classes, not 10
    assert summary["epochs"] == 1 and 0 <= summary["test_accuracy"] <= 1
    assert summary["command"] == "cifarlab train (test)" and "torch" in summary["versions"]
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["lr"] == 1e-3 and config["config"]["optimizer"] == "adam"  # the Keras recipe
    assert config["classes"] == ["cat", "dog", "frog"]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["epoch"] == 1
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["classes"]) == ["cat", "dog", "frog"]


def test_training_learns_the_synthetic_task(trained_run):
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.8  # three well-separated classes


def test_same_seed_same_result(train_tree, tmp_path):
    runs = [cifarlab.train(**{**RUN_KW, "data": str(train_tree)}, epochs=1, seed=7, out=str(tmp_path / f"r{i}"))
            for i in range(2)]
    assert runs[0].history[0]["train_loss"] == runs[1].history[0]["train_loss"]
    assert runs[0].summary["test_loss"] == runs[1].summary["test_loss"]


def test_resume_after_a_crash_matches_an_uninterrupted_run(train_tree, tmp_path, monkeypatch):
    kw = {**RUN_KW, "data": str(train_tree), "epochs": 3, "seed": 1}
    reference = cifarlab.train(**kw, out=str(tmp_path / "full"))
    train_until_killed(monkeypatch, 2, **kw, out=str(tmp_path / "cut"))  # before metrics.jsonl gets epoch 2
    assert not (tmp_path / "cut" / "summary.json").exists()

    resumed = cifarlab.train(resume=tmp_path / "cut", verbose=False)
    assert resumed.summary["test_loss"] == reference.summary["test_loss"]
    assert resumed.summary["test_accuracy"] == reference.summary["test_accuracy"]
    timing = ("epoch_seconds", "images_per_second")
    strip = [{k: v for k, v in h.items() if k not in timing} for h in reference.history]
    assert [{k: v for k, v in h.items() if k not in timing} for h in resumed.history] == strip
    metrics = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(m)["epoch"] for m in metrics] == [1, 2, 3]


def test_resume_after_kill_9(train_tree, tmp_path):
    """A real SIGKILL in the middle of training; the resumed run finishes all its epochs."""
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "cifarlab", "train", "--model", "baseline", "--data", str(train_tree),
           "--val-size", "30", "--epochs", "40", "--precision", "fp32", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while rundir.latest_checkpoint(out) is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = int(rundir.latest_checkpoint(out).name.split("_")[1])
    assert done_before < 40 and not (out / "summary.json").exists()
    # A temporary .epoch_NNN.tmp may remain after the kill; it is never read, and the next checkpoint removes it.
    result = subprocess.run([sys.executable, "-m", "cifarlab", "train", "--resume", str(out), "--epochs", "3"]
                            if done_before < 3 else
                            [sys.executable, "-m", "cifarlab", "train", "--resume", str(out), "--epochs",
                             str(done_before + 1)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not list((out / "checkpoints").glob(".*.tmp"))
    summary = json.loads((out / "summary.json").read_text())
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(1, summary["epochs"] + 1))


def test_evaluate_matches_the_summary(trained_run):
    summary = json.loads((trained_run / "summary.json").read_text())
    result = cifarlab.evaluate(trained_run, precision="fp32")
    assert result["images"] == 60
    assert result["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert result["loss"] == pytest.approx(summary["test_loss"], rel=1e-5)


def test_evaluate_on_the_validation_split(trained_run):
    assert cifarlab.evaluate(trained_run, split="val")["images"] == 30


def test_predict_accepts_any_size_and_mode(trained_run, tmp_path):
    files = []
    for i, (mode, size) in enumerate([("RGBA", (100, 60)), ("L", (32, 32)), ("RGB", (7, 300)), ("P", (50, 50))]):
        path = tmp_path / f"img{i}.png" if mode != "RGB" else tmp_path / f"img{i}.jpg"
        Image.new(mode, size).save(path)
        files.append(path)
    results = cifarlab.predict(trained_run, files, top_k=2)
    assert [r["image"] for r in results] == [str(f) for f in files]
    for r in results:
        probs = [p["probability"] for p in r["predictions"]]
        assert len(probs) == 2 and probs[0] >= probs[1] and sum(probs) <= 1 + 1e-6
        assert {p["class"] for p in r["predictions"]} <= {"cat", "dog", "frog"}


def test_predict_recognizes_its_training_classes(trained_run, train_tree):
    files = [sorted((train_tree / "test" / c).iterdir())[0] for c in ("cat", "dog", "frog")]
    top = [r["predictions"][0]["class"] for r in cifarlab.predict(trained_run, files, top_k=1)]
    assert top == ["cat", "dog", "frog"]


def test_a_failure_before_the_first_epoch_leaves_no_run_directory(train_tree, tmp_path, monkeypatch):
    from cifarlab.training import engine

    monkeypatch.setattr(engine.F, "cross_entropy", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        cifarlab.train(**{**RUN_KW, "data": str(train_tree)}, epochs=1, out=str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()


def test_checkpoints_keep_only_the_latest_epoch(trained_run):
    assert [p.name for p in (trained_run / "checkpoints").iterdir()] == ["epoch_002"]


def test_loaded_model_matches_the_trained_one(trained_run):
    run = cifarlab.load_run(trained_run, device="cpu")
    model = run.model
    assert run.classes == ["cat", "dog", "frog"] and not model.training
    x = np.zeros((1, 32, 32, 3), np.uint8)
    import torch

    from cifarlab.training.inference import predict_logits
    out = predict_logits(model, x, device=torch.device("cpu"))
    assert out.shape == (1, 3) and torch.isfinite(out).all()
