"""Device and numeric precision: `auto` picks what is fastest without giving up accuracy, per device. Here, below
training, because opening a run (run.py) and predicting with it (inference.py) resolve them as training does."""
from __future__ import annotations

import contextlib
import functools

import torch

from ..config import COMPILE_MODES, PRECISIONS
from ..errors import CifarlabError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise CifarlabError(f"unknown --device {name!r}; choose one of: {', '.join(DEVICES)} (or cuda:N)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise CifarlabError("--device cuda was asked for, but no CUDA device is available")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CifarlabError("--device mps was asked for, but MPS is not available")
    return torch.device(name)


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True where oneDNN has native bf16 kernels (AVX-512 BF16 or AMX); elsewhere bf16 is emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def describe_cpu() -> dict[str, str]:
    """The CPU facts `auto` decides by, for a run's record: the vector ISA ATen dispatches to and whether
    oneDNN multiplies bf16 natively. Measured (benchmarks/bench_cpu_paths.py), they decide precision only:
    with native bf16, bf16 autocast trains 1.7-1.9x faster than fp32; without it, about 10x slower (emulated);
    channels_last, every physical core and oneDNN's convolutions are the fastest choice on both kinds."""
    return {"cpu_isa": torch.backends.cpu.get_cpu_capability(),
            "cpu_bf16": "native" if cpu_has_fast_bf16() else "emulated"}


def resolve_precision(name: str, device: torch.device) -> str:
    """`auto`: bf16 on CUDA with bf16 support (else fp16) and on CPUs with native bf16; fp32 elsewhere."""
    if name not in PRECISIONS:
        raise CifarlabError(f"unknown --precision {name!r}; choose one of: {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and cpu_has_fast_bf16():
            return "bf16"
        return "fp32"
    if name == "fp16" and device.type == "cpu":
        raise CifarlabError("--precision fp16 needs a GPU; on the CPU use bf16 or fp32")
    return name


# What `--compile auto` does on each device type, from measurement (BENCHMARKS.md:
# bench_throughput.py --compile, bench_fast.py --compile on). CPU: torch.compile slowed bf16 training of the zoo
# down on a 2-core AVX-512 machine, and its compile time is minutes. CUDA (an H200): it slowed training at
# batch 128 (0.82-0.93x) and the fast recipe (7.8 s with the compile cache warm, 19 s cold, against 5.1 s eager).
COMPILE_BY_DEFAULT = {"cpu": False, "cuda": False, "mps": False}


def resolve_compile(mode: str, device: torch.device) -> bool:
    """Whether to torch.compile the training forward: `on`, `off`, or `auto` (the measured default per device)."""
    if mode not in COMPILE_MODES:
        raise CifarlabError(f"unknown --compile {mode!r}; choose one of: {', '.join(COMPILE_MODES)}")
    return COMPILE_BY_DEFAULT.get(device.type, False) if mode == "auto" else mode == "on"


def use_fastest_kernels(device: torch.device) -> None:
    """On CUDA, let cuDNN time its convolution algorithms for the run's shapes and keep the fastest
    (shapes are fixed per run, so this pays after the first steps). Runs with one seed then agree to
    rounding rather than bit for bit, as on any GPU without deterministic kernels."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer read next counts it (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str):
    """The autocast context for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
