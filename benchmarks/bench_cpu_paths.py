"""What pays on a CPU: the fast recipe's and the Keras baseline's training step timed under each execution
choice, one at a time around the default, so that `--precision auto` and the other defaults can be checked
per CPU against a measurement.

The choices: precision (fp32, bf16 autocast), memory layout (channels_last or NCHW), thread count, batch
size, the training image size of the progressive schedule, and the convolution path (oneDNN, PyTorch's
default on x86, or ATen's own im2col + GEMM kernels with oneDNN switched off). Each variant runs in a fresh
process (the thread count and the ISA are fixed when torch loads) and times cifarlab's own training step
(`loop.train_step`, the recipe's optimizer) on synthetic batches: images per second, best of --repeats
windows after a warm-up step. The whole grid runs --rounds times, alternating, so drift shows as the
spread between rounds.

`--isa avx2` runs every variant with oneDNN and ATen capped at AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`,
`ATEN_CPU_CAPABILITY=avx2`): an AVX-512 machine then runs the kernels a CPU without AVX-512 (and without
native bf16) would run. It is an emulation of such a CPU's code paths, not of its clock, caches or memory,
so compare the variants with each other, not the seconds with another CPU's.

    python benchmarks/bench_cpu_paths.py --isa native --out bench-out/cpu-paths-native.json
    python benchmarks/bench_cpu_paths.py --isa avx2 --skip fast:bf16 --out bench-out/cpu-paths-avx2.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, reference_seconds  # noqa: E402

ISA_ENV = {"native": {}, "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}
# model -> (the default settings, the variants: label -> settings that differ from the default)
GRID = {
    "fast": ({"recipe": "fast", "batch_size": 1000, "size": 32, "precision": "fp32", "channels_last": True,
              "threads": 2, "onednn": True, "steps": 2},
             {"default": {"kernels": True}, "bf16": {"precision": "bf16", "steps": 1},
              "NCHW": {"channels_last": False},
              "1 thread": {"threads": 1, "steps": 1}, "batch 500": {"batch_size": 500, "steps": 4},
              "batch 2000": {"batch_size": 2000, "steps": 1}, "24 px": {"size": 24, "steps": 4},
              "oneDNN off": {"onednn": False, "steps": 1}}),
    "baseline": ({"recipe": None, "model": "baseline", "batch_size": 128, "size": 32, "precision": "fp32",
                  "channels_last": True, "threads": 2, "onednn": True, "steps": 20},
                 {"default": {"kernels": True}, "bf16": {"precision": "bf16", "steps": 2},
                  "NCHW": {"channels_last": False},
                  "1 thread": {"threads": 1, "steps": 10}, "batch 256": {"batch_size": 256, "steps": 10},
                  "oneDNN off": {"onednn": False, "steps": 5}}),
}


def child(spec: dict) -> dict:
    """Time cifarlab's training step for one variant, in this (fresh) process."""
    import torch

    torch.set_num_threads(spec["threads"])
    torch.backends.mkldnn.enabled = spec["onednn"]
    from bench_step_overhead import build, prepared_batches

    from cifarlab.config import TrainConfig
    from cifarlab.rundir.device import cpu_has_fast_bf16
    from cifarlab.training.loop import train_step

    settings = {"batch_size": spec["batch_size"], "precision": spec["precision"],
                "channels_last": spec["channels_last"], "seed": 0, "val_size": 0, "tta": "none", "epochs": 1}
    settings.update({"recipe": spec["recipe"]} if spec["recipe"] else {"model": spec["model"]})
    steps = spec["steps"]
    r = build(TrainConfig(**settings), (steps + 1) * spec["batch_size"])
    batches = prepared_batches(r, steps + 1)
    generator = torch.Generator().manual_seed(0)

    def one(x, y):
        train_step(r.stepper, x, y, generator, batch_images=len(y), image_size=spec["size"])

    one(*batches[0])  # warm-up: oneDNN picks its kernels, the optimizer makes its state
    best = float("inf")
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        for x, y in batches[1:]:
            one(x, y)
        best = min(best, time.perf_counter() - start)
    if spec.get("kernels"):  # one more step with oneDNN's verbose log on stdout: which kernels ran
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
            one(*batches[1])
    return {"images_per_s": steps * spec["batch_size"] / best, "s_per_step": best / steps,
            "capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": cpu_has_fast_bf16()}


def run_variant(spec: dict, isa: str) -> dict:
    env = {**os.environ, **ISA_ENV[isa], "OMP_NUM_THREADS": str(spec["threads"])}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"variant {spec} failed:\n{proc.stderr[-2000:]}")
    lines = proc.stdout.strip().splitlines()
    result = next(json.loads(line) for line in reversed(lines) if line.startswith("{"))
    return {**result, "kernels": onednn_kernels(lines)}


def onednn_kernels(lines: list[str]) -> dict[str, int]:
    """Executions per (primitive, implementation) in oneDNN's verbose log, e.g. convolution brgconv:avx2."""
    counts: dict[str, int] = {}
    for line in lines:
        fields = line.split(",")
        if line.startswith("onednn_verbose") and "exec" in fields and len(fields) > 7:
            at = fields.index("exec")
            key = f"{fields[at + 2]} {fields[at + 3]}"  # after exec: engine, primitive kind, implementation
            counts[key] = counts.get(key, 0) + 1
    return counts


def cpu_flags() -> str:
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    have = set(flags.split(":", 1)[1].split())
    return " ".join(f for f in wanted if f in have) or "none of avx2/avx512"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--isa", choices=sorted(ISA_ENV), default="native")
    p.add_argument("--models", default="fast,baseline", help="which grids to run (fast, baseline)")
    p.add_argument("--rounds", type=int, default=2, help="times the whole grid runs, alternating")
    p.add_argument("--repeats", type=int, default=2, help="timed windows per variant (the best counts)")
    p.add_argument("--skip", default="", help="MODEL:VARIANT,... to leave out (e.g. fast:bf16, hours without "
                                              "native bf16)")
    p.add_argument("--out", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    ref_before = reference_seconds()  # natively, as every other figure's unit
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results: dict[str, dict[str, list[dict]]] = {}
    for round_ in range(args.rounds):
        for model in args.models.split(","):
            default, variants = GRID[model]
            order = [label for label in variants if f"{model}:{label}" not in args.skip.split(",")]
            order = order if round_ % 2 == 0 else order[::-1]
            for label in order:
                spec = {**default, **variants[label], "repeats": args.repeats}
                out = run_variant(spec, args.isa)
                results.setdefault(model, {}).setdefault(label, []).append(out)
                print(f"round {round_ + 1} {model} {label}: {out['images_per_s']:.0f} images/s "
                      f"({out['s_per_step']:.3f} s/step)", flush=True)
    ref_after = reference_seconds()

    first = next(iter(next(iter(results.values())).values()))[0]
    header = (f"CPU flags: {cpu_flags()}; --isa {args.isa} (ATen {first['capability']}, "
              f"{'native' if first['native_bf16'] else 'no native'} bf16 in oneDNN); {started}; reference workload "
              f"{ref_before:.2f} s before, {ref_after:.2f} s after (run natively)")
    print(header)
    for model, by_label in results.items():
        default, variants = GRID[model]
        base = max(r["images_per_s"] for r in by_label["default"])
        rows = []
        for label, runs in by_label.items():
            rates = [r["images_per_s"] for r in runs]
            changed = ", ".join(f"{k} {v}" for k, v in variants[label].items()
                                if k not in ("steps", "kernels")) or "as default"
            rows.append([label, changed, " / ".join(f"{v:,.0f}" for v in rates), f"{max(rates) / base:.2f}x"])
        settings = ", ".join(f"{k} {v}" for k, v in default.items() if k != "steps" and v is not None)
        print(f"\n{model} (default: {settings})")
        print(markdown_table(["variant", "differs in", "images/s per round", "best vs default"], rows))
        print("oneDNN kernels in one default step:", by_label["default"][0]["kernels"] or "none logged")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"header": header, "isa": args.isa, "cpu_flags": cpu_flags(),
                                        "reference_seconds": [ref_before, ref_after], "grid": GRID,
                                        "results": results}, indent=1))


if __name__ == "__main__":
    main()
