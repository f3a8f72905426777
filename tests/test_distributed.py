"""Data-parallel training under torchrun: 2 CPU processes with gloo against 1 process, on tiny data.

The model for the comparisons is the baseline with --dropout 0: no batch norm (whose statistics are per
rank without --sync-bn, and SyncBatchNorm has no CPU kernel) and no random masks, so 2 ranks of 8 images
compute exactly the step one process computes on 16, up to floating-point summation order.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import cifarlab
from cifarlab.cli import main
from cifarlab.data.loader import DeviceLoader
from cifarlab.errors import CifarlabError
from cifarlab.training import distributed
from cifarlab.training.distributed import Ranks

SRC = Path(cifarlab.__file__).resolve().parents[1]
EXACT = ["--model", "baseline", "--dropout", "0", "--precision", "fp32", "--batch-size", "16", "--val-size", "12",
         "--seed", "3"]
EXACT_KW = {"model": "baseline", "dropout": 0.0, "precision": "fp32", "batch_size": 16, "val_size": 12, "seed": 3}
CURVE = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


def torchrun_command(args: list[str], launcher: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", *launcher,
            "-m", "cifarlab", "train", *args]


def torchrun_env(cache: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "CIFARLAB_CACHE": str(cache)}


def torchrun(args: list[str], cache: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun_command(args), env=torchrun_env(cache), capture_output=True, text=True,
                          timeout=timeout)


def metrics(run_dir: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_same_curve(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for key in CURVE:
            assert g[key] == pytest.approx(w[key], rel=1e-4, abs=1e-6), (g["epoch"], key)


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys() and not any(k.startswith("module.") for k in wa)
    for k in wa:
        # atol 1e-4: Adam divides by sqrt(v), so a near-zero gradient's rounding noise can move a weight ~1e-5
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-4, msg=k)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_tree):
    """A 2-epoch run with 2 ranks under torchrun, and the same settings for 3 epochs in one process."""
    root = tmp_path_factory.mktemp("ddp")
    cache = root / "cache"
    proc = torchrun([*EXACT, "--data", str(tiny_tree), "--epochs", "2", "--out", str(root / "two")], cache)
    assert proc.returncode == 0, proc.stderr[-4000:]
    old = os.environ.get("CIFARLAB_CACHE")
    os.environ["CIFARLAB_CACHE"] = str(cache)
    try:
        cifarlab.train(data=str(tiny_tree), epochs=3, out=str(root / "one"), verbose=False, **EXACT_KW)
    finally:
        if old is None:
            os.environ.pop("CIFARLAB_CACHE", None)
        else:
            os.environ["CIFARLAB_CACHE"] = old
    return SimpleNamespace(root=root, cache=cache, two=root / "two", one=root / "one", stdout=proc.stdout,
                           data=tiny_tree)


def test_two_ranks_follow_the_single_process_loss_curve(runs):
    assert_same_curve(metrics(runs.two), metrics(runs.one)[:2])  # 2 epochs of 3 steps of 16 images
    for got, want in zip(metrics(runs.two), metrics(runs.one)[:2]):  # the per-step loss too, averaged over ranks
        assert [s for s, _ in got["train_loss_steps"]] == [s for s, _ in want["train_loss_steps"]]
        assert [v for _, v in got["train_loss_steps"]] == pytest.approx([v for _, v in want["train_loss_steps"]],
                                                                         rel=1e-4)


def test_only_rank_0_prints_and_writes(runs):
    import json

    lines = runs.stdout.splitlines()
    assert sum(ln.startswith("epoch 1/2") for ln in lines) == 1 and sum(ln.startswith("run ") for ln in lines) == 1
    assert "2 ranks of 8" in runs.stdout
    assert len(metrics(runs.two)) == 2  # two writers would have appended every line twice
    assert [p.name for p in (runs.two / "checkpoints").iterdir()] == ["epoch_002"]
    assert not list(runs.two.rglob("*.tmp"))
    summary = json.loads((runs.two / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["test_accuracy"] is not None and summary["train_images"] == 48


def test_resume_under_torchrun_continues_the_same_curve(runs):
    run = runs.root / "resumed"
    shutil.copytree(runs.two, run)
    proc = torchrun(["--resume", str(run), "--epochs", "3"], runs.cache)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert_same_curve(metrics(run), metrics(runs.one))
    assert_same_weights(run / "model.safetensors", runs.one / "model.safetensors")  # saved unwrapped


def test_two_nodes_meet_through_torchruns_rendezvous(runs):
    # Two torchrun agents on this machine stand for two machines: --nnodes 2, c10d rendezvous on a port.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = runs.root / "nodes"
    launcher = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                f"127.0.0.1:{port}", "--rdzv-id", "cifarlab-test"]
    args = [*EXACT, "--data", str(runs.data), "--epochs", "2", "--out", str(run)]
    cmd = [sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "cifarlab", "train", *args]
    nodes = [subprocess.Popen(cmd, env=torchrun_env(runs.cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for node in nodes:
        _, stderr = node.communicate(timeout=240)
        assert node.returncode == 0, stderr[-3000:]
    assert_same_curve(metrics(run), metrics(runs.one)[:2])


def test_grad_accum_of_k_micro_batches_equals_one_batch(tiny_tree, tmp_path):
    one = cifarlab.train(data=str(tiny_tree), epochs=2, out=str(tmp_path / "b16"), verbose=False, **EXACT_KW)
    acc = cifarlab.train(data=str(tiny_tree), epochs=2, out=str(tmp_path / "k4"), verbose=False, grad_accum=4,
                         **EXACT_KW)
    assert_same_curve(acc.history, one.history)
    assert_same_weights(tmp_path / "k4" / "model.safetensors", tmp_path / "b16" / "model.safetensors")


def test_bad_grad_accum_and_batch_splits_are_one_line_errors(tiny_tree, tmp_path, capsys):
    args = ["train", "--data", str(tiny_tree), "--out", str(tmp_path / "r"), *EXACT]
    assert main([*args, "--grad-accum", "3"]) == 2
    assert "--batch-size 16 is the global batch: it must be divisible by 1 rank(s) x --grad-accum 3" in \
        capsys.readouterr().err
    assert main([*args, "--grad-accum", "0"]) == 2
    assert "--grad-accum must be > 0" in capsys.readouterr().err
    assert main([*args, "--dist-timeout", "0"]) == 2
    assert "--dist-timeout must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    with pytest.raises(CifarlabError, match="divisible by 2 rank"):
        distributed.check_batch(Ranks(world_size=2), 15, 1, 100)
    with pytest.raises(CifarlabError, match="3 training images cannot be split over 2 rank"):
        distributed.check_batch(Ranks(world_size=2), 8, 2, 3)


def test_sync_bn_on_cpu_ranks_is_a_clear_error():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    with pytest.raises(CifarlabError, match="sync_bn needs GPUs"):
        distributed.data_parallel(model, Ranks(world_size=2), torch.device("cpu"), sync_bn=True)
    assert distributed.data_parallel(model, Ranks(), torch.device("cpu"), sync_bn=True) == (model, model)


def test_ranks_take_slices_of_the_same_global_batches():
    images = np.random.default_rng(0).integers(0, 256, (20, 4, 4, 3), dtype=np.uint8)
    labels = np.arange(20)

    def batches(rank: int, world: int, augment=None):
        loader = DeviceLoader(images, labels, batch_size=8, device=torch.device("cpu"), mean=(0, 0, 0),
                              std=(1, 1, 1), shuffle=True, drop_last=True, seed=5, rank=rank, world_size=world,
                              augment=augment)
        loader.set_epoch(1)
        return list(loader)

    single = batches(0, 1)
    parts = [batches(r, 2) for r in range(2)]
    assert len(single) == len(parts[0]) == len(parts[1]) == 2
    for b, (x, y) in enumerate(single):
        assert torch.equal(torch.cat([parts[0][b][1], parts[1][b][1]]), y)  # rank 0's half, then rank 1's
        assert torch.equal(torch.cat([parts[0][b][0], parts[1][b][0]]), x)

    def noise(x, gen):  # an augmentation: what it draws shows which generator it got
        return (x.int() + torch.randint(0, 2, x.shape, generator=gen)).clamp(0, 255).to(torch.uint8)

    plain = [batches(r, 2) for r in range(2)]
    noisy = [batches(r, 2, noise) for r in range(2)]
    draws = [noisy[r][0][0] - plain[r][0][0] for r in range(2)]
    assert not torch.equal(draws[0], draws[1])  # each rank draws its own augmentation


def test_a_collective_failure_is_one_line(monkeypatch):
    error = RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting "
                         "5000ms for recv operation to complete\nmore lines")
    assert distributed.collective_failure(error) is None  # not under torchrun: the traceback stays
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    message = distributed.collective_failure(error)
    assert message.startswith("rank 1 lost contact with the other ranks (Timed out waiting 5000ms for recv")
    assert "\n" not in message
    assert distributed.collective_failure(ValueError("gloo")) is None
    # gloo's pair closure comes out of DDP's backward hook without naming gloo or the timeout
    monkeypatch.setattr(distributed, "_timeout_seconds", 5.0)
    message = distributed.collective_failure(RuntimeError("Application timeout caused pair closure"))
    assert message.startswith("rank 1 lost contact with the other ranks (Application timeout caused pair closure, "
                              "no answer within --dist-timeout 5 s)")
    assert distributed.collective_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None


def _worker(out: Path, rank: int) -> int | None:
    """The pid of the torchrun worker of `rank` training into `out` (from /proc: torchrun sets RANK)."""
    for proc in Path("/proc").iterdir():
        try:
            if str(out) in (proc / "cmdline").read_text() and \
                    f"RANK={rank}" in (proc / "environ").read_bytes().decode(errors="replace").split("\0"):
                return int(proc.name)
        except (OSError, ValueError):
            continue
    return None


def _start_long_run(tiny_tree: Path, tmp_path: Path):
    out = tmp_path / "long"
    args = [*EXACT, "--data", str(tiny_tree), "--epochs", "100000", "--val-size", "0", "--out", str(out),
            "--dist-timeout", "5"]
    proc = subprocess.Popen(torchrun_command(args), env=torchrun_env(tmp_path / "cache"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []  # stderr, read as it comes
    threading.Thread(target=lambda: [lines.append(line) for line in proc.stderr], daemon=True).start()
    deadline = time.monotonic() + 180
    while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text():  # training runs
        assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
        time.sleep(0.2)
    pid = _worker(out, 1)
    assert pid is not None
    return proc, pid, lines


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the torchrun workers through /proc")
def test_killing_one_rank_ends_the_job_with_an_error(tiny_tree, tmp_path):
    proc, pid, lines = _start_long_run(tiny_tree, tmp_path)
    os.kill(pid, signal.SIGKILL)
    start = time.monotonic()
    try:
        proc.wait(timeout=60)
    finally:
        proc.kill()
    time.sleep(0.5)  # the reader thread takes the last lines
    stderr = "".join(lines)
    assert proc.returncode != 0 and time.monotonic() - start < 60
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)\s*exitcode\s*:\s*-9", stderr), stderr[-3000:]  # torchrun's report
    assert (tmp_path / "long" / "checkpoints").is_dir()  # resumable: the checkpoints of finished epochs stay


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the torchrun workers through /proc")
def test_a_hung_rank_times_out_instead_of_hanging(tiny_tree, tmp_path):
    # A frozen rank (SIGSTOP: a lost node, a stuck GPU) is still alive, so torchrun cannot see it fail;
    # the other rank's next all-reduce gives up after --dist-timeout 5 s with a one-line error.
    proc, pid, lines = _start_long_run(tiny_tree, tmp_path)
    os.kill(pid, signal.SIGSTOP)
    start = time.monotonic()
    try:
        while not any(ln.startswith("cifarlab train: error:") for ln in lines):
            assert time.monotonic() - start < 60 and proc.poll() is None, "".join(lines)[-3000:]
            time.sleep(0.2)
        waited = time.monotonic() - start
        # torchrun then stops the frozen rank: SIGTERM, and SIGKILL 30 s later; do the SIGKILL now.
        os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    line = next(ln for ln in lines if ln.startswith("cifarlab train: error:"))
    assert "rank 0 lost contact with the other ranks" in line
    assert "5000ms" in line or "--dist-timeout 5 s" in line  # gloo times out in a recv or closes the pair
    assert 5 <= waited < 60 and proc.returncode != 0


def test_pruning_under_torchrun_plans_every_epoch_as_one_process_does(tiny_tree, tmp_path):
    """--prune-easy: each rank scores its slice of the batches; the scores meet at the epoch's end, so the
    2 ranks skip the images one process skips and follow its curve."""
    cache = tmp_path / "cache"
    prune = ["--prune-easy", "0.5", "--prune-until", "1"]
    proc = torchrun([*EXACT, *prune, "--data", str(tiny_tree), "--epochs", "4", "--out", str(tmp_path / "two")], cache)
    assert proc.returncode == 0, proc.stderr[-4000:]
    one = cifarlab.train(data=str(tiny_tree), epochs=4, out=str(tmp_path / "one"), verbose=False, prune_easy=0.5,
                         prune_until=1.0, **EXACT_KW)
    two = metrics(tmp_path / "two")
    assert [h["pruned_images"] for h in two] == [h["pruned_images"] for h in one.history]
    assert any(h["pruned_images"] for h in two)
    assert_same_curve(two, one.history)


def test_pruning_with_micro_batches_equals_one_batch(tiny_tree, tmp_path):
    kw = {**EXACT_KW, "prune_easy": 0.5, "prune_until": 1.0, "epochs": 3, "verbose": False}
    one = cifarlab.train(data=str(tiny_tree), out=str(tmp_path / "b16"), **kw)
    acc = cifarlab.train(data=str(tiny_tree), out=str(tmp_path / "k4"), grad_accum=4, **kw)
    assert [h["pruned_images"] for h in acc.history] == [h["pruned_images"] for h in one.history]
    assert_same_curve(acc.history, one.history)
    assert_same_weights(tmp_path / "k4" / "model.safetensors", tmp_path / "b16" / "model.safetensors")
