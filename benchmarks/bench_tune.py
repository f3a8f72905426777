"""The tuning figure: `cifarlab tune` with at least 20 trials and the median pruner on the
validation split, then the best trial retrained on train + val and tested once (`train --from-study`).
Records the optimization-history and parameter-importance plots and how much time pruning saved; the
reference workload runs before and after (times also as a multiple of it).

    python benchmarks/bench_tune.py --data ../shared/data/cifar10 --trials 20 --epochs 4 --out bench-out/tune
    python benchmarks/bench_tune.py --data TINY_TREE --trials 4 --epochs 2 --train-size 60 --val-size 15 \
        --no-reference                                                                                   # smoke
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import SHARED, markdown_table, read_summary, reference_seconds, run_cli


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(SHARED / "data" / "cifar10"))
    p.add_argument("--model", default="baseline")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=4, help="epochs per trial (and for the final run)")
    p.add_argument("--pruner", default="median")
    p.add_argument("--space", help="YAML search space (default: cifarlab's)")
    p.add_argument("--train-size", type=int, help="a subset, for a quick smoke run")
    p.add_argument("--val-size", type=int)
    p.add_argument("--no-reference", action="store_true", help="skip the reference workload (smoke runs)")
    p.add_argument("--out", default="bench-out/tune")
    args = p.parse_args()
    out = Path(args.out)
    calib = [] if args.no_reference else [reference_seconds()]
    extra = ["--train-size", str(args.train_size)] if args.train_size else []
    extra += ["--val-size", str(args.val_size)] if args.val_size is not None else []
    start = time.perf_counter()
    run_cli(["tune", "--model", args.model, "--trials", str(args.trials), "--epochs", str(args.epochs), "--pruner",
             args.pruner, "--data", args.data, "--out", str(out / "study"), *extra,
             *(["--space", args.space] if args.space else [])], timeout=48 * 3600)
    tune_seconds = time.perf_counter() - start
    info = json.loads((out / "study" / "tune.json").read_text())
    final_dir = out / "final"
    # The study keeps its fixed settings (epochs, --train-size, ...): the final run uses them on train + val.
    run_cli(["train", "--from-study", str(out / "study"), "--out", str(final_dir), "--overwrite", "--quiet"])
    final = read_summary(final_dir)
    if not args.no_reference:
        calib.append(reference_seconds())
    ref = sum(calib) / len(calib) if calib else None
    counts = info["trials"]
    saved = info["seconds_saved_by_pruning"] or 0.0
    rows = [
        ["trials (complete / pruned / failed)", f"{counts['COMPLETE']} / {counts['PRUNED']} / {counts['FAIL']}"],
        ["best validation accuracy", f"{info['best_value']:.4f} (trial {info['best_trial']})"],
        ["best parameters", ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in info["best_params"].items())],
        ["test accuracy, best retrained on train + val", f"{final['test_accuracy']:.4f}"],
        ["tuning wall time", f"{tune_seconds:.0f} s" + (f" ({tune_seconds / ref:.0f}× ref)" if ref else "")],
        ["epochs pruning saved", f"{info['pruned_epochs_saved']:g} ≈ {saved:.0f} s"
         + (f" ({saved / ref:.0f}× ref)" if ref else "")],
        ["plots", f"{out}/study/optimization_history.png, {out}/study/param_importances.png"],
    ]
    table = markdown_table([f"{args.model}, {args.epochs} epochs per trial, {args.pruner} pruner", "result"], rows)
    (out / "results.json").write_text(json.dumps({"tune": info, "final": final, "tune_seconds": tune_seconds,
                                                  "calib_seconds": calib, "table": table}, indent=2))
    print(table)
    print(f"reference workload {calib} s; trials table {out}/study/trials.md")


if __name__ == "__main__":
    main()
