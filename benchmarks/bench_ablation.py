"""The ablation figure: `cifarlab ablate` of the augmentation policy (none, keras, standard,
standard+cutout) on a residual model with a fixed wall-clock budget per run and 3 seeds, so each policy
gets the same compute; plus the reference workload before and after (times also as a multiple of it).

    python benchmarks/bench_ablation.py --data ../shared/data/cifar10 --model resnet20 --budget-minutes 10 \
        --out bench-out/ablation
    python benchmarks/bench_ablation.py --data TINY_TREE --budget-minutes 0.05 --seeds 0 --train-size 60 \
        --val-size 15 --no-reference                                                                    # smoke
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import SHARED, markdown_table, mean_std, reference_seconds, run_cli


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(SHARED / "data" / "cifar10"))
    p.add_argument("--model", default="resnet20")
    p.add_argument("--vary", default="augment=none,keras,standard,standard+cutout")
    p.add_argument("--budget-minutes", type=float, default=10.0)
    p.add_argument("--epochs", type=int,
                   help="a fixed number of epochs instead of the wall-clock budget: the fair choice when other "
                        "work shares the CPU, since augmentation itself costs little (the table shows its time)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--train-size", type=int, help="a subset, for a quick smoke run")
    p.add_argument("--val-size", type=int)
    p.add_argument("--no-reference", action="store_true", help="skip the reference workload (smoke runs)")
    p.add_argument("--out", default="bench-out/ablation")
    args = p.parse_args()
    calib = [] if args.no_reference else [reference_seconds()]
    start = time.perf_counter()
    extra = ["--train-size", str(args.train_size)] if args.train_size else []
    extra += ["--val-size", str(args.val_size)] if args.val_size is not None else []
    # Without --epochs, 200 is only an upper bound: the budget stops every run, its schedule following the clock.
    length = (["--epochs", str(args.epochs)] if args.epochs
              else ["--epochs", "200", "--budget-minutes", str(args.budget_minutes)])
    run_cli(["ablate", "--model", args.model, "--vary", args.vary, "--seeds", args.seeds, *length,
             "--data", args.data, "--out", args.out, *extra], timeout=24 * 3600)
    wall = time.perf_counter() - start
    if not args.no_reference:
        calib.append(reference_seconds())
    ref = sum(calib) / len(calib) if calib else None
    rows = json.loads((Path(args.out) / "ablation.json").read_text())
    table = markdown_table(
        [rows[0]["field"] if rows else "value", f"val acc (n={len(args.seeds.split(','))})", "test acc",
         "train s", "train / ref", "epochs"],
        [[r["value"], *[f"{m:.4f} ± {s:.4f}" for m, s in (mean_std(r["val_accuracy"] or [float("nan")]),
                                                          mean_std(r["test_accuracy"] or [float("nan")]))],
          f"{mean_std(r['train_seconds'])[0]:.1f}" if r["train_seconds"] else "-",
          f"{mean_std(r['train_seconds'])[0] / ref:.1f}" if ref and r["train_seconds"] else "-",
          f"{mean_std(r['epochs'])[0]:.1f}" if r["epochs"] else "-"] for r in rows])
    Path(args.out, "results.json").write_text(json.dumps({"calib_seconds": calib, "wall_seconds": wall,
                                                          "rows": rows, "table": table}, indent=2))
    print(table)
    per_run = f"{args.epochs} epochs" if args.epochs else f"{args.budget_minutes:g} min"
    print(f"{args.model}, {per_run} per run; whole ablation {wall:.0f} s; reference workload "
          f"{calib} s; plot: {args.out}/ablation.png")


if __name__ == "__main__":
    main()
