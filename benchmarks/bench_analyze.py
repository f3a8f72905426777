"""How long `cifarlab analyze` takes on a trained run, step by step. Target: under
60 s for the 10,000 CIFAR-10 test images on the 2-core CPU, without the label check (which trains K
models and is timed on its own, once, when --label-check is given).

Trains nothing: pass a run directory made by `cifarlab train`. Each repeat runs `cifarlab analyze` in a
fresh process, like a user, and reads the per-step timings from its analysis.json; times are also stated
as a multiple of the reference workload measured in the same session.

    python benchmarks/bench_analyze.py --run bench-out/baseline/bf16-seed0 --data ../shared/data/cifar10 \
        --repeats 3 --label-check --out bench-out/analyze
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import markdown_table, mean_std, reference_seconds, run_cli


def analyze_once(args: argparse.Namespace, out: Path, label_check: bool) -> dict:
    """One `cifarlab analyze` in a fresh process: its wall time and the step timings it recorded."""
    cmd = ["analyze", args.run, "--out", str(out), "--device", args.device, "--precision", args.precision]
    cmd += ["--data", args.data] if args.data else []
    cmd += ["--robustness-images", args.robustness_images] if args.robustness_images else []
    cmd += ["--label-check", "--label-check-folds", str(args.folds)] if label_check else []
    start = time.perf_counter()
    run_cli(cmd)
    process_seconds = time.perf_counter() - start
    report = json.loads((out / "analysis.json").read_text())
    return {"process_seconds": process_seconds, "images": report["images"], "precision": report["precision"],
            "timings": report["timings"], "label_check": report["label_check"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a trained run directory")
    p.add_argument("--data", help="the data to analyze (default: the run's own)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--robustness-images", help="default: analyze's own (1000)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--label-check", action="store_true", help="also time one run with the label check")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="skip the reference workload (e.g. for a smoke test on synthetic data)")
    p.add_argument("--out", default="bench-out/analyze")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"started": time.strftime("%Y-%m-%d %H:%M"), "run": args.run, "data": args.data,
                     "calib_seconds": [reference_seconds()] if args.calibrate else []}
    runs = results["runs"] = []
    for i in range(args.repeats):
        runs.append(analyze_once(args, out / f"repeat-{i}", label_check=False))
        print(json.dumps({"repeat": i, "process_seconds": runs[-1]["process_seconds"], **runs[-1]["timings"]}),
              flush=True)
    if args.label_check:
        results["label_check_run"] = analyze_once(args, out / "label-check", label_check=True)
    if args.calibrate:
        results["calib_seconds"].append(reference_seconds())
    results["table"] = summary_table(results)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(results["table"])
    print(f"{runs[0]['images']:,} images, {runs[0]['precision']}; reference workload {results['calib_seconds']} s")


def summary_table(results: dict) -> str:
    """Mean ± std seconds per step over the repeats (and as a multiple of the reference), then the label check."""
    runs = results["runs"]
    calib = sum(results["calib_seconds"]) / len(results["calib_seconds"]) if results["calib_seconds"] else None
    rows = []
    steps = list(runs[0]["timings"]) + ["analysis total (steps)", "process (fresh, incl. imports)"]
    for step in steps:
        values = [_seconds(r, step) for r in runs]
        mean, sd = mean_std(values)
        rows.append([step, f"{mean:.2f} ± {sd:.2f}", f"{mean / calib:.2f}" if calib else "-"])
    check = results.get("label_check_run")
    if check:
        lc = check["label_check"]
        rows.append([f"label check ({lc['folds']} folds x {lc['epochs']} epochs, {lc['images']:,} images, n=1)",
                     f"{check['timings']['label_check']:.2f}", f"{check['timings']['label_check'] / calib:.2f}"
                     if calib else "-"])
    return markdown_table(["step", f"seconds (n={len(runs)})", "/ reference"], rows)


def _seconds(run: dict, step: str) -> float:
    if step == "analysis total (steps)":
        return sum(run["timings"].values())
    if step == "process (fresh, incl. imports)":
        return run["process_seconds"]
    return run["timings"][step]


if __name__ == "__main__":
    main()
