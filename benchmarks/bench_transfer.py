"""The transfer figure, measured without ImageNet weights: cifarlab's own checkpoint as the
pretrained model. A model is trained on five CIFAR-10 classes (airplane, automobile, bird, cat, deer);
then on the other five (dog, frog, horse, ship, truck) with only a fraction (10%) of their training
labels, three ways with the same recipe and the same number of epochs:

    frozen      --init-from PRETRAIN --freeze backbone     (feature extraction: only the new head trains)
    fine-tuned  --init-from PRETRAIN                       (every layer trains)
    scratch     no starting weights

plus, on the same frozen features, the `cifarlab probe` heads (a linear layer and scikit-learn's
logistic regression, from cached features). The validation split (500 images by default, stratified,
by seed) is carved from each phase's training split before the label fraction is taken; it is only
watched, never used to pick an epoch: the test accuracy (the 5,000 test images of the five target
classes) is that of the last epoch. One pretraining run (seed 0); each
target arm runs with every seed (its split, label subset, head init and batch order change).

    python benchmarks/bench_transfer.py --data ../shared/data/cifar10 --model baseline --pretrain-epochs 2 \
        --epochs 5 --seeds 0 1 2 --no-reference --out bench-out/transfer

The recorded run uses the Keras baseline rather than resnet20: on the shared 2-core machine, with five
other training jobs running (the baseline trained at 44 img/s there, 2,200 quiet), resnet20 did not
finish one pretraining epoch in 8 minutes, and the
baseline trains 1.6x faster per image (1,458 vs 936 img/s in BENCHMARKS.md's issue-3 comparison).
--model resnet20 runs the same protocol.
    python benchmarks/bench_transfer.py --data TINY_TREE --source-classes cat --target-classes dog,frog \
        --pretrain-epochs 1 --epochs 1 --seeds 0 --label-fraction 0.5 --no-reference   # smoke
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import SHARED, markdown_table, mean_std, read_summary, reference_seconds, run_cli

SOURCE = "airplane,automobile,bird,cat,deer"
TARGET = "dog,frog,horse,ship,truck"
ARMS = {"frozen": ["--freeze", "backbone"], "fine-tuned": [], "scratch": None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(SHARED / "data" / "cifar10"))
    p.add_argument("--model", default="baseline")
    p.add_argument("--source-classes", default=SOURCE)
    p.add_argument("--target-classes", default=TARGET)
    p.add_argument("--label-fraction", type=float, default=0.1, help="of the target's training labels (default 0.1)")
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("--epochs", type=int, default=5, help="epochs of every target arm (default 5)")
    p.add_argument("--augment", default="standard", help="every run's augmentation (default standard)")
    p.add_argument("--val-size", type=int, default=500, help="validation images carved from each phase's train "
                                                             "split (default 500)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--precision", default="bf16")
    p.add_argument("--no-reference", action="store_true", help="skip the reference workload (smoke runs)")
    p.add_argument("--out", default="bench-out/transfer")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    calib = [] if args.no_reference else [reference_seconds()]
    common = ["--model", args.model, "--data", args.data, "--precision", args.precision, "--augment", args.augment,
              "--val-size", str(args.val_size), "--quiet"]
    wall = time.perf_counter()

    pretrain = out / "pretrain"
    if not (pretrain / "summary.json").exists():
        run_cli(["train", *common, "--classes", args.source_classes, "--epochs", str(args.pretrain_epochs),
                 "--seed", "0", "--out", str(pretrain), "--overwrite"])
    pre = read_summary(pretrain)
    print(json.dumps({"pretrain_test_accuracy": pre["test_accuracy"], "train_seconds": pre["train_seconds"]}),
          flush=True)

    runs = []
    target = ["--classes", args.target_classes, "--label-fraction", str(args.label_fraction),
              "--epochs", str(args.epochs)]
    for seed in args.seeds:
        for arm, flags in ARMS.items():
            run = out / f"{arm}-seed{seed}"
            start = ["--init-from", str(pretrain), *flags] if flags is not None else []
            run_cli(["train", *common, *target, *start, "--seed", str(seed), "--out", str(run), "--overwrite"])
            s = read_summary(run)
            runs.append({"arm": arm, "seed": seed, "test_accuracy": s["test_accuracy"],
                         "val_accuracy": s["val_accuracy"], "train_seconds": s["train_seconds"],
                         "train_images": s["train_images"]})
            print(json.dumps(runs[-1]), flush=True)
        t0 = time.perf_counter()
        proc = run_cli(["probe", "--model", args.model, "--init-from", str(pretrain), "--data", args.data,
                        "--precision", args.precision, "--val-size", str(args.val_size), "--classes",
                        args.target_classes, "--label-fraction",
                        str(args.label_fraction), "--seed", str(seed), "--quiet"])
        probe = json.loads(proc.stdout.strip().splitlines()[-1])
        for head in ("linear", "logistic"):
            runs.append({"arm": f"probe-{head}", "seed": seed, "test_accuracy": probe[head]["test_accuracy"],
                         "val_accuracy": probe[head].get("val_accuracy"), "train_seconds": probe[head]["seconds"],
                         "train_images": probe["train_images"], "probe_wall_seconds": time.perf_counter() - t0,
                         "feature_seconds": probe["feature_seconds"]})
            print(json.dumps(runs[-1]), flush=True)
    if not args.no_reference:
        calib.append(reference_seconds())
    wall = time.perf_counter() - wall

    labels = {"frozen": "from the checkpoint, frozen (head only)", "fine-tuned": "from the checkpoint, fine-tuned",
              "scratch": "from scratch", "probe-linear": "probe: linear head on cached features (AdamW, 50 ep)",
              "probe-logistic": "probe: sklearn LogisticRegression on cached features"}
    rows = []
    for arm, label in labels.items():
        rs = [r for r in runs if r["arm"] == arm]
        acc, sd = mean_std([r["test_accuracy"] for r in rs])
        val = mean_std([r["val_accuracy"] for r in rs])[0]
        t, t_sd = mean_std([r["train_seconds"] for r in rs])
        rows.append([label, f"{acc:.4f} ± {sd:.4f}", f"{val:.4f}", f"{t:.1f} ± {t_sd:.1f}",
                     ", ".join(f"{r['test_accuracy']:.4f}" for r in rs)])
    table = markdown_table([f"{args.model} on {args.target_classes} ({args.label_fraction:.0%} labels, "
                            f"n={len(args.seeds)})", "test acc", "val acc", "train s", "per seed"], rows)
    (out / "results.json").write_text(json.dumps({
        "pretrain": {"test_accuracy": pre["test_accuracy"], "train_seconds": pre["train_seconds"],
                     "epochs": args.pretrain_epochs, "classes": args.source_classes},
        "runs": runs, "calib_seconds": calib, "wall_seconds": wall, "args": vars(args), "table": table}, indent=2))
    print(f"pretraining on {args.source_classes}: test accuracy {pre['test_accuracy']:.4f} after "
          f"{args.pretrain_epochs} epochs, {pre['train_seconds']:.0f} s of training")
    print(table)
    print(f"wall time {wall:.0f} s; reference workload {calib} s")


if __name__ == "__main__":
    main()
