"""Test-time augmentation modes compared on trained runs, each run's same weights: accuracy and
seconds of the test split per mode (bf16, as train's own test pass), and the paired difference to
flip-translate. Runs one after another, alone on the machine.

    PYTHONPATH=src python benchmarks/bench_tta.py --data ../shared/data/cifar10 RUN_DIR [RUN_DIR ...] \
        [--modes none flip-translate flip-translate-unsure] [--out bench-out/tta.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, reference_seconds  # noqa: E402

import cifarlab  # noqa: E402
from cifarlab.choices import TTA  # noqa: E402

BASE = "flip-translate"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--data", required=True)
    p.add_argument("--modes", nargs="+", default=["none", BASE, "flip-translate-unsure"], choices=TTA.names())
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    modes = args.modes if BASE in args.modes else [BASE, *args.modes]
    reference = [reference_seconds()]
    rows = []
    for run_dir in args.runs:
        run = cifarlab.load_run(run_dir, "cpu")  # loaded once, evaluated per mode
        for mode in modes:
            r = cifarlab.evaluate(run, args.data, tta=mode, precision="bf16")
            rows.append({"run": str(run_dir), "tta": mode, "accuracy": r["accuracy"], "loss": r["loss"],
                         "seconds": r["images"] / r["images_per_second"]})  # predict_logits' time only
            print(f"{run_dir.name}  {mode:24s} {r['accuracy']:.4f}  {rows[-1]['seconds']:.1f} s", flush=True)
    reference.append(reference_seconds())
    base = {r["run"]: r for r in rows if r["tta"] == BASE}
    table = []
    for mode in modes:
        mine = [r for r in rows if r["tta"] == mode]
        diff = [r["accuracy"] - base[r["run"]]["accuracy"] for r in mine]
        table.append([mode, len(mine), f"{statistics.mean(r['accuracy'] for r in mine):.4f}",
                      f"{statistics.mean(diff):+.4f} (min {min(diff):+.4f}, max {max(diff):+.4f})",
                      f"{statistics.mean(r['seconds'] for r in mine):.1f}"])
    print(markdown_table(["tta", "runs", "mean test acc", f"vs {BASE} (paired)", "seconds"], table))
    print(f"reference workload: {reference[0]:.2f} s before, {reference[1]:.2f} s after")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows, "reference_seconds": reference}, indent=1))


if __name__ == "__main__":
    main()
