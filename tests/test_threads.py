"""Threads and worker processes: the default thread count from affinity and cgroup quota, --threads in
the job, the adaptive count, tune --workers, compare/ablate --parallel, and bad values."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cifarlab
from cifarlab import _threads
from cifarlab.cli import main
from cifarlab.config import TrainConfig

SRC = str(Path(cifarlab.__file__).parent.parent)


@pytest.fixture(autouse=True)
def _restore_threads(monkeypatch):
    """configure() changes process-wide state: put torch back to the test suite's one thread."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # configure() must not try to set it in this process
    yield
    torch.set_num_threads(1)
    _threads._plan = _threads._governor = None


def fake_cgroup(root: Path, v2: str | None = None, quota: str | None = None, period: str = "100000") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if v2 is not None:
        (root / "cpu.max").write_text(v2 + "\n")
    if quota is not None:
        (root / "cpu").mkdir()
        (root / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
        (root / "cpu" / "cpu.cfs_period_us").write_text(period + "\n")
    return root


@pytest.mark.parametrize("files, cpus, expected", [
    ({}, 4, 4),  # no cgroup files: the affinity mask
    ({"v2": "max 100000"}, 4, 4),  # v2 without a quota
    ({"v2": "150000 100000"}, 4, 1),  # 1.5 CPUs: rounded down
    ({"v2": "300000 100000"}, 8, 3),
    ({"v2": "800000 100000"}, 2, 2),  # a quota above the mask: the mask
    ({"quota": "200000"}, 6, 2),  # v1
    ({"quota": "-1"}, 6, 6),  # v1 without a quota
    ({"quota": "50000"}, 6, 1),  # half a CPU: still one thread
])
def test_available_cpus_from_affinity_and_cgroup_quota(tmp_path, monkeypatch, files, cpus, expected):
    monkeypatch.setattr(_threads, "CGROUP_ROOT", fake_cgroup(tmp_path / "cg", **files))
    monkeypatch.setattr(_threads, "SYSFS_CPU", tmp_path / "no-topology")  # unknown: every CPU counts
    monkeypatch.setattr(_threads, "affinity_cpus", lambda: list(range(cpus)))
    assert _threads.available_cpus() == expected


def test_hyperthread_siblings_count_once(tmp_path, monkeypatch):
    for cpu, (package, core) in enumerate([(0, 0), (0, 1), (0, 0), (0, 1), (1, 0)]):  # 2 and 3: siblings of 0, 1
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    assert _threads.physical_cores([0, 1, 2, 3, 4], root=tmp_path) == 3
    assert _threads.physical_cores([0, 2], root=tmp_path) == 1
    monkeypatch.setattr(_threads, "SYSFS_CPU", tmp_path)
    monkeypatch.setattr(_threads, "CGROUP_ROOT", tmp_path / "no-cgroup")
    monkeypatch.setattr(_threads, "affinity_cpus", lambda: [0, 1, 2, 3])
    assert _threads.available_cpus() == 2


def test_the_default_thread_count_is_the_available_cpus(monkeypatch):
    monkeypatch.setattr(_threads, "available_cpus", lambda: 3)
    plan = _threads.configure(None)
    assert torch.get_num_threads() == 3 and plan.setting == "auto" and plan.threads == 3
    assert _threads.describe()["threads"].startswith("auto: 3 of 3 CPUs")


def test_omp_num_threads_in_the_environment_fixes_the_count(monkeypatch):
    monkeypatch.setattr(_threads, "available_cpus", lambda: 4)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    plan = _threads.configure(None)
    assert plan.threads == 2 and not plan.adaptive and plan.setting == "OMP_NUM_THREADS=2"
    assert not _threads.explicit_threads()  # torchrun sets it for every rank: its own division may apply


def test_threads_flag_is_applied_inside_the_job(tiny_tree, tmp_path, capsys):
    assert main(["train", "--data", str(tiny_tree), "--epochs", "1", "--val-size", "6", "--precision", "fp32",
                 "--threads", "2", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    versions = json.loads((tmp_path / "run" / "summary.json").read_text())["versions"]
    assert versions["cpu_threads"] == "2" and versions["threads"].startswith("2: 2 of")
    assert "omp_wait_policy" in versions


def test_auto_threads_follow_the_other_processes_load(monkeypatch):
    """Two CPUs; another process keeps one busy: one thread. It stops: two again."""
    monkeypatch.setattr(_threads, "available_cpus", lambda: 2)
    monkeypatch.setattr(_threads, "affinity_cpus", lambda: [0, 1])
    samples = iter([(0.0, 0.0, 0.0), (10.0, 20.0, 10.0), (20.0, 30.0, 20.0)])  # (clock, busy s, own CPU s)
    monkeypatch.setattr(_threads, "_sample", lambda cpus: next(samples))
    monkeypatch.setattr(_threads.time, "monotonic", lambda: 1e9)  # always time to check
    plan = _threads.configure("auto", "active")
    assert plan.adaptive and torch.get_num_threads() == 2
    _threads.adapt()  # 20 s busy - 10 s ours over 10 s: others hold 1 core
    assert torch.get_num_threads() == 1
    _threads.adapt()  # 10 s busy, all ours: free again
    assert torch.get_num_threads() == 2 and sorted(plan.used) == [1, 2]
    assert "used 1-2" in _threads.describe()["threads"]


def test_passive_wait_is_set_before_torch_loads(tmp_path):
    code = ("import os, sys; from cifarlab import _threads; plan = _threads.configure(2, 'passive'); "
            "print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules, plan.wait)")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**env, "PYTHONPATH": SRC}).stdout
    assert out.startswith("PASSIVE True PASSIVE (--thread-wait passive)"), out


def test_divide_cores_among_workers(monkeypatch):
    monkeypatch.setattr(_threads, "available_cpus", lambda: 4)
    monkeypatch.setattr(_threads, "affinity_cpus", lambda: [0, 1, 2, 3])
    assert _threads.divide_cores(2, pin=True) == [_threads.Slot(2, (0, 1)), _threads.Slot(2, (2, 3))]
    assert _threads.divide_cores(4) == [_threads.Slot(1, None)] * 4
    with pytest.warns(UserWarning, match="6 worker processes on 4 CPU"):
        slots = _threads.divide_cores(6, pin=True)
    assert [s.cpus for s in slots] == [(0,), (1,), (2,), (3,), (0,), (1,)]


def test_tune_workers_finish_every_trial_in_worker_processes(tiny_tree, tmp_path):
    import optuna

    space = {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
    result = cifarlab.tune(TrainConfig(data=str(tiny_tree), epochs=1, val_size=6, precision="fp32"), tmp_path / "t",
                           trials=4, space=space, pruner="none", workers=2, verbose=False)
    study = optuna.load_study(study_name=result.study_name, storage=result.storage)
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert result.ran == [0, 1, 2, 3]
    pids = {t.user_attrs["pid"] for t in trials}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # run by the worker processes


def test_compare_parallel_gives_the_sequential_table(tiny_tree, tmp_path):
    base = TrainConfig(data=str(tiny_tree), epochs=1, val_size=6, precision="fp32")
    timing = {"train_seconds", "train_images_per_second", "inference_images_per_second"}
    tables = []
    for name, parallel in (("seq", 1), ("par", 2)):
        rows = cifarlab.compare(["baseline", "resnet20"], tmp_path / name, seeds=[0, 1], base=base, verbose=False,
                                parallel=parallel)
        tables.append([{k: v for k, v in r.items() if k not in timing} for r in rows])
    assert tables[0] == tables[1] and [r["model"] for r in tables[1]] == ["baseline", "resnet20"]
    assert json.loads((tmp_path / "par" / "compare.json").read_text())[0]["model"] == "baseline"


@pytest.mark.parametrize("argv, message", [
    (["train", "--threads", "0"], "--threads must be >= 1"),
    (["evaluate", "run", "--threads", "-1"], "--threads must be >= 1"),
    (["predict", "run", "x.png", "--threads", "two"], "argument --threads: takes a whole number >= 1 or auto"),
    (["compare", "--models", "baseline", "--out", "o", "--parallel", "0"], "--parallel must be >= 1"),
    (["ablate", "--model", "baseline", "--vary", "lr=0.1", "--out", "o", "--parallel", "x"],
     "argument --parallel: takes a whole number"),
    (["tune", "--trials", "1", "--out", "o", "--workers", "0"], "--workers must be >= 1"),
    (["serve", "run", "--thread-wait", "sometimes"], "argument --thread-wait: invalid choice"),
])
def test_bad_thread_and_worker_values_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_more_threads_than_cpus_are_allowed_with_a_warning(monkeypatch):
    monkeypatch.setattr(_threads, "available_cpus", lambda: 2)
    with pytest.warns(UserWarning, match="--threads 3 is more than the 2 CPU"):
        _threads.configure(3)
    assert torch.get_num_threads() == 3


def test_a_failed_job_stops_the_other_workers_at_once():
    import contextlib
    import time

    from cifarlab._parallel import run_parallel

    start = time.perf_counter()
    jobs = [("1/0",), ("__import__('time').sleep(300)",)]
    with pytest.raises(ZeroDivisionError), contextlib.closing(run_parallel(eval, jobs, 2)) as futures:
        for future in futures:
            future.result()
    assert time.perf_counter() - start < 120  # the sleeping worker was ended, not waited for
