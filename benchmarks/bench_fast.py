"""Time to accuracy of `cifarlab train --recipe fast` (airbench94 on cifarlab's engine) on the real
data, over several seeds, plus a check that the in-memory loader outruns training by at least 10×.

    python benchmarks/bench_fast.py --data ../shared/data/cifar10 --seeds 0,1,2 [--epochs N] [--out DIR]
    python benchmarks/bench_fast.py --data ../shared/data/cifar10 --loader-only
    python benchmarks/bench_fast.py --data ../shared/data/cifar10 --no-loader-check --config widths.yaml --epochs 16
    python benchmarks/bench_fast.py --data ../shared/data/cifar10 --no-loader-check --recipe fast-progressive \
        --vs-port --seeds 0,1,2                   # the recipe against the airbench94 port, interleaved
    python benchmarks/bench_fast.py --data ../shared/data/cifar10 --no-loader-check --vs-port --seeds 0 \
        --variants recipe=- a=benchmarks/configs/a.yaml   # candidates beside the recipe and the port

With --vs-port, each seed runs ../shared/bench/airbench94_muon_cpu.py (the record method ported to this
CPU, unchanged) and then the recipe (and each --variants entry) with that seed, so that port and recipe
are interleaved in one run; the ratio is the recipe's time to accuracy over the port's, timed the same
way (training plus the TTA evaluation). Each variant is LABEL=CONFIG.yaml (settings added to the recipe's;
`-`: none).

Like airbench, the recipe trains on all 50,000 training images and reports the test split: its
hyperparameters are the paper's, not tuned here, so no validation split is carved out.
Time to accuracy = training (including the whitening initialization) + the flip-translate TTA
evaluation of the 10,000 test images, both as recorded by the run (summary.json), in seconds and as a
multiple of the reference workload (../shared/bench/reference_workload.py) timed before and after
the runs in the same process.

Loader check: images/s of DeviceLoader over the real training images with each augmentation, against
the training images/s of the fastest model given (forward + backward + step, bf16, channels_last, on
random batches): the ratio must be >= 10.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import SHARED, best_seconds, markdown_table, mean_std, read_summary, reference_seconds, run_cli

from cifarlab.augment import create_augment
from cifarlab.data import load_data
from cifarlab.data.loader import DeviceLoader
from cifarlab.data.types import CIFAR10_MEAN, CIFAR10_STD
from cifarlab.models import create_model, get_recipe
from cifarlab.rundir.device import autocast, resolve_precision


def loader_images_per_second(images, labels, augment: str, batch_size: int, epochs: int = 2) -> float:
    aug = create_augment(augment)
    loader = DeviceLoader(images, labels, batch_size=batch_size, device=torch.device("cpu"), mean=CIFAR10_MEAN,
                          std=CIFAR10_STD, shuffle=True, drop_last=True, augment=aug if aug.transforms else None)
    best = 0.0
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        start, seen = time.perf_counter(), 0
        for x, _ in loader:
            seen += len(x)
        best = max(best, seen / (time.perf_counter() - start))
    return best


def training_images_per_second(name: str, images_per_window: int = 4096) -> float:
    """Best of 3 windows of about 4,096 images' training steps at the model's recipe batch size, after
    2 warm-up steps."""
    torch.manual_seed(0)
    batch = get_recipe(name).batch_size
    steps = max(1, images_per_window // batch)
    model = create_model(name).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    precision = resolve_precision("auto", torch.device("cpu"))

    def step():
        with autocast(torch.device("cpu"), precision):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch * steps / best_seconds(step, steps)


def loader_check(data: str, models: list[str], augments: list[str]) -> tuple[list[dict], dict[str, float]]:
    dataset = load_data(data)
    images, labels = dataset.train.images, dataset.train.labels
    rates = {m: training_images_per_second(m) for m in models}
    fastest = max(rates.values())
    rows = []
    for augment in augments:
        for batch in (128, 2000):
            rate = loader_images_per_second(images, labels, augment, batch)
            rows.append({"augment": augment, "batch": batch, "loader_img_s": rate, "ratio": rate / fastest})
    return rows, rates


PORT = SHARED / "bench" / "airbench94_muon_cpu.py"


def run_port(data: str, seed: int) -> dict:
    """The airbench94_muon CPU port with this seed: its time to accuracy (training + TTA) and accuracy."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(PORT), data, "--seed", str(seed)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{PORT} failed:\n{proc.stderr[-2000:]}")
    found = dict(re.findall(r"(airbench_cpu_seconds|airbench_cpu_accuracy|train_seconds|tta_seconds)=([0-9.]+)",
                            proc.stdout))
    return {"seed": seed, "variant": "port", "test_accuracy": float(found["airbench_cpu_accuracy"]),
            "train_seconds": float(found["train_seconds"]), "tta_seconds": float(found["tta_seconds"]),
            "seconds": float(found["airbench_cpu_seconds"]), "process_wall_seconds": time.perf_counter() - start}


def run_seed(data: str, seed: int, out: Path, epochs: int | None, recipe: str = "fast",
             config: str | None = None, label: str = "", extra: tuple[str, ...] = ()) -> dict:
    run_dir = out / (f"{label}-seed{seed}" if label else f"seed{seed}")
    args = ["train", "--recipe", recipe, "--data", data, "--seed", str(seed), "--out", str(run_dir), "--overwrite",
            "--quiet", *extra]
    args += (["--epochs", str(epochs)] if epochs else []) + (["--config", config] if config else [])
    start = time.perf_counter()
    run_cli(args)
    wall = time.perf_counter() - start
    s = read_summary(run_dir)
    return {"seed": seed, "variant": label or recipe, "test_accuracy": s["test_accuracy"],
            "train_seconds": s["train_seconds"],
            "tta_seconds": s["test_seconds"], "seconds": s["train_seconds"] + s["test_seconds"],
            "process_wall_seconds": wall, "epochs": s["epochs_completed"], "train_img_s": s["images_per_second"]}


def load_average() -> str:
    return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--recipe", default="fast", help="the `cifarlab train --recipe` to time (default: fast)")
    p.add_argument("--config", help="a YAML of further settings for every run, e.g. model_kwargs: {widths: [...]}")
    p.add_argument("--loader-only", action="store_true", help="only the loader-vs-training throughput check")
    p.add_argument("--no-loader-check", action="store_true", help="only the timed runs")
    p.add_argument("--models", default="baseline", help="models whose training rate the loader must beat "
                                                          "(baseline: the fastest in the zoo)")
    p.add_argument("--augments", default="none,standard,altflip+translate")
    p.add_argument("--vs-port", action="store_true", help="run the airbench94 CPU port before each seed")
    p.add_argument("--variants", nargs="+", metavar="LABEL=CONFIG",
                   help="several variants of the recipe, each LABEL=CONFIG.yaml (`-`: the recipe alone)")
    p.add_argument("--device", default="cpu", help="the runs' --device (cuda: no reference workload, a CPU measure)")
    p.add_argument("--compile", default="auto", help="the runs' --compile (auto, on, off)")
    p.add_argument("--out", default="bench-out/fast")
    args = p.parse_args()
    on_cpu = args.device == "cpu"
    extra = ("--device", args.device, "--compile", args.compile)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load = load_average()
    report = {"uptime_before": load, "data": args.data, "recipe": args.recipe, "config": args.config,
              "epochs": args.epochs, "device": args.device, "compile": args.compile, "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None}

    if not args.no_loader_check:
        rows, rates = loader_check(args.data, args.models.split(","), args.augments.split(","))
        report.update(loader=rows, training_img_s=rates)
        print("training img/s (bf16, recipe batch): " + ", ".join(f"{m} {r:,.0f}" for m, r in rates.items()))
        print(markdown_table(["augment", "batch", "loader img/s", "× fastest training"],
                             [[r["augment"], r["batch"], f"{r['loader_img_s']:,.0f}", f"{r['ratio']:.0f}×"]
                              for r in rows]))
    if not args.loader_only:
        variants = [v.split("=", 1) for v in args.variants] if args.variants else [["", args.config or "-"]]
        ref = [reference_seconds()] if on_cpu else []
        runs = []
        for seed in (int(s) for s in args.seeds.split(",")):
            if args.vs_port:
                runs.append(run_port(args.data, seed))
                print(f"port seed {seed}: {runs[-1]['test_accuracy']:.4f} in {runs[-1]['seconds']:.1f} s", flush=True)
            for label, config in variants:
                runs.append(run_seed(args.data, seed, out, args.epochs, args.recipe,
                                     None if config == "-" else config, label, extra))
                print(f"{runs[-1]['variant']} seed {seed}: {runs[-1]['test_accuracy']:.4f} in "
                      f"{runs[-1]['seconds']:.1f} s", flush=True)
            (out / "runs_so_far.json").write_text(json.dumps(runs, indent=2))  # a long run's results survive a crash
        if on_cpu:
            ref.append(reference_seconds())
        port_seconds = {r["seed"]: r["seconds"] for r in runs if r["variant"] == "port"}
        for r in runs:
            if ref:
                r["multiple_of_reference"] = r["seconds"] / min(ref)
            if r["seed"] in port_seconds:
                r["vs_port"] = r["seconds"] / port_seconds[r["seed"]]
        report.update(runs=runs, reference_seconds=ref, uptime_after=load_average())
        report["summary"] = {}
        for variant in dict.fromkeys(r["variant"] for r in runs):
            mine = [r for r in runs if r["variant"] == variant]
            report["summary"][variant] = {"n": len(mine), **{k: mean_std([r[k] for r in mine]) for k in (
                "test_accuracy", "seconds") + (("multiple_of_reference",) if ref else ())
                + (("vs_port",) if port_seconds else ())}}
        print(markdown_table(["variant", "seed", "test acc (TTA)", "train s", "TTA s", "time to acc s", "× ref",
                              "× port"],
                             [[r["variant"], r["seed"], f"{r['test_accuracy']:.4f}", f"{r['train_seconds']:.1f}",
                               f"{r['tta_seconds']:.1f}", f"{r['seconds']:.1f}",
                               f"{r['multiple_of_reference']:.0f}" if ref else "",
                               f"{r['vs_port']:.3f}" if "vs_port" in r else ""] for r in runs]))
        if ref:
            print(f"reference workload {ref[0]:.2f} s before, {ref[1]:.2f} s after")
        print(report["summary"])
    (out / "bench_fast.json").write_text(json.dumps(report, indent=2))
    print(f"numbers: {out / 'bench_fast.json'}")


if __name__ == "__main__":
    main()
