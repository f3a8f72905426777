"""The Keras baseline, 2 epochs, batch 128, on the real CIFAR-10 images.

For each precision variant and seed, `cifarlab train` runs in a fresh process; the Keras original
(../shared/bench/seed_keras.py, TensorFlow on CPU) runs in the same session when its interpreter is
given, and every time is also stated as a multiple of the reference workload measured in this run.

    python benchmarks/bench_baseline.py --data ../shared/data/cifar10 --seeds 0 1 2 \
        --variants bf16,fp32 --keras-python .venv-keras/bin/python --out bench-out/baseline
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from _common import SHARED, markdown_table, mean_std, read_summary, reference_seconds, run_cli

VARIANTS = {
    # name: (extra flags for `cifarlab train`, extra environment)
    "bf16": (["--precision", "bf16"], {}),
    "fp32": (["--precision", "fp32"], {}),
    "bf16-noCL": (["--precision", "bf16", "--no-channels-last"], {}),
    "fp32-noCL": (["--precision", "fp32", "--no-channels-last"], {}),
    "bf16-allTrain": (["--precision", "bf16", "--val-size", "0"], {}),
    "bf16-pinned": (["--precision", "bf16"], {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}),
}


FIRST_BATCH = """
import time
t0 = time.perf_counter()
import torch
from cifarlab.data import load_data
from cifarlab.data.loader import DeviceLoader
t1 = time.perf_counter()
d = load_data(DATA)
loader = DeviceLoader(d.train.images, d.train.labels, batch_size=128, device=torch.device("cpu"),
                      mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=True)
next(iter(loader))
t2 = time.perf_counter()
print(t2 - t0, t2 - t1)
"""


def first_batch_seconds(data: str) -> tuple[float, float]:
    """Seconds to the first batch with the decode cache warm: from process start (imports included),
    and from the data call on."""
    code = FIRST_BATCH.replace("DATA", repr(data))
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)  # warms the cache
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    total, data_only = map(float, out.split())
    return total, data_only


def run_keras(python: str, data: str) -> dict:
    out = subprocess.run([python, str(SHARED / "bench" / "seed_keras.py"), data, "2"], capture_output=True,
                         text=True, check=True).stdout
    m = re.search(r"keras_fit_seconds=([0-9.]+) keras_test_accuracy=([0-9.]+)", out)
    return {"fit_seconds": float(m.group(1)), "test_accuracy": float(m.group(2))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(SHARED / "data" / "cifar10"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", default="bf16,fp32")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--keras-python", help="interpreter with tensorflow-cpu==2.21.0 and pillow")
    p.add_argument("--out", default="bench-out/baseline")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"started": time.strftime("%Y-%m-%d %H:%M"), "calib_seconds": [reference_seconds()]}
    print(f"reference workload: {results['calib_seconds'][0]:.2f} s", flush=True)
    results["first_batch_seconds"] = first_batch_seconds(args.data)
    total, data_only = results["first_batch_seconds"]
    print(f"first batch with a warm cache: {data_only:.2f} s after the imports ({total:.2f} s from process start)",
          flush=True)
    if args.keras_python:
        results["keras"] = run_keras(args.keras_python, args.data)
        print(f"keras: {results['keras']}", flush=True)
    runs = results["runs"] = []
    for variant in args.variants.split(","):
        for seed in args.seeds:
            run_dir = out / f"{variant}-seed{seed}"
            start = time.perf_counter()
            flags, env = VARIANTS[variant]
            run_cli(["train", "--model", "baseline", "--epochs", str(args.epochs), "--data", args.data,
                     "--seed", str(seed), "--out", str(run_dir), "--overwrite", "--quiet", *flags], env=env)
            s = read_summary(run_dir)
            row = {"variant": variant, "seed": seed, "test_accuracy": s["test_accuracy"],
                   "val_accuracy": s["val_accuracy"], "train_seconds": s["train_seconds"],
                   "epochs_wall_seconds": s["wall_seconds"], "process_seconds": time.perf_counter() - start,
                   "images_per_second": s["images_per_second"],
                   "inference_images_per_second": s["inference_images_per_second"]}
            runs.append(row)
            print(json.dumps(row), flush=True)
    results["calib_seconds"].append(reference_seconds())
    calib = sum(results["calib_seconds"]) / 2
    rows = []
    for variant in args.variants.split(","):
        vr = [r for r in runs if r["variant"] == variant]
        acc, acc_sd = mean_std([r["test_accuracy"] for r in vr])
        t, t_sd = mean_std([r["train_seconds"] for r in vr])
        wall, _ = mean_std([r["epochs_wall_seconds"] for r in vr])
        speedup = f"{results['keras']['fit_seconds'] / wall:.2f}x" if "keras" in results else "-"
        rows.append([variant, f"{acc:.4f} ± {acc_sd:.4f}", f"{t:.1f} ± {t_sd:.1f}", f"{t / calib:.1f}",
                     f"{wall:.1f}", speedup, f"{mean_std([r['images_per_second'] for r in vr])[0]:,.0f}",
                     f"{mean_std([r['inference_images_per_second'] for r in vr])[0]:,.0f}"])
    table = markdown_table(["variant", f"test acc (n={len(args.seeds)})", "train s", "train / ref",
                            "epochs wall s", "vs Keras fit", "train img/s", "infer img/s"], rows)
    results["table"] = table
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(table)
    print(f"reference workload {results['calib_seconds']} s; keras {results.get('keras')}")


if __name__ == "__main__":
    main()
