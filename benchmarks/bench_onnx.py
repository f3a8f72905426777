"""Inference images/s of PyTorch (fp32, bf16) against ONNX Runtime (fp32, CPUExecutionProvider) for the
same models, on the same uint8 batches, both paths including the normalization:

    python benchmarks/bench_onnx.py [--models baseline,resnet20] [--images 5120] [--threads N]

PyTorch runs cifarlab's own inference path (`predict_logits`: eval batch 256, channels_last); ONNX Runtime
runs the graph `cifarlab export` writes (the same exporter code), in batches of 256. Weights are random:
speed does not depend on them. Each figure is the best of --repeats timed passes after one warm-up pass.
Both runtimes get the same number of threads (default: torch's).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import markdown_table, reference_seconds

from cifarlab.deploy import _session, export_onnx_model, normalize, run_session
from cifarlab.models import create_model
from cifarlab.rundir.inference import EVAL_BATCH_SIZE, predict_logits, preprocessing


def best_images_per_second(fn, n: int, repeats: int) -> float:
    fn()  # warm-up: oneDNN and ORT pick and cache their kernels
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def measure(name: str, images: np.ndarray, threads: int, repeats: int, workdir: Path) -> list[dict]:
    torch.manual_seed(0)
    model = create_model(name).eval()
    mean, std = preprocessing(model)
    metadata = {"classes": [str(i) for i in range(10)], "mean": list(mean), "std": list(std),
                "input_size": [3, 32, 32], "model": name}
    path = workdir / f"{name}.onnx"
    t = time.perf_counter()
    export_onnx_model(model, path, metadata, None)
    export_seconds = time.perf_counter() - t
    session = _session(path, threads)
    cpu = torch.device("cpu")
    channels_last = model.to(memory_format=torch.channels_last)
    rows = []
    for precision in ("fp32", "bf16"):
        ips = best_images_per_second(lambda p=precision: predict_logits(channels_last, images, device=cpu,
                                                                        precision=p), len(images), repeats)
        rows.append({"model": name, "runtime": f"PyTorch {precision}", "img_s": ips})
    ort_ips = best_images_per_second(lambda: run_session(session, normalize(images, mean, std)), len(images), repeats)
    rows.append({"model": name, "runtime": "ONNX Runtime fp32", "img_s": ort_ips, "export_seconds": export_seconds,
                 "onnx_mb": path.stat().st_size / 1e6})
    ref = predict_logits(channels_last, images[:EVAL_BATCH_SIZE], device=cpu, precision="fp32").numpy()
    got = run_session(session, normalize(images[:EVAL_BATCH_SIZE], mean, std))
    rows[-1]["max_abs_diff_vs_fp32"] = float(np.abs(ref - got).max())
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="baseline,resnet20")
    p.add_argument("--images", type=int, default=5120, help="images per timed pass (default 5120 = 20 batches)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--no-reference", action="store_true", help="skip the reference workload timing")
    p.add_argument("--out", default="bench-out/onnx.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = np.random.default_rng(0).integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    calib = [] if args.no_reference else [reference_seconds()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            for r in measure(name, images, args.threads, args.repeats, Path(tmp)):
                rows.append(r)
                print(json.dumps(r), flush=True)
    if not args.no_reference:
        calib.append(reference_seconds())
    base = {r["model"]: r["img_s"] for r in rows if r["runtime"] == "PyTorch fp32"}
    table = markdown_table(["model", "runtime", "inference img/s", "vs PyTorch fp32"],
                           [[r["model"], r["runtime"], f"{r['img_s']:,.0f}", f"{r['img_s'] / base[r['model']]:.2f}×"]
                            for r in rows])
    print(table)
    if calib:
        print(f"reference workload before/after: {calib[0]:.2f} / {calib[1]:.2f} s")
    print(f"threads: {args.threads}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"calib_seconds": calib, "threads": args.threads, "rows": rows,
                                          "table": table}, indent=2))


if __name__ == "__main__":
    main()
