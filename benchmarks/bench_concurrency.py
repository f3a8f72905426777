"""Several jobs on one machine. In one run, on a quiet machine:

(a) one `cifarlab train` job alone (the baseline, bf16, as the reference workload trains it), under
    today's threads (--threads = all CPUs, OpenMP's default wait), the new default (--threads auto:
    adaptive, --thread-wait auto) and 2 passive threads;
(b) N = 2 such jobs at once: today's threads each, the new default each, --threads 1 each, and
    --threads 1 each pinned to a core of its own; the machine's total images/s against one job alone
    (target >= 0.95x; 0.58x was measured with all-CPU threads in each job);
(c) one job beside an unrelated busy process (a pure-Python loop) under each wait/thread policy: its
    slowdown against the same job alone with today's threads (target <= 2.2x; today 3.1x);
(d) a fixed study, `tune` with 2 workers on one machine: today's way (two `cifarlab tune` processes with
    all-CPU threads sharing one SQLite study) against `tune --workers 2` (target >= 1.5x faster);
and the reference workload before and after. A job's images/s is the median over its middle epochs
(not the first, where the processes start at different moments, nor the last), so that the jobs of one
set-up overlap while it is measured. Prints a markdown table; writes OUT/concurrency.json.

    python benchmarks/bench_concurrency.py                                        # ~10-15 min, 2-core machine
    python benchmarks/bench_concurrency.py --data TINY_TREE --train-size 60 --epochs 3 --tune-trials 2 \
        --tune-train-size 30 --val-size 6 --no-reference                          # smoke: checks it runs
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, SHARED, markdown_table, reference_seconds

TODAY = ["--threads", str(len(os.sched_getaffinity(0))), "--thread-wait", "default"]  # torch's default threads
POLICIES = {  # (c): one job beside a busy process
    "today: all CPUs, OpenMP default wait": TODAY,
    "all CPUs, OMP_WAIT_POLICY=PASSIVE": ["--threads", str(len(os.sched_getaffinity(0))), "--thread-wait", "passive"],
    "--threads 1": ["--threads", "1"],
    "new default: --threads auto (adaptive), --thread-wait auto": [],
    "--threads auto, OpenMP default wait": ["--thread-wait", "default"],
}


def environment(args) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}
    return {**env, "PYTHONPATH": str(ROOT / "src"), "CIFARLAB_CACHE": str(Path(args.out).resolve() / "cache")}


def train_command(args, run_dir: Path, flags: list[str]) -> list[str]:
    return [sys.executable, "-m", "cifarlab", "train", "--model", "baseline", "--precision", "bf16", "--data",
            args.data, "--epochs", str(args.epochs), "--train-size", str(args.train_size), "--val-size",
            str(args.val_size), "--out", str(run_dir), "--overwrite", "--quiet", *flags]


def run_jobs(args, name: str, flag_sets: list[list[str]], pins: list[set[int] | None] | None = None,
             beside_busy: bool = False) -> list[float]:
    """Start one training job per flag set at the same moment; their images/s (middle epochs)."""
    env = environment(args)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if beside_busy else None
    try:
        if busy:
            time.sleep(1.0)  # the busy loop holds its core before the job starts
        procs, dirs = [], []
        for i, flags in enumerate(flag_sets):
            run_dir = Path(args.out) / "runs" / f"{name}-{i}"
            pin = pins[i] if pins else None
            procs.append(subprocess.Popen(train_command(args, run_dir, flags), env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True,
                                          preexec_fn=(lambda p=pin: os.sched_setaffinity(0, p)) if pin else None))
            dirs.append(run_dir)
        for proc in procs:
            _, err = proc.communicate(timeout=3600)
            if proc.returncode:
                raise RuntimeError(f"{name}: a job failed:\n{err[-2000:]}")
    finally:
        if busy:
            busy.kill()
            busy.wait()
    return [middle_epochs_rate(d) for d in dirs]


def middle_epochs_rate(run_dir: Path) -> float:
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    middle = epochs[1:-1] or epochs
    return statistics.median(e["images_per_second"] for e in middle)


def run_study(args, name: str, commands: list[list[str]]) -> float:
    """Wall seconds until every process of a tune set-up has finished the fixed study."""
    env = environment(args)
    start = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    for proc in procs:
        _, err = proc.communicate(timeout=3600)
        if proc.returncode:
            raise RuntimeError(f"{name}: a tune process failed:\n{err[-2000:]}")
    return time.perf_counter() - start


def tune_command(args, out: Path, extra: list[str]) -> list[str]:
    space = Path(args.out).resolve() / "space.yaml"  # learning rate only: every trial costs the same
    space.write_text("lr: {type: float, low: 0.0001, high: 0.01, log: true}\n")
    return [sys.executable, "-m", "cifarlab", "tune", "--model", "baseline", "--precision", "bf16", "--data", args.data,
            "--trials", str(args.tune_trials), "--epochs", str(args.tune_epochs), "--train-size",
            str(args.tune_train_size), "--val-size", str(args.val_size), "--pruner", "none", "--space", str(space),
            "--storage", f"sqlite:///{out.resolve() / 'study.db'}", "--study", "bench", *extra]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(SHARED / "data" / "cifar10"))
    p.add_argument("--epochs", type=int, default=5, help="epochs per job (the middle ones are measured)")
    p.add_argument("--train-size", type=int, default=10000, help="training images per job")
    p.add_argument("--val-size", type=int, default=500)
    p.add_argument("--tune-trials", type=int, default=6)
    p.add_argument("--tune-epochs", type=int, default=2)
    p.add_argument("--tune-train-size", type=int, default=4000)
    p.add_argument("--no-reference", action="store_true", help="skip the reference workload (smoke runs)")
    p.add_argument("--out", default="bench-out/concurrency")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cpus = sorted(os.sched_getaffinity(0))
    started = time.perf_counter()
    calib_before = None if args.no_reference else reference_seconds()
    subprocess.run(train_command(args, out / "runs" / "warm-cache", ["--epochs", "1"]), env=environment(args),
                   check=True, capture_output=True)  # decode the images once, untimed

    rows, results = [], {}

    # (a) alone
    alone = {}
    for label, flags in (("today: all CPUs, OpenMP default wait", TODAY),
                         ("new default: --threads auto, --thread-wait auto", []),
                         ("all CPUs, OMP_WAIT_POLICY=PASSIVE", POLICIES["all CPUs, OMP_WAIT_POLICY=PASSIVE"])):
        alone[label] = run_jobs(args, f"alone-{len(alone)}", [flags])[0]
        rows.append(["(a) one job alone", label, f"{alone[label]:,.0f}", f"{alone[label]:,.0f}",
                     f"{alone[label] / alone[next(iter(alone))]:.2f}x", ""])
    reference = alone["today: all CPUs, OpenMP default wait"]
    results["alone"] = alone

    # (b) two jobs at once
    results["two_jobs"] = {}
    half = [set(cpus[: len(cpus) // 2]), set(cpus[len(cpus) // 2:])] if len(cpus) > 1 else None
    for label, flags, pins in (("today's threads each", TODAY, None),
                               ("new default each (--threads auto)", [], None),
                               ("--threads cores/2 each", ["--threads", str(max(1, len(cpus) // 2))], None),
                               ("--threads cores/2 each, pinned", ["--threads", str(max(1, len(cpus) // 2))], half)):
        rates = run_jobs(args, f"two-{len(results['two_jobs'])}", [flags, flags], pins=pins)
        total = sum(rates)
        results["two_jobs"][label] = rates
        rows.append(["(b) 2 jobs at once", label, " + ".join(f"{r:,.0f}" for r in rates), f"{total:,.0f}",
                     f"{total / reference:.2f}x of one alone", ">= 0.95x"])

    # (c) one job beside a busy process
    results["beside_busy"] = {}
    for label, flags in POLICIES.items():
        rate = run_jobs(args, f"busy-{len(results['beside_busy'])}", [flags], beside_busy=True)[0]
        results["beside_busy"][label] = rate
        rows.append(["(c) beside a busy process", label, f"{rate:,.0f}", f"{rate:,.0f}",
                     f"{reference / rate:.2f}x slower than alone", "<= 2.2x"])

    # (d) a fixed 2-worker study
    today_dir, new_dir = out / "tune-today", out / "tune-workers"
    for d in (today_dir, new_dir):
        if d.exists():
            shutil.rmtree(d)
    today_s = run_study(args, "tune today", [tune_command(args, today_dir, ["--out", str(today_dir / f"w{i}"), *TODAY])
                                             for i in range(2)])
    new_s = run_study(args, "tune --workers 2",
                      [tune_command(args, new_dir, ["--out", str(new_dir), "--workers", "2"])])
    results["tune_seconds"] = {"today: 2 processes, all-CPU threads each": today_s, "tune --workers 2": new_s}
    rows.append(["(d) fixed study, 2 workers", "today: 2 tune processes, all-CPU threads", "", "", f"{today_s:.1f} s",
                 ""])
    rows.append(["(d) fixed study, 2 workers", "tune --workers 2", "", "", f"{new_s:.1f} s: {today_s / new_s:.2f}x "
                 "faster", ">= 1.5x"])

    calib_after = None if args.no_reference else reference_seconds()
    results.update(reference_before=calib_before, reference_after=calib_after, cpus=len(cpus),
                   seconds=time.perf_counter() - started, settings=vars(args))
    (out / "concurrency.json").write_text(json.dumps(results, indent=2))
    print(f"## Several jobs on one machine ({len(cpus)} CPUs; baseline bf16, {args.train_size:,} images x "
          f"{args.epochs} epochs per job; study: {args.tune_trials} trials x {args.tune_epochs} epochs of "
          f"{args.tune_train_size:,} images)\n")
    print(markdown_table(["set-up", "threads", "img/s per job", "total img/s", "result", "target"], rows))
    if calib_before is not None:
        print(f"\nreference workload: {calib_before:.2f} s before, {calib_after:.2f} s after; "
              f"benchmark {results['seconds']:.0f} s")


if __name__ == "__main__":
    main()
