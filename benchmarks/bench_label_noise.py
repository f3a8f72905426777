"""The label check where the truth is known, and what acting on it buys.

Three modes, each printing a markdown table for BENCHMARKS.md (and writing results.json under --out):

1. Injected noise (default). For each noise level the script builds an image-folder tree of symbolic links
   to the real CIFAR-10 PNGs: a seeded, stratified sample of --train-images training images (all 50,000 when
   it asks for that many) of which a known set is linked into a wrong class folder, plus --test-per-class test
   images per class (only so that the tree is complete). Levels: uniform noise (--noise, each moved image to
   a uniformly chosen wrong class) and class-dependent noise (--pair-noise RATE: that share of the images of
   each source class of PAIRS moved to its partner: cat <-> dog, truck -> automobile, bird -> airplane,
   deer -> horse). It trains one short run per level (its model matters only to --fold-model run), runs
   `cifarlab analyze RUN --label-check --label-check-model M` for every M of --fold-model, and scores the
   flagged set against the moved images:

       precision = |flagged ∩ moved| / |flagged|   recall = |flagged ∩ moved| / |moved|   F1 = their harmonic mean

   with the check's own seconds (analysis.json), the analyze wall time and the check's trust numbers.
2. --retrain: test accuracy of --recipe (baseline or fast) trained on clean labels, on --retrain-noise noisy
   labels, and on the noisy labels with `--drop-label-issues` (and with `--label-issues-action relabel`)
   after a label check of the noisy run, over --seeds; and the share of the clean-vs-noisy gap each closes.
3. --real: the check on the real training labels (no noise injected): how many it flags, its trust
   numbers, and a gallery PNG of the --gallery least self-confident flagged images for a person to judge.

Every run uses --val-size 0 (the check then sees every training image). These are accuracy figures, not
timings: they may run on a busy machine (the CPU seconds of the child processes are recorded beside the
wall time). Each level gets its own feature cache, so the features model's time includes extracting them.

    python benchmarks/bench_label_noise.py --data ../shared/data/cifar10 --train-images 10000 \\
        --fold-model features,fast,run --noise 0.05,0.10,0.20 --pair-noise 0.2 --out bench-out/label-noise
    python benchmarks/bench_label_noise.py --data ../shared/data/cifar10 --train-images 50000 --retrain \\
        --recipe fast --seeds 0,1,2 --out bench-out/label-noise-retrain
    python benchmarks/bench_label_noise.py --data ../shared/data/cifar10 --train-images 50000 --real \\
        --out bench-out/label-noise-real
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
from _common import markdown_table, read_summary, run_cli

from cifarlab.experiments.grid import format_mean_std

# Class-dependent noise: each source class's images go to the partner (the confusions of CIFAR-10 users report).
PAIRS = {"cat": "dog", "dog": "cat", "truck": "automobile", "bird": "airplane", "deer": "horse"}


# --- the trees ----------------------------------------------------------------------------------------------------

def class_files(root: Path, split: str) -> dict[str, list[Path]]:
    """The image files of one split, by class folder, sorted by name (a stable order)."""
    return {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() == ".png")
            for d in sorted((root / split).iterdir()) if d.is_dir()}


def noisy_tree(data: Path, out: Path, kind: str, rate: float, train_images: int, test_per_class: int,
               seed: int) -> set[str]:
    """Build the tree of links under `out`; return the moved images' paths as analyze names them
    (train/<wrong class>/<file>). kind: "uniform" (rate of all images, each to a random wrong class) or
    "pairs" (rate of each PAIRS source class, to its partner)."""
    rng = np.random.default_rng(seed)
    train, test = class_files(data, "train"), class_files(data, "test")
    classes = list(train)
    per_class = min(train_images // len(classes), min(len(f) for f in train.values()))
    chosen = [(c, f) for c in classes for f in rng.choice(train[c], per_class, replace=False)]
    if kind == "uniform":
        moved_index = set(rng.choice(len(chosen), round(rate * len(chosen)), replace=False).tolist())
    else:
        moved_index = set()
        for source in PAIRS:
            members = [i for i, (c, _) in enumerate(chosen) if c == source]
            moved_index |= set(rng.choice(members, round(rate * len(members)), replace=False).tolist())
    moved = set()
    for i, (c, f) in enumerate(chosen):
        if i in moved_index:
            c = PAIRS[c] if kind == "pairs" else classes[(classes.index(c) + rng.integers(1, len(classes))) %
                                                         len(classes)]
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


# --- one check ----------------------------------------------------------------------------------------------------

def train_run(args: argparse.Namespace, tree: Path, out: Path, env: dict, seed: int, *extra: str,
              recipe: str | None = None) -> Path:
    """A run on `tree` (all its training images: --val-size 0); `recipe` baseline or fast."""
    model = ["--recipe", "fast"] if recipe == "fast" else ["--model", args.model, "--epochs", str(args.run_epochs)]
    run_cli(["train", *model, "--data", str(tree), "--val-size", "0", "--seed", str(seed), "--precision",
             args.precision, "--out", str(out), "--overwrite", "--quiet", *extra], env=env)
    return out


def label_check(args: argparse.Namespace, run: Path, fold_model: str, out: Path, env: dict) -> tuple[dict, float]:
    """`cifarlab analyze RUN --label-check` with this fold model: (analysis.json's label_check, wall seconds)."""
    extra = ["--label-check-folds", str(args.folds)] if args.folds else []
    if fold_model == "features" and args.input_size:
        extra += ["--label-check-input-size", str(args.input_size)]
    if fold_model != "features" and args.fold_epochs:
        extra += ["--label-check-epochs", str(args.fold_epochs)]
    start = time.perf_counter()
    run_cli(["analyze", str(run), "--label-check", "--label-check-model", fold_model, *extra,
             "--robustness-images", "0", "--out", str(out)], env=env)
    seconds = time.perf_counter() - start
    return json.loads((out / "analysis.json").read_text())["label_check"], seconds


def score(check: dict, moved: set[str]) -> dict:
    flagged = {row["file"] for row in check["issues"]}
    hits = len(flagged & moved)
    precision = hits / len(flagged) if flagged else None
    recall = hits / len(moved) if moved else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    return {"moved": len(moved), "flagged": len(flagged), "correctly_flagged": hits, "precision": precision,
            "recall": recall, "f1": f1}


def _env(out: Path, args: argparse.Namespace) -> dict:
    return {"CIFARLAB_CACHE": str(out / "cache"), "OMP_NUM_THREADS": str(args.threads)}


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- 1. injected noise ----------------------------------------------------------------------------------------------

def noise_levels(args: argparse.Namespace) -> list[tuple[str, float]]:
    return ([("uniform", float(v)) for v in args.noise.split(",") if v] +
            [("pairs", float(v)) for v in args.pair_noise.split(",") if v])


def one_level(args: argparse.Namespace, kind: str, rate: float, out: Path) -> list[dict]:
    """Tree and run for one noise level, then a label check and its score per fold model."""
    tree = out / "data"
    moved = noisy_tree(Path(args.data), tree, kind, rate, args.train_images, args.test_per_class, args.seed)
    run = train_run(args, tree, out / "run", _env(out, args), args.seed)
    rows = []
    for fold_model in args.fold_model.split(","):
        env = {**_env(out / fold_model, args)}  # a fresh cache: the features model's time includes extraction
        cpu_start = _children_cpu_seconds()
        check, wall = label_check(args, run, fold_model, out / fold_model / "analysis", env)
        rows.append({"fold_model": fold_model, "noise": kind, "rate": rate, "train_images": check["images"],
                     **score(check, moved), "estimated_noise_rate": check["estimated_noise_rate"],
                     "out_of_sample_accuracy": check["out_of_sample_accuracy"],
                     "kept_accuracy": check["kept_accuracy"], "warning": bool(check.get("warning")),
                     "check_seconds": check["seconds"], "analyze_seconds": wall,
                     "cpu_seconds": _children_cpu_seconds() - cpu_start,
                     "settings": {k: check.get(k) for k in ("folds", "epochs", "input_size", "C")}})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def noise_table(rows: list[dict]) -> str:
    def f(v, spec=".3f"):
        return "-" if v is None else format(v, spec)
    kind = {"uniform": "uniform", "pairs": "class pairs"}
    return markdown_table(
        ["fold model", "noise", "train images", "moved", "flagged", "precision", "recall", "F1",
         "est. noise rate", "out-of-fold acc.", "acc. on kept", "warning", "check s", "analyze wall s", "CPU s"],
        [[r["fold_model"], f"{kind[r['noise']]} {r['rate']:.0%}", f"{r['train_images']:,}", f"{r['moved']:,}",
          f"{r['flagged']:,}", f(r["precision"]), f(r["recall"]), f(r["f1"]), f(r["estimated_noise_rate"]),
          f(r["out_of_sample_accuracy"]), f(r["kept_accuracy"]), "yes" if r["warning"] else "no",
          f"{r['check_seconds']:.0f}", f"{r['analyze_seconds']:.0f}", f"{r['cpu_seconds']:.0f}"] for r in rows])


# --- 2. retraining ----------------------------------------------------------------------------------------------------

def retrain(args: argparse.Namespace, out: Path) -> list[dict]:
    """Per seed: clean, noisy, noisy less the flagged images, noisy with them relabelled."""
    clean_tree, noisy = out / "clean", out / "noisy"
    noisy_tree(Path(args.data), clean_tree, "uniform", 0.0, args.train_images, args.test_per_class, args.seed)
    moved = noisy_tree(Path(args.data), noisy, args.retrain_kind, args.retrain_noise, args.train_images,
                       args.test_per_class, args.seed)
    fold_model = args.fold_model.split(",")[0]
    rows = []
    for seed in args.seeds:
        where = out / f"seed-{seed}"
        env = _env(out, args)  # one cache: the check's features are the same for every seed
        acc = {}
        acc["clean"] = read_summary(train_run(args, clean_tree, where / "clean", env, seed, recipe=args.recipe))
        noisy_run = train_run(args, noisy, where / "noisy", env, seed, recipe=args.recipe)
        acc["noisy"] = read_summary(noisy_run)
        check, _ = label_check(args, noisy_run, fold_model, noisy_run / "analysis", env)
        for action in ("drop", "relabel"):
            acc[action] = read_summary(train_run(args, noisy, where / action, env, seed, "--drop-label-issues",
                                                 str(noisy_run), "--label-issues-action", action,
                                                 recipe=args.recipe))
        rows.append({"seed": seed, **{k: s["test_accuracy"] for k, s in acc.items()}, **score(check, moved),
                     "fold_model": fold_model, "check_seconds": check["seconds"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def retrain_table(args: argparse.Namespace, rows: list[dict]) -> str:
    def acc(key):
        return format_mean_std([r[key] for r in rows])

    def closed(key):
        shares = [(r[key] - r["noisy"]) / (r["clean"] - r["noisy"]) for r in rows if r["clean"] != r["noisy"]]
        return f"{np.mean(shares):.0%}" if shares else "-"
    f1 = np.mean([r["f1"] or 0 for r in rows])
    return markdown_table(
        ["recipe", "noise", "seeds", "clean labels", "noisy", "noisy, flagged dropped", "noisy, flagged relabelled",
         "gap closed by drop", "by relabel", "check (fold model, F1)"],
        [[args.recipe, f"{args.retrain_kind} {args.retrain_noise:.0%}", ", ".join(map(str, args.seeds)),
          acc("clean"), acc("noisy"), acc("drop"), acc("relabel"), closed("drop"), closed("relabel"),
          f"{rows[0]['fold_model']}, {f1:.3f}"]])


# --- 3. the real labels --------------------------------------------------------------------------------------------

def real(args: argparse.Namespace, out: Path) -> dict:
    """The check on the real training labels, and a gallery of its top flagged images."""
    tree = out / "data"
    noisy_tree(Path(args.data), tree, "uniform", 0.0, args.train_images, args.test_per_class, args.seed)
    env = _env(out, args)
    run = train_run(args, tree, out / "run", env, args.seed)
    fold_model = args.fold_model.split(",")[0]
    check, wall = label_check(args, run, fold_model, out / "analysis", env)
    gallery = draw_gallery(tree, check["issues"], args.gallery, out / f"label_check_top{args.gallery}.png")
    result = {"fold_model": fold_model, "train_images": check["images"], "flagged": check["flagged"],
              **{k: check[k] for k in ("flagged_share", "estimated_noise_rate", "out_of_sample_accuracy",
                                       "kept_accuracy", "warning", "seconds")},
              "analyze_seconds": wall, "gallery": str(gallery)}
    print(json.dumps(result), flush=True)
    return result


def draw_gallery(tree: Path, issues: list[dict], k: int, path: Path) -> Path:
    """The k least self-confident flagged images (titled as analyze titles them), read back from the tree."""
    from PIL import Image

    from cifarlab.analysis.label_issues import plot_label_issues

    shown = issues[:k]
    images = np.stack([np.asarray(Image.open(tree / r["file"]).convert("RGB")) for r in shown]) if shown else \
        np.zeros((0, 32, 32, 3), np.uint8)
    return plot_label_issues(images, [{**r, "index": i} for i, r in enumerate(shown)] + issues[k:], path, k=k)


def real_table(r: dict) -> str:
    return markdown_table(
        ["fold model", "train images", "flagged", "share", "est. noise rate", "out-of-fold acc.", "acc. on kept",
         "warning", "check s", "gallery"],
        [[r["fold_model"], f"{r['train_images']:,}", f"{r['flagged']:,}", f"{r['flagged_share']:.2%}",
          f"{r['estimated_noise_rate']:.3f}", f"{r['out_of_sample_accuracy']:.3f}", f"{r['kept_accuracy']:.3f}",
          "yes" if r["warning"] else "no", f"{r['seconds']:.0f}", Path(r["gallery"]).name]])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the CIFAR-10 image-folder tree (train/<class>/, test/<class>/)")
    p.add_argument("--train-images", type=int, default=10000, help="stratified sample of the training split "
                   "(10000; 50000: all of it)")
    p.add_argument("--fold-model", default="features,fast,run",
                   help="comma-separated --label-check-model choices (--retrain and --real use the first)")
    p.add_argument("--folds", type=int, help="--label-check-folds (default: each fold model's own)")
    p.add_argument("--input-size", type=int, help="--label-check-input-size of the features model")
    p.add_argument("--fold-epochs", type=int, help="--label-check-epochs of the fast and run fold models")
    p.add_argument("--noise", default="0.05,0.10,0.20", help="comma-separated shares of uniform noise")
    p.add_argument("--pair-noise", default="0.20", help="comma-separated rates of class-dependent noise ('' for none)")
    p.add_argument("--model", default="baseline", help="the analyzed run's model (its recipe is --fold-model run's)")
    p.add_argument("--run-epochs", type=int, default=2, help="epochs of the analyzed run (a user's short run)")
    p.add_argument("--test-per-class", type=int, default=10, help="test images linked (--retrain: all 1000)")
    p.add_argument("--retrain", action="store_true", help="mode 2: retrain with and without the flagged images")
    p.add_argument("--recipe", choices=("baseline", "fast"), default="baseline",
                   help="--retrain: baseline (--model for --run-epochs) or the fast recipe")
    p.add_argument("--retrain-noise", type=float, default=0.20)
    p.add_argument("--retrain-kind", choices=("uniform", "pairs"), default="uniform")
    p.add_argument("--seeds", type=lambda t: [int(s) for s in t.split(",")], default=[0, 1, 2])
    p.add_argument("--real", action="store_true", help="mode 3: the check on the real labels and a gallery")
    p.add_argument("--gallery", type=int, default=50, help="--real: flagged images in the gallery")
    p.add_argument("--precision", default="auto", help="training precision of the runs and the fold models")
    p.add_argument("--seed", type=int, default=0, help="the sample and the noise")
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the cifarlab processes")
    p.add_argument("--out", default="bench-out/label-noise")
    args = p.parse_args()
    if args.retrain and args.test_per_class == p.get_default("test_per_class"):
        args.test_per_class = 1000  # the whole test split: test accuracy is the result
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"started": time.strftime("%Y-%m-%d %H:%M"), "args": vars(args)}
    if args.retrain:
        results["retrain"] = retrain(args, out)
        table = retrain_table(args, results["retrain"])
    elif args.real:
        results["real"] = real(args, out)
        table = real_table(results["real"])
    else:
        results["levels"] = []
        for kind, rate in noise_levels(args):
            results["levels"] += one_level(args, kind, rate, out / f"{kind}-{rate:.2f}")
            (out / "results.json").write_text(json.dumps(results, indent=2))
        table = noise_table(results["levels"])
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(table)


if __name__ == "__main__":
    main()
