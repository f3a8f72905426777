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
from cifarlab.rundir import writer
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
    while writer.latest_checkpoint(out) is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = int(writer.latest_checkpoint(out).name.split("_")[1])
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


def test_sigterm_ends_training_as_ctrl_c_does(tiny_tree, tmp_path):
    """kill, a scheduler's stop: the message that says how to resume, the lock released, exit 128 + 15."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "cifarlab", "train", "--data", str(tiny_tree), "--val-size", "6", "--epochs",
           "10000", "--precision", "fp32", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    while writer.latest_checkpoint(out) is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert (out / writer.LOCK_NAME).exists()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert f"interrupted; continue with: cifarlab train --resume {out}" in stdout
    assert stderr.strip().splitlines()[-1] == "cifarlab: interrupted (SIGTERM)" and "Traceback" not in stderr
    assert not (out / writer.LOCK_NAME).exists()


@pytest.fixture
def thread_settings(monkeypatch):
    """configure() as a fresh process would start: no thread plan yet; torch's count restored afterwards."""
    import torch

    from cifarlab import _threads

    monkeypatch.setattr(_threads, "_plan", None)
    monkeypatch.setattr(_threads, "_governor", None)
    yield _threads
    torch.set_num_threads(1)


def test_resume_runs_with_the_threads_the_run_recorded(tiny_tree, tmp_path, capsys, thread_settings):
    import torch

    from cifarlab.cli import main

    out = tmp_path / "run"
    flags = ["--data", str(tiny_tree), "--val-size", "6", "--batch-size", "16", "--precision", "fp32", "--quiet"]
    assert main(["train", *flags, "--epochs", "1", "--threads", "2", "--out", str(out)]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["threads"] == {"threads": "2", "thread_wait": "auto"}
    for epochs in (2, 3):  # the record; then a run from before it, whose versions describe the threads
        thread_settings.configure(1)  # what this environment gives a new process (OMP_NUM_THREADS=1)
        assert main(["train", "--resume", str(out), "--epochs", str(epochs), "--quiet"]) == 0
        assert torch.get_num_threads() == 2 and thread_settings.current_plan().setting == "2"
        assert json.loads((out / "summary.json").read_text())["versions"]["threads"].startswith("2: 2 of ")
        info = json.loads((out / "config.json").read_text())
        info.pop("threads", None)
        (out / "config.json").write_text(json.dumps(info))
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--epochs", "4", "--threads", "1"]) == 2  # refused, as --lr is
    err = capsys.readouterr().err.strip()
    assert err == (f"cifarlab train: error: --resume continues {out} with its recorded --threads 2 (another thread "
                   "count changes its results); got --threads 1")
    torch.set_num_threads(1)  # the Python API leaves a notebook's threads alone, and says they differ
    with pytest.warns(UserWarning, match=r"trained with 2 CPU thread\(s\), this process computes with 1"):
        cifarlab.train(resume=out, epochs=4, verbose=False)


def test_a_relative_data_path_is_found_from_any_directory(tiny_tree, tmp_path, monkeypatch, capsys):
    import shutil

    from cifarlab.cli import main

    shutil.copytree(tiny_tree, tmp_path / "work" / "data")
    monkeypatch.chdir(tmp_path / "work")
    cifarlab.train(**{**RUN_KW, "data": "data", "val_size": 6}, epochs=1, out="runs/r")
    run = tmp_path / "work" / "runs" / "r"
    info = json.loads((run / "config.json").read_text())
    assert info["config"]["data"] == str(tmp_path / "work" / "data") and info["cwd"] == str(tmp_path / "work")
    monkeypatch.chdir(tmp_path)
    assert cifarlab.evaluate(run)["images"] == 18
    # A run from before: its data relative, found from the directory it was trained in, else its parent.
    info["config"]["data"] = "data"
    (run / "config.json").write_text(json.dumps(info))
    assert cifarlab.evaluate(run)["images"] == 18
    moved = shutil.move(run, tmp_path / "work" / "r")
    info.pop("cwd")
    (tmp_path / "work" / "r" / "config.json").write_text(json.dumps(info))
    assert cifarlab.evaluate(moved)["images"] == 18
    assert cifarlab.train(resume=moved, epochs=2, verbose=False).summary["epochs"] == 2
    assert json.loads((tmp_path / "work" / "r" / "config.json").read_text())["config"]["data"] == str(
        tmp_path / "work" / "data")  # the resume records it absolute
    info["config"]["data"] = "data"
    lost = tmp_path / "elsewhere" / "r"
    shutil.copytree(moved, lost)
    (lost / "config.json").write_text(json.dumps(info))
    assert main(["evaluate", str(lost)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"cifarlab evaluate: error: {lost / 'config.json'} names its data by the relative path 'data', "
                   f"found neither in {tmp_path / 'elsewhere'} nor in {tmp_path}; pass --data PATH")
    assert main(["evaluate", str(lost), "--data", str(tiny_tree), "--json"]) == 0


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

    from cifarlab.rundir.inference import predict_logits
    out = predict_logits(model, x, device=torch.device("cpu"))
    assert out.shape == (1, 3) and torch.isfinite(out).all()
