"""Seconds per airbench training step (channels_last, 2 threads, Muon; batch 2000 or --batch N;
bf16 autocast where the CPU has native bf16, else fp32, as `--precision auto` picks; `--precision fp32|bf16`
to force one), by training image size, and optionally the per-op profile (where an epoch's time goes).

    PYTHONPATH=src python benchmarks/profile_airbench_step.py 32 [--profile]
    PYTHONPATH=src python benchmarks/profile_airbench_step.py 32 --compile-pointwise   # pool+BN+GELU compiled
    PYTHONPATH=src python benchmarks/profile_airbench_step.py 32 --batch 500           # another batch size
    PYTHONPATH=src python benchmarks/profile_airbench_step.py 32 --whiten-bias-done    # after the bias's 3 epochs
    PYTHONPATH=src python benchmarks/profile_airbench_step.py 32 --whiten-bias-done --frozen block1,block2
                                                  # after those blocks' lr horizons (model_kwargs freeze_out)
    PYTHONPATH=src python benchmarks/profile_airbench_step.py 32 --batch 1000 --precision fp32 --activation silu
"""
import sys
import time

import torch
import torch.nn.functional as F

from cifarlab.models import airbench as ab
from cifarlab.models.airbench import airbench
from cifarlab.rundir.device import resolve_precision
from cifarlab.training.muon import MuonSGD, newton_schulz_dtype

torch.set_num_threads(2)
size = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 32
batch = int(sys.argv[sys.argv.index("--batch") + 1]) if "--batch" in sys.argv else 2000
precision = resolve_precision(sys.argv[sys.argv.index("--precision") + 1] if "--precision" in sys.argv else "auto",
                              torch.device("cpu"))
activation = sys.argv[sys.argv.index("--activation") + 1] if "--activation" in sys.argv else "gelu"
if "--compile-pointwise" in sys.argv:  # torch.compile on the memory-bound part of each block only
    def pool_norm_act(x, norm):
        return F.gelu(F.batch_norm(F.max_pool2d(x, 2), norm.running_mean, norm.running_var, None, norm.bias,
                                   True, norm.momentum, norm.eps))

    def norm_act(x, norm):
        return F.gelu(F.batch_norm(x, norm.running_mean, norm.running_var, None, norm.bias, True, norm.momentum,
                                   norm.eps))

    pool_norm_act, norm_act = torch.compile(pool_norm_act, dynamic=False), torch.compile(norm_act, dynamic=False)

    def forward(self, x):
        return norm_act(self.conv2(pool_norm_act(self.conv1(x), self.norm1)), self.norm2)

    ab.ConvGroup.forward = forward
m = airbench(activation=activation).to(memory_format=torch.channels_last)
opt = MuonSGD(m.param_groups(0.24, batch, 2e-6, 0.85, 8))
if "--whiten-bias-done" in sys.argv:  # the engine's stop_gradients_past_horizon after the bias's lr horizon
    m.whiten.bias.requires_grad_(False)
if "--frozen" in sys.argv:  # blocks past their lr horizon: no gradient for their filters and BN shifts
    for name in sys.argv[sys.argv.index("--frozen") + 1].split(","):
        getattr(m, name).requires_grad_(False)
x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (batch,))


def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = torch.nn.functional.cross_entropy(m(x), y, label_smoothing=0.2)
    loss.backward()
    opt.step()


for _ in range(2):
    step()
t, n = time.perf_counter(), 4
for _ in range(n):
    step()
dt = (time.perf_counter() - t) / n
ns_dtype = str(newton_schulz_dtype(torch.device("cpu"))).removeprefix("torch.")
print(f"size {size}, batch {batch}, {precision}, {activation}, Newton-Schulz in {ns_dtype}: {dt:.3f} s/step, "
      f"{batch / dt:.0f} images/s")
if "--profile" in sys.argv:
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(2):
            step()
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
