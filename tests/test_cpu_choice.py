"""What `auto` decides per CPU (precision; the rest is the same on every CPU measured, see
benchmarks/bench_cpu_paths.py), what a run records of the CPU, and the benchmark's kernel-log parser."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from cifarlab.cli import main
from cifarlab.rundir import device

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cpu_paths.py"


def test_precision_auto_follows_the_cpus_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: True)
    assert device.resolve_precision("auto", cpu) == "bf16" and device.describe_cpu()["cpu_bf16"] == "native"
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)  # AVX2: bf16 would be emulated, about 10x slower
    assert device.resolve_precision("auto", cpu) == "fp32" and device.describe_cpu()["cpu_bf16"] == "emulated"
    assert device.resolve_precision("bf16", cpu) == "bf16"  # asked for by name: kept
    assert device.describe_cpu()["cpu_isa"] == torch.backends.cpu.get_cpu_capability()


def test_a_run_records_the_cpu_and_says_why_auto_chose_fp32(tiny_tree, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)
    assert main(["train", "--data", str(tiny_tree), "--epochs", "1", "--val-size", "6",
                 "--out", str(tmp_path / "run")]) == 0
    isa = torch.backends.cpu.get_cpu_capability()
    assert f"cpu fp32 ({isa}, no native bf16)" in capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["versions"]["cpu_isa"] == isa and summary["versions"]["cpu_bf16"] == "emulated"
    assert summary["precision"] == "fp32"


def test_fp32_by_name_needs_no_explanation(tiny_tree, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)
    assert main(["train", "--data", str(tiny_tree), "--epochs", "1", "--val-size", "6", "--precision", "fp32",
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "cpu fp32" in out and "no native bf16" not in out


def test_the_benchmark_counts_onednn_kernels_from_the_verbose_log():
    spec = importlib.util.spec_from_file_location("bench_cpu_paths", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    log = ["onednn_verbose,v1,info,oneDNN v3.7.1",
           "onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx2,forward_training,src:f32,1.2",
           "onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx2,forward_training,src:f32,1.1",
           "onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,jit:avx2,backward_data,src:f32,0.3",
           "onednn_verbose,exec,cpu,reorder,jit:uni,undef,src:f32,dst:f32,0.01",
           '{"images_per_s": 1.0}']
    assert bench.onednn_kernels(log) == {"convolution brg_conv_fwd:avx2": 2, "reorder jit:uni": 1}
