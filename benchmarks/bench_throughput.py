"""Training and inference throughput of every registered model on this machine, fp32 vs bf16 (and
optionally torch.compile), on random 32×32 batches: the engine's cost per image, without data effects.

    python benchmarks/bench_throughput.py --precisions fp32,bf16 [--compile] [--models resnet20,vgg11]
    python benchmarks/bench_throughput.py --device cuda --compile-models baseline,airbench   # on a GPU

Training: forward + backward + SGD step at batch 128 (--batch; channels_last); inference: batch 500
(--infer-batch), no grad.
Each figure is the best of 3 timed windows after warm-up, like the reference workload. On a GPU every
call waits for the device, so a window times finished work; the reference workload (a CPU measure) is
then not run.
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
from cifarlab.rundir.device import autocast, resolve_device, synchronize, use_fastest_kernels


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


def measure(name: str, precision: str, compile_model: bool, min_seconds: float,
            device: torch.device | None = None, batch: int = 128, infer_batch: int = 500) -> dict:
    device = device or torch.device("cpu")
    torch.manual_seed(0)
    model = create_model(name).to(device=device, memory_format=torch.channels_last)
    if compile_model:
        # Dynamo keys its cache on code objects (nn.Sequential.forward, one forward for all VGGs), so
        # models compiled earlier in this process would use up the recompile limit and silently run eager.
        torch._dynamo.reset()
    step_model = torch.compile(model) if compile_model else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def train_step():
        with autocast(device, precision):
            loss = F.cross_entropy(step_model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        synchronize(device)

    xe = torch.randn(infer_batch, 3, 32, 32, device=device).to(memory_format=torch.channels_last)

    @torch.no_grad()
    def infer():
        with autocast(device, precision):
            step_model(xe)
        synchronize(device)

    model.train()
    train, train_first = images_per_second(train_step, batch, min_seconds)
    model.eval()
    infer_rate, infer_first = images_per_second(infer, infer_batch, min_seconds)
    return {"model": name, "device": str(device), "precision": precision, "compile": compile_model,
            "batch": batch, "infer_batch": infer_batch,
            "train_img_s": train,
            "infer_img_s": infer_rate, "train_first_call_s": train_first, "infer_first_call_s": infer_first}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(list_models()))
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile")
    p.add_argument("--compile-models", help="measure torch.compile for these models only (implies --compile)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch", type=int, default=128, help="training batch")
    p.add_argument("--infer-batch", type=int, default=500, help="inference batch")
    p.add_argument("--min-seconds", type=float, default=3.0, help="timed seconds per figure, roughly")
    p.add_argument("--out", default="bench-out/throughput.json")
    args = p.parse_args()
    device = resolve_device(args.device)
    use_fastest_kernels(device)  # as training does
    on_cpu = device.type == "cpu"
    compile_for = set(args.compile_models.split(",")) if args.compile_models else None
    calib = [reference_seconds()] if on_cpu else []
    rows = []
    for name in args.models.split(","):
        for precision in args.precisions.split(","):
            compile_this = args.compile or compile_for is not None and name in compile_for
            for compiled in ([False, True] if compile_this else [False]):
                r = measure(name, precision, compiled, args.min_seconds, device, args.batch, args.infer_batch)
                rows.append(r)
                print(json.dumps(r), flush=True)
                save(args.out, device, calib, rows)  # each row as it ends: a stopped run keeps what it measured
    if on_cpu:
        calib.append(reference_seconds())
    headers = ["model", "precision", "compile", "train img/s", "inference img/s", "first train + inference call s"]
    table = markdown_table(headers, [[r["model"], r["precision"], "yes" if r["compile"] else "no",
                                      f"{r['train_img_s']:,.0f}", f"{r['infer_img_s']:,.0f}",
                                      f"{r['train_first_call_s']:.1f} + {r['infer_first_call_s']:.1f}"] for r in rows])
    print(table)
    if calib:
        print(f"reference workload before/after: {calib[0]:.2f} / {calib[1]:.2f} s")
    save(args.out, device, calib, rows, table)


def save(out: str, device: torch.device, calib: list[float], rows: list[dict], table: str = "") -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"device": device_name(device), "torch": torch.__version__,
                                     "calib_seconds": calib, "rows": rows, "table": table}, indent=2))


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


if __name__ == "__main__":
    main()
