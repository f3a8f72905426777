"""Training throughput of one process against data-parallel ranks under torchrun, on this machine.

    python benchmarks/bench_distributed.py --data ../shared/data/cifar10 --models baseline,resnet20 \
        --train-size 5000 --epochs 2 --repeats 2 --out bench-out/distributed

For each model: `cifarlab train` in one process (torch's default: one thread per core), then
`torchrun --nproc-per-node N -m cifarlab train` with the same global batch (each rank gets
cores / N threads). The figure is the training images/s of the last epoch (the first one warms up
oneDNN's kernels), from metrics.jsonl; validation and the test evaluation are off (`--val-size 0`,
evaluate_test: false). Runs alternate between the set-ups so that drifts of a shared machine's speed
hit both; each figure is the best of --repeats.
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


def last_epoch_rate(args: argparse.Namespace, model: str, ranks: int, out: Path) -> float:
    config = out / "config.yaml"
    config.write_text("evaluate_test: false\n")
    cmd = [*train_command(ranks), "--model", model, "--epochs", str(args.epochs), "--train-size", str(args.train_size),
           "--val-size", "0", "--precision", args.precision, "--config", str(config), "--out", str(out / "run"),
           "--overwrite", "--quiet"]
    if args.data:
        cmd += ["--data", args.data]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH"))
                                                        if p)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    lines = (out / "run" / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])["images_per_second"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="CIFAR-10 (default: as cifarlab train)")
    p.add_argument("--models", default="baseline,resnet20")
    p.add_argument("--ranks", default="1,2", help="comma-separated process counts (default 1,2)")
    p.add_argument("--train-size", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, help="global batch (default: each model's recipe)")
    p.add_argument("--precision", default="auto")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default="bench-out/distributed")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ranks = [int(r) for r in args.ranks.split(",")]
    models = args.models.split(",")

    ref_before = reference_seconds()
    rates: dict[tuple[str, int], list[float]] = {}
    for repeat in range(args.repeats):
        for model in models:
            for n in ranks:
                rate = last_epoch_rate(args, model, n, out / f"{model}-{n}ranks-{repeat}")
                rates.setdefault((model, n), []).append(rate)
                print(f"{model} {n} rank(s), repeat {repeat}: {rate:,.0f} img/s", flush=True)
    ref_after = reference_seconds()

    rows = []
    for model in models:
        base = max(rates[(model, ranks[0])])
        for n in ranks:
            best = max(rates[(model, n)])
            rows.append([model, n, f"{os.cpu_count() // n}", f"{best:,.0f}",
                         " / ".join(f"{r:,.0f}" for r in rates[(model, n)]), f"{best / base:.2f}x"])
    table = markdown_table(["model", "processes", "threads each", "train img/s (best)", "all repeats",
                            f"vs {ranks[0]} process"], rows)
    note = (f"reference workload {ref_before:.2f} s before, {ref_after:.2f} s after; {args.train_size} images, "
            f"{args.epochs} epochs (last one timed), precision {args.precision}, repeats {args.repeats}")
    (out / "distributed.md").write_text(table + "\n\n" + note + "\n")
    (out / "distributed.json").write_text(json.dumps(
        {"rates": {f"{m}/{n}": v for (m, n), v in rates.items()}, "reference_before": ref_before,
         "reference_after": ref_after, "args": vars(args)}, indent=2) + "\n")
    print(table)
    print(note)


if __name__ == "__main__":
    main()
