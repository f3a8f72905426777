"""ImageNet transfer on real weights (TF EfficientNet-Lite0 from `cifarlab[pretrained]`), by the
input size the 32x32 CIFAR-10 images are upsampled to. Five stages, each selectable with --stages:

    zero-shot  no training: the ImageNet head read through imagenet_to_cifar.py (`cifarlab zero-shot`),
               on the test split (or --zero-shot-limit images of it), sum and max aggregation
    probe      `cifarlab probe`: cached frozen features, linear head (AdamW) and logistic regression;
               features of --train-size training images (stratified, per seed), 5,000 validation, 10,000 test
    notebook   the Keras notebook's transfer experiment: frozen backbone + Dense(512)-ReLU-Dropout(0.5)-Dense(10)
               head (`--freeze backbone --head-hidden 512`), Adam, 2 epochs
    finetune   every layer trains for --budget-minutes of wall clock (`--budget-minutes`, the schedule follows
               the clock; the timm recipe: SGD lr 0.1, cosine, batch 128; standard augmentation) with
               --backbone-lr-scale, against the Keras baseline trained for the same wall clock (same augmentation)
    plot       accuracy against input size for each mode, from the results of the stages run so far

Results go to OUT/<stage>.json (one row per size, seed and arm; a re-run replaces the rows it measures again), the table
to stdout, the plot to --plot. Every stage runs cifarlab's CLI in a fresh process, like a user.

    python benchmarks/bench_imagenet_transfer.py --stages zero-shot --sizes 32 64 128 224      # ~15 min CPU
    python benchmarks/bench_imagenet_transfer.py --stages probe --sizes 32 64 96 --train-size 5000 --seeds 0
    python benchmarks/bench_imagenet_transfer.py --stages notebook --sizes 32 96 128 --train-size 10000
    python benchmarks/bench_imagenet_transfer.py --stages finetune --sizes 64 96 128 --budget-minutes 20
    python benchmarks/bench_imagenet_transfer.py --stages finetune --sizes 64 --seeds 1 --arms finetune
    python benchmarks/bench_imagenet_transfer.py --stages plot
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import ROOT, SHARED, markdown_table, mean_std, read_summary, run_cli

KERAS_VGG16 = 0.58  # the Keras notebook's frozen ImageNet VGG16 + dense head, 2 epochs at 32x32: its published figure
BASELINE = 0.6738  # cifarlab's baseline from scratch, 2 epochs on 45,000 images, 3 seeds (BENCHMARKS.md)
MARKERS = {"zero-shot": "v", "probe": "o", "notebook": "s", "finetune": "D", "baseline": "x"}
STAGES = ("zero-shot", "probe", "notebook", "finetune", "plot")
DEFAULT_SIZES = {"zero-shot": [32, 64, 128, 224], "probe": [32, 64, 96, 128, 160, 224], "notebook": [32, 96, 128],
                 "finetune": [64, 96, 128]}


def zero_shot(args, size: int) -> list[dict]:
    cmd = ["zero-shot", "--model", args.model, "--input-size", str(size), "--data", args.data, "--precision",
           args.precision, "--quiet"]
    if args.zero_shot_limit:
        cmd += ["--limit", str(args.zero_shot_limit)]
    r = json.loads(run_cli(cmd).stdout.strip().splitlines()[-1])
    row = {"size": size, "seed": None, "accuracy": r["accuracy_by_aggregate"]["sum"],
           "accuracy_max": r["accuracy_by_aggregate"]["max"], "images": r["images"],
           "images_per_second": r["images_per_second"], "seconds": r["seconds"], "per_class": r["per_class"],
           "mass_on_mapped": r["mass_on_mapped"], "confusion": r["confusion"], "top_imagenet": r["top_imagenet"]}
    print(json.dumps({k: v for k, v in row.items() if k not in ("confusion", "top_imagenet")}), flush=True)
    return [row]


def probe(args, size: int) -> list[dict]:
    rows = []
    for seed in args.seeds:
        cmd = ["probe", "--model", args.model, "--pretrained", "imagenet", "--input-size", str(size), "--data",
               args.data, "--precision", args.precision, "--seed", str(seed), "--quiet"]
        if args.train_size:
            cmd += ["--train-size", str(args.train_size)]
        r = json.loads(run_cli(cmd).stdout.strip().splitlines()[-1])
        images = r["train_images"] + 5000 + 10000  # train subset + the real data's validation and test splits
        computed = not any(r["cache_hits"].values())
        rows.append({"size": size, "seed": seed, "accuracy": r["linear"]["test_accuracy"],
                     "val_accuracy": r["linear"]["val_accuracy"],
                     "logistic_accuracy": r["logistic"]["test_accuracy"], "train_images": r["train_images"],
                     "feature_seconds": r["feature_seconds"],
                     "extract_images_per_second": images / r["feature_seconds"] if computed else None})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def arm_flags(args, arm: str, size: int) -> list[str]:
    """The `cifarlab train` flags of one arm. The Keras baseline takes the 32x32 images as they are, so its
    runs do not depend on the size: it runs once per seed and its rows carry size 32."""
    if arm == "notebook":
        return ["--model", args.model, "--pretrained", "imagenet", "--input-size", str(size), "--freeze", "backbone",
                "--head-hidden", "512", "--optimizer", "adam", "--lr", "1e-3", "--schedule", "constant",
                "--epochs", "2", "--augment", "none"]
    if arm == "finetune":
        return ["--model", args.model, "--pretrained", "imagenet", "--input-size", str(size),
                "--backbone-lr-scale", str(args.backbone_lr_scale), "--epochs", "100",
                "--budget-minutes", str(args.budget_minutes), "--augment", "standard"]
    return ["--model", "baseline", "--epochs", "100", "--budget-minutes", str(args.budget_minutes),
            "--augment", "standard"]


def train_run(args, stage: str, arm: str, size: int, seed: int) -> dict:
    run_dir = Path(args.out) / (f"{stage}-{size}-seed{seed}" + ("" if arm == stage else f"-{arm}"))
    cmd = ["train", "--data", args.data, "--precision", args.precision, "--seed", str(seed), "--quiet",
           "--out", str(run_dir), "--overwrite", *arm_flags(args, arm, size)]
    if args.train_size:
        cmd += ["--train-size", str(args.train_size)]
    run_cli(cmd, timeout=4 * 3600)
    s = read_summary(run_dir)
    row = {"size": size, "seed": seed, "arm": arm, "accuracy": s["test_accuracy"],
           "val_accuracy": s.get("val_accuracy"), "train_seconds": s["train_seconds"],
           "epochs": s.get("epochs_completed", s.get("epochs"))}
    print(json.dumps(row), flush=True)
    return row


def training_jobs(args, stage: str, sizes: list[int]) -> list[tuple[str, int, int]]:
    """(arm, size, seed) for each run, seed by seed: the baseline once per seed, at its own 32 px."""
    arms = args.arms or ([stage, "baseline"] if stage == "finetune" else [stage])
    per_seed = [(arm, size) for size in sizes for arm in arms if arm != "baseline"]
    per_seed += [("baseline", 32)] if "baseline" in arms else []
    return [(arm, size, seed) for seed in args.seeds for arm, size in per_seed]


def table(stage: str, rows: list[dict]) -> str:
    out = []
    for size in sorted({r["size"] for r in rows}):
        for arm in sorted({r.get("arm", stage) for r in rows}):
            rs = [r for r in rows if r["size"] == size and r.get("arm", stage) == arm]
            if not rs:
                continue
            acc, sd = mean_std([r["accuracy"] for r in rs])
            extra = ""
            if stage == "zero-shot":
                extra = (f"max-aggregate {rs[0]['accuracy_max']:.4f}; {rs[0]['images']:,} test images; "
                         f"{rs[0]['images_per_second']:.0f} images/s")
            elif stage == "probe":
                lo, lo_sd = mean_std([r["logistic_accuracy"] for r in rs])
                speeds = [r["extract_images_per_second"] for r in rs if r["extract_images_per_second"]]
                extra = (f"logistic {lo:.4f} ± {lo_sd:.4f}; {rs[0]['train_images']:,} train images; extraction "
                         + (f"{sum(speeds) / len(speeds):.0f} images/s" if speeds else "cached"))
            else:
                t = mean_std([r["train_seconds"] for r in rs])[0]
                extra = f"{t:.0f} s training; epochs {', '.join(str(r['epochs']) for r in rs)}"
            out.append([stage if arm == stage else f"{stage}: {arm}", size, f"{acc:.4f} ± {sd:.4f}", len(rs), extra])
    return markdown_table(["mode", "input px", "test accuracy", "n", "notes"], out)


def plot(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ticks = set()
    for stage in STAGES[:-1]:
        path = Path(args.out) / f"{stage}.json"
        if not path.exists():
            continue
        saved = json.loads(path.read_text())
        rows, minutes = saved["rows"], saved["args"].get("budget_minutes", args.budget_minutes)
        for arm in sorted({r.get("arm", stage) for r in rows}):
            sizes = sorted({r["size"] for r in rows if r.get("arm", stage) == arm})
            if arm == "baseline":  # one figure at its own 32 px, the bar the fine-tuned points must clear
                acc, sd = mean_std([r["accuracy"] for r in rows if r.get("arm") == arm])
                n = sum(r.get("arm") == arm for r in rows)
                ax.axhline(acc, color="tab:purple", ls="--", lw=1,
                           label=f"Keras baseline from scratch, same {minutes:g} minutes (32 px, n={n})")
                ax.axhspan(acc - sd, acc + sd, color="tab:purple", alpha=0.12, lw=0)
                continue
            ticks.update(sizes)
            stats = [mean_std([r["accuracy"] for r in rows if r["size"] == s and r.get("arm", stage) == arm])
                     for s in sizes]
            label = {"zero-shot": "zero-shot (no training)", "probe": "linear probe (cached features)",
                     "notebook": "frozen + Dense(512) head, 2 epochs",
                     "finetune": f"fine-tuned, {minutes:g} minutes of training"}.get(arm, arm)
            ax.errorbar(sizes, [m for m, _ in stats], yerr=[s for _, s in stats], marker=MARKERS.get(arm, "o"),
                        capsize=3, label=label, color="tab:purple" if arm == "finetune" else None)
    ax.axhline(KERAS_VGG16, color="grey", ls="--", lw=1, label="Keras notebook: frozen VGG16 at 32 px (its figure)")
    ax.axhline(BASELINE, color="tab:red", ls="-.", lw=1,
               label="cifarlab baseline from scratch at 32 px, 2 epochs, all images")
    ax.axhline(0.1, color="lightgrey", ls=":", lw=1, label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(ticks), [str(t) for t in sorted(ticks)])
    ax.minorticks_off()
    ax.set_xlabel("input size (32x32 CIFAR-10 upsampled to px)")
    ax.set_ylabel("CIFAR-10 test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"ImageNet transfer: {args.model} (TF EfficientNet-Lite weights)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=120)
    print(f"plot: {args.plot}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(SHARED / "data" / "cifar10"))
    p.add_argument("--model", default="timm:efficientnet_lite0")
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    p.add_argument("--sizes", type=int, nargs="+", help="input sizes (default: each stage's own, see the doc)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-size", type=int, help="training images (stratified subset; default: all 45,000)")
    p.add_argument("--zero-shot-limit", type=int, help="zero-shot on a stratified subset of the test split")
    p.add_argument("--budget-minutes", type=float, default=20.0, help="wall clock of each finetune/baseline run")
    p.add_argument("--backbone-lr-scale", type=float, default=0.1)
    p.add_argument("--arms", nargs="+", choices=("finetune", "baseline", "notebook"),
                   help="the training stages' arms (default: finetune and the baseline; notebook)")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--out", default="bench-out/imagenet-transfer")
    p.add_argument("--plot", default=str(ROOT / "docs" / "imagenet_transfer.png"))
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for stage in args.stages:
        if stage == "plot":
            plot(args)
            continue
        sizes = args.sizes or DEFAULT_SIZES[stage]
        path = Path(args.out) / f"{stage}.json"
        # Rows from an earlier run of the stage are kept unless this run measures the same size, seed and arm
        # again: sizes and seeds can be measured a few at a time.
        rows = {row_key(r, stage): r for r in json.loads(path.read_text())["rows"]} if path.exists() else {}
        start = time.perf_counter()
        if stage in ("zero-shot", "probe"):
            for size in sizes:
                new = zero_shot(args, size) if stage == "zero-shot" else probe(args, size)
                rows.update({row_key(r, stage): r for r in new})
                text = save(path, list(rows.values()), stage, args, time.perf_counter() - start)  # each size
        else:
            for arm, size, seed in training_jobs(args, stage, sizes):
                r = train_run(args, stage, arm, size, seed)
                rows[row_key(r, stage)] = r
                text = save(path, list(rows.values()), stage, args, time.perf_counter() - start)  # each run
        print(text, flush=True)


def row_key(row: dict, stage: str) -> tuple:
    return row["size"], row["seed"], row.get("arm", stage)


def save(path: Path, rows: list[dict], stage: str, args, seconds: float) -> str:
    """Write a stage's rows (and their table) so that an interrupted run keeps what it finished."""
    rows = sorted(rows, key=lambda r: (r["size"], r["seed"] or 0, r.get("arm", stage)))
    text = table(stage, rows)
    path.write_text(json.dumps({"rows": rows, "args": vars(args), "wall_seconds": seconds, "table": text}, indent=2))
    return text


if __name__ == "__main__":
    main()
