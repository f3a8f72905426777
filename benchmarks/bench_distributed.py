"""Training throughput of one process against data-parallel ranks under torchrun, on this machine.

    python benchmarks/bench_distributed.py --data ../shared/data/cifar10 --models baseline,resnet20 \
        --train-size 5000 --epochs 2 --repeats 2 --out bench-out/distributed

For each model and set-up PxT (P processes of T threads; default 1x2,1x1,2x1 on 2 cores): P = 1 is
`cifarlab train` with OMP_NUM_THREADS=T; P > 1 is `torchrun --nproc-per-node P -m cifarlab train`
with the same global batch (cifarlab gives each rank cores / P threads, so T must be that). 1x1 shows
what the second core adds within one process, 2x1 what it adds as a second rank.

The figure is the training images/s of the last epoch (the first one warms up oneDNN's kernels),
from metrics.jsonl; validation and the test evaluation are off (`--val-size 0`, evaluate_test: false).
Runs alternate between the set-ups so that drifts of a shared machine's speed hit all of them; each
figure is the best of --repeats.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _common import ROOT, markdown_table, reference_seconds


def train_command(ranks: int) -> list[str]:
    if ranks == 1:
        return [sys.executable, "-m", "cifarlab", "train"]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks), "--standalone",
            "-m", "cifarlab", "train"]


def last_epoch_rate(args: argparse.Namespace, model: str, ranks: int, threads: int, out: Path) -> float:
    out.mkdir(parents=True, exist_ok=True)
    config = out / "config.yaml"
    config.write_text("evaluate_test: false\n")
    cmd = [*train_command(ranks), "--model", model, "--epochs", str(args.epochs), "--train-size", str(args.train_size),
           "--val-size", "0", "--precision", args.precision, "--config", str(config), "--out", str(out / "run"),
           "--overwrite", "--quiet"]
    if args.data:
        cmd += ["--data", args.data]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": path}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    lines = (out / "run" / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])["images_per_second"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="CIFAR-10 (default: as cifarlab train)")
    p.add_argument("--models", default="baseline,resnet20")
    p.add_argument("--setups", default=f"1x{os.cpu_count()},1x1,2x{max(1, os.cpu_count() // 2)}",
                   help="comma-separated PROCESSESxTHREADS (default: 1xCORES,1x1,2xCORES/2)")
    p.add_argument("--train-size", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, help="global batch (default: each model's recipe)")
    p.add_argument("--precision", default="auto")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default="bench-out/distributed")
    p.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                   help="time the reference workload before and after (default on)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    setups = [tuple(int(v) for v in text.split("x")) for text in args.setups.split(",")]
    for n, threads in setups:
        if n > 1 and threads != max(1, os.cpu_count() // n):
            p.error(f"{n}x{threads}: under torchrun cifarlab gives each rank cores / ranks = "
                    f"{max(1, os.cpu_count() // n)} threads")
    models = args.models.split(",")

    ref_before = reference_seconds() if args.reference else None
    load_before = os.getloadavg()[0]
    rates: dict[tuple[str, int, int], list[float]] = {}
    for repeat in range(args.repeats):
        for model in models:
            for n, threads in setups:
                rate = last_epoch_rate(args, model, n, threads, out / f"{model}-{n}x{threads}-{repeat}")
                rates.setdefault((model, n, threads), []).append(rate)
                print(f"{model} {n}x{threads}, repeat {repeat}: {rate:,.0f} img/s", flush=True)
    ref_after = reference_seconds() if args.reference else None
    load_after = os.getloadavg()[0]

    rows = []
    for model in models:
        base = max(rates[(model, *setups[0])])
        for n, threads in setups:
            got = rates[(model, n, threads)]
            rows.append([model, n, threads, f"{max(got):,.0f}", " / ".join(f"{r:,.0f}" for r in got),
                         f"{max(got) / base:.2f}x"])
    table = markdown_table(["model", "processes", "threads each", "train img/s (best)", "all repeats",
                            f"vs {setups[0][0]}x{setups[0][1]}"], rows)
    reference = f"reference workload {ref_before:.2f} s before, {ref_after:.2f} s after" if args.reference else \
        "reference workload not run"
    note = (f"{reference}; 1-minute load average {load_before:.1f} before, {load_after:.1f} after; "
            f"{args.train_size} images, "
            f"{args.epochs} epochs (last one timed), precision {args.precision}, repeats {args.repeats}")
    (out / "distributed.md").write_text(table + "\n\n" + note + "\n")
    (out / "distributed.json").write_text(json.dumps(
        {"rates": {f"{m}/{n}x{t}": v for (m, n, t), v in rates.items()}, "reference_before": ref_before,
         "reference_after": ref_after,
         "load_before": load_before, "load_after": load_after, "args": vars(args)}, indent=2) + "\n")
    print(table)
    print(note)


if __name__ == "__main__":
    main()
