"""The augmentation figure, the Keras notebook's experiment: the baseline trained 2 epochs without
augmentation, then 2 more epochs with the notebook's ImageDataGenerator (`--augment keras`), continuing
the same weights and Adam state (`train --resume RUN --epochs 4 --augment keras`, the notebook's second
fit_generator call). The notebook reports about 0.69 test accuracy after that. As a control the same
2-epoch run also continues 2 epochs without augmentation. Every train runs in a fresh process; the
reference workload runs before and after, and times are also stated as a multiple of it.

    python benchmarks/bench_augment.py --data ../shared/data/cifar10 --seeds 0 1 2 --out bench-out/augment
    python benchmarks/bench_augment.py --data TINY_TREE --train-size 300 --val-size 30 --no-reference  # smoke
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from _common import SHARED, markdown_table, mean_std, read_summary, reference_seconds, run_cli

ARMS = {"{n} epochs, no augmentation": "first", "+{n} epochs, no augmentation": "none",
        "+{n} epochs, {augment} augmentation": "keras"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(SHARED / "data" / "cifar10"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=2, help="epochs before and again after the switch (default 2)")
    p.add_argument("--augment", default="keras", help="the policy of the second phase (default keras)")
    p.add_argument("--train-size", type=int, help="a subset, for a quick smoke run")
    p.add_argument("--val-size", type=int, help="validation images carved from train (default: cifarlab's)")
    p.add_argument("--precision", default="auto")
    p.add_argument("--no-reference", action="store_true", help="skip the reference workload (smoke runs)")
    p.add_argument("--out", default="bench-out/augment")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    calib = [] if args.no_reference else [reference_seconds()]
    extra = ["--precision", args.precision]
    extra += ["--train-size", str(args.train_size)] if args.train_size else []
    extra += ["--val-size", str(args.val_size)] if args.val_size is not None else []
    runs = []
    for seed in args.seeds:
        first = out / f"first-seed{seed}"
        run_cli(["train", "--model", "baseline", "--epochs", str(args.epochs), "--data", args.data, "--seed",
                 str(seed), "--out", str(first), "--overwrite", "--quiet", *extra])
        results = {"first": read_summary(first)}
        for arm, augment in (("none", "none"), ("keras", args.augment)):
            cont = out / f"{arm}-seed{seed}"
            shutil.rmtree(cont, ignore_errors=True)
            shutil.copytree(first, cont)  # the same 2-epoch weights, optimizer and RNG state
            run_cli(["train", "--resume", str(cont), "--epochs", str(2 * args.epochs), "--augment", augment,
                     "--quiet"])
            results[arm] = read_summary(cont)
        for key, s in results.items():
            runs.append({"seed": seed, "arm": key, "test_accuracy": s["test_accuracy"],
                         "val_accuracy": s["val_accuracy"], "train_seconds": s["train_seconds"],
                         "images_per_second": s["images_per_second"]})
            print(json.dumps(runs[-1]), flush=True)
    if not args.no_reference:
        calib.append(reference_seconds())
    ref = sum(calib) / len(calib) if calib else None
    rows = []
    for label, key in ARMS.items():
        rs = [r for r in runs if r["arm"] == key]
        acc, sd = mean_std([r["test_accuracy"] for r in rs])
        t, t_sd = mean_std([r["train_seconds"] for r in rs])
        rows.append([label.format(n=args.epochs, augment=args.augment), f"{acc:.4f} ± {sd:.4f}",
                     f"{mean_std([r['val_accuracy'] for r in rs])[0]:.4f}", f"{t:.1f} ± {t_sd:.1f}",
                     f"{t / ref:.1f}" if ref else "-", f"{mean_std([r['images_per_second'] for r in rs])[0]:,.0f}"])
    table = markdown_table([f"baseline (n={len(args.seeds)})", "test acc", "val acc", "train s (cumulative)",
                            "train / ref", "train img/s"], rows)
    (out / "results.json").write_text(json.dumps({"runs": runs, "calib_seconds": calib, "table": table}, indent=2))
    print(table)
    print(f"reference workload {calib} s; the Keras notebook: about 0.69 after 2 + 2 augmented epochs")


if __name__ == "__main__":
    main()
