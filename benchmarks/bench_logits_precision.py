"""The figures for the precision of evaluation logits: what each option costs and what it changes.

Three ways to compute a trained run's logits on a split (default: the 10,000 test images):

    fp32            plain fp32 inference (the default of `evaluate` and `analyze` now)
    bf16-body       the body (forward_features) under bf16 autocast, the head and the logits in fp32
                    (what `--precision bf16` does now)
    bf16-autocast   the whole forward under bf16 autocast, logits cast to fp32 afterwards (what `analyze`
                    did earlier: logits keep bf16's 8 significant bits)

For each: the best of `--repeats` timed passes (images/s), exact ties between the top-1 and top-2 logits
(and at any two adjacent ranks), accuracy and 15-bin ECE with their differences from fp32, and the largest
logit difference from fp32. Times are also stated as a multiple of the reference workload. Run it on a
quiet machine:

    python benchmarks/bench_logits_precision.py --run bench-out/baseline/bf16-seed0 \
        --data ../shared/data/cifar10 --repeats 3 --out bench-out/logits-precision
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from _common import markdown_table, reference_seconds

from cifarlab.analysis.calibration import expected_calibration_error
from cifarlab.analysis.predictions import softmax
from cifarlab.api import load_run
from cifarlab.data.loader import DeviceLoader
from cifarlab.rundir.device import autocast, resolve_device
from cifarlab.rundir.inference import EVAL_BATCH_SIZE, fp32_logits, preprocessing

OPTIONS = ("fp32", "bf16-body", "bf16-autocast")


@torch.no_grad()
def logits_with(model: torch.nn.Module, images: np.ndarray, device: torch.device, option: str,
                batch_size: int) -> np.ndarray:
    """(N, C) float32 logits of `images` computed the `option` way."""
    mean, std = preprocessing(model)
    loader = DeviceLoader(images, np.zeros(len(images), np.int64), batch_size=batch_size, device=device,
                          mean=mean, std=std, channels_last=True)
    outputs = []
    for x, _ in loader:
        if option == "bf16-autocast":
            with autocast(device, "bf16"):
                outputs.append(model(x).float().cpu())
        else:
            outputs.append(fp32_logits(model, x, "fp32" if option == "fp32" else "bf16").cpu())
    return torch.cat(outputs).numpy()


def tie_counts(logits: np.ndarray) -> dict[str, int]:
    """Images whose two largest logits are exactly equal, and whose logits tie at any two adjacent ranks."""
    ranked = -np.sort(-logits, axis=1)
    equal = ranked[:, 1:] == ranked[:, :-1]
    return {"top1_ties": int(equal[:, 0].sum()), "any_adjacent_ties": int(equal.any(axis=1).sum())}


def measure(model, images, labels, device, option, batch_size, repeats) -> tuple[dict, np.ndarray]:
    logits_with(model, images[:batch_size], device, option, batch_size)  # warm-up: oneDNN picks its kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        logits = logits_with(model, images, device, option, batch_size)
        best = min(best, time.perf_counter() - start)
    probs = softmax(logits)
    return {"option": option, "seconds": best, "images_per_second": len(images) / best,
            "accuracy": float((logits.argmax(1) == labels).mean()),
            "ece": expected_calibration_error(probs, labels, 15), **tie_counts(logits)}, logits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a trained run directory")
    p.add_argument("--data", help="default: the run's own")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--images", type=int, help="only the first N images (default: all)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=EVAL_BATCH_SIZE)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false", help="skip the reference workload")
    p.add_argument("--out", default="bench-out/logits-precision")
    args = p.parse_args()
    device = resolve_device(args.device)
    run = load_run(args.run, str(device))
    model, data = run.model, run.dataset(args.data)
    split = getattr(data, args.split)
    images, labels = split.images[:args.images], split.labels[:args.images]
    results = {"started": time.strftime("%Y-%m-%d %H:%M"), "run": args.run, "device": str(device),
               "images": len(images), "torch_threads": torch.get_num_threads(),
               "calib_seconds": reference_seconds() if args.calibrate else None, "options": []}
    reference = None
    for option in OPTIONS:
        row, logits = measure(model, images, labels, device, option, args.batch_size, args.repeats)
        reference = logits if reference is None else reference
        row["max_abs_logit_diff_vs_fp32"] = float(np.abs(logits - reference).max())
        results["options"].append(row)
        print(json.dumps(row), flush=True)
    fp32 = results["options"][0]
    calib = results["calib_seconds"]
    rows = [[r["option"], f"{r['seconds']:.2f}", f"{r['seconds'] / calib:.2f}" if calib else "-",
             f"{r['images_per_second']:,.0f}", r["top1_ties"], r["any_adjacent_ties"], f"{r['accuracy']:.4f}",
             f"{r['accuracy'] - fp32['accuracy']:+.4f}", f"{r['ece']:.4f}", f"{r['ece'] - fp32['ece']:+.4f}",
             f"{r['max_abs_logit_diff_vs_fp32']:.2e}"] for r in results["options"]]
    table = markdown_table(["logits", "seconds", "× reference", "images/s", "top-1 ties", "adjacent ties",
                            "accuracy", "Δ accuracy", "ECE", "Δ ECE", "max Δ logit"], rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
