"""The CIFAR-10-C figure: a trained run's accuracy on CIFAR-10-C's 15 corruptions x 5 severities (the
mean corruption accuracy, mCA, comparable with published CIFAR-10-C tables) and on its 4 extra corruptions,
all regenerated from the 10,000 test images by cifarlab.analysis.corruptions (seeded: the same images every
run, for every model), with the clean accuracy beside them and the time each corruption takes to generate.

Trains nothing: pass a run directory made by `cifarlab train`. Writes cifar10c.csv (one row per corruption
and severity), cifar10c.md (the table) and cifar10c.json into --out; prints the headline.

    python benchmarks/bench_cifar10c.py --run runs/baseline --data ../shared/data/cifar10 --out bench-out/c10c

On the 2-core CPU generating all 19 x 5 x 10,000 images takes some minutes (zoom blur, elastic and
brightness are the slowest), and a 2-epoch baseline classifies the 950,000 images in a few more.
`cifarlab analyze RUN --robustness-images all` measures the same on the full test split.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
from _common import markdown_table

from cifarlab.analysis import robustness
from cifarlab.analysis.corruptions import CORRUPTIONS
from cifarlab.config import TrainConfig
from cifarlab.data import load_data
from cifarlab.data.subsets import select_classes
from cifarlab.rundir.device import resolve_device, resolve_precision
from cifarlab.rundir.inference import predict_logits
from cifarlab.rundir.run import load_run_model
from cifarlab.training.resolve import resolve


def evaluate(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    model, info = load_run_model(args.run, device)
    cfg = resolve(TrainConfig.from_dict(info["config"]))
    test = select_classes(load_data(args.data or cfg.data, progress=False), cfg.classes).test
    index = np.arange(len(test.labels)) if args.images is None else np.sort(
        np.random.default_rng(0).choice(len(test.labels), args.images, replace=False))
    images, labels = test.images[index], test.labels[index]
    start = time.perf_counter()
    clean = predict_logits(model, images, device=device, precision=precision).argmax(1).numpy()
    clean_accuracy = float((clean == labels).mean())
    print(f"{args.run} ({cfg.model}): clean accuracy {clean_accuracy:.4f} on {len(labels):,} test images "
          f"({device}, {precision}); corruptions:", flush=True)
    table = robustness.robustness_table(model, images, labels, clean_accuracy, device=device, precision=precision,
                                        seed=args.seed, indices=index, names=args.corruptions, log=print)
    table.update({"run_dir": str(args.run), "model": cfg.model, "device": str(device), "precision": precision,
                  "total_seconds": time.perf_counter() - start})
    return table


def write_tables(table: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    extra = set(table["extra_corruptions"])
    per_10k = {n: s / table["images"] * 10_000 / len(table["severities"])
               for n, s in table["seconds_per_corruption"].items()}
    with open(out / "cifar10c.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["corruption", "family", "in_mean", "severity", "accuracy", "generation_seconds_per_10k"])
        for name, row in table["accuracy"].items():
            for severity, accuracy in zip(table["severities"], row):
                family = CORRUPTIONS.entry(name).meta["family"]
                writer.writerow([name, family, name not in extra, severity, f"{accuracy:.4f}", f"{per_10k[name]:.2f}"])
    headers = ["corruption", *[f"s{s}" for s in table["severities"]], "mean", "s / 10k images / severity"]
    rows = [[f"{name}{' (extra)' if name in extra else ''}", *[f"{a:.4f}" for a in row],
             f"{table['mean_accuracy'][name]:.4f}", f"{per_10k[name]:.1f}"] for name, row in table["accuracy"].items()]
    per_severity = table["per_severity_accuracy"]
    if table["mean_corrupted_accuracy"] is not None:
        rows.append(["**mean of the 15**", *[f"{a:.4f}" for a in per_severity],
                     f"**{table['mean_corrupted_accuracy']:.4f}**", ""])
    (out / "cifar10c.md").write_text(markdown_table(headers, rows) + "\n")
    (out / "cifar10c.json").write_text(json.dumps(table, indent=2) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a trained run directory")
    p.add_argument("--data", help="the data (default: the run's own)")
    p.add_argument("--out", default="bench-out/cifar10c", type=Path)
    p.add_argument("--images", type=int, help="a seeded sample of the test split (default: all of it)")
    p.add_argument("--corruptions", nargs="+", choices=list(CORRUPTIONS), help="default: all 19")
    p.add_argument("--seed", type=int, default=robustness.CORRUPTION_SEED, help="the corruptions' seed")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32")
    args = p.parse_args()
    table = evaluate(args)
    write_tables(table, args.out)
    mca = table["mean_corrupted_accuracy"]
    print(f"\nclean accuracy {table['clean_accuracy']:.4f}; "
          + (f"CIFAR-10-C mCA (15 x 5) {mca:.4f} (mean error {1 - mca:.4f}, relative {table['relative_accuracy']:.3f})"
             if mca is not None else "mCA not measured (not all 15 corruptions)")
          + (f"; 4 extras {table['extra_mean_accuracy']:.4f}" if table["extra_mean_accuracy"] is not None else ""))
    print(f"{table['images']:,} images; corruption generation {table['corruption_seconds']:.0f} s, "
          f"all {table['total_seconds']:.0f} s; wrote {args.out}/cifar10c.{{csv,md,json}}")


if __name__ == "__main__":
    main()
