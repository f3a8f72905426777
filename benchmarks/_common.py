"""Shared by the benchmark scripts: the reference workload (to state times as a multiple of it) and a
small markdown-table helper. Benchmarks run cifarlab through its CLI, in fresh processes, like a user."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CIFARLAB_SHARED", ROOT.parent / "shared"))  # the checkout's sibling shared/
REFERENCE = SHARED / "bench" / "reference_workload.py"


def reference_seconds() -> float:
    """Run ../shared/bench/reference_workload.py and return its calib_seconds."""
    out = subprocess.run([sys.executable, str(REFERENCE)], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"calib_seconds=([0-9.]+)", out).group(1))


def run_cli(args: list[str], env: dict | None = None, timeout: float = 3600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "cifarlab", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return proc


def read_summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


# The experiments' own table helpers, so benchmark tables look like `compare`'s.
from cifarlab.experiments.grid import markdown_table as _markdown_table  # noqa: E402
from cifarlab.experiments.grid import mean_std  # noqa: E402, F401


def markdown_table(headers: list[str], rows: list[list]) -> str:
    return _markdown_table(headers, rows).rstrip("\n")


def best_seconds(fn, steps: int, warmup: int = 2, repeats: int = 3) -> float:
    """The best of `repeats` timed windows of `steps` calls, after `warmup` calls (oneDNN picks and caches
    its kernels on the first ones), like the reference workload."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        best = min(best, time.perf_counter() - start)
    return best
