"""Issue 20's check of the label check where the truth is known: move a known share of training images into
wrong class folders, run `cifarlab analyze --label-check`, and score the flagged set against the moved images.

For each noise level (default 5%, 10%, 20%) the script builds an image-folder tree of symbolic links: a seeded,
stratified sample of `--train-images` training images of which the given share is linked into a uniformly
chosen wrong class folder, plus `--test-per-class` test images per class (only so the tree is complete; the
test split plays no part in the label check). It then trains a short run on the tree (`cifarlab train`
for `--run-epochs`, no validation split: only its recipe matters, which the check's fold models reuse for
`--epochs` each), runs `cifarlab analyze RUN --label-check` and reads the flagged files from analysis.json:

    precision = |flagged ∩ moved| / |flagged|      recall = |flagged ∩ moved| / |moved|

This is an accuracy figure, not a timing: it may run on a busy machine (the CPU seconds of the child
processes are recorded as well as the wall time).

    python benchmarks/bench_label_noise.py --data ../shared/data/cifar10 --model baseline \
        --train-images 10000 --epochs 4 --folds 3 --noise 0.05,0.10,0.20 --out bench-out/label-noise
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
from _common import markdown_table, run_cli


def class_files(root: Path, split: str) -> dict[str, list[Path]]:
    """The image files of one split, by class folder, sorted by name (a stable order)."""
    return {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() == ".png")
            for d in sorted((root / split).iterdir()) if d.is_dir()}


def noisy_tree(data: Path, out: Path, noise: float, train_images: int, test_per_class: int,
               seed: int) -> set[str]:
    """Build the tree of links under `out`; return the moved images' paths as analyze names them
    (train/<wrong class>/<file>)."""
    rng = np.random.default_rng(seed)
    train, test = class_files(data, "train"), class_files(data, "test")
    classes = list(train)
    per_class = train_images // len(classes)
    chosen = [(c, f) for c in classes for f in rng.choice(train[c], per_class, replace=False)]
    moved_index = set(rng.choice(len(chosen), round(noise * len(chosen)), replace=False).tolist())
    moved = set()
    for i, (c, f) in enumerate(chosen):
        if i in moved_index:  # a uniformly chosen wrong class
            c = classes[(classes.index(c) + rng.integers(1, len(classes))) % len(classes)]
            moved.add(f"train/{c}/{f.name}")
        _link(f, out / "train" / c / f.name)
    for c in classes:
        for f in test[c][:test_per_class]:
            _link(f, out / "test" / c / f.name)
    return moved


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.symlink(source.resolve(), target)


def one_level(args: argparse.Namespace, noise: float, out: Path) -> dict:
    """Tree, run, label check and score for one noise level."""
    tree = out / "data"
    moved = noisy_tree(Path(args.data), tree, noise, args.train_images, args.test_per_class, args.seed)
    run = out / "run"
    env = {"CIFARLAB_CACHE": str(out / "cache"), "OMP_NUM_THREADS": str(args.threads)}
    start, cpu_start = time.perf_counter(), _children_cpu_seconds()
    run_cli(["train", "--model", args.model, "--data", str(tree), "--epochs", str(args.run_epochs), "--val-size", "0",
             "--seed", str(args.seed), "--precision", args.precision, "--out", str(run), "--overwrite"], env=env)
    run_cli(["analyze", str(run), "--label-check", "--label-check-folds", str(args.folds), "--label-check-epochs",
             str(args.epochs), "--robustness-images", "0", "--out", str(out / "analysis")], env=env)
    seconds, cpu_seconds = time.perf_counter() - start, _children_cpu_seconds() - cpu_start
    check = json.loads((out / "analysis" / "analysis.json").read_text())["label_check"]
    flagged = {row["file"] for row in check["issues"]}
    hits = len(flagged & moved)
    return {"noise": noise, "train_images": check["images"], "moved": len(moved), "flagged": len(flagged),
            "correctly_flagged": hits, "precision": hits / len(flagged) if flagged else None,
            "recall": hits / len(moved) if moved else None,
            "out_of_sample_accuracy": check["out_of_sample_accuracy"], "epochs": check["epochs"],
            "folds": check["folds"], "model": check["model"], "seconds": seconds, "cpu_seconds": cpu_seconds}


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the CIFAR-10 image-folder tree (train/<class>/, test/<class>/)")
    p.add_argument("--model", default="baseline")
    p.add_argument("--train-images", type=int, default=10000, help="stratified sample of the training split")
    p.add_argument("--test-per-class", type=int, default=10, help="test images linked (unused by the check)")
    p.add_argument("--epochs", type=int, default=4, help="epochs of each fold model (--label-check-epochs)")
    p.add_argument("--run-epochs", type=int, default=1, help="epochs of the run itself (its model is not used)")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--noise", default="0.05,0.10,0.20", help="comma-separated shares of moved images")
    p.add_argument("--precision", default="auto", help="training precision of the run and the fold models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the cifarlab processes")
    p.add_argument("--out", default="bench-out/label-noise")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"started": time.strftime("%Y-%m-%d %H:%M"), "args": vars(args), "levels": []}
    for noise in (float(v) for v in args.noise.split(",")):
        results["levels"].append(one_level(args, noise, out / f"noise-{noise:.2f}"))
        print(json.dumps(results["levels"][-1]), flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    rows = [[f"{r['noise']:.0%}", f"{r['train_images']:,}", f"{r['moved']:,}", f"{r['flagged']:,}",
             f"{r['correctly_flagged']:,}", f"{r['precision']:.3f}", f"{r['recall']:.3f}",
             f"{r['out_of_sample_accuracy']:.3f}", f"{r['seconds']:.0f}", f"{r['cpu_seconds']:.0f}"]
            for r in results["levels"]]
    print(markdown_table(["noise", "train images", "moved", "flagged", "moved and flagged", "precision", "recall",
                          "out-of-fold accuracy", "wall s", "CPU s"], rows))


if __name__ == "__main__":
    main()
