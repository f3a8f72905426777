"""Training and inference throughput of every registered model on this machine, fp32 vs bf16 (and
optionally torch.compile), on random 32×32 batches: the engine's cost per image, without data effects.

    python benchmarks/bench_throughput.py --precisions fp32,bf16 [--compile] [--models resnet20,vgg11]

Training: forward + backward + SGD step at batch 128 (channels_last); inference: batch 500, no grad.
Each figure is the best of 3 timed windows after warm-up, like the reference workload.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# Cold compilation, as a user's first run sees it: no inductor cache from an earlier model or run.
os.environ.setdefault("TORCHINDUCTOR_FORCE_DISABLE_CACHES", "1")

import torch  # noqa: E402 - after the environment above
import torch.nn.functional as F
from _common import best_seconds, markdown_table, reference_seconds

from cifarlab.models import create_model, list_models
from cifarlab.training.device import autocast


def images_per_second(fn, batch: int, min_seconds: float) -> tuple[float, float]:
    """(images/s, seconds of the first call): the first call includes torch.compile's compilation."""
    t = time.perf_counter()
    fn()
    first_call = time.perf_counter() - t
    fn()  # warm-up: oneDNN picks and caches its kernels
    steps, t = 0, time.perf_counter()
    while time.perf_counter() - t < min_seconds / 3:  # size a window to about a third of the budget
        fn()
        steps += 1
    return batch * steps / best_seconds(fn, steps, warmup=0), first_call


def measure(name: str, precision: str, compile_model: bool, min_seconds: float) -> dict:
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = create_model(name).to(memory_format=torch.channels_last)
    if compile_model:
        # Dynamo keys its cache on code objects (nn.Sequential.forward, one forward for all VGGs), so
        # models compiled earlier in this process would use up the recompile limit and silently run eager.
        torch._dynamo.reset()
    step_model = torch.compile(model) if compile_model else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(128, 3, 32, 32).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))

    def train_step():
        with autocast(device, precision):
            loss = F.cross_entropy(step_model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    xe = torch.randn(500, 3, 32, 32).to(memory_format=torch.channels_last)

    @torch.no_grad()
    def infer():
        with autocast(device, precision):
            step_model(xe)

    model.train()
    train, train_first = images_per_second(train_step, 128, min_seconds)
    model.eval()
    infer_rate, infer_first = images_per_second(infer, 500, min_seconds)
    return {"model": name, "precision": precision, "compile": compile_model, "train_img_s": train,
            "infer_img_s": infer_rate, "train_first_call_s": train_first, "infer_first_call_s": infer_first}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(list_models()))
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile")
    p.add_argument("--min-seconds", type=float, default=3.0, help="timed seconds per figure, roughly")
    p.add_argument("--out", default="bench-out/throughput.json")
    args = p.parse_args()
    calib = [reference_seconds()]
    rows = []
    for name in args.models.split(","):
        for precision in args.precisions.split(","):
            for compiled in ([False, True] if args.compile else [False]):
                r = measure(name, precision, compiled, args.min_seconds)
                rows.append(r)
                print(json.dumps(r), flush=True)
    calib.append(reference_seconds())
    headers = ["model", "precision", "compile", "train img/s", "inference img/s", "first train + inference call s"]
    table = markdown_table(headers, [[r["model"], r["precision"], "yes" if r["compile"] else "no",
                                      f"{r['train_img_s']:,.0f}", f"{r['infer_img_s']:,.0f}",
                                      f"{r['train_first_call_s']:.1f} + {r['infer_first_call_s']:.1f}"] for r in rows])
    print(table)
    print(f"reference workload before/after: {calib[0]:.2f} / {calib[1]:.2f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"calib_seconds": calib, "rows": rows, "table": table}, indent=2))


if __name__ == "__main__":
    main()
