"""The CPU figure: `cifarlab compare` of baseline, vgg11, resnet20 and googlenet on the real data,
each with its own default recipe and the same wall-clock budget, plus the reference workload before and
after (times are also stated as a multiple of it).

    python benchmarks/bench_compare.py --data ../shared/data/cifar10 --budget-minutes 10 --out bench-out/compare
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import SHARED, reference_seconds, run_cli


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(SHARED / "data" / "cifar10"))
    p.add_argument("--models", default="baseline,vgg11,resnet20,googlenet")
    p.add_argument("--budget-minutes", type=float, default=10.0)
    p.add_argument("--seeds", default="0")
    p.add_argument("--out", default="bench-out/compare")
    args = p.parse_args()
    calib = [reference_seconds()]
    print(f"reference workload: {calib[0]:.2f} s", flush=True)
    start = time.perf_counter()
    # --epochs 100 is only an upper bound: every model is stopped by the budget, its schedule following the clock.
    run_cli(["compare", "--models", args.models, "--epochs", "100", "--budget-minutes", str(args.budget_minutes),
             "--data", args.data, "--seeds", args.seeds, "--out", args.out], timeout=24 * 3600)
    wall = time.perf_counter() - start
    calib.append(reference_seconds())
    table = (Path(args.out) / "compare.md").read_text()
    print(table)
    print(f"compare wall time {wall:.0f} s; reference workload before/after: {calib[0]:.2f} / {calib[1]:.2f} s")
    (Path(args.out) / "bench.json").write_text(json.dumps({"calib_seconds": calib, "wall_seconds": wall}, indent=2))


if __name__ == "__main__":
    main()
